"""equity_view: breakdowns, comparisons, gaps, SII — all from disclosure-controlled counts."""

import numpy as np
import pandas as pd
import pytest

from pophealth.disclosure import DisclosurePolicy
from pophealth.equity import TOTAL, equity_view, newcombe_difference
from pophealth.stats import proportion


def _data(seed=0, gradient=0.02, small_group=False):
    rng = np.random.default_rng(seed)
    rows = []
    for d in range(1, 11):
        for e in ["White", "Asian", "Black", None]:
            for s in ["F", "M"]:
                n = int(rng.integers(100, 400))
                rows.append((d, e, s, "18-39", int(rng.binomial(n, 0.5 + gradient * d)), n))
    if small_group:
        rows.append((5, "Roma", "F", "18-39", 3, 5))
    return pd.DataFrame(
        rows, columns=["imd_decile", "ethnicity", "sex", "age_band", "numerator", "denominator"]
    )


def test_newcombe_matches_published_example():
    # Newcombe (1998) Stat Med 17:873-90, table II example (a): 56/70 vs 48/80,
    # method 10 (hybrid score): difference 0.2000, 95% CI 0.0524 to 0.3339.
    d, lo, hi = newcombe_difference(np.array([56]), np.array([70]), np.array([48]), np.array([80]))
    assert d[0] == pytest.approx(0.2, rel=1e-12)
    assert lo[0] == pytest.approx(0.0524, abs=5e-5)
    assert hi[0] == pytest.approx(0.3339, abs=5e-5)


def test_breakdowns_recomputed_from_released_counts():
    view = equity_view(_data())
    b = view.breakdowns
    assert set(b["breakdown"]) == {
        "imd_quintile",
        "core20",
        "ethnicity",
        "sex",
        "age_band",
        "imd_decile",
    }
    assert (b["numerator"].dropna() % 5 == 0).all()  # rounded to nearest 5
    ref = proportion(b["numerator"], b["denominator"], multiplier=100)
    np.testing.assert_allclose(b["value"], ref["value"], rtol=1e-12)
    np.testing.assert_allclose(b["lower99_8cl"], ref["lower99_8cl"], rtol=1e-12)
    eth = b[b["breakdown"] == "ethnicity"]
    assert "Unknown" in set(eth["group"])  # missing ethnicity kept so totals reconcile
    totals = b[b["group"] == TOTAL]["denominator"]
    assert totals.nunique() == 1


def test_gradient_flags_gap_and_sii():
    view = equity_view(_data(gradient=0.03))
    q = view.breakdowns[view.breakdowns["breakdown"] == "imd_quintile"].set_index("group")
    assert q.loc[1, "flag"] == "significantly worse"
    assert q.loc[5, "flag"] == "significantly better"
    assert "Newcombe" in q.loc[1, "test"]
    core = view.breakdowns[view.breakdowns["breakdown"] == "core20"].set_index("group")
    assert core.loc["Core20", "numerator"] == q.loc[1, "numerator"]  # deciles 1-2 both ways
    g = view.gap.iloc[0]
    assert g["absolute_gap"] == pytest.approx(g["most_deprived_value"] - g["least_deprived_value"])
    assert g["absolute_gap_upper95_0cl"] < 0
    x1, n1 = q.loc[1, "numerator"], q.loc[1, "denominator"]
    x5, n5 = q.loc[5, "numerator"], q.loc[5, "denominator"]
    se = np.sqrt(1 / x1 - 1 / n1 + 1 / x5 - 1 / n5)  # Katz et al. 1978
    assert g["relative_gap_lower95_0cl"] == pytest.approx(
        (x1 / n1) / (x5 / n5) * np.exp(-1.959963984540054 * se), rel=1e-9
    )
    s = view.sii.iloc[0]
    assert s["value"] > 0 and s["lower95_0cl"] > 0  # rises from most to least deprived
    assert s["rii"] > 1
    flipped = equity_view(_data(gradient=0.03), higher_is_better=False)
    fq = flipped.breakdowns[flipped.breakdowns["breakdown"] == "imd_quintile"].set_index("group")
    assert fq.loc[1, "flag"] == "significantly better"


def test_small_group_withheld_with_cover_and_no_flag():
    view = equity_view(_data(small_group=True))
    eth = view.breakdowns[view.breakdowns["breakdown"] == "ethnicity"].set_index("group")
    assert np.isnan(eth.loc["Roma", "numerator"]) and np.isnan(eth.loc["Roma", "value"])
    assert eth.loc["Roma", "flag"] is None
    hidden = eth.drop(index=TOTAL)["numerator"].isna().sum()
    assert hidden >= 2  # secondary suppression inside the breakdown
    released = view.breakdowns["numerator"].dropna()
    assert not ((released >= 1) & (released <= 7)).any()


def test_no_deprivation_column_and_policy_choice():
    df = _data().drop(columns=["imd_decile"])
    view = equity_view(df, policy=DisclosurePolicy(rounding="midpoint6"))
    assert view.sii.empty
    assert any("imd_decile" in n for n in view.notes)
    assert (view.breakdowns["numerator"].dropna() % 6 == 3).all()
    with pytest.raises(ValueError, match="imd_decile must be 1-10"):
        equity_view(_data().assign(imd_decile=11))


def test_accepts_arrow_tables():
    import pyarrow as pa

    df = _data()
    a = equity_view(pa.Table.from_pandas(df), sii_repetitions=2000)
    b = equity_view(df, sii_repetitions=2000)
    pd.testing.assert_frame_equal(a.breakdowns, b.breakdowns)


def test_missing_non_numeric_or_negative_counts_are_errors_not_zeros():
    # summed, a non-numeric numerator counted as 0 while its denominator stayed in the total
    df = _data()
    bad = df.assign(numerator=df["numerator"].astype(object))
    bad.loc[3, "numerator"] = "n/a"
    with pytest.raises(ValueError, match=r"'numerator'.*row 3: 'n/a'"):
        equity_view(bad, sii_repetitions=2000)
    missing = df.assign(denominator=df["denominator"].astype(float))
    missing.loc[5, "denominator"] = np.nan
    with pytest.raises(ValueError, match=r"'denominator'.*row 5"):
        equity_view(missing, sii_repetitions=2000)
    negative = df.copy()
    negative.loc[0, "numerator"] = -50
    with pytest.raises(ValueError, match=r"row 0: -50"):
        equity_view(negative, sii_repetitions=2000)
    over = df.copy()
    over.loc[2, "numerator"] = over.loc[2, "denominator"] + 1
    with pytest.raises(ValueError, match=r"row 2"):
        equity_view(over, sii_repetitions=2000)


def test_why_there_is_no_sii_names_the_deciles_withheld_and_empty():
    """An SII needs released counts in every IMD decile. A view whose decile 3 holds 3
    patients (withheld, with a partner decile by secondary suppression) and with no one in
    decile 10: the reason names the withheld deciles and the empty one, and the table
    written in place of the SII is one row of missing figures whose ``method`` says so."""
    from pophealth.equity import SII_COLUMNS, sii_not_calculated, why_no_sii

    df = _data(seed=3)
    df = df[df["imd_decile"] != 10]
    small = (df["imd_decile"] == 3) & ~((df["ethnicity"] == "White") & (df["sex"] == "F"))
    df = df[~small].copy()
    df.loc[df["imd_decile"] == 3, ["numerator", "denominator"]] = [2, 3]
    view = equity_view(df, sii_repetitions=500)
    assert view.sii.empty
    dec = view.breakdowns[view.breakdowns["breakdown"] == "imd_decile"]
    withheld = sorted(int(g) for g in dec.loc[dec["numerator"].isna(), "group"])
    assert 3 in withheld and len(withheld) >= 2
    why = why_no_sii(view.breakdowns)
    listed = ", ".join(map(str, withheld[:-1])) + f" and {withheld[-1]}"
    assert why == (
        "not calculated: every IMD decile needs released counts "
        f"(deciles {listed} withheld by disclosure control; decile 10 with no one)"
    )
    table = sii_not_calculated(why, view.multiplier)
    assert list(table.columns) == list(SII_COLUMNS) and len(table) == 1
    assert table.loc[0, "method"] == why and table.loc[0, "statistic"] == "sii x 100"
    assert table.drop(columns=["method", "statistic"]).isna().all(axis=None)


def test_why_there_is_no_sii_across_quintiles():
    """The same reason across IMD quintiles (1-5): with no deprivation at all, every
    quintile has no one."""
    from pophealth.equity import why_no_sii

    view = equity_view(_data(), sii_repetitions=1000)
    assert why_no_sii(view.breakdowns.iloc[0:0], "imd_quintile") == (
        "not calculated: every IMD quintile needs released counts "
        "(quintiles 1, 2, 3, 4 and 5 with no one)"
    )
    assert why_no_sii(view.breakdowns, "imd_quintile") == (
        "not calculated: every IMD quintile needs released counts"
    )


def _practices_in_pcns() -> pd.DataFrame:
    """PCN P's four practices with 12 of 40 each, PCN Q's two with 20 of 50 each."""
    return pd.DataFrame(
        {
            "pcn": ["P"] * 4 + ["Q"] * 2,
            "practice": list("ABCDEF"),
            "numerator": [12, 12, 12, 12, 20, 20],
            "denominator": [40, 40, 40, 40, 50, 50],
        }
    )


def _pinned_practices(b: pd.DataFrame) -> list[str]:
    """The practices' numerators a reader fixes from the view's practice and PCN rows,
    knowing each practice's PCN: released r is r − 2 … r + 2, withheld 0 or more; the
    practices of a PCN add up to it (linear programmes, scipy's HiGHS)."""
    from scipy.optimize import linprog

    rows = b[b["group"] != TOTAL].set_index(["breakdown", "group"])["numerator"]
    names = list(rows.index)
    bounds = [(0, None) if np.isnan(v) else (v - 2, v + 2) for v in rows.to_numpy(float)]
    a_eq = []
    for pcn, members in (("P", "ABCD"), ("Q", "EF")):
        row = np.zeros(len(names))
        row[names.index(("pcn", pcn))] = -1
        for p in members:
            row[names.index(("practice", p))] = 1
        a_eq.append(row)
    fixed = []
    for i, (breakdown, group) in enumerate(names):
        if breakdown != "practice":
            continue
        c = np.zeros(len(names))
        c[i] = 1
        ends = [
            s * linprog(s * c, A_eq=np.array(a_eq), b_eq=np.zeros(2), bounds=bounds).fun
            for s in (1, -1)
        ]
        if ends[1] - ends[0] < 1e-6:
            fixed.append(group)
    return fixed


def test_practices_nested_in_their_pcn_are_audited_with_it():
    """Four practices of 12 (each released as 10: 8-12) beside their PCN's 48 (50: 48-52):
    released in one view by PCN and by practice, each breakdown adds up to the Total, but
    only ``nests`` tells the audit that the four practices add up to their PCN — without
    it every one of them is exactly 12; with it, the rounded counts are read with that
    set too, and a practice is withheld (with its partner), so none is fixed."""
    kw = {"breakdowns": (), "extra": ("pcn", "practice"), "sii_repetitions": 0}
    without = equity_view(_practices_in_pcns(), **kw).breakdowns
    assert without["numerator"].notna().all()
    assert _pinned_practices(without) == list("ABCD")
    nested = equity_view(_practices_in_pcns(), nests={"practice": "pcn"}, **kw).breakdowns
    assert nested["numerator"].isna().any()
    assert _pinned_practices(nested) == []


def test_a_practice_in_two_pcns_makes_no_set():
    """A practice found in two PCNs (a mistake in the data) is not taken as nested: the view
    is released as without ``nests``."""
    data = _practices_in_pcns()
    data.loc[len(data)] = ["Q", "A", 0, 5]
    kw = {"breakdowns": (), "extra": ("pcn", "practice"), "sii_repetitions": 0}
    a = equity_view(data, nests={"practice": "pcn"}, **kw).breakdowns
    b = equity_view(data, **kw).breakdowns
    pd.testing.assert_frame_equal(a, b)
