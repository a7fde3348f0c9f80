"""Top-level commands: ``schema``, ``synth`` and ``demo``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pophealth.commands._common import check_writable, console, fail, progress

#: Above this a synthetic population is almost certainly a typo (England has ~57 M people).
MAX_SYNTH_PATIENTS = 70_000_000


def schema_command() -> None:
    """Print the canonical schema as Markdown."""
    from pophealth.schema import to_markdown

    typer.echo(to_markdown())


def synth_command(
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Store directory to write: new, empty, or a store whose tables are all "
            "replaced (atomically; the old snapshot stays readable until then).",
        ),
    ],
    patients: Annotated[int, typer.Option("--patients", help="Number of patients.")] = 10_000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same data).")] = 42,
) -> None:
    """Make a realistic synthetic population in a fictional region (the canonical dataset).

    The same --seed and --patients give byte-identical tables.
    """
    if patients <= 0:
        raise fail(f"--patients must be a positive number of patients, not {patients}")
    if patients > MAX_SYNTH_PATIENTS:
        raise fail(
            f"--patients {patients:,} is more than England's population; "
            f"use at most {MAX_SYNTH_PATIENTS:,}"
        )
    if seed < 0:
        raise fail(f"--seed must be zero or positive, not {seed}")
    from pophealth.store import Store, StoreError
    from pophealth.synth import write_synthetic_store

    check_writable(out, "--out", folder=True)  # before minutes of generating
    try:
        Store.open_or_new(out)  # refuses non-stores and other schema versions up front
        with progress() as bar:
            store = write_synthetic_store(out, patients=patients, seed=seed, progress=bar)
    except StoreError as exc:
        raise fail(str(exc)) from None
    console.print(store.summary(), highlight=False)


def register(app: typer.Typer) -> None:
    app.command("schema")(schema_command)
    app.command("synth")(synth_command)
