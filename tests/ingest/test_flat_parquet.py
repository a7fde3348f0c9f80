"""Flat Parquet input: a NaN is not a missing value, and a Parquet dataset folder (as Spark
writes ``events.parquet/part-*.parquet``) is not passed over in silence."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pophealth.ingest.flat import ingest_csv
from pophealth.store import Store

PATIENTS = "patient_id,date_of_birth,sex,ethnicity_5,ethnicity_16\np1,1980-01-02,female,white,A\n"


def _folder(tmp_path):
    d = tmp_path / "flat"
    d.mkdir()
    (d / "patients.csv").write_text(PATIENTS)
    return d


def test_nan_in_a_parquet_float_column_is_refused_like_nan_text(tmp_path):
    # a null is missing; a NaN (Spark writes 0/0 as NaN) is "not a finite number", as the
    # text NaN in a CSV is: read as missing, it loaded as a measurement without its value
    d = _folder(tmp_path)
    pq.write_table(
        pa.table(
            {
                "patient_id": ["p1"] * 4,
                "date": ["2020-01-01"] * 4,
                "system": ["snomedct"] * 4,
                "code": ["1", "2", "3", "4"],
                "value": pa.array([1.5, None, float("nan"), float("inf")], pa.float64()),
            }
        ),
        d / "events.parquet",
    )
    s = ingest_csv(d, tmp_path / "st")
    assert s.balanced
    q = pd.read_csv(s.quarantine_file, dtype=str, keep_default_na=False)
    assert sorted(zip(q.location, q.field, strict=True)) == [("row 3", "value"), ("row 4", "value")]
    assert all(r.startswith("not a finite number") for r in q.reason)
    ev = Store.open(tmp_path / "st").read("events").to_pandas().sort_values("code")
    assert ev.code.tolist() == ["1", "2"]
    assert ev.value.iloc[0] == 1.5 and pd.isna(ev.value.iloc[1])


def test_floats_in_parquet_keep_every_digit(tmp_path):
    d = _folder(tmp_path)
    values = [0.1, 1 / 3, 123456789.123456789, 5e-324, 1.7976931348623157e308]
    pq.write_table(
        pa.table(
            {
                "patient_id": ["p1"] * 5,
                "date": ["2020-01-01"] * 5,
                "system": ["snomedct"] * 5,
                "code": ["1", "2", "3", "4", "5"],
                "value": pa.array(values, pa.float64()),
            }
        ),
        d / "events.parquet",
    )
    s = ingest_csv(d, tmp_path / "st")
    assert s.balanced and s.tables["events"].loaded == 5
    ev = Store.open(tmp_path / "st").read("events").to_pandas().sort_values("code")
    assert ev.value.tolist() == values


def test_a_parquet_dataset_folder_is_read_part_by_part(tmp_path):
    # Spark writes a table as a folder of part files: it was passed over in silence (not
    # even listed as unused), and the run replaced the store's events with nothing
    d = _folder(tmp_path)
    folder = d / "events.parquet"
    folder.mkdir()
    for i, system in enumerate(["snomedct", "made_up", "snomedct"]):
        pq.write_table(
            pa.table(
                {
                    "patient_id": ["p1", "p1"],
                    "date": ["2020-01-01", f"2020-01-0{i + 2}"],
                    "system": [system, "snomedct"],
                    "code": [f"{i}", f"1{i}"],
                }
            ),
            folder / f"part-0000{i}.parquet",
        )
    (folder / "_SUCCESS").write_text("")
    s = ingest_csv(d, tmp_path / "st")
    assert s.balanced
    assert s.records["csv.events"].records_in == 6
    assert s.tables["events"].loaded == 5
    q = pd.read_csv(s.quarantine_file, dtype=str, keep_default_na=False)
    assert list(zip(q.file, q.location, q.field, strict=True)) == [
        (str(folder / "part-00001.parquet"), "row 1", "system")
    ]
    assert any("_SUCCESS" in n for n in s.notes)
