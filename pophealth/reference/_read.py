"""Spec-driven reading and validation of the official reference files.

Every loader in :mod:`pophealth.reference.loaders` declares a :class:`FileSpec` (the
columns it needs, under every header spelling the publishers use, with their type,
code pattern and range, the key that must be unique and the number of rows of the
complete official file) and calls :func:`read_validated`. Reading accepts CSV, gzipped
CSV and Excel (``.xlsx``: the header row is searched for, so title rows above a table
are skipped).

Reference files are official publications: a bad cell means a corrupt or wrong file,
so the loaders *fail* (they do not quarantine), with a :class:`ReferenceDataError` whose
message names the file, the row and the column of each of the first problems and how
many there are in all. Rows are numbered as in the file: the header is row 1 in a CSV
(so row N is line N when no cell holds a line break), and worksheet row numbers in Excel.

All checks are vectorised per column.
"""

from __future__ import annotations

import gzip
import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

#: How many problems an error message lists before "... and N more".
MAX_LISTED = 10

LSOA11_ENGLAND = r"E01\d{6}"
LSOA_ENGLAND_WALES = r"[EW]01\d{6}"
MSOA_ENGLAND_WALES = r"[EW]02\d{6}"
LAD_CODE = r"[EWSN]0[6789]\d{6}"
ONS_CODE = r"[EWSNK]\d{8}"
ODS_CODE = r"[A-Z0-9]{3,6}"


class ReferenceDataError(ValueError):
    """An official reference file is missing, malformed or incomplete.

    ``file``, ``row`` and ``column`` locate the first problem (``row`` is ``None`` for
    problems with the file as a whole); ``problems`` lists every problem found as
    ``(row, column, value, reason)``.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        row: int | None = None,
        column: str | None = None,
        problems: Sequence[tuple[int | None, str | None, str | None, str]] = (),
    ):
        super().__init__(message)
        self.file = str(file) if file is not None else None
        self.row = row
        self.column = column
        self.problems = list(problems)


@dataclass(frozen=True)
class Col:
    """One column a loader needs.

    ``headers`` are the accepted source header spellings, compared after collapsing
    white space (Excel headers carry line breaks) and ignoring case; the first found
    wins. ``kind`` is ``str``, ``int`` or ``float``; numbers may carry thousands
    separators (``"29,199"``) and integer columns accept ``123.00``.
    """

    name: str
    headers: tuple[str, ...]
    kind: str = "str"
    pattern: str | None = None
    nullable: bool = False
    optional: bool = False  # the column may be absent from the file (filled with nulls)
    minimum: float | None = None
    maximum: float | None = None
    allowed: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("str", "int", "float"):
            raise ValueError(f"column {self.name!r}: unknown kind {self.kind!r}")


#: A whole-row check: takes the typed frame, returns (bad-row mask, column, reason).
RowCheck = Callable[[pd.DataFrame], tuple[pd.Series, str, str]]


@dataclass(frozen=True)
class FileSpec:
    """What a reference file must look like."""

    label: str
    columns: tuple[Col, ...]
    key: tuple[str, ...] = ()
    #: Data rows in the complete official file; fewer or more is an error (a truncated
    #: or wrong file). ``None`` when the count is not fixed.
    expected_rows: int | None = None
    #: Column names for a headerless file (``None``: the file has a header row).
    headerless_names: tuple[str, ...] | None = None
    #: Excel sheet to read; ``None`` searches every sheet for the header.
    sheet: str | None = None
    checks: tuple[RowCheck, ...] = field(default_factory=tuple)

    def column(self, name: str) -> Col:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


def _norm(header: object) -> str:
    text = "" if header is None else str(header)
    return re.sub(r"\s+", " ", text.replace("\ufeff", "")).strip().lower()


def _open_text(path: Path) -> io.TextIOBase:
    raw = gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")  # noqa: SIM115
    return io.TextIOWrapper(raw, encoding="utf-8-sig", errors="strict", newline="")


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _read_xlsx(path: Path, spec: FileSpec) -> tuple[pd.DataFrame, np.ndarray]:
    import openpyxl

    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # zipfile.BadZipFile, KeyError, InvalidFileException...
        raise ReferenceDataError(
            f"{path}: not a readable Excel workbook ({exc})", file=path
        ) from exc
    try:
        sheets = [wb[spec.sheet]] if spec.sheet in wb.sheetnames else wb.worksheets
        wanted = {_norm(h) for h in spec.columns[0].headers}
        for ws in sheets:
            rows = ws.iter_rows(values_only=True)
            for header_row, values in enumerate(rows, start=1):
                if header_row > 30:
                    break
                if any(_norm(v) in wanted for v in values):
                    header = [_cell_text(v) for v in values]
                    key_at = next(i for i, v in enumerate(values) if _norm(v) in wanted)

                    # The table ends at the first row without a key: workbooks put notes,
                    # totals and "Back to contents" links below their tables. A key-shaped
                    # cell further down means the table goes on past a gap: an error, or
                    # every row below the gap would be lost without a word.
                    def key_of(r, k=key_at):
                        return "" if k >= len(r) else _cell_text(r[k]).strip()

                    data = []
                    for r in rows:
                        if key_of(r) == "":
                            break
                        data.append([_cell_text(v) for v in r])
                    gap = header_row + 1 + len(data)
                    pattern = spec.columns[0].pattern
                    if pattern is not None:
                        for n, r in enumerate(rows, start=gap + 1):
                            if re.fullmatch(pattern, key_of(r)):
                                raise ReferenceDataError(
                                    f"{path}, row {gap}, column {header[key_at]!r}: '' missing "
                                    f"value in the table ({spec.label}), which goes on below "
                                    f"(row {n}: {key_of(r)!r})",
                                    file=path,
                                    row=gap,
                                    column=header[key_at],
                                    problems=[(gap, header[key_at], "", "missing value")],
                                )
                    width = len(header)
                    data = [(r + [""] * width)[:width] for r in data]
                    frame = pd.DataFrame(data, columns=header, dtype="string[pyarrow]")
                    numbers = np.arange(header_row + 1, header_row + 1 + len(frame))
                    frame.attrs["header_row"] = header_row
                    return frame, numbers
    finally:
        wb.close()
    first = spec.columns[0].headers[0]
    raise ReferenceDataError(
        f"{path}, row 1, column {first!r}: no worksheet has a header row with this column "
        f"(is this the right workbook for {spec.label}?)",
        file=path,
        row=1,
        column=first,
    )


def read_raw(path: str | Path, spec: FileSpec) -> tuple[pd.DataFrame, np.ndarray]:
    """Every cell of ``path`` as text, with the row number of each data row."""
    path = Path(path)
    if not path.is_file():
        raise ReferenceDataError(f"{path}: file not found ({spec.label})", file=path)
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        return _read_xlsx(path, spec)
    try:
        with _open_text(path) as fh:
            frame = pd.read_csv(
                fh,
                dtype="string[pyarrow]",
                keep_default_na=False,
                na_filter=False,
                header=None if spec.headerless_names else 0,
                names=list(spec.headerless_names) if spec.headerless_names else None,
                skip_blank_lines=False,  # kept to number the rows after them; dropped below
                on_bad_lines="error",
                engine="c",
            )
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError, OSError) as exc:
        raise ReferenceDataError(
            f"{path}: cannot be read as {'gzipped ' if path.name.endswith('.gz') else ''}"
            f"UTF-8 CSV ({exc})",
            file=path,
        ) from exc
    except pd.errors.ParserError as exc:
        match = re.search(r"line (\d+)", str(exc))
        row = int(match.group(1)) if match else None
        raise ReferenceDataError(
            f"{path}, row {row}: malformed CSV ({exc})", file=path, row=row
        ) from exc
    except pd.errors.EmptyDataError as exc:
        raise ReferenceDataError(f"{path}: the file is empty", file=path) from exc
    first = 1 if spec.headerless_names else 2
    numbers = np.arange(first, first + len(frame))
    # Blank lines hold no row; they are left out after numbering, so that row N is still
    # line N below them.
    empty = (frame == "").all(axis=1).to_numpy(bool) if len(frame.columns) else None
    if empty is not None and empty.any():
        frame, numbers = frame[~empty].reset_index(drop=True), numbers[~empty]
    return frame, numbers


def _problem_frame(rows: np.ndarray, column: str, values, reason: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "row": rows,
            "column": column,
            "value": pd.Series(values, dtype="string").fillna("").to_numpy(),
            "reason": reason,
        }
    )


def _raise(path: Path, spec: FileSpec, problems: list[pd.DataFrame]) -> None:
    found = pd.concat(problems, ignore_index=True).sort_values("row", kind="stable")
    listed = [
        f"{path}, row {r.row}, column {r.column!r}: {r.value!r} {r.reason}"
        for r in found.head(MAX_LISTED).itertuples()
    ]
    more = len(found) - MAX_LISTED
    if more > 0:
        listed.append(f"... and {more:,} more problem(s)")
    first = found.iloc[0]
    raise ReferenceDataError(
        f"{spec.label}: {len(found):,} problem(s) in {path}:\n" + "\n".join(listed),
        file=path,
        row=int(first["row"]),
        column=str(first["column"]),
        problems=[
            (int(r.row), str(r.column), str(r.value), str(r.reason)) for r in found.itertuples()
        ],
    )


#: A number with thousands separators: 1-3 digits, then groups of exactly three.
_THOUSANDS = r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d*)?"


def _coerce_number(text: pd.Series, kind: str) -> tuple[pd.Series, pd.Series]:
    """(values, bad mask) for a stripped text column; blanks are NA, not bad.

    Thousands separators (``"29,199"``) are removed; integers may be written ``123.00``.
    A comma anywhere else (``"1,12"``, a decimal comma) is not a number, not 112.
    """
    has_comma = text.str.contains(",", regex=False).fillna(False)
    misplaced = has_comma & ~text.str.fullmatch(_THOUSANDS).fillna(False)
    cleaned = text.str.replace(",", "", regex=False).mask(misplaced, "not a number")
    blank = (cleaned.isna() | (cleaned == "")).to_numpy(bool)
    arrow = pa.array(cleaned.mask(blank).to_numpy(dtype=object, na_value=None), pa.string())
    try:  # fast path: every present cell parses
        numbers = pc.cast(arrow, pa.float64()).to_numpy(zero_copy_only=False)
        values = pd.Series(numbers, index=text.index).astype("Float64")
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        values = pd.to_numeric(cleaned.mask(blank).astype(object), errors="coerce")
        values = pd.Series(values, index=text.index).astype("Float64")
    bad = pd.Series(~blank, index=text.index) & values.isna()
    if kind == "int":
        frac = (values.notna() & ((values % 1) != 0)).fillna(False)
        bad = bad | frac
        values = values.mask(frac).round().astype("Int64")
    return values, bad.fillna(False).astype(bool)


def validate_frame(
    raw: pd.DataFrame, rows: np.ndarray, spec: FileSpec, path: str | Path
) -> pd.DataFrame:
    """Check and type ``raw`` (text cells) against ``spec``; raise on any problem."""
    path = Path(path)
    by_norm: dict[str, str] = {}
    for h in raw.columns:
        by_norm.setdefault(_norm(h), h)
    chosen: dict[str, str | None] = {}
    missing = []
    for col in spec.columns:
        hit = next((by_norm[_norm(h)] for h in col.headers if _norm(h) in by_norm), None)
        if hit is None and not col.optional:
            missing.append(col)
        chosen[col.name] = hit
    if missing:
        names = ", ".join(repr(c.headers[0]) for c in missing)
        found = ", ".join(repr(str(h)) for h in raw.columns[:12])
        more = "..." if len(raw.columns) > 12 else ""
        header_row = int(raw.attrs.get("header_row", 1))
        raise ReferenceDataError(
            f"{path}, row {header_row} (header), column {missing[0].headers[0]!r}: "
            f"{spec.label} needs column(s) {names}; the header has {found}{more}",
            file=path,
            row=header_row,
            column=missing[0].headers[0],
            problems=[(header_row, c.headers[0], None, "column not found") for c in missing],
        )

    rows = np.asarray(rows)
    problems: list[pd.DataFrame] = []
    out: dict[str, pd.Series] = {}
    for col in spec.columns:
        header = chosen[col.name]
        if header is None:
            out[col.name] = pd.Series(
                pd.NA,
                index=raw.index,
                dtype={"str": "string", "int": "Int64", "float": "Float64"}[col.kind],
            )
            continue
        text = raw[header].str.strip()
        blank = text.isna() | (text == "")
        if col.kind == "str":
            values = text.mask(blank)
            bad = pd.Series(False, index=raw.index)
        else:
            values, bad = _coerce_number(text, col.kind)
            if bad.any():
                what = "not a whole number" if col.kind == "int" else "not a number"
                problems.append(_problem_frame(rows[bad.to_numpy()], header, text[bad], what))
        if not col.nullable and blank.any():
            problems.append(
                _problem_frame(rows[blank.to_numpy()], header, text[blank], "missing value")
            )
        present = values.notna() & ~bad
        if col.pattern is not None:
            ok = values.astype("string").str.fullmatch(col.pattern).fillna(False)
            m = (present & ~ok).to_numpy(bool)
            if m.any():
                problems.append(
                    _problem_frame(
                        rows[m], header, text[m], f"does not match the code pattern {col.pattern}"
                    )
                )
        if col.allowed is not None:
            m = (present & ~values.isin(col.allowed)).to_numpy(bool)
            if m.any():
                problems.append(
                    _problem_frame(rows[m], header, text[m], "not one of " + ", ".join(col.allowed))
                )
        if col.minimum is not None:
            m = (present & (values < col.minimum)).fillna(False).to_numpy(bool)
            if m.any():
                problems.append(
                    _problem_frame(rows[m], header, text[m], f"below the minimum {col.minimum:g}")
                )
        if col.maximum is not None:
            m = (present & (values > col.maximum)).fillna(False).to_numpy(bool)
            if m.any():
                problems.append(
                    _problem_frame(rows[m], header, text[m], f"above the maximum {col.maximum:g}")
                )
        out[col.name] = values
    frame = pd.DataFrame(out)

    for key in spec.key:
        header = chosen[key] or key
        dup = frame[key].notna() & frame[key].duplicated(keep=False)
        if dup.any():
            first_row = (
                pd.Series(rows, index=frame.index)[dup].groupby(frame[key][dup]).transform("min")
            )
            later = dup & frame[key].duplicated(keep="first")
            idx = later.to_numpy(bool)
            problems.append(
                pd.DataFrame(
                    {
                        "row": rows[idx],
                        "column": header,
                        "value": frame[key][later].astype("string").to_numpy(),
                        "reason": "duplicate (first at row "
                        + first_row[later].astype(str).to_numpy()
                        + ")",
                    }
                )
            )
    if not problems:
        for check in spec.checks:
            mask, column, reason = check(frame)
            mask = mask.fillna(False).to_numpy(bool)
            if mask.any():
                header = chosen.get(column) or column
                shown = frame[column][mask] if column in frame else pd.Series([""] * mask.sum())
                problems.append(_problem_frame(rows[mask], header, shown, reason))
    if problems:
        _raise(path, spec, problems)

    if spec.expected_rows is not None and len(frame) != spec.expected_rows:
        last = int(rows[-1]) if len(rows) else 1
        hint = "the file looks truncated" if len(frame) < spec.expected_rows else "extra rows"
        raise ReferenceDataError(
            f"{path}, row {last} (last row), column {(chosen[spec.columns[0].name])!r}: "
            f"{spec.label} has {spec.expected_rows:,} data rows in the official file but this "
            f"file has {len(frame):,} ({hint})",
            file=path,
            row=last,
            column=chosen[spec.columns[0].name],
        )
    frame.attrs["source"] = str(path)
    frame.attrs["first_row"] = int(rows[0]) if len(rows) else 2
    return frame


def read_validated(path: str | Path, spec: FileSpec, *, complete: bool = True) -> pd.DataFrame:
    """Read ``path`` and validate it against ``spec``; typed columns named as the spec.

    ``complete=False`` skips the row-count check (for extracts of an official file).
    """
    raw, rows = read_raw(path, spec)
    if not complete and spec.expected_rows is not None:
        spec = FileSpec(
            spec.label,
            spec.columns,
            spec.key,
            None,
            spec.headerless_names,
            spec.sheet,
            spec.checks,
        )
    return validate_frame(raw, rows, spec, path)
