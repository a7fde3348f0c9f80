"""What the care-team worklists show a clinician: each number means what its column says."""

from __future__ import annotations

import datetime as dt

import pandas as pd
from test_rules import markers

from pophealth.programmes.asthma import outputs, rules

INDEX = dt.date(2026, 11, 23)


def evaluated(*rows: dict) -> pd.DataFrame:
    m = markers(*rows).assign(
        uncontrolled_earlier=False,
        referral_date=pd.NaT,
        secondary_care_seen_date=pd.NaT,
        sac_referral_date=pd.NaT,
        sac_seen_date=pd.NaT,
    )
    frame = rules.evaluate(m, INDEX)
    return frame.assign(
        practice_id="A", practice_name="A", pcn_id="P1", pcn_name="North", age=40,
        sex="female", imd_decile=3, ethnicity_5="white", core20=False, lsoa_code="X01000001",
    )  # fmt: skip


def test_isac_worklist_gives_a_daily_dose_only_for_maintenance_oral_steroids():
    # p0: one 200 mg burst 28 days before the index date and 8 reliever issues (uncontrolled):
    # the dataset's estimate, mg ÷ days since the first issue, is 7.14 mg/day, which is no
    # maintenance dose at all — shown as "ocs_daily_mg 7.14" next to refer=False it reads as
    # someone on 7 mg of prednisolone a day (over the 5 mg/day Delphi referral trigger) who
    # was not referred. p1: on maintenance prednisolone 5 mg/day (structured dose): referred.
    frame = evaluated(
        {"saba_count_12m": 8, "ocs_courses_12m": 1, "prednisolone_mg_12m": 200.0,
         "ocs_months_12m": 1, "ocs_daily_mg": 200 / 28},
        {"saba_count_12m": 8, "prednisolone_mg_12m": 1820.0, "ocs_months_12m": 12,
         "ocs_daily_mg": 5.0, "on_maintenance_ocs": True},
    )  # fmt: skip
    wl = outputs.isac_worklist(frame).set_index("patient_id")
    assert not wl.loc["p0", "refer"] and wl.loc["p1", "refer"]
    assert "maintenance_ocs" in wl.columns
    assert not wl.loc["p0", "maintenance_ocs"] and wl.loc["p1", "maintenance_ocs"]
    assert pd.isna(wl.loc["p0", "ocs_daily_mg"])
    assert wl.loc["p1", "ocs_daily_mg"] == 5.0
    # the column sits beside the flag that says what it is
    cols = list(wl.columns)
    assert cols.index("ocs_daily_mg") == cols.index("maintenance_ocs") + 1


def test_worklists_show_the_medication_ratio_as_the_reasons_do():
    # 3 preventer and 4 reliever issues: AMR 3/7 = 0.428571...; the reasons say "0.43", the
    # column said 0.42857142857142855
    frame = evaluated({"ics_count_12m": 3, "saba_count_12m": 4})
    for wl in (outputs.worklist(frame, "practice_id"), outputs.worklist(frame, "pcn_name")):
        assert "medication ratio 0.43" in wl.loc[0, "reasons"]
        assert wl.loc[0, "amr"] == 0.43


def test_the_referral_reason_says_which_treatment_makes_it_possible_severe_asthma():
    # "uncontrolled on high-dose ICS or maintenance oral steroids" left the pharmacist to
    # find out which: the reason names the one(s) the patient is on.
    i = rules.isac(
        markers(
            {"saba_count_12m": 8, "high_dose_ics": True},
            {"saba_count_12m": 8, "on_maintenance_ocs": True, "ocs_daily_mg": 2.5},
            {
                "saba_count_12m": 8,
                "high_dose_ics": True,
                "on_maintenance_ocs": True,
                "ocs_daily_mg": 2.5,
            },
        )  # fmt: skip
    )
    assert list(i["possible_severe"]) == [True, True, True]
    assert list(i["refer_because"]) == [
        "uncontrolled on high-dose ICS",
        "uncontrolled on maintenance oral steroids",
        "uncontrolled on high-dose ICS and maintenance oral steroids",
    ]
