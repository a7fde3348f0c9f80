"""QRISK3 inputs derived from records: each variable and its data-quality flag, the
Townsend policy and its effect, and the configuration's guards. Pure (no engine)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from pophealth.programmes.cvd.config import (
    DEFAULT_CONFIG,
    CvdConfig,
    Threshold,
    TownsendPolicy,
    with_nice_non_hdl,
)
from pophealth.programmes.cvd.inputs import (
    ETHNICITY_16_TO_QRISK,
    derive_bmi,
    derive_chol_hdl_ratio,
    derive_ethnicity,
    derive_sbp_sd,
    derive_smoking,
    derive_townsend,
    qrisk_centre,
)
from pophealth.programmes.cvd.rules import statin_intensity
from pophealth.schema import ETHNICITY_16
from pophealth.scores.qrisk3 import QRISK3_COLUMNS, qrisk3

S = pd.Series


def test_bmi_recorded_then_height_weight_then_imputed():
    bmi, flag = derive_bmi(
        S([24.0, 5.0, np.nan, np.nan, np.nan]),
        S([np.nan, 1.78, 1.78, np.nan, 1.0]),  # 1.0 m is outside the plausible range
        S([np.nan, 80.0, 80.0, np.nan, 80.0]),
        S(["male", "male", "female", "female", "unknown"]),
    )
    assert list(flag) == ["present", "derived", "derived", "imputed", "imputed"]
    assert bmi[0] == 24.0
    assert bmi[1] == pytest.approx(80 / 1.78**2)
    assert bmi[3] == pytest.approx(qrisk_centre(S(["female"]), "bmi")[0])
    assert np.isnan(bmi[4])  # unknown sex: no centre to impute at


def test_qrisk_centres_are_the_model_means():
    """Imputation uses the QRISK3-2017 centring values (development-cohort means)."""
    sex = S(["female", "male"])
    assert list(qrisk_centre(sex, "sbp").round(3)) == [123.130, 128.572]
    assert list(qrisk_centre(sex, "chol_hdl_ratio").round(3)) == [3.476, 4.301]
    assert list(qrisk_centre(sex, "bmi").round(2)) == [25.40, 25.89]


def test_sbp_sd_needs_two_readings():
    sd, flag = derive_sbp_sd(S([12.0, np.nan, 8.0]), S([3, 1, 1]), S(["female"] * 3))
    assert list(flag) == ["present", "imputed", "imputed"]
    assert sd[0] == 12.0
    assert sd[1] == pytest.approx(qrisk_centre(S(["female"]), "sbp_sd")[0])


def test_chol_hdl_ratio():
    ratio, flag = derive_chol_hdl_ratio(
        S([3.5, np.nan, np.nan, 30.0]),
        S([np.nan, 6.0, 6.0, np.nan]),
        S([np.nan, 1.5, 0.1, np.nan]),  # HDL 0.1 is implausible
        S(["male"] * 4),
    )
    assert list(flag) == ["present", "derived", "imputed", "imputed"]
    assert list(ratio[:2]) == [3.5, 4.0]


def test_chol_hdl_ratio_range_is_config_and_covers_the_derived_ratio():
    """The ratio's plausible range is CvdConfig.chol_hdl_ratio_range, for a recorded ratio
    and for one derived from a plausible TC and HDL alike (20 / 0.5 = 40 is not a ratio)."""
    ratio, flag = derive_chol_hdl_ratio(
        S([np.nan, 15.0]), S([20.0, np.nan]), S([0.5, np.nan]), S(["male"] * 2)
    )
    assert list(flag) == ["imputed", "present"]
    narrow = dataclasses.replace(DEFAULT_CONFIG, chol_hdl_ratio_range=(1.0, 12.0))
    _, flag = derive_chol_hdl_ratio(S([15.0]), S([np.nan]), S([np.nan]), S(["male"]), config=narrow)
    assert list(flag) == ["imputed"]


def test_chol_hdl_ratio_is_the_latest_result():
    """A recorded ratio older than one day's TC and HDL gives way to them; on the same day,
    or newer, the recorded ratio stays (QRISK3 takes the latest result)."""
    day = pd.to_datetime
    ratio, flag = derive_chol_hdl_ratio(
        S([3.5, 3.5, 3.5]),
        S([6.0, 6.0, 6.0]),
        S([1.5, 1.5, 1.5]),
        S(["female"] * 3),
        ratio_date=S(day(["2024-01-10", "2025-01-10", "2025-01-10"])),
        pair_date=S(day(["2025-01-10", "2025-01-10", "2024-01-10"])),
    )
    assert list(flag) == ["derived", "present", "present"]
    assert list(ratio) == [4.0, 3.5, 3.5]


@pytest.mark.parametrize(
    ("category", "cpd", "code", "flag"),
    [
        ("never", np.nan, 0, "present"),
        ("ex", np.nan, 1, "present"),
        ("light", np.nan, 2, "present"),
        ("moderate", np.nan, 3, "present"),
        ("heavy", np.nan, 4, "present"),
        ("current", 5, 2, "present"),
        ("current", 10, 3, "present"),
        ("current", 19, 3, "present"),
        ("current", 20, 4, "present"),
        ("current", np.nan, 3, "imputed"),
        (None, np.nan, 0, "imputed"),
    ],
)
def test_smoking_category(category, cpd, code, flag):
    got, dq = derive_smoking(S([category], dtype=object), S([cpd]))
    assert (got[0], dq[0]) == (code, flag)


def test_ethnicity_covers_every_16_group():
    assert set(ETHNICITY_16_TO_QRISK) == set(ETHNICITY_16)
    codes, flag = derive_ethnicity(S(["H", "J", "K", "L", "M", "N", "R", "A", "D", "Z"]))
    assert list(codes) == [2, 3, 4, 5, 6, 7, 8, 1, 9, 1]
    assert flag.iloc[-1] == "imputed" and flag.iloc[0] == "present"


def _baseline_woman(townsend: float) -> float:
    row = {c: 0 for c in QRISK3_COLUMNS} | dict(
        sex="female", age=64, bmi=80 / 1.78**2, ethnicity=2, chol_hdl_ratio=4.0, sbp=180,
        sbp_sd=20.0, townsend=townsend,
    )  # fmt: skip
    return float(qrisk3(pd.DataFrame([row]))["qrisk3"].iloc[0])


def test_townsend_policies_and_their_effect():
    q = S([1, 3, 5, np.nan])
    zero, flag = derive_townsend(q, TownsendPolicy())
    assert list(zero) == [0.0] * 4 and set(flag) == {"imputed"}
    mapped, _ = derive_townsend(q, TownsendPolicy(mode="imd_quintile"))
    assert list(mapped) == [4.0, 0.0, -3.0, 0.0]
    # Effect as documented: the published baseline woman scores 17.2% at Townsend 0 and
    # 17.9% at Townsend 1 (QRISK3_2019_test); in the most deprived fifth under the IMD
    # mapping (Townsend 4) she scores 20.0% — the zero policy understates her risk.
    assert round(_baseline_woman(0.0), 1) == 17.2
    assert round(_baseline_woman(1.0), 1) == 17.9
    assert round(_baseline_woman(4.0), 1) == 20.0
    assert round(_baseline_woman(-3.0), 1) == 15.4
    with pytest.raises(ValueError, match="mode"):
        TownsendPolicy(mode="guess")


def test_config_guards_and_switches():
    assert with_nice_non_hdl().non_hdl_target.value == 2.6
    assert DEFAULT_CONFIG.non_hdl_target.value == 2.5
    with pytest.raises(ValueError, match="tc_fh_refer"):
        CvdConfig(tc_fh_refer=Threshold(7.0, "mmol/L", "test"))
    with pytest.raises(ValueError, match="look-back"):
        CvdConfig(bp_lookback_months=6)
    assert dataclasses.replace(DEFAULT_CONFIG, nice_strict=True).nice_strict
    with pytest.raises(ValueError, match="ldl_range"):
        CvdConfig(ldl_range=(5.0, 1.0))


def test_statin_intensity_table():
    got = statin_intensity(
        S(["atorvastatin", "atorvastatin", "simvastatin", "rosuvastatin", "pravastatin", None]),
        S([10.0, 20.0, 80.0, 5.0, 40.0, np.nan]),
    )
    assert list(got) == ["medium", "high", "high", "medium", "low", "unknown"]
