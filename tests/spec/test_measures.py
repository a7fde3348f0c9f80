"""Spec: measures — numerator/denominator/breakdown over intervals in one pass, Wilson CI,
disclosure control on by default."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from pophealth.codelists import Codelist
from pophealth.query import (
    Measures,
    QueryError,
    addresses,
    emergency_attendances,
    events,
    index_date,
    monthly,
    patients,
    quarterly,
    registrations,
    run_measures,
    weekly,
    yearly,
)
from tests.spec.conftest import make_store

D = dt.date
SBP = Codelist.of("snomedct", ["271649006"], name="sbp")


def _tables():
    # 3 patients registered throughout; patient 3 registers in February only.
    regs = [{"patient_id": p, "practice_id": "A1", "start_date": D(2020, 1, 1)} for p in "12"]
    regs.append({"patient_id": "3", "practice_id": "A1", "start_date": D(2025, 2, 10)})
    bp = [
        ("1", D(2025, 1, 15)),  # January
        ("1", D(2025, 2, 3)),  # February
        ("2", D(2024, 12, 31)),  # December: in the 12-month look-back, not in an interval
        ("3", D(2025, 2, 20)),
    ]
    return {
        "patients": [
            {"patient_id": "1", "sex": "female"},
            {"patient_id": "2", "sex": "male"},
            {"patient_id": "3", "sex": "female"},
        ],
        "registrations": regs,
        "events": [
            {"patient_id": p, "date": d, "code": "271649006", "value": 120.0} for p, d in bp
        ],
        "addresses": [{"patient_id": "1", "start_date": D(2020, 1, 1), "lsoa_code": "X01000001"}],
        "areas": [{"lsoa_code": "X01000001", "imd_quintile": 2, "core20": False}],
    }


def test_measures_every_interval_exact_counts(engine, tmp_path):
    store = make_store(tmp_path, _tables())
    bp = events.matching(SBP)
    m = Measures(intervals=monthly("2025-01-01", 2))
    m.define_defaults(denominator=registrations.registered_on(index_date))
    m.define_measure("bp_in_month", numerator=bp.in_interval().exists_for_patient())
    m.define_measure(
        "bp_in_12m",
        numerator=bp.in_last(months=12).exists_for_patient(),
        group_by={"sex": patients.sex},
    )
    m.define_measure(
        "readings",
        numerator=bp.in_interval().count_for_patient(),
        denominator=registrations.registered_on(index_date),
        group_by={"imd": addresses.area_on(index_date).group("imd_quintile")},
    )
    out = run_measures(store, m, engine=engine, disclosure=False)
    got = {
        (r.measure, r.interval_start.month, r.sex, r.imd): (r.numerator, r.denominator)
        for r in out.itertuples()
    }
    assert got == {
        ("bp_in_month", 1, None, None): (1, 2),
        ("bp_in_month", 2, None, None): (2, 3),
        ("bp_in_12m", 1, "female", None): (1, 1),
        ("bp_in_12m", 1, "male", None): (1, 1),
        ("bp_in_12m", 2, "female", None): (2, 2),
        ("bp_in_12m", 2, "male", None): (1, 1),
        ("readings", 1, None, "2"): (1, 1),
        ("readings", 1, None, "unknown"): (0, 1),
        ("readings", 2, None, "2"): (1, 1),
        ("readings", 2, None, "unknown"): (1, 2),
    }
    row = out[(out.measure == "bp_in_month") & (out.interval_start == D(2025, 2, 1))].iloc[0]
    assert row.interval_end == D(2025, 2, 28)
    assert row.value == pytest.approx(200 / 3)
    # Wilson 95% for 2/3 (Newcombe & Altman): 0.2077 .. 0.9385
    assert row.lower95_0cl == pytest.approx(20.77, abs=0.01)
    assert row.upper95_0cl == pytest.approx(93.85, abs=0.01)
    # events per patient: a rate with Poisson limits. 1 reading among 2 patients; exact 95%
    # limits for a count of 1 are 0.0253 and 5.5716 (Garwood 1936: chi-squared on 2 and 4
    # degrees of freedom, halved), so per 100 patients 1.27 .. 278.58
    row = out[(out.measure == "readings") & (out.imd == "unknown")].iloc[-1]
    assert (row.numerator, row.denominator, row.value) == (1, 2, 50)
    assert row.lower95_0cl == pytest.approx(1.266, abs=0.001)
    assert row.upper95_0cl == pytest.approx(278.58, abs=0.01)
    assert (row.statistic, row.method) == ("rate per 100 patients", "Exact")


def test_disclosure_control_is_on_by_default(engine, tmp_path):
    store = make_store(tmp_path, _tables())
    m = Measures(intervals=monthly("2025-01-01", 1))
    m.define_measure(
        "bp",
        numerator=events.matching(SBP).in_last(months=12).exists_for_patient(),
        denominator=registrations.registered_on(index_date),
    )
    safe = run_measures(store, m, engine=engine)
    row = safe.iloc[0]
    # 2 of 2: both counts are 1-7, so withheld, and so are the value and limits
    assert pd.isna(row.numerator) and pd.isna(row.denominator)
    assert pd.isna(row.value) and pd.isna(row.lower95_0cl)
    assert "primary" in row.disclosure_note


def test_measure_definition_errors_name_the_measure():
    m = Measures(intervals=monthly("2025-01-01", 1))
    with pytest.raises(QueryError, match=r"measure 'x.numerator'.*cannot compare a date"):
        m.define_measure("x", numerator=patients.date_of_birth > 1, denominator=patients.sex == "f")
    with pytest.raises(QueryError, match="measure 'y': the numerator must be True/False"):
        m.define_measure("y", numerator=patients.sex, denominator=patients.sex == "female")
    with pytest.raises(QueryError, match="needs intervals"):
        Measures().define_measure(
            "z", numerator=patients.sex == "a", denominator=patients.sex == "b"
        )


def test_monthly_intervals():
    assert monthly("2024-11-01", 3) == [
        (D(2024, 11, 1), D(2024, 11, 30)),
        (D(2024, 12, 1), D(2024, 12, 31)),
        (D(2025, 1, 1), D(2025, 1, 31)),
    ]
    # a month starts on the 1st, even when there is only one of them
    for count in (1, 2):
        with pytest.raises(ValueError, match="must start on the 1st of a month"):
            monthly("2024-04-15", count)
    with pytest.raises(ValueError, match="must start on the 1st"):
        quarterly("2024-04-15", 1)
    assert yearly("2024-04-06", 2)[1] == (D(2025, 4, 6), D(2026, 4, 5))  # tax years
    with pytest.raises(ValueError, match="cannot start on 2024-02-29"):
        yearly("2024-02-29", 2)
    # weeks of 7 days from any day, across a year end and 29 February
    assert weekly("2024-12-30", 2) == [
        (D(2024, 12, 30), D(2025, 1, 5)),
        (D(2025, 1, 6), D(2025, 1, 12)),
    ]
    assert weekly("2024-02-26", 1) == [(D(2024, 2, 26), D(2024, 3, 3))]
    with pytest.raises(ValueError, match="at least one"):
        weekly("2024-02-26", 0)


def test_on_or_before_index_date_rolls_with_each_interval(engine, tmp_path):
    # patient 1's first reading is in February: not counted in January's interval
    store = make_store(tmp_path, _tables())
    m = Measures(intervals=monthly("2025-01-01", 2))
    bp = events.matching(SBP)
    m.define_measure(
        "ever_bp",
        numerator=bp.where(events.date >= D(2025, 1, 31))
        .on_or_before(index_date)
        .exists_for_patient(),
        denominator=registrations.registered_on(index_date),
    )
    m.define_measure(
        "before_end",
        numerator=bp.before(index_date).exists_for_patient(),
        denominator=registrations.registered_on(index_date),
    )
    out = run_measures(store, m, engine=engine, disclosure=False)
    got = {
        (r.measure, r.interval_start.month): (r.numerator, r.denominator) for r in out.itertuples()
    }
    assert got == {
        ("ever_bp", 1): (0, 2),
        ("ever_bp", 2): (2, 3),
        ("before_end", 1): (2, 2),
        ("before_end", 2): (3, 3),
    }


def test_a_single_interval_gives_the_same_as_that_interval_among_many(engine, tmp_path):
    store = make_store(tmp_path, _tables())
    bp = events.matching(SBP)

    def measures(intervals):
        m = Measures(intervals=intervals)
        m.define_measure(
            "bp_in_interval",
            numerator=bp.in_interval().exists_for_patient(),
            denominator=registrations.registered_on(index_date),
            group_by={"sex": patients.sex},
        )
        return m

    one = run_measures(store, measures(monthly("2025-02-01", 1)), engine=engine, disclosure=False)
    many = run_measures(store, measures(monthly("2025-01-01", 2)), engine=engine, disclosure=False)
    feb = many[many.interval_start == D(2025, 2, 1)].reset_index(drop=True)
    cols = ["interval_start", "interval_end", "sex", "numerator", "denominator"]
    assert one[cols].equals(feb[cols])
    assert one["numerator"].tolist() == [2, 0]  # female: patients 1 and 3; male: 2 (Dec only)


def _readings_world(tmp_path, readings_per_patient: dict[str, int]):
    """20 patients registered throughout; ``readings_per_patient`` SBP readings in January
    2025 for some of them."""
    ids = [str(p) for p in range(1, 21)]
    return make_store(
        tmp_path,
        {
            "patients": [{"patient_id": p, "sex": "female"} for p in ids],
            "registrations": [
                {"patient_id": p, "practice_id": "A1", "start_date": D(2020, 1, 1)} for p in ids
            ],
            "events": [
                {"patient_id": p, "date": D(2025, 1, 1 + k), "code": "271649006", "value": 120.0}
                for p, n in readings_per_patient.items()
                for k in range(n)
            ],
        },
    )


@pytest.mark.parametrize("months", [1, 2])  # one interval; two (at change points)
def test_a_count_of_rows_from_few_patients_is_withheld(engine, tmp_path, months):
    """Twelve readings released as "10" would tell that someone among 20 patients had
    readings, though all twelve are one patient's: a count of rows is withheld when the
    patients behind it number 1-7, as a count of 1-7 patients is (OpenSAFELY's output
    checking: counts of events need more than 7 patients behind them)."""
    m = Measures(intervals=monthly("2025-01-01", months))
    m.define_measure(
        "readings",
        numerator=events.matching(SBP).in_interval().count_for_patient(),
        denominator=registrations.registered_on(index_date),
    )
    one_patient = _readings_world(tmp_path / "a", {"1": 12})
    exact = run_measures(one_patient, m, engine=engine, disclosure=False)
    assert exact.iloc[0][["numerator", "denominator"]].tolist() == [12, 20]
    assert "numerator_patients" not in exact.columns
    row = run_measures(one_patient, m, engine=engine).iloc[0]
    assert pd.isna(row.numerator) and pd.isna(row.value) and pd.isna(row.lower95_0cl)
    assert row.denominator == 20
    assert row.disclosure_note == "numerator primary (few patients)"
    # the same twelve readings from eight patients are released, rounded
    eight = _readings_world(tmp_path / "b", {"1": 5, **{str(p): 1 for p in range(2, 9)}})
    row = run_measures(eight, m, engine=engine).iloc[0]
    assert (row.numerator, row.denominator, row.value) == (10, 20, 50)
    assert row.disclosure_note is None
    assert "numerator_patients" not in row.index


def test_a_proportion_of_rows_from_few_patients_is_withheld(engine, tmp_path):
    """Of 20 attendances, 10 given analgesia in time: 10 and 20 are above 7, but all 20 are
    patient 1's and 2's, so both counts are withheld."""
    ea = emergency_attendances
    wait = ea.minutes_between("arrival_datetime", "first_analgesia_datetime")
    m = Measures(intervals=monthly("2025-01-01", 1))
    attended = ea.in_interval()
    m.define_measure(
        "in_time",
        numerator=attended.where((wait >= 0) & (wait <= 30)).count_for_patient(),
        denominator=attended.count_for_patient(),
    )

    def attendance(pid, day, minutes):
        arrival = dt.datetime(2025, 1, day, 10, 0)
        return {
            "patient_id": pid,
            "arrival_datetime": arrival,
            "first_analgesia_datetime": arrival + dt.timedelta(minutes=minutes),
            "diagnosis_system": "snomedct",
            "diagnosis": "1",
        }

    def world(path, patients):
        rows = [attendance(p, 1 + k, 10 if k % 2 else 50) for k, p in enumerate(patients)]
        return make_store(path, {"emergency_attendances": rows})

    few = world(tmp_path / "a", ["1", "2"] * 10)
    assert run_measures(few, m, engine=engine, disclosure=False).iloc[0][
        ["numerator", "denominator"]
    ].tolist() == [10, 20]
    row = run_measures(few, m, engine=engine).iloc[0]
    assert pd.isna(row.numerator) and pd.isna(row.denominator) and pd.isna(row.value)
    assert row.disclosure_note == (
        "numerator primary (few patients); denominator primary (few patients)"
    )
    # twenty patients with one attendance each: released as they are
    many = world(tmp_path / "b", [str(p) for p in range(1, 21)])
    row = run_measures(many, m, engine=engine).iloc[0]
    assert (row.numerator, row.denominator, row.value) == (10, 20, 50)


@pytest.mark.parametrize("n_intervals", [1, 4])
def test_a_measure_with_no_rows_keeps_its_own_breakdown_beside_one_with_rows(
    engine, tmp_path, n_intervals
):
    """Two measures, the second broken down by one more column than the first and counting
    nobody: its breakdown column was lost with its empty counts (only frames with rows were
    put together), and the run failed with pandas' "['sex'] not in index"."""
    store = make_store(
        tmp_path,
        {
            "patients": [
                {"patient_id": "1", "date_of_birth": D(1950, 1, 1), "sex": "female"},
                {"patient_id": "2", "date_of_birth": D(1980, 1, 1), "sex": "male"},
            ],
            "registrations": [],
        },
    )
    band = patients.age_band_on(index_date)
    registered = registrations.registered_on(index_date)
    m = Measures(intervals=quarterly("2024-01-01", n_intervals))
    alive = patients.is_alive_on(index_date)
    m.define_measure("alive", numerator=alive, denominator=alive, group_by={"band": band})
    m.define_measure(
        "registered",
        numerator=registered,
        denominator=registered,
        group_by={"sex": patients.sex, "band": band},
    )
    out = run_measures(store, m, engine=engine, disclosure=False)
    assert list(out.columns[3:5]) == ["band", "sex"]
    assert set(out.measure) == {"alive"}  # nobody is registered: no row for that measure
    alive_rows = out[out.measure == "alive"]
    assert len(alive_rows) == 2 * n_intervals and alive_rows.sex.isna().all()
    assert alive_rows.denominator.sum() == 2 * n_intervals
