"""QRISK3 inputs derived from records, one explicit variable at a time.

Each function takes per-patient values already extracted from the record (see
:mod:`pophealth.programmes.cvd.extract`) and returns the QRISK3 input together with a
data-quality flag:

``present``   recorded directly (latest value in the look-back);
``derived``   computed from other recorded values (BMI from height and weight,
              cholesterol/HDL ratio from total cholesterol and HDL);
``imputed``   not recorded; a documented default is used so a score can be given;
``missing``   not recorded and no default: QRISK3 is not calculated.

Imputation policy (continuous inputs): a value that is not recorded is imputed at the
QRISK3-2017 model's centring value for the patient's sex (the mean of the development
cohort, read from the coefficient table). At that value the factor's centred term is 0,
so a missing factor neither raises nor lowers the score: the score is what QRISK3 gives
an "average" person on that factor. Worklists say which inputs were imputed and ask for
them to be measured. Smoking not recorded → non-smoker (imputed); ethnicity not stated
→ QRISK group 1 "White or not stated" (as QRISK3 defines the group; flagged imputed).

All functions are vectorised over pandas Series; none loops over patients.
"""

from __future__ import annotations

from types import MappingProxyType

import numpy as np
import pandas as pd

from pophealth.programmes.cvd.config import DEFAULT_CONFIG, CvdConfig, TownsendPolicy
from pophealth.scores.qrisk3 import QRISK3_FLAGS, load_qrisk3_models

PRESENT, DERIVED, IMPUTED, MISSING = "present", "derived", "imputed", "missing"
DQ_VALUES = (PRESENT, DERIVED, IMPUTED, MISSING)

#: NHS Data Dictionary ETHNIC CATEGORY (2001 census, 16 groups) → QRISK3 ethnicity code.
#: QRISK3: 1 White or not stated, 2 Indian, 3 Pakistani, 4 Bangladeshi, 5 Other Asian,
#: 6 Black Caribbean, 7 Black African, 8 Chinese, 9 Other ethnic group.
#: Mixed groups (D-G) and "Any other Black background" (P) go to 9 "Other"
#: [UNCONFIRMED: QRISK3's paper groups "other" without listing the census codes].
ETHNICITY_16_TO_QRISK: MappingProxyType[str, int] = MappingProxyType(
    {
        "A": 1,
        "B": 1,
        "C": 1,
        "D": 9,
        "E": 9,
        "F": 9,
        "G": 9,
        "H": 2,
        "J": 3,
        "K": 4,
        "L": 5,
        "M": 6,
        "N": 7,
        "P": 9,
        "R": 8,
        "S": 9,
        "Z": 1,
    }
)

QRISK_ETHNICITY_NAMES: MappingProxyType[int, str] = MappingProxyType(
    {
        1: "White or not stated",
        2: "Indian",
        3: "Pakistani",
        4: "Bangladeshi",
        5: "Other Asian",
        6: "Black Caribbean",
        7: "Black African",
        8: "Chinese",
        9: "Other ethnic group",
    }
)

#: Smoking status category (from the smoking code list's category column, or the
#: cigarettes-per-day value) → QRISK3 smoking code 0 non, 1 ex, 2 light (<10/day),
#: 3 moderate (10-19), 4 heavy (20+). "current" with no amount → 3 moderate
#: [UNCONFIRMED default, flagged imputed].
SMOKING_CATEGORY_TO_QRISK: MappingProxyType[str, int] = MappingProxyType(
    {"never": 0, "ex": 1, "light": 2, "moderate": 3, "heavy": 4, "current": 3}
)


def _num(s: pd.Series) -> pd.Series:
    return pd.to_numeric(s, errors="coerce").astype(float)


def _in_range(s: pd.Series, low: float, high: float) -> pd.Series:
    return s.notna() & (s >= low) & (s <= high)


def _flags(present: pd.Series, derived: pd.Series | None, fallback: str) -> pd.Series:
    other = fallback if derived is None else np.where(derived, DERIVED, fallback)
    out = np.where(present, PRESENT, other)
    return pd.Series(out, index=present.index, dtype=object)


def qrisk_centre(sex: pd.Series, term: str) -> pd.Series:
    """QRISK3-2017's centring value of ``term`` for each patient's sex (NaN if sex unknown).

    ``term`` is a continuous model term: ``chol_hdl_ratio``, ``sbp``, ``sbp_sd``,
    ``townsend`` or ``bmi`` (the BMI whose first fractional-polynomial term equals its
    centre: bmi = divide_by * centre ** (1 / power)).
    """
    models = load_qrisk3_models()
    values = {}
    for name, model in models.items():
        if term == "bmi":
            power = model.bmi_powers[0]
            values[name] = model.bmi_divide_by * model.centres["bmi_1"] ** (1.0 / power)
        else:
            values[name] = model.centres[term]
    return sex.map(values).astype(float)


def derive_bmi(
    bmi: pd.Series,
    height_m: pd.Series,
    weight_kg: pd.Series,
    sex: pd.Series,
    *,
    config: CvdConfig = DEFAULT_CONFIG,
) -> tuple[pd.Series, pd.Series]:
    """BMI (kg/m²): the latest recorded BMI in range; else weight / height² from the
    latest weight and latest adult height; else imputed at the QRISK3 centre.

    Recorded values outside ``config.bmi_range`` (and heights/weights outside theirs)
    are treated as not recorded.
    """
    bmi, height, weight = _num(bmi), _num(height_m), _num(weight_kg)
    has_bmi = _in_range(bmi, *config.bmi_range)
    ok_hw = _in_range(height, *config.height_m_range) & _in_range(weight, *config.weight_kg_range)
    computed = weight / height**2
    ok_hw &= _in_range(computed, *config.bmi_range)
    value = bmi.where(has_bmi, computed.where(ok_hw, qrisk_centre(sex, "bmi")))
    flag = _flags(has_bmi, ~has_bmi & ok_hw, IMPUTED)
    return value, flag


def derive_sbp(sbp: pd.Series, sex: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Systolic BP for QRISK3: the latest valid reading in the look-back (the extract
    keeps only readings >= 50 mmHg); else imputed at the QRISK3 centre."""
    sbp = _num(sbp)
    has = sbp.notna()
    return sbp.where(has, qrisk_centre(sex, "sbp")), _flags(has, None, IMPUTED)


def derive_sbp_sd(
    sbp_sd: pd.Series,
    sbp_n: pd.Series,
    sex: pd.Series,
    *,
    config: CvdConfig = DEFAULT_CONFIG,
) -> tuple[pd.Series, pd.Series]:
    """SD of systolic BP (QRISK3: SD of the readings in the last 5 years; needs at least
    ``config.sbp_sd_min_readings`` readings); else imputed at the QRISK3 centre."""
    sd, n = _num(sbp_sd), _num(sbp_n).fillna(0)
    has = sd.notna() & (n >= config.sbp_sd_min_readings)
    return sd.where(has, qrisk_centre(sex, "sbp_sd")), _flags(has, None, IMPUTED)


def derive_chol_hdl_ratio(
    ratio: pd.Series,
    total_cholesterol: pd.Series,
    hdl: pd.Series,
    sex: pd.Series,
    *,
    ratio_date: pd.Series | None = None,
    pair_date: pd.Series | None = None,
    config: CvdConfig = DEFAULT_CONFIG,
) -> tuple[pd.Series, pd.Series]:
    """Total cholesterol / HDL ratio: the latest result — a recorded ratio (in
    ``config.chol_hdl_ratio_range``), or total cholesterol / HDL measured on one day
    (``total_cholesterol`` and ``hdl`` are that day's pair; both in their plausible ranges,
    and their ratio in the ratio's), whichever is more recent (given the dates; a recorded
    ratio on the same day wins, being the laboratory's own report); else imputed at the
    QRISK3 centre."""
    ratio, tc, hdl = _num(ratio), _num(total_cholesterol), _num(hdl)
    has = _in_range(ratio, *config.chol_hdl_ratio_range)
    ok = _in_range(tc, *config.cholesterol_range) & _in_range(hdl, *config.hdl_range)
    ok &= _in_range(tc / hdl, *config.chol_hdl_ratio_range)
    newer = pd.Series(False, index=ratio.index)
    if ratio_date is not None and pair_date is not None:
        newer = (pd.to_datetime(pair_date) > pd.to_datetime(ratio_date)).fillna(False)
    use_pair = ok & (~has | newer)
    use_ratio = has & ~use_pair
    value = ratio.where(use_ratio, (tc / hdl).where(use_pair, qrisk_centre(sex, "chol_hdl_ratio")))
    return value, _flags(use_ratio, use_pair, IMPUTED)


def derive_smoking(
    category: pd.Series, cigarettes_per_day: pd.Series | None = None
) -> tuple[pd.Series, pd.Series]:
    """QRISK3 smoking code from the latest smoking status.

    ``category`` is the latest status's category (never/ex/current/light/moderate/heavy).
    A current smoker with a recorded cigarettes-per-day gets light (<10), moderate (10-19)
    or heavy (20+). Current with no amount → moderate (imputed). Nothing recorded →
    non-smoker (imputed).
    """
    cat = category.astype(object).where(category.notna(), None)
    code = cat.map(SMOKING_CATEGORY_TO_QRISK)
    flag = pd.Series(np.where(code.notna(), PRESENT, IMPUTED), index=cat.index, dtype=object)
    current = cat == "current"
    if cigarettes_per_day is not None:
        cpd = _num(cigarettes_per_day)
        by_amount = pd.Series(
            np.select([cpd < 10, cpd < 20, cpd >= 20], [2, 3, 4], default=-1),
            index=cat.index,
        )
        known = current & cpd.notna() & (cpd >= 0)
        code = code.where(~known, by_amount)
        current_unknown = current & ~known
    else:
        current_unknown = current
    flag = flag.where(~current_unknown, IMPUTED)
    return code.fillna(0).astype(int), flag


def derive_ethnicity(ethnicity_16: pd.Series) -> tuple[pd.Series, pd.Series]:
    """QRISK3 ethnicity code (1-9) from the 16-group NHS ethnic category. Not stated (Z)
    or unrecognised → 1 "White or not stated" (as QRISK3 defines it), flagged imputed."""
    code = ethnicity_16.map(ETHNICITY_16_TO_QRISK)
    stated = code.notna() & (ethnicity_16 != "Z")
    return code.fillna(1).astype(int), _flags(stated, None, IMPUTED)


def derive_townsend(imd_quintile: pd.Series, policy: TownsendPolicy) -> tuple[pd.Series, pd.Series]:
    """Townsend score under ``policy`` (see :class:`~.config.TownsendPolicy`). Always
    flagged imputed: England publishes no LSOA Townsend score."""
    if policy.mode == "zero":
        value = pd.Series(0.0, index=imd_quintile.index)
    else:
        q = _num(imd_quintile)
        value = q.map(dict(policy.by_imd_quintile)).astype(float).fillna(0.0)
    return value, pd.Series(IMPUTED, index=imd_quintile.index, dtype=object)


#: Columns the extract provides for :func:`qrisk3_inputs`.
RECORD_COLUMNS: tuple[str, ...] = (
    "sex",
    "age",
    "ethnicity_16",
    "imd_quintile",
    "bmi_recorded",
    "height_m",
    "weight_kg",
    "sbp_qrisk",
    "sbp_sd",
    "sbp_n",
    "chol_hdl_ratio_recorded",
    "chol_hdl_ratio_recorded_date",
    "paired_tc",
    "paired_hdl",
    "paired_lipid_date",
    "smoking_category",
    "cigarettes_per_day",
    *QRISK3_FLAGS,
)

#: QRISK3 inputs that carry a data-quality flag column ``<name>_dq``.
DQ_INPUTS = ("bmi", "sbp", "sbp_sd", "chol_hdl_ratio", "smoking", "ethnicity", "townsend")


def qrisk3_inputs(records: pd.DataFrame, *, config: CvdConfig = DEFAULT_CONFIG) -> pd.DataFrame:
    """The QRISK3 input frame (columns of :data:`pophealth.scores.qrisk3.QRISK3_COLUMNS`)
    plus ``<input>_dq`` flags for :data:`DQ_INPUTS`, on the index of ``records``.

    ``records`` holds :data:`RECORD_COLUMNS` (one row per patient). Condition and
    treatment flags are taken as recorded (0/1; missing → 0).
    """
    missing = [c for c in RECORD_COLUMNS if c not in records.columns]
    if missing:
        raise KeyError(f"qrisk3_inputs: records are missing column(s) {missing}")
    sex = records["sex"].astype(object)
    out = pd.DataFrame(index=records.index)
    out["sex"] = sex
    out["age"] = _num(records["age"])
    out["bmi"], out["bmi_dq"] = derive_bmi(
        records["bmi_recorded"], records["height_m"], records["weight_kg"], sex, config=config
    )
    out["ethnicity"], out["ethnicity_dq"] = derive_ethnicity(records["ethnicity_16"])
    out["smoking"], out["smoking_dq"] = derive_smoking(
        records["smoking_category"], records["cigarettes_per_day"]
    )
    out["chol_hdl_ratio"], out["chol_hdl_ratio_dq"] = derive_chol_hdl_ratio(
        records["chol_hdl_ratio_recorded"],
        records["paired_tc"],  # one day's sample: never a TC and an HDL from two days
        records["paired_hdl"],
        sex,
        ratio_date=records["chol_hdl_ratio_recorded_date"],
        pair_date=records["paired_lipid_date"],
        config=config,
    )
    out["sbp"], out["sbp_dq"] = derive_sbp(records["sbp_qrisk"], sex)
    out["sbp_sd"], out["sbp_sd_dq"] = derive_sbp_sd(
        records["sbp_sd"], records["sbp_n"], sex, config=config
    )
    out["townsend"], out["townsend_dq"] = derive_townsend(records["imd_quintile"], config.townsend)
    for name in QRISK3_FLAGS:
        out[name] = _num(records[name]).fillna(0).clip(0, 1).astype(int)
    # Unknown sex cannot be scored: leave its imputed centres NaN → QRISK3 gives a reason.
    for name in ("bmi", "sbp", "sbp_sd", "chol_hdl_ratio"):
        unknown = ~sex.isin(["female", "male"]) & (out[f"{name}_dq"] == IMPUTED)
        out.loc[unknown, f"{name}_dq"] = MISSING
    return out


def imputed_summary(inputs: pd.DataFrame) -> pd.Series:
    """Per patient, the plain-words list of imputed or missing inputs ('' if none)."""
    words = {
        "bmi": "BMI",
        "sbp": "blood pressure",
        "sbp_sd": "BP variability",
        "chol_hdl_ratio": "cholesterol/HDL",
        "smoking": "smoking status",
        "ethnicity": "ethnicity",
    }
    # each patient's combination of hits as bits, then the text of each combination (64 of
    # them), not a string built per patient
    code = np.zeros(len(inputs), dtype=np.int64)
    for bit, key in enumerate(words):
        hit = inputs[f"{key}_dq"].isin([IMPUTED, MISSING]).to_numpy()
        code |= hit.astype(np.int64) << bit
    names = list(words.values())
    texts = np.array(
        [
            ", ".join(w for bit, w in enumerate(names) if c >> bit & 1)
            for c in range(1 << len(names))
        ],
        dtype=object,
    )
    return pd.Series(texts[code], index=inputs.index, dtype=object)
