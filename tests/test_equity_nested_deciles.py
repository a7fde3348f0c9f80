"""An equity view's IMD deciles add up to its quintiles and to Core20: the audit knows.

Each breakdown of an equity view is a table of its own to the margins' secondary
suppression, so a withheld decile could be given back by its quintile less its released
neighbour: decile 6 (5) withheld, decile 5 (30) and quintile 3 (35) released, gives 5 — to
the exact-count model the audit proves against (rounded, 35 − 30 = 1-9: all of 1-7, or 6-7
where the two are released 10 apart). Now the sets "deciles 1-2 = quintile 1 = Core20",
"deciles 3-10 = the rest" and "Unknown = Unknown" are additive sets of the audit too
(``release_proportions(nested=...)``). The intruder here is the audit's own exact-count
model with those sets added, by linear programming; before, it pinned decile 6 in the
first case and the Unknown group (6) in the second and third.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import linprog

from pophealth.disclosure import DisclosurePolicy, SharedCounts
from pophealth.equity import equity_view

#: numerators per IMD decile (denominators 210-300, all released)
X = {1: 40, 2: 33, 3: 21, 4: 26, 5: 30, 6: 5, 7: 52, 8: 44, 9: 61, 10: 70}


def _frame(x: dict, unknown: tuple[int, int] | None = None) -> pd.DataFrame:
    """Counts by IMD decile (``x``, denominators 210-300) and those with none (x, n)."""
    n = [200 + 10 * d for d in x]
    df = pd.DataFrame({"imd_decile": list(x), "x": list(x.values()), "n": n})
    if unknown is not None:
        df.loc[len(df)] = [np.nan, *unknown]
    return df


def _view(x: dict, unknown: tuple[int, int] | None = None, **kw) -> pd.DataFrame:
    frame = _frame(x, unknown)
    return equity_view(frame, "x", "n", breakdowns=["imd_quintile", "core20"], **kw).breakdowns


def _range(b: pd.DataFrame, exact: pd.DataFrame, target: tuple[str, object]) -> tuple:
    """The least and most the numerator of ``target`` (breakdown, group) can be, to the
    exact-count model: released numerators as they are (exactly), withheld ones 1-7 when
    primary, else 0 or more; each breakdown adds up to its Total, and the deciles to their
    quintiles, Core20 and the rest."""
    cells = list(zip(b["breakdown"], b["group"].astype(str), strict=True))
    col = {c: i for i, c in enumerate(cells)}
    value = dict(zip(cells, exact["numerator"], strict=True))
    a_eq, b_eq = [], []

    def add(parts: list, total: tuple) -> None:
        row = np.zeros(len(cells))
        for p in parts:
            row[col[p]] += 1
        row[col[total]] -= 1
        a_eq.append(row)
        b_eq.append(0.0)

    for name in b["breakdown"].unique():
        add([c for c in cells if c[0] == name and c[1] != "Total"], (name, "Total"))
    sums = {("imd_quintile", str(q)): [str(2 * q - 1), str(2 * q)] for q in range(1, 6)}
    sums |= {("core20", "Core20"): ["1", "2"], ("core20", "Rest"): list(map(str, range(3, 11)))}
    sums |= {("imd_quintile", "Unknown"): ["Unknown"], ("core20", "Unknown"): ["Unknown"]}
    for total, deciles in sums.items():
        parts = [("imd_decile", d) for d in deciles if ("imd_decile", d) in col]
        if total in col:
            add(parts, total)
    bounds = []
    for c, released, note in zip(cells, b["numerator"], b["disclosure_note"], strict=True):
        if not np.isnan(released):
            bounds.append((value[c], value[c]))
        elif "x primary" in str(note):
            bounds.append((1, 7))
        else:
            bounds.append((0, None))
    out = []
    for sign in (1, -1):
        c = np.zeros(len(cells))
        c[col[target]] = sign
        res = linprog(c, A_eq=np.array(a_eq), b_eq=b_eq, bounds=bounds, method="highs")
        assert res.status == 0
        out.append(round(sign * res.fun, 6))
    return out[0], out[1]


def _exact(x: dict, unknown: tuple[int, int] | None = None) -> pd.DataFrame:
    """The view with no disclosure control: every count as it is."""
    none = DisclosurePolicy(suppress_at_or_below=0, rounding="none", secondary=False)
    return _view(x, unknown, policy=none)


def test_a_withheld_decile_is_not_given_back_by_its_quintile():
    b = _view(X)
    decile = b[b["breakdown"] == "imd_decile"].set_index("group")
    assert np.isnan(decile.loc[6, "numerator"])
    low, high = _range(b, _exact(X), ("imd_decile", "6"))
    assert low < high, f"decile 6's numerator is exactly {low}"
    # the quintiles stay released (the SII across quintiles needs them); deciles are withheld
    quintile = b[b["breakdown"] == "imd_quintile"].set_index("group")
    assert quintile.loc[[1, 2, 3, 4, 5], "numerator"].notna().all()


def _no_primary_pinned(b: pd.DataFrame, exact: pd.DataFrame) -> None:
    cells = zip(b["breakdown"], b["group"], b["disclosure_note"], strict=True)
    for breakdown, group, note in cells:
        if "x primary" in str(note):
            low, high = _range(b, exact, (breakdown, str(group)))
            assert low < high, f"{breakdown} {group}'s numerator is exactly {low}"


def test_the_unknown_decile_is_the_unknown_quintile():
    """6 with no IMD decile (withheld) is the same count as the Unknown quintile and
    Core20 group: withheld in all three, each with one more group of its breakdown —
    chosen so that the deciles do not give it back (the quintile whose decile is withheld,
    not one whose deciles are released), and not the Total."""
    x = X | {6: 20}
    b = _view(x, unknown=(6, 40))
    unknown = b[b["group"].astype(str) == "Unknown"]
    assert len(unknown) == 3 and unknown["numerator"].isna().all()
    _no_primary_pinned(b, _exact(x, unknown=(6, 40)))
    assert b.loc[b["group"].astype(str) == "Total", "numerator"].notna().all()
    withheld = b[b["numerator"].isna()].groupby("breakdown").size()
    assert withheld.to_dict() == {"core20": 2, "imd_decile": 3, "imd_quintile": 2}


def test_a_withheld_decile_beside_an_unknown_one():
    """Decile 6 (5) and Unknown (6) both withheld: nothing pinned, the Total released."""
    b = _view(X, unknown=(6, 40))
    _no_primary_pinned(b, _exact(X, unknown=(6, 40)))
    assert b.loc[b["group"].astype(str) == "Total", "numerator"].notna().all()


def test_nothing_more_is_withheld_where_no_decile_is():
    b = _view(X | {6: 20})
    assert b["numerator"].notna().all()


def test_a_quintile_column_of_another_imd_is_a_breakdown_like_any_other():
    """The caller's own quintiles (here from another IMD: every area in quintile 3) do not
    add up from the deciles: no set says they do, and the view is built as before."""
    frame = _frame(X | {6: 20})
    frame["imd_quintile"] = 3
    b = equity_view(frame, "x", "n", breakdowns=["imd_quintile", "core20"]).breakdowns
    quintile = b[b["breakdown"] == "imd_quintile"].set_index("group")
    assert list(quintile.index) == [3, "Total"]
    assert quintile.loc[3, "numerator"] == quintile.loc["Total", "numerator"]


def test_imd_decile_named_as_a_breakdown_is_given_once():
    """``breakdowns=["imd_decile", ...]`` (it is added anyway, for the SII) gave each decile
    twice and failed on the comparison with the rest; it is one breakdown."""
    b = equity_view(_frame(X | {6: 20}), "x", "n", breakdowns=["imd_decile", "sex"]).breakdowns
    deciles = b[b["breakdown"] == "imd_decile"]
    assert len(deciles) == 11 and deciles["group"].is_unique


def test_core20s_cover_is_a_decile_of_the_rest_not_the_total():
    """Deciles 1 and 2 of 3 each (withheld), so Core20 (6) too, with the rest as its
    partner — which its released deciles would give back. The cell withheld to free it is
    a decile of the rest, not the Total (the register's, in every table of a run)."""
    x = {d: 0 if d <= 2 else 50 for d in range(1, 11)}
    frame = pd.DataFrame({"imd_decile": list(x), "x": list(x.values())})
    frame["n"] = [3, 3] + [100] * 8
    for breakdowns in (["core20"], ["imd_quintile", "core20"]):
        b = equity_view(frame, "x", "n", breakdowns=breakdowns).breakdowns
        total = b[b["group"].astype(str) == "Total"]
        assert total[["numerator", "denominator"]].notna().all().all(), breakdowns
        exact = equity_view(
            frame, "x", "n", breakdowns=breakdowns,
            policy=DisclosurePolicy(suppress_at_or_below=0, rounding="none", secondary=False),
        ).breakdowns  # fmt: skip
        _no_primary_pinned(b, exact)


def test_two_views_of_one_run_give_core20_and_quintile_1_as_one_count():
    """One view by Core20, another by IMD quintile, of the same counts in one run: Core20
    is quintile 1 and their Unknown groups are one — withheld in one view and released in
    the other, they would give each other back (Unknown = Total − Rest − quintile 1)."""
    frame = pd.DataFrame(
        {
            "imd_decile": [1, 2, 3, 4, 5, 7, 8, 10, np.nan],
            "x": [11, 23, 9, 11, 7, 1, 25, 20, 1],
            "n": [13, 47, 19, 15, 61, 9, 29, 23, 8],
        }
    )
    shared = SharedCounts()
    views = shared.settle(
        lambda s: [
            equity_view(frame, "x", "n", breakdowns=[b], shared=s, scope=("t.x", "t.n"))
            for b in ("core20", "imd_quintile")
        ]
    )
    by_core20, by_quintile = (v.breakdowns.set_index(["breakdown", "group"]) for v in views)
    for col in ("numerator", "denominator"):
        pairs = [
            (by_core20.loc[("core20", "Core20"), col], by_quintile.loc[("imd_quintile", 1), col]),
            (
                by_core20.loc[("core20", "Unknown"), col],
                by_quintile.loc[("imd_quintile", "Unknown"), col],
            ),
        ]
        for a, b in pairs:
            assert (np.isnan(a) and np.isnan(b)) or a == b, (col, a, b)
