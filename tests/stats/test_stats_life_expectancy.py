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
