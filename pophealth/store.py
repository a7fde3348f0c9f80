"""The store: the canonical tables as Parquet files, written atomically.

Layout of a store directory::

    STORE/
      CURRENT                      name of the live snapshot (replaced atomically)
      snapshots/<id>/<table>.parquet   one file per canonical table (every table present,
                                       possibly empty)
      snapshots/<id>/metadata.json     schema version, provenance, row counts
      snapshots/<id>/.superseded       made when a write first finds it superseded
      readers/<id>@<host>-<pid>        a reader's lease on a snapshot (renewed)
      .write-lock                      held by the writer

A write builds a complete new snapshot beside the live one (unchanged tables are
hard-linked, not copied), flushes it to disk, and only then swaps ``CURRENT`` with
``os.replace`` — an atomic rename. A write killed at any moment (even ``kill -9``)
leaves ``CURRENT`` naming the previous, complete snapshot. The snapshot being built
is a folder ``snapshots/.tmp-<host>-<pid>-<id>``: a killed write's folder is removed by the
next open or write of the store (once that process is gone), never while its writer runs.

Writers take turns: a write holds an exclusive lock on ``STORE/.write-lock`` from building
its snapshot to removing the old ones, and is refused (nothing written) when the store
was written since it was opened — it would otherwise carry over tables that write
replaced, and undo it. On a shared file system, writers on different hosts take turns only
where its locks reach across hosts (NFSv4; NFSv3 with its lock service; not a mount with
``nolock`` or ``local_lock``): elsewhere write from one host only.

Any failure of a write — the disk or the folder refusing it (full, over quota,
read-only, not permitted), DuckDB's sort of a coded table running out of memory or of
disk to spill to — is a :class:`StoreError` naming the store, what was being written and
the cause; nothing is committed and the half-built snapshot is removed. (An exception the
caller's own chunks raise — an ingest refusing its input — passes through unchanged.)
A half-built folder of another host is removed by the next write: under the write lock no
other writer is building.

Readers hold a lease: while a :class:`Store` object (or a backend from its
:meth:`Store.connect`) lives, a file ``STORE/readers/<snapshot>@<host>-<pid>`` says that
process reads that snapshot, and another process's write keeps it (a long
``pophealth run``, or a web app, still finds its files after an ingest commits). A
process's own leases do not hold back its own writes. A write removes a lease whose
reader is gone:

* a lease of a process on this host, once that process is no longer running;
* a lease from another host (a shared file system: NFS, a Spark cluster), whose process
  cannot be checked, once it has not been renewed for ``POPHEALTH_LEASE_EXPIRY_SECONDS``
  (default 3600, at least 900). A reading process renews its leases every 5 minutes from
  a background thread (it touches their files), so a live reader's lease does not expire
  unless the process stops (``Ctrl-Z``, a suspended machine) or cannot reach the store for
  longer than that. The age is measured by the clock that stamps the store's files (the
  writer touches its write lock and compares the times): on a network file system that
  is the server's, so the hosts' clocks need not agree. Where clients stamp the times
  themselves, keep the expiry well above the largest difference between their clocks.

A reader that cannot write the store (a web app running as another user, a read-only
mount) takes no lease. What protects it is a grace period: a snapshot is kept at least
``POPHEALTH_SNAPSHOT_GRACE_SECONDS`` (default 3600) after a write first finds it
superseded (the time of a file ``.superseded`` put in its folder), and is removed by the
first write after that which no lease holds back. So a reader without a lease has at
least that long after an ingest commits to finish with the snapshot it opened; one that
runs longer, or keeps one :class:`Store` for good, should open the store again (or be
given a lease: a ``readers/`` folder it may write, e.g. group-writable). Set to 0, a
superseded snapshot goes at the first write no lease holds back: for a store every reader
of which can write. Both settings are read from the environment of the writing process,
the one that removes snapshots; a value that is not a number of seconds refuses the write.

A coded table (``cluster_by`` in :mod:`pophealth.schema`: events, medications,
operations, emergency attendances) is written sorted by coding system, code and date in
row groups of 122,880 rows, whatever order its rows arrive in: a query for a code list
then reads only the row groups whose code range can hold one of its codes (the query
layer adds the plain ``code IN (...)`` engines check against row-group statistics).

Queries run through Ibis: :meth:`Store.connect` returns a DuckDB (default) or Spark
backend with every table registered.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import logging
import math
import os
import shutil
import threading
import time
import uuid
import weakref
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pophealth import __version__
from pophealth.schema import SCHEMA_VERSION, TABLES, arrow_schema, table
from pophealth.scratch import (
    folder_owner,
    in_use,
    owner_tag,
    parse_owner,
    pid_alive,
    remove_stale,
    this_host,
)

log = logging.getLogger(__name__)

CURRENT = "CURRENT"
#: held by a writer while it writes (see :func:`_write_lock`)
WRITE_LOCK = ".write-lock"
SNAPSHOTS = "snapshots"
METADATA = "metadata.json"
#: prefix of the folder a snapshot is built in: ``.tmp-<host>-<pid>-<snapshot id>``
BUILDING = ".tmp-"
#: folder of reader leases: ``<snapshot>@<host>-<pid>``, one per process reading a snapshot
READERS = "readers"
ENGINES = ("duckdb", "spark")


class StoreError(RuntimeError):
    """A store cannot be opened or written; the message says what to do."""


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def conform(name: str, data: pa.Table) -> pa.Table:
    """Cast ``data`` to the canonical Arrow schema of ``name`` (column order and types)."""
    schema = arrow_schema(name)
    missing = [f.name for f in schema if f.name not in data.column_names]
    if missing:
        raise StoreError(f"table {name!r} is missing column(s): {', '.join(missing)}")
    data = data.select(schema.names)
    try:
        return data.cast(schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError) as exc:
        raise StoreError(f"table {name!r} does not fit the canonical schema: {exc}") from exc


#: Rows per Parquet row group. A row group is what a reader skips by its statistics, so
#: tables clustered by code (see ``cluster_by`` in :mod:`pophealth.schema`) are written in
#: small groups: a code list's rows then lie in few of them.
ROW_GROUP_ROWS = 1_000_000
CLUSTERED_ROW_GROUP_ROWS = 122_880
#: Memory the sort of a clustered table may use before it spills to disk.
SORT_MEMORY = "2GB"


def _write_parquet(name: str, data, target: Path) -> int:
    """Write one table (whole or in chunks) to ``target``; return its row count."""
    keys = table(name).cluster_by
    if keys:
        return _write_clustered(name, data, target, keys)
    schema = arrow_schema(name)
    chunks = [data] if isinstance(data, pa.Table | pa.RecordBatch) else data
    rows = 0
    with pq.ParquetWriter(target, schema, compression="zstd") as writer:
        for chunk in chunks:
            if isinstance(chunk, pa.RecordBatch):
                chunk = pa.Table.from_batches([chunk])
            chunk = conform(name, chunk)
            writer.write_table(chunk, row_group_size=ROW_GROUP_ROWS)
            rows += chunk.num_rows
    _fsync_file(target)
    return rows


def _write_clustered(name: str, data, target: Path, keys: tuple[str, ...]) -> int:
    """Write ``name`` sorted by its cluster keys (then every other column, so that the file
    does not depend on the order rows arrived in), in small row groups.

    Chunks are first streamed to a scratch file beside ``target``; DuckDB sorts (spilling
    to a scratch directory there beyond :data:`SORT_MEMORY`) and the sorted rows
    are streamed back out. Both scratch paths live in the snapshot being built, so an
    interrupted write leaves nothing behind once that snapshot is removed."""
    import duckdb

    scratch = target.with_name(f".{target.stem}.unsorted.parquet")
    spill = target.with_name(f".{target.stem}.sort-spill")
    con = duckdb.connect()
    try:
        con.execute(f"SET temp_directory = {_sql_text(spill)}")
        con.execute("SET enable_progress_bar = false")
        con.execute(f"SET memory_limit = '{SORT_MEMORY}'")
        if isinstance(data, pa.Table | pa.RecordBatch):
            whole = data if isinstance(data, pa.Table) else pa.Table.from_batches([data])
            con.register("_rows", conform(name, whole))
            given = whole.num_rows
        else:
            given = 0
            with pq.ParquetWriter(scratch, arrow_schema(name), compression="zstd") as writer:
                for chunk in data:
                    if isinstance(chunk, pa.RecordBatch):
                        chunk = pa.Table.from_batches([chunk])
                    writer.write_table(conform(name, chunk), row_group_size=ROW_GROUP_ROWS)
                    given += chunk.num_rows
            con.execute(f"CREATE VIEW _rows AS SELECT * FROM read_parquet({_sql_text(scratch)})")
        names = arrow_schema(name).names
        order = [*keys, *(c for c in names if c not in keys)]
        sorted_rows = con.execute(
            "SELECT * FROM _rows ORDER BY " + ", ".join(f'"{c}" ASC NULLS LAST' for c in order)
        ).to_arrow_reader(CLUSTERED_ROW_GROUP_ROWS)
        rows = 0
        with pq.ParquetWriter(target, arrow_schema(name), compression="zstd") as writer:
            for group in _regroup(sorted_rows, CLUSTERED_ROW_GROUP_ROWS):
                writer.write_table(conform(name, group), row_group_size=CLUSTERED_ROW_GROUP_ROWS)
                rows += group.num_rows
        if rows != given:  # never expected: a sort must not lose or invent a row
            raise StoreError(f"table {name!r}: {given:,} rows given but {rows:,} sorted")
    finally:
        con.close()
        scratch.unlink(missing_ok=True)
        shutil.rmtree(spill, ignore_errors=True)
    _fsync_file(target)
    return rows


class _Source:
    """A table's chunks as the caller gives them, remembering an exception they raise
    (``failures``): that one (an ingest refusing its input, an input file that cannot be
    read) is the caller's to handle, and passes through a write unchanged; any other
    failure of a write is a :class:`StoreError`."""

    def __init__(self, data: Iterable, failures: list[BaseException]):
        self._data = data
        self._failures = failures

    def __iter__(self) -> Iterator:
        try:
            chunks = iter(self._data)
        except BaseException as exc:
            self._failures.append(exc)
            raise
        while True:
            try:
                chunk = next(chunks)
            except StopIteration:
                return
            except BaseException as exc:
                self._failures.append(exc)
                raise
            yield chunk


#: errno values of a disk that is full or over quota
_FULL = {errno.ENOSPC, errno.EDQUOT}
#: the same, as DuckDB words it (the sort of a coded table spills to the store's disk)
_FULL_WORDS = ("no space left", "quota exceeded")


def _why(exc: BaseException) -> str:
    """What went wrong, in a line, with advice where the disk or memory ran out."""
    if isinstance(exc, OSError) and exc.errno:
        why = os.strerror(exc.errno)
        full = exc.errno in _FULL
    else:
        why = " ".join(str(exc).split()) or type(exc).__name__
        if len(why) > 600:
            why = why[:600] + "..."
        full = any(word in why.lower() for word in _FULL_WORDS)
        if "out of memory" in why.lower():
            why += (
                f" (sorting a coded table holds up to {SORT_MEMORY} in memory and spills the "
                "rest to the store's disk: free some memory or space there)"
            )
    if full:
        why += " (free some space, or write the store elsewhere)"
    return why


def _not_writable(path: Path) -> str:
    with contextlib.suppress(OSError, AttributeError):
        if os.statvfs(path).f_flag & os.ST_RDONLY:
            return "read-only file system"
    return "permission denied"


try:
    import fcntl  # noqa: F401 - whether writers take turns (not on Windows)

    _LOCKS = True
except ImportError:  # pragma: no cover - Windows
    _LOCKS = False


@contextlib.contextmanager
def _write_lock(path: Path) -> Iterator[None]:
    """One writer of the store at a time: an exclusive lock on ``STORE/.write-lock`` held
    while a snapshot is built, committed and the old ones collected, so that one writer
    never removes the snapshot or pointer another is about to commit. (Where the system
    has no such locks — Windows — writes are not serialised.)"""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    try:
        fh = open(path / WRITE_LOCK, "a")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise StoreError(
            f"cannot write to {path}: cannot open its write lock {WRITE_LOCK}: {_why(exc)}"
        ) from exc
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX)
        except OSError as exc:  # e.g. a network file system without locks (ENOLCK)
            raise StoreError(
                f"cannot write to {path}: cannot lock its write lock {WRITE_LOCK}: {_why(exc)}"
            ) from exc
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _lock_held(lock: Path) -> bool:
    """Whether another process holds the store's write lock now (a writer at work)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return False
    try:
        with open(lock, "a") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(fh, fcntl.LOCK_UN)
    except OSError:
        return True  # cannot tell: leave it
    return False


def _never_committed(path: Path) -> bool:
    """Whether ``path`` holds only what a first write that committed nothing leaves — an
    empty ``snapshots/`` and ``readers/`` and the write lock (not held), no CURRENT."""
    if (path / CURRENT).exists() or not path.is_dir():
        return False
    entries = {p.name: p for p in path.iterdir()}
    if not entries or not set(entries) <= {SNAPSHOTS, READERS, WRITE_LOCK}:
        return False
    for name in (SNAPSHOTS, READERS):
        folder = entries.get(name)
        if folder is not None and (not folder.is_dir() or any(folder.iterdir())):
            return False
    lock = entries.get(WRITE_LOCK)
    return lock is None or (lock.is_file() and not _lock_held(lock))


def _remove_never_committed(path: Path) -> None:
    """Remove what a first write that committed nothing leaves in ``path``
    (:func:`_never_committed`), so the next write can start there (it would otherwise be
    refused as "not a pophealth store"). Anything else in the folder leaves it all as it
    is."""
    if not _never_committed(path):
        return
    for name in (SNAPSHOTS, READERS):
        with contextlib.suppress(OSError):
            (path / name).rmdir()
    with contextlib.suppress(OSError):
        (path / WRITE_LOCK).unlink()


def _remove_stale_snapshots(path: Path) -> list[tuple[Path, int]]:
    """Remove half-written snapshots of writers that were killed (see
    :func:`pophealth.scratch.remove_stale`): they hold patient-level rows."""
    return remove_stale(path / SNAPSHOTS, BUILDING)


def _sql_text(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _regroup(batches: Iterable[pa.RecordBatch], size: int) -> Iterable[pa.Table]:
    """Tables of exactly ``size`` rows (the last may be shorter) from ``batches`` of any
    size: each becomes one row group."""
    pending: list[pa.RecordBatch] = []
    held = 0
    for batch in batches:
        pending.append(batch)
        held += batch.num_rows
        while held >= size:
            whole = pa.Table.from_batches(pending)
            yield whole.slice(0, size)
            rest = whole.slice(size)
            pending, held = rest.to_batches(), rest.num_rows
    if held:
        yield pa.Table.from_batches(pending)


#: How often (seconds) a reading process renews its leases: a background thread touches
#: each lease file, so that its time says the reader is still there.
LEASE_RENEW_SECONDS = 300.0
#: Setting (an environment variable of the writing process): seconds after its last renewal
#: that a lease from another host is stale. Default :data:`LEASE_EXPIRY_SECONDS`; at least
#: three renewals (:data:`LEASE_EXPIRY_MINIMUM`).
LEASE_EXPIRY_SETTING = "POPHEALTH_LEASE_EXPIRY_SECONDS"
LEASE_EXPIRY_SECONDS = 3600.0
LEASE_EXPIRY_MINIMUM = 3 * LEASE_RENEW_SECONDS
#: Setting (an environment variable of the writing process): seconds a superseded snapshot
#: is kept, at least, for readers that hold no lease (they cannot write the store). Default
#: :data:`GRACE_SECONDS`; 0 removes superseded snapshots at the first write once no lease
#: holds them.
GRACE_SETTING = "POPHEALTH_SNAPSHOT_GRACE_SECONDS"
GRACE_SECONDS = 3600.0
#: a file a write puts in a snapshot folder when it first finds that snapshot superseded:
#: the grace period counts from its time
SUPERSEDED = ".superseded"

#: lease file -> number of Store objects of this process reading its snapshot
_leases: dict[Path, int] = {}
#: reentrant: a Store's finalizer (dropping its lease) can run inside the lock, when the
#: garbage collector happens to run while this thread holds it
_lease_lock = threading.RLock()
#: the process whose renewal thread runs (a forked child starts its own)
_renewing_in: int | None = None


def _reset_after_fork() -> None:
    global _lease_lock, _renewing_in
    _lease_lock = threading.RLock()  # the parent's may have been held by its renewal thread
    _renewing_in = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _renew_leases(pid: int) -> None:
    """Touch this process's lease files every :data:`LEASE_RENEW_SECONDS` (for ever: a
    daemon thread). A lease removed meanwhile (this process was stopped for longer than
    the expiry) is made again, in case its snapshot is still there."""
    while True:
        time.sleep(LEASE_RENEW_SECONDS)
        tag = f"@{owner_tag(pid)}"
        with _lease_lock:
            held = [lease for lease in _leases if lease.name.endswith(tag)]
        for lease in held:
            try:
                os.utime(lease)
            except FileNotFoundError:
                with _lease_lock, contextlib.suppress(OSError):
                    if lease in _leases:  # (not dropped meanwhile)
                        lease.touch()
            except OSError:
                pass


def _start_renewing() -> None:
    global _renewing_in
    if _renewing_in == os.getpid():
        return
    _renewing_in = os.getpid()
    threading.Thread(
        target=_renew_leases, args=(os.getpid(),), name="pophealth-lease-renewal", daemon=True
    ).start()


def _lease_path(path: Path, snapshot: str) -> Path:
    # the real folder: one store opened by two paths (a symlink, a relative path, a change
    # of working folder) is one lease file, counted once
    return Path(os.path.realpath(path / READERS)) / f"{snapshot}@{owner_tag()}"


def _take_lease(path: Path, snapshot: str) -> Path | None:
    """Record that this process reads ``snapshot`` (a file ``readers/<snapshot>@<host>-<pid>``)
    so that another process's write does not remove it, and keep it renewed; None where
    the lease cannot be written (a reader without write access: see the grace period)."""
    lease = _lease_path(path, snapshot)
    with _lease_lock:
        if lease not in _leases:
            try:
                lease.parent.mkdir(exist_ok=True)
                lease.touch()
            except OSError:
                return None
        # (a finalizer run by the garbage collector in this block may have dropped this
        # very lease meanwhile: count from what is there, and make the file again if gone)
        _leases[lease] = _leases.get(lease, 0) + 1
        if not lease.exists():
            with contextlib.suppress(OSError):
                lease.touch()
        _start_renewing()
    return lease


def _drop_lease(lease: Path | None) -> None:
    if lease is None:
        return
    if not lease.name.endswith(f"@{owner_tag()}"):
        # a process forked from the reader (an ingest's worker) inherits its Store objects:
        # when its copy goes, the lease file stays, for the reader still holds it
        return
    with _lease_lock:
        if lease not in _leases:
            return
        _leases[lease] -= 1
        if _leases[lease] > 0:
            return
        del _leases[lease]
        # inside the lock, so another thread taking the same lease now makes it again
        # after this, not before
        with contextlib.suppress(OSError):
            lease.unlink(missing_ok=True)


def _seconds(name: str, default: float, minimum: float) -> float:
    """The setting ``name`` (environment), in seconds; a StoreError if it is not one."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= minimum):
        raise StoreError(
            f"{name}={text!r}: expected a number of seconds, at least {minimum:g}; "
            "nothing was written"
        )
    return value


def lease_expiry() -> float:
    """Seconds after its last renewal that a lease from another host is stale
    (:data:`LEASE_EXPIRY_SETTING`)."""
    return _seconds(LEASE_EXPIRY_SETTING, LEASE_EXPIRY_SECONDS, LEASE_EXPIRY_MINIMUM)


def snapshot_grace() -> float:
    """Seconds a superseded snapshot is kept at least (:data:`GRACE_SETTING`)."""
    return _seconds(GRACE_SETTING, GRACE_SECONDS, 0.0)


def _store_clock(path: Path) -> float:
    """Now, by the clock that stamps the store's files: the time of the write lock, touched
    (on a network file system, the server's clock, which stamps the leases too, so that
    the clocks of the hosts need not agree). This machine's clock where it cannot be."""
    lock = path / WRITE_LOCK
    try:
        os.utime(lock)
        return lock.stat().st_mtime
    except OSError:
        return time.time()


def _leased_by_others(path: Path, now: float, expiry: float) -> set[str] | None:
    """Snapshots another process reads (its lease names it). A lease of a process of this
    host that is gone is removed; a lease from another host, whose process cannot be
    checked, counts until it has not been renewed for ``expiry`` seconds (by the store's
    clock, ``now``), then it is removed as stale. None if the leases cannot be listed
    (any snapshot may be read)."""
    leased: set[str] = set()
    me, here = owner_tag(), this_host()
    try:
        entries = list((path / READERS).iterdir())
    except FileNotFoundError:
        return leased
    except OSError as exc:
        log.warning(
            "%s: cannot list its readers' leases (%s): no old snapshot is removed",
            path,
            _why(exc),
        )
        return None
    for entry in entries:
        snapshot, _, tag = entry.name.rpartition("@")
        if not snapshot or tag == me:
            continue
        owner = parse_owner(tag)
        if owner is None:  # not a lease pophealth wrote: keep what it names
            leased.add(snapshot)
        elif owner[0] == here:
            if pid_alive(owner[1]):
                leased.add(snapshot)
            else:  # its process is gone
                entry.unlink(missing_ok=True)
        else:
            try:
                age = now - entry.stat().st_mtime
            except FileNotFoundError:
                continue  # dropped meanwhile
            except OSError:
                leased.add(snapshot)  # cannot tell: keep it
                continue
            if age <= expiry:
                leased.add(snapshot)
                continue
            log.warning(
                "%s: the lease of process %d on host %s on snapshot %s was last renewed "
                "%.0f s ago (more than %s=%g): taken as stale",
                path,
                owner[1],
                owner[0],
                snapshot,
                age,
                LEASE_EXPIRY_SETTING,
                expiry,
            )
            with contextlib.suppress(OSError):
                entry.unlink()
    return leased


def _remove_old(folder: Path) -> None:
    """Remove an old or half-built snapshot; a warning if it stays (its files belong to
    another user of a shared store, or its folder may not be written): it holds
    patient-level rows nobody reads."""
    shutil.rmtree(folder, ignore_errors=True)
    if os.path.lexists(folder):
        log.warning(
            "could not remove %s, a snapshot no longer in use: it holds patient-level rows; "
            "remove it, or let the user who writes the store remove files there",
            folder,
        )


def _read_current(path: Path) -> str:
    """The live snapshot's name, from ``CURRENT``; a StoreError if it cannot be read or
    names no snapshot (a store copied while a write committed, a truncated file)."""
    try:
        snapshot = (path / CURRENT).read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        why = _why(exc) if isinstance(exc, OSError) else "not text"
        raise StoreError(f"cannot read the store {path}: its {CURRENT} file: {why}") from exc
    if not snapshot or snapshot in (".", "..") or "/" in snapshot or "\\" in snapshot:
        raise StoreError(
            f"{path}: its {CURRENT} file names no snapshot ({snapshot[:80]!r}): the store is "
            "damaged (copied while it was written?); copy it again, or rebuild it"
        )
    return snapshot


class Store:
    """A pophealth store directory. Open with :meth:`open`, write with :meth:`write`."""

    def __init__(self, path: Path, snapshot: str | None, metadata: dict[str, Any]):
        self.path = path
        self.snapshot = snapshot
        self.metadata = metadata
        #: (folder, pid) of half-written snapshots of killed writers removed on opening
        self.removed: list[tuple[Path, int]] = []
        # while this object lives, another process's write keeps its snapshot
        lease = _take_lease(path, snapshot) if snapshot is not None else None
        weakref.finalize(self, _drop_lease, lease)

    # -- opening ---------------------------------------------------------------------
    @staticmethod
    def is_store(path: str | os.PathLike) -> bool:
        return (Path(path) / CURRENT).is_file()

    @classmethod
    def open(cls, path: str | os.PathLike) -> Store:
        """Open an existing store; a clear error if it is not one or has another schema."""
        path = Path(path)
        if not path.exists():
            raise StoreError(
                f"no store at {path}: make one with `pophealth synth --out {path}` or "
                f"`pophealth ingest ... --out {path}`"
            )
        if not cls.is_store(path):
            inside = (
                [p for p in sorted(path.glob("*/")) if cls.is_store(p)] if path.is_dir() else []
            )
            hint = f"; did you mean {inside[0]}?" if len(inside) == 1 else ""
            if _never_committed(path):
                hint = (
                    ": a write into it committed nothing (an ingest that loaded no row leaves "
                    "it so; its quarantine report says why); write into it again"
                )
            raise StoreError(f"{path} is not a pophealth store (it has no {CURRENT} file){hint}")
        removed = _remove_stale_snapshots(path)
        for attempt in range(3):
            snapshot = _read_current(path)
            # the lease first, then CURRENT again: a write committed in between (whose
            # clean-up may not have seen the lease) sends us on to the new snapshot
            lease = _take_lease(path, snapshot)
            try:
                meta_path = path / SNAPSHOTS / snapshot / METADATA
                try:
                    metadata = json.loads(meta_path.read_text())
                except (OSError, json.JSONDecodeError) as exc:
                    if attempt < 2 and _read_current(path) != snapshot:
                        continue
                    raise StoreError(
                        f"{path}: the live snapshot's metadata is unreadable: {exc}"
                    ) from exc
                if attempt < 2 and _read_current(path) != snapshot:
                    continue
                version = metadata.get("schema_version")
                if version != SCHEMA_VERSION:
                    raise StoreError(
                        f"{path} was written with schema version {version}; this pophealth "
                        f"({__version__}) reads version {SCHEMA_VERSION}. Rebuild it (e.g. "
                        f"`pophealth synth --out NEW_DIR`) or use the pophealth version that "
                        "wrote it."
                    )
                store = cls(path, snapshot, metadata)  # holds a lease of its own
                store.removed = removed
                return store
            finally:
                _drop_lease(lease)
        raise AssertionError("unreachable")  # pragma: no cover

    @classmethod
    def open_or_new(cls, path: str | os.PathLike) -> Store:
        """Open the store at ``path``, or a new empty one if nothing is there yet (or only
        the half-written first snapshot of a writer that was killed)."""
        path = Path(path)
        if cls.is_store(path):
            return cls.open(path)
        removed = _remove_stale_snapshots(path) if path.is_dir() else []
        if removed:
            with contextlib.suppress(OSError):
                (path / SNAPSHOTS).rmdir()  # only if nothing else is in it
        if path.is_dir():
            _remove_never_committed(path)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise StoreError(
                f"{path} exists and is not a pophealth store; choose an empty or new directory"
            )
        store = cls(path, None, {"schema_version": SCHEMA_VERSION, "tables": {}, "provenance": []})
        store.removed = removed
        return store

    # -- reading ---------------------------------------------------------------------
    @property
    def snapshot_dir(self) -> Path:
        if self.snapshot is None:
            raise StoreError(f"{self.path} holds no data yet")
        return self.path / SNAPSHOTS / self.snapshot

    def table_path(self, name: str) -> Path:
        """The Parquet file of canonical table ``name`` in the snapshot this store was opened
        on (``snapshots/<snapshot>/<name>.parquet``): read it there, with any tool, rather than
        looking in the folder, which may hold older snapshots still being read."""
        if name not in TABLES:
            raise StoreError(f"no canonical table {name!r}")
        return self.snapshot_dir / f"{name}.parquet"

    def row_counts(self) -> dict[str, int]:
        return {k: v["rows"] for k, v in self.metadata.get("tables", {}).items()}

    def read(self, name: str) -> pa.Table:
        """A whole table as Arrow (for small tables and tests; query through :meth:`connect`)."""
        return pq.read_table(self.table_path(name))

    def connect(self, engine: str = "duckdb", **options: Any):
        """An Ibis backend with every canonical table registered under its name."""
        from pophealth.engines import connect

        con = connect(self, engine, **options)
        # the backend reads the snapshot's files when a query runs, not now: it keeps this
        # Store, and so its lease, so that another process's write does not remove them
        # from under it (``Store.open(path).connect()`` kept nothing)
        con._pophealth_store = self
        return con

    # -- writing ---------------------------------------------------------------------
    def write(
        self,
        tables: Mapping[str, pa.Table | Iterable[pa.Table | pa.RecordBatch]],
        *,
        provenance: Mapping[str, Any],
        replace_all: bool = False,
        extra_metadata: Mapping[str, Any] | None = None,
    ) -> Store:
        """Atomically write a new snapshot holding ``tables``.

        A table is given whole (``pa.Table``) or as an iterable of chunks (tables or
        record batches), which are streamed to disk one at a time so that data larger
        than memory can be written.

        Tables not named are carried over from the live snapshot (hard-linked), unless
        ``replace_all``, in which case they are written empty. Returns the reopened store.
        """
        for name in tables:
            if name not in TABLES:
                raise StoreError(f"no canonical table {name!r}")
        # read now: a setting that is not a number refuses the write before it starts
        expiry, grace = lease_expiry(), snapshot_grace()
        if self.snapshot is not None and not self.is_store(self.path):
            # moved or removed since it was opened: a write would make an empty folder there
            raise StoreError(
                f"{self.path} is no longer a pophealth store (it has no {CURRENT} file: moved "
                "or removed since it was opened); nothing was written: open the store where "
                "it is now and repeat"
            )
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            (self.path / SNAPSHOTS).mkdir(exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot write to {self.path}: {_why(exc)}") from exc
        if not os.access(self.path, os.W_OK):
            raise StoreError(f"cannot write to {self.path}: {_not_writable(self.path)}")

        with _write_lock(self.path):
            try:
                live = (
                    (self.path / CURRENT).read_text().strip() if self.is_store(self.path) else None
                )
            except OSError as exc:
                raise StoreError(
                    f"cannot write to {self.path}: cannot read its {CURRENT} file: {_why(exc)}"
                ) from exc
            if live != self.snapshot:
                raise StoreError(
                    f"{self.path} was written since this Store was opened (by another "
                    f"process, or another Store object: snapshot {self.snapshot or 'none'}, "
                    f"now {live}); nothing was written, so as not to undo that write: open "
                    "the store again and repeat"
                )
            stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
            snap_id = f"{stamp}-{uuid.uuid4().hex[:8]}"
            _remove_stale_snapshots(self.path)
            # named after this process, so that a killed write's folder can be told from a
            # running one's (made with the usual permissions: it becomes the snapshot)
            tmp = self.path / SNAPSHOTS / f"{BUILDING}{owner_tag()}-{snap_id}"
            old_tables = {} if (replace_all or self.snapshot is None) else self.metadata["tables"]
            meta_tables: dict[str, Any] = {}
            final = self.path / SNAPSHOTS / snap_id
            step = "its new snapshot folder"
            #: exceptions the caller's chunks raised: theirs, passed through unchanged
            failures: list[BaseException] = []
            try:
                tmp.mkdir()
                for name in TABLES:
                    step = f"table {name}"
                    target = tmp / f"{name}.parquet"
                    if name in tables:
                        try:
                            data = tables[name]
                        except BaseException as exc:
                            failures.append(exc)
                            raise
                        if not isinstance(data, pa.Table | pa.RecordBatch):
                            data = _Source(data, failures)
                        rows = _write_parquet(name, data, target)
                        meta_tables[name] = {"rows": rows}
                    elif name in old_tables:
                        os.link(self.table_path(name), target)
                        meta_tables[name] = dict(old_tables[name])
                    else:
                        pq.write_table(arrow_schema(name).empty_table(), target)
                        _fsync_file(target)
                        meta_tables[name] = {"rows": 0}
                step = "its metadata"
                history = [] if replace_all else list(self.metadata.get("provenance", []))
                history.append(
                    {
                        "written_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                        "pophealth_version": __version__,
                        "tables": sorted(tables),
                        **dict(provenance),
                    }
                )
                extra = (
                    {}
                    if replace_all
                    else {
                        k: v
                        for k, v in self.metadata.items()
                        if k not in ("schema_version", "tables", "provenance", "snapshot")
                    }
                )
                extra.update(extra_metadata or {})
                metadata = {
                    "schema_version": SCHEMA_VERSION,
                    "snapshot": snap_id,
                    "tables": meta_tables,
                    "provenance": history,
                    **extra,
                }
                (tmp / METADATA).write_text(json.dumps(metadata, indent=2, default=str))
                _fsync_file(tmp / METADATA)
                # the folder's entries too: after a power cut the renamed snapshot must hold
                # its files, not only the folder
                _fsync_dir(tmp)
                step = f"the pointer to it ({CURRENT})"
                os.rename(tmp, final)
                _fsync_dir(self.path / SNAPSHOTS)
                pointer = self.path / f".{CURRENT}.{snap_id}"
                pointer.write_text(snap_id + "\n")
                _fsync_file(pointer)
                os.replace(pointer, self.path / CURRENT)  # the atomic commit point
                _fsync_dir(self.path)
            except BaseException as exc:
                shutil.rmtree(tmp, ignore_errors=True)
                # built and renamed, but never named in CURRENT (asked of CURRENT itself: an
                # interrupt may land just after the commit, and the live snapshot stays)
                try:
                    live = (self.path / CURRENT).read_text().strip()
                except FileNotFoundError:  # a new store
                    live = None
                except OSError:  # cannot tell: keep it
                    live = snap_id
                if live != snap_id:
                    shutil.rmtree(final, ignore_errors=True)
                    (self.path / f".{CURRENT}.{snap_id}").unlink(missing_ok=True)
                # an interrupt (Ctrl-C), the caller's own error, or one that says what is
                # wrong (a table that does not fit) goes as it is; any other is the store's
                if (
                    not isinstance(exc, Exception)
                    or isinstance(exc, StoreError)
                    or any(exc is failure for failure in failures)
                    or live == snap_id
                ):
                    raise
                kept = f"snapshot {self.snapshot}" if self.snapshot else "no data yet"
                raise StoreError(
                    f"cannot write to {self.path}: {_why(exc)} (writing {step}); nothing "
                    f"was committed: the store keeps its previous state ({kept})"
                ) from exc
            store = Store(self.path, snap_id, metadata)
            try:
                store._collect_garbage(grace=grace, expiry=expiry)
            except Exception as exc:  # committed all the same: the next write tries again
                log.warning(
                    "%s: snapshot %s is committed, but old snapshots could not be removed: %s",
                    self.path,
                    snap_id,
                    _why(exc),
                )
            return store

    def _collect_garbage(self, *, grace: float, expiry: float) -> None:
        """Remove the snapshots and pointer files that are not live (leftovers of old or
        interrupted writes), once no other process's lease holds them and the grace
        period since they were superseded is over (see :data:`GRACE_SETTING`). Never
        touches the live snapshot, nor a snapshot another process of this host is
        building. Runs under the write lock."""
        now = _store_clock(self.path)
        leased = _leased_by_others(self.path, now, expiry)
        here = this_host()
        for entry in (self.path / SNAPSHOTS).iterdir():
            name = entry.name
            if name == self.snapshot:
                continue
            if name.startswith(BUILDING):
                owner = folder_owner(name, BUILDING)
                # under the write lock no other writer builds: a folder from another host
                # (whose process cannot be checked) is a killed writer's
                if in_use(name, BUILDING) and not (_LOCKS and owner and owner[0] != here):
                    continue
                _remove_old(entry)
                continue
            if grace > 0:
                marker = entry / SUPERSEDED
                try:
                    age = now - marker.stat().st_mtime
                except FileNotFoundError:
                    try:
                        marker.touch()  # superseded by now: its grace period starts
                    except OSError as exc:
                        log.warning(
                            "could not mark %s superseded (%s), so it is kept: it holds "
                            "patient-level rows; remove it once no reader needs it, or let "
                            "the user who writes the store write there",
                            entry,
                            _why(exc),
                        )
                    continue
                except OSError:
                    continue
                if age < grace:
                    continue  # a reader without a lease may still read it
            if leased is None or name in leased:
                continue  # still read by another process (or cannot tell)
            _remove_old(entry)
        for entry in self.path.glob(f".{CURRENT}.*"):
            entry.unlink(missing_ok=True)

    def summary(self) -> str:
        counts = self.row_counts()
        width = max(map(len, counts), default=0)
        lines = [f"store {self.path} (snapshot {self.snapshot}, schema v{SCHEMA_VERSION})"]
        lines += [f"  {k.ljust(width)}  {v:>12,}" for k, v in counts.items()]
        return "\n".join(lines)
