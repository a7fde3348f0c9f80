"""Reading FHIR R4 files: Bundle JSON, bulk NDJSON, single resources, XML; ``.gz`` too.

:func:`iter_units` yields :class:`Unit` objects: the resources of one Bundle (so
that references between its entries resolve locally) or one NDJSON line. Problems
that stop a record being read at all (malformed JSON line, truncated gzip,
unparseable XML) are yielded as :class:`Unreadable` with file and line.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pophealth.ingest.tabular import UnreadableFile

FHIR_NS = "http://hl7.org/fhir"
JSON_SUFFIXES = (".json", ".ndjson", ".jsonl", ".xml")


@dataclass
class Entry:
    resource: dict[str, Any]
    location: str
    full_url: str | None = None
    raw: Any = None


@dataclass
class Unit:
    """Resources read together: one Bundle's entries, or one NDJSON line/file resource."""

    source: str
    entries: list[Entry]
    bundle: dict[str, Any] | None = None
    bundle_location: str | None = None
    notes: list[tuple[str, str]] = field(default_factory=list)
    #: for a later window of a streamed Bundle: the Bundle (counted with the first window)
    window_of: dict[str, Any] | None = None


@dataclass
class Unreadable:
    source: str
    location: str
    reason: str
    raw: Any = None


def find_files(paths: list[str | os.PathLike]) -> tuple[list[Path], list[Path]]:
    """(FHIR files under ``paths``, other files that were ignored)."""
    found: list[Path] = []
    ignored: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and not f.name.startswith("."):
                    (found if _is_fhir_name(f) else ignored).append(f)
        elif p.is_file():
            found.append(p)
        else:
            raise FileNotFoundError(f"no such file or directory: {p}")
    return found, ignored


def _is_fhir_name(path: Path) -> bool:
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return name.endswith(JSON_SUFFIXES)


def _open_text(path: Path):
    if path.name.lower().endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", errors="replace")
    return open(path, encoding="utf-8-sig", errors="replace")  # noqa: SIM115


def _kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    if name.endswith(".xml"):
        return "xml"
    if name.endswith((".ndjson", ".jsonl")):
        return "ndjson"
    return "json"


def iter_units(
    path: Path, *, progress=None, byte_range: tuple[int, int] | None = None
) -> Iterator[Unit | Unreadable]:
    """Read one file (or, for plain NDJSON, the lines starting in ``byte_range``);
    never raises for bad content (yields :class:`Unreadable`). A file that cannot be read
    to its end (a ``.gz`` cut short, a read error) raises
    :class:`~pophealth.ingest.tabular.UnreadableFile`: the run stops and commits nothing,
    rather than load the part before the break and lose the rest uncounted."""
    src = str(path)
    kind = _kind(path)
    try:
        if kind == "xml":
            yield from _xml_units(path, src)
        elif kind == "ndjson":
            start, end = byte_range or (0, None)
            yield from _ndjson_units(path, src, progress, start, end)
        else:
            yield from _json_units(path, src, progress)
    except (EOFError, OSError, zlib.error, gzip.BadGzipFile) as exc:
        raise UnreadableFile(
            f"{src}: could not be read to the end ({exc}); nothing was committed"
        ) from None


def _ndjson_units(
    path: Path, src: str, progress, start: int = 0, end: int | None = None
) -> Iterator[Unit | Unreadable]:
    if path.name.lower().endswith(".gz"):
        yield from _ndjson_text_units(path, src)
        return
    # Plain files are read as bytes, optionally only the lines that *start* in
    # [start, end) (so that one large file can be split between worker processes).
    with open(path, "rb") as fh:
        if start > 0:
            fh.seek(start - 1)
            fh.readline()
            pos = fh.tell()
            lineno = _count_newlines(path, pos)
        else:
            pos, lineno = 0, 0
        while end is None or pos < end:
            line = fh.readline()
            if not line:
                return
            pos += len(line)
            lineno += 1
            if lineno == 1 and line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]
            text = line.strip()
            if not text:
                continue
            try:
                line_text = text.decode("utf-8")
                obj = json.loads(line_text)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                msg = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
                col = f" (column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
                yield Unreadable(
                    src,
                    f"line {lineno}",
                    f"malformed JSON: {msg}{col}",
                    text.decode("utf-8", "replace"),
                )
                continue
            # the line itself travels with the resource, so a quarantined record is verbatim
            yield from _object_units(obj, src, f"line {lineno}", line_text)


def _count_newlines(path: Path, upto: int) -> int:
    n = 0
    with open(path, "rb") as fh:
        remaining = upto
        while remaining > 0:
            block = fh.read(min(remaining, 1 << 24))
            if not block:
                break
            n += block.count(b"\n")
            remaining -= len(block)
    return n


def split_ranges(path: Path, parts: int) -> list[tuple[int, int]]:
    """Byte ranges splitting a plain NDJSON file into ``parts`` (line-aligned on read)."""
    size = path.stat().st_size
    step = max(1, -(-size // parts))
    return [(a, min(a + step, size)) for a in range(0, size, step)] or [(0, 0)]


def _ndjson_text_units(path: Path, src: str) -> Iterator[Unit | Unreadable]:
    lineno = 0
    with _open_text(path) as fh:
        while True:
            try:
                line = fh.readline()
            except (EOFError, OSError, zlib.error) as exc:
                raise UnreadableFile(
                    f"{src}: could not be read to the end (truncated or corrupt after line "
                    f"{lineno}: {exc}); nothing was committed"
                ) from None
            if not line:
                return
            lineno += 1
            text = line.strip()
            if not text:
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                yield Unreadable(
                    src, f"line {lineno}", f"malformed JSON: {exc.msg} (column {exc.colno})", text
                )
                continue
            yield from _object_units(obj, src, f"line {lineno}", text)


#: JSON files larger than this are read as a stream of Bundle entries, never whole.
STREAM_BUNDLE_BYTES = 64 * 2**20
#: Entries of a streamed Bundle resolved together (references beyond a window resolve
#: through the run's global index, as references between files do).
STREAM_WINDOW = 5_000
_ENTRY_KEY = re.compile(r'"entry"\s*:\s*\[')
_BUNDLE_HEAD = re.compile(r'^\s*\{\s*"resourceType"\s*:\s*"Bundle"')


def _json_units(path: Path, src: str, progress) -> Iterator[Unit | Unreadable]:
    if path.stat().st_size > STREAM_BUNDLE_BYTES:
        with _open_text(path) as fh:
            head = fh.read(4096)
        if _BUNDLE_HEAD.match(head):
            yield from _stream_bundle(path, src)
            return
    with _open_text(path) as fh:
        text = fh.read()
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # NDJSON saved as .json
            yield from _ndjson_units(path, src, progress)
            return
        yield Unreadable(
            src,
            f"line {exc.lineno}",
            f"malformed JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
            text[:2000],
        )
        return
    yield from _object_units(obj, src, "file", None)


#: Characters read at a time from a streamed Bundle.
STREAM_CHUNK = 1 << 22


def _stream_bundle(path: Path, src: str) -> Iterator[Unit | Unreadable]:
    """The entries of a large Bundle file, decoded one at a time from a sliding buffer
    (bounded memory); yielded in windows of :data:`STREAM_WINDOW` entries."""
    decoder = json.JSONDecoder()
    chunk = STREAM_CHUNK
    with _open_text(path) as fh:
        buf = fh.read(chunk)
        eof = False
        m = _ENTRY_KEY.search(buf)
        while m is None and not eof:
            more = fh.read(chunk)
            eof = not more
            buf += more
            m = _ENTRY_KEY.search(buf)
        if m is None:
            yield from _object_units(json.loads(buf), src, "file", None)
            return
        header = buf[: m.start()]
        btype = re.search(r'"type"\s*:\s*"([^"]*)"', header)
        bid = re.search(r'"id"\s*:\s*"([^"]*)"', header)
        bundle = {
            "resourceType": "Bundle",
            "type": btype.group(1) if btype else None,
            "id": bid.group(1) if bid else None,
        }
        pos = m.end()
        window: list[dict] = []
        n = 0
        first = True
        while True:
            # skip whitespace and the comma between entries
            while True:
                while pos < len(buf) and buf[pos] in " \t\r\n,":
                    pos += 1
                if pos < len(buf) or eof:
                    break
                more = fh.read(chunk)
                eof = not more
                buf = buf[pos:] + more
                pos = 0
            if pos >= len(buf) or buf[pos] == "]":
                break
            try:
                obj, end = decoder.raw_decode(buf, pos)
            except json.JSONDecodeError as exc:
                if not eof:
                    more = fh.read(chunk)
                    eof = not more
                    buf = buf[pos:] + more
                    pos = 0
                    continue
                # the decoder cannot find the next entry: the rest of the Bundle (the file
                # cut short, or broken here) would be lost uncounted
                raise UnreadableFile(
                    f"{src}: could not be read past Bundle entry {n} (malformed JSON at entry "
                    f"{n + 1}: {exc.msg}); nothing was committed"
                ) from None
            n += 1
            window.append(obj)
            pos = end
            if len(window) >= STREAM_WINDOW:
                yield from _window_units(bundle, window, src, n - len(window), first)
                first = False
                window = []
            if pos > chunk:  # drop what has been decoded
                buf = buf[pos:]
                pos = 0
        if window or first:
            yield from _window_units(bundle, window, src, n - len(window), first)


def _window_units(
    bundle: dict, entries: list, src: str, offset: int, first: bool
) -> Iterator[Unit | Unreadable]:
    part = dict(bundle, entry=entries)
    units = list(_bundle_units(part, src, "file", offset=offset))
    if not first and units and isinstance(units[0], Unit):
        units[0].bundle = None  # the Bundle itself is counted once, with its first window
        units[0].window_of = bundle
    yield from units


def _object_units(obj: Any, src: str, location: str, raw: Any) -> Iterator[Unit | Unreadable]:
    if isinstance(obj, list):  # a JSON array of resources
        for i, item in enumerate(obj, 1):
            yield from _object_units(item, src, f"{location} item {i}", None)
        return
    if not isinstance(obj, dict):
        yield Unreadable(src, location, "not a FHIR resource (a JSON object was expected)", raw)
        return
    if obj.get("resourceType") == "Bundle":
        yield from _bundle_units(obj, src, location)
        return
    yield Unit(src, [Entry(obj, location, None, raw)])


def _bundle_units(
    bundle: dict, src: str, location: str, offset: int = 0
) -> Iterator[Unit | Unreadable]:
    entries: list[Entry] = []
    unit = Unit(src, entries, bundle=bundle, bundle_location=location)
    raw_entries = bundle.get("entry") or []
    if isinstance(raw_entries, dict):
        raw_entries = [raw_entries]
    prefix = "" if location == "file" else f"{location} "
    nested: list[Unit | Unreadable] = []
    for i, e in enumerate(raw_entries, 1 + offset):
        loc = f"{prefix}entry {i}"
        if not isinstance(e, dict):
            nested.append(Unreadable(src, loc, "Bundle entry is not an object", e))
            continue
        res = e.get("resource")
        request = e.get("request")
        method = request.get("method") if isinstance(request, dict) else None
        method = method.upper() if isinstance(method, str) else ""
        if res is None:
            unit.notes.append((loc, f"entry without a resource ({method or 'no request'})"))
            continue
        if not isinstance(res, dict):
            nested.append(Unreadable(src, loc, "Bundle entry resource is not an object", e))
            continue
        if method == "DELETE":
            unit.notes.append((loc, "DELETE entry"))
            continue
        if res.get("resourceType") == "Bundle":
            nested.extend(_bundle_units(res, src, loc))
            continue
        # a fullUrl that is not a string is malformed: the entry loads without it (a reference
        # that needed it then fails to resolve and is quarantined with that reason)
        full_url = e.get("fullUrl")
        entries.append(Entry(res, loc, full_url if isinstance(full_url, str) else None))
    yield unit
    yield from nested


# -- XML ----------------------------------------------------------------------------------


def _xml_units(path: Path, src: str) -> Iterator[Unit | Unreadable]:
    from defusedxml import ElementTree as ET  # noqa: N817
    from defusedxml.common import DefusedXmlException

    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rb") as fh:
                root = ET.parse(fh).getroot()
        else:
            root = ET.parse(path).getroot()
    except (ET.ParseError, DefusedXmlException) as exc:
        yield Unreadable(src, "file", f"malformed or unsafe XML: {exc}")
        return
    obj = xml_to_resource(root)
    yield from _object_units(obj, src, "file", None)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1] if "}" in tag else tag


def xml_to_resource(elem) -> dict[str, Any]:
    """FHIR XML resource element -> the same shape as its JSON (arrays where repeated)."""
    out: dict[str, Any] = {"resourceType": _local(elem.tag)}
    out.update(_xml_children(elem))
    return out


def _xml_children(elem) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in elem.attrib.items():
        k = _local(k)
        if k in ("url", "id") and k not in out:
            out[k] = v
    for child in elem:
        if not isinstance(child.tag, str):
            continue  # comments, processing instructions
        name = _local(child.tag)
        if name == "div":  # narrative XHTML
            continue
        value = _xml_value(child)
        if value is None:
            continue
        if name in out:
            prev = out[name]
            if isinstance(prev, list) and name in out.get("__lists__", ()):
                prev.append(value)
            else:
                out[name] = [prev, value]
                out.setdefault("__lists__", set()).add(name)
        else:
            out[name] = value
    out.pop("__lists__", None)
    return out


def _xml_value(child) -> Any:
    kids = [c for c in child if isinstance(c.tag, str)]
    # A resource wrapper (Bundle.entry.resource, contained, ...): one child named like a type.
    if len(kids) == 1 and _local(kids[0].tag)[:1].isupper() and "value" not in child.attrib:
        return xml_to_resource(kids[0])
    if "value" in child.attrib and not kids:
        return child.attrib["value"]
    body = _xml_children(child)
    if "value" in child.attrib:  # primitive with extensions
        return child.attrib["value"]
    return body or None
