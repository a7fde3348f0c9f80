"""The built ``areas`` tables checked against the official files read independently.

The other real-data tests compare the build with frames from ``pophealth.reference.loaders``,
so a loader reading the wrong column would agree with itself. Here the source files are
read with the ``csv`` module (no pophealth code), the expected value of each column is
worked out by hand for a seeded sample of LSOAs plus every kind of LSOA 2011 -> 2021
change, and the counts are taken from the files themselves.
"""

from __future__ import annotations

import csv
import gzip
import math
import random
from collections import defaultdict
from pathlib import Path

import pytest

pytestmark = pytest.mark.shared_data

LOOKUP = (
    "geography/LSOA_(2011)_to_LSOA_(2021)_to_Local_Authority_District_(2022)_Lookup_for_"
    "England_and_Wales.csv"
)


def _rows(root: Path, relative: str) -> list[dict[str, str]]:
    path = root / relative
    if not path.is_file():
        pytest.skip(f"{relative} not in {root}")
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8-sig", newline="") as fh:
        return list(csv.DictReader(fh))


def _by(rows: list[dict[str, str]], key: str) -> dict[str, dict[str, str]]:
    out = {r[key]: r for r in rows}
    assert len(out) == len(rows), f"duplicate {key}"
    return out


#: File 2 header stem of each pophealth domain, as published.
FILE2_STEMS = {
    "income": "Income",
    "employment": "Employment",
    "education": "Education, Skills and Training",
    "health": "Health Deprivation and Disability",
    "crime": "Crime",
    "barriers": "Barriers to Housing and Services",
    "living_environment": "Living Environment",
}
_DECILE = "Decile (where 1 is most deprived 10% of LSOAs)"
_IMD = "Index of Multiple Deprivation (IMD)"


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def _compare(areas, expected: dict[str, dict[str, object]]) -> None:
    a = areas.set_index("lsoa_code")
    wrong = []
    for code, columns in expected.items():
        for column, want in columns.items():
            got = a.at[code, column]
            if isinstance(want, float):
                ok = got is not None and abs(float(got) - want) <= 1e-9
            else:
                ok = got == want
            if not ok:
                wrong.append((code, column, want, got))
    assert not wrong, wrong[:10]


@pytest.fixture(scope="module")
def lookup_rows(shared_data):
    return _rows(shared_data, LOOKUP)


def _sample(codes, lookup_rows, vintage: str, n: int = 40) -> list[str]:
    """``n`` seeded random LSOAs plus, for each change flag, LSOAs it touches."""
    column = "F_LSOA11CD" if vintage == "2011" else "LSOA21CD"
    known = set(codes)
    picked = random.Random(2019 if vintage == "2011" else 2025).sample(sorted(known), n)
    for flag in "SMX":
        hits = [r[column] for r in lookup_rows if r["CHGIND"] == flag and r[column] in known]
        picked += sorted(set(hits))[:4]
    return sorted(set(picked))


def test_lsoa_counts_from_the_files(shared_data, lookup_rows):
    f1 = _rows(shared_data, "imd2019/File_1_-_IMD2019_Index_of_Multiple_Deprivation.csv")
    iod25 = _rows(shared_data, "imd2025/iod2025_lsoa21_scores_ranks_deciles.csv")
    e11 = {r["F_LSOA11CD"] for r in lookup_rows if r["F_LSOA11CD"].startswith("E01")}
    e21 = {r["LSOA21CD"] for r in lookup_rows if r["LSOA21CD"].startswith("E01")}
    assert len(f1) == len({r["LSOA code (2011)"] for r in f1}) == len(e11) == 32_844
    assert len(iod25) == len({r["lsoa21_code"] for r in iod25}) == len(e21) == 33_755
    # each IMD release is on its own LSOA vintage: IoD2019 = every English LSOA 2011,
    # IoD2025 = every English LSOA 2021
    assert {r["LSOA code (2011)"] for r in f1} == e11
    assert {r["lsoa21_code"] for r in iod25} == e21


def test_decile_1_is_most_deprived_in_both_releases(shared_data):
    f2 = _rows(shared_data, "imd2019/File_2_-_IoD2019_Domains_of_Deprivation.csv")
    rank = f"{_IMD} Rank (where 1 is most deprived)"
    decile = f"{_IMD} {_DECILE}"
    by_rank = sorted(f2, key=lambda r: _number(r[rank]))
    assert by_rank[0][decile] == "1" and by_rank[-1][decile] == "10"
    iod25 = _rows(shared_data, "imd2025/iod2025_lsoa21_scores_ranks_deciles.csv")
    by_rank = sorted(iod25, key=lambda r: int(r["IMD_rank"]))
    assert by_rank[0]["IMD_decile"] == "1" and by_rank[-1]["IMD_decile"] == "10"
    # rank 1 has the highest score: most deprived
    assert float(by_rank[0]["IMD_score"]) == max(float(r["IMD_score"]) for r in iod25)


def test_iod2019_areas_against_the_source_files(built, shared_data, lookup_rows):
    _, _, areas = built["2019"]
    d = shared_data
    f2 = _by(_rows(d, "imd2019/File_2_-_IoD2019_Domains_of_Deprivation.csv"), "LSOA code (2011)")
    aq = _by(_rows(d, "air_quality/iod2019_air_quality_indicator_lsoa11.csv"), "lsoa11_code")
    pop = _by(
        _rows(d, "population/ons_mye2020_lsoa11_persons_single_year_age.csv.gz"), "lsoa11_code"
    )
    ruc = _by(
        _rows(
            d,
            "geography/Rural_Urban_Classification_(2011)_of_Lower_Layer_Super_Output_Areas_in_"
            "England_and_Wales.csv",
        ),
        "LSOA.code",
    )
    nhs = _by(_rows(d, "geography/lookup_lsoa11_sicbl22_icb22_ltla22.csv"), "lsoa11_code")
    msoa = _by(_rows(d, "geography/lookup_lsoa11_msoa11.csv"), "lsoa11_code")
    fuel = _by(_rows(d, "fuel_poverty/fuel_poverty_2023_lsoa21.csv"), "lsoa21cd")
    pieces, parents = defaultdict(list), defaultdict(set)
    for r in lookup_rows:
        pieces[r["F_LSOA11CD"]].append(r["LSOA21CD"])
        parents[r["LSOA21CD"]].add(r["F_LSOA11CD"])

    expected = {}
    for code in _sample(f2, lookup_rows, "2011"):
        r = f2[code]
        dec = int(r[f"{_IMD} {_DECILE}"])
        hh = sum(int(fuel[p]["households"]) for p in pieces[code])
        fp = sum(int(fuel[p]["households_fuel_poor"]) for p in pieces[code])
        want = {
            "lsoa_name": r["LSOA name (2011)"],
            "imd_release": "IoD2019",
            "imd_rank": int(_number(r[f"{_IMD} Rank (where 1 is most deprived)"])),
            "imd_decile": dec,
            "imd_quintile": math.ceil(dec / 2),
            "core20": dec <= 2,
            **{f"{k}_decile": int(r[f"{v} {_DECILE}"]) for k, v in FILE2_STEMS.items()},
            "no2_component": float(aq[code]["nitrogen_dioxide_component_of_air_quality_indicator"]),
            "pm_component": float(aq[code]["particulates_component_of_air_quality_indicator"]),
            "benzene_component": float(aq[code]["benzene_component_of_air_quality_indicator"]),
            "so2_component": float(aq[code]["sulphur_dioxide_component_of_air_quality_indicator"]),
            "air_quality_indicator": float(aq[code]["air_quality_indicator"]),
            "population": int(pop[code]["total_population"]),
            "rural_urban": ruc[code]["RUC11"],
            "sub_icb": nhs[code]["sicbl22_code"],
            "icb": nhs[code]["icb22_code"],
            "lad_code": nhs[code]["ltla22_code"],
            "msoa_code": msoa[code]["msoa11_code"],
        }
        # unchanged or split: the 2011 LSOA holds all of its 2021 pieces' households
        if all(len(parents[p]) == 1 for p in pieces[code]):
            want["fuel_poverty_pct"] = round(100 * fp / hh, 2)
        expected[code] = want
    _compare(areas, expected)
    # Core20 from the published deciles, counted in the file
    core20 = sum(int(r[f"{_IMD} {_DECILE}"]) <= 2 for r in f2.values())
    assert int(areas["core20"].sum()) == core20


def test_iod2025_areas_against_the_source_files(built, shared_data, lookup_rows):
    _, _, areas = built["2025"]
    d = shared_data
    iod = _by(_rows(d, "imd2025/iod2025_lsoa21_scores_ranks_deciles.csv"), "lsoa21_code")
    fuel = _by(_rows(d, "fuel_poverty/fuel_poverty_2023_lsoa21.csv"), "lsoa21cd")
    nhs = _by(_rows(d, "geography/lookup_lsoa21_sicbl24_icb24.csv"), "lsoa21_code")
    lad = _by(_rows(d, "geography/lookup_lsoa21_ward24_ltla24.csv"), "lsoa21_code")
    ruc = _by(_rows(d, "geography/ruc21_lsoa21.csv"), "lsoa21_code")
    aq = _by(_rows(d, "air_quality/iod2019_air_quality_indicator_lsoa11.csv"), "lsoa11_code")
    parents = defaultdict(set)
    for r in lookup_rows:
        parents[r["LSOA21CD"]].add(r["F_LSOA11CD"])
    stems = {
        "income": "Income",
        "employment": "Employment",
        "education": "Education",
        "health": "Health",
        "crime": "Crime",
        "barriers": "Housing_and_Services",
        "living_environment": "Environment",
    }
    expected = {}
    for code in _sample(iod, lookup_rows, "2021"):
        r = iod[code]
        dec = int(r["IMD_decile"])
        want = {
            "lsoa_name": nhs[code]["lsoa21_name"],
            "imd_release": "IoD2025",
            "imd_rank": int(r["IMD_rank"]),
            "imd_decile": dec,
            "imd_score": float(r["IMD_score"]),
            "imd_quintile": math.ceil(dec / 2),
            "core20": dec <= 2,
            **{f"{k}_decile": int(r[f"{v}_decile"]) for k, v in stems.items()},
            "fuel_poverty_pct": float(fuel[code]["pct_fuel_poor"]),
            "sub_icb": nhs[code]["sicbl24_code"],
            "icb": nhs[code]["icb24_code"],
            "lad_code": lad[code]["ltla24_code"],
            "rural_urban": ruc[code]["classification"],
        }
        if len(parents[code]) == 1:  # unchanged or a piece of a split: the parent's value
            (parent,) = parents[code]
            want["no2_component"] = float(
                aq[parent]["nitrogen_dioxide_component_of_air_quality_indicator"]
            )
            want["pm_component"] = float(
                aq[parent]["particulates_component_of_air_quality_indicator"]
            )
        expected[code] = want
    _compare(areas, expected)
    assert int(areas["core20"].sum()) == sum(int(r["IMD_decile"]) <= 2 for r in iod.values())
