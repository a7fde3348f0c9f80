"""Loaders for the official small-area and NHS-organisation files.

Each ``load_*`` function reads one official file (CSV, gzipped CSV or the publisher's
Excel workbook where noted), validates its shape, code patterns, duplicates and value
ranges against a declared :class:`~pophealth.reference._read.FileSpec`, and returns a
pandas DataFrame with snake_case columns. Any problem raises
:class:`~pophealth.reference._read.ReferenceDataError` naming the file, row and column.

``complete=False`` (where offered) accepts an extract of an official file (fewer rows
than the complete publication); everything else is still checked.

The columns and quirks of each file are described in docs/reference-data.md.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pophealth.reference._read import (
    LAD_CODE,
    LSOA11_ENGLAND,
    LSOA_ENGLAND_WALES,
    MSOA_ENGLAND_WALES,
    ODS_CODE,
    ONS_CODE,
    Col,
    FileSpec,
    ReferenceDataError,
    read_validated,
)

#: LSOAs in England: 2011 geography (IoD2019) and 2021 geography (IoD2025).
N_LSOA11_ENGLAND = 32_844
N_LSOA21_ENGLAND = 33_755
#: LSOAs in England and Wales.
N_LSOA11_EW = 34_753
N_LSOA21_EW = 35_672

#: IoD domains: pophealth name -> (IoD2019 File 2 header stem, IoD2025 column stem).
DOMAINS: dict[str, tuple[str, str]] = {
    "income": ("Income", "Income"),
    "employment": ("Employment", "Employment"),
    "education": ("Education, Skills and Training", "Education"),
    "health": ("Health Deprivation and Disability", "Health"),
    "crime": ("Crime", "Crime"),
    "barriers": ("Barriers to Housing and Services", "Housing_and_Services"),
    "living_environment": ("Living Environment", "Environment"),
}

#: Air-quality columns of IoD2019 File 8 (Living Environment domain): pophealth name ->
#: File 8 header. Each component is a modelled concentration divided by its limit value.
AIR_QUALITY: dict[str, str] = {
    "no2_component": "nitrogen_dioxide_component_of_air_quality_indicator",
    "benzene_component": "benzene_component_of_air_quality_indicator",
    "so2_component": "sulphur_dioxide_component_of_air_quality_indicator",
    "pm_component": "particulates_component_of_air_quality_indicator",
    "air_quality_indicator": "air_quality_indicator",
}


def _lsoa11(name: str = "lsoa_code", *extra: str, pattern: str = LSOA11_ENGLAND) -> Col:
    return Col(name, ("LSOA code (2011)", "lsoa11_code", "lsoa11cd", *extra), pattern=pattern)


def _iod_front() -> tuple[Col, ...]:
    return (
        _lsoa11(),
        Col("lsoa_name", ("LSOA name (2011)", "lsoa11_name", "lsoa11nm")),
        Col("lad_code", ("Local Authority District code (2019)",), pattern=LAD_CODE),
        Col("lad_name", ("Local Authority District name (2019)",)),
    )


def _rank(name: str, headers: tuple[str, ...], n: int) -> Col:
    return Col(name, headers, "int", minimum=1, maximum=n)


def _decile(name: str, headers: tuple[str, ...]) -> Col:
    return Col(name, headers, "int", minimum=1, maximum=10)


def _decile_of_rank(pairs: tuple[str, ...], n: int) -> tuple:
    """Checks that each decile is the official decile of its rank: ceil(10 × rank / n)
    (true of every rank/decile pair in IoD2019 and IoD2025)."""

    def make(name: str):
        def check(f: pd.DataFrame) -> tuple[pd.Series, str, str]:
            expected = np.ceil(f[f"{name}_rank"].astype("float64") * 10 / n)
            return (
                f[f"{name}_decile"].astype("float64") != expected,
                f"{name}_decile",
                f"is not the decile of the rank (ceil(10 × rank / {n:,}))",
            )

        return check

    return tuple(make(p) for p in pairs)


_IMD_RANK = (
    "Index of Multiple Deprivation (IMD) Rank (where 1 is most deprived)",
    "Index of Multiple Deprivation (IMD) Rank",
)
_IMD_DECILE = (
    "Index of Multiple Deprivation (IMD) Decile (where 1 is most deprived 10% of LSOAs)",
    "Index of Multiple Deprivation (IMD) Decile",
)

# -- IoD2019 ---------------------------------------------------------------------------

FILE1 = FileSpec(
    "IoD2019 File 1 (IMD rank and decile)",
    (
        *_iod_front(),
        _rank("imd_rank", _IMD_RANK, N_LSOA11_ENGLAND),
        _decile("imd_decile", _IMD_DECILE),
    ),
    key=("lsoa_code",),
    expected_rows=N_LSOA11_ENGLAND,
    sheet="IMD2019",
    checks=_decile_of_rank(("imd",), N_LSOA11_ENGLAND),
)


def load_imd2019_file1(path: str | Path, *, complete: bool = True) -> pd.DataFrame:
    """IoD2019 File 1: IMD rank (ties exist) and decile by LSOA 2011 (32,844 rows).

    Ranks arrive as ``"29,199"`` in the CSV copies; the official workbook is accepted too.
    """
    return read_validated(path, FILE1, complete=complete)


def _domain_cols(n: int) -> tuple[Col, ...]:
    cols = []
    for name, (stem, _) in DOMAINS.items():
        cols.append(
            _rank(
                f"{name}_rank",
                (f"{stem} Rank (where 1 is most deprived)", f"{stem} Rank"),
                n,
            )
        )
        cols.append(
            _decile(
                f"{name}_decile",
                (f"{stem} Decile (where 1 is most deprived 10% of LSOAs)", f"{stem} Decile"),
            )
        )
    return tuple(cols)


FILE2 = FileSpec(
    "IoD2019 File 2 (IMD and domain ranks and deciles)",
    (
        *_iod_front(),
        _rank("imd_rank", _IMD_RANK, N_LSOA11_ENGLAND),
        _decile("imd_decile", _IMD_DECILE),
        *_domain_cols(N_LSOA11_ENGLAND),
    ),
    key=("lsoa_code",),
    expected_rows=N_LSOA11_ENGLAND,
    sheet="IoD2019 Domains",
    checks=_decile_of_rank(("imd", *DOMAINS), N_LSOA11_ENGLAND),
)


def load_imd2019_file2(path: str | Path, *, complete: bool = True) -> pd.DataFrame:
    """IoD2019 File 2: IMD and the seven domains, rank and decile, by LSOA 2011."""
    return read_validated(path, FILE2, complete=complete)


FILE3 = FileSpec(
    "IoD2019 File 3 (IDACI and IDAOPI)",
    (
        *_iod_front(),
        _rank("imd_rank", _IMD_RANK, N_LSOA11_ENGLAND),
        _decile("imd_decile", _IMD_DECILE),
        _rank(
            "idaci_rank",
            (
                "Income Deprivation Affecting Children Index (IDACI) Rank (where 1 is most "
                "deprived)",
            ),
            N_LSOA11_ENGLAND,
        ),
        _decile(
            "idaci_decile",
            (
                "Income Deprivation Affecting Children Index (IDACI) Decile (where 1 is most "
                "deprived 10% of LSOAs)",
            ),
        ),
        _rank(
            "idaopi_rank",
            ("Income Deprivation Affecting Older People (IDAOPI) Rank (where 1 is most deprived)",),
            N_LSOA11_ENGLAND,
        ),
        _decile(
            "idaopi_decile",
            (
                "Income Deprivation Affecting Older People (IDAOPI) Decile (where 1 is most "
                "deprived 10% of LSOAs)",
            ),
        ),
    ),
    key=("lsoa_code",),
    expected_rows=N_LSOA11_ENGLAND,
    sheet="IoD2019 IDACI & IDAOPI",
    checks=_decile_of_rank(("imd", "idaci", "idaopi"), N_LSOA11_ENGLAND),
)


def load_imd2019_file3(path: str | Path, *, complete: bool = True) -> pd.DataFrame:
    """IoD2019 File 3: IDACI and IDAOPI rank and decile (numbers written ``123.00``)."""
    return read_validated(path, FILE3, complete=complete)


def _count(name: str, header: str) -> Col:
    return Col(name, (header,), "int", minimum=0)


FILE6 = FileSpec(
    "IoD2019 File 6 (population denominators, mid-2015)",
    (
        *_iod_front(),
        _count("pop_total", "Total population: mid 2015 (excluding prisoners)"),
        _count("pop_0_15", "Dependent Children aged 0-15: mid 2015 (excluding prisoners)"),
        _count("pop_16_59", "Population aged 16-59: mid 2015 (excluding prisoners)"),
        _count("pop_60_plus", "Older population aged 60 and over: mid 2015 (excluding prisoners)"),
        _count(
            "pop_working_age",
            "Working age population 18-59/64: for use with Employment Deprivation Domain "
            "(excluding prisoners)",
        ),
    ),
    key=("lsoa_code",),
    expected_rows=N_LSOA11_ENGLAND,
    sheet="Population Denominators",
    checks=(
        lambda f: (
            f["pop_0_15"] + f["pop_16_59"] + f["pop_60_plus"] != f["pop_total"],
            "pop_total",
            "is not the sum of ages 0-15, 16-59 and 60+",
        ),
    ),
)


def load_imd2019_file6(path: str | Path, *, complete: bool = True) -> pd.DataFrame:
    """IoD2019 File 6: mid-2015 population denominators excluding prisoners.

    Published total for England: 54,728,204.
    """
    return read_validated(path, FILE6, complete=complete)


_FILE8_NUMERIC = (
    ("income_domain_numerator", 0, None),
    ("income_deprivation_affecting_children_index_idaci_numerator", 0, None),
    ("income_deprivation_affecting_older_people_index_idaopi_numerator", 0, None),
    ("employment_domain_numerator", 0, None),
    ("staying_on_in_education_post_16_indicator", 0, 1),
    ("entry_to_higher_education_indicator", 0, 1),
    ("adult_skills_and_english_language_proficiency_indicator", 0, 1),
    ("years_of_potential_life_lost_indicator", 0, None),
    ("comparative_illness_and_disability_ratio_indicator", 0, None),
    ("acute_morbidity_indicator", 0, None),
    ("mood_and_anxiety_disorders_indicator", None, None),
    ("road_distance_to_a_post_office_indicator_km", 0, None),
    ("road_distance_to_a_primary_school_indicator_km", 0, None),
    ("road_distance_to_general_store_or_supermarket_indicator_km", 0, None),
    ("road_distance_to_a_gp_surgery_indicator_km", 0, None),
    ("household_overcrowding_indicator", 0, 1),
    ("homelessness_indicator_rate_per_1000_households", 0, None),
    ("owner_occupation_affordability_component_of_housing_affordability_indicator", 0, None),
    ("private_rental_affordability_component_of_housing_affordability_indicator", 0, None),
    ("housing_affordability_indicator", None, None),
    ("housing_in_poor_condition_indicator", 0, 1),
    ("houses_without_central_heating_indicator", 0, 1),
    ("road_traffic_accidents_indicator", 0, None),
)


def _aq_cols(*, nullable: bool) -> tuple[Col, ...]:
    return tuple(
        Col(name, (header,), "float", nullable=nullable, minimum=0)
        for name, header in AIR_QUALITY.items()
    )


def _aq_sum_check(f: pd.DataFrame) -> tuple[pd.Series, str, str]:
    parts = f["no2_component"] + f["benzene_component"] + f["so2_component"] + f["pm_component"]
    return (
        (parts - f["air_quality_indicator"]).abs() > 0.0251,
        "air_quality_indicator",
        "is not the sum of its NO2, benzene, SO2 and particulates components",
    )


FILE8 = FileSpec(
    "IoD2019 File 8 (underlying indicators)",
    (
        _lsoa11(),
        *(
            Col(name, (name,), "float", nullable=True, minimum=lo, maximum=hi)
            for name, lo, hi in _FILE8_NUMERIC
        ),
        *_aq_cols(nullable=False),
    ),
    key=("lsoa_code",),
    expected_rows=N_LSOA11_ENGLAND,
    checks=(_aq_sum_check,),
)


def load_imd2019_file8(path: str | Path, *, complete: bool = True) -> pd.DataFrame:
    """IoD2019 File 8 underlying indicators (humaniverse/IMD CSV of the official sheets).

    Blank cells are nulls (the source has no value). The air-quality columns are renamed
    ``no2_component``, ``benzene_component``, ``so2_component``, ``pm_component`` and
    ``air_quality_indicator`` (each component = modelled concentration ÷ limit value;
    the indicator is their sum, checked to 0.025 for the 2-dp rounding of all five).
    """
    return read_validated(path, FILE8, complete=complete)


AIR_QUALITY_FILE = FileSpec(
    "IoD2019 air-quality indicator (File 8 subset)",
    (_lsoa11(), *_aq_cols(nullable=False)),
    key=("lsoa_code",),
    expected_rows=N_LSOA11_ENGLAND,
    checks=(_aq_sum_check,),
)


def load_air_quality(path: str | Path, *, complete: bool = True) -> pd.DataFrame:
    """The IoD2019 air-quality indicator and its four components by LSOA 2011.

    Accepts the air_quality/ subset or the whole File 8 (same columns).
    """
    return read_validated(path, AIR_QUALITY_FILE, complete=complete)


FILE9 = FileSpec(
    "IoD2019 File 9 (exponentially transformed domain scores)",
    (
        *_iod_front(),
        *(
            Col(
                f"{name}_exp",
                (f"{stem} Score - exponentially transformed",),
                "float",
                minimum=0,
                maximum=100,
            )
            for name, stem in {
                "income": "Income",
                "employment": "Employment",
                "education": "Education",
                "health": "Health",
                "crime": "Crime",
                "barriers": "Barriers",
                "living_environment": "Living Environment",
            }.items()
        ),
    ),
    key=("lsoa_code",),
    expected_rows=N_LSOA11_ENGLAND,
    sheet="IoD2019 Transformed Scores",
)

#: IoD2019 domain weights applied to the exponentially transformed domain scores
#: (IoD2019 Technical Report, section 3.8): income and employment 22.5 %, education and
#: health 13.5 %, crime, barriers and living environment 9.3 % each.
IMD2019_WEIGHTS: dict[str, float] = {
    "income": 0.225,
    "employment": 0.225,
    "education": 0.135,
    "health": 0.135,
    "crime": 0.093,
    "barriers": 0.093,
    "living_environment": 0.093,
}


def load_imd2019_file9(path: str | Path, *, complete: bool = True) -> pd.DataFrame:
    """IoD2019 File 9: exponentially transformed domain scores (0-100), by LSOA 2011."""
    return read_validated(path, FILE9, complete=complete)


def derived_imd2019_score(file9: pd.DataFrame) -> pd.Series:
    """An approximation of the official IoD2019 IMD score from File 9 (rounded to 3 dp).

    The official score (File 5/7) is not in the reference set; this is the published
    weighting of the exponentially transformed domain scores. It is **derived**: use the
    official ranks and deciles for classification.
    """
    score = sum(file9[f"{d}_exp"].astype("float64") * w for d, w in IMD2019_WEIGHTS.items())
    return score.round(3)


# -- IoD2025 ---------------------------------------------------------------------------


def _iod2025_cols() -> tuple[Col, ...]:
    cols: list[Col] = [
        Col("lsoa_code", ("lsoa21_code", "LSOA code (2021)", "lsoa21cd"), pattern=LSOA11_ENGLAND)
    ]
    stems = {"imd": "IMD", **{k: v[1] for k, v in DOMAINS.items()}}
    for name, stem in stems.items():
        cols.append(_rank(f"{name}_rank", (f"{stem}_rank",), N_LSOA21_ENGLAND))
        cols.append(_decile(f"{name}_decile", (f"{stem}_decile",)))
        lo = None if name in ("health", "crime") else 0
        cols.append(Col(f"{name}_score", (f"{stem}_score",), "float", minimum=lo))
    return tuple(cols)


IOD2025 = FileSpec(
    "IoD2025 scores, ranks and deciles (LSOA 2021)",
    _iod2025_cols(),
    key=("lsoa_code",),
    expected_rows=N_LSOA21_ENGLAND,
    checks=_decile_of_rank(("imd", *DOMAINS), N_LSOA21_ENGLAND),
)


def load_imd2025(path: str | Path, *, complete: bool = True) -> pd.DataFrame:
    """IoD2025: IMD and seven domains, score, rank and decile, by LSOA 2021 (33,755 rows).

    Health and crime domain scores are standardised and may be negative.
    """
    return read_validated(path, IOD2025, complete=complete)


# -- fuel poverty ----------------------------------------------------------------------

FUEL_POVERTY = FileSpec(
    "DESNZ sub-regional fuel poverty 2023, LSOA 2021 (Table 4)",
    (
        Col("lsoa21_code", ("lsoa21cd", "LSOA Code"), pattern=LSOA11_ENGLAND),
        Col("lsoa21_name", ("lsoa21nm", "LSOA Name")),
        Col("lad_code", ("lad_code", "Local Authority Code"), pattern=LAD_CODE),
        Col("lad_name", ("lad_name", "Local Authority Name")),
        Col("region", ("region", "Region")),
        Col("households", ("households", "Number of households"), "int", minimum=0),
        Col(
            "households_fuel_poor",
            ("households_fuel_poor", "Number of households in fuel poverty"),
            "int",
            minimum=0,
        ),
        Col(
            "pct_fuel_poor",
            ("pct_fuel_poor", "Proportion of households fuel poor (%)"),
            "float",
            minimum=0,
            maximum=100,
        ),
    ),
    key=("lsoa21_code",),
    expected_rows=N_LSOA21_ENGLAND,
    sheet="Table 4",
    checks=(
        lambda f: (
            f["households_fuel_poor"] > f["households"],
            "households_fuel_poor",
            "is more than the number of households",
        ),
    ),
)


def load_fuel_poverty(path: str | Path, *, complete: bool = True) -> pd.DataFrame:
    """DESNZ fuel poverty (LILEE) by LSOA 2021: the tidy CSV or Table 4 of the workbook.

    Published England totals: 24,568,372 households, 2,801,647 fuel poor (11.4 %).
    """
    return read_validated(path, FUEL_POVERTY, complete=complete)


# -- population ------------------------------------------------------------------------

AGES: tuple[str, ...] = tuple(str(a) for a in range(90)) + ("90+",)


def _sya_spec(level: str, code_pattern: str, rows: int | None) -> FileSpec:
    return FileSpec(
        f"ONS mid-2020 population by {level} and single year of age",
        (
            Col("code", (f"{level}_code",), pattern=code_pattern),
            Col("name", (f"{level}_name",)),
            Col("total_population", ("total_population",), "int", minimum=0),
            *(Col(f"age_{a.replace('+', '_plus')}", (a,), "int", minimum=0) for a in AGES),
        ),
        key=("code",),
        expected_rows=rows,
        checks=(
            lambda f: (
                f[[f"age_{a.replace('+', '_plus')}" for a in AGES]].sum(axis=1)
                != f["total_population"],
                "total_population",
                "is not the sum of the single-year-of-age columns",
            ),
        ),
    )


POPULATION_LSOA11 = _sya_spec("lsoa11", LSOA_ENGLAND_WALES, N_LSOA11_EW)


def load_population_lsoa11(path: str | Path, *, complete: bool = True) -> pd.DataFrame:
    """ONS mid-2020 persons by LSOA 2011 and single year of age (E&W; ``.csv.gz`` ok).

    Columns ``lsoa_code, lsoa_name, total_population, age_0 … age_89, age_90_plus``;
    every row is checked to sum to its total. E&W total 59,719,724; England 56,550,138.
    """
    frame = read_validated(path, POPULATION_LSOA11, complete=complete)
    return frame.rename(columns={"code": "lsoa_code", "name": "lsoa_name"})


ETHNIC_GROUPS_5 = ("asian", "black", "mixed", "white", "other")
_TS021_PREFIX = "Ethnic group: "
_TS021_GROUPS = {
    "asian": "Asian, Asian British or Asian Welsh",
    "black": "Black, Black British, Black Welsh, Caribbean or African",
    "mixed": "Mixed or Multiple ethnic groups",
    "white": "White",
    "other": "Other ethnic group",
}
_TS021_DETAIL = {
    "asian": ("Bangladeshi", "Chinese", "Indian", "Pakistani", "Other Asian"),
    "black": ("African", "Caribbean", "Other Black"),
    "mixed": (
        "White and Asian",
        "White and Black African",
        "White and Black Caribbean",
        "Other Mixed or Multiple ethnic groups",
    ),
    "white": (
        "English, Welsh, Scottish, Northern Irish or British",
        "Irish",
        "Gypsy or Irish Traveller",
        "Roma",
        "Other White",
    ),
    "other": ("Arab", "Any other ethnic group"),
}


def _snake(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def _ts021_cols() -> tuple[Col, ...]:
    cols = [
        Col("lsoa_code", ("geography code",), pattern=LSOA_ENGLAND_WALES),
        Col("lsoa_name", ("geography",)),
        Col("total", (_TS021_PREFIX + "Total: All usual residents",), "int", minimum=0),
    ]
    for group, label in _TS021_GROUPS.items():
        cols.append(Col(group, (_TS021_PREFIX + label,), "int", minimum=0))
        for detail in _TS021_DETAIL[group]:
            cols.append(
                Col(
                    f"{group}_{_snake(detail)}",
                    (f"{_TS021_PREFIX}{label}: {detail}",),
                    "int",
                    minimum=0,
                )
            )
    return tuple(cols)


def _ts021_checks() -> tuple:
    checks = [
        lambda f: (
            f[list(_TS021_GROUPS)].sum(axis=1) != f["total"],
            "total",
            "is not the sum of the five ethnic groups",
        )
    ]
    for group, details in _TS021_DETAIL.items():
        parts = [f"{group}_{_snake(d)}" for d in details]
        checks.append(
            lambda f, g=group, p=parts: (
                f[p].sum(axis=1) != f[g],
                g,
                "is not the sum of its detailed categories",
            )
        )
    return tuple(checks)


CENSUS_TS021 = FileSpec(
    "Census 2021 TS021 ethnic group by LSOA 2021",
    _ts021_cols(),
    key=("lsoa_code",),
    expected_rows=N_LSOA21_EW,
    checks=_ts021_checks(),
)


def load_census_ethnicity(path: str | Path, *, complete: bool = True) -> pd.DataFrame:
    """Census 2021 TS021 (Nomis bulk CSV): usual residents by ethnic group, LSOA 2021, E&W.

    Columns ``lsoa_code, lsoa_name, total``, the five groups (``asian, black, mixed,
    white, other``) and the 19 categories (``white_irish`` …); sums are checked.
    """
    return read_validated(path, CENSUS_TS021, complete=complete)


ESP2013_SPEC = FileSpec(
    "European Standard Population 2013",
    (
        Col("age_band", ("age_band",)),
        Col("age_lower", ("age_lower",), "int", minimum=0, maximum=90),
        Col("age_upper", ("age_upper",), "int", nullable=True, minimum=4, maximum=150),
        Col("weight", ("esp2013_weight",), "int", minimum=1),
    ),
    key=("age_band",),
    expected_rows=19,
)


def load_esp2013(path: str | Path) -> pd.DataFrame:
    """ESP2013 in 19 bands 0-4 … 85-89, 90+; checks contiguity and the 100,000 total."""
    frame = read_validated(path, ESP2013_SPEC)
    rows = frame.attrs["first_row"] + np.arange(len(frame))
    lower = frame["age_lower"].to_numpy()
    expected_lower = np.arange(0, 95, 5)
    bad = np.flatnonzero(lower != expected_lower)
    if bad.size:
        i = int(bad[0])
        raise ReferenceDataError(
            f"{path}, row {rows[i]}, column 'age_lower': {lower[i]} but the band should start "
            f"at {expected_lower[i]} (19 contiguous five-year bands, 90+ last)",
            file=path,
            row=int(rows[i]),
            column="age_lower",
        )
    total = int(frame["weight"].sum())
    if total != 100_000:
        raise ReferenceDataError(
            f"{path}, row {rows[-1]}, column 'esp2013_weight': weights sum to {total:,}, "
            "not 100,000",
            file=path,
            row=int(rows[-1]),
            column="esp2013_weight",
        )
    return frame


def esp2013_matches_builtin(frame: pd.DataFrame) -> bool:
    """True when the loaded ESP2013 weights equal :data:`pophealth.stats.ESP2013`."""
    from pophealth.stats import ESP2013

    return bool(np.array_equal(frame["weight"].to_numpy(dtype=float), np.asarray(ESP2013)))


# -- geography -------------------------------------------------------------------------

CHANGE_FLAGS = ("U", "S", "M", "X")


def _chgind_consistency(f: pd.DataFrame) -> tuple[pd.Series, str, str]:
    n21 = f.groupby("lsoa11_code")["lsoa21_code"].transform("nunique")
    n11 = f.groupby("lsoa21_code")["lsoa11_code"].transform("nunique")
    bad = (
        ((f["chgind"] == "U") & ((n21 > 1) | (n11 > 1)))
        | ((f["chgind"] == "S") & ((n21 == 1) | (n11 > 1)))
        | ((f["chgind"] == "M") & ((n11 == 1) | (n21 > 1)))
    )
    return (
        bad,
        "chgind",
        "disagrees with the pairs in the file (U = one to one, S = one 2011 LSOA to "
        "several 2021, M = several 2011 LSOAs to one 2021)",
    )


LSOA11_LSOA21 = FileSpec(
    "ONS LSOA 2011 to LSOA 2021 to LAD 2022 lookup",
    (
        Col("lsoa11_code", ("F_LSOA11CD", "LSOA11CD"), pattern=LSOA_ENGLAND_WALES),
        Col("lsoa11_name", ("LSOA11NM",)),
        Col("lsoa21_code", ("LSOA21CD",), pattern=LSOA_ENGLAND_WALES),
        Col("lsoa21_name", ("LSOA21NM",)),
        Col("chgind", ("CHGIND",), allowed=CHANGE_FLAGS),
        Col("lad22_code", ("LAD22CD",), pattern=LAD_CODE),
        Col("lad22_name", ("LAD22NM",)),
    ),
    expected_rows=35_795,
    checks=(
        lambda f: (
            f.duplicated(["lsoa11_code", "lsoa21_code"], keep="first"),
            "lsoa21_code",
            "duplicate LSOA 2011 - LSOA 2021 pair",
        ),
        _chgind_consistency,
    ),
)


def load_lsoa11_lsoa21_lookup(path: str | Path, *, complete: bool = True) -> pd.DataFrame:
    """The official ONS LSOA11 → LSOA21 → LAD22 lookup, one row per (2011, 2021) pair.

    ``chgind``: U unchanged, S split, M merged, X redesigned; the flag of every pair is
    checked against the pairs themselves.
    """
    return read_validated(path, LSOA11_LSOA21, complete=complete)


LSOA11_MSOA11 = FileSpec(
    "LSOA 2011 to MSOA 2011 lookup",
    (
        Col("lsoa11_code", ("lsoa11_code", "LSOA11CD"), pattern=r"[EWS]01\d{6}"),
        Col("lsoa11_name", ("lsoa11_name", "LSOA11NM")),
        Col("msoa11_code", ("msoa11_code", "MSOA11CD"), pattern=r"[EWS]02\d{6}"),
        Col("msoa11_name", ("msoa11_name", "MSOA11NM")),
    ),
    key=("lsoa11_code",),
    expected_rows=41_729,
)


def load_lsoa11_msoa11(path: str | Path, *, complete: bool = True) -> pd.DataFrame:
    """LSOA 2011 → MSOA 2011 (England, Wales; Scottish data zones too)."""
    return read_validated(path, LSOA11_MSOA11, complete=complete)


MSOA11_MSOA21 = FileSpec(
    "MSOA 2011 to MSOA 2021 lookup",
    (
        Col("msoa11_code", ("msoa11_code",), pattern=MSOA_ENGLAND_WALES),
        Col("msoa11_name", ("msoa11_name",)),
        Col("msoa21_code", ("msoa21_code",), pattern=MSOA_ENGLAND_WALES),
        Col("msoa21_name", ("msoa21_name",)),
        Col("lad22_code", ("ltla22_code",), pattern=LAD_CODE),
    ),
    expected_rows=7_201,
)


def load_msoa11_msoa21(path: str | Path, *, complete: bool = True) -> pd.DataFrame:
    """MSOA 2011 → MSOA 2021 → LAD 2022 (also the MSOA 2021 names and codes)."""
    return read_validated(path, MSOA11_MSOA21, complete=complete)


def _nhs_code(name: str, header: str) -> Col:
    return Col(name, (header,), pattern=ODS_CODE)


LSOA11_SUBICB = FileSpec(
    "LSOA 2011 to sub-ICB location, ICB and LAD (2022)",
    (
        _lsoa11("lsoa11_code"),
        Col("sub_icb_ons", ("sicbl22_code",), pattern=ONS_CODE),
        _nhs_code("sub_icb", "sicbl22_code_h"),
        Col("sub_icb_name", ("sicbl22_name",)),
        Col("icb_ons", ("icb22_code",), pattern=ONS_CODE),
        _nhs_code("icb", "icb22_code_h"),
        Col("icb_name", ("icb22_name",)),
        Col("lad_code", ("ltla22_code",), pattern=LAD_CODE),
        Col("lad_name", ("ltla22_name",)),
    ),
    key=("lsoa11_code",),
    expected_rows=N_LSOA11_ENGLAND,
)


def load_lsoa11_subicb(path: str | Path, *, complete: bool = True) -> pd.DataFrame:
    """LSOA 2011 → sub-ICB location → ICB → LAD (2022), ONS and NHS (ODS) codes."""
    return read_validated(path, LSOA11_SUBICB, complete=complete)


LSOA21_SUBICB = FileSpec(
    "LSOA 2021 to sub-ICB location and ICB (2024)",
    (
        Col("lsoa21_code", ("lsoa21_code",), pattern=LSOA11_ENGLAND),
        Col("lsoa21_name", ("lsoa21_name",)),
        Col("sub_icb_ons", ("sicbl24_code",), pattern=ONS_CODE),
        _nhs_code("sub_icb", "sicbl24_code_nhs"),
        Col("sub_icb_name", ("sicbl24_name",)),
        Col("icb_ons", ("icb24_code",), pattern=ONS_CODE),
        _nhs_code("icb", "icb24_code_nhs"),
        Col("icb_name", ("icb24_name",)),
    ),
    key=("lsoa21_code",),
    expected_rows=N_LSOA21_ENGLAND,
)


def load_lsoa21_subicb(path: str | Path, *, complete: bool = True) -> pd.DataFrame:
    """LSOA 2021 → sub-ICB location → ICB (2024), ONS and NHS (ODS) codes."""
    return read_validated(path, LSOA21_SUBICB, complete=complete)


LSOA21_LAD = FileSpec(
    "LSOA 2021 to ward and LAD (2024)",
    (
        Col("lsoa21_code", ("lsoa21_code",), pattern=LSOA_ENGLAND_WALES),
        Col("lsoa21_name", ("lsoa21_name",)),
        Col("ward_code", ("ward24_code",), pattern=ONS_CODE),
        Col("ward_name", ("ward24_name",)),
        Col("lad_code", ("ltla24_code",), pattern=LAD_CODE),
        Col("lad_name", ("ltla24_name",)),
    ),
    key=("lsoa21_code",),
    expected_rows=N_LSOA21_EW,
)


def load_lsoa21_lad(path: str | Path, *, complete: bool = True) -> pd.DataFrame:
    """LSOA 2021 → ward 2024 → LAD 2024 (England and Wales)."""
    return read_validated(path, LSOA21_LAD, complete=complete)


RUC11_CODES = ("A1", "B1", "C1", "C2", "D1", "D2", "E1", "E2")
RUC11 = FileSpec(
    "ONS rural-urban classification 2011 of LSOAs",
    (
        Col("lsoa11_code", ("LSOA11CD", "LSOA.code"), pattern=LSOA_ENGLAND_WALES),
        Col("lsoa11_name", ("LSOA11NM",)),
        Col("ruc_code", ("RUC11CD",), allowed=RUC11_CODES),
        Col("ruc_name", ("RUC11",)),
    ),
    key=("lsoa11_code",),
    expected_rows=N_LSOA11_EW,
)


def load_ruc11(path: str | Path, *, complete: bool = True) -> pd.DataFrame:
    """Rural-urban classification 2011 by LSOA 2011 (codes A1…E2 and their names)."""
    return read_validated(path, RUC11, complete=complete)


RUC21_CODES = ("UN1", "UF1", "RLN1", "RLF1", "RSN1", "RSF1")
RUC21 = FileSpec(
    "ONS rural-urban classification 2021 of LSOAs",
    (
        Col("lsoa21_code", ("lsoa21_code", "LSOA21CD"), pattern=LSOA_ENGLAND_WALES),
        Col("ruc_code", ("ruc21_code", "RUC21CD"), allowed=RUC21_CODES),
        Col("ruc_name", ("classification", "RUC21NM")),
        Col("urban_rural", ("ruc", "Urban_rura"), allowed=("Urban", "Rural")),
    ),
    key=("lsoa21_code",),
    expected_rows=N_LSOA21_EW,
)


def load_ruc21(path: str | Path, *, complete: bool = True) -> pd.DataFrame:
    """Rural-urban classification 2021 by LSOA 2021 (UN1 … RSF1, Urban/Rural)."""
    return read_validated(path, RUC21, complete=complete)


def load_boundaries(
    path: str | Path, *, codes: set[str] | None = None, complete: bool = True
) -> dict[str, Any]:
    """LSOA 2011 boundaries (GeoJSON FeatureCollection, ``.geojson`` or ``.geojson.gz``).

    Every feature must have an ``LSOA11CD`` property matching the LSOA pattern, once, and
    a Polygon or MultiPolygon geometry. ``codes`` keeps only those LSOAs (for a map of
    one area). Returns the FeatureCollection as a dict; ``feature.id`` is set to the code.
    """
    path = Path(path)
    if not path.is_file():
        raise ReferenceDataError(f"{path}: file not found (LSOA boundaries)", file=path)
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReferenceDataError(f"{path}: not readable GeoJSON ({exc})", file=path) from exc
    if not isinstance(data, dict) or data.get("type") != "FeatureCollection":
        raise ReferenceDataError(f"{path}: not a GeoJSON FeatureCollection", file=path)
    features = data.get("features") or []
    props = pd.DataFrame([f.get("properties") or {} for f in features])
    if "LSOA11CD" not in props:
        raise ReferenceDataError(
            f"{path}, feature 1, column 'LSOA11CD': the features have no LSOA11CD property",
            file=path,
            row=1,
            column="LSOA11CD",
        )
    code = props["LSOA11CD"].astype("string")
    kinds = pd.Series([(f.get("geometry") or {}).get("type") for f in features], dtype="string")
    problems = []
    bad = ~code.str.fullmatch(LSOA_ENGLAND_WALES).fillna(False)
    problems += [(i + 1, "LSOA11CD", code[i], "not an LSOA code") for i in np.flatnonzero(bad)]
    dup = code.duplicated() & ~bad
    problems += [(i + 1, "LSOA11CD", code[i], "duplicate LSOA") for i in np.flatnonzero(dup)]
    badg = ~kinds.isin(["Polygon", "MultiPolygon"]).fillna(False)
    problems += [(i + 1, "geometry", kinds[i], "not a polygon") for i in np.flatnonzero(badg)]
    if problems:
        r, c, v, why = problems[0]
        raise ReferenceDataError(
            f"{path}, feature {r}, column {c!r}: {v!r} {why} ({len(problems)} problem(s))",
            file=path,
            row=r,
            column=c,
            problems=problems,
        )
    if complete and len(features) != N_LSOA11_EW:
        raise ReferenceDataError(
            f"{path}: {len(features):,} features; the LSOA 2011 boundary set has "
            f"{N_LSOA11_EW:,} (truncated or a different release?)",
            file=path,
        )
    kept = []
    for f, c in zip(features, code.tolist(), strict=True):
        if codes is None or c in codes:
            f["id"] = c
            kept.append(f)
    return {"type": "FeatureCollection", "features": kept}


# -- GP practices ----------------------------------------------------------------------

#: The 27 columns of ODS epraccur (headerless), as the ODS data dictionary names them.
EPRACCUR_COLUMNS: tuple[str, ...] = (
    "org_code",
    "name",
    "national_grouping",
    "high_level_health_geography",
    "address_1",
    "address_2",
    "address_3",
    "address_4",
    "address_5",
    "postcode",
    "open_date",
    "close_date",
    "status_code",
    "org_sub_type_code",
    "commissioner",
    "join_provider_date",
    "left_provider_date",
    "telephone",
    "null_1",
    "null_2",
    "null_3",
    "amended_record_indicator",
    "null_4",
    "provider_purchaser",
    "null_5",
    "prescribing_setting",
    "null_6",
)

_DATE8 = r"(19|20)\d{2}(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])"


def _epraccur_cols() -> tuple[Col, ...]:
    return (
        Col("practice_id", ("org_code",), pattern=ODS_CODE),
        Col("name", ("name",)),
        Col("postcode", ("postcode",), nullable=True),
        Col("open_date", ("open_date",), pattern=_DATE8),
        Col("close_date", ("close_date",), nullable=True, pattern=_DATE8),
        Col("status_code", ("status_code",), allowed=("A", "C", "D", "P")),
        Col("commissioner", ("commissioner",), nullable=True, pattern=ODS_CODE),
        Col(
            "prescribing_setting",
            ("prescribing_setting",),
            "int",
            minimum=0,
            maximum=99,
        ),
    )


EPRACCUR = FileSpec(
    "ODS epraccur (GP practices and prescribing cost centres)",
    _epraccur_cols(),
    key=("practice_id",),
)
EPRACCUR_HEADERLESS = FileSpec(
    EPRACCUR.label,
    _epraccur_cols(),
    key=("practice_id",),
    headerless_names=EPRACCUR_COLUMNS,
)

#: ODS prescribing setting of a GP practice.
GP_PRACTICE_SETTING = 4


def load_epraccur(path: str | Path) -> pd.DataFrame:
    """ODS epraccur, as published (headerless, 27 columns) or with a header row.

    Returns every organisation (``prescribing_setting == 4`` are GP practices; status
    ``A`` active, ``C`` closed, ``D`` dormant, ``P`` proposed) with dates as text YYYYMMDD.
    """
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8-sig") as fh:
            first = fh.readline()
    except (OSError, UnicodeDecodeError) as exc:
        raise ReferenceDataError(f"{path}: cannot be read ({exc})", file=path) from exc
    headerless = not first.lower().lstrip('"').startswith("org_code")
    if headerless:
        n = len(next(iter(pd.read_csv(path, header=None, nrows=1, dtype=str).itertuples()))) - 1
        if n != len(EPRACCUR_COLUMNS):
            raise ReferenceDataError(
                f"{path}, row 1, column {n}: a headerless epraccur has "
                f"{len(EPRACCUR_COLUMNS)} columns, this file has {n}",
                file=path,
                row=1,
                column=str(n),
            )
    return read_validated(path, EPRACCUR_HEADERLESS if headerless else EPRACCUR)


EPCN_MEMBERS = FileSpec(
    "ODS ePCN practice to PCN (PCN Core Partner Details)",
    (
        Col("practice_id", ("Partner Organisation Code",), pattern=ODS_CODE),
        Col("practice_name", ("Partner Name",)),
        Col("practice_sub_icb", ("Practice Parent Sub ICB Loc Code",), pattern=ODS_CODE),
        Col("pcn_id", ("PCN Code",), pattern=ODS_CODE),
        Col("pcn_name", ("PCN Name",)),
        Col("pcn_sub_icb", ("PCN Parent Sub ICB Loc Code",), pattern=ODS_CODE),
        Col("start_date", ("Practice to PCN Relationship Start Date",), pattern=_DATE8),
        Col(
            "end_date",
            ("Practice to PCN Relationship End Date",),
            nullable=True,
            pattern=_DATE8,
        ),
    ),
    sheet="PCN Core Partner Details",
    checks=(
        lambda f: (
            f.duplicated(["practice_id", "pcn_id", "start_date"], keep="first"),
            "pcn_id",
            "duplicate practice - PCN relationship",
        ),
        lambda f: (
            f["end_date"].notna() & (f["end_date"] < f["start_date"]),
            "end_date",
            "is before the relationship start date",
        ),
    ),
)


def load_epcn_members(path: str | Path) -> pd.DataFrame:
    """ePCN practice → PCN relationships (the CSV, or the ePCN workbook's sheet)."""
    return read_validated(path, EPCN_MEMBERS)


EPCN_DETAILS = FileSpec(
    "ODS ePCN PCN details",
    (
        Col("pcn_id", ("PCN Code",), pattern=ODS_CODE),
        Col("pcn_name", ("PCN Name",)),
        Col("sub_icb", ("Current Sub ICB Loc Code",), pattern=ODS_CODE),
        Col("open_date", ("Open Date",), pattern=_DATE8),
        Col("close_date", ("Close Date",), nullable=True, pattern=_DATE8),
        Col("postcode", ("Postcode",), nullable=True),
    ),
    key=("pcn_id",),
    sheet="PCNDetails",
)


def load_epcn_details(path: str | Path) -> pd.DataFrame:
    """ePCN PCN details (the CSV, or the ePCN workbook's PCNDetails sheet)."""
    return read_validated(path, EPCN_DETAILS)


SUBICB_ICB = FileSpec(
    "ODS sub-ICB location to ICB and region",
    (
        Col("sub_icb", ("Sub ICB Location ODS Code",), pattern=ODS_CODE),
        Col("sub_icb_name", ("Sub ICB Location Name",)),
        Col("icb", ("ICB Code",), pattern=ODS_CODE),
        Col("icb_name", ("Integrated Care Board Name",)),
        Col("region", ("Region Code",), pattern=ODS_CODE),
        Col("region_name", ("Region Name",)),
    ),
    key=("sub_icb",),
)


def load_subicb_icb(path: str | Path) -> pd.DataFrame:
    """ODS sub-ICB location → ICB → NHS England region (106 sub-ICBs, 42 ICBs in 2022)."""
    return read_validated(path, SUBICB_ICB)
