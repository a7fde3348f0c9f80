"""Atrial fibrillation: CHA2DS2-VASc stroke risk and ORBIT bleeding risk, vectorised.

Sources
-------
- CHA2DS2-VASc: Lip GYH, Nieuwlaat R, Pisters R, Lane DA, Crijns HJGM. Refining
  clinical risk stratification for predicting stroke and thromboembolism in atrial
  fibrillation using a novel risk factor-based approach: the Euro Heart Survey on
  atrial fibrillation. Chest 2010;137(2):263-72. doi:10.1378/chest.09-1584.
- ORBIT: O'Brien EC, Simon DN, Thomas LE, et al. The ORBIT bleeding score: a simple
  bedside score to assess bleeding risk in atrial fibrillation. Eur Heart J
  2015;36(46):3258-64. doi:10.1093/eurheartj/ehv476.
- NICE NG196 (2021) Atrial fibrillation: offer anticoagulation at CHA2DS2-VASc >= 2,
  consider it for men with a score of 1; assess bleeding risk with ORBIT.

Every input is an array (one value per patient); a missing value (NaN/None) in any
input the score needs gives NA for that patient rather than a guessed score, except
the ORBIT laboratory values (see :func:`orbit`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

__all__ = [
    "CHA2DS2_VASC",
    "NICE_NG196_ANTICOAGULATION",
    "ORBIT",
    "AnticoagulationThresholds",
    "Cha2ds2VascPoints",
    "OrbitPoints",
    "anticoagulation_indication",
    "cha2ds2_vasc",
    "orbit",
    "orbit_risk_group",
]


@dataclass(frozen=True)
class Cha2ds2VascPoints:
    """CHA2DS2-VASc points (maximum 9)."""

    congestive_heart_failure: int = 1
    hypertension: int = 1
    age_75_plus: int = 2
    diabetes: int = 1
    stroke_tia_thromboembolism: int = 2
    vascular_disease: int = 1  # prior MI, peripheral arterial disease, aortic plaque
    age_65_74: int = 1
    female: int = 1
    older_age: int = 75
    middle_age: int = 65
    version: str = "Lip et al. 2010"
    source: str = (
        "Lip GYH et al. Chest 2010;137:263-72 (Euro Heart Survey); point table checked against "
        "globalrph.com CHA2DS2-VASc calculator and Northwell predictivemedicine calculator "
        "(same weights, maximum 9)"
    )


CHA2DS2_VASC = Cha2ds2VascPoints()


@dataclass(frozen=True)
class OrbitPoints:
    """ORBIT bleeding score points (maximum 7) and laboratory cut-offs."""

    older_age: int = 1
    older_age_years: int = 75
    reduced_hb_hct_or_anaemia: int = 2
    bleeding_history: int = 2
    insufficient_kidney_function: int = 1
    antiplatelet: int = 1
    hb_male_below_g_per_l: float = 130.0  # 13 g/dL
    hb_female_below_g_per_l: float = 120.0  # 12 g/dL
    hct_male_below_pct: float = 40.0
    hct_female_below_pct: float = 36.0
    egfr_below: float = 60.0  # mL/min/1.73 m2
    low_max: int = 2  # 0-2 low, 3 medium, >= 4 high
    medium_max: int = 3
    version: str = "O'Brien et al. 2015"
    source: str = (
        "O'Brien EC et al. Eur Heart J 2015;36:3258-64; point table and bands checked against "
        "BJGP ORBIT table (low 0-2: 2.4, medium 3: 4.7, high >=4: 8.1 bleeds/100 patient-years) "
        "and the ACC journal scan of the paper. Haematocrit cut-offs (<40% men, <36% women) as "
        "in two secondary summaries (nursing-notebook.com, cmp-manual.cz); one other "
        "(practical-haemostasis.com) gives <30% for women [check against the paper]"
    )


ORBIT = OrbitPoints()


@dataclass(frozen=True)
class AnticoagulationThresholds:
    """NICE NG196 stroke-prevention thresholds on CHA2DS2-VASc."""

    offer_at_or_above: int = 2
    consider_male_score: int = 1
    version: str = "NICE NG196 (2021)"
    source: str = (
        "NICE NG196 atrial fibrillation (2021) 1.6: offer anticoagulation with a DOAC at "
        "CHA2DS2-VASc >= 2 taking bleeding risk into account; consider for men with a score "
        "of 1 (PROGRAMMES.md section 3.4)"
    )


NICE_NG196_ANTICOAGULATION = AnticoagulationThresholds()


def _num(x: ArrayLike) -> np.ndarray:
    return np.asarray(
        pd.to_numeric(pd.Series(np.asarray(x, dtype=object).ravel()), errors="coerce"), dtype=float
    )


def _sex(x: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(x, dtype=object).ravel()
    return s == "female", s == "male"


def _flags(name: str, values: ArrayLike, n: int) -> np.ndarray:
    v = _num(values)
    if v.size != n:
        raise ValueError(f"{name} has {v.size} values, age has {n}")
    bad = ~np.isnan(v) & (v != 0) & (v != 1)
    if bad.any():
        raise ValueError(f"{name} must be 0/1 (or missing); got {v[bad][:3].tolist()}")
    return v


def _int_na(values: np.ndarray, na: np.ndarray) -> pd.arrays.IntegerArray:
    return pd.arrays.IntegerArray(np.where(na, 0, values).astype(np.int64), na.copy())


def cha2ds2_vasc(
    age: ArrayLike,
    sex: ArrayLike,
    congestive_heart_failure: ArrayLike,
    hypertension: ArrayLike,
    diabetes: ArrayLike,
    stroke_tia_thromboembolism: ArrayLike,
    vascular_disease: ArrayLike,
    *,
    points: Cha2ds2VascPoints = CHA2DS2_VASC,
) -> pd.arrays.IntegerArray:
    """CHA2DS2-VASc score (0-9) per patient; NA where any input is missing.

    Age >= 75 scores 2 and 65-74 scores 1 (not both); female sex scores 1. ``sex`` is
    "female"/"male"; flags are 0/1. Raises ValueError for a flag outside 0/1 or
    arrays of different lengths.
    """
    a = _num(age)
    n = a.size
    female, male = _sex(sex)
    if female.size != n:
        raise ValueError(f"sex has {female.size} values, age has {n}")
    flags = {
        "congestive_heart_failure": _flags("congestive_heart_failure", congestive_heart_failure, n),
        "hypertension": _flags("hypertension", hypertension, n),
        "diabetes": _flags("diabetes", diabetes, n),
        "stroke_tia_thromboembolism": _flags(
            "stroke_tia_thromboembolism", stroke_tia_thromboembolism, n
        ),
        "vascular_disease": _flags("vascular_disease", vascular_disease, n),
    }
    na = np.isnan(a) | ~(female | male)
    score = np.zeros(n)
    for name, v in flags.items():
        na |= np.isnan(v)
        score += getattr(points, name) * np.nan_to_num(v)
    with np.errstate(invalid="ignore"):
        score += np.where(
            a >= points.older_age,
            points.age_75_plus,
            np.where(a >= points.middle_age, points.age_65_74, 0),
        )
    score += np.where(female, points.female, 0)
    return _int_na(score, na)


def anticoagulation_indication(
    score: ArrayLike,
    sex: ArrayLike,
    *,
    thresholds: AnticoagulationThresholds = NICE_NG196_ANTICOAGULATION,
) -> np.ndarray:
    """NICE NG196 reading of a CHA2DS2-VASc score: "offer", "consider" (men scoring 1)
    or "not indicated"; None where the score or sex is missing. Bleeding risk (ORBIT)
    and the person's preferences still apply."""
    s = pd.array(score, dtype="Float64").to_numpy(dtype=float, na_value=np.nan)
    female, male = _sex(sex)
    if female.size != s.size:
        raise ValueError(f"sex has {female.size} values, score has {s.size}")
    with np.errstate(invalid="ignore"):
        out = np.select(
            [
                np.isnan(s) | ~(female | male),
                s >= thresholds.offer_at_or_above,
                male & (s == thresholds.consider_male_score),
            ],
            ["", "offer", "consider"],
            default="not indicated",
        ).astype(object)
    out[out == ""] = None
    return out


def orbit(
    age: ArrayLike,
    sex: ArrayLike,
    haemoglobin_g_per_l: ArrayLike,
    haematocrit_pct: ArrayLike,
    anaemia_history: ArrayLike,
    bleeding_history: ArrayLike,
    egfr: ArrayLike,
    antiplatelet: ArrayLike,
    *,
    points: OrbitPoints = ORBIT,
) -> pd.arrays.IntegerArray:
    """ORBIT bleeding score (0-7) per patient.

    Points: age >= 75 (1); haemoglobin < 130 g/L men / < 120 g/L women, or haematocrit
    < 40% men / < 36% women, or a history of anaemia (2); bleeding history, e.g.
    intracranial or gastrointestinal bleed or haemorrhagic stroke (2); eGFR < 60
    mL/min/1.73 m2 (1); antiplatelet treatment (1).

    Missing laboratory values (haemoglobin, haematocrit, eGFR) count as not reduced,
    as when scoring from records where no recent result exists; missing age, sex or
    any flag gives NA.
    """
    a = _num(age)
    n = a.size
    female, male = _sex(sex)
    hb, hct, gfr = _num(haemoglobin_g_per_l), _num(haematocrit_pct), _num(egfr)
    for name, v in (("sex", female), ("haemoglobin", hb), ("haematocrit", hct), ("egfr", gfr)):
        if v.size != n:
            raise ValueError(f"{name} has {v.size} values, age has {n}")
    anaemia = _flags("anaemia_history", anaemia_history, n)
    bleeding = _flags("bleeding_history", bleeding_history, n)
    antiplt = _flags("antiplatelet", antiplatelet, n)

    na = np.isnan(a) | ~(female | male) | np.isnan(anaemia) | np.isnan(bleeding) | np.isnan(antiplt)
    with np.errstate(invalid="ignore"):
        hb_cut = np.where(female, points.hb_female_below_g_per_l, points.hb_male_below_g_per_l)
        hct_cut = np.where(female, points.hct_female_below_pct, points.hct_male_below_pct)
        reduced = (hb < hb_cut) | (hct < hct_cut) | (anaemia == 1)
        score = (
            points.older_age * (a >= points.older_age_years)
            + points.reduced_hb_hct_or_anaemia * reduced
            + points.bleeding_history * (bleeding == 1)
            + points.insufficient_kidney_function * (gfr < points.egfr_below)
            + points.antiplatelet * (antiplt == 1)
        )
    return _int_na(score, na)


def orbit_risk_group(score: ArrayLike, *, points: OrbitPoints = ORBIT) -> np.ndarray:
    """ORBIT band: "low" (0-2), "medium" (3) or "high" (4-7); None where NA."""
    s = pd.array(score, dtype="Float64").to_numpy(dtype=float, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        out = np.select(
            [np.isnan(s), s <= points.low_max, s <= points.medium_max],
            ["", "low", "medium"],
            default="high",
        ).astype(object)
    out[out == ""] = None
    return out
