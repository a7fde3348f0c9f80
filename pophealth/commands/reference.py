"""``pophealth reference``: build the areas and practices tables from the official files,
and download those files from their publishers."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pophealth.commands._common import check_writable, console, fail, progress

app = typer.Typer(
    help=(
        "Official small-area reference data: `build` makes the areas table (IMD rank, "
        "decile, quintile, Core20, domain deciles, air-quality components and quintiles, "
        "fuel poverty, population, MSOA/LAD/sub-ICB/ICB, rural-urban) and the practices "
        "table from a reference folder laid out like ../shared/data; `download` fetches "
        "the files from their publishers (or a mirror)."
    ),
    no_args_is_help=True,
)


def build_command(
    from_: Annotated[
        Path,
        typer.Option(
            "--from",
            help="Reference folder, laid out like ../shared/data (imd2019/, imd2025/, "
            "air_quality/, fuel_poverty/, population/, esp2013/, geography/, geography/gp/).",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Store directory to write (new or existing).")],
    imd: Annotated[
        str,
        typer.Option(
            "--imd",
            help="Indices of Deprivation release: 2019 (LSOA 2011, 32,844 areas) or 2025 "
            "(LSOA 2021, 33,755 areas).",
        ),
    ] = "2019",
) -> None:
    """Build the areas and practices tables and write them into STORE (other tables kept)."""
    from pophealth.reference._read import ReferenceDataError
    from pophealth.reference.build import RELEASES, ReferenceWarning, build_reference_store
    from pophealth.store import StoreError

    if imd not in RELEASES:
        raise fail(f"--imd must be one of {', '.join(RELEASES)}, not {imd!r}")
    if not from_.exists():
        raise fail(f"--from {from_}: no such folder")
    if not from_.is_dir():
        raise fail(f"--from {from_} is a file; give the reference folder it came from")
    check_writable(out, "--out", folder=True)
    steps = 40
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ReferenceWarning)  # listed in the report below
            with progress() as bar:
                task = bar.add_task(f"building areas (IoD{imd})", total=steps)

                def step(message: str) -> None:
                    bar.update(task, advance=1, description=message)

                store, report = build_reference_store(from_, out, imd, step=step)
                bar.update(task, completed=steps, description="done")
    except ReferenceDataError as exc:
        raise fail(str(exc)) from None
    except StoreError as exc:
        raise fail(str(exc)) from None
    for w in report.warnings:
        console.print(f"[yellow]warning:[/yellow] {w}", highlight=False, soft_wrap=True)
    for note in report.notes:
        console.print(f"note: {note}", highlight=False, soft_wrap=True)
    p = report.practices
    console.print(
        f"areas: {report.rows:,} LSOAs ({report.imd_release}, LSOA {report.lsoa_vintage}); "
        f"practices: {p.get('gp_practices', 0):,} GP practices "
        f"({p.get('active', 0):,} active)",
        highlight=False,
    )
    if report.missing_values:
        missing = ", ".join(f"{k} {v:,}" for k, v in report.missing_values.items())
        console.print(f"LSOAs without a value: {missing}", highlight=False, soft_wrap=True)
    console.print(store.summary(), highlight=False)


def download_command(
    to: Annotated[Path, typer.Option("--to", help="Folder to download into (created).")],
    base_url: Annotated[
        str | None,
        typer.Option(
            "--base-url",
            help="Fetch every file from this mirror of the reference-folder layout instead "
            "of the publishers (files verified against their known SHA-256).",
        ),
    ] = None,
    only: Annotated[
        list[str] | None,
        typer.Option("--only", help="Fetch only these sources (repeatable), e.g. imd2019_file2."),
    ] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds per request.")] = 60.0,
    force: Annotated[
        bool, typer.Option("--force", help="Fetch again even when the checksum matches.")
    ] = False,
) -> None:
    """Fetch the official reference files (needs a network connection).

    Publishers serve 6 of the files directly (IoD2019 Files 1, 2, 3 and 6, Census 2021
    TS021, ODS epraccur); the others were converted from R data packages or workbooks and
    have no direct download: they are listed as skipped, with the page where the data is
    published. --base-url fetches every file from a mirror of the reference folder.
    """
    from pophealth.reference.download import download
    from pophealth.reference.sources import BY_KEY

    if only:
        unknown = [k for k in only if k not in BY_KEY]
        if unknown:
            raise fail(f"unknown source(s) {', '.join(unknown)}; known: {', '.join(BY_KEY)}")
    if base_url is not None and not base_url.startswith(("http://", "https://")):
        raise fail(f"--base-url must be an http(s) URL, not {base_url!r}")
    if not (math.isfinite(timeout) and timeout > 0):
        raise fail(f"--timeout must be a positive number of seconds, not {timeout:g}")
    check_writable(to, "--to", folder=True)
    with progress() as bar:
        task = bar.add_task("downloading", total=None)

        def on_file(src, url) -> None:
            bar.update(task, description=f"{src.key}", completed=0, total=None)

        def on_bytes(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        try:
            results = download(
                to, base_url=base_url, keys=only, timeout=timeout, force=force,
                on_file=on_file, on_bytes=on_bytes,
            )  # fmt: skip
        except OSError as exc:  # a folder of the layout that cannot be made under --to
            where = exc.filename or to
            raise fail(f"--to {to}: cannot write {where}: {exc.strerror or exc}") from None
    table = Table("source", "status", "file", "detail")
    for r in results:
        colour = {"failed": "red", "skipped": "yellow"}.get(r.status, "green")
        table.add_row(r.key, f"[{colour}]{r.status}[/{colour}]", str(r.path or ""), r.message)
    console.print(table)
    failed = [r for r in results if r.status == "failed"]
    if failed and all(_offline(r.message) for r in failed) and base_url is not None:
        raise fail(
            f"{len(failed)} file(s) failed to download: the mirror {base_url} could not be "
            "reached (is it running, and is the address right?)",
            code=1,
        )
    if failed and all(_offline(r.message) for r in failed):
        raise fail(
            f"{len(failed)} file(s) failed to download: the publishers could not be reached "
            "(no network connection?). Copy the reference folder from a machine that has "
            "one, or use --base-url with a mirror you can reach.",
            code=1,
        )
    if failed:
        raise fail(f"{len(failed)} file(s) failed to download; see the table above", code=1)


#: How a failed download reads when the host could not be reached at all.
_OFFLINE = (
    "Name or service not known",
    "Temporary failure in name resolution",
    "nodename nor servname",
    "getaddrinfo failed",
    "Network is unreachable",
    "No route to host",
    "Connection refused",
    "timed out",
)


def _offline(message: str) -> bool:
    return any(text in message for text in _OFFLINE)


app.command("build")(build_command)
app.command("download")(download_command)
