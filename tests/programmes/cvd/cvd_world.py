"""Tiny worlds for the CVD programme's spec tests (a helper module, not a conftest, so
its name cannot clash with other test folders' conftest modules): a handful of patients written to a
real store (Parquet) and queried on DuckDB and on local Spark."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import pandas as pd
import pyarrow as pa
import pytest

from pophealth.codelists import Codelist, verhoeff_ok
from pophealth.programmes.cvd.codelists import CvdCodelists
from pophealth.schema import arrow_schema
from pophealth.store import Store

INDEX = dt.date(2025, 3, 31)

ENGINES = [
    pytest.param("duckdb", id="duckdb"),
    pytest.param("spark", id="spark", marks=pytest.mark.spark),
]


def sct(base: int) -> str:
    """A well-formed SNOMED CT / dm+d identifier: ``base`` plus its Verhoeff check digit."""
    for d in range(10):
        code = f"{base}{d}"
        if verhoeff_ok(code):
            return code
    raise AssertionError("no check digit")  # pragma: no cover


# Fictional codes (well formed, not real concepts) — one per role the tests use.
CODES = {
    role: sct(1000000 + i * 10)
    for i, role in enumerate(
        [
            "hypertension",
            "hypertension_resolved",
            "ihd",
            "pad",
            "stroke",
            "tia",
            "atrial_fibrillation",
            "heart_failure",
            "type1_diabetes",
            "type2_diabetes",
            "ckd_3_5",
            "familial_hypercholesterolaemia",
            "bleeding",
            "sbp",
            "dbp",
            "bmi",
            "height",
            "weight",
            "total_cholesterol",
            "hdl",
            "ldl",
            "non_hdl",
            "smoking_never",
            "smoking_ex",
            "smoking_current",
            "smoking_heavy",
            "egfr",
            "haemoglobin",
            "atorvastatin_20",
            "atorvastatin_80",
            "simvastatin_40",
            "ezetimibe",
            "apixaban",
            "warfarin",
            "aspirin",
            "ramipril",
            "quetiapine",
            "prednisolone",
            "chol_hdl_ratio",  # (new roles go last: earlier codes keep their values)
        ]
    )
}


def _list(role: str, *keys: str, **kw) -> Codelist:
    return Codelist.of("snomedct", [CODES[k] for k in (keys or (role,))], name=role, **kw)


def _dmd(role: str, *keys: str, **kw) -> Codelist:
    return Codelist.of("dmd", [CODES[k] for k in (keys or (role,))], name=role, **kw)


def make_codelists() -> CvdCodelists:
    smoking_keys = ("smoking_never", "smoking_ex", "smoking_current", "smoking_heavy")
    statin_keys = ("atorvastatin_20", "atorvastatin_80", "simvastatin_40")
    return CvdCodelists(
        **{
            r: _list(r)
            for r in (
                "hypertension",
                "hypertension_resolved",
                "ihd",
                "pad",
                "stroke",
                "tia",
                "atrial_fibrillation",
                "heart_failure",
                "type1_diabetes",
                "type2_diabetes",
                "ckd_3_5",
                "familial_hypercholesterolaemia",
                "bleeding",
                "sbp",
                "dbp",
                "bmi",
                "height",
                "weight",
                "total_cholesterol",
                "hdl",
                "ldl",
                "non_hdl",
                "chol_hdl_ratio",
                "egfr",
                "haemoglobin",
            )
        },
        smoking=_list(
            "smoking",
            *smoking_keys,
            categories={
                "Category": {
                    CODES["smoking_never"]: "never",
                    CODES["smoking_ex"]: "ex",
                    CODES["smoking_current"]: "current",
                    CODES["smoking_heavy"]: "heavy",
                }
            },
            default_category="Category",
        ),
        statins=_dmd(
            "statins",
            *statin_keys,
            categories={
                "ingredient": {
                    CODES["atorvastatin_20"]: "atorvastatin",
                    CODES["atorvastatin_80"]: "atorvastatin",
                    CODES["simvastatin_40"]: "simvastatin",
                }
            },
            attributes={
                "strength_mg": {
                    CODES["atorvastatin_20"]: 20.0,
                    CODES["atorvastatin_80"]: 80.0,
                    CODES["simvastatin_40"]: 40.0,
                }
            },
        ),
        other_lipid_lowering=_dmd("other_lipid_lowering", "ezetimibe"),
        doacs=_dmd("doacs", "apixaban"),
        warfarin=_dmd("warfarin"),
        aspirin=_dmd("aspirin"),
        antihypertensives=_dmd("antihypertensives", "ramipril"),
        atypical_antipsychotics=_dmd("atypical_antipsychotics", "quetiapine"),
        corticosteroids=_dmd("corticosteroids", "prednisolone"),
    )


def _frame(name: str, rows: Iterable[dict]) -> pa.Table:
    schema = arrow_schema(name)
    rows = list(rows)
    df = pd.DataFrame(rows, columns=schema.names)
    for f in schema:
        if pa.types.is_date32(f.type):
            df[f.name] = pd.to_datetime(df[f.name]).dt.date
    return pa.Table.from_pandas(df, schema=schema, preserve_index=False)


class World:
    """Patients and their records, written as a store; ``add_*`` then :meth:`store`."""

    def __init__(self) -> None:
        self.patients: list[dict] = []
        self.registrations: list[dict] = []
        self.addresses: list[dict] = []
        self.events: list[dict] = []
        self.medications: list[dict] = []

    def patient(
        self,
        pid: str,
        *,
        age: int = 60,
        sex: str = "male",
        ethnicity_16: str = "A",
        practice: str = "XP001",
        lsoa: str = "X01000001",
        born: dt.date | str | None = None,
    ) -> str:
        """A patient aged ``age`` on INDEX (born 1 January), or born on ``born``."""
        dob = dt.date(INDEX.year - age, 1, 1)
        if dob.replace(year=INDEX.year) > INDEX:  # pragma: no cover - INDEX is in March
            dob = dob.replace(year=dob.year - 1)
        if born is not None:
            dob = pd.Timestamp(born).date()
        eth5 = {"A": "white", "H": "asian", "M": "black", "Z": "unknown"}.get(ethnicity_16, "other")
        self.patients.append(
            dict(
                patient_id=pid,
                date_of_birth=dob,
                sex=sex,
                ethnicity_5=eth5,
                ethnicity_16=ethnicity_16,
                date_of_death=None,
            )
        )
        self.registrations.append(
            dict(
                patient_id=pid, practice_id=practice, start_date=dt.date(2000, 1, 1), end_date=None
            )
        )
        self.addresses.append(
            dict(
                patient_id=pid,
                start_date=dt.date(2000, 1, 1),
                end_date=None,
                lsoa_code=lsoa,
                care_home=False,
            )
        )
        return pid

    def event(
        self, pid: str, role: str, date, value: float | None = None, unit: str | None = None
    ) -> None:
        self.events.append(
            dict(
                patient_id=pid,
                date=pd.Timestamp(date).date(),
                datetime=None,
                system="snomedct",
                code=CODES[role],
                value=value,
                unit=unit,
            )
        )

    def bp(self, pid: str, date, sbp: float | None, dbp: float | None) -> None:
        if sbp is not None:
            self.event(pid, "sbp", date, sbp)
        if dbp is not None:
            self.event(pid, "dbp", date, dbp)

    def issue(
        self,
        pid: str,
        role: str,
        date,
        daily_dose_mg: float | None = None,
        system: str = "dmd",
    ) -> None:
        self.medications.append(
            dict(
                patient_id=pid,
                date=pd.Timestamp(date).date(),
                system=system,
                code=CODES[role],
                quantity=28.0,
                quantity_unit="tablet",
                dose=None,
                daily_dose_mg=daily_dose_mg,
            )
        )

    def store(self, path) -> Store:
        practices = [
            dict(
                practice_id=p,
                name=f"Practice {p}",
                pcn_id="XPCN1" if p <= "XP002" else "XPCN2",
                pcn_name="North PCN" if p <= "XP002" else "South PCN",
                sub_icb=None,
                icb=None,
                lsoa_code=None,
            )
            for p in sorted({r["practice_id"] for r in self.registrations})
        ]
        lsoas = sorted({a["lsoa_code"] for a in self.addresses if a["lsoa_code"]})
        areas = []
        for i, code in enumerate(lsoas):
            q = i % 5 + 1
            row = {c: None for c in arrow_schema("areas").names}
            row.update(
                lsoa_code=code,
                imd_release="synthetic",
                imd_decile=2 * q - 1,
                imd_quintile=q,
                core20=q == 1,
            )
            areas.append(row)
        tables = {
            "patients": _frame("patients", self.patients),
            "registrations": _frame("registrations", self.registrations),
            "addresses": _frame("addresses", self.addresses),
            "practices": _frame("practices", practices),
            "areas": _frame("areas", areas),
            "events": _frame("events", self.events),
            "medications": _frame("medications", self.medications),
        }
        return Store.open_or_new(path).write(tables, provenance={"source": "cvd spec test"})
