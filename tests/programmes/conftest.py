"""Fixtures of the programme tests: synthetic stores and programme runs made once per session.

An asthma run takes several seconds whatever the store's size (its disclosure control
settles every count across the run's tables), and several test modules run the same
programme, as ``pophealth demo`` runs it, on the same synthetic store: the adversary's
audits (``test_crosstab_margins_lp``, ``test_disclosure_across_tables``) on 300, 1,500 and
5,000 patients, the asthma end-to-end tests and the cross-tab audit on the canonical 10,000.
:func:`synthetic_runs` makes each store once per worker process and each run once in the
test run (tests/conftest.py's ``made_once``: a module on the other pytest-xdist worker reads
the same results); tests only read them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from pophealth import programmes
from pophealth.charts import ChartData, attach_data, chart_data
from pophealth.programmes import ProgrammeResult
from pophealth.store import Store
from pophealth.synth import write_synthetic_store
from tests.conftest import MadeOnce


def _portable(result: ProgrammeResult) -> tuple[ProgrammeResult, list[ChartData | None]]:
    """A programme result as pickled for the other worker: a pickled plotly figure loses the
    table its chart builder attached (``pophealth.charts.chart_data``), so the tables travel
    beside the figures (:func:`_unpacked` attaches them again)."""
    return result, [chart_data(f.figure) for f in _figures(result)]


def _unpacked(portable: tuple[ProgrammeResult, list[ChartData | None]]) -> ProgrammeResult:
    result, charts = portable
    for figure, data in zip(_figures(result), charts, strict=True):
        if data is not None and chart_data(figure.figure) is None:
            attach_data(figure.figure, data.frame, data.notes, data.summary)
    return result


def _figures(result: ProgrammeResult) -> list:
    return [figure for section in result.sections for figure in section.figures]


class SyntheticRuns:
    """Synthetic stores by (patients, seed), and each programme's run on them as ``pophealth
    demo`` runs it: the registered programme, on DuckDB, at the store's extract date, every
    programme of a store in a worker process on one connection."""

    def __init__(self, base: Path, made_once: MadeOnce) -> None:
        self._base = base
        self._made_once = made_once
        self._stores: dict[tuple[int, int], Store] = {}
        self._backends: dict[tuple[int, int], object] = {}
        self._results: dict[tuple[int, int, str], ProgrammeResult] = {}
        self._frames: dict[tuple[int, int], pd.DataFrame] = {}

    def store(self, patients: int, seed: int) -> Store:
        key = (patients, seed)
        if key not in self._stores:
            path = self._base / f"store-{patients}-{seed}"
            write_synthetic_store(path, patients=patients, seed=seed)
            self._stores[key] = Store.open(path)
        return self._stores[key]

    def index_date(self, patients: int, seed: int) -> dt.date:
        return dt.date.fromisoformat(self.store(patients, seed).metadata["extract_date"])

    def backend(self, patients: int, seed: int):
        key = (patients, seed)
        if key not in self._backends:
            self._backends[key] = self.store(patients, seed).connect("duckdb")
        return self._backends[key]

    def result(self, patients: int, seed: int, name: str) -> ProgrammeResult:
        """``programmes.get(name).run`` on the store (made once in the test run)."""
        key = (patients, seed, name)
        if key not in self._results:
            portable = self._made_once.get(
                f"{name}-{patients}-patients-seed-{seed}",
                lambda _: _portable(
                    programmes.get(name).run(
                        self.backend(patients, seed),
                        index_date=self.index_date(patients, seed),
                        engine="duckdb",
                    )
                ),
            )
            self._results[key] = _unpacked(portable)
        return self._results[key]

    def results(self, patients: int, seed: int) -> dict[str, ProgrammeResult]:
        """Every programme on the store."""
        return {name: self.result(patients, seed, name) for name in programmes.names()}

    def asthma_frame(self, patients: int, seed: int) -> pd.DataFrame:
        """The asthma register with every marker, tier and flag (``asthma.evaluate`` with the
        curated code lists), as the asthma run computes it."""
        from pophealth.programmes.asthma.codes import curated
        from pophealth.programmes.asthma.programme import evaluate

        key = (patients, seed)
        if key not in self._frames:
            backend = self.backend(patients, seed)
            self._frames[key] = evaluate(backend, self.index_date(patients, seed), curated())
        return self._frames[key]


@pytest.fixture(scope="session")
def synthetic_runs(tmp_path_factory, made_once) -> SyntheticRuns:
    return SyntheticRuns(tmp_path_factory.mktemp("synthetic-runs"), made_once)
