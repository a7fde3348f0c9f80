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


def test_one_digit_ten_times_is_a_placeholder_not_a_number():
    """0000000000 … 9999999999 all pass the modulus-11 check (weights 10 … 2 add up to 54,
    and 11 − (54 × d mod 11) = d for every digit d), but they are what a system writes for
    an unknown number: refused, by both checks, with the reason."""
    import numpy as np

    placeholders = [str(d) * 10 for d in range(10)]
    weights = np.arange(10, 1, -1)
    for p in placeholders:  # the check alone would take them
        digits = np.array([int(c) for c in p])
        assert (11 - digits[:9] @ weights % 11) % 11 == digits[9]
    assert not nhs_number_valid([*placeholders, "000 000 0000", "111-111-1111"]).any()
    for p in (*placeholders, "999 999 9999"):
        assert "one digit ten times" in nhs_number_problem(p)
    assert nhs_number_valid([VALID]).all()


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


def test_patients_with_a_placeholder_nhs_number_are_not_merged_into_one(tmp_path):
    """Two people both sent with 0000000000 (an unknown number) are two quarantined
    records, not one patient holding both their conditions."""
    src = tmp_path / "src"
    _write(
        src / "Patient.ndjson",
        [
            _patient("a", "0000000000", "1950-01-01"),
            _patient("b", "000 000 0000", "1990-07-07"),
            _patient("c", VALID),
        ],
    )
    _write(
        src / "Condition.ndjson",
        [
            _condition("c1", {"reference": "Patient/a"}),
            _condition("c2", {"reference": "Patient/b"}),
            _condition("c3", {"reference": "Patient/c"}),
        ],
    )
    s = ingest_fhir([src], tmp_path / "st", key=KEY)
    assert s.balanced and s.committed
    assert s.records["Patient"].quarantined == 2 and s.records["Condition"].loaded == 1
    pats = Store.open(tmp_path / "st").read("patients").to_pandas()
    assert list(pats.patient_id) == [_pid(f"nhs:{VALID}")]
    q = _quarantine(s)
    bad = q[q.record_type == "Patient"]
    assert set(bad.field) == {"Patient.identifier (NHS number)"}
    assert bad.reason.str.contains("one digit ten times").all()
    assert (q[q.record_type == "Condition"].field == "patient_id").all()


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


# -- entered-in-error and newer versions of a record -------------------------------------

LOINC = "http://loinc.org"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
P1 = {"reference": "Patient/p1"}


def _obs(oid, value, status="final", *, code="29463-7", subject=P1, ident=None, day="2021-03-01"):
    o = {
        "resourceType": "Observation",
        "id": oid,
        "status": status,
        "subject": subject,
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "effectiveDateTime": day,
        "valueQuantity": {
            "value": value,
            "unit": "kg",
            "system": "http://unitsofmeasure.org",
            "code": "kg",
        },
    }
    if oid is None:
        del o["id"]
    if ident:
        o["identifier"] = [{"system": "https://example.org/obs", "value": ident}]
    return o


def _records(status: dict[str, str] | None = None) -> list[dict]:
    """One record of every type ingest loads as events, admissions, attendances or answers,
    each in its first version, or (``status``) a version saying it is wrong or did not
    happen."""
    st = status or {}
    out = [
        _condition(
            "c1",
            P1,
            verificationStatus={"coding": [{"code": st.get("Condition", "confirmed")}]},
        ),
        _obs("o1", 71.5, st.get("Observation", "final")),
        {
            "resourceType": "Procedure",
            "id": "pr1",
            "status": st.get("Procedure", "completed"),
            "subject": P1,
            "code": {"coding": [{"system": SCT, "code": "80146002"}]},
            "performedDateTime": "2021-04-01",
        },
        {
            "resourceType": "Immunization",
            "id": "i1",
            "status": st.get("Immunization", "completed"),
            "patient": P1,
            "vaccineCode": {"coding": [{"system": SCT, "code": "39114911000001105"}]},
            "occurrenceDateTime": "2021-10-01",
        },
        {
            "resourceType": "AllergyIntolerance",
            "id": "a1",
            "patient": P1,
            "verificationStatus": {"coding": [{"code": st.get("AllergyIntolerance", "confirmed")}]},
            "code": {"coding": [{"system": SCT, "code": "91936005"}]},
            "recordedDate": "2019-02-02",
        },
        {
            "resourceType": "Encounter",
            "id": "e1",
            "status": st.get("Encounter", "finished"),
            "class": {"code": "IMP"},
            "subject": P1,
            "serviceProvider": {"identifier": {"system": ODS, "value": "RXH01"}},
            "period": {"start": "2021-05-01T10:00:00Z", "end": "2021-05-03T10:00:00Z"},
        },
        {
            "resourceType": "Encounter",
            "id": "e2",
            "status": st.get("Encounter", "finished"),
            "class": {"code": "EMER"},
            "subject": P1,
            "period": {"start": "2021-06-01T10:00:00Z", "end": "2021-06-01T14:00:00Z"},
        },
        {
            "resourceType": "QuestionnaireResponse",
            "id": "q1",
            "status": st.get("QuestionnaireResponse", "completed"),
            "questionnaire": "https://example.org/Questionnaire/act",
            "subject": P1,
            "authored": "2021-07-01",
            "item": [{"linkId": "1", "answer": [{"valueInteger": 4}]}],
        },
    ]
    return out


WRONG = {
    "Condition": "entered-in-error",
    "Observation": "entered-in-error",
    "Procedure": "not-done",
    "Immunization": "entered-in-error",
    "AllergyIntolerance": "refuted",
    "Encounter": "entered-in-error",
    "QuestionnaireResponse": "entered-in-error",
}
RECORD_TABLES = ["events", "admissions", "emergency_attendances", "questionnaire_responses"]


def _counts(store) -> dict[str, int]:
    rc = Store.open(store).row_counts()
    return {t: rc.get(t, 0) for t in RECORD_TABLES}


def _batches(tmp_path):
    first, wrong = tmp_path / "first", tmp_path / "wrong"
    _write(first / "Patient.ndjson", [_patient("p1")])
    _write(first / "records.ndjson", _records())
    _write(wrong / "records.ndjson", _records(WRONG))
    return first, wrong


def test_first_versions_load_one_row_per_table(tmp_path):
    first, _ = _batches(tmp_path)
    s = ingest_fhir([first], tmp_path / "st", key=KEY)
    assert s.balanced
    # Condition, Observation, Procedure, Immunization, AllergyIntolerance: five events
    assert _counts(tmp_path / "st") == {
        "events": 5,
        "admissions": 1,
        "emergency_attendances": 1,
        "questionnaire_responses": 1,
    }


def test_entered_in_error_version_in_another_file_of_the_run_withdraws_the_record(tmp_path):
    first, wrong = _batches(tmp_path)
    s = ingest_fhir([first, wrong], tmp_path / "st", key=KEY)
    assert s.balanced
    assert s.tables["patients"].loaded == 1
    assert {t: s.tables[t].withdrawn for t in RECORD_TABLES} == {
        "events": 5,
        "admissions": 1,
        "emergency_attendances": 1,
        "questionnaire_responses": 1,
    }
    assert s.tables["events"].loaded == 0
    rc = s.records
    assert rc["Condition"].skip_reasons["verificationStatus entered-in-error"] == 1
    assert rc["Procedure"].skip_reasons["status not-done"] == 1
    assert rc["AllergyIntolerance"].skip_reasons["verificationStatus refuted"] == 1
    for rtype in WRONG:
        assert any(
            r.startswith("withdrawn: a version of the same record") for r in rc[rtype].skip_reasons
        ), rtype
    assert any("events row(s) of this run not loaded" in n for n in s.notes)


def test_entered_in_error_version_in_a_later_append_run_removes_the_stored_rows(tmp_path):
    first, wrong = _batches(tmp_path)
    st = tmp_path / "st"
    ingest_fhir([first], st, key=KEY)
    s = ingest_fhir([wrong], st, key=KEY, append=True)
    assert s.balanced and s.committed
    assert _counts(st) == dict.fromkeys(RECORD_TABLES, 0)
    assert {t: s.tables[t].withdrawn_from_store for t in RECORD_TABLES} == {
        "events": 5,
        "admissions": 1,
        "emergency_attendances": 1,
        "questionnaire_responses": 1,
    }
    assert all(s.tables[t].replaced_in_store == 0 for t in RECORD_TABLES)
    assert any("5 loaded by earlier runs removed" in n for n in s.notes)
    # the first versions sent again later stay withdrawn (the index keeps the withdrawal)
    s = ingest_fhir([first], st, key=KEY, append=True)
    assert s.balanced and _counts(st) == dict.fromkeys(RECORD_TABLES, 0)
    assert s.tables["events"].withdrawn == 5


def _weights(st) -> list[tuple[str, float]]:
    ev = Store.open(st).read("events").to_pandas().sort_values(["code", "value"])
    return list(zip(ev.code, ev.value, strict=True))


def test_a_newer_version_in_a_later_append_run_replaces_the_stored_row(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _write(a / "in.ndjson", [_patient("p1"), _obs("o1", 71.5), _obs("o2", 80.0, day="2021-09-01")])
    # o1 corrected (amended, new value); o2 sent again unchanged
    _write(b / "in.ndjson", [_obs("o1", 75.1, "amended"), _obs("o2", 80.0, day="2021-09-01")])
    st = tmp_path / "st"
    ingest_fhir([a], st, key=KEY)
    assert _weights(st) == [("29463-7", 71.5), ("29463-7", 80.0)]
    s = ingest_fhir([b], st, key=KEY, append=True)
    assert s.balanced and s.committed
    assert _weights(st) == [("29463-7", 75.1), ("29463-7", 80.0)]  # not both 71.5 and 75.1
    ev = s.tables["events"]
    assert (ev.loaded, ev.duplicates, ev.withdrawn_from_store, ev.replaced_in_store) == (1, 1, 1, 1)
    assert any("newer version of their record" in n for n in s.notes)
    # the same batch again changes nothing
    s = ingest_fhir([b], st, key=KEY, append=True)
    ev = s.tables["events"]
    assert (ev.loaded, ev.duplicates, ev.withdrawn_from_store) == (0, 2, 0)
    assert _weights(st) == [("29463-7", 75.1), ("29463-7", 80.0)]
    # a third version replaces the second
    _write(b / "in.ndjson", [_obs("o1", 74.0, "corrected")])
    ingest_fhir([b], st, key=KEY, append=True)
    assert _weights(st) == [("29463-7", 74.0), ("29463-7", 80.0)]


def test_a_new_version_of_a_panel_replaces_only_the_rows_that_changed(tmp_path):
    def bp(dia):
        o = _obs("bp1", None, code="85354-9")
        del o["valueQuantity"]
        o["component"] = [
            {
                "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
                "valueQuantity": {"value": 142, "unit": "mmHg"},
            },
            {
                "code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
                "valueQuantity": {"value": dia, "unit": "mmHg"},
            },
        ]
        return o

    a, b = tmp_path / "a", tmp_path / "b"
    _write(a / "in.ndjson", [_patient("p1"), bp(98)])
    _write(b / "in.ndjson", [bp(88)])
    st = tmp_path / "st"
    ingest_fhir([a], st, key=KEY)
    s = ingest_fhir([b], st, key=KEY, append=True)
    ev = s.tables["events"]
    assert (ev.loaded, ev.duplicates, ev.replaced_in_store) == (1, 2, 1)
    got = [(c, None if pd.isna(v) else v) for c, v in _weights(st)]
    assert got == [("8462-4", 88.0), ("8480-6", 142.0), ("85354-9", None)]


def test_the_same_record_is_its_identifier_else_its_id_and_its_patient(tmp_path):
    a0, a, b = tmp_path / "a0", tmp_path / "a", tmp_path / "b"
    # another patient's record with the id o2 (in its own run: one id read twice with
    # different content in one run is quarantined as a duplicate id)
    p2 = {"reference": "Patient/p2"}
    _write(a0 / "in.ndjson", [_patient("p2", birth="1960-02-02"), _obs("o2", 62.0, subject=p2)])
    _write(
        a / "in.ndjson",
        [
            _patient("p1"),
            _obs("x-1", 60.0, ident="w-1"),  # named by its identifier
            _obs("o2", 61.0),  # by its id
            _obs(None, 63.0),  # neither: cannot be named
        ],
    )
    _write(
        b / "in.ndjson",
        [
            _obs("x-2", 60.0, "entered-in-error", ident="w-1"),  # another id, same identifier
            _obs("o2", 61.0, "entered-in-error"),
            _obs(None, 63.0, "entered-in-error"),
        ],
    )
    st = tmp_path / "st"
    ingest_fhir([a0], st, key=KEY)
    ingest_fhir([a], st, key=KEY, append=True)
    s = ingest_fhir([b], st, key=KEY, append=True)
    assert s.balanced and s.tables["events"].withdrawn_from_store == 2
    ev = Store.open(st).read("events").to_pandas().sort_values("value")
    assert list(ev.value) == [62.0, 63.0]
    assert list(ev.patient_id) == [_pid("fhir:Patient/p2"), _pid("fhir:Patient/p1")]
    reasons = s.records["Observation"].skip_reasons
    assert (
        reasons[
            "status entered-in-error: withdraws nothing (it names no identifier or id to match "
            "an earlier version by)"
        ]
        == 1
    )


def test_a_row_two_records_loaded_stays_until_both_are_withdrawn(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    # two records of one weight on one day: one row in the store
    _write(a / "in.ndjson", [_patient("p1"), _obs("o1", 70.0), _obs("o2", 70.0)])
    _write(b / "in.ndjson", [_obs("o1", 70.0, "entered-in-error")])
    _write(c / "in.ndjson", [_obs("o2", 70.0, "entered-in-error")])
    st = tmp_path / "st"
    s = ingest_fhir([a], st, key=KEY)
    assert s.tables["events"].loaded == 1 and s.tables["events"].duplicates == 1
    s = ingest_fhir([b], st, key=KEY, append=True)
    assert Store.open(st).row_counts()["events"] == 1
    s = ingest_fhir([c], st, key=KEY, append=True)
    assert s.tables["events"].withdrawn_from_store == 1
    assert Store.open(st).row_counts()["events"] == 0


# -- OMOP: person_source_value that is not an NHS number, in a file of NHS numbers --------


def test_omop_persons_whose_source_value_fails_the_check_are_counted(tmp_path):
    from pophealth.ingest.omop import ingest_omop

    numbers = ["9434765919", "9000000009", "9449304130", "9449304106", "5839945242"]
    assert nhs_number_valid(numbers).all()  # published examples (NHS Data Dictionary, EPS)
    values = [*numbers, BAD_CHECK, "local-7", ""]
    d = tmp_path / "omop"
    d.mkdir()
    rows = "".join(f"{i + 1},8507,1960,5,1,{v}\n" for i, v in enumerate(values))
    (d / "person.csv").write_text(
        "person_id,gender_concept_id,year_of_birth,month_of_birth,day_of_birth,"
        "person_source_value\n" + rows
    )
    s = ingest_omop(d, tmp_path / "st", key=KEY)
    assert s.balanced
    pats = set(Store.open(tmp_path / "st").read("patients").to_pandas().patient_id)
    # loaded under their person_id, never under the failing number
    assert pats == {_pid(f"nhs:{n}") for n in numbers} | {_pid(f"omop:{i}") for i in (6, 7, 8)}
    assert _pid(f"nhs:{BAD_CHECK}") not in pats
    note = [n for n in s.notes if "not a valid NHS number" in n]
    assert len(note) == 1 and note[0].startswith("person.csv: 2 person row(s)")


def test_a_contained_patient_with_an_invalid_nhs_number_quarantines_its_record(tmp_path):
    contained = {
        "resourceType": "Patient",
        "id": "pt",
        "identifier": [{"system": NHS, "value": BAD_CHECK}],
    }
    good = {
        "resourceType": "Patient",
        "id": "pt",
        "identifier": [{"system": NHS, "value": VALID}],
        "birthDate": "1950-01-01",
    }
    src = tmp_path / "src"
    _write(
        src / "in.ndjson",
        [
            _condition("c1", {"reference": "#pt"}, contained=[contained]),
            _condition("c2", {"reference": "#pt"}, contained=[good]),
        ],
    )
    s = ingest_fhir([src], tmp_path / "st", key=KEY)
    assert s.balanced
    assert Store.open(tmp_path / "st").read("patients").to_pandas().patient_id.tolist() == [
        _pid(f"nhs:{VALID}")
    ]
    q = _quarantine(s)
    assert q.record_id.tolist() == ["c1"] and q.value.tolist() == [BAD_CHECK]
    assert q.field.tolist() == ["Condition.subject -> Patient (contained).identifier (NHS number)"]


def test_a_newer_version_that_is_quarantined_still_removes_the_earlier_rows(tmp_path):
    # documented choice: the earlier value is no longer the record's; the new version is in
    # the quarantine report, to be fixed and sent again
    a, b = tmp_path / "a", tmp_path / "b"
    _write(a / "in.ndjson", [_patient("p1"), _obs("o1", 71.5)])
    _write(b / "in.ndjson", [_obs("o1", "75,1", "amended")])  # a decimal comma: not a number
    st = tmp_path / "st"
    ingest_fhir([a], st, key=KEY)
    s = ingest_fhir([b], st, key=KEY, append=True)
    assert s.balanced and s.committed
    ev = s.tables["events"]
    assert (ev.loaded, ev.quarantined, ev.replaced_in_store) == (0, 1, 1)
    assert Store.open(st).row_counts()["events"] == 0
    assert _quarantine(s).field.tolist() == ["value"]


def test_cli_summary_tells_replaced_rows_from_withdrawn_ones(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from pophealth.cli import app
    from pophealth.commands._common import console

    monkeypatch.setenv("POPHEALTH_PSEUDONYM_KEY", KEY.decode())
    # a wide console, whatever COLUMNS said when it was made: no header is wrapped
    monkeypatch.setattr(console, "_width", 1000)
    a, b = tmp_path / "a", tmp_path / "b"
    _write(a / "in.ndjson", [_patient("p1"), _obs("o1", 71.5), _obs("o2", 80.0, day="2021-09-01")])
    # o1 corrected (a newer version replaces it); o2 entered in error (withdrawn)
    _write(b / "in.ndjson", [_obs("o1", 75.1, "amended"), _obs("o2", 80.0, "entered-in-error")])
    st = str(tmp_path / "st")
    runner = CliRunner()
    assert runner.invoke(app, ["ingest", "fhir", str(a), "--out", st]).exit_code == 0
    res = runner.invoke(app, ["ingest", "fhir", str(b), "--out", st, "--append"])
    assert res.exit_code == 0, res.output
    head = next(line for line in res.output.splitlines() if "withdrawn from store" in line)
    row = next(line for line in res.output.splitlines() if line.strip("│┃ ").startswith("events"))
    names = [c.strip() for c in head.strip("│┃ ").split("┃") if c.strip()]
    cells = [c.strip() for c in row.strip("│┃ ").split("│") if c.strip()]
    shown = dict(zip(names, cells, strict=False))
    # one stored row withdrawn (o2), one replaced by its newer version (o1)
    assert (shown["withdrawn from store"], shown["replaced in store"]) == ("1", "1"), res.output
    assert _weights(st) == [("29463-7", 75.1)]
    assert "--append" in runner.invoke(app, ["ingest", "fhir", "--help"]).output
