"""release_proportions audits a withheld numerator with what the attacker knows of it: a
primary count lies in 1-7 (the rule is published), so two of 7 beside a released total of
14 are 7 each."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import linprog

from pophealth.disclosure import release_proportions


def _range(total: float, released: list[float], withheld: int, bounds) -> tuple[float, float]:
    """Least and greatest value of the first withheld cell, given the others' bounds and
    that all withheld cells add up to the total less the released ones (scipy, directly)."""
    c = np.zeros(withheld)
    c[0] = 1
    eq = (np.ones((1, withheld)), [total - sum(released)])
    lo = linprog(c, A_eq=eq[0], b_eq=eq[1], bounds=bounds, method="highs")
    hi = linprog(-c, A_eq=eq[0], b_eq=eq[1], bounds=bounds, method="highs")
    return lo.fun, -hi.fun


def test_two_primary_numerators_beside_a_released_total_are_not_pinned():
    table = pd.DataFrame(
        {
            "group": ["a", "b", "c", "d", "Total"],
            "x": [7, 7, 20, 30, 64],
            "n": [40, 40, 60, 80, 220],
        }
    )
    out = release_proportions(table, "x", "n", by=["group"], margins=["group"], total_label="Total")
    hidden = out["x"].isna().to_numpy()
    assert hidden[:2].all()
    # with only a and b withheld (the released total 64 and 20 + 30), each is pinned to 7
    assert _range(64, [20, 30], 2, [(1, 7), (1, 7)]) == (7, 7)
    # so a third numerator is withheld, and a is no longer pinned
    assert hidden.sum() >= 3
    released = [v for v, h in zip(table["x"][:4], hidden[:4], strict=True) if not h]
    k = int(hidden[:4].sum())
    bounds = [(1, 7), (1, 7)] + [(0, None)] * (k - 2)
    low, high = _range(64, released, k, bounds)
    assert low < high
