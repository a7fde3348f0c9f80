"""Read v2 and CTV3 are different terminologies: each keeps its own coding system."""

from __future__ import annotations

import json

import pytest

from pophealth.codelists import Codelist, CodelistError, code_problem
from pophealth.ingest.codes import OMOP_VOCABULARIES, fhir_system, normalise_code
from pophealth.ingest.fhir import ingest_fhir
from pophealth.ingest.omop import ingest_omop
from pophealth.store import Store

KEY = b"read-codes-key-0123456789"


def test_read_v2_uri_and_omop_vocabulary_are_not_ctv3():
    assert fhir_system("http://read.info/readv2") == "readv2"
    assert fhir_system("http://read.info/ctv3") == "ctv3"
    assert OMOP_VOCABULARIES["read"] == "readv2"  # OHDSI "Read" = NHS Read Codes v2
    # the 2-digit term code some extracts append is not part of the concept
    assert normalise_code("readv2", "H33..00") == "H33.."
    assert normalise_code("ctv3", "XE0YX") == "XE0YX"


def test_read_v2_code_lists_have_a_format_check():
    assert code_problem("readv2", "H33..") is None
    assert code_problem("readv2", "H33") is not None
    assert Codelist.of("readv2", ["H33.."]).codes_in("readv2") == {"H33.."}
    with pytest.raises(CodelistError):
        Codelist.of("readv2", ["not-a-read-code"])


def test_fhir_read_v2_and_ctv3_codings_load_under_their_own_systems(tmp_path):
    patient = {"resourceType": "Patient", "id": "p", "birthDate": "1970-01-01"}
    condition = {
        "resourceType": "Condition",
        "id": "c",
        "subject": {"reference": "Patient/p"},
        "onsetDateTime": "2015-03-04",
        "code": {
            "coding": [
                {"system": "http://read.info/readv2", "code": "H33..00"},
                {"system": "http://read.info/ctv3", "code": "XE0ZR"},
            ]
        },
    }
    f = tmp_path / "r.ndjson"
    f.write_text("\n".join(json.dumps(r) for r in (patient, condition)) + "\n")
    s = ingest_fhir([f], tmp_path / "st", key=KEY)
    assert s.balanced and s.quarantined == 0
    ev = Store.open(tmp_path / "st").read("events").to_pylist()
    assert sorted((e["system"], e["code"]) for e in ev) == [("ctv3", "XE0ZR"), ("readv2", "H33..")]


def test_omop_read_vocabulary_loads_as_read_v2(tmp_path):
    d = tmp_path / "omop"
    d.mkdir()
    (d / "person.csv").write_text("person_id,gender_concept_id,year_of_birth\n1,8507,1960\n")
    (d / "concept.csv").write_text(
        "concept_id,concept_name,domain_id,vocabulary_id,concept_class_id,standard_concept,"
        "concept_code,valid_start_date,valid_end_date,invalid_reason\n"
        "45456789,Asthma,Condition,Read,Read,,H33..00,1970-01-01,2099-12-31,\n"
    )
    (d / "condition_occurrence.csv").write_text(
        "condition_occurrence_id,person_id,condition_concept_id,condition_start_date,"
        "condition_source_concept_id\n"
        "1,1,0,2012-01-02,45456789\n"
    )
    s = ingest_omop(d, tmp_path / "st", key=KEY)
    assert s.balanced
    ev = Store.open(tmp_path / "st").read("events").to_pylist()
    assert [(e["system"], e["code"]) for e in ev] == [("readv2", "H33..")]
