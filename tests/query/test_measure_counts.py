"""Every measure of a run counted in one aggregate query per breakdown, and conditions known
to hold on a remembered population's rows read as true — the same answers as before, with
different breakdowns, ratio measures, and on a connection that remembers."""

from __future__ import annotations

import datetime as dt

import ibis
import pandas as pd
import pytest

from pophealth.query import Measures, connect, events, run_dataset, run_measures
from pophealth.query.compile import Compiler, compile_patient_table
from pophealth.query.measures import _any_of
from tests.query.test_reuse import INDEX, SBP, _definitions, _tables
from tests.spec.conftest import ENGINES, make_store

D = dt.date


@pytest.fixture(params=ENGINES)
def engine(request) -> str:
    if request.param == "spark":
        from pophealth.engines import spark_session

        spark_session().conf.set("spark.sql.shuffle.partitions", "1")
    return request.param


def _mixed(cohort, htn, sbp, saba, bp_today, age):
    from pophealth.query import patients

    readings = events.matching(SBP).in_last(months=12).count_for_patient()
    m = Measures(intervals=[(D(2024, 4, 1), INDEX)])
    m.define_measure(
        "bp_by_sex", numerator=sbp.is_not_null(), denominator=cohort, group_by={"sex": patients.sex}
    )
    m.define_measure(  # another breakdown: a second aggregate over the same patients
        "bp_by_age", numerator=sbp.is_not_null(), denominator=cohort, group_by={"over60": age > 60}
    )
    m.define_measure(  # a ratio of sums (a count is never missing: every patient counts)
        "readings_per_saba",
        numerator=readings,
        denominator=saba,
        group_by={"sex": patients.sex},
    )
    m.define_measure(  # no breakdown at all
        "htn_total", numerator=htn, denominator=cohort & (age >= 40), group_by={}
    )
    return m


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    cols = ["measure", "sex", "over60"]
    return df.sort_values(cols, na_position="first").reset_index(drop=True)


def test_mixed_breakdowns_and_ratios_count_as_by_hand(engine, tmp_path):
    store = make_store(tmp_path, _tables())
    ds, *parts = _definitions()
    fresh = run_measures(store, _mixed(*parts), engine=engine, disclosure=False)
    con = connect(store, engine)
    run_dataset(con, ds, engine=engine, index_date=INDEX)
    shared = run_measures(con, _mixed(*parts), engine=engine, disclosure=False)
    pd.testing.assert_frame_equal(_sorted(shared), _sorted(fresh))

    got = {(r.measure, r.sex, r.over60): (r.numerator, r.denominator) for r in fresh.itertuples()}
    # cohort (sex, age): 1 (m, 77), 2 (f, 70), 3 (m, 63), 4 (f, 56), 6 (f, 42), 7 (m, 35)
    # readings in the 12 months: 1, 2, 3 (not 4: 2023)
    assert got[("bp_by_sex", "m", None)] == (2, 3)
    assert got[("bp_by_sex", "f", None)] == (1, 3)
    assert got[("bp_by_age", None, "true")] == (3, 3)
    assert got[("bp_by_age", None, "false")] == (0, 3)
    # 40+: 1, 2, 3, 4, 6; hypertensive: 1 and 2
    assert got[("htn_total", None, None)] == (2, 5)
    # ratio over every patient (m: 1, 3, 5, 7; f: 2, 4, 6, 8): readings / SABA issues
    assert got[("readings_per_saba", "m", None)] == (3, 3)
    assert got[("readings_per_saba", "f", None)] == (1, 0)
    assert set(fresh.measure) == {"bp_by_sex", "bp_by_age", "readings_per_saba", "htn_total"}


def test_the_remembered_population_is_not_evaluated_again(tmp_path):
    store = make_store(tmp_path, _tables())
    ds, cohort, htn, sbp, saba, bp_today, age = _definitions()
    con = connect(store)
    run_dataset(con, ds, index_date=INDEX)
    population = (cohort & htn) | (cohort & (age >= 40) & htn)
    compiler = Compiler(con, index_date=INDEX)
    expr = compile_patient_table(
        compiler, {"den": cohort & htn, "in_cohort": cohort, "old": age >= 75}, population
    )
    sql = str(ibis.to_sql(expr))
    # the cohort's age >= 18 is known to hold on the remembered rows: evaluated only for
    # the variable that is the cohort rule itself (kept as computed), not in the others
    assert sql.count(">= 18") == 1
    assert ">= 75" in sql
    got = expr.to_pandas().sort_values("patient_id").reset_index(drop=True)
    assert list(got.patient_id) == ["1", "2"]
    assert list(got.den) == [True, True]
    assert list(got.in_cohort) == [True, True]
    assert list(got.old) == [True, False]


def test_any_of_drops_repeats_and_conditions_inside_others():
    _, cohort, htn, sbp, saba, bp_today, age = _definitions()
    a, b = cohort & htn, cohort & htn & (age >= 40)
    assert _any_of([a, b, a]).key == a.key
    assert _any_of([b, a]).key == a.key
    assert _any_of([htn & cohort, cohort & htn]).key == (htn & cohort).key  # the first kept
    both = _any_of([a, saba >= 2])
    assert both.op == "or"


def test_a_measure_with_no_patients_has_no_rows_beside_one_with_patients(tmp_path):
    store = make_store(tmp_path, _tables())
    _, cohort, htn, sbp, saba, bp_today, age = _definitions()
    m = Measures(intervals=[(D(2024, 4, 1), INDEX)])
    m.define_measure("nobody", numerator=htn, denominator=cohort & (age >= 200), group_by={})
    m.define_measure("someone", numerator=htn, denominator=cohort, group_by={})
    got = run_measures(store, m, disclosure=False)
    assert list(got.measure) == ["someone"]
    assert (got.numerator.iloc[0], got.denominator.iloc[0]) == (2, 6)
    assert got.interval_start.iloc[0] == D(2024, 4, 1)
