"""An adversary's audit of everything a run hands out: every aggregate CSV and every number
in report.html, checked mechanically against the one disclosure-control rule
(:mod:`pophealth.disclosure`, default policy).

The rule, as the code and docs/statistics.md state it: a count of 1-7 is withheld, 0 is
released as 0, every other count is rounded to the nearest 5 (so a released count is 0 or
a multiple of 5 of at least 10); percentages, rates and their intervals are recomputed from
the released counts. Here that is checked from the outside, by reading the files a user gets
(``pophealth demo`` on a small synthetic population, and ``pophealth run`` on a store of one
patient with no conditions):

* every numeric column of every aggregate CSV is either a count (checked against the rule),
  a key, a reference figure, or a value derived from counts (recomputed here with
  independent formulas: Wilson score interval, PROGRAMMES.md §12.1, checked against the
  PHEindicatormethods test vector 20/100 → 13.337-28.883; exact Poisson / Byar, §12.2;
  Newcombe's hybrid score interval, Newcombe 1998 method 10);
* the same count is never released twice with different values;
* every table in the report equals its CSV, every chart's counts obey the rule and every
  percentage it draws is a ratio of released counts; headline counts obey the rule;
* the report says what the code does about zeros;
* every CSV, aggregate or patient-level, keeps its header when it has no rows, and a run
  with nobody on any register writes the same files with the same columns as a full run.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import chi2, norm
from typer.testing import CliRunner

from pophealth.cli import app
from pophealth.disclosure import DEFAULT_POLICY
from tests.conftest import DEMO_PATIENTS, DEMO_SEED

#: The demo on a small population, and on a tiny one (registers of 1-7 patients, whole
#: tables withheld, SPC series with gaps).
RUNS = ((DEMO_PATIENTS, DEMO_SEED), (50, 3))
runner = CliRunner()

#: Columns holding released counts (of patients or of rows).
COUNTS = {
    "numerator", "denominator", "patients", "attacks", "on_register", "present", "derived",
    "imputed", "missing", "patients_with_results_set_aside",
    "patients_with_results_converted_from_mg_dl",
}  # fmt: skip
#: Numeric columns that are labels, not numbers about patients.
KEYS = {"imd_quintile", "group", "pollution_quintile", "month"}
#: Published reference figures (not from the data).
REFERENCE = {"england_qof_2023_24_pct"}
#: Values derived from released counts (each recomputed below where its inputs are published).
DERIVED = {
    "value", "lower95_0cl", "upper95_0cl", "lower99_8cl", "upper99_8cl", "rest_value",
    "difference", "difference_lower95_0cl", "difference_upper95_0cl", "most_deprived_value",
    "least_deprived_value", "absolute_gap", "absolute_gap_lower95_0cl",
    "absolute_gap_upper95_0cl", "relative_gap", "relative_gap_lower95_0cl",
    "relative_gap_upper95_0cl", "sii", "rii", "intercept", "r_squared", "sii_lower95_0cl",
    "sii_upper95_0cl", "rii_lower95_0cl", "rii_upper95_0cl", "sii_lower99_8cl",
    "sii_upper99_8cl", "rii_lower99_8cl", "rii_upper99_8cl", "quintile_gap_1_vs_5",
}  # fmt: skip


# -- the rule, and independent formulas ------------------------------------------------------


def released(value: float) -> bool:
    """A count as the rule releases it: withheld (missing), 0, or a multiple of 5 above 7."""
    if pd.isna(value):
        return True
    return value == 0 or (value > DEFAULT_POLICY.suppress_at_or_below and value % 5 == 0)


def wilson(x: float, n: float, confidence: float) -> tuple[float, float]:
    """Wilson score limits (PROGRAMMES.md §12.1), written out here from the formula."""
    z = norm.ppf(1 - (1 - confidence) / 2)
    root = z * math.sqrt(z * z + 4 * x * (1 - x / n))
    return (2 * x + z * z - root) / (2 * (n + z * z)), (2 * x + z * z + root) / (2 * (n + z * z))


def poisson_limits(x: float, confidence: float = 0.95) -> tuple[float, float]:
    """Exact limits below 10 events, Byar's from 10 (PROGRAMMES.md §12.2)."""
    a = 1 - confidence
    if x < 10:
        lower = chi2.ppf(a / 2, 2 * x) / 2 if x > 0 else 0.0
        return lower, chi2.ppf(1 - a / 2, 2 * x + 2) / 2
    z = norm.ppf(1 - a / 2)
    lower = x * (1 - 1 / (9 * x) - z / (3 * math.sqrt(x))) ** 3
    upper = (x + 1) * (1 - 1 / (9 * (x + 1)) + z / (3 * math.sqrt(x + 1))) ** 3
    return lower, upper


def newcombe(x1: float, n1: float, x2: float, n2: float) -> tuple[float, float, float]:
    """Difference of proportions with Newcombe's hybrid score interval (method 10)."""
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson(x1, n1, 0.95)
    l2, u2 = wilson(x2, n2, 0.95)
    d = p1 - p2
    return (
        d,
        d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2),
        d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2),
    )


def test_the_independent_formulas_reproduce_published_values():
    """PHEindicatormethods test vectors (PROGRAMMES.md §12.1-12.2)."""
    lo, hi = wilson(20, 100, 0.95)
    assert (round(lo, 5), round(hi, 5)) == (0.13337, 0.28883)
    lo, hi = wilson(20, 100, 0.998)
    assert (round(lo, 5), round(hi, 5)) == (0.10519, 0.34711)
    lo, hi = poisson_limits(65)
    assert (round(lo, 4), round(hi, 4)) == (50.1632, 82.8491)
    lo, hi = poisson_limits(5)  # exact: rate 5 per 100 → 1.6235-11.6683
    assert (round(lo, 4), round(hi, 4)) == (1.6235, 11.6683)


def close(a: float, b: float) -> bool:
    if pd.isna(a) or pd.isna(b):
        return pd.isna(a) and pd.isna(b)
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)


# -- the runs ----------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=RUNS, ids=[f"{n}-patients" for n, _ in RUNS])
def demo(tmp_path_factory, request) -> Path:
    patients, seed = request.param
    if (patients, seed) == (DEMO_PATIENTS, DEMO_SEED):
        # the session's demo run (tests/conftest.py), which other modules read too
        return request.getfixturevalue("demo_run").out
    out = tmp_path_factory.mktemp("audit12") / f"demo-{patients}"
    result = runner.invoke(
        app, ["demo", "--patients", str(patients), "--seed", str(seed), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    return out


def enough(out: Path, n: int) -> int:
    """How many checks a run must have made: ``n`` on the larger population (so a check that
    found nothing to check fails), 0 on the tiny one, where most of it is withheld."""
    return n if out.name == f"demo-{RUNS[0][0]}" else 0


@pytest.fixture(scope="module")
def empty(tmp_path_factory) -> Path:
    """``pophealth run`` of every programme on a store of one registered patient with no
    condition: nobody on the asthma, hypertension, AF or CVD registers."""
    from pophealth.schema import TABLES, arrow_schema
    from pophealth.store import Store

    base = tmp_path_factory.mktemp("audit12-empty")
    rows = {
        "patients": [
            {"patient_id": "p1", "date_of_birth": dt.date(1980, 1, 1), "sex": "female",
             "ethnicity_5": "white", "ethnicity_16": "A"},
        ],
        "registrations": [
            {"patient_id": "p1", "practice_id": "P1", "start_date": dt.date(2000, 1, 1)},
        ],
    }  # fmt: skip
    import pyarrow as pa

    tables = {}
    for name in TABLES:
        schema = arrow_schema(name)
        data = rows.get(name, [])
        tables[name] = pa.table({f.name: [r.get(f.name) for r in data] for f in schema}, schema)
    Store.open_or_new(base / "store").write(tables, provenance={"source": "audit12"})
    out = base / "out"
    for programme in ("population", "asthma", "cvd"):
        result = runner.invoke(
            app,
            ["run", programme, "--store", str(base / "store"), "--out", str(out / programme),
             "--index-date", "2026-01-01"],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
    return out


def aggregates(out: Path) -> dict[str, pd.DataFrame]:
    return {
        f"{p.parent.name}/{p.stem}": pd.read_csv(p)
        for p in sorted((out / "aggregate").glob("*/*.csv"))
    }


# -- CSVs ----------------------------------------------------------------------------------------


def test_every_csv_keeps_its_header(demo, empty):
    for out in (demo, *sorted(p for p in empty.iterdir())):
        for path in sorted(out.rglob("*.csv")):
            first = path.read_text().split("\n", 1)[0]
            assert first.strip(), f"{path.relative_to(out)}: no header"


def test_an_empty_run_writes_the_same_files_with_the_same_columns(demo, empty):
    """With nobody on a register the outputs are there, header and all, as in a full run (a
    missing file would leave an earlier run's file of that name in place, unnoticed)."""
    full = {
        p.relative_to(demo).as_posix(): p.read_text().split("\n", 1)[0]
        for p in demo.rglob("aggregate/*/*.csv")
    }
    got = {}
    for programme in empty.iterdir():
        for p in programme.rglob("aggregate/*/*.csv"):
            got[p.relative_to(programme).as_posix()] = p.read_text().split("\n", 1)[0]
    assert sorted(got) == sorted(full)
    for name, header in full.items():
        assert got[name] == header, name


def test_every_numeric_column_is_a_count_a_key_or_derived(demo):
    for name, frame in aggregates(demo).items():
        for col in frame.columns:
            if pd.api.types.is_numeric_dtype(frame[col]) and frame[col].notna().any():
                assert col in COUNTS | KEYS | REFERENCE | DERIVED, f"{name}: column {col!r}"


def test_every_count_obeys_the_rule(demo, empty):
    checked = 0
    for out in (demo, *empty.iterdir()):
        for name, frame in aggregates(out).items():
            for col in COUNTS & set(frame.columns):
                bad = frame[col][~frame[col].map(released)]
                assert bad.empty, f"{name}.{col}: {bad.tolist()[:5]} not released by the rule"
                checked += frame[col].notna().sum()
    assert checked >= enough(demo, 1000)


def _proportion_tables(out: Path):
    for name, frame in aggregates(out).items():
        if {"numerator", "denominator", "value", "lower95_0cl"} <= set(frame.columns):
            yield name, frame


def test_percentages_and_intervals_are_recomputed_from_released_counts(demo):
    rows = 0
    for name, frame in _proportion_tables(demo):
        for i, r in frame.iterrows():
            x, n = r["numerator"], r["denominator"]
            where = f"{name} row {i + 2}"
            if pd.isna(x) or pd.isna(n) or n == 0:
                assert pd.isna(r["value"]) and pd.isna(r["lower95_0cl"]), where
                continue
            assert close(r["value"], 100 * x / n), where
            for level, lo, hi in ((0.95, "lower95_0cl", "upper95_0cl"),
                                  (0.998, "lower99_8cl", "upper99_8cl")):  # fmt: skip
                if lo in frame.columns:
                    expected = wilson(x, n, level)
                    assert close(r[lo], 100 * expected[0]), f"{where} {lo}"
                    assert close(r[hi], 100 * expected[1]), f"{where} {hi}"
            rows += 1
    assert rows >= enough(demo, 200)


def test_rest_of_population_and_differences_come_from_released_totals(demo):
    rows = 0
    for name, frame in _proportion_tables(demo):
        if "difference" not in frame.columns:
            continue
        keys = ["indicator", "breakdown"]
        totals = frame[frame["group"].astype(str) == "Total"].set_index(keys)
        for i, r in frame[frame["group"].astype(str) != "Total"].iterrows():
            t = totals.loc[tuple(r[keys])]
            rx, rn = t["numerator"] - r["numerator"], t["denominator"] - r["denominator"]
            if any(pd.isna(v) for v in (rx, rn, r["numerator"], r["denominator"])) or rn <= 0:
                assert pd.isna(r["difference"]), f"{name} row {i + 2}"
                continue
            if r["denominator"] == 0 or rx < 0 or rx > rn:
                continue
            d, lo, hi = newcombe(r["numerator"], r["denominator"], rx, rn)
            assert close(r["difference"], 100 * d), f"{name} row {i + 2}"
            if "rest_value" in frame.columns:
                assert close(r["rest_value"], 100 * rx / rn), f"{name} row {i + 2}"
            if "difference_lower95_0cl" in frame.columns:
                assert close(r["difference_lower95_0cl"], 100 * lo), f"{name} row {i + 2}"
                assert close(r["difference_upper95_0cl"], 100 * hi), f"{name} row {i + 2}"
            rows += 1
    assert rows >= enough(demo, 50)


def test_attack_rates_come_from_released_counts(demo):
    frame = aggregates(demo)["asthma/attacks_per_1000"]
    shown = 0
    for i, r in frame.iterrows():
        a, n = r["attacks"], r["patients"]
        if pd.isna(a) or pd.isna(n) or n == 0:
            assert pd.isna(r["value"]), f"row {i + 2}"
            continue
        lo, hi = poisson_limits(a)
        assert close(r["value"], 1000 * a / n), f"row {i + 2}"
        assert close(r["lower95_0cl"], 1000 * lo / n) and close(r["upper95_0cl"], 1000 * hi / n)
        shown += 1
    assert shown >= enough(demo, 3)


def test_gaps_come_from_the_released_quintiles(demo):
    tables = aggregates(demo)
    checked = 0
    for name, gap in tables.items():
        if not name.endswith("_gap"):
            continue
        equity = tables[name.replace("_gap", "_equity")]
        q = equity[equity["breakdown"] == "imd_quintile"].set_index(
            equity["group"].astype(str)[equity["breakdown"] == "imd_quintile"]
        )
        row = gap.iloc[0]
        for label, col in (("1", "most_deprived_value"), ("5", "least_deprived_value")):
            expected = q.loc[label, "value"] if label in q.index else np.nan
            assert close(row[col], expected), f"{name}: {col}"
            checked += pd.notna(expected)
        if pd.notna(row["absolute_gap"]):
            d, lo, hi = newcombe(*(q.loc[g, c] for g in ("1", "5")
                                   for c in ("numerator", "denominator")))  # fmt: skip
            assert close(row["absolute_gap"], 100 * d) and close(
                row["absolute_gap_lower95_0cl"], 100 * lo
            )
    assert checked >= enough(demo, 1)


def test_a_total_is_one_count_in_every_breakdown(demo):
    """A breakdown's Total is the same count in every breakdown of a measure: withheld in one
    (to protect a group that adds up to it) and released in another, it is not withheld."""
    checked = 0
    for name, frame in aggregates(demo).items():
        if not {"breakdown", "group", "numerator", "denominator"} <= set(frame.columns):
            continue
        keys = [c for c in ("indicator", "measure") if c in frame.columns]
        totals = frame[frame["group"].astype(str) == "Total"]
        for key, rows in totals.groupby(keys, dropna=False) if keys else [((), totals)]:
            for col in ("numerator", "denominator"):
                shown = dict(zip(rows["breakdown"], rows[col], strict=True))
                assert rows[col].nunique(dropna=False) == 1, f"{name} {key} {col}: {shown}"
                checked += 1
    assert checked >= enough(demo, 50)


def test_copies_of_one_total_are_withheld_together_and_known_to_be_equal():
    """By sex: 1 woman, 40 men, Total 41 (withheld earlier); by ethnicity: 20 and 21, Total
    41. Released as it was, the ethnicity Total gave back the sex Total, and 41 - 40 the one
    woman. The copies of the Total go together, and the audit, knowing them equal, withholds
    the men too (the sex Total stays 41 = 20 + 21, but 1 + 40 cannot be split)."""
    from pophealth.disclosure import secondary_suppression

    table = pd.DataFrame(
        {
            "breakdown": ["sex", "sex", "sex", "ethnicity", "ethnicity", "ethnicity"],
            "group": ["female", "male", "Total", "a", "b", "Total"],
            "n": [1, 40, 41, 20, 21, 41],
        }
    )
    withheld = np.array([True, False, True, False, False, False])
    # bounds as release_proportions audits numerators (withheld for a complement too)
    kwargs = dict(
        by=["breakdown", "group"], margins=["group"], total_label="Total",
        primary_bounds=(0, np.inf),
    )  # fmt: skip
    alone = secondary_suppression(table, "n", withheld, **kwargs)
    # the ethnicity Total and the men released: 41 - 40 = the one woman
    assert not alone[1] and not alone[5]
    tied = secondary_suppression(table, "n", withheld, same_total_across="breakdown", **kwargs)
    assert tied[2] and tied[5], "one Total, withheld in both breakdowns"
    assert tied[0] and tied[1], "women and men cannot be split"


def _small_register(seed: int, n: int) -> pd.DataFrame:
    """An evaluated asthma register of ``n`` patients (the columns the indicators read)."""
    r = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "imd_decile": r.integers(1, 11, n).astype(float),
            "ethnicity_5": r.choice(
                ["white", "asian", "black", "mixed", "other"], n, p=[0.8, 0.08, 0.06, 0.03, 0.03]
            ),
            "sex": r.choice(["female", "male", "unknown"], n, p=[0.5, 0.48, 0.02]),
            "age_band": r.choice(["5-16", "17-39", "40-64", "65+"], n),
            "pcn_name": r.choice(["A", "B", "C"], n),
            "pcn_id": "x",
            "practice_id": r.choice(["P1", "P2", "P3", "P4", "P5", "P6"], n),
            "no2_quintile": r.integers(1, 6, n).astype(float),
            "pm_quintile": r.integers(1, 6, n).astype(float),
            "is_tier_high": r.random(n) < r.uniform(0.05, 0.95),
        }
    )


@pytest.mark.parametrize(("seed", "n"), [(5, 53), (20, 33), (47, 27)])
def test_the_register_total_is_one_count_across_the_separately_released_breakdowns(seed, n):
    """PCN, practice and pollution quintile are released apart from the other breakdowns
    (for speed at scale); a small register's Total withheld in one was published in another
    (e.g. withheld by sex and age band, 20 by PCN and practice)."""
    from pophealth.programmes.asthma import outputs

    tier = [i for i in outputs.INDICATORS if i.name == "tier_high"]
    b = outputs.indicator_views(_small_register(seed, n), tier, sii_repetitions=1000)
    b = b["tier_high"].breakdowns
    totals = b[b["group"].astype(str) == "Total"]
    for col in ("numerator", "denominator"):
        shown = dict(zip(totals["breakdown"], totals[col], strict=True))
        assert totals[col].nunique(dropna=False) == 1, f"{col}: {shown}"
    if totals["numerator"].isna().all():  # the rest of the register gives the Total back
        groups = b[b["group"].astype(str) != "Total"]
        assert groups["rest_value"].isna().all() and groups["difference"].isna().all()


@pytest.mark.parametrize(
    ("seed", "n", "breakdown", "group"),
    [(176, 42, "imd_quintile", "Total"), (112, 35, "imd_quintile", "4")],
)
def test_the_register_size_is_one_count_in_every_asthma_table(seed, n, breakdown, group):
    """Each table's disclosure control runs on its own. A register of 42, withheld by the
    indicators to protect small groups, was shown as 40 by the attack rates; in a register
    of 35, the patients of IMD quintile 4 likewise. (Registers found by a search of seeds;
    the numerator audit's bounds, the audit's knowing that IMD deciles add up to
    quintiles, and its taking a cell that frees a pinned one, each changed which cells the
    ones found before withheld.)"""
    from pophealth.programmes.asthma import outputs

    frame = _small_register(seed, n)
    r = np.random.default_rng(seed)
    for col, mean in (("ocs_courses_12m", 0.3), ("ed_attendances_12m", 0.1),
                      ("admissions_12m", 0.05)):  # fmt: skip
        frame[col] = r.poisson(mean, len(frame))
    tier = [i for i in outputs.INDICATORS if i.name == "tier_high"]
    views = outputs.indicator_views(frame, tier, sii_repetitions=1000)
    attacks = outputs.attacks_rate(frame)
    b = views["tier_high"].breakdowns
    cell = b["group"].astype(str) == group
    if group != "Total":
        cell &= b["breakdown"] == breakdown
    assert b.loc[cell, "denominator"].isna().all()
    assert outputs.one_register_total(views, attacks, pd.DataFrame(), pd.DataFrame())
    row = (attacks["group"] == group) & ((attacks["breakdown"] == breakdown) | (group == "Total"))
    assert attacks.loc[row, "patients"].isna().all()
    assert attacks.loc[row, "value"].isna().all()
    assert attacks.loc[row, "disclosure_note"].str.contains("another table").all()


def test_a_gap_goes_when_its_quintile_is_withheld_in_another_table():
    """IMD quintile 1 released by the indicators but withheld in the pollution × deprivation
    margins: once withheld in both, the quintile 1 vs 5 gap computed from it goes too."""
    from pophealth.programmes.asthma import outputs

    frame = _small_register(7, 600)
    tier = [i for i in outputs.INDICATORS if i.name == "tier_high"]
    views = outputs.indicator_views(frame, tier, sii_repetitions=1000)
    gap = views["tier_high"].gap
    assert gap[["most_deprived_value", "absolute_gap"]].notna().all(axis=None)
    cross = pd.DataFrame(
        {"pollutant": ["no2"], "flag": ["is_tier_high"], "pollution_quintile": ["Total"],
         "imd_quintile": ["1"], "numerator": [np.nan], "denominator": [np.nan],
         "value": [np.nan], "disclosure_note": ["n secondary"]}
    )  # fmt: skip
    assert outputs.one_register_total(views, pd.DataFrame(), pd.DataFrame(), cross)
    b = views["tier_high"].breakdowns
    q1 = b[(b["breakdown"] == "imd_quintile") & (b["group"].astype(str) == "1")]
    assert q1[["numerator", "denominator", "value"]].isna().all(axis=None)
    gap = views["tier_high"].gap
    assert gap[["most_deprived_value", "absolute_gap", "relative_gap"]].isna().all(axis=None)
    assert gap["least_deprived_value"].notna().all()  # quintile 5 is still released


def test_the_register_by_group_is_one_count_across_the_asthma_tables(demo):
    t = aggregates(demo)
    ind, attacks = t["asthma/indicators"], t["asthma/attacks_per_1000"]
    ind = ind.assign(group=ind["group"].astype(str))
    attacks = attacks.assign(group=attacks["group"].astype(str))
    both = ind.merge(attacks, on=["breakdown", "group"], suffixes=("", "_attacks"))
    assert len(both) >= enough(demo, 100)
    same = (both["denominator"] == both["patients"]) | (
        both["denominator"].isna() & both["patients"].isna()
    )
    assert same.all(), both.loc[~same, ["breakdown", "group", "denominator", "patients"]]


def test_the_same_count_is_never_released_twice_with_different_values(demo):
    t = aggregates(demo)
    registered = t["population/registered_population"]["patients"].iloc[0]
    overall = t["population/prevalence_overall"].set_index("measure")
    assert (overall.drop(index="diabetes")["denominator"] == registered).all()
    # the asthma register: every indicator's and breakdown's total, and the attack rates
    ind = t["asthma/indicators"]
    totals = ind.loc[ind["group"].astype(str) == "Total", "denominator"]
    attacks = t["asthma/attacks_per_1000"]
    both = pd.concat([totals, attacks.loc[attacks["group"] == "Total", "patients"]])
    assert both.nunique(dropna=False) == 1, set(both)
    # key_indicators is a slice of indicators, value for value
    key = t["asthma/key_indicators"]
    cols = [c for c in key.columns if c != "flag"]
    merged = key.merge(
        ind.assign(group=ind["group"].astype(str)), on=["indicator", "breakdown", "group"],
        suffixes=("", "_all"),
    )  # fmt: skip
    assert len(merged) == len(key)
    for c in cols[3:]:
        assert all(close(a, b) for a, b in zip(merged[c], merged[f"{c}_all"], strict=True)), c
    # one register by age: the two hypertension indicators add up to the register, each
    # total released once with one value
    groups = t["cvd/cvd_bp_risk_groups"]
    assert groups["on_register"].nunique(dropna=False) == 1


# -- the report ------------------------------------------------------------------------------------


class _Tables(HTMLParser):
    """Each report table of an aggregate output with the name (h4) above it, as rows of
    cell text (not the data tables under the charts)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[tuple[str, list[list[str]]]] = []
        self._h4 = self._cell = None
        self._rows: list[list[str]] | None = None
        self._last_h4 = ""

    def handle_starttag(self, tag, attrs):
        if tag == "h4":
            self._h4 = []
        elif tag == "table":
            # a chart's "Show the data" table holds the chart's numbers (the chart tests
            # check them), not an aggregate output
            chart = "chart-table" in (dict(attrs).get("class") or "")
            self._rows = None if chart else []
        elif tag == "tr" and self._rows is not None:
            self._rows.append([])
        elif tag in ("td", "th") and self._rows is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "h4" and self._h4 is not None:
            self._last_h4 = "".join(self._h4).strip()
            self._h4 = None
        elif tag in ("td", "th") and self._cell is not None:
            self._rows[-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table" and self._rows is not None:
            self.tables.append((self._last_h4, self._rows))
            self._rows = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._h4 is not None:
            self._h4.append(data)


def report_tables(out: Path) -> list[tuple[str, pd.DataFrame]]:
    parser = _Tables()
    parser.feed((out / "report.html").read_text(encoding="utf-8"))
    return [(name, pd.DataFrame(rows[1:], columns=rows[0])) for name, rows in parser.tables]


def _number(text: str) -> float:
    return np.nan if text in ("[c]", "") else float(text.replace(",", ""))


def test_report_tables_are_the_csvs_and_their_counts_obey_the_rule(demo):
    csvs = {name.split("/")[1]: frame for name, frame in aggregates(demo).items()}
    pathway = csvs["isac_pathway"]
    csvs["isac_pathway_by_imd"] = pathway[pathway["breakdown"] == "imd_quintile"]
    shown = report_tables(demo)
    assert len(shown) >= 10
    for name, table in shown:
        csv = csvs[name].reset_index(drop=True)
        assert len(table) == min(len(csv), 60), name
        for col in table.columns:
            cells = table[col]
            if col in COUNTS:
                numbers = cells.map(_number)
                assert numbers.map(released).all(), f"report table {name}.{col}"
                assert all(close(a, b) for a, b in zip(numbers, csv[col], strict=False)), name
            elif col in DERIVED and col in csv.columns:
                numbers = cells.map(_number)
                expected = csv[col].head(60)
                assert all(
                    (pd.isna(a) and pd.isna(b)) or abs(a - b) <= 0.005 + 1e-9 * abs(b)
                    for a, b in zip(numbers, expected, strict=True)
                ), f"report table {name}.{col}"


def _decode(value):
    """A plotly array: a list, or a typed array {"dtype", "bdata", "shape"}."""
    if isinstance(value, dict) and "bdata" in value:
        arr = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        if "shape" in value:
            arr = arr.reshape([int(s) for s in str(value["shape"]).split(",")])
        return arr
    return value


def report_figures(out: Path) -> list[tuple[list[dict], dict]]:
    page = (out / "report.html").read_text(encoding="utf-8")
    decoder = json.JSONDecoder()
    figures = []
    for m in re.finditer(r'Plotly\.newPlot\(\s*"[^"]+",\s*', page):
        data, end = decoder.raw_decode(page, m.end())
        rest = page[end:].lstrip()[1:].lstrip()
        layout, _ = decoder.raw_decode(rest)
        figures.append(([{k: _decode(v) for k, v in t.items()} for t in data], layout))
    return figures


def _title(axis: dict | None) -> str:
    title = (axis or {}).get("title")
    return (title.get("text") if isinstance(title, dict) else title) or ""


def _floats(values) -> list[float]:
    out = []
    for v in np.asarray(values, dtype=object).ravel():
        try:
            out.append(float(v))
        except (TypeError, ValueError):
            continue
    return out


def ratio_of_released(value: float, largest: int) -> bool:
    """A percentage as it can be computed from released counts: 100·a/b with a, b released."""
    if value == 0:
        return True
    for b in range(10, largest + 1, 5):
        a = value * b / 100
        if abs(a - round(a)) < 1e-6 and released(round(a)) and round(a) <= b:
            return True
    return False


def _counts_axis(title: str) -> bool:
    """An axis of numbers of patients ("Patients (rounded)", "registered patients ...")."""
    return title.lower().startswith(("patients", "registered patients"))


#: Traces drawn from released values by a model (limits, means, fitted lines).
MODEL_TRACES = ("Process limits", "Mean", "Target", "95% limits", "99.8% limits", "Average")


def test_report_charts_show_released_counts_and_percentages_of_them(demo):
    largest = int(
        np.nanmax([f[c].max() for f in aggregates(demo).values() for c in COUNTS & set(f.columns)])
    )
    counts = percents = 0
    for traces, layout in report_figures(demo):
        x_title, y_title = _title(layout.get("xaxis")), _title(layout.get("yaxis"))
        count_axis = [a for a, title in (("x", x_title), ("y", y_title)) if _counts_axis(title)]
        for t in traces:
            name = str(t.get("name") or "")
            if name in MODEL_TRACES or name.startswith("SII"):
                continue
            hover = str(t.get("hovertemplate") or "")
            if count_axis and t.get("mode") != "text":  # text: the [c] marks by the axis
                values = [abs(v) for v in _floats(t.get(count_axis[0], []))]
                assert all(released(v) for v in values), f"chart {y_title}: {values}"
                counts += len(values)
            if "customdata" in t and " of %{customdata[1]" in hover:
                pairs = np.asarray(t["customdata"], dtype=float)
                assert all(released(v) for v in pairs.ravel()), f"chart customdata {hover}"
                counts += pairs.size
            if "%" in y_title and not count_axis:
                values = _floats(t.get("z", t.get("y", [])))
                values = [v for v in values if not math.isnan(v)]
                assert all(ratio_of_released(v, largest) for v in values), (
                    f"chart {y_title} {name}: {values}"
                )
                percents += len(values)
    assert counts >= enough(demo, 50) and percents >= enough(demo, 50)


def test_spc_points_sit_on_the_month_ends_the_axis_names(demo):
    """Each SPC point is a period ending on a month end (the asthma chart drew the 12 months
    to 30 April at 1 April)."""
    checked = 0
    for traces, layout in report_figures(demo):
        if _title(layout.get("xaxis")) != "Month end":
            continue
        for t in traces:
            if t.get("name") == "Value":
                days = pd.to_datetime(pd.Series(t["x"]))
                assert days.dt.is_month_end.all(), f"{_title(layout.get('title'))}: {days}"
                checked += len(days)
    assert checked >= enough(demo, 24)


def _report_text(out: Path) -> str:
    page = (out / "report.html").read_text(encoding="utf-8")
    body = page[page.index("<body>") :]
    body = re.sub(r"<script.*?</script>", " ", body, flags=re.S)
    body = re.sub(r"<div id=\"[^\"]*\" class=\"plotly-graph-div\".*?</div>", " ", body, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", "\n", body))


def test_headlines_and_sentences_give_released_counts(demo):
    text = _report_text(demo)
    found = 0
    # "N patients ...", "... of N" (not "Counts of 1-7", "First 60 of 90 rows", nor the
    # demo's own --patients in "Synthetic population of N patients")
    pattern = r"(?<!population of )\b(\d[\d,]*) (?:patients|people)\b|\bof (\d[\d,]*)\b(?!-| rows)"
    for m in re.finditer(pattern, text):
        value = float((m.group(1) or m.group(2)).replace(",", ""))
        assert released(value), m.group(0)
        found += 1
    page = (demo / "report.html").read_text(encoding="utf-8")
    for label, value in re.findall(r"<div class='kpi'>([^<]*)<b>([^<]*)</b>", page):
        label, value = html.unescape(label), html.unescape(value)
        assert value not in ("nan", "NaN"), label
        if "%" in label:
            m = re.fullmatch(r"([\d.]+)% \(([\d.]+)–([\d.]+)\) of ([\d,]+)|\[c\]", value)
            assert m, f"{label}: {value}"
            if m.group(4):
                assert released(float(m.group(4).replace(",", ""))), f"{label}: {value}"
        elif value != "[c]":
            assert released(float(value.replace(",", ""))), f"{label}: {value}"
        found += 1
    assert found >= enough(demo, 10)


def test_the_report_says_what_the_rule_does_with_zeros(demo):
    """0 is released as 0 (DEFAULT_POLICY.suppress_zeros is False): a report that says
    "≤ 7 suppressed" next to a table of 0s contradicts itself."""
    text = _report_text(demo)
    assert not DEFAULT_POLICY.suppress_zeros
    assert "≤ 7" not in text and "<= 7" not in text
    assert "1-7" in text or "1–7" in text
