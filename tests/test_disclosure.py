"""Disclosure control: one policy, primary + secondary suppression, rounding, released ratios.

Property tests (Hypothesis) check the two promises of PROGRAMMES.md §12.7: no released count
lies in 1-7, and no withheld value can be derived from released cells and totals (checked by
linear programming: the smallest and largest value a withheld cell could take, given every
published total, differ).
"""

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs
from scipy.optimize import linprog

from pophealth import disclosure
from pophealth.disclosure import DEFAULT_POLICY, DisclosurePolicy, release_proportions, round_counts
from pophealth.stats import proportion

POLICIES = [
    DEFAULT_POLICY,
    DisclosurePolicy(rounding="midpoint6"),
    DisclosurePolicy(rounding="none"),
]


def test_default_policy():
    assert DEFAULT_POLICY.suppress_at_or_below == 7
    assert DEFAULT_POLICY.rounding == "nearest5"
    assert "1-7" in DEFAULT_POLICY.describe()
    with pytest.raises(ValueError):
        DisclosurePolicy(rounding="nearest10")


def test_rounding_rules():
    x = np.arange(0, 26)
    mid = round_counts(x, DisclosurePolicy(rounding="midpoint6"))
    assert mid[0] == 0
    assert set(mid[1:7]) == {3} and set(mid[7:13]) == {9} and set(mid[13:19]) == {15}
    assert np.all((x[1:] >= mid[1:] - 2) & (x[1:] <= mid[1:] + 3))  # r-2 .. r+3
    n5 = round_counts(x, DEFAULT_POLICY)
    assert list(n5[[0, 2, 3, 7, 8, 12, 13, 22, 23]]) == [0, 0, 5, 5, 10, 10, 15, 20, 25]


def test_apply_primary_secondary_and_notes():
    df = pd.DataFrame({"ethnicity": ["A", "B", "C", "D"], "n": [3, 40, 52, 0]})
    out = disclosure.apply(df, ["n"], by=["ethnicity"], margins=["ethnicity"])
    assert np.isnan(out.loc[0, "n"]) and out.loc[0, "disclosure_note"] == "n primary"
    assert np.isnan(out.loc[1, "n"]) and out.loc[1, "disclosure_note"] == "n secondary"
    assert out.loc[2, "n"] == 50 and out.loc[3, "n"] == 0  # zero released, not used as cover
    # without margins there is nothing to recover from, so only primary suppression
    out2 = disclosure.apply(df, ["n"], by=["ethnicity"])
    assert out2["n"].isna().sum() == 1


def test_a_count_of_rows_from_few_patients_is_withheld_and_protected():
    """Attendances: 40 by 3 patients is withheld like a count of 3 (its patients are few),
    and, with a total row published, a second cell goes too — the audit may not assume the
    withheld 40 lies in 1-7. The patients columns are not released."""
    df = pd.DataFrame(
        {
            "site": ["A", "B", "C", "Total"],
            "attendances": [40, 52, 61, 153],
            "attending": [3, 30, 44, 77],
        }
    )
    out = disclosure.apply(
        df,
        ["attendances"],
        by=["site"],
        margins=["site"],
        total_label="Total",
        patients={"attendances": "attending"},
    )
    assert "attending" not in out.columns
    assert np.isnan(out.loc[0, "attendances"])
    assert out.loc[0, "disclosure_note"] == "attendances primary (few patients)"
    assert out["attendances"].isna().sum() == 2  # 153 − 52 − 61 would give 40 back
    withheld = out.loc[out["attendances"].isna(), "site"].tolist()
    assert withheld in (["A", "B"], ["A", "Total"])
    # the same through release_proportions, for a proportion of rows
    rows = pd.DataFrame({"x": [20, 30], "n": [40, 60], "px": [3, 25], "pn": [3, 25]})
    got = release_proportions(rows, "x", "n", patients={"x": "px", "n": "pn"})
    assert list(got.columns[:2]) == ["x", "n"] and "px" not in got and "pn" not in got
    assert got.loc[0, ["x", "n", "value"]].isna().all()
    assert got.loc[0, "disclosure_note"] == "x primary (few patients); n primary (few patients)"
    assert (got.loc[1, "x"], got.loc[1, "n"], got.loc[1, "value"]) == (30, 60, 50)


def test_total_row_is_withheld_when_no_other_cover():
    df = pd.DataFrame({"sex": ["F", "Total"], "n": [5, 5 + 0]})
    out = disclosure.apply(df, ["n"], by=["sex"], margins=["sex"], total_label="Total")
    assert out["n"].isna().all()
    df = pd.DataFrame({"sex": ["F", "M", "Total"], "n": [5, 0, 5]})
    out = disclosure.apply(df, ["n"], by=["sex"], margins=["sex"], total_label="Total")
    assert np.isnan(out.loc[0, "n"]) and (np.isnan(out.loc[1, "n"]) or np.isnan(out.loc[2, "n"]))


def test_release_proportions_recomputes_from_released_counts():
    df = pd.DataFrame(
        {
            "breakdown": ["sex", "sex", "imd", "imd", "imd"],
            "group": ["F", "M", "1", "2", "3"],
            "numerator": [5, 52, 98, 81, 3],
            "denominator": [100, 111, 100, 201, 6],
        }
    )
    out = release_proportions(
        df, "numerator", "denominator", by=["breakdown", "group"], margins=["group"]
    )
    # F: primary; M: secondary cover for F within the sex breakdown
    assert np.isnan(out.loc[0, "numerator"]) and np.isnan(out.loc[1, "numerator"])
    assert out.loc[1, "denominator"] == 110
    # imd 1: 98 of 100 -> complement 2 is disclosive; imd 3: denominator 6 withheld
    assert np.isnan(out.loc[2, "numerator"])
    assert np.isnan(out.loc[4, "denominator"]) and np.isnan(out.loc[4, "numerator"])
    # ... and imd 1's denominator covers imd 3's, so imd 1 is withheld entirely
    assert np.isnan(out.loc[2, "denominator"])
    # imd 2 released: value and Wilson CI from rounded 80/200, not the true 81/201
    assert out.loc[3, "numerator"] == 80 and out.loc[3, "denominator"] == 200
    ref = proportion(80, 200, multiplier=100)
    assert out.loc[3, "value"] == pytest.approx(ref.loc[0, "value"], rel=1e-12)
    assert out.loc[3, "upper99_8cl"] == pytest.approx(ref.loc[0, "upper99_8cl"], rel=1e-12)
    assert out["value"].isna().sum() == 4


def test_counts_must_be_whole_and_non_negative():
    with pytest.raises(ValueError, match="whole numbers"):
        disclosure.apply(pd.DataFrame({"n": [1.5]}), ["n"])
    with pytest.raises(ValueError, match="zero or more"):
        disclosure.apply(pd.DataFrame({"n": [-1]}), ["n"])


# --- properties -----------------------------------------------------------------------------

counts = hs.integers(min_value=0, max_value=60)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=hs.lists(counts, min_size=2, max_size=30),
    policy=hs.sampled_from(POLICIES),
)
def test_property_no_released_count_in_1_to_7(values, policy):
    df = pd.DataFrame({"g": range(len(values)), "n": values})
    out = disclosure.apply(df, ["n"], policy=policy, by=["g"], margins=["g"])
    released = out["n"].dropna().to_numpy()
    assert not np.any((released >= 1) & (released <= 7))


def _published_range(cells, hidden, primary, k, t):
    """Smallest and largest value withheld cell k can take given every released cell and
    total in the table (an attacker's linear programme; bounds 1..t for primary cells, and
    for the others what the attacker knows of a cell that would have been released: 0, or
    more than t — on the side the cell is on, as if the attacker could tell which)."""
    idx = {key: i for i, key in enumerate(np.flatnonzero(hidden))}
    a_eq, b_eq = [], []
    for members, total in cells:
        row = np.zeros(len(idx))
        rhs = 0.0
        for m in members:
            if hidden[m]:
                row[idx[m]] += 1
            else:
                rhs -= VALUES[m]
        if hidden[total]:
            row[idx[total]] -= 1
        else:
            rhs += VALUES[total]
        if row.any():
            a_eq.append(row)
            b_eq.append(rhs)
    bounds = [(1, t) if primary[h] else (t + 1, None) if VALUES[h] > t else (0, 0) for h in idx]
    obj = np.zeros(len(idx))
    obj[idx[k]] = 1
    lo = linprog(obj, A_eq=a_eq, b_eq=b_eq, bounds=bounds).fun
    hi = -linprog(-obj, A_eq=a_eq, b_eq=b_eq, bounds=bounds).fun
    return lo, hi


VALUES: np.ndarray = np.array([])


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shape=hs.tuples(hs.integers(2, 4), hs.integers(2, 4)),
    data=hs.data(),
)
def test_property_withheld_cells_not_derivable_from_totals(shape, data):
    global VALUES
    r, c = shape
    inner = np.array(
        data.draw(hs.lists(hs.integers(0, 40), min_size=r * c, max_size=r * c))
    ).reshape(r, c)
    # the published table carries its row, column and grand totals ("Total")
    full = np.zeros((r + 1, c + 1), dtype=int)
    full[:r, :c] = inner
    full[r, :c] = inner.sum(0)
    full[:r, c] = inner.sum(1)
    full[r, c] = inner.sum()
    rows = [*range(r), "Total"]
    cols = [*range(c), "Total"]
    df = pd.DataFrame(
        [(rows[i], cols[j], full[i, j]) for i in range(r + 1) for j in range(c + 1)],
        columns=["row", "col", "n"],
    )
    policy = DisclosurePolicy(rounding="none")
    out = disclosure.apply(
        df, ["n"], policy=policy, by=["row", "col"], margins=["row", "col"], total_label="Total"
    )
    hidden = out["n"].isna().to_numpy()
    VALUES = df["n"].to_numpy(dtype=float)
    primary = policy.primary_mask(VALUES)
    assert not np.any((out["n"] >= 1) & (out["n"] <= 7))
    pos = lambda i, j: i * (c + 1) + j  # noqa: E731
    sets = [([pos(i, j) for j in range(c)], pos(i, c)) for i in range(r + 1)]
    sets += [([pos(i, j) for i in range(r)], pos(r, j)) for j in range(c + 1)]
    for members, total in sets:  # no additive set with a lone withheld cell and its total shown
        if not hidden[total]:
            assert sum(hidden[m] for m in members) != 1
    for k in np.flatnonzero(primary & hidden):
        lo, hi = _published_range(sets, hidden, primary, k, policy.suppress_at_or_below)
        assert hi - lo > 1e-9, f"cell {divmod(k, c + 1)} of\n{full}\nis derivable"


def test_audit_is_capped_with_a_warning_on_very_large_tables():
    k = disclosure.MAX_AUDITED_CELLS // 2 + 10  # two withheld cells per area
    df = pd.DataFrame(
        {
            "area": np.repeat(np.arange(k), 3),
            "group": np.tile(["a", "b", "Total"], k),
            "n": np.tile([3, 50, 53], k),
        }
    )
    with pytest.warns(UserWarning, match="linear-programming audit"):
        out = disclosure.apply(
            df, ["n"], by=["area", "group"], margins=["group"], total_label="Total"
        )
    assert out.loc[out["group"] != "Total", "n"].isna().all()  # lone-cell rule still applied


def test_release_count_one_number():
    """A count shown on its own: withheld at 1-7, rounded otherwise, 0 released (the same
    rule as a table's cells)."""
    assert [disclosure.release_count(n) for n in (0, 1, 7, 8, 12, 13, 429)] == [
        0,
        None,
        None,
        10,
        10,
        15,
        430,
    ]
    exact = disclosure.DisclosurePolicy(rounding="none")
    assert disclosure.release_count(8, exact) == 8 and disclosure.release_count(3, exact) is None
    with pytest.raises(ValueError, match="whole numbers"):
        disclosure.release_count(2.5)


@pytest.mark.parametrize(
    "policy",
    [DEFAULT_POLICY, DisclosurePolicy(rounding="midpoint6"), DisclosurePolicy(rounding="none"),
     DisclosurePolicy(suppress_at_or_below=2), DisclosurePolicy(suppress_at_or_below=0)],
)  # fmt: skip
def test_the_window_of_a_released_count_is_every_count_released_so(policy):
    """``count_window``: for each released value, the fewest and the most of the exact
    counts 0-300 that the policy releases as it (worked out here by releasing each one)."""
    released: dict[int, list[int]] = {}
    for n in range(301):
        r = disclosure.release_count(n, policy)
        if r is not None:
            released.setdefault(r, []).append(n)
    shown = sorted(r for r in released if r <= 295)  # (windows cut short by 300 left out)
    lo, hi = disclosure.count_window(np.array(shown, dtype=float), policy)
    assert [(a, b) for a, b in zip(lo, hi, strict=True)] == [
        (min(released[r]), max(released[r])) for r in shown
    ]
    assert all(np.isnan(disclosure.count_window(np.array([np.nan]), policy)))


def test_count_text_for_a_console_line():
    assert [disclosure.count_text(n) for n in (0, 5, 8, 1234)] == ["0", "1-7", "about 10",
                                                                   "about 1,235"]  # fmt: skip
    exact = disclosure.DisclosurePolicy(rounding="none", suppress_zeros=True)
    assert disclosure.count_text(0, exact) == "0-7" and disclosure.count_text(9, exact) == "9"


def test_a_zero_withheld_in_another_table_is_not_protected_here():
    """Counts withheld in another table are protected here like primary cells — but a 0
    shows nothing a released 0 would not (zeros are released by the default policy), so
    that it can be worked out here withholds nothing more and warns of nothing. (With two
    zeros withheld elsewhere beside a released 0 and their total of 0, the audit found
    them "derivable" and, with no cell left to withhold, warned.)"""
    df = pd.DataFrame({"group": ["A", "B", "C", "Total"], "n": [0, 0, 0, 0]})
    elsewhere = np.array([True, True, False, False])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mask = disclosure.secondary_suppression(
            df, "n", np.zeros(4, bool), by=["group"], margins=["group"], total_label="Total",
            protect=elsewhere,
        )  # fmt: skip
    assert mask.tolist() == [True, True, False, False]


def test_counts_of_rows_withheld_for_few_patients_are_audited_as_1_or_more():
    """Admissions by practice with their total: A 1 row (1 patient, withheld for its few
    patients), B 8 rows of 8 patients (its second cell), C 8 (→ 10), total 17 (→ 15). A
    count withheld for its few patients may be any size from 1, and a second cell is not
    1-7 (it would have been withheld at first): A ≤ 17 − 8 − 8 = 1, exactly 1, unless more
    is withheld. (Audit 22: the audit took A as 0 or more and B as 0 or more.)"""
    table = pd.DataFrame(
        {
            "practice": ["A", "B", "C", "Total"],
            "events": [1, 8, 8, 17],
            "events_patients": [1, 8, 8, 17],
        }
    )
    out = disclosure.apply(
        table, ["events"], by=["practice"], margins=["practice"], total_label="Total",
        patients={"events": "events_patients"},
    )  # fmt: skip
    # the total is withheld: C withheld instead frees nothing (A + B + C = 17, B and C 8 or
    # more, leave A 1), so the audit takes the total, which does, and C is released
    assert out["events"].isna().tolist() == [True, True, False, True]
    assert out["disclosure_note"].tolist()[0] == "events primary (few patients)"
