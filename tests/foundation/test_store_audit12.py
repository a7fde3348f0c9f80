"""The store shared between hosts and users, and its failures as errors a user can act on:
leases from other hosts expire unless renewed, a reader that cannot write keeps its
snapshot for a grace period, DuckDB's sort failing is a StoreError, and a store moved,
opened by two paths or partly unreadable while in use. Every process here is a real one;
permissions are real (a child without root's powers where the tests run as root)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pophealth import scratch
from pophealth.store import (
    GRACE_SETTING,
    LEASE_EXPIRY_SETTING,
    SUPERSEDED,
    Store,
    StoreError,
)

TESTS = str(Path(__file__).resolve().parents[1])
sys.path.insert(0, TESTS)
from foundation.test_store_crash import (  # noqa: E402
    OLD,
    _old_store,
    _python,
    _seen,
    _without_root_powers,
    events_table,
)
from foundation.test_store_snapshots import patients_table  # noqa: E402

HOUR = 3600
#: a host that is not this one
ELSEWHERE = "elsewhere.nhs.example"


@pytest.fixture(autouse=True)
def default_settings(monkeypatch):
    """The store's defaults, whatever the environment the tests run in."""
    monkeypatch.delenv(GRACE_SETTING, raising=False)
    monkeypatch.delenv(LEASE_EXPIRY_SETTING, raising=False)


def _snapshots(path: Path) -> set[str]:
    return {p.name for p in (path / "snapshots").iterdir()}


def _age(file: Path, seconds: float) -> None:
    """Set ``file``'s time ``seconds`` back (forward if negative), as if it had been
    stamped then."""
    then = time.time() - seconds
    os.utime(file, (then, then))


def _write_elsewhere(path: Path, rows: int, **env: str) -> None:
    """A write by another process (whose own leases do not count)."""
    code = f"""
        import sys
        sys.path.insert(0, {TESTS!r})
        from foundation.test_store_snapshots import patients_table
        from pophealth.store import Store
        Store.open({str(path)!r}).write({{"patients": patients_table({rows})}}, provenance={{}})
    """
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr


# -- 1. leases from other hosts ------------------------------------------------------------


def _lease_from_elsewhere(path: Path, snapshot: str, age: float) -> Path:
    assert scratch.this_host() != ELSEWHERE
    lease = path / "readers" / f"{snapshot}@{ELSEWHERE}-4242"
    lease.parent.mkdir(exist_ok=True)
    lease.touch()
    _age(lease, age)
    return lease


def test_a_lease_from_another_host_counts_until_it_is_not_renewed_for_the_expiry(
    tmp_path, monkeypatch
):
    """A reader on another host (a shared file system) cannot be checked for life: its
    lease keeps the snapshot while it is renewed, and once it has not been for the expiry
    (an hour by default) it is stale, and the next write removes it and its snapshot.
    Such leases used to be kept for ever, and so their snapshots."""
    monkeypatch.setenv(GRACE_SETTING, "0")  # leases only
    path = tmp_path / "s"
    first = _old_store(path)
    fresh = _lease_from_elsewhere(path, first.snapshot, 10 * 60)  # renewed 10 minutes ago
    second = first.write({"patients": patients_table(2)}, provenance={})
    assert _snapshots(path) == {first.snapshot, second.snapshot} and fresh.exists()
    _age(fresh, HOUR + 60)  # its host stopped renewing it over an hour ago
    third = second.write({"patients": patients_table(3)}, provenance={})
    assert _snapshots(path) == {third.snapshot}
    assert not fresh.exists()


def test_the_lease_expiry_is_a_setting_and_a_lease_stamped_ahead_is_kept(tmp_path, monkeypatch):
    """POPHEALTH_LEASE_EXPIRY_SECONDS sets the expiry; a lease stamped in the future (its
    host's clock ahead, where clients stamp the times) is not stale."""
    monkeypatch.setenv(GRACE_SETTING, "0")
    monkeypatch.setenv(LEASE_EXPIRY_SETTING, str(3 * HOUR))
    path = tmp_path / "s"
    first = _old_store(path)
    two_hours = _lease_from_elsewhere(path, first.snapshot, 2 * HOUR)
    second = first.write({"patients": patients_table(2)}, provenance={})
    ahead = _lease_from_elsewhere(path, second.snapshot, -HOUR)
    third = second.write({"patients": patients_table(3)}, provenance={})
    assert _snapshots(path) == {first.snapshot, second.snapshot, third.snapshot}
    assert two_hours.exists() and ahead.exists()
    _age(two_hours, 3 * HOUR + 60)
    fourth = third.write({"patients": patients_table(4)}, provenance={})
    assert _snapshots(path) == {second.snapshot, fourth.snapshot}


@pytest.mark.parametrize(
    ("setting", "value"),
    [(LEASE_EXPIRY_SETTING, "60"), (LEASE_EXPIRY_SETTING, "an hour"), (GRACE_SETTING, "-1")],
)
def test_a_setting_that_is_not_a_number_of_seconds_refuses_the_write(
    tmp_path, monkeypatch, setting, value
):
    """An expiry shorter than three renewals would let live readers' leases lapse: it, and
    anything that is not a number of seconds, refuses the write before it starts."""
    path = tmp_path / "s"
    old = _old_store(path)
    monkeypatch.setenv(setting, value)
    with pytest.raises(StoreError, match=f"{setting}='{value}': expected a number of seconds"):
        old.write({"patients": patients_table(2)}, provenance={})
    assert Store.open(path).snapshot == old.snapshot and _snapshots(path) == {old.snapshot}


RENEWING_READER = """
    import os, sys, time
    import pophealth.store as store_module
    from pophealth.store import Store

    store_module.LEASE_RENEW_SECONDS = 0.2  # every 5 minutes, in use
    store = Store.open({store!r})
    lease = [p for p in os.scandir({readers!r}) if p.name.endswith(f"-{{os.getpid()}}")]
    print(lease[0].path, flush=True)
    sys.stdin.readline()
"""


def test_a_reader_renews_its_lease_and_makes_it_again_if_it_was_removed(tmp_path):
    """A long reader (a web app, a long run) renews its lease from a background thread, so
    that a writer on another host does not take it as stale; a lease removed while the
    reader was stopped is made again. Leases used to keep the time they were made."""
    path = tmp_path / "s"
    _old_store(path)
    reader = _python(RENEWING_READER.format(store=str(path), readers=str(path / "readers")))
    try:
        lease = Path(reader.stdout.readline().strip())
        assert lease.exists(), reader.stderr.read()
        _age(lease, 2 * HOUR)
        deadline = time.time() + 30
        while time.time() - lease.stat().st_mtime > 60:
            assert time.time() < deadline, "the lease was not renewed"
            time.sleep(0.1)
        lease.unlink()
        while not lease.exists():
            assert time.time() < deadline, "the removed lease was not made again"
            time.sleep(0.1)
    finally:
        reader.kill()
        reader.wait()


# -- 2. readers that cannot write ----------------------------------------------------------

LEASELESS_READER = """
    import os, sys
    from pathlib import Path
    from pophealth.store import Store

    store = Store.open({store!r})
    con = store.connect()
    mine = [p for p in Path({store!r}, "readers").iterdir() if p.name.endswith(f"-{{os.getpid()}}")]
    print("opened", store.snapshot, len(mine), flush=True)
    sys.stdin.readline()
    print(con.table("patients").count().execute(), store.read("patients").num_rows, flush=True)
"""


def test_a_reader_that_cannot_write_keeps_its_snapshot_for_the_grace_period(tmp_path):
    """A reader that may not write the store (a web app running as another user; here,
    readers/ made read-only) takes no lease. An ingest committing meanwhile used to
    remove its snapshot at once, and its next query failed. A superseded snapshot is now
    kept for the grace period (an hour by default) from the write that superseded it, and
    removed by the first write after that."""
    path = tmp_path / "s"
    old = _old_store(path)
    readers = path / "readers"
    readers.chmod(0o555)
    try:
        reader = subprocess.Popen(
            [
                *_without_root_powers(),
                sys.executable,
                "-c",
                textwrap.dedent(LEASELESS_READER.format(store=str(path))),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=str(Path(TESTS).parent),
        )
        try:
            assert reader.stdout.readline().split() == ["opened", old.snapshot, "0"], (
                reader.stderr.read()
            )
            new = Store.open(path).write({"patients": patients_table(2)}, provenance={})
            out, err = reader.communicate("\n", timeout=60)
        finally:
            reader.kill()
            reader.wait()
    finally:
        readers.chmod(0o755)
    assert out.split() == [str(OLD[0])] * 2, err  # it read its snapshot to the end
    assert _snapshots(path) == {old.snapshot, new.snapshot}
    marker = path / "snapshots" / old.snapshot / SUPERSEDED
    assert marker.is_file()
    # within the grace period a later write keeps it too; after it, one removes it
    _age(marker, HOUR - 5 * 60)
    newer = new.write({"patients": patients_table(3)}, provenance={})
    assert old.snapshot in _snapshots(path)
    _age(marker, HOUR + 60)
    newest = newer.write({"patients": patients_table(4)}, provenance={})
    # (the one superseded a moment ago, by newer, is in its own grace period)
    assert _snapshots(path) == {new.snapshot, newer.snapshot, newest.snapshot}
    assert _seen(path) == (4, OLD[1])


def test_the_grace_period_is_a_setting(tmp_path, monkeypatch):
    """POPHEALTH_SNAPSHOT_GRACE_SECONDS sets it; 0 removes a superseded snapshot at the
    first write no lease holds back (a store whose readers can all write)."""
    monkeypatch.setenv(GRACE_SETTING, "600")
    path = tmp_path / "s"
    first = _old_store(path).snapshot  # (the Store goes, and its lease with it)
    _write_elsewhere(path, 2)
    marker = path / "snapshots" / first / SUPERSEDED
    _age(marker, 500)
    _write_elsewhere(path, 3)
    assert first in _snapshots(path)
    _age(marker, 700)
    _write_elsewhere(path, 4)
    assert first not in _snapshots(path) and len(_snapshots(path)) == 3
    _write_elsewhere(path, 5, **{GRACE_SETTING: "0"})
    assert _snapshots(path) == {Store.open(path).snapshot}


# -- 3. DuckDB failing to sort a coded table -----------------------------------------------

SPILLING_WRITER = """
    import resource, signal, sys
    import numpy as np
    import pyarrow as pa
    import pophealth.store as store_module
    from pophealth.store import Store, StoreError

    n = 1_500_000
    rng = np.random.default_rng(12)
    events = pa.table({{
        "patient_id": pa.array(np.char.add("p", rng.integers(0, 10**9, n).astype(str))),
        "date": pa.array(rng.integers(15000, 20000, n).astype("int32")).cast(pa.date32()),
        "datetime": pa.nulls(n, pa.timestamp("us")),
        "system": pa.array(["snomedct"] * n),
        "code": pa.array(rng.integers(10**8, 10**9, n).astype(str)),
        "value": pa.array(rng.random(n)),
        "unit": pa.nulls(n, pa.string()),
    }})
    store_module.SORT_MEMORY = "24MB"  # the sort spills to disk beyond this
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (4_000_000, 4_000_000))  # the disk is full
    try:
        Store.open({store!r}).write({{"events": events}}, provenance={{}})
    except StoreError as exc:
        print("StoreError:", exc)
"""


def test_the_sort_of_a_coded_table_failing_on_a_full_disk_is_a_store_error(tmp_path):
    """DuckDB sorts a coded table (events) and spills to the store's disk beyond
    SORT_MEMORY; the disk refusing the spill file (a file-size limit stands in for a full
    disk) was a DuckDB IOException traceback. It is a StoreError naming the store, the
    table and the cause; the old snapshot stays live and nothing is left behind."""
    path = tmp_path / "s"
    old = _old_store(path)
    proc = _python(SPILLING_WRITER.format(store=str(path)))
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert out.startswith(f"StoreError: cannot write to {path}: IO Error: "), out + err
    assert "File too large" in out and "sort-spill" in out  # DuckDB's words: its spill file
    assert "(writing table events); nothing was committed: the store keeps its previous " in out
    assert f"(snapshot {old.snapshot})" in out
    assert Store.open(path).snapshot == old.snapshot and _seen(path) == OLD
    assert _snapshots(path) == {old.snapshot}


def test_an_error_of_the_callers_own_chunks_passes_through_unchanged(tmp_path):
    """An ingest streams its tables into a write, and refuses its input from inside the
    stream (a broken input file, --strict): that error is the caller's, not the store's,
    and reaches it as it was raised; nothing is committed."""
    path = tmp_path / "s"
    old = _old_store(path)

    def broken(exc, chunk):
        yield chunk
        raise exc

    refusal = ValueError("input.csv, row 3: not a date")
    with pytest.raises(ValueError) as raised:
        old.write({"patients": broken(refusal, patients_table(2))}, provenance={})
    assert raised.value is refusal
    unreadable = PermissionError(13, "Permission denied", str(tmp_path / "input.csv"))
    with pytest.raises(PermissionError) as raised:
        old.write({"events": broken(unreadable, events_table(2))}, provenance={})
    assert raised.value is unreadable
    assert Store.open(path).snapshot == old.snapshot and _snapshots(path) == {old.snapshot}


# -- 4. a store moved, opened by two paths, half-built elsewhere, partly unreadable ---------


def test_a_write_to_a_store_moved_since_it_was_opened_is_refused_and_makes_nothing(tmp_path):
    """A Store whose folder was moved (or removed) since it was opened: a write used to
    make an empty folder (snapshots/, a write lock) at the old path and then say the store
    'was written since'; it says what happened, and makes nothing."""
    path = tmp_path / "s"
    store = _old_store(path)
    path.rename(tmp_path / "moved")
    with pytest.raises(StoreError, match="no longer a pophealth store .*moved or removed"):
        store.write({"patients": patients_table(2)}, provenance={})
    assert not path.exists()
    assert _seen(tmp_path / "moved") == OLD


def test_one_store_opened_by_two_paths_keeps_its_lease_until_both_are_gone(tmp_path):
    """The same store opened through a symlink and its real path (or a relative path) in
    one process: letting one go removed the lease file the other still needed, and
    another process's write removed the snapshot from under it."""
    path = tmp_path / "s"
    old = _old_store(path)
    link = tmp_path / "link"
    link.symlink_to(path)
    kept = Store.open(path)
    dropped = Store.open(link)
    del dropped
    _write_elsewhere(path, 2, **{GRACE_SETTING: "0"})
    assert old.snapshot in _snapshots(path)
    assert kept.read("patients").num_rows == OLD[0]
    del kept, old
    _write_elsewhere(path, 3, **{GRACE_SETTING: "0"})
    assert _snapshots(path) == {Store.open(path).snapshot}


def test_a_half_built_snapshot_of_another_host_is_removed_by_the_next_write(tmp_path):
    """A writer on another host killed part-way left its half-built folder (patient-level
    rows) for ever: its process could not be checked. A write holds the store's lock, and
    no other writer builds while it does, so the folder is a killed writer's: removed. One
    of a live process of this host is left alone."""
    path = tmp_path / "s"
    old = _old_store(path)
    elsewhere = path / "snapshots" / f".tmp-{ELSEWHERE}-4242-20250101T000000-0123abcd"
    here = path / "snapshots" / f".tmp-{scratch.owner_tag()}-20250101T000000-4567abcd"
    for folder in (elsewhere, here):
        folder.mkdir()
        (folder / "patients.parquet").write_bytes(b"half")
    Store.open(path)  # opening removes nothing of another host's
    assert elsewhere.exists()
    new = old.write({"patients": patients_table(2)}, provenance={})
    assert not elsewhere.exists() and here.exists()
    assert new.snapshot in _snapshots(path)


CHILD = """
    import sys
    sys.path.insert(0, {tests!r})
    from foundation.test_store_snapshots import patients_table
    from pophealth.store import Store, StoreError
    try:
        store = Store.open({store!r})
        new = store.write({{"patients": patients_table(2)}}, provenance={{}})
        print("committed", new.snapshot)
    except StoreError as exc:
        print("StoreError:", exc)
"""


def _child(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            *_without_root_powers(),
            sys.executable,
            "-c",
            textwrap.dedent(CHILD.format(tests=TESTS, store=str(path))),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(Path(TESTS).parent),
    )


def test_a_write_that_commits_but_cannot_list_old_snapshots_still_says_it_committed(tmp_path):
    """snapshots/ that may be written and entered but not listed (mode 333): the write
    builds and commits its snapshot, then could not look for old ones to remove, and that
    PermissionError reached the caller as if the write had failed. It committed: the old
    snapshots wait for the next write."""
    path = tmp_path / "s"
    old = _old_store(path)
    snapshots = path / "snapshots"
    snapshots.chmod(0o333)
    try:
        proc = _child(path)
    finally:
        snapshots.chmod(0o755)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("committed "), proc.stdout + proc.stderr
    assert "old snapshots could not be removed" in proc.stderr
    new = proc.stdout.split()[1]
    assert Store.open(path).snapshot == new and old.snapshot in _snapshots(path)


def test_an_old_snapshot_that_cannot_be_removed_is_a_warning(tmp_path, monkeypatch):
    """A shared store whose old snapshot the writer may not remove (another user's files,
    a folder made read-only): the removal failed silently and patient-level rows stayed
    with nobody told. The write commits, and a warning names the folder."""
    monkeypatch.setenv(GRACE_SETTING, "0")
    path = tmp_path / "s"
    old = _old_store(path).snapshot
    folder = path / "snapshots" / old
    folder.chmod(0o555)
    try:
        proc = _child(path)
    finally:
        folder.chmod(0o755)
    assert proc.returncode == 0 and proc.stdout.startswith("committed "), proc.stderr
    assert f"could not remove {folder}, a snapshot no longer in use" in proc.stderr
    assert Store.open(path).snapshot == proc.stdout.split()[1]


def test_a_superseded_snapshot_that_cannot_be_marked_is_kept_with_a_warning(tmp_path):
    """With the grace period, a write marks the snapshot it supersedes; where it may not
    (another user's folder in a shared store) the snapshot is kept, and a warning says so
    rather than keeping it unseen."""
    path = tmp_path / "s"
    old = _old_store(path).snapshot
    folder = path / "snapshots" / old
    folder.chmod(0o555)
    try:
        proc = _child(path)
    finally:
        folder.chmod(0o755)
    assert proc.returncode == 0 and proc.stdout.startswith("committed "), proc.stderr
    assert f"could not mark {folder} superseded (Permission denied), so it is kept" in (proc.stderr)
    assert old in _snapshots(path) and not (folder / SUPERSEDED).exists()


READER = """
    import sys
    from pophealth.store import Store

    store = Store.open({store!r})
    print(store.snapshot, flush=True)
    sys.stdin.readline()
    print(store.read("patients").num_rows, flush=True)
"""


def test_a_write_that_cannot_list_the_leases_removes_no_snapshot(tmp_path, monkeypatch):
    """readers/ that cannot be listed (mode 333): the write took that as "no leases" and
    removed the snapshot a reader held. It removes no snapshot, and says why."""
    monkeypatch.setenv(GRACE_SETTING, "0")
    path = tmp_path / "s"
    old = _old_store(path).snapshot
    reader = _python(READER.format(store=str(path)))
    try:
        assert reader.stdout.readline().strip() == old, reader.stderr.read()
        readers = path / "readers"
        readers.chmod(0o333)
        try:
            proc = _child(path)
        finally:
            readers.chmod(0o755)
        out, err = reader.communicate("\n", timeout=60)
    finally:
        reader.kill()
        reader.wait()
    assert proc.returncode == 0 and proc.stdout.startswith("committed "), proc.stderr
    assert out.strip() == str(OLD[0]), err
    assert old in _snapshots(path)
    assert "cannot list its readers' leases" in proc.stderr


def test_a_store_whose_current_cannot_be_read_is_a_store_error(tmp_path):
    """CURRENT unreadable (its permissions) was a PermissionError traceback; CURRENT
    naming no snapshot (empty: a store copied while a write committed) made a lease named
    '@host-pid' and a puzzling error. Both say what is wrong with which store."""
    path = tmp_path / "s"
    old = _old_store(path)
    current = path / "CURRENT"
    current.chmod(0o000)
    try:
        proc = _child(path)
    finally:
        current.chmod(0o644)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == (
        f"StoreError: cannot read the store {path}: its CURRENT file: Permission denied"
    )
    current.write_text("\n")
    with pytest.raises(StoreError, match="its CURRENT file names no snapshot .*damaged"):
        Store.open(path)
    assert not [p for p in (path / "readers").iterdir() if p.name.startswith("@")]
    current.write_text(old.snapshot + "\n")
    assert _seen(path) == OLD


def test_hosts_whose_long_names_share_their_start_are_told_apart(monkeypatch):
    """The host part of an owner tag was cut at 48 characters: two hosts named alike up
    to there were one host, and a writer on one took the other's live readers for gone
    (their pids are not running here) and removed their snapshots."""
    stem = "worker.analytics-cluster.region-nhs-example.internal.node-"
    tags = []
    for name in (stem + "01", stem + "02"):
        monkeypatch.setattr(scratch.socket, "gethostname", lambda name=name: name)
        tags.append(scratch.owner_tag(4242))
    assert tags[0] != tags[1]
    for tag in tags:
        host, pid = scratch.parse_owner(tag)
        assert pid == 4242 and len(host) <= scratch.HOST_CHARS


@pytest.mark.parametrize("name", ['with space\'s [2024] "extract"; ünïcødé', "link"])
def test_a_store_on_an_awkward_or_symlinked_path_is_written_read_and_cleaned(
    tmp_path, monkeypatch, name
):
    """Spaces, quotes, brackets (glob characters), non-ASCII letters, and a symlink to the
    store: the clustered write (DuckDB sorts through SQL naming the paths), the query
    backend and the removal of old snapshots all work there."""
    monkeypatch.setenv(GRACE_SETTING, "0")
    real = tmp_path / "real store"
    path = tmp_path / name
    if name == "link":
        real.mkdir()
        path.symlink_to(real, target_is_directory=True)

    def chunks(n):
        yield events_table(n)
        yield events_table(2)

    first = Store.open_or_new(path).write(
        {"patients": patients_table(3), "events": chunks(4)}, provenance={}
    )
    assert first.connect().table("events").count().execute() == 6
    del first
    again = Store.open(path).write({"events": chunks(1)}, provenance={})
    assert _snapshots(path) == {again.snapshot}  # only this process's leases held the old
    assert again.connect().table("events").count().execute() == 3
    assert again.row_counts()["patients"] == 3


def test_a_lease_dropped_by_a_finalizer_inside_the_lease_lock_does_not_hang(tmp_path):
    """A Store's finalizer drops its lease; the garbage collector can run it while this
    thread holds the lease lock (taking another lease), and the lock was not reentrant:
    the process hung for good (seen in CI, in the test above)."""
    import threading

    from pophealth import store as store_module

    path = tmp_path / "s"
    _old_store(path)
    one, two = Store.open(path), Store.open(path)
    lease = store_module._lease_path(path, one.snapshot)

    def finalizer_inside_the_lock():
        with store_module._lease_lock:
            store_module._drop_lease(lease)

    worker = threading.Thread(target=finalizer_inside_the_lock, daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "dropping a lease inside the lease lock hangs"
    assert lease.exists()  # the other Store still holds it
    del one, two
    assert not lease.exists()
