"""End to end: the CVD programme on a small synthetic store — real signal in the
worklists and indicators, no released count in 1-7, the report renders with the
ClinRisk disclaimer, and (slow) DuckDB and Spark give the same outputs."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from pophealth.programmes import get
from pophealth.programmes.cvd import analyse, build_result
from pophealth.report import render_html
from pophealth.scores.qrisk3 import QRISK3_DISCLAIMER
from pophealth.store import Store
from pophealth.synth import write_synthetic_store

PATIENTS, SEED = 4000, 11


@pytest.fixture(scope="module")
def synth_store(tmp_path_factory) -> Store:
    path = tmp_path_factory.mktemp("cvd-e2e") / "store"
    write_synthetic_store(path, patients=PATIENTS, seed=SEED)
    return Store.open(path)


def _index_date(store: Store) -> dt.date:
    meta = store.metadata
    return dt.date.fromisoformat(meta.get("extract_date") or meta["synthetic"]["extract_date"])


@pytest.fixture(scope="module")
def analysis(synth_store):
    return analyse(synth_store.connect("duckdb"), _index_date(synth_store))


@pytest.fixture(scope="module")
def result(analysis):
    return build_result(analysis, engine="duckdb")


def test_real_signal(analysis):
    p = analysis.patients
    groups = p.loc[p["hypertension"] == 1, "htn_group"].value_counts()
    # every CVDPREVENT group the synthetic BP distribution produces is populated
    assert groups.get("0.1", 0) > 50 and groups.get("1a", 0) > 20 and groups.get("1c", 0) > 0
    # statins go to people with CVD far more often than to people without
    cvd = p["cvd"] == 1
    assert p.loc[cvd, "on_statin"].mean() > 2 * p.loc[~cvd, "on_statin"].mean()
    # QRISK3 rises with age and is higher in men at the same age
    q = p[p["qrisk_applies"] == 1]
    assert q.loc[q["age"] >= 65, "qrisk3"].median() > 3 * q.loc[q["age"] < 45, "qrisk3"].median()
    mid = q[(q["age"] >= 50) & (q["age"] < 60)]
    assert (
        mid.loc[mid["sex"] == "male", "qrisk3"].median()
        > mid.loc[mid["sex"] == "female", "qrisk3"].median()
    )
    # the worklist covers all three domains and every listed patient has a reason
    wl = analysis.worklist
    joined = " ".join(wl["domains"])
    assert {"hypertension", "lipids"} <= {
        d for d in ("hypertension", "lipids", "AF") if d in joined
    }
    assert (wl["reasons"].str.len() > 10).all() and (wl["next_action"] != "").all()
    assert set(wl["rag"]) <= {"red", "amber", "grey"}


def test_no_released_count_in_1_to_7(result):
    for out in result.outputs:
        if out.kind != "aggregate":
            continue
        for col in ("numerator", "denominator", "patients"):
            if col in out.frame.columns:
                v = pd.to_numeric(out.frame[col], errors="coerce").dropna().to_numpy()
                assert not ((v >= 1) & (v <= 7)).any(), (out.name, col)
                assert (v % 5 == 0).all(), (out.name, col)  # rounded to 5


def test_indicator_tables_give_95_and_99_8_limits(result):
    """PHE's default output is a value with 95% and 99.8% limits (PROGRAMMES.md section 12,
    PHEindicatormethods): every CVD table with a value and limits has both."""
    with_limits = [o for o in result.outputs if "lower95_0cl" in o.frame.columns]
    assert with_limits
    for out in with_limits:
        f = out.frame
        assert {"lower99_8cl", "upper99_8cl"} <= set(f.columns), out.name
        shown = f["value"].notna()
        assert (f.loc[shown, "lower99_8cl"] <= f.loc[shown, "lower95_0cl"]).all(), out.name
        assert (f.loc[shown, "upper99_8cl"] >= f.loc[shown, "upper95_0cl"]).all(), out.name


def test_bp_risk_groups_come_with_their_denominator(result):
    """Counts by risk group are shares of the register: each row carries the register as
    denominator, the percentage from the released counts and its limits."""
    groups = next(o for o in result.outputs if o.name == "cvd_bp_risk_groups").frame
    shown = groups["patients"].notna() & groups["on_register"].notna()
    assert shown.any()
    expected = groups.loc[shown, "patients"] / groups.loc[shown, "on_register"] * 100
    assert (groups.loc[shown, "value"] - expected).abs().max() < 1e-9


def test_report_renders_with_disclaimer_and_no_patients(result):
    page = render_html([result], title="t")
    assert "CVDPREVENT" in page
    assert QRISK3_DISCLAIMER[:80] in page
    wl = next(o for o in result.outputs if o.kind == "patient")
    assert wl.frame["patient_id"].iloc[0] not in page
    assert any(k.startswith("Hypertension treated to target") for k in result.headline)


def test_registered_programme_runs(synth_store):
    res = get("cvd").run(
        synth_store.connect("duckdb"), index_date=_index_date(synth_store), engine="duckdb"
    )
    assert res.programme == "cvd" and any(o.kind == "patient" for o in res.outputs)


@pytest.mark.slow
@pytest.mark.spark
def test_duckdb_and_spark_agree_end_to_end(synth_store, result):
    spark = build_result(
        analyse(synth_store.connect("spark"), _index_date(synth_store)), engine="spark"
    )
    duck = {o.name: o.frame for o in result.outputs}
    other = {o.name: o.frame for o in spark.outputs}
    assert duck.keys() == other.keys()
    for name, frame in duck.items():
        pd.testing.assert_frame_equal(
            frame.reset_index(drop=True), other[name].reset_index(drop=True), check_dtype=False,
            check_exact=False, rtol=1e-9,
        )  # fmt: skip
    assert duck  # (outputs were compared, not none)


def test_headline_worklist_colours_cannot_be_recovered_from_each_other():
    """Red, amber and grey add up to the worklist: one withheld colour is not left alone
    (it would be the others' total minus the list's length)."""
    from pophealth import disclosure
    from pophealth.programmes.cvd import _headline

    frame = pd.DataFrame({"rag": ["red"] * 23 + ["amber"] * 101 + ["grey"] * 3})
    head = _headline({}, frame, disclosure.DEFAULT_POLICY)
    shown = {k: head[f"Worklist {k}"] for k in ("red", "amber", "grey")}
    assert shown == {"red": "[c]", "amber": "100", "grey": "[c]"}


def test_docs_name_exactly_the_missing_code_lists():
    """docs/programmes/cvd.md's "Missing roles" line is what curated_codelists() lacks
    (the docs had listed as missing several lists that exist)."""
    import re
    from pathlib import Path

    from pophealth.programmes.cvd.codelists import curated_codelists

    doc = Path(__file__).parents[3] / "docs" / "programmes" / "cvd.md"
    line = next(x for x in doc.read_text().splitlines() if x.startswith("Missing roles"))
    assert set(re.findall(r"`(\w+)`", line)) == set(curated_codelists().missing())


def test_lipid_result_quality_counts_people_and_is_released():
    """The report counts, per lipid, the people with a result set aside as implausible and
    the people with a result converted from mg/dL, through disclosure control."""
    from pophealth import disclosure
    from pophealth.programmes.cvd import LIPID_VALUES, _lipid_data_quality
    from pophealth.programmes.cvd.config import DEFAULT_CONFIG

    n = 40
    frame = pd.DataFrame(
        {f"{name}_{k}_n": [0] * n for name, _, _ in LIPID_VALUES for k in ("outside", "mg_dl")}
    )
    frame.loc[:11, "total_cholesterol_outside_n"] = 1  # 12 people
    frame.loc[:0, "total_cholesterol_outside_n"] = 3  # (one of them with three results)
    frame.loc[:2, "ldl_mg_dl_n"] = 1  # 3 people: withheld
    frame.loc[:20, "hdl_mg_dl_n"] = 2  # 21 people
    got = _lipid_data_quality(frame, DEFAULT_CONFIG, disclosure.DEFAULT_POLICY).set_index("lipid")
    assert got.loc["total cholesterol", "plausible_range"] == "1 to 20 mmol/L"
    assert got.loc["cholesterol/HDL ratio (recorded)", "plausible_range"] == "1 to 20"
    assert got.loc["total cholesterol", "patients_with_results_set_aside"] == 10
    assert got.loc["HDL cholesterol", "patients_with_results_converted_from_mg_dl"] == 20
    assert pd.isna(got.loc["LDL cholesterol", "patients_with_results_converted_from_mg_dl"])
    assert got.loc["LDL cholesterol", "patients_with_results_set_aside"] == 0


def test_report_has_the_lipid_result_quality_table(result):
    out = next(o for o in result.outputs if o.name == "cvd_lipid_result_quality")
    assert out.kind == "aggregate" and len(out.frame) == 5
    section = next(s for s in result.sections if s.title == "Pharmacist worklists")
    assert out in section.tables
    assert any("set aside before the latest result is chosen" in n for n in section.notes)


def test_each_indicator_sii_file_says_why_it_has_no_sii(result):
    """At 4,000 patients some IMD deciles of every indicator are withheld: each
    indicator's SII output is one row of missing figures whose ``method`` names them
    (:func:`pophealth.equity.why_no_sii`), never an empty file; an indicator with an SII
    has its figures and no such reason."""
    sii = {o.name: o.frame for o in result.outputs if o.name.endswith("_sii")}
    assert sii
    empty = 0
    for name, frame in sii.items():
        assert len(frame) == 1, name
        row = frame.iloc[0]
        if pd.isna(row["sii"]):
            empty += 1
            assert row["method"].startswith(
                "not calculated: every IMD decile needs released counts ("
            ), name
            assert (
                "withheld by disclosure control" in row["method"] or "with no one" in row["method"]
            )
        else:
            assert not str(row["method"]).startswith("not calculated"), name
    assert empty  # (at this size: the test can fail)
