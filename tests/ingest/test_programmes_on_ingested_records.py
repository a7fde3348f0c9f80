"""After ingest, the programmes' code lists find the patients the samples say they should.

The Synthea FHIR samples code medicines in RxNorm (and conditions in SNOMED CT
International), so the curated medicine lists carry RxNorm rows next to their dm+d ones.
Here the samples are read independently (plain ``json``: MedicationRequests whose RxNorm
display names albuterol / an inhaled corticosteroid / a statin / an antihypertensive,
Conditions whose SNOMED display names asthma), the same files are ingested, and the
programmes' own code lists — the asthma programme's curated lists
(:func:`pophealth.programmes.asthma.codes.curated`) through the query layer, and the CVD
programme's ``medication_variables`` — must find exactly those patients. The Synthea-derived
OMOP sample is checked the same way (CONDITION_OCCURRENCE / DRUG_EXPOSURE joined to CONCEPT
with the ``csv`` module).

Synthea's Patients name no GP and the Eunomia persons no care site, so the importer infers
their registrations (FHIR: from primary-care encounters; OMOP: from observation periods —
docs/ingest.md). The code-list checks below run over every ingested patient; the tests at
the end run ``pophealth run asthma`` / ``run cvd`` through the CLI on the ingested stores and
check that the registers hold the patients the samples say have asthma / hypertension (and
nobody when the inference is switched off).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import hmac
import re
from pathlib import Path

import pytest
from ingest_helpers import resources_in

pytestmark = pytest.mark.shared_data

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"
INDEX = dt.date(2026, 1, 1)
#: What a human reading the drug name would call each group (RxNorm display text).
GROUPS = {
    "saba": re.compile(r"\balbuterol\b|\blevalbuterol\b", re.I),
    "ics": re.compile(r"fluticasone|budesonide|beclomethasone|mometasone", re.I),
    "statin": re.compile(r"(ator|rosu|simva|prava|lova|pitava|fluva)statin", re.I),
}


def _pid(key: bytes, ref: str) -> str:
    """The store's patient_id for a FHIR patient without an NHS number (see the ingest docs:
    keyed hash of the resolved ``Patient/<id>`` reference)."""
    value = "Patient/" + ref.rsplit("/", 1)[-1].removeprefix("urn:uuid:")
    return hmac.new(key, f"fhir:{value}".encode(), hashlib.sha256).hexdigest()[:32]


def _synthea_files(samples: Path) -> list[Path]:
    return sorted((samples / "fhir" / "synthea_bundles_pathling_10pt").glob("*.json")) + sorted(
        (samples / "fhir" / "synthea_bulk_pathling_9pt").glob("*.ndjson")
    )


#: Latest prescription date per group in the sample files (filled by ``expected``).
LATEST: dict[str, dt.date] = {}


@pytest.fixture(scope="module")
def expected(samples: Path, key: bytes) -> dict[str, set[str]]:
    """Patients per group, read straight from the sample files."""
    out: dict[str, set[str]] = {g: set() for g in (*GROUPS, "asthma", "sbp")}
    LATEST.clear()
    for path in _synthea_files(samples):
        for res in resources_in(path):
            if not isinstance(res, dict) or "subject" not in res:
                continue
            who = _pid(key, res["subject"]["reference"])
            if res["resourceType"] == "MedicationRequest":
                for c in res.get("medicationCodeableConcept", {}).get("coding", []):
                    if c.get("system") == RXNORM:
                        for group, pattern in GROUPS.items():
                            if pattern.search(c.get("display", "")):
                                out[group].add(who)
                                when = dt.date.fromisoformat(res["authoredOn"][:10])
                                LATEST[group] = max(LATEST.get(group, when), when)
            elif res["resourceType"] == "Observation":
                parts = [res, *res.get("component", [])]
                codings = [c for p in parts for c in p.get("code", {}).get("coding", [])]
                if any(c.get("code") == "8480-6" for c in codings):  # LOINC systolic BP
                    out["sbp"].add(who)
            elif res["resourceType"] == "Condition":
                for c in res.get("code", {}).get("coding", []):
                    if c.get("system") == SNOMED and "asthma" in c.get("display", "").lower():
                        out["asthma"].add(who)
    return out


@pytest.fixture(scope="module")
def store(samples: Path, key: bytes, tmp_path_factory) -> Path:
    from pophealth.ingest import ingest_fhir

    out = tmp_path_factory.mktemp("synthea_programmes") / "store"
    summary = ingest_fhir(_synthea_files(samples), out, key=key)
    assert summary.balanced
    return out


@pytest.fixture(scope="module")
def asthma_vars(store: Path):
    """The asthma programme's curated code lists, applied through the query layer."""
    from pophealth.codelists import codelist
    from pophealth.programmes.asthma.codes import curated
    from pophealth.query import Dataset, events, index_date, medications, patients, run_dataset

    codes = curated()
    ds = Dataset()
    ds.define_population(patients.date_of_birth.is_not_null())
    ds.asthma = events.matching(codes.asthma).on_or_before(index_date).exists_for_patient()
    ds.saba_n = medications.matching(codes.saba).on_or_before(index_date).count_for_patient()
    ds.ics_n = medications.matching(codes.ics).on_or_before(index_date).count_for_patient()
    sbp = codelist("systolic_bp")  # the CVD programme's blood-pressure role
    ds.sbp = events.matching(sbp).on_or_before(index_date).exists_for_patient()
    return run_dataset(store, ds, engine="duckdb", index_date=INDEX).set_index("patient_id")


def _found(frame, column: str) -> set[str]:
    col = frame[column]
    hit = col.fillna(False).astype(bool) if col.dtype == bool else col.fillna(0) > 0
    return set(frame.index[hit])


def test_the_samples_have_rxnorm_inhaler_and_statin_patients(expected):
    # the test below is only worth something if the samples hold such patients
    assert expected["saba"] and expected["ics"] and expected["statin"]


@pytest.mark.parametrize("group", ["saba", "ics"])
def test_asthma_medicine_lists_find_the_rxnorm_inhaler_patients(asthma_vars, expected, group):
    assert _found(asthma_vars, f"{group}_n") == expected[group]


def test_asthma_register_matches_asthma_conditions_in_the_samples(asthma_vars, expected):
    # The Synthea FHIR samples record asthma only as encounter/care-plan reasons, not as
    # Conditions, so this is an empty set today; a Condition coded 195967001/233678006
    # (asthma / childhood asthma) would have to appear on the register.
    assert _found(asthma_vars, "asthma") == expected["asthma"]


def test_blood_pressure_list_finds_the_loinc_systolic_readings(asthma_vars, expected):
    assert expected["sbp"] and _found(asthma_vars, "sbp") == expected["sbp"]


def test_cvd_statin_variables_find_the_rxnorm_statin_patients(store, expected):
    from pophealth.programmes.cvd.codelists import curated_codelists
    from pophealth.programmes.cvd.config import DEFAULT_CONFIG
    from pophealth.programmes.cvd.extract import medication_variables
    from pophealth.query import connect

    backend = connect(store, "duckdb")
    # statins count over the months before the index date: take the day after the latest
    # statin prescription in the sample files, so at least that patient is in the window
    index = LATEST["statin"] + dt.timedelta(days=1)
    counts, latest = medication_variables(backend, index, curated_codelists(), DEFAULT_CONFIG)
    counts = counts.to_pandas().set_index("patient_id")
    on_statin = set(counts.index[counts["statin_n"].fillna(0) > 0])
    # every patient with a statin issue in the window is one the samples say had a statin
    assert on_statin and on_statin <= expected["statin"]
    # and the latest statin issue is coded from the list (ingredient/strength resolve)
    latest = latest.to_pandas()
    assert set(latest["patient_id"]) == on_statin
    statins = curated_codelists().statins
    assert set(latest["statin_code"]) <= statins.codes_in("rxnorm")


def _lipid_observations(
    samples: Path, key: bytes, loinc: str
) -> list[tuple[str, dt.date, float, str]]:
    """(patient, date, value, unit) of every Observation coded ``loinc``, read with ``json``."""
    out = []
    for path in _synthea_files(samples):
        for res in resources_in(path):
            if not isinstance(res, dict) or res.get("resourceType") != "Observation":
                continue
            if not any(c.get("code") == loinc for c in res.get("code", {}).get("coding", [])):
                continue
            q = res["valueQuantity"]
            when = dt.date.fromisoformat(res["effectiveDateTime"][:10])
            who = _pid(key, res["subject"]["reference"])
            out.append((who, when, float(q["value"]), q.get("unit") or q.get("code")))
    return out


@pytest.mark.parametrize(
    "loinc, name", [("2093-3", "total_cholesterol"), ("2085-9", "hdl"), ("18262-6", "ldl")]
)
def test_cvd_reads_the_loinc_lipids_in_mg_dl_as_mmol_l(samples, key, store, loinc, name):
    """Synthea records cholesterol in mg/dL under LOINC codes: the curated lipid lists carry
    those codes, and the CVD extract converts each latest value to mmol/L (÷ 38.67)."""
    from pophealth.programmes.cvd.codelists import curated_codelists
    from pophealth.programmes.cvd.config import DEFAULT_CONFIG
    from pophealth.programmes.cvd.extract import event_variables, months_before
    from pophealth.query import connect

    seen = _lipid_observations(samples, key, loinc)
    assert seen and {unit for *_, unit in seen} == {"mg/dL"}
    index = max(when for _, when, _, _ in seen) + dt.timedelta(days=1)
    start = months_before(index, DEFAULT_CONFIG.measurement_lookback_months)
    latest: dict[str, tuple[dt.date, list[float]]] = {}
    for who, when, value, _ in seen:
        if start < when < index:
            day, values = latest.get(who, (when, []))
            if when > day:
                latest[who] = (when, [value])
            elif when == day:
                latest[who] = (day, [*values, value])
    expected = {who: sum(v) / len(v) / 38.67 for who, (_, v) in latest.items()}

    parts = event_variables(connect(store, "duckdb"), index, curated_codelists(), DEFAULT_CONFIG)
    part = next(p for p in parts if name in p.columns)
    got = part.filter(part[name].notnull()).select("patient_id", name).to_pandas()
    got = dict(zip(got["patient_id"], got[name], strict=True))
    assert got.keys() == expected.keys()
    for who, value in expected.items():
        assert got[who] == pytest.approx(value, rel=1e-9), who


# -- the Synthea-derived OMOP CDM 5.4 sample -------------------------------------------------


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def omop_expected(samples: Path, key: bytes) -> dict[str, set[str]]:
    src = samples / "omop" / "synthea27nj_eunomia"
    concepts = {c["concept_id"]: c for c in _csv(src / "CONCEPT.csv")}

    def pid(person_id: str) -> str:
        return hmac.new(key, f"omop:{person_id}".encode(), hashlib.sha256).hexdigest()[:32]

    out: dict[str, set[str]] = {g: set() for g in (*GROUPS, "asthma")}
    for row in _csv(src / "DRUG_EXPOSURE.csv"):
        c = concepts.get(row["drug_concept_id"], {})
        if c.get("vocabulary_id") == "RxNorm":
            for group, pattern in GROUPS.items():
                if pattern.search(c["concept_name"]):
                    out[group].add(pid(row["person_id"]))
    for row in _csv(src / "CONDITION_OCCURRENCE.csv"):
        c = concepts.get(row["condition_concept_id"], {})
        if c.get("vocabulary_id") == "SNOMED" and "asthma" in c["concept_name"].lower():
            out["asthma"].add(pid(row["person_id"]))
    return out


@pytest.fixture(scope="module")
def omop_vars(omop54):
    """The variables on the OMOP sample as ingested once per session (ingest/conftest.py)."""
    from pophealth.programmes.asthma.codes import curated
    from pophealth.programmes.cvd.codelists import curated_codelists
    from pophealth.query import Dataset, events, index_date, medications, patients, run_dataset

    assert omop54.balanced
    out = omop54.store
    codes = curated()
    ds = Dataset()
    ds.define_population(patients.date_of_birth.is_not_null())
    ds.asthma = events.matching(codes.asthma).on_or_before(index_date).exists_for_patient()
    ds.saba_n = medications.matching(codes.saba).on_or_before(index_date).count_for_patient()
    ds.ics_n = medications.matching(codes.ics).on_or_before(index_date).count_for_patient()
    statins = curated_codelists().statins
    ds.statin_n = medications.matching(statins).on_or_before(index_date).count_for_patient()
    return run_dataset(out, ds, engine="duckdb", index_date=INDEX).set_index("patient_id")


def test_omop_sample_asthma_register_and_inhalers(omop_vars, omop_expected):
    assert omop_expected["asthma"] and omop_expected["saba"]  # the sample has them
    assert _found(omop_vars, "asthma") == omop_expected["asthma"]
    assert _found(omop_vars, "saba_n") == omop_expected["saba"]
    assert _found(omop_vars, "ics_n") == omop_expected["ics"]


def test_omop_sample_statins(omop_vars, omop_expected):
    assert omop_expected["statin"]
    assert _found(omop_vars, "statin_n") == omop_expected["statin"]


# -- the programmes, through the CLI, on the ingested stores ---------------------------------


def _run_cli(programme: str, store: Path, out: Path, *extra: str) -> dict[str, list[dict]]:
    """``pophealth run PROGRAMME`` (DuckDB); the patient-level CSVs it wrote, by file stem."""
    from typer.testing import CliRunner

    from pophealth.cli import app

    result = CliRunner().invoke(
        app, ["run", programme, "--store", str(store), "--out", str(out), *extra]
    )
    assert result.exit_code == 0, result.output
    return {f.stem: _csv(f) for f in sorted((out / "patient-level").rglob("*.csv"))}


def _condition_persons(samples: Path, key: bytes, words: str) -> set[str]:
    src = samples / "omop" / "synthea27nj_eunomia"
    concepts = {c["concept_id"]: c["concept_name"].lower() for c in _csv(src / "CONCEPT.csv")}
    return {
        hmac.new(key, f"omop:{r['person_id']}".encode(), hashlib.sha256).hexdigest()[:32]
        for r in _csv(src / "CONDITION_OCCURRENCE.csv")
        if words in concepts.get(r["condition_concept_id"], "")
    }


@pytest.fixture(scope="module")
def omop_store(omop54) -> Path:
    """The OMOP sample as ingested once per session (ingest/conftest.py); runs only read it."""
    assert omop54.balanced
    return Path(omop54.store)


def _last_inhaler_day(samples: Path, key: bytes, persons: set[str]) -> dt.date:
    """The day after the latest SABA/ICS issue to one of ``persons`` (read from the CSVs)."""
    src = samples / "omop" / "synthea27nj_eunomia"
    concepts = {c["concept_id"]: c["concept_name"] for c in _csv(src / "CONCEPT.csv")}
    days = [
        dt.date.fromisoformat(r["drug_exposure_start_date"][:10])
        for r in _csv(src / "DRUG_EXPOSURE.csv")
        if hmac.new(key, f"omop:{r['person_id']}".encode(), hashlib.sha256).hexdigest()[:32]
        in persons
        and (
            GROUPS["saba"].search(concepts.get(r["drug_concept_id"], ""))
            or GROUPS["ics"].search(concepts.get(r["drug_concept_id"], ""))
        )
    ]
    return max(days) + dt.timedelta(days=1)


def test_cli_asthma_on_the_ingested_omop_store_finds_the_asthma_patients(
    omop_store, samples, key, tmp_path
):
    asthma = _condition_persons(samples, key, "asthma")
    assert asthma  # the sample has asthma patients
    # index date: the day after the latest inhaler issued to an asthma patient, so that at
    # least that patient is treated in the register's 12-month look-back
    index = _last_inhaler_day(samples, key, asthma)
    out = _run_cli("asthma", omop_store, tmp_path / "on", "--index-date", index.isoformat())
    on_register = {r["patient_id"] for r in out["worklist_by_practice"]}
    assert on_register and on_register <= asthma
    # registered through the inferred placeholder practice (the sample has no care sites)
    assert {r["practice_id"] for r in out["worklist_by_practice"]} == {"UNKNOWN"}


def test_cli_asthma_finds_nobody_when_registrations_are_not_inferred(samples, key, tmp_path):
    from pophealth.ingest import ingest_omop

    src = samples / "omop" / "synthea27nj_eunomia"
    ingest_omop(src, tmp_path / "st", key=key, registrations="recorded")
    index = _last_inhaler_day(samples, key, _condition_persons(samples, key, "asthma"))
    out = _run_cli("asthma", tmp_path / "st", tmp_path / "o", "--index-date", index.isoformat())
    assert out["worklist_by_practice"] == []


def test_cli_cvd_on_the_ingested_omop_store_finds_hypertension_patients(
    omop_store, samples, key, tmp_path
):
    hypertension = _condition_persons(samples, key, "hypertension")
    assert hypertension
    out = _run_cli("cvd", omop_store, tmp_path / "cvd")  # index date: the store's extract date
    htn = {
        r["patient_id"]
        for r in out["cvd_pharmacist_worklist"]
        if r["htn_group"] not in ("", "-1")  # on the hypertension register
    }
    assert htn and htn <= hypertension


def test_cli_cvd_on_the_ingested_synthea_store_finds_hypertension_patients(
    store, samples, key, tmp_path
):
    hypertension = set()
    for path in _synthea_files(samples):
        for res in resources_in(path):
            if isinstance(res, dict) and res.get("resourceType") == "Condition":
                for c in res.get("code", {}).get("coding", []):
                    if c.get("system") == SNOMED and "hypertens" in c.get("display", "").lower():
                        hypertension.add(_pid(key, res["subject"]["reference"]))
    assert hypertension
    out = _run_cli("cvd", store, tmp_path / "cvd")
    rows = out["cvd_pharmacist_worklist"]
    htn = {r["patient_id"] for r in rows if r["htn_group"] not in ("", "-1")}
    assert htn and htn <= hypertension
    # every listed patient is registered at the practice inferred from their encounters
    from pophealth.store import Store

    regs = {r["patient_id"]: r["practice_id"] for r in Store.open(store).read("registrations")
            .to_pylist()}  # fmt: skip
    assert {(r["patient_id"], r["practice_id"]) for r in rows} <= set(regs.items())


def test_cli_asthma_runs_on_the_ingested_synthea_store(store, expected, tmp_path):
    # the Synthea FHIR samples code asthma only as encounter reasons, never as a Condition,
    # so the register is (correctly) empty there; the run must still succeed
    out = _run_cli("asthma", store, tmp_path / "asthma")
    assert {r["patient_id"] for r in out["worklist_by_practice"]} == expected["asthma"] == set()
