"""Spec: date-and-times as a type of their own, and each row's previous and next row.

A column stored with its clock time (``events.datetime``, an attendance's
``arrival_datetime``, an operation's ``start_datetime``) is a ``datetime``: compared with
another to the second, kept with its time when taken per patient, and refused beside a
date (``.date`` takes its day). "SpO2 within an hour after the respiratory rate" (NEWS2,
RCP 2017; PROGRAMMES.md section 5) is written with ``minutes_between`` across rows.

``frame.previous(column)`` / ``frame.next(column)`` and ``days_since_previous()``,
``minutes_since_previous()``... give each row its neighbours in the frame's order:
"a re-attendance within 30 days" for sickle cell (NICE QS58; PROGRAMMES.md section 9).

Small tables in the test, expected output written out by hand, on DuckDB and Spark.
"""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from pophealth.codelists import Codelist
from pophealth.query import (
    Dataset,
    Measures,
    QueryError,
    days,
    emergency_attendances,
    events,
    hours_between,
    index_date,
    minutes_between,
    monthly,
    operations,
    run_dataset,
    run_events,
    run_measures,
)
from tests.spec.conftest import INDEX, make_store, run

D, T = dt.date, dt.datetime
ea = emergency_attendances

RR = Codelist.of("snomedct", ["86290005"], name="rr")
SPO2 = Codelist.of("snomedct", ["431314004"], name="spo2")
CODES = {"rr": "86290005", "spo2": "431314004"}


def _obs(pid: str, when: dt.datetime | None, what: str, value: float, day: dt.date | None = None):
    return {
        "patient_id": pid,
        "date": day or when.date(),
        "datetime": when,
        "code": CODES[what],
        "value": value,
    }


def _values(engine, tmp_path, tables, variables, index=INDEX) -> dict[str, dict]:
    """``{patient: {variable: value}}`` as the engine returns them: a date-and-time stays a
    ``datetime`` (``run`` in conftest reads every datetime as its date)."""
    store = make_store(tmp_path, tables)
    ds = Dataset()
    for name, value in variables.items():
        ds.add(name, value)
    table = run_dataset(store, ds, engine=engine, index_date=index, output="arrow")
    out = {}
    for row in table.to_pylist():
        pid = row.pop("patient_id")
        out[pid] = {k: (None if v != v else v) for k, v in row.items()}  # NaN as missing
    return out


# -- a date-and-time compares to the second ------------------------------------------------

NEWS2 = [
    # 1: SpO2 the same day but 1 minute BEFORE the respiratory rate: not after it
    _obs("1", T(2025, 3, 30, 9, 59), "spo2", 95),
    _obs("1", T(2025, 3, 30, 10, 0), "rr", 18),
    # 2: SpO2 at the same second (after 0.4 s, cut to the second): at, so "on or after"
    _obs("2", T(2025, 3, 30, 10, 0, 0), "rr", 18),
    _obs("2", T(2025, 3, 30, 10, 0, 0, 400_000), "spo2", 96),
    # 3: RR at 23:30, SpO2 50 minutes later, after midnight (the next day)
    _obs("3", T(2025, 3, 29, 23, 30), "rr", 22),
    _obs("3", T(2025, 3, 30, 0, 20), "spo2", 93),
    # 4: SpO2 61 minutes after; and one recorded with its day only (no clock time)
    _obs("4", T(2025, 3, 30, 8, 0), "rr", 16),
    _obs("4", T(2025, 3, 30, 9, 1), "spo2", 97),
    _obs("4", None, "spo2", 90, day=D(2025, 3, 30)),
    # 5: no respiratory rate
    _obs("5", T(2025, 3, 30, 8, 0), "spo2", 99),
]


def test_a_time_compares_with_a_time_to_the_second(engine, tmp_path):
    rr = events.matching(RR).last_for_patient()
    spo2 = events.matching(SPO2)
    out = _values(
        engine,
        tmp_path,
        {"events": NEWS2},
        {
            "after": spo2.where(spo2.datetime >= rr.datetime).count_for_patient(),
            "strictly_after": spo2.where(spo2.datetime > rr.datetime).count_for_patient(),
            "same_day": spo2.where(spo2.datetime.date == rr.datetime.date).count_for_patient(),
        },
    )
    # 1: the same day but before: a date would have let it through
    assert out["1"] == {"after": 0, "strictly_after": 0, "same_day": 1}
    assert out["2"] == {"after": 1, "strictly_after": 0, "same_day": 1}
    assert out["3"] == {"after": 1, "strictly_after": 1, "same_day": 0}  # over midnight
    # 4: the SpO2 without a time compares as missing (not after); its day is missing too
    assert out["4"] == {"after": 1, "strictly_after": 1, "same_day": 1}
    assert out["5"] == {"after": 0, "strictly_after": 0, "same_day": 0}


def test_first_and_last_keep_their_clock_time(engine, tmp_path):
    """A per-patient date-and-time is written as a timestamp (it was written as a date)."""
    rr = events.matching(RR).last_for_patient()
    store = make_store(tmp_path, {"events": NEWS2})
    ds = Dataset()
    ds.rr_time = rr.datetime
    ds.rr_day = rr.datetime.date
    ds.next_day_same_time = rr.datetime + days(1)
    timed_spo2 = events.matching(SPO2).where(events.datetime.is_not_null())
    ds.spo2_text = timed_spo2.last_for_patient().datetime.as_text()  # to the second
    table = run_dataset(store, ds, engine=engine, index_date=INDEX, output="arrow")
    assert pa.types.is_timestamp(table.schema.field("rr_time").type)
    assert pa.types.is_timestamp(table.schema.field("next_day_same_time").type)
    assert table.schema.field("rr_day").type == pa.date32()
    got = {r["patient_id"]: r for r in table.to_pylist()}
    assert got["3"]["rr_time"] == T(2025, 3, 29, 23, 30)
    assert got["3"]["rr_day"] == D(2025, 3, 29)
    assert got["3"]["next_day_same_time"] == T(2025, 3, 30, 23, 30)
    assert got["5"]["rr_time"] is None
    assert got["2"]["spo2_text"] == "2025-03-30 10:00:00"  # 10:00:00.4
    assert got["3"]["spo2_text"] == "2025-03-30 00:20:00"
    # written by the dataset command's writer: CSV with the time, Parquet as a timestamp
    from pophealth.commands.query import write_table

    write_table(table, tmp_path / "out.csv", ".csv")
    write_table(table, tmp_path / "out.parquet", ".parquet")
    text = (tmp_path / "out.csv").read_text()
    assert "2025-03-29 23:30:00" in text
    back = pq.read_table(tmp_path / "out.parquet")
    assert pa.types.is_timestamp(back.schema.field("rr_time").type)
    assert pcsv.read_csv(tmp_path / "out.csv").num_rows == table.num_rows


def test_minutes_and_hours_between_two_patients_times(engine, tmp_path):
    rr = events.matching(RR).last_for_patient()
    spo2 = events.matching(SPO2).where(events.datetime.is_not_null())
    out = _values(
        engine,
        tmp_path,
        {"events": NEWS2},
        {
            "minutes": minutes_between(rr.datetime, spo2.first_for_patient().datetime),
            "hours": hours_between(rr.datetime, spo2.last_for_patient().datetime),
        },
    )
    assert out["1"] == {"minutes": -1.0, "hours": pytest.approx(-1 / 60)}
    assert out["2"] == {"minutes": 0.0, "hours": 0.0}  # 0.4 s: the same second
    assert out["3"] == {"minutes": 50.0, "hours": pytest.approx(50 / 60)}
    assert out["4"]["minutes"] == 61.0
    assert out["5"] == {"minutes": None, "hours": None}  # no respiratory rate: missing


def test_news2_spo2_within_an_hour_after_the_respiratory_rate(engine, tmp_path):
    """Worked example: each SpO2 reading's minutes from the latest respiratory rate, on
    its row; the SpO2 that goes with the RR is one taken 0-60 minutes after it."""
    rr = events.matching(RR).on_or_before(index_date).last_for_patient()
    spo2 = events.matching(SPO2)
    after_rr = minutes_between(rr.datetime, spo2.datetime)
    paired = spo2.where((after_rr >= 0) & (after_rr <= 60))
    out = run(
        engine,
        tmp_path,
        {"events": NEWS2},
        {"paired": paired.exists_for_patient(), "spo2": paired.last_for_patient().value},
    )
    assert out["1"] == {"paired": False, "spo2": None}  # a minute before
    assert out["2"] == {"paired": True, "spo2": 96.0}
    assert out["3"] == {"paired": True, "spo2": 93.0}  # 50 minutes, over midnight
    assert out["4"] == {"paired": False, "spo2": None}  # 61 minutes; the untimed one: missing
    assert out["5"] == {"paired": False, "spo2": None}


def test_windows_on_a_date_and_time_table_go_by_day(engine, tmp_path):
    """``in_last(months=12)`` on attendances windows the day of arrival, as before; a
    date-and-time given as a window's bound is taken as its day."""

    def att(pid, when):
        return {
            "patient_id": pid,
            "arrival_datetime": when,
            "diagnosis_system": "snomedct",
            "diagnosis": "1",
        }

    rows = [
        att("1", T(2024, 3, 31, 23, 59)),  # the day 12 months before the index date: out
        att("2", T(2024, 4, 1, 0, 0)),  # the day after: in
        att("3", T(2025, 3, 31, 23, 59)),  # the index date, late in the evening: in
        att("3", T(2025, 3, 31, 8, 0)),
    ]
    first = ea.first_for_patient().arrival_datetime
    out = run(
        engine,
        tmp_path,
        {"emergency_attendances": rows},
        {
            "in_12m": ea.in_last(months=12).count_for_patient(),
            "same_day_as_first": ea.on(first).count_for_patient(),
            "within_a_day": ea.in_next(days=1, of=first).count_for_patient(),
            "days_apart": ea.last_for_patient().arrival_datetime - first,
        },
    )
    assert out["1"]["in_12m"] == 0 and out["2"]["in_12m"] == 1
    assert out["3"] == {"in_12m": 2, "same_day_as_first": 2, "within_a_day": 0, "days_apart": 0}


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (
            lambda: events.where(events.datetime >= index_date).exists_for_patient(),
            "for its day write events.datetime.date",
        ),
        (
            lambda: events.where(
                events.datetime > events.matching(RR).last_for_patient().date
            ).exists_for_patient(),
            "cannot compare a date-and-time (events.datetime) and a date",
        ),
        (
            lambda: ea.where(ea.arrival_datetime >= "2025-03-01").exists_for_patient(),
            "for its day write emergency_attendances.arrival_datetime.date",
        ),
        (
            lambda: operations.first_for_patient().start_datetime - index_date,
            "cannot subtract a date-and-time",
        ),
        (
            lambda: minutes_between(events.matching(RR).last_for_patient().date, events.datetime),
            "is a date, without its clock time",
        ),
        (
            lambda: operations.where(
                operations.start_datetime < dt.datetime(2025, 1, 1, 9)
            ).exists_for_patient(),
            None,  # two date-and-times: accepted
        ),
    ],
)
def test_a_date_and_time_beside_a_date_is_refused_with_what_to_write(make, words):
    ds = Dataset()
    if words is None:
        ds.x = make()
        return
    with pytest.raises(QueryError, match="variable 'x'") as err:
        ds.x = make()
    assert words in str(err.value)


def test_the_clock_methods_of_a_frame_point_to_the_functions():
    rr = events.matching(RR).last_for_patient()
    spo2 = events.matching(SPO2)
    with pytest.raises(QueryError) as err:
        Dataset().x = spo2.where(
            spo2.minutes_between(rr.datetime, "datetime") <= 60
        ).exists_for_patient()
    message = str(err.value)
    assert "use the function: minutes_between(" in message
    assert "date-and-time columns: datetime" in message
    with pytest.raises(QueryError, match="a date, without its clock time"):
        Dataset().x = spo2.where(spo2.hours_between(rr.date, "datetime") <= 1).exists_for_patient()


# -- the previous and next row ----------------------------------------------------------------

SICKLE = Codelist.of("snomedct", ["127040003"], name="sickle_crisis")


def _att(pid, when, diagnosis="127040003", analgesia=None):
    return {
        "patient_id": pid,
        "arrival_datetime": when,
        "diagnosis_system": "snomedct",
        "diagnosis": diagnosis,
        "first_analgesia_datetime": analgesia,
    }


ATTENDANCES = [
    # 1: day 30 after the first (in), then day 31 after that (out), then an attendance for
    # something else 2 days later (not a crisis: not a row of the crisis frame)
    _att("1", T(2025, 1, 1, 23, 0)),
    _att("1", T(2025, 1, 31, 0, 30)),  # 30 days on by date, 22.5 hours short of 30 x 24 h
    _att("1", T(2025, 3, 3, 10, 0)),  # 31 days on
    _att("1", T(2025, 3, 5, 10, 0), diagnosis="22298006"),
    # 2: twice the same day, 45 minutes apart
    _att("2", T(2025, 2, 10, 8, 15)),
    _att("2", T(2025, 2, 10, 9, 0)),
    # 3: once, 12 days after an attendance for something else
    _att("3", T(2025, 1, 20, 9, 0), diagnosis="22298006"),
    _att("3", T(2025, 2, 1, 12, 0)),
]


def test_each_row_has_its_previous_and_next_row(engine, tmp_path):
    crises = ea.matching(SICKLE)
    store = make_store(tmp_path, {"emergency_attendances": ATTENDANCES})
    ds = Dataset()
    ds.add_event_table(
        "crises",
        crises,
        columns=["arrival_datetime"],
        values={
            "previous_arrival": crises.previous("arrival_datetime"),
            "days_since": crises.days_since_previous(),
            "minutes_since": crises.minutes_since_previous(),
            "days_until": crises.days_until_next(),
            "hours_until": crises.hours_until_next(),
        },
    )
    rows = run_events(store, ds, "crises", engine=engine, index_date=INDEX, output="arrow")
    got = [
        tuple(None if v != v else v for v in r.values())
        for r in rows.select(
            ["patient_id", "days_since", "minutes_since", "days_until"]
        ).to_pylist()
    ]
    assert got == [
        ("1", None, None, 30),
        ("1", 30, 41850.0, 31),  # 23:00 -> 00:30 thirty days on: 30 days less 22.5 h
        ("1", 31, 45210.0, None),  # 31 days and 9.5 hours
        ("2", None, None, 0),
        ("2", 0, 45.0, None),
        ("3", None, None, None),
    ]
    assert pa.types.is_timestamp(rows.schema.field("previous_arrival").type)
    listed = rows.to_pylist()
    assert listed[1]["previous_arrival"] == T(2025, 1, 1, 23, 0)
    assert listed[0]["previous_arrival"] is None
    assert listed[3]["hours_until"] == pytest.approx(0.75)


def test_sickle_cell_re_attendance_within_30_days(engine, tmp_path):
    """Worked example: a crisis attendance within 30 days (by date) of the patient's previous
    crisis attendance is a re-attendance; per patient, whether any was, and how many."""
    crises = ea.matching(SICKLE)
    re_attended = crises.where(crises.days_since_previous() <= 30)
    out = run(
        engine,
        tmp_path,
        {"emergency_attendances": ATTENDANCES},
        {
            "re_attended": re_attended.exists_for_patient(),
            "count": re_attended.count_for_patient(),
            "longest_gap": crises.maximum_for_patient(crises.days_since_previous()),
            "last_re_attendance": re_attended.last_for_patient().arrival_datetime,
            # the previous attendance of any kind, then the crises among them: the rows of
            # the frame the previous row is taken over, whatever filters come after
            "after_any": ea.where(ea.days_since_previous() <= 30)
            .matching(SICKLE)
            .count_for_patient(),
            # on rows that narrow the crises, each keeps its gap from the previous crisis
            "re_gap": re_attended.maximum_for_patient(crises.days_since_previous()),
        },
    )
    assert out["1"] == {
        "re_attended": True,
        "count": 1,
        "longest_gap": 31,
        "last_re_attendance": D(2025, 1, 31),  # (run reads a datetime as its date)
        "after_any": 1,
        "re_gap": 30,
    }
    assert out["2"] == {
        "re_attended": True,
        "count": 1,
        "longest_gap": 0,
        "last_re_attendance": D(2025, 2, 10),
        "after_any": 1,
        "re_gap": 0,
    }
    assert out["3"] == {
        "re_attended": False,
        "count": 0,
        "longest_gap": None,
        "last_re_attendance": None,
        "after_any": 1,
        "re_gap": None,
    }


def test_a_re_attendance_measure_by_month(engine, tmp_path):
    """The previous row is taken over all crisis attendances, then the month's window:
    March's attendance is 31 days after January's last, so no re-attendance in March."""
    crises = ea.matching(SICKLE)
    re_attended = crises.where(crises.days_since_previous() <= 30)
    m = Measures(intervals=monthly("2025-01-01", 3))
    m.define_measure(
        "re_attendance",
        numerator=re_attended.in_interval().exists_for_patient(),
        denominator=crises.in_interval().exists_for_patient(),
    )
    store = make_store(tmp_path, {"emergency_attendances": ATTENDANCES})
    result = run_measures(store, m, engine=engine, disclosure=False)
    got = {r.interval_start.month: (r.numerator, r.denominator) for r in result.itertuples()}
    assert got == {1: (1, 1), 2: (1, 2), 3: (0, 1)}
    # the previous row of the month's rows alone is refused, with the way round
    inside = crises.in_interval()
    m.define_measure(
        "x",
        numerator=inside.where(inside.days_since_previous() <= 30).exists_for_patient(),
        denominator=inside.exists_for_patient(),
    )
    with pytest.raises(QueryError, match=r"take them first and window after"):
        run_measures(store, m, engine=engine, disclosure=False)


def test_ties_on_the_sort_key_are_broken_by_the_other_columns(engine, tmp_path):
    """Two readings on one day, without times: the order is the day, then the other
    columns ascending in the table's order, but the value straight after the dates and
    times (datetime, value, system, code...), missing last, the same on every engine, as
    for first_for_patient: of two readings on one day under two codes, the lower first.
    Sorted by the time, a reading without one is last."""

    def ev(day, code, value, when=None):
        return {"patient_id": "1", "date": day, "datetime": when, "code": code, "value": value}

    rows = [
        ev(D(2025, 3, 1), "431314004", 95.0),
        ev(D(2025, 3, 1), "86290005", 20.0),  # a lower value than 95 under another code: first
        ev(D(2025, 3, 1), "86290005", 18.0),  # the same code: the lower value first
        ev(D(2025, 2, 1), "86290005", 12.0, T(2025, 2, 1, 23, 0)),
        ev(D(2025, 3, 2), "86290005", 5.0),  # a later day: after 1 March's, whatever its value
    ]
    store = make_store(tmp_path, {"events": rows})
    ds = Dataset()
    ds.add_event_table(
        "by_day", events, columns=["value"], values={"previous": events.previous("value")}
    )
    timed = events.sort_by("datetime")
    ds.add_event_table("by_time", timed, columns=["value"], values={"next": timed.next("value")})
    by_day = run_events(store, ds, "by_day", engine=engine, index_date=INDEX, output="arrow")
    pairs = {(r["value"], r["previous"]) for r in by_day.to_pylist()}
    assert pairs == {(12.0, None), (18.0, 12.0), (20.0, 18.0), (95.0, 20.0), (5.0, 95.0)}
    by_time = run_events(store, ds, "by_time", engine=engine, index_date=INDEX, output="arrow")
    nexts = {(r["value"], r["next"]) for r in by_time.to_pylist()}
    # the timed reading first; the four without a time after it, by their dates, then values
    assert nexts == {(12.0, 18.0), (18.0, 20.0), (20.0, 95.0), (95.0, 5.0), (5.0, None)}


def test_previous_and_next_rows_are_refused_where_they_say_nothing():
    crises = ea.matching(SICKLE)
    re_attended = crises.where(crises.days_since_previous() <= 30)
    others = ea.where(ea.diagnosis_system == "snomedct")  # not rows crises narrow
    with pytest.raises(QueryError, match="is taken over the rows of") as err:
        Dataset().x = crises.where(others.previous("diagnosis") == "1").exists_for_patient()
    assert "take it on the rows it is used on, or on rows they narrow" in str(err.value)
    with pytest.raises(QueryError, match="cannot be sorted by"):
        Dataset().x = crises.sort_by(crises.previous("arrival_datetime")).exists_for_patient()
    with pytest.raises(QueryError, match=r"dated by day .* \(e\.g\. \"datetime\"\)"):
        Dataset().x = events.maximum_for_patient(events.minutes_since_previous())
    with pytest.raises(QueryError, match="is taken over the rows of"):
        Dataset().add_event_table("x", re_attended, values={"gap": others.days_since_previous()})
    with pytest.raises(QueryError, match="is taken over the rows of"):
        Dataset().x = ea.maximum_for_patient(crises.days_since_previous())
    with pytest.raises(QueryError, match="one value per row of emergency_attendances"):
        Dataset().x = crises.previous("arrival_datetime")  # a value of each row, not per patient
