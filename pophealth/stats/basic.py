"""Proportions, crude rates and means with the national confidence-interval methods.

Methods follow the OHID/UKHSA Fingertips technical guidance ("Public Health Methods",
https://fingertips.phe.org.uk/profile/guidance/supporting-information/PH-methods) and the
APHO Technical Briefing 3 (Eayres D, 2008), as implemented in the national reference R package
PHEindicatormethods (used here only as an oracle for expected values).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from pophealth.stats._core import (
    DEFAULT_CONFIDENCE,
    StatsInputError,
    add_limits,
    check_non_negative,
    check_positive,
    finish,
    frame_of,
    group_sum,
    multiplier_text,
    normalise_confidence,
    poisson_limits,
    scaled_quotient,
    t_value,
    wilson,
)

__all__ = ["proportion", "rate", "mean"]


def proportion(
    x: Any,
    n: Any,
    multiplier: float = 1,
    *,
    confidence: float | Sequence[float] = DEFAULT_CONFIDENCE,
    data: pd.DataFrame | None = None,
    by: str | Sequence[str] | None = None,
) -> pd.DataFrame:
    """Proportion x/n with Wilson score confidence limits, one row per group.

    ``x`` and ``n`` are arrays (or scalars), or column names of ``data``; with ``by`` the
    numerators and denominators are summed within each group first. ``multiplier`` scales
    the output (100 gives a percentage).

    Method: Wilson score interval — Wilson EB, J Am Stat Assoc 1927;22:209-12; Newcombe RG &
    Altman DG, *Statistics with confidence* 2nd edn 2000, pp 46-8; Fingertips PH methods.

    Missing x or n gives an NA row. Raises :class:`StatsInputError` when x < 0, n ≤ 0 or x > n.
    """
    levels = normalise_confidence(confidence)
    frame, keys = frame_of(data, by, numerator=x, denominator=n)
    out = group_sum(frame, keys, ["numerator", "denominator"])
    xs = out["numerator"].to_numpy(dtype=float)
    ns = out["denominator"].to_numpy(dtype=float)
    check_non_negative(xs, "numerators")
    check_positive(ns, "denominators")
    bad = np.flatnonzero(xs > ns)
    if bad.size:
        raise StatsInputError(
            "numerator must be less than or equal to denominator for a proportion "
            f"(row {int(bad[0])}: {xs[bad[0]]:g} > {ns[bad[0]]:g})"
        )
    out["value"] = scaled_quotient(xs, ns, multiplier)
    add_limits(
        out,
        levels,
        ((lo * multiplier, hi * multiplier) for lo, hi in (wilson(xs, ns, c) for c in levels)),
    )
    if multiplier == 1:
        statistic = "proportion of 1"
    elif multiplier == 100:
        statistic = "percentage"
    else:
        statistic = f"proportion of {multiplier_text(multiplier)}"
    method = np.where(np.isnan(xs + ns), None, "Wilson").astype(object)
    return finish(out, levels, statistic, method)


def rate(
    x: Any,
    n: Any,
    multiplier: float = 100000,
    *,
    confidence: float | Sequence[float] = DEFAULT_CONFIDENCE,
    data: pd.DataFrame | None = None,
    by: str | Sequence[str] | None = None,
) -> pd.DataFrame:
    """Crude rate x/n × multiplier with Poisson confidence limits, one row per group.

    Limits: exact Poisson (χ² form, Garwood 1936) when the count is below 10, Byar's
    approximation otherwise (Breslow & Day 1987) — the Fingertips rule. ``method`` says
    which was used ("Exact" or "Byars") on each row.

    Missing x or n gives an NA row. Raises :class:`StatsInputError` when x < 0 or n ≤ 0.
    """
    levels = normalise_confidence(confidence)
    frame, keys = frame_of(data, by, numerator=x, denominator=n)
    out = group_sum(frame, keys, ["numerator", "denominator"])
    xs = out["numerator"].to_numpy(dtype=float)
    ns = out["denominator"].to_numpy(dtype=float)
    check_non_negative(xs, "numerators")
    check_positive(ns, "denominators")
    out["value"] = scaled_quotient(xs, ns, multiplier)
    method = None
    limits = []
    for c in levels:
        lo, hi, method = poisson_limits(xs, c)
        with np.errstate(invalid="ignore", divide="ignore"):
            limits.append((lo / ns * multiplier, hi / ns * multiplier))
    add_limits(out, levels, limits)
    method = np.where(np.isnan(ns), None, method).astype(object)
    return finish(out, levels, f"rate per {multiplier_text(multiplier)}", method)


def mean(
    values: Any,
    *,
    confidence: float | Sequence[float] = DEFAULT_CONFIDENCE,
    data: pd.DataFrame | None = None,
    by: str | Sequence[str] | None = None,
) -> pd.DataFrame:
    """Mean of individual values with Student's t confidence limits, one row per group.

    value = x̄; limits x̄ ± t(1 − α/2; n − 1) · s/√n (Student 1908; APHO Technical Briefing 3).
    Output also carries ``value_sum``, ``value_count`` and ``stdev``. A group containing a
    missing value, or with fewer than 2 values, gives NA limits.
    """
    levels = normalise_confidence(confidence)
    frame, keys = frame_of(data, by, values=values)
    v = frame["values"]
    if keys:
        work = frame.assign(__na=v.isna().astype(np.int64))
        g = work.groupby(keys, sort=True, dropna=False, observed=True)
        out = g["values"].agg(["sum", "count", "std"]).reset_index()
        nas = g["__na"].sum().to_numpy()
        out.loc[nas > 0, ["sum", "std"]] = np.nan
        out["count"] = out["count"] + nas
    else:
        out = pd.DataFrame(
            {
                "sum": [v.sum(min_count=1) if not v.isna().any() else np.nan],
                "count": [len(v)],
                "std": [v.std(ddof=1) if not v.isna().any() else np.nan],
            }
        )
    out = out.rename(columns={"sum": "value_sum", "count": "value_count", "std": "stdev"})
    s = out["value_sum"].to_numpy(dtype=float)
    k = out["value_count"].to_numpy(dtype=float)
    sd = out["stdev"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        m = s / k
        out["value"] = m
        limits = []
        for c in levels:
            half = t_value(c, k - 1) * sd / np.sqrt(k)
            limits.append((m - half, m + half))
    add_limits(out, levels, limits)
    method = np.where(np.isnan(s), None, "Student's t-distribution").astype(object)
    return finish(out, levels, "mean", method)
