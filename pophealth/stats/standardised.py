"""Directly and indirectly standardised rates and ratios.

* :func:`dsr` — directly standardised rate with Dobson confidence limits (Dobson A et al.,
  Stat Med 1991;10:457-62) built on Byar's limits for the total count (Breslow & Day 1987),
  European Standard Population 2013 by default (Eurostat 2013, 19 five-year bands to 90+),
  optional adjustment for non-independent events (Fingertips Public Health Technical Guidance,
  DSR chapter).
* :func:`isratio` / :func:`isr` — indirectly standardised ratio (SMR-type) and rate, with
  exact Poisson limits on the observed count below 10 events and Byar's otherwise.

Values are checked against the worked examples in PROGRAMMES.md §12.3 (the national reference
package PHEindicatormethods is an oracle only).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from pophealth.stats._core import (
    DEFAULT_CONFIDENCE,
    StatsInputError,
    add_limits,
    byars_lower,
    byars_upper,
    check_non_negative,
    check_positive,
    column_or_array,
    finish,
    frame_of,
    multiplier_text,
    normalise_confidence,
    poisson_limits,
)

__all__ = ["ESP2013", "ESP2013_BANDS", "dsr", "isratio", "isr"]

#: European Standard Population 2013, 19 bands 0-4, 5-9, ..., 85-89, 90+ (sum 100,000).
#: Source: Eurostat, *Revision of the European Standard Population* (2013), table 2 as
#: published by ONS and bundled in PHEindicatormethods (data/esp2013.rda).
ESP2013: np.ndarray = np.array(
    [5000, 5500, 5500, 5500, 6000, 6000, 6500, 7000, 7000, 7000,
     7000, 6500, 6000, 5500, 5000, 4000, 2500, 1500, 1000],
    dtype=float,
)  # fmt: skip
ESP2013.setflags(write=False)

#: Labels of the ESP2013 bands, in the order of :data:`ESP2013`.
ESP2013_BANDS: tuple[str, ...] = tuple(f"{a}-{a + 4}" for a in range(0, 90, 5)) + ("90+",)

#: fewer events than this and a directly standardised rate is not worked out (PHE rule)
MIN_DSR_EVENTS = 10
_LEADING_NUMBER = re.compile(r"\d+")


def _band_order(labels: Any) -> np.ndarray:
    """Start age of each age-band label, for ordering: 0 for '0-4', 5 for '5-9', 90 for '90+'.

    Labels may be numbers (start ages or band codes) or text beginning with the start age, as
    the ESP2013 labels do. Sorting the labels as text would put '10-14' before '5-9'.
    """
    values = np.asarray(labels, dtype=object)
    out = np.empty(len(values))
    for i, v in enumerate(values):
        m = None if v is None else _LEADING_NUMBER.search(str(v))
        if m is None:
            raise StatsInputError(
                f"ageband (row {i}: {v!r}) must be a start age or a band label beginning with "
                "one, e.g. '0-4', '5-9', ..., '90+'"
            )
        out[i] = float(m.group())
    return out


def _group_codes(frame: pd.DataFrame, keys: list[str]) -> tuple[np.ndarray, pd.DataFrame]:
    """Integer group code per row and the table of distinct keys (sorted)."""
    if not keys:
        return np.zeros(len(frame), dtype=np.int64), pd.DataFrame(index=[0])
    g = frame.groupby(keys, sort=True, dropna=False, observed=True)
    codes = g.ngroup().to_numpy(dtype=np.int64)
    return codes, g.size().reset_index()[keys]


def _sum_by(codes: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    return np.bincount(codes, weights=values, minlength=size)


def _any_nan_by(codes: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    return np.bincount(codes, weights=np.isnan(values).astype(float), minlength=size) > 0


def _default_stdpop(codes: np.ndarray, order_key: np.ndarray | None) -> np.ndarray:
    """Assign ESP2013 weights by position (or by ``order_key``) within each group."""
    n_rows = len(codes)
    if order_key is None:
        order = np.argsort(codes, kind="stable")
    else:
        order = np.lexsort((order_key, codes))
    sorted_codes = codes[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_codes)) + 1]
    counts = np.diff(np.r_[starts, n_rows])
    if np.any(counts != len(ESP2013)):
        bad = int(np.flatnonzero(counts != len(ESP2013))[0])
        raise StatsInputError(
            "stdpop not given, so each group needs exactly the 19 ESP2013 age bands "
            f"(0-4 ... 90+) in ascending order; group {bad} has {int(counts[bad])} rows"
        )
    pos = np.arange(n_rows) - np.repeat(starts, counts)
    w = np.empty(n_rows)
    w[order] = ESP2013[pos]
    return w


def dsr(
    x: Any,
    n: Any,
    stdpop: Any = None,
    *,
    data: pd.DataFrame | None = None,
    by: str | Sequence[str] | None = None,
    multiplier: float = 100000,
    confidence: float | Sequence[float] = DEFAULT_CONFIDENCE,
    independent_events: bool = True,
    eventfreq: Any = None,
    ageband: Any = None,
) -> pd.DataFrame:
    """Directly standardised rate with Dobson confidence limits, one row per group.

    Rows are standardisation categories (age bands) within groups (``by``). ``stdpop`` is the
    standard population per row (a column name, or an array); when omitted, the European
    Standard Population 2013 is assigned in order, so each group must hold the 19 ESP2013 bands
    (0-4 … 90+) in ascending order — sorted by the start age that begins each ``ageband``
    label when given ('5-9' before '10-14'). A negative standard population is refused.

    DSR = Σ(xᵢ·wᵢ/nᵢ) / Σwᵢ × multiplier; var(DSR) = Σ(xᵢ·(wᵢ/nᵢ)²) / (Σwᵢ)²;
    limits = DSR + √(var/O)·(Byar(O) − O) × multiplier with O the total count (Dobson et al.
    1991; Breslow & Day 1987). When the total count is below 10 the DSR is not published: the
    row is NA and ``reason`` says why.

    Non-independent events (``independent_events=False``): each row gives the number of unique
    individuals (``x``) who had ``eventfreq`` events in that ``ageband``. The DSR uses the
    events (x·f); the variance uses Σ x·f²·(w/n)² (Fingertips technical guidance, DSR chapter),
    so limits widen when people have repeated events. A missing count or frequency in any row
    makes the group NA (not a count of 0).
    """
    levels = normalise_confidence(confidence)
    frame, keys = frame_of(data, by, x=x, n=n)
    if stdpop is not None:
        frame["w"] = column_or_array(data, stdpop, "stdpop") * np.ones(len(frame))
    if not independent_events:
        if eventfreq is None or ageband is None:
            raise StatsInputError(
                "independent_events=False needs eventfreq= (events per person) and ageband="
            )
        frame["f"] = column_or_array(data, eventfreq, "eventfreq")
        frame["ageband"] = (
            data[ageband].to_numpy() if isinstance(ageband, str) and data is not None else ageband
        )
    elif ageband is not None:
        frame["ageband"] = (
            data[ageband].to_numpy() if isinstance(ageband, str) and data is not None else ageband
        )

    xs = frame["x"].to_numpy(dtype=float)
    ns = frame["n"].to_numpy(dtype=float)
    check_non_negative(xs, "numerators")
    check_positive(ns, "denominators")

    if not independent_events:
        fs = frame["f"].to_numpy(dtype=float)
        check_positive(fs, "event frequencies")
        frame["events"] = xs * fs
        frame["f2x"] = xs * fs * fs
        # a missing count or frequency makes its band missing (a plain sum would read it as 0)
        frame["missing"] = np.isnan(xs * fs * ns)
        agg: dict[str, tuple[str, str]] = {
            "x": ("events", "sum"),
            "v": ("f2x", "sum"),
            "n": ("n", "first"),
            "missing": ("missing", "max"),
        }
        if "w" in frame:
            agg["w"] = ("w", "first")
        frame = frame.groupby(keys + ["ageband"], sort=True, dropna=False).agg(**agg).reset_index()
        frame.loc[frame["missing"].astype(bool), ["x", "v"]] = np.nan
        xs = frame["x"].to_numpy(dtype=float)
        ns = frame["n"].to_numpy(dtype=float)
        var_weight = frame["v"].to_numpy(dtype=float)
    else:
        var_weight = xs

    codes, out = _group_codes(frame, keys)
    size = len(out)
    if "w" in frame:
        ws = frame["w"].to_numpy(dtype=float)
    else:
        order_key = None
        if "ageband" in frame:
            order_key = _band_order(frame["ageband"].to_numpy())
        ws = _default_stdpop(codes, order_key)
    check_non_negative(ws, "standard populations")

    missing = _any_nan_by(codes, xs + ns + ws, size)
    total_x = _sum_by(codes, np.nan_to_num(xs), size)
    total_n = _sum_by(codes, np.nan_to_num(ns), size)
    sum_w = _sum_by(codes, np.nan_to_num(ws), size)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.nan_to_num(ws / ns)
        num = _sum_by(codes, np.nan_to_num(xs) * ratio, size)
        var = _sum_by(codes, np.nan_to_num(var_weight) * ratio**2, size) / sum_w**2
        raw = num / sum_w
    total_x[missing] = np.nan
    total_n[missing] = np.nan
    suppressed = ~missing & (total_x < MIN_DSR_EVENTS)
    raw[missing | suppressed] = np.nan

    out["total_count"] = total_x
    out["total_pop"] = total_n
    out["value"] = raw * multiplier
    limits = []
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.sqrt(var / total_x)
        for c in levels:
            lo = raw + scale * (byars_lower(total_x, c) - total_x)
            hi = raw + scale * (byars_upper(total_x, c) - total_x)
            lo[np.isnan(raw)] = np.nan
            hi[np.isnan(raw)] = np.nan
            limits.append((lo * multiplier, hi * multiplier))
    add_limits(out, levels, limits)
    method = np.where(np.isnan(raw), None, "Dobson").astype(object)
    res = finish(out, levels, f"dsr per {multiplier_text(multiplier)}", method)
    reason = np.full(size, None, dtype=object)
    reason[missing] = "missing numerator, denominator or standard population"
    reason[suppressed] = "total count is less than 10"
    res["reason"] = reason
    return res


def _expected(
    frame: pd.DataFrame,
    keys: list[str],
    x_ref: Any,
    n_ref: Any,
    data: pd.DataFrame | None,
    refpoptype: str,
) -> tuple[np.ndarray, pd.DataFrame, np.ndarray, np.ndarray]:
    """Observed and expected counts per group, and the reference rate Σx_ref/Σn_ref per group."""
    codes, out = _group_codes(frame, keys)
    size = len(out)
    if refpoptype == "field":
        xr = column_or_array(data, x_ref, "x_ref")
        nr = column_or_array(data, n_ref, "n_ref")
        if len(xr) != len(frame):
            raise StatsInputError("x_ref and n_ref columns must have one value per input row")
        # the reference rate is that of each group's own reference bands
        with np.errstate(invalid="ignore", divide="ignore"):
            ref_rate = _sum_by(codes, np.nan_to_num(xr), size) / _sum_by(
                codes, np.nan_to_num(nr), size
            )
        ref_rate[_any_nan_by(codes, xr + nr, size)] = np.nan
    elif refpoptype == "vector":
        xr_v = np.asarray(x_ref, dtype=float)
        nr_v = np.asarray(n_ref, dtype=float)
        if xr_v.shape != nr_v.shape:
            raise StatsInputError("x_ref and n_ref must have the same length")
        order = np.argsort(codes, kind="stable")
        sorted_codes = codes[order]
        starts = np.r_[0, np.flatnonzero(np.diff(sorted_codes)) + 1]
        counts = np.diff(np.r_[starts, len(codes)])
        if np.any(counts != len(xr_v)):
            raise StatsInputError(
                f"x_ref/n_ref have {len(xr_v)} bands but a group has "
                f"{int(counts[counts != len(xr_v)][0])} rows; give one row per band per group"
            )
        pos = np.arange(len(codes)) - np.repeat(starts, counts)
        xr = np.empty(len(codes))
        nr = np.empty(len(codes))
        xr[order] = xr_v[pos]
        nr[order] = nr_v[pos]
        ref_rate = np.full(size, xr_v.sum() / nr_v.sum())  # NaN if any reference value is missing
    else:
        raise StatsInputError("refpoptype must be 'vector' or 'field'")
    check_non_negative(xr, "reference numerators")
    check_positive(nr, "reference denominators")
    ns = frame["n"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        contribution = ns * xr / nr
    expected = _sum_by(codes, np.nan_to_num(contribution), size)
    # a missing population or reference value leaves E unknown (not a band contributing 0)
    expected[_any_nan_by(codes, contribution, size)] = np.nan
    return codes, out, expected, ref_rate


def _indirect(
    x: Any,
    n: Any,
    x_ref: Any,
    n_ref: Any,
    *,
    data: pd.DataFrame | None,
    by: str | Sequence[str] | None,
    refpoptype: str,
    observed_totals: pd.DataFrame | None,
    confidence: float | Sequence[float],
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray, tuple[float, ...], list]:
    levels = normalise_confidence(confidence)
    frame, keys = frame_of(data, by, x=x, n=n)
    check_non_negative(frame["x"].to_numpy(dtype=float), "numerators")
    check_non_negative(frame["n"].to_numpy(dtype=float), "denominators")
    codes, out, expected, ref_rate = _expected(frame, keys, x_ref, n_ref, data, refpoptype)
    size = len(out)
    if observed_totals is not None:
        if not keys:
            raise StatsInputError("observed_totals needs by= grouping columns to join on")
        obs = out[keys].merge(observed_totals, on=keys, how="left")
        value_cols = [c for c in observed_totals.columns if c not in keys]
        if len(value_cols) != 1:
            raise StatsInputError("observed_totals must hold the by columns and one count column")
        observed = obs[value_cols[0]].to_numpy(dtype=float)
    else:
        xs = frame["x"].to_numpy(dtype=float)
        observed = _sum_by(codes, np.nan_to_num(xs), size)
        observed[_any_nan_by(codes, xs, size)] = np.nan
    check_non_negative(observed, "observed counts")
    out["observed"] = observed
    out["expected"] = expected
    # no expected events (a group with no population): O/E is undefined, not infinite
    expected = np.where(expected > 0, expected, np.nan)
    limits = []
    method = None
    for c in levels:
        lo, hi, method = poisson_limits(observed, c)
        limits.append((lo, hi))
    return out, observed, expected, ref_rate, levels, [limits, method]


def isratio(
    x: Any,
    n: Any,
    x_ref: Any,
    n_ref: Any,
    *,
    data: pd.DataFrame | None = None,
    by: str | Sequence[str] | None = None,
    refpoptype: str = "vector",
    refvalue: float = 1,
    observed_totals: pd.DataFrame | None = None,
    confidence: float | Sequence[float] = DEFAULT_CONFIDENCE,
) -> pd.DataFrame:
    """Indirectly standardised ratio O/E × refvalue (e.g. an SMR with refvalue 100).

    E = Σ nᵢ·x_refᵢ/n_refᵢ over the standardisation categories of each group. ``x_ref``/``n_ref``
    are either vectors applied to every group in row order (``refpoptype="vector"``) or columns
    of ``data`` (``"field"``). ``observed_totals`` optionally gives the observed count per group
    (a DataFrame of the ``by`` columns and one count) when events are not known by band.

    Limits: exact Poisson on O (χ² form) when O < 10, Byar's otherwise, divided by E
    (Breslow & Day 1987; Fingertips PH methods).

    A group whose population or reference values are missing, or whose E is 0, gets an NA row.
    """
    out, obs, exp, _, levels, (limits, method) = _indirect(
        x, n, x_ref, n_ref, data=data, by=by, refpoptype=refpoptype,
        observed_totals=observed_totals, confidence=confidence,
    )  # fmt: skip
    with np.errstate(invalid="ignore", divide="ignore"):
        out["value"] = obs / exp * refvalue
        add_limits(out, levels, [(lo / exp * refvalue, hi / exp * refvalue) for lo, hi in limits])
    method = np.where(np.isnan(obs + exp), None, method).astype(object)
    return finish(
        out, levels, f"indirectly standardised ratio x {multiplier_text(refvalue)}", method
    )


def isr(
    x: Any,
    n: Any,
    x_ref: Any,
    n_ref: Any,
    *,
    data: pd.DataFrame | None = None,
    by: str | Sequence[str] | None = None,
    refpoptype: str = "vector",
    multiplier: float = 100000,
    observed_totals: pd.DataFrame | None = None,
    confidence: float | Sequence[float] = DEFAULT_CONFIDENCE,
) -> pd.DataFrame:
    """Indirectly standardised rate: (O/E) × (Σx_ref/Σn_ref) × multiplier.

    Same expected counts and exact/Byar's limits as :func:`isratio`; the ratio and its limits
    are scaled by the crude rate of the reference population (Fingertips PH methods).
    """
    out, obs, exp, ref_rate, levels, (limits, method) = _indirect(
        x, n, x_ref, n_ref, data=data, by=by, refpoptype=refpoptype,
        observed_totals=observed_totals, confidence=confidence,
    )  # fmt: skip
    k = ref_rate * multiplier
    with np.errstate(invalid="ignore", divide="ignore"):
        out["value"] = obs / exp * k
        add_limits(out, levels, [(lo / exp * k, hi / exp * k) for lo, hi in limits])
    method = np.where(np.isnan(obs + exp), None, method).astype(object)
    return finish(
        out, levels, f"indirectly standardised rate per {multiplier_text(multiplier)}", method
    )
