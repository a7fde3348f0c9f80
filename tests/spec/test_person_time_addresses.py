"""Spec: person-time over a selection of addresses follows the addresses table's own overlap
rule. ``addresses.where(addresses.care_home).days_in_interval_for_patient()`` counts the
days on which the patient's address — by the rule ``addresses.address_on(date)`` uses,
over all their addresses: the latest start wins, ties broken by the LSOA code (then every
other column) — is a care home. A care-home row left open after a move to a flat that
started later stops counting at the flat's start. Other period tables, and all addresses
unfiltered, count the union of the periods, every day once. On DuckDB and on Spark."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from pophealth.query import (
    Measures,
    addresses,
    index_date,
    monthly,
    patients,
    registrations,
    run_measures,
)
from pophealth.store import Store
from tests.spec.conftest import FLAT, FLAT2, HOME, HOME2, make_store
from tests.spec.conftest import address_row as _addr
from tests.spec.conftest import care_home_row as _home

D = dt.date
JAN, FEB, MAR = D(2025, 1, 1), D(2025, 2, 1), D(2025, 3, 1)
OLD = D(2020, 1, 1)


def _tables() -> dict:
    """One patient per case; the care-home days in January (31), February (28), March (31)
    2025 by the overlap rule:

    =============  ==========================================================  ===  ===  ===
    patient        addresses                                                   Jan  Feb  Mar
    =============  ==========================================================  ===  ===  ===
    left_open      care home since June 2024, left open; flat from 15 Jan       14    0    0
    moves_in       flat since 2020, open; care home from 10 Feb                  0   19   31
    respite        home since 2020, open; care home 20 Jan to 5 Feb             12    5    0
    two_homes      care home to 15 Feb; another from 1 Feb (overlap: once)      31   28   31
    duplicated     the same care-home row twice, to 31 Jan; flat from 20 Jan    19    0    0
    tie_home       flat to 9 Jan; care home and flat both from 10 Jan, the      22   28   31
                   care home's LSOA code later (it wins the tie)
    tie_flat       as tie_home, the flat's LSOA code later (it wins)             0    0    0
    tie_unknown    as tie_home, the care home not geocoded (it loses)            0    0    0
    tie_end        care home 10 Jan to 10 Feb, flat from 10 Jan in the same     22   10    0
                   LSOA, open (an end date wins over none)
    dies           care home since 2024, open; dies 20 Feb (until: 20 in Feb)   31   28   31
    gap            flat to 5 Jan; flat from 26 Jan (no care home)                0    0    0
    =============  ==========================================================  ===  ===  ===
    """
    jan10 = D(2025, 1, 10)
    return {
        "patients": [
            {"patient_id": p, "date_of_death": D(2025, 2, 20) if p == "dies" else None}
            for p in CARE_DAYS
        ],
        "addresses": [
            _home("left_open", D(2024, 6, 1)),
            _addr("left_open", D(2025, 1, 15)),
            _addr("moves_in", OLD),
            _home("moves_in", D(2025, 2, 10)),
            _addr("respite", OLD),
            _home("respite", D(2025, 1, 20), D(2025, 2, 5)),
            _home("two_homes", D(2024, 1, 1), D(2025, 2, 15)),
            _home("two_homes", D(2025, 2, 1), lsoa=HOME2),
            _home("duplicated", D(2024, 1, 1), D(2025, 1, 31)),
            _home("duplicated", D(2024, 1, 1), D(2025, 1, 31)),
            _addr("duplicated", D(2025, 1, 20)),
            _addr("tie_home", OLD, D(2025, 1, 9)),
            _home("tie_home", jan10, lsoa=HOME2),
            _addr("tie_home", jan10, lsoa=FLAT2),
            _addr("tie_flat", OLD, D(2025, 1, 9)),
            _home("tie_flat", jan10, lsoa=FLAT2),
            _addr("tie_flat", jan10, lsoa=HOME2),
            _addr("tie_unknown", OLD, D(2025, 1, 9)),
            _home("tie_unknown", jan10, lsoa=None),
            _addr("tie_unknown", jan10, lsoa=FLAT),
            _home("tie_end", jan10, D(2025, 2, 10)),
            _addr("tie_end", jan10, lsoa=HOME),
            _home("dies", D(2024, 1, 1)),
            _addr("gap", OLD, D(2025, 1, 5)),
            _addr("gap", D(2025, 1, 26), lsoa=FLAT2),
        ],
        "registrations": [  # a later-starting registration does not end an earlier one
            {"patient_id": "left_open", "practice_id": "A1", "start_date": OLD},
            {"patient_id": "left_open", "practice_id": "B2", "start_date": D(2025, 1, 15)},
            {
                "patient_id": "gap",
                "practice_id": "A1",
                "start_date": OLD,
                "end_date": D(2025, 1, 5),
            },
            {"patient_id": "gap", "practice_id": "B2", "start_date": D(2025, 1, 26)},
        ],
    }


CARE_DAYS = {  # patient -> care-home days in January, February, March
    "left_open": (14, 0, 0),
    "moves_in": (0, 19, 31),
    "respite": (12, 5, 0),
    "two_homes": (31, 28, 31),
    "duplicated": (19, 0, 0),
    "tie_home": (22, 28, 31),
    "tie_flat": (0, 0, 0),
    "tie_unknown": (0, 0, 0),
    "tie_end": (22, 10, 0),
    "dies": (31, 28, 31),
    "gap": (0, 0, 0),
}
ADDRESSED_DAYS = {p: (31, 28, 31) for p in CARE_DAYS} | {
    "gap": (11, 28, 31),
    "tie_end": (22, 28, 31),
}
IN_CARE = addresses.where(addresses.care_home)


def _per_patient(months, names: tuple[str, ...] = ()) -> Measures:
    """Each patient's days in each of ``months`` by each way of counting (or those named)."""
    m = Measures(intervals=months)
    during = {
        "care": IN_CARE.days_in_interval_for_patient(),
        "care_alive": IN_CARE.days_in_interval_for_patient(until=patients.date_of_death),
        "care_rows": IN_CARE.sum_for_patient(IN_CARE.days_in_interval()),
        "flat": addresses.where(addresses.lsoa_code == FLAT).days_in_interval_for_patient(),
        "addressed": addresses.days_in_interval_for_patient(),
        "at_a1": registrations.where(
            registrations.practice_id == "A1"
        ).days_in_interval_for_patient(),
    }
    for name, days in during.items():
        if names and name not in names:
            continue
        m.define_measure(
            name,
            numerator=days,
            denominator=True,
            group_by={"patient": patients.patient_id},
        )
    return m


_RUNS: dict[tuple, pd.DataFrame] = {}


@pytest.fixture
def run(engine, tmp_path_factory):
    """``run(months)``: the per-patient measures over ``months`` on ``engine`` (each
    distinct run once, on one store)."""
    store_dir = tmp_path_factory.getbasetemp() / "person_time_addresses"
    if not store_dir.exists():
        store_dir.mkdir()
        make_store(store_dir, _tables())

    def go(months, names: tuple[str, ...] = ()) -> dict[str, dict[str, tuple]]:
        key = (engine, tuple(months), names)
        if key not in _RUNS:
            store = Store.open_or_new(store_dir / "store")
            m = _per_patient(months, names)
            _RUNS[key] = run_measures(store, m, engine=engine, disclosure=False)
        out = _RUNS[key]
        got: dict[str, dict[str, tuple]] = {}
        for name, rows in out.groupby("measure"):
            rows = rows.sort_values("interval_start")
            got[name] = {p: tuple(int(x) for x in r.numerator) for p, r in rows.groupby("patient")}
        return got

    return go


def test_care_home_days_follow_the_address_on_each_day(run):
    got = run(monthly(JAN, 3))
    assert got["care"] == CARE_DAYS


def test_a_care_home_left_open_stops_at_a_later_flats_start(run):
    got = run(monthly(JAN, 3))
    # the care-home row's own days still run on: the per-row count is each row's days
    assert got["care"]["left_open"] == (14, 0, 0)
    assert got["care_rows"]["left_open"] == (31, 28, 31)
    # her days at the flat's LSOA start on the 15th
    assert got["flat"]["left_open"] == (17, 28, 31)


def test_a_care_home_starting_later_than_an_open_flat_counts_from_its_start(run):
    got = run(monthly(JAN, 3))
    assert got["care"]["moves_in"] == (0, 19, 31)
    assert got["flat"]["moves_in"] == (31, 9, 0)  # the flat's days end the day before


def test_a_stay_nested_in_a_home_counts_only_while_nested(run):
    got = run(monthly(JAN, 3))
    assert got["care"]["respite"] == (12, 5, 0)
    assert got["flat"]["respite"] == (19, 23, 31)  # the home resumes after the stay


def test_overlapping_care_homes_and_identical_rows_count_each_day_once(run):
    got = run(monthly(JAN, 3))
    assert got["care"]["two_homes"] == (31, 28, 31)
    assert got["care_rows"]["two_homes"] == (31, 15 + 28, 31)
    assert got["care"]["duplicated"] == (19, 0, 0)
    assert got["care_rows"]["duplicated"] == (62, 0, 0)


def test_same_start_ties_go_as_address_on_breaks_them(run):
    got = run(monthly(JAN, 3))
    # the later LSOA code wins; an ungeocoded address loses; then a closed end wins
    assert got["care"]["tie_home"] == (22, 28, 31)
    assert got["care"]["tie_flat"] == (0, 0, 0)
    assert got["care"]["tie_unknown"] == (0, 0, 0)
    assert got["flat"]["tie_unknown"] == (31, 28, 31)
    assert got["care"]["tie_end"] == (22, 10, 0)


def test_until_a_death_ends_the_care_home_days(run):
    got = run(monthly(JAN, 3))
    assert got["care_alive"] == CARE_DAYS | {"dies": (31, 20, 0)}


def test_unfiltered_addresses_and_registrations_keep_the_union_of_periods(run):
    got = run(monthly(JAN, 3))
    assert got["addressed"] == ADDRESSED_DAYS
    # registered at A1 all along, though B2's registration started later (a registration
    # is not ended by a later one)
    assert got["at_a1"]["left_open"] == (31, 28, 31)
    assert got["at_a1"]["gap"] == (5, 0, 0)


def test_several_months_in_one_run_equal_each_alone(run):
    together = run(monthly(JAN, 3))
    for i, month in enumerate(monthly(JAN, 3)):
        alone = run([month], ("care_alive", "flat"))
        for name, per_patient in alone.items():
            assert {p: (d[i],) for p, d in together[name].items()} == per_patient, (name, month)


def test_each_day_agrees_with_address_on_that_day(engine, tmp_path):
    """Over one-day intervals, a patient has a care-home day exactly when
    ``addresses.address_on(index_date).care_home`` — the two parts of the language agree
    on every day of December 2024 to March 2025 — and a day at an LSOA exactly when the
    address that day is in it."""
    store = make_store(tmp_path, _tables())
    days = [D(2024, 12, 1) + dt.timedelta(i) for i in range(121)]
    m = Measures(intervals=[(d, d) for d in days])
    on_day = addresses.address_on(index_date)
    alive = patients.date_of_death.is_null() | (patients.date_of_death >= index_date)
    living = patients.date_of_death.is_null()
    for name, value in {
        "days": IN_CARE.days_in_interval_for_patient(until=patients.date_of_death) > 0,
        "address_on": on_day.care_home & alive,
        "flat_days": addresses.where(addresses.lsoa_code == FLAT).days_in_interval_for_patient()
        > 0,
        "flat_on": on_day.lsoa_code == FLAT,
        # a filter reading a per-patient value: the frame's rows found among all rows
        "living_days": addresses.where(addresses.care_home & living).days_in_interval_for_patient()
        > 0,
        "living_on": on_day.care_home & living,
    }.items():
        m.define_measure(
            name,
            numerator=value,
            denominator=True,
            group_by={"patient": patients.patient_id},
        )
    out = run_measures(store, m, engine=engine, disclosure=False)
    got = {
        name: {(r.patient, r.interval_start): int(r.numerator) for r in rows.itertuples()}
        for name, rows in out.groupby("measure")
    }
    assert got["days"] == got["address_on"]
    assert got["flat_days"] == got["flat_on"]
    assert got["living_days"] == got["living_on"]
    # the check saw days in a care home and days out of one
    assert 0 < sum(got["days"].values()) < len(got["days"])
