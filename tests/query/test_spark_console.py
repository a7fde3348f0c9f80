"""What an analyst sees on the console running a definition file on Spark: pophealth's own
lines, not Spark's start-up warnings and progress bars (pophealth/spark-log4j2.properties)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pophealth.synth import write_synthetic_store

DEFINITION = """\
from pophealth.query import Measures, index_date, monthly, patients, registrations

measures = Measures(intervals=monthly("2026-01-01", 3))
measures.define_measure(
    "registered_women",
    numerator=patients.sex == "female",
    denominator=registrations.registered_on(index_date),
)
"""


@pytest.mark.slow
def test_a_spark_run_prints_pophealths_lines_not_sparks_warnings(tmp_path):
    write_synthetic_store(tmp_path / "store", patients=200, seed=5, progress=None)
    (tmp_path / "m.py").write_text(DEFINITION)
    out = tmp_path / "m.csv"
    done = subprocess.run(
        [sys.executable, "-m", "pophealth", "measures", str(tmp_path / "m.py"), "--store",
         str(tmp_path / "store"), "--output", str(out), "--engine", "spark"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert out.exists()
    said = done.stdout + done.stderr
    assert "3 rows: 1 measure over 3 intervals (engine spark" in " ".join(said.split())
    for noise in ("NativeCodeLoader", "resolves to a loopback address", "log4j2-defaults"):
        assert noise not in said, noise
