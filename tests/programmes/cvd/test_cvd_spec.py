"""Spec tests for the CVD programme: tiny tables in, per-patient results out, on DuckDB
and on Spark (the same world, extracted once per engine).

Blood pressure expectations are CVDPREVENT's (documentation/cvdp_hypertension.md in
NHSDigital/cvd-prevent-tool): at target means <= 140/90 (<= 150/90 from 80); 1d above
180/120; 1c above 160/100; the NICE-strict switch moves only the target edge. Edges as
listed in PROGRAMMES.md section 3.6. Lipid and AF thresholds as PROGRAMMES.md 3.3-3.4.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from cvd_world import ENGINES, INDEX, World, make_codelists

from pophealth.programmes.cvd.config import DEFAULT_CONFIG, with_nice_non_hdl
from pophealth.programmes.cvd.extract import cvd_records
from pophealth.programmes.cvd.rules import apply_all, hypertension, lipids, qrisk
from pophealth.programmes.cvd.worklist import worklist
from pophealth.scores.qrisk3 import QRISK3_COLUMNS, QRISK3_DISCLAIMER, QRISK3_FLAGS, qrisk3


def _date(when):
    if isinstance(when, str):
        return pd.Timestamp(when)
    return pd.Timestamp(INDEX) - pd.Timedelta(days=when)


# -- the world ------------------------------------------------------------------------------

# (patient, age, [(days before index or ISO date, sbp, dbp), ...], CVDPREVENT, NICE-strict)
BP_CASES = [
    ("at_140_90", 60, [(10, 140, 90)], "0.1", "1a"),
    ("at_139_89", 60, [(10, 139, 89)], "0.1", "0.1"),
    ("at_141_91", 60, [(10, 141, 91)], "1a", "1a"),
    ("sbp_141", 60, [(10, 141, 80)], "1a", "1a"),
    ("dbp_91", 60, [(10, 120, 91)], "1a", "1a"),
    ("at_150_90_age79", 79, [(10, 150, 90)], "1a", "1a"),
    ("at_150_90_age80", 80, [(10, 150, 90)], "0.2", "1b"),
    ("at_151_90_age80", 80, [(10, 151, 90)], "1b", "1b"),
    ("at_160_100", 60, [(10, 160, 100)], "1a", "1a"),
    ("at_160_100_age85", 85, [(10, 160, 100)], "1b", "1b"),
    ("at_161_101", 60, [(10, 161, 101)], "1c", "1c"),
    ("dbp_101", 60, [(10, 130, 101)], "1c", "1c"),
    ("at_180_120", 60, [(10, 180, 120)], "1c", "1c"),
    ("at_179_119", 60, [(10, 179, 119)], "1c", "1c"),
    ("sbp_180", 60, [(10, 180, 80)], "1c", "1c"),
    ("dbp_120", 60, [(10, 130, 120)], "1c", "1c"),
    ("at_181_121", 60, [(10, 181, 121)], "1d", "1d"),
    ("sbp_181", 60, [(10, 181, 70)], "1d", "1d"),
    ("dbp_121", 60, [(10, 150, 121)], "1d", "1d"),
    # invalid readings: SBP 49 or DBP 19 do not count; an earlier valid one does
    ("sbp_49_only", 60, [(10, 49, 80)], "1e", "1e"),
    ("dbp_19_only", 60, [(10, 120, 19)], "1e", "1e"),
    ("sbp_50_dbp_20", 60, [(10, 50, 20)], "0.1", "0.1"),
    ("invalid_then_valid", 60, [(10, 49, 80), (40, 170, 95)], "1c", "1c"),
    # same-day minima: lowest systolic and lowest diastolic of the latest day
    ("same_day_min", 60, [(5, 150, 85), (5, 138, 95), (5, 145, 88)], "0.1", "0.1"),
    ("same_day_min_above", 60, [(5, 190, 85), (5, 165, 125)], "1c", "1c"),
    # most recent day wins over a worse older one
    ("latest_day_wins", 60, [(5, 130, 80), (100, 200, 130)], "0.1", "0.1"),
    # 12-month look-back: exactly 12 months before counts; a day earlier does not
    ("edge_12_months", 60, [("2024-03-31", 170, 80)], "1c", "1c"),
    ("beyond_12_months", 60, [("2024-03-30", 170, 80)], "1e", "1e"),
    ("no_bp", 60, [], "1e", "1e"),
    ("future_only", 60, [(-5, 170, 80)], "1e", "1e"),
]
BP_EXTRA = {
    "not_hypertensive": ("-1", "-1"),
    "resolved": ("-1", "-1"),
    "sbp_only_latest": ("0.1", "0.1"),
}

# Age is taken on the day of the reading used, not on the index date: CVDPREVENT's
# filter_bp_frames adds the age at the journal date and classify_htn_risk_group splits
# under-80 / 80-and-over on it (NHSDigital/cvd-prevent-tool, src/cvdp/
# preprocess_cvdp_htn.py; PROGRAMMES.md section 3.2).
# (patient, date of birth, reading date, sbp, dbp, CVDPREVENT, NICE-strict)
BP_AGE_CASES = [
    # 79 on the reading day, 80 on the index date: under-80 target (145 > 140)
    ("turned_80_after_reading", "1945-02-01", "2025-01-15", 145, 85, "1a", "1a"),
    # reading on the 80th birthday: the 80-and-over target
    ("reading_on_80th_birthday", "1945-01-15", "2025-01-15", 145, 85, "0.2", "0.2"),
    # the day before the 80th birthday: still under 80
    ("reading_day_before_80", "1945-01-16", "2025-01-15", 150, 90, "1a", "1a"),
]
BP_EXTRA |= {pid: (g, n) for pid, _, _, _, _, g, n in BP_AGE_CASES}


def build_world() -> World:
    w = World()
    for pid, age, readings, _, _ in BP_CASES:
        w.patient(pid, age=age)
        w.event(pid, "hypertension", "2015-01-01")
        for when, s, d in readings:
            w.bp(pid, _date(when), s, d)
    for pid, born, when, s, d, _, _ in BP_AGE_CASES:
        w.patient(pid, born=born)
        w.event(pid, "hypertension", "2015-01-01")
        w.bp(pid, _date(when), s, d)
    w.patient("not_hypertensive", age=60)
    w.bp("not_hypertensive", _date(10), 200, 130)
    w.patient("resolved", age=60)
    w.event("resolved", "hypertension", "2015-01-01")
    w.event("resolved", "hypertension_resolved", "2020-01-01")
    w.bp("resolved", _date(10), 150, 80)
    # systolic only on the latest day: that day has no pair; the earlier paired day counts
    w.patient("sbp_only_latest", age=60)
    w.event("sbp_only_latest", "hypertension", "2015-01-01")
    w.bp("sbp_only_latest", _date(3), 200, None)
    w.bp("sbp_only_latest", _date(30), 135, 85)

    # -- QRISK3 inputs ----------------------------------------------------------------------
    # The published test vector's baseline woman: 64, BMI 80/1.78^2, Indian, ratio 4,
    # SBP 180 with SD 20 (readings 160, 200, 180), non-smoker -> 17.2%.
    w.patient("q_full", age=64, sex="female", ethnicity_16="H", practice="XP002")
    w.event("q_full", "bmi", _date(300), 80 / 1.78**2)
    for days, s in ((900, 160), (600, 200), (20, 180)):
        w.event("q_full", "sbp", _date(days), s)
    w.event("q_full", "total_cholesterol", _date(100), 6.0)
    w.event("q_full", "hdl", _date(100), 1.5)
    w.event("q_full", "smoking_never", _date(400))
    # Same woman on a statin: not on the QRISK worklist.
    w.patient("q_full_statin", age=64, sex="female", ethnicity_16="H", practice="XP002")
    w.event("q_full_statin", "bmi", _date(300), 80 / 1.78**2)
    for days, s in ((900, 160), (600, 200), (20, 180)):
        w.event("q_full_statin", "sbp", _date(days), s)
    w.event("q_full_statin", "total_cholesterol", _date(100), 6.0)
    w.event("q_full_statin", "hdl", _date(100), 1.5)
    w.issue("q_full_statin", "atorvastatin_20", _date(20))
    # the same dm+d id recorded under the SNOMED CT system (as FHIR and OMOP send it)
    w.patient("statin_as_snomed", age=60)
    w.issue("statin_as_snomed", "atorvastatin_20", _date(20), system="snomedct")
    # Height (cm) and weight; TC and HDL; latest smoking code wins (ex before, heavy now);
    # ethnicity not stated; one SBP only (SD imputed); an older height in metres.
    w.patient("q_derived", age=64, sex="male", ethnicity_16="Z", practice="XP003")
    w.event("q_derived", "height", "2000-05-01", 1.70)
    w.event("q_derived", "height", "2010-05-01", 178)
    w.event("q_derived", "weight", _date(200), 80)
    w.event("q_derived", "weight", "2010-05-01", 95)  # older than 5 years: ignored
    w.event("q_derived", "bmi", _date(100), 5.0)  # implausible: ignored
    w.event("q_derived", "total_cholesterol", _date(50), 6.0)
    w.event("q_derived", "hdl", _date(50), 1.5)
    w.event("q_derived", "smoking_ex", _date(800))
    w.event("q_derived", "smoking_heavy", _date(30))
    w.event("q_derived", "sbp", _date(40), 150)
    # The only height was measured at 12 (1.50 m); weight 80 kg now, at 30. QRISK3 needs
    # adult height (docs/programmes/cvd.md): a child's height is not used, BMI is imputed
    # (80 / 1.50^2 = 35.6 would have overstated the BMI by ten points).
    w.patient("q_child_height", age=30, sex="male", practice="XP003")
    w.event("q_child_height", "height", "2007-06-01", 150)
    w.event("q_child_height", "weight", _date(100), 80)
    # Nothing recorded at all.
    w.patient("q_none", age=50, sex="male", practice="XP003")
    # Too young for QRISK3.
    w.patient("q_young", age=22, sex="female", practice="XP003")

    # -- lipids -----------------------------------------------------------------------------
    w.patient("cvd_no_statin", age=70, practice="XP003")
    w.event("cvd_no_statin", "ihd", "2018-01-01")
    w.patient("cvd_old_statin", age=70, practice="XP003")
    w.event("cvd_old_statin", "ihd", "2018-01-01")
    w.issue("cvd_old_statin", "atorvastatin_80", _date(220))  # > 6 months ago
    w.patient("cvd_nonhdl_2_6", age=70, practice="XP003")
    w.event("cvd_nonhdl_2_6", "ihd", "2018-01-01")
    w.issue("cvd_nonhdl_2_6", "atorvastatin_20", _date(30))
    w.event("cvd_nonhdl_2_6", "non_hdl", _date(60), 2.6)
    w.event("cvd_nonhdl_2_6", "ldl", _date(60), 1.8)
    w.patient("cvd_ldl_2_1_max", age=70, practice="XP003")
    w.event("cvd_ldl_2_1_max", "stroke", "2019-01-01")
    w.event("cvd_ldl_2_1_max", "tia", "2018-01-01")  # (the stroke list holds TIA too)
    w.issue("cvd_ldl_2_1_max", "atorvastatin_80", _date(30))
    w.event("cvd_ldl_2_1_max", "ldl", _date(60), 2.1)
    w.event("cvd_ldl_2_1_max", "non_hdl", _date(60), 2.0)
    w.patient("cvd_at_target", age=70, practice="XP003")
    w.event("cvd_at_target", "pad", "2019-01-01")
    w.issue("cvd_at_target", "simvastatin_40", _date(30), daily_dose_mg=40)
    w.event("cvd_at_target", "non_hdl", _date(60), 2.5)
    w.event("cvd_at_target", "ldl", _date(60), 2.0)
    # Non-HDL is the latest result (PROGRAMMES.md section 3.6 item 2; NICE NG238 target on
    # the latest lipid profile): the more recent of a recorded non-HDL and TC - HDL from
    # one day's sample; on the same day the recorded value wins.
    # Recorded 3.0 600 days ago, TC 4.0 / HDL 2.0 20 days ago -> 2.0, at target.
    w.patient("nonhdl_stale_recorded", age=70, practice="XP003")
    w.event("nonhdl_stale_recorded", "ihd", "2015-01-01")
    w.issue("nonhdl_stale_recorded", "atorvastatin_80", _date(30))
    w.event("nonhdl_stale_recorded", "non_hdl", _date(600), 3.0)
    w.event("nonhdl_stale_recorded", "total_cholesterol", _date(20), 4.0)
    w.event("nonhdl_stale_recorded", "hdl", _date(20), 2.0)
    # Recorded 3.0 20 days ago beats TC 4.0 / HDL 2.0 300 days ago -> 3.0, above target.
    w.patient("nonhdl_recent_recorded", age=70, practice="XP003")
    w.event("nonhdl_recent_recorded", "ihd", "2015-01-01")
    w.issue("nonhdl_recent_recorded", "atorvastatin_80", _date(30))
    w.event("nonhdl_recent_recorded", "non_hdl", _date(20), 3.0)
    w.event("nonhdl_recent_recorded", "total_cholesterol", _date(300), 4.0)
    w.event("nonhdl_recent_recorded", "hdl", _date(300), 2.0)
    # TC and HDL on different days are not paired: TC 5.5 alone 20 days ago, the latest
    # day with both is 300 days ago (4.0 - 2.0) -> 2.0 (pairing 5.5 - 2.0 gave 3.5).
    w.patient("nonhdl_unpaired_tc", age=70, practice="XP003")
    w.event("nonhdl_unpaired_tc", "ihd", "2015-01-01")
    w.issue("nonhdl_unpaired_tc", "atorvastatin_80", _date(30))
    w.event("nonhdl_unpaired_tc", "total_cholesterol", _date(20), 5.5)
    w.event("nonhdl_unpaired_tc", "total_cholesterol", _date(300), 4.0)
    w.event("nonhdl_unpaired_tc", "hdl", _date(300), 2.0)
    # Same day: recorded 2.4 and TC 5.0 / HDL 2.0 (3.0) -> the recorded 2.4.
    w.patient("nonhdl_same_day", age=70, practice="XP003")
    w.event("nonhdl_same_day", "ihd", "2015-01-01")
    w.issue("nonhdl_same_day", "atorvastatin_80", _date(30))
    w.event("nonhdl_same_day", "non_hdl", _date(20), 2.4)
    w.event("nonhdl_same_day", "total_cholesterol", _date(20), 5.0)
    w.event("nonhdl_same_day", "hdl", _date(20), 2.0)
    for pid, tc, fh in (
        ("tc_7_5", 7.5, False),
        ("tc_7_6", 7.6, False),
        ("tc_9_0", 9.0, False),
        ("tc_9_1", 9.1, False),
        ("tc_9_5_fh", 9.5, True),
    ):
        w.patient(pid, age=40, sex="female", practice="XP003")
        w.event(pid, "total_cholesterol", _date(30), tc)
        if fh:
            w.event(pid, "familial_hypercholesterolaemia", "2010-01-01")

    # -- lipid plausibility and units (CvdConfig lipid ranges; mg/dL ÷ 38.67) ----------------
    # A typed 52 (for 5.2) is set aside before the latest is chosen: the earlier 5.2 counts.
    w.patient("tc_52_typo", age=45, sex="female", practice="XP003")
    w.event("tc_52_typo", "total_cholesterol", _date(10), 52.0)
    w.event("tc_52_typo", "total_cholesterol", _date(200), 5.2)
    # 390 mg/dL with its unit is 10.1 mmol/L (refer); the same number with no unit is not
    # a plausible mmol/L and is set aside; 5.2 labelled mg/dL (0.13 mmol/L) likewise.
    w.patient("tc_390_mg_dl", age=45, sex="female", practice="XP003")
    w.event("tc_390_mg_dl", "total_cholesterol", _date(10), 390.0, unit="mg/dL")
    w.patient("tc_390_no_unit", age=45, sex="female", practice="XP003")
    w.event("tc_390_no_unit", "total_cholesterol", _date(10), 390.0)
    w.patient("tc_5_2_labelled_mg_dl", age=45, sex="female", practice="XP003")
    w.event("tc_5_2_labelled_mg_dl", "total_cholesterol", _date(10), 5.2, unit="mg/dL")
    # CVD on a statin: LDL 116 "MG / DL" (any case and spacing) = 3.0 mmol/L, above 2.0;
    # the same number with no unit is set aside (no LDL: not on list (b) for it).
    for pid, unit in (("ldl_116_mg_dl", "MG / DL"), ("ldl_116_no_unit", None)):
        w.patient(pid, age=70, practice="XP003")
        w.event(pid, "ihd", "2015-01-01")
        w.issue(pid, "atorvastatin_20", _date(30))
        w.event(pid, "ldl", _date(20), 116.0, unit=unit)
    # A recorded non-HDL of 35 is set aside: the earlier 2.0 is the latest, at target.
    w.patient("nonhdl_35_typo", age=70, practice="XP003")
    w.event("nonhdl_35_typo", "ihd", "2015-01-01")
    w.issue("nonhdl_35_typo", "atorvastatin_20", _date(30))
    w.event("nonhdl_35_typo", "non_hdl", _date(10), 35.0)
    w.event("nonhdl_35_typo", "non_hdl", _date(300), 2.0)
    # HDL above TC on one day (1.5 - 2.0 = -0.5) is no non-HDL: the recorded 3.0 stands.
    w.patient("pair_hdl_above_tc", age=70, practice="XP003")
    w.event("pair_hdl_above_tc", "ihd", "2015-01-01")
    w.issue("pair_hdl_above_tc", "atorvastatin_20", _date(30))
    w.event("pair_hdl_above_tc", "non_hdl", _date(300), 3.0)
    w.event("pair_hdl_above_tc", "total_cholesterol", _date(20), 1.5)
    w.event("pair_hdl_above_tc", "hdl", _date(20), 2.0)
    # TC 232 and HDL 58 mg/dL on one day: 6.0 and 1.5 mmol/L, ratio 4 for QRISK3.
    w.patient("pair_mg_dl", age=64, sex="female", ethnicity_16="H", practice="XP003")
    w.event("pair_mg_dl", "total_cholesterol", _date(50), 232.0, unit="mg/dL")
    w.event("pair_mg_dl", "hdl", _date(50), 58.0, unit="mg/dL")
    # A recorded ratio of 45 is set aside: the earlier 4.0 is the latest (present).
    w.patient("ratio_45_typo", age=64, sex="female", practice="XP003")
    w.event("ratio_45_typo", "chol_hdl_ratio", _date(10), 45.0)
    w.event("ratio_45_typo", "chol_hdl_ratio", _date(400), 4.0)

    # -- QRISK3 treatment flags: regular use = issues in 12 months ---------------------------
    w.patient("treated_htn", age=50, practice="XP005")
    w.event("treated_htn", "hypertension", "2015-01-01")
    w.bp("treated_htn", _date(10), 130, 80)
    w.issue("treated_htn", "ramipril", _date(40))
    w.patient("antipsychotic_1_issue", age=50, practice="XP005")
    w.issue("antipsychotic_1_issue", "quetiapine", _date(40))
    w.patient("antipsychotic_2_issues", age=50, practice="XP005")
    w.issue("antipsychotic_2_issues", "quetiapine", _date(40))
    w.issue("antipsychotic_2_issues", "quetiapine", _date(70))
    w.patient("steroid_2_issues", age=50, practice="XP005")
    w.issue("steroid_2_issues", "prednisolone", _date(40))
    w.issue("steroid_2_issues", "prednisolone", _date(70))

    # -- atrial fibrillation ------------------------------------------------------------------
    # 76-year-old woman with hypertension: CHA2DS2-VASc 2 + 1 + 1 = 4; aspirin only; ORBIT:
    # age 1 + Hb 110 g/L (female < 120) 2 + eGFR 50 1 + antiplatelet 1 = 5 (high).
    w.patient("af_f76", age=76, sex="female", practice="XP004")
    w.event("af_f76", "atrial_fibrillation", "2020-01-01")
    w.event("af_f76", "hypertension", "2012-01-01")
    w.bp("af_f76", _date(15), 135, 80)
    w.issue("af_f76", "aspirin", _date(40))
    w.event("af_f76", "haemoglobin", _date(60), 110)
    w.event("af_f76", "egfr", _date(60), 50)
    w.patient("af_m66", age=66, sex="male", practice="XP004")  # score 1: consider
    w.event("af_m66", "atrial_fibrillation", "2020-01-01")
    w.patient("af_m50", age=50, sex="male", practice="XP004")  # score 0
    w.event("af_m50", "atrial_fibrillation", "2020-01-01")
    w.patient("af_f50", age=50, sex="female", practice="XP004")  # score 1, female: no
    w.event("af_f50", "atrial_fibrillation", "2020-01-01")
    w.patient("af_f80_doac", age=80, sex="female", practice="XP004")
    w.event("af_f80_doac", "atrial_fibrillation", "2020-01-01")
    w.issue("af_f80_doac", "apixaban", _date(60))
    # sex not recorded, 80, hypertension: at least 2 + 1 = 3 -> offer whatever the sex
    w.patient("af_unknown_sex_80", age=80, sex="unknown", practice="XP004")
    w.event("af_unknown_sex_80", "atrial_fibrillation", "2020-01-01")
    w.event("af_unknown_sex_80", "hypertension", "2012-01-01")
    # sex not recorded, 70, nothing else: 1 as a man (consider), 2 as a woman (offer)
    w.patient("af_unknown_sex_70", age=70, sex="unknown", practice="XP004")
    w.event("af_unknown_sex_70", "atrial_fibrillation", "2020-01-01")
    w.patient("af_m70_old_warfarin", age=70, sex="male", practice="XP004")
    w.event("af_m70_old_warfarin", "atrial_fibrillation", "2020-01-01")
    w.event("af_m70_old_warfarin", "heart_failure", "2021-01-01")
    w.issue("af_m70_old_warfarin", "warfarin", _date(400))
    return w


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return build_world().store(tmp_path_factory.mktemp("cvd-spec") / "store")


_RECORDS: dict[str, pd.DataFrame] = {}


@pytest.fixture(scope="module", params=ENGINES)
def records(request, store):
    """The world's records on one engine (extracted once per engine per module)."""
    return _records_on(request.param, store)


def _records_on(engine: str, store) -> pd.DataFrame:
    if engine not in _RECORDS:
        _RECORDS[engine] = cvd_records(store.connect(engine), INDEX, make_codelists())
    return _RECORDS[engine]


@pytest.fixture(scope="module")
def ruled(records):
    return apply_all(records, INDEX).set_index("patient_id")


# -- blood pressure ---------------------------------------------------------------------------


def test_bp_groups_at_every_boundary(records):
    strict = dataclasses.replace(DEFAULT_CONFIG, nice_strict=True)
    default = hypertension(records).set_index("patient_id")["htn_group"]
    nice = hypertension(records, config=strict).set_index("patient_id")["htn_group"]
    expected = {pid: (g, n) for pid, _, _, g, n in BP_CASES} | BP_EXTRA
    got = {pid: (default[pid], nice[pid]) for pid in expected}
    assert got == expected


def test_bp_reading_is_the_days_minima(records):
    r = records.set_index("patient_id")
    assert (r.loc["same_day_min", "bp_sbp"], r.loc["same_day_min", "bp_dbp"]) == (138, 85)
    assert r.loc["same_day_min", "bp_date"] == _date(5)
    assert (r.loc["invalid_then_valid", "bp_sbp"], r.loc["invalid_then_valid", "bp_dbp"]) == (
        170,
        95,
    )


def test_bp_target_uses_age_on_the_reading_day(ruled):
    """CVDPREVENT: age at the journal date of the reading (BP_AGE_CASES above)."""
    row = ruled.loc["turned_80_after_reading"]
    assert (row["age"], row["bp_age"]) == (80, 79)
    assert (row["htn_group"], row["htn_rag"]) == ("1a", "amber")
    assert ruled.loc["reading_on_80th_birthday", "bp_age"] == 80
    wl = worklist(ruled.reset_index()).set_index("patient_id")
    assert "above target (140/90)" in wl.loc["turned_80_after_reading", "reasons"]
    assert (
        "reading_on_80th_birthday" not in wl.index
        or "above target" not in (wl.loc["reading_on_80th_birthday", "reasons"])
    )


def test_nice_strict_reason_says_not_below_target(records):
    """Under NICE-strict targets 140/90 is not at target, but it is not above it either."""
    strict = dataclasses.replace(DEFAULT_CONFIG, nice_strict=True)
    ruled = apply_all(records, INDEX, config=strict)
    wl = worklist(ruled, config=strict).set_index("patient_id")
    reasons = wl.loc["at_140_90", "reasons"]
    assert "is not below target (140/90)" in reasons and "above target" not in reasons
    default = worklist(apply_all(records, INDEX)).set_index("patient_id")
    listed = default.loc["at_140_90", "reasons"] if "at_140_90" in default.index else ""
    assert "target (140/90)" not in listed  # at target (CVDPREVENT: 140/90 or below)


def test_same_day_review_follows_nice_severe_not_group_1d(ruled):
    """PROGRAMMES.md section 3.2: ">= 180/120 needs same-day clinical review" — NICE NG136
    severe hypertension is systolic >= 180 OR diastolic >= 120, while CVDPREVENT's 1d is
    > 180 / > 120. The group stays CVDPREVENT's; the same-day action follows NICE."""
    flagged = {
        pid
        for pid in ruled.index[ruled["bp_same_day_review"] == 1]
        if pid in {c[0] for c in BP_CASES} | set(BP_EXTRA)
    }
    # same_day_min_above (190/85 and 165/125 on one day) is not flagged: the day's
    # minima are 165/85, as for the group
    assert flagged == {"at_180_120", "sbp_180", "dbp_120", "at_181_121", "sbp_181", "dbp_121"}
    assert ruled.loc["at_180_120", "htn_group"] == "1c"  # CVDPREVENT unchanged
    assert ruled.loc["not_hypertensive", "bp_same_day_review"] == 0  # off the register
    wl = worklist(ruled.reset_index()).set_index("patient_id")
    for pid in ("at_180_120", "sbp_180", "dbp_120", "at_181_121"):
        assert wl.loc[pid, "next_action"] == "Same-day clinical review.", pid
        assert wl.loc[pid, "rag"] == "red"
        assert "is high (systolic above 160" not in wl.loc[pid, "reasons"]  # counted once
    assert wl.loc["at_180_120", "priority_score"] == wl.loc["at_181_121", "priority_score"]
    assert wl.loc["at_179_119", "next_action"].endswith("recheck within 4 weeks.")


# -- QRISK3 inputs ----------------------------------------------------------------------------


def test_qrisk_inputs_from_records_reproduce_the_published_vector(ruled):
    row = ruled.loc["q_full"]
    assert row["q_bmi"] == pytest.approx(80 / 1.78**2, abs=1e-12)
    assert (row["bmi_dq"], row["sbp_dq"], row["sbp_sd_dq"]) == ("present", "present", "present")
    assert row["q_sbp"] == 180
    assert row["q_sbp_sd"] == pytest.approx(20.0, abs=1e-9)
    assert row["q_chol_hdl_ratio"] == pytest.approx(4.0, abs=1e-12)
    assert row["chol_hdl_ratio_dq"] == "derived"
    assert (row["q_ethnicity"], row["ethnicity_dq"]) == (2, "present")
    assert (row["q_smoking"], row["smoking_dq"]) == (0, "present")
    assert (row["q_townsend"], row["townsend_dq"]) == (0.0, "imputed")
    assert round(row["qrisk3"], 1) == 17.2  # QRISK3_2019_test baseline, female
    # and exactly what the score core gives for the vector's inputs
    vector = {c: 0 for c in QRISK3_COLUMNS} | dict(
        sex="female", age=64, bmi=80 / 1.78**2, ethnicity=2, chol_hdl_ratio=4.0, sbp=180,
        sbp_sd=20.0,
    )  # fmt: skip
    expected = qrisk3(pd.DataFrame([vector]))["qrisk3"].iloc[0]
    assert row["qrisk3"] == pytest.approx(expected, abs=1e-9)


def test_qrisk_inputs_derived_and_imputed(ruled):
    row = ruled.loc["q_derived"]
    assert row["q_bmi"] == pytest.approx(80 / 1.78**2)  # latest height (cm) and weight
    assert row["bmi_dq"] == "derived"  # the recorded BMI of 5 is implausible
    assert (row["q_chol_hdl_ratio"], row["chol_hdl_ratio_dq"]) == (4.0, "derived")
    assert (row["q_smoking"], row["smoking_dq"]) == (4, "present")  # latest: heavy
    assert (row["q_ethnicity"], row["ethnicity_dq"]) == (1, "imputed")  # not stated
    assert row["sbp_sd_dq"] == "imputed"  # one reading only
    assert "BP variability" in row["qrisk_imputed"]
    child = ruled.loc["q_child_height"]
    assert pd.isna(child["height_m"])
    assert child["bmi_dq"] == "imputed"
    assert child["q_bmi"] == pytest.approx(none_bmi := ruled.loc["q_none", "q_bmi"])
    assert none_bmi == pytest.approx(25.89, abs=0.01)  # the male QRISK3 centre
    none = ruled.loc["q_none"]
    assert {none[f"{k}_dq"] for k in ("bmi", "sbp", "sbp_sd", "chol_hdl_ratio", "smoking")} == {
        "imputed"
    }
    assert none["q_smoking"] == 0
    assert not np.isnan(none["qrisk3"])
    young = ruled.loc["q_young"]
    assert young["qrisk_applies"] == 0
    assert "age" in young["qrisk_not_applied_because"]


def test_every_qrisk_input_comes_from_the_extract_or_the_rules(records):
    """Each QRISK3 input column is built from records: the extract gives every column
    qrisk3_inputs reads except treated hypertension, which the qrisk rule derives."""
    from pophealth.programmes.cvd.inputs import RECORD_COLUMNS

    assert set(RECORD_COLUMNS) - set(records.columns) == {"treated_hypertension"}
    assert set(QRISK3_FLAGS) <= set(qrisk(records, INDEX).columns)


def test_treated_hypertension_needs_an_antihypertensive_issue(records, store):
    """QRISK3 "treated hypertension" (PROGRAMMES.md 3.5; docs/programmes/cvd.md): on the
    register and an antihypertensive issued in 6 months. Without an antihypertensive code
    list nobody is treated (the register alone is not used)."""
    ruled = qrisk(hypertension(records), INDEX).set_index("patient_id")
    assert ruled.loc["treated_htn", "treated_hypertension"] == 1
    assert ruled.loc["at_139_89", "treated_hypertension"] == 0  # register, no issue
    no_list = dataclasses.replace(make_codelists(), antihypertensives=None)
    alt = cvd_records(store.connect("duckdb"), INDEX, no_list)
    alt = qrisk(hypertension(alt), INDEX).set_index("patient_id")
    assert alt.loc["treated_htn", "hypertension"] == 1
    assert alt.loc["treated_htn", "treated_hypertension"] == 0


def test_a_statin_recorded_under_snomed_ct_is_a_statin(records):
    """Every dm+d id is a SNOMED CT id and sources label it either way: a statin issue
    recorded as snomedct counts, with its code, as the dm+d-labelled one does."""
    r = records.set_index("patient_id")
    mine, dmd = r.loc["statin_as_snomed"], r.loc["q_full_statin"]
    assert mine["statin_n"] == dmd["statin_n"] == 1
    assert mine["statin_code"] == dmd["statin_code"]


def test_antipsychotic_and_steroid_issue_thresholds_are_separate(records, store):
    """QRISK3 atypical antipsychotic and regular oral steroid flags (PROGRAMMES.md 3.5):
    each has its own minimum number of issues in 12 months (CvdConfig)."""
    r = records.set_index("patient_id")
    flags = ["atypical_antipsychotics", "corticosteroids"]
    assert r.loc["antipsychotic_1_issue", flags].tolist() == [0, 0]  # default: 2 issues
    assert r.loc["antipsychotic_2_issues", flags].tolist() == [1, 0]
    assert r.loc["steroid_2_issues", flags].tolist() == [0, 1]
    # one issue is enough for antipsychotics; steroids need three: the two do not mix
    config = dataclasses.replace(
        DEFAULT_CONFIG, antipsychotic_min_issues=1, corticosteroid_min_issues=3
    )
    alt = cvd_records(store.connect("duckdb"), INDEX, make_codelists(), config)
    alt = alt.set_index("patient_id")
    assert alt.loc["antipsychotic_1_issue", flags].tolist() == [1, 0]
    assert alt.loc["antipsychotic_2_issues", flags].tolist() == [1, 0]
    assert alt.loc["steroid_2_issues", flags].tolist() == [0, 0]


# -- lipids -----------------------------------------------------------------------------------

LIPID_EXPECTED = {
    # patient: (lipid_a, lipid_b, lipid_c, lipid_d_assess, lipid_d_refer)
    "cvd_no_statin": (1, 0, 0, 0, 0),
    "cvd_old_statin": (1, 0, 0, 0, 0),
    "cvd_nonhdl_2_6": (0, 1, 0, 0, 0),
    "cvd_ldl_2_1_max": (0, 1, 0, 0, 0),
    "cvd_at_target": (0, 0, 0, 0, 0),
    "tc_7_5": (0, 0, 0, 0, 0),
    "tc_7_6": (0, 0, 0, 1, 0),
    "tc_9_0": (0, 0, 0, 1, 0),
    "tc_9_1": (0, 0, 0, 0, 1),
    "tc_9_5_fh": (0, 0, 0, 0, 0),
    "q_full": (0, 0, 1, 0, 0),
    "q_full_statin": (0, 0, 0, 0, 0),
}


def test_lipid_worklists(ruled):
    cols = ["lipid_a", "lipid_b", "lipid_c", "lipid_d_assess", "lipid_d_refer"]
    got = {pid: tuple(int(v) for v in ruled.loc[pid, cols]) for pid in LIPID_EXPECTED}
    assert got == LIPID_EXPECTED


LIPID_RANGE_EXPECTED = {
    # patient: (tc_recent, lipid_b, lipid_d_assess, lipid_d_refer)
    "tc_52_typo": (5.2, 0, 0, 0),
    "tc_390_mg_dl": (390 / 38.67, 0, 0, 1),
    "tc_390_no_unit": (None, 0, 0, 0),
    "tc_5_2_labelled_mg_dl": (None, 0, 0, 0),
    "ldl_116_mg_dl": (None, 1, 0, 0),
    "ldl_116_no_unit": (None, 0, 0, 0),
    "nonhdl_35_typo": (None, 0, 0, 0),
    "pair_hdl_above_tc": (1.5, 1, 0, 0),
}


def test_lipid_values_outside_their_plausible_range_are_set_aside(ruled):
    """Every lipid value the lists read is in CvdConfig's plausible range; a value outside
    is set aside before the latest is chosen (a typed 52 for 5.2 never reaches 'refer to
    lipid clinic'); a value with an explicit mg/dL unit is converted (÷ 38.67)."""
    cols = ["tc_recent", "lipid_b", "lipid_d_assess", "lipid_d_refer"]
    got = {}
    for pid in LIPID_RANGE_EXPECTED:
        tc, *flags = ruled.loc[pid, cols]
        got[pid] = (None if pd.isna(tc) else round(float(tc), 9), *(int(f) for f in flags))
    expected = {
        pid: (None if tc is None else round(tc, 9), *rest)
        for pid, (tc, *rest) in LIPID_RANGE_EXPECTED.items()
    }
    assert got == expected
    assert ruled.loc["ldl_116_mg_dl", "ldl_recent"] == pytest.approx(116 / 38.67, abs=1e-12)
    assert pd.isna(ruled.loc["ldl_116_no_unit", "ldl_recent"])
    assert (
        ruled.loc["nonhdl_35_typo", "non_hdl"],
        ruled.loc["nonhdl_35_typo", "non_hdl_source"],
    ) == (
        2.0,
        "recorded",
    )
    assert (
        ruled.loc["pair_hdl_above_tc", "non_hdl"],
        ruled.loc["pair_hdl_above_tc", "non_hdl_source"],
    ) == (
        3.0,
        "recorded",
    )
    wl = worklist(ruled.reset_index()).set_index("patient_id")
    assert not {"tc_52_typo", "tc_390_no_unit", "tc_5_2_labelled_mg_dl"} & set(wl.index)
    assert "Total cholesterol 10.1 mmol/L is above 9." in wl.loc["tc_390_mg_dl", "reasons"]
    assert "LDL 3.0 (target 2) mmol/L" in wl.loc["ldl_116_mg_dl", "reasons"]


def test_qrisk_ratio_reads_plausible_and_converted_lipids(ruled):
    pair = ruled.loc["pair_mg_dl"]
    assert pair["paired_tc"] == pytest.approx(232 / 38.67, abs=1e-12)
    assert pair["paired_hdl"] == pytest.approx(58 / 38.67, abs=1e-12)
    assert (round(pair["q_chol_hdl_ratio"], 12), pair["chol_hdl_ratio_dq"]) == (4.0, "derived")
    ratio = ruled.loc["ratio_45_typo"]
    assert (ratio["q_chol_hdl_ratio"], ratio["chol_hdl_ratio_dq"]) == (4.0, "present")


def test_lipid_values_set_aside_and_converted_are_counted(records):
    """Per patient and lipid: results in the look-back set aside as implausible
    (``<lipid>_outside_n``) and results converted from mg/dL (``<lipid>_mg_dl_n``)."""
    r = records.set_index("patient_id")
    names = ["total_cholesterol", "hdl", "ldl", "non_hdl_recorded", "chol_hdl_ratio_recorded"]
    counts = {
        pid: {
            f"{n}_{k}": int(r.loc[pid, f"{n}_{k}_n"])
            for n in names
            for k in ("outside", "mg_dl")
            if r.loc[pid, f"{n}_{k}_n"]
        }
        for pid in (
            "tc_52_typo",
            "tc_390_mg_dl",
            "tc_390_no_unit",
            "tc_5_2_labelled_mg_dl",
            "ldl_116_mg_dl",
            "nonhdl_35_typo",
            "pair_mg_dl",
            "ratio_45_typo",
            "q_full",
        )
    }
    assert counts == {
        "tc_52_typo": {"total_cholesterol_outside": 1},
        "tc_390_mg_dl": {"total_cholesterol_mg_dl": 1},
        "tc_390_no_unit": {"total_cholesterol_outside": 1},
        "tc_5_2_labelled_mg_dl": {"total_cholesterol_outside": 1, "total_cholesterol_mg_dl": 1},
        "ldl_116_mg_dl": {"ldl_mg_dl": 1},
        "nonhdl_35_typo": {"non_hdl_recorded_outside": 1},
        "pair_mg_dl": {"total_cholesterol_mg_dl": 1, "hdl_mg_dl": 1},
        "ratio_45_typo": {"chol_hdl_ratio_recorded_outside": 1},
        "q_full": {},
    }


NON_HDL_EXPECTED = {
    # patient: (non_hdl, source, days before index, lipid_b)
    "nonhdl_stale_recorded": (2.0, "total - HDL", 20, 0),
    "nonhdl_recent_recorded": (3.0, "recorded", 20, 1),
    "nonhdl_unpaired_tc": (2.0, "total - HDL", 300, 0),
    "nonhdl_same_day": (2.4, "recorded", 20, 0),
    "cvd_nonhdl_2_6": (2.6, "recorded", 60, 1),
}


def test_non_hdl_is_the_latest_result(ruled):
    got = {
        pid: (
            round(float(ruled.loc[pid, "non_hdl"]), 9),
            ruled.loc[pid, "non_hdl_source"],
            (pd.Timestamp(INDEX) - ruled.loc[pid, "non_hdl_date"]).days,
            int(ruled.loc[pid, "lipid_b"]),
        )
        for pid in NON_HDL_EXPECTED
    }
    assert got == NON_HDL_EXPECTED
    assert pd.isna(ruled.loc["cvd_no_statin", "non_hdl"])
    assert ruled.loc["cvd_no_statin", "non_hdl_source"] is None


def test_non_hdl_target_switch_and_statin_intensity(records, ruled):
    nice = lipids(apply_all(records, INDEX), INDEX, config=with_nice_non_hdl()).set_index(
        "patient_id"
    )
    assert nice.loc["cvd_nonhdl_2_6", "lipid_b"] == 0  # 2.6 is not above NICE's 2.6
    assert nice.loc["cvd_ldl_2_1_max", "lipid_b"] == 1  # LDL 2.1 still above 2.0
    assert ruled.loc["cvd_nonhdl_2_6", "statin_intensity"] == "high"  # atorvastatin 20
    assert ruled.loc["cvd_nonhdl_2_6", "on_maximal_statin"] == 0
    assert ruled.loc["cvd_ldl_2_1_max", "on_maximal_statin"] == 1  # atorvastatin 80
    assert ruled.loc["cvd_at_target", "statin_intensity"] == "medium"  # simvastatin 40


# -- atrial fibrillation ----------------------------------------------------------------------

AF_EXPECTED = {
    # patient: (CHA2DS2-VASc, indication, gap, aspirin only)
    "af_f76": (4, "offer", 1, 1),
    "af_m66": (1, "consider", 1, 0),
    "af_m50": (0, "not indicated", 0, 0),
    "af_f50": (1, "not indicated", 0, 0),
    "af_f80_doac": (3, "offer", 0, 0),
    "af_m70_old_warfarin": (2, "offer", 1, 0),  # age 65-74 (1) + heart failure (1)
}


def test_af_worklist(ruled):
    got = {
        pid: (
            int(ruled.loc[pid, "chadsvasc"]),
            ruled.loc[pid, "anticoag_indication"],
            int(ruled.loc[pid, "af_gap"]),
            int(ruled.loc[pid, "af_aspirin_only"]),
        )
        for pid in AF_EXPECTED
    }
    assert got == AF_EXPECTED
    assert int(ruled.loc["af_f76", "orbit"]) == 5
    assert ruled.loc["af_f76", "orbit_band"] == "high"
    assert pd.isna(ruled.loc["q_none", "chadsvasc"])  # not on the AF register


# -- worklist ---------------------------------------------------------------------------------


def test_worklist_ranks_and_explains(ruled):
    wl = worklist(ruled.reset_index())
    by = wl.set_index("patient_id")
    # nothing to act on: QRISK3 < 10% (50-year-old, average values), under 25, TC 7.5
    assert not {"q_none", "q_young", "tc_7_5", "cvd_at_target"} & set(by.index)
    # QRISK3 >= 10% from imputed values: listed, and told what to measure
    assert "estimated without" in by.loc["at_139_89", "reasons"]
    assert by.loc["at_181_121", "rag"] == "red"
    assert by.loc["at_181_121", "next_action"] == "Same-day clinical review."
    assert by.loc["at_141_91", "rag"] == "amber"
    assert by.loc["no_bp", "rag"] == "grey"
    assert "aspirin does not prevent stroke" in by.loc["af_f76", "reasons"]
    assert "CHA2DS2-VASc 3 or more (sex not recorded)" in by.loc["af_unknown_sex_80", "reasons"]
    assert by.loc["af_unknown_sex_80", "next_action"].startswith("Offer anticoagulation")
    assert by.loc["af_f76", "rag"] == "red"
    assert by.loc["cvd_ldl_2_1_max", "next_action"].startswith("On maximal statin")
    assert "stroke or TIA" in by.loc["cvd_ldl_2_1_max", "reasons"]
    assert "TIA, TIA" not in by.loc["cvd_ldl_2_1_max", "reasons"]  # named once
    # on atorvastatin 20 mg, already high intensity: its dose is what to raise
    assert by.loc["cvd_nonhdl_2_6", "next_action"].startswith("Increase atorvastatin to 80 mg")
    assert by.loc["q_full", "qrisk3_disclaimer"] == QRISK3_DISCLAIMER
    shown = wl["qrisk3"].notna()
    assert (wl.loc[shown, "qrisk3_disclaimer"] == QRISK3_DISCLAIMER).all()
    assert wl.loc[~shown, "qrisk3_disclaimer"].isna().all()
    # within a practice, ranks run 1..n in priority order
    for _, g in wl.groupby("practice_id"):
        assert list(g["rank_in_practice"]) == list(range(1, len(g) + 1))
        assert g["priority_score"].is_monotonic_decreasing
    p1 = by[by["practice_id"] == "XP001"]
    assert p1["rank_in_practice"].idxmin() in {"at_181_121", "sbp_181", "dbp_121"}


QRISK_SHOWN = {
    # score: (shown, on the QRISK3 >= 10% list)
    9.96: (9.9, 0),  # rounding would show 10.0 beside "not on the list"
    9.999: (9.9, 0),
    float(np.nextafter(10.0, 0.0)): (9.9, 0),  # the largest score below 10
    10.0: (10.0, 1),
    10.04: (10.0, 1),
    17.25: (17.2, 1),
}


def test_qrisk_display_rounds_down():
    from pophealth.programmes.cvd.worklist import qrisk_display

    shown = qrisk_display(pd.Series([*QRISK_SHOWN, np.nan]))
    assert list(shown[:-1]) == [v[0] for v in QRISK_SHOWN.values()]
    assert pd.isna(shown.iloc[-1])
    # a threshold of 20% (say) is held the same way
    assert list(qrisk_display(pd.Series([19.99, 20.0]), 20.0)) == [19.9, 20.0]


def test_qrisk3_shown_never_contradicts_the_list(ruled):
    """The worklist shows QRISK3 rounded down to one decimal: shown >= 10.0 exactly when
    the unrounded score is >= 10% (the list's test), in the column and in the reason."""
    scores = list(QRISK_SHOWN)
    # patients listed for BP (1a), QRISK3 applying, with these scores
    base = ruled.loc[["at_141_91"] * len(scores)].reset_index()
    base["patient_id"] = [f"q_{i}" for i in range(len(scores))]
    base["qrisk3"] = scores
    assert (base["qrisk_applies"] == 1).all() and (base["on_llt"] == 0).all()
    wl = worklist(lipids(base, INDEX)).set_index("patient_id")
    for i, (score, (shown, listed)) in enumerate(QRISK_SHOWN.items()):
        row = wl.loc[f"q_{i}"]
        assert row["qrisk3"] == shown, score
        assert ("QRISK3" in row["reasons"]) == bool(listed), score
        if listed:
            assert f"QRISK3 {shown:.1f}% (10-year CVD risk)" in row["reasons"], score


def test_af_sex_not_recorded_with_one_point_is_listed_to_record_sex(ruled):
    """NICE NG196: offer at 2, consider for men at 1. Sex not recorded, one point besides
    sex: a man 1 (consider), a woman 2 (offer). Listed with its own reason and action
    (check and record sex, then decide), not left off as undecided."""
    row = ruled.loc["af_unknown_sex_70"]
    assert row["anticoag_indication"] == "consider if a man, offer if a woman"
    assert (row["af_gap"], row["af_record_sex"]) == (1, 1)
    wl = worklist(ruled.reset_index()).set_index("patient_id")
    got = wl.loc["af_unknown_sex_70"]
    assert got["reasons"].startswith(
        "AF, sex not recorded: CHA2DS2-VASc 1 for a man, 2 for a woman (anticoagulation: "
        "consider if a man, offer if a woman), no anticoagulant in 12 months."
    )
    assert "man with CHA2DS2-VASc 1" not in got["reasons"]  # not the 'consider' item
    assert got["next_action"] == (
        "Check and record the patient's sex, then decide on anticoagulation "
        "(consider if a man, offer if a woman)."
    )
    assert (got["rag"], got["domains"]) == ("red", "AF")
    # known sex unchanged: a man of 66 'consider', sex-unknown 80 with hypertension 'offer'
    assert "AF, man with CHA2DS2-VASc 1" in wl.loc["af_m66", "reasons"]
    assert wl.loc["af_unknown_sex_80", "next_action"].startswith("Offer anticoagulation")


def test_engines_agree(store):
    """DuckDB and Spark give the same records (run when both engines ran)."""
    if len(_RECORDS) < 2:
        pytest.skip("needs both engines (run with the spark marker enabled)")
    a, b = _RECORDS["duckdb"], _RECORDS["spark"]
    pd.testing.assert_frame_equal(
        a.reset_index(drop=True), b[a.columns].reset_index(drop=True), check_dtype=False,
        check_exact=False, rtol=1e-12,
    )  # fmt: skip


# -- monthly BP control (SPC input) -------------------------------------------------------------


def test_month_ends():
    from pophealth.programmes.cvd.trend import month_ends

    ends = month_ends(INDEX, 3)
    assert [str(e) for e in ends] == ["2025-01-31", "2025-02-28", "2025-03-31"]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("nice_strict", [False, True], ids=["cvdprevent", "nice_strict"])
def test_monthly_bp_control_matches_the_index_date_rule(store, engine, nice_strict):
    """At the index date the monthly series gives exactly the main pipeline's numbers, on
    each engine and with either target convention (the world's readings sit on, just
    above and just below every threshold, and on the 80th birthday); a month earlier,
    'latest_day_wins' still had 200/130 as its latest reading."""
    from pophealth.programmes.cvd.trend import bp_control_by_month

    config = dataclasses.replace(DEFAULT_CONFIG, nice_strict=nice_strict)
    monthly = bp_control_by_month(
        store.connect(engine), INDEX, make_codelists(), months=2, config=config
    )
    last = monthly[monthly["month_end"] == pd.Timestamp(INDEX)].set_index("pcn_name")
    ruled = apply_all(_records_on(engine, store), INDEX, config=config).set_index("patient_id")
    htn = ruled[ruled["hypertension"] == 1]
    expected = htn.groupby("pcn_name").agg(
        numerator=("htn_group", lambda g: int(g.isin(["0.1", "0.2"]).sum())),
        denominator=("htn_group", "size"),
    )
    pd.testing.assert_frame_equal(
        last[["numerator", "denominator"]].sort_index(), expected.sort_index(), check_dtype=False
    )
    assert 0 < expected["numerator"].sum() < expected["denominator"].sum()
    feb = monthly[monthly["month_end"] == pd.Timestamp("2025-02-28")].set_index("pcn_name")
    # North PCN (XP001/XP002): latest_day_wins was not at target in February
    assert feb.loc["North PCN", "numerator"] < last.loc["North PCN", "numerator"]


@pytest.mark.parametrize("engine", ENGINES)
def test_trend_values_stand_in_for_readings_and_ages_exactly(store, engine):
    """The monthly series counts people alike together in the engine: each reading and
    age is replaced by a value that compares the same way with every threshold of the
    risk groups (null stays null), and the age is the completed years of
    ``extract.age_at``, 29 February birthdays included."""
    import ibis

    from pophealth.programmes.cvd.extract import _registered, age_at
    from pophealth.programmes.cvd.trend import _age_years, _same_comparisons
    from pophealth.query import to_pandas

    backend = store.connect(engine)
    thresholds = [20.0, 50.0, 90.0, 140.0, 150.0]
    values = [None, -5.0, 19.5, 20.0, 20.000001, 49.99, 50.0, 89.0, 90.0, 90.5, 139.9]
    values += [140.0, 140.1, 149.99, 150.0, 150.01, 400.0]
    t = _registered(backend, ibis.memtable(pd.DataFrame({"v": values}), schema={"v": "float64"}))
    got = to_pandas(t.select("v", s=_same_comparisons(t.v, thresholds))).sort_values("v")
    got = got.reset_index(drop=True)
    assert got["s"].isna().tolist() == got["v"].isna().tolist()
    v, s = got["v"].to_numpy(dtype=float), got["s"].to_numpy(dtype=float)
    for th in thresholds:
        for op in (np.less, np.less_equal, np.equal, np.greater_equal, np.greater):
            assert (op(v, th) == op(s, th)).all(), (op.__name__, th)
    assert got["s"].nunique() < got["v"].nunique()  # (values were merged)

    dates = pd.DataFrame(
        {
            "dob": ["1944-02-29", "1944-02-29", "1944-02-29", "1945-03-10", "1945-03-10", None],
            "on": [
                "2025-02-28",
                "2025-03-01",
                "2024-02-29",
                "2025-03-09",
                "2025-03-10",
                "2025-01-01",
            ],
        }
    ).apply(lambda c: pd.to_datetime(c).dt.date)
    d = _registered(backend, ibis.memtable(dates, schema={"dob": "date", "on": "date"}))
    got = to_pandas(d.select("dob", "on", age=_age_years(d.dob, d.on)))
    got = got.sort_values(["on", "dob"], na_position="first").reset_index(drop=True)
    expected = age_at(got["dob"], got["on"])
    pd.testing.assert_series_equal(
        got["age"].astype("Int64"), expected, check_names=False, check_index=False
    )
    assert {79, 80} <= set(expected.dropna())
