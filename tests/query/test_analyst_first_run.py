"""A new analyst's first definition files: the mistakes that give an empty result, or
every patient in the store, are pointed out on the console, not left to be guessed."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from pophealth.cli import app
from pophealth.synth import write_synthetic_store

runner = CliRunner()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_synthetic_store(
        tmp_path_factory.mktemp("first") / "store", patients=300, seed=7, progress=None
    )


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_line(text: str) -> str:
    return " ".join(text.split())


NOBODY = """\
from pophealth.query import Measures, index_date, monthly, patients, registrations
pop = registrations.registered_on(index_date) & (patients.age_on(index_date) > 130)
everybody = registrations.registered_on(index_date)
measures = Measures(intervals=monthly("2025-01-01", 3))
measures.define_measure("ancient", numerator=patients.sex == "female", denominator=pop)
measures.define_measure("women", numerator=patients.sex == "female", denominator=everybody)
"""


@pytest.mark.parametrize("disclosure", ["--disclosure", "--no-disclosure"])
def test_a_measure_whose_denominator_holds_nobody_is_named(tmp_path, store, disclosure):
    path = tmp_path / "nobody.py"
    path.write_text(NOBODY)
    out = tmp_path / "m.csv"
    result = invoke("measures", path, "--store", store.path, "--output", out, disclosure)
    assert result.exit_code == 0, result.output
    said = one_line(result.output)
    assert "measure 'ancient' has no row: its denominator holds nobody" in said
    assert "measure 'women'" not in said  # it has rows
    assert out.read_text().count("\n") == 1 + 3  # the header, and 'women' in 3 months


NO_POPULATION = """\
from pophealth.query import Dataset, index_date, patients
dataset = Dataset()
dataset.age = patients.age_on(index_date)
"""


def test_a_dataset_without_a_population_rule_says_it_holds_every_patient(tmp_path, store):
    path = tmp_path / "everyone.py"
    path.write_text(NO_POPULATION)
    out = tmp_path / "d.csv"
    result = invoke("dataset", path, "--store", store.path, "--output", out)
    assert result.exit_code == 0, result.output
    said = one_line(result.output)
    assert "no population rule" in said
    assert "define_population" in said
    assert out.read_text().count("\n") == 1 + 300  # every patient, as before


def test_a_dataset_with_a_population_rule_says_nothing_of_it(tmp_path, store):
    path = tmp_path / "registered.py"
    path.write_text(
        NO_POPULATION + "from pophealth.query import registrations\n"
        "dataset.define_population(registrations.registered_on(index_date))\n"
    )
    result = invoke("dataset", path, "--store", store.path, "--output", tmp_path / "d.csv")
    assert result.exit_code == 0, result.output
    assert "population rule" not in one_line(result.output)


@pytest.mark.parametrize("text", ["2026-02-30", "31/03/2026", "20260331"])
def test_a_datasets_own_index_date_that_is_not_a_date_is_named_with_its_line(tmp_path, text):
    from pophealth.query.definitions import DefinitionError, load_definitions

    path = tmp_path / "dated.py"
    path.write_text(
        "from pophealth.query import Dataset, index_date, registrations\n"
        f'dataset = Dataset(index_date="{text}")\n'
        "dataset.define_population(registrations.registered_on(index_date))\n"
    )
    with pytest.raises(DefinitionError) as err:
        load_definitions(path)
    said = one_line(str(err.value))
    assert (
        f"{path.resolve()}, line 2: index_date: {text!r} is not a date (expected YYYY-MM-DD)"
        in said
    )


def test_a_datasets_own_index_date_as_text_or_date_still_runs(tmp_path, store):
    import datetime as dt

    from pophealth.query import Dataset, index_date, registrations, run_dataset

    for value in ("2025-06-30", dt.date(2025, 6, 30)):
        ds = Dataset(index_date=value)
        ds.define_population(registrations.registered_on(index_date))
        ds.on = index_date
        table = run_dataset(store, ds)
        assert set(table["on"]) == {pd.Timestamp("2025-06-30")}


def _refused(series) -> str:
    from pophealth.query import Dataset, QueryError

    with pytest.raises(QueryError) as err:
        Dataset().add("x", series)
    return one_line(str(err.value))


def test_a_dotted_icd10_or_opcs4_code_is_refused_where_codes_are_stored_without_it():
    """Ingest stores ICD-10 and OPCS-4 without the dot (J459, R171): a code written with it
    would match no row, silently."""
    from pophealth.query import admissions, operations

    said = _refused(admissions.where(admissions.primary_diagnosis == "J45.9").exists_for_patient())
    assert "variable 'x'" in said
    assert "'J45.9'" in said and "'J459'" in said and "without the dot" in said
    said = _refused(
        admissions.where(admissions.primary_diagnosis.is_in(["J45.9", "J46X"])).exists_for_patient()
    )
    assert "'J45.9'" in said and "'J459'" in said
    said = _refused(operations.where(operations.code != "R17.1").exists_for_patient())
    assert "'R171'" in said
    said = _refused(admissions.last_for_patient().primary_diagnosis == "I10.X")
    assert "'I10X'" in said


def test_codes_as_stored_and_dotted_read_codes_are_still_taken():
    from pophealth.query import Dataset, admissions, events

    ds = Dataset()
    ds.a = admissions.where(admissions.primary_diagnosis == "J459").exists_for_patient()
    ds.b = admissions.where(
        admissions.primary_diagnosis.is_in(["J459", "J46X"])
    ).count_for_patient()
    ds.c = events.where(events.code == "H33..").exists_for_patient()  # Read v2 has dots
    ds.d = events.where(events.code.is_in(["H33..", "XaIKE"])).exists_for_patient()
    assert list(ds.variables) == ["a", "b", "c", "d"]


def test_a_code_list_compared_with_a_column_points_to_matching_and_is_in():
    from pophealth.query import codelist, events

    said = _refused(events.where(events.code == codelist("asthma_diagnosis")).exists_for_patient())
    assert "asthma_diagnosis" in said
    assert ".matching(" in said and ".is_in(" in said


@pytest.mark.parametrize(
    ("build", "suggested"),
    [
        (lambda q: q.events.matching(q.codelist("hba1c")).last_for_patient().valeu, "'value'"),
        (lambda q: q.events.valeu, "'value'"),
        (lambda q: q.events.exist_for_patient(), "'exists_for_patient'"),
        (lambda q: q.patients.ethnicity, "'ethnicity_5'"),
        (lambda q: q.patients.age_at(q.index_date), "'age_on'"),
        (lambda q: q.addresses.area_on(q.index_date).imd_quntile, "'imd_quintile'"),
        (lambda q: q.registrations.practice_on(q.index_date).pcn, "'pcn_id'"),
        # a table dated by another name: its dates, not a close spelling ('after')
        (
            lambda q: q.admissions.first_for_patient().date,
            "'admission_date' or 'discharge_date'",
        ),
        (
            lambda q: q.emergency_attendances.date,
            "'arrival_datetime' or 'departure_datetime' or 'first_analgesia_datetime'",
        ),
    ],
)
def test_a_misspelt_column_or_method_gets_a_suggestion(build, suggested):
    import pophealth.query as q

    with pytest.raises(q.ColumnError) as err:
        build(q)
    assert f"did you mean {suggested}?" in one_line(str(err.value))


def test_a_name_like_nothing_gets_no_suggestion():
    from pophealth.query import ColumnError, events

    with pytest.raises(ColumnError) as err:
        events.zzz  # noqa: B018
    assert "did you mean" not in str(err.value)
    assert not hasattr(events, "zzz")  # still an AttributeError
