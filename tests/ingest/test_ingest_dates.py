"""A date is read with its day or quarantined: "2020" or "2020-03" is not moved to the first
of the year or month, and text after a date is not cut off (flat CSV and OMOP)."""

from __future__ import annotations

import pandas as pd

from pophealth.ingest.flat import ingest_csv
from pophealth.ingest.omop import ingest_omop
from pophealth.store import Store
from tests.ingest.ingest_helpers import omop_weights

KEY = b"dates-key-0123456789abcdef"


def _quarantined(summary) -> dict[str, tuple[str, str]]:
    q = pd.read_csv(summary.quarantine_file, dtype=str)
    return {r.location: (r.field, r.reason) for r in q.itertuples()}


def test_flat_dates_without_their_day_are_quarantined(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    (d / "patients.csv").write_text(
        "patient_id,date_of_birth,sex,ethnicity_5,ethnicity_16\np1,1960-05-01,male,unknown,Z\n"
    )
    (d / "events.csv").write_text(
        "patient_id,date,system,code\n"
        "p1,2020-03-04,snomedct,271649006\n"
        "p1,20200305,snomedct,271649006\n"
        "p1,2020,snomedct,271649006\n"
        "p1,2020-03,snomedct,271649006\n"
    )
    s = ingest_csv(d, tmp_path / "st")
    assert s.balanced
    ev = Store.open(tmp_path / "st").read("events").to_pandas()
    assert sorted(ev.date.astype(str)) == ["2020-03-04", "2020-03-05"]
    q = _quarantined(s)
    assert q["line 4"][0] == "date" and q["line 4"][1].startswith("not a date")
    assert q["line 5"][0] == "date"


def test_omop_text_after_a_date_is_not_cut_off(tmp_path):
    d = omop_weights(
        tmp_path / "omop",
        "measurement_id,person_id,measurement_concept_id,measurement_date,value_as_number\n"
        "1,1,3025315,2013-05-17 00:00:00,48.1\n"
        "2,1,3025315,2013-05-19xyz,50.0\n",
    )
    s = ingest_omop(d, tmp_path / "st", key=KEY)
    assert s.balanced
    ev = Store.open(tmp_path / "st").read("events").to_pandas()
    assert list(ev.date.astype(str)) == ["2013-05-17"]
    assert _quarantined(s)["line 3"][1].startswith("not a date")
