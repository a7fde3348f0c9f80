"""Datasets as pandas: the fast DuckDB conversion gives exactly Ibis's frame."""

from __future__ import annotations

import datetime as dt

import ibis
import pandas as pd
import pyarrow as pa

from pophealth.query.dataset import to_pandas


def test_the_fast_conversion_gives_ibis_frame_for_every_type_with_and_without_gaps():
    n = None
    data = pa.table(
        {
            "patient_id": ["1", "2", "3"],
            "f": [1.5, n, 3.0],
            "f_full": [1.0, 2.0, 3.0],
            "s": ["a", n, "c"],
            "s_full": ["a", "b", "c"],
            "i": pa.array([1, n, 3], pa.int64()),
            "i_full": pa.array([1, 2, 3], pa.int64()),
            "b": [True, n, False],
            "b_full": [True, False, True],
            "d": [dt.date(2025, 1, 1), n, dt.date(2025, 3, 31)],
            "d_full": [dt.date(2025, 1, 1), dt.date(2025, 2, 1), dt.date(2025, 3, 31)],
            "all_missing": pa.array([n, n, n], pa.float64()),
            "i_missing": pa.array([n, n, n], pa.int64()),
            "d_missing": pa.array([n, n, n], pa.date32()),
            "b_missing": pa.array([n, n, n], pa.bool_()),
            "ts": pa.array([dt.datetime(2025, 1, 1, 9, 30), n, n], pa.timestamp("us")),
            "codes": pa.array([["a", "b"], n, []], pa.list_(pa.string())),
        }
    )
    con = ibis.duckdb.connect()
    expr = con.create_table("t", data).order_by("patient_id")
    got, want = to_pandas(expr), expr.to_pandas()
    pd.testing.assert_frame_equal(got, want)
    assert list(got.dtypes) == list(want.dtypes)
    assert got["f"].isna().tolist() == [False, True, False]
    assert got["s"].tolist() == ["a", None, "c"]
    empty = expr.filter(expr.patient_id == "none")
    pd.testing.assert_frame_equal(to_pandas(empty), empty.to_pandas())
    assert got["i"].tolist()[::2] == [1, 3] and pd.isna(got["i"][1])
    assert got["d"][0] == want["d"][0] and pd.isna(got["d"][1])
