"""The LSOA 2011 <-> 2021 rule on tiny hand-made lookups (one case per change flag),
then on the real official lookup: totals preserved exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pophealth.reference import crosswalk

# U: a1 -> b1; S: a2 -> b2, b3; M: a3, a4 -> b4; X: a5 -> b5, b6 and a6 -> b6
LOOKUP = pd.DataFrame(
    [
        ("a1", "b1", "U"),
        ("a2", "b2", "S"),
        ("a2", "b3", "S"),
        ("a3", "b4", "M"),
        ("a4", "b4", "M"),
        ("a5", "b5", "X"),
        ("a5", "b6", "X"),
        ("a6", "b6", "X"),
    ],
    columns=["lsoa11_code", "lsoa21_code", "chgind"],
)
POP11 = pd.Series({"a1": 1000, "a2": 3000, "a3": 1200, "a4": 800, "a5": 2000, "a6": 1000})
POP21 = pd.Series({"b1": 1010, "b2": 1000, "b3": 2000, "b4": 2100, "b5": 500, "b6": 2500})


@pytest.fixture
def pairs():
    return crosswalk.pair_weights(LOOKUP, POP11, POP21).set_index(["lsoa11_code", "lsoa21_code"])


def test_pair_weights(pairs):
    w = pairs["w"]
    assert w["a1", "b1"] == 1000  # unchanged: the whole 2011 population
    assert w["a2", "b2"] == pytest.approx(1000)  # split 3000 by pieces 1000 : 2000
    assert w["a2", "b3"] == pytest.approx(2000)
    assert w["a3", "b4"] == 1200 and w["a4", "b4"] == 800  # merge: each part whole
    assert w["a5", "b5"] == pytest.approx(2000 * 500 / 3000)  # redesign: approximation
    assert w["a5", "b6"] == pytest.approx(2000 * 2500 / 3000)
    assert w["a6", "b6"] == 1000


def test_counts_to_2021_preserve_totals_and_split(pairs):
    counts = pd.DataFrame({"code": POP11.index, "n": [10, 30, 12, 8, 20, 10]})
    out = crosswalk.apportion_counts(
        counts, "code", ["n"], pairs.reset_index(), to="2021"
    ).set_index("lsoa21_code")["n"]
    assert out.sum() == pytest.approx(90)
    assert out["b1"] == 10
    assert out["b2"] == pytest.approx(10) and out["b3"] == pytest.approx(20)  # split 1:2
    assert out["b4"] == pytest.approx(20)  # merge: sum of the parts
    assert out["b5"] == pytest.approx(20 / 6) and out["b6"] == pytest.approx(20 * 5 / 6 + 10)


def test_whole_counts_keep_every_source_total(pairs):
    # a2 = 7 people split 1:2 -> 2.33 and 4.67 -> 2 and 5; a5 = 5 split 1:5 -> 0.83 / 4.17
    # -> 1 and 4; every 2011 LSOA's people are all placed, in whole numbers
    counts = pd.DataFrame({"code": POP11.index, "n": [10, 7, 12, 8, 5, 10]})
    out = crosswalk.apportion_counts(
        counts, "code", ["n"], pairs.reset_index(), to="2021", whole=True
    ).set_index("lsoa21_code")["n"]
    assert out.to_dict() == {"b1": 10, "b2": 2, "b3": 5, "b4": 20, "b5": 1, "b6": 14}
    tie = crosswalk.pair_weights(LOOKUP, None, None)  # equal shares: 7 -> 3.5, 3.5
    out = crosswalk.apportion_counts(counts, "code", ["n"], tie, to="2021", whole=True)
    out = out.set_index("lsoa21_code")["n"]
    assert (out["b2"], out["b3"]) == (4, 3)  # the tie goes to the smaller code


def test_counts_to_2011(pairs):
    # households by 2021 LSOA back to 2011: a split's parent gets the sum of its pieces,
    # a merge is shared by the parts' populations (1200 : 800)
    counts = pd.DataFrame({"code": POP21.index, "h": [100, 40, 60, 50, 30, 90]})
    out = crosswalk.apportion_counts(
        counts, "code", ["h"], pairs.reset_index(), to="2011"
    ).set_index("lsoa11_code")["h"]
    assert out.sum() == pytest.approx(370)
    assert out["a2"] == pytest.approx(100)
    assert out["a3"] == pytest.approx(30) and out["a4"] == pytest.approx(20)


def test_rates_from_counts_keep_the_merged_rate(pairs):
    # a merged 2021 LSOA at 20 % gives both 2011 parts 20 %
    hh = pd.DataFrame({"code": ["b4"], "h": [50.0], "fp": [10.0]})
    out = crosswalk.apportion_counts(hh, "code", ["h", "fp"], pairs.reset_index(), to="2011")
    assert np.allclose(out["fp"] / out["h"], 0.2)


def test_values_to_2021(pairs):
    vals = pd.DataFrame({"code": POP11.index, "no2": [1.0, 0.5, 0.3, 0.8, 0.2, 0.6]})
    out = crosswalk.weighted_means(vals, "code", ["no2"], pairs.reset_index(), to="2021").set_index(
        "lsoa21_code"
    )["no2"]
    assert out["b1"] == 1.0
    assert out["b2"] == 0.5 and out["b3"] == 0.5  # pieces of a split keep the value
    assert out["b4"] == pytest.approx((0.3 * 1200 + 0.8 * 800) / 2000)  # pop-weighted
    w5, w6 = 2000 * 2500 / 3000, 1000
    assert out["b6"] == pytest.approx((0.2 * w5 + 0.6 * w6) / (w5 + w6))


def test_values_behind_one_value_keep_it_exactly():
    # 0.46 × w / w is 0.4600000000000001 for w = 1000/3: split pieces and merges of equal
    # values must keep the published value exactly, or ties (quintiles) break
    lookup = LOOKUP[LOOKUP["chgind"].isin(["S", "M"])]
    pop11 = pd.Series({"a2": 1000, "a3": 1200, "a4": 800})
    p = crosswalk.pair_weights(lookup, pop11, POP21)
    for x in np.round(np.arange(0.0, 2.0, 0.01), 2):
        vals = pd.DataFrame({"code": ["a2", "a3", "a4"], "v": [x, x, x]})
        out = crosswalk.weighted_means(vals, "code", ["v"], p, to="2021")
        assert (out["v"] == x).all(), (x, out["v"].tolist())
    vals = pd.DataFrame({"code": ["a3", "a4"], "v": [0.46, np.nan]})
    out = crosswalk.weighted_means(vals, "code", ["v"], p, to="2021")
    assert out.set_index("lsoa21_code").loc["b4", "v"] == 0.46


def test_values_skip_missing(pairs):
    vals = pd.DataFrame({"code": ["a3", "a4"], "v": [np.nan, 0.8]})
    out = crosswalk.weighted_means(vals, "code", ["v"], pairs.reset_index(), to="2021")
    assert out.set_index("lsoa21_code").loc["b4", "v"] == pytest.approx(0.8)


def test_categories_and_code_mapping(pairs):
    p = pairs.reset_index()
    cats = pd.DataFrame({"code": ["a3", "a4"], "ruc": ["urban", "rural"]})
    out = crosswalk.dominant_category(cats, "code", ["ruc"], p, to="2021")
    assert out.set_index("lsoa21_code").loc["b4", "ruc"] == "urban"  # heavier part (1200)
    mapped = crosswalk.map_codes(["a2", "a4", "b1", "zz", None], p, to="2021")
    assert mapped.tolist()[:3] == ["b3", "b4", "b1"]  # a2 -> its larger piece
    assert mapped.isna().tolist()[3:] == [True, True]  # unknown stays unknown


def test_unknown_populations_split_equally():
    pairs = crosswalk.pair_weights(LOOKUP, None, None).set_index(["lsoa11_code", "lsoa21_code"])
    assert pairs.loc[("a2", "b2"), "w"] == pairs.loc[("a2", "b3"), "w"] == 0.5
    assert pairs.loc[("a3", "b4"), "w"] == pairs.loc[("a4", "b4"), "w"] == 1.0


@pytest.mark.shared_data
def test_real_lookup_preserves_england_totals(lookup, population, fuel, shared_data):
    from pophealth.reference import loaders
    from tests.reference.conftest import real

    census = loaders.load_census_ethnicity(real(shared_data, "census_ts021"))
    pairs = crosswalk.pair_weights(
        lookup,
        population.set_index("lsoa_code")["total_population"],
        census.set_index("lsoa_code")["total"],
    )
    eng = population[population["lsoa_code"].str.startswith("E")]
    to21 = crosswalk.apportion_counts(eng, "lsoa_code", ["total_population"], pairs, to="2021")
    assert len(to21) == 33_755
    assert to21["total_population"].sum() == pytest.approx(56_550_138)
    to11 = crosswalk.apportion_counts(
        fuel, "lsoa21_code", ["households", "households_fuel_poor"], pairs, to="2011"
    )
    assert len(to11) == 32_844
    assert to11["households"].sum() == pytest.approx(24_568_372)
    assert to11["households_fuel_poor"].sum() == pytest.approx(2_801_647)
    # an unchanged LSOA keeps its exact count
    u = lookup[lookup["chgind"] == "U"]["lsoa11_code"].iloc[0]
    exact = fuel.set_index("lsoa21_code").loc[u, "households"]
    assert to11.set_index("lsoa11_code").loc[u, "households"] == pytest.approx(exact)
