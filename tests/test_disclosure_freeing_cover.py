"""Which cell the audit withholds to free a pinned one: a cell that frees it.

When the linear-programming audit of :func:`pophealth.disclosure.secondary_suppression`
finds a withheld count that the released cells fix, it withholds one more: the smallest
cell sharing a total with it (else one linked to it through totals). That cell need not be
what pins it. An equity view's IMD quintile 1, withheld because another table of the run
withholds it, is pinned by Core20 (deciles 1 and 2, as quintile 1 is): the same count,
released. The smallest cells near quintile 1 are the other quintiles and the deciles, none
of which frees it, and the audit took them one after another until it took the register's
total — withheld, with it, in every breakdown of every table that gives it. Now the audit
checks that the cell it takes frees the pinned one (with the partners the one-cell rule
then takes), and otherwise takes the first cell linked to it that does, groups before
totals, the smallest first.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import Bounds, LinearConstraint, milp

from pophealth import disclosure

QUINTILES = [17, 17, 32, 27, 37]
DECILES = [12, 5, 7, 10, 22, 10, 7, 20, 17, 20]  # 1-2 add up to quintile 1, and so on


def _view() -> tuple[pd.DataFrame, list]:
    """An equity view's denominators by IMD quintile, Core20 and IMD decile (130 on the
    register), each breakdown with its copy of the total, and the sets its deciles nest
    in (quintiles, Core20 = deciles 1-2, the rest = deciles 3-10)."""
    rows = [("imd_quintile", str(i + 1), v) for i, v in enumerate(QUINTILES)]
    rows += [("imd_quintile", "Total", 130), ("core20", "Core20", 17), ("core20", "Rest", 113)]
    rows += [("core20", "Total", 130)]
    rows += [("imd_decile", str(i + 1), v) for i, v in enumerate(DECILES)]
    rows += [("imd_decile", "Total", 130)]
    nested = [([9 + 2 * i, 10 + 2 * i], i) for i in range(5)]
    nested += [([9, 10], 6), (list(range(11, 19)), 7)]
    return pd.DataFrame(rows, columns=["breakdown", "group", "n"]), nested


def _suppress(frame: pd.DataFrame, nested: list, protect: np.ndarray) -> np.ndarray:
    values = frame["n"].to_numpy()
    return disclosure.secondary_suppression(
        frame,
        "n",
        disclosure.DEFAULT_POLICY.primary_mask(values),
        by=["breakdown", "group"],
        margins=["group"],
        total_label="Total",
        same_total_across="breakdown",
        nested=nested,
        protect=protect,
    )


def _ranges(frame: pd.DataFrame, nested: list, mask: np.ndarray, protect: np.ndarray):
    """Per withheld cell, the least and greatest whole count an intruder finds: released
    counts as they are (the audit's own, stricter reading), primary ones 1-7, those
    withheld elsewhere 0 or more, second cells 0 or 8 or more on the side they are on; the
    groups of each breakdown adding up to its total, the totals equal, deciles to their
    quintile, Core20 and the rest."""
    values = frame["n"].to_numpy(dtype=float)
    size = len(frame)
    primary = disclosure.DEFAULT_POLICY.primary_mask(values)
    lo, hi = values.copy(), values.copy()
    for i in np.flatnonzero(mask):
        if primary[i]:
            lo[i], hi[i] = 1, 7
        elif protect[i]:
            lo[i], hi[i] = 0, np.inf
        else:
            lo[i], hi[i] = (8, np.inf) if values[i] else (0, 0)
    labels = frame["group"].to_numpy()
    totals = [i for i in range(size) if labels[i] == "Total"]
    sets = []
    for t in totals:
        b = frame["breakdown"][t]
        sets.append(([i for i in range(size) if frame["breakdown"][i] == b and i != t], t))
    sets += nested
    rows = []
    for cells, total in sets:
        row = np.zeros(size)
        row[cells] = 1
        row[total] -= 1
        rows.append(row)
    for t in totals[1:]:
        row = np.zeros(size)
        row[totals[0]], row[t] = 1, -1
        rows.append(row)
    constraint = LinearConstraint(np.array(rows), 0, 0)
    out = {}
    for i in np.flatnonzero(mask):
        ends = []
        for sign in (1, -1):
            c = np.zeros(size)
            c[i] = sign
            res = milp(c, constraints=constraint, integrality=np.ones(size), bounds=Bounds(lo, hi))
            assert res.status == 0, res.message
            ends.append(sign * res.fun)
        out[int(i)] = tuple(ends)
    return out


def test_a_quintile_pinned_by_core20_is_freed_by_core20_not_by_the_total():
    """Quintiles 1 and 2 (17 each) withheld elsewhere; deciles 2, 3 and 7 (5, 7, 7) for
    their own sake. Quintile 1 is Core20's 17, released: pinned. Core20 is withheld, with
    the rest (113) as its partner — and the register's total stays released in all three
    breakdowns. (Taking the smallest cells near quintile 1 first had withheld 17 of the 20
    counts, the total among them.) No withheld count is fixed to one value."""
    frame, nested = _view()
    protect = np.zeros(len(frame), dtype=bool)
    protect[[0, 1]] = True
    mask = _suppress(frame, nested, protect)
    withheld = frame.loc[mask, ["breakdown", "group"]].apply(tuple, axis=1).tolist()
    assert ("core20", "Core20") in withheld
    assert not mask[frame["group"].to_numpy() == "Total"].any()
    assert mask.sum() <= 10, withheld
    for cell, (low, high) in _ranges(frame, nested, mask, protect).items():
        assert low < high, f"{frame.loc[cell, ['breakdown', 'group']].tolist()} is {low}"


def test_a_cell_that_frees_the_pinned_one_is_taken_as_before():
    """One decile of 5 withheld beside its pair's 12 and their quintile's 17: the smallest
    cell sharing a total with it (the 12: decile 1) frees it, as it always did — the check
    changes nothing where the nearest cell does."""
    frame, nested = _view()
    protect = np.zeros(len(frame), dtype=bool)
    mask = _suppress(frame, nested, protect)
    assert mask[9]  # decile 1 (12), the partner of decile 2's 5 in quintile 1
    for cell, (low, high) in _ranges(frame, nested, mask, protect).items():
        assert low < high, f"{frame.loc[cell, ['breakdown', 'group']].tolist()} is {low}"
