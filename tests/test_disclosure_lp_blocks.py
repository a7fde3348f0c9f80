"""The disclosure audit's test of whether a withheld cell is pinned to one value (one
linear programme per block of linked cells, then the equations' null space) against the
definition itself: for every primarily withheld cell, its least and greatest values over
every table consistent with the released cells and totals that reach it (through other
withheld cells), by two linear programmes. Random tables with totals, with and without a
bound on the withheld small counts, released exactly or rounded to 5 (which can leave no
consistent table at all)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linprog

from pophealth.disclosure import _pinned_cells


def _table(rng):
    n_rows, n_cols = int(rng.integers(1, 5)), int(rng.integers(1, 5))
    true = rng.choice([0, 1, 2, 3, 5, 8, 10, 20, 40], size=(n_rows, n_cols)).astype(float)
    grid = np.zeros((n_rows + 1, n_cols + 1))
    grid[:n_rows, :n_cols] = true
    grid[n_rows, :n_cols] = true.sum(0)
    grid[:n_rows, n_cols] = true.sum(1)
    grid[n_rows, n_cols] = true.sum()
    idx = np.arange(grid.size).reshape(grid.shape)
    values = grid.ravel()
    primary = (values >= 1) & (values <= 7)
    mask = primary | (rng.random(values.size) < rng.choice([0.0, 0.2, 0.5]))
    released = values.copy()
    if rng.random() < 0.5:
        released[~mask] = np.round(released[~mask] / 5) * 5
    sets = [(idx[r, :n_cols], int(idx[r, n_cols])) for r in range(n_rows + 1)]
    sets += [(idx[:n_rows, c], int(idx[n_rows, c])) for c in range(n_cols + 1)]
    bounds = (1, 7) if rng.random() < 0.7 else (0, np.inf)
    return sets, mask, primary, released, bounds


def _pinned_by_definition(sets, mask, primary, released, bounds) -> list[int]:
    hidden = list(np.flatnonzero(mask))
    a_eq, b_eq = [], []
    for cells, total in sets:
        row = np.zeros(len(hidden))
        rhs = 0.0
        for c in [*cells, total]:
            sign = -1.0 if c == total else 1.0
            if mask[c]:
                row[hidden.index(c)] += sign
            else:
                rhs -= sign * released[c]
        if row.any():
            a_eq.append(row)
            b_eq.append(rhs)
    if not a_eq:
        return []
    a_eq, b_eq = np.array(a_eq), np.array(b_eq)
    var_bounds = [bounds if primary[h] else (0, None) for h in hidden]
    pinned = []
    for j, h in enumerate(hidden):
        if not primary[h]:
            continue
        # the equations reaching cell j through withheld cells (those elsewhere in the
        # table say nothing about it, and rounding can make them inconsistent on their own)
        linked, rows = {j}, np.zeros(len(a_eq), dtype=bool)
        while True:
            reach = (a_eq[:, sorted(linked)] != 0).any(axis=1)
            grown = linked | set(np.flatnonzero((a_eq[reach] != 0).any(axis=0)))
            if grown == linked:
                rows = reach
                break
            linked = grown
        obj = np.zeros(len(hidden))
        obj[j] = 1.0
        a_j, b_j = a_eq[rows], b_eq[rows]
        lo = linprog(obj, A_eq=a_j, b_eq=b_j, bounds=var_bounds, method="highs")
        hi = linprog(-obj, A_eq=a_j, b_eq=b_j, bounds=var_bounds, method="highs")
        if lo.status == 0 and hi.status == 0 and (-hi.fun - lo.fun) < 1e-9:
            pinned.append(int(h))
    return pinned


@pytest.mark.parametrize("seed", range(4))
def test_pinned_cells_match_their_definition_on_random_tables(seed):
    rng = np.random.default_rng(seed)
    some_pinned = some_not = 0
    for _ in range(100):
        sets, mask, primary, released, bounds = _table(rng)
        expected = _pinned_by_definition(sets, mask, primary, released, bounds)
        assert _pinned_cells(sets, mask, primary, released, bounds) == expected
        some_pinned += bool(expected)
        some_not += bool((primary & mask).any()) and not expected
    assert some_pinned > 10 and some_not > 10  # both outcomes are exercised


def test_a_cell_pinned_by_its_bounds_alone():
    """x + y = 2 with both withheld counts at least 1: each is 1, though the equation alone
    leaves them free — the case the null-space shortcut cannot see, found by the fallback."""
    sets = [(np.array([0, 1]), 2)]
    mask = np.array([True, True, False])
    primary = np.array([True, True, False])
    released = np.array([np.nan, np.nan, 2.0])
    assert _pinned_cells(sets, mask, primary, released, (1, 7)) == [0, 1]
    released[2] = 10.0  # 3 + 7, 4 + 6, ...: neither is pinned
    assert _pinned_cells(sets, mask, primary, released, (1, 7)) == []
