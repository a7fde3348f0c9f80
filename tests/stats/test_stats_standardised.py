"""dsr, isratio, isr: PROGRAMMES.md §12.3 worked values and independent derivations."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from pophealth.stats import ESP2013, ESP2013_BANDS, StatsInputError, dsr, isr, isratio

BIG_X = [127, 25, 18, 21, 12, 27, 48, 27, 29, 32, 32, 34, 45, 65, 38, 68, 74, 82, 91]
BIG_N = [
    636,
    558,
    609,
    543,
    384,
    594,
    669,
    843,
    660,
    576,
    606,
    522,
    426,
    273,
    300,
    288,
    153,
    123,
    207,
]


def test_esp2013_constant():
    assert ESP2013.sum() == 100000
    assert len(ESP2013) == 19
    assert ESP2013[0] == 5000 and ESP2013[-1] == 1000


def test_dsr_matches_programmes_testdata_big():
    out = dsr(BIG_X, BIG_N, multiplier=10000)
    assert out.loc[0, "value"] == pytest.approx(1043.025, abs=5e-4)
    assert out.loc[0, "lower95_0cl"] == pytest.approx(971.771, abs=5e-4)
    assert out.loc[0, "upper95_0cl"] == pytest.approx(1117.894, abs=5e-4)
    assert out.loc[0, "method"] == "Dobson"
    assert out.loc[0, "statistic"] == "dsr per 10000"
    assert out.loc[0, "total_count"] == sum(BIG_X)


def _dobson_by_hand(x, n, w, c, mult):
    # Written out term by term from Dobson et al. (1991) with Byar's limits (Breslow & Day):
    obs = sum(x)
    W = sum(w)
    d = sum(xi * wi / ni for xi, ni, wi in zip(x, n, w, strict=True)) / W
    var = sum(xi * (wi / ni) ** 2 for xi, ni, wi in zip(x, n, w, strict=True)) / W**2
    z = st.norm.ppf(1 - (1 - c) / 2)
    lo_o = obs * (1 - 1 / (9 * obs) - z / (3 * obs**0.5)) ** 3
    hi_o = (obs + 1) * (1 - 1 / (9 * (obs + 1)) + z / (3 * (obs + 1) ** 0.5)) ** 3
    return (
        d * mult,
        (d + (var / obs) ** 0.5 * (lo_o - obs)) * mult,
        (d + (var / obs) ** 0.5 * (hi_o - obs)) * mult,
    )


def test_dsr_grouped_matches_hand_computation_and_suppresses_below_ten():
    rng = np.random.default_rng(3)
    x2 = rng.integers(0, 40, 19).tolist()
    n2 = rng.integers(500, 5000, 19).tolist()
    w = rng.integers(1000, 9000, 19).tolist()
    small = [0] * 18 + [9]
    df = pd.DataFrame(
        {
            "area": np.repeat(["A", "B", "C"], 19),
            "x": BIG_X + x2 + small,
            "n": BIG_N + n2 + BIG_N,
            "w": w * 3,
        }
    )
    out = dsr("x", "n", "w", data=df, by="area")
    for i, (xx, nn) in enumerate(((BIG_X, BIG_N), (x2, n2))):
        v, lo, hi = _dobson_by_hand(xx, nn, w, 0.95, 100000)
        assert out.loc[i, "value"] == pytest.approx(v, rel=1e-9)
        assert out.loc[i, "lower95_0cl"] == pytest.approx(lo, rel=1e-9)
        assert out.loc[i, "upper95_0cl"] == pytest.approx(hi, rel=1e-9)
        v, lo, hi = _dobson_by_hand(xx, nn, w, 0.998, 100000)
        assert out.loc[i, "upper99_8cl"] == pytest.approx(hi, rel=1e-9)
    assert np.isnan(out.loc[2, "value"]) and np.isnan(out.loc[2, "lower95_0cl"])
    assert out.loc[2, "reason"] == "total count is less than 10"
    assert out.loc[2, "total_count"] == 9


def test_dsr_invariant_to_scale_of_standard_population():
    a = dsr(BIG_X, BIG_N, ESP2013)
    b = dsr(BIG_X, BIG_N, ESP2013 * 3.7)
    np.testing.assert_allclose(a["value"], b["value"], rtol=1e-12)
    np.testing.assert_allclose(a["upper99_8cl"], b["upper99_8cl"], rtol=1e-12)


def test_dsr_default_esp_needs_nineteen_bands():
    with pytest.raises(StatsInputError, match="19 ESP2013 age bands"):
        dsr([10, 20], [100, 200])


def test_dsr_missing_numerator_gives_na():
    x = list(BIG_X)
    x[3] = np.nan
    out = dsr(x, BIG_N)
    assert np.isnan(out.loc[0, "value"])
    assert "missing" in out.loc[0, "reason"]


def test_dsr_non_independent_events():
    bands = list(range(19))
    # everyone with one event: identical to the independent calculation
    df1 = pd.DataFrame({"age": bands, "people": BIG_X, "n": BIG_N, "f": 1})
    a = dsr("people", "n", data=df1, independent_events=False, eventfreq="f", ageband="age")
    b = dsr(BIG_X, BIG_N)
    np.testing.assert_allclose(a["value"], b["value"], rtol=1e-12)
    np.testing.assert_allclose(a["lower95_0cl"], b["lower95_0cl"], rtol=1e-12)
    # half of the events from people with 2 events: same DSR, variance Σ x f² (w/n)² -> wider
    people1 = [x // 2 for x in BIG_X]
    events2 = [x - p for x, p in zip(BIG_X, people1, strict=True)]
    people2 = [e / 2 for e in events2]
    df2 = pd.DataFrame(
        {
            "age": bands * 2,
            "people": people1 + people2,
            "n": BIG_N * 2,
            "f": [1] * 19 + [2] * 19,
        }
    )
    c = dsr("people", "n", data=df2, independent_events=False, eventfreq="f", ageband="age")
    assert c.loc[0, "value"] == pytest.approx(b.loc[0, "value"], rel=1e-12)
    assert c.loc[0, "lower95_0cl"] < b.loc[0, "lower95_0cl"]
    assert c.loc[0, "upper95_0cl"] > b.loc[0, "upper95_0cl"]
    # hand: var = Σ (p1 + 4 p2)(w/n)² / W²
    W = ESP2013.sum()
    var = (
        sum(
            (p1 + 4 * p2) * (w / n) ** 2
            for p1, p2, w, n in zip(people1, people2, ESP2013, BIG_N, strict=True)
        )
        / W**2
    )
    obs = sum(BIG_X)
    z = st.norm.ppf(0.975)
    hi_o = (obs + 1) * (1 - 1 / (9 * (obs + 1)) + z / (3 * (obs + 1) ** 0.5)) ** 3
    expected = (b.loc[0, "value"] / 100000 + (var / obs) ** 0.5 * (hi_o - obs)) * 100000
    assert c.loc[0, "upper95_0cl"] == pytest.approx(expected, rel=1e-9)


def test_isratio_programmes_case_limits_relative_to_value():
    # PROGRAMMES §12.3: obs=895, E=835.88 -> ISRate 10011.1 (9365.9-10689.1). The ratio of each
    # limit to the value does not depend on the reference rate, so it can be checked directly.
    out = isratio([895], [835.88], [1.0], [1.0])
    assert out.loc[0, "expected"] == pytest.approx(835.88, rel=1e-12)
    assert out.loc[0, "value"] == pytest.approx(895 / 835.88, rel=1e-12)
    assert out.loc[0, "lower95_0cl"] / out.loc[0, "value"] == pytest.approx(
        9365.9 / 10011.1, abs=1e-5
    )
    assert out.loc[0, "upper95_0cl"] / out.loc[0, "value"] == pytest.approx(
        10689.1 / 10011.1, abs=1e-5
    )
    ref_rate = 10011.1 * 835.88 / 895 / 100000  # the reference rate implied by the worked case
    rate_out = isr([895], [835.88 / ref_rate], [ref_rate * 1e6], [1e6])
    assert rate_out.loc[0, "expected"] == pytest.approx(835.88, rel=1e-12)
    assert rate_out.loc[0, "value"] == pytest.approx(10011.1, rel=1e-12)
    assert rate_out.loc[0, "lower95_0cl"] == pytest.approx(9365.9, abs=0.05)
    assert rate_out.loc[0, "upper95_0cl"] == pytest.approx(10689.1, abs=0.05)


def test_isratio_expected_counts_and_exact_small_counts():
    x_ref = [10, 50, 200]
    n_ref = [10000, 8000, 4000]
    df = pd.DataFrame(
        {"area": ["A"] * 3 + ["B"] * 3, "x": [0, 2, 3, 10, 40, 300], "n": [1000, 500, 100] * 2}
    )
    out = isratio("x", "n", x_ref, n_ref, data=df, by="area", refvalue=100)
    E = sum(n * xr / nr for n, xr, nr in zip([1000, 500, 100], x_ref, n_ref, strict=True))
    assert out.loc[0, "expected"] == pytest.approx(E, rel=1e-12)
    assert out.loc[0, "observed"] == 5
    assert out.loc[0, "method"] == "Exact" and out.loc[1, "method"] == "Byars"
    lo = out.loc[0, "lower95_0cl"] * E / 100
    assert st.poisson.sf(4, lo) == pytest.approx(0.025, rel=1e-9)
    assert out.loc[0, "statistic"] == "indirectly standardised ratio x 100"


def test_isr_field_reference_and_observed_totals():
    df = pd.DataFrame(
        {
            "area": ["A", "A", "B", "B"],
            "x": [5, 7, 1, 30],
            "n": [100, 200, 150, 300],
            "xr": [50, 70, 50, 70],
            "nr": [1000, 1000, 1000, 1000],
        }
    )
    out = isr("x", "n", "xr", "nr", data=df, by="area", refpoptype="field", multiplier=1000)
    E_A = 100 * 0.05 + 200 * 0.07
    assert out.loc[0, "value"] == pytest.approx(12 / E_A * (120 / 2000) * 1000, rel=1e-12)
    totals = pd.DataFrame({"area": ["A", "B"], "obs": [20, 40]})
    out2 = isratio(
        "x", "n", "xr", "nr", data=df, by="area", refpoptype="field", observed_totals=totals
    )
    assert out2.loc[0, "value"] == pytest.approx(20 / E_A, rel=1e-12)


def test_dsr_orders_text_age_band_labels_by_start_age():
    # The ESP2013 labels sort as text '0-4', '10-14', ..., '5-9': weights must follow the start
    # age, so labelled (and shuffled) bands give PROGRAMMES §12.3's 1043.025 (971.771-1117.894).
    df = pd.DataFrame({"band": list(ESP2013_BANDS), "x": BIG_X, "n": BIG_N})
    shuffled = df.sample(frac=1, random_state=4)
    for frame in (df, shuffled):
        out = dsr("x", "n", data=frame, ageband="band", multiplier=10000)
        assert out.loc[0, "value"] == pytest.approx(1043.025, abs=5e-4)
        assert out.loc[0, "lower95_0cl"] == pytest.approx(971.771, abs=5e-4)
        assert out.loc[0, "upper95_0cl"] == pytest.approx(1117.894, abs=5e-4)
    people = df.rename(columns={"x": "people"}).assign(f=1)
    c = dsr(
        "people", "n", data=people, independent_events=False, eventfreq="f", ageband="band",
        multiplier=10000,
    )  # fmt: skip
    assert c.loc[0, "value"] == pytest.approx(1043.025, abs=5e-4)
    with pytest.raises(StatsInputError, match="start age"):
        dsr("x", "n", data=df.assign(band="adults"), ageband="band")


def test_dsr_refuses_negative_standard_population():
    w = ESP2013.copy()
    w[2] = -5500
    with pytest.raises(StatsInputError, match="standard populations"):
        dsr(BIG_X, BIG_N, w)


def test_dsr_non_independent_missing_count_gives_na_not_zero():
    df = pd.DataFrame({"age": range(19), "people": BIG_X, "n": BIG_N, "f": 1.0})
    df.loc[3, "people"] = np.nan
    out = dsr("people", "n", data=df, independent_events=False, eventfreq="f", ageband="age")
    assert np.isnan(out.loc[0, "value"]) and np.isnan(out.loc[0, "upper95_0cl"])
    assert "missing" in out.loc[0, "reason"]
    df.loc[3, "people"] = BIG_X[3]
    df.loc[5, "f"] = np.nan
    out = dsr("people", "n", data=df, independent_events=False, eventfreq="f", ageband="age")
    assert np.isnan(out.loc[0, "value"])


def test_isratio_missing_reference_value_gives_na_not_a_smaller_expected():
    df = pd.DataFrame(
        {
            "area": ["A"] * 3 + ["B"] * 3,
            "x": [1, 2, 30, 1, 2, 30],
            "n": [100, 200, 300] * 2,
            "xr": [10, np.nan, 30, 10, 20, 30],
            "nr": [1000] * 6,
        }
    )
    out = isratio("x", "n", "xr", "nr", data=df, by="area", refpoptype="field")
    assert np.isnan(out.loc[0, "expected"]) and np.isnan(out.loc[0, "value"])
    assert np.isnan(out.loc[0, "upper95_0cl"]) and out.loc[0, "method"] is None
    assert out.loc[1, "value"] == pytest.approx(33 / (1 + 4 + 9), rel=1e-12)
    rate_out = isr("x", "n", "xr", "nr", data=df, by="area", refpoptype="field")
    assert np.isnan(rate_out.loc[0, "value"])
    vec = isratio([1, 2, 3], [10, 10, 10], [1, np.nan, 1], [10, 10, 10])
    assert np.isnan(vec.loc[0, "value"])


def test_isratio_no_expected_events_is_na_not_infinite():
    out = isratio([1, 2, 3], [0, 0, 0], [1, 1, 1], [10, 10, 10], refvalue=100)
    assert out.loc[0, "expected"] == 0
    assert np.isnan(out.loc[0, "value"]) and np.isnan(out.loc[0, "upper95_0cl"])
    assert out.loc[0, "method"] is None
