"""The asthma detail table (flags by PCN × IMD quintile × ethnicity × age band) read beside
the indicators table, whose breakdowns are its margins.

The detail table's cells add up to the register and to each flag's people by PCN, by IMD
quintile, by ethnicity, by age band and overall — all released in ``indicators``. A reader
of both tables has, per flag, one unknown count of people (and of those with the flag) per
combination of the four groups, each 0 or more, the listed cells' released windows (a 10
is 8-12; a numerator withheld as primary 1-7, for its complement n − 7 … n − 1), and the
indicators' windows of their sums. The detail table once listed every non-empty cell,
withheld ones too: twelve withheld cells of the mixed ethnic group beside its register of
12 (released as 10: 8-12) were 1 each (found by an independent review of the demo's
output: 152 counts given back so). Now a cell is listed only where its people are
released; these tests solve the reader's linear programmes (scipy's HiGHS) for the least
and most each listed count can be, and find none fixed (the least rounded up below the
most rounded down: a whole number between them is not unique). (Cox LH 1980, JASA
75:377-85; the rounding windows as in ONS, "Disclosure control guidance for tables
produced from administrative sources", 2014.)
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from scipy.optimize import linprog

from pophealth.programmes.asthma.outputs import DETAIL_KEYS, INDICATORS

RUNS = (
    (300, 3),
    (1500, 12),
    (5000, 7),
    pytest.param((10_000, 42), marks=pytest.mark.slow),
)
COLUMN_OF = {i.column: i.name for i in INDICATORS}


def _aggregate(result, name: str) -> pd.DataFrame:
    (frame,) = [o.frame for o in result.outputs if o.kind == "aggregate" and o.name == name]
    return frame


def _label(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "Unknown"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _window(released: float, note: object, side: str, n_window=None) -> tuple[float, float]:
    """What a released (or withheld) count says of the exact one."""
    if not (isinstance(released, float) and math.isnan(released)):
        r = float(released)
        if r == 0:
            return 0.0, 0.0
        return max(r - 2, 8.0), r + 2
    parts = str(note or "").split("; ")
    if f"{side} primary" in parts:
        return 1.0, 7.0
    if f"{side} complement" in parts and n_window is not None:
        return max(n_window[0] - 7, 0.0), n_window[1] - 1
    return 0.0, np.inf


def pinned_detail_counts(result) -> list[str]:
    """The listed detail counts a reader of the detail and indicators tables fixes."""
    detail = _aggregate(result, "detail_pcn_imd_ethnicity_age")
    indicators = _aggregate(result, "indicators")
    fixed = []
    for flag, listed in detail.groupby("flag", sort=False):
        ind = indicators[indicators["indicator"] == COLUMN_OF[flag]]
        labels = {
            k: sorted({_label(g) for g in ind.loc[ind["breakdown"] == k, "group"]} - {"Total"})
            for k in DETAIL_KEYS
        }
        combos = list(itertools.product(*(labels[k] for k in DETAIL_KEYS)))
        at = {c: i for i, c in enumerate(combos)}
        m = len(combos)  # variables: n of each combination, then x of each
        facts: list[tuple[list[int], float, float]] = []  # lo ≤ Σ variables ≤ hi

        for _, r in ind.iterrows():  # the margins, from the indicators table
            b, g = r["breakdown"], _label(r["group"])
            if b not in DETAIL_KEYS and g != "Total":
                continue
            if g == "Total" and b != "imd_quintile":
                continue  # (one Total: the same count in every breakdown)
            inside = [at[c] for c in combos if g == "Total" or c[DETAIL_KEYS.index(b)] == g]
            nw = _window(r["denominator"], r["disclosure_note"], "n")
            facts.append((inside, *nw))
            xw = _window(r["numerator"], r["disclosure_note"], "x", nw)
            facts.append(([m + i for i in inside], *xw))
        targets = []
        for _, r in listed.iterrows():  # the listed cells
            i = at[tuple(_label(r[k]) for k in DETAIL_KEYS)]
            nw = _window(r["denominator"], r["disclosure_note"], "n")
            xw = _window(r["numerator"], r["disclosure_note"], "x", nw)
            facts.append(([i], *nw))
            facts.append(([m + i], *xw))
            where = f"{flag} {tuple(r[k] for k in DETAIL_KEYS)}"
            targets += [(i, f"{where} people"), (m + i, f"{where} with the flag")]
        # x ≤ n in every combination
        a = sparse.lil_matrix((len(facts) + m, 2 * m))
        for k, (cols, _, _) in enumerate(facts):
            a[k, cols] = 1.0
        for i in range(m):
            a[len(facts) + i, m + i], a[len(facts) + i, i] = 1.0, -1.0
        a = a.tocsr()
        lo = np.array([*(f[1] for f in facts), *([-np.inf] * m)])
        hi = np.array([*(f[2] for f in facts), *([0.0] * m)])
        a_ub = sparse.vstack([a, -a]).tocsr()
        b_ub = np.concatenate([hi, -lo])
        keep = np.isfinite(b_ub)
        a_ub, b_ub = a_ub[keep], b_ub[keep]
        for v, name in targets:
            ends = []
            for sign in (1.0, -1.0):
                c = np.zeros(2 * m)
                c[v] = sign
                res = linprog(c, A_ub=a_ub, b_ub=b_ub, bounds=(0, None), method="highs")
                assert res.status == 0, (name, res.message)  # (the truth is a solution)
                ends.append(sign * res.fun)
            if math.ceil(ends[0] - 1e-6) >= math.floor(ends[1] + 1e-6) and ends[1] > 0:
                fixed.append(f"{name}: {ends[0]:.2f}-{ends[1]:.2f}")
    return fixed


@pytest.mark.parametrize("run", RUNS, ids=lambda run: f"{run[0]}-patients")
def test_no_detail_count_comes_back_beside_the_indicators(synthetic_runs, run):
    """Every listed detail count, numerator and denominator, of every flag: not fixed by
    the detail and indicators tables together."""
    patients, seed = run
    result = synthetic_runs.result(patients, seed, "asthma")
    assert pinned_detail_counts(result) == []


def test_the_detail_table_lists_only_cells_whose_people_are_released(synthetic_runs):
    """No listed cell has its people withheld, and the flags' cells are the same cells."""
    detail = _aggregate(synthetic_runs.result(5000, 7, "asthma"), "detail_pcn_imd_ethnicity_age")
    assert len(detail) and detail["denominator"].notna().all()
    cells = detail.groupby("flag")[list(DETAIL_KEYS)].apply(
        lambda g: sorted(map(tuple, g.astype(str).to_numpy()))
    )
    assert all(c == cells.iloc[0] for c in cells)


def pinned_practice_counts(result, frame: pd.DataFrame) -> list[str]:
    """The practice and PCN counts of ``indicators`` a reader fixes, knowing which PCN each
    practice is in (``frame``: the register, with ``practice_id`` and its PCN): per
    indicator, each practice's and PCN's people and people with the flag are unknowns with
    their windows, a PCN's practices add up to it and every PCN to the Total, and x ≤ n."""
    from pophealth.programmes.asthma.outputs import group_columns

    g = group_columns(frame)
    pcn_of = dict(zip(g["practice"].map(_label), g["pcn"].map(_label), strict=True))
    indicators = _aggregate(result, "indicators")
    fixed = []
    for name, ind in indicators.groupby("indicator", sort=False):
        rows = ind[ind["breakdown"].isin(["practice", "pcn"])]
        total = ind[(ind["breakdown"] == "pcn") & (ind["group"].map(_label) == "Total")]
        cells = [(r["breakdown"], _label(r["group"])) for _, r in rows.iterrows()]
        cells = [c for c in cells if c[1] != "Total"] + [("Total", "Total")]
        at = {c: i for i, c in enumerate(cells)}
        m = len(cells)
        facts: list[tuple[dict[int, float], float, float]] = []
        for _, r in pd.concat([rows[rows["group"].map(_label) != "Total"], total]).iterrows():
            c = (r["breakdown"], _label(r["group"]))
            c = ("Total", "Total") if c[1] == "Total" else c
            nw = _window(r["denominator"], r["disclosure_note"], "n")
            facts.append(({at[c]: 1.0}, *nw))
            facts.append(
                ({m + at[c]: 1.0}, *_window(r["numerator"], r["disclosure_note"], "x", nw))
            )
        for side in (0, m):
            for pcn in {c[1] for c in cells if c[0] == "pcn"}:
                inside = [at[c] for c in cells if c[0] == "practice" and pcn_of.get(c[1]) == pcn]
                facts.append(
                    ({side + at[("pcn", pcn)]: -1.0, **{side + i: 1.0 for i in inside}}, 0, 0)
                )
            for level in ("pcn", "practice"):
                parts = {side + at[c]: 1.0 for c in cells if c[0] == level}
                facts.append(({side + at[("Total", "Total")]: -1.0, **parts}, 0, 0))
        for i in range(m):
            facts.append(({m + i: 1.0, i: -1.0}, -np.inf, 0))
        a = sparse.lil_matrix((len(facts), 2 * m))
        for k, (terms, _, _) in enumerate(facts):
            for v, coefficient in terms.items():
                a[k, v] = coefficient
        a = a.tocsr()
        lo = np.array([f[1] for f in facts])
        hi = np.array([f[2] for f in facts])
        a_ub = sparse.vstack([a, -a]).tocsr()
        b_ub = np.concatenate([hi, -lo])
        keep = np.isfinite(b_ub)
        a_ub, b_ub = a_ub[keep], b_ub[keep]
        for v in range(2 * m):
            ends = []
            for sign in (1.0, -1.0):
                c = np.zeros(2 * m)
                c[v] = sign
                res = linprog(c, A_ub=a_ub, b_ub=b_ub, bounds=(0, None), method="highs")
                assert res.status == 0, (name, res.message)
                ends.append(sign * res.fun)
            if math.ceil(ends[0] - 1e-6) >= math.floor(ends[1] + 1e-6) and ends[1] > 0:
                what = "with the flag" if v >= m else "people"
                fixed.append(f"{name} {cells[v % m]} {what}: {ends[0]:.2f}-{ends[1]:.2f}")
    return fixed


@pytest.mark.parametrize("run", RUNS, ids=lambda run: f"{run[0]}-patients")
def test_no_practice_or_pcn_count_comes_back_from_the_others(synthetic_runs, run):
    """Every practice's and PCN's count of every indicator, read with the PCN each
    practice is in: not fixed (a released 0 aside) by the practices adding up to their PCN
    and the PCNs to the register."""
    patients, seed = run
    result = synthetic_runs.result(patients, seed, "asthma")
    frame = synthetic_runs.asthma_frame(patients, seed)
    assert pinned_practice_counts(result, frame) == []
