"""A programme's code list that matches no record in the store is named in the report's
notes: what it feeds reads "none" for everyone, which is a data problem (a list that does
not fit how the practices code, a feed without that table), not a finding."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from pophealth.codelists import Codelist
from pophealth.programmes.asthma import AsthmaProgramme
from pophealth.programmes.asthma.codes import curated
from pophealth.programmes.asthma.programme import unmatched_codes
from pophealth.programmes.cvd import analyse, build_result
from pophealth.programmes.cvd.codelists import curated_codelists
from pophealth.synth import write_synthetic_store

INDEX = dt.date(2026, 3, 31)  # the synthetic extract date
#: fever (a finding no synthetic record carries), in place of a list the programme reads
FEVER = Codelist.of("snomedct", ["386661006"], name="fever_only")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_synthetic_store(
        tmp_path_factory.mktemp("unmatched") / "store", patients=2_000, seed=7
    )


def test_asthma_names_the_list_that_matches_nothing_and_only_it(store):
    con = store.connect("duckdb")
    assert unmatched_codes(con, curated()) == []
    codes = dataclasses.replace(curated(), review=FEVER)
    assert unmatched_codes(con, codes) == ["review (fever_only)"]
    result = AsthmaProgramme(codes=codes, sii_repetitions=200).run(
        con, index_date=INDEX, engine="duckdb"
    )
    notes = [n for n in result.sections[0].notes if "match no record" in n]
    assert len(notes) == 1 and notes[0].endswith(": review (fever_only).")


def test_asthma_reads_its_hospital_lists_in_the_hospital_tables(store):
    con = store.connect("duckdb")
    # the ICD-10 attack list matched against admissions' primary diagnosis, the A&E list
    # against attendances' diagnosis: a list moved to another table is named
    codes = curated()
    swapped = dataclasses.replace(codes, ed_asthma=codes.attack_icd10)
    assert unmatched_codes(con, swapped) == [f"ed_asthma ({codes.attack_icd10.name})"]


def test_cvd_names_the_role_whose_list_matches_nothing(store):
    con = store.connect("duckdb")
    lists = dataclasses.replace(curated_codelists(), heart_failure=FEVER)
    a = analyse(con, INDEX, codelists=lists, monthly_months=0)
    assert a.unmatched_codelists == ["heart_failure (fever_only)"]
    result = build_result(a, engine="duckdb")
    notes = [n for s in result.sections for n in s.notes if "match no record" in n]
    assert len(notes) == 1 and notes[0].endswith(": heart_failure (fever_only).")


def test_population_names_the_register_lists_that_match_nothing(store, tmp_path):
    from pophealth.codelists import codelist
    from pophealth.programmes.population import _unmatched_note
    from tests.spec.conftest import make_store

    assert _unmatched_note(store.connect("duckdb")) == []
    asthma_code = sorted(codelist("asthma_diagnosis").codes_in("snomedct"))[0]
    tiny = make_store(
        tmp_path, {"events": [{"patient_id": "p1", "date": INDEX, "code": asthma_code}]}
    )
    (note,) = _unmatched_note(tiny.connect("duckdb"))
    named = note.split(": ", 1)[1].rstrip(".").split(", ")
    assert "asthma_diagnosis" not in named
    assert {"asthma_resolved", "hypertension_diagnosis", "copd_diagnosis"} <= set(named)
