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
