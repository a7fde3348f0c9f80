"""Inequality statistics: slope and relative index of inequality, and quantile assignment.

* :func:`sii` — slope index of inequality (SII) and relative index of inequality (RII) by
  population-weighted regression on relative rank (Low A & Low A, *Measuring the gap:
  quantifying and comparing local health inequalities*, J Public Health 2004;26:388-95;
  Fingertips PH methods), with confidence limits by seeded Monte-Carlo simulation.
* :func:`quantiles` — assign small areas to quantiles within groups (OHID Technical Guide,
  *Assigning deprivation categories*, Fingertips PH methods).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from pophealth.stats._core import (
    StatsInputError,
    as_list,
    column_or_array,
    confidence_text,
    level_label,
    logit,
    normalise_confidence,
    z_value,
)

__all__ = ["sii", "quantiles"]

_VALUE_TYPES = {0: 0, 1: 1, 2: 2, "normal": 0, "other": 0, "rate": 1, "proportion": 2}


def _design(pop: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """√a, b·√a and the least-squares projection (XᵀX)⁻¹Xᵀ for one group's quantiles.

    a = population share of each quantile; b = relative rank = cumulative share at the
    midpoint of the quantile (quantiles already ordered most → least deprived).
    """
    a = pop / pop.sum()
    b = np.cumsum(a) - a / 2
    sqrt_a = np.sqrt(a)
    design = np.column_stack([sqrt_a, b * sqrt_a])
    projection = np.linalg.solve(design.T @ design, design.T)
    return sqrt_a, b, projection


def sii(
    quantile: Any,
    population: Any,
    value: Any = None,
    *,
    x: Any = None,
    data: pd.DataFrame | None = None,
    by: str | Sequence[str] | None = None,
    value_type: int | str = 0,
    lower_cl: Any = None,
    upper_cl: Any = None,
    se: Any = None,
    multiplier: float = 1,
    repetitions: int = 100_000,
    confidence: float | Sequence[float] = 0.95,
    rii: bool = True,
    transform: bool = False,
    seed: int | np.random.Generator | None = 2024,
) -> pd.DataFrame:
    """Slope index of inequality (SII) and relative index of inequality (RII), one row per group.

    Each group needs one row per quantile (e.g. IMD decile 1 = most deprived … 10 = least),
    ordered by the quantile label (numerically when the labels are numbers, even as text). For
    quantile i with population share aᵢ and relative rank bᵢ (cumulative share at the band
    midpoint), fit Yᵢ√aᵢ = β₀√aᵢ + β₁bᵢ√aᵢ by least squares:
    **SII = β₁** (fitted value at rank 1 minus rank 0) and **RII = (β₀ + β₁)/β₀**, both on the
    scale of the values given. ``multiplier`` scales the SII; a negative multiplier flips
    polarity and inverts the RII (Low & Low 2004; Fingertips PH methods).

    Confidence limits by simulation: each quantile value is drawn ``repetitions`` times from
    N(value, se) — on the log scale for rates (``value_type="rate"`` or 1) and the logit scale
    for proportions (``"proportion"`` or 2), back-transformed — the regression is refitted to
    every draw, and the limits are the matching order statistics. ``se`` is taken directly,
    or derived from the 95% limits as (upper − lower)/(2·1.96) on the transformed scale. The
    simulation is vectorised and seeded (``seed``), so results are reproducible.

    ``transform=True`` (rates or proportions only) fits the regression to the log (rates) or
    logit (proportions) values instead, for gradients that are multiplicative: then
    SII = g⁻¹(β₀ + β₁) − g⁻¹(β₀) and RII = g⁻¹(β₀ + β₁)/g⁻¹(β₀), with the simulation done on the
    same scale. ``intercept`` (the fitted value at rank 0, on the value scale) is always
    returned.

    Output: ``value`` (= ``sii``) with ``lower95_0cl``/``upper95_0cl`` (also named
    ``sii_lower95_0cl``/``sii_upper95_0cl`` as in the national reference), ``rii`` with
    ``rii_lower95_0cl``/``rii_upper95_0cl``, and the 99.8% columns when asked for.

    Groups lacking any quantile are dropped with a warning. ``r_squared`` of the weighted fit
    and a ``warning`` column (small quantile population, poor linear fit) help judge whether
    a linear gradient describes the data.
    """
    vt = _VALUE_TYPES.get(value_type)
    if vt is None:
        raise StatsInputError("value_type must be 0/'normal', 1/'rate' or 2/'proportion'")
    if transform and vt == 0:
        raise StatsInputError(
            "transform=True needs value_type 'rate' (log) or 'proportion' (logit)"
        )
    if repetitions < 1000:
        raise StatsInputError("repetitions must be 1000 or more (default 100,000)")
    levels = normalise_confidence(confidence)
    if value is None and x is None:
        raise StatsInputError("sii needs value=, or x= counts with value_type='proportion'")
    if se is None and (lower_cl is None or upper_cl is None):
        raise StatsInputError("sii needs se=, or both lower_cl= and upper_cl=")
    keys = as_list(by)
    frame = pd.DataFrame({"pop": column_or_array(data, population, "population")})
    q = data[quantile].to_numpy() if isinstance(quantile, str) and data is not None else quantile
    frame["quantile"] = np.asarray(q)
    # order quantiles by number when the labels are numbers, even written as text: as text,
    # "10" would sort between "1" and "2" and the relative ranks would be wrong
    as_number = pd.to_numeric(
        pd.Series(frame["quantile"].to_numpy(), dtype=object), errors="coerce"
    )
    frame["order"] = as_number.to_numpy() if as_number.notna().all() else frame["quantile"]
    if value is not None:
        frame["value"] = column_or_array(data, value, "value")
    else:
        if vt != 2:
            raise StatsInputError("x= counts are only meaningful with value_type='proportion'")
        frame["value"] = column_or_array(data, x, "x") / frame["pop"].to_numpy()
    for name, arg in (("se", se), ("lower", lower_cl), ("upper", upper_cl)):
        if arg is not None:
            frame[name] = column_or_array(data, arg, name)
    for k in keys:
        frame[k] = data[k].to_numpy()  # type: ignore[index]

    pops = frame["pop"].to_numpy()
    if np.any(~(pops > 0)):
        raise StatsInputError("some quantiles have a zero, negative or missing population")
    if "se" in frame and np.any(~(frame["se"].to_numpy() >= 0)):
        raise StatsInputError("negative or missing standard errors in input")
    if vt == 2:
        vals = frame["value"].to_numpy()
        if np.any((vals < 0) | (vals > 1)):
            raise StatsInputError("proportions (value_type='proportion') must lie in 0-1")
    n_quantiles = frame["quantile"].nunique()
    if not 5 <= n_quantiles <= 100:
        raise StatsInputError(f"number of quantiles must be between 5 and 100 (got {n_quantiles})")

    # transformed value and standard error
    tv = frame["value"].to_numpy(dtype=float)
    if vt == 1:
        tv = np.log(tv)
    elif vt == 2:
        tv = logit(tv)
    if "se" in frame:
        tse = frame["se"].to_numpy(dtype=float)
    else:
        lo = frame["lower"].to_numpy(dtype=float)
        hi = frame["upper"].to_numpy(dtype=float)
        if vt == 1:
            lo, hi = np.log(lo), np.log(hi)
        elif vt == 2:
            lo, hi = logit(lo), logit(hi)
        tse = (hi - lo) / (2 * z_value(0.95))
    frame["tv"] = tv
    frame["tse"] = tse

    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    groups = frame.groupby(keys, sort=True, dropna=False) if keys else [((), frame)]
    rows = []
    dropped = 0
    for key, g in groups:
        g = g.sort_values("order", kind="stable")
        ok = np.isfinite(g["tse"].to_numpy()) & np.isfinite(g["value"].to_numpy())
        if g["quantile"].nunique() != n_quantiles or not ok.all() or len(g) != n_quantiles:
            dropped += 1
            continue
        rows.append(
            _one_sii(g, key, keys, vt, levels, multiplier, repetitions, rii, rng, transform)
        )
    if dropped:
        warnings.warn(
            f"SII not calculated for {dropped} group(s) with missing quantiles or invalid data",
            UserWarning,
            stacklevel=2,
        )
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["confidence"] = confidence_text(levels)
    out["statistic"] = f"sii x {multiplier:g}" if multiplier != 1 else "sii"
    scale = {1: "log ", 2: "logit "}.get(vt, "") if transform else ""
    out["method"] = f"weighted regression on {scale}values; simulation {repetitions} reps"
    out["indicator_type"] = {0: "normal", 1: "rate", 2: "proportion"}[vt]
    return out


def _back(v: np.ndarray, vt: int) -> np.ndarray:
    if vt == 1:
        return np.exp(v)
    if vt == 2:
        return 1 / (1 + np.exp(-v))
    return v


def _one_sii(
    g: pd.DataFrame,
    key: Any,
    keys: list[str],
    vt: int,
    levels: tuple[float, ...],
    multiplier: float,
    repetitions: int,
    want_rii: bool,
    rng: np.random.Generator,
    transform: bool = False,
) -> dict[str, Any]:
    pop = g["pop"].to_numpy(dtype=float)
    y = g["tv"].to_numpy(dtype=float) if transform else g["value"].to_numpy(dtype=float)
    sqrt_a, b, proj = _design(pop)
    beta0, beta1 = proj @ (y * sqrt_a)
    fitted = beta0 + beta1 * b
    weights = pop / pop.sum()
    ybar = np.sum(weights * y)
    ss_tot = np.sum(weights * (y - ybar) ** 2)
    r2 = 1 - np.sum(weights * (y - fitted) ** 2) / ss_tot if ss_tot > 0 else np.nan

    draws = rng.standard_normal((repetitions, len(y))) * g["tse"].to_numpy() + g["tv"].to_numpy()
    if not transform:
        draws = _back(draws, vt)
    params = (draws * sqrt_a) @ proj.T  # (repetitions, 2): intercept, slope
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if transform:
            lo_end, hi_end = _back(params[:, 0], vt), _back(params[:, 0] + params[:, 1], vt)
            sims_sii = np.sort(multiplier * (hi_end - lo_end))
            sims_rii = hi_end / lo_end
            v0, v1 = _back(np.array([beta0, beta0 + beta1]), vt)
        else:
            sims_sii = np.sort(multiplier * params[:, 1])
            sims_rii = (params[:, 0] + params[:, 1]) / params[:, 0]
            v0, v1 = beta0, beta0 + beta1
    if multiplier < 0:
        sims_rii = 1 / sims_rii
    sims_rii = np.sort(sims_rii)

    row: dict[str, Any] = {}
    key_t = key if isinstance(key, tuple) else (key,)
    for k, v in zip(keys, key_t, strict=False):
        row[k] = v
    rii_value = v1 / v0 if v0 != 0 else np.nan
    if multiplier < 0:
        rii_value = 1 / rii_value
    row["value"] = multiplier * (v1 - v0)
    for c in levels:
        cv = c + (1 - c) / 2
        lo_i = max(int(np.round(repetitions * (1 - cv))) - 1, 0)
        hi_i = min(int(np.round(repetitions * cv)) - 1, repetitions - 1)
        lab = level_label(c)
        row[f"lower{lab}cl"] = sims_sii[lo_i]
        row[f"upper{lab}cl"] = sims_sii[hi_i]
        row[f"sii_lower{lab}cl"] = sims_sii[lo_i]
        row[f"sii_upper{lab}cl"] = sims_sii[hi_i]
        if want_rii:
            row[f"rii_lower{lab}cl"] = sims_rii[lo_i]
            row[f"rii_upper{lab}cl"] = sims_rii[hi_i]
    row["sii"] = row["value"]
    if want_rii:
        row["rii"] = rii_value
    row["intercept"] = multiplier * v0
    row["r_squared"] = r2
    notes = []
    if np.min(pop) < 100:
        notes.append("a quantile population is under 100: SII may be unstable")
    if np.isfinite(r2) and r2 < 0.5:
        notes.append(f"weighted linear fit is poor (R² = {r2:.2f}): gradient may be non-linear")
    row["warning"] = "; ".join(notes) or None
    return row


def quantiles(
    values: Any,
    *,
    data: pd.DataFrame | None = None,
    by: str | Sequence[str] | None = None,
    nquantiles: int = 10,
    invert: bool = True,
) -> pd.Series:
    """Assign areas to ``nquantiles`` quantiles of ``values`` within each ``by`` group.

    OHID Technical Guide *Assigning deprivation categories*: rank the values (ties share the
    lowest rank), then quantile = ⌊(Q + 1) − ⌈((N + 1) − rank) / (N/Q)⌉⌋, 0 becoming 1, with N
    the number of areas that have a value. ``invert=True`` (default) makes quantile 1 hold the
    *highest* values — e.g. IMD score, so decile 1 = most deprived; ``invert=False`` puts the
    lowest values in quantile 1.

    Groups with fewer areas than quantiles are refused: their areas get NA and a warning says
    so. Returns a float Series (NA where not assigned) aligned with the input rows.
    """
    if int(nquantiles) != nquantiles or nquantiles < 2:
        raise StatsInputError("nquantiles must be a whole number of 2 or more")
    keys = as_list(by)
    frame = pd.DataFrame({"v": column_or_array(data, values, "values")})
    for k in keys:
        frame[k] = data[k].to_numpy()  # type: ignore[index]
    if keys:
        g = frame.groupby(keys, sort=False, dropna=False)["v"]
        n = g.transform("count").to_numpy(dtype=float)
        vmax = g.transform("max").to_numpy(dtype=float)
        adj = vmax - frame["v"].to_numpy() if invert else frame["v"].to_numpy()
        frame["adj"] = adj
        rank = frame.groupby(keys, sort=False, dropna=False)["adj"].rank(method="min")
        rank = rank.to_numpy(dtype=float)
    else:
        v = frame["v"]
        n = np.full(len(v), float(v.count()))
        adj = (v.max() - v) if invert else v
        rank = adj.rank(method="min").to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        q = np.floor((nquantiles + 1) - np.ceil(((n + 1) - rank) / (n / nquantiles)))
    q[q == 0] = 1
    too_few = n < nquantiles
    if np.any(too_few & ~np.isnan(frame["v"].to_numpy())):
        warnings.warn(
            f"one or more groups have fewer areas than the {nquantiles} quantiles requested; "
            "their quantiles are left unassigned (NA)",
            UserWarning,
            stacklevel=2,
        )
    q[too_few] = np.nan
    index = data.index if data is not None else None
    return pd.Series(q, index=index, name="quantile")
