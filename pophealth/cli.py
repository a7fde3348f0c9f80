"""The ``pophealth`` command line.

Each command group lives in its own module under :mod:`pophealth.commands` and is
registered in :data:`SUBCOMMANDS`; top-level commands are defined here.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from typing import Annotated

import typer

from pophealth import __version__
from pophealth.interrupted import INTERRUPTED, INTERRUPTED_MESSAGE

app = typer.Typer(
    name="pophealth",
    help=(
        "Open population-health-management engine for the English NHS: links patient "
        "records with small-area data (deprivation, air pollution, fuel poverty), finds "
        "who needs proactive care first, and shows where care is unequal."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: (command name, module exposing a ``typer.Typer`` called ``app``).
SUBCOMMANDS: list[tuple[str, str]] = [
    ("ingest", "pophealth.commands.ingest"),
    ("reference", "pophealth.commands.reference"),
    ("asthma", "pophealth.commands.asthma"),
]

#: Top-level command modules: each defines ``register(app)``.
COMMANDS: list[str] = [
    "pophealth.commands.core",
    "pophealth.commands.run",
    "pophealth.commands.query",
    "pophealth.commands.codelists",
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"pophealth {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """pophealth: population health management for the English NHS."""


def _reflow(text: str | None) -> str | None:
    """Help text with each paragraph on one line, for the terminal to wrap: Typer keeps the
    line breaks of a docstring's later paragraphs, so on an 80-column terminal each source
    line wrapped on its own ("withheld,", "are" alone on a line). Paragraphs stay apart;
    one marked with a leading backslash-b (Click's "keep as written") is left alone, and
    what follows a form feed (Click's "not for --help") is dropped, as Typer would."""
    if not text:
        return text
    paragraphs = inspect.cleandoc(text).partition("\f")[0].rstrip().split("\n\n")
    return "\n\n".join(p if p.startswith("\b") else " ".join(p.split()) for p in paragraphs)


def _reflow_help(group: typer.Typer) -> None:
    for command in group.registered_commands:
        command.help = _reflow(command.help or inspect.getdoc(command.callback))
    for sub in group.registered_groups:
        sub.typer_instance.info.help = _reflow(sub.typer_instance.info.help)
        _reflow_help(sub.typer_instance)


def _register() -> None:
    for module in COMMANDS:
        importlib.import_module(module).register(app)
    for name, module in SUBCOMMANDS:
        app.add_typer(importlib.import_module(module).app, name=name)
    _reflow_help(app)


_register()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``pophealth`` script."""
    try:
        app(args=argv, prog_name="pophealth")
    except KeyboardInterrupt:  # outside a command (typer turns one inside into exit 130)
        typer.secho(INTERRUPTED_MESSAGE, err=True)
        sys.exit(INTERRUPTED)
    except SystemExit as exc:
        if exc.code == INTERRUPTED:
            typer.secho(INTERRUPTED_MESSAGE, err=True)
        raise
