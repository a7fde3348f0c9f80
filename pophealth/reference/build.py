"""Build the canonical ``areas`` and ``practices`` tables from a reference folder.

``build_areas(root, imd="2019")`` gives one row per English LSOA 2011 (32,844, IoD2019)
and ``imd="2025"`` one row per English LSOA 2021 (33,755, IoD2025), with every column of
:data:`pophealth.schema.AREAS`. Sources of the other LSOA vintage go through the
official ONS lookup with the rule of :mod:`pophealth.reference.crosswalk`.
``build_practices(root)`` gives one row per GP practice in ODS epraccur.

Only the IMD file of the chosen release is required; any other missing file leaves its
columns null and adds a warning (counted per column in the report). Nothing is
dropped: the rows are exactly the LSOAs of the IMD file.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from pophealth.reference import crosswalk, loaders
from pophealth.reference._read import ReferenceDataError
from pophealth.reference.sources import source
from pophealth.schema import AREAS

RELEASES = {"2019": "IoD2019", "2025": "IoD2025"}

Step = Callable[[str], None]


class ReferenceWarning(UserWarning):
    """An optional reference file is missing or incomplete; the build goes on."""


@dataclass
class BuildReport:
    """What a build used, what it derived and what is missing."""

    imd_release: str
    lsoa_vintage: str
    rows: int = 0
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    missing_values: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    practices: dict[str, int] = field(default_factory=dict)
    #: Coverage of the store's address LSOAs by the new areas table (None: no addresses).
    address_coverage: dict[str, int] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "imd_release": self.imd_release,
            "lsoa_vintage": self.lsoa_vintage,
            "rows": self.rows,
            "files": self.files,
            "warnings": self.warnings,
            "missing_values": self.missing_values,
            "notes": self.notes,
            "practices": self.practices,
            "address_coverage": self.address_coverage,
        }


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class _Folder:
    """Finds and loads the files of a reference folder, recording what it used."""

    def __init__(self, root: str | Path, report: BuildReport, step: Step | None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise ReferenceDataError(f"{self.root}: no such reference folder", file=self.root)
        self.report = report
        self.step = step or (lambda _msg: None)
        self._cache: dict[str, Any] = {}

    def load(self, key: str, loader: Callable[..., Any], *, required: bool = False, why: str = ""):
        if key in self._cache:
            return self._cache[key]
        src = source(key)
        path = src.find(self.root)
        if path is None:
            msg = f"{key}: none of {', '.join(src.candidates())} under {self.root}" + (
                f"; {why}" if why else ""
            )
            if required:
                raise ReferenceDataError(f"required reference file missing: {msg}", file=self.root)
            self.report.warnings.append(msg)
            warnings.warn(msg, ReferenceWarning, stacklevel=3)
            return None
        self.step(f"reading {path.name}")
        frame = loader(path)
        self.report.files[key] = {
            "path": str(path.relative_to(self.root)),
            "sha256": _sha256(path),
            "rows": len(frame) if hasattr(frame, "__len__") else None,
        }
        self._cache[key] = frame
        return frame

    def warn(self, msg: str) -> None:
        self.report.warnings.append(msg)
        warnings.warn(msg, ReferenceWarning, stacklevel=3)


def pollution_quintile(values: pd.Series) -> pd.Series:
    """Quintile of exposure, 5 = most polluted 20 % of LSOAs (unweighted, like IMD).

    ``q = floor(5 × (r − ½) / n) + 1`` with ``r`` the average rank (ascending) among the
    ``n`` non-missing values: tied values share a quintile. Missing stays missing.
    """
    v = values.astype("float64")
    n = int(v.notna().sum())
    r = v.rank(method="average", ascending=True)
    q = np.floor(5 * (r - 0.5) / max(n, 1)) + 1
    return q.clip(1, 5).astype("Int64")


def _empty_areas(codes: pd.Series) -> pd.DataFrame:
    frame = pd.DataFrame({"lsoa_code": codes.astype("string").to_numpy()})
    for c in AREAS.columns:
        if c.name not in frame:
            frame[c.name] = pd.Series(
                pd.NA,
                index=frame.index,
                dtype={"string": "string", "int": "Int64", "float": "Float64", "bool": "boolean"}[
                    c.type
                ],
            )
    return frame


def _attach(frame: pd.DataFrame, other: pd.DataFrame | None, key: str, cols: dict[str, str]):
    """Fill ``frame`` columns (values of ``cols``) from ``other`` columns (keys) by LSOA."""
    if other is None:
        return
    o = other.drop_duplicates(key).set_index(key)
    for src_col, dst_col in cols.items():
        frame[dst_col] = frame["lsoa_code"].map(o[src_col]).astype(frame[dst_col].dtype)


def _crosswalk_pairs(folder: _Folder) -> pd.DataFrame | None:
    lookup = folder.load(
        "lsoa11_lsoa21",
        loaders.load_lsoa11_lsoa21_lookup,
        why="values of the other LSOA vintage are left out",
    )
    if lookup is None:
        return None
    pop = folder.load(
        "population_lsoa11",
        loaders.load_population_lsoa11,
        why="split weights fall back to equal shares",
    )
    census = folder.load(
        "census_ts021",
        loaders.load_census_ethnicity,
        why="split weights fall back to equal shares",
    )
    pop11 = pop.set_index("lsoa_code")["total_population"] if pop is not None else None
    pop21 = census.set_index("lsoa_code")["total"] if census is not None else None
    folder.report.notes.append(
        "LSOA 2011 <-> 2021: official ONS lookup; pair weight = estimated population in both "
        "(mid-2020 LSOA 2011 population shared among its 2021 pieces by their Census 2021 "
        "populations); counts apportioned, values population-weighted "
        "(pophealth.reference.crosswalk)"
    )
    return crosswalk.pair_weights(lookup, pop11, pop21)


def _imd_2019(folder: _Folder) -> pd.DataFrame:
    f2 = folder.load("imd2019_file2", loaders.load_imd2019_file2, required=False)
    if f2 is None:
        f1 = folder.load("imd2019_file1", loaders.load_imd2019_file1, required=True)
        folder.warn("IoD2019 File 2 missing: domain deciles are null (IMD from File 1)")
        base = f1
    else:
        base = f2
        f1 = folder.load("imd2019_file1", loaders.load_imd2019_file1)
        if f1 is not None:
            _cross_check(f1, f2, ("imd_rank", "imd_decile"), "File 1", "File 2")
    areas = _empty_areas(base["lsoa_code"])
    areas["lsoa_name"] = base["lsoa_name"].to_numpy()
    areas["imd_release"] = "IoD2019"
    areas["imd_rank"] = base["imd_rank"].to_numpy()
    areas["imd_decile"] = base["imd_decile"].to_numpy()
    for d in loaders.DOMAINS:
        if f"{d}_decile" in base:
            areas[f"{d}_decile"] = base[f"{d}_decile"].to_numpy()
    f9 = folder.load(
        "imd2019_file9", loaders.load_imd2019_file9, why="imd_score (derived) will be null"
    )
    if f9 is not None:
        score = pd.Series(
            loaders.derived_imd2019_score(f9).to_numpy(), index=f9["lsoa_code"].to_numpy()
        )
        areas["imd_score"] = areas["lsoa_code"].map(score).astype("Float64")
        folder.report.notes.append(
            "imd_score is DERIVED (IoD2019 weights applied to File 9 transformed scores, 3 dp); "
            "the official IoD2019 scores (Files 5/7) are not used. Classify with imd_rank/decile."
        )
    return areas


def _cross_check(a: pd.DataFrame, b: pd.DataFrame, cols, name_a: str, name_b: str) -> None:
    m = a.merge(b, on="lsoa_code", suffixes=("_a", "_b"), how="outer", indicator=True)
    if (m["_merge"] != "both").any():
        code = m.loc[m["_merge"] != "both", "lsoa_code"].iloc[0]
        raise ReferenceDataError(
            f"IoD2019 {name_a} and {name_b} list different LSOAs (e.g. {code})",
            file=b.attrs.get("source"),
            column="lsoa_code",
        )
    for c in cols:
        bad = m[f"{c}_a"] != m[f"{c}_b"]
        if bad.any():
            code = m.loc[bad, "lsoa_code"].iloc[0]
            raise ReferenceDataError(
                f"{b.attrs.get('source')}: column {c!r} disagrees with {name_a} "
                f"({a.attrs.get('source')}) for {int(bad.sum())} LSOA(s), e.g. {code}",
                file=b.attrs.get("source"),
                column=c,
            )


def _imd_2025(folder: _Folder) -> pd.DataFrame:
    imd = folder.load("imd2025", loaders.load_imd2025, required=True)
    areas = _empty_areas(imd["lsoa_code"])
    areas["imd_release"] = "IoD2025"
    for c in ("imd_rank", "imd_decile", "imd_score"):
        areas[c] = imd[c].to_numpy()
    for d in loaders.DOMAINS:
        areas[f"{d}_decile"] = imd[f"{d}_decile"].to_numpy()
    return areas


def build_areas(
    root: str | Path, imd: str = "2019", *, step: Step | None = None, _folder=None
) -> tuple[pd.DataFrame, BuildReport]:
    """The canonical ``areas`` rows from the reference folder ``root``; see the module doc."""
    if imd not in RELEASES:
        raise ValueError(f"imd must be one of {', '.join(RELEASES)}, not {imd!r}")
    vintage = "2011" if imd == "2019" else "2021"
    report = BuildReport(RELEASES[imd], vintage)
    folder = _folder or _Folder(root, report, step)
    folder.report = report
    areas = _imd_2019(folder) if imd == "2019" else _imd_2025(folder)
    pairs = _crosswalk_pairs(folder)

    # -- air quality: IoD2019 (LSOA 2011) -----------------------------------------------
    aq = folder.load("air_quality", loaders.load_air_quality)
    if aq is None:
        aq = folder.load(
            "imd2019_file8", loaders.load_imd2019_file8, why="air-quality columns are null"
        )
    aq_cols = list(loaders.AIR_QUALITY)
    if aq is not None:
        if vintage == "2021":
            if pairs is None:
                folder.warn("air quality is LSOA 2011 and the lookup is missing: left null")
                aq = None
            else:
                aq = crosswalk.weighted_means(aq, "lsoa_code", aq_cols, pairs, to="2021")
                aq = aq.rename(columns={"lsoa21_code": "lsoa_code"})
                report.notes.append(
                    "air quality: IoD2019 components (LSOA 2011, modelled ~2016) carried to "
                    "LSOA 2021 as population-weighted means; IoD2025 air quality is not in "
                    "the reference set"
                )
        _attach(areas, aq, "lsoa_code", {c: c for c in aq_cols})
    areas["no2_quintile"] = pollution_quintile(areas["no2_component"])
    areas["pm_quintile"] = pollution_quintile(areas["pm_component"])
    report.notes.append(
        "air-quality values are IoD ratios to the limit value (not µg/m³); quintiles are "
        "unweighted LSOA quintiles within England, 5 = most polluted"
    )

    # -- fuel poverty: DESNZ 2023 (LSOA 2021) -------------------------------------------
    fp = folder.load("fuel_poverty", loaders.load_fuel_poverty, why="fuel_poverty_pct is null")
    if fp is not None:
        counts = fp[["lsoa21_code", "households", "households_fuel_poor"]]
        if vintage == "2011":
            if pairs is None:
                folder.warn("fuel poverty is LSOA 2021 and the lookup is missing: left null")
                counts = None
            else:
                counts = crosswalk.apportion_counts(
                    counts,
                    "lsoa21_code",
                    ["households", "households_fuel_poor"],
                    pairs,
                    to="2011",
                ).rename(columns={"lsoa11_code": "lsoa_code"})
                report.notes.append(
                    "fuel poverty: DESNZ 2023 household counts (LSOA 2021) apportioned to "
                    "LSOA 2011 by the pair weights, then % recomputed"
                )
        else:
            counts = counts.rename(columns={"lsoa21_code": "lsoa_code"})
        if counts is not None:
            pct = 100.0 * counts["households_fuel_poor"] / counts["households"]
            pct = pd.Series(pct.to_numpy(), index=counts["lsoa_code"].to_numpy())
            published = pd.Series(
                fp["pct_fuel_poor"].to_numpy(), index=fp["lsoa21_code"].to_numpy()
            )
            if vintage == "2021":  # native: the published %, not a recomputation
                pct = published
            else:
                # A 2011 LSOA inside one 2021 LSOA (unchanged, or a part of a merge) takes
                # the published % of that LSOA: recomputing it from the rounded household
                # counts moves 31 published values by 0.01.
                n21 = pairs.groupby("lsoa11_code")["lsoa21_code"].transform("nunique")
                inside = pairs[n21 == 1].drop_duplicates("lsoa11_code")
                inside = pd.Series(
                    inside["lsoa21_code"].map(published).to_numpy(),
                    index=inside["lsoa11_code"].to_numpy(),
                ).dropna()
                pct = pct.round(2)
                pct.loc[inside.index.intersection(pct.index)] = inside
            areas["fuel_poverty_pct"] = areas["lsoa_code"].map(pct).astype("Float64").round(2)

    # -- population: ONS mid-2020 (LSOA 2011) -------------------------------------------
    pop = folder.load("population_lsoa11", loaders.load_population_lsoa11)
    if pop is not None:
        pop = pop[["lsoa_code", "total_population"]]
        if vintage == "2021":
            if pairs is None:
                folder.warn("population is LSOA 2011 and the lookup is missing: left null")
                pop = None
            else:
                pop = crosswalk.apportion_counts(
                    pop, "lsoa_code", ["total_population"], pairs, to="2021", whole=True
                ).rename(columns={"lsoa21_code": "lsoa_code"})
                report.notes.append(
                    "population: ONS mid-2020 (LSOA 2011) apportioned to LSOA 2021 by the "
                    "pair weights in whole people (largest remainder: every LSOA 2011 total "
                    "kept)"
                )
        if pop is not None:
            _attach(areas, pop, "lsoa_code", {"total_population": "population"})
    elif vintage == "2011":
        f6 = folder.load("imd2019_file6", loaders.load_imd2019_file6, why="population is null")
        if f6 is not None:
            _attach(areas, f6, "lsoa_code", {"pop_total": "population"})
            folder.warn("population from IoD2019 File 6 (mid-2015, excluding prisoners)")

    # -- geography ------------------------------------------------------------------------
    if vintage == "2011":
        msoa = folder.load("lsoa11_msoa11", loaders.load_lsoa11_msoa11)
        _attach(areas, msoa, "lsoa11_code", {"msoa11_code": "msoa_code"})
        nhs = folder.load("lsoa11_subicb", loaders.load_lsoa11_subicb)
        if nhs is not None:
            _attach(
                areas,
                nhs,
                "lsoa11_code",
                {"sub_icb_ons": "sub_icb", "icb_ons": "icb", "lad_code": "lad_code"},
            )
        ruc = folder.load("ruc11", loaders.load_ruc11)
        if ruc is not None:
            _attach(areas, ruc, "lsoa11_code", {"ruc_name": "rural_urban"})
    else:
        nhs = folder.load("lsoa21_subicb", loaders.load_lsoa21_subicb)
        if nhs is not None:
            _attach(areas, nhs, "lsoa21_code", {"sub_icb_ons": "sub_icb", "icb_ons": "icb"})
            _attach(areas, nhs, "lsoa21_code", {"lsoa21_name": "lsoa_name"})
        lad = folder.load("lsoa21_lad", loaders.load_lsoa21_lad)
        if lad is not None:
            _attach(areas, lad, "lsoa21_code", {"lad_code": "lad_code"})
            if areas["lsoa_name"].isna().all():
                _attach(areas, lad, "lsoa21_code", {"lsoa21_name": "lsoa_name"})
        ruc = folder.load("ruc21", loaders.load_ruc21)
        if ruc is not None:
            _attach(areas, ruc, "lsoa21_code", {"ruc_name": "rural_urban"})
        msoa = folder.load("msoa11_msoa21", loaders.load_msoa11_msoa21)
        if msoa is not None:
            # An LSOA 2021 name is its MSOA 2021 name plus one letter (ONS naming rule).
            by_name = msoa.drop_duplicates("msoa21_name").set_index("msoa21_name")["msoa21_code"]
            stem = areas["lsoa_name"].str.slice(0, -1)
            areas["msoa_code"] = stem.map(by_name).astype("string")
            report.notes.append(
                "msoa_code (2021) from the LSOA 2021 name (MSOA name + letter) and the MSOA "
                "2021 names of the MSOA 2011->2021 lookup"
            )
    _check_complete(areas, folder)
    report.rows = len(areas)
    areas["imd_quintile"] = ((areas["imd_decile"] + 1) // 2).astype("Int64")
    areas["core20"] = (areas["imd_decile"] <= 2).fillna(False).astype(bool)
    report.missing_values = {
        c.name: int(areas[c.name].isna().sum()) for c in AREAS.columns if areas[c.name].isna().any()
    }
    return areas[AREAS.column_names], report


def _check_complete(areas: pd.DataFrame, folder: _Folder) -> None:
    for col in ("population", "fuel_poverty_pct", "no2_component", "msoa_code", "lad_code",
                "sub_icb", "icb", "rural_urban"):  # fmt: skip
        n = int(areas[col].isna().sum())
        if 0 < n < len(areas):
            folder.warn(f"{col}: {n:,} of {len(areas):,} LSOAs have no value in the reference")


def areas_arrow(areas: pd.DataFrame) -> pa.Table:
    """Validate built ``areas`` rows against the canonical schema; Arrow for the store.

    A row the schema rejects is a bug in the build (the inputs were validated): raise.
    """
    from pophealth.validate import format_problems, validate

    result = validate("areas", areas, source="reference build (areas)")
    if result.rows_quarantined:
        raise ReferenceDataError(
            "the built areas table breaks the canonical schema:\n"
            + format_problems(result.quarantine)
        )
    return result.valid


# -- practices --------------------------------------------------------------------------


def _subicb_lookups(folder: _Folder) -> list[pd.DataFrame]:
    """The LSOA -> sub-ICB lookups, the one the ``areas`` table uses first.

    ONS recoded sub-ICBs and ICBs whose boundaries changed (Surrey Heartlands and Sussex:
    E38000246/E54000052 in 2022, E38000264/E54000063 in 2024), so the practices must take
    their ONS codes from the same lookup as the areas of the same build, or they do not
    join: 2022 (LSOA 2011) for an IoD2019 build, 2024 (LSOA 2021) for IoD2025.
    """
    order = [
        ("lsoa11_subicb", loaders.load_lsoa11_subicb),
        ("lsoa21_subicb", loaders.load_lsoa21_subicb),
    ]
    if folder.report.lsoa_vintage == "2021":
        order.reverse()
    parts = []
    for key, load in order:
        frame = folder.load(key, load, why="practice sub-ICB/ICB codes may be null")
        if frame is not None:
            parts.append(frame)
    return parts


def _subicb_codes(folder: _Folder) -> pd.DataFrame | None:
    """ODS sub-ICB code -> (ONS sub-ICB code, ONS ICB code) from the LSOA lookups: the
    areas' lookup first, then the other for codes it lacks."""
    parts = [f[["sub_icb", "sub_icb_ons", "icb_ons"]] for f in _subicb_lookups(folder)]
    if not parts:
        return None
    return pd.concat(parts).drop_duplicates("sub_icb").set_index("sub_icb")


def build_practices(
    root: str | Path,
    *,
    step: Step | None = None,
    report: BuildReport | None = None,
    _folder=None,
) -> tuple[pd.DataFrame, BuildReport]:
    """One row per GP practice in ODS epraccur (prescribing setting 4, open or closed:
    registrations may name closed practices) with its current PCN (the ePCN relationship
    without an end date; the latest start wins), and its sub-ICB location and ICB as ONS
    codes (E38…/E54…, the codes of the areas table), mapped from the epraccur
    commissioner (ODS code). ``lsoa_code`` is null: no postcode lookup is bundled."""
    report = report or BuildReport("", "")
    folder = _folder or _Folder(root, report, step)
    folder.report = report
    ep = folder.load("epraccur", loaders.load_epraccur, why="no practices (a store keeps its own)")
    cols = ["practice_id", "name", "pcn_id", "pcn_name", "sub_icb", "icb", "lsoa_code"]
    if ep is None:
        return pd.DataFrame({c: pd.Series(dtype="string") for c in cols}), report
    gp = ep[ep["prescribing_setting"] == loaders.GP_PRACTICE_SETTING].reset_index(drop=True)
    out = pd.DataFrame({"practice_id": gp["practice_id"].to_numpy(), "name": gp["name"].to_numpy()})
    for c in ("pcn_id", "pcn_name", "sub_icb", "icb", "lsoa_code"):
        out[c] = pd.Series(pd.NA, index=out.index, dtype="string")
    members = folder.load("epcn", loaders.load_epcn_members, why="pcn_id is null")
    if members is not None:
        current = members[members["end_date"].isna()].sort_values(
            ["practice_id", "start_date"], ascending=[True, False], kind="stable"
        )
        current = current.drop_duplicates("practice_id").set_index("practice_id")
        out["pcn_id"] = out["practice_id"].map(current["pcn_id"]).astype("string")
        out["pcn_name"] = out["practice_id"].map(current["pcn_name"]).astype("string")
    codes = _subicb_codes(folder)
    commissioner = gp["commissioner"]
    if codes is not None:
        out["sub_icb"] = commissioner.map(codes["sub_icb_ons"]).astype("string")
        out["icb"] = commissioner.map(codes["icb_ons"]).astype("string")
    icb = folder.load("subicb_icb", loaders.load_subicb_icb)
    if icb is not None and codes is not None:
        # ICB of sub-ICB codes the LSOA lookups lack: ODS ICB code -> ONS ICB code.
        lookups = _subicb_lookups(folder)
        if lookups:
            both = pd.concat([f[["icb", "icb_ons"]] for f in lookups])
            icb_ons = both.drop_duplicates("icb").set_index("icb")["icb_ons"]
            fill = commissioner.map(icb.set_index("sub_icb")["icb"]).map(icb_ons)
            out["icb"] = out["icb"].fillna(fill.astype("string"))
    active = (gp["status_code"] == "A").to_numpy()
    report.practices = {
        "gp_practices": len(out),
        "active": int(active.sum()),
        "active_with_pcn": int((out["pcn_id"].notna().to_numpy() & active).sum()),
        "active_with_sub_icb": int((out["sub_icb"].notna().to_numpy() & active).sum()),
        "with_sub_icb": int(out["sub_icb"].notna().sum()),
        "other_organisations_in_epraccur": int(len(ep) - len(gp)),
    }
    unmapped = out["sub_icb"].isna().to_numpy()
    if unmapped.any():
        welsh = commissioner.str.startswith("7A").fillna(False).to_numpy()
        report.notes.append(
            f"practices: {int(unmapped.sum()):,} have no sub-ICB/ICB code — "
            f"{int((unmapped & active).sum()):,} active "
            f"({int((unmapped & active & welsh).sum()):,} commissioned by a Welsh health "
            f"board) and {int((unmapped & ~active).sum()):,} closed or dormant (commissioner "
            "abolished before 2022)"
        )
    return out[cols], report


def practices_arrow(practices: pd.DataFrame) -> pa.Table:
    from pophealth.validate import format_problems, validate

    result = validate("practices", practices, source="reference build (practices)")
    if result.rows_quarantined:
        raise ReferenceDataError(
            "the built practices table breaks the canonical schema:\n"
            + format_problems(result.quarantine)
        )
    return result.valid


def store_only_practices(store, built: pa.Table) -> pa.Table | None:
    """The rows of the store's ``practices`` whose ``practice_id`` is not in ``built``
    (an ingest adds practices epraccur does not list: the store's registrations name
    them, so a rebuild keeps them); ``None`` when the store has no practices."""
    import pyarrow.compute as pc

    if store.snapshot is None or not store.row_counts().get("practices"):
        return None
    stored = store.read("practices")
    # (a store written before a nullable column was added has no such column)
    stored = pa.table(
        [
            stored[f.name].cast(f.type)
            if f.name in stored.column_names
            else pa.nulls(stored.num_rows, f.type)
            for f in built.schema
        ],
        schema=built.schema,
    )
    mask = pc.invert(pc.is_in(stored["practice_id"], value_set=built["practice_id"]))
    return stored.filter(mask)


def address_coverage(store, areas: pa.Table) -> dict[str, int] | None:
    """How many distinct LSOA codes of the store's ``addresses`` are in ``areas`` and how
    many are not (they would link to the "unknown" area group); ``None`` when the store
    has no addresses. Reads only the ``lsoa_code`` column."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if store.snapshot is None or not store.row_counts().get("addresses"):
        return None
    codes = pq.read_table(store.table_path("addresses"), columns=["lsoa_code"])["lsoa_code"]
    distinct = pc.unique(codes.drop_null())
    known = pc.is_in(distinct, value_set=areas["lsoa_code"].combine_chunks())
    n_known = int(pc.sum(known).as_py() or 0)
    return {
        "address_lsoas": len(distinct),
        "address_lsoas_in_areas": n_known,
        "address_lsoas_not_in_areas": len(distinct) - n_known,
        "addresses_without_lsoa": int(codes.null_count),
    }


def build_reference_store(
    root: str | Path,
    out: str | Path,
    imd: str = "2019",
    *,
    step: Step | None = None,
):
    """Build ``areas`` and ``practices`` from ``root`` and write them into the store at
    ``out``; other tables are carried over, and so is ``practices`` when the folder has
    no epraccur (with one, the store's practices that epraccur does not list are kept
    beside the built ones: an ingest's, which its registrations name). The IMD release,
    LSOA vintage, files used (with SHA-256), warnings, derivation notes and the coverage of
    the store's address LSOAs are recorded in the store metadata. Returns (store, report)."""
    from pophealth.store import Store

    store = Store.open_or_new(out)  # refuses a non-store before any work
    folder = _Folder(root, BuildReport("", ""), step)
    areas, report = build_areas(root, imd, step=step, _folder=folder)
    practices, report = build_practices(root, step=step, report=report, _folder=folder)
    if step:
        step("validating against the canonical schema")
    tables = {"areas": areas_arrow(areas)}
    if "epraccur" in report.files:
        built = practices_arrow(practices)
        kept = store_only_practices(store, built)
        if kept is not None and kept.num_rows:
            # an ingest's practices (an ODS code epraccur does not list, a Synthea
            # organisation, the 'UNKNOWN' placeholder) stay: registrations name them
            built = pa.concat_tables([built, kept])
            report.notes.append(
                f"practices: {kept.num_rows:,} of the store's practices are not GP practices "
                "in epraccur (added by an ingest, e.g. for inferred registrations) and are kept"
            )
        tables["practices"] = built
    else:
        report.notes.append("practices: no epraccur in the folder; the store's table is kept")
    coverage = address_coverage(store, tables["areas"])
    if coverage is not None:
        report.address_coverage = coverage
        if coverage["address_lsoas_not_in_areas"]:
            folder.warn(
                f"{coverage['address_lsoas_not_in_areas']:,} of {coverage['address_lsoas']:,} "
                f"distinct LSOA codes in the store's addresses are not in the new areas table "
                f"(LSOA {report.lsoa_vintage}); their patients fall in the unknown area group"
            )
    esp = folder.load("esp2013", loaders.load_esp2013, why="ESP2013 not cross-checked")
    if esp is not None:
        if loaders.esp2013_matches_builtin(esp):
            report.notes.append("ESP2013 file equals the built-in pophealth.stats.ESP2013")
        else:
            folder.warn(
                "the ESP2013 file's weights differ from pophealth.stats.ESP2013 (the "
                "built-in 19 Eurostat 2013 weights are what the statistics use)"
            )
    boundaries = source("boundaries_lsoa11").find(root)
    if boundaries is not None:
        report.files["boundaries_lsoa11"] = {
            "path": str(boundaries.relative_to(Path(root))),
            "sha256": _sha256(boundaries),
            "rows": None,
        }
    if step:
        step("writing the store")
    extra = {
        "imd_release": report.imd_release,
        "lsoa_vintage": report.lsoa_vintage,
        "reference": report.as_dict(),
    }
    if boundaries is not None:  # for maps: the store holds no geometry, only where it is
        extra["boundaries"] = {"path": str(boundaries.resolve()), "lsoa_vintage": "2011"}
    return store.write(
        tables,
        provenance={
            "source": "pophealth reference build",
            "from": str(Path(root).resolve()),
            "imd_release": report.imd_release,
            "files": report.files,
        },
        extra_metadata=extra,
    ), report
