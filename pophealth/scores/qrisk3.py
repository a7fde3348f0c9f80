"""QRISK3-2017: 10-year risk of cardiovascular disease, vectorised over patients.

Method: Hippisley-Cox J, Coupland C, Brindle P. Development and validation of QRISK3
risk prediction algorithms to estimate future risk of cardiovascular disease:
prospective cohort study. BMJ 2017;357:j2099. Coefficients: ClinRisk's open
QRISK3-2017 release (LGPL-3), held as a versioned data table in
``pophealth/scores/data/qrisk3_2017.json`` together with its licence notice.

The model is a pair of Cox models (female, male). For each patient

    risk % = 100 * (1 - S0 ** exp(lp))

where S0 is the sex's 10-year baseline survival and ``lp`` is a linear predictor
built from fractional-polynomial transforms of age and BMI, centred continuous
terms, ethnicity and smoking categories, 0/1 conditions, and interactions of the
two age terms with most of the others. This module evaluates the table generically
(see the table's ``layout`` key); nothing about individual coefficients lives in
code.

Every output that shows a QRISK3 score must also show :data:`QRISK3_DISCLAIMER`
(a condition of the LGPL release).

Scope notes (for callers, not enforced here): NICE does not use QRISK3 for people
with familial hypercholesterolaemia, type 1 diabetes, CKD stage 3+ or age >= 85 when
deciding on statins; the programme layer decides who is scored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "QRISK3_COLUMNS",
    "QRISK3_DISCLAIMER",
    "QRISK3_FLAGS",
    "QRISK3_LICENCE",
    "QRISK3_LIMITS",
    "QRISK3_VERSION",
    "Qrisk3Limits",
    "Qrisk3Model",
    "load_qrisk3_models",
    "qrisk3",
]

_TABLE_FILE = "qrisk3_2017.json"

#: 0/1 condition and treatment flags, in the input contract's order.
QRISK3_FLAGS: tuple[str, ...] = (
    "atrial_fibrillation",
    "atypical_antipsychotics",
    "corticosteroids",
    "erectile_dysfunction",
    "migraine",
    "rheumatoid_arthritis",
    "ckd_3_5",
    "severe_mental_illness",
    "sle",
    "treated_hypertension",
    "type1_diabetes",
    "type2_diabetes",
    "family_history_chd",
)

#: Every column :func:`qrisk3` reads (one row per patient).
QRISK3_COLUMNS: tuple[str, ...] = (
    "sex",
    "age",
    "bmi",
    "ethnicity",
    "smoking",
    "chol_hdl_ratio",
    "sbp",
    "sbp_sd",
    "townsend",
    *QRISK3_FLAGS,
)

_CONTINUOUS = ("chol_hdl_ratio", "sbp", "sbp_sd", "townsend")


@dataclass(frozen=True)
class Qrisk3Limits:
    """Input limits, each with its source.

    ``hard_*``: outside these the row gets NA and a reason (the model is either not
    defined there or not meant to be applied). ``calculator_*``: the input ranges of
    the public qrisk.org calculator; values outside them are still scored exactly as
    the published algorithm would (no clamping) but carry a warning.
    """

    version: str = "2026-11"
    age_min: int = 25
    age_max: int = 84
    age_source: str = (
        "QRISK3-2017 valid age range 25-84 (BMJ 2017;357:j2099; the CRAN QRISK3 package "
        "refuses other ages); NICE QS100 uses QRISK3 for adults 25-84"
    )
    hard_source: str = (
        "model definition: BMI enters as a power and logarithm so must be > 0; ratio and SBP "
        "must be > 0; an SD cannot be negative"
    )
    calculator_bmi: tuple[float, float] = (20.0, 40.0)
    calculator_chol_hdl_ratio: tuple[float, float] = (1.0, 12.0)
    calculator_sbp: tuple[float, float] = (70.0, 210.0)
    calculator_source: str = (
        "[UNCONFIRMED] qrisk.org calculator input ranges as documented for the QRISK2 "
        "calculator (BMI 20-40, cholesterol/HDL 1-12, SBP 70-210); not re-read for QRISK3"
    )


QRISK3_LIMITS = Qrisk3Limits()


@dataclass(frozen=True)
class Qrisk3Model:
    """One sex's model, read from the coefficient table."""

    sex: str
    baseline_survival: float
    age_divide_by: float
    age_powers: tuple[float, ...]
    bmi_divide_by: float
    bmi_powers: tuple[float, ...]
    centres: MappingProxyType[str, float]
    ethnicity: np.ndarray  # indexed by QRISK ethnicity code 0..9 (0 unused)
    smoking: np.ndarray  # indexed by smoking code 0..4
    main: MappingProxyType[str, float]
    interactions: MappingProxyType[str, MappingProxyType[str, Any]]


def _read_table() -> dict[str, Any]:
    text = resources.files("pophealth.scores").joinpath("data", _TABLE_FILE).read_text("utf-8")
    return json.loads(text)


@cache
def _table() -> dict[str, Any]:
    return _read_table()


def _model_from(sex: str, spec: dict[str, Any]) -> Qrisk3Model:
    ethnicity = np.zeros(10)
    for code, coef in spec["ethnicity"].items():
        ethnicity[int(code)] = coef

    def coef(v: Any) -> Any:
        return np.asarray(v, dtype=float) if isinstance(v, list) else float(v)

    interactions = {
        left: MappingProxyType({k: coef(v) for k, v in d.items()})
        for left, d in spec["interactions"].items()
    }
    fps = spec["fractional_polynomials"]
    return Qrisk3Model(
        sex=sex,
        baseline_survival=float(spec["baseline_survival"]),
        age_divide_by=float(fps["age"]["divide_by"]),
        age_powers=tuple(float(p) for p in fps["age"]["powers"]),
        bmi_divide_by=float(fps["bmi"]["divide_by"]),
        bmi_powers=tuple(float(p) for p in fps["bmi"]["powers"]),
        centres=MappingProxyType({k: float(v) for k, v in spec["centres"].items()}),
        ethnicity=ethnicity,
        smoking=np.asarray(spec["smoking"], dtype=float),
        main=MappingProxyType({k: float(v) for k, v in spec["main"].items()}),
        interactions=MappingProxyType(interactions),
    )


@cache
def load_qrisk3_models() -> MappingProxyType[str, Qrisk3Model]:
    """The QRISK3-2017 female and male models from the packaged coefficient table."""
    table = _table()
    return MappingProxyType({sex: _model_from(sex, spec) for sex, spec in table["sexes"].items()})


#: Model name and version of the coefficient table.
QRISK3_VERSION: str = _table()["model"]
#: Licence notice for the coefficient table (LGPL-3, ClinRisk Ltd).
QRISK3_LICENCE: str = _table()["licence"]
#: ClinRisk's disclaimer; must be shown (or prominently linked) wherever a score is shown.
QRISK3_DISCLAIMER: str = _table()["disclaimer"]


def _fp_terms(x: np.ndarray, powers: tuple[float, ...]) -> list[np.ndarray]:
    """Fractional-polynomial terms: x**p, and x**p * ln(x) when p repeats."""
    terms: list[np.ndarray] = []
    seen: set[float] = set()
    for p in powers:
        base = x if p == 1 else np.power(x, p)
        if p in seen:
            terms.append(base * np.log(x))
        else:
            terms.append(base)
            seen.add(p)
    return terms


def _linear_predictor(model: Qrisk3Model, cols: dict[str, np.ndarray]) -> np.ndarray:
    """The model's linear predictor for rows that have passed validation."""
    centre = model.centres
    terms: dict[str, np.ndarray] = {}
    for name, divide_by, powers in (
        ("age", model.age_divide_by, model.age_powers),
        ("bmi", model.bmi_divide_by, model.bmi_powers),
    ):
        for i, t in enumerate(_fp_terms(cols[name] / divide_by, powers), start=1):
            terms[f"{name}_{i}"] = t - centre[f"{name}_{i}"]
    for name in _CONTINUOUS:
        terms[name] = cols[name] - centre[name]
    for name in QRISK3_FLAGS:
        terms[name] = cols[name]

    smoking = cols["smoking"].astype(np.intp)
    lp = model.ethnicity[cols["ethnicity"].astype(np.intp)] + model.smoking[smoking]
    for name, coef in model.main.items():
        lp = lp + coef * terms[name]
    for left, partners in model.interactions.items():
        inner = np.zeros_like(lp)
        for name, coef in partners.items():
            inner = inner + (coef[smoking] if name == "smoking" else coef * terms[name])
        lp = lp + terms[left] * inner
    return lp


def _as_float(series: pd.Series) -> np.ndarray:
    if pd.api.types.is_bool_dtype(series.dtype) or pd.api.types.is_numeric_dtype(series.dtype):
        return series.to_numpy(dtype=float, na_value=np.nan)
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _join_messages(n: int, checks: list[tuple[np.ndarray, str]]) -> np.ndarray:
    """Per row, the '; '-joined messages of the checks that flagged it (None if none)."""
    out = np.full(n, None, dtype=object)
    any_flag = np.zeros(n, dtype=bool)
    for mask, _ in checks:
        any_flag |= mask
    rows = np.flatnonzero(any_flag)
    if rows.size == 0:
        return out
    parts: list[list[str]] = [[] for _ in range(rows.size)]
    for mask, message in checks:
        for j in np.flatnonzero(mask[rows]):
            parts[j].append(message)
    out[rows] = ["; ".join(p) for p in parts]
    return out


def qrisk3(
    patients: pd.DataFrame,
    *,
    whole_years: bool = True,
    limits: Qrisk3Limits = QRISK3_LIMITS,
) -> pd.DataFrame:
    """QRISK3-2017 10-year cardiovascular risk (%) for each row of ``patients``.

    Args:
        patients: one row per patient with the columns in :data:`QRISK3_COLUMNS`:
            ``sex`` ("female"/"male"), ``age`` (years, 25-84), ``bmi`` (kg/m2),
            ``ethnicity`` (QRISK code 1 White or not stated, 2 Indian, 3 Pakistani,
            4 Bangladeshi, 5 Other Asian, 6 Black Caribbean, 7 Black African,
            8 Chinese, 9 Other), ``smoking`` (0 non, 1 ex, 2 light <10/day,
            3 moderate 10-19, 4 heavy 20+), ``chol_hdl_ratio``, ``sbp`` (mmHg),
            ``sbp_sd`` (SD of recent systolic readings, mmHg), ``townsend``
            (deprivation score) and the 0/1 flags in :data:`QRISK3_FLAGS`.
            ``erectile_dysfunction`` is read for men only.
        whole_years: QRISK3 takes age in completed years (the published algorithm's
            age argument is an integer); when True a fractional age is truncated to
            whole years before scoring. Pass False to use age as given.
        limits: validity limits (see :class:`Qrisk3Limits`).

    Returns:
        A DataFrame on the same index with ``qrisk3`` (float, 10-year risk in %,
        NaN where the row cannot be scored), ``qrisk3_reason`` (why the score is NA,
        else None) and ``qrisk3_warning`` (scored, but worth a look, else None).
        Scores are at full precision; QRISK reports them to one decimal place.
        Show :data:`QRISK3_DISCLAIMER` with any score.

    Raises:
        KeyError: when a required column is missing (a caller error, not a row error).
    """
    missing = [c for c in QRISK3_COLUMNS if c not in patients.columns]
    if missing:
        raise KeyError(
            f"qrisk3: input is missing column(s) {missing}; expected {list(QRISK3_COLUMNS)}"
        )

    n = len(patients)
    sex = patients["sex"].to_numpy(dtype=object)
    is_female = sex == "female"
    is_male = sex == "male"
    cols = {c: _as_float(patients[c]) for c in QRISK3_COLUMNS if c != "sex"}

    age = cols["age"]
    if whole_years:
        age = np.trunc(age)
        cols["age"] = age
    with np.errstate(invalid="ignore"):
        bad: list[tuple[np.ndarray, str]] = [
            (~(is_female | is_male), "sex must be 'female' or 'male'"),
            (np.isnan(age), "age missing"),
            (
                (age < limits.age_min) | (age > limits.age_max),
                f"age outside {limits.age_min}-{limits.age_max}",
            ),
        ]
        for name, low, high in (("ethnicity", 1, 9), ("smoking", 0, 4)):
            v = cols[name]
            is_code = (v >= low) & (v <= high) & (v == np.floor(v))
            bad.append((np.isnan(v), f"{name} missing"))
            bad.append((~np.isnan(v) & ~is_code, f"{name} not a code {low}-{high}"))
        for name, rule, ok in (
            ("bmi", "finite and > 0", lambda v: np.isfinite(v) & (v > 0)),
            ("chol_hdl_ratio", "finite and > 0", lambda v: np.isfinite(v) & (v > 0)),
            ("sbp", "finite and > 0", lambda v: np.isfinite(v) & (v > 0)),
            ("sbp_sd", "finite and >= 0", lambda v: np.isfinite(v) & (v >= 0)),
            ("townsend", "finite", np.isfinite),
        ):
            v = cols[name]
            bad.append((np.isnan(v), f"{name} missing"))
            bad.append((~np.isnan(v) & ~ok(v), f"{name} must be {rule}"))
        for name in QRISK3_FLAGS:
            v = cols[name]
            applies = is_male if name == "erectile_dysfunction" else np.ones(n, dtype=bool)
            bad.append((applies & np.isnan(v), f"{name} missing"))
            bad.append((applies & ~np.isnan(v) & (v != 0) & (v != 1), f"{name} must be 0 or 1"))

    invalid = np.zeros(n, dtype=bool)
    for mask, _ in bad:
        invalid |= mask

    score = np.full(n, np.nan)
    models = load_qrisk3_models()
    for sex_name, sex_mask in (("female", is_female), ("male", is_male)):
        rows = np.flatnonzero(sex_mask & ~invalid)
        if rows.size == 0:
            continue
        model = models[sex_name]
        sub = {k: v[rows] for k, v in cols.items()}
        lp = _linear_predictor(model, sub)
        score[rows] = 100.0 * (1.0 - np.power(model.baseline_survival, np.exp(lp)))

    scored = ~invalid
    with np.errstate(invalid="ignore"):
        warn: list[tuple[np.ndarray, str]] = [
            (
                scored & (cols["type1_diabetes"] == 1) & (cols["type2_diabetes"] == 1),
                "type1_diabetes and type2_diabetes both set",
            ),
            (
                scored & is_female & (np.nan_to_num(cols["erectile_dysfunction"]) == 1),
                "erectile_dysfunction ignored for females",
            ),
        ]
        for name, (low, high) in (
            ("bmi", limits.calculator_bmi),
            ("chol_hdl_ratio", limits.calculator_chol_hdl_ratio),
            ("sbp", limits.calculator_sbp),
        ):
            v = cols[name]
            message = f"{name} outside qrisk.org calculator range {low:g}-{high:g}"
            warn.append((scored & ((v < low) | (v > high)), message))

    return pd.DataFrame(
        {
            "qrisk3": score,
            "qrisk3_reason": _join_messages(n, bad),
            "qrisk3_warning": _join_messages(n, warn),
        },
        index=patients.index,
    )
