"""life_expectancy: Chiang II with Silcocks' final-interval variance, checked by hand."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from pophealth.stats import LE_AGE_BANDS, StatsInputError, life_expectancy

POPS = [
    7060,
    35059,
    46974,
    48489,
    43219,
    38561,
    46009,
    57208,
    61435,
    55601,
    50209,
    56416,
    46411,
    39820,
    37978,
    37039,
    33288,
    23306,
    11936,
    11936,
]
DEATHS = [17, 9, 4, 8, 20, 15, 24, 33, 50, 71, 100, 163, 263, 304, 536, 872, 1390, 1605, 1936, 1937]


def _df(pops=POPS, deaths=DEATHS):
    return pd.DataFrame({"age": list(LE_AGE_BANDS), "pops": pops, "deaths": deaths})


def test_final_open_interval_by_hand():
    # e(90+) = 1/M and var = 1/(M² D) (Silcocks et al 2001) - independent of earlier bands.
    out = life_expectancy("deaths", "pops", "age", data=_df())
    m = 1937 / 11936
    e = 1 / m
    se = np.sqrt(1 / (m**2 * 1937))
    row = out[out["startage"] == 90].iloc[0]
    assert row["value"] == pytest.approx(e, rel=1e-12)
    z = st.norm.ppf(0.975)
    assert row["lower95_0cl"] == pytest.approx(e - z * se, rel=1e-12)
    assert row["upper95_0cl"] == pytest.approx(e + z * se, rel=1e-12)


def test_last_two_bands_by_hand():
    out = life_expectancy("deaths", "pops", "age", data=_df(), le_age=85)
    m85, m90 = 1936 / 11936, 1937 / 11936
    q = 5 * m85 / (1 + 5 * 0.5 * m85)  # Chiang: q = n M / (1 + n (1 - a) M), a = 0.5
    l85, l90 = 1.0, 1 - q
    big_l85 = 5 * (l90 + 0.5 * (l85 - l90))
    e90 = 1 / m90
    e85 = (big_l85 + l90 / m90) / l85
    var = (l85**2 * (0.5 * 5 + e90) ** 2 * q**2 * (1 - q) / 1936 + (l90 / m90) ** 2 / 1937) / l85**2
    assert len(out) == 1
    assert out.loc[0, "value"] == pytest.approx(e85, rel=1e-12)
    z = st.norm.ppf(0.999)
    assert out.loc[0, "upper99_8cl"] == pytest.approx(e85 + z * np.sqrt(var), rel=1e-12)
    assert out.loc[0, "statistic"] == "life expectancy at 85"


def test_birth_uses_a_of_0_1_for_infants():
    out = life_expectancy("deaths", "pops", "age", data=_df(), le_age=[0, 1])
    e0, e1 = out["value"]
    m0 = 17 / 7060
    q0 = m0 / (1 + 0.9 * m0)
    # e0 = (L0 + T1)/l0 with L0 = l1 + 0.1 d0 and T1 = e1 l1
    l1 = 1 - q0
    assert e0 == pytest.approx(l1 + 0.1 * q0 + e1 * l1, rel=1e-12)
    assert 75 < e0 < 85


def test_suppression_rules():
    small = [p // 200 for p in POPS]
    out = life_expectancy(
        "deaths", "pops", "age", data=_df(pops=small, deaths=[d // 200 + 1 for d in DEATHS])
    )
    assert out["value"].isna().all()
    assert (out["reason"] == "total population is 5,000 or less").all()
    no_old_deaths = DEATHS[:-1] + [0]
    out = life_expectancy("deaths", "pops", "age", data=_df(deaths=no_old_deaths))
    assert out["value"].isna().all()
    # a wide interval: value withheld, limits still shown
    sparse = [2000] * 19 + [40]
    deaths = [0] * 19 + [2]
    out = life_expectancy("deaths", "pops", "age", data=_df(pops=sparse, deaths=deaths), le_age=90)
    assert np.isnan(out.loc[0, "value"]) and np.isfinite(out.loc[0, "lower95_0cl"])
    assert out.loc[0, "reason"] == "95% confidence interval is wider than 20 years"


def test_grouped_and_validation():
    df = pd.concat([_df().assign(area="A"), _df().assign(area="B")])
    out = life_expectancy("deaths", "pops", "age", data=df, by="area", le_age=0)
    assert out["value"].iloc[0] == out["value"].iloc[1]
    with pytest.raises(StatsInputError, match="exactly one row"):
        life_expectancy("deaths", "pops", "age", data=_df().iloc[:-1])


# PHEindicatormethods tests/testthat/testLifeExpectancy.R, "answer1" for this population (its
# documented example; compared there to 4 decimal places): LE at each start age with 95% limits.
PHE_ANSWER = [
    (80.16960813, 79.88268548, 80.45653078),
    (79.36245674, 79.0898816, 79.63503188),
    (75.44193645, 75.17407307, 75.70979983),
    (70.47299936, 70.20675732, 70.7392414),
    (65.52909542, 65.26548673, 65.79270412),
    (60.67510088, 60.41876577, 60.931436),
    (55.78835987, 55.53801579, 56.03870395),
    (50.92752727, 50.68279939, 51.17225516),
    (46.06740425, 45.82666794, 46.30814055),
    (41.24505636, 41.00842831, 41.48168441),
    (36.49322717, 36.26223216, 36.72422219),
    (31.83343842, 31.60996318, 32.05691365),
    (27.26027992, 27.04337271, 27.47718713),
    (22.9719144, 22.76653134, 23.17729746),
    (18.76856852, 18.57570352, 18.96143352),
    (14.95858336, 14.77985004, 15.13731667),
    (11.51684445, 11.34831778, 11.68537112),
    (8.618849241, 8.451134045, 8.786564437),
    (6.163942934, 5.978358351, 6.349527517),
    (6.16210635, 5.887683386, 6.436529314),
]


def test_matches_pheindicatormethods_reference_values():
    expected = np.array(PHE_ANSWER)
    out = life_expectancy("deaths", "pops", "age", data=_df().sample(frac=1, random_state=9))
    assert out["startage"].tolist() == list(LE_AGE_BANDS)
    np.testing.assert_allclose(out["value"], expected[:, 0], atol=5e-5)
    np.testing.assert_allclose(out["lower95_0cl"], expected[:, 1], atol=5e-5)
    np.testing.assert_allclose(out["upper95_0cl"], expected[:, 2], atol=5e-5)
    # the same with text labels (en dashes and spaces, as in the reference's own test)
    labels = ["0", "1-4", "5-9"] + [f"{a} \u2013 {a + 4}" for a in range(10, 90, 5)] + ["90 +"]
    text = _df().assign(age=labels)
    out = life_expectancy("deaths", "pops", "age", data=text, age_contents=labels, le_age="0")
    assert out.loc[0, "value"] == pytest.approx(expected[0, 0], abs=5e-5)


def test_age_contents_must_start_at_zero_and_ascend():
    swapped = list(LE_AGE_BANDS)
    swapped[2], swapped[3] = swapped[3], swapped[2]  # 0, 1, 10, 5, 15, ...: gave LE 0.0 before
    with pytest.raises(StatsInputError, match="ascending"):
        life_expectancy("deaths", "pops", "age", data=_df(), age_contents=swapped)
    with pytest.raises(StatsInputError, match="age 0"):
        life_expectancy(
            "deaths", "pops", "age", data=_df().assign(age=[a + 1 for a in LE_AGE_BANDS]),
            age_contents=[a + 1 for a in LE_AGE_BANDS],
        )  # fmt: skip
