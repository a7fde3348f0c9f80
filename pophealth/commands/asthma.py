"""``pophealth asthma``: asthma commands beyond the programme run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pophealth.commands._common import (
    CodelistsOption,
    EngineOption,
    check_writable,
    console,
    engine_errors,
    fail,
    read_codelists_option,
    warn_curated,
)

app = typer.Typer(
    help="Asthma programme tools (the programme itself: `pophealth run asthma`).",
    no_args_is_help=True,
)


def _warn_unknown_areas(store, wanted, path: Path) -> None:
    """Warn of forecast codes that are no LSOA or local authority of the store's areas: a
    typo or another region's code matches nobody, and the list would be silently short."""
    known = store.read("areas").select(["lsoa_code", "lad_code"]).to_pandas()
    codes = wanted["code"].drop_duplicates()
    unknown = codes[~codes.isin(known["lsoa_code"]) & ~codes.isin(known["lad_code"])].tolist()
    if unknown:
        shown = ", ".join(unknown[:10]) + (
            f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        )
        console.print(
            f"[yellow]warning:[/yellow] --areas {path}: {len(unknown):,} of {len(codes):,} "
            f"codes are no LSOA or local authority of the store's areas, so match nobody: "
            f"{shown}",
            highlight=False,
            soft_wrap=True,
        )


@app.command("pollution-episode")
def pollution_episode(
    store: Annotated[Path, typer.Option("--store", help="Store directory to read.")],
    areas: Annotated[
        Path,
        typer.Option(
            "--areas",
            help="CSV of areas forecast to have high pollution: a 'code' column of LSOA or "
            "local-authority codes. Other columns (e.g. date) may be there; they are not "
            "copied into the list.",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="File to write, .csv, .csv.gz or .parquet: patient-level, for the care team "
            "only (replaced, once complete, if it exists).",
        ),
    ],
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
    """High- and moderate-risk asthma patients living where high pollution is forecast,
    per practice, ready for a warning message. Patient-level: for the care team only.

    One row per patient, by practice, then tier and priority: practice_id, practice_name,
    patient_id, age, tier, reasons, lsoa_code, lad_code. The console gives the number of
    patients through the disclosure-control rule.
    """
    from pophealth.codelists import OwnCodelists, own_codelists
    from pophealth.commands.query import output_format, write_table, writing
    from pophealth.commands.run import parse_date, programme_index_date
    from pophealth.disclosure import count_text
    from pophealth.programmes.asthma.codes import curated
    from pophealth.programmes.asthma.outputs import pollution_episode_list, read_episode_areas
    from pophealth.programmes.asthma.programme import evaluate
    from pophealth.query import connect
    from pophealth.store import Store, StoreError

    suffix = output_format(out, "--out")
    date = parse_date(index_date)
    if not areas.exists():
        raise fail(f"--areas {areas}: no such file")
    if areas.is_dir():
        raise fail(f"--areas {areas} is a folder; name the CSV of forecast areas")
    check_writable(out, "--out", folder=False)
    own = read_codelists_option(codelists) or OwnCodelists(folder=None, lists={})
    try:
        opened = Store.open(store)
        wanted = read_episode_areas(areas)
    except (StoreError, ValueError) as exc:
        raise fail(str(exc)) from None
    if not len(wanted):
        raise fail(f"--areas {areas} lists no areas: nobody could be at risk; nothing written")
    date = programme_index_date(opened, date)
    _warn_unknown_areas(opened, wanted, areas)
    with engine_errors(engine), own_codelists(own):
        frame = evaluate(connect(opened, engine), date, curated(), engine=engine)
    warn_curated(opened, own, "the asthma programme")
    listing = pollution_episode_list(frame, wanted)
    with writing(out):
        write_table(listing, out, suffix)
    practices = listing["practice_id"].nunique()
    # counts of patients leave through the disclosure rule, like every aggregate
    patients, unmatched = len(listing), listing.attrs.get("unknown_area", 0)
    console.print(
        f"{count_text(patients)} patients at {practices:,} practices in {len(wanted):,} "
        f"forecast areas; {count_text(unmatched)} at-risk patients have no known home area "
        "and could not be matched."
    )
    typer.echo(str(out.resolve()))
