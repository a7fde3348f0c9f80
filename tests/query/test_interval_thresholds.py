"""The interval a date first falls under a threshold: ``_first_at_least`` compiled to SQL
(month arithmetic, with exceptions, or a binary search) equals a plain search in Python
for every day of four years, for thresholds that are month ends, month starts, month ends
shifted back a year (28 February 2024 is not a month end) and irregular dates."""

from __future__ import annotations

import bisect
import datetime as dt

import ibis
import pyarrow as pa
import pytest

from pophealth.query.measures import monthly, quarterly
from pophealth.query.timeline import _first_at_least, _regular_months, _shift

D = dt.date
ENDS = [e for _, e in monthly("2024-04-01", 24)]
STARTS = [s for s, _ in monthly("2024-04-01", 24)]
CASES = {
    "month ends": (ENDS, "end", []),
    "month starts": (STARTS, "start", []),
    "quarter ends": ([e for _, e in quarterly("2023-01-01", 8)], "end", []),
    # 28 Feb 2025 - 12 months = 28 Feb 2024, one day before that month's end
    "ends a year back": ([_shift(e, -12, "months") for e in ENDS], "end", [10]),
    "irregular": ([D(2024, 1, 5), D(2024, 1, 9), D(2024, 3, 1), D(2025, 7, 7)], None, None),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("strict", [False, True])
def test_first_threshold_at_or_above_each_day(name, strict):
    thresholds, kind, odd = CASES[name]
    regular = _regular_months(thresholds)
    if kind is None:
        assert regular is None
    else:
        assert (regular[0], regular[3]) == (kind, odd)
    days = [D(2022, 12, 1) + dt.timedelta(days=i) for i in range(4 * 366)]
    con = ibis.duckdb.connect()
    t = con.create_table("days", pa.table({"x": pa.array(days, pa.date32())}))
    got = con.execute(t.select("x", k=_first_at_least(t.x, thresholds, strict)))
    search = bisect.bisect_right if strict else bisect.bisect_left
    expected = [search(thresholds, d.date()) for d in got["x"]]
    assert got["k"].tolist() == expected
