"""The HTML report: aggregate-only, so a worklist is named but its length is not shown."""

import datetime as dt

import pandas as pd
import pytest

from pophealth.programmes import Output, ProgrammeResult, Section
from pophealth.report import render_html


def test_worklists_are_listed_without_their_number_of_patients():
    worklist = Output(
        "cvd_pharmacist_worklist_pcn_X",
        "patient",
        pd.DataFrame({"patient_id": ["pid-7f3a01", "pid-7f3a02", "pid-7f3a03"]}),
        "Patients to review",
    )
    result = ProgrammeResult("cvd", "CVD", dt.date(2026, 3, 31), "duckdb", outputs=[worklist])
    page = render_html([result], title="t")
    assert "cvd_pharmacist_worklist_pcn_X" in page and "Patients to review" in page
    assert "3 rows" not in page and ": 3" not in page
    assert "pid-7f3a" not in page


def test_tables_show_counts_in_full_and_csvs_write_them_as_integers(tmp_path):
    """A released count of 8,875 reads "8,875" in the report (not "8.88e+03") and "8875" in
    the CSV (not "8875.0"); a withheld one "[c]" and empty; other values to 2 decimals."""
    from pophealth.report import write_outputs

    table = pd.DataFrame(
        {
            "group": ["1", "2", "3"],
            "numerator": [8875.0, None, 10.0],
            "value": [62.9631, None, 0.5],
            "p_value": [0.00123, 0.5, 1e-7],
            "year": [2025, 2026, 2026],
        }
    )
    out = Output("t", "aggregate", table, "counts", disclosure="rule")
    result = ProgrammeResult(
        "x",
        "X",
        dt.date(2026, 3, 31),
        "duckdb",
        outputs=[out],
        sections=[Section("s", tables=[out])],
    )
    page = render_html([result], title="t")
    cells = page[page.index("<table") : page.index("</table>")]
    assert "<td>8,875</td>" in cells and "e+0" not in cells and "e-0" not in cells
    assert "<td>[c]</td>" in cells and "<td>62.96</td>" in cells and "<td>0.50</td>" in cells
    assert "<td>0.0012</td>" in cells and "<td>0.00000010</td>" in cells
    assert "<td>2025</td>" in cells
    lines = write_outputs(result, tmp_path)["aggregate"][0].read_text().splitlines()
    assert lines[1].startswith("1,8875,62.9631,") and lines[2].startswith("2,,,")


def test_a_csv_that_fails_to_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    from pophealth.report import write_outputs

    out = Output("t", "aggregate", pd.DataFrame({"n": [10.0]}), "counts", disclosure="rule")
    result = ProgrammeResult("x", "X", dt.date(2026, 3, 31), "duckdb", outputs=[out])
    write_outputs(result, tmp_path)  # a first, good write
    real = pd.DataFrame.to_csv

    def half(self, path, **kw):
        real(self, path, **kw)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", half)
    with pytest.raises(OSError, match="No space"):
        write_outputs(result, tmp_path)
    folder = tmp_path / "aggregate" / "x"
    assert sorted(p.name for p in folder.iterdir()) == ["t.csv"]  # the first write's file
    assert (folder / "t.csv").read_text() == "n\n10\n"


def test_a_rerun_removes_an_earlier_runs_tables_it_did_not_write(tmp_path):
    """Run twice into one --out: the first run's worklist for a PCN that has nobody listed
    now stayed beside the new files, where a pharmacist could take it for current. The
    programme's folders hold the latest run's tables only; other folders and files in --out
    are left alone."""
    from pophealth.report import write_outputs

    def run(*pcns):
        outputs = [
            Output(f"worklist_pcn_{p}", "patient", pd.DataFrame({"patient_id": ["a"]}), "w")
            for p in pcns
        ]
        outputs.append(
            Output("totals", "aggregate", pd.DataFrame({"n": [10.0]}), "t", disclosure="rule")
        )
        return ProgrammeResult("cvd", "CVD", dt.date(2026, 3, 31), "duckdb", outputs=outputs)

    write_outputs(run("A", "B"), tmp_path)
    (tmp_path / "patient-level" / "cvd" / "notes.txt").write_text("mine")
    (tmp_path / "patient-level" / "asthma").mkdir()
    (tmp_path / "patient-level" / "asthma" / "worklist.csv").write_text("patient_id\n")
    (tmp_path / "mine.csv").write_text("x\n")
    write_outputs(run("A"), tmp_path)
    cvd = tmp_path / "patient-level" / "cvd"
    assert sorted(p.name for p in cvd.iterdir()) == ["notes.txt", "worklist_pcn_A.csv"]
    assert (tmp_path / "patient-level" / "asthma" / "worklist.csv").exists()
    assert (tmp_path / "mine.csv").exists()
    assert sorted(p.name for p in (tmp_path / "aggregate" / "cvd").iterdir()) == ["totals.csv"]


def test_each_chart_is_a_figure_named_by_its_title_and_caption():
    """Charts had no text alternative: a screen reader met an unnamed drawing."""
    import plotly.graph_objects as go

    from pophealth.programmes import Figure

    chart = Figure("Reliever over-use by deprivation", go.Figure(), "Quintile 1 is most deprived")
    result = ProgrammeResult(
        "x", "X", dt.date(2026, 3, 31), "duckdb", sections=[Section("s", figures=[chart])]
    )
    page = render_html([result], title="t")
    assert (
        "<figure role='group' aria-label='Reliever over-use by deprivation. "
        "Quintile 1 is most deprived'>" in page
    )
    assert "<figcaption class='caption'>Quintile 1 is most deprived</figcaption>" in page
    assert page.count("<figure") == page.count("</figure>") == 1


# -- every chart has its numbers beside it ----------------------------------------------------


def _page_with(*charts):
    from pophealth.programmes import Figure

    figures = [Figure(title, fig, "caption") for title, fig in charts]
    result = ProgrammeResult(
        "x", "X", dt.date(2026, 3, 31), "duckdb", sections=[Section("s", figures=figures)]
    )
    return render_html([result], title="t")


def _data_tables(page):
    """Each "Show the data" block: (caption, header cells, rows of (row header, cells))."""
    import html
    import re

    blocks = re.findall(r"<details class='chart-data'>(.*?)</details>", page, re.S)
    out = []
    for block in blocks:
        caption = html.unescape(re.search(r"<caption>(.*?)</caption>", block).group(1))
        heads = [html.unescape(h) for h in re.findall(r"<th scope='col'>(.*?)</th>", block)]
        rows = [
            (html.unescape(th), [html.unescape(td) for td in re.findall(r"<td>(.*?)</td>", tds)])
            for th, tds in re.findall(r"<tr><th scope='row'>(.*?)</th>(.*?)</tr>", block)
        ]
        out.append((caption, heads, rows, block))
    return out


def test_every_chart_has_a_show_the_data_table_inside_its_figure():
    """Charts had no table of their numbers: a screen reader user, or anyone checking a
    value, could not read them. Each chart now has one under it, in the figure."""
    import numpy as np

    from pophealth.charts import spc_chart
    from pophealth.spc import p_chart

    res = p_chart(
        [8875, 8900, 8700] * 4, [10000] * 12, pd.date_range("2025-04-30", periods=12, freq="ME"),
        multiplier=100,
    )  # fmt: skip
    page = _page_with(("BP control", spc_chart(res, y_title="%", x_title="Month end")))
    figure = page[page.index("<figure") : page.index("</figure>")]
    assert "<details class='chart-data'><summary>Show the data</summary>" in figure
    ((caption, heads, rows, block),) = _data_tables(page)
    assert caption == "Data for the chart “BP control”"
    assert heads[:4] == ["Month end", "Value (%)", "Numerator", "Denominator"]
    assert rows[0][0] == "2025-04-30" and rows[0][1][:3] == ["88.75", "8,875", "10,000"]
    assert len(rows) == 12 and all(len(cells) == len(heads) - 1 for _, cells in rows)
    upper = res.data["upl"].to_numpy()
    assert [cells[5] for _, cells in rows] == [f"{u:.2f}" for u in upper]
    assert not np.isnan(upper).any() and "nan" not in block.lower()


def test_a_figure_without_attached_data_is_read_from_its_traces():
    """Bars, error bars, a withheld bar, a horizontal pyramid drawn to the left, a "[c]"
    marker trace and a heatmap: each number the chart draws, withheld ones as [c]."""
    import numpy as np
    import plotly.graph_objects as go

    bars = go.Figure(
        go.Bar(
            x=["Q1", "Q2", "Q3"],
            y=[12.5, np.nan, 30.0],
            error_y={
                "type": "data",
                "symmetric": False,
                "array": [2.5, np.nan, 5.0],
                "arrayminus": [1.5, np.nan, 4.0],
            },
            customdata=[[123], [4], [567]],  # a hover-only number: not tabulated
            name="High tier",
        )  # fmt: skip
    )
    bars.update_layout(xaxis_title="IMD quintile", yaxis_title="% of register")
    pyramid = go.Figure()
    pyramid.add_bar(y=["0-4", "5-9"], x=[-120.0, np.nan], orientation="h", name="male")
    pyramid.add_bar(y=["0-4", "5-9"], x=[125.0, 1300.0], orientation="h", name="female")
    pyramid.add_scatter(y=["5-9"], x=[-5], mode="text", text=["[c]"], name="male: suppressed")
    pyramid.update_layout(
        barmode="relative", yaxis_title="age band",
        xaxis={"title": "patients", "tickvals": [-100, 0, 100], "ticktext": ["100", "0", "100"]},
    )  # fmt: skip
    heat = go.Figure(go.Heatmap(z=[[1.5, np.nan], [0.0, 2.25]], x=["IMD Q1", "IMD Q2"],
                                y=["NO2 Q1", "NO2 Q2"]))  # fmt: skip
    heat.update_layout(xaxis_title="IMD quintile", yaxis_title="NO2 quintile")
    months = pd.to_datetime(["2026-01-31", "2026-02-28"]).to_numpy()
    line = go.Figure(go.Scatter(x=months, y=[0.004567, 1234.5], mode="lines+markers"))
    page = _page_with(("Bars", bars), ("Pyramid", pyramid), ("Tiles", heat), ("Line", line))
    (b, p, h, m) = _data_tables(page)
    assert m[1] == ["Category", "Value"]
    assert m[2] == [("2026-01-31", ["0.0046"]), ("2026-02-28", ["1,234.50"])]
    assert b[1] == ["IMD quintile", "% of register", "Interval: lower", "Interval: upper"]
    # each column formatted as in the report's other tables (whole numbers without decimals)
    assert b[2] == [("Q1", ["12.50", "11", "15"]), ("Q2", ["[c]", "[c]", "[c]"]),
                    ("Q3", ["30.00", "26", "35"])]  # fmt: skip
    assert "123" not in b[3] and "567" not in b[3]
    assert "[c] = withheld" in b[3]
    assert p[1] == ["Series", "age band", "patients"]
    assert p[2] == [("male", ["0-4", "120"]), ("male", ["5-9", "[c]"]),
                    ("female", ["0-4", "125"]), ("female", ["5-9", "1,300"]),
                    ("male: suppressed", ["5-9", "[c]"])]  # fmt: skip
    assert h[1] == ["NO2 quintile", "IMD Q1", "IMD Q2"]
    assert h[2] == [("NO2 Q1", ["1.50", "[c]"]), ("NO2 Q2", ["0.00", "2.25"])]


def test_a_missing_date_among_a_charts_points_is_a_blank_category_not_an_error():
    """A line whose x holds a missing date (NaT) beside real months: its point is tabulated
    with a blank category, as a missing word is, and the report does not fail."""
    import plotly.graph_objects as go

    months = pd.to_datetime(["2026-01-31", None, "2026-03-31"]).to_numpy()
    line = go.Figure(go.Scatter(x=months, y=[5.0, 7.5, 1234.0], mode="lines"))
    ((_, heads, rows, _),) = _data_tables(_page_with(("Line", line)))
    assert heads == ["Category", "Value"]
    assert rows == [("2026-01-31", ["5.00"]), ("", ["7.50"]), ("2026-03-31", ["1,234.00"])]


def test_a_map_area_drawn_without_a_value_is_withheld_in_its_table():
    """The choropleth draws an LSOA whose count is withheld with z = 0 in grey: its row says
    [c], not 0."""
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_trace(go.Choroplethmap(locations=["E01000002"], z=[0], name="no value",
                                   hovertemplate="%{location}: no value"))  # fmt: skip
    fig.add_trace(go.Choroplethmap(locations=["E01000001"], z=[85.0], colorbar_title="patients",
                                   hovertemplate="%{location}: %{z}<extra></extra>"))  # fmt: skip
    ((_, heads, rows, _),) = _data_tables(_page_with(("Map", fig)))
    assert heads == ["Area", "patients"]
    assert rows == [("E01000002", ["[c]"]), ("E01000001", ["85"])]


def test_the_data_tables_are_open_when_the_page_is_printed():
    page = _page_with()
    assert "@media print" in page
    assert "details.chart-data::details-content{content-visibility:visible" in page
    assert "addEventListener('beforeprint'" in page


def test_a_chart_that_bins_its_values_in_the_browser_is_refused():
    """A histogram (or box, violin) is given every value and bins it in the reader's browser:
    the page would carry one number per patient, unreleased. The report refuses it, naming
    the programme and chart; bars of released counts are the way."""
    import plotly.graph_objects as go

    ages = go.Figure(go.Histogram(x=[34, 35, 35, 36, 71, 88]))
    with pytest.raises(ValueError, match=r"x: chart 'Ages' draws a histogram trace"):
        _page_with(("Ages", ages))
    pie = go.Figure(go.Pie(labels=["red", "amber"], values=[105.0, None], name="RAG"))
    ((_, heads, rows, _),) = _data_tables(_page_with(("RAG", pie)))
    assert heads == ["Category", "Value"] and rows == [("red", ["105"]), ("amber", ["[c]"])]
