"""Spec: quantile measures over rows — the median and 90th centile of a value per row of a
frame (door-to-analgesia minutes per ED attendance), a patient's several attendances each
a value, every interval in one pass, the same on every engine, through the one disclosure
rule with the patients behind the rows checked (Measures.define_quantile(rows=...))."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from pophealth.query import (
    Measures,
    QueryError,
    emergency_attendances,
    events,
    index_date,
    minutes_between,
    monthly,
    patients,
    registrations,
    run_measures,
)
from tests.spec.conftest import make_store

D = dt.date
JAN, FEB = monthly("2025-01-01", 2)


def _attendance(pid: str, day: int, wait: int | None, month: int = 1) -> dict:
    """An attendance on ``day`` of ``month`` 2025, analgesia ``wait`` minutes after arrival
    (None: none recorded)."""
    arrival = dt.datetime(2025, month, day, 10, 0)
    given = None if wait is None else arrival + dt.timedelta(minutes=wait)
    return {"patient_id": pid, "arrival_datetime": arrival, "first_analgesia_datetime": given}


def _tables(attendances: list[dict], sexes: dict[str, str]) -> dict:
    """Everyone in ``sexes`` registered, but x1 (who is in no measure)."""
    return {
        "patients": [{"patient_id": p, "sex": s} for p, s in sexes.items()],
        "registrations": [
            {"patient_id": p, "practice_id": "A1", "start_date": D(2020, 1, 1)}
            for p in sexes
            if p != "x1"
        ],
        "emergency_attendances": attendances,
    }


def _small_store(tmp_path):
    """p1 (female): 3 attendances in January (10, 20, 40 minutes) and 1 in February (30).
    p2 (male): January, 50 minutes. p3 (male): January, no analgesia recorded. x1, not
    registered: January, 999 minutes (outside among)."""
    return make_store(
        tmp_path,
        _tables(
            [
                _attendance("p1", 3, 10),
                _attendance("p1", 10, 20),
                _attendance("p1", 20, 40),
                _attendance("p1", 5, 30, month=2),
                _attendance("p2", 4, 50),
                _attendance("p3", 6, None),
                _attendance("x1", 6, 999),
            ],
            {"p1": "female", "p2": "male", "p3": "male", "x1": "male"},
        ),
    )


def _waits(intervals, group_by=None) -> Measures:
    att = emergency_attendances.in_interval()
    m = Measures(intervals=intervals)
    m.define_quantile(
        "door_to_analgesia",
        value=minutes_between(att.arrival_datetime, att.first_analgesia_datetime),
        rows=att,
        among=registrations.registered_on(index_date),
        quantiles=(0.5, 0.9),
        group_by=group_by,
    )
    return m


def _rows(out: pd.DataFrame, cols=("numerator", "denominator", "value")) -> list[tuple]:
    return [
        (r.interval_start, r.statistic, *(getattr(r, c) for c in cols))
        for r in out.itertuples(index=False)
    ]


def test_centiles_over_attendances_not_patients(engine, tmp_path):
    """January's values are the 4 attendances with a wait (p1's three, p2's one), p3's
    attendance without one counted as missing: median (HF7, position 2.5 of 10, 20, 40, 50)
    30, 90th centile (position 3.7) 40 + 0.7 × 10 = 47. February: p1's one attendance."""
    store = _small_store(tmp_path)
    out = run_measures(store, _waits([JAN, FEB]), engine=engine, disclosure=False)
    assert _rows(out) == [
        (D(2025, 1, 1), "median", 4, 5, 30.0),
        (D(2025, 1, 1), "90th centile", 4, 5, pytest.approx(47.0)),
        (D(2025, 2, 1), "median", 1, 1, 30.0),
        (D(2025, 2, 1), "90th centile", 1, 1, 30.0),
    ]
    assert all("a patient's rows counted as independent" in m for m in out["method"])
    # the per-patient form would see p1 once: a maximum per patient gives 40 and 50
    att = emergency_attendances.in_interval()
    per_patient = Measures(intervals=[JAN])
    per_patient.define_quantile(
        "worst_wait",
        value=att.maximum_for_patient(
            minutes_between(att.arrival_datetime, att.first_analgesia_datetime)
        ),
        among=registrations.registered_on(index_date) & att.exists_for_patient(),
        quantiles=0.5,
    )
    worst = run_measures(store, per_patient, engine=engine, disclosure=False)
    assert _rows(worst) == [(D(2025, 1, 1), "median", 2, 3, 45.0)]


def test_every_interval_in_one_run_equals_each_interval_alone(engine, tmp_path):
    store = _small_store(tmp_path)
    by_sex = {"sex": patients.sex}
    together = run_measures(store, _waits([JAN, FEB], by_sex), engine=engine, disclosure=False)
    alone = pd.concat(
        [
            run_measures(store, _waits([iv], by_sex), engine=engine, disclosure=False)
            for iv in (JAN, FEB)
        ],
        ignore_index=True,
    )
    pd.testing.assert_frame_equal(together, alone)
    assert _rows(together, ("sex", "numerator", "denominator", "value")) == [
        (D(2025, 1, 1), "median", "female", 3, 3, 20.0),
        (D(2025, 1, 1), "90th centile", "female", 3, 3, pytest.approx(36.0)),
        (D(2025, 1, 1), "median", "male", 1, 2, 50.0),
        (D(2025, 1, 1), "90th centile", "male", 1, 2, 50.0),
        (D(2025, 2, 1), "median", "female", 1, 1, 30.0),
        (D(2025, 2, 1), "90th centile", "female", 1, 1, 30.0),
    ]


def test_a_window_before_the_index_date_rolls_with_the_interval(engine, tmp_path):
    """Rows in the 2 months up to each interval's end: February's are January's and
    February's (10, 20, 30, 40, 50: median 30); January's only January's (median 30)."""
    store = _small_store(tmp_path)
    att = emergency_attendances.in_last(months=2)
    m = Measures(intervals=[JAN, FEB])
    m.define_quantile(
        "wait",
        value=minutes_between(att.arrival_datetime, att.first_analgesia_datetime),
        rows=att,
        among=registrations.registered_on(index_date),
        quantiles=0.5,
    )
    out = run_measures(store, m, engine=engine, disclosure=False)
    assert _rows(out) == [
        (D(2025, 1, 1), "median", 4, 5, 30.0),
        (D(2025, 2, 1), "median", 5, 6, 30.0),
    ]


def _one_month(high: dict[str, list[int]]) -> dict:
    """January: l1..l11 one attendance each (1 to 11 minutes), and the patients of
    ``high`` their attendances (9 of them, 100 minutes and more): 20 attendances with a
    value, the median (ranks 10 and 11) 10.5 with 9 rows above it."""
    rows = [_attendance(f"l{i}", 2 + i, i) for i in range(1, 12)]
    for pid, waits in high.items():
        rows += [_attendance(pid, 1 + k, w) for k, w in enumerate(waits)]
    people = {f"l{i}": "female" for i in range(1, 12)} | dict.fromkeys(high, "female")
    return _tables(rows, people)


def test_the_median_is_withheld_when_the_rows_beyond_it_are_fewer_than_3_patients(engine, tmp_path):
    """9 attendances rank above the median but they are 2 patients' (5 and 4): 9 rows is
    enough by rows, not by patients — one of the two could learn the other's values.
    With 3 patients above (3 each), it is released (and the count of 20 rounded to 5)."""
    high = {"h1": [100, 101, 102, 103, 104], "h2": [105, 106, 107, 108]}
    two = make_store(tmp_path / "two", _one_month(high))
    exact = run_measures(two, _waits([JAN]), engine=engine, disclosure=False)
    assert _rows(exact) == [
        (D(2025, 1, 1), "median", 20, 20, 10.5),
        (D(2025, 1, 1), "90th centile", 20, 20, pytest.approx(106.1)),
    ]
    out = run_measures(two, _waits([JAN]), engine=engine)
    assert _rows(out) == [
        (D(2025, 1, 1), "median", 20.0, 20.0, pytest.approx(float("nan"), nan_ok=True)),
        (D(2025, 1, 1), "90th centile", 20.0, 20.0, pytest.approx(float("nan"), nan_ok=True)),
    ]
    assert "patients with rows, rank beyond the values" in out["disclosure_note"][0]
    three = make_store(
        tmp_path / "three",
        _one_month({"h1": [100, 103, 106], "h2": [101, 104, 107], "h3": [102, 105, 108]}),
    )
    out = run_measures(three, _waits([JAN]), engine=engine)
    cols = ("numerator", "denominator", "value", "lower95_0cl", "upper95_0cl")
    # the 95% limits are ranks 6 and 15 (6 and 103; h1, h2 and h3 each have a value above
    # 103); the 99.8% ones ranks 3 and 18, too near the ends by rows
    # (the median 10.5 released to the values' precision: 11)
    assert _rows(out, cols)[0] == (D(2025, 1, 1), "median", 20.0, 20.0, 11.0, 6.0, 103.0)
    assert out["disclosure_note"][0] == (
        "99.8% limits withheld: fewer than 3 rows, or patients with rows, rank beyond them, "
        "or too few values for them"
    )
    assert pd.isna(out["value"][1])  # the 90th: 1 row above rank 19
    # the same values, h1's the lowest three, h3's the highest: above 103 only h2 and h3
    blocks = make_store(
        tmp_path / "blocks",
        _one_month({"h1": [100, 101, 102], "h2": [103, 104, 105], "h3": [106, 107, 108]}),
    )
    out = run_measures(blocks, _waits([JAN]), engine=engine)
    assert _rows(out, cols)[0][:5] == (D(2025, 1, 1), "median", 20.0, 20.0, 11.0)  # 10.5
    assert out[["lower95_0cl", "upper95_0cl"]].iloc[0].isna().all()
    assert out["disclosure_note"][0].startswith("95% limits withheld: fewer than 3 rows, or")


def test_row_counts_are_withheld_when_few_patients_are_behind_them(engine, tmp_path):
    """10 attendances, all with a value, but of 2 patients: 10 is no small count, yet the
    numerator and denominator are withheld (patients behind 1-7), and the value with them."""
    waits = {"a": [5, 10, 15, 20, 25], "b": [30, 35, 40, 45, 50]}
    rows = [_attendance(p, 1 + k, w) for p, ws in waits.items() for k, w in enumerate(ws)]
    store = make_store(tmp_path, _tables(rows, {"a": "female", "b": "male"}))
    exact = run_measures(store, _waits([JAN]), engine=engine, disclosure=False)
    assert _rows(exact)[0] == (D(2025, 1, 1), "median", 10, 10, 27.5)
    out = run_measures(store, _waits([JAN]), engine=engine)
    assert out["numerator"].isna().all() and out["denominator"].isna().all()
    assert out["value"].isna().all()
    note = out["disclosure_note"][0]
    assert "numerator" in note and "patients" in note
    assert "value and limits withheld with the numerator" in note


def test_a_value_per_row_needs_its_rows_and_one_table(tmp_path):
    att = emergency_attendances.in_interval()
    wait = minutes_between(att.arrival_datetime, att.first_analgesia_datetime)
    m = Measures(intervals=[JAN])
    among = registrations.registered_on(index_date)
    with pytest.raises(QueryError, match=r"one per row of emergency_attendances.*rows="):
        m.define_quantile("no_rows", value=wait, among=among)
    with pytest.raises(QueryError, match="different tables"):
        m.define_quantile("mixed", value=wait + events.value, rows=att, among=among)
    with pytest.raises(QueryError, match=r"rows of events, but rows= is a frame of emergency"):
        m.define_quantile("other_table", value=events.value, rows=att, among=among)
    with pytest.raises(QueryError, match="one per patient"):
        m.define_quantile("per_patient", value=att.count_for_patient(), rows=att, among=among)
    assert len(m) == 0
