"""Spec: predicate abstraction of runs — adjacent runs whose values give the same outcome
for every predicate the measures apply to them are merged, so a count only makes a change
point when it crosses its threshold and a blood pressure when it crosses 140, appears or
leaves the window; a value read as is (a breakdown by it) keeps every run. The counts stay
those of one run per interval."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from pophealth.query import (
    Measures,
    events,
    index_date,
    medications,
    monthly,
    registrations,
    run_measures,
)
from pophealth.query.timeline import Timeline
from tests.spec.conftest import ENGINES, make_store
from tests.spec.test_intervals import SABA, SBP, _bp, _registered, _spec_of
from tests.spec.test_intervals_differential import check

D = dt.date
IVS = monthly("2024-01-01", 8)  # month ends 31 Jan .. 31 Aug 2024
ENDS = [e for _, e in IVS]


def _store(tmp_path):
    issues = [D(2024, 1, 5), D(2024, 2, 5), D(2024, 3, 5), D(2024, 4, 25)]
    issues += [D(2024, 7, 5), D(2024, 7, 6), D(2024, 7, 7)]
    return make_store(
        tmp_path,
        {
            "registrations": _registered(["a", "b", "c", "d"]),
            "events": [
                # b: high, higher, higher (one side of 140), then low, then a reading
                # without a value (null)
                _bp("b", D(2024, 1, 10), 150.0),
                _bp("b", D(2024, 2, 10), 160.0),
                _bp("b", D(2024, 3, 10), 170.0),
                _bp("b", D(2024, 5, 10), 130.0),
                _bp("b", D(2024, 6, 10), 135.0),
                _bp("b", D(2024, 7, 10), None),
                # c: null, then a value
                _bp("c", D(2024, 2, 1), None),
                _bp("c", D(2024, 4, 1), 145.0),
            ],
            # a: SABA issues in the last 3 months 1, 2, 3, 3, 2, 1, 3, 3 — across 3 and back
            "medications": [
                {"patient_id": "a", "date": d, "code": "39113611000001102"} for d in issues
            ],
        },
    )


def _measures(raw_breakdown: bool) -> Measures:
    sbp = events.matching(SBP).in_last(months=12).last_day_for_patient().value
    saba_3m = medications.matching(SABA).in_last(months=3).count_for_patient()
    m = Measures(intervals=IVS)
    m.define_defaults(denominator=registrations.registered_on(index_date))
    m.define_measure("saba_ge3", numerator=saba_3m >= 3)
    m.define_measure("bp_high", numerator=sbp >= 140)
    m.define_measure("bp_known", numerator=sbp.is_not_null())
    if raw_breakdown:  # the same leaf read as a value: its runs are kept as they are
        m.define_measure("bp_by_value", numerator=sbp < 140, group_by={"g_sbp": sbp})
    return m


def _points(monkeypatch, store, m, engine: str, merge: bool) -> tuple[int, pd.DataFrame]:
    """The evaluation points (patient x change point) and the result."""
    seen = []
    original = Timeline.counts

    def counting(self, variables, keep):
        wide = original(self, variables, keep)
        seen.append(int(wide.count().execute()))
        return wide

    monkeypatch.setattr(Timeline, "counts", counting)
    monkeypatch.setattr(Timeline, "merge_runs", merge)
    monkeypatch.setattr(Timeline, "use_masks", False)  # merging is a change-point matter
    out = run_measures(store, m, engine=engine, disclosure=False)
    assert set(out.attrs["evaluation"].values()) == {"change_points"}
    return sum(seen), out


def _numerators(out: pd.DataFrame, name: str) -> list[int]:
    mine = out[out["measure"] == name].set_index("interval_end")["numerator"]
    return [int(mine.get(e, 0)) for e in ENDS]


@pytest.mark.parametrize("engine", ENGINES)
def test_runs_merge_where_predicates_do_not_change(engine, tmp_path, monkeypatch):
    store = _store(tmp_path)
    m = _measures(raw_breakdown=False)
    merged, out = _points(monkeypatch, store, m, engine, merge=True)
    unmerged, out_unmerged = _points(monkeypatch, store, m, engine, merge=False)
    assert merged < unmerged
    pd.testing.assert_frame_equal(out, out_unmerged)
    assert _numerators(out, "saba_ge3") == [0, 0, 1, 1, 0, 0, 1, 1]
    # b high Jan-Apr, then low, then no value; c no value until April, then high
    assert _numerators(out, "bp_high") == [1, 1, 1, 2, 1, 1, 1, 1]
    assert _numerators(out, "bp_known") == [1, 1, 1, 2, 2, 2, 1, 1]
    if engine == "duckdb":
        monkeypatch.setattr(Timeline, "merge_runs", True)
        check(store, IVS, _spec_of(m), "duckdb")


@pytest.mark.parametrize("engine", ENGINES[:1])
def test_a_leaf_read_as_a_value_keeps_its_runs(engine, tmp_path, monkeypatch):
    store = _store(tmp_path)
    m = _measures(raw_breakdown=True)
    merged, out = _points(monkeypatch, store, m, engine, merge=True)
    unmerged, out_unmerged = _points(monkeypatch, store, m, engine, merge=False)
    # the SABA count still merges; the blood pressure, grouped by, does not
    assert merged < unmerged
    pd.testing.assert_frame_equal(out, out_unmerged)
    rows = out[out["measure"] == "bp_by_value"]
    may = rows[rows["interval_end"] == D(2024, 5, 31)].set_index("g_sbp")["numerator"]
    assert may.get("130") == 1 and may.get("145") == 0  # labels are text
    monkeypatch.setattr(Timeline, "merge_runs", True)
    check(store, IVS, _spec_of(m), engine)
