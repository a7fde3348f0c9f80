"""proportion, rate, mean: PROGRAMMES.md §12.1-12.2 worked values and independent derivations."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from pophealth.stats import StatsInputError, mean, proportion, rate

# --- PROGRAMMES.md §12.1 (testdata_Proportion.xlsx values, published to 5 dp) ---------------


@pytest.mark.parametrize(
    ("x", "lo", "hi"),
    [(1, 0.00177, 0.05449), (20, 0.13337, 0.28883), (65, 0.55254, 0.73636)],
)
def test_wilson_matches_programmes_worked_values(x, lo, hi):
    out = proportion(x, 100)
    assert out.loc[0, "value"] == pytest.approx(x / 100, rel=1e-12)
    assert out.loc[0, "lower95_0cl"] == pytest.approx(lo, abs=5e-6)
    assert out.loc[0, "upper95_0cl"] == pytest.approx(hi, abs=5e-6)
    assert out.loc[0, "method"] == "Wilson"
    assert out.loc[0, "statistic"] == "proportion of 1"


def test_wilson_998_matches_programmes():
    out = proportion(20, 100, confidence=0.998)
    assert out.loc[0, "lower99_8cl"] == pytest.approx(0.10519, abs=5e-6)
    assert out.loc[0, "upper99_8cl"] == pytest.approx(0.34711, abs=5e-6)
    assert "lower95_0cl" not in out.columns
    assert out.loc[0, "confidence"] == "99.8%"


@pytest.mark.parametrize("c", [0.95, 0.998])
def test_wilson_limits_are_the_inverted_score_test(c):
    # Independent derivation: the Wilson limits P are the two roots of the score test
    # |p̂ - P| / sqrt(P(1-P)/n) = z, z from scipy's normal quantile.
    x = np.array([0, 1, 7, 20, 65, 99, 100, 3, 4999])
    n = np.array([10, 100, 30, 100, 100, 100, 100, 5, 10000])
    out = proportion(x, n, confidence=c)
    z = st.norm.ppf(1 - (1 - c) / 2)
    lab = "95_0" if c == 0.95 else "99_8"
    for P in (out[f"lower{lab}cl"].to_numpy(), out[f"upper{lab}cl"].to_numpy()):
        with np.errstate(invalid="ignore", divide="ignore"):
            score = np.abs(x / n - P) / np.sqrt(P * (1 - P) / n)
        ok = (P > 0) & (P < 1)
        np.testing.assert_allclose(score[ok], z, rtol=1e-9)


def test_proportion_multiplier_and_grouping():
    df = pd.DataFrame(
        {"area": ["b", "a", "a", "b"], "num": [5, 10, 10, 15], "den": [50, 100, 100, 50]}
    )
    out = proportion("num", "den", multiplier=100, data=df, by="area")
    assert list(out["area"]) == ["a", "b"]
    assert out["value"].tolist() == pytest.approx([10.0, 20.0])
    single = proportion(20, 100, multiplier=100)
    assert out.loc[1, "lower95_0cl"] == pytest.approx(single.loc[0, "lower95_0cl"], rel=1e-12)
    assert out.loc[0, "statistic"] == "percentage"


def test_proportion_missing_gives_na_row_and_errors_are_readable():
    out = proportion([5, np.nan], [10, 10])
    assert np.isnan(out.loc[1, "value"]) and np.isnan(out.loc[1, "upper95_0cl"])
    assert out.loc[0, "value"] == 0.5
    with pytest.raises(StatsInputError, match="less than or equal to denominator"):
        proportion(11, 10)
    with pytest.raises(StatsInputError, match="greater than or equal to zero"):
        proportion(-1, 10)
    with pytest.raises(StatsInputError, match="confidence level"):
        proportion(1, 10, confidence=0.5)


def test_confidence_accepts_percentages():
    a = proportion(20, 100, confidence=(95, 99.8))
    b = proportion(20, 100, confidence=(0.95, 0.998))
    pd.testing.assert_frame_equal(a, b)


def test_two_levels_with_the_same_column_names_are_refused():
    # 99.91% and 99.94% are both named '99_9': one set of limits silently overwrote the other
    with pytest.raises(StatsInputError, match="share the limit columns"):
        proportion(20, 100, confidence=(0.9991, 0.9994))
    assert "lower99_9cl" in proportion(20, 100, confidence=(0.95, 0.999)).columns


# --- PROGRAMMES.md §12.2 ------------------------------------------------------------------------


def test_byars_counts_match_programmes():
    out = rate([65, 1045], [1, 1], multiplier=1)
    assert out.loc[0, "lower95_0cl"] == pytest.approx(50.1632, abs=5e-5)
    assert out.loc[0, "upper95_0cl"] == pytest.approx(82.8491, abs=5e-5)
    assert out.loc[0, "lower99_8cl"] == pytest.approx(42.8803, abs=5e-5)
    assert out.loc[0, "upper99_8cl"] == pytest.approx(94.0003, abs=5e-5)
    assert out.loc[1, "lower95_0cl"] == pytest.approx(982.593, abs=5e-4)
    assert out.loc[1, "upper95_0cl"] == pytest.approx(1110.331, abs=5e-4)
    assert list(out["method"]) == ["Byars", "Byars"]


def test_rates_match_programmes():
    out = rate([5, 20], [100, 100], multiplier=100)
    assert out.loc[0, "lower95_0cl"] == pytest.approx(1.6235, abs=5e-5)
    assert out.loc[0, "upper95_0cl"] == pytest.approx(11.6683, abs=5e-5)
    assert out.loc[1, "lower95_0cl"] == pytest.approx(12.2114, abs=5e-5)
    assert out.loc[1, "upper95_0cl"] == pytest.approx(30.8899, abs=5e-5)
    assert list(out["method"]) == ["Exact", "Byars"]
    assert out.loc[0, "statistic"] == "rate per 100"


@pytest.mark.parametrize("x", [0, 1, 2, 5, 9])
def test_exact_limits_satisfy_poisson_tail_probabilities(x):
    # Independent: the exact limits are the means at which P(X >= x) and P(X <= x) equal
    # alpha/2 (scipy.stats.poisson), here at 95% and 99.8%.
    out = rate(x, 1000, multiplier=1000)
    for c, lab in ((0.95, "95_0"), (0.998, "99_8")):
        lo = out.loc[0, f"lower{lab}cl"]
        hi = out.loc[0, f"upper{lab}cl"]
        a = (1 - c) / 2
        if x == 0:
            assert lo == 0
        else:
            assert st.poisson.sf(x - 1, lo) == pytest.approx(a, rel=1e-9)
        assert st.poisson.cdf(x, hi) == pytest.approx(a, rel=1e-9)


def test_rate_switches_to_byars_at_ten():
    out = rate([9, 10], [1000, 1000])
    assert list(out["method"]) == ["Exact", "Byars"]
    z = st.norm.ppf(0.975)
    byar = 10 * (1 - 1 / 90 - z / (3 * np.sqrt(10))) ** 3 / 1000 * 100000  # Breslow & Day
    assert out.loc[1, "lower95_0cl"] == pytest.approx(byar, rel=1e-12)


def test_rate_invalid_inputs():
    with pytest.raises(StatsInputError, match="denominators must be greater than zero"):
        rate(1, 0)
    with pytest.raises(StatsInputError, match="numerators"):
        rate(-2, 10)
    assert np.isnan(rate(np.nan, 10).loc[0, "value"])


def test_mean_matches_scipy_student_t():
    rng = np.random.default_rng(7)
    values = rng.normal(50, 10, size=37)
    out = mean(values)
    for c, lab in ((0.95, "95_0"), (0.998, "99_8")):
        lo, hi = st.t.interval(c, len(values) - 1, loc=values.mean(), scale=st.sem(values))
        assert out.loc[0, f"lower{lab}cl"] == pytest.approx(lo, rel=1e-12)
        assert out.loc[0, f"upper{lab}cl"] == pytest.approx(hi, rel=1e-12)
    assert out.loc[0, "method"] == "Student's t-distribution"


def test_mean_grouped_and_missing():
    df = pd.DataFrame({"g": ["a", "a", "a", "b", "b"], "v": [1.0, 2.0, 3.0, 4.0, np.nan]})
    out = mean("v", data=df, by="g")
    assert out.loc[0, "value"] == 2.0
    assert out.loc[0, "value_count"] == 3
    assert np.isnan(out.loc[1, "value"])
