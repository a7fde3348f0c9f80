"""The Synthea27Nj OMOP sample, checked row by row against the files read with the csv module
(not pophealth's reader): every clinical row lands in the right canonical table with the
right values, or is accounted for."""

from __future__ import annotations

import csv
import hashlib
import hmac
import math
import re
from collections import Counter
from pathlib import Path

import pytest

from pophealth.store import Store

KEY = b"test-key-0123456789-abcdef"
SYSTEMS = {"SNOMED": "snomedct", "LOINC": "loinc", "RxNorm": "rxnorm"}
#: table -> (prefix of its columns, date column)
EVENT_TABLES = {
    "CONDITION_OCCURRENCE": ("condition", "condition_start_date"),
    "PROCEDURE_OCCURRENCE": ("procedure", "procedure_date"),
    "MEASUREMENT": ("measurement", "measurement_date"),
    "OBSERVATION": ("observation", "observation_date"),
}

pytestmark = pytest.mark.shared_data


def _rows(src: Path, name: str) -> list[dict]:
    with open(src / f"{name}.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _pid(person_id: str) -> str:
    return hmac.new(KEY, f"omop:{person_id}".encode(), hashlib.sha256).hexdigest()[:32]


def _none(v):
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v


@pytest.fixture(scope="module")
def sample(samples: Path) -> Path:
    return samples / "omop" / "synthea27nj_eunomia"


@pytest.fixture(scope="module")
def concept(sample) -> dict[str, dict]:
    return {c["concept_id"]: c for c in _rows(sample, "CONCEPT")}


def test_every_clinical_row_is_counted(omop54, sample):
    assert omop54.balanced
    for name in (*EVENT_TABLES, "PERSON", "DRUG_EXPOSURE", "VISIT_OCCURRENCE", "DEATH"):
        rc = omop54.records[f"omop.{name.lower()}"]
        assert rc.records_in == len(_rows(sample, name)), name
        assert rc.records_in == rc.loaded + rc.quarantined + rc.skipped, name
        # the only rows not loaded are documented skips
        assert set(rc.skip_reasons) <= {
            "duplicate of a record already loaded",
            "visit that is neither inpatient nor emergency",
            "merged into patients.date_of_death",
        }, name


def test_events_are_the_rows_of_the_four_event_tables(omop54, sample, concept):
    expected: Counter = Counter()
    for name, (pre, date_col) in EVENT_TABLES.items():
        for r in _rows(sample, name):
            c = concept[r[f"{pre}_concept_id"]]
            # standard and source concept are the same in this sample: one event per row
            assert r[f"{pre}_source_concept_id"] == r[f"{pre}_concept_id"]
            # a plain number written only in value_source_value is the value (the sample's
            # three DXA T-scores, LOINC 38265-5, e.g. -2.7, have no value_as_number)
            value = r.get("value_as_number") or None
            source = (r.get("value_source_value") or "").strip()
            if value is None and re.fullmatch(r"[+-]?\d+(\.\d+)?", source):
                value = source
            expected[
                (
                    _pid(r["person_id"]),
                    r[date_col],
                    SYSTEMS[c["vocabulary_id"]],
                    c["concept_code"],
                    None if value is None else float(value),
                    r.get("unit_source_value") or None,
                )
            ] += 1
    ev = Store.open(omop54.store).read("events").to_pandas()
    got = Counter(
        (r.patient_id, r.date.isoformat(), r.system, r.code, _none(r.value), r.unit)
        for r in ev.itertuples()
    )
    assert set(got) == set(expected)
    assert max(got.values()) == 1  # exact repeats are dropped, and counted as such
    assert omop54.tables["events"].duplicates == sum(expected.values()) - len(expected)
    assert ev.datetime.isna().all()  # every datetime in the sample is midnight: no time


def test_medications_are_the_drug_exposures(omop54, sample, concept):
    expected = {
        (
            _pid(r["person_id"]),
            r["drug_exposure_start_date"],
            SYSTEMS[concept[r["drug_concept_id"]]["vocabulary_id"]],
            concept[r["drug_concept_id"]]["concept_code"],
            float(r["quantity"]) if r["quantity"] else None,
            r["sig"] or None,
        )
        for r in _rows(sample, "DRUG_EXPOSURE")
    }
    med = Store.open(omop54.store).read("medications").to_pandas()
    got = {
        (r.patient_id, r.date.isoformat(), r.system, r.code, _none(r.quantity), r.dose)
        for r in med.itertuples()
    }
    assert got == expected and len(med) == len(expected)


def test_visits_and_registrations(omop54, sample):
    store = Store.open(omop54.store)
    visits = _rows(sample, "VISIT_OCCURRENCE")
    adm = store.read("admissions").to_pandas()
    assert {
        (r.patient_id, r.spell_id, r.admission_date.isoformat(), r.discharge_date.isoformat())
        for r in adm.itertuples()
    } == {
        (_pid(v["person_id"]), v["visit_occurrence_id"], v["visit_start_date"], v["visit_end_date"])
        for v in visits
        if v["visit_concept_id"] in ("9201", "262")
    }
    er = store.read("emergency_attendances").to_pandas()
    assert sorted((r.patient_id, str(r.arrival_datetime)) for r in er.itertuples()) == sorted(
        (_pid(v["person_id"]), v["visit_start_datetime"])
        for v in visits
        if v["visit_concept_id"] == "9203"
    )
    # no person has a care site: one inferred registration per observation period at the
    # placeholder practice, the last (here the only) one open or ending at death
    deaths = {d["person_id"]: d["death_date"] for d in _rows(sample, "DEATH")}
    reg = store.read("registrations").to_pandas()
    got = {
        (r.patient_id, r.practice_id, r.start_date.isoformat(), r.source, _iso(r.end_date))
        for r in reg.itertuples()
    }
    assert got == {
        (
            _pid(o["person_id"]),
            "UNKNOWN",
            o["observation_period_start_date"],
            "inferred",
            deaths.get(o["person_id"]),
        )
        for o in _rows(sample, "OBSERVATION_PERIOD")
    }
    pat = store.read("patients").to_pandas().set_index("patient_id")
    assert {k: pat.loc[_pid(k), "date_of_death"].isoformat() for k in deaths} == deaths


def _iso(d):
    return None if d is None or (isinstance(d, float) and math.isnan(d)) else d.isoformat()
