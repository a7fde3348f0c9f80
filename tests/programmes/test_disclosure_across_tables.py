"""The adversary reads every table of a run side by side: one count, one decision.

Disclosure control decides, table by table, which counts to withhold so that a small count
cannot be recovered from the totals and margins *of that table*. The same count — a PCN's
number of patients in an indicator's denominator, the people with uncontrolled asthma in
IMD quintile 1, the registered population — is often in several tables of one run. Withheld
(secondarily) in one and released in another, its protection is undone: the released copy
gives back what the withheld one was hiding. So, for every count that appears in more than
one aggregate output (or in a table or chart of the report), these tests check it gets the
same treatment everywhere: released with one value, or withheld everywhere.

Which cells are "the same count" is read from the table definitions (same population, same
filter, same group), each written out below with the programme code that makes it:

* population — the registered population (``registered_population``) is the denominator of
  every all-ages register in ``prevalence_overall``; each IMD quintile's registered
  population is the denominator of every all-ages register in
  ``prevalence_by_imd_quintile``;
* CVD — each indicator's numerator and denominator in a PCN (``cvd_<indicator>_equity``,
  breakdown ``pcn_name``) is the sum of that PCN's practices in
  ``cvd_indicators_by_practice``: withheld in one, it must not be given back by the other
  (every practice of the PCN released);
* asthma — the people with uncontrolled asthma in a group (``indicators``, indicator
  ``uncontrolled``, the numerator) are the denominator of the ISAC pathway's
  ``flagged_no_referral`` and ``referred_12m`` (``isac_pathway``, by IMD quintile and
  ethnicity, and the Total), and the people flagged without referral (all of them
  uncontrolled) are both tables' numerator; the high-tier and SABA-over-use numerators by
  IMD quintile and by pollution quintile (``indicators``) are the margins of
  ``pollution_by_deprivation``, and the register by those quintiles and in all (every
  indicator's denominator) is the cross-tab's margins' denominator; the people referred in
  the last 12 months are the denominator of both secondary-care timers.

Every number a chart draws must also be in a disclosed aggregate output written as a CSV
(the CVD report drew each indicator by IMD decile, and no CSV had the deciles).

Runs: each programme on synthetic stores of 300, 1,500 and 5,000 patients (three seeds);
the asthma programme on 200 too (its register's Total withheld).
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict

import numpy as np
import pandas as pd
import pytest

from pophealth import programmes
from pophealth.disclosure import DEFAULT_POLICY
from pophealth.programmes import ProgrammeResult
from pophealth.store import Store
from pophealth.synth import write_synthetic_store

RUNS = ((300, 3), (1500, 12), (5000, 7))


@pytest.fixture(scope="module", params=RUNS, ids=[f"{n}-patients" for n, _ in RUNS])
def run(synthetic_runs, request) -> dict[str, ProgrammeResult]:
    """Every programme on one synthetic store, as ``pophealth demo`` runs them (the runs of
    tests/programmes/conftest.py, which test_crosstab_margins_lp reads too)."""
    patients, seed = request.param
    return synthetic_runs.results(patients, seed)


def aggregate(result: ProgrammeResult, name: str) -> pd.DataFrame:
    (frame,) = [o.frame for o in result.outputs if o.kind == "aggregate" and o.name == name]
    return frame


def _label(v) -> str:
    """A group label as text: 1.0 and "1" are one IMD quintile."""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


class Places:
    """Each count's copies: key → [(where, released value)]."""

    def __init__(self) -> None:
        self.copies: dict[tuple, list[tuple[str, float]]] = defaultdict(list)

    def add(self, key: tuple, where: str, value) -> None:
        self.copies[key].append((where, np.nan if pd.isna(value) else float(value)))

    def add_rows(self, frame: pd.DataFrame, key, col: str, where: str) -> None:
        for i, row in frame.iterrows():
            self.add(key(row), f"{where} row {i + 2} {col}", row[col])

    def differing(self) -> dict[tuple, list[tuple[str, float]]]:
        """The counts with more than one copy whose copies are not all withheld or all
        released with one value."""
        bad = {}
        for key, copies in self.copies.items():
            values = [v for _, v in copies]
            if len(values) < 2:
                continue
            hidden = [math.isnan(v) for v in values]
            if all(hidden) or (not any(hidden) and len(set(values)) == 1):
                continue
            bad[key] = copies
        return bad

    def shared(self) -> int:
        return sum(len(c) > 1 for c in self.copies.values())


def _report(bad: dict) -> str:
    lines = [f"{len(bad)} counts treated differently across tables, e.g.:"]
    for key, copies in list(bad.items())[:6]:
        lines.append(f"  {key}: " + "; ".join(f"{w} = {v:g}" for w, v in copies))
    return "\n".join(lines)


# -- population --------------------------------------------------------------------------------


def test_population_counts_are_one_decision_across_its_tables(run):
    result = run["population"]
    places = Places()
    total = aggregate(result, "registered_population")
    places.add(("registered",), "registered_population patients", total["patients"].iloc[0])
    overall = aggregate(result, "prevalence_overall")
    all_ages = overall[overall["measure"] != "diabetes"]  # diabetes: 17+ (its own count)
    places.add_rows(all_ages, lambda r: ("registered",), "denominator", "prevalence_overall")
    by_q = aggregate(result, "prevalence_by_imd_quintile")
    by_q = by_q[by_q["measure"] != "diabetes"]
    places.add_rows(
        by_q,
        lambda r: ("registered", "imd_quintile", _label(r["imd_quintile"])),
        "denominator",
        "prevalence_by_imd_quintile",
    )
    assert places.shared() >= 2
    bad = places.differing()
    assert not bad, _report(bad)


# -- CVD ------------------------------------------------------------------------------------------


def pcn_leaks(equity: dict[str, pd.DataFrame], practices: pd.DataFrame) -> tuple[int, list]:
    """PCN counts withheld in an indicator's equity table whose practices are all released
    in the practice table (so their sum gives the PCN back); with how many were checked."""
    from pophealth.programmes.cvd.indicators import INDICATORS

    checked, leaks = 0, []
    for ind in INDICATORS:
        eq = equity[ind.name]
        pcns = eq[eq["breakdown"] == "pcn_name"]
        for _, row in pcns.iterrows():
            mine = practices[
                (practices["indicator"] == ind.name) & (practices["pcn_name"] == row["group"])
            ]
            for col in ("numerator", "denominator"):
                checked += 1
                if pd.isna(row[col]) and len(mine) and mine[col].notna().all():
                    leaks.append(
                        f"{ind.name} PCN {row['group']} {col}: withheld in "
                        f"cvd_{ind.name}_equity, practices released {mine[col].tolist()} "
                        f"(sum {mine[col].sum():g}) in cvd_indicators_by_practice"
                    )
    return checked, leaks


def test_a_pcn_withheld_in_an_indicator_is_not_given_back_by_its_practices(run):
    """A PCN's count withheld in ``cvd_<indicator>_equity`` while every practice of the PCN
    is released in ``cvd_indicators_by_practice``: their sum gives the PCN back (within the
    rounding of each practice)."""
    from pophealth.programmes.cvd.indicators import INDICATORS

    result = run["cvd"]
    equity = {i.name: aggregate(result, f"cvd_{i.name}_equity") for i in INDICATORS}
    checked, leaks = pcn_leaks(equity, aggregate(result, "cvd_indicators_by_practice"))
    assert checked >= 10
    assert not leaks, "\n".join(leaks[:8])


def _cvd_patients(practices: dict[tuple[str, str], int]) -> pd.DataFrame:
    """Adults on the hypertension register, aged 60, every other one treated to target, in
    the given (PCN, practice) sizes; one group in every other breakdown."""
    rows = [(pcn, practice) for (pcn, practice), n in practices.items() for _ in range(n)]
    n = len(rows)
    return pd.DataFrame(
        {
            "patient_id": [f"p{i}" for i in range(n)],
            "pcn_name": [r[0] for r in rows],
            "practice_id": [r[1] for r in rows],
            "age": 60.0,
            "hypertension": 1,
            "htn_group": np.where(np.arange(n) % 2 == 0, "0.1", "1a"),
            "qrisk_applies": 0,
            "qrisk3": np.nan,
            "on_llt": 0,
            "atrial_fibrillation": 0,
            "anticoag_indication": None,
            "cvd": 0,
            "on_statin": 0,
            "anticoagulated": 0,
            "imd_decile": 5.0,
            "core20": False,
            "ethnicity_5": "white",
            "sex": "female",
        }
    )


def test_a_small_pcn_is_not_given_back_by_its_neighbours_practices():
    """Three PCNs of 40 (two practices of 20), 3 and 55 people on the register under 80.
    The equity table withholds the 3 and, so that the Total cannot give it back, the 40;
    the practice table released both practices of 20: 20 + 20 = 40, and 100 - 40 - 55 = 3
    (the Total, 98, released as 100)."""
    from pophealth.programmes.cvd.indicators import released_indicators

    p = _cvd_patients({("A", "A1"): 20, ("A", "A2"): 20, ("B", "B1"): 3,
                       ("C", "C1"): 30, ("C", "C2"): 25})  # fmt: skip
    views, practices = released_indicators(p)
    b = views["htn_target_under80"].breakdowns
    pcn = b[b["breakdown"] == "pcn_name"].set_index("group")
    assert pd.isna(pcn.loc["B", "denominator"]) and pd.isna(pcn.loc["A", "denominator"])
    checked, leaks = pcn_leaks({k: v.breakdowns for k, v in views.items()}, practices)
    assert checked >= 6
    assert not leaks, "\n".join(leaks)
    # PCN A's total is withheld in the practice table too (not published there, but known
    # to its audit), so a practice of A is withheld with it
    a = practices[(practices["indicator"] == "htn_target_under80") & (practices["pcn_name"] == "A")]
    assert a["denominator"].isna().any()


def test_cvd_counts_are_one_decision_across_its_tables(run):
    """An indicator's Total and groups are one count in its equity table and its copies
    (the headline gives the Total again); the register of the risk-group table is one count
    in every row."""
    result = run["cvd"]
    places = Places()
    from pophealth.programmes.cvd.indicators import INDICATORS

    for ind in INDICATORS:
        eq = aggregate(result, f"cvd_{ind.name}_equity")
        totals = eq[eq["group"].astype(str) == "Total"]
        for col in ("numerator", "denominator"):
            key = (ind.name, col, "Total")
            places.add_rows(totals, lambda r, k=key: k, col, ind.name)
    groups = aggregate(result, "cvd_bp_risk_groups")
    places.add_rows(groups, lambda r: ("htn_register",), "on_register", "cvd_bp_risk_groups")
    assert places.shared() >= 10
    bad = places.differing()
    assert not bad, _report(bad)


# -- asthma ----------------------------------------------------------------------------------------

#: indicator → the pathway measures whose denominator is that indicator's numerator
PATHWAY_DENOMINATORS = {"uncontrolled": ("flagged_no_referral", "referred_12m")}
#: indicator → the cross-tab flag whose margins are that indicator's numerator
CROSS_FLAGS = {"tier_high": "is_tier_high", "saba_6plus": "flag_saba_priority"}


def _asthma_places(result: ProgrammeResult) -> Places:
    places = Places()
    ind = aggregate(result, "indicators")

    def group_key(indicator: str, col: str):
        def key(r):
            if str(r["group"]) == "Total":
                return (indicator, col, "Total")
            return (indicator, col, r["breakdown"], _label(r["group"]))

        return key

    wanted = set(PATHWAY_DENOMINATORS) | set(CROSS_FLAGS)
    for name, rows in ind[ind["indicator"].isin(wanted)].groupby("indicator"):
        shown = ["imd_quintile", "ethnicity", "no2_quintile", "pm_quintile"]
        rows = rows[rows["breakdown"].isin(shown) | (rows["group"] == "Total")]
        places.add_rows(rows, group_key(name, "numerator"), "numerator", f"indicators[{name}]")
    pathway = aggregate(result, "isac_pathway")
    for indicator, measures in PATHWAY_DENOMINATORS.items():
        for m in measures:
            rows = pathway[pathway["measure"] == m]
            places.add_rows(
                rows, group_key(indicator, "numerator"), "denominator", f"isac_pathway[{m}]"
            )
    # flagged without referral (all uncontrolled): the indicator's and the pathway's numerator
    rows = ind[ind["indicator"] == "flagged_no_referral"]
    rows = rows[rows["breakdown"].isin(["imd_quintile", "ethnicity"]) | (rows["group"] == "Total")]
    places.add_rows(rows, group_key("flagged_no_referral", "numerator"), "numerator",
                    "indicators[flagged_no_referral]")  # fmt: skip
    rows = pathway[pathway["measure"] == "flagged_no_referral"]
    places.add_rows(rows, group_key("flagged_no_referral", "numerator"), "numerator",
                    "isac_pathway[flagged_no_referral]")  # fmt: skip
    # the people referred in the last 12 months: the denominator of both timers
    for m in ("secondary_care_breach", "secondary_care_waiting"):
        rows = pathway[pathway["measure"] == m]
        places.add_rows(rows, group_key("referred", "n"), "denominator", f"isac_pathway[{m}]")
    # the register by IMD and pollution quintile: every indicator's denominator and the
    # cross-tab's margins' (each flag's table gives them)
    rows = ind[ind["indicator"].isin(list(CROSS_FLAGS))]
    rows = rows[rows["breakdown"].isin(["imd_quintile", "no2_quintile", "pm_quintile"])]
    places.add_rows(rows, group_key("register", "n"), "denominator", "indicators")
    cross = aggregate(result, "pollution_by_deprivation")
    for indicator, flag in CROSS_FLAGS.items():
        rows = cross[cross["flag"] == flag]
        for _, r in rows.iterrows():
            p, q = str(r["pollution_quintile"]), str(r["imd_quintile"])
            if p == "Total" and q == "Total":
                group = ("Total",)
            elif p == "Total":
                group = ("imd_quintile", q)
            elif q == "Total":
                group = (f"{r['pollutant']}_quintile", p)
            else:
                continue
            where = f"pollution_by_deprivation[{flag}, {r['pollutant']}] ({p}, {q})"
            places.add((indicator, "numerator", *group), where, r["numerator"])
            places.add(("register", "n", *group), where, r["denominator"])
    return places


def test_asthma_counts_are_one_decision_across_its_tables(run):
    places = _asthma_places(run["asthma"])
    assert places.shared() >= 20
    bad = places.differing()
    assert not bad, _report(bad)


def test_asthma_counts_are_one_decision_when_the_register_total_is_withheld(tmp_path):
    """A register of about 15 (200 synthetic patients), its Total withheld by the
    indicators: the pollution × deprivation cross-tab, whose Total's numerator was withheld
    already, released its denominator (15) once nothing but SharedCounts made the tables
    agree — only numerators newly withheld were looked for. (Seed 9 was the case until the
    audit withheld a group rather than the Total where a group will do; seed 3 is.)"""
    write_synthetic_store(tmp_path / "store", patients=200, seed=3)
    store = Store.open(tmp_path / "store")
    date = dt.date.fromisoformat(store.metadata["extract_date"])
    result = programmes.get("asthma").run(store.connect("duckdb"), index_date=date,
                                          engine="duckdb")  # fmt: skip
    ind = aggregate(result, "indicators")
    assert ind.loc[ind["group"] == "Total", "denominator"].isna().all()
    places = _asthma_places(result)
    assert places.shared() >= 20
    bad = places.differing()
    assert not bad, _report(bad)


# -- charts --------------------------------------------------------------------------------------

#: Traces a model draws from released values (limits, means, fitted lines), not counts.
MODEL_TRACES = ("Process limits", "Mean", "Target", "95% limits", "99.8% limits", "Average")


def _numbers(values) -> list[float]:
    out = []
    for v in np.asarray(values if values is not None else [], dtype=object).ravel():
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if not math.isnan(f):
            out.append(f)
    return out


def _published(result: ProgrammeResult) -> np.ndarray:
    values = []
    for o in result.outputs:
        if o.kind != "aggregate":
            continue
        for col in o.frame.columns:
            if pd.api.types.is_numeric_dtype(o.frame[col]):
                values += _numbers(o.frame[col])
    return np.unique(np.abs(np.array(values, dtype=float)))


def test_every_number_a_chart_draws_is_in_an_aggregate_csv(run):
    """A chart's points (and bars, tiles) are values of a disclosed aggregate output, so a
    reader can find every drawn number in a CSV of the run."""
    missing, drawn = [], 0
    for name, result in run.items():
        published = _published(result)
        for section in result.sections:
            for fig in section.figures:
                for trace in fig.figure.data:
                    label = str(trace.name or "")
                    if label in MODEL_TRACES or label.startswith("SII"):
                        continue
                    if getattr(trace, "mode", None) == "text":  # the [c] marks
                        continue
                    axis = "x" if getattr(trace, "orientation", None) == "h" else "y"
                    if trace.type in ("heatmap", "choropleth", "choroplethmapbox"):
                        axis = "z"
                    for v in _numbers(getattr(trace, axis)):
                        drawn += 1
                        ok = np.isclose(published, abs(v), rtol=1e-9, atol=1e-9).any()
                        if not ok:
                            missing.append(f"{name}: '{fig.title}' ({label}) draws {v!r}")
                            break
    assert drawn >= 20
    assert not missing, "\n".join(missing[:10])


# -- within each table, after the shared decisions ------------------------------------------


def _lone_withheld(frame: pd.DataFrame, keys: list[str], col: str, where: str) -> list[str]:
    """Sets of groups (same ``keys``) whose Total is released while exactly one group is
    withheld: Total minus the others gives it back (Cox 1980: in a one-way table that is the
    only way a cell is pinned when nothing bounds it but being zero or more)."""
    found = []
    for key, rows in frame.groupby(keys, dropna=False, sort=False):
        total = rows[rows["group"].astype(str) == "Total"]
        groups = rows[rows["group"].astype(str) != "Total"]
        if len(total) and total[col].notna().all() and groups[col].isna().sum() == 1:
            found.append(f"{where} {key} {col}: one group withheld, Total released")
    return found


def test_no_withheld_count_is_alone_beside_a_released_total(run):
    """Forcing a count withheld because another table withholds it must not leave it (or
    any other cell) alone in its table: every breakdown with a released Total has no lone
    withheld group, and each PCN released in an indicator's equity table has no lone
    withheld practice in the practice table."""
    from pophealth.programmes.cvd.indicators import INDICATORS

    found, checked = [], 0
    cvd = run["cvd"]
    practices = aggregate(cvd, "cvd_indicators_by_practice")
    for ind in INDICATORS:
        eq = aggregate(cvd, f"cvd_{ind.name}_equity")
        for col in ("numerator", "denominator"):
            found += _lone_withheld(eq, ["breakdown"], col, f"cvd_{ind.name}_equity")
            pcns = eq[eq["breakdown"] == "pcn_name"].rename(columns={"group": "pcn_name"})
            mine = practices[practices["indicator"] == ind.name]
            for _, pcn in pcns.iterrows():
                rows = mine[mine["pcn_name"] == pcn["pcn_name"]].rename(
                    columns={"practice_id": "group"}
                )
                total = pd.DataFrame({"group": ["Total"], col: [pcn[col]]})
                both = pd.concat([rows[["group", col]], total], ignore_index=True)
                found += _lone_withheld(
                    both.assign(pcn=pcn["pcn_name"]), ["pcn"], col, "practices of"
                )
                checked += 1
    asthma = run["asthma"]
    ind = aggregate(asthma, "indicators")
    for col in ("numerator", "denominator"):
        found += _lone_withheld(ind, ["indicator", "breakdown"], col, "indicators")
        pathway = aggregate(asthma, "isac_pathway")
        found += _lone_withheld(pathway, ["measure", "breakdown"], col, "isac_pathway")
    attacks = aggregate(asthma, "attacks_per_1000")
    found += _lone_withheld(attacks, ["breakdown"], "patients", "attacks_per_1000")
    spc = aggregate(asthma, "saba_overuse_monthly").rename(columns={"pcn": "group"})
    for col in ("numerator", "denominator"):
        found += _lone_withheld(spc, ["month"], col, "saba_overuse_monthly")
    assert checked >= 10
    assert not found, "\n".join(found[:10])


def test_two_small_risk_groups_are_not_pinned_by_the_register_beside_them():
    """Risk groups of 7 (1d) and 7 (1c) withheld, the other five released and the register
    (every row's denominator) released: exactly, 134 - 120 = 14 = 7 + 7, each pinned to 7
    (as rounded, 135 - 120 = 15, 7 and 8 or 8 and 7: nearly so). The register is the groups'
    total for the audit, which withholds a third group."""
    from pophealth.programmes.cvd import _released_group_counts

    sizes = {"1d": 7, "1c": 7, "1a": 20, "1b": 20, "1e": 20, "0.1": 30, "0.2": 30}
    groups = [g for g, n in sizes.items() for _ in range(n)]
    p = pd.DataFrame({"hypertension": 1, "htn_group": groups})
    out = _released_group_counts(p, DEFAULT_POLICY).set_index("group")
    assert out.loc["1d", "patients"] != out.loc["1d", "patients"]  # withheld (NaN)
    assert out["patients"].isna().sum() >= 3
    assert (out["on_register"] == 135).all() and "Total" not in out.index
    assert list(out.index) == ["1d", "1c", "1a", "1b", "1e", "0.1", "0.2"]
