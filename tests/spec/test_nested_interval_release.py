"""Disclosure control over intervals that make up other intervals of one run (months and
their quarter, quarters and their year): counts that add up across intervals — events,
rows, person-days; a standardised rate's events, a centile's rows — withheld in an inner
interval are withheld in each interval they help
make up, so the outer count less the released inner ones cannot give a withheld one back
(tests/spec/test_disclosure_audit21.py, the month and its quarter). Counts of patients do
not add up (one patient may be in every month) and are released interval by interval as
before. The release works on the engines' counts in pandas, the same for every engine
(the counts themselves are checked on both engines in the other spec tests)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from pophealth.query import (
    Measures,
    admissions,
    emergency_attendances,
    index_date,
    minutes_between,
    monthly,
    patients,
    quarterly,
    registrations,
    run_measures,
    yearly,
)
from pophealth.query.measures import outward_intervals
from tests.spec.conftest import admission_row, make_store

D = dt.date
MONTHS = monthly(D(2025, 1, 1), 12)
QUARTERS = quarterly(D(2025, 1, 1), 4)
YEAR = yearly(D(2025, 1, 1), 1)
Q1 = QUARTERS[0]
REGISTERED = registrations.registered_on(index_date)


def test_the_intervals_sharing_days_with_an_interval_without_lying_inside_it():
    """A month's are its quarter and the year; a quarter's the year; the year's none (every
    other lies inside it). Two overlapping windows are each other's; a week across the end
    of January is January's and February's, and they are its. Disjoint intervals none."""
    wider = outward_intervals(MONTHS + QUARTERS + YEAR)
    assert wider[MONTHS[0]] == [Q1, YEAR[0]]
    assert wider[MONTHS[11]] == [YEAR[0], QUARTERS[3]]
    assert wider[Q1] == [YEAR[0]]
    assert YEAR[0] not in wider and len(wider) == 16
    rolling = [(D(2024, 2, 1), D(2025, 1, 31)), (D(2024, 3, 1), D(2025, 2, 28))]
    assert outward_intervals(rolling) == {rolling[0]: [rolling[1]], rolling[1]: [rolling[0]]}
    week = (D(2025, 1, 27), D(2025, 2, 2))
    assert outward_intervals([*MONTHS[:2], week]) == {
        MONTHS[0]: [week],
        week: [MONTHS[0], MONTHS[1]],
        MONTHS[1]: [week],
    }
    assert outward_intervals(MONTHS) == {}


def _events_tables(first_month: int) -> dict:
    """Registered patients with one emergency admission each: ``first_month`` of them in
    January, 10 in every other month of 2025."""
    regs, adms = [], []
    for month in range(1, 13):
        for i in range(first_month if month == 1 else 10):
            pid = f"m{month:02d}_{i}"
            regs.append({"patient_id": pid, "practice_id": "A1", "start_date": D(2020, 1, 1)})
            adms.append(admission_row(pid, D(2025, month, 10)))
    return {"registrations": regs, "admissions": adms}


@pytest.fixture(scope="module")
def one_in_january(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("nested_one"), _events_tables(1))


def _released(store, measures: Measures, disclosure: bool = True):
    out = run_measures(store, measures, disclosure=disclosure)
    return out.set_index(["interval_start", "interval_end"])


def _january_and_its_quarter_withheld(out) -> None:
    """Of January, Q1, February and March (in that order), the counts of January and of Q1
    withheld, Q1 saying why, and its value with them."""
    assert out["numerator"].isna().tolist() == [True, True, False, False]
    assert np.isnan(out.loc[Q1, "value"])
    assert "shares days with this one" in out.loc[Q1, "disclosure_note"]


def test_a_month_withheld_is_withheld_in_its_quarter_and_its_year(one_in_january):
    """Admissions per patient by month, quarter and year: January's 1 is withheld; released,
    Q1 (21 → 20) less February and March (10 → 10 each) would put it at 0-4, the year
    (111 → 110) less the other 11 months near it too. Q1 and the year are withheld (the
    year both for January and for Q1), said in the note; Q2-Q4 and the other months are
    released as they were."""
    m = Measures(intervals=MONTHS + QUARTERS + YEAR)
    m.define_measure(
        "admissions", numerator=admissions.in_interval().count_for_patient(), denominator=REGISTERED
    )
    exact = _released(one_in_january, m, disclosure=False)
    assert exact.loc[Q1, "numerator"] == 21 and exact.loc[YEAR[0], "numerator"] == 111
    out = _released(one_in_january, m)
    withheld = out[out["numerator"].isna()].index.tolist()
    assert withheld == [MONTHS[0], Q1, YEAR[0]]
    assert "numerator primary" in out.loc[MONTHS[0], "disclosure_note"]
    for outer in (Q1, YEAR[0]):
        assert out.loc[outer, "disclosure_note"] == (
            "numerator secondary (withheld in an interval that shares days with this one: "
            "counts may add up across intervals)"
        )
        assert np.isnan(out.loc[outer, "value"])
        assert out.loc[outer, "denominator"] == 110.0  # (111 patients: released as ever)
    assert out.loc[QUARTERS[1], "numerator"] == 30.0 and out.loc[MONTHS[1], "numerator"] == 10.0


def test_without_a_month_withheld_the_quarter_is_released(tmp_path):
    """Every month released (January's 8 → 10): the quarter (28 → 30) and the year are too."""
    store = make_store(tmp_path, _events_tables(8))
    m = Measures(intervals=MONTHS[:3] + [Q1])
    m.define_measure(
        "admissions", numerator=admissions.in_interval().count_for_patient(), denominator=REGISTERED
    )
    out = _released(store, m)
    assert out["numerator"].tolist() == [10.0, 30.0, 10.0, 10.0]  # Jan, Q1, Feb, Mar
    assert out["disclosure_note"].isna().all()


def test_a_group_withheld_in_a_month_is_withheld_in_the_quarter_in_that_group(tmp_path):
    """By sex, one admission each: January 2 men and 20 women, February and March 10 of
    each. January's men are withheld, and January's women as their second cell; so both
    are withheld in Q1. February and March are released."""
    plan = {1: (2, 20), 2: (10, 10), 3: (10, 10)}
    pats, regs, adms = [], [], []
    for month, (men, women) in plan.items():
        for sex, n in (("male", men), ("female", women)):
            for i in range(n):
                pid = f"{sex}{month}_{i}"
                pats.append({"patient_id": pid, "sex": sex})
                regs.append({"patient_id": pid, "practice_id": "A1", "start_date": D(2020, 1, 1)})
                adms.append(admission_row(pid, D(2025, month, 10)))
    store = make_store(tmp_path, {"patients": pats, "registrations": regs, "admissions": adms})
    m = Measures(intervals=MONTHS[:3] + [Q1])
    m.define_measure(
        "admissions",
        numerator=admissions.in_interval().count_for_patient(),
        denominator=REGISTERED,
        group_by={"sex": patients.sex},
    )
    out = run_measures(store, m)
    jan = out[out["interval_end"] == MONTHS[0][1]].set_index("sex")
    assert jan["numerator"].isna().all()
    assert jan.loc["female", "disclosure_note"] == "numerator secondary"
    quarter = out[(out["interval_start"] == Q1[0]) & (out["interval_end"] == Q1[1])]
    quarter = quarter.set_index("sex")
    assert len(quarter) == 2 and quarter["numerator"].isna().all()
    assert quarter["disclosure_note"].str.contains("shares days with this one").all()
    later = out[out["interval_start"] > Q1[0]]
    assert len(later) == 4 and later["numerator"].tolist() == [10.0] * 4


def test_person_days_and_events_of_a_rate_each_follow_their_months(one_in_january):
    """A rate per person-time: January's 1 event is withheld and so Q1's events; the
    person-days of every month are released, so Q1's are too (and its rate is missing,
    with its events)."""
    m = Measures(intervals=MONTHS[:3] + [Q1])
    m.define_rate(
        "admissions",
        events=admissions.in_interval().count_for_patient(),
        person_time=registrations.days_in_interval_for_patient(),
        per=1000,
    )
    out = _released(one_in_january, m)
    _january_and_its_quarter_withheld(out)
    assert out["denominator"].notna().all()


def test_patients_taken_as_adding_up_so_a_proportions_quarter_follows_january(one_in_january):
    """The proportion of patients admitted: January's 1 is withheld. The quarter's 21
    patients need not be January's 1 plus February's 10 plus March's 10 (one patient may
    be admitted every month), but they may be (a patient's first admission falls in one
    month only), and the release cannot tell which from the counts: the quarter is withheld
    with January, the safe side (``ADDING_UP``). February and March, which lie inside the
    quarter, are released."""
    m = Measures(intervals=MONTHS[:3] + [Q1])
    m.define_measure(
        "admitted", numerator=admissions.in_interval().exists_for_patient(), denominator=REGISTERED
    )
    out = _released(one_in_january, m)
    assert np.isnan(out.loc[MONTHS[0], "numerator"])
    assert np.isnan(out.loc[Q1, "numerator"])
    assert "shares days with this one" in out.loc[Q1, "disclosure_note"]
    assert out.loc[MONTHS[1], "numerator"] == 10.0
    assert out.loc[MONTHS[2], "numerator"] == 10.0
    assert out["denominator"].notna().all()


def test_a_standardised_rates_events_follow_their_months(one_in_january_aged):
    """A rate standardised over one band (90+, all born in 1930): January's 1 event is
    withheld, and so Q1's 21 events, and the rate with them; the population (patients) is
    released in every interval."""
    m = Measures(intervals=MONTHS[:3] + [Q1])
    m.define_standardised_rate(
        "admissions",
        events=admissions.in_interval().count_for_patient(),
        among=REGISTERED,
        per=1000,
        min_age=90,
    )
    out = _released(one_in_january_aged, m)
    _january_and_its_quarter_withheld(out)
    assert out["denominator"].notna().all()


@pytest.fixture(scope="module")
def one_in_january_aged(tmp_path_factory):
    tables = _events_tables(1)
    tables["patients"] = [
        {"patient_id": r["patient_id"], "date_of_birth": D(1930, 6, 1)}
        for r in tables["registrations"]
    ]
    return make_store(tmp_path_factory.mktemp("nested_aged"), tables)


def test_a_centile_over_rows_follows_its_months(tmp_path):
    """Door-to-analgesia minutes per attendance: January's 2 attendances (2 patients) are
    withheld; February's and March's 40 each are released. Q1's 82 attendances would give
    January's back, so Q1's counts are withheld, and its centiles with them."""
    regs, atts = [], []
    for month, n in ((1, 2), (2, 40), (3, 40)):
        for i in range(n):
            pid = f"p{month}_{i}"
            regs.append({"patient_id": pid, "practice_id": "A1", "start_date": D(2020, 1, 1)})
            arrival = dt.datetime(2025, month, 10, 9, 0)
            given = arrival + dt.timedelta(minutes=10 + i)
            atts.append(
                {"patient_id": pid, "arrival_datetime": arrival, "first_analgesia_datetime": given}
            )
    store = make_store(tmp_path, {"registrations": regs, "emergency_attendances": atts})
    att = emergency_attendances.in_interval()
    m = Measures(intervals=MONTHS[:3] + [Q1])
    m.define_quantile(
        "door_to_analgesia",
        value=minutes_between(att.arrival_datetime, att.first_analgesia_datetime),
        rows=att,
        among=REGISTERED,
        quantiles=(0.5,),
    )
    out = _released(store, m)
    _january_and_its_quarter_withheld(out)
    assert out.loc[MONTHS[1], "value"] == 30.0  # (10..49 minutes: the median 29.5 → 30)
