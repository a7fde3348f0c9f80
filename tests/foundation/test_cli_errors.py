"""Wrong inputs to each command, as an analyst on a fresh machine meets them: one line
naming the problem, a non-zero exit, no traceback, nothing half-written, and no long work
done before an output that cannot be written is found out."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pophealth.cli import app

runner = CliRunner()

#: A place no one, root included, can create a file in (Linux): every write fails.
UNWRITABLE = Path("/proc/pophealth-cannot-write-here")
needs_proc = pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")

DATASET = """\
from pophealth.query import Dataset, index_date, patients, registrations
dataset = Dataset()
dataset.define_population(registrations.registered_on(index_date))
dataset.age = patients.age_on(index_date)
"""
MEASURES = """\
from pophealth.query import Measures, index_date, patients, registrations
measures = Measures()
measures.define_measure(
    "adults",
    numerator=patients.age_on(index_date) >= 18,
    denominator=registrations.registered_on(index_date),
    intervals=[("2025-04-01", "2026-03-31")],
)
"""


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    said = " ".join(result.output.replace("│", " ").split())  # (a usage error is boxed)
    return result, said


def refused(result, said: str, *words: str) -> None:
    """Exit 2 (a usage mistake), one `error:` line saying ``words``, no traceback."""
    assert result.exit_code == 2, (result.exit_code, said, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), said
    assert "Traceback" not in said and said.count("error:") == 1, said
    for word in words:
        assert word in said, (word, said)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "store"
    result, said = invoke("synth", "--patients", "200", "--out", path)
    assert result.exit_code == 0, said
    return path


@pytest.fixture(scope="module")
def definitions(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("definitions")
    (folder / "ds.py").write_text(DATASET)
    (folder / "ms.py").write_text(MEASURES)
    return folder / "ds.py", folder / "ms.py"


@pytest.fixture(scope="module")
def forecast(tmp_path_factory, store) -> Path:
    from pophealth.store import Store

    codes = Store.open(store).read("areas").column("lsoa_code").to_pylist()[:40]
    path = tmp_path_factory.mktemp("forecast") / "areas.csv"
    path.write_text("code,date\n" + "".join(f"{c},2026-04-01\n" for c in codes))
    return path


def _never(monkeypatch, module: str, *names: str) -> None:
    import importlib

    target = importlib.import_module(module)
    for name in names:
        monkeypatch.setattr(target, name, lambda *a, name=name, **k: pytest.fail(f"{name} ran"))


# -- --index-date ------------------------------------------------------------------------


def test_an_impossible_index_date_is_named_with_its_option(tmp_path, store, definitions):
    """2026-02-30 said 'Invalid value: ...' without naming --index-date."""
    ds, _ = definitions
    commands = [
        ("run", "asthma", "--store", store, "--out", tmp_path / "r"),
        ("dataset", ds, "--store", store, "--output", tmp_path / "d.csv"),
        (
            "asthma",
            "pollution-episode",
            "--store",
            store,
            "--areas",
            ds,
            "--out",
            tmp_path / "p.csv",
        ),
    ]
    for args in commands:
        result, said = invoke(*args, "--index-date", "2026-02-30")
        refused(result, said, "--index-date '2026-02-30' is not a date (expected YYYY-MM-DD)")
    assert not (tmp_path / "r").exists() and not (tmp_path / "d.csv").exists()


@pytest.mark.parametrize("programme", ["population", "asthma", "cvd"])
def test_run_at_an_index_date_before_any_registration_is_refused(tmp_path, store, programme):
    """1900-01-01: `population` failed with a KeyError traceback, `asthma` and `cvd` wrote
    headerless empty CSVs and exited 0."""
    out = tmp_path / "out"
    result, said = invoke(
        "run", programme, "--store", store, "--out", out, "--index-date", "1900-01-01"
    )
    refused(result, said, "index date 1900-01-01", "nobody", "first registration starts on")
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("programme", ["population", "asthma"])
def test_run_at_a_future_index_date_is_refused(tmp_path, store, programme):
    """2030-01-01 ran with exit 0: an empty asthma register, a population of those still
    registered with no records to count."""
    import datetime as dt

    future = (dt.date.today() + dt.timedelta(days=1)).isoformat()
    out = tmp_path / "out"
    result, said = invoke("run", programme, "--store", store, "--out", out, "--index-date", future)
    refused(result, said, f"--index-date {future} is in the future")
    assert not out.exists() or not any(out.iterdir())


def test_run_after_the_extract_date_warns(tmp_path, store):
    """After the store's extract date (2026-03-31 for synthetic stores) records are
    missing from the windows: a warning says so, and the run goes on."""
    from pophealth.store import Store

    extract = Store.open(store).metadata["extract_date"]
    result, said = invoke(
        "run",
        "population",
        "--store",
        store,
        "--out",
        tmp_path / "o",
        "--index-date",
        "2026-06-30",
    )
    assert result.exit_code == 0, said
    assert f"is after the store's extract date {extract}" in said


@pytest.mark.parametrize(
    ("on", "said"),
    [
        ("2019-12-31", "the first registration starts on 2020-01-01"),
        ("2020-01-01", None),
        ("2022-06-30", None),  # the open registration, started the day before its end
        ("2031-01-01", None),  # still registered: no end date
    ],
)
def test_nobody_registered_reads_an_open_registration_as_still_on(tmp_path, on, said):
    """A registration with no end is still on: a first version read its missing end
    date as 'not registered' and refused every store whose patients had not left."""
    import datetime as dt

    import pyarrow as pa

    from pophealth.commands._common import nobody_registered
    from pophealth.store import Store

    day = dt.date.fromisoformat
    registrations = pa.table(
        {
            "patient_id": ["a", "b"],
            "practice_id": ["X1", "X1"],
            "start_date": [day("2020-01-01"), day("2021-01-01")],
            "end_date": [day("2022-06-30"), None],
            "source": ["recorded", "recorded"],
        }
    )
    store = Store.open_or_new(tmp_path / "s").write(
        {"registrations": registrations}, provenance={"source": "test"}, replace_all=True
    )
    why = nobody_registered(store, day(on))
    assert (why is None) if said is None else (said in why), why


def test_nobody_registered_after_everyone_left(tmp_path):
    import datetime as dt

    import pyarrow as pa

    from pophealth.commands._common import nobody_registered
    from pophealth.store import Store

    day = dt.date.fromisoformat
    registrations = pa.table(
        {
            "patient_id": ["a"],
            "practice_id": ["X1"],
            "start_date": [day("2020-01-01")],
            "end_date": [day("2022-06-30")],
            "source": ["recorded"],
        }
    )
    store = Store.open_or_new(tmp_path / "s").write(
        {"registrations": registrations}, provenance={"source": "test"}, replace_all=True
    )
    why = nobody_registered(store, day("2024-01-01"))
    assert "the last registration ended on 2022-06-30" in why


def test_run_on_a_store_without_registrations_warns(tmp_path):
    """A store of areas only (what `reference build` makes), or records ingested with
    --registrations recorded from a source that records none: the programme finds nobody,
    as documented, and the run now says why instead of leaving empty tables to puzzle
    over."""
    from pophealth.store import Store

    path = tmp_path / "areas-only"
    Store.open_or_new(path).write({}, provenance={"source": "test"}, replace_all=True)
    result, said = invoke("run", "asthma", "--store", path, "--out", tmp_path / "o")
    assert result.exit_code == 0, said
    assert "warning: " in said and "holds no GP registrations" in said, said


def test_pollution_episode_before_any_registration_is_refused(tmp_path, store, forecast):
    out = tmp_path / "p.csv"
    result, said = invoke(
        "asthma", "pollution-episode", "--store", store, "--areas", forecast, "--out", out,
        "--index-date", "1900-01-01",
    )  # fmt: skip
    refused(result, said, "nobody")
    assert not out.exists()


def test_pollution_episode_with_no_forecast_areas_is_refused(tmp_path, store):
    """A forecast of a header only ran the whole asthma programme and wrote an empty list
    with exit 0, as if nobody in the region were at risk."""
    areas = tmp_path / "areas.csv"
    areas.write_text("code\n")
    out = tmp_path / "p.csv"
    result, said = invoke(
        "asthma", "pollution-episode", "--store", store, "--areas", areas, "--out", out
    )
    refused(result, said, "lists no areas")
    assert not out.exists()


def test_a_folder_holding_one_store_is_named_in_the_error(tmp_path, store):
    """`--store pophealth-demo` (the demo's folder, whose store is pophealth-demo/store)
    said only 'not a pophealth store'."""
    import shutil

    outer = tmp_path / "pophealth-demo"
    shutil.copytree(store, outer / "store", symlinks=True)
    result, said = invoke("run", "population", "--store", outer, "--out", tmp_path / "o")
    refused(result, said, "is not a pophealth store", f"did you mean {outer / 'store'}?")


def test_dataset_before_any_registration_says_so_but_runs(tmp_path, store, definitions):
    """A dataset's population is the analyst's own, so it is a note, not a refusal."""
    out = tmp_path / "d.csv"
    result, said = invoke(
        "dataset", definitions[0], "--store", store, "--output", out, "--index-date", "1900-01-01"
    )
    assert result.exit_code == 0, said
    assert "note: index date 1900-01-01: nobody" in said
    assert out.read_text().splitlines() == ['"patient_id","age"']


def test_spark_engine_without_pyspark_is_refused_before_any_work(
    tmp_path, store, definitions, monkeypatch
):
    """A plain install (no `spark` extra): a RuntimeError traceback from the engine, after
    the store and the definition were read."""
    monkeypatch.setitem(sys.modules, "pyspark", None)
    monkeypatch.setitem(sys.modules, "pyspark.sql", None)
    ds, _ = definitions
    commands = [
        ("run", "asthma", "--store", store, "--out", tmp_path / "r"),
        ("dataset", ds, "--store", store, "--output", tmp_path / "d.csv"),
    ]
    for args in commands:
        result, said = invoke(*args, "--engine", "spark")
        assert result.exit_code == 2, (said, result.exception)
        assert "--engine" in said and "uv sync --extra spark" in said, said
        assert "Traceback" not in said
    assert not any(tmp_path.iterdir())


def test_spark_engine_without_java_is_refused(tmp_path, store, monkeypatch):
    import shutil

    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    result, said = invoke(
        "run", "asthma", "--store", store, "--out", tmp_path / "r", "--engine", "spark"
    )
    assert result.exit_code == 2 and "needs Java 17" in said, said


def test_a_misspelt_programme_is_named_with_the_likely_one(tmp_path, store):
    result, said = invoke("run", "astma", "--store", store, "--out", tmp_path / "o")
    refused(result, said, "no programme 'astma'; did you mean 'asthma'?", "population, asthma")
    assert not (tmp_path / "o").exists()


# -- outputs that cannot be written -------------------------------------------------------


def test_run_out_is_a_file_or_inside_one(tmp_path, store, monkeypatch):
    """Both were tracebacks (FileExistsError / NotADirectoryError) after the programme
    had run in full."""
    _never(monkeypatch, "pophealth.commands.run", "run_programmes")
    taken = tmp_path / "results.txt"
    taken.write_text("precious")
    result, said = invoke("run", "asthma", "--store", store, "--out", taken)
    refused(result, said, "--out", "is a file, not a folder")
    result, said = invoke("run", "asthma", "--store", store, "--out", taken / "out")
    refused(result, said, "--out", "results.txt is a file, not a folder")
    assert taken.read_text() == "precious"


@needs_proc
def test_unwritable_outputs_stop_every_command_before_any_work(
    tmp_path, store, definitions, forecast, monkeypatch
):
    """Tracebacks from run, dataset, measures, pollution-episode; synth, demo and reference
    build found out only after generating or building everything."""
    _never(monkeypatch, "pophealth.commands.run", "run_programmes")
    _never(monkeypatch, "pophealth.query", "run_dataset", "run_measures")
    _never(monkeypatch, "pophealth.synth", "write_synthetic_store")
    _never(monkeypatch, "pophealth.reference.build", "build_reference_store")
    _never(monkeypatch, "pophealth.programmes.asthma.programme", "evaluate")
    ds, ms = definitions
    (tmp_path / "ref").mkdir()
    bad = UNWRITABLE
    commands = [
        ("run", "asthma", "--store", store, "--out", bad),
        ("dataset", ds, "--store", store, "--output", bad / "d.csv"),
        ("measures", ms, "--store", store, "--output", bad / "m.csv"),
        ("asthma", "pollution-episode", "--store", store, "--areas", forecast, "--out",
         bad / "p.csv"),
        ("synth", "--patients", "10", "--out", bad),
        ("demo", "--patients", "10", "--out", bad),
        ("reference", "build", "--from", tmp_path / "ref", "--out", bad),
    ]  # fmt: skip
    for args in commands:
        result, said = invoke(*args)
        refused(result, said, str(bad), "cannot write")


def test_pollution_episode_out_as_a_folder_or_inside_a_file(tmp_path, store, forecast):
    """A folder named like a CSV: a traceback that left `NAME.csv.tmp` behind; inside a
    file: a traceback."""
    folder = tmp_path / "taken.csv"
    folder.mkdir()
    (tmp_path / "a_file").write_text("")
    base = ("asthma", "pollution-episode", "--store", store, "--areas", forecast, "--out")
    result, said = invoke(*base, folder)
    refused(result, said, "is a folder")
    result, said = invoke(*base, tmp_path / "a_file" / "p.csv")
    refused(result, said, "a_file is a file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "taken.csv"]


def test_pollution_episode_writes_the_format_its_name_says(tmp_path, store, forecast):
    """`--out list.xlsx` wrote CSV text into a file named .xlsx (and .csv.gz, plain text)."""
    import gzip

    import pandas as pd

    base = ("asthma", "pollution-episode", "--store", store, "--areas", forecast, "--out")
    result, said = invoke(*base, tmp_path / "p.xlsx")
    refused(result, said, "p.xlsx", ".csv, .csv.gz or .parquet")
    assert not (tmp_path / "p.xlsx").exists()
    for name in ("p.csv", "p.csv.gz", "p.parquet"):
        result, said = invoke(*base, tmp_path / name)
        assert result.exit_code == 0, said
    plain = pd.read_csv(tmp_path / "p.csv", dtype=str)
    with gzip.open(tmp_path / "p.csv.gz", "rt") as fh:
        assert pd.read_csv(fh, dtype=str).equals(plain)
    assert list(pd.read_parquet(tmp_path / "p.parquet").columns) == list(plain.columns)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.csv", "p.csv.gz", "p.parquet"]


# -- reference and ingest -----------------------------------------------------------------


def test_reference_build_from_a_file_says_it_is_a_file(tmp_path):
    """It said 'no such folder' of a file that is there."""
    zipped = tmp_path / "reference.zip"
    zipped.write_bytes(b"PK")
    result, said = invoke("reference", "build", "--from", zipped, "--out", tmp_path / "s")
    refused(result, said, "--from", "reference.zip is a file")


def test_reference_download_to_a_file_is_refused_before_any_download(tmp_path, monkeypatch):
    """A NotADirectoryError traceback from making the layout's folders under it."""
    _never(monkeypatch, "pophealth.reference.download", "fetch")
    taken = tmp_path / "data"
    taken.write_text("")
    result, said = invoke("reference", "download", "--to", taken, "--only", "imd2019_file2")
    refused(result, said, "--to", "is a file, not a folder")


def test_reference_download_offline_says_so(tmp_path, monkeypatch):
    """Offline, each file fails on name resolution: the last line says what that means."""
    from pophealth.reference import download

    def unreachable(url, target, **kwargs):
        raise download.DownloadError(f"{url}: [Errno -2] Name or service not known")

    monkeypatch.setattr(download, "fetch", unreachable)
    result, said = invoke(
        "reference", "download", "--to", tmp_path / "d", "--only", "imd2019_file2"
    )
    assert result.exit_code == 1, said
    assert "could not be reached (no network connection?)" in said, said


def test_ingest_fhir_of_a_folder_without_fhir_files(tmp_path, monkeypatch):
    """An empty folder ran an ingest that loaded nothing (exit 1, no line saying why) and
    left a folder at --out that the next ingest refused as 'not a pophealth store'."""
    monkeypatch.setenv("POPHEALTH_PSEUDONYM_KEY", "k" * 32)
    exports = tmp_path / "exports"
    exports.mkdir()
    (exports / "notes.txt").write_text("not FHIR")
    result, said = invoke("ingest", "fhir", exports, "--out", tmp_path / "s")
    refused(result, said, "no FHIR files in", "1 other files passed over", ".ndjson")
    assert not (tmp_path / "s").exists()


# -- help, and Ctrl-C ---------------------------------------------------------------------


def test_run_and_demo_help_say_what_is_disclosure_controlled_and_replaced():
    for command in ("run", "demo"):
        result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        said = " ".join(result.output.split())
        assert "disclosure-controlled" in said and "counts of 1-7 withheld" in said, said
        assert "replace" in said, said


def test_ingest_help_says_where_the_quarantine_of_a_new_store_goes():
    """It named only STORE/quarantine/; a first ingest that commits nothing writes its
    report to STORE-quarantine/ beside the store it did not make."""
    result = runner.invoke(app, ["ingest", "--help"], env={"COLUMNS": "200"})
    said = " ".join(result.output.replace("│", " ").split())
    assert "STORE/quarantine/<run>.csv" in said and "STORE-quarantine/" in said, said


def test_ctrl_c_says_what_was_left(tmp_path):
    """Typer turns Ctrl-C into exit 130 by itself, so the message the entry point had for
    it was never printed. (On a busy machine the 5 seconds can end while the CLI is still
    loading: ``python -m pophealth`` says the same then, where it ended by the signal.)"""
    out = tmp_path / "s"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pophealth", "synth", "--patients", "2000000", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    time.sleep(5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted: nothing is left half-written" in err
    assert "Traceback" not in err
    assert not out.exists() or not any((out / "snapshots").glob("*/metadata.json"))


def test_a_full_disk_while_writing_is_one_line_and_leaves_no_temporary_file(
    tmp_path, store, definitions, forecast, monkeypatch
):
    """An OSError while writing an output (the disk filling up) was a traceback."""
    import pyarrow.csv as pcsv

    def full(table, where, options=None):
        with open(where, "w") as f:
            f.write('"patient_id"\n')  # half written, then the disk is full
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pcsv, "write_csv", full)
    ds, ms = definitions
    out = tmp_path / "out"
    out.mkdir()
    commands = [
        ("dataset", ds, "--store", store, "--output", out / "d.csv"),
        ("measures", ms, "--store", store, "--output", out / "m.csv"),
        ("asthma", "pollution-episode", "--store", store, "--areas", forecast, "--out",
         out / "p.csv"),
    ]  # fmt: skip
    for args in commands:
        result, said = invoke(*args)
        refused(result, said, "cannot write", "No space left on device")
    assert list(out.iterdir()) == []


def test_ctrl_c_while_the_cli_loads_says_what_was_left():
    """Ctrl-C before the CLI has loaded (its imports take a second, more on a busy machine)
    ended ``python -m pophealth`` by the signal, with a traceback from whatever module was
    loading. It says what a Ctrl-C in a command says. (The interrupt is raised where the CLI
    is imported, so the test does not depend on timing.)"""
    code = (
        "import importlib.abc, runpy, sys\n"
        "class Stop(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name == 'pophealth.cli':\n"
        "            raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, Stop())\n"
        "runpy.run_module('pophealth', run_name='__main__')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 130, proc.stderr[-2000:]
    assert "interrupted: nothing is left half-written" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_pophealth_command_loads_the_cli_inside_the_same_guard():
    """The installed ``pophealth`` command runs the guarded entry point, not the CLI module
    itself (whose import a Ctrl-C would interrupt with a traceback): the function the
    project's scripts table names says so when the CLI's import is interrupted."""
    import tomllib
    from importlib import import_module
    from pathlib import Path

    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    module, function = project["project"]["scripts"]["pophealth"].split(":")
    code = (
        "import importlib.abc, sys\n"
        "class Stop(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name == 'pophealth.cli':\n"
        "            raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, Stop())\n"
        f"from {module} import {function}\n"
        f"{function}()\n"
    )
    assert callable(getattr(import_module(module), function))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 130, proc.stderr[-2000:]
    assert "interrupted: nothing is left half-written" in proc.stderr
    assert "Traceback" not in proc.stderr
