"""One count, one decision across the tables of a run (:class:`SharedCounts`), and the
``withhold=`` cells each table then withholds and protects."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pophealth.disclosure import SharedCounts, apply, count_keys, release_proportions


def _by_pcn() -> pd.DataFrame:
    return pd.DataFrame({"group": ["A", "B", "C", "Total"], "n": [40, 30, 55, 125]})


def test_a_count_withheld_elsewhere_is_withheld_and_not_left_alone():
    """PCN B (30) is withheld in another table. Withheld here alone, Total − A − C gives it
    back, so a second PCN goes too (the smallest, A); the notes say why."""
    out = apply(
        _by_pcn(), ["n"], by=["group"], margins=["group"], total_label="Total",
        withhold={"n": np.array([False, True, False, False])},
    )  # fmt: skip
    assert out["n"].isna().tolist() == [True, True, False, False]
    assert out["disclosure_note"].tolist()[:2] == [
        "n secondary",
        "n secondary (withheld in every table that gives it)",
    ]


def test_avoid_takes_a_count_no_other_table_gives_as_the_second_cell():
    out = apply(
        _by_pcn(), ["n"], by=["group"], margins=["group"], total_label="Total",
        withhold={"n": np.array([False, True, False, False])},
        avoid={"n": np.array([True, True, False, True])},
    )  # fmt: skip
    assert out["n"].isna().tolist() == [False, True, True, False]


def test_a_withheld_total_pinned_by_its_released_groups_is_protected():
    """The Total withheld elsewhere (as a PCN's total in the practice table): its groups,
    all released, would add up to it; the audit withholds one of them."""
    out = release_proportions(
        pd.DataFrame({"group": ["P1", "P2", "Total"], "x": [10, 12, 22], "n": [20, 20, 40]}),
        "x", "n", by=["group"], margins=["group"], total_label="Total",
        withhold={"n": np.array([False, False, True]), "x": np.array([False, False, True])},
    )  # fmt: skip
    assert out["n"].isna().tolist() == [True, False, True]
    assert out["x"].isna().tolist() == [True, False, True]
    assert out["value"].isna().tolist() == [True, False, True]


def test_withhold_must_match_the_table():
    with pytest.raises(ValueError, match="withhold\\['n'\\]: 2 values for a table of 4 rows"):
        apply(_by_pcn(), ["n"], withhold={"n": np.array([True, False])})


def test_count_keys_read_1_1_0_and_text_alike():
    keys = count_keys("s", ["imd_quintile"] * 4, [1.0, "1", np.nan, "Total"])
    assert keys == [("s", "imd_quintile", "1"), ("s", "imd_quintile", "1"),
                    ("s", "imd_quintile", "Unknown"), ("s", "Total")]  # fmt: skip


def test_settle_builds_again_until_no_new_count_is_withheld():
    """Table one (by PCN) withholds B on its own; table two gives B too, alone with nothing
    to protect, and would release it. Settled, both withhold B, and table one withholds A
    with it."""

    def build(shared: SharedCounts):
        first = _by_pcn().assign(n=[40, 3, 55, 98])
        keys = count_keys("reg", ["pcn"] * 4, first["group"])
        one = apply(first, ["n"], by=["group"], margins=["group"], total_label="Total",
                    **shared.masks({"n": keys}))  # fmt: skip
        shared.record(keys, one["n"], "one")
        second = pd.DataFrame({"group": ["B", "A"], "n": [3, 40]})
        keys2 = count_keys("reg", ["pcn"] * 2, second["group"])
        two = apply(second, ["n"], **shared.masks({"n": keys2}))
        shared.record(keys2, two["n"], "two")
        return one, two

    shared = SharedCounts()
    one, two = shared.settle(build)
    assert one["n"].isna().tolist() == [True, True, False, False]
    assert two["n"].isna().tolist() == [True, True]  # A withheld in table one: here too
    assert shared.passes == 2


def test_a_count_released_with_two_values_is_refused():
    shared = SharedCounts()
    shared.record([("s", "Total")], [10.0], "one")
    with pytest.raises(ValueError, match="released as 10 \\(one\\) and as 15 \\(two\\)"):
        shared.record([("s", "Total")], [15.0], "two")


def test_a_zero_withheld_elsewhere_is_not_audited_as_a_count_of_1_to_7():
    """Seven CVDPREVENT risk groups of 0, 0, 1, 0, 0, 1, 1 and their total 3, all withheld
    (the zeros for a complement in another release): the zeros are 0 or more to the
    attacker, not 1-7 (audited as 1-7, seven groups add up to at least 7 and pinned a total
    of at most 7 — the 50-patient demo warned that nothing was left to withhold)."""
    import warnings

    table = pd.DataFrame(
        {"group": ["1d", "1c", "1a", "1b", "1e", "0.1", "0.2", "Total"],
         "n": [0, 0, 1, 0, 0, 1, 1, 3]}
    )  # fmt: skip
    zeros = (table["n"] == 0).to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = apply(
            table, ["n"], by=["group"], margins=["group"], total_label="Total",
            withhold={"n": zeros},
        )  # fmt: skip
    assert out["n"].isna().all()
