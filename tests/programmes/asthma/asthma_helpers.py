"""Tiny canonical tables for the asthma spec tests, written as real stores (helpers)."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pyarrow as pa

from pophealth.codelists import Codelist
from pophealth.programmes.asthma.codes import curated
from pophealth.schema import TABLES, arrow_schema
from pophealth.store import Store

INDEX = dt.date(2026, 11, 23)

#: Test code values: real codes from the curated lists (the referral pathway too:
#: asthma_referral_secondary / asthma_seen_secondary), and two valid-format SNOMED CT codes
#: standing in for the severe-asthma-centre lists pophealth does not curate (no public
#: source confirmed such concepts).
SABA = "39113611000001102"
ICS_HIGH = "2831211000001109"
PRED5 = "325427002"
PRED25 = "325450008"
REFERRAL = "306275005"  # Referral to respiratory physician (procedure)
SEEN = "428489000"  # Seen in respiratory clinic
SEEN_CHEST = "185240002"  # Seen in chest clinic
SAC_REFERRAL = "406547006"
SAC_SEEN = "183477006"

CODES = dataclasses.replace(
    curated(),
    referral_sac=Codelist.of("snomedct", [SAC_REFERRAL], name="test SAC referral"),
    seen_sac=Codelist.of("snomedct", [SAC_SEEN], name="test SAC clinic"),
)


def d(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def table(name: str, rows: list[dict]) -> pa.Table:
    schema = arrow_schema(name)
    columns = {f.name: [r.get(f.name) for r in rows] for f in schema}
    return pa.table(columns, schema=schema)


def write_store(path, **tables: list[dict]) -> Store:
    data = {name: table(name, tables.get(name, [])) for name in TABLES}
    return Store.open_or_new(path).write(data, provenance={"source": "asthma spec test"})


def patient(pid: str, dob: str = "1980-01-01", **extra) -> dict:
    return {
        "patient_id": pid,
        "date_of_birth": d(dob),
        "sex": extra.pop("sex", "female"),
        "ethnicity_5": extra.pop("ethnicity_5", "white"),
        "ethnicity_16": "A",
        **extra,
    }
