"""Fixtures of the asthma programme tests."""

from __future__ import annotations

import pytest

ENGINES = [pytest.param("duckdb"), pytest.param("spark", marks=pytest.mark.spark)]


@pytest.fixture(params=ENGINES)
def engine(request) -> str:
    return request.param
