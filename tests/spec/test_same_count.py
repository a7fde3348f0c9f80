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

from pophealth.query import Measures, events, run_measures
from pophealth.query.measures import SAME_COUNT
from tests.spec.conftest import make_store
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


@pytest.mark.parametrize("engine", ENGINES)
def test_one_count_in_a_proportion_and_a_ratio_is_withheld_alike(engine, recorded_store):
    """The proportion withholds A (1: primary) and B (13 of 14: complement). Released on
    its own, the ratio would withhold A and, as A's second cell, the smallest other, C (8),
    releasing B's 13 as 15: then A = 22 − 13 − 8 = 1 from the overall 20 (18-22), B's 13
    (11-15 from 15, 13 or more as 14 − 1) and C's 8 (8-12 from the proportion's 10).
    Withheld alike, the ratio takes B from the proportion and needs no C: A stays 1-7."""
    released = run_measures(recorded_store, _measures(), engine=engine)
    it = Intruder()
    for name in ("recorded", "tests_per_patient"):
        rows = _by_practice(released, name)
        assert rows["numerator"].isna().to_dict() == {"A": True, "B": True, "C": False}, name
        assert rows.loc["C", "numerator"] == 10, name
        for practice in RECORDED:
            r = rows.loc[practice]
            it.sees([practice], r["numerator"], r["disclosure_note"], "numerator")
    total = released[released["measure"] == "recorded_overall"].iloc[0]
    it.sees(list(RECORDED), total["numerator"], total["disclosure_note"], "numerator")
    assert it.range_of("A") == (1, 7)
    note = _by_practice(released, "tests_per_patient").loc["B", "disclosure_note"]
    assert note == f"numerator {SAME_COUNT}"
    # the denominators are one count too, none withheld: the same in both, and overall
    for name in ("recorded", "tests_per_patient"):
        assert list(_by_practice(released, name)["denominator"]) == [20, 15, 50], name


@pytest.mark.parametrize("engine", ENGINES)
def test_the_ratio_alone_withholds_its_own_second_cell(engine, recorded_store):
    """What the link changes: the ratio on its own withholds A and C and releases B's 13 as
    15, which beside the proportion would give A back (the fault above)."""
    released = run_measures(recorded_store, _measures(proportion=False), engine=engine)
    rows = _by_practice(released, "tests_per_patient")
    assert rows["numerator"].isna().to_dict() == {"A": True, "B": False, "C": True}
    assert rows.loc["B", "numerator"] == 15
    it = Intruder()
    for practice in RECORDED:
        r = rows.loc[practice]
        it.sees([practice], r["numerator"], r["disclosure_note"], "numerator")
    recorded = run_measures(recorded_store, _measures(ratio=False), engine=engine)
    for practice in RECORDED:
        r = _by_practice(recorded, "recorded").loc[practice]
        it.sees([practice], r["numerator"], r["disclosure_note"], "numerator")
    total = recorded[recorded["measure"] == "recorded_overall"].iloc[0]
    it.sees(list(RECORDED), total["numerator"], total["disclosure_note"], "numerator")
    assert it.range_of("A") == (1, 1)  # (two runs: one decision per run, not across runs)


def test_a_count_another_measure_gives_is_taken_last_as_a_second_cell(twice_store):
    """B's 14 tests are not its 13 patients with a test, but A's 1 and C's 8 are one count
    in both measures. On its own the ratio withholds A and C (8, the smallest other) and
    releases B's 14 as 15. Beside the proportion, A is withheld in both, and the ratio
    takes B as A's second cell rather than C, which the proportion releases (withholding C
    would withhold it there too). Nothing pins A."""
    alone = run_measures(twice_store, _measures(proportion=False), engine="duckdb")
    mine = _by_practice(alone, "tests_per_patient")["numerator"]
    assert mine.isna().to_dict() == {"A": True, "B": False, "C": True}
    both = run_measures(twice_store, _measures(), engine="duckdb")
    it = Intruder()
    for name in ("recorded", "tests_per_patient"):
        rows = _by_practice(both, name)
        assert rows["numerator"].isna().to_dict() == {"A": True, "B": True, "C": False}, name
        it.sees(["C"], rows.loc["C", "numerator"], None, "numerator")
        it.sees(["A"], np.nan, rows.loc["A", "disclosure_note"], "numerator")
    it.sees(["B"], np.nan, "numerator complement", "numerator")
    total = both[both["measure"] == "recorded_overall"].iloc[0]
    it.sees(list(RECORDED), total["numerator"], total["disclosure_note"], "numerator")
    assert it.range_of("A") == (1, 7)


@pytest.fixture(scope="module")
def two_each_store(tmp_path_factory):
    """As ``recorded_store``, but every patient with a test had two: no count of tests is a
    count of patients with one."""
    tables = _practice_tables(RECORDED)
    tables["events"] += [{**r, "date": D(2025, 6, 1)} for r in list(tables["events"])]
    return make_store(tmp_path_factory.mktemp("same_count_two_each"), tables)


def test_counts_that_differ_are_not_linked(two_each_store):
    """Every count of the ratio (2, 26, 16 tests) differs from the proportion's (1, 13, 8
    patients): the ratio is released exactly as on its own, whatever the proportion
    withholds — the link follows the counts, cell by cell, not the definitions."""
    both = run_measures(two_each_store, _measures(), engine="duckdb")
    alone = run_measures(two_each_store, _measures(proportion=False), engine="duckdb")
    cols = ["numerator", "denominator", "value", "disclosure_note"]
    mine = _by_practice(both, "tests_per_patient")[cols]
    pd.testing.assert_frame_equal(mine, _by_practice(alone, "tests_per_patient")[cols])
    assert mine["numerator"].isna().to_dict() == {"A": True, "B": False, "C": True}


def test_a_quantile_beside_a_ratio_of_the_same_patients(recorded_store):
    """A centile measure (its n: the patients with a value) beside the ratio (one test
    each: the same counts), no proportion: the two withhold their cells alike — A, and one
    second cell in both — and C's value is released only where its n is."""
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
    assert ratio.isna().sum() == 2 and np.isnan(ratio["A"])
    values = _by_practice(released, "hba1c_median")["value"]
    assert (values.isna() | median.notna()).all()
