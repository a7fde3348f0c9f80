"""Areas built from the real IoD2019 files, linked to patients by the query layer's
address rule: a known LSOA gets its attributes; no address, no LSOA or an LSOA missing
from the reference land in the explicit ``unknown`` group — counted, never dropped."""

from __future__ import annotations

import datetime as dt
import shutil
import warnings

import pyarrow as pa
import pytest

from pophealth.reference.build import build_reference_store
from pophealth.schema import arrow_schema
from pophealth.store import Store
from tests.reference.conftest import real

pytestmark = pytest.mark.shared_data


def test_patients_link_to_real_areas_and_unknowns_are_kept(shared_data, tmp_path):
    query = pytest.importorskip("pophealth.query")
    root = tmp_path / "ref"
    src = real(shared_data, "imd2019_file2")
    (root / "imd2019").mkdir(parents=True)
    shutil.copyfile(src, root / "imd2019" / src.name)
    n = 4
    patients = pa.table(
        {
            "patient_id": ["p1", "p2", "p3", "p4"],
            "date_of_birth": [dt.date(1980, 1, 1)] * n,
            "sex": ["female"] * n,
            "ethnicity_5": ["white"] * n,
            "ethnicity_16": ["A"] * n,
            "date_of_death": [None] * n,
        },
        schema=arrow_schema("patients"),
    )
    addresses = pa.table(
        {
            "patient_id": ["p1", "p2", "p3"],
            "start_date": [dt.date(2020, 1, 1)] * 3,
            "end_date": [None] * 3,
            # an LSOA 2011, an LSOA 2021 code (not in IoD2019 areas), ungeocoded
            "lsoa_code": ["E01000001", "E01035762", None],
            "care_home": [False] * 3,
        },
        schema=arrow_schema("addresses"),
    )
    store_dir = tmp_path / "store"
    Store.open_or_new(store_dir).write(
        {"patients": patients, "addresses": addresses}, provenance={"source": "test"}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, report = build_reference_store(root, store_dir, "2019")
    assert report.address_coverage["address_lsoas_not_in_areas"] == 1

    ds = query.Dataset()
    ds.define_population(query.patients.date_of_birth.is_not_null())
    area = query.addresses.area_on(query.index_date)
    ds.imd_quintile = area.group("imd_quintile")
    ds.status = area.status
    out = query.run_dataset(store_dir, ds, engine="duckdb", index_date="2025-03-31")
    out = out.set_index("patient_id").sort_index()
    assert len(out) == 4
    assert out["imd_quintile"].astype(str).tolist() == ["5", "unknown", "unknown", "unknown"]
    assert out["status"].tolist() == ["known", "lsoa_not_in_areas", "not_geocoded", "no_address"]
