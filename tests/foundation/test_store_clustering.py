"""Coded tables are stored clustered by code: sorted by their cluster keys (then every
other column) in small row groups, whatever order and chunking the rows arrive in, so a
query for a code list reads only the row groups whose code range can hold its codes."""

from __future__ import annotations

import json

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pophealth.codelists import verhoeff_ok
from pophealth.schema import TABLES, arrow_schema
from pophealth.store import CLUSTERED_ROW_GROUP_ROWS, Store, StoreError
from tests.spec.conftest import arrow_table

N = 300_000  # a few row groups
#: 60 SNOMED-CT-shaped codes (valid check digits), all six digits: text order is number order
CODES = [
    next(f"{base}{d}" for d in "0123456789" if verhoeff_ok(f"{base}{d}"))
    for base in range(10_000, 10_060)
]


def _events(n: int = N, seed: int = 1, systems=("snomedct", "ctv3", "loinc")) -> pa.Table:
    rng = np.random.default_rng(seed)
    codes = np.array(CODES)
    systems = np.array(systems)
    value = rng.normal(120, 15, n)
    return pa.table(
        {
            "patient_id": pa.array([f"p{i}" for i in rng.integers(0, 20_000, n)]),
            "date": pa.array(rng.integers(15_000, 20_000, n).astype("int32"), pa.date32()),
            "datetime": pa.nulls(n, pa.timestamp("us")),
            "system": pa.array(systems[rng.integers(0, len(systems), n)]),
            "code": pa.array(codes[rng.integers(0, len(codes), n)]),
            "value": pa.array(np.where(rng.random(n) < 0.3, np.nan, value), from_pandas=True),
            "unit": pa.array(np.where(rng.random(n) < 0.5, "mm[Hg]", None).tolist(), pa.string()),
        }
    )


def patients_of(events: pa.Table) -> pa.Table:
    """A patients table (the spec suite's defaults) for every patient in ``events``."""
    ids = sorted(set(events["patient_id"].to_pylist()))
    return arrow_table("patients", [{"patient_id": p} for p in ids])


def _write(path, data) -> Store:
    return Store.open_or_new(path).write({"events": data}, provenance={"source": "test"})


def _in_one_order(t: pa.Table) -> pa.Table:
    return t.sort_by([(c, "ascending") for c in t.column_names])


def test_events_are_stored_sorted_by_system_code_date_in_small_row_groups(tmp_path):
    data = _events()
    store = _write(tmp_path / "s", data)
    path = store.table_path("events")
    stored = pq.read_table(path)
    assert stored.num_rows == N and stored.schema.equals(arrow_schema("events"))
    keys = list(zip(*(stored[c].to_pylist() for c in ("system", "code", "date")), strict=True))
    assert keys == sorted(keys), "rows are not in (system, code, date) order"
    # nothing lost, nothing added: the same rows as a multiset
    assert _in_one_order(stored).equals(_in_one_order(data.cast(arrow_schema("events"))))
    meta = pq.ParquetFile(path).metadata
    sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    assert max(sizes) == CLUSTERED_ROW_GROUP_ROWS and sum(sizes) == N
    assert all(s == CLUSTERED_ROW_GROUP_ROWS for s in sizes[:-1])


def _code_ranges(path) -> list[tuple[str, str]]:
    meta = pq.ParquetFile(path).metadata
    i = pq.read_schema(path).get_field_index("code")
    stats = [meta.row_group(g).column(i).statistics for g in range(meta.num_row_groups)]
    return [(s.min, s.max) for s in stats]


def test_a_code_lies_in_few_row_groups(tmp_path):
    """The point of clustering: a code's rows lie in one row group (two at a boundary),
    where in the file as it arrived every row group may hold it."""
    data = _events(systems=("snomedct",))
    store = _write(tmp_path / "s", data)
    arrived = tmp_path / "arrived.parquet"
    pq.write_table(data, arrived, row_group_size=CLUSTERED_ROW_GROUP_ROWS)
    clustered, unsorted = _code_ranges(store.table_path("events")), _code_ranges(arrived)
    assert len(clustered) == len(unsorted) == 3
    for code in (CODES[0], CODES[30], CODES[59]):
        assert len([r for r in clustered if r[0] <= code <= r[1]]) <= 2
        assert len([r for r in unsorted if r[0] <= code <= r[1]]) == 3


def test_the_file_does_not_depend_on_row_order_or_chunking(tmp_path):
    data = _events(40_000, seed=2)
    rng = np.random.default_rng(3)
    shuffled = data.take(pa.array(rng.permutation(data.num_rows)))
    chunks = [shuffled.slice(i, 7_000) for i in range(0, shuffled.num_rows, 7_000)]
    a = _write(tmp_path / "a", data).table_path("events").read_bytes()
    b = _write(tmp_path / "b", shuffled).table_path("events").read_bytes()
    c = _write(tmp_path / "c", iter(chunks)).table_path("events").read_bytes()
    assert a == b == c


def test_chunked_write_leaves_no_scratch_files(tmp_path):
    data = _events(20_000, seed=4)
    store = _write(tmp_path / "s", iter([data.slice(0, 5_000), data.slice(5_000)]))
    names = sorted(p.name for p in store.snapshot_dir.iterdir())
    assert names == sorted([f"{t}.parquet" for t in TABLES] + ["metadata.json"])
    assert store.row_counts()["events"] == 20_000
    assert json.loads((store.snapshot_dir / "metadata.json").read_text())["tables"]["events"] == {
        "rows": 20_000
    }


def test_a_bad_chunk_is_refused_and_the_store_is_unchanged(tmp_path):
    good = _events(1_000, seed=5)
    store = _write(tmp_path / "s", good)
    bad = good.drop_columns(["code"])
    with pytest.raises(StoreError, match="missing column"):
        store.write({"events": iter([good, bad])}, provenance={})
    again = Store.open(tmp_path / "s")
    assert again.snapshot == store.snapshot and again.row_counts()["events"] == 1_000
    assert [p.name for p in (tmp_path / "s" / "snapshots").iterdir()] == [store.snapshot]


def test_empty_coded_table(tmp_path):
    store = _write(tmp_path / "s", _events(0))
    assert store.row_counts()["events"] == 0
    assert pq.read_table(store.table_path("events")).num_rows == 0


def _rows_scanned(con, expr, profile) -> int:
    """Rows the Parquet scan of ``events`` returned when DuckDB ran ``expr``. (A list of
    several codes is a filter DuckDB checks against each row group's statistics, not
    row by row: the scan returns whole row groups — all of them when none can be
    skipped.)"""
    raw = con.con  # the DuckDB connection under Ibis
    raw.execute("PRAGMA enable_profiling = 'json'")
    raw.execute(f"PRAGMA profiling_output = '{profile}'")
    try:
        raw.execute(con.compile(expr)).fetchall()
    finally:
        raw.execute("PRAGMA disable_profiling")
    scans = []

    def walk(node):
        if "READ_PARQUET" in json.dumps(node.get("extra_info", "")) or "PARQUET" in str(
            node.get("operator_name", "")
        ):
            scans.append(node.get("operator_cardinality", 0))
        for child in node.get("children", []):
            walk(child)

    walk(json.loads(profile.read_text()))
    assert scans, "no Parquet scan in the profile"
    return max(scans)


def test_duckdb_skips_row_groups_for_a_code_list(tmp_path):
    """End to end: the compiled query of a code-list variable lets DuckDB skip most of a
    clustered table (rows its Parquet scan returns), and gives the same answer as on the
    same rows stored as they arrived."""
    import shutil

    from pophealth.codelists import Codelist
    from pophealth.query import Dataset, events, index_date, run_dataset

    data = _events(systems=("snomedct",))
    store = Store.open_or_new(tmp_path / "s").write(
        {"events": data, "patients": patients_of(data)}, provenance={"source": "test"}
    )
    shutil.copytree(tmp_path / "s", tmp_path / "u")
    unsorted = Store.open(tmp_path / "u")
    pq.write_table(
        data.cast(arrow_schema("events")),
        unsorted.table_path("events"),
        row_group_size=CLUSTERED_ROW_GROUP_ROWS,
    )
    ds = Dataset()
    ds.n = (
        events.matching(Codelist.of("snomedct", CODES[:2], name="x"))
        .on_or_before(index_date)
        .count_for_patient()
    )
    scanned, answers = {}, {}
    for name, s in (("clustered", store), ("unsorted", unsorted)):
        con = s.connect()  # the Ibis DuckDB backend itself
        expr = run_dataset(con, ds, index_date="2025-01-01", output="ibis")
        scanned[name] = _rows_scanned(con, expr, tmp_path / f"{name}.json")
        answers[name] = run_dataset(con, ds, index_date="2025-01-01")
    assert scanned["clustered"] <= 2 * CLUSTERED_ROW_GROUP_ROWS < scanned["unsorted"], scanned
    assert answers["clustered"].equals(answers["unsorted"])
    ref = duckdb.sql(
        f"SELECT count(*) FROM '{store.table_path('events')}' "
        f"WHERE system = 'snomedct' AND code IN ('{CODES[0]}', '{CODES[1]}') "
        "AND date <= DATE '2025-01-01'"
    ).fetchone()[0]
    assert int(answers["clustered"]["n"].sum()) == ref > 0


def test_a_sort_larger_than_its_memory_spills_and_gives_the_same_file(tmp_path, monkeypatch):
    """DuckDB sorts beyond the memory it is given by spilling to disk (inside the snapshot
    being written): the file is the same, and nothing is left behind."""
    import pophealth.store as store_module

    data = _events(1_000_000, seed=9)  # about 100 MB to sort
    chunks = [data.slice(0, 400_000), data.slice(400_000)]
    roomy = _write(tmp_path / "a", iter(chunks)).table_path("events").read_bytes()
    monkeypatch.setattr(store_module, "SORT_MEMORY", "64MB")
    store = _write(tmp_path / "b", iter(chunks))
    assert store.table_path("events").read_bytes() == roomy
    names = sorted(p.name for p in store.snapshot_dir.iterdir())
    assert names == sorted([f"{t}.parquet" for t in TABLES] + ["metadata.json"])
