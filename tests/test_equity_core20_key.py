"""Core20 (IMD deciles 1-2) and IMD quintile 1 (deciles 1-2) are one count in an equity
view. Withheld as one and released as the other, the withheld copy protects nothing: the
view keys them as one count, so a run withholds both or releases both with one value."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pophealth.disclosure import SharedCounts
from pophealth.equity import equity_view

# a small unknown-decile group (primary) makes each breakdown withhold a second cell: in
# the Core20 breakdown that is Core20 (120, smaller than the rest), in the quintile
# breakdown quintile 3 (100), so quintile 1 (also 120) would stay released
DATA = pd.DataFrame(
    {
        "imd_decile": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, None],
        "numerator": [30, 30, 30, 30, 20, 20, 30, 30, 30, 30, 2],
        "denominator": [60, 60, 75, 75, 50, 50, 75, 75, 75, 75, 5],
    }
)


def _view():
    def build(shared):
        return equity_view(
            DATA,
            breakdowns=["imd_quintile", "core20"],
            shared=shared,
            scope=("test.x", "test.n"),
            sii_repetitions=100,
        )

    return SharedCounts().settle(build)


def _row(b: pd.DataFrame, breakdown: str, group: str) -> pd.Series:
    labels = b["group"].map(lambda g: str(int(g)) if isinstance(g, float) else str(g))
    (i,) = np.flatnonzero((b["breakdown"] == breakdown) & (labels == group))
    return b.iloc[i]


def test_core20_and_quintile_1_get_one_decision():
    b = _view().breakdowns
    core20, q1 = _row(b, "core20", "Core20"), _row(b, "imd_quintile", "1")
    for col in ("numerator", "denominator"):
        both_withheld = pd.isna(core20[col]) and pd.isna(q1[col])
        assert both_withheld or core20[col] == q1[col], (col, core20[col], q1[col])
