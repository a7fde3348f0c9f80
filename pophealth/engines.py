"""Query engines: an Ibis backend over a store, on DuckDB (default) or Spark.

Programme code never names an engine: it builds Ibis expressions against the
tables of the backend returned here, and ``--engine duckdb|spark`` picks where
they run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pophealth.store import Store

ENGINES = ("duckdb", "spark")

_spark_session = None


def spark_session(*, shuffle_partitions: int | None = None):
    """The process's local Spark session (created once, small and quiet).

    ``POPHEALTH_SPARK_MASTER`` overrides the master (default ``local[2]``); shuffle
    partitions default to 4 (tests and laptops), ``POPHEALTH_SPARK_SHUFFLE_PARTITIONS``
    or the argument to raise it for region-scale data.

    Results come back to pandas through Arrow (Ibis's ``execute``, ``to_pandas`` and
    ``to_pyarrow`` all go through ``toPandas``), and pandas frames reach Spark through it
    (in-memory tables), column by column instead of one Python object per value. There is
    no silent fallback to the row-by-row path: a result Arrow cannot carry raises. Arrow
    casts pandas values to a table's declared types safely: a value that would be
    truncated or overflow raises instead of changing.
    """
    global _spark_session
    if _spark_session is not None:
        return _spark_session
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError(
            "the Spark engine needs the `spark` extra: uv sync --extra spark "
            "(or pip install 'pophealth[spark]')"
        ) from exc
    partitions = shuffle_partitions or int(os.environ.get("POPHEALTH_SPARK_SHUFFLE_PARTITIONS", 4))
    master = os.environ.get("POPHEALTH_SPARK_MASTER", "local[2]")
    if master.startswith("local"):  # (else Spark warns that the host name is a loopback one)
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    log_config = Path(__file__).with_name("spark-log4j2.properties")
    builder = (
        SparkSession.builder.master(master)
        .appName("pophealth")
        .config("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile={log_config}")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", str(partitions))
        .config("spark.default.parallelism", str(partitions))
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.memory", os.environ.get("POPHEALTH_SPARK_DRIVER_MEMORY", "4g"))
        .config("spark.sql.ansi.enabled", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.execution.arrow.pyspark.fallback.enabled", "false")
        .config("spark.sql.execution.pandas.convertToArrowArraySafely", "true")
    )
    _spark_session = builder.getOrCreate()
    _spark_session.sparkContext.setLogLevel("ERROR")
    return _spark_session


def backend(engine: str = "duckdb", **options: Any):
    """A bare Ibis backend for ``engine`` (no tables registered).

    Its ``read_parquet(path, table_name=T)`` for a canonical table ``T`` whose file lacks
    a nullable column of the schema (a store written before the column was added, e.g.
    ``registrations.source``) registers the table with that column as nulls, so that
    definitions naming every column compile on older stores too."""
    import ibis  # here, not at the top: `pophealth --help` need not load it

    if engine == "duckdb":
        con = ibis.duckdb.connect(**options)
    elif engine == "spark":
        con = ibis.pyspark.connect(spark_session())
        _broadcast_in_memory_tables(con)
    else:
        raise ValueError(f"unknown engine {engine!r}; choose one of: {', '.join(ENGINES)}")
    _fill_missing_columns(con)
    return con


def _broadcast_in_memory_tables(con) -> None:
    """Spark: every in-memory table (``ibis.memtable``: a code list's role table, the month
    ends of a trend) is registered with a broadcast hint, so joins with it leave the big
    table where it is.

    Spark cannot size a table made from a pandas frame, so without the hint it treated
    one as large: an equi-join with ``events`` shuffled every event row by code (most
    rows on the partition of the few commonest codes), and a cross join became a
    cartesian product of P x P tasks for P shuffle partitions — 4,096 tasks per stage at
    ``POPHEALTH_SPARK_SHUFFLE_PARTITIONS=64``. In-memory tables are built in Python and
    small by construction."""
    register = con._register_in_memory_table

    def register_broadcast(op) -> None:
        register(op)
        session = con._session
        session.table(op.name).hint("broadcast").createOrReplaceTempView(op.name)

    con._register_in_memory_table = register_broadcast


def _fill_missing_columns(con) -> None:
    import ibis
    import pyarrow.parquet as pq

    from pophealth.schema import TABLES

    read = con.read_parquet

    def read_parquet(path, table_name: str | None = None, **kwargs: Any):
        if table_name in TABLES and isinstance(path, str | os.PathLike) and os.path.isfile(path):
            present = set(pq.read_schema(path).names)
            missing = [c for c in TABLES[table_name].columns if c.name not in present]
            if missing:
                t = read(path, table_name=f"_{table_name}_as_written", **kwargs)
                fill = {c.name: ibis.null().cast(_IBIS_TYPES[c.type]) for c in missing}
                return con.create_view(table_name, t.mutate(**fill), overwrite=True)
        return read(path, table_name=table_name, **kwargs)

    con.read_parquet = read_parquet


def connect(store: Store, engine: str = "duckdb", **options: Any):
    """An Ibis backend with every canonical table of ``store`` registered by name."""
    from pophealth.schema import TABLES

    con = backend(engine, **options)
    for name in TABLES:
        con.read_parquet(str(store.table_path(name)), table_name=name)
    return con


#: Ibis types of the schema's logical column types.
_IBIS_TYPES = {
    "string": "string",
    "date": "date",
    "timestamp": "timestamp",
    "int": "int64",
    "float": "float64",
    "bool": "boolean",
    "list<string>": "array<string>",
}
