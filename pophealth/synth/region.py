"""The fictional region: LSOA-like areas and GP practices, all with ``X``-prefixed codes.

Codes cannot collide with ONS or ODS codes: LSOAs are ``X01nnnnnn``, MSOAs
``X02nnnnnn``, local authorities ``X08nnnnnn``, sub-ICB locations ``X38nnnnnn``, the
ICB ``X54000001``; practices ``X`` + 5 digits, PCNs ``XU`` + 4 digits, hospital trusts
``XR`` + digit. Deprivation ranks and deciles are *national* positions (out of the
32,844 IoD2019 LSOAs) so that a fictional area's decile means what a real one does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from scipy.special import ndtr

from pophealth.synth import calibration as cal

ICB_CODE = "X54000001"
PROVIDERS = ("XR1", "XR2", "XR3")  # one acute trust per district (fictional ODS codes)

_PRACTICE_WORDS = (
    "Willowbank", "Millbrook", "Orchard", "Beacon", "Riverside", "Hollybush", "Larkspur",
    "Foxglove", "Elmtree", "Kingfisher", "Marigold", "Heathfield", "Brookside", "Cedar",
    "Thornbury", "Oakleigh", "Ashgrove", "Meadowcroft", "Hawthorn", "Bluebell", "Rowan",
    "Sorrel", "Clover", "Juniper", "Primrose", "Hazel", "Linden", "Yarrow", "Bramble",
)  # fmt: skip
_PRACTICE_KINDS = ("Surgery", "Medical Centre", "Health Centre", "Medical Practice")
_RUC = (
    (0.75, "Urban major conurbation"),
    (0.40, "Urban city and town"),
    (0.20, "Rural town and fringe"),
    (-1.0, "Rural village and dispersed"),
)


def rng_for(seed: int, *keys: int) -> np.random.Generator:
    """An independent random stream for (seed, keys): same inputs, same numbers."""
    return np.random.default_rng(np.random.SeedSequence([seed, *keys]))


def _codes(prefix: str, n: int, width: int = 6) -> list[str]:
    return [f"{prefix}{i:0{width}d}" for i in range(1, n + 1)]


def _decile_from_latent(z: np.ndarray) -> np.ndarray:
    """National decile (1 = most deprived) of a standard-normal latent (high = deprived)."""
    return np.clip(np.ceil((1.0 - ndtr(z)) * 10), 1, 10).astype(np.int64)


@dataclass
class Region:
    """The fictional region and the per-area arrays the patient generator needs."""

    areas: pa.Table
    practices: pa.Table
    lsoa_codes: pa.Array
    practice_ids: pa.Array
    weight: np.ndarray  # relative population of each LSOA
    dep_z: np.ndarray  # latent deprivation, standard normal, high = deprived
    urban: np.ndarray  # 0 (rural) .. 1 (conurbation)
    imd_quintile: np.ndarray  # national IMD quintile, 1 = most deprived
    no2_quintile: np.ndarray  # national NO2 quintile, 5 = most polluted
    district: np.ndarray  # index into calibration.DISTRICTS
    home_practice: np.ndarray  # index of the nearest practice of each LSOA
    practice_district: np.ndarray

    @property
    def n_lsoas(self) -> int:
        return len(self.weight)

    @property
    def n_practices(self) -> int:
        return len(self.practice_district)


def region_size(patients: int) -> int:
    """Number of LSOAs of the region for a population of ``patients``."""
    n = int(np.ceil(patients / cal.PATIENTS_PER_LSOA))
    return int(np.clip(n, cal.MIN_LSOAS, cal.MAX_LSOAS))


def make_region(patients: int, seed: int) -> Region:
    """Build the fictional region for a population of ``patients`` (deterministic)."""
    rng = rng_for(seed, 0)
    n_lsoa = region_size(patients)
    n_msoa = int(np.ceil(n_lsoa / cal.LSOAS_PER_MSOA))
    msoa_of = np.arange(n_lsoa) // cal.LSOAS_PER_MSOA

    # Districts own contiguous blocks of MSOAs.
    shares = np.array([d[2] for d in cal.DISTRICTS])
    bounds = np.round(np.cumsum(shares) / shares.sum() * n_msoa).astype(int)
    msoa_district = np.searchsorted(bounds, np.arange(n_msoa), side="right")
    msoa_district = np.minimum(msoa_district, len(cal.DISTRICTS) - 1)
    district = msoa_district[msoa_of]
    district_urban = np.array([d[1] for d in cal.DISTRICTS])

    urban_msoa = np.clip(district_urban[msoa_district] + 0.15 * rng.standard_normal(n_msoa), 0, 1)
    urban = np.clip(urban_msoa[msoa_of] + 0.08 * rng.standard_normal(n_lsoa), 0, 1)

    # Deprivation: clustered by MSOA, correlated with urbanity, standardised so that the
    # region spans every national decile.
    rho = cal.DEPRIVATION_URBAN_CORR
    uz = (urban_msoa - urban_msoa.mean()) / (urban_msoa.std() + 1e-9)
    dep_msoa = rho * uz + np.sqrt(1 - rho**2) * rng.standard_normal(n_msoa)
    dep = 0.8 * dep_msoa[msoa_of] + 0.6 * rng.standard_normal(n_lsoa)
    dep_z = (dep - dep.mean()) / dep.std()

    national = cal.NATIONAL_LSOAS
    pct_less_deprived = ndtr(dep_z)  # share of national LSOAs less deprived
    imd_rank = np.clip(np.ceil((1 - pct_less_deprived) * national), 1, national).astype(np.int64)
    imd_decile = np.clip(np.ceil(imd_rank / (national / 10)), 1, 10).astype(np.int64)
    imd_quintile = (imd_decile + 1) // 2
    score_q = np.linspace(0, 1, len(cal.IMD_SCORE_QUANTILES))
    imd_score = np.round(
        np.interp(1 - (imd_rank - 0.5) / national, score_q, cal.IMD_SCORE_QUANTILES), 3
    )

    def domain(weight_dep: float, weight_urban: float = 0.0) -> np.ndarray:
        z = weight_dep * dep_z + weight_urban * (urban - 0.5) * 2
        z = z + np.sqrt(max(1 - weight_dep**2 - weight_urban**2, 0.05)) * rng.standard_normal(
            n_lsoa
        )
        return _decile_from_latent(z)

    domains = {
        "income_decile": domain(0.92),
        "employment_decile": domain(0.88),
        "education_decile": domain(0.8),
        "health_decile": domain(0.82),
        "crime_decile": domain(0.6, 0.3),
        "barriers_decile": domain(0.2, -0.35),
        "living_environment_decile": domain(0.45, 0.45),
    }

    # Air quality: NO2 follows urbanity (and a little deprivation); PM more diffuse.
    log_no2 = (
        np.log(cal.NO2_MEDIAN)
        + cal.NO2_LOG_SD_URBAN * 2 * (urban - 0.45)
        + cal.NO2_LOG_PER_DEPRIVATION * dep_z
        + cal.NO2_LOG_SD_NOISE * rng.standard_normal(n_lsoa)
    )
    no2 = np.round(np.clip(np.exp(log_no2), 0.08, 1.4), 2)
    pm = np.round(
        np.clip(
            cal.PM_MEDIAN
            * np.exp(
                0.22 * (urban - 0.45)
                + 0.15 * (log_no2 - np.log(cal.NO2_MEDIAN))
                + 0.06 * rng.standard_normal(n_lsoa)
            ),
            0.2,
            0.65,
        ),
        2,
    )
    benzene = np.round(
        cal.BENZENE_MEDIAN * np.exp(0.6 * (urban - 0.45) + 0.15 * rng.standard_normal(n_lsoa)), 2
    )
    so2 = np.round(
        cal.SO2_MEDIAN * np.exp(0.3 * (urban - 0.45) + 0.2 * rng.standard_normal(n_lsoa)), 2
    )
    aqi = np.round(no2 + pm + benzene + so2, 2)
    no2_quintile = 1 + np.searchsorted(cal.NO2_QUINTILE_CUTS, no2, side="right")
    pm_quintile = 1 + np.searchsorted(cal.PM_QUINTILE_CUTS, pm, side="right")

    fuel = np.round(
        np.clip(
            np.exp(
                np.log(cal.FUEL_POVERTY_MEDIAN)
                + cal.FUEL_POVERTY_LOG_PER_DEPRIVATION * dep_z
                + cal.FUEL_POVERTY_LOG_SD * rng.standard_normal(n_lsoa)
            ),
            1.5,
            60.0,
        ),
        1,
    )
    population = np.maximum(
        np.round(cal.LSOA_POPULATION_MEAN + cal.LSOA_POPULATION_SD * rng.standard_normal(n_lsoa)),
        800,
    ).astype(np.int64)

    lsoa_codes = _codes("X01", n_lsoa)
    msoa_codes = _codes("X02", n_msoa)
    lad_codes = _codes("X08", len(cal.DISTRICTS))
    sub_icbs = _codes("X38", len(cal.DISTRICTS))
    names = [d[0] for d in cal.DISTRICTS]
    # ONS-style names: "<district> <MSOA number within district><letter>".
    msoa_number = np.zeros(n_msoa, dtype=int)
    for d in range(len(cal.DISTRICTS)):
        idx = np.flatnonzero(msoa_district == d)
        msoa_number[idx] = np.arange(1, len(idx) + 1)
    letters = "ABCDEFGHIJ"
    lsoa_names = [
        f"{names[district[i]]} {msoa_number[msoa_of[i]]:03d}{letters[i % cal.LSOAS_PER_MSOA]}"
        for i in range(n_lsoa)
    ]
    ruc = np.empty(n_lsoa, dtype=object)
    for cut, label in reversed(_RUC):
        ruc[urban >= cut] = label

    areas = pa.table(
        {
            "lsoa_code": pa.array(lsoa_codes),
            "lsoa_name": pa.array(lsoa_names),
            "imd_release": pa.array(["synthetic"] * n_lsoa),
            "imd_score": imd_score,
            "imd_rank": imd_rank,
            "imd_decile": imd_decile,
            "imd_quintile": imd_quintile,
            "core20": imd_decile <= 2,
            **domains,
            "air_quality_indicator": aqi,
            "no2_component": no2,
            "pm_component": pm,
            "benzene_component": benzene,
            "so2_component": so2,
            "no2_quintile": no2_quintile.astype(np.int64),
            "pm_quintile": pm_quintile.astype(np.int64),
            "fuel_poverty_pct": fuel,
            "population": population,
            "msoa_code": pa.array([msoa_codes[m] for m in msoa_of]),
            "lad_code": pa.array([lad_codes[d] for d in district]),
            "sub_icb": pa.array([sub_icbs[d] for d in district]),
            "icb": pa.array([ICB_CODE] * n_lsoa),
            "rural_urban": pa.array(ruc.tolist()),
        }
    )

    # Practices spread evenly over the LSOAs (which are ordered by district and MSOA);
    # every LSOA's home practice is the nearest one in that order.
    n_prac = max(4, int(round(n_lsoa / cal.LSOAS_PER_PRACTICE)))
    site = np.minimum(((np.arange(n_prac) + 0.5) * n_lsoa / n_prac).astype(int), n_lsoa - 1)
    home_practice = np.minimum((np.arange(n_lsoa) * n_prac) // n_lsoa, n_prac - 1)
    practice_district = district[site]
    pcn_of = np.zeros(n_prac, dtype=int)
    next_pcn = 0
    for d in range(len(cal.DISTRICTS)):
        idx = np.flatnonzero(practice_district == d)
        if len(idx) == 0:
            continue
        groups = np.arange(len(idx)) // cal.PRACTICES_PER_PCN
        pcn_of[idx] = next_pcn + groups
        next_pcn += int(groups.max()) + 1
    practice_ids = [f"X{10001 + i:05d}" for i in range(n_prac)]
    practice_names = [
        f"{_PRACTICE_WORDS[i % len(_PRACTICE_WORDS)]} "
        f"{_PRACTICE_KINDS[(i // len(_PRACTICE_WORDS)) % len(_PRACTICE_KINDS)]}, "
        f"{names[practice_district[i]]}"
        for i in range(n_prac)
    ]
    pcn_ids = [f"XU{1 + p:04d}" for p in pcn_of]
    first_pcn = {d: pcn_of[practice_district == d].min() for d in set(practice_district)}
    pcn_names = [
        f"{names[practice_district[i]]} PCN {1 + pcn_of[i] - first_pcn[practice_district[i]]}"
        for i in range(n_prac)
    ]
    practices = pa.table(
        {
            "practice_id": pa.array(practice_ids),
            "name": pa.array(practice_names),
            "pcn_id": pa.array(pcn_ids),
            "pcn_name": pa.array(pcn_names),
            "sub_icb": pa.array([sub_icbs[d] for d in practice_district]),
            "icb": pa.array([ICB_CODE] * n_prac),
            "lsoa_code": pa.array([lsoa_codes[s] for s in site]),
        }
    )
    return Region(
        areas=areas,
        practices=practices,
        lsoa_codes=areas["lsoa_code"].combine_chunks(),
        practice_ids=practices["practice_id"].combine_chunks(),
        weight=population / population.sum(),
        dep_z=dep_z,
        urban=urban,
        imd_quintile=imd_quintile,
        no2_quintile=no2_quintile.astype(np.int64),
        district=district,
        home_practice=home_practice,
        practice_district=practice_district,
    )
