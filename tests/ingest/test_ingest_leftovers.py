"""An ingest or store write killed with ``kill -9`` cannot clean up after itself: its
temporary folders (spilled rows, the raw quarantine records, a half-written snapshot) stay.
They are named after the process that made them; the next ingest, and the next open or
write of the store, remove those whose process is no longer running, and say so. A folder
of a live process is never touched."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile

import pytest

from pophealth.ingest.flat import ingest_csv
from pophealth.ingest.sink import Run
from pophealth.scratch import owner_tag
from pophealth.store import SNAPSHOTS, Store

PATIENTS = "patient_id,date_of_birth,sex,ethnicity_5,ethnicity_16\np1,1980-01-02,female,white,A\n"


@pytest.fixture(scope="module")
def dead_pid() -> int:
    """The pid of a process that has exited."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _leftover(parent, name: str):
    folder = parent / name
    folder.mkdir(parents=True)
    (folder / "quarantine.csv").write_text("run,table,record\nr,patients,NHS 9434765919\n")
    return folder


def _flat(tmp_path):
    d = tmp_path / "flat"
    d.mkdir()
    (d / "patients.csv").write_text(PATIENTS)
    return d


def test_the_next_ingest_removes_spill_folders_of_a_killed_ingest(tmp_path, monkeypatch, dead_pid):
    spill = tmp_path / "spill"
    monkeypatch.setenv("POPHEALTH_INGEST_TMP", str(spill))
    dead = _leftover(spill, f"pophealth-ingest-{owner_tag(dead_pid)}-k1ll3d")
    live = _leftover(spill, f"pophealth-ingest-{owner_tag(os.getpid())}-running")
    elsewhere = _leftover(spill, f"pophealth-ingest-otherhost-{dead_pid}-unknown")
    older = _leftover(spill, "pophealth-ingest-x9_abc")  # named before pids were recorded
    s = ingest_csv(_flat(tmp_path), tmp_path / "st")
    assert s.committed
    assert not dead.exists()
    assert live.exists() and elsewhere.exists() and older.exists()
    note = [n for n in s.notes if "temporary" in n]
    assert len(note) == 1
    assert str(dead) in note[0] and f"process {dead_pid}" in note[0]
    # a run's own spill folder is named after its process, and removed at the end
    run = Run(tmp_path / "other", kind="csv")
    assert run.tmp.parent == spill and run.tmp.name.startswith(f"pophealth-ingest-{owner_tag()}-")
    run.quarantine.close()
    run.cleanup()
    assert sorted(p.name for p in spill.iterdir()) == sorted(
        [live.name, elsewhere.name, older.name]
    )


def test_opening_a_store_removes_a_half_written_snapshot_of_a_killed_writer(
    tmp_path, dead_pid, caplog, monkeypatch
):
    # superseded snapshots go at the next write (no grace period for lease-less readers)
    monkeypatch.setenv("POPHEALTH_SNAPSHOT_GRACE_SECONDS", "0")
    out = tmp_path / "st"
    ingest_csv(_flat(tmp_path), out)
    snapshots = out / SNAPSHOTS
    dead = _leftover(snapshots, f".tmp-{owner_tag(dead_pid)}-20250101T000000-0123abcd")
    live = _leftover(snapshots, f".tmp-{owner_tag(os.getpid())}-20250101T000000-4567abcd")
    with caplog.at_level(logging.WARNING):
        store = Store.open(out)
    assert not dead.exists() and live.exists()
    assert any(str(dead) in r.getMessage() for r in caplog.records)
    assert store.row_counts()["patients"] == 1
    # a successful write removes old snapshots, but never a live writer's folder
    again = tmp_path / "again"
    again.mkdir()
    (again / "patients.csv").write_text(PATIENTS)
    ingest_csv(again, out)
    assert live.exists()
    assert [p.name for p in snapshots.iterdir() if not p.name.startswith(".")] == [
        Store.open(out).snapshot
    ]


def test_a_killed_first_write_does_not_block_the_next_ingest_into_the_folder(tmp_path, dead_pid):
    """Killed while writing the first snapshot, an ingest left only that half-written
    snapshot: the folder was not a store, nor empty, and the next ingest refused it."""
    out = tmp_path / "st"
    dead = _leftover(out / SNAPSHOTS, f".tmp-{owner_tag(dead_pid)}-20250101T000000-0123abcd")
    s = ingest_csv(_flat(tmp_path), out)
    assert s.committed and not dead.exists()
    assert any(str(dead) in n for n in s.notes)
    assert Store.open(out).row_counts()["patients"] == 1


def test_the_command_line_says_each_removal_once(tmp_path, dead_pid):
    """The ingest's summary notes the removal; the log line saying the same (for other
    commands) is not printed beside it. (A real process: pytest would catch the log.)"""
    spill = tmp_path / "spill"
    spill.mkdir()
    dead = _leftover(spill, f"pophealth-ingest-{owner_tag(dead_pid)}-abc")
    src = _flat(tmp_path)
    env = {**os.environ, "POPHEALTH_INGEST_TMP": str(spill), "COLUMNS": "400"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pophealth",
            "ingest",
            "csv",
            str(src),
            "--out",
            str(tmp_path / "st"),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert not dead.exists()
    said = "".join((result.stdout + result.stderr).split())
    assert said.count("".join(str(dead).split())) == 1, result.stdout + result.stderr


def test_an_ingest_removes_the_spool_folder_of_a_killed_synth(tmp_path, monkeypatch, dead_pid):
    """``pophealth synth`` spools the generated tables to the system temporary directory;
    an ingest removes the folder a killed one left there, as it does its own."""
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_tmp))
    (tmp_path / "spill").mkdir()  # the ingest's own spill folder goes elsewhere
    monkeypatch.setenv("POPHEALTH_INGEST_TMP", str(tmp_path / "spill"))
    dead = _leftover(system_tmp, f"pophealth-synth-{owner_tag(dead_pid)}-k1ll3d")
    live = _leftover(system_tmp, f"pophealth-synth-{owner_tag(os.getpid())}-running")
    s = ingest_csv(_flat(tmp_path), tmp_path / "st")
    assert s.committed
    assert not dead.exists() and live.exists()
    assert any(str(dead) in n and f"process {dead_pid}" in n for n in s.notes)
