"""Fixtures of the synthetic-population tests: small populations made once per session."""

from __future__ import annotations

import pyarrow as pa
import pytest

from pophealth.synth import generate, write_synthetic_store

#: The population the calibration tests run on (big enough for 2-3% registers).
CALIBRATION_PATIENTS = 20_000
SEED = 42


def _concat(chunks: list[dict[str, pa.Table]]) -> dict[str, pa.Table]:
    names = {n for c in chunks for n in c}
    return {n: pa.concat_tables([c[n] for c in chunks if n in c]) for n in names}


@pytest.fixture(scope="session")
def population() -> dict[str, pa.Table]:
    """20,000 patients, seed 42, every table in memory."""
    return _concat(list(generate(patients=CALIBRATION_PATIENTS, seed=SEED)))


@pytest.fixture(scope="session")
def small_store(tmp_path_factory):
    """A store of 3,000 patients (seed 7), written through write_synthetic_store."""
    path = tmp_path_factory.mktemp("synth") / "store"
    return write_synthetic_store(path, patients=3_000, seed=7)
