"""Fixtures for the ingest tests: a key, and the real samples ingested once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

KEY = b"test-key-0123456789-abcdef"


@pytest.fixture(scope="session")
def key() -> bytes:
    return KEY


@pytest.fixture(scope="session")
def samples(shared_data: Path) -> Path:
    path = shared_data / "samples"
    if not path.is_dir():
        pytest.skip(f"no samples folder at {path}")
    return path


@pytest.fixture(scope="session")
def fhir_all(samples: Path, tmp_path_factory):
    """Every FHIR sample ingested into one store (bundles, NDJSON, EPS messages, XML)."""
    from pophealth.ingest.fhir import ingest_fhir

    out = tmp_path_factory.mktemp("fhir_all") / "store"
    summary = ingest_fhir([samples / "fhir"], out, key=KEY)
    return summary


@pytest.fixture(scope="session")
def omop54(samples: Path, tmp_path_factory):
    from pophealth.ingest.omop import ingest_omop

    out = tmp_path_factory.mktemp("omop54") / "store"
    return ingest_omop(samples / "omop" / "synthea27nj_eunomia", out, key=KEY)
