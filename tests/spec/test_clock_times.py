"""Spec: clock times on a row — minutes and hours between two date-and-time columns, and
the hour of day — for standards timed in minutes: analgesia within 30 minutes of arrival
for a sickle cell pain crisis (NICE CG143 / QS58; PROGRAMMES.md section 9) and
prophylactic antibiotics within 60 minutes before skin incision (WHO SSI bundle; section 4).
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from pophealth.query import (
    Measures,
    QueryError,
    emergency_attendances,
    monthly,
    operations,
    run_measures,
)
from tests.spec.conftest import make_store, run

T = dt.datetime
ea = emergency_attendances


def _attendance(pid, arrival, analgesia=None, diagnosis="1"):
    return {
        "patient_id": pid,
        "arrival_datetime": arrival,
        "first_analgesia_datetime": analgesia,
        "diagnosis_system": "snomedct",
        "diagnosis": diagnosis,
    }


ATTENDANCES = [
    # 1: 30 minutes exactly (within the standard), and a later one at 41 minutes
    _attendance("1", T(2025, 3, 1, 10, 0), T(2025, 3, 1, 10, 30)),
    _attendance("1", T(2025, 3, 20, 23, 50), T(2025, 3, 21, 0, 31)),
    # 2: 30 minutes 1 second (outside); seconds below one are cut: 29 min 59.9 s is 29:59
    _attendance("2", T(2025, 2, 1, 8, 0, 0), T(2025, 2, 1, 8, 30, 1)),
    _attendance("2", T(2025, 2, 2, 8, 0, 0, 500_000), T(2025, 2, 2, 8, 30, 0, 400_000)),
    # 3: no analgesia recorded
    _attendance("3", T(2025, 1, 5, 0, 0)),
    # 4: analgesia recorded before arrival (a data error shows as a negative time)
    _attendance("4", T(2025, 1, 5, 12, 0), T(2025, 1, 5, 11, 45)),
]


def test_minutes_between_is_to_the_second(engine, tmp_path):
    minutes = ea.minutes_between("arrival_datetime", "first_analgesia_datetime")
    out = run(
        engine,
        tmp_path,
        {"emergency_attendances": ATTENDANCES},
        {
            "fastest": ea.minimum_for_patient(minutes),
            "slowest": ea.maximum_for_patient(minutes),
            "within_30": ea.where(minutes <= 30).count_for_patient(),
            "timed": ea.where(minutes.is_not_null()).count_for_patient(),
        },
    )
    assert out["1"] == {"fastest": 30.0, "slowest": 41.0, "within_30": 1, "timed": 2}
    # 8:00:00.5 -> 8:30:00.4 is 8:00:00 -> 8:30:00 once cut to whole seconds: 30 minutes
    assert out["2"]["fastest"] == 30.0
    assert out["2"]["slowest"] == pytest.approx(30 + 1 / 60)
    assert out["2"]["within_30"] == 1
    assert out["3"] == {"fastest": None, "slowest": None, "within_30": 0, "timed": 0}
    assert out["4"]["fastest"] == -15.0


def test_hours_between_and_antibiotics_before_incision(engine, tmp_path):
    def op(pid, oid, start, antibiotic):
        return {
            "patient_id": pid,
            "operation_id": oid,
            "start_datetime": start,
            "code": "R171",
            "antibiotic_datetime": antibiotic,
        }

    rows = [
        op("1", "a", T(2025, 3, 1, 9, 0), T(2025, 3, 1, 8, 0)),  # 60 min before: in time
        op("2", "b", T(2025, 3, 1, 9, 0), T(2025, 3, 1, 7, 59)),  # 61 min before: too early
        op("3", "c", T(2025, 3, 1, 9, 0), T(2025, 3, 1, 9, 5)),  # after incision
        op("4", "d", T(2025, 3, 1, 9, 0), None),  # not given
    ]
    before = operations.minutes_between("antibiotic_datetime", "start_datetime")
    in_time = operations.where((before >= 0) & (before <= 60)).exists_for_patient()
    out = run(
        engine,
        tmp_path,
        {"operations": rows},
        {
            "hours": operations.maximum_for_patient(
                operations.hours_between("antibiotic_datetime", "start_datetime")
            ),
            "in_time": in_time,
        },
    )
    assert out["1"] == {"hours": 1.0, "in_time": True}
    assert out["2"]["hours"] == pytest.approx(61 / 60) and out["2"]["in_time"] is False
    assert out["3"]["hours"] == pytest.approx(-5 / 60) and out["3"]["in_time"] is False
    assert out["4"] == {"hours": None, "in_time": False}


def test_hour_of_day(engine, tmp_path):
    out = run(
        engine,
        tmp_path,
        {"emergency_attendances": ATTENDANCES},
        {
            "first_hour": ea.minimum_for_patient(ea.hour_of_day("arrival_datetime")),
            "last_hour": ea.maximum_for_patient(ea.hour_of_day("arrival_datetime")),
        },
    )
    assert out["1"] == {"first_hour": 10, "last_hour": 23}
    assert out["3"] == {"first_hour": 0, "last_hour": 0}


def test_clock_times_in_a_measure_over_months(engine, tmp_path):
    """The timing filter is a row condition: the many-interval paths carry it as any other."""
    minutes = ea.minutes_between("arrival_datetime", "first_analgesia_datetime")
    attended = ea.in_interval()
    m = Measures(intervals=monthly("2025-01-01", 3))
    m.define_measure(
        "analgesia_30",
        numerator=attended.where((minutes >= 0) & (minutes <= 30)).exists_for_patient(),
        denominator=attended.exists_for_patient(),
    )
    store = make_store(tmp_path, {"emergency_attendances": ATTENDANCES})
    result = run_measures(store, m, engine=engine, disclosure=False)
    got = {r.interval_start.month: (r.numerator, r.denominator) for r in result.itertuples()}
    # January: 3 (none recorded) and 4 (-15 minutes: a recording error, not in time);
    # February: 2 (30:00 counts); March: 1 (10:00 -> 10:30 in time, 23:50 -> 0:31 not)
    assert got == {1: (0, 2), 2: (1, 1), 3: (1, 1)}
    assert result.attrs["evaluation"] == {"analgesia_30": "masks"}


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: ea.minutes_between("arrival_datetime", "diagnosis"), "diagnosis is not a"),
        (lambda: ea.hours_between("arrival", "departure_datetime"), "arrival is not a"),
        (lambda: ea.hour_of_day("diagnosis"), "first_analgesia_datetime"),
    ],
)
def test_a_column_without_a_clock_time_is_named(make, words):
    from pophealth.query import Dataset

    ds = Dataset()
    with pytest.raises(QueryError, match="variable 'x'") as err:
        ds.x = ea.minimum_for_patient(make())
    assert words in str(err.value)
    assert "date-and-time columns: arrival_datetime" in str(err.value)


def test_a_column_may_be_given_as_the_column_itself(engine, tmp_path):
    """Other methods take columns (``maximum_for_patient(events.value)``): given as columns,
    the clock times raised at once "(arrival_datetime == 'patient_id') is a query, not a
    Python True/False"."""
    by_column = ea.minutes_between(ea.arrival_datetime, ea.first_analgesia_datetime)
    by_name = ea.minutes_between("arrival_datetime", "first_analgesia_datetime")
    hour = ea.hour_of_day(ea.where(ea.diagnosis == "1").arrival_datetime)  # the same column
    assert by_column.key == by_name.key
    assert hour.key == ea.hour_of_day("arrival_datetime").key
    out = run(
        engine,
        tmp_path,
        {"emergency_attendances": ATTENDANCES},
        {"fastest": ea.minimum_for_patient(by_column), "first_hour": ea.minimum_for_patient(hour)},
    )
    assert out["1"] == {"fastest": 30.0, "first_hour": 10}


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: ea.minutes_between(operations.start_datetime, "arrival_datetime"), "operations"),
        (lambda: ea.hours_between("arrival_datetime", ea.arrival_datetime.year), ".year"),
        (lambda: ea.hour_of_day(3), "3 is not a column of emergency_attendances"),
    ],
)
def test_something_else_than_a_column_is_named(make, words):
    from pophealth.query import Dataset

    with pytest.raises(QueryError, match="variable 'x'") as err:
        Dataset().x = ea.maximum_for_patient(make())
    assert words in str(err.value) and "is not a column of emergency_attendances" in str(err.value)
    assert "date-and-time columns: arrival_datetime" in str(err.value)


def test_a_share_of_attendances_is_a_proportion_of_rows(engine, tmp_path):
    """% of attendances given analgesia in time (the standard counts presentations, and a
    patient may present several times): numerator rows among the denominator's rows, with
    Wilson limits on the row counts, not a ratio without an interval."""
    wait = ea.minutes_between("arrival_datetime", "first_analgesia_datetime")
    attended = ea.in_interval()
    m = Measures(intervals=monthly("2025-01-01", 3))
    m.define_measure(
        "in_time",
        numerator=attended.where((wait >= 0) & (wait <= 30)).count_for_patient(),
        denominator=attended.count_for_patient(),
    )
    m.define_measure(  # not a subset of the denominator's rows: a ratio, as before
        "timed_per_attendance",
        numerator=ea.where(wait.is_not_null()).count_for_patient(),
        denominator=attended.count_for_patient(),
    )
    store = make_store(tmp_path, {"emergency_attendances": ATTENDANCES})
    result = run_measures(store, m, engine=engine, disclosure=False)
    share = result[result.measure == "in_time"]
    share = share.set_index(share.interval_start.map(str))
    # March: patient 1's two attendances, one in time: 1 of 2 rows (not 1 of 1 patient)
    march = share.loc["2025-03-01"]
    assert (march.numerator, march.denominator, march.value) == (1, 2, 50.0)
    # Wilson 95% limits for 1 of 2: (x + z²/2 ± z·sqrt(x(n-x)/n + z²/4)) / (n + z²), z = 1.96
    # = (2.92 ± 2.368) / 5.84: 9.45% to 90.55%
    assert march.lower95_0cl == pytest.approx(9.4529, abs=1e-3)
    assert march.upper95_0cl == pytest.approx(90.5471, abs=1e-3)
    assert march.statistic == "percentage"
    assert "rows counted as independent" in march.method
    ratio = result[result.measure == "timed_per_attendance"]
    assert ratio.lower95_0cl.isna().all() and "no interval" in ratio.method.iloc[0]
    # released: the same rule as a proportion of patients (1 and 2 are withheld)
    released = run_measures(store, m, engine=engine)
    row = released[released.measure == "in_time"].iloc[-1]
    assert pd.isna(row.numerator) and pd.isna(row.value)


def test_a_proportion_of_rows_without_a_value_has_no_method(engine, tmp_path):
    """A withheld row, or a month with no rows (0 of 0), has no value and so no method, as
    for a proportion of patients — not the text "None; rows counted as independent"."""
    wait = ea.minutes_between("arrival_datetime", "first_analgesia_datetime")
    attended = ea.in_interval()
    m = Measures(intervals=monthly("2024-12-01", 4))  # December: nobody attended
    m.define_measure(
        "in_time",
        numerator=attended.where((wait >= 0) & (wait <= 30)).count_for_patient(),
        denominator=attended.count_for_patient(),
    )
    store = make_store(tmp_path, {"emergency_attendances": ATTENDANCES})
    for disclosure in (False, True):
        result = run_measures(store, m, engine=engine, disclosure=disclosure)
        assert len(result) == 4
        for row in result.itertuples():
            if pd.isna(row.value):
                assert row.method is None, (disclosure, row)
            else:
                assert row.method == "Wilson; rows counted as independent", (disclosure, row)
        if disclosure:  # every count here is 1-7 or beside one: all withheld
            assert result.value.isna().all()
        else:
            assert result.value.notna().sum() == 3


def test_a_measure_by_time_of_day_is_one_measure_per_band(engine, tmp_path):
    """The hour is a value of each row, like the time: a breakdown takes one value per
    patient, so attendances by time of day are one measure per band of hours (the guide
    said hour_of_day broke a measure down; as a breakdown it is refused)."""
    hour = ea.hour_of_day("arrival_datetime")
    wait = ea.minutes_between("arrival_datetime", "first_analgesia_datetime")
    attended = ea.in_interval()
    m = Measures(intervals=monthly("2025-03-01", 1))
    bands = {"evening": attended.where(hour >= 20), "day": attended.where(hour < 20)}
    for band, rows in bands.items():
        m.define_measure(
            band,
            numerator=rows.where((wait >= 0) & (wait <= 30)).count_for_patient(),
            denominator=rows.count_for_patient(),
        )
    with pytest.raises(QueryError, match="one value per row of emergency_attendances"):
        m.define_measure(
            "by_hour",
            numerator=attended.where(wait <= 30).count_for_patient(),
            denominator=attended.count_for_patient(),
            group_by={"hour": hour},
        )
    store = make_store(tmp_path, {"emergency_attendances": ATTENDANCES})
    result = run_measures(store, m, engine=engine, disclosure=False)
    got = {r.measure: (r.numerator, r.denominator) for r in result.itertuples()}
    # March, patient 1: 10:00 seen in 30 minutes (day), 23:50 in 41 (evening)
    assert got == {"evening": (0, 1), "day": (1, 1)}


def test_first_and_last_of_a_day_go_by_the_clock_time(engine, tmp_path):
    """Two operations on one day (a return to theatre): the first is the one that started
    first, not the one whose id sorts first; so for a sort by a date-and-time column."""

    def op(oid, hour, code):
        return {
            "patient_id": "1",
            "operation_id": oid,
            "start_datetime": T(2025, 3, 1, hour, 0),
            "code": code,
        }

    rows = [op("a-second", 17, "R182"), op("z-first", 9, "R171")]
    out = run(
        engine,
        tmp_path,
        {"operations": rows},
        {
            "first": operations.first_for_patient().code,
            "last": operations.last_for_patient().code,
            "first_sorted": operations.sort_by(operations.start_datetime).first_for_patient().code,
            "last_sorted": operations.sort_by(operations.start_datetime).last_for_patient().code,
        },
    )
    assert out["1"] == {
        "first": "R171",
        "last": "R182",
        "first_sorted": "R171",
        "last_sorted": "R182",
    }


def test_which_counts_are_a_proportion_of_rows():
    """Filters only narrow the rows: a numerator with every one of the denominator's
    conditions (``a & b`` read as ``a`` and ``b``) counts some of its rows."""
    wait = ea.minutes_between("arrival_datetime", "first_analgesia_datetime")
    timed = ea.where(wait >= 0)

    def kind(numerator, denominator):
        m = Measures(intervals=monthly("2025-01-01", 1))
        return m.define_measure("x", numerator=numerator, denominator=denominator).kind

    in_time = timed.where(wait <= 30).count_for_patient()
    assert kind(in_time, timed.count_for_patient()) == "row proportion"
    both = ea.where((wait >= 0) & (wait <= 30)).count_for_patient()
    assert kind(both, timed.count_for_patient()) == "row proportion"
    assert (
        kind(
            ea.between(dt.date(2025, 1, 1), dt.date(2025, 1, 31)).count_for_patient(),
            ea.on_or_after(dt.date(2025, 1, 1)).count_for_patient(),
        )
        == "row proportion"
    )
    either = ea.where((wait >= 0) | (wait <= 30)).count_for_patient()
    assert kind(either, timed.count_for_patient()) == "ratio"
    assert kind(timed.count_for_patient(), both) == "ratio"  # the other way round
    assert kind(both, timed.count_days_for_patient()) == "ratio"
