"""funnel_limits / funnel_significance (Spiegelhalter 2005; Fingertips PH methods)."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from pophealth.stats import (
    StatsInputError,
    funnel_limits,
    funnel_significance,
    proportion,
    proportion_funnel_limits,
)


def test_proportion_limits_are_where_wilson_interval_touches_average():
    # Independent check: a unit observed exactly on the limit has a Wilson interval whose
    # opposite bound equals the pooled average (the Wilson interval inverts the score test).
    P = 0.3
    n = np.array([50.0, 200, 1000, 5000])
    for tail, c in ((0.025, 0.95), (0.001, 0.998)):
        lo, hi = proportion_funnel_limits(n, P, tail)
        lab = "95_0" if c == 0.95 else "99_8"
        upper_of_low = proportion(lo * n, n, confidence=c)[f"upper{lab}cl"].to_numpy()
        lower_of_high = proportion(hi * n, n, confidence=c)[f"lower{lab}cl"].to_numpy()
        np.testing.assert_allclose(upper_of_low, P, rtol=1e-9)
        np.testing.assert_allclose(lower_of_high, P, rtol=1e-9)


def test_proportion_funnel_grid():
    x = np.array([30, 120, 400, 70])
    n = np.array([100, 500, 2000, 300])
    out = funnel_limits(x, n, multiplier=100)
    assert len(out) == 100
    assert out["population"].iloc[0] == 1  # max denominator > 2 x min -> axis from 0 (1)
    assert out["population"].is_monotonic_increasing
    assert out["population"].iloc[-1] == pytest.approx(2100, abs=1)  # 1.05 x 2000 to 2 s.f.
    av = x.sum() / n.sum()
    np.testing.assert_allclose(out["baseline"], av * 100, rtol=1e-12)
    z = st.norm.ppf(0.999)
    row = out.iloc[50]
    expected = (av + z * np.sqrt(av * (1 - av) / row["population"])) * 100
    assert row["upper_3s_limit"] == pytest.approx(min(expected, 100), rel=1e-12)
    assert (out["lower_3s_limit"] <= out["lower_2s_limit"]).all()
    assert (out["lower_2s_limit"] >= 0).all() and (out["upper_2s_limit"] <= 100).all()


def test_proportion_significance_labels():
    df = pd.DataFrame(
        {
            "area": list("ABCDE"),
            "x": [10232, 12321, 15123, 13213, 9000],
            "n": [15232, 16123, 17932, 18475, 15000],
        }
    )
    sig = funnel_significance("x", "n", data=df)
    av = df["x"].sum() / df["n"].sum()
    p = df["x"] / df["n"]
    for i in range(len(df)):
        sd = np.sqrt(av * (1 - av) / df["n"][i])
        zscore = (p[i] - av) / sd
        if zscore > st.norm.ppf(0.999):
            assert sig[i] == "High (0.001)"
        elif zscore > st.norm.ppf(0.975):
            assert sig[i] == "High (0.025)"
        elif zscore < -st.norm.ppf(0.999):
            assert sig[i] == "Low (0.001)"
        elif zscore < -st.norm.ppf(0.975):
            assert sig[i] == "Low (0.025)"
        else:
            assert sig[i] == "Not significant"
    assert set(sig) >= {"High (0.001)", "Low (0.001)"}


def test_ratio_limits_from_exact_poisson():
    out = funnel_limits([20, 35, 50], [25, 30, 60], statistic="ratio", ratio_type="isr")
    grid = out["observed_events"].to_numpy()
    assert grid[0] == 1
    # at the limit, P(X >= O | E) = 0.025 for the upper curve (scipy poisson)
    e = out["upper_2s_expected_events"].to_numpy()
    np.testing.assert_allclose(st.poisson.sf(grid - 1, e), 0.025, rtol=1e-9)
    e3 = out["lower_3s_expected_events"].to_numpy()
    np.testing.assert_allclose(st.poisson.cdf(grid, e3), 0.001, rtol=1e-9)
    np.testing.assert_allclose(out["upper_2s_limit"], grid / e * 100, rtol=1e-12)
    assert (out["baseline"] == 100).all()


def test_ratio_significance():
    sig = funnel_significance([30, 10, 2, 100], [10, 10, 8, 100], statistic="ratio")
    assert sig.tolist() == ["High (0.001)", "Not significant", "Low (0.025)", "Not significant"]


def test_rate_funnel_and_dsr_small_counts():
    df = pd.DataFrame({"events": [5, 40, 120, 300], "pop": [10000, 20000, 50000, 100000]})
    df["rate"] = df["events"] / df["pop"] * 100000
    out = funnel_limits(
        "events",
        "pop",
        data=df,
        statistic="rate",
        rate="rate",
        rate_type="crude",
        multiplier=100000,
        years_of_data=1,
    )
    av = df["events"].sum() / df["pop"].sum()
    assert out["baseline"].iloc[0] == pytest.approx(av * 100000, rel=1e-12)
    sig = funnel_significance(
        "events", "pop", data=df, statistic="rate", rate="rate", rate_type="dsr", multiplier=100000
    )
    assert sig[0] == "Not applicable for events less than 10 for dsrs"
    with pytest.raises(StatsInputError):
        funnel_limits([1], [2], statistic="rate")


def test_count_ratio_limits_are_relative_excess():
    isr_grid = funnel_limits([20, 35, 50], [25, 30, 60], statistic="ratio", ratio_type="isr")
    cnt = funnel_limits([20, 35, 50], [25, 30, 60], statistic="ratio", ratio_type="count")
    np.testing.assert_allclose(
        cnt["upper_3s_limit"], isr_grid["upper_3s_limit"] / 100 - 1, rtol=1e-12
    )
    assert (cnt["baseline"] == 0).all()


def test_missing_unit_is_left_out_of_the_pooled_average_and_not_labelled():
    # a unit whose numerator is missing must not keep its denominator in the average (which
    # would pull it from 10% to 6.7% here) nor be called "Not significant"
    x = np.array([10, np.nan, 30])
    n = np.array([100, 200, 300])
    limits = funnel_limits(x, n)
    assert limits["baseline"].iloc[0] == pytest.approx(100 * 40 / 400, rel=1e-12)
    sig = funnel_significance(x, n)
    assert sig[1] is None
    assert sig[[0, 2]].tolist() == funnel_significance(x[[0, 2]], n[[0, 2]]).tolist()
    ratio = funnel_significance([30, np.nan, 2], [10, 10, np.nan], statistic="ratio")
    assert ratio.tolist() == ["High (0.001)", None, None]
    df = pd.DataFrame({"events": [40.0, 120, np.nan], "pop": [20000, 50000, 100000]})
    df["rate"] = df["events"] / df["pop"] * 100000
    rates = funnel_limits(
        "events", "pop", data=df, statistic="rate", rate="rate", rate_type="crude",
        multiplier=100000, years_of_data=1,
    )  # fmt: skip
    assert rates["baseline"].iloc[0] == pytest.approx(160 / 70000 * 100000, rel=1e-12)


def test_proportion_funnel_limits_validate_inputs():
    with pytest.raises(StatsInputError, match=r"row 1: 300 > 200"):
        funnel_limits([10, 300], [100, 200])
    with pytest.raises(StatsInputError, match="greater than zero"):
        funnel_limits([0, 20], [0, 200])
