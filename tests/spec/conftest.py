"""Spec-test helpers: tiny input tables in the test, a rule, the expected per-patient
output — every test runs on DuckDB and on Spark (one shared local Spark session).

``run(engine, tmp_path, tables, variables, population=..., index_date=...)`` writes the
tables to a fresh store (unnamed tables empty; required columns not given get the
defaults below) and returns ``{patient_id: {variable: value}}`` with missing values as
``None``.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import itertools
import math
import re
from typing import Any

import pyarrow as pa
import pytest

from pophealth.query import Dataset, run_dataset
from pophealth.schema import arrow_schema
from pophealth.store import Store

INDEX = dt.date(2025, 3, 31)

DEFAULTS: dict[str, dict[str, Any]] = {
    "patients": {
        "date_of_birth": dt.date(1980, 1, 1),
        "sex": "unknown",
        "ethnicity_5": "unknown",
        "ethnicity_16": "Z",
    },
    "events": {"system": "snomedct"},
    "medications": {"system": "dmd"},
    "addresses": {"care_home": False},
    "areas": {"imd_release": "synthetic", "core20": False},
    "admissions": {"admission_method": "emergency"},
    "operations": {"operation_id": "op1", "system": "opcs4"},
}

HAVE_SPARK = importlib.util.find_spec("pyspark") is not None
ENGINES = [
    pytest.param("duckdb"),
    pytest.param(
        "spark",
        marks=[
            pytest.mark.spark,
            pytest.mark.skipif(not HAVE_SPARK, reason="pyspark not installed"),
        ],
    ),
]


@pytest.fixture(params=ENGINES)
def engine(request) -> str:
    return request.param


def cumulative_round5(counts: list) -> list:
    """A standardised rate's band counts rounded to 5 as a released rate is worked from
    them (docs/query.md, "Age-standardised rates"): cumulatively, youngest band first, each
    band the rounded sum up to it less the rounded sum before it (by hand, for the tests)."""
    sums = [math.floor(v / 5 + 0.5) * 5 for v in itertools.accumulate(counts)]
    return [b - a for a, b in zip([0, *sums], sums, strict=False)]


def arrow_table(name: str, rows: list[dict[str, Any]]) -> pa.Table:
    schema = arrow_schema(name)
    defaults = DEFAULTS.get(name, {})
    for row in rows:
        unknown = set(row) - set(schema.names)
        if unknown:
            raise KeyError(f"{name} has no column(s) {sorted(unknown)}")
    cols = {f.name: [row.get(f.name, defaults.get(f.name)) for row in rows] for f in schema}
    return pa.table(cols, schema=schema)


def make_store(tmp_path, tables: dict[str, list[dict[str, Any]]]) -> Store:
    tables = dict(tables)
    if "patients" not in tables:  # every patient mentioned anywhere exists
        ids = sorted(
            {r["patient_id"] for rows in tables.values() for r in rows if "patient_id" in r}
        )
        tables["patients"] = [{"patient_id": p} for p in ids]
    arrow = {name: arrow_table(name, rows) for name, rows in tables.items()}
    return Store.open_or_new(tmp_path / "store").write(arrow, provenance={"source": "spec test"})


#: LSOAs of the small address tables: two ordinary homes' and two care homes' areas
FLAT, FLAT2, HOME, HOME2 = "E01000001", "E01000002", "E01000005", "E01000009"


def address_row(pid: str, start, end=None, lsoa: str = FLAT, care_home: bool = False) -> dict:
    """A row of ``addresses``: a home from ``start`` to ``end`` (open when None)."""
    return {
        "patient_id": pid,
        "start_date": start,
        "end_date": end,
        "lsoa_code": lsoa,
        "care_home": care_home,
    }


def care_home_row(pid: str, start, end=None, lsoa: str = HOME) -> dict:
    """A row of ``addresses`` that is a care home."""
    return address_row(pid, start, end, lsoa, care_home=True)


def admission_row(pid: str, day, method: str = "emergency", discharge=None) -> dict:
    """A row of ``admissions`` on ``day`` (``discharge`` None: not discharged yet)."""
    return {
        "patient_id": pid,
        "admission_date": day,
        "discharge_date": discharge,
        "admission_method": method,
    }


def _clean(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item") and not isinstance(value, dt.date):
        value = value.item()
    if hasattr(value, "to_pydatetime"):
        value = value.to_pydatetime()
    if isinstance(value, dt.datetime):
        value = value.date()
    if value is not None and type(value).__name__ == "NaTType":
        return None
    return value


def run(
    engine: str,
    tmp_path,
    tables: dict[str, list[dict[str, Any]]],
    variables: dict[str, Any],
    *,
    population: Any = None,
    index_date: dt.date = INDEX,
) -> dict[str, dict[str, Any]]:
    store = make_store(tmp_path, tables)
    ds = Dataset()
    if population is not None:
        ds.define_population(population)
    for name, value in variables.items():
        ds.add(name, value)
    table = run_dataset(store, ds, engine=engine, index_date=index_date, output="arrow")
    out: dict[str, dict[str, Any]] = {}
    for row in table.to_pylist():
        pid = row.pop("patient_id")
        out[pid] = {k: _clean(v) for k, v in row.items()}
    return out


@pytest.fixture(autouse=True)
def _small_spark(request):
    """Tiny tables: one shuffle partition per stage keeps each Spark query quick."""
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and callspec.params.get("engine") == "spark":
        from pophealth.engines import spark_session

        spark_session().conf.set("spark.sql.shuffle.partitions", "1")
    yield


#: Audits across many features (each feature also has its own spec tests on both engines):
#: their Spark half runs with the slow tests, which CI runs after the default run, so every
#: test still runs on both engines in CI while the default run stays short.
SPARK_HALF_SLOW = frozenset(
    {
        "test_analyst_second_week_spec.py",
        "test_care_home_audit20.py",
        "test_new_features_audit18.py",
        "test_roadmap_fit16.py",
        "test_roadmap_fit19.py",
        "test_vocabulary_audit12.py",
    }
)


#: Differential checks whose Spark half also runs with the slow tests: many intervals in one
#: run against each interval alone (each feature keeps its other tests on both engines in
#: the default run), and the longest Spark runs of the intervals' own tests and of the
#: periods' (`during`, person-time by address: their day-by-day checks and compositions).
SPARK_HALF_SLOW_TESTS = re.compile(
    r"equals?_each(_interval)?_alone"
    r"|^test_runs_merge_where_predicates_do_not_change"
    r"|^test_values_flip_on_and_off_and_counts_cross_a_threshold"
    r"|^test_during_composes_with_other_filters_aggregates_and_itself"
    r"|^test_rows_kept_on_care_home_days_follow_the_address_on_each_day"
    r"|^test_a_datetime_counts_by_its_day_and_a_missing_date_is_not_kept"
    r"|^test_each_day_agrees_with_address_on_that_day"
    r"|^test_care_home_days_follow_the_address_on_each_day"
)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is None or callspec.params.get("engine") != "spark":
            continue
        name = getattr(item, "originalname", item.name)
        if item.path.name in SPARK_HALF_SLOW or SPARK_HALF_SLOW_TESTS.search(name):
            item.add_marker(pytest.mark.slow)
