"""Throughput of pophealth.stats on 1 million groups (not a timed test: prints rates).

Run: ``uv run python benchmarks/bench_stats.py [--groups 1000000]``
Prints the machine (CPU count) and, for each statistic, seconds and groups per second.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import pandas as pd

from pophealth.stats import ESP2013, dsr, isratio, proportion, quantiles, rate


def _time(label: str, groups: int, fn) -> None:
    t0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t0
    assert len(out) >= 1
    print(f"{label:<44} {dt:8.2f} s   {groups / dt:>14,.0f} groups/s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--groups", type=int, default=1_000_000)
    parser.add_argument("--dsr-groups", type=int, default=None)
    args = parser.parse_args()
    g = args.groups
    dg = args.dsr_groups or g
    py = platform.python_version()
    print(f"machine: {platform.platform()}, {os.cpu_count()} cores, Python {py}")
    rng = np.random.default_rng(42)
    n = rng.integers(50, 50_000, g).astype(float)
    x = np.floor(n * rng.uniform(0, 0.3, g))
    _time(f"proportion, arrays ({g:,} groups)", g, lambda: proportion(x, n))
    _time(f"rate, arrays ({g:,} groups)", g, lambda: rate(x, n))
    keys = pd.DataFrame({"area": np.arange(g) // 2, "x": x, "n": n})
    _time(
        f"proportion, by= ({g // 2:,} groups of 2 rows)",
        g // 2,
        lambda: proportion("x", "n", data=keys, by="area"),
    )
    bands = len(ESP2013)
    dn = rng.integers(100, 5000, dg * bands).astype(float)
    dx = rng.poisson(dn * 0.01).astype(float)
    frame = pd.DataFrame(
        {"area": np.repeat(np.arange(dg), bands), "x": dx, "n": dn, "w": np.tile(ESP2013, dg)}
    )
    _time(
        f"dsr, ESP2013 ({dg:,} groups x 19 bands)",
        dg,
        lambda: dsr("x", "n", "w", data=frame, by="area"),
    )
    ref_x = rng.integers(100, 1000, bands).astype(float)
    ref_n = ref_x * 100
    _time(
        f"isratio ({dg:,} groups x 19 bands)",
        dg,
        lambda: isratio("x", "n", ref_x, ref_n, data=frame, by="area"),
    )
    areas = pd.DataFrame({"region": rng.integers(0, 50, g), "score": rng.uniform(0, 80, g)})
    _time(
        f"quantiles ({g:,} areas in 50 regions)",
        g,
        lambda: quantiles("score", data=areas, by="region"),
    )


if __name__ == "__main__":
    main()
