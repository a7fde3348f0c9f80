"""The reference side of area linkage: the areas table for the query layer, and a
vectorised join of LSOA codes to area attributes that counts, never drops, the unknown.

The rule for *which* LSOA a patient lives in on a date (address history, overlaps)
lives in the query layer (:meth:`pophealth.query.tables.Addresses.area_on`). This module
answers "given LSOA codes, what are their attributes, and how many are unknown?".
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa

from pophealth.schema import AREAS

#: Area attributes (every areas column but the key).
ATTRIBUTES: tuple[str, ...] = tuple(c for c in AREAS.column_names if c != "lsoa_code")


def areas_table(store, *, as_pandas: bool = False) -> pa.Table | pd.DataFrame:
    """The ``areas`` table of a store (a :class:`~pophealth.store.Store` or its path),
    as Arrow (default) or pandas. Its metadata says which IMD release and LSOA vintage
    it holds: :func:`areas_release`."""
    from pophealth.store import Store

    if isinstance(store, str | os.PathLike | Path):
        store = Store.open(store)
    table = store.read("areas")
    return table.to_pandas() if as_pandas else table


def areas_release(store) -> dict[str, str | None]:
    """``{"imd_release": "IoD2019", "lsoa_vintage": "2011"}`` as recorded by the build
    (``None`` values for a store whose areas did not come from ``reference build``)."""
    from pophealth.store import Store

    if isinstance(store, str | os.PathLike | Path):
        store = Store.open(store)
    meta = store.metadata
    return {"imd_release": meta.get("imd_release"), "lsoa_vintage": meta.get("lsoa_vintage")}


def area_boundaries(store, codes=None) -> dict | None:
    """LSOA boundaries (GeoJSON FeatureCollection, ``feature.id`` = LSOA code) for a map of
    the store's areas, from the boundary file recorded by ``reference build``; ``None``
    when the store has none (e.g. the synthetic region). ``codes`` limits the features
    (default: the LSOAs of the store's areas table). The boundaries are LSOA 2011: with an
    IoD2025 (LSOA 2021) build only the unchanged LSOAs have a shape."""
    from pophealth.reference.loaders import load_boundaries
    from pophealth.store import Store

    if isinstance(store, str | os.PathLike | Path):
        store = Store.open(store)
    info = store.metadata.get("boundaries")
    if not info or not Path(info["path"]).is_file():
        return None
    if codes is None:
        codes = areas_table(store).column("lsoa_code").to_pylist()
    return load_boundaries(info["path"], codes=set(codes), complete=False)


@dataclass
class LinkageReport:
    """How many rows found their area, and why the others did not."""

    rows: int
    known: int
    no_lsoa: int
    lsoa_not_in_areas: int
    unknown_codes: list[str] = field(default_factory=list)  # up to 20 examples

    @property
    def unknown(self) -> int:
        return self.no_lsoa + self.lsoa_not_in_areas

    def summary(self) -> str:
        text = (
            f"{self.known:,} of {self.rows:,} rows linked to an area; unknown area: "
            f"{self.unknown:,} ({self.no_lsoa:,} without an LSOA, "
            f"{self.lsoa_not_in_areas:,} with an LSOA not in the areas table)"
        )
        if self.unknown_codes:
            text += "; e.g. " + ", ".join(self.unknown_codes[:5])
        return text


def link_areas(
    frame: pd.DataFrame,
    areas: pd.DataFrame | pa.Table,
    *,
    lsoa_column: str = "lsoa_code",
    attributes: tuple[str, ...] | list[str] | None = None,
) -> tuple[pd.DataFrame, LinkageReport]:
    """``frame`` with the area attributes of its ``lsoa_column`` added, plus
    ``area_status`` (``known``, ``no_lsoa`` or ``lsoa_not_in_areas``).

    Every input row is kept, in order: rows with no LSOA or an LSOA missing from
    ``areas`` get null attributes and are counted in the report. One vectorised join.
    """
    if isinstance(areas, pa.Table):
        areas = areas.to_pandas()
    if lsoa_column not in frame:
        raise KeyError(f"frame has no column {lsoa_column!r}")
    wanted = list(attributes) if attributes is not None else list(ATTRIBUTES)
    unknown_attrs = [a for a in wanted if a not in areas.columns]
    if unknown_attrs:
        raise KeyError(f"areas has no column(s) {', '.join(unknown_attrs)}")
    clash = [a for a in wanted if a in frame.columns and a != lsoa_column]
    if clash:
        raise ValueError(f"frame already has column(s) {', '.join(clash)}")
    codes = frame[lsoa_column].astype("string").str.strip()
    table = areas.drop_duplicates("lsoa_code").set_index("lsoa_code")[wanted]
    looked = table.reindex(codes.fillna("").to_numpy())
    looked.index = frame.index
    out = pd.concat([frame, looked], axis=1)
    present = codes.notna() & (codes != "")
    in_areas = codes.isin(table.index) & present
    status = pd.Series("known", index=frame.index, dtype="string")
    status[~present] = "no_lsoa"
    status[present & ~in_areas] = "lsoa_not_in_areas"
    out["area_status"] = status
    missing_codes = codes[present & ~in_areas].drop_duplicates().head(20).tolist()
    report = LinkageReport(
        rows=len(frame),
        known=int(in_areas.sum()),
        no_lsoa=int((~present).sum()),
        lsoa_not_in_areas=int((present & ~in_areas).sum()),
        unknown_codes=[str(c) for c in missing_codes],
    )
    return out, report
