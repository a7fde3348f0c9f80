"""The HTML report against WCAG 2.2 AA (the Public Sector Bodies Accessibility Regulations
2018): page language and title, landmarks and headings, tables with captions and scoped
headers, charts with a text alternative and enough contrast, colour never the only signal,
abbreviations explained, and, in a real browser, text contrast, reflow at 320 CSS px,
visible keyboard focus and hover labels that Escape dismisses.

Most checks read HTML rendered in this process from small inputs; one test drives headless
Chromium (as tests/test_report_demo_page.py does) over the demo report that
tests/conftest.py's ``demo_run`` writes."""

from __future__ import annotations

import datetime as dt
import re
import time
from html.parser import HTMLParser
from types import SimpleNamespace

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from pophealth.charts import MDC_COLOURS, SIGNIFICANCE_COLOURS, chart_data, funnel_chart, spc_chart
from pophealth.programmes import Figure, Output, ProgrammeResult, Section
from pophealth.report import render_html
from pophealth.spc import p_chart, xmr
from pophealth.stats import funnel_limits


def contrast_ratio(a: str, b: str) -> float:
    """WCAG 2.2's contrast ratio of two colours written #RRGGBB (relative luminance, sRGB)."""

    def luminance(colour: str) -> float:
        colour = {"white": "#FFFFFF", "black": "#000000"}.get(colour, colour)
        channels = [int(colour.lstrip("#")[i : i + 2], 16) / 255 for i in (0, 2, 4)]
        linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    light, dark = sorted((luminance(a), luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_the_contrast_ratio_is_wcags():
    assert contrast_ratio("#000000", "#FFFFFF") == pytest.approx(21)
    assert contrast_ratio("#767676", "#FFFFFF") == pytest.approx(4.54, abs=0.01)  # the 4.5 grey


# -- a small report, rendered here -------------------------------------------------------------


def _bars() -> go.Figure:
    fig = go.Figure(go.Bar(x=["Q1", "Q2"], y=[12.5, 30.0], name="High tier"))
    fig.update_layout(xaxis_title="IMD quintile", yaxis_title="% of register")
    return fig


def _spc() -> go.Figure:
    # a concern (high, where falling is good) and an improvement (low) after 12 common points
    result = xmr([10, 12] * 6 + [30, 2], improvement="down", fix_after_n_points=12)
    return spc_chart(result, title="SABA", y_title="%", x_title="Month")


def _page() -> str:
    table = Output(
        "key_indicators",
        "aggregate",
        pd.DataFrame({"group": ["1", "2"], "numerator": [85.0, None], "value": [12.5, None]}),
        "Key indicators by IMD quintile",
        disclosure="rule",
    )
    sections = [
        Section(
            "Equity",
            "SABA over-use by IMD quintile, per PCN, with 95% CIs.",
            figures=[
                Figure("High tier by IMD quintile", _bars(), "Quintile 1 is most deprived"),
                Figure("SABA: Whole region", _spc()),
            ],
            tables=[table],
        )
    ]
    result = ProgrammeResult("x", "X", dt.date(2026, 3, 31), "duckdb", [table], sections)
    return render_html([result], title="pophealth report", subtitle="SPC and more")


class _Tags(HTMLParser):
    """Every start tag with its attributes, in order, and the text inside each table."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _tags(page: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Tags()
    parser.feed(page)
    return parser.tags


def test_the_page_has_a_language_a_title_landmarks_and_a_skip_link():
    page = _page()
    tags = _tags(page)
    assert ("html", {"lang": "en-GB"}) in tags  # was "en": British English is the language
    assert "<title>pophealth report</title>" in page
    main = [a for t, a in tags if t == "main"]
    assert len(main) == 1 and main[0]["id"] == "main"
    (skip,) = [a for t, a in tags if t == "a" and a.get("class") == "skip"]
    assert skip["href"] == "#main" and tags.index(("a", skip)) < tags.index(("main", main[0]))
    navs = [a for t, a in tags if t == "nav"]
    assert navs == [{"aria-label": "Contents"}]  # the contents list, a named landmark
    assert [t for t, _ in tags].count("header") == [t for t, _ in tags].count("footer") == 1


def test_one_h1_and_no_heading_level_is_skipped():
    levels = [int(t[1]) for t, _ in _tags(_page()) if re.fullmatch(r"h[1-6]", t)]
    assert levels.count(1) == 1 and levels[0] == 1
    assert all(b <= a + 1 for a, b in zip(levels, levels[1:], strict=False)), levels


def test_every_table_has_a_caption_scoped_headers_and_a_region_a_keyboard_can_scroll():
    """The programme's own tables were pandas' (no caption, no scope on th); each table now
    sits in a named region that takes focus, so a keyboard can scroll a wide one."""
    page = _page()
    tables = re.findall(r"(<div class='scroll'[^>]*>)<table[^>]*>(.*?)</table>", page, re.S)
    assert len(tables) == 3  # the section table and the two charts' data tables
    for region, body in tables:
        assert re.match(r"<caption[^>]*>[^<]+</caption>", body), body[:80]
        assert "role='region'" in region and "tabindex='0'" in region and "aria-label='" in region
        ths = re.findall(r"<th\b[^>]*>", body)
        assert ths and all(re.search(r"scope='(col|row)'", th) for th in ths), ths
    section = tables[-1][1]
    assert "key_indicators: Key indicators by IMD quintile" in section
    assert "<td>85</td>" in section and "<td>[c]</td>" in section  # formatting unchanged


def test_each_chart_is_an_image_that_says_what_it_shows_and_has_no_hidden_toolbar():
    """A chart's drawing is one image named by what it shows (the SVG's tick labels, read one
    by one, said nothing useful), and the SPC chart's icons are explained in words (they were
    only in hover text). Plotly's toolbar is off: its buttons took focus while invisible."""
    page = _page()
    labels = re.findall(r"<div class='chart' role='img' aria-label='([^']+)'>", page)
    assert len(labels) == page.count('class="plotly-graph-div"') == 2
    bars, spc = labels
    assert bars == (
        "Bar chart of % of register by IMD quintile. Its numbers are in the table under “Show "
        "the data”."
    )
    assert spc.startswith("Statistical process control (SPC) chart (%)")
    assert "14 points from 0 to 13" in spc
    assert "Special-cause points: 2 (concern 1, improvement 1)" in spc
    assert "Variation icon “↑”: special cause: improvement." in spc
    # the summary is shown too, under the chart
    summary = chart_data(_spc()).summary
    assert summary and f"<p class='caption'>{summary}</p>" in page.replace("&quot;", '"')
    assert '"displayModeBar": false' in page and '"displaylogo": false' in page
    assert "Plotly.Fx.unhover" in page  # Escape dismisses a hover label


def test_the_abbreviations_the_page_uses_are_listed_and_linked_from_the_contents():
    from pophealth.report import ABBREVIATIONS

    page = _page()
    assert "<a href='#abbreviations'>Abbreviations</a>" in page
    glossary = page[page.index("<dl class='glossary'>") : page.index("</dl>")]
    terms = re.findall(r"<dt>(.*?)</dt>", glossary)
    assert {"CI", "IMD", "PCN", "SABA", "SPC"} <= set(terms)  # "CIs" counts as CI
    assert "QOF" not in terms  # only those the page uses
    assert all(ABBREVIATIONS[t] in glossary for t in terms)


# -- colours of the charts ------------------------------------------------------------------


def _plot_background(fig: go.Figure) -> str:
    colour = fig.layout.plot_bgcolor or fig.layout.template.layout.plot_bgcolor
    return {"white": "#FFFFFF"}.get(colour, colour).upper()


def _marks(fig: go.Figure):
    """(colour, outline colour, outline width, symbol) of each marker or bar a chart draws."""
    for t in fig.data:
        if t.type not in ("bar", "scatter") or (t.type == "scatter" and "markers" not in t.mode):
            continue
        colours = t.marker.color
        colours = list(colours) if isinstance(colours, list | tuple | np.ndarray) else [colours]
        symbols = t.marker.symbol if t.type == "scatter" else None
        symbols = list(symbols) if isinstance(symbols, list | tuple) else [symbols] * len(colours)
        line = t.marker.line
        for colour, symbol in zip(colours, symbols, strict=True):
            yield colour, line.color, line.width or 0, symbol or ""


def _distinguishable(fig: go.Figure) -> None:
    """Every mark at least 3:1 against the plot (WCAG 1.4.11): by its fill, or by an outline,
    or (hollow) by its colour drawn as a line of 2 px."""
    background = _plot_background(fig)
    for colour, outline, width, symbol in _marks(fig):
        if symbol.endswith("-open"):
            assert contrast_ratio(colour, background) >= 3 and width >= 2, colour
        elif contrast_ratio(colour, background) < 3:
            assert outline and width >= 1 and contrast_ratio(outline, background) >= 3, colour


def test_spc_points_and_icons_have_enough_contrast_and_differ_in_shape():
    """The MDC concern orange (#FAB428) was 1.8:1 against white, its white icon letter 1.8:1,
    and a special-cause point differed from a common-cause one in colour alone."""
    fig = _spc()
    _distinguishable(fig)
    values = next(t for t in fig.data if t.name == "Value")
    shapes = dict(zip(values.marker.color, values.marker.symbol, strict=True))
    assert len(set(shapes.values())) == len(shapes) == 3  # common, concern, improvement
    legend = {t.name for t in fig.data if t.showlegend is not False}
    assert {"Special cause: concern", "Special cause: improvement"} <= legend
    for badge in (a for a in fig.layout.annotations if a.bgcolor):
        ratio = contrast_ratio(badge.font.color, badge.bgcolor)
        large = badge.font.size >= 19 and badge.text.startswith("<b>")  # 14 pt bold
        assert ratio >= (3 if large else 4.5), (badge.text, ratio)
    marks = p_chart([5, 0, 6] * 5, [50] * 15, pd.date_range("2025-01-31", periods=15, freq="ME"))
    gapped = spc_chart(marks, withheld=[pd.Timestamp("2026-06-30")])
    for mark in (a for a in gapped.layout.annotations if a.text == "[c]"):
        assert contrast_ratio(mark.font.color, "#FFFFFF") >= 4.5


def test_funnel_outliers_differ_in_shape_and_have_enough_contrast():
    """The 95%-only classes were light tints (2.9:1 and 2.5:1) differing from the 99.8% ones
    in colour alone: they are now hollow, in darker tints."""
    df = pd.DataFrame({"x": [10, 90, 50, 38, 62, 45], "n": [100] * 6, "u": list("ABCDEF")})
    df["value"] = df["x"]
    df["significance"] = ["Low (0.001)", "High (0.001)", "Not significant", "Low (0.025)",
                          "High (0.025)", None]  # fmt: skip
    limits = funnel_limits("x", "n", data=df, multiplier=100)
    fig = funnel_chart(df, limits, x="n", label="u")
    _distinguishable(fig)
    symbols = {t.name: t.marker.symbol for t in fig.data if t.mode == "markers"}
    assert set(symbols) == {*SIGNIFICANCE_COLOURS, "No label"}
    assert len(set(symbols.values())) == 6  # a unit without a label drew as "Not significant"
    assert chart_data(fig).summary.endswith(
        "Units by where they lie: High (0.001) 1; High (0.025) 1; Not significant 1; "
        "Low (0.025) 1; Low (0.001) 1; No label 1."
    )


def test_the_programmes_charts_have_enough_contrast_on_a_white_plot():
    """Population and asthma charts drew on plotly's blue-grey plot (#E5ECF6): Okabe-Ito
    orange lines at 1.9:1, the moderate tier's yellow bars at 1.5:1."""
    from pophealth.programmes.asthma.programme import _cross_chart, _tier_chart
    from pophealth.programmes.population import _prevalence_figure, _pyramid_figure

    rows = [
        (m, q, 10.0, 100.0, 10.0, 6.0, 16.0)
        for m in ("asthma", "hypertension", "copd", "af", "diabetes")
        for q in ("1", "2", "3", "4", "5", "unknown")
    ]
    prevalence = pd.DataFrame(rows, columns=["measure", "imd_quintile", "numerator",
                                             "denominator", "value", "lower95_0cl",
                                             "upper95_0cl"])  # fmt: skip
    pyramid = pd.DataFrame(
        {"age_band": ["0-4", "0-4"], "sex": ["male", "female"], "patients": [100.0, None]}
    )
    breakdowns = pd.DataFrame(
        {"breakdown": "pcn", "group": ["Total", "PCN A"], "value": [10.0, 12.0]}
    )
    view = SimpleNamespace(breakdowns=breakdowns)
    tiers = _tier_chart({"tier_high": view, "tier_moderate": view})
    for fig in (_prevalence_figure(prevalence), _pyramid_figure(pyramid), tiers):
        assert _plot_background(fig) == "#FFFFFF"
        _distinguishable(fig)
        for t in fig.data:  # lines too
            if t.type == "scatter" and "lines" in t.mode:
                assert contrast_ratio(t.line.color, "#FFFFFF") >= 3, t.name
    moderate = next(t for t in tiers.data if t.name == "moderate")
    assert moderate.marker.pattern.shape  # hatched: not told from high by colour alone
    cross = pd.DataFrame(
        {"flag": "is_tier_high", "pollutant": "no2", "pollution_quintile": [1, 1, 2, 2],
         "imd_quintile": [1, 2, 1, 2], "value": [5.0, 50.0, None, 95.0]}
    )  # fmt: skip
    (heat,) = _cross_chart(cross, "is_tier_high", "no2").data
    for _, colour in heat.colorscale:  # the tile text on every tile colour
        assert contrast_ratio(heat.textfont.color, colour) >= 4.5, colour


def test_mdc_colours_are_unchanged():
    """The Making Data Count colours stay the national ones; outlines and shapes carry the
    contrast."""
    assert MDC_COLOURS["special_cause_concern"] == "#FAB428"
    assert MDC_COLOURS["special_cause_improvement"] == "#289DE0"


# -- in a real browser --------------------------------------------------------------------------

BROWSER_CHECKS = r"""(() => {
  const norm = c => { const d = document.createElement('i'); d.style.color = c;
    document.body.append(d); const r = getComputedStyle(d).color; d.remove(); return r; };
  const parts = c => norm(c).match(/[\d.]+/g).map(Number);
  const lum = c => { const [r, g, b] = parts(c).slice(0, 3).map(v => { v /= 255;
    return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  const ratio = (a, b) => { const x = lum(a), y = lum(b);
    return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05); };
  const opaque = c => { const p = parts(c); return p.length < 4 || p[3] > 0.5; };
  const background = el => { for (; el; el = el.parentElement) {
    const c = getComputedStyle(el).backgroundColor; if (opaque(c)) return c; }
    return 'rgb(255, 255, 255)'; };
  const low = [];
  const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walk.nextNode()) {
    const el = walk.currentNode.parentElement;
    if (!walk.currentNode.textContent.trim() || el.closest('svg, script, style')
        || !el.checkVisibility()) continue;
    const s = getComputedStyle(el), size = parseFloat(s.fontSize);
    const large = size >= 24 || (size >= 18.66 && +s.fontWeight >= 700);
    const r = ratio(s.color, background(el));
    if (r < (large ? 3 : 4.5)) low.push(`${el.tagName}.${el.className} ${r.toFixed(2)}`);
  }
  const focusable = [...document.querySelectorAll('a[href], summary, [tabindex]')]
    .filter(e => e.tabIndex >= 0 && e.checkVisibility());
  const unseen = [];
  for (const e of focusable) {
    e.focus({focusVisible: true});
    const s = getComputedStyle(e);
    const width = s.outlineStyle === 'none' ? 0 : parseFloat(s.outlineWidth);
    const r = ratio(s.outlineColor, background(e.parentElement));
    if (document.activeElement !== e || width < 2 || r < 3)
      unseen.push(`${e.tagName}.${e.className} ${width}px ${r.toFixed(2)}`);
    e.blur();
  }
  const inCharts = [...document.querySelectorAll('.plotly-graph-div *')]
    .filter(e => e.tabIndex >= 0).length;
  return {low, focusable: focusable.length, unseen, inCharts};
})()"""

WIDE = r"""(() => {
  const W = document.documentElement.clientWidth, wide = [];
  for (const e of document.querySelectorAll('body *')) {
    if (e.closest('.scroll, svg')) continue;
    if (e.getBoundingClientRect().right > W + 1)
      wide.push(`${e.tagName} ${e.textContent.slice(0, 40)}`);
  }
  return {W, scroll: document.documentElement.scrollWidth, wide: wide.slice(0, 5)};
})()"""


def test_in_a_browser_text_contrast_reflow_at_320px_focus_and_hover(demo_run):
    """The demo report in headless Chromium: every visible text at 4.5:1 (3:1 large); every
    link, summary and scrolling table with a focus outline of 2 px or more at 3:1; nothing
    focusable inside a chart (plotly's toolbar had 10 invisible buttons a chart); at 320 CSS
    px wide (400% zoom) nothing but tables and charts wider than the page (file names were
    556 px); at 640 px (200% zoom) the same; text spacing overrides clip nothing; Escape
    dismisses a chart's hover label."""
    from test_report_demo_page import CHROMIUM, Browser

    if CHROMIUM is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium)")
    browser = Browser()
    try:
        browser.open((demo_run.out / "report.html").resolve().as_uri())
        browser.send("Emulation.setEmulatedMedia", media="screen")
        # the first Tab reaches the skip link, drawn with its outline
        browser.send("Input.dispatchKeyEvent", type="rawKeyDown", key="Tab", code="Tab",
                     windowsVirtualKeyCode=9)  # fmt: skip
        assert browser.value(
            "document.activeElement.className === 'skip' && "
            "document.activeElement.matches(':focus-visible') && "
            "getComputedStyle(document.activeElement).outlineWidth === '3px'"
        )
        seen = browser.value(BROWSER_CHECKS)
        assert seen["low"] == [] and seen["unseen"] == [] and seen["inCharts"] == 0, seen
        assert seen["focusable"] >= 10
        # hover a bar of the first chart (the first with a value), then press Escape
        shown = (
            "(() => {const g = document.querySelector('.js-plotly-plot');"
            "for (let p = 0; p < 20; p++) {Plotly.Fx.hover(g, [{curveNumber: 0, pointNumber: p}]);"
            "if (g.querySelector('.hoverlayer .hovertext')) return true;} return false})()"
        )
        assert browser.value(shown)
        browser.send("Input.dispatchKeyEvent", type="rawKeyDown", key="Escape", code="Escape",
                     windowsVirtualKeyCode=27)  # fmt: skip
        assert browser.value("document.querySelectorAll('.hoverlayer .hovertext').length") == 0
        for width in (320, 640):
            browser.send("Emulation.setDeviceMetricsOverride", width=width, height=640,
                         deviceScaleFactor=1, mobile=False)  # fmt: skip
            # plotly redraws on resize, later on a loaded machine: wait for it (up to 20 s;
            # a page that does not reflow fails after that)
            deadline = time.monotonic() + 20
            while True:
                wide = browser.value(WIDE)
                fits = wide["scroll"] <= wide["W"] and wide["wide"] == []
                if fits or time.monotonic() > deadline:
                    break
                time.sleep(0.25)
            assert fits, (width, wide)
        clipped = browser.value(
            "(() => {const s = document.createElement('style'); s.textContent = '*{line-height:"
            "1.5!important;letter-spacing:.12em!important;word-spacing:.16em!important}"
            "p{margin-bottom:2em!important}'; document.head.append(s); return [...document"
            ".querySelectorAll('body *')].filter(e => !e.closest('svg, .js-plotly-plot') && "
            "/hidden|clip/.test(getComputedStyle(e).overflow) && !e.matches('.visually-hidden') "
            "&& e.scrollHeight > e.clientHeight + 1).length})()"
        )
        assert clipped == 0
    finally:
        browser.close()


def test_the_cvd_risk_group_bars_have_an_outline_and_no_text_squeezed_into_them():
    """The amber, yellow and light green bars were 2.5:1, 1.7:1 and 2.3:1 against white with
    no outline, and each group's description was drawn inside its bar at a few pixels."""
    from pophealth.programmes.cvd import GROUP_ORDER, _bp_chart

    groups = pd.DataFrame(
        {"group": GROUP_ORDER, "patients": 10.0, "description": [f"group {g}" for g in GROUP_ORDER]}
    )
    fig = _bp_chart(groups)
    assert _plot_background(fig) == "#FFFFFF"
    _distinguishable(fig)
    assert all(t.textposition == "none" for t in fig.data)
