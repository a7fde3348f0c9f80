"""Plotly figure builders for reports and the web app: funnel plot, SPC chart, equity chart.

Pure functions from results to :class:`plotly.graph_objects.Figure`; no I/O (the report layer
decides how to embed them).

* :func:`funnel_chart` — units against the 95% and 99.8% funnel limits of
  :func:`pophealth.stats.funnel_limits`, coloured by :func:`pophealth.stats.funnel_significance`.
* :func:`spc_chart` — an :class:`pophealth.spc.SPCResult` in NHS England *Making Data Count*
  style: grey common-cause points, blue improvement, orange concern, purple neutral special
  cause, dashed process limits, red target, and the variation and assurance icons (drawn as
  coloured badges with the MDC letter codes).
* :func:`equity_chart` — values by IMD decile with 95% intervals and the fitted SII line from an
  :class:`pophealth.equity.EquityView`.

Colours follow the Making Data Count guidance ("Making Data Count: strengthening your
decisions", NHS England 2019) as used by NHSRplotthedots.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from pophealth.spc import SPCResult

__all__ = ["MDC_COLOURS", "funnel_chart", "spc_chart", "equity_chart"]

MDC_COLOURS: dict[str, str] = {
    "common_cause": "#7B7D7D",
    "special_cause_improvement": "#289DE0",
    "special_cause_concern": "#FAB428",
    "special_cause_neutral_high": "#361475",
    "special_cause_neutral_low": "#361475",
    "target": "#DE1B1B",
    "limit": "#7B7D7D",
}

SIGNIFICANCE_COLOURS: dict[str, str] = {
    "High (0.001)": "#C0392B",
    "High (0.025)": "#E67E22",
    "Not significant": "#7B7D7D",
    "Low (0.025)": "#5DADE2",
    "Low (0.001)": "#1F618D",
}

_SIGNIFICANCE_SYMBOLS = {"High": "triangle-up", "Low": "triangle-down"}

_VARIATION_ICON = {
    "common_cause": ("Common cause", "~"),
    "special_cause_improvement": ("Special cause: improvement", "↑"),
    "special_cause_concern": ("Special cause: concern", "!"),
    "special_cause_neutral_high": ("Special cause: neutral (high)", "H"),
    "special_cause_neutral_low": ("Special cause: neutral (low)", "L"),
}
_ASSURANCE_ICON = {
    "consistent_pass": ("Consistently passing the target", "P", "#289DE0"),
    "consistent_fail": ("Consistently failing the target", "F", "#FAB428"),
    "inconsistent": ("Hit and miss: target within limits", "?", "#7B7D7D"),
}


def funnel_chart(
    points: pd.DataFrame,
    limits: pd.DataFrame,
    *,
    x: str = "denominator",
    y: str = "value",
    label: str | None = None,
    significance: str | None = "significance",
    title: str = "",
    x_title: str = "Denominator",
    y_title: str = "Value",
) -> go.Figure:
    """Funnel plot: one marker per unit, the baseline and the 95% / 99.8% limit curves.

    ``points`` holds ``x`` (denominator, expected events or events, on the same scale as the
    first column of ``limits``) and ``y`` (value on the ``limits`` scale), optionally a
    ``label`` column and the ``significance`` column from ``funnel_significance``.
    """
    fig = go.Figure()
    grid = limits.iloc[:, 0]
    styles = (("3s", "99.8% limits", "dash"), ("2s", "95% limits", "dot"))
    for key, name, dash in styles:
        for side in ("lower", "upper"):
            fig.add_trace(
                go.Scatter(
                    x=grid,
                    y=limits[f"{side}_{key}_limit"],
                    mode="lines",
                    line={"color": MDC_COLOURS["limit"], "dash": dash, "width": 1},
                    name=name,
                    legendgroup=name,
                    showlegend=side == "lower",
                    hoverinfo="skip",
                )
            )
    fig.add_trace(
        go.Scatter(
            x=grid,
            y=limits["baseline"],
            mode="lines",
            line={"color": "#212F3D", "width": 1.5},
            name="Average",
        )
    )
    sig = points[significance] if significance and significance in points else None
    if sig is None:
        groups = [("Units", np.ones(len(points), dtype=bool), "#212F3D", "circle")]
    else:
        # one trace per significance label, so the legend says what each colour means; the
        # direction is also in the marker shape (▲ high, ▼ low), not in colour alone
        labels = sig.astype(object).where(sig.notna(), "No label").astype(str)
        present = list(dict.fromkeys(labels))
        order = [k for k in SIGNIFICANCE_COLOURS if k in present]
        order += [k for k in present if k not in SIGNIFICANCE_COLOURS]
        groups = [
            (
                k,
                (labels == k).to_numpy(),
                SIGNIFICANCE_COLOURS.get(k, "#7B7D7D"),
                _SIGNIFICANCE_SYMBOLS.get(k.split(" ")[0], "circle"),
            )
            for k in order
        ]
    for name, rows, colour, symbol in groups:
        part = points[rows]
        fig.add_trace(
            go.Scatter(
                x=part[x],
                y=part[y],
                mode="markers",
                marker={
                    "color": colour,
                    "symbol": symbol,
                    "size": 9,
                    "line": {"color": "white", "width": 1},
                },
                text=part[label] if label else None,
                hovertemplate=(
                    ("%{text}<br>" if label else "")
                    + f"{x_title}: %{{x:,}}<br>{y_title}: %{{y:.2f}}<extra>{name}</extra>"
                ),
                name=name,
            )
        )
    fig.update_layout(
        title=title, xaxis_title=x_title, yaxis_title=y_title, template="simple_white"
    )
    return fig


def spc_chart(
    result: SPCResult, *, title: str = "", y_title: str = "Value", x_title: str = ""
) -> go.Figure:
    """Making Data Count SPC chart with variation and assurance icons."""
    d = result.data
    fig = go.Figure()
    for col, name, dash in (("upl", "Process limits", "dash"), ("lpl", "Process limits", "dash")):
        fig.add_trace(
            go.Scatter(
                x=d["x"],
                y=d[col],
                mode="lines",
                line={"color": MDC_COLOURS["limit"], "dash": dash, "width": 1, "shape": "hv"},
                name=name,
                legendgroup=name,
                showlegend=col == "upl",
            )
        )
    fig.add_trace(
        go.Scatter(
            x=d["x"],
            y=d["mean"],
            mode="lines",
            name="Mean",
            line={"color": "#212F3D", "width": 1.5, "shape": "hv"},
        )  # fmt: skip
    )
    fig.add_trace(
        go.Scatter(
            x=d["x"],
            y=d["y"],
            mode="lines+markers",
            name="Value",
            line={"color": MDC_COLOURS["common_cause"], "width": 1.5},
            marker={"color": [MDC_COLOURS[t] for t in d["point_type"]], "size": 8},
            customdata=np.stack([d["point_type"], d["rule"].fillna("")], axis=-1),
            hovertemplate="%{x}: %{y}<br>%{customdata[0]} %{customdata[1]}<extra></extra>",
        )
    )
    if result.target is not None:
        fig.add_trace(
            go.Scatter(
                x=[d["x"].iloc[0], d["x"].iloc[-1]],
                y=[result.target, result.target],
                mode="lines",
                line={"color": MDC_COLOURS["target"], "dash": "dashdot"},
                name="Target",
            )
        )
    name, letter = _VARIATION_ICON[result.variation]
    _badge(fig, 0.90, letter, MDC_COLOURS[result.variation], f"Variation: {name}")
    if result.assurance is not None:
        aname, aletter, acol = _ASSURANCE_ICON[result.assurance]
        _badge(fig, 0.98, aletter, acol, f"Assurance: {aname}")
    subtitle = " · ".join(result.warnings)
    fig.update_layout(
        title={"text": title + (f"<br><sup>{subtitle}</sup>" if subtitle else "")},
        xaxis_title=x_title,
        yaxis_title=y_title,
        template="simple_white",
        margin={"r": 140},
    )
    return fig


def _badge(fig: go.Figure, x: float, letter: str, colour: str, hover: str) -> None:
    fig.add_annotation(
        x=x, y=1.08, xref="paper", yref="paper", text=f"<b>{letter}</b>", showarrow=False,
        font={"color": "white", "size": 16}, bgcolor=colour, bordercolor=colour,
        borderpad=6, hovertext=hover, name=hover,
    )  # fmt: skip


def equity_chart(view: object, *, title: str = "", y_title: str | None = None) -> go.Figure:
    """Values by IMD decile (1 = most deprived) with 95% intervals and the fitted SII line.

    ``view`` is an :class:`pophealth.equity.EquityView`; a decile whose value is withheld
    has no point and is marked "[c]" on the axis (a gap alone could be read as no one). The
    SII line is the population-weighted regression fitted at each decile's relative rank.
    """
    b = view.breakdowns  # type: ignore[attr-defined]
    b = b[b["breakdown"] == "imd_decile"]
    # deciles may be numbers or their text ("1" ... "10"); "Unknown" and "Total" are not
    number = pd.to_numeric(b["group"].astype(object), errors="coerce")
    dec = b[number.isin(range(1, 11))].copy()
    dec["group"] = number[number.isin(range(1, 11))].astype(int)
    dec = dec.sort_values("group")
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=dec["group"],
            y=dec["value"],
            mode="markers",
            marker={"color": "#005EB8", "size": 10},
            error_y={
                "type": "data",
                "symmetric": False,
                "array": dec["upper95_0cl"] - dec["value"],
                "arrayminus": dec["value"] - dec["lower95_0cl"],
                "color": "#7B7D7D",
            },
            name="Value (95% CI)",
        )
    )
    for decile in dec.loc[dec["value"].isna(), "group"]:
        fig.add_annotation(
            x=decile, y=0, yref="paper", yanchor="bottom", text="[c]", showarrow=False,
            hovertext=f"IMD decile {decile}: suppressed", font={"color": "#7B7D7D"},
        )  # fmt: skip
    sii = view.sii  # type: ignore[attr-defined]
    if len(sii) and dec["value"].notna().all() and len(dec) == 10:
        row = sii.iloc[0]
        slope = row["value"]
        intercept = row["intercept"]
        pop = dec["denominator"].to_numpy(dtype=float)
        a = pop / pop.sum()
        rank = np.cumsum(a) - a / 2
        fig.add_trace(
            go.Scatter(
                x=dec["group"],
                y=intercept + slope * rank,
                mode="lines",
                line={"color": "#DA291C", "width": 2},
                name=(f"SII {slope:.1f} ({row['lower95_0cl']:.1f} to {row['upper95_0cl']:.1f})"),
            )
        )
    fig.update_layout(
        title=title,
        xaxis={"title": "IMD decile (1 = most deprived)", "dtick": 1},
        yaxis_title=y_title or ("Percentage" if view.multiplier == 100 else "Value"),  # type: ignore[attr-defined]
        template="simple_white",
    )
    return fig
