"""Flat and OMOP text files are read to their end: a bad row is quarantined with its file,
physical line and field and reading goes on; a file that cannot be read to its end stops
the run with an error naming it, and the store keeps its previous snapshot."""

from __future__ import annotations

import gzip

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pophealth.ingest.flat import ingest_csv
from pophealth.ingest.omop import ingest_omop
from pophealth.ingest.tabular import UnreadableFile
from pophealth.store import Store

KEY = b"flat-files-key-0123456789"
PATIENTS = "patient_id,date_of_birth,sex,ethnicity_5,ethnicity_16\np1,1980-01-02,female,white,A\n"
EVENTS = "patient_id,date,system,code,value,unit\n"


def _event(i: int, unit: str = "x") -> str:
    return f"p1,2020-01-01,snomedct,{1000 + i},1,{unit}\n"


def _flat(tmp_path, **files) -> object:
    d = tmp_path / "flat"
    d.mkdir(exist_ok=True)
    for name, content in {"patients.csv": PATIENTS, **files}.items():
        if isinstance(content, bytes):
            (d / name).write_bytes(content)
        else:
            (d / name).write_text(content, newline="")
    return d


def _quarantine(summary) -> pd.DataFrame:
    assert summary.quarantine_file is not None
    return pd.read_csv(summary.quarantine_file, dtype=str, keep_default_na=False)


def test_a_bad_byte_quarantines_its_line_and_the_rest_of_the_file_loads(tmp_path):
    rows = [_event(i) for i in range(7)] + [_event(7, "caf\xe9")]
    rows += [_event(i) for i in range(8, 20)]
    d = _flat(tmp_path, **{"events.csv": (EVENTS + "".join(rows)).encode("latin-1")})
    s = ingest_csv(d, tmp_path / "st", chunk_rows=3)  # the bad line is in the third chunk
    assert s.committed and s.balanced
    assert s.records["csv.events"].records_in == 20
    assert s.records["csv.events"].quarantined == 1
    assert Store.open(tmp_path / "st").row_counts()["events"] == 19
    q = _quarantine(s)
    assert list(q.location) == ["line 9"]
    assert list(q.field) == ["unit"]
    assert "not UTF-8" in q.reason.iloc[0] and "0xE9" in q.reason.iloc[0]
    assert q.file.iloc[0].endswith("events.csv")


def test_a_row_with_too_many_or_too_few_fields_is_quarantined_and_reading_goes_on(tmp_path):
    text = EVENTS + _event(1) + "p1,2020-01-01,snomedct,2,1,x,EXTRA\n" + _event(3)
    text += "p1,2020-01-01,snomedct\n" + _event(5)
    s = ingest_csv(_flat(tmp_path, **{"events.csv": text}), tmp_path / "st")
    assert s.balanced
    assert s.records["csv.events"].records_in == 5
    assert Store.open(tmp_path / "st").row_counts()["events"] == 3
    q = _quarantine(s)
    assert list(q.location) == ["line 3", "line 5"]
    assert q.reason.iloc[0] == "7 fields where the header has 6"


def test_a_line_after_a_quoted_line_break_is_reported_at_its_physical_line(tmp_path):
    text = EVENTS + 'p1,2020-01-01,snomedct,1,5,"a\nb\nc"\np1,BADDATE,snomedct,2,,\n'
    s = ingest_csv(_flat(tmp_path, **{"events.csv": text}), tmp_path / "st")
    q = _quarantine(s)
    assert list(q.location) == ["line 5"]  # the record starts on line 5 (not record 3)


def _corrupt_parquet(path):
    pq.write_table(pa.table({"patient_id": ["p1"] * 50, "code": [str(i) for i in range(50)]}), path)
    data = bytearray(path.read_bytes())
    data[20:60] = b"\x00" * 40
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("case", ["empty", "gz_cut", "parquet", "missing_column", "header"])
def test_a_file_that_cannot_be_read_to_its_end_commits_nothing(tmp_path, case):
    out = tmp_path / "st"
    good = _flat(tmp_path, **{"events.csv": EVENTS + _event(1)})
    ingest_csv(good, out)
    before = Store.open(out).snapshot
    (good / "events.csv").unlink()
    if case == "empty":
        (good / "events.csv").write_bytes(b"")
    elif case == "gz_cut":
        data = gzip.compress((EVENTS + "".join(_event(i) for i in range(5000))).encode())
        (good / "events.csv.gz").write_bytes(data[: len(data) // 2])
    elif case == "parquet":
        _corrupt_parquet(good / "events.parquet")
    elif case == "missing_column":
        (good / "events.csv").write_text("patient_id,date,code\np1,2020-01-01,1\n")
    else:
        (good / "events.csv").write_bytes(b"patient_id,d\xe9te\np1,x\n")
    with pytest.raises(UnreadableFile, match="events"):
        ingest_csv(good, out)
    assert Store.open(out).snapshot == before
    assert Store.open(out).row_counts()["events"] == 1


def test_cli_exits_non_zero_and_names_the_file_when_a_file_cannot_be_read(tmp_path):
    from typer.testing import CliRunner

    from pophealth.cli import app

    d = _flat(tmp_path, **{"events.csv": b""})
    r = CliRunner().invoke(app, ["ingest", "csv", str(d), "--out", str(tmp_path / "st")])
    assert r.exit_code == 2, r.output
    assert "events.csv" in r.output and "empty" in r.output
    assert not Store.is_store(tmp_path / "st")


def test_omop_bad_byte_and_extra_field_are_quarantined_with_their_lines(tmp_path):
    d = tmp_path / "omop"
    d.mkdir()
    (d / "person.csv").write_bytes(
        b"person_id,gender_concept_id,year_of_birth,month_of_birth,day_of_birth\n"
        b"1,8507,1960,5,1\n"
        b"2,8532,1970,1,1,9\n"
        b"3,8532,19\xe970,1,1\n"
        b"4,8507,1980,1,1\n"
    )
    s = ingest_omop(d, tmp_path / "st", key=KEY)
    assert s.balanced
    assert s.records["omop.person"].records_in == 4
    assert Store.open(tmp_path / "st").row_counts()["patients"] == 2
    q = _quarantine(s)
    assert list(q.location) == ["line 3", "line 4"]
    assert q.field.iloc[1] == "year_of_birth"


def test_tsv_fields_in_quotes_are_read_as_a_csv_dialect_with_tabs(tmp_path):
    d = tmp_path / "flat"
    d.mkdir()
    (d / "patients.tsv").write_text(
        'patient_id\tdate_of_birth\tsex\tethnicity_5\tethnicity_16\n"p1"\t1980-01-02\tfemale\twhite\tA\n'
    )
    (d / "events.tsv").write_text(
        "patient_id\tdate\tsystem\tcode\tvalue\tunit\n"
        '"p1"\t2020-01-01\tsnomedct\t"123"\t5\t"mmol\tper ""L"""\n'
        'p1\t2020-01-02\tsnomedct\t124\t6\t5" tall\n'
    )
    s = ingest_csv(d, tmp_path / "st")
    assert s.balanced and s.tables["events"].loaded == 2
    store = Store.open(tmp_path / "st")
    assert list(store.read("patients").to_pandas().patient_id) == ["p1"]
    ev = store.read("events").to_pandas().sort_values("code")
    assert list(ev.patient_id) == ["p1", "p1"]  # both rows link to the patient
    assert list(ev.code) == ["123", "124"]
    assert list(ev.unit) == ['mmol\tper "L"', '5" tall']  # a quote inside a value is kept
