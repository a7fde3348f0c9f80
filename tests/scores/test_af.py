"""CHA2DS2-VASc and ORBIT against their published point tables.

CHA2DS2-VASc: Lip et al., Chest 2010;137:263-72; weights as tabulated by the
globalrph.com and Northwell calculators (C 1, H 1, A2 2, D 1, S2 2, V 1, A 1, Sc 1;
maximum 9). ORBIT: O'Brien et al., Eur Heart J 2015;36:3258-64; BJGP ORBIT table
(age >=75 1, Hb <13 g/dL men / <12 g/dL women 2, bleeding history 2, eGFR <60 1,
antiplatelet 1; 0-2 low, 3 medium, >=4 high). NICE NG196 thresholds: PROGRAMMES.md 3.4.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pophealth.scores.af import (
    CHA2DS2_VASC,
    ORBIT,
    anticoagulation_indication,
    cha2ds2_vasc,
    orbit,
    orbit_risk_group,
)


def _cha(age, sex, chf=0, htn=0, dm=0, stroke=0, vasc=0):
    return cha2ds2_vasc([age], [sex], [chf], [htn], [dm], [stroke], [vasc])[0]


@pytest.mark.parametrize(
    ("age", "sex", "flags", "expected"),
    [
        (50, "male", {}, 0),
        (50, "female", {}, 1),
        (64, "male", {}, 0),
        (65, "male", {}, 1),
        (74, "male", {}, 1),
        (75, "male", {}, 2),
        (90, "female", {}, 3),
        (50, "male", {"chf": 1}, 1),
        (50, "male", {"htn": 1}, 1),
        (50, "male", {"dm": 1}, 1),
        (50, "male", {"stroke": 1}, 2),
        (50, "male", {"vasc": 1}, 1),
        (80, "female", {"chf": 1, "htn": 1, "dm": 1, "stroke": 1, "vasc": 1}, 9),
        (70, "male", {"htn": 1, "dm": 1}, 3),
    ],
)
def test_cha2ds2_vasc_point_table(age, sex, flags, expected):
    assert _cha(age, sex, **flags) == expected


def test_cha2ds2_vasc_missing_gives_na_and_bad_flag_raises():
    got = cha2ds2_vasc(
        [np.nan, 70, 70], ["male", None, "male"], [0, 0, np.nan], [0] * 3, [0] * 3, [0] * 3, [0] * 3
    )
    assert got.isna().tolist() == [True, True, True]
    with pytest.raises(ValueError, match="hypertension must be 0/1"):
        cha2ds2_vasc([70], ["male"], [0], [2], [0], [0], [0])
    with pytest.raises(ValueError, match="sex has 2 values"):
        cha2ds2_vasc([70], ["male", "female"], [0], [0], [0], [0], [0])


@settings(max_examples=50, deadline=None, derandomize=True)
@given(
    st.lists(
        st.tuples(
            st.integers(18, 105),
            st.sampled_from(["female", "male"]),
            *[st.integers(0, 1) for _ in range(5)],
        ),
        min_size=1,
        max_size=50,
    )
)
def test_cha2ds2_vasc_bounds_and_vectorised_equals_rowwise(rows):
    cols = list(zip(*rows, strict=True))
    whole = cha2ds2_vasc(*cols)
    each = [_cha(*r) for r in rows]
    assert whole.tolist() == each
    assert all(0 <= s <= 9 for s in each)


@pytest.mark.parametrize(
    ("score", "sex", "expected"),
    [
        (0, "male", "not indicated"),
        (1, "male", "consider"),
        (1, "female", "not indicated"),  # a woman's 1 point is her sex alone
        (2, "female", "offer"),
        (2, "male", "offer"),
        (9, "female", "offer"),
        (None, "male", None),
    ],
)
def test_nice_ng196_anticoagulation_thresholds(score, sex, expected):
    assert anticoagulation_indication([score], [sex])[0] == expected


def _orbit(age=60, sex="male", hb=np.nan, hct=np.nan, anaemia=0, bleed=0, egfr=np.nan, antiplt=0):
    return orbit([age], [sex], [hb], [hct], [anaemia], [bleed], [egfr], [antiplt])[0]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, 0),
        ({"age": 74}, 0),
        ({"age": 75}, 1),
        ({"hb": 129}, 2),
        ({"hb": 130}, 0),
        ({"sex": "female", "hb": 119}, 2),
        ({"sex": "female", "hb": 120}, 0),
        ({"sex": "female", "hb": 125}, 0),  # below the male cut-off, not the female one
        ({"hct": 39.9}, 2),
        ({"sex": "female", "hct": 35.9}, 2),
        ({"sex": "female", "hct": 38}, 0),
        ({"anaemia": 1}, 2),
        ({"anaemia": 1, "hb": 100}, 2),  # the anaemia item scores once
        ({"bleed": 1}, 2),
        ({"egfr": 59}, 1),
        ({"egfr": 60}, 0),
        ({"antiplt": 1}, 1),
        ({"age": 80, "hb": 100, "bleed": 1, "egfr": 30, "antiplt": 1}, 7),
    ],
)
def test_orbit_point_table(kwargs, expected):
    assert _orbit(**kwargs) == expected


@pytest.mark.parametrize(
    ("score", "band"), [(0, "low"), (2, "low"), (3, "medium"), (4, "high"), (7, "high")]
)
def test_orbit_bands(score, band):
    assert orbit_risk_group([score])[0] == band


def test_orbit_missing_flag_or_age_is_na_missing_lab_is_not_reduced():
    got = orbit(
        [np.nan, 80, 80],
        ["male"] * 3,
        [np.nan] * 3,
        [np.nan] * 3,
        [0, np.nan, 0],
        [0] * 3,
        [np.nan] * 3,
        [0] * 3,
    )
    assert got.isna().tolist() == [True, True, False]
    assert got[2] == 1
    assert orbit_risk_group(got).tolist() == [None, None, "low"]


def test_point_tables_are_versioned_config_with_sources():
    assert CHA2DS2_VASC.age_75_plus == 2 and CHA2DS2_VASC.stroke_tia_thromboembolism == 2
    assert "Chest 2010" in CHA2DS2_VASC.source
    assert ORBIT.reduced_hb_hct_or_anaemia == 2 and "Eur Heart J 2015" in ORBIT.source
    assert isinstance(cha2ds2_vasc([70], ["male"], [0], [0], [0], [0], [0]), pd.arrays.IntegerArray)
