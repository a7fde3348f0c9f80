"""With real area boundaries in the store (a reference build), the population section
shows a choropleth of registered patients by LSOA; without them (the fictional region) none."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa

from pophealth.programmes.population import PROGRAMME
from pophealth.query import connect
from pophealth.schema import arrow_schema
from pophealth.store import Store

BOUNDARIES = "geography/LSOA_Dec_2011_Boundaries_BSC_EW_V3.geojson.gz"


def _table(name: str, rows: dict) -> pa.Table:
    schema = arrow_schema(name)
    n = len(next(iter(rows.values())))
    cols = {f.name: rows.get(f.name, [None] * n) for f in schema}
    return pa.table(cols, schema=schema)


def _store(tmp_path, boundaries):
    codes = [f"E0100000{i}" for i in (1, 2, 3, 5, 6)]  # five City of London LSOAs (2011)
    n = 200
    pids = [f"p{i}" for i in range(n)]
    start = dt.date(2000, 1, 1)
    tables = {
        "patients": _table(
            "patients",
            {
                "patient_id": pids,
                "date_of_birth": [dt.date(1960, 1, 1)] * n,
                "sex": ["female", "male"] * (n // 2),
                "ethnicity_5": ["unknown"] * n,
                "ethnicity_16": ["Z"] * n,
            },
        ),
        "registrations": _table(
            "registrations",
            {
                "patient_id": pids,
                "practice_id": ["A81001"] * n,
                "start_date": [start] * n,
            },
        ),
        "addresses": _table(
            "addresses",
            {
                "patient_id": pids,
                "start_date": [start] * n,
                # 150, 30, 15, 4 and 1 patients: the last two LSOAs' counts are suppressed
                "lsoa_code": [codes[0]] * 150
                + [codes[1]] * 30
                + [codes[2]] * 15
                + [codes[3]] * 4
                + [codes[4]],
                "care_home": [False] * n,
            },
        ),
        "areas": _table(
            "areas",
            {
                "lsoa_code": codes,
                "imd_release": ["IoD2019"] * 5,
                "core20": [False] * 5,
            },
        ),
    }
    extra = {"boundaries": {"path": str(boundaries)}} if boundaries else {}
    return Store.open_or_new(tmp_path / "s").write(tables, provenance={}, extra_metadata=extra)


def _figures(store):
    result = PROGRAMME.run(connect(store), index_date=dt.date(2025, 1, 1), engine="duckdb")
    return [f for s in result.sections for f in s.figures]


def test_choropleth_when_boundaries_are_available(tmp_path, shared_data):
    store = _store(tmp_path, shared_data / BOUNDARIES)
    maps = [f for f in _figures(store) if "LSOA" in f.title]
    assert len(maps) == 1
    trace = maps[0].figure.data
    shown = {}
    for t in trace:
        if t.locations is not None and t.z is not None:
            shown.update(zip(list(t.locations), list(t.z), strict=True))
    assert shown["E01000001"] == 150 and shown["E01000002"] == 30
    assert "5 LSOAs" in maps[0].caption
    assert all(v is None or v != v or v >= 10 or v == 0 for v in shown.values())


def test_no_map_for_the_fictional_region(tmp_path):
    store = _store(tmp_path, None)
    assert not [f for f in _figures(store) if "LSOA" in f.title]


def test_the_maps_values_are_an_aggregate_output(tmp_path, shared_data):
    """Every number the map draws is in a disclosure-controlled output written as a CSV
    (registered_by_lsoa); without a map there is no such output."""
    result = PROGRAMME.run(
        connect(_store(tmp_path, shared_data / BOUNDARIES)),
        index_date=dt.date(2025, 1, 1),
        engine="duckdb",
    )
    (out,) = [o for o in result.outputs if o.name == "registered_by_lsoa"]
    assert out.kind == "aggregate" and out.disclosure
    released = dict(zip(out.frame["lsoa_code"], out.frame["patients"], strict=True))
    (fig,) = [f for s in result.sections for f in s.figures if "LSOA" in f.title]
    drawn, blank = {}, []
    for t in fig.figure.data:
        if t.name == "no value":  # grey areas, "no value" on hover: the withheld LSOAs
            blank += list(t.locations)
        elif t.locations is not None and t.z is not None:
            drawn.update(zip(list(t.locations), list(t.z), strict=True))
    assert drawn and blank
    assert all(drawn[code] == released[code] for code in drawn)
    assert all(np.isnan(released[code]) for code in blank)
    assert released["E01000001"] == 150 and np.isnan(released["E01000006"])
    plain = PROGRAMME.run(
        connect(_store(tmp_path / "plain", None)), index_date=dt.date(2025, 1, 1), engine="duckdb"
    )
    assert "registered_by_lsoa" not in {o.name for o in plain.outputs}
