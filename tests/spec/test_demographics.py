"""Spec: demographics on a date — age, age band, sex, ethnicity, alive, registration,
practice, address (overlap rule) and every area attribute with an explicit unknown group."""

from __future__ import annotations

import datetime as dt

from pophealth.query import addresses, index_date, patients, registrations
from tests.spec.conftest import run

D = dt.date


def test_age_band_sex_ethnicity_alive(engine, tmp_path):
    tables = {
        "patients": [
            # birthday on the index date: the new age counts on the day
            {
                "patient_id": "1",
                "date_of_birth": D(1985, 3, 31),
                "sex": "female",
                "ethnicity_5": "asian",
                "ethnicity_16": "H",
            },
            # birthday tomorrow: still 17
            {"patient_id": "2", "date_of_birth": D(2007, 4, 1), "sex": "male"},
            # 29 Feb birthday in a non-leap year: turns over on 1 March
            {"patient_id": "3", "date_of_birth": D(2000, 2, 29)},
            {"patient_id": "4", "date_of_birth": D(1930, 6, 1), "date_of_death": D(2025, 3, 31)},
            {"patient_id": "5", "date_of_birth": D(1930, 6, 1), "date_of_death": D(2025, 4, 1)},
        ]
    }
    out = run(
        engine,
        tmp_path,
        tables,
        {
            "age": patients.age_on(index_date),
            "band": patients.age_band_on(index_date),
            "band5": patients.age_band_on(index_date, bands=(0, 18, 65, 85)),
            "sex": patients.sex,
            "ethnicity": patients.ethnicity_group,
            "alive": patients.is_alive_on(index_date),
            "age_on_28_feb": patients.age_on(D(2025, 2, 28)),
        },
    )
    assert out["1"] == dict(
        age=40,
        band="40-49",
        band5="18-64",
        sex="female",
        ethnicity="asian",
        alive=True,
        age_on_28_feb=39,
    )
    assert out["2"] == dict(
        age=17,
        band="10-19",
        band5="0-17",
        sex="male",
        ethnicity="unknown",
        alive=True,
        age_on_28_feb=17,
    )
    assert out["3"]["age"] == 25 and out["3"]["age_on_28_feb"] == 24
    assert out["4"]["alive"] is False  # died on the index date
    assert out["5"]["alive"] is True
    assert out["5"]["band"] == "90+" and out["5"]["band5"] == "85+"


def test_registration_and_practice_on_a_date(engine, tmp_path):
    tables = {
        "registrations": [
            {
                "patient_id": "1",
                "practice_id": "A81001",
                "start_date": D(2010, 1, 1),
                "end_date": D(2025, 2, 1),
            },
            # overlapping: a newer registration entered before the old one closed wins
            {"patient_id": "1", "practice_id": "B82002", "start_date": D(2025, 1, 15)},
            {
                "patient_id": "2",
                "practice_id": "A81001",
                "start_date": D(2010, 1, 1),
                "end_date": D(2025, 3, 30),
            },
            {"patient_id": "3", "practice_id": "A81001", "start_date": D(2025, 4, 1)},
            # last day of registration is the index date: still registered
            {
                "patient_id": "4",
                "practice_id": "A81001",
                "start_date": D(2020, 1, 1),
                "end_date": D(2025, 3, 31),
            },
        ],
        "practices": [
            {"practice_id": "A81001", "pcn_id": "U1", "icb": "QE1"},
            {"practice_id": "B82002", "pcn_id": "U2", "icb": "QE2"},
        ],
    }
    practice = registrations.practice_on(index_date)
    out = run(
        engine,
        tmp_path,
        tables,
        {
            "registered": registrations.registered_on(index_date),
            "practice": practice.practice_id,
            "pcn": practice.pcn_id,
            "icb": practice.icb,
            "since": registrations.for_patient_on(index_date).start_date,
        },
    )
    assert out["1"] == dict(
        registered=True, practice="B82002", pcn="U2", icb="QE2", since=D(2025, 1, 15)
    )
    assert out["2"] == dict(registered=False, practice=None, pcn=None, icb=None, since=None)
    assert out["3"]["registered"] is False
    assert out["4"]["registered"] is True and out["4"]["pcn"] == "U1"


def test_address_overlap_rule_and_area_attributes(engine, tmp_path):
    tables = {
        "patients": [{"patient_id": p} for p in "123456"],
        "addresses": [
            # overlap: the latest start wins
            {"patient_id": "1", "start_date": D(2015, 1, 1), "lsoa_code": "X01000001"},
            {"patient_id": "1", "start_date": D(2024, 6, 1), "lsoa_code": "X01000002"},
            # same start: the alphabetically last LSOA code wins
            {"patient_id": "2", "start_date": D(2020, 1, 1), "lsoa_code": "X01000001"},
            {"patient_id": "2", "start_date": D(2020, 1, 1), "lsoa_code": "X01000002"},
            # moved out before the index date: no address on the date
            {
                "patient_id": "3",
                "start_date": D(2015, 1, 1),
                "end_date": D(2025, 1, 1),
                "lsoa_code": "X01000001",
            },
            # address not geocoded
            {"patient_id": "4", "start_date": D(2015, 1, 1), "lsoa_code": None, "care_home": True},
            # an LSOA the areas table does not hold
            {"patient_id": "5", "start_date": D(2015, 1, 1), "lsoa_code": "X01000099"},
        ],
        "areas": [
            {
                "lsoa_code": "X01000001",
                "imd_decile": 9,
                "imd_quintile": 5,
                "core20": False,
                "no2_quintile": 1,
                "pm_quintile": 2,
                "fuel_poverty_pct": 8.5,
                "icb": "QX1",
            },
            {
                "lsoa_code": "X01000002",
                "imd_decile": 1,
                "imd_quintile": 1,
                "core20": True,
                "no2_quintile": 5,
                "pm_quintile": 5,
                "fuel_poverty_pct": 21.0,
                "icb": "QX2",
            },
        ],
    }
    area = addresses.area_on(index_date)
    out = run(
        engine,
        tmp_path,
        tables,
        {
            "lsoa": area.lsoa_code,
            "decile": area.imd_decile,
            "quintile": area.group("imd_quintile"),
            "core20": area.group("core20"),
            "no2": area.no2_quintile,
            "fuel": area.fuel_poverty_pct,
            "icb": area.icb,
            "care_home": area.care_home,
            "status": area.status,
        },
    )
    assert out["1"] == dict(
        lsoa="X01000002",
        decile=1,
        quintile="1",
        core20="true",
        no2=5,
        fuel=21.0,
        icb="QX2",
        care_home=False,
        status="known",
    )
    assert out["2"]["lsoa"] == "X01000002"
    unknown = dict(decile=None, quintile="unknown", core20="unknown", no2=None, fuel=None, icb=None)
    assert {k: out["3"][k] for k in unknown} == unknown and out["3"]["status"] == "no_address"
    assert {k: out["4"][k] for k in unknown} == unknown and out["4"]["status"] == "not_geocoded"
    assert out["4"]["care_home"] is True
    assert {k: out["5"][k] for k in unknown} == unknown
    assert out["5"]["status"] == "lsoa_not_in_areas"
    assert out["6"]["status"] == "no_address" and out["6"]["quintile"] == "unknown"
