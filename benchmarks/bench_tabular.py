"""CSV reader throughput (rows/s): ``read_delimited`` (numpy + pandas' C parser), the
careful one-row-at-a-time reader it falls back to, and ``pandas.read_csv`` as the floor.

Writes an events-shaped CSV (5 columns, seeded) unless given one, then reads it in chunks
with each reader and prints rows/s, sizes and the machine. ``--quoted`` puts a quoted
field on the second data line, so that the whole file takes the careful path.

    uv run python benchmarks/bench_tabular.py --rows 1000000
    uv run python benchmarks/bench_tabular.py --file /tmp/ingbench/in/events.csv
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pophealth.ingest.tabular import _read_delimited_careful, read_delimited


def _write(path: Path, rows: int, quoted: bool, gz: bool) -> None:
    rng = np.random.default_rng(42)
    ids = np.char.add("p", rng.integers(0, 100_000, rows).astype(str))
    days = pd.Timestamp("2015-01-01") + pd.to_timedelta(rng.integers(0, 3000, rows), "D")
    codes = rng.choice(["195967001", "271650006", "38341003", "44054006"], rows)
    values = np.round(rng.normal(130, 15, rows), 1).astype(str)
    values[rng.random(rows) < 0.3] = ""
    df = pd.DataFrame({"patient_id": ids, "date": days.strftime("%Y-%m-%d"), "system": "snomedct"})
    df["code"], df["value"] = codes, values
    if quoted:
        df.loc[1, "system"] = 'snomed "ct", v2'
    opener = gzip.open if gz else open
    with opener(path, "wt", newline="") as fh:
        df.to_csv(fh, index=False)


def _time(read, path: Path, chunk_rows: int) -> tuple[float, int]:
    t0 = time.perf_counter()
    n = 0
    for chunk in read(path, chunk_rows):
        n += len(chunk[0] if isinstance(chunk, tuple) else chunk)
    return time.perf_counter() - t0, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--file", type=Path, help="read this file instead of writing one")
    ap.add_argument("--chunk-rows", type=int, default=100_000)
    ap.add_argument("--quoted", action="store_true", help="a quoted field on line 3")
    ap.add_argument("--gz", action="store_true", help="write the file gzipped")
    ap.add_argument("--repeat", type=int, default=2, help="best of N runs")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.file
        if path is None:
            path = Path(tmp) / ("events.csv.gz" if args.gz else "events.csv")
            _write(path, args.rows, args.quoted, args.gz)
        print(
            f"file: {path} ({path.stat().st_size / 2**20:.1f} MiB), chunk_rows {args.chunk_rows}; "
            f"machine: {platform.machine()} {os.cpu_count()} cores, "
            f"Python {platform.python_version()}, pandas {pd.__version__}, "
            f"load average {os.getloadavg()[0]:.1f}"
        )
        readers = {
            "read_delimited (fast path)": read_delimited,
            "careful reader (csv module)": _read_delimited_careful,
            "pandas.read_csv(dtype=str)": lambda p, n: pd.read_csv(p, dtype=str, chunksize=n),
        }
        for name, read in readers.items():
            best, rows = min(_time(read, path, args.chunk_rows) for _ in range(args.repeat))
            print(f"{name:30s} {rows:>10,} rows {best:6.2f} s  {rows / best:>12,.0f} rows/s")


if __name__ == "__main__":
    main()
