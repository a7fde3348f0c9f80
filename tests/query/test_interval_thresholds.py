"""The interval a date first falls under a threshold: ``_first_at_least`` compiled to SQL
(month arithmetic, with exceptions; day arithmetic over runs evenly spaced in days; or a
binary search) equals a plain search in Python for every day of four years, for
thresholds that are month ends, month starts, month ends shifted back a year (28 February
2024 is not a month end), week ends, week ends a year back across 29 February, days, the
same date repeated, and irregular dates."""

from __future__ import annotations

import bisect
import datetime as dt
import importlib.util

import ibis
import pyarrow as pa
import pytest

from pophealth.query.measures import monthly, quarterly
from pophealth.query.timeline import (
    MAX_DAY_SEGMENTS,
    _day_segments,
    _first_at_least,
    _regular_months,
    _shift,
)

D = dt.date
ENDS = [e for _, e in monthly("2024-04-01", 24)]
STARTS = [s for s, _ in monthly("2024-04-01", 24)]
WEEK_ENDS = [D(2023, 6, 4) + dt.timedelta(weeks=k) for k in range(60)]  # to 21 Jul 2024
SPREAD = [D(2023, 1, 1) + dt.timedelta(days=k * k) for k in range(40)]  # no two steps alike
CASES = {
    "month ends": (ENDS, "end", []),
    "month starts": (STARTS, "start", []),
    "quarter ends": ([e for _, e in quarterly("2023-01-01", 8)], "end", []),
    # 28 Feb 2025 - 12 months = 28 Feb 2024, one day before that month's end
    "ends a year back": ([_shift(e, -12, "months") for e in ENDS], "end", [10]),
    "irregular": ([D(2024, 1, 5), D(2024, 1, 9), D(2024, 3, 1), D(2025, 7, 7)], None, None),
    "week ends": (WEEK_ENDS, None, [(D(2023, 6, 4), 7, 60)]),
    # 3 Mar 2024 - 12 months = 3 Mar 2023, 366 days back; 25 Feb 2024: 365 days back
    "week ends a year back": (
        [_shift(e, -12, "months") for e in WEEK_ENDS],
        None,
        [(D(2022, 6, 4), 7, 39), (D(2023, 3, 3), 7, 21)],
    ),
    "days": ([D(2024, 2, 20) + dt.timedelta(days=k) for k in range(20)], None, None),
    "one date repeated, then weekly": (
        [D(2024, 1, 1)] * 3 + [D(2024, 1, 8), D(2024, 1, 15)],
        None,
        [(D(2024, 1, 1), 0, 3), (D(2024, 1, 8), 7, 2)],
    ),
    "many steps: binary search": (SPREAD, None, None),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("strict", [False, True])
def test_first_threshold_at_or_above_each_day(name, strict):
    thresholds, kind, odd = CASES[name]
    regular = _regular_months(thresholds)
    if kind is None:
        assert regular is None
        if odd is not None:  # here: the runs evenly spaced in days
            assert _day_segments(thresholds) == odd
    else:
        assert (regular[0], regular[3]) == (kind, odd)
    if name == "many steps: binary search":
        assert _day_segments(thresholds) is None and len(thresholds) > MAX_DAY_SEGMENTS
    days = [D(2022, 12, 1) + dt.timedelta(days=i) for i in range(4 * 366)]
    con = ibis.duckdb.connect()
    t = con.create_table("days", pa.table({"x": pa.array(days, pa.date32())}))
    got = con.execute(t.select("x", k=_first_at_least(t.x, thresholds, strict)))
    search = bisect.bisect_right if strict else bisect.bisect_left
    expected = [search(thresholds, d.date()) for d in got["x"]]
    assert got["k"].tolist() == expected


@pytest.mark.spark
@pytest.mark.skipif(importlib.util.find_spec("pyspark") is None, reason="pyspark not installed")
@pytest.mark.parametrize("name", ["week ends a year back", "one date repeated, then weekly"])
def test_day_arithmetic_on_spark(name):
    """The day arithmetic gives Spark the same answers (its date difference and whole-number
    division): every day of two years around the thresholds."""
    from pophealth.engines import backend

    thresholds, _, _ = CASES[name]
    days = [D(2022, 5, 1) + dt.timedelta(days=i) for i in range(2 * 366)]
    t = ibis.memtable(pa.table({"x": pa.array(days, pa.date32())}))
    con = backend("spark")
    for strict in (False, True):
        got = con.execute(t.select("x", k=_first_at_least(t.x, thresholds, strict)))
        got = got.sort_values("x")
        search = bisect.bisect_right if strict else bisect.bisect_left
        assert got["k"].tolist() == [search(thresholds, d) for d in days]
