"""Numbers are read as written or quarantined: a comma only between thousands, no
infinities or NaN — the same rule for flat CSV, FHIR and OMOP (pophealth.validate)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from pophealth.ingest.fhir import ingest_fhir
from pophealth.ingest.flat import ingest_csv
from pophealth.ingest.omop import ingest_omop
from pophealth.store import Store
from pophealth.validate import parse_number, validate
from tests.ingest.ingest_helpers import omop_weights

KEY = b"numbers-key-0123456789abc"


@pytest.mark.parametrize(
    ("text", "number"),
    [("1,234", 1234.0), ("12,345.6", 12345.6), ("-5", -5.0), (" 7 ", 7.0), (".5", 0.5),
     ("1e3", 1000.0), ("1,234,567", 1234567.0), (3, 3.0), ("", None)],
)  # fmt: skip
def test_numbers_that_load(text, number):
    assert parse_number(text) == (number, None)


@pytest.mark.parametrize(
    ("text", "finite"),
    [("1,5", True), ("1,2,3", True), ("12,34", True), ("1,234,5", True), (",5", True),
     ("1_000", True), ("0x10", True), ("< 5 mmol", True), ("١٢", True), ("NA", True),
     ("inf", False), ("-Infinity", False), ("NaN", False), ("1e400", False),
     (float("inf"), False), (float("nan"), False)],
)  # fmt: skip
def test_numbers_that_are_refused(text, finite):
    number, reason = parse_number(text)
    assert number is None
    assert reason.startswith("not a number" if finite else "not a finite number")


def test_validate_refuses_decimal_commas_and_infinities_naming_the_field():
    frame = pd.DataFrame(
        {
            "patient_id": "p1",
            "date": "2020-01-01",
            "system": "snomedct",
            "code": ["1", "2", "3", "4"],
            "value": ["1,234.5", "1,5", "inf", "2"],
        }
    )
    res = validate("events", frame, source="e.csv")
    assert list(res.quarantine.row) == [2, 3]
    assert set(res.quarantine.field) == {"value"}
    assert res.quarantine.reason.iloc[1].startswith("not a finite number")
    assert res.valid.column("value").to_pylist() == [1234.5, 2.0]


def _quarantined(summary) -> dict[str, str]:
    q = pd.read_csv(summary.quarantine_file, dtype=str, keep_default_na=False)
    return dict(zip(q.location, q.reason, strict=True))


def test_flat_csv_decimal_comma_list_and_infinity_are_quarantined(tmp_path):
    d = tmp_path / "flat"
    d.mkdir()
    (d / "patients.csv").write_text(
        "patient_id,date_of_birth,sex,ethnicity_5,ethnicity_16\np1,1980-01-02,female,white,A\n"
    )
    (d / "events.csv").write_text(
        "patient_id,date,system,code,value\n"
        'p1,2020-01-01,snomedct,1,"1,234"\n'
        'p1,2020-01-01,snomedct,2,"1,5"\n'
        'p1,2020-01-01,snomedct,3,"1,2,3"\n'
        "p1,2020-01-01,snomedct,4,-Infinity\n"
        "p1,2020-01-01,snomedct,5,1e400\n"
        "p1,2020-01-01,snomedct,6,NaN\n"
    )
    s = ingest_csv(d, tmp_path / "st")
    assert s.balanced
    ev = Store.open(tmp_path / "st").read("events").to_pandas()
    assert list(ev.value) == [1234.0]
    q = _quarantined(s)
    assert q["line 3"].startswith("not a number") and q["line 4"].startswith("not a number")
    assert all(q[f"line {n}"].startswith("not a finite number") for n in (5, 6, 7))


def _obs(oid: str, quantity: dict) -> dict:
    """An Observation of patient p1 with ``quantity`` as its valueQuantity."""
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2020-01-01",
        "code": {"coding": [{"system": "http://loinc.org", "code": "1-1"}]},
        "valueQuantity": quantity,
    }


def test_fhir_value_quantity_with_a_decimal_comma_or_infinity_is_quarantined(tmp_path):
    lines = [{"resourceType": "Patient", "id": "p1", "birthDate": "1980-01-02"}]
    lines += [
        _obs(o, {"value": v, "unit": "g"}) for o, v in (("a", "1,5"), ("b", 1e999), ("c", 2.5))
    ]
    f = tmp_path / "in.ndjson"
    text = "\n".join(json.dumps(x) for x in lines) + '\n{"resourceType": "Observation"'
    text += ', "id": "d", "status": "final", "subject": {"reference": "Patient/p1"}, '
    text += '"effectiveDateTime": "2020-01-01", "code": {"coding": [{"system": '
    text += '"http://loinc.org", "code": "1-1"}]}, "valueQuantity": {"value": NaN}}\n'
    f.write_text(text)
    s = ingest_fhir([f], tmp_path / "st", key=KEY)
    assert s.balanced
    ev = Store.open(tmp_path / "st").read("events").to_pandas()
    assert list(ev.value) == [2.5]
    q = _quarantined(s)
    assert q["line 2"].startswith("not a number")
    assert q["line 3"].startswith("not a finite number")
    assert q["line 5"].startswith("not a finite number")


def test_omop_value_as_number_with_a_decimal_comma_or_infinity_is_quarantined(tmp_path):
    d = omop_weights(
        tmp_path / "omop",
        "measurement_id,person_id,measurement_concept_id,measurement_date,value_as_number\n"
        "1,1,3025315,2013-05-17,48.1\n"
        '2,1,3025315,2013-05-18,"1,5"\n'
        "3,1,3025315,2013-05-19,inf\n",
    )
    s = ingest_omop(d, tmp_path / "st", key=KEY)
    assert s.balanced
    ev = Store.open(tmp_path / "st").read("events").to_pandas()
    assert list(ev.value) == [48.1]
    q = _quarantined(s)
    assert q["line 3"].startswith("not a number")
    assert q["line 4"].startswith("not a finite number")


def test_values_with_a_comparator_are_quarantined_not_stored_bare(tmp_path):
    f = tmp_path / "in.ndjson"
    lines = [{"resourceType": "Patient", "id": "p1", "birthDate": "1980-01-02"}]
    lines += [_obs("a", {"value": 5, "comparator": "<", "unit": "mmol/L"})]
    lines += [_obs("b", {"value": 5, "unit": "mmol/L"})]
    f.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    s = ingest_fhir([f], tmp_path / "st", key=KEY)
    assert s.balanced and s.tables["events"].duplicates == 0
    assert _quarantined(s)["line 2"].startswith("a value with a comparator")
    assert Store.open(tmp_path / "st").row_counts()["events"] == 1

    d = omop_weights(
        tmp_path / "omop",
        "measurement_id,person_id,measurement_concept_id,measurement_date,operator_concept_id,"
        "value_as_number\n"
        "1,1,3025315,2013-05-17,4171756,48.1\n"
        "2,1,3025315,2013-05-17,4172703,48.1\n",
    )
    s = ingest_omop(d, tmp_path / "st2", key=KEY)
    assert s.balanced
    assert _quarantined(s)["line 2"].startswith("a value with a comparator")
    assert list(Store.open(tmp_path / "st2").read("events").to_pandas().value) == [48.1]
