"""Differential test of the ways one run reads another's work: over random small stores,
random populations and random variables (the strategies of the engines' differential
test), on DuckDB,

* a population's "has a row" parts computed as semi-joins give the patients and values
  of the same rule written as counts (``count >= 1``, computed the plain way);
* a dataset told of its measures, then the measures on the same connection, give the
  dataset and the counts of fresh runs; and a narrower dataset after it, the fresh one.

A small deterministic sample runs in CI; ``POPHEALTH_DIFFERENTIAL_EXAMPLES`` widens it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pophealth.query import (
    Dataset,
    Measures,
    connect,
    events,
    index_date,
    medications,
    months,
    patients,
    registrations,
    run_dataset,
    run_measures,
)
from tests.spec.conftest import make_store
from tests.spec.test_differential import INDEX, SABA, SBP, tables, variable

EXAMPLES = int(os.environ.get("POPHEALTH_DIFFERENTIAL_EXAMPLES", "12"))
START = INDEX.replace(year=INDEX.year - 1)

#: "has a row" parts a population can require
HAS_ROWS = [
    registrations.registered_on(index_date),
    events.matching(SBP).exists_for_patient(),
    events.matching(SBP).in_last(months=12).exists_for_patient(),
    medications.matching(SABA).on_or_before(index_date).exists_for_patient(),
    events.where(events.value >= 140).exists_for_patient(),
    # a frame whose filter reads a per-patient value
    events.where(events.date > patients.date_of_birth + months(600)).exists_for_patient(),
]
OTHER_PARTS = [
    patients.is_alive_on(index_date),
    patients.age_on(index_date) >= 18,
    patients.sex == "female",
]


def _as_count(has_row):
    """The same condition as a count (not computed as a semi-join)."""
    frame = has_row.args[0]
    return frame.count_for_patient() >= 1


@st.composite
def populations(draw):
    """A rule that is ``&`` of "has a row" parts and others, and the same rule with the
    parts written as counts."""
    parts = draw(st.lists(st.sampled_from(HAS_ROWS), min_size=1, max_size=3))
    others = draw(st.lists(st.sampled_from(OTHER_PARTS), max_size=2))
    rule = counted = None
    for has_row in parts:
        rule = has_row if rule is None else rule & has_row
        c = _as_count(has_row)
        counted = c if counted is None else counted & c
    for o in others:
        rule, counted = rule & o, counted & o
    return rule, counted


def _dataset(population, variables) -> Dataset:
    ds = Dataset()
    ds.define_population(population)
    for i, v in enumerate(variables):
        ds.add(f"v{i}", v)
    return ds


def _measures(population, variables, extra) -> Measures:
    m = Measures(intervals=[(START, INDEX)])
    m.define_defaults(group_by={"sex": patients.sex})
    for i, v in enumerate(variables):
        num = v if v.dtype == "bool" else v.is_not_null()
        den = population & extra if i % 2 else population
        m.define_measure(f"m{i}", numerator=num, denominator=den)
    return m


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(["measure", "sex"]).reset_index(drop=True)


@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    data=tables(),
    pop=populations(),
    variables=st.lists(variable(), min_size=2, max_size=4),
    extra=st.sampled_from([*OTHER_PARTS, HAS_ROWS[1]]),
)
def test_shared_work_gives_the_answers_of_fresh_runs(data, pop, variables, extra):
    rule, counted = pop
    with tempfile.TemporaryDirectory() as tmp:
        store = make_store(Path(tmp), data)
        ds = _dataset(rule, variables)
        fresh = run_dataset(store, ds, index_date=INDEX)
        plain = run_dataset(store, _dataset(counted, variables), index_date=INDEX)
        pd.testing.assert_frame_equal(fresh, plain)

        m = _measures(rule, variables, extra)
        want = run_measures(store, m, disclosure=False)
        con = connect(store)
        got_data = run_dataset(con, ds, index_date=INDEX, measures=m)
        got = run_measures(con, m, disclosure=False)
        pd.testing.assert_frame_equal(got_data, fresh)
        pd.testing.assert_frame_equal(_sorted(got), _sorted(want))

        narrower = _dataset(rule & extra, variables)
        pd.testing.assert_frame_equal(
            run_dataset(con, narrower, index_date=INDEX),
            run_dataset(store, narrower, index_date=INDEX),
        )
