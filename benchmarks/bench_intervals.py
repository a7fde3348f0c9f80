"""Measures over 24 monthly intervals against one interval: change points with and without
predicate abstraction of runs (``Timeline.merge_runs``), wall and CPU time, back to back.

    uv run python benchmarks/bench_intervals.py --store /tmp/qbench1m --repeat 3

The store is one written by ``bench_query.py`` (synthetic, seed 42); the measures are its
5 measures by IMD quintile x ethnicity. CPU is ``time.process_time()`` of this process
(Python and all of DuckDB's threads). Prints the number of evaluation points (patient x
change point rows) each way and checks that both ways give the same counts.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_query import MONTHS_24, ONE_YEAR, definitions, machine  # noqa: E402

from pophealth.query import run_measures  # noqa: E402
from pophealth.query.timeline import Timeline  # noqa: E402
from pophealth.store import Store  # noqa: E402


def timed(fn, *args, **kw):
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args, **kw)
    return time.perf_counter() - w0, time.process_time() - c0, out


def points(store: Store, measures) -> int:
    """Rows of the evaluation table (one per candidate patient and change point, in a
    denominator or group) over the 24 months."""
    seen = []
    original = Timeline.counts

    def counting(self, variables, keep):
        wide = original(self, variables, keep)
        seen.append(int(wide.count().execute()))
        return wide

    Timeline.counts = counting
    try:
        run_measures(store, measures(MONTHS_24), engine="duckdb")
    finally:
        Timeline.counts = original
    return sum(seen)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    store = Store.open(args.store)
    print(f"machine: {machine()}  load average now: {os.getloadavg()[0]:.1f}")
    print("rows: " + ", ".join(f"{k} {v:,}" for k, v in store.row_counts().items() if v))
    _, measures = definitions()

    for merge in (False, True):
        Timeline.merge_runs = merge
        print(f"evaluation points, merge_runs={merge}: {points(store, measures):,}")
    Timeline.merge_runs = True

    results = {}
    for r in range(args.repeat):
        line = []
        for label, merge, intervals in (
            ("1 interval", True, ONE_YEAR),
            ("24 months, runs as computed", False, MONTHS_24),
            ("24 months, merged runs", True, MONTHS_24),
        ):
            Timeline.merge_runs = merge
            wall, cpu, table = timed(run_measures, store, measures(intervals), engine="duckdb")
            results.setdefault(label, []).append((wall, cpu))
            if intervals is MONTHS_24:
                results.setdefault(f"table {merge}", table)
            line.append(f"{label}: {wall:.2f} s wall / {cpu:.2f} s CPU")
        print(f"run {r + 1}: " + "; ".join(line), flush=True)
    Timeline.merge_runs = True

    a, b = results["table False"], results["table True"]
    key = list(a.columns[:-2])
    same = (
        a.sort_values(key).reset_index(drop=True).equals(b.sort_values(key).reset_index(drop=True))
        if len(a) == len(b)
        else False
    )
    print(f"merged and unmerged runs give the same {len(b)} rows: {same}")
    one = results["1 interval"]
    for label in ("24 months, runs as computed", "24 months, merged runs"):
        xs = results[label]
        print(
            f"{label}: 24/1 wall {min(w for w, _ in xs) / min(w for w, _ in one):.2f}x "
            f"(best of {len(xs)}), CPU {min(c for _, c in xs) / min(c for _, c in one):.2f}x"
        )


if __name__ == "__main__":
    main()
