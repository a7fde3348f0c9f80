"""Spec: row datasets — one output row per operation, referral or attendance, each with its
own look-ahead into other tables (PROGRAMMES.md section 4: PreCiSSIon's wound
questionnaire after EACH caesarean; the sickle-cell ED and FREED referral shapes too).

Small tables in the test, the rule, the expected rows written out by hand; every test that
runs a query runs on DuckDB and Spark. A row dataset's output: ``patient_id``,
``row_number`` (the row's place among the patient's rows, from 1, by date, ties broken by
every other column), the row's own columns, then the variables.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pophealth.codelists import Codelist
from pophealth.query import (
    Dataset,
    Measures,
    QueryError,
    RowDataset,
    addresses,
    admissions,
    days,
    emergency_attendances,
    events,
    index_date,
    medications,
    minutes_between,
    monthly,
    months,
    operations,
    patients,
    registrations,
    run_dataset,
    weeks,
)
from pophealth.query import questionnaire_responses as qr
from tests.spec.conftest import HAVE_SPARK, INDEX, _clean, make_store
from tests.spec.test_differential import IN_LIST, SABA, SBP, _same
from tests.spec.test_differential import tables as random_tables

D, T = dt.date, dt.datetime
CAESAREAN = Codelist.of("opcs4", ["R171", "R172", "R181", "R182"], name="caesarean")
WOUND_INFECTION = Codelist.of("icd10", ["T814", "O860"], name="wound_infection")
WOUND = "urn:example:caesarean-wound-30d"


def _op(pid: str, op_id: str, start: dt.datetime, urgency: str = "elective", code: str = "R171"):
    return {
        "patient_id": pid,
        "operation_id": op_id,
        "start_datetime": start,
        "code": code,
        "urgency": urgency,
    }


def _answer(pid: str, authored: dt.datetime, item: str = "wound_opened", code: str = "N"):
    return {
        "patient_id": pid,
        "response_id": f"r{pid}{authored:%j}",
        "questionnaire": WOUND,
        "authored": authored,
        "link_id": item,
        "answer_code": code,
    }


def rows_of(engine: str, tmp_path: Path, tables: dict, ds: RowDataset) -> list[dict]:
    """The row dataset's output on a store of ``tables``, as a list of dicts in output order
    (a date-and-time as its date, missing as None, as the spec helpers give them)."""
    store = make_store(tmp_path, tables)
    table = run_dataset(store, ds, engine=engine, index_date=INDEX, output="arrow")
    return [{k: _clean(v) for k, v in row.items()} for row in table.to_pylist()]


def _caesarean_rows() -> tuple[RowDataset, dict]:
    cs = operations.matching(CAESAREAN).in_last(months=12)
    per_op = RowDataset(cs, columns=["operation_id", "start_datetime", "urgency"])
    op = per_op.row
    later = qr.where(qr.questionnaire == WOUND).on_or_after(op.start_datetime)
    later = later.on_or_before(op.start_datetime + days(30))
    per_op.responded = later.exists_for_patient()
    per_op.answers = later.count_for_patient()
    per_op.ssi = later.where(
        (qr.link_id == "wound_opened") & (qr.answer_code == "Y")
    ).exists_for_patient()
    per_op.days_to_response = later.first_for_patient().authored - op.start_datetime
    infected = admissions.matching(WOUND_INFECTION).after(op.start_datetime)
    per_op.readmitted = infected.on_or_before(op.start_datetime + days(30)).exists_for_patient()
    per_op.age = patients.age_on(op.start_datetime)
    per_op.sex = patients.sex  # a patient value: the same on each of her rows
    per_op.caesareans = cs.count_for_patient()  # reads no row: the patient's, on each row
    return per_op, {
        "patients": [
            {"patient_id": "1", "date_of_birth": D(1990, 2, 1), "sex": "female"},
            {"patient_id": "2", "date_of_birth": D(1995, 6, 1), "sex": "female"},
        ],
        "operations": [
            _op("1", "op-a", T(2024, 6, 1, 9)),
            _op("1", "op-b", T(2025, 2, 10, 23, 30), "emergency", "R182"),
            _op("1", "op-old", T(2023, 1, 1, 9)),  # before the 12 months: no row
            _op("2", "op-c", T(2025, 1, 5, 10)),  # nothing after it: kept, False
        ],
        "questionnaire_responses": [
            _answer("1", T(2024, 6, 20, 9), "wound_opened", "Y"),  # day 19 after op-a
            # day 2 after op-b — and day 255 after op-a: op-b's only
            _answer("1", T(2025, 2, 12, 8), "wound_opened", "N"),
            _answer("1", T(2025, 2, 12, 8), "discharge", "N"),
            _answer("1", T(2024, 8, 20, 9), "wound_opened", "Y"),  # day 80: too late for op-a
        ],
        "admissions": [
            # day 2 after op-b (and > 30 days after op-a)
            {"patient_id": "1", "admission_date": D(2025, 2, 12), "primary_diagnosis": "T814"},
            # op-c's own day: "after" the operation is the next day on
            {"patient_id": "2", "admission_date": D(2025, 1, 5), "primary_diagnosis": "O860"},
        ],
    }


def test_each_caesarean_has_its_own_follow_up(engine, tmp_path):
    """Two caesareans of one woman: each row reads the responses and admissions of its own
    30 days; an operation with nothing after it keeps its row (False, 0, missing); the
    woman's age is taken on each operation's day, her sex and her count of caesareans are
    on both rows."""
    per_op, tables = _caesarean_rows()
    out = rows_of(engine, tmp_path, tables, per_op)
    assert out == [
        {
            "patient_id": "1",
            "row_number": 1,
            "operation_id": "op-a",
            "start_datetime": D(2024, 6, 1),
            "urgency": "elective",
            "responded": True,
            "answers": 1,
            "ssi": True,
            "days_to_response": 19,
            "readmitted": False,
            "age": 34,  # born 1 Feb 1990
            "sex": "female",
            "caesareans": 2,
        },
        {
            "patient_id": "1",
            "row_number": 2,
            "operation_id": "op-b",
            "start_datetime": D(2025, 2, 10),
            "urgency": "emergency",
            "responded": True,
            "answers": 2,
            "ssi": False,
            "days_to_response": 2,
            "readmitted": True,
            "age": 35,  # her birthday fell between the operations
            "sex": "female",
            "caesareans": 2,
        },
        {
            "patient_id": "2",
            "row_number": 1,
            "operation_id": "op-c",
            "start_datetime": D(2025, 1, 5),
            "urgency": "elective",
            "responded": False,
            "answers": 0,
            "ssi": False,
            "days_to_response": None,
            "readmitted": False,  # admitted on the day, not after it
            "age": 29,
            "sex": "female",
            "caesareans": 1,
        },
    ]


def test_a_response_in_two_windows_counts_for_both_rows(engine, tmp_path):
    """Operations 10 days apart: a response 12 days after the first is 2 days after the
    second, and counts for both; one 5 days after the first, for the first only. The
    first response per row is that row's own."""
    cs = operations.matching(CAESAREAN)
    per_op = RowDataset(cs)  # default columns: operation_id and start_datetime
    op = per_op.row
    later = qr.on_or_after(op.start_datetime).on_or_before(op.start_datetime + days(30))
    per_op.responses = later.count_for_patient()
    per_op.first_response = later.first_for_patient().authored
    per_op.previous_operation = cs.where(cs.start_datetime < op.start_datetime).count_for_patient()
    tables = {
        "operations": [_op("1", "x", T(2025, 1, 1, 9)), _op("1", "y", T(2025, 1, 11, 9))],
        "questionnaire_responses": [_answer("1", T(2025, 1, 13, 9)), _answer("1", T(2025, 1, 6))],
    }
    out = rows_of(engine, tmp_path, tables, per_op)
    assert out == [
        {
            "patient_id": "1",
            "row_number": 1,
            "operation_id": "x",
            "start_datetime": D(2025, 1, 1),
            "responses": 2,
            "first_response": D(2025, 1, 6),
            "previous_operation": 0,
        },
        {
            "patient_id": "1",
            "row_number": 2,
            "operation_id": "y",
            "start_datetime": D(2025, 1, 11),
            "responses": 1,
            "first_response": D(2025, 1, 13),
            "previous_operation": 1,
        },
    ]


def test_ties_in_row_order_and_a_population(engine, tmp_path):
    """Rows are numbered per patient by date, then — two attendances at the same minute —
    by every other column in schema order (departure first), the same on each engine. The
    population rule may read the row: attendances of patients registered on their day."""
    att = emergency_attendances
    per_att = RowDataset(att.in_last(months=12), columns=["arrival_datetime", "diagnosis"])
    a = per_att.row
    per_att.define_population(registrations.registered_on(a.arrival_datetime))
    per_att.analgesia_minutes = minutes_between(a.arrival_datetime, a.first_analgesia_datetime)
    obs = events.where(
        (events.datetime >= a.arrival_datetime) & (events.datetime <= a.departure_datetime)
    )
    per_att.observations = obs.count_for_patient()
    arrive = T(2025, 3, 1, 10, 0)

    def attendance(pid, arrival, departure, diagnosis, analgesia=None):
        return {
            "patient_id": pid,
            "arrival_datetime": arrival,
            "departure_datetime": departure,
            "diagnosis_system": "snomedct",
            "diagnosis": diagnosis,
            "first_analgesia_datetime": analgesia,
        }

    tables = {
        "emergency_attendances": [
            attendance("1", arrive, T(2025, 3, 1, 14), "b", T(2025, 3, 1, 10, 20)),
            attendance("1", arrive, T(2025, 3, 1, 12), "a", T(2025, 3, 1, 10, 45)),
            attendance("1", T(2025, 2, 1, 8), T(2025, 2, 1, 9), "c"),
            attendance("2", arrive, T(2025, 3, 1, 11), "a"),  # not registered that day
        ],
        "registrations": [
            {"patient_id": "1", "practice_id": "P1", "start_date": D(2020, 1, 1)},
            {"patient_id": "2", "practice_id": "P1", "start_date": D(2025, 3, 2)},
        ],
        "events": [
            {"patient_id": "1", "date": D(2025, 3, 1), "datetime": T(2025, 3, 1, 13), "code": "x"},
            {"patient_id": "1", "date": D(2025, 3, 1), "datetime": T(2025, 3, 1, 11), "code": "x"},
        ],
    }
    out = rows_of(engine, tmp_path, tables, per_att)
    assert [(r["row_number"], r["diagnosis"]) for r in out] == [(1, "c"), (2, "a"), (3, "b")]
    assert {r["patient_id"] for r in out} == {"1"}
    assert [r["analgesia_minutes"] for r in out] == [None, 45.0, 20.0]
    assert [r["observations"] for r in out] == [0, 1, 2]  # 12:00 departure: 11:00 only


def test_referrals_assessed_within_two_weeks(engine, tmp_path):
    """FREED: for each referral, an assessment within 2 weeks of it; a referral ordered by
    ``sort_by`` numbers its rows in that order."""
    referral = Codelist.of("snomedct", ["306206005"], name="freed_referral")
    assessed = Codelist.of("snomedct", ["710915002"], name="freed_assessment")
    refs = events.matching(referral).sort_by(events.date)
    per_ref = RowDataset(refs, columns=["date"])
    ref = per_ref.row
    seen = events.matching(assessed).on_or_after(ref.date).on_or_before(ref.date + weeks(2))
    per_ref.assessed_in_2_weeks = seen.exists_for_patient()
    per_ref.days_to_assessment = seen.first_for_patient().date - ref.date

    def ev(pid, date, code):
        return {"patient_id": pid, "date": date, "code": code}

    tables = {
        "events": [
            ev("1", D(2025, 1, 1), "306206005"),
            ev("1", D(2025, 1, 20), "710915002"),  # day 19: too late for the first
            ev("1", D(2025, 1, 15), "306206005"),
            ev("2", D(2025, 2, 1), "306206005"),
        ]
    }
    out = rows_of(engine, tmp_path, tables, per_ref)
    assert [(r["patient_id"], r["row_number"], r["date"]) for r in out] == [
        ("1", 1, D(2025, 1, 1)),
        ("1", 2, D(2025, 1, 15)),
        ("2", 1, D(2025, 2, 1)),
    ]
    assert [r["assessed_in_2_weeks"] for r in out] == [False, True, False]
    assert [r["days_to_assessment"] for r in out] == [None, 5, None]


# -- mistakes, refused where they are written, naming the variable --------------------------


def test_refusals_name_the_variable():
    cs = operations.matching(CAESAREAN)
    per_op = RowDataset(cs)
    op = per_op.row
    later = qr.on_or_after(op.start_datetime)

    # the row of one row dataset in another
    other = RowDataset(operations)
    with pytest.raises(QueryError, match=r"variable 'x': .*current row of another row dataset"):
        other.x = later.exists_for_patient()
    with pytest.raises(QueryError, match=r"RowDataset\(.*chosen by the current row of another"):
        RowDataset(qr.on_or_after(op.start_datetime))

    # a row reference where each patient has one row
    with pytest.raises(QueryError, match=r"variable 'x': .*reads the current row of a row"):
        Dataset().x = later.exists_for_patient()
    with pytest.raises(QueryError, match=r"population rule 'population': .*current row"):
        Dataset().define_population(patients.age_on(op.start_datetime) > 18)
    with pytest.raises(QueryError, match=r"measure 'm.numerator': .*current row"):
        Measures().define_measure(
            "m",
            numerator=later.exists_for_patient(),
            denominator=True,
            intervals=monthly(D(2025, 1, 1), 1),
        )
    with pytest.raises(QueryError, match=r"event table 'e': .*current row"):
        Dataset().add_event_table("e", later)

    # rows of another table compared row by row, with no per-patient aggregate
    with pytest.raises(
        QueryError,
        match=r"variable 'x': .*one value per row of questionnaire_responses, not one per row "
        r"of operations.*exists_for_patient",
    ):
        per_op.x = qr.authored > op.start_datetime
    with pytest.raises(QueryError, match=r"variable 'x': .*many rows per patient; .*per row"):
        per_op.x = later
    # the row frame's own column, not the current row's
    with pytest.raises(QueryError, match=r"variable 'x': .*not of the current one.*row\.urgency"):
        per_op.x = cs.urgency
    with pytest.raises(QueryError, match=r"variable 'x': the current row of .* take one of"):
        per_op.x = op
    with pytest.raises(QueryError, match=r"operations has no column 'start'.*start_datetime"):
        op.start  # noqa: B018
    # a previous/next row over rows that differ from row to row
    gap = later.days_since_previous()
    with pytest.raises(QueryError, match=r"variable 'x': .*taken over rows chosen by the current"):
        per_op.x = later.where(gap < 5).exists_for_patient()

    # the output's own names, and the row dataset's
    for name in ("row_number", "operation_id", "start_datetime", "patient_id", "row", "columns"):
        with pytest.raises(QueryError, match=f"variable '{name}'"):
            per_op.add(name, op.urgency)
    with pytest.raises(QueryError, match=r"event table 'e': a row dataset writes one table"):
        per_op.add_event_table("e", qr)

    # the rows themselves
    with pytest.raises(QueryError, match=r"RowDataset\(True\): needs rows of a table"):
        RowDataset(True)
    with pytest.raises(QueryError, match=r"RowDataset\(operations\): operations has no column"):
        RowDataset(operations, columns=["start"])
    with pytest.raises(QueryError, match=r"RowDataset\(operations.matching\(\.\.\.\)\): "):
        RowDataset(operations.matching(["R171"]))  # codes without their system


def test_no_measures_with_a_row_dataset(tmp_path):
    per_op = RowDataset(operations)
    with pytest.raises(QueryError, match="measures=...: .*not a row dataset"):
        run_dataset(make_store(tmp_path, {}), per_op, index_date=INDEX, measures=Measures())


def test_plain_values_of_the_row_and_the_index_date(engine, tmp_path):
    """The row's columns in arithmetic and comparisons, the index date beside them."""
    per_op = RowDataset(operations.on_or_before(index_date), columns=[])
    op = per_op.row
    per_op.days_before_index = op.start_datetime.date.days_until(index_date)
    per_op.emergency = op.urgency == "emergency"
    per_op.late_antibiotic = minutes_between(op.start_datetime, op.antibiotic_datetime) > 0
    tables = {
        "operations": [
            {
                **_op("1", "a", T(2025, 3, 1, 9), "emergency"),
                "antibiotic_datetime": T(2025, 3, 1, 9, 5),
            },
            _op("1", "b", T(2025, 4, 1, 9)),  # after the index date: no row
        ]
    }
    assert rows_of(engine, tmp_path, tables, per_op) == [
        {
            "patient_id": "1",
            "row_number": 1,
            "days_before_index": 30,
            "emergency": True,
            "late_antibiotic": True,
        }
    ]


def test_caesareans_with_a_wound_questionnaire_after_each(engine, tmp_path):
    """tests/spec/test_roadmap_fit16.py's caesareans with a wound questionnaire after them,
    per operation: there the woman's first caesarean in the 12 months stood for her, so a
    second one's questionnaire was lost; here each caesarean is a row with its own 42 days.
    Woman 1's second caesarean has its own answers (no SSI) beside the first's (an SSI)."""
    tables = {
        "operations": [
            _op("1", "op1", T(2025, 1, 10, 9)),
            _op("1", "op1b", T(2025, 2, 20, 4), "emergency", "R182"),  # her second
            _op("2", "op2", T(2025, 2, 1, 23, 30), "emergency", "R182"),
            _op("3", "op3", T(2025, 3, 1, 10)),
            _op("4", "op4", T(2024, 1, 1, 10)),  # before the 12 months
        ],
        "questionnaire_responses": [
            # day 33: a discharging wound (and another questionnaire, not counted)
            _answer("1", T(2025, 2, 12, 19), "wound_discharge", "Y"),
            _answer("1", T(2025, 2, 12, 19), "fever", "N"),
            {**_answer("1", T(2025, 2, 1, 9), "wound_discharge", "Y"), "questionnaire": "other"},
            _answer("1", T(2025, 3, 10, 8), "wound_opened", "N"),  # day 18 after her second
            _answer("2", T(2025, 3, 5, 8), "wound_discharge", "N"),
            _answer("2", T(2025, 4, 2, 8), "wound_opened", "Y"),  # day 60: too late
            _answer("4", T(2025, 1, 1, 8), "wound_opened", "Y"),
        ],
    }
    caesarean = operations.matching(CAESAREAN).in_last(months=12)
    per_op = RowDataset(caesarean, columns=["operation_id"])
    op = per_op.row
    answered = qr.where(qr.questionnaire == WOUND).on_or_after(op.start_datetime)
    answered = answered.on_or_before(op.start_datetime + days(42))

    def yes(item: str):
        return answered.where((qr.link_id == item) & (qr.answer_code == "Y")).exists_for_patient()

    per_op.emergency = op.urgency == "emergency"
    per_op.responded = answered.exists_for_patient()
    per_op.ssi = yes("wound_discharge") | yes("wound_opened")
    out = rows_of(engine, tmp_path, tables, per_op)
    assert [(r["patient_id"], r["row_number"], r["operation_id"]) for r in out] == [
        ("1", 1, "op1"),
        ("1", 2, "op1b"),
        ("2", 1, "op2"),
        ("3", 1, "op3"),
    ]
    assert [(r["emergency"], r["responded"], r["ssi"]) for r in out] == [
        (False, True, True),
        (True, True, False),
        (True, True, False),
        (False, False, False),
    ]


DEFINITION = """
from pophealth.codelists import Codelist
from pophealth.query import RowDataset, days, operations, patients
from pophealth.query import questionnaire_responses as qr

caesarean = Codelist.of("opcs4", ["R171", "R182"], name="caesarean")
dataset = RowDataset(operations.matching(caesarean).in_last(months=12))
op = dataset.row
later = qr.on_or_after(op.start_datetime).on_or_before(op.start_datetime + days(30))
dataset.responded = later.exists_for_patient()
dataset.age = patients.age_on(op.start_datetime)
"""


def test_a_definition_file_makes_a_row_dataset(tmp_path):
    """``pophealth dataset FILE`` runs a row dataset as it runs a dataset: the file's
    ``dataset`` (or its only Dataset or RowDataset), its rows written to --output."""
    from typer.testing import CliRunner

    from pophealth.cli import app

    store = make_store(
        tmp_path,
        {
            "patients": [{"patient_id": "1", "date_of_birth": D(1990, 2, 1)}],
            "operations": [_op("1", "a", T(2024, 6, 1, 9)), _op("1", "b", T(2025, 2, 10, 9))],
            "questionnaire_responses": [_answer("1", T(2025, 2, 12, 8))],
        },
    )
    path = tmp_path / "per_caesarean.py"
    path.write_text(DEFINITION)
    output = tmp_path / "out" / "per_caesarean.csv"
    args = ["dataset", path, "--store", store.path, "--output", output, "--index-date", INDEX]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    assert "1-7 rows, 6 columns" in result.output  # counts as the CLI says them
    assert "no population rule" not in result.output
    assert output.read_text().splitlines() == [
        '"patient_id","row_number","operation_id","start_datetime","responded","age"',
        '"1",1,"a",2024-06-01 09:00:00.000000,false,34',
        '"1",2,"b",2025-02-10 09:00:00.000000,true,35',
    ]  # as the dataset writer writes a dataset's


# -- differential: each row's values as a dataset on that row's date gives them -------------

ROW_EXAMPLES = int(os.environ.get("POPHEALTH_DIFFERENTIAL_EXAMPLES", "4"))


def _on(d: Any, kind: int, k: int, rule: str) -> Any:
    """A variable of the date ``d``: the current row's date in a row dataset, the index date
    in a dataset run on that date — the same value for that row."""
    bp = events.matching(SBP)
    if kind == 0:
        return bp.on_or_before(d).exists_for_patient()
    if kind == 1:
        return bp.in_last(months=k, of=d).count_for_patient()
    if kind == 2:
        return bp.in_next(days=30 * k, of=d).count_for_patient()  # a look-ahead
    if kind == 3:
        return bp.on_or_after(d).first_for_patient().value
    if kind == 4:
        return bp.on_or_before(d).last_for_patient().date.days_until(d)
    if kind == 5:
        return bp.on_or_before(d).last_day_for_patient(rule=rule).value
    if kind == 6:
        return bp.on_or_before(d).maximum_for_patient() - bp.minimum_for_patient()
    if kind == 7:
        return patients.age_on(d)
    if kind == 8:
        return patients.is_alive_on(d)
    if kind == 9:
        return registrations.practice_on(d).practice_id.fill_unknown()
    if kind == 10:
        return addresses.area_on(d).group("imd_quintile")
    if kind == 11:
        saba = medications.matching(SABA).in_last(months=k, of=d)
        return saba.sum_for_patient(saba.quantity)
    if kind == 12:
        old = bp.where(events.date > patients.date_of_birth + months(600))
        return old.on_or_before(d).count_days_for_patient()
    close = bp.where(bp.days_since_previous() <= 30 * k)  # a previous row, then the window
    return close.on_or_before(d).count_for_patient()


@settings(
    max_examples=ROW_EXAMPLES,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    data=random_tables(),
    picks=st.lists(
        st.tuples(st.integers(0, 13), st.integers(1, 24), st.sampled_from(["min", "max", "mean"])),
        min_size=3,
        max_size=6,
    ),
)
def test_each_row_as_a_dataset_on_its_date(data, picks):
    """Random small tables and variables of a date: a row dataset over blood-pressure rows,
    the date being each row's, gives on each row what a plain dataset run on that row's date
    gives its patient (on DuckDB; the row dataset on Spark too, when installed)."""
    per_row = RowDataset(events.matching(SBP), columns=["date"])
    for i, (kind, k, rule) in enumerate(picks):
        per_row.add(f"v{i}", _on(per_row.row.date, kind, k, rule))
    with tempfile.TemporaryDirectory() as tmp:
        store = make_store(Path(tmp), data)
        got = run_dataset(store, per_row, engine="duckdb", index_date=INDEX, output="arrow")
        rows = [{k: _clean(v) for k, v in r.items()} for r in got.to_pylist()]
        if HAVE_SPARK:
            from pophealth.engines import spark_session

            spark_session().conf.set("spark.sql.shuffle.partitions", "1")
            spark = run_dataset(store, per_row, engine="spark", index_date=INDEX, output="arrow")
            spark_rows = [{k: _clean(v) for k, v in r.items()} for r in spark.to_pylist()]
            assert len(spark_rows) == len(rows)
            for a, b in zip(rows, spark_rows, strict=True):
                assert a.keys() == b.keys()
                assert all(_same(a[n], b[n]) for n in a), (a, b)
        by_date = {}
        for day in sorted({r["date"] for r in rows}):
            plain = Dataset()
            for i, (kind, k, rule) in enumerate(picks):
                plain.add(f"v{i}", _on(index_date, kind, k, rule))
            table = run_dataset(store, plain, engine="duckdb", index_date=day, output="arrow")
            by_date[day] = {r.pop("patient_id"): r for r in table.to_pylist()}
    expected_rows = sorted(
        (r["patient_id"], r["date"])
        for r in data["events"]
        if r["code"] in IN_LIST
        if r["system"] == "snomedct"
    )
    assert [(r["patient_id"], r["date"]) for r in rows] == expected_rows
    numbers: dict[str, int] = {}
    for r in rows:
        numbers[r["patient_id"]] = numbers.get(r["patient_id"], 0) + 1
        assert r["row_number"] == numbers[r["patient_id"]]
        want = by_date[r["date"]][r["patient_id"]]
        for name, value in want.items():
            assert _same(r[name], _clean(value)), (r, name, value, per_row.variables[name].desc)
