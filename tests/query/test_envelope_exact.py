"""Many intervals read a frame's rows once, within the envelope of their windows (the first
window's start to the last's end), and drop the rows inside no interval's window. When the
windows leave no day of the envelope uncovered that second test is skipped
(``Timeline._envelope_is_exact``): here its decision is checked, day by day, against the
windows' own comparisons for every day of the envelope — windows with gaps between them
(7 days back from each month end, 30 days on from it) must keep the test, windows that
touch or overlap (12 months back, the interval itself) may skip it."""

from __future__ import annotations

import datetime as dt
import operator

import pytest

from pophealth.query import days, events, index_date, interval_start, months
from pophealth.query.measures import monthly, quarterly, weekly
from pophealth.query.timeline import Timeline

D = dt.date
DAY = dt.timedelta(days=1)
_OPS = {op: getattr(operator, op) for op in ("lt", "le", "gt", "ge", "eq")}

_LOW, _HIGH = {"eq": "ge"}, {"eq": "le"}

INTERVALS = {
    "months": monthly("2024-01-01", 14),
    "quarters": quarterly("2023-04-01", 6),
    "weeks": weekly("2024-02-05", 10),
    "one": monthly("2024-03-01", 1),
    # (sorted by start, the ends rising too; a gap between the second and third)
    "irregular": [
        (D(2024, 1, 1), D(2024, 1, 10)),
        (D(2024, 1, 5), D(2024, 1, 20)),
        (D(2024, 3, 1), D(2024, 3, 31)),
    ],  # fmt: skip
}
WINDOWS = {
    "7 days back": lambda: events.in_last(days=7),
    "30 days back": lambda: events.in_last(days=30),
    "5 weeks back": lambda: events.in_last(weeks=5),
    "12 months back": lambda: events.in_last(months=12),
    "1 month back": lambda: events.in_last(months=1),
    "30 days on": lambda: events.in_next(days=30),
    "the interval": lambda: events.in_interval(),
    "on or before": lambda: events.on_or_before(index_date),
    "on the day": lambda: events.where(events.date == index_date),
    "from the start, 2 weeks": lambda: events.where(
        (events.date >= interval_start) & (events.date < interval_start + days(14))
    ),
    "a month back to a week back": lambda: events.where(
        (events.date > index_date - months(1)) & (events.date <= index_date - days(7))
    ),
}


def _covered(tl: Timeline, ranges) -> tuple[bool, int]:
    """Whether every day of the envelope is inside some interval's window, by the windows'
    comparisons day by day; and how many days the envelope holds."""
    parts = [p for r in ranges for p in r.conjuncts()]
    assert all(p.kind == "cmp" for p in parts)
    lows = [(op, g) for _, op, g in (p.parts for p in parts) if op in ("gt", "ge", "eq")]
    highs = [(op, g) for _, op, g in (p.parts for p in parts) if op in ("lt", "le", "eq")]
    every = [g for _, _, g in (p.parts for p in parts)]
    lo = min(min(g) for g in every) - dt.timedelta(days=400)
    hi = max(max(g) for g in every) + dt.timedelta(days=400)
    day, held = lo, 0
    while day <= hi:
        # (as Timeline._envelope: "on the day" is from the first day to the last)
        in_envelope = all(_OPS[_LOW.get(op, op)](day, g[0]) for op, g in lows) and all(
            _OPS[_HIGH.get(op, op)](day, g[-1]) for op, g in highs
        )
        if in_envelope:
            held += 1
            inside = any(
                all(_OPS[op](day, g[k]) for _, op, g in (p.parts for p in parts))
                for k in range(tl.n)
            )
            if not inside:
                return False, held
        day += DAY
    return True, held


@pytest.mark.parametrize("window", list(WINDOWS))
@pytest.mark.parametrize("intervals", list(INTERVALS))
def test_the_row_test_is_skipped_only_when_the_windows_cover_the_envelope(intervals, window):
    tl = Timeline(None, INTERVALS[intervals])
    frame = WINDOWS[window]()
    _, dynamic = tl.c._split(frame._filters)
    ranges = [tl._range(f) for f in dynamic]
    covered, held = _covered(tl, ranges)
    assert held > 0
    assert tl._envelope_is_exact(ranges) is covered


@pytest.mark.parametrize(
    ("intervals", "window", "exact"),
    [
        ("months", "12 months back", True),
        ("months", "the interval", True),
        ("months", "7 days back", False),  # 24 Jan - 31 Jan, then 23 Feb - 29 Feb: a gap
        ("months", "30 days on", False),  # 31 March: after 1 - 30 March, before April's
        ("weeks", "on the day", False),
        ("one", "on the day", True),
        ("irregular", "the interval", False),  # 21 January - 29 February
    ],
)
def test_known_decisions(intervals, window, exact):
    tl = Timeline(None, INTERVALS[intervals])
    _, dynamic = tl.c._split(WINDOWS[window]()._filters)
    assert tl._envelope_is_exact([tl._range(f) for f in dynamic]) is exact


def test_a_row_value_that_is_not_a_date_keeps_the_test():
    """A date-and-time column (days no longer whole steps) is not decided by days."""
    from pophealth.query import emergency_attendances as ae

    tl = Timeline(None, INTERVALS["months"])
    frame = ae.where(ae.arrival_datetime.date > index_date - months(12))
    _, dynamic = tl.c._split(frame._filters)
    ranges = [tl._range(f) for f in dynamic]
    assert tl._envelope_is_exact(ranges) is True  # (its .date is a date)
    frame = ae.where(ae.arrival_datetime > index_date - months(12))
    _, dynamic = tl.c._split(frame._filters)
    try:
        ranges = [tl._range(f) for f in dynamic]
    except Exception:  # noqa: BLE001 - not a window the timeline takes: nothing to decide
        return
    assert tl._envelope_is_exact(ranges) is False
