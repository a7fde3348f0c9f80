"""The store: Parquet snapshots, metadata, and the atomic-write guarantee."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pyarrow as pa
import pytest

from pophealth.schema import SCHEMA_VERSION, TABLES
from pophealth.store import GRACE_SETTING, Store, StoreError


@pytest.fixture(autouse=True)
def no_grace_period(monkeypatch):
    """These tests are about leases: a superseded snapshot goes as soon as no lease holds
    it (the grace period for readers without a lease is tested in test_store_audit12.py)."""
    monkeypatch.setenv(GRACE_SETTING, "0")


def patients_table(n: int, prefix: str = "p") -> pa.Table:
    return pa.table(
        {
            "patient_id": [f"{prefix}{i}" for i in range(n)],
            "date_of_birth": pa.array([18262] * n, pa.date32()),
            "sex": ["female"] * n,
            "ethnicity_5": ["white"] * n,
            "ethnicity_16": ["A"] * n,
            "date_of_death": pa.nulls(n, pa.date32()),
        }
    )


def _child(code: str) -> subprocess.Popen:
    """Python ``code`` in another process, talking over its stdin and stdout."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_write_then_open_has_every_table_and_metadata(tmp_path):
    store = Store.open_or_new(tmp_path / "s").write(
        {"patients": patients_table(3)}, provenance={"source": "test"}
    )
    again = Store.open(tmp_path / "s")
    assert again.snapshot == store.snapshot
    assert again.row_counts()["patients"] == 3
    assert set(again.row_counts()) == set(TABLES)
    assert again.metadata["schema_version"] == SCHEMA_VERSION
    assert again.metadata["provenance"][-1]["source"] == "test"
    con = again.connect()
    assert con.table("patients").count().execute() == 3
    assert con.table("events").count().execute() == 0


def test_second_write_carries_other_tables_over_and_cleans_old_snapshots(tmp_path):
    s1 = Store.open_or_new(tmp_path).write({"patients": patients_table(3)}, provenance={})
    events = pa.table(
        {
            "patient_id": ["p0"],
            "date": pa.array([19000], pa.date32()),
            "datetime": pa.nulls(1, pa.timestamp("us")),
            "system": ["snomedct"],
            "code": ["195967001"],
            "value": pa.nulls(1, pa.float64()),
            "unit": pa.nulls(1, pa.string()),
        }
    )
    s2 = s1.write({"events": events}, provenance={"step": 2})
    assert s2.row_counts()["patients"] == 3 and s2.row_counts()["events"] == 1
    assert [p.name for p in (tmp_path / "snapshots").iterdir()] == [s2.snapshot]
    assert len(s2.metadata["provenance"]) == 2


def test_chunked_write_streams_all_rows(tmp_path):
    chunks = (patients_table(1000, prefix=f"c{i}-") for i in range(5))
    store = Store.open_or_new(tmp_path).write({"patients": chunks}, provenance={})
    assert store.row_counts()["patients"] == 5000
    assert store.read("patients").num_rows == 5000


def test_other_schema_version_is_refused_with_advice(tmp_path):
    store = Store.open_or_new(tmp_path).write({"patients": patients_table(1)}, provenance={})
    meta = store.snapshot_dir / "metadata.json"
    data = json.loads(meta.read_text())
    data["schema_version"] = SCHEMA_VERSION + 1
    meta.write_text(json.dumps(data))
    with pytest.raises(StoreError, match="schema version .*Rebuild it"):
        Store.open(tmp_path)


def test_non_store_directory_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="not a pophealth store"):
        Store.open(tmp_path)
    with pytest.raises(StoreError, match="exists and is not a pophealth store"):
        Store.open_or_new(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_what_a_first_write_that_committed_nothing_left_is_no_obstacle(tmp_path):
    """A first ingest that commits nothing (one broken input file) leaves an empty
    snapshots/ and readers/ and the write lock: the next write there starts afresh rather
    than refusing the folder as "not a pophealth store"; with anything else in it, it is
    still refused and left as it was."""
    store = tmp_path / "store"
    for folder in ("snapshots", "readers"):
        (store / folder).mkdir(parents=True)
    (store / ".write-lock").touch()
    Store.open_or_new(store).write({"patients": patients_table(2)}, provenance={"source": "t"})
    assert Store.open(store).row_counts()["patients"] == 2
    other = tmp_path / "other"
    (other / "snapshots").mkdir(parents=True)
    (other / ".write-lock").touch()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="exists and is not a pophealth store"):
        Store.open_or_new(other)
    assert sorted(p.name for p in other.iterdir()) == [".write-lock", "notes.txt", "snapshots"]


def test_table_that_does_not_fit_is_refused_and_store_unchanged(tmp_path):
    store = Store.open_or_new(tmp_path).write({"patients": patients_table(2)}, provenance={})
    with pytest.raises(StoreError, match="missing column"):
        store.write({"patients": pa.table({"patient_id": ["x"]})}, provenance={})
    assert Store.open(tmp_path).read("patients").num_rows == 2
    assert [p.name for p in (tmp_path / "snapshots").iterdir()] == [store.snapshot]


WRITER = textwrap.dedent(
    """
    import sys, time
    import pyarrow as pa
    sys.path.insert(0, {tests!r})
    from foundation.test_store_snapshots import patients_table
    from pophealth.store import Store

    def slow_chunks():
        for i in range(10_000):
            yield patients_table(2_000, prefix=f"new{{i}}-")
            time.sleep(0.01)

    Store.open({store!r}).write({{"patients": slow_chunks()}}, provenance={{"run": "killed"}})
    """
)


@pytest.mark.parametrize("delay", [0.0, 0.3, 1.0])
def test_kill_9_during_write_leaves_previous_store_intact(tmp_path, delay):
    """A writer killed with SIGKILL part-way leaves the old snapshot live and readable."""
    store = Store.open_or_new(tmp_path / "s").write(
        {"patients": patients_table(7)}, provenance={"run": "good"}
    )
    before = {p: p.read_bytes() for p in store.snapshot_dir.iterdir()}
    tests_dir = os.path.dirname(os.path.dirname(__file__))
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER.format(tests=tests_dir, store=str(tmp_path / "s"))]
    )
    try:
        deadline = time.time() + 60
        while not list((tmp_path / "s" / "snapshots").glob(".tmp-*/patients.parquet")):
            assert proc.poll() is None, "writer ended before it started writing"
            assert time.time() < deadline
            time.sleep(0.02)
        time.sleep(delay)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    reopened = Store.open(tmp_path / "s")
    assert reopened.snapshot == store.snapshot
    assert reopened.read("patients").num_rows == 7
    assert {p: p.read_bytes() for p in reopened.snapshot_dir.iterdir()} == before
    assert reopened.connect().table("patients").count().execute() == 7
    # The next successful write clears what the killed one left behind.
    after = reopened.write({"patients": patients_table(1)}, provenance={})
    assert [p.name for p in (tmp_path / "s" / "snapshots").iterdir()] == [after.snapshot]


def test_a_write_on_a_store_written_since_it_was_opened_is_refused(tmp_path):
    """Two writers that opened the same snapshot (two ingests with --append): the second
    would carry over tables the first replaced, undoing its write. It is refused, and
    nothing changes."""
    first = Store.open_or_new(tmp_path / "s").write(
        {"patients": patients_table(3)}, provenance={"source": "test"}
    )
    a, b = Store.open(tmp_path / "s"), Store.open(tmp_path / "s")
    after_a = a.write({"patients": patients_table(5, "a")}, provenance={"source": "a"})
    with pytest.raises(StoreError, match="was written since this Store was opened"):
        b.write({"patients": patients_table(7, "b")}, provenance={"source": "b"})
    now = Store.open(tmp_path / "s")
    assert now.snapshot == after_a.snapshot != first.snapshot
    assert now.row_counts()["patients"] == 5
    assert sorted(p.name for p in (tmp_path / "s" / "snapshots").iterdir()) == [now.snapshot]
    # a new store opened twice: the second write is refused too
    c, d = Store.open_or_new(tmp_path / "t"), Store.open_or_new(tmp_path / "t")
    c.write({"patients": patients_table(1)}, provenance={"source": "c"})
    with pytest.raises(StoreError, match="snapshot none, now"):
        d.write({"patients": patients_table(2)}, provenance={"source": "d"})


def test_writers_take_turns(tmp_path):
    """A write waits while another process holds the store's write lock (building,
    committing and collecting snapshots), so neither removes what the other commits."""
    import threading

    store = Store.open_or_new(tmp_path / "s").write(
        {"patients": patients_table(3)}, provenance={"source": "test"}
    )
    holder = _child(
        f"""
        import fcntl, sys
        fh = open({str(tmp_path / "s" / ".write-lock")!r}, "a")
        fcntl.flock(fh, fcntl.LOCK_EX)
        print("locked", flush=True)
        sys.stdin.readline()
        """
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        done = []
        writer = threading.Thread(
            target=lambda: done.append(
                store.write({"patients": patients_table(4)}, provenance={"source": "w"})
            )
        )
        writer.start()
        writer.join(timeout=1.0)
        assert writer.is_alive() and not done  # waiting for the lock
        holder.stdin.write("\n")
        holder.stdin.flush()
        writer.join(timeout=30)
        assert done and Store.open(tmp_path / "s").row_counts()["patients"] == 4
    finally:
        holder.kill()
        holder.wait()


def test_a_snapshot_another_process_reads_is_kept_until_it_is_done(tmp_path):
    """A reader (a long `pophealth run`, a web app) holds a lease on the snapshot it
    opened: another process's write keeps that snapshot, so the reader's later queries
    still find their files; the first write after the reader is gone removes it."""
    path = tmp_path / "s"
    first = Store.open_or_new(path).write(
        {"patients": patients_table(3)}, provenance={"source": "test"}
    )
    reader = _child(
        f"""
        import sys
        from pophealth.store import Store
        store = Store.open({str(path)!r})
        print(store.snapshot, flush=True)
        sys.stdin.readline()
        print(store.read("patients").num_rows, flush=True)
        sys.stdin.readline()
        """
    )
    try:
        assert reader.stdout.readline().strip() == first.snapshot
        second = Store.open(path).write({"patients": patients_table(5)}, provenance={"s": 2})
        snapshots = sorted(p.name for p in (path / "snapshots").iterdir())
        assert snapshots == sorted([first.snapshot, second.snapshot])  # kept for the reader
        reader.stdin.write("\n")
        reader.stdin.flush()
        assert reader.stdout.readline().strip() == "3"  # its files are still there
        reader.stdin.write("\n")
        reader.stdin.flush()
        assert reader.wait(timeout=30) == 0
    finally:
        reader.kill()
        reader.wait()
    third = Store.open(path).write({"patients": patients_table(7)}, provenance={"s": 3})
    assert [p.name for p in (path / "snapshots").iterdir()] == [third.snapshot]
    assert not [p for p in (path / "readers").iterdir() if not p.name.endswith(str(os.getpid()))]


def test_the_lease_of_a_process_that_is_gone_does_not_keep_its_snapshot(tmp_path):
    from pophealth.scratch import owner_tag

    path = tmp_path / "s"
    first = Store.open_or_new(path).write(
        {"patients": patients_table(3)}, provenance={"source": "test"}
    )
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = int(gone.stdout)
    lease = path / "readers" / f"{first.snapshot}@{owner_tag(dead)}"
    lease.parent.mkdir(exist_ok=True)
    lease.touch()
    second = Store.open(path).write({"patients": patients_table(4)}, provenance={"s": 2})
    assert [p.name for p in (path / "snapshots").iterdir()] == [second.snapshot]
    assert not lease.exists()
