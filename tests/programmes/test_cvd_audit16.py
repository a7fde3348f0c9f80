"""Sixteenth audit of the CVD programme (a GP clinical pharmacist and a population-health
analyst): defects found by an independent recomputation from PROGRAMMES.md section 3 and
docs/programmes/cvd.md, each pinned by a tiny store on DuckDB.

* The latest statin issue: two statins issued on one day gave the ingredient of one issue
  and the dose of the other (simvastatin 40 mg and atorvastatin 80 mg read as
  "simvastatin 80 mg, high intensity").
* Smoking: a plain "current smoker" code beat a same-day "light smoker" code, so a light
  smoker was scored as a moderate one (QRISK3 imputed, overstated).
* Worklist reasons: a lipid result not measured in 24 months was printed as a blank
  ("LDL  (target 2)"); the thresholds named in the reasons were literals, not the config's.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

import pandas as pd
import pytest

from pophealth.codelists import Codelist
from pophealth.programmes.cvd.config import DEFAULT_CONFIG, Threshold, with_nice_non_hdl
from pophealth.programmes.cvd.extract import cvd_records
from pophealth.programmes.cvd.rules import apply_all
from pophealth.programmes.cvd.worklist import worklist
from pophealth.scores.bp import BPTargets


def _cvd_world():
    """The CVD spec tests' tiny-world helper (tests/programmes/cvd/cvd_world.py)."""
    if "cvd_world" in sys.modules:
        return sys.modules["cvd_world"]
    path = Path(__file__).parent / "cvd" / "cvd_world.py"
    spec = importlib.util.spec_from_file_location("cvd_world", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["cvd_world"] = module
    spec.loader.exec_module(module)
    return module


cw = _cvd_world()
INDEX = cw.INDEX

# Smoking codes with an amount (the curated list's "intensity" column), beside the world's.
LIGHT, MODERATE = cw.sct(2000010), cw.sct(2000020)


def _smoking_list() -> Codelist:
    c = cw.CODES
    category = {
        c["smoking_never"]: "never",
        c["smoking_ex"]: "ex",
        c["smoking_current"]: "current",
        LIGHT: "current",
        MODERATE: "current",
        c["smoking_heavy"]: "current",
    }
    intensity = {LIGHT: "light", MODERATE: "moderate", c["smoking_heavy"]: "heavy"}
    return Codelist.of(
        "snomedct",
        list(category),
        name="smoking",
        categories={"category": category, "intensity": intensity},
    )


def _code(w, pid: str, code: str, date: str) -> None:
    w.events.append(
        dict(
            patient_id=pid,
            date=pd.Timestamp(date).date(),
            datetime=None,
            system="snomedct",
            code=code,
            value=None,
            unit=None,
        )
    )


SMOKING_CASES = {
    # patient: (codes on one day, QRISK3 smoking code, data quality)
    "plain_and_light": (["smoking_current", LIGHT], 2, "present"),
    "plain_and_moderate": (["smoking_current", MODERATE], 3, "present"),
    "plain_and_heavy": (["smoking_current", "smoking_heavy"], 4, "present"),
    "light_only": ([LIGHT], 2, "present"),
    "plain_only": (["smoking_current"], 3, "imputed"),
    "ex_and_plain": (["smoking_ex", "smoking_current"], 3, "imputed"),
    "ex_only": (["smoking_ex"], 1, "present"),
    "never_and_ex": (["smoking_never", "smoking_ex"], 1, "present"),
}


def _build(w) -> None:
    # two statins issued on the latest day: the dose must be that of the ingredient shown
    w.patient("two_statins", age=60)
    w.event("two_statins", "ihd", "2015-01-01")
    w.issue("two_statins", "simvastatin_40", "2025-03-01")  # no structured dose: 40 mg tablet
    w.issue("two_statins", "atorvastatin_80", "2025-03-01", daily_dose_mg=80)
    w.event("two_statins", "ldl", "2025-01-01", 3.0)
    w.patient("two_statins_dosed", age=60)
    w.event("two_statins_dosed", "ihd", "2015-01-01")
    w.issue("two_statins_dosed", "simvastatin_40", "2025-03-01", daily_dose_mg=40)
    w.issue("two_statins_dosed", "atorvastatin_20", "2025-03-01", daily_dose_mg=20)
    # one statin, two issues that day (one with a structured dose of two tablets)
    w.patient("one_statin_twice", age=60)
    w.event("one_statin_twice", "ihd", "2015-01-01")
    w.issue("one_statin_twice", "atorvastatin_20", "2025-03-01")
    w.issue("one_statin_twice", "atorvastatin_20", "2025-03-01", daily_dose_mg=40)
    # the 6-month statin look-back: exactly 6 calendar months before counts
    w.patient("statin_6m_edge", age=60)
    w.event("statin_6m_edge", "ihd", "2015-01-01")
    w.issue("statin_6m_edge", "atorvastatin_80", "2024-09-30")
    w.patient("statin_6m_out", age=60)
    w.event("statin_6m_out", "ihd", "2015-01-01")
    w.issue("statin_6m_out", "atorvastatin_80", "2024-09-29")
    # smoking codes on one day
    for pid, (codes, _, _) in SMOKING_CASES.items():
        w.patient(pid, age=60)
        for code in codes:
            _code(w, pid, cw.CODES.get(code, code), "2025-01-01")
    # lipid list (b): one of non-HDL / LDL not measured in 24 months
    for pid, non_hdl, ldl in (
        ("b_ldl_only", None, 3.0),
        ("b_non_hdl_only", 3.1, None),
        ("b_both", 3.1, 3.0),
        ("b_non_hdl_2_5", 2.5, None),  # at target (not above): not listed
        ("b_ldl_2_0", None, 2.0),
    ):
        w.patient(pid, age=60)
        w.event(pid, "ihd", "2015-01-01")
        w.issue(pid, "atorvastatin_80", "2025-03-01")
        if non_hdl is not None:
            w.event(pid, "non_hdl", "2025-01-01", non_hdl)
        if ldl is not None:
            w.event(pid, "ldl", "2025-01-01", ldl)
    # list (b) on a high-intensity statin short of its maximal dose, and on a medium one
    for pid, statin in (
        ("b_atorvastatin_20", "atorvastatin_20"),
        ("b_simvastatin_40", "simvastatin_40"),
    ):
        w.patient(pid, age=60)
        w.event(pid, "ihd", "2015-01-01")
        w.issue(pid, statin, "2025-03-01")
        w.event(pid, "ldl", "2025-01-01", 3.0)
    # non-HDL derived from one day's TC and HDL, exactly at a target: 4.4 - 1.9 is
    # 2.5000000000000004 in floating point, and 4.4 - 1.8 is 2.6000000000000005
    for pid, tc, hdl in (
        ("b_derived_2_5", 4.4, 1.9),
        ("b_derived_2_6", 4.4, 1.8),
        ("b_derived_2_54", 5.2, 2.66),
    ):
        w.patient(pid, age=60)
        w.event(pid, "ihd", "2015-01-01")
        w.issue(pid, "atorvastatin_80", "2025-03-01")
        w.event(pid, "total_cholesterol", "2025-01-01", tc)
        w.event(pid, "hdl", "2025-01-01", hdl)
    # total cholesterol on both sides of 7.5 and 9 (and of a configured 8.5)
    for pid, tc in (("tc_7_5", 7.5), ("tc_7_51", 7.51), ("tc_8_7", 8.7), ("tc_9", 9.0)):
        w.patient(pid, age=50)
        w.event(pid, "total_cholesterol", "2025-01-01", tc)
    tc_9_01 = w.patient("tc_9_01", age=50)
    w.event(tc_9_01, "total_cholesterol", "2025-01-01", 9.01)
    # BP above a target, for the reason text under another config
    w.patient("bp_145_85", age=60)
    w.event("bp_145_85", "hypertension", "2015-01-01")
    w.bp("bp_145_85", "2025-03-01", 145, 85)
    w.patient("bp_none", age=60)
    w.event("bp_none", "hypertension", "2015-01-01")
    # AF: a man and a woman on both sides of CHA2DS2-VASc 1 / 2 (age on the index date)
    for pid, sex, born in (
        ("af_f_65", "female", "1960-03-31"),  # 65 on the index date: 1 + 1 (female) = 2
        ("af_f_64", "female", "1960-04-01"),  # 64: the sex point alone, 1
        ("af_m_65", "male", "1960-03-31"),  # 1: consider
        ("af_m_64", "male", "1960-04-01"),  # 0
    ):
        w.patient(pid, sex=sex, born=born)
        w.event(pid, "atrial_fibrillation", "2020-01-01")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    w = cw.World()
    _build(w)
    return w.store(tmp_path_factory.mktemp("cvd_audit16") / "store")


@pytest.fixture(scope="module")
def records(store):
    codelists = dataclasses.replace(cw.make_codelists(), smoking=_smoking_list())
    return cvd_records(store.connect("duckdb"), INDEX, codelists)


@pytest.fixture(scope="module")
def ruled(records):
    return apply_all(records, INDEX).set_index("patient_id")


def test_statin_dose_is_that_of_the_issue_whose_ingredient_is_shown(ruled):
    strength = {("simvastatin", 40.0), ("atorvastatin", 80.0), ("atorvastatin", 20.0)}
    for pid in ("two_statins", "two_statins_dosed"):
        got = (ruled.loc[pid, "statin_ingredient"], ruled.loc[pid, "statin_daily_mg"])
        assert got in strength, (pid, got)
    # simvastatin 40 mg is medium intensity and not maximal; nothing says "simvastatin 80"
    p = ruled.loc["two_statins"]
    if p["statin_ingredient"] == "simvastatin":
        assert p["statin_intensity"] == "medium" and p["on_maximal_statin"] == 0
    # one statin issued twice that day: the structured dose (two 20 mg tablets) is read
    assert ruled.loc["one_statin_twice", "statin_ingredient"] == "atorvastatin"
    assert ruled.loc["one_statin_twice", "statin_daily_mg"] == 40.0


def test_statin_look_back_is_six_calendar_months_both_ends(ruled):
    assert ruled.loc["statin_6m_edge", ["on_statin", "lipid_a"]].tolist() == [1, 0]
    assert ruled.loc["statin_6m_out", ["on_statin", "lipid_a"]].tolist() == [0, 1]


@pytest.mark.parametrize("pid", sorted(SMOKING_CASES))
def test_a_specific_smoking_code_wins_over_plain_current_on_the_same_day(ruled, pid):
    _, code, quality = SMOKING_CASES[pid]
    assert (ruled.loc[pid, "q_smoking"], ruled.loc[pid, "smoking_dq"]) == (code, quality)


def test_lipid_b_edges_and_a_result_not_measured_is_named_not_blank(ruled):
    listed = ruled["lipid_b"]
    assert listed[["b_ldl_only", "b_non_hdl_only", "b_both"]].tolist() == [1, 1, 1]
    assert listed[["b_non_hdl_2_5", "b_ldl_2_0"]].tolist() == [0, 0]
    by = worklist(ruled.reset_index()).set_index("patient_id")
    for pid in ("b_ldl_only", "b_non_hdl_only", "b_both"):
        reasons = by.loc[pid, "reasons"]
        assert "  " not in reasons and "( target" not in reasons, reasons
    assert "LDL 3.0 (target 2) mmol/L" in by.loc["b_ldl_only", "reasons"]
    assert "no non-HDL result in 24 months" in by.loc["b_ldl_only", "reasons"]
    assert "non-HDL 3.1 (target 2.5) mmol/L" in by.loc["b_non_hdl_only", "reasons"]
    assert "no LDL result in 24 months" in by.loc["b_non_hdl_only", "reasons"]
    assert "non-HDL 3.1 (target 2.5) / LDL 3.0 (target 2) mmol/L." in by.loc["b_both", "reasons"]


def test_a_derived_non_hdl_at_its_target_is_not_above_it(records, ruled):
    assert ruled.loc["b_derived_2_5", "non_hdl"] == pytest.approx(2.5, abs=1e-12)
    assert ruled.loc["b_derived_2_5", "lipid_b"] == 0
    nice = apply_all(records, INDEX, config=with_nice_non_hdl()).set_index("patient_id")
    assert nice.loc["b_derived_2_6", "lipid_b"] == 0
    assert ruled.loc["b_derived_2_6", "lipid_b"] == 1  # 2.6 is above Barts' 2.5
    # shown to as many decimals as say it is above the target (not "2.5 (target 2.5)")
    by = worklist(ruled.reset_index()).set_index("patient_id")
    assert "non-HDL 2.54 (target 2.5) mmol/L" in by.loc["b_derived_2_54", "reasons"]
    assert "non-HDL 2.6 (target 2.5) mmol/L" in by.loc["b_derived_2_6", "reasons"]
    assert by.loc["b_derived_2_54", "non_hdl"] == 2.54


def test_total_cholesterol_edges(ruled):
    lists = ruled[["lipid_d_assess", "lipid_d_refer"]]
    assert lists.loc["tc_7_5"].tolist() == [0, 0]  # > 7.5, not >=
    assert lists.loc["tc_7_51"].tolist() == [1, 0]
    assert lists.loc["tc_9"].tolist() == [1, 0]  # > 9, not >=
    assert lists.loc["tc_9_01"].tolist() == [0, 1]


def test_chadsvasc_one_and_two_by_sex_on_the_65th_birthday(ruled):
    got = ruled.loc[["af_f_65", "af_f_64", "af_m_65", "af_m_64"], ["chadsvasc", "af_gap"]]
    assert got["chadsvasc"].tolist() == [2, 1, 1, 0]
    assert ruled.loc["af_f_65", "anticoag_indication"] == "offer"
    assert ruled.loc["af_f_64", "anticoag_indication"] == "not indicated"
    assert ruled.loc["af_m_65", "anticoag_indication"] == "consider"
    assert got["af_gap"].tolist() == [1, 0, 1, 0]


def test_reasons_name_the_configured_thresholds(store, records):
    config = dataclasses.replace(
        DEFAULT_CONFIG,
        tc_fh_assess=Threshold(7.0, "mmol/L", "test"),
        tc_fh_refer=Threshold(8.5, "mmol/L", "test"),
        bp=BPTargets(target_sbp_under_older_age=135.0, target_dbp=85.0, lookback_months=6),
        bp_lookback_months=6,
        anticoagulant_lookback_months=6,
    )
    codelists = dataclasses.replace(cw.make_codelists(), smoking=_smoking_list())
    extracted = cvd_records(store.connect("duckdb"), INDEX, codelists, config)
    by = worklist(apply_all(extracted, INDEX, config=config), config=config)
    by = by.set_index("patient_id")
    assert by.loc["tc_8_7", "reasons"] == "Total cholesterol 8.7 mmol/L is above 8.5."
    assert by.loc["tc_7_51", "reasons"] == "Total cholesterol 7.5 mmol/L is above 7."
    assert "is above target (135/85)" in by.loc["bp_145_85", "reasons"]
    assert "no BP reading in the last 6 months" in by.loc["bp_none", "reasons"]
    assert "no anticoagulant in 6 months" in by.loc["af_f_65", "reasons"]
    # and the defaults still read as before
    by = worklist(apply_all(records, INDEX)).set_index("patient_id")
    assert by.loc["tc_9_01", "reasons"] == "Total cholesterol 9.01 mmol/L is above 9."
    assert by.loc["tc_7_51", "reasons"] == "Total cholesterol 7.51 mmol/L is above 7.5."
    assert "is above target (140/90)" in by.loc["bp_145_85", "reasons"]
    assert "no BP reading in the last 12 months" in by.loc["bp_none", "reasons"]
    assert "no anticoagulant in 12 months" in by.loc["af_f_65", "reasons"]


def test_docs_give_the_curated_lists_sizes():
    """docs/programmes/cvd.md warns that the curated lists are illustrative subsets, with
    their sizes: the numbers stay true (a fuller list must update the warning)."""
    from pophealth.programmes.cvd.codelists import curated_codelists

    lists = curated_codelists()

    def uk(role: str) -> int:
        cl = getattr(lists, role)
        return sum(len(cl.codes_in(s)) for s in cl.systems if s in ("snomedct", "dmd"))

    docs = (Path(__file__).parents[2] / "docs" / "programmes" / "cvd.md").read_text()
    rows = {
        "hypertension": f"| `hypertension` | {uk('hypertension')} |",
        "resolved": f"`hypertension_resolved`, {uk('hypertension_resolved')} here",
        "vascular": f"| `stroke`, `tia`, `pad` | {uk('stroke')}, {uk('tia')}, {uk('pad')} |",
        "diabetes": f"| `type2_diabetes`, `type1_diabetes` | {uk('type2_diabetes')}, "
        f"{uk('type1_diabetes')} |",
        "antihypertensives": f"| `antihypertensives` | {uk('antihypertensives')} (",
        "statins": f"| `statins` | {uk('statins')} (",
        "doacs": f"| `doacs` | {uk('doacs')} (",
    }
    for name, row in rows.items():
        assert row in docs, (name, row)

    # the medicines the docs name as missing have no UK code (the RxNorm rows are US data's)
    def uk_drugs(role: str) -> set[str]:
        cl = getattr(lists, role)
        codes = set().union(*(cl.codes_in(s) for s in cl.systems if s in ("snomedct", "dmd")))
        return {v.lower() for c, v in cl.categories["drug"].items() if c in codes}

    assert "edoxaban" not in uk_drugs("doacs")
    assert not {"pravastatin", "fluvastatin"} & uk_drugs("statins")


def test_list_b_on_a_high_intensity_statin_is_told_to_raise_its_dose(ruled):
    """Atorvastatin 20 mg is already high intensity (NICE): 'Increase to a high-intensity
    statin' beside statin_intensity 'high' contradicted itself; the dose is what to raise."""
    wl = worklist(ruled.reset_index()).set_index("patient_id")
    assert ruled.loc["b_atorvastatin_20", "statin_intensity"] == "high"
    assert wl.loc["b_atorvastatin_20", "next_action"] == (
        "Increase atorvastatin to 80 mg (its maximal dose) and recheck lipids."
    )
    assert ruled.loc["b_simvastatin_40", "statin_intensity"] == "medium"
    assert wl.loc["b_simvastatin_40", "next_action"].startswith(
        "Increase to a high-intensity statin (atorvastatin 80 mg)"
    )
    assert wl.loc["b_ldl_only", "next_action"].startswith("On maximal statin")
