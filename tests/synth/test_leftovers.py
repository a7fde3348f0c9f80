"""A ``pophealth synth`` killed with ``kill -9`` cannot remove its spool folder (the
generated tables, uncompressed). The folder is named after the process that made it, and
the next run removes it once that process is gone; folders of live processes, of other
hosts and of older versions are left alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from pophealth.scratch import SYNTH_PREFIX, owner_tag
from pophealth.synth import write_synthetic_store


def _killed_synth(tmp_path, spool):
    """Start ``pophealth synth`` with ``spool`` as its temporary directory, kill it with
    SIGKILL once it is writing its spool, and return (its pid, the folder it left)."""
    env = {**os.environ, "TMPDIR": str(spool)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pophealth", "synth", "--patients", "2000000"]
        + ["--out", str(tmp_path / "killed")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 120
        while not list(spool.glob(f"{SYNTH_PREFIX}*/*.arrow")):
            assert proc.poll() is None, "synth ended before it started spooling"
            assert time.time() < deadline, "synth did not start spooling"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    (left,) = [p for p in spool.iterdir() if p.name.startswith(SYNTH_PREFIX)]
    return proc.pid, left


def test_the_next_synth_removes_the_spool_folder_of_a_killed_synth(tmp_path, caplog):
    spool = tmp_path / "tmp"
    spool.mkdir()
    pid, left = _killed_synth(tmp_path, spool)
    assert left.name.startswith(f"{SYNTH_PREFIX}{owner_tag(pid)}-")
    live = spool / f"{SYNTH_PREFIX}{owner_tag(os.getpid())}-running"
    elsewhere = spool / f"{SYNTH_PREFIX}otherhost-{pid}-unknown"
    older = spool / f"{SYNTH_PREFIX}x9_abc"  # named before pids were recorded
    for folder in (live, elsewhere, older):
        folder.mkdir()
    store = write_synthetic_store(tmp_path / "store", patients=300, seed=1, tmp_dir=spool)
    assert store.row_counts()["patients"] == 300
    assert not left.exists()
    assert any(str(left) in r.getMessage() and str(pid) in r.getMessage() for r in caplog.records)
    # the run's own spool folder is gone too; the others stay
    assert sorted(p.name for p in spool.iterdir()) == sorted(
        [live.name, elsewhere.name, older.name]
    )
