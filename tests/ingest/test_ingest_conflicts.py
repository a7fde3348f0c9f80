"""Two records of one patient in a run that disagree are a conflict (quarantined, naming
the key and the fields), not a duplicate; exact copies are still counted as duplicates."""

from __future__ import annotations

import json

import pandas as pd

from pophealth.ingest.fhir import ingest_fhir
from pophealth.ingest.flat import ingest_csv
from pophealth.ingest.omop import ingest_omop
from pophealth.store import Store

KEY = b"conflicts-key-0123456789ab"


def _q(summary) -> pd.DataFrame:
    return pd.read_csv(summary.quarantine_file, dtype=str, keep_default_na=False)


def test_flat_patients_with_one_id_and_different_details_are_a_conflict(tmp_path):
    d = tmp_path / "flat"
    d.mkdir()
    (d / "patients.csv").write_text(
        "patient_id,date_of_birth,sex,ethnicity_5,ethnicity_16\n"
        "p1,1980-01-02,female,white,A\n"
        "p1,1980-01-02,female,white,A\n"  # exact copy: a duplicate
        "p1,1975-06-07,male,white,A\n"  # conflict
        "p2,1990-01-01,male,unknown,Z\n"
        "p2,1990-01-01,male,asian,H\n"  # more complete, not a conflict
    )
    s = ingest_csv(d, tmp_path / "st")
    assert s.balanced
    t = s.tables["patients"]
    assert (t.rows_in, t.loaded, t.duplicates, t.quarantined) == (5, 2, 2, 1)
    q = _q(s)
    assert list(q.location) == ["line 4"]
    assert q.field.iloc[0] == "date_of_birth, sex"
    assert "conflicting record for patient_id p1" in q.reason.iloc[0]
    assert "line 2" in q.reason.iloc[0]  # the record kept
    pat = Store.open(tmp_path / "st").read("patients").to_pandas().set_index("patient_id")
    assert str(pat.loc["p1", "date_of_birth"]) == "1980-01-02"
    assert pat.loc["p2", "ethnicity_16"] == "H"


def test_fhir_patients_with_one_nhs_number_and_different_births_are_a_conflict(tmp_path):
    nhs = [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765919"}]
    a = {"resourceType": "Patient", "id": "a", "identifier": nhs, "birthDate": "1950-02-03"}
    b = {**a, "id": "b", "birthDate": "1960-02-03"}
    f = tmp_path / "p.ndjson"
    f.write_text(json.dumps(a) + "\n" + json.dumps(b) + "\n")
    s = ingest_fhir([f], tmp_path / "st", key=KEY)
    assert s.balanced and s.tables["patients"].quarantined == 1
    q = _q(s)
    assert q[q.table == "patients"].field.tolist() == ["date_of_birth"]


def test_omop_repeated_person_id_with_different_details_is_a_conflict(tmp_path):
    d = tmp_path / "omop"
    d.mkdir()
    (d / "person.csv").write_text(
        "person_id,gender_concept_id,year_of_birth,month_of_birth,day_of_birth\n"
        "1,8507,1998,4,9\n"
        "1,8532,1970,1,1\n"
    )
    s = ingest_omop(d, tmp_path / "st", key=KEY)
    assert s.balanced
    assert s.tables["patients"].quarantined == 1 and s.tables["patients"].duplicates == 0
    assert _q(s).query("table == 'patients'").location.tolist() == ["line 3"]


def test_flat_rows_of_a_patient_in_no_patients_row_are_quarantined(tmp_path):
    """A flat row naming a patient_id that no patients row has would load and then be
    invisible to every query (they join on the patient): it is quarantined as a dangling
    reference. Appending, the store's patients count."""
    d = tmp_path / "flat"
    d.mkdir()
    (d / "patients.csv").write_text(
        "patient_id,date_of_birth,sex,ethnicity_5,ethnicity_16\np1,1980-01-02,female,white,A\n"
    )
    (d / "events.csv").write_text(
        "patient_id,date,system,code\np1,2024-01-02,snomedct,271649006\n"
        "pX,2024-01-03,snomedct,271649006\n"
    )
    (d / "registrations.csv").write_text(
        "patient_id,practice_id,start_date\np1,A81001,2010-01-01\npZ,A81001,2010-01-01\n"
    )
    out = tmp_path / "st"
    s = ingest_csv(d, out)
    assert s.balanced
    assert Store.open(out).row_counts()["events"] == 1
    assert Store.open(out).row_counts()["registrations"] == 1
    q = _q(s).set_index("table")
    assert q.loc["events", "reason"].startswith("dangling reference: patient_id is in no")
    assert q.loc["events", "value"] == json.loads(q.loc["events", "record"])["patient_id"]
    assert q.loc["registrations", "field"] == "patient_id"

    more = tmp_path / "more"
    more.mkdir()  # appending: p1 is in the store, pY nowhere
    (more / "events.csv").write_text(
        "patient_id,date,system,code\np1,2024-02-02,snomedct,271649006\n"
        "pY,2024-02-03,snomedct,271649006\n"
    )
    s = ingest_csv(more, out, append=True)
    assert s.balanced and s.tables["events"].quarantined == 1
    assert Store.open(out).row_counts()["events"] == 2


ODS = "https://fhir.nhs.uk/Id/ods-organization-code"


def _fhir_patient(id_: str, birth: str, lsoa: str, ods: str, **more) -> dict:
    return {
        "resourceType": "Patient",
        "id": id_,
        "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765919"}],
        "birthDate": birth,
        "gender": "female",
        "address": [{"use": "home", "district": lsoa, "period": {"start": "2000-01-01"}}],
        "generalPractitioner": [{"identifier": {"system": ODS, "value": ods}}],
        **more,
    }


def test_fhir_conflicting_patient_record_takes_its_address_and_registration_with_it(tmp_path):
    """The conflicting Patient is quarantined as a whole: its address, registration and
    practice do not load onto the kept patient, and the record counts as quarantined."""
    a = _fhir_patient("a", "1950-02-03", "E01000001", "A81001")
    b = _fhir_patient("b", "1960-02-03", "E01000002", "B82002")
    f = tmp_path / "p.ndjson"
    f.write_text(json.dumps(a) + "\n" + json.dumps(b) + "\n")
    out = tmp_path / "st"
    s = ingest_fhir([f], out, key=KEY)
    assert s.balanced
    rc = s.records["Patient"]
    assert (rc.records_in, rc.loaded, rc.quarantined) == (2, 1, 1)
    for name in ("patients", "addresses", "registrations", "practices"):
        assert (s.tables[name].loaded, s.tables[name].quarantined) == (1, 1), name
    store = Store.open(out)
    assert store.read("addresses").to_pandas().lsoa_code.tolist() == ["E01000001"]
    assert store.read("registrations").to_pandas().practice_id.tolist() == ["A81001"]
    q = _q(s).set_index("table")
    for name in ("addresses", "registrations", "practices"):
        assert q.loc[name, "location"] == "line 2", name
        assert "quarantined as a conflict" in q.loc[name, "reason"], name
        assert "date_of_birth" in q.loc[name, "reason"], name


def test_omop_conflicting_person_row_takes_its_address_with_it(tmp_path):
    d = tmp_path / "omop"
    d.mkdir()
    (d / "location.csv").write_text("location_id,county\n1,E01000001\n2,E01000002\n")
    (d / "person.csv").write_text(
        "person_id,gender_concept_id,year_of_birth,month_of_birth,day_of_birth,location_id\n"
        "1,8507,1998,4,9,1\n"
        "1,8532,1970,1,1,2\n"
    )
    s = ingest_omop(d, tmp_path / "st", key=KEY)
    assert s.balanced
    assert (s.tables["addresses"].loaded, s.tables["addresses"].quarantined) == (1, 1)
    assert s.records["omop.person"].quarantined == 1
    q = _q(s).query("table == 'addresses'")
    assert q.location.tolist() == ["line 3"]
    assert "quarantined as a conflict" in q.reason.iloc[0]


def test_flat_rows_of_a_patient_with_no_patients_row_loaded_are_quarantined(tmp_path):
    """p1's only patients row is invalid; p2's first (most complete) row is invalid and its
    second disagrees with it. Neither may leave rows that name nobody: p1's rows are
    quarantined, saying why; p2's valid record loads (an invalid record is never the one
    kept), and so do its rows."""
    d = tmp_path / "flat"
    d.mkdir()
    (d / "patients.csv").write_text(
        "patient_id,date_of_birth,sex,ethnicity_5,ethnicity_16\n"
        "p1,1980-01-02,female,purple,A\n"
        "p2,1975-06-07,alien,white,A\n"
        "p2,1980-01-02,male,white,A\n"
        "p3,1990-01-01,male,white,A\n"
    )
    (d / "events.csv").write_text(
        "patient_id,date,system,code\n"
        "p1,2024-01-02,snomedct,271649006\n"
        "p2,2024-01-03,snomedct,271649006\n"
        "p3,2024-01-04,snomedct,271649006\n"
    )
    (d / "addresses.csv").write_text(
        "patient_id,start_date,end_date,lsoa_code,care_home\np1,2000-01-01,,E01000001,false\n"
    )
    out = tmp_path / "st"
    s = ingest_csv(d, out)
    assert s.balanced
    assert (s.tables["patients"].loaded, s.tables["patients"].quarantined) == (2, 2)
    assert (s.tables["events"].loaded, s.tables["events"].quarantined) == (2, 1)
    assert (s.tables["addresses"].loaded, s.tables["addresses"].quarantined) == (0, 1)
    store = Store.open(out)
    pat = store.read("patients").to_pandas().set_index("patient_id")
    assert sorted(pat.index) == ["p2", "p3"]
    assert pat.loc["p2", "sex"] == "male"
    assert sorted(store.read("events").to_pandas().patient_id) == ["p2", "p3"]
    q = _q(s)
    assert sorted(q.query("table == 'patients'").location) == ["line 2", "line 3"]
    rows = q[q.table.isin(["events", "addresses"])]
    assert rows.location.tolist() == ["line 2", "line 2"]
    assert set(rows.field) == {"patient_id"}
    for reason in rows.reason:
        assert reason.startswith("patient_id p1 is in no patients row: its patients record")
        assert "patients.csv, line 2" in reason and "ethnicity_5" in reason


def test_an_invalid_record_appended_for_a_stored_patient_keeps_the_stored_one(tmp_path):
    d = tmp_path / "first"
    d.mkdir()
    (d / "patients.csv").write_text(
        "patient_id,date_of_birth,sex,ethnicity_5,ethnicity_16\np1,1980-01-02,female,white,A\n"
    )
    out = tmp_path / "st"
    ingest_csv(d, out)
    more = tmp_path / "more"
    more.mkdir()
    (more / "patients.csv").write_text(
        "patient_id,date_of_birth,sex,ethnicity_5,ethnicity_16\n"
        "p1,1980-01-02,female,purple,A\n"
        "p2,1990-01-01,male,white,A\n"
    )
    (more / "events.csv").write_text(
        "patient_id,date,system,code\np1,2024-01-02,snomedct,271649006\n"
    )
    s = ingest_csv(more, out, append=True)
    assert s.balanced and s.committed
    t = s.tables["patients"]
    assert (t.loaded, t.quarantined, t.kept_from_store) == (1, 1, 1)
    store = Store.open(out)
    assert sorted(store.read("patients").to_pandas().patient_id) == ["p1", "p2"]
    assert store.row_counts()["events"] == 1  # p1 is still in the store: its event loads


def test_fhir_rows_of_a_patient_whose_record_was_quarantined_are_quarantined(tmp_path):
    patient = _fhir_patient("a", "1950-02-03", "E01000001", "A81001")
    patient["deceasedDateTime"] = "1949-01-01"  # died before birth: the record is refused
    cond = {
        "resourceType": "Condition",
        "id": "c1",
        "subject": {"reference": "Patient/a"},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "195967001"}]},
        "onsetDateTime": "1949-01-01",
    }
    other = _fhir_patient("z", "1960-01-01", "E01000001", "A81001")
    other["identifier"] = []
    f = tmp_path / "p.ndjson"
    f.write_text("\n".join(json.dumps(r) for r in (patient, cond, other)) + "\n")
    s = ingest_fhir([f], tmp_path / "st", key=KEY)
    assert s.balanced and s.committed
    assert s.records["Condition"].quarantined == 1
    assert s.records["Patient"].quarantined == 1 and s.records["Patient"].loaded == 1
    for name in ("events", "addresses", "registrations"):
        assert s.tables[name].quarantined == 1, name
    q = _q(s).query("table == 'events'")
    assert q.location.tolist() == ["line 2"]
    assert "is in no patients row" in q.reason.iloc[0]
    assert "date_of_death" in q.reason.iloc[0]


def test_fhir_rows_naming_by_nhs_number_a_patient_in_no_patient_record_are_quarantined(tmp_path):
    """A reference by NHS number names the patient without a Patient resource: with no
    patient record for that number (in the run, or the store when appending) the row would
    name nobody, so it is a dangling reference, as for flat rows."""
    nhs = "https://fhir.nhs.uk/Id/nhs-number"

    def condition(id_, number):
        return {
            "resourceType": "Condition",
            "id": id_,
            "subject": {"identifier": {"system": nhs, "value": number}},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "195967001"}]},
            "onsetDateTime": "2020-01-01",
        }

    patient = {
        "resourceType": "Patient",
        "id": "a",
        "identifier": [{"system": nhs, "value": "9434765919"}],
        "birthDate": "1950-02-03",
    }
    f = tmp_path / "p.ndjson"
    rows = (patient, condition("known", "9434765919"), condition("stranger", "9434765870"))
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    s = ingest_fhir([f], tmp_path / "st", key=KEY)
    assert s.balanced and s.committed
    assert (s.records["Condition"].loaded, s.records["Condition"].quarantined) == (1, 1)
    q = _q(s).query("table == 'events'")
    assert q.location.tolist() == ["line 3"] and q.field.tolist() == ["patient_id"]
    assert "dangling reference: the patient is in no patient record of this run" in q.reason.iloc[0]
    # appended later, once the stranger's Patient is in the store, the Condition loads
    stranger = {**patient, "id": "b", "identifier": [{"system": nhs, "value": "9434765870"}]}
    g = tmp_path / "q.ndjson"
    g.write_text(json.dumps(stranger) + "\n")
    assert ingest_fhir([g], tmp_path / "st", key=KEY, append=True).committed
    h = tmp_path / "r.ndjson"
    h.write_text(json.dumps(condition("stranger", "9434765870")) + "\n")
    s = ingest_fhir([h], tmp_path / "st", key=KEY, append=True)
    assert s.records["Condition"].loaded == 1 and s.records["Condition"].quarantined == 0
