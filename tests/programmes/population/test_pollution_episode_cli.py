"""`pophealth asthma pollution-episode` as a user runs it."""

from __future__ import annotations

import pandas as pd
from typer.testing import CliRunner

from pophealth.cli import app
from pophealth.synth import write_synthetic_store


def test_pollution_episode_lists_at_risk_patients_in_forecast_areas(tmp_path):
    store = write_synthetic_store(tmp_path / "s", patients=2000, seed=3, progress=None)
    areas = store.read("areas").to_pandas()
    polluted = areas.sort_values("no2_component", ascending=False).head(20)["lsoa_code"]
    forecast = tmp_path / "forecast.csv"
    pd.DataFrame({"code": polluted, "date": "2026-03-31"}).to_csv(forecast, index=False)
    out = tmp_path / "episode.csv"
    result = CliRunner().invoke(
        app,
        [
            "asthma",
            "pollution-episode",
            "--store",
            str(tmp_path / "s"),
            "--areas",
            str(forecast),
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    listing = pd.read_csv(out, dtype=str)
    assert len(listing) > 0
    assert set(listing["lsoa_code"]) <= set(polluted)
    assert set(listing["tier"]) <= {"high", "moderate"}
    # the console gives the counts of patients under the disclosure rule, not exactly
    said = " ".join(result.output.split())
    shown = "1-7" if len(listing) <= 7 else f"about {int(5 * round(len(listing) / 5)):,}"
    assert said.startswith(f"{shown} patients at "), said


def test_bad_area_code_names_file_row_and_field(tmp_path):
    store_dir = tmp_path / "s"
    write_synthetic_store(store_dir, patients=50, seed=1, progress=None)
    forecast = tmp_path / "forecast.csv"
    forecast.write_text("code\nX01000001\nLONDON\n")
    result = CliRunner().invoke(
        app,
        [
            "asthma",
            "pollution-episode",
            "--store",
            str(store_dir),
            "--areas",
            str(forecast),
            "--out",
            str(tmp_path / "o.csv"),
        ],
    )
    assert result.exit_code != 0
    assert "row 3, field 'code'" in result.output


def test_codes_that_are_no_area_of_the_store_are_named(tmp_path):
    """A well-formed code of another region (or a typo) matches nobody: the list would be
    silently short, so the console names it (and only it: the store's own LSOA and local
    authority codes are not named)."""
    store = write_synthetic_store(tmp_path / "s", patients=200, seed=2, progress=None)
    areas = store.read("areas").to_pandas()
    mine = [areas["lsoa_code"].iloc[0], areas["lad_code"].dropna().iloc[0]]
    forecast = tmp_path / "forecast.csv"
    forecast.write_text("code\n" + "\n".join([*mine, "E01000001"]) + "\n")
    result = CliRunner().invoke(
        app,
        ["asthma", "pollution-episode", "--store", str(tmp_path / "s"), "--areas",
         str(forecast), "--out", str(tmp_path / "o.csv")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "1 of 3 codes are no LSOA or local authority of the store's areas" in said, said
    assert said.count("E01000001") == 1 and mine[0] not in said.split("match nobody:")[1]
