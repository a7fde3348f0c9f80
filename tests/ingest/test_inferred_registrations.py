"""Registrations inferred at ingest for patients whose source records none
(``--registrations infer-missing``, the default; docs/ingest.md).

The expected registrations are worked out here from the sample files themselves (plain
``json`` / ``csv``), following the documented rule, and compared with what the importer
wrote. Small hand-made inputs pin the edge cases: recorded registrations win, the
switch turns inference off, re-ingesting does not duplicate, older stores still open.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import hmac
import json
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from ingest_helpers import resources_in
from typer.testing import CliRunner

from pophealth.cli import app
from pophealth.ingest.fhir import ingest_fhir
from pophealth.ingest.infer import UNKNOWN_PRACTICE
from pophealth.ingest.omop import ingest_omop
from pophealth.store import Store

KEY = b"test-key-0123456789-abcdef"
GP_STYLE = {"162673000", "410620009"}  # general examination, well child visit (SNOMED CT)
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"


def _pid(namespace: str, value: str) -> str:
    return hmac.new(KEY, f"{namespace}:{value}".encode(), hashlib.sha256).hexdigest()[:32]


def _synthea(samples: Path) -> list[Path]:
    return [
        samples / "fhir" / "synthea_bundles_pathling_10pt",
        samples / "fhir" / "synthea_bulk_pathling_9pt",
    ]


def _regs(store: Path) -> list[dict]:
    rows = Store.open(store).read("registrations").to_pylist()
    return sorted(rows, key=lambda r: (r["patient_id"], r["start_date"], r["practice_id"]))


# -- FHIR: the Synthea samples -----------------------------------------------------------


def _expected_fhir(samples: Path) -> dict[str, tuple[str, dt.date, dt.date | None]]:
    """patient_id -> (practice name, start, end) by the documented rule, read from the
    files with plain json: the serviceProvider of the most recent general-practice style
    ambulatory encounter (else of any ambulatory one), from the first ambulatory encounter
    with that provider, to death."""
    orgs: dict[str, str] = {}
    encounters: list[dict] = []
    deaths: dict[str, dt.date] = {}
    for folder in _synthea(samples):
        for path in sorted(folder.iterdir()):
            for res in resources_in(path):
                if not isinstance(res, dict):
                    continue
                rt = res.get("resourceType")
                if rt == "Organization":
                    orgs[res["id"]] = res["name"]
                elif rt == "Patient" and res.get("deceasedDateTime"):
                    deaths[_pid("fhir", f"Patient/{res['id']}")] = dt.date.fromisoformat(
                        res["deceasedDateTime"][:10]
                    )
                elif rt == "Encounter" and res["class"]["code"] == "AMB":
                    encounters.append(res)
    by_patient: dict[str, list[tuple[dt.date, str, bool]]] = defaultdict(list)
    for e in encounters:
        who = _pid("fhir", "Patient/" + e["subject"]["reference"].split("/")[-1].split(":")[-1])
        org = e["serviceProvider"]["reference"].split("/")[-1].split(":")[-1]
        codes = {c["code"] for t in e.get("type", []) for c in t.get("coding", [])}
        when = dt.date.fromisoformat(e["period"]["start"][:10])
        by_patient[who].append((when, orgs[org], bool(codes & GP_STYLE)))
    out = {}
    for who, encs in by_patient.items():
        counted = [x for x in encs if x[2]] or encs
        last = max(x[0] for x in counted)
        at_last = {x[1] for x in counted if x[0] == last}
        n = {p: sum(1 for x in counted if x[1] == p) for p in at_last}
        practice = max(at_last, key=lambda p: n[p])
        start = min(x[0] for x in encs if x[1] == practice)
        out[who] = (practice, start, deaths.get(who))
    return out


@pytest.fixture(scope="module")
def synthea_store(samples: Path, tmp_path_factory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("inferred_fhir") / "store"
    return out, ingest_fhir(_synthea(samples), out, key=KEY)


@pytest.mark.shared_data
def test_synthea_patients_are_registered_where_their_primary_care_encounters_say(
    synthea_store, samples
):
    out, summary = synthea_store
    store = Store.open(out)
    expected = _expected_fhir(samples)
    assert len(expected) == 19  # every Synthea patient in the samples has such encounters
    names = {r["practice_id"]: r["name"] for r in store.read("practices").to_pylist()}
    got = {
        r["patient_id"]: (names[r["practice_id"]], r["start_date"], r["end_date"])
        for r in _regs(out)
    }
    assert got == expected
    assert {r["source"] for r in _regs(out)} == {"inferred"}
    # organisations without an ODS code get a stable pseudonymous practice id
    assert all(r["practice_id"].startswith("org-") for r in _regs(out))
    # the practices named are in `practices`, with Organization.name; PCN unknown
    practices = store.read("practices").to_pylist()
    assert {p["practice_id"] for p in practices} == {r["practice_id"] for r in _regs(out)}
    assert all(p["pcn_id"] is None for p in practices)
    # counted in the summary and in the store's provenance
    assert summary.balanced
    assert summary.tables["registrations"].inferred == 19
    assert summary.tables["registrations"].loaded == 0
    assert summary.notes[0].startswith(
        "19 registrations inferred from encounters for 19 patients without a recorded registration"
    )
    prov = store.metadata["provenance"][-1]["registrations"]
    assert (prov["mode"], prov["inferred"], prov["patients"]) == ("infer-missing", 19, 19)
    assert "most recent primary-care encounter" in prov["rule"]


@pytest.mark.shared_data
def test_recorded_registrations_are_untouched_and_the_switch_turns_inference_off(samples, tmp_path):
    # every FHIR sample: the EPS messages record a GP (ODS A83008) for their patients
    both = ingest_fhir([samples / "fhir"], tmp_path / "infer", key=KEY)
    only = ingest_fhir([samples / "fhir"], tmp_path / "recorded", key=KEY, registrations="recorded")
    recorded = _regs(tmp_path / "recorded")
    assert recorded and {r["source"] for r in recorded} == {"recorded"}
    assert "A83008" in {r["practice_id"] for r in recorded}
    inferred_store = _regs(tmp_path / "infer")
    assert [r for r in inferred_store if r["source"] == "recorded"] == recorded
    inferred = [r for r in inferred_store if r["source"] == "inferred"]
    assert inferred and not {r["patient_id"] for r in inferred} & {
        r["patient_id"] for r in recorded
    }
    assert only.tables["registrations"].inferred == 0
    assert both.tables["registrations"].inferred == len(inferred)
    assert any("none inferred" in n for n in only.notes)
    meta = Store.open(tmp_path / "recorded").metadata["provenance"][-1]["registrations"]
    assert meta == {"mode": "recorded", "inferred": 0, "patients": 0}
    # the practices only the inference named are not in the recorded-only store
    assert not {r["practice_id"] for r in inferred} & {
        p["practice_id"] for p in Store.open(tmp_path / "recorded").read("practices").to_pylist()
    }


@pytest.mark.shared_data
def test_reingest_does_not_duplicate_inferred_registrations(synthea_store, samples, tmp_path):
    out, _ = synthea_store
    first = _regs(out)
    again = ingest_fhir(_synthea(samples), tmp_path / "again", key=KEY)
    assert _regs(tmp_path / "again") == first  # replace: the same rows
    # --append of the same input onto a store that has them: nothing added
    import shutil

    shutil.copytree(out, tmp_path / "appended")
    summary = ingest_fhir(_synthea(samples), tmp_path / "appended", key=KEY, append=True)
    assert _regs(tmp_path / "appended") == first
    assert summary.tables["registrations"].inferred == 0
    assert summary.tables["registrations"].kept_from_store == len(first)
    assert again.balanced and summary.balanced


# -- FHIR: hand-made edge cases ----------------------------------------------------------


def _patient(pid: str, **extra) -> dict:
    return {"resourceType": "Patient", "id": pid, "birthDate": "1960-01-01", **extra}


def _enc(eid: str, pid: str, org: str, when: str, code: str = "185345009") -> dict:
    return {
        "resourceType": "Encounter",
        "id": eid,
        "status": "finished",
        "class": {"code": "AMB"},
        "type": [{"coding": [{"system": "http://snomed.info/sct", "code": code}]}],
        "subject": {"reference": f"Patient/{pid}"},
        "period": {"start": when},
        "serviceProvider": {"reference": f"Organization/{org}"},
    }


def _org(oid: str, name: str, ods: str | None = None, gp: bool = False) -> dict:
    o = {"resourceType": "Organization", "id": oid, "name": name}
    if ods:
        o["identifier"] = [{"system": ODS, "value": ods}]
    if gp:
        o["type"] = [{"coding": [{"code": "RO76", "display": "GP PRACTICE"}]}]
    return o


def _write(path: Path, resources: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in resources) + "\n")
    return path


def test_rule_prefers_gp_practices_and_the_most_recent_and_keeps_recorded_ones(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    _write(
        src / "Organization.ndjson",
        [
            _org("h", "St Elsewhere Hospital", ods="RXX01"),
            _org("g1", "Old Surgery", ods="B82001", gp=True),
            _org("g2", "New Surgery", ods="B82002", gp=True),
            _org("x", "Walk-in centre"),
        ],
    )
    _write(
        src / "Patient.ndjson",
        [
            _patient("moved", deceasedDateTime="2024-05-06T10:00:00Z"),
            _patient("hospital-only"),
            _patient(
                "registered",
                generalPractitioner=[{"identifier": {"system": ODS, "value": "B82009"}}],
            ),
            _patient(
                "declared",
                extension=[
                    {
                        "url": "https://fhir.hl7.org.uk/StructureDefinition/"
                        "Extension-UKCore-RegistrationDetails",
                        "valuePeriod": {"start": "2001-02-03"},
                    }
                ],
            ),
        ],
    )
    _write(
        src / "Encounter.ndjson",
        [
            # moved: GP practice g1 then g2; hospital clinics are more recent but lose to GPs
            _enc("e1", "moved", "g1", "2010-01-01T09:00:00Z"),
            _enc("e2", "moved", "g1", "2015-01-01T09:00:00Z"),
            _enc("e3", "moved", "g2", "2019-06-01T09:00:00Z"),
            _enc("e4", "moved", "g2", "2020-06-01T09:00:00Z"),
            _enc("e5", "moved", "h", "2023-01-01T09:00:00Z"),
            # hospital-only: no GP-style encounter, so every ambulatory one counts
            _enc("e6", "hospital-only", "h", "2012-03-04T09:00:00Z"),
            _enc("e7", "hospital-only", "x", "2018-03-04T09:00:00Z"),
            # registered: has a recorded registration, so nothing is inferred
            _enc("e8", "registered", "g1", "2016-01-01T09:00:00Z"),
            # declared: the registration-period start wins over the first encounter
            _enc("e9", "declared", "g2", "2011-01-01T09:00:00Z", code="162673000"),
        ],
    )
    s = ingest_fhir([src], tmp_path / "st", key=KEY)
    assert s.balanced
    store = Store.open(tmp_path / "st")
    got = {
        r["patient_id"]: (r["practice_id"], str(r["start_date"]), str(r["end_date"]), r["source"])
        for r in _regs(tmp_path / "st")
    }
    walk_in = [p for p in store.read("practices").to_pylist() if p["name"] == "Walk-in centre"]
    assert len(walk_in) == 1 and walk_in[0]["practice_id"].startswith("org-")
    assert got == {
        _pid("fhir", "Patient/moved"): ("B82002", "2019-06-01", "2024-05-06", "inferred"),
        _pid("fhir", "Patient/hospital-only"): (
            walk_in[0]["practice_id"],
            "2018-03-04",
            "None",
            "inferred",
        ),
        _pid("fhir", "Patient/registered"): ("B82009", "1960-01-01", "None", "recorded"),
        _pid("fhir", "Patient/declared"): ("B82002", "2001-02-03", "None", "inferred"),
    }
    names = {p["practice_id"]: p["name"] for p in store.read("practices").to_pylist()}
    assert names["B82002"] == "New Surgery"
    assert "RXX01" not in names  # the hospital is named by no registration
    assert s.tables["registrations"].inferred == 3 and s.tables["registrations"].loaded == 1


def test_a_later_recorded_registration_supersedes_an_inferred_one(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    _write(a / "Organization.ndjson", [_org("g", "Surgery", ods="B82001", gp=True)])
    _write(a / "Patient.ndjson", [_patient("p")])
    _write(a / "Encounter.ndjson", [_enc("e", "p", "g", "2015-01-01T09:00:00Z")])
    ingest_fhir([a], tmp_path / "st", key=KEY)
    assert [r["source"] for r in _regs(tmp_path / "st")] == ["inferred"]
    gp = [{"identifier": {"system": ODS, "value": "B82005"}}]
    _write(b / "Patient.ndjson", [_patient("p", generalPractitioner=gp)])
    s = ingest_fhir([b], tmp_path / "st", key=KEY, append=True)
    assert [(r["practice_id"], r["source"]) for r in _regs(tmp_path / "st")] == [
        ("B82005", "recorded")
    ]
    assert s.balanced


def test_a_store_written_before_the_source_column_still_opens_and_appends(tmp_path):
    from pophealth.query import Dataset, index_date, registrations, run_dataset

    src = tmp_path / "src"
    src.mkdir()
    gp = [{"identifier": {"system": ODS, "value": "B82005"}}]
    _write(src / "Patient.ndjson", [_patient("p", generalPractitioner=gp)])
    ingest_fhir([src], tmp_path / "st", key=KEY)
    store = Store.open(tmp_path / "st")
    path = store.table_path("registrations")
    old = pq.read_table(path).drop_columns(["source"])  # as an older pophealth wrote it
    path.unlink()
    pq.write_table(old, path)
    ds = Dataset()
    ds.define_population(registrations.registered_on(index_date))
    ds.practice = registrations.practice_on(index_date).practice_id
    # every canonical column is there (the missing one as nulls) on an engine connection
    from pophealth.engines import connect

    con = connect(Store.open(tmp_path / "st"), "duckdb")
    assert con.table("registrations").source.isnull().all().execute()
    frame = run_dataset(con, ds, index_date=dt.date(2020, 1, 1))
    assert list(frame["practice"]) == ["B82005"]
    # and through the query layer's own store connection (what `pophealth run` uses)
    frame = run_dataset(tmp_path / "st", ds, index_date=dt.date(2020, 1, 1))
    assert list(frame["practice"]) == ["B82005"]
    more = tmp_path / "more"
    more.mkdir()
    _write(more / "Organization.ndjson", [_org("g", "Surgery", ods="B82001", gp=True)])
    _write(more / "Patient.ndjson", [_patient("q")])
    _write(more / "Encounter.ndjson", [_enc("e", "q", "g", "2015-01-01T09:00:00Z")])
    s = ingest_fhir([more], tmp_path / "st", key=KEY, append=True)
    assert s.balanced
    got = {r["patient_id"]: (r["practice_id"], r["source"]) for r in _regs(tmp_path / "st")}
    assert got == {
        _pid("fhir", "Patient/p"): ("B82005", "recorded"),  # the old row, read as recorded
        _pid("fhir", "Patient/q"): ("B82001", "inferred"),
    }


# -- OMOP ----------------------------------------------------------------------------------


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.shared_data
def test_eunomia_persons_are_registered_for_their_observation_periods(samples, tmp_path):
    src = samples / "omop" / "synthea27nj_eunomia"
    persons = _csv(src / "PERSON.csv")
    assert not any(p["care_site_id"] for p in persons)  # the sample records no care site
    assert not any(v["care_site_id"] for v in _csv(src / "VISIT_OCCURRENCE.csv"))
    died = {d["person_id"]: d["death_date"][:10] for d in _csv(src / "DEATH.csv")}
    periods = _csv(src / "OBSERVATION_PERIOD.csv")
    last = {}
    for p in periods:
        last[p["person_id"]] = max(last.get(p["person_id"], ""), p["observation_period_start_date"])
    expected = sorted(
        (
            _pid("omop", p["person_id"]),
            UNKNOWN_PRACTICE,
            p["observation_period_start_date"],
            # the last period is open (or ends at death); earlier ones keep their end
            died.get(p["person_id"])
            if p["observation_period_start_date"] == last[p["person_id"]]
            else p["observation_period_end_date"],
        )
        for p in periods
    )
    s = ingest_omop(src, tmp_path / "st", key=KEY)
    got = sorted(
        (
            r["patient_id"],
            r["practice_id"],
            str(r["start_date"]),
            None if r["end_date"] is None else str(r["end_date"]),
        )
        for r in _regs(tmp_path / "st")
    )
    assert len(got) == len(periods) == 28
    assert got == expected
    assert {r["source"] for r in _regs(tmp_path / "st")} == {"inferred"}
    practices = Store.open(tmp_path / "st").read("practices").to_pylist()
    assert [p["practice_id"] for p in practices] == [UNKNOWN_PRACTICE]
    assert "Unknown practice" in practices[0]["name"]
    assert s.balanced and s.tables["registrations"].inferred == 28
    assert "28 registrations inferred from observation periods for 28 patients" in s.notes[0]
    assert f"28 of them at the placeholder practice {UNKNOWN_PRACTICE!r}" in s.notes[0]
    off = ingest_omop(src, tmp_path / "off", key=KEY, registrations="recorded")
    assert off.tables["registrations"].inferred == 0
    assert Store.open(tmp_path / "off").row_counts()["registrations"] == 0


def test_omop_practice_from_the_visits_care_sites_and_recorded_care_sites_kept(tmp_path):
    d = tmp_path / "omop"
    d.mkdir()
    (d / "person.csv").write_text(
        "person_id,gender_concept_id,year_of_birth,care_site_id\n"
        "1,8507,1960,\n"  # no care site: visits at 10 (twice) and 11 -> 10
        "2,8532,1970,\n"  # no care site: one visit each at 10 and 11 -> the latest, 11
        "3,8532,1980,11\n"  # recorded care site: left as recorded
        "4,8507,1990,\n"  # no visit at any care site -> placeholder
    )
    (d / "care_site.csv").write_text(
        "care_site_id,care_site_name,care_site_source_value\n"
        "10,Riverside Surgery,B82001\n"
        "11,Hill Practice,B82002\n"
    )
    (d / "observation_period.csv").write_text(
        "observation_period_id,person_id,observation_period_start_date,"
        "observation_period_end_date\n"
        "1,1,2001-01-01,2005-12-31\n"
        "2,1,2010-01-01,2020-12-31\n"
        "3,2,2002-02-02,2021-01-01\n"
        "4,3,2003-03-03,2021-01-01\n"
        "5,4,2004-04-04,2021-01-01\n"
    )
    (d / "visit_occurrence.csv").write_text(
        "visit_occurrence_id,person_id,visit_concept_id,visit_start_date,visit_end_date,"
        "care_site_id\n"
        "1,1,9202,2011-01-01,2011-01-01,10\n"
        "2,1,9202,2012-01-01,2012-01-01,10\n"
        "3,1,9202,2019-01-01,2019-01-01,11\n"
        "4,2,9202,2015-01-01,2015-01-01,10\n"
        "5,2,9202,2016-01-01,2016-01-01,11\n"
        "6,4,9202,2016-01-01,2016-01-01,\n"
    )
    s = ingest_omop(d, tmp_path / "st", key=KEY)
    assert s.balanced
    got = sorted(
        (r["patient_id"], r["practice_id"], str(r["start_date"]), str(r["end_date"]), r["source"])
        for r in _regs(tmp_path / "st")
    )
    p = {i: _pid("omop", str(i)) for i in (1, 2, 3, 4)}
    assert got == sorted(
        [
            (p[1], "B82001", "2001-01-01", "2005-12-31", "inferred"),
            (p[1], "B82001", "2010-01-01", "None", "inferred"),
            (p[2], "B82002", "2002-02-02", "None", "inferred"),
            (p[3], "B82002", "2003-03-03", "2021-01-01", "recorded"),
            (p[4], UNKNOWN_PRACTICE, "2004-04-04", "None", "inferred"),
        ]
    )
    names = {r["practice_id"]: r["name"] for r in Store.open(tmp_path / "st").read("practices")
             .to_pylist()}  # fmt: skip
    assert names["B82001"] == "Riverside Surgery" and names["B82002"] == "Hill Practice"
    assert UNKNOWN_PRACTICE in names
    assert s.tables["registrations"].loaded == 1 and s.tables["registrations"].inferred == 4


# -- CLI -------------------------------------------------------------------------------------


def test_cli_registrations_option(tmp_path, monkeypatch):
    monkeypatch.setenv("POPHEALTH_PSEUDONYM_KEY", KEY.decode())
    runner = CliRunner()
    help_text = runner.invoke(app, ["ingest", "fhir", "--help"]).output
    assert "--registrations" in help_text and "infer-missing" in help_text
    src = tmp_path / "src"
    src.mkdir()
    _write(src / "Organization.ndjson", [_org("g", "Surgery", ods="B82001", gp=True)])
    _write(src / "Patient.ndjson", [_patient("p")])
    _write(src / "Encounter.ndjson", [_enc("e", "p", "g", "2015-01-01T09:00:00Z")])
    bad = runner.invoke(
        app, ["ingest", "fhir", str(src), "--out", str(tmp_path / "x"), "--registrations", "guess"]
    )
    assert bad.exit_code == 2 and "--registrations must be one of" in bad.output
    on = runner.invoke(app, ["ingest", "fhir", str(src), "--out", str(tmp_path / "on")])
    assert on.exit_code == 0, on.output
    assert "1 registrations inferred from encounters for 1 patients" in " ".join(on.output.split())
    off = runner.invoke(
        app,
        ["ingest", "fhir", str(src), "--out", str(tmp_path / "off"), "--registrations", "recorded"],
    )
    assert off.exit_code == 0, off.output
    assert Store.open(tmp_path / "on").row_counts()["registrations"] == 1
    assert Store.open(tmp_path / "off").row_counts()["registrations"] == 0


def test_no_registration_is_inferred_for_a_patient_who_was_not_loaded(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    _write(src / "Organization.ndjson", [_org("g", "Surgery", ods="B82001", gp=True)])
    _write(src / "Patient.ndjson", [_patient("p")])
    orphan = _enc("e2", "p", "g", "2016-01-01T09:00:00Z")
    orphan["subject"] = {
        "identifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765919"}
    }
    _write(src / "Encounter.ndjson", [_enc("e1", "p", "g", "2015-01-01T09:00:00Z"), orphan])
    s = ingest_fhir([src], tmp_path / "st", key=KEY)
    assert s.balanced
    assert [r["patient_id"] for r in _regs(tmp_path / "st")] == [_pid("fhir", "Patient/p")]


def test_an_inferred_registration_that_is_quarantined_is_said_in_the_summary(tmp_path):
    """A GP encounter after the recorded death infers a registration that ends before it
    starts: quarantined, like any row, and the summary says so (it was counted nowhere)."""
    src = tmp_path / "src"
    src.mkdir()
    _write(src / "Organization.ndjson", [_org("g", "Surgery", ods="B82001", gp=True)])
    _write(src / "Patient.ndjson", [_patient("p", deceasedDateTime="2014-06-01")])
    _write(src / "Encounter.ndjson", [_enc("e1", "p", "g", "2015-01-01T09:00:00Z")])
    s = ingest_fhir([src], tmp_path / "st", key=KEY)
    assert s.balanced
    assert _regs(tmp_path / "st") == []
    said = [n for n in s.notes if "inferred registration" in n]
    assert said and said[0].startswith("1 inferred registration row(s) were quarantined")
    assert (
        "end_date 2014-06-01 is before start_date 2015-01-01" in Path(s.quarantine_file).read_text()
    )
