"""`pophealth dataset` / `pophealth measures` output files, as an analyst opens them: a run
stopped by a scheduler leaves nothing behind, and the files read back cleanly in pandas."""

from __future__ import annotations

import os
import signal

import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pophealth.cli import app
from pophealth.synth import write_synthetic_store

runner = CliRunner()

DEFINITION = """\
from pophealth.query import (Dataset, Measures, codelist, events, index_date, monthly,
                             patients, registrations)

hba1c = events.matching(codelist("hba1c"))
latest = hba1c.on_or_before(index_date).last_day_for_patient(rule="min")
registered = registrations.registered_on(index_date)

dataset = Dataset()
dataset.define_population(registered & hba1c.on_or_before(index_date).exists_for_patient())
dataset.latest_date = latest.date
dataset.latest = latest.value
dataset.controlled = latest.value <= 58
dataset.age = patients.age_on(index_date)
dataset.add_event_table("readings", hba1c.in_last(months=12), columns=["date", "value"])

measures = Measures(intervals=monthly("2025-10-01", 3))
measures.define_measure(
    "controlled", numerator=latest.value <= 58, denominator=registered,
    group_by={"sex": patients.sex},
)
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_synthetic_store(
        tmp_path_factory.mktemp("outs") / "store", patients=600, seed=11, progress=None
    )


@pytest.fixture
def definition(tmp_path):
    path = tmp_path / "hba1c.py"
    path.write_text(DEFINITION)
    return path


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("stage", ["run_events", "run_measures"])
def test_a_run_stopped_by_sigterm_leaves_no_file(tmp_path, store, definition, stage):
    """A scheduler stops a job with SIGTERM. The dataset was already written to its
    temporary file while the event table ran; SIGTERM ended Python without unwinding, so
    that hidden file (``.o.csv.<pid>.tmp``: the whole patient-level dataset) stayed in the
    output folder, one more each time. Now SIGTERM ends the command as Ctrl-C does: exit
    code 143, the previous outputs as they were, no temporary file."""
    import pophealth.query as query

    command = "dataset" if stage == "run_events" else "measures"
    out = tmp_path / "out" / "o.csv"
    out.parent.mkdir()
    real = getattr(query, stage)

    def stopped(*args, **kwargs):
        result = real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)  # the scheduler stops the job here
        return result

    def outside(signum, frame):  # stands in for the default, which would end pytest too
        reached_outside.append(signum)

    reached_outside: list[int] = []
    before = signal.signal(signal.SIGTERM, outside)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(query, stage, stopped)
            result = invoke(command, definition, "--store", store.path, "--output", out)
        assert signal.getsignal(signal.SIGTERM) is outside  # put back once the command ends
    finally:
        signal.signal(signal.SIGTERM, before)
    assert reached_outside == [], "the command did not handle SIGTERM itself"
    assert result.exit_code == 128 + signal.SIGTERM, result.output
    assert sorted(p.name for p in out.parent.iterdir()) == []


def test_the_files_read_back_as_written(tmp_path, store, definition):
    """CSV and Parquet of one dataset read back in pandas as the same table: ISO dates,
    true/false, whole numbers without '.0', missing as empty, columns in definition order;
    a measures file has its fixed columns ending in the disclosure note."""
    got = {}
    for suffix in (".csv", ".csv.gz", ".parquet"):
        out = tmp_path / f"d{suffix}"
        result = invoke("dataset", definition, "--store", store.path, "--output", out)
        assert result.exit_code == 0, result.output
        got[suffix] = pq.read_table(out).to_pandas() if suffix == ".parquet" else None
    header = ["patient_id", "latest_date", "latest", "controlled", "age"]
    lines = (tmp_path / "d.csv").read_text().splitlines()
    assert lines[0] == ",".join(f'"{c}"' for c in header)
    parquet = got[".parquet"]
    assert list(parquet.columns) == header
    csv = pd.read_csv(tmp_path / "d.csv", dtype=str, keep_default_na=False)
    gz = pd.read_csv(tmp_path / "d.csv.gz", dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(csv, gz)
    for i, row in enumerate(parquet.itertuples(index=False)):
        text = csv.iloc[i]
        assert text.patient_id == row.patient_id
        assert text.latest_date == row.latest_date.isoformat()
        assert text.latest == ("" if pd.isna(row.latest) else f"{row.latest:g}")
        assert text.controlled == {True: "true", False: "false", None: ""}[row.controlled]
        assert text.age == str(row.age)
    m = tmp_path / "m.csv"
    assert invoke("measures", definition, "--store", store.path, "--output", m).exit_code == 0
    measures = pd.read_csv(m)
    assert list(measures.columns)[-1] == "disclosure_note"
    assert measures["interval_end"].tolist()[0] == "2025-10-31"


def test_intervals_or_an_index_date_past_the_extract_date_are_pointed_out(tmp_path, store):
    """The store's records end on its extract date (31 March 2026 for the synthetic one).
    Months after it still have their registered patients but none of their records, so a
    rate fell to 0 with nothing said (statins in 6 months among CVD: 65% through July,
    31% in August, 0 in September); a dataset at a later index date likewise.
    `pophealth run` warns of this; the dataset and measures commands now say so too."""
    path = tmp_path / "late.py"
    path.write_text(DEFINITION.replace('monthly("2025-10-01", 3)', 'monthly("2026-02-01", 4)'))
    result = invoke("measures", path, "--store", store.path, "--output", tmp_path / "m.csv")
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert (
        "warning: 2 of the 4 intervals end after the store's extract date 2026-03-31 (the "
        "last on 2026-05-31): records after that are not in the store, so those intervals "
        "count less than they would" in said
    ), said
    out = tmp_path / "d.csv"
    result = invoke(
        "dataset", path, "--store", store.path, "--output", out, "--index-date", "2026-04-30"
    )
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert (
        "warning: index date 2026-04-30 is after the store's extract date 2026-03-31: "
        "records after that are not in the store" in said
    ), said
    # within the records: nothing to say
    for command, extra in (("measures", ()), ("dataset", ("--index-date", "2026-03-31"))):
        args = (command, tmp_path / "hba1c.py", "--store", store.path)
        (tmp_path / "hba1c.py").write_text(DEFINITION)
        result = invoke(*args, "--output", tmp_path / f"{command}.csv", *extra)
        assert result.exit_code == 0 and "extract date" not in result.output, result.output
