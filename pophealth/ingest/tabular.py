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
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
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
    """
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

    reader = csv.reader(
        all_lines(),
        delimiter=sep,
        quotechar='"',
        doublequote=True,
        quoting=csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE,
        strict=False,
    )
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
    width = len(header)

    def bad(row: BadRow) -> None:
        if on_bad is None:
            raise UnreadableFile(f"{path}, line {row.line}, field {row.field}: {row.reason}")
        on_bad(row)

    rows: list[list[str]] = []
    starts: list[int] = []
    yielded = False
    prev = reader.line_num
    while True:
        try:
            rec = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            start, prev = prev + 1, reader.line_num
            bad(BadRow(start, "", None, f"could not be split into fields: {exc}", None))
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
                    start,
                    name,
                    _printable(rec[i]),
                    f"not UTF-8 text: byte 0x{byte:02X} at character {pos + 1} of the field "
                    "(save the file as UTF-8)",
                    _printable(sep.join(rec)),
                )
            )
            continue
        if len(rec) != width:
            bad(
                BadRow(
                    start,
                    "",
                    None,
                    f"{len(rec)} fields where the header has {width}",
                    sep.join(rec),
                )
            )
            continue
        rows.append(rec)
        starts.append(start)
        if len(rows) >= chunk_rows:
            yield _frame(header, rows), pd.Series(starts, dtype="int64")
            rows, starts, yielded = [], [], True
    if rows or not yielded:  # a header-only file gives one empty chunk (its columns)
        yield _frame(header, rows), pd.Series(starts, dtype="int64")


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
        yield df, pd.Series(np.arange(start, start + len(df)), dtype="int64")
        start += len(df)
    if start == 1:
        names = _unique([str(c) for c in pf.schema_arrow.names])
        yield (
            pd.DataFrame({n: pd.Series(dtype=object) for n in names}),
            pd.Series([], dtype="int64"),
        )
