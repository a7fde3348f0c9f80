"""Every output of the population programme recomputed independently.

Two oracles, neither using the query layer:

* a hand-built store of edge cases (registration ending or starting on the index date,
  deaths on it, birthdays, addresses that end, move or are not geocoded, resolved and
  re-diagnosed registers, the diabetes age limit), each case copied 10 times so that every
  true count is a multiple of 10 and the released (rounded) tables must equal it exactly;
* the synthetic store, recomputed in pandas from the Parquet tables with the rules written
  out by hand, then checked cell by cell against the released tables: rounded to the
  nearest 5, withheld when 1-7, never the only withheld cell along a published total, and
  every percentage and Wilson limit recomputed from the released counts.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from scipy.stats import norm

from pophealth.codelists import codelist
from pophealth.commands.run import default_index_date, run_programmes
from pophealth.programmes.population import PROGRAMME, PYRAMID_BANDS, REGISTERS
from pophealth.query import connect
from pophealth.schema import arrow_schema
from pophealth.store import Store
from pophealth.synth import write_synthetic_store

# --- the rules, written out in pandas -------------------------------------------------


def _date(s: pd.Series) -> pd.Series:
    return pd.to_datetime(s)


def _band(age: int) -> str:
    top = PYRAMID_BANDS[-1]
    return f"{top}+" if age >= top else f"{age // 5 * 5}-{age // 5 * 5 + 4}"


def _matching(events: pd.DataFrame, name: str) -> pd.DataFrame:
    """Events whose (system, code) pair is in the code list."""
    keep = np.zeros(len(events), dtype=bool)
    for system, codes in codelist(name).codes.items():
        keep |= (events["system"] == system).to_numpy() & events["code"].isin(codes).to_numpy()
    return events[keep]


def by_hand(tables: dict[str, pd.DataFrame], date: dt.date) -> pd.DataFrame:
    """One row per patient registered and alive on ``date``, with age, band, sex, IMD
    quintile of the address on the date ("unknown" when there is none) and the registers."""
    day = pd.Timestamp(date)
    p, r, a = tables["patients"], tables["registrations"], tables["addresses"]
    areas, e = tables["areas"], tables["events"]
    # registered: start on or before the date; end_date is the last day registered (schema)
    active = r[(_date(r.start_date) <= day) & (r.end_date.isna() | (_date(r.end_date) >= day))]
    # alive: born on or before, not dead on or before
    alive = p[
        (_date(p.date_of_birth) <= day) & (p.date_of_death.isna() | (_date(p.date_of_death) > day))
    ]
    pop = alive[alive.patient_id.isin(active.patient_id)].copy().reset_index(drop=True)
    dob = _date(pop.date_of_birth)
    before_birthday = [
        (day.month, day.day) < (m, d) for m, d in zip(dob.dt.month, dob.dt.day, strict=True)
    ]
    pop["age"] = day.year - dob.dt.year - np.array(before_birthday, dtype=int)
    pop["age_band"] = pop["age"].map(_band)
    # the address on the date: latest start wins, then the alphabetically last LSOA
    # (an ungeocoded address loses a tie)
    on = a[(_date(a.start_date) <= day) & (a.end_date.isna() | (_date(a.end_date) >= day))].copy()
    on["_tie"] = on.lsoa_code.fillna("")
    on = on.sort_values(["patient_id", "start_date", "_tie"]).groupby("patient_id").tail(1)
    pop = pop.merge(on[["patient_id", "lsoa_code"]], on="patient_id", how="left")
    pop = pop.merge(areas[["lsoa_code", "imd_quintile"]], on="lsoa_code", how="left")
    pop["imd_quintile"] = [
        "unknown" if pd.isna(q) else str(int(q)) for q in pop.pop("imd_quintile")
    ]
    e = e[_date(e.date) <= day]
    for reg in REGISTERS:
        dx = pd.concat([_matching(e, name) for name in reg.diagnosis])
        on_register = set(dx.patient_id)
        if reg.resolved:
            last = dx.groupby("patient_id").date.max().rename("dx")
            res = _matching(e, reg.resolved).groupby("patient_id").date.max().rename("res")
            both = pd.concat([last, res], axis=1).dropna(subset=["dx"])
            on_register = set(both[both.res.isna() | (both.res <= both.dx)].index)
        pop[f"{reg.name}_den"] = pop["age"] >= reg.min_age
        pop[reg.name] = pop.patient_id.isin(on_register) & pop[f"{reg.name}_den"]
    return pop


def round5(x):
    return 5 * np.floor(np.asarray(x, dtype=float) / 5 + 0.5)


def wilson(x, n, confidence):
    """Wilson score limits (PHEindicatormethods R/utils.R, as in PROGRAMMES.md 12.1)."""
    x, n = np.asarray(x, float), np.asarray(n, float)
    z = norm.ppf(1 - (1 - confidence) / 2)
    root = z * np.sqrt(z**2 + 4 * x * (1 - x / n))
    return (2 * x + z**2 - root) / (2 * (n + z**2)), (2 * x + z**2 + root) / (2 * (n + z**2))


def test_wilson_oracle_matches_the_published_vectors():
    lo, hi = wilson([20, 1], [100, 100], 0.95)
    assert lo == pytest.approx([0.13337, 0.00177], abs=5e-6)
    assert hi == pytest.approx([0.28883, 0.05449], abs=5e-6)


# --- the edge-case store --------------------------------------------------------------

INDEX = dt.date(2025, 3, 31)
DAY = dt.timedelta(days=1)
SINCE = dt.date(2000, 1, 1)


def _code(name: str) -> str:
    return sorted(codelist(name).codes_in("snomedct"))[0]


def _cases():
    ast, res, dm = _code("asthma_diagnosis"), _code("asthma_resolved"), _code("diabetes_type2")
    home = [(SINCE, None, "A1")]
    always = [(SINCE, None)]
    later = INDEX + DAY
    # name: date of birth, sex, date of death, registrations, addresses, events
    return {
        "reg_ends_on_index": (dt.date(1980, 1, 1), "female", None, [(SINCE, INDEX)], home, []),
        "reg_ended_day_before": (
            dt.date(1980, 1, 1), "female", None, [(SINCE, INDEX - DAY)], home, []
        ),
        "reg_starts_on_index": (dt.date(1980, 1, 1), "male", None, [(INDEX, None)], home, []),
        "reg_starts_day_after": (dt.date(1980, 1, 1), "male", None, [(later, None)], home, []),
        "died_on_index": (dt.date(1950, 1, 1), "male", INDEX, always, home, []),
        "died_day_after": (dt.date(1950, 1, 1), "male", INDEX + DAY, always, home, []),
        "two_registrations": (
            dt.date(1990, 6, 1), "female", None, [(SINCE, None), (dt.date(2010, 1, 1), None)],
            [(SINCE, None, "A3")], [],
        ),
        "born_on_index": (INDEX, "female", None, [(INDEX, None)], [(INDEX, None, "A3")], []),
        "five_tomorrow": (dt.date(2020, 4, 1), "male", None, always, [(SINCE, None, "A3")], []),
        "ninety_today": (dt.date(1935, 3, 31), "female", None, always, [(SINCE, None, "A4")], []),
        "no_address_on_index": (
            dt.date(1970, 1, 1), "female", None, always,
            [(SINCE, INDEX - DAY, "A1"), (INDEX + DAY, None, "A5")], [],
        ),
        "lsoa_not_in_areas": (dt.date(1970, 1, 1), "male", None, always, [(SINCE, None, "ZZ")], []),
        "not_geocoded": (dt.date(1970, 1, 1), "female", None, always, [(SINCE, None, None)], []),
        "moved": (
            dt.date(1970, 1, 1), "male", None, always,
            [(SINCE, None, "A1"), (dt.date(2020, 1, 1), None, "A5")], [],
        ),
        "asthma": (dt.date(1985, 1, 1), "female", None, always, home, [(ast, SINCE)]),
        "asthma_dx_on_index": (dt.date(1985, 1, 1), "female", None, always, home, [(ast, INDEX)]),
        "asthma_dx_after": (dt.date(1985, 1, 1), "female", None, always, home, [(ast, later)]),
        "asthma_resolved": (
            dt.date(1985, 1, 1), "male", None, always, [(SINCE, None, "A2")],
            [(ast, SINCE), (res, dt.date(2015, 1, 1))],
        ),
        "asthma_resolved_after_index": (
            dt.date(1985, 1, 1), "male", None, always, [(SINCE, None, "A2")],
            [(ast, SINCE), (res, INDEX + DAY)],
        ),
        "asthma_rediagnosed": (
            dt.date(1985, 1, 1), "male", None, always, [(SINCE, None, "A2")],
            [(ast, SINCE), (res, dt.date(2015, 1, 1)), (ast, dt.date(2020, 1, 1))],
        ),
        "asthma_left_practice": (
            dt.date(1985, 1, 1), "male", None, [(SINCE, dt.date(2020, 1, 1))],
            [(SINCE, None, "A2")], [(ast, SINCE)],
        ),
        "diabetes_16": (dt.date(2008, 6, 1), "female", None, always, [(SINCE, None, "A3")],
                        [(dm, dt.date(2024, 1, 1))]),
        "diabetes_17_today": (dt.date(2008, 3, 31), "female", None, always,
                              [(SINCE, None, "A3")], [(dm, dt.date(2024, 1, 1))]),
        "sex_unknown": (dt.date(1970, 1, 1), "unknown", None, always, [(SINCE, None, "A4")], []),
    }  # fmt: skip


def _table(name: str, rows: list[dict]) -> pa.Table:
    schema = arrow_schema(name)
    return pa.table({f.name: [row.get(f.name) for row in rows] for f in schema}, schema=schema)


def edge_tables(copies: int = 10) -> dict[str, pa.Table]:
    patients, regs, addrs, events = [], [], [], []
    for case, (dob, sex, dod, periods, homes, codes) in _cases().items():
        for k in range(copies):
            pid = f"{case}_{k}"
            patients.append(
                dict(patient_id=pid, date_of_birth=dob, sex=sex, date_of_death=dod,
                     ethnicity_5="unknown", ethnicity_16="Z")
            )  # fmt: skip
            regs += [
                dict(patient_id=pid, practice_id="A81001", start_date=s, end_date=e)
                for s, e in periods
            ]
            addrs += [
                dict(patient_id=pid, start_date=s, end_date=e, lsoa_code=lsoa, care_home=False)
                for s, e, lsoa in homes
            ]
            events += [dict(patient_id=pid, system="snomedct", code=c, date=d) for c, d in codes]
    areas = [
        dict(lsoa_code=f"A{q}", imd_release="synthetic", imd_quintile=q, imd_decile=2 * q - 1,
             core20=q == 1)
        for q in range(1, 6)
    ]  # fmt: skip
    rows = {"patients": patients, "registrations": regs, "addresses": addrs, "events": events}
    return {name: _table(name, r) for name, r in (rows | {"areas": areas}).items()}


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    tables = edge_tables()
    store = Store.open_or_new(tmp_path_factory.mktemp("edge") / "s").write(tables, provenance={})
    result = PROGRAMME.run(connect(store), index_date=INDEX, engine="duckdb")
    frames = {n: t.to_pandas() for n, t in tables.items()}
    return {o.name: o.frame for o in result.outputs}, by_hand(frames, INDEX)


def test_edge_cases_registered_population(edge):
    out, pop = edge
    registered = {pid.rsplit("_", 1)[0] for pid in pop.patient_id}
    assert set(_cases()) - registered == {
        "reg_ended_day_before", "reg_starts_day_after", "died_on_index", "asthma_left_practice"
    }  # fmt: skip
    assert len(pop) == 10 * 20
    assert out["registered_population"]["patients"].tolist() == [200]


def test_edge_cases_pyramid(edge):
    out, pop = edge
    table = out["age_sex_pyramid"].set_index(["age_band", "sex"])["patients"]
    truth = pop.groupby(["age_band", "sex"]).size()
    assert table.loc[("0-4", "female")] == 10  # born on the index date: age 0
    assert table.loc[("0-4", "male")] == 10  # five tomorrow: still 4
    assert table.loc[("90+", "female")] == 10  # ninety today
    assert table.loc[("55-59", "unknown")] == 10
    for key, n in truth.items():
        assert table.loc[key] == n, key
    assert table.sum() == len(pop)


def test_edge_cases_prevalence(edge):
    out, pop = edge
    by_q = out["prevalence_by_imd_quintile"].set_index(["measure", "imd_quintile"])
    overall = out["prevalence_overall"].set_index("measure")
    # no address on the date, an LSOA outside the areas table, an ungeocoded address
    assert by_q.loc[("asthma", "unknown"), "denominator"] == 30
    assert by_q.loc[("asthma", "5"), "denominator"] == 10  # moved: the later address
    # asthma: diagnosed, diagnosed on the index date, resolved only after it, re-diagnosed
    assert overall.loc["asthma", "numerator"] == 40
    assert overall.loc["diabetes", ["numerator", "denominator"]].tolist() == [10, 200 - 30]
    for reg in REGISTERS:
        truth = pop.groupby("imd_quintile")[[reg.name, f"{reg.name}_den"]].sum()
        got = by_q.loc[reg.name, ["numerator", "denominator"]]
        assert got.to_numpy().tolist() == truth.to_numpy().tolist(), reg.name
        assert overall.loc[reg.name, "numerator"] == pop[reg.name].sum()
        assert overall.loc[reg.name, "denominator"] == pop[f"{reg.name}_den"].sum()


# --- the synthetic store ----------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    store = write_synthetic_store(
        tmp_path_factory.mktemp("pop") / "store", patients=2000, seed=11, progress=None
    )
    date = default_index_date(store)
    (result,) = run_programmes(store, ["population"], index_date=date, engine="duckdb")
    tables = {
        t: store.read(t).to_pandas()
        for t in ("patients", "registrations", "addresses", "areas", "events")
    }
    return {o.name: o.frame for o in result.outputs}, by_hand(tables, date)


def _check_cells(released: pd.Series, truth: pd.Series, notes: pd.Series, what: str) -> None:
    """Each released count is the true one rounded to 5, or withheld with a note; every true
    count of 1-7 is withheld."""
    released, truth = released.astype(float), truth.astype(float)
    assert released.index.equals(truth.index), what
    withheld = released.isna()
    assert (released[~withheld] == round5(truth[~withheld])).all(), what
    assert withheld[(truth >= 1) & (truth <= 7)].all(), what
    assert notes[withheld].notna().all(), what


def _no_lone_withheld_cell(withheld: pd.Series, what: str) -> None:
    """Cells along a published total: never exactly one withheld (it would be the total
    minus the rest)."""
    assert withheld.sum() != 1, what


def test_registered_population_recomputed(synthetic):
    out, pop = synthetic
    assert len(pop) > 1000
    assert out["registered_population"]["patients"].tolist() == [round5(len(pop))]


def test_pyramid_recomputed_cell_by_cell(synthetic):
    out, pop = synthetic
    table = out["age_sex_pyramid"].set_index(["age_band", "sex"])
    bands = [f"{lo}-{lo + 4}" for lo in PYRAMID_BANDS[:-1]] + [f"{PYRAMID_BANDS[-1]}+"]
    sexes = list(dict.fromkeys(["male", "female", *sorted(pop.sex.unique())]))
    grid = pd.MultiIndex.from_product([bands, sexes], names=["age_band", "sex"])
    truth = pop.groupby(["age_band", "sex"]).size().reindex(grid, fill_value=0)
    # every band of every sex is a row (an empty band is 0, not missing), in band order
    assert list(table.index) == list(grid)
    _check_cells(table["patients"], truth, table["disclosure_note"], "pyramid")
    for sex in sexes:  # each sex's cells add up to its total, part of the published total
        _no_lone_withheld_cell(table.xs(sex, level="sex")["patients"].isna(), sex)


def test_prevalence_by_quintile_recomputed_cell_by_cell(synthetic):
    out, pop = synthetic
    table = out["prevalence_by_imd_quintile"].set_index(["measure", "imd_quintile"])
    overall = out["prevalence_overall"].set_index("measure")
    assert "unknown" in set(pop.imd_quintile)  # the store has patients without a known area
    for reg in REGISTERS:
        truth = pop.groupby("imd_quintile")[[reg.name, f"{reg.name}_den"]].sum()
        got = table.loc[reg.name].reindex(truth.index)
        assert got.index.tolist() == ["1", "2", "3", "4", "5", "unknown"]
        notes = got["disclosure_note"]
        _check_cells(got["numerator"], truth[reg.name], notes, f"{reg.name} numerator")
        _check_cells(got["denominator"], truth[f"{reg.name}_den"], notes, f"{reg.name} den")
        # a numerator whose complement n - x is 1-7 is withheld too
        comp = truth[f"{reg.name}_den"] - truth[reg.name]
        assert got["numerator"][(comp >= 1) & (comp <= 7)].isna().all()
        # the overall row is the published total of the quintiles
        _no_lone_withheld_cell(got["numerator"].isna(), f"{reg.name} numerators")
        _no_lone_withheld_cell(got["denominator"].isna(), f"{reg.name} denominators")
        total_x, total_n = truth[reg.name].sum(), truth[f"{reg.name}_den"].sum()
        assert total_n == pop[f"{reg.name}_den"].sum()  # nobody lost from the breakdown
        assert overall.loc[reg.name, "numerator"] == round5(total_x)
        assert overall.loc[reg.name, "denominator"] == round5(total_n)


@pytest.mark.parametrize("name", ["prevalence_by_imd_quintile", "prevalence_overall"])
def test_percentages_and_limits_come_from_the_released_counts(synthetic, name):
    out, _ = synthetic
    t = out[name]
    x, n = t["numerator"].to_numpy(float), t["denominator"].to_numpy(float)
    shown = ~np.isnan(x) & ~np.isnan(n)
    assert shown.any()
    assert np.isnan(t["value"].to_numpy(float)[~shown]).all()
    assert t["value"][shown].to_numpy() == pytest.approx(100 * x[shown] / n[shown])
    for level, label in ((0.95, "95_0"), (0.998, "99_8")):
        lo, hi = wilson(x[shown], n[shown], level)
        assert t[f"lower{label}cl"][shown].to_numpy() == pytest.approx(100 * lo, abs=1e-9)
        assert t[f"upper{label}cl"][shown].to_numpy() == pytest.approx(100 * hi, abs=1e-9)
        assert np.isnan(t[f"lower{label}cl"].to_numpy(float)[~shown]).all()
