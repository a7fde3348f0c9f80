"""Chart builders produce the expected traces, colours and icons."""

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from pophealth.charts import (
    MDC_COLOURS,
    SIGNIFICANCE_COLOURS,
    equity_chart,
    funnel_chart,
    spc_chart,
)
from pophealth.equity import equity_view
from pophealth.spc import xmr
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
