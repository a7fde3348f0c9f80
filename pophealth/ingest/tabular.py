"""Reading tabular input (CSV/TSV/pipe text, optionally ``.gz``, and Parquet) in chunks,
accounting for every row.

A file is read to its end or not at all: a bad *row* (bytes that are not UTF-8, a
different number of fields from the header, text the CSV parser cannot split) is handed
to ``on_bad`` with its physical line number, field and reason, and reading goes on with
the next line; a problem with the *file* (cannot be opened or decompressed, no header,
a corrupt Parquet row group) raises :class:`UnreadableFile` naming the file and the line
or row reached, so that a run never commits a table cut short.

Line numbers are physical lines of the file (1 is the header): a record holding a quoted
line break is reported at the line where it starts.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pophealth.validate import SchemaError

#: characters that stand for bytes which are not UTF-8 (``surrogateescape`` decoding)
_NOT_UTF8 = re.compile("[\udc80-\udcff]")


class UnreadableFile(SchemaError):
    """An input file cannot be read to its end (or lacks what its table needs): the run
    stops and nothing is committed."""


@dataclass
class BadRow:
    """A source row that could not be read as a record."""

    line: int
    field: str
    value: str | None
    reason: str
    raw: str | None


def _printable(text: str | None) -> str | None:
    """Text with undecodable bytes shown as ``\\xNN`` (safe to write as UTF-8)."""
    if text is None:
        return None
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _lines(path: Path) -> Iterator[str]:
    """Physical lines of a text file, decoded as UTF-8 with undecodable bytes kept as
    surrogates (so that a bad byte spoils only its own row)."""
    gz = path.name.lower().endswith(".gz")
    n = 0
    try:
        fh = gzip.open(path, "rb") if gz else open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        raise UnreadableFile(f"{path}: could not be opened: {exc}") from None
    with fh:
        try:
            for raw in fh:
                n += 1
                text = raw.decode("utf-8", "surrogateescape")
                if n == 1:
                    text = text.removeprefix("\ufeff")
                yield text
        except (OSError, EOFError, zlib.error) as exc:
            raise UnreadableFile(
                f"{path}: could not be read past line {n} ({exc}); nothing was committed"
            ) from None


def _delimiter(header: str) -> str:
    if header.count("\t") > header.count(","):
        return "\t"
    if header.count("|") > header.count(","):
        return "|"
    return ","


def _unique(names: list[str]) -> list[str]:
    """Column names, lower case; a repeated name gets ``.1``, ``.2`` … (the first is used)."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        name = name.strip().lower()
        if name in seen:
            seen[name] += 1
            out.append(f"{name}.{seen[name]}")
        else:
            seen[name] = 0
            out.append(name)
    return out


def _frame(header: list[str], rows: list[list[str]]) -> pd.DataFrame:
    if not rows:
        return pd.DataFrame({name: pd.Series(dtype=object) for name in header})
    cols = {}
    for name, values in zip(header, zip(*rows, strict=True), strict=True):
        arr = np.array(values, dtype=object)
        arr[arr == ""] = np.nan
        cols[name] = arr
    return pd.DataFrame(cols)


def read_delimited(
    path: Path,
    chunk_rows: int,
    *,
    on_bad: Callable[[BadRow], None] | None = None,
    quoting: bool | None = True,
) -> Iterator[tuple[pd.DataFrame, pd.Series]]:
    """Chunks of a delimited text file as text (lower-case columns, blank = missing) with
    the physical line number where each row starts.

    The delimiter (comma, tab or ``|``) is the one the header uses most. ``quoting``:
    True reads ``"…"`` fields as a standard CSV dialect does (a field in quotes may hold
    the delimiter, a line break or ``""``) whatever the delimiter; None does so only for
    commas (tab- and pipe-separated OMOP vocabulary files quote nothing and hold bare
    ``"`` in names). Bad rows go to ``on_bad``; without it the first one raises
    :class:`UnreadableFile`.

    Blocks of whole lines are split with numpy and pandas' C parser while every record is
    one line (no ``"`` yet where quotes count, strict UTF-8, no stray ``\\r`` or NUL); the
    careful reader (:func:`_read_delimited_careful`, the reference) takes a block that is
    not so, and the rest of the file from the first block with a quote.
    """
    blocks = _blocks(path, chunk_rows)
    try:
        line0, data, nl = next(blocks)
    except StopIteration:
        raise UnreadableFile(f"{path}: the file is empty (no header line)") from None
    if data.startswith(_BOM):
        data, nl = data[len(_BOM) :], nl - len(_BOM)
    end1 = int(nl[0]) + 1 if nl.size else len(data)
    first = data[:end1].decode("utf-8", "surrogateescape")
    sep = _delimiter(first)
    quoted = quoting if quoting is not None else sep == ","

    def bad(row: BadRow) -> None:
        if on_bad is None:
            raise UnreadableFile(f"{path}, line {row.line}, field {row.field}: {row.reason}")
        on_bad(row)

    def lines_from(data: bytes) -> Iterator[str]:
        yield from _decoded(data)
        for _, more, _ in blocks:
            yield from _decoded(more)

    if quoted and b'"' in data[:end1]:  # a quoted header may run over lines: all careful
        reader = _csv_reader(lines_from(data), sep, quoted)
        header = _header(path, reader, sep)
        pieces = _careful_pieces(reader, 0, header, sep, chunk_rows)
        yield from _rechunk(header, pieces, chunk_rows, bad)
        return
    header = _header(path, _csv_reader(iter([first]), sep, quoted), sep)

    def pieces() -> Iterator[_Piece]:
        block: tuple[int, bytes, np.ndarray] | None = (line0 + 1, data[end1:], nl[1:] - end1)
        while block is not None:
            start, text, ends = block
            if quoted and b'"' in text:  # records may now span lines: careful to the end
                reader = _csv_reader(lines_from(text), sep, quoted)
                yield from _careful_pieces(reader, start - 1, header, sep, chunk_rows)
                return
            piece = _fast_block(text, ends, start, header, sep)
            if piece is None:  # one line is one record here, but pandas may not agree
                reader = _csv_reader(_decoded(text), sep, quoted)
                yield from _careful_pieces(reader, start - 1, header, sep, chunk_rows)
            else:
                yield piece
            block = next(blocks, None)

    yield from _rechunk(header, pieces(), chunk_rows, bad)


_BOM = b"\xef\xbb\xbf"
#: rows read from part of a file, their lines, and the bad rows among them (in line order)
_Piece = tuple[pd.DataFrame, np.ndarray, list[BadRow]]
#: bytes that are not white space (as ``str.strip`` sees it) and are ASCII
_INK = np.ones(256, dtype=bool)
_INK[[9, 10, 11, 12, 13, 28, 29, 30, 31, 32]] = False
_INK[128:] = False


def _open(path: Path):
    gz = path.name.lower().endswith(".gz")
    try:
        return gzip.open(path, "rb") if gz else open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        raise UnreadableFile(f"{path}: could not be opened: {exc}") from None


def _blocks(path: Path, max_lines: int) -> Iterator[tuple[int, bytes, np.ndarray]]:
    """Blocks of whole physical lines of a file: (number of the first line, the bytes, the
    positions of their ``\\n``). The first block holds the header and ``max_lines`` more
    lines, the others ``max_lines``; only the last may end without ``\\n``.

    A gzip file is read in the pieces its line iterator would read, so that a damaged
    stream stops at the same line as :func:`_lines` says."""
    gz = path.name.lower().endswith(".gz")
    size = io.DEFAULT_BUFFER_SIZE if gz else 1 << 22
    fh = _open(path)
    with fh:
        line = 1  # number of the first line not yet yielded
        want = max_lines + 1
        parts: list[bytes] = []
        marks: list[np.ndarray] = []
        held = 0  # bytes in parts
        count = 0  # line breaks in parts
        while True:
            try:
                got = fh.read1(size)
            except (OSError, EOFError, zlib.error) as exc:
                if count:  # the whole lines read so far are read as the careful path does
                    data = b"".join(parts)
                    nl = np.concatenate(marks)
                    yield line, data[: int(nl[-1]) + 1], nl
                raise UnreadableFile(
                    f"{path}: could not be read past line {line - 1 + count} ({exc}); "
                    "nothing was committed"
                ) from None
            if got:
                pos = np.flatnonzero(np.frombuffer(got, dtype=np.uint8) == 10)
                parts.append(got)
                marks.append(pos + held)
                held += len(got)
                count += pos.size
                if count < want:
                    continue
            elif not held:
                return
            data = b"".join(parts)
            nl = np.concatenate(marks) if marks else np.empty(0, dtype=np.int64)
            while nl.size >= want or (not got and data):
                if nl.size >= want:
                    cut = int(nl[want - 1]) + 1
                    yield line, data[:cut], nl[:want]
                    data, nl = data[cut:], nl[want:] - cut
                else:
                    yield line, data, nl
                    data, nl = b"", nl[:0]
                line += want
                want = max_lines
            if not got:
                return
            parts, marks, held, count = [data], [nl], len(data), nl.size


def _decoded(data: bytes) -> Iterator[str]:
    """Physical lines of whole-line bytes, decoded as :func:`_lines` does."""
    for raw in io.BytesIO(data):
        yield raw.decode("utf-8", "surrogateescape")


def _csv_reader(lines: Iterable[str], sep: str, quoted: bool):
    return csv.reader(
        lines,
        delimiter=sep,
        quotechar='"',
        doublequote=True,
        quoting=csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE,
        strict=False,
    )


def _header(path: Path, reader, sep: str) -> list[str]:
    try:
        raw_header = next(reader)
    except csv.Error as exc:
        raise UnreadableFile(f"{path}, line 1: the header could not be read: {exc}") from None
    if _NOT_UTF8.search("".join(raw_header)):
        raise UnreadableFile(
            f"{path}, line 1: the header is not UTF-8 text: {_printable(sep.join(raw_header))!r}"
        )
    header = _unique(raw_header)
    if not any(header):
        raise UnreadableFile(f"{path}, line 1: the header names no columns")
    return header


def _careful_rows(
    reader,
    offset: int,
    header: list[str],
    sep: str,
    bad: Callable[[BadRow], None],
    n: int,
    held: list[BadRow] | None = None,
) -> Iterator[tuple[list[list[str]], list[int]]]:
    """Records of a CSV reader (after the header) as lists of at most ``n`` rows and the
    lines where they start (``offset`` + the reader's line), bad ones to ``bad``: one
    Python step per row, the reference for the fast path. When ``bad`` only collects into
    ``held``, a list is also given up when ``held`` reaches ``n`` and before an error in
    reading the file, so that nothing read is lost."""
    width = len(header)
    rows: list[list[str]] = []
    starts: list[int] = []
    prev = reader.line_num
    while True:
        if held is not None and len(held) >= n:
            yield rows, starts
            rows, starts = [], []
        try:
            rec = next(reader)
        except StopIteration:
            break
        except UnreadableFile:
            if held is not None:
                yield rows, starts
            raise
        except csv.Error as exc:
            start, prev = prev + 1, reader.line_num
            bad(BadRow(start + offset, "", None, f"could not be split into fields: {exc}", None))
            if reader.line_num < start:  # nothing consumed: do not loop
                break
            continue
        start, prev = prev + 1, reader.line_num
        if not rec or (len(rec) == 1 and not rec[0].strip()):
            continue  # a blank line is not a record
        if _NOT_UTF8.search("\x1f".join(rec)):
            i = next(i for i, v in enumerate(rec) if _NOT_UTF8.search(v))
            pos = _NOT_UTF8.search(rec[i]).start()
            byte = ord(rec[i][pos]) - 0xDC00
            name = header[i] if i < width else f"field {i + 1}"
            bad(
                BadRow(
                    start + offset,
                    name,
                    _printable(rec[i]),
                    f"not UTF-8 text: byte 0x{byte:02X} at character {pos + 1} of the field "
                    "(save the file as UTF-8)",
                    _printable(sep.join(rec)),
                )
            )
            continue
        if len(rec) != width:
            bad(_wrong_width(start + offset, len(rec), width, sep.join(rec)))
            continue
        rows.append(rec)
        starts.append(start + offset)
        if len(rows) >= n:
            yield rows, starts
            rows, starts = [], []
    yield rows, starts


def _careful_pieces(reader, offset: int, header: list[str], sep: str, n: int) -> Iterator[_Piece]:
    held: list[BadRow] = []
    for rows, starts in _careful_rows(reader, offset, header, sep, held.append, n, held):
        yield _frame(header, rows), np.asarray(starts, dtype=np.int64), held[:]
        held.clear()


def _wrong_width(line: int, fields: int, width: int, raw: str) -> BadRow:
    return BadRow(line, "", None, f"{fields} fields where the header has {width}", raw)


def _fast_block(
    data: bytes,
    nl: np.ndarray,
    line0: int,
    header: list[str],
    sep: str,
) -> _Piece | None:
    """The records of a block of whole lines in which every line is one record (no quote
    counts), split with numpy and pandas' C parser; None when the block needs the careful
    reader (not strict UTF-8, a NUL, a ``\\r`` not before ``\\n``, a line too long for the
    csv module, a BOM where pandas would drop it)."""
    width = len(header)
    if not data:
        return _frame(header, []), np.empty(0, dtype=np.int64), []
    if b"\x00" in data:
        return None
    if not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return None
    buf = np.frombuffer(data, dtype=np.uint8)
    ends = nl if data.endswith(b"\n") else np.append(nl, len(data))
    begins = np.empty_like(ends)
    begins[0] = 0
    begins[1:] = ends[:-1] + 1
    if (ends - begins).max() >= csv.field_size_limit():
        return None
    cr = np.flatnonzero(buf == 13)
    if cr.size:
        after = cr + 1
        if after[-1] >= len(data) or (buf[after] != 10).any():
            return None
    # the text of a line: without its "\n" and a "\r" just before it
    stops = ends - ((ends > begins) & (buf[np.maximum(ends - 1, 0)] == 13))
    delims = np.flatnonzero(buf == ord(sep))
    fields = np.searchsorted(delims, ends) - np.searchsorted(delims, begins) + 1
    keep = fields == width
    # a line with no delimiter is blank when its text is white space: look closer at those
    # that do not start with an ASCII letter, digit or sign
    maybe = np.flatnonzero(
        (fields == 1) & ((stops == begins) | ~_INK[buf[np.minimum(begins, len(data) - 1)]])
    )
    blank = np.zeros(ends.size, dtype=bool)
    for i in maybe:
        blank[i] = not data[begins[i] : stops[i]].decode("utf-8").strip()
    keep &= ~blank
    bads = [
        _wrong_width(line0 + i, int(fields[i]), width, data[begins[i] : stops[i]].decode())
        for i in np.flatnonzero(~keep & ~blank).tolist()
    ]
    good = np.flatnonzero(keep)
    lines = line0 + good.astype(np.int64)
    if not good.size:
        return _frame(header, []), lines, bads
    if good.size == ends.size:
        text = data
    else:  # join the runs of good lines
        edge = np.flatnonzero(np.diff(good) != 1)
        first = good[np.r_[0, edge + 1]]
        last = good[np.r_[edge, good.size - 1]]
        view = memoryview(data)
        text = b"".join(
            view[begins[a] : ends[b] + 1]
            for a, b in zip(first.tolist(), last.tolist(), strict=True)
        )
    if text.startswith(_BOM):  # pandas would drop it
        return None
    df = pd.read_csv(
        io.BytesIO(text),
        sep=sep,
        header=None,
        names=list(range(width)),
        index_col=False,
        dtype=str,
        keep_default_na=False,
        na_values=[""],
        quoting=csv.QUOTE_NONE,
        skip_blank_lines=False,
        encoding="utf-8",
        engine="c",
        low_memory=False,
    )
    if len(df) != good.size or df.shape[1] != width:
        return None
    frame = pd.DataFrame(
        dict(zip(header, (df[i].to_numpy(dtype=object) for i in range(width)), strict=True))
    )
    return frame, lines, bads


def _rechunk(
    header: list[str],
    pieces: Iterable[_Piece],
    n: int,
    bad: Callable[[BadRow], None],
) -> Iterator[tuple[pd.DataFrame, pd.Series]]:
    """Chunks of exactly ``n`` rows (the last fewer; one empty chunk for no rows) from
    pieces of any size, with each bad row handed to ``bad`` between the same chunks as
    when rows are read one at a time (so ``on_bad=None`` stops at the same place)."""
    held: list[tuple[pd.DataFrame, np.ndarray]] = []
    count = 0
    waiting: deque[BadRow] = deque()
    yielded = False

    def report(before: int | None) -> None:
        while waiting and (before is None or waiting[0].line < before):
            bad(waiting.popleft())

    it = iter(pieces)
    while True:
        try:
            df, lines, bads = next(it)
        except StopIteration:
            break
        except UnreadableFile:
            report(None)
            raise
        waiting.extend(bads)
        if len(df):
            held.append((df, lines))
            count += len(df)
        if count >= n:
            if len(held) == 1:
                df, lines = held[0]
            else:
                df = pd.concat([d for d, _ in held], ignore_index=True)
                lines = np.concatenate([x for _, x in held])
            at = 0
            while count - at >= n:
                report(int(lines[at + n - 1]))
                part = df.iloc[at : at + n]
                if at:
                    part = part.reset_index(drop=True)
                yield part, pd.Series(lines[at : at + n], dtype="int64")
                at += n
                yielded = True
            held = [(df.iloc[at:].reset_index(drop=True), lines[at:])] if at < count else []
            count -= at
        report(None)  # the next chunk ends after every line read so far
    if held or not yielded:  # a header-only file gives one empty chunk (its columns)
        if len(held) > 1:
            df = pd.concat([d for d, _ in held], ignore_index=True)
            lines = np.concatenate([x for _, x in held])
        elif held:
            df, lines = held[0]
        else:
            df, lines = _frame(header, []), np.empty(0, dtype=np.int64)
        yield df, pd.Series(lines, dtype="int64")


def _read_delimited_careful(
    path: Path,
    chunk_rows: int,
    *,
    on_bad: Callable[[BadRow], None] | None = None,
    quoting: bool | None = True,
) -> Iterator[tuple[pd.DataFrame, pd.Series]]:
    """:func:`read_delimited` one row at a time with the csv module: the reference that the
    fast path must agree with (kept for the tests and the benchmark)."""
    lines = _lines(path)
    try:
        first = next(lines)
    except StopIteration:
        raise UnreadableFile(f"{path}: the file is empty (no header line)") from None
    sep = _delimiter(first)
    quoted = quoting if quoting is not None else sep == ","

    def all_lines() -> Iterator[str]:
        yield first
        yield from lines

    def bad(row: BadRow) -> None:
        if on_bad is None:
            raise UnreadableFile(f"{path}, line {row.line}, field {row.field}: {row.reason}")
        on_bad(row)

    reader = _csv_reader(all_lines(), sep, quoted)
    header = _header(path, reader, sep)
    yielded = False
    for rows, starts in _careful_rows(reader, 0, header, sep, bad, chunk_rows):
        if rows or not yielded:
            yield _frame(header, rows), pd.Series(starts, dtype="int64")
            yielded = True


def _mark_nan(batch: pa.RecordBatch, df: pd.DataFrame) -> None:
    """A NaN in a float column as the text ``NaN`` (refused as not a finite number, as in a
    CSV); pandas reads both a null and a NaN as NaN, and a null is missing."""
    for i, field in enumerate(batch.schema):
        if not pa.types.is_floating(field.type):
            continue
        nan = pc.fill_null(pc.is_nan(batch.column(i)), False).to_numpy(zero_copy_only=False)
        if nan.any():
            col = df.iloc[:, i].astype(object)
            col[nan] = "NaN"
            df.isetitem(i, col)


def read_parquet(path: Path, chunk_rows: int) -> Iterator[tuple[pd.DataFrame, pd.Series]]:
    """Chunks of a Parquet file (lower-case columns) with 1-based row numbers."""
    try:
        pf = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise UnreadableFile(f"{path}: not a readable Parquet file ({exc})") from None
    start = 1
    batches = pf.iter_batches(batch_size=chunk_rows)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            break
        except (OSError, pa.ArrowException) as exc:
            raise UnreadableFile(
                f"{path}: could not be read past row {start - 1} ({exc}); nothing was committed"
            ) from None
        df = batch.to_pandas()
        df.columns = _unique([str(c) for c in df.columns])
        _mark_nan(batch, df)
        yield df, pd.Series(np.arange(start, start + len(df)), dtype="int64")
        start += len(df)
    if start == 1:
        names = _unique([str(c) for c in pf.schema_arrow.names])
        yield (
            pd.DataFrame({n: pd.Series(dtype=object) for n in names}),
            pd.Series([], dtype="int64"),
        )
