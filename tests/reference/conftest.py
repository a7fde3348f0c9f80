"""Shared fixtures of the reference tests: real files loaded once per session."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from pophealth.reference import loaders
from pophealth.reference.sources import source
from pophealth.store import Store


def real(shared_data: Path, key: str) -> Path:
    path = source(key).find(shared_data)
    if path is None:
        pytest.skip(f"{key} not in {shared_data}")
    return path


@pytest.fixture(scope="session")
def file2(shared_data):
    return loaders.load_imd2019_file2(real(shared_data, "imd2019_file2"))


@pytest.fixture(scope="session")
def imd2025(shared_data):
    return loaders.load_imd2025(real(shared_data, "imd2025"))


@pytest.fixture(scope="session")
def lookup(shared_data):
    return loaders.load_lsoa11_lsoa21_lookup(real(shared_data, "lsoa11_lsoa21"))


@pytest.fixture(scope="session")
def population(shared_data):
    return loaders.load_population_lsoa11(real(shared_data, "population_lsoa11"))


@pytest.fixture(scope="session")
def fuel(shared_data):
    return loaders.load_fuel_poverty(real(shared_data, "fuel_poverty"))


def _build_both(shared_data: Path, folder: Path) -> dict[str, tuple[Path, object]]:
    from pophealth.reference.build import build_reference_store

    out = {}
    for imd in ("2019", "2025"):
        store_dir = folder / f"ref{imd}" / "store"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            store, report = build_reference_store(shared_data, store_dir, imd)
        out[imd] = (store.path, report)
    return out


@pytest.fixture(scope="session")
def built(shared_data, made_once):
    """Both releases built over the real folder into one store each (built once in the test
    run: tests/conftest.py's ``made_once``; tests only read them)."""
    stores = made_once.get("reference-stores", lambda folder: _build_both(shared_data, folder))
    out = {}
    for imd, (path, report) in stores.items():
        store = Store.open(path)
        out[imd] = (store, report, store.read("areas").to_pandas())
    return out
