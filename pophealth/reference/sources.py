"""Catalogue of the reference files: where each lives in a reference folder, its known
checksum, and where its publisher serves it.

A reference folder has the layout of ``../shared/data`` (``imd2019/``, ``imd2025/``,
``air_quality/``, ``fuel_poverty/``, ``population/``, ``esp2013/``, ``geography/``,
``geography/gp/``). :data:`SOURCES` lists, per file, its path in that layout, other
accepted names (e.g. the publisher's ``.xlsx`` where the layout holds a CSV export), the
SHA-256 of the layout copy (so a mirror download can be verified) and the publisher's
direct download URL where one is known. Files that were converted from an R data
package have no publisher download: their ``url`` is ``None`` and ``landing`` says where
the official data is published.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

_GOV_2019 = "https://assets.publishing.service.gov.uk/government/uploads/system/uploads/attachment_data/file"
_IOD2019_PAGE = "https://www.gov.uk/government/statistics/english-indices-of-deprivation-2019"
_IOD2025_PAGE = "https://www.gov.uk/government/statistics/english-indices-of-deprivation-2025"
_ONS_GEO = "https://geoportal.statistics.gov.uk/"
_ODS = "https://digital.nhs.uk/services/organisation-data-service/data-search-and-export/csv-downloads/gp-and-gp-practice-related-data"


@dataclass(frozen=True)
class Source:
    """One reference file."""

    key: str
    path: str  # path in the reference-folder layout
    description: str
    sha256: str | None = None  # of the layout copy
    url: str | None = None  # publisher's direct download, when known
    url_path: str | None = None  # where the publisher's file goes (if it differs from path)
    url_member: str | None = None  # the member to extract when the publisher serves a zip
    landing: str | None = None  # publisher's page for the data
    alternatives: tuple[str, ...] = ()  # other accepted file names in the layout

    def candidates(self) -> tuple[str, ...]:
        extra = (self.url_path,) if self.url_path else ()
        return (self.path, *self.alternatives, *extra)

    def find(self, root: str | Path) -> Path | None:
        """The first existing file for this source under ``root``."""
        for rel in self.candidates():
            p = Path(root) / rel
            if p.is_file():
                return p
        return None


SOURCES: tuple[Source, ...] = (
    Source(
        "imd2019_file1",
        "imd2019/File_1_-_IMD2019_Index_of_Multiple_Deprivation.csv",
        "IoD2019 File 1: IMD rank and decile, LSOA 2011 (MHCLG)",
        "9c19a6c221d0f258093e24eaae9b21f09be0e7626e9f96f8f75da4772e2789ad",
        f"{_GOV_2019}/833970/File_1_-_IMD2019_Index_of_Multiple_Deprivation.xlsx",
        "imd2019/File_1_-_IMD2019_Index_of_Multiple_Deprivation.xlsx",
        landing=_IOD2019_PAGE,
    ),
    Source(
        "imd2019_file2",
        "imd2019/File_2_-_IoD2019_Domains_of_Deprivation.csv",
        "IoD2019 File 2: IMD and domain ranks and deciles, LSOA 2011 (MHCLG)",
        "79753957098266a1c61e43df43ef9ed081ee370731f6a2decd5f73ab2821b76f",
        f"{_GOV_2019}/833973/File_2_-_IoD2019_Domains_of_Deprivation.xlsx",
        "imd2019/File_2_-_IoD2019_Domains_of_Deprivation.xlsx",
        landing=_IOD2019_PAGE,
    ),
    Source(
        "imd2019_file3",
        "imd2019/File_3_-_IoD2019_Supplementary_Indices_-_IDACI_and_IDAOPI.csv",
        "IoD2019 File 3: IDACI and IDAOPI, LSOA 2011 (MHCLG)",
        "91aac4235d2e1ab4e9c12ee57d07eb5192a9b98f25b8dbfedc7b47ea0970dc90",
        f"{_GOV_2019}/833974/File_3_-_IoD2019_Supplementary_Indices_-_IDACI_and_IDAOPI.xlsx",
        "imd2019/File_3_-_IoD2019_Supplementary_Indices_-_IDACI_and_IDAOPI.xlsx",
        landing=_IOD2019_PAGE,
    ),
    Source(
        "imd2019_file6",
        "imd2019/File_6_-_IoD2019_Population_Denominators.csv",
        "IoD2019 File 6: mid-2015 population denominators, LSOA 2011 (MHCLG)",
        "f91a4e199d234c0e5a16308ea9c5cb9b74fba22547c2aa60906ff2e3cd941886",
        f"{_GOV_2019}/833980/File_6_-_IoD2019_Population_Denominators.xlsx",
        "imd2019/File_6_-_IoD2019_Population_Denominators.xlsx",
        landing=_IOD2019_PAGE,
    ),
    Source(
        "imd2019_file8",
        "imd2019/iod2019_file8_underlying_indicators_lsoa11.csv",
        "IoD2019 File 8 underlying indicators incl. air quality (humaniverse/IMD CSV)",
        "e1e5c420c1ea997c7ef3be791b205145d257b538b2ded83b15e1b0b13d5f3061",
        landing=_IOD2019_PAGE,
    ),
    Source(
        "imd2019_file9",
        "imd2019/File_9_-_IoD2019_Transformed_Scores.csv",
        "IoD2019 File 9: exponentially transformed domain scores (MHCLG)",
        "1d85ce00a3d78bcaef31764b7d009b6647b0fafa8db3e130d841681da2f8243b",
        landing=_IOD2019_PAGE,
        alternatives=("imd2019/File_9_-_IoD2019_Transformed_Scores.xlsx",),
    ),
    Source(
        "air_quality",
        "air_quality/iod2019_air_quality_indicator_lsoa11.csv",
        "IoD2019 air-quality indicator and NO2/benzene/SO2/particulates components",
        "c7d55b37d313694834ac08161bb0f8c60613c1085c078200433a5493485970ef",
        landing=_IOD2019_PAGE,
    ),
    Source(
        "imd2025",
        "imd2025/iod2025_lsoa21_scores_ranks_deciles.csv",
        "IoD2025 IMD and domain scores, ranks and deciles, LSOA 2021 (humaniverse/IMD CSV)",
        "e82cc5533ba7c54e12426fbb39a1d472749e9c4115cc4cd3640f3ca59d77af08",
        landing=_IOD2025_PAGE,
    ),
    Source(
        "fuel_poverty",
        "fuel_poverty/fuel_poverty_2023_lsoa21.csv",
        "DESNZ sub-regional fuel poverty 2023 (LILEE), LSOA 2021: Table 4 as CSV",
        "0693f7f2f037b2c0d23d0a165e11a6d95811feb332359a1988e54d674724fdbc",
        landing="https://www.gov.uk/government/statistics/sub-regional-fuel-poverty-2025-2023-data",
        alternatives=("fuel_poverty/sub-regional-fuel-poverty-2025-2023-data.xlsx",),
    ),
    Source(
        "fuel_poverty_xlsx",
        "fuel_poverty/sub-regional-fuel-poverty-2025-2023-data.xlsx",
        "DESNZ sub-regional fuel poverty 2025 (2023 data): the official workbook",
        "07f48de0f45accde61f79ed2ee3c68394d67fe9e124e9c75dfc9ebee7e24d5ee",
        landing="https://www.gov.uk/government/statistics/sub-regional-fuel-poverty-2025-2023-data",
    ),
    Source(
        "population_lsoa11",
        "population/ons_mye2020_lsoa11_persons_single_year_age.csv.gz",
        "ONS mid-2020 persons by LSOA 2011 and single year of age (SAPE23DT2; demographr CSV)",
        "a49080f6a0add734bbbac5d390d451cd2e7de0226bc760171cd1fb4e8d7f03ef",
        landing="https://www.ons.gov.uk/peoplepopulationandcommunity/populationandmigration/"
        "populationestimates/datasets/lowersuperoutputareamidyearpopulationestimates",
    ),
    Source(
        "census_ts021",
        "population/census2021-ts021-lsoa.csv",
        "Census 2021 TS021 ethnic group by LSOA 2021 (Nomis bulk file)",
        "f5f23bc6abac6ca9c72304069940e9376c6164d60a36a0f48cc9573f3f18a9cb",
        "https://www.nomisweb.co.uk/output/census/2021/census2021-ts021.zip",
        url_member="census2021-ts021-lsoa.csv",
        landing="https://www.nomisweb.co.uk/sources/census_2021_bulk",
    ),
    Source(
        "esp2013",
        "esp2013/esp2013_19_age_bands.csv",
        "European Standard Population 2013, 19 bands (Eurostat)",
        "7ad20ffd6c6d1e93d1fabfa125b13e5e4845ea9be2cd7265479f9f1a22e214c5",
        landing="https://ec.europa.eu/eurostat/web/products-manuals-and-guidelines/-/ks-ra-13-028",
    ),
    Source(
        "lsoa11_lsoa21",
        "geography/LSOA_(2011)_to_LSOA_(2021)_to_Local_Authority_District_(2022)_Lookup_for_"
        "England_and_Wales.csv",
        "ONS LSOA 2011 to LSOA 2021 to LAD 2022 lookup (CHGIND U/S/M/X)",
        "5753660f8011db3ef6a0f2d0c4decc39532bf844791a6111811d09a9f6f9eae4",
        landing=_ONS_GEO,
    ),
    Source(
        "lsoa11_msoa11",
        "geography/lookup_lsoa11_msoa11.csv",
        "LSOA 2011 to MSOA 2011 (geographr CSV of the ONS lookup)",
        "c6346b735ac77d6ce205459c26cba64a1330f33d1613b1a2421fcfadd710f95f",
        landing=_ONS_GEO,
    ),
    Source(
        "msoa11_msoa21",
        "geography/lookup_msoa11_msoa21_ltla22.csv",
        "MSOA 2011 to MSOA 2021 to LAD 2022 (geographr CSV of the ONS lookup)",
        "b1be759842a5834668cc2d51826eff0fb4f4771278a17419f3fd47da3677bec4",
        landing=_ONS_GEO,
    ),
    Source(
        "lsoa11_subicb",
        "geography/lookup_lsoa11_sicbl22_icb22_ltla22.csv",
        "LSOA 2011 to sub-ICB location, ICB and LAD (2022) (geographr CSV of the ONS lookup)",
        "51440906afe0126070a2b8f252115ba3783c9cd231f0b7fd4e63a23573603192",
        landing=_ONS_GEO,
    ),
    Source(
        "lsoa21_subicb",
        "geography/lookup_lsoa21_sicbl24_icb24.csv",
        "LSOA 2021 to sub-ICB location and ICB (2024) (geographr CSV of the ONS lookup)",
        "763fa23ba15c21b58c8e99b3d2d980e4cc299e02017f4625691e7070ce4049c2",
        landing=_ONS_GEO,
    ),
    Source(
        "lsoa21_lad",
        "geography/lookup_lsoa21_ward24_ltla24.csv",
        "LSOA 2021 to ward and LAD (2024) (geographr CSV of the ONS lookup)",
        "f6e5e7faaf254e28b36747247524928dbc5023259653ace095a704203382b8ae",
        landing=_ONS_GEO,
    ),
    Source(
        "ruc11",
        "geography/Rural_Urban_Classification_(2011)_of_Lower_Layer_Super_Output_Areas_in_"
        "England_and_Wales.csv",
        "ONS rural-urban classification 2011 of LSOAs",
        "7dfc83195da4b70b524d649e4b5690bb32aa6e29106514c9e05f2ae5ae62d85c",
        landing=_ONS_GEO,
    ),
    Source(
        "ruc21",
        "geography/ruc21_lsoa21.csv",
        "ONS rural-urban classification 2021 of LSOAs (geographr CSV)",
        "bd7c04218514ef949d734ba94f4c793bc8423df4175e21401d2dbfbc52ce3f6b",
        landing=_ONS_GEO,
    ),
    Source(
        "boundaries_lsoa11",
        "geography/LSOA_Dec_2011_Boundaries_BSC_EW_V3.geojson.gz",
        "ONS LSOA 2011 boundaries, super-generalised clipped (BSC) V3, GeoJSON, gzipped",
        "d692c372291028233e332813a8620dc14df73db4a5d15dce5d517bdbcc9f70c5",
        landing=_ONS_GEO,
    ),
    Source(
        "epraccur",
        "geography/gp/epraccur_2023-02.csv",
        "ODS epraccur: GP practices and prescribing cost centres (headerless, 27 columns)",
        "138538c83c7dc17ff1fe9ac8e862b8c5b5d4388a70caf7e54ebcec13d6380cfa",
        "https://files.digital.nhs.uk/assets/ods/current/epraccur.zip",
        "geography/gp/epraccur.csv",
        "epraccur.csv",
        landing=_ODS,
        alternatives=("geography/gp/epraccur_2023-02_with_header.csv",),
    ),
    Source(
        "epcn",
        "geography/gp/epcn_practice_to_pcn_2023-02.csv",
        "ODS ePCN: practice to PCN relationships (sheet PCN Core Partner Details as CSV)",
        "4d59e4ced20bb00e232b7e698272cedf2959093ac78afa48e0675a513c1661ef",
        landing=_ODS,
        alternatives=("geography/gp/ePCN_2023-02.xlsx", "geography/gp/ePCN.xlsx"),
    ),
    Source(
        "epcn_xlsx",
        "geography/gp/ePCN_2023-02.xlsx",
        "ODS ePCN workbook",
        "f9a9310d54653eae34bdd65fb8f48a07bd25b5fa65466b6806c9672ec2929f25",
        landing=_ODS,
    ),
    Source(
        "subicb_icb",
        "geography/gp/subicb_to_icb_2022-07.csv",
        "ODS sub-ICB location to ICB to NHS England region (July 2022)",
        "61a271a55a58b70afeb00166c26acaf0b0033aec0e7ea1cfe063ab3c3749eb98",
        landing=_ODS,
    ),
)

BY_KEY: dict[str, Source] = {s.key: s for s in SOURCES}


def source(key: str) -> Source:
    try:
        return BY_KEY[key]
    except KeyError:
        raise KeyError(f"no reference source {key!r}; known: {', '.join(BY_KEY)}") from None


def markdown_table() -> str:
    """The catalogue as a Markdown table (docs/reference-data.md)."""
    lines = ["| key | file in the layout | publisher download | what |", "|---|---|---|---|"]
    for s in SOURCES:
        url = f"<{s.url}>" if s.url else f"none direct; see <{s.landing}>"
        lines.append(f"| `{s.key}` | `{s.path}` | {url} | {s.description} |")
    return "\n".join(lines)
