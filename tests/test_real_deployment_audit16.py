"""Audit 16: a first deployment on real-shaped data (the samples in ../shared/data/samples
ingested as the README says, then --append again).

Found:

* a text value with white space around it (Synthea's dosage text ends in a line break) is
  stored trimmed, but ``--append`` compared the new row, untrimmed, with the stored row,
  trimmed. So re-running the same ingest added the row again, and a later entered-in-error
  version could not withdraw the stored row;
* ``pophealth reference build`` into a store already ingested (a refresh of the reference
  files, or another IMD release) replaced ``practices`` with epraccur's, dropping the
  practices the ingest had added (Synthea organisations, OMOP's 'UNKNOWN' placeholder):
  the store's registrations then named practices the store did not have.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pophealth.ingest.fhir import ingest_fhir
from pophealth.reference.build import build_reference_store
from pophealth.store import Store

KEY = b"audit16-key-0123456789abcdef"
SHARED_SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "samples"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def _bundle(path: Path, *, dose: str, unit: str, status: str = "active") -> Path:
    """One patient, one prescription whose dosage text ends in a line break, one
    observation whose unit (not UCUM-coded) has spaces around it."""
    patient = {"resourceType": "Patient", "id": "p1", "birthDate": "1960-02-03", "gender": "male"}
    prescription = {
        "resourceType": "MedicationRequest",
        "id": "m1",
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "308192"}]},
        "subject": {"reference": "Patient/p1"},
        "authoredOn": "2021-01-26T09:01:45+10:00",
        "dosageInstruction": [{"sequence": 1, "text": dose}],
    }
    observation = {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2021-01-26T09:01:45+10:00",
        "valueQuantity": {"value": 128, "unit": unit},
    }
    entries = [{"resource": r} for r in (patient, prescription, observation)]
    path.write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries}))
    return path


def _rows(store: Path, table: str) -> int:
    return Store.open(store).read(table).num_rows


def test_appending_the_same_records_again_adds_nothing_when_text_has_white_space(tmp_path):
    src = _bundle(tmp_path / "b.json", dose="Take at regular intervals.\n", unit=" mmHg ")
    store = tmp_path / "store"
    first = ingest_fhir([src], store, key=KEY)
    assert first.tables["medications"].loaded == 1 and first.tables["events"].loaded == 1
    stored = Store.open(store).read("medications").to_pandas()
    assert stored["dose"].tolist() == ["Take at regular intervals."]  # trimmed when stored

    again = ingest_fhir([src], store, key=KEY, append=True)
    assert again.balanced
    for table in ("medications", "events"):
        assert again.tables[table].loaded == 0, table
        assert again.tables[table].duplicates == 1, table
        assert _rows(store, table) == 1, table


def test_an_entered_in_error_version_withdraws_a_stored_row_whose_text_had_white_space(
    tmp_path,
):
    store = tmp_path / "store"
    ingest_fhir([_bundle(tmp_path / "b.json", dose="Take daily.\n", unit="mmHg")], store, key=KEY)
    assert _rows(store, "medications") == 1
    error = _bundle(
        tmp_path / "e.json", dose="Take daily.\n", unit="mmHg", status="entered-in-error"
    )
    s = ingest_fhir([error], store, key=KEY, append=True)
    assert s.balanced
    assert s.tables["medications"].withdrawn_from_store == 1
    assert _rows(store, "medications") == 0


def test_reappending_a_pathling_sample_bundle_changes_no_table(tmp_path):
    folder = SHARED_SAMPLES / "fhir" / "synthea_bundles_pathling_10pt"
    if not folder.is_dir():
        pytest.skip(f"sample FHIR bundles not found at {folder}")
    # Dung738's amoxicillin prescriptions carry dosage text ending in a line break
    (src,) = folder.glob("Dung738_*.json")
    store = tmp_path / "store"
    ingest_fhir([src], store, key=KEY)
    before = Store.open(store).row_counts()
    again = ingest_fhir([src], store, key=KEY, append=True)
    assert again.balanced
    after = Store.open(store).row_counts()
    assert after == before
    for table in ("events", "medications", "admissions", "emergency_attendances"):
        assert again.tables[table].loaded == 0, table


def test_a_reference_rebuild_keeps_the_practices_an_ingest_added(tmp_path):
    data = SHARED_SAMPLES.parent
    folder = SHARED_SAMPLES / "fhir" / "synthea_bundles_pathling_10pt"
    if not (data / "geography" / "gp").is_dir() or not folder.is_dir():
        pytest.skip(f"real reference files or sample bundles not found under {data}")
    (src,) = folder.glob("Dung738_*.json")
    store = tmp_path / "store"
    ingest_fhir([src], store, key=KEY)  # one inferred registration, at a Synthea practice
    before = Store.open(store).read("practices").to_pandas().set_index("practice_id")
    assert len(before) == 1 and before.index[0].startswith("org-")

    _, report = build_reference_store(data, store, "2025")
    s = Store.open(store)
    practices = s.read("practices").to_pandas().set_index("practice_id")
    registered_at = set(s.read("registrations").to_pandas()["practice_id"])
    assert registered_at <= set(practices.index)
    assert practices.loc[before.index[0], "name"] == before.iloc[0]["name"]
    assert len(practices) == report.practices["gp_practices"] + 1
    assert any("1 of the store's practices are not GP practices" in n for n in report.notes)


def test_the_append_comparison_trims_as_validation_does():
    import duckdb

    from pophealth.ingest.sink import _norm_expr

    spaces = [chr(c) for c in range(0x3001) if chr(c).isspace()]
    values = ["x", "", "a b", "\u200bq", "é", None]  # (U+200B is not white space)
    values += [f"{s}x" for s in spaces] + [f"x{s}" for s in spaces] + ["".join(spaces)]
    con = duckdb.connect()
    con.execute("CREATE TABLE t (i INTEGER, s VARCHAR)")
    con.executemany("INSERT INTO t VALUES (?, ?)", list(enumerate(values)))
    got = [
        r[0]
        for r in con.execute(f"SELECT {_norm_expr('s', 'string')} FROM t ORDER BY i").fetchall()
    ]
    assert got == [None if v is None or not v.strip() else v.strip() for v in values]
