"""Spec: composition — and/or/not (with missing values), case/when, arithmetic on dates and
numbers, code categories and numeric attributes, population rules."""

from __future__ import annotations

import datetime as dt

import pytest

from pophealth.codelists import Codelist
from pophealth.query import (
    Dataset,
    QueryError,
    case,
    days,
    events,
    index_date,
    maximum_of,
    medications,
    minimum_of,
    months,
    patients,
    registrations,
    when,
    years,
)
from tests.spec.conftest import run

D = dt.date
SBP = Codelist.of("snomedct", ["271649006"], name="sbp")


def test_logic_with_missing_values(engine, tmp_path):
    # SQL three-valued logic: missing & False is False, missing | True is True
    tables = {
        "events": [
            {"patient_id": "1", "date": D(2024, 1, 1), "code": "271649006", "value": 150.0},
            {"patient_id": "2", "date": D(2024, 1, 1), "code": "271649006", "value": 120.0},
        ],
        "patients": [
            {"patient_id": p, "sex": s}
            for p, s in (("1", "female"), ("2", "male"), ("3", "female"))
        ],
    }
    sbp = events.matching(SBP).last_for_patient().value
    high = sbp >= 140
    female = patients.sex == "female"
    out = run(
        engine,
        tmp_path,
        tables,
        {
            "high": high,
            "high_and_female": high & female,
            "high_or_female": high | female,
            "not_high": ~high,
            "high_known": high.if_null_then(False),
            "no_reading": sbp.is_null(),
        },
    )
    assert out["1"] == dict(
        high=True,
        high_and_female=True,
        high_or_female=True,
        not_high=False,
        high_known=True,
        no_reading=False,
    )
    assert out["2"] == dict(
        high=False,
        high_and_female=False,
        high_or_female=False,
        not_high=True,
        high_known=False,
        no_reading=False,
    )
    assert out["3"] == dict(
        high=None,
        high_and_female=None,
        high_or_female=True,
        not_high=None,
        high_known=False,
        no_reading=True,
    )


def test_case_when_first_true_branch_wins(engine, tmp_path):
    tables = {
        "events": [
            {"patient_id": str(i), "date": D(2024, 1, 1), "code": "271649006", "value": v}
            for i, v in enumerate([185.0, 165.0, 150.0, 130.0])
        ],
        "patients": [{"patient_id": str(i)} for i in range(5)],
    }
    sbp = events.matching(SBP).last_for_patient().value
    group = case(
        (sbp > 180, "1d"),
        (sbp > 160, "1c"),
        (sbp > 140, "1a"),
        (sbp.is_not_null(), "0.1"),
        otherwise="1e",
    )
    chained = when(sbp > 160).then(2).when(sbp > 140).then(1).otherwise(0)
    no_default = case((sbp > 180, "severe"))
    out = run(engine, tmp_path, tables, {"group": group, "points": chained, "sev": no_default})
    assert {p: r["group"] for p, r in out.items()} == {
        "0": "1d",
        "1": "1c",
        "2": "1a",
        "3": "0.1",
        "4": "1e",
    }
    assert [out[p]["points"] for p in "01234"] == [2, 2, 1, 0, 0]
    assert [out[p]["sev"] for p in "01234"] == ["severe", None, None, None, None]


def test_date_and_number_arithmetic(engine, tmp_path):
    tables = {
        "patients": [{"patient_id": "1", "date_of_birth": D(1990, 1, 31)}],
        "events": [
            {"patient_id": "1", "date": D(2024, 1, 31), "code": "271649006", "value": 150.0},
            {"patient_id": "1", "date": D(2024, 3, 1), "code": "271649006", "value": 130.0},
        ],
    }
    bp = events.matching(SBP)
    first, last = bp.first_for_patient(), bp.last_for_patient()
    out = run(
        engine,
        tmp_path,
        tables,
        {
            "gap_days": last.date - first.date,
            "days_to_index": last.date.days_until(index_date),
            "plus_month": first.date + months(1),  # 31 Jan + 1 month clamps to 29 Feb
            "minus_year": first.date - years(1),
            "plus_days": first.date + days(30),
            "drop": first.value - last.value,
            "ratio": last.value / first.value,
            "per_zero": first.value / (last.value - 130),  # division by zero -> missing
            "scaled": (first.value * 2 + 1).round(0),
            "dob_year": patients.date_of_birth.year,
            "highest": maximum_of(first.value, last.value, 140),
            "lowest": minimum_of(first.value, last.value),
            "negated": -last.value,
        },
    )
    assert out["1"] == dict(
        gap_days=30,
        days_to_index=395,
        plus_month=D(2024, 2, 29),
        minus_year=D(2023, 1, 31),
        plus_days=D(2024, 3, 1),
        drop=20.0,
        ratio=130.0 / 150.0,
        per_zero=None,
        scaled=301.0,
        dob_year=1990,
        highest=150.0,
        lowest=130.0,
        negated=-130.0,
    )


def test_code_categories_and_numeric_attributes(engine, tmp_path):
    pred = Codelist(
        name="pred",
        system="dmd",
        codes={"dmd": frozenset({"325426006", "325427002"})},
        categories={"form": {"325426006": "tablet", "325427002": "tablet"}},
        attributes={"strength_mg": {"325426006": 1.0, "325427002": 5.0}},
    )
    tables = {
        "medications": [
            {"patient_id": "1", "date": D(2025, 1, 1), "code": "325427002", "quantity": 40.0},
            {"patient_id": "1", "date": D(2025, 2, 1), "code": "325426006", "quantity": 28.0},
            {"patient_id": "1", "date": D(2023, 2, 1), "code": "325427002", "quantity": 100.0},
        ]
    }
    ocs = medications.matching(pred).in_last(months=12)
    out = run(
        engine,
        tmp_path,
        tables,
        {
            "mg_12m": ocs.sum_for_patient(ocs.quantity * ocs.code.to_number(pred, "strength_mg")),
            "form": ocs.last_for_patient().code.to_category(pred, "form"),
        },
    )
    assert out == {"1": {"mg_12m": 228.0, "form": "tablet"}}


def test_population_rule_keeps_only_matching_patients(engine, tmp_path):
    tables = {
        "patients": [
            {"patient_id": "1", "date_of_birth": D(1950, 1, 1)},
            {"patient_id": "2", "date_of_birth": D(2015, 1, 1)},
            {"patient_id": "3", "date_of_birth": D(1950, 1, 1), "date_of_death": D(2020, 1, 1)},
        ],
    }
    age = patients.age_on(index_date)
    out = run(
        engine,
        tmp_path,
        tables,
        {"age": age},
        population=patients.is_alive_on(index_date) & (age >= 18),
    )
    assert out == {"1": {"age": 75}}


def test_a_date_may_be_written_as_text(engine, tmp_path):
    """ "YYYY-MM-DD" where a date goes, as intervals and index dates are given: the same
    answer as the date itself."""
    tables = {
        "patients": [{"patient_id": "1", "date_of_birth": D(1990, 6, 15)}],
        "events": [
            {"patient_id": "1", "date": D(2024, 12, 31), "code": "271649006", "value": 150.0},
            {"patient_id": "1", "date": D(2025, 1, 1), "code": "271649006", "value": 130.0},
        ],
        "registrations": [
            {"patient_id": "1", "practice_id": "A1", "start_date": D(2025, 1, 1)},
        ],
    }
    bp = events.matching(SBP)
    out = run(
        engine,
        tmp_path,
        tables,
        {
            "from_2025": bp.on_or_after("2025-01-01").count_for_patient(),
            "in_2024": bp.between("2024-01-01", "2024-12-31").count_for_patient(),
            "first": bp.where(events.date == "2025-01-01").minimum_for_patient(),
            "age": patients.age_on("2025-06-14"),
            "alive": patients.is_alive_on("2025-06-14"),
            "registered": registrations.registered_on("2024-12-31"),
            "last_year": bp.in_last(months=12, of="2024-12-31").count_for_patient(),
            "next_week": bp.in_next(days=7, of="2024-12-31").count_for_patient(),
            "on_days": bp.where(
                events.date.is_in(["2025-01-01", "2025-02-01"])
            ).count_for_patient(),
        },
    )
    assert out["1"] == {
        "from_2025": 1,
        "in_2024": 1,
        "first": 130.0,
        "age": 34,
        "alive": True,
        "registered": False,
        "last_year": 1,
        "next_week": 1,
        "on_days": 1,
    }


def test_text_that_is_not_a_date_is_named():
    ds = Dataset()
    for text in ("2025-13-01", "31/03/2025", "2025-3-1", "yesterday"):
        with pytest.raises(QueryError, match=f"variable 'x': '{text}' is not a date"):
            ds.x = events.on_or_after(text).exists_for_patient()
    with pytest.raises(QueryError, match="'2025' is not a date"):
        ds.y = patients.age_on("2025")


def test_round_is_the_same_on_every_engine(engine, tmp_path):
    """Halves go away from zero, computed on the stored double, by the same steps on each
    engine (their own ROUND disagreed: round(1.005, 2) gave 1.0 on DuckDB and 1.01 on
    Spark; 1.005 is stored as 1.00499999999999989...)."""
    values = {"a": 1.005, "b": 0.285, "c": 2.5, "d": -2.5, "e": 0.125, "f": 1e300, "g": None}
    tables = {
        "events": [
            {"patient_id": p, "date": dt.date(2025, 1, 1), "code": "271649006", "value": v}
            for p, v in values.items()
        ]
    }
    value = events.sort_by("date").last_for_patient().value
    out = run(engine, tmp_path, tables, {"r2": value.round(2), "r0": value.round(0)})
    assert {p: (r["r2"], r["r0"]) for p, r in out.items()} == {
        "a": (1.0, 1.0),
        "b": (0.28, 0.0),
        "c": (2.5, 3.0),
        "d": (-2.5, -3.0),
        "e": (0.13, 0.0),
        "f": (1e300, 1e300),
        "g": (None, None),
    }
