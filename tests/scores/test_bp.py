"""Blood pressure groups and stages at every documented edge.

Expected groups come from NHS England's CVDPREVENT documentation
(github.com/NHSDigital/cvd-prevent-tool, documentation/cvdp_hypertension.md: the
"Treated to Target" and "Risk Groups" tables, validity criteria and the journal
example), edges as listed in PROGRAMMES.md section 3.6. NICE stages: NICE NG136 as
summarised in PROGRAMMES.md section 3.2.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pophealth.scores.bp import (
    BP_TARGETS_CVDPREVENT,
    HTN_RAG_SOURCE,
    HTN_RISK_GROUPS,
    htn_rag,
    htn_risk_group,
    latest_valid_bp,
    needs_same_day_review,
    nice_stage,
)


def _one(age, sbp, dbp, valid=True, htn=True, **kw):
    return htn_risk_group([age], [sbp], [dbp], [valid], [htn], **kw)[0]


@pytest.mark.parametrize(
    ("age", "sbp", "dbp", "cvdprevent", "nice_strict"),
    [
        # under 80: target edge 140/90
        (60, 140, 90, "0.1", "1a"),
        (60, 139, 89, "0.1", "0.1"),
        (60, 140, 89, "0.1", "1a"),
        (60, 139, 90, "0.1", "1a"),
        (60, 141, 90, "1a", "1a"),
        (60, 140, 91, "1a", "1a"),
        (60, 141, 91, "1a", "1a"),
        # moderate / high edge 160/100
        (60, 160, 100, "1a", "1a"),
        (60, 161, 100, "1c", "1c"),
        (60, 160, 101, "1c", "1c"),
        (60, 161, 101, "1c", "1c"),
        # high / very high edge 180/120
        (60, 180, 120, "1c", "1c"),
        (60, 181, 120, "1d", "1d"),
        (60, 180, 121, "1d", "1d"),
        (60, 181, 121, "1d", "1d"),
        # 150/90 at 79 vs 80
        (79, 150, 90, "1a", "1a"),
        (80, 150, 90, "0.2", "1b"),
        (80, 149, 89, "0.2", "0.2"),
        (80, 151, 90, "1b", "1b"),
        (80, 150, 91, "1b", "1b"),
        (80, 140, 90, "0.2", "1b"),
        (80, 160, 100, "1b", "1b"),
        (80, 161, 101, "1c", "1c"),
        (80, 181, 121, "1d", "1d"),
        # systolic and diastolic disagree: the higher-risk group wins (doc example 170/121)
        (60, 170, 121, "1d", "1d"),
        (60, 130, 105, "1c", "1c"),
        (60, 150, 80, "1a", "1a"),
        (85, 120, 95, "1b", "1b"),
        # lowest valid values
        (60, 50, 20, "0.1", "0.1"),
    ],
)
def test_cvdprevent_groups_at_edges(age, sbp, dbp, cvdprevent, nice_strict):
    assert _one(age, sbp, dbp) == cvdprevent
    assert _one(age, sbp, dbp, nice_strict=True) == nice_strict


@pytest.mark.parametrize(
    ("sbp", "dbp", "valid", "htn", "expected"),
    [
        (49, 80, True, True, "1e"),  # SBP < 50 invalid
        (120, 19, True, True, "1e"),  # DBP < 20 invalid
        (np.nan, 80, True, True, "1e"),
        (130, 80, False, True, "1e"),  # no valid reading in 12 months
        (130, 80, True, False, "-1"),  # not hypertensive
        (200, 130, True, False, "-1"),
        (np.nan, np.nan, False, False, "-1"),
    ],
)
def test_invalid_missing_and_not_hypertensive(sbp, dbp, valid, htn, expected):
    assert _one(60, sbp, dbp, valid=valid, htn=htn) == expected


def test_unknown_age_only_blocks_age_dependent_groups():
    got = htn_risk_group([np.nan] * 3, [130, 190, 150], [80, 80, 80], [True] * 3, [True] * 3)
    assert got.tolist() == [None, "1d", None]


def test_vectorised_over_arrays_and_length_checked():
    got = htn_risk_group(
        np.array([60, 80, 60]), [140, 150, 181], [90, 90, 80], [1, 1, 1], [True, True, True]
    )
    assert got.tolist() == ["0.1", "0.2", "1d"]
    with pytest.raises(ValueError, match="sbp has 2 values"):
        htn_risk_group([60, 60, 60], [140, 150], [90, 90, 80], [1, 1, 1], [1, 1, 1])


def _doc_table(age: int, sbp: int, dbp: int) -> str:
    """The CVDPREVENT documentation's range tables, transcribed as written
    (treated-to-target first, then 1d, 1c, 1a, 1b)."""
    if age < 80 and 50 <= sbp <= 140 and 20 <= dbp <= 90:
        return "0.1"
    if age >= 80 and 50 <= sbp <= 150 and 20 <= dbp <= 90:
        return "0.2"
    if sbp > 180 or dbp > 120:
        return "1d"
    if 160 < sbp <= 180 or 100 < dbp <= 120:
        return "1c"
    if age < 80 and (140 < sbp <= 160 or 90 < dbp <= 100):
        return "1a"
    if age >= 80 and (150 < sbp <= 160 or 90 < dbp <= 100):
        return "1b"
    raise AssertionError("the documented table leaves a gap")


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    st.lists(
        st.tuples(st.integers(18, 100), st.integers(50, 260), st.integers(20, 160)),
        min_size=1,
        max_size=60,
    )
)
def test_matches_documented_table_on_any_valid_reading(rows):
    age, sbp, dbp = (np.array(c) for c in zip(*rows, strict=True))
    got = htn_risk_group(age, sbp, dbp, np.ones(len(rows)), np.ones(len(rows)))
    assert got.tolist() == [_doc_table(*r) for r in rows]


def test_thresholds_are_named_versioned_config():
    t = BP_TARGETS_CVDPREVENT
    assert (t.target_sbp_under_older_age, t.target_sbp_older_age, t.target_dbp) == (140, 150, 90)
    assert (t.min_valid_sbp, t.min_valid_dbp, t.lookback_months) == (50, 20, 12)
    assert "cvd-prevent-tool" in t.source and t.version
    assert set(HTN_RISK_GROUPS) == {"0.1", "0.2", "1a", "1b", "1c", "1d", "1e", "-1"}


# --- choosing the reading --------------------------------------------------------------


def test_same_day_minima_documented_journal_example():
    # cvdp_hypertension.md: BP_COD 140.1/92.8, diastolic code 92.1, systolic code 141.2,
    # all on 2020-01-02 -> 140.1 and 92.1 are kept.
    readings = pd.DataFrame(
        {
            "patient_id": [1, 1, 1],
            "date": ["2020-01-02"] * 3,
            "sbp": [140.1, np.nan, 141.2],
            "dbp": [92.8, 92.1, np.nan],
        }
    )
    got = latest_valid_bp(readings, "2020-06-30")
    assert got[["sbp", "dbp"]].values.tolist() == [[140.1, 92.1]]


def test_latest_valid_reading_rules():
    rows = [
        # A: latest day 1 Mar has three entries -> lowest SBP 142, lowest DBP 88
        ("A", "2026-01-01", 120, 70),
        ("A", "2026-03-01", 150, 95),
        ("A", "2026-03-01", 142, np.nan),
        ("A", "2026-03-01", np.nan, 88),
        # B: latest entry is a pair with SBP 49 (invalid, dropped whole) -> earlier day
        ("B", "2026-02-01", 135, 85),
        ("B", "2026-04-01", 49, 80),
        # C: only reading is older than 12 months -> none
        ("C", "2025-05-31", 130, 80),
        # D: latest day has systolic only -> that day cannot be used
        ("D", "2026-02-10", 145, 92),
        ("D", "2026-05-01", 128, np.nan),
        # E: reading after the index date is ignored; one exactly 12 months before counts
        ("E", "2025-06-01", 128, 78),
        ("E", "2026-06-02", 190, 100),
        # F: DBP 19 on a separate diastolic entry is invalid; the day still has DBP 70
        ("F", "2026-03-03", 131, np.nan),
        ("F", "2026-03-03", np.nan, 19),
        ("F", "2026-03-03", np.nan, 70),
    ]
    readings = pd.DataFrame(rows, columns=["patient_id", "date", "sbp", "dbp"])
    got = latest_valid_bp(readings, "2026-06-01").set_index("patient_id")
    assert sorted(got.index) == ["A", "B", "D", "E", "F"]
    assert got.loc["A", ["sbp", "dbp"]].tolist() == [142, 88]
    assert got.loc["B", ["sbp", "dbp"]].tolist() == [135, 85]
    assert got.loc["D", "bp_date"] == pd.Timestamp("2026-02-10")
    assert got.loc["E", ["sbp", "dbp"]].tolist() == [128, 78]
    assert got.loc["F", ["sbp", "dbp"]].tolist() == [131, 70]

    # and into risk groups (all aged 60, all hypertensive); C has no valid reading
    patients = pd.DataFrame({"patient_id": list("ABCDEF")}).merge(
        got.reset_index(), on="patient_id", how="left"
    )
    groups = htn_risk_group(
        np.full(6, 60), patients["sbp"], patients["dbp"], patients["sbp"].notna(), np.ones(6)
    )
    assert groups.tolist() == ["1a", "0.1", "1e", "1a", "0.1", "0.1"]


def test_latest_valid_bp_missing_column():
    with pytest.raises(KeyError, match="dbp"):
        latest_valid_bp(pd.DataFrame({"patient_id": [], "date": [], "sbp": []}), "2026-01-01")


# --- NICE NG136 stages and RAG ----------------------------------------------------------


@pytest.mark.parametrize(
    ("sbp", "dbp", "clinic", "abpm"),
    [
        (134, 84, "below_stage1", "below_stage1"),
        (135, 84, "below_stage1", "stage1"),
        (134, 85, "below_stage1", "stage1"),
        (139, 89, "below_stage1", "stage1"),
        (140, 89, "stage1", "stage1"),
        (139, 90, "stage1", "stage1"),
        (149, 94, "stage1", "stage1"),
        (150, 94, "stage1", "stage2"),
        (149, 95, "stage1", "stage2"),
        (159, 99, "stage1", "stage2"),
        (160, 99, "stage2", "stage2"),
        (159, 100, "stage2", "stage2"),
        (179, 119, "stage2", "stage2"),
        (180, 80, "stage3", "stage2"),
        (120, 120, "stage3", "stage2"),
        (np.nan, 80, None, None),
    ],
)
def test_nice_ng136_stages(sbp, dbp, clinic, abpm):
    assert nice_stage([sbp], [dbp])[0] == clinic
    assert nice_stage([sbp], [dbp], setting="abpm")[0] == abpm


@pytest.mark.parametrize(
    ("sbp", "dbp", "same_day", "group"),
    [
        # NICE NG136 severe (stage 3): SBP >= 180 or DBP >= 120 -> same-day review;
        # CVDPREVENT 1d is > 180 / > 120, so the edge readings are 1c but still same-day
        (180, 120, True, "1c"),
        (180, 80, True, "1c"),
        (130, 120, True, "1c"),
        (179, 119, False, "1c"),
        (181, 121, True, "1d"),
        (150, 80, False, "1a"),
        (np.nan, 125, True, "1e"),
        (np.nan, np.nan, False, "1e"),
    ],
)
def test_same_day_review_is_nice_severe_not_group_1d(sbp, dbp, same_day, group):
    assert bool(needs_same_day_review([sbp], [dbp])[0]) is same_day
    if not (np.isnan(sbp) or np.isnan(dbp)):  # agrees with the NICE stage
        assert (nice_stage([sbp], [dbp])[0] == "stage3") is same_day
    assert _one(60, sbp, dbp) == group


def test_same_day_review_length_checked():
    with pytest.raises(ValueError, match="sbp has 2 values"):
        needs_same_day_review([180, 170], [120])


def test_nice_stage_rejects_unknown_setting():
    with pytest.raises(ValueError, match="setting"):
        nice_stage([140], [90], setting="home-ish")


def test_rag_is_labelled_derived():
    got = htn_rag(["1d", "1c", "1a", "1b", "0.1", "0.2", "1e", "-1", None])
    assert got.tolist() == ["red", "red", "amber", "amber", "green", "green", "grey", None, None]
    assert "Derived" in HTN_RAG_SOURCE and "UNCONFIRMED" in HTN_RAG_SOURCE
