"""Helpers shared by the CLI command modules: errors, options, progress."""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from pophealth.engines import ENGINES

console = Console(stderr=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print a one-line error to stderr and return the ``typer.Exit`` to raise."""
    console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


#: Words in an error that mean Spark ran out of memory (the JVM's own, or Spark's).
SPARK_MEMORY_SIGNS = (
    "OutOfMemory",
    "UNABLE_TO_ACQUIRE_MEMORY",
    "Java heap space",
    "GC overhead limit exceeded",
)


def spark_out_of_memory(exc: BaseException) -> str | None:
    """What to tell the user when ``exc`` is Spark running out of memory (else None): the
    settings it ran with and the ones to change."""
    text = f"{type(exc).__name__}: {exc}"
    if not any(sign in text for sign in SPARK_MEMORY_SIGNS):
        return None
    memory = os.environ.get("POPHEALTH_SPARK_DRIVER_MEMORY", "4g")
    partitions = os.environ.get("POPHEALTH_SPARK_SHUFFLE_PARTITIONS", "4")
    return (
        f"Spark ran out of memory (driver memory {memory}, {partitions} shuffle partitions): "
        "give it more with POPHEALTH_SPARK_DRIVER_MEMORY (e.g. 8g, up to about half the "
        "machine's memory), spread the work with POPHEALTH_SPARK_SHUFFLE_PARTITIONS (e.g. 16), "
        "or run with --engine duckdb"
    )


@contextmanager
def engine_errors(engine: str):
    """Spark running out of memory stops the command with one line saying what to change,
    not a Java stack trace; other errors pass through."""
    try:
        yield
    except Exception as exc:
        message = spark_out_of_memory(exc) if engine == "spark" else None
        if message is None:
            raise
        raise fail(message) from None


def parse_index_date(value: str | None) -> dt.date | None:
    """``--index-date`` as a date; an impossible one (2026-02-30) stops the command."""
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise fail(f"--index-date {value!r} is not a date (expected YYYY-MM-DD)") from None


def nobody_registered(store, date: dt.date) -> str | None:
    """Why a programme run at ``date`` on ``store`` would count nobody, or ``None``: no GP
    registration in the store covers the date (an index date before the records, or after
    everyone left). A store with no registrations at all is :func:`unregistered`'s to
    say. Reads only the registrations' dates."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(store.table_path("registrations"), columns=["start_date", "end_date"])
    if table.num_rows == 0:
        return None
    start, end = table.column("start_date"), table.column("end_date")
    still_on = pc.fill_null(pc.greater_equal(end, date), True)  # no end: still registered
    covers = pc.and_(pc.less_equal(start, date), still_on)
    if pc.any(covers).as_py():
        return None
    first, last = pc.min(start).as_py(), pc.max(end).as_py()
    if date < first:
        span = f" (the first registration starts on {first.isoformat()})"
    elif pc.all(pc.is_valid(end)).as_py() and date > last:
        span = f" (the last registration ended on {last.isoformat()})"
    else:
        span = ""
    return (
        f"index date {date.isoformat()}: nobody in {store.path} is registered with a "
        f"practice on that date{span}, so nobody would be counted"
    )


def unregistered(store) -> str | None:
    """A note for a store that holds no GP registrations at all (areas only, or records
    ingested with ``--registrations recorded`` from a source that records none): every
    programme then finds nobody, as documented, so it is said, not refused."""
    import pyarrow.parquet as pq

    if pq.ParquetFile(store.table_path("registrations")).metadata.num_rows:
        return None
    return (
        f"{store.path} holds no GP registrations, so the programmes find nobody: ingest "
        "patient records into it (`pophealth ingest ... --out STORE`; --registrations "
        "infer-missing infers them where the source records none)"
    )


def check_writable(path: Path, what: str, *, folder: bool) -> None:
    """Stop before any work when ``path`` — a ``folder`` or file to write, which need not
    exist yet — cannot be written: it is a file where a folder is wanted (or the reverse),
    a folder on its way is a file, or the nearest folder that exists refuses a new file.
    Creates nothing."""
    if folder and path.exists() and not path.is_dir():
        raise fail(f"{what} {path} is a file, not a folder")
    if not folder and path.is_dir():
        raise fail(f"{what} {path} is a folder; name the file to write")
    existing = next(p for p in (path, *path.parents) if p.exists())
    if existing != path and not existing.is_dir():
        raise fail(f"{what} {path}: cannot write there, {existing} is a file, not a folder")
    probe = existing if existing.is_dir() else existing.parent
    try:
        with tempfile.TemporaryFile(dir=probe, prefix=".pophealth-probe-"):
            pass
    except OSError as exc:
        raise fail(f"{what} {path}: cannot write in {probe}: {exc.strerror or exc}") from None


def check_engine(value: str) -> str:
    """``--engine``: a known engine, and for Spark one this install can start (PySpark
    and Java are an extra, absent from a plain install); checked before any work."""
    if value not in ENGINES:
        raise typer.BadParameter(f"choose one of: {', '.join(ENGINES)}")
    if value == "spark":
        import importlib.util
        import os
        import shutil

        if importlib.util.find_spec("pyspark") is None:
            raise typer.BadParameter(
                "the Spark engine needs the `spark` extra: uv sync --extra spark "
                "(or pip install 'pophealth[spark]'); or use --engine duckdb"
            )
        if not os.environ.get("JAVA_HOME") and shutil.which("java") is None:
            raise typer.BadParameter(
                "the Spark engine needs Java 17 (no `java` on PATH and JAVA_HOME is not "
                "set); or use --engine duckdb"
            )
    return value


EngineOption = Annotated[
    str,
    typer.Option(
        "--engine",
        help="Where definitions run: duckdb (embedded default) or spark (scale-out).",
        callback=check_engine,
    ),
]


@contextmanager
def progress():
    """A Rich progress display on stderr; yields a ``step(description, fraction)``-style
    :class:`rich.progress.Progress`. Work that completes leaves its bar on the screen (or
    in the log); work stopped by an error, Ctrl-C or an exit leaves none, so a failed
    command says one line: its error, not that and a bar stopped at 0%."""
    bar = Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    bar.start()
    try:
        yield bar
    except BaseException:
        # cleared from a terminal and never written to a log (nor Rich's blank line after
        # a bar in a log, which Progress.stop adds)
        bar.live.transient = True
        bar.live.stop()
        raise
    bar.stop()


CodelistsOption = Annotated[
    Path | None,
    typer.Option(
        "--codelists",
        help="Folder of your own code lists (OpenCodelists CSVs), each named as the list it "
        "replaces, e.g. hypertension_diagnosis.csv; the other lists stay pophealth's curated "
        "ones, which are small illustrative subsets. See docs/codelists.md.",
    ),
]


def read_codelists_option(folder: Path | None, *, programmes_only: bool = True):
    """``--codelists``, read and checked before any work
    (:func:`pophealth.codelists.read_own_codelists`); None: the curated lists only.
    ``programmes_only``: a file must be named as a list a programme reads (a definition
    file names its own lists, so ``dataset`` and ``measures`` take any name)."""
    from pophealth import programmes
    from pophealth.codelists import CodelistError, read_own_codelists

    if folder is None:
        return None
    try:
        known = programmes.codelist_names() if programmes_only else None
        return read_own_codelists(folder, known=known)
    except CodelistError as exc:
        # the loader's hint is the Python keyword; on the command line a folder's lists
        # take their system from its MANIFEST.csv (docs/codelists.md)
        message = str(exc).replace(
            "pass system=...",
            f"name the list's system in {Path(folder) / 'MANIFEST.csv'} (columns name,system)",
        )
        raise fail(f"--codelists: {message}") from None


def warn_curated(store, own, who: str) -> None:
    """Warn when a run on a store that ``pophealth synth`` did not make read curated code
    lists (``own.curated``): small illustrative subsets, which on real records leave most
    patients out."""
    if store.metadata.get("synthetic") or not own.curated:
        return
    names = sorted(own.curated)
    if own.folder is None:
        what = "no --codelists: " + who + " read pophealth's curated code lists"
    else:
        what = f"{who} read {len(names)} curated code list(s) not in {own.folder}: " + ", ".join(
            names
        )
    console.print(
        f"[yellow]warning:[/yellow] {what}; the curated lists are small illustrative subsets "
        "that the synthetic data is made from, and on real records most patients' codes are "
        "not in them (see docs/codelists.md)",
        highlight=False,
        soft_wrap=True,
    )


@contextmanager
def warning_lines():
    """pophealth's own warnings raised in the block (a disclosure audit's "could still be
    derived", an SII not computed) printed as ``warning:`` lines, each once, not as Python's
    warning with its source file and line; other libraries' warnings pass through."""
    import warnings

    package = str(Path(__file__).resolve().parents[1])
    with warnings.catch_warnings(record=True) as caught:  # (the filters stay as they are)
        yield
    said = set()
    for w in caught:
        text = str(w.message)
        if str(Path(w.filename).resolve()).startswith(package):
            if text not in said:
                said.add(text)
                console.print(f"[yellow]warning:[/yellow] {text}", highlight=False, soft_wrap=True)
        else:  # raised again, outside the block, as it came
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
