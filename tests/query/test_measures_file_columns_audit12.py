"""`pophealth measures`: the file it writes has the same header (CSV) and schema (Parquet)
whether the result has rows or none, with or without --no-disclosure. An empty result
written with --no-disclosure had 6 columns (no value, limits, statistic, method or note),
so a pipeline reading last month's file broke on this month's."""

from __future__ import annotations

import datetime as dt

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pophealth.cli import app
from tests.spec.conftest import make_store

runner = CliRunner()

DEFINITION = """\
from pophealth.query import Measures, codelist, events, index_date, monthly, patients
from pophealth.query import registrations

measures = Measures(intervals=monthly("{month}", 1))
measures.define_defaults(denominator=registrations.registered_on(index_date))
measures.define_measure(
    "sbp_recorded",
    numerator=events.matching(codelist("systolic_bp")).exists_for_patient(),
    group_by={{"sex": patients.sex}},
)
measures.define_measure(
    "sbp_readings", numerator=events.matching(codelist("systolic_bp")).count_for_patient()
)
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    # one patient, registered from February: January has nobody in any denominator
    tables = {
        "patients": [{"patient_id": "1", "sex": "female"}],
        "registrations": [
            {"patient_id": "1", "practice_id": "A1", "start_date": dt.date(2025, 2, 1)}
        ],
    }
    return make_store(tmp_path_factory.mktemp("columns"), tables)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_the_file_has_one_header_and_schema_with_rows_or_none(tmp_path, store, suffix):
    written = {}
    for month in ("2025-01-01", "2025-02-01"):
        definition = tmp_path / f"m{month[5:7]}.py"
        definition.write_text(DEFINITION.format(month=month))
        for flag in ("--disclosure", "--no-disclosure"):
            out = tmp_path / f"{month}{flag}{suffix}"
            args = ["measures", str(definition), "--store", str(store.path), "--output", str(out)]
            result = runner.invoke(app, [*args, flag])
            assert result.exit_code == 0, result.output
            written[month, flag] = out
    for flag in ("--disclosure", "--no-disclosure"):
        empty, full = written["2025-01-01", flag], written["2025-02-01", flag]
        if suffix == ".csv":
            header = empty.read_text().splitlines()
            assert len(header) == 1  # no rows
            assert header[0] == full.read_text().splitlines()[0]
            assert header[0].count(",") == 15 - 1  # 15 columns, with the breakdown
        else:
            empty_schema, full_schema = pq.read_schema(empty), pq.read_schema(full)
            assert pq.read_table(empty).num_rows == 0 and pq.read_table(full).num_rows == 2
            assert empty_schema.remove_metadata() == full_schema.remove_metadata()
            assert len(empty_schema) == 15
