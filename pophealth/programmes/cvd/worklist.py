"""The pharmacist worklist: one ranked list across hypertension, lipids and AF.

Each patient on any list gets one row with every reason in plain words, the next
action (that of the most urgent reason), a RAG colour and a rank within their practice
and PCN. Priorities (derived by pophealth, PROGRAMMES.md section 3; UCLPartners' own
stratification tables could not be read — [UNCONFIRMED], needs clinical sign-off):

=====  ====================================================================  ======
RAG    reason                                                                weight
=====  ====================================================================  ======
red    BP 180/120 or above (NICE severe): same-day clinical review              100
red    AF, stroke risk high enough to offer anticoagulation, none in 12 mo       90
red    AF, sex not recorded, score 1 as a man / 2 as a woman: record sex         85
red    CVD (IHD/PAD/stroke/TIA), no statin                                       80
red    total cholesterol above 9: refer to lipid clinic                          70
red    BP above 160/100 (1c), below 180/120                                      60
amber  CVD on statin, non-HDL/LDL above target                                   40
amber  QRISK3 >= 10%, no lipid-lowering therapy                                  35
amber  AF, man with CHA2DS2-VASc 1 (consider anticoagulation)                    30
amber  BP above target (1a/1b)                                                   25
amber  total cholesterol above 7.5: assess for FH                                20
grey   hypertension, no BP in 12 months (1e)                                     10
=====  ====================================================================  ======

The same-day item follows NICE NG136's severe threshold (SBP >= 180 or DBP >= 120), not
the CVDPREVENT group: 1d starts above 180/120, so a 180/120 reading is group 1c but gets
the same-day item (and not the 1c item too: one reading counts once).

Patients are ranked by total weight (several problems add up), then the highest single
weight, then systolic BP, then patient id (so the order is reproducible).

QRISK3 is shown to one decimal **rounded down** (:func:`qrisk_display`): the list compares
the unrounded score with 10%, so a score of 9.96 is not on it and must not read "10.0"
(rounding would show it so). Rounded down, a shown value is at or above 10.0 exactly when
the score is: the shown value never contradicts the list. It can be up to 0.1 below what
the QRISK3 calculator shows (which rounds).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pophealth.programmes.cvd.config import DEFAULT_CONFIG, LIPID_DECIMALS, CvdConfig
from pophealth.scores.qrisk3 import QRISK3_DISCLAIMER


@dataclass(frozen=True)
class Item:
    key: str
    rag: str
    weight: int
    domain: str


ITEMS: tuple[Item, ...] = (
    Item("bp_severe", "red", 100, "hypertension"),
    Item("af_offer", "red", 90, "AF"),
    Item("af_record_sex", "red", 85, "AF"),
    Item("lipid_a", "red", 80, "lipids"),
    Item("lipid_d_refer", "red", 70, "lipids"),
    Item("bp_1c", "red", 60, "hypertension"),
    Item("lipid_b", "amber", 40, "lipids"),
    Item("lipid_c", "amber", 35, "lipids"),
    Item("af_consider", "amber", 30, "AF"),
    Item("bp_above_target", "amber", 25, "hypertension"),
    Item("lipid_d_assess", "amber", 20, "lipids"),
    Item("bp_1e", "grey", 10, "hypertension"),
)
RAG_ORDER = {"red": 0, "amber": 1, "grey": 2}


def qrisk_display(
    score: pd.Series, threshold: float = DEFAULT_CONFIG.qrisk_statin.value
) -> pd.Series:
    """QRISK3 % as shown: rounded down to one decimal, so that the shown value is at or
    above ``threshold`` (a multiple of 0.1: the list's ">= 10%") exactly when the score
    is. 9.96 and 9.999 show as 9.9; 10.0 as 10.0; NaN stays NaN."""
    v = pd.to_numeric(score, errors="coerce").astype(float)
    shown = np.floor(v * 10) / 10
    # (a guard: floating point must never lift a score below the threshold onto it)
    lifted = (v < threshold) & (shown >= threshold)
    return shown.where(~lifted, (np.ceil(threshold * 10) - 1) / 10)


def _text_of(x: pd.Series, fmt: Callable[[Any], str], missing: str = "") -> pd.Series:
    """``fmt`` of each value of ``x`` (``missing`` where there is none): each distinct
    value is formatted once, not each patient's."""
    codes, uniques = pd.factorize(x, use_na_sentinel=True)
    texts = np.array([fmt(u) for u in uniques] + [missing], dtype=object)
    return pd.Series(texts[codes], index=x.index)  # (code -1, a missing value: the last)


def _fmt(x: pd.Series, digits: int = 1) -> pd.Series:
    return _text_of(pd.to_numeric(x).astype(float), lambda v: f"{v:.{digits}f}")


def _lipid_text(x: pd.Series, threshold: float) -> pd.Series:
    """Each lipid result (mmol/L) as shown: to one decimal, or, when it is above
    ``threshold`` but one decimal would show it at or below (9.01 as "9.0" beside "above
    9"; a derived non-HDL of 2.54 as "2.5" beside "target 2.5"), to as few more decimals as
    show it above. '' where there is none."""

    def text(v: float) -> str:
        v = round(v, LIPID_DECIMALS)  # (2.5000000000000004 is 2.5: at the target)
        for digits in range(1, LIPID_DECIMALS + 1):
            shown = f"{v:.{digits}f}"
            if v <= threshold or float(shown) > threshold:
                return shown
        return f"{v:g}"

    return _text_of(pd.to_numeric(x).astype(float), text)


def _date(x: pd.Series) -> pd.Series:
    return pd.to_datetime(x).dt.strftime("%d %b %Y").fillna("")


def item_flags(p: pd.DataFrame) -> dict[str, pd.Series]:
    """0/1 per worklist item for each patient (``p`` = records after every rule)."""
    g = p["htn_group"]
    ind = p["anticoag_indication"]
    return {
        "bp_severe": p["bp_same_day_review"] == 1,
        "bp_1c": (g == "1c") & (p["bp_same_day_review"] != 1),
        "bp_above_target": g.isin(["1a", "1b"]),
        "bp_1e": g == "1e",
        "af_offer": (p["af_gap"] == 1) & (ind == "offer"),
        "af_consider": (p["af_gap"] == 1) & (ind == "consider"),
        "af_record_sex": (p["af_gap"] == 1) & (p["af_record_sex"] == 1),
        "lipid_a": p["lipid_a"] == 1,
        "lipid_b": p["lipid_b"] == 1,
        "lipid_c": p["lipid_c"] == 1,
        "lipid_d_refer": p["lipid_d_refer"] == 1,
        "lipid_d_assess": p["lipid_d_assess"] == 1,
    }


def item_texts(p: pd.DataFrame, config: CvdConfig) -> dict[str, tuple[pd.Series, pd.Series]]:
    """(reason, next action) in plain words for each item, vectorised over patients."""
    bp = _fmt(p["bp_sbp"], 0) + "/" + _fmt(p["bp_dbp"], 0) + " on " + _date(p["bp_date"])
    t = config.bp
    lipid_months = config.lipid_lookback_months
    anticoag_months = config.anticoagulant_lookback_months
    statin = (
        p["statin_ingredient"].fillna("statin").astype(str)
        + " "
        + _text_of(p["statin_daily_mg"], lambda v: f"{v:g} mg")
    ).str.strip()
    cvd_names = (
        np.where(p["ihd"] == 1, "coronary heart disease, ", "")
        + np.where(p["pad"] == 1, "peripheral arterial disease, ", "")
        + np.where(p["stroke"] == 1, "stroke or TIA, ", "")
        + np.where((p["tia"] == 1) & (p["stroke"] != 1), "TIA, ", "")  # (not said twice)
    )
    cvd_names = pd.Series(cvd_names, index=p.index).str.rstrip(", ")
    lowest = p["chadsvasc_at_least"].astype("Float64")
    chads = _text_of(p["chadsvasc"].astype("Float64"), lambda v: f"{int(v)}")
    chads = chads.where(
        p["chadsvasc"].notna() | lowest.isna(),
        _text_of(lowest, lambda v: f"{int(v)} or more (sex not recorded)"),
    )
    orbit_txt = (
        " Bleeding risk (ORBIT) "
        + _text_of(p["orbit"].astype("Float64"), lambda v: f"{int(v)}", missing="?")
        + " ("
        + p["orbit_band"].fillna("unknown").astype(str)
        + ")."
    )
    aspirin = pd.Series(
        np.where(
            p["af_aspirin_only"] == 1,
            " Takes aspirin only: aspirin does not prevent stroke in AF.",
            "",
        ),
        index=p.index,
    )
    maximal = p["on_maximal_statin"] == 1
    # already on a high-intensity statin (atorvastatin 20/40 mg, rosuvastatin 10 mg) but not
    # its maximal dose: told to raise that statin's dose, not to start a high-intensity one
    max_mg = p["statin_ingredient"].map(dict(config.maximal_statin_mg)).astype(float)
    raise_dose = ~maximal & (p["statin_intensity"] == "high") & max_mg.notna()
    q = _fmt(qrisk_display(p["qrisk3"], config.qrisk_statin.value))
    imputed = p["qrisk_imputed"].fillna("")
    q_note = pd.Series(
        np.where(imputed != "", " (estimated without: " + imputed + ")", ""), index=p.index
    )
    q_action = pd.Series(
        np.where(
            p["chol_hdl_ratio_dq"] == "imputed",
            "Check lipids, then recalculate QRISK3 and discuss a statin (atorvastatin 20 mg).",
            "Discuss starting a statin (atorvastatin 20 mg) for primary prevention.",
        ),
        index=p.index,
    )
    tc_refer = _lipid_text(p["tc_recent"], config.tc_fh_refer.value)
    tc_assess = _lipid_text(p["tc_recent"], config.tc_fh_assess.value)
    target_nonhdl = f"{config.non_hdl_target.value:g}"
    target_ldl = f"{config.ldl_target.value:g}"
    # list (b): each result with its target, or that there is none in the look-back (one
    # of the two may be missing: the list needs only one above its target)
    nonhdl = _lipid_text(p["non_hdl"], config.non_hdl_target.value)
    nonhdl = ("non-HDL " + nonhdl + f" (target {target_nonhdl})").where(nonhdl != "", "")
    ldl = _lipid_text(p["ldl_recent"], config.ldl_target.value)
    ldl = ("LDL " + ldl + f" (target {target_ldl})").where(ldl != "", "")
    both = (nonhdl != "") & (ldl != "")
    lipid_values = (
        pd.Series(np.where(both, nonhdl + " / " + ldl, nonhdl + ldl), index=p.index) + " mmol/L"
    )
    lipid_values += np.where(
        (nonhdl == "") & (ldl != ""), f" (no non-HDL result in {lipid_months} months)", ""
    )
    lipid_values += np.where(
        (ldl == "") & (nonhdl != ""), f" (no LDL result in {lipid_months} months)", ""
    )
    bp_target_text = pd.Series(
        np.where(
            p["bp_age"].astype(float) >= t.older_age,
            f"{t.target_sbp_older_age:g}/{t.target_dbp:g} at {t.older_age}+",
            f"{t.target_sbp_under_older_age:g}/{t.target_dbp:g}",
        ),
        index=p.index,
    )
    s = lambda text: pd.Series(text, index=p.index)  # noqa: E731
    return {
        "bp_severe": (
            "BP "
            + bp
            + " is severe hypertension (systolic 180 or more, or diastolic 120 or more).",
            s("Same-day clinical review."),
        ),
        "bp_1c": (
            "BP "
            + bp
            + f" is high (systolic above {t.high_risk_sbp:g} or diastolic above "
            + f"{t.high_risk_dbp:g}).",
            s("Review and step up BP treatment; recheck within 4 weeks."),
        ),
        "bp_above_target": (
            "BP "
            + bp
            # NICE-strict: at target only below it (140/90 itself is not, but is not above)
            + (" is not below target (" if config.nice_strict else " is above target (")
            + bp_target_text
            + ").",
            s("Review BP treatment and adherence; recheck BP."),
        ),
        "bp_1e": (
            s(f"Hypertension with no BP reading in the last {config.bp_lookback_months} months."),
            s("Invite for a BP check (or ask for a home reading)."),
        ),
        "af_offer": (
            "AF with stroke risk CHA2DS2-VASc "
            + chads
            + f", no anticoagulant in {anticoag_months} months."
            + orbit_txt
            + aspirin,
            s("Offer anticoagulation (a DOAC) after bleeding-risk review."),
        ),
        "af_consider": (
            f"AF, man with CHA2DS2-VASc 1, no anticoagulant in {anticoag_months} months."
            + orbit_txt
            + aspirin,
            s("Consider anticoagulation; discuss risks and benefits."),
        ),
        "af_record_sex": (
            "AF, sex not recorded: CHA2DS2-VASc "
            + _fmt(p["chadsvasc_at_least"].astype("Float64"), 0)
            + " for a man, "
            + _fmt(p["chadsvasc_at_most"].astype("Float64"), 0)
            + " for a woman (anticoagulation: "
            + p["anticoag_indication"].fillna("").astype(str)
            + f"), no anticoagulant in {anticoag_months} months."
            + orbit_txt
            + aspirin,
            "Check and record the patient's sex, then decide on anticoagulation ("
            + p["anticoag_indication"].fillna("").astype(str)
            + ").",
        ),
        "lipid_a": (
            "Has "
            + cvd_names
            + " but no statin in the last "
            + f"{config.medication_lookback_months} months."
            + pd.Series(
                np.where(p["statin_declined"] == 1, " Statin declined/intolerance coded.", ""),
                index=p.index,
            ),
            s("Offer a high-intensity statin (atorvastatin 80 mg) unless contraindicated."),
        ),
        "lipid_b": (
            "Has " + cvd_names + ", on " + statin + ", " + lipid_values + ".",
            pd.Series(
                np.select(
                    [maximal, raise_dose],
                    [
                        "On maximal statin: consider adding ezetimibe (then inclisiran per "
                        "pathway).",
                        "Increase "
                        + p["statin_ingredient"].fillna("").astype(str)
                        + " to "
                        + _fmt(max_mg, 0)
                        + " mg (its maximal dose) and recheck lipids.",
                    ],
                    "Increase to a high-intensity statin (atorvastatin 80 mg) and recheck lipids.",
                ),
                index=p.index,
            ),
        ),
        "lipid_c": (
            "QRISK3 " + q + "% (10-year CVD risk)" + q_note + ", no lipid-lowering therapy.",
            q_action,
        ),
        "lipid_d_refer": (
            "Total cholesterol " + tc_refer + f" mmol/L is above {config.tc_fh_refer.value:g}.",
            s("Refer to lipid clinic (possible familial hypercholesterolaemia)."),
        ),
        "lipid_d_assess": (
            "Total cholesterol " + tc_assess + f" mmol/L is above {config.tc_fh_assess.value:g}.",
            s("Assess for familial hypercholesterolaemia (Simon Broome / DLCN)."),
        ),
    }


#: Worklist columns, in order.
WORKLIST_COLUMNS = (
    "pcn_name",
    "practice_id",
    "rank_in_practice",
    "rank_in_pcn",
    "patient_id",
    "rag",
    "priority_score",
    "reasons",
    "next_action",
    "domains",
    "age",
    "sex",
    "htn_group",
    "bp_sbp",
    "bp_dbp",
    "bp_date",
    "qrisk3",
    "qrisk_imputed",
    "non_hdl",
    "ldl_recent",
    "tc_recent",
    "statin_ingredient",
    "statin_daily_mg",
    "statin_intensity",
    "chadsvasc",
    "orbit",
    "af_aspirin_only",
    "qrisk3_disclaimer",
)


def worklist(p: pd.DataFrame, *, config: CvdConfig = DEFAULT_CONFIG) -> pd.DataFrame:
    """The ranked pharmacist worklist (one row per patient on any list)."""
    flags = item_flags(p)
    any_hit = np.zeros(len(p), dtype=bool)
    for f in flags.values():
        any_hit |= f.fillna(False).to_numpy(dtype=bool)
    out = p.loc[any_hit].copy()  # text is built for listed patients only
    if out.empty:  # nobody to list (e.g. a small ingested store): the text cannot be built
        return pd.DataFrame({c: pd.Series(dtype=object) for c in WORKLIST_COLUMNS})
    flags = {k: v[any_hit] for k, v in flags.items()}
    texts = item_texts(out, config)
    n = len(out)
    reasons = np.full(n, "", dtype=object)
    actions = np.full(n, "", dtype=object)
    domains = np.full(n, "", dtype=object)
    score = np.zeros(n, dtype=int)
    top = np.zeros(n, dtype=int)
    rag = np.full(n, "", dtype=object)
    # Items are in descending weight: the first hit sets the RAG and next action.
    for item in ITEMS:
        hit = flags[item.key].fillna(False).to_numpy(dtype=bool)
        reason, action = texts[item.key]
        reason = pd.Series(reason, index=out.index).astype(str).to_numpy(dtype=object)
        action = pd.Series(action, index=out.index).astype(str).to_numpy(dtype=object)
        first = hit & (top == 0)
        actions = np.where(first, action, actions)
        rag = np.where(first, item.rag, rag)
        top = np.where(first, item.weight, top)
        reasons = np.where(hit, np.where(reasons == "", reason, reasons + " " + reason), reasons)
        new_domain = hit & ~pd.Series(domains).str.contains(item.domain, regex=False).to_numpy()
        joined = np.where(domains == "", item.domain, domains + ", " + item.domain)
        domains = np.where(new_domain, joined, domains)
        score = score + np.where(hit, item.weight, 0)
    out["reasons"] = reasons
    out["next_action"] = actions
    out["domains"] = domains
    out["priority_score"] = score
    out["_top"] = top
    out["rag"] = rag
    out["_sbp"] = pd.to_numeric(out["bp_sbp"]).fillna(0)
    out = out.sort_values(
        ["priority_score", "_top", "_sbp", "patient_id"],
        ascending=[False, False, False, True],
        kind="stable",
    )
    out["rank_in_practice"] = out.groupby("practice_id", dropna=False).cumcount() + 1
    out["rank_in_pcn"] = out.groupby("pcn_id", dropna=False).cumcount() + 1
    # QRISK3 is shown only where it applies (not for CVD, FH, T1DM, CKD 3-5, <25, 85+)
    shown = qrisk_display(out["qrisk3"], config.qrisk_statin.value)  # rounded down
    out["qrisk3"] = shown.where(out["qrisk_applies"] == 1)
    out["qrisk_imputed"] = out["qrisk_imputed"].where(out["qrisk3"].notna(), None)
    out["qrisk3_disclaimer"] = np.where(out["qrisk3"].notna(), QRISK3_DISCLAIMER, None)
    # lipid values without floating-point noise (a derived non-HDL of 2.8000000000000003)
    for col in ("non_hdl", "ldl_recent", "tc_recent"):
        out[col] = pd.to_numeric(out[col]).astype(float).round(LIPID_DECIMALS)
    out = out.sort_values(["pcn_name", "practice_id", "rank_in_practice"], kind="stable")
    return out[list(WORKLIST_COLUMNS)].reset_index(drop=True)
