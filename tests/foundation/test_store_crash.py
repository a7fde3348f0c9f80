"""The store under real failure: writers killed with SIGKILL at every step of a write,
readers opening while a writer commits, two writers at once, a full disk, folders that
cannot be written, and readers whose snapshot another process replaces. Every process
here is a real one; nothing is mocked in the process under test."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pytest

from pophealth.schema import TABLES
from pophealth.store import GRACE_SETTING, Store

TESTS = str(Path(__file__).resolve().parents[1])
sys.path.insert(0, TESTS)
from foundation.test_store_snapshots import no_grace_period, patients_table  # noqa: E402, F401

#: what the old and the new snapshot hold: (patients rows, events rows)
OLD, NEW = (7, 0), (5, 3)


def events_table(n: int) -> pa.Table:
    return pa.table(
        {
            "patient_id": [f"p{i}" for i in range(n)],
            "date": pa.array([19000 + i for i in range(n)], pa.date32()),
            "datetime": pa.nulls(n, pa.timestamp("us")),
            "system": ["snomedct"] * n,
            "code": [str(195967001 + i) for i in range(n)],
            "value": pa.nulls(n, pa.float64()),
            "unit": pa.nulls(n, pa.string()),
        }
    )


def _python(code: str, *args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=str(Path(TESTS).parent),
        **kwargs,
    )


def _seen(path: Path) -> tuple[int, int]:
    """What a new reader sees: every table's file is there and readable, and agrees with
    the snapshot's metadata. Returns (patients rows, events rows)."""
    store = Store.open(path)
    counts = {name: store.read(name).num_rows for name in TABLES}
    assert counts == store.row_counts(), "a table's file does not match its metadata"
    return counts["patients"], counts["events"]


def _old_store(path: Path) -> Store:
    return Store.open_or_new(path).write(
        {"patients": patients_table(OLD[0]), "events": events_table(OLD[1])},
        provenance={"run": "old"},
    )


# -- SIGKILL at every step of a write ------------------------------------------------------

#: the steps of a write, in order: every table file (patients and events written, the
#: others hard-linked from the old snapshot), the rename of the built folder to its
#: snapshot id, and the replacement of CURRENT (the commit)
STEPS = [
    *(f"{when} {name}" for name in TABLES for when in ("before", "after")),
    "before rename",
    "after rename",
    "before replace",
    "after replace",
]

#: Writes the new snapshot, stopping (asleep, to be killed) at the step it is told. It
#: imports once and forks a writer per step: each writer is a process of its own, killed
#: with SIGKILL, then reaped here ("reaped" tells the test it is gone).
STOPPING_WRITERS = """
    import os, sys, time
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from foundation.test_store_crash import NEW, events_table
    from foundation.test_store_snapshots import patients_table
    import pophealth.store as store_module
    from pophealth.store import Store

    STOP = None

    def step(name):
        if name == STOP:
            print(os.getpid(), name, flush=True)
            time.sleep(600)  # until killed

    def around(real, name_of):
        def wrapped(*args, **kwargs):
            step("before " + name_of(*args))
            out = real(*args, **kwargs)
            step("after " + name_of(*args))
            return out
        return wrapped

    store_module._write_parquet = around(store_module._write_parquet, lambda n, d, t: n)
    os.link = around(os.link, lambda src, dst: Path(dst).stem)
    os.rename = around(os.rename, lambda src, dst: "rename")
    os.replace = around(os.replace, lambda src, dst: "replace")

    def events():  # in chunks: the clustered (sorted) path
        yield events_table(2)
        yield events_table(3).slice(2)

    for line in sys.stdin:
        store, STOP = line.rstrip("\\n").split("\\t")
        writer = os.fork()
        if writer == 0:
            try:
                Store.open(store).write(
                    {{"patients": patients_table(NEW[0]), "events": events()}},
                    provenance={{"run": "new"}},
                )
                print(os.getpid(), "finished", flush=True)
            except KeyboardInterrupt:
                print(os.getpid(), "interrupted", flush=True)
            finally:
                os._exit(0)
        os.waitpid(writer, 0)
        print("reaped", flush=True)
"""


@pytest.fixture(scope="module")
def stopping_writers():
    # started before no_grace_period sets it for each test
    env = {**os.environ, GRACE_SETTING: "0"}
    server = _python(STOPPING_WRITERS.format(tests=TESTS), env=env)
    yield server
    server.kill()
    server.wait()


@pytest.mark.parametrize("stop", STEPS)
def test_a_writer_killed_at_any_step_leaves_the_old_or_the_new_snapshot_whole(
    tmp_path, stop, stopping_writers
):
    path = tmp_path / "s"
    old = _old_store(path)
    stopping_writers.stdin.write(f"{path}\t{stop}\n")
    stopping_writers.stdin.flush()
    writer, reached = stopping_writers.stdout.readline().strip().split(" ", 1)
    try:
        assert reached == stop
        expected = NEW if stop == "after replace" else OLD
        assert _seen(path) == expected  # a reader while the writer is stopped there
    finally:
        os.kill(int(writer), signal.SIGKILL)
        assert stopping_writers.stdout.readline().strip() == "reaped"
    assert _seen(path) == expected  # and once it is dead
    current = Store.open(path)
    assert (current.snapshot == old.snapshot) == (expected == OLD)
    # the next write removes whatever the killed one left: a half-built folder, a renamed
    # but uncommitted snapshot, a pointer file, the old snapshot
    after = current.write({"patients": patients_table(2)}, provenance={"run": "next"})
    assert [p.name for p in (path / "snapshots").iterdir()] == [after.snapshot]
    assert not list(path.glob(".CURRENT.*"))
    assert _seen(path) == (2, expected[1])


@pytest.mark.parametrize(
    "stop", ["after patients", "after events", "after rename", "before replace", "after replace"]
)
def test_a_write_interrupted_with_ctrl_c_cleans_up_after_itself(tmp_path, stop, stopping_writers):
    """Ctrl-C (SIGINT) at a step: the write removes what it built, whatever the step. It
    left the complete but uncommitted snapshot of an interrupt after the rename (and its
    pointer file) behind until the next write; patient-level rows nobody reads."""
    path = tmp_path / "s"
    old = _old_store(path)
    stopping_writers.stdin.write(f"{path}\t{stop}\n")
    stopping_writers.stdin.flush()
    writer, reached = stopping_writers.stdout.readline().strip().split(" ", 1)
    assert reached == stop
    os.kill(int(writer), signal.SIGINT)
    assert stopping_writers.stdout.readline().split() == [writer, "interrupted"]
    assert stopping_writers.stdout.readline().strip() == "reaped"
    committed = stop == "after replace"
    current = Store.open(path)
    assert _seen(path) == (NEW if committed else OLD)
    assert (current.snapshot == old.snapshot) != committed
    left = {p.name for p in (path / "snapshots").iterdir()}
    assert left == ({old.snapshot, current.snapshot} if committed else {old.snapshot})
    assert not list(path.glob(".CURRENT.*"))


# -- readers while writers commit --------------------------------------------------------

COMMITTING_WRITER = """
    import sys
    sys.path.insert(0, {tests!r})
    from foundation.test_store_crash import events_table
    from foundation.test_store_snapshots import patients_table
    from pophealth.store import Store

    for gen in range(1, {generations} + 1):
        chunks = (events_table(gen).slice(i, 1) for i in range(gen))
        Store.open({store!r}).write(
            {{"patients": patients_table(gen), "events": chunks}}, provenance={{"gen": gen}}
        )
    print("done", flush=True)
"""


def test_readers_opening_while_a_writer_commits_see_one_whole_snapshot(tmp_path):
    """A reader opening (and reading every table) while another process commits snapshot
    after snapshot sees, each time, one complete snapshot: patients, events and the
    provenance of one write, never a mix, never a missing file."""
    path = tmp_path / "s"
    Store.open_or_new(path).write(
        {"patients": patients_table(0), "events": events_table(0)}, provenance={"gen": 0}
    )
    writer = _python(COMMITTING_WRITER.format(tests=TESTS, store=str(path), generations=20))
    seen = set()
    try:
        while writer.poll() is None or not seen:
            store = Store.open(path)
            gen = store.metadata["provenance"][-1]["gen"]
            con = store.connect()
            assert con.table("patients").count().execute() == gen
            assert store.read("events").num_rows == gen
            patients, events = _seen(path)  # a second reader, opened just now
            assert patients == events
            seen.add(gen)
    finally:
        writer.kill()
        out, err = writer.communicate()
    assert writer.returncode == 0 and out.strip() == "done", err
    assert len(seen) >= 2, "the reader never saw the writer commit"
    assert _seen(path) == (20, 20)


RACING_WRITER = """
    import sys
    sys.path.insert(0, {tests!r})
    from foundation.test_store_snapshots import patients_table
    from pophealth.store import Store, StoreError

    store = Store.open({store!r})
    print("ready", flush=True)
    sys.stdin.readline()
    try:
        new = store.write({{"patients": patients_table({rows})}}, provenance={{"rows": {rows}}})
    except StoreError as exc:
        print("refused", exc, flush=True)
    else:
        print("committed", new.snapshot, flush=True)
"""


def test_two_writers_at_once_one_commits_the_other_is_refused(tmp_path):
    """Two processes open the same snapshot and write at the same moment: they take turns
    at the lock, the first commits, the second is refused with a clear error (committing,
    it would undo the first), and the store holds the first's snapshot only."""
    path = tmp_path / "s"
    old = _old_store(path)
    writers = [
        _python(RACING_WRITER.format(tests=TESTS, store=str(path), rows=rows)) for rows in (3, 4)
    ]
    try:
        for w in writers:
            assert w.stdout.readline().strip() == "ready", w.stderr.read()
        for w in writers:
            w.stdin.write("go\n")
            w.stdin.flush()
        results = [w.communicate(timeout=60) for w in writers]
    finally:
        for w in writers:
            w.kill()
            w.wait()
    outcomes = sorted(out.split()[0] for out, _ in results)
    assert outcomes == ["committed", "refused"], results
    won = next(out.split()[1] for out, _ in results if out.startswith("committed"))
    refused = next(out for out, _ in results if out.startswith("refused"))
    assert "was written since this Store was opened" in refused and "nothing was written" in refused
    store = Store.open(path)
    assert store.snapshot == won
    assert store.row_counts()["patients"] == store.metadata["provenance"][-1]["rows"]
    # the old snapshot stays while the refused writer (a reader of it) lives; the next
    # write after it is gone removes it
    assert {p.name for p in (path / "snapshots").iterdir()} <= {won, old.snapshot}
    after = store.write({"patients": patients_table(1)}, provenance={})
    assert [p.name for p in (path / "snapshots").iterdir()] == [after.snapshot]


# -- a full disk, folders that cannot be written -----------------------------------------

FULL_DISK_WRITER = """
    import resource, signal, sys
    sys.path.insert(0, {tests!r})
    from foundation.test_store_crash import events_table
    from foundation.test_store_snapshots import patients_table
    from pophealth.store import Store, StoreError

    big = (
        {{"patients": (patients_table(50_000, f"c{{i}}-") for i in range(20))}}
        if {table!r} == "patients"
        else {{"events": (events_table(50_000) for i in range(20))}}
    )
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
    try:
        Store.open({store!r}).write(big, provenance={{}})
    except StoreError as exc:
        print("StoreError:", exc)
"""


@pytest.mark.parametrize("table", ["patients", "events"])
def test_a_write_that_runs_out_of_space_is_a_clear_error_and_commits_nothing(tmp_path, table):
    """A file-size limit (RLIMIT_FSIZE) stands in for a full disk: the write fails part-way
    through a table. The error names the store, the table and what happened (it used to
    be an OSError traceback from inside pyarrow); the old snapshot stays live and the
    half-built one is removed."""
    path = tmp_path / "s"
    old = _old_store(path)
    proc = _python(FULL_DISK_WRITER.format(tests=TESTS, store=str(path), table=table))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert out.startswith(f"StoreError: cannot write to {path}: File too large (writing table ")
    assert f"table {table}" in out and f"keeps its previous state (snapshot {old.snapshot})" in out
    assert Store.open(path).snapshot == old.snapshot and _seen(path) == OLD
    assert [p.name for p in (path / "snapshots").iterdir()] == [old.snapshot]


def _without_root_powers() -> list[str]:
    """The command prefix for a child that obeys file permissions: as root, one without the
    capabilities that override them (util-linux ``setpriv``)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: permissions cannot be enforced")
    caps = "-dac_override,-dac_read_search,-fowner"
    return [setpriv, "--inh-caps=-all", f"--bounding-set={caps}", "--"]


PERMISSION_WRITER = """
    import sys
    sys.path.insert(0, {tests!r})
    from foundation.test_store_snapshots import patients_table
    from pophealth.store import Store, StoreError

    store = Store.open({store!r})
    print("read", store.read("patients").num_rows, flush=True)
    try:
        store.write({{"patients": patients_table(1)}}, provenance={{}})
    except StoreError as exc:
        print("StoreError:", exc)
"""


@pytest.mark.parametrize(
    ("locked", "expected"),
    [
        ("", "permission denied"),  # the store folder itself
        ("snapshots", "Permission denied (writing its new snapshot folder)"),
        (".write-lock", "cannot open its write lock"),
    ],
)
def test_a_store_that_cannot_be_written_is_read_and_a_write_is_a_clear_error(
    tmp_path, locked, expected
):
    """A user who may read but not write (all of) the store: reading works (without a
    lease), and a write is a StoreError naming the store, not a PermissionError traceback
    (the snapshots folder and the lock file used to give one); nothing changes."""
    path = tmp_path / "s"
    old = _old_store(path)
    (path / ".write-lock").touch()
    target = path / locked
    mode = target.stat().st_mode
    target.chmod(0o444 if target.is_file() else 0o555)
    try:
        proc = subprocess.run(
            [
                *_without_root_powers(),
                sys.executable,
                "-c",
                textwrap.dedent(PERMISSION_WRITER.format(tests=TESTS, store=str(path))),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        target.chmod(mode)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"read {OLD[0]}"
    assert lines[1].startswith(f"StoreError: cannot write to {path}") and expected in lines[1]
    assert Store.open(path).snapshot == old.snapshot
    assert [p.name for p in (path / "snapshots").iterdir()] == [old.snapshot]


# -- readers whose snapshot another process replaces --------------------------------------

CONNECTED_READER = """
    import gc, sys
    from pophealth.store import Store

    con = Store.open({store!r}).connect()  # the Store itself is not kept
    gc.collect()
    print("connected", flush=True)
    sys.stdin.readline()
    print(con.table("patients").count().execute(), flush=True)
"""


def test_a_connection_keeps_its_snapshot_while_another_process_writes(tmp_path):
    """`Store.open(path).connect()`: the backend reads the snapshot's files when a query
    runs. It used to keep nothing, so the Store's lease went with it and another process's
    write removed the files under the connection (an IO error at the next query)."""
    path = tmp_path / "s"
    _old_store(path)
    reader = _python(CONNECTED_READER.format(store=str(path)))
    try:
        assert reader.stdout.readline().strip() == "connected", reader.stderr.read()
        Store.open(path).write({"patients": patients_table(1)}, provenance={})
        out, err = reader.communicate("\n", timeout=60)
    finally:
        reader.kill()
        reader.wait()
    assert out.strip() == str(OLD[0]), err


FORKING_READER = """
    import gc, os, sys
    from pathlib import Path
    from pophealth.store import Store

    store = Store.open({store!r})
    mine = [p for p in Path({store!r}, "readers").iterdir() if p.name.endswith(f"-{{os.getpid()}}")]
    child = os.fork()
    if child == 0:  # a worker forked from the reader (an ingest's) lets its copy go
        del store
        gc.collect()
        os._exit(0)
    os.waitpid(child, 0)
    print(len(mine), all(p.exists() for p in mine), flush=True)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_a_forked_child_does_not_drop_its_parents_lease(tmp_path):
    """A process forked from a reader inherits its Store objects; when the child's copy
    went, it removed the parent's lease file, and another process's write could then
    remove the snapshot the parent still reads."""
    path = tmp_path / "s"
    _old_store(path)
    proc = _python(FORKING_READER.format(store=str(path)))
    out, err = proc.communicate(timeout=60)
    assert out.split() == ["1", "True"], err


def test_the_built_snapshot_folder_is_flushed_before_it_is_committed(tmp_path, monkeypatch):
    """After a power cut the committed snapshot must hold its files: the folder they were
    written in is flushed (fsync) before it is renamed and named in CURRENT, not only the
    files and the folders above it."""
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to name what is flushed")
    flushed: list[str] = []
    real = os.fsync

    def fsync(fd):
        flushed.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    store = _old_store(tmp_path / "s")
    built = [Path(p) for p in flushed if Path(p).name.startswith(".tmp-")]
    assert built and built[0].parent == tmp_path / "s" / "snapshots"
    assert built[0].name.endswith(store.snapshot)


def test_a_write_refused_by_the_disk_keeps_the_store_usable_for_the_next(tmp_path):
    """After a write the disk refused, the same Store object writes again once there is
    room: nothing was left locked or half-built."""
    path = tmp_path / "s"
    old = _old_store(path)
    proc = _python(FULL_DISK_WRITER.format(tests=TESTS, store=str(path), table="patients"))
    proc.communicate(timeout=120)
    again = Store.open(path).write({"patients": patients_table(4)}, provenance={})
    assert again.snapshot != old.snapshot and _seen(path) == (4, OLD[1])
    assert [p.name for p in (path / "snapshots").iterdir()] == [again.snapshot]
