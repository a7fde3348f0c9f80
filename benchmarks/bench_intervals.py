"""Measures over 24 monthly intervals against one interval, each way back to back: interval
masks (the default), change points with and without predicate abstraction of runs
(``Timeline.use_masks``, ``Timeline.merge_runs``); wall and CPU time.

    uv run python benchmarks/bench_intervals.py --store /tmp/qbench1m --repeat 3 [--weeks 52]

The store is one written by ``bench_query.py`` (synthetic, seed 42); the measures are its
5 measures by IMD quintile x ethnicity. CPU is ``time.process_time()`` of this process
(Python and all of DuckDB's threads). Prints the number of evaluation points (patient x
change point rows) of the change-point ways and checks that every way gives the same counts.
``--weeks N`` also times the measures over the N weeks to the same end (masks up to 62
intervals, change points past that), against one interval.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_query import INDEX, MONTHS_24, ONE_YEAR, definitions, machine  # noqa: E402

from pophealth.query import run_measures, weekly  # noqa: E402
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
    ap.add_argument("--weeks", type=int, default=0, help="also time N weekly intervals")
    args = ap.parse_args()
    store = Store.open(args.store)
    print(f"machine: {machine()}  load average now: {os.getloadavg()[0]:.1f}")
    print("rows: " + ", ".join(f"{k} {v:,}" for k, v in store.row_counts().items() if v))
    _, measures = definitions()

    Timeline.use_masks = False
    for merge in (False, True):
        Timeline.merge_runs = merge
        print(f"evaluation points, merge_runs={merge}: {points(store, measures):,}")
    Timeline.merge_runs, Timeline.use_masks = True, True

    ways = (
        ("1 interval", True, True, ONE_YEAR),
        ("24 months, change points, runs as computed", False, False, MONTHS_24),
        ("24 months, change points, merged runs", False, True, MONTHS_24),
        ("24 months, masks", True, True, MONTHS_24),
    )
    results = {}
    try:
        for r in range(args.repeat):
            line = []
            for label, masks, merge, intervals in ways:
                Timeline.use_masks, Timeline.merge_runs = masks, merge
                wall, cpu, table = timed(run_measures, store, measures(intervals), engine="duckdb")
                results.setdefault(label, []).append((wall, cpu))
                if intervals is MONTHS_24:
                    results.setdefault(f"table {label}", table)
                line.append(f"{label}: {wall:.2f} s wall / {cpu:.2f} s CPU")
            print(f"run {r + 1}: " + "; ".join(line), flush=True)
    finally:
        Timeline.merge_runs, Timeline.use_masks = True, True

    tables = [results[f"table {label}"] for label, *_ in ways[1:]]
    key = list(tables[0].columns[:-2])

    def rows(t):
        return t.sort_values(key).reset_index(drop=True)

    same = all(len(t) == len(tables[0]) and rows(t).equals(rows(tables[0])) for t in tables)
    print(f"every way gives the same {len(tables[0])} rows: {same}")
    one = results["1 interval"]
    for label, *_ in ways[1:]:
        xs = results[label]
        print(
            f"{label}: 24/1 wall {min(w for w, _ in xs) / min(w for w, _ in one):.2f}x "
            f"(best of {len(xs)}), CPU {min(c for _, c in xs) / min(c for _, c in one):.2f}x"
        )

    if args.weeks:
        start = INDEX - dt.timedelta(days=7 * args.weeks - 1)
        weeks = weekly(start, args.weeks)
        times = []
        for _ in range(args.repeat):
            wall, cpu, table = timed(run_measures, store, measures(weeks), engine="duckdb")
            times.append((wall, cpu))
        how = ", ".join(sorted(set(table.attrs["evaluation"].values())))
        wall, cpu = min(w for w, _ in times), min(c for _, c in times)
        print(
            f"{args.weeks} weeks to {INDEX} (by {how}): {wall:.2f} s wall / {cpu:.2f} s CPU "
            f"(best of {len(times)}), {wall / min(w for w, _ in one):.2f}x one interval"
        )


if __name__ == "__main__":
    main()
