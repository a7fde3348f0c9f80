"""A connection kept open (a web app keeps one) does not gather tables run after run: the
small literal tables and materialised steps of a measures run are dropped when it ends,
whichever way it counted."""

from __future__ import annotations

import datetime as dt

import pytest

from pophealth.codelists import Codelist
from pophealth.query import (
    Measures,
    connect,
    events,
    index_date,
    monthly,
    registrations,
    run_measures,
)
from pophealth.query.timeline import Timeline
from tests.spec.conftest import ENGINES, make_store

D = dt.date
SBP = Codelist.of("snomedct", ["271649006"], name="sbp")


def _tables():
    regs = [{"patient_id": p, "practice_id": "A1", "start_date": D(2000, 1, 1)} for p in ("1", "2")]
    ev = [{"patient_id": "1", "date": D(2024, 2, 10), "code": "271649006", "value": 150.0}]
    return {"registrations": regs, "events": ev}


def _working_tables(con) -> set[str]:
    names = set(con.con.list_tables())
    return {n for n in names if n.startswith(("_pophealth_lit_", "ibis_cache"))}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("way", ["masks", "change_points", "paired", "single"])
def test_a_measures_run_leaves_no_tables_behind(engine, way, tmp_path, monkeypatch):
    monkeypatch.setattr(Timeline, "use_masks", way == "masks")
    store = make_store(tmp_path, _tables())
    sbp = events.matching(SBP).in_last(months=3).last_day_for_patient(rule="min").value
    # the index date used as a value: neither masks nor change points can count it
    days_since = events.matching(SBP).last_for_patient().date.days_until(index_date)
    numerator = (days_since < 40) if way == "paired" else (sbp >= 140)
    intervals = monthly("2024-01-01", 4) if way != "single" else monthly("2024-04-01", 1)
    m = Measures(intervals=intervals)
    m.define_measure(
        "high", numerator=numerator, denominator=registrations.registered_on(index_date)
    )
    con = connect(store, engine)
    before = _working_tables(con)
    out = run_measures(con, m, engine=engine, disclosure=False)
    assert out.attrs["evaluation"] == {"high": way}
    assert out["denominator"].sum() == 2 * len(intervals)
    assert _working_tables(con) == before
