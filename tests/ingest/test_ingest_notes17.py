"""What an ingest says is what happened: the OMOP cdm_source file the CDM version is
read from is a file used (it was listed among the files not used), and a count of one
practice reads in the singular ("(1 practice)", not "(1 practices)")."""

from __future__ import annotations

import pytest

from pophealth.ingest.omop import ingest_omop
from tests.ingest.conftest import KEY


def _omop(d, *, cdm_source: bool):
    d.mkdir()
    (d / "person.csv").write_text(
        "person_id,gender_concept_id,year_of_birth\n1,8507,1960\n2,8532,1970\n"
    )
    (d / "observation_period.csv").write_text(
        "observation_period_id,person_id,observation_period_start_date,"
        "observation_period_end_date\n"
        "1,1,2001-01-01,2020-12-31\n"
        "2,2,2002-02-02,2021-01-01\n"
    )
    if cdm_source:
        (d / "CDM_SOURCE.csv").write_text("cdm_source_name,cdm_version\nexample,5.4\n")
    (d / "NOTE.csv").write_text("note_id,person_id\n1,1\n")
    return d


def test_the_cdm_source_file_read_for_the_version_is_not_a_file_not_used(tmp_path):
    s = ingest_omop(_omop(tmp_path / "omop", cdm_source=True), tmp_path / "st", key=KEY)
    assert "OMOP CDM version: 5.4" in s.notes
    unused = [n for n in s.notes if n.startswith("files not used")]
    assert unused == ["files not used (1): NOTE.csv"], s.notes


def test_without_a_cdm_source_file_every_unread_file_is_listed(tmp_path):
    s = ingest_omop(_omop(tmp_path / "omop", cdm_source=False), tmp_path / "st", key=KEY)
    assert "OMOP CDM version: unknown" in s.notes
    assert "files not used (1): NOTE.csv" in s.notes


def test_registrations_inferred_at_one_practice_say_one_practice(tmp_path):
    s = ingest_omop(_omop(tmp_path / "omop", cdm_source=True), tmp_path / "st", key=KEY)
    inferred = [n for n in s.notes if "registrations inferred" in n]
    assert len(inferred) == 1 and "(1 practice);" in inferred[0], inferred


def test_opening_a_store_an_ingest_committed_nothing_to_says_so(tmp_path):
    """A first ingest that loads no row leaves the new folder with an empty snapshots/ and
    its write lock; opening it said only "not a pophealth store"."""
    from pophealth.ingest.flat import ingest_csv
    from pophealth.store import Store, StoreError

    src = tmp_path / "in"
    src.mkdir()
    (src / "patients.csv").write_text("patient_id,date_of_birth,sex,ethnicity_5,ethnicity_16\n")
    ingest_csv(src, tmp_path / "st", key=KEY)
    with pytest.raises(StoreError, match="committed nothing.*write into it again"):
        Store.open(tmp_path / "st")
    (src / "patients.csv").write_text(
        "patient_id,date_of_birth,sex,ethnicity_5,ethnicity_16\n1,1980-01-01,female,unknown,Z\n"
    )
    ingest_csv(src, tmp_path / "st", key=KEY)
    assert Store.open(tmp_path / "st").read("patients").num_rows == 1
