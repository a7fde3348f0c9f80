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

Each builder also attaches the chart's numbers as a table (:func:`chart_data`), which the HTML
report shows under the chart ("Show the data"): one row per point, a withheld value missing
(shown "[c]"), never a number the chart was not given. Any other figure can carry one too
(:func:`attach_data`); the report reads a figure without one from its traces.

Colours follow the Making Data Count guidance ("Making Data Count: strengthening your
decisions", NHS England 2019) as used by NHSRplotthedots.

Accessibility (WCAG 2.2 AA): every marker has an outline of at least 3:1 contrast against the
white plot (1.4.11; the MDC orange and blue fills are lighter than that), what a colour
means is also in its shape and legend (1.4.1: special-cause points and funnel outliers have
their own symbols; a unit beyond the 95% limit only is hollow, beyond the 99.8% limit
filled), and text drawn on the chart has 4.5:1 contrast (3:1 for the large bold icon
letters). Each builder's :class:`ChartData` carries a ``summary``: a sentence saying what
the chart shows, read as its text alternative and shown with it (the icons' meanings are
otherwise only in hover text).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from pophealth.spc import SPCResult

__all__ = [
    "MDC_COLOURS",
    "MDC_SYMBOLS",
    "contrast_ratio",
    "ChartData",
    "attach_data",
    "chart_data",
    "funnel_chart",
    "spc_chart",
    "equity_chart",
    "variation_words",
]

MDC_COLOURS: dict[str, str] = {
    "common_cause": "#7B7D7D",
    "special_cause_improvement": "#289DE0",
    "special_cause_concern": "#FAB428",
    "special_cause_neutral_high": "#361475",
    "special_cause_neutral_low": "#361475",
    "target": "#DE1B1B",
    "limit": "#7B7D7D",
}

#: each at least 3:1 against white: the 0.025 classes are drawn hollow, so their colour is
#: the only ink (#E67E22 and #5DADE2, the lighter tints used before, were 2.9:1 and 2.5:1)
SIGNIFICANCE_COLOURS: dict[str, str] = {
    "High (0.001)": "#C0392B",
    "High (0.025)": "#CA6F1E",
    "Not significant": "#7B7D7D",
    "Low (0.025)": "#2E86C1",
    "Low (0.001)": "#1F618D",
}

_SIGNIFICANCE_SYMBOLS = {"High": "triangle-up", "Low": "triangle-down"}

#: the outline of every marker: 14:1 against white, whatever the fill (WCAG 1.4.11)
OUTLINE = "#212B32"
#: text drawn on a chart in grey ("[c]" marks): 6.4:1 against white (#7B7D7D was 4.1:1)
MUTED_TEXT = "#4C6272"

#: the shape of each MDC point type, so a special-cause point differs from a common-cause
#: one in shape, not in colour alone (WCAG 1.4.1)
MDC_SYMBOLS: dict[str, str] = {
    "common_cause": "circle",
    "special_cause_improvement": "diamond",
    "special_cause_concern": "square",
    "special_cause_neutral_high": "star",
    "special_cause_neutral_low": "star",
}


def contrast_ratio(a: str, b: str) -> float:
    """The WCAG 2 contrast ratio of two ``#RRGGBB`` colours (1 to 21)."""

    def luminance(colour: str) -> float:
        h = colour.lstrip("#")
        channels = [int(h[i : i + 2], 16) / 255 for i in (0, 2, 4)]
        r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    light, dark = sorted((luminance(a), luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def text_colour_on(background: str) -> str:
    """White or the report's near-black, whichever contrasts more with ``background``."""
    return max(("#FFFFFF", OUTLINE), key=lambda c: contrast_ratio(c, background))


_VARIATION_ICON = {
    "common_cause": ("Common cause", "~"),
    "special_cause_improvement": ("Special cause: improvement", "↑"),
    "special_cause_concern": ("Special cause: concern", "!"),
    "special_cause_neutral_high": ("Special cause: neutral (high)", "H"),
    "special_cause_neutral_low": ("Special cause: neutral (low)", "L"),
}


def variation_words(point_type: str) -> str:
    """A Making Data Count point type in words ("special_cause_improvement" → "Special
    cause: improvement"), as the chart's variation icon names it."""
    return _VARIATION_ICON.get(point_type, (point_type.replace("_", " "), ""))[0]


# the rule's name only: the run lengths are settings of the chart (trend_length, shift_length)
_RULE_WORDS = {
    "outside_limits": "outside the limits",
    "trend": "trend",
    "two_in_three": "two of three near a limit",
    "shift": "shift",
}
_ASSURANCE_ICON = {
    "consistent_pass": ("Consistently passing the target", "P", "#289DE0"),
    "consistent_fail": ("Consistently failing the target", "F", "#FAB428"),
    "inconsistent": ("Hit and miss: target within limits", "?", "#7B7D7D"),
}


@dataclass(frozen=True)
class ChartData:
    """The numbers a chart draws, for the table beside it.

    ``frame``: one row per point; its first column names the point. In a column of numbers a
    missing value is a withheld one (the report shows "[c]"); in a column of words it means
    there is nothing to say. Headers carry their units. ``notes``: sentences shown with the
    table (what the reference lines are, how runs treat a withheld month). ``summary``: what
    the chart shows, in a sentence or two (the chart's text alternative)."""

    frame: pd.DataFrame
    notes: tuple[str, ...] = ()
    summary: str = ""


_DATA = "_pophealth_chart_data"  # where a figure keeps its ChartData (not drawn, not serialised)


def attach_data(
    fig: go.Figure, frame: pd.DataFrame, notes: Sequence[str] = (), summary: str = ""
) -> go.Figure:
    """Give ``fig`` the table of its numbers and a summary (see :class:`ChartData`); returns
    ``fig``."""
    setattr(fig, _DATA, ChartData(frame.reset_index(drop=True), tuple(notes), summary))
    return fig


def chart_data(fig: Any) -> ChartData | None:
    """The table a chart builder attached to ``fig``, or ``None``."""
    return getattr(fig, _DATA, None)


def _with_unit(name: str, unit: str) -> str:
    return name if not unit or unit == name else f"{name} ({unit})"


def _point_names(x: pd.Series) -> pd.Series:
    """x values as a reader names them: a date (no time of day) as YYYY-MM-DD."""
    if pd.api.types.is_datetime64_any_dtype(x):
        stamps = pd.to_datetime(x)
        if bool((stamps.dropna() == stamps.dropna().dt.normalize()).all()):
            return stamps.dt.strftime("%Y-%m-%d").astype(object)
        return stamps.dt.strftime("%Y-%m-%d %H:%M").astype(object)
    return x.reset_index(drop=True)


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
    label_title: str | None = None,
) -> go.Figure:
    """Funnel plot: one marker per unit, the baseline and the 95% / 99.8% limit curves.

    ``points`` holds ``x`` (denominator, expected events or events, on the same scale as the
    first column of ``limits``) and ``y`` (value on the ``limits`` scale), optionally a
    ``label`` column (headed ``label_title`` in the data) and the ``significance`` column from
    ``funnel_significance``. A unit whose ``y`` is missing (withheld) is not drawn and is
    listed as withheld in the chart's data.

    The attached data (:func:`chart_data`) lists every unit with its ``x``, ``y`` and where it
    lies against the limits, and names the average; the limit curves themselves are not
    tabulated (they are drawn on a grid of ``x``, not at the units).
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
        # direction is also in the marker shape (▲ high, ▼ low), not in colour alone, and so
        # is how far: hollow beyond the 95% limit only, filled beyond the 99.8% limit
        labels = sig.astype(object).where(sig.notna(), "No label").astype(str)
        present = list(dict.fromkeys(labels))
        order = [k for k in SIGNIFICANCE_COLOURS if k in present]
        order += [k for k in present if k not in SIGNIFICANCE_COLOURS]
        groups = [
            (
                k,
                (labels == k).to_numpy(),
                SIGNIFICANCE_COLOURS.get(k, "#7B7D7D"),
                _SIGNIFICANCE_SYMBOLS.get(k.split(" ")[0], "circle")
                # hollow: beyond a 95% limit only, or a label the chart does not know (a
                # unit without one drew as a "Not significant" circle)
                + ("-open" if k.endswith("(0.025)") or k not in SIGNIFICANCE_COLOURS else ""),
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
                    # a hollow marker is drawn by its line alone, in its colour
                    "line": {"color": colour, "width": 2}
                    if symbol.endswith("-open")
                    else {"color": OUTLINE, "width": 1},
                },
                text=part[label] if label else None,
                hovertemplate=(
                    ("%{text}<br>" if label else "")
                    + f"{x_title}: %{{x:,}}<br>{y_title}: %{{y:.2f}}<extra>{name}</extra>"
                ),
                name=name,
                # a legend entry for a group whose every unit is withheld would name nothing
                showlegend=bool(part[y].notna().any()),
            )
        )
    fig.update_layout(
        title=title, xaxis_title=x_title, yaxis_title=y_title, template="simple_white"
    )
    names = points[label].astype(object) if label else pd.Series(range(1, len(points) + 1))
    table = pd.DataFrame(
        {
            label_title or (label.replace("_", " ").capitalize() if label else "Unit"): (
                names.to_numpy()
            ),
            x_title: points[x].to_numpy(dtype=float),
            y_title: points[y].to_numpy(dtype=float),
        }
    )
    if sig is not None:
        table["Compared with the limits"] = sig.astype(object).where(sig.notna(), None).to_numpy()
    baseline = limits["baseline"].dropna()
    notes = []
    if len(baseline) and bool((baseline == baseline.iloc[0]).all()):
        notes.append(f"Average (centre line): {float(baseline.iloc[0]):.2f} ({y_title}).")
    notes.append(
        f"The 95% and 99.8% limits are curves over {x_title[:1].lower() + x_title[1:]}, drawn "
        "in the chart"
        + (
            "; 'Compared with the limits': High or Low (0.025) lies beyond a 95% limit, "
            "(0.001) beyond a 99.8% limit."
            if sig is not None
            else "."
        )
    )
    drawn = int(points[y].notna().sum())
    summary = (
        f"Funnel plot of {y_title} against {x_title} for {drawn} units, with the average and "
        "its 95% and 99.8% limits."
    )
    if sig is not None:
        shown = sig[points[y].notna().to_numpy()]
        counts = shown.astype(object).where(shown.notna(), "No label").value_counts()
        order = dict.fromkeys([*(k for k in SIGNIFICANCE_COLOURS if k in counts), *counts.index])
        summary += (
            " Units by where they lie: " + "; ".join(f"{k} {int(counts[k])}" for k in order) + "."
        )
    if drawn < len(points):
        summary += f" {len(points) - drawn} withheld, not drawn."
    return attach_data(fig, table, notes, summary)


def spc_chart(
    result: SPCResult,
    *,
    title: str = "",
    y_title: str = "Value",
    x_title: str = "",
    withheld: Sequence[Any] = (),
) -> go.Figure:
    """Making Data Count SPC chart with variation and assurance icons.

    ``withheld`` lists x values (months) left out of ``result`` because their counts were
    withheld: the value line breaks there, each is marked "[c]" on the axis and listed as
    withheld in the chart's data. The rules themselves are not changed: they ran on the
    released points only, so a run (trend, shift, two of three) counts the points either side
    of a withheld month as neighbours and can span it.

    The attached data (:func:`chart_data`) has one row per point: value, numerator and
    denominator (p-chart), centre line, process limits, target, and the special cause and
    rule that flagged the point.
    """
    d = result.data
    gaps = pd.Series(list(withheld), dtype=object)
    if pd.api.types.is_datetime64_any_dtype(d["x"]):
        gaps = pd.Series(pd.to_datetime(gaps), dtype=d["x"].dtype)
    gaps = gaps[~gaps.isin(d["x"])].drop_duplicates()
    # the value line breaks at a withheld point (a missing y), it is not drawn across it
    line = pd.concat(
        [d[["x", "y"]], pd.DataFrame({"x": gaps, "y": np.nan})], ignore_index=True
    ).sort_values("x", kind="stable")
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
                hovertemplate=f"%{{x}}: %{{y:.2f}}<extra>{'Upper' if col == 'upl' else 'Lower'}"
                " process limit</extra>",
            )
        )
    fig.add_trace(
        go.Scatter(
            x=d["x"],
            y=d["mean"],
            mode="lines",
            name="Mean",
            line={"color": "#212F3D", "width": 1.5, "shape": "hv"},
            hovertemplate="%{x}: %{y:.2f}<extra>Mean</extra>",
        )  # fmt: skip
    )
    if len(gaps):
        fig.add_trace(
            go.Scatter(
                x=line["x"],
                y=line["y"],
                mode="lines",
                showlegend=False,
                hoverinfo="skip",
                line={"color": MDC_COLOURS["common_cause"], "width": 1.5},
                connectgaps=False,
            )  # fmt: skip
        )
    fig.add_trace(
        go.Scatter(
            x=d["x"],
            y=d["y"],
            mode="markers" if len(gaps) else "lines+markers",
            name="Value",
            # the legend names each kind of point below (this trace's own entry would show
            # its first point's colour and shape as if every value had them)
            showlegend=False,
            line={"color": MDC_COLOURS["common_cause"], "width": 1.5},
            marker={
                "color": [MDC_COLOURS[t] for t in d["point_type"]],
                "symbol": [MDC_SYMBOLS.get(t, "circle") for t in d["point_type"]],
                "size": 8,
                "line": {"color": OUTLINE, "width": 1},
            },
            customdata=np.stack([d["point_type"], d["rule"].fillna("")], axis=-1),
            hovertemplate="%{x}: %{y:.2f}<br>%{customdata[0]} %{customdata[1]}<extra></extra>",
        )
    )
    # a legend entry for each kind of point drawn: its colour and shape in words
    for kind in (k for k in MDC_SYMBOLS if k in set(d["point_type"])):
        fig.add_trace(
            go.Scatter(
                x=[None], y=[None], mode="markers", name=variation_words(kind),
                marker={"color": MDC_COLOURS[kind], "symbol": MDC_SYMBOLS.get(kind, "circle"),
                        "size": 8, "line": {"color": OUTLINE, "width": 1}},
                hoverinfo="skip",
            )
        )  # fmt: skip
    for x in gaps:
        fig.add_annotation(
            x=x, y=0, yref="paper", yanchor="bottom", text="[c]", showarrow=False,
            hovertext="withheld (small numbers)", font={"color": MUTED_TEXT},
        )  # fmt: skip
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
    icons = [f"variation icon “{letter}”: {name.lower()}"]
    if result.assurance is not None:
        aname, aletter, acol = _ASSURANCE_ICON[result.assurance]
        _badge(fig, 0.98, aletter, acol, f"Assurance: {aname}")
        icons.append(f"assurance icon “{aletter}”: {aname[:1].lower() + aname[1:]}")
    subtitle = " · ".join(result.warnings)
    fig.update_layout(
        title={"text": title + (f"<br><sup>{subtitle}</sup>" if subtitle else "")},
        xaxis_title=x_title,
        yaxis_title=y_title,
        template="simple_white",
        # the legend at the foot of the chart, so a narrow screen (320 px) keeps the plot's
        # width; the bottom margin leaves it room under the axis title, in rows if need be
        legend={
            "orientation": "h",
            "x": 0,
            "xanchor": "left",
            "y": 0,
            "yanchor": "bottom",
            "yref": "container",
        },
        margin={"r": 20, "b": 150},
        height=520,
    )
    return attach_data(
        fig, *_spc_table(result, gaps, x_title, y_title), _spc_summary(result, gaps, y_title, icons)
    )


def _spc_summary(result: SPCResult, gaps: pd.Series, y_title: str, icons: list[str]) -> str:
    """What an SPC chart shows, in words: its span, last value, centre line, special-cause
    points and the meaning of its icons (drawn as letters whose meaning is otherwise in hover
    text only)."""
    d = result.data
    names = _point_names(d["x"])
    unit = f" ({y_title})" if y_title else ""
    special = d["point_type"] != "common_cause"
    text = (
        f"Statistical process control (SPC) chart{unit}, Making Data Count style: "
        f"{len(d)} points from {names.iloc[0]} to {names.iloc[-1]}; the last "
        f"{float(d['y'].iloc[-1]):.2f}, the centre line {float(d['mean'].iloc[-1]):.2f}"
    )
    if result.target is not None:
        text += f", the target {float(result.target):.2f}"
    text += f". Special-cause points: {int(special.sum())}"
    kinds = d.loc[special, "point_type"].map(variation_words).value_counts()
    if len(kinds):
        text += " (" + ", ".join(f"{k.split(': ')[-1]} {n}" for k, n in kinds.items()) + ")"
    text += ". " + "; ".join(icons)[:1].upper() + "; ".join(icons)[1:] + "."
    if len(gaps):
        text += f" Withheld points, marked [c]: {len(gaps)}."
    if result.warnings:  # shown in the chart's title too
        text += " " + " ".join(w[:1].upper() + w[1:].rstrip(".") + "." for w in result.warnings)
    return text


def _spc_table(
    result: SPCResult, gaps: pd.Series, x_title: str, y_title: str
) -> tuple[pd.DataFrame, list[str]]:
    d = result.data
    rows = pd.concat([d, pd.DataFrame({"x": gaps})], ignore_index=True)
    rows = rows.sort_values("x", kind="stable").reset_index(drop=True)
    released = rows["y"].notna().to_numpy()
    table = pd.DataFrame({x_title or "Point": _point_names(rows["x"])})
    table[_with_unit("Value", y_title)] = rows["y"].to_numpy(dtype=float)
    if result.chart == "p" and {"numerator", "denominator"} <= set(rows.columns):
        table["Numerator"] = rows["numerator"].to_numpy(dtype=float)
        table["Denominator"] = rows["denominator"].to_numpy(dtype=float)
    if rows["period"].nunique() > 1:
        table["Period"] = rows["period"].astype("Int64").astype(object).where(released, None)
    table[_with_unit("Centre line", y_title)] = rows["mean"].to_numpy(dtype=float)
    table[_with_unit("Lower process limit", y_title)] = rows["lpl"].to_numpy(dtype=float)
    table[_with_unit("Upper process limit", y_title)] = rows["upl"].to_numpy(dtype=float)
    if result.target is not None:
        table[_with_unit("Target", y_title)] = float(result.target)
    kind = rows["point_type"].map(lambda t: _VARIATION_ICON.get(t, (None,))[0])
    table["Variation"] = np.where(released, kind.astype(object), "withheld")
    table["Rule"] = rows["rule"].map(_RULE_WORDS).astype(object).where(released, None)
    notes = []
    if len(gaps):
        notes.append(
            "Withheld points ([c]) are left out of the limits and the rules: a run (trend, "
            "shift, two of three) counts the points either side of a withheld one as "
            "neighbours, so it can span it."
        )
    return table, notes


def _badge(fig: go.Figure, x: float, letter: str, colour: str, hover: str) -> None:
    # large bold text (19 px) in white or near-black, whichever contrasts more with the MDC
    # colour: at least 3:1 (white on the MDC orange was 1.8:1)
    fig.add_annotation(
        x=x, y=1.08, xref="paper", yref="paper", text=f"<b>{letter}</b>", showarrow=False,
        font={"color": text_colour_on(colour), "size": 19}, bgcolor=colour,
        bordercolor=OUTLINE, borderpad=5, hovertext=hover, name=hover,
    )  # fmt: skip


def equity_chart(view: object, *, title: str = "", y_title: str | None = None) -> go.Figure:
    """Values by IMD decile (1 = most deprived) with 95% intervals and the fitted SII line.

    ``view`` is an :class:`pophealth.equity.EquityView`; a decile whose value is withheld
    has no point and is marked "[c]" on the axis (a gap alone could be read as no one). The
    SII line is the population-weighted regression fitted at each decile's relative rank.

    The attached data (:func:`chart_data`) has one row per decile: the released numerator and
    denominator, the value and its 95% interval ("[c]" where withheld) and, when the line is
    drawn, its fitted value.
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
            marker={"color": "#005EB8", "size": 10, "line": {"color": OUTLINE, "width": 1}},
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
            hovertext=f"IMD decile {decile}: suppressed", font={"color": MUTED_TEXT},
        )  # fmt: skip
    sii = view.sii  # type: ignore[attr-defined]
    fitted, sii_name = None, ""
    if len(sii) and dec["value"].notna().all() and len(dec) == 10:
        row = sii.iloc[0]
        slope = row["value"]
        intercept = row["intercept"]
        pop = dec["denominator"].to_numpy(dtype=float)
        a = pop / pop.sum()
        rank = np.cumsum(a) - a / 2
        fitted = intercept + slope * rank
        sii_name = f"SII {slope:.1f} ({row['lower95_0cl']:.1f} to {row['upper95_0cl']:.1f})"
        fig.add_trace(
            go.Scatter(
                x=dec["group"],
                y=fitted,
                mode="lines",
                line={"color": "#DA291C", "width": 2},
                name=sii_name,
            )
        )
    unit = y_title or ("Percentage" if view.multiplier == 100 else "Value")  # type: ignore[attr-defined]
    fig.update_layout(
        title=title,
        xaxis={"title": "IMD decile (1 = most deprived)", "dtick": 1},
        yaxis_title=unit,
        template="simple_white",
    )
    table = pd.DataFrame({"IMD decile (1 = most deprived)": dec["group"].to_numpy()})
    for col, name in (("numerator", "Numerator"), ("denominator", "Denominator")):
        if col in dec:
            table[name] = dec[col].to_numpy(dtype=float)
    table[_with_unit("Value", unit)] = dec["value"].to_numpy(dtype=float)
    table[_with_unit("95% CI lower", unit)] = dec["lower95_0cl"].to_numpy(dtype=float)
    table[_with_unit("95% CI upper", unit)] = dec["upper95_0cl"].to_numpy(dtype=float)
    notes = []
    released = dec.loc[dec["value"].notna()]
    summary = (
        f"{unit} in each IMD decile (1 = most deprived, 10 = least), with 95% intervals: "
        f"{len(released)} deciles drawn, {len(dec) - len(released)} withheld ([c])"
    )
    if len(released):
        low = released.loc[released["value"].idxmin()]
        high = released.loc[released["value"].idxmax()]
        summary += (
            f", lowest {float(low['value']):.1f} (decile {int(low['group'])}), highest "
            f"{float(high['value']):.1f} (decile {int(high['group'])})"
        )
    summary += "."
    if fitted is not None:
        table[_with_unit("SII line", unit)] = fitted
        notes.append(f"{sii_name}: the slope index of inequality (95% CI), fitted at each decile.")
        summary += f" Line: the fitted slope index of inequality, {sii_name}."
    return attach_data(fig, table, notes, summary)
