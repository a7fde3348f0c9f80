"""OMOP CDM 5.3 / 5.4 (CSV or TSV, any case of file names, ``.gz``) -> canonical tables.

=====================  ==========================================================
OMOP table             canonical rows
=====================  ==========================================================
person (+ location,    ``patients`` (sex, birth, race/ethnicity -> 5/16 groups),
death, care_site)      ``addresses`` (LSOA where a location carries one)
observation_period     ``registrations`` when the person has a care site (the
                       practice); the period is the registration period
visit_occurrence       ``admissions`` (inpatient visits) and
                       ``emergency_attendances`` (ER visits)
condition_occurrence,  ``events`` — one row per mapped code: the standard concept and,
measurement,           when different, the source concept (e.g. ICD-10), through the
observation,           ``concept`` table; value and unit kept
procedure_occurrence
drug_exposure          ``medications`` (dm+d preferred, else SNOMED, RxNorm); a
                       dose given by staff (drug_type_concept_id of an
                       administration) is skipped
care_site              ``practices`` (the care sites persons are registered with)
provider, concept      reference data
=====================  ==========================================================

``patient_id`` is a keyed hash (HMAC-SHA256) of the NHS number when
``person_source_value`` is one (10 digits, valid check digit), else of
``person_id`` — so OMOP and FHIR extracts of the same people link under one key.
CDM 5.3 and 5.4 differ in a few column names (e.g. ``admitting_source_concept_id``
-> ``admitted_from_concept_id``); either is accepted.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from pophealth.ingest.codes import (
    OMOP_RACE,
    OMOP_VOCABULARIES,
    PREFERENCE,
    ethnicity_from_text,
    ethnicity_groups,
    ethnicity_letter,
    is_dmd_code,
)
from pophealth.ingest.pseudonym import (
    NHS_NUMBER_SHARE,
    Pseudonymiser,
    nhs_number_valid,
    ten_digit,
)
from pophealth.ingest.sink import IngestSummary, Run, files_note
from pophealth.ingest.tabular import BadRow, read_delimited
from pophealth.schema import LSOA_PATTERN, table
from pophealth.validate import NUMBER_PATTERN, validate

TABLES = (
    "concept",
    "location",
    "care_site",
    "provider",
    "death",
    "person",
    "observation_period",
    "visit_occurrence",
    "condition_occurrence",
    "procedure_occurrence",
    "measurement",
    "observation",
    "drug_exposure",
)
INPATIENT_VISITS = {9201, 262, 8717, 32037}
EMERGENCY_VISITS = {9203}
ER_AND_INPATIENT = 262
MALE, FEMALE = 8507, 8532
#: drug_type_concept_id of a drug given by staff rather than issued (Type Concept
#: vocabulary): 32818 EHR administration record, 38000180 Inpatient administration,
#: 43542356 Physician administered drug. ``medications`` is the medicines issued
#: (prescribed or dispensed); these are skipped (:data:`ADMINISTRATION_REASON`).
ADMINISTRATION_TYPES = (32818, 38000180, 43542356)
ADMINISTRATION_REASON = (
    "a drug given by staff (drug_type_concept_id: an administration record), not a medicine issued"
)
#: OMOP operator concepts (Meas Value Operator) other than "=" (4172703)
OPERATORS = {4171756: "<", 4171754: "<=", 4172704: ">", 4171755: ">="}

#: event tables: (date column, datetime column, concept, source concept, value, unit, source value)
EVENT_TABLES = {
    "condition_occurrence": (
        "condition_start_date",
        "condition_start_datetime",
        "condition_concept_id",
        "condition_source_concept_id",
        None,
        None,
        "condition_source_value",
    ),
    "procedure_occurrence": (
        "procedure_date",
        "procedure_datetime",
        "procedure_concept_id",
        "procedure_source_concept_id",
        None,
        None,
        "procedure_source_value",
    ),
    "measurement": (
        "measurement_date",
        "measurement_datetime",
        "measurement_concept_id",
        "measurement_source_concept_id",
        "value_as_number",
        "unit_source_value",
        "measurement_source_value",
    ),
    "observation": (
        "observation_date",
        "observation_datetime",
        "observation_concept_id",
        "observation_source_concept_id",
        "value_as_number",
        "unit_source_value",
        "observation_source_value",
    ),
}
_LSOA_RE = re.compile(LSOA_PATTERN)


#: a number as ``value_source_value`` may hold it, alone or after a comparator
_SOURCE_NUMBER = re.compile(rf"\s*(?:<=?|>=?)?\s*{NUMBER_PATTERN}\s*")


def _value_or_source(value: pd.Series, source: pd.Series) -> pd.Series:
    """``value`` (``value_as_number``), else a number written in ``source``
    (``value_as_string``, then ``value_source_value``: ETLs that keep a result only as
    text): a plain number (``48.1``, ``1,234``) is the value; one after a comparator
    (``<5``) is kept with it, which validation quarantines as for ``operator_concept_id``;
    other text (``Negative (qualifier value)``) is not a value and leaves it missing."""
    value = value.astype("string")
    blank = value.isna() | (value.str.strip() == "")
    text = source.astype("string")
    number = text.str.fullmatch(_SOURCE_NUMBER).fillna(False).astype(bool)
    use = blank & number
    if not use.any():
        return value
    return value.mask(use, text.str.replace(r"\s+", "", regex=True))


def find_tables(directory: Path) -> tuple[dict[str, Path], list[Path]]:
    """OMOP tables in ``directory`` by lower-case name, and the files not used."""
    found: dict[str, Path] = {}
    other: list[Path] = []
    # Searched recursively: the vocabulary often sits in its own folder (vocab/CONCEPT.csv).
    for f in sorted(directory.rglob("*")):
        if not f.is_file() or f.name.startswith("."):
            continue
        name = f.name.lower()
        if name.endswith(".gz"):
            name = name[:-3]
        stem, _, ext = name.rpartition(".")
        if ext in ("csv", "tsv", "txt") and stem in TABLES:
            if stem in found:
                raise ValueError(
                    f"{directory}: two files for OMOP table {stem}: {found[stem]} and {f}"
                )
            found[stem] = f
        else:
            other.append(f)
    return found, other


def read_chunks(
    path: Path, chunk_rows: int, on_bad: Callable[[BadRow], None] | None = None
) -> Iterator[tuple[pd.DataFrame, pd.Series]]:
    """Chunks of an OMOP file as text (lower-case columns) with their file line numbers.

    Comma-separated files are read as CSV (quoted fields); tab- and pipe-separated ones
    with no quoting, as OHDSI's Athena vocabulary files are written (bare ``"`` in names).
    """
    return read_delimited(path, chunk_rows, on_bad=on_bad, quoting=None)


def _col(df: pd.DataFrame, *names: str) -> pd.Series:
    for n in names:
        if n in df.columns:
            return df[n]
    return pd.Series(pd.NA, index=df.index, dtype="string")


def _ints(s: pd.Series) -> pd.Series:
    """Whole numbers; anything else (text, "inf", 1.5, beyond int64) becomes missing, like
    unparseable text, and is handled by the caller's missing-value rule."""
    x = pd.to_numeric(s, errors="coerce").astype("float64")
    whole = np.isfinite(x) & (x == np.floor(x)) & (x.abs() < 2**63)
    return x.where(whole).astype("Int64")


def _ids(s: pd.Series) -> pd.Series:
    """Identifiers as stripped text; blank is missing."""
    text = s.astype("string").str.strip()
    return text.mask(text == "")


def _date_problems(dates: pd.Series, table_: str, column: str) -> pd.Series:
    """Why each present value of ``dates`` (as :func:`_dates` gives them) will not load as
    ``table_.column`` (validation's own rule), else NA."""
    spec = table(table_)
    frame = pd.DataFrame(
        {c.name: dates.to_numpy() if c.name == column else None for c in spec.columns}
    )
    res = validate(table_, frame, row_numbers=np.arange(len(frame)), primary_key=False)
    q = res.quarantine
    q = q[(q.field == column) & (q.reason != "missing required value")]
    out = pd.Series(pd.NA, index=dates.index, dtype="object")
    out.iloc[q.row.to_numpy(np.int64)] = q.reason.to_numpy()
    return out


def _period_problems(start: pd.Series, end: pd.Series) -> tuple[pd.Series, pd.Series]:
    """The first field (``start_date`` / ``end_date``) and reason why each period would not
    load as a registration (validation's own rule: a start that is missing or not a date,
    an end that is not a date or before the start), else NA."""
    frame = pd.DataFrame(
        {
            "patient_id": "x",
            "practice_id": "x",
            "start_date": start.to_numpy(),
            "end_date": end.to_numpy(),
            "source": "inferred",
        }
    )
    res = validate("registrations", frame, row_numbers=np.arange(len(frame)), primary_key=False)
    q = res.quarantine.drop_duplicates("row")
    field = pd.Series(pd.NA, index=start.index, dtype="object")
    reason = pd.Series(pd.NA, index=start.index, dtype="object")
    field.iloc[q.row.to_numpy(np.int64)] = q.field.to_numpy()
    reason.iloc[q.row.to_numpy(np.int64)] = q.reason.to_numpy()
    return field, reason


#: Why a row whose only concept is in OHDSI's RxNorm Extension is quarantined.
RXNORM_EXTENSION = (
    "concept in the RxNorm Extension vocabulary (codes OHDSI makes, e.g. OMOP1234567, for "
    "products RxNorm lacks): not RxNorm codes, and the store has no system for them; "
    "nothing else in the row (e.g. a dm+d source concept) gives a code"
)


def _unmapped(
    concept: pd.Series, source: pd.Series, otherwise: str, concepts: Concepts | None = None
) -> pd.Series:
    """Why a row maps to no code: both concept ids 0 or blank (OMOP's "no matching
    concept": the ETL did not map the source code), a concept only in RxNorm Extension,
    else ``otherwise``."""
    none = pd.Series(True, index=concept.index)
    for ids in (concept, source):
        none &= (_ints(ids).eq(0) | ids.isna()).fillna(False)
    why = pd.Series(otherwise, index=concept.index, dtype="object")
    if concepts is not None and len(concepts.extension):
        ext = _ints(concept).isin(concepts.extension) | _ints(source).isin(concepts.extension)
        why = why.mask(ext.fillna(False).astype(bool), RXNORM_EXTENSION)
    return why.mask(
        none,
        "concept_id 0 (no matching concept) and no source concept: the ETL mapped the source "
        "code to no concept, so there is no code to load",
    )


def _dates(s: pd.Series) -> pd.Series:
    """OMOP dates as ISO text (``YYYYMMDD`` and ``YYYY-MM-DD[ HH:MM:SS]`` accepted)."""
    text = s.astype("string").str.strip()
    compact = text.str.fullmatch(r"\d{8}").fillna(False)
    text = text.mask(compact, text.str[:4] + "-" + text.str[4:6] + "-" + text.str[6:8])
    # a time after the date is dropped; anything else stays, for validation to refuse
    timed = text.str.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ].*").fillna(False)
    return text.str[:10].where(timed, text)


def _datetimes(s: pd.Series) -> pd.Series:
    """Datetimes kept only when they carry a time (OMOP ETLs write midnight for 'no time')."""
    text = s.astype("string").str.strip()
    midnight = text.str.fullmatch(r"\d{4}-\d{2}-\d{2}([ T]00:00(:00(\.0+)?)?)?").fillna(True)
    return text.mask(midnight)


class Concepts:
    """concept_id -> (schema system, code) for the vocabularies pophealth uses."""

    def __init__(self) -> None:
        self.system = pd.Series(dtype="string")
        self.code = pd.Series(dtype="string")
        #: unit concept_id -> UCUM code (``unit_concept_id``, when no unit source value)
        self.units = pd.Series(dtype="string")
        #: concept ids in OHDSI's RxNorm Extension vocabulary: not mapped (see
        #: :data:`RXNORM_EXTENSION`), but named when a row is quarantined for them
        self.extension = pd.Index([], dtype="Int64")

    def load(
        self, run: Run, path: Path, chunk_rows: int, on_bad: Callable[[BadRow], None] | None = None
    ) -> None:
        systems, codes, units, extension = [], [], [], []
        for chunk, _ in read_chunks(path, chunk_rows, on_bad):
            keys = run.begin_frame("omop.concept", len(chunk))
            vocab = _col(chunk, "vocabulary_id").astype("string").str.strip().str.lower()
            system = vocab.map(OMOP_VOCABULARIES)
            ids = _ints(_col(chunk, "concept_id"))
            extension.append(ids[(vocab == "rxnorm extension").fillna(False)].dropna())
            ucum = (vocab == "ucum").fillna(False) & ids.notna()
            units.append(
                pd.Series(
                    _col(chunk, "concept_code")[ucum].astype("string").str.strip().to_numpy(),
                    index=ids[ucum].to_numpy(),
                )
            )
            keep = system.notna() & ids.notna()
            s = pd.Series(system[keep].to_numpy(), index=ids[keep].to_numpy())
            c = pd.Series(
                _col(chunk, "concept_code")[keep].astype("string").str.strip().to_numpy(),
                index=ids[keep].to_numpy(),
            )
            systems.append(s)
            codes.append(c)
            run.skip_frame("omop.concept", len(keys), "vocabulary (used to map concept ids)")
        if extension:
            self.extension = pd.Index(pd.concat(extension).unique())
        if systems:
            self.system = pd.concat(systems)
            self.code = pd.concat(codes)
            dup = self.system.index.duplicated(keep="first")
            self.system, self.code = self.system[~dup], self.code[~dup]
            self.units = pd.concat(units)
            self.units = self.units[~self.units.index.duplicated(keep="first")]
        icd = self.system.isin(["icd10", "opcs4"])
        self.code[icd] = self.code[icd].str.replace(".", "", regex=False).str.upper()
        # Read v2 concept codes may carry the 2-digit term code (``H33..00``): the concept
        # is the first 5 characters (as codes.normalise_code does for FHIR)
        read = (self.system == "readv2") & self.code.str.fullmatch(r".{5}\d{2}").fillna(False)
        self.code[read] = self.code[read].str[:5]

    def unit(self, ids: pd.Series) -> pd.Series:
        """The UCUM code of each unit concept id (NA when unknown or 0)."""
        return _ints(ids).map(self.units).astype("string")

    def lookup(self, ids: pd.Series) -> tuple[pd.Series, pd.Series]:
        ids = _ints(ids)
        system = ids.map(self.system).astype("string")
        code = ids.map(self.code).astype("string")
        return system, code


def ingest_omop(
    directory: str | os.PathLike,
    out: str | os.PathLike,
    *,
    key: bytes,
    append: bool = False,
    strict: bool = False,
    progress: Callable[[str, float], None] | None = None,
    chunk_rows: int = 100_000,
    registrations: str = "infer-missing",
) -> IngestSummary:
    """Import an OMOP CDM 5.3/5.4 CSV directory into the store at ``out``.

    ``registrations="infer-missing"`` (default): a person without a care site is registered
    for each observation period at the care site of most of their visits, else at the
    placeholder practice ``UNKNOWN`` (:mod:`pophealth.ingest.infer`); ``"recorded"``: only
    persons with a care site are registered."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} is not a directory of OMOP CSV files")
    files, other = find_tables(directory)
    if "person" not in files:
        raise FileNotFoundError(
            f"{directory}: no person table (person.csv / PERSON.csv / person.tsv) — is this an "
            "OMOP CDM export?"
        )
    run = Run(
        out,
        kind="omop",
        append=append,
        strict=strict,
        batch_rows=chunk_rows,
        registrations=registrations,
    )
    try:
        _OmopImport(run, Pseudonymiser(key), files, chunk_rows, progress).run_all()
        version, read_from = _cdm_version(directory, files)
        run.notes.append(f"OMOP CDM version: {version}")
        note = files_note("files not used", [f for f in other if f != read_from])
        if note:
            run.notes.append(note)
        summary = run.finish(
            provenance={
                "source": "omop",
                "input": str(directory),
                "cdm_version": version,
                "append": append,
            },
            progress=(lambda d: progress(d, 1.0)) if progress else None,
        )
    except BaseException:
        run.quarantine.close()
        run.cleanup()
        raise
    return summary


def _cdm_version(directory: Path, files: dict[str, Path]) -> tuple[str, Path | None]:
    """The export's CDM version, and the cdm_source file it was read from (None: worked
    out from the tables' columns), which is then a file used, not one left unread."""
    for f in sorted(directory.rglob("*")):
        if f.name.lower().startswith("cdm_source."):
            try:
                df = next(read_chunks(f, 10))[0]
                v = _col(df, "cdm_version").dropna()
                if len(v):
                    return str(v.iloc[0]), f
            except (StopIteration, ValueError, OSError):
                pass
    if "visit_occurrence" in files:
        head = next(read_chunks(files["visit_occurrence"], 1), (pd.DataFrame(), None))[0]
        if "admitted_from_concept_id" in head.columns:
            return "5.4 (from column names)", None
        if "admitting_source_concept_id" in head.columns:
            return "5.3 (from column names)", None
    return "unknown", None


class _OmopImport:
    def __init__(
        self, run: Run, pseudo: Pseudonymiser, files: dict[str, Path], chunk_rows: int, progress
    ):
        self.run = run
        self.pseudo = pseudo
        self.files = files
        self.chunk_rows = chunk_rows
        self.progress = progress
        self.concepts = Concepts()
        self.locations: dict[str, str | None] = {}
        self.care_sites: dict[str, str] = {}
        self.deaths: dict[str, str] = {}
        #: person_id -> (line, day, row) of the death row kept for the person
        self._death_rows: dict[str, tuple[int, object, pd.DataFrame]] = {}
        self._death_path: Path | None = None
        self.person_site: dict[str, str] = {}
        self.person_birth: dict[str, str] = {}
        #: every person_id of the person table (loaded or not): what other rows may name
        self.person_ids: set[str] = set()
        self.used_sites: set[str] = set()

    def run_all(self) -> None:
        total = sum(p.stat().st_size for p in self.files.values()) or 1
        done = 0
        for name in TABLES:
            path = self.files.get(name)
            if path is None:
                continue
            self.run.files.append(str(path))
            if self.progress:
                self.progress(f"reading {path.name}", done / total)
            # a file that cannot be read to its end raises UnreadableFile: nothing commits
            getattr(self, f"_{name}")(path)
            if name == "person":
                self._deaths_of_unknown_persons()
            done += path.stat().st_size
        coded = [n for n in (*EVENT_TABLES, "drug_exposure") if n in self.files]
        if coded and "concept" not in self.files:
            self.run.notes.append(
                "no concept table (CONCEPT.csv): concept ids cannot be turned into codes, so "
                f"every row of {', '.join(coded)} is quarantined; put the vocabulary's "
                "CONCEPT file beside the CDM tables (or in a folder below them)"
            )
        self._practices()

    def _chunks(self, path: Path):
        name = path.name.lower().removesuffix(".gz").rpartition(".")[0]
        yield from read_chunks(
            path, self.chunk_rows, self.run.on_bad_row(str(path), f"omop.{name}")
        )

    # -- reference tables --------------------------------------------------------------
    def _concept(self, path: Path) -> None:
        self.concepts.load(
            self.run, path, self.chunk_rows, self.run.on_bad_row(str(path), "omop.concept")
        )

    def _location(self, path: Path) -> None:
        for df, _ in self._chunks(path):
            self.run.begin_frame("omop.location", len(df))
            lsoa = pd.Series(pd.NA, index=df.index, dtype="string")
            for c in df.columns:
                v = df[c].astype("string").str.strip()
                hit = v.str.fullmatch(LSOA_PATTERN).fillna(False)
                lsoa = lsoa.mask(lsoa.isna() & hit, v)
            for lid, code in zip(_col(df, "location_id"), lsoa, strict=True):
                self.locations[str(lid)] = None if pd.isna(code) else str(code)
            self.run.skip_frame("omop.location", len(df), "reference data (person addresses)")

    def _care_site(self, path: Path) -> None:
        for df, _ in self._chunks(path):
            self.run.begin_frame("omop.care_site", len(df))
            src = _col(df, "care_site_source_value").astype("string").str.strip()
            ids = _col(df, "care_site_id").astype("string").str.strip()
            names = _col(df, "care_site_name").astype("string")
            for i, s, nm in zip(ids, src, names, strict=True):
                self.care_sites[str(i)] = (
                    s if isinstance(s, str) and s else str(i),
                    None if pd.isna(nm) else str(nm),
                )
            self.run.skip_frame(
                "omop.care_site", len(df), "reference data (practices of registered persons)"
            )

    def _provider(self, path: Path) -> None:
        for df, _ in self._chunks(path):
            self.run.begin_frame("omop.provider", len(df))
            self.run.skip_frame("omop.provider", len(df), "reference data (not used)")

    def _reject(
        self,
        rt: str,
        path: Path,
        df: pd.DataFrame,
        lines: pd.Series,
        mask: np.ndarray,
        field: str,
        values: pd.Series | None,
        reasons: str | pd.Series,
        ids: pd.Series | None = None,
    ) -> None:
        """Quarantine the rows of ``df`` under ``mask`` naming ``field`` (one reason, or
        one per row)."""
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            return
        locs = ("line " + lines.astype(str)).reset_index(drop=True)
        per_row = pd.Series(reasons, index=df.index) if isinstance(reasons, str) else reasons
        per_row = per_row.astype("string")
        for reason in pd.unique(per_row[mask].dropna()):
            m = mask & per_row.eq(reason).fillna(False).to_numpy(bool)
            self.run.reject_frame(
                rt,
                str(path),
                locs[m],
                None if ids is None else ids[m],
                field,
                None if values is None else values[m].astype("string").fillna(""),
                str(reason),
                df[m],
            )

    def _death(self, path: Path) -> None:
        """Death rows, checked here so that a bad one is quarantined with its own file and
        line (not as the person's ``date_of_death``); which persons they name is checked
        once the person table is read (:meth:`_deaths_of_unknown_persons`)."""
        rt = "omop.death"
        for df, lines in self._chunks(path):
            self.run.begin_frame(rt, len(df))
            df = df.reset_index(drop=True)
            lines = lines.reset_index(drop=True)
            pid = _ids(_col(df, "person_id"))
            raw = _col(df, "death_date")
            dates = _dates(raw)
            problem = _date_problems(dates, "patients", "date_of_death")
            no_pid = pid.isna().to_numpy()
            no_date = ~no_pid & dates.isna().to_numpy()
            bad = ~no_pid & ~no_date & problem.notna().to_numpy()
            self._reject(rt, path, df, lines, no_pid, "person_id", pid, "person_id is missing")
            self._reject(
                rt, path, df, lines, no_date, "death_date", raw, "death_date is missing", pid
            )
            self._reject(rt, path, df, lines, bad, "death_date", raw, problem, pid)
            good = np.flatnonzero(~no_pid & ~no_date & ~bad)
            day = pd.to_datetime(dates, errors="coerce", format="ISO8601", utc=True).dt.date
            for i in good.tolist():
                p, line = pid.iloc[i], int(lines.iloc[i])
                kept = self._death_rows.get(p)
                if kept is None:
                    self.deaths[p] = dates.iloc[i]
                    self._death_rows[p] = (line, day.iloc[i], df.iloc[[i]])
                elif kept[1] == day.iloc[i]:
                    self.run.skip_frame(
                        rt,
                        1,
                        "duplicate death row (same person and date of death as an earlier row)",
                    )
                else:
                    self._reject(
                        rt,
                        path,
                        df,
                        lines,
                        np.arange(len(df)) == i,
                        "death_date",
                        raw,
                        f"person_id {p} already has a death row with another date of death "
                        f"(line {kept[0]}: {self.deaths[p]}), which is kept",
                        pid,
                    )
        self._death_path = path

    def _deaths_of_unknown_persons(self) -> None:
        """After the person table: a death row naming no person is quarantined; the others
        are merged into ``patients.date_of_death``."""
        rt = "omop.death"
        lost = [p for p in self._death_rows if p not in self.person_ids]
        for p in lost:
            line, _, record = self._death_rows.pop(p)
            del self.deaths[p]
            self._reject(
                rt,
                self._death_path,
                record.reset_index(drop=True),
                pd.Series([line]),
                np.array([True]),
                "person_id",
                pd.Series([p]),
                f"dangling reference: person_id {p} is in no person row",
                pd.Series([p]),
            )
        self.run.skip_frame(rt, len(self._death_rows), "merged into patients.date_of_death")
        self._death_rows.clear()

    # -- persons -----------------------------------------------------------------------
    def _pid_keys(self, person_ids: pd.Series) -> pd.Series:
        ids = person_ids.astype("string").str.strip()
        uniq = ids.dropna().unique()
        mapping = {u: self.pseudo.key_of(f"omop-person:{u}") for u in uniq}
        return ids.map(mapping)

    def _nhs_numbers_in_source_values(self, path: Path) -> tuple[bool, int, int]:
        """True when ``person_source_value`` holds NHS numbers: half or more of the file's
        distinct 10-digit values pass the modulus-11 check. One value alone says little
        (about 1 random 10-digit id in 11 passes), and hashing a local id that passes by
        chance as an NHS number would link it to whoever has that NHS number in another
        extract; so the file is judged as a whole (a first pass over that column). Returns
        (the verdict, distinct 10-digit values, how many of them pass)."""
        ten = valid = 0
        seen: set[str] = set()
        for df, _ in read_chunks(path, self.chunk_rows, on_bad=lambda row: None):
            if "person_source_value" not in df.columns:
                return False, 0, 0
            values = df["person_source_value"].dropna().astype(str).unique()
            values = np.array([v for v in values if v not in seen], dtype=object)
            if len(seen) < 1_000_000:
                seen.update(values.tolist())
            digits = ten_digit(values)
            ten += int(digits.sum())
            valid += int(nhs_number_valid(values[digits]).sum())
        return valid > 0 and valid >= NHS_NUMBER_SHARE * ten, ten, valid

    def _person(self, path: Path) -> None:
        rt = "omop.person"
        nhs_file, ten, valid = self._nhs_numbers_in_source_values(path)
        if ten and not nhs_file:
            self.run.notes.append(
                f"{path.name}: person_source_value not read as NHS numbers: only {valid:,} of "
                f"its {ten:,} distinct 10-digit values pass the NHS number check (about 1 in 11 "
                "would by chance; half or more must): patient_id is the keyed hash of "
                "omop:<person_id> for every person"
            )
        not_nhs = 0  # persons of a file of NHS numbers whose value is not a valid one
        for df, lines in self._chunks(path):
            keys = self.run.begin_frame(rt, len(df))
            person_id = _ids(_col(df, "person_id"))
            no_id = person_id.isna().to_numpy()
            if no_id.any():
                # every other table names the person by this id: without it the row is
                # no one (hashed, all such rows would become one made-up patient)
                self.run.reject_frame(
                    rt,
                    str(path),
                    ("line " + lines.astype(str))[no_id],
                    None,
                    "person_id",
                    None,
                    "person_id is missing (the other tables name a person by it)",
                    df[no_id],
                )
                df = df[~no_id].reset_index(drop=True)
                lines = lines[~no_id].reset_index(drop=True)
                keys = keys[~no_id]
                person_id = person_id[~no_id].reset_index(drop=True)
                if df.empty:
                    continue
            self.person_ids.update(person_id.tolist())
            src = _col(df, "person_source_value").astype("string").str.strip()
            nhs = nhs_number_valid(src.fillna("").to_numpy(object)) & nhs_file
            if nhs_file:
                not_nhs += int((~nhs & src.fillna("").ne("").to_numpy(bool)).sum())
            pids = [
                self.pseudo.nhs(s) if ok else self.pseudo("omop", str(p))
                for p, s, ok in zip(person_id, src.fillna(""), nhs, strict=True)
            ]
            pid = pd.Series(pids, dtype="string")
            for p, k in zip(person_id, pid, strict=True):
                if isinstance(p, str):
                    self.run.index("patient", self.pseudo.key_of(f"omop-person:{p}"), k)
            birth = _dates(_col(df, "birth_datetime"))
            year = _ints(_col(df, "year_of_birth"))
            month = _ints(_col(df, "month_of_birth")).fillna(1)
            day = _ints(_col(df, "day_of_birth")).fillna(1)
            built = (
                year.astype("string")
                + "-"
                + month.astype("string").str.zfill(2)
                + "-"
                + day.astype("string").str.zfill(2)
            )
            birth = birth.fillna(built)
            gender = _ints(_col(df, "gender_concept_id"))
            gsrc = _col(df, "gender_source_value").astype("string").str.strip().str.upper()
            # the standard concept first; the source value only where the concept is not
            # male or female (0, 8551 unknown, 8570 ambiguous, missing)
            by_source = ~gender.isin([MALE, FEMALE]).fillna(False)
            sex = pd.Series("unknown", index=df.index, dtype="string")
            sex = sex.mask((gender == MALE).fillna(False), "male")
            sex = sex.mask((gender == FEMALE).fillna(False), "female")
            sex = sex.mask(by_source & gsrc.isin(["M", "MALE"]).fillna(False), "male")
            sex = sex.mask(by_source & gsrc.isin(["F", "FEMALE"]).fillna(False), "female")
            letters = _col(df, "race_source_value").map(
                lambda v: None if pd.isna(v) else (ethnicity_letter(v) or ethnicity_from_text(v))
            )
            race = _ints(_col(df, "race_concept_id")).map(OMOP_RACE)
            letters = letters.where(letters.notna(), race)
            eth = [ethnicity_groups(None if pd.isna(x) else x) for x in letters]
            death = person_id.map(self.deaths)
            frame = pd.DataFrame(
                {
                    "patient_id": pid,
                    "date_of_birth": birth,
                    "sex": sex,
                    "ethnicity_5": [e[0] for e in eth],
                    "ethnicity_16": [e[1] for e in eth],
                    "date_of_death": death,
                }
            )
            locs = "line " + lines.astype(str)
            self.run.emit_frame(
                "patients",
                frame,
                source=str(path),
                record_type=rt,
                locations=locs,
                rkeys=keys,
                ids=person_id,
            )
            loc_id = _col(df, "location_id").astype("string").str.strip()
            has_loc = loc_id.notna().to_numpy()
            if has_loc.any():
                addr = pd.DataFrame(
                    {
                        "patient_id": pid[has_loc].to_numpy(),
                        "start_date": birth[has_loc].to_numpy(),
                        "end_date": None,
                        "lsoa_code": loc_id[has_loc].map(self.locations).to_numpy(),
                        "care_home": "false",
                    }
                )
                self.run.emit_frame(
                    "addresses",
                    addr,
                    source=str(path),
                    record_type=rt,
                    locations=locs[has_loc].reset_index(drop=True),
                    rkeys=keys[has_loc],
                    ids=person_id[has_loc].reset_index(drop=True),
                )
            site = _col(df, "care_site_id").astype("string").str.strip()
            for p, s, b in zip(person_id, site, birth, strict=True):
                if isinstance(p, str) and isinstance(s, str) and s:
                    self.person_site[p] = s
                if isinstance(p, str) and isinstance(b, str):
                    self.person_birth[p] = b
        if not_nhs:
            self.run.notes.append(
                f"{path.name}: {not_nhs:,} person row(s) whose person_source_value is not a "
                "valid NHS number (10 digits, modulus-11 check digit) in a file of NHS numbers "
                "are keyed by omop:<person_id>: they do not link to the same person's "
                "records in other extracts (check the source values)"
            )

    def _observation_period(self, path: Path) -> None:
        rt = "omop.observation_period"
        start_c, end_c = "observation_period_start_date", "observation_period_end_date"
        for df, lines in self._chunks(path):
            keys = self.run.begin_frame(rt, len(df))
            df = df.reset_index(drop=True)
            lines = lines.reset_index(drop=True)
            person_id = _ids(_col(df, "person_id"))
            start, end = _dates(_col(df, start_c)), _dates(_col(df, end_c))
            no_pid = person_id.isna().to_numpy()
            unknown = ~no_pid & ~person_id.isin(self.person_ids).fillna(False).to_numpy(bool)
            self._reject(rt, path, df, lines, no_pid, "person_id", None, "person_id is missing")
            self._reject(
                rt,
                path,
                df,
                lines,
                unknown,
                "person_id",
                person_id,
                "dangling reference: person_id " + person_id + " is in no person row",
            )
            site = person_id.map(self.person_site)
            ok = site.notna().to_numpy() & ~no_pid & ~unknown
            # a person without a care site: the period is evidence for an inferred
            # registration, checked here as a registration would be (else it would vanish
            # from the inference unseen)
            ev = ~ok & ~no_pid & ~unknown
            field, problem = _period_problems(start, end)
            bad = ev & problem.notna().to_numpy()
            for col, name in (("start_date", start_c), ("end_date", end_c)):
                m = bad & (field == col).to_numpy()
                self._reject(
                    rt,
                    path,
                    df,
                    lines,
                    m,
                    name,
                    _col(df, name),
                    problem,
                    df.get("observation_period_id"),
                )
            ev &= ~bad
            self.run.skip_frame(
                rt,
                int(ev.sum()),
                "person has no care site (practice): evidence for an inferred registration",
            )
            if ev.any():
                self.run.evidence_frame(
                    pd.DataFrame(
                        {
                            "kind": "period",
                            "_pref": self._pid_keys(person_id[ev]).to_numpy(),
                            "date": start[ev].to_numpy(),
                            "end_date": end[ev].to_numpy(),
                        }
                    )
                )
            if not ok.any():
                continue
            practice = site[ok].map(lambda s: self.care_sites.get(s, (s, None))[0])
            self.used_sites.update(site[ok].dropna().unique().tolist())
            frame = pd.DataFrame(
                {
                    "practice_id": practice.to_numpy(),
                    "start_date": start[ok].to_numpy(),
                    "end_date": end[ok].to_numpy(),
                }
            )
            self.run.emit_frame(
                "registrations",
                frame,
                source=str(path),
                record_type=rt,
                locations=("line " + lines.astype(str))[ok].reset_index(drop=True),
                rkeys=keys[ok],
                ids=_col(df, "observation_period_id")[ok].reset_index(drop=True),
                pref=self._pid_keys(person_id[ok]).reset_index(drop=True),
            )

    def _practices(self) -> None:
        rows = [self.care_sites.get(s, (s, None)) for s in sorted(self.used_sites)]
        if not rows:
            return
        rt = "omop.care_site(registered)"
        keys = self.run.begin_frame(rt, len(rows))
        frame = pd.DataFrame({"practice_id": [r[0] for r in rows], "name": [r[1] for r in rows]})
        self.run.emit_frame(
            "practices",
            frame,
            source="care_site",
            record_type=rt,
            locations=pd.Series([f"care_site_id {s}" for s in sorted(self.used_sites)]),
            rkeys=keys,
        )

    # -- visits ------------------------------------------------------------------------
    def _visit_occurrence(self, path: Path) -> None:
        rt = "omop.visit_occurrence"
        for df, lines in self._chunks(path):
            keys = self.run.begin_frame(rt, len(df))
            concept = _ints(_col(df, "visit_concept_id"))
            inpatient = concept.isin(INPATIENT_VISITS).fillna(False).to_numpy()
            emergency = concept.isin(EMERGENCY_VISITS).fillna(False).to_numpy()
            self.run.skip_frame(
                rt,
                int((~inpatient & ~emergency).sum()),
                "visit that is neither inpatient nor emergency",
            )
            person_id = _col(df, "person_id").astype("string").str.strip()
            pref = self._pid_keys(person_id)
            locs = "line " + lines.astype(str)
            vid = _col(df, "visit_occurrence_id")
            site = (
                _col(df, "care_site_id")
                .astype("string")
                .map(lambda s: None if pd.isna(s) else self.care_sites.get(s, (None, None))[0])
            )
            # the care site of every visit: evidence of the practice of a person without one
            site_id = _col(df, "care_site_id").astype("string").str.strip()
            has_site = site_id.notna() & (site_id != "")
            if has_site.any():
                sid = site_id[has_site]
                codes = {k: v[0] for k, v in self.care_sites.items()}
                names = {k: v[1] for k, v in self.care_sites.items()}
                self.run.evidence_frame(
                    pd.DataFrame(
                        {
                            "kind": "visit",
                            "_pref": pref[has_site].to_numpy(),
                            "practice_id": sid.map(codes).fillna(sid).to_numpy(),
                            "name": sid.map(names).to_numpy(),
                            "date": _dates(_col(df, "visit_start_date"))[has_site].to_numpy(),
                        }
                    )
                )
            if inpatient.any():
                m = inpatient
                method = np.where(concept[m].to_numpy() == ER_AND_INPATIENT, "emergency", "other")
                frame = pd.DataFrame(
                    {
                        "spell_id": vid[m].to_numpy(),
                        "admission_date": _dates(_col(df, "visit_start_date"))[m].to_numpy(),
                        "discharge_date": _dates(_col(df, "visit_end_date"))[m].to_numpy(),
                        "admission_method": method,
                        "provider": site[m].to_numpy(),
                    }
                )
                self.run.emit_frame(
                    "admissions",
                    frame,
                    source=str(path),
                    record_type=rt,
                    locations=locs[m].reset_index(drop=True),
                    rkeys=keys[m],
                    ids=vid[m].reset_index(drop=True),
                    pref=pref[m].reset_index(drop=True),
                )
            if emergency.any():
                m = emergency
                start = _col(df, "visit_start_datetime").fillna(_col(df, "visit_start_date"))
                end = _col(df, "visit_end_datetime").fillna(_col(df, "visit_end_date"))
                dest = _ints(_col(df, "discharged_to_concept_id", "discharge_to_concept_id")).map(
                    {
                        8536: "home",
                        8717: "admitted",
                        9201: "admitted",
                        8863: "transfer",
                        8676: "transfer",
                        4216643: "died",
                        0: None,
                    }
                )
                frame = pd.DataFrame(
                    {
                        "arrival_datetime": start[m].to_numpy(),
                        "departure_datetime": end[m].to_numpy(),
                        "discharge_destination": dest[m].astype("string").to_numpy(),
                        "provider": site[m].to_numpy(),
                    }
                )
                self.run.emit_frame(
                    "emergency_attendances",
                    frame,
                    source=str(path),
                    record_type=rt,
                    locations=locs[m].reset_index(drop=True),
                    rkeys=keys[m],
                    ids=vid[m].reset_index(drop=True),
                    pref=pref[m].reset_index(drop=True),
                )

    # -- events ------------------------------------------------------------------------
    def _events(self, name: str, path: Path) -> None:
        date_c, dt_c, concept_c, source_c, value_c, unit_c, srcval_c = EVENT_TABLES[name]
        rt = f"omop.{name}"
        id_col = f"{name}_id"
        for df, lines in self._chunks(path):
            keys = self.run.begin_frame(rt, len(df))
            person_id = _col(df, "person_id").astype("string").str.strip()
            pref = self._pid_keys(person_id)
            s1, c1 = self.concepts.lookup(_col(df, concept_c))
            s2, c2 = self.concepts.lookup(_col(df, source_c))
            same = (s1 == s2).fillna(False) & (c1 == c2).fillna(False)
            s2, c2 = s2.mask(same), c2.mask(same)
            value = _col(df, value_c) if value_c else None
            if value is not None:
                # value_as_number, else a number written in value_as_string (observation),
                # else in value_source_value
                for text in ("value_as_string", "value_source_value"):
                    value = _value_or_source(value, _col(df, text))
            if value is not None and "operator_concept_id" in df.columns:
                # "<5" is not 5: a value with an operator other than "=" is kept as text
                # with its operator, which validation quarantines (no comparator column)
                op = _ints(df["operator_concept_id"]).map(OPERATORS).astype("string")
                # (a value_source_value read with its own comparator keeps that one)
                has = op.notna() & value.notna() & ~value.str.match(r"\s*[<>]").fillna(False)
                value = value.astype("string").mask(has, op + value.astype("string").str.strip())
            base = pd.DataFrame(
                {
                    "date": _dates(_col(df, date_c)),
                    "datetime": _datetimes(_col(df, dt_c)),
                    "value": value,
                    "unit": self._units(df, unit_c) if unit_c else None,
                }
            )
            locs = "line " + lines.astype(str)
            ids = _col(df, id_col)
            mapped = (s1.notna() | s2.notna()).to_numpy()
            self._reject(
                rt,
                path,
                df,
                lines,
                ~mapped,
                concept_c,
                _col(df, concept_c).astype("string").fillna("")
                + " / source "
                + _col(df, srcval_c).astype("string").fillna(""),
                _unmapped(
                    _col(df, concept_c),
                    _col(df, source_c),
                    "concept not in the concept table, or in a vocabulary pophealth does not "
                    "use (SNOMED, dm+d, ICD-10, OPCS-4, Read, LOINC, RxNorm, BNF)",
                    self.concepts,
                ),
                ids,
            )
            pairs = [(s1, c1, False), (s2, c2, False)]
            if "value_as_concept_id" in df.columns:
                # a coded result (e.g. smoking status "never smoked") is an event of its own,
                # as FHIR Observation.valueCodeableConcept is; only for mapped rows
                s3, c3 = self.concepts.lookup(_col(df, "value_as_concept_id"))
                pairs.append((s3.where(mapped), c3.where(mapped), True))
            for system, code, coded_value in pairs:
                m = (system.notna() & code.notna()).to_numpy()
                if not m.any():
                    continue
                frame = base[m].reset_index(drop=True)
                if coded_value:
                    frame["value"] = None
                    frame["unit"] = None
                frame["system"] = system[m].to_numpy()
                frame["code"] = code[m].to_numpy()
                self.run.emit_frame(
                    "events",
                    frame,
                    source=str(path),
                    record_type=rt,
                    locations=locs[m].reset_index(drop=True),
                    rkeys=keys[m],
                    ids=ids[m].reset_index(drop=True),
                    pref=pref[m].reset_index(drop=True),
                )

    def _units(self, df: pd.DataFrame, unit_c: str) -> pd.Series:
        """The unit as recorded (``unit_source_value``), else the UCUM code of
        ``unit_concept_id`` (ETLs that map units do not always keep the source text)."""
        unit = _col(df, unit_c).astype("string")
        unit = unit.mask(unit.str.strip() == "")
        return unit.fillna(self.concepts.unit(_col(df, "unit_concept_id")))

    def _condition_occurrence(self, path: Path) -> None:
        self._events("condition_occurrence", path)

    def _procedure_occurrence(self, path: Path) -> None:
        self._events("procedure_occurrence", path)

    def _measurement(self, path: Path) -> None:
        self._events("measurement", path)

    def _observation(self, path: Path) -> None:
        self._events("observation", path)

    def _drug_exposure(self, path: Path) -> None:
        rt = "omop.drug_exposure"
        for df, lines in self._chunks(path):
            keys = self.run.begin_frame(rt, len(df))
            # a dose given by staff (in hospital, in clinic) is no medicine issued: skipped,
            # or every nebule given on a ward would count as an inhaler prescribed
            given = (
                pd.to_numeric(_col(df, "drug_type_concept_id"), errors="coerce")
                .isin(ADMINISTRATION_TYPES)
                .to_numpy()
            )
            if given.any():
                self.run.skip_frame(rt, int(given.sum()), ADMINISTRATION_REASON)
                df, lines, keys = df[~given], lines[~given], keys[~given]
                df, lines = df.reset_index(drop=True), lines.reset_index(drop=True)
                if df.empty:
                    continue
            person_id = _col(df, "person_id").astype("string").str.strip()
            s1, c1 = self.concepts.lookup(_col(df, "drug_concept_id"))
            s2, c2 = self.concepts.lookup(_col(df, "drug_source_concept_id"))
            for s in (s1, s2):
                dmd = (s == "snomedct").fillna(False) & (c1 if s is s1 else c2).map(
                    lambda c: isinstance(c, str) and is_dmd_code(c)
                ).astype(bool)
                s[dmd] = "dmd"
            rank = {k: i for i, k in enumerate(PREFERENCE)}
            r1 = s1.map(rank).astype("float").fillna(99)
            r2 = s2.map(rank).astype("float").fillna(99)
            use2 = (r2 < r1).to_numpy()
            system = s1.where(~use2, s2)
            code = c1.where(~use2, c2)
            ok = system.isin(["dmd", "snomedct", "rxnorm", "bnf"]).fillna(False).to_numpy()
            locs = "line " + lines.astype(str)
            ids = _col(df, "drug_exposure_id")
            self._reject(
                rt,
                path,
                df,
                lines,
                ~ok,
                "drug_concept_id",
                _col(df, "drug_concept_id").astype("string").fillna("")
                + " / source "
                + _col(df, "drug_source_value").astype("string").fillna(""),
                _unmapped(
                    _col(df, "drug_concept_id"),
                    _col(df, "drug_source_concept_id"),
                    "drug concept not in the concept table, or not dm+d / SNOMED / RxNorm / BNF",
                    self.concepts,
                ),
                ids,
            )
            if not ok.any():
                continue
            frame = pd.DataFrame(
                {
                    "date": _dates(_col(df, "drug_exposure_start_date"))[ok].to_numpy(),
                    "system": system[ok].to_numpy(),
                    "code": code[ok].to_numpy(),
                    "quantity": _col(df, "quantity")[ok].to_numpy(),
                    "quantity_unit": _col(df, "dose_unit_source_value")[ok].to_numpy(),
                    "dose": _col(df, "sig")[ok].to_numpy(),
                }
            )
            self.run.emit_frame(
                "medications",
                frame,
                source=str(path),
                record_type=rt,
                locations=locs[ok].reset_index(drop=True),
                rkeys=keys[ok],
                ids=ids[ok].reset_index(drop=True),
                pref=self._pid_keys(person_id[ok]).reset_index(drop=True),
            )
