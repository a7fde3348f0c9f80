"""The numerators and denominators of a proportion read together (model gap B of the
thirtieth session's equity hunt).

Each column's audit read its own cells and total. Together they say more — a numerator is
at most its denominator:

    A: 7 of 30 (numerator withheld, 1-7)
    B: 5 of 5 (denominator withheld, 1-7; its numerator with it)
    C: 10 of 10 (denominator withheld as B's second cell; its numerator with it)
    D: 20 of 40, E: 25 of 50; all: 67 of 135 (released)

The numerators say A + B + C = 22, the denominators B + C = 15 — so B and C's numerators
are 15 at most, and A's 7 at least: exactly 7. Now ``release_proportions`` reads the two
columns as one linear programme (each numerator at most its denominator, and n − x 1-7
where a numerator is withheld for its complement) and withholds one more cell.

The intruder: every released count as it is; a count withheld at first 1-7; a numerator
withheld for its complement n − 7 .. n − 1; any other withheld count 0 or more; each
numerator at most its denominator; groups adding up to the total.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import linprog

from pophealth.disclosure import release_proportions

ROWS = [("A", 7, 30), ("B", 5, 5), ("C", 10, 10), ("D", 20, 40), ("E", 25, 50)]


def _table(rows) -> pd.DataFrame:
    table = pd.DataFrame(rows, columns=["group", "x", "n"])
    total = pd.DataFrame([("Total", table["x"].sum(), table["n"].sum())], columns=table.columns)
    return pd.concat([table, total], ignore_index=True)


def _release(table: pd.DataFrame) -> pd.DataFrame:
    return release_proportions(
        table, "x", "n", by=["group"], margins=["group"], total_label="Total"
    )


def _ranges(table: pd.DataFrame, out: pd.DataFrame) -> dict[tuple[str, str], tuple[float, float]]:
    """Each withheld count's least and greatest value to the intruder (variables: every
    row's x, then every row's n)."""
    rows = len(table)
    exact = np.r_[table["x"].to_numpy(float), table["n"].to_numpy(float)]
    shown = np.r_[out["x"].to_numpy(float), out["n"].to_numpy(float)]
    notes = out["disclosure_note"].astype(str).tolist()
    bounds = []
    for v in range(2 * rows):
        col, i = ("x", v) if v < rows else ("n", v - rows)
        if not np.isnan(shown[v]):
            bounds.append((exact[v], exact[v]))
        elif f"{col} primary" in notes[i]:
            bounds.append((1, 7))
        else:
            bounds.append((0, None))
    a_eq, a_ub, b_ub = [], [], []
    for col in (0, 1):  # the groups add up to the total
        row = np.zeros(2 * rows)
        row[col * rows : col * rows + rows - 1] = 1
        row[col * rows + rows - 1] = -1
        a_eq.append(row)
    for i in range(rows):
        row = np.zeros(2 * rows)
        row[i], row[rows + i] = 1, -1  # x <= n
        a_ub.append(row)
        b_ub.append(0.0)
        if "x complement" in notes[i]:  # n - x <= 7, and >= 1
            a_ub.append(-row)
            b_ub.append(7.0)
            a_ub.append(row)
            b_ub.append(-1.0)
    out_ranges = {}
    for v in range(2 * rows):
        if bounds[v][0] == bounds[v][1]:
            continue
        ends = []
        for sign in (1, -1):
            c = np.zeros(2 * rows)
            c[v] = sign
            res = linprog(
                c, A_ub=np.array(a_ub), b_ub=b_ub, A_eq=np.array(a_eq), b_eq=[0.0, 0.0],
                bounds=bounds, method="highs",
            )  # fmt: skip
            if res.status == 3:  # unbounded: not pinned
                ends.append(sign * np.inf)
                continue
            assert res.status == 0, res.message
            ends.append(sign * res.fun)
        col, i = ("x", v) if v < rows else ("n", v - rows)
        out_ranges[(col, table["group"].iloc[i])] = (ends[0], ends[1])
    return out_ranges


def test_a_numerator_is_not_pinned_by_the_denominators_beside_it():
    table = _table(ROWS)
    out = _release(table)
    notes = out["disclosure_note"].astype(str).tolist()
    assert "x primary" in notes[0] and "n primary" in notes[1]
    ranges = _ranges(table, out)
    assert ("x", "A") in ranges
    for cell, (lo, hi) in ranges.items():
        if cell[1] != "Total":
            assert hi - lo > 1e-6, f"{cell} is exactly {lo:g}"


def test_each_column_alone_left_it_pinned():
    """The release before: A, B and C's numerators and B and C's denominators withheld, the
    rest shown — A's numerator is 7 to anyone reading both columns."""
    table = _table(ROWS)
    old = table.astype({"x": float, "n": float})
    old.loc[0:2, "x"] = np.nan
    old.loc[1:2, "n"] = np.nan
    old["disclosure_note"] = [
        "x primary", "x with denominator; n primary", "x with denominator; n secondary",
        None, None, None,
    ]  # fmt: skip
    assert _ranges(table, old)[("x", "A")] == pytest.approx((7, 7))


def test_a_complement_read_with_its_withheld_denominator():
    """A numerator withheld for its complement stays n − 7 .. n − 1 when its denominator
    is withheld too: nothing pinned beside primary denominators either."""
    table = _table([("A", 3, 5), ("B", 30, 33), ("C", 6, 20), ("D", 20, 40), ("E", 25, 50)])
    out = _release(table)
    for cell, (lo, hi) in _ranges(table, out).items():
        if cell[1] != "Total":
            assert hi - lo > 1e-6, f"{cell} is exactly {lo:g}"
