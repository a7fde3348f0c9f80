"""Schema-driven validation: bad rows quarantined with file, row, field, reason."""

import datetime as dt

import pandas as pd
import pytest

from pophealth.validate import SchemaError, format_problems, validate


def patients(**overrides):
    base = {
        "patient_id": ["p1", "p2", "p3"],
        "date_of_birth": ["1950-01-31", "1980-06-15", "2001-12-01"],
        "sex": ["female", "male", "unknown"],
        "ethnicity_5": ["white", "asian", "unknown"],
        "ethnicity_16": ["A", "H", "Z"],
        "date_of_death": [None, "2020-02-02", ""],
    }
    base.update(overrides)
    return pd.DataFrame(base)


def test_clean_rows_all_load_with_canonical_types():
    r = validate("patients", patients(), source="p.csv")
    assert r.rows_loaded == 3 and r.rows_quarantined == 0
    assert str(r.valid.schema.field("date_of_birth").type) == "date32[day]"
    assert r.valid.column("date_of_death").null_count == 2


@pytest.mark.parametrize(
    ("column", "bad", "reason"),
    [
        ("sex", "F", "not one of"),
        ("date_of_birth", "31/01/1950", "not a date"),
        ("date_of_birth", "", "missing required value"),
        ("ethnicity_16", "Q", "not one of"),
    ],
)
def test_bad_value_is_quarantined_with_row_and_field(column, bad, reason):
    df = patients()
    df.loc[1, column] = bad
    r = validate("patients", df, source="patients.csv", row_numbers=[2, 3, 4])
    assert r.rows_loaded == 2 and r.rows_quarantined == 1
    q = r.quarantine.iloc[0]
    assert (q.source, q.row, q.field) == ("patients.csv", 3, column)
    assert reason in q.reason
    assert "patients.csv, row 3, field " + column in format_problems(r.quarantine)


def test_duplicate_key_keeps_first_and_quarantines_the_rest():
    r = validate("patients", patients(patient_id=["p1", "p1", "p2"]))
    assert r.rows_loaded == 2 and r.rows_quarantined == 1
    assert "duplicate key" in r.quarantine.reason.iloc[0]
    assert "row 1, the first with it, kept" in r.quarantine.reason.iloc[0]


def test_a_key_whose_first_row_is_bad_keeps_its_first_valid_row():
    """Row 1 of p1 is quarantined for its date, so row 2 is p1's first valid row: it is
    kept, and only row 3 is a duplicate — naming row 2 as the row kept. (Before, row 2 was
    quarantined as a duplicate "first row kept" while row 1 was not kept: p1 was lost.)"""
    df = patients(patient_id=["p1", "p1", "p1"])
    df.loc[0, "date_of_birth"] = "31/01/1950"
    r = validate("patients", df, source="patients.csv", row_numbers=[1, 2, 3])
    assert r.valid.column("patient_id").to_pylist() == ["p1"]
    assert r.valid.column("date_of_birth").to_pylist() == [dt.date(1980, 6, 15)]
    q = r.quarantine.set_index("row")
    assert "not a date" in q.loc[1, "reason"]
    assert q.loc[3, "reason"] == "duplicate key (patient_id); row 2, the first with it, kept"
    assert r.rows_loaded == 1 and r.rows_quarantined == 2


def test_ranges_patterns_and_numbers():
    events = pd.DataFrame(
        {
            "patient_id": ["a", "a", "b"],
            "date": ["2024-01-01", "2024-01-02", "2024-01-03"],
            "system": ["snomedct", "snomed", "snomedct"],
            "code": ["271649006", "271649006", "271649006"],
            "value": ["120", "130", "high"],
        }
    )
    r = validate("events", events, source="e.csv")
    assert r.rows_loaded == 1
    assert set(r.quarantine.field) == {"system", "value"}
    assert r.rows_in == r.rows_loaded + r.rows_quarantined


def test_missing_required_column_names_the_file_and_column():
    with pytest.raises(SchemaError, match=r"p\.csv: table 'patients' needs column\(s\) sex"):
        validate("patients", patients().drop(columns=["sex"]), source="p.csv")


def test_lists_from_pipe_separated_text():
    adm = pd.DataFrame(
        {
            "patient_id": ["a"],
            "admission_date": ["2024-01-01"],
            "admission_method": ["emergency"],
            "all_diagnoses": ["J459|J450"],
        }
    )
    r = validate("admissions", adm)
    assert r.valid.column("all_diagnoses").to_pylist() == [["J459", "J450"]]


def areas(**overrides):
    base = {"lsoa_code": ["E01000001"], "imd_release": ["IoD2019"], "core20": ["true"]}
    base.update(overrides)
    return pd.DataFrame(base)


@pytest.mark.parametrize(
    "value", ["1e20", "9223372036854775807", "9007199254740993", "-1e19", 1e20, -(2.0**63)]
)
def test_a_whole_number_too_large_to_hold_exactly_is_quarantined(value):
    """Beyond 2**63 the int64 column cannot hold it (the whole validation used to fail
    with 'cannot safely cast'); between 2**53 and 2**63 it read as a different number
    (9007199254740993 loaded as ...992)."""
    r = validate("areas", areas(population=[value]), source="areas.csv")
    assert r.rows_loaded == 0 and r.rows_quarantined == 1
    q = r.quarantine.iloc[0]
    assert (q.source, q.row, q.field) == ("areas.csv", 1, "population")
    assert "too large to hold exactly" in q.reason


def test_the_largest_exact_whole_number_loads():
    r = validate("areas", areas(population=["9007199254740991"]))
    assert r.valid.column("population").to_pylist() == [9_007_199_254_740_991]


@pytest.mark.parametrize("bad", ["1066-10-14", "2999-01-01", "16000101"])
def test_a_date_in_a_year_that_cannot_be_read_says_so(bad):
    r = validate("patients", patients(date_of_birth=["1950-01-31", bad, "2001-12-01"]))
    assert r.rows_loaded == 2 and r.rows_quarantined == 1
    assert r.quarantine.field.tolist() == ["date_of_birth"]
    assert r.quarantine.reason.iloc[0] == "a date outside the years 1678-2261 pophealth can read"


def test_an_impossible_calendar_date_is_not_a_date():
    r = validate("patients", patients(date_of_birth=["1950-02-30", "1980-13-01", "2001-12-01"]))
    assert r.rows_quarantined == 2
    assert set(r.quarantine.reason) == {"not a date (expected YYYY-MM-DD)"}


@pytest.mark.parametrize("numbers", [[5, 5, 6], [1, 2], [1, 2, 3, 4]])
def test_row_numbers_must_name_each_row_once(numbers):
    """Problems are told and rows counted by row number: a repeated one used to make two
    rows one (both quarantined for one's problem, counted once: a failed balance)."""
    with pytest.raises(ValueError, match=r"p\.csv: row_numbers must name each of the 3 rows"):
        validate("patients", patients(), source="p.csv", row_numbers=numbers)
