"""The population charts show the released tables, say what they show, never draw a
withheld count as 0 and keep the unknown-area group off the deprivation gradient."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from pophealth.commands.run import default_index_date, run_programmes
from pophealth.programmes import population
from pophealth.programmes.population import OKABE_ITO, REGISTERS
from pophealth.synth import write_synthetic_store

BANDS = [f"{lo}-{lo + 4}" for lo in range(0, 90, 5)] + ["90+"]


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    store = write_synthetic_store(
        tmp_path_factory.mktemp("pop") / "store", patients=2000, seed=7, progress=None
    )
    (res,) = run_programmes(
        store, ["population"], index_date=default_index_date(store), engine="duckdb"
    )
    return res


def _figure(result, title):
    return next(f for s in result.sections for f in s.figures if f.title == title)


def _table(result, name):
    return next(o.frame for o in result.outputs if o.name == name)


def test_pyramid_bars_are_the_table_and_withheld_cells_are_marked(result):
    fig = _figure(result, "Age and sex")
    table = _table(result, "age_sex_pyramid")
    assert table["patients"].isna().any()  # the store has suppressed cells to show
    for sex, sign in (("male", -1), ("female", 1)):
        part = table[table["sex"] == sex].set_index("age_band").reindex(BANDS)
        bars = next(t for t in fig.figure.data if t.type == "bar" and t.name == sex)
        drawn = pd.Series(np.asarray(bars.x, dtype=float) * sign, index=list(bars.y))
        assert drawn.reindex(BANDS).equals(part["patients"].astype(float)), sex
        marks = [t for t in fig.figure.data if t.type == "scatter" and t.name.startswith(sex)]
        marked = {y for t in marks for y, text in zip(t.y, t.text, strict=True) if text == "[c]"}
        assert marked == set(part.index[part["patients"].isna()]), sex
        assert all(np.sign(x) == sign for t in marks for x in t.x)
    assert "[c]" in fig.caption


def test_pyramid_axis_is_in_band_order_with_positive_ticks():
    # men have no one in most bands, women only in some: the axis must still run 0-4 ... 90+
    released = pd.DataFrame(
        {
            "age_band": ["90+", "0-4", "45-49"],
            "sex": ["female", "male", "female"],
            "patients": [20.0, 15.0, np.nan],
        }
    )
    fig = population._pyramid_figure(released)
    assert list(fig.layout.yaxis.categoryarray) == BANDS
    assert fig.layout.yaxis.categoryorder == "array"
    assert all(not str(t).startswith(("-", "−")) for t in fig.layout.xaxis.ticktext)
    assert sorted(fig.layout.xaxis.tickvals) == list(fig.layout.xaxis.tickvals)
    assert "patients" in fig.layout.xaxis.title.text
    assert "age" in fig.layout.yaxis.title.text


def test_pyramid_table_has_every_band_and_sex():
    people = pd.DataFrame(
        {"age_band": ["0-4"] * 9 + ["90+"] * 8 + ["50-54"], "sex": ["male"] * 17 + ["unknown"]}
    )
    table = population._pyramid(people)
    assert len(table) == len(BANDS) * 3  # male, female, unknown
    female = table[table["sex"] == "female"]
    assert list(female["age_band"]) == BANDS and (female["patients"] == 0).all()
    assert list(table["sex"][:3]) == ["male", "female", "unknown"]


def test_pyramid_caption_says_other_sexes_are_only_in_the_table():
    people = pd.DataFrame({"age_band": ["0-4"] * 20, "sex": ["male"] * 10 + ["unknown"] * 10})
    pyramid = population._pyramid(people)
    assert "unknown" in population._other_sexes(pyramid)


def test_pyramid_refuses_to_drop_patients_without_a_band():
    people = pd.DataFrame({"age_band": ["0-4", None], "sex": ["male", "male"]})
    with pytest.raises(ValueError, match="1 patients without an age band"):
        population._pyramid(people)


def test_prevalence_lines_are_the_table(result):
    fig = _figure(result, "Register prevalence by IMD quintile")
    table = _table(result, "prevalence_by_imd_quintile")
    labels = {r.name: r.label for r in REGISTERS}
    lines = [t for t in fig.figure.data if t.mode == "markers+lines"]
    assert [t.name for t in lines] == [r.label for r in REGISTERS]
    assert len({t.line.color for t in lines}) == len(lines)
    assert {t.line.color for t in lines} <= set(OKABE_ITO)
    for name, part in table.groupby("measure"):
        line = next(t for t in lines if t.name == labels[name])
        rows = part.set_index("imd_quintile").reindex(["1", "2", "3", "4", "5"])
        assert list(line.x) == ["1", "2", "3", "4", "5"]
        np.testing.assert_array_equal(np.asarray(line.y, float), rows["value"].to_numpy(float))
        np.testing.assert_allclose(
            np.asarray(line.error_y.array, float),
            (rows["upper95_0cl"] - rows["value"]).to_numpy(float),
        )
        np.testing.assert_allclose(
            np.asarray(line.error_y.arrayminus, float),
            (rows["value"] - rows["lower95_0cl"]).to_numpy(float),
        )
    assert "unknown" in fig.figure.layout.xaxis.title.text
    assert "%" in fig.figure.layout.yaxis.title.text


def test_unknown_area_is_its_own_point_not_part_of_the_gradient(result):
    fig = _figure(result, "Register prevalence by IMD quintile")
    table = _table(result, "prevalence_by_imd_quintile")
    for trace in fig.figure.data:
        if "lines" in trace.mode:
            assert "unknown" not in list(trace.x)
    shown = table[(table["imd_quintile"] == "unknown") & table["value"].notna()]
    assert len(shown)
    points = [t for t in fig.figure.data if t.mode == "markers" and list(t.x) == ["unknown"]]
    assert len(points) == len(shown)
    assert list(fig.figure.layout.xaxis.categoryarray) == ["1", "2", "3", "4", "5", "unknown"]


def test_withheld_prevalence_points_are_named_in_the_caption(result):
    fig = _figure(result, "Register prevalence by IMD quintile")
    table = _table(result, "prevalence_by_imd_quintile")
    hidden = table[table["value"].isna()]
    assert len(hidden)
    assert "suppressed" in fig.caption
    for name in hidden["measure"].unique():
        assert next(r.label for r in REGISTERS if r.name == name) in fig.caption


def test_a_lone_small_lsoa_is_protected_in_the_map(monkeypatch):
    """The LSOA counts add up to a published total (registered patients less the unknown
    area group), so one withheld LSOA needs a second."""
    import pophealth.reference.linkage as linkage
    import pophealth.reference.maps as maps

    seen = {}

    def fake_choropleth(released, geojson, **kw):
        seen["released"] = released
        return object()

    monkeypatch.setattr(maps, "choropleth", fake_choropleth)
    monkeypatch.setattr(
        linkage, "area_boundaries", lambda store, codes: {"features": [{} for _ in codes]}
    )

    class Backend:
        class store:  # noqa: N801 - stands in for a Store
            metadata = {"boundaries": {"path": "x"}}

    people = pd.DataFrame({"lsoa_code": ["A"] * 150 + ["B"] * 30 + ["C"] * 15 + ["D"] * 4})
    assert population.area_map(Backend(), people) is not None
    released = seen["released"].set_index("lsoa_code")["patients"]
    assert np.isnan(released["D"])
    assert released.isna().sum() == 2


def test_headline_when_the_total_is_suppressed(tmp_path):
    import pyarrow as pa

    from pophealth.query import connect
    from pophealth.schema import arrow_schema
    from pophealth.store import Store

    def table(name, rows):
        schema = arrow_schema(name)
        n = len(next(iter(rows.values())))
        return pa.table({f.name: rows.get(f.name, [None] * n) for f in schema}, schema=schema)

    pids = ["p1", "p2", "p3"]
    since = dt.date(2000, 1, 1)
    tables = {
        "patients": table(
            "patients",
            {"patient_id": pids, "date_of_birth": [since] * 3, "sex": ["female"] * 3,
             "ethnicity_5": ["unknown"] * 3, "ethnicity_16": ["Z"] * 3},
        ),
        "registrations": table(
            "registrations",
            {"patient_id": pids, "practice_id": ["A81001"] * 3, "start_date": [since] * 3},
        ),
    }  # fmt: skip
    store = Store.open_or_new(tmp_path / "s").write(tables, provenance={})
    res = population.PROGRAMME.run(connect(store), index_date=dt.date(2025, 3, 31), engine="duckdb")
    (headline,) = res.headline.values()
    assert headline == "1-7 (suppressed)"
    assert "nan" not in res.sections[0].text
