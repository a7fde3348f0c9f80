"""Benchmark: time and peak memory of `pophealth synth` at scale.

Run:  uv run python benchmarks/bench_synth.py [--patients 1000000] [--seed 42]

Prints the machine, the wall time, the peak resident memory (this process and its
children, from getrusage) and the rows written per table. The issue's bar is 1 M
patients in ≤ 60 s and ≤ 4 GiB on a 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path


def _machine() -> str:
    mem = ""
    try:
        with open("/proc/meminfo") as fh:
            kib = int(fh.readline().split()[1])
        mem = f", {kib / 1024**2:.0f} GiB RAM"
    except OSError:
        pass
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{platform.machine()}, {cpus} cores{mem}, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=None, help="store directory (default: temp)")
    args = parser.parse_args()

    t_import = time.perf_counter()
    from pophealth.synth import write_synthetic_store

    import_s = time.perf_counter() - t_import
    tmp = None
    out = args.out
    if out is None:
        tmp = tempfile.mkdtemp(prefix="pophealth-bench-")
        out = Path(tmp) / "store"
    try:
        start = time.perf_counter()
        store = write_synthetic_store(out, patients=args.patients, seed=args.seed)
        wall = time.perf_counter() - start
        peak_kib = max(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
        )
        size = sum(p.stat().st_size for p in store.snapshot_dir.glob("*.parquet"))
        print(f"machine      : {_machine()}")
        print(f"patients     : {args.patients:,} (seed {args.seed})")
        print(f"import       : {import_s:.1f} s")
        print(f"wall time    : {wall:.1f} s  (target ≤ 60 s at 1 M)")
        print(f"peak RSS     : {peak_kib / 1024**2:.2f} GiB  (target ≤ 4 GiB at 1 M)")
        print(f"store size   : {size / 1024**2:.0f} MiB of Parquet")
        print(f"rate         : {args.patients / wall:,.0f} patients/s")
        print("rows per table:")
        for name, rows in store.row_counts().items():
            print(f"  {name:<24}{rows:>14,}")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
