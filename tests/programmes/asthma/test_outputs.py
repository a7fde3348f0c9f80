"""The asthma outputs on hand-made evaluated frames: worklist grouping, order and ranks."""

from __future__ import annotations

import datetime as dt

import pandas as pd
from test_rules import markers

from pophealth.programmes.asthma import outputs, rules
from pophealth.programmes.asthma.config import DEFAULT

INDEX = dt.date(2026, 11, 23)


def evaluated(*rows: dict, practice: list[str], pcn_id: list, pcn_name: list) -> pd.DataFrame:
    frame = rules.evaluate(markers(*rows), INDEX)
    return frame.assign(
        practice_id=practice, practice_name=practice, pcn_id=pcn_id, pcn_name=pcn_name, age=40
    )


def test_worklist_by_pcn_keeps_a_practice_without_a_pcn_name_in_its_own_ranked_group():
    # p0 and p1: PCN "North" (p0 high: admitted; p1 moderate: 6 SABA); p2: a practice whose
    # PCN has an id but no name (high); p3: a practice with no PCN at all (moderate). The
    # aggregates label such a PCN by its id, else "Unknown" (outputs.group_columns and the
    # equity layer); the worklist must do the same and give every patient a whole-number rank
    # (DESIGN.md: worklists ordered and numbered per PCN).
    frame = evaluated(
        {"admissions_12m": 1},
        {"saba_count_12m": 6, "ics_count_12m": 6},
        {"admissions_12m": 1},
        {"saba_count_12m": 6, "ics_count_12m": 6},
        practice=["A", "A", "B", "C"],
        pcn_id=["P1", "P1", "P2", None],
        pcn_name=["North", "North", None, None],
    )
    wl = outputs.worklist(frame, "pcn_name")
    got = list(zip(wl["pcn_name"], wl["rank"], wl["patient_id"], strict=True))
    assert got == [("North", 1, "p0"), ("North", 2, "p1"), ("P2", 1, "p2"), ("Unknown", 1, "p3")]
    assert wl["rank"].dtype.kind == "i"


def test_pollution_episode_list_breaks_ties_by_patient_id():
    # Two high-tier patients with the same priority in one practice: the list order must not
    # depend on the row order of the input (DuckDB and Spark must give the same file).
    rows = [{"admissions_12m": 1}] * 3
    frame = evaluated(*rows, practice=["A"] * 3, pcn_id=["P1"] * 3, pcn_name=["N"] * 3)
    frame = frame.assign(lsoa_code="E01000001", lad_code="E09000001")
    areas = pd.DataFrame({"code": ["E01000001"]})
    for order in ([0, 1, 2], [2, 1, 0], [1, 2, 0]):
        out = outputs.pollution_episode_list(frame.iloc[order], areas)
        assert list(out["patient_id"]) == ["p0", "p1", "p2"]


def test_indicator_titles_say_the_configured_cut_offs_and_show_two_ae_attendances():
    import dataclasses

    titles = {i.name: DEFAULT.words(i.title) for i in outputs.INDICATORS}
    assert titles["saba_6plus"].startswith("% with 6 or more SABA inhalers in 12 months")
    assert titles["prednisolone_high"] == "% with more than 3 g prednisolone (known doses)"
    assert titles["ed_2plus"].startswith("% with 2 or more A&E attendances for asthma")
    cfg = DEFAULT.with_values(
        version="test-5", saba_priority=dataclasses.replace(DEFAULT.saba_priority, value=5)
    )
    assert cfg.words(
        next(i.title for i in outputs.INDICATORS if i.name == "saba_6plus")
    ).startswith("% with 5 or more SABA")
    # the A&E follow-up flag is an indicator the evaluated frame carries
    frame = evaluated(
        {"ed_attendances_12m": 2}, {}, practice=["A", "A"], pcn_id=["P"] * 2, pcn_name=["N"] * 2
    )
    ed2 = next(i for i in outputs.INDICATORS if i.name == "ed_2plus")
    assert list(frame[ed2.column]) == [True, False]
    # worklists carry the dose in words next to the known mg
    assert {"prednisolone_unknown_issues_12m", "prednisolone_dose"} <= set(outputs.WORKLIST_COLUMNS)


def test_attacks_by_few_patients_are_withheld():
    # 40 patients on the register, 12 attacks: released as "10" when 12 patients had them,
    # withheld (like a count of 3 patients) when 3 patients had 4 each.
    def frame(attacks: list[int]) -> pd.DataFrame:
        n = len(attacks)
        return pd.DataFrame(
            {
                "ocs_courses_12m": attacks,
                "ed_attendances_12m": 0,
                "admissions_12m": 0,
                "imd_decile": [3.0] * n,
                "ethnicity_5": "White",
                "sex": "female",
                "age_band": "18-39",
                "pcn_name": "North",
                "pcn_id": "P1",
                "practice_id": "A",
                "no2_quintile": [2.0] * n,
                "pm_quintile": [2.0] * n,
            }
        )

    spread = outputs.attacks_rate(frame([1] * 12 + [0] * 28))
    total = spread[(spread.breakdown == "pcn") & (spread.group == "Total")].iloc[0]
    assert (total.attacks, total.patients, total.value) == (10, 40, 250)
    assert "attacking" not in spread.columns
    few = outputs.attacks_rate(frame([4] * 3 + [0] * 37))
    assert few["attacks"].isna().all() and few["value"].isna().all()
    assert set(few["disclosure_note"]) == {"attacks primary (few patients)"}


def test_a_crosstab_margin_withheld_in_another_table_says_which_count_is_withheld():
    """The register in IMD quintile 2 withheld by another table: withheld in the pollution ×
    deprivation margins too, with its numerator (the percentage would give it back). The
    note said 'secondary (withheld in every table that gives it)', naming no count, where
    every other note names it ('n secondary ...'); beside a released denominator a reader
    could not tell which count the note was about."""
    import numpy as np

    from pophealth import disclosure

    r = np.random.default_rng(3)
    n = 400
    frame = pd.DataFrame(
        {
            "imd_decile": r.integers(1, 11, n).astype(float),
            "ethnicity_5": "white",
            "sex": "female",
            "age_band": "17-39",
            "pcn_name": "A",
            "pcn_id": "x",
            "practice_id": "P1",
            "no2_quintile": r.integers(1, 6, n).astype(float),
            "pm_quintile": r.integers(1, 6, n).astype(float),
            "is_tier_high": r.random(n) < 0.4,
        }
    )
    shared = disclosure.SharedCounts()
    plain = outputs.pollution_by_deprivation(frame, "is_tier_high", shared=shared)
    q2 = (plain["pollution_quintile"] == "Total") & (plain["imd_quintile"] == "2")
    assert plain.loc[q2, ["numerator", "denominator"]].notna().all(axis=None)
    shared.record([(outputs.REGISTER, "imd_quintile", "2")], [np.nan], "another table")
    shared.record([(outputs.numerator_scope("is_tier_high"), "no2_quintile", "3")], [np.nan])
    cross = outputs.pollution_by_deprivation(frame, "is_tier_high", shared=shared)
    row = cross[(cross["pollution_quintile"] == "Total") & (cross["imd_quintile"] == "2")]
    assert row[["numerator", "denominator", "value"]].isna().all(axis=None)
    why = disclosure.ELSEWHERE
    assert row["disclosure_note"].iloc[0] == f"x with denominator; n {why}"
    row = cross[(cross["pollution_quintile"] == "3") & (cross["imd_quintile"] == "Total")]
    assert row["numerator"].isna().all() and row["denominator"].notna().all()
    assert row["disclosure_note"].iloc[0] == f"x {why}"


def _cross_frame(n: int, flagged: int, seed: int = 3) -> pd.DataFrame:
    import numpy as np

    r = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "imd_decile": r.integers(1, 11, n).astype(float),
            "ethnicity_5": "white",
            "sex": "female",
            "age_band": "17-39",
            "pcn_name": "A",
            "pcn_id": "x",
            "practice_id": "P1",
            "no2_quintile": r.integers(1, 6, n).astype(float),
            "pm_quintile": r.integers(1, 6, n).astype(float),
            "is_tier_high": np.arange(n) < flagged,
        }
    )


def test_a_crosstab_register_withheld_elsewhere_is_withheld_where_its_numerator_already_is():
    """The register's Total withheld by the indicators; in the pollution × deprivation
    cross-tab of a register of 60 with 5 in the high tier, the Total's numerator was already
    withheld (primary) and its denominator was released as 60 — the register the indicators
    withhold — because only numerators newly withheld were looked for."""
    import numpy as np

    from pophealth import disclosure

    shared = disclosure.SharedCounts()
    shared.record([(outputs.REGISTER, "Total")], [np.nan], "indicators")
    cross = outputs.pollution_by_deprivation(_cross_frame(60, 5), "is_tier_high", shared=shared)
    grand = cross[(cross["pollution_quintile"] == "Total") & (cross["imd_quintile"] == "Total")]
    assert grand["numerator"].isna().all()
    assert grand["denominator"].isna().all(), grand.to_dict("records")
    assert grand["disclosure_note"].iloc[0] == f"x primary; n {disclosure.ELSEWHERE}"


def test_the_crosstab_keeps_its_flag_names_when_the_register_total_is_withheld_elsewhere():
    """The register's Total withheld by the attack rates and released in the pollution ×
    deprivation cross-tab: withheld there too, and with it every group's comparison with
    the rest of the register — which emptied the cross-tab's own ``flag`` column (the name
    of the flag each row counts), taken for the comparisons' flag: a small run's
    pollution_by_deprivation.csv did not say which rows were the high tier and which SABA
    over-use."""
    import numpy as np

    attacks = pd.DataFrame(
        {"breakdown": ["imd_quintile"], "group": ["Total"], "patients": [np.nan],
         "disclosure_note": ["patients secondary"]}
    )  # fmt: skip
    cross = pd.DataFrame(
        {"pollutant": ["no2", "no2"], "flag": ["is_tier_high", "flag_saba_priority"],
         "pollution_quintile": ["Total", "Total"], "imd_quintile": ["Total", "Total"],
         "numerator": [np.nan, np.nan], "denominator": [15.0, 15.0],
         "value": [np.nan, np.nan], "disclosure_note": ["x primary", "x primary"]}
    )  # fmt: skip
    assert outputs.one_register_total({}, attacks, pd.DataFrame(), cross)
    assert cross["denominator"].isna().all()
    assert cross["flag"].tolist() == ["is_tier_high", "flag_saba_priority"]
