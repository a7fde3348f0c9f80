"""Ingest: a Patient record merged into another (FHIR ``Patient.link``) is one person.

FHIR R4 defines the link types: ``replaced-by`` — "the patient resource containing this
link must no longer be used"; the link points to the one "that must be used in lieu of"
it; ``replaces`` is the same merge said by the surviving record. A shared care record or a
hospital feed holds such records after a duplicate registration is merged. Loaded as they
were, one person was two patients: counted twice on a register, listed twice on a worklist,
their records split between the two.

Now, when the record used in the other's place is loaded (this run or, appending, an
earlier one), the records naming the old one — by reference, in the same Bundle, by NHS
number — load under it, and the old record's own rows (demographics, address, registration)
are not loaded, counted as ``merged`` in the balance. When it is not loaded, the old record
loads as it is, with a note."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from pophealth.ingest.fhir import ingest_fhir
from pophealth.ingest.pseudonym import nhs_number_valid
from pophealth.ingest.sink import MERGED_REASON
from pophealth.store import Store

KEY = b"merged-patients-test-key-0000001"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
SCT = "http://snomed.info/sct"
ASTHMA = "195967001"


def _nhs_number(first_nine: str) -> str:
    """``first_nine`` with its modulus-11 check digit (the next base when there is none)."""
    base = int(first_nine)
    while True:
        for d in range(10):
            n = f"{base}{d}"
            if nhs_number_valid([n])[0]:
                return n
        base += 1


OLD_NHS, NEW_NHS = _nhs_number("943476591"), _nhs_number("401023213")


def _patient(rid, *, practice="A81001", nhs=None, link=None, born="1970-05-01", lsoa=None):
    res = {
        "resourceType": "Patient",
        "id": rid,
        "birthDate": born,
        "gender": "female",
        "generalPractitioner": [{"identifier": {"system": ODS, "value": practice}}],
    }
    if nhs:
        res["identifier"] = [{"system": NHS, "value": nhs}]
    if link:
        res["link"] = link
    if lsoa:
        res["address"] = [{"use": "home", "postalCode": "XX1 1XX", "district": lsoa}]
    return res


def _condition(rid, subject: dict, *, day="2020-02-01", **extra) -> dict:
    return {
        "resourceType": "Condition",
        "id": rid,
        "identifier": [{"system": "https://example.org/condition", "value": rid}],
        "subject": subject,
        "code": {"coding": [{"system": SCT, "code": ASTHMA}]},
        "recordedDate": day,
        **extra,
    }


def _write(path, resources) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in resources))


def _tables(store) -> dict[str, pd.DataFrame]:
    st = Store.open(store)
    return {t: st.read(t).to_pandas() for t in ("patients", "events", "registrations")}


def _one_person(s, store, *, events: int, practice: str = "B82002") -> dict[str, pd.DataFrame]:
    """The load holds one patient, with every event and only the new record's practice."""
    assert s.balanced and s.committed
    t = _tables(store)
    assert len(t["patients"]) == 1
    pid = t["patients"]["patient_id"].iloc[0]
    assert len(t["events"]) == events and set(t["events"]["patient_id"]) == {pid}
    assert t["registrations"]["practice_id"].tolist() == [practice]
    assert set(t["registrations"]["patient_id"]) == {pid}
    return t


@pytest.mark.parametrize("form", ["replaced-by", "replaces"])
def test_the_old_record_is_merged_into_the_one_that_replaces_it(tmp_path, form):
    """Across files; records name the old record and the new one by reference."""
    if form == "replaced-by":
        old = _patient("old", link=[{"type": "replaced-by", "other": {"reference": "Patient/new"}}])
        new = _patient("new", practice="B82002")
    else:
        old = _patient("old")
        new = _patient(
            "new",
            practice="B82002",
            link=[{"type": "replaces", "other": {"reference": "Patient/old"}}],
        )
    src = tmp_path / "src"
    _write(src / "a_Patient.ndjson", [old])
    _write(src / "b_Patient.ndjson", [new])
    _write(
        src / "Condition.ndjson",
        [
            _condition("c1", {"reference": "Patient/old"}),
            _condition("c2", {"reference": "Patient/new"}, day="2021-03-01"),
        ],
    )
    s = ingest_fhir([src], tmp_path / "st", key=KEY)
    _one_person(s, tmp_path / "st", events=2)
    assert s.tables["patients"].merged == 1 and s.tables["registrations"].merged == 1
    assert s.tables["patients"].loaded == 1
    patients = s.records["Patient"]
    assert patients.loaded == 1 and patients.skip_reasons[MERGED_REASON] == 1
    assert any("merged into another" in n for n in s.notes)


def test_a_replaced_record_not_in_the_load_names_the_one_that_replaces_it(tmp_path):
    """Only the surviving record is sent (``replaces``); records still naming the old one
    are not dangling: they load under the survivor."""
    new = _patient(
        "new", practice="B82002", link=[{"type": "replaces", "other": {"reference": "Patient/old"}}]
    )
    src = tmp_path / "src"
    _write(src / "Patient.ndjson", [new])
    _write(src / "Condition.ndjson", [_condition("c1", {"reference": "Patient/old"})])
    s = ingest_fhir([src], tmp_path / "st", key=KEY)
    _one_person(s, tmp_path / "st", events=1)
    assert s.tables["events"].quarantined == 0


def test_merged_by_nhs_number(tmp_path):
    """The old record has an NHS number of its own and names its replacement by NHS number;
    a record naming the old NHS number directly loads under the new one."""
    old = _patient(
        "old",
        nhs=OLD_NHS,
        link=[{"type": "replaced-by", "other": {"identifier": {"system": NHS, "value": NEW_NHS}}}],
    )
    new = _patient("new", nhs=NEW_NHS, practice="B82002")
    src = tmp_path / "src"
    _write(src / "Patient.ndjson", [old, new])
    _write(
        src / "Condition.ndjson",
        [_condition("c1", {"identifier": {"system": NHS, "value": OLD_NHS}})],
    )
    s = ingest_fhir([src], tmp_path / "st", key=KEY)
    _one_person(s, tmp_path / "st", events=1)


def test_in_one_bundle_by_full_url(tmp_path):
    """The old record, its replacement and a record naming the old one by fullUrl, in one
    Bundle (same-Bundle references are resolved while reading)."""
    u = "urn:uuid:7d0c2c55-5b1e-4d7f-9f0e-4f7c3c0a00{:02d}".format
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "fullUrl": u(1),
                "resource": _patient(
                    "old", link=[{"type": "replaced-by", "other": {"reference": u(2)}}]
                ),
            },
            {"fullUrl": u(2), "resource": _patient("new", practice="B82002")},
            {"fullUrl": u(3), "resource": _condition("c1", {"reference": u(1)})},
        ],
    }
    src = tmp_path / "src"
    src.mkdir()
    (src / "bundle.json").write_text(json.dumps(bundle))
    s = ingest_fhir([src], tmp_path / "st", key=KEY)
    _one_person(s, tmp_path / "st", events=1)


def test_a_chain_ends_at_its_last_record_and_a_loop_merges_nothing(tmp_path):
    chain = [
        _patient("a", link=[{"type": "replaced-by", "other": {"reference": "Patient/b"}}]),
        _patient("b", link=[{"type": "replaced-by", "other": {"reference": "Patient/c"}}]),
        _patient("c", practice="B82002"),
    ]
    src = tmp_path / "chain"
    _write(src / "Patient.ndjson", chain)
    _write(src / "Condition.ndjson", [_condition("c1", {"reference": "Patient/a"})])
    s = ingest_fhir([src], tmp_path / "st1", key=KEY)
    _one_person(s, tmp_path / "st1", events=1)
    assert s.records["Patient"].skip_reasons[MERGED_REASON] == 2

    loop = [
        _patient("a", link=[{"type": "replaced-by", "other": {"reference": "Patient/b"}}]),
        _patient("b", link=[{"type": "replaced-by", "other": {"reference": "Patient/a"}}]),
    ]
    src = tmp_path / "loop"
    _write(src / "Patient.ndjson", loop)
    s = ingest_fhir([src], tmp_path / "st2", key=KEY)
    assert s.balanced and len(_tables(tmp_path / "st2")["patients"]) == 2
    assert any("were not merged" in n for n in s.notes)


def test_the_replacement_not_in_the_load_leaves_the_record_as_it_is(tmp_path):
    old = _patient("old", link=[{"type": "replaced-by", "other": {"reference": "Patient/gone"}}])
    src = tmp_path / "src"
    _write(src / "Patient.ndjson", [old])
    _write(src / "Condition.ndjson", [_condition("c1", {"reference": "Patient/old"})])
    s = ingest_fhir([src], tmp_path / "st", key=KEY)
    _one_person(s, tmp_path / "st", events=1, practice="A81001")
    assert s.tables["patients"].merged == 0
    assert any("loaded as they are" in n for n in s.notes)


def test_refer_and_seealso_links_merge_nothing(tmp_path):
    """Two records of one person that are both still in use (``seealso``) stay two."""
    a = _patient("a", link=[{"type": "seealso", "other": {"reference": "Patient/b"}}])
    b = _patient("b", practice="B82002")
    src = tmp_path / "src"
    _write(src / "Patient.ndjson", [a, b])
    s = ingest_fhir([src], tmp_path / "st", key=KEY)
    assert s.balanced and len(_tables(tmp_path / "st")["patients"]) == 2
    assert all(c.merged == 0 for c in s.tables.values())


def test_append_a_later_run_names_the_old_record(tmp_path):
    """The merge is kept for later ``--append`` runs: a record naming the old patient in a
    later batch loads under the new one."""
    src1 = tmp_path / "run1"
    _write(
        src1 / "Patient.ndjson",
        [
            _patient("old", link=[{"type": "replaced-by", "other": {"reference": "Patient/new"}}]),
            _patient("new", practice="B82002"),
        ],
    )
    s1 = ingest_fhir([src1], tmp_path / "st", key=KEY)
    assert s1.balanced and s1.tables["patients"].merged == 1
    src2 = tmp_path / "run2"
    _write(src2 / "Condition.ndjson", [_condition("c1", {"reference": "Patient/old"})])
    s2 = ingest_fhir([src2], tmp_path / "st", key=KEY, append=True)
    _one_person(s2, tmp_path / "st", events=1)


def test_a_withdrawal_naming_the_new_record_withdraws_a_record_of_the_old_one(tmp_path):
    """The record was sent naming the old patient, its entered-in-error version naming the
    new one: the same record of the same person, withdrawn."""
    src = tmp_path / "src"
    _write(
        src / "Patient.ndjson",
        [
            _patient("old", link=[{"type": "replaced-by", "other": {"reference": "Patient/new"}}]),
            _patient("new", practice="B82002"),
        ],
    )
    _write(src / "a_Condition.ndjson", [_condition("c1", {"reference": "Patient/old"})])
    wrong = _condition(
        "c1-v2",
        {"reference": "Patient/new"},
        verificationStatus={"coding": [{"code": "entered-in-error"}]},
    )
    wrong["identifier"] = [{"system": "https://example.org/condition", "value": "c1"}]
    _write(src / "b_Condition.ndjson", [wrong])
    s = ingest_fhir([src], tmp_path / "st", key=KEY)
    assert s.balanced and s.tables["events"].withdrawn == 1
    assert len(_tables(tmp_path / "st")["events"]) == 0


def test_a_quarantined_replacement_does_not_take_the_old_record_with_it(tmp_path):
    """The record said to replace the old one fails validation (born in the future): the
    old record, which is valid, loads with its records; the replacement is quarantined."""
    old = _patient("old", link=[{"type": "replaced-by", "other": {"reference": "Patient/new"}}])
    new = _patient("new", practice="B82002", born="2999-01-01")
    src = tmp_path / "src"
    _write(src / "Patient.ndjson", [old, new])
    _write(src / "Condition.ndjson", [_condition("c1", {"reference": "Patient/old"})])
    s = ingest_fhir([src], tmp_path / "st", key=KEY)
    _one_person(s, tmp_path / "st", events=1, practice="A81001")
    assert s.records["Patient"].quarantined == 1 and s.tables["patients"].merged == 0
    assert any("with a valid patient record" in n for n in s.notes)
