"""Spec: the roadmap's next programmes written in the query language, on DuckDB and Spark —
NEWS2 in care homes (PROGRAMMES.md section 5), PreCiSSIon's caesarean cohort and 30-day
questionnaire (section 4), a Core20 / fuel-poverty respiratory cohort by practice
(sections 6-7) — and the messages that point a definition of them the right way when it
reaches for what the vocabulary does not have.

Small tables in the test, the rule, the expected per-patient result written out by hand.
The codes are illustrative (any code with a valid check digit): expressiveness is the point.
"""

from __future__ import annotations

import datetime as dt

import pytest

from pophealth.codelists import Codelist
from pophealth.query import (
    Dataset,
    Measures,
    QueryError,
    addresses,
    admissions,
    case,
    days,
    emergency_attendances,
    events,
    index_date,
    maximum_of,
    minutes_between,
    operations,
    patients,
    registrations,
    run_measures,
    yearly,
)
from pophealth.query import questionnaire_responses as qr
from tests.spec.conftest import make_store, run

D, T = dt.date, dt.datetime
INDEX_FIT = D(2025, 3, 31)


def _sct(name: str, *codes: str) -> Codelist:
    return Codelist.of("snomedct", list(codes), name=name)


# -- NEWS2 (RCP 2017) from a care-home resident's latest observations -----------------------

RR, SPO2, SBP = _sct("rr", "86290005"), _sct("spo2", "431314004"), _sct("sbp", "72313002")
PULSE, TEMP = _sct("pulse", "364075005"), _sct("temp", "703421000")
NEW_CONFUSION, ON_O2 = _sct("cvpu", "130987000"), _sct("on_oxygen", "57485005")
SCALE_2 = _sct("spo2_target_88_92", "65710008")
NEWS2_OBS = _sct(
    "news2_obs", "86290005", "431314004", "72313002", "364075005", "703421000", "130987000"
)
CODES = {"rr": "86290005", "spo2": "431314004", "sbp": "72313002", "pulse": "364075005"}
CODES |= {"temp": "703421000", "cvpu": "130987000", "o2": "57485005", "scale2": "65710008"}


def _obs(pid: str, when: dt.datetime, what: str, value: float | None = None) -> dict:
    return {
        "patient_id": pid,
        "date": when.date(),
        "datetime": when,
        "code": CODES[what],
        "value": value,
    }


def _set(pid: str, when: dt.datetime, **values: float) -> list[dict]:
    return [_obs(pid, when, what, v) for what, v in values.items()]


NEWS2_EVENTS = [
    # 1: an earlier day, then two sets on the last day: each parameter's latest that day
    *_set("1", T(2025, 3, 1, 9), rr=14, spo2=98, sbp=130, pulse=70, temp=36.8),
    *_set("1", T(2025, 3, 30, 8), rr=18, spo2=97, sbp=120, pulse=80, temp=37.0),
    *_set("1", T(2025, 3, 30, 20), rr=26, spo2=93, pulse=112),
    # 2: new confusion (CVPU) scores 3 beside SBP 100 (2) and temperature 36.0 (1)
    *_set("2", T(2025, 3, 31, 10), rr=20, spo2=96, sbp=100, pulse=51, temp=36.0),
    _obs("2", T(2025, 3, 31, 10), "cvpu"),
    # 3: a systolic pressure alone — incomplete; missing parameters fall to `otherwise`
    *_set("3", T(2025, 3, 20, 11), sbp=150),
    # 5: SpO2 scale 2 (target 88-92%), 94% on oxygen: 1 for SpO2 and 2 for the oxygen
    _obs("5", T(2024, 11, 2, 9), "scale2"),
    *_set("5", T(2025, 3, 29, 9), rr=12, spo2=94, sbp=115, pulse=60, temp=36.5),
    _obs("5", T(2025, 3, 29, 9), "o2"),
    # 6: a single parameter scoring 3 (respiratory rate 8), total 3
    *_set("6", T(2025, 3, 28, 9), rr=8, spo2=97, sbp=120, pulse=70, temp=37.0),
    # 4: not a care-home resident
    *_set("4", T(2025, 3, 30, 9), rr=30, spo2=88, sbp=85, pulse=140, temp=39.5),
]


def _home(pid: str, care_home: bool = True) -> dict:
    return {"patient_id": pid, "start_date": D(2020, 1, 1), "care_home": care_home}


def _news2() -> dict:
    day = events.matching(NEWS2_OBS).on_or_before(index_date).last_for_patient().date

    def latest(codes: Codelist):  # a clock-time order within the day
        return events.matching(codes).on(day).sort_by("datetime").last_for_patient().value

    rr, spo2, sbp, pulse, temp = (latest(c) for c in (RR, SPO2, SBP, PULSE, TEMP))
    on_o2 = events.matching(ON_O2).on(day).exists_for_patient()
    cvpu = events.matching(NEW_CONFUSION).on(day).exists_for_patient()
    scale_2 = events.matching(SCALE_2).on_or_before(index_date).exists_for_patient()
    parts = [
        case((rr <= 8, 3), (rr <= 11, 1), (rr <= 20, 0), (rr <= 24, 2), otherwise=3),
        case(
            (scale_2 & (spo2 <= 83), 3),
            (scale_2 & (spo2 <= 85), 2),
            (scale_2 & (spo2 <= 87), 1),
            (scale_2 & ((spo2 <= 92) | ~on_o2), 0),
            (scale_2 & (spo2 <= 94), 1),
            (scale_2 & (spo2 <= 96), 2),
            (scale_2, 3),
            (spo2 <= 91, 3),
            (spo2 <= 93, 2),
            (spo2 <= 95, 1),
            otherwise=0,
        ),
        case((on_o2, 2), otherwise=0),
        case((sbp <= 90, 3), (sbp <= 100, 2), (sbp <= 110, 1), (sbp <= 219, 0), otherwise=3),
        case(
            (pulse <= 40, 3),
            (pulse <= 50, 1),
            (pulse <= 90, 0),
            (pulse <= 110, 1),
            (pulse <= 130, 2),
            otherwise=3,
        ),
        case((cvpu, 3), otherwise=0),
        case(
            (temp <= 35.0, 3), (temp <= 36.0, 1), (temp <= 38.0, 0), (temp <= 39.0, 1), otherwise=2
        ),
    ]
    total = parts[0] + parts[1] + parts[2] + parts[3] + parts[4] + parts[5] + parts[6]
    complete = rr.is_not_null() & spo2.is_not_null() & sbp.is_not_null()
    complete = complete & pulse.is_not_null() & temp.is_not_null()
    band = case(
        (~complete, "incomplete"),
        (total >= 7, "high"),
        (total >= 5, "medium"),
        (maximum_of(*parts) == 3, "low-medium"),
        (total >= 1, "low"),
        otherwise="zero",
    )
    # the last band as a branch of its own: no reading, no score (not `otherwise`'s 3)
    rr_strict = case((rr <= 8, 3), (rr <= 11, 1), (rr <= 20, 0), (rr <= 24, 2), (rr >= 25, 3))
    return {"day": day, "rr": rr, "rr_score": rr_strict, "total": total, "band": band}


def test_news2_from_the_latest_same_day_observations_of_care_home_residents(engine, tmp_path):
    news2 = _news2()
    out = run(
        engine,
        tmp_path,
        {
            "events": NEWS2_EVENTS,
            "addresses": [_home(p) for p in ("1", "2", "3", "5", "6")] + [_home("4", False)],
        },
        news2,
        population=addresses.address_on(index_date).care_home,
    )
    assert set(out) == {"1", "2", "3", "5", "6"}
    # RR 26 (3) + SpO2 93 (2) + pulse 112 (2), the 20:00 set; SBP and temperature from 08:00
    assert out["1"] == {
        "day": D(2025, 3, 30),
        "rr": 26.0,
        "rr_score": 3,
        "total": 7,
        "band": "high",
    }
    assert out["2"] == {
        "day": D(2025, 3, 31),
        "rr": 20.0,
        "rr_score": 0,
        "total": 6,
        "band": "medium",
    }
    # a case whose condition is missing takes `otherwise`: a resident with a blood pressure
    # alone totals 3 + 0 + 0 + 0 + 3 + 0 + 2 = 8 — hence the band's completeness test first
    assert out["3"] == {
        "day": D(2025, 3, 20),
        "rr": None,
        "rr_score": None,
        "total": 8,
        "band": "incomplete",
    }
    assert out["5"] == {"day": D(2025, 3, 29), "rr": 12.0, "rr_score": 0, "total": 3, "band": "low"}
    assert out["6"] == {
        "day": D(2025, 3, 28),
        "rr": 8.0,
        "rr_score": 3,
        "total": 3,
        "band": "low-medium",
    }


def test_observations_within_an_hour_after_another_row(engine, tmp_path):
    """NEWS2: an SpO2 taken within an hour after the latest respiratory rate. A row's
    datetime taken per patient keeps its clock time, so ``minutes_between`` (the function)
    spans a patient's time and each row's. A frame's own ``hours_between`` reads two columns
    of one row: given a patient's time it is refused, naming the function."""
    rr_row = events.matching(RR).sort_by("datetime").last_for_patient()
    spo2 = events.matching(SPO2)
    with pytest.raises(QueryError) as err:
        Dataset().x = spo2.where(
            spo2.hours_between(rr_row.datetime, "datetime") <= 1
        ).exists_for_patient()
    message = str(err.value)
    assert "is one value per patient" in message and "use the function" in message
    assert "date-and-time columns: datetime" in message
    after_rr = minutes_between(rr_row.datetime, spo2.datetime)
    later_rr = [_obs("1", T(2025, 3, 30, 21, 30), "rr", 22)]  # no SpO2 after it
    out = run(
        engine,
        tmp_path,
        {"events": NEWS2_EVENTS + later_rr},
        {
            "spo2_within_hour": spo2.where((after_rr >= 0) & (after_rr <= 60)).exists_for_patient(),
            "spo2_same_day": spo2.on(rr_row.date).sort_by("datetime").last_for_patient().value,
        },
    )
    assert out["1"] == {"spo2_within_hour": False, "spo2_same_day": 93.0}  # 20:00 is before 21:30
    assert out["2"] == {"spo2_within_hour": True, "spo2_same_day": 96.0}  # the same minute
    assert out["3"] == {"spo2_within_hour": False, "spo2_same_day": None}  # no RR


# -- PreCiSSIon: caesareans and the 30-day wound questionnaire ------------------------------

CAESAREAN = Codelist.of("opcs4", ["R171", "R172", "R181", "R182"], name="caesarean")
WOUND = "urn:example:caesarean-wound-30d"


def _op(pid: str, start: dt.datetime, code: str = "R171", urgency: str = "elective") -> dict:
    return {
        "patient_id": pid,
        "operation_id": f"op{pid}",
        "start_datetime": start,
        "code": code,
        "urgency": urgency,
    }


def _response(pid: str, authored: dt.datetime, answers: dict, questionnaire: str = WOUND):
    return [
        {
            "patient_id": pid,
            "response_id": f"r{pid}{authored:%j}",
            "questionnaire": questionnaire,
            "authored": authored,
            "link_id": item,
            "answer_code": code,
        }
        for item, code in answers.items()
    ]


def test_caesareans_with_a_wound_questionnaire_after_them(engine, tmp_path):
    tables = {
        "operations": [
            _op("1", T(2025, 1, 10, 9)),
            _op("2", T(2025, 2, 1, 23, 30), "R182", "emergency"),
            _op("3", T(2025, 3, 1, 10)),
            _op("4", T(2024, 1, 1, 10)),  # before the 12 months
        ],
        "questionnaire_responses": [
            # sent on day 30, answered on day 33: a discharging wound
            *_response("1", T(2025, 2, 12, 19), {"wound_discharge": "Y", "fever": "N"}),
            *_response("1", T(2025, 2, 1, 9), {"wound_discharge": "Y"}, "urn:other"),
            *_response("2", T(2025, 3, 5, 8), {"wound_discharge": "N", "wound_opened": "N"}),
            *_response("2", T(2025, 4, 2, 8), {"wound_opened": "Y"}),  # day 60: too late
            *_response("4", T(2025, 1, 1, 8), {"wound_opened": "Y"}),
        ],
        "admissions": [  # a caesarean seen only as a spell's procedure
            {
                "patient_id": "5",
                "admission_date": D(2025, 1, 3),
                "admission_method": "maternity",
                "procedures": ["R182", "Y751"],
            }
        ],
    }
    caesarean = operations.matching(CAESAREAN).in_last(months=12)
    cs = caesarean.first_for_patient()
    answered = qr.where(qr.questionnaire == WOUND).on_or_after(cs.start_datetime)
    answered = answered.on_or_before(cs.start_datetime + days(42))

    def yes(item: str):
        return answered.where((qr.link_id == item) & (qr.answer_code == "Y")).exists_for_patient()

    # the OPCS-4 list on admissions' default column (the primary diagnosis, ICD-10) is
    # refused, and the message names the column that holds OPCS-4 codes
    with pytest.raises(QueryError, match=r"matching\(caesarean, column='procedures'\)"):
        Dataset().spells = admissions.matching(CAESAREAN).exists_for_patient()
    with pytest.raises(QueryError, match=r"admissions.matching\(codelist, column='procedures'\)"):
        Dataset().spells = admissions.where(
            admissions.procedures.is_in(CAESAREAN)
        ).exists_for_patient()
    spells = admissions.matching(CAESAREAN, column="procedures").in_last(months=12)
    out = run(
        engine,
        tmp_path,
        tables,
        {
            "cs_date": cs.start_datetime,
            "emergency": cs.urgency == "emergency",
            "responded": answered.exists_for_patient(),
            "ssi": yes("wound_discharge") | yes("wound_opened"),
            "in_spell": spells.exists_for_patient(),
        },
        population=caesarean.exists_for_patient() | spells.exists_for_patient(),
    )
    assert out == {
        "1": {
            "cs_date": D(2025, 1, 10),
            "emergency": False,
            "responded": True,
            "ssi": True,
            "in_spell": False,
        },
        "2": {
            "cs_date": D(2025, 2, 1),
            "emergency": True,
            "responded": True,
            "ssi": False,
            "in_spell": False,
        },
        "3": {
            "cs_date": D(2025, 3, 1),
            "emergency": False,
            "responded": False,
            "ssi": False,
            "in_spell": False,
        },
        "5": {
            "cs_date": None,
            "emergency": None,
            "responded": False,
            "ssi": False,
            "in_spell": True,
        },
    }


# -- Core20 / fuel poverty: COPD by practice ------------------------------------------------

COPD = _sct("copd", "13645005")


def test_copd_in_core20_or_fuel_poor_areas_by_practice(engine, tmp_path):
    def reg(pid, practice):
        return {"patient_id": pid, "practice_id": practice, "start_date": D(2010, 1, 1)}

    def lives(pid, lsoa):
        return {"patient_id": pid, "start_date": D(2010, 1, 1), "lsoa_code": lsoa}

    store = make_store(
        tmp_path,
        {
            "registrations": [reg("1", "A"), reg("2", "A"), reg("3", "B"), reg("4", "B")]
            + [reg("5", "B")],
            "addresses": [lives("1", "E01000001"), lives("2", "E01000003")]
            + [lives("3", "E01000002"), lives("4", "E01000001")],  # 5: no address
            "areas": [
                {"lsoa_code": "E01000001", "core20": True, "fuel_poverty_pct": 10.0},
                {"lsoa_code": "E01000002", "core20": False, "fuel_poverty_pct": 25.0},
                {"lsoa_code": "E01000003", "core20": False, "fuel_poverty_pct": 5.0},
            ],
            "events": [
                {"patient_id": p, "date": D(2020, 5, 1), "code": "13645005"}
                for p in ("1", "2", "3", "5")
            ],
        },
    )
    area = addresses.area_on(index_date)
    copd = events.matching(COPD).on_or_before(index_date).exists_for_patient()
    registered = registrations.registered_on(index_date) & patients.is_alive_on(index_date)
    m = Measures(intervals=yearly("2024-04-01", 1))
    m.define_measure(
        "copd_core20_or_fuel_poor",
        numerator=area.core20 | (area.fuel_poverty_pct >= 20),
        denominator=registered & copd,
        group_by={"practice": registrations.practice_on(index_date).practice_id},
    )
    with pytest.raises(QueryError, match=r"a practice .* is not a value: take one of its"):
        m.define_measure(
            "x", numerator=copd, denominator=registered, group_by={"p": registrations.practice_on()}
        )
    result = run_measures(store, m, engine=engine, disclosure=False)
    got = {r.practice: (r.numerator, r.denominator) for r in result.itertuples()}
    # A: 1 (Core20) of 1 and 2; B: 3 (25% fuel poor) of 3 and 5 (no address: not counted)
    assert got == {"A": (1, 2), "B": (1, 2)}


# -- a row, a day or an area where a value goes ----------------------------------------------


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: operations.first_for_patient(), "operations.first_for_patient() is a row"),
        (lambda: events.last_day_for_patient(), "is a day, not a value: take its .date"),
        (lambda: addresses.area_on(index_date), "an area (addresses.area_on(date)) is not a"),
        (lambda: case((patients.sex == "male", operations.last_for_patient())), "is a row"),
    ],
)
def test_a_row_a_day_or_an_area_is_not_a_value(make, words):
    with pytest.raises(QueryError, match="variable 'x'") as err:
        Dataset().x = make()
    assert words in str(err.value)
    assert "<pophealth" not in str(err.value)  # not the object's Python repr


# -- an event table's values worked out on each row ------------------------------------------


def test_an_event_table_writes_values_worked_out_on_each_row(engine, tmp_path):
    """Per operation, not per patient: PreCiSSIon's bundle is checked operation by
    operation, and a woman may have two caesareans — the minutes from antibiotic to
    incision, the all-or-none check, and the days since her first."""
    from pophealth.query import run_events

    def op(oid, pid, start, antibiotic, prep="chlorhexidine_alcohol"):
        row = _op(pid, start) | {"operation_id": oid, "antibiotic_datetime": antibiotic}
        return row | {"skin_prep": prep, "normothermia": True}

    store = make_store(
        tmp_path,
        {
            "operations": [
                op("a", "1", T(2024, 5, 1, 10), T(2024, 5, 1, 9, 15)),  # 45 minutes before
                op("b", "1", T(2025, 2, 3, 14), T(2025, 2, 3, 12, 30), "povidone_iodine"),
                op("c", "2", T(2025, 1, 20, 2, 10), None),  # no antibiotic recorded
                op("d", "3", T(2025, 1, 5, 8), T(2025, 1, 5, 8, 5)),  # after the incision
            ],
            "patients": [
                {"patient_id": p, "date_of_birth": D(1990, 6, 1)} for p in ("1", "2", "3")
            ],
        },
    )
    cs = operations.matching(CAESAREAN)
    before = operations.minutes_between("antibiotic_datetime", "start_datetime")
    bundle = (before >= 0) & (before <= 60) & (operations.skin_prep == "chlorhexidine_alcohol")
    ds = Dataset()
    ds.define_population(cs.exists_for_patient() & (patients.age_on(index_date) >= 18))
    ds.add_event_table(
        "operations",
        cs,
        columns=["operation_id"],
        values={
            "minutes_before": before,
            "bundle": bundle & operations.normothermia,
            "days_since_first": operations.start_datetime - cs.first_for_patient().start_datetime,
            "age": patients.age_on(operations.start_datetime),
        },
    )
    rows = run_events(store, ds, "operations", engine=engine, index_date=INDEX_FIT)
    assert list(rows.columns) == [
        "patient_id",
        "operation_id",
        "minutes_before",
        "bundle",
        "days_since_first",
        "age",
    ]
    got = [
        (r.operation_id, None if r.minutes_before != r.minutes_before else r.minutes_before)
        + (None if r.bundle is None or r.bundle != r.bundle else bool(r.bundle),)
        + (int(r.days_since_first), int(r.age))
        for r in rows.itertuples()
    ]
    assert got == [
        ("a", 45.0, True, 0, 33),
        ("b", 90.0, False, 278, 34),
        ("c", None, None, 0, 34),
        ("d", -5.0, False, 0, 34),
    ]


def test_an_event_tables_values_are_checked_when_defined():
    cs = operations.matching(CAESAREAN)
    with pytest.raises(QueryError, match=r"value 'wait': .* rows of emergency_attendances"):
        Dataset().add_event_table(
            "x", cs, values={"wait": emergency_attendances.arrival_datetime.year}
        )
    with pytest.raises(QueryError, match="named like a column of operations"):
        Dataset().add_event_table("x", cs, values={"code": operations.code})
    with pytest.raises(QueryError, match="value 'first': .* is a row, not a value"):
        Dataset().add_event_table("x", cs, values={"first": cs.first_for_patient()})


# -- FREED's clocks: weeks, and hours refused --------------------------------------------------

REFERRAL, ASSESSED = _sct("ed_referral", "183524004"), _sct("ed_assessment", "710915002")


def test_weeks_windows_and_the_freed_two_week_assessment(engine, tmp_path):
    """Assessment within 2 weeks of referral (FREED, PROGRAMMES.md section 8):
    ``in_next(weeks=2, of=referral)`` is the 14 days after it, the 14th in; ``in_last(weeks=2)``
    the 14 days ending on the index date, the day 14 days before out."""

    def ev(pid, date, code):
        return {"patient_id": pid, "date": date, "code": code}

    referral = events.matching(REFERRAL).first_for_patient().date
    out = run(
        engine,
        tmp_path,
        {
            "events": [
                ev("1", D(2025, 1, 6), "183524004"),
                ev("1", D(2025, 1, 20), "710915002"),  # day 14: in time
                ev("2", D(2025, 1, 6), "183524004"),
                ev("2", D(2025, 1, 21), "710915002"),  # day 15: late
                ev("3", D(2025, 3, 17), "710915002"),  # 14 days before the index date: out
                ev("4", D(2025, 3, 18), "710915002"),  # 13 days before: in
            ]
        },
        {
            "assessed_in_2_weeks": events.matching(ASSESSED)
            .in_next(weeks=2, of=referral)
            .exists_for_patient(),
            "assessed_last_2_weeks": events.matching(ASSESSED)
            .in_last(weeks=2)
            .exists_for_patient(),
        },
        index_date=INDEX_FIT,
    )
    assert out["1"] == {"assessed_in_2_weeks": True, "assessed_last_2_weeks": False}
    assert out["2"] == {"assessed_in_2_weeks": False, "assessed_last_2_weeks": False}
    assert out["3"] == {"assessed_in_2_weeks": False, "assessed_last_2_weeks": False}
    assert out["4"] == {"assessed_in_2_weeks": False, "assessed_last_2_weeks": True}


@pytest.mark.parametrize("window", ["in_next", "in_last"])
def test_a_window_in_hours_is_refused_with_what_to_write(window):
    referral = events.matching(REFERRAL).first_for_patient().date
    frame = getattr(events.matching(ASSESSED), window)(hours=48, of=referral)
    with pytest.raises(QueryError, match=rf"{window}\(hours=48\): a window steps in whole days"):
        Dataset().x = frame.exists_for_patient()
    with pytest.raises(QueryError, match="write days=2"):
        Dataset().x = frame.exists_for_patient()
