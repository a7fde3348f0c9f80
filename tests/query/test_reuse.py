"""Runs on one connection share work: a dataset's per-patient values are remembered and a
later dataset or measure whose population lies within it reads them — with exactly the
answer it gives on a fresh connection, on DuckDB and on Spark."""

from __future__ import annotations

import datetime as dt

import ibis
import pandas as pd
import pytest

from pophealth.codelists import Codelist
from pophealth.query import (
    Dataset,
    Measures,
    connect,
    events,
    index_date,
    medications,
    patients,
    registrations,
    run_dataset,
    run_measures,
)
from pophealth.query.compile import Compiler, compile_patient_table, implies
from pophealth.query.model import QueryError
from tests.spec.conftest import ENGINES, make_store

D = dt.date
INDEX = D(2025, 3, 31)
HTN = Codelist.of("snomedct", ["38341003"], name="htn")
SBP = Codelist.of("snomedct", ["271649006"], name="sbp")
SABA = Codelist.of("dmd", ["222311000001102"], name="saba")


@pytest.fixture(params=ENGINES)
def engine(request) -> str:
    if request.param == "spark":
        from pophealth.engines import spark_session

        spark_session().conf.set("spark.sql.shuffle.partitions", "1")
    return request.param


def _tables():
    pats = [
        {"patient_id": str(i), "date_of_birth": D(1940 + 7 * i, 6, 1), "sex": "fm"[i % 2]}
        for i in range(1, 9)
    ]
    pats[7]["date_of_death"] = D(2024, 1, 1)  # patient 8 died
    regs = [
        {"patient_id": str(i), "practice_id": "A1", "start_date": D(2020, 1, 1)}
        for i in range(1, 9)
        if i != 5  # patient 5 is not registered
    ]
    ev = [
        {"patient_id": p, "date": d, "code": "38341003"}
        for p, d in [("1", D(2019, 5, 1)), ("2", D(2024, 2, 1)), ("5", D(2020, 1, 1))]
    ]
    ev += [
        {"patient_id": p, "date": d, "code": "271649006", "value": v}
        for p, d, v in [
            ("1", D(2025, 3, 20), 150.0),
            ("1", D(2025, 3, 20), 135.0),  # same day: the lowest counts
            ("2", D(2024, 12, 1), 128.0),
            ("3", D(2025, 3, 31), 160.0),  # on the index date
            ("4", D(2023, 1, 1), 120.0),  # too old
        ]
    ]
    meds = [
        {"patient_id": p, "date": d, "code": "222311000001102"}
        for p, d in [("1", D(2025, 1, 1)), ("1", D(2025, 2, 1)), ("3", D(2024, 11, 5))]
    ]
    return {"patients": pats, "registrations": regs, "events": ev, "medications": meds}


def _definitions():
    age = patients.age_on(index_date)
    cohort = registrations.registered_on(index_date) & patients.is_alive_on(index_date)
    cohort = cohort & (age >= 18)
    htn = events.matching(HTN).on_or_before(index_date).exists_for_patient()
    sbp = events.matching(SBP).in_last(months=12).last_day_for_patient(rule="min").value
    saba = medications.matching(SABA).in_last(months=12).count_for_patient()
    bp_today = events.matching(SBP).in_interval().exists_for_patient()
    ds = Dataset()
    ds.define_population(cohort)
    ds.age = age
    ds.sex = patients.sex
    ds.htn = htn
    ds.sbp = sbp
    ds.bp_today = bp_today  # in a dataset the "interval" is the index date itself
    return ds, cohort, htn, sbp, saba, bp_today, age


def _measures(cohort, htn, sbp, saba, bp_today, age, start=D(2024, 4, 1)):
    m = Measures(intervals=[(start, INDEX)])
    m.define_defaults(group_by={"sex": patients.sex})
    m.define_measure("bp_recorded", numerator=sbp.is_not_null(), denominator=cohort & htn)
    m.define_measure("bp_high", numerator=sbp >= 140, denominator=cohort & htn & (age >= 40))
    m.define_measure("saba", numerator=saba >= 2, denominator=cohort)
    # reads interval_start: a different value in the measure than in the dataset
    m.define_measure("bp_in_interval", numerator=bp_today, denominator=cohort)
    return m


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(list(df.columns[:4])).reset_index(drop=True)


def test_measures_after_dataset_on_one_connection_match_a_fresh_run(engine, tmp_path):
    store = make_store(tmp_path, _tables())
    ds, *parts = _definitions()
    fresh_data = run_dataset(store, ds, engine=engine, index_date=INDEX)
    fresh = run_measures(store, _measures(*parts), engine=engine, disclosure=False)

    con = connect(store, engine)
    data = run_dataset(con, ds, engine=engine, index_date=INDEX)
    assert len(con.patient_tables) == 1
    counts = run_measures(con, _measures(*parts), engine=engine, disclosure=False)
    pd.testing.assert_frame_equal(data, fresh_data)
    pd.testing.assert_frame_equal(_sorted(counts), _sorted(fresh))
    got = {
        (r.measure, r.sex): (r.numerator, r.denominator)
        for r in counts.itertuples()
        if r.measure in ("bp_recorded", "bp_in_interval")
    }
    # cohort: 1, 2, 3, 4, 6, 7 (5 unregistered, 8 dead); hypertensive: 1 (m), 2 (f)
    assert got[("bp_recorded", "m")] == (1, 1)
    assert got[("bp_recorded", "f")] == (1, 1)
    # readings in Apr 2024 - Mar 2025: 1 (m), 2 (f), 3 (m); not 4 (2023)
    assert got[("bp_in_interval", "m")] == (2, 3)
    assert got[("bp_in_interval", "f")] == (1, 3)
    # in the dataset the interval is the index date alone: only patient 3's reading
    assert dict(zip(data.patient_id, data.bp_today, strict=True)) == {
        "1": False,
        "2": False,
        "3": True,
        "4": False,
        "6": False,
        "7": False,
    }


def test_a_measure_within_the_dataset_population_reads_the_remembered_values(tmp_path):
    store = make_store(tmp_path, _tables())
    ds, cohort, htn, sbp, saba, bp_today, age = _definitions()
    con = connect(store)
    run_dataset(con, ds, index_date=INDEX)
    keep = (cohort & htn) | (cohort & (saba >= 2))
    compiler = Compiler(con, index_date=INDEX)
    assert con.patient_tables.find(compiler, keep) is not None
    sql = str(ibis.to_sql(compile_patient_table(compiler, {"n": sbp, "s": saba}, keep)))
    # the population and the dataset's values come from the remembered table: only the
    # new value (medications) is computed
    assert "registrations" not in sql
    assert '"events"' not in sql
    assert '"medications"' in sql

    # not within the dataset's population, or another index date: computed afresh
    wider = cohort | htn
    assert con.patient_tables.find(Compiler(con, index_date=INDEX), wider) is None
    other_day = Compiler(con, index_date=INDEX - dt.timedelta(days=1))
    assert con.patient_tables.find(other_day, cohort & htn) is None
    assert run_dataset(store, _with_population(ds, wider), index_date=INDEX).equals(
        run_dataset(con, _with_population(ds, wider), index_date=INDEX)
    )
    con.forget()
    assert len(con.patient_tables) == 0


def _with_population(ds: Dataset, population) -> Dataset:
    out = Dataset()
    out.define_population(population)
    for name, value in ds.variables.items():
        out.add(name, value)
    return out


def test_a_second_dataset_on_one_connection(engine, tmp_path):
    store = make_store(tmp_path, _tables())
    ds, cohort, htn, sbp, saba, bp_today, age = _definitions()
    con = connect(store, engine)
    run_dataset(con, ds, engine=engine, index_date=INDEX)
    narrower = _with_population(ds, cohort & htn)
    narrower.saba = saba  # a new value, computed for the narrower population only
    got = run_dataset(con, narrower, engine=engine, index_date=INDEX)
    want = run_dataset(store, narrower, engine=engine, index_date=INDEX)
    pd.testing.assert_frame_equal(got, want)
    assert list(got.patient_id) == ["1", "2"]
    assert list(got.saba) == [2, 0]
    # the same dataset again: every value remembered, nothing new kept
    kept = len(con.patient_tables)
    pd.testing.assert_frame_equal(run_dataset(con, narrower, engine=engine, index_date=INDEX), want)
    assert len(con.patient_tables) == kept


def test_reuse_can_be_turned_off(tmp_path):
    store = make_store(tmp_path, _tables())
    ds, *_ = _definitions()
    con = connect(store, reuse=False)
    run_dataset(con, ds, index_date=INDEX)
    assert con.patient_tables is None


def test_implies_judges_the_shape_of_the_rules():
    a = registrations.registered_on(index_date)
    b = events.matching(HTN).exists_for_patient()
    c = patients.age_on(index_date) >= 18
    assert implies(a & b, a)
    assert implies((a & c) & b, a & c)
    assert implies(b & (c & a), a & c)
    assert implies((a & b) | (a & c), a)
    assert not implies((a & b) | c, a)
    assert not implies(a | b, a)
    assert not implies(a, a & b)
    assert not implies(~a, a)


def test_a_dataset_told_of_the_measures_computes_their_values_in_its_passes(engine, tmp_path):
    store = make_store(tmp_path, _tables())
    ds, *parts = _definitions()
    cohort, saba = parts[0], parts[3]
    measures = _measures(*parts)
    fresh_data = run_dataset(store, ds, engine=engine, index_date=INDEX)
    fresh = run_measures(store, measures, engine=engine, disclosure=False)

    con = connect(store, engine)
    data = run_dataset(con, ds, engine=engine, index_date=INDEX, measures=measures)
    pd.testing.assert_frame_equal(data, fresh_data)  # the extra values are not output
    # saba (medications) is not a dataset variable: remembered for the measures
    compiler = Compiler(con, index_date=INDEX, interval_start=D(2024, 4, 1))
    keep = cohort & (saba >= 2)
    sql = str(ibis.to_sql(compile_patient_table(compiler, {"s": saba}, keep)))
    assert '"medications"' not in sql
    assert '"events"' not in sql
    counts = run_measures(con, measures, engine=engine, disclosure=False)
    pd.testing.assert_frame_equal(_sorted(counts), _sorted(fresh))


def test_only_measures_a_dataset_can_serve_are_computed_with_it(tmp_path):
    from pophealth.query.measures import shared_values

    store = make_store(tmp_path, _tables())
    ds, cohort, htn, sbp, saba, bp_today, age = _definitions()
    m = Measures(intervals=[(D(2024, 4, 1), INDEX)])
    m.define_measure("within", numerator=saba >= 2, denominator=cohort & htn)
    m.define_measure("wider", numerator=saba >= 1, denominator=htn)  # not within the cohort
    m.define_measure(
        "other_day",
        numerator=saba >= 3,
        denominator=cohort,
        intervals=[(D(2024, 1, 1), D(2024, 12, 31))],
    )
    got = {s.key for s in shared_values(m, INDEX, ds.population)}
    assert got == {(saba >= 2).key, (cohort & htn).key}
    with pytest.raises(QueryError, match="connection"):
        run_dataset(store, ds, index_date=INDEX, measures=m)  # nothing would be kept
    with pytest.raises(TypeError, match="Measures"):
        run_dataset(connect(store), ds, index_date=INDEX, measures=[m])


def test_a_has_a_row_part_of_the_population_is_a_semi_join(engine, tmp_path):
    store = make_store(tmp_path, _tables())
    ds, cohort, htn, *_ = _definitions()
    registered = registrations.registered_on(index_date)
    ds.registered = registered  # true for every patient of the population
    ds.not_registered = ~registered
    compiler = Compiler(connect(store, engine), index_date=INDEX)
    sql = str(ibis.to_sql(compile_patient_table(compiler, ds.variables, ds.population)))
    assert "SEMI JOIN" in sql.upper()
    got = run_dataset(store, ds, engine=engine, index_date=INDEX)
    assert list(got.patient_id) == ["1", "2", "3", "4", "6", "7"]
    assert got.registered.all() and not got.not_registered.any()
    # a register as the population, with another aggregate of its table
    reg = Dataset()
    reg.define_population(cohort & htn & (events.matching(SBP).count_for_patient() >= 1))
    reg.htn_codes = events.matching(HTN).count_for_patient()
    got = run_dataset(store, reg, engine=engine, index_date=INDEX)
    assert dict(zip(got.patient_id, got.htn_codes, strict=True)) == {"1": 1, "2": 1}
    reg = Dataset()  # (a dataset has one population rule: a second one is refused)
    reg.define_population(cohort & htn)
    reg.htn_codes = events.matching(HTN).count_for_patient()
    got = run_dataset(store, reg, engine=engine, index_date=INDEX)
    assert dict(zip(got.patient_id, got.htn_codes, strict=True)) == {"1": 1, "2": 1}
