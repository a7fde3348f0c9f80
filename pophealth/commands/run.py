"""``pophealth run PROGRAMME`` and ``pophealth demo``."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

from pophealth import programmes
from pophealth.codelists import OwnCodelists
from pophealth.commands._common import (
    CodelistsOption,
    EngineOption,
    check_writable,
    console,
    engine_errors,
    fail,
    nobody_registered,
    parse_index_date,
    progress,
    read_codelists_option,
    unregistered,
    warn_curated,
    warning_lines,
)

#: The canonical dataset (STYLE.md): `pophealth synth --seed 42 --patients 10000`.
DEMO_PATIENTS = 10_000
DEMO_SEED = 42
DEMO_OUT = Path("pophealth-demo")
PROGRAMME_HELP = "Programme to run: " + ", ".join(programmes.names())


def parse_date(value: str | None) -> dt.date | None:
    """``--index-date`` as a date (see :func:`pophealth.commands._common.parse_index_date`)."""
    return parse_index_date(value)


def default_index_date(store) -> dt.date:
    """The store's extract date when it records one (synthetic data does), else today."""
    recorded = store.metadata.get("extract_date")
    return dt.date.fromisoformat(recorded) if recorded else dt.date.today()


def programme_index_date(store, date: dt.date | None) -> dt.date:
    """The index date a programme runs on (``date``, else the store's extract date, else
    today): the command stops when it is in the future or nobody is registered on it, and
    warns when it is after the store's extract date or the store holds no registrations."""
    date = date or default_index_date(store)
    if date > dt.date.today():
        raise fail(
            f"--index-date {date.isoformat()} is in the future: nobody's records reach it "
            "(the default is the store's extract date)"
        )
    recorded = store.metadata.get("extract_date")
    if recorded and date > dt.date.fromisoformat(recorded):
        console.print(
            f"[yellow]warning:[/yellow] --index-date {date.isoformat()} is after the store's "
            f"extract date {recorded}: records after that are not in the store, so windows "
            "reaching past it count less than they would",
            highlight=False,
            soft_wrap=True,
        )
    why = nobody_registered(store, date)
    if why:
        raise fail(why)
    note = unregistered(store)
    if note:
        console.print(f"[yellow]warning:[/yellow] {note}", highlight=False, soft_wrap=True)
    return date


def run_programmes(
    store, names: list[str], *, index_date: dt.date, engine: str, bar=None, own=None
):
    """Run the named programmes on one backend; returns their results in order. ``own``:
    a folder's code lists (:func:`pophealth.codelists.read_own_codelists`), each in place of
    the curated list of its name; it records the lists served from each source. A code list
    a programme needs that cannot be read stops the command with its message."""
    from pophealth.codelists import CodelistError, own_codelists
    from pophealth.query import connect

    backend = connect(store, engine)  # tables registered on first use
    results = []
    task = bar.add_task("running programmes", total=len(names)) if bar else None
    for name in names:
        if bar:
            bar.update(task, description=f"programme: {name}")
        try:
            with engine_errors(engine), own_codelists(own), warning_lines():
                result = programmes.get(name).run(backend, index_date=index_date, engine=engine)
        except CodelistError as exc:
            message = str(exc) if name in str(exc) else f"programme {name!r}: {exc}"
            raise fail(message) from None
        results.append(result)
        if bar:
            bar.advance(task)
    return results


def run_command(
    programme: Annotated[
        str, typer.Argument(help="Programme to run: " + ", ".join(programmes.names()))
    ],
    store: Annotated[Path, typer.Option("--store", help="Store directory to read.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the report and CSV outputs.")],
    index_date: Annotated[
        str | None,
        typer.Option(
            "--index-date",
            help="YYYY-MM-DD, not in the future; default: the store's extract date (today "
            "if it records none).",
        ),
    ] = None,
    engine: EngineOption = "duckdb",
    codelists: CodelistsOption = None,
) -> None:
    """Run one programme on a store: aggregate CSVs, care-team worklists and an HTML report.

    Into --out: aggregate/PROGRAMME/*.csv (disclosure-controlled: counts of 1-7 withheld,
    others rounded to the nearest 5; what report.html shows), patient-level/PROGRAMME/*.csv
    (pseudonymous worklists for the direct care team only; never publish them; how to read
    them: patient-level/README.txt) and report.html, which opens offline. Files of the same
    name from an earlier run are replaced, each only once it is complete; a CSV an earlier
    run left in aggregate/PROGRAMME or patient-level/PROGRAMME that this run did not write
    (a worklist of a PCN with nobody listed now) is removed; other files in --out are left
    alone.
    """
    from pophealth.store import Store, StoreError

    if programme not in programmes.names():
        import difflib

        close = difflib.get_close_matches(programme.lower(), programmes.names(), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise fail(
            f"no programme {programme!r}; {hint}choose one of: {', '.join(programmes.names())}"
        )
    date = parse_date(index_date)
    check_writable(out, "--out", folder=True)
    own = read_codelists_option(codelists) or OwnCodelists(folder=None, lists={})
    try:
        opened = Store.open(store)
    except StoreError as exc:
        raise fail(str(exc)) from None
    date = programme_index_date(opened, date)
    with progress() as bar:
        results = run_programmes(
            opened, [programme], index_date=date, engine=engine, bar=bar, own=own
        )
    report, files = _write_report(
        results,
        out,
        title=f"pophealth — {results[0].title}",
        subtitle=f"store {store}; {_codelists_text(own)}",
    )
    if own.folder is not None:
        unused = sorted(set(own.lists) - own.used)
        console.print(
            f"code lists from {own.folder}: {', '.join(sorted(own.used)) or 'none'} read"
            + (f"; not read by {programme}: {', '.join(unused)}" if unused else ""),
            highlight=False,
            soft_wrap=True,
        )
    warn_curated(opened, own, "the programme")
    _print_outputs(report, files)


def _codelists_text(own) -> str:
    """The report's line on where the run's code lists came from."""
    if own.folder is None:
        return "code lists: pophealth's curated lists (illustrative subsets)"
    used = sorted(own.used)
    return (
        f"code lists: {', '.join(used) or 'none'} from {own.folder}, "
        "the others pophealth's curated lists (illustrative subsets)"
    )


def demo_command(
    out: Annotated[
        Path, typer.Option("--out", help="Folder for everything the demo writes.")
    ] = Path("pophealth-demo"),
    patients: Annotated[
        int, typer.Option("--patients", help="Synthetic patients.")
    ] = DEMO_PATIENTS,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = DEMO_SEED,
    engine: EngineOption = "duckdb",
) -> None:
    """Make the synthetic population, run every programme, write the report and CSVs.

    Everything lands in --out: the store (store/), aggregate CSVs (aggregate/,
    disclosure-controlled: counts of 1-7 withheld, others rounded to the nearest 5),
    care-team worklists (patient-level/, with a README.txt on reading them) and report.html,
    which opens offline. Running it again replaces the store and the files of the same name.
    """
    from pophealth.commands.core import synth_command
    from pophealth.store import Store

    check_writable(out, "--out", folder=True)
    store_dir = out / "store"
    synth_command(out=store_dir, patients=patients, seed=seed)
    store = Store.open(store_dir)
    date = default_index_date(store)
    with progress() as bar:
        results = run_programmes(store, programmes.names(), index_date=date, engine=engine, bar=bar)
    report, files = _write_report(
        results,
        out,
        title="pophealth demo — fictional region",
        subtitle=(
            f"Synthetic population of {patients:,} patients (seed {seed}) in a fictional "
            "region: no real person or place. Index date " + date.isoformat() + "."
        ),
    )
    _print_outputs(report, files)


def _write_report(results, out: Path, **texts: str) -> tuple[Path, dict[str, list[Path]]]:
    """:func:`pophealth.report.write_report`, a failure to write (disk full, a file where
    a folder of outputs goes) stopping the command with a line naming it."""
    from pophealth.report import write_report

    try:
        return write_report(results, out, **texts)
    except OSError as exc:
        where = exc.filename or out
        raise fail(f"--out {out}: cannot write {where}: {exc.strerror or exc}") from None


def _print_outputs(report: Path, files: dict[str, list[Path]]) -> None:
    console.print(f"aggregate CSVs: {len(files['aggregate'])}, worklists: {len(files['patient'])}")
    console.print(f"report: [bold]{report.resolve()}[/bold]")
    typer.echo(str(report.resolve()))


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)
    app.command("demo")(demo_command)
