"""The latest day's lowest (highest) value over many intervals, decided from that day's
rows without first combining them by day (:meth:`pophealth.query.masks.MaskPlan.
_rows_decide`): "the lowest reading of the day is below 140" holds when some reading that
day is; "the lowest is 140 or more" when every reading with a value is; "the lowest is
missing" when none has a value. Equal-to, not-equal-to and the mean keep the grouping.

Checked three ways: counts worked by hand for a small store; every interval against the
same measure run on that interval alone (which combines each day's readings first, with
no masks); and a random search over stores whose readings crowd onto a few days, so that
most days have several readings, some missing. On DuckDB and on Spark.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pophealth.codelists import Codelist
from pophealth.query import Measures, events, monthly, patients, run_measures
from pophealth.query.masks import MaskPlan
from tests.spec.conftest import ENGINES, make_store
from tests.spec.test_intervals_differential import check

D = dt.date
CODES = ["271649006", "72313002"]
SBP = Codelist.of("snomedct", CODES, name="sbp")
IVS = monthly("2024-01-01", 6)  # January .. June 2024, each ending on its month end
EXAMPLES = int(os.environ.get("POPHEALTH_ROW_DAY_EXAMPLES", "6"))


def _ev(p: str, d: dt.date, v: float | None, code: str = CODES[0]) -> dict:
    return {"patient_id": p, "date": d, "code": code, "system": "snomedct", "value": v}


# readings in the 3 months up to each month end; 140 is the threshold
EVENTS = [
    _ev("a", D(2024, 2, 10), 130.0),  # two readings on one day: lowest 130, highest 150
    _ev("a", D(2024, 2, 10), 150.0),
    _ev("b", D(2024, 2, 10), 150.0),  # a day with a missing reading ...
    _ev("b", D(2024, 2, 10), None),
    _ev("b", D(2024, 3, 5), 145.0),  # ... then a later day: lowest 145, highest 160
    _ev("b", D(2024, 3, 5), 160.0),
    _ev("c", D(2024, 2, 10), None),  # a day whose readings all lack a value
    _ev("c", D(2024, 2, 10), None),
    _ev("d", D(2024, 1, 20), 120.0),
    _ev("d", D(2024, 4, 2), 140.0),  # on the threshold, twice
    _ev("d", D(2024, 4, 2), 140.0),
    _ev("f", D(2024, 2, 10), 160.0),  # one day, two codes of the list
    _ev("f", D(2024, 2, 10), 120.0, CODES[1]),
]
TABLES = {
    "patients": [{"patient_id": p, "sex": "female"} for p in "abcdef"],  # e: no readings
    "events": EVENTS,
}


def _conditions(rule: str) -> dict[str, object]:
    day = events.matching(SBP).in_last(months=3).last_day_for_patient(rule=rule)
    v = day.value
    return {
        "lt": v < 140,
        "le": v <= 140,
        "gt": v > 140,
        "ge": v >= 140,
        "eq": v == 140,
        "ne": v != 140,
        "null": v.is_null(),
        "notnull": v.is_not_null(),
        "date": day.date >= D(2024, 3, 1),
    }


def _measures(rule: str, ivs=IVS, *, grouped: bool = False) -> Measures:
    """Each condition as a numerator, and its negation (so that false and missing differ:
    the negation of a missing value is missing, counted in neither). ``grouped``: with
    equal-to and not-equal-to too, which need each day's readings combined first."""
    m = Measures(intervals=ivs)
    everyone = patients.sex == "female"
    for name, cond in _conditions(rule).items():
        if name in ("eq", "ne") and not grouped:
            continue
        m.define_measure(f"{name}_true", numerator=cond, denominator=everyone)
        m.define_measure(f"{name}_false", numerator=~cond, denominator=everyone)
    return m


def _numerators(table: pd.DataFrame) -> dict[tuple[str, str], int]:
    """(measure, month end as yyyy-mm-dd) -> numerator."""
    return {
        (r.measure, str(pd.Timestamp(r.interval_end).date())): int(r.numerator)
        for r in table.itertuples()
    }


@pytest.fixture(params=ENGINES)
def engine(request) -> str:
    if request.param == "spark":
        from pophealth.engines import spark_session

        spark_session().conf.set("spark.sql.shuffle.partitions", "1")
    return request.param


@pytest.fixture
def decided(monkeypatch) -> dict[tuple, bool]:
    """Records which "last day" runs tables the masks decided from the rows (the real
    method runs; its answers are kept)."""
    seen: dict[tuple, bool] = {}
    real = MaskPlan._rows_decide

    def record(self, skey):
        seen[skey] = real(self, skey)
        return seen[skey]

    monkeypatch.setattr(MaskPlan, "_rows_decide", record)
    return seen


def _worked(rule: str) -> dict[tuple[str, str], int]:
    """The counts worked by hand (a missing value counted in neither), at the end of
    March (a: lowest 130, highest 150 on 10 Feb; b: 145 / 160 on 5 Mar; c: nothing
    recorded on 10 Feb; d: 120 on 20 Jan; e: no reading; f: 120 / 160 on 10 Feb) and of
    April (d's latest day is now 2 Apr, 140 twice)."""
    mar, apr = "2024-03-31", "2024-04-30"
    if rule == "min":
        out = {
            ("lt_true", mar): 3,  # a, d, f
            ("lt_false", mar): 1,  # b
            ("ge_true", mar): 1,  # b
            ("ge_false", mar): 3,
            ("lt_true", apr): 2,  # a, f: d's 140 is not below
            ("le_true", apr): 3,  # a, d, f
            ("gt_true", apr): 1,  # b
            ("gt_false", apr): 3,  # a, d, f
        }
    else:
        out = {
            ("lt_true", mar): 1,  # d
            ("lt_false", mar): 3,  # a, b, f
            ("ge_true", mar): 3,
            ("gt_true", apr): 3,  # a, b, f
            ("le_true", apr): 1,  # d
        }
    # the same for either rule: c's day has no value, e no day
    out |= {
        ("null_true", mar): 2,  # c, e
        ("null_false", mar): 4,  # a, b, d, f
        ("notnull_true", mar): 4,
        ("notnull_false", mar): 2,
        ("eq_true", apr): 1,  # d
        ("ne_true", apr): 3,  # a, b, f
        ("date_true", mar): 1,  # b, whose latest day is 5 Mar
        ("date_true", apr): 2,  # b, d
        ("date_false", mar): 4,  # a, c, d, f
    }
    return out


@pytest.mark.parametrize("grouped", [False, True], ids=["rows", "days"])
@pytest.mark.parametrize("rule", ["min", "max"])
def test_latest_day_decided_from_its_rows(tmp_path, engine, decided, rule, grouped):
    store = make_store(tmp_path, TABLES)
    got = run_measures(store, _measures(rule, grouped=grouped), engine=engine, disclosure=False)
    assert set(got.attrs["evaluation"].values()) == {"masks"}
    # one runs table: from the rows, or (with equal-to) from the days
    assert list(decided.values()) == [not grouped]
    numerators = _numerators(got)
    for key, n in _worked(rule).items():
        if key[0][:2] not in ("eq", "ne") or grouped:
            assert numerators[key] == n, key
    # each interval as the measure on that interval alone, which combines the day first
    alone = pd.concat(
        [
            run_measures(
                store, _measures(rule, [iv], grouped=grouped), engine=engine, disclosure=False
            )
            for iv in IVS[2:4]
        ],
        ignore_index=True,
    )
    for key, n in _numerators(alone).items():
        assert numerators[key] == n, key


def test_rows_decide_each_condition_kind(tmp_path, decided):
    """Run alone, each condition but equal-to / not-equal-to is decided from the rows; the
    mean never is."""
    store = make_store(tmp_path, TABLES)
    for rule in ("min", "max", "mean"):
        for name, cond in _conditions(rule).items():
            decided.clear()
            m = Measures(intervals=IVS)
            m.define_measure("m", numerator=cond, denominator=patients.sex == "female")
            run_measures(store, m, engine="duckdb", disclosure=False)
            expected = name == "date" or (rule != "mean" and name not in ("eq", "ne"))
            assert list(decided.values()) == [expected], (rule, name)


# -- a random search: readings crowded onto a few days ------------------------------------

crowded_days = st.sampled_from(
    [
        D(2023, 12, 31),
        D(2024, 1, 31),
        D(2024, 2, 1),
        D(2024, 2, 29),
        D(2024, 3, 31),
        D(2024, 4, 1),
        D(2024, 5, 15),
    ]
)


@st.composite
def crowded(draw):
    ids = ["p1", "p2", "p3", "p4"]
    rows = draw(
        st.lists(
            st.builds(
                _ev,
                st.sampled_from(ids),
                crowded_days,
                st.one_of(st.none(), st.sampled_from([120.0, 139.5, 140.0, 140.5, 160.0])),
                st.sampled_from(CODES),
            ),
            min_size=1,
            max_size=16,
        )
    )
    return {"patients": [{"patient_id": p, "sex": "female"} for p in ids], "events": rows}


@st.composite
def row_condition(draw):
    rule = draw(st.sampled_from(["min", "max"]))
    months = draw(st.sampled_from([1, 2, 3]))
    v = events.matching(SBP).in_last(months=months).last_day_for_patient(rule=rule).value
    c = draw(st.sampled_from([120, 140, 140.5]))
    op = draw(st.sampled_from(["lt", "le", "gt", "ge", "null", "notnull"]))
    cond = {
        "lt": lambda: v < c,
        "le": lambda: v <= c,
        "gt": lambda: v > c,
        "ge": lambda: v >= c,
        "null": v.is_null,
        "notnull": v.is_not_null,
    }[op]()
    return ~cond if draw(st.booleans()) else cond


@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=crowded(), conds=st.lists(row_condition(), min_size=1, max_size=3))
def test_crowded_days_equal_one_interval_at_a_time(data, conds):
    everyone = patients.sex == "female"
    spec = [(cond, everyone, [], False) for cond in conds]
    with tempfile.TemporaryDirectory() as tmp:
        store = make_store(Path(tmp), data)
        check(store, monthly("2024-01-01", 5), spec, "duckdb")
