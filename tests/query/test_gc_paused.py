"""A run holds Python's cycle collector off while it builds and compiles its queries, and
leaves it as it found it: on after the run (also when the run fails), off when it was off."""

from __future__ import annotations

import datetime as dt
import gc

import pytest

from pophealth.query import (
    Dataset,
    Measures,
    patients,
    run_dataset,
    run_measures,
    yearly,
)
from pophealth.store import StoreError
from tests.spec.conftest import make_store

TABLES = {"patients": [{"patient_id": p, "sex": "female"} for p in ("a", "b")]}


def _measures() -> Measures:
    m = Measures(intervals=yearly("2024-04-01", 1))
    m.define_measure(
        "f", numerator=patients.sex == "female", denominator=patients.sex.is_not_null()
    )
    return m


def _dataset() -> Dataset:
    ds = Dataset()
    ds.define_population(patients.sex.is_not_null())
    ds.sex = patients.sex
    return ds


def test_collector_off_during_a_run_and_on_after(tmp_path, monkeypatch):
    store = make_store(tmp_path, TABLES)
    seen = []
    real = Measures.__iter__

    def during(self):  # the measures are read while the run is under way
        seen.append(gc.isenabled())
        return real(self)

    monkeypatch.setattr(Measures, "__iter__", during)
    assert gc.isenabled()
    out = run_measures(store, _measures(), disclosure=False)
    assert out["numerator"].tolist() == [2]
    assert seen and not any(seen)
    assert gc.isenabled()
    data = run_dataset(store, _dataset(), index_date=dt.date(2025, 3, 31))
    assert data["sex"].tolist() == ["female", "female"]
    assert gc.isenabled()


def test_collector_left_off_when_it_was_off(tmp_path):
    store = make_store(tmp_path, TABLES)
    gc.disable()
    try:
        run_measures(store, _measures(), disclosure=False)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_collector_on_after_a_failed_run(tmp_path):
    with pytest.raises(StoreError, match="no store"):
        run_dataset(tmp_path / "missing", _dataset(), index_date=dt.date(2025, 3, 31))
    assert gc.isenabled()
