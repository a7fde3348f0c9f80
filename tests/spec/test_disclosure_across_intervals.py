"""Rounded counts across intervals: one count over quarters beside the same count over the
year (docs/query.md section 4).

Each interval is a table of its own, and a released count is rounded to the nearest 5 (a
10 is 8-12, a 50 is 48-52). The year's count is tied to its quarters': events add up (the
year's admissions are its quarters'), and patients are at least each quarter's and at most
their sum (a patient admitted in two quarters is one patient in the year). Rounded counts
can then give an exact one back: four quarters of 12 patients, each released as 10, beside
the year's 48, released as 50 — four counts of at most 12 that add up to at least 48 are
12 each. ``run_measures`` reads the released counts as their windows across the intervals
that tile one another and withholds a count they fix.

The intruder (audit 21's :class:`Intruder`) knows the definitions: a count released as r
is r − 2 … r + 2 (the windows of ONS, "Disclosure control guidance for tables produced from
administrative sources", 2014), a withheld one is 0 or more (1-7 where its note says
primary), and the facts above as linear constraints; the least and greatest value of a
count are found by integer programming (scipy's ``milp``; Cox LH 1980, JASA 75:377-85).
The arithmetic is in each docstring. Spark's half runs with the slow tests.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from pophealth.disclosure import DisclosurePolicy
from pophealth.query import (
    Measures,
    admissions,
    index_date,
    patients,
    quarterly,
    registrations,
    run_measures,
    yearly,
)
from tests.spec.conftest import admission_row, make_store
from tests.spec.test_disclosure_audit21 import AT_MOST, ENGINES, Intruder

D = dt.date
QUARTERS = quarterly(D(2025, 1, 1), 4)
YEAR = yearly(D(2025, 1, 1), 1)[0]
REGISTERED = registrations.registered_on(index_date)
PRACTICE = {"practice": registrations.practice_on(index_date).practice_id}
ADMITTED = admissions.in_interval().exists_for_patient()
ADMISSIONS = admissions.in_interval().count_for_patient()


def intruder_of(released: pd.DataFrame, col: str, events: bool, **where) -> Intruder:
    """What the intruder knows of ``col`` in the rows of ``released`` matching ``where``:
    each quarter's and the year's count, and the year's tied to the quarters' — equal to
    their sum (``events``), or at least each and at most their sum (patients)."""
    rows = released
    for k, v in where.items():
        rows = rows[rows[k] == v]
    it = Intruder()
    quarters = []
    for start, end in [*QUARTERS, YEAR]:
        row = rows[(rows["interval_start"] == start) & (rows["interval_end"] == end)]
        assert len(row) == 1, (start, end, where)
        name = "year" if (start, end) == YEAR else f"q{len(quarters) + 1}"
        it.sees([name], float(row[col].iloc[0]), row["disclosure_note"].iloc[0], col)
        if name != "year":
            quarters.append(name)
    if events:
        it.knows({"year": 1, **{q: -1 for q in quarters}}, 0, 0)
    else:
        it.knows({"year": 1, **{q: -1 for q in quarters}}, -AT_MOST, 0)
        for q in quarters:
            it.knows({"year": 1, q: -1}, 0, AT_MOST)
    return it


def _store(tmp_path_factory, name: str, plan: dict[str, list[int]]):
    """Per practice, the patients admitted in each quarter (others each quarter, each once,
    in its middle month), and 60 more registered who never are."""
    regs, adms = [], []
    for practice, counts in plan.items():
        admitted = [q for q, n in enumerate(counts) for _ in range(n)]
        for k, q in enumerate([*admitted, *([None] * 60)]):
            pid = f"{practice}{k:04d}"
            regs.append({"patient_id": pid, "practice_id": practice, "start_date": D(2020, 1, 1)})
            if q is not None:
                adms.append(admission_row(pid, D(2025, 3 * q + 2, 15)))
    return make_store(tmp_path_factory.mktemp(name), {"registrations": regs, "admissions": adms})


def _measures(numerator, group_by=None) -> Measures:
    m = Measures(intervals=[*QUARTERS, YEAR])
    m.define_measure(
        "admitted", numerator=numerator, denominator=REGISTERED, group_by=group_by or {}
    )
    return m


@pytest.fixture(scope="module")
def twelves(tmp_path_factory):
    return _store(tmp_path_factory, "across_twelves", {"A": [12, 12, 12, 12]})


@pytest.mark.parametrize("engine", ENGINES)
def test_quarters_at_the_top_of_their_windows_beside_the_year(engine, twelves):
    """12 patients admitted in each quarter (others each quarter), released as 10 (8-12),
    and 48 in the year, released as 50 (48-52). The intruder: the year is at most the
    quarters' sum, so q1 + q2 + q3 + q4 ≥ 48 with each ≤ 12: each is 12. Now one quarter
    is withheld (the first: all are 12), with a note saying why, and no count is fixed: q1
    is 12 to 48 (48 − 3 × 12 … the year's 52), the others 8-12 still."""
    released = run_measures(twelves, _measures(ADMITTED), engine=engine)
    shown = released.set_index(["interval_start", "interval_end"])["numerator"]
    assert shown.isna().sum() == 1 and np.isnan(shown.loc[QUARTERS[0]])
    note = released.loc[released["numerator"].isna(), "disclosure_note"].iloc[0]
    assert "could be worked out exactly from the same count over the intervals" in note
    it = intruder_of(released, "numerator", events=False)
    for name in ("q1", "q2", "q3", "q4", "year"):
        lo, hi = it.range_of(name)
        assert lo < hi, f"{name} is exactly {lo}"
    assert it.range_of("q1") == (12, 52)


@pytest.mark.parametrize("engine", ENGINES)
def test_the_same_quarters_without_the_audit_give_every_count_back(engine, twelves):
    """The attack itself, so the test above can fail: with the numerator released as the
    rule rounds it and nothing more withheld (``disclosure=False``, rounded here as the
    policy does), the intruder has every quarter exactly."""
    raw = run_measures(twelves, _measures(ADMITTED), engine=engine, disclosure=False)
    assert sorted(raw["numerator"]) == [12, 12, 12, 12, 48]
    raw["numerator"] = (np.floor(raw["numerator"] / 5 + 0.5) * 5).astype(float)
    it = intruder_of(raw, "numerator", events=False)
    assert it.range_of("q1") == (12, 12)


@pytest.fixture(scope="module")
def eights(tmp_path_factory):
    return _store(tmp_path_factory, "across_eights", {"A": [8, 8, 8, 8]})


@pytest.mark.parametrize("engine", ENGINES)
def test_admissions_at_the_bottom_of_their_windows_beside_the_year(engine, eights):
    """8 admissions in each quarter (8 patients, one each), released as 10 (8-12), and 32
    in the year, released as 30 (28-32). Admissions add up: q1 + q2 + q3 + q4 = year ≤ 32
    with each ≥ 8: each is 8, and the year 32. Now one quarter is withheld, and nothing is
    fixed: q1 is 0-8 (28 − 36 … 32 − 24), the others 8-12 and the year 28-32 still."""
    released = run_measures(eights, _measures(ADMISSIONS), engine=engine)
    assert released["numerator"].isna().sum() == 1
    it = intruder_of(released, "numerator", events=True)
    for name in ("q1", "q2", "q3", "q4", "year"):
        lo, hi = it.range_of(name)
        assert lo < hi, f"{name} is exactly {lo}"


@pytest.mark.parametrize("engine", ENGINES)
def test_quarters_that_fix_nothing_are_all_released(engine, tmp_path_factory):
    """12, 13, 11 and 14 patients (released 10, 15, 10, 15) beside the year's 50 (50):
    at most 12 + 17 + 12 + 17 = 58 ≥ 48, nothing fixed, nothing more withheld — the same
    release as each interval on its own."""
    store = _store(tmp_path_factory, "across_open", {"A": [12, 13, 11, 14]})
    released = run_measures(store, _measures(ADMITTED), engine=engine)
    by_interval = released.set_index(["interval_start", "interval_end"])["numerator"]
    assert [by_interval.loc[iv] for iv in [*QUARTERS, YEAR]] == [10, 15, 10, 15, 50]
    assert (
        released["disclosure_note"].isna().all()
        or (~released["disclosure_note"].fillna("").str.contains("secondary")).all()
    )


@pytest.fixture(scope="module")
def two_practices(tmp_path_factory):
    return _store(tmp_path_factory, "across_two", {"A": [12, 12, 12, 12], "B": [12, 12, 12, 12]})


@pytest.mark.parametrize("engine", ENGINES)
def test_by_practice_each_practice_keeps_its_quarters_open(engine, two_practices):
    """Two practices, each with 12 patients admitted in each quarter and 48 in the year,
    by practice: each practice's quarters, 10 each, beside its year's 50, are 12 each. Now
    each practice has a quarter withheld (withheld in the same quarter, the two cells of
    that quarter's table protect each other), and no practice's count is fixed."""
    released = run_measures(two_practices, _measures(ADMITTED, PRACTICE), engine=engine)
    for practice in ("A", "B"):
        it = intruder_of(released, "numerator", events=False, practice=practice)
        for name in ("q1", "q2", "q3", "q4", "year"):
            lo, hi = it.range_of(name)
            assert lo < hi, f"practice {practice}'s {name} is exactly {lo}"
    assert released["numerator"].isna().sum() == 2


def test_unrounded_counts_are_not_read_across_intervals(twelves):
    """With ``rounding="none"`` every count is exact already: nothing more is withheld."""
    policy = DisclosurePolicy(rounding="none")
    released = run_measures(twelves, _measures(ADMITTED), policy=policy)
    assert sorted(released["numerator"]) == [12, 12, 12, 12, 48]


@pytest.fixture(scope="module")
def aged_70(tmp_path_factory):
    """60 people aged 70 all 2025 (born 1 January 1955), 12 others admitted once in each
    quarter."""
    pats, adms = [], []
    for i in range(60):
        pid = f"p{i:03d}"
        pats.append({"patient_id": pid, "date_of_birth": D(1955, 1, 1), "sex": "female"})
        if i < 48:
            adms.append(admission_row(pid, D(2025, 3 * (i // 12) + 2, 15)))
    tables = {"patients": pats, "admissions": adms}
    return make_store(tmp_path_factory.mktemp("across_aged_70"), tables)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_standardised_rate_over_quarters_beside_the_year(engine, aged_70):
    """An age-standardised admission rate (one band, 70-74) over the quarters and the year:
    12 admissions a quarter, each released as 10, beside the year's 48, released as 50 —
    events add up, so each quarter is 12. Now one quarter's events are withheld (its rate
    with them), and no count of events is fixed."""
    m = Measures(intervals=[*QUARTERS, YEAR])
    m.define_standardised_rate(
        "admission_rate",
        events=ADMISSIONS,
        among=patients.is_alive_on(index_date),
        min_age=70,
        max_age=74,
        group_by={},
    )
    released = run_measures(aged_70, m, engine=engine)
    assert released["numerator"].isna().sum() == 1
    assert released.loc[released["numerator"].isna(), "value"].isna().all()
    it = intruder_of(released, "numerator", events=True)
    for name in ("q1", "q2", "q3", "q4", "year"):
        lo, hi = it.range_of(name)
        assert lo < hi, f"{name} is exactly {lo}"
