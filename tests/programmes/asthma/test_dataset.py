"""Spec tests: tiny tables, the cohort/marker rule, the expected patients — on every engine."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from asthma_helpers import (
    CODES,
    ICS_HIGH,
    INDEX,
    PRED5,
    PRED25,
    REFERRAL,
    SABA,
    SAC_REFERRAL,
    SAC_SEEN,
    SEEN,
    SEEN_CHEST,
    d,
    patient,
    write_store,
)

from pophealth.programmes.asthma import dataset, rules

PRACTICES = [
    {"practice_id": "X1", "name": "One", "pcn_id": "PCN1", "pcn_name": "North"},
    {"practice_id": "X2", "name": "Two", "pcn_id": "PCN2", "pcn_name": "South"},
]
AREAS = [
    {"lsoa_code": "X01000001", "imd_release": "synthetic", "imd_decile": 1, "imd_quintile": 1,
     "core20": True, "no2_quintile": 5, "pm_quintile": 4},
    {"lsoa_code": "X01000002", "imd_release": "synthetic", "imd_decile": 10, "imd_quintile": 5,
     "core20": False, "no2_quintile": 1, "pm_quintile": 1},
]  # fmt: skip


def reg(pid, practice="X1", start="2010-01-01", end=None):
    return {"patient_id": pid, "practice_id": practice, "start_date": d(start),
            "end_date": d(end) if end else None}  # fmt: skip


def ev(pid, date, code, system="snomedct"):
    return {"patient_id": pid, "date": d(date), "system": system, "code": code}


def med(pid, date, code, quantity=1.0, daily=None, system="dmd"):
    return {"patient_id": pid, "date": d(date), "system": system, "code": code,
            "quantity": quantity, "daily_dose_mg": daily}  # fmt: skip


def addr(pid, lsoa, start="2000-01-01", end=None):
    return {"patient_id": pid, "start_date": d(start), "end_date": d(end) if end else None,
            "lsoa_code": lsoa, "care_home": False}  # fmt: skip


@pytest.fixture(scope="module")
def spec_store(tmp_path_factory):
    """Each patient tests one rule; the comment says what is expected."""
    P = []
    R = []
    E = []
    M = []
    A = []
    ADM = []
    ED = []

    def asthmatic(pid, practice="X1", lsoa="X01000001", saba_dates=("2026-06-01",), **kw):
        P.append(patient(pid, **kw))
        R.append(reg(pid, practice))
        E.append(ev(pid, "2015-03-01", "195967001"))
        if lsoa is not None:
            A.append(addr(pid, lsoa))
        for date in saba_dates:
            M.append(med(pid, date, SABA))

    # window edges for SABA: 12 months before the index (2025-11-23) is outside
    asthmatic("edge", saba_dates=("2025-11-23", "2025-11-24", "2026-11-23", "2026-11-24"))
    # 3 SABA, one issue of 2 inhalers still counts once (issues, not inhalers)
    asthmatic("saba3", saba_dates=("2026-01-01", "2026-02-01", "2026-03-01"))
    M[-1] = med("saba3", "2026-03-01", SABA, quantity=2.0)
    # resolved after diagnosis: off the register
    asthmatic("resolved")
    E.append(ev("resolved", "2020-01-01", "162660004"))
    # resolved on the same day as the latest diagnosis: off (QOF: resolved < diagnosis date)
    asthmatic("resolved_same_day")
    E.append(ev("resolved_same_day", "2015-03-01", "162660004"))
    # diagnosed again after a resolved code: on the register
    asthmatic("relapsed")
    E.append(ev("relapsed", "2010-01-01", "162660004"))
    # no asthma medicine in 12 months: off the register (QOF AST001)
    asthmatic("untreated", saba_dates=("2025-01-01",))
    # deregistered before the index date: off; moved practice during the year: new practice
    asthmatic("left")
    R[-1] = reg("left", "X1", "2010-01-01", "2026-10-01")
    asthmatic("moved", practice="X1", lsoa=None)
    R[-1] = reg("moved", "X1", "2010-01-01", "2026-05-31")
    R.append(reg("moved", "X2", "2026-06-01"))
    A.append(addr("moved", "X01000001", "2000-01-01", "2026-05-31"))
    A.append(addr("moved", "X01000002", "2026-06-01"))
    # no address at all: kept, unknown area
    asthmatic("homeless", lsoa=None)
    # dead before the index date: off
    asthmatic("died", date_of_death=d("2026-09-01"))
    # OCS: two issues 3 days apart are one course; 3rd course later; mg = qty × strength
    asthmatic("ocs")
    M += [
        med("ocs", "2026-01-10", PRED5, 40),
        med("ocs", "2026-01-13", PRED5, 10),
        med("ocs", "2026-04-01", PRED25, 10),
        med("ocs", "2026-08-01", PRED5, 30),
    ]
    # the same issues recorded under the SNOMED CT system (as FHIR and OMOP sources send
    # dm+d products): the same courses and mg
    asthmatic("ocs_sct")
    M += [
        med("ocs_sct", "2026-01-10", PRED5, 40, system="snomedct"),
        med("ocs_sct", "2026-01-13", PRED5, 10, system="snomedct"),
        med("ocs_sct", "2026-04-01", PRED25, 10, system="snomedct"),
        med("ocs_sct", "2026-08-01", PRED5, 30, system="snomedct"),
    ]
    # maintenance prednisolone 5 mg/day (28 x 5 mg every 4 weeks) is not a course; a
    # 40 mg burst is; an unstructured issue counts as a course
    asthmatic("maint")
    M += [med("maint", f"2026-{m:02d}-02", PRED5, 28, 5.0) for m in range(1, 11)]
    M += [med("maint", "2026-03-20", PRED5, 40, 40.0), med("maint", "2026-06-20", PRED5, 40)]
    # the maintenance dose is the one the patient is on: the latest maintenance issue's
    # (stepped up from 2.5 to 7.5 mg/day: 7.5, over the 5 mg/day referral trigger; tapered
    # from 7.5 to 2.5: 2.5; two maintenance issues on the latest day: the higher)
    asthmatic("stepup")
    M += [med("stepup", "2026-01-05", PRED5, 14, 2.5)]
    M += [med("stepup", f"2026-{m:02d}-05", PRED5, 42, 7.5) for m in range(2, 10)]
    asthmatic("taper")
    M += [med("taper", f"2026-{m:02d}-05", PRED5, 42, 7.5) for m in range(1, 9)]
    M += [med("taper", "2026-09-05", PRED5, 14, 2.5)]
    asthmatic("sameday")
    M += [med("sameday", "2026-09-05", PRED5, 28, 5.0), med("sameday", "2026-09-05", PRED5, 6, 1.0)]
    # unknown doses: issues with no quantity add nothing to the known mg and are counted
    # apart (never read as 0 mg); one known 40 x 5 mg issue plus one unknown
    asthmatic("nodose")
    M += [med("nodose", "2026-02-01", PRED5, None), med("nodose", "2026-06-01", PRED5, None)]
    asthmatic("somedose")
    M += [med("somedose", "2026-02-01", PRED5, 40), med("somedose", "2026-06-01", PRED25, None)]
    # ICS: high dose and counts; AMR inputs
    asthmatic("ics", saba_dates=())
    M += [med("ics", f"2026-0{m}-01", ICS_HIGH) for m in range(1, 6)]
    # hospital: ED (ICD-10 and SNOMED), emergency admission with ITU; elective ignored
    asthmatic("hosp")
    ED += [
        {"patient_id": "hosp", "arrival_datetime": dt.datetime(2026, 2, 1, 23, 50),
         "diagnosis_system": "snomedct", "diagnosis": "281239006"},
        {"patient_id": "hosp", "arrival_datetime": dt.datetime(2026, 3, 1, 10),
         "diagnosis_system": "icd10", "diagnosis": "J459"},
        {"patient_id": "hosp", "arrival_datetime": dt.datetime(2026, 3, 2, 10),
         "diagnosis_system": "icd10", "diagnosis": "S001"},
    ]  # fmt: skip
    ADM += [
        {"patient_id": "hosp", "admission_date": d("2026-03-01"), "admission_method": "emergency",
         "primary_diagnosis": "J46X", "critical_care": True},
        {"patient_id": "hosp", "admission_date": d("2026-04-01"), "admission_method": "elective",
         "primary_diagnosis": "J459", "critical_care": False},
    ]  # fmt: skip
    # basics and smoking: latest smoking code wins
    asthmatic("care")
    E += [ev("care", "2026-02-01", "394700004"), ev("care", "2026-02-01", "406162001"),
          ev("care", "2025-01-01", "170614009"), ev("care", "2020-01-01", "77176002"),
          ev("care", "2024-01-01", "8517006")]  # fmt: skip
    asthmatic("smoker")
    E += [ev("smoker", "2020-01-01", "8517006"), ev("smoker", "2025-01-01", "77176002")]
    # referral and uncontrolled 6 months ago (6 SABA in the year to 2026-05-23)
    asthmatic("longflag", saba_dates=tuple(f"2025-{m:02d}-15" for m in range(7, 13))
              + tuple(f"2026-{m:02d}-15" for m in range(1, 7)))  # fmt: skip
    E.append(ev("longflag", "2026-06-01", REFERRAL))

    # ISAC pathway timers with the curated referral / clinic lists. Everyone below is
    # uncontrolled now and 6 months ago (index − 6 months = 2026-05-23): 6+ SABA in both years.
    def uncontrolled(pid, *events):
        asthmatic(pid, saba_dates=tuple(f"2025-{m:02d}-15" for m in range(7, 13))
                  + tuple(f"2026-{m:02d}-15" for m in range(1, 7)))  # fmt: skip
        E.extend(ev(pid, date, code) for date, code in events)

    # referred 6 months − 1 day before the index (inside the 6 months): not flagged;
    # 6 months + 1 day before: flagged
    uncontrolled("ref_inside", ("2026-05-24", REFERRAL))
    uncontrolled("ref_outside", ("2026-05-22", REFERRAL))
    # referral → first clinic visit: 126 days (18 weeks exactly) vs 127
    uncontrolled("wait126", ("2026-05-01", REFERRAL), ("2026-09-04", SEEN))
    uncontrolled("wait127", ("2026-05-01", REFERRAL), ("2026-09-05", SEEN_CHEST))
    # a visit before the referral is an older episode: still waiting
    uncontrolled("seen_before", ("2026-03-01", SEEN), ("2026-06-01", REFERRAL))
    # a referral after the index date is not known yet: the earlier one counts
    uncontrolled("ref_after", ("2026-01-01", REFERRAL), ("2026-11-24", REFERRAL))
    # a visit after the index date is not known yet; the first of two visits counts
    uncontrolled("seen_after", ("2026-10-01", REFERRAL), ("2026-11-24", SEEN))
    uncontrolled("two_visits", ("2026-02-01", REFERRAL), ("2026-04-01", SEEN),
                 ("2026-10-01", SEEN))  # fmt: skip
    # severe asthma centre: 8 weeks = 56 days vs 57 (stand-in codes; see asthma_helpers)
    uncontrolled("sac56", ("2026-06-01", REFERRAL), ("2026-06-20", SEEN),
                 ("2026-08-01", SAC_REFERRAL), ("2026-09-26", SAC_SEEN))  # fmt: skip
    uncontrolled("sac57", ("2026-08-01", SAC_REFERRAL), ("2026-09-27", SAC_SEEN))
    store = write_store(
        tmp_path_factory.mktemp("asthma_spec"),
        patients=P, registrations=R, events=E, medications=M, addresses=A,
        admissions=ADM, emergency_attendances=ED, practices=PRACTICES, areas=AREAS,
    )  # fmt: skip
    return store


@pytest.fixture(scope="module")
def results(spec_store):
    return {}


def markers_for(spec_store, engine, results):
    if engine not in results:
        con = spec_store.connect(engine)
        results[engine] = dataset.markers(con, CODES, INDEX, engine=engine).set_index("patient_id")
    return results[engine]


def test_register_membership(spec_store, engine, results):
    m = markers_for(spec_store, engine, results)
    expected = {"edge", "saba3", "relapsed", "moved", "homeless", "ocs", "ocs_sct", "ics",
                "hosp", "care", "smoker", "longflag", "maint", "stepup", "taper", "sameday",
                "nodose", "somedose", *PATHWAY}  # fmt: skip
    assert set(m.index) == expected


def test_lookback_window_edges(spec_store, engine, results):
    m = markers_for(spec_store, engine, results)
    # 2025-11-23 (exactly 12 months) out, 2025-11-24 in, index day in, day after out
    assert m.loc["edge", "saba_count_12m"] == 2
    # 3 issues, the last of 2 inhalers: 3 (issues are counted, not inhalers)
    assert m.loc["saba3", "saba_count_12m"] == 3


def test_moved_practice_and_address_take_the_index_date(spec_store, engine, results):
    m = markers_for(spec_store, engine, results)
    assert m.loc["moved", "practice_id"] == "X2"
    assert m.loc["moved", "pcn_id"] == "PCN2"
    assert m.loc["moved", "lsoa_code"] == "X01000002"
    assert m.loc["moved", "imd_quintile"] == 5


def test_no_address_is_unknown_not_dropped(spec_store, engine, results):
    m = markers_for(spec_store, engine, results)
    assert pd.isna(m.loc["homeless", "imd_quintile"])
    assert not m.loc["homeless", "area_known"]


def test_oral_steroid_courses_and_mg(spec_store, engine, results):
    m = markers_for(spec_store, engine, results)
    assert m.loc["ocs", "ocs_courses_12m"] == 3
    assert m.loc["ocs", "prednisolone_mg_12m"] == 40 * 5 + 10 * 5 + 10 * 25 + 30 * 5
    assert m.loc["ocs", "ocs_months_12m"] == 3
    same = ["ocs_courses_12m", "prednisolone_mg_12m", "prednisolone_unknown_issues_12m"]
    assert m.loc["ocs_sct", same].tolist() == m.loc["ocs", same].tolist()
    assert m.loc["saba3", "ocs_courses_12m"] == 0
    assert not m.loc["ocs", "on_maintenance_ocs"]
    assert m.loc["maint", "ocs_courses_12m"] == 2
    assert m.loc["maint", "on_maintenance_ocs"]
    assert m.loc["maint", "ocs_daily_mg"] == 5.0
    assert m.loc["stepup", "ocs_daily_mg"] == 7.5 and m.loc["stepup", "on_maintenance_ocs"]
    assert m.loc["taper", "ocs_daily_mg"] == 2.5
    assert m.loc["sameday", "ocs_daily_mg"] == 5.0
    assert m.loc["maint", "prednisolone_mg_12m"] == 10 * 140 + 2 * 200
    assert m.loc["saba3", "prednisolone_mg_12m"] == 0


def test_unknown_prednisolone_doses_are_counted_apart(spec_store, engine, results):
    m = markers_for(spec_store, engine, results)
    assert m.loc["nodose", "ocs_courses_12m"] == 2
    assert m.loc["nodose", "prednisolone_mg_12m"] == 0
    assert m.loc["nodose", "prednisolone_unknown_issues_12m"] == 2
    assert m.loc["somedose", "prednisolone_mg_12m"] == 200
    assert m.loc["somedose", "prednisolone_unknown_issues_12m"] == 1
    assert m.loc["ocs", "prednisolone_unknown_issues_12m"] == 0
    assert m.loc["saba3", "prednisolone_unknown_issues_12m"] == 0
    words = rules.tier(m.reset_index())["prednisolone_dose"]
    assert dict(zip(m.index, words, strict=True))["nodose"] == (
        "unknown (2 issues with unknown dose)"
    )


def test_ics_and_high_dose(spec_store, engine, results):
    m = markers_for(spec_store, engine, results)
    assert m.loc["ics", "ics_count_12m"] == 5
    assert m.loc["ics", "high_dose_ics"]
    assert not m.loc["saba3", "high_dose_ics"]


def test_hospital_attacks(spec_store, engine, results):
    m = markers_for(spec_store, engine, results)
    assert m.loc["hosp", "ed_attendances_12m"] == 2
    assert m.loc["hosp", "admissions_12m"] == 1
    assert m.loc["hosp", "critical_care_attacks_12m"] == 1


def test_basics_and_smoking(spec_store, engine, results):
    m = markers_for(spec_store, engine, results)
    assert m.loc["care", "review_12m"] and m.loc["care", "action_plan_12m"]
    assert not m.loc["care", "inhaler_technique_12m"]  # 2025-01-01 is outside the year
    assert not m.loc["care", "smoker"]  # ex-smoker code is the latest
    assert m.loc["smoker", "smoker"]
    assert not m.loc["saba3", "review_12m"]


def test_isac_earlier_flag_and_referral(spec_store, engine, results):
    m = markers_for(spec_store, engine, results)
    assert m.loc["longflag", "uncontrolled_earlier"]
    assert not m.loc["saba3", "uncontrolled_earlier"]
    assert m.loc["longflag", "referral_date"] == pd.Timestamp("2026-06-01")
    assert pd.isna(m.loc["saba3", "referral_date"])


PATHWAY = ("ref_inside", "ref_outside", "wait126", "wait127", "seen_before", "ref_after",
           "seen_after", "two_visits", "sac56", "sac57")  # fmt: skip


def timers_for(spec_store, engine, results):
    m = markers_for(spec_store, engine, results).loc[list(PATHWAY)].reset_index()
    out = rules.evaluate(m, INDEX, seen_recorded=CODES.seen_recorded())
    return out.set_index("patient_id")


def test_pathway_dates_take_the_latest_referral_and_the_first_visit_after_it(
    spec_store, engine, results
):
    m = markers_for(spec_store, engine, results)
    assert m.loc["ref_after", "referral_date"] == pd.Timestamp("2026-01-01")
    assert pd.isna(m.loc["seen_before", "secondary_care_seen_date"])
    assert pd.isna(m.loc["seen_after", "secondary_care_seen_date"])
    assert m.loc["two_visits", "secondary_care_seen_date"] == pd.Timestamp("2026-04-01")
    assert m.loc["sac56", "sac_referral_date"] == pd.Timestamp("2026-08-01")
    assert pd.isna(m.loc["ref_inside", "sac_referral_date"])


def test_pathway_timers_at_their_boundaries(spec_store, engine, results):
    t = timers_for(spec_store, engine, results)
    assert t["uncontrolled"].all() and t["uncontrolled_earlier"].all()
    # 6 months: referred 6 months − 1 day ago is in time, 6 months + 1 day ago is not
    assert not t.loc["ref_inside", "flagged_no_referral"]
    assert t.loc["ref_outside", "flagged_no_referral"]
    assert t.loc["ref_after", "flagged_no_referral"]  # the 2026-11-24 referral is ignored
    # 18 weeks = 126 days: no breach; 127: breach
    assert t.loc["wait126", "secondary_care_wait_days"] == 126
    assert not t.loc["wait126", "secondary_care_breach"]
    assert t.loc["wait127", "secondary_care_wait_days"] == 127
    assert t.loc["wait127", "secondary_care_breach"]
    assert not t.loc["wait127", "secondary_care_waiting"]
    # seen before the referral: still waiting, timed to the index date (175 days)
    assert t.loc["seen_before", "secondary_care_waiting"]
    assert t.loc["seen_before", "secondary_care_wait_days"] == 175
    assert t.loc["seen_before", "secondary_care_breach"]
    assert t.loc["seen_after", "secondary_care_wait_days"] == 53
    assert t.loc["seen_after", "secondary_care_waiting"]
    assert t.loc["two_visits", "secondary_care_wait_days"] == 59
    # 8 weeks = 56 days: no breach; 57: breach
    assert t.loc["sac56", "sac_wait_days"] == 56 and not t.loc["sac56", "sac_breach"]
    assert t.loc["sac57", "sac_wait_days"] == 57 and t.loc["sac57", "sac_breach"]
    assert pd.isna(t.loc["wait126", "sac_wait_days"])


def test_age(spec_store, engine, results):
    m = markers_for(spec_store, engine, results)
    assert m.loc["saba3", "age"] == 46
    assert m.loc["saba3", "age_band"] == "40-64"


@pytest.mark.spark
def test_engines_agree(spec_store, results):
    duck = markers_for(spec_store, "duckdb", results)
    spark = markers_for(spec_store, "spark", results)
    pd.testing.assert_frame_equal(duck, spark, check_dtype=False)
