"""Bad input never crashes an ingest: every record is loaded, quarantined (with file,
line or entry, field and reason) or skipped by design, and the counts add up."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pandas as pd
import pytest

from pophealth.ingest.fhir import ingest_fhir
from pophealth.ingest.tabular import UnreadableFile
from pophealth.store import Store

KEY = b"bad-input-key-0123456789"
NHS = "https://fhir.nhs.uk/Id/nhs-number"


def _patient(pid: str, nhs: str | None = None, **extra) -> dict:
    p = {"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1950-02-03"}
    if nhs:
        p["identifier"] = [{"system": NHS, "value": nhs}]
    p.update(extra)
    return p


def _obs(
    oid: str,
    subject: str | None,
    when: str = "2021-03-04T10:00:00Z",
    code: str = "8867-4",
    system: str = "http://loinc.org",
    value: float = 72,
) -> dict:
    o = {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": system, "code": code}]},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": "/min"},
    }
    if subject is not None:
        o["subject"] = {"reference": subject}
    return o


def _ndjson(path: Path, lines: list) -> Path:
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return path


def _quarantine(summary) -> pd.DataFrame:
    assert summary.quarantine_file is not None
    return pd.read_csv(summary.quarantine_file, dtype=str)


def _balanced(summary) -> None:
    assert summary.balanced
    for name, t in summary.tables.items():
        assert t.rows_in == t.loaded + t.quarantined + t.duplicates, name
    for name, r in summary.records.items():
        assert r.records_in == r.loaded + r.quarantined + r.skipped, name


def test_malformed_line_missing_subject_bad_date_are_quarantined(tmp_path):
    f = _ndjson(
        tmp_path / "mixed.ndjson",
        [
            _patient("p1"),  # line 1: loads
            _obs("o1", "Patient/p1"),  # line 2: loads
            '{"resourceType": "Observation", "id": "broken"',  # line 3: malformed JSON
            _obs("o2", None),  # line 4: no subject
            _obs("o3", "Patient/p1", when="2021-02-30"),  # line 5: impossible date
            _obs("o4", "Patient/nobody"),  # line 6: dangling reference
            {"resourceType": "Observaton", "id": "typo"},  # line 7: not a FHIR type
            _obs("o5", "Patient/p1", system="http://example.org/local"),  # line 8: unknown system
            _obs("o1", "Patient/p1"),  # line 9: duplicate of line 2
            {"resourceType": "Claim", "id": "c1"},  # line 10: type not used
            _obs("o6", "Group/g1"),  # line 11: subject not a patient
            _obs("o7", "Patient/p1", value="lots"),  # line 12: value not a number
        ],
    )
    s = ingest_fhir([f], tmp_path / "st", key=KEY)
    _balanced(s)
    q = _quarantine(s)
    by_line = {row.location: row for row in q.itertuples()}
    assert "malformed JSON" in by_line["line 3"].reason
    assert by_line["line 3"].file == str(f)
    assert by_line["line 4"].field == "Observation.subject"
    assert by_line["line 4"].record == f.read_text().splitlines()[3]  # verbatim
    assert by_line["line 5"].field == "date" and "not a date" in by_line["line 5"].reason
    assert by_line["line 5"].value == "2021-02-30"
    assert "dangling reference" in by_line["line 6"].reason
    assert by_line["line 6"].field == "patient_id" and by_line["line 6"].value  # (hashed)
    assert "Observaton" in by_line["line 7"].reason
    assert "example.org" in by_line["line 8"].value
    assert "Group" in by_line["line 11"].reason
    assert by_line["line 12"].field == "value"
    assert by_line["line 12"].reason.startswith("not a number")
    obs = s.records["Observation"]
    assert obs.records_in == 8
    assert obs.loaded == 1 and obs.skipped == 1  # o1, and its exact duplicate
    assert obs.quarantined == 6
    assert s.records["Claim"].skipped == 1
    assert s.records["(unreadable)"].quarantined == 1
    assert s.records["Observaton"].quarantined == 1
    assert Store.open(tmp_path / "st").row_counts()["events"] == 1
    audit = json.loads(s.summary_file.read_text())
    assert audit["balanced"] is True and audit["records"]["Observation"]["quarantined"] == 6
    # verbatim record kept for a line that could not be parsed
    assert by_line["line 3"].record.startswith('{"resourceType": "Observation"')


def test_truncated_gzip_stops_the_run_and_keeps_the_store(tmp_path):
    """A file cut short cannot be read to its end: loading the part before the break would
    lose the rest uncounted, so the run stops, names the file and commits nothing."""
    out = tmp_path / "st"
    ingest_fhir([_ndjson(tmp_path / "good.ndjson", [_patient("p0")])], out, key=KEY)
    before = Store.open(out).snapshot
    lines = [_patient("p1")] + [_obs(f"o{i}", "Patient/p1", value=60 + i) for i in range(200)]
    data = gzip.compress(("\n".join(json.dumps(x) for x in lines) + "\n").encode())
    f = tmp_path / "Observation.ndjson.gz"
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableFile, match="Observation.ndjson.gz: could not be read to the end"):
        ingest_fhir([f], out, key=KEY)
    assert Store.open(out).snapshot == before


def test_nothing_loaded_leaves_the_previous_store_intact(tmp_path):
    good = _ndjson(tmp_path / "good.ndjson", [_patient("p1"), _obs("o1", "Patient/p1")])
    out = tmp_path / "st"
    ingest_fhir([good], out, key=KEY)
    before = Store.open(out).snapshot
    bad = _ndjson(tmp_path / "bad.ndjson", ["{not json", _obs("o2", None)])
    s = ingest_fhir([bad], out, key=KEY)
    assert not s.committed
    assert Store.open(out).snapshot == before
    assert Store.open(out).row_counts()["events"] == 1
    _balanced(s)


def test_strict_commits_nothing_when_anything_is_quarantined(tmp_path):
    f = _ndjson(tmp_path / "x.ndjson", [_patient("p1"), _obs("o1", "Patient/p1"), _obs("o2", None)])
    s = ingest_fhir([f], tmp_path / "st", key=KEY, strict=True)
    assert not s.committed and s.quarantined == 1
    assert not Store.is_store(tmp_path / "st")


def test_conditional_and_logical_references_resolve_across_files(tmp_path):
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:aaaa",
                "resource": _patient("aaaa", nhs="9434765919"),
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "fullUrl": "urn:uuid:bbbb",
                "resource": _patient("bbbb", identifier=[{"system": "urn:local", "value": "X1"}]),
                "request": {"method": "PUT", "url": "Patient?identifier=urn:local|X1"},
            },
        ],
    }
    (tmp_path / "patients.json").write_text(json.dumps(bundle))
    obs = [
        _obs("o1", f"Patient?identifier={NHS}|9434765919"),
        _obs("o2", "Patient?identifier=urn:local|X1", value=80),
        _obs("o3", "urn:uuid:bbbb", value=90),
        {
            **_obs("o4", None, value=100),
            "subject": {"identifier": {"system": NHS, "value": "9434765919"}},
        },
    ]
    _ndjson(tmp_path / "obs.ndjson", obs)
    s = ingest_fhir([tmp_path], tmp_path / "st", key=KEY)
    _balanced(s)
    assert s.records["Observation"].loaded == 4
    ev = Store.open(tmp_path / "st").read("events").to_pandas()
    pats = Store.open(tmp_path / "st").read("patients").to_pandas()
    assert len(pats) == 2
    by_value = dict(zip(ev.value, ev.patient_id, strict=True))
    assert by_value[72.0] == by_value[100.0]
    assert by_value[80.0] == by_value[90.0] != by_value[72.0]


def test_contained_medication_and_bundle_types(tmp_path):
    med_req = {
        "resourceType": "MedicationRequest",
        "id": "m1",
        "status": "active",
        "intent": "order",
        "contained": [
            {
                "resourceType": "Medication",
                "id": "med",
                "code": {
                    "coding": [{"system": "http://snomed.info/sct", "code": "39732311000001104"}]
                },
            }
        ],
        "medicationReference": {"reference": "#med"},
        "subject": {"reference": "Patient/p1"},
        "authoredOn": "2022-01-05",
        "dispenseRequest": {"quantity": {"value": 21, "unit": "capsule"}},
        "dosageInstruction": [
            {
                "text": "one three times a day",
                "timing": {"repeat": {"frequency": 3, "period": 1, "periodUnit": "d"}},
                "doseAndRate": [{"doseQuantity": {"value": 500, "unit": "mg"}}],
            }
        ],
    }
    referenced = {
        **med_req,
        "id": "m2",
        "contained": None,
        "medicationReference": {"reference": "Medication/med2"},
    }
    referenced.pop("contained")
    medication = {
        "resourceType": "Medication",
        "id": "med2",
        "code": {
            "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "308182"}]
        },
    }
    searchset = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {
                "fullUrl": "https://x.org/fhir/Patient/p1",
                "resource": _patient("p1"),
                "search": {"mode": "match"},
            },
            {"resource": med_req},
            {"resource": referenced},
        ],
    }
    (tmp_path / "search.json").write_text(json.dumps(searchset))
    _ndjson(tmp_path / "Medication.ndjson", [medication])
    s = ingest_fhir([tmp_path], tmp_path / "st", key=KEY)
    _balanced(s)
    meds = Store.open(tmp_path / "st").read("medications").to_pandas().sort_values("code")
    assert list(meds.system) == ["rxnorm", "dmd"]
    assert list(meds.code) == ["308182", "39732311000001104"]
    assert meds.quantity.tolist() == [21.0, 21.0]
    assert meds.daily_dose_mg.tolist() == [1500.0, 1500.0]


def test_bundle_entry_with_malformed_full_url_and_request_still_loads(tmp_path):
    # found by the fuzz test: fullUrl `true` and a request that is not an object used to
    # crash the whole ingest; the entry's resource loads without them
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": True, "resource": _patient("p1"), "request": "POST"},
            {"fullUrl": 12, "resource": _obs("o1", "Patient/p1"), "request": {"method": 3}},
        ],
    }
    (tmp_path / "b.json").write_text(json.dumps(bundle))
    s = ingest_fhir([tmp_path / "b.json"], tmp_path / "st", key=KEY)
    _balanced(s)
    store = Store.open(tmp_path / "st")
    assert store.read("patients").num_rows == 1
    assert store.read("events").num_rows == 1


def test_xml_with_namespace_and_bundle(tmp_path):
    xml = """<?xml version="1.0"?>
<Bundle xmlns="http://hl7.org/fhir"><type value="collection"/>
 <entry><fullUrl value="urn:uuid:p9"/><resource><Patient><id value="p9"/>
  <extension url="https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-EthnicCategory">
   <valueCodeableConcept><coding><system value="https://fhir.hl7.org.uk/CodeSystem/UKCore-EthnicCategoryEngland"/>
   <code value="J"/></coding></valueCodeableConcept></extension>
  <gender value="male"/><birthDate value="1961-05"/>
  <address><postalCode value="LS1 1AA"/><period><start value="2001-01-01"/></period>
   <extension url="https://example.org/lsoa"><valueString value="E01011365"/></extension></address>
 </Patient></resource></entry>
 <entry><resource><Observation><status value="final"/>
  <code><coding><system value="http://snomed.info/sct"/><code value="75367002"/></coding></code>
  <subject><reference value="urn:uuid:p9"/></subject>
  <effectiveDateTime value="2020-05-06T07:08:09+01:00"/>
  <component><code><coding><system value="http://loinc.org"/><code value="8480-6"/></coding></code>
   <valueQuantity><value value="141"/><unit value="mmHg"/></valueQuantity></component>
  <component><code><coding><system value="http://loinc.org"/><code value="8462-4"/></coding></code>
   <valueQuantity><value value="88"/><unit value="mmHg"/></valueQuantity></component>
 </Observation></resource></entry>
</Bundle>"""
    (tmp_path / "b.xml").write_text(xml)
    s = ingest_fhir([tmp_path / "b.xml"], tmp_path / "st", key=KEY)
    _balanced(s)
    store = Store.open(tmp_path / "st")
    p = store.read("patients").to_pylist()[0]
    assert (p["ethnicity_16"], p["ethnicity_5"], p["sex"]) == ("J", "asian", "male")
    assert p["date_of_birth"].isoformat() == "1961-05-01"
    a = store.read("addresses").to_pylist()[0]
    assert a["lsoa_code"] == "E01011365" and a["start_date"].isoformat() == "2001-01-01"
    ev = store.read("events").to_pandas().set_index("code")
    assert ev.loc["8480-6", "value"] == 141 and ev.loc["8462-4", "value"] == 88
    assert ev.loc["8480-6", "datetime"].isoformat() == "2020-05-06T06:08:09"  # UTC


def test_unsafe_xml_is_refused(tmp_path):
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
        '<Patient xmlns="http://hl7.org/fhir"><id value="&b;"/></Patient>'
    )
    (tmp_path / "bomb.xml").write_text(bomb)
    s = ingest_fhir([tmp_path / "bomb.xml"], tmp_path / "st", key=KEY)
    assert not s.committed
    assert "unsafe" in _quarantine(s)["reason"].iloc[0]


@pytest.mark.parametrize("missing", ["", "short"])
def test_refuses_to_run_without_a_key(tmp_path, monkeypatch, missing):
    from typer.testing import CliRunner

    from pophealth.cli import app

    monkeypatch.delenv("POPHEALTH_PSEUDONYM_KEY", raising=False)
    if missing:
        monkeypatch.setenv("POPHEALTH_PSEUDONYM_KEY", missing)
    _ndjson(tmp_path / "p.ndjson", [_patient("p1")])
    r = CliRunner().invoke(
        app, ["ingest", "fhir", str(tmp_path / "p.ndjson"), "--out", str(tmp_path / "st")]
    )
    assert r.exit_code == 2
    assert "key" in r.output.lower()
    assert not (tmp_path / "st").exists()


def test_cli_ingest_with_key_file(tmp_path):
    from typer.testing import CliRunner

    from pophealth.cli import app

    keyfile = tmp_path / "key.txt"
    keyfile.write_text("0123456789abcdef0123456789abcdef\n")
    _ndjson(tmp_path / "in.ndjson", [_patient("p1"), _obs("o1", "Patient/p1"), _obs("o2", None)])
    args = [
        "ingest",
        "fhir",
        str(tmp_path / "in.ndjson"),
        "--out",
        str(tmp_path / "st"),
        "--key-file",
        str(keyfile),
    ]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "balanced: yes" in r.output
    r = CliRunner().invoke(app, [*args, "--strict"])
    assert r.exit_code == 3


def test_general_practitioner_in_another_file_becomes_a_registration(tmp_path):
    gp = {
        "resourceType": "Organization",
        "id": "org1",
        "name": "Hillside Surgery",
        "identifier": [
            {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "B82005"}
        ],
        "type": [{"coding": [{"code": "76", "display": "GP PRACTICE"}]}],
    }
    p1 = _patient(
        "p1",
        generalPractitioner=[{"reference": "Organization/org1"}],
        extension=[
            {
                "url": "https://fhir.nhs.uk/StructureDefinition/"
                "Extension-UKCore-RegistrationDetails",
                "valuePeriod": {"start": "2015-06-01"},
            }
        ],
    )
    p2 = _patient("p2", generalPractitioner=[{"reference": "Organization/elsewhere"}])
    _ndjson(tmp_path / "Patient.ndjson", [p1, p2])
    _ndjson(tmp_path / "Organization.ndjson", [gp])
    s = ingest_fhir([tmp_path], tmp_path / "st", key=KEY)
    _balanced(s)
    store = Store.open(tmp_path / "st")
    regs = store.read("registrations").to_pylist()
    assert [(r["practice_id"], r["start_date"].isoformat()) for r in regs] == [
        ("B82005", "2015-06-01")
    ]
    assert store.read("practices").to_pylist()[0]["name"] == "Hillside Surgery"
    q = _quarantine(s)
    assert (q["table"] == "registrations").sum() == 1
    assert "GP practice" in q[q["table"] == "registrations"]["reason"].iloc[0]


def test_duplicate_ids_with_different_content_are_quarantined(tmp_path):
    f = _ndjson(
        tmp_path / "dups.ndjson",
        [
            _patient("p1"),
            _obs("o1", "Patient/p1", value=70),
            _obs("o1", "Patient/p1", value=70),  # exact copy: a duplicate, skipped
            _obs("o1", "Patient/p1", value=99),  # same id, different value: quarantined
        ],
    )
    s = ingest_fhir([f], tmp_path / "st", key=KEY)
    _balanced(s)
    obs = s.records["Observation"]
    assert (obs.loaded, obs.skipped, obs.quarantined) == (1, 1, 1)
    q = _quarantine(s)
    row = q[q["location"] == "line 4"].iloc[0]
    assert row.field == "id" and "duplicate resource id" in row.reason
    assert Store.open(tmp_path / "st").read("events")["value"].to_pylist() == [70.0]


def test_a_repeated_id_loads_when_the_first_record_with_it_did_not(tmp_path):
    """The first Observation o1 cannot load (a date pophealth cannot read): the next one
    read with that id is kept in its place, not quarantined as the copy of a record that
    "was kept"; a third, different again, is quarantined against the one kept."""
    f = _ndjson(
        tmp_path / "dups.ndjson",
        [
            _patient("p1"),
            _obs("o1", "Patient/p1", when="1500-03-04T10:00:00Z", value=70),
            _obs("o1", "Patient/p1", value=99),
            _obs("o1", "Patient/p1", value=55),
        ],
    )
    s = ingest_fhir([f], tmp_path / "st", key=KEY)
    _balanced(s)
    obs = s.records["Observation"]
    assert (obs.loaded, obs.quarantined) == (1, 2)
    q = _quarantine(s)
    assert "date" in set(q.loc[q["location"] == "line 2", "field"])
    (again,) = q.loc[q["location"] == "line 4"].itertuples()
    assert again.field == "id" and "that loaded was kept" in again.reason
    assert "line 3" not in set(q["location"])
    assert Store.open(tmp_path / "st").read("events")["value"].to_pylist() == [99.0]


def test_an_ingest_interrupted_mid_write_leaves_the_previous_store(tmp_path, monkeypatch):
    import pophealth.ingest.sink as sink

    out = tmp_path / "st"
    ingest_fhir(
        [_ndjson(tmp_path / "a.ndjson", [_patient("p1"), _obs("o1", "Patient/p1")])], out, key=KEY
    )
    before = (Store.open(out).snapshot, Store.open(out).row_counts())
    real = sink.validate

    def boom(name, *args, **kwargs):
        if name == "events":  # the crash happens while the new snapshot is half written
            raise KeyboardInterrupt
        return real(name, *args, **kwargs)

    monkeypatch.setattr(sink, "validate", boom)
    spill = tmp_path / "spill"
    spill.mkdir()
    monkeypatch.setenv("POPHEALTH_INGEST_TMP", str(spill))
    f = _ndjson(tmp_path / "b.ndjson", [_patient("p2"), _obs("o2", "Patient/p2")])
    with pytest.raises(KeyboardInterrupt):
        ingest_fhir([f], out, key=KEY, append=True)
    store = Store.open(out)
    assert (store.snapshot, store.row_counts()) == before
    assert list(spill.iterdir()) == []  # temporary files removed


def test_practices_already_in_the_store_are_kept_and_merged(tmp_path):
    import pyarrow as pa

    out = tmp_path / "st"
    Store.open_or_new(out).write(
        {
            "practices": pa.table(
                {
                    "practice_id": ["A83008", "Y00001"],
                    "name": ["HALLGARTH", "X"],
                    "pcn_id": ["U1", "U2"],
                    "pcn_name": [None, None],
                    "sub_icb": [None, None],
                    "icb": ["QHM", "QHM"],
                    "lsoa_code": [None, None],
                }
            )
        },
        provenance={"source": "test"},
    )
    p = _patient(
        "p1",
        generalPractitioner=[
            {
                "identifier": {
                    "system": "https://fhir.nhs.uk/Id/ods-organization-code",
                    "value": "A83008",
                }
            }
        ],
    )
    s = ingest_fhir([_ndjson(tmp_path / "p.ndjson", [p])], out, key=KEY)
    _balanced(s)
    practices = Store.open(out).read("practices").to_pandas().set_index("practice_id")
    assert sorted(practices.index) == ["A83008", "Y00001"]
    assert practices.loc["A83008", "icb"] == "QHM"  # the richer reference row won
    assert Store.open(out).row_counts()["registrations"] == 1


def test_a_large_bundle_cut_short_stops_the_run(tmp_path, monkeypatch):
    """A Bundle read as a stream (large files) that breaks off mid-entry: the entries after
    the break cannot be found, so the run stops rather than load the first ones."""
    from pophealth.ingest import fhir_read

    monkeypatch.setattr(fhir_read, "STREAM_BUNDLE_BYTES", 100)
    entries = [{"resource": _patient("p1")}]
    entries += [{"resource": _obs(f"o{i}", "Patient/p1", value=60 + i)} for i in range(50)]
    text = json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries})
    f = tmp_path / "big.json"
    f.write_text(text[: len(text) // 2])
    with pytest.raises(UnreadableFile, match="big.json: could not be read past Bundle entry"):
        ingest_fhir([f], tmp_path / "st", key=KEY)
    assert not (tmp_path / "st").exists() or Store.open(tmp_path / "st").snapshot is None
