"""Benchmark: the whole CVD programme on a synthetic population, stage by stage.

Run: ``uv run python benchmarks/bench_cvd.py [n_patients] [engine] [store_dir]``
(defaults: 100,000 patients, duckdb, a temporary store). Makes the synthetic store
(seed 42) unless ``store_dir`` already holds one, then times: the extraction (engine),
the rules (QRISK3 inputs and score, BP groups, lipids, AF), the worklist, the equity
views and practice table, the monthly BP control series, and the report objects.
Prints the machine, sizes and seconds; no pass/fail.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from pophealth.programmes.cvd import CvdAnalysis, build_result
from pophealth.programmes.cvd.codelists import curated_codelists
from pophealth.programmes.cvd.config import DEFAULT_CONFIG
from pophealth.programmes.cvd.extract import cvd_records
from pophealth.programmes.cvd.indicators import counts_by_group, equity_views, practice_table
from pophealth.programmes.cvd.rules import apply_all
from pophealth.programmes.cvd.trend import bp_control_by_month, released_monthly
from pophealth.programmes.cvd.worklist import worklist
from pophealth.store import Store
from pophealth.synth import write_synthetic_store

INDEX = dt.date(2026, 3, 31)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    engine = sys.argv[2] if len(sys.argv) > 2 else "duckdb"
    path = Path(sys.argv[3]) if len(sys.argv) > 3 else Path(tempfile.mkdtemp()) / "store"
    if Store.is_store(path):
        store = Store.open(path)
    else:
        t = time.perf_counter()
        store = write_synthetic_store(path, patients=n, seed=42)
        print(f"synthetic store: {n:,} patients in {time.perf_counter() - t:.1f} s")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; engine {engine}; rows: {store.row_counts()}"
    )
    times: dict[str, float] = {}

    def timed(name, fn):
        t = time.perf_counter()
        out = fn()
        times[name] = time.perf_counter() - t
        return out

    cl = curated_codelists()
    backend = timed("connect", lambda: store.connect(engine))
    records = timed("extract (engine)", lambda: cvd_records(backend, INDEX, cl))
    patients = timed("rules (QRISK3, BP, lipids, AF)", lambda: apply_all(records, INDEX))
    wl = timed("worklist", lambda: worklist(patients))
    counts = timed("indicator counts", lambda: counts_by_group(patients))
    views = timed("equity views (disclosure, SII)", lambda: equity_views(counts))
    practices = timed("practice table", lambda: practice_table(patients))
    monthly = timed(
        "monthly BP control (24 months, engine)",
        lambda: released_monthly(bp_control_by_month(backend, INDEX, cl, months=24)),
    )
    analysis = CvdAnalysis(
        index_date=INDEX,
        config=DEFAULT_CONFIG,
        patients=patients,
        worklist=wl,
        counts=counts,
        views=views,
        practices=practices,
        monthly=monthly,
        missing_codelists=cl.missing(),
    )
    timed("report objects", lambda: build_result(analysis, engine=engine))
    total = sum(v for k, v in times.items() if k != "connect")
    print(f"adults in the population: {len(patients):,}; worklist rows: {len(wl):,}")
    for k, v in times.items():
        print(f"  {k:<42} {v:8.2f} s")
    print(f"  {'total (without connect)':<42} {total:8.2f} s")


if __name__ == "__main__":
    main()
