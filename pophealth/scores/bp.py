"""Blood pressure: NHS England CVDPREVENT hypertension risk groups, NICE NG136 stages,
and a RAG view of the risk groups. Pure, vectorised functions over arrays.

Sources
-------
- CVDPREVENT risk groups: NHS England (NHS Digital) ``NHSDigital/cvd-prevent-tool``,
  ``documentation/cvdp_hypertension.md`` and ``classify_htn_risk_group`` /
  ``filter_bp_frames`` / ``calculate_min_bp_readings`` in its
  ``src/cvdp/preprocess_cvdp_htn`` module. Re-implemented from the rules, not copied.
- NICE NG136 (2019, updated 2023) "Hypertension in adults: diagnosis and management":
  stage thresholds and treatment targets (read via secondary summaries, see
  PROGRAMMES.md section 3.2).

Rules as implemented (CVDPREVENT, default mode):

======  ===========================================================================
group   rule (evaluated top to bottom; the first match wins)
======  ===========================================================================
``-1``  not on the hypertension register
``1e``  on the register, no valid BP in the 12 months before the index date
``0.1`` age < 80, SBP <= 140 and DBP <= 90 (treated to target)
``0.2`` age >= 80, SBP <= 150 and DBP <= 90 (treated to target)
``1d``  SBP > 180 or DBP > 120 (very high risk)
``1c``  SBP > 160 or DBP > 100 (high risk)
``1a``  age < 80, otherwise above target (moderate risk)
``1b``  age >= 80, otherwise above target (moderate risk)
======  ===========================================================================

A reading is invalid if SBP < 50 or DBP < 20. With ``nice_strict=True`` "at target"
means *below* the target (SBP < 140 and DBP < 90; SBP < 150 for 80+), as NICE words
it; a reading exactly at target then falls to 1a/1b. Only the target edge moves.

Same-day review is a separate question from the risk group: NICE NG136's severe
hypertension (stage 3) is SBP >= 180 **or** DBP >= 120 and calls for same-day clinical
review (:func:`needs_same_day_review`), while CVDPREVENT's 1d starts *above* 180/120. So
180/120 is group 1c and still needs same-day review; the groups stay as CVDPREVENT
defines them.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

__all__ = [
    "BP_TARGETS_CVDPREVENT",
    "BPTargets",
    "HTN_RAG",
    "HTN_RAG_SOURCE",
    "HTN_RISK_GROUPS",
    "NICE_NG136_STAGES",
    "NiceStageThresholds",
    "htn_rag",
    "htn_risk_group",
    "latest_valid_bp",
    "needs_same_day_review",
    "nice_stage",
]


@dataclass(frozen=True)
class BPTargets:
    """Thresholds of the CVDPREVENT hypertension risk groups (mmHg, years)."""

    version: str = "CVDPREVENT cvd-prevent-tool, 2023 documentation"
    source: str = (
        "NHS England CVDPREVENT pipeline, github.com/NHSDigital/cvd-prevent-tool: "
        "documentation/cvdp_hypertension.md; classify_htn_risk_group and filter_bp_frames "
        "in src/cvdp/preprocess_cvdp_htn"
    )
    older_age: int = 80  # "80 and over" uses the older targets (0.2 / 1b)
    target_sbp_under_older_age: float = 140.0
    target_sbp_older_age: float = 150.0
    target_dbp: float = 90.0
    high_risk_sbp: float = 160.0  # 1c above this
    high_risk_dbp: float = 100.0
    very_high_risk_sbp: float = 180.0  # 1d above this
    very_high_risk_dbp: float = 120.0
    min_valid_sbp: float = 50.0  # readings below are invalid
    min_valid_dbp: float = 20.0
    lookback_months: int = 12  # most recent valid reading in the 12 months before the index date


BP_TARGETS_CVDPREVENT = BPTargets()

#: Risk groups with CVDPREVENT's descriptions, in display order (highest risk first).
HTN_RISK_GROUPS: MappingProxyType[str, str] = MappingProxyType(
    {
        "1d": "very high risk: SBP > 180 or DBP > 120",
        "1c": "high risk: SBP 161-180 or DBP 101-120",
        "1a": "moderate risk, under 80: above target, SBP <= 160 and DBP <= 100",
        "1b": "moderate risk, 80 and over: above target, SBP <= 160 and DBP <= 100",
        "1e": "hypertension, no valid BP in the last 12 months",
        "0.1": "treated to target, under 80 (<= 140/90)",
        "0.2": "treated to target, 80 and over (<= 150/90)",
        "-1": "not on the hypertension register",
    }
)


def _arr(x: ArrayLike) -> np.ndarray:
    return np.asarray(pd.to_numeric(pd.Series(np.asarray(x).ravel()), errors="coerce"), dtype=float)


def _flag(x: ArrayLike) -> np.ndarray:
    values = np.asarray(x, dtype=object).ravel()
    present = ~pd.isna(values)
    out = np.zeros(values.size, dtype=bool)
    out[present] = values[present].astype(bool)
    return out


def htn_risk_group(
    age: ArrayLike,
    sbp: ArrayLike,
    dbp: ArrayLike,
    has_valid_reading: ArrayLike,
    hypertensive: ArrayLike,
    *,
    nice_strict: bool = False,
    targets: BPTargets = BP_TARGETS_CVDPREVENT,
) -> np.ndarray:
    """CVDPREVENT hypertension risk group for each patient.

    Args:
        age: age in years at the reading (used for the under-80 / 80-and-over split).
        sbp, dbp: the patient's chosen reading (see :func:`latest_valid_bp`: the most
            recent day with a valid reading in the look-back, lowest SBP and lowest DBP
            of that day).
        has_valid_reading: whether such a reading exists. A reading that is missing or
            invalid (SBP < 50 or DBP < 20) counts as no valid reading.
        hypertensive: on the hypertension register (HYP_COD not resolved).
        nice_strict: "at target" means strictly below target (NICE wording) instead of
            at or below (CVDPREVENT).
        targets: thresholds (see :class:`BPTargets`).

    Returns:
        Object array of group codes ("0.1", "0.2", "1a", "1b", "1c", "1d", "1e", "-1");
        None where a hypertensive patient has a valid reading but no age.
    """
    age_a, sbp_a, dbp_a = _arr(age), _arr(sbp), _arr(dbp)
    valid_flag, htn = _flag(has_valid_reading), _flag(hypertensive)
    n = htn.size
    for name, a in (
        ("age", age_a),
        ("sbp", sbp_a),
        ("dbp", dbp_a),
        ("has_valid_reading", valid_flag),
    ):
        if a.size != n:
            raise ValueError(f"htn_risk_group: {name} has {a.size} values, hypertensive has {n}")

    with np.errstate(invalid="ignore"):
        valid = (
            valid_flag
            & ~np.isnan(sbp_a)
            & ~np.isnan(dbp_a)
            & (sbp_a >= targets.min_valid_sbp)
            & (dbp_a >= targets.min_valid_dbp)
        )
        older = age_a >= targets.older_age
        younger = age_a < targets.older_age
        target_sbp = np.where(
            older, targets.target_sbp_older_age, targets.target_sbp_under_older_age
        )
        if nice_strict:
            at_target = (sbp_a < target_sbp) & (dbp_a < targets.target_dbp)
        else:
            at_target = (sbp_a <= target_sbp) & (dbp_a <= targets.target_dbp)
        very_high = (sbp_a > targets.very_high_risk_sbp) | (dbp_a > targets.very_high_risk_dbp)
        high = (sbp_a > targets.high_risk_sbp) | (dbp_a > targets.high_risk_dbp)

    scored = htn & valid
    conditions = [
        ~htn,
        htn & ~valid,
        scored & younger & at_target,
        scored & older & at_target,
        scored & very_high,
        scored & high,
        scored & younger,
        scored & older,
    ]
    choices = ["-1", "1e", "0.1", "0.2", "1d", "1c", "1a", "1b"]
    out = np.select(conditions, choices, default="")
    result = out.astype(object)
    result[out == ""] = None  # valid reading but unknown age, and not 1c/1d
    return result


#: RAG colour for each risk group. DERIVED by pophealth from the CVDPREVENT groups;
#: not UCLPartners' own wording (their stratification tables could not be read).
HTN_RAG: MappingProxyType[str, str] = MappingProxyType(
    {
        "1d": "red",
        "1c": "red",
        "1a": "amber",
        "1b": "amber",
        "0.1": "green",
        "0.2": "green",
        "1e": "grey",
    }
)
HTN_RAG_SOURCE = (
    "Derived by pophealth from the CVDPREVENT risk groups (PROGRAMMES.md section 3.2): "
    "red = 1c/1d (above 160/100; 180/120 or above, NICE NG136 severe, needs same-day "
    "clinical review), amber = 1a/1b (above target), green = 0.1/0.2 (at target), grey = 1e "
    "(no BP in 12 months). [UNCONFIRMED as UCLPartners' own wording; clinical sign-off needed]"
)


def htn_rag(groups: ArrayLike) -> np.ndarray:
    """RAG colour (red/amber/green/grey) for each risk group; None for -1 or unknown."""
    mapped = pd.Series(np.asarray(groups, dtype=object).ravel(), dtype=object).map(HTN_RAG)
    return mapped.astype(object).where(mapped.notna(), None).to_numpy(dtype=object)


def latest_valid_bp(
    readings: pd.DataFrame,
    index_date: pd.Timestamp | str,
    *,
    targets: BPTargets = BP_TARGETS_CVDPREVENT,
) -> pd.DataFrame:
    """Each patient's reading for risk grouping, as CVDPREVENT chooses it.

    ``readings`` has one row per recorded entry: ``patient_id``, ``date``, ``sbp``,
    ``dbp`` (either may be missing when systolic and diastolic were coded separately).
    Steps: drop entries with a value below the validity minimum (SBP < 50, DBP < 20;
    a paired entry with one invalid value is dropped whole); keep entries dated within
    ``targets.lookback_months`` calendar months before ``index_date`` (both ends
    inclusive); per patient and day take the lowest SBP and the lowest DBP; keep days
    with both; return the most recent such day per patient.

    Returns one row per patient that has a valid reading: ``patient_id``, ``bp_date``,
    ``sbp``, ``dbp``. Patients absent from the result have no valid reading (1e if on
    the register).
    """
    missing = [c for c in ("patient_id", "date", "sbp", "dbp") if c not in readings.columns]
    if missing:
        raise KeyError(f"latest_valid_bp: readings are missing column(s) {missing}")
    index = pd.Timestamp(index_date)
    start = index - pd.DateOffset(months=targets.lookback_months)
    date = pd.to_datetime(readings["date"])
    sbp = pd.to_numeric(readings["sbp"], errors="coerce")
    dbp = pd.to_numeric(readings["dbp"], errors="coerce")
    keep = (
        (sbp.notna() | dbp.notna())
        & (sbp.isna() | (sbp >= targets.min_valid_sbp))
        & (dbp.isna() | (dbp >= targets.min_valid_dbp))
        & (date >= start)
        & (date <= index)
    )
    kept = pd.DataFrame(
        {
            "patient_id": readings["patient_id"][keep],
            "bp_date": date[keep],
            "sbp": sbp[keep],
            "dbp": dbp[keep],
        }
    )
    daily = kept.groupby(["patient_id", "bp_date"], sort=False, as_index=False)[
        ["sbp", "dbp"]
    ].min()
    daily = daily.dropna(subset=["sbp", "dbp"])
    latest = daily.sort_values(["patient_id", "bp_date"]).drop_duplicates("patient_id", keep="last")
    return latest.reset_index(drop=True)


@dataclass(frozen=True)
class NiceStageThresholds:
    """NICE NG136 hypertension stage thresholds (mmHg) for one measurement setting."""

    setting: str
    stage1_sbp: float
    stage1_dbp: float
    stage2_sbp: float
    stage2_dbp: float
    stage3_sbp: float | None  # severe; clinic only
    stage3_dbp: float | None
    version: str = "NICE NG136 (2019, updated 2023)"
    source: str = (
        "NICE NG136 hypertension in adults, stage definitions, read via secondary summaries "
        "(gpnotebook.com classification-of-systemic-hypertension; "
        "myknowledgepill.com/hypertension); "
        "PROGRAMMES.md section 3.2"
    )


NICE_NG136_STAGES: MappingProxyType[str, NiceStageThresholds] = MappingProxyType(
    {
        "clinic": NiceStageThresholds("clinic", 140, 90, 160, 100, 180, 120),
        "abpm": NiceStageThresholds("abpm", 135, 85, 150, 95, None, None),  # ABPM or HBPM average
    }
)


def needs_same_day_review(sbp: ArrayLike, dbp: ArrayLike) -> np.ndarray:
    """Whether a clinic reading is NICE NG136 severe hypertension (stage 3: SBP >= 180
    **or** DBP >= 120), which needs same-day clinical review. Boolean array; False where
    both values are missing (one value at or above its threshold is enough).

    Independent of the CVDPREVENT group: 1d is SBP > 180 or DBP > 120, so a reading of
    exactly 180 (or a diastolic of exactly 120) is 1c but still needs same-day review.
    """
    t = NICE_NG136_STAGES["clinic"]
    s, d = _arr(sbp), _arr(dbp)
    if s.size != d.size:
        raise ValueError(f"needs_same_day_review: sbp has {s.size} values, dbp has {d.size}")
    with np.errstate(invalid="ignore"):
        return (s >= t.stage3_sbp) | (d >= t.stage3_dbp)


def nice_stage(sbp: ArrayLike, dbp: ArrayLike, *, setting: str = "clinic") -> np.ndarray:
    """NICE NG136 hypertension stage from one BP, the higher of the SBP and DBP stages.

    Clinic: stage 1 140/90-159/99, stage 2 >= 160/100, stage 3 (severe) SBP >= 180 or
    DBP >= 120. ABPM/HBPM averages (``setting="abpm"``): stage 1 135/85-149/94,
    stage 2 >= 150/95 (no stage 3). Returns "below_stage1", "stage1", "stage2",
    "stage3", or None when either value is missing. A stage from one reading is not a
    diagnosis (NICE confirms with ABPM/HBPM).
    """
    if setting not in NICE_NG136_STAGES:
        raise ValueError(
            f"nice_stage: setting must be one of {list(NICE_NG136_STAGES)}, got {setting!r}"
        )
    t = NICE_NG136_STAGES[setting]
    s, d = _arr(sbp), _arr(dbp)
    if s.size != d.size:
        raise ValueError(f"nice_stage: sbp has {s.size} values, dbp has {d.size}")
    with np.errstate(invalid="ignore"):
        conditions = [np.isnan(s) | np.isnan(d)]
        choices = [""]
        if t.stage3_sbp is not None and t.stage3_dbp is not None:
            conditions.append((s >= t.stage3_sbp) | (d >= t.stage3_dbp))
            choices.append("stage3")
        conditions += [
            (s >= t.stage2_sbp) | (d >= t.stage2_dbp),
            (s >= t.stage1_sbp) | (d >= t.stage1_dbp),
        ]
        choices += ["stage2", "stage1"]
        out = np.select(conditions, choices, default="below_stage1")
    result = out.astype(object)
    result[out == ""] = None
    return result
