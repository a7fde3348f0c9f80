"""The patient-level folder's README tells the care team how to read the lists' columns:
which end of the deprivation and pollution scales is worst (IMD 1 is the most deprived,
pollution quintile 5 the most polluted: the two run in opposite directions), what AMR is,
and that medicine counts are issues. Every column it names is a column of the demo's
lists, so the guide cannot drift from them."""

from __future__ import annotations

import csv
import re


def test_the_readme_guides_the_columns_the_lists_have(demo_run):
    folder = demo_run.out / "patient-level"
    text = (folder / "README.txt").read_text()
    assert "1 is the MOST deprived" in text and "5 is the MOST" in text
    assert "preventer issues / (preventer + reliever issues)" in text
    columns = set()
    for path in folder.glob("*/*.csv"):
        with path.open(newline="") as fh:
            columns |= set(next(csv.reader(fh)))
    guide = text.split("READING THE COLUMNS", 1)[1]
    named = {
        name
        for line in guide.splitlines()
        if line.startswith("- ") and ":" in line
        for name in re.findall(r"[a-z0-9_]+", line[2:].split(":", 1)[0])
    }
    assert named, "the guide names no column"
    assert named <= columns, f"named in the guide but in no list: {sorted(named - columns)}"
