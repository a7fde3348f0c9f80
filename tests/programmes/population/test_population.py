"""Population overview: numbers checked against an independent pandas computation on the
synthetic store (same rules written out by hand), then disclosure control checked."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from pophealth.codelists import codelist
from pophealth.commands.run import default_index_date, run_programmes
from pophealth.store import Store
from pophealth.synth import write_synthetic_store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_synthetic_store(
        tmp_path_factory.mktemp("pop") / "store", patients=3000, seed=7, progress=None
    )


@pytest.fixture(scope="module")
def result(store):
    (res,) = run_programmes(
        store, ["population"], index_date=default_index_date(store), engine="duckdb"
    )
    return res


def _by_hand(store: Store, date: dt.date) -> pd.DataFrame:
    """The registered population and asthma register, written directly in pandas."""
    p = store.read("patients").to_pandas()
    r = store.read("registrations").to_pandas()
    e = store.read("events").to_pandas()
    ts = pd.Timestamp(date)
    reg = r[
        (pd.to_datetime(r.start_date) <= ts)
        & (r.end_date.isna() | (pd.to_datetime(r.end_date) >= ts))
    ]
    alive = p[
        (pd.to_datetime(p.date_of_birth) <= ts)
        & (p.date_of_death.isna() | (pd.to_datetime(p.date_of_death) > ts))
    ]
    pop = alive[alive.patient_id.isin(reg.patient_id)].copy()
    e = e[pd.to_datetime(e.date) <= ts]
    dx = e[e.code.isin(codelist("asthma_diagnosis").codes_in("snomedct"))]
    res = e[e.code.isin(codelist("asthma_resolved").codes_in("snomedct"))]
    last_dx = dx.groupby("patient_id").date.max()
    last_res = res.groupby("patient_id").date.max()
    both = pd.DataFrame({"dx": last_dx}).join(pd.DataFrame({"res": last_res}), how="left")
    on = both[both.res.isna() | (both.res <= both.dx)].index
    pop["asthma"] = pop.patient_id.isin(on)
    return pop


def test_registered_population_and_asthma_prevalence_match_pandas(store, result):
    date = result.index_date
    pop = _by_hand(store, date)
    out = {o.name: o.frame for o in result.outputs}
    released_total = out["registered_population"]["patients"].iloc[0]
    assert abs(released_total - len(pop)) <= 2.5  # rounded to the nearest 5
    asthma = out["prevalence_overall"].set_index("measure").loc["asthma"]
    assert abs(asthma.numerator - pop.asthma.sum()) <= 2.5
    assert asthma.value == pytest.approx(100 * asthma.numerator / asthma.denominator)
    assert asthma.lower95_0cl < asthma.value < asthma.upper95_0cl


def test_no_released_count_is_between_1_and_7(result):
    for o in result.outputs:
        assert o.kind == "aggregate"
        for col in ("patients", "numerator", "denominator"):
            if col in o.frame:
                values = o.frame[col].dropna().to_numpy(float)
                assert not np.any((values >= 1) & (values <= 7)), (o.name, col)
                assert np.all(values % 5 == 0), (o.name, col)


def test_unknown_area_group_is_kept(result):
    by_q = {o.name: o.frame for o in result.outputs}["prevalence_by_imd_quintile"]
    assert "unknown" in set(by_q.imd_quintile)


def test_pyramid_covers_every_band(result):
    pyramid = {o.name: o.frame for o in result.outputs}["age_sex_pyramid"]
    assert {"0-4", "45-49", "90+"} <= set(pyramid.age_band)
