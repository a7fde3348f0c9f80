"""``pophealth ingest``: FHIR R4, OMOP CDM and flat canonical files into a store."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pophealth.commands._common import check_writable, console, fail, progress

app = typer.Typer(
    help=(
        "Import real records into a store: FHIR R4 (Bundles, bulk NDJSON, XML, .gz), OMOP CDM "
        "5.3/5.4 CSV/TSV, or flat canonical CSV/Parquet. Streams in batches, validates every row, "
        "quarantines bad records with file, line and field (STORE/quarantine/<run>.csv; "
        "STORE-quarantine/ beside it while STORE holds no store yet) and "
        "commits atomically at the end. By default the ingest REPLACES the patient-level "
        "tables of the store (areas are kept); --append adds to them (exact duplicates are "
        "dropped, so re-running an ingest is idempotent). Patients whose FHIR/OMOP source "
        "records no GP registration get one inferred (FHIR: primary-care encounters; OMOP: "
        "observation periods), flagged registrations.source = 'inferred'; "
        "--registrations recorded switches that off."
    ),
    no_args_is_help=True,
)

OutOption = Annotated[
    Path, typer.Option("--out", help="Store directory to write (new or existing).")
]
AppendOption = Annotated[
    bool,
    typer.Option(
        "--append",
        help="Add to the store's tables instead of replacing them (duplicates dropped; a "
        "patient seen again takes the newer record; a FHIR record sent again in a new "
        "version replaces the rows its earlier version loaded).",
    ),
]
#: OMOP and flat rows carry no record identity, so nothing replaces an earlier run's rows.
TabularAppendOption = Annotated[
    bool,
    typer.Option(
        "--append",
        help="Add to the store's tables instead of replacing them (exact duplicate rows "
        "dropped; a patient seen again takes the newer record). Other rows an earlier run "
        "loaded are never replaced or withdrawn (they carry no record identity): send a "
        "corrected extract without --append.",
    ),
]
StrictOption = Annotated[
    bool,
    typer.Option(
        "--strict",
        help="Commit nothing and exit 3 if any record was quarantined.",
    ),
]
RegistrationsOption = Annotated[
    str,
    typer.Option(
        "--registrations",
        help="infer-missing (default): a patient whose source records no registration "
        "gets one inferred (FHIR: the serviceProvider of their most recent primary-care "
        "encounter, from their first encounter there to death or open; OMOP: each "
        "observation period (the last one left open, or ended at death), at the care site of "
        "most of their visits, else the placeholder "
        "practice UNKNOWN), flagged registrations.source = 'inferred' and counted in the "
        "summary. recorded: load only the registrations the source records (programmes then "
        "find nobody registered when it records none). See docs/ingest.md.",
        case_sensitive=False,
    ),
]
KeyFileOption = Annotated[
    Path | None,
    typer.Option(
        "--key-file",
        help="File holding the pseudonymisation key (HMAC-SHA256; at least 16 bytes). "
        "Default: $POPHEALTH_PSEUDONYM_KEY. Required: the NHS number never reaches the store.",
    ),
]


def _key(key_file: Path | None) -> bytes:
    from pophealth.ingest.pseudonym import PseudonymKeyError, load_key

    try:
        return load_key(key_file)
    except PseudonymKeyError as exc:
        raise fail(str(exc)) from None


def _mode(registrations: str) -> str:
    from pophealth.ingest.sink import REGISTRATION_MODES

    mode = registrations.strip().lower()
    if mode not in REGISTRATION_MODES:
        raise fail(
            f"--registrations must be one of {', '.join(REGISTRATION_MODES)}, not {registrations!r}"
        )
    return mode


def _run(call) -> None:
    from pophealth.store import StoreError
    from pophealth.validate import SchemaError

    # the ingest's summary notes each temporary folder of a killed run it removes: the log
    # line saying the same (for other commands that open a store) would repeat it
    scratch_log = logging.getLogger("pophealth.scratch")
    level = scratch_log.level
    scratch_log.setLevel(logging.ERROR)
    try:
        with progress() as bar:
            task = bar.add_task("starting", total=1.0)

            def step(description: str, fraction: float) -> None:
                bar.update(task, description=description, completed=min(max(fraction, 0), 1))

            summary = call(step)
            bar.update(task, description="done", completed=1.0)
    except (StoreError, SchemaError, FileNotFoundError, ValueError) as exc:
        raise fail(str(exc)) from None
    finally:
        scratch_log.setLevel(level)
    _report(summary)
    if not summary.committed:
        raise typer.Exit(3 if summary.quarantined else 1)
    if summary.loaded == 0 and not any(c.withdrawn_from_store for c in summary.tables.values()):
        raise typer.Exit(1)


def _report(summary) -> None:
    t = Table(title=f"ingest {summary.kind} → {summary.store} (run {summary.run_id})")
    inferred = any(c.inferred for c in summary.tables.values())
    withdrawn = any(c.withdrawn or c.withdrawn_from_store for c in summary.tables.values())
    heads = ["table", "rows in", "loaded", "quarantined", "duplicates", "kept from store"]
    heads += ["inferred"] if inferred else []
    heads += ["withdrawn", "withdrawn from store", "replaced in store"] if withdrawn else []
    dispensed = any(c.same_supply for c in summary.tables.values())
    heads += ["same supply"] if dispensed else []
    merged = any(c.merged for c in summary.tables.values())
    heads += ["merged"] if merged else []
    for c in [*heads, "ok"]:
        t.add_column(c, justify="left" if c == "table" else "right")
    for name, c in summary.tables.items():
        if c.rows_in or c.kept_from_store or c.inferred or c.withdrawn_from_store:
            cells = [
                name,
                f"{c.rows_in:,}",
                f"{c.loaded:,}",
                f"{c.quarantined:,}",
                f"{c.duplicates:,}",
                f"{c.kept_from_store:,}",
            ]
            cells += [f"{c.inferred:,}"] if inferred else []
            if withdrawn:
                gone = c.withdrawn_from_store - c.replaced_in_store
                cells += [f"{c.withdrawn:,}", f"{gone:,}", f"{c.replaced_in_store:,}"]
            cells += [f"{c.same_supply:,}"] if dispensed else []
            cells += [f"{c.merged:,}"] if merged else []
            t.add_row(*cells, "✓" if c.balanced else "✗")
    console.print(t)
    r = Table(title="source records: in = loaded + quarantined + skipped")
    for c in ("record type", "in", "loaded", "quarantined", "skipped", "ok", "skipped because"):
        r.add_column(c, justify="left" if c in ("record type", "skipped because") else "right")
    for name, c in summary.records.items():
        reasons = "; ".join(f"{k} ({v:,})" for k, v in c.skip_reasons.most_common(3))
        r.add_row(
            name,
            f"{c.records_in:,}",
            f"{c.loaded:,}",
            f"{c.quarantined:,}",
            f"{c.skipped:,}",
            "✓" if c.balanced else "✗",
            reasons,
        )
    console.print(r)
    for note in summary.notes[:20]:
        console.print(f"note: {note}", highlight=False)
    if len(summary.notes) > 20:
        console.print(f"note: … and {len(summary.notes) - 20} more", highlight=False)
    if summary.quarantine_file:
        console.print(f"quarantined records: {summary.quarantine_file}", highlight=False)
    if summary.summary_file:
        console.print(f"summary (JSON): {summary.summary_file}", highlight=False)
    state = "committed" if summary.committed else "NOT committed (store unchanged)"
    console.print(
        f"{state}: {summary.loaded:,} rows loaded, {summary.quarantined:,} source records "
        f"quarantined; balanced: {'yes' if summary.balanced else 'NO'}",
        highlight=False,
    )


@app.command("fhir")
def fhir_command(
    paths: Annotated[list[Path], typer.Argument(help="FHIR files or directories.")],
    out: OutOption,
    key_file: KeyFileOption = None,
    append: AppendOption = False,
    strict: StrictOption = False,
    registrations: RegistrationsOption = "infer-missing",
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            help="Processes reading and mapping in parallel (default: one per CPU for "
            "inputs over 16 MiB, else 1).",
            min=1,
        ),
    ] = None,
) -> None:
    """FHIR R4: Bundles of any type (collection, transaction, message...), NDJSON, XML, .gz.

    A cancelled or entered-in-error prescription withdraws the order it names (an EPS
    cancellation: its order item), and a version of any other record saying it was entered
    in error, refuted, cancelled or not done withdraws that record (same identifier, else
    id, and patient), in any file of the run or, with --append, of an earlier run; with
    --append a newer version of a record replaces the rows its earlier version loaded. A
    Patient or reference whose NHS number fails the modulus-11 check, or is one digit ten
    times (0000000000: a placeholder), is quarantined. Only a completed MedicationDispense
    loads as a supply, and a dispense of a prescription that loads (this run or an earlier
    --append run) is the same supply, counted once. A Patient merged into another record
    (Patient.link replaced-by, or replaces on the other) is not loaded when that record is:
    the records naming it load under that one.
    """
    from pophealth.ingest.fhir import ingest_fhir
    from pophealth.ingest.fhir_read import JSON_SUFFIXES, find_files

    key = _key(key_file)
    mode = _mode(registrations)
    try:
        found, ignored = find_files(paths)
    except FileNotFoundError as exc:
        raise fail(str(exc)) from None
    if not found:
        others = f" ({len(ignored):,} other files passed over)" if ignored else ""
        raise fail(
            f"no FHIR files in {', '.join(map(str, paths))}{others}: a FHIR file's name ends "
            f"{', '.join(JSON_SUFFIXES)}, optionally followed by .gz"
        )
    check_writable(out, "--out", folder=True)
    _run(
        lambda step: ingest_fhir(
            paths,
            out,
            key=key,
            append=append,
            strict=strict,
            progress=step,
            workers=workers,
            registrations=mode,
        )
    )


@app.command("omop")
def omop_command(
    directory: Annotated[Path, typer.Argument(help="Directory of OMOP CDM CSV/TSV files.")],
    out: OutOption,
    key_file: KeyFileOption = None,
    append: TabularAppendOption = False,
    strict: StrictOption = False,
    registrations: RegistrationsOption = "infer-missing",
) -> None:
    """OMOP CDM 5.3 / 5.4 CSV or TSV (any case of file names), mapped through `concept`."""
    from pophealth.ingest.omop import ingest_omop

    key = _key(key_file)
    mode = _mode(registrations)
    check_writable(out, "--out", folder=True)
    _run(
        lambda step: ingest_omop(
            directory,
            out,
            key=key,
            append=append,
            strict=strict,
            progress=step,
            registrations=mode,
        )
    )


@app.command("csv")
def csv_command(
    directory: Annotated[
        Path, typer.Argument(help="Directory of canonical tables (patients.csv, events.parquet…).")
    ],
    out: OutOption,
    append: TabularAppendOption = False,
    strict: StrictOption = False,
    patient_ids: Annotated[
        str,
        typer.Option(
            "--patient-ids",
            help="check (default): patient_id must already be pseudonymous, and a file whose "
            "distinct 10-digit ids pass the NHS number check (modulus 11) half the time or "
            "more is refused, nothing "
            "committed. nhs-number: patient_id holds NHS numbers; each is pseudonymised with "
            "the key as FHIR ingest does (so the two link), and a row whose id is not a valid "
            "NHS number is quarantined. pseudonymous: take the ids as given (pseudonyms that "
            "only look like NHS numbers).",
            case_sensitive=False,
        ),
    ] = "check",
    key_file: Annotated[
        Path | None,
        typer.Option(
            "--key-file",
            help="With --patient-ids nhs-number: file holding the pseudonymisation key "
            "(default: $POPHEALTH_PSEUDONYM_KEY).",
        ),
    ] = None,
) -> None:
    """Flat canonical tables as CSV/TSV/Parquet named after the schema (patient_id already
    pseudonymous, or NHS numbers with --patient-ids nhs-number)."""
    from pophealth.ingest.flat import PATIENT_ID_MODES, ingest_csv

    mode = patient_ids.strip().lower()
    if mode not in PATIENT_ID_MODES:
        raise fail(
            f"--patient-ids must be one of {', '.join(PATIENT_ID_MODES)}, not {patient_ids!r}"
        )
    key = _key(key_file) if mode == "nhs-number" else None
    check_writable(out, "--out", folder=True)
    _run(
        lambda step: ingest_csv(
            directory,
            out,
            append=append,
            strict=strict,
            progress=step,
            patient_ids=mode,
            key=key,
        )
    )
