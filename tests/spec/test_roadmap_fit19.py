"""Spec: next year's programmes written with the row datasets, row centiles and person-time
rates — PreCiSSIon per caesarean (PROGRAMMES.md section 4), the sickle-cell door-to-analgesia
standard per ED attendance (section 9), emergency admissions per 1,000 care-home resident-days
(section 5) and FREED's weeks from referral to assessment (section 8) — each per row and as a
measure, on DuckDB and Spark, two of them as definition files run by the CLI.

Small tables in the test, the rule, the expected rows and figures worked out by hand beside
them. The codes are illustrative (any code with a valid check digit), except the curated
caesarean and sickle-cell lists.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from pophealth.cli import app
from pophealth.codelists import Codelist
from pophealth.query import (
    Measures,
    RowDataset,
    addresses,
    admissions,
    case,
    codelist,
    days,
    events,
    minutes_between,
    monthly,
    operations,
    patients,
    quarterly,
    run_dataset,
    run_measures,
    weeks,
)
from pophealth.query import emergency_attendances as ea
from pophealth.query import questionnaire_responses as qr
from tests.spec.conftest import _clean, make_store

D, T = dt.date, dt.datetime


def _rows(engine: str, store, dataset, index_date: dt.date) -> list[dict[str, Any]]:
    table = run_dataset(store, dataset, engine=engine, index_date=index_date, output="arrow")
    return [{k: _clean(v) for k, v in row.items()} for row in table.to_pylist()]


def _figures(result: pd.DataFrame, *columns: str) -> list[tuple]:
    """The result's rows as tuples of ``columns``, a missing value as None."""
    out = []
    for row in result[list(columns)].itertuples(index=False):
        out.append(tuple(None if isinstance(v, float) and math.isnan(v) else v for v in row))
    return out


# -- PreCiSSIon: one row per caesarean, and the response rate by month and IMD quintile ------

WOUND = "urn:example:caesarean-wound-30d"


def _op(pid, oid, start, code, antibiotic, bmi=None) -> dict:
    return {
        "patient_id": pid,
        "operation_id": oid,
        "start_datetime": start,
        "code": code,
        "urgency": "elective" if code.startswith("R17") else "emergency",
        "antibiotic_datetime": antibiotic,
        "skin_prep": "chlorhexidine_alcohol",
        "normothermia": True,
        "bmi": bmi,
    }


def _answer(pid: str, authored: dt.datetime, questionnaire: str = WOUND) -> dict:
    return {
        "patient_id": pid,
        "response_id": f"r{pid}{authored:%j}",
        "questionnaire": questionnaire,
        "authored": authored,
        "link_id": "wound_discharge",
        "answer_code": "N",
    }


def _admitted(pid: str, day: dt.date, method: str = "emergency") -> dict:
    return {"patient_id": pid, "admission_date": day, "admission_method": method}


def _lives(pid: str, start: dt.date, end: dt.date | None, lsoa: str, home: bool = False):
    return {
        "patient_id": pid,
        "start_date": start,
        "end_date": end,
        "lsoa_code": lsoa,
        "care_home": home,
    }


CHX = "chlorhexidine_alcohol"
PRECISSION = {
    "patients": [
        {"patient_id": "1", "date_of_birth": D(1990, 6, 1), "sex": "female"},
        {"patient_id": "2", "date_of_birth": D(2000, 1, 15), "sex": "female"},
        {"patient_id": "3", "date_of_birth": D(1988, 2, 1), "sex": "female"},
        {"patient_id": "4", "date_of_birth": D(1995, 3, 1), "sex": "female"},
    ],
    "operations": [
        # 1's first: antibiotic 40 minutes before knife-to-skin, the whole bundle, BMI 24.9
        _op("1", "a", T(2024, 6, 10, 9), "R171", T(2024, 6, 10, 8, 20), bmi=24.9),
        # 1's second: antibiotic 15 minutes AFTER the incision, povidone, no temperature kept
        _op("1", "b", T(2025, 2, 14, 23, 30), "R182", T(2025, 2, 14, 23, 45), bmi=35.0)
        | {"skin_prep": "povidone_iodine", "normothermia": None},
        # 2: no antibiotic recorded, no BMI, no address
        _op("2", "c", T(2024, 11, 1, 10), "R172", None),
        _op("3", "old", T(2024, 3, 1, 10), "R171", None, bmi=22.0),  # before the 12 months
        _op("3", "appx", T(2024, 9, 1, 10), "H011", None, bmi=22.0),  # not a caesarean
        _op("4", "e", T(2024, 6, 20, 14), "R182", T(2024, 6, 20, 13, 30), bmi=31.2),
    ],
    "questionnaire_responses": [
        _answer("1", T(2024, 7, 12, 10)),  # day 32 after op a
        _answer("1", T(2025, 2, 20, 10), "urn:other"),  # another questionnaire
        _answer("1", T(2025, 3, 30, 10)),  # day 44 after op b: outside the 42 days
        _answer("2", T(2024, 11, 1, 18)),  # the evening of the operation's day
    ],
    "admissions": [
        _admitted("1", D(2024, 6, 25)),  # day 15 after op a: a readmission
        _admitted("1", D(2025, 3, 17)),  # day 31 after op b: too late
        _admitted("2", D(2024, 11, 2)),  # the next day
        _admitted("2", D(2024, 11, 5), "maternity"),  # not an emergency readmission
    ],
    "addresses": [
        _lives("1", D(2020, 1, 1), D(2024, 12, 31), "E01000001"),  # IMD quintile 1
        _lives("1", D(2025, 1, 1), None, "E01000002"),  # moved: quintile 4
        _lives("4", D(2015, 1, 1), None, "E01000001"),
    ],
    "areas": [
        {"lsoa_code": "E01000001", "imd_quintile": 1},
        {"lsoa_code": "E01000002", "imd_quintile": 4},
    ],
}


def _per_caesarean() -> RowDataset:
    caesarean = operations.matching(codelist("caesarean_opcs4")).in_last(months=12)
    per_op = RowDataset(caesarean, columns=["operation_id"])
    op = per_op.row
    answered = qr.where(qr.questionnaire == WOUND).on_or_after(op.start_datetime)
    per_op.responded = answered.on_or_before(op.start_datetime + days(42)).exists_for_patient()
    emergency = admissions.where(admissions.admission_method == "emergency")
    readmitted = emergency.on_or_after(op.start_datetime + days(1))
    per_op.readmitted_30d = readmitted.on_or_before(
        op.start_datetime + days(30)
    ).exists_for_patient()
    before = minutes_between(op.antibiotic_datetime, op.start_datetime)
    per_op.antibiotic_minutes_before = before
    in_time = (before >= 0) & (before <= 60)
    per_op.antibiotic_in_60 = in_time
    per_op.chlorhexidine = op.skin_prep == CHX
    per_op.normothermia = op.normothermia
    # all or none: an element not recorded is not met
    per_op.bundle = (in_time & (op.skin_prep == CHX) & op.normothermia).if_null_then(False)
    per_op.bmi_band = case(
        (op.bmi < 18.5, "<18.5"),
        (op.bmi < 25, "18.5-25"),
        (op.bmi < 30, "25-30"),
        (op.bmi < 35, "30-35"),
        (op.bmi >= 35, "35+"),
        otherwise="not recorded",
    )
    per_op.imd_quintile = addresses.area_on(op.start_datetime).group("imd_quintile")
    per_op.age = patients.age_on(op.start_datetime)
    return per_op


def test_precission_one_row_per_caesarean(engine, tmp_path):
    store = make_store(tmp_path, PRECISSION)
    out = _rows(engine, store, _per_caesarean(), D(2025, 3, 31))
    keys = ["patient_id", "row_number", "operation_id", "responded", "readmitted_30d"]
    keys += ["antibiotic_minutes_before", "antibiotic_in_60", "chlorhexidine", "normothermia"]
    keys += ["bundle", "bmi_band", "imd_quintile", "age"]
    assert [list(r) for r in out] == [keys] * 4
    assert [tuple(r.values()) for r in out] == [
        ("1", 1, "a", True, True, 40.0, True, True, True, True, "18.5-25", "1", 34),
        ("1", 2, "b", False, False, -15.0, False, False, None, False, "35+", "4", 34),
        ("2", 1, "c", True, True, None, None, True, True, False, "not recorded", "unknown", 24),
        ("4", 1, "e", False, False, 30.0, True, True, True, True, "30-35", "1", 29),
    ]


def test_precission_response_rate_by_month_and_imd_quintile(engine, tmp_path):
    """Per woman with a caesarean in the month (her first that month): answered within 42
    days of it, by the IMD quintile of her address on its day. No woman here has two in one
    month, so this equals the per-operation rate of the row dataset above."""
    store = make_store(tmp_path, PRECISSION)
    in_month = operations.matching(codelist("caesarean_opcs4")).in_interval()
    cs = in_month.first_for_patient()
    answered = qr.where(qr.questionnaire == WOUND).on_or_after(cs.start_datetime)
    answered = answered.on_or_before(cs.start_datetime + days(42))
    m = Measures(intervals=monthly("2024-06-01", 9))
    m.define_measure(
        "wound_questionnaire_response",
        numerator=answered.exists_for_patient(),
        denominator=in_month.exists_for_patient(),
        group_by={"imd_quintile": addresses.area_on(cs.start_datetime).group("imd_quintile")},
    )
    result = run_measures(store, m, engine=engine, disclosure=False)
    assert _figures(result, "interval_start", "imd_quintile", "numerator", "denominator") == [
        (D(2024, 6, 1), "1", 1, 2),  # op a answered on day 32; op e not answered
        (D(2024, 11, 1), "unknown", 1, 1),  # op c, no address
        (D(2025, 2, 1), "4", 0, 1),  # op b: day 44 is too late
    ]
    assert list(result["value"]) == [50, 100, 0]
    assert set(result["method"]) == {"Wilson"}


# -- Sickle cell: door to analgesia per ED attendance; its centiles over attendances ---------

SICKLE = "127040003"  # in the curated sickle_cell_disease list


def _attends(pid, arrival, analgesia, diagnosis=SICKLE) -> dict:
    return {
        "patient_id": pid,
        "arrival_datetime": arrival,
        "first_analgesia_datetime": analgesia,
        "diagnosis_system": "snomedct",
        "diagnosis": diagnosis,
    }


SICKLE_TABLES = {
    "patients": [
        {"patient_id": "1", "ethnicity_5": "black"},
        {"patient_id": "2", "ethnicity_5": "black"},
        {"patient_id": "3", "ethnicity_5": "mixed"},
        {"patient_id": "4", "ethnicity_5": "black"},
        {"patient_id": "5", "ethnicity_5": "white"},
    ],
    "emergency_attendances": [
        _attends("1", T(2025, 1, 5, 10), T(2025, 1, 5, 10, 20)),  # 20 minutes
        _attends("1", T(2025, 1, 20, 22, 50), T(2025, 1, 20, 23, 35)),  # 45
        _attends("1", T(2025, 2, 3, 8), T(2025, 2, 3, 8, 30)),  # 30: on the standard
        _attends("2", T(2025, 1, 11, 12), None),  # no analgesia recorded
        _attends("2", T(2025, 2, 14, 9), T(2025, 2, 14, 9, 10, 30)),  # 10.5
        _attends("3", T(2025, 1, 25, 23, 50), T(2025, 1, 26, 0, 50)),  # 60, past midnight
        _attends("4", T(2025, 1, 7, 9), T(2025, 1, 7, 9, 5), "125605004"),  # not sickle cell
        _attends("5", T(2025, 2, 20, 10), T(2025, 2, 20, 9, 55)),  # -5: a recording error
        _attends("1", T(2024, 12, 30, 10), T(2024, 12, 30, 11)),  # before the 3 months
    ],
}


def test_sickle_cell_door_to_analgesia_per_attendance_and_its_centiles(engine, tmp_path):
    store = make_store(tmp_path, SICKLE_TABLES)
    crises = ea.matching(codelist("sickle_cell_disease"))

    per_attendance = RowDataset(crises.in_last(months=3), columns=[])
    a = per_attendance.row
    wait = minutes_between(a.arrival_datetime, a.first_analgesia_datetime)
    per_attendance.minutes = wait
    per_attendance.within_30 = (wait >= 0) & (wait <= 30)
    out = _rows(engine, store, per_attendance, D(2025, 3, 31))
    assert [tuple(r.values()) for r in out] == [
        ("1", 1, 20.0, True),
        ("1", 2, 45.0, False),
        ("1", 3, 30.0, True),
        ("2", 1, None, None),
        ("2", 2, 10.5, True),
        ("3", 1, 60.0, False),
        ("5", 1, -5.0, False),
    ]

    att = crises.in_interval()
    wait = minutes_between(att.arrival_datetime, att.first_analgesia_datetime)
    valid = case((wait >= 0, wait))  # a negative wait is a recording error: no value
    m = Measures(intervals=monthly("2025-01-01", 2))
    m.define_quantile("door_to_analgesia", value=valid, rows=att, among=True, quantiles=(0.5, 0.9))
    m.define_quantile(
        "door_to_analgesia_by_ethnicity",
        value=valid,
        rows=att,
        among=True,
        quantiles=(0.5, 0.9),
        group_by={"ethnicity": patients.ethnicity_5},
    )
    m.define_measure(
        "analgesia_within_30",
        numerator=att.where((wait >= 0) & (wait <= 30)).count_for_patient(),
        denominator=att.count_for_patient(),
    )
    result = run_measures(store, m, engine=engine, disclosure=False)
    got = _figures(
        result, "measure", "interval_start", "ethnicity", "statistic", "numerator", "denominator"
    )
    values = [None if v != v else round(v, 6) for v in result["value"]]
    # January: 20, 45, 60 and one without (4 rows); Hyndman & Fan 7: the 90th centile is at
    # rank 1 + 0.9 * 2 = 2.8, 45 + 0.8 * 15 = 57. February: 10.5 and 30 (the -5 dropped).
    expected = [
        ("door_to_analgesia", D(2025, 1, 1), None, "median", 3, 4, 45.0),
        ("door_to_analgesia", D(2025, 1, 1), None, "90th centile", 3, 4, 57.0),
        ("door_to_analgesia", D(2025, 2, 1), None, "median", 2, 3, 20.25),
        ("door_to_analgesia", D(2025, 2, 1), None, "90th centile", 2, 3, 28.05),
        ("door_to_analgesia_by_ethnicity", D(2025, 1, 1), "black", "median", 2, 3, 32.5),
        ("door_to_analgesia_by_ethnicity", D(2025, 1, 1), "black", "90th centile", 2, 3, 42.5),
        ("door_to_analgesia_by_ethnicity", D(2025, 1, 1), "mixed", "median", 1, 1, 60.0),
        ("door_to_analgesia_by_ethnicity", D(2025, 1, 1), "mixed", "90th centile", 1, 1, 60.0),
        ("door_to_analgesia_by_ethnicity", D(2025, 2, 1), "black", "median", 2, 2, 20.25),
        ("door_to_analgesia_by_ethnicity", D(2025, 2, 1), "black", "90th centile", 2, 2, 28.05),
        ("door_to_analgesia_by_ethnicity", D(2025, 2, 1), "white", "median", 0, 1, None),
        ("door_to_analgesia_by_ethnicity", D(2025, 2, 1), "white", "90th centile", 0, 1, None),
        # rows of attendances: January 20 of 4 rows, February 30 and 10.5 of 3
        ("analgesia_within_30", D(2025, 1, 1), None, "percentage", 1, 4, 25.0),
        ("analgesia_within_30", D(2025, 2, 1), None, "percentage", 2, 3, round(200 / 3, 6)),
    ]
    assert [g + (v,) for g, v in zip(got, values, strict=True)] == expected
    method = result.set_index("measure")["method"]
    assert method["analgesia_within_30"].str.contains("rows counted as independent").all()


# -- Care homes: emergency admissions per 1,000 resident-days, a definition file by the CLI ---

CARE_HOME_DEFINITION = """
from pophealth.query import Measures, addresses, admissions, monthly, patients

emergency = admissions.where(admissions.admission_method == "emergency").in_interval()
resident_days = addresses.where(addresses.care_home).days_in_interval_for_patient(
    until=patients.date_of_death
)
measures = Measures(intervals=monthly("2025-01-01", 2))
measures.define_rate(
    "care_home_emergency_admissions",
    events=emergency.count_for_patient(),
    person_time=resident_days,
    per=1000,
    unit="days",
)
"""


def test_care_home_emergency_admissions_per_1000_resident_days_by_the_cli(engine, tmp_path):
    store = make_store(
        tmp_path,
        {
            "patients": [
                {"patient_id": "1", "date_of_death": D(2025, 2, 10)},  # address left open
                {"patient_id": "2"},
                {"patient_id": "3"},
            ],
            "addresses": [
                _lives("1", D(2024, 12, 15), None, "E01000001", home=True),
                _lives("2", D(2020, 1, 1), D(2025, 1, 9), "E01000002"),  # at home first
                _lives("2", D(2025, 1, 10), None, "E01000001", home=True),
                _lives("2", D(2025, 1, 20), D(2025, 1, 31), "E01000001", home=True),  # overlap
                _lives("3", D(2020, 1, 1), None, "E01000002"),  # never in a care home
            ],
            "admissions": [
                _admitted("1", D(2025, 1, 5)),
                # before she moved in, but in a month with resident-days: counted (docs §4)
                _admitted("2", D(2025, 1, 3)),
                _admitted("2", D(2025, 2, 2)),
                _admitted("2", D(2025, 2, 5), "elective"),
                _admitted("3", D(2025, 1, 15)),  # no resident-days
            ],
        },
    )
    path = tmp_path / "care_home_admissions.py"
    path.write_text(CARE_HOME_DEFINITION)
    output = tmp_path / "care_home_admissions.csv"
    args = ["measures", str(path), "--store", str(store.path), "--output", str(output)]
    result = CliRunner().invoke(app, [*args, "--engine", engine, "--no-disclosure"])
    assert result.exit_code == 0, result.output
    got = pd.read_csv(output, dtype={"numerator": int, "denominator": int})
    # January: 31 days (1) + 22 (2: the 10th to the 31st, the overlap once); 2 admissions.
    # February: 10 (1: to her death on the 10th) + 28 (2); 1 emergency admission.
    assert _figures(got, "interval_start", "numerator", "denominator", "statistic") == [
        ("2025-01-01", 2, 53, "rate per 1,000 person-days"),
        ("2025-02-01", 1, 38, "rate per 1,000 person-days"),
    ]
    assert list(got["value"]) == pytest.approx([2 / 53 * 1000, 1 / 38 * 1000])


# -- FREED: weeks from each referral to the next assessment ----------------------------------

REFERRAL, ASSESSMENT = "183524004", "710915002"


def _ev(pid: str, day: dt.date, code: str) -> dict:
    return {"patient_id": pid, "date": day, "code": code}


FREED_TABLES = {
    "patients": [{"patient_id": p, "date_of_birth": D(2005, 6, 1)} for p in "12345"],
    "events": [
        _ev("1", D(2025, 1, 6), REFERRAL),
        _ev("1", D(2025, 1, 20), ASSESSMENT),  # 14 days
        _ev("1", D(2025, 5, 5), REFERRAL),
        _ev("1", D(2025, 6, 9), ASSESSMENT),  # 35 days: late
        _ev("2", D(2025, 2, 3), REFERRAL),
        _ev("2", D(2025, 3, 3), ASSESSMENT),  # 28 days: the last day of 4 weeks
        _ev("3", D(2025, 2, 10), REFERRAL),  # never assessed
        _ev("4", D(2025, 3, 3), REFERRAL),
        _ev("4", D(2025, 3, 3), ASSESSMENT),  # the same day
        _ev("5", D(2025, 1, 13), REFERRAL),
        _ev("5", D(2025, 1, 27), REFERRAL),  # a second referral before the assessment
        _ev("5", D(2025, 2, 3), ASSESSMENT),  # 21 and 7 days
    ],
}

FREED_DEFINITION = """
from pophealth.query import RowDataset, codelist, events, weeks

referrals = events.matching(codelist("freed_referral"))
assessments = events.matching(codelist("freed_assessment"))
dataset = RowDataset(referrals, columns=["date"])
ref = dataset.row
next_assessment = assessments.on_or_after(ref.date).first_for_patient().date
dataset.next_assessment = next_assessment
dataset.weeks_to_assessment = (next_assessment - ref.date) / 7
soon = assessments.on_or_after(ref.date).on_or_before(ref.date + weeks(4))
dataset.assessed_in_4_weeks = soon.exists_for_patient()
"""


def test_freed_one_row_per_referral_by_the_cli_with_a_code_list_folder(engine, tmp_path):
    store = make_store(tmp_path, FREED_TABLES)
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "freed_referral.csv").write_text(f"code,term\n{REFERRAL},Referral\n")
    (lists / "freed_assessment.csv").write_text(f"code,term\n{ASSESSMENT},Assessment\n")
    path = tmp_path / "freed.py"
    path.write_text(FREED_DEFINITION)
    output = tmp_path / "freed.csv"
    args = ["dataset", str(path), "--store", str(store.path), "--output", str(output)]
    args += ["--codelists", str(lists), "--index-date", "2025-06-30", "--engine", engine]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert output.read_text().splitlines() == [
        '"patient_id","row_number","date","next_assessment","weeks_to_assessment",'
        '"assessed_in_4_weeks"',
        '"1",1,2025-01-06,2025-01-20,2,true',
        '"1",2,2025-05-05,2025-06-09,5,false',
        '"2",1,2025-02-03,2025-03-03,4,true',
        '"3",1,2025-02-10,,,false',
        '"4",1,2025-03-03,2025-03-03,0,true',
        '"5",1,2025-01-13,2025-02-03,3,true',
        '"5",2,2025-01-27,2025-02-03,1,true',
    ]


def test_freed_median_weeks_to_assessment_per_quarter(engine, tmp_path):
    """Per patient referred in the quarter, from her first referral in it: a quantile of
    patients, not of referrals (woman 5's second referral, 7 days before the assessment,
    is not counted)."""
    store = make_store(tmp_path, FREED_TABLES)
    referrals = events.matching(Codelist.of("snomedct", [REFERRAL], name="freed_referral"))
    assessed = events.matching(Codelist.of("snomedct", [ASSESSMENT], name="freed_assessment"))
    referred = referrals.in_interval()
    first = referred.first_for_patient().date
    after = assessed.on_or_after(first)
    m = Measures(intervals=quarterly("2025-01-01", 2))
    m.define_quantile(
        "weeks_to_assessment",
        value=(after.first_for_patient().date - first) / 7,
        among=referred.exists_for_patient(),
        quantiles=(0.5,),
    )
    m.define_measure(
        "assessed_in_4_weeks",
        numerator=after.on_or_before(first + weeks(4)).exists_for_patient(),
        denominator=referred.exists_for_patient(),
    )
    result = run_measures(store, m, engine=engine, disclosure=False)
    # Q1: 2, 4, 0 and 3 weeks (woman 3 has none): the median of 4 values is 2.5
    assert _figures(result, "measure", "interval_start", "numerator", "denominator", "value") == [
        ("weeks_to_assessment", D(2025, 1, 1), 4, 5, 2.5),
        ("weeks_to_assessment", D(2025, 4, 1), 1, 1, 5.0),
        ("assessed_in_4_weeks", D(2025, 1, 1), 4, 5, 80.0),
        ("assessed_in_4_weeks", D(2025, 4, 1), 0, 1, 0.0),
    ]
