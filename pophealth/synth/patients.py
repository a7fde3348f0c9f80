"""Synthetic patients of one chunk: demography, deaths and departures, addresses,
registrations and disease registers; then the records, and the Arrow tables.

The model, in order: age/sex (ONS), home LSOA (deprived areas younger), ethnicity
(Census 2021, tilted to urban and deprived areas), smoking and BMI, disease registers
(age × sex shape × deprivation and ethnicity relative risks × comorbidity, scaled to the
QOF prevalence target among the patients expected to stay), deaths and departures,
address and registration histories, and then the records each condition leaves
(:mod:`pophealth.synth.records`). Everything is vectorised over the chunk's patients.
Targets and sources are in :mod:`pophealth.synth.calibration`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from pophealth.synth import calibration as cal
from pophealth.synth import records
from pophealth.synth._build import (
    conform,
    date_array,
    float_array,
    list_col,
    repeat_string,
    sort_order,
    ts_array,
)
from pophealth.synth._codes import CodePicker, Vocab
from pophealth.synth._model import (
    NULL,
    W_START,
    YEAR,
    Chunk,
    E,
    Out,
    by_band,
    choice,
    make_ids,
)
from pophealth.synth.region import PROVIDERS, Region, rng_for

ETH16 = tuple(cal.ETHNICITY_16_SHARE)  # A..S
ETH5_OF_16 = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 4, 4])
ETH5_NAMES = ("white", "mixed", "asian", "black", "other", "unknown")
SEX_NAMES = ("female", "male", "unknown")
#: Registers whose people die sooner (cal.DEATH_HR_MORBIDITY each, up to two).
_HAZARD_REGISTERS = frozenset({"copd", "heart_failure", "ckd", "af"})


class Codes:
    """Every code the generator writes, with the weights it picks them by, checked
    against the curated lists once per run."""

    def __init__(self) -> None:
        v = self.vocab = Vocab()

        def p(name: str, weights: dict[str, float]) -> CodePicker:
            return CodePicker(v, name, weights)

        self.asthma_dx = p(
            "asthma_diagnosis",
            {
                "195967001": 70,
                "233678006": 8,
                "370218001": 5,
                "370219009": 4,
                "370221004": 1.5,
                "389145006": 5,
                "266361008": 2,
                "233679003": 2,
                "57607007": 0.5,
                "426656000": 0.5,
            },
        )
        self.asthma_exac = p(
            "asthma_exacerbation", {"281239006": 50, "708038006": 40, "734905008": 10}
        )
        self.asthma_ed_dx = p(
            "asthma_exacerbation",
            {"708038006": 60, "708090002": 30, "734904007": 5, "281239006": 5},
        )
        self.asthma_adm_gp = p("asthma_emergency_admission", {"183478001": 1})
        self.asthma_review = p(
            "asthma_review",
            {
                "394700004": 55,
                "270442000": 25,
                "401182001": 10,
                "401183006": 5,
                "754061000000100": 5,
            },
        )
        self.asthma_plan = p(
            "asthma_action_plan", {"406162001": 40, "811921000000103": 35, "527171000000103": 25}
        )
        self.technique = p("inhaler_technique_check", {"170614009": 1})
        self.referral = p(
            "asthma_referral_secondary", {"306275005": 60, "306273003": 36, "183907003": 4}
        )
        self.referral_child = p("asthma_referral_secondary", {"425971006": 1})
        self.clinic_seen = p("asthma_seen_secondary", {"428489000": 60, "185240002": 40})
        self.asthma_icd = p(
            "asthma_attack_icd10", {"J459": 60, "J450": 10, "J451": 5, "J458": 5, "J46X": 20}
        )
        self.saba = p(
            "saba_inhalers",
            {
                "39113611000001102": 70,
                "222311000001102": 15,
                "3215311000001107": 10,
                "9205211000001104": 5,
            },
        )
        self.ics = {
            "low": p(
                "ics_inhalers",
                {"10618211000001109": 50, "42292311000001106": 25, "726611000001102": 25},
            ),
            "medium": p(
                "ics_inhalers",
                {"12906411000001100": 35, "3294611000001104": 25, "23622011000001107": 15,
                 "810211000001105": 10, "10619311000001107": 10, "398511000001105": 5},
            ),
            "high": p(
                "ics_inhalers",
                {"31063411000001101": 30, "539811000001106": 25, "4373811000001100": 15,
                 "23621711000001102": 15, "2831211000001109": 10, "35908811000001103": 5},
            ),
        }  # fmt: skip
        self.pred5 = p("ocs_prednisolone", {"325427002": 85, "325443009": 15})
        self.pred5_soluble = p("ocs_prednisolone", {"325444003": 1})
        self.copd_dx = p("copd_diagnosis", {"13645005": 85, "87433001": 15})
        self.copd_exac = p("copd_exacerbation", {"195951007": 1})
        self.copd_icd = p("copd_icd10", {"J441": 70, "J440": 30})
        self.htn_dx = p("hypertension_diagnosis", {"59621000": 65, "38341003": 35})
        self.sbp = p("systolic_bp", {"72313002": 80, "271649006": 20})
        self.dbp = p("diastolic_bp", {"1091811000000102": 80, "271650006": 20})
        self.bmi = p("bmi", {"60621009": 1})
        self.height = p("height", {"50373000": 1})
        self.weight = p("weight", {"27113001": 1})
        self.smoke_current = p("smoking_status", {"77176002": 1})
        self.smoke_by_intensity = p(
            "smoking_status", {"160603005": 1, "160604004": 1, "160605003": 1}
        )
        self.smoke_ex = p("smoking_status", {"8517006": 1})
        self.smoke_never = p("smoking_status", {"266919005": 1})
        self.af_dx = p(
            "af_diagnosis", {"49436004": 60, "282825002": 20, "440059007": 10, "440028005": 10}
        )
        self.t1_dx = p("diabetes_type1", {"46635009": 1})
        self.t2_dx = p("diabetes_type2", {"44054006": 1})
        self.ckd_by_stage = p(
            "ckd_diagnosis", {"700378005": 1, "700379002": 1, "431857002": 1, "433146000": 1}
        )
        self.ckd_generic = p("ckd_diagnosis", {"433144002": 1})
        self.smi_dx = p("smi_diagnosis", {"58214004": 45, "13746004": 40, "69322001": 15})
        self.scd_dx = p("sickle_cell_disease", {"127040003": 70, "417357006": 30})
        self.scd_icd = p("sickle_cell_icd10", {"D570": 1})
        self.chd_dx = p("chd_diagnosis", {"414545008": 40, "22298006": 35, "194828000": 25})
        self.stroke_dx = p("stroke_tia_diagnosis", {"230690007": 60, "266257000": 40})
        self.pad_dx = p("pad_diagnosis", {"399957001": 1})
        self.hf_dx = p("heart_failure_diagnosis", {"84114007": 1})
        self.hyperlip_dx = p("hyperlipidaemia_diagnosis", {"55822004": 1})
        self.fh_dx = p("familial_hypercholesterolaemia", {"398036000": 1})
        self.ra_dx = p("rheumatoid_arthritis", {"69896004": 1})
        self.migraine_dx = p("migraine", {"37796009": 1})
        self.sle_dx = p("sle", {"55464009": 1})
        self.cs_elective = p("caesarean_opcs4", {"R172": 95, "R171": 3, "R179": 2})
        self.cs_emergency = p("caesarean_opcs4", {"R182": 93, "R181": 2, "R189": 5})
        self.cs_icd_elective = p("caesarean_icd10", {"O820": 1})
        self.cs_icd_emergency = p("caesarean_icd10", {"O821": 1})
        self.statin_primary = p(
            "statins", {"39733011000001106": 80, "42297211000001100": 12, "320029006": 8}
        )
        self.statin_secondary = p(
            "statins", {"39733211000001101": 70, "39733111000001107": 15, "408037007": 15}
        )
        self.doac = p(
            "doacs",
            {"42206511000001102": 50, "703907006": 10, "19842211000001107": 25,
             "19842111000001101": 7, "19469811000001101": 5, "13532811000001109": 3},
        )  # fmt: skip
        self.warfarin = p(
            "warfarin", {"42217511000001103": 40, "42217611000001104": 35, "42217911000001105": 25}
        )
        self.aspirin = p("aspirin", {"319773006": 70, "319781007": 30})
        self.antihypertensive = p("antihypertensives", {"319283006": 55, "408051007": 45})
        self.antipsychotic = p(
            "atypical_antipsychotics", {"42275511000001103": 80, "42275711000001108": 20}
        )
        self.ed_dx = p("erectile_dysfunction", {"860914002": 70, "397803000": 30})
        self.fh_chd = p("family_history_chd", {"266894000": 1})
        self.asthma_resolved = p("asthma_resolved", {"162660004": 1})
        self.htn_resolved = p("hypertension_resolved", {"162659009": 1})
        self.af_resolved = p("af_resolved", {"196371000000102": 1})
        self.vte = p("vte_diagnosis", {"128053003": 65, "59282003": 35})
        self.anaemia = p("anaemia", {"271737000": 1})
        self.bleeding = p("bleeding_history", {"131148009": 60, "74474003": 40})
        self.hb = p("haemoglobin", {"1022431000000105": 1})
        self.ed_general = p(
            "ed_diagnosis_general",
            {"29857009": 1, "21522001": 1, "50417007": 1, "68566005": 1, "82271004": 1,
             "125605004": 1},
        )  # fmt: skip
        self.adm_general = p(
            "emergency_admission_icd10",
            {"R074": 1, "R104": 1, "J189": 1, "N390": 1, "S060": 1, "S720": 1},
        )
        self.cigs = p("cigarettes_per_day", {"230056004": 1})
        self.tc = p("total_cholesterol", {"1005671000000105": 85, "853681000000104": 15})
        self.hdl = p("hdl_cholesterol", {"1005681000000107": 1})
        self.ldl = p("ldl_cholesterol", {"1022191000000100": 60, "1014501000000104": 40})
        self.nonhdl = p("non_hdl_cholesterol", {"1030411000000101": 1})
        self.ratio = p("cholesterol_hdl_ratio", {"1015681000000109": 1})
        self.hba1c = p("hba1c", {"999791000000106": 1})
        self.egfr = p("egfr", {"1011481000000105": 1})

        self.u_mmhg = v.id("mm[Hg]")
        self.u_kgm2 = v.id("kg/m2")
        self.u_cm = v.id("cm")
        self.u_kg = v.id("kg")
        self.u_mmol = v.id("mmol/L")
        self.u_mmolmol = v.id("mmol/mol")
        self.u_gl = v.id("g/L")
        self.u_per_day = v.id("/d")
        self.u_egfr = v.id("mL/min/{1.73_m2}")
        self.u_capsule = v.id("capsule")
        self.as_directed = v.id("as directed by the anticoagulant clinic")
        self.per_day = {
            k: v.id(f"{k} a day") for k in ("1 tablet", "2 tablets", "1 capsule", "2 capsules")
        }
        self.u_inhaler = v.id("inhaler")
        self.u_tablet = v.id("tablet")
        self.saba_dose = v.id("2 puffs when required")
        self.ics_dose = v.id("2 puffs twice a day")
        self.once_daily = v.id("1 tablet once a day")
        self.two_daily = v.id("2 tablets once a day")
        self.sys = {s: v.id(s) for s in ("snomedct", "dmd", "icd10", "opcs4")}
        self.methods = {m: v.id(m) for m in ("elective", "emergency", "maternity")}
        self.dest = {d: v.id(d) for d in ("admitted", "home", "transfer", "other")}
        self.providers = v.ids(PROVIDERS)
        self.sex = v.ids(SEX_NAMES)
        self.eth5 = v.ids(ETH5_NAMES)
        self.eth16 = v.ids((*ETH16, "Z"))
        self.grades = v.ids(("consultant", "registrar", "staff_grade", "other"))
        self.urgency = v.ids(("elective", "emergency"))
        self.skin = v.ids([s for s, _ in cal.SKIN_PREP])
        self.dressings = v.ids(("standard", "film", "dacc", "npwt", "other", "not_recorded"))
        self.qr_items = v.ids([i[0] for i in cal.SSI_ITEMS])
        self.qr_name = cal.SSI_QUESTIONNAIRE
        self.yes_no_text = v.ids(("No", "Yes"))
        self.yes_no_code = v.ids(("N", "Y"))
        self.pred_doses = {n: v.id(f"{n:g} tablets once a day") for n in (1, 2, 6, 8)}


# ---------------------------------------------------------------------------------
# The chunk generator
# ---------------------------------------------------------------------------------


def _age_sex(rng, n):
    lower = np.array(cal.AGE_BAND_LOWER, dtype=float)
    widths = np.diff(lower, append=lower[-1] + cal.AGE_LAST_BAND_WIDTH)
    mid = lower + widths / 2 - cal.EXIT_YEARS / 2
    hazard = np.exp(cal.DEATH_GOMPERTZ_A + cal.DEATH_GOMPERTZ_B * np.maximum(mid, 0))
    # People aged 65+ carry on average about one hazard-raising condition in three.
    hazard = hazard * np.where(mid >= 65, 1 + (cal.DEATH_HR_MORBIDITY - 1) * 0.35, 1.0)
    p_die = 1 - np.exp(-hazard * cal.EXIT_YEARS)
    p_leave = np.where(
        mid < 20, cal.LEAVE_SHARE[0], np.where(mid < 40, cal.LEAVE_SHARE[1], cal.LEAVE_SHARE[2])
    )
    # Reweight so that the patients still alive and registered at the extract date have
    # the ONS age structure.
    weights = np.array(cal.AGE_BAND_SHARE) / np.clip(1 - p_die - p_leave, 0.05, 1)
    band = choice(rng, weights, n)
    age = lower[band] + rng.random(n) * widths[band]
    u = rng.random(n)
    female = u < np.array(cal.FEMALE_SHARE)[band]
    sex = np.where(female, 0, 1)
    sex[rng.random(n) < cal.SEX_UNKNOWN_SHARE] = 2
    return age, sex


def _group3(age):
    return np.where(age < 40, 0, np.where(age < 65, 1, 2))


def _place(rng, region: Region, age):
    g = _group3(age)
    lsoa = np.zeros(len(age), dtype=np.int64)
    for k, tilt in enumerate(cal.AGE_DEPRIVATION_TILT):
        sel = np.flatnonzero(g == k)
        w = region.weight * np.exp(tilt * region.dep_z)
        cum = np.cumsum(w / w.sum())
        lsoa[sel] = np.minimum(np.searchsorted(cum, rng.random(len(sel))), region.n_lsoas - 1)
    return lsoa


def _ethnicity(rng, region: Region, lsoa, age):
    base = np.array(list(cal.ETHNICITY_16_SHARE.values()), dtype=float)
    base /= base.sum()
    minority = ETH5_OF_16 > 0
    minority[2] = False  # "White - other" follows the White pattern
    uz = (region.urban - region.urban.mean()) / (region.urban.std() + 1e-9)
    tilt = (
        cal.ETHNIC_TILT_URBAN * uz[lsoa]
        + cal.ETHNIC_TILT_DEPRIVATION * region.dep_z[lsoa]
        + np.array(cal.ETHNIC_TILT_AGE)[_group3(age)]
    )
    tilt -= np.log(np.mean(np.exp(tilt)))
    probs = np.where(minority[None, :], base[None, :] * np.exp(tilt)[:, None], base[None, :])
    cum = np.cumsum(probs, axis=1)
    cum /= cum[:, -1:]
    u = rng.random(len(lsoa))[:, None]
    return np.minimum((u > cum).sum(axis=1), 15)


@dataclass
class People:
    """Demography, smoking and BMI of a set of patients (before any condition)."""

    n: int
    age: np.ndarray
    sex: np.ndarray
    female: np.ndarray
    male: np.ndarray
    dob: np.ndarray
    lsoa: np.ndarray
    eth16: np.ndarray
    eth5: np.ndarray
    imdq: np.ndarray
    no2q: np.ndarray
    qi: np.ndarray
    adult: np.ndarray
    smoker: np.ndarray
    ex_smoker: np.ndarray
    ever: np.ndarray
    intensity: np.ndarray
    bmi: np.ndarray


def _people(rng: np.random.Generator, region: Region, n: int) -> People:
    age, sex = _age_sex(rng, n)
    female, male = sex == 0, sex == 1
    dob = E - np.floor(age * YEAR).astype(np.int64)
    lsoa = _place(rng, region, age)
    eth16 = _ethnicity(rng, region, lsoa, age)
    eth5 = ETH5_OF_16[eth16]
    imdq = region.imd_quintile[lsoa]
    no2q = region.no2_quintile[lsoa]
    qi = imdq - 1
    adult = age >= 18

    # -- smoking and BMI ------------------------------------------------------------
    cur_p, sgrp = by_band(cal.SMOKING_CURRENT, cal.SMOKING_AGE_LOWER, age)
    cur_p = cur_p * np.where(male, 1.15, 0.87) * np.array(cal.SMOKING_IMD_RR)[qi]
    ex_p = np.array(cal.SMOKING_EX_BY_AGE)[sgrp] * np.where(male, 1.1, 0.92)
    u = rng.random(n)
    smoker = adult & (u < cur_p)
    ex_smoker = adult & ~smoker & (u < cur_p + ex_p)
    ever = smoker | ex_smoker
    intensity = choice(rng, cal.SMOKING_INTENSITY, n)
    bmi = np.exp(
        np.log(cal.BMI_MEAN + np.array(cal.BMI_IMD_SHIFT)[qi] + np.array(cal.BMI_ETH_SHIFT)[eth5])
        + cal.BMI_LOG_SD * rng.standard_normal(n)
        - cal.BMI_LOG_SD**2 / 2
    )
    bmi = np.clip(bmi, 14, 75)

    return People(
        n, age, sex, female, male, dob, lsoa, eth16, eth5, imdq, no2q, qi, adult, smoker,
        ex_smoker, ever, intensity, bmi,
    )  # fmt: skip


@dataclass
class Calibration:
    """Register scales and second-pass factors, solved on a reference population (so
    that small runs and small last chunks are calibrated like big ones)."""

    scales: dict[str, float]
    factors: dict[str, float]


@dataclass
class Registers:
    has: dict[str, np.ndarray]
    hr_count: np.ndarray
    base_hazard: np.ndarray
    leave_p: np.ndarray
    t1: np.ndarray
    calibration: Calibration


def _draw_registers(
    rng: np.random.Generator, p: People, calibration: Calibration | None
) -> Registers:
    """Draw every disease register. With ``calibration`` None the scales are solved on
    these patients; otherwise the given scales are used (same random draws either way)."""
    n, age, female, male, qi, eth5, ever = p.n, p.age, p.female, p.male, p.qi, p.eth5, p.ever
    scales: dict[str, float] = {}
    factors: dict[str, float] = {}
    # Registers are calibrated on the patients expected to be alive and registered at
    # the extract date: each patient weighs by their chance of staying, which falls with
    # age and with the long-term conditions that raise the death hazard.
    band8 = np.clip(np.searchsorted(cal.SHAPE_AGE_LOWER, age, side="right") - 1, 0, 7)
    base_hazard = np.exp(
        cal.DEATH_GOMPERTZ_A + cal.DEATH_GOMPERTZ_B * np.maximum(age - cal.EXIT_YEARS / 2, 0)
    )
    leave_p = np.where(
        age < 20, cal.LEAVE_SHARE[0], np.where(age < 40, cal.LEAVE_SHARE[1], cal.LEAVE_SHARE[2])
    )
    hr_count = np.zeros(n, dtype=np.int64)

    def stay(count: np.ndarray) -> np.ndarray:
        hr = cal.DEATH_HR_MORBIDITY ** np.minimum(count, 2)
        return np.exp(-base_hazard * hr * cal.EXIT_YEARS) * (1 - leave_p)

    has: dict[str, np.ndarray] = {"smoker_ever": ever}
    draws: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def register(name: str) -> np.ndarray:
        spec = cal.REGISTERS[name]
        f = np.array(spec["female"])[band8]
        m = np.array(spec["male"])[band8]
        shape = np.where(female, f, np.where(male, m, (f + m) / 2))
        rr = shape * np.array(spec["imd_rr"])[qi] * np.array(spec["eth_rr"])[eth5]
        for (target, factor), k in cal.COMORBIDITY_RR.items():
            if target == name and factor in has:
                rr = rr * np.where(has[factor], k, 1.0)
        elig = age >= spec["min_age"]
        rr = np.where(elig, rr, 0.0)
        raises_hazard = name in _HAZARD_REGISTERS
        w_all = stay(hr_count)[elig]
        w_case = stay(hr_count + raises_hazard)
        if calibration is None:
            scale = spec["target"] * w_all.sum() / max((rr * w_case).sum(), 1e-12)
        else:
            scale = calibration.scales[name]
        scales[name] = scale
        p = np.minimum(rr * scale, 0.95)
        u = rng.random(n)
        got = u < p
        has[name] = got
        draws[name] = (u, rr * scale, elig)
        if raises_hazard:
            hr_count[:] += got
        return got

    register("hypertension")
    register("diabetes")
    u_child_t1 = rng.random(n)
    u_t1 = rng.random(n)
    register("af")
    register("asthma")
    register("copd")
    register("chd")
    register("stroke_tia")
    register("ckd")
    register("heart_failure")
    register("pad")
    register("smi")
    # Second pass for the registers that do not themselves raise the death hazard: the
    # conditions drawn after them (CKD, heart failure...) do, so their people survive less
    # than the first pass assumed. Rescale with the final survival weights and redraw
    # with the same uniforms (so the change is a small top-up, deterministic).
    final_stay = stay(hr_count)
    for name in ("hypertension", "diabetes", "asthma", "chd", "stroke_tia", "pad", "smi"):
        u, p, elig = draws[name]
        p = np.minimum(p, 0.95)
        if calibration is None:
            expected = (final_stay * p)[elig].sum() / max(final_stay[elig].sum(), 1e-12)
            factor = cal.REGISTERS[name]["target"] / max(expected, 1e-12)
        else:
            factor = calibration.factors[name]
        factors[name] = factor
        p = np.minimum(p * factor, 0.95)
        has[name] = u < np.where(elig, p, 0.0)
    dm = has["diabetes"]
    child_t1 = (age < 17) & (u_child_t1 < cal.TYPE1_CHILD_PREVALENCE)
    t1 = (
        dm & (u_t1 < np.where(age < 40, cal.TYPE1_SHARE_UNDER_40, cal.TYPE1_SHARE_40_PLUS))
    ) | child_t1
    has["diabetes"] = dm | child_t1
    return Registers(has, hr_count, base_hazard, leave_p, t1, Calibration(scales, factors))


def reference_calibration(region: Region, seed: int) -> Calibration:
    """Register scales solved on a reference population of the region (its own random
    stream), used for runs or chunks smaller than ``cal.CALIBRATION_PATIENTS``."""
    rng = rng_for(seed, 2)
    people = _people(rng, region, cal.CALIBRATION_PATIENTS)
    return _draw_registers(rng, people, None).calibration


def make_chunk(
    region: Region,
    codes: Codes,
    rng: np.random.Generator,
    first: int,
    n: int,
    calibration: Calibration | None = None,
    pathway_rng: np.random.Generator | None = None,
) -> dict[str, pa.Table]:
    """Generate ``n`` patients numbered from ``first`` (0-based) and all their records.

    Registers are calibrated on the chunk itself, or with ``calibration`` (see
    :func:`reference_calibration`) when given. ``pathway_rng`` draws the asthma referral
    pathway (default: a stream spawned from ``rng``'s seed)."""
    v = codes.vocab
    out = Out()

    p = _people(rng, region, n)
    age, sex, female, male, dob = p.age, p.sex, p.female, p.male, p.dob
    lsoa, eth16, eth5, imdq, no2q, adult = p.lsoa, p.eth16, p.eth5, p.imdq, p.no2q, p.adult
    smoker, ex_smoker, intensity, bmi = p.smoker, p.ex_smoker, p.intensity, p.bmi
    r = _draw_registers(rng, p, calibration)
    has, hr_count, base_hazard, leave_p = r.has, r.hr_count, r.base_hazard, r.leave_p
    af, copd = has["af"], has["copd"]
    htn, dm, chd, stroke, pad = (
        has[k] for k in ("hypertension", "diabetes", "chd", "stroke_tia", "pad")
    )
    asthma, smi, t1 = has["asthma"], has["smi"], r.t1
    cvd = chd | stroke | pad
    scd_p = np.full(n, cal.SICKLE_CELL_OTHER)
    for cat, prev in cal.SICKLE_CELL_PREVALENCE.items():
        scd_p[eth16 == ETH16.index(cat)] = prev
    scd = rng.random(n) < scd_p

    # -- deaths, departures, observation window ----------------------------------------
    dead = rng.random(n) < 1 - np.exp(
        -base_hazard * cal.DEATH_HR_MORBIDITY ** np.minimum(hr_count, 2) * cal.EXIT_YEARS
    )
    left = ~dead & (rng.random(n) < leave_p)
    exit_day = E - np.floor(rng.random(n) * cal.EXIT_YEARS * YEAR).astype(np.int64)
    exit_day = np.maximum(exit_day, dob + 1)
    end = np.where(dead | left, exit_day, E)
    current = ~dead & ~left
    dod = np.where(dead, end, 0)

    # -- addresses and registrations ------------------------------------------------------
    cur_start = E - np.floor(rng.exponential(cal.MEAN_YEARS_AT_ADDRESS, n) * YEAR).astype(np.int64)
    cur_start = np.clip(cur_start, dob, np.maximum(end - 1, dob))
    ch_p, _ = by_band(cal.CARE_HOME_SHARE, (0, 65, 75, 85), age)
    care_home = ~left & (rng.random(n) < ch_p)
    ch_start = np.maximum(dob, E - np.floor(rng.random(n) * 3 * YEAR).astype(np.int64))
    cur_start = np.where(care_home, np.minimum(ch_start, np.maximum(end - 1, dob)), cur_start)
    has_prev = (cur_start > dob + 30) & ((rng.random(n) < cal.PREVIOUS_ADDRESS_SHARE) | care_home)
    prev_start = np.maximum(dob, cur_start - np.floor(rng.exponential(8.0, n) * YEAR).astype(int))
    prev_end = cur_start - 1
    overlap = has_prev & (rng.random(n) < cal.OVERLAP_SHARE)
    prev_end = np.where(
        overlap, cur_start + rng.integers(cal.OVERLAP_DAYS[0], cal.OVERLAP_DAYS[1] + 1, n), prev_end
    )
    prev_lsoa = np.minimum(
        np.searchsorted(np.cumsum(region.weight), rng.random(n)), region.n_lsoas - 1
    )

    a_rows = np.flatnonzero(has_prev)
    addr_pid = np.concatenate([a_rows, np.arange(n)])
    addr_start = np.concatenate([prev_start[a_rows], cur_start])
    addr_end = np.concatenate([prev_end[a_rows], np.where(left, end, NULL)])
    addr_lsoa = np.concatenate([prev_lsoa[a_rows], lsoa])
    addr_ch = np.concatenate([np.zeros(len(a_rows), bool), care_home])
    addr_lsoa = np.where(rng.random(len(addr_lsoa)) < cal.UNGEOCODED_SHARE, NULL, addr_lsoa)

    n_prac = region.n_practices
    practice = region.home_practice[lsoa]
    drift = rng.random(n) < 0.2
    practice = np.where(drift, np.clip(practice + rng.integers(-2, 3, n), 0, n_prac - 1), practice)
    changed = has_prev & (rng.random(n) < cal.MOVE_CHANGES_PRACTICE)
    prev_prac = region.home_practice[prev_lsoa]
    prev_prac = np.where(prev_prac == practice, (practice + 1) % n_prac, prev_prac)
    first_start = np.where(has_prev, prev_start, cur_start)
    switch_day = np.minimum(cur_start + rng.integers(0, 31, n), np.maximum(end, first_start + 1))
    r_rows = np.flatnonzero(changed)
    reg_pid = np.concatenate([r_rows, np.arange(n)])
    reg_prac = np.concatenate([prev_prac[r_rows], practice])
    reg_start = np.concatenate([first_start[r_rows], np.where(changed, switch_day, first_start)])
    reg_end = np.concatenate(
        [np.maximum(switch_day[r_rows] - 1, first_start[r_rows]), np.where(current, NULL, end)]
    )

    w0 = np.maximum(W_START, first_start)
    c = Chunk(
        n,
        age,
        dob,
        female,
        male,
        sex,
        lsoa,
        imdq,
        no2q,
        eth16,
        eth5,
        end,
        w0,
        current,
        region.district[lsoa],
    )
    inwin = end > w0
    wy = np.maximum(end - w0, 0) / YEAR

    # -- the records each condition leaves -----------------------------------------------
    dx = records.diagnoses(rng, c, codes, out, has, t1, scd)
    records.other_qrisk_conditions(rng, c, codes, out, dm, smi, inwin)
    records.smoking_bmi(rng, c, codes, out, adult & inwin, smoker, ex_smoker, intensity, bmi)
    on_statin = records.statins_lipids(rng, c, codes, out, cvd, dm, inwin)
    records.lipid_tests(rng, c, codes, out, on_statin, cvd, dm, smoker, inwin & adult, wy)
    records.af_treatment(rng, c, codes, out, af & inwin, dx["af"])
    records.repeat(
        rng,
        c,
        out,
        codes.antihypertensive,
        htn & inwin,
        dx["hypertension"],
        cal.ANTIHYPERTENSIVE_SHARE,
        56,
        codes.u_tablet,
        codes.once_daily,
        n_drugs=2,
    )
    records.diabetes_kidney_tests(rng, c, codes, out, dm & inwin, dx["ckd_stage"], htn & inwin, wy)
    records.blood_pressure(rng, c, codes, out, htn, adult & inwin, wy)
    control = records.asthma(rng, c, codes, out, asthma & inwin, smoker, bmi, wy)
    records.copd(rng, c, codes, out, copd & inwin, wy)
    records.sickle_cell(rng, c, codes, out, scd & inwin, wy)
    records.caesareans(rng, c, codes, out, female & inwin, bmi, wy)
    records.other_emergency_care(rng, c, codes, out, inwin, wy)
    records.resolved(rng, c, out, codes.asthma_dx, codes.asthma_resolved, ~asthma & (age >= 8),
              cal.ASTHMA_RESOLVED_EXTRA, 2.0, 6.0)  # fmt: skip
    records.resolved(rng, c, out, codes.htn_dx, codes.htn_resolved, ~htn & (age >= 30),
              cal.HYPERTENSION_RESOLVED_EXTRA, 25.0, 40.0)  # fmt: skip
    records.resolved(rng, c, out, codes.af_dx, codes.af_resolved, ~af & (age >= 50),
              cal.AF_RESOLVED_EXTRA, 45.0, 70.0)  # fmt: skip
    records.stroke_and_bleeding_inputs(rng, c, codes, out, af, dx["ckd_stage"] >= 0, inwin)

    # -- assemble Arrow tables -------------------------------------------------------------
    pids = make_ids("P", np.arange(first + 1, first + n + 1), 9)
    unrecorded = rng.random(n) < cal.ETHNICITY_NOT_RECORDED
    # Referral pathway rows come from their own stream, so adding them left every other
    # row of a seed unchanged.
    if pathway_rng is None:
        pathway_rng = np.random.default_rng(rng.bit_generator.seed_seq.spawn(1)[0])
    records.asthma_referrals(pathway_rng, c, codes, out, control)
    tables = {
        "patients": conform(
            "patients",
            {
                "patient_id": pids,
                "date_of_birth": date_array(dob),
                "sex": v.array(codes.sex[sex]),
                "ethnicity_5": v.array(np.where(unrecorded, codes.eth5[5], codes.eth5[eth5])),
                "ethnicity_16": v.array(np.where(unrecorded, codes.eth16[16], codes.eth16[eth16])),
                "date_of_death": date_array(dod, mask=~dead),
            },
        )
    }
    o = sort_order(addr_pid, addr_start)
    tables["addresses"] = conform(
        "addresses",
        {
            "patient_id": pids.take(pa.array(addr_pid[o])),
            "start_date": date_array(addr_start[o]),
            "end_date": date_array(addr_end[o], mask=addr_end[o] == NULL),
            "lsoa_code": region.lsoa_codes.take(
                pa.array(np.maximum(addr_lsoa[o], 0), mask=addr_lsoa[o] == NULL)
            ),
            "care_home": pa.array(addr_ch[o]),
        },
    )
    o = sort_order(reg_pid, reg_start)
    tables["registrations"] = conform(
        "registrations",
        {
            "patient_id": pids.take(pa.array(reg_pid[o])),
            "practice_id": region.practice_ids.take(pa.array(reg_prac[o])),
            "start_date": date_array(reg_start[o]),
            "end_date": date_array(reg_end[o], mask=reg_end[o] == NULL),
            "source": repeat_string("recorded", len(o)),
        },
    )
    tables.update(_assemble(out, codes, pids, first))
    return tables


def _assemble(out: Out, codes: Codes, pids: pa.Array, first: int) -> dict[str, pa.Table]:
    v = codes.vocab
    t: dict[str, pa.Table] = {}
    ev = out.events
    pid, d, code = ev.get("pid", np.int64), ev.get("date", np.int64), ev.get("code", np.int32)
    o = sort_order(pid, d, code)
    t["events"] = conform(
        "events",
        {
            "patient_id": pids.take(pa.array(pid[o])),
            "date": date_array(d[o]),
            "system": repeat_string("snomedct", len(o)),
            "code": v.array(code[o]),
            "value": float_array(ev.get("value", np.float64)[o]),
            "unit": v.array(ev.get("unit", np.int32)[o]),
        },
    )
    m = out.meds
    pid, d, code = m.get("pid", np.int64), m.get("date", np.int64), m.get("code", np.int32)
    o = sort_order(pid, d, code)
    t["medications"] = conform(
        "medications",
        {
            "patient_id": pids.take(pa.array(pid[o])),
            "date": date_array(d[o]),
            "system": repeat_string("dmd", len(o)),
            "code": v.array(code[o]),
            "quantity": float_array(m.get("qty", np.float64)[o]),
            "quantity_unit": v.array(m.get("qty_unit", np.int32)[o]),
            "dose": v.array(m.get("dose", np.int32)[o]),
            "daily_dose_mg": float_array(m.get("ddd", np.float64)[o]),
        },
    )
    a = out.adm
    pid, ad = a.get("pid", np.int64), a.get("adate", np.int64)
    o = sort_order(pid, ad)
    dx = a.get("dx", np.int32)[o]
    proc = a.get("proc", np.int32)[o]
    k = len(o)
    spell_no = first * 4 + np.arange(1, k + 1)  # unique across chunks (≤ 4 spells/patient avg)
    has_proc = proc >= 0
    proc_offsets = np.concatenate([[0], np.cumsum(has_proc)])
    t["admissions"] = conform(
        "admissions",
        {
            "patient_id": pids.take(pa.array(pid[o])),
            "spell_id": make_ids("XS", spell_no, 10),
            "admission_date": date_array(ad[o]),
            "discharge_date": date_array(a.get("ddate", np.int64)[o]),
            "admission_method": v.array(a.get("method", np.int32)[o]),
            "primary_diagnosis": v.array(dx),
            "all_diagnoses": list_col(v, np.arange(k + 1), dx, np.zeros(k, bool)),
            "procedures": list_col(v, proc_offsets, proc[has_proc], ~has_proc),
            "critical_care": pa.array(a.get("cc", bool)[o]),
            "provider": v.array(a.get("prov", np.int32)[o]),
        },
    )
    e = out.ed
    pid, arr = e.get("pid", np.int64), e.get("arrive", np.int64)
    o = sort_order(pid, arr)
    analgesia = e.get("analgesia", np.int64)[o]
    dx = e.get("dx", np.int32)[o]
    t["emergency_attendances"] = conform(
        "emergency_attendances",
        {
            "patient_id": pids.take(pa.array(pid[o])),
            "arrival_datetime": ts_array(arr[o]),
            "departure_datetime": ts_array(e.get("depart", np.int64)[o]),
            "diagnosis_system": v.array(np.where(dx >= 0, codes.sys["snomedct"], NULL)),
            "diagnosis": v.array(dx),
            "discharge_destination": v.array(e.get("dest", np.int32)[o]),
            "first_analgesia_datetime": ts_array(analgesia, mask=analgesia == NULL),
            "provider": v.array(e.get("prov", np.int32)[o]),
        },
    )
    p = out.ops
    pid, st = p.get("pid", np.int64), p.get("start", np.int64)
    o = sort_order(pid, st)
    abx = p.get("abx", np.int64)[o]
    normo = p.get("normo", np.int8)[o]
    t["operations"] = conform(
        "operations",
        {
            "patient_id": pids.take(pa.array(pid[o])),
            "operation_id": make_ids("XOP", first * 2 + np.arange(1, len(o) + 1), 10),
            "start_datetime": ts_array(st[o]),
            "system": repeat_string("opcs4", len(o)),
            "code": v.array(p.get("code", np.int32)[o]),
            "urgency": v.array(p.get("urg", np.int32)[o]),
            "operator_grade": v.array(p.get("grade", np.int32)[o]),
            "duration_minutes": float_array(p.get("dur", np.float64)[o]),
            "antibiotic_datetime": ts_array(abx, mask=abx == NULL),
            "skin_prep": v.array(p.get("skin", np.int32)[o]),
            "normothermia": pa.array(normo == 1, mask=normo < 0),
            "dressing": v.array(p.get("dress", np.int32)[o]),
            "bmi": float_array(p.get("bmi", np.float64)[o]),
            "provider": v.array(p.get("prov", np.int32)[o]),
        },
    )
    q = out.qr
    pid, resp = q.get("pid", np.int64), q.get("response", np.int64)
    item = q.get("item", np.int64)
    o = sort_order(pid, resp, item)
    resp = resp[o]
    # Number responses 1..R within the chunk (in output order), unique across chunks.
    starts = np.concatenate([[True], resp[1:] != resp[:-1]]) if len(resp) else resp.astype(bool)
    number = np.cumsum(starts)
    yes = q.get("yes", np.int8)[o]
    t["questionnaire_responses"] = conform(
        "questionnaire_responses",
        {
            "patient_id": pids.take(pa.array(pid[o])),
            "response_id": make_ids("XQR", first * 2 + number, 10),
            "questionnaire": repeat_string(codes.qr_name, len(o)),
            "authored": ts_array(q.get("authored", np.int64)[o]),
            "link_id": v.array(codes.qr_items[item[o]]),
            "answer_text": v.array(codes.yes_no_text[yes]),
            "answer_code": v.array(codes.yes_no_code[yes]),
        },
    )
    return t
