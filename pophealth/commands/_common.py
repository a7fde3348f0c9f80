"""Helpers shared by the CLI command modules: errors, options, progress."""

from __future__ import annotations

from contextlib import contextmanager
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


def check_engine(value: str) -> str:
    if value not in ENGINES:
        raise typer.BadParameter(f"choose one of: {', '.join(ENGINES)}")
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
    :class:`rich.progress.Progress`."""
    with Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        yield bar
