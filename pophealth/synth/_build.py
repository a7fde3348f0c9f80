"""Row accumulators that turn numpy columns into canonical Arrow tables.

Patients are numbered within a chunk (``0..n-1``); every string column is built with a
single vectorised ``take`` from a small dictionary (patient ids, codes, units), never
a Python loop per row.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa

from pophealth.schema import arrow_schema
from pophealth.synth._codes import Vocab

EPOCH = dt.date(1970, 1, 1)
US_PER_DAY = 86_400_000_000


def day(d: dt.date) -> int:
    """Days since 1970-01-01."""
    return (d - EPOCH).days


def date_array(days: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    arr = pa.array(np.asarray(days, dtype=np.int32), type=pa.int32(), mask=mask)
    return arr.cast(pa.date32())


def ts_array(us: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    arr = pa.array(np.asarray(us, dtype=np.int64), type=pa.int64(), mask=mask)
    return arr.cast(pa.timestamp("us"))


def float_array(values: np.ndarray) -> pa.Array:
    values = np.asarray(values, dtype=np.float64)
    mask = np.isnan(values)
    return pa.array(values, type=pa.float64(), mask=mask if mask.any() else None)


class Rows:
    """Columns of one table collected in parts, concatenated once per chunk."""

    def __init__(self, columns: tuple[str, ...]):
        self.columns = columns
        self.parts: dict[str, list[np.ndarray]] = {c: [] for c in columns}

    def add(self, **cols: np.ndarray) -> None:
        n = None
        for c in self.columns:
            v = cols[c]
            if np.ndim(v) == 0:
                if n is None:
                    n = max(len(x) for x in cols.values() if np.ndim(x) > 0)
                v = np.full(n, v)
            self.parts[c].append(np.asarray(v))

    def get(self, column: str, dtype) -> np.ndarray:
        parts = self.parts[column]
        if not parts:
            return np.zeros(0, dtype=dtype)
        return np.concatenate(parts).astype(dtype, copy=False)

    def __len__(self) -> int:
        parts = self.parts[self.columns[0]]
        return int(sum(len(p) for p in parts))


def sort_order(*keys: np.ndarray) -> np.ndarray:
    """Stable order by the given non-negative-able integer keys (first most significant).

    The keys are packed into one int64 (each shifted to start at zero) when they fit in
    63 bits, which sorts several times faster than ``np.lexsort``; otherwise lexsort.
    """
    if not len(keys[0]):
        return np.zeros(0, dtype=np.int64)
    packed = np.zeros(len(keys[0]), dtype=np.int64)
    bits = 0
    for key in keys:
        key = np.asarray(key, dtype=np.int64)
        lo, hi = int(key.min()), int(key.max())
        width = max(int(hi - lo).bit_length(), 1)
        bits += width
        if bits > 62:
            return np.lexsort(tuple(reversed(keys)))
        packed = (packed << width) | (key - lo)
    return np.argsort(packed, kind="stable")


def repeat_string(value: str, n: int) -> pa.Array:
    """A string column holding ``value`` ``n`` times, built without a per-row take."""
    data = np.frombuffer(value.encode(), dtype=np.uint8)
    offsets = np.arange(n + 1, dtype=np.int32) * len(data)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(np.tile(data, n)))


def conform(name: str, columns: dict[str, pa.Array]) -> pa.Table:
    schema = arrow_schema(name)
    n = len(next(iter(columns.values()))) if columns else 0
    arrays = []
    for field in schema:
        if field.name in columns:
            arrays.append(columns[field.name].cast(field.type))
        else:
            arrays.append(pa.nulls(n, type=field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def string_col(vocab: Vocab, ids: np.ndarray) -> pa.Array:
    return vocab.array(ids)


def list_col(vocab: Vocab, offsets: np.ndarray, value_ids: np.ndarray, null: np.ndarray):
    """A list<string> column from offsets (n+1) and flat vocabulary ids; null rows masked."""
    values = vocab.array(value_ids)
    offs = pa.array(np.asarray(offsets, dtype=np.int32), type=pa.int32())
    mask = pa.array(np.asarray(null, dtype=bool)) if np.any(null) else None
    return pa.ListArray.from_arrays(offs, values, mask=mask)
