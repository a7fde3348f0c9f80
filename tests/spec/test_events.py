"""Spec: events and medications matching a code list, windows and per-patient aggregates."""

from __future__ import annotations

import datetime as dt

from pophealth.query import Codelist, events, index_date, medications
from tests.spec.conftest import run

D = dt.date
ASTHMA = Codelist.of("snomedct", ["195967001", "233678006"], name="asthma")
SBP = Codelist.of("snomedct", ["271649006"], name="sbp")
SABA = Codelist.of("dmd", ["39113611000001102", "222311000001102"], name="saba")


def test_matching_needs_code_and_system(engine, tmp_path):
    tables = {
        "events": [
            {"patient_id": "1", "date": D(2020, 1, 1), "code": "195967001"},
            # same digits recorded as another system: not a SNOMED asthma code
            {"patient_id": "2", "date": D(2020, 1, 1), "code": "195967001", "system": "ctv3"},
            {"patient_id": "3", "date": D(2020, 1, 1), "code": "271649006"},
        ],
    }
    out = run(engine, tmp_path, tables, {"asthma": events.matching(ASTHMA).exists_for_patient()})
    assert out == {"1": {"asthma": True}, "2": {"asthma": False}, "3": {"asthma": False}}


def test_read_v2_is_not_ctv3(engine, tmp_path):
    # Read v2 and CTV3 share the 5-character shape (H33.. is asthma in both), but they are
    # different terminologies: a Read v2 list matches Read v2 events only
    read2 = Codelist.of("readv2", ["H33.."], name="asthma_read2")
    tables = {
        "events": [
            {"patient_id": "1", "date": D(2020, 1, 1), "code": "H33..", "system": "readv2"},
            {"patient_id": "2", "date": D(2020, 1, 1), "code": "H33..", "system": "ctv3"},
        ],
    }
    out = run(engine, tmp_path, tables, {"asthma": events.matching(read2).exists_for_patient()})
    assert out == {"1": {"asthma": True}, "2": {"asthma": False}}


def test_in_last_12_months_edges(engine, tmp_path):
    # index 2025-03-31: the window is 2024-04-01 .. 2025-03-31 inclusive
    dates = {
        "a": D(2024, 3, 31),  # exactly 12 months before: outside
        "b": D(2024, 4, 1),  # first day inside
        "c": D(2025, 3, 31),  # the index date: inside
        "d": D(2025, 4, 1),  # after the index date: outside
    }
    tables = {
        "medications": [
            {"patient_id": p, "date": d, "code": "39113611000001102"} for p, d in dates.items()
        ]
    }
    saba = medications.matching(SABA)
    out = run(
        engine,
        tmp_path,
        tables,
        {
            "last_12m": saba.in_last(months=12).exists_for_patient(),
            "on_or_before": saba.on_or_before(index_date).exists_for_patient(),
            "before": saba.before(index_date).exists_for_patient(),
            "after": saba.after(index_date).exists_for_patient(),
            "between": saba.between(D(2024, 4, 1), D(2024, 12, 31)).exists_for_patient(),
            "next_month": saba.in_next(days=1).exists_for_patient(),
        },
    )
    assert out["a"] == dict(
        last_12m=False, on_or_before=True, before=True, after=False, between=False, next_month=False
    )
    assert out["b"] == dict(
        last_12m=True, on_or_before=True, before=True, after=False, between=True, next_month=False
    )
    assert out["c"] == dict(
        last_12m=True, on_or_before=True, before=False, after=False, between=False, next_month=False
    )
    assert out["d"] == dict(
        last_12m=False, on_or_before=False, before=False, after=True, between=False, next_month=True
    )


def test_exists_count_and_distinct_days(engine, tmp_path):
    tables = {
        "medications": [
            {"patient_id": "1", "date": D(2025, 1, 1), "code": "39113611000001102"},
            {"patient_id": "1", "date": D(2025, 1, 1), "code": "222311000001102"},
            {"patient_id": "1", "date": D(2025, 2, 1), "code": "39113611000001102"},
        ],
        "patients": [{"patient_id": "1"}, {"patient_id": "2"}],
    }
    saba = medications.matching(SABA)
    out = run(
        engine,
        tmp_path,
        tables,
        {
            "any": saba.exists_for_patient(),
            "issues": saba.count_for_patient(),
            "days": saba.count_days_for_patient(),
            "products": saba.count_distinct_for_patient(saba.code),
        },
    )
    assert out == {
        "1": {"any": True, "issues": 3, "days": 2, "products": 2},
        "2": {"any": False, "issues": 0, "days": 0, "products": 0},
    }


def test_first_and_last_row(engine, tmp_path):
    tables = {
        "events": [
            {"patient_id": "1", "date": D(2024, 1, 5), "code": "271649006", "value": 150.0},
            {"patient_id": "1", "date": D(2024, 6, 5), "code": "271649006", "value": 132.0},
            {"patient_id": "1", "date": D(2023, 2, 1), "code": "271649006", "value": 170.0},
            {"patient_id": "2", "date": D(2024, 1, 5), "code": "195967001"},
        ],
    }
    bp = events.matching(SBP)
    out = run(
        engine,
        tmp_path,
        tables,
        {
            "first_date": bp.first_for_patient().date,
            "first_value": bp.first_for_patient().value,
            "last_date": bp.last_for_patient().date,
            "last_value": bp.last_for_patient().value,
            "highest_last": bp.sort_by(bp.value).last_for_patient().date,
        },
    )
    assert out["1"] == {
        "first_date": D(2023, 2, 1),
        "first_value": 170.0,
        "last_date": D(2024, 6, 5),
        "last_value": 132.0,
        "highest_last": D(2023, 2, 1),
    }
    assert out["2"] == dict.fromkeys(out["1"])


def test_ties_on_the_date_go_by_the_other_columns(engine, tmp_path):
    """Two rows on one day: first takes the lower value, last the higher (the other columns
    ascending for first, descending for last), and a missing value is never taken over a
    value."""
    day = D(2024, 3, 1)
    tables = {
        "events": [
            {"patient_id": "1", "date": day, "code": "271649006", "value": 150.0},
            {"patient_id": "1", "date": day, "code": "271649006", "value": 120.0},
            {"patient_id": "2", "date": day, "code": "271649006", "value": None},
            {"patient_id": "2", "date": day, "code": "271649006", "value": 130.0},
        ],
    }
    bp = events.matching(SBP)
    out = run(
        engine,
        tmp_path,
        tables,
        {"first": bp.first_for_patient().value, "last": bp.last_for_patient().value},
    )
    assert out["1"] == {"first": 120.0, "last": 150.0}
    assert out["2"] == {"first": 130.0, "last": 130.0}


def test_min_max_mean_sum(engine, tmp_path):
    tables = {
        "events": [
            {"patient_id": "1", "date": D(2024, 1, 5), "code": "271649006", "value": 150.0},
            {"patient_id": "1", "date": D(2024, 2, 5), "code": "271649006", "value": 130.0},
            {"patient_id": "1", "date": D(2024, 3, 5), "code": "271649006", "value": None},
            {"patient_id": "2", "date": D(2024, 3, 5), "code": "271649006", "value": 121.0},
        ],
        "patients": [{"patient_id": "1"}, {"patient_id": "2"}, {"patient_id": "3"}],
    }
    bp = events.matching(SBP)
    out = run(
        engine,
        tmp_path,
        tables,
        {
            "lo": bp.minimum_for_patient(),
            "hi": bp.maximum_for_patient(),
            "mean": bp.mean_for_patient(),
            "total": bp.sum_for_patient(bp.value),
            "latest": bp.maximum_for_patient(bp.date),
        },
    )
    assert out["1"] == {
        "lo": 130.0,
        "hi": 150.0,
        "mean": 140.0,
        "total": 280.0,
        "latest": D(2024, 3, 5),
    }
    assert out["2"] == {
        "lo": 121.0,
        "hi": 121.0,
        "mean": 121.0,
        "total": 121.0,
        "latest": D(2024, 3, 5),
    }
    assert out["3"] == dict.fromkeys(out["1"])


def test_value_on_the_last_day_lowest_of_the_day(engine, tmp_path):
    # CVDPREVENT: most recent day's readings; several on that day -> the lowest
    tables = {
        "events": [
            {"patient_id": "1", "date": D(2024, 6, 1), "code": "271649006", "value": 150.0},
            {"patient_id": "1", "date": D(2024, 6, 1), "code": "271649006", "value": 138.0},
            {"patient_id": "1", "date": D(2024, 6, 1), "code": "271649006", "value": 145.0},
            {"patient_id": "1", "date": D(2024, 1, 1), "code": "271649006", "value": 110.0},
        ],
    }
    bp = events.matching(SBP)
    last_day = bp.last_day_for_patient(rule="min")
    out = run(
        engine,
        tmp_path,
        tables,
        {
            "day": last_day.date,
            "lowest": last_day.value,
            "highest": bp.last_day_for_patient(rule="max").value,
            "mean": bp.last_day_for_patient(rule="mean").value,
            "first_day_low": bp.first_day_for_patient(rule="min").value,
        },
    )
    assert out == {
        "1": {
            "day": D(2024, 6, 1),
            "lowest": 138.0,
            "highest": 150.0,
            "mean": 433.0 / 3,
            "first_day_low": 110.0,
        }
    }


def test_filter_on_a_value_and_a_per_patient_date(engine, tmp_path):
    # "high readings after the asthma diagnosis": rows compared with a per-patient value
    tables = {
        "events": [
            {"patient_id": "1", "date": D(2020, 1, 1), "code": "195967001"},
            {"patient_id": "1", "date": D(2019, 1, 1), "code": "271649006", "value": 180.0},
            {"patient_id": "1", "date": D(2021, 1, 1), "code": "271649006", "value": 170.0},
            {"patient_id": "1", "date": D(2022, 1, 1), "code": "271649006", "value": 120.0},
        ],
    }
    diagnosed = events.matching(ASTHMA).first_for_patient().date
    bp = events.matching(SBP)
    out = run(
        engine,
        tmp_path,
        tables,
        {"high_after": bp.where((bp.date > diagnosed) & (bp.value >= 140)).count_for_patient()},
    )
    assert out == {"1": {"high_after": 1}}


def test_a_dmd_list_matches_the_same_id_recorded_as_snomed_ct(engine, tmp_path):
    """Every dm+d id is a SNOMED CT concept id, and records label it either way (FHIR and
    OMOP send dm+d products under the SNOMED CT system): a dm+d list must find a
    prescription recorded as snomedct, and a SNOMED CT list one recorded as dmd."""
    prednisolone_5mg = "325426006"  # dm+d VMP, a core-namespace SNOMED CT id
    tables = {
        "medications": [
            {
                "patient_id": "1",
                "date": D(2025, 1, 10),
                "system": "snomedct",
                "code": prednisolone_5mg,
            },
            {"patient_id": "2", "date": D(2025, 1, 10), "system": "dmd", "code": prednisolone_5mg},
            {"patient_id": "3", "date": D(2025, 1, 10), "system": "rxnorm", "code": "312617"},
        ]
    }
    as_dmd = Codelist.of("dmd", [prednisolone_5mg], name="prednisolone_dmd")
    as_snomed = Codelist.of("snomedct", [prednisolone_5mg], name="prednisolone_snomed")
    out = run(
        engine,
        tmp_path,
        tables,
        {
            "dmd": medications.matching(as_dmd).exists_for_patient(),
            "snomed": medications.matching(as_snomed).exists_for_patient(),
        },
    )
    assert out == {
        "1": {"dmd": True, "snomed": True},
        "2": {"dmd": True, "snomed": True},
        "3": {"dmd": False, "snomed": False},
    }
