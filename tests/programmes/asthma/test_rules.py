"""The asthma rules on hand-made marker tables: boundaries, reasons, ISAC, timers."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pandas as pd
import pytest

from pophealth.programmes.asthma import rules
from pophealth.programmes.asthma.config import DEFAULT, AsthmaConfig, Threshold

BASE = {
    "patient_id": "p",
    "saba_count_12m": 0,
    "ics_count_12m": 6,
    "ocs_courses_12m": 0,
    "prednisolone_mg_12m": 0.0,
    "prednisolone_unknown_issues_12m": 0,
    "ocs_months_12m": 0,
    "ocs_daily_mg": None,
    "on_maintenance_ocs": False,
    "ed_attendances_12m": 0,
    "admissions_12m": 0,
    "critical_care_attacks_12m": 0,
    "high_dose_ics": False,
    "review_12m": True,
    "action_plan_12m": True,
    "inhaler_technique_12m": True,
    "smoker": False,
    "no2_quintile": 3,
    "pm_quintile": 3,
}


def markers(*rows: dict) -> pd.DataFrame:
    return pd.DataFrame([{**BASE, "patient_id": f"p{i}", **r} for i, r in enumerate(rows)])


@pytest.mark.parametrize(
    ("saba", "review", "priority", "urgent"),
    [
        (2, False, False, False),
        (3, True, False, False),
        (5, True, False, False),
        (6, True, True, False),
        (12, True, True, False),
        (13, True, True, True),
    ],
)
def test_saba_boundaries(saba, review, priority, urgent):
    f = rules.flags(markers({"saba_count_12m": saba, "ics_count_12m": 20}))
    assert f.loc[0, "flag_saba_review"] == review
    assert f.loc[0, "flag_saba_priority"] == priority
    assert f.loc[0, "flag_saba_urgent"] == urgent


@pytest.mark.parametrize(
    ("ics", "saba", "amr_flag"),
    [(3, 3, False), (2, 3, True), (4, 4, False), (0, 1, True), (5, 0, False)],
)
def test_amr_exactly_half_not_flagged(ics, saba, amr_flag):
    f = rules.flags(markers({"saba_count_12m": saba, "ics_count_12m": ics}))
    assert f.loc[0, "flag_amr_low"] == amr_flag


def test_amr_undefined_without_any_inhaler_is_not_flagged():
    f = rules.flags(markers({"saba_count_12m": 0, "ics_count_12m": 0}))
    assert pd.isna(f.loc[0, "amr"])
    assert not f.loc[0, "flag_amr_low"]
    assert f.loc[0, "flag_ics_none"]
    assert not f.loc[0, "flag_ics_under_collected"]


@pytest.mark.parametrize(("ics", "under"), [(0, False), (1, True), (3, True), (4, False)])
def test_ics_under_collected(ics, under):
    assert rules.flags(markers({"ics_count_12m": ics})).loc[0, "flag_ics_under_collected"] == under


@pytest.mark.parametrize(
    ("ocs", "flag2", "referral", "tier"),
    [(0, False, False, "low"), (1, False, False, "moderate"), (2, True, False, "high"),
     (3, True, True, "high")],
)  # fmt: skip
def test_ocs_boundaries(ocs, flag2, referral, tier):
    t = rules.tier(markers({"ocs_courses_12m": ocs}))
    assert t.loc[0, "flag_ocs_2plus"] == flag2
    assert t.loc[0, "flag_ocs_referral"] == referral
    assert t.loc[0, "tier"] == tier


@pytest.mark.parametrize(("mg", "high"), [(3000, False), (3000.5, True)])
def test_prednisolone_3g(mg, high):
    f = rules.flags(markers({"prednisolone_mg_12m": mg}))
    assert f.loc[0, "flag_prednisolone_high"] == high


def test_tier_and_reasons_in_plain_words():
    t = rules.tier(
        markers(
            {"admissions_12m": 1, "saba_count_12m": 7, "ics_count_12m": 2},
            {"saba_count_12m": 6, "ics_count_12m": 6},
            {"saba_count_12m": 3, "review_12m": False, "no2_quintile": 5},
            {},
            {"saba_count_12m": 14, "ics_count_12m": 20},
        )
    )
    assert list(t["tier"]) == ["high", "moderate", "low", "low", "high"]
    assert t.loc[0, "reasons"].startswith("admitted to hospital for asthma in the last 12 months")
    assert "7 reliever inhalers in 12 months (6 or more)" in t.loc[0, "reasons"]
    assert "medication ratio 0.22" in t.loc[0, "reasons"]
    assert t.loc[0, "reason_codes"] == "admitted|saba_priority|amr_low|ics_under_collected"
    assert t.loc[1, "reason_codes"] == "saba_priority"
    assert t.loc[2, "reasons"] == (
        "3 reliever inhalers in 12 months (3 or more: review); no asthma review in 12 months; "
        "lives in one of the most polluted areas (top fifth)"
    )
    assert t.loc[3, "reasons"] == "no risk markers"
    assert t.loc[4, "reasons"] == (
        "14 reliever inhalers in 12 months (more than 12: urgent review)"
    )
    # context raises order within a tier, never the tier
    assert t.loc[2, "priority"] > t.loc[3, "priority"]


def test_missing_marker_column_is_named():
    with pytest.raises(rules.MarkerError, match="saba_count_12m"):
        rules.flags(markers({}).drop(columns=["saba_count_12m"]))


def test_negative_count_names_row_and_column():
    with pytest.raises(rules.MarkerError, match=r"row 1, column 'ocs_courses_12m'"):
        rules.flags(markers({}, {"ocs_courses_12m": -1}))


@pytest.mark.parametrize(
    ("index", "months", "first_inside"),
    [
        (dt.date(2026, 11, 23), 12, dt.date(2025, 11, 24)),
        (dt.date(2024, 2, 29), 12, dt.date(2023, 3, 1)),
        (dt.date(2026, 3, 31), 1, dt.date(2026, 3, 1)),
        (dt.date(2026, 1, 15), 6, dt.date(2025, 7, 16)),
    ],
)
def test_window_start(index, months, first_inside):
    assert rules.window_start(index, months) == first_inside


def test_isac_uncontrolled_and_severe():
    m = markers(
        {"saba_count_12m": 5},  # not uncontrolled
        {"saba_count_12m": 6},  # uncontrolled (SABA)
        {"ed_attendances_12m": 1, "high_dose_ics": True},  # possible severe
        {"ocs_courses_12m": 2, "ocs_months_12m": 6, "ocs_daily_mg": 5.0},  # maint. ≥5 mg
        {"ocs_courses_12m": 3},  # hard trigger
        {"admissions_12m": 1, "critical_care_attacks_12m": 1},  # ITU
        {"ocs_courses_12m": 2, "ocs_months_12m": 6, "ocs_daily_mg": 4.9},
        {"saba_count_12m": 6, "on_maintenance_ocs": True, "ocs_daily_mg": 10.0},
    )
    i = rules.isac(m)
    assert list(i["uncontrolled"]) == [False, True, True, True, True, True, True, True]
    assert list(i["possible_severe"]) == [False, False, True, True, False, False, True, True]
    assert list(i["trigger_maintenance_ocs_5mg"]) == [False] * 3 + [True] + [False] * 3 + [True]
    assert list(i["trigger_ocs_3plus"]) == [False] * 4 + [True] + [False] * 3
    assert list(i["trigger_critical_care"]) == [False] * 5 + [True, False, False]
    assert list(i["refer"]) == [False, False, True, True, True, True, True, True]
    assert i.loc[1, "uncontrolled_because"] == "6 reliever inhalers"
    assert i.loc[5, "refer_because"] == "ITU/HDU care for an asthma attack"


def test_questionnaire_scores_count_when_present():
    m = markers({}, {}, {}).assign(act_score=[19, 20, None], acq_score=[None, None, 1.5])
    assert list(rules.isac(m)["uncontrolled"]) == [True, False, True]


def test_pathway_timers():
    idx = dt.date(2026, 11, 23)
    frame = pd.DataFrame(
        {
            "uncontrolled": [True, True, True, True, True],
            "uncontrolled_earlier": [True, False, True, True, True],
            "referral_date": [None, None, "2026-05-23", "2026-05-24", "2026-01-01"],
            "secondary_care_seen_date": [None, None, None, None, "2026-05-07"],
            "sac_referral_date": [None, None, None, "2026-09-28", "2026-09-27"],
            "sac_seen_date": [None, None, None, None, None],
        }
    )
    t = rules.pathway_timers(frame, idx)
    # referral exactly 6 months ago is not "since"; the day after is
    assert list(t["flagged_no_referral"]) == [True, False, True, False, True]
    assert t.loc[2, "secondary_care_wait_days"] == 184
    assert t.loc[2, "secondary_care_waiting"]
    assert t.loc[4, "secondary_care_wait_days"] == 126  # 18 weeks exactly: no breach
    assert not t.loc[4, "secondary_care_breach"]
    assert t.loc[2, "secondary_care_breach"]
    assert t.loc[3, "sac_wait_days"] == 56 and not t.loc[3, "sac_breach"]
    assert t.loc[4, "sac_wait_days"] == 57 and t.loc[4, "sac_breach"]
    assert pd.isna(t.loc[0, "sac_wait_days"])


def test_a_wait_without_a_visit_list_is_unknown_not_a_breach():
    idx = dt.date(2026, 11, 23)
    frame = pd.DataFrame(
        {
            "uncontrolled": [True, True],
            "uncontrolled_earlier": [True, True],
            "referral_date": ["2026-01-01", None],
            "secondary_care_seen_date": [None, None],
            "sac_referral_date": ["2026-01-01", None],
            "sac_seen_date": [None, None],
        }
    )
    timed = rules.pathway_timers(frame, idx)
    assert timed.loc[0, "secondary_care_breach"] and timed.loc[0, "sac_breach"]
    t = rules.pathway_timers(frame, idx, seen_recorded=("secondary",))
    assert t.loc[0, "secondary_care_breach"]
    assert pd.isna(t.loc[0, "sac_wait_days"])
    assert not t.loc[0, "sac_waiting"] and not t.loc[0, "sac_breach"]
    none = rules.pathway_timers(frame, idx, seen_recorded=())
    assert none["secondary_care_wait_days"].isna().all()
    assert not none["secondary_care_breach"].any() and not none["secondary_care_waiting"].any()
    # the referral still stops the 6-months-without-referral timer
    assert list(none["flagged_no_referral"]) == [True, True]


def test_config_is_versioned_and_sourced():
    for name, threshold in DEFAULT.thresholds().items():
        assert isinstance(threshold, Threshold)
        assert threshold.source and threshold.meaning, name
    with pytest.raises(ValueError, match="new version"):
        DEFAULT.with_values(version=DEFAULT.version)
    stricter = DEFAULT.with_values(
        version="local-1", saba_priority=dataclasses.replace(DEFAULT.saba_priority, value=5)
    )
    assert isinstance(stricter, AsthmaConfig)
    assert rules.flags(markers({"saba_count_12m": 5}), stricter).loc[0, "flag_saba_priority"]


def test_basics_reasons_say_the_window_they_were_looked_for_in():
    # action_plan_12m / inhaler_technique_12m are "recorded in the look-back" (12 months,
    # config.basics_lookback_months; London CYP standards: the basics are yearly). A patient
    # whose last action plan is 2 years old has one recorded: the words must not say "no
    # written action plan recorded" (PROGRAMMES.md §1.4: no_action_plan,
    # no_inhaler_technique_check).
    t = rules.tier(markers({"action_plan_12m": False, "inhaler_technique_12m": False}))
    assert t.loc[0, "reasons"] == (
        "no written action plan in the last 12 months; "
        "no inhaler-technique check in the last 12 months"
    )


def _with(config: AsthmaConfig = DEFAULT, **values) -> AsthmaConfig:
    """A config with some threshold values changed (comparison, source... kept)."""
    changes = {k: dataclasses.replace(getattr(config, k), value=v) for k, v in values.items()}
    return config.with_values(version="test-changed", **changes)


def test_changed_cut_offs_move_the_flags_and_the_words_together():
    # Every cut-off in a rule or a reason comes from the config: raise the OCS count for the
    # high tier to 3 and someone with 2 courses keeps a (moderate) steroid reason — it used
    # to be "== 1 course", so they lost it — and the words say the configured cut-offs,
    # not "6 or more", "over 12" or "3 g".
    cfg = _with(
        ocs_courses_flag=3, saba_review=2, saba_priority=5, saba_urgent=10,
        prednisolone_high_mg=2500, pollution_top_quintile=4,
    )  # fmt: skip
    m = markers(
        {"ocs_courses_12m": 2},
        {"ocs_courses_12m": 3},
        {"saba_count_12m": 5, "ics_count_12m": 20},
        {"saba_count_12m": 11, "ics_count_12m": 40},
        {"saba_count_12m": 2, "ics_count_12m": 20},
        {"prednisolone_mg_12m": 2600.0},
        {"no2_quintile": 4},
    )
    t = rules.tier(m, cfg)
    assert not t.loc[0, "flag_ocs_2plus"]
    assert t.loc[0, "tier"] == "moderate"
    assert t.loc[0, "reason_codes"] == "ocs_course"
    assert t.loc[0, "reasons"] == "oral steroid course in the last 12 months (2x)"
    assert t.loc[1, "reasons"] == "3 oral steroid courses in the last 12 months (3 or more)"
    assert t.loc[2, "flag_saba_priority"]
    assert t.loc[2, "reasons"] == "5 reliever inhalers in 12 months (5 or more)"
    assert t.loc[3, "reasons"] == "11 reliever inhalers in 12 months (more than 10: urgent review)"
    assert t.loc[4, "reasons"] == "2 reliever inhalers in 12 months (2 or more: review)"
    assert t.loc[5, "flag_prednisolone_high"]
    assert t.loc[5, "reasons"] == "more than 2.5 g prednisolone in 12 months: 2,600 mg"
    assert t.loc[6, "reasons"] == "lives in one of the most polluted areas (top 2 fifths)"
    # and the defaults still read as before
    d = rules.tier(m)
    assert d.loc[0, "reasons"] == "2 oral steroid courses in the last 12 months (2 or more)"
    assert d.loc[3, "reasons"].endswith("(6 or more)")
    assert rules.tier(markers({"prednisolone_mg_12m": 3100.0})).loc[0, "reasons"] == (
        "more than 3 g prednisolone in 12 months: 3,100 mg"
    )


def test_changed_isac_cut_offs_move_the_triggers_and_their_words():
    cfg = _with(hard_trigger_ocs=4, hard_trigger_maintenance_ocs=7.5)
    m = markers(
        {"ocs_courses_12m": 3},
        {"ocs_courses_12m": 4},
        {"on_maintenance_ocs": True, "ocs_daily_mg": 7.5},
    )
    i = rules.isac(m, cfg)
    assert list(i["trigger_ocs_3plus"]) == [False, True, False]
    assert i.loc[1, "refer_because"] == "4 or more oral steroid courses in 12 months"
    assert i.loc[2, "refer_because"].startswith("maintenance oral steroids, 7.5 or more mg a day")
    assert rules.isac(m).loc[0, "refer_because"] == "3 or more oral steroid courses in 12 months"


def test_questionnaire_cut_offs_are_config_with_a_source():
    # ACT < 20 / ACQ ≥ 1.5 were literals in the code; they are config now (ERS/ATS), even
    # though the scores are not read from records yet (no curated list for them).
    for name in ("uncontrolled_act", "uncontrolled_acq"):
        assert "ERS/ATS" in DEFAULT.thresholds()[name].source
    m = markers({}, {}, {}).assign(act_score=[19, 17, None], acq_score=[None, None, 1.5])
    stricter = _with(uncontrolled_act=18, uncontrolled_acq=2.0)
    assert list(rules.isac(m, stricter)["uncontrolled"]) == [False, True, False]
    assert rules.isac(m, stricter).loc[1, "uncontrolled_because"] == (
        "poor control on ACT/ACQ (ACT below 18 or ACQ 2 or more)"
    )


def test_every_reason_and_config_word_fills():
    for reason in rules.REASONS:
        assert "[" not in rules.reason_words(reason)
    with pytest.raises(ValueError, match=r"\[no_such_threshold\]"):
        DEFAULT.words("[no_such_threshold]")


def test_unknown_prednisolone_doses_are_not_read_as_zero_mg():
    # Issues with no quantity or no tablet strength used to add 0 mg, so two courses could
    # show "0 mg". The known total stays a number, the unknown issues are counted apart,
    # and the words say so; the 3 g flag is met by the known total only.
    m = markers(
        {"ocs_courses_12m": 2, "prednisolone_mg_12m": 0.0, "prednisolone_unknown_issues_12m": 2},
        {"prednisolone_mg_12m": 3200.0, "prednisolone_unknown_issues_12m": 1},
        {"prednisolone_mg_12m": 2900.0, "prednisolone_unknown_issues_12m": 3},
        {"prednisolone_mg_12m": 350.0},
    )
    t = rules.tier(m)
    assert list(t["prednisolone_dose"]) == [
        "unknown (2 issues with unknown dose)",
        "at least 3,200 mg (1 issue with unknown dose)",
        "at least 2,900 mg (3 issues with unknown dose)",
        "350 mg",
    ]
    assert list(t["flag_prednisolone_high"]) == [False, True, False, False]
    assert t.loc[1, "reasons"] == (
        "more than 3 g prednisolone in 12 months: at least 3,200 mg (1 issue with unknown dose)"
    )
    out = rules.evaluate(m, dt.date(2026, 11, 23))
    assert "prednisolone_dose" in out.columns
    with pytest.raises(rules.MarkerError, match="prednisolone_unknown_issues_12m"):
        rules.flags(m.drop(columns=["prednisolone_unknown_issues_12m"]))


def test_two_or_more_ae_attendances_are_shown_as_a_reason():
    # PROGRAMMES.md §1.3-1.4 (NRAD): ≥ 2 A&E attendances in 12 months → secondary-care
    # follow-up. The flag was computed but never shown.
    t = rules.tier(markers({"ed_attendances_12m": 1}, {"ed_attendances_12m": 2}))
    assert t.loc[0, "reason_codes"] == "ed"
    assert t.loc[0, "reasons"] == "A&E attendance for asthma in the last 12 months (1x)"
    assert t.loc[1, "reason_codes"] == "ed_2plus"
    assert t.loc[1, "reasons"] == (
        "2 A&E attendances for asthma in the last 12 months (2 or more: secondary-care follow-up)"
    )
    assert list(t["tier"]) == ["high", "high"]
    assert t.loc[0, "priority"] == t.loc[1, "priority"]
    three = rules.tier(markers({"ed_attendances_12m": 2}), _with(ed_secondary_followup=3))
    assert three.loc[0, "reason_codes"] == "ed"
