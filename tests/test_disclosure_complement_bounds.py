"""A numerator withheld for its complement says so ("numerator complement"): the intruder
then knows n − x is 1-7, so x lies within n − 7 .. n − 1 of its released denominator. The
audit treated such a numerator as any count of 0 or more, and so missed what it gives
back beside the others (found by the thirtieth session's equity hunt, model gap A):

    practice A: 58 of 59 (withheld: its complement, 1, is 1-7), so x_A is 52-58;
    practice B: 7 of 30 (withheld: 1-7);
    practice C: 20 of 40; all three: 85 of 129 (released).

A + B = 85 − 20 = 65, and A is at most 58, so B is at least 7: exactly 7 — and A 58, its
complement exactly 1. Now the audit knows the complement's bounds and withholds one more.

The intruder is the audit's own (exact counts, Cox 1980): released counts as they are, a
numerator withheld at first 1-7, one withheld for its complement n − 7 .. n − 1 where n
is released, any other withheld count 0 or more.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import linprog

from pophealth.disclosure import release_proportions


def _table(rows: list[tuple[str, int, int]]) -> pd.DataFrame:
    table = pd.DataFrame(rows, columns=["group", "x", "n"])
    total = pd.DataFrame([("Total", table["x"].sum(), table["n"].sum())], columns=table.columns)
    return pd.concat([table, total], ignore_index=True)


def _ranges(table: pd.DataFrame, out: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """Each withheld numerator's least and greatest value to the intruder."""
    x = table["x"].to_numpy(dtype=float)
    n = table["n"].to_numpy(dtype=float)
    cells = len(table) - 1
    bounds = []
    for i in range(len(table)):
        note = str(out["disclosure_note"].iloc[i])
        if not np.isnan(out["x"].iloc[i]):
            bounds.append((x[i], x[i]))
        elif "x primary" in note:
            bounds.append((1, 7))
        elif "x complement" in note and not np.isnan(out["n"].iloc[i]):
            bounds.append((n[i] - 7, n[i] - 1))
        else:
            bounds.append((0, None))
    a_eq = np.zeros((1, len(table)))
    a_eq[0, :cells], a_eq[0, cells] = 1, -1  # the groups add up to the total
    out_ranges = {}
    for i in range(cells):
        if bounds[i][0] == bounds[i][1]:
            continue
        ends = []
        for sign in (1, -1):
            c = np.zeros(len(table))
            c[i] = sign
            res = linprog(c, A_eq=a_eq, b_eq=[0.0], bounds=bounds, method="highs")
            assert res.status == 0, res.message
            ends.append(sign * res.fun)
        out_ranges[table["group"].iloc[i]] = (ends[0], ends[1])
    return out_ranges


def _release(table: pd.DataFrame) -> pd.DataFrame:
    return release_proportions(
        table, "x", "n", by=["group"], margins=["group"], total_label="Total"
    )


def test_a_complement_withheld_beside_a_primary_does_not_pin_it():
    table = _table([("A", 58, 59), ("B", 7, 30), ("C", 20, 40)])
    out = _release(table)
    notes = out["disclosure_note"].astype(str).tolist()
    assert "x complement" in notes[0] and "x primary" in notes[1]
    ranges = _ranges(table, out)
    assert {"A", "B"} <= set(ranges)
    for group, (lo, hi) in ranges.items():
        assert hi - lo > 1e-6, f"{group}'s numerator is exactly {lo:g}"


def test_without_the_complements_bounds_the_primary_was_pinned():
    """The intruder's reasoning, on the old release (A and B withheld, the rest shown)."""
    table = _table([("A", 58, 59), ("B", 7, 30), ("C", 20, 40)])
    old = table.assign(x=[np.nan, np.nan, 20, 85]).astype({"x": float})
    old["disclosure_note"] = ["x complement", "x primary", None, None]
    assert _ranges(table, old)["B"] == pytest.approx((7, 7))


def test_a_complement_whose_denominator_is_withheld_is_any_count():
    """Where the denominator is withheld too, nothing bounds the numerator: A's n
    withheld (with B's, both 1-7) leaves A's x 0 or more, and no extra cell is needed
    beyond the denominators' own protection."""
    table = _table([("A", 5, 6), ("B", 3, 7), ("C", 20, 40), ("D", 30, 50)])
    out = _release(table)
    assert out["n"].iloc[:2].isna().all()
    for group, (lo, hi) in _ranges(table, out).items():
        assert hi - lo > 1e-6, f"{group}'s numerator is exactly {lo:g}"
