"""Spec: what a new analyst met in a second week of writing definitions, on DuckDB and Spark.

Small tables in the test, the rule, the expected result written out by hand. Each test that
fixes something failed before its fix (the test's docstring says what was seen).
"""

from __future__ import annotations

import datetime as dt

from pophealth.codelists import Codelist
from pophealth.query import (
    Measures,
    case,
    events,
    index_date,
    maximum_of,
    minimum_of,
    monthly,
    registrations,
    run_measures,
    when,
)
from tests.spec.conftest import make_store, run

D = dt.date
SBP = Codelist.of("snomedct", ["271649006"], name="sbp")


def _registered(ids, start=D(2020, 1, 1)):
    return [{"patient_id": p, "practice_id": "A1", "start_date": start} for p in ids]


def test_a_rates_method_says_it_is_from_released_counts(engine, tmp_path):
    """Released through disclosure control, a rate's value and Poisson limits are computed
    from the released (rounded) counts, as a proportion's are; the proportion's method said
    "Wilson (from released counts)" but the rate's said only "Byars", as if from the exact
    counts. Exact counts (no disclosure control) keep the plain method."""
    ids = [f"p{i:02d}" for i in range(42)]
    readings = [
        {"patient_id": p, "date": D(2025, 1, day), "code": "271649006", "value": 120.0}
        for p in ids[:11]
        for day in (3, 17)
    ]  # 22 readings from 11 patients: released as 20; 42 registered: released as 40
    store = make_store(tmp_path, {"events": readings, "registrations": _registered(ids)})
    m = Measures(intervals=monthly("2025-01-01", 1))
    m.define_measure(
        "readings",
        numerator=events.matching(SBP).in_interval().count_for_patient(),
        denominator=registrations.registered_on(index_date),
    )
    released = run_measures(store, m, engine=engine).iloc[0]
    assert (released.numerator, released.denominator, released.value) == (20, 40, 50.0)
    assert released.statistic == "rate per 100 patients"
    assert released.method == "Byars (from released counts)"
    exact = run_measures(store, m, engine=engine, disclosure=False).iloc[0]
    assert (exact.numerator, exact.denominator, exact.method) == (22, 42, "Byars")


def test_a_percentage_is_the_exact_quotient_without_float_noise(engine, tmp_path):
    """35 of 125 is 28%: the value was computed as 35 / 125 × 100, two roundings, and came
    out as 28.000000000000004 (in the file and in a spreadsheet), as 7 of 25, 11 of 20 and
    many other counts did; a rate of 35 readings among 125 patients too. Now the value is
    numerator × 100 / denominator, one rounding: the double nearest the exact quotient."""
    ids = [f"p{i:03d}" for i in range(125)]
    readings = [
        {"patient_id": p, "date": D(2025, 1, 9), "code": "271649006", "value": 120.0}
        for p in ids[:35]
    ]
    store = make_store(tmp_path, {"events": readings, "registrations": _registered(ids)})
    m = Measures(intervals=monthly("2025-01-01", 1))
    bp = events.matching(SBP).in_interval()
    m.define_defaults(denominator=registrations.registered_on(index_date))
    m.define_measure("any", numerator=bp.exists_for_patient())
    m.define_measure("readings", numerator=bp.count_for_patient())
    for disclosure in (True, False):  # 35 and 125 are released as they are
        out = run_measures(store, m, engine=engine, disclosure=disclosure)
        got = {r.measure: (r.numerator, r.denominator, r.value) for r in out.itertuples()}
        assert got == {"any": (35, 125, 28.0), "readings": (35, 125, 28.0)}
        assert [repr(v) for v in out["value"]] == ["28.0", "28.0"]


def test_a_date_written_as_text_wherever_a_date_goes(engine, tmp_path):
    """docs/query.md: "A date may be given as a datetime.date or as text". Windows and
    comparisons took text, but the later of a diagnosis and the start of follow-up,
    ``maximum_of(first.date, "2024-04-01")``, was refused ("mixes types date, string"), as
    were ``if_null_then("...")`` on a date and a date in a ``case`` branch written as text."""
    tables = {
        "events": [
            {"patient_id": "1", "date": D(2023, 6, 1), "code": "271649006", "value": 150.0},
            {"patient_id": "2", "date": D(2024, 9, 1), "code": "271649006", "value": 120.0},
        ],
        "patients": [{"patient_id": p} for p in "123"],
    }
    first = events.matching(SBP).first_for_patient().date
    out = run(
        engine,
        tmp_path,
        tables,
        {
            "start": maximum_of(first, "2024-04-01"),
            "end": minimum_of(first, "2024-04-01"),
            "known": first.if_null_then("1900-01-01"),
            "follow_up": case((first < "2024-04-01", "2024-04-01"), otherwise=first),
            "by_when": when(first < "2024-04-01").then("2024-04-01").otherwise(first),
        },
    )
    april = D(2024, 4, 1)
    assert out == {
        "1": {
            "start": april,
            "end": D(2023, 6, 1),
            "known": D(2023, 6, 1),
            "follow_up": april,
            "by_when": april,
        },
        "2": {
            "start": D(2024, 9, 1),
            "end": april,
            "known": D(2024, 9, 1),
            "follow_up": D(2024, 9, 1),
            "by_when": D(2024, 9, 1),
        },
        # no reading: the text date alone (greatest and least ignore a missing value)
        "3": {
            "start": april,
            "end": april,
            "known": D(1900, 1, 1),
            "follow_up": None,
            "by_when": None,
        },
    }
