"""Temporary folders named after the process that owns them, and the removal of those
whose process is gone.

An ingest spills rows (and the raw records it quarantines) to a temporary folder, the
synthetic generator spools its tables to one, and a store write builds its snapshot in
one; each removes it when it finishes or fails, but a process killed with ``kill -9`` (or
by the out-of-memory killer, or a power cut) cannot. So each such folder carries its owner,
``<host>-<pid>``, after a fixed prefix, and the next ingest, ``pophealth synth`` or store
open removes the ones whose process is no longer running on this host. A folder of a live
process, of another host, or named some other way (by an older pophealth) is never
touched here (a store's write, which holds the store's lock, also removes another host's
half-built snapshot: see :mod:`pophealth.store`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

#: Prefix of the spool folder of ``pophealth synth`` (see
#: :func:`pophealth.synth.write_synthetic_store`). Here, not in :mod:`pophealth.synth`, so
#: that an ingest can remove a killed run's folders without importing the generator.
SYNTH_PREFIX = "pophealth-synth-"


#: the longest host part of an owner tag; a longer host name is cut and a digest of the
#: whole name added, so that two hosts whose names share their first characters differ
HOST_CHARS = 48


def _host() -> str:
    # no "-" in the host part, so that the name splits unambiguously
    name = socket.gethostname()
    host = re.sub(r"[^A-Za-z0-9.]", "_", name) or "host"
    if len(host) > HOST_CHARS:
        digest = hashlib.sha1(name.encode("utf-8", "surrogateescape")).hexdigest()[:8]
        host = f"{host[: HOST_CHARS - 9]}.{digest}"
    return host


def this_host() -> str:
    """The host part of this process's owner tag."""
    return _host()


def owner_tag(pid: int | None = None) -> str:
    """``<host>-<pid>`` of this process (or of ``pid`` on this host)."""
    return f"{_host()}-{os.getpid() if pid is None else pid}"


def make_dir(prefix: str, parent: str | os.PathLike | None = None) -> Path:
    """A new private folder ``<prefix><host>-<pid>-<random>`` in ``parent`` (default: the
    system temporary directory)."""
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{owner_tag()}-", dir=parent))


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` is running on this host. Where that cannot be told safely
    (Windows, where ``os.kill`` would end the process), it is taken as running."""
    if pid == os.getpid():
        return True
    if os.name == "nt" or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process: it exists
        return True
    return True


def _owner(name: str, prefix: str) -> tuple[str, int] | None:
    m = re.fullmatch(re.escape(prefix) + r"([A-Za-z0-9._]+)-([0-9]+)-.+", name)
    return None if m is None else (m.group(1), int(m.group(2)))


def folder_owner(name: str, prefix: str) -> tuple[str, int] | None:
    """``(host, pid)`` of a folder ``<prefix><host>-<pid>-…`` made by :func:`make_dir`;
    None if it is not named so."""
    return _owner(name, prefix)


def parse_owner(tag: str) -> tuple[str, int] | None:
    """``(host, pid)`` of an owner tag ``<host>-<pid>`` (see :func:`owner_tag`); None if
    ``tag`` is not one."""
    m = re.fullmatch(r"([A-Za-z0-9._]+)-([0-9]+)", tag)
    return None if m is None else (m.group(1), int(m.group(2)))


def stale_owner(name: str, prefix: str) -> int | None:
    """The pid that made folder ``name`` if it is ``<prefix><this host>-<pid>-…`` and that
    process is no longer running; otherwise None."""
    owner = _owner(name, prefix)
    if owner is None or owner[0] != _host() or pid_alive(owner[1]):
        return None
    return owner[1]


def in_use(name: str, prefix: str) -> bool:
    """Whether folder ``name`` was made by :func:`make_dir` for a process that may still be
    using it: one running on this host, or one on another host (which cannot be checked)."""
    owner = _owner(name, prefix)
    return owner is not None and (owner[0] != _host() or pid_alive(owner[1]))


def remove_stale(parent: str | os.PathLike, prefix: str) -> list[tuple[Path, int]]:
    """Remove the folders in ``parent`` that :func:`stale_owner` says were left by a process
    that is gone; returns ``(folder, pid)`` for each one removed, and logs a warning."""
    parent = Path(parent)
    removed: list[tuple[Path, int]] = []
    try:
        entries = list(parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        pid = stale_owner(entry.name, prefix)
        if pid is None or not entry.is_dir() or entry.is_symlink():
            continue
        shutil.rmtree(entry, ignore_errors=True)
        if not entry.exists():
            removed.append((entry, pid))
            log.warning(
                "removed %s: a temporary folder left by process %d, which is no longer "
                "running (killed or crashed)",
                entry,
                pid,
            )
    return removed
