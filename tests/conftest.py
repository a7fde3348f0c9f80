"""Fixtures shared by every test module.

Real official files live in ``../shared/data`` beside the repository (CI has it;
a fresh user clone does not). Tests that need them take the ``shared_data``
fixture, which skips with a reason when the folder is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("POPHEALTH_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The ../shared/data folder of real official files; skips when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real reference files not found at {SHARED_DATA} (set POPHEALTH_SHARED_DATA)")
    return SHARED_DATA
