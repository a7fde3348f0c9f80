"""Faults the FHIR sample audit (test_fhir_samples_audit.py) found, each pinned by a small
record shaped like the sample that showed it:

* a UCUM-coded Quantity stored its display text ("millimeter of mercury") as the unit, so one
  unit read two ways (UK Core vs Synthea);
* ``daily_dose_mg`` was never computed for a dose written "milligram" (UCUM code ``mg``:
  every UK Core and EPS dose), and consecutive dosage instructions (a reducing course) would
  have been added up as if taken together;
* a QuestionnaireResponse without ``questionnaire`` loaded with its own identifier's system
  as the questionnaire;
* a record quarantined after its subject, a contained Patient, had been read (no date, no
  questionnaire …) still loaded that patient and was counted both loaded and quarantined.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from pophealth.ingest.fhir import ingest_fhir
from pophealth.store import Store

KEY = b"units-doses-key-0123456789"
UCUM = "http://unitsofmeasure.org"


def _ingest(tmp_path: Path, resources: list[dict]):
    src = tmp_path / "in.ndjson"
    src.write_text("\n".join(json.dumps(r) for r in resources) + "\n")
    summary = ingest_fhir([src], tmp_path / "store", key=KEY)
    for rtype, rc in summary.records.items():
        assert rc.records_in == rc.loaded + rc.quarantined + rc.skipped, rtype
    assert summary.balanced
    return summary, Store.open(tmp_path / "store")


PATIENT = {"resourceType": "Patient", "id": "p1", "gender": "male", "birthDate": "1970-09-11"}


def _mg(value: float) -> dict:
    return {"value": value, "unit": "milligram", "system": UCUM, "code": "mg"}


def _request(rid: str, dosages: list[dict]) -> dict:
    return {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "authoredOn": "2022-10-20",
        "medicationCodeableConcept": {
            "coding": [{"system": "https://dmd.nhs.uk", "code": "39732311000001104"}]
        },
        "dosageInstruction": dosages,
    }


def _dosage(mg: float, per_day: int, sequence: int | None = None) -> dict:
    d = {
        "timing": {"repeat": {"frequency": per_day, "period": 1, "periodUnit": "d"}},
        "doseAndRate": [{"doseQuantity": _mg(mg)}],
    }
    if sequence is not None:
        d["sequence"] = sequence
    return d


def test_a_ucum_quantity_is_stored_with_its_ucum_code(tmp_path):
    bp = {
        "resourceType": "Observation",
        "id": "bp",
        "status": "final",
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2023-08-10",
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
        "component": [
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                "valueQuantity": {
                    "value": 142,
                    "unit": "millimeter of mercury",
                    "system": UCUM,
                    "code": "mm[Hg]",
                },
            }
        ],
    }
    smoker = {
        "resourceType": "Observation",
        "id": "pipe",
        "status": "final",
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2023-08-10",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "230058003"}]},
        # no UCUM system: the unit is kept as written
        "valueQuantity": {"value": 5, "unit": "per day", "code": "/d"},
    }
    _, store = _ingest(tmp_path, [PATIENT, bp, smoker])
    events = store.read("events").to_pandas().set_index("code")
    assert events.loc["8480-6", "unit"] == "mm[Hg]"
    assert events.loc["8480-6", "value"] == 142
    assert events.loc["230058003", "unit"] == "per day"


def test_daily_dose_of_a_dose_written_milligram(tmp_path):
    # the EPS amlodipine: 5 milligram (UCUM mg) five times a day
    _, store = _ingest(tmp_path, [PATIENT, _request("m1", [_dosage(5, 5)])])
    meds = store.read("medications").to_pandas()
    assert meds["daily_dose_mg"].tolist() == [25.0]


def test_instructions_taken_together_add_up_and_consecutive_ones_have_no_daily_dose(tmp_path):
    together = _request("m1", [_dosage(10, 1, 1), _dosage(5, 2, 1)])  # 08:00 and twice more
    together["authoredOn"] = "2022-10-21"
    # a reducing course (the EPS prednisolone): 40 mg a day, then 35 mg, then 30 mg
    reducing = _request("m2", [_dosage(5, 8, 1), _dosage(5, 7, 2), _dosage(5, 6, 3)])
    _, store = _ingest(tmp_path, [PATIENT, together, reducing])
    meds = store.read("medications").to_pandas().set_index("date")
    assert meds.loc[pd.Timestamp("2022-10-21").date(), "daily_dose_mg"] == 20.0
    assert pd.isna(meds.loc[pd.Timestamp("2022-10-20").date(), "daily_dose_mg"])


def test_a_response_naming_no_questionnaire_is_quarantined_with_its_contained_patient(
    tmp_path,
):
    # the bulk sample's QuestionnaireResponse: identifier.system is a NamingSystem of
    # response ids, not a questionnaire
    qr = {
        "resourceType": "QuestionnaireResponse",
        "id": "3141",
        "contained": [
            {
                "resourceType": "Patient",
                "id": "patsub",
                "identifier": [{"system": "http://example.org/patientnr", "value": "A1"}],
                "gender": "male",
                "birthDate": "1972-11-30",
            }
        ],
        "identifier": {
            "system": "http://example.org/fhir/NamingSystem/questionnaire-ids",
            "value": "Q12349876",
        },
        "status": "completed",
        "subject": {"reference": "#patsub"},
        "authored": "2013-02-19T14:15:00-05:00",
        "item": [{"linkId": "1.1", "answer": [{"valueCoding": {"code": "1"}}]}],
    }
    named = dict(qr, id="3142", questionnaire="http://example.org/Questionnaire/cancer")
    summary, store = _ingest(tmp_path, [qr, named])
    rc = summary.records["QuestionnaireResponse"]
    assert (rc.loaded, rc.quarantined) == (1, 1)
    q = pd.read_csv(summary.quarantine_file, dtype=str)
    assert q["field"].tolist() == ["QuestionnaireResponse.questionnaire"]
    assert q["location"].tolist() == ["line 1"]
    rows = store.read("questionnaire_responses").to_pandas()
    assert set(rows["questionnaire"]) == {"http://example.org/Questionnaire/cancer"}
    # the patient loads once, with the response that loaded
    assert store.read("patients").num_rows == 1


def test_a_quarantined_record_loads_none_of_its_contained_patient(tmp_path):
    obs = {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "contained": [
            {
                "resourceType": "Patient",
                "id": "p",
                "identifier": [{"system": "http://example.org/mrn", "value": "1"}],
                "birthDate": "1970-01-01",
            }
        ],
        "subject": {"reference": "#p"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2"}]},
        "valueQuantity": {"value": 1.64, "unit": "m"},  # and no effective[x], no issued
    }
    summary, store = _ingest(tmp_path, [PATIENT, obs])
    rc = summary.records["Observation"]
    assert (rc.records_in, rc.loaded, rc.quarantined) == (1, 0, 1)
    assert store.read("patients").num_rows == 1  # p1 only
    assert summary.tables["patients"].rows_in == 1
