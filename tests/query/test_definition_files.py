"""`pophealth dataset FILE` and `pophealth measures FILE`: an analyst's own definition file
run from the command line, as ehrQL's generate-dataset / generate-measures are."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pophealth.cli import app
from pophealth.commands.query import write_table
from pophealth.disclosure import count_text
from pophealth.query import run_dataset, run_events, run_measures
from pophealth.query.definitions import DefinitionError, find_definition, load_definitions
from pophealth.synth import write_synthetic_store

runner = CliRunner()

DOC = Path(__file__).resolve().parents[2] / "docs" / "query.md"
#: The definition file docs/query.md shows (its section 5): the test runs what the guide says.
DEFINITION = re.search(r"```py\n(# asthma_reviews.py\n.*?)```", DOC.read_text(), re.S).group(1)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_synthetic_store(
        tmp_path_factory.mktemp("defs") / "store", patients=2000, seed=7, progress=None
    )


@pytest.fixture
def definition(tmp_path):
    path = tmp_path / "asthma_reviews.py"
    path.write_text(DEFINITION)
    return path


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def read_csv(path):
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """A frame as the CSV writer spells it: text, true/false, ISO dates, "" for missing."""
    out = pd.DataFrame(index=frame.index)
    for col in frame.columns:
        values = frame[col]
        if pd.api.types.is_datetime64_any_dtype(values):  # dates come back as datetimes
            values = values.dt.date
        if values.dtype == bool or values.dtype == "boolean":
            out[col] = values.map({True: "true", False: "false"}).fillna("")
        else:
            out[col] = values.map(lambda v: "" if pd.isna(v) else str(v))
    return out.reset_index(drop=True)


def assert_written(path, expected: pd.DataFrame) -> None:
    """The CSV at ``path`` holds ``expected``: numbers equal as numbers (15 is 15.0, a
    missing count is empty), everything else as the writer spells it."""
    got = read_csv(path)
    assert list(got.columns) == list(expected.columns)
    numeric = [c for c in expected.columns if pd.api.types.is_float_dtype(expected[c])]
    text = [c for c in expected.columns if c not in numeric]
    pd.testing.assert_frame_equal(got[text], as_text(expected[text]))
    for col in numeric:
        values = pd.to_numeric(got[col].replace("", None), errors="raise").astype(float)
        pd.testing.assert_series_equal(
            values, expected[col].astype(float).reset_index(drop=True), check_names=False
        )


def test_dataset_file_gives_the_dataset_and_its_event_table(tmp_path, store, definition):
    out = tmp_path / "out" / "asthma.csv"
    result = invoke("dataset", definition, "--store", store.path, "--output", out)
    assert result.exit_code == 0, result.output

    ns = load_definitions(definition)
    expected = run_dataset(store, ns["dataset"], index_date="2026-03-31")
    got = read_csv(out)
    assert list(got.columns) == [
        "patient_id",
        "age_band",
        "imd_quintile",
        "reviewed_12m",
        "saba_12m",
        "last_review",
    ]
    assert len(got) == len(expected) > 0
    pd.testing.assert_frame_equal(got, as_text(expected))

    events_out = tmp_path / "out" / "asthma.reviews.csv"
    rows = run_events(store, ns["dataset"], "reviews", index_date="2026-03-31")
    pd.testing.assert_frame_equal(read_csv(events_out), as_text(rows))
    assert set(read_csv(events_out)["patient_id"]) <= set(got["patient_id"])

    # counts of patients on the console pass through the disclosure rule
    said = " ".join(result.output.split())
    assert f"{count_text(len(expected))} patients, 6 columns" in said
    assert "index date 2026-03-31" in said
    assert not list(out.parent.glob(".*tmp"))  # no temporary file left behind


@pytest.mark.parametrize("suffix", [".parquet", ".csv.gz"])
def test_dataset_other_formats_hold_the_same_rows(tmp_path, store, definition, suffix):
    csv, other = tmp_path / "a.csv", tmp_path / f"a{suffix}"
    for path in (csv, other):
        result = invoke("dataset", definition, "--store", store.path, "--output", path)
        assert result.exit_code == 0, result.output
    assert (tmp_path / f"a.reviews{suffix}").exists()
    if suffix == ".parquet":
        frame = pq.read_table(other).to_pandas()
        assert frame["last_review"].notna().any()
        pd.testing.assert_frame_equal(as_text(frame), read_csv(csv))
    else:
        pd.testing.assert_frame_equal(read_csv(other), read_csv(csv))


def test_index_date_flag_then_the_datasets_own_then_the_extract_date(tmp_path, store):
    path = tmp_path / "when.py"
    path.write_text(
        "from pophealth.query import Dataset, index_date, patients\n"
        "dataset = Dataset(index_date='2024-01-31')\n"
        "dataset.define_population(patients.is_alive_on(index_date))\n"
        "dataset.when = index_date\n"
    )
    out = tmp_path / "when.csv"
    assert invoke("dataset", path, "--store", store.path, "--output", out).exit_code == 0
    assert set(read_csv(out)["when"]) == {"2024-01-31"}
    args = ("dataset", path, "--store", store.path, "--output", out, "--index-date", "2025-06-30")
    assert invoke(*args).exit_code == 0
    assert set(read_csv(out)["when"]) == {"2025-06-30"}
    path.write_text(path.read_text().replace("index_date='2024-01-31'", ""))
    assert invoke("dataset", path, "--store", store.path, "--output", out).exit_code == 0
    assert set(read_csv(out)["when"]) == {store.metadata["extract_date"]}


def test_the_console_counts_one_as_one(tmp_path, store):
    """It said "1 columns" and "over 1 intervals"."""
    path = tmp_path / "ids.py"
    path.write_text(
        "from pophealth.query import Dataset, Measures, index_date, patients, yearly\n"
        "dataset = Dataset()\n"
        "dataset.define_population(patients.is_alive_on(index_date))\n"
        "measures = Measures(intervals=yearly('2025-04-01', 1))\n"
        "measures.define_measure('alive', numerator=patients.is_alive_on(index_date),\n"
        "                        denominator=patients.sex.is_not_null())\n"
    )
    result = invoke("dataset", path, "--store", store.path, "--output", tmp_path / "ids.csv")
    assert result.exit_code == 0, result.output
    assert "patients, 1 column: " in " ".join(result.output.split())
    result = invoke("measures", path, "--store", store.path, "--output", tmp_path / "m.csv")
    assert result.exit_code == 0, result.output
    assert "1 row: 1 measure over 1 interval (" in " ".join(result.output.split())


def test_measures_file_is_disclosure_controlled_unless_told(tmp_path, store, definition):
    ns = load_definitions(definition)
    out = tmp_path / "m.csv"
    result = invoke("measures", definition, "--store", store.path, "--output", out)
    assert result.exit_code == 0, result.output
    got = read_csv(out)
    expected = run_measures(store, ns["measures"])
    assert len(got) == len(expected) > 0
    assert_written(out, expected)
    released = pd.to_numeric(got["numerator"], errors="coerce").dropna()
    assert (released % 5 == 0).all()
    assert "1 measure over 6 intervals" in " ".join(result.output.split())
    assert "exact counts" not in result.output

    exact_out = tmp_path / "exact.csv"
    args = ("measures", definition, "--store", store.path, "--output", exact_out)
    result = invoke(*args, "--no-disclosure")
    assert result.exit_code == 0, result.output
    exact = run_measures(store, ns["measures"], disclosure=False)
    assert_written(exact_out, exact)
    assert "exact counts, not disclosure-controlled" in " ".join(result.output.split())
    # the small synthetic store has counts that the rule changes: the two really differ
    assert not read_csv(exact_out)["numerator"].equals(got["numerator"])


BAD = {
    "variable_type": (
        "from pophealth.query import Dataset, events, index_date, patients\n"
        "dataset = Dataset()\n"
        "dataset.define_population(patients.is_alive_on(index_date))\n"
        "dataset.bad = events.exists_for_patient() + 1\n",
        ["line 4", "variable 'bad'", "arithmetic needs numbers"],
    ),
    "many_rows": (
        "from pophealth.query import Dataset, events\n"
        "dataset = Dataset()\n"
        "dataset.many = events.date\n",
        ["line 3", "variable 'many'", "not one per patient"],
    ),
    "syntax": ("dataset = (\n", ["line 1", "syntax error"]),
    "codelist": (
        "from pophealth.query import codelist\nc = codelist('no_such_list')\n",
        ["line 2", "no curated code list 'no_such_list'"],
    ),
    "import": (
        "import no_such_helper_module\n",
        ["ModuleNotFoundError", "line 1", "import no_such_helper_module"],
    ),
    "none": ("x = 1\n", ["makes no Dataset", "dataset = Dataset(...)"]),
    # sys.exit(0) ended the command with success and nothing written
    "exit": ("import sys\n\nsys.exit(0)\n", ["line 3", "called sys.exit(0)"]),
    "exit_message": ("import sys\nsys.exit('stop here')\n", ["line 2", "sys.exit('stop here')"]),
    "several": (
        "from pophealth.query import Dataset\na = Dataset()\nb = Dataset()\n",
        ["makes 2 Dataset objects (a, b)", "call the one to run `dataset`"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_definition_is_named_with_its_line_and_writes_nothing(tmp_path, store, case):
    source, words = BAD[case]
    path = tmp_path / f"{case}.py"
    path.write_text(source)
    out = tmp_path / "o.csv"
    result = invoke("dataset", path, "--store", store.path, "--output", out)
    assert result.exit_code == 2
    said = " ".join(result.output.split())
    assert str(path) in said
    for word in words:
        assert word in said, (word, said)
    assert "Traceback" not in said or case == "import"
    assert not out.exists()


def test_usage_mistakes_stop_before_any_work(tmp_path, store, definition):
    out = tmp_path / "o.csv"
    cases = [
        (("dataset", tmp_path / "missing.py", "--store", store.path, "--output", out), "no such"),
        (("dataset", definition, "--store", tmp_path / "nope", "--output", out), "no store"),
        (("dataset", definition, "--store", store.path, "--output", tmp_path / "o.xlsx"), ".csv"),
        (("measures", definition, "--store", store.path, "--output", tmp_path / "m"), ".csv"),
    ]
    for args, words in cases:
        result = invoke(*args)
        assert result.exit_code == 2 and words in result.output, result.output
    empty = tmp_path / "empty.py"
    empty.write_text("from pophealth.query import Measures\nmeasures = Measures()\n")
    result = invoke("measures", empty, "--store", store.path, "--output", out)
    assert result.exit_code == 2 and "defines no measure" in result.output
    assert not out.exists()


def test_an_output_that_cannot_be_written_stops_before_any_work(tmp_path, store, definition):
    """A folder in the output's place, or a file in its folder's, was a traceback from the
    rename after the whole dataset had run; an event table's file is checked too."""
    import pophealth.query as query

    (tmp_path / "taken.csv").mkdir()
    (tmp_path / "a_file").write_text("")
    (tmp_path / "b.reviews.csv").mkdir()
    slash = tmp_path / "slash.py"
    slash.write_text(
        DEFINITION.replace('add_event_table(\n    "reviews"', 'add_event_table(\n    "a/b"')
    )
    cases = [
        ("dataset", definition, tmp_path / "taken.csv", "--output", "is a folder"),
        ("measures", definition, tmp_path / "taken.csv", "--output", "is a folder"),
        ("dataset", definition, tmp_path / "a_file" / "o.csv", "a_file is a file", "--output"),
        ("dataset", definition, tmp_path / "b.csv", "event table 'reviews'", "is a folder"),
        ("dataset", slash, tmp_path / "c.csv", "event table 'a/b'", "cannot name a file"),
    ]
    for command, path, out, *words in cases:
        with pytest.MonkeyPatch.context() as mp:
            for name in ("run_dataset", "run_events", "run_measures"):
                mp.setattr(query, name, lambda *a, **k: pytest.fail("ran before checking"))
            result = invoke(command, path, "--store", store.path, "--output", out)
        said = " ".join(result.output.split())
        assert result.exit_code == 2, said
        for word in words:
            assert word in said, (word, said)
    assert not (tmp_path / "b.csv").exists() and not (tmp_path / "c.csv").exists()


def test_a_definition_can_import_helpers_kept_beside_it(tmp_path):
    (tmp_path / "shared_rules_for_test.py").write_text(
        "from pophealth.query import index_date, patients\n"
        "adult = patients.age_on(index_date) >= 18\n"
    )
    path = tmp_path / "uses_helper.py"
    path.write_text(
        "from pophealth.query import Dataset\n"
        "from shared_rules_for_test import adult\n"
        "dataset = Dataset()\n"
        "dataset.define_population(adult)\n"
    )
    before = list(sys.path)
    try:
        ns = load_definitions(path)
    finally:
        sys.modules.pop("shared_rules_for_test", None)
    assert ns["dataset"].population is not None
    assert sys.path == before  # the folder is importable only while the file runs


def test_find_definition_prefers_the_conventional_name():
    from pophealth.query import Dataset

    ds, other = Dataset(), Dataset()
    assert find_definition({"dataset": ds, "other": other}, Dataset, "dataset", "f.py") is ds
    assert find_definition({"only": other, "n": 1}, Dataset, "dataset", "f.py") is other
    with pytest.raises(DefinitionError, match="makes no Dataset"):
        find_definition({"dataset": 3}, Dataset, "dataset", "f.py")


def test_an_interrupted_write_leaves_the_previous_output(tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.csv as pcsv

    out = tmp_path / "o.csv"
    write_table(pa.table({"a": [1, 2]}), out, ".csv")
    before = out.read_text()

    def broken(table, where, options=None):
        with open(where, "w") as f:
            f.write('"a"\n1\n')  # half written, then the run dies
        raise OSError("disk full")

    monkeypatch.setattr(pcsv, "write_csv", broken)
    with pytest.raises(OSError, match="disk full"):
        write_table(pa.table({"a": [7, 8, 9]}), out, ".csv")
    assert out.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.csv"]


def test_a_run_failing_part_way_leaves_every_previous_output(tmp_path, store, definition):
    """The dataset was renamed into place before its event table ran: a failure there left a
    new dataset beside the previous run's event table (another index date). Now every file
    is renamed into place only once all are written."""
    import pophealth.query as query

    out = tmp_path / "out" / "asthma.csv"
    args = ("dataset", definition, "--store", store.path, "--output", out)
    assert invoke(*args, "--index-date", "2025-03-31").exit_code == 0
    before = {p.name: p.read_bytes() for p in out.parent.iterdir()}
    assert sorted(before) == ["asthma.csv", "asthma.reviews.csv"]

    def lost(*args, **kwargs):
        raise RuntimeError("executor lost")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(query, "run_events", lost)
        result = invoke(*args, "--index-date", "2026-03-31")
    assert isinstance(result.exception, RuntimeError)
    assert {p.name: p.read_bytes() for p in out.parent.iterdir()} == before  # no temporary left
    assert invoke(*args, "--index-date", "2026-03-31").exit_code == 0
    assert out.read_bytes() != before["asthma.csv"]  # the two runs really differ


@pytest.mark.spark
@pytest.mark.skipif(importlib.util.find_spec("pyspark") is None, reason="pyspark not installed")
def test_spark_writes_the_same_dataset_as_duckdb(tmp_path, store, definition):
    files = {}
    for engine in ("duckdb", "spark"):
        out = tmp_path / f"{engine}.csv"
        args = ("dataset", definition, "--store", store.path, "--output", out)
        result = invoke(*args, "--engine", engine)
        assert result.exit_code == 0, result.output
        files[engine] = read_csv(out)
    pd.testing.assert_frame_equal(files["spark"], files["duckdb"])


def test_the_guides_example_mistake_is_reported_as_it_says(tmp_path, store):
    said_in_guide = re.search(
        r"asthma_reviews.py, line (\d+): variable 'saba_12m'", DOC.read_text()
    )
    path = tmp_path / "asthma_reviews.py"
    path.write_text(DEFINITION.replace(".in_last(months=12).count_for_patient()", ""))
    result = invoke("dataset", path, "--store", store.path, "--output", tmp_path / "o.csv")
    assert result.exit_code == 2
    expected = f"asthma_reviews.py, line {said_in_guide.group(1)}: variable 'saba_12m': "
    assert expected in " ".join(result.output.split()), result.output


def test_a_column_without_values_keeps_a_text_type_in_parquet(tmp_path):
    import pyarrow as pa

    frame = pd.DataFrame({"measure": ["m"], "imd_quintile": [None], "disclosure_note": [None]})
    write_table(frame, tmp_path / "m.parquet", ".parquet")
    schema = pq.read_schema(tmp_path / "m.parquet")
    assert schema.field("imd_quintile").type == pa.string()
    assert schema.field("disclosure_note").type == pa.string()


def test_what_a_definition_prints_stays_off_stdout(tmp_path, store, definition):
    """stdout carries only the paths written (for a script to read); a definition's own
    print() goes to stderr."""
    path = tmp_path / "chatty.py"
    path.write_text('print("building the dataset")\n' + DEFINITION)
    out = tmp_path / "o.csv"
    result = invoke("dataset", path, "--store", store.path, "--output", out)
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == [
        str(out.resolve()),
        str((tmp_path / "o.reviews.csv").resolve()),
    ]
    assert "building the dataset" in result.stderr


def test_an_earlier_runs_event_table_is_pointed_out(tmp_path, store, definition):
    """Run with an event table, then without: the old table's file stays (it is not this
    run's to remove) and the console says it was not written by this run."""
    out = tmp_path / "a.csv"
    assert invoke("dataset", definition, "--store", store.path, "--output", out).exit_code == 0
    without = tmp_path / "without.py"
    without.write_text(DEFINITION.split("dataset.add_event_table(")[0] + "\n")
    result = invoke("dataset", without, "--store", store.path, "--output", out)
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert f"{tmp_path / 'a.reviews.csv'} was not written by this run" in said
    assert (tmp_path / "a.reviews.csv").exists()
    again = invoke("dataset", definition, "--store", store.path, "--output", out)
    assert "was not written by this run" not in again.output


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_a_list_column_is_written_to_csv_joined_by_bars(tmp_path, suffix):
    """An event table of admissions keeps all_diagnoses, a list: CSV cannot hold a list
    (it was a traceback), so its items are joined by "|", as flat ingest reads them."""
    import gzip

    import pyarrow as pa

    from pophealth.commands.query import Pending

    table = pa.table(
        {
            "patient_id": ["1", "2", "3"],
            "all_diagnoses": pa.array([["J45", "I10X"], [], None], pa.list_(pa.string())),
        }
    )
    out = tmp_path / f"admissions{suffix}"
    with Pending(suffix) as pending:
        pending.write(table, out)
        pending.commit()
    raw = gzip.decompress(out.read_bytes()) if suffix == ".csv.gz" else out.read_bytes()
    assert raw.decode().splitlines() == [
        '"patient_id","all_diagnoses"',
        '"1","J45|I10X"',
        '"2",""',
        '"3",',
    ]


def test_measures_warns_of_a_cross_tab_beside_its_margin(tmp_path, store):
    """A measure by practice and sex beside the same measure by practice over other
    intervals is released as two tables, which the release does not protect together: the
    command says so, and names both (docs/query.md, section 4). Over the same intervals
    they are one table, overall or not: no warning."""
    path = tmp_path / "cross.py"
    path.write_text(
        "from pophealth.query import Measures, index_date, patients, registrations, yearly\n"
        "measures = Measures(intervals=yearly('2025-04-01', 1))\n"
        "alive = patients.is_alive_on(index_date)\n"
        "registered = registrations.registered_on(index_date)\n"
        "practice = registrations.practice_on(index_date).practice_id\n"
        "for name, by in (('by_practice', {'practice': practice}),\n"
        "                 ('by_practice_sex', {'practice': practice, 'sex': patients.sex})):\n"
        "    measures.define_measure(name, numerator=alive, denominator=registered,\n"
        "                            group_by=by, intervals=INTERVALS[name])\n"
    )
    text = path.read_text()
    for by_practice, warned in (("yearly('2024-04-01', 2)", True), ("None", False)):
        intervals = f"INTERVALS = {{'by_practice': {by_practice}, 'by_practice_sex': None}}\n"
        path.write_text(text.replace("alive =", intervals + "alive ="))
        out = tmp_path / f"m{warned}.csv"
        result = invoke("measures", path, "--store", store.path, "--output", out)
        assert result.exit_code == 0, result.output
        said = " ".join(result.output.split())
        warning = "warning: measure 'by_practice_sex' (by practice, sex) adds up to 'by_practice'"
        assert (warning in said) is warned, said
