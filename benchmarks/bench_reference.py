"""Reference data: load time of every official file, build time of the areas table for
both IMD releases, and area linkage throughput (patients/s) for N synthetic patients.

Reads ../shared/data (or $POPHEALTH_SHARED_DATA). Prints wall and CPU seconds, sizes and
the machine.

    uv run python benchmarks/bench_reference.py --patients 1000000
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from pophealth.reference import loaders
from pophealth.reference.build import ReferenceWarning, build_areas, build_practices
from pophealth.reference.linkage import link_areas
from pophealth.reference.sources import SOURCES

DATA = Path(
    os.environ.get("POPHEALTH_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)

LOADERS = {
    "imd2019_file1": loaders.load_imd2019_file1,
    "imd2019_file2": loaders.load_imd2019_file2,
    "imd2019_file3": loaders.load_imd2019_file3,
    "imd2019_file6": loaders.load_imd2019_file6,
    "imd2019_file8": loaders.load_imd2019_file8,
    "imd2019_file9": loaders.load_imd2019_file9,
    "air_quality": loaders.load_air_quality,
    "imd2025": loaders.load_imd2025,
    "fuel_poverty": loaders.load_fuel_poverty,
    "fuel_poverty_xlsx": loaders.load_fuel_poverty,
    "population_lsoa11": loaders.load_population_lsoa11,
    "census_ts021": loaders.load_census_ethnicity,
    "esp2013": loaders.load_esp2013,
    "lsoa11_lsoa21": loaders.load_lsoa11_lsoa21_lookup,
    "lsoa11_msoa11": loaders.load_lsoa11_msoa11,
    "msoa11_msoa21": loaders.load_msoa11_msoa21,
    "lsoa11_subicb": loaders.load_lsoa11_subicb,
    "lsoa21_subicb": loaders.load_lsoa21_subicb,
    "lsoa21_lad": loaders.load_lsoa21_lad,
    "ruc11": loaders.load_ruc11,
    "ruc21": loaders.load_ruc21,
    "boundaries_lsoa11": loaders.load_boundaries,
    "epraccur": loaders.load_epraccur,
    "epcn": loaders.load_epcn_members,
    "epcn_xlsx": loaders.load_epcn_members,
    "subicb_icb": loaders.load_subicb_icb,
}


def timed(fn, *args, **kwargs):
    w, c = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - w, time.process_time() - c


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"reference files not found at {DATA} (set POPHEALTH_SHARED_DATA)")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB; "
        f"python {platform.python_version()}; data {DATA}"
    )
    print(f"\n{'file':<20} {'MB':>7} {'rows':>8} {'wall s':>7} {'cpu s':>7}")
    for src in SOURCES:
        path = src.find(DATA)
        if path is None or src.key not in LOADERS:
            continue
        out, wall, cpu = timed(LOADERS[src.key], path)
        rows = len(out["features"]) if isinstance(out, dict) else len(out)
        mb = path.stat().st_size / 1e6
        print(f"{src.key:<20} {mb:>7.1f} {rows:>8,} {wall:>7.2f} {cpu:>7.2f}")

    print()
    areas = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReferenceWarning)
        for imd in ("2019", "2025"):
            (built, _), wall, cpu = timed(build_areas, DATA, imd)
            print(f"build areas IoD{imd}: {len(built):,} LSOAs in {wall:.1f} s ({cpu:.1f} s CPU)")
            areas = built if imd == "2019" else areas
        (prac, _), wall, cpu = timed(build_practices, DATA)
        print(f"build practices: {len(prac):,} in {wall:.2f} s ({cpu:.2f} s CPU)")

    rng = np.random.default_rng(args.seed)
    codes = areas["lsoa_code"].to_numpy(dtype=object)
    picked = codes[rng.integers(0, len(codes), args.patients)]
    unknown = rng.random(args.patients) < 0.03  # 3 % ungeocoded or out of England
    picked[unknown] = None
    frame = pd.DataFrame({"patient_id": np.arange(args.patients), "lsoa_code": picked})
    (_, rep), wall, cpu = timed(link_areas, frame, areas)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"\nlink_areas: {args.patients:,} patients x {len(areas.columns) - 1} attributes in "
        f"{wall:.2f} s ({args.patients / wall:,.0f} patients/s, {cpu:.2f} s CPU); "
        f"unknown {rep.unknown:,}; peak RSS {peak:,.0f} MiB"
    )


if __name__ == "__main__":
    main()
