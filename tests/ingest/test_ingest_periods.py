"""A period whose end is before its start is quarantined, naming the end field and both
values; an end on the start (a day case, a one-day registration) or no end (still open)
loads. Flat tables, FHIR and OMOP share the check (pophealth.validate)."""

from __future__ import annotations

import json

import pandas as pd

from pophealth.ingest.fhir import ingest_fhir
from pophealth.ingest.flat import ingest_csv
from pophealth.ingest.omop import ingest_omop
from pophealth.store import Store

KEY = b"periods-key-0123456789abc"
PATIENTS = (
    "patient_id,date_of_birth,sex,ethnicity_5,ethnicity_16,date_of_death\n"
    "p1,1980-01-02,female,white,A,\n"
    "p2,1990-03-04,male,white,A,1989-12-31\n"  # died before birth
    "p3,1990-03-04,male,white,A,1990-03-04\n"  # died on the day of birth
)


def _q(summary) -> pd.DataFrame:
    assert summary.quarantine_file is not None
    return pd.read_csv(summary.quarantine_file, dtype=str, keep_default_na=False)


def _flat(tmp_path, **files):
    d = tmp_path / "flat"
    d.mkdir()
    (d / "patients.csv").write_text(PATIENTS)
    for name, text in files.items():
        (d / name).write_text(text)
    return d


def test_flat_rows_ending_before_they_start_are_quarantined_with_line_and_field(tmp_path):
    d = _flat(
        tmp_path,
        **{
            "registrations.csv": "patient_id,practice_id,start_date,end_date\n"
            "p1,A81001,2021-05-01,2020-01-01\n"  # line 2: ends before it starts
            "p1,A81002,2021-05-01,2021-05-01\n"  # one day: valid
            "p1,A81003,2021-05-02,\n",  # open: valid
            "addresses.csv": "patient_id,start_date,end_date,lsoa_code,care_home\n"
            "p1,2010-01-01,2015-01-01,E01000001,false\n"
            "p1,2015-01-02,2015-01-01,E01000002,false\n",  # line 3: a day before its start
            "admissions.csv": "patient_id,admission_date,discharge_date,admission_method\n"
            "p1,2022-03-04,2022-03-04,elective\n"  # day case: valid
            "p1,2022-03-10,2022-03-09,emergency\n",  # line 3: discharged before admitted
        },
    )
    out = tmp_path / "st"
    s = ingest_csv(d, out)
    assert s.balanced and s.committed
    counts = {n: (s.tables[n].loaded, s.tables[n].quarantined) for n in s.tables}
    assert counts["registrations"] == (2, 1)
    assert counts["addresses"] == (1, 1)
    assert counts["admissions"] == (1, 1)
    assert counts["patients"] == (2, 1)  # p2 died before birth
    q = _q(s).set_index("table")
    reg = q.loc["registrations"]
    assert reg["file"].endswith("registrations.csv")
    assert (reg["location"], reg["field"], reg["value"]) == ("line 2", "end_date", "2020-01-01")
    assert reg["reason"] == "end_date 2020-01-01 is before start_date 2021-05-01"
    assert q.loc["addresses", "location"] == "line 3"
    assert q.loc["addresses", "reason"] == "end_date 2015-01-01 is before start_date 2015-01-02"
    adm = q.loc["admissions"]
    assert (adm["location"], adm["field"]) == ("line 3", "discharge_date")
    assert adm["reason"] == "discharge_date 2022-03-09 is before admission_date 2022-03-10"
    pat = q.loc["patients"]
    assert (pat["location"], pat["field"]) == ("line 3", "date_of_death")
    assert pat["reason"] == "date_of_death 1989-12-31 is before date_of_birth 1990-03-04"
    store = Store.open(out)
    regs = store.read("registrations").to_pandas()
    assert sorted(regs.practice_id) == ["A81002", "A81003"]
    assert sorted(store.read("patients").to_pandas().patient_id) == ["p1", "p3"]


def test_emergency_departure_before_arrival_is_compared_to_the_minute(tmp_path):
    d = _flat(
        tmp_path,
        **{
            "emergency_attendances.csv": "patient_id,arrival_datetime,departure_datetime\n"
            "p1,2023-01-01T10:00:00,2023-01-01T09:59:00\n"  # line 2: left before arriving
            "p1,2023-01-02T10:00:00,2023-01-02T10:00:00\n"
            "p1,2023-01-03T23:30:00,2023-01-04T01:00:00\n"
            "p1,2023-01-05T10:00:00,2023-01-05\n"  # a date without a time: that day
            "p1,2023-01-06T10:00:00,2023-01-05\n"  # line 6: the day before
            "p1,2023-01-07T10:00:00,\n",
        },
    )
    s = ingest_csv(d, tmp_path / "st")
    assert s.balanced
    t = s.tables["emergency_attendances"]
    assert (t.loaded, t.quarantined) == (4, 2)
    q = _q(s).query("table == 'emergency_attendances'")
    assert q.location.tolist() == ["line 2", "line 6"]
    assert set(q.field) == {"departure_datetime"}
    assert q.reason.iloc[0] == (
        "departure_datetime 2023-01-01 09:59:00 is before arrival_datetime 2023-01-01 10:00:00"
    )
    assert q.reason.iloc[1] == "departure_datetime 2023-01-05 is before arrival_datetime 2023-01-06"


def test_fhir_address_period_and_encounter_ending_before_they_start_are_quarantined(tmp_path):
    patient = {
        "resourceType": "Patient",
        "id": "a",
        "birthDate": "1950-02-03",
        "gender": "female",
        "address": [
            {"use": "home", "district": "E01000001", "period": {"start": "2000-01-01"}},
            {
                "use": "old",
                "district": "E01000002",
                "period": {"start": "1999-01-01", "end": "1998-06-30"},
            },
        ],
    }
    enc = {
        "resourceType": "Encounter",
        "id": "e1",
        "status": "finished",
        "class": {"code": "IMP"},
        "subject": {"reference": "Patient/a"},
        "period": {"start": "2020-05-02", "end": "2020-05-01"},
    }
    ok = {**enc, "id": "e2", "period": {"start": "2020-06-01", "end": "2020-06-01"}}
    f = tmp_path / "p.ndjson"
    f.write_text("\n".join(json.dumps(r) for r in (patient, enc, ok)) + "\n")
    s = ingest_fhir([f], tmp_path / "st", key=KEY)
    assert s.balanced
    assert (s.tables["addresses"].loaded, s.tables["addresses"].quarantined) == (1, 1)
    assert (s.tables["admissions"].loaded, s.tables["admissions"].quarantined) == (1, 1)
    q = _q(s).set_index("table")
    assert q.loc["addresses", "location"] == "line 1"
    assert q.loc["addresses", "reason"] == "end_date 1998-06-30 is before start_date 1999-01-01"
    assert q.loc["admissions", "location"] == "line 2"
    assert q.loc["admissions", "record_id"] == "e1"
    assert q.loc["admissions", "field"] == "discharge_date"


def test_omop_observation_period_and_visit_ending_before_they_start_are_quarantined(tmp_path):
    d = tmp_path / "omop"
    d.mkdir()
    (d / "person.csv").write_text(
        "person_id,gender_concept_id,year_of_birth,month_of_birth,day_of_birth,care_site_id\n"
        "1,8507,1960,5,1,7\n"
    )
    (d / "care_site.csv").write_text(
        "care_site_id,care_site_name,care_site_source_value\n7,Practice,A81001\n"
    )
    (d / "observation_period.csv").write_text(
        "observation_period_id,person_id,observation_period_start_date,"
        "observation_period_end_date\n"
        "1,1,2010-01-01,2009-12-31\n"  # ends the day before it starts
        "2,1,2011-01-01,2019-12-31\n"
    )
    (d / "visit_occurrence.csv").write_text(
        "visit_occurrence_id,person_id,visit_concept_id,visit_start_date,visit_end_date\n"
        "1,1,9201,2020-01-10,2020-01-12\n"
        "2,1,9201,2020-02-10,2020-02-01\n"  # discharged before admitted
    )
    s = ingest_omop(d, tmp_path / "st", key=KEY)
    assert s.balanced
    assert (s.tables["registrations"].loaded, s.tables["registrations"].quarantined) == (1, 1)
    assert (s.tables["admissions"].loaded, s.tables["admissions"].quarantined) == (1, 1)
    q = _q(s).set_index("table")
    assert q.loc["registrations", "location"] == "line 2"
    assert q.loc["registrations", "reason"] == "end_date 2009-12-31 is before start_date 2010-01-01"
    assert q.loc["admissions", "location"] == "line 3"
    assert q.loc["admissions", "reason"] == (
        "discharge_date 2020-02-01 is before admission_date 2020-02-10"
    )


def _encounter(rid: str, klass: str, start: str, end: str) -> dict:
    return {
        "resourceType": "Encounter",
        "id": rid,
        "status": "finished",
        "class": {"code": klass},
        "subject": {"reference": "Patient/a"},
        "period": {"start": start, "end": end},
    }


def test_fhir_periods_whose_ends_have_other_offsets_are_compared_as_instants(tmp_path):
    """23:30 at -02:00 is 01:30 UTC the next day: an end at 00:10 UTC that day is 80
    minutes before it, though its date is later; an end at 23:45 UTC the day before a start
    at 00:30 +01:00 is 15 minutes after it, though its date is earlier (its date is then
    taken at the start's offset, so that the stored period does not end before it starts).
    Dates without a time, or a time without an offset, are compared by day as before."""
    patient = {
        "resourceType": "Patient",
        "id": "a",
        "birthDate": "1950-02-03",
        "gender": "female",
        "address": [
            {
                "use": "old",
                "district": "E01000001",
                "period": {"start": "2010-01-01T23:30:00-02:00", "end": "2010-01-02T00:10:00Z"},
            },
            {
                "use": "home",
                "district": "E01000002",
                "period": {"start": "2010-01-02T00:30:00+01:00"},
            },
        ],
    }
    encounters = [
        # line 2: ends 80 minutes before it starts
        _encounter("e1", "IMP", "2025-03-01T23:30:00-02:00", "2025-03-02T00:10:00+00:00"),
        # 15 minutes long: loads, both dates 1 June
        _encounter("e2", "IMP", "2025-06-01T00:30:00+01:00", "2025-05-31T23:45:00Z"),
        # ends after it starts: dates as written
        _encounter("e3", "IMP", "2025-03-01T23:30:00-02:00", "2025-03-02T05:00:00+00:00"),
        # an end without a time: compared by day
        _encounter("e4", "IMP", "2025-04-01T10:00:00+01:00", "2025-04-01"),
        # line 6: an end without an offset is compared by day, and that day is earlier
        _encounter("e5", "IMP", "2025-04-02T00:30:00+01:00", "2025-04-01T23:45:00"),
        # line 7: an emergency attendance (timestamps) is compared as instants too
        _encounter("e6", "EMER", "2025-03-01T23:30:00-02:00", "2025-03-02T00:10:00+00:00"),
        _encounter("e7", "EMER", "2025-06-01T00:30:00+01:00", "2025-05-31T23:45:00Z"),
    ]
    f = tmp_path / "p.ndjson"
    f.write_text("\n".join(json.dumps(r) for r in (patient, *encounters)) + "\n")
    s = ingest_fhir([f], tmp_path / "st", key=KEY)
    assert s.balanced and s.committed
    counts = {n: (s.tables[n].loaded, s.tables[n].quarantined) for n in s.tables}
    assert counts["addresses"] == (1, 1)
    assert counts["admissions"] == (3, 2)
    assert counts["emergency_attendances"] == (1, 1)
    q = _q(s)
    addr = q.query("table == 'addresses'").iloc[0]
    assert (addr.location, addr.field, addr.value) == ("line 1", "end_date", "2010-01-02T00:10:00Z")
    assert addr.reason == (
        "end_date 2010-01-02T00:10:00Z is before start_date 2010-01-01T23:30:00-02:00"
    )
    adm = q.query("table == 'admissions'").sort_values("location")
    assert adm.location.tolist() == ["line 2", "line 6"]
    assert adm.field.tolist() == ["discharge_date", "discharge_date"]
    assert adm.reason.tolist() == [
        "discharge_date 2025-03-02T00:10:00+00:00 is before admission_date "
        "2025-03-01T23:30:00-02:00",
        "discharge_date 2025-04-01 is before admission_date 2025-04-02",
    ]
    assert q.query("table == 'emergency_attendances'").location.tolist() == ["line 7"]
    store = Store.open(tmp_path / "st")
    loaded = store.read("admissions").to_pandas().sort_values("admission_date")
    periods = loaded[["admission_date", "discharge_date"]].astype(str).to_numpy().tolist()
    assert periods == [
        ["2025-03-01", "2025-03-02"],
        ["2025-04-01", "2025-04-01"],
        ["2025-06-01", "2025-06-01"],
    ]
