"""sii and quantiles: closed-form regressions and analytic CIs (Low & Low 2004; OHID guide)."""

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from pophealth.stats import StatsInputError, proportion, quantiles, sii

POP = np.array([7291, 7997, 6105, 7666, 5790, 6934, 5918, 5974, 7147, 7534], dtype=float)
VAL = np.array([75.9, 78.3, 83.8, 83.6, 80.5, 81.1, 81.7, 84.2, 80.6, 86.3])
SE = np.array([1.64, 1.58, 1.51, 1.78, 1.7, 1.56, 1.37, 1.4, 2.43, 1.57])


def _wls(pop, y):
    """Independent weighted least squares: minimise Σ a (y - b0 - b1 r)² with numpy lstsq."""
    a = pop / pop.sum()
    r = np.cumsum(a) - a / 2
    X = np.column_stack([np.ones_like(r), r]) * np.sqrt(a)[:, None]
    beta, *_ = np.linalg.lstsq(X, y * np.sqrt(a), rcond=None)
    return beta, a, r


def test_sii_point_estimate_is_weighted_regression_slope():
    out = sii(np.arange(1, 11), POP, VAL, se=SE)
    (b0, b1), _, _ = _wls(POP, VAL)
    assert out.loc[0, "value"] == pytest.approx(b1, rel=1e-9)
    assert out.loc[0, "sii"] == out.loc[0, "value"]
    assert out.loc[0, "rii"] == pytest.approx((b0 + b1) / b0, rel=1e-9)


def test_sii_exactly_linear_gradient_recovered():
    pop = np.array([100.0, 300, 200, 250, 150])
    a = pop / pop.sum()
    r = np.cumsum(a) - a / 2  # relative rank: midpoint of cumulative share (0.05 for 10% band)
    y = 40 + 12 * r
    out = sii([1, 2, 3, 4, 5], pop, y, se=np.full(5, 0.5))
    assert out.loc[0, "value"] == pytest.approx(12, rel=1e-9)
    assert out.loc[0, "rii"] == pytest.approx(52 / 40, rel=1e-9)
    assert out.loc[0, "r_squared"] == pytest.approx(1.0, rel=1e-9)


def test_sii_simulated_ci_matches_analytic_normal_ci():
    # With value_type 0 the slope is linear in the draws, so its sampling distribution is
    # exactly normal with sd = sqrt(Σ (h_i se_i)²), h = slope row of (XᵀX)⁻¹Xᵀ·diag(√a).
    out = sii(np.arange(1, 11), POP, VAL, se=SE, confidence=(0.95, 0.998), seed=11)
    (b0, b1), a, r = _wls(POP, VAL)
    X = np.column_stack([np.ones_like(r), r]) * np.sqrt(a)[:, None]
    h = np.linalg.pinv(X)[1] * np.sqrt(a)
    sd = np.sqrt(np.sum((h * SE) ** 2))
    for c, lab in ((0.95, "95_0"), (0.998, "99_8")):
        z = st.norm.ppf(1 - (1 - c) / 2)
        half = z * sd
        assert abs(out.loc[0, f"lower{lab}cl"] - (b1 - half)) < 0.05 * half
        assert abs(out.loc[0, f"upper{lab}cl"] - (b1 + half)) < 0.05 * half


def test_sii_seeded_is_reproducible_and_se_from_cls_equivalent():
    lo = VAL - 1.959963984540054 * SE
    hi = VAL + 1.959963984540054 * SE
    a = sii(np.arange(1, 11), POP, VAL, se=SE, seed=5)
    b = sii(np.arange(1, 11), POP, VAL, lower_cl=lo, upper_cl=hi, seed=5)
    np.testing.assert_allclose(a["lower95_0cl"], b["lower95_0cl"], rtol=1e-9)
    c = sii(np.arange(1, 11), POP, VAL, se=SE, seed=5)
    assert a.loc[0, "upper95_0cl"] == c.loc[0, "upper95_0cl"]


def test_sii_proportion_logit_and_grouping():
    rng = np.random.default_rng(1)
    n = rng.integers(2000, 5000, 20)
    p = np.r_[np.linspace(0.30, 0.12, 10), np.linspace(0.2, 0.2, 10)]
    x = np.round(n * p)
    df = pd.DataFrame(
        {"area": np.repeat(["A", "B"], 10), "decile": np.tile(np.arange(1, 11), 2), "x": x, "n": n}
    )
    ci = proportion("x", "n", data=df)
    df["lo"], df["hi"] = ci["lower95_0cl"], ci["upper95_0cl"]
    out = sii(
        "decile",
        "n",
        x="x",
        data=df,
        by="area",
        value_type="proportion",
        lower_cl="lo",
        upper_cl="hi",
        multiplier=100,
    )
    (_, b1), _, _ = _wls(n[:10].astype(float), x[:10] / n[:10])
    assert out.loc[0, "value"] == pytest.approx(100 * b1, rel=1e-9)
    assert out.loc[0, "upper95_0cl"] < 0  # steep deprivation gradient: CI excludes zero
    assert out.loc[1, "lower95_0cl"] < 0 < out.loc[1, "upper95_0cl"]  # flat: CI spans zero


def test_sii_negative_multiplier_flips_rii():
    a = sii(np.arange(1, 11), POP, VAL, se=SE)
    b = sii(np.arange(1, 11), POP, VAL, se=SE, multiplier=-1)
    assert b.loc[0, "value"] == pytest.approx(-a.loc[0, "value"], rel=1e-12)
    assert b.loc[0, "rii"] == pytest.approx(1 / a.loc[0, "rii"], rel=1e-12)


def test_sii_invalid_inputs():
    with pytest.raises(StatsInputError, match="population"):
        sii(np.arange(1, 11), np.r_[0, POP[1:]], VAL, se=SE)
    with pytest.raises(StatsInputError, match="between 5 and 100"):
        sii([1, 2, 3], POP[:3], VAL[:3], se=SE[:3])
    with pytest.raises(StatsInputError, match="se="):
        sii(np.arange(1, 11), POP, VAL)


def test_sii_drops_incomplete_group_with_warning():
    df = pd.DataFrame(
        {
            "g": ["a"] * 10 + ["b"] * 9,
            "q": list(range(1, 11)) + list(range(1, 10)),
            "pop": np.r_[POP, POP[:9]],
            "v": np.r_[VAL, VAL[:9]],
            "se": np.r_[SE, SE[:9]],
        }
    )
    with pytest.warns(UserWarning, match="1 group"):
        out = sii("q", "pop", "v", se="se", data=df, by="g")
    assert list(out["g"]) == ["a"]


def test_quantiles_rank_formula():
    values = np.arange(1.0, 21.0)  # 20 areas -> 2 per decile
    q = quantiles(values, nquantiles=10)  # invert: highest values in quantile 1
    assert q.tolist() == [10, 10, 9, 9, 8, 8, 7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1]
    q2 = quantiles(values, nquantiles=5, invert=False)
    assert q2.tolist() == [1] * 4 + [2] * 4 + [3] * 4 + [4] * 4 + [5] * 4


def test_quantiles_uneven_and_ties_and_groups():
    # 7 areas into 3 quantiles: rank r -> floor(4 - ceil((8 - r) / (7/3)))
    v = [10.0, 20, 30, 40, 50, 60, 70]
    expected = [max(1, int(np.floor(4 - np.ceil((8 - r) / (7 / 3))))) for r in range(1, 8)]
    assert quantiles(v, nquantiles=3, invert=False).tolist() == expected
    tied = quantiles([5.0, 5, 5, 5, 1, 2], nquantiles=2, invert=False)
    assert len(set(tied[:4])) == 1  # tied values share a quantile
    df = pd.DataFrame(
        {"region": ["N"] * 5 + ["S"] * 5, "score": [1, 2, 3, 4, 5, 50, 40, 30, 20, 10]}
    )
    q = quantiles("score", data=df, by="region", nquantiles=5)
    assert q.tolist() == [5, 4, 3, 2, 1, 1, 2, 3, 4, 5]


def test_quantiles_refuses_too_few_areas():
    df = pd.DataFrame({"region": ["N"] * 3 + ["S"] * 10, "score": np.arange(13.0)})
    with pytest.warns(UserWarning, match="fewer areas than"):
        q = quantiles("score", data=df, by="region", nquantiles=10)
    assert q[:3].isna().all() and q[3:].notna().all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quantiles(np.arange(10.0), nquantiles=10)


def test_sii_transform_recovers_exact_multiplicative_gradient():
    pop = np.array([120.0, 80, 100, 150, 90, 110, 95, 105, 130, 70]) * 100
    a = pop / pop.sum()
    r = np.cumsum(a) - a / 2
    rates = np.exp(np.log(0.02) - 0.9 * r)  # exactly log-linear in relative rank
    lo, hi = rates * 0.9, rates / 0.9
    out = sii(
        np.arange(1, 11),
        pop,
        rates,
        value_type="rate",
        lower_cl=lo,
        upper_cl=hi,
        transform=True,
        multiplier=1000,
        repetitions=20000,
        seed=3,
    )
    assert out.loc[0, "value"] == pytest.approx(1000 * (0.02 * np.exp(-0.9) - 0.02), rel=1e-9)
    assert out.loc[0, "rii"] == pytest.approx(np.exp(-0.9), rel=1e-9)
    assert out.loc[0, "intercept"] == pytest.approx(1000 * 0.02, rel=1e-9)
    assert out.loc[0, "lower95_0cl"] < out.loc[0, "value"] < out.loc[0, "upper95_0cl"]
    assert out.loc[0, "rii_lower95_0cl"] < out.loc[0, "rii"] < out.loc[0, "rii_upper95_0cl"]
    with pytest.raises(StatsInputError, match="transform"):
        sii(np.arange(1, 11), pop, rates, se=rates / 10, transform=True)


def test_sii_orders_quantile_labels_written_as_text_by_number():
    # "1", "10", "2", ... sorted as text would put decile 10 second and give a wrong slope
    labels = np.array([str(i) for i in range(1, 11)])
    a = sii(np.arange(1, 11), POP, VAL, se=SE, seed=5)
    b = sii(labels, POP, VAL, se=SE, seed=5)
    (b0, b1), _, _ = _wls(POP, VAL)
    assert b.loc[0, "value"] == pytest.approx(b1, rel=1e-9)
    assert b.loc[0, "rii"] == pytest.approx((b0 + b1) / b0, rel=1e-9)
    np.testing.assert_allclose(a["upper95_0cl"], b["upper95_0cl"], rtol=1e-12)
