"""Official small-area reference data and its linkage to patients.

* :mod:`pophealth.reference.loaders` — one validated loader per official file (IoD2019
  Files 1, 2, 3, 6, 8, 9; IoD2025; DESNZ fuel poverty; ONS population; Census 2021
  TS021; ESP2013; ONS geography lookups and boundaries; ODS epraccur and ePCN).
* :mod:`pophealth.reference.crosswalk` — the LSOA 2011 ↔ 2021 rule (splits and merges).
* :mod:`pophealth.reference.build` — the canonical ``areas`` and ``practices`` tables.
* :mod:`pophealth.reference.download` — fetching the files from their publishers.
* :mod:`pophealth.reference.linkage` — the areas table for the query layer, and
  attaching area attributes with unknown LSOAs counted, never dropped.

See docs/reference-data.md.
"""

from pophealth.reference._read import ReferenceDataError

__all__ = ["ReferenceDataError"]
