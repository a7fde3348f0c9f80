"""``pophealth dataset FILE`` and ``pophealth measures FILE``: run an analyst's own
definition file (:mod:`pophealth.query.definitions`) on a store."""

from __future__ import annotations

import contextlib
import glob
import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from pophealth.commands._common import (
    EngineOption,
    check_writable,
    console,
    engine_errors,
    fail,
    nobody_registered,
    read_codelists_option,
    warn_curated,
)

#: Output formats, by how the output's name ends.
FORMATS = (".csv", ".csv.gz", ".parquet")

DATASET_HELP = (
    "Run a dataset definition file on a store: one row per patient in its population, "
    "patient_id then each variable, and each event-level table it adds.\n\n"
    "The file is Python that builds a pophealth.query.Dataset, called `dataset` (or the only "
    "one it makes); docs/query.md shows how to write one. A pophealth.query.RowDataset "
    "(one row per operation, referral or attendance) is run the same way: its rows go to "
    "--output. The output is patient-level "
    "(pseudonymous) data: keep it inside the secure environment. Aggregates for release come "
    "from `pophealth measures`. A note names each code list that matches no row of its table "
    "in the store, at any date."
)
MEASURES_HELP = (
    "Run a measures definition file on a store: one row per measure, interval and group, with "
    "numerator, denominator, value, confidence limits and the disclosure note.\n\n"
    "The file is Python that builds a pophealth.query.Measures, called `measures` (or the "
    "only one it makes). Its intervals are part of the definition; inside a measure, "
    "`index_date` is the end of each interval. The numerator is counted only among the "
    "denominator: a patient in the numerator but not in the denominator counts in neither. "
    "A quantile measure (Measures.define_quantile) gives a row per quantile instead: the "
    "median or another centile of a number per patient, with its limits. A rate measure "
    "(Measures.define_rate) gives events per person-time (per 1,000 person-years or "
    "person-days: each patient's days registered, resident or in hospital inside the "
    "interval), its denominator the person-days. An age-standardised rate "
    "(Measures.define_standardised_rate) weights each 5-year age band's rate by the European "
    "Standard Population 2013, with Dobson limits. A row measure (Measures.define_row_measure) "
    "counts the rows of a RowDataset (operations, referrals, attendances), each in the "
    "interval of its own date. Counts pass through "
    "the disclosure-control rule unless --no-disclosure is given (a quantile is withheld with "
    "its count, and near its group's extremes; person-days are released as a count, "
    "protected too so that they do not give back the patients behind them; a "
    "standardised rate is withheld with its counts, and worked from its age bands' counts "
    "rounded cumulatively as released counts are, and withheld too where those bands beside "
    "the other groups' would give one back). Each interval's breakdown is protected "
    "as a table; a measure overall is released as the total of the same measure by one "
    "column, or by several (the cells of each column adding up to the measure by that "
    "column; a warning names a measure by several columns that is not so linked); with no "
    "overall in the file, the breakdowns are linked through it all the same, the overall "
    "kept for the audit and not shown; a count "
    "withheld in one interval is withheld in every interval or window "
    "sharing days with it without lying inside it, one count given by two measures of "
    "the file is withheld in both, and a released count is withheld where its rounding beside "
    "the same count over intervals that make up its own, or that its own helps make up "
    "(months and their quarter), would give it back (docs/query.md, section 4). A note names "
    "each code list that matches no row of its table in the store, at any date."
)

DefinitionArgument = Annotated[
    Path, typer.Argument(help="Python file that builds the definitions (see docs/query.md).")
]
StoreOption = Annotated[Path, typer.Option("--store", help="Store directory to read.")]


def output_format(path: Path, option: str = "--output") -> str:
    """The format to write, from how ``path`` ends (one of :data:`FORMATS`)."""
    for suffix in sorted(FORMATS, key=len, reverse=True):
        if path.name.endswith(suffix) and len(path.name) > len(suffix):
            return suffix
    raise fail(f"{option} {path}: name it .csv, .csv.gz or .parquet (the format to write)")


def _sibling(output: Path, suffix: str, name: str) -> Path:
    """``out/bp.csv`` and event table ``readings`` → ``out/bp.readings.csv``."""
    return output.with_name(f"{output.name[: -len(suffix)]}.{name}{suffix}")


def _outputs(output: Path, suffix: str, tables: list[str]) -> dict[str | None, Path]:
    """The files a run writes — ``None`` for the dataset or measures, then each event
    table's — checked before any work: each a file name that can be written (not a folder,
    not inside a file)."""
    paths: dict[str | None, Path] = {None: output}
    for name in tables:
        try:
            paths[name] = _sibling(output, suffix, name)
        except ValueError:  # "a/b": no file name
            raise fail(f"event table {name!r}: cannot name a file beside {output}") from None
    for name, path in paths.items():
        what = "--output" if name is None else f"event table {name!r}: its file"
        check_writable(path, what, folder=False)
    return paths


class Pending:
    """Files written to temporary files beside their names and renamed into place together
    by :meth:`commit`, once every one is complete: a run interrupted or failing part way
    (an event table after the dataset) leaves the previous outputs, all of them, never a
    new dataset beside an old event table. Leaving the ``with`` block removes whatever was
    not committed."""

    def __init__(self, suffix: str):
        self.suffix = suffix
        self._files: list[tuple[Path, Path]] = []

    def __enter__(self) -> Pending:
        return self

    def __exit__(self, *exc: object) -> None:
        for tmp, _ in self._files:
            tmp.unlink(missing_ok=True)
        self._files.clear()

    def write(self, table: Any, path: Path) -> None:
        """Write an Arrow table (or a pandas frame) as CSV or Parquet to a temporary file
        beside ``path``."""
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.csv as pcsv
        import pyarrow.parquet as pq

        if not isinstance(table, pa.Table):
            table = pa.Table.from_pandas(table, preserve_index=False)
        # a column with no value in this run (a breakdown no measure used, no disclosure
        # note) is text, as when it has values: the schema does not change run to run
        for i, field in enumerate(table.schema):
            if pa.types.is_null(field.type):
                table = table.set_column(i, field.name, table.column(i).cast(pa.string()))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        self._files.append((tmp, path))
        if self.suffix == ".parquet":
            pq.write_table(table, tmp)
            return
        # a list column (admissions.all_diagnoses, procedures) in CSV: its items joined
        # by "|", as flat ingest reads them back
        for i, field in enumerate(table.schema):
            if pa.types.is_list(field.type) or pa.types.is_large_list(field.type):
                items = table.column(i).cast(pa.list_(pa.string()))
                table = table.set_column(i, field.name, pc.binary_join(items, "|"))
        options = pcsv.WriteOptions(quoting_style="needed")
        if self.suffix == ".csv.gz":
            with pa.CompressedOutputStream(str(tmp), "gzip") as stream:
                pcsv.write_csv(table, stream, options)
        else:
            pcsv.write_csv(table, str(tmp), options)

    def commit(self) -> None:
        """Rename every file written into place."""
        for tmp, path in self._files:
            tmp.replace(path)
        self._files.clear()


def measures_arrow(result: Any) -> Any:
    """A :func:`~pophealth.query.run_measures` result as an Arrow table of one schema
    whether it has rows or not: dates as dates, counts and values as numbers, the rest as
    text (an empty result's columns would otherwise have no type, and be written as text)."""
    import pyarrow as pa

    fields = []
    for name, dtype in result.dtypes.items():
        if name in ("interval_start", "interval_end"):
            kind = pa.date32()
        elif dtype.kind in "if":
            kind = pa.from_numpy_dtype(dtype)
        else:
            kind = pa.string()
        fields.append(pa.field(name, kind))
    return pa.Table.from_pandas(result, schema=pa.schema(fields), preserve_index=False)


def write_table(table: Any, path: Path, suffix: str) -> None:
    """Write an Arrow table (or a pandas frame) as CSV or Parquet, atomically: to a
    temporary file beside ``path``, renamed over it once complete, so an interrupted run
    leaves the previous output or none, never half a file."""
    with Pending(suffix) as pending:
        pending.write(table, path)
        pending.commit()


@contextlib.contextmanager
def writing(path: Path):
    """A failure to write ``path`` (a full disk, a folder that stopped taking files) stops
    the command with a line naming it; the temporary files are removed by :class:`Pending`."""
    try:
        yield
    except OSError as exc:
        raise fail(f"cannot write {path}: {exc.strerror or exc}") from None


@contextlib.contextmanager
def stopped_cleanly():
    """While the command runs, SIGTERM (a scheduler stopping the job) and SIGHUP (the
    terminal closed) end it as Ctrl-C does: the stack unwinds, so :class:`Pending` removes
    its temporary files — by default those signals end Python at once, and the temporary
    file of a complete dataset stayed hidden in the output folder. The exit code is
    128 + the signal's number (143 for SIGTERM); the previous handlers are put back after."""

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = {}
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is None:  # not on this platform
            continue
        with contextlib.suppress(ValueError):  # not the main thread: the caller's to handle
            previous[sig] = signal.signal(sig, stop)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _past_extract(store: Any, ends: list[Any]) -> str | None:
    """What to say when dates the run counts up to (an index date, interval ends) are after
    the store's extract date: its records stop there, so windows reaching past it count
    less than they would (as `pophealth run` warns); None when none is, or no date is
    recorded."""
    import datetime as dt

    recorded = store.metadata.get("extract_date")
    if not recorded:
        return None
    extract = dt.date.fromisoformat(recorded)
    late = sorted(d for d in ends if d > extract)
    if not late:
        return None
    tail = "records after that are not in the store, so"
    if len(ends) == 1:
        return (
            f"index date {late[0].isoformat()} is after the store's extract date {recorded}: "
            f"{tail} windows reaching past it count less than they would"
        )
    return (
        f"{len(late)} of the {len(ends)} intervals end after the store's extract date "
        f"{recorded} (the last on {late[-1].isoformat()}): {tail} those intervals count less "
        "than they would"
    )


def _say_unmatched(con: Any, definition: Any) -> None:
    """A note for each code list of ``definition`` that matches no row of its table in the
    store (:func:`pophealth.query.unmatched.unmatched_code_lists`): a column of zeros
    that is a wrong list, not a result."""
    from pophealth.query.unmatched import unmatched_code_lists

    for why in unmatched_code_lists(con, definition):
        console.print(f"[yellow]note:[/yellow] {why}", highlight=False, soft_wrap=True)


def _say_empty(m: Any, result: Any) -> None:
    """A note for each measure with no row at all: nobody was in its denominator in any
    interval, which is a rule that picks nobody far more often than a result."""
    shown = set(result["measure"])
    for measure in m:
        if measure.name not in shown:
            console.print(
                f"[yellow]note:[/yellow] measure {measure.name!r} has no row: its denominator "
                f"holds nobody in any of its {_count(len(measure.intervals), 'interval')} — "
                "check the rule (a condition nobody meets, a code list that matches nothing)",
                highlight=False,
                soft_wrap=True,
            )


def _count(n: int, noun: str) -> str:
    """``1 column``, ``6 columns``, ``1,200 rows``."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _open(store: Path):
    from pophealth.store import Store, StoreError

    try:
        return Store.open(store)
    except StoreError as exc:
        raise fail(str(exc)) from None


def _load(definition: Path, kind: type, name: str, own: Any) -> Any:
    """The definition file's ``kind`` object; its ``codelist(name)`` calls read ``own``'s
    folder first (:func:`pophealth.codelists.own_codelists`), which records what they read."""
    from pophealth.codelists import own_codelists
    from pophealth.query.definitions import DefinitionError, find_definition, load_definitions

    try:
        # what the definition prints goes to stderr: stdout carries only the outputs' paths
        with contextlib.redirect_stdout(sys.stderr), own_codelists(own):
            namespace = load_definitions(definition)
        return find_definition(namespace, kind, name, definition)
    except DefinitionError as exc:
        raise fail(str(exc)) from None


DefinitionCodelistsOption = Annotated[
    Path | None,
    typer.Option(
        "--codelists",
        help="Folder of your own code lists (OpenCodelists CSVs): the definition's "
        "codelist(NAME) reads NAME.csv there before pophealth's curated list of that name "
        "(a small illustrative subset). See docs/codelists.md.",
    ),
]


def _own(folder: Path | None) -> Any:
    """``--codelists`` read and checked (any file name: the definition names its lists)."""
    from pophealth.codelists import OwnCodelists

    own = read_codelists_option(folder, programmes_only=False)
    return own if own is not None else OwnCodelists(folder=None, lists={})


def dataset_command(
    definition: DefinitionArgument,
    store: StoreOption,
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            help="File to write, .csv, .csv.gz or .parquet; event tables go beside it as "
            "NAME.TABLE.csv (and so on).",
        ),
    ],
    index_date: Annotated[
        str | None,
        typer.Option(
            "--index-date",
            help="YYYY-MM-DD; default: the dataset's own (Dataset(index_date=...)), else the "
            "store's extract date (today if it records none).",
        ),
    ] = None,
    engine: EngineOption = "duckdb",
    codelists: DefinitionCodelistsOption = None,
) -> None:
    """``pophealth dataset``: see :data:`DATASET_HELP`."""
    from pophealth.commands.run import default_index_date, parse_date
    from pophealth.disclosure import count_text
    from pophealth.query import Dataset, QueryError, RowDataset, connect, run_dataset, run_events
    from pophealth.query.dataset import resolve_index_date

    suffix = output_format(output)
    date = parse_date(index_date)
    own = _own(codelists)
    ds = _load(definition, Dataset, "dataset", own)
    paths = _outputs(output, suffix, list(ds.event_tables))
    opened = _open(store)
    warn_curated(opened, own, "the definition")
    con = connect(opened, engine)
    written = []
    with stopped_cleanly(), Pending(suffix) as pending, engine_errors(engine):
        try:
            if date is None and ds.index_date is None:
                date = default_index_date(opened)
            date = resolve_index_date(ds, date)
            table = run_dataset(con, ds, engine=engine, index_date=date, output="arrow")
            with writing(output):
                pending.write(table, output)
            unit = "rows" if isinstance(ds, RowDataset) else "patients"
            written.append((output, f"{count_text(table.num_rows)} {unit}", table.num_columns))
            for name in ds.event_tables:
                rows = run_events(con, ds, name, engine=engine, index_date=date, output="arrow")
                with writing(paths[name]):
                    pending.write(rows, paths[name])
                written.append((paths[name], f"{count_text(rows.num_rows)} rows", rows.num_columns))
        except QueryError as exc:
            raise fail(f"{definition}: {exc}") from None
        with writing(output):
            pending.commit()
    console.print(
        f"index date {date.isoformat()}, engine {engine}", highlight=False, soft_wrap=True
    )
    late = _past_extract(opened, [date])
    if late:
        console.print(f"[yellow]warning:[/yellow] {late}", highlight=False, soft_wrap=True)
    why = nobody_registered(opened, date)
    if why:  # a population need not be the registered, so this is said, not refused
        console.print(f"[yellow]note:[/yellow] {why}", highlight=False, soft_wrap=True)
    if ds.population is None and not isinstance(ds, RowDataset):  # more often forgotten
        console.print(
            "[yellow]note:[/yellow] the dataset has no population rule, so it has a row for "
            "every patient in the store (the dead and those not registered too): set one with "
            "dataset.define_population(...)",
            highlight=False,
            soft_wrap=True,
        )
    _say_unmatched(con, ds)
    for path, what, columns in written:
        console.print(
            f"{what}, {_count(columns, 'column')}: {path}", highlight=False, soft_wrap=True
        )
        typer.echo(str(path.resolve()))
    # files named like an event table of this dataset that this run did not write: an
    # earlier run's table the definition no longer makes (left alone: it may be anything)
    stem = output.name[: -len(suffix)]
    ours = {p.resolve() for p in paths.values()}
    others = sorted(
        p for p in output.parent.glob(f"{glob.escape(stem)}.*{suffix}") if p.resolve() not in ours
    )
    for path in others:
        console.print(
            f"[yellow]note:[/yellow] {path} was not written by this run (an event table from "
            "an earlier one?)",
            highlight=False,
            soft_wrap=True,
        )


def measures_command(
    definition: DefinitionArgument,
    store: StoreOption,
    output: Annotated[
        Path, typer.Option("--output", help="File to write: .csv, .csv.gz or .parquet.")
    ],
    disclosure: Annotated[
        bool,
        typer.Option(
            "--disclosure/--no-disclosure",
            help="Release the counts through the disclosure-control rule (the default: 1-7 "
            "withheld, others rounded to the nearest 5). --no-disclosure writes exact counts, "
            "for analysis inside the secure environment only.",
        ),
    ] = True,
    engine: EngineOption = "duckdb",
    codelists: DefinitionCodelistsOption = None,
) -> None:
    """``pophealth measures``: see :data:`MEASURES_HELP`."""
    from pophealth.query import Measures, QueryError, connect, run_measures

    suffix = output_format(output)
    own = _own(codelists)
    m = _load(definition, Measures, "measures", own)
    if not len(m):
        raise fail(f"{definition}: the Measures defines no measure (measures.define_measure)")
    _outputs(output, suffix, [])
    intervals = {interval for measure in m for interval in measure.intervals}
    opened = _open(store)
    warn_curated(opened, own, "the definition")
    con = connect(opened, engine)  # (the code-list check below reads the same tables)
    with stopped_cleanly(), engine_errors(engine):
        try:
            result = run_measures(con, m, engine=engine, disclosure=disclosure)
        except QueryError as exc:
            raise fail(f"{definition}: {exc}") from None
        with writing(output):
            write_table(measures_arrow(result), output, suffix)
    how = sorted(set(result.attrs.get("evaluation", {}).values()))
    console.print(
        f"{_count(len(result), 'row')}: {_count(len(m), 'measure')} over "
        f"{_count(len(intervals), 'interval')} "
        f"(engine {engine}; by {', '.join(how) or '-'}): {output}",
        highlight=False,
        soft_wrap=True,
    )
    late = _past_extract(opened, sorted({end for _, end in intervals}))
    if late:
        console.print(f"[yellow]warning:[/yellow] {late}", highlight=False, soft_wrap=True)
    _say_empty(m, result)
    _say_unmatched(con, m)
    for why in result.attrs.get("unlinked", []):
        console.print(f"[yellow]warning:[/yellow] {why}", highlight=False, soft_wrap=True)
    if not disclosure:
        console.print(
            "[yellow]exact counts, not disclosure-controlled:[/yellow] for analysis inside "
            "the secure environment only; do not publish or share them.",
            highlight=False,
            soft_wrap=True,
        )
    typer.echo(str(output.resolve()))


def register(app: typer.Typer) -> None:
    app.command("dataset", help=DATASET_HELP)(dataset_command)
    app.command("measures", help=MEASURES_HELP)(measures_command)
