"""Ingest: a MedicationDispense of a prescription that is loaded is the same supply, counted
once, as the prescription — whatever form its ``authorizingPrescription`` reference takes,
in whichever file or order they come, and with ``--append`` when the prescription came in
an earlier run. A dispense whose prescription is not loaded is a supply of its own.

Without this, a feed holding both (EPS prescriptions and their dispense notifications, a
shared care record) counted every supplied inhaler twice: two SABA issues for one."""

from __future__ import annotations

import json

import pytest

from pophealth.ingest.fhir import INPATIENT_REASON, NOT_ISSUED_INTENTS, ingest_fhir
from pophealth.ingest.sink import DISPENSED_REASON
from pophealth.store import Store

KEY = b"dispense-with-prescription-key-01"
DMD = "https://dmd.nhs.uk"
SALBUTAMOL = "39113611000001102"  # a dm+d-style product code (the test's own)
EPS_ITEM = "https://fhir.nhs.uk/Id/prescription-order-item-number"


def _write(path, resources) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in resources))


def _patient(pid: str) -> dict:
    return {"resourceType": "Patient", "id": pid, "birthDate": "1980-01-01", "gender": "male"}


def _request(rid: str, patient: str = "p1", *, day: str = "2024-03-01", **extra) -> dict:
    return {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": "active",
        "intent": "order",
        "subject": {"reference": f"Patient/{patient}"},
        "medicationCodeableConcept": {"coding": [{"system": DMD, "code": SALBUTAMOL}]},
        "authoredOn": day,
        "dispenseRequest": {"quantity": {"value": 1, "unit": "inhaler"}},
        **extra,
    }


def _dispense(did: str, prescription: dict | None, patient: str = "p1", **extra) -> dict:
    d = {
        "resourceType": "MedicationDispense",
        "id": did,
        "status": "completed",
        "subject": {"reference": f"Patient/{patient}"},
        "medicationCodeableConcept": {"coding": [{"system": DMD, "code": SALBUTAMOL}]},
        "whenHandedOver": "2024-03-04T11:00:00Z",
        "quantity": {"value": 1, "unit": "inhaler"},
        **extra,
    }
    if prescription is not None:
        d["authorizingPrescription"] = [prescription]
    return d


def _medications(store) -> list[tuple[str, str]]:
    m = Store.open(store).read("medications").to_pandas()
    return sorted(zip(m["date"].astype(str), m["code"], strict=True))


def _check_once_as_prescription(s, store) -> None:
    assert s.balanced and s.committed
    assert _medications(store) == [("2024-03-01", SALBUTAMOL)]  # the prescription's day
    assert s.tables["medications"].same_supply == 1
    assert s.tables["medications"].loaded == 1
    dispenses = s.records["MedicationDispense"]
    assert dispenses.loaded == 0 and dispenses.skip_reasons[DISPENSED_REASON] == 1
    assert any("are one supply, counted once" in note for note in s.notes)


@pytest.mark.parametrize(
    "reference",
    [
        {"reference": "MedicationRequest/rx1"},
        {"reference": "rx1"},  # a bare id (the UK Core examples write it so)
        {"reference": "https://fhir.example.nhs.uk/R4/MedicationRequest/rx1/_history/2"},
        {"identifier": {"system": EPS_ITEM, "value": "A7B86F8D-1D6E-4D55-BFD4-3B5D0C1E2F10"}},
    ],
    ids=["relative", "bare-id", "absolute-with-history", "eps-order-item"],
)
def test_a_dispense_of_a_loaded_prescription_is_counted_once(tmp_path, reference):
    request = _request(
        "rx1",
        identifier=[{"system": EPS_ITEM, "value": "A7B86F8D-1D6E-4D55-BFD4-3B5D0C1E2F10"}],
    )
    src = tmp_path / "src"
    _write(src / "Patient.ndjson", [_patient("p1")])
    _write(src / "MedicationRequest.ndjson", [request])
    _write(src / "MedicationDispense.ndjson", [_dispense("d1", reference)])
    s = ingest_fhir([src], tmp_path / "st", key=KEY)
    _check_once_as_prescription(s, tmp_path / "st")


def test_in_a_bundle_by_urn_uuid_and_the_dispense_read_first(tmp_path):
    """The dispense comes before its prescription in the Bundle, and names it by the
    entry's fullUrl."""
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "fullUrl": "urn:uuid:0f6f1b9e-3a55-4b0e-9a38-5c0cb2a0c001",
                "resource": _patient("p1"),
            },
            {
                "fullUrl": "urn:uuid:0f6f1b9e-3a55-4b0e-9a38-5c0cb2a0c003",
                "resource": _dispense(
                    "d1",
                    {"reference": "urn:uuid:0f6f1b9e-3a55-4b0e-9a38-5c0cb2a0c002"},
                    subject={"reference": "urn:uuid:0f6f1b9e-3a55-4b0e-9a38-5c0cb2a0c001"},
                ),
            },
            {
                "fullUrl": "urn:uuid:0f6f1b9e-3a55-4b0e-9a38-5c0cb2a0c002",
                "resource": _request(
                    "rx1", subject={"reference": "urn:uuid:0f6f1b9e-3a55-4b0e-9a38-5c0cb2a0c001"}
                ),
            },
        ],
    }
    src = tmp_path / "src"
    src.mkdir()
    (src / "bundle.json").write_text(json.dumps(bundle))
    s = ingest_fhir([src], tmp_path / "st", key=KEY)
    _check_once_as_prescription(s, tmp_path / "st")


def test_dispenses_without_a_loaded_prescription_are_supplies(tmp_path):
    """No link, a link to a prescription not in the feed, to one that is only an option
    (not issued, so not loaded), or to another patient's prescription of the same id: each
    dispense loads."""
    src = tmp_path / "src"
    _write(src / "Patient.ndjson", [_patient("p1"), _patient("p2")])
    _write(
        src / "MedicationRequest.ndjson",
        [_request("rx1", "p2"), _request("rx9", intent="option")],
    )
    _write(
        src / "MedicationDispense.ndjson",
        [
            _dispense("d1", None, whenHandedOver="2024-03-04"),
            _dispense(
                "d2", {"reference": "MedicationRequest/not-sent"}, whenHandedOver="2024-03-05"
            ),
            _dispense("d3", {"reference": "MedicationRequest/rx9"}, whenHandedOver="2024-03-06"),
            # rx1 is p2's prescription, not p1's
            _dispense("d4", {"reference": "MedicationRequest/rx1"}, whenHandedOver="2024-03-07"),
        ],
    )
    s = ingest_fhir([src], tmp_path / "st", key=KEY)
    assert s.balanced and s.committed
    assert s.records["MedicationDispense"].loaded == 4
    assert s.tables["medications"].same_supply == 0
    assert _medications(tmp_path / "st") == [
        ("2024-03-01", SALBUTAMOL),  # p2's prescription
        *[(f"2024-03-0{d}", SALBUTAMOL) for d in (4, 5, 6, 7)],
    ]


def test_a_prescription_of_an_earlier_append_run_counts_its_later_dispense(tmp_path):
    first, later = tmp_path / "first", tmp_path / "later"
    _write(first / "Patient.ndjson", [_patient("p1")])
    _write(first / "MedicationRequest.ndjson", [_request("rx1")])
    _write(later / "MedicationDispense.ndjson", [_dispense("d1", {"reference": "rx1"})])
    store = tmp_path / "st"
    assert ingest_fhir([first], store, key=KEY).committed
    s = ingest_fhir([later], store, key=KEY, append=True)
    assert s.balanced
    assert s.tables["medications"].same_supply == 1
    assert _medications(store) == [("2024-03-01", SALBUTAMOL)]


def test_a_dispense_of_an_earlier_append_run_stands_for_its_later_prescription(tmp_path):
    """The other order: the dispense came first (a pharmacy feed), its prescription in a
    later run (the GP record). The stored dispense stays the one count; the prescription is
    not loaded, nor a second dispense of it that comes with it."""
    first, later = tmp_path / "first", tmp_path / "later"
    _write(first / "Patient.ndjson", [_patient("p1")])
    _write(first / "MedicationDispense.ndjson", [_dispense("d1", {"reference": "rx1"})])
    _write(later / "MedicationRequest.ndjson", [_request("rx1")])
    _write(
        later / "MedicationDispense.ndjson",
        [_dispense("d2", {"reference": "MedicationRequest/rx1"}, whenHandedOver="2024-04-02")],
    )
    store = tmp_path / "st"
    assert ingest_fhir([first], store, key=KEY).committed
    s = ingest_fhir([later], store, key=KEY, append=True)
    assert s.balanced
    assert s.tables["medications"].same_supply == 2
    assert s.records["MedicationRequest"].skip_reasons[DISPENSED_REASON] == 1
    assert _medications(store) == [("2024-03-04", SALBUTAMOL)]  # the dispense's day
    # a third run sending the prescription again still counts it once
    assert ingest_fhir([later], store, key=KEY, append=True).tables["medications"].loaded == 0
    assert _medications(store) == [("2024-03-04", SALBUTAMOL)]


def test_inpatient_medication_is_not_a_medicine_issued(tmp_path):
    """A request, dispense or statement of category inpatient (medicines given on the
    ward) is skipped with its reason; discharge, outpatient and community ones load."""
    cat = "http://terminology.hl7.org/CodeSystem/medicationrequest-category"

    def category(code: str) -> list[dict]:
        return [{"coding": [{"system": cat, "code": code}]}]

    src = tmp_path / "src"
    _write(src / "Patient.ndjson", [_patient("p1")])
    _write(
        src / "MedicationRequest.ndjson",
        [
            _request("ward", day="2024-03-01", category=category("inpatient")),
            _request("tto", day="2024-03-02", category=category("discharge")),
            _request("opd", day="2024-03-03", category=category("outpatient")),
            _request("gp", day="2024-03-05", category=category("community")),
        ],
    )
    _write(
        src / "MedicationDispense.ndjson",
        [_dispense("ward-supply", None, category=category("inpatient"))],
    )
    s = ingest_fhir([src], tmp_path / "st", key=KEY)
    assert s.balanced and s.committed
    assert [d for d, _ in _medications(tmp_path / "st")] == [
        "2024-03-02",
        "2024-03-03",
        "2024-03-05",
    ]
    assert s.records["MedicationRequest"].skip_reasons[INPATIENT_REASON] == 1
    assert s.records["MedicationDispense"].skip_reasons[INPATIENT_REASON] == 1


def test_a_suppliers_copy_and_a_single_dose_are_not_issues(tmp_path):
    """FHIR request intents: a filler-order is the fulfilling system's view of an order
    placed elsewhere (the order is the issue), an instance-order one occurrence of an
    order (a dose given); an order and an original-order are issues."""
    src = tmp_path / "src"
    _write(src / "Patient.ndjson", [_patient("p1")])
    _write(
        src / "MedicationRequest.ndjson",
        [
            _request("rx1", day="2024-03-01"),
            _request("rx1-pharmacy", day="2024-03-02", intent="filler-order"),
            _request("dose-1", day="2024-03-03", intent="instance-order"),
            _request("rx2", day="2024-03-04", intent="original-order"),
        ],
    )
    s = ingest_fhir([src], tmp_path / "st", key=KEY)
    assert s.balanced and s.committed
    assert [d for d, _ in _medications(tmp_path / "st")] == ["2024-03-01", "2024-03-04"]
    reasons = s.records["MedicationRequest"].skip_reasons
    assert reasons[f"intent filler-order ({NOT_ISSUED_INTENTS['filler-order']})"] == 1
    assert reasons[f"intent instance-order ({NOT_ISSUED_INTENTS['instance-order']})"] == 1
    assert "supplier's copy" in NOT_ISSUED_INTENTS["filler-order"]


def test_the_cli_summary_counts_them(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from pophealth.cli import app
    from pophealth.commands._common import console

    src = tmp_path / "src"
    _write(src / "Patient.ndjson", [_patient("p1")])
    _write(src / "MedicationRequest.ndjson", [_request("rx1")])
    _write(src / "MedicationDispense.ndjson", [_dispense("d1", {"reference": "rx1"})])
    key = tmp_path / "key"
    key.write_bytes(KEY)
    monkeypatch.setattr(console, "_width", 1000)  # (Rich read COLUMNS when it was made)
    result = CliRunner().invoke(
        app, ["ingest", "fhir", str(src), "--out", str(tmp_path / "st"), "--key-file", str(key)]
    )
    assert result.exit_code == 0, result.output
    assert "same supply" in result.output
    assert "counted once, as" in result.output
