"""The CVD programme's clinical rules over per-patient records (pure, vectorised).

Input: the frame from :func:`pophealth.programmes.cvd.extract.cvd_records` (one row per
adult). Each function adds the columns of one rule and reads like it:

* :func:`hypertension` — CVDPREVENT risk group of people on the hypertension register
  (``pophealth.scores.bp``), with the derived RAG colour and the NICE severe (same-day
  review) flag.
* :func:`qrisk` — QRISK3 inputs with data-quality flags, the score, and whether it
  applies (NICE: not for people with CVD, FH, type 1 diabetes, CKD 3-5, or outside 25-84).
* :func:`lipids` — the four lipid worklists (PROGRAMMES.md section 3.6 item 2).
* :func:`atrial_fibrillation` — CHA2DS2-VASc, ORBIT, anticoagulation gap, aspirin only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pophealth.programmes.cvd.config import DEFAULT_CONFIG, LIPID_DECIMALS, CvdConfig
from pophealth.programmes.cvd.extract import age_at, months_before
from pophealth.programmes.cvd.inputs import DQ_INPUTS, imputed_summary, qrisk3_inputs
from pophealth.scores.af import anticoagulation_indication, cha2ds2_vasc, orbit, orbit_risk_group
from pophealth.scores.bp import htn_rag, htn_risk_group, needs_same_day_review
from pophealth.scores.qrisk3 import QRISK3_COLUMNS, qrisk3


def _plausible(values: pd.Series, limits: tuple[float, float]) -> pd.Series:
    """``values`` with those outside ``limits`` (inclusive) set to NaN."""
    v = pd.to_numeric(values, errors="coerce").astype(float)
    return v.where((v >= limits[0]) & (v <= limits[1]))


def _recent(dates: pd.Series, index_date, months: int) -> pd.Series:
    start = pd.Timestamp(months_before(index_date, months))
    d = pd.to_datetime(dates)
    return d.notna() & (d >= start) & (d <= pd.Timestamp(index_date))


def hypertension(records: pd.DataFrame, *, config: CvdConfig = DEFAULT_CONFIG) -> pd.DataFrame:
    """``htn_group`` (CVDPREVENT 0.1/0.2/1a/1b/1c/1d/1e, or -1 off the register) and
    ``htn_rag`` (red/amber/green/grey), and ``bp_same_day_review`` (on the register with a
    reading at or above NICE NG136's severe threshold, SBP >= 180 or DBP >= 120; this
    follows NICE, not the CVDPREVENT group, whose 1d starts above 180/120). The reading
    is the extract's ``bp_sbp``/``bp_dbp``: the latest day in 12 months with a valid
    reading, that day's lowest of each.

    Age is ``bp_age``, the age on the day of that reading (``bp_date``), not on the index
    date: CVDPREVENT's ``filter_bp_frames`` adds the age at the journal date and
    ``classify_htn_risk_group`` splits under-80 / 80-and-over on it. So someone who
    turned 80 after their latest reading is still judged against the under-80 target."""
    out = records.copy()
    _hypertension(out, config=config)
    return out


def _hypertension(out: pd.DataFrame, config: CvdConfig) -> None:
    """Adds the columns of :func:`hypertension` to ``out`` (in place)."""
    has = out["bp_sbp"].notna() & out["bp_dbp"].notna()
    out["bp_age"] = age_at(out["date_of_birth"], out["bp_date"])
    out["htn_group"] = htn_risk_group(
        out["bp_age"].astype(float),
        out["bp_sbp"],
        out["bp_dbp"],
        has,
        out["hypertension"] == 1,
        nice_strict=config.nice_strict,
        targets=config.bp,
    )
    out["htn_rag"] = htn_rag(out["htn_group"])
    out["htn_at_target"] = out["htn_group"].isin(["0.1", "0.2"]).astype(int)
    # NICE NG136 severe (>= 180 or >= 120): same-day review, whatever the CVDPREVENT group
    # (1d starts above 180/120, so 180/120 itself is 1c and still flagged here).
    severe = needs_same_day_review(out["bp_sbp"], out["bp_dbp"])
    out["bp_same_day_review"] = ((out["hypertension"] == 1) & has & severe).astype(int)


def qrisk(records: pd.DataFrame, index_date, *, config: CvdConfig = DEFAULT_CONFIG) -> pd.DataFrame:
    """QRISK3 for everyone it can be computed for, and ``qrisk_applies`` for whom NICE uses
    it in statin decisions (primary prevention, aged 25-84, no FH, no type 1 diabetes, no
    CKD 3-5). Adds the QRISK3 inputs, ``<input>_dq`` flags, ``qrisk3``,
    ``qrisk3_reason``, ``qrisk_imputed`` (plain words) and ``treated_hypertension``."""
    out = records.copy()
    _qrisk(out, index_date, config=config)
    return out


def _qrisk(out: pd.DataFrame, index_date, config: CvdConfig) -> None:
    """Adds the columns of :func:`qrisk` to ``out`` (in place)."""
    # QRISK3 "treated hypertension": on the register and an antihypertensive issued in the
    # medication look-back. Without an antihypertensive code list no issue is found, so
    # nobody counts as treated (QRISK3 then understates risk for treated people); the
    # missing list is named in the report's notes.
    out["treated_hypertension"] = (
        (out["hypertension"] == 1) & (out["on_antihypertensive"] == 1)
    ).astype(int)
    inputs = qrisk3_inputs(out, config=config)
    scores = qrisk3(inputs[list(QRISK3_COLUMNS)])
    for col in QRISK3_COLUMNS:
        if col not in ("sex", "age"):
            out[f"q_{col}"] = inputs[col]
    for name in DQ_INPUTS:
        out[f"{name}_dq"] = inputs[f"{name}_dq"]
    out["qrisk3"] = scores["qrisk3"]
    out["qrisk3_reason"] = scores["qrisk3_reason"]
    out["qrisk_imputed"] = imputed_summary(inputs)
    age = out["age"].astype(float)
    excluded = pd.Series(
        np.select(
            [
                out["cvd"] == 1,
                out["familial_hypercholesterolaemia"] == 1,
                out["type1_diabetes"] == 1,
                out["ckd_3_5"] == 1,
                (age < config.qrisk_age_min) | (age > config.qrisk_age_max),
                out["qrisk3"].isna(),
            ],
            [
                "has CVD (secondary prevention)",
                "familial hypercholesterolaemia",
                "type 1 diabetes (separate NICE statin criteria)",
                "CKD 3-5 (separate NICE statin criteria)",
                f"age outside {config.qrisk_age_min}-{config.qrisk_age_max}",
                "QRISK3 not computable",
            ],
            default="",
        ),
        index=out.index,
    )
    out["qrisk_applies"] = (excluded == "").astype(int)
    out["qrisk_not_applied_because"] = excluded.where(excluded != "", None)


def statin_intensity(
    ingredient: pd.Series, daily_mg: pd.Series, *, config: CvdConfig = DEFAULT_CONFIG
) -> pd.Series:
    """NICE intensity (low/medium/high) of each patient's current statin dose; "unknown"
    where the ingredient or dose is not known or not in the table; None if no statin."""
    table = pd.DataFrame(
        [(s.ingredient, float(s.daily_dose_mg), s.intensity) for s in config.statin_intensity],
        columns=["ingredient", "mg", "intensity"],
    )
    key = pd.DataFrame({"ingredient": ingredient.values, "mg": pd.to_numeric(daily_mg).values})
    merged = key.merge(table, on=["ingredient", "mg"], how="left")
    out = merged["intensity"].fillna("unknown")
    out[ingredient.isna().values & pd.isna(daily_mg).values] = "unknown"
    return pd.Series(out.values, index=ingredient.index, dtype=object)


def lipids(
    records: pd.DataFrame, index_date, *, config: CvdConfig = DEFAULT_CONFIG
) -> pd.DataFrame:
    """The four lipid worklists as 0/1 columns (PROGRAMMES.md section 3.6):

    ``lipid_a``  CVD (IHD/PAD/stroke/TIA), no statin issued in the medication look-back.
    ``lipid_b``  CVD on a statin with non-HDL > target (2.5, or 2.6) or LDL > 2.0, from
                 the latest result of each in the lipid look-back.
    ``lipid_c``  QRISK3 >= 10% where QRISK applies (primary prevention), no lipid-lowering
                 therapy.
    ``lipid_d_assess`` total cholesterol > 7.5 (FH assessment); ``lipid_d_refer`` > 9
                 (refer). Not for people already coded with FH.

    Also ``non_hdl`` with ``non_hdl_date`` and ``non_hdl_source`` (see below),
    ``statin_intensity`` and ``on_maximal_statin``. Requires :func:`qrisk` first.

    ``non_hdl`` is the latest result in the look-back (PROGRAMMES.md section 3.6: "the
    latest result"), whichever is more recent of a recorded non-HDL value and total
    cholesterol minus HDL measured on the same day (the latest day with both; a TC and
    an HDL from different days are never paired). When both fall on the same day the
    recorded value wins (it is the laboratory's own report of that sample).

    Every value read (total cholesterol, LDL, recorded non-HDL, the day's TC and HDL and
    their difference) is within its plausible range in ``config`` (mmol/L); values outside
    are not read (see docs/programmes/cvd.md, "Lipid results: plausible ranges and units").
    """
    out = records.copy()
    _lipids(out, index_date, config=config)
    return out


def _lipids(out: pd.DataFrame, index_date, config: CvdConfig) -> None:
    """Adds the columns of :func:`lipids` to ``out`` (in place)."""
    months = config.lipid_lookback_months
    recent_tc = _recent(out["total_cholesterol_date"], index_date, months)
    recent_nonhdl = _recent(out["non_hdl_recorded_date"], index_date, months)
    recent_pair = _recent(out["paired_lipid_date"], index_date, months)
    recent_ldl = _recent(out["ldl_date"], index_date, months)
    # every value read is within its plausible range (the extract has already set aside
    # values outside before choosing the latest; this guards records from elsewhere)
    tc = _plausible(out["total_cholesterol"], config.cholesterol_range).where(recent_tc)
    recorded = _plausible(out["non_hdl_recorded"], config.non_hdl_range).where(recent_nonhdl)
    recorded_date = pd.to_datetime(out["non_hdl_recorded_date"]).where(recorded.notna())
    pair_tc = _plausible(out["paired_tc"], config.cholesterol_range)
    pair_hdl = _plausible(out["paired_hdl"], config.hdl_range)
    derived = _plausible(pair_tc - pair_hdl, config.non_hdl_range).where(recent_pair)
    derived_date = pd.to_datetime(out["paired_lipid_date"]).where(derived.notna())
    use_recorded = recorded.notna() & (derived.isna() | (recorded_date >= derived_date))
    use_derived = ~use_recorded & derived.notna()
    out["non_hdl"] = recorded.where(use_recorded, derived.where(use_derived))
    out["non_hdl_date"] = recorded_date.where(use_recorded, derived_date.where(use_derived))
    source = pd.Series(
        np.select([use_recorded, use_derived], ["recorded", "total - HDL"], default=""),
        index=out.index,
        dtype=object,
    )
    out["non_hdl_source"] = source.where(source != "", None)
    ldl = _plausible(out["ldl"], config.ldl_range).where(recent_ldl)
    out["ldl_recent"] = ldl
    out["tc_recent"] = tc

    out["statin_intensity"] = statin_intensity(
        out["statin_ingredient"], out["statin_daily_mg"], config=config
    ).where(out["on_statin"] == 1, None)
    max_mg = out["statin_ingredient"].map(dict(config.maximal_statin_mg)).astype(float)
    out["on_maximal_statin"] = (
        (out["on_statin"] == 1) & max_mg.notna() & (out["statin_daily_mg"] >= max_mg)
    ).astype(int)

    cvd = out["cvd"] == 1
    statin = out["on_statin"] == 1
    # compared with the targets without floating-point noise (LIPID_DECIMALS): a non-HDL of
    # 4.4 - 1.9 = 2.5000000000000004 is at the 2.5 target, not above it
    non_hdl = out["non_hdl"].astype(float).round(LIPID_DECIMALS)
    ldl, tc = ldl.round(LIPID_DECIMALS), tc.round(LIPID_DECIMALS)
    above = (non_hdl > config.non_hdl_target.value) | (ldl > config.ldl_target.value)
    out["lipid_a"] = (cvd & ~statin).astype(int)
    out["lipid_b"] = (cvd & statin & above.fillna(False)).astype(int)
    out["lipid_c"] = (
        (out["qrisk_applies"] == 1)
        & (out["qrisk3"] >= config.qrisk_statin.value)
        & (out["on_llt"] == 0)
    ).astype(int)
    not_fh = out["familial_hypercholesterolaemia"] == 0
    out["lipid_d_refer"] = (not_fh & (tc > config.tc_fh_refer.value)).astype(int)
    out["lipid_d_assess"] = (
        not_fh & (tc > config.tc_fh_assess.value) & (out["lipid_d_refer"] == 0)
    ).astype(int)


def _haemoglobin_g_per_l(hb: pd.Series) -> pd.Series:
    """Haemoglobin in g/L; values under 25 are taken as g/dL (×10)."""
    v = pd.to_numeric(hb, errors="coerce")
    return v.where(v >= 25, v * 10)


def atrial_fibrillation(
    records: pd.DataFrame, *, config: CvdConfig = DEFAULT_CONFIG
) -> pd.DataFrame:
    """For people on the AF register: ``chadsvasc``, ``orbit``/``orbit_band``,
    ``anticoag_indication`` (offer/consider/not indicated, NICE NG196), and the worklist
    flags ``af_gap`` (indicated, no anticoagulant issued in 12 months) and
    ``af_aspirin_only`` (aspirin in 12 months, no anticoagulant). NA off the register.

    Sex not recorded (``unknown``: not stated, indeterminate or missing): the score is the
    male score or one more (female sex scores 1), so ``chadsvasc`` is NA and
    ``chadsvasc_at_least`` / ``chadsvasc_at_most`` hold the score for a man / for a woman
    (both equal to ``chadsvasc`` when sex is known). The score is read both ways: where a
    man and a woman would get the same answer, that is the indication ("offer" when the
    male score already reaches 2; "not indicated" at 0, as a woman's 1 is her sex point
    alone). Where they differ — a male score of 1: a man "consider", a woman (2) "offer" —
    the indication says both ("consider if a man, offer if a woman"), ``af_record_sex`` is
    1 and, without an anticoagulant, the person is on the gap list to have their sex
    checked and recorded and the decision made (never silently left off)."""
    out = records.copy()
    _atrial_fibrillation(out, config=config)
    return out


def _atrial_fibrillation(out: pd.DataFrame, config: CvdConfig) -> None:
    """Adds the columns of :func:`atrial_fibrillation` to ``out`` (in place)."""
    af = out["atrial_fibrillation"] == 1
    diabetes = ((out["type1_diabetes"] == 1) | (out["type2_diabetes"] == 1)).astype(int)
    stroke = ((out["stroke"] == 1) | (out["tia"] == 1) | (out["thromboembolism"] == 1)).astype(int)
    vascular = ((out["ihd"] == 1) | (out["pad"] == 1)).astype(int)
    known_sex = out["sex"].isin(["female", "male"])

    def score_for(sex: pd.Series) -> pd.arrays.IntegerArray:
        return cha2ds2_vasc(
            out["age"].astype(float),
            sex,
            out["heart_failure"],
            out["hypertension"],
            diabetes,
            stroke,
            vascular,
            points=config.chadsvasc_points,
        )

    score = score_for(out["sex"])
    lowest = score_for(out["sex"].where(known_sex, "male"))
    highest = score_for(out["sex"].where(known_sex, "female"))
    bleed = orbit(
        out["age"].astype(float),
        out["sex"],
        _haemoglobin_g_per_l(out["haemoglobin"]),
        np.full(len(out), np.nan),  # haematocrit not extracted: counts as not reduced
        out["anaemia"],
        out["bleeding"],
        out["egfr"],
        out["on_antiplatelet"],
        points=config.orbit_points,
    )
    out["chadsvasc"] = pd.array(score, dtype="Int64")
    out["chadsvasc_at_least"] = pd.array(lowest, dtype="Int64")
    out["chadsvasc_at_most"] = pd.array(highest, dtype="Int64")
    out["orbit"] = pd.array(bleed, dtype="Int64")
    out.loc[~af, ["chadsvasc", "chadsvasc_at_least", "chadsvasc_at_most", "orbit"]] = pd.NA
    out["orbit_band"] = pd.Series(orbit_risk_group(out["orbit"]), index=out.index)

    def indication_for(scores, sex) -> pd.Series:
        got = anticoagulation_indication(scores, sex, thresholds=config.anticoagulation)
        return pd.Series(got, index=out.index, dtype=object)

    indication = indication_for(out["chadsvasc"], out["sex"])
    # sex not recorded: the answer for a man and for a woman
    if_man = indication_for(out["chadsvasc_at_least"], pd.Series("male", index=out.index))
    if_woman = indication_for(out["chadsvasc_at_most"], pd.Series("female", index=out.index))
    unknown = ~known_sex & af & if_man.notna() & if_woman.notna()
    agree = unknown & (if_man == if_woman)
    record_sex = unknown & (if_man != if_woman)
    indication = indication.where(~agree, if_man)
    both = if_man.astype(str) + " if a man, " + if_woman.astype(str) + " if a woman"
    indication = indication.where(~record_sex, both)
    out["anticoag_indication"] = indication.where(af, None)
    out["af_record_sex"] = record_sex.astype(int)
    indicated = out["anticoag_indication"].isin(["offer", "consider"]) | (
        record_sex & (if_man.isin(["offer", "consider"]) | if_woman.isin(["offer", "consider"]))
    )
    no_anticoag = out["anticoagulated"] == 0
    out["af_gap"] = (af & indicated & no_anticoag).astype(int)
    out["af_aspirin_only"] = (af & no_anticoag & (out["on_aspirin"] == 1)).astype(int)


def apply_all(
    records: pd.DataFrame, index_date, *, config: CvdConfig = DEFAULT_CONFIG
) -> pd.DataFrame:
    """Every rule, in order: hypertension, QRISK3, lipids, AF (on one copy of
    ``records``: the frame is wide, and a copy per rule cost more than the rules)."""
    out = records.copy()
    _hypertension(out, config=config)
    _qrisk(out, index_date, config=config)
    _lipids(out, index_date, config=config)
    _atrial_fibrillation(out, config=config)
    return out
