"""Statistical process control per NHS England "Making Data Count" (MDC).

XmR charts (:func:`xmr`) and p-charts for proportions with varying denominators
(:func:`p_chart`), with the MDC special-cause rules in precedence order:

1. a point **outside a process limit**;
2. a **trend**: ``trend_length`` (7) consecutive points all rising or all falling;
3. **two of three** consecutive points beyond the near-limit band (2σ, inside the limits)
   on the same side of the mean;
4. a **shift**: ``shift_length`` (7) consecutive points on the same side of the mean.

XmR: centre = mean; mR = |yₜ − yₜ₋₁|; limits = mean ± 2.66·mean(mR); near limits
mean ± (2/3)·2.66·mean(mR) (Wheeler DJ, *Understanding variation*, 1993; NHS England,
*Making Data Count*, 2019). By default moving ranges above 3.267·mean(mR) are screened out
before the limits are computed, as in NHSRplotthedots (R, nhs-r-community; used only as an
oracle); ``screen_outliers=False`` gives the MDC Excel tool's unscreened limits.

Each point is then classified, using the improvement direction ("up", "down", "neutral"),
as ``common_cause``, ``special_cause_improvement``, ``special_cause_concern`` or
``special_cause_neutral_high``/``_low`` — by the side of the mean the flagged point lies on
(NHSRplotthedots' rule, except that it calls neutral points below the mean "high"). The
**variation** icon is the type of the last point; the **assurance** icon compares a target
with the last period's limits: consistently passing (target outside the limits on the failing
side), consistently failing, or "inconsistent" (hit and miss). Limits can be frozen after
``fix_after_n_points`` and recalculated from each declared ``rebase`` point; periods of fewer
than 12 points carry a trial-limits warning.

**Withheld points.** Values must all be present; a caller whose count for a period is
withheld (disclosure control) leaves that period out. The points either side of it are then
neighbours: a trend, shift or two-of-three run can span the withheld period, whatever its
value was; the p-chart centre line is Σx/Σn of the released periods only, and an XmR moving
range is taken across the gap. :func:`pophealth.charts.spc_chart` can mark such periods
(``withheld=``) so the chart and its data table show them as [c].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

__all__ = ["SPCResult", "xmr", "p_chart", "LIMIT", "NEAR_LIMIT", "SCREEN"]

LIMIT = 2.66  # 3 / d2, d2 = 1.128 for moving ranges of 2
NEAR_LIMIT = 2 * LIMIT / 3  # ≈ 2 sigma
SCREEN = 3.267  # D4 for n = 2: upper limit of the moving-range chart
MIN_POINTS_FOR_LIMITS = 12

Direction = Literal["up", "down", "neutral"]
_DIRECTIONS = {"up": 1, "increase": 1, "down": -1, "decrease": -1, "neutral": 0}


@dataclass
class SPCResult:
    """The chart data plus the two MDC icons.

    ``data`` has one row per point: ``x``, ``y``, ``period`` (rebase period), ``mean``,
    ``lpl``/``upl`` (process limits), ``nlpl``/``nupl`` (near limits), ``relative_to_mean``
    (−1/0/1), ``outside_limits``, ``close_to_limits``, rule flags ``rule_outside``,
    ``rule_trend``, ``rule_two_in_three``, ``rule_shift``, ``rule`` (first rule that fired, in
    precedence order) and ``point_type``.
    """

    data: pd.DataFrame
    improvement: str
    target: float | None
    variation: str
    assurance: str | None
    warnings: list[str] = field(default_factory=list)
    chart: str = "xmr"


def _runs(flags: np.ndarray, min_len: int) -> np.ndarray:
    """True where a point belongs to a run of ≥ min_len equal non-zero values of ``flags``."""
    out = np.zeros(len(flags), dtype=bool)
    start = 0
    for i in range(1, len(flags) + 1):
        if i == len(flags) or flags[i] != flags[start]:
            if flags[start] != 0 and i - start >= min_len:
                out[start:i] = True
            start = i
    return out


def _trend(y: np.ndarray, length: int) -> np.ndarray:
    """True where a point is part of ``length`` consecutive strictly rising or falling points."""
    out = np.zeros(len(y), dtype=bool)
    if len(y) < length:
        return out
    steps = np.sign(np.diff(y))
    start = 0
    for i in range(1, len(steps) + 1):
        if i == len(steps) or steps[i] != steps[start]:
            if steps[start] != 0 and i - start >= length - 1:
                out[start : i + 1] = True
            start = i
    return out


def _k_of_m(close: np.ndarray, side: np.ndarray, k: int, m: int) -> np.ndarray:
    """Close-to-limit points in a window of m consecutive points (all on one side of the mean)
    holding at least k close-to-limit points."""
    n = len(close)
    hit = np.zeros(n, dtype=bool)
    for s in range(0, max(n - m + 1, 0)):
        w = slice(s, s + m)
        if close[w].sum() >= k and abs(side[w].sum()) == m:
            hit[w] |= close[w]
    return hit


def _classify(
    frame: pd.DataFrame, direction: int, trend_length: int, shift_length: int, k: int, m: int
) -> pd.DataFrame:
    parts = []
    for _, seg in frame.groupby("period", sort=True):
        y = seg["y"].to_numpy(dtype=float)
        side = seg["relative_to_mean"].to_numpy()
        close = seg["close_to_limits"].to_numpy()
        seg = seg.copy()
        seg["rule_outside"] = seg["outside_limits"].to_numpy()
        seg["rule_trend"] = _trend(y, trend_length)
        seg["rule_two_in_three"] = _k_of_m(close, side, k, m)
        seg["rule_shift"] = _runs(side, shift_length)
        parts.append(seg)
    out = pd.concat(parts) if parts else frame
    rules = ["rule_outside", "rule_trend", "rule_two_in_three", "rule_shift"]
    names = np.array(["outside_limits", "trend", "two_in_three", "shift"], dtype=object)
    flags = out[rules].to_numpy(dtype=bool)
    special = flags.any(axis=1)
    first = np.where(special, names[np.argmax(flags, axis=1)], None)
    out["rule"] = first
    side = out["relative_to_mean"].to_numpy()
    if direction == 0:
        kind = np.where(side > 0, "special_cause_neutral_high", "special_cause_neutral_low")
    else:
        kind = np.where(side == direction, "special_cause_improvement", "special_cause_concern")
    out["point_type"] = np.where(special, kind, "common_cause")
    return out


def _periods(x: pd.Series, rebase: Sequence[Any] | None) -> np.ndarray:
    period = np.zeros(len(x), dtype=int)
    if rebase:
        for r in rebase:
            hits = np.flatnonzero(x.to_numpy() == r)
            if hits.size == 0:
                raise ValueError(f"rebase point {r!r} is not one of the x values")
            period[hits[0] :] += 1
    return period


def _assurance(last: pd.Series, target: float | None, direction: int) -> str | None:
    if target is None or direction == 0 or pd.isna(target):
        return None
    above = target > last["upl"]
    below = target < last["lpl"]
    if direction == 1:
        return "consistent_pass" if below else "consistent_fail" if above else "inconsistent"
    return "consistent_pass" if above else "consistent_fail" if below else "inconsistent"


def _prepare(values: Any, x: Any) -> pd.DataFrame:
    y = pd.to_numeric(pd.Series(np.asarray(values, dtype=object)), errors="coerce")
    bad = ~np.isfinite(y.to_numpy(dtype=float))
    if bad.any():
        raise ValueError(
            f"SPC values must all be finite numbers; missing, infinite or non-numeric at "
            f"position {int(np.flatnonzero(bad)[0])}"
        )
    xs = pd.Series(range(len(y))) if x is None else pd.Series(np.asarray(x))
    if len(xs) != len(y):
        raise ValueError("x and values must have the same length")
    frame = pd.DataFrame({"x": xs, "y": y.to_numpy(dtype=float)})
    return frame.sort_values("x", kind="stable").reset_index(drop=True)


def _check_options(
    fix_after_n_points: int | None,
    trend_length: int,
    shift_length: int,
    two_in_three: tuple[int, int],
) -> None:
    """Refuse settings that would silently give no limits or flag every point."""
    if fix_after_n_points is not None and not (
        int(fix_after_n_points) == fix_after_n_points and fix_after_n_points >= 2
    ):
        raise ValueError(
            "fix_after_n_points must be a whole number of 2 or more (limits need at least one "
            f"moving range; got {fix_after_n_points!r})"
        )
    for name, v in (("trend_length", trend_length), ("shift_length", shift_length)):
        if int(v) != v or v < 2:
            raise ValueError(f"{name} must be a whole number of 2 or more (got {v!r})")
    k, m = two_in_three
    if not (int(k) == k and int(m) == m and 1 <= k <= m):
        raise ValueError(f"two_in_three must be (k, m) with 1 <= k <= m (got {two_in_three!r})")


def _finish(
    frame: pd.DataFrame,
    improvement: str,
    target: float | None,
    trend_length: int,
    shift_length: int,
    two_in_three: tuple[int, int],
    fix_after_n_points: int | None,
    chart: str,
) -> SPCResult:
    direction = _DIRECTIONS.get(improvement)
    if direction is None:
        raise ValueError("improvement must be 'up', 'down' or 'neutral'")
    y = frame["y"].to_numpy()
    frame["relative_to_mean"] = np.sign(y - frame["mean"].to_numpy()).astype(int)
    frame["outside_limits"] = (y > frame["upl"]) | (y < frame["lpl"])
    frame["close_to_limits"] = ~frame["outside_limits"] & (
        (y < frame["nlpl"]) | (y > frame["nupl"])
    )
    k, m = two_in_three
    frame = _classify(frame, direction, trend_length, shift_length, k, m)
    warnings = []
    sizes = frame.groupby("period").size()
    if fix_after_n_points is not None and fix_after_n_points < MIN_POINTS_FOR_LIMITS:
        warnings.append(
            f"limits fixed after {fix_after_n_points} points (< {MIN_POINTS_FOR_LIMITS}): "
            "treat them as trial limits"
        )
    short = sizes[sizes < MIN_POINTS_FOR_LIMITS]
    for p, sz in short.items():
        warnings.append(
            f"period {p} has {sz} points (< {MIN_POINTS_FOR_LIMITS}): limits are trial limits"
        )
    last = frame.iloc[-1]
    return SPCResult(
        data=frame.reset_index(drop=True),
        improvement=improvement,
        target=target,
        variation=str(last["point_type"]),
        assurance=_assurance(last, target, direction),
        warnings=warnings,
        chart=chart,
    )


def xmr(
    values: Any,
    x: Any = None,
    *,
    improvement: Direction = "up",
    target: float | None = None,
    rebase: Sequence[Any] | None = None,
    fix_after_n_points: int | None = None,
    screen_outliers: bool = True,
    trend_length: int = 7,
    shift_length: int = 7,
    two_in_three: tuple[int, int] = (2, 3),
) -> SPCResult:
    """XmR (individuals) chart with Making Data Count rules; see the module docstring.

    ``x`` (dates or periods) orders the points (default 0, 1, …). ``rebase`` lists x values at
    which a new period with its own limits starts. ``fix_after_n_points`` computes the mean and
    moving ranges from the first n points of each period only. ``screen_outliers`` drops moving
    ranges above 3.267·mean(mR) before the limits (NHSRplotthedots default; MDC Excel: off).
    """
    _check_options(fix_after_n_points, trend_length, shift_length, two_in_three)
    frame = _prepare(values, x)
    frame["period"] = _periods(frame["x"], rebase)
    for col in ("mean", "amr", "lpl", "upl", "nlpl", "nupl"):
        frame[col] = np.nan
    for _, idx in frame.groupby("period").groups.items():
        y = frame.loc[idx, "y"].to_numpy()
        base = y[:fix_after_n_points] if fix_after_n_points else y
        centre = base.mean()
        mr = np.abs(np.diff(base))
        amr = mr.mean() if mr.size else np.nan
        if screen_outliers and mr.size:
            kept = mr[mr < SCREEN * amr]
            amr = kept.mean() if kept.size else amr
        frame.loc[idx, "mean"] = centre
        frame.loc[idx, "amr"] = amr
        frame.loc[idx, "lpl"] = centre - LIMIT * amr
        frame.loc[idx, "upl"] = centre + LIMIT * amr
        frame.loc[idx, "nlpl"] = centre - NEAR_LIMIT * amr
        frame.loc[idx, "nupl"] = centre + NEAR_LIMIT * amr
    return _finish(
        frame, improvement, target, trend_length, shift_length, two_in_three,
        fix_after_n_points, "xmr",
    )  # fmt: skip


def p_chart(
    numerator: Any,
    denominator: Any,
    x: Any = None,
    *,
    improvement: Direction = "up",
    target: float | None = None,
    rebase: Sequence[Any] | None = None,
    fix_after_n_points: int | None = None,
    multiplier: float = 1,
    trend_length: int = 7,
    shift_length: int = 7,
    two_in_three: tuple[int, int] = (2, 3),
) -> SPCResult:
    """p-chart for proportions with varying denominators (Montgomery DC, *Introduction to
    statistical quality control*, ch. 7).

    Centre p̄ = Σx/Σn per period (first ``fix_after_n_points`` points if given); σᵢ =
    √(p̄(1 − p̄)/nᵢ); limits p̄ ± 3σᵢ and near limits p̄ ± 2σᵢ, clipped to [0, 1]; values and
    limits are scaled by ``multiplier`` (100 for percentages). The same MDC rules apply.
    """
    _check_options(fix_after_n_points, trend_length, shift_length, two_in_three)
    num = np.asarray(numerator, dtype=float)
    den = np.asarray(denominator, dtype=float)
    if num.shape != den.shape:
        raise ValueError("numerator and denominator must have the same length")
    if np.any(den <= 0) or np.any(num < 0) or np.any(num > den):
        raise ValueError("p-chart needs 0 <= numerator <= denominator and denominator > 0")
    frame = _prepare(num / den, x)
    order = np.argsort(np.asarray(x) if x is not None else np.arange(len(num)), kind="stable")
    frame["numerator"] = num[order]
    frame["denominator"] = den[order]
    frame["period"] = _periods(frame["x"], rebase)
    for col in ("mean", "lpl", "upl", "nlpl", "nupl"):
        frame[col] = np.nan
    for _, idx in frame.groupby("period").groups.items():
        sub = frame.loc[idx]
        base = sub.iloc[:fix_after_n_points] if fix_after_n_points else sub
        pbar = base["numerator"].sum() / base["denominator"].sum()
        sigma = np.sqrt(pbar * (1 - pbar) / sub["denominator"].to_numpy())
        frame.loc[idx, "mean"] = pbar
        frame.loc[idx, "lpl"] = np.clip(pbar - 3 * sigma, 0, 1)
        frame.loc[idx, "upl"] = np.clip(pbar + 3 * sigma, 0, 1)
        frame.loc[idx, "nlpl"] = np.clip(pbar - 2 * sigma, 0, 1)
        frame.loc[idx, "nupl"] = np.clip(pbar + 2 * sigma, 0, 1)
    for col in ("y", "mean", "lpl", "upl", "nlpl", "nupl"):
        frame[col] = frame[col] * multiplier
    return _finish(
        frame, improvement, target, trend_length, shift_length, two_in_three,
        fix_after_n_points, "p",
    )  # fmt: skip
