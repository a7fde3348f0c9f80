"""Every loader over the real official files, checked against the published totals and
the checks in ../shared/data/README.md."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pophealth.reference import loaders
from tests.reference.conftest import real

pytestmark = pytest.mark.shared_data


def _deciles_balanced(series: pd.Series) -> None:
    counts = series.value_counts()
    assert sorted(counts.index) == list(range(1, 11))
    # 32,844 LSOAs (IoD2019) in ten deciles of 3,284 or 3,285
    assert counts.sum() == 32_844 and counts.min() >= 3284 and counts.max() <= 3285


def test_file1_thousands_separators_and_ties(shared_data, file2):
    f1 = loaders.load_imd2019_file1(real(shared_data, "imd2019_file1"))
    assert len(f1) == 32_844 and f1["lsoa_code"].is_unique
    assert f1["lsoa_code"].str.fullmatch(r"E01\d{6}").all()
    # "29,199" in the CSV is read as 29199
    row = f1.set_index("lsoa_code").loc["E01000001"]
    assert row["imd_rank"] == 29_199 and row["imd_decile"] == 9
    assert f1["imd_rank"].min() == 1 and f1["imd_rank"].max() == 32_844
    assert f1["imd_rank"].duplicated().sum() == 26  # the official file has tied ranks
    _deciles_balanced(f1["imd_decile"])
    # File 1 and File 2 agree exactly
    both = f1.merge(file2, on="lsoa_code", suffixes=("", "_2"))
    assert len(both) == 32_844
    assert (both["imd_rank"] == both["imd_rank_2"]).all()
    assert (both["imd_decile"] == both["imd_decile_2"]).all()


def test_file2_domains(file2):
    assert len(file2) == 32_844
    for d in loaders.DOMAINS:
        _deciles_balanced(file2[f"{d}_decile"])
        assert file2[f"{d}_rank"].between(1, 32_844).all()


def test_file3_decimal_integers(shared_data):
    f3 = loaders.load_imd2019_file3(real(shared_data, "imd2019_file3"))
    assert len(f3) == 32_844
    assert str(f3["idaci_rank"].dtype) == "Int64"
    row = f3.set_index("lsoa_code").loc["E01000001"]  # written "32806.00", "10.00"
    assert row["idaci_rank"] == 32_806 and row["idaci_decile"] == 10
    _deciles_balanced(f3["idaopi_decile"])


def test_file6_published_total(shared_data):
    f6 = loaders.load_imd2019_file6(real(shared_data, "imd2019_file6"))
    assert int(f6["pop_total"].sum()) == 54_728_204
    assert f6.set_index("lsoa_code").loc["E01000001", "pop_total"] == 1_296  # "1,296"


def test_file8_air_quality_matches_subset_file(shared_data):
    f8 = loaders.load_imd2019_file8(real(shared_data, "imd2019_file8"))
    aq = loaders.load_air_quality(real(shared_data, "air_quality"))
    assert len(f8) == len(aq) == 32_844
    m = f8.merge(aq, on="lsoa_code", suffixes=("", "_aq"))
    for c in loaders.AIR_QUALITY:
        assert np.allclose(m[c].astype(float), m[f"{c}_aq"].astype(float))
    assert aq["air_quality_indicator"].min() == pytest.approx(0.32)
    assert aq["air_quality_indicator"].max() == pytest.approx(1.90)
    assert aq["no2_component"].median() == pytest.approx(0.41)
    assert f8["income_domain_numerator"].isna().sum() > 0  # blanks kept as nulls


def test_file9_and_derived_score(shared_data):
    f9 = loaders.load_imd2019_file9(real(shared_data, "imd2019_file9"))
    f2 = loaders.load_imd2019_file2(real(shared_data, "imd2019_file2"))
    score = pd.Series(loaders.derived_imd2019_score(f9).to_numpy(), index=f9["lsoa_code"])
    ranked = score.reindex(f2.sort_values("imd_rank")["lsoa_code"]).to_numpy()
    # README check: sorted by official rank, the derived score never rises by > 0.001
    assert np.diff(ranked).max() <= 0.001 + 1e-9
    combined = pd.read_csv(shared_data / "imd2019" / "iod2019_lsoa11_combined.csv")
    expected = combined.set_index("lsoa11cd")["imd_score_derived"]
    assert np.allclose(score.reindex(expected.index).to_numpy(), expected.to_numpy(), atol=5e-4)


def test_imd2025(imd2025):
    assert len(imd2025) == 33_755 and imd2025["lsoa_code"].is_unique
    assert imd2025["imd_rank"].max() == 33_755
    by_rank = imd2025.sort_values("imd_rank")["imd_score"].to_numpy(dtype=float)
    assert (np.diff(by_rank) <= 1e-9).all()  # score never increases as rank increases
    for c in ["imd_decile"] + [f"{d}_decile" for d in loaders.DOMAINS]:
        assert sorted(imd2025[c].unique()) == list(range(1, 11))


def test_fuel_poverty_published_totals(fuel):
    assert len(fuel) == 33_755
    assert int(fuel["households"].sum()) == 24_568_372
    assert int(fuel["households_fuel_poor"].sum()) == 2_801_647
    assert fuel["pct_fuel_poor"].min() == pytest.approx(1.46)
    assert fuel["pct_fuel_poor"].max() == pytest.approx(61.5)


@pytest.mark.slow  # openpyxl reads the 33,761-row workbook in ~6 s of CPU
def test_fuel_poverty_official_workbook_table4_equals_csv(shared_data, fuel):
    xlsx = loaders.load_fuel_poverty(real(shared_data, "fuel_poverty_xlsx"))
    assert xlsx.attrs["first_row"] == 4  # title rows above the header are skipped
    pd.testing.assert_frame_equal(
        xlsx.reset_index(drop=True), fuel.reset_index(drop=True), check_dtype=False
    )


def test_fuel_poverty_lsoas_equal_iod2025(fuel, imd2025):
    assert set(fuel["lsoa21_code"]) == set(imd2025["lsoa_code"])


def test_population_totals(population):
    assert len(population) == 34_753
    assert int(population["total_population"].sum()) == 59_719_724
    england = population["lsoa_code"].str.startswith("E")
    assert int(population.loc[england, "total_population"].sum()) == 56_550_138


def test_census_ts021_total(shared_data):
    ts = loaders.load_census_ethnicity(real(shared_data, "census_ts021"))
    assert len(ts) == 35_672
    assert int(ts["total"].sum()) == 59_597_576
    assert int(ts["white_irish"].sum()) > 0


def test_esp2013_equals_builtin_constant(shared_data):
    esp = loaders.load_esp2013(real(shared_data, "esp2013"))
    assert int(esp["weight"].sum()) == 100_000
    assert esp["age_band"].iloc[-1] == "90+" and esp["weight"].iloc[-1] == 1_000
    assert loaders.esp2013_matches_builtin(esp)
    from pophealth.stats import ESP2013_BANDS

    assert tuple(esp["age_band"]) == ESP2013_BANDS


def test_lsoa_lookup_flags_and_coverage(lookup, file2, imd2025):
    assert len(lookup) == 35_795
    assert lookup["chgind"].value_counts().to_dict() == {"U": 33_647, "S": 1_900, "M": 239, "X": 9}
    assert set(file2["lsoa_code"]) <= set(lookup["lsoa11_code"])
    assert set(imd2025["lsoa_code"]) <= set(lookup["lsoa21_code"])


def test_nhs_geography(shared_data):
    l11 = loaders.load_lsoa11_subicb(real(shared_data, "lsoa11_subicb"))
    assert l11["sub_icb_ons"].nunique() == 106 and l11["icb_ons"].nunique() == 42
    l21 = loaders.load_lsoa21_subicb(real(shared_data, "lsoa21_subicb"))
    assert len(l21) == 33_755
    ms = loaders.load_lsoa11_msoa11(real(shared_data, "lsoa11_msoa11"))
    assert (ms["lsoa11_code"].str.startswith("E01")).sum() == 32_844
    icb = loaders.load_subicb_icb(real(shared_data, "subicb_icb"))
    assert len(icb) == 106 and icb["icb"].nunique() == 42


def test_rural_urban(shared_data):
    r11 = loaders.load_ruc11(real(shared_data, "ruc11"))
    assert len(r11) == 34_753 and r11.set_index("lsoa11_code").loc["E01000001", "ruc_code"] == "A1"
    r21 = loaders.load_ruc21(real(shared_data, "ruc21"))
    assert len(r21) == 35_672 and set(r21["urban_rural"]) == {"Urban", "Rural"}


def test_boundaries(shared_data):
    # complete=True (default) checks all 34,753 features; codes= keeps a map's LSOAs
    few = loaders.load_boundaries(
        real(shared_data, "boundaries_lsoa11"), codes={"E01000001", "E01000002"}
    )
    assert sorted(f["id"] for f in few["features"]) == ["E01000001", "E01000002"]
    assert few["features"][0]["geometry"]["type"] in ("Polygon", "MultiPolygon")


def test_epraccur_headerless_and_with_header_agree(shared_data):
    gp = shared_data / "geography" / "gp"
    raw = loaders.load_epraccur(gp / "epraccur_2023-02.csv")
    named = loaders.load_epraccur(gp / "epraccur_2023-02_with_header.csv")
    assert len(raw) == len(named) == 15_536
    pd.testing.assert_frame_equal(raw, named, check_dtype=False)
    active_gp = (raw["prescribing_setting"] == 4) & (raw["status_code"] == "A")
    assert int(active_gp.sum()) == 6_859


@pytest.mark.slow
def test_epcn_csv_and_workbook_agree(shared_data):
    gp = shared_data / "geography" / "gp"
    csv = loaders.load_epcn_members(gp / "epcn_practice_to_pcn_2023-02.csv")
    xlsx = loaders.load_epcn_members(gp / "ePCN_2023-02.xlsx")
    assert len(csv) == len(xlsx) == 7_455
    pd.testing.assert_frame_equal(
        csv.reset_index(drop=True), xlsx.reset_index(drop=True), check_dtype=False
    )
    det = loaders.load_epcn_details(gp / "epcn_pcn_details_2023-02.csv")
    det_x = loaders.load_epcn_details(gp / "ePCN_2023-02.xlsx")
    assert len(det) == len(det_x) == 1_329
