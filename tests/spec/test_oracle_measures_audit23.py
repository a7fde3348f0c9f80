"""Audit 23: measures against an independent oracle of their *documented* meaning.

The other measure tests compare n intervals with n single-interval runs, and DuckDB with
Spark: a bug every path shares passes them. Here the counts of ``run_measures(...,
disclosure=False)`` (the docs' switch for exact counts, section 4) are checked against
:mod:`tests.spec.oracle_measures_audit23`, a loop over patients, intervals and days written
from docs/query.md (sections 2 and 4, to the end of "Age-standardised rates") and the
docstrings of ``Measures`` and the interval helpers alone, for random small stores whose
dates sit on and beside the intervals' edges, month ends, 29 February and a year end.

Covered: proportions of patients (denominators registered / alive / aged 18 on the interval's
end or alive at its start; numerators ``in_interval()``, ``in_last(months=12)``, ``in_last(
days=30)``, ``between(interval_start - months(1), index_date - days(3))``, exists, count ≥ 2,
a maximum that may be missing, a negation); events per patient; a proportion of rows; a
ratio of other counts; rates per person-time (registrations with ``until=`` the death,
admissions, care-home days by the addresses overlap rule, ``during(...)``); age-standardised
rates (ESP 2013 bands, with and without person-time); centiles per patient and over rows; a
measure over the rows of a row dataset — by sex and by the practice on a date, over months
(a year end, a leap and a common February), quarters, weeks (over 29 February and a year
end), financial years, months given in reverse, and months beside their quarter.

Every released row's numerator, denominator, value and confidence limits are compared, and
the rows themselves (a row for each interval and group with someone in the denominator) and
their order. Where the docs are silent the oracle takes the engine's reading and says so in
a comment (a per-patient breakdown with no value is the group "unknown"; a centile over rows
has no row for a group without rows).
Limits are checked against published formulas and worked values (Wilson; Garwood's exact
Poisson; Byar's; Dobson), computed here with scipy, not with pophealth.stats.

DuckDB only. ``POPHEALTH_ORACLE_EXAMPLES`` (default 8) sets the examples of each random test
in the default run; their ``_more_cases`` twins (marked slow) draw
``POPHEALTH_ORACLE_SLOW_EXAMPLES`` (default 40).
"""

from __future__ import annotations

import datetime as dt
import math
import os
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pophealth.query import (
    Measures,
    RowDataset,
    addresses,
    admissions,
    days,
    events,
    index_date,
    interval_start,
    monthly,
    months,
    patients,
    quarterly,
    registrations,
    run_measures,
    weekly,
    yearly,
)
from tests.spec.conftest import FLAT, FLAT2, HOME, HOME2, make_store
from tests.spec.oracle_measures_audit23 import (
    ESP2013,
    Cell,
    Oracle,
    Spec,
    add_months,
    binomial_ranks,
    centile_cells,
    count,
    dobson,
    in_last_days,
    in_last_months,
    poisson_count_limits,
    wilson_limits,
)

#: examples of each random test in the default run (each run of a measure costs ~0.3 s of
#: compiling, so 8 keep the file near 40 s), and in the slow run CI makes after it
EXAMPLES = int(os.environ.get("POPHEALTH_ORACLE_EXAMPLES", "8"))
SLOW_EXAMPLES = int(os.environ.get("POPHEALTH_ORACLE_SLOW_EXAMPLES", "40"))
D = dt.date
PIDS = ["p1", "p2", "p3", "p4", "p5", "p6"]
FLAT_7 = "E01000007"  # an ordinary home's LSOA between HOME's and HOME2's
LIMITS = ["lower95_0cl", "upper95_0cl", "lower99_8cl", "upper99_8cl"]

# -- the intervals: a year end, a leap February, weeks across 29 February and 31 December ----

INTERVALS = {
    "months_over_year_end_and_leap_feb": monthly("2023-11-01", 5),
    "months_common_feb": monthly("2024-12-01", 4),
    "quarters": quarterly("2023-10-01", 3),
    "weeks_over_29_feb": weekly("2024-02-19", 3),
    "weeks_over_year_end": weekly("2024-12-26", 2),
    "months_and_their_quarter": [*monthly("2024-01-01", 3), (D(2024, 1, 1), D(2024, 3, 31))],
    "financial_years": yearly("2023-04-01", 2),
    "months_given_in_reverse": list(reversed(monthly("2024-10-01", 4))),
}


def _edges(ivs) -> list[dt.date]:
    """Dates on and beside each interval's ends, and beside the starts of the windows that
    look back from them (12 and 3 months, 30 days)."""
    out = {D(2024, 2, 28), D(2024, 2, 29), D(2024, 3, 1), D(2023, 2, 28), D(2023, 3, 1)}
    for s, e in ivs:
        for d in (s, e, add_months(e, -12), add_months(e, -3), e - dt.timedelta(days=30)):
            out |= {d - dt.timedelta(days=1), d, d + dt.timedelta(days=1)}
    return sorted(out)


def _births(ivs) -> list[dt.date]:
    """Birthdays that turn 15, 18, 20 or 25 on and beside an interval's end, leap-day births,
    and babies born inside an interval (not yet alive at its start)."""
    out = {D(2004, 2, 29), D(2006, 2, 28), D(2006, 3, 1), D(1950, 6, 1)}
    for s, e in ivs:
        for years in (15, 18, 20, 25):
            base = add_months(e, -12 * years)
            out |= {base - dt.timedelta(days=1), base, base + dt.timedelta(days=1)}
        out.add(s + dt.timedelta(days=2))
    return sorted(out)


@st.composite
def scenarios(draw):
    """(intervals name, tables): at most 6 patients and 8 rows a table."""
    name = draw(st.sampled_from(sorted(INTERVALS)))
    ivs = INTERVALS[name]
    edge = st.sampled_from(_edges(ivs))
    first, last = min(s for s, _ in ivs), max(e for _, e in ivs)
    inside = st.dates(min_value=first, max_value=last)
    wide = st.dates(
        min_value=first - dt.timedelta(days=400), max_value=last + dt.timedelta(days=20)
    )
    day = st.one_of(edge, edge, inside, inside, wide)

    def period(start_col: str, end_col: str):
        start = draw(day)
        end = draw(st.one_of(st.none(), day))
        if end is not None and end < start:
            start, end = end, start
        return {start_col: start, end_col: end}

    ids = PIDS[: draw(st.integers(3, len(PIDS)))]
    pats = [
        {
            "patient_id": p,
            "date_of_birth": draw(st.sampled_from(_births(ivs))),
            "sex": draw(st.sampled_from(["female", "male"])),
            "date_of_death": draw(st.one_of(st.none(), st.none(), day)),
        }
        for p in ids
    ]
    pid = st.sampled_from(ids)
    regs: list[dict] = []
    for _ in range(draw(st.integers(3, 8))):
        row = {"patient_id": draw(pid), "practice_id": draw(st.sampled_from(["A1", "B2"]))}
        row |= period("start_date", "end_date")
        if regs and draw(st.integers(0, 2)) == 0:  # a second practice from the same day
            row |= {"patient_id": regs[-1]["patient_id"], "start_date": regs[-1]["start_date"]}
            if row["end_date"] is not None and row["end_date"] < row["start_date"]:
                row["end_date"] = None
        regs.append(row)
    # readings also on the first and last days of the windows that look back from each
    # interval's end (12 and 3 months, 30 days), and beside them
    window_edge = st.sampled_from(
        sorted(
            d + dt.timedelta(days=k)
            for _, e in ivs
            for d in (add_months(e, -12), add_months(e, -3), e - dt.timedelta(days=30))
            for k in (0, 1)
        )
    )
    evs = [
        {
            "patient_id": draw(pid),
            "date": draw(st.one_of(day, window_edge)),
            "code": draw(st.sampled_from(["A", "A", "B"])),
            "value": draw(st.sampled_from([None, 120.0, 140.0, 160.0])),
        }
        for _ in range(draw(st.integers(3, 8)))
    ]
    adms = [
        {"patient_id": draw(pid), "admission_method": "emergency"}
        | period("admission_date", "discharge_date")
        for _ in range(draw(st.integers(3, 8)))
    ]
    addr = []
    for _ in range(draw(st.integers(2, 8))):
        care_home = draw(st.booleans())
        # a flat in E01000007 wins a tie of starts with a care home in HOME (E01000005) and
        # loses one with HOME2 (E01000009); an ungeocoded one loses every tie
        lsoa = draw(st.sampled_from([HOME, HOME2] if care_home else [FLAT, FLAT_7, None]))
        addr.append(
            {"patient_id": draw(pid), "lsoa_code": lsoa, "care_home": care_home}
            | period("start_date", "end_date")
        )
    tables = {
        "patients": pats,
        "registrations": regs,
        "events": evs,
        "admissions": adms,
        "addresses": addr,
    }
    return name, tables


# -- the measures: the engine's definition and the oracle's reading of the docs, side by side --

bp = events.where(events.code == "A")
care_home = addresses.where(addresses.care_home)
registered_days = registrations.days_in_interval_for_patient(until=patients.date_of_death)


def _sex(o, pid, s, e):
    return (o.patients[pid]["sex"],)


def _values_12m(o, p, e) -> list[float]:
    """The values of p's readings in the 12 months to ``e`` (missing values left out)."""
    return [
        r["value"]
        for r in o.events(p, "A")
        if in_last_months(r["date"], e, 12) and r["value"] is not None
    ]


def proportion_measures(m: Measures) -> list[Spec]:
    """Proportions of patients: True/False over True/False (counted from interval masks,
    or paired when one interval holds another)."""
    m.define_measure(
        "bp_in_interval",
        numerator=bp.in_interval().exists_for_patient(),
        denominator=registrations.registered_on(index_date) & patients.is_alive_on(index_date),
        group_by={"sex": patients.sex},
    )
    m.define_measure(
        "bp_12m_twice_adults",
        numerator=bp.in_last(months=12).count_for_patient() >= 2,
        denominator=(patients.age_on(index_date) >= 18) & patients.is_alive_on(interval_start),
    )
    m.define_measure(
        "b_30d",
        numerator=events.where(events.code == "B").in_last(days=30).exists_for_patient(),
        denominator=patients.is_alive_on(index_date),
        group_by={"sex": patients.sex},
    )
    m.define_measure(
        "bp_from_month_before_start_to_3_days_before_end",
        numerator=bp.between(interval_start - months(1), index_date - days(3)).exists_for_patient(),
        denominator=registrations.registered_on(interval_start)
        | registrations.registered_on(index_date),
        group_by={"practice": registrations.practice_on(interval_start).practice_id},
    )
    m.define_measure(
        "no_b_in_interval",
        numerator=~events.where(events.code == "B").in_interval().exists_for_patient(),
        denominator=patients.is_alive_on(interval_start) & ~patients.is_alive_on(index_date),
    )
    m.define_measure(
        "highest_12m_reading_150_plus",
        numerator=bp.in_last(months=12).maximum_for_patient() >= 150,
        denominator=registrations.registered_on(index_date)
        & ~(bp.in_last(months=12).minimum_for_patient() < 130),
    )
    return [
        Spec(
            "highest_12m_reading_150_plus",
            "proportion",
            lambda o, p, s, e: (
                (lambda v: bool(v) and max(v) >= 150)(_values_12m(o, p, e)),
                # a condition on a missing value is not true, nor is its negation
                o.registered_on(p, e)
                and (lambda v: bool(v) and not min(v) < 130)(_values_12m(o, p, e)),
            ),
        ),
        Spec(
            "bp_from_month_before_start_to_3_days_before_end",
            "proportion",
            lambda o, p, s, e: (
                any(
                    add_months(s, -1) <= r["date"] <= e - dt.timedelta(days=3)
                    for r in o.events(p, "A")
                ),
                o.registered_on(p, s) or o.registered_on(p, e),
            ),
            lambda o, p, s, e: (o.practice_on(p, s),),
        ),
        Spec(
            "no_b_in_interval",
            "proportion",
            lambda o, p, s, e: (
                not any(s <= r["date"] <= e for r in o.events(p, "B")),
                o.alive_on(p, s) and not o.alive_on(p, e),
            ),
        ),
        Spec(
            "bp_in_interval",
            "proportion",
            lambda o, p, s, e: (
                any(s <= r["date"] <= e for r in o.events(p, "A")),
                o.registered_on(p, e) and o.alive_on(p, e),
            ),
            _sex,
        ),
        Spec(
            "bp_12m_twice_adults",
            "proportion",
            lambda o, p, s, e: (
                sum(in_last_months(r["date"], e, 12) for r in o.events(p, "A")) >= 2,
                o.age_on(p, e) >= 18 and o.alive_on(p, s),
            ),
        ),
        Spec(
            "b_30d",
            "proportion",
            lambda o, p, s, e: (
                any(in_last_days(r["date"], e, 30) for r in o.events(p, "B")),
                o.alive_on(p, e),
            ),
            _sex,
        ),
    ]


def count_measures(m: Measures) -> list[Spec]:
    """Events per patient (a count over True/False) and a proportion of rows (a count of
    some of the rows the denominator counts)."""
    m.define_measure(
        "bp_per_patient",
        numerator=bp.in_interval().count_for_patient(),
        denominator=registrations.registered_on(index_date),
        group_by={"practice": registrations.practice_on(index_date).practice_id},
    )
    readings = bp.in_interval()
    m.define_measure(
        "high_share_of_readings",
        numerator=readings.where(events.value >= 140).count_for_patient(),
        denominator=readings.count_for_patient(),
        group_by={"practice": registrations.practice_on(index_date).practice_id},
    )
    m.define_measure(
        "bp_days_3m_per_patient",
        numerator=bp.in_last(months=3).count_days_for_patient(),
        denominator=patients.is_alive_on(index_date),
        group_by={"practice": registrations.practice_on(index_date).practice_id},
    )
    m.define_measure(
        "admissions_per_reading",
        numerator=admissions.in_interval().count_for_patient(),
        denominator=readings.count_for_patient(),
        group_by={"sex": patients.sex},
    )
    return [
        Spec(
            "admissions_per_reading",
            "ratio",
            lambda o, p, s, e: (
                sum(s <= a["admission_date"] <= e for a in o.admissions(p)),
                sum(s <= r["date"] <= e for r in o.events(p, "A")),
            ),
            _sex,
        ),
        Spec(
            "bp_days_3m_per_patient",
            "per_patient",
            lambda o, p, s, e: (
                len({r["date"] for r in o.events(p, "A") if in_last_months(r["date"], e, 3)}),
                o.alive_on(p, e),
            ),
            lambda o, p, s, e: (o.practice_on(p, e),),
        ),
        Spec(
            "bp_per_patient",
            "per_patient",
            lambda o, p, s, e: (
                sum(s <= r["date"] <= e for r in o.events(p, "A")),
                o.registered_on(p, e),
            ),
            lambda o, p, s, e: (o.practice_on(p, e),),
        ),
        Spec(
            "high_share_of_readings",
            "rows",
            lambda o, p, s, e: (
                sum(
                    s <= r["date"] <= e and r["value"] is not None and r["value"] >= 140
                    for r in o.events(p, "A")
                ),
                sum(s <= r["date"] <= e for r in o.events(p, "A")),
            ),
            lambda o, p, s, e: (o.practice_on(p, e),),
        ),
    ]


def rate_measures(m: Measures) -> list[Spec]:
    m.define_rate(
        "admissions_per_registered_year",
        events=admissions.in_interval().count_for_patient(),
        person_time=registered_days,
        per=1000,
        unit="years",
        group_by={"sex": patients.sex},
    )
    m.define_rate(
        "admissions_while_registered_per_day",
        events=admissions.during(registrations).in_interval().count_for_patient(),
        person_time=registrations.days_in_interval_for_patient(),
        among=patients.is_alive_on(interval_start),
        per=1000,
        unit="days",
    )
    m.define_rate(
        "readings_per_bed_day",
        events=bp.in_interval().count_for_patient(),
        person_time=admissions.days_in_interval_for_patient(),
        per=100,
        unit="days",
    )
    m.define_rate(
        "care_home_admissions",
        events=admissions.during(care_home).in_interval().count_for_patient(),
        person_time=care_home.days_in_interval_for_patient(until=patients.date_of_death),
        per=1000,
        unit="years",
        group_by={"sex": patients.sex},
    )

    def registered_admissions(o, p, s, e):
        # during(registrations): the admission's day is held by one of the registrations
        return sum(
            s <= a["admission_date"] <= e and o.registered_on(p, a["admission_date"])
            for a in o.admissions(p)
        )

    def care_home_admissions(o, p, s, e):
        return sum(
            s <= a["admission_date"] <= e
            and (lambda h: h is not None and h["care_home"])(o.address_on(p, a["admission_date"]))
            for a in o.admissions(p)
        )

    return [
        Spec(
            "admissions_per_registered_year",
            "rate",
            lambda o, p, s, e: (
                sum(s <= a["admission_date"] <= e for a in o.admissions(p)),
                len(o.until(o.registration_days(p, s, e), p)),
                True,
            ),
            _sex,
            per=1000,
            unit="years",
        ),
        Spec(
            "admissions_while_registered_per_day",
            "rate",
            lambda o, p, s, e: (
                registered_admissions(o, p, s, e),
                len(o.registration_days(p, s, e)),
                o.alive_on(p, s),
            ),
            per=1000,
            unit="days",
        ),
        Spec(
            "readings_per_bed_day",
            "rate",
            lambda o, p, s, e: (
                sum(s <= r["date"] <= e for r in o.events(p, "A")),
                len(o.admission_days(p, s, e)),
                True,
            ),
            per=100,
            unit="days",
        ),
        Spec(
            "care_home_admissions",
            "rate",
            lambda o, p, s, e: (
                care_home_admissions(o, p, s, e),
                len(o.until(o.care_home_days(p, s, e), p)),
                True,
            ),
            _sex,
            per=1000,
            unit="years",
        ),
    ]


def standardised_measures(m: Measures) -> list[Spec]:
    m.define_standardised_rate(
        "admissions_dsr_15_24",
        events=admissions.in_interval().count_for_patient(),
        among=registrations.registered_on(index_date),
        per=100_000,
        min_age=15,
        max_age=24,
        # a patient who moves counts, with all their events, in the group of the last day
        group_by={"practice": registrations.practice_on(index_date).practice_id},
    )
    m.define_standardised_rate(
        "admissions_dsr_person_time_20_plus",
        events=admissions.in_interval().count_for_patient(),
        person_time=registered_days,
        among=patients.is_alive_on(interval_start),
        min_age=20,
    )
    return [
        Spec(
            "admissions_dsr_15_24",
            "dsr",
            lambda o, p, s, e: (
                sum(s <= a["admission_date"] <= e for a in o.admissions(p)),
                None,
                o.registered_on(p, e),
                o.age_on(p, e),
            ),
            lambda o, p, s, e: (o.practice_on(p, e),),
            per=100_000,
            min_age=15,
            max_age=24,
        ),
        Spec(
            "admissions_dsr_person_time_20_plus",
            "dsr",
            lambda o, p, s, e: (
                sum(s <= a["admission_date"] <= e for a in o.admissions(p)),
                len(o.until(o.registration_days(p, s, e), p)),
                o.alive_on(p, s),
                o.age_on(p, e),
            ),
            per=100_000,
            min_age=20,
        ),
    ]


# -- comparing ------------------------------------------------------------------------------


def _date(v) -> dt.date:
    return v if type(v) is dt.date else pd.Timestamp(v).date()


def _label(v):
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v


def engine_cells(result: pd.DataFrame, specs: list[Spec], group_cols: dict[str, list[str]]):
    out = {}
    for row in result.to_dict("records"):
        name = row["measure"]
        key = (
            name,
            _date(row["interval_start"]),
            _date(row["interval_end"]),
            *(_label(row[c]) for c in group_cols[name]),
        )
        assert key not in out, f"two rows for {key}"
        out[key] = row
    return out


def _close(a, b) -> bool:
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return b is None or (isinstance(b, float) and math.isnan(b))
    if b is None or (isinstance(b, float) and math.isnan(b)):
        return False
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)


def compare(result: pd.DataFrame, o: Oracle, specs: list[Spec], ivs, group_cols) -> int:
    """Assert the engine's rows are the oracle's, field by field; the rows compared."""
    expected = {}
    for spec in specs:
        expected.update(count(o, spec, ivs))
    got = engine_cells(result, specs, group_cols)
    # rows come in the order of the intervals' starts, then their ends, then the breakdowns
    for name in group_cols:
        keys = [k[1:] for k in got if k[0] == name]
        assert keys == sorted(keys, key=lambda k: (k[0], k[1], *map(str, k[2:]))), keys
    missing, extra = (
        sorted(set(expected) - set(got), key=str),
        sorted(set(got) - set(expected), key=str),
    )
    assert not missing and not extra, (
        f"rows the oracle has only: {missing}; the engine only: {extra}"
    )
    for key, cell in expected.items():
        row = got[key]
        assert row["numerator"] == cell.numerator, (key, "numerator", row["numerator"], cell)
        assert row["denominator"] == cell.denominator, (
            key,
            "denominator",
            row["denominator"],
            cell,
        )
        assert _close(row["value"], cell.value), (key, "value", row["value"], cell)
        for col in LIMITS:
            want = cell.limits.get(col)
            assert _close(row[col], want), (key, col, row[col], want, cell)
    return len(expected)


def run_case(tables, ivs, define) -> tuple[int, pd.DataFrame]:
    m = Measures(intervals=ivs)
    specs = define(m)
    group_cols = {name: list(x.breakdown) for name, x in m.measures.items()}
    with tempfile.TemporaryDirectory() as tmp:
        store = make_store(Path(tmp), tables)
        result = run_measures(store, m, disclosure=False)
    return compare(result, Oracle(tables), specs, ivs, group_cols), result


def _random_test(check, examples: int):
    """A Hypothesis test of ``examples`` drawn stores, each given to ``check(name,
    tables)`` (``name``: the stores' intervals, a key of INTERVALS)."""

    @settings(
        max_examples=examples,
        derandomize=True,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(case=scenarios())
    def test(case):
        check(*case)

    return test


def _against_the_oracle(define):
    """A check that the measures ``define`` makes agree with the oracle."""

    def check(name, tables):
        run_case(tables, INTERVALS[name], define)

    return check


FAMILIES = {
    "proportions_of_patients": proportion_measures,
    "counts_per_patient_and_of_rows": count_measures,
    "rates_per_person_time": rate_measures,
    "standardised_rates": standardised_measures,
}
for _family, _define in FAMILIES.items():
    _check = _against_the_oracle(_define)
    globals()[f"test_{_family}_agree_with_the_oracle"] = _random_test(_check, EXAMPLES)
    globals()[f"test_{_family}_agree_with_the_oracle_more_cases"] = pytest.mark.slow(
        _random_test(_check, SLOW_EXAMPLES)
    )


# -- a measure over the rows of a row dataset (per reading) -----------------------------------


def row_measures(m: Measures) -> list[tuple]:
    """Per reading of code A: a B reading within 30 days either side of *that* reading,
    among the readings of 140 or more, by the practice on the reading's day (the row
    dataset's population: registered that day); and, among every reading, that or a
    reading of 160 or more, by sex."""
    registered_rows = RowDataset(bp)
    r = registered_rows.row
    registered_rows.define_population(registrations.registered_on(r.date))
    b_within_30 = (
        events.where(events.code == "B")
        .on_or_after(r.date - days(30))
        .on_or_before(r.date + days(30))
    )
    m.define_row_measure(
        "b_within_30d_of_high_reading",
        rows=registered_rows,
        numerator=b_within_30.exists_for_patient(),
        denominator=r.value >= 140,
        group_by={"practice": registrations.practice_on(r.date).practice_id},
    )
    every_row = RowDataset(bp)
    r2 = every_row.row
    m.define_row_measure(
        "b_within_30d_of_reading",
        rows=every_row,
        numerator=events.where(events.code == "B")
        .on_or_after(r2.date - days(30))
        .on_or_before(r2.date + days(30))
        .exists_for_patient()
        | (r2.value >= 160),
        group_by={"sex": patients.sex},
    )

    def b_within_30d(o, row):
        lo, hi = row["date"] - dt.timedelta(days=30), row["date"] + dt.timedelta(days=30)
        return any(lo <= b["date"] <= hi for b in o.events(row["patient_id"], "B"))

    return [
        (
            "b_within_30d_of_high_reading",
            lambda o, row: o.registered_on(row["patient_id"], row["date"]),
            b_within_30d,
            lambda o, row: row["value"] is not None and row["value"] >= 140,
            lambda o, row: (o.practice_on(row["patient_id"], row["date"]),),
        ),
        (
            "b_within_30d_of_reading",
            lambda o, row: True,
            # an "or" with a missing side is true when the other side is
            lambda o, row: b_within_30d(o, row) or (row["value"] or 0) >= 160,
            lambda o, row: True,
            lambda o, row: (o.patients[row["patient_id"]]["sex"],),
        ),
    ]


def row_cells(tables, ivs, specs) -> dict[tuple, Cell]:
    """Each reading counted in every interval its own date falls in (a month and its
    quarter both), per group, a row for each interval and group with rows in the
    denominator; Wilson limits on the counts of rows."""
    o = Oracle(tables)
    out = {}
    for name, population, numerator, denominator, groups in specs:
        for s, e in ivs:
            cells: dict[tuple, list[int]] = {}
            for row in tables["events"]:
                if row["code"] != "A" or not (s <= row["date"] <= e):
                    continue
                if not population(o, row) or not denominator(o, row):
                    continue
                g = tuple("unknown" if x is None else x for x in groups(o, row))
                c = cells.setdefault(g, [0, 0])
                c[0] += bool(numerator(o, row))
                c[1] += 1
            for g, (num, den) in cells.items():
                out[(name, s, e, *g)] = Cell(
                    num, den, 100 * num / den, wilson_limits(num, den, 100)
                )
    return out


def _row_measures_check(name, tables):
    ivs = INTERVALS[name]
    m = Measures(intervals=ivs)
    specs = row_measures(m)
    group_cols = {n: list(x.breakdown) for n, x in m.measures.items()}
    result = _run(tables, m)
    assert set(result.attrs["evaluation"].values()) <= {"rows"}
    expected = row_cells(tables, ivs, specs)
    got = engine_cells(result, [], group_cols)
    assert set(got) == set(expected), (set(expected) - set(got), set(got) - set(expected))
    for key, cell in expected.items():
        row = got[key]
        assert (row["numerator"], row["denominator"]) == (cell.numerator, cell.denominator), (
            key,
            row["numerator"],
            row["denominator"],
            cell,
        )
        assert _close(row["value"], cell.value), (key, row["value"], cell)
        for col in LIMITS:
            assert _close(row[col], cell.limits[col]), (key, col, row[col], cell)


test_row_measures_agree_with_the_oracle = _random_test(_row_measures_check, EXAMPLES)
test_row_measures_agree_with_the_oracle_more_cases = pytest.mark.slow(
    _random_test(_row_measures_check, SLOW_EXAMPLES)
)


# -- centiles of a number per patient -------------------------------------------------------

STATISTIC = {0.25: "25th centile", 0.5: "median", 0.9: "90th centile"}


def centile_measures(m: Measures) -> list[tuple]:
    readings = bp.in_last(months=12)
    m.define_quantile(
        "highest_12m_reading",
        value=readings.maximum_for_patient(),
        among=registrations.registered_on(index_date),
        quantiles=(0.25, 0.5, 0.9),
        group_by={"sex": patients.sex},
    )
    m.define_quantile(
        "readings_in_interval",
        value=bp.in_interval().count_for_patient(),
        among=patients.is_alive_on(index_date),
        quantiles=(0.5,),
    )
    readings_rows = bp.in_interval()
    m.define_quantile(
        "reading_values",
        value=readings_rows.value,
        rows=readings_rows,
        among=registrations.registered_on(index_date),
        quantiles=(0.5, 0.9),
        group_by={"sex": patients.sex},
    )
    return [
        (
            "reading_values",
            # over rows: one value per reading (missing values counted, left out)
            lambda o, p, s, e: [r["value"] for r in o.events(p, "A") if s <= r["date"] <= e],
            lambda o, p, s, e: o.registered_on(p, e),
            _sex,
            (0.5, 0.9),
        ),
        (
            "highest_12m_reading",
            lambda o, p, s, e: max(_values_12m(o, p, e), default=None),
            lambda o, p, s, e: o.registered_on(p, e),
            _sex,
            (0.25, 0.5, 0.9),
        ),
        (
            "readings_in_interval",
            lambda o, p, s, e: sum(s <= r["date"] <= e for r in o.events(p, "A")),
            lambda o, p, s, e: o.alive_on(p, e),
            lambda o, p, s, e: (),
            (0.5,),
        ),
    ]


def compare_centiles(result: pd.DataFrame, tables, ivs, specs, group_cols) -> None:
    o = Oracle(tables)
    expected = {}
    for name, value, among, groups, qs in specs:
        expected.update(centile_cells(o, name, value, among, groups, qs, ivs))
    got = {}
    for row in result.to_dict("records"):
        q = {v: k for k, v in STATISTIC.items()}[row["statistic"]]
        key = (
            row["measure"],
            _date(row["interval_start"]),
            _date(row["interval_end"]),
            *(_label(row[c]) for c in group_cols[row["measure"]]),
            q,
        )
        assert key not in got, key
        got[key] = row
    assert set(got) == set(expected), (set(expected) - set(got), set(got) - set(expected))
    for key, cell in expected.items():
        row = got[key]
        assert (row["numerator"], row["denominator"]) == (cell.numerator, cell.denominator), key
        assert _close(row["value"], cell.value), (key, row["value"], cell)
        for col in LIMITS:
            assert _close(row[col], cell.limits[col]), (key, col, row[col], cell)


def _centiles_check(name, tables):
    ivs = INTERVALS[name]
    m = Measures(intervals=ivs)
    specs = centile_measures(m)
    group_cols = {n: list(x.breakdown) for n, x in m.measures.items()}
    compare_centiles(_run(tables, m), tables, ivs, specs, group_cols)


test_centiles_agree_with_the_oracle = _random_test(_centiles_check, EXAMPLES)
test_centiles_agree_with_the_oracle_more_cases = pytest.mark.slow(
    _random_test(_centiles_check, SLOW_EXAMPLES)
)


# -- hand-made edge cases: expected values worked out from the docs --------------------------


def _run(tables, m: Measures) -> pd.DataFrame:
    with tempfile.TemporaryDirectory() as tmp:
        return run_measures(make_store(Path(tmp), tables), m, disclosure=False)


def _table(result: pd.DataFrame, measure: str, groups=()) -> list[tuple]:
    """(start, end, *groups, numerator, denominator, value rounded to 6 places) per row."""
    out = []
    for r in result[result["measure"] == measure].to_dict("records"):
        value = None if pd.isna(r["value"]) else round(r["value"], 6)
        out.append(
            (
                _date(r["interval_start"]),
                _date(r["interval_end"]),
                *(_label(r[g]) for g in groups),
                int(r["numerator"]),
                int(r["denominator"]),
                value,
            )
        )
    return out


def _patient(pid, dob=D(1980, 1, 1), sex="female", dod=None) -> dict:
    return {"patient_id": pid, "date_of_birth": dob, "sex": sex, "date_of_death": dod}


def _reg(pid, start, end=None, practice="A1") -> dict:
    return {"patient_id": pid, "practice_id": practice, "start_date": start, "end_date": end}


def _ev(pid, day, code="A", value=None) -> dict:
    return {"patient_id": pid, "date": day, "code": code, "value": value}


def test_last_12_months_at_month_ends_around_29_february():
    # docs section 2: in_last(months=12) is (index − 12 months, index]; a day the month
    # lacks becomes its last day. At 29 Feb 2024 the window starts after 28 Feb 2023, so
    # p1's reading of 28 Feb 2023 is out and p2's of 1 Mar 2023 in. At 28 Feb 2025 it
    # starts after 28 Feb 2024: p3's 29 Feb 2024 is in, p4's 28 Feb 2024 out. At 31 Mar
    # 2024 (after 31 Mar 2023): p2's 1 Mar 2023 is out.
    tables = {
        "patients": [_patient(p) for p in ("p1", "p2", "p3", "p4")],
        "events": [
            _ev("p1", D(2023, 2, 28)),
            _ev("p2", D(2023, 3, 1)),
            _ev("p3", D(2024, 2, 29)),
            _ev("p4", D(2024, 2, 28)),
        ],
    }
    ivs = [(D(2024, 2, 1), D(2024, 2, 29)), (D(2024, 3, 1), D(2024, 3, 31))]
    ivs += [(D(2025, 2, 1), D(2025, 2, 28))]
    m = Measures(intervals=ivs)
    m.define_measure(
        "bp_12m",
        numerator=bp.in_last(months=12).exists_for_patient(),
        denominator=patients.is_alive_on(index_date),
    )
    # Feb 2024: p2, p3, p4 (p1's 28 Feb 2023 is out) -> 3 of 4; Mar 2024: p3, p4 -> 2 of 4;
    # Feb 2025: p3 only -> 1 of 4
    assert _table(_run(tables, m), "bp_12m") == [
        (D(2024, 2, 1), D(2024, 2, 29), 3, 4, 75.0),
        (D(2024, 3, 1), D(2024, 3, 31), 2, 4, 50.0),
        (D(2025, 2, 1), D(2025, 2, 28), 1, 4, 25.0),
    ]


def test_two_months_back_from_30_april_start_after_29_february():
    # in_last(months=2) at 30 Apr 2024: 30 Feb does not exist, so the window starts after
    # 29 Feb 2024 — 1 Mar is in, 29 Feb out. At 31 May 2024 it starts after 31 Mar.
    tables = {
        "patients": [_patient("p1"), _patient("p2"), _patient("p3")],
        "events": [_ev("p1", D(2024, 2, 29)), _ev("p2", D(2024, 3, 1)), _ev("p3", D(2024, 3, 31))],
    }
    m = Measures(intervals=monthly("2024-04-01", 2))
    m.define_measure(
        "bp_2m",
        numerator=bp.in_last(months=2).exists_for_patient(),
        denominator=patients.is_alive_on(index_date),
    )
    assert _table(_run(tables, m), "bp_2m") == [
        (D(2024, 4, 1), D(2024, 4, 30), 2, 3, round(200 / 3, 6)),  # p2, p3
        (D(2024, 5, 1), D(2024, 5, 31), 0, 3, 0.0),  # 31 Mar is not after 31 Mar
    ]


def test_registered_on_the_last_day_and_counted_only_among_the_denominator():
    # The denominator is "registered on the interval's last day": p1's registration ends on
    # 30 Jan (not registered on 31 Jan), p2's starts on 31 Jan (registered). p1's January
    # reading counts in neither, p3 (never registered) in neither. February: p1 is back
    # from 1 Feb (reading 29 Feb), p2 still registered -> 1 of 2.
    tables = {
        "patients": [_patient("p1"), _patient("p2"), _patient("p3")],
        "registrations": [
            _reg("p1", D(2023, 1, 1), D(2024, 1, 30)),
            _reg("p1", D(2024, 2, 1)),
            _reg("p2", D(2024, 1, 31)),
        ],
        "events": [_ev("p1", D(2024, 1, 15)), _ev("p1", D(2024, 2, 29)), _ev("p3", D(2024, 1, 2))],
    }
    m = Measures(intervals=monthly("2024-01-01", 2))
    m.define_measure(
        "bp",
        numerator=bp.in_interval().exists_for_patient(),
        denominator=registrations.registered_on(index_date),
    )
    assert _table(_run(tables, m), "bp") == [
        (D(2024, 1, 1), D(2024, 1, 31), 0, 1, 0.0),
        (D(2024, 2, 1), D(2024, 2, 29), 1, 2, 50.0),
    ]


def test_adults_by_a_29_february_birthday():
    # age_on: a 29 February birthday turns over on 1 March in a common year. Born 29 Feb
    # 2008: 17 on 28 Feb 2026, 18 on 31 Mar 2026 — in weeks, 17 on 28 Feb and 18 on 7 Mar.
    # Rows come in the order of the intervals' starts, then their ends.
    tables = {"patients": [_patient("p1", dob=D(2008, 2, 29)), _patient("p2", dob=D(2006, 2, 28))]}
    m = Measures(intervals=[*monthly("2026-02-01", 2), *weekly("2026-02-22", 2)])
    m.define_measure(
        "adults",
        numerator=patients.age_on(index_date) >= 18,
        denominator=patients.is_alive_on(index_date),
    )
    # p2 (born 28 Feb 2006) is 20 throughout; p1 turns 18 on 1 Mar 2026
    assert _table(_run(tables, m), "adults") == [
        (D(2026, 2, 1), D(2026, 2, 28), 1, 2, 50.0),
        (D(2026, 2, 22), D(2026, 2, 28), 1, 2, 50.0),
        (D(2026, 3, 1), D(2026, 3, 7), 2, 2, 100.0),
        (D(2026, 3, 1), D(2026, 3, 31), 2, 2, 100.0),
    ]


def test_practice_on_the_last_day_latest_start_then_last_code():
    # practice_on(index_date): the registration with the latest start wins; ties by the
    # alphabetically last practice code. p1 moves from A1 to B2 mid-January, the new
    # registration starting before the old one ends: B2 on 31 Jan. p2 has two registrations
    # starting the same day: B2 beats A1. p3 leaves B2 on 30 Jan and is with A1 (older
    # start) on 31 Jan. Events per patient: p1 2 readings, p2 1, p3 3 in January.
    tables = {
        "patients": [_patient("p1"), _patient("p2"), _patient("p3")],
        "registrations": [
            _reg("p1", D(2020, 1, 1), D(2024, 1, 20), "A1"),
            _reg("p1", D(2024, 1, 10), None, "B2"),
            _reg("p2", D(2022, 5, 5), None, "A1"),
            _reg("p2", D(2022, 5, 5), None, "B2"),
            _reg("p3", D(2019, 1, 1), None, "A1"),
            _reg("p3", D(2023, 1, 1), D(2024, 1, 30), "B2"),
        ],
        "events": [
            *(_ev("p1", d) for d in (D(2024, 1, 1), D(2024, 1, 31))),
            _ev("p2", D(2024, 1, 31)),
            *(_ev("p3", d) for d in (D(2024, 1, 1), D(2024, 1, 2), D(2024, 1, 3))),
        ],
    }
    m = Measures(intervals=monthly("2024-01-01", 1))
    m.define_measure(
        "readings_per_patient",
        numerator=bp.in_interval().count_for_patient(),
        denominator=registrations.registered_on(index_date),
        group_by={"practice": registrations.practice_on(index_date).practice_id},
    )
    result = _run(tables, m)
    # A1: p3, 3 events of 1 patient -> 300 per 100 patients; B2: p1 and p2, 3 of 2 -> 150
    assert _table(result, "readings_per_patient", ["practice"]) == [
        (D(2024, 1, 1), D(2024, 1, 31), "A1", 3, 1, 300.0),
        (D(2024, 1, 1), D(2024, 1, 31), "B2", 3, 2, 150.0),
    ]
    # events per patient carry exact Poisson limits (fewer than 10 events): Garwood's
    # χ²(0.025; 6)/2 = 0.6186721 and χ²(0.975; 8)/2 = 8.7672731 events, per 2 patients × 100
    b2 = result[result["practice"] == "B2"].iloc[0]
    assert b2["lower95_0cl"] == pytest.approx(0.6186721 / 2 * 100, rel=1e-6)
    assert b2["upper95_0cl"] == pytest.approx(8.7672731 / 2 * 100, rel=1e-6)
    assert b2["statistic"] == "rate per 100 patients"


def test_registered_person_days_count_both_ends_the_death_day_and_each_day_once():
    # Person-time (docs section 4): a period's start and end days both count, days outside
    # the interval do not, overlapping periods count once, until= ends it with its own day.
    # p1 registers on 15 Jan 2024 (open) and dies on 10 Feb: January 15-31 = 17 days,
    # February 1-10 = 10 days (the death day counts), March none (no row: nobody at risk).
    # p2 changes practice: A1 to 25 Jan, B2 from 20 Jan (overlap 20-25 counted once), so
    # January is 31 days; February 29 (leap year); March 31. p2's admissions: 31 Jan,
    # 29 Feb, 1 Mar; p1's 10 Feb (the death day) and 11 Feb (after: outside its
    # person-time, but the docs say it still counts while the patient has person-time in
    # the interval — events are not cut to the days: "count only the events inside the
    # time at risk" is the definer's job).
    tables = {
        "patients": [_patient("p1", dod=D(2024, 2, 10)), _patient("p2", sex="male")],
        "registrations": [
            _reg("p1", D(2024, 1, 15)),
            _reg("p2", D(2020, 1, 1), D(2024, 1, 25), "A1"),
            _reg("p2", D(2024, 1, 20), None, "B2"),
        ],
        "admissions": [
            {"patient_id": "p2", "admission_date": d, "admission_method": "emergency"}
            for d in (D(2024, 1, 31), D(2024, 2, 29), D(2024, 3, 1))
        ]
        + [
            {"patient_id": "p1", "admission_date": d, "admission_method": "emergency"}
            for d in (D(2024, 2, 10), D(2024, 2, 11))
        ],
    }
    m = Measures(intervals=monthly("2024-01-01", 3))
    m.define_rate(
        "admissions",
        events=admissions.in_interval().count_for_patient(),
        person_time=registered_days,
        per=1000,
        unit="days",
        group_by={"sex": patients.sex},
    )
    # value = events / days × 1000
    assert _table(_run(tables, m), "admissions", ["sex"]) == [
        (D(2024, 1, 1), D(2024, 1, 31), "female", 0, 17, 0.0),
        (D(2024, 1, 1), D(2024, 1, 31), "male", 1, 31, round(1000 / 31, 6)),
        (D(2024, 2, 1), D(2024, 2, 29), "female", 2, 10, 200.0),
        (D(2024, 2, 1), D(2024, 2, 29), "male", 1, 29, round(1000 / 29, 6)),
        (D(2024, 3, 1), D(2024, 3, 31), "male", 1, 31, round(1000 / 31, 6)),
    ]


def test_bed_days_count_admission_and_discharge_days_and_weeks_across_29_february():
    # An admission counts its day of admission and of discharge (a day case is 1 day); an
    # open admission runs on to the interval's end. Weeks from Mon 26 Feb 2024: 26 Feb -
    # 3 Mar (7 days, 29 Feb among them) and 4 - 10 Mar.
    # p1: 28 Feb - 1 Mar (3 days, all in week 1) and a day case on 4 Mar (week 2: 1 day).
    # p2: 3 Mar - open: week 1 has 1 day (3 Mar), week 2 all 7.
    # p3: 29 Feb - 29 Feb and 29 Feb - 2 Mar overlap: 29 Feb, 1 and 2 Mar = 3 days once.
    def adm(pid, start, end):
        return {
            "patient_id": pid,
            "admission_date": start,
            "discharge_date": end,
            "admission_method": "emergency",
        }

    tables = {
        "patients": [_patient(p) for p in ("p1", "p2", "p3")],
        "admissions": [
            adm("p1", D(2024, 2, 28), D(2024, 3, 1)),
            adm("p1", D(2024, 3, 4), D(2024, 3, 4)),
            adm("p2", D(2024, 3, 3), None),
            adm("p3", D(2024, 2, 29), D(2024, 2, 29)),
            adm("p3", D(2024, 2, 29), D(2024, 3, 2)),
        ],
        "events": [_ev("p1", D(2024, 2, 29)), _ev("p2", D(2024, 3, 3)), _ev("p2", D(2024, 3, 10))],
    }
    m = Measures(intervals=weekly("2024-02-26", 2))
    m.define_rate(
        "readings_per_bed_day",
        events=bp.in_interval().count_for_patient(),
        person_time=admissions.days_in_interval_for_patient(),
        per=1,
        unit="days",
    )
    # week 1: 3 + 1 + 3 = 7 bed-days, readings p1 29 Feb and p2 3 Mar = 2
    # week 2: 1 + 7 = 8 bed-days (p3 none: not at risk), p2's 10 Mar reading = 1
    assert _table(_run(tables, m), "readings_per_bed_day") == [
        (D(2024, 2, 26), D(2024, 3, 3), 2, 7, round(2 / 7, 6)),
        (D(2024, 3, 4), D(2024, 3, 10), 1, 8, 0.125),
    ]


def test_care_home_days_follow_the_address_on_each_day():
    # docs section 4: a day counts when the patient's address that day by the overlap rule
    # (latest start wins; ties: the alphabetically last LSOA) is a care-home row.
    # p1: care home from 1 Dec 2023 (open), a flat from 15 Jan 2024 (open, starts later):
    #     December 31 days, January 1-14 = 14, February none.
    # p2: home since 2010 (open), a care-home stay 30 Jan - 2 Feb inside it: January 2,
    #     February 2.
    # p3: two care-home rows overlapping (1-20 Jan and 10 Jan - 10 Feb): January 31 once,
    #     February 10; dies 5 Feb with until=: February 5.
    # Admissions from a care home (during(care_home)): p1 on 14 Jan (care home) and 15 Jan
    # (flat: not); p2 on 2 Feb (care home); p3 on 6 Feb (a care-home day, after death: still
    # a care-home day by the address, so counted while p3 has person-time in February).
    tables = {
        "patients": [_patient("p1"), _patient("p2"), _patient("p3", dod=D(2024, 2, 5))],
        "addresses": [
            {
                "patient_id": "p1",
                "start_date": D(2023, 12, 1),
                "end_date": None,
                "lsoa_code": HOME,
                "care_home": True,
            },
            {
                "patient_id": "p1",
                "start_date": D(2024, 1, 15),
                "end_date": None,
                "lsoa_code": FLAT,
                "care_home": False,
            },
            {
                "patient_id": "p2",
                "start_date": D(2010, 1, 1),
                "end_date": None,
                "lsoa_code": FLAT2,
                "care_home": False,
            },
            {
                "patient_id": "p2",
                "start_date": D(2024, 1, 30),
                "end_date": D(2024, 2, 2),
                "lsoa_code": HOME2,
                "care_home": True,
            },
            {
                "patient_id": "p3",
                "start_date": D(2024, 1, 1),
                "end_date": D(2024, 1, 20),
                "lsoa_code": HOME,
                "care_home": True,
            },
            {
                "patient_id": "p3",
                "start_date": D(2024, 1, 10),
                "end_date": D(2024, 2, 10),
                "lsoa_code": HOME2,
                "care_home": True,
            },
        ],
        "admissions": [
            {"patient_id": p, "admission_date": d, "admission_method": "emergency"}
            for p, d in (
                ("p1", D(2024, 1, 14)),
                ("p1", D(2024, 1, 15)),
                ("p2", D(2024, 2, 2)),
                ("p3", D(2024, 2, 6)),
            )
        ],
    }
    m = Measures(intervals=monthly("2023-12-01", 3))
    m.define_rate(
        "care_home_admissions",
        events=admissions.during(care_home).in_interval().count_for_patient(),
        person_time=care_home.days_in_interval_for_patient(until=patients.date_of_death),
        per=1000,
        unit="days",
    )
    # December: p1 31 days, 0 events. January: p1 14 + p2 2 + p3 31 = 47 days, 1 event
    # (p1 14 Jan). February: p2 2 + p3 5 = 7 days, events p2 2 Feb and p3 6 Feb = 2.
    assert _table(_run(tables, m), "care_home_admissions") == [
        (D(2023, 12, 1), D(2023, 12, 31), 0, 31, 0.0),
        (D(2024, 1, 1), D(2024, 1, 31), 1, 47, round(1000 / 47, 6)),
        (D(2024, 2, 1), D(2024, 2, 29), 2, 7, round(2000 / 7, 6)),
    ]


def test_rate_per_person_years_with_exact_and_byars_limits():
    # One patient registered all of 2024 (366 days: a leap year) with 5 admissions, and
    # all of 2025 (365 days) with 20. Rate per 1,000 person-years = events / (days /
    # 365.25) × 1000. Limits (docs/statistics.md): exact below 10 — for 5 events
    # 1.6234864 to 11.6683321 (Garwood: χ²(0.025; 10)/2 and χ²(0.975; 12)/2; statistics.md's
    # worked value 1.6235-11.6683 per 100 person-years); Byar's from 10 — for 20 events
    # 12.2114 to 30.8899 (Breslow & Day), each ÷ person-years × 1000.
    tables = {
        "patients": [_patient("p1")],
        "registrations": [_reg("p1", D(2023, 6, 1))],
        "admissions": [
            {"patient_id": "p1", "admission_date": D(2024, 1, 1) + dt.timedelta(days=7 * i)}
            | {"admission_method": "emergency"}
            for i in range(5)
        ]
        + [
            {"patient_id": "p1", "admission_date": D(2025, 1, 1) + dt.timedelta(days=7 * i)}
            | {"admission_method": "emergency"}
            for i in range(20)
        ],
    }
    m = Measures(intervals=yearly("2024-01-01", 2))
    m.define_rate(
        "admissions",
        events=admissions.in_interval().count_for_patient(),
        person_time=registered_days,
        per=1000,
    )
    result = _run(tables, m)
    assert _table(result, "admissions") == [
        (D(2024, 1, 1), D(2024, 12, 31), 5, 366, round(5 / (366 / 365.25) * 1000, 6)),
        (D(2025, 1, 1), D(2025, 12, 31), 20, 365, round(20 / (365 / 365.25) * 1000, 6)),
    ]
    y2024, y2025 = result.iloc[0], result.iloc[1]
    assert y2024["method"].startswith("Exact") and y2025["method"].startswith("Byar")
    assert y2024["lower95_0cl"] == pytest.approx(1.6234864 / (366 / 365.25) * 1000, rel=1e-6)
    assert y2024["upper95_0cl"] == pytest.approx(11.6683321 / (366 / 365.25) * 1000, rel=1e-6)
    lo, hi = poisson_count_limits(20, 0.95)
    assert y2025["lower95_0cl"] == pytest.approx(lo / (365 / 365.25) * 1000, rel=1e-9)
    assert y2025["upper95_0cl"] == pytest.approx(hi / (365 / 365.25) * 1000, rel=1e-9)


def test_oracle_limit_formulas_give_the_published_worked_values():
    # The oracle's formulas, checked against published values before they check the engine.
    # Wilson: Newcombe (1998), Stat Med 17:857-72, table II, method 3: 81/263 -> 0.2553 to
    # 0.3662; 15/148 -> 0.0624 to 0.1605; 0/20 -> 0 to 0.1611; 1/29 -> 0.0061 to 0.1718.
    for (x, n), (lo, hi) in {
        (81, 263): (0.2553, 0.3662),
        (15, 148): (0.0624, 0.1605),
        (0, 20): (0.0, 0.1611),
        (1, 29): (0.0061, 0.1718),
    }.items():
        w = wilson_limits(x, n, 1)
        assert (round(w["lower95_0cl"], 4), round(w["upper95_0cl"], 4)) == (lo, hi)
    # Poisson, per 100 person-years (docs/statistics.md, PHEindicatormethods' phe_rate):
    # 5 events -> 1.6235 to 11.6683 (exact), 20 -> 12.2114 to 30.8899 (Byar's)
    assert [round(v, 4) for v in poisson_count_limits(5, 0.95)] == [1.6235, 11.6683]
    assert [round(v, 4) for v in poisson_count_limits(20, 0.95)] == [12.2114, 30.8899]


def test_a_proportion_of_148_has_newcombes_wilson_limits():
    # 15 of 148 patients: Newcombe's (1998) worked example, 95% Wilson limits 6.24% to 16.05%
    tables = {
        "patients": [_patient(f"p{i:03d}") for i in range(148)],
        "events": [_ev(f"p{i:03d}", D(2024, 1, 31)) for i in range(15)],
    }
    m = Measures(intervals=monthly("2024-01-01", 1))
    m.define_measure(
        "bp",
        numerator=bp.in_interval().exists_for_patient(),
        denominator=patients.is_alive_on(index_date),
    )
    row = _run(tables, m).iloc[0]
    assert (row["numerator"], row["denominator"]) == (15, 148)
    assert round(row["lower95_0cl"], 2) == 6.24 and round(row["upper95_0cl"], 2) == 16.05
    assert row["method"] == "Wilson"


def test_a_proportion_of_rows_has_a_0_of_0_row_for_a_group_with_patients_but_no_rows():
    # docs section 4: "A count or sum denominator has a row for each interval and group
    # with patients, 0 of 0 (no value) where they have no rows." p1 (female) has 3
    # readings in January, 2 of them 140 or more; p2 (male) none in January; in February
    # p2 has one of 120.
    tables = {
        "patients": [_patient("p1"), _patient("p2", sex="male")],
        "events": [
            _ev("p1", D(2024, 1, 1), value=140.0),
            _ev("p1", D(2024, 1, 31), value=150.0),
            _ev("p1", D(2024, 1, 31), value=None),
            _ev("p2", D(2024, 2, 1), value=120.0),
        ],
    }
    readings = bp.in_interval()
    m = Measures(intervals=monthly("2024-01-01", 2))
    m.define_measure(
        "high",
        numerator=readings.where(events.value >= 140).count_for_patient(),
        denominator=readings.count_for_patient(),
        group_by={"sex": patients.sex},
    )
    result = _run(tables, m)
    assert _table(result, "high", ["sex"]) == [
        (D(2024, 1, 1), D(2024, 1, 31), "female", 2, 3, round(200 / 3, 6)),
        (D(2024, 1, 1), D(2024, 1, 31), "male", 0, 0, None),
        (D(2024, 2, 1), D(2024, 2, 29), "female", 0, 0, None),
        (D(2024, 2, 1), D(2024, 2, 29), "male", 0, 1, 0.0),
    ]
    assert result["method"].iloc[0] == "Wilson; rows counted as independent"


def test_standardised_rate_of_two_bands_by_hand():
    # define_standardised_rate(min_age=15, max_age=24): the bands 15-19 and 20-24 of ESP
    # 2013 (weights 5,500 and 6,000), by age on the interval's last day (31 Dec 2024).
    # 15-19: p1 (born 1 Jan 2005: 19) 4 admissions, p2 (born 1 Jan 2009: 15) 2 -> 6 of 2.
    # 20-24: p3 (born 31 Dec 2004: 20 on 31 Dec 2024) 3, p4 (born 1 Jan 2000: 24) 1, p5
    # (born 1 Jan 2004: 20) 1 -> 5 of 3. p6 (born 1 Jan 2010: 14) and p7 (born 31 Dec 1999:
    # 25) are outside the bands, their admissions too.
    # DSR = (6/2 × 5500 + 5/3 × 6000) / 11500 × 100,000 = 26,500/11,500 × 100,000
    #     = 230,434.78 per 100,000; O = 11 events -> Byar's; Dobson's limits
    #     DSR + √(V/O)(O_lim − O), V = ((5500/2)² × 6 + (6000/3)² × 5) / 11500².
    births = {
        "p1": D(2005, 1, 1),
        "p2": D(2009, 1, 1),
        "p3": D(2004, 12, 31),
        "p4": D(2000, 1, 1),
        "p5": D(2004, 1, 1),
        "p6": D(2010, 1, 1),
        "p7": D(1999, 12, 31),
    }
    events_of = {"p1": 4, "p2": 2, "p3": 3, "p4": 1, "p5": 1, "p6": 5, "p7": 5}
    tables = {
        "patients": [_patient(p, dob=b) for p, b in births.items()],
        "registrations": [_reg(p, D(2020, 1, 1)) for p in births],
        "admissions": [
            {"patient_id": p, "admission_date": D(2024, 3, 1) + dt.timedelta(days=i)}
            | {"admission_method": "emergency"}
            for p, n in events_of.items()
            for i in range(n)
        ],
    }
    m = Measures(intervals=yearly("2024-01-01", 1))
    m.define_standardised_rate(
        "dsr",
        events=admissions.in_interval().count_for_patient(),
        among=registrations.registered_on(index_date),
        min_age=15,
        max_age=24,
    )
    row = _run(tables, m).iloc[0]
    assert (row["numerator"], row["denominator"]) == (11, 5)
    assert row["value"] == pytest.approx(26_500 / 11_500 * 100_000, rel=1e-9)
    value, limits = dobson([6, 5], [2, 3], ESP2013[3:5], 100_000)
    assert value == pytest.approx(230_434.7826, rel=1e-9)
    for col in LIMITS:
        assert row[col] == pytest.approx(limits[col], rel=1e-6), col


def test_median_of_ten_and_its_binomial_ranks():
    # docs/statistics.md "Centiles": exact ranks 2nd-9th of 10, 3rd-10th of 12, 6th-15th
    # of 20, 40th-61st of 100 for the median at 95% (Campbell & Gardner); a 95% interval
    # for the median needs 6 values, the 99.8% one 10.
    assert binomial_ranks(10, 0.5, 0.95) == (2, 9)
    assert binomial_ranks(12, 0.5, 0.95) == (3, 10)
    assert binomial_ranks(20, 0.5, 0.95) == (6, 15)
    assert binomial_ranks(100, 0.5, 0.95) == (40, 61)
    assert binomial_ranks(5, 0.5, 0.95) is None and binomial_ranks(6, 0.5, 0.95) is not None
    assert binomial_ranks(9, 0.5, 0.998) is None and binomial_ranks(10, 0.5, 0.998) == (1, 10)
    # Ten patients with 1..10 readings in January: the median (Hyndman & Fan 7) is the mean
    # of the 5th and 6th, 5.5; 95% limits the 2nd and 9th values (2 and 9), 99.8% the 1st
    # and 10th (1 and 10). An 11th patient alive with no reading has the value 0.
    pids = [f"p{i:02d}" for i in range(1, 11)]
    tables = {
        "patients": [_patient(p) for p in pids],
        "events": [_ev(p, D(2024, 1, 1 + k)) for i, p in enumerate(pids) for k in range(i + 1)],
    }
    m = Measures(intervals=monthly("2024-01-01", 1))
    m.define_quantile(
        "readings",
        value=bp.in_interval().count_for_patient(),
        among=patients.is_alive_on(index_date),
    )
    row = _run(tables, m).iloc[0]
    assert (row["statistic"], row["numerator"], row["denominator"]) == ("median", 10, 10)
    assert row["value"] == 5.5
    assert [row[c] for c in LIMITS] == [2, 9, 1, 10]


def test_standardised_rate_per_person_time_of_one_band_and_an_empty_band():
    # A rate of one band (min_age=70, max_age=74) is events ÷ population × per: p1 (72 on
    # 31 Dec 2024) registered all of 2024 (366 days) with 12 admissions -> 12 / (366 /
    # 365.25) × 100,000 per 100,000 person-years; Dobson's limits of one band are Byar's
    # limits on 12 ÷ the person-years. p2 (born 1 Jan 1950: 74) is registered from
    # 1 Jul 2024 only (184 days), dies 31 Dec 2024 (its own day counts), 0 admissions.
    # p3 (60) is outside the band and its admissions too.
    # With min_age=65 (bands 65-69 ... 90+) the rate is missing: bands with nobody in them.
    tables = {
        "patients": [
            _patient("p1", dob=D(1952, 6, 1)),
            _patient("p2", dob=D(1950, 1, 1), dod=D(2024, 12, 31)),
            _patient("p3", dob=D(1964, 1, 1)),
        ],
        "registrations": [
            _reg("p1", D(2010, 1, 1)),
            _reg("p2", D(2024, 7, 1)),
            _reg("p3", D(2010, 1, 1)),
        ],
        "admissions": [
            {"patient_id": p, "admission_date": D(2024, 2, 1) + dt.timedelta(days=3 * i)}
            | {"admission_method": "emergency"}
            for p in ("p1", "p3")
            for i in range(12)
        ],
    }
    m = Measures(intervals=yearly("2024-01-01", 1))
    for name, low, high in (("band_70_74", 70, 74), ("from_65", 65, None)):
        m.define_standardised_rate(
            name,
            events=admissions.in_interval().count_for_patient(),
            person_time=registered_days,
            min_age=low,
            max_age=high,
        )
    result = _run(tables, m)
    years = (366 + 184) / 365.25
    one = result[result["measure"] == "band_70_74"].iloc[0]
    assert (one["numerator"], one["denominator"]) == (12, 366 + 184)
    assert one["value"] == pytest.approx(12 / years * 100_000, rel=1e-9)
    lo, hi = poisson_count_limits(12, 0.95)
    assert one["lower95_0cl"] == pytest.approx(lo / years * 100_000, rel=1e-6)
    assert one["upper95_0cl"] == pytest.approx(hi / years * 100_000, rel=1e-6)
    wide = result[result["measure"] == "from_65"].iloc[0]
    assert (wide["numerator"], wide["denominator"]) == (12, 366 + 184)
    assert pd.isna(wide["value"]) and all(pd.isna(wide[c]) for c in LIMITS)
    assert wide["method"]  # says why


def test_result_columns_order_and_whole_number_counts_without_disclosure_control():
    # docs section 4: the columns are measure, interval_start, interval_end, each
    # breakdown, numerator, denominator, value, the four limits, confidence, statistic,
    # method, disclosure_note — rows or none; counts are whole numbers without disclosure
    # control.
    tables = {"patients": [_patient("p1")], "events": [_ev("p1", D(2024, 1, 5))]}
    m = Measures(intervals=monthly("2024-01-01", 2))
    m.define_measure(
        "bp",
        numerator=bp.in_interval().count_for_patient(),
        denominator=patients.is_alive_on(index_date),
        group_by={"sex": patients.sex},
    )
    result = _run(tables, m)
    assert list(result.columns) == [
        "measure",
        "interval_start",
        "interval_end",
        "sex",
        "numerator",
        "denominator",
        "value",
        *LIMITS,
        "confidence",
        "statistic",
        "method",
        "disclosure_note",
    ]
    assert result["numerator"].dtype.kind == "i" and result["denominator"].dtype.kind == "i"
    assert _table(result, "bp", ["sex"]) == [
        (D(2024, 1, 1), D(2024, 1, 31), "female", 1, 1, 100.0),
        (D(2024, 2, 1), D(2024, 2, 29), "female", 0, 1, 0.0),
    ]


def test_more_intervals_than_a_mask_holds_agree_with_the_oracle():
    # Masks hold up to 62 intervals (docs section 6); 64 weeks from Mon 4 Dec 2023 (over
    # two year ends and 29 Feb 2024) go another way. The same oracle checks every row.
    ivs = weekly("2023-12-04", 64)
    start = D(2023, 11, 20)
    step = [dt.timedelta(days=k) for k in (0, 13, 41, 86, 87, 90, 200, 366, 367, 400)]
    tables = {
        "patients": [
            _patient("p1", dob=D(2005, 12, 10)),
            _patient("p2", dob=D(2004, 2, 29), sex="male", dod=D(2024, 9, 1)),
            _patient("p3", dob=D(1950, 6, 1), dod=D(2025, 1, 1)),
            _patient("p4", dob=D(2024, 3, 3), sex="male"),
        ],
        "registrations": [
            _reg("p1", D(2023, 12, 31), D(2024, 6, 30), "A1"),
            _reg("p1", D(2024, 6, 1), None, "B2"),
            _reg("p2", D(2020, 1, 1), None, "B2"),
            _reg("p3", D(2024, 2, 29), D(2024, 12, 31), "A1"),
        ],
        "events": [
            _ev(p, start + d, code, v)
            for p, code, v in (("p1", "A", 150.0), ("p2", "A", None), ("p3", "B", 120.0))
            for d in step
        ],
    }
    m = Measures(intervals=ivs)
    specs = proportion_measures(m)
    group_cols = {name: list(x.breakdown) for name, x in m.measures.items()}
    result = _run(tables, m)
    assert compare(result, Oracle(tables), specs, ivs, group_cols) > 64


def test_care_home_days_when_two_addresses_start_on_the_same_day():
    # The overlap rule's tie-break (docs section 2 and 4): of addresses starting the same
    # day, the alphabetically last LSOA wins; an ungeocoded address loses to a geocoded
    # one. From 1 Jan 2024, each patient has two addresses starting that day (open):
    # p1: a care home in E01000005 and a flat in E01000007 -> the flat wins: 0 days;
    # p2: a care home in E01000009 and a flat in E01000007 -> the care home: 31 days;
    # p3: a care home in E01000005 and an ungeocoded flat -> the care home: 31 days.
    # p1's admission on 10 Jan is not from a care home; p2's on 31 Jan is.
    def addr(pid, lsoa, care):
        return {
            "patient_id": pid,
            "start_date": D(2024, 1, 1),
            "end_date": None,
            "lsoa_code": lsoa,
            "care_home": care,
        }

    tables = {
        "patients": [_patient("p1"), _patient("p2"), _patient("p3")],
        "addresses": [
            addr("p1", HOME, True),
            addr("p1", FLAT_7, False),
            addr("p2", HOME2, True),
            addr("p2", FLAT_7, False),
            addr("p3", HOME, True),
            addr("p3", None, False),
        ],
        "admissions": [
            {"patient_id": p, "admission_date": d, "admission_method": "emergency"}
            for p, d in (("p1", D(2024, 1, 10)), ("p2", D(2024, 1, 31)))
        ],
    }
    m = Measures(intervals=monthly("2024-01-01", 1))
    m.define_rate(
        "care_home",
        events=admissions.during(care_home).in_interval().count_for_patient(),
        person_time=care_home.days_in_interval_for_patient(),
        per=1000,
        unit="days",
    )
    assert _table(_run(tables, m), "care_home") == [
        (D(2024, 1, 1), D(2024, 1, 31), 1, 62, round(1000 / 62, 6)),
    ]
