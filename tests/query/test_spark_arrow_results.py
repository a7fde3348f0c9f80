"""Spark's results reach pandas through Arrow, column by column, and come out as they did
row by row: the same values and types as DuckDB's for every awkward type a definition can
return — dates (still dates, not shifted by the process's time zone), clock times, whole
numbers with gaps, True/False with gaps, decimals, text, lists of text, NaN and -0.0, and
empty results. Pandas frames reach Spark through Arrow too (in-memory tables): a whole
number beside a gap, which the row-by-row path turned into a gap, keeps its value."""

from __future__ import annotations

import datetime as dt
import decimal
import importlib.util
import time

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pandas.testing import assert_frame_equal

no_spark = importlib.util.find_spec("pyspark") is None
pytestmark = [pytest.mark.spark, pytest.mark.skipif(no_spark, reason="pyspark not installed")]

D, T, Dec = dt.date, dt.datetime, decimal.Decimal

#: One row per awkward case, in an order unlike the sorted one. Clock times just before
#: midnight and in the hour the UK clocks repeat: a shift by the process's time zone moves
#: them to another day or hour.
AWKWARD = pa.table(
    {
        "id": pa.array([3, 1, 4, 2], pa.int64()),
        "day": pa.array([None, D(2024, 2, 29), D(9999, 12, 31), D(1900, 1, 1)], pa.date32()),
        "seen_at": pa.array(
            [None, T(2024, 3, 31, 23, 30), T(2024, 10, 27, 1, 30), T(1969, 12, 31, 23, 59, 59)],
            pa.timestamp("us"),
        ),
        "count_or_gap": pa.array([-7, 5, 0, None], pa.int64()),
        "whole": pa.array([-7, 5, 0, 6], pa.int64()),
        "flag_or_gap": pa.array([False, True, True, None], pa.bool_()),
        "flag": pa.array([False, True, True, False], pa.bool_()),
        "amount": pa.array([Dec("-0.01"), Dec("1.25"), Dec("0"), None], pa.decimal128(10, 2)),
        "text": pa.array(["", "a", "é 漢", None], pa.string()),
        "codes": pa.array([[], ["x", "y"], [None, "z"], None], pa.list_(pa.string())),
        "reading": pa.array([float("nan"), 1.5, -0.0, None], pa.float64()),
    }
)


@pytest.fixture(scope="module")
def awkward_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("arrow") / "awkward.parquet"
    pq.write_table(AWKWARD, path)
    return str(path)


@pytest.fixture(scope="module")
def spark_con():
    from pophealth.engines import backend

    return backend("spark")


@pytest.fixture(scope="module")
def duck_con():
    from pophealth.engines import backend

    return backend("duckdb")


@pytest.fixture(params=["UTC", "Pacific/Kiritimati", "America/Los_Angeles"])
def process_tz(request, monkeypatch):
    """The Python process's time zone (where Spark's rows become pandas values); Spark's
    session time zone stays UTC."""
    monkeypatch.setenv("TZ", request.param)
    time.tzset()
    yield request.param
    monkeypatch.undo()
    time.tzset()


def test_the_spark_session_returns_results_through_arrow_with_no_silent_fallback():
    from pophealth.engines import spark_session

    conf = spark_session().conf
    assert conf.get("spark.sql.execution.arrow.pyspark.enabled") == "true"
    assert conf.get("spark.sql.execution.arrow.pyspark.fallback.enabled") == "false"
    assert conf.get("spark.sql.execution.pandas.convertToArrowArraySafely") == "true"


def results(con, path: str) -> dict[str, pd.DataFrame]:
    """The awkward table as read, an empty result, and values computed by the engine, each
    executed as the programmes execute theirs (``pophealth.query.dataset.to_pandas``)."""
    from pophealth.query.dataset import to_pandas

    t = con.read_parquet(path, table_name="awkward")
    computed = t.mutate(
        day_of_seen=t.seen_at.date(),
        day_before=t.day - ibis_days(1),
        has_x=t.codes.contains("x"),
        plus_one=t.count_or_gap + 1,
        half=t.count_or_gap / 2,
    )
    per_flag = t.group_by("flag_or_gap").aggregate(
        rows=t.count(),
        last_day=t.day.max(),
        last_seen=t.seen_at.max(),
        most=t.count_or_gap.max(),
        amount=t.amount.sum(),
    )
    return {
        "as read": to_pandas(t.order_by("id")),
        "empty": to_pandas(t.filter(t.id > 10)),
        "computed": to_pandas(
            computed.select(
                "id", "day_of_seen", "day_before", "has_x", "plus_one", "half"
            ).order_by("id")
        ),
        "per flag": to_pandas(per_flag.order_by("flag_or_gap")),
    }


def ibis_days(n: int):
    import ibis

    return ibis.interval(days=n)


def test_awkward_types_come_back_the_same_from_spark_as_from_duckdb(
    process_tz, awkward_file, spark_con, duck_con
):
    spark = results(spark_con, awkward_file)
    duck = results(duck_con, awkward_file)
    # An empty result's clock-time and list columns are typed differently by Ibis's two
    # backends whichever way Spark transfers rows (DuckDB: datetime64[us] and float64);
    # every other column of the empty result agrees.
    empty_differs = ["seen_at", "codes"]
    assert_frame_equal(
        spark["empty"].drop(columns=empty_differs), duck["empty"].drop(columns=empty_differs)
    )
    assert list(spark["empty"].columns) == list(duck["empty"].columns)
    for name in ["as read", "computed", "per flag"]:
        assert_frame_equal(spark[name], duck[name], obj=name)


def test_awkward_values_are_what_was_written(process_tz, awkward_file, spark_con):
    """Not only equal to DuckDB's: the values written, in the types they had before Arrow."""
    df = results(spark_con, awkward_file)["as read"]
    assert list(df.id) == [1, 2, 3, 4]
    assert str(df.day.dtype) == "datetime64[s]"  # dates stay midnight-only, unshifted
    assert list(df.day) == [
        pd.Timestamp("2024-02-29"),
        pd.Timestamp("1900-01-01"),
        pd.NaT,
        pd.Timestamp("9999-12-31"),
    ]
    assert str(df.seen_at.dtype) == "datetime64[ns]"
    assert list(df.seen_at) == [
        pd.Timestamp("2024-03-31 23:30"),
        pd.Timestamp("1969-12-31 23:59:59"),
        pd.NaT,
        pd.Timestamp("2024-10-27 01:30"),
    ]
    assert str(df.whole.dtype) == "int64"
    assert str(df.count_or_gap.dtype) == "float64"  # as before Arrow, and as on DuckDB
    assert df.count_or_gap.fillna(99).tolist() == [5.0, 99.0, -7.0, 0.0]
    assert str(df.flag.dtype) == "bool"
    assert df.flag_or_gap.tolist() == [True, None, False, True]
    assert df.amount.tolist() == [Dec("1.25"), None, Dec("-0.01"), Dec("0.00")]
    assert df.text.tolist() == ["a", None, "", "é 漢"]
    assert df.codes.tolist() == [["x", "y"], None, [], [None, "z"]]
    assert all(type(v) is list for v in df.codes.dropna())
    assert df.reading.isna().tolist() == [False, True, True, False]
    assert str(df.reading[3]) == "-0.0"


def test_to_pyarrow_gives_the_same_types_and_values_as_duckdb(
    process_tz, awkward_file, spark_con, duck_con
):
    from pophealth.query.dataset import portable_arrow

    tables = {}
    for engine, con in [("spark", spark_con), ("duckdb", duck_con)]:
        t = con.read_parquet(awkward_file, table_name="awkward")
        tables[engine] = portable_arrow(t.order_by("id").to_pyarrow())
    assert tables["spark"].schema == tables["duckdb"].schema
    assert tables["spark"].to_pylist() == tables["duckdb"].to_pylist()
    assert tables["spark"].schema.field("day").type == pa.date32()


def test_an_in_memory_table_keeps_a_whole_number_beside_a_gap(spark_con, duck_con):
    """Row by row, Spark read pandas' 1.0 for a whole-number column as a gap (every value of
    a column with a gap became missing); through Arrow it is 1, as on DuckDB."""
    import ibis

    frame = pd.DataFrame(
        {"k": [1, 2, 3], "n": [1, None, 3], "day": [D(2024, 2, 29), None, D(1900, 1, 1)]}
    )
    t = ibis.memtable(frame, schema={"k": "int64", "n": "int64", "day": "date"})
    spark = spark_con.execute(t.order_by("k"))
    duck = duck_con.execute(t.order_by("k"))
    assert_frame_equal(spark, duck)
    assert spark.n.fillna(99).tolist() == [1.0, 99.0, 3.0]


def test_a_value_that_does_not_fit_an_in_memory_tables_type_raises(spark_con):
    """1.5 in a whole-number column: an error, not a silently truncated 1 (or, row by row,
    a silent gap)."""
    import ibis

    t = ibis.memtable(pd.DataFrame({"n": [1.5]}), schema={"n": "int64"})
    with pytest.raises(Exception, match="unsafe conversions"):
        spark_con.execute(t)
