"""CVDPREVENT hypertension risk groups from records, at every boundary of PROGRAMMES.md
section 3.6, on DuckDB and Spark.

Each patient is on the hypertension register with the readings shown; the expected
group is CVDPREVENT's (documentation/cvdp_hypertension.md in NHSDigital/cvd-prevent-tool):
at target means <= 140/90 (<= 150/90 from 80); 1d above 180/120; 1c above 160/100.
The NICE-strict switch moves only the target edge (< instead of <=).
"""

from __future__ import annotations

import dataclasses

import pytest
from conftest import INDEX

from pophealth.programmes.cvd.config import DEFAULT_CONFIG
from pophealth.programmes.cvd.extract import cvd_records
from pophealth.programmes.cvd.rules import hypertension

# (patient, age, [(days before index, sbp, dbp), ...], CVDPREVENT group, NICE-strict group)
CASES = [
    ("at_140_90", 60, [(10, 140, 90)], "0.1", "1a"),
    ("at_139_89", 60, [(10, 139, 89)], "0.1", "0.1"),
    ("at_141_91", 60, [(10, 141, 91)], "1a", "1a"),
    ("sbp_141", 60, [(10, 141, 80)], "1a", "1a"),
    ("dbp_91", 60, [(10, 120, 91)], "1a", "1a"),
    ("at_150_90_age79", 79, [(10, 150, 90)], "1a", "1a"),
    ("at_150_90_age80", 80, [(10, 150, 90)], "0.2", "1b"),
    ("at_151_90_age80", 80, [(10, 151, 90)], "1b", "1b"),
    ("at_160_100", 60, [(10, 160, 100)], "1a", "1a"),
    ("at_160_100_age85", 85, [(10, 160, 100)], "1b", "1b"),
    ("at_161_101", 60, [(10, 161, 101)], "1c", "1c"),
    ("dbp_101", 60, [(10, 130, 101)], "1c", "1c"),
    ("at_180_120", 60, [(10, 180, 120)], "1c", "1c"),
    ("at_181_121", 60, [(10, 181, 121)], "1d", "1d"),
    ("sbp_181", 60, [(10, 181, 70)], "1d", "1d"),
    ("dbp_121", 60, [(10, 150, 121)], "1d", "1d"),
    # invalid readings: SBP 49 or DBP 19 do not count; an earlier valid one does
    ("sbp_49_only", 60, [(10, 49, 80)], "1e", "1e"),
    ("dbp_19_only", 60, [(10, 120, 19)], "1e", "1e"),
    ("sbp_50_dbp_20", 60, [(10, 50, 20)], "0.1", "0.1"),
    ("invalid_then_valid", 60, [(10, 49, 80), (40, 170, 95)], "1c", "1c"),
    # same-day minima: lowest systolic and lowest diastolic of the latest day
    ("same_day_min", 60, [(5, 150, 85), (5, 138, 95), (5, 145, 88)], "0.1", "0.1"),
    ("same_day_min_above", 60, [(5, 190, 85), (5, 165, 125)], "1c", "1c"),
    # most recent day wins over a worse older one
    ("latest_day_wins", 60, [(5, 130, 80), (100, 200, 130)], "0.1", "0.1"),
    # 12-month look-back: exactly 12 months before counts; a day earlier does not
    ("edge_12_months", 60, [("2024-03-31", 170, 80)], "1c", "1c"),
    ("beyond_12_months", 60, [("2024-03-30", 170, 80)], "1e", "1e"),
    ("no_bp", 60, [], "1e", "1e"),
    # a reading after the index date is ignored
    ("future_only", 60, [(-5, 170, 80)], "1e", "1e"),
]


def _date(when):
    import pandas as pd

    if isinstance(when, str):
        return pd.Timestamp(when)
    return pd.Timestamp(INDEX) - pd.Timedelta(days=when)


@pytest.fixture
def bp_world(world, tmp_path):
    for pid, age, readings, _, _ in CASES:
        world.patient(pid, age=age)
        world.event(pid, "hypertension", "2015-01-01")
        for when, s, d in readings:
            world.bp(pid, _date(when), s, d)
    # not on the register: -1 whatever the BP
    world.patient("not_hypertensive", age=60)
    world.bp("not_hypertensive", _date(10), 200, 130)
    # resolved after diagnosis: not on the register
    world.patient("resolved", age=60)
    world.event("resolved", "hypertension", "2015-01-01")
    world.event("resolved", "hypertension_resolved", "2020-01-01")
    world.bp("resolved", _date(10), 150, 80)
    # systolic only on the latest day: that day has no pair, the earlier paired day counts
    world.patient("sbp_only_latest", age=60)
    world.event("sbp_only_latest", "hypertension", "2015-01-01")
    world.bp("sbp_only_latest", _date(3), 200, None)
    world.bp("sbp_only_latest", _date(30), 135, 85)
    return world.store(tmp_path / "store")


EXPECTED_EXTRA = {
    "not_hypertensive": ("-1", "-1"),
    "resolved": ("-1", "-1"),
    "sbp_only_latest": ("0.1", "0.1"),
}


def test_bp_groups_at_every_boundary(bp_world, engine, codelists):
    records = cvd_records(bp_world.connect(engine), INDEX, codelists)
    strict = dataclasses.replace(DEFAULT_CONFIG, nice_strict=True)
    default = hypertension(records).set_index("patient_id")["htn_group"]
    nice = hypertension(records, config=strict).set_index("patient_id")["htn_group"]
    expected = {pid: (g, n) for pid, _, _, g, n in CASES} | EXPECTED_EXTRA
    got = {pid: (default[pid], nice[pid]) for pid in expected}
    assert got == expected


def test_bp_reading_is_the_days_minima(bp_world, engine, codelists):
    records = cvd_records(bp_world.connect(engine), INDEX, codelists).set_index("patient_id")
    row = records.loc["same_day_min"]
    assert (row["bp_sbp"], row["bp_dbp"]) == (138, 85)
    assert row["bp_date"] == _date(5)
    row = records.loc["invalid_then_valid"]
    assert (row["bp_sbp"], row["bp_dbp"]) == (170, 95)
