"""Synthetic patients of one chunk: demography, addresses, registrations, conditions and
their records. Everything is vectorised over the chunk's patients.

The model, in order: age/sex (ONS), home LSOA (deprived areas younger), ethnicity
(Census 2021, tilted to urban and deprived areas), smoking and BMI, disease registers
(age × sex shape × deprivation and ethnicity relative risks × comorbidity, scaled to the
QOF prevalence target), deaths and departures, address and registration histories, and
then the records each condition leaves: diagnoses, observations with values,
prescriptions, ED attendances, admissions and operations. Targets and sources are in
:mod:`pophealth.synth.calibration`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pophealth.synth import calibration as cal
from pophealth.synth._build import (
    US_PER_DAY,
    Rows,
    conform,
    date_array,
    day,
    float_array,
    list_col,
    repeat_string,
    sort_order,
    ts_array,
)
from pophealth.synth._codes import CodePicker, Vocab
from pophealth.synth.region import PROVIDERS, Region

E = day(cal.EXTRACT_DATE)
YEAR = 365.25
W_START = E - int(cal.DETAIL_YEARS * YEAR)
ETH16 = tuple(cal.ETHNICITY_16_SHARE)  # A..S
ETH5_OF_16 = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 4, 4])
ETH5_NAMES = ("white", "mixed", "asian", "black", "other", "unknown")
SEX_NAMES = ("female", "male", "unknown")
NULL = -1

#: Registers whose people die sooner (cal.DEATH_HR_MORBIDITY each, up to two).
_HAZARD_REGISTERS = frozenset({"copd", "heart_failure", "ckd", "af"})

# Hour-of-day weights of ED arrivals (busier late morning to evening).
_ED_HOURS = np.array(
    [2, 1.5, 1.2, 1, 1, 1, 1.5, 2.5, 4, 5.5, 6, 6, 6, 6, 6, 6, 6, 6, 5.5, 5, 4.5, 4, 3.5, 2.5]
)
_ED_HOURS_CUM = np.cumsum(_ED_HOURS / _ED_HOURS.sum())


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
# Small vectorised helpers
# ---------------------------------------------------------------------------------


def _choice(rng: np.random.Generator, probs, n: int) -> np.ndarray:
    cum = np.cumsum(np.asarray(probs, dtype=float))
    cum /= cum[-1]
    return np.minimum(np.searchsorted(cum, rng.random(n), side="right"), len(cum) - 1)


def _spread(rng, who, counts, start, end):
    """Rows for ``counts[i]`` events of patient ``who[i]`` uniformly in [start, end]."""
    counts = np.asarray(counts, dtype=np.int64)
    rep = np.repeat(np.arange(len(who)), counts)
    span = np.maximum(end - start, 0)[rep]
    days = start[rep] + np.floor(rng.random(rep.size) * (span + 1)).astype(np.int64)
    return who[rep], days, rep


def _regular(rng, who, start, end, interval: int):
    """Repeat issues every ``interval`` days (± a few) from ``start`` to ``end``."""
    offset = np.floor(rng.random(len(who)) * interval).astype(np.int64)
    first = start + offset
    counts = np.where(end >= first, (end - first) // interval + 1, 0)
    rep = np.repeat(np.arange(len(who)), counts)
    k = np.arange(rep.size) - np.repeat(np.cumsum(counts) - counts, counts)
    jitter = rng.integers(-3, 4, rep.size)
    days = np.clip(first[rep] + k * interval + jitter, start[rep], end[rep])
    return who[rep], days, rep


def _time_of_day_us(rng, n: int) -> np.ndarray:
    hour = np.searchsorted(_ED_HOURS_CUM, rng.random(n), side="right")
    return (np.minimum(hour, 23) * 3600 + rng.integers(0, 60, n) * 60) * 1_000_000


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    digits = pc.utf8_lpad(pa.array(numbers.astype(np.int64)).cast(pa.string()), width, "0")
    return pc.binary_join_element_wise(prefix, digits, "")


@dataclass
class Chunk:
    """Per-patient arrays of one chunk (index = patient number within the chunk)."""

    n: int
    age: np.ndarray  # years at the extract date (had they lived)
    dob: np.ndarray  # days
    female: np.ndarray
    male: np.ndarray
    sex: np.ndarray  # 0 female, 1 male, 2 unknown
    lsoa: np.ndarray  # current (true) LSOA index
    imdq: np.ndarray  # IMD quintile of the current LSOA (1 = most deprived)
    no2q: np.ndarray
    eth16: np.ndarray  # 0..15 (true ethnicity)
    eth5: np.ndarray  # 0..4
    end: np.ndarray  # last day of observation (death, departure or the extract date)
    w0: np.ndarray  # first day of the detail window
    current: np.ndarray  # alive and registered at the extract date
    district: np.ndarray  # district of the current LSOA (which trust they attend)


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
    band = _choice(rng, weights, n)
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


def _by_band(values, lowers, age):
    idx = np.clip(np.searchsorted(np.asarray(lowers), age, side="right") - 1, 0, len(lowers) - 1)
    return np.asarray(values, dtype=float)[idx], idx


class _Out:
    """The rows of one chunk, by table."""

    def __init__(self) -> None:
        self.events = Rows(("pid", "date", "code", "value", "unit"))
        self.meds = Rows(("pid", "date", "code", "qty", "qty_unit", "dose", "ddd"))
        self.adm = Rows(("pid", "adate", "ddate", "method", "dx", "proc", "cc", "prov"))
        self.ed = Rows(("pid", "arrive", "depart", "dx", "dest", "analgesia", "prov"))
        self.ops = Rows(
            (
                "pid",
                "start",
                "code",
                "urg",
                "grade",
                "dur",
                "abx",
                "skin",
                "normo",
                "dress",
                "bmi",
                "prov",
            )
        )

        self.qr = Rows(("pid", "response", "authored", "item", "yes"))

    def event(self, pid, date, code, value=np.nan, unit=NULL):
        self.events.add(pid=pid, date=date, code=code, value=value, unit=unit)

    def med(self, pid, date, code, qty, qty_unit, dose=NULL, ddd=np.nan):
        self.meds.add(pid=pid, date=date, code=code, qty=qty, qty_unit=qty_unit, dose=dose, ddd=ddd)


def _onset(rng, c: Chunk, who, mean_years, min_age=0.0):
    """Diagnosis day: duration ~ Exponential(mean) before the end of observation."""
    age_end = c.age[who] - (E - c.end[who]) / YEAR
    onset_age = np.clip(age_end - rng.exponential(mean_years, len(who)), min_age, None)
    onset_age = np.minimum(onset_age, age_end)
    d = c.dob[who] + np.floor(onset_age * YEAR).astype(np.int64)
    return np.clip(d, c.dob[who], c.end[who])


def make_chunk(
    region: Region, codes: Codes, rng: np.random.Generator, first: int, n: int
) -> dict[str, pa.Table]:
    """Generate ``n`` patients numbered from ``first`` (0-based) and all their records."""
    v = codes.vocab
    out = _Out()

    # -- demography ---------------------------------------------------------------
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
    cur_p, sgrp = _by_band(cal.SMOKING_CURRENT, cal.SMOKING_AGE_LOWER, age)
    cur_p = cur_p * np.where(male, 1.15, 0.87) * np.array(cal.SMOKING_IMD_RR)[qi]
    ex_p = np.array(cal.SMOKING_EX_BY_AGE)[sgrp] * np.where(male, 1.1, 0.92)
    u = rng.random(n)
    smoker = adult & (u < cur_p)
    ex_smoker = adult & ~smoker & (u < cur_p + ex_p)
    ever = smoker | ex_smoker
    intensity = _choice(rng, cal.SMOKING_INTENSITY, n)
    bmi = np.exp(
        np.log(cal.BMI_MEAN + np.array(cal.BMI_IMD_SHIFT)[qi] + np.array(cal.BMI_ETH_SHIFT)[eth5])
        + cal.BMI_LOG_SD * rng.standard_normal(n)
        - cal.BMI_LOG_SD**2 / 2
    )
    bmi = np.clip(bmi, 14, 75)

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
        scale = spec["target"] * w_all.sum() / max((rr * w_case).sum(), 1e-12)
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
    af = register("af")
    asthma = register("asthma")
    copd = register("copd")
    register("chd")
    register("stroke_tia")
    register("ckd")
    register("heart_failure")
    register("pad")
    smi = register("smi")
    # Second pass for the registers that do not themselves raise the death hazard: the
    # conditions drawn after them (CKD, heart failure...) do, so their people survive less
    # than the first pass assumed. Rescale with the final survival weights and redraw
    # with the same uniforms (so the change is a small top-up, deterministic).
    final_stay = stay(hr_count)
    for name in ("hypertension", "diabetes", "asthma", "chd", "stroke_tia", "pad", "smi"):
        u, p, elig = draws[name]
        p = np.minimum(p, 0.95)
        expected = (final_stay * p)[elig].sum() / max(final_stay[elig].sum(), 1e-12)
        p = np.minimum(p * cal.REGISTERS[name]["target"] / max(expected, 1e-12), 0.95)
        has[name] = u < np.where(elig, p, 0.0)
    htn, dm, chd, stroke, pad = (
        has[k] for k in ("hypertension", "diabetes", "chd", "stroke_tia", "pad")
    )
    asthma, smi = has["asthma"], has["smi"]
    child_t1 = (age < 17) & (u_child_t1 < cal.TYPE1_CHILD_PREVALENCE)
    t1 = (
        dm & (u_t1 < np.where(age < 40, cal.TYPE1_SHARE_UNDER_40, cal.TYPE1_SHARE_40_PLUS))
    ) | child_t1
    dm = dm | child_t1
    has["diabetes"] = dm
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
    ch_p, _ = _by_band(cal.CARE_HOME_SHARE, (0, 65, 75, 85), age)
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
    dx = _diagnoses(rng, c, codes, out, has, t1, scd)
    _other_qrisk_conditions(rng, c, codes, out, dm, smi, inwin)
    _smoking_bmi(rng, c, codes, out, adult & inwin, smoker, ex_smoker, intensity, bmi)
    on_statin = _statins_lipids(rng, c, codes, out, cvd, dm, inwin)
    _lipid_tests(rng, c, codes, out, on_statin, cvd, dm, smoker, inwin & adult, wy)
    _af_treatment(rng, c, codes, out, af & inwin, dx["af"])
    _repeat(
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
    _diabetes_kidney_tests(rng, c, codes, out, dm & inwin, dx["ckd_stage"], htn & inwin, wy)
    _blood_pressure(rng, c, codes, out, htn, adult & inwin, wy)
    _asthma(rng, c, codes, out, asthma & inwin, smoker, bmi, wy)
    _copd(rng, c, codes, out, copd & inwin, wy)
    _sickle_cell(rng, c, codes, out, scd & inwin, wy)
    _caesareans(rng, c, codes, out, female & inwin, bmi, wy)
    _other_emergency_care(rng, c, codes, out, inwin, wy)
    _resolved(rng, c, out, codes.asthma_dx, codes.asthma_resolved, ~asthma & (age >= 8),
              cal.ASTHMA_RESOLVED_EXTRA, 2.0, 6.0)  # fmt: skip
    _resolved(rng, c, out, codes.htn_dx, codes.htn_resolved, ~htn & (age >= 30),
              cal.HYPERTENSION_RESOLVED_EXTRA, 25.0, 40.0)  # fmt: skip
    _resolved(rng, c, out, codes.af_dx, codes.af_resolved, ~af & (age >= 50),
              cal.AF_RESOLVED_EXTRA, 45.0, 70.0)  # fmt: skip
    _stroke_and_bleeding_inputs(rng, c, codes, out, af, dx["ckd_stage"] >= 0, inwin)

    # -- assemble Arrow tables -------------------------------------------------------------
    pids = _ids("P", np.arange(first + 1, first + n + 1), 9)
    unrecorded = rng.random(n) < cal.ETHNICITY_NOT_RECORDED
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
        },
    )
    tables.update(_assemble(out, codes, pids, first))
    return tables


def _assemble(out: _Out, codes: Codes, pids: pa.Array, first: int) -> dict[str, pa.Table]:
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
            "spell_id": _ids("XS", spell_no, 10),
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
            "operation_id": _ids("XOP", first * 2 + np.arange(1, len(o) + 1), 10),
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
            "response_id": _ids("XQR", first * 2 + number, 10),
            "questionnaire": repeat_string(codes.qr_name, len(o)),
            "authored": ts_array(q.get("authored", np.int64)[o]),
            "link_id": v.array(codes.qr_items[item[o]]),
            "answer_text": v.array(codes.yes_no_text[yes]),
            "answer_code": v.array(codes.yes_no_code[yes]),
        },
    )
    return t


# ---------------------------------------------------------------------------------
# Conditions
# ---------------------------------------------------------------------------------


def _dx_events(rng, c, out, picker: CodePicker, who, mean_years, min_age=0.0):
    who = np.flatnonzero(who) if who.dtype == bool else who
    d = _onset(rng, c, who, mean_years, min_age)
    out.event(who, d, picker.draw(rng, len(who)))
    return who, d


def _diagnoses(rng, c, codes, out, has, t1, scd) -> dict[str, np.ndarray]:
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
    stage = _choice(rng, cal.CKD_STAGE_SHARE, len(who))
    d = _onset(rng, c, who, 5.0, 40)
    code = codes.ckd_by_stage.ids[stage]
    generic = (stage < 2) & (rng.random(len(who)) < 0.2)
    out.event(who, d, np.where(generic, codes.ckd_generic.ids[0], code))
    ckd_stage = np.full(c.n, NULL, dtype=np.int64)
    ckd_stage[who] = stage
    days["ckd_stage"] = ckd_stage
    return days


def _other_qrisk_conditions(rng, c, codes, out, dm, smi, inwin):
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
    pid, d, rep = _regular(rng, who, c.w0[who], c.end[who], 28)
    pick = codes.antipsychotic.pick(rng, len(who))[rep]
    mg = codes.antipsychotic.extra("strength_mg")[pick]
    out.med(pid, d, codes.antipsychotic.ids[pick], 28.0, codes.u_tablet, codes.once_daily, mg)
    # Regular oral corticosteroids (prednisolone 5 mg daily) in older adults.
    who = np.flatnonzero(inwin & (c.age >= 60) & (rng.random(c.n) < cal.REGULAR_STEROIDS_60))
    pid, d, _ = _regular(rng, who, c.w0[who], c.end[who], 28)
    out.med(pid, d, codes.pred5.ids[0], 28.0, codes.u_tablet, codes.once_daily, 5.0)


def _stroke_and_bleeding_inputs(rng, c, codes, out, af, ckd, inwin):
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
    pid, d, _ = _spread(rng, who, 1 + rng.poisson(0.6 * yrs), c.w0[who], c.end[who])
    mean = np.where(c.female, cal.HAEMOGLOBIN_G_L["female"][0], cal.HAEMOGLOBIN_G_L["male"][0])
    sd = np.where(c.female, cal.HAEMOGLOBIN_G_L["female"][1], cal.HAEMOGLOBIN_G_L["male"][1])
    usual = mean + sd * rng.standard_normal(c.n) + cal.ANAEMIA_HB_SHIFT * anaemic
    hb = np.round(np.clip(usual[pid] + 5 * rng.standard_normal(len(pid)), 60, 200))
    out.event(pid, d, codes.hb.ids[0], hb, codes.u_gl)


def _repeat(rng, c, out, picker, eligible, since, share, interval, unit, dose, n_drugs=1):
    """Repeat prescriptions every ``interval`` days from the later of the detail window
    and the diagnosis day, for ``share`` of the eligible; up to ``n_drugs`` products."""
    who = np.flatnonzero(eligible & (rng.random(c.n) < share))
    for k in range(n_drugs):
        if k:
            who = who[rng.random(len(who)) < 0.45]
        start = np.maximum(c.w0[who], since[who])
        pid, d, rep = _regular(rng, who, start, c.end[who], interval)
        pick = picker.pick(rng, len(who))
        if k:  # a second drug differs from the first
            pick = (pick + 1) % len(picker.codes)
        mg = picker.extra("strength_mg")[pick][rep]
        out.med(pid, d, picker.ids[pick][rep], float(interval), unit, dose, mg)


def _af_treatment(rng, c, codes, out, af_in, since):
    """Anticoagulation for AF: a DOAC or warfarin for most, aspirin alone for a few."""
    rr = np.array(cal.AF_ANTICOAG_IMD_RR)[c.imdq - 1]
    u = rng.random(c.n)
    anticoag = af_in & (u < cal.AF_ANTICOAGULATED * rr)
    aspirin_only = af_in & ~anticoag & (u < cal.AF_ANTICOAGULATED * rr + cal.AF_ASPIRIN_ONLY)
    doac = anticoag & (rng.random(c.n) < cal.AF_DOAC_SHARE)
    warf = anticoag & ~doac
    who = np.flatnonzero(doac)
    start = np.maximum(c.w0[who], since[who])
    pid, d, rep = _regular(rng, who, start, c.end[who], 56)
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
    pid, d, rep = _regular(rng, who, start, c.end[who], 28)
    out.med(pid, d, codes.warfarin.draw(rng, len(pid)), 28.0, codes.u_tablet, codes.as_directed)
    who = np.flatnonzero(aspirin_only)
    start = np.maximum(c.w0[who], since[who])
    pid, d, _ = _regular(rng, who, start, c.end[who], 56)
    out.med(pid, d, codes.aspirin.draw(rng, len(pid)), 56.0, codes.u_tablet, codes.once_daily,
            75.0)  # fmt: skip


def _lipid_tests(rng, c, codes, out, on_statin, cvd, dm, smoker, eligible, wy):
    """Lipid profiles: total, HDL, LDL, non-HDL cholesterol and the TC/HDL ratio."""
    high_risk = cvd | dm | on_statin
    tested = eligible & (
        (high_risk & (rng.random(c.n) < cal.LIPIDS_RECORDED_HIGH_RISK))
        | ((c.age >= 40) & (rng.random(c.n) < cal.LIPIDS_RECORDED_40_PLUS))
    )
    who = np.flatnonzero(tested)
    counts = 1 + rng.poisson(np.where(high_risk[who], 0.5, 0.1) * wy[who])
    pid, d, _ = _spread(rng, who, counts, c.w0[who], c.end[who])
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


def _diabetes_kidney_tests(rng, c, codes, out, dm_in, ckd_stage, htn_in, wy):
    """HbA1c for people with diabetes; eGFR for CKD (by stage), diabetes and hypertension."""
    who = np.flatnonzero(dm_in)
    pid, d, _ = _spread(rng, who, rng.poisson(2.0 * wy[who]), c.w0[who], c.end[who])
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
    pid, d, _ = _spread(rng, who, rng.poisson(rate * wy[who]), c.w0[who], c.end[who])
    stage = ckd_stage[pid]
    lo = np.array([r[0] for r in cal.EGFR_RANGE] + [62])[np.where(stage >= 0, stage, 4)]
    hi = np.array([r[1] for r in cal.EGFR_RANGE] + [105])[np.where(stage >= 0, stage, 4)]
    value = np.round(lo + rng.random(len(pid)) * (hi - lo))
    out.event(pid, d, codes.egfr.ids[0], value, codes.u_egfr)


def _resolved(rng, c, out, dx_picker, resolved_picker, eligible, share, age_lo, age_hi):
    """People given a diagnosis later coded as resolved (so not on the register): e.g.
    childhood asthma, or hypertension diagnosed in pregnancy or on one high reading."""
    who = np.flatnonzero(eligible & (rng.random(c.n) < share))
    age_end = c.age[who] - (E - c.end[who]) / YEAR
    onset_age = np.minimum(age_lo + rng.random(len(who)) * (age_hi - age_lo), age_end - 1.2)
    onset = c.dob[who] + np.floor(onset_age * YEAR).astype(np.int64)
    resolved = np.minimum(onset + 365 + np.floor(rng.exponential(5, len(who)) * YEAR).astype(int),
                          c.end[who])  # fmt: skip
    ok = (onset >= c.dob[who]) & (resolved > onset)
    out.event(who[ok], onset[ok], dx_picker.ids[np.zeros(int(ok.sum()), int)])
    out.event(who[ok], resolved[ok], resolved_picker.ids[0])


def _smoking_bmi(rng, c, codes, out, eligible, smoker, ex_smoker, intensity, bmi):
    rec = np.flatnonzero(eligible & (rng.random(c.n) < cal.SMOKING_RECORDED))
    pid, d, _ = _spread(rng, rec, np.ones(len(rec), int), c.w0[rec], c.end[rec])
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
    pid, d, _ = _spread(rng, rec, np.ones(len(rec), int), c.w0[rec], c.end[rec])
    mean_h = np.where(c.female[pid], cal.HEIGHT_CM["female"][0], cal.HEIGHT_CM["male"][0])
    sd_h = np.where(c.female[pid], cal.HEIGHT_CM["female"][1], cal.HEIGHT_CM["male"][1])
    h = np.round(mean_h + sd_h * rng.standard_normal(len(pid)), 1)
    b = np.round(bmi[pid], 1)
    w = np.round(b * (h / 100) ** 2, 1)
    out.event(pid, d, codes.bmi.ids[0], b, codes.u_kgm2)
    out.event(pid, d, codes.height.ids[0], h, codes.u_cm)
    out.event(pid, d, codes.weight.ids[0], w, codes.u_kg)


def _statins_lipids(rng, c, codes, out, cvd, dm, inwin):
    p_primary, _ = _by_band(
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
    pid, d, rep = _regular(rng, who, start, c.end[who], 56)
    code, strength = code_of[rep], mg_of[rep]
    out.med(pid, d, code, 56.0, codes.u_tablet, codes.once_daily, strength)
    prim = who[~secondary]
    coded = prim[rng.random(len(prim)) < cal.HYPERLIPIDAEMIA_CODED]
    _dx_events(rng, c, out, codes.hyperlip_dx, coded, 5.0, 25)
    return on


def _blood_pressure(rng, c, codes, out, htn, adult_in, wy):
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
    pid, d, _ = _spread(rng, who, counts, c.w0[who], c.end[who])
    check = np.array(cal.BP_YEARLY_CHECK_BY_IMD)[c.imdq - 1]
    extra = np.flatnonzero(htn & adult_in & (rng.random(n) < check))
    pid2, d2, _ = _spread(
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
    a_choice = _choice(rng, cal.PRED_COURSE_ADULT_P, k)
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
    arrive = day_ * US_PER_DAY + _time_of_day_us(rng, k)
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


def _asthma(rng, c, codes, out, asthma_in, smoker, bmi, wy):
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
    age_end = c.age[who] - (E - w1) / YEAR
    onset_age = np.minimum(1.5 + rng.exponential(16, k), np.maximum(age_end, 0))
    dx_day = np.clip(c.dob[who] + np.floor(onset_age * YEAR).astype(np.int64), c.dob[who], w1)
    child = c.age[who] < 12
    dx_code = np.where(
        child & (rng.random(k) < 0.5), codes.asthma_dx.ids[1], codes.asthma_dx.draw(rng, k)
    )
    out.event(who, dx_day, dx_code)

    # Relievers.
    a, b = cal.ASTHMA_SABA_LOG_RATE
    n_saba = rng.poisson(np.exp(a + b * s) * yrs)
    pid, d, _ = _spread(rng, who, n_saba, w0, w1)
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
    pid, d, _ = _spread(rng, who, n_ics, w0, w1)
    idx = np.searchsorted(who, pid)
    out.med(pid, d, ics_code[idx], 1.0, codes.u_inhaler, codes.ics_dose)

    # Everyone on the register has an asthma medicine in the last 12 months (QOF AST).
    last = np.maximum(w1 - 364, w0)
    cur = c.current[who]
    pid, d, _ = _spread(rng, who[cur], np.ones(cur.sum(), int), last[cur], w1[cur])
    idx = np.searchsorted(who, pid)
    out.med(pid, d, saba_code[idx], 1.0, codes.u_inhaler, codes.saba_dose)

    # Oral steroid courses (attacks treated in primary care).
    a, b = cal.ASTHMA_OCS_LOG_RATE
    n_ocs = rng.poisson(np.exp(a + b * s) * yrs)
    pid, d, _ = _spread(rng, who, n_ocs, w0, w1)
    _ocs_course(rng, c, codes, out, pid, d)
    coded = rng.random(len(pid)) < cal.ASTHMA_EXACERBATION_CODED
    out.event(pid[coded], d[coded], codes.asthma_exac.draw(rng, int(coded.sum())))
    # Maintenance prednisolone for a few with very poor control.
    maint = who[(s > 2) & (rng.random(k) < cal.ASTHMA_MAINTENANCE_OCS) & ~child]
    pid, d, _ = _regular(rng, maint, c.w0[maint], c.end[maint], 28)
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
    pid, d, rep = _spread(rng, who, n_ed, w0, w1)
    admitted = _ed(
        rng, out, codes, c, pid, d, codes.asthma_ed_dx.draw(rng, len(pid)), cal.ASTHMA_ED_ADMITTED
    )
    a, b = cal.ASTHMA_DIRECT_ADMISSION_LOG_RATE
    n_dir = rng.poisson(np.exp(a + b * s) * yrs)
    pid2, d2, rep2 = _spread(rng, who, n_dir, w0, w1)
    apid = np.concatenate([pid[admitted], pid2])
    aday = np.concatenate([d[admitted], d2])
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
            pid, d, _ = _spread(rng, who[sel], np.ones(len(sel), int), lo[sel], hi[sel])
            out.event(pid, d, picker.draw(rng, len(pid)))


def _copd(rng, c, codes, out, copd_in, wy):
    who = np.flatnonzero(copd_in)
    k = len(who)
    qi = c.imdq[who] - 1
    s = rng.standard_normal(k) + np.array(cal.COPD_CONTROL_PER_IMD)[qi]
    yrs = wy[who]
    w0, w1 = c.w0[who], c.end[who]
    a, b = cal.COPD_EXACERBATION_LOG_RATE
    pid, d, _ = _spread(rng, who, rng.poisson(np.exp(a + b * s) * yrs), w0, w1)
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
    pid, d, _ = _spread(rng, who, rng.poisson(3.0 * yrs), w0, w1)
    out.med(pid, d, codes.saba.ids[0], 1.0, codes.u_inhaler, codes.saba_dose)
    a, b = cal.COPD_ADMISSION_LOG_RATE
    pid, d, _ = _spread(rng, who, rng.poisson(np.exp(a + b * s) * yrs), w0, w1)
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


def _sickle_cell(rng, c, codes, out, scd_in, wy):
    who = np.flatnonzero(scd_in)
    k = len(who)
    lam = rng.gamma(cal.SICKLE_ED_SHAPE, cal.SICKLE_ED_MEAN / cal.SICKLE_ED_SHAPE, k)
    pid, d, _ = _spread(rng, who, rng.poisson(lam * wy[who]), c.w0[who], c.end[who])

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


def _other_emergency_care(rng, c, codes, out, inwin, wy):
    """ED attendances and emergency admissions for everything else (chest pain, falls,
    infections...): the denominators of ED and admission indicators, with their age
    shape and deprivation gradient."""
    rate, band = _by_band(cal.ED_RATE_BY_AGE, cal.ED_RATE_AGE_LOWER, c.age)
    rate = rate * np.array(cal.ED_IMD_RR)[c.imdq - 1]
    who = np.flatnonzero(inwin)
    pid, d, _ = _spread(rng, who, rng.poisson(rate[who] * wy[who]), c.w0[who], c.end[who])
    kind = _choice(rng, cal.ED_DIAGNOSIS_MIX, len(pid))
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


def _caesareans(rng, c, codes, out, women_in, bmi, wy):
    who = np.flatnonzero(women_in & (c.age >= 16) & (c.age < 50))
    rate, _ = _by_band(
        [x[1] for x in cal.BIRTH_RATE_BY_AGE], [x[0] for x in cal.BIRTH_RATE_BY_AGE], c.age[who]
    )
    births = np.minimum(rng.poisson(rate * cal.CAESAREAN_SHARE * wy[who]), 3)
    pid, d, _ = _spread(rng, who, births, c.w0[who], c.end[who])
    k = len(pid)
    emergency = rng.random(k) < cal.CAESAREAN_EMERGENCY_OF_ALL
    minute = np.where(emergency, rng.integers(0, 24 * 60, k), rng.integers(8 * 60 + 30, 13 * 60, k))
    start = d * US_PER_DAY + minute * 60_000_000
    code = np.where(emergency, codes.cs_emergency.draw(rng, k), codes.cs_elective.draw(rng, k))
    grade = np.where(
        emergency,
        _choice(rng, cal.OPERATOR_GRADE_EMERGENCY, k),
        _choice(rng, cal.OPERATOR_GRADE_ELECTIVE, k),
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
    skin = codes.skin[_choice(rng, [p for _, p in cal.SKIN_PREP], k)]
    normo = np.array([1, 0, -1], dtype=np.int8)[_choice(rng, cal.NORMOTHERMIA, k)]
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
