"""Tiny canonical tables for the asthma spec tests, written as real stores (helpers)."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

from pophealth.programmes.asthma.codes import AsthmaCodes, codes
from pophealth.schema import TABLES, arrow_schema
from pophealth.store import Store

INDEX = dt.date(2026, 11, 23)

CODES = AsthmaCodes(
    asthma=codes("snomedct", ["195967001"]),
    asthma_resolved=codes("snomedct", ["162660004"]),
    saba=codes("dmd", ["SABA1", "SABA2"]),
    ics=codes("dmd", ["ICS_LOW", "ICS_HIGH"]),
    ics_high_dose=codes("dmd", ["ICS_HIGH"]),
    prednisolone_mg={("dmd", "PRED5"): 5.0, ("dmd", "PRED25"): 25.0},
    review=codes("snomedct", ["394700004"]),
    action_plan=codes("snomedct", ["406162001"]),
    inhaler_technique=codes("snomedct", ["170614009"]),
    smoking_current=codes("snomedct", ["77176002"]),
    smoking_not_current=codes("snomedct", ["8517006"]),
    ed_asthma=codes("snomedct", ["281239006"]),
    referral_secondary=codes("snomedct", ["REF2"]),
    seen_secondary=codes("snomedct", ["SEEN2"]),
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
