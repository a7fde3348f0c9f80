"""Spec: measures over the rows of a row dataset — per operation, referral or attendance
(``Measures.define_row_measure``): PreCiSSIon's share of caesareans with a wound
questionnaire within 30 days of THAT operation, per month, by IMD quintile.

Small tables in the test, the measure, the expected counts written out by hand; every test
that runs a query runs on DuckDB and Spark. Each row counts in the interval its own date
falls in; numerator and denominator are counts of rows.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from pophealth.codelists import Codelist
from pophealth.query import (
    Measures,
    QueryError,
    RowDataset,
    addresses,
    admissions,
    days,
    index_date,
    monthly,
    operations,
    patients,
    quarterly,
    run_measures,
)
from pophealth.query import questionnaire_responses as qr
from pophealth.query.measures import result_columns
from tests.spec.conftest import make_store

D, T = dt.date, dt.datetime
CAESAREAN = Codelist.of("opcs4", ["R171", "R182"], name="caesarean")
WOUND = "urn:example:caesarean-wound-30d"
JAN, FEB, MAR = monthly("2025-01-01", 3)


def _op(pid: str, op_id: str, start: dt.datetime, urgency: str = "elective", code: str = "R171"):
    return {
        "patient_id": pid,
        "operation_id": op_id,
        "start_datetime": start,
        "code": code,
        "urgency": urgency,
    }


def _answer(pid: str, authored: dt.datetime, questionnaire: str = WOUND):
    return {
        "patient_id": pid,
        "response_id": f"r{pid}{authored:%j%H}",
        "questionnaire": questionnaire,
        "authored": authored,
        "link_id": "wound_opened",
        "answer_code": "N",
    }


def _per_caesarean() -> tuple[RowDataset, object]:
    """The caesareans' row dataset and, per operation, a wound questionnaire answered in
    the 30 days from it."""
    per_op = RowDataset(operations.matching(CAESAREAN))
    op = per_op.row
    later = qr.where(qr.questionnaire == WOUND).on_or_after(op.start_datetime)
    responded = later.on_or_before(op.start_datetime + days(30)).exists_for_patient()
    return per_op, responded


def _counts(result: pd.DataFrame, *groups: str) -> list[tuple]:
    """(interval start, groups..., numerator, denominator) per result row, in order."""
    cols = ["interval_start", *groups, "numerator", "denominator"]
    return [tuple(r) for r in result[cols].itertuples(index=False, name=None)]


def test_each_caesarean_counts_in_its_own_month_with_its_own_response(engine, tmp_path):
    """A woman's two caesareans, in January and February, each count in their own month,
    each with the responses of their own 30 days: the one on 20 January is 15 days after
    the first and before the second. Another woman's January caesarean has no response.
    Numerator and denominator are rows; Wilson limits over the rows."""
    per_op, responded = _per_caesarean()
    m = Measures(intervals=[JAN, FEB, MAR])
    m.define_row_measure("wound_30d", rows=per_op, numerator=responded)
    store = make_store(
        tmp_path,
        {
            "operations": [
                _op("1", "a", T(2025, 1, 5, 9)),
                _op("1", "b", T(2025, 2, 10, 9)),
                _op("2", "c", T(2025, 1, 20, 9)),
                _op("2", "old", T(2024, 12, 31, 23)),  # December: in no interval
            ],
            "questionnaire_responses": [
                _answer("1", T(2025, 1, 20, 8)),
                _answer("1", T(2025, 3, 30, 8)),  # day 48 after b: too late
                _answer("2", T(2025, 1, 25), "urn:example:other"),  # another questionnaire
            ],
        },
    )
    out = run_measures(store, m, engine=engine, disclosure=False)
    assert list(out.columns) == result_columns()
    assert _counts(out) == [(D(2025, 1, 1), 1, 2), (D(2025, 2, 1), 0, 1)]  # March: no row
    assert out["value"].tolist() == [50.0, 0.0]
    assert out["statistic"].tolist() == ["percentage", "percentage"]
    assert out["method"][0] == "Wilson; rows counted as independent"
    # Wilson 95% for 1 of 2: 9.45% to 90.55%
    assert out["lower95_0cl"][0] == pytest.approx(9.4531, abs=1e-3)
    assert out["upper95_0cl"][0] == pytest.approx(90.5469, abs=1e-3)
    assert out.attrs["evaluation"] == {"wound_30d": "rows"}


def test_a_response_in_two_windows_counts_for_both_operations(engine, tmp_path):
    """Operations on 25 January and 3 February: a response on 5 February is in both
    30-day windows and counts for both, each in its month. A denominator (emergencies only)
    leaves the other rows out of both counts, even a row with a response; the row dataset's
    population (aged 16 or over on the operation's day) leaves out a girl's row."""
    per_op, responded = _per_caesarean()
    per_op.define_population(patients.age_on(per_op.row.start_datetime) >= 16)
    m = Measures(intervals=[JAN, FEB])
    m.define_row_measure("all", rows=per_op, numerator=responded)
    m.define_row_measure(
        "emergency", rows=per_op, numerator=responded, denominator=per_op.row.urgency == "emergency"
    )
    store = make_store(
        tmp_path,
        {
            "operations": [
                _op("1", "x", T(2025, 1, 25, 9), "emergency"),
                _op("1", "y", T(2025, 2, 3, 9), "emergency"),
                _op("2", "z", T(2025, 2, 1, 9), "elective"),  # responds, not an emergency
                _op("3", "g", T(2025, 2, 1, 9), "emergency"),  # aged 15: not in the rows
            ],
            "questionnaire_responses": [
                _answer("1", T(2025, 2, 5)),
                _answer("2", T(2025, 2, 2)),
                _answer("3", T(2025, 2, 2)),
            ],
            "patients": [
                {"patient_id": "1"},
                {"patient_id": "2"},
                {"patient_id": "3", "date_of_birth": D(2009, 6, 1)},
            ],
        },
    )
    out = run_measures(store, m, engine=engine, disclosure=False)
    assert _counts(out[out.measure == "all"]) == [(D(2025, 1, 1), 1, 1), (D(2025, 2, 1), 2, 2)]
    emergency = out[out.measure == "emergency"]
    assert _counts(emergency) == [(D(2025, 1, 1), 1, 1), (D(2025, 2, 1), 1, 1)]


def test_groups_by_a_row_value_and_by_the_area_on_the_operations_day(engine, tmp_path):
    """By urgency (a value of each row) and by IMD quintile on the operation's day (the
    patient's, on the row's date): woman 1 moved from a quintile-5 area to a quintile-1 one
    between her operations, so her rows fall in different groups."""
    per_op, responded = _per_caesarean()
    op = per_op.row
    m = Measures(intervals=[JAN, FEB])
    m.define_row_measure(
        "wound_30d",
        rows=per_op,
        numerator=responded,
        group_by={
            "urgency": op.urgency,
            "imd": addresses.area_on(op.start_datetime).group("imd_quintile"),
        },
    )
    store = make_store(
        tmp_path,
        {
            "operations": [
                _op("1", "a", T(2025, 1, 5, 9), "emergency"),
                _op("1", "b", T(2025, 1, 28, 9), "elective"),
                _op("2", "c", T(2025, 1, 20, 9), "elective"),
                _op("3", "d", T(2025, 2, 2, 9), "elective"),  # no address: unknown
            ],
            "questionnaire_responses": [_answer("1", T(2025, 1, 29)), _answer("3", T(2025, 2, 3))],
            "addresses": [
                {"patient_id": "1", "start_date": D(2020, 1, 1), "lsoa_code": "X01000001"},
                {"patient_id": "1", "start_date": D(2025, 1, 15), "lsoa_code": "X01000002"},
                {"patient_id": "2", "start_date": D(2020, 1, 1), "lsoa_code": "X01000002"},
            ],
            "areas": [
                {"lsoa_code": "X01000001", "imd_decile": 9, "imd_quintile": 5},
                {"lsoa_code": "X01000002", "imd_decile": 1, "imd_quintile": 1},
            ],
        },
    )
    out = run_measures(store, m, engine=engine, disclosure=False)
    out = out.sort_values(["interval_start", "urgency", "imd"]).reset_index(drop=True)
    assert _counts(out, "urgency", "imd") == [
        # a (responded: the answer of 29 January is 24 days after it) and b (the next day)
        (D(2025, 1, 1), "elective", "1", 1, 2),  # b, and woman 2's c (no answer)
        (D(2025, 1, 1), "emergency", "5", 1, 1),  # a, before she moved
        (D(2025, 2, 1), "elective", "unknown", 1, 1),
    ]


def _disclosure_tables() -> dict:
    """January: 20 elective caesareans of 20 women (none answered the next day) and 10
    emergency ones, all of one woman (5 answered the next day); February: 20 elective ones
    of 20 women (12 answered the next day)."""
    ops, answers = [], []
    for i in range(20):
        pid = f"e{i:02d}"
        ops.append(_op(pid, f"{pid}-jan", T(2025, 1, 10, 9)))
        ops.append(_op(pid, f"{pid}-feb", T(2025, 2, 20, 9)))
        if i < 10:  # two days after
            answers.append(_answer(pid, T(2025, 1, 12, 9)))
        if i < 12:
            answers.append(_answer(pid, T(2025, 2, 21, 8)))
    for k in range(10):  # one woman's ten emergency rows, two days apart
        ops.append(_op("x", f"x{k}", T(2025, 1, 1 + 2 * k, 9), "emergency"))
        if k % 2 == 0:  # answered the next day, the day before the next operation
            answers.append(_answer("x", T(2025, 1, 2 + 2 * k, 9)))
    return {"operations": ops, "questionnaire_responses": answers}


def test_disclosure_withholds_rows_from_few_patients_and_protects_them(engine, tmp_path):
    """January's 10 emergency rows are one woman's: withheld though 10 is no small count,
    and the 20 elective rows beside them withheld too (secondary suppression: January's
    total would give them back). February's counts are released, rounded to 5."""
    per_op, _ = _per_caesarean()
    op = per_op.row
    # (answered on the day after the operation: each row's own answer, none shared)
    next_day = qr.on_or_after(op.start_datetime).on_or_before(op.start_datetime + days(1))
    m = Measures(intervals=[JAN, FEB])
    m.define_row_measure(
        "answered",
        rows=per_op,
        numerator=next_day.exists_for_patient(),
        group_by={"urgency": op.urgency},
    )
    store = make_store(tmp_path, _disclosure_tables())
    exact = run_measures(store, m, engine=engine, disclosure=False)
    assert _counts(exact, "urgency") == [
        (D(2025, 1, 1), "elective", 0, 20),  # (answered 2 days after: not the next day)
        (D(2025, 1, 1), "emergency", 5, 10),
        (D(2025, 2, 1), "elective", 12, 20),
    ]
    out = run_measures(store, m, engine=engine)
    jan, feb = out[out.interval_start == D(2025, 1, 1)], out[out.interval_start == D(2025, 2, 1)]
    assert jan["denominator"].isna().all() and jan["value"].isna().all()
    notes = dict(zip(jan["urgency"], jan["disclosure_note"], strict=True))
    assert notes["emergency"] == (
        "numerator primary (few patients); denominator primary (few patients)"
    )
    assert "denominator secondary" in notes["elective"]
    assert _counts(feb, "urgency") == [(D(2025, 2, 1), "elective", 10.0, 20.0)]
    assert feb["value"].tolist() == [50.0]  # from the released counts


def test_rows_of_a_table_dated_by_a_plain_date(engine, tmp_path):
    """Per emergency admission (dated by a date, not a date-and-time): another admission in
    the 30 days after it. Patient 1: 5 Jan (readmitted 20 Jan), 20 Jan (no: the next is 1
    Mar, 40 days on), 1 Mar (no). Patient 2: 31 Jan (readmitted 2 Feb, in February), 2 Feb
    (no). So January 2 of 3, February 0 of 1, March 0 of 1. Crashed before ("'DateColumn'
    object has no attribute 'date'")."""

    def adm(pid: str, day: dt.date) -> dict:
        return {"patient_id": pid, "admission_date": day, "discharge_date": day}

    days_ = {
        "1": [D(2025, 1, 5), D(2025, 1, 20), D(2025, 3, 1)],
        "2": [D(2025, 1, 31), D(2025, 2, 2)],
    }
    store = make_store(
        tmp_path,
        {
            "patients": [{"patient_id": p} for p in days_],
            "admissions": [adm(p, d) for p, ds in days_.items() for d in ds],
        },
    )
    per_admission = RowDataset(admissions)
    this = per_admission.row
    later = admissions.where(admissions.admission_date > this.admission_date)
    readmitted = later.on_or_before(this.admission_date + days(30)).exists_for_patient()
    m = Measures(intervals=[JAN, FEB, MAR])
    m.define_row_measure("readmitted_30d", rows=per_admission, numerator=readmitted)
    result = run_measures(store, m, engine=engine, disclosure=False)
    assert _counts(result) == [(D(2025, 1, 1), 2, 3), (D(2025, 2, 1), 0, 1), (D(2025, 3, 1), 0, 1)]


def test_a_row_value_may_not_read_the_index_date(tmp_path):
    """Each row counts in the interval of its own date: a value relative to the interval
    (the index date, interval_start, in_interval(), in_last()) is refused, naming the
    measure and saying why."""
    per_op, responded = _per_caesarean()
    op = per_op.row
    m = Measures(intervals=[JAN])
    why = r"measure 'late'.*index_date.*relative to the row"
    with pytest.raises(QueryError, match=why):
        m.define_row_measure("late", rows=per_op, numerator=op.start_datetime.date <= index_date)
    recent = qr.in_last(months=1).exists_for_patient()
    with pytest.raises(QueryError, match=r"measure 'recent'.*the numerator.*relative to the row"):
        m.define_row_measure("recent", rows=per_op, numerator=recent)
    area = addresses.area_on(index_date).group("imd_quintile")
    with pytest.raises(QueryError, match=r"measure 'imd'.*group_by\[imd\].*relative to the row"):
        m.define_row_measure("imd", rows=per_op, numerator=responded, group_by={"imd": area})
    in_interval = RowDataset(operations.matching(CAESAREAN).in_interval())
    with pytest.raises(QueryError, match=r"measure 'rows'.*rows.*in_interval\(\)"):
        m.define_row_measure("rows", rows=in_interval, numerator=in_interval.row.urgency == "x")
    other = RowDataset(operations.matching(CAESAREAN))
    with pytest.raises(QueryError, match="current row of another row dataset"):
        m.define_row_measure("other", rows=other, numerator=responded)
    with pytest.raises(QueryError, match="True/False per row"):
        m.define_row_measure("count", rows=per_op, numerator=qr.count_for_patient())
    assert not len(m)


def test_intervals_in_one_run_equal_each_alone(engine, tmp_path):
    """January, February, March and the quarter they make, in one run, give what each
    interval gives alone: a row in January counts in January and in the quarter."""
    per_op, responded = _per_caesarean()
    store = make_store(
        tmp_path,
        {
            "operations": [
                _op("1", "a", T(2025, 1, 5, 9)),
                _op("1", "b", T(2025, 2, 10, 9)),
                _op("2", "c", T(2025, 3, 31, 23, 59)),
                _op("3", "d", T(2025, 1, 31, 12)),
            ],
            "questionnaire_responses": [_answer("1", T(2025, 1, 20)), _answer("3", T(2025, 2, 1))],
        },
    )
    (q1,) = quarterly("2025-01-01", 1)
    together = Measures(intervals=[JAN, FEB, MAR, q1])
    together.define_row_measure("wound_30d", rows=per_op, numerator=responded)
    alone = Measures()
    for i, interval in enumerate([JAN, FEB, MAR, q1]):
        alone.define_row_measure(f"m{i}", rows=per_op, numerator=responded, intervals=[interval])
    one = run_measures(store, together, engine=engine, disclosure=False)
    each = run_measures(store, alone, engine=engine, disclosure=False)
    key = ["interval_start", "interval_end"]
    one = one.sort_values(key).drop(columns="measure").reset_index(drop=True)
    each = each.sort_values(key).drop(columns="measure").reset_index(drop=True)
    pd.testing.assert_frame_equal(one, each)
    assert _counts(one) == [
        (D(2025, 1, 1), 2, 2),  # a and d
        (D(2025, 1, 1), 2, 4),  # the quarter: all four (c at 23:59 on its last day)
        (D(2025, 2, 1), 0, 1),
        (D(2025, 3, 1), 0, 1),
    ]


DEFINITION = """
from pophealth.codelists import Codelist
from pophealth.query import Measures, RowDataset, addresses, days, monthly, operations
from pophealth.query import questionnaire_responses as qr

caesarean = Codelist.of("opcs4", ["R171", "R182"], name="caesarean")
per_op = RowDataset(operations.matching(caesarean))
op = per_op.row
later = qr.on_or_after(op.start_datetime).on_or_before(op.start_datetime + days(30))

measures = Measures(intervals=monthly("2025-01-01", 2))
measures.define_row_measure(
    "wound_questionnaire_30d",
    rows=per_op,
    numerator=later.exists_for_patient(),
    group_by={"imd": addresses.area_on(op.start_datetime).group("imd_quintile")},
)
"""


def test_a_definition_file_runs_a_row_measure(tmp_path):
    """``pophealth measures FILE`` runs a file whose Measures holds a row measure, and says
    it was counted by rows; a code list of the rows that matches nothing is named."""
    from typer.testing import CliRunner

    from pophealth.cli import app

    store = make_store(
        tmp_path,
        {
            "operations": [_op("1", "a", T(2025, 1, 5, 9)), _op("1", "b", T(2025, 2, 10, 9))],
            "questionnaire_responses": [_answer("1", T(2025, 2, 12, 8))],
        },
    )
    path = tmp_path / "per_caesarean.py"
    path.write_text(DEFINITION)
    output = tmp_path / "out" / "measures.csv"
    args = ["measures", path, "--store", store.path, "--output", output, "--no-disclosure"]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    assert "by rows" in result.output
    assert "matches no row" not in result.output
    written = pd.read_csv(output)
    assert written[["interval_start", "imd", "numerator", "denominator"]].values.tolist() == [
        ["2025-01-01", "unknown", 0, 1],
        ["2025-02-01", "unknown", 1, 1],
    ]
    Path(path).write_text(DEFINITION.replace('["R171", "R182"]', '["R181"]'))
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    assert "code list caesarean matches no row of operations" in result.output


def test_a_quantile_over_rows_without_among_is_over_all_the_rows(engine, tmp_path):
    """``define_quantile(..., rows=frame)`` with no ``among`` and no default denominator is
    over every row (as ``among=True``); over patients, ``among`` is still needed, and the
    message says ``among=True`` is everyone."""
    from pophealth.query import emergency_attendances, minutes_between

    att = emergency_attendances.in_interval()
    wait = minutes_between(att.arrival_datetime, att.first_analgesia_datetime)
    m = Measures(intervals=[JAN])
    m.define_quantile("all_rows", value=wait, rows=att)
    m.define_quantile("among_true", value=wait, rows=att, among=True)
    with pytest.raises(QueryError, match=r"measure 'per_patient': needs among=.*among=True"):
        m.define_quantile("per_patient", value=att.count_for_patient())
    arrivals = [("1", 10), ("1", 20), ("2", 30)]  # minutes to analgesia
    store = make_store(
        tmp_path,
        {
            "emergency_attendances": [
                {
                    "patient_id": pid,
                    "arrival_datetime": T(2025, 1, 5 + i, 9),
                    "first_analgesia_datetime": T(2025, 1, 5 + i, 9, wait_minutes),
                }
                for i, (pid, wait_minutes) in enumerate(arrivals)
            ]
        },
    )
    out = run_measures(store, m, engine=engine, disclosure=False)
    rows = {r.measure: (r.numerator, r.denominator, r.value) for r in out.itertuples()}
    assert rows == {"all_rows": (3, 3, 20.0), "among_true": (3, 3, 20.0)}
