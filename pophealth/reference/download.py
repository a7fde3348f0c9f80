"""Fetch the reference files from their publishers (or a mirror) into a reference folder.

Without ``base_url`` each file of :data:`~pophealth.reference.sources.SOURCES` that has
a publisher URL is fetched from it (saved under the publisher's name, e.g. the official
``.xlsx``; a zip is unpacked to the member the loaders read). Files with no direct
publisher download are skipped with their landing page in the result.

With ``base_url`` every file is fetched from ``{base_url}/{path in the layout}`` — a
mirror of ``../shared/data`` — and verified against its known SHA-256.

A download is written to a temporary file in the target folder, checked (size against
``Content-Length``, SHA-256 where known, zip integrity), flushed, and only then renamed
over the target: an interrupted or corrupt download never leaves a partial file under
the real name. A file already present with the right checksum is not fetched again.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from pophealth import __version__
from pophealth.reference.sources import SOURCES, Source

CHUNK = 1 << 16
USER_AGENT = f"pophealth/{__version__} (reference download)"


class DownloadError(RuntimeError):
    """A file could not be fetched or failed its checks; nothing was written for it."""


@dataclass
class Fetched:
    """Outcome for one source: ``status`` is downloaded, present, skipped or failed."""

    key: str
    status: str
    path: Path | None
    url: str | None
    message: str = ""
    sha256: str | None = None
    bytes: int = 0


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _url_for(src: Source, base_url: str | None) -> tuple[str | None, str, str | None]:
    """(url, relative target path, expected sha256) for one source."""
    if base_url:
        quoted = urllib.parse.quote(src.path)
        return base_url.rstrip("/") + "/" + quoted, src.path, src.sha256
    if src.url is None:
        return None, src.path, None
    target = src.url_path or src.path
    same_file = src.url_path is None and src.url_member is None
    return src.url, target, (src.sha256 if same_file else None)


def _sniff(name: str, head: bytes) -> str | None:
    """Why ``head`` (the first bytes) cannot be the file ``name`` claims; None if plausible.

    Publishers answer a moved file with an HTML page and status 200: refuse it here
    rather than leave a "workbook" that is a web page."""
    lower = name.lower()
    text = head.lstrip().lower()
    if lower.endswith((".xlsx", ".zip")) and not head.startswith(b"PK"):
        return "not a zip/Excel file"
    if lower.endswith(".gz") and not head.startswith(b"\x1f\x8b"):
        return "not gzip data"
    if lower.endswith((".csv", ".geojson")) and text.startswith((b"<!doctype", b"<html", b"<?xml")):
        return "an HTML/XML page, not data"
    return None


def fetch(
    url: str,
    target: Path,
    *,
    sha256: str | None = None,
    member: str | None = None,
    timeout: float = 60.0,
    on_bytes: Callable[[int, int | None], None] | None = None,
) -> tuple[str, int]:
    """Download ``url`` to ``target`` atomically; return (sha256, bytes) of the file.

    ``member``: the publisher serves a zip; extract that member as ``target``.
    ``on_bytes(done, total)`` reports progress. Raises :class:`DownloadError`.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    extracted: Path | None = None
    try:
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        h = hashlib.sha256()
        done = 0
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(request, timeout=timeout) as resp:
                    length = resp.headers.get("Content-Length")
                    total = int(length) if length and length.isdigit() else None
                    while True:
                        chunk = resp.read(CHUNK)
                        if not chunk:
                            break
                        out.write(chunk)
                        h.update(chunk)
                        done += len(chunk)
                        if on_bytes:
                            on_bytes(done, total)
            except urllib.error.HTTPError as exc:
                raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
            except (urllib.error.URLError, OSError, ValueError) as exc:
                raise DownloadError(f"{url}: {getattr(exc, 'reason', exc)}") from exc
            except Exception as exc:  # http.client.IncompleteRead and friends
                raise DownloadError(f"{url}: transfer failed ({exc!r})") from exc
            if total is not None and done != total:
                raise DownloadError(
                    f"{url}: received {done:,} of {total:,} bytes (connection cut); "
                    f"{target.name} left unchanged"
                )
            out.flush()
            os.fsync(out.fileno())
        digest = h.hexdigest()
        with open(tmp, "rb") as fh:
            head = fh.read(512)
        served_as = "x.zip" if member is not None else target.name
        why = _sniff(served_as, head)
        if why:
            raise DownloadError(f"{url}: the response is {why}; {target.name} left unchanged")
        if member is not None:
            extracted = tmp.with_name(tmp.name + ".member")
            try:
                with (
                    zipfile.ZipFile(tmp) as zf,
                    zf.open(member) as src,
                    open(extracted, "wb") as dst,
                ):
                    shutil.copyfileobj(src, dst, CHUNK)
                    dst.flush()
                    os.fsync(dst.fileno())
            except (zipfile.BadZipFile, KeyError, OSError) as exc:
                raise DownloadError(f"{url}: not a zip holding {member} ({exc})") from exc
            tmp.unlink()
            tmp, extracted = extracted, None
            digest = _sha256_file(tmp)
        if sha256 is not None and digest != sha256:
            raise DownloadError(
                f"{url}: SHA-256 {digest} does not match the expected {sha256}; "
                f"{target.name} left unchanged"
            )
        size = tmp.stat().st_size
        os.replace(tmp, target)
        with contextlib.suppress(OSError):
            dfd = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        return digest, size
    finally:
        tmp.unlink(missing_ok=True)
        if extracted is not None:
            extracted.unlink(missing_ok=True)


def download(
    to: str | Path,
    *,
    base_url: str | None = None,
    keys: Iterable[str] | None = None,
    timeout: float = 60.0,
    force: bool = False,
    on_file: Callable[[Source, str], None] | None = None,
    on_bytes: Callable[[int, int | None], None] | None = None,
) -> list[Fetched]:
    """Fetch the reference files into ``to`` (the layout of ``../shared/data``).

    Returns one :class:`Fetched` per source; failures are reported there (the other
    files are still fetched) — check ``status == "failed"``.
    """
    root = Path(to)
    wanted = set(keys) if keys is not None else None
    if wanted is not None:
        unknown = wanted - {s.key for s in SOURCES}
        if unknown:
            raise KeyError(f"unknown reference source(s): {', '.join(sorted(unknown))}")
    results: list[Fetched] = []
    seen_targets: set[str] = set()
    for src in SOURCES:
        if wanted is not None and src.key not in wanted:
            continue
        url, rel, sha = _url_for(src, base_url)
        if url is None:
            results.append(
                Fetched(
                    src.key,
                    "skipped",
                    None,
                    None,
                    f"no direct publisher download; get it from {src.landing} "
                    "(or use --base-url with a mirror)",
                )
            )
            continue
        if rel in seen_targets:
            continue
        seen_targets.add(rel)
        target = root / rel
        if not force and target.is_file() and sha is not None and _sha256_file(target) == sha:
            results.append(Fetched(src.key, "present", target, url, "checksum matches", sha))
            continue
        if on_file:
            on_file(src, url)
        member = None if base_url else src.url_member
        try:
            digest, size = fetch(
                url, target, sha256=sha, member=member, timeout=timeout, on_bytes=on_bytes
            )
        except DownloadError as exc:
            results.append(Fetched(src.key, "failed", None, url, str(exc)))
            continue
        checked = "SHA-256 verified" if sha else "no known checksum"
        results.append(Fetched(src.key, "downloaded", target, url, checked, digest, size))
    return results
