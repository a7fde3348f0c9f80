"""CVD indicators from per-patient rule output: tiny tables written here, expected
numerators and denominators worked out by hand. Pure (no engine)."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from pophealth.programmes.cvd.indicators import indicator_flags
from pophealth.programmes.cvd.rules import hypertension

INDEX = dt.date(2025, 3, 31)


def _register(rows: list[tuple[str, str, int, str, float, float]]) -> pd.DataFrame:
    """(patient, date of birth, age on INDEX, reading date, sbp, dbp), all on the
    hypertension register, through the hypertension rule; the other indicators' inputs
    are set so that nobody is in their denominators."""
    frame = pd.DataFrame(
        rows, columns=["patient_id", "date_of_birth", "age", "bp_date", "bp_sbp", "bp_dbp"]
    )
    frame["date_of_birth"] = pd.to_datetime(frame["date_of_birth"])
    frame["bp_date"] = pd.to_datetime(frame["bp_date"])
    frame["hypertension"] = 1
    out = hypertension(frame)
    out["qrisk_applies"] = 0
    out["qrisk3"] = float("nan")
    out["on_llt"] = 0
    out["atrial_fibrillation"] = 0
    out["anticoag_indication"] = None
    out["cvd"] = 0
    out["on_statin"] = 0
    out["anticoagulated"] = 0
    return out.set_index("patient_id")


def test_hypertension_indicators_count_the_group_the_rules_give():
    """CVDPREVENT judges a reading against the target for the age on the day it was taken
    (PROGRAMMES.md 3.2; cvd-prevent-tool classify_htn_risk_group on the age at the journal
    date), while the indicators split the register by age on the index date. A man born
    1 February 1945 is 79 on 15 January 2025 and 80 on 31 March 2025: his 138/85 of
    15 January is group 0.1 (treated to target), so the 80+ indicator must count him in
    its numerator as well as its denominator (it counted only group 0.2, so he was
    'not at target')."""
    p = _register(
        [
            # 79 at the reading, 80 on the index date, 138/85 -> 0.1, 80+ denominator
            ("turned_80_at_target", "1945-02-01", 80, "2025-01-15", 138, 85),
            # 79 at the reading, 80 on the index date, 145/85 -> 1a (under-80 target)
            ("turned_80_above", "1945-02-01", 80, "2025-01-15", 145, 85),
            # 85 throughout, 150/90 -> 0.2
            ("old_at_target", "1940-01-01", 85, "2025-01-15", 150, 90),
            # 60, 140/90 -> 0.1; 60, 141/90 -> 1a
            ("young_at_target", "1965-01-01", 60, "2025-01-15", 140, 90),
            ("young_above", "1965-01-01", 60, "2025-01-15", 141, 90),
        ]
    )
    assert p["htn_group"].to_dict() == {
        "turned_80_at_target": "0.1",
        "turned_80_above": "1a",
        "old_at_target": "0.2",
        "young_at_target": "0.1",
        "young_above": "1a",
    }
    flags = indicator_flags(p.reset_index())
    ids = list(p.index)
    got = {
        name: (
            {i for i, v in zip(ids, flags[name][0], strict=True) if v == 1},
            {i for i, v in zip(ids, flags[name][1], strict=True) if v == 1},
        )
        for name in ("htn_target_under80", "htn_target_80plus")
    }
    assert got["htn_target_80plus"] == (
        {"turned_80_at_target", "old_at_target"},
        {"turned_80_at_target", "turned_80_above", "old_at_target"},
    )
    assert got["htn_target_under80"] == ({"young_at_target"}, {"young_at_target", "young_above"})
