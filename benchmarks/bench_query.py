"""Benchmark: the query layer on the synthetic population.

Work: a cohort (registered, alive, adult) with 10 variables, plus 5 measures broken down by
IMD quintile × ethnicity (disclosure-controlled), done four ways:

* pophealth on DuckDB (target ≤ 30 s at 1 M patients on 2 cores), the dataset and the
  measures run on one connection (``connect(store)``) as the query guide shows — also
  timed on separate connections;
* the same work written directly in pandas (target: ≥ 10× slower than pophealth), on the
  store as it is (coded tables sorted by code) and on a copy of events and medications
  in patient order, pandas's best layout (both ratios printed);
* the same work hand-written as DuckDB SQL (target: no more than 2× faster than pophealth);
* pophealth on Spark (recorded; slower at this size — the point is that it agrees).

Then the 5 measures over 24 monthly intervals against one interval (target ≤ 2×): one
untimed round, then five alternating runs of each (``ROUNDS``), the best and the median
compared, CPU time beside; for context,
one interval whose 36-month windows read the same rows as the 24 monthly 12-month windows
(the cost of the intervals apart from the extra rows they read); the same two on 1,000
patients, where the engine's work is close to nothing, to split each time into the part
that grows with the data and the part that does not; each of the 5 measures alone, 24
months against one interval (best of two after an untimed round); and the same broken
down by 10-year age band (best of two each).
Every way's results are checked against pophealth DuckDB's.

Run::

    uv run python benchmarks/bench_query.py [--patients 1000000] [--store DIR]
        [--engines duckdb,spark] [--skip-pandas]

Makes the synthetic store (seed 42) unless ``--store`` already holds one.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from pophealth import disclosure
from pophealth.query import (
    Dataset,
    Measures,
    addresses,
    codelist,
    connect,
    events,
    index_date,
    medications,
    monthly,
    patients,
    registrations,
    run_dataset,
    run_measures,
    yearly,
)
from pophealth.store import Store

INDEX = dt.date(2026, 3, 31)  # pophealth.synth.EXTRACT_DATE
ONE_YEAR = yearly("2025-04-01", 1)  # 1 Apr 2025 .. 31 Mar 2026: ends on INDEX
MONTHS_24 = monthly("2024-04-01", 24)  # Apr 2024 .. Mar 2026
GROUPS = ["imd_quintile", "ethnicity"]
MEASURES = ["bp_recorded", "bp_controlled", "saba_ge6", "statin", "asthma_review"]
ROUNDS = 5  # timed runs of 24 months and of one interval each, after one untimed round


# -- pophealth ---------------------------------------------------------------------------


def definitions(months: int = 12):
    """The dataset and a maker of the measures; ``months``: the look-back of the windows
    (12; 36 for one interval reading as far back as 24 monthly intervals do)."""
    htn = codelist("hypertension_diagnosis")
    sbp_codes, dbp_codes = codelist("systolic_bp"), codelist("diastolic_bp")
    asthma_codes, review = codelist("asthma_diagnosis"), codelist("asthma_review")
    saba, statins = codelist("saba_inhalers"), codelist("statins")

    age = patients.age_on(index_date)
    hypertensive = events.matching(htn).on_or_before(index_date).exists_for_patient()
    asthma = events.matching(asthma_codes).on_or_before(index_date).exists_for_patient()
    sbp = events.matching(sbp_codes).in_last(months=months).last_day_for_patient(rule="min").value
    dbp = events.matching(dbp_codes).in_last(months=months).last_day_for_patient(rule="min").value
    saba_12m = medications.matching(saba).in_last(months=months).count_for_patient()
    statin_12m = medications.matching(statins).in_last(months=months).exists_for_patient()
    reviewed = events.matching(review).in_last(months=months).exists_for_patient()
    cohort = (
        registrations.registered_on(index_date) & patients.is_alive_on(index_date) & (age >= 18)
    )
    imd = addresses.area_on(index_date).group("imd_quintile")

    ds = Dataset()
    ds.define_population(cohort)
    ds.age = age
    ds.sex = patients.sex
    ds.ethnicity = patients.ethnicity_group
    ds.imd_quintile = imd
    ds.hypertension = hypertensive
    ds.asthma = asthma
    ds.sbp = sbp
    ds.dbp = dbp
    ds.saba_12m = saba_12m
    ds.statin_12m = statin_12m

    def measures(intervals, group_by=None, only=None):
        """The 5 measures over ``intervals`` (``only``: the one measure of that name)."""
        m = Measures(intervals=intervals)
        if group_by is None:
            group_by = {"imd_quintile": imd, "ethnicity": patients.ethnicity_group}
        m.define_defaults(group_by=group_by)
        wanted = {
            "bp_recorded": (sbp.is_not_null(), cohort & hypertensive),
            "bp_controlled": ((sbp < 140) & (dbp < 90), cohort & hypertensive),
            "saba_ge6": (saba_12m >= 6, cohort & asthma),
            "statin": (statin_12m, cohort & hypertensive & (age >= 40)),
            "asthma_review": (reviewed, cohort & asthma),
        }
        if only is not None and only not in wanted:
            raise ValueError(f"no measure {only!r}: one of {sorted(wanted)}")
        for name, (numerator, denominator) in wanted.items():
            if only is None or name == only:
                m.define_measure(name, numerator=numerator, denominator=denominator)
        return m

    return ds, measures


def run_pophealth(store: Store, engine: str, intervals=ONE_YEAR, *, shared: bool = True):
    """The dataset, then the measures. ``shared``: on one connection, as the query guide
    shows (the dataset told of the measures, which then read its per-patient values);
    otherwise each run opens its own."""
    ds, measures = definitions()
    m = measures(intervals)
    if shared:
        con = connect(store, engine)
        data = run_dataset(con, ds, engine=engine, index_date=INDEX, output="arrow", measures=m)
        return data, run_measures(con, m, engine=engine)
    data = run_dataset(store, ds, engine=engine, index_date=INDEX, output="arrow")
    return data, run_measures(store, m, engine=engine)


# -- hand-written DuckDB SQL --------------------------------------------------------------


def _in(codes) -> str:
    return ", ".join(f"'{c}'" for c in sorted(codes))


def run_sql(store: Store):
    def cl(name):
        return codelist(name).codes_in(codelist(name).system)

    p = {
        t: str(store.table_path(t))
        for t in ("patients", "registrations", "addresses", "areas", "events", "medications")
    }
    registers = cl("hypertension_diagnosis") | cl("asthma_diagnosis") | cl("asthma_review")
    idx = f"DATE '{INDEX}'"
    start12 = f"({idx} - INTERVAL 12 MONTH)"
    sql = f"""
    WITH reg AS (SELECT DISTINCT patient_id FROM '{p["registrations"]}'
                 WHERE start_date <= {idx} AND (end_date IS NULL OR end_date >= {idx})),
    pat AS (SELECT patient_id, sex, ethnicity_5,
                   date_diff('year', date_of_birth, {idx})
                     - CASE WHEN month({idx}) * 100 + day({idx})
                                 < month(date_of_birth) * 100 + day(date_of_birth)
                            THEN 1 ELSE 0 END AS age
            FROM '{p["patients"]}'
            WHERE date_of_birth <= {idx} AND (date_of_death IS NULL OR date_of_death > {idx})),
    addr AS (SELECT patient_id, lsoa_code FROM (
               SELECT patient_id, lsoa_code, row_number() OVER (PARTITION BY patient_id
                 ORDER BY start_date DESC NULLS LAST, lsoa_code DESC NULLS LAST) AS rn
               FROM '{p["addresses"]}'
               WHERE start_date <= {idx} AND (end_date IS NULL OR end_date >= {idx}))
             WHERE rn = 1),
    ev AS (SELECT patient_id,
             bool_or(code IN ({_in(cl("hypertension_diagnosis"))}) AND date <= {idx}) AS htn,
             bool_or(code IN ({_in(cl("asthma_diagnosis"))}) AND date <= {idx}) AS asthma,
             bool_or(code IN ({_in(cl("asthma_review"))}) AND date > {start12}
                     AND date <= {idx}) AS reviewed
           FROM '{p["events"]}'
           WHERE system = 'snomedct' AND code IN ({_in(registers)})
           GROUP BY patient_id),
    bpday AS (SELECT patient_id, code IN ({_in(cl("systolic_bp"))}) AS is_sbp, date,
                     min(value) AS v
              FROM '{p["events"]}'
              WHERE system = 'snomedct'
                AND code IN ({_in(cl("systolic_bp") | cl("diastolic_bp"))})
                AND date > {start12} AND date <= {idx}
              GROUP BY ALL),
    bp AS (SELECT patient_id, arg_max(v, date) FILTER (WHERE is_sbp) AS sbp,
                  arg_max(v, date) FILTER (WHERE NOT is_sbp) AS dbp
           FROM bpday GROUP BY patient_id),
    meds AS (SELECT patient_id,
               count(*) FILTER (WHERE code IN ({_in(cl("saba_inhalers"))})) AS saba_12m,
               count(*) FILTER (WHERE code IN ({_in(cl("statins"))})) > 0 AS statin_12m
             FROM '{p["medications"]}'
             WHERE system = 'dmd' AND date > {start12} AND date <= {idx}
             GROUP BY patient_id)
    SELECT pat.patient_id, age, sex, ethnicity_5 AS ethnicity,
           coalesce(CAST(areas.imd_quintile AS VARCHAR), 'unknown') AS imd_quintile,
           coalesce(htn, false) AS hypertension, coalesce(asthma, false) AS asthma,
           sbp, dbp, coalesce(saba_12m, 0) AS saba_12m, coalesce(statin_12m, false) AS statin_12m,
           coalesce(reviewed, false) AS reviewed
    FROM pat JOIN reg USING (patient_id)
    LEFT JOIN addr USING (patient_id)
    LEFT JOIN '{p["areas"]}' AS areas ON areas.lsoa_code = addr.lsoa_code
    LEFT JOIN ev USING (patient_id) LEFT JOIN bp USING (patient_id)
    LEFT JOIN meds USING (patient_id)
    WHERE age >= 18
    """
    con = duckdb.connect()
    con.execute(f"CREATE TEMP TABLE cohort AS {sql}")
    rel = con.sql("SELECT * EXCLUDE (reviewed) FROM cohort ORDER BY patient_id")
    data = rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.arrow()
    counts = con.sql(
        """
        SELECT 'bp_recorded' AS measure, imd_quintile, ethnicity,
               count(*) FILTER (WHERE sbp IS NOT NULL) AS numerator, count(*) AS denominator
          FROM cohort WHERE hypertension GROUP BY ALL
        UNION ALL
        SELECT 'bp_controlled', imd_quintile, ethnicity,
               count(*) FILTER (WHERE sbp < 140 AND dbp < 90), count(*)
          FROM cohort WHERE hypertension GROUP BY ALL
        UNION ALL
        SELECT 'saba_ge6', imd_quintile, ethnicity, count(*) FILTER (WHERE saba_12m >= 6),
               count(*) FROM cohort WHERE asthma GROUP BY ALL
        UNION ALL
        SELECT 'statin', imd_quintile, ethnicity, count(*) FILTER (WHERE statin_12m), count(*)
          FROM cohort WHERE hypertension AND age >= 40 GROUP BY ALL
        UNION ALL
        SELECT 'asthma_review', imd_quintile, ethnicity, count(*) FILTER (WHERE reviewed),
               count(*) FROM cohort WHERE asthma GROUP BY ALL
        """
    ).df()
    return data, _release(counts)


# -- pandas --------------------------------------------------------------------------------


def run_pandas(store: Store):
    def cl(name):
        return list(codelist(name).codes_in(codelist(name).system))

    idx = pd.Timestamp(INDEX)
    start12 = pd.Timestamp(INDEX - pd.DateOffset(months=12))
    read = lambda t, cols: pd.read_parquet(store.table_path(t), columns=cols)  # noqa: E731

    pat = read("patients", ["patient_id", "date_of_birth", "sex", "ethnicity_5", "date_of_death"])
    dob = pd.to_datetime(pat["date_of_birth"])
    dod = pd.to_datetime(pat["date_of_death"])
    pat = pat[(dob <= idx) & (dod.isna() | (dod > idx))].copy()
    dob = pd.to_datetime(pat["date_of_birth"])
    before = (idx.month * 100 + idx.day) < (dob.dt.month * 100 + dob.dt.day)
    pat["age"] = idx.year - dob.dt.year - before.astype(int)

    reg = read("registrations", ["patient_id", "start_date", "end_date"])
    rs, re_ = pd.to_datetime(reg["start_date"]), pd.to_datetime(reg["end_date"])
    registered = set(reg.loc[(rs <= idx) & (re_.isna() | (re_ >= idx)), "patient_id"])
    pat = pat[pat["patient_id"].isin(registered) & (pat["age"] >= 18)]

    addr = read("addresses", ["patient_id", "start_date", "end_date", "lsoa_code"])
    s_, e_ = pd.to_datetime(addr["start_date"]), pd.to_datetime(addr["end_date"])
    addr = addr[(s_ <= idx) & (e_.isna() | (e_ >= idx))]
    addr = addr.sort_values(["patient_id", "start_date", "lsoa_code"], na_position="first")
    addr = addr.drop_duplicates("patient_id", keep="last")
    areas = read("areas", ["lsoa_code", "imd_quintile"])
    addr = addr.merge(areas, on="lsoa_code", how="left")

    ev = read("events", ["patient_id", "date", "system", "code", "value"])
    ev = ev[ev["system"] == "snomedct"]
    ev["date"] = pd.to_datetime(ev["date"])
    upto = ev[ev["date"] <= idx]
    in12 = ev[(ev["date"] > start12) & (ev["date"] <= idx)]
    htn = set(upto.loc[upto["code"].isin(cl("hypertension_diagnosis")), "patient_id"])
    asthma = set(upto.loc[upto["code"].isin(cl("asthma_diagnosis")), "patient_id"])
    reviewed = set(in12.loc[in12["code"].isin(cl("asthma_review")), "patient_id"])

    def last_day_min(codes):
        x = in12[in12["code"].isin(codes)]
        per_day = x.groupby(["patient_id", "date"], as_index=False)["value"].min()
        per_day = per_day.sort_values(["patient_id", "date"])
        return per_day.drop_duplicates("patient_id", keep="last").set_index("patient_id")["value"]

    sbp, dbp = last_day_min(cl("systolic_bp")), last_day_min(cl("diastolic_bp"))

    med = read("medications", ["patient_id", "date", "system", "code"])
    med["date"] = pd.to_datetime(med["date"])
    med = med[(med["system"] == "dmd") & (med["date"] > start12) & (med["date"] <= idx)]
    saba = med[med["code"].isin(cl("saba_inhalers"))].groupby("patient_id").size()
    statin = set(med.loc[med["code"].isin(cl("statins")), "patient_id"])

    out = pd.DataFrame({"patient_id": pat["patient_id"].to_numpy()})
    out["age"] = pat["age"].to_numpy()
    out["sex"] = pat["sex"].to_numpy()
    out["ethnicity"] = pat["ethnicity_5"].to_numpy()
    q = out["patient_id"].map(addr.set_index("patient_id")["imd_quintile"]).astype("Int64")
    out["imd_quintile"] = q.astype("string").fillna("unknown").astype(object)
    out["hypertension"] = out["patient_id"].isin(htn)
    out["asthma"] = out["patient_id"].isin(asthma)
    out["sbp"] = out["patient_id"].map(sbp)
    out["dbp"] = out["patient_id"].map(dbp)
    out["saba_12m"] = out["patient_id"].map(saba).fillna(0).astype(int)
    out["statin_12m"] = out["patient_id"].isin(statin)
    out = out.sort_values("patient_id").reset_index(drop=True)
    reviewed_flag = out["patient_id"].isin(reviewed)

    rows = []
    specs = {
        "bp_recorded": (out["hypertension"], out["sbp"].notna()),
        "bp_controlled": (out["hypertension"], (out["sbp"] < 140) & (out["dbp"] < 90)),
        "saba_ge6": (out["asthma"], out["saba_12m"] >= 6),
        "statin": (out["hypertension"] & (out["age"] >= 40), out["statin_12m"]),
        "asthma_review": (out["asthma"], reviewed_flag),
    }
    for name, (den, num) in specs.items():
        g = pd.DataFrame(
            {
                "imd_quintile": out["imd_quintile"],
                "ethnicity": out["ethnicity"],
                "numerator": (num & den).astype(int),
                "denominator": den.astype(int),
            }
        )
        g = g[den].groupby(GROUPS, as_index=False)[["numerator", "denominator"]].sum()
        g.insert(0, "measure", name)
        rows.append(g)
    return out, _release(pd.concat(rows, ignore_index=True))


class PatientOrdered:
    """The store's tables as pandas reads them, with the coded tables the benchmark reads
    (events, medications) rewritten in patient order — the layout pandas does best on."""

    def __init__(self, store: Store):
        self.store = store
        self.dir = Path(tempfile.mkdtemp(prefix="bench_query_patient_order_"))
        con = duckdb.connect()
        for t in ("events", "medications"):
            con.execute(
                f"COPY (SELECT * FROM '{store.table_path(t)}' ORDER BY patient_id, date) "
                f"TO '{self.dir / t}.parquet' (FORMAT parquet, COMPRESSION zstd)"
            )
        con.close()

    def table_path(self, name: str) -> Path:
        if name in ("events", "medications"):
            return self.dir / f"{name}.parquet"
        return self.store.table_path(name)

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _release(counts: pd.DataFrame) -> pd.DataFrame:
    parts = []
    for _, g in counts.groupby("measure", sort=False):
        g = g.sort_values(GROUPS).reset_index(drop=True)
        parts.append(
            disclosure.release_proportions(g, "numerator", "denominator", by=GROUPS, margins=GROUPS)
        )
    return pd.concat(parts, ignore_index=True)


# -- comparison ----------------------------------------------------------------------------


def _key(table: pd.DataFrame) -> pd.DataFrame:
    cols = ["measure", *GROUPS, "numerator", "denominator"]
    return table[cols].sort_values(cols[:3]).reset_index(drop=True)


def _check(name: str, data, table, ref_data, ref_table) -> None:
    a = data.to_pandas() if hasattr(data, "to_pandas") else data
    b = ref_data.to_pandas() if hasattr(ref_data, "to_pandas") else ref_data
    a = a.sort_values("patient_id").reset_index(drop=True)
    b = b.sort_values("patient_id").reset_index(drop=True)
    problems = []
    if len(a) != len(b):
        problems.append(f"{len(a)} patients vs {len(b)}")
    else:
        for col in b.columns:
            x, y = a[col].to_numpy(), b[col].to_numpy()
            if b[col].dtype.kind == "f" or a[col].dtype.kind == "f":
                same = np.allclose(
                    pd.to_numeric(a[col], errors="coerce").to_numpy(dtype=float),
                    pd.to_numeric(b[col], errors="coerce").to_numpy(dtype=float),
                    equal_nan=True,
                )
            else:
                same = bool((pd.Series(x).astype(str) == pd.Series(y).astype(str)).all())
            if not same:
                problems.append(f"column {col} differs")
    ta, tb = _key(table), _key(ref_table)
    if not ta.equals(tb) and not np.allclose(
        ta[["numerator", "denominator"]].to_numpy(dtype=float),
        tb[["numerator", "denominator"]].to_numpy(dtype=float),
        equal_nan=True,
    ):
        problems.append("measure counts differ")
    print(f"  {name}: {'agrees with pophealth/duckdb' if not problems else '; '.join(problems)}")


def timed(fn, *args, **kw):
    t = time.perf_counter()
    out = fn(*args, **kw)
    return time.perf_counter() - t, out


def best_of(n: int, fn, *args, **kw) -> float:
    """The shortest wall time of ``n`` runs of ``fn``."""
    return min(timed(fn, *args, **kw)[0] for _ in range(n))


def timed_cpu(fn, *args, **kw):
    """Wall and CPU time (this process and its threads: DuckDB runs in-process)."""
    w, c = time.perf_counter(), time.process_time()
    out = fn(*args, **kw)
    return time.perf_counter() - w, time.process_time() - c, out


def machine() -> str:
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return (
        f"{platform.machine()} {platform.processor() or ''}".strip()
        + f", {os.cpu_count()} cores{mem}, Python {platform.python_version()}, "
        f"DuckDB {duckdb.__version__}, pandas {pd.__version__}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=1_000_000)
    ap.add_argument("--store", type=Path, default=None)
    ap.add_argument("--engines", default="duckdb,spark")
    ap.add_argument("--skip-pandas", action="store_true")
    args = ap.parse_args()

    path = args.store or Path(tempfile.mkdtemp()) / "store"
    if Store.is_store(path):
        store = Store.open(path)
    else:
        from pophealth.synth import write_synthetic_store

        t, store = timed(write_synthetic_store, path, patients=args.patients, seed=42)
        print(f"synthetic store: {args.patients:,} patients (seed 42) in {t:.1f} s")
    print(f"machine: {machine()}")
    counts = store.row_counts()
    print("rows: " + ", ".join(f"{k} {v:,}" for k, v in counts.items() if v))
    print("work: cohort + 10 variables + 5 measures by IMD quintile x ethnicity\n")

    t_dd, (data, table) = timed(run_pophealth, store, "duckdb")
    print(
        f"pophealth / DuckDB      {t_dd:8.2f} s  ({len(data):,} patients, {len(table)} "
        f"measure rows)  target <= 30 s: {'PASS' if t_dd <= 30 else 'FAIL'}"
    )
    t_dd2, c_dd, _ = timed_cpu(run_pophealth, store, "duckdb")
    print(f"pophealth / DuckDB (2nd){t_dd2:8.2f} s  (CPU {c_dd:.2f} s)")
    t_dd = min(t_dd, t_dd2)
    t_sep, (sep_data, sep_table) = timed(run_pophealth, store, "duckdb", shared=False)
    print(f"  (dataset and measures on separate connections: {t_sep:.2f} s)")
    _check("separate connections", sep_data, sep_table, data, table)

    t_sql, (sql_data, sql_table) = timed(run_sql, store)
    t_sql2, c_sql, _ = timed_cpu(run_sql, store)  # best of two, as for pophealth
    print(f"hand-written SQL (1st)  {t_sql:8.2f} s  (2nd: {t_sql2:.2f} s, CPU {c_sql:.2f} s)")
    t_sql = min(t_sql, t_sql2)
    ratio = t_dd / t_sql
    print(
        f"hand-written DuckDB SQL {t_sql:8.2f} s  pophealth/SQL = {ratio:.2f}x  "
        f"target <= 2x: {'PASS' if ratio <= 2 else 'FAIL'}"
    )
    _check("SQL", sql_data, sql_table, data, table)

    if not args.skip_pandas:
        t_pd, c_pd, (pd_data, pd_table) = timed_cpu(run_pandas, store)
        t_pd2, _, _ = timed_cpu(run_pandas, store)  # best of two, as for the others
        print(f"pandas (1st)            {t_pd:8.2f} s  (2nd: {t_pd2:.2f} s, CPU {c_pd:.2f} s)")
        t_pd = min(t_pd, t_pd2)
        ratio = t_pd / t_dd
        print(
            f"pandas                  {t_pd:8.2f} s  pandas/pophealth = {ratio:.1f}x  "
            f"target >= 10x: {'PASS' if ratio >= 10 else 'FAIL'}"
        )
        print(f"  (pandas/hand-written SQL = {t_pd / t_sql:.1f}x)")
        _check("pandas", pd_data, pd_table, data, table)
        # The store keeps coded tables sorted by code, which suits pophealth; pandas's
        # per-patient group-bys prefer rows in patient order. Its time on that layout too,
        # so the ratio is also shown against pandas at its best.
        other = PatientOrdered(store)
        try:
            t_po, (po_data, po_table) = timed(run_pandas, other)
            t_po = min(t_po, timed(run_pandas, other)[0])
        finally:
            other.remove()
        print(
            f"pandas, rows in patient order {t_po:.2f} s  (best layout for pandas: "
            f"pandas/pophealth = {min(t_pd, t_po) / t_dd:.1f}x)"
        )
        _check("pandas, patient order", po_data, po_table, data, table)

    # 24 monthly intervals against one, each run on a fresh connection, alternating: one
    # round untimed, then ROUNDS timed: wall time on a shared 2-core machine moves by tens
    # of per cent between runs, so the best and the median of each are compared (and CPU
    # time printed beside)
    _, measures = definitions()
    runs: dict[str, list[tuple[float, float]]] = {"1": [], "24": []}
    table24 = None
    for r in range(ROUNDS + 1):
        for name, ivs in (("1", ONE_YEAR), ("24", MONTHS_24)):
            wall, cpu, out = timed_cpu(run_measures, store, measures(ivs), engine="duckdb")
            if r > 0:
                runs[name].append((wall, cpu))
            if name == "24":
                table24 = out
    best = {k: min(w for w, _ in v) for k, v in runs.items()}
    median = {k: statistics.median(w for w, _ in v) for k, v in runs.items()}
    cpu = {k: statistics.median(c for _, c in v) for k, v in runs.items()}
    ratio, ratio_median = best["24"] / best["1"], median["24"] / median["1"]
    how = sorted(set(table24.attrs["evaluation"].values()))
    print(
        f"\n5 measures, 1 interval  {best['1']:8.2f} s best, {median['1']:.2f} s median of {ROUNDS}"
        f"  (CPU {cpu['1']:.2f} s)"
    )
    print(
        f"5 measures, 24 months   {best['24']:8.2f} s best, {median['24']:.2f} s median of {ROUNDS}"
        f"  (CPU {cpu['24']:.2f} s; {len(table24)} rows; by {', '.join(how)})"
    )
    print(
        f"  24/1 = {ratio:.2f}x best, {ratio_median:.2f}x median, "
        f"{cpu['24'] / cpu['1']:.2f}x CPU  target <= 2x: {'PASS' if ratio <= 2 else 'FAIL'}"
    )
    last = table24[table24["interval_end"] == INDEX]
    same = _key(last).equals(_key(table)) or np.allclose(
        _key(last)[["numerator", "denominator"]].to_numpy(dtype=float),
        _key(table)[["numerator", "denominator"]].to_numpy(dtype=float),
        equal_nan=True,
    )
    print(f"  last of 24 intervals equals the single interval: {same}")
    # 24 monthly 12-month windows reach back 35 months before the last end: one interval
    # with 36-month windows reads the same rows, so this ratio is the cost of the
    # intervals themselves, apart from the extra data they read (context, not the target)
    _, measures36 = definitions(months=36)
    span = best_of(3, run_measures, store, measures36(ONE_YEAR), engine="duckdb")
    print(
        f"  1 interval, 36-month windows (the rows 24 months read): {span:.2f} s best; "
        f"24 months / that = {best['24'] / span:.2f}x"
    )
    # each measure on its own ("a measure over 24 monthly intervals"), alternating as above
    # in fewer rounds: which of the five the ratio of the five together comes from
    alone = []
    for name in MEASURES:
        each: dict[str, list[float]] = {"1": [], "24": []}
        for r in range(3):
            for k, ivs in (("1", ONE_YEAR), ("24", MONTHS_24)):
                wall = timed(run_measures, store, measures(ivs, only=name), engine="duckdb")[0]
                if r > 0:
                    each[k].append(wall)
        b1, b24 = min(each["1"]), min(each["24"])
        alone.append(b24 / b1)
        print(
            f"  {name} alone: 1 interval {b1:.2f} s, 24 months {b24:.2f} s (best of 2): "
            f"24/1 = {b24 / b1:.2f}x"
        )
    print(f"  measures alone within 2x: {sum(x <= 2 for x in alone)} of {len(alone)}")
    # the same on 1,000 patients, where the engine's own work is close to nothing: what is
    # left of each time is the part that does not grow with the data (Python, Ibis, query
    # planning), and the rest is the part that does (context, not the target)
    from pophealth.synth import write_synthetic_store

    tiny_dir = Path(tempfile.mkdtemp(prefix="bench_query_1000_"))
    try:
        tiny = write_synthetic_store(tiny_dir / "store", patients=1000, seed=42)
        fixed = {"1": [], "24": []}
        for _ in range(3):
            for name, ivs in (("1", ONE_YEAR), ("24", MONTHS_24)):
                fixed[name].append(timed(run_measures, tiny, measures(ivs), engine="duckdb")[0])
    finally:
        shutil.rmtree(tiny_dir, ignore_errors=True)
    f1, f24 = min(fixed["1"]), min(fixed["24"])
    grows1, grows24 = best["1"] - f1, best["24"] - f24
    print(
        f"  on 1,000 patients (engine work near nothing): 1 interval {f1:.2f} s, 24 months "
        f"{f24:.2f} s; the part that grows with the data: {grows1:.2f} s and {grows24:.2f} s "
        f"= {grows24 / grows1:.2f}x"
    )

    # the same measures broken down by 10-year age band: the band changes on birthdays
    by_band = {"age_band": patients.age_band_on(index_date)}
    band: dict[str, float] = {}
    for name, ivs in (("1", ONE_YEAR), ("24", MONTHS_24)):
        times = []
        for _ in range(2):
            wall, _, out = timed_cpu(run_measures, store, measures(ivs, by_band), engine="duckdb")
            times.append(wall)
        band[name] = min(times)
    how = sorted(set(out.attrs["evaluation"].values()))
    band["36"] = best_of(2, run_measures, store, measures36(ONE_YEAR, by_band), engine="duckdb")
    print(
        f"by 10-year age band      1 interval {band['1']:.2f} s, 24 months {band['24']:.2f} s "
        f"(best of 2; by {', '.join(how)}): 24/1 = {band['24'] / band['1']:.2f}x; "
        f"1 interval with 36-month windows {band['36']:.2f} s: "
        f"24 months / that = {band['24'] / band['36']:.2f}x"
    )

    if "spark" in args.engines.split(","):
        t_sp, (sp_data, sp_table) = timed(run_pophealth, store, "spark")
        print(f"\npophealth / Spark       {t_sp:8.2f} s  (local[2]; {t_sp / t_dd:.1f}x DuckDB)")
        _check("Spark", sp_data, sp_table, data, table)
        t_sp24, sp24 = timed(run_measures, store, measures(MONTHS_24), engine="spark")
        agree = _key(sp24).equals(_key(table24))
        print(
            f"Spark 5 measures x 24   {t_sp24:8.2f} s  (by "
            f"{', '.join(sorted(set(sp24.attrs['evaluation'].values())))}; "
            f"{'agrees with' if agree else 'DIFFERS from'} DuckDB)"
        )


if __name__ == "__main__":
    main()
