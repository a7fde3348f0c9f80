"""Outputs of a run: CSV files by audience and a self-contained HTML report.

The HTML report carries plotly.js inline, so it opens offline (no network, no
CDN). It shows aggregate outputs only — every one of which has passed the
disclosure-control rule; patient-level worklists go to a separate folder for the
care team and are only counted in the report.

Every chart has its numbers beside it: a "Show the data" table under the chart (an HTML
``<details>``, open when the page is printed), with the same number formatting and "[c]"
markers as the other tables. It is the table the chart's builder attached
(:func:`pophealth.charts.chart_data`) or, for any other figure, one read from its traces:
the points' categories and values, error bars as an interval, per-point labels, heatmap
cells, map areas. Numbers a trace carries only for its hover text (``customdata``) are not
tabulated.

Accessibility (WCAG 2.2 AA, as the Public Sector Bodies Accessibility Regulations 2018 ask
of an NHS body): a skip link and labelled landmarks (header, a "Contents" nav, main,
footer); one h1 and no skipped heading level; each chart an image (``role="img"``) whose
text alternative names its kind, title, caption and what it shows, with the numbers in
the table under it; every table with a caption and ``th`` cells with ``scope``, in a
scrolling region a keyboard can reach; a visible focus indicator on every link, summary and
scrolling region; text at 4.5:1 contrast or more; a page that reflows at 320 CSS px (only
tables and charts scroll sideways); plotly's hover labels dismissed with Escape and never
the only place a number is; no plotly toolbar (its buttons were hundreds of tab stops
hidden until hover); and a list of the abbreviations the page uses.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pophealth import __version__
from pophealth.disclosure import DEFAULT_POLICY
from pophealth.programmes import Figure, Output, ProgrammeResult

AGGREGATE_DIR = "aggregate"
PATIENT_DIR = "patient-level"

PATIENT_README = """\
PATIENT-LEVEL OUTPUTS — FOR THE DIRECT CARE TEAM ONLY

These files list pseudonymous patients for proactive review. They are not
disclosure-controlled and must not be shared outside the care team, published,
or attached to the aggregate report. Re-identification is done only inside the
practice's clinical system.

READING THE COLUMNS

- rank, rank_in_practice, rank_in_pcn: 1 is the first to review.
- imd_decile: deprivation of the patient's area (English Indices of Deprivation);
  1 is the MOST deprived tenth of areas in England, 10 the least.
- core20: the area is in England's most deprived 20%.
- no2_quintile, pm_quintile: air pollution of the area (nitrogen dioxide,
  particulates); 5 is the MOST polluted fifth of areas in England, 1 the least.
- Columns ending _12m are about the 12 months up to the index date. Counts of
  medicines are issues (prescriptions): one issue of two inhalers counts once.
- amr: asthma medication ratio, preventer issues / (preventer + reliever issues);
  below 0.5 is low.
- Dates are YYYY-MM-DD. An empty cell has no value (not recorded, or does not
  apply: no AMR without an inhaler issued); a zero is written 0.
- Every column of each list is described in docs/programmes/<programme>.md.
"""


def write_outputs(result: ProgrammeResult, out: Path) -> dict[str, list[Path]]:
    """Write a programme's tables as CSV: aggregates and patient lists in separate folders.

    The programme's folders (``aggregate/<programme>/``, ``patient-level/<programme>/``)
    then hold this run's tables only: a CSV an earlier run wrote there and this one did not
    (a worklist of a PCN that now has nobody listed, say) is removed once every table is
    written, so an old list cannot pass for a current one."""
    written: dict[str, list[Path]] = {"aggregate": [], "patient": []}
    for output in result.outputs:
        folder = out / (AGGREGATE_DIR if output.kind == "aggregate" else PATIENT_DIR)
        folder = folder / result.programme
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{output.name}.csv"
        # a temporary name of this process, removed if the write fails
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            _whole_as_integers(output.frame).to_csv(tmp, index=False)
            tmp.replace(path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        written[output.kind].append(path)
    kept = {p.resolve() for paths in written.values() for p in paths}
    for folder in (out / AGGREGATE_DIR / result.programme, out / PATIENT_DIR / result.programme):
        if folder.is_dir():
            for stale in folder.glob("*.csv"):
                if stale.resolve() not in kept:
                    stale.unlink()
    if written["patient"]:
        (out / PATIENT_DIR / "README.txt").write_text(PATIENT_README)
    return written


def _whole_as_integers(frame: pd.DataFrame) -> pd.DataFrame:
    """Float columns holding only whole numbers (released counts are floats, as a withheld
    count is missing) written as integers: "85", not "85.0"; missing stays empty."""
    out = frame.copy()
    for col in out.columns:
        values = out[col]
        if pd.api.types.is_float_dtype(values):
            finite = values.dropna()
            if (
                len(finite)
                and bool((finite == finite.round()).all())
                and finite.abs().max() < 2**53
            ):
                out[col] = values.astype("Int64")
    return out


def _scrolling(table: str, label: str) -> str:
    """A table in a region that scrolls sideways when it is wider than the page: the region
    is named as the table's caption and takes keyboard focus, so a keyboard can scroll it
    (WCAG 2.1.1)."""
    return (
        f"<div class='scroll' role='region' tabindex='0' aria-label='{html.escape(label)}'>"
        f"{table}</div>"
    )


def _table_html(output: Output, max_rows: int = 60) -> str:
    frame = output.frame
    shown = _formatted(frame.head(max_rows))
    caption = f"{output.name}: {output.description}"
    head = "".join(f"<th scope='col'>{html.escape(str(c))}</th>" for c in shown.columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell_text(v))}</td>" for v in row) + "</tr>"
        for row in shown.itertuples(index=False, name=None)
    )
    # the name and description are shown above the table; the caption gives them to a
    # screen reader that meets the table on its own (a list of tables, say)
    body = _scrolling(
        f"<table class='data'><caption class='visually-hidden'>{html.escape(caption)}</caption>"
        f"<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>",
        caption,
    )
    more = (
        f"<p class='more'>First {max_rows} of {len(frame):,} rows; all rows in the CSV.</p>"
        if len(frame) > max_rows
        else ""
    )
    note = (
        f"<p class='disclosure'>Disclosure control: "
        f"{html.escape(output.disclosure.rstrip('. '))}. <code>[c]</code> = suppressed.</p>"
        if output.disclosure
        else ""
    )
    return (
        f"<h4>{html.escape(output.name)}</h4><p>{html.escape(output.description)}</p>"
        f"{note}{body}{more}"
    )


def _cell_text(value: object) -> str:
    """A cell of a formatted table as text: missing as empty, dates as YYYY-MM-DD."""
    if isinstance(value, str):
        return value
    if _missing(value):
        return ""
    return _text(value)


def _format_number(value: float, whole: bool, separators: bool = True) -> str:
    if pd.isna(value):
        return "[c]"
    sep = "," if separators else ""
    if whole:
        return f"{value:{sep}.0f}"
    if value != 0 and abs(value) < 0.01:  # a small p-value or rate: 2 significant figures
        decimals = 1 - math.floor(math.log10(abs(value)))
        return f"{value:.{decimals}f}"
    return f"{value:{sep}.2f}"


def _formatted(frame: pd.DataFrame) -> pd.DataFrame:
    """Numbers as a reader expects them: whole counts with thousands separators (none in a
    year), other values to 2 decimals (below 0.01, 2 significant figures), never in
    exponent form; missing numbers shown as [c] (suppressed), missing text blank."""
    out = frame.copy()
    for col in out.columns:
        values = out[col]
        if pd.api.types.is_bool_dtype(values):
            continue
        if pd.api.types.is_numeric_dtype(values):
            finite = values.dropna()
            whole = bool(len(finite)) and bool((finite == finite.round()).all())
            separators = "year" not in str(col).lower()
            out[col] = [_format_number(v, whole, separators) for v in values]
        else:
            out[col] = values.astype(object).where(values.notna(), "")
    return out


WITHHELD = "[c]"
#: rows of a chart's data table shown in the page (a map of every LSOA could be thousands)
MAX_CHART_ROWS = 1000


def _chart_data_html(fig: Figure) -> str:
    """The "Show the data" table under a chart: its caption, headers with units, a row
    header per point, numbers formatted as in the report's tables, withheld as [c]."""
    from pophealth.charts import chart_data  # plotly loads when a chart is drawn

    attached = chart_data(fig.figure)
    tables = [(attached.frame, list(attached.notes))] if attached else _traces_data(fig.figure)
    parts = []
    tables = [(frame, notes) for frame, notes in tables if len(frame.columns)]
    for i, (frame, notes) in enumerate(tables):
        caption = f"Data for the chart “{fig.title}”"
        if len(tables) > 1:
            caption += f", part {i + 1}"
        parts.append(_data_table(frame, caption, notes))
    if not parts:
        parts.append("<p class='caption'>This chart draws no data.</p>")
    return (
        "<details class='chart-data'><summary>Show the data</summary>"
        + "".join(parts)
        + "</details>"
    )


def _attached_summary(fig: Figure) -> str:
    from pophealth.charts import chart_data

    attached = chart_data(fig.figure)
    return attached.summary if attached else ""


def _data_table(frame: pd.DataFrame, caption: str, notes: list[str]) -> str:
    shown = frame.head(MAX_CHART_ROWS)
    cells = _cells(shown)
    head = "".join(f"<th scope='col'>{html.escape(str(c))}</th>" for c in shown.columns)
    rows = []
    for r in range(len(shown)):
        first, *rest = (cells[c][r] for c in range(len(shown.columns)))
        rows.append(
            f"<tr><th scope='row'>{html.escape(first)}</th>"
            + "".join(f"<td>{html.escape(v)}</td>" for v in rest)
            + "</tr>"
        )
    more = (
        f"<p class='more'>The first {MAX_CHART_ROWS:,} points are listed; the chart has "
        f"{len(frame):,}.</p>"
        if len(frame) > MAX_CHART_ROWS
        else ""
    )
    withheld = any(WITHHELD in col for col in cells)
    notes = [*notes, *(["[c] = withheld (small numbers)."] if withheld else [])]
    text = "".join(f"<p class='caption'>{html.escape(n)}</p>" for n in notes)
    table = (
        f"<table class='data chart-table'><caption>{html.escape(caption)}"
        f"</caption><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )
    return f"{_scrolling(table, caption)}{more}{text}"


def _is_number(v: object) -> bool:
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)


def _missing(v: object) -> bool:
    """None, pandas' NA, a NaN, or a missing date or time (NaT, numpy's or pandas')."""
    if v is None or v is pd.NA or v is pd.NaT:
        return True
    if isinstance(v, float | np.floating):
        return math.isnan(v)
    return isinstance(v, np.datetime64 | np.timedelta64) and bool(np.isnat(v))


def _cells(frame: pd.DataFrame) -> list[list[str]]:
    """Each column's cells as text. A column of numbers (the marker "[c]" allowed among
    them) shows a missing value as [c], whole numbers with thousands separators (none in a
    year), others as in :func:`_format_number`; dates as YYYY-MM-DD; words as they are."""
    out = []
    for col in frame.columns:
        values = list(frame[col])
        present = [v for v in values if not _missing(v)]
        if pd.api.types.is_numeric_dtype(frame[col]) and not pd.api.types.is_bool_dtype(frame[col]):
            numeric = True  # a column of numbers, even one whose every value is withheld
        else:
            numeric = bool(present) and all(_is_number(v) or v == WITHHELD for v in present)
        if numeric:
            nums = [float(v) for v in present if _is_number(v)]
            whole = bool(nums) and all(n == round(n) for n in nums)
            seps = "year" not in str(col).lower()
            out.append(
                [
                    WITHHELD
                    if _missing(v) or v == WITHHELD
                    else _format_number(float(v), whole, seps)
                    for v in values
                ]
            )
        else:
            out.append(["" if _missing(v) else _text(v) for v in values])
    return out


def _text(v: object) -> str:
    if isinstance(v, np.datetime64 | pd.Timestamp | dt.datetime):
        t = pd.Timestamp(v)
        return t.strftime("%Y-%m-%d") if t == t.normalize() else t.strftime("%Y-%m-%d %H:%M")
    if isinstance(v, dt.date):
        return v.isoformat()
    if _is_number(v):
        f = float(v)
        return f"{f:.0f}" if f == round(f) else f"{f:g}"
    return str(v)


def _array(value: Any) -> np.ndarray | None:
    """A trace attribute as an array (plotly may hold numbers as base64 ``bdata``)."""
    if value is None:
        return None
    if isinstance(value, dict) and "bdata" in value:
        a = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        shape = value.get("shape")
        if shape:
            a = a.reshape([int(n) for n in str(shape).split(",")])
        return a
    if isinstance(value, str | bytes):
        return None
    a = np.asarray(value)
    if a.dtype.kind == "M":  # dates: as timestamps (as objects numpy gives nanoseconds)
        return np.array(list(pd.to_datetime(a.ravel())), dtype=object).reshape(a.shape)
    return a.astype(object)


def _axis_title(axis: Any, default: str) -> str:
    text = axis.title.text if axis is not None and axis.title is not None else None
    return str(text) if text else default


def _reads_negative_as_positive(axis: Any) -> bool:
    """An axis that labels its negative ticks as positive numbers (a population pyramid's
    left side): a bar's value there is its length."""
    vals, texts = axis.tickvals, axis.ticktext
    if vals is None or texts is None:
        return False
    return any(float(v) < 0 for v in vals) and not any(
        "-" in str(t) or "\u2212" in str(t) for t in texts
    )


#: trace types plotly bins or summarises in the browser: the page would carry every value
#: they are given (one per patient, say), not released counts
BROWSER_AGGREGATED = frozenset(
    {"histogram", "histogram2d", "histogram2dcontour", "box", "violin", "densitymap",
     "densitymapbox"}
)  # fmt: skip


def _refuse_unaggregated(programme: str, fig: Figure) -> None:
    for t in fig.figure.data:
        if t.type in BROWSER_AGGREGATED:
            raise ValueError(
                f"{programme}: chart {fig.title!r} draws a {t.type} trace, which plotly bins "
                "or summarises in the browser, so the report would carry the values it was "
                "given unreleased; count them into bins, release the counts "
                "(pophealth.disclosure) and draw bars"
            )


def _traces_data(fig: Any) -> list[tuple[pd.DataFrame, list[str]]]:
    """A chart's numbers read from its traces, for a figure no builder gave a table.

    x/y traces (bars, lines, markers) give one row per point: the series (trace name), the
    category, the value (the category is y for horizontal bars), an interval from error bars
    and a label from per-point text; a text-only trace gives its text as the value (a "[c]"
    marker). Heatmaps give a grid, pies a row per slice, maps one row per area (an area drawn
    without a value — hover text not showing it — is withheld). Missing values are withheld
    ([c])."""
    layout = fig.layout
    x_title = _axis_title(layout.xaxis, "Category")
    y_title = _axis_title(layout.yaxis, "Value")
    tables: list[tuple[pd.DataFrame, list[str]]] = []
    points: list[pd.DataFrame] = []
    maps = [t for t in fig.data if t.type.startswith("choropleth")]
    map_value = next((c for c in map(_colorbar_title, maps) if c), "Value")
    # a chart of horizontal bars reads its categories on y, for every trace drawn on it
    sideways = any(getattr(t, "orientation", None) == "h" for t in fig.data)
    for t in fig.data:
        if t.visible is False:
            continue
        kind = t.type
        if kind == "heatmap":
            z = _array(t.z)
            if z is None:
                continue
            z = np.asarray(z, dtype=float).reshape(len(z), -1)
            xs = _array(t.x) if t.x is not None else np.arange(z.shape[1])
            ys = _array(t.y) if t.y is not None else np.arange(z.shape[0])
            grid = pd.DataFrame(z, columns=[_text(v) for v in xs])
            grid.insert(0, y_title, [_text(v) for v in ys])
            tables.append((grid, [f"Rows: {y_title}; columns: {x_title}."]))
        elif kind == "pie":
            labels, values = _array(t.labels), _array(t.values)
            if labels is None or values is None:
                continue
            number = pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce")
            points.append(
                pd.DataFrame({"_series": t.name, "Category": list(labels), "Value": number})
            )
        elif kind.startswith("choropleth"):
            locations = _array(t.locations)
            if locations is None:
                continue
            z = _array(t.z)
            shows = t.hovertemplate is None or "%{z" in str(t.hovertemplate)
            values = (
                np.asarray(z, dtype=float)
                if z is not None and shows
                else np.full(len(locations), np.nan)
            )
            points.append(pd.DataFrame({"_area": locations, map_value: values}))
        elif hasattr(t, "x") and hasattr(t, "y"):
            points.append(_xy_points(t, layout, x_title, y_title, sideways))
    if points:
        frame = pd.concat(points, ignore_index=True)
        if "_series" in frame and frame["_series"].nunique(dropna=True) <= 1:
            frame = frame.drop(columns="_series")
        frame = frame.rename(columns={"_series": "Series", "_area": "Area"})
        tables.insert(0, (frame, []))
    return tables


def _colorbar_title(t: Any) -> str:
    try:
        return str(t.colorbar.title.text or "")
    except AttributeError:
        return ""


def _xy_points(t: Any, layout: Any, x_title: str, y_title: str, sideways: bool) -> pd.DataFrame:
    horizontal = sideways or getattr(t, "orientation", None) == "h"
    xs, ys = _array(t.x), _array(t.y)
    n = len(xs) if xs is not None else len(ys) if ys is not None else 0
    xs = xs if xs is not None else np.arange(n)
    ys = ys if ys is not None else np.arange(n)
    category, value = (ys, xs) if horizontal else (xs, ys)
    cat_title, val_title = (y_title, x_title) if horizontal else (x_title, y_title)
    texts = _array(t.text) if getattr(t, "text", None) is not None else None
    mode = str(getattr(t, "mode", "") or "")
    frame = pd.DataFrame({"_series": [t.name] * n, cat_title: list(category)})
    if mode == "text" and texts is not None:
        frame[val_title] = [str(v) for v in texts]
        return frame
    number = pd.to_numeric(pd.Series(list(value), dtype=object), errors="coerce")
    axis = layout.xaxis if horizontal else layout.yaxis
    if _reads_negative_as_positive(axis):
        number = number.abs()
    frame[val_title] = number.to_numpy(dtype=float)
    bars = t.error_x if horizontal else t.error_y
    if bars is not None and bars.type == "data" and bars.array is not None:
        up = np.asarray(_array(bars.array), dtype=float)
        down = up if bars.symmetric is not False else _array(bars.arrayminus)
        down = np.asarray(down if down is not None else up, dtype=float)
        centre = frame[val_title].to_numpy(dtype=float)
        frame["Interval: lower"] = centre - down
        frame["Interval: upper"] = centre + up
    if texts is not None and len(texts) == n:
        frame["Label"] = [None if _missing(v) else str(v) for v in texts]
    return frame


#: plotly's options for every chart: no toolbar (its buttons took keyboard focus while
#: invisible, 10 to a chart, and were shown on hover only), redrawn when the page's width
#: changes (so it reflows at 320 px and at 400% zoom)
PLOTLY_CONFIG = {"displayModeBar": False, "displaylogo": False, "responsive": True}

#: abbreviations the report's text may use, with what they stand for; the page lists those
#: it uses (WCAG 3.1.4, a glossary)
ABBREVIATIONS: dict[str, str] = {
    "A&E": "accident and emergency (department)",
    "AAC": "Accelerated Access Collaborative (NHS England), whose severe asthma pathway "
    "sets the referral waits",
    "AF": "atrial fibrillation",
    "AMR": "asthma medication ratio: preventer issues ÷ (preventer + reliever issues)",
    "BP": "blood pressure",
    "BTS/SIGN": "British Thoracic Society / Scottish Intercollegiate Guidelines Network "
    "(the British asthma guideline)",
    "CHA2DS2-VASc": "a score of stroke risk in atrial fibrillation",
    "CKD": "chronic kidney disease",
    "CI": "confidence interval (95% unless stated)",
    "COPD": "chronic obstructive pulmonary disease",
    "CSV": "comma-separated values (a spreadsheet file)",
    "CVD": "cardiovascular disease",
    "CVDPREVENT": "the national audit of cardiovascular disease prevention in general practice",
    "DBP": "diastolic blood pressure",
    "DOAC": "direct oral anticoagulant",
    "ED": "emergency department",
    "ERS/ATS": "European Respiratory Society / American Thoracic Society",
    "FH": "familial hypercholesterolaemia",
    "GP": "general practice",
    "HDL": 'high-density lipoprotein ("good") cholesterol',
    "ICS": "inhaled corticosteroid (a preventer inhaler)",
    "IIF": "Investment and Impact Fund (NHS England's incentive scheme for primary care networks)",
    "IMD": "Index of Multiple Deprivation (English Indices of Deprivation); decile or "
    "quintile 1 is the most deprived",
    "ISAC": "Integrated Severe Asthma Care (a programme finding people with severe asthma in "
    "primary care)",
    "LADS": "London Asthma Decision Support",
    "LDL": "low-density lipoprotein cholesterol",
    "LSOA": "lower layer super output area: a small area of about 1,500 people",
    "MHCLG": "Ministry of Housing, Communities and Local Government",
    "NEL": "North East London",
    "NHS": "National Health Service",
    "NHSBSA": "NHS Business Services Authority",
    "NICE": "National Institute for Health and Care Excellence",
    "NO2": "nitrogen dioxide (air pollution); quintile 5 is the most polluted",
    "NRAD": "National Review of Asthma Deaths",
    "OCS": "oral corticosteroid (such as prednisolone)",
    "ONS": "Office for National Statistics",
    "OS": "Ordnance Survey",
    "PAD": "peripheral arterial disease",
    "PCN": "primary care network: general practices working together",
    "QOF": "Quality and Outcomes Framework",
    "QRISK3": "a score of the 10-year risk of a heart attack or stroke",
    "RAG": "red, amber, green (a rating)",
    "RCP": "Royal College of Physicians",
    "RII": "relative index of inequality",
    "SABA": "short-acting beta-2 agonist (a reliever inhaler)",
    "SAC": "severe asthma centre",
    "SBP": "systolic blood pressure",
    "SII": "slope index of inequality: the gap between the most and least deprived, fitted "
    "across all deciles",
    "SNOMED CT": "the clinical terminology of NHS records",
    "SPC": "statistical process control",
    "T1DM": "type 1 diabetes",
    "TIA": "transient ischaemic attack",
    "UK": "United Kingdom",
    "UTC": "Coordinated Universal Time",
}


def _abbreviations_used(text: str) -> list[str]:
    """The abbreviations of :data:`ABBREVIATIONS` that appear in ``text`` as words (a plural
    "CIs" or a compound "LADS-style" counts)."""
    return [
        a for a in sorted(ABBREVIATIONS, key=str.lower)
        if re.search(rf"(?<!\w){re.escape(a)}s?(?!\w)", text)
    ]  # fmt: skip


def _visible_text(markup: str) -> str:
    """The words of an HTML fragment, scripts and tags removed."""
    text = re.sub(r"<script\b.*?</script>", " ", markup, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", text))


def _glossary(text: str) -> str:
    used = _abbreviations_used(text)
    if not used:
        return ""
    items = "".join(
        f"<dt>{html.escape(a)}</dt><dd>{html.escape(ABBREVIATIONS[a])}</dd>" for a in used
    )
    return (
        "<section aria-labelledby='abbreviations'><h2 id='abbreviations'>Abbreviations</h2>"
        f"<dl class='glossary'>{items}</dl></section>"
    )


_CHART_KINDS = {"heatmap": "tile chart (heatmap)", "pie": "pie chart"}


def _chart_description(fig: Figure) -> str:
    """What a chart is, in words, for its text alternative: the summary its builder gave
    (:class:`pophealth.charts.ChartData`) or its kind, axes and series read from its traces;
    and where its numbers are."""
    from pophealth.charts import chart_data

    figure = fig.figure
    attached = chart_data(figure)
    drawn = [t for t in figure.data if t.visible is not False]
    if attached and attached.summary:
        text = attached.summary
    elif not drawn:
        return "This chart draws no data."
    else:
        kinds = []
        for t in drawn:
            mode = str(getattr(t, "mode", "") or "")
            if t.type == "bar":
                kinds.append("horizontal bar chart" if t.orientation == "h" else "bar chart")
            elif t.type.startswith("scatter") and mode != "text":
                kinds.append("line chart" if "lines" in mode or not mode else "dot chart")
            elif t.type.startswith("choropleth"):
                kinds.append("map")
            elif t.type in _CHART_KINDS:
                kinds.append(_CHART_KINDS[t.type])
        kinds = list(dict.fromkeys(kinds)) or ["chart"]
        text = " and ".join(kinds)
        text = text[:1].upper() + text[1:]
        layout = figure.layout
        x_title = _axis_title(layout.xaxis, "")
        y_title = _axis_title(layout.yaxis, "")
        if any(getattr(t, "orientation", None) == "h" for t in drawn):
            x_title, y_title = y_title, x_title
        if x_title and y_title:
            text += f" of {y_title} by {x_title}"
        if any(t.type == "heatmap" and t.texttemplate for t in drawn):
            text += ", each tile's value written on it"
        series = [
            str(t.name) for t in drawn if t.name and t.showlegend is not False and _draws_marks(t)
        ]
        series = list(dict.fromkeys(series))
        if len(series) > 1:
            text += f"; series: {', '.join(series)}"
        text += "."
    return text + " Its numbers are in the table under “Show the data”."


def _draws_marks(trace: Any) -> bool:
    """A trace that draws marks (not a text-only one such as "[c]" markers)."""
    return str(getattr(trace, "mode", "") or "") != "text"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Arial,sans-serif;margin:0;color:#212b32;
background:#f0f4f5;overflow-wrap:break-word}
a{color:#005eb8}code{overflow-wrap:anywhere}
a:focus-visible,summary:focus-visible{outline:3px solid #212b32;outline-offset:1px;
background-color:#ffeb3b;color:#212b32}
.scroll:focus-visible,main:focus-visible{outline:3px solid #212b32;outline-offset:2px}
.skip{position:absolute;left:.5rem;top:-4rem;padding:.5rem 1rem;background:#fff}
.skip:focus{top:.5rem}
.visually-hidden{position:absolute!important;width:1px;height:1px;margin:-1px;padding:0;
overflow:hidden;clip-path:inset(50%);white-space:nowrap;border:0}
header{background:#005eb8;color:#fff;padding:1.2rem 2rem}
header h1{margin:0;font-size:1.6rem} header p{margin:.3rem 0 0}
main{max-width:1200px;margin:0 auto;padding:1rem 2rem}
section{background:#fff;margin:1rem 0;padding:1rem 1.5rem;border-radius:4px}
h2{color:#005eb8;border-bottom:2px solid #e8edee;padding-bottom:.3rem}
table.data{border-collapse:collapse;font-size:.85rem}
table.data th,table.data td{padding:.25rem .6rem;border-bottom:1px solid #e8edee;text-align:right;
white-space:nowrap}
table.data th{background:#e8edee}
.scroll{overflow-x:auto;position:relative}
figure{margin:0 0 1rem}.more,.disclosure,.caption{color:#4c6272;font-size:.85rem}
.kpis{display:flex;gap:1rem;flex-wrap:wrap}.kpi{background:#e8edee;padding:.6rem 1rem;
border-radius:4px}.kpi b{display:block;font-size:1.4rem}
.notes li{color:#4c6272;font-size:.9rem} footer{color:#4c6272;font-size:.8rem;padding:1rem 2rem}
nav ul{list-style:none;padding:0;margin:.5rem 0;display:flex;flex-wrap:wrap;gap:.25rem 1.5rem}
nav a{display:inline-block;padding:.25rem 0;min-height:24px}
dl.glossary{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem}
dl.glossary dt{font-weight:bold}dl.glossary dd{margin:0}
details.chart-data{margin:.5rem 0 0}details.chart-data summary{cursor:pointer;color:#005eb8;
text-decoration:underline;padding:.25rem 0;min-height:24px}
@media (max-width:40em){header,footer{padding:1rem}main{padding:.5rem}
section{padding:.75rem;margin:.5rem 0}dl.glossary{grid-template-columns:1fr}
dl.glossary dd{margin:0 0 .5rem}}
table.chart-table caption{text-align:left;color:#4c6272;font-size:.85rem;padding:.2rem 0}
table.chart-table tbody th{background:none;font-weight:normal;text-align:left}
@media print{body{background:#fff}section{break-inside:auto}
.scroll{overflow:visible}table.data th,table.data td{white-space:normal}
details.chart-data::details-content{content-visibility:visible;display:block}
details.chart-data>summary{list-style:none;color:#212b32;font-weight:bold}
details.chart-data>summary::-webkit-details-marker{display:none}}
"""

# the data tables are open on paper: the CSS above does it where ::details-content exists,
# and this opens them for printing (and closes them again) where it does not
_PRINT_JS = """
addEventListener('beforeprint',()=>{for(const d of document.querySelectorAll(
'details.chart-data:not([open])')){d.open=true;d.dataset.printOpened='1';}});
addEventListener('afterprint',()=>{for(const d of document.querySelectorAll(
'details.chart-data[data-print-opened]')){d.open=false;delete d.dataset.printOpened;}});
addEventListener('keydown',e=>{if(e.key==='Escape'&&window.Plotly){for(const g of
document.querySelectorAll('.js-plotly-plot'))Plotly.Fx.unhover(g);}});
"""
# (the last line: Escape dismisses a chart's hover label, WCAG 1.4.13)


def render_html(
    results: Sequence[ProgrammeResult],
    *,
    title: str,
    subtitle: str = "",
    files: dict[str, list[Path]] | None = None,
    out: Path | None = None,
) -> str:
    """A self-contained HTML report of programme results (plotly.js inlined)."""
    from plotly.offline import get_plotlyjs

    parts: list[str] = []
    nav = []
    for result in results:
        anchor = f"prog-{result.programme}"
        nav.append(f"<li><a href='#{anchor}'>{html.escape(result.title)}</a></li>")
        block = [f"<h2 id='{anchor}'>{html.escape(result.title)}</h2>"]
        block.append(
            f"<p class='caption'>Index date {result.index_date.isoformat()} · engine "
            f"{html.escape(result.engine)}</p>"
        )
        if result.headline:
            kpis = "".join(
                f"<div class='kpi'>{html.escape(str(k))}<b>{html.escape(str(v))}</b></div>"
                for k, v in result.headline.items()
            )
            block.append(f"<div class='kpis'>{kpis}</div>")
        for section in result.sections:
            block.append(f"<h3>{html.escape(section.title)}</h3>")
            if section.text:
                block.append(f"<p>{html.escape(section.text)}</p>")
            for fig in section.figures:
                _refuse_unaggregated(result.programme, fig)
                # a chart is a figure whose title and caption are its text alternative (a
                # screen reader reads them; the drawing itself says nothing to it)
                alt = html.escape(" ".join(filter(None, [fig.title + ".", fig.caption])))
                block.append(f"<figure role='group' aria-label='{alt}'>")
                block.append(f"<h4>{html.escape(fig.title)}</h4>")
                # the drawing is one image to a screen reader (its tick labels and legend
                # read one by one said little), named by what it shows
                description = html.escape(_chart_description(fig))
                drawing = fig.figure.to_html(
                    full_html=False, include_plotlyjs=False, config=PLOTLY_CONFIG
                )
                block.append(
                    f"<div class='chart' role='img' aria-label='{description}'>{drawing}</div>"
                )
                if fig.caption:
                    block.append(
                        f"<figcaption class='caption'>{html.escape(fig.caption)}</figcaption>"
                    )
                summary = _attached_summary(fig)
                if summary:  # shown too: it says what the chart's icons mean
                    block.append(f"<p class='caption'>{html.escape(summary)}</p>")
                block.append(_chart_data_html(fig))
                block.append("</figure>")
            for table in section.tables:
                if table.kind != "aggregate":
                    raise ValueError(
                        f"{result.programme}: patient-level output {table.name!r} cannot "
                        "go into the report"
                    )
                block.append(_table_html(table))
            if section.notes:
                items = "".join(f"<li>{html.escape(n)}</li>" for n in section.notes)
                block.append(f"<ul class='notes'>{items}</ul>")
        patient = [o for o in result.outputs if o.kind == "patient"]
        if patient:
            # names only: a list's length is a count of patients, and the report is
            # aggregate-only (the care team sees the rows in the files themselves)
            items = "".join(
                f"<li>{html.escape(o.name)} — {html.escape(o.description)}</li>" for o in patient
            )
            block.append(
                "<h3>Patient-level worklists (care team only)</h3><p>Written to the "
                f"<code>{PATIENT_DIR}/{html.escape(result.programme)}</code> folder, not "
                f"shown here.</p><ul>{items}</ul>"
            )
        parts.append("<section>" + "\n".join(block) + "</section>")
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    footer = (
        f"pophealth {__version__} · generated {generated} · every count is "
        f"disclosure-controlled unless stated ({html.escape(DEFAULT_POLICY.summary())})."
    )
    glossary = _glossary(_visible_text(" ".join([title, subtitle, *parts, footer])))
    if glossary:
        nav.append("<li><a href='#abbreviations'>Abbreviations</a></li>")
    listing = ""
    if files and out is not None:
        rel = sorted(str(p.relative_to(out)) for paths in files.values() for p in paths)
        listing = (
            "<section><h2>Files</h2><ul>"
            + "".join(f"<li><code>{html.escape(r)}</code></li>" for r in rel)
            + "</ul></section>"
        )
    return (
        "<!DOCTYPE html><html lang='en-GB'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style>"
        f"<script>{get_plotlyjs()}</script><script>{_PRINT_JS}</script></head><body>"
        "<a class='skip' href='#main'>Skip to main content</a>"
        f"<header><h1>{html.escape(title)}</h1><p>{html.escape(subtitle)}</p></header>"
        f"<main id='main' tabindex='-1'><nav aria-label='Contents'><ul>{''.join(nav)}</ul>"
        f"</nav>{''.join(parts)}{glossary}{listing}</main>"
        f"<footer>{footer}</footer>"
        "</body></html>"
    )


def write_report(
    results: Sequence[ProgrammeResult], out: Path, *, title: str, subtitle: str = ""
) -> tuple[Path, dict[str, list[Path]]]:
    """Write every result's CSVs and one ``report.html`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, list[Path]] = {"aggregate": [], "patient": []}
    for result in results:
        for kind, paths in write_outputs(result, out).items():
            files[kind].extend(paths)
    page = render_html(results, title=title, subtitle=subtitle, files=files, out=out)
    path = out / "report.html"
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path, files
