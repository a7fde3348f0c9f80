"""A new analyst's mistakes: each one stops the definition with a QueryError naming the
variable (and, in a definition file, the file and line) — never an Ibis, DuckDB or Spark
traceback, and never a silent wrong answer. Most cases here were a silent zero, a silent
"everybody", a traceback or a bare AttributeError before this file was written; a few
(a date compared with a number, a breakdown of many rows per patient, a float numerator,
no intervals, Python's ``if`` in a definition file) were right already and are kept beside
the others so that the list of mistakes is whole."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import pytest

from pophealth.codelists import Codelist, codelist, curated_manifest, load_codelist
from pophealth.query import (
    Dataset,
    Measures,
    QueryError,
    addresses,
    events,
    index_date,
    medications,
    monthly,
    patients,
    registrations,
    weekly,
    yearly,
)
from pophealth.query.definitions import DefinitionError, load_definitions

D = dt.date
SBP = Codelist.of("snomedct", ["271649006"], name="sbp")
SABA = codelist("saba_inhalers")
REGISTERED = registrations.registered_on(index_date)


def assign(name, value):
    Dataset().add(name, value)


def measure(**kw):
    m = Measures(intervals=kw.pop("intervals", monthly("2025-01-01", 2)))
    kw.setdefault("numerator", events.matching(SBP).exists_for_patient())
    kw.setdefault("denominator", REGISTERED)
    m.define_measure("bp", **kw)


# -- a clinical SNOMED CT list against medications (gap iii) --------------------------------


@pytest.mark.parametrize("name", ["asthma_diagnosis", "systolic_bp", "hba1c", "af_resolved"])
def test_a_curated_clinical_list_on_medications_is_refused(name):
    with pytest.raises(
        QueryError,
        match=rf"variable 'meds': medications.matching\({name}\): code list '{name}' holds "
        "clinical SNOMED CT concepts, not medicinal products: .*match no row of medications",
    ):
        assign("meds", medications.matching(codelist(name)).exists_for_patient())


def test_every_curated_list_builds_where_it_belongs_and_only_there():
    """Every curated medicine list (dm+d, with RxNorm and BNF rows) still matches
    medications, and every curated clinical SNOMED CT list still matches events; a
    clinical list is refused on medications."""
    for name, entry in curated_manifest().items():
        cl = codelist(name)
        if entry["system"] == "dmd":
            assign("meds", medications.matching(cl).count_for_patient())
        elif entry["system"] == "snomedct":
            assign("events", events.matching(cl).count_for_patient())
            with pytest.raises(QueryError, match="clinical SNOMED CT concepts"):
                assign("meds", medications.matching(cl).count_for_patient())


def test_a_snomed_list_of_medicinal_products_still_matches_medications():
    """dm+d and SNOMED CT ids are one space: a SNOMED CT list of core product ids (here
    prednisolone 5mg tablets, a dm+d VMP) is not a clinical list."""
    products = Codelist.of("snomedct", ["325426006"], name="prednisolone_snomed")
    assert products.not_products() is None
    assign("pred", medications.matching(products).exists_for_patient())


def test_a_loaded_list_with_a_uk_clinical_extension_code_is_refused(shared_data):
    """A real OpenCodelists SNOMED CT list (QOF asthma register refset) holds UK clinical
    extension ids (namespace 1000000), which no dm+d product has."""
    path = shared_data / "codelists" / "nhsd-primary-care-domain-refsets-ast_cod.csv"
    ast = load_codelist(path)
    with pytest.raises(
        QueryError,
        match=r"variable 'ast_meds': .*'nhsd-primary-care-domain-refsets-ast_cod' holds "
        r"clinical SNOMED CT concepts.*extension namespace 1000000",
    ):
        assign("ast_meds", medications.matching(ast).exists_for_patient())
    assign("ast", events.matching(ast).exists_for_patient())  # where it belongs


def test_a_loaded_list_with_loinc_rows_is_clinical(tmp_path):
    path = tmp_path / "sbp.csv"
    path.write_text("code,term,system\n271649006,Systolic BP,\n8480-6,Systolic BP,loinc\n")
    with pytest.raises(QueryError, match="also holds loinc codes, which are clinical"):
        assign("x", medications.matching(load_codelist(path)).exists_for_patient())


def test_code_lists_of_the_wrong_kind_elsewhere():
    with pytest.raises(QueryError, match=r"variable 'x': events.matching\(\['271649006'\]\): "):
        assign("x", events.matching(["271649006"]).exists_for_patient())
    with pytest.raises(QueryError, match="needs a code list .* not a str"):
        assign("x", events.matching("asthma_diagnosis").exists_for_patient())
    # is_in with a code list checks the systems the column can hold, as matching does
    with pytest.raises(
        QueryError, match=r"variable 'x': events.code.is_in\(saba_inhalers\): .*match nothing"
    ):
        assign("x", events.where(events.code.is_in(SABA)).exists_for_patient())
    latest = events.matching(SBP).last_for_patient().code
    with pytest.raises(QueryError, match="'saba_inhalers' holds dmd/rxnorm codes"):
        assign("x", latest.is_in(SABA))
    assign("x", latest.is_in(SBP))  # the right system is fine


# -- comparisons that can never be true, or are always true ---------------------------------


@pytest.mark.parametrize(
    ("build", "words"),
    [
        (lambda: events.matching(SBP).last_for_patient().value == None, "use .is_null()"),  # noqa: E711
        (lambda: patients.date_of_death != None, "use .is_not_null()"),  # noqa: E711
        (lambda: patients.sex == "Female", "'Female' is not a value patients.sex takes"),
        (lambda: patients.sex != "F", "true for everybody with a value"),
        (lambda: patients.sex.is_in(["F", "M"]), "'F' is not a value patients.sex takes"),
        (
            lambda: events.where(events.system == "SNOMED").exists_for_patient(),
            "'SNOMED' is not a value events.system takes",
        ),
        (
            lambda: addresses.area_on(index_date).imd_release == "2019",
            "'2019' is not a value areas",
        ),
        (lambda: patients.date_of_birth > "31/03/2025", "is not a date"),
        (lambda: patients.date_of_birth == 1990, "cannot compare a date with a number"),
        (lambda: events.mean_for_patient() > "140", "cannot compare a number with a string"),
    ],
)
def test_comparisons_that_say_nothing_name_the_variable(build, words):
    with pytest.raises(QueryError) as err:
        assign("flag", build())
    assert str(err.value).startswith("variable 'flag': ") and words in str(err.value)


def test_allowed_values_pass():
    assign("female", patients.sex == "female")
    assign("known", patients.sex.is_in(["female", "male"]))
    assign("release", addresses.area_on(index_date).imd_release == "IoD2019")


# -- windows that hold no day ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "words"),
    [
        (lambda: events.in_last(months=-12), "a negative length; in_next looks the other way"),
        (lambda: events.in_next(days=-7), "a negative length; in_last looks the other way"),
        (lambda: events.in_last(), "no length given"),
        (lambda: events.in_last(months=1.5), "needs a whole number of months"),
        (lambda: events.between("2025-01-01", "2024-01-01"), "the start is after the end"),
    ],
)
def test_a_window_that_holds_no_day_is_an_error(build, words):
    with pytest.raises(QueryError, match="variable 'n': ") as err:
        assign("n", build().count_for_patient())
    assert words in str(err.value)


# -- columns, methods and Python's own operators --------------------------------------------


def test_a_value_column_on_a_table_without_one():
    with pytest.raises(
        QueryError, match=r"variable 'lowest': medications has no value column: name the column"
    ):
        assign("lowest", medications.minimum_for_patient())
    with pytest.raises(QueryError, match="medications has no value column"):
        assign("day", medications.last_day_for_patient().value)
    # reading the column itself: a QueryError (the definition file's line is named) that
    # is still an AttributeError, so hasattr() works
    with pytest.raises(QueryError, match="medications has no column 'value'"):
        medications.value  # noqa: B018
    assert not hasattr(medications, "value") and not hasattr(patients, "nhs_number")
    with pytest.raises(QueryError, match=r"sort_by\('valu'\): events has no column 'valu'"):
        assign("x", events.sort_by("valu").last_for_patient().value)


def test_sort_by_a_column_name_sorts_by_that_column():
    by_name = events.sort_by("value").last_for_patient().date
    by_column = events.sort_by(events.value).last_for_patient().date
    assert by_name.key == by_column.key


def test_python_operators_on_expressions():
    value = events.matching(SBP).last_for_patient().value
    with pytest.raises(QueryError, match="not a Python True/False.*& \\(and\\)"):
        assign("x", REGISTERED and value > 140)
    with pytest.raises(QueryError, match="maximum_of"):
        assign("x", max(value, 140))
    with pytest.raises(QueryError, match="is_in"):
        assign("x", value in [140, 150])
    # round() and abs() are the query's own
    assert round(value, 1).key == value.round(1).key
    assign("magnitude", abs(value - 140))
    with pytest.raises(QueryError, match="call it: add the brackets"):
        assign("x", events.exists_for_patient)


def test_type_mistakes_name_the_variable():
    with pytest.raises(QueryError, match=r"variable 'x': .*cannot subtract a date and an int"):
        assign("x", index_date - 365)
    with pytest.raises(QueryError, match=r"digits must be a whole number"):
        assign("x", events.mean_for_patient().round(1.5))
    with pytest.raises(QueryError, match=r"the label must be text"):
        assign("x", events.mean_for_patient().fill_unknown(0))
    with pytest.raises(QueryError, match=r"age_band_on\(bands=\(18, 0\)\): .*strictly increasing"):
        patients.age_band_on(index_date, bands=(18, 0))


# -- dataset names --------------------------------------------------------------------------


def test_population_is_not_a_variable():
    """``ds.population = rule`` added a column called population and left every patient
    of the store in the dataset."""
    ds = Dataset()
    with pytest.raises(QueryError, match=r"ds.define_population\(rule\)"):
        ds.population = REGISTERED
    assert ds.population is None and ds.variables == {}


def test_a_second_population_rule_is_refused():
    """A second ``define_population`` replaced the first rule without a word: written as
    two steps (registered, then adults) the dataset kept only the second."""
    ds = Dataset()
    ds.define_population(REGISTERED)
    with pytest.raises(QueryError, match=r"population rule: define_population was called twice"):
        ds.define_population(patients.age_on(index_date) >= 18)
    assert ds.population is REGISTERED


@pytest.mark.parametrize("name", ["variables", "event_tables", "add", "define_population"])
def test_a_name_of_the_datasets_own_is_refused(name):
    with pytest.raises(QueryError, match=f"variable '{name}': a name of the Dataset's own"):
        setattr(Dataset(), name, REGISTERED)


def test_a_series_is_not_the_datasets_index_date():
    """``ds.index_date = ...`` sets the date the dataset runs at, so a per-patient value
    there was a failure deep in the compiler when the dataset ran."""
    ds = Dataset()
    with pytest.raises(QueryError, match="index_date: the dataset's index date is a date"):
        ds.index_date = patients.date_of_birth
    ds.index_date = "2025-03-31"
    from pophealth.query.dataset import resolve_index_date

    assert resolve_index_date(ds, None) == D(2025, 3, 31)
    with pytest.raises(QueryError, match="index date 3 is not a date"):
        resolve_index_date(Dataset(index_date=3), None)


def test_names_that_are_not_column_names():
    with pytest.raises(QueryError, match="variable 'patient_id': the output has a column"):
        assign("patient_id", REGISTERED)
    with pytest.raises(QueryError, match="variable 3: not a usable column name"):
        assign(3, REGISTERED)
    with pytest.raises(QueryError, match="event table 'a/b': not a usable name"):
        Dataset().add_event_table("a/b", events)


# -- measures -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        ({"group_by": [patients.sex]}, "group_by needs names for its breakdowns"),
        ({"group_by": {"code": events.code}}, "one value per row of events"),
        ({"group_by": {"value": patients.sex}}, "'value' cannot name a breakdown"),
        ({"group_by": {"disclosure_note": patients.sex}}, "cannot name a breakdown"),
        ({"group_by": {"numerator_patients": patients.sex}}, "cannot name a breakdown"),
        ({"numerator": events.mean_for_patient()}, "the numerator must be True/False"),
        ({"intervals": []}, "needs intervals"),
        ({"intervals": [(D(2025, 2, 28), D(2025, 2, 1))]}, "starts on 2025-02-28, after it"),
        ({"intervals": [D(2025, 1, 1), D(2025, 2, 1)]}, "interval 1 is datetime.date"),
        ({"intervals": [("2025-01-01", "2025-02-30")]}, "'2025-02-30' is not a date"),
        ({"intervals": monthly("2025-01-01", 1) * 2}, "is listed twice"),
    ],
)
def test_measure_mistakes_name_the_measure(kw, words):
    with pytest.raises(QueryError, match="measure 'bp") as err:
        measure(**kw)
    assert words in str(err.value)


def test_interval_helpers_refuse_with_a_query_error():
    for build, words in [
        (lambda: monthly("2025-01-15", 3), "must start on the 1st of a month"),
        (lambda: monthly("2025-01-01", 0), "at least one"),
        (lambda: weekly("2025-01-06", 2.5), "a whole number of intervals"),
        (lambda: monthly("2025-1-1", 2), "'2025-1-1' is not a date"),
        (lambda: yearly("2024-02-29", 1), "most years have no 29 February"),
    ]:
        with pytest.raises(QueryError, match=words):
            build()


def test_unordered_intervals_are_fine():
    measure(intervals=[(D(2025, 2, 1), D(2025, 2, 28)), (D(2025, 1, 1), D(2025, 1, 31))])


# -- the same mistakes in a definition file: the file and its line --------------------------

MISTAKES = {
    "clinical_list_on_meds": (
        'dataset.meds = medications.matching(codelist("asthma_diagnosis")).exists_for_patient()',
        "variable 'meds': medications.matching(asthma_diagnosis): code list 'asthma_diagnosis'",
    ),
    "population_as_variable": (
        "dataset.population = registrations.registered_on(index_date)",
        "variable 'population': the name of the dataset's population rule",
    ),
    "no_value_column": (
        "dataset.low = medications.value",
        "medications has no column 'value'",
    ),
    "python_if": (
        "if patients.sex == 'female':\n    dataset.f = patients.sex",
        "is a query, not a Python True/False",
    ),
    "none_compare": (
        "dataset.dead = patients.date_of_death != None",
        "variable 'dead': (patients.date_of_death != None): a comparison with None",
    ),
    "wrong_value": (
        "dataset.women = patients.sex == 'F'",
        "variable 'women': (patients.sex == 'F'): 'F' is not a value patients.sex takes",
    ),
    "mixed_tables": (
        "dataset.x = events.where(events.value > medications.quantity).count_for_patient()",
        "variable 'x': ",
    ),
    "bad_intervals": (
        "m = Measures(intervals=[('2025-01-31', '2025-01-01')])\n"
        "m.define_measure('bp', numerator=patients.sex == 'male', denominator=patients.sex == "
        "'male')",
        "measure 'bp': interval 1 starts on 2025-01-31, after it ends on 2025-01-01",
    ),
}

HEADER = """\
from pophealth.query import (Dataset, Measures, codelist, events, index_date, medications,
                             patients, registrations)

dataset = Dataset()
"""


@pytest.mark.parametrize("case", sorted(MISTAKES))
def test_a_definition_file_mistake_names_the_file_and_line(tmp_path, case):
    body, words = MISTAKES[case]
    path = tmp_path / f"{case}.py"
    path.write_text(HEADER + textwrap.dedent(body) + "\n")
    line = HEADER.count("\n") + 1 + body.count("\n") * (case == "bad_intervals")
    with pytest.raises(DefinitionError) as err:
        load_definitions(path)
    said = str(err.value)
    assert said.startswith(f"{Path(path).resolve()}, line {line}: "), said
    assert words in said, said
    assert "Traceback" not in said
