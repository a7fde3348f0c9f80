"""Differential test: a measure over n intervals (interval masks, change-point evaluation,
or the paired fallback when neither applies) gives exactly the counts of n separate
single-interval runs — for random small stores and random compositions of the vocabulary.
Where masks apply, change points are checked too.

DuckDB runs a deterministic sample of 4 cases by default (``POPHEALTH_INTERVAL_EXAMPLES``
for a longer hunt) and 40 among the slow tests, which CI runs after the default run; a
smaller sample runs on Spark too.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pophealth.query import (
    Measures,
    addresses,
    case,
    days,
    events,
    index_date,
    interval_start,
    medications,
    monthly,
    months,
    patients,
    quarterly,
    registrations,
    run_measures,
    weekly,
)
from pophealth.query.timeline import Timeline
from tests.spec.conftest import HAVE_SPARK, make_store
from tests.spec.test_differential import OTHER, SABA, SBP, _frames, tables

#: examples drawn by the default run, and by the slow run CI makes after it
EXAMPLES = int(os.environ.get("POPHEALTH_INTERVAL_EXAMPLES", "4"))
SLOW_EXAMPLES = 40
D = dt.date


def _frame(draw):
    if draw(st.booleans()):
        return _frames(draw)
    bp = events.matching(SBP)
    return draw(
        st.sampled_from(
            [
                bp.in_interval(),
                bp.on(index_date),
                bp.between(interval_start - months(2), index_date - days(3)),
                bp.in_last(days=45),
                bp.where(events.value >= 140).in_last(months=6),
                bp.where(events.date <= index_date - months(1)),
                bp.between(D(2024, 3, 15), index_date),
                # the same window as bp.in_last(months=12) on other rows: one shared pass
                events.where(events.code == OTHER).in_last(months=12),
                bp.where((events.date <= index_date) & (events.value >= 140)),
            ]
        )
    )


@st.composite
def condition(draw):
    """A True/False per patient and interval."""
    frame = _frame(draw)
    kind = draw(st.integers(0, 11))
    if kind == 0:
        return frame.exists_for_patient()
    if kind == 1:  # a count compared with a whole number by any operator
        n, c = frame.count_for_patient(), draw(st.integers(0, 3))
        op = draw(st.sampled_from(["ge", "gt", "le", "lt", "eq", "ne"]))
        return {"ge": n >= c, "gt": n > c, "le": n <= c, "lt": n < c, "eq": n == c}.get(op, n != c)
    if kind == 2:
        return registrations.registered_on(index_date)
    if kind == 3:
        return patients.is_alive_on(index_date - days(draw(st.integers(0, 60))))
    if kind == 4:
        return patients.age_on(index_date) >= draw(st.integers(0, 95))
    if kind == 5:
        v = frame.last_day_for_patient(rule=draw(st.sampled_from(["min", "max", "mean"]))).value
        return v < 150
    if kind == 6:
        saba = medications.matching(SABA).in_last(months=draw(st.integers(1, 13)))
        return saba.sum_for_patient(saba.quantity) >= 2
    if kind == 7:
        return frame.first_day_for_patient().date <= D(2024, 6, 1)
    if kind == 8:
        return frame.maximum_for_patient() > 150
    if kind == 9:
        return (frame.count_days_for_patient() > 1) | (patients.sex == "female")
    if kind == 10:  # the negation of a value that is missing in some intervals stays missing
        return ~(frame.last_day_for_patient().value < 150)
    # two interval-dependent conditions combined, one negated
    other = registrations.registered_on(index_date)
    return (
        frame.exists_for_patient() & ~other
        if draw(st.booleans())
        else ~frame.exists_for_patient() | other
    )


@st.composite
def group(draw):
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return patients.age_band_on(index_date)
    if kind == 1:
        return registrations.practice_on(index_date).practice_id
    if kind == 2:
        return addresses.area_on(index_date).group("imd_quintile")
    if kind == 3:
        return addresses.area_on(index_date).status
    v = _frame(draw).last_for_patient().value
    return case((v > 160, "high"), (v > 120, "mid"), otherwise="low")


@st.composite
def intervals(draw):
    kind = draw(st.integers(0, 4))
    start = D(2024, draw(st.integers(1, 12)), 1)
    if kind == 0:
        return monthly(start, draw(st.integers(2, 8)))
    if kind == 4:  # weeks (thresholds evenly spaced in days; a year back across 29 Feb)
        return weekly(start + dt.timedelta(days=draw(st.integers(0, 6))), draw(st.integers(2, 8)))
    if kind == 1:
        return quarterly(start, draw(st.integers(2, 4)))
    ivs = monthly(start, draw(st.integers(2, 4)))
    if kind == 2:  # unsorted: sorted internally
        return list(reversed(ivs))
    return [*ivs, (ivs[0][0], ivs[-1][1])]  # one interval holds the others: paired


def _measures(ivs, spec):
    m = Measures(intervals=ivs)
    for i, (num, den, groups, count) in enumerate(spec):
        if count:
            num = events.matching(SBP).in_interval().count_for_patient()
        m.define_measure(
            f"m{i}",
            numerator=num,
            denominator=den,
            group_by={f"g{j}": g for j, g in enumerate(groups)},
        )
    return m


def _key(df: pd.DataFrame) -> pd.DataFrame:
    groups = sorted(c for c in df.columns if c.startswith("g"))
    cols = ["measure", "interval_start", "interval_end", *groups]
    out = df[[*cols, "numerator", "denominator"]].copy()
    out[groups] = out[groups].astype(object).where(out[groups].notna(), None)
    out["numerator"] = out["numerator"].astype("int64")
    out["denominator"] = out["denominator"].astype("int64")
    return out.sort_values(cols, key=lambda s: s.astype(str)).reset_index(drop=True)


def check(store, ivs, spec, engine: str) -> str:
    """Run over all intervals, then each interval alone; assert equal; the path used."""
    together = run_measures(store, _measures(ivs, spec), engine=engine, disclosure=False)
    Timeline.use_masks = False  # and at change points, where masks apply
    try:
        points = run_measures(store, _measures(ivs, spec), engine=engine, disclosure=False)
    finally:
        Timeline.use_masks = True
    alone = [
        run_measures(store, _measures([iv], spec), engine=engine, disclosure=False) for iv in ivs
    ]
    expected = _key(pd.concat(alone, ignore_index=True))
    got = _key(together)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    pd.testing.assert_frame_equal(_key(points), expected, check_dtype=False)
    return next(iter(together.attrs["evaluation"].values()), "none")


measure_spec = st.lists(
    st.tuples(
        condition(),
        condition(),
        st.lists(group(), max_size=2),
        st.booleans(),
    ),
    min_size=1,
    max_size=3,
)


def _on_duckdb(examples: int):
    """The differential check on DuckDB over ``examples`` drawn cases."""

    @settings(
        max_examples=examples,
        derandomize=True,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(data=tables(), ivs=intervals(), spec=measure_spec)
    def test(data, ivs, spec):
        with tempfile.TemporaryDirectory() as tmp:
            store = make_store(Path(tmp), data)
            check(store, ivs, spec, "duckdb")

    return test


test_many_intervals_equal_one_at_a_time_duckdb = _on_duckdb(EXAMPLES)
test_many_intervals_equal_one_at_a_time_duckdb_more_cases = pytest.mark.slow(
    _on_duckdb(SLOW_EXAMPLES)
)


@pytest.mark.spark
@pytest.mark.skipif(not HAVE_SPARK, reason="pyspark not installed")
@settings(
    max_examples=int(os.environ.get("POPHEALTH_INTERVAL_SPARK_EXAMPLES", "1")),
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=tables(), spec=measure_spec)
def test_many_intervals_equal_one_at_a_time_spark(data, spec):
    from pophealth.engines import spark_session

    spark_session().conf.set("spark.sql.shuffle.partitions", "1")
    with tempfile.TemporaryDirectory() as tmp:
        store = make_store(Path(tmp), data)
        check(store, monthly("2024-12-01", 2), spec, "spark")
