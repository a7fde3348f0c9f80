"""Schema-driven validation of input rows against the canonical tables.

:func:`validate` takes rows destined for a canonical table (a pandas DataFrame of
strings or typed values, from CSV, Parquet, FHIR or OMOP), coerces every column to
its declared type, checks nullability, allowed values, patterns, ranges and the
primary key, and splits the rows into those that load and those that are
quarantined — each quarantined row with the file, row, field, value and reason.
Nothing is dropped silently: ``rows_in == rows_loaded + rows_quarantined``.

Everything is vectorised per column; there is no Python loop per row.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from pophealth.schema import Column, arrow_schema, table

QUARANTINE_COLUMNS = ["table", "source", "row", "field", "value", "reason"]

_TRUE = {"true", "t", "yes", "y", "1", "1.0"}
_FALSE = {"false", "f", "no", "n", "0", "0.0"}


#: a number as text: ASCII digits, an optional sign, decimal point and exponent; a comma only
#: as a thousands separator between groups of three digits (``1,234``, ``12,345.6``), so
#: that a decimal comma (``1,5``) or a list (``1,2,3``) is not read as a different number
NUMBER_PATTERN = (
    r"[+-]?(?:(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
)
_NUMBER = re.compile(NUMBER_PATTERN)
NOT_A_NUMBER = "not a number (expected digits with an optional decimal point; a comma only "
NOT_A_NUMBER += "between thousands, as in 1,234.5)"
#: a date as text with its year, month and day (``2020-03-04``, ``20200304``), optionally a
#: time after ``T`` or a space
FULL_DATE_PATTERN = r"(?:[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}|[0-9]{8})(?:[T ].*)?"
NOT_FINITE = "not a finite number (infinity, NaN or beyond the range of a double)"
COMPARATOR = (
    "a value with a comparator (<, <=, >, >=) is not a number: the store has no comparator "
    "column, and loading the bare number would make '<5' equal to 5"
)
#: the years a date may fall in (pandas holds dates from 1677-09-21 to 2262-04-11)
FIRST_YEAR, LAST_YEAR = 1678, 2261
#: the largest whole number a double (what numbers are read as) holds exactly: 2**53 - 1
MAX_EXACT_INT = 2**53 - 1
TOO_LARGE = f"a whole number too large to hold exactly (beyond ±{MAX_EXACT_INT:,})"
_COMPARED = re.compile(r"(?:<=?|>=?)\s*" + NUMBER_PATTERN)


def parse_number(value: Any) -> tuple[float | None, str | None]:
    """``(number, None)`` for a finite number (``None`` for blank), else ``(None, reason)``.

    Text must be a plain decimal number (see :data:`NUMBER_PATTERN`); infinities, NaN and
    values beyond the range of a double are refused, whether given as text or as floats.
    """
    if value is None or value is pd.NA:
        return None, None
    if isinstance(value, bool):
        return None, NOT_A_NUMBER
    if isinstance(value, (int, float, np.integer, np.floating)):
        number = float(value)
        return (number, None) if math.isfinite(number) else (None, NOT_FINITE)
    text = str(value).strip()
    if not text:
        return None, None
    if not _NUMBER.fullmatch(text):
        if _COMPARED.fullmatch(text):
            return None, COMPARATOR
        bare = text.lstrip("+-").lower()
        return None, (NOT_FINITE if bare in ("inf", "infinity", "nan") else NOT_A_NUMBER)
    number = float(text.replace(",", ""))
    return (number, None) if math.isfinite(number) else (None, NOT_FINITE)


class SchemaError(ValueError):
    """The input as a whole does not fit the canonical table (e.g. a missing column)."""


@dataclass
class ValidationResult:
    """Rows that load, rows quarantined, and the counts that must add up."""

    table: str
    source: str
    valid: pa.Table
    quarantine: pd.DataFrame
    rows_in: int
    ignored_columns: list[str] = field(default_factory=list)

    @property
    def rows_loaded(self) -> int:
        return self.valid.num_rows

    @property
    def rows_quarantined(self) -> int:
        if self.quarantine.empty:
            return 0
        return int(self.quarantine["row"].nunique())

    def check_balance(self) -> None:
        """Raise if any row has been lost between input and output."""
        if self.rows_loaded + self.rows_quarantined != self.rows_in:
            raise AssertionError(
                f"{self.source}: {self.rows_in} rows in but {self.rows_loaded} loaded + "
                f"{self.rows_quarantined} quarantined"
            )


def _blank_to_na(s: pd.Series) -> pd.Series:
    if s.dtype == object or pd.api.types.is_string_dtype(s):
        s = s.astype("string").str.strip()
        s = s.mask(s == "")
    return s


def _coerce(col: Column, raw: pd.Series) -> tuple[pd.Series, pd.Series, str | pd.Series]:
    """Coerce ``raw`` to the column's type: (values, bad-type mask, reason)."""
    kind = col.type
    if kind == "list<string>":

        def as_list(v):
            if v is None or (isinstance(v, float) and np.isnan(v)):
                return None
            if isinstance(v, (list, tuple, np.ndarray)):
                return [str(x) for x in v]
            text = str(v).strip()
            return [p.strip() for p in text.split("|") if p.strip()] if text else None

        values = raw.map(as_list)
        return values, pd.Series(False, index=raw.index), ""
    s = _blank_to_na(raw)
    present = s.notna()
    if kind == "string":
        values = s.astype("string")
        return values, pd.Series(False, index=raw.index), ""
    if kind in ("date", "timestamp"):
        outside = np.zeros(len(s), dtype=bool)
        if pd.api.types.is_datetime64_any_dtype(s):
            values = s
            if getattr(values.dt, "tz", None) is not None:
                values = values.dt.tz_convert("UTC").dt.tz_localize(None)
        else:
            text = s.astype("string").str.strip()
            values = pd.to_datetime(text, errors="coerce", format="ISO8601", utc=True)
            values = values.dt.tz_convert("UTC").dt.tz_localize(None)
            # ISO 8601 also reads "2020" and "2020-03" (as 1 January, 1 March): a date
            # without its day is refused, not moved to the first of the month or year
            whole = text.str.fullmatch(FULL_DATE_PATTERN).fillna(False).to_numpy(bool)
            values = values.where(whole)
            # a well-formed date in a year pandas cannot hold (1066-10-14, 2999-01-01) is
            # refused saying so, not as "not a date"
            year = pd.to_numeric(text.str.slice(0, 4), errors="coerce")
            outside = whole & values.isna().to_numpy(bool)
            outside &= ((year < FIRST_YEAR) | (year > LAST_YEAR)).fillna(False).to_numpy(bool)
        what = "a date" if kind == "date" else "a date-time"
        reason = pd.Series(
            "not a date (expected YYYY-MM-DD)"
            if kind == "date"
            else "not a date-time (expected ISO 8601)",
            index=raw.index,
            dtype=object,
        )
        reason[outside] = f"{what} outside the years {FIRST_YEAR}-{LAST_YEAR} pophealth can read"
        if kind == "date":
            bad_time = values.notna() & (values != values.dt.normalize())
            values = values.dt.normalize()
            bad = (present & values.isna()) | bad_time
            return values, bad, reason
        return values, present & values.isna(), reason
    if kind in ("int", "float"):
        reason = pd.Series(NOT_A_NUMBER, index=raw.index, dtype=object)
        if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            values = s.astype("float64")
            bad = present & ~np.isfinite(values.to_numpy("float64", na_value=np.nan))
            reason[bad.to_numpy(bool)] = NOT_FINITE
        else:
            text = s.astype("string")
            shaped = text.str.fullmatch(NUMBER_PATTERN).fillna(False).to_numpy(bool)
            values = pd.to_numeric(text.where(shaped).str.replace(",", "", regex=False))
            values = values.astype("float64")
            finite = np.isfinite(values.to_numpy("float64", na_value=np.nan))
            bad = present & ~pd.Series(finite, index=raw.index)
            words = text.str.strip().str.lstrip("+-").str.lower().isin(["inf", "infinity", "nan"])
            reason[((shaped & ~finite) | words.fillna(False).to_numpy(bool))] = NOT_FINITE
            values = values.where(finite)
        if kind == "int":
            frac = values.notna() & (values % 1 != 0)
            reason[frac.to_numpy(bool)] = "not a whole number"
            # beyond 2**53 a double no longer holds every whole number (text
            # 9007199254740993 reads as ...992), and beyond 2**63 the int64 column cannot
            # hold it at all: refused, not altered or left to fail the whole input
            huge = values.notna() & ~frac & (values.abs() > MAX_EXACT_INT)
            reason[huge.to_numpy(bool)] = TOO_LARGE
            return values, bad | frac | huge, reason
        return values, bad, reason
    if kind == "bool":
        if pd.api.types.is_bool_dtype(s):
            return s.astype("boolean"), pd.Series(False, index=raw.index), ""
        text = s.astype("string").str.lower()
        values = pd.Series(pd.NA, index=raw.index, dtype="boolean")
        values[text.isin(_TRUE).fillna(False).to_numpy(bool)] = True
        values[text.isin(_FALSE).fillna(False).to_numpy(bool)] = False
        return values, present & values.isna(), "not true/false"
    raise AssertionError(kind)


def _to_arrow(col: Column, values: pd.Series) -> pa.Array:
    kind = col.type
    if kind == "int":
        return pa.array(values.astype("Int64"), type=pa.int64())
    if kind == "float":
        return pa.array(
            values.to_numpy("float64", na_value=np.nan), type=pa.float64(), from_pandas=True
        )
    if kind == "date":
        return pa.array(values, type=pa.timestamp("us"), from_pandas=True).cast(pa.date32())
    if kind == "timestamp":
        return pa.array(values, type=pa.timestamp("us"), from_pandas=True)
    if kind == "bool":
        return pa.array(values, type=pa.bool_(), from_pandas=True)
    if kind == "list<string>":
        return pa.array(values.tolist(), type=pa.list_(pa.string()))
    return pa.array(values.astype(object).where(values.notna(), None).tolist(), type=pa.string())


#: a date without a time (in a timestamp column it stands for some time on that day)
_DAY_ONLY = r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}|[0-9]{8}"


def _day_only(raw: pd.Series | None) -> np.ndarray:
    if raw is None or pd.api.types.is_datetime64_any_dtype(raw):
        return np.zeros(0 if raw is None else len(raw), dtype=bool)
    text = raw.astype("string").str.strip()
    return text.str.fullmatch(_DAY_ONLY).fillna(False).to_numpy(bool)


#: a date-time with a time and a UTC offset (``2025-03-01T23:30:00-02:00``, ``…Z``)
WITH_OFFSET_PATTERN = (
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?"
    r"(?:Z|[+-][0-9]{2}:[0-9]{2})"
)


def _instants(raw: pd.Series) -> tuple[pd.Series, pd.Series]:
    """The ``raw`` date-times (text) that carry a time and an offset, as UTC instants (NaT
    elsewhere), and their text (NA elsewhere)."""
    text = raw.reset_index(drop=True).astype("string").str.strip()
    text = text.where(text.str.fullmatch(WITH_OFFSET_PATTERN).fillna(False).to_numpy(bool))
    at = pd.to_datetime(text, errors="coerce", format="ISO8601", utc=True)
    return at.dt.tz_localize(None), text


def _end_before_start(
    start: Column,
    end: Column,
    coerced: dict[str, pd.Series],
    frame: pd.DataFrame,
    instants: Mapping[str, pd.Series],
) -> tuple[pd.Series, pd.Series, pd.Series | None]:
    """Rows whose ``end`` is before their ``start`` (a missing end is an open period; an
    end equal to the start is valid), the reason for each, naming both values, and the
    end's date-time where a period of dates was compared as instants (NA elsewhere; None
    if none was).

    Timestamps are compared as instants, except where either was given as a date without
    a time (``2023-01-05``: some time that day), which is compared by day. Dates are
    compared by day, except where ``instants`` gives, for both ends, the date-time the date
    was read from with a time and an offset (a FHIR period): those are compared as
    instants (``2025-03-02T00:10+00:00`` is before ``2025-03-01T23:30-02:00``), and shown
    as written."""
    began, ended = coerced[start.name], coerced[end.name]
    both = (began.notna() & ended.notna()).to_numpy(bool)
    reason = pd.Series("", index=began.index, dtype=object)
    if not both.any():
        return pd.Series(False, index=began.index), reason, None
    n = len(began)
    timed = np.zeros(n, dtype=bool)
    began_text = ended_text = None
    if start.type == "date":
        by_day = np.ones(n, dtype=bool)
        if start.name in instants and end.name in instants:
            began_at, began_text = _instants(instants[start.name])
            ended_at, ended_text = _instants(instants[end.name])
            timed = (began_at.notna() & ended_at.notna()).to_numpy(bool)
            by_day &= ~timed
            began = began.where(~timed, began_at.to_numpy())
            ended = ended.where(~timed, ended_at.to_numpy())
    else:
        by_day = np.zeros(n, dtype=bool)
        for col in (start, end):
            if col.name in frame.columns:
                by_day |= _day_only(frame[col.name].reset_index(drop=True))
    day_before = (ended.dt.normalize() < began.dt.normalize()).to_numpy(bool)
    before = both & np.where(by_day, day_before, (ended < began).to_numpy(bool))
    if not before.any():
        return pd.Series(before, index=began.index), reason, None
    day, written = by_day[before], timed[before]

    def shown(values: pd.Series, text: pd.Series | None) -> np.ndarray:
        v = values[before]
        out = np.where(day, v.dt.strftime("%Y-%m-%d"), v.dt.strftime("%Y-%m-%d %H:%M:%S"))
        if written.any():
            out = np.where(written, text[before].astype(object).to_numpy(), out)
        return out

    reason[before] = (
        end.name
        + " "
        + shown(ended, ended_text)
        + " is before "
        + start.name
        + " "
        + shown(began, began_text)
    )
    timed_end = ended_text.where(timed) if written.any() else None
    return pd.Series(before, index=began.index), reason, timed_end


def validate(
    name: str,
    frame: pd.DataFrame | pa.Table,
    *,
    source: str = "<input>",
    row_numbers: np.ndarray | pd.Series | None = None,
    primary_key: bool = True,
    instants: Mapping[str, pd.Series] | None = None,
) -> ValidationResult:
    """Validate rows for canonical table ``name``.

    ``row_numbers`` are what error messages call the row (e.g. the line in the source
    file); by default the 1-based position in ``frame``. Columns of ``frame`` that the
    table does not declare are ignored and listed in the result; a missing required
    column raises :class:`SchemaError` naming the source and the column. With
    ``primary_key=False`` rows sharing a key are left to the caller (ingest checks every
    record of a patient before it chooses the one to keep). ``instants`` gives, for a date
    column of a period, the date-time (text, one per row of ``frame``) each date was read
    from, where the source had one (FHIR): a period both of whose ends carry a time and an
    offset there is checked as instants, not by day.
    """
    spec = table(name)
    if isinstance(frame, pa.Table):
        frame = frame.to_pandas()
    df = frame.reset_index(drop=True)
    n = len(df)
    rows = (
        pd.Series(np.arange(1, n + 1), dtype="int64")
        if row_numbers is None
        else pd.Series(np.asarray(row_numbers), dtype="int64")
    )
    if len(rows) != n or rows.duplicated().any():
        # problems are told (and rows counted) by row number: two rows sharing one would
        # be quarantined together and counted once
        raise ValueError(
            f"{source}: row_numbers must name each of the {n:,} rows once "
            f"({len(rows):,} given, {int(rows.duplicated().sum()):,} repeated)"
        )
    missing = [c.name for c in spec.columns if c.name not in df.columns and not c.nullable]
    if missing:
        raise SchemaError(
            f"{source}: table {name!r} needs column(s) {', '.join(missing)}; "
            f"found {', '.join(map(str, df.columns)) or 'no columns'}"
        )
    ignored = [c for c in df.columns if c not in spec.column_names]

    problems: list[pd.DataFrame] = []

    def flag(mask: pd.Series, column: str, raw: pd.Series, reason: str | pd.Series) -> None:
        mask = mask.fillna(False).to_numpy(bool)
        if not mask.any():
            return
        reasons = reason[mask] if isinstance(reason, pd.Series) else reason
        problems.append(
            pd.DataFrame(
                {
                    "table": name,
                    "source": source,
                    "row": rows[mask].to_numpy(),
                    "field": column,
                    "value": raw[mask].astype("string").to_numpy(),
                    "reason": reasons,
                }
            )
        )

    coerced: dict[str, pd.Series] = {}
    for col in spec.columns:
        raw = df[col.name] if col.name in df.columns else pd.Series(pd.NA, index=df.index)
        values, bad_type, reason = _coerce(col, raw)
        flag(bad_type, col.name, raw, reason)
        values = values.mask(bad_type) if col.type != "list<string>" else values
        if not col.nullable:
            flag(values.isna() & ~bad_type, col.name, raw, "missing required value")
        if col.allowed is not None:
            bad = values.notna() & ~values.isin(col.allowed)
            flag(bad, col.name, raw, "not one of: " + ", ".join(col.allowed))
        if col.pattern is not None:
            bad = values.notna() & ~values.astype("string").str.fullmatch(col.pattern).fillna(False)
            flag(bad, col.name, raw, f"does not match the pattern {col.pattern}")
        if col.minimum is not None:
            flag(
                values.notna() & (values < col.minimum),
                col.name,
                raw,
                f"below the minimum {col.minimum:g}",
            )
        if col.maximum is not None:
            flag(
                values.notna() & (values > col.maximum),
                col.name,
                raw,
                f"above the maximum {col.maximum:g}",
            )
        coerced[col.name] = values

    for start, end in spec.periods:
        before, reason, timed_end = _end_before_start(
            spec[start], spec[end], coerced, df, instants or {}
        )
        value = df[end] if end in df.columns else coerced[end]
        if timed_end is not None:
            value = timed_end.where(timed_end.notna(), value.astype("string"))
        flag(before, end, value, reason)

    bad_rows = pd.concat(problems)["row"].unique() if problems else np.array([], dtype="int64")
    good = ~rows.isin(bad_rows)
    if primary_key and spec.primary_key and n:
        # among the rows kept so far: a row quarantined for another problem keeps nothing,
        # so the first valid row of a key is the one kept (and the message names it)
        key = pd.DataFrame({k: coerced[k] for k in spec.primary_key})[good]
        dup = key.duplicated(keep="first").reindex(rows.index, fill_value=False)
        if dup.any():
            first_key = spec.primary_key[0]
            by = [key[k] for k in spec.primary_key]
            kept = rows[good].groupby(by, dropna=False).transform("first").reindex(rows.index)
            flag(
                dup,
                first_key,
                coerced[first_key],
                "duplicate key (" + ", ".join(spec.primary_key) + "); row "
                + kept.astype("Int64").astype("string") + ", the first with it, kept",
            )  # fmt: skip
            good &= ~dup

    quarantine = (
        pd.concat(problems, ignore_index=True)
        if problems
        else pd.DataFrame({c: pd.Series(dtype="object") for c in QUARANTINE_COLUMNS})
    )
    mask = good.to_numpy(bool)
    arrays = [
        _to_arrow(col, coerced[col.name][mask].reset_index(drop=True)) for col in spec.columns
    ]
    valid = pa.Table.from_arrays(arrays, schema=arrow_schema(name))
    result = ValidationResult(name, source, valid, quarantine, n, ignored)
    result.check_balance()
    return result


def format_problems(quarantine: pd.DataFrame, limit: int = 10) -> str:
    """Human-readable lines ``file, row N, field F: value 'v' reason`` for the first problems."""
    lines = [
        f"{r.source}, row {r.row}, field {r.field}: {r.value!r} {r.reason}"
        for r in quarantine.head(limit).itertuples()
    ]
    more = len(quarantine) - limit
    if more > 0:
        lines.append(f"... and {more} more problem(s)")
    return "\n".join(lines)
