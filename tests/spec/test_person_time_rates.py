"""Spec: rates per person-time — each patient's days at risk inside each interval
(``frame.days_in_interval_for_patient()``: registration, residence or stay cut to the
interval, overlaps counted once, cut at death) and events per 1,000 person-years or
person-days over them (``Measures.define_rate``), every interval in one pass, on every
engine, through the one disclosure rule."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pophealth.cli import app
from pophealth.query import (
    Dataset,
    Measures,
    QueryError,
    addresses,
    admissions,
    events,
    index_date,
    monthly,
    patients,
    registrations,
    run_dataset,
    run_measures,
)
from pophealth.query.measures import result_columns
from tests.spec.conftest import make_store

D = dt.date
JAN, FEB, MAR = D(2025, 1, 1), D(2025, 2, 1), D(2025, 3, 1)


def _reg(pid: str, start: dt.date, end: dt.date | None = None, practice: str = "A1") -> dict:
    return {"patient_id": pid, "practice_id": practice, "start_date": start, "end_date": end}


def _adm(pid: str, day: dt.date) -> dict:
    return {"patient_id": pid, "admission_date": day, "discharge_date": day}


def _tables() -> dict:
    """Six patients over January (31 days), February (28) and March (31) 2025:

    ========  =====================================================  ====  ====  ====
    patient   registration                                           Jan   Feb   Mar
    ========  =====================================================  ====  ====  ====
    full      since 2020, open                                        31    28    31
    joins     from 10 January, open                                   22    28    31
    leaves    since 2020, to 14 February                              31    14     0
    dies      since 2020, open; dies on 20 February                   31    20     0
    moves     A to 20 January, B from 15 January (overlap: once)      31    28    31
    gap       A to 5 January, B from 26 January; C 27-29 Jan inside   11    28    31
    ========  =====================================================  ====  ====  ====

    totals: 157, 146 and 124 person-days. Admissions: full on 3 and 20 January and 9
    March, joins 15 January, moves 2 February, dies 18 February, leaves 10 March (after
    leaving: no person-time in March, so not counted) — 3, 2 and 1 events."""
    old = D(2020, 1, 1)
    return {
        "patients": [
            {"patient_id": p, "date_of_death": D(2025, 2, 20) if p == "dies" else None}
            for p in ("full", "joins", "leaves", "dies", "moves", "gap")
        ],
        "registrations": [
            _reg("full", old),
            _reg("joins", D(2025, 1, 10)),
            _reg("leaves", old, D(2025, 2, 14)),
            _reg("dies", old),
            _reg("moves", old, D(2025, 1, 20)),
            _reg("moves", D(2025, 1, 15), practice="B2"),
            _reg("gap", old, D(2025, 1, 5)),
            _reg("gap", D(2025, 1, 26), practice="B2"),
            _reg("gap", D(2025, 1, 27), D(2025, 1, 29), practice="C3"),  # inside B's
        ],
        "admissions": [
            _adm("full", D(2025, 1, 3)),
            _adm("full", D(2025, 1, 20)),
            _adm("full", D(2025, 3, 9)),
            _adm("joins", D(2025, 1, 15)),
            _adm("moves", D(2025, 2, 2)),
            _adm("dies", D(2025, 2, 18)),
            _adm("leaves", D(2025, 3, 10)),
        ],
    }


def _person_time():
    return registrations.days_in_interval_for_patient(until=patients.date_of_death)


def _admissions():
    return admissions.in_interval().count_for_patient()


DAYS = {  # (patient, interval start) -> days registered and alive inside the interval
    **{("full", m): d for m, d in ((JAN, 31), (FEB, 28), (MAR, 31))},
    **{("joins", m): d for m, d in ((JAN, 22), (FEB, 28), (MAR, 31))},
    **{("leaves", m): d for m, d in ((JAN, 31), (FEB, 14))},
    **{("dies", m): d for m, d in ((JAN, 31), (FEB, 20))},
    **{("moves", m): d for m, d in ((JAN, 31), (FEB, 28), (MAR, 31))},
    **{("gap", m): d for m, d in ((JAN, 11), (FEB, 28), (MAR, 31))},
}


def test_each_patients_days_inside_each_interval(engine, tmp_path):
    store = make_store(tmp_path, _tables())
    m = Measures(intervals=monthly(JAN, 3))
    m.define_rate(
        "admissions",
        events=_admissions(),
        person_time=_person_time(),
        group_by={"patient": patients.patient_id},
    )
    out = run_measures(store, m, engine=engine, disclosure=False)
    got = {(r.patient, r.interval_start): r.denominator for r in out.itertuples()}
    # a patient with no day inside an interval (left, died) is not in its rate: no row
    assert got == DAYS
    events = {(r.patient, r.interval_start): r.numerator for r in out.itertuples()}
    assert events[("full", JAN)] == 2 and events[("full", MAR)] == 1
    assert ("leaves", MAR) not in events  # admitted after leaving: not at risk
    assert out.attrs["evaluation"] == {"admissions": "paired"}


def test_without_until_a_death_does_not_end_the_person_time(tmp_path):
    store = make_store(tmp_path, _tables())
    m = Measures(intervals=monthly(JAN, 3))
    m.define_rate(
        "admissions",
        events=_admissions(),
        person_time=registrations.days_in_interval_for_patient(),
        group_by={"patient": patients.patient_id},
    )
    out = run_measures(store, m, disclosure=False)
    got = {(r.patient, r.interval_start): r.denominator for r in out.itertuples()}
    assert got == {**DAYS, ("dies", FEB): 28, ("dies", MAR): 31}


def test_per_row_days_and_their_sum_which_counts_an_overlap_twice(engine, tmp_path):
    store = make_store(tmp_path, _tables())
    m = Measures(intervals=monthly(JAN, 3))
    m.define_measure(
        "summed",
        numerator=registrations.sum_for_patient(registrations.days_in_interval()),
        denominator=registrations.exists_for_patient(),
        group_by={"patient": patients.patient_id},
    )
    longest = admissions.maximum_for_patient(admissions.days_in_interval())
    m.define_measure(
        "longest_stay",
        numerator=longest.if_null_then(0),
        denominator=registrations.exists_for_patient(),
        group_by={"patient": patients.patient_id},
    )
    out = run_measures(store, m, engine=engine, disclosure=False)
    summed = out[out.measure == "summed"]
    got = {(r.patient, r.interval_start): r.numerator for r in summed.itertuples()}
    # each row's days, added up: moves' two registrations both hold 15-20 January (20 + 17
    # days), gap's C lies inside B (5 + 6 + 3); no until, so dies keeps February and March
    assert got == {
        **DAYS,
        ("moves", JAN): 37,
        ("gap", JAN): 14,
        ("leaves", MAR): 0,
        ("dies", FEB): 28,
        ("dies", MAR): 31,
    }
    stays = out[out.measure == "longest_stay"]
    stays = {(r.patient, r.interval_start): r.numerator for r in stays.itertuples()}
    assert stays[("full", JAN)] == 1 and stays[("full", FEB)] == 0  # same-day stays


def test_rate_per_1000_person_years_and_person_days(engine, tmp_path):
    store = make_store(tmp_path, _tables())
    m = Measures(intervals=monthly(JAN, 3))
    m.define_rate("per_years", events=_admissions(), person_time=_person_time())
    m.define_rate(
        "per_days", events=_admissions(), person_time=_person_time(), per=1000, unit="days"
    )
    out = run_measures(store, m, engine=engine, disclosure=False)
    assert list(out.columns) == result_columns()
    years = out[out.measure == "per_years"]
    assert list(years.interval_start) == [JAN, FEB, MAR]
    assert list(years.numerator) == [3, 2, 1]
    assert list(years.denominator) == [157, 146, 124]  # person-days, whatever the unit
    # value = events / (days / 365.25) × 1000
    assert list(years.value) == pytest.approx(
        [3 / (157 / 365.25) * 1000, 2 / (146 / 365.25) * 1000, 1 / (124 / 365.25) * 1000]
    )
    days = out[out.measure == "per_days"]
    assert list(days.value) == pytest.approx([3 / 157 * 1000, 2 / 146 * 1000, 1 / 124 * 1000])
    assert set(years.statistic) == {"rate per 1,000 person-years"}
    assert set(days.statistic) == {"rate per 1,000 person-days"}
    # 3 events: exact Poisson limits, 0.6186 to 8.7673 events (chi-squared with 6 and 8
    # degrees of freedom, halved), over 157 person-days
    jan = days.iloc[0]
    assert jan.lower95_0cl == pytest.approx(0.618672 / 157 * 1000, rel=1e-5)
    assert jan.upper95_0cl == pytest.approx(8.767273 / 157 * 1000, rel=1e-5)
    assert set(years.method) == {
        "Exact; the denominator is person-time in days; a year is 365.25 days"
    }


def test_limits_match_the_published_poisson_examples(engine, tmp_path):
    """PHEindicatormethods' tests of phe_rate (OHID/UKHSA; the Fingertips rule, ../shared/
    PROGRAMMES.md 12.2): 20 events in 100 person-years, per 100 → 12.2114-30.8899 (Byar's,
    from 10 events); 5 per 100 → 1.6235-11.6683 (exact, below 10). Here 25 patients each
    registered for the 1,461 days of 2021-2024 give 36,525 person-days: 100 person-years
    exactly (of 365.25 days)."""
    pids = [f"p{i:02d}" for i in range(25)]
    adm = [_adm(p, D(2022, 6, 1)) for p in pids[:20]]  # 20 events, one each
    adm += [_adm(p, D(2023, 6, 1)) for p in pids[:5]]  # and 5 more in 2023
    store = make_store(
        tmp_path,
        {"registrations": [_reg(p, D(2020, 1, 1)) for p in pids], "admissions": adm},
    )
    four_years = [(D(2021, 1, 1), D(2024, 12, 31))]
    m = Measures(intervals=four_years)
    in_2022 = admissions.in_interval().where(admissions.admission_date.year == 2022)
    m.define_rate("byar", events=in_2022.count_for_patient(), person_time=_person_time(), per=100)
    in_2023 = admissions.in_interval().where(admissions.admission_date.year == 2023)
    m.define_rate("exact", events=in_2023.count_for_patient(), person_time=_person_time(), per=100)
    out = run_measures(store, m, engine=engine, disclosure=False).set_index("measure")
    assert out.loc["byar", "denominator"] == 36525
    assert out.loc["byar", "value"] == pytest.approx(20)
    assert out.loc["byar", ["lower95_0cl", "upper95_0cl"]].tolist() == pytest.approx(
        [12.2114, 30.8899], abs=5e-5
    )
    assert out.loc["byar", "method"].startswith("Byars")
    assert out.loc["exact", "value"] == pytest.approx(5)
    assert out.loc["exact", ["lower95_0cl", "upper95_0cl"]].tolist() == pytest.approx(
        [1.6235, 11.6683], abs=5e-5
    )
    assert out.loc["exact", "method"].startswith("Exact")
    assert set(out["statistic"]) == {"rate per 100 person-years"}
    # with disclosure control: 20 events of 20 patients and 36,525 person-days of 25 are
    # released as they are (already multiples of 5), so the value and limits are the same
    released = run_measures(store, m, engine=engine).set_index("measure")
    assert released.loc["byar", ["numerator", "denominator"]].tolist() == [20, 36525]
    assert released.loc["byar", "upper95_0cl"] == pytest.approx(30.8899, abs=5e-5)
    assert "from released figures" in released.loc["byar", "method"]
    # but the 5 events of 5 patients are withheld, and the value and limits with them
    assert np.isnan(released.loc["exact", "numerator"])
    assert released.loc["exact", "denominator"] == 36525
    assert released.loc["exact", ["value", "lower95_0cl", "upper99_8cl"]].isna().all()
    assert "numerator primary" in released.loc["exact", "disclosure_note"]


def test_person_time_of_few_patients_is_withheld_and_otherwise_rounded(tmp_path):
    """Ten patients registered all January (310 person-days) and three in a care home
    (93): the events (1-7 each) are withheld, and the care home's person-time too, being
    of 3 patients; a group's person-days are rounded to 5 like a count."""
    pids = [f"p{i}" for i in range(10)]
    regs = [_reg(p, D(2020, 1, 1)) for p in pids]
    regs[0]["end_date"] = D(2025, 1, 29)  # 29 days: 308 in all, released as 310
    homes = [
        {"patient_id": p, "start_date": D(2024, 1, 1), "care_home": p in ("p1", "p2", "p3")}
        for p in pids
    ]
    adm = [_adm("p1", D(2025, 1, 5)), _adm("p1", D(2025, 1, 7)), _adm("p5", D(2025, 1, 9))]
    store = make_store(tmp_path, {"registrations": regs, "addresses": homes, "admissions": adm})
    m = Measures(intervals=monthly(JAN, 1))
    m.define_rate("registered", events=_admissions(), person_time=_person_time())
    m.define_rate(
        "care_home",
        events=_admissions(),
        person_time=addresses.where(addresses.care_home).days_in_interval_for_patient(),
    )
    exact = run_measures(store, m, disclosure=False).set_index("measure")
    assert exact.loc["registered", ["numerator", "denominator"]].tolist() == [3, 308]
    assert exact.loc["care_home", ["numerator", "denominator"]].tolist() == [2, 93]
    out = run_measures(store, m).set_index("measure")
    assert np.isnan(out.loc["registered", "numerator"])  # 3 events
    assert out.loc["registered", "denominator"] == 310
    assert out.loc["registered", ["value", "lower95_0cl", "upper95_0cl"]].isna().all()
    assert out.loc["care_home", ["numerator", "denominator"]].isna().all()
    assert "denominator primary (few patients)" in out.loc["care_home", "disclosure_note"]


def _monthly_measures(intervals) -> Measures:
    m = Measures(intervals=intervals)
    m.define_rate(
        "admissions",
        events=_admissions(),
        person_time=_person_time(),
        group_by={"practice": registrations.practice_on(index_date).practice_id},
    )
    m.define_measure(
        "admitted",
        numerator=admissions.in_interval().exists_for_patient(),
        denominator=registrations.registered_on(index_date),
    )
    return m


def test_several_intervals_in_one_run_equal_each_alone_beside_an_ordinary_measure(engine, tmp_path):
    store = make_store(tmp_path, _tables())
    months = monthly(JAN, 3)
    together = run_measures(store, _monthly_measures(months), engine=engine, disclosure=False)
    assert together.attrs["evaluation"] == {"admissions": "paired", "admitted": "masks"}
    alone = pd.concat(
        [
            run_measures(store, _monthly_measures([iv]), engine=engine, disclosure=False)
            for iv in months
        ],
        ignore_index=True,
    )
    key = ["measure", "interval_start", "practice"]
    a = together.sort_values(key, na_position="first").reset_index(drop=True)
    b = alone.sort_values(key, na_position="first").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    assert list(a.columns) == result_columns(["practice"])
    # the rate by the practice at each interval's end: in January, moves and gap are with
    # B2 (31 + 11 days, no admission); the others with A1 (31 + 22 + 31 + 31, 3 admissions)
    jan = a[(a.measure == "admissions") & (a.interval_start == JAN)]
    assert {r.practice: (r.numerator, r.denominator) for r in jan.itertuples()} == {
        "A1": (3, 115),
        "B2": (0, 42),
    }
    # the ordinary measure beside it: registered at each month's end (leaves has left by
    # February's; dies is still registered: a registration is not ended by a death)
    admitted = a[a.measure == "admitted"]
    assert list(admitted.denominator) == [6, 5, 5]
    assert list(admitted.numerator) == [2, 2, 1]


def test_in_a_dataset_the_interval_is_the_index_date_alone(engine, tmp_path):
    store = make_store(tmp_path, _tables())
    ds = Dataset()
    ds.define_population(registrations.exists_for_patient())
    ds.days = _person_time()
    on = {
        day: run_dataset(store, ds, index_date=day, engine=engine).set_index("patient_id")
        for day in (D(2025, 1, 7), D(2025, 2, 21))
    }
    # 7 January: joins not yet registered, gap between registrations
    assert on[D(2025, 1, 7)]["days"].to_dict() == {
        "full": 1, "joins": 0, "leaves": 1, "dies": 1, "moves": 1, "gap": 0
    }  # fmt: skip
    # 21 February: leaves has left, dies has died
    assert on[D(2025, 2, 21)]["days"].to_dict() == {
        "full": 1, "joins": 1, "leaves": 0, "dies": 0, "moves": 1, "gap": 1
    }  # fmt: skip


DEFINITION = """
from pophealth.query import Measures, admissions, monthly, patients, registrations

measures = Measures(intervals=monthly("2025-01-01", 3))
measures.define_rate(
    "admissions",
    events=admissions.in_interval().count_for_patient(),
    person_time=registrations.days_in_interval_for_patient(until=patients.date_of_death),
    per=1000,
    unit="years",
)
"""


def test_pophealth_measures_runs_a_definition_file_with_a_rate(engine, tmp_path):
    store = make_store(tmp_path, _tables())
    path = tmp_path / "rates.py"
    path.write_text(DEFINITION)
    out = tmp_path / "out.csv"
    args = ["measures", str(path), "--store", str(store.path), "--output", str(out)]
    result = CliRunner().invoke(app, [*args, "--engine", engine, "--no-disclosure"])
    assert result.exit_code == 0, result.output
    got = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(got.columns) == result_columns()
    rows = [(r.interval_start, r.numerator, r.denominator, r.statistic) for r in got.itertuples()]
    assert rows == [
        ("2025-01-01", "3", "157", "rate per 1,000 person-years"),
        ("2025-02-01", "2", "146", "rate per 1,000 person-years"),
        ("2025-03-01", "1", "124", "rate per 1,000 person-years"),
    ]
    assert float(got["value"][0]) == pytest.approx(3 / (157 / 365.25) * 1000)
    # by default through disclosure control: every count here is of 1-7 patients
    result = CliRunner().invoke(app, [*args, "--engine", engine])
    assert result.exit_code == 0, result.output
    got = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert set(got["value"]) == {""}
    assert all("numerator primary" in n for n in got["disclosure_note"])


def _refusal(**kw) -> str:
    m = Measures(intervals=monthly(JAN, 2))
    kw.setdefault("events", _admissions())
    kw.setdefault("person_time", _person_time())
    with pytest.raises(QueryError) as exc:
        m.define_rate("adm", **kw)
    return str(exc.value)


def test_refusals_name_the_measure_and_say_what_was_expected():
    assert _refusal(unit="months") == (
        'measure \'adm\': unit must be "days" (per person-days) or "years" (per '
        "person-years, a year being 365.25 days), not 'months'"
    )
    for per in (0, -5, "1000", True):
        assert _refusal(per=per).startswith(
            "measure 'adm': per must be a positive number (1000 for a rate per 1,000 "
            "person-years), not "
        )
    assert _refusal(events=admissions.in_interval().exists_for_patient()) == (
        "measure 'adm': events must be a whole number per patient (e.g. admissions."
        "in_interval().count_for_patient()), not True/False: True/False counts patients, "
        "not events"
    )
    assert _refusal(events=patients.date_of_birth).endswith("count_for_patient()), not a date")
    assert _refusal(person_time=registrations.exists_for_patient()) == (
        "measure 'adm': person_time must be a whole number of days per patient (e.g. "
        "registrations.days_in_interval_for_patient()), not True/False"
    )
    assert _refusal(among=patients.sex) == (
        "measure 'adm': among must be True/False (the patients whose events and person-time "
        "the rate is of), not a string"
    )
    m = Measures()
    with pytest.raises(QueryError, match=r"needs intervals \(e.g. monthly"):
        m.define_rate("adm", events=_admissions(), person_time=_person_time())
    m = Measures(intervals=monthly(JAN, 1))
    m.define_rate("adm", events=_admissions(), person_time=_person_time())
    with pytest.raises(QueryError, match="measure 'adm' is defined twice"):
        m.define_rate("adm", events=_admissions(), person_time=_person_time())


def test_per_row_days_need_a_table_with_periods():
    ds = Dataset()
    with pytest.raises(QueryError) as exc:
        ds.days = events.sum_for_patient(events.days_in_interval())
    assert str(exc.value).endswith(
        "events.days_in_interval(): rows of events have no period (a start and an end date) "
        "to count days of; tables with one: registrations, addresses, admissions, "
        "emergency_attendances"
    )


def _days_refusal(value) -> str:
    with pytest.raises(QueryError) as exc:
        Measures(intervals=monthly(JAN, 1)).define_rate(
            "adm", events=_admissions(), person_time=value
        )
    return str(exc.value)


def test_person_time_refusals():
    assert _days_refusal(events.days_in_interval_for_patient()) == (
        "measure 'adm.person_time': events.days_in_interval_for_patient(): rows of events have no "
        "period (a start and an end date) to count days of; tables with one: "
        "registrations, addresses, admissions, emergency_attendances"
    )
    assert _days_refusal(registrations.in_interval().days_in_interval_for_patient()).endswith(
        ".days_in_interval_for_patient(): the "
        "rows whose days are counted are filtered by the interval (in_interval(), "
        "index_date...); days_in_interval_for_patient() already keeps only the days inside "
        "it: filter the rows without it"
    )
    assert _days_refusal(registrations.days_in_interval_for_patient(until=patients.sex)) == (
        "measure 'adm.person_time': registrations.days_in_interval_for_patient("
        "until=patients.sex): until must be a date per patient (e.g. "
        "patients.date_of_death), not a string"
    )
    per_row = registrations.days_in_interval_for_patient(until=registrations.start_date)
    assert _days_refusal(per_row) == (
        "measure 'adm.person_time': registrations.days_in_interval_for_patient(until=registrations."
        "start_date): until must be one date per patient, not one per row of registrations "
        "(e.g. patients.date_of_death)"
    )
    moving = registrations.days_in_interval_for_patient(until=index_date)
    assert _days_refusal(moving) == (
        "measure 'adm.person_time': registrations.days_in_interval_for_patient("
        "until=index_date): until cannot depend on the interval (index_date, in_interval())"
    )
    assert "is not a date (expected YYYY-MM-DD)" in _days_refusal(
        registrations.days_in_interval_for_patient(until="31/01/2025")
    )


def test_person_days_equal_a_day_by_day_count_on_the_synthetic_store(tmp_path):
    """On 400 synthetic patients (registrations that start and end inside the months, patients
    with two; deaths), each patient's person-days in each month equal a plain count of the
    distinct days on which some registration of theirs holds and they are alive."""
    from pophealth.query import connect
    from pophealth.synth import write_synthetic_store

    store = write_synthetic_store(tmp_path / "store", patients=400, seed=7)
    months = monthly("2024-01-01", 14)  # a leap February and a common one
    m = Measures(intervals=months)
    m.define_rate(
        "registered",
        events=admissions.in_interval().count_for_patient(),
        person_time=_person_time(),
        group_by={"patient": patients.patient_id},
    )
    out = run_measures(store, m, disclosure=False)
    got = {(r.patient, r.interval_start): r.denominator for r in out.itertuples()}
    con = connect(store, reuse=False)
    regs = con.table("registrations").to_pandas()
    deaths = con.table("patients").to_pandas().set_index("patient_id")["date_of_death"]
    expected: dict = {}
    for start, end in months:
        for pid, rows in regs.groupby("patient_id"):
            last = end
            died = deaths.get(pid)
            if died is not None and not pd.isna(died):
                last = min(last, pd.Timestamp(died).date())
            days: set = set()
            for r in rows.itertuples():
                a = max(pd.Timestamp(r.start_date).date(), start)
                b = last if pd.isna(r.end_date) else min(pd.Timestamp(r.end_date).date(), last)
                days.update(a + dt.timedelta(i) for i in range((b - a).days + 1))
            if days:
                expected[(pid, start)] = len(days)
    assert got == expected
    # the check covers registrations starting and ending inside the months, patients with
    # two registrations, and deaths inside the months
    inside = (regs.start_date >= "2024-01-01") & (regs.start_date <= "2025-02-28")
    assert inside.any()
    assert ((regs.end_date >= "2024-01-01") & (regs.end_date <= "2025-02-28")).any()
    assert regs.patient_id.duplicated().any()
    assert ((deaths >= "2024-01-01") & (deaths <= "2025-02-28")).any()
