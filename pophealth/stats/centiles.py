"""Centiles (the median among them) with distribution-free confidence limits.

**The centile.** Hyndman & Fan's definition 7 (Hyndman RJ, Fan Y. Sample quantiles in
statistical packages. *Am Stat* 1996;50:361-5): for ``n`` values in rank order
x₍₁₎ ≤ … ≤ x₍ₙ₎ the ``q`` centile sits at rank h = (n − 1)q + 1 and is read by straight-line
interpolation between x₍⌊h⌋₎ and x₍⌈h⌉₎. The median is the middle value (n odd) or the
mean of the two middle values (n even). It is the default of R's ``quantile()``, numpy's
``quantile()``, Excel's ``PERCENTILE.INC`` and SQL's ``PERCENTILE_CONT``, so an analyst
checking a figure in any of them gets the same number.

**The confidence interval** (distribution-free, from order statistics): the number of
values below the population's ``q`` centile is binomial (n, q), so the interval from
x₍ᵣ₎ to x₍ₛ₎ covers it with probability P(r ≤ B ≤ s − 1), B ~ Binomial(n, q) (Campbell MJ,
Gardner MJ. Calculating confidence intervals for some non-parametric analyses. *BMJ*
1988;296:1454-6; Campbell MJ, Gardner MJ in Altman DG et al., *Statistics with
Confidence*, 2nd edn, 2000, ch. 5).

* ``method="exact"`` (the default): r the largest rank with P(B ≤ r − 1) ≤ α/2 and s the
  smallest with P(B ≤ s − 1) ≥ 1 − α/2 — each tail at most α/2, so the coverage is at least
  the level asked for (the ranks of Campbell & Gardner's table for small samples).
* ``method="normal"``: their large-sample formula, r = nq − z√(nq(1 − q)) and
  s = 1 + nq + z√(nq(1 − q)), each rounded to the nearest whole number (for the median,
  r = n/2 − z√n/2 and s = 1 + n/2 + z√n/2: the 40th and 61st of 100 values at 95%).

Where r would be below 1 or s above n (too few values for that level: fewer than 6 for a
95% interval for the median, 36 for the 90th centile's exact interval) the interval is not
defined and both limits are missing. Ties need no special treatment: the limits are the
values at those ranks.

Pure and vectorised; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from pophealth.stats._core import (
    DEFAULT_CONFIDENCE,
    StatsInputError,
    add_group_columns,
    add_limits,
    confidence_text,
    normalise_confidence,
    z_value,
)

__all__ = ["centile_label", "centile_position", "centile_ranks", "centiles"]

METHODS = ("exact", "normal")


def check_centiles(q: Any) -> tuple[float, ...]:
    """``q`` as a tuple of centiles, each a number strictly between 0 and 1, none twice."""
    items = [q] if np.isscalar(q) else list(q)
    if not items:
        raise StatsInputError("centiles: give at least one, e.g. (0.5, 0.9)")
    out = []
    for x in items:
        if isinstance(x, bool) or not isinstance(x, int | float | np.integer | np.floating):
            raise StatsInputError(f"centiles: {x!r} is not a number between 0 and 1 (0.5: median)")
        if not 0 < float(x) < 1:
            raise StatsInputError(
                f"centiles: {x!r} is not strictly between 0 and 1 (0.5 is the median, 0.9 the "
                "90th centile; a percentage such as 90 needs dividing by 100)"
            )
        if float(x) in out:
            raise StatsInputError(f"centiles: {x!r} is listed twice")
        out.append(float(x))
    return tuple(out)


def centile_label(q: float) -> str:
    """``"median"`` for 0.5, else ``"90th centile"``, ``"2.5th centile"``, ``"1st centile"``."""
    if q == 0.5:
        return "median"
    pct = round(q * 100, 10)
    if pct != int(pct):
        return f"{pct:g}th centile"
    n = int(pct)
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix} centile"


def centile_position(n: Any, q: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where the ``q`` centile of ``n`` values sits (Hyndman & Fan 7): the ranks it is read
    from, ``(⌊h⌋, ⌈h⌉)``, and the fraction of the way from the first to the second, for
    h = (n − 1)q + 1. A rank that is a whole number up to rounding error (the 90th centile
    of 11 values sits at rank 10) is taken as exact. Missing where ``n`` is below 1."""
    n = np.asarray(n, dtype=float)
    q = np.asarray(q, dtype=float)
    with np.errstate(invalid="ignore"):
        h = np.where(n >= 1, (n - 1) * q + 1, np.nan)
        whole = np.round(h)
        h = np.where(np.abs(h - whole) < 1e-9, whole, h)
        lo = np.floor(h)
        hi = np.ceil(h)
    return lo, hi, h - lo


def centile_ranks(
    n: Any, q: Any, confidence: float = 0.95, method: str = "exact"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ranks ``(r, s)`` of the values that bound the ``confidence`` interval for the
    ``q`` centile of ``n`` values, and the interval's coverage P(r ≤ B ≤ s − 1) for
    B ~ Binomial(n, q) (module docstring: Campbell & Gardner 1988). Vectorised over ``n``
    and ``q``; missing where the interval is not defined (r < 1 or s > n, or n < 1)."""
    if method not in METHODS:
        raise StatsInputError(f"method must be one of {METHODS}, not {method!r}")
    (c,) = normalise_confidence(confidence)
    n, q = np.broadcast_arrays(np.asarray(n, dtype=float), np.asarray(q, dtype=float))
    if np.any((q <= 0) | (q >= 1)):
        raise StatsInputError("centiles must lie strictly between 0 and 1")
    half = (1 - c) / 2
    ok = n >= 1
    m = np.where(ok, n, 1)
    if method == "exact":
        r = stats.binom.ppf(half, m, q)
        r = r + (stats.binom.cdf(r, m, q) <= half)  # a tail of exactly α/2 is allowed
        s = stats.binom.ppf(1 - half, m, q) + 1
    else:
        spread = z_value(c) * np.sqrt(m * q * (1 - q))
        r = np.floor(m * q - spread + 0.5)  # to the nearest whole number, halves up
        s = np.floor(1 + m * q + spread + 0.5)
    defined = ok & (r >= 1) & (s <= m) & (c < 1)
    cover = stats.binom.cdf(s - 1, m, q) - stats.binom.cdf(r - 1, m, q)
    return (
        np.where(defined, r, np.nan),
        np.where(defined, s, np.nan),
        np.where(defined, cover, np.nan),
    )


def centiles(
    values: Any,
    q: float | Sequence[float] = 0.5,
    *,
    counts: Any = None,
    confidence: float | Sequence[float] = DEFAULT_CONFIDENCE,
    method: str = "exact",
    data: pd.DataFrame | None = None,
    by: str | Sequence[str] | None = None,
) -> pd.DataFrame:
    """The ``q`` centiles of ``values`` with distribution-free confidence limits: one row per
    group and centile, in the order asked for.

    ``values`` are numbers (or a column of ``data``); ``counts``, when given, says how many
    people have each value (a table of distinct values and their counts gives the same
    answer as the values written out). Missing values are left out, and counted.

    Columns: the ``by`` columns, ``quantile`` (the centile asked for, 0.5 for the median),
    ``n`` (the values used), ``missing`` (the values left out), ``value`` (Hyndman & Fan
    definition 7), the limits for each confidence level (binomial ranks, Campbell & Gardner
    1988: ``method="exact"`` or their large-sample ``"normal"`` formula; missing where the
    group has too few values for that level), ``confidence``, ``statistic`` (``"median"``,
    ``"90th centile"``) and ``method`` (which also says, on such a row, "too few values for
    a 95% interval").

    Raises :class:`StatsInputError` for a centile outside (0, 1), a negative or fractional
    count, or a value that is not a number.
    """
    levels = normalise_confidence(confidence)
    qs = check_centiles(q)
    if method not in METHODS:
        raise StatsInputError(f"method must be one of {METHODS}, not {method!r}")
    keys = [by] if isinstance(by, str) else list(by or [])
    frame = _frame(values, counts, data, keys)
    table = _distribution(frame, keys)
    return centiles_of_counts(table, keys, qs, levels, method)


def _frame(values: Any, counts: Any, data: pd.DataFrame | None, keys: list[str]) -> pd.DataFrame:
    def column(x: Any, name: str) -> pd.Series:
        if isinstance(x, str):
            if data is None or x not in data.columns:
                raise StatsInputError(f"{name}: column '{x}' not found in data")
            return data[x].reset_index(drop=True)
        return pd.Series(np.atleast_1d(np.asarray(x))).reset_index(drop=True)

    v = column(values, "values")
    if v.dtype == bool or not (v.dtype.kind in "iuf" or v.isna().all()):
        try:
            v = pd.to_numeric(v.astype(object), errors="raise")
        except (TypeError, ValueError):
            raise StatsInputError("values must be numbers (a missing value is left out)") from None
        if v.dtype == bool:
            raise StatsInputError("values must be numbers, not True/False")
    frame = pd.DataFrame({"values": v.astype(float)})
    w = column(counts, "counts") if counts is not None else pd.Series(np.ones(len(v)))
    if len(w) != len(frame):
        raise StatsInputError(f"values ({len(frame)}) and counts ({len(w)}) differ in length")
    w = w.astype(float)
    if np.any(~np.isfinite(w)) or np.any(w < 0) or np.any(w != np.floor(w)):
        raise StatsInputError("counts must be whole numbers of people, zero or more")
    frame["counts"] = w.to_numpy()
    return add_group_columns(frame, data, keys)


def _distribution(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per group, each distinct value and its count (missing values as one row, NaN)."""
    return (
        frame.groupby([*keys, "values"], sort=True, dropna=False, observed=True)["counts"]
        .sum()
        .reset_index()
    )


def centiles_of_counts(
    table: pd.DataFrame,
    keys: list[str],
    qs: tuple[float, ...],
    levels: tuple[float, ...],
    method: str = "exact",
) -> pd.DataFrame:
    """:func:`centiles` from a table of ``keys``, ``values`` and ``counts`` (any order,
    a value may appear more than once; NaN values are the missing ones)."""
    table = table[table["counts"] > 0]
    if keys:
        codes = table.groupby(keys, sort=True, dropna=False, observed=True).ngroup().to_numpy()
        groups = (
            table.assign(_g=codes)
            .drop_duplicates("_g")
            .sort_values("_g")[keys]
            .reset_index(drop=True)
        )
    else:
        codes = np.zeros(len(table), dtype=np.int64)
        groups = pd.DataFrame(index=range(1 if len(table) else 0))
    ng = len(groups)
    v = table["values"].to_numpy(dtype=float)
    w = table["counts"].to_numpy(dtype=float)
    absent = np.isnan(v)
    missing = np.bincount(codes[absent], weights=w[absent], minlength=ng)
    codes, v, w = codes[~absent], v[~absent], w[~absent]
    order = np.lexsort((v, codes))
    codes, v, w = codes[order], v[order], w[order]
    n = np.bincount(codes, weights=w, minlength=ng)
    cum = np.cumsum(w)
    start = np.concatenate([[0.0], np.cumsum(n)[:-1]]) if ng else np.zeros(0)

    def at(g: np.ndarray, rank: np.ndarray) -> np.ndarray:
        """The value of rank ``rank`` (1 = smallest) in group ``g``; NaN where undefined."""
        ok = np.isfinite(rank) & (rank >= 1) & (rank <= n[g])
        target = start[g] + np.where(ok, rank, 1)
        idx = np.clip(np.searchsorted(cum, target, side="left"), 0, max(len(v) - 1, 0))
        return np.where(ok, v[idx] if len(v) else np.nan, np.nan)

    gi = np.repeat(np.arange(ng), len(qs))
    qq = np.tile(np.asarray(qs, dtype=float), ng)
    out = groups.loc[gi].reset_index(drop=True)
    nn = n[gi]
    out["quantile"] = qq
    out["n"] = nn.astype(np.int64)
    out["missing"] = missing[gi].astype(np.int64)
    lo, hi, frac = centile_position(nn, qq)
    a, b = at(gi, lo), at(gi, hi)
    with np.errstate(invalid="ignore"):
        out["value"] = np.where(a == b, a, a + frac * (b - a))
    limits = []
    short = []  # per row, the levels with too few values for an interval
    for c in levels:
        r, s, _ = centile_ranks(nn, qq, c, method)
        limits.append((at(gi, r), at(gi, s)))
        short.append(np.isnan(r) & (nn > 0))
    add_limits(out, levels, limits)
    out["confidence"] = confidence_text(levels)
    out["statistic"] = [centile_label(x) for x in qq]
    words = METHOD_TEXT[method]
    method_text = []
    for i in range(len(out)):
        if nn[i] <= 0:
            method_text.append(None)
            continue
        missing_levels = [c for c, m in zip(levels, short, strict=True) if m[i]]
        if missing_levels:
            which = " or ".join(confidence_text([c]) for c in missing_levels)
            method_text.append(f"{words}; too few values for a {which} interval")
        else:
            method_text.append(words)
    out["method"] = pd.Series(method_text, dtype=object)
    return out


#: the ``method`` text of a centile with a value
METHOD_TEXT = {
    "exact": "Hyndman & Fan 7; binomial ranks (Campbell & Gardner, exact)",
    "normal": "Hyndman & Fan 7; binomial ranks (Campbell & Gardner, normal approximation)",
}
