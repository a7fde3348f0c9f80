"""Flat canonical tables (CSV, TSV or Parquet named after the schema) -> the store.

For users whose extracts are already in pophealth's shape: ``patients.csv``,
``events.parquet``, ``medications.tsv.gz`` … (any case). Columns are matched by
name; list columns (``all_diagnoses``, ``procedures``) are ``|``-separated text in
CSV. ``patient_id`` must already be pseudonymous: a file whose 10-digit ids mostly pass
the NHS number check is refused (``patient_ids="check"``, see :func:`screen_ids`), unless
the ids are declared NHS numbers to pseudonymise with the key as FHIR ingest does
(``"nhs-number"``) or pseudonyms that only look like NHS numbers (``"pseudonymous"``).
Every row is validated; bad rows are quarantined with file, line and field.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from pophealth.ingest.pseudonym import (
    NHS_NUMBER_SHARE,
    Pseudonymiser,
    PseudonymKeyError,
    nhs_number_valid,
    normalise_nhs_number,
    ten_digit,
)
from pophealth.ingest.sink import INGEST_TABLES, IngestSummary, Run, files_note
from pophealth.ingest.tabular import UnreadableFile, read_delimited, read_parquet
from pophealth.schema import table

#: ``patient_ids``: ``check`` (default) refuses a file of what look like NHS numbers;
#: ``nhs-number`` pseudonymises each id as an NHS number with the key (as FHIR ingest does);
#: ``pseudonymous`` takes the ids as given (pseudonyms that happen to look like NHS numbers).
PATIENT_ID_MODES: tuple[str, ...] = ("check", "nhs-number", "pseudonymous")


class RawNhsNumbers(UnreadableFile):
    """A flat file's patient_id column holds what look like real NHS numbers."""


def find_tables(directory: Path) -> tuple[dict[str, Path], list[Path]]:
    found: dict[str, Path] = {}
    other: list[Path] = []
    for f in sorted(directory.iterdir()):
        if f.is_dir():
            # a Parquet dataset folder (Spark writes ``events.parquet/part-*.parquet``)
            stem = f.name.lower().removesuffix(".parquet")
            parts = _parts(f)
            if stem in INGEST_TABLES and parts:
                if stem in found:
                    raise ValueError(
                        f"{directory}: two files for table {stem}: {found[stem].name} and {f.name}"
                    )
                found[stem] = f
                other += [x for x in sorted(f.rglob("*")) if x.is_file() and x not in parts]
            else:
                other.append(f)
            continue
        if not f.is_file():
            continue
        name = f.name.lower()
        if name.endswith(".gz"):
            name = name[:-3]
        stem, _, ext = name.rpartition(".")
        if ext in ("csv", "tsv", "txt", "parquet") and stem in INGEST_TABLES:
            if stem in found:
                raise ValueError(
                    f"{directory}: two files for table {stem}: {found[stem].name} and {f.name}"
                )
            found[stem] = f
        else:
            other.append(f)
    return found, other


def _parts(folder: Path) -> list[Path]:
    """The Parquet files of a dataset folder, in order (hidden ``.crc`` files left out)."""
    return [
        f
        for f in sorted(folder.rglob("*.parquet"))
        if f.is_file() and not f.name.startswith((".", "_"))
    ]


def _split_list(v):
    if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
        return None
    if isinstance(v, (list, tuple, np.ndarray)):
        return [str(x) for x in v]
    parts = [p.strip() for p in str(v).split("|") if p.strip()]
    return parts or None


def ingest_csv(
    directory: str | os.PathLike,
    out: str | os.PathLike,
    *,
    append: bool = False,
    strict: bool = False,
    progress: Callable[[str, float], None] | None = None,
    chunk_rows: int = 100_000,
    patient_ids: str = "check",
    key: bytes | None = None,
) -> IngestSummary:
    """Import canonical tables from CSV/TSV/Parquet files in ``directory``.

    ``patient_ids`` (:data:`PATIENT_ID_MODES`): ``"check"`` (default) stops the run,
    nothing committed, at a file whose patient ids look like real NHS numbers (see
    :func:`screen_ids`); ``"nhs-number"`` says they are NHS numbers and pseudonymises
    each with ``key`` exactly as FHIR ingest does (HMAC-SHA256 of ``nhs:<number>``, so the
    two link), quarantining a row whose id is not a valid NHS number; ``"pseudonymous"``
    takes them as given.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} is not a directory")
    if patient_ids not in PATIENT_ID_MODES:
        raise ValueError(
            f"patient_ids must be one of {', '.join(PATIENT_ID_MODES)}, not {patient_ids!r}"
        )
    pseudo = None
    if patient_ids == "nhs-number":
        if not key:
            raise PseudonymKeyError(
                "patient_ids 'nhs-number' pseudonymises the NHS numbers with the key: pass "
                "--key-file FILE or set POPHEALTH_PSEUDONYM_KEY (the same key as FHIR ingest, "
                "for the two to link)"
            )
        pseudo = Pseudonymiser(key)
    files, other = find_tables(directory)
    if not files:
        raise FileNotFoundError(
            f"{directory}: no file named after a canonical table "
            f"({', '.join(f'{t}.csv' for t in INGEST_TABLES[:3])} …)"
        )
    run = Run(out, kind="csv", append=append, strict=strict, batch_rows=chunk_rows)
    try:
        total = sum(p.stat().st_size for p in files.values()) or 1
        done = 0
        for name, path in files.items():
            run.files.append(str(path))
            if progress:
                progress(f"reading {path.name}", done / total)
            _load(run, name, path, chunk_rows, patient_ids, pseudo)
            done += path.stat().st_size
        note = files_note("files not used (not named after a canonical table)", other)
        if note:
            run.notes.append(note)
        summary = run.finish(
            provenance={
                "source": "csv",
                "input": str(directory),
                "append": append,
                "patient_ids": patient_ids,
            },
            progress=(lambda d: progress(d, 1.0)) if progress else None,
        )
    except BaseException:
        run.quarantine.close()
        run.cleanup()
        raise
    return summary


def _load(
    run: Run,
    name: str,
    path: Path,
    chunk_rows: int,
    patient_ids: str = "check",
    pseudo: Pseudonymiser | None = None,
) -> None:
    spec = table(name)
    rt = f"csv.{name}"
    noted: set[str] = set()
    screen = _IdScreen(path) if patient_ids == "check" else None
    for part in _parts(path) if path.is_dir() else [path]:
        source = str(part)
        if part.name.lower().endswith(".parquet"):
            chunks, where = read_parquet(part, chunk_rows), "row "
        else:
            bad = run.on_bad_row(source, rt)
            chunks, where = read_delimited(part, chunk_rows, on_bad=bad, quoting=True), "line "
        first = True
        for df, lines in chunks:
            if first:
                # A file without a column its table needs cannot load any of its rows: the
                # run stops (nothing committed) rather than replace the table with nothing.
                missing = [
                    c.name for c in spec.columns if not c.nullable and c.name not in df.columns
                ]
                if missing:
                    raise UnreadableFile(
                        f"{part}: table {name!r} needs column(s) {', '.join(missing)}; found "
                        f"{', '.join(map(str, df.columns)) or 'no columns'}; nothing was "
                        "committed"
                    )
                extra = [c for c in df.columns if c not in spec.column_names and c not in noted]
                if extra:
                    noted.update(extra)
                    run.notes.append(
                        f"{path.name}: column(s) not in the schema, ignored: {', '.join(extra)}"
                    )
                first = False
            if df.empty:
                continue
            for col in spec.columns:
                if col.type == "list<string>" and col.name in df.columns:
                    df[col.name] = df[col.name].map(_split_list)
            locs = where + lines.astype(str)
            if "patient_id" in df.columns:
                if screen is not None:
                    # before any row of the chunk is spilled
                    screen.add(df["patient_id"], locs, part)
                keys = run.begin_frame(rt, len(df))
                if pseudo is not None:
                    df, locs, keys = _pseudonymise(run, rt, source, df, locs, keys, pseudo)
            else:
                keys = run.begin_frame(rt, len(df))
            run.emit_frame(name, df, source=source, record_type=rt, locations=locs, rkeys=keys)


class _IdScreen:
    """The whole-file check of ``patient_ids="check"``: the distinct 10-digit ids seen so
    far (counted chunk by chunk) and how many pass the NHS number check. A file is refused
    as soon as :data:`NHS_NUMBER_SHARE` of them pass (checked before each chunk is spilled),
    so real NHS numbers do not reach the store, nor, beyond the chunks already read, the
    temporary files."""

    def __init__(self, path: Path):
        self.path = path
        self.ten = 0
        self.valid = 0
        self.first: str | None = None

    def add(self, ids: pd.Series, locs: pd.Series, part: Path) -> None:
        if pd.api.types.is_float_dtype(ids):
            # a Parquet whole-number column with nulls reads as floats (9434765919.0)
            whole = ids.notna() & (ids == np.floor(ids))
            ids = ids.astype(object).where(~whole, ids[whole].astype("int64").astype(str))
        distinct = pd.unique(ids.dropna().astype(str))
        ten = ten_digit(distinct)
        if not ten.any():
            return
        valid = nhs_number_valid(distinct[ten])
        self.ten += int(ten.sum())
        self.valid += int(valid.sum())
        if self.first is None and valid.any():
            hit = nhs_number_valid(ids.astype("string").fillna("").to_numpy(object))
            self.first = str(locs.to_numpy(object)[np.flatnonzero(hit)[0]])
        if self.valid and self.valid >= NHS_NUMBER_SHARE * self.ten:
            raise RawNhsNumbers(
                f"{part}: patient_id looks like real NHS numbers: {self.valid:,} of the "
                f"{self.ten:,} distinct 10-digit ids read (first at {self.first}) pass the NHS "
                "number check (modulus 11), where about 1 in 11 pseudonyms would by chance. "
                "Flat ingest does not pseudonymise patient_id: pass --patient-ids nhs-number "
                "(with --key-file, the key FHIR ingest uses) to pseudonymise them as FHIR "
                "ingest does, or pseudonymise them before the ingest; if they are already "
                "pseudonyms that only look like NHS numbers, pass --patient-ids pseudonymous. "
                "Nothing was committed"
            )


def _pseudonymise(
    run: Run,
    rt: str,
    source: str,
    df: pd.DataFrame,
    locs: pd.Series,
    keys: np.ndarray,
    pseudo: Pseudonymiser,
) -> tuple[pd.DataFrame, pd.Series, np.ndarray]:
    """``patient_ids="nhs-number"``: each patient_id, an NHS number, replaced by its keyed
    pseudonym (the one FHIR ingest gives the same number); a row whose id is not a valid
    NHS number is quarantined (a blank one is left to validation, which names it)."""
    raw = df["patient_id"].astype("string")
    blank = (raw.isna() | (raw.str.strip() == "")).to_numpy(bool)
    ok = nhs_number_valid(raw.fillna("").to_numpy(object)) | blank
    if not ok.all():
        bad = ~ok
        run.reject_frame(
            rt,
            source,
            locs[bad].reset_index(drop=True),
            None,
            "patient_id",
            raw[bad].reset_index(drop=True),
            "not a valid NHS number (10 digits whose last is the modulus-11 check digit): with "
            "--patient-ids nhs-number every patient_id must be one",
            df[bad].reset_index(drop=True),
        )
        df, locs, keys = df[ok].reset_index(drop=True), locs[ok].reset_index(drop=True), keys[ok]
        raw = raw[ok].reset_index(drop=True)
        blank = blank[ok]
    distinct = pd.unique(raw[~blank].to_numpy(object))
    ids = {v: pseudo.nhs(normalise_nhs_number(v)) for v in distinct}
    df = df.copy()
    df["patient_id"] = raw.map(ids).astype(object).where(~blank, None)
    return df, locs, keys
