"""One count given by two measures of a run is released by one decision.

Two measures can give the same count in the same interval and group by different
definitions: the patients with an HbA1c in a proportion, and the HbA1c tests per patient
in a ratio when each patient had one test. Each measure chooses the cells it withholds by
its own rule — a proportion also withholds a group whose complement is small, a ratio
takes the smallest other group as the second cell — so, released one by one, a count one
measure withholds the other can release, and with the overall count it gives a withheld
count back exactly (audit 21, fault 1). ``run_measures`` now withholds a count withheld in
one measure in every other measure of the run that gives the same exact count, not 0, in
the same interval and group (``_released_within``'s ``exact``), and releases the measures
one after another, so that the later one takes the withheld cells as its own protection
rather than withholding a cell of its own too.

The intruder (:class:`tests.spec.test_disclosure_audit21.Intruder`) sees every released
numerator and the overall count, and knows which counts are one (each patient had one
test). Practice by practice (each with one test per patient with one):

practice   registered   with an HbA1c
A          20           1     (withheld: primary)
B          14           13    (the proportion withholds it: its complement, 1, is 1-7)
C          50           8
total      84           22
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from pophealth.query import Measures, admissions, events, monthly, quarterly, run_measures
from pophealth.query.measures import SAME_COUNT
from tests.spec.conftest import admission_row, make_store
from tests.spec.test_disclosure_audit21 import (
    ENGINES,
    HBA1C,
    PRACTICE,
    RECORDED,
    REGISTERED,
    YEAR,
    Intruder,
    _practice_tables,
)

D = dt.date


@pytest.fixture(scope="module")
def recorded_store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("same_count"), _practice_tables(RECORDED))


@pytest.fixture(scope="module")
def twice_store(tmp_path_factory):
    """As ``recorded_store``, but one of practice B's patients had a second test: B's tests
    (14) are not its patients with a test (13)."""
    tables = _practice_tables(RECORDED)
    tables["events"].append(
        {"patient_id": "B000", "date": D(2025, 6, 1), "code": "hba1c", "value": 50.0}
    )
    return make_store(tmp_path_factory.mktemp("same_count_twice"), tables)


def _measures(*, ratio: bool = True, proportion: bool = True) -> Measures:
    m = Measures(intervals=[YEAR])
    if proportion:
        m.define_measure(
            "recorded", numerator=HBA1C.exists_for_patient(), denominator=REGISTERED,
            group_by=PRACTICE,
        )  # fmt: skip
    if ratio:
        m.define_measure(
            "tests_per_patient", numerator=HBA1C.count_for_patient(), denominator=REGISTERED,
            group_by=PRACTICE,
        )  # fmt: skip
    m.define_measure(
        "recorded_overall", numerator=HBA1C.exists_for_patient(), denominator=REGISTERED,
        group_by={},
    )  # fmt: skip
    return m


def _by_practice(released: pd.DataFrame, name: str) -> pd.DataFrame:
    return released[released["measure"] == name].set_index("practice")


def _range_of_a(by_practice: list[pd.DataFrame], overall: pd.DataFrame) -> tuple[int, int]:
    """What the intruder makes of practice A's patients with an HbA1c from the numerators
    of ``by_practice`` (each a measure's rows by practice, of those patients) and the
    overall count (``recorded_overall`` in ``overall``)."""
    it = Intruder()
    for rows in by_practice:
        for practice in RECORDED:
            r = rows.loc[practice]
            it.sees([practice], r["numerator"], r["disclosure_note"], "numerator")
    total = overall[overall["measure"] == "recorded_overall"].iloc[0]
    it.sees(list(RECORDED), total["numerator"], total["disclosure_note"], "numerator")
    return it.range_of("A")


@pytest.mark.parametrize("engine", ENGINES)
def test_one_count_in_a_proportion_and_a_ratio_is_withheld_alike(engine, recorded_store):
    """The proportion withholds A (1: primary) and B (13 of 14: complement). Released on
    its own, the ratio would withhold A and, as A's second cell, the smallest other, C (8),
    releasing B's 13 as 15: then A = 22 − 13 − 8 = 1 from the overall 20 (18-22), B's 13
    (11-15 from 15, 13 or more as 14 − 1) and C's 8 (8-12 from the proportion's 10).
    Withheld alike, the ratio takes B from the proportion and needs no C: A stays 1-7."""
    released = run_measures(recorded_store, _measures(), engine=engine)
    both = [_by_practice(released, name) for name in ("recorded", "tests_per_patient")]
    for rows in both:
        assert rows["numerator"].isna().to_dict() == {"A": True, "B": True, "C": False}
        assert rows.loc["C", "numerator"] == 10
    assert _range_of_a(both, released) == (1, 7)
    # (released after the proportion, the ratio takes B as its own second cell, not C)
    assert _by_practice(released, "tests_per_patient").loc["B", "disclosure_note"] == (
        "numerator secondary"
    )
    # the denominators are one count too, none withheld: the same in both, and overall
    for name in ("recorded", "tests_per_patient"):
        assert list(_by_practice(released, name)["denominator"]) == [20, 15, 50], name


def test_one_count_one_decision_whichever_measure_is_released_first(recorded_store):
    """The ratio defined (and released) first, the proportion after it, no overall: the
    ratio first withholds A and C; the proportion A and B (its complement). B is then
    withheld in the ratio too, and the ratio released again, its note saying why — each
    count is withheld in both measures or released in both with one value. (C stays
    withheld in both: a count withheld for another measure's sake is not released again
    when that measure no longer needs it — the safe side.)"""
    m = Measures(intervals=[YEAR])
    for name, numerator in (
        ("tests_per_patient", HBA1C.count_for_patient()),
        ("recorded", HBA1C.exists_for_patient()),
    ):
        m.define_measure(name, numerator=numerator, denominator=REGISTERED, group_by=PRACTICE)
    released = run_measures(recorded_store, m, engine="duckdb")
    ratio = _by_practice(released, "tests_per_patient")
    share = _by_practice(released, "recorded")
    pd.testing.assert_series_equal(ratio["numerator"], share["numerator"])
    assert ratio["numerator"].isna()[["A", "B"]].all()
    assert ratio.loc["B", "disclosure_note"] == f"numerator {SAME_COUNT}"
    assert share.loc["B", "disclosure_note"] == "numerator complement"


@pytest.mark.parametrize("engine", ENGINES)
def test_the_ratio_alone_withholds_its_own_second_cell(engine, recorded_store):
    """What the link changes: the ratio on its own withholds A and C and releases B's 13 as
    15, which beside the proportion would give A back (the fault above)."""
    released = run_measures(recorded_store, _measures(proportion=False), engine=engine)
    rows = _by_practice(released, "tests_per_patient")
    assert rows["numerator"].isna().to_dict() == {"A": True, "B": False, "C": True}
    assert rows.loc["B", "numerator"] == 15
    recorded = run_measures(recorded_store, _measures(ratio=False), engine=engine)
    # (two runs: one decision per run, not across runs)
    assert _range_of_a([rows, _by_practice(recorded, "recorded")], recorded) == (1, 1)


@pytest.fixture(scope="module")
def two_each_store(tmp_path_factory):
    """As ``recorded_store``, but every patient with a test had two: no count of tests is a
    count of patients with one."""
    tables = _practice_tables(RECORDED)
    tables["events"] += [{**r, "date": D(2025, 6, 1)} for r in list(tables["events"])]
    return make_store(tmp_path_factory.mktemp("same_count_two_each"), tables)


@pytest.mark.parametrize("store", ["twice_store", "two_each_store"])
def test_counts_that_differ_are_two_counts(store, request):
    """The ratio's counts differ from the proportion's in B alone (14 tests of 13 patients
    with one; A's 1 and C's 8 equal in both), or everywhere (2, 26, 16 of 1, 13, 8). Counts
    equal in some cells and not in others are two counts (small counts often agree by
    chance), not one by two definitions: the ratio is released exactly as on its own — A
    and C withheld, B's as 15 — whatever the proportion withholds; nothing pins A."""
    store = request.getfixturevalue(store)
    both = run_measures(store, _measures(), engine="duckdb")
    alone = run_measures(store, _measures(proportion=False), engine="duckdb")
    cols = ["numerator", "denominator", "value", "disclosure_note"]
    mine = _by_practice(both, "tests_per_patient")[cols]
    pd.testing.assert_frame_equal(mine, _by_practice(alone, "tests_per_patient")[cols])
    assert mine["numerator"].isna().to_dict() == {"A": True, "B": False, "C": True}
    share = _by_practice(both, "recorded")
    assert share["numerator"].isna().to_dict() == {"A": True, "B": True, "C": False}
    assert _range_of_a([share], both) == (1, 7)  # (the patients: the proportion's, overall)


def test_a_quantile_beside_a_ratio_of_the_same_patients(recorded_store):
    """A centile measure (its n: the patients with a value) beside the ratio (one test
    each: the same counts), no proportion: the two withhold their cells alike — A, and a
    second cell at least, in both — and a value is released only where its n is. (Here all
    three: the ratio takes C, the smallest, as A's second cell; the centile measure takes B
    for its complement, 1 of 14 with no value; each count is withheld in both.)"""
    m = Measures(intervals=[YEAR])
    m.define_measure(
        "tests_per_patient", numerator=HBA1C.count_for_patient(), denominator=REGISTERED,
        group_by=PRACTICE,
    )  # fmt: skip
    m.define_quantile(
        "hba1c_median", value=HBA1C.maximum_for_patient(events.value), among=REGISTERED,
        group_by=PRACTICE,
    )  # fmt: skip
    released = run_measures(recorded_store, m, engine="duckdb")
    ratio = _by_practice(released, "tests_per_patient")["numerator"]
    median = _by_practice(released, "hba1c_median")["numerator"]
    assert ratio.isna().to_dict() == median.isna().to_dict()
    assert ratio.isna().sum() >= 2 and np.isnan(ratio["A"]) and np.isnan(median["B"])
    values = _by_practice(released, "hba1c_median")["value"]
    assert (values.isna() | median.notna()).all()


@pytest.fixture(scope="module")
def complement_store(tmp_path_factory):
    """30 registered since 2020; admissions (one each): January 25 patients, February and
    March 8 each."""
    regs, adms = [], []
    for i in range(30):
        pid = f"P{i:02d}"
        regs.append({"patient_id": pid, "practice_id": "A", "start_date": D(2020, 1, 1)})
        for month, many in ((1, 25), (2, 8), (3, 8)):
            if i < many:
                adms.append(admission_row(pid, D(2025, month, 10)))
    return make_store(tmp_path_factory.mktemp("same_count_complement"), {
        "registrations": regs, "admissions": adms,
    })  # fmt: skip


def test_the_same_count_is_protected_by_the_intervals_around_it(complement_store):
    """Patients admitted in the month (a proportion) withhold January's 25 of 30 for its
    complement (5). The admissions in the month (a ratio, each patient admitted once) give
    the same 25, withheld there too — and so the ratio's quarter (25 + 8 + 8 = 41), which
    less February and March would give the 25 back, is withheld with it, as for a January
    the ratio withheld for its own sake."""
    months = monthly(D(2025, 1, 1), 3)
    m = Measures(intervals=months)
    admitted = admissions.in_interval()
    m.define_measure("admitted", numerator=admitted.exists_for_patient(), denominator=REGISTERED)
    m.define_measure("admissions", numerator=admitted.count_for_patient(), denominator=REGISTERED)
    m.define_measure(
        "admissions_q",
        numerator=admitted.count_for_patient(),
        denominator=REGISTERED,
        intervals=quarterly(D(2025, 1, 1), 1),
    )
    released = run_measures(complement_store, m, engine="duckdb")

    def numerators(name: str) -> list[float]:
        return list(released[released["measure"] == name]["numerator"])

    assert numerators("admitted")[1:] == [10, 10] and np.isnan(numerators("admitted")[0])
    assert numerators("admissions")[1:] == [10, 10] and np.isnan(numerators("admissions")[0])
    assert np.isnan(numerators("admissions_q")[0])
    notes = list(released["disclosure_note"])
    assert notes[:4] == [
        "numerator complement", None, None, f"numerator {SAME_COUNT}"
    ]  # fmt: skip
    assert notes[6].startswith("numerator secondary (withheld in an interval that shares days")
