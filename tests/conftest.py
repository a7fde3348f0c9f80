"""Fixtures shared by every test module.

Real official files live in ``../shared/data`` beside the repository (CI has it;
a fresh user clone does not). Tests that need them take the ``shared_data``
fixture, which skips with a reason when the folder is absent.

``pophealth demo`` runs every programme and writes the report; the tests that read what it
writes (the command as a user runs it, the disclosure audit of its files, the report page)
share one run, ``demo_run``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
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


#: The population of the shared ``pophealth demo`` run: small, so that many counts are
#: withheld (tests/programmes/test_disclosure_audit12.py audits it).
DEMO_PATIENTS, DEMO_SEED = 1500, 12


@dataclass(frozen=True)
class DemoRun:
    """One ``pophealth demo`` run: its --out folder and the finished process."""

    out: Path
    process: subprocess.CompletedProcess


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> DemoRun:
    """``pophealth demo --patients 1500 --seed 12`` as a user runs it: a subprocess, as
    installed. Tests read its files and never write beside them."""
    out = tmp_path_factory.mktemp("demo-run") / f"demo-{DEMO_PATIENTS}"
    args = ["demo", "--out", str(out), "--patients", str(DEMO_PATIENTS), "--seed", str(DEMO_SEED)]
    process = subprocess.run(
        [sys.executable, "-m", "pophealth", *args], capture_output=True, text=True, timeout=600
    )
    assert process.returncode == 0, process.stderr[-3000:]
    return DemoRun(out, process)


@pytest.fixture(autouse=True)
def _spark_partitions_restored():
    """Each test starts from the Spark session's own shuffle partitions: a test that sets
    its own (1 for tiny tables, 2 for ties across partitions) does not hand its choice to
    whichever tests its worker process runs next."""
    yield
    from pophealth import engines

    session = engines._spark_session  # (not made here: only a session a test started)
    if session is not None:
        built = session.sparkContext.getConf().get("spark.sql.shuffle.partitions")
        session.conf.set("spark.sql.shuffle.partitions", built)
