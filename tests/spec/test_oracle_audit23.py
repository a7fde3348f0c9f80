"""Audit 23: the per-patient vocabulary against an independent oracle of its documented
semantics, on DuckDB.

The other spec tests compare DuckDB with Spark, or one evaluation path with another; a rule
both engines get wrong the same way (an off-by-one window edge, a tie, a missing value)
passes them. Here ``tests/spec/oracle_audit23.py`` works out each patient's value from the
docs alone (docs/query.md sections 0-3 and the docstrings of ``pophealth.query``), with
plain loops over the patient's rows, and every patient's every value must agree.

Random small stores and random definitions (Hypothesis, ``derandomize=True``): 20
examples a test by default, ``POPHEALTH_ORACLE_EXAMPLES`` for a longer hunt. Then edge
cases written out by hand, each expected value worked out from the docs in a comment.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pophealth.query import (
    Dataset,
    addresses,
    case,
    days,
    events,
    index_date,
    interval_start,
    maximum_of,
    medications,
    months,
    patients,
    registrations,
    run_dataset,
    years,
)
from tests.spec.conftest import _clean, address_row, make_store, run
from tests.spec.oracle_audit23 import (
    IN_LIST,
    INDEX_DATES,
    MEDS,
    OTHER,
    SABA,
    SBP,
    Node,
    aggregates,
    conditions,
    contexts,
    definitions,
    demographics,
    stores,
)

EXAMPLES = int(os.environ.get("POPHEALTH_ORACLE_EXAMPLES", "20"))
D = dt.date
SETTINGS = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _same(want, have) -> bool:
    if isinstance(want, bool) or isinstance(have, bool):
        return type(want) is type(have) and want == have
    if isinstance(want, float) or isinstance(have, float):
        if want is None or have is None:
            return want is have
        return math.isclose(want, have, rel_tol=1e-9, abs_tol=1e-9)
    return want == have


def check_against_oracle(
    index: dt.date, tables: dict, nodes: list[Node], population: Node | None = None
) -> None:
    """Run ``nodes`` (and the population) on DuckDB and compare each patient's each value
    with the oracle's."""
    with tempfile.TemporaryDirectory() as tmp:
        store = make_store(Path(tmp), tables)
        ds = Dataset()
        if population is not None:
            ds.define_population(population.q())
        for i, node in enumerate(nodes):
            ds.add(f"v{i}", node.q())
        table = run_dataset(store, ds, engine="duckdb", index_date=index, output="arrow")
    got = {}
    for row in table.to_pylist():
        pid = row.pop("patient_id")
        got[pid] = {k: _clean(v) for k, v in row.items()}
    ctxs = contexts(tables, index)
    wanted = sorted(p for p, c in ctxs.items() if population is None or population.ev(c) is True)
    assert sorted(got) == wanted, (population, index, tables)
    for pid in got:
        for i, node in enumerate(nodes):
            want, have = node.ev(ctxs[pid]), got[pid][f"v{i}"]
            assert _same(want, have), (
                f"{pid}: {node!r} (index {index}): oracle {want!r}, engine {have!r}; "
                f"rows {ctxs[pid]}"
            )


# -- random stores, random definitions -------------------------------------------------------


@st.composite
def store_and(draw, make, min_size=3, max_size=8):
    index, tables = draw(stores())
    return index, tables, draw(st.lists(make(index), min_size=min_size, max_size=max_size))


@SETTINGS
@given(case_=store_and(aggregates, min_size=6, max_size=12))
def test_aggregates_of_random_frames_agree_with_the_oracle(case_):
    """Code lists by system, windows at their edges, value filters; exists, counts, days,
    minimum/maximum/mean/sum, the first and last row and day."""
    check_against_oracle(*case_)


@SETTINGS
@given(case_=store_and(demographics, min_size=6, max_size=12))
def test_demographics_agree_with_the_oracle(case_):
    """Age, age bands, sex, alive, registered, the practice and area on a date (fixed, or
    per patient and sometimes missing)."""
    check_against_oracle(*case_)


@st.composite
def population_case(draw):
    index, tables = draw(stores())
    nodes = draw(st.lists(definitions(index), min_size=4, max_size=8))
    return index, tables, nodes, draw(st.one_of(st.none(), conditions(index)))


@SETTINGS
@given(case_=population_case())
def test_compositions_and_populations_agree_with_the_oracle(case_):
    """&, |, ~ with missing values, comparisons, case/when, date arithmetic, if_null_then,
    maximum_of/minimum_of, round, as_text, fill_unknown over all of the above; and, half
    the time, a population rule: a patient is in it when the rule is true, not when it is
    missing."""
    check_against_oracle(*case_)


def test_index_dates_cover_leap_years_and_month_ends():
    """The random stores are drawn around these index dates (a guard that they keep
    covering a leap day, a 28 February after one, and month ends)."""
    assert {D(2024, 2, 29), D(2025, 2, 28), D(2024, 3, 31)} <= set(INDEX_DATES)


# -- edge cases by hand ----------------------------------------------------------------------


def _ev(pid, day, value=None, code=IN_LIST[0], system="snomedct"):
    return {"patient_id": pid, "date": day, "code": code, "system": system, "value": value}


def test_twelve_months_before_a_leap_day_and_after_one(tmp_path):
    """ "On 29 February 2024 the last 12 months start after 28 February 2023": with the
    index date 2024-02-29 an event on 2023-02-28 is out, 2023-03-01 in, 2024-02-29 in.
    With the index date 2025-02-28, 12 months before is 2024-02-28 (a day that exists):
    2024-02-28 is out and the leap day 2024-02-29 is in."""
    bp = events.matching(SBP)
    tables = {
        "events": [
            _ev("a", D(2023, 2, 28)),
            _ev("b", D(2023, 3, 1)),
            _ev("c", D(2024, 2, 29)),
            _ev("d", D(2024, 2, 28)),
        ]
    }
    got = run(
        "duckdb",
        tmp_path,
        tables,
        {"n": bp.in_last(months=12).count_for_patient()},
        index_date=D(2024, 2, 29),
    )
    assert {p: v["n"] for p, v in got.items()} == {"a": 0, "b": 1, "c": 1, "d": 1}
    got = run(
        "duckdb",
        tmp_path / "2",
        tables,
        {"n": bp.in_last(years=1).count_for_patient()},
        index_date=D(2025, 2, 28),
    )
    # a 2023-02-28, b 2023-03-01: out; c 2024-02-29: in; d 2024-02-28: out (the start)
    assert {p: v["n"] for p, v in got.items()} == {"a": 0, "b": 0, "c": 1, "d": 0}


def test_two_readings_on_one_day(tmp_path):
    """Two readings on the latest day, 140 and 120, and one without a value; 160 the day
    before. last_day_for_patient: the day 2025-03-01 and min 120, max 140, mean 130 (the
    rule combines the readings that have a value). last_for_patient(): "of two readings on
    one day, first takes the lower, last the higher", "a missing value never taken over a
    value" — last 140; first_for_patient() is the day before's 160. The latest day of a
    patient whose only reading that day has no value: missing, "even if an earlier day had
    one"."""
    bp = events.matching(SBP)
    tables = {
        "events": [
            _ev("a", D(2025, 2, 28), 160.0),
            _ev("a", D(2025, 3, 1), 140.0),
            _ev("a", D(2025, 3, 1), None),
            _ev("a", D(2025, 3, 1), 120.0),
            _ev("b", D(2025, 2, 28), 150.0),
            _ev("b", D(2025, 3, 1), None),
        ]
    }
    variables = {
        "day": bp.last_day_for_patient(rule="min").date,
        "min": bp.last_day_for_patient(rule="min").value,
        "max": bp.last_day_for_patient(rule="max").value,
        "mean": bp.last_day_for_patient(rule="mean").value,
        "last": bp.last_for_patient().value,
        "first": bp.first_for_patient().value,
        "days": bp.count_days_for_patient(),
    }
    got = run("duckdb", tmp_path, tables, variables)
    assert got["a"] == {
        "day": D(2025, 3, 1),
        "min": 120.0,
        "max": 140.0,
        "mean": 130.0,
        "last": 140.0,
        "first": 160.0,
        "days": 2,
    }
    assert got["b"] == {
        "day": D(2025, 3, 1),
        "min": None,
        "max": None,
        "mean": None,
        "last": None,
        "first": 150.0,
        "days": 2,
    }


def test_born_on_a_leap_day_turns_18_on_1_march(tmp_path):
    """Born 2008-02-29: "29 Feb birthdays turn over on 1 Mar in non-leap years" — 17 on
    2026-02-28, 18 on 2026-03-01; in the leap year 2028 the birthday is 29 Feb (19 on
    2028-02-28, 20 on 2028-02-29). Bands (0, 18): "0-17" the day before, "18+" on 1 March."""
    tables = {"patients": [{"patient_id": "a", "date_of_birth": D(2008, 2, 29)}]}
    variables = {
        "feb28": patients.age_on(D(2026, 2, 28)),
        "mar1": patients.age_on("2026-03-01"),
        "leap_eve": patients.age_on(D(2028, 2, 28)),
        "leap_day": patients.age_on(D(2028, 2, 29)),
        "band28": patients.age_band_on(index_date, bands=(0, 18)),
        "band1": patients.age_band_on(index_date + days(1), bands=(0, 18)),
        "adult18": patients.date_of_birth + years(18),
    }
    got = run("duckdb", tmp_path, tables, variables, index_date=D(2026, 2, 28))
    assert got["a"] == {
        "feb28": 17,
        "mar1": 18,
        "leap_eve": 19,
        "leap_day": 20,
        "band28": "0-17",
        "band1": "18+",
        "adult18": D(2026, 2, 28),
    }


def test_deregistered_on_the_index_date(tmp_path):
    """A registration's end date is its last day ("from its start to its end, both
    included"): ended on the index date, registered that day, not the day after. A new
    registration starting on the index date overlaps it, and "the registration with the
    latest start wins": its practice B2 on the index date, A1 the day before."""
    index = D(2025, 3, 31)
    tables = {
        "registrations": [
            {
                "patient_id": "a",
                "practice_id": "A1",
                "start_date": D(2020, 1, 1),
                "end_date": index,
            },
            {
                "patient_id": "b",
                "practice_id": "A1",
                "start_date": D(2020, 1, 1),
                "end_date": index,
            },
            {"patient_id": "b", "practice_id": "B2", "start_date": index, "end_date": None},
        ]
    }
    variables = {
        "on": registrations.registered_on(index_date),
        "after": registrations.registered_on(index_date + days(1)),
        "practice": registrations.practice_on(index_date).practice_id,
        "before": registrations.practice_on(index_date - days(1)).practice_id,
    }
    got = run("duckdb", tmp_path, tables, variables, index_date=index)
    assert got["a"] == {"on": True, "after": False, "practice": "A1", "before": "A1"}
    assert got["b"] == {"on": True, "after": True, "practice": "B2", "before": "A1"}


def test_overlapping_addresses_tie_on_their_start(tmp_path):
    """The overlap rule: latest start wins; "ties are broken by the LSOA code
    (alphabetically last wins; an ungeocoded address loses a tie to a geocoded one)". a:
    two addresses from one day, X01000001 and X01000002 — X01000002 (imd_quintile 4). b:
    an ungeocoded one and X01000001 from one day — X01000001 (quintile 1). c: the older
    address X01000002 still open beside a later ungeocoded one — the later wins, so the
    status is not_geocoded and the group unknown."""
    day = D(2024, 6, 1)
    tables = {
        "addresses": [
            address_row("a", day, lsoa="X01000001"),
            address_row("a", day, lsoa="X01000002"),
            address_row("b", day, lsoa=None),
            address_row("b", day, lsoa="X01000001"),
            address_row("c", D(2020, 1, 1), lsoa="X01000002"),
            address_row("c", day, lsoa=None),
        ],
        "areas": [
            {"lsoa_code": "X01000001", "imd_quintile": 1},
            {"lsoa_code": "X01000002", "imd_quintile": 4},
        ],
    }
    area = addresses.area_on(index_date)
    variables = {"q": area.group("imd_quintile"), "status": area.status}
    got = run("duckdb", tmp_path, tables, variables)
    assert got == {
        "a": {"q": "4", "status": "known"},
        "b": {"q": "1", "status": "known"},
        "c": {"q": "unknown", "status": "not_geocoded"},
    }


def test_missing_values_in_and_or_not_and_case(tmp_path):
    """ "A condition on a missing value is not true": with no reading, ``v > 140`` is
    missing; missing & False is False, missing | True is True, missing & True and
    missing | False and ~missing stay missing (not true: a population leaves the patient
    out); case passes the branch by and takes ``otherwise``."""
    bp = events.matching(SBP)
    v = bp.last_for_patient().value
    high = v > 140
    tables = {"patients": [{"patient_id": "a"}], "events": [_ev("b", D(2025, 1, 1), 150.0)]}
    variables = {
        "and_false": high & patients.is_alive_on(D(1900, 1, 1)),
        "or_true": high | patients.is_alive_on(index_date),
        "and_true": high & patients.is_alive_on(index_date),
        "or_false": high | patients.is_alive_on(D(1900, 1, 1)),
        "not": ~high,
        "case": case((high, "high"), otherwise="not high"),
    }
    got = run(
        "duckdb",
        tmp_path,
        {**tables, "patients": [{"patient_id": "a"}, {"patient_id": "b"}]},
        variables,
    )
    assert got["a"] == {
        "and_false": False,
        "or_true": True,
        "and_true": None,
        "or_false": None,
        "not": None,
        "case": "not high",
    }
    assert got["b"] == {
        "and_false": False,
        "or_true": True,
        "and_true": True,
        "or_false": True,
        "not": False,
        "case": "high",
    }
    kept = run(
        "duckdb",
        tmp_path / "2",
        {**tables, "patients": [{"patient_id": "a"}, {"patient_id": "b"}]},
        {"v": v},
        population=~high | (v < 0),
    )
    assert kept == {}  # a: ~missing | missing is missing; b: False | False


def test_month_arithmetic_clamps_to_the_month_end(tmp_path):
    """ "Month and year steps clamp to the month's end (31 Jan + 1 month = 28/29 Feb)": from
    2024-01-31, +1 month 2024-02-29, +13 months 2025-02-28; 2024-02-29 + 1 year 2025-02-28,
    2024-03-31 - 1 month 2024-02-29. date - date is in days: 2025-02-28 - 2024-02-29 is
    365; days_until the other way -365."""
    bp = events.matching(SBP)
    first = bp.first_for_patient().date
    tables = {
        "events": [_ev("a", D(2024, 1, 31)), _ev("b", D(2024, 2, 29)), _ev("c", D(2024, 3, 31))]
    }
    variables = {
        "m1": first + months(1),
        "m13": first + months(13),
        "y1": first + years(1),
        "back": first - months(1),
        "gap": (first + years(1)) - first,
        "until": (first + years(1)).days_until(first),
    }
    got = run("duckdb", tmp_path, tables, variables)
    assert got["a"] == {
        "m1": D(2024, 2, 29),
        "m13": D(2025, 2, 28),
        "y1": D(2025, 1, 31),
        "back": D(2023, 12, 31),
        "gap": 366,
        "until": -366,
    }
    assert got["b"] == {
        "m1": D(2024, 3, 29),
        "m13": D(2025, 3, 29),
        "y1": D(2025, 2, 28),
        "back": D(2024, 1, 29),
        "gap": 365,
        "until": -365,
    }
    assert got["c"] == {
        "m1": D(2024, 4, 30),
        "m13": D(2025, 4, 30),
        "y1": D(2025, 3, 31),
        "back": D(2024, 2, 29),
        "gap": 365,
        "until": -365,
    }


def test_died_on_the_index_date(tmp_path):
    """is_alive_on: "not recorded as dead on or before it" — died on the index date: not
    alive that day, alive the day before. Born on the index date: alive (born on or before
    it), age 0; born the day after: not alive, age -1."""
    index = D(2025, 3, 31)
    tables = {
        "patients": [
            {"patient_id": "a", "date_of_birth": D(1950, 5, 5), "date_of_death": index},
            {"patient_id": "b", "date_of_birth": index},
            {"patient_id": "c", "date_of_birth": index + dt.timedelta(days=1)},
        ]
    }
    variables = {
        "alive": patients.is_alive_on(index_date),
        "eve": patients.is_alive_on(index_date - days(1)),
        "age": patients.age_on(index_date),
    }
    got = run("duckdb", tmp_path, tables, variables, index_date=index)
    assert got == {
        "a": {"alive": False, "eve": True, "age": 74},
        "b": {"alive": True, "eve": False, "age": 0},
        "c": {"alive": False, "eve": False, "age": -1},
    }


def test_code_lists_match_in_their_system(tmp_path):
    """A SNOMED CT list matches events coded snomedct, not the same digits coded ctv3; a
    dm+d list matches medications coded dmd or snomedct ("every dm+d id is a SNOMED CT
    concept id"), not rxnorm. ``code.is_in(list)`` "compares codes without their system":
    the ctv3 row's digits count there."""
    tables = {
        "events": [
            _ev("a", D(2025, 1, 1), system="ctv3"),
            _ev("b", D(2025, 1, 1)),
            _ev("b", D(2025, 1, 2), code=OTHER),
        ],
        "medications": [
            {"patient_id": "a", "date": D(2025, 1, 1), "code": MEDS[0], "system": "rxnorm"},
            {"patient_id": "b", "date": D(2025, 1, 1), "code": MEDS[0], "system": "snomedct"},
            {"patient_id": "b", "date": D(2025, 1, 1), "code": MEDS[0], "system": "dmd"},
            {"patient_id": "b", "date": D(2025, 1, 3), "code": MEDS[1], "system": "dmd"},
        ],
    }
    variables = {
        "bp": events.matching(SBP).count_for_patient(),
        "is_in": events.where(events.code.is_in(SBP)).count_for_patient(),
        "saba": medications.matching(SABA).count_for_patient(),
        "saba_days": medications.matching(SABA).count_days_for_patient(),
    }
    got = run("duckdb", tmp_path, tables, variables)
    assert got == {
        "a": {"bp": 0, "is_in": 1, "saba": 0, "saba_days": 0},
        "b": {"bp": 1, "is_in": 1, "saba": 2, "saba_days": 1},
    }


@pytest.mark.parametrize("unit", ["days", "weeks"])
def test_in_last_and_in_next_by_days(tmp_path, unit):
    """in_last(days=7) / (weeks=1): (index - 7, index]; in_next: (index, index + 7]."""
    index = D(2025, 3, 31)
    tables = {
        "events": [
            _ev(p, index + dt.timedelta(days=k))
            for p, k in [("a", -7), ("b", -6), ("c", 0), ("d", 1), ("e", 7), ("f", 8)]
        ]
    }
    n = 7 if unit == "days" else 1
    bp = events.matching(SBP)
    variables = {
        "last": bp.in_last(**{unit: n}).exists_for_patient(),
        "next": bp.in_next(**{unit: n}).exists_for_patient(),
    }
    got = run("duckdb", tmp_path, tables, variables, index_date=index)
    assert {p: (v["last"], v["next"]) for p, v in got.items()} == {
        "a": (False, False),
        "b": (True, False),
        "c": (True, False),
        "d": (False, True),
        "e": (False, True),
        "f": (False, False),
    }


def test_round_halves_away_from_zero_on_the_double(tmp_path):
    """Series.round: "halves away from zero ... (on the double: round(1.005, 2) is 1.0, as
    1.005 is stored just below it)". Exact halves go away from zero: 0.125 -> 0.13,
    -15.5 -> -16; 1.005 -> 1.0 (the docs' own example); a mean of 120, 135.5 and 140 is
    131.8333..., 131.8 to one place and "131.833333333333" as text (15 significant
    digits)."""
    bp = events.matching(SBP)
    tables = {
        "events": [
            _ev("a", D(2025, 3, 1), 0.125),
            _ev("b", D(2025, 3, 1), -15.5),
            _ev("c", D(2025, 3, 1), 1.005),
            _ev("d", D(2025, 3, 1), 120.0),
            _ev("d", D(2025, 3, 2), 135.5),
            _ev("d", D(2025, 3, 3), 140.0),
        ]
    }
    m = bp.mean_for_patient()
    got = run("duckdb", tmp_path, tables, {"r2": m.round(2), "r0": m.round(0), "t": m.as_text()})
    assert got == {
        "a": {"r2": 0.13, "r0": 0.0, "t": "0.125"},
        "b": {"r2": -15.5, "r0": -16.0, "t": "-15.5"},
        "c": {"r2": 1.0, "r0": 1.0, "t": "1.005"},
        "d": {"r2": 131.83, "r0": 132.0, "t": "131.833333333333"},
    }


def test_round_of_a_double_stored_below_the_half(tmp_path):
    """Audit 23 found round(2.675, 2) = 2.68 where the docs then said "on the double" (2.67:
    2.675 is held as 2.67499999...); the docs now say "its size times 10^digits, plus a
    half, rounded down", so 2.675 * 100 = 267.5 (as the product rounds) gives 2.68, 1.45 *
    10 = 14.5 gives 1.5, 0.015 * 100 = 1.5 gives 0.02, and 1.005 * 100 = 100.4999... gives
    1.0."""
    bp = events.matching(SBP)
    tables = {
        "events": [
            _ev("a", D(2025, 3, 1), 2.675),
            _ev("b", D(2025, 3, 1), 1.45),
            _ev("c", D(2025, 3, 1), 0.015),
        ]
    }
    v = bp.maximum_for_patient()
    got = run("duckdb", tmp_path, tables, {"r2": v.round(2), "r1": v.round(1)})
    assert {p: (r["r2"], r["r1"]) for p, r in got.items()} == {
        "a": (2.68, 2.7),
        "b": (1.45, 1.5),
        "c": (0.02, 0.0),
    }


def test_first_of_two_readings_on_a_day_under_two_codes(tmp_path):
    """Frame.sort_by: ties "are broken by every other column ... ascending for the first
    row, descending for the last (of two readings on one day, first takes the lower, last
    the higher)". Systolic 160 coded 271649006 and 120 coded 72313002, both in the list,
    on one day: first_for_patient().value is 120 and last 160. (Audit 23 found the code
    breaking the tie first — first 160 — and the engine now takes "the value straight
    after the dates and times".)"""
    bp = events.matching(SBP)
    tables = {
        "events": [
            _ev("a", D(2025, 3, 1), 160.0, code=IN_LIST[0]),
            _ev("a", D(2025, 3, 1), 120.0, code=IN_LIST[1]),
        ]
    }
    variables = {"first": bp.first_for_patient().value, "last": bp.last_for_patient().value}
    got = run("duckdb", tmp_path, tables, variables)
    assert got["a"] == {"first": 120.0, "last": 160.0}


def test_text_dates_beside_dates_and_the_interval_in_a_dataset(tmp_path):
    """A date "may be given ... as text ... wherever a date goes — a window, a comparison,
    if_null_then, maximum_of/minimum_of and case beside other dates". In a dataset
    in_interval() is "the single day of the index date" and interval_start the index
    date. a: readings 2025-01-15 and 2025-03-31 (the index date)."""
    bp = events.matching(SBP)
    first = bp.first_for_patient().date
    tables = {"events": [_ev("a", D(2025, 1, 15), 120.0), _ev("a", D(2025, 3, 31), 130.0)]}
    variables = {
        "between": bp.between("2025-01-15", "2025-03-30").count_for_patient(),  # 1
        "later": first > "2025-01-14",  # True
        "null_then": bp.where(events.value > 200)
        .first_for_patient()
        .date.if_null_then("2024-12-31"),
        "max_of": maximum_of(first, "2025-02-01"),  # 2025-02-01
        "case": case((first > "2025-02-01", first), otherwise="2000-01-01"),  # 2000-01-01
        "today": bp.in_interval().count_for_patient(),  # 1: 2025-03-31 only
        "start": interval_start,  # 2025-03-31
    }
    got = run("duckdb", tmp_path, tables, variables)
    assert got["a"] == {
        "between": 1,
        "later": True,
        "null_then": D(2024, 12, 31),
        "max_of": D(2025, 2, 1),
        "case": D(2000, 1, 1),
        "today": 1,
        "start": D(2025, 3, 31),
    }
