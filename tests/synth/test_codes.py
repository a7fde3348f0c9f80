"""The curated code lists and the codes and places the generator writes."""

from __future__ import annotations

import csv
import re

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from pophealth.schema import CODE_SYSTEMS
from pophealth.synth._codes import CURATED_DIR

#: What a code of each system looks like (SNOMED CT / dm+d: SCTID digits; ICD-10 and
#: OPCS-4: four characters without the dot, as HES writes them).
CODE_SHAPES = {
    "snomedct": r"\d{6,18}",
    "dmd": r"\d{6,18}",
    "icd10": r"[A-Z]\d{2}[0-9X]",
    "opcs4": r"[A-Z]\d{3}",
    "rxnorm": r"\d{1,9}",  # rows of multi-system lists (``system`` column)
    "loinc": r"\d{1,7}-\d",
}


def _manifest() -> list[dict[str, str]]:
    with (CURATED_DIR / "MANIFEST.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def _list(name: str) -> list[dict[str, str]]:
    with (CURATED_DIR / f"{name}.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_manifest_names_every_list_once_with_a_source():
    rows = _manifest()
    names = [r["name"] for r in rows]
    assert len(names) == len(set(names))
    on_disk = {p.stem for p in CURATED_DIR.glob("*.csv")} - {"MANIFEST"}
    assert set(names) == on_disk
    for r in rows:
        assert r["system"] in CODE_SYSTEMS, r
        assert r["description"].strip() and r["source"].strip(), r["name"]


@pytest.mark.parametrize("row", _manifest(), ids=lambda r: r["name"])
def test_every_curated_code_has_the_shape_of_its_system(row):
    entries = _list(row["name"])
    assert entries, row["name"]
    codes = [e["code"] for e in entries]
    assert len(codes) == len(set(codes)), f"{row['name']}: duplicate codes"
    for e in entries:
        # a row may name its own system (multi-system lists); empty = the MANIFEST system
        shape = re.compile(CODE_SHAPES[e.get("system") or row["system"]])
        assert shape.fullmatch(e["code"]), f"{row['name']}: {e['code']!r}"
        assert e["term"].strip(), f"{row['name']}: {e['code']} has no term"


def test_extra_columns_the_programmes_rely_on_are_filled():
    for e in _list("ocs_prednisolone"):
        assert float(e["strength_mg"]) > 0
    for e in _list("ics_inhalers"):
        assert e["dose_category"] in {"low", "medium", "high"}
        assert float(e["ics_mcg_per_dose"]) > 0
    for e in _list("statins"):
        assert float(e["strength_mg"]) > 0 and e["intensity"] in {"low", "medium", "high"}
    for e in _list("caesarean_opcs4"):
        assert e["urgency"] == ("elective" if e["code"].startswith("R17") else "emergency")


def _curated_by_system() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for row in _manifest():
        for e in _list(row["name"]):
            out.setdefault(e.get("system") or row["system"], set()).add(e["code"])
    return out


def test_every_code_written_is_a_curated_code_of_its_system(population):
    curated = _curated_by_system()
    checks = [
        ("events", "system", "code"),
        ("medications", "system", "code"),
        ("operations", "system", "code"),
        ("emergency_attendances", "diagnosis_system", "diagnosis"),
    ]
    for table, sys_col, code_col in checks:
        df = population[table].select([sys_col, code_col]).to_pandas().dropna().drop_duplicates()
        for system, code in df.itertuples(index=False):
            assert code in curated[system], f"{table}: {system} {code} is not curated"
    adm = population["admissions"]
    dx = set(pc.list_flatten(adm["all_diagnoses"]).to_pylist()) | set(
        adm["primary_diagnosis"].to_pylist()
    )
    assert dx <= curated["icd10"]
    assert set(pc.list_flatten(adm["procedures"]).to_pylist()) <= curated["opcs4"]


def test_places_and_organisations_are_fictional(population):
    areas = population["areas"].to_pandas()
    assert areas["lsoa_code"].str.fullmatch(r"X01\d{6}").all()
    assert areas["msoa_code"].str.fullmatch(r"X02\d{6}").all()
    assert areas["lad_code"].str.fullmatch(r"X08\d{6}").all()
    assert areas["sub_icb"].str.fullmatch(r"X38\d{6}").all()
    assert (areas["icb"] == "X54000001").all()
    assert (areas["imd_release"] == "synthetic").all()
    practices = population["practices"].to_pandas()
    assert practices["practice_id"].str.fullmatch(r"X\d{5}").all()
    assert practices["pcn_id"].str.fullmatch(r"XU\d{4}").all()
    assert practices["lsoa_code"].isin(areas["lsoa_code"]).all()
    lsoas = population["addresses"]["lsoa_code"].drop_null().to_pandas()
    assert lsoas.isin(areas["lsoa_code"]).all()
    regs = population["registrations"]["practice_id"].to_pandas()
    assert regs.isin(practices["practice_id"]).all()
    for table in ("admissions", "emergency_attendances", "operations"):
        providers = population[table]["provider"].drop_null().to_pandas()
        assert providers.str.fullmatch(r"XR\d").all(), table


def test_no_fictional_code_is_a_real_lsoa(population, shared_data):
    real = pd.read_csv(
        shared_data / "imd2019" / "File_1_-_IMD2019_Index_of_Multiple_Deprivation.csv",
        usecols=[0],
    ).iloc[:, 0]
    ours = set(population["areas"]["lsoa_code"].to_pylist())
    ours |= set(population["areas"]["msoa_code"].to_pylist())
    assert not ours & set(real)


def test_patient_ids_are_unique_and_every_row_belongs_to_a_patient(population):
    ids = population["patients"]["patient_id"]
    assert pc.count_distinct(ids).as_py() == len(ids)
    known = pa.array(sorted(set(ids.to_pylist())))
    for table in (
        "registrations",
        "addresses",
        "events",
        "medications",
        "admissions",
        "emergency_attendances",
        "operations",
    ):
        col = population[table]["patient_id"]
        assert pc.all(pc.is_in(col, value_set=known)).as_py(), table
