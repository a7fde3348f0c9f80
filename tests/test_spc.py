"""SPC: Making Data Count XmR rules (PROGRAMMES.md §12.6; NHSRplotthedots as oracle)."""

import numpy as np
import pytest

from pophealth.spc import LIMIT, NEAR_LIMIT, p_chart, xmr

SERIES = [1, 2, 1, 2, 10, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1]


def test_screened_limits_match_programmes():
    r = xmr(SERIES)
    row = r.data.iloc[0]
    assert row["mean"] == pytest.approx(35 / 18, rel=1e-12)
    assert round(row["upl"], 2) == 4.60
    assert round(row["lpl"], 2) == -0.72
    # by hand: moving ranges 1,1,1,8,9,1x12 -> mean 32/17 -> 8 and 9 exceed 3.267 x 1.882
    assert row["upl"] == pytest.approx(35 / 18 + 2.66 * 1.0, rel=1e-12)
    assert r.data.loc[4, "point_type"] == "special_cause_improvement"
    assert r.data.loc[4, "rule"] == "outside_limits"


def test_unscreened_excel_limits_match_programmes():
    r = xmr(SERIES, screen_outliers=False)
    row = r.data.iloc[0]
    assert round(row["upl"], 2) == 6.95
    assert round(row["lpl"], 2) == -3.06
    assert row["upl"] == pytest.approx(35 / 18 + 2.66 * 32 / 17, rel=1e-12)
    assert row["nupl"] - row["mean"] == pytest.approx(2 / 3 * 2.66 * 32 / 17, rel=1e-12)


def _noise(n, seed=0):
    return list(np.random.default_rng(seed).choice([9.0, 10.0, 11.0], size=n))


def test_seven_point_shift_and_configurable_length():
    y = [10, 11, 9, 10, 11, 9, 10, 11, 9, 10] + [10.6] * 6 + [9, 11, 10]
    r = xmr(y)
    assert not r.data["rule_shift"].any()  # six above the mean is not a shift by default
    r6 = xmr(y, shift_length=6)
    assert r6.data["rule_shift"].sum() == 6
    y7 = [10, 11, 9, 10, 11, 9, 10, 11, 9, 10] + [10.6] * 7 + [9, 11, 10]
    r7 = xmr(y7)
    assert r7.data["rule_shift"].sum() == 7
    assert set(r7.data.loc[r7.data["rule_shift"], "point_type"]) == {"special_cause_improvement"}
    r7d = xmr(y7, improvement="down")
    assert set(r7d.data.loc[r7d.data["rule_shift"], "point_type"]) == {"special_cause_concern"}


def test_seven_point_trend_either_direction():
    flat = [10, 12, 10, 12, 10, 12, 10, 12]
    up = flat + [8, 9, 10, 11, 12, 13, 14] + flat
    r = xmr(up)
    assert r.data["rule_trend"].sum() == 7
    assert list(np.flatnonzero(r.data["rule_trend"])) == list(range(8, 15))
    down = flat + [14, 13, 12, 11, 10, 9, 8] + flat
    assert xmr(down).data["rule_trend"].sum() == 7
    six = flat + [9, 10, 11, 12, 13, 14] + flat
    assert xmr(six).data["rule_trend"].sum() == 0
    assert xmr(six, trend_length=6).data["rule_trend"].sum() == 6
    ties = flat + [8, 9, 10, 10, 11, 12, 13, 14] + flat  # a tie breaks the run
    assert xmr(ties).data["rule_trend"].sum() == 0


def test_two_of_three_beyond_near_limits():
    base = [10, 11, 9, 10, 11, 9, 10, 11, 9, 10, 11, 9, 10, 11, 9, 10]
    r0 = xmr(base)
    mean, amr = r0.data.loc[0, "mean"], r0.data.loc[0, "amr"]
    high = mean + (NEAR_LIMIT + (LIMIT - NEAR_LIMIT) / 10) * amr  # inside limits, beyond 2 sigma
    y = base + [high, mean + 0.1, high] + base
    r = xmr(y, fix_after_n_points=len(base))
    flagged = np.flatnonzero(r.data["rule_two_in_three"])
    assert list(flagged) == [16, 18]  # only the two close-to-limit points are marked
    assert not r.data.loc[17, "rule_two_in_three"]
    y2 = base + [high, mean - 0.1, high] + base  # middle point below the mean: not one side
    r2 = xmr(y2, fix_after_n_points=len(base))
    assert not r2.data["rule_two_in_three"].any()


def test_rule_precedence_and_neutral():
    y = [10, 11, 9, 10, 11, 9, 10, 11, 9, 10, 11, 9, 40]
    r = xmr(y, improvement="neutral")
    assert r.data.loc[12, "point_type"] == "special_cause_neutral_high"
    assert r.variation == "special_cause_neutral_high"
    assert r.assurance is None
    low = xmr(y[:-1] + [-20], improvement="neutral")  # NHSRplotthedots would say "high" here
    assert low.data.loc[12, "point_type"] == "special_cause_neutral_low"


def test_assurance_icons():
    y = _noise(20)
    up_pass = xmr(y, improvement="up", target=5)
    assert up_pass.assurance == "consistent_pass"
    assert xmr(y, improvement="up", target=15).assurance == "consistent_fail"
    assert xmr(y, improvement="up", target=10).assurance == "inconsistent"
    assert xmr(y, improvement="down", target=15).assurance == "consistent_pass"
    assert xmr(y, improvement="down", target=5).assurance == "consistent_fail"


def test_rebase_and_fixed_limits_and_trial_warning():
    y = [10.0, 11, 9] * 6 + [20.0, 21, 19] * 5
    x = list(range(len(y)))
    r = xmr(y, x, rebase=[18])
    assert r.data.loc[0, "mean"] == pytest.approx(10)
    assert r.data.loc[20, "mean"] == pytest.approx(20)
    assert r.data["period"].nunique() == 2
    assert not r.warnings  # 18 and 15 points: both periods have full limits
    short = xmr(y[:10])
    assert any("trial limits" in w for w in short.warnings)
    assert not xmr(y[:18]).warnings
    fixed = xmr(y, fix_after_n_points=12)
    assert fixed.data.loc[0, "mean"] == pytest.approx(np.mean(y[:12]))
    assert fixed.data["rule_outside"].iloc[18:].all()
    with pytest.raises(ValueError, match="rebase point"):
        xmr(y, x, rebase=[999])


def test_p_chart_limits():
    num = np.array([20, 25, 18, 30, 22, 27, 19, 24, 26, 21, 23, 60])
    den = np.array([100, 120, 90, 150, 110, 130, 95, 115, 125, 100, 105, 120])
    r = p_chart(num, den, multiplier=100)
    pbar = num.sum() / den.sum()
    sigma = np.sqrt(pbar * (1 - pbar) / den)
    np.testing.assert_allclose(r.data["upl"], 100 * (pbar + 3 * sigma), rtol=1e-12)
    np.testing.assert_allclose(r.data["nlpl"], 100 * (pbar - 2 * sigma), rtol=1e-12)
    assert r.data.loc[11, "rule"] == "outside_limits"
    assert r.chart == "p"
    with pytest.raises(ValueError):
        p_chart([5], [4])


def test_bad_values_rejected():
    with pytest.raises(ValueError, match="position 1"):
        xmr([1, None, 3])
    with pytest.raises(ValueError, match="improvement"):
        xmr([1, 2, 3], improvement="sideways")


def test_settings_that_would_silently_change_the_chart_are_refused():
    y = [10.0, 11, 9] * 6
    # 0 read as "not fixed" (limits from all points); 1 left no moving range (NaN limits)
    for n in (0, 1):
        with pytest.raises(ValueError, match="fix_after_n_points"):
            xmr(y, fix_after_n_points=n)
    with pytest.raises(ValueError, match="trend_length"):
        xmr(y, trend_length=1)  # every point was a "trend"
    with pytest.raises(ValueError, match="shift_length"):
        xmr(y, shift_length=0)
    with pytest.raises(ValueError, match="two_in_three"):
        xmr(y, two_in_three=(3, 2))
    with pytest.raises(ValueError, match="fix_after_n_points"):
        p_chart([1, 2, 3], [10, 10, 10], fix_after_n_points=1)


def test_infinite_values_rejected():
    with pytest.raises(ValueError, match="position 2"):
        xmr([1.0, 2.0, np.inf, 3.0])


def test_a_run_counts_the_released_months_either_side_of_a_withheld_one_as_neighbours():
    """What the charts do where a month's counts are withheld (programmes leave the month
    out before the p-chart): the rules run on the released months alone, so the months either
    side of the gap are neighbours. Here 3 released months above the centre line, a withheld
    month, then 4 more make a shift of 7 over 8 calendar months — whatever the withheld month
    was. The centre line is Σx/Σn of the released months only. (Described, not a rule
    change: whether a run may span a withheld month is a product decision.)"""
    import pandas as pd

    months = pd.date_range("2024-04-30", periods=20, freq="ME")
    num = np.array([60, 40, 60, 40, 60, 40, 60, 40, 60, 40, 60, 40, 57, 57, 57, 0, 57, 57, 57, 57])
    keep = np.ones(20, dtype=bool)
    keep[15] = False  # withheld
    r = p_chart(num[keep], np.full(keep.sum(), 100), months[keep], multiplier=100)
    shift = r.data["rule_shift"].to_numpy()
    assert list(r.data["x"][shift]) == list(months[12:15]) + list(months[16:20])
    assert r.data["mean"].iloc[0] == pytest.approx(100 * num[keep].sum() / (100 * keep.sum()))
    # with the month there the run breaks (its value is below the centre line)
    whole = p_chart(num[:15].tolist() + [50] + num[16:].tolist(), np.full(20, 100), months)
    assert not whole.data["rule_shift"].any()
