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
    else the score is 1 (a man: consider) or 2 (a woman: offer): not decided without sex.
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
        "unknown_70": None,
        "male_80_htn": "offer",
        "female_50": "not indicated",
    }
    assert af["af_gap"].to_dict() == {
        "unknown_80_htn": 1,
        "unknown_70": 0,
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
