"""The asthma rules as pure, vectorised functions over a per-patient marker table.

Input: one row per patient on the asthma register with the markers of
:data:`MARKER_COLUMNS` (built from records by :mod:`pophealth.programmes.asthma.dataset`,
or by hand in tests). Output: the same rows with flags, pophealth's LADS-style risk tier
with the reasons in plain words, and the ISAC severe-asthma case-finding fields.

Nothing here reads data or knows about engines; every threshold comes from
:class:`~pophealth.programmes.asthma.config.AsthmaConfig`. The loops below run over the
handful of rules, never over patients.
"""

from __future__ import annotations

import datetime as dt
import operator
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pophealth.programmes.asthma.config import DEFAULT, AsthmaConfig, Threshold

#: Per-patient markers the rules need, with what each holds.
MARKER_COLUMNS: dict[str, str] = {
    "patient_id": "pseudonymous patient id",
    "saba_count_12m": "issues of SABA reliever inhalers in the look-back",
    "ics_count_12m": "issues of inhaled-corticosteroid (preventer) inhalers in the look-back",
    "ocs_courses_12m": "oral prednisolone courses in the look-back",
    "prednisolone_mg_12m": "cumulative prednisolone mg issued in the look-back, from the issues "
    "whose dose is known (a lower bound when prednisolone_unknown_issues_12m > 0)",
    "prednisolone_unknown_issues_12m": "prednisolone issues in the look-back whose dose is "
    "unknown (no quantity, or no tablet strength for the product)",
    "ocs_months_12m": "distinct calendar months with a prednisolone issue in the look-back",
    "ocs_daily_mg": "maintenance prednisolone mg/day (structured dose, else estimated)",
    "on_maintenance_ocs": "a maintenance prednisolone issue in the look-back",
    "ed_attendances_12m": "A&E attendances for asthma in the look-back",
    "admissions_12m": "emergency admissions for asthma in the look-back",
    "critical_care_attacks_12m": "asthma admissions with ITU/HDU care in the look-back",
    "high_dose_ics": "a high-dose ICS product issued in the look-back",
    "review_12m": "asthma review recorded in the look-back",
    "action_plan_12m": "written asthma action plan recorded in the look-back",
    "inhaler_technique_12m": "inhaler-technique check recorded in the look-back",
    "smoker": "latest smoking status is current smoker",
    "no2_quintile": "NO2 quintile of the home LSOA (5 = most polluted; null = unknown area)",
    "pm_quintile": "particulates quintile of the home LSOA (null = unknown area)",
}

_OPS = {
    ">=": operator.ge,
    ">": operator.gt,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
}


class MarkerError(ValueError):
    """The marker table is missing a column or holds an impossible value."""


def check_markers(markers: pd.DataFrame) -> None:
    """Raise :class:`MarkerError` naming the column when the marker table is unusable."""
    missing = [c for c in MARKER_COLUMNS if c not in markers.columns]
    if missing:
        raise MarkerError(
            "asthma markers: missing column(s) " + ", ".join(missing) + " (expected: "
            + ", ".join(MARKER_COLUMNS) + ")"
        )  # fmt: skip
    counts = [c for c in MARKER_COLUMNS if c.endswith("_12m") and c not in _BOOL_MARKERS]
    for col in counts:
        values = pd.to_numeric(markers[col], errors="coerce")
        bad = values.isna() | (values < 0)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise MarkerError(
                f"asthma markers: row {row}, column {col!r}: expected a count ≥ 0, got "
                f"{markers[col].iloc[row]!r}"
            )


_BOOL_MARKERS = {"review_12m", "action_plan_12m", "inhaler_technique_12m"}


def window_start(index_date: dt.date, months: int) -> dt.date:
    """First day inside a look-back of ``months`` ending on (and including) ``index_date``.

    The window is (index date − months, index date]: the day exactly ``months`` before is
    outside, the day after it is inside. Month ends clamp (31 Mar − 1 month → 28/29 Feb).
    """
    year, month = divmod(index_date.year * 12 + index_date.month - 1 - months, 12)
    month += 1
    last_day = (dt.date(year + month // 12, month % 12 + 1, 1) - dt.timedelta(days=1)).day
    edge = dt.date(year, month, min(index_date.day, last_day))
    return edge + dt.timedelta(days=1)


def passes(values: pd.Series, threshold: Threshold) -> pd.Series:
    """``values <comparison> threshold.value`` as a bool Series; missing values never pass."""
    numeric = pd.to_numeric(values, errors="coerce").astype(float)
    result = _OPS[threshold.comparison](numeric, threshold.value)
    return pd.Series(np.asarray(result, dtype=bool) & numeric.notna().to_numpy(), values.index)


def amr(controller_items: pd.Series, reliever_items: pd.Series) -> pd.Series:
    """Asthma medication ratio: controller ÷ (controller + reliever); null when both are 0."""
    c = pd.to_numeric(controller_items).astype(float)
    r = pd.to_numeric(reliever_items).astype(float)
    total = c + r
    return (c / total.where(total > 0)).rename("amr")


# -- flags ----------------------------------------------------------------------------------


def flags(markers: pd.DataFrame, config: AsthmaConfig = DEFAULT) -> pd.DataFrame:
    """The LADS-style marker flags, one bool column each (``flag_*``) plus ``amr``."""
    check_markers(markers)
    m = markers
    out = pd.DataFrame(index=m.index)
    out["amr"] = amr(m["ics_count_12m"], m["saba_count_12m"])
    saba = m["saba_count_12m"]
    ics = m["ics_count_12m"]
    out["flag_saba_review"] = passes(saba, config.saba_review)
    out["flag_saba_priority"] = passes(saba, config.saba_priority)
    out["flag_saba_urgent"] = passes(saba, config.saba_urgent)
    out["flag_ics_none"] = passes(ics, config.ics_none)
    under = passes(ics, config.ics_under_collected)
    out["flag_ics_under_collected"] = under & ~out["flag_ics_none"]
    out["flag_amr_low"] = passes(out["amr"], config.amr_low)
    out["flag_ocs_2plus"] = passes(m["ocs_courses_12m"], config.ocs_courses_flag)
    out["flag_ocs_referral"] = passes(m["ocs_courses_12m"], config.ocs_courses_referral)
    out["flag_prednisolone_high"] = passes(m["prednisolone_mg_12m"], config.prednisolone_high_mg)
    out["flag_ed"] = passes(m["ed_attendances_12m"], config.ed_followup)
    out["flag_ed_2plus"] = passes(m["ed_attendances_12m"], config.ed_secondary_followup)
    out["flag_admitted"] = passes(m["admissions_12m"], config.admissions_flag)
    out["flag_no_review"] = ~m["review_12m"].fillna(False).astype(bool)
    out["flag_no_action_plan"] = ~m["action_plan_12m"].fillna(False).astype(bool)
    out["flag_no_inhaler_technique"] = ~m["inhaler_technique_12m"].fillna(False).astype(bool)
    out["flag_smoker"] = m["smoker"].fillna(False).astype(bool)
    out["flag_no2_top"] = passes(m["no2_quintile"], config.pollution_top_quintile)
    out["flag_pm_top"] = passes(m["pm_quintile"], config.pollution_top_quintile)
    out["flag_pollution_top"] = out["flag_no2_top"] | out["flag_pm_top"]
    return out


# -- reasons and tier -----------------------------------------------------------------------


@dataclass(frozen=True)
class Reason:
    """One reason a patient is listed: the flag it reads, its tier level and its words.

    ``words`` may name a marker in braces (``{saba_count_12m}``), filled per patient; a
    count with its noun (``{ics_count_12m|inhaler}``) reads "1 inhaler", "3 inhalers".
    """

    code: str
    flag: str
    level: str  # "high" | "moderate" | "low" | "context"
    words: str


#: The reasons of pophealth's LADS-style tier, in the order they are listed for a patient.
#: The tier is the highest level any reason reaches: high > moderate > low. "context"
#: reasons (where someone lives, smoking) are listed and raise a patient's order within
#: the tier, but never change the tier itself. ``[name]`` in the words is filled from the
#: config (:meth:`AsthmaConfig.words`), so the words always say the cut-off that raised the flag.
REASONS: tuple[Reason, ...] = (
    Reason("admitted", "flag_admitted", "high",
           "admitted to hospital for asthma in the last [lookback_months] ({admissions_12m}x)"),
    Reason("ed_2plus", "flag_ed_2plus", "high",
           "{ed_attendances_12m|A&E attendance} for asthma in the last [lookback_months] "
           "([ed_secondary_followup]: secondary-care follow-up)"),
    Reason("ed", "flag_ed_only", "high",
           "A&E attendance for asthma in the last [lookback_months] ({ed_attendances_12m}x)"),
    Reason("ocs_2plus", "flag_ocs_2plus", "high",
           "{ocs_courses_12m|oral steroid course} in the last [lookback_months] "
           "([ocs_courses_flag])"),
    Reason("prednisolone_high", "flag_prednisolone_high", "high",
           "[prednisolone_high_mg] prednisolone in [lookback_months]: {prednisolone_dose}"),
    Reason("saba_urgent", "flag_saba_urgent", "high",
           "{saba_count_12m|reliever inhaler} in [lookback_months] "
           "([saba_urgent]: urgent review)"),
    Reason("saba_priority", "flag_saba_priority_only", "moderate",
           "{saba_count_12m|reliever inhaler} in [lookback_months] ([saba_priority])"),
    Reason("ocs_course", "flag_ocs_course", "moderate",
           "oral steroid course in the last [lookback_months] ({ocs_courses_12m}x)"),
    Reason("amr_low", "flag_amr_low", "moderate",
           "low share of preventer (medication ratio {amr}, [amr_low])"),
    Reason("ics_under_collected", "flag_ics_under_collected", "moderate",
           "preventer under-collected ({ics_count_12m|inhaler} in [lookback_months], "
           "[ics_under_collected])"),
    Reason("saba_review", "flag_saba_review_only", "low",
           "{saba_count_12m|reliever inhaler} in [lookback_months] ([saba_review]: review)"),
    Reason("ics_none", "flag_ics_none", "low",
           "[ics_none] preventer inhaler issued in [lookback_months]"),
    Reason("no_review", "flag_no_review", "low", "no asthma review in [lookback_months]"),
    Reason("no_action_plan", "flag_no_action_plan", "low",
           "no written action plan in the last [basics_lookback_months]"),
    Reason("no_inhaler_technique", "flag_no_inhaler_technique", "low",
           "no inhaler-technique check in the last [basics_lookback_months]"),
    Reason("smoker", "flag_smoker", "context", "current smoker"),
    Reason("pollution_top", "flag_pollution_top", "context",
           "lives in one of the most polluted areas ([pollution_top_quintile:fifths])"),
    Reason("core20", "flag_core20", "context", "lives in a Core20 (most deprived 20%) area"),
)  # fmt: skip

#: Flags that only order the reasons (each reason names one flag), dropped from the output.
_REASON_ONLY_FLAGS = (
    "flag_ed_only", "flag_saba_priority_only", "flag_saba_review_only", "flag_ocs_course",
)  # fmt: skip


def reason_words(reason: Reason, config: AsthmaConfig = DEFAULT) -> str:
    """The words of ``reason`` with the config's cut-offs filled in (``{marker}`` left for
    the patient's own value)."""
    return config.words(reason.words)


#: How :func:`reason_template` writes a patient's own value; a count is ``N``.
_STAND_INS = {"amr": "N.NN", "prednisolone_dose": "N mg"}


def reason_template(reason: Reason, config: AsthmaConfig = DEFAULT) -> str:
    """The words of ``reason`` as a list of the rules shows them: the config's cut-offs
    filled in and each patient's own value written ``N`` (``N.NN`` for the medication
    ratio, ``N mg`` for the prednisolone dose; a count with its noun ``N inhalers``), never
    the marker's column name."""
    words = reason_words(reason, config)

    def stand_in(m: re.Match) -> str:
        shown = _STAND_INS.get(m.group(1), "N")
        return f"{shown} {m.group(2)}s" if m.group(2) else shown

    return re.sub(r"\{([a-z0-9_]+)(?:\|([^}]+))?\}", stand_in, words)


def prednisolone_dose(mg: pd.Series, unknown: pd.Series) -> pd.Series:
    """The cumulative prednisolone dose in honest words: "350 mg" when every issue's dose is
    known, "at least 200 mg (2 issues with unknown dose)" when some are not, and
    "unknown (2 issues with unknown dose)" when none is. An issue's dose is unknown when
    its quantity or its product's tablet strength is missing."""
    known = pd.to_numeric(mg).fillna(0.0).round(0).astype("int64").to_numpy()
    k = pd.to_numeric(unknown).fillna(0).astype("int64").to_numpy()

    def words(n: int, u: int) -> str:
        if u == 0:
            return f"{n:,} mg"
        issues = f"{u} issue{'' if u == 1 else 's'} with unknown dose"
        return f"unknown ({issues})" if n == 0 else f"at least {n:,} mg ({issues})"

    return pd.Series([words(n, u) for n, u in zip(known, k, strict=True)], mg.index, object)


TIERS: tuple[str, ...] = ("high", "moderate", "low")
_LEVEL_RANK = {"high": 3, "moderate": 2, "low": 1, "context": 0}
#: Points per reason level, used only to order patients within a tier.
_LEVEL_POINTS = {"high": 100, "moderate": 10, "low": 1, "context": 1}


def _fill(words: str, frame: pd.DataFrame) -> pd.Series:
    """Vectorised fill of ``{column}`` placeholders in ``words`` from ``frame``; ``{column|noun}``
    is the count and its noun, singular for 1 ("1 inhaler") and plural otherwise ("0 inhalers",
    "3 inhalers")."""
    out = pd.Series(words, index=frame.index, dtype=object)
    start = words.find("{")
    if start < 0:
        return out
    parts = words.replace("}", "{").split("{")
    out = pd.Series("", index=frame.index, dtype=object)
    for i, part in enumerate(parts):
        if i % 2 == 0:
            out = out + part
        else:
            part, _, noun = part.partition("|")
            col = frame[part]
            if part == "amr":
                shown = col.round(2).map("{:.2f}".format)
            elif col.dtype == object:
                shown = col.astype(str)
            else:
                shown = pd.to_numeric(col).round(0).astype("Int64").astype(str)
            if noun:
                plural = np.where(shown.to_numpy(dtype=object) == "1", "", "s")
                shown = shown.astype(object) + f" {noun}" + plural
            out = out + shown.astype(object)
    return out


def _append(acc: np.ndarray, add: np.ndarray, sep: str) -> np.ndarray:
    """``acc + sep + add`` element-wise (no separator where ``acc`` is still empty)."""
    return np.where(acc != "", acc + sep, acc) + add


def tier(markers: pd.DataFrame, config: AsthmaConfig = DEFAULT) -> pd.DataFrame:
    """pophealth's LADS-style risk tier with the reasons per patient in plain words.

    Returns the flags of :func:`flags` plus ``tier`` (high/moderate/low), ``reasons`` (plain
    words, "; "-separated, most serious first), ``reason_codes`` ("|"-separated codes) and
    ``priority`` (a number used only to order patients within a tier: 100 per high reason,
    10 per moderate, 1 per low or context reason).
    """
    f = flags(markers, config)
    f["flag_ed_only"] = f["flag_ed"] & ~f["flag_ed_2plus"]
    f["flag_saba_priority_only"] = f["flag_saba_priority"] & ~f["flag_saba_urgent"]
    f["flag_saba_review_only"] = f["flag_saba_review"] & ~f["flag_saba_priority"]
    # a course or more, below the high-risk count: follows both configured cut-offs
    courses = markers["ocs_courses_12m"]
    f["flag_ocs_course"] = passes(courses, config.ocs_courses_any) & ~f["flag_ocs_2plus"]
    core20 = markers["core20"] if "core20" in markers.columns else pd.Series(False, markers.index)
    f["flag_core20"] = core20.fillna(False).astype(bool)
    f["prednisolone_dose"] = prednisolone_dose(
        markers["prednisolone_mg_12m"], markers["prednisolone_unknown_issues_12m"]
    )
    values = pd.concat([markers, f[["amr", "prednisolone_dose"]]], axis=1)
    level = np.zeros(len(f), dtype=np.int8)
    priority = np.zeros(len(f), dtype=np.int64)
    reasons = np.full(len(f), "", dtype=object)
    codes = np.full(len(f), "", dtype=object)
    for reason in REASONS:
        mask = f[reason.flag].to_numpy(dtype=bool)
        if reason.level != "context":
            level = np.maximum(level, np.where(mask, _LEVEL_RANK[reason.level], 0))
        priority += np.where(mask, _LEVEL_POINTS[reason.level], 0)
        rows = np.flatnonzero(mask)
        if len(rows):
            # words are filled (and appended) for the patients with the reason only
            text = reason_words(reason, config)
            words = _fill(text, values.iloc[rows]).to_numpy(dtype=object)
            reasons[rows] = _append(reasons[rows], words, "; ")
            codes[rows] = _append(codes[rows], np.full(len(rows), reason.code, object), "|")
    names = np.array(["low", "low", "moderate", "high"], dtype=object)
    f["tier"] = pd.Categorical(names[level], categories=list(TIERS), ordered=True)
    f["reasons"] = pd.Series(np.where(reasons != "", reasons, "no risk markers"), f.index)
    f["reason_codes"] = pd.Series(codes, f.index)
    f["priority"] = priority
    return f.drop(columns=list(_REASON_ONLY_FLAGS))


# -- ISAC severe asthma ---------------------------------------------------------------------


def isac(markers: pd.DataFrame, config: AsthmaConfig = DEFAULT) -> pd.DataFrame:
    """ISAC case finding: uncontrolled, possible severe asthma and hard referral triggers.

    * ``uncontrolled`` — any of ≥2 OCS courses, ≥1 A&E attendance or admission for asthma,
      ≥6 SABA inhalers in 12 months (AAC/Oxford criteria). When the markers carry
      ``act_score`` / ``acq_score`` columns, ACT < 20 or ACQ ≥ 1.5 also counts (ERS/ATS;
      ``uncontrolled_act`` / ``uncontrolled_acq``; pophealth does not read the scores from
      records yet). Every cut-off is the config's; the defaults are shown.
    * ``possible_severe`` — uncontrolled **and** (high-dose ICS or maintenance OCS).
    * hard triggers — ≥3 OCS courses, maintenance OCS ≥5 mg/day, an ITU/HDU attack.
    """
    check_markers(markers)
    m = markers
    out = pd.DataFrame(index=m.index)
    attacks = pd.to_numeric(m["ed_attendances_12m"]) + pd.to_numeric(m["admissions_12m"])
    out["uc_ocs"] = passes(m["ocs_courses_12m"], config.uncontrolled_ocs)
    out["uc_attack"] = passes(attacks, config.uncontrolled_attacks)
    out["uc_saba"] = passes(m["saba_count_12m"], config.uncontrolled_saba)
    out["uc_questionnaire"] = pd.Series(False, index=m.index)
    if "act_score" in m.columns:
        out["uc_questionnaire"] |= passes(m["act_score"], config.uncontrolled_act)
    if "acq_score" in m.columns:
        out["uc_questionnaire"] |= passes(m["acq_score"], config.uncontrolled_acq)
    out["uncontrolled"] = out[["uc_ocs", "uc_attack", "uc_saba", "uc_questionnaire"]].any(axis=1)
    months = pd.to_numeric(m["ocs_months_12m"])
    out["maintenance_ocs"] = months.ge(config.maintenance_ocs_min_months).fillna(False) | m[
        "on_maintenance_ocs"
    ].fillna(False).astype(bool)
    out["high_dose_ics"] = m["high_dose_ics"].fillna(False).astype(bool)
    out["possible_severe"] = out["uncontrolled"] & (out["high_dose_ics"] | out["maintenance_ocs"])
    out["trigger_ocs_3plus"] = passes(m["ocs_courses_12m"], config.hard_trigger_ocs)
    out["trigger_maintenance_ocs_5mg"] = out["maintenance_ocs"] & passes(
        m["ocs_daily_mg"], config.hard_trigger_maintenance_ocs
    )
    out["trigger_critical_care"] = pd.to_numeric(m["critical_care_attacks_12m"]).ge(1)
    triggers = ["trigger_ocs_3plus", "trigger_maintenance_ocs_5mg", "trigger_critical_care"]
    out["hard_trigger"] = out[triggers].any(axis=1)
    out["refer"] = out["hard_trigger"] | out["possible_severe"]
    words = {
        "uc_ocs": "{ocs_courses_12m|oral steroid course}",
        "uc_attack": "A&E/admission for asthma",
        "uc_saba": "{saba_count_12m|reliever inhaler}",
        "uc_questionnaire": "poor control on ACT/ACQ (ACT [uncontrolled_act] or ACQ "
        "[uncontrolled_acq])",
    }
    why = np.full(len(m), "", dtype=object)
    for col, text in words.items():
        rows = np.flatnonzero(out[col].to_numpy(dtype=bool))
        if len(rows):
            filled = _fill(config.words(text), m.iloc[rows]).to_numpy(dtype=object)
            why[rows] = _append(why[rows], filled, "; ")
    out["uncontrolled_because"] = pd.Series(why, m.index)
    trig_words = {
        "trigger_ocs_3plus": "[hard_trigger_ocs] oral steroid courses in [lookback_months]",
        "trigger_maintenance_ocs_5mg": (
            "maintenance oral steroids, [hard_trigger_maintenance_ocs] mg a day"
        ),
        "trigger_critical_care": "ITU/HDU care for an asthma attack",
    }
    # possible severe asthma names the treatment(s) the patient is on
    severe = out["possible_severe"]
    on_ics, on_ocs = severe & out["high_dose_ics"], severe & out["maintenance_ocs"]
    severe_words = (
        (on_ics & ~on_ocs, "uncontrolled on high-dose ICS"),
        (on_ocs & ~on_ics, "uncontrolled on maintenance oral steroids"),
        (on_ics & on_ocs, "uncontrolled on high-dose ICS and maintenance oral steroids"),
    )
    refer_why = np.full(len(m), "", dtype=object)
    for col, text in trig_words.items():
        rows = np.flatnonzero(out[col].to_numpy(dtype=bool))
        text = config.words(text)
        refer_why[rows] = _append(refer_why[rows], np.full(len(rows), text, object), "; ")
    for mask, text in severe_words:
        rows = np.flatnonzero(mask.to_numpy(dtype=bool))
        refer_why[rows] = _append(refer_why[rows], np.full(len(rows), text, object), "; ")
    out["refer_because"] = pd.Series(refer_why, m.index)
    return out


PATHWAY_STEPS = ("secondary", "sac")


def pathway_timers(
    frame: pd.DataFrame,
    index_date: dt.date,
    config: AsthmaConfig = DEFAULT,
    *,
    seen_recorded: tuple[str, ...] = PATHWAY_STEPS,
) -> pd.DataFrame:
    """ISAC pathway timers for patients found uncontrolled.

    Needs ``uncontrolled`` (now), ``uncontrolled_earlier`` (uncontrolled when the rules are
    run at index date − ``optimisation_months``) and the dates ``referral_date`` (latest
    referral to secondary care for asthma on or before the index date),
    ``secondary_care_seen_date`` (first visit on or after that referral),
    ``sac_referral_date`` and ``sac_seen_date`` (null when none).

    * ``flagged_no_referral`` — uncontrolled now and ``optimisation_months`` ago, with no
      referral since then: the AAC "at most 6 months of optimisation, then refer".
    * ``secondary_care_wait_days`` — referral → first secondary-care review (to the index
      date while still waiting); ``secondary_care_breach`` when over 18 weeks (126 days is
      not a breach, 127 is).
    * ``sac_wait_days`` / ``sac_breach`` — the same for the severe asthma centre, 8 weeks.

    ``seen_recorded`` names the steps (``secondary``, ``sac``) whose "seen" visits can be
    found in the records (their code list exists). For a step without one a referral's wait
    cannot be known: its wait is null and it is neither waiting nor in breach.
    """
    idx = pd.Timestamp(index_date)
    earlier = pd.Timestamp(window_start(index_date, config.optimisation_months)) - pd.Timedelta(
        days=1
    )
    out = pd.DataFrame(index=frame.index)

    def as_dt(col: str) -> pd.Series:
        if col not in frame.columns:
            return pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns]")
        return pd.to_datetime(frame[col])

    referral = as_dt("referral_date")
    seen = as_dt("secondary_care_seen_date")
    sac_ref = as_dt("sac_referral_date")
    sac_seen = as_dt("sac_seen_date")
    referred_since = referral.notna() & (referral > earlier) & (referral <= idx)
    out["flagged_no_referral"] = (
        frame["uncontrolled"].astype(bool)
        & frame["uncontrolled_earlier"].fillna(False).astype(bool)
        & ~referred_since
    )
    for key, step, ref, visit, weeks in (
        ("secondary", "secondary_care", referral, seen, config.secondary_care_weeks),
        ("sac", "sac", sac_ref, sac_seen, config.sac_weeks),
    ):
        known = ref.notna() & (key in seen_recorded)
        after = visit.where(visit >= ref)
        wait = (after.fillna(idx) - ref).dt.days
        out[f"{step}_wait_days"] = wait.where(known).astype("Int64")
        out[f"{step}_waiting"] = known & after.isna()
        out[f"{step}_breach"] = out[f"{step}_wait_days"].gt(weeks * 7).fillna(False).astype(bool)
    return out


def evaluate(
    markers: pd.DataFrame,
    index_date: dt.date,
    config: AsthmaConfig = DEFAULT,
    *,
    seen_recorded: tuple[str, ...] = PATHWAY_STEPS,
) -> pd.DataFrame:
    """Markers + flags + tier + ISAC (+ pathway timers when the dates are present)."""
    t = tier(markers, config)
    i = isac(markers, config)
    out = pd.concat([markers, t, i.drop(columns=["high_dose_ics"])], axis=1)
    if "uncontrolled_earlier" in markers.columns:
        timers = pathway_timers(out, index_date, config, seen_recorded=seen_recorded)
        out = pd.concat([out, timers], axis=1)
    return out
