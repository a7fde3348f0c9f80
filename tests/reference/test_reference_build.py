"""`reference build` end to end: both IMD releases over the real folder (deciles equal the
official files exactly), subsets with optional files missing, and the linkage helpers."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pophealth.reference import loaders
from pophealth.reference._read import ReferenceDataError
from pophealth.reference.build import (
    ReferenceWarning,
    build_areas,
    build_reference_store,
    pollution_quintile,
)
from pophealth.reference.linkage import ATTRIBUTES, areas_release, areas_table, link_areas
from pophealth.reference.sources import source
from pophealth.schema import AREAS
from tests.reference.conftest import real


def test_pollution_quintile_ties_and_direction():
    v = pd.Series([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, np.nan])
    q = pollution_quintile(v)
    assert q.tolist()[:10] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]  # 5 = most polluted
    assert q.isna().tolist()[10]
    tied = pollution_quintile(pd.Series([1.0, 1.0, 1.0, 1.0, 2.0]))
    assert tied.nunique() == 2 and tied.iloc[0] == tied.iloc[3]  # ties share a quintile


@pytest.mark.shared_data
def test_iod2019_build_matches_official_files(built, file2, shared_data, population):
    store, report, areas = built["2019"]
    assert len(areas) == 32_844 and areas["lsoa_code"].is_unique
    assert list(areas.columns) == AREAS.column_names
    assert store.metadata["imd_release"] == "IoD2019"
    assert store.metadata["lsoa_vintage"] == "2011"
    m = areas.merge(file2, on="lsoa_code", suffixes=("", "_official"))
    assert len(m) == 32_844
    for c in ["imd_rank", "imd_decile"] + [f"{d}_decile" for d in loaders.DOMAINS]:
        assert (m[c] == m[f"{c}_official"]).all(), c
    assert (areas["imd_quintile"] == (areas["imd_decile"] + 1) // 2).all()
    assert (areas["core20"] == (areas["imd_decile"] <= 2)).all()
    assert int(areas["core20"].sum()) in range(6_567, 6_571)
    # air quality: the official components unchanged (native LSOA 2011)
    aq = loaders.load_air_quality(real(shared_data, "air_quality")).set_index("lsoa_code")
    a = areas.set_index("lsoa_code")
    for c in loaders.AIR_QUALITY:
        assert np.allclose(a[c].to_numpy(float), aq.loc[a.index, c].to_numpy(float))
    means = a.groupby("no2_quintile")["no2_component"].mean()
    assert means.is_monotonic_increasing and means.index.tolist() == [1, 2, 3, 4, 5]
    assert a["pm_quintile"].value_counts().between(0.15 * 32_844, 0.25 * 32_844).all()
    # population: ONS mid-2020, England total
    assert int(areas["population"].sum()) == 56_550_138
    # every attribute present for every LSOA 2011
    assert report.missing_values == {}
    assert areas["sub_icb"].str.fullmatch(r"E38\d{6}").all()
    assert areas["icb"].nunique() == 42
    assert "DERIVED" in " ".join(report.notes)
    assert "ESP2013 file equals the built-in pophealth.stats.ESP2013" in report.notes


@pytest.mark.shared_data
def test_boundaries_recorded_for_maps(built):
    from pophealth.reference.linkage import area_boundaries

    store, _, _ = built["2019"]
    assert store.metadata["boundaries"]["lsoa_vintage"] == "2011"
    geo = area_boundaries(store, codes=["E01000001", "E01000002", "X01000001"])
    assert sorted(f["id"] for f in geo["features"]) == ["E01000001", "E01000002"]


@pytest.mark.shared_data
def test_iod2019_fuel_poverty_through_the_lookup(built, fuel, lookup):
    _, _, areas = built["2019"]
    a = areas.set_index("lsoa_code")["fuel_poverty_pct"].astype(float)
    f = fuel.set_index("lsoa21_code")
    unchanged = lookup.loc[lookup["chgind"] == "U", "lsoa11_code"]
    unchanged = unchanged[unchanged.isin(a.index)]
    # U: the published % exactly (recomputing it from the counts moved 31 values by 0.01)
    assert (a[unchanged].to_numpy() == f.loc[unchanged, "pct_fuel_poor"].to_numpy(float)).all()
    # S: the parent's % is the households-weighted % of its pieces
    split = lookup[lookup["chgind"] == "S"]
    parent = split["lsoa11_code"].iloc[0]
    pieces = split.loc[split["lsoa11_code"] == parent, "lsoa21_code"]
    pct = 100 * f.loc[pieces, "households_fuel_poor"].sum() / f.loc[pieces, "households"].sum()
    assert a[parent] == pytest.approx(round(pct, 2), abs=0.006)
    # M: every part gets the merged LSOA's %
    merged = lookup[lookup["chgind"] == "M"]
    child = merged["lsoa21_code"].iloc[0]
    parts = merged.loc[merged["lsoa21_code"] == child, "lsoa11_code"]
    assert (a[parts] == f.loc[child, "pct_fuel_poor"]).all()
    every_merge = merged.set_index("lsoa11_code")["lsoa21_code"]
    every_merge = every_merge[every_merge.index.isin(a.index)]
    published = f.loc[every_merge.to_numpy(), "pct_fuel_poor"].to_numpy(float)
    assert (a[every_merge.index].to_numpy() == published).all()


@pytest.mark.shared_data
def test_iod2025_air_quality_of_one_parent_is_the_parent_value(built, lookup, shared_data):
    # U and S LSOAs 2021 have one LSOA 2011 parent: they carry its published component
    # exactly (float noise from the weighted mean moved 602 LSOAs across a PM quintile)
    _, _, areas = built["2025"]
    a = areas.set_index("lsoa_code")
    england = lookup[lookup["lsoa21_code"].str.startswith("E")]
    one = england.groupby("lsoa21_code")["lsoa11_code"].agg(["nunique", "first"])
    one = one[one["nunique"] == 1]["first"]
    aq = loaders.load_air_quality(real(shared_data, "air_quality")).set_index("lsoa_code")
    for c in loaders.AIR_QUALITY:
        got = a.loc[one.index, c].to_numpy(float)
        assert (got == aq.loc[one.to_numpy(), c].to_numpy(float)).all(), c
    assert len(one) > 33_000


@pytest.mark.shared_data
def test_iod2025_build_matches_official_file(built, imd2025, fuel):
    store, report, areas = built["2025"]
    assert len(areas) == 33_755 and areas["lsoa_code"].is_unique
    assert store.metadata["imd_release"] == "IoD2025"
    assert store.metadata["lsoa_vintage"] == "2021"
    m = areas.merge(imd2025, on="lsoa_code", suffixes=("", "_official"))
    assert len(m) == 33_755
    for c in ["imd_rank", "imd_decile", "imd_score"] + [f"{d}_decile" for d in loaders.DOMAINS]:
        assert (m[c] == m[f"{c}_official"]).all(), c
    f = fuel.set_index("lsoa21_code")["pct_fuel_poor"]
    a = areas.set_index("lsoa_code")
    assert (a["fuel_poverty_pct"].to_numpy(float) == f[a.index].to_numpy(float)).all()
    # whole people, and England's mid-2020 total to the person (rounding each LSOA
    # on its own lost 4 people)
    assert int(areas["population"].sum()) == 56_550_138
    assert a["no2_component"].notna().all()  # carried from LSOA 2011
    assert areas["lsoa_name"].notna().all() and areas["rural_urban"].notna().all()
    # MSOA 2021 for LSOAs in MSOAs absent from the MSOA lookup: reported, not invented
    assert report.missing_values == {"msoa_code": 355}


@pytest.mark.shared_data
def test_practices_table(built):
    store, report, _ = built["2019"]
    prac = store.read("practices").to_pandas().set_index("practice_id")
    assert len(prac) == 8_640
    assert report.practices["active"] == 6_859
    row = prac.loc["A81001"]
    assert (row["pcn_id"], row["sub_icb"], row["icb"]) == ("U89141", "E38000247", "E54000050")
    # practices and areas use the same sub-ICB/ICB codes
    areas = store.read("areas").to_pandas()
    assert set(prac["icb"].dropna()) <= set(areas["icb"])
    assert set(prac["sub_icb"].dropna()) <= set(areas["sub_icb"])


@pytest.mark.shared_data
def test_practices_join_the_areas_of_an_iod2025_build(built):
    # ONS recoded Surrey Heartlands and Sussex in 2024 (ICB E54000052 -> E54000063,
    # E54000053 -> E54000064): an IoD2025 store's practices must carry the 2024 codes of
    # its areas, or 300 practices (262 active) fall out of every ICB join.
    store, _, areas = built["2025"]
    prac = store.read("practices").to_pandas().set_index("practice_id")
    assert set(prac["icb"].dropna()) <= set(areas["icb"])
    assert set(prac["sub_icb"].dropna()) <= set(areas["sub_icb"])
    in_2019 = built["2019"][0].read("practices").to_pandas()
    assert prac["icb"].notna().sum() == in_2019["icb"].notna().sum()  # none lost
    row = prac.loc["H81002"]  # Knowle Green Medical, Staines: commissioner 92A
    assert (row["sub_icb"], row["icb"]) == ("E38000264", "E54000063")


@pytest.mark.shared_data
def test_linkage_counts_unknown_lsoas(built):
    store, _, _ = built["2019"]
    areas = areas_table(store)
    assert areas.num_rows == 32_844
    assert areas_release(store) == {"imd_release": "IoD2019", "lsoa_vintage": "2011"}
    frame = pd.DataFrame(
        {
            "patient_id": ["p1", "p2", "p3", "p4", "p5"],
            # 2011 LSOA, none, blank, an LSOA 2021 code (not in 2011 areas), Welsh LSOA
            "lsoa_code": ["E01000001", None, " ", "E01035762", "W01000001"],
        }
    )
    out, rep = link_areas(frame, areas)
    assert out["patient_id"].tolist() == ["p1", "p2", "p3", "p4", "p5"]  # nothing dropped
    assert out["area_status"].tolist() == [
        "known", "no_lsoa", "no_lsoa", "lsoa_not_in_areas", "lsoa_not_in_areas",
    ]  # fmt: skip
    assert (rep.rows, rep.known, rep.no_lsoa, rep.lsoa_not_in_areas) == (5, 1, 2, 2)
    assert rep.unknown_codes == ["E01035762", "W01000001"]
    assert out.loc[0, "imd_decile"] == 9 and pd.isna(out.loc[3, "imd_decile"])
    assert "4 (2 without an LSOA, 2 with an LSOA not in the areas table)" in rep.summary()


def test_link_areas_small(tmp_path):
    areas = pd.DataFrame({"lsoa_code": ["X01000001", "X01000002"], "imd_decile": [1, 10]})
    frame = pd.DataFrame({"lsoa_code": ["X01000002", "X01000009", "X01000002"]})
    out, rep = link_areas(frame, areas, attributes=["imd_decile"])
    assert out["imd_decile"].tolist()[0] == 10 and pd.isna(out["imd_decile"].iloc[1])
    assert rep.known == 2 and rep.lsoa_not_in_areas == 1
    with pytest.raises(KeyError, match="fuel"):
        link_areas(frame, areas, attributes=["fuel"])


def test_attributes_match_the_query_layer():
    query_tables = pytest.importorskip("pophealth.query.tables")
    assert tuple(query_tables.AREA_ATTRIBUTES) == ATTRIBUTES


def _subset(shared_data, tmp_path, keys):
    root = tmp_path / "ref"
    for key in keys:
        src = real(shared_data, key)
        target = root / src.relative_to(shared_data)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
    return root


@pytest.mark.shared_data
def test_build_with_optional_files_missing(shared_data, tmp_path):
    root = _subset(shared_data, tmp_path, ["imd2019_file1", "air_quality", "ruc11"])
    with pytest.warns(ReferenceWarning) as caught:
        areas, report = build_areas(root, "2019")
    assert len(areas) == 32_844
    assert areas["no2_quintile"].notna().all() and areas["rural_urban"].notna().all()
    assert areas["income_decile"].isna().all() and areas["fuel_poverty_pct"].isna().all()
    assert report.missing_values["population"] == 32_844
    assert any("File 2 missing" in str(w.message) for w in caught)
    assert any("fuel_poverty" in w for w in report.warnings)


@pytest.mark.shared_data
def test_build_2025_subset_into_existing_store(shared_data, tmp_path, built):
    root = _subset(shared_data, tmp_path, ["imd2025", "fuel_poverty", "lsoa21_subicb"])
    store_dir = tmp_path / "store"
    shutil.copytree(built["2019"][0].path, store_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReferenceWarning)
        store, report = build_reference_store(root, store_dir, "2025")
    assert store.metadata["imd_release"] == "IoD2025"
    assert store.row_counts()["areas"] == 33_755
    assert store.row_counts()["practices"] == 8_640  # no epraccur in the folder: kept
    assert len(store.metadata["provenance"]) == 2  # history kept
    assert set(report.files) == {"imd2025", "fuel_poverty", "lsoa21_subicb"}


@pytest.mark.shared_data
# (the partial folder's missing files are warned of too; only the LSOA warning is tested)
@pytest.mark.filterwarnings("ignore::pophealth.reference.build.ReferenceWarning")
def test_build_reports_address_lsoas_missing_from_areas(shared_data, tmp_path):
    import datetime as dt

    import pyarrow as pa

    from pophealth.schema import arrow_schema
    from pophealth.store import Store

    addresses = pa.table(
        {
            "patient_id": ["p1", "p2", "p3", "p4"],
            "start_date": [dt.date(2020, 1, 1)] * 4,
            "end_date": [None] * 4,
            "lsoa_code": ["E01000001", "E01000001", "X01000001", None],
            "care_home": [False] * 4,
        },
        schema=arrow_schema("addresses"),
    )
    store_dir = tmp_path / "store"
    Store.open_or_new(store_dir).write({"addresses": addresses}, provenance={"source": "test"})
    root = _subset(shared_data, tmp_path, ["imd2019_file1"])
    with pytest.warns(ReferenceWarning, match="1 of 2 distinct LSOA codes"):
        store, report = build_reference_store(root, store_dir, "2019")
    assert report.address_coverage == {
        "address_lsoas": 2,
        "address_lsoas_in_areas": 1,
        "address_lsoas_not_in_areas": 1,
        "addresses_without_lsoa": 1,
    }
    assert store.metadata["reference"]["address_coverage"]["address_lsoas_not_in_areas"] == 1
    assert store.row_counts()["addresses"] == 4  # carried over


def test_build_needs_the_imd_file(tmp_path):
    (tmp_path / "ref").mkdir()
    with (
        pytest.raises(ReferenceDataError, match="required reference file missing: imd2025"),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore", ReferenceWarning)
        build_areas(tmp_path / "ref", "2025")
    with pytest.raises(ValueError, match="2019, 2025"):
        build_areas(tmp_path / "ref", "2020")


def test_sources_layout_names_are_unique():
    from pophealth.reference.sources import SOURCES, markdown_table

    assert len({s.key for s in SOURCES}) == len(SOURCES)
    assert source("imd2019_file1").url.startswith("https://")
    assert "imd2019_file2" in markdown_table()
    doc = Path(__file__).resolve().parents[2] / "docs" / "reference-data.md"
    assert markdown_table() in doc.read_text()  # the documented table is the code's


def test_choropleth_offline():
    from pophealth.reference.maps import choropleth

    def square(code, x):
        ring = [[x, 51.0], [x + 0.01, 51.0], [x + 0.01, 51.01], [x, 51.01], [x, 51.0]]
        return {
            "type": "Feature",
            "id": code,
            "properties": {},
            "geometry": {"type": "Polygon", "coordinates": [ring]},
        }

    geo = {"type": "FeatureCollection", "features": [square("A", 0.0), square("B", 0.02)]}
    values = pd.DataFrame({"lsoa_code": ["A", "Z"], "pct": [12.5, 3.0]})
    fig = choropleth(values, geo, value="pct", title="t")
    assert fig.layout.map.style == "white-bg"  # no tile server
    traces = {t.name: t for t in fig.data}
    assert list(traces["pct"].locations) == ["A"] and list(traces["pct"].z) == [12.5]
    assert list(traces["no value"].locations) == ["B"]  # drawn grey, not left out
    assert 0.0 < fig.layout.map.center.lon < 0.03
    assert not fig.layout.map.layers  # no raster/vector tile sources
    with pytest.raises(KeyError):
        choropleth(values, geo, value="nope")
