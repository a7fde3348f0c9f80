"""First/last day with a same-day rule, several frames of one table at one index date:
computed in one pass over the table (rows matching several frames, a missing value on the
chosen day, first and last, every rule), on DuckDB and on Spark; and sources restricted
to the population only when the population is selective."""

from __future__ import annotations

import datetime as dt

import ibis
import pytest

from pophealth.codelists import Codelist
from pophealth.query import (
    Dataset,
    connect,
    events,
    index_date,
    medications,
    patients,
    registrations,
)
from pophealth.query.compile import Compiler, compile_patient_table
from tests.spec.conftest import ENGINES, make_store, run

D = dt.date
INDEX = D(2025, 3, 31)
SBP = Codelist.of("snomedct", ["271649006"], name="sbp")
DBP = Codelist.of("snomedct", ["271650006"], name="dbp")
BP = Codelist.of("snomedct", ["271649006", "271650006"], name="bp")


@pytest.fixture(params=ENGINES)
def engine(request) -> str:
    if request.param == "spark":
        from pophealth.engines import spark_session

        spark_session().conf.set("spark.sql.shuffle.partitions", "1")
    return request.param


def _ev(p, d, code, v):
    return {"patient_id": p, "date": d, "code": code, "value": v}


S, Dia = "271649006", "271650006"
TABLES = {
    "patients": [{"patient_id": p, "date_of_birth": D(1960, 1, 1)} for p in "1234"],
    "events": [
        _ev("1", D(2020, 5, 1), S, 100.0),  # outside the 12 months
        _ev("1", D(2025, 2, 1), S, 120.0),
        _ev("1", D(2025, 3, 1), S, 150.0),
        _ev("1", D(2025, 3, 1), S, 140.0),
        _ev("1", D(2025, 1, 15), Dia, 80.0),
        _ev("1", D(2025, 3, 1), Dia, 90.0),
        _ev("1", D(2025, 3, 1), Dia, 70.0),
        _ev("2", D(2025, 3, 5), S, 130.0),
        _ev("2", D(2025, 3, 10), S, None),  # the last day's only reading has no value
        _ev("4", D(2024, 3, 31), Dia, 85.0),  # exactly 12 months before: outside
        _ev("4", D(2025, 3, 31), Dia, 75.0),  # on the index date: inside
    ],
}


def _variables():
    sbp = events.matching(SBP).in_last(months=12)
    dbp = events.matching(DBP).in_last(months=12)
    bp = events.matching(BP).in_last(months=12)
    since_birth = events.matching(SBP).where(events.date >= patients.date_of_birth)
    return {
        "sbp_last_min": sbp.last_day_for_patient(rule="min").value,
        "sbp_last_date": sbp.last_day_for_patient(rule="min").date,
        "sbp_first_max": sbp.first_day_for_patient(rule="max").value,
        "dbp_last_mean": dbp.last_day_for_patient(rule="mean").value,
        "bp_last_max": bp.last_day_for_patient(rule="max").value,
        "sbp_ever_first": events.matching(SBP).first_day_for_patient(rule="min").date,
        # reads a per-patient value: computed on its own, the same way
        "since_birth_min": since_birth.last_day_for_patient(rule="min").value,
    }


def test_first_and_last_days_of_several_frames(engine, tmp_path):
    got = run(engine, tmp_path, TABLES, _variables(), index_date=INDEX)
    none = dict.fromkeys(_variables())
    assert got["1"] == {
        "sbp_last_min": 140.0,
        "sbp_last_date": D(2025, 3, 1),
        "sbp_first_max": 120.0,
        "dbp_last_mean": 80.0,
        "bp_last_max": 150.0,
        "sbp_ever_first": D(2020, 5, 1),
        "since_birth_min": 140.0,
    }
    assert got["2"] == {
        **none,
        "sbp_last_date": D(2025, 3, 10),
        "sbp_first_max": 130.0,
        "sbp_ever_first": D(2025, 3, 5),
    }
    assert got["3"] == none
    assert got["4"] == {**none, "dbp_last_mean": 75.0, "bp_last_max": 75.0}


def test_row_only_frames_of_one_table_share_one_scan(tmp_path):
    store = make_store(tmp_path, TABLES)
    variables = {k: v for k, v in _variables().items() if k != "since_birth_min"}
    compiler = Compiler(connect(store), index_date=INDEX)
    sql = str(ibis.to_sql(compile_patient_table(compiler, variables, None)))
    assert sql.count('FROM "events"') == 1


def _restricted(store, population) -> bool:
    """Whether a variable's rows (of a table the population does not read) are semi-joined
    to the population (the population may itself use semi-joins: "registered" does)."""

    def semi_joins(variables) -> int:
        compiler = Compiler(connect(store), index_date=INDEX)
        expr = compile_patient_table(compiler, variables, population)
        return str(ibis.to_sql(expr)).upper().count("SEMI JOIN")

    saba = Codelist.of("dmd", ["222311000001102"], name="saba")
    return semi_joins({"saba": medications.matching(saba).count_for_patient()}) > semi_joins({})


def test_sources_are_restricted_to_a_selective_population_only(tmp_path):
    store = make_store(tmp_path, TABLES)
    broad = registrations.registered_on(index_date) & (patients.age_on(index_date) >= 18)
    register = broad & events.matching(DBP).exists_for_patient()
    assert not _restricted(store, broad)
    assert _restricted(store, register)
    ds = Dataset()
    ds.define_population(patients.age_on(index_date) >= 18)
    ds.n = events.matching(BP).count_for_patient()
    got = run("duckdb", tmp_path / "b", TABLES, ds.variables, population=ds.population)
    assert {p: r["n"] for p, r in got.items()} == {"1": 7, "2": 2, "3": 0, "4": 2}
