"""The asthma programme end to end on the canonical synthetic population."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pandas as pd
import pytest

from pophealth.programmes import get
from pophealth.programmes.asthma import AsthmaProgramme, outputs
from pophealth.programmes.asthma.codes import curated
from pophealth.report import write_report
from pophealth.synth import write_synthetic_store

INDEX = dt.date(2026, 3, 31)  # the synthetic extract date


@pytest.fixture(scope="module")
def run(synthetic_runs):
    """The asthma programme as ``pophealth demo`` runs it on the canonical store (10,000
    patients, seed 42), and its register: the run test_crosstab_margins_lp audits too
    (tests/programmes/conftest.py makes it once)."""
    assert synthetic_runs.index_date(10_000, 42) == INDEX
    return synthetic_runs.result(10_000, 42, "asthma"), synthetic_runs.asthma_frame(10_000, 42)


def test_registered():
    assert get("asthma").name == "asthma"


def test_finds_the_gradients_the_synthetic_data_carries(run):
    _, frame = run
    assert len(frame) > 300
    needs_review = frame["tier"].isin(["high", "moderate"])
    deprived = frame["imd_quintile"].isin([1, 2]).to_numpy(dtype=bool)
    affluent = frame["imd_quintile"].isin([4, 5]).to_numpy(dtype=bool)
    polluted = frame["no2_quintile"].isin([4, 5]).to_numpy(dtype=bool)
    clean = frame["no2_quintile"].isin([1, 2]).to_numpy(dtype=bool)
    for flag in (needs_review, frame["flag_saba_priority"]):
        flag = flag.to_numpy(dtype=bool)
        assert flag[deprived].mean() > flag[affluent].mean()
        assert flag[polluted].mean() > flag[clean].mean()


def test_two_ae_attendances_and_the_configured_words_reach_the_outputs(run):
    result, frame = run
    ind = next(o for o in result.outputs if o.name == "indicators").frame
    ed2 = ind[ind["indicator"] == "ed_2plus"]
    assert len(ed2) and ed2["indicator_title"].iloc[0].startswith("% with 2 or more A&E")
    rules_notes = next(s for s in result.sections if s.title == "The rules, in plain words").notes
    assert not any("[" in n and "]" in n for n in rules_notes if n.startswith("reason "))
    assert any("2 or more: secondary-care follow-up" in n for n in rules_notes)
    wl = next(o for o in result.outputs if o.name == "worklist_by_practice").frame
    assert "prednisolone_dose" in wl.columns


def test_unknown_area_patients_are_counted_not_dropped(run):
    result, frame = run
    unknown = int(frame["imd_quintile"].isna().sum())
    ind = next(o for o in result.outputs if o.name == "indicators").frame
    rows = ind[(ind["indicator"] == "tier_high") & (ind["breakdown"] == "imd_quintile")]
    assert "Unknown" in set(rows["group"]) or unknown == 0
    total = rows[rows["group"] == "Total"]["denominator"].iloc[0]
    assert abs(total - len(frame)) <= 2.5  # rounded to the nearest 5


def test_no_aggregate_count_in_1_to_7(run):
    result, _ = run
    count_cols = {"numerator", "denominator", "attacks", "patients"}
    aggregates = [o for o in result.outputs if o.kind == "aggregate"]
    assert {o.name for o in aggregates} >= {"indicators", "pollution_by_deprivation"}
    for out in aggregates:
        assert out.disclosure
        for col in count_cols & set(out.frame.columns):
            values = pd.to_numeric(out.frame[col], errors="coerce").dropna().to_numpy()
            assert not np.any((values >= 1) & (values <= 7)), (out.name, col)


def test_worklists_are_ordered_and_explained(run):
    result, frame = run
    wl = next(o for o in result.outputs if o.name == "worklist_by_practice")
    assert wl.kind == "patient"
    w = wl.frame
    assert set(w["tier"]) <= {"high", "moderate"}
    assert len(w) == int(frame["tier"].isin(["high", "moderate"]).sum())
    assert w["reasons"].str.len().gt(0).all()
    for _, g in w.groupby("practice_id"):
        codes = g["tier"].map({"high": 0, "moderate": 1}).to_numpy()
        assert np.all(np.diff(codes) >= 0)
        assert list(g["rank"]) == list(range(1, len(g) + 1))
    isac = next(o for o in result.outputs if o.name == "isac_referral_worklist").frame
    assert isac["refer_because"].where(isac["refer"], "x").str.len().gt(0).all()
    assert len(isac) == int((frame["uncontrolled"] | frame["hard_trigger"]).sum())


def test_synthetic_referrals_fill_the_pathway_timers_and_worklist(run):
    result, frame = run
    uncontrolled = frame[frame["uncontrolled"]]
    referred = uncontrolled["referral_date"].notna()
    # some uncontrolled patients were referred, most were not
    assert 0.05 < referred.mean() < 0.6
    assert uncontrolled["flagged_no_referral"].any()
    assert (referred & ~uncontrolled["flagged_no_referral"]).any()
    waits = frame["secondary_care_wait_days"].dropna()
    assert (waits <= 126).any() and (waits > 126).any()
    assert frame["secondary_care_breach"].any() and frame["secondary_care_waiting"].any()
    assert frame["sac_wait_days"].isna().all()  # no curated severe-asthma-centre lists
    isac = next(o for o in result.outputs if o.name == "isac_referral_worklist").frame
    assert isac["referral_date"].notna().any() and isac["secondary_care_breach"].any()
    pathway = next(o for o in result.outputs if o.name == "isac_pathway")
    assert pathway.kind == "aggregate" and pathway.disclosure
    total = pathway.frame[pathway.frame["group"].eq("Total")].set_index(["measure", "breakdown"])
    assert total.loc[("referred_12m", "imd_quintile"), "numerator"] > 0
    # the waits fill the breach measure: some group's count is released (about 30 referrals
    # in all, so which ones depends on the disclosure rule's choice of cells)
    breach = pathway.frame[pathway.frame["measure"].eq("secondary_care_breach")]
    assert (breach["denominator"] > 0).any()
    # the severe-asthma-centre timer cannot be computed without its lists (the section's
    # note says so): left out, not shown as 0 of 0
    assert "sac_breach" not in set(pathway.frame["measure"])
    from pophealth.programmes.asthma import outputs

    timed = outputs.pathway_summary(frame, result.index_date, timed=("secondary", "sac"))
    assert "sac_breach" in set(timed["measure"])  # with its lists, it is there
    # without a referral list nobody can be found referred: the share referred is left out
    # (it read "0% referred"); the flag of those uncontrolled twice stays, as the note says
    unmeasured = outputs.pathway_summary(frame, result.index_date, timed=(), referred=())
    assert set(unmeasured["measure"]) == {"flagged_no_referral"}
    section = next(s for s in result.sections if s.title.startswith("Severe asthma pathway"))
    assert section.tables and any("severe-asthma-centre" in n for n in section.notes)
    assert not any("No referral code list" in n for n in section.notes)
    assert not any("referral_secondary" in n for n in result.sections[0].notes)


def test_pathway_section_says_which_lists_are_missing():
    from pophealth.programmes import Output

    empty = Output("isac_pathway", "aggregate", pd.DataFrame(), "", disclosure="policy")
    codes = curated()
    none = dataclasses.replace(codes, referral_secondary=None, seen_secondary=None)
    notes = AsthmaProgramme()._pathway_section(empty, none).notes
    assert any("No referral code list" in n for n in notes)
    no_seen = dataclasses.replace(codes, seen_secondary=None)
    notes = AsthmaProgramme()._pathway_section(empty, no_seen).notes
    assert any("'seen' code list" in n for n in notes)
    assert not any("'seen' code list" in n for n in AsthmaProgramme()._pathway_section(
        empty, codes).notes)  # fmt: skip


def test_report_has_the_section_and_no_patient_ids(run, tmp_path):
    result, frame = run
    report, files = write_report([result], tmp_path, title="asthma test")
    text = report.read_text()
    assert "LADS-style" in text
    assert "The rules, in plain words" in text
    assert "Severe asthma pathway (ISAC timers)" in text
    assert not any(pid in text for pid in frame["patient_id"].head(50))
    assert len(files["patient"]) == 3


def test_pollution_episode_list(run):
    _, frame = run
    known = frame.dropna(subset=["lsoa_code"])
    lsoa = known["lsoa_code"].iloc[0]
    lad = known["lad_code"].dropna().iloc[-1]
    out = outputs.pollution_episode_list(frame, pd.DataFrame({"code": [lsoa, lad]}))
    risky = frame["tier"].isin(["high", "moderate"])
    expected = frame[risky & ((frame["lsoa_code"] == lsoa) | (frame["lad_code"] == lad))]
    assert set(out["patient_id"]) == set(expected["patient_id"])
    with pytest.raises(ValueError, match="'code' column"):
        outputs.pollution_episode_list(frame, pd.DataFrame({"lsoa": [lsoa]}))


@pytest.mark.slow
@pytest.mark.spark
def test_duckdb_and_spark_give_identical_worklists_and_indicators(tmp_path):
    store = write_synthetic_store(tmp_path / "store", patients=3_000, seed=7)
    programme = AsthmaProgramme(sii_repetitions=500)
    results = {
        engine: programme.run(store.connect(engine), index_date=INDEX, engine=engine)
        for engine in ("duckdb", "spark")
    }
    duck = {o.name: o.frame for o in results["duckdb"].outputs}
    spark = {o.name: o.frame for o in results["spark"].outputs}
    assert duck.keys() == spark.keys()
    for name in duck:
        pd.testing.assert_frame_equal(
            duck[name].reset_index(drop=True), spark[name].reset_index(drop=True),
            check_dtype=False, obj=name,
        )  # fmt: skip


def test_read_episode_areas(tmp_path):
    good = tmp_path / "forecast.csv"
    good.write_text("code,date\nX01000003 ,2026-04-01\nE08000003,2026-04-01\n")
    areas = outputs.read_episode_areas(good)
    assert list(areas["code"]) == ["X01000003", "E08000003"]
    bad = tmp_path / "bad.csv"
    bad.write_text("code\nX01000003\nSW1A 1AA\n")
    with pytest.raises(ValueError, match=r"bad.csv, row 3, field 'code': 'SW1A 1AA'"):
        outputs.read_episode_areas(bad)
    with pytest.raises(ValueError, match="'code' column"):
        outputs.read_episode_areas(_write(tmp_path / "nocode.csv", "lsoa\nX01000003\n"))


def _write(path, text):
    path.write_text(text)
    return path


def test_empty_register_runs_and_says_why(tmp_path):
    from asthma_helpers import patient, write_store

    store = write_store(tmp_path / "store", patients=[patient("a")])
    result = AsthmaProgramme().run(store.connect("duckdb"), index_date=INDEX, engine="duckdb")
    assert result.headline == {"On the asthma register": "0"}
    assert any("Nobody is on the asthma register" in n for n in result.sections[0].notes)
    assert all(len(o.frame) == 0 for o in result.outputs if o.kind == "patient")
    write_report([result], tmp_path / "out", title="empty")


def test_the_equity_section_says_why_an_indicator_has_no_sii(run):
    """Every indicator has a row of the SII table; one with no SII (at the demo's size:
    deciles withheld) has missing figures and a ``method`` naming the deciles and
    quintiles that stop it, and is named in the equity section's notes too, so a reader is
    not left with an empty table or an empty file."""
    result, _ = run
    sii = next(o for o in result.outputs if o.name == "sii").frame
    assert set(sii["indicator"]) == {o.name for o in outputs.INDICATORS}
    notes = next(s for s in result.sections if s.title.startswith("Equity")).notes
    without = sii[sii["sii"].isna()]
    assert len(without)  # (at this size some indicator has none: the test can fail)
    for _, row in without.iterrows():
        assert row["method"].startswith("not calculated: every IMD decile needs released counts"), (
            row["indicator"]
        )
        assert "every IMD quintile needs released counts" in row["method"]
        assert any(n.startswith("SII not shown") and row["indicator"] in n for n in notes)
