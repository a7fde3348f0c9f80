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
