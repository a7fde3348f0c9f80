"""The canonical tables of pophealth, declared once.

Every other layer reads the tables from here: the store's Parquet/DuckDB types
(:func:`arrow_schema`, :func:`duckdb_ddl`), input validation
(:mod:`pophealth.validate`), the synthetic generator and ``pophealth schema``
(:func:`to_markdown`). A column carries its type, nullability, allowed values
or pattern, range and a docstring with its data-quality caveats.

Codes are always a pair ``(system, code)``; the systems are :data:`CODE_SYSTEMS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

#: Bumped whenever a table or column changes incompatibly. A store written with
#: another version is refused with a message saying how to rebuild it.
SCHEMA_VERSION = 1

#: Coding systems a (system, code) pair may name. ``ctv3`` is Clinical Terms Version 3
#: (Read v3, TPP SystmOne); ``readv2`` is Read Codes Version 2 (5-byte; EMIS and Vision
#: records before SNOMED CT): different terminologies whose codes can look alike.
CODE_SYSTEMS: tuple[str, ...] = (
    "snomedct",
    "dmd",
    "icd10",
    "opcs4",
    "ctv3",
    "readv2",
    "loinc",
    "rxnorm",
    "bnf",
    "cvx",
)

#: Sex as recorded (NHS Data Dictionary "person stated gender" collapsed).
SEXES: tuple[str, ...] = ("female", "male", "unknown")

#: 2001 census 5 ethnic groups (NHS Data Dictionary ETHNIC CATEGORY, grouped), plus unknown.
ETHNICITY_5: tuple[str, ...] = ("white", "mixed", "asian", "black", "other", "unknown")

#: 2001 census 16 ethnic categories as NHS Data Dictionary ETHNIC CATEGORY codes
#: (A..S), plus Z "not stated" which also holds "unknown".
ETHNICITY_16: dict[str, tuple[str, str]] = {
    "A": ("White - British", "white"),
    "B": ("White - Irish", "white"),
    "C": ("White - Any other White background", "white"),
    "D": ("Mixed - White and Black Caribbean", "mixed"),
    "E": ("Mixed - White and Black African", "mixed"),
    "F": ("Mixed - White and Asian", "mixed"),
    "G": ("Mixed - Any other mixed background", "mixed"),
    "H": ("Asian or Asian British - Indian", "asian"),
    "J": ("Asian or Asian British - Pakistani", "asian"),
    "K": ("Asian or Asian British - Bangladeshi", "asian"),
    "L": ("Asian or Asian British - Any other Asian background", "asian"),
    "M": ("Black or Black British - Caribbean", "black"),
    "N": ("Black or Black British - African", "black"),
    "P": ("Black or Black British - Any other Black background", "black"),
    "R": ("Other ethnic groups - Chinese", "other"),
    "S": ("Other ethnic groups - Any other ethnic group", "other"),
    "Z": ("Not stated or not known", "unknown"),
}

ADMISSION_METHODS: tuple[str, ...] = ("elective", "emergency", "maternity", "transfer", "other")

#: Logical column types and their Arrow equivalents.
ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "list<string>": pa.list_(pa.string()),
}

DUCKDB_TYPES: dict[str, str] = {
    "string": "VARCHAR",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
    "int": "BIGINT",
    "float": "DOUBLE",
    "bool": "BOOLEAN",
    "list<string>": "VARCHAR[]",
}

LSOA_PATTERN = r"^(E0[12]\d{6}|W0[12]\d{6}|X0[12]\d{6})$"
"""LSOA-like codes: real English/Welsh LSOAs (E01/W01) and MSOAs (E02/W02), and
pophealth's fictional synthetic region (X01/X02), which cannot collide with ONS codes."""


@dataclass(frozen=True)
class Column:
    """One column of a canonical table."""

    name: str
    type: str
    doc: str
    nullable: bool = True
    allowed: tuple[str, ...] | None = None
    pattern: str | None = None
    minimum: float | None = None
    maximum: float | None = None

    def __post_init__(self) -> None:
        if self.type not in ARROW_TYPES:
            raise ValueError(f"column {self.name!r}: unknown type {self.type!r}")

    @property
    def arrow_type(self) -> pa.DataType:
        return ARROW_TYPES[self.type]

    def constraint_text(self) -> str:
        parts = []
        if not self.nullable:
            parts.append("required")
        if self.allowed is not None:
            parts.append("one of " + ", ".join(f"`{v}`" for v in self.allowed))
        if self.pattern is not None:
            parts.append(f"matches `{self.pattern}`")
        if self.minimum is not None:
            parts.append(f"≥ {self.minimum:g}")
        if self.maximum is not None:
            parts.append(f"≤ {self.maximum:g}")
        return "; ".join(parts)


@dataclass(frozen=True)
class Table:
    """A canonical table: its columns, key and documentation."""

    name: str
    doc: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    #: True when the table has many rows per patient (events-like); False when one
    #: row per patient (``patients``) or not patient-level at all (``areas``).
    many_rows_per_patient: bool = True
    patient_level: bool = True
    #: Row order of the stored file (each table is one sort): a coded table is clustered
    #: by its coding system, code and date, so that a query for a code list reads only
    #: the Parquet row groups whose code range can hold one of its codes. Empty: the
    #: order the rows were written in.
    cluster_by: tuple[str, ...] = ()
    #: (start, end) column pairs of one type: the end may be missing (still open) or equal
    #: to the start, never before it; a row whose end is before its start is quarantined.
    periods: tuple[tuple[str, str], ...] = ()
    _by_name: dict[str, Column] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise ValueError(f"table {self.name!r} declares a column twice")
        for key in (*self.primary_key, *self.cluster_by, *(c for p in self.periods for c in p)):
            if key not in names:
                raise ValueError(f"table {self.name!r}: key column {key!r} is not declared")
        self._by_name.update({c.name: c for c in self.columns})
        for start, end in self.periods:
            if self[start].type != self[end].type or self[start].type not in ("date", "timestamp"):
                raise ValueError(f"table {self.name!r}: period {start}..{end} needs two dates")

    def __getitem__(self, name: str) -> Column:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"table {self.name!r} has no column {name!r}") from None

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


def _pid() -> Column:
    return Column(
        "patient_id",
        "string",
        "Pseudonymous patient identifier. Never an NHS number: ingest derives it with a "
        "keyed hash whose key the data controller holds.",
        nullable=False,
    )


def _system(doc: str = "Coding system of `code`.", allowed: tuple[str, ...] = CODE_SYSTEMS):
    return Column("system", "string", doc, nullable=False, allowed=allowed)


def _provider() -> Column:
    return Column("provider", "string", "ODS code of the provider organisation, where known.")


PATIENTS = Table(
    "patients",
    "One row per patient ever seen in the data.",
    (
        _pid(),
        Column(
            "date_of_birth",
            "date",
            "Date of birth. Many sources give month and year only; those are stored as the "
            "first of the month, so ages can be up to a month out.",
            nullable=False,
        ),
        Column(
            "sex",
            "string",
            "Sex as recorded. `unknown` covers not stated, indeterminate and missing.",
            nullable=False,
            allowed=SEXES,
        ),
        Column(
            "ethnicity_5",
            "string",
            "2001 census 5 ethnic groups, from the latest recorded ethnicity. Recording is "
            "incomplete in primary care (about 1 in 10 not recorded): `unknown` is a group, "
            "never dropped.",
            nullable=False,
            allowed=ETHNICITY_5,
        ),
        Column(
            "ethnicity_16",
            "string",
            "2001 census 16 ethnic categories as NHS Data Dictionary codes A–S; Z = not "
            "stated or unknown.",
            nullable=False,
            allowed=tuple(ETHNICITY_16),
        ),
        Column(
            "date_of_death",
            "date",
            "Date of death where known (GP record or civil registration). Null for the living; "
            "deaths may be recorded weeks late.",
        ),
    ),
    primary_key=("patient_id",),
    many_rows_per_patient=False,
    periods=(("date_of_birth", "date_of_death"),),
)

PRACTICES = Table(
    "practices",
    "GP practices, with their primary care network and NHS geography.",
    (
        Column(
            "practice_id",
            "string",
            "ODS code of the practice (synthetic practices use an `X` prefix).",
            nullable=False,
        ),
        Column("name", "string", "Practice name."),
        Column("pcn_id", "string", "ODS code of the primary care network the practice belongs to."),
        Column("pcn_name", "string", "Name of the primary care network."),
        Column("sub_icb", "string", "Sub-ICB location code (formerly CCG)."),
        Column("icb", "string", "Integrated care board code."),
        Column(
            "lsoa_code",
            "string",
            "LSOA of the practice's main site, where known.",
            pattern=LSOA_PATTERN,
        ),
    ),
    primary_key=("practice_id",),
    many_rows_per_patient=False,
    patient_level=False,
)

REGISTRATIONS = Table(
    "registrations",
    "Periods of registration with a GP practice. A patient may have several, "
    "rarely overlapping; the latest start wins on a given date.",
    (
        _pid(),
        Column("practice_id", "string", "ODS code of the practice.", nullable=False),
        Column("start_date", "date", "First day of registration.", nullable=False),
        Column("end_date", "date", "Last day of registration; null while registered."),
        Column(
            "source",
            "string",
            "How the registration is known: `recorded` (the source names the practice and "
            "period) or `inferred` (the source has no registration at all for the patient and "
            "`pophealth ingest` inferred one: FHIR from primary-care encounters, OMOP from the "
            "observation period and the care site of the visits; see docs/ingest.md). Null in "
            "stores written before this column existed: read it as `recorded`.",
            allowed=("recorded", "inferred"),
        ),
    ),
    periods=(("start_date", "end_date"),),
)

ADDRESSES = Table(
    "addresses",
    "Address history, reduced to the LSOA. Overlapping periods happen (a new "
    "address is entered before the old one is closed); on a given date the address "
    "with the latest start date wins, ties broken by LSOA code.",
    (
        _pid(),
        Column("start_date", "date", "First day at this address.", nullable=False),
        Column("end_date", "date", "Last day at this address; null for the current one."),
        Column(
            "lsoa_code",
            "string",
            "LSOA of the address (2011 or 2021 codes; the areas table records which). Null "
            "when the address could not be geocoded: such patients fall in the `unknown` "
            "area group, never dropped.",
            pattern=LSOA_PATTERN,
        ),
        Column(
            "care_home",
            "bool",
            "True when the address is a care home (from the address-matching flag or a "
            "care-home residence code). False when not known to be one.",
            nullable=False,
        ),
    ),
    periods=(("start_date", "end_date"),),
)

EVENTS = Table(
    "events",
    "Coded clinical events and observations from the GP record (diagnoses, reviews, "
    "measurements). A measurement carries its numeric value and unit.",
    (
        _pid(),
        Column("date", "date", "Date the event was recorded as happening.", nullable=False),
        Column(
            "datetime",
            "timestamp",
            "Date and time where the source records a time (observations in care homes, "
            "hospital vitals); null otherwise.",
        ),
        _system(),
        Column("code", "string", "The code, in `system`.", nullable=False),
        Column(
            "value",
            "float",
            "Numeric value of a measurement (e.g. systolic BP in mmHg). Null for events "
            "without a value; implausible values are kept as recorded — rules decide validity.",
        ),
        Column("unit", "string", "Unit of `value` as recorded (UCUM where the source uses it)."),
    ),
    cluster_by=("system", "code", "date"),
)

MEDICATIONS = Table(
    "medications",
    "Medicines issued (primary care prescriptions and dispensing), one row per issue.",
    (
        _pid(),
        Column("date", "date", "Date of issue.", nullable=False),
        _system(
            "Coding system of `code` (dm+d in English primary care).",
            ("dmd", "snomedct", "rxnorm", "bnf"),
        ),
        Column("code", "string", "Product code (usually a dm+d VMP/AMP).", nullable=False),
        Column(
            "quantity",
            "float",
            "Quantity issued in the product's unit (tablets, inhalers, ml). Null when not "
            "recorded.",
            minimum=0,
        ),
        Column("quantity_unit", "string", "Unit of `quantity` (e.g. `tablet`, `inhaler`)."),
        Column("dose", "string", "Dosage instruction as written, where known."),
        Column(
            "daily_dose_mg",
            "float",
            "Structured daily dose in mg where the source carries one; null otherwise.",
            minimum=0,
        ),
    ),
    cluster_by=("system", "code", "date"),
)

ADMISSIONS = Table(
    "admissions",
    "Hospital inpatient spells (SUS/HES APC style).",
    (
        _pid(),
        Column("spell_id", "string", "Provider spell identifier, where known."),
        Column("admission_date", "date", "Date of admission.", nullable=False),
        Column("discharge_date", "date", "Date of discharge; null while in hospital."),
        Column(
            "admission_method",
            "string",
            "Elective, emergency, maternity, transfer or other (from the HES admission "
            "method code).",
            nullable=False,
            allowed=ADMISSION_METHODS,
        ),
        Column(
            "primary_diagnosis",
            "string",
            "Primary diagnosis, ICD-10 without the dot (e.g. `J459`).",
        ),
        Column(
            "all_diagnoses",
            "list<string>",
            "All diagnoses of the spell, ICD-10 without dots, primary first.",
        ),
        Column("procedures", "list<string>", "Procedures of the spell, OPCS-4 without dots."),
        Column(
            "critical_care",
            "bool",
            "True when the spell included adult critical care (ITU/HDU). Null when unknown.",
        ),
        _provider(),
    ),
    periods=(("admission_date", "discharge_date"),),
)

EMERGENCY_ATTENDANCES = Table(
    "emergency_attendances",
    "Emergency department attendances (ECDS style).",
    (
        _pid(),
        Column("arrival_datetime", "timestamp", "Arrival at the department.", nullable=False),
        Column("departure_datetime", "timestamp", "Departure from the department."),
        Column(
            "diagnosis_system",
            "string",
            "Coding system of `diagnosis` (ECDS uses SNOMED CT).",
            allowed=CODE_SYSTEMS,
        ),
        Column("diagnosis", "string", "Chief diagnosis code."),
        Column(
            "discharge_destination",
            "string",
            "Where the patient went: `admitted`, `home`, `transfer`, `died` or `other`.",
            allowed=("admitted", "home", "transfer", "died", "other"),
        ),
        Column(
            "first_analgesia_datetime",
            "timestamp",
            "When the first analgesia was given, where recorded (sickle-cell standard: "
            "within 30 minutes of arrival).",
        ),
        _provider(),
    ),
    cluster_by=("diagnosis_system", "diagnosis", "arrival_datetime"),
    periods=(("arrival_datetime", "departure_datetime"),),
)

OPERATIONS = Table(
    "operations",
    "Operations with the details surgical-site-infection surveillance needs "
    "(caesarean births first). One row per operation.",
    (
        _pid(),
        Column("operation_id", "string", "Identifier of the operation.", nullable=False),
        Column("start_datetime", "timestamp", "Knife-to-skin time.", nullable=False),
        _system("Coding system of `code` (OPCS-4 in English hospitals).", ("opcs4", "snomedct")),
        Column(
            "code",
            "string",
            "Procedure code, OPCS-4 without the dot (e.g. `R171`).",
            nullable=False,
        ),
        Column("urgency", "string", "Elective or emergency.", allowed=("elective", "emergency")),
        Column(
            "operator_grade",
            "string",
            "Grade of the operating surgeon.",
            allowed=("consultant", "registrar", "staff_grade", "other"),
        ),
        Column("duration_minutes", "float", "Duration of the operation.", minimum=0),
        Column(
            "antibiotic_datetime",
            "timestamp",
            "When prophylactic antibiotics were given; null if not given or not recorded.",
        ),
        Column(
            "skin_prep",
            "string",
            "Skin antisepsis agent.",
            allowed=("chlorhexidine_alcohol", "povidone_iodine", "other", "not_recorded"),
        ),
        Column("normothermia", "bool", "Core temperature ≥ 36 °C kept throughout, where recorded."),
        Column(
            "dressing",
            "string",
            "Wound dressing applied.",
            allowed=("standard", "film", "dacc", "npwt", "other", "not_recorded"),
        ),
        Column(
            "bmi", "float", "BMI at operation (kg/m²), where recorded.", minimum=10, maximum=100
        ),
        _provider(),
    ),
    cluster_by=("system", "code", "start_datetime"),
)

QUESTIONNAIRE_RESPONSES = Table(
    "questionnaire_responses",
    "Answers to patient or staff questionnaires (FHIR QuestionnaireResponse), one row "
    "per answered item.",
    (
        _pid(),
        Column("response_id", "string", "Identifier of the whole response.", nullable=False),
        Column(
            "questionnaire", "string", "Canonical URL or name of the questionnaire.", nullable=False
        ),
        Column("authored", "timestamp", "When the response was completed."),
        Column("link_id", "string", "Item identifier within the questionnaire.", nullable=False),
        Column("answer_text", "string", "Answer as text (or the display of a coded answer)."),
        Column("answer_number", "float", "Numeric answer, where the item is numeric."),
        Column("answer_code", "string", "Code of a coded answer."),
    ),
)

AREAS = Table(
    "areas",
    "Small-area attributes, one row per LSOA, from the official publications (or the "
    "fictional synthetic region). Deprivation deciles and quintiles count 1 = most "
    "deprived; pollution quintiles count 5 = most polluted.",
    (
        Column("lsoa_code", "string", "LSOA code.", nullable=False, pattern=LSOA_PATTERN),
        Column("lsoa_name", "string", "LSOA name."),
        Column(
            "imd_release",
            "string",
            "Which Indices of Deprivation release the IMD columns come from.",
            nullable=False,
            allowed=("IoD2019", "IoD2025", "synthetic"),
        ),
        Column(
            "imd_score", "float", "IMD score (IoD2019: derived from File 9, see docs).", minimum=0
        ),
        Column(
            "imd_rank",
            "int",
            "IMD rank, 1 = most deprived. Official files contain ties.",
            minimum=1,
        ),
        Column("imd_decile", "int", "IMD decile, 1 = most deprived 10%.", minimum=1, maximum=10),
        Column("imd_quintile", "int", "IMD quintile, 1 = most deprived 20%.", minimum=1, maximum=5),
        Column(
            "core20",
            "bool",
            "True when the LSOA is in national IMD deciles 1–2 (Core20PLUS5).",
            nullable=False,
        ),
        *(
            Column(
                f"{d}_decile",
                "int",
                f"{d.replace('_', ' ').capitalize()} domain decile, 1 = most deprived.",
                minimum=1,
                maximum=10,
            )
            for d in (
                "income",
                "employment",
                "education",
                "health",
                "crime",
                "barriers",
                "living_environment",
            )
        ),
        Column(
            "air_quality_indicator",
            "float",
            "IoD air-quality indicator: sum of the NO2, benzene, SO2 and particulates "
            "components (each a modelled concentration ÷ its limit value).",
            minimum=0,
        ),
        Column("no2_component", "float", "NO2 concentration ÷ the 40 µg/m³ limit.", minimum=0),
        Column("pm_component", "float", "Particulates concentration ÷ limit value.", minimum=0),
        Column("benzene_component", "float", "Benzene concentration ÷ limit value.", minimum=0),
        Column("so2_component", "float", "SO2 concentration ÷ limit value.", minimum=0),
        Column(
            "no2_quintile",
            "int",
            "Quintile of NO2 exposure, 5 = most polluted 20%.",
            minimum=1,
            maximum=5,
        ),
        Column(
            "pm_quintile",
            "int",
            "Quintile of particulate exposure, 5 = most polluted 20%.",
            minimum=1,
            maximum=5,
        ),
        Column(
            "fuel_poverty_pct",
            "float",
            "% of households in fuel poverty (LILEE, modelled).",
            minimum=0,
            maximum=100,
        ),
        Column("population", "int", "Resident population (mid-year estimate).", minimum=0),
        Column("msoa_code", "string", "MSOA containing the LSOA."),
        Column("lad_code", "string", "Local authority district."),
        Column("sub_icb", "string", "Sub-ICB location."),
        Column("icb", "string", "Integrated care board."),
        Column("rural_urban", "string", "ONS rural–urban classification of the LSOA."),
    ),
    primary_key=("lsoa_code",),
    many_rows_per_patient=False,
    patient_level=False,
)

TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        PATIENTS,
        PRACTICES,
        REGISTRATIONS,
        ADDRESSES,
        EVENTS,
        MEDICATIONS,
        ADMISSIONS,
        EMERGENCY_ATTENDANCES,
        OPERATIONS,
        QUESTIONNAIRE_RESPONSES,
        AREAS,
    )
}


def table(name: str) -> Table:
    """The canonical table called ``name``; a clear error for an unknown name."""
    try:
        return TABLES[name]
    except KeyError:
        known = ", ".join(TABLES)
        raise KeyError(f"no canonical table {name!r}; the tables are: {known}") from None


def arrow_schema(name: str) -> pa.Schema:
    """The Arrow schema of a canonical table (what the store's Parquet files hold)."""
    t = table(name)
    return pa.schema([pa.field(c.name, c.arrow_type, nullable=c.nullable) for c in t.columns])


def duckdb_ddl(name: str) -> str:
    """``CREATE TABLE`` statement for a canonical table in DuckDB."""
    t = table(name)
    cols = []
    for c in t.columns:
        col = f'    "{c.name}" {DUCKDB_TYPES[c.type]}'
        if not c.nullable:
            col += " NOT NULL"
        cols.append(col)
    if t.primary_key:
        cols.append("    PRIMARY KEY (" + ", ".join(f'"{k}"' for k in t.primary_key) + ")")
    return f'CREATE TABLE "{t.name}" (\n' + ",\n".join(cols) + "\n);"


def to_markdown() -> str:
    """The whole schema as Markdown (``pophealth schema``)."""
    out = [
        f"# pophealth canonical schema (version {SCHEMA_VERSION})",
        "",
        "Codes are always a pair (system, code); systems: "
        + ", ".join(f"`{s}`" for s in CODE_SYSTEMS)
        + ".",
        "",
    ]
    for t in TABLES.values():
        out += [f"## `{t.name}`", "", t.doc, ""]
        if t.primary_key:
            out += ["Key: " + ", ".join(f"`{k}`" for k in t.primary_key), ""]
        if t.cluster_by:
            out += [
                "Stored sorted by " + ", ".join(f"`{k}`" for k in t.cluster_by) + " (so a "
                "code list's rows lie in few Parquet row groups).",
                "",
            ]
        for start, end in t.periods:
            out += [
                f"`{end}` is never before `{start}` (it may equal it, or be null while open); "
                "a row where it is is quarantined.",
                "",
            ]
        out += ["| column | type | constraints | description |", "|---|---|---|---|"]
        for c in t.columns:
            doc = c.doc.replace("|", "\\|")
            cons = c.constraint_text().replace("|", "\\|")
            out.append(f"| `{c.name}` | {c.type} | {cons} | {doc} |")
        out.append("")
    return "\n".join(out)
