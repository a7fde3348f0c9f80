"""Programmes: one package per clinical programme, registered by name.

A programme declares what it needs (code lists, cohorts, variables, indicators,
worklist columns) and reuses the shared layers. It is a module exposing a
``PROGRAMME`` object that satisfies :class:`Programme`; adding one means adding
its module name to :data:`REGISTRY` — nothing in the core changes.

Outputs are split by audience: ``aggregate`` tables have passed the
disclosure-control rule and can be shared; ``patient`` tables (worklists) are for
the care team only and are written to a separate folder, never into the report.

Where two of a programme's tables give the same count (a PCN's denominator in an
indicator's breakdown and, as the sum of its practices, in a practice table), the
programme keys its counts (:func:`pophealth.disclosure.count_keys`) and builds those
tables in :meth:`pophealth.disclosure.SharedCounts.settle`, so each count is withheld in
every table or released with one value. Every number a chart draws is a value of an
aggregate output, so a reader finds it in a CSV.
"""

from __future__ import annotations

import datetime as dt
import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    import pandas as pd

#: name → module; each module has a ``PROGRAMME`` attribute.
REGISTRY: dict[str, str] = {
    "population": "pophealth.programmes.population",
    "asthma": "pophealth.programmes.asthma",
    "cvd": "pophealth.programmes.cvd",
}


@dataclass
class Figure:
    """A chart for the report: a Plotly figure and the sentence that explains it."""

    title: str
    figure: Any  # plotly.graph_objects.Figure
    caption: str = ""


@dataclass
class Output:
    """A table a programme produces.

    ``kind="aggregate"`` tables must have gone through :mod:`pophealth.disclosure`
    (``disclosure`` names the policy applied); ``kind="patient"`` tables are
    pseudonymous patient-level lists for the care team.
    """

    name: str
    kind: Literal["aggregate", "patient"]
    frame: pd.DataFrame
    description: str
    disclosure: str | None = None
    show_in_report: bool = True

    def __post_init__(self) -> None:
        if self.kind == "aggregate" and not self.disclosure:
            raise ValueError(
                f"aggregate output {self.name!r} has not been through disclosure control"
            )


@dataclass
class Section:
    """A part of the HTML report."""

    title: str
    text: str = ""
    figures: list[Figure] = field(default_factory=list)
    tables: list[Output] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class ProgrammeResult:
    programme: str
    title: str
    index_date: dt.date
    engine: str
    outputs: list[Output] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    headline: dict[str, Any] = field(default_factory=dict)


class Programme(Protocol):
    name: str
    title: str

    def run(self, backend: Any, *, index_date: dt.date, engine: str) -> ProgrammeResult: ...


def get(name: str) -> Programme:
    """The registered programme called ``name``."""
    try:
        module = REGISTRY[name]
    except KeyError:
        raise KeyError(
            f"no programme {name!r}; the programmes are: {', '.join(REGISTRY)}"
        ) from None
    return importlib.import_module(module).PROGRAMME


def names() -> list[str]:
    return list(REGISTRY)


def codelist_names() -> frozenset[str]:
    """Every code-list name :func:`pophealth.codelists.codelist` may be asked for by a
    registered programme: the curated lists, and the names a programme module declares in
    ``CODELIST_NAMES`` that no curated list has yet (e.g. a severe-asthma-centre referral)."""
    from pophealth.codelists import curated_manifest

    out = set(curated_manifest())
    for module in REGISTRY.values():
        out.update(getattr(importlib.import_module(module), "CODELIST_NAMES", ()))
    return frozenset(out)
