"""The records each condition leaves in one chunk: diagnoses, observations with values,
prescriptions, ED attendances, admissions, operations and questionnaire answers.

Every function takes the chunk's patient arrays (:class:`~pophealth.synth._model.Chunk`),
the checked codes (:class:`~pophealth.synth.patients.Codes`) and the row collector, and
adds rows for the patients it is given — vectorised, no loop per patient. Parameters and
their sources are in :mod:`pophealth.synth.calibration`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pophealth.synth import calibration as cal
from pophealth.synth._build import US_PER_DAY
from pophealth.synth._codes import CodePicker
from pophealth.synth._model import (
    NULL,
    YEAR,
    E,
    by_band,
    choice,
    onset,
    regular,
    spread,
    time_of_day_us,
)


def _dx_events(rng, c, out, picker: CodePicker, who, mean_years, min_age=0.0):
    who = np.flatnonzero(who) if who.dtype == bool else who
    d = onset(rng, c, who, mean_years, min_age)
    out.event(who, d, picker.draw(rng, len(who)))
    return who, d


def diagnoses(rng, c, codes, out, has, t1, scd) -> dict[str, np.ndarray]:
    """Diagnosis events of every register; returns each register's diagnosis day per
    patient (-1 when not on it) and the CKD stage index."""
    days: dict[str, np.ndarray] = {}

    def record(name, picker, who, mean_years, min_age):
        day_ = np.full(c.n, NULL, dtype=np.int64)
        w, d = _dx_events(rng, c, out, picker, who, mean_years, min_age)
        day_[w] = d
        days[name] = day_

    dm = has["diabetes"]
    record("hypertension", codes.htn_dx, has["hypertension"], 9.0, 18)
    record("diabetes_type1", codes.t1_dx, dm & t1, 12.0, 1)
    record("diabetes_type2", codes.t2_dx, dm & ~t1, 8.0, 18)
    record("af", codes.af_dx, has["af"], 5.0, 30)
    record("copd", codes.copd_dx, has["copd"], 6.0, 35)
    record("chd", codes.chd_dx, has["chd"], 8.0, 30)
    record("stroke_tia", codes.stroke_dx, has["stroke_tia"], 5.0, 20)
    record("pad", codes.pad_dx, has["pad"], 5.0, 40)
    record("heart_failure", codes.hf_dx, has["heart_failure"], 4.0, 30)
    record("smi", codes.smi_dx, has["smi"], 12.0, 16)
    record("sickle_cell", codes.scd_dx, scd, 80.0, 0)
    # CKD: one staged code (some practices use the unstaged "stage 3" code).
    who = np.flatnonzero(has["ckd"])
    stage = choice(rng, cal.CKD_STAGE_SHARE, len(who))
    d = onset(rng, c, who, 5.0, 40)
    code = codes.ckd_by_stage.ids[stage]
    generic = (stage < 2) & (rng.random(len(who)) < 0.2)
    out.event(who, d, np.where(generic, codes.ckd_generic.ids[0], code))
    ckd_stage = np.full(c.n, NULL, dtype=np.int64)
    ckd_stage[who] = stage
    days["ckd_stage"] = ckd_stage
    return days


def other_qrisk_conditions(rng, c, codes, out, dm, smi, inwin):
    """RA, migraine, SLE, erectile dysfunction, family history, atypical antipsychotics
    and regular oral steroids: the other QRISK3 inputs."""
    adult = c.age >= 18
    for name, picker, mean in (
        ("rheumatoid_arthritis", codes.ra_dx, 8.0),
        ("migraine", codes.migraine_dx, 12.0),
        ("sle", codes.sle_dx, 8.0),
        ("family_history_chd", codes.fh_chd, 6.0),
    ):
        prev, f_rr, min_age = cal.OTHER_CONDITIONS[name]
        rr = np.where(c.female, f_rr, 1.0)
        p = prev * rr / np.mean(np.where(adult, rr, 0) + 1e-12) * (c.age >= min_age)
        who = np.flatnonzero(rng.random(c.n) < p)
        _dx_events(rng, c, out, picker, who, mean, min_age)
    men = c.male & (c.age >= 40)
    p = cal.ERECTILE_DYSFUNCTION_MEN_40 * np.where(dm, 2.0, 1.0)
    _dx_events(rng, c, out, codes.ed_dx, men & (rng.random(c.n) < p), 5.0, 40)
    # Atypical antipsychotics: most people with SMI, a few others (dementia, off-label).
    p = np.where(smi, cal.ATYPICAL_ANTIPSYCHOTIC_SMI, cal.ATYPICAL_ANTIPSYCHOTIC_OTHER)
    on = inwin & adult & (rng.random(c.n) < p)
    who = np.flatnonzero(on)
    pid, d, rep = regular(rng, who, c.w0[who], c.end[who], 28)
    pick = codes.antipsychotic.pick(rng, len(who))[rep]
    mg = codes.antipsychotic.extra("strength_mg")[pick]
    out.med(pid, d, codes.antipsychotic.ids[pick], 28.0, codes.u_tablet, codes.once_daily, mg)
    # Regular oral corticosteroids (prednisolone 5 mg daily) in older adults.
    who = np.flatnonzero(inwin & (c.age >= 60) & (rng.random(c.n) < cal.REGULAR_STEROIDS_60))
    pid, d, _ = regular(rng, who, c.w0[who], c.end[who], 28)
    out.med(pid, d, codes.pred5.ids[0], 28.0, codes.u_tablet, codes.once_daily, 5.0)


def stroke_and_bleeding_inputs(rng, c, codes, out, af, ckd, inwin):
    """VTE, anaemia, bleeding history and haemoglobin (CHA2DS2-VASc and ORBIT inputs)."""
    adult = c.age >= 18
    older = np.clip((c.age - 18) / 50, 0, 2)
    p_vte = cal.VTE_ADULTS * older / max(np.mean(older[adult]), 1e-9)
    _dx_events(rng, c, out, codes.vte, adult & (rng.random(c.n) < p_vte), 6.0, 18)
    p_an = cal.ANAEMIA_ADULTS * np.where(c.female, 1.4, 0.7) * np.where(ckd, 3.0, 1.0)
    anaemic = adult & (rng.random(c.n) < p_an)
    _dx_events(rng, c, out, codes.anaemia, anaemic, 3.0, 18)
    p_bl = cal.BLEEDING_60_PLUS * (c.age >= 60) * np.where(af, 2.0, 1.0)
    _dx_events(rng, c, out, codes.bleeding, rng.random(c.n) < p_bl, 4.0, 30)
    # A full blood count yearly for people with AF, CKD or anaemia; sometimes for others.
    tested = inwin & adult & (af | ckd | anaemic | (rng.random(c.n) < 0.15))
    who = np.flatnonzero(tested)
    yrs = np.maximum(c.end[who] - c.w0[who], 0) / YEAR
    pid, d, _ = spread(rng, who, 1 + rng.poisson(0.6 * yrs), c.w0[who], c.end[who])
    mean = np.where(c.female, cal.HAEMOGLOBIN_G_L["female"][0], cal.HAEMOGLOBIN_G_L["male"][0])
    sd = np.where(c.female, cal.HAEMOGLOBIN_G_L["female"][1], cal.HAEMOGLOBIN_G_L["male"][1])
    usual = mean + sd * rng.standard_normal(c.n) + cal.ANAEMIA_HB_SHIFT * anaemic
    hb = np.round(np.clip(usual[pid] + 5 * rng.standard_normal(len(pid)), 60, 200))
    out.event(pid, d, codes.hb.ids[0], hb, codes.u_gl)


def repeat(rng, c, out, picker, eligible, since, share, interval, unit, dose, n_drugs=1):
    """Repeat prescriptions every ``interval`` days from the later of the detail window
    and the diagnosis day, for ``share`` of the eligible; up to ``n_drugs`` products."""
    who = np.flatnonzero(eligible & (rng.random(c.n) < share))
    for k in range(n_drugs):
        if k:
            who = who[rng.random(len(who)) < 0.45]
        start = np.maximum(c.w0[who], since[who])
        pid, d, rep = regular(rng, who, start, c.end[who], interval)
        pick = picker.pick(rng, len(who))
        if k:  # a second drug differs from the first
            pick = (pick + 1) % len(picker.codes)
        mg = picker.extra("strength_mg")[pick][rep]
        out.med(pid, d, picker.ids[pick][rep], float(interval), unit, dose, mg)


def af_treatment(rng, c, codes, out, af_in, since):
    """Anticoagulation for AF: a DOAC or warfarin for most, aspirin alone for a few."""
    rr = np.array(cal.AF_ANTICOAG_IMD_RR)[c.imdq - 1]
    u = rng.random(c.n)
    anticoag = af_in & (u < cal.AF_ANTICOAGULATED * rr)
    aspirin_only = af_in & ~anticoag & (u < cal.AF_ANTICOAGULATED * rr + cal.AF_ASPIRIN_ONLY)
    doac = anticoag & (rng.random(c.n) < cal.AF_DOAC_SHARE)
    warf = anticoag & ~doac
    who = np.flatnonzero(doac)
    start = np.maximum(c.w0[who], since[who])
    pid, d, rep = regular(rng, who, start, c.end[who], 56)
    pick = codes.doac.pick(rng, len(who))[rep]
    per_day = codes.doac.extra("units_per_day")[pick]
    mg = codes.doac.extra("strength_mg")[pick]
    capsule = np.array([r["drug"] == "dabigatran" for r in codes.doac.rows])[pick]
    out.med(pid, d, codes.doac.ids[pick], 56.0 * per_day,
            np.where(capsule, codes.u_capsule, codes.u_tablet),
            np.where(per_day == 2, np.where(capsule, codes.per_day["2 capsules"],
                                            codes.per_day["2 tablets"]),
                     codes.per_day["1 tablet"]), mg * per_day)  # fmt: skip
    who = np.flatnonzero(warf)
    start = np.maximum(c.w0[who], since[who])
    pid, d, rep = regular(rng, who, start, c.end[who], 28)
    out.med(pid, d, codes.warfarin.draw(rng, len(pid)), 28.0, codes.u_tablet, codes.as_directed)
    who = np.flatnonzero(aspirin_only)
    start = np.maximum(c.w0[who], since[who])
    pid, d, _ = regular(rng, who, start, c.end[who], 56)
    out.med(pid, d, codes.aspirin.draw(rng, len(pid)), 56.0, codes.u_tablet, codes.once_daily,
            75.0)  # fmt: skip


def lipid_tests(rng, c, codes, out, on_statin, cvd, dm, smoker, eligible, wy):
    """Lipid profiles: total, HDL, LDL, non-HDL cholesterol and the TC/HDL ratio."""
    high_risk = cvd | dm | on_statin
    tested = eligible & (
        (high_risk & (rng.random(c.n) < cal.LIPIDS_RECORDED_HIGH_RISK))
        | ((c.age >= 40) & (rng.random(c.n) < cal.LIPIDS_RECORDED_40_PLUS))
    )
    who = np.flatnonzero(tested)
    counts = 1 + rng.poisson(np.where(high_risk[who], 0.5, 0.1) * wy[who])
    pid, d, _ = spread(rng, who, counts, c.w0[who], c.end[who])
    k = len(pid)
    fh = rng.random(c.n) < cal.FH_SHARE
    # Statins work less well where collection is patchier (more deprived areas).
    effect = cal.STATIN_TC_REDUCTION * np.array(cal.STATIN_IMD_RR)[c.imdq - 1]
    base = (
        cal.TC_MEAN
        + 0.012 * np.clip(c.age - 50, -25, 25)
        + cal.TC_SD * rng.standard_normal(c.n)
        + 3.0 * fh
        - effect * on_statin
    )
    tc = np.round(np.clip(base[pid] + 0.35 * rng.standard_normal(k), 2.0, 14.0), 1)
    hdl_mean = np.where(c.female, cal.HDL_MEAN["female"], cal.HDL_MEAN["male"]) - 0.1 * smoker
    hdl_p = np.clip(hdl_mean + cal.HDL_SD * rng.standard_normal(c.n), 0.5, 3.2)
    hdl = np.round(np.clip(hdl_p[pid] + 0.1 * rng.standard_normal(k), 0.4, 3.5), 1)
    tg = np.exp(np.log(cal.TG_MEAN) - 0.1 + 0.45 * rng.standard_normal(k))
    ldl = np.round(np.clip(tc - hdl - tg / 2.2, 0.3, None), 1)
    nonhdl = np.round(tc - hdl, 1)
    ratio = np.round(tc / hdl, 1)
    out.event(pid, d, codes.tc.draw(rng, k), tc, codes.u_mmol)
    sel = rng.random(k) < 0.95
    out.event(pid[sel], d[sel], codes.hdl.ids[0], hdl[sel], codes.u_mmol)
    sel = rng.random(k) < 0.85
    out.event(pid[sel], d[sel], codes.ldl.draw(rng, int(sel.sum())), ldl[sel], codes.u_mmol)
    sel = rng.random(k) < 0.7
    out.event(pid[sel], d[sel], codes.nonhdl.ids[0], nonhdl[sel], codes.u_mmol)
    sel = rng.random(k) < 0.6
    out.event(pid[sel], d[sel], codes.ratio.ids[0], ratio[sel])
    who = np.flatnonzero(fh & eligible & (rng.random(c.n) < 0.4))
    _dx_events(rng, c, out, codes.fh_dx, who, 10.0, 18)


def diabetes_kidney_tests(rng, c, codes, out, dm_in, ckd_stage, htn_in, wy):
    """HbA1c for people with diabetes; eGFR for CKD (by stage), diabetes and hypertension."""
    who = np.flatnonzero(dm_in)
    pid, d, _ = spread(rng, who, rng.poisson(2.0 * wy[who]), c.w0[who], c.end[who])
    usual = (
        cal.HBA1C_MEAN
        + np.array(cal.HBA1C_IMD_SHIFT)[c.imdq - 1]
        + cal.HBA1C_SD * rng.standard_normal(c.n)
    )
    value = np.round(np.clip(usual[pid] + 5 * rng.standard_normal(len(pid)), 30, 160))
    out.event(pid, d, codes.hba1c.ids[0], value, codes.u_mmolmol)
    ckd = ckd_stage >= 0
    who = np.flatnonzero((ckd | dm_in | htn_in) & (c.end > c.w0))
    rate = np.where(ckd[who], 2.0, 1.0)
    pid, d, _ = spread(rng, who, rng.poisson(rate * wy[who]), c.w0[who], c.end[who])
    stage = ckd_stage[pid]
    lo = np.array([r[0] for r in cal.EGFR_RANGE] + [62])[np.where(stage >= 0, stage, 4)]
    hi = np.array([r[1] for r in cal.EGFR_RANGE] + [105])[np.where(stage >= 0, stage, 4)]
    value = np.round(lo + rng.random(len(pid)) * (hi - lo))
    out.event(pid, d, codes.egfr.ids[0], value, codes.u_egfr)


def resolved(rng, c, out, dx_picker, resolved_picker, eligible, share, age_lo, age_hi):
    """People given a diagnosis later coded as resolved (so not on the register): e.g.
    childhood asthma, or hypertension diagnosed in pregnancy or on one high reading."""
    who = np.flatnonzero(eligible & (rng.random(c.n) < share))
    age_end = c.age[who] - (E - c.end[who]) / YEAR
    # uniform over the ages available (at least 1.2 years before the end, so a resolution
    # can follow): capping a draw instead would put many onsets on one date
    hi = np.minimum(age_hi, age_end - 1.2)
    lo = np.minimum(age_lo, hi)
    onset_age = lo + rng.random(len(who)) * (hi - lo)
    onset = c.dob[who] + np.floor(onset_age * YEAR).astype(np.int64)
    # resolved a year or more later, the further time Exponential(mean 5 years) truncated to
    # the end of observation (a cap would put many resolutions on the extract date)
    span = np.maximum(c.end[who] - onset - 365, 0) / (5 * YEAR)
    gap = -5 * YEAR * np.log1p(rng.random(len(who)) * np.expm1(-span))
    resolved = np.minimum(onset + 365 + np.floor(gap).astype(np.int64), c.end[who])
    ok = (onset >= c.dob[who]) & (resolved > onset)
    out.event(who[ok], onset[ok], dx_picker.ids[np.zeros(int(ok.sum()), int)])
    out.event(who[ok], resolved[ok], resolved_picker.ids[0])


def smoking_bmi(rng, c, codes, out, eligible, smoker, ex_smoker, intensity, bmi):
    rec = np.flatnonzero(eligible & (rng.random(c.n) < cal.SMOKING_RECORDED))
    pid, d, _ = spread(rng, rec, np.ones(len(rec), int), c.w0[rec], c.end[rec])
    code = np.where(
        smoker[pid],
        np.where(
            rng.random(len(pid)) < 0.3,
            codes.smoke_current.ids[0],
            codes.smoke_by_intensity.ids[intensity[pid]],
        ),
        np.where(ex_smoker[pid], codes.smoke_ex.ids[0], codes.smoke_never.ids[0]),
    )
    out.event(pid, d, code)
    # Half of current smokers' records also carry cigarettes per day (QRISK3 categories).
    cur = smoker[pid] & (rng.random(len(pid)) < 0.5)
    band = intensity[pid[cur]]
    lo, hi = np.array([1, 10, 20])[band], np.array([9, 19, 40])[band]
    cigs = lo + np.floor(rng.random(len(band)) * (hi - lo + 1))
    out.event(pid[cur], d[cur], codes.cigs.ids[0], cigs, codes.u_per_day)
    rec = np.flatnonzero(eligible & (rng.random(c.n) < cal.BMI_RECORDED))
    pid, d, _ = spread(rng, rec, np.ones(len(rec), int), c.w0[rec], c.end[rec])
    mean_h = np.where(c.female[pid], cal.HEIGHT_CM["female"][0], cal.HEIGHT_CM["male"][0])
    sd_h = np.where(c.female[pid], cal.HEIGHT_CM["female"][1], cal.HEIGHT_CM["male"][1])
    h = np.round(mean_h + sd_h * rng.standard_normal(len(pid)), 1)
    b = np.round(bmi[pid], 1)
    w = np.round(b * (h / 100) ** 2, 1)
    out.event(pid, d, codes.bmi.ids[0], b, codes.u_kgm2)
    out.event(pid, d, codes.height.ids[0], h, codes.u_cm)
    out.event(pid, d, codes.weight.ids[0], w, codes.u_kg)


def statins_lipids(rng, c, codes, out, cvd, dm, inwin):
    p_primary, _ = by_band(
        [0.0] + [x[1] for x in cal.STATIN_PRIMARY_BY_AGE],
        [0] + [x[0] for x in cal.STATIN_PRIMARY_BY_AGE],
        c.age,
    )
    p = np.where(
        cvd, cal.STATIN_CVD, np.where(dm & (c.age >= 40), cal.STATIN_DIABETES_40, p_primary)
    )
    p = p * np.array(cal.STATIN_IMD_RR)[c.imdq - 1]
    on = inwin & (c.age >= 25) & (rng.random(c.n) < p)
    who = np.flatnonzero(on)
    start = np.maximum(c.w0[who], c.end[who] - np.floor(rng.exponential(6, len(who)) * YEAR))
    start = np.minimum(start.astype(np.int64), c.end[who])
    secondary = cvd[who]
    code_of = np.empty(len(who), dtype=np.int32)
    mg_of = np.empty(len(who))
    for mask, picker in ((secondary, codes.statin_secondary), (~secondary, codes.statin_primary)):
        pick = picker.pick(rng, int(mask.sum()))
        code_of[mask] = picker.ids[pick]
        mg_of[mask] = picker.extra("strength_mg")[pick]
    pid, d, rep = regular(rng, who, start, c.end[who], 56)
    code, strength = code_of[rep], mg_of[rep]
    out.med(pid, d, code, 56.0, codes.u_tablet, codes.once_daily, strength)
    prim = who[~secondary]
    coded = prim[rng.random(len(prim)) < cal.HYPERLIPIDAEMIA_CODED]
    _dx_events(rng, c, out, codes.hyperlip_dx, coded, 5.0, 25)
    return on


def blood_pressure(rng, c, codes, out, htn, adult_in, wy):
    n = c.n
    usual = np.where(
        htn,
        np.array(cal.HTN_SBP_MEAN_BY_IMD)[c.imdq - 1]
        + cal.HTN_SBP_BLACK_SHIFT * (c.eth5 == 3)
        + cal.HTN_SBP_SD * rng.standard_normal(n),
        cal.SBP_INTERCEPT + cal.SBP_PER_YEAR * c.age + cal.SBP_SD * rng.standard_normal(n),
    )
    usual_d = (
        cal.DBP_INTERCEPT
        + cal.DBP_PER_SBP * usual
        - cal.DBP_AGE_FALL * np.maximum(c.age - 50, 0)
        + cal.DBP_SD * rng.standard_normal(n)
    )
    rate = np.where(
        htn,
        cal.BP_READINGS_PER_YEAR[0],
        np.where(c.age >= 40, cal.BP_READINGS_PER_YEAR[1], cal.BP_READINGS_PER_YEAR[2]),
    )
    who = np.flatnonzero(adult_in)
    counts = rng.poisson(rate[who] * wy[who])
    # Diagnosed hypertension: at least one reading in the last 12 months for most.
    pid, d, _ = spread(rng, who, counts, c.w0[who], c.end[who])
    check = np.array(cal.BP_YEARLY_CHECK_BY_IMD)[c.imdq - 1]
    extra = np.flatnonzero(htn & adult_in & (rng.random(n) < check))
    pid2, d2, _ = spread(
        rng,
        extra,
        np.ones(len(extra), int),
        np.maximum(c.end[extra] - 330, c.w0[extra]),
        c.end[extra],
    )
    pid = np.concatenate([pid, pid2])
    d = np.concatenate([d, d2])
    # Same-day repeat readings.
    second = rng.random(len(pid)) < cal.BP_SAME_DAY_SECOND
    third = second & (rng.random(len(pid)) < cal.BP_SAME_DAY_THIRD / cal.BP_SAME_DAY_SECOND)
    pid = np.concatenate([pid, pid[second], pid[third]])
    d = np.concatenate([d, d[second], d[third]])
    k = len(pid)
    sbp = np.round(usual[pid] + cal.SBP_VISIT_SD * rng.standard_normal(k))
    dbp = np.round(usual_d[pid] + cal.DBP_VISIT_SD * rng.standard_normal(k))
    sbp = np.clip(sbp, 70, 260)
    dbp = np.clip(dbp, 35, 150)
    bad = rng.random(k) < cal.BP_INVALID_SHARE
    which = rng.random(k) < 0.5
    sbp = np.where(bad & which, rng.choice([0.0, 12.0, 45.0], k), sbp)
    dbp = np.where(bad & ~which, rng.choice([0.0, 8.0, 15.0], k), dbp)
    style = rng.random(n) < 0.2  # older pair of codes at some practices
    out.event(pid, d, np.where(style[pid], codes.sbp.ids[1], codes.sbp.ids[0]), sbp, codes.u_mmhg)
    out.event(pid, d, np.where(style[pid], codes.dbp.ids[1], codes.dbp.ids[0]), dbp, codes.u_mmhg)


def _ocs_course(rng, c, codes, out, pid, d):
    """Prednisolone courses: 40 mg × 5 days = 40 × 5 mg tablets, etc. (BNF)."""
    k = len(pid)
    child = c.age[pid] < 12
    a_choice = choice(rng, cal.PRED_COURSE_ADULT_P, k)
    c_choice = rng.integers(0, 3, k)
    qty = np.where(
        child,
        np.array(cal.PRED_COURSE_CHILD_TABLETS)[c_choice],
        np.array(cal.PRED_COURSE_ADULT_TABLETS)[a_choice],
    ).astype(float)
    daily = np.where(
        child, np.array([30.0, 40.0, 30.0])[c_choice], np.array([40.0, 30.0, 40.0])[a_choice]
    )
    code = np.where(child, codes.pred5_soluble.ids[0], codes.pred5.draw(rng, k))
    dose = np.where(daily == 40, codes.pred_doses[8], codes.pred_doses[6])
    out.med(pid, d, code, qty, codes.u_tablet, dose, daily)


def _admit(rng, out, codes, c, pid, day_, method, dx, los_mean, cc_p, proc=None):
    k = len(pid)
    los = rng.poisson(los_mean, k)
    out.adm.add(
        pid=pid,
        adate=day_,
        ddate=np.minimum(day_ + los, np.maximum(c.end[pid], day_)),
        method=np.full(k, method),
        dx=dx,
        proc=np.full(k, NULL) if proc is None else proc,
        cc=rng.random(k) < cc_p,
        prov=codes.providers[_district(c, pid)],
    )


def _district(c, pid):
    return c.district[pid]


def _ed(rng, out, codes, c, pid, day_, dx, admitted_p, analgesia=None):
    k = len(pid)
    arrive = day_ * US_PER_DAY + time_of_day_us(rng, k)
    stay_min = np.round(np.clip(rng.lognormal(np.log(210), 0.5, k), 30, 24 * 60))
    admitted = rng.random(k) < admitted_p
    other = rng.random(k)
    dest = np.where(
        admitted,
        codes.dest["admitted"],
        np.where(
            other < 0.96,
            codes.dest["home"],
            np.where(other < 0.985, codes.dest["transfer"], codes.dest["other"]),
        ),
    )
    out.ed.add(
        pid=pid,
        arrive=arrive,
        depart=arrive + (stay_min * 60e6).astype(np.int64),
        dx=dx,
        dest=dest,
        analgesia=np.full(k, NULL) if analgesia is None else analgesia(arrive),
        prov=codes.providers[_district(c, pid)],
    )
    return admitted


def asthma(rng, c, codes, out, asthma_in, smoker, bmi, wy):
    who = np.flatnonzero(asthma_in)
    k = len(who)
    qi = c.imdq[who] - 1
    s = (
        rng.standard_normal(k)
        + np.array(cal.ASTHMA_CONTROL_PER_IMD)[qi]
        + cal.ASTHMA_CONTROL_PER_NO2_QUINTILE * (c.no2q[who] - 1)
        + cal.ASTHMA_CONTROL_SMOKER * smoker[who]
        + cal.ASTHMA_CONTROL_OBESE * ((bmi[who] >= 30) & (c.age[who] >= 18))
    )
    yrs = wy[who]
    w0, w1 = c.w0[who], c.end[who]
    # Diagnosis, mostly in childhood or early adult life.
    # Onset 1.5 years + Exponential(mean 16), truncated to the years lived by the end of
    # observation (drawn by its inverse distribution function): capping a draw at the last
    # day instead would pile every late onset on the extract date, a false step in trends.
    age_end = np.maximum(c.age[who] - (E - w1) / YEAR, 0)
    span = np.maximum(age_end - 1.5, 0)
    u = rng.random(k)
    late = 1.5 - 16 * np.log1p(u * np.expm1(-span / 16))
    onset_age = np.where(age_end > 1.5, late, u * age_end)
    dx_day = np.clip(c.dob[who] + np.floor(onset_age * YEAR).astype(np.int64), c.dob[who], w1)
    child = c.age[who] < 12
    dx_code = np.where(
        child & (rng.random(k) < 0.5), codes.asthma_dx.ids[1], codes.asthma_dx.draw(rng, k)
    )
    out.event(who, dx_day, dx_code)

    # Relievers.
    a, b = cal.ASTHMA_SABA_LOG_RATE
    n_saba = rng.poisson(np.exp(a + b * s) * yrs)
    pid, d, _ = spread(rng, who, n_saba, w0, w1)
    saba_12m = _last_year(who, pid, d)
    saba_code = codes.saba.draw(rng, k)  # each patient keeps their usual product
    idx = np.searchsorted(who, pid)
    qty = np.where(rng.random(len(pid)) < 0.1, 2.0, 1.0)
    out.med(pid, d, saba_code[idx], qty, codes.u_inhaler, codes.saba_dose)

    # Preventers.
    on_ics = rng.random(k) < cal.ASTHMA_ON_ICS
    adherence = (
        rng.beta(*cal.ASTHMA_ICS_ADHERENCE_BETA, k) * np.array(cal.ASTHMA_ICS_ADHERENCE_IMD)[qi]
    )
    n_ics = np.where(on_ics, rng.poisson((12 * adherence + 0.3) * yrs), 0)
    la, lb = cal.ASTHMA_HIGH_DOSE_LOGIT
    high = ~child & (rng.random(k) < 1 / (1 + np.exp(-(la + lb * s))))
    medium = ~high & ~child & (rng.random(k) < 0.45)
    ics_code = np.where(
        high,
        codes.ics["high"].draw(rng, k),
        np.where(medium, codes.ics["medium"].draw(rng, k), codes.ics["low"].draw(rng, k)),
    )
    pid, d, _ = spread(rng, who, n_ics, w0, w1)
    idx = np.searchsorted(who, pid)
    out.med(pid, d, ics_code[idx], 1.0, codes.u_inhaler, codes.ics_dose)

    # Everyone on the register has an asthma medicine in the last 12 months (QOF AST).
    last = np.maximum(w1 - 364, w0)
    cur = c.current[who]
    pid, d, _ = spread(rng, who[cur], np.ones(cur.sum(), int), last[cur], w1[cur])
    idx = np.searchsorted(who, pid)
    out.med(pid, d, saba_code[idx], 1.0, codes.u_inhaler, codes.saba_dose)
    saba_12m += _last_year(who, pid, d)

    # Oral steroid courses (attacks treated in primary care).
    a, b = cal.ASTHMA_OCS_LOG_RATE
    n_ocs = rng.poisson(np.exp(a + b * s) * yrs)
    pid, d, _ = spread(rng, who, n_ocs, w0, w1)
    ocs_12m = _last_year(who, pid, d)
    _ocs_course(rng, c, codes, out, pid, d)
    coded = rng.random(len(pid)) < cal.ASTHMA_EXACERBATION_CODED
    out.event(pid[coded], d[coded], codes.asthma_exac.draw(rng, int(coded.sum())))
    # Maintenance prednisolone for a few with very poor control.
    maint = who[(s > 2) & (rng.random(k) < cal.ASTHMA_MAINTENANCE_OCS) & ~child]
    pid, d, _ = regular(rng, maint, c.w0[maint], c.end[maint], 28)
    ten = rng.random(len(maint)) < 0.4
    ten_r = ten[np.searchsorted(maint, pid)]
    out.med(
        pid,
        d,
        codes.pred5.ids[0],
        np.where(ten_r, 56.0, 28.0),
        codes.u_tablet,
        np.where(ten_r, codes.two_daily, codes.once_daily),
        np.where(ten_r, 10.0, 5.0),
    )

    # ED attendances and admissions.
    a, b = cal.ASTHMA_ED_LOG_RATE
    n_ed = rng.poisson(np.exp(a + b * s) * yrs)
    pid, d, rep = spread(rng, who, n_ed, w0, w1)
    admitted = _ed(
        rng, out, codes, c, pid, d, codes.asthma_ed_dx.draw(rng, len(pid)), cal.ASTHMA_ED_ADMITTED
    )
    a, b = cal.ASTHMA_DIRECT_ADMISSION_LOG_RATE
    n_dir = rng.poisson(np.exp(a + b * s) * yrs)
    pid2, d2, rep2 = spread(rng, who, n_dir, w0, w1)
    apid = np.concatenate([pid[admitted], pid2])
    aday = np.concatenate([d[admitted], d2])
    attacks_12m = _last_year(who, pid, d) + _last_year(who, pid2, d2)
    srep = np.concatenate([rep[admitted], rep2])
    cc_p = np.clip(cal.ASTHMA_CRITICAL_CARE * np.exp(0.5 * (s[srep] - 1)), 0, 0.5)
    _admit(
        rng,
        out,
        codes,
        c,
        apid,
        aday,
        codes.methods["emergency"],
        codes.asthma_icd.draw(rng, len(apid)),
        1.5,
        cc_p,
    )
    noted = rng.random(len(apid)) < 0.6
    out.event(
        apid[noted],
        np.minimum(aday[noted] + rng.integers(3, 15, int(noted.sum())), c.end[apid[noted]]),
        codes.asthma_adm_gp.ids[0],
    )

    # Reviews, action plans, inhaler technique: yearly, less often in deprived areas.
    care = np.array(cal.ASTHMA_CARE_IMD_RR)[qi]
    for y in range(cal.DETAIL_YEARS):
        y1 = E - int(y * YEAR)
        y0 = y1 - 364
        lo, hi = np.maximum(w0, y0), np.minimum(w1, y1)
        ok = hi >= lo
        for p_base, picker in (
            (cal.ASTHMA_REVIEW_P, codes.asthma_review),
            (cal.ASTHMA_ACTION_PLAN_P, codes.asthma_plan),
            (cal.ASTHMA_TECHNIQUE_P, codes.technique),
        ):
            got = ok & (rng.random(k) < p_base * care)
            sel = np.flatnonzero(got)
            pid, d, _ = spread(rng, who[sel], np.ones(len(sel), int), lo[sel], hi[sel])
            out.event(pid, d, picker.draw(rng, len(pid)))

    # What the referral pathway needs: who is uncontrolled in the year to the extract date
    # by the ISAC/AAC record criteria (≥6 SABA, ≥2 OCS courses, ≥1 ED/admission).
    uncontrolled = (
        (saba_12m >= cal.ASTHMA_REFERRAL_UNCONTROLLED_SABA)
        | (ocs_12m >= cal.ASTHMA_REFERRAL_UNCONTROLLED_OCS)
        | (attacks_12m >= 1)
    )
    return AsthmaControl(who, uncontrolled, high | (s > 2))


@dataclass(frozen=True)
class AsthmaControl:
    """The asthma register of a chunk (``who``, sorted) with, per person, whether their
    records in the year to the extract date meet the uncontrolled-asthma criteria, and a
    marker of severe disease (high-dose ICS or very poor latent control)."""

    who: np.ndarray
    uncontrolled: np.ndarray
    severe: np.ndarray


def _last_year(who: np.ndarray, pid: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Per person of ``who`` (sorted), how many of the rows (pid, d) fall in the year to the
    extract date: (E − 365, E]."""
    inside = d > E - 365
    return np.bincount(np.searchsorted(who, pid[inside]), minlength=len(who))


def asthma_referrals(rng, c, codes, out, control: AsthmaControl) -> None:
    """Referrals of uncontrolled asthma to a respiratory specialist, and the clinic visits.

    Of the people still registered whose records make them uncontrolled in the last year, a
    share (lower in deprived areas; higher with severe disease) has a referral dated in the
    ``ASTHMA_REFERRAL_WINDOW_DAYS`` before the extract; the rest are never referred. The wait
    to the first chest/respiratory clinic is log-normal, so some wait beyond 18 weeks; a
    visit after the extract date (or after the person left) is not written (still waiting),
    and some visits are never coded in the GP record. Children are referred to a paediatric
    pulmonologist. Severe-asthma-centre referrals are not generated: pophealth has no
    curated code list for them (the generator never invents a code)."""
    who, unc = control.who, control.uncontrolled
    cand = np.flatnonzero(unc & c.current[who])
    k = len(cand)
    if not k:
        return
    pid = who[cand]
    qi = c.imdq[pid] - 1
    p = (
        cal.ASTHMA_REFERRAL_P
        * np.array(cal.ASTHMA_REFERRAL_IMD_RR)[qi]
        * np.where(control.severe[cand], cal.ASTHMA_REFERRAL_SEVERE_RR, 1.0)
    )
    ref = rng.random(k) < np.minimum(p, 1.0)
    pid = pid[ref]
    m = len(pid)
    start = np.maximum(c.w0[pid], E - cal.ASTHMA_REFERRAL_WINDOW_DAYS)
    ref_day = start + np.floor(rng.random(m) * (E - start + 1)).astype(np.int64)
    child = c.age[pid] < 16
    code = np.where(child, codes.referral_child.ids[0], codes.referral.draw(rng, m))
    out.event(pid, ref_day, code)
    median, sigma = cal.ASTHMA_SECONDARY_WAIT_LOGNORMAL
    wait = np.round(rng.lognormal(np.log(median), sigma, m)).astype(np.int64)
    seen_day = ref_day + np.maximum(wait, 1)
    coded = rng.random(m) < cal.ASTHMA_CLINIC_SEEN_CODED
    ok = coded & (seen_day <= c.end[pid])
    out.event(pid[ok], seen_day[ok], codes.clinic_seen.draw(rng, int(ok.sum())))


def copd(rng, c, codes, out, copd_in, wy):
    who = np.flatnonzero(copd_in)
    k = len(who)
    qi = c.imdq[who] - 1
    s = rng.standard_normal(k) + np.array(cal.COPD_CONTROL_PER_IMD)[qi]
    yrs = wy[who]
    w0, w1 = c.w0[who], c.end[who]
    a, b = cal.COPD_EXACERBATION_LOG_RATE
    pid, d, _ = spread(rng, who, rng.poisson(np.exp(a + b * s) * yrs), w0, w1)
    out.event(pid, d, codes.copd_exac.ids[0])
    steroid = rng.random(len(pid)) < 0.7
    k2 = int(steroid.sum())
    out.med(
        pid[steroid],
        d[steroid],
        codes.pred5.draw(rng, k2),
        30.0,
        codes.u_tablet,
        codes.pred_doses[6],
        30.0,
    )
    pid, d, _ = spread(rng, who, rng.poisson(3.0 * yrs), w0, w1)
    out.med(pid, d, codes.saba.ids[0], 1.0, codes.u_inhaler, codes.saba_dose)
    a, b = cal.COPD_ADMISSION_LOG_RATE
    pid, d, _ = spread(rng, who, rng.poisson(np.exp(a + b * s) * yrs), w0, w1)
    via_ed = rng.random(len(pid)) < cal.COPD_ED_ADMITTED
    _ed(
        rng,
        out,
        codes,
        c,
        pid[via_ed],
        d[via_ed],
        np.full(int(via_ed.sum()), codes.copd_exac.ids[0]),
        1.0,
    )
    _admit(
        rng,
        out,
        codes,
        c,
        pid,
        d,
        codes.methods["emergency"],
        codes.copd_icd.draw(rng, len(pid)),
        4.0,
        0.03,
    )


def sickle_cell(rng, c, codes, out, scd_in, wy):
    who = np.flatnonzero(scd_in)
    k = len(who)
    lam = rng.gamma(cal.SICKLE_ED_SHAPE, cal.SICKLE_ED_MEAN / cal.SICKLE_ED_SHAPE, k)
    pid, d, _ = spread(rng, who, rng.poisson(lam * wy[who]), c.w0[who], c.end[who])

    def analgesia(arrive):
        m = len(arrive)
        hour = (arrive % US_PER_DAY) // 3_600_000_000
        night = (hour >= 20) | (hour < 8)
        minutes = rng.lognormal(
            np.log(cal.SICKLE_ANALGESIA_MEDIAN_MIN), cal.SICKLE_ANALGESIA_LOG_SD, m
        )
        minutes *= np.where(night, cal.SICKLE_ANALGESIA_NIGHT_RR, 1.0)
        given = arrive + (np.round(np.clip(minutes, 2, 600)) * 60e6).astype(np.int64)
        return np.where(rng.random(m) < cal.SICKLE_ANALGESIA_NOT_RECORDED, NULL, given)

    admitted = _ed(
        rng,
        out,
        codes,
        c,
        pid,
        d,
        codes.scd_dx.ids[np.zeros(len(pid), int)],
        cal.SICKLE_ED_ADMITTED,
        analgesia,
    )
    ap = pid[admitted]
    _admit(
        rng,
        out,
        codes,
        c,
        ap,
        d[admitted],
        codes.methods["emergency"],
        np.full(len(ap), codes.scd_icd.ids[0]),
        3.0,
        0.03,
    )


def other_emergency_care(rng, c, codes, out, inwin, wy):
    """ED attendances and emergency admissions for everything else (chest pain, falls,
    infections...): the denominators of ED and admission indicators, with their age
    shape and deprivation gradient."""
    rate, band = by_band(cal.ED_RATE_BY_AGE, cal.ED_RATE_AGE_LOWER, c.age)
    rate = rate * np.array(cal.ED_IMD_RR)[c.imdq - 1]
    who = np.flatnonzero(inwin)
    pid, d, _ = spread(rng, who, rng.poisson(rate[who] * wy[who]), c.w0[who], c.end[who])
    kind = choice(rng, cal.ED_DIAGNOSIS_MIX, len(pid))
    admitted_p = np.array(cal.ED_ADMITTED_BY_AGE)[band[pid]]
    admitted = _ed(rng, out, codes, c, pid, d, codes.ed_general.ids[kind], admitted_p)
    ap = pid[admitted]
    los = np.where(c.age[ap] >= 80, 5.0, 2.0)
    _admit(rng, out, codes, c, ap, d[admitted], codes.methods["emergency"],
           codes.adm_general.ids[kind[admitted]], los, 0.01)  # fmt: skip


def _wound_questionnaire(rng, c, out, pid, d, emergency, grade, abx, start, skin, codes,
                         normo, bmi):  # fmt: skip
    """A surgical-site infection (SSI) by 30 days, from the published risk factors and the
    care bundle, and the 30-day wound questionnaire for the women who answer it."""
    lor = cal.SSI_LOG_OR
    b = np.nan_to_num(bmi, nan=27.0)
    timely = (abx != NULL) & (abx <= start) & (abx >= start - 60 * 60_000_000)
    logit = (
        np.log(cal.SSI_BASE_PROBABILITY / (1 - cal.SSI_BASE_PROBABILITY))
        + lor["bmi_25_30"] * ((b >= 25) & (b < 30))
        + lor["bmi_30_35"] * ((b >= 30) & (b < 35))
        + lor["bmi_35_plus"] * (b >= 35)
        + lor["age_under_20"] * (c.age[pid] - (E - d) / YEAR < 20)
        + lor["staff_grade"] * (grade == 2)
        + lor["emergency"] * emergency
        + lor["antibiotic_not_timely"] * ~timely
        + lor["skin_prep_not_chlorhexidine"] * (skin != codes.skin[0])
        + lor["hypothermia"] * (normo == 0)
    )
    ssi = rng.random(len(pid)) < 1 / (1 + np.exp(-logit))
    authored_day = d + 30 + rng.integers(0, 6, len(pid))
    answered = (rng.random(len(pid)) < np.array(cal.SSI_RESPONSE_BY_IMD)[c.imdq[pid] - 1]) & (
        authored_day <= c.end[pid]
    )
    r = np.flatnonzero(answered)
    n_items = len(cal.SSI_ITEMS)
    rep = np.repeat(r, n_items)
    item = np.tile(np.arange(n_items), len(r))
    p_yes = np.where(
        ssi[rep],
        np.array([i[2] for i in cal.SSI_ITEMS])[item],
        np.array([i[3] for i in cal.SSI_ITEMS])[item],
    )
    authored = authored_day[r] * US_PER_DAY + rng.integers(9 * 60, 21 * 60, len(r)) * 60_000_000
    out.qr.add(
        pid=pid[rep],
        response=rep,  # renumbered per chunk when assembled
        authored=np.repeat(authored, n_items),
        item=item,
        yes=(rng.random(len(rep)) < p_yes).astype(np.int8),
    )


def caesareans(rng, c, codes, out, women_in, bmi, wy):
    who = np.flatnonzero(women_in & (c.age >= 16) & (c.age < 50))
    rate, _ = by_band(
        [x[1] for x in cal.BIRTH_RATE_BY_AGE], [x[0] for x in cal.BIRTH_RATE_BY_AGE], c.age[who]
    )
    births = np.minimum(rng.poisson(rate * cal.CAESAREAN_SHARE * wy[who]), 3)
    pid, d, _ = spread(rng, who, births, c.w0[who], c.end[who])
    k = len(pid)
    emergency = rng.random(k) < cal.CAESAREAN_EMERGENCY_OF_ALL
    minute = np.where(emergency, rng.integers(0, 24 * 60, k), rng.integers(8 * 60 + 30, 13 * 60, k))
    start = d * US_PER_DAY + minute * 60_000_000
    code = np.where(emergency, codes.cs_emergency.draw(rng, k), codes.cs_elective.draw(rng, k))
    grade = np.where(
        emergency,
        choice(rng, cal.OPERATOR_GRADE_EMERGENCY, k),
        choice(rng, cal.OPERATOR_GRADE_ELECTIVE, k),
    )
    dur = np.round(
        np.clip(np.where(emergency, rng.normal(55, 18, k), rng.normal(45, 12, k)), 18, 240)
    )
    before = np.round(np.clip(rng.normal(*cal.ANTIBIOTIC_MIN_BEFORE, k), 1, 120))
    after = np.round(rng.uniform(5, 25, k))
    u = rng.random(k)
    abx = np.where(
        u < cal.ANTIBIOTIC_NOT_RECORDED,
        NULL,
        np.where(
            u < cal.ANTIBIOTIC_NOT_RECORDED + cal.ANTIBIOTIC_AFTER_INCISION,
            start + (after * 60e6).astype(np.int64),
            start - (before * 60e6).astype(np.int64),
        ),
    )
    skin = codes.skin[choice(rng, [p for _, p in cal.SKIN_PREP], k)]
    normo = np.array([1, 0, -1], dtype=np.int8)[choice(rng, cal.NORMOTHERMIA, k)]
    b = np.exp(
        np.log(cal.PREGNANCY_BMI_MEAN)
        + 0.5 * np.log(bmi[pid] / cal.BMI_MEAN)
        + cal.PREGNANCY_BMI_LOG_SD * 0.8 * rng.standard_normal(k)
    )
    b = np.round(np.clip(b, 15, 70), 1)
    b = np.where(rng.random(k) < 0.05, np.nan, b)
    # Dressing by BMI (local pathways: NPWT for BMI > 35, DACC 30-35, film otherwise).
    u = rng.random(k)
    dress = np.where(
        b >= 35,
        np.where(u < 0.6, 3, np.where(u < 0.8, 2, 1)),
        np.where(
            b >= 30,
            np.where(u < 0.4, 2, np.where(u < 0.7, 1, 0)),
            np.where(u < 0.6, 0, np.where(u < 0.95, 1, 4)),
        ),
    )
    dress = np.where(rng.random(k) < 0.04, 5, dress)
    prov = codes.providers[_district(c, pid)]
    out.ops.add(
        pid=pid,
        start=start,
        code=code,
        urg=codes.urgency[emergency.astype(int)],
        grade=codes.grades[grade],
        dur=dur,
        abx=abx,
        skin=skin,
        normo=normo,
        dress=codes.dressings[dress],
        bmi=b,
        prov=prov,
    )
    _wound_questionnaire(rng, c, out, pid, d, emergency, grade, abx, start, skin, codes, normo, b)
    dx = np.where(emergency, codes.cs_icd_emergency.ids[0], codes.cs_icd_elective.ids[0])
    los = rng.integers(1, 4, k)
    out.adm.add(
        pid=pid,
        adate=d,
        ddate=np.minimum(d + los, np.maximum(c.end[pid], d)),
        method=np.full(k, codes.methods["maternity"]),
        dx=dx,
        proc=code,
        cc=rng.random(k) < 0.005,
        prov=prov,
    )
