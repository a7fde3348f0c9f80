"""Funnel-plot control limits and outlier labels (Spiegelhalter 2005; Fingertips PH methods).

Limits sit around the pooled average at 95% (2 s.d., 0.025 in each tail) and 99.8% (3 s.d.,
0.001 in each tail):

* **proportions** — the values of x/n whose Wilson score interval just touches the average P,
  which (Wilson being the inverted score test) is P ± z·√(P(1 − P)/n), z = Φ⁻¹(0.975) or
  Φ⁻¹(0.999), clipped to [0, 1] × multiplier;
* **ratios** (observed/expected counts or ISRs) — for O observed events the limits are
  O / E where E is the exact Poisson (χ²) limit of O (Garwood 1936), so a unit is flagged when
  its exact/Byar's interval for O excludes E;
* **rates** (crude or DSR) — the same Poisson limits applied to events, with the population
  derived as events / average rate; DSR points with fewer than 10 events are not assessed.

``funnel_limits`` returns a 100-point grid of limits for drawing; ``funnel_significance`` labels
each unit "High (0.001)", "High (0.025)", "Low (0.001)", "Low (0.025)" or "Not significant".
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from pophealth.stats._core import (
    StatsInputError,
    check_non_negative,
    column_or_array,
    exact_lower,
    exact_upper,
    multiplier_text,
    poisson_limits,
)

__all__ = ["funnel_limits", "funnel_significance", "proportion_funnel_limits"]

TAIL_95 = 0.025
TAIL_998 = 0.001
NOT_APPLICABLE_DSR = "Not applicable for events less than 10 for dsrs"


def proportion_funnel_limits(
    denominator: Any, average: float, tail: float, multiplier: float = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper funnel limits for proportions at the given denominators.

    P ± Φ⁻¹(1 − tail)·√(P(1 − P)/n), clipped to [0, multiplier] after scaling.
    """
    n = np.asarray(denominator, dtype=float)
    z = stats.norm.ppf(1 - tail)
    half = z * np.sqrt(average * (1 - average) / n)
    lo = np.clip((average - half) * multiplier, 0, multiplier)
    hi = np.clip((average + half) * multiplier, 0, multiplier)
    return lo, hi


def _pooled(x: np.ndarray, den: np.ndarray) -> float:
    """Pooled average Σx/Σn over the units that have both values (a unit missing its
    numerator must not leave its denominator in the average)."""
    both = ~(np.isnan(x) | np.isnan(den))
    return float(x[both].sum() / den[both].sum())


def _check_proportions(x: np.ndarray, n: np.ndarray) -> None:
    bad = np.flatnonzero(n <= 0)
    if bad.size:
        raise StatsInputError(
            f"denominators must be greater than zero (row {int(bad[0])}: {n[bad[0]]:g})"
        )
    bad = np.flatnonzero(x > n)
    if bad.size:
        raise StatsInputError(
            "numerators must be less than or equal to denominator for a proportion statistic "
            f"(row {int(bad[0])}: {x[bad[0]]:g} > {n[bad[0]]:g})"
        )


def _digits(v: float) -> int:
    return len(str(int(v)))


def _floor_neat(v: float, down: float = 0.95) -> float:
    """Round down to one significant figure below 95% of v (axis start)."""
    if v == 0:
        return 0.0
    k = _digits(math.floor(v * down)) - 1
    return math.floor(v * down / 10**k) * 10**k


def _ceiling_neat(v: float, up: float = 1.05) -> float:
    """Round up to two significant figures above 105% of v (axis end)."""
    if v == 0:
        return 0.0
    k = max(_digits(math.ceil(v * up)) - 2, 0)
    return math.ceil(v * up / 10**k) * 10**k


def _grid(start: float, stop: float, points: int, offset: int) -> np.ndarray:
    """Geometric grid of whole numbers from ``start`` to ``stop`` (at least +1 per step)."""
    out = [max(1.0, start)]
    for j in range(2, points + 1):
        prev = out[-1]
        step = (stop / prev) ** (1 / (points + 1 - (j - offset))) * prev
        out.append(max(float(np.round(step)), prev + 1))
    return np.array(out)


def _derived_denominator(
    x: np.ndarray,
    n: np.ndarray | None,
    r: np.ndarray | None,
    rate_type: str,
    multiplier: float,
) -> np.ndarray:
    if rate_type == "dsr":
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(x == 0, np.nan, multiplier * x / r)
    if rate_type == "crude":
        if n is not None:
            return n
        return multiplier * x / r
    raise StatsInputError("rate_type must be 'dsr' or 'crude'")


def funnel_limits(
    numerator: Any,
    denominator: Any = None,
    *,
    data: pd.DataFrame | None = None,
    statistic: str = "proportion",
    multiplier: float | None = None,
    ratio_type: str | None = None,
    rate: Any = None,
    rate_type: str | None = None,
    years_of_data: float | None = None,
    points: int = 100,
) -> pd.DataFrame:
    """Control limits for a funnel plot on a ``points``-long grid spanning the data.

    ``statistic``: "proportion" (``numerator``/``denominator``; default multiplier 100),
    "ratio" (``numerator`` observed, ``denominator`` expected; ``ratio_type`` "count" gives
    O/E − 1 (relative excess, baseline 0), "isr" gives O/E × 100 (baseline 100)) or "rate"
    (``numerator`` events, ``rate`` the rate per ``multiplier``, optional ``denominator``
    population, ``rate_type`` "crude" or "dsr", ``years_of_data`` to express populations per year).

    Returns columns: the x-axis (``population`` for proportions, ``observed_events`` for
    ratios, ``events`` for rates; plus ``expected_events``/``population_1_year`` columns for
    where each limit sits), ``lower_2s_limit``, ``upper_2s_limit`` (95%), ``lower_3s_limit``,
    ``upper_3s_limit`` (99.8%), ``baseline`` and ``statistic``.
    """
    x = column_or_array(data, numerator, "numerator")
    n = column_or_array(data, denominator, "denominator") if denominator is not None else None
    check_non_negative(x, "numerators")
    if statistic == "proportion":
        if n is None:
            raise StatsInputError("proportion funnels need numerator and denominator")
        _check_proportions(x, n)
        mult = 100 if multiplier is None else multiplier
        av = _pooled(x, n)
        lo_n, hi_n = np.nanmin(n), np.nanmax(n)
        start = 0 if hi_n > 2 * lo_n else _floor_neat(lo_n)
        grid = _grid(start, _ceiling_neat(hi_n), points, offset=0)
        out = pd.DataFrame({"population": grid})
        for tail, lab in ((TAIL_95, "2s"), (TAIL_998, "3s")):
            lo, hi = proportion_funnel_limits(grid, av, tail, mult)
            out[f"lower_{lab}_limit"] = lo
            out[f"upper_{lab}_limit"] = hi
        out["baseline"] = av * mult
        out["statistic"] = "proportion"
        return out
    if statistic == "ratio":
        if n is None:
            raise StatsInputError(
                "ratio funnels need numerator (observed) and denominator (expected)"
            )
        if ratio_type not in ("count", "isr"):
            raise StatsInputError("ratio_type must be 'count' or 'isr'")
        # "isr": O/E x 100 around 100; "count": O/E - 1 (relative excess) around 0, as the
        # Fingertips funnel tool reports them
        scale = 100 if ratio_type == "isr" else 1
        shift = 0.0 if ratio_type == "isr" else -1.0
        lo_n, hi_n = np.nanmin(n), np.nanmax(n)
        start = 0 if hi_n > 2 * lo_n else _floor_neat(lo_n)
        grid = _grid(start, _ceiling_neat(hi_n), points, offset=1)
        out = pd.DataFrame({"observed_events": grid})
        for c, lab in ((0.95, "2s"), (0.998, "3s")):
            e_hi = exact_upper(grid, c)
            e_lo = exact_lower(grid, c)
            out[f"lower_{lab}_expected_events"] = e_hi
            out[f"lower_{lab}_limit"] = grid / e_hi * scale + shift
            out[f"upper_{lab}_expected_events"] = e_lo
            out[f"upper_{lab}_limit"] = grid / e_lo * scale + shift
        out["baseline"] = 100.0 if ratio_type == "isr" else 0.0
        out["statistic"] = f"ratio ({ratio_type})"
        return out
    if statistic == "rate":
        if rate is None or multiplier is None or years_of_data is None:
            raise StatsInputError("rate funnels need rate=, multiplier= and years_of_data=")
        r = column_or_array(data, rate, "rate")
        rtype = rate_type or "crude"
        den = _derived_denominator(x, n, r, rtype, multiplier)
        av = _pooled(x, den)
        lo_n, hi_n = np.nanmin(den), np.nanmax(den)
        per_year = lo_n / years_of_data
        start = 0.0 if hi_n > 2 * lo_n else _floor_neat(per_year) * years_of_data
        stop = _ceiling_neat(hi_n / years_of_data) * years_of_data
        grid = _grid(math.floor(start * av), math.ceil(stop * av), points, offset=0)
        out = pd.DataFrame({"events": grid})
        for c, lab in ((0.95, "2s"), (0.998, "3s")):
            pop_lo = exact_upper(grid, c) / av
            pop_hi = exact_lower(grid, c) / av
            out[f"lower_{lab}_population_1_year"] = pop_lo / years_of_data
            out[f"lower_{lab}_limit"] = grid / pop_lo * multiplier
            out[f"upper_{lab}_population_1_year"] = pop_hi / years_of_data
            out[f"upper_{lab}_limit"] = grid / pop_hi * multiplier
        out["baseline"] = av * multiplier
        out["statistic"] = f"rate ({rtype} per {multiplier_text(multiplier)})"
        return out
    raise StatsInputError("statistic must be 'proportion', 'ratio' or 'rate'")


def funnel_significance(
    numerator: Any,
    denominator: Any = None,
    *,
    data: pd.DataFrame | None = None,
    statistic: str = "proportion",
    rate: Any = None,
    rate_type: str | None = None,
    multiplier: float | None = None,
) -> pd.Series:
    """Label each unit against the funnel: High/Low (0.001), High/Low (0.025), Not significant.

    Proportions: x/n against P ± z·√(P(1 − P)/n) with P the pooled average. Ratios: the
    exact (O < 10) or Byar's (O ≥ 10) 95%/99.8% limits of O divided by E compared with 1.
    Rates: the same Poisson limits of the events divided by the (derived) population compared
    with the pooled average rate; DSRs with fewer than 10 events are "Not applicable ...".
    Units with a missing numerator or denominator get no label (None) and are left out of the
    pooled average.
    """
    x = column_or_array(data, numerator, "numerator")
    n = column_or_array(data, denominator, "denominator") if denominator is not None else None
    check_non_negative(x, "numerators")
    if n is not None and np.any(n <= 0):
        raise StatsInputError("denominators must be greater than zero")
    labels = np.full(len(x), "Not significant", dtype=object)
    if statistic == "proportion":
        if n is None:
            raise StatsInputError("proportion funnels need numerator and denominator")
        _check_proportions(x, n)
        av = _pooled(x, n)
        p = x / n
        lo2, hi2 = proportion_funnel_limits(n, av, TAIL_95, 1)
        lo3, hi3 = proportion_funnel_limits(n, av, TAIL_998, 1)
        # precedence as in the Fingertips tool: low 0.001, low 0.025, high 0.001, high 0.025
        labels = np.select(
            [p < lo3, p < lo2, p > hi3, p > hi2],
            ["Low (0.001)", "Low (0.025)", "High (0.001)", "High (0.025)"],
            "Not significant",
        ).astype(object)
        labels[np.isnan(p)] = None  # a unit missing a count is not assessed
    elif statistic in ("ratio", "rate"):
        if statistic == "ratio":
            if n is None:
                raise StatsInputError("ratio funnels need observed and expected counts")
            den = n
            target = np.ones(len(x))
        else:
            if rate is None or multiplier is None:
                raise StatsInputError("rate funnels need rate= and multiplier=")
            r = column_or_array(data, rate, "rate")
            rtype = rate_type or "crude"
            den = _derived_denominator(x, n, r, rtype, multiplier)
            if rtype == "crude" and n is not None:
                den = np.where(x == 0, n, multiplier * x / np.where(r == 0, np.nan, r))
            target = np.full(len(x), _pooled(x, den))
        lo3, hi3, _ = poisson_limits(x, 0.998)
        lo2, hi2, _ = poisson_limits(x, 0.95)
        with np.errstate(invalid="ignore", divide="ignore"):
            labels = np.select(
                [target < lo3 / den, target < lo2 / den, target > hi3 / den, target > hi2 / den],
                ["High (0.001)", "High (0.025)", "Low (0.001)", "Low (0.025)"],
                "Not significant",
            ).astype(object)
        # a unit missing its count, denominator or rate is not assessed (not "Not significant")
        labels[np.isnan(x) | np.isnan(den)] = None
        if statistic == "rate" and (rate_type or "crude") == "dsr":
            labels[x < 10] = NOT_APPLICABLE_DSR
    else:
        raise StatsInputError("statistic must be 'proportion', 'ratio' or 'rate'")
    index = data.index if data is not None else None
    return pd.Series(labels, index=index, name="significance")
