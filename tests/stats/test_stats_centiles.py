"""Centiles and their distribution-free confidence limits (pophealth.stats.centiles).

Source of the limits: Campbell MJ, Gardner MJ. Calculating confidence intervals for some
non-parametric analyses. BMJ 1988;296:1454-6 (and Altman DG et al., Statistics with
Confidence, 2nd edn, 2000, ch. 5). Their worked example: for the median of 100 values, the
95% interval runs from the 40th to the 61st value in rank order,
r = n/2 − 1.96√n/2 = 50 − 9.8 = 40.2 → 40 and s = 1 + n/2 + 1.96√n/2 = 60.8 → 61.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pophealth.stats import StatsInputError, centiles
from pophealth.stats.centiles import centile_label, centile_ranks


def test_campbell_gardner_worked_example_median_of_100():
    for method in ("normal", "exact"):
        r, s, cover = centile_ranks(100, 0.5, 0.95, method)
        assert (r, s) == (40, 61), method
    # by hand: P(B <= 39) = 0.0176, P(B <= 60) = 0.9824 for B ~ Binomial(100, 1/2)
    assert cover == pytest.approx(0.9648, abs=1e-4)
    # the values 1..100: the median 50.5, its limits the 40th and 61st values
    row = centiles(np.arange(1, 101), 0.5, confidence=0.95).iloc[0]
    assert (row.n, row.value, row.lower95_0cl, row.upper95_0cl) == (100, 50.5, 40, 61)
    assert row.statistic == "median"


def test_large_sample_formula_for_a_centile():
    # r = nq − 1.96√(nq(1 − q)), s = 1 + nq + 1.96√(nq(1 − q)): n = 100, q = 0.9 gives
    # 90 − 5.88 = 84.12 → 84 and 96.88 → 97
    r, s, _ = centile_ranks(100, 0.9, 0.95, "normal")
    assert (r, s) == (84, 97)
    # n = 20 median: 10 − 4.38 = 5.62 → 6 and 15.38 → 15
    r, s, _ = centile_ranks(20, 0.5, 0.95, "normal")
    assert (r, s) == (6, 15)


def _binomial_cdf(k: int, n: int, q: float) -> float:
    return sum(math.comb(n, i) * q**i * (1 - q) ** (n - i) for i in range(0, k + 1))


def test_exact_ranks_for_small_samples():
    # the exact binomial ranks of the small-sample tables: n = 10 → 2nd and 9th values
    # (P(B <= 1) = 11/1024, coverage 1 − 22/1024 = 97.9%), n = 12 → 3rd and 10th (96.1%),
    # n = 20 → 6th and 15th (95.9%), n = 6 → the smallest and largest (96.9%)
    r, s, cover = centile_ranks([10, 12, 20, 6], 0.5, 0.95)
    assert list(r) == [2, 3, 6, 1] and list(s) == [9, 10, 15, 6]
    assert cover == pytest.approx([1 - 22 / 1024, 0.9614, 0.9586, 1 - 2 / 64], abs=1e-4)


@pytest.mark.parametrize("q", [0.1, 0.5, 0.9, 0.25])
def test_exact_ranks_have_each_tail_at_most_alpha_over_2_and_are_the_tightest(q):
    for n in range(1, 120):
        r, s, cover = (float(x) for x in centile_ranks(n, q, 0.95))
        lows = [k for k in range(1, n + 1) if _binomial_cdf(k - 1, n, q) <= 0.025]
        highs = [k for k in range(1, n + 1) if _binomial_cdf(k - 1, n, q) >= 0.975]
        if not lows or not highs:
            assert math.isnan(r) and math.isnan(s) and math.isnan(cover), n
            continue
        assert (r, s) == (max(lows), min(highs)), n
        assert cover >= 0.95


def test_too_few_values_for_an_interval():
    # median: 5 values cannot give 95% (the widest, smallest to largest, covers 1 − 2/32)
    r, s, _ = centile_ranks(5, 0.5, 0.95)
    assert math.isnan(r) and math.isnan(s)
    # 90th centile: the exact interval needs 0.9^n <= 0.025, n >= 36
    assert math.isnan(centile_ranks(35, 0.9, 0.95)[1])
    assert not math.isnan(centile_ranks(36, 0.9, 0.95)[1])
    row = centiles([3, 1, 2, 5, 4], 0.5).iloc[0]
    assert row.value == 3 and pd.isna(row.lower95_0cl) and pd.isna(row.upper99_8cl)
    assert row.method.endswith("; too few values for a 95% or 99.8% interval")
    # 9 values: 95% (the 2nd and 8th) but not 99.8% (which needs 10)
    row = centiles(range(1, 10), 0.5).iloc[0]
    assert (row.lower95_0cl, row.upper95_0cl) == (2, 8) and pd.isna(row.lower99_8cl)
    assert row.method.endswith("(Campbell & Gardner, exact); too few values for a 99.8% interval")


def test_definition_7_odd_even_ties_and_missing():
    out = centiles([7, 1, 3], (0.5, 0.9), confidence=0.95)
    assert list(out["value"]) == [3, pytest.approx(6.2)]  # rank 2.8: 3 + 0.8 × (7 − 3)
    out = centiles([4, 1, 3, 2], 0.5, confidence=0.95)
    assert out["value"].iloc[0] == 2.5
    out = centiles([5, 5, 5, 1, np.nan], 0.5, confidence=0.95)
    assert (out["value"].iloc[0], out["n"].iloc[0], out["missing"].iloc[0]) == (5, 4, 1)


def test_same_as_numpy_by_group_and_from_counts():
    rng = np.random.default_rng(7)
    df = pd.DataFrame({"g": rng.integers(0, 4, 500), "x": rng.integers(0, 30, 500) / 2})
    df.loc[rng.choice(500, 20, replace=False), "x"] = np.nan
    qs = (0.1, 0.5, 0.9)
    out = centiles("x", qs, data=df, by="g")
    for g, part in df.groupby("g"):
        got = out[out["g"] == g]
        assert list(got["quantile"]) == list(qs)
        assert got["value"].to_numpy() == pytest.approx(np.quantile(part["x"].dropna(), qs))
        assert set(got["missing"]) == {part["x"].isna().sum()}
    counted = df.groupby(["g", "x"], dropna=False).size().rename("people").reset_index()
    again = centiles("x", qs, counts="people", data=counted, by="g")
    pd.testing.assert_frame_equal(out, again)


def test_labels():
    assert [centile_label(q) for q in (0.5, 0.9, 0.01, 0.02, 0.03, 0.11, 0.21, 0.025)] == [
        "median",
        "90th centile",
        "1st centile",
        "2nd centile",
        "3rd centile",
        "11th centile",
        "21st centile",
        "2.5th centile",
    ]


def test_refusals():
    with pytest.raises(StatsInputError, match="strictly between 0 and 1"):
        centiles([1, 2], 90)
    with pytest.raises(StatsInputError, match="strictly between 0 and 1"):
        centiles([1, 2], 0)
    with pytest.raises(StatsInputError, match="listed twice"):
        centiles([1, 2], (0.5, 0.5))
    with pytest.raises(StatsInputError, match="not True/False"):
        centiles([True, False], 0.5)
    with pytest.raises(StatsInputError, match="must be numbers"):
        centiles(["a", "b"], 0.5)
    with pytest.raises(StatsInputError, match="whole numbers of people"):
        centiles([1, 2], 0.5, counts=[1, -1])
    with pytest.raises(StatsInputError, match="method"):
        centile_ranks(10, 0.5, 0.95, "bootstrap")
