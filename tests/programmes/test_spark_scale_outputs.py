"""`pophealth run` on DuckDB and on Spark writes the same files, byte for byte.

The programmes' own DuckDB-vs-Spark tests compare the result frames (dtypes aside); this
compares what a user receives: every aggregate CSV and every patient-level worklist the
command writes, as bytes (a count written as ``12`` by one engine and ``12.0`` by the
other, or rows in another order, would fail here). The population programme had no
Spark comparison at all. At 200,000 synthetic patients the same held for all three
programmes (docs/programmes/population.md, "Spark at 200,000 patients")."""

from __future__ import annotations

from pathlib import Path

import pytest

from pophealth.synth import write_synthetic_store

PATIENTS, SEED = 2_500, 42


@pytest.fixture(scope="module")
def store_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("spark-scale") / "store"
    write_synthetic_store(path, patients=PATIENTS, seed=SEED)
    return path


def _run(programme: str, store: Path, out: Path, engine: str) -> dict[str, bytes]:
    from typer.testing import CliRunner

    from pophealth.cli import app

    args = ["run", programme, "--store", str(store), "--out", str(out), "--engine", engine]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return {
        str(f.relative_to(out)): f.read_bytes()
        for kind in ("aggregate", "patient-level")
        for f in sorted((out / kind).rglob("*.csv"))
    }


@pytest.mark.slow
@pytest.mark.spark
@pytest.mark.parametrize("programme", ["population", "asthma"])
def test_run_writes_identical_files_on_duckdb_and_spark(programme, store_path, tmp_path):
    duck = _run(programme, store_path, tmp_path / "duckdb", "duckdb")
    spark = _run(programme, store_path, tmp_path / "spark", "spark")
    assert any(name.startswith(f"aggregate/{programme}/") for name in duck)
    assert sorted(duck) == sorted(spark)
    differ = [name for name in duck if duck[name] != spark[name]]
    assert not differ, f"files that differ between DuckDB and Spark: {differ}"
