"""CVD rules on tiny per-patient tables written here (no engine); expected values worked
out by hand from the rules in PROGRAMMES.md section 3."""

from __future__ import annotations

import pandas as pd

from pophealth.programmes.cvd.indicators import indicator_flags
from pophealth.programmes.cvd.rules import atrial_fibrillation

_AF_DEFAULTS = dict(
    atrial_fibrillation=1,
    type1_diabetes=0,
    type2_diabetes=0,
    stroke=0,
    tia=0,
    thromboembolism=0,
    ihd=0,
    pad=0,
    heart_failure=0,
    hypertension=0,
    haemoglobin=float("nan"),
    anaemia=0,
    bleeding=0,
    egfr=float("nan"),
    on_antiplatelet=0,
    anticoagulated=0,
    on_aspirin=0,
)


def _af(rows: dict[str, dict]) -> pd.DataFrame:
    frame = pd.DataFrame([{"patient_id": pid, **_AF_DEFAULTS, **r} for pid, r in rows.items()])
    return atrial_fibrillation(frame).set_index("patient_id")


def test_af_unknown_sex_is_offered_when_the_score_is_2_without_the_sex_point():
    """NICE NG196: offer anticoagulation at CHA2DS2-VASc >= 2, whatever the sex
    (PROGRAMMES.md 3.4). Sex only adds a point for women, so with sex not recorded the
    score is the male score or one more. An 80-year-old with hypertension scores at least
    2 (age >= 75) + 1 (hypertension) = 3: 'offer' either way, so she or he belongs on the
    AF gap list and in the anticoagulation indicator's denominator. At 70 with nothing
    else the score is 1 (a man: consider) or 2 (a woman: offer): see the next test.
    """
    af = _af(
        {
            "unknown_80_htn": dict(age=80, sex="unknown", hypertension=1),
            "unknown_70": dict(age=70, sex="unknown"),
            "male_80_htn": dict(age=80, sex="male", hypertension=1),
            "female_50": dict(age=50, sex="female"),
        }
    )
    assert af["anticoag_indication"].to_dict() == {
        "unknown_80_htn": "offer",
        "unknown_70": "consider if a man, offer if a woman",
        "male_80_htn": "offer",
        "female_50": "not indicated",
    }
    assert af["af_gap"].to_dict() == {
        "unknown_80_htn": 1,
        "unknown_70": 1,
        "male_80_htn": 1,
        "female_50": 0,
    }
    # the lowest possible score is kept for people whose sex is not recorded
    assert af.loc["unknown_80_htn", "chadsvasc_at_least"] == 3
    assert pd.isna(af.loc["unknown_80_htn", "chadsvasc"])
    assert af.loc["male_80_htn", "chadsvasc"] == af.loc["male_80_htn", "chadsvasc_at_least"] == 3

    p = af.reset_index().assign(
        age=lambda d: d["age"], htn_group=None, qrisk_applies=0, qrisk3=float("nan"), on_llt=0,
        cvd=0, on_statin=0,
    )  # fmt: skip
    num, den = indicator_flags(p)["af_anticoagulated"]
    assert dict(zip(p["patient_id"], den, strict=True)) == {
        "unknown_80_htn": 1,
        "unknown_70": 0,
        "male_80_htn": 1,
        "female_50": 0,
    }
    assert num.sum() == 0


def test_af_unknown_sex_with_one_point_is_listed_to_record_sex():
    """NICE NG196 (PROGRAMMES.md 3.4): offer at CHA2DS2-VASc >= 2, consider for men with 1;
    a woman's 1 is her sex point alone (not indicated). With sex not recorded and one point
    besides sex, a man scores 1 (consider) and a woman 2 (offer): the answer depends on the
    sex, so the person is listed — 'check and record sex, then decide' — not left off.
    With no point besides sex the answer is 'not indicated' either way."""
    from pophealth.programmes.cvd.worklist import item_flags

    af = _af(
        {
            "unknown_70": dict(age=70, sex="unknown"),  # 65-74: 1 point
            "unknown_50_htn": dict(age=50, sex="unknown", hypertension=1),  # 1 point
            "unknown_50_htn_doac": dict(age=50, sex="unknown", hypertension=1, anticoagulated=1),
            "unknown_50": dict(age=50, sex="unknown"),  # 0 points
            "male_70": dict(age=70, sex="male"),
            "female_70": dict(age=70, sex="female"),
        }
    )
    got = af[["chadsvasc_at_least", "chadsvasc_at_most", "anticoag_indication"]]
    assert got.loc["unknown_70"].tolist() == [1, 2, "consider if a man, offer if a woman"]
    assert got.loc["unknown_50"].tolist() == [0, 1, "not indicated"]
    assert got.loc["male_70"].tolist() == [1, 1, "consider"]
    assert got.loc["female_70"].tolist() == [2, 2, "offer"]
    assert af["af_record_sex"].to_dict() == {
        "unknown_70": 1,
        "unknown_50_htn": 1,
        "unknown_50_htn_doac": 1,
        "unknown_50": 0,
        "male_70": 0,
        "female_70": 0,
    }
    assert af["af_gap"].to_dict() == {
        "unknown_70": 1,
        "unknown_50_htn": 1,
        "unknown_50_htn_doac": 0,  # anticoagulated: nothing to decide
        "unknown_50": 0,
        "male_70": 1,
        "female_70": 1,
    }
    p = af.assign(orbit_band="low", af_aspirin_only=0, htn_group="-1", bp_same_day_review=0)
    for col in ("lipid_a", "lipid_b", "lipid_c", "lipid_d_refer", "lipid_d_assess"):
        p[col] = 0
    flags = item_flags(p)
    listed = {k for k, v in flags.items() if v.loc["unknown_70"]}
    assert listed == {"af_record_sex"}  # its own reason, not 'consider' or 'offer'
    assert not flags["af_record_sex"].loc[["male_70", "female_70", "unknown_50"]].any()
