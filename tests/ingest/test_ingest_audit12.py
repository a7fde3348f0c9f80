"""Audit 12 of ingest: raw NHS numbers through flat ingest, EPS cancellations and dispense
status, Organizations resolved across the files of one FHIR run, OMOP values written only
in ``value_source_value`` and RxNorm Extension concepts."""

from __future__ import annotations

import pandas as pd

from pophealth.ingest.omop import RXNORM_EXTENSION, ingest_omop
from pophealth.store import Store
from tests.ingest.ingest_helpers import omop_weights

KEY = b"audit12-key-0123456789abcdef"


def _quarantine(summary) -> pd.DataFrame:
    if summary.quarantine_file is None:
        return pd.DataFrame(columns=["location", "field", "reason", "file"])
    return pd.read_csv(summary.quarantine_file, dtype=str, keep_default_na=False)


# -- OMOP: value_source_value, RxNorm Extension ------------------------------------------


def test_omop_number_only_in_value_source_value_is_read(tmp_path):
    d = omop_weights(
        tmp_path / "omop",
        "measurement_id,person_id,measurement_concept_id,measurement_date,value_as_number,"
        "value_source_value,operator_concept_id\n"
        "1,1,3025315,2013-05-17,48.1,48.1,\n"
        "2,1,3025315,2013-05-18,,49.5,\n"  # the number only in the source value
        '3,1,3025315,2013-05-19,," 1,050.25 ",\n'  # thousands separator, spaces
        "4,1,3025315,2013-05-20,,Negative (qualifier value),\n"  # text: no value
        "5,1,3025315,2013-05-21,,<5,\n"  # a comparator: quarantined, not stored as 5
        "6,1,3025315,2013-05-22,,7,4171756\n"  # operator '<' applies to it too
        "7,1,3025315,2013-05-23,60,61,\n",  # value_as_number wins
    )
    s = ingest_omop(d, tmp_path / "st", key=KEY)
    assert s.balanced
    ev = Store.open(tmp_path / "st").read("events").to_pandas().sort_values("date")
    got = dict(zip(ev.date.astype(str), ev.value, strict=True))
    assert got["2013-05-17"] == 48.1
    assert got["2013-05-18"] == 49.5
    assert got["2013-05-19"] == 1050.25
    assert pd.isna(got["2013-05-20"])
    assert got["2013-05-23"] == 60.0
    q = _quarantine(s).set_index("location")
    assert q.loc["line 6", "reason"].startswith("a value with a comparator")
    assert q.loc["line 7", "reason"].startswith("a value with a comparator")
    assert len(ev) == 5


def _omop_drugs(folder, drug_rows: str):
    folder.mkdir(parents=True)
    (folder / "concept.csv").write_text(
        "concept_id,concept_name,domain_id,vocabulary_id,concept_class_id,standard_concept,"
        "concept_code\n"
        "21000001,Salbutamol inhaler (RxNorm Ext),Drug,RxNorm Extension,Branded Drug,S,"
        "OMOP1000001\n"
        "35000001,Salbutamol 100mcg inhaler,Drug,dm+d,VMP,,39113611000001102\n"
        "1154343,albuterol,Drug,RxNorm,Ingredient,S,435\n"
    )
    (folder / "person.csv").write_text(
        "person_id,gender_concept_id,year_of_birth,month_of_birth,day_of_birth\n1,8507,1960,5,1\n"
    )
    (folder / "drug_exposure.csv").write_text(
        "drug_exposure_id,person_id,drug_concept_id,drug_source_concept_id,"
        "drug_exposure_start_date,drug_source_value\n" + drug_rows
    )
    return folder


def test_omop_rxnorm_extension_is_never_stored_as_rxnorm(tmp_path):
    d = _omop_drugs(
        tmp_path / "omop",
        "1,1,21000001,35000001,2020-01-01,salbutamol\n"  # the dm+d source concept is used
        "2,1,21000001,0,2020-02-01,salbutamol\n"  # RxNorm Extension only: quarantined
        "3,1,1154343,0,2020-03-01,albuterol\n",  # real RxNorm loads as rxnorm
    )
    s = ingest_omop(d, tmp_path / "st", key=KEY)
    assert s.balanced
    meds = Store.open(tmp_path / "st").read("medications").to_pandas().sort_values("date")
    assert list(zip(meds.system, meds.code, strict=True)) == [
        ("dmd", "39113611000001102"),
        ("rxnorm", "435"),
    ]
    assert not meds.code.str.startswith("OMOP").any()
    q = _quarantine(s).set_index("location")
    assert q.loc["line 3", "reason"] == RXNORM_EXTENSION
