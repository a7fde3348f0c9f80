"""Fixtures shared by every test module.

Real official files live in ``../shared/data`` beside the repository (CI has it;
a fresh user clone does not). Tests that need them take the ``shared_data``
fixture, which skips with a reason when the folder is absent.

``pophealth demo`` runs every programme and writes the report; the tests that read what it
writes (the command as a user runs it, the disclosure audit of its files, the report page)
share one run, ``demo_run``.

``made_once`` makes a value once in a test run, whichever pytest-xdist worker asks for it
first (the others wait and read what it pickled): the demo run, and the programme runs on
synthetic stores that tests in several files read (tests/programmes/conftest.py).
"""

from __future__ import annotations

import fcntl
import os
import pickle
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("POPHEALTH_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The ../shared/data folder of real official files; skips when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real reference files not found at {SHARED_DATA} (set POPHEALTH_SHARED_DATA)")
    return SHARED_DATA


T = TypeVar("T")


class MadeOnce:
    """Values made once in a test run by whichever worker process asks first: the others
    wait on its lock, then read the value it pickled. For values tests only read, of types
    pickle finds again: not classes of a conftest.py (every conftest.py is the module
    ``conftest`` to Python, so pickle may look in another one)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def get(self, name: str, make: Callable[[Path], T]) -> T:
        """The value called ``name``: ``make(folder)`` (a folder of its own to write in)
        the first time in the run, what that call returned afterwards."""
        folder = self.folder / name
        saved = self.folder / f"{name}.pickle"
        with open(self.folder / f"{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            if saved.exists():
                return pickle.loads(saved.read_bytes())
            shutil.rmtree(folder, ignore_errors=True)  # what a failed first try left
            folder.mkdir()
            value = make(folder)
            partial = saved.with_suffix(".partial")
            partial.write_bytes(pickle.dumps(value))
            partial.replace(saved)
            return value


@pytest.fixture(scope="session")
def made_once(tmp_path_factory) -> MadeOnce:
    """Shared by the run's pytest-xdist workers: each one's temporary folder is in the
    run's own, where this one is (without xdist, the run's own folder is the process's)."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    folder = root / "made-once"
    folder.mkdir(exist_ok=True)
    return MadeOnce(folder)


#: The population of the shared ``pophealth demo`` run: small, so that many counts are
#: withheld (tests/programmes/test_disclosure_audit12.py audits it).
DEMO_PATIENTS, DEMO_SEED = 1500, 12


@dataclass(frozen=True)
class DemoRun:
    """One ``pophealth demo`` run: its --out folder and the finished process."""

    out: Path
    process: subprocess.CompletedProcess


def _run_demo(folder: Path) -> tuple[Path, subprocess.CompletedProcess]:
    out = folder / f"demo-{DEMO_PATIENTS}"
    args = ["demo", "--out", str(out), "--patients", str(DEMO_PATIENTS), "--seed", str(DEMO_SEED)]
    process = subprocess.run(
        [sys.executable, "-m", "pophealth", *args], capture_output=True, text=True, timeout=600
    )
    return out, process


@pytest.fixture(scope="session")
def demo_run(made_once) -> DemoRun:
    """``pophealth demo --patients 1500 --seed 12`` as a user runs it: a subprocess, as
    installed, once in the test run (``made_once``). Tests read its files and never write
    beside them."""
    run = DemoRun(*made_once.get("demo-run", _run_demo))
    assert run.process.returncode == 0, run.process.stderr[-3000:]
    return run


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
