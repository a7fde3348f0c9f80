"""Shared machinery for :mod:`pophealth.stats`: confidence levels, input handling, output contract.

Every public statistic returns a :class:`pandas.DataFrame` with one row per group and the
PHEindicatormethods output contract::

    <by columns>, <inputs>, value, lower95_0cl, upper95_0cl, lower99_8cl, upper99_8cl,
    confidence, statistic, method

(only the limit columns for the confidence levels asked for). Confidence levels are given
as ``0.95``, ``(0.95, 0.998)``, or as percentages ``95`` / ``(95, 99.8)``, each between 90%
and 100%, mirroring the national reference.

Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import special, stats

DEFAULT_CONFIDENCE: tuple[float, ...] = (0.95, 0.998)

ArrayLike = Any


class StatsInputError(ValueError):
    """An input a public-health analyst needs to fix (the message says what and where)."""


def normalise_confidence(confidence: float | Sequence[float]) -> tuple[float, ...]:
    """Return confidence levels as fractions, validated to lie in [0.9, 1] (or 90-100 %)."""
    levels = [confidence] if np.isscalar(confidence) else list(confidence)  # type: ignore[arg-type]
    if not levels:
        raise StatsInputError("confidence must name at least one level, e.g. 0.95")
    out = []
    for c in levels:
        c = float(c)
        if 90 <= c <= 100:
            c = c / 100
        if not 0.9 <= c <= 1:
            raise StatsInputError(
                f"confidence level must be between 90 and 100 or between 0.9 and 1 (got {c})"
            )
        out.append(c)
    labels: dict[str, float] = {}
    for c in out:
        seen = labels.setdefault(level_label(c), c)
        if seen != c:
            raise StatsInputError(
                f"confidence levels {seen:g} and {c:g} would share the limit columns "
                f"'*{level_label(c)}cl' (levels are named to 0.1%): give distinct levels"
            )
    return tuple(out)


def level_label(c: float) -> str:
    """Column suffix for a confidence level: 0.95 -> '95_0', 0.998 -> '99_8'."""
    return f"{c * 100:.1f}".replace(".", "_")


def confidence_text(levels: Iterable[float]) -> str:
    """The ``confidence`` column text, e.g. '95%, 99.8%'."""
    return ", ".join(f"{c * 100:g}%" for c in levels)


def z_value(c: float) -> float:
    """Two-sided standard-normal critical value for confidence c."""
    return float(stats.norm.ppf(c + (1 - c) / 2))


# ---------------------------------------------------------------------------------------------
# interval building blocks (vectorised; published formulas cited in each docstring)
# ---------------------------------------------------------------------------------------------


def scaled_quotient(x: Any, n: Any, multiplier: float = 1.0) -> np.ndarray:
    """x × multiplier / n as one division: the double nearest the exact quotient for whole
    counts (35 of 125 as a percentage is 28.0, where 35 / 125 × 100 gives
    28.000000000000004). Missing where n is not above 0 or either is missing."""
    x = np.asarray(x, dtype=float)
    n = np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, x * multiplier / n, np.nan)


def wilson(x: np.ndarray, n: np.ndarray, c: float) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for a proportion x/n.

    Wilson EB (1927) J Am Stat Assoc 22:209-212; Newcombe RG, Altman DG in *Statistics with
    confidence* (2nd edn, 2000) pp 46-48:
    (2x + z² ∓ z·√(z² + 4x(1 − x/n))) / (2(n + z²)).
    """
    x = np.asarray(x, dtype=float)
    n = np.asarray(n, dtype=float)
    if c >= 1:
        return np.where(np.isnan(x + n), np.nan, 0.0), np.where(np.isnan(x + n), np.nan, 1.0)
    z = z_value(c)
    with np.errstate(invalid="ignore", divide="ignore"):
        root = z * np.sqrt(z**2 + 4 * x * (1 - x / n))
        lower = (2 * x + z**2 - root) / (2 * (n + z**2))
        upper = (2 * x + z**2 + root) / (2 * (n + z**2))
    return lower, upper


def byars_lower(x: np.ndarray, c: float) -> np.ndarray:
    """Byar's approximation to the exact Poisson lower limit for a count x.

    Breslow NE, Day NE. *Statistical methods in cancer research, vol II* (IARC 1987):
    x·(1 − 1/(9x) − z/(3√x))³.
    """
    x = np.asarray(x, dtype=float)
    z = z_value(c)
    with np.errstate(invalid="ignore", divide="ignore"):
        return x * (1 - 1 / (9 * x) - z / (3 * np.sqrt(x))) ** 3


def byars_upper(x: np.ndarray, c: float) -> np.ndarray:
    """Byar's upper limit for a count x: (x+1)·(1 − 1/(9(x+1)) + z/(3√(x+1)))³ (Breslow & Day)."""
    x = np.asarray(x, dtype=float)
    z = z_value(c)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (x + 1) * (1 - 1 / (9 * (x + 1)) + z / (3 * np.sqrt(x + 1))) ** 3


def exact_lower(x: np.ndarray, c: float) -> np.ndarray:
    """Exact Poisson lower limit for a count: χ²(α/2; 2x)/2 (Garwood 1936); 0 when x = 0."""
    x = np.asarray(x, dtype=float)
    a = (1 - c) / 2
    with np.errstate(invalid="ignore"):
        out = stats.chi2.ppf(a, 2 * x) / 2
    return np.where(x == 0, 0.0, out)


def exact_upper(x: np.ndarray, c: float) -> np.ndarray:
    """Exact Poisson upper limit for a count: χ²(1 − α/2; 2x + 2)/2 (Garwood 1936)."""
    x = np.asarray(x, dtype=float)
    a = (1 - c) / 2
    return stats.chi2.ppf(1 - a, 2 * x + 2) / 2


def poisson_limits(x: np.ndarray, c: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Count limits by the national rule: exact Poisson for x < 10, Byar's for x ≥ 10.

    Returns (lower, upper, method) where method is 'Exact' or 'Byars' per element.
    """
    x = np.asarray(x, dtype=float)
    small = x < 10
    lower = np.where(small, exact_lower(np.where(small, x, 0), c), byars_lower(x, c))
    upper = np.where(small, exact_upper(np.where(small, x, 0), c), byars_upper(x, c))
    nan = np.isnan(x)
    lower[nan] = np.nan
    upper[nan] = np.nan
    method = np.where(nan, None, np.where(small, "Exact", "Byars")).astype(object)
    return lower, upper, method


def t_value(c: float, df: np.ndarray) -> np.ndarray:
    """Two-sided Student's t critical value."""
    with np.errstate(invalid="ignore"):
        return stats.t.ppf(c + (1 - c) / 2, df)


def logit(p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return special.logit(p)


# ---------------------------------------------------------------------------------------------
# inputs: arrays or a DataFrame with by=
# ---------------------------------------------------------------------------------------------


def as_list(by: str | Sequence[str] | None) -> list[str]:
    if by is None:
        return []
    if isinstance(by, str):
        return [by]
    return list(by)


def column_or_array(data: pd.DataFrame | None, value: Any, name: str) -> np.ndarray:
    """Resolve an argument that is either a column name of ``data`` or array-like values."""
    if data is not None and isinstance(value, str):
        if value not in data.columns:
            raise StatsInputError(
                f"{name}: column '{value}' not found in data (columns: {list(data.columns)})"
            )
        series = data[value]
    else:
        series = value
    if data is None and isinstance(value, str):
        raise StatsInputError(f"{name}: got the string '{value}' but no data= DataFrame")
    arr = np.atleast_1d(np.asarray(series))
    if arr.dtype.kind in "iufb":
        return arr.astype(float, copy=False)
    coerced = pd.to_numeric(pd.Series(arr.astype(object)), errors="coerce")
    return coerced.to_numpy(dtype=float)


def frame_of(
    data: pd.DataFrame | None, by: str | Sequence[str] | None, **cols: Any
) -> tuple[pd.DataFrame, list[str]]:
    """Build a working DataFrame with the named numeric columns plus the by columns."""
    keys = as_list(by)
    arrays = {name: column_or_array(data, v, name) for name, v in cols.items() if v is not None}
    lengths = {len(a) for a in arrays.values()}
    if len(lengths) > 1:
        longest = max(lengths)
        for name, a in arrays.items():
            if len(a) == 1:
                arrays[name] = np.repeat(a, longest)
        lengths = {len(a) for a in arrays.values()}
        if len(lengths) > 1:
            raise StatsInputError(
                "inputs have different lengths: "
                + ", ".join(f"{k}={len(a)}" for k, a in arrays.items())
            )
    return add_group_columns(pd.DataFrame(arrays), data, keys), keys


def add_group_columns(frame: pd.DataFrame, data: pd.DataFrame | None, keys: list[str]):
    """``frame`` with the grouping columns ``keys`` (``by=``) taken from ``data``."""
    if keys:
        if data is None:
            raise StatsInputError("by= names grouping columns, so data= must be a DataFrame")
        missing = [k for k in keys if k not in data.columns]
        if missing:
            raise StatsInputError(f"by: column(s) {missing} not found in data")
        for k in keys:
            frame[k] = data[k].to_numpy()
    return frame


def group_sum(frame: pd.DataFrame, keys: list[str], cols: list[str]) -> pd.DataFrame:
    """Sum ``cols`` within groups; a group with any missing input gets NA (not a silent 0)."""
    if not keys:
        return frame[cols].copy()
    work = frame[keys + cols].copy()
    for c in cols:
        work[f"__na_{c}"] = work[c].isna().astype(np.int64)
    g = work.groupby(keys, sort=True, dropna=False, observed=True)
    out = g[cols + [f"__na_{c}" for c in cols]].sum()
    for c in cols:
        out.loc[out[f"__na_{c}"] > 0, c] = np.nan
        del out[f"__na_{c}"]
    return out.reset_index()


def check_non_negative(values: np.ndarray, what: str) -> None:
    bad = np.flatnonzero(values < 0)
    if bad.size:
        raise StatsInputError(
            f"{what} must be greater than or equal to zero (row {int(bad[0])}: {values[bad[0]]})"
        )


def check_positive(values: np.ndarray, what: str) -> None:
    bad = np.flatnonzero(values <= 0)
    if bad.size:
        raise StatsInputError(
            f"{what} must be greater than zero (row {int(bad[0])}: {values[bad[0]]})"
        )


def add_limits(
    out: pd.DataFrame,
    levels: tuple[float, ...],
    limits: Iterable[tuple[np.ndarray, np.ndarray]],
) -> None:
    for c, (lo, hi) in zip(levels, limits, strict=True):
        lab = level_label(c)
        out[f"lower{lab}cl"] = lo
        out[f"upper{lab}cl"] = hi


def finish(
    out: pd.DataFrame, levels: tuple[float, ...], statistic: str, method: Any
) -> pd.DataFrame:
    out["confidence"] = confidence_text(levels)
    out["statistic"] = statistic
    out["method"] = method
    return out.reset_index(drop=True)


def multiplier_text(multiplier: float) -> str:
    """'100000' for 100000, '1.5' for 1.5 (no scientific notation in statistic labels)."""
    m = float(multiplier)
    return str(int(m)) if m.is_integer() else repr(m)
