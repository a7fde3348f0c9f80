"""Benchmark: QRISK3-2017 over 1 million synthetic patients (target <= 2 s on 2 cores).

Run: ``uv run python benchmarks/bench_qrisk3.py [n_patients]``. Inputs are random but
seeded; the numbers printed are throughput, not clinical results.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pandas as pd

from pophealth.scores.qrisk3 import QRISK3_DISCLAIMER, QRISK3_FLAGS, qrisk3

TARGET_SECONDS_PER_MILLION = 2.0


def synthetic_patients(n: int, seed: int = 42) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cols = {
        "sex": rng.choice(np.array(["female", "male"], dtype=object), n),
        "age": rng.integers(25, 85, n),
        "bmi": rng.normal(27, 5, n).clip(15, 60),
        "ethnicity": rng.integers(1, 10, n),
        "smoking": rng.integers(0, 5, n),
        "chol_hdl_ratio": rng.normal(4, 1.2, n).clip(1, 12),
        "sbp": rng.normal(130, 18, n).clip(70, 240),
        "sbp_sd": rng.gamma(2, 4, n),
        "townsend": rng.normal(0, 3, n),
    }
    for flag in QRISK3_FLAGS:
        cols[flag] = (rng.random(n) < 0.08).astype(np.int8)
    return pd.DataFrame(cols)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    patients = synthetic_patients(n)
    qrisk3(patients.head(1000))  # warm-up (table load, imports)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        result = qrisk3(patients)
        times.append(time.perf_counter() - start)
    best = min(times)
    per_million = best / n * 1_000_000
    scored = int(result["qrisk3"].notna().sum())
    print(f"QRISK3-2017: {n:,} patients ({scored:,} scored) best of 3: {best:.3f} s")
    print(f"throughput: {n / best:,.0f} patients/s")
    ratio = per_million / TARGET_SECONDS_PER_MILLION
    print(
        f"seconds per million: {per_million:.3f} "
        f"(target {TARGET_SECONDS_PER_MILLION:.1f}; ratio to target {ratio:.2f})"
    )
    print(f"median risk {result['qrisk3'].median():.1f}% (synthetic inputs)")
    print(QRISK3_DISCLAIMER)


if __name__ == "__main__":
    main()
