"""Spec: centiles over rows broken down by a value of each row — the median door-to-analgesia
minutes per month *by site*, each attendance in the group of its own site, a patient who
attended two sites in both — beside per-patient breakdowns, on every engine; and the value
or a breakdown taken from another selection of the rows refused (a column reads the row it
is on)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from pophealth.query import (
    Measures,
    QueryError,
    admissions,
    emergency_attendances,
    minutes_between,
    monthly,
    patients,
    run_measures,
)
from tests.spec.conftest import make_store

D = dt.date
JAN, FEB = monthly("2025-01-01", 2)


def _attendance(pid: str, day: int, wait: int, site: str, month: int = 1) -> dict:
    arrival = dt.datetime(2025, month, day, 10, 0)
    return {
        "patient_id": pid,
        "arrival_datetime": arrival,
        "first_analgesia_datetime": arrival + dt.timedelta(minutes=wait),
        "provider": site,
    }


def _store(tmp_path):
    """January: p1 (female) at site A (10, 30 minutes) and at site B (70); p2 (male) at A
    (20) and B (50, 90); p3 (female) at B (40). February: p1 at A (15)."""
    rows = [
        _attendance("p1", 2, 10, "A"),
        _attendance("p1", 9, 30, "A"),
        _attendance("p1", 16, 70, "B"),
        _attendance("p2", 3, 20, "A"),
        _attendance("p2", 10, 50, "B"),
        _attendance("p2", 17, 90, "B"),
        _attendance("p3", 4, 40, "B"),
        _attendance("p1", 5, 15, "A", month=2),
    ]
    sexes = {"p1": "female", "p2": "male", "p3": "female"}
    return make_store(
        tmp_path,
        {
            "patients": [{"patient_id": p, "sex": s} for p, s in sexes.items()],
            "emergency_attendances": rows,
        },
    )


def _waits(group_by) -> Measures:
    att = emergency_attendances.in_interval()
    m = Measures(intervals=[JAN, FEB])
    m.define_quantile(
        "wait",
        value=minutes_between(att.arrival_datetime, att.first_analgesia_datetime),
        rows=att,
        quantiles=(0.5,),
        group_by=group_by(att),
    )
    return m


def test_each_row_in_the_group_of_its_own_site(engine, tmp_path):
    out = run_measures(
        _store(tmp_path), _waits(lambda att: {"site": att.provider}), engine=engine,
        disclosure=False,
    )  # fmt: skip
    got = {
        (r.interval_start, r.site): (r.numerator, r.denominator, r.value) for r in out.itertuples()
    }
    assert got == {
        # A: 10, 20, 30 -> 20; B: 40, 50, 70, 90 -> (50 + 70) / 2
        (JAN[0], "A"): (3, 3, 20.0),
        (JAN[0], "B"): (4, 4, 60.0),
        (FEB[0], "A"): (1, 1, 15.0),
    }


def test_a_row_breakdown_beside_a_patient_breakdown(engine, tmp_path):
    out = run_measures(
        _store(tmp_path),
        _waits(lambda att: {"site": att.provider, "sex": patients.sex}),
        engine=engine,
        disclosure=False,
    )
    got = {(r.site, r.sex): r.value for r in out.itertuples() if r.interval_start == JAN[0]}
    # A: women 10, 30; men 20. B: women 70, 40; men 50, 90
    assert got == {("A", "female"): 20.0, ("A", "male"): 20.0, ("B", "female"): 55.0,
                   ("B", "male"): 70.0}  # fmt: skip


def test_one_measure_by_site_equals_one_measure_per_sites_rows(engine, tmp_path):
    store = _store(tmp_path)
    by_site = run_measures(
        store, _waits(lambda att: {"site": att.provider}), engine=engine, disclosure=False
    )
    for site in ("A", "B"):
        att = emergency_attendances.in_interval()
        att = att.where(att.provider == site)
        m = Measures(intervals=[JAN, FEB])
        m.define_quantile(
            "wait",
            value=minutes_between(att.arrival_datetime, att.first_analgesia_datetime),
            rows=att,
            quantiles=(0.5,),
        )
        alone = run_measures(store, m, engine=engine, disclosure=False)
        mine = by_site[by_site.site == site]
        assert list(alone.interval_start) == list(mine.interval_start)
        for c in ("numerator", "denominator", "value", "lower95_0cl", "upper95_0cl"):
            np.testing.assert_array_equal(alone[c].to_numpy(), mine[c].to_numpy())


def test_the_value_or_a_breakdown_from_other_rows_is_refused():
    att = emergency_attendances.in_interval()
    sited = emergency_attendances.where(emergency_attendances.provider == "A")
    m = Measures(intervals=[JAN])
    with pytest.raises(QueryError) as exc:
        m.define_quantile(
            "w",
            value=minutes_between(sited.arrival_datetime, sited.first_analgesia_datetime),
            rows=att,
        )
    assert "measure 'w': value: 'arrival_datetime' is taken from the rows of" in str(exc.value)
    with pytest.raises(QueryError) as exc:
        m.define_quantile(
            "w",
            value=minutes_between(att.arrival_datetime, att.first_analgesia_datetime),
            rows=att,
            group_by={"site": sited.provider},
        )
    assert "group_by[site]: 'provider' is taken from the rows of" in str(exc.value)
    with pytest.raises(QueryError) as exc:
        m.define_quantile(
            "w",
            value=minutes_between(att.arrival_datetime, att.first_analgesia_datetime),
            rows=att,
            group_by={"method": admissions.admission_method},
        )
    assert str(exc.value) == (
        "measure 'w': group_by[method] (admissions.admission_method) is one value per row of "
        "admissions, but the quantiles are over rows of emergency_attendances; a breakdown is "
        "one per patient, or one per row of emergency_attendances"
    )
