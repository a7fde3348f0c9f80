"""The part every importer shares: spill rows, resolve references, validate, write.

An importer (FHIR, OMOP, flat CSV) maps each source record to rows of the
canonical tables and hands them to a :class:`Run`. The run

1. buffers rows per table and spills them to temporary Parquet in batches (bounded
   memory, whatever the input size);
2. keeps a reference index (hashed reference key -> patient_id, or -> medication
   code) so that references into other files resolve at the end;
3. at the end, per table, resolves references with DuckDB (which spills to disk),
   drops exact duplicates (idempotent re-runs and ``--append``), validates every
   row with :func:`pophealth.validate.validate`, and streams the valid chunks into
   one atomic :meth:`pophealth.store.Store.write`;
4. writes every quarantined record — with file, line/entry, resource id, field and
   reason — to ``STORE/quarantine/<run>.csv`` and proves, per table and per source
   record type, that ``in = loaded + quarantined + skipped``.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import shutil
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pophealth.schema import TABLES, table
from pophealth.scratch import SYNTH_PREFIX, make_dir, remove_stale
from pophealth.store import Store
from pophealth.validate import parse_number, validate

#: Tables an ingest writes (everything patient-level, and practices). ``areas`` comes
#: from the reference loaders and is always carried over.
INGEST_TABLES: tuple[str, ...] = tuple(n for n in TABLES if n != "areas")

#: ``--registrations``: ``infer-missing`` (default) infers a registration for patients whose
#: source records none (see :mod:`pophealth.ingest.infer`); ``recorded`` loads only what
#: the source records.
REGISTRATION_MODES: tuple[str, ...] = ("infer-missing", "recorded")

#: Prefix of a run's spill folder: ``pophealth-ingest-<host>-<pid>-<random>`` (see
#: :mod:`pophealth.scratch`), in ``POPHEALTH_INGEST_TMP`` or the system temporary directory.
SPILL_PREFIX = "pophealth-ingest-"
#: Folder beside the snapshots holding the hashed reference index of earlier runs.
INDEX_DIR = "reference-index"
META = ("_pref", "_mref", "_src", "_loc", "_rid", "_rtype", "_rkey")
#: Spilled evidence of registration (see :meth:`Run.evidence`): ``kind`` is ``encounter``
#: (FHIR primary-care encounter), ``start`` (FHIR registration-start extension),
#: ``period`` (OMOP observation period) or ``visit`` (OMOP visit at a care site).
#: ``is_gp`` is "1" for a general-practice style encounter; ``_mref`` is the hashed
#: reference of a serviceProvider Organization read from another file.
EVIDENCE = "_evidence"
EVIDENCE_COLUMNS = (
    "kind",
    "patient_id",
    "_pref",
    "practice_id",
    "_mref",
    "name",
    "is_gp",
    "date",
    "end_date",
)
#: Spilled prescriptions' order keys (see :meth:`Run.order`): ``rkey`` of the record and
#: ``okey``, the hashed identity of the order (an EPS order item, an identifier, an id).
ORDERS = "_orders"
#: Spilled links of dispenses to the prescriptions they supply (see :meth:`Run.link`) and
#: the prescriptions' own (see :meth:`Run.prescribed`): ``rkey`` of the record, ``okey`` (a
#: hashed form of a reference to the prescription) and the patient (``patient_id`` or hashed
#: ``_pref``).
LINKS = "_links"
PRESCRIBED = "_prescribed"
#: Spilled merges of patient records (see :meth:`Run.merge`): ``rkey`` of the record that
#: must no longer be used (when it is that record's link), the old patient and the new one
#: (each a ``patient_id`` or a hashed reference, ``*_key``).
MERGES = "_merges"
#: Spilled withdrawals (see :meth:`Run.withdraw`): a cancelled or entered-in-error record's
#: ``okey`` and its patient (``patient_id`` or hashed ``_pref``).
WITHDRAWALS = "_withdrawals"
#: Tables whose rows are each loaded for one source record with an identity (``okey``: a FHIR
#: resource's order item, identifier or id), so that a later entered-in-error version
#: withdraws them and, with ``--append``, a later version replaces them.
RECORD_TABLES = (
    "events",
    "medications",
    "admissions",
    "emergency_attendances",
    "questionnaire_responses",
)
#: Spilled patients records refused while mapping (see :meth:`Run.refuse_patient`).
REFUSED_PATIENTS = "_refused_patients"
#: Columns of the spilled reference-index files, by kind (default: key, system, code).
#: ``withdrawn`` (record key, patient) and ``issued`` (record key, patient, hash of a row
#: loaded for it, and ``run_seq``, when the run started) let a later ``--append`` run withdraw
#: or replace across runs.
INDEX_COLUMNS = {
    "patient": ["key", "pid"],
    "provider": ["key", "practice_id", "name", "is_gp"],
    "withdrawn": ["key", "pid"],
    "prescribed": ["key", "pid"],
    "supplied": ["key", "pid"],
    "issued": ["key", "pid", "rowhash", "run_seq"],
    "merged": ["key", "pid"],
}
#: Why a prescription withdrawn by a later record is not loaded (the record is skipped).
WITHDRAWN_REASON = (
    "withdrawn: a cancelled or entered-in-error record of the same order (EPS order item, "
    "identifier or id) and patient says it was never issued"
)
#: Why a dispense of a prescription that is loaded is not (the record is skipped), nor a
#: prescription whose dispense an earlier run loaded.
DISPENSED_REASON = (
    "one supply: a prescription and its dispense (the same patient) are counted once, as "
    "the prescription, or as the dispense when an earlier run loaded it"
)
#: Why a Patient record merged into another is not loaded (it is skipped).
MERGED_REASON = (
    "merged: the Patient record says it was replaced by another (Patient.link replaced-by, "
    "or replaces on the other), which is loaded; records naming it load under that one"
)
#: Why another record withdrawn by a later version of it is not loaded (it is skipped).
WITHDRAWN_RECORD_REASON = (
    "withdrawn: a version of the same record (identifier or id) and patient says it was "
    "entered in error, refuted or did not happen"
)
#: Columns the inference rule fills (the others are null).
INFERRED_COLUMNS = {
    "registrations": {"patient_id", "practice_id", "start_date", "end_date", "source"},
    "practices": {"practice_id", "name"},
}
QUARANTINE_FIELDS = [
    "run",
    "table",
    "record_type",
    "file",
    "location",
    "record_id",
    "field",
    "value",
    "reason",
    "record",
]
MAX_RECORD_CHARS = 20_000


class NothingLoaded(RuntimeError):
    """Raised inside the store write when no row at all loaded: the store is left as it was."""


class StrictRefusal(NothingLoaded):
    """Raised inside the store write under ``strict`` when anything was quarantined."""


#: Prefix of the spill columns :func:`instant_column` names.
INSTANT = "_instant_"


def instant_column(column: str) -> str:
    """The spill column beside date column ``column`` of a period that holds the date-time
    its date was read from, where that had a time and an offset (a FHIR period; see
    :func:`pophealth.validate.validate`, ``instants``). A mapper sets it in the row it
    emits; it is never stored."""
    return f"{INSTANT}{column}"


def _instant_columns(name: str) -> list[str]:
    spec = table(name)
    return [c for p in spec.periods for c in p if spec[c].type == "date"]


def _instants(name: str, df: pd.DataFrame) -> dict[str, pd.Series]:
    return {
        c: df[instant_column(c)].reset_index(drop=True)
        for c in _instant_columns(name)
        if instant_column(c) in df.columns
    }


def _spill_schema(name: str) -> pa.Schema:
    fields = []
    for col in table(name).columns:
        kind = pa.list_(pa.string()) if col.type == "list<string>" else pa.string()
        fields.append(pa.field(col.name, kind))
    fields += [pa.field(instant_column(c), pa.string()) for c in _instant_columns(name)]
    fields += [pa.field(m, pa.int64() if m == "_rkey" else pa.string()) for m in META]
    return pa.schema(fields)


def _text(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, float):
        if v != v:  # NaN
            return None
        return repr(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


@dataclass
class Context:
    """Where one source record came from (for quarantine lines and counts)."""

    source: str
    location: str
    record_type: str
    record_id: str | None
    rkey: int
    raw: Any = None
    emitted: int = 0
    outcome: str | None = None  # "quarantined" / "skipped" decided while mapping


@dataclass
class TableCounts:
    rows_in: int = 0
    loaded: int = 0
    quarantined: int = 0
    duplicates: int = 0
    kept_from_store: int = 0
    #: rows made by a documented inference rule (registrations the source does not
    #: record, and the practices they name), loaded beside the source's rows; like
    #: ``kept_from_store`` they are not source rows, so not part of the balance
    inferred: int = 0
    #: source rows not loaded because a cancelled or entered-in-error record withdraws them
    #: (medications: an EPS cancellation of the order item)
    withdrawn: int = 0
    #: medications: rows not loaded because a prescription and its dispense are one supply,
    #: counted once: a dispense whose prescription is loaded (this run or, appending, an
    #: earlier one), a prescription whose dispense an earlier run loaded
    same_supply: int = 0
    #: patients, addresses, registrations, practices: rows of a Patient record merged into
    #: another (FHIR ``Patient.link``), not loaded; the records naming it load under the other
    merged: int = 0
    #: rows an earlier run loaded that this run removed from the store (not source rows of
    #: this run, so not part of the balance): withdrawn by an entered-in-error version, or
    #: replaced by a newer version of their record
    withdrawn_from_store: int = 0
    #: of ``withdrawn_from_store``, the rows replaced by a newer version of their record
    replaced_in_store: int = 0

    @property
    def balanced(self) -> bool:
        return self.rows_in == (
            self.loaded + self.quarantined + self.duplicates + self.withdrawn
            + self.same_supply + self.merged
        )  # fmt: skip


@dataclass
class RecordCounts:
    records_in: int = 0
    loaded: int = 0
    quarantined: int = 0
    skipped: int = 0
    skip_reasons: Counter = field(default_factory=Counter)

    @property
    def balanced(self) -> bool:
        return self.records_in == self.loaded + self.quarantined + self.skipped


@dataclass
class IngestSummary:
    """What an ingest did, with the counts that must add up."""

    kind: str
    store: Path
    run_id: str
    tables: dict[str, TableCounts]
    records: dict[str, RecordCounts]
    files: list[str]
    quarantine_file: Path | None
    committed: bool
    notes: list[str] = field(default_factory=list)
    summary_file: Path | None = None

    @property
    def loaded(self) -> int:
        return sum(t.loaded for t in self.tables.values())

    @property
    def quarantined(self) -> int:
        return sum(r.quarantined for r in self.records.values())

    @property
    def balanced(self) -> bool:
        return all(t.balanced for t in self.tables.values()) and all(
            r.balanced for r in self.records.values()
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "run": self.run_id,
            "committed": self.committed,
            "balanced": self.balanced,
            "files": len(self.files),
            "quarantine_file": str(self.quarantine_file) if self.quarantine_file else None,
            "tables": {k: vars(v) for k, v in self.tables.items()},
            "records": {
                k: {
                    **{
                        f: getattr(v, f) for f in ("records_in", "loaded", "quarantined", "skipped")
                    },
                    "skip_reasons": dict(v.skip_reasons),
                }
                for k, v in self.records.items()
            },
            "notes": self.notes,
        }


class QuarantineWriter:
    def __init__(self, path: Path, run_id: str):
        self.path = path
        self.run_id = run_id
        self._fh = open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115
        self._w = csv.writer(self._fh)
        self._w.writerow(QUARANTINE_FIELDS)
        self.lines = 0

    def write(self, **kw: Any) -> None:
        record = kw.get("record")
        if record is not None and not isinstance(record, str):
            try:
                record = json.dumps(record, separators=(",", ":"), default=str)
            except (TypeError, ValueError):
                record = repr(record)
        if record is not None and len(record) > MAX_RECORD_CHARS:
            record = record[:MAX_RECORD_CHARS] + "…[truncated]"
        kw["record"] = record
        kw["run"] = self.run_id
        self._w.writerow([_text(kw.get(k)) or "" for k in QUARANTINE_FIELDS])
        self.lines += 1

    def close(self) -> None:
        self._fh.close()


class Run:
    """One ingest run: collects rows, resolves, validates and commits them."""

    def __init__(
        self,
        out: str | Path,
        *,
        kind: str,
        append: bool = False,
        strict: bool = False,
        batch_rows: int = 50_000,
        tmp_dir: str | Path | None = None,
        worker: bool = False,
        run_id: str | None = None,
        rkey_start: int = 0,
        registrations: str = "infer-missing",
    ):
        if registrations not in REGISTRATION_MODES:
            raise ValueError(
                f"registrations must be one of {', '.join(REGISTRATION_MODES)}, "
                f"not {registrations!r}"
            )
        self.registrations = registrations
        self.strict = strict
        self.memory_limit = os.environ.get("POPHEALTH_INGEST_MEMORY", "1GB")
        self.out = Path(out)
        self.kind = kind
        self.append = append
        self.batch_rows = batch_rows
        self.run_id = run_id or (
            dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        )
        # Refuse non-stores / other schema versions before any work is done. A worker
        # (``worker=True``) only maps records; its parent run owns the store.
        self.store = None if worker else Store.open_or_new(self.out)
        # Spill files are about as large as the loaded tables: put them where there is
        # room with POPHEALTH_INGEST_TMP (default: the system temporary directory).
        tmp_dir = tmp_dir or os.environ.get("POPHEALTH_INGEST_TMP") or None
        self.notes: list[str] = []
        if not worker:
            self._remove_leftovers(tmp_dir)
        self.tmp = make_dir(SPILL_PREFIX, tmp_dir)
        self.quarantine = QuarantineWriter(self.tmp / "quarantine.csv", self.run_id)
        self._buffers: dict[str, list[dict]] = defaultdict(list)
        self._spills: dict[str, list[Path]] = defaultdict(list)
        self._index: dict[str, list[tuple]] = defaultdict(list)
        self._index_spills: dict[str, list[Path]] = defaultdict(list)
        self._outcome_spills: list[Path] = []
        self.records: dict[str, RecordCounts] = defaultdict(RecordCounts)
        self.tables: dict[str, TableCounts] = {n: TableCounts() for n in INGEST_TABLES}
        self.files: list[str] = []
        self._worker_dirs: list[str] = []
        self._extra: dict[str, Any] = {}
        self._evidence: list[dict] = []
        self._orders: list[tuple[int, str]] = []
        self._links: list[tuple[int, str, str | None, str | None]] = []
        self._prescriptions: list[tuple[int, str, str | None, str | None]] = []
        self._withdrawals: list[tuple[str, str | None, str | None]] = []
        self._refused: list[tuple[int, str, str]] = []
        self._merges: list[tuple[int | None, str | None, str | None, str | None, str | None]] = []
        #: whether this run merges patient records (see :meth:`_register_merges`)
        self._merging = False
        self._inferred_rejected = 0
        #: rows loaded whose serviceProvider Organization resolved nowhere, by table
        self._no_provider: Counter = Counter()
        #: (rkey, reason) of patients records quarantined as a conflict (see _resolve)
        self._conflicts: list[tuple[int, str]] = []
        self._patients_resolved = False
        self._rkey = rkey_start
        self._nspill = 0
        #: orders this run's issued rows after every earlier run's (runs commit in the order
        #: they start: a run is refused if another committed after it opened the store)
        self._seq = time.time_ns()
        #: whether any row of a record table may be withdrawn or replaced (set at finish)
        self._withdrawing = False

    def _remove_leftovers(self, tmp_dir: str | Path | None) -> None:
        """Remove what ingests, ``pophealth synth`` runs and store writes killed earlier
        (``kill -9``, out of memory) left behind: spill folders (patient-level rows; the
        quarantined source records, which may hold NHS numbers), the synthetic generator's
        spool folders in the system temporary directory, and half-written snapshots of
        this store. Only folders of processes no longer running on this host are
        touched."""
        removed = remove_stale(tmp_dir or tempfile.gettempdir(), SPILL_PREFIX)
        removed += remove_stale(tempfile.gettempdir(), SYNTH_PREFIX)
        removed += self.store.removed
        if removed:
            self.notes.append(
                f"removed {len(removed)} temporary folder(s) left by a process that is no "
                "longer running (an ingest, synth or store write that was killed): "
                + "; ".join(f"{folder} (process {pid})" for folder, pid in removed)
            )

    # -- records -----------------------------------------------------------------------
    def begin(
        self, source: str, location: str, record_type: str, record_id: str | None, raw: Any = None
    ) -> Context:
        self._rkey += 1
        self.records[record_type].records_in += 1
        return Context(source, location, record_type, record_id, self._rkey, raw)

    def skip(self, ctx: Context, reason: str) -> None:
        if ctx.outcome is None and ctx.emitted == 0:
            ctx.outcome = "skipped"
            rc = self.records[ctx.record_type]
            rc.skipped += 1
            rc.skip_reasons[reason] += 1

    def reject(self, ctx: Context, field_: str, value: Any, reason: str, table_: str = "") -> None:
        """Quarantine a whole source record (nothing of it loads)."""
        self.quarantine.write(
            table=table_,
            record_type=ctx.record_type,
            file=ctx.source,
            location=ctx.location,
            record_id=ctx.record_id,
            field=field_,
            value=value,
            reason=reason,
            record=ctx.raw,
        )
        if ctx.outcome is None:
            ctx.outcome = "quarantined"
            self.records[ctx.record_type].quarantined += 1

    def end(self, ctx: Context) -> None:
        if ctx.outcome is None and ctx.emitted == 0:
            self.skip(ctx, "nothing pophealth uses in it")

    def reject_unparsed(
        self,
        source: str,
        location: str,
        record_type: str,
        reason: str,
        raw: Any,
        field_: str = "",
        value: Any = None,
    ) -> None:
        """Quarantine something that could not even be read as a record."""
        ctx = self.begin(source, location, record_type, None, raw)
        self.reject(ctx, field_, value, reason)

    def on_bad_row(self, source: str, record_type: str) -> Callable[[Any], None]:
        """A reader's ``on_bad`` callback: quarantine a row it could not read (a
        :class:`~pophealth.ingest.tabular.BadRow`) with its line, field and reason."""

        def bad(row: Any) -> None:
            self.reject_unparsed(
                source,
                f"line {row.line}",
                record_type,
                row.reason,
                row.raw,
                field_=row.field,
                value=row.value,
            )

        return bad

    def emit(
        self,
        name: str,
        row: dict[str, Any],
        ctx: Context,
        *,
        pref: str | None = None,
        mref: str | None = None,
    ) -> None:
        row["_pref"] = pref
        row["_mref"] = mref
        row["_src"] = ctx.source
        row["_loc"] = ctx.location
        row["_rid"] = ctx.record_id
        row["_rtype"] = ctx.record_type
        row["_rkey"] = ctx.rkey
        ctx.emitted += 1
        self.tables[name].rows_in += 1
        buf = self._buffers[name]
        buf.append(row)
        if len(buf) >= self.batch_rows:
            self._flush(name)

    def begin_frame(self, record_type: str, n: int) -> np.ndarray:
        """Record keys for ``n`` source records read as one chunk (tabular sources)."""
        keys = np.arange(self._rkey + 1, self._rkey + 1 + n, dtype=np.int64)
        self._rkey += n
        self.records[record_type].records_in += n
        return keys

    def skip_frame(self, record_type: str, n: int, reason: str) -> None:
        if n:
            rc = self.records[record_type]
            rc.skipped += n
            rc.skip_reasons[reason] += n

    def reject_frame(
        self,
        record_type: str,
        source: str,
        locations: pd.Series,
        ids: pd.Series | None,
        field_: str,
        values: pd.Series | None,
        reason: str,
        records: pd.DataFrame | None = None,
    ) -> None:
        """Quarantine whole source rows of a tabular source (one line each in the report)."""
        n = len(locations)
        if not n:
            return
        self.records[record_type].quarantined += n
        recs = records.to_dict("records") if records is not None else [None] * n
        vals = values.tolist() if values is not None else [None] * n
        rids = ids.tolist() if ids is not None else [None] * n
        for loc, rid, val, rec in zip(locations.tolist(), rids, vals, recs, strict=True):
            self.quarantine.write(
                table="",
                record_type=record_type,
                file=source,
                location=loc,
                record_id=rid,
                field=field_,
                value=val,
                reason=reason,
                record=rec,
            )

    def emit_frame(
        self,
        name: str,
        frame: pd.DataFrame,
        *,
        source: str,
        record_type: str,
        locations: pd.Series,
        rkeys: np.ndarray,
        ids: pd.Series | None = None,
        pref: pd.Series | None = None,
    ) -> None:
        """Spill a whole chunk of rows for table ``name`` (columns named as the schema)."""
        n = len(frame)
        if not n:
            return
        schema = _spill_schema(name)
        arrays = []
        for f in schema:
            if f.name == "_rkey":
                arrays.append(pa.array(np.asarray(rkeys, dtype=np.int64)))
                continue
            if f.name == "_pref":
                col = pref
            elif f.name == "_src":
                col = pd.Series([source] * n)
            elif f.name == "_loc":
                col = locations
            elif f.name == "_rid":
                col = ids
            elif f.name == "_rtype":
                col = pd.Series([record_type] * n)
            elif f.name.startswith(INSTANT):
                col = None  # tabular sources give dates, or timestamps read as UTC
            else:
                col = frame[f.name] if f.name in frame.columns else None
            if col is None:
                arrays.append(pa.nulls(n, f.type))
            elif pa.types.is_list(f.type):
                arrays.append(pa.array(list(col), f.type))
            else:
                values = pd.Series(col).reset_index(drop=True)
                text = values.astype("string")
                arrays.append(
                    pa.array(text.astype(object).where(text.notna(), None).tolist(), pa.string())
                )
        path = self._path(name)
        pq.write_table(pa.Table.from_arrays(arrays, schema=schema), path)
        self._spills[name].append(path)
        self.tables[name].rows_in += n

    def index(self, kind: str, *values: str | None) -> None:
        """Add a reference-index entry: kind ``patient`` (key, patient_id) or
        ``medication`` (key, system, code)."""
        buf = self._index[kind]
        buf.append(values)
        if len(buf) >= self.batch_rows * 4:
            self._flush_index(kind)

    def evidence(self, row: dict[str, Any]) -> None:
        """Record evidence of registration (not a canonical row): a primary-care encounter,
        a registration start, an observation period or a visit's care site. Used at the
        end to infer registrations for patients whose source records none
        (:mod:`pophealth.ingest.infer`); columns :data:`EVIDENCE_COLUMNS`."""
        self._evidence.append(row)
        if len(self._evidence) >= self.batch_rows:
            self._flush_evidence()

    def evidence_frame(self, frame: pd.DataFrame) -> None:
        """Evidence rows of a tabular source, a whole chunk at once."""
        if len(frame):
            self._write_evidence(frame)

    def order(self, ctx: Context, okey: str) -> None:
        """The hashed identity of the record ``ctx`` (a prescription's order: EPS order item,
        identifier or id; another record's identifier or id), so that a withdrawal of it
        (:meth:`withdraw`) in any file of the run, or of a later ``--append`` run, takes its
        rows out, and a later ``--append`` run's version of it replaces them."""
        self._orders.append((ctx.rkey, okey))
        if len(self._orders) >= self.batch_rows:
            self._flush_orders()

    def link(self, ctx: Context, okey: str, patient_id: str | None, pref: str | None) -> None:
        """A link of the dispense ``ctx`` of a patient (``patient_id``, or the hashed
        reference ``pref`` resolved at the end) to a prescription it supplies (``okey``: a
        hashed form of the reference to it). A prescription and its dispense are one
        supply, counted once: when the prescription loads (:meth:`prescribed`) in any file
        of the run or of an earlier ``--append`` run, the dispense's rows are not loaded;
        when an earlier run loaded the dispense, the prescription's are not (both counted
        as ``same_supply``)."""
        self._links.append((ctx.rkey, okey, patient_id, pref))
        if len(self._links) >= self.batch_rows:
            self._flush_orders()

    def prescribed(self, ctx: Context, okey: str, patient_id: str | None, pref: str | None) -> None:
        """The prescription ``ctx`` of a patient, under ``okey`` (one call per form a
        reference to it may take; see :meth:`link`). Kept in the reference index for later
        ``--append`` runs."""
        self._prescriptions.append((ctx.rkey, okey, patient_id, pref))
        if len(self._prescriptions) >= self.batch_rows:
            self._flush_orders()

    def withdraw(self, okey: str, patient_id: str | None, pref: str | None) -> None:
        """A cancelled, entered-in-error (refuted, not done …) record: the order or record
        ``okey`` of that patient (``patient_id``, or the hashed reference ``pref`` resolved at
        the end) was not issued, or is wrong. Rows of this run and, with ``--append``, of
        earlier runs with that key and patient are not counted."""
        self._withdrawals.append((okey, patient_id, pref))
        if len(self._withdrawals) >= self.batch_rows:
            self._flush_orders()

    def merge(
        self,
        rkey: int | None,
        *,
        old_pid: str | None = None,
        old_key: str | None = None,
        new_pid: str | None = None,
        new_key: str | None = None,
    ) -> None:
        """One patient record merged into another (FHIR ``Patient.link``): the old patient
        (``old_pid``, or the hashed reference ``old_key`` resolved at the end) must no longer
        be used, the new one in its place. ``rkey`` is the old record's, when the link is its
        own (``replaced-by``). Applied at the end when the new patient is one of the run's or
        the store's: rows naming the old patient load under the new one, and the old
        record's own rows (patients, addresses, registrations) are not loaded."""
        self._merges.append((rkey, old_pid, old_key, new_pid, new_key))
        if len(self._merges) >= self.batch_rows:
            self._flush_orders()

    def refuse_patient(self, ctx: Context, patient_id: str, why: str) -> None:
        """A patients record quarantined while mapping (``ctx`` is rejected by the caller),
        under the stand-in ``patient_id`` that records referring to it resolve to: those
        rows are quarantined at the end saying ``why`` (where, field, reason), as for a
        patients record that fails validation."""
        self._refused.append((ctx.rkey, patient_id, why))
        if len(self._refused) >= self.batch_rows:
            self._flush_orders()

    def _flush_orders(self) -> None:
        refused, self._refused = self._refused, []
        self._spill_rows(
            REFUSED_PATIENTS, "refused", refused,
            {"rkey": pa.int64(), "patient_id": pa.string(), "why": pa.string()},
        )  # fmt: skip
        merges, self._merges = self._merges, []
        self._spill_rows(
            MERGES, "merges", merges,
            {"rkey": pa.int64(), "old_pid": pa.string(), "old_key": pa.string(),
             "new_pid": pa.string(), "new_key": pa.string()},
        )  # fmt: skip
        orders, self._orders = self._orders, []
        self._spill_rows(ORDERS, "orders", orders, {"rkey": pa.int64(), "okey": pa.string()})
        keyed = {
            "rkey": pa.int64(), "okey": pa.string(), "patient_id": pa.string(),
            "_pref": pa.string(),
        }  # fmt: skip
        links, self._links = self._links, []
        self._spill_rows(LINKS, "links", links, keyed)
        rows, self._prescriptions = self._prescriptions, []
        self._spill_rows(PRESCRIBED, "prescribed", rows, keyed)
        rows, self._withdrawals = self._withdrawals, []
        self._spill_rows(
            WITHDRAWALS, "withdrawals", rows,
            {"okey": pa.string(), "patient_id": pa.string(), "_pref": pa.string()},
        )  # fmt: skip

    def _spill_rows(
        self, spill: str, name: str, rows: list[tuple], columns: dict[str, pa.DataType]
    ) -> None:
        """Write ``rows`` (tuples in the order of ``columns``, name to type) to a spill file
        of kind ``spill``; nothing when there are none."""
        if not rows:
            return
        path = self._path(name)
        values = zip(*rows, strict=True)
        arrays = {c: pa.array(v, t) for (c, t), v in zip(columns.items(), values, strict=True)}
        pq.write_table(pa.table(arrays), path)
        self._spills[spill].append(path)

    def _flush_evidence(self) -> None:
        rows, self._evidence = self._evidence, []
        if rows:
            self._write_evidence(pd.DataFrame.from_records(rows))

    def _write_evidence(self, frame: pd.DataFrame) -> None:
        n = len(frame)
        arrays = []
        for c in EVIDENCE_COLUMNS:
            if c not in frame.columns:
                arrays.append(pa.nulls(n, pa.string()))
                continue
            text = pd.Series(frame[c]).reset_index(drop=True).astype("string")
            arrays.append(
                pa.array(text.astype(object).where(text.notna(), None).tolist(), pa.string())
            )
        path = self._path("evidence")
        pq.write_table(pa.Table.from_arrays(arrays, names=list(EVIDENCE_COLUMNS)), path)
        self._spills[EVIDENCE].append(path)

    # -- spilling ----------------------------------------------------------------------
    def _path(self, stem: str) -> Path:
        self._nspill += 1
        return self.tmp / f"{stem}-{self._nspill:06d}.parquet"

    def _flush(self, name: str) -> None:
        rows = self._buffers.pop(name, None)
        if not rows:
            return
        schema = _spill_schema(name)
        arrays = []
        for f in schema:
            if f.name == "_rkey":
                arrays.append(pa.array([r["_rkey"] for r in rows], pa.int64()))
            elif pa.types.is_list(f.type):
                arrays.append(
                    pa.array(
                        [
                            None if r.get(f.name) is None else [str(x) for x in r[f.name]]
                            for r in rows
                        ],
                        f.type,
                    )
                )
            else:
                arrays.append(_text_array([r.get(f.name) for r in rows]))
        path = self._path(name)
        pq.write_table(pa.Table.from_arrays(arrays, schema=schema), path)
        self._spills[name].append(path)

    def _flush_index(self, kind: str) -> None:
        rows = self._index.pop(kind, None)
        if not rows:
            return
        names = INDEX_COLUMNS.get(kind, ["key", "system", "code"])
        cols = list(zip(*rows, strict=True))
        data = pa.table(
            {n: pa.array(list(c), pa.string()) for n, c in zip(names, cols, strict=True)}
        )
        path = self._path(f"index-{kind}")
        pq.write_table(data, path)
        self._index_spills[kind].append(path)

    # -- parallel workers ----------------------------------------------------------------
    def export(self) -> dict[str, Any]:
        """Flush everything and hand this (worker) run's state to the parent."""
        for name in list(self._buffers):
            self._flush(name)
        for kind in list(self._index):
            self._flush_index(kind)
        self._flush_evidence()
        self._flush_orders()
        self.quarantine.close()
        return {
            "spills": {k: [str(p) for p in v] for k, v in self._spills.items()},
            "index": {k: [str(p) for p in v] for k, v in self._index_spills.items()},
            "records": {
                k: (v.records_in, v.loaded, v.quarantined, v.skipped, dict(v.skip_reasons))
                for k, v in self.records.items()
            },
            "rows_in": {k: v.rows_in for k, v in self.tables.items()},
            "notes": self.notes,
            "quarantine": str(self.quarantine.path),
            "quarantine_lines": self.quarantine.lines,
            "tmp": str(self.tmp),
        }

    def absorb(self, state: dict[str, Any]) -> None:
        """Take over a worker's spilled rows, index, counts and quarantine lines."""
        for k, v in state["spills"].items():
            self._spills[k] += [Path(p) for p in v]
        for k, v in state["index"].items():
            self._index_spills[k] += [Path(p) for p in v]
        for k, (n_in, loaded, quarantined, skipped, reasons) in state["records"].items():
            rc = self.records[k]
            rc.records_in += n_in
            rc.loaded += loaded
            rc.quarantined += quarantined
            rc.skipped += skipped
            rc.skip_reasons.update(reasons)
        for k, v in state["rows_in"].items():
            self.tables[k].rows_in += v
        self.notes += state["notes"]
        if state["quarantine_lines"]:
            with open(state["quarantine"], newline="", encoding="utf-8") as fh:
                reader = csv.reader(fh)
                next(reader, None)
                for row in reader:
                    self.quarantine._w.writerow(row)
                    self.quarantine.lines += 1
        self._worker_dirs.append(state["tmp"])

    # -- finishing ---------------------------------------------------------------------
    def finish(
        self,
        *,
        provenance: dict[str, Any],
        progress: Callable[[str], None] | None = None,
    ) -> IngestSummary:
        """Resolve, validate and commit; returns the reconciled summary."""
        import duckdb

        for name in list(self._buffers):
            self._flush(name)
        for kind in list(self._index):
            self._flush_index(kind)
        self._flush_evidence()
        self._flush_orders()
        con = duckdb.connect()
        con.execute(f"SET temp_directory='{self.tmp / 'duckdb'}'")
        con.execute("SET preserve_insertion_order=false")
        con.execute("SET TimeZone='UTC'")
        # Bounded memory whatever the input size: DuckDB spills to the temp directory.
        con.execute(f"SET memory_limit='{self.memory_limit}'")
        self._register_index(con)
        committed = False
        try:
            from pophealth.ingest.infer import infer_registrations

            # (screened first: a record merges only into a patient with a valid record)
            self._screen_patients(con)
            self._register_merges(con)
            self._register_withdrawals(con)
            inference = infer_registrations(con, self)
            if inference is not None:
                provenance = {**provenance, "registrations": inference}
            tables = {name: self._resolve(con, name, progress) for name in INGEST_TABLES}
            tables = {k: v for k, v in tables.items()}
            try:
                # Filled while the tables stream (the store reads it after the last
                # table): extract_date = the latest activity date loaded, so that
                # `pophealth run` defaults to the data's own "today".
                self._extra = {"last_ingest": self.run_id}
                self.store = self.store.write(
                    _Checked(tables, self),
                    provenance=provenance,
                    extra_metadata=self._extra,
                )
                committed = True
                self._keep_supplied(con)
                self._keep_index()
            except StrictRefusal:
                self.notes.append(
                    "--strict: records were quarantined, so nothing was committed; the store "
                    "is unchanged (see the quarantine report)"
                )
            except NothingLoaded:
                self.notes.append(
                    "nothing loaded: the store was left unchanged (see the quarantine report)"
                )
                self._keep_withdrawals()
            self._count_outcomes(con)
            meds = self.tables["medications"]
            if meds.withdrawn or meds.withdrawn_from_store - meds.replaced_in_store:
                self.notes.append(
                    f"{meds.withdrawn:,} prescription row(s) of this run not loaded and "
                    f"{meds.withdrawn_from_store - meds.replaced_in_store:,} loaded by earlier "
                    "runs removed: a cancelled or entered-in-error record of the same order "
                    "(EPS order item, identifier or id) and patient withdraws them"
                )
            merged = sum(c.merged for c in self.tables.values())
            if merged:
                self.notes.append(
                    f"{sum(r.skip_reasons[MERGED_REASON] for r in self.records.values()):,} "
                    f"Patient record(s) merged into another ({merged:,} row(s) not loaded): "
                    "the records naming them load under the record that replaces them"
                )
            if meds.same_supply:
                self.notes.append(
                    f"{meds.same_supply:,} medication row(s) not loaded: a prescription and "
                    "its dispense (the same patient) are one supply, counted once — as the "
                    "prescription, or as the dispense when an earlier run loaded it"
                )
            for name in RECORD_TABLES:
                c = self.tables[name]
                gone = c.withdrawn_from_store - c.replaced_in_store
                if name != "medications" and (c.withdrawn or gone):
                    self.notes.append(
                        f"{c.withdrawn:,} {name.replace('_', ' ')} row(s) of this run not "
                        f"loaded and {gone:,} loaded by earlier runs removed: a version of the "
                        "same record (identifier or id) and patient says it was entered in "
                        "error, refuted or did not happen"
                    )
                if c.replaced_in_store:
                    self.notes.append(
                        f"{c.replaced_in_store:,} {name.replace('_', ' ')} row(s) loaded by "
                        "earlier runs removed: this run brings a newer version of their record "
                        "(same identifier or id and patient), whose rows replace them"
                    )
            for name, n in self._no_provider.items():
                if n:
                    self.notes.append(
                        f"{n:,} {name.replace('_', ' ')} loaded without a provider: the "
                        "Encounter.serviceProvider Organization they refer to is in no input "
                        "file"
                        + (" nor in the store's index" if self.append else "")
                        + ", or has no ODS code"
                    )
            if self._inferred_rejected:
                self.notes.append(
                    f"{self._inferred_rejected:,} inferred registration row(s) were quarantined "
                    "(reasons in the quarantine report); like the rows inferred and loaded, "
                    "they are not source rows, so not in the balance"
                )
        finally:
            con.close()
            self.quarantine.close()
        qfile = self._keep_quarantine()
        summary = IngestSummary(
            kind=self.kind,
            store=self.out,
            run_id=self.run_id,
            tables=self.tables,
            records=dict(sorted(self.records.items())),
            files=self.files,
            quarantine_file=qfile,
            committed=committed,
            notes=self.notes,
        )
        summary.summary_file = self._keep_summary(summary)
        self.cleanup()
        return summary

    def _report_dir(self) -> Path:
        if Store.is_store(self.out):
            return self.out / "quarantine"
        return self.out.parent / f"{self.out.name}-quarantine"

    def _keep_summary(self, summary: IngestSummary) -> Path | None:
        """The reconciled counts as JSON beside the quarantine report (for audit)."""
        target_dir = self._report_dir()
        try:
            target_dir.mkdir(parents=True, exist_ok=True)
            target = target_dir / f"{self.run_id}.summary.json"
            target.write_text(json.dumps(summary.as_dict(), indent=2, default=str))
        except OSError:
            return None
        return target

    def cleanup(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
        for d in self._worker_dirs:
            shutil.rmtree(d, ignore_errors=True)

    @property
    def _index_dir(self) -> Path:
        return self.out / INDEX_DIR

    def _previous_index(self, kind: str) -> list[str]:
        """Reference-index files kept by earlier runs (used with ``--append``)."""
        if not self.append or not self._index_dir.is_dir():
            return []
        return sorted(str(p) for p in self._index_dir.glob(f"*/index-{kind}-*.parquet"))

    def _keep_index(self) -> None:
        """Keep this run's reference index beside the store (hashed keys only, no raw
        identifiers) so that a later ``--append`` batch can refer to these patients."""
        if not self.append:
            shutil.rmtree(self._index_dir, ignore_errors=True)
        target = self._index_dir / self.run_id
        target.mkdir(parents=True, exist_ok=True)
        for files in self._index_spills.values():
            for f in files:
                shutil.copy(f, target / f.name)

    def _keep_withdrawals(self) -> None:
        """An ``--append`` run that loaded nothing but withdrew orders (a batch of EPS
        cancellations whose prescriptions are not in the store yet) keeps its withdrawals
        in the reference index, so that those prescriptions, sent later, are not loaded."""
        files = self._index_spills.get("withdrawn", [])
        if not (self.append and files and self.store.snapshot is not None):
            return
        target = self._index_dir / self.run_id
        target.mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copy(f, target / f.name)
        self.notes.append(
            "its withdrawals (cancelled or entered-in-error medication records) were kept in "
            "the reference index: the prescriptions they name are not loaded by later runs"
        )

    def _keep_quarantine(self) -> Path | None:
        if self.quarantine.lines == 0:
            return None
        target_dir = self._report_dir()
        target_dir.mkdir(parents=True, exist_ok=True)
        target = target_dir / f"{self.run_id}.csv"
        shutil.move(str(self.quarantine.path), target)
        return target

    def _register_index(self, con) -> None:
        # the patients a row may refer to: those of this run's patients records and, when
        # appending, the store's (flat tables name patient_id directly; a FHIR reference by
        # NHS number names the patient without a Patient resource)
        con.execute("CREATE TABLE known_patients (patient_id VARCHAR)")
        files = [str(p) for p in self._spills.get("patients", [])]
        stored = self.store.snapshot is not None and self.store.row_counts().get("patients")
        if self.append and stored:
            files.append(str(self.store.table_path("patients")))
        if files:
            con.execute(
                "INSERT INTO known_patients SELECT DISTINCT CAST(patient_id AS VARCHAR) "
                f"FROM read_parquet({files!r}, union_by_name = true) "
                "WHERE patient_id IS NOT NULL"
            )
        con.execute("CREATE TABLE idx_patient (key VARCHAR, pid VARCHAR, n BIGINT)")
        con.execute("CREATE TABLE idx_medication (key VARCHAR, system VARCHAR, code VARCHAR)")
        con.execute("CREATE TABLE idx_organization (key VARCHAR, system VARCHAR, code VARCHAR)")
        files = [str(p) for p in self._index_spills.get("organization", [])]
        files += self._previous_index("organization")
        if files:
            con.execute(
                "INSERT INTO idx_organization SELECT key, min(system), min(code) "
                f"FROM read_parquet({files!r}) GROUP BY key"
            )
        files = [str(p) for p in self._index_spills.get("patient", [])]
        files += self._previous_index("patient")
        if files:
            con.execute(
                "INSERT INTO idx_patient SELECT key, min(pid), count(DISTINCT pid) "
                f"FROM read_parquet({files!r}) GROUP BY key"
            )
        files = [str(p) for p in self._index_spills.get("medication", [])]
        files += self._previous_index("medication")
        if files:
            con.execute(
                "INSERT INTO idx_medication SELECT key, min(system), min(code) "
                f"FROM read_parquet({files!r}) GROUP BY key"
            )
        # every Organization read (with or without an ODS code): what an encounter's
        # serviceProvider in another file resolves to, for inferred registrations
        con.execute(
            "CREATE TABLE idx_provider (key VARCHAR, practice_id VARCHAR, name VARCHAR, "
            "is_gp VARCHAR)"
        )
        files = [str(p) for p in self._index_spills.get("provider", [])]
        files += self._previous_index("provider")
        if files:
            con.execute(
                "INSERT INTO idx_provider SELECT key, min(practice_id), min(name), max(is_gp) "
                f"FROM read_parquet({files!r}) GROUP BY key"
            )

    def _register_merges(self, con) -> None:
        """``merged`` (``old_pid`` → ``new_pid``): the patients whose records were merged into
        another's (FHIR ``Patient.link``, :meth:`merge`) in this run or, appending, an earlier
        one, each followed to the last record of its chain, kept only when that patient is
        one of the run's or the store's; ``merged_records``: this run's Patient records of
        such patients, whose own rows are not loaded (counted as ``merged``). A reference to
        an old record that is not in the load resolves to the new one. Rows naming an old
        patient load under the new one (:meth:`_pid`)."""
        con.execute("CREATE TABLE merged (old_pid VARCHAR, new_pid VARCHAR)")
        con.execute("CREATE TABLE merged_records (rkey BIGINT)")
        files = [str(p) for p in self._spills.get(MERGES, [])]
        previous = self._previous_index("merged")
        if not files and not previous:
            return
        con.execute(
            "CREATE TABLE merge_links (rkey BIGINT, old_pid VARCHAR, old_key VARCHAR, "
            "new_pid VARCHAR)"
        )
        if files:
            con.execute(
                f"""
                INSERT INTO merge_links
                SELECT m.rkey, coalesce(m.old_pid, o.pid), m.old_key, coalesce(m.new_pid, n.pid)
                FROM read_parquet({files!r}) m
                LEFT JOIN idx_patient o ON m.old_key = o.key AND o.n = 1
                LEFT JOIN idx_patient n ON m.new_key = n.key AND n.n = 1
                """
            )
        if previous:
            con.execute(
                "INSERT INTO merge_links SELECT NULL, key, NULL, pid "
                f"FROM read_parquet({previous!r})"
            )
        # the patient used in the old one's place: one with a valid patients record, of this
        # run or (appending) the store
        con.execute("CREATE TABLE merge_targets (patient_id VARCHAR)")
        spilled = [str(p) for p in self._spills.get("patients", [])]
        if spilled:
            con.execute(
                "INSERT INTO merge_targets SELECT DISTINCT patient_id "
                f"FROM read_parquet({spilled!r}) WHERE patient_id IS NOT NULL "
                "AND _rkey NOT IN (SELECT rkey FROM refused_patients)"
            )
        if self.append and self.store.snapshot and self.store.row_counts().get("patients"):
            path = str(self.store.table_path("patients")).replace("'", "''")
            con.execute(
                "INSERT INTO merge_targets SELECT CAST(patient_id AS VARCHAR) "
                f"FROM read_parquet('{path}')"
            )
        # one new patient per old one: an old patient said to be replaced by two different
        # ones is merged into neither
        con.execute(
            """
            INSERT INTO merged
            SELECT old_pid, min(new_pid) FROM merge_links
            WHERE old_pid IS NOT NULL AND new_pid IS NOT NULL AND old_pid <> new_pid
            GROUP BY old_pid HAVING count(DISTINCT new_pid) = 1
            """
        )
        ambiguous = con.execute(
            "SELECT count(DISTINCT old_pid) FROM merge_links WHERE old_pid IS NOT NULL "
            "AND new_pid IS NOT NULL AND old_pid <> new_pid AND old_pid NOT IN "
            "(SELECT old_pid FROM merged)"
        ).fetchone()[0]
        # a chain (A replaced by B, B by C) ends at its last record; a loop is merged nowhere
        for _ in range(32):
            changed = con.execute(
                "UPDATE merged SET new_pid = m.new_pid FROM merged m "
                "WHERE merged.new_pid = m.old_pid AND merged.old_pid <> m.old_pid "
                "AND m.new_pid <> merged.old_pid"
            ).fetchone()[0]
            if not changed:
                break
        loops = con.execute(
            "DELETE FROM merged WHERE new_pid IN (SELECT old_pid FROM merged)"
        ).fetchone()[0]
        con.execute(
            "DELETE FROM merged WHERE new_pid NOT IN (SELECT patient_id FROM merge_targets)"
        )
        absent = (
            con.execute(
                "SELECT count(DISTINCT old_pid) FROM merge_links WHERE old_pid IS NOT NULL "
                "AND (new_pid IS NULL OR new_pid <> old_pid) "
                "AND old_pid NOT IN (SELECT old_pid FROM merged)"
            ).fetchone()[0]
            - ambiguous
            - loops
        )
        if ambiguous or loops:
            self.notes.append(
                f"{ambiguous + loops:,} patient record(s) said to be merged into two different "
                "records, or into one another, were not merged: each loads as its own patient"
            )
        if absent:
            self.notes.append(
                f"{absent:,} patient record(s) said to be replaced by another record "
                "(Patient.link) were loaded as they are: the record that replaces them is in "
                "no input file"
                + (" nor in the store" if self.append else "")
                + " with a valid patient record"
            )
        # a reference to an old record that is not in the load names the new patient (the
        # last of its chain)
        con.execute(
            """
            INSERT INTO idx_patient
            SELECT l.old_key, min(coalesce(m.new_pid, l.new_pid)), 1 FROM merge_links l
            LEFT JOIN merged m ON m.old_pid = l.new_pid
            WHERE l.old_pid IS NULL AND l.old_key IS NOT NULL AND l.new_pid IS NOT NULL
              AND l.old_key NOT IN (SELECT key FROM idx_patient)
              AND coalesce(m.new_pid, l.new_pid) IN (SELECT patient_id FROM merge_targets)
            GROUP BY l.old_key HAVING count(DISTINCT coalesce(m.new_pid, l.new_pid)) = 1
            """
        )
        self._merging = bool(con.execute("SELECT count(*) FROM merged").fetchone()[0])
        if not self._merging:
            return
        # The old patient's own Patient records: their rows (patients, addresses,
        # registrations, practices) are not loaded
        parts = []
        for name in ("patients", "addresses", "registrations"):
            spilled = [str(p) for p in self._spills.get(name, [])]
            # (a patients row of the old patient, whatever record it came with: a
            # contained copy would otherwise clash with the new patient's own)
            of_patient = "" if name == "patients" else "s._rtype = 'Patient' AND "
            if spilled:
                parts.append(
                    f"SELECT s._rkey FROM read_parquet({spilled!r}) s "
                    "LEFT JOIN idx_patient p ON s._pref = p.key AND p.n = 1 "
                    f"WHERE {of_patient}coalesce(s.patient_id, p.pid) IN "
                    "(SELECT old_pid FROM merged)"
                )
        parts.append(
            "SELECT rkey AS _rkey FROM merge_links WHERE rkey IS NOT NULL "
            "AND old_pid IN (SELECT old_pid FROM merged)"
        )
        con.execute(
            "INSERT INTO merged_records SELECT DISTINCT * FROM ("
            + " UNION ALL ".join(parts)
            # (a record quarantined at screening stays quarantined: it is not merged)
            + ") WHERE _rkey NOT IN (SELECT rkey FROM refused_records) "
            "AND _rkey NOT IN (SELECT rkey FROM refused_patients)"
        )
        for name in ("patients", "addresses", "registrations", "practices"):
            spilled = [str(p) for p in self._spills.get(name, [])]
            if not spilled:
                continue
            gone = con.execute(
                f"SELECT _rkey, _rtype FROM read_parquet({spilled!r}) "
                "WHERE _rkey IN (SELECT rkey FROM merged_records)"
            ).to_arrow_table()
            if gone.num_rows:
                self.tables[name].merged += gone.num_rows
                path = self._path("outcome")
                pq.write_table(
                    pa.table(
                        {
                            "rkey": gone["_rkey"].cast(pa.int64()),
                            "rtype": gone["_rtype"].cast(pa.string()),
                            "outcome": pa.array(["merged"] * gone.num_rows, pa.string()),
                        }
                    ),
                    path,
                )
                self._outcome_spills.append(path)
        path = self._path("index-merged")
        con.execute(
            f"COPY (SELECT old_pid AS key, new_pid AS pid FROM merged) TO '{path}' (FORMAT PARQUET)"
        )
        self._index_spills["merged"].append(path)
        con.execute(
            "CREATE MACRO merged_pid(x) AS "
            "coalesce((SELECT m.new_pid FROM merged m WHERE m.old_pid = x), x)"
        )

    def _pid(self, expr: str) -> str:
        """SQL for the patient ``expr`` names, after merges (see :meth:`_register_merges`)."""
        return f"merged_pid({expr})" if self._merging else expr

    def _register_withdrawals(self, con) -> None:
        """Tables of what this run (and, appending, earlier runs) withdrew or replaced:
        ``orders`` (the key of each source record with an identity), ``withdrawn`` (key and
        patient of each cancelled or entered-in-error record, patients resolved), ``resent``
        (key and patient of this run's records) and ``withdrawn_rows`` (hashes of rows earlier
        runs loaded whose records are all withdrawn, or sent again in this run: ``replaced``
        when any was sent again rather than withdrawn). This run's withdrawals are kept in
        the reference index for later ``--append`` runs."""
        con.execute("CREATE TABLE orders (rkey BIGINT, okey VARCHAR)")
        con.execute("CREATE TABLE withdrawn (okey VARCHAR, patient_id VARCHAR)")
        con.execute("CREATE TABLE resent (okey VARCHAR, patient_id VARCHAR)")
        con.execute("CREATE TABLE withdrawn_rows (rowhash VARCHAR, replaced BOOLEAN)")
        files = [str(p) for p in self._spills.get(ORDERS, [])]
        if files:
            con.execute(f"INSERT INTO orders SELECT rkey, okey FROM read_parquet({files!r})")
        files = [str(p) for p in self._spills.get(WITHDRAWALS, [])]
        if files:
            con.execute(
                "INSERT INTO withdrawn SELECT DISTINCT w.okey, "
                f"{self._pid('coalesce(w.patient_id, p.pid)')} "
                f"FROM read_parquet({files!r}) w "
                "LEFT JOIN idx_patient p ON w._pref = p.key AND p.n = 1 "
                "WHERE coalesce(w.patient_id, p.pid) IS NOT NULL"
            )
            if con.execute("SELECT count(*) FROM withdrawn").fetchone()[0]:
                path = self._path("index-withdrawn")
                con.execute(
                    f"COPY (SELECT okey AS key, patient_id AS pid FROM withdrawn) TO '{path}' "
                    "(FORMAT PARQUET)"
                )
                self._index_spills["withdrawn"].append(path)
        previous = self._previous_index("withdrawn")
        if previous:
            con.execute(
                "INSERT INTO withdrawn SELECT DISTINCT key, pid "
                f"FROM read_parquet({previous!r}) EXCEPT SELECT okey, patient_id FROM withdrawn"
            )
        self._register_prescribed(con)
        issued = self._previous_index("issued")
        if issued and con.execute("SELECT count(*) FROM orders").fetchone()[0]:
            # the records of this run that earlier runs may have loaded a version of
            for name in RECORD_TABLES:
                files = [str(p) for p in self._spills.get(name, [])]
                if files:
                    con.execute(
                        f"""
                        INSERT INTO resent
                        SELECT DISTINCT o.okey, {self._pid("coalesce(s.patient_id, p.pid)")}
                        FROM read_parquet({files!r}) s JOIN orders o ON s._rkey = o.rkey
                        LEFT JOIN idx_patient p ON s._pref = p.key AND p.n = 1
                        WHERE coalesce(s.patient_id, p.pid) IS NOT NULL
                        """
                    )
        if (
            issued
            and con.execute(
                "SELECT (SELECT count(*) FROM withdrawn) + (SELECT count(*) FROM resent)"
            ).fetchone()[0]
        ):
            # What each record loaded is what the latest run that sent it loaded for it
            # (issued files before run_seq was kept count as the oldest). A stored row is
            # removed only when every record it was loaded for is withdrawn or sent again
            # (two identical rows of different records are one row in the store); a row the
            # new version loads again stays (see _resolve_rows).
            seq = (
                "coalesce(TRY_CAST(run_seq AS BIGINT), 0)"
                if any("run_seq" in pq.read_schema(f).names for f in issued)
                else "0"
            )
            con.execute(
                f"""
                INSERT INTO withdrawn_rows
                WITH i AS (
                    SELECT key, pid, rowhash, {seq} AS seq
                    FROM read_parquet({issued!r}, union_by_name = true)
                ),
                live AS (
                    SELECT key, pid, rowhash FROM i
                    QUALIFY seq = max(seq) OVER (PARTITION BY key, pid)
                )
                SELECT l.rowhash, bool_or(w.okey IS NULL) AS replaced FROM live l
                LEFT JOIN (SELECT DISTINCT * FROM withdrawn) w
                       ON w.okey = l.key AND w.patient_id = l.pid
                LEFT JOIN (SELECT DISTINCT * FROM resent) r
                       ON r.okey = l.key AND r.patient_id = l.pid
                GROUP BY l.rowhash
                HAVING bool_and(w.okey IS NOT NULL OR r.okey IS NOT NULL)
                """
            )
        self._withdrawing = bool(
            con.execute(
                "SELECT (SELECT count(*) FROM orders) + (SELECT count(*) FROM withdrawn_rows)"
                " + (SELECT count(*) FROM dispensed)"
            ).fetchone()[0]
        )

    def _register_prescribed(self, con) -> None:
        """``dispensed``: the records (``rkey``, ``patient_id``) not loaded because a
        prescription and its dispense are one supply, counted once (see :meth:`Run.link`): a
        dispense linked to a prescription of the same patient that this run or, appending,
        an earlier run loaded; a prescription whose dispense an earlier run loaded. This
        run's prescriptions are kept in the reference index for later ``--append`` runs
        (its dispenses, once loaded: :meth:`_keep_supplied`)."""
        resolved = (
            f"SELECT rkey, okey, {self._pid('coalesce(w.patient_id, p.pid)')} AS patient_id "
            "FROM read_parquet({files!r}) w "
            "LEFT JOIN idx_patient p ON w._pref = p.key AND p.n = 1 "
            "WHERE coalesce(w.patient_id, p.pid) IS NOT NULL"
        )
        for name, spill in (("links", LINKS), ("prescribed", PRESCRIBED)):
            con.execute(f"CREATE TABLE {name} (rkey BIGINT, okey VARCHAR, patient_id VARCHAR)")
            files = [str(p) for p in self._spills.get(spill, [])]
            if files:
                con.execute(f"INSERT INTO {name} " + resolved.format(files=files))
        con.execute("CREATE TABLE dispensed (rkey BIGINT, patient_id VARCHAR)")
        prescribed = con.execute("SELECT count(*) FROM prescribed").fetchone()[0]
        if prescribed:
            path = self._path("index-prescribed")
            con.execute(
                "COPY (SELECT DISTINCT okey AS key, patient_id AS pid FROM prescribed) "
                f"TO '{path}' (FORMAT PARQUET)"
            )
            self._index_spills["prescribed"].append(path)
        if con.execute("SELECT count(*) FROM links").fetchone()[0]:
            earlier = self._previous_index("prescribed")
            earlier = (
                f" UNION ALL SELECT key, pid FROM read_parquet({earlier!r})" if earlier else ""
            )
            con.execute(
                "INSERT INTO dispensed SELECT DISTINCT l.rkey, l.patient_id FROM links l "
                "JOIN (SELECT okey, patient_id FROM prescribed" + earlier + ") p "
                "ON p.okey = l.okey AND p.patient_id = l.patient_id"
            )
        supplied = self._previous_index("supplied") if prescribed else []
        if supplied:
            con.execute(
                "INSERT INTO dispensed SELECT DISTINCT p.rkey, p.patient_id FROM prescribed p "
                f"JOIN read_parquet({supplied!r}) s ON s.key = p.okey AND s.pid = p.patient_id"
            )

    def _keep_supplied(self, con) -> None:
        """The links of this run's dispenses that loaded (:meth:`Run.link`), kept in the
        reference index: a later ``--append`` run does not load their prescriptions."""
        files = [str(p) for p in self._outcome_spills]
        if not files or not con.execute("SELECT count(*) FROM links").fetchone()[0]:
            return
        path = self._path("index-supplied")
        con.execute(
            f"""
            COPY (
                SELECT DISTINCT l.okey AS key, l.patient_id AS pid FROM links l
                WHERE l.rkey IN (
                    SELECT rkey FROM read_parquet({files!r})
                    WHERE rtype = 'MedicationDispense' AND outcome = 'loaded'
                )
            ) TO '{path}' (FORMAT PARQUET)
            """
        )
        self._index_spills["supplied"].append(path)

    def _screen_patients(self, con) -> None:
        """Validate every patients record of the run before one is chosen per patient.

        An invalid record is quarantined here, so it is never the one kept (a valid record
        of the same patient loads instead, and with ``--append`` the store's record stays).
        A patient none of whose records is valid (and who is not in the store when
        appending) is *lost*: ``lost_patients`` gives the reason their other rows are
        quarantined with (rows naming a patient in no patients row would be invisible to
        every query)."""
        con.execute("CREATE TABLE refused_patients (rkey BIGINT, patient_id VARCHAR, why VARCHAR)")
        # source records whose patients row was quarantined (invalid, or a conflict): the
        # other rows of the same record (a FHIR Patient's address, registration, practice)
        # are quarantined with them
        con.execute("CREATE TABLE refused_records (rkey BIGINT, why VARCHAR)")
        con.execute("CREATE TABLE lost_patients (patient_id VARCHAR, why VARCHAR)")
        refused_early = [str(p) for p in self._spills.get(REFUSED_PATIENTS, [])]
        if refused_early:
            # quarantined while mapping (a FHIR Patient with an invalid NHS number)
            con.execute(
                "INSERT INTO refused_patients SELECT rkey, patient_id, why "
                f"FROM read_parquet({refused_early!r})"
            )
        files = [str(p) for p in self._spills.get("patients", [])]
        if not files and not refused_early:
            return
        cols = table("patients").column_names
        hidden = [instant_column(c) for c in _instant_columns("patients")]
        sel = ", ".join(f'"{c}"' for c in (*cols, *hidden, *META))
        reader = (
            con.execute(f"SELECT {sel} FROM read_parquet({files!r})").to_arrow_reader(
                self.batch_rows
            )
            if files
            else ()
        )
        counts = self.tables["patients"]
        for batch in reader:
            df = batch.to_pandas()
            res = validate(
                "patients",
                df[cols],
                source="patients",
                row_numbers=np.arange(len(df)),
                primary_key=False,
                instants=_instants("patients", df),
            )
            if res.quarantine.empty:
                continue
            for rec in res.quarantine.itertuples(index=False):
                self._q_row("patients", df.iloc[int(rec.row)], rec.field, rec.value, rec.reason)
            # the first problem of each refused record says why, where it was read
            first = res.quarantine.drop_duplicates("row")
            bad = first["row"].to_numpy(np.int64)
            problem = (first["field"] + " " + first["reason"]).to_numpy(object)
            src = df["_src"].iloc[bad].astype(str).to_numpy(object)
            loc = df["_loc"].iloc[bad].to_numpy(object)
            where = np.where(pd.isna(loc), src, src + ", " + loc.astype(str))
            rtype = df["_rtype"].iloc[bad].astype(str).to_numpy(object)
            refused = pa.table(
                {
                    "rkey": pa.array(df["_rkey"].to_numpy(np.int64)[bad]),
                    "patient_id": pa.array(df["patient_id"].iloc[bad].tolist(), pa.string()),
                    "why": pa.array((where + ": " + problem).tolist(), pa.string()),
                }
            )
            taken = "the " + rtype + " record this row came with was quarantined: " + problem
            con.register("_refused", refused)
            con.execute("INSERT INTO refused_patients SELECT * FROM _refused")
            con.unregister("_refused")
            self._refuse_records(con, refused["rkey"], taken.tolist())
            counts.quarantined += len(bad)
            path = self._path("outcome")
            pq.write_table(
                pa.table(
                    {
                        "rkey": refused["rkey"],
                        "rtype": pa.array(rtype.tolist(), pa.string()),
                        "outcome": pa.array(["quarantined"] * len(bad), pa.string()),
                    }
                ),
                path,
            )
            self._outcome_spills.append(path)
        stored = ""
        if self.append and self.store.snapshot and self.store.row_counts().get("patients"):
            path = str(self.store.table_path("patients")).replace("'", "''")
            stored = (
                "AND patient_id NOT IN (SELECT CAST(patient_id AS VARCHAR) "
                f"FROM read_parquet('{path}'))"
            )
        loaded = (
            f"""AND patient_id NOT IN (
                  SELECT patient_id FROM read_parquet({files!r})
                  WHERE patient_id IS NOT NULL
                    AND _rkey NOT IN (SELECT rkey FROM refused_patients))"""
            if files
            else ""
        )
        con.execute(
            f"""
            INSERT INTO lost_patients
            SELECT patient_id, 'patient_id ' || patient_id || ' is in no patients row: ' ||
                   CASE WHEN count(*) = 1 THEN 'its patients record was quarantined ('
                        ELSE 'its ' || count(*) || ' patients records were quarantined (first: '
                   END || arg_min(why, rkey) || ')'
            FROM refused_patients
            WHERE patient_id IS NOT NULL {loaded} {stored}
            GROUP BY patient_id
            """
        )

    def _resolve(self, con, name: str, progress) -> Iterator[pa.Table]:
        """Generator of validated Arrow chunks for table ``name`` (run inside Store.write).

        ``patients`` must be resolved first: every other table's rows are checked against
        the patients records quarantined (see :meth:`_screen_patients`; conflicts are
        known once patients is resolved)."""
        if name != "patients" and not self._patients_resolved:
            raise RuntimeError(f"{name} resolved before patients")
        yield from self._resolve_rows(con, name, progress)
        if name == "patients":
            if self._conflicts:
                rkeys, why = zip(*self._conflicts, strict=True)
                self._refuse_records(con, pa.array(rkeys, pa.int64()), list(why))
            self._patients_resolved = True

    @staticmethod
    def _refuse_records(con, rkeys: pa.Array, why: list[str]) -> None:
        con.register("_records", pa.table({"rkey": rkeys, "why": pa.array(why, pa.string())}))
        con.execute("INSERT INTO refused_records SELECT * FROM _records")
        con.unregister("_records")

    def _resolve_rows(self, con, name: str, progress) -> Iterator[pa.Table]:
        spec = table(name)
        cols = spec.column_names
        files = self._spills.get(name, [])
        parts = []
        q = lambda c: f'"{c}"'  # noqa: E731
        if files:
            sel = ", ".join(q(c) for c in (*cols, *map(instant_column, _instant_columns(name))))
            # patients records found invalid by _screen_patients are never candidates
            refused = (
                " WHERE _rkey NOT IN (SELECT rkey FROM refused_patients)"
                if name == "patients"
                else ""
            )
            if self._merging and name in ("patients", "addresses", "registrations", "practices"):
                # the rows of a Patient record merged into another (counted as merged)
                refused += (" AND" if refused else " WHERE") + (
                    " _rkey NOT IN (SELECT rkey FROM merged_records)"
                )
            parts.append(
                f"SELECT {sel}, _pref, _mref, _src, _loc, _rid, _rtype, _rkey, 0 AS _old "
                f"FROM read_parquet({[str(p) for p in files]!r}){refused}"
            )
        old_path = None
        # practices are reference data (pophealth reference builds them too): always merged
        keep_old = self.append or name == "practices"
        if keep_old and self.store.snapshot is not None:
            old_path = self.store.table_path(name)
            if self.store.row_counts().get(name, 0) > 0:
                # a store written before a nullable column was added has no such column
                present = set(pq.read_schema(old_path).names)
                sel = ", ".join(
                    f"CAST(NULL AS VARCHAR) AS {q(c)}"
                    if c not in present
                    else q(c)
                    if c_.type == "list<string>"
                    else f"CAST({q(c)} AS VARCHAR) AS {q(c)}"
                    for c, c_ in zip(cols, spec.columns, strict=True)
                )
                where = ""
                if name == "registrations" and "source" in present:
                    # recorded registrations supersede ones inferred by an earlier run
                    where = (
                        " WHERE NOT (source = 'inferred' AND patient_id IN "
                        "(SELECT patient_id FROM reg_recorded_new))"
                    )
                parts.append(
                    f"SELECT {sel}, NULL AS _pref, NULL AS _mref, 'existing store' AS _src, "
                    f"NULL AS _loc, NULL AS _rid, NULL AS _rtype, CAST(-1 AS BIGINT) AS _rkey, "
                    f"1 AS _old FROM read_parquet('{old_path}'){where}"
                )
        if name in ("registrations", "practices"):
            inferred = "inferred_registrations" if name == "registrations" else "inferred_practices"
            if con.execute(f"SELECT count(*) FROM {inferred}").fetchone()[0]:
                sel = ", ".join(
                    q(c) if c in INFERRED_COLUMNS[name] else f"CAST(NULL AS VARCHAR) AS {q(c)}"
                    for c in cols
                )
                parts.append(
                    f"SELECT {sel}, NULL AS _pref, NULL AS _mref, 'inferred' AS _src, "
                    f"NULL AS _loc, NULL AS _rid, NULL AS _rtype, CAST(-2 AS BIGINT) AS _rkey, "
                    f"2 AS _old FROM {inferred}"
                )
        if not parts:
            return
        union = " UNION ALL BY NAME ".join(f"({p})" for p in parts)
        pid = "coalesce(s.patient_id, p.pid)" if "patient_id" in cols else None
        if pid and name != "patients" and self._merging:
            # rows naming a patient merged into another load under that one (the store's
            # rows stay as they were)
            pid = f"CASE WHEN s._old = 1 THEN {pid} ELSE {self._pid(pid)} END"
        extra_join = ""
        replace = []
        if pid:
            replace.append(f"{pid} AS patient_id")
        if name == "registrations":
            extra_join = " LEFT JOIN idx_organization m ON s._mref = m.key"
            replace += [
                "coalesce(s.practice_id, m.system) AS practice_id",
                "coalesce(s.source, 'recorded') AS source",
            ]
        if name in ("admissions", "emergency_attendances"):
            # an Encounter.serviceProvider Organization read from another file of the run
            # (or, appending, of an earlier run): its ODS code
            extra_join = " LEFT JOIN idx_organization m ON s._mref = m.key"
            replace.append("coalesce(s.provider, m.system) AS provider")
        withdrawals = ""
        if name == "medications":
            extra_join = " LEFT JOIN idx_medication m ON s._mref = m.key"
            replace += [
                "coalesce(s.system, m.system) AS system",
                "coalesce(s.code, m.code) AS code",
            ]
        if name in RECORD_TABLES and self._withdrawing:
            # the order or record each row was loaded for, and whether a cancelled or
            # entered-in-error record of the same key and patient withdraws it
            extra_join += (
                " LEFT JOIN orders o ON s._rkey = o.rkey"
                f" LEFT JOIN withdrawn w ON w.okey = o.okey AND w.patient_id = {pid}"
            )
            withdrawals = ", o.okey AS _okey, (w.okey IS NOT NULL) AS _wd"
            if name == "medications":
                # a prescription and its dispense: one supply, counted once
                extra_join += f" LEFT JOIN dispensed d ON d.rkey = s._rkey AND d.patient_id = {pid}"
                withdrawals = (
                    ", o.okey AS _okey, (w.okey IS NOT NULL OR d.rkey IS NOT NULL) AS _wd"
                    ", (d.rkey IS NOT NULL) AS _disp"
                )
        rep = f" REPLACE ({', '.join(replace)})" if replace else ""
        if name == "patients":
            order = (
                "_old ASC, (ethnicity_16 IS NOT NULL AND ethnicity_16 <> 'Z') DESC, "
                "(date_of_death IS NOT NULL) DESC, _rkey ASC"
            )
            part = "patient_id"
        elif name == "practices":
            filled = " + ".join(
                f"({c} IS NOT NULL)::INT"
                for c in ("name", "pcn_id", "pcn_name", "sub_icb", "icb", "lsoa_code")
            )
            order = f"{filled} DESC, _old ASC, _rkey"
            part = "practice_id"
        else:
            order = "_old DESC, _rkey ASC"
            part = ", ".join(_norm_expr(c.name, c.type) for c in spec.columns)
        # the same values as one text for a row's hash (list columns as their text)
        hashed = ", ".join(
            f'CAST("{c.name}" AS VARCHAR)'
            if c.type == "list<string>"
            else _norm_expr(c.name, c.type)
            for c in spec.columns
        )
        ok_expr = "(_pn IS NULL OR _pn = 1) AND patient_id IS NOT NULL" if pid else "true"
        if pid and name != "patients":
            # a row of a patient no patients row names would be invisible to every query:
            # quarantined as a dangling reference (rows already in the store are kept)
            ok_expr += " AND (_old <> 0 OR patient_id IN (SELECT patient_id FROM known_patients))"
        fate = "NULL"
        if name != "patients":
            # A row that came with a patients record that was quarantined (invalid, or a
            # conflict; the same source record: a FHIR Patient's address, registration and
            # practice, an OMOP person's address), or of a patient none of whose patients
            # records loaded, is quarantined with the reason (rows already in the store
            # are kept).
            fate = "CASE WHEN s._old <> 1 THEN coalesce(c.why, {}) END".format(
                "l.why" if pid else "NULL"
            )
            extra_join += " LEFT JOIN refused_records c ON s._rkey = c.rkey"
            if pid:
                extra_join += f" LEFT JOIN lost_patients l ON l.patient_id = {pid}"
            ok_expr += " AND _fate IS NULL"
        inner = f"SELECT *, {ok_expr} AS patient_ok FROM r"
        if withdrawals:
            # (whether this run loads a stored row again matters only when stored rows may
            # be removed: the window sorts every row)
            removing = con.execute("SELECT count(*) FROM withdrawn_rows").fetchone()[0]
            again = (
                "coalesce(bool_or(_old = 0 AND patient_ok AND NOT coalesce(_wd, false)) "
                "OVER (PARTITION BY _rowhash), false)"
                if removing
                else "false"
            )
            # A withdrawn row is its own partition (it neither hides nor is hidden by an
            # identical row of another record); a stored row is withdrawn when its hash is
            # one an earlier run loaded for records now all withdrawn or sent again, unless
            # this run loads the same row again (a new version that did not change it).
            inner = f"""
                SELECT x.*, CASE WHEN x._old = 1 THEN wr.rowhash IS NOT NULL AND NOT x._again
                                 ELSE coalesce(x._wd, false) END AS _withdrawn,
                       coalesce(wr.replaced, false) AS _replaced
                FROM (
                    SELECT *, {again} AS _again
                    FROM (SELECT *, {ok_expr} AS patient_ok,
                                 md5(CAST(list_value({hashed}) AS VARCHAR)) AS _rowhash FROM r)
                ) x
                LEFT JOIN withdrawn_rows wr ON x._old = 1 AND wr.rowhash = x._rowhash
            """
            part = f"_withdrawn, {part}"
        sql = f"""
            WITH s AS ({union}),
            r AS (
                SELECT s.*{rep},
                       {"p.n" if pid else "NULL"} AS _pn, {fate} AS _fate{withdrawals}
                FROM s {"LEFT JOIN idx_patient p ON s._pref = p.key" if pid else ""}{extra_join}
            )
            SELECT *, CASE WHEN patient_ok THEN row_number() OVER (
                        PARTITION BY patient_ok, {part} ORDER BY {order}) ELSE 1 END AS _dup
            FROM ({inner})
        """
        if name == "patients":
            # Two source records of one patient that disagree (a different date of birth,
            # sex, date of death or ethnicity; a blank, 'unknown' or 'Z' disagrees with
            # nothing): the later is quarantined as a conflict, not counted as a duplicate.
            w = f"OVER (PARTITION BY patient_ok, patient_id ORDER BY {order})"
            diffs = []
            for c, expr in PATIENT_CONFLICT_COLUMNS.items():
                diffs.append(
                    f"CASE WHEN {expr} IS NOT NULL AND first_value({expr}) {w} IS NOT NULL "
                    f"AND {expr} <> first_value({expr}) {w} THEN '{c}' END"
                )
            sql = f"""
                SELECT *, concat_ws(', ', {", ".join(diffs)}) AS _conflict,
                       first_value(_src) {w} AS _k_src, first_value(_loc) {w} AS _k_loc,
                       first_value(_old) {w} AS _k_old
                FROM ({sql})
            """
        if name not in ("patients", "practices"):
            # The same resource id read twice with different content: the first is kept,
            # later ones are quarantined (exact copies were already counted as duplicates).
            sql = f"""
                SELECT *, min(CASE WHEN _dup = 1 AND patient_ok THEN _rkey END) OVER (
                    PARTITION BY _rtype, _rid) AS _first
                FROM ({sql})
            """
        if progress:
            progress(f"resolving and validating {name}")
        reader = con.execute(sql).to_arrow_reader(self.batch_rows)
        # A resource id read again with different content is quarantined when the first
        # record read with that id loaded; when the first did not (it failed validation),
        # the next one read is tried in its place, round by round (rare: held aside here).
        deferred: list[pd.DataFrame] = []
        kept: set[tuple[Any, Any]] = set()
        for batch in reader:
            df = batch.to_pandas()
            if not df.empty:
                yield from self._settle(name, df, spec, cols, deferred, kept)
        while deferred:
            held = pd.concat(deferred, ignore_index=True)
            deferred = []
            ids = zip(held["_rtype"], held["_rid"], strict=True)
            taken = np.array([k in kept for k in ids], dtype=bool)
            if taken.any():
                self._repeated_ids(name, held[taken].reset_index(drop=True))
            retry = held[~taken].reset_index(drop=True)
            if retry.empty:
                break
            retry["_first"] = retry.groupby(["_rtype", "_rid"])["_rkey"].transform("min")
            yield from self._settle(name, retry, spec, cols, deferred, kept)

    def _repeated_ids(self, name: str, df: pd.DataFrame) -> None:
        """Quarantine rows whose resource id was read before with different content, the
        first record with that id having loaded."""
        for i in range(len(df)):
            r = df.iloc[i]
            self._q_row(
                name,
                r,
                "id",
                f"{r['_rtype']}/{r['_rid']}",
                "duplicate resource id with different content: the first record read "
                "with this id that loaded was kept",
            )
        self._account(name, df, np.full(len(df), "quarantined", dtype=object))

    def _settle(
        self,
        name: str,
        df: pd.DataFrame,
        spec: Any,
        cols: list[str],
        deferred: list[pd.DataFrame],
        kept: set[tuple[Any, Any]],
    ) -> Iterator[pa.Table]:
        """Decide every row of one batch of ``name``: loaded, duplicate, quarantined, or
        held aside in ``deferred`` when its resource id was read before with different
        content. Yields the valid rows; adds to ``kept`` the ids whose first record
        loaded."""
        outcome = np.full(len(df), "loaded", dtype=object)
        old = df["_old"].to_numpy() == 1
        dup = df["_dup"].to_numpy() > 1
        outcome[dup] = "duplicate"
        if "_conflict" in df.columns:
            clash = (
                dup
                & ~old
                & (df["_k_old"].to_numpy() == 0)
                & (df["_conflict"].fillna("").to_numpy(object) != "")
            )
            for i in np.flatnonzero(clash):
                r = df.iloc[i]
                kept = f"{r['_k_src']}" + (f", {r['_k_loc']}" if not _isna(r["_k_loc"]) else "")
                reason = (
                    f"conflicting record for patient_id {r['patient_id']}: "
                    f"{r['_conflict']} differ(s) from the record kept ({kept})"
                )
                self._q_row(name, r, r["_conflict"], r["patient_id"], reason)
                self._conflicts.append(
                    (
                        int(r["_rkey"]),
                        f"the {r['_rtype']} record this row came with was quarantined as "
                        f"a conflict: {reason}",
                    )
                )
            outcome[clash] = "quarantined"
        bad_ref = ~df["patient_ok"].to_numpy(bool)
        if "_first" in df.columns:
            again = (
                df["_rid"].notna().to_numpy()
                & ~old
                & ~dup
                & ~bad_ref
                & df["_first"].notna().to_numpy()
                & (df["_rkey"].to_numpy() != df["_first"].fillna(-2).to_numpy())
            )
            if again.any():
                deferred.append(df[again].copy())
            outcome[again] = "deferred"
        for i in np.flatnonzero(bad_ref & ~dup):
            r = df.iloc[i]
            if not _isna(r["_fate"]):
                reason = r["_fate"]
            elif pd.notna(r["_pn"]) and r["_pn"] > 1:
                reason = f"ambiguous reference: {int(r['_pn'])} different patients"
            elif self.kind == "csv" and pd.notna(r["patient_id"]):
                reason = "dangling reference: patient_id is in no patients row" + (
                    " (of this run or the store)" if self.append else " of this run"
                )
            elif pd.notna(r["patient_id"]):  # named by NHS number, with no Patient
                reason = "dangling reference: the patient is in no patient record" + (
                    " of this run or the store" if self.append else " of this run"
                )
            elif pd.isna(r["_pref"]):
                reason = "no patient reference (subject/patient missing)"
            else:
                reason = "dangling reference: the patient is not in any input file"
            # the value: the (pseudonymised) patient reference, else the patient_id named
            named = r["_pref"] if not _isna(r["_pref"]) else r.get("patient_id")
            self._q_row(name, r, "patient_id", named, reason)
        outcome[bad_ref & ~dup] = "quarantined"
        if "_withdrawn" in df.columns:
            # withdrawn by a cancelled / entered-in-error record: not loaded (a stored row of
            # an earlier run is removed), whether or not it repeats another row
            wd = df["_withdrawn"].fillna(False).to_numpy(bool) & ~bad_ref
            outcome[wd & np.isin(outcome, ["loaded", "duplicate"])] = "withdrawn"
            if "_disp" in df.columns:  # a dispense of a loaded prescription: counted apart
                disp = df["_disp"].fillna(False).to_numpy(bool) & ~old
                outcome[disp & (outcome == "withdrawn")] = "dispensed"
        if name == "registrations":
            noprac = df["practice_id"].isna().to_numpy() & df["_mref"].notna().to_numpy()
            noprac &= outcome == "loaded"
            for i in np.flatnonzero(noprac):
                self._q_row(
                    name,
                    df.iloc[i],
                    "practice_id",
                    "generalPractitioner",
                    "dangling reference: the GP practice Organization is not in "
                    "any input file, or has no ODS code",
                )
            outcome[noprac] = "quarantined"
        if name == "medications":
            nocode = df["code"].isna().to_numpy() & (outcome == "loaded")
            for i in np.flatnonzero(nocode):
                r = df.iloc[i]
                self._q_row(
                    name,
                    r,
                    "code",
                    r["_mref"] and "Medication reference",
                    "dangling reference: the Medication is not in any input file",
                )
            outcome[nocode] = "quarantined"
        # Numbers are parsed here with Python's correctly rounded float() (pandas'
        # text-to-number parser can be one unit in the last place out); a value that
        # is not a number is quarantined with its field.
        # (pophealth.validate.parse_number: a comma only between thousands; no
        # infinities or NaN)
        for col in spec.columns:
            if col.type != "float":
                continue
            parsed = [parse_number(None if _isna(v) else v) for v in df[col.name]]
            reasons = np.array([r for _, r in parsed], dtype=object)
            refused = np.array([r is not None for r in reasons], dtype=bool)
            bad = refused & (outcome == "loaded")
            for i in np.flatnonzero(bad):
                self._q_row(name, df.iloc[i], col.name, df.iloc[i][col.name], reasons[i])
            outcome[bad] = "quarantined"
            df[col.name] = pd.Series(
                [np.nan if v is None else v for v, _ in parsed], index=df.index, dtype="float64"
            )
        cand = np.flatnonzero(outcome == "loaded")
        if len(cand):
            sub = df.iloc[cand].reset_index(drop=True)
            res = validate(
                name,
                sub[cols],
                source=name,
                row_numbers=np.arange(len(sub)),
                instants=_instants(name, sub),
            )
            if not res.quarantine.empty:
                for rec in res.quarantine.itertuples(index=False):
                    r = sub.iloc[int(rec.row)]
                    self._q_row(name, r, rec.field, rec.value, rec.reason)
                bad = np.unique(res.quarantine["row"].to_numpy(np.int64))
                outcome[cand[bad]] = "quarantined"
            if res.valid.num_rows:
                self._note_dates(name, res.valid)
                yield res.valid
        if "_first" in df.columns:
            first = (
                (outcome == "loaded")
                & df["_first"].notna().to_numpy()
                & (df["_rkey"].to_numpy() == df["_first"].fillna(-2).to_numpy())
            )
            kept.update(
                zip(
                    df["_rtype"].to_numpy(object)[first],
                    df["_rid"].to_numpy(object)[first],
                    strict=True,
                )
            )
        if "_okey" in df.columns:
            # what was loaded for each order or record (a duplicate too: the row it repeats
            # stands for it), kept for a later --append run's withdrawals and new versions
            issued = np.isin(outcome, ["loaded", "duplicate"]) & ~old
            issued &= df["_okey"].notna().to_numpy()
            if issued.any():
                path = self._path("index-issued")
                pq.write_table(
                    pa.table(
                        {
                            "key": pa.array(df["_okey"][issued].tolist(), pa.string()),
                            "pid": pa.array(df["patient_id"][issued].tolist(), pa.string()),
                            "rowhash": pa.array(df["_rowhash"][issued].tolist(), pa.string()),
                            "run_seq": pa.array(np.full(int(issued.sum()), self._seq), pa.int64()),
                        }
                    ),
                    path,
                )
                self._index_spills["issued"].append(path)
        if name in ("admissions", "emergency_attendances"):
            # loaded without a provider (it is optional): counted for a note, not quarantined
            unresolved = df["provider"].isna().to_numpy() & df["_mref"].notna().to_numpy()
            self._no_provider[name] += int((unresolved & (outcome == "loaded")).sum())
        self._account(name, df, outcome)

    def _account(self, name: str, df: pd.DataFrame, outcome: np.ndarray) -> None:
        """Count the rows of ``df`` by their ``outcome`` and spill each source record's
        outcome (rows held aside are counted when they are decided)."""
        counts = self.tables[name]
        old = df["_old"].to_numpy() == 1
        made = df["_old"].to_numpy() == 2  # rows of an inference rule, not of the source
        new = ~old & ~made & (outcome != "deferred")
        counts.inferred += int(((outcome == "loaded") & made).sum())
        self._inferred_rejected += int(((outcome == "quarantined") & made).sum())
        counts.loaded += int(((outcome == "loaded") & new).sum())
        counts.quarantined += int(((outcome == "quarantined") & new).sum())
        counts.duplicates += int(((outcome == "duplicate") & new).sum())
        counts.withdrawn += int(((outcome == "withdrawn") & new).sum())
        counts.same_supply += int(((outcome == "dispensed") & new).sum())
        counts.kept_from_store += int(((outcome == "loaded") & old).sum())
        counts.withdrawn_from_store += int(((outcome == "withdrawn") & old).sum())
        if "_replaced" in df.columns:
            replaced = df["_replaced"].fillna(False).to_numpy(bool)
            counts.replaced_in_store += int(((outcome == "withdrawn") & old & replaced).sum())
        if new.any():
            out = pa.table(
                {
                    "rkey": pa.array(df["_rkey"].to_numpy(np.int64)[new]),
                    "rtype": pa.array(df["_rtype"].to_numpy(object)[new], pa.string()),
                    "outcome": pa.array(outcome[new], pa.string()),
                }
            )
            path = self._path("outcome")
            pq.write_table(out, path)
            self._outcome_spills.append(path)

    def _note_dates(self, name: str, valid: pa.Table) -> None:
        col = {"events": "date", "medications": "date", "admissions": "admission_date"}.get(name)
        if col is None:
            return
        latest = pc.max(valid[col]).as_py()
        if latest is None:
            return
        latest = min(latest, dt.date.today())
        previous = self._extra.get("extract_date")
        if previous is None and self.append and self.store.snapshot is not None:
            previous = self.store.metadata.get("extract_date")
        if previous is None or latest.isoformat() > str(previous):
            self._extra["extract_date"] = latest.isoformat()

    def _q_row(self, name: str, r: pd.Series, field_: str, value: Any, reason: str) -> None:
        record = {
            c: (None if _isna(r[c]) else r[c]) for c in table(name).column_names if c in r.index
        }
        if isinstance(record.get("all_diagnoses"), np.ndarray):
            record["all_diagnoses"] = list(record["all_diagnoses"])
        if isinstance(record.get("procedures"), np.ndarray):
            record["procedures"] = list(record["procedures"])
        self.quarantine.write(
            table=name,
            record_type=None if _isna(r["_rtype"]) else r["_rtype"],
            file=r["_src"],
            location=None if _isna(r["_loc"]) else r["_loc"],
            record_id=None if _isna(r["_rid"]) else r["_rid"],
            field=field_,
            value=None if _isna(value) else value,
            reason=reason,
            record=record,
        )

    def _count_outcomes(self, con) -> None:
        if not self._outcome_spills:
            return
        files = [str(p) for p in self._outcome_spills]
        rows = con.execute(
            f"""
            SELECT rtype,
                   count(*) FILTER (WHERE st = 'loaded') AS loaded,
                   count(*) FILTER (WHERE st = 'quarantined') AS quarantined,
                   count(*) FILTER (WHERE st = 'duplicate') AS duplicate,
                   count(*) FILTER (WHERE st = 'withdrawn') AS withdrawn,
                   count(*) FILTER (WHERE st = 'dispensed') AS dispensed,
                   count(*) FILTER (WHERE st = 'merged') AS merged
            FROM (
                SELECT rkey, any_value(rtype) AS rtype,
                       CASE WHEN bool_or(outcome = 'loaded') THEN 'loaded'
                            WHEN bool_or(outcome = 'quarantined') THEN 'quarantined'
                            WHEN bool_or(outcome = 'withdrawn') THEN 'withdrawn'
                            WHEN bool_or(outcome = 'dispensed') THEN 'dispensed'
                            WHEN bool_or(outcome = 'merged') THEN 'merged'
                            ELSE 'duplicate' END AS st
                FROM read_parquet({files!r}) GROUP BY rkey
            ) GROUP BY rtype
            """
        ).fetchall()
        for rtype, loaded, quarantined, duplicate, withdrawn, dispensed, merged in rows:
            rc = self.records[rtype]
            rc.loaded += loaded
            rc.quarantined += quarantined
            if duplicate:
                rc.skipped += duplicate
                rc.skip_reasons["duplicate of a record already loaded"] += duplicate
            if withdrawn:
                rc.skipped += withdrawn
                reason = (
                    WITHDRAWN_REASON if rtype.startswith("Medication") else WITHDRAWN_RECORD_REASON
                )
                rc.skip_reasons[reason] += withdrawn
            if dispensed:
                rc.skipped += dispensed
                rc.skip_reasons[DISPENSED_REASON] += dispensed
            if merged:
                rc.skipped += merged
                rc.skip_reasons[MERGED_REASON] += merged


#: the patients columns compared between two records of one patient in a run (SQL giving
#: NULL for "not known", which conflicts with nothing)
PATIENT_CONFLICT_COLUMNS = {
    "date_of_birth": "TRY_CAST(left(date_of_birth, 10) AS DATE)",
    "sex": "nullif(lower(trim(sex)), 'unknown')",
    "date_of_death": "TRY_CAST(left(date_of_death, 10) AS DATE)",
    "ethnicity_16": "nullif(upper(trim(ethnicity_16)), 'Z')",
}


#: The characters Python's ``str.strip()`` removes (``pophealth.validate`` trims every value
#: with it before storing): their code points, and a DuckDB expression for
#: ``trim(text, characters)``.
_WHITE_SPACE = tuple(ord(ch) for ch in map(chr, range(0x3001)) if ch.isspace())
_WHITE_SPACE_SQL = " || ".join(f"chr({o})" for o in _WHITE_SPACE)
_WHITE_SPACE_IN = ", ".join(map(str, _WHITE_SPACE))


def _norm_expr(name: str, kind: str) -> str:
    """SQL for a comparable form of a text column (so that '2020-01-01T10:00:00+00:00'
    from a file and '2020-01-01 10:00:00' from the store count as the same value).

    The value is trimmed as validation trims it before storing (a blank is missing), so a
    row of this run whose text has white space around it (Synthea's dosage text ends in a
    line break) is the same row as the trimmed one the store holds: a duplicate when
    appended again, and the row an entered-in-error version withdraws. A list column is
    compared as it is."""
    if kind == "list<string>":
        return f'"{name}"'
    raw = f'"{name}"'
    # (trim with a set of characters costs ~1 µs a value: only for a value that needs it)
    c = (
        f"(CASE WHEN ord(left({raw}, 1)) IN ({_WHITE_SPACE_IN}) "
        f"OR ord(right({raw}, 1)) IN ({_WHITE_SPACE_IN}) OR {raw} = '' "
        f"THEN nullif(trim({raw}, {_WHITE_SPACE_SQL}), '') ELSE {raw} END)"
    )
    if kind == "date":
        return f"coalesce(CAST(TRY_CAST(left({c}, 10) AS DATE) AS VARCHAR), {c})"
    if kind == "timestamp":
        return f"coalesce(CAST(TRY_CAST({c} AS TIMESTAMPTZ) AS VARCHAR), {c})"
    if kind in ("float", "int"):
        return f"coalesce(CAST(TRY_CAST({c} AS DOUBLE) AS VARCHAR), {c})"
    if kind == "bool":
        return f"lower({c})"
    return c


def _text_array(values: list) -> pa.Array:
    """A string Arrow array of ``values`` (str, numbers, bools or None), fast when uniform."""
    try:
        arr = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
        return pa.array([_text(v) for v in values], pa.string())
    if pa.types.is_string(arr.type):
        return arr
    if pa.types.is_null(arr.type):
        return pa.nulls(len(values), pa.string())
    if pa.types.is_boolean(arr.type):
        return pa.array([_text(v) for v in values], pa.string())
    try:
        return arr.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.array([_text(v) for v in values], pa.string())


def files_note(prefix: str, files: list) -> str | None:
    """One note naming (up to 12 of) the files a run did not use."""
    if not files:
        return None
    names = [getattr(f, "name", str(f)) for f in files]
    more = f" … and {len(names) - 12} more" if len(names) > 12 else ""
    return f"{prefix} ({len(names)}): {', '.join(names[:12])}{more}"


def _isna(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, (list, np.ndarray)):
        return False
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


class _Checked(dict):
    """The table generators handed to Store.write; raises :class:`NothingLoaded` after the
    last table when nothing at all was loaded, so the previous store is kept."""

    def __init__(self, tables: dict[str, Iterator[pa.Table]], run: Run):
        super().__init__()
        names = list(tables)
        for i, (name, gen) in enumerate(tables.items()):
            self[name] = self._wrap(gen, run, last=(i == len(names) - 1))

    @staticmethod
    def _wrap(gen, run: Run, last: bool):
        yield from gen
        if last and run.strict and run.quarantine.lines:
            raise StrictRefusal()
        if last and not any(t.loaded or t.withdrawn_from_store for t in run.tables.values()):
            raise NothingLoaded()
