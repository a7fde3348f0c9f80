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
