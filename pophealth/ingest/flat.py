"""Flat canonical tables (CSV, TSV or Parquet named after the schema) -> the store.

For users whose extracts are already in pophealth's shape: ``patients.csv``,
``events.parquet``, ``medications.tsv.gz`` … (any case). Columns are matched by
name; list columns (``all_diagnoses``, ``procedures``) are ``|``-separated text in
CSV. ``patient_id`` must already be pseudonymous — this importer does not hash it.
Every row is validated; bad rows are quarantined with file, line and field.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from pophealth.ingest.sink import INGEST_TABLES, IngestSummary, Run, files_note
from pophealth.ingest.tabular import UnreadableFile, read_delimited, read_parquet
from pophealth.schema import table


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
) -> IngestSummary:
    """Import canonical tables from CSV/TSV/Parquet files in ``directory``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} is not a directory")
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
            _load(run, name, path, chunk_rows)
            done += path.stat().st_size
        note = files_note("files not used (not named after a canonical table)", other)
        if note:
            run.notes.append(note)
        summary = run.finish(
            provenance={"source": "csv", "input": str(directory), "append": append},
            progress=(lambda d: progress(d, 1.0)) if progress else None,
        )
    except BaseException:
        run.quarantine.close()
        run.cleanup()
        raise
    return summary


def _load(run: Run, name: str, path: Path, chunk_rows: int) -> None:
    spec = table(name)
    rt = f"csv.{name}"
    noted: set[str] = set()
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
            keys = run.begin_frame(rt, len(df))
            locs = where + lines.astype(str)
            run.emit_frame(name, df, source=source, record_type=rt, locations=locs, rkeys=keys)
