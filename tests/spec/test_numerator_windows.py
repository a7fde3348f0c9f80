"""The windows of days a measure's numerator counts in (``numerator_windows``), and what the
release does with them: measures of one run whose numerators count the same rows of one
table in other windows have their numerators linked by those days (audit 22's first fault,
second case: the rolling 3 months at March less February's and March's admissions give
January's withheld count back).

The windows are checked against the engine: with one admission a day, the numerator a run
counts with disclosure control off is the number of days in each interval's window."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from pophealth.query import (
    Measures,
    admissions,
    days,
    events,
    index_date,
    interval_start,
    monthly,
    registrations,
    run_measures,
)
from pophealth.query.measures import WITHIN, numerator_windows
from tests.spec.conftest import admission_row, make_store

D = dt.date
ENGINE = "duckdb"
REGISTERED = registrations.registered_on(index_date)
#: December 2024 to May 2025: month ends of 31, 31, 28, 31, 30 and 31 days
MONTHS = monthly(D(2024, 12, 1), 6)
#: one admission a day, each of its own patient, over these days
FIRST, LAST = D(2024, 7, 1), D(2025, 7, 31)


def _numerator(s, intervals=MONTHS):
    m = Measures(intervals=intervals)
    return m.define_measure("m", numerator=s, denominator=REGISTERED)


@pytest.fixture(scope="module")
def daily_store(tmp_path_factory):
    regs, adms = [], []
    for i in range((LAST - FIRST).days + 1):
        pid = f"p{i:03d}"
        regs.append({"patient_id": pid, "practice_id": "A1", "start_date": D(2020, 1, 1)})
        adms.append(admission_row(pid, FIRST + dt.timedelta(days=i)))
    return make_store(
        tmp_path_factory.mktemp("windows"), {"registrations": regs, "admissions": adms}
    )


WINDOWED = {
    "in_interval": admissions.in_interval().count_for_patient(),
    "last_3_months": admissions.in_last(months=3).count_for_patient(),
    "last_month": admissions.in_last(months=1).exists_for_patient(),
    "last_30_days": admissions.in_last(days=30).count_days_for_patient(),
    "2_weeks_to_the_start": admissions.in_last(weeks=2, of=interval_start).count_for_patient(),
    "on_or_before": admissions.on_or_before(index_date).count_for_patient(),
    "from_10_days_before": admissions.between(
        interval_start - days(10), index_date
    ).count_for_patient(),
    "after_the_start": admissions.after(interval_start).exists_for_patient(),
}


@pytest.mark.parametrize("name", list(WINDOWED))
def test_each_window_holds_the_days_the_engine_counts(daily_store, name):
    """One admission a day (each its own patient): the numerator counted in each interval
    is the number of days of its window from 1 July 2024 to 31 July 2025 — so the windows
    are the engine's, at every month end (28 February less 3 months is 28 November: the
    window from 29 November; 31 March less a month is 28 February: from 1 March)."""
    measure = _numerator(WINDOWED[name])
    _, windows = numerator_windows(measure)
    m = Measures(intervals=MONTHS)
    m.define_measure(name, numerator=WINDOWED[name], denominator=REGISTERED)
    got = run_measures(daily_store, m, engine=ENGINE, disclosure=False)
    for iv in MONTHS:
        first, last = windows[iv]
        want = max(0, (min(last, LAST) - max(first, FIRST)).days + 1)
        row = got[(got["interval_start"] == iv[0]) & (got["interval_end"] == iv[1])]
        assert int(row["numerator"].iloc[0]) == want, (name, iv, windows[iv])


def test_windows_by_hand():
    """The windows worked by hand, with the month ends that clamp."""
    _, w = numerator_windows(_numerator(WINDOWED["last_3_months"]))
    assert w[(D(2025, 2, 1), D(2025, 2, 28))] == (D(2024, 11, 29), D(2025, 2, 28))
    assert w[(D(2025, 3, 1), D(2025, 3, 31))] == (D(2025, 1, 1), D(2025, 3, 31))
    _, w = numerator_windows(_numerator(WINDOWED["last_month"]))
    assert w[(D(2025, 3, 1), D(2025, 3, 31))] == (D(2025, 3, 1), D(2025, 3, 31))
    _, w = numerator_windows(_numerator(WINDOWED["on_or_before"]))
    assert w[(D(2025, 1, 1), D(2025, 1, 31))] == (dt.date.min, D(2025, 1, 31))
    _, w = numerator_windows(_numerator(WINDOWED["after_the_start"]))
    assert w[(D(2025, 1, 1), D(2025, 1, 31))] == (D(2025, 1, 2), dt.date.max)


def test_what_names_the_rows_counted():
    """Two numerators count the same rows when they read the same table with the same other
    filters, by the same count — whatever their windows and breakdowns (the release
    matches their cells by breakdown and group)."""
    emergency = admissions.where(admissions.admission_method == "emergency")

    def what(s, group_by=None):
        m = Measures(intervals=MONTHS)
        measure = m.define_measure("m", numerator=s, denominator=REGISTERED, group_by=group_by)
        return numerator_windows(measure)[0]

    monthly_count = what(admissions.in_interval().count_for_patient())
    assert what(admissions.in_last(months=3).count_for_patient()) == monthly_count
    assert what(admissions.on_or_before(index_date).count_for_patient()) == monthly_count
    assert what(emergency.in_interval().count_for_patient()) != monthly_count
    assert what(emergency.in_last(months=3).count_for_patient()) == what(
        emergency.in_interval().count_for_patient()
    )
    assert what(admissions.in_interval().exists_for_patient()) != monthly_count
    assert what(events.in_interval().count_for_patient()) != monthly_count
    by_practice = {"practice": registrations.practice_on(index_date).practice_id}
    assert what(admissions.in_interval().count_for_patient(), by_practice) == monthly_count


@pytest.mark.parametrize(
    "numerator",
    [
        admissions.count_for_patient(),  # no window
        admissions.on_or_before(D(2025, 1, 1)).count_for_patient(),  # a fixed one
        admissions.in_interval().exists_for_patient() & REGISTERED,  # not a count of rows
        admissions.where(
            (admissions.admission_date <= index_date) | (admissions.admission_method == "elective")
        ).count_for_patient(),  # an or
        admissions.where(admissions.discharge_date <= index_date).count_for_patient(),
    ],
    ids=["no_window", "fixed_date", "a_condition", "an_or", "another_date"],
)
def test_no_window_when_the_numerator_counts_no_window_of_days(numerator):
    assert numerator_windows(_numerator(numerator)) is None


# -- the release ---------------------------------------------------------------------------
#
# admissions (one each): January 1; February to May 8 each. Rolling 3 months: January 1
# (November-January), February 9, March 17, April 24, May 24.

Q_MONTHS = monthly(D(2025, 1, 1), 5)
MONTHLY = admissions.in_interval().count_for_patient()
ROLLING = admissions.in_last(months=3).count_for_patient()


def _admissions_store(tmp_path, before: dict[str, list[dt.date]]):
    """``before``, then 8 admissions (one each) on the 10th of February to May 2025."""
    plan = dict(before)
    for month in range(2, 6):
        plan |= {f"m{month}_{i}": [D(2025, month, 10)] for i in range(8)}
    regs, adms = [], []
    for pid, days_ in plan.items():
        regs.append({"patient_id": pid, "practice_id": "A1", "start_date": D(2020, 1, 1)})
        adms.extend(admission_row(pid, day) for day in days_)
    return make_store(tmp_path, {"registrations": regs, "admissions": adms})


@pytest.fixture(scope="module")
def months_store(tmp_path_factory):
    return _admissions_store(tmp_path_factory.mktemp("months"), {"jan": [D(2025, 1, 10)]})


def _released(store, **numerators) -> pd.DataFrame:
    m = Measures(intervals=Q_MONTHS)
    for name, s in numerators.items():
        m.define_measure(name, numerator=s, denominator=REGISTERED)
    return run_measures(store, m, engine=ENGINE)


def _numerators(released: pd.DataFrame, name: str) -> list[float]:
    rows = released[released["measure"] == name].sort_values("interval_start")
    return [float(x) for x in rows["numerator"]]


def _notes(released: pd.DataFrame, name: str) -> list[object]:
    rows = released[released["measure"] == name].sort_values("interval_start")
    return list(rows["disclosure_note"])


def test_a_rolling_count_alone_is_released_as_before(months_store):
    """Alone, the rolling count is withheld in January only (1, primary): its own windows
    are not linked with each other (each month a table of its own, as ever)."""
    released = _released(months_store, rolling=ROLLING)
    got = _numerators(released, "rolling")
    assert np.isnan(got[0])
    assert got[1:] == [10.0, 15.0, 25.0, 25.0]


def test_the_rolling_windows_holding_a_withheld_month_are_withheld(months_store):
    """Beside the monthly count, January's withheld 1 withholds the rolling count at
    January, February and March (each window holds January) and at April (30 April less 3
    months is 30 January: the window starts on 31 January), not at May (from 1 March); the
    monthly counts are as alone; the denominators are not touched."""
    released = _released(months_store, monthly=MONTHLY, rolling=ROLLING)
    monthly_got = _numerators(released, "monthly")
    assert np.isnan(monthly_got[0]) and monthly_got[1:] == [10.0, 10.0, 10.0, 10.0]
    rolling = _numerators(released, "rolling")
    assert all(np.isnan(rolling[:4])) and rolling[4:] == [25.0]
    notes = _notes(released, "rolling")
    assert all(WITHIN in str(n) for n in notes[1:4]), notes
    dens = released[released["measure"] == "rolling"]["denominator"]
    assert dens.notna().all()


def test_patients_with_a_row_are_linked_alike(months_store):
    """Patients with an admission, in the month and in the last 3 months: taken as adding
    up too (the safe side, as counts of patients across intervals are)."""
    released = _released(
        months_store,
        monthly=admissions.in_interval().exists_for_patient(),
        rolling=admissions.in_last(months=3).exists_for_patient(),
    )
    rolling = _numerators(released, "rolling")
    assert all(np.isnan(rolling[:4])) and rolling[4:] == [25.0]


def test_other_filters_are_other_rows(months_store):
    """A rolling count of emergency admissions beside the monthly count of every admission
    is not linked by its windows: that rule follows the definitions (the same table, the
    same other filters), not the data (here every admission is an emergency). Only the
    very same count in the same interval (January's 1, withheld in both anyway) is linked
    by the data."""
    emergency = admissions.where(admissions.admission_method == "emergency")
    released = _released(
        months_store, monthly=MONTHLY, rolling=emergency.in_last(months=3).count_for_patient()
    )
    assert _numerators(released, "rolling")[1:] == [10.0, 15.0, 25.0, 25.0]


@pytest.fixture(scope="module")
def november_store(tmp_path_factory):
    """Admissions (one each): November 2024 3; February to May 2025 8 each."""
    november = {f"nov{i}": [D(2024, 11, 10)] for i in range(3)}
    return _admissions_store(tmp_path_factory.mktemp("november"), november)


def test_a_withheld_rolling_window_withholds_no_month_inside_it(november_store):
    """The rolling 3 months at January (November-January) is 3, withheld (primary); the
    monthly count at January (0, inside that window) stays released as 0, and so do the
    rolling counts around it (their windows share days with it, but they are the same
    measure's: linked only through the other measure's windows, as alone)."""
    released = _released(november_store, monthly=MONTHLY, rolling=ROLLING)
    assert _numerators(released, "monthly") == [0.0, 10.0, 10.0, 10.0, 10.0]
    rolling = _numerators(released, "rolling")
    assert np.isnan(rolling[0]) and rolling[1:] == [10.0, 15.0, 25.0, 25.0]
