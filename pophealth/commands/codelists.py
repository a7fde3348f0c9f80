"""``pophealth codelists``: the code lists a definition's ``codelist(NAME)`` can read."""

from __future__ import annotations

import csv
import sys
from typing import Annotated

import typer

from pophealth.commands._common import fail
from pophealth.commands.query import DefinitionCodelistsOption, _own

CODELISTS_HELP = (
    "List the code lists a definition file's codelist(NAME) can read, with their coding "
    "system, number of codes and description: pophealth's curated lists (small "
    "illustrative subsets) and, with --codelists, your folder's, which stand in for curated "
    "lists of the same name. Given NAME, print that list's codes as CSV (system, code, term, "
    "then any category and number columns) as codelist(NAME) reads them."
)


def codelists_command(
    name: Annotated[
        str | None,
        typer.Argument(help="A list's name: print its codes as CSV instead of the list."),
    ] = None,
    codelists: DefinitionCodelistsOption = None,
) -> None:
    from pophealth.codelists import CodelistError, codelist, curated_manifest, own_codelists

    try:
        own = _own(codelists)
        with own_codelists(own):
            if name is not None:
                _print_codes(codelist(name))
                return
            manifest = curated_manifest()
            rows = []
            for list_name in sorted({*manifest, *own.lists}):
                cl = codelist(list_name)
                about = manifest.get(list_name, {}).get("description", "")
                where = "curated"
                if list_name in own.lists:  # the curated description is not of this list
                    where = "your folder"
                    about = f"{list_name}.csv" + (f", in place of: {about}" if about else "")
                rows.append((list_name, cl.system, _count(cl), where, about))
    except CodelistError as exc:
        raise fail(str(exc)) from None
    header = ("name", "system", "codes", "from", "description")
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(4)]
    for row in (header, *rows):
        lead = "  ".join(str(v).ljust(w) for v, w in zip(row[:4], widths, strict=True))
        typer.echo(f"{lead}  {row[4]}".rstrip())
    typer.echo(
        f"\n{len(rows)} lists. `pophealth codelists NAME` prints one list's codes; "
        "docs/codelists.md says how to use national lists instead."
    )


def _count(cl) -> int:
    return sum(len(codes) for codes in cl.codes.values())


def _print_codes(cl) -> None:
    """``cl``'s codes as CSV on stdout, one row per (system, code), sorted."""
    categories = sorted(cl.categories)
    numbers = sorted(cl.attributes)
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(["system", "code", "term", *categories, *numbers])
    for system in sorted(cl.codes):
        for code in sorted(cl.codes[system]):
            out.writerow(
                [
                    system,
                    code,
                    cl.terms.get(code, ""),
                    *(cl.categories[c].get(code, "") for c in categories),
                    *(_number(cl.attributes[a].get(code)) for a in numbers),
                ]
            )


def _number(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else repr(value)


def register(app: typer.Typer) -> None:
    app.command("codelists", help=CODELISTS_HELP)(codelists_command)
