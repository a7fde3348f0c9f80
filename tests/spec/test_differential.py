"""Differential test: random small patient tables and random compositions of the
vocabulary give identical results on DuckDB and on Spark.

A small deterministic sample runs in CI (``derandomize=True``); set
``POPHEALTH_DIFFERENTIAL_EXAMPLES`` for a longer hunt.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pophealth.codelists import Codelist
from pophealth.query import (
    Dataset,
    addresses,
    case,
    days,
    emergency_attendances,
    events,
    index_date,
    medications,
    minutes_between,
    months,
    patients,
    registrations,
    run_dataset,
)
from tests.spec.conftest import HAVE_SPARK, _clean, make_store

pytestmark = [
    pytest.mark.spark,
    pytest.mark.skipif(not HAVE_SPARK, reason="pyspark not installed"),
]

EXAMPLES = int(os.environ.get("POPHEALTH_DIFFERENTIAL_EXAMPLES", "4"))
D = dt.date
INDEX = D(2025, 3, 31)
IN_LIST = ["271649006", "72313002"]
OTHER = "38341003"
SBP = Codelist.of("snomedct", IN_LIST, name="sbp")
MEDS = ["39113611000001102", "222311000001102"]
SABA = Codelist.of("dmd", MEDS[:1], name="saba")
PIDS = ["p1", "p2", "p3", "p4", "p5"]

dates = st.dates(min_value=D(2022, 1, 1), max_value=D(2025, 12, 31))
values = st.one_of(st.none(), st.integers(40, 220).map(float))


@st.composite
def tables(draw):
    pats = [
        {
            "patient_id": p,
            "date_of_birth": draw(st.dates(min_value=D(1930, 1, 1), max_value=D(2024, 1, 1))),
            "sex": draw(st.sampled_from(["female", "male", "unknown"])),
            "date_of_death": draw(st.one_of(st.none(), dates)),
        }
        for p in PIDS[: draw(st.integers(1, len(PIDS)))]
    ]
    ids = [p["patient_id"] for p in pats]
    ev = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "patient_id": st.sampled_from(ids),
                    "date": dates,
                    "code": st.sampled_from([*IN_LIST, OTHER]),
                    "system": st.sampled_from(["snomedct", "snomedct", "ctv3"]),
                    "value": values,
                }
            ),
            max_size=14,
        )
    )
    meds = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "patient_id": st.sampled_from(ids),
                    "date": dates,
                    "code": st.sampled_from(MEDS),
                    "quantity": st.one_of(st.none(), st.integers(1, 3).map(float)),
                }
            ),
            max_size=8,
        )
    )
    regs = [
        {
            "patient_id": p,
            "practice_id": draw(st.sampled_from(["A1", "B2"])),
            "start_date": draw(dates),
            "end_date": draw(st.one_of(st.none(), dates)),
        }
        for p in ids
        if draw(st.booleans())
    ]
    addr = [
        {
            "patient_id": p,
            "start_date": draw(dates),
            "lsoa_code": draw(st.sampled_from(["X01000001", "X01000002", "X01000003", None])),
        }
        for p in ids
        if draw(st.booleans())
    ]
    arrivals = st.datetimes(min_value=dt.datetime(2024, 1, 1), max_value=dt.datetime(2025, 12, 31))
    attendances = []
    for _ in range(draw(st.integers(0, 5))):
        arrival = draw(arrivals)
        wait = draw(st.one_of(st.none(), st.integers(-600, 7200), st.floats(0, 3600)))
        attendances.append(
            {
                "patient_id": draw(st.sampled_from(ids)),
                "arrival_datetime": arrival,
                "first_analgesia_datetime": (
                    None if wait is None else arrival + dt.timedelta(seconds=wait)
                ),
            }
        )
    areas = [
        {"lsoa_code": "X01000001", "imd_quintile": 1, "core20": True},
        {"lsoa_code": "X01000002", "imd_quintile": 4, "core20": False},
    ]
    return {
        "patients": pats,
        "events": ev,
        "medications": meds,
        "registrations": regs,
        "addresses": addr,
        "areas": areas,
        "emergency_attendances": attendances,
    }


def _frames(draw):
    bp = events.matching(SBP)
    return draw(
        st.sampled_from(
            [
                bp,
                bp.in_last(months=12),
                bp.on_or_before(index_date),
                bp.where(events.value >= 140),
                bp.between(D(2023, 1, 1), D(2024, 6, 30)),
                events.where(events.code == OTHER),
                bp.where(events.date > patients.date_of_birth + months(600)),
            ]
        )
    )


@st.composite
def variable(draw):
    frame = _frames(draw)
    kind = draw(st.integers(0, 15))
    if kind == 15:  # date-and-times across rows, and each row's previous row
        ea = emergency_attendances
        first = ea.first_for_patient().arrival_datetime
        pick = draw(st.integers(0, 3))
        if pick == 0:  # compared to the second
            return ea.where(ea.first_analgesia_datetime > first).count_for_patient()
        if pick == 1:
            return minutes_between(first, ea.last_for_patient().first_analgesia_datetime)
        if pick == 2:
            within = draw(st.integers(0, 60))
            return ea.where(ea.days_since_previous() <= within).count_for_patient()
        return ea.maximum_for_patient(ea.minutes_since_previous())
    if kind == 14:  # clock times, to the second (DuckDB keeps microseconds, Spark does not)
        wait = emergency_attendances.minutes_between("arrival_datetime", "first_analgesia_datetime")
        if draw(st.booleans()):
            return emergency_attendances.where(wait <= draw(st.integers(0, 60))).count_for_patient()
        return emergency_attendances.minimum_for_patient(wait)
    if kind == 0:
        return frame.exists_for_patient()
    if kind == 1:
        return frame.count_for_patient() + draw(st.integers(-2, 2))
    if kind == 2:
        return frame.count_days_for_patient()
    if kind == 3:
        return frame.maximum_for_patient() - frame.minimum_for_patient()
    if kind == 4:
        return frame.mean_for_patient()
    if kind == 5:
        return frame.last_for_patient().date.days_until(index_date)
    if kind == 6:
        return frame.first_for_patient().value
    if kind == 7:
        return frame.last_day_for_patient(rule=draw(st.sampled_from(["min", "max", "mean"]))).value
    if kind == 8:
        v = frame.last_for_patient().value
        return case((v > 160, "high"), (v > 120, "mid"), otherwise="low")
    if kind == 9:
        return (frame.count_for_patient() > 1) | (patients.sex == "female")
    if kind == 10:
        saba = medications.matching(SABA).in_last(months=draw(st.integers(1, 24)))
        return saba.sum_for_patient(saba.quantity)
    if kind == 11:
        return (
            patients.age_band_on(index_date)
            if draw(st.booleans())
            else patients.is_alive_on(index_date - days(draw(st.integers(0, 400))))
        )
    if kind == 12:
        return registrations.practice_on(index_date).practice_id.fill_unknown()
    area = addresses.area_on(index_date)
    return area.status if draw(st.booleans()) else area.group("imd_quintile")


def _rows(table) -> dict:
    out = {}
    for row in table.to_pylist():
        pid = row.pop("patient_id")
        out[pid] = {k: _clean(v) for k, v in row.items()}
    return out


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=tables(), variables=st.lists(variable(), min_size=3, max_size=6), pop=st.booleans())
def test_duckdb_and_spark_agree(data, variables, pop):
    from pophealth.engines import spark_session

    spark_session().conf.set("spark.sql.shuffle.partitions", "1")
    with tempfile.TemporaryDirectory() as tmp:
        store = make_store(Path(tmp), data)
        ds = Dataset()
        if pop:
            ds.define_population(patients.is_alive_on(index_date) | events.exists_for_patient())
        for i, v in enumerate(variables):
            ds.add(f"v{i}", v)
        duck = _rows(run_dataset(store, ds, engine="duckdb", index_date=INDEX, output="arrow"))
        spark = _rows(run_dataset(store, ds, engine="spark", index_date=INDEX, output="arrow"))
    assert duck.keys() == spark.keys()
    for pid in duck:
        for name in duck[pid]:
            assert _same(duck[pid][name], spark[pid][name]), (
                pid,
                name,
                ds.variables[name].desc,
                duck[pid][name],
                spark[pid][name],
            )
