"""Chart builders produce the expected traces, colours and icons."""

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from pophealth.charts import (
    MDC_COLOURS,
    SIGNIFICANCE_COLOURS,
    chart_data,
    equity_chart,
    funnel_chart,
    spc_chart,
)
from pophealth.equity import equity_view
from pophealth.spc import p_chart, xmr
from pophealth.stats import funnel_limits, funnel_significance


def test_spc_chart_colours_points_and_shows_icons():
    y = [10, 12] * 6 + [30]
    result = xmr(y, improvement="down", target=20, fix_after_n_points=12)
    fig = spc_chart(result, title="A&E waits")
    assert isinstance(fig, go.Figure)
    values = next(t for t in fig.data if t.name == "Value")
    assert list(values.marker.color[:-1]) == [MDC_COLOURS["common_cause"]] * 12
    assert values.marker.color[-1] == MDC_COLOURS["special_cause_concern"]
    texts = [a.text for a in fig.layout.annotations]
    assert "<b>!</b>" in texts  # variation: concern
    assert any(a.hovertext.startswith("Assurance") for a in fig.layout.annotations)
    assert any(t.name == "Target" for t in fig.data)
    assert np.allclose(next(t for t in fig.data if t.name == "Mean").y, result.data["mean"])


def test_spc_chart_trial_limits_warning_in_title():
    fig = spc_chart(xmr([1, 2, 3, 2, 1]))
    assert "trial limits" in fig.layout.title.text


def test_funnel_chart_colours_by_significance():
    df = pd.DataFrame(
        {"area": list("ABCD"), "x": [10232, 12321, 15123, 13213], "n": [15232, 16123, 17932, 18475]}
    )
    df["value"] = df["x"] / df["n"] * 100
    df["significance"] = funnel_significance("x", "n", data=df)
    limits = funnel_limits("x", "n", data=df, multiplier=100)
    fig = funnel_chart(df, limits, x="n", label="area")
    units = [t for t in fig.data if t.mode == "markers"]
    # one legend entry per significance label present, in its colour
    assert [t.name for t in units] == [k for k in SIGNIFICANCE_COLOURS if k in set(df.significance)]
    for t in units:
        assert t.marker.color == SIGNIFICANCE_COLOURS[t.name]
        assert t.showlegend is not False
        rows = df[df["significance"] == t.name]
        assert list(t.text) == list(rows["area"])
        assert list(t.x) == list(rows["n"]) and np.allclose(t.y, rows["value"])
    assert sum(len(t.x) for t in units) == len(df)  # every unit drawn once
    assert sum(t.name == "99.8% limits" for t in fig.data) == 2
    assert np.allclose(fig.data[0].y, limits["lower_3s_limit"])


def test_funnel_chart_high_and_low_differ_in_shape_not_only_colour():
    df = pd.DataFrame({"x": [10, 90, 50, 50], "n": [100, 100, 100, 100], "u": list("ABCD")})
    df["value"] = df["x"] / df["n"] * 100
    df["significance"] = ["Low (0.001)", "High (0.001)", "Not significant", None]
    limits = funnel_limits("x", "n", data=df, multiplier=100)
    fig = funnel_chart(df, limits, x="n", label="u")
    units = {t.name: t for t in fig.data if t.mode == "markers"}
    assert units["High (0.001)"].marker.symbol == "triangle-up"
    assert units["Low (0.001)"].marker.symbol == "triangle-down"
    assert units["Not significant"].marker.symbol == "circle"
    assert list(units["No label"].text) == ["D"]  # a unit without a label is still drawn


def test_funnel_chart_without_significance_draws_every_unit():
    df = pd.DataFrame({"x": [10, 20, 30], "n": [100, 110, 120]})
    df["value"] = df["x"] / df["n"] * 100
    limits = funnel_limits("x", "n", data=df, multiplier=100)
    fig = funnel_chart(df, limits, x="n", significance=None)
    (units,) = [t for t in fig.data if t.mode == "markers"]
    assert list(units.x) == [100, 110, 120]


def test_equity_chart_has_deciles_and_sii_line():
    rng = np.random.default_rng(2)
    rows = [(d, int(rng.binomial(1000, 0.4 + 0.03 * d)), 1000) for d in range(1, 11)]
    df = pd.DataFrame(rows, columns=["imd_decile", "numerator", "denominator"])
    view = equity_view(df, sii_repetitions=5000)
    fig = equity_chart(view, title="Flu vaccine uptake")
    points, line = fig.data
    assert list(points.x) == list(range(1, 11))
    assert line.name.startswith("SII")
    assert line.y[-1] > line.y[0]  # rising towards less deprived deciles
    # weighted least squares with an intercept: population-weighted residuals sum to zero
    w = view.breakdowns.query("breakdown == 'imd_decile' and group != 'Total'")["denominator"]
    residual = np.asarray(points.y) - np.asarray(line.y)
    assert abs(np.average(residual, weights=w)) < 1e-9


def _view(deciles, numerators):
    df = pd.DataFrame({"imd_decile": deciles, "numerator": numerators, "denominator": 1000})
    return equity_view(df, sii_repetitions=1000)


def test_equity_chart_reads_deciles_written_as_text():
    numerators = [400 + 30 * d for d in range(1, 11)]
    fig = equity_chart(_view([str(d) for d in range(1, 11)], numerators))
    points = fig.data[0]
    assert list(points.x) == list(range(1, 11))
    assert np.allclose(points.y, [n / 10 for n in numerators], atol=0.5)


def test_equity_chart_marks_withheld_deciles():
    view = _view(list(range(1, 11)), [400, 3, *[450 + 30 * d for d in range(3, 11)]])
    b = view.breakdowns
    dec = b[(b.breakdown == "imd_decile") & b.group.isin(range(1, 11))]
    withheld = sorted(dec.loc[dec["value"].isna(), "group"])
    assert 2 in withheld
    fig = equity_chart(view)
    marks = sorted(a.x for a in fig.layout.annotations if a.text == "[c]")
    assert marks == withheld
    shown = dict(zip(fig.data[0].x, fig.data[0].y, strict=True))
    assert all(np.isnan(shown[d]) for d in withheld)  # a gap, not 0


# -- the numbers beside each chart (chart_data, shown by the report as "Show the data") ------


def _months(n, start="2024-04-30"):
    return pd.date_range(start, periods=n, freq="ME")


def test_spc_chart_data_lists_every_point_with_its_limits_and_flag():
    num = np.array([20, 25, 18, 30, 22, 27, 19, 24, 26, 21, 23, 60])
    den = np.array([100, 120, 90, 150, 110, 130, 95, 115, 125, 100, 105, 120])
    res = p_chart(num, den, _months(12), improvement="down", multiplier=100)
    fig = spc_chart(res, y_title="% of register", x_title="Month end")
    data = chart_data(fig)
    t = data.frame
    assert list(t.columns) == [
        "Month end", "Value (% of register)", "Numerator", "Denominator",
        "Centre line (% of register)", "Lower process limit (% of register)",
        "Upper process limit (% of register)", "Variation", "Rule",
    ]  # fmt: skip
    assert t["Month end"].iloc[0] == "2024-04-30" and t["Month end"].iloc[-1] == "2025-03-31"
    assert list(t["Numerator"]) == list(num) and list(t["Denominator"]) == list(den)
    np.testing.assert_allclose(t["Value (% of register)"], num / den * 100)
    pbar = num.sum() / den.sum()
    upper = 100 * (pbar + 3 * np.sqrt(pbar * (1 - pbar) / den))
    np.testing.assert_allclose(t["Upper process limit (% of register)"], upper)
    assert t["Variation"].iloc[-1] == "Special cause: concern"  # 50% against 22%, falling is good
    assert t["Rule"].iloc[-1] == "outside the limits"
    words = {
        "common_cause": "Common cause",
        "special_cause_improvement": "Special cause: improvement",
        "special_cause_concern": "Special cause: concern",
    }
    assert list(t["Variation"]) == [words[k] for k in res.data["point_type"]]
    assert t["Rule"].isna().tolist() == res.data["rule"].isna().tolist()
    assert data.notes == ()


def test_spc_chart_marks_withheld_months_and_lists_them_as_withheld():
    """A month whose counts were withheld is not in the SPC result: the line was drawn
    straight across it and nothing said it was there. It breaks the line, is marked [c], and
    its row says withheld; the rules are unchanged (they ran on the released months)."""
    months = _months(13)
    keep = np.arange(13) != 5
    num = np.array([20, 25, 18, 30, 22, 0, 27, 19, 24, 26, 21, 23, 25])[keep]
    res = p_chart(num, np.full(12, 100), months[keep], multiplier=100)
    fig = spc_chart(res, y_title="%", x_title="Month end", withheld=[months[5]])
    t = chart_data(fig).frame
    assert len(t) == 13
    row = t.iloc[5]
    assert row["Month end"] == months[5].strftime("%Y-%m-%d")
    assert np.isnan(row["Value (%)"]) and np.isnan(row["Numerator"])
    assert np.isnan(row["Upper process limit (%)"]) and row["Variation"] == "withheld"
    assert "can span it" in chart_data(fig).notes[0]
    marks = [a for a in fig.layout.annotations if a.text == "[c]"]
    assert [pd.Timestamp(a.x) for a in marks] == [months[5]]
    line = next(tr for tr in fig.data if tr.mode == "lines" and tr.hoverinfo == "skip")
    assert np.isnan(line.y[5]) and not line.connectgaps  # the line breaks at the gap
    # the rules and limits are those of the released months alone
    np.testing.assert_allclose(t["Upper process limit (%)"].drop(5), res.data["upl"].to_numpy())


def test_spc_chart_hover_shows_values_to_two_decimals():
    res = p_chart([1, 2, 2], [3, 3, 3], multiplier=100)
    values = next(t for t in spc_chart(res).data if t.name == "Value")
    assert "%{y:.2f}" in values.hovertemplate  # was %{y}: 33.33333333333333


def test_funnel_chart_data_lists_each_unit_and_a_withheld_one_as_withheld():
    df = pd.DataFrame({"x": [10, 90, 50, None], "n": [100, 100, 100, 40], "u": list("ABCD")})
    df["value"] = df["x"] / df["n"] * 100
    shown = df.dropna()
    limits = funnel_limits("x", "n", data=shown, multiplier=100)
    df["significance"] = funnel_significance("x", "n", data=df)  # D: no label
    fig = funnel_chart(df, limits, x="n", label="u", label_title="Practice", y_title="%")
    data = chart_data(fig)
    t = data.frame
    assert list(t.columns) == ["Practice", "Denominator", "%", "Compared with the limits"]
    assert list(t["Practice"]) == list("ABCD")
    assert list(t["Compared with the limits"][:3]) == list(df["significance"][:3])
    assert set(df["significance"][:3]) >= {"Low (0.001)", "High (0.001)"}
    assert np.isnan(t["%"].iloc[3]) and t["Compared with the limits"].iloc[3] is None
    assert data.notes[0].startswith("Average (centre line): 50.00 (%)")


def test_equity_chart_data_has_counts_values_intervals_and_withheld_deciles():
    view = _view(list(range(1, 11)), [400, 3, *[450 + 30 * d for d in range(3, 11)]])
    fig = equity_chart(view, y_title="%")
    t = chart_data(fig).frame
    assert list(t.columns) == [
        "IMD decile (1 = most deprived)", "Numerator", "Denominator", "Value (%)",
        "95% CI lower (%)", "95% CI upper (%)",
    ]  # fmt: skip
    b = view.breakdowns
    dec = b[(b.breakdown == "imd_decile") & b.group.isin(range(1, 11))].sort_values("group")
    assert list(t["IMD decile (1 = most deprived)"]) == list(range(1, 11))
    np.testing.assert_array_equal(t["Numerator"], dec["numerator"].to_numpy(dtype=float))
    np.testing.assert_array_equal(t["Value (%)"], dec["value"].to_numpy(dtype=float))
    assert np.isnan(t["Value (%)"].iloc[1]) and np.isnan(t["Numerator"].iloc[1])
    # every decile released: the SII line's fitted values are a column too
    full = equity_chart(_view(list(range(1, 11)), [400 + 30 * d for d in range(1, 11)]))
    (line,) = [tr for tr in full.data if tr.name.startswith("SII")]
    data = chart_data(full)
    np.testing.assert_allclose(data.frame["SII line (Percentage)"], line.y)
    assert data.notes[0].startswith(line.name)
