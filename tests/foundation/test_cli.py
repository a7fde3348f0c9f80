"""The CLI as a user meets it: version, schema, synth errors, demo end to end."""

import json
import os
import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from pophealth import __version__
from pophealth.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, list(args))


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and __version__ in result.output


def test_schema_prints_markdown():
    result = invoke("schema")
    assert result.exit_code == 0
    assert "## `events`" in result.output


@pytest.mark.parametrize(
    ("patients", "message"),
    [
        ("-5", "must be a positive number"),
        ("0", "must be a positive number"),
        ("999999999999", "more than England's population"),
    ],
)
def test_synth_refuses_absurd_sizes(tmp_path, patients, message):
    result = invoke("synth", "--patients", patients, "--out", str(tmp_path / "s"))
    assert result.exit_code != 0
    assert message in result.output
    assert not (tmp_path / "s").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_synth_unwritable_directory(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    result = invoke("synth", "--patients", "10", "--out", str(locked / "s"))
    assert result.exit_code != 0 and "cannot write" in result.output


def test_synth_refuses_a_folder_that_is_not_a_store(tmp_path):
    (tmp_path / "thesis.docx").write_text("precious")
    result = invoke("synth", "--patients", "10", "--out", str(tmp_path))
    assert result.exit_code != 0 and "not a pophealth store" in result.output
    assert (tmp_path / "thesis.docx").read_text() == "precious"


def test_synth_refuses_a_store_of_another_schema_version(tmp_path):
    out = tmp_path / "s"
    assert invoke("synth", "--patients", "50", "--out", str(out)).exit_code == 0
    snapshot = (out / "CURRENT").read_text().strip()
    meta_path = out / "snapshots" / snapshot / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["schema_version"] = 999
    meta_path.write_text(json.dumps(meta))
    before = sorted(p.name for p in (out / "snapshots" / snapshot).iterdir())
    result = invoke("synth", "--patients", "50", "--out", str(out))
    assert result.exit_code != 0
    assert "schema version 999" in result.output
    assert sorted(p.name for p in (out / "snapshots" / snapshot).iterdir()) == before


def test_demo_writes_an_offline_report_and_csvs(demo_run):
    """`pophealth demo` as a user runs it: a subprocess, as installed (tests/conftest.py's
    ``demo_run``, which other tests read too)."""
    out, proc = demo_run.out, demo_run.process
    report = out / "report.html"
    assert str(report.resolve()) in proc.stdout
    page = report.read_text()
    # Opens offline: no script, stylesheet or image fetched from anywhere.
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=[\"']https?:", page)
    assert "Plotly" in page
    assert list((out / "aggregate").rglob("*.csv"))


def test_demo_csvs_are_plain_ascii(demo_run):
    """The CSVs carry no byte-order mark (it breaks the first header in R's ``read.csv``
    and pandas' default reader), so Excel opens them as Windows text, where any character
    beyond ASCII (an en dash in "1–20 mmol/L") shows as two or three wrong ones. The
    labels pophealth writes itself are ASCII; only names from the data could be other."""
    csvs = sorted((demo_run.out / "aggregate").rglob("*.csv"))
    csvs += sorted((demo_run.out / "patient-level").rglob("*.csv"))
    assert csvs
    for path in csvs:
        data = path.read_bytes()
        assert not data.startswith(b"\xef\xbb\xbf"), path
        if not data.isascii():
            at = next(i for i, b in enumerate(data) if b > 127)
            raise AssertionError(f"{path}: not ASCII near {data[max(0, at - 40) : at + 10]!r}")


def test_help_and_version_load_no_query_engine():
    """`pophealth --help` / `--version` answer at once: the command line loads Ibis, pandas
    and the engines only for a command that runs something (they took ~1.8 s to import)."""
    code = (
        "import sys, pophealth.cli; "
        "print(sorted(m for m in ('ibis', 'pandas', 'duckdb', 'pyspark') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_run_stops_with_the_name_of_a_missing_code_list(tmp_path, monkeypatch):
    """A curated list the programme needs that is not there stops `pophealth run` with a
    message naming it (and no traceback), before anything is written."""
    from pophealth.programmes.asthma import codes

    store = tmp_path / "s"
    assert invoke("synth", "--patients", "50", "--out", str(store)).exit_code == 0
    without = codes.available_codelists() - {"asthma_review"}
    monkeypatch.setattr(codes, "available_codelists", lambda: without)
    out = tmp_path / "out"
    result = invoke("run", "asthma", "--store", str(store), "--out", str(out))
    assert result.exit_code == 2, result.output
    assert "asthma programme" in result.output and "asthma_review" in result.output
    assert "Traceback" not in result.output
    assert not out.exists() or not any(out.iterdir())
