"""The adversary solves for the asthma cross-tab's withheld margins (and cells).

``pollution_by_deprivation`` is the register and the people with a flag (high tier, SABA
over-use) by pollution quintile × IMD quintile, with "Total" margins. Its margins are
counts of the ``indicators`` table too (the register and each flag's numerator by IMD
quintile, by NO2 and by particulate quintile, and in all), so one count is one decision
across both (:class:`pophealth.disclosure.SharedCounts`): a margin that ``indicators``
withholds is withheld in the cross-tab too. The simple check (a withheld margin whose line of
inner cells is all released) does not see a margin recovered from inner cells that are
themselves withheld but bounded. This test gives the attacker everything the run
publishes about these counts and asks, by linear programming (Cox 1980, *Suppression
methodology and statistical disclosure control*, JASA 75:377-85), the least and greatest
value of each withheld count:

* every released count r of the cross-tab or of ``indicators`` is a true count in
  [r − 2, r + 2] (nearest-5 rounding; a released 0 is 0: 1 and 2 are withheld);
* a count withheld as primary (its note says so) lies in 1–7; a numerator withheld as the
  complement of a small one has 1–7 fewer than its denominator; any other withheld count
  is 0 or more;
* each line of the cross-tab adds up to its margin, each numerator is at most its
  denominator, the two flags' tables have one register, the two pollutants' tables one
  register and numerator by IMD quintile and in all, and a margin is the same count as
  its copy in ``indicators`` (:func:`cross_keys`).

What protection the rule intends, taken here as the test's bar: **no withheld count can
be pinned to one value other than 0** — for a primary count, the attacker's range within
1–7 keeps at least two values; for any other withheld count, the range keeps at least two
of the values such a count can take (0, or 8 and more: its note tells the attacker it is
not 1–7). A count pinned to 0 is not a disclosure: the rule releases 0 as 0 (a numerator
withheld with its denominator of 1–7, or as the complement of it, is 0 — its note says
"x complement" or "x with denominator", not "x primary"). A range narrower than a released
count's (five values) is reported by the script, not failed: rounding is the protection
the rule gives every released count, and it does not promise a withheld one more.

Two attackers: the linear programmes as above (continuous values, the margins), and the
same as integer programmes (whole counts; a count withheld but not as primary is 0 or at
least 8; every withheld count, margins and inner cells), which can only pin more. Each
checks its own model against the true counts: every true count lies in its range. A
stronger attacker still also reads the indicators' IMD deciles (two deciles make a
quintile) and Core20 (IMD quintile 1): :func:`attack` takes ``nesting=True`` for that,
used by the script below, not by the tests.

Runs: synthetic stores of 300, 1,500 and 5,000 patients; with the slow tests also 10,000
(seed 42, the canonical store) and 20,000.
``python tests/programmes/test_crosstab_margins_lp.py 50000 3`` runs the attack on a larger
store and prints what it finds.
"""

from __future__ import annotations

import datetime as dt
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

from pophealth import programmes
from pophealth.programmes import ProgrammeResult
from pophealth.store import Store
from pophealth.synth import write_synthetic_store

#: (patients, seed); the two largest run with the slow tests (CI runs them after the default
#: run), to keep the default run short
RUNS = (
    (300, 3),
    (1500, 12),
    (5000, 7),
    pytest.param((10_000, 42), marks=pytest.mark.slow),
    pytest.param((20_000, 5), marks=pytest.mark.slow),
)
#: the flags of the cross-tab and the indicator whose numerator each one is
FLAGS = {"is_tier_high": "tier_high", "flag_saba_priority": "saba_6plus"}
POLLUTANTS = ("no2", "pm")
#: the smallest count a released or non-primary withheld count can be, other than 0
SMALLEST_OVER = 8


@dataclass
class Run:
    result: ProgrammeResult
    truth: dict[tuple, int]  # the cross-tab's true counts, by the attacker's keys


@pytest.fixture(scope="module", params=RUNS, ids=lambda run: f"{run[0]}-patients")
def asthma_run(synthetic_runs, request) -> Run:
    """The run and register of tests/programmes/conftest.py's ``synthetic_runs``: the same
    stores and asthma runs as test_disclosure_across_tables (300, 1,500 and 5,000 patients)
    and the asthma end-to-end tests (the canonical 10,000), made once."""
    patients, seed = request.param
    return crosstab_truth(
        synthetic_runs.result(patients, seed, "asthma"), synthetic_runs.asthma_frame(patients, seed)
    )


def run_asthma(path: Path, patients: int, seed: int) -> Run:
    """The asthma programme on a synthetic store, as ``pophealth demo`` runs it, and the
    cross-tab's true counts (to check that the attacker's ranges hold them)."""
    from pophealth.programmes.asthma.codes import curated
    from pophealth.programmes.asthma.programme import evaluate

    write_synthetic_store(path, patients=patients, seed=seed)
    store = Store.open(path)
    date = dt.date.fromisoformat(store.metadata["extract_date"])
    backend = store.connect("duckdb")
    result = programmes.get("asthma").run(backend, index_date=date, engine="duckdb")
    return crosstab_truth(result, evaluate(backend, date, curated()))


def crosstab_truth(result: ProgrammeResult, frame: pd.DataFrame) -> Run:
    """The run with the cross-tab's true counts, from the register ``frame`` the run had."""
    from pophealth.disclosure import DisclosurePolicy
    from pophealth.programmes.asthma import outputs

    exact = DisclosurePolicy(suppress_at_or_below=0, rounding="none", secondary=False)
    truth = {}
    for flag in FLAGS:
        for pollutant in POLLUTANTS:
            t = outputs.pollution_by_deprivation(frame, flag, f"{pollutant}_quintile", exact)
            for _, row in t.iterrows():
                p, q = str(row["pollution_quintile"]), str(row["imd_quintile"])
                for col, column in (("x", "numerator"), ("n", "denominator")):
                    truth[cross_key(col, flag, pollutant, p, q)] = int(row[column])
    return Run(result, truth)


def aggregate(result: ProgrammeResult, name: str) -> pd.DataFrame:
    (frame,) = [o.frame for o in result.outputs if o.kind == "aggregate" and o.name == name]
    return frame


# -- the attacker's model ---------------------------------------------------------------------


@dataclass
class Model:
    """Unknown true counts (one variable per count, shared by all its copies) and what the
    published tables say of them."""

    index: dict[tuple, int] = field(default_factory=dict)
    low: list[float] = field(default_factory=list)
    high: list[float] = field(default_factory=list)
    not_small: set[int] = field(default_factory=set)  # withheld, not primary: 0 or >= 8
    primary: set[int] = field(default_factory=set)
    eq: list[tuple[dict[int, float], float]] = field(default_factory=list)
    ub: list[tuple[dict[int, float], float]] = field(default_factory=list)
    seen: dict[int, list[str]] = field(default_factory=dict)

    def var(self, key: tuple) -> int:
        if key not in self.index:
            self.index[key] = len(self.low)
            self.low.append(0.0)
            self.high.append(np.inf)
        return self.index[key]

    def narrow(self, v: int, low: float, high: float) -> None:
        self.low[v] = max(self.low[v], low)
        self.high[v] = min(self.high[v], high)

    def publish(self, key: tuple, value, note, col: str, where: str) -> int:
        """One copy of a count: released (a number) or withheld (NA, with its note)."""
        v = self.var(key)
        self.seen.setdefault(v, []).append(where)
        if not pd.isna(value):
            r = float(value)
            self.narrow(v, 0.0, 0.0) if r == 0 else self.narrow(v, max(r - 2, 0), r + 2)
            return v
        parts = [] if pd.isna(note) else [p.strip() for p in str(note).split(";")]
        if any(p.startswith(f"{col} primary") for p in parts):
            self.primary.add(v)
            self.narrow(v, 1, 7)
        else:
            self.not_small.add(v)
        return v

    def add_eq(self, total: int, parts: list[int]) -> None:
        row = {p: 1.0 for p in parts}
        row[total] = row.get(total, 0.0) - 1.0
        self.eq.append((row, 0.0))

    def add_le(self, row: dict[int, float], rhs: float) -> None:
        self.ub.append((row, rhs))


def _label(v) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def cross_key(col: str, flag: str, pollutant: str, p: str, q: str) -> tuple:
    """One count of the cross-tab: the register (``n``, the same for both flags) or the
    people with ``flag`` (``x``); a margin by IMD quintile, and the grand total, are one
    count for both pollutants."""
    who = ("n",) if col == "n" else ("x", flag)
    if p == "Total" and q == "Total":
        return (*who, "Total")
    if p == "Total":
        return (*who, "imd_quintile", q)
    if q == "Total":
        return (*who, f"{pollutant}_quintile", p)
    return (*who, pollutant, p, q)


def build(result: ProgrammeResult, nesting: bool = False) -> tuple[Model, list[dict]]:
    """The attacker's model of one run, and the cross-tab's withheld counts to solve for."""
    m = Model()
    cross = aggregate(result, "pollution_by_deprivation")
    targets = []
    for (pollutant, flag), t in cross.groupby(["pollutant", "flag"], sort=False):
        cells: dict[tuple[str, str], dict[str, int]] = {}
        for i, row in t.iterrows():
            p, q = str(row["pollution_quintile"]), str(row["imd_quintile"])
            where = f"pollution_by_deprivation row {i + 2} [{flag}, {pollutant}] ({p}, {q})"
            for col, column in (("x", "numerator"), ("n", "denominator")):
                key = cross_key(col, flag, pollutant, p, q)
                v = m.publish(key, row[column], row["disclosure_note"], col, where)
                cells.setdefault((p, q), {})[col] = v
                if pd.isna(row[column]):
                    margin = "Total" in (p, q)
                    targets.append({"var": v, "where": f"{where} {column}", "margin": margin,
                                    "primary": v in m.primary})  # fmt: skip
            note = "" if pd.isna(row["disclosure_note"]) else str(row["disclosure_note"])
            x, n = cells[(p, q)]["x"], cells[(p, q)]["n"]
            m.add_le({x: 1.0, n: -1.0}, 0.0)  # x <= n
            if "x complement" in note:  # 1 <= n - x <= 7
                m.add_le({n: 1.0, x: -1.0}, 7.0)
                m.add_le({x: 1.0, n: -1.0}, -1.0)
        ps = sorted({p for p, _ in cells if p != "Total"})
        qs = sorted({q for _, q in cells if q != "Total"})
        for col in ("x", "n"):
            get = {pq: c[col] for pq, c in cells.items()}
            for p in [*ps, "Total"]:
                if (p, "Total") in get:
                    m.add_eq(get[(p, "Total")], [get[(p, q)] for q in qs if (p, q) in get])
            for q in [*qs, "Total"]:
                if ("Total", q) in get:
                    m.add_eq(get[("Total", q)], [get[(p, q)] for p in ps if (p, q) in get])
    _indicators(m, aggregate(result, "indicators"), nesting)
    return m, targets


def _indicators(m: Model, ind: pd.DataFrame, nesting: bool) -> None:
    """The same counts as released (or withheld) by ``indicators``; with ``nesting``, the
    IMD deciles (two to a quintile) and Core20 (IMD quintile 1) too."""
    wanted = ["imd_quintile", *(f"{p}_quintile" for p in POLLUTANTS)]
    if nesting:
        wanted += ["imd_decile", "core20"]
    for flag, name in FLAGS.items():
        rows = ind[(ind["indicator"] == name) & ind["breakdown"].isin(wanted)]
        deciles: dict[str, dict[str, int]] = {"x": {}, "n": {}}
        for i, row in rows.iterrows():
            b, g = row["breakdown"], _label(row["group"])
            where = f"indicators row {i + 2} [{name}] {b} {g}"
            for col, column in (("x", "numerator"), ("n", "denominator")):
                who = ("n",) if col == "n" else ("x", flag)
                if g == "Total":
                    key = (*who, "Total")
                elif b == "imd_decile":
                    key = (*who, "imd_decile", g)
                elif b == "core20":
                    key = (*who, "core20", g)
                else:
                    key = (*who, b, g)
                v = m.publish(key, row[column], row["disclosure_note"], col, where)
                if b == "imd_decile" and g != "Total":
                    deciles[col][g] = v
        if not nesting:
            continue
        for col in ("x", "n"):
            who = ("n",) if col == "n" else ("x", flag)
            d = deciles[col]
            for q in range(1, 6):
                pair = [d[str(k)] for k in (2 * q - 1, 2 * q) if str(k) in d]
                if pair:
                    m.add_eq(m.var((*who, "imd_quintile", str(q))), pair)
            if "Unknown" in d:
                m.add_eq(m.var((*who, "imd_quintile", "Unknown")), [d["Unknown"]])
            m.add_eq(m.var((*who, "core20", "Core20")), [m.var((*who, "imd_quintile", "1"))])
            rest = [m.var((*who, "imd_quintile", str(q))) for q in range(2, 6)]
            m.add_eq(m.var((*who, "core20", "Rest")), rest)


def _matrices(m: Model, integer: bool):
    """The model as matrices; with ``integer``, a binary per non-primary withheld count
    (0, or at least 8)."""
    n = len(m.low)
    extra = sorted(m.not_small) if integer else []
    width = n + len(extra)
    cap = max([h for h in m.high if np.isfinite(h)] + [1.0]) * 10

    def dense(rows):
        a = np.zeros((len(rows), width))
        for i, (row, _) in enumerate(rows):
            for j, c in row.items():
                a[i, j] += c
        return a, np.array([rhs for _, rhs in rows], dtype=float)

    a_eq, b_eq = dense(m.eq)
    ub = list(m.ub)
    for k, v in enumerate(extra):  # v >= 8 z and v <= cap z
        ub.append(({v: -1.0, n + k: float(SMALLEST_OVER)}, 0.0))
        ub.append(({v: 1.0, n + k: -cap}, 0.0))
    a_ub, b_ub = dense(ub)
    low = np.array(m.low + [0.0] * len(extra))
    high = np.array([min(h, cap) for h in m.high] + [1.0] * len(extra))
    return a_eq, b_eq, a_ub, b_ub, low, high


def solve_range(m: Model, v: int, integer: bool, mats=None) -> tuple[float, float]:
    """The least and greatest value of count ``v`` consistent with everything published."""
    a_eq, b_eq, a_ub, b_ub, low, high = mats or _matrices(m, integer)
    out = []
    for sign in (1.0, -1.0):
        c = np.zeros(a_eq.shape[1])
        c[v] = sign
        if integer:
            res = milp(
                c,
                constraints=[
                    LinearConstraint(a_eq, b_eq, b_eq),
                    LinearConstraint(a_ub, -np.inf, b_ub),
                ],  # fmt: skip
                bounds=Bounds(low, high),
                integrality=np.ones(len(c)),
            )
        else:
            res = linprog(c, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq,
                          bounds=list(zip(low, high, strict=True)), method="highs")  # fmt: skip
        if res.status != 0:
            raise AssertionError(f"the attacker's model has no solution ({res.message})")
        out.append(sign * res.fun)
    return out[0], out[1]


def values_left(lo: float, hi: float, primary: bool) -> int:
    """How many whole counts the range leaves: a primary count is 1-7 (already in the
    range); any other withheld count is 0 or at least 8."""
    lo, hi = int(np.ceil(lo - 1e-6)), int(np.floor(hi + 1e-6))
    if primary:
        return max(hi - lo + 1, 0)
    zero = 1 if lo <= 0 else 0
    return zero + max(hi - max(lo, SMALLEST_OVER) + 1, 0)


def disclosed(f: dict) -> bool:
    """Pinned to one value other than 0. A count pinned to 0 is one the rule releases (0
    is shown as 0): a count withheld not as primary, bounded to 0-7, is 0."""
    zero = not f["primary"] and f["lo"] < 1 - 1e-6 and f["hi"] < SMALLEST_OVER - 1e-6
    return f["left"] < 2 and not zero


def attack(result: ProgrammeResult, *, nesting: bool = False, integer: bool = True,
           margins_only: bool = True) -> list[dict]:  # fmt: skip
    """Each withheld count of the cross-tab (its margins, or all) with the attacker's
    range: ``lo``, ``hi`` and ``left`` (whole values the range leaves)."""
    m, targets = build(result, nesting)
    inverse = {v: k for k, v in m.index.items()}
    mats = _matrices(m, integer)
    found, done = [], set()
    for t in targets:
        if (margins_only and not t["margin"]) or t["var"] in done:
            continue
        done.add(t["var"])
        lo, hi = solve_range(m, t["var"], integer, mats)
        left = values_left(lo, hi, t["primary"])
        found.append({**t, "key": inverse[t["var"]], "lo": lo, "hi": max(hi, 0.0), "left": left})
    return found


def _describe(found: list[dict]) -> str:
    return "\n".join(
        f"  {f['where']}: {f['lo']:.2f}-{f['hi']:.2f} ({f['left']} value(s) left)" for f in found
    )


# -- the tests ----------------------------------------------------------------------------------


def _check(run: Run, found: list[dict]) -> None:
    """The attacker's model is sound: every true count lies in its range."""
    outside = [f for f in found if not f["lo"] - 1e-6 <= run.truth[f["key"]] <= f["hi"] + 1e-6]
    assert not outside, "true counts outside the attacker's range:\n" + _describe(outside)


def test_no_withheld_margin_of_the_crosstab_is_pinned(asthma_run):
    """Each margin the cross-tab withholds (for any reason) keeps at least two values, or
    is a 0 (which the rule releases), against an attacker who reads the cross-tab and the
    indicators side by side and solves the linear programmes."""
    found = attack(asthma_run.result, integer=False)
    _check(asthma_run, found)
    pinned = [f for f in found if disclosed(f)]
    assert not pinned, f"{len(pinned)} withheld margin(s) pinned:\n{_describe(pinned)}"


def test_no_withheld_count_of_the_crosstab_is_pinned_in_whole_numbers(asthma_run):
    """The same for every withheld count, margins and inner cells (the margins released by
    ``indicators`` are margins of the inner cells whether the cross-tab publishes them or
    not), against the integer programme's attacker, who can only pin more."""
    found = attack(asthma_run.result, margins_only=False)
    _check(asthma_run, found)
    pinned = [f for f in found if disclosed(f)]
    assert not pinned, f"{len(pinned)} withheld count(s) pinned:\n{_describe(pinned)}"


def test_the_attack_on_small_tables_worked_by_hand():
    """The attacker's arithmetic on tables small enough to work by hand. A margin withheld
    beside its released line of 10, 20 and 30 is 54-66 (each released count ± 2): 13
    values, not pinned; with exact counts (no rounding) it is pinned to 60. A count withheld
    as secondary beside a primary one (1-7) under a released total of 10 (8-12) is 1-11, so
    8-11 (its note says it is not 1-7): 4 values; under a total known to be 0-7 it is 0-6,
    so 0 (a zero, which the rule releases: not a disclosure)."""
    m = Model()
    cells = [m.publish(("c", i), v, None, "n", "") for i, v in enumerate((10, 20, 30))]
    margin = m.publish(("margin",), np.nan, "n secondary", "n", "")
    m.add_eq(margin, cells)
    for integer in (False, True):
        lo, hi = solve_range(m, margin, integer=integer)
        assert (round(lo), round(hi)) == (54, 66)
        assert values_left(lo, hi, primary=False) == 13
    exact = Model()
    cells = [exact.var(("c", i)) for i in range(3)]
    for c, v in zip(cells, (10, 20, 30), strict=True):
        exact.narrow(c, v, v)
    margin = exact.publish(("margin",), np.nan, "n secondary", "n", "")
    exact.add_eq(margin, cells)
    lo, hi = solve_range(exact, margin, integer=True)
    assert (round(lo), round(hi)) == (60, 60)
    assert disclosed(
        {"left": values_left(lo, hi, primary=False), "lo": lo, "hi": hi, "primary": False}
    )
    for total, want in ((10, (1, 11, 4)), (5, (0, 6, 1))):
        m = Model()
        small = m.publish(("s",), np.nan, "x primary", "x", "")
        other = m.publish(("o",), np.nan, "x secondary", "x", "")
        t = m.var(("t",))
        m.narrow(t, total - 2 if total > 5 else 0, total + 2)
        m.add_eq(t, [small, other])
        lo, hi = solve_range(m, other, integer=False)
        assert (round(lo), round(hi), values_left(lo, hi, primary=False)) == want
        assert not disclosed(
            {"left": values_left(lo, hi, primary=False), "lo": lo, "hi": hi, "primary": False}
        )
    assert values_left(1, 7, primary=True) == 7 and values_left(3, 3, primary=True) == 1


# -- the script: larger stores ----------------------------------------------------------------


def main(argv: list[str]) -> None:
    import tempfile
    import time

    patients, seed = int(argv[0]), int(argv[1])
    with tempfile.TemporaryDirectory() as tmp:
        start = time.time()
        run = run_asthma(Path(tmp) / "store", patients, seed)
        result = run.result
        print(f"{patients} patients, seed {seed}: run {time.time() - start:.0f} s")
        cross = aggregate(result, "pollution_by_deprivation")
        ind = aggregate(result, "indicators")
        reg = ind[(ind["indicator"] == "tier_high") & (ind["group"].astype(str) == "Total")]
        print(f"register Total released as {reg['denominator'].iloc[0]}; cross-tab "
              f"{int(cross['numerator'].isna().sum())} numerators and "
              f"{int(cross['denominator'].isna().sum())} denominators withheld "
              f"of {len(cross)} rows")  # fmt: skip
        for nesting in (False, True):
            for integer in (False, True):
                for margins_only in (True, False):
                    start = time.time()
                    found = attack(result, nesting=nesting, integer=integer,
                                   margins_only=margins_only)  # fmt: skip
                    _check(run, found)
                    pinned = [f for f in found if disclosed(f)]
                    zero = [f for f in found if f["left"] < 2 and not disclosed(f)]
                    narrow = [f for f in found if f["left"] < 5 and f not in zero]
                    what = "margins" if margins_only else "all withheld counts"
                    print(f"nesting={nesting} integer={integer} {what}: {len(found)} solved, "
                          f"{len(pinned)} pinned, {len(zero)} pinned to 0, {len(narrow)} other(s) "
                          f"with under 5 values left "
                          f"({time.time() - start:.1f} s)")  # fmt: skip
                    if pinned or narrow:
                        print(_describe(pinned + narrow))


if __name__ == "__main__":
    main(sys.argv[1:])
