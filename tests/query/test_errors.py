"""Mistakes in a definition raise a clear QueryError naming the variable — before anything
runs."""

from __future__ import annotations

import datetime as dt

import pytest

from pophealth.codelists import Codelist
from pophealth.query import (
    Dataset,
    QueryError,
    addresses,
    admissions,
    case,
    events,
    index_date,
    medications,
    months,
    patients,
)

SBP = Codelist.of("snomedct", ["271649006"], name="sbp")
SABA = Codelist.of("dmd", ["39113611000001102"], name="saba")
ICD = Codelist.of("icd10", ["J45", "J459"], name="asthma_icd10")


def _assign(name, value):
    ds = Dataset()
    ds.add(name, value)


def test_date_compared_with_a_number_names_the_variable():
    with pytest.raises(
        QueryError, match=r"variable 'recent_bp'.*cannot compare a date with a number"
    ):
        _assign("recent_bp", events.matching(SBP).last_for_patient().date > 140)


def test_error_propagates_through_composition():
    bad = patients.date_of_birth > 3
    with pytest.raises(QueryError, match=r"variable 'flag'.*cannot compare a date"):
        _assign("flag", bad & (patients.sex == "female"))


def test_rows_of_two_tables_cannot_be_combined():
    rows = events.value + medications.quantity
    with pytest.raises(
        QueryError, match=r"variable 'x'.*medications.*events|variable 'x'.*events.*medications"
    ):
        _assign("x", events.where(rows > 1).count_for_patient())


def test_filter_on_another_tables_rows_is_refused():
    with pytest.raises(QueryError, match="variable 'n'.*different tables"):
        _assign("n", events.where(medications.quantity > 1).count_for_patient())


def test_wrong_code_system_for_the_table():
    with pytest.raises(QueryError, match=r"variable 'on_saba'.*dmd codes but events.code holds"):
        _assign("on_saba", events.matching(SABA).exists_for_patient())
    ctv3 = Codelist.of("ctv3", ["H33.."], name="asthma_ctv3")
    with pytest.raises(QueryError, match=r"variable 'meds'.*ctv3 codes but medications.code"):
        _assign("meds", medications.matching(ctv3).exists_for_patient())
    with pytest.raises(QueryError, match=r"variable 'adm'.*icd10"):
        _assign("adm", admissions.matching(SBP, column="primary_diagnosis").exists_for_patient())
    # the right system is fine
    _assign("adm", admissions.matching(ICD, column="all_diagnoses").count_for_patient())


def test_row_level_value_is_not_a_patient_variable():
    with pytest.raises(QueryError, match=r"variable 'v'.*one value per row of events"):
        _assign("v", events.value)
    with pytest.raises(QueryError, match=r"variable 'rows'.*many rows per patient"):
        _assign("rows", events.matching(SBP))


def test_type_mistakes():
    with pytest.raises(QueryError, match="variable 'a'.*arithmetic needs numbers"):
        _assign("a", patients.sex + 1)
    with pytest.raises(QueryError, match=r"variable 'b'.*can only be added to a date"):
        _assign("b", patients.sex + months(1))
    with pytest.raises(QueryError, match=r"variable 'c'.*add or subtract days"):
        _assign("c", patients.date_of_birth + 30)
    with pytest.raises(QueryError, match=r"variable 'd'.*needs True/False"):
        _assign("d", patients.sex & (patients.sex == "male"))
    with pytest.raises(QueryError, match=r"variable 'e'.*branches mix types"):
        _assign("e", case((patients.sex == "male", 1), otherwise="x"))
    with pytest.raises(QueryError, match=r"variable 'f'.*needs numbers"):
        _assign("f", events.mean_for_patient(events.code))


def test_python_truthiness_is_refused():
    with pytest.raises(QueryError, match="not a Python True/False"):
        if patients.sex == "male":
            pass


def test_population_must_be_a_condition():
    ds = Dataset()
    with pytest.raises(QueryError, match="population rule.*not True/False"):
        ds.define_population(patients.age_on(index_date))


def test_unknown_columns_and_attributes():
    with pytest.raises(AttributeError, match="events has no column 'valu'"):
        events.valu  # noqa: B018
    # a misspelt method is not called a missing column
    with pytest.raises(
        AttributeError,
        match=r"events has no column or method 'exist_for_patient' \(did you mean "
        r"'exists_for_patient'\?\)",
    ):
        events.exist_for_patient  # noqa: B018
    with pytest.raises(AttributeError, match="areas has no column 'imd_decil'"):
        addresses.area_on(index_date).imd_decil  # noqa: B018
    with pytest.raises(QueryError, match="use a date, not a datetime"):
        _assign("x", patients.date_of_birth < dt.datetime(2020, 1, 1))
