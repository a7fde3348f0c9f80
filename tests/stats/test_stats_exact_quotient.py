"""A published value is numerator × multiplier / denominator as one division: the double
nearest the exact quotient. 35 of 125 is 28 %, and a report or CSV must not say
28.000000000000004 (35 / 125 × 100 in floating point)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pophealth.disclosure import release_proportions
from pophealth.equity import equity_view
from pophealth.stats import proportion, rate

# whole counts whose x / n × 100 is not the double nearest x × 100 / n (35 of 125 among them)
X = np.array([35, 7, 11, 1, 3, 29])
N = np.array([125, 25, 20, 3, 7, 100])
EXACT = X * 100 / N  # one correctly rounded division of exact integers


def test_the_chosen_pairs_do_show_noise_the_other_way():
    assert 35 / 125 * 100 == 28.000000000000004
    assert (X / N * 100 != EXACT).sum() >= 3


def test_proportion_and_rate_values_are_one_division():
    assert proportion(X, N, 100)["value"].tolist() == EXACT.tolist()
    assert rate(X, N, 100)["value"].tolist() == EXACT.tolist()
    assert proportion(35, 125, 100)["value"].iloc[0] == 28.0


def test_released_proportions_are_one_division_of_the_released_counts():
    x, n = np.array([35, 70, 55, 110]), np.array([125, 250, 100, 275])
    df = pd.DataFrame({"g": list("abcd"), "x": x, "n": n})
    out = release_proportions(df, "x", "n", by=["g"])
    assert out["value"].tolist() == (x * 100 / n).tolist()
    assert out["value"].iloc[0] == 28.0


def test_equity_rest_of_population_value_is_one_division():
    df = pd.DataFrame(
        {
            "imd_quintile": [1, 2, 3, 4, 5],
            "numerator": [35, 20, 15, 15, 20],
            "denominator": [125, 60, 60, 65, 65],
        }
    )
    view = equity_view(df, breakdowns=["imd_quintile"], sii_repetitions=100)
    table = view.breakdowns
    rows = table[table["group"].astype(str) == "1"]
    assert len(rows) == 1
    # the rest of quintile 1: released totals minus its released counts, 70 of 250
    assert rows["rest_value"].iloc[0] == 28.0
    assert rows["value"].iloc[0] == 28.0
