"""Data in: FHIR R4, OMOP CDM 5.3/5.4 and flat canonical CSV/Parquet into the store.

Public API::

    ingest_fhir(paths, out, *, key, append=False, progress=None) -> IngestSummary
    ingest_omop(directory, out, *, key, append=False, progress=None) -> IngestSummary
    ingest_csv(directory, out, *, append=False, progress=None, patient_ids="check",
               key=None) -> IngestSummary
    load_key(key_file=None) -> bytes   # --key-file or $POPHEALTH_PSEUDONYM_KEY

Every importer streams its input in batches, validates every row against
:mod:`pophealth.schema`, quarantines what does not fit (``STORE/quarantine/<run>.csv``
with file, line/entry, record id, field and reason) and writes the store once,
atomically, at the end. See ``docs/ingest.md``.
"""

from __future__ import annotations

from pophealth.ingest.pseudonym import Pseudonymiser, PseudonymKeyError, load_key
from pophealth.ingest.sink import IngestSummary, RecordCounts, TableCounts


def __getattr__(name: str):
    if name == "ingest_fhir":
        from pophealth.ingest.fhir import ingest_fhir

        return ingest_fhir
    if name == "ingest_omop":
        from pophealth.ingest.omop import ingest_omop

        return ingest_omop
    if name == "ingest_csv":
        from pophealth.ingest.flat import ingest_csv

        return ingest_csv
    raise AttributeError(name)


__all__ = [
    "IngestSummary",
    "PseudonymKeyError",
    "Pseudonymiser",
    "RecordCounts",
    "TableCounts",
    "ingest_csv",
    "ingest_fhir",
    "ingest_omop",
    "load_key",
]
