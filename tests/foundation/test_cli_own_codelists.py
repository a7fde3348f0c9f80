"""A folder of one's own code lists in place of the curated ones (``--codelists``).

The curated lists are small illustrative subsets; on real records a programme must read the
national lists. These tests check that a folder's list is the one read, that a file no
programme reads or a list without the columns a programme reads is refused before any
work, and that a real store run without ``--codelists`` is warned about.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from pophealth.cli import app
from pophealth.codelists import (
    READ_COLUMNS,
    CodelistError,
    available_codelists,
    codelist,
    own_codelists,
    read_own_codelists,
)
from pophealth.codelists import _check_read_columns as check_read_columns
from pophealth.programmes import codelist_names

runner = CliRunner()

#: A real SNOMED CT hypertension concept that the synthetic data never records.
UNRECORDED = "10562009,Malignant hypertension complicating childbirth\n"


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result, " ".join(result.output.replace("│", " ").split())


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("own") / "store"
    result, said = invoke("synth", "--patients", "200", "--seed", "3", "--out", path)
    assert result.exit_code == 0, said
    return path


def test_a_folder_list_replaces_the_curated_one_only_inside_the_block(tmp_path):
    write(tmp_path, "hypertension_diagnosis.csv", "code,term\n" + UNRECORDED)
    write(tmp_path, "severe_asthma_referral.csv", "code,term\n" + UNRECORDED)
    curated = codelist("hypertension_diagnosis")
    with own_codelists(tmp_path, known=codelist_names()) as own:
        mine = codelist("hypertension_diagnosis")
        assert set(mine) == {"10562009"} and mine.source == str(tmp_path / mine.name) + ".csv"
        assert codelist("asthma_diagnosis") == codelist("asthma_diagnosis")  # curated still
        # a name no curated list has becomes available (the asthma programme's optional lists)
        assert "severe_asthma_referral" in available_codelists()
        assert own.used == {"hypertension_diagnosis"}
    assert codelist("hypertension_diagnosis") is curated
    assert "severe_asthma_referral" not in available_codelists()


def test_the_programmes_read_the_folder_list(tmp_path):
    from pophealth.programmes.asthma.codes import curated as asthma_codes
    from pophealth.programmes.cvd.codelists import curated_codelists

    write(tmp_path, "hypertension_diagnosis.csv", "code,term\n" + UNRECORDED)
    write(tmp_path, "severe_asthma_referral.csv", "code,term\n" + UNRECORDED)
    write(tmp_path, "severe_asthma_seen.csv", "code,term\n" + UNRECORDED)
    assert "sac" not in asthma_codes().seen_recorded()
    # a programme's second choice of name, given in the folder, wins over its curated first
    write(tmp_path, "oral_corticosteroids.csv", "code,term\n325426006,Prednisolone 5mg tablets\n")
    write(tmp_path, "respiratory_referral.csv", "code,term\n" + UNRECORDED)
    with own_codelists(tmp_path, known=codelist_names()) as own:
        cvd = curated_codelists()
        assert set(cvd.hypertension) == {"10562009"}
        assert cvd.corticosteroids.name == "oral_corticosteroids"
        asthma = asthma_codes()
        # the severe-asthma-centre timer has its lists now
        assert "sac" in asthma.seen_recorded()
        assert asthma.referral_secondary.name == "respiratory_referral"
        assert own.used == set(own.lists)


@pytest.mark.parametrize(
    ("files", "said"),
    [
        ({}, "no code lists (<name>.csv files)"),
        (
            {"statins.CSV": "code,term\n320030001,Atorvastatin 20mg tablets\n"},
            "statins.CSV: a code list's file name ends in .csv, lower case",
        ),
        (
            {"hypertension.csv": "code,term\n" + UNRECORDED},
            "no list called 'hypertension' is read, so this file would be ignored; name it "
            "as the list it replaces (did you mean 'hypertension_resolved' or "
            "'hypertension_diagnosis'?)",
        ),
        (
            {"statins.csv": "code,term\n320030001,Atorvastatin 20mg tablets\n"},
            "statins.csv: no column 'drug' or 'ingredient' or 'chemical'; the CVD programme's "
            "statin intensity is read from it",
        ),
        (
            {
                "statins.csv": "code,term,drug,strength_mg\n"
                "320030001,Atorvastatin,atorvastatin,20mg\n"
            },
            "statins.csv: field 'strength_mg' must be a number on every row",
        ),
        (
            {
                "statins.csv": "code,term,drug,strength_mg\n"
                "320030001,Atorvastatin 20mg tablets,atorvastatin,20\n"
                "320029006,Atorvastatin 10mg tablets,atorvastatin,\n"
            },
            "statins.csv: field 'strength_mg' is empty for code 320029006; the CVD programme's "
            "statin intensity and dose needs it for every code",
        ),
        (
            # the asthma programme compares 'current' exactly: 'Current' would read as no smoker
            {"smoking_status.csv": "code,term,category\n77176002,Smoker,Current\n"},
            "smoking_status.csv: field 'category' has 'Current'; smoking status (CVD's QRISK3, "
            "asthma) takes only never, ex, current",
        ),
        (
            {"smoking_status.csv": "code,term,category\n77176002,Smoker,S\n8517006,Ex-smoker,E\n"},
            "smoking_status.csv: field 'category' has 'E', 'S'; smoking status (CVD's QRISK3, "
            "asthma) takes only never, ex, current",
        ),
        (
            {"MANIFEST.csv": "name,system\nsaba_inhalers,dmd\n", "asthma_review.csv": "x"},
            "MANIFEST.csv: row 2, field 'name': no file saba_inhalers.csv beside it",
        ),
    ],
)
def test_a_folder_a_programme_would_misread_is_refused_naming_the_file(tmp_path, files, said):
    for name, text in files.items():
        write(tmp_path, name, text)
    with pytest.raises(CodelistError) as caught:
        read_own_codelists(tmp_path, known=codelist_names())
    assert said in str(caught.value)


def test_the_folder_manifest_settles_a_system_the_codes_leave_open(tmp_path):
    # three-character codes that are ICD-10 and OPCS-4 alike (an emergency department's
    # diagnoses in ICD-10): refused without the MANIFEST, never guessed
    write(tmp_path, "asthma_exacerbation.csv", "code,term\nJ45,Asthma\nJ46,Status asthmaticus\n")
    with pytest.raises(CodelistError, match="could be icd10 or opcs4"):
        read_own_codelists(tmp_path)
    write(tmp_path, "MANIFEST.csv", "name,system\nasthma_exacerbation,icd10\n")
    own = read_own_codelists(tmp_path)
    assert own.lists["asthma_exacerbation"].system == "icd10"


def test_a_medicine_list_with_the_columns_read_loads_its_bnf_codes_too(tmp_path):
    # the OpenCodelists dm+d layout: its bnf_code column is a second system, not a row code
    write(
        tmp_path,
        "statins.csv",
        "code,term,id,type,bnf_code,drug,strength_mg\n"
        "320030001,Atorvastatin 20mg tablets,320030001,vmp,0212000B0AAABAB,atorvastatin,20\n",
    )
    statins = read_own_codelists(tmp_path).lists["statins"]
    assert statins.system == "dmd" and "0212000B0AAABAB" in statins.codes_in("bnf")


def test_the_curated_lists_carry_the_columns_the_programmes_read():
    """READ_COLUMNS is what the programmes read: the curated lists, which they read today,
    pass the check a folder's list must pass."""
    for name in READ_COLUMNS:
        check_read_columns(codelist(name), Path(name))


def test_run_reads_the_folder_and_says_so(tmp_path, store):
    folder = tmp_path / "lists"
    write(folder, "hypertension_diagnosis.csv", "code,term\n" + UNRECORDED)
    write(
        folder,
        "statins.csv",
        "code,term,drug,strength_mg\n320030001,Atorvastatin,atorvastatin,20\n",
    )
    out = tmp_path / "o"
    result, said = invoke(
        "run", "population", "--store", store, "--out", out, "--codelists", folder
    )
    assert result.exit_code == 0, said
    assert (
        f"code lists from {folder}: hypertension_diagnosis read; not read by population: statins"
        in said
    )
    page = (out / "report.html").read_text()
    assert f"code lists: hypertension_diagnosis from {folder}" in page
    # the register read the folder's list: its one code is in no record, and the run says so
    assert "Code lists that match no record in this store" in page
    assert "hypertension_diagnosis." in page.split("Code lists that match no record")[1][:400]


def test_run_refuses_a_bad_folder_before_any_work(tmp_path, store):
    folder = write(tmp_path / "lists", "hypertensionn_diagnosis.csv", "code,term\n" + UNRECORDED)
    out = tmp_path / "o"
    result, said = invoke(
        "run", "cvd", "--store", store, "--out", out, "--codelists", folder.parent
    )
    assert result.exit_code == 2 and said.count("error:") == 1, said
    assert "error: --codelists:" in said and "did you mean 'hypertension_diagnosis'" in said
    assert not (out / "report.html").exists()


@pytest.fixture(scope="module")
def real(tmp_path_factory, store) -> Path:
    """The synthetic store's tables through ``pophealth ingest csv``: a store synth did not
    make, as a real one."""
    from pophealth.store import Store

    opened = Store.open(store)
    snapshot = opened.path / "snapshots" / opened.metadata["snapshot"]
    path = tmp_path_factory.mktemp("real") / "store"
    result, said = invoke("ingest", "csv", snapshot, "--out", path)
    assert result.exit_code == 0, said
    return path


CURATED_WARNING = "the curated lists are small illustrative subsets"


def test_a_real_store_read_with_curated_lists_is_warned_about(tmp_path, store, real):
    """A store made by ingest (not by synth) run on the curated lists gets a warning naming
    what was read from them; a synthetic store, whose data the curated lists made, does not;
    nor does a real one whose every list the folder gives."""
    result, said = invoke("run", "population", "--store", real, "--out", tmp_path / "a")
    assert result.exit_code == 0, said
    assert "warning: no --codelists: the programme read pophealth's curated code lists" in said
    assert CURATED_WARNING in said
    result, said = invoke("run", "population", "--store", store, "--out", tmp_path / "b")
    assert result.exit_code == 0 and CURATED_WARNING not in said, said
    folder = tmp_path / "lists"
    write(folder, "asthma_diagnosis.csv", "code,term\n195967001,Asthma\n")
    result, said = invoke(
        "run", "population", "--store", real, "--out", tmp_path / "c", "--codelists", folder
    )
    assert result.exit_code == 0, said
    assert f"the programme read 8 curated code list(s) not in {folder}: af_diagnosis," in said
    assert "asthma_diagnosis," not in said.split("not in")[1]
    for name in ("af_diagnosis", "af_resolved", "asthma_resolved", "copd_diagnosis",
                 "diabetes_type1", "diabetes_type2", "hypertension_diagnosis",
                 "hypertension_resolved"):  # fmt: skip
        write(folder, f"{name}.csv", _curated_text(name))
    result, said = invoke(
        "run", "population", "--store", real, "--out", tmp_path / "d", "--codelists", folder
    )
    assert result.exit_code == 0 and CURATED_WARNING not in said, said


def _curated_text(name: str) -> str:
    from pophealth.codelists import CURATED_DIR

    return (CURATED_DIR / f"{name}.csv").read_text()


DEFINITION = """
from pophealth.query import Dataset, codelist, events, index_date, registrations

dataset = Dataset()
dataset.define_population(registrations.registered_on(index_date))
dataset.htn = events.matching(codelist("hypertension_diagnosis")).exists_for_patient()
dataset.af = events.matching(codelist("af_diagnosis")).exists_for_patient()
"""


def test_a_definition_reads_the_folder_and_is_warned_about_curated_lists(tmp_path, real):
    import csv

    definition = write(tmp_path, "ds.py", DEFINITION)
    folder = tmp_path / "lists"
    write(folder, "hypertension_diagnosis.csv", "code,term\n" + UNRECORDED)
    # any name will do in a definition's folder: the definition names its own lists
    write(folder, "my_own_list.csv", "code,term\n" + UNRECORDED)
    out = tmp_path / "out.csv"
    args = ("dataset", definition, "--store", real, "--output", out)
    result, said = invoke(*args)
    assert result.exit_code == 0, said
    with out.open() as fh:
        curated = list(csv.DictReader(fh))
    assert any(r["htn"] == "true" for r in curated)  # the curated list finds some
    assert "no --codelists: the definition read pophealth's curated code lists" in said
    result, said = invoke(*args, "--codelists", folder)
    assert result.exit_code == 0, said
    with out.open() as fh:
        own = list(csv.DictReader(fh))
    # the folder's list (a code nobody has) was read; the curated AF list too, and said so
    assert len(own) == len(curated) and not any(r["htn"] == "true" for r in own)
    assert [r["af"] for r in own] == [r["af"] for r in curated]
    assert f"the definition read 1 curated code list(s) not in {folder}: af_diagnosis" in said


def test_the_guide_names_every_list_each_programme_reads():
    from pophealth.programmes import asthma, cvd
    from pophealth.programmes.population import REGISTERS

    guide = (Path(__file__).parents[2] / "docs" / "codelists.md").read_text()
    sections = dict(
        part.split("**", 1) for part in guide.split("\n**")[1:] if part.split("**", 1)[0]
    )
    population = {n for r in REGISTERS for n in (*r.diagnosis, r.resolved) if n}
    for programme, names in (
        ("population", population),
        ("asthma", asthma.CODELIST_NAMES),
        ("cvd", cvd.CODELIST_NAMES),
    ):
        missing = sorted(n for n in names if f"`{n}`" not in sections[programme])
        assert not missing, (programme, missing)
    for name in READ_COLUMNS:
        assert f"| `{name}` |" in guide


def test_pollution_episode_reads_the_folder(tmp_path, store):
    """With an asthma list of a code nobody has, nobody is on the register to warn."""
    import pandas as pd

    from pophealth.store import Store

    codes = Store.open(store).read("areas").column("lsoa_code").to_pylist()
    areas = write(tmp_path, "areas.csv", "code\n" + "\n".join(codes) + "\n")
    args = ("asthma", "pollution-episode", "--store", store, "--areas", areas)
    result, said = invoke(*args, "--out", tmp_path / "a.csv")
    assert result.exit_code == 0, said
    assert len(pd.read_csv(tmp_path / "a.csv")) > 0
    folder = write(tmp_path / "lists", "asthma_diagnosis.csv", "code,term\n" + UNRECORDED).parent
    result, said = invoke(*args, "--out", tmp_path / "b.csv", "--codelists", folder)
    assert result.exit_code == 0, said
    assert len(pd.read_csv(tmp_path / "b.csv")) == 0


def test_the_curated_lists_read_are_recorded_and_a_name_without_one_is_not():
    with own_codelists(None) as own:
        codelist("statins")
        with pytest.raises(CodelistError):
            codelist("ezetimibe")  # the CVD programme tries it; no curated list has it
    assert own.folder is None and own.curated == {"statins"} and own.used == set()
