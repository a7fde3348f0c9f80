"""Ingest: an NHS number that is not valid is a data error, and a later entered-in-error or
corrected version of a record withdraws or replaces the row its earlier version loaded —
within a run and across ``--append`` runs, for every resource type ingest loads."""

from __future__ import annotations

import hashlib
import hmac
import json

import pandas as pd

from pophealth.ingest.fhir import ingest_fhir
from pophealth.ingest.pseudonym import nhs_number_problem, nhs_number_valid
from pophealth.store import Store

KEY = b"withdrawals-nhs-key-0123456789"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
SCT = "http://snomed.info/sct"
# The NHS Data Dictionary's worked example of the modulus-11 check (NHS NUMBER): 943 476 5919.
# 9x10+4x9+3x8+4x7+7x6+6x5+5x4+9x3+1x2 = 299 = 27x11 + 2; 11 - 2 = 9, its tenth digit.
VALID = "9434765919"
BAD_CHECK = "9434765918"  # the same nine digits with another check digit


def _pid(text: str) -> str:
    return hmac.new(KEY, text.encode(), hashlib.sha256).hexdigest()[:32]


def _write(path, resources) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in resources))


def _quarantine(summary) -> pd.DataFrame:
    if summary.quarantine_file is None:
        return pd.DataFrame(columns=["record_type", "location", "field", "value", "reason"])
    return pd.read_csv(summary.quarantine_file, dtype=str, keep_default_na=False)


def _patient(pid: str, nhs: str | None = None, birth: str = "1950-01-01") -> dict:
    p = {"resourceType": "Patient", "id": pid, "birthDate": birth, "gender": "female"}
    if nhs is not None:
        p["identifier"] = [{"system": NHS, "value": nhs}]
    return p


def _condition(cid: str, subject: dict, code: str = "195967001", **extra) -> dict:
    return {
        "resourceType": "Condition",
        "id": cid,
        "subject": subject,
        "code": {"coding": [{"system": SCT, "code": code}]},
        "onsetDateTime": "2020-05-01",
        **extra,
    }


# -- NHS numbers -------------------------------------------------------------------------


def test_the_data_dictionary_example_and_its_formatting():
    assert nhs_number_problem(VALID) is None
    assert nhs_number_problem("943 476 5919") is None
    assert nhs_number_problem("943-476-5919") is None
    assert "check digit of 943476591 is 9, not 8" in nhs_number_problem(BAD_CHECK)
    for text in ("943476591", "94347659190", "NHS9434765919", "943/476/5919", ""):
        assert "10 digits expected" in nhs_number_problem(text)
    # 0000000060-69: 6x2 = 12, 11 - 1 = 10: no check digit makes these nine digits valid
    assert "would be 10" in nhs_number_problem("0000000061")


def test_scalar_check_agrees_with_the_vectorised_one():
    import numpy as np

    ids = [f"{x:010d}" for x in np.random.default_rng(5).integers(0, 10**10, 5000)]
    ids += ["943 476 5919", "943-476-5919", " 9434765919 ", "94347659l9", None]
    scalar = [nhs_number_problem(v) is None for v in ids]
    assert scalar == nhs_number_valid(ids).tolist()
    assert 300 < sum(scalar) < 600  # about 1 in 11 pass


def test_patients_with_an_invalid_nhs_number_are_quarantined_not_merged(tmp_path):
    src = tmp_path / "src"
    _write(
        src / "Patient.ndjson",
        [
            _patient("a", BAD_CHECK, "1950-01-01"),
            _patient("b", BAD_CHECK, "1990-07-07"),  # another person, same bad number
            _patient("c", "12345"),
            _patient("d", "943 476 5919"),  # valid, written in groups
            _patient("e", VALID),  # the same person as d
        ],
    )
    _write(
        src / "Condition.ndjson",
        [
            _condition("c1", {"reference": "Patient/a"}),
            _condition("c2", {"reference": "Patient/d"}),
        ],
    )
    s = ingest_fhir([src], tmp_path / "st", key=KEY)
    assert s.balanced and s.committed
    pats = Store.open(tmp_path / "st").read("patients").to_pandas()
    # d and e are one patient, keyed by the number without its spaces; a, b, c are not loaded
    # (not under the bad number, nor under their resource ids)
    assert list(pats.patient_id) == [_pid(f"nhs:{VALID}")]
    q = _quarantine(s)
    bad = q[q.record_type == "Patient"].sort_values("location")
    assert list(bad.value) == [BAD_CHECK, BAD_CHECK, "12345"]
    assert set(bad.field) == {"Patient.identifier (NHS number)"}
    assert "modulus-11 check digit of 943476591 is 9, not 8" in bad.reason.iloc[0]
    assert "10 digits expected" in bad.reason.iloc[2]
    # the Condition of patient a is quarantined saying why (not as a reference to nobody)
    cond = q[q.record_type == "Condition"]
    assert len(cond) == 1 and cond.field.iloc[0] == "patient_id"
    assert "its patients record was quarantined" in cond.reason.iloc[0]
    assert "not a valid NHS number" in cond.reason.iloc[0]
    assert s.records["Patient"].quarantined == 3 and s.records["Condition"].loaded == 1


def test_a_reference_by_an_invalid_nhs_number_quarantines_the_record(tmp_path):
    src = tmp_path / "src"
    by_bad = {"identifier": {"system": NHS, "value": BAD_CHECK}}
    by_bad_conditional = {"reference": f"Patient?identifier={NHS}|{BAD_CHECK}"}
    _write(
        src / "in.ndjson",
        [
            _patient("d", VALID),
            _condition("c1", by_bad),
            _condition("c2", by_bad_conditional),
            _condition("c3", {"identifier": {"system": NHS, "value": "943-476-5919"}}),
        ],
    )
    s = ingest_fhir([src], tmp_path / "st", key=KEY)
    assert s.balanced
    ev = Store.open(tmp_path / "st").read("events").to_pandas()
    assert list(ev.patient_id) == [_pid(f"nhs:{VALID}")]
    q = _quarantine(s).sort_values("record_id")
    assert list(q.record_id) == ["c1", "c2"]
    assert list(q.field) == ["Condition.subject.identifier", "Condition.subject.reference"]
    assert all("not a valid NHS number" in r for r in q.reason)


def test_a_bundle_patient_with_an_invalid_nhs_number_takes_its_records_with_it(tmp_path):
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": "urn:uuid:p-1", "resource": _patient("p-1", BAD_CHECK)},
            {"resource": _condition("c1", {"reference": "urn:uuid:p-1"})},
        ],
    }
    src = tmp_path / "src"
    src.mkdir()
    (src / "b.json").write_text(json.dumps(bundle))
    s = ingest_fhir([src], tmp_path / "st", key=KEY)
    assert s.balanced and not s.committed  # nothing else to load
    q = _quarantine(s)
    cond = q[q.record_type == "Condition"]
    assert cond.field.tolist() == ["Condition.subject -> Patient.identifier (NHS number)"]
    assert cond.reason.iloc[0].startswith("the Patient it refers to: not a valid NHS number")


def test_uk_core_baby_example_with_a_failing_nhs_number_is_quarantined(samples, tmp_path):
    # The UK Core BabyPatient example's NHS number 9912003890 fails the check (see
    # test_ingest_audit12.test_published_example_nhs_numbers); Richard Smith's passes.
    xml = samples / "fhir" / "uk_core_examples_xml"
    files = [
        xml / "UKCore-Patient-BabyPatient-Example.xml",
        xml / "UKCore-Patient-RichardSmith-Example.xml",
    ]
    s = ingest_fhir(files, tmp_path / "st", key=KEY)
    assert s.balanced
    assert s.records["Patient"].loaded == 1 and s.records["Patient"].quarantined == 1
    q = _quarantine(s)
    assert q.value.tolist() == ["9912003890"]
    assert "check digit of 991200389 is 6, not 0" in q.reason.iloc[0]
