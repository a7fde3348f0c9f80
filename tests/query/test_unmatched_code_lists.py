"""A code list that matches no row of its table in the store is named after the run, so a
column of zeros from a wrong list is not read as a result (on both engines, and by the
``pophealth dataset`` / ``measures`` commands)."""

from __future__ import annotations

import datetime as dt
import textwrap

import pytest
from typer.testing import CliRunner

from pophealth.cli import app
from pophealth.codelists import Codelist
from pophealth.query import Dataset, Measures, admissions, connect, events, medications
from pophealth.query.unmatched import unmatched_code_lists
from tests.spec.conftest import ENGINES, make_store

# hypertension as SNOMED CT core ids without terms: nothing tells a definition these are
# findings, so matched against prescriptions they are allowed — and find no issue
HTN_CORE_IDS = Codelist.of("snomedct", ["38341003"], name="htn_core_ids")
SALBUTAMOL = Codelist.of("dmd", ["39113611000001102"], name="salbutamol")
ASTHMA = Codelist.of("snomedct", ["195967001"], name="asthma")
STROKE_ICD = Codelist.of("icd10", ["I64"], name="stroke_icd")

TABLES = {
    "events": [
        {"patient_id": "p1", "date": dt.date(2019, 5, 1), "code": "195967001"},
        {"patient_id": "p2", "date": dt.date(2024, 5, 1), "code": "271649006"},
    ],
    "medications": [
        {"patient_id": "p1", "date": dt.date(2024, 1, 9), "code": "39113611000001102"},
    ],
    "admissions": [
        {
            "patient_id": "p2",
            "admission_date": dt.date(2024, 2, 1),
            "primary_diagnosis": "I10X",
            "all_diagnoses": ["I10X", "I64X"],
        },
    ],
}


def _dataset() -> Dataset:
    ds = Dataset()
    ds.define_population(events.exists_for_patient())
    ds.on_salbutamol = medications.matching(SALBUTAMOL).exists_for_patient()
    ds.on_htn_drugs = medications.matching(HTN_CORE_IDS).exists_for_patient()
    ds.asthma = events.matching(ASTHMA).exists_for_patient()
    ds.odd_code = events.where(events.code.is_in(["999999999"])).exists_for_patient()
    ds.bp_code = events.where(events.code.is_in(["271649006", "1"])).exists_for_patient()
    ds.stroke = admissions.matching(STROKE_ICD, "all_diagnoses").exists_for_patient()
    return ds


@pytest.mark.parametrize("engine", ENGINES)
def test_lists_matching_no_row_are_named_and_the_rest_are_not(engine, tmp_path):
    con = connect(make_store(tmp_path, TABLES), engine)
    said = unmatched_code_lists(con, _dataset())
    assert len(said) == 2, said
    htn, odd = said
    assert htn.startswith("variable 'on_htn_drugs': code list htn_core_ids matches no row")
    assert "of medications" in htn and "belongs on events" in htn
    assert odd.startswith("variable 'odd_code': code list events.code.is_in(1 code) matches")
    # the asthma code is matched though it is years old: any date counts
    assert not any(
        "salbutamol" in s or "'asthma'" in s or "stroke" in s or "bp_code" in s for s in said
    )


@pytest.mark.parametrize("engine", ENGINES)
def test_a_list_of_codes_in_a_list_column_is_tested_too(engine, tmp_path):
    con = connect(make_store(tmp_path, TABLES), engine)
    ds = Dataset()
    ds.define_population(events.exists_for_patient())
    ds.hip = admissions.matching(
        Codelist.of("icd10", ["S72"], name="hip_fracture"), "all_diagnoses"
    ).exists_for_patient()
    assert unmatched_code_lists(con, ds) == [
        "variable 'hip': code list hip_fracture matches no row of admissions in this store, "
        "at any date: check it is a list for admissions"
    ]


@pytest.mark.parametrize("engine", ENGINES)
def test_a_table_with_no_rows_is_said_once(engine, tmp_path):
    tables = {k: v for k, v in TABLES.items() if k != "medications"}
    con = connect(make_store(tmp_path, tables), engine)
    said = unmatched_code_lists(con, _dataset())
    assert said[0] == (
        "medications holds no rows in this store, so every code list matched against it "
        "finds nothing (variable 'on_salbutamol', variable 'on_htn_drugs')"
    )
    assert not any("htn_core_ids matches" in s for s in said)


@pytest.mark.parametrize("engine", ENGINES)
def test_measures_are_checked_by_measure(engine, tmp_path):
    con = connect(make_store(tmp_path, TABLES), engine)
    m = Measures(intervals=[(dt.date(2024, 1, 1), dt.date(2024, 12, 31))])
    m.define_measure(
        "treated",
        numerator=medications.matching(HTN_CORE_IDS).exists_for_patient(),
        denominator=events.matching(ASTHMA).exists_for_patient(),
    )
    said = unmatched_code_lists(con, m)
    assert len(said) == 1 and said[0].startswith("measure 'treated': code list htn_core_ids")


DEFINITION = """
from pophealth.codelists import Codelist
from pophealth.query import Dataset, events, medications

ds = Dataset()
ds.define_population(events.exists_for_patient())
ds.on_htn_drugs = medications.matching(
    Codelist.of("snomedct", ["38341003"], name="htn_core_ids")
).exists_for_patient()
"""


def test_the_dataset_command_prints_a_note(tmp_path):
    store = make_store(tmp_path, TABLES)
    definition = tmp_path / "def.py"
    definition.write_text(textwrap.dedent(DEFINITION))
    out = tmp_path / "out.csv"
    result = CliRunner().invoke(
        app,
        ["dataset", str(definition), "--store", str(store.path), "--output", str(out)],
        env={"COLUMNS": "400"},
    )
    assert result.exit_code == 0, result.output
    assert "note: variable 'on_htn_drugs': code list htn_core_ids matches no row" in (result.output)
    assert out.exists()


def test_a_list_read_in_several_places_is_named_once_with_its_readers(tmp_path):
    con = connect(make_store(tmp_path, TABLES), "duckdb")
    treated = medications.matching(HTN_CORE_IDS).exists_for_patient()
    m = Measures(intervals=[(dt.date(2024, 1, 1), dt.date(2024, 12, 31))])
    m.define_defaults(denominator=events.matching(ASTHMA).exists_for_patient())
    m.define_measure("treated", numerator=treated)
    m.define_measure("treated_again", numerator=treated)
    said = unmatched_code_lists(con, m)
    assert len(said) == 1
    assert said[0].startswith(
        "measure 'treated', measure 'treated_again': code list htn_core_ids matches no row"
    )


def test_a_row_datasets_own_rows_are_checked_too(tmp_path):
    """The rows a RowDataset gives one output row each come from a code list too: one that
    matches nothing makes an empty output that looks like a result, so it is named."""
    from pophealth.query import RowDataset

    con = connect(make_store(tmp_path, TABLES), "duckdb")
    per_spell = RowDataset(admissions.matching(STROKE_ICD, "all_diagnoses"))
    per_spell.asthma = events.matching(ASTHMA).exists_for_patient()
    assert unmatched_code_lists(con, per_spell) == []
    per_drug = RowDataset(medications.matching(HTN_CORE_IDS))  # a finding on prescriptions
    per_drug.asthma = events.matching(ASTHMA).exists_for_patient()
    said = unmatched_code_lists(con, per_drug)
    assert len(said) == 1 and said[0].startswith(
        "rows: code list htn_core_ids matches no row of medications"
    ), said


def test_a_quantile_over_rows_has_its_rows_checked(tmp_path):
    """A centile over the rows of a frame reads the frame's code list through ``rows=``, not
    through a breakdown: a list there that matches nothing is named too."""
    con = connect(make_store(tmp_path, TABLES), "duckdb")
    for codes, said in ((STROKE_ICD, 0), (Codelist.of("icd10", ["S72"], name="hip"), 1)):
        spells = admissions.matching(codes, "all_diagnoses")
        m = Measures(intervals=[(dt.date(2024, 1, 1), dt.date(2024, 12, 31))])
        m.define_quantile(
            "stay",
            value=spells.admission_date.days_until(dt.date(2025, 1, 1)),
            rows=spells,
            among=events.exists_for_patient(),
        )
        out = unmatched_code_lists(con, m)
        assert len(out) == said, out
        if said:
            assert out[0].startswith("measure 'stay': code list hip matches no row of admissions")
