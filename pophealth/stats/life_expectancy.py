"""Life expectancy from an abridged life table (Chiang II) with Silcocks' final-interval variance.

Method, as in the PHE/OHID Life Expectancy Calculator (Fingertips PH methods):

* age bands 0, 1-4, 5-9, …, 85-89, 90+ (widths nᵢ; the last is open);
* aᵢ, the fraction of the interval lived by those who die in it: 0.1 for the first year of
  life, 0.5 otherwise;
* Mᵢ = Dᵢ/Pᵢ; qᵢ = nᵢMᵢ/(1 + nᵢ(1 − aᵢ)Mᵢ), q = 1 in the last band (Chiang CL, *The life
  table and its construction*, 1968; Newell C, *Methods and models in demography*, 1994);
* lᵢ from l₀ = 100,000; Lᵢ = nᵢ(lᵢ₊₁ + aᵢdᵢ), L_ω = l_ω/M_ω; eₓ = Tₓ/lₓ;
* var(qᵢ) = qᵢ²(1 − qᵢ)/Dᵢ; var(eₓ) = Σ_{i≥x} lᵢ²[(1 − aᵢ)nᵢ + eᵢ₊₁]² var(qᵢ) / lₓ² plus, for the
  open interval, (l_ω/M_ω)²/D_ω (Silcocks PBS et al., J Epidemiol Community Health
  2001;55:38-43), divided by lₓ²;
* limits eₓ ± z·√var(eₓ).

Not calculated (NA, with ``reason``) when a band has zero population, the 90+ band has no
deaths, deaths exceed population, or the total population is 5,000 or less (Toson & Baker,
ONS Methodology Series 33, 2003). Where nᵢMᵢ is so large that qᵢ would exceed 1 (Dᵢ > Pᵢ/(nᵢaᵢ)),
qᵢ = 1. A value whose 95% interval is wider than 20 years is
suppressed but its limits are still shown (Eayres & Williams, JECH 2004;58:243-9).
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
    as_list,
    column_or_array,
    finish,
    normalise_confidence,
    z_value,
)

__all__ = ["life_expectancy", "LE_AGE_BANDS"]

#: Start ages of the abridged life-table bands used by ONS and OHID.
LE_AGE_BANDS: tuple[int, ...] = (0, 1) + tuple(range(5, 95, 5))

MIN_TOTAL_POPULATION = 5000
MAX_CI_WIDTH_YEARS = 20


def _start_ages(contents: Sequence[Any]) -> np.ndarray:
    """Start age of each band in ``age_contents`` (the first number in its label): 0, 1, 5, ….

    The bands must start at 0 and rise strictly: the widths nᵢ are the gaps between them.
    """
    starts = []
    for a in contents:
        m = re.search(r"\d+", str(a))
        if m is None:
            raise StatsInputError(f"age_contents: '{a}' does not begin with a start age")
        starts.append(float(m.group()))
    out = np.array(starts)
    if len(out) < 2 or out[0] != 0:
        raise StatsInputError(
            f"age_contents must start with the band at age 0 and list every band (got {contents})"
        )
    if np.any(np.diff(out) <= 0):
        i = int(np.flatnonzero(np.diff(out) <= 0)[0]) + 1
        raise StatsInputError(
            "age_contents must list the bands in ascending order of start age "
            f"('{contents[i]}' follows '{contents[i - 1]}')"
        )
    return out


def life_expectancy(
    deaths: Any,
    population: Any,
    startage: Any,
    *,
    data: pd.DataFrame | None = None,
    by: str | Sequence[str] | None = None,
    age_contents: Sequence[Any] = LE_AGE_BANDS,
    le_age: str | Sequence[Any] = "all",
    confidence: float | Sequence[float] = DEFAULT_CONFIDENCE,
) -> pd.DataFrame:
    """Period life expectancy at each requested age, one row per group and age.

    ``deaths``, ``population`` and ``startage`` are columns of ``data`` (or arrays); each group
    (``by``) must contain every band in ``age_contents`` exactly once (labels in ascending age
    order; default start ages 0, 1, 5, …, 90). ``le_age`` selects the ages returned ("all" by
    default). Output: the by columns, ``startage``, ``value`` (years), limits, ``confidence``,
    ``statistic`` ("life expectancy at <age>"), ``method`` and ``reason`` when not published.
    """
    levels = normalise_confidence(confidence)
    keys = as_list(by)
    _start_ages(list(age_contents))  # validate before reading the data
    d = column_or_array(data, deaths, "deaths")
    p = column_or_array(data, population, "population")
    ages = data[startage].to_numpy() if isinstance(startage, str) and data is not None else startage
    frame = pd.DataFrame({"d": d, "p": p, "startage": np.asarray(ages, dtype=object)})
    for k in keys:
        frame[k] = data[k].to_numpy()  # type: ignore[index]
    contents = list(age_contents)
    position = {str(a): i for i, a in enumerate(contents)}
    frame["pos"] = frame["startage"].map(lambda a: position.get(str(a), -1))
    if (frame["pos"] < 0).any():
        bad = frame.loc[frame["pos"] < 0, "startage"].iloc[0]
        raise StatsInputError(f"startage '{bad}' is not one of age_contents {contents}")
    if (frame["d"] < 0).any() or (frame["p"] < 0).any():
        raise StatsInputError("deaths and populations must be greater than or equal to zero")

    k = len(contents)
    if keys:
        g = frame.groupby(keys, sort=True, dropna=False)
        codes = g.ngroup().to_numpy()
        groups = g.size().reset_index()[keys]
        counts = g.size().to_numpy()
    else:
        codes = np.zeros(len(frame), dtype=int)
        groups = pd.DataFrame(index=[0])
        counts = np.array([len(frame)])
    if np.any(counts != k) or frame.duplicated(keys + ["pos"]).any():
        raise StatsInputError(
            f"each group needs exactly one row for each of the {k} age bands {contents}"
        )
    n_groups = len(groups)
    D = np.full((n_groups, k), np.nan)
    P = np.full((n_groups, k), np.nan)
    D[codes, frame["pos"].to_numpy()] = frame["d"].to_numpy()
    P[codes, frame["pos"].to_numpy()] = frame["p"].to_numpy()

    start_num = _start_ages(contents)
    width = np.diff(start_num)  # last band open
    a = np.where(start_num[:-1] == 0, 0.1, 0.5)

    reason = np.full(n_groups, None, dtype=object)
    reason[np.isnan(D).any(1) | np.isnan(P).any(1)] = "missing deaths or population"
    reason[(P <= 0).any(1)] = "an age band has zero population"
    reason[D[:, -1] <= 0] = "no deaths in the final age band"
    reason[(D > P).any(1)] = "deaths exceed population in an age band"
    reason[np.nansum(P, 1) <= MIN_TOTAL_POPULATION] = "total population is 5,000 or less"
    bad = reason != None  # noqa: E711

    with np.errstate(invalid="ignore", divide="ignore"):
        M = D / P
        q = width * M[:, :-1] / (1 + width * (1 - a) * M[:, :-1])
        # mortality so high that the formula would exceed 1: everyone dies in the band
        q = np.where(D[:, :-1] > P[:, :-1] / width / a, 1.0, q)
        q = np.column_stack([q, np.ones(n_groups)])
        lx = np.ones((n_groups, k)) * 100000.0
        for i in range(1, k):
            lx[:, i] = lx[:, i - 1] * (1 - q[:, i - 1])
        dx = lx * q
        Lx = np.empty((n_groups, k))
        Lx[:, :-1] = width * (lx[:, 1:] + a * dx[:, :-1])
        Lx[:, -1] = lx[:, -1] / M[:, -1]
        Tx = np.cumsum(Lx[:, ::-1], axis=1)[:, ::-1]
        ex = np.where(lx == 0, 0.0, Tx / lx)
        var_q = np.where(D[:, :-1] > 0, q[:, :-1] ** 2 * (1 - q[:, :-1]) / D[:, :-1], 0.0)
        terms = np.empty((n_groups, k))
        terms[:, :-1] = lx[:, :-1] ** 2 * ((1 - a) * width + ex[:, 1:]) ** 2 * var_q
        terms[:, -1] = (lx[:, -1] / M[:, -1]) ** 2 / D[:, -1]
        cum = np.cumsum(terms[:, ::-1], axis=1)[:, ::-1]
        var_e = cum / lx**2
    ex[bad] = np.nan
    var_e[bad] = np.nan

    if isinstance(le_age, str) and le_age == "all":
        wanted = list(range(k))
    else:
        ages_req = [le_age] if np.isscalar(le_age) else list(le_age)
        missing = [x for x in ages_req if str(x) not in position]
        if missing:
            raise StatsInputError(f"le_age {missing} not in age_contents {contents}")
        wanted = [position[str(x)] for x in ages_req]

    gi = np.repeat(np.arange(n_groups), len(wanted))
    ai = np.tile(np.array(wanted), n_groups)
    out = groups.iloc[gi].reset_index(drop=True) if keys else pd.DataFrame(index=range(len(gi)))
    out["startage"] = [contents[i] for i in ai]
    value = ex[gi, ai]
    se = np.sqrt(var_e[gi, ai])
    limits = [(value - z_value(c) * se, value + z_value(c) * se) for c in levels]
    wide = (2 * z_value(0.95) * se) > MAX_CI_WIDTH_YEARS
    out["value"] = np.where(wide, np.nan, value)
    add_limits(out, levels, limits)
    res = finish(
        out,
        levels,
        [f"life expectancy at {contents[i]}" for i in ai],
        np.where(np.isnan(value), None, "Chiang, using Silcocks et al for confidence limits"),
    )
    r = reason[gi].copy()
    r[(r == None) & wide] = "95% confidence interval is wider than 20 years"  # noqa: E711
    res["reason"] = r
    return res
