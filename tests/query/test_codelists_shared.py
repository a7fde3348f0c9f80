"""Every real OpenCodelists CSV in ../shared/data/codelists, read independently with the csv
module and compared with what the loader makes of it; and the curated lists' MANIFEST
against the curated files. Shared-data tests skip when ../shared is absent."""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path

import pytest

import pophealth.codelists as codelists
from pophealth.codelists import CURATED_DIR, CodelistError, codelist, load_codelist

# The coding system of each shared list, as its OpenCodelists page and the data README say.
DMD = {
    "opensafely-asthma-inhaler-salbutamol-medication",
    "opensafely-asthma-inhaler-steroid-medication",
    "opensafely-asthma-oral-prednisolone-medication",
    "opensafely-direct-acting-oral-anticoagulants-doac",
    "opensafely-low-molecular-weight-heparins-dmd",
    "opensafely-statin-medication",
    "opensafely-warfarin",
}
CTV3 = {
    "opensafely-asthma-diagnosis",
    "opensafely-atrial-fibrillation-clinical-finding",
    "opensafely-chronic-kidney-disease",
    "opensafely-current-copd",
    "opensafely-ethnicity",
    "opensafely-sickle-cell-disease",
    "opensafely-smoking-clear",
    "opensafely-smoking-unclear",
    "user-hjforbes-type-1-diabetes",
    "user-hjforbes-type-2-diabetes",
}
OTHER = {"openprescribing-all-statins": "bnf", "user-kurttaylor-eating_disorder_icd10": "icd10"}


def expected_system(stem: str) -> str:
    if stem in DMD:
        return "dmd"
    if stem in CTV3:
        return "ctv3"
    return OTHER.get(stem, "snomedct")


def read(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def expected_code_column(header: list[str]) -> str:
    for column in ("dmd_id", "CTV3ID", "CTV3Code", "code", "Code", "id"):
        if column in header:
            return column
    raise AssertionError(f"no code column in {header}")


def x_forms(codes: set[str]) -> set[str]:
    """ICD-10 codes plus the other spelling of each 3-character code (I10 <-> I10X)."""
    out = set(codes)
    for c in codes:
        if re.fullmatch(r"[A-Z]\d\d", c):
            out.add(c + "X")
        elif re.fullmatch(r"[A-Z]\d\dX", c):
            out.add(c[:3])
    return out


@pytest.fixture(scope="module")
def shared_lists(shared_data) -> list[Path]:
    files = sorted(p for p in (shared_data / "codelists").glob("*.csv") if p.stem != "MANIFEST")
    assert len(files) == 48
    return files


def test_shared_manifest_describes_each_file(shared_data, shared_lists):
    _, manifest = read(shared_data / "codelists" / "MANIFEST.csv")
    assert sorted(r["file"] for r in manifest) == sorted(p.name for p in shared_lists)
    for row in manifest:
        header, rows = read(shared_data / "codelists" / row["file"])
        assert row["columns"] == "|".join(header), row["file"]
        assert int(row["rows"]) == len(rows), row["file"]


def test_every_shared_list_reads_as_the_csv_module_reads_it(shared_lists):
    for path in shared_lists:
        header, rows = read(path)
        column = expected_code_column(header)
        in_file = [r[column].strip() for r in rows]
        assert all(in_file), path.name
        cl = load_codelist(path)
        system = expected_system(path.stem)
        assert cl.system == system, path.name
        want = x_forms(set(in_file)) if system == "icd10" else set(in_file)
        assert cl.codes_in(system) == want, path.name  # duplicates once, nothing lost
        if "bnf_code" in header:
            bnf = {r["bnf_code"].strip() for r in rows if r["bnf_code"].strip()}
            assert cl.codes_in("bnf") == bnf, path.name
            assert set(cl.systems) == {system, "bnf"}
        else:
            assert cl.systems == (system,), path.name
        term_col = next(
            c
            for c in (
                "term",
                "name",
                "dmd_name",
                "CTV3PreferredTermDesc",
                "Description",
                "Ethnicity",
            )
            if c in header
        )
        first_terms = {}
        for r in rows:
            first_terms.setdefault(r[column].strip(), r[term_col].strip())
        for code, term in first_terms.items():
            assert cl.terms.get(code) == term, (path.name, code)


def test_shared_codes_are_text_not_numbers(shared_lists):
    # BNF codes begin with a zero for chapters 1-9; dm+d ids run to 17-18 digits, beyond a
    # float's exact range: both must come through as written
    for path in shared_lists:
        cl = load_codelist(path)
        for system in cl.systems:
            assert all(isinstance(c, str) for c in cl.codes_in(system))
        if "bnf" in cl.systems:
            assert all(len(c) == 15 and c[0] == "0" for c in cl.codes_in("bnf")), path.name


def test_shared_lists_with_duplicated_codes(shared_lists):
    # some lists repeat a code (one row per source mapping): counted once, categories agree
    repeated = {}
    for path in shared_lists:
        header, rows = read(path)
        column = expected_code_column(header)
        counts = Counter(r[column].strip() for r in rows)
        if any(n > 1 for n in counts.values()):
            repeated[path.stem] = len(counts)
            assert len(load_codelist(path)) == len(counts)
    assert "opensafely-asthma-diagnosis" in repeated  # one row per CTV3 source


def test_shared_category_columns(shared_lists):
    for path in shared_lists:
        header, rows = read(path)
        column = expected_code_column(header)
        cl = load_codelist(path)
        for cat in ("Category", "Grouping_6", "Grouping_16"):
            if cat in header:
                want = {r[column].strip(): r[cat].strip() for r in rows if r[cat].strip()}
                assert dict(cl.category_map(cat)) == want, (path.name, cat)


def test_ctv3_shared_codes_keep_their_case(shared_lists):
    for path in shared_lists:
        if path.stem not in CTV3:
            continue
        header, rows = read(path)
        column = expected_code_column(header)
        codes = {r[column].strip() for r in rows}
        cl = load_codelist(path)
        assert set(cl) == codes
        lower = {c for c in codes if any(ch.islower() for ch in c)}
        for c in lower:  # the upper-cased spelling is another code, not this one
            assert (c.upper() in cl) == (c.upper() in codes)


# -- curated lists ------------------------------------------------------------------------------


def curated_manifest_rows() -> list[dict[str, str]]:
    return read(CURATED_DIR / "MANIFEST.csv")[1]


def test_curated_manifest_lists_every_file_once():
    names = [r["name"].strip() for r in curated_manifest_rows()]
    assert [n for n, k in Counter(names).items() if k > 1] == []
    files = {p.stem for p in CURATED_DIR.glob("*.csv")} - {"MANIFEST"}
    assert files - set(names) == set(), "curated files missing from MANIFEST.csv"
    assert set(names) - files == set(), "MANIFEST.csv names with no file"


def test_curated_manifest_systems_agree_with_the_codes():
    # the MANIFEST's system, against what the codes themselves say (dm+d ids are SNOMED CT
    # identifiers, so a dm+d list's codes read as SNOMED CT; ICD-10/OPCS-4 by the name)
    for row in curated_manifest_rows():
        name, system = row["name"].strip(), row["system"].strip()
        inferred = load_codelist(CURATED_DIR / f"{name}.csv").system
        assert inferred == ("snomedct" if system == "dmd" else system), name
        assert name.endswith("_icd10") == (system == "icd10"), name
        assert name.endswith("_opcs4") == (system == "opcs4"), name


def test_curated_lists_read_as_the_csv_module_reads_them():
    for row in curated_manifest_rows():
        name, system = row["name"].strip(), row["system"].strip()
        header, rows = read(CURATED_DIR / f"{name}.csv")
        assert header[:2] == ["code", "term"], name
        want: dict[str, set[str]] = {}
        for r in rows:
            own = (r.get("system") or "").strip() or system
            want.setdefault(own, set()).add(r["code"].strip())
        cl = codelist(name)
        assert cl.system == system
        got = {s: set(cl.codes_in(s)) for s in cl.systems}
        assert got == {s: x_forms(c) if s == "icd10" else c for s, c in want.items()}, name


def test_a_curated_name_listed_twice_is_an_error(tmp_path, monkeypatch):
    (tmp_path / "MANIFEST.csv").write_text(
        "name,system,description,source\n"
        "asthma,snomedct,Asthma,x\n"
        "copd,snomedct,COPD,x\n"
        "asthma,ctv3,Asthma (CTV3),x\n"
    )
    monkeypatch.setattr(codelists, "CURATED_DIR", tmp_path)
    codelists.curated_manifest.cache_clear()
    try:
        with pytest.raises(
            CodelistError, match=r"MANIFEST.csv: row 4, field 'name': 'asthma' is listed twice"
        ):
            codelists.curated_manifest()
    finally:
        monkeypatch.undo()
        codelists.curated_manifest.cache_clear()
