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
    units = fig.data[-1]
    assert list(units.marker.color) == [SIGNIFICANCE_COLOURS[s] for s in df["significance"]]
    assert sum(t.name == "99.8% limits" for t in fig.data) == 2
    assert np.allclose(fig.data[0].y, limits["lower_3s_limit"])


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
