"""The synthetic store: schema-valid, deterministic, fictional."""

from __future__ import annotations

import hashlib

import pytest

from pophealth.schema import TABLES
from pophealth.synth import write_synthetic_store
from pophealth.validate import validate


@pytest.mark.parametrize("name", list(TABLES))
def test_every_table_validates_with_nothing_quarantined(small_store, name):
    result = validate(name, small_store.read(name), source=f"synth:{name}")
    assert result.rows_quarantined == 0, result.quarantine.head(5).to_string()
    assert result.rows_loaded == small_store.row_counts()[name]


def test_every_clinical_table_has_rows(small_store):
    counts = small_store.row_counts()
    for name in (
        "patients",
        "practices",
        "registrations",
        "addresses",
        "events",
        "medications",
        "admissions",
        "emergency_attendances",
        "operations",
        "questionnaire_responses",
        "areas",
    ):
        assert counts[name] > 0, name


def _digests(store) -> dict[str, str]:
    return {
        name: hashlib.sha256(store.table_path(name).read_bytes()).hexdigest() for name in TABLES
    }


def test_same_seed_gives_byte_identical_tables(tmp_path):
    a = write_synthetic_store(tmp_path / "a", patients=1_500, seed=11)
    b = write_synthetic_store(tmp_path / "b", patients=1_500, seed=11)
    assert _digests(a) == _digests(b)


def test_another_seed_gives_other_data(tmp_path):
    a = write_synthetic_store(tmp_path / "a", patients=1_500, seed=11)
    b = write_synthetic_store(tmp_path / "b", patients=1_500, seed=12)
    da, db = _digests(a), _digests(b)
    assert da["patients"] != db["patients"]
    assert da["events"] != db["events"]


def test_store_records_the_extract_date_and_the_seed(small_store):
    from pophealth.synth import EXTRACT_DATE

    assert small_store.metadata["extract_date"] == EXTRACT_DATE.isoformat()
    assert small_store.metadata["synthetic"]["seed"] == 7
    assert small_store.metadata["synthetic"]["patients"] == 3_000
