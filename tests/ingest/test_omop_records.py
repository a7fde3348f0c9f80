"""OMOP rows that used to load wrongly or vanish under a false reason: every PERSON, DEATH
and OBSERVATION_PERIOD row is loaded, quarantined with its own file, line and field, or
skipped for a reason that is true."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pandas as pd

from pophealth.ingest.omop import ingest_omop
from pophealth.store import Store

KEY = b"test-key-0123456789-abcdef"

PERSON = "person_id,gender_concept_id,year_of_birth,month_of_birth,day_of_birth\n"
CONCEPT = (
    "concept_id,concept_name,domain_id,vocabulary_id,concept_class_id,standard_concept,"
    "concept_code\n"
    "3025315,Body weight,Measurement,LOINC,x,S,29463-7\n"
    "9529,kilogram,Unit,UCUM,Unit,S,kg\n"
    "8876,millimeter mercury column,Unit,UCUM,Unit,S,mm[Hg]\n"
    "44819,Diabetes,Condition,ICD9CM,x,,250.00\n"
)


def _pid(person_id: str) -> str:
    return hmac.new(KEY, f"omop:{person_id}".encode(), hashlib.sha256).hexdigest()[:32]


def _omop(folder: Path, **files: str) -> Path:
    folder.mkdir()
    for name, text in files.items():
        (folder / f"{name}.csv").write_text(text)
    return folder


def _quarantine(summary) -> pd.DataFrame:
    return pd.read_csv(summary.quarantine_file, dtype=str, keep_default_na=False)


def test_person_without_person_id_is_quarantined_not_loaded(tmp_path):
    # a blank person_id was hashed as "omop:<NA>": one made-up patient for every such row
    d = _omop(tmp_path / "o", person=PERSON + "1,8507,1960,5,1\n,8532,1980,1,1\n,8507,1990,1,1\n")
    s = ingest_omop(d, tmp_path / "st", key=KEY)
    assert s.balanced
    assert s.records["omop.person"].loaded == 1
    assert s.records["omop.person"].quarantined == 2
    q = _quarantine(s)
    assert set(zip(q.location, q.field, strict=True)) == {
        ("line 3", "person_id"),
        ("line 4", "person_id"),
    }
    assert all(str(d / "person.csv") == f for f in q.file)
    pat = Store.open(tmp_path / "st").read("patients").to_pandas()
    assert list(pat.patient_id) == [_pid("1")]


def test_gender_concept_wins_over_gender_source_value(tmp_path):
    # the standard concept says male: a source value "F" (the source's own coding) does
    # not turn the person female; the source value counts only when the concept is not
    # male or female
    d = _omop(
        tmp_path / "o",
        person=(
            "person_id,gender_concept_id,year_of_birth,gender_source_value\n"
            "1,8507,1960,F\n"
            "2,8532,1960,M\n"
            "3,0,1960,F\n"
            "4,8551,1960,m\n"
            "5,,1960,\n"
        ),
    )
    s = ingest_omop(d, tmp_path / "st", key=KEY)
    assert s.balanced
    pat = Store.open(tmp_path / "st").read("patients").to_pandas().set_index("patient_id")
    assert pat.loc[_pid("1"), "sex"] == "male"
    assert pat.loc[_pid("2"), "sex"] == "female"
    assert pat.loc[_pid("3"), "sex"] == "female"
    assert pat.loc[_pid("4"), "sex"] == "male"
    assert pat.loc[_pid("5"), "sex"] == "unknown"


def test_death_rows_are_checked_in_the_death_file(tmp_path):
    d = _omop(
        tmp_path / "o",
        person=PERSON + "1,8507,1960,5,1\n2,8532,1970,1,1\n3,8532,1975,1,1\n4,8507,1980,1,1\n",
        death=(
            "person_id,death_date,death_datetime\n"
            "2,2020-13-01,\n"  # line 2: not a date
            "99,2019-01-01,\n"  # line 3: no such person
            "3,2018-01-01,\n"  # line 4: kept
            "3,2019-06-01,\n"  # line 5: a second, different date of death
            "3,2018-01-01,2018-01-01 10:00:00\n"  # line 6: the same date again
            "1,,\n"  # line 7: no date
            ",2019-01-01,\n"  # line 8: no person
            "4,20200301,\n"  # line 9: YYYYMMDD is a date
        ),
    )
    s = ingest_omop(d, tmp_path / "st", key=KEY)
    assert s.balanced
    death = s.records["omop.death"]
    assert (death.records_in, death.quarantined, death.skipped) == (8, 5, 3)
    assert death.skip_reasons == {
        "duplicate death row (same person and date of death as an earlier row)": 1,
        "merged into patients.date_of_death": 2,
    }
    q = _quarantine(s)
    q = q[q.record_type == "omop.death"]
    assert all(f == str(d / "death.csv") for f in q.file)
    got = {r.location: (r.field, r.value) for r in q.itertuples()}
    assert got == {
        "line 2": ("death_date", "2020-13-01"),
        "line 3": ("person_id", "99"),
        "line 5": ("death_date", "2019-06-01"),
        "line 7": ("death_date", ""),
        "line 8": ("person_id", ""),
    }
    assert "no person row" in q[q.location == "line 3"].reason.iloc[0]
    assert "line 4" in q[q.location == "line 5"].reason.iloc[0]
    # the people load: person 2 without a date of death (its death row is quarantined
    # above, naming the death file), not quarantined as a whole at its person.csv line
    pat = Store.open(tmp_path / "st").read("patients").to_pandas().set_index("patient_id")
    assert len(pat) == 4
    assert pd.isna(pat.loc[_pid("2"), "date_of_death"])
    assert pat.loc[_pid("3"), "date_of_death"].isoformat() == "2018-01-01"
    assert pat.loc[_pid("4"), "date_of_death"].isoformat() == "2020-03-01"
    assert pd.isna(pat.loc[_pid("1"), "date_of_death"])


def test_observation_periods_of_unknown_persons_and_bad_dates_are_quarantined(tmp_path):
    d = _omop(
        tmp_path / "o",
        person=PERSON + "1,8507,1960,5,1\n2,8532,1970,1,1\n3,8532,1975,1,1\n",
        observation_period=(
            "observation_period_id,person_id,observation_period_start_date,"
            "observation_period_end_date\n"
            "1,1,2010-13-01,2020-01-01\n"  # line 2: start is not a date
            "2,99,2010-01-01,2020-01-01\n"  # line 3: no such person
            "3,2,2010-01-01,2012-01-01\n"  # line 4: loads (inferred)
            "4,2,2014-01-01,2013-01-01\n"  # line 5: ends before it starts
            "5,3,2011-01-01,2019-02-30\n"  # line 6: end is not a date
            "6,,2011-01-01,2019-02-01\n"  # line 7: no person
        ),
    )
    s = ingest_omop(d, tmp_path / "st", key=KEY)
    assert s.balanced
    op = s.records["omop.observation_period"]
    assert (op.records_in, op.quarantined, op.skipped) == (6, 5, 1)
    q = _quarantine(s)
    q = q[q.record_type == "omop.observation_period"]
    got = {r.location: r.field for r in q.itertuples()}
    assert got == {
        "line 2": "observation_period_start_date",
        "line 3": "person_id",
        "line 5": "observation_period_end_date",
        "line 6": "observation_period_end_date",
        "line 7": "person_id",
    }
    assert all(f == str(d / "observation_period.csv") for f in q.file)
    reg = Store.open(tmp_path / "st").read("registrations").to_pandas()
    # only person 2's good period is left, and it is the last: open
    assert list(zip(reg.patient_id, reg.start_date.astype(str), strict=True)) == [
        (_pid("2"), "2010-01-01")
    ]
    assert reg.end_date.isna().all()


def test_unit_comes_from_unit_concept_when_there_is_no_unit_source_value(tmp_path):
    d = _omop(
        tmp_path / "o",
        person=PERSON + "1,8507,1960,5,1\n",
        concept=CONCEPT,
        measurement=(
            "measurement_id,person_id,measurement_concept_id,measurement_date,value_as_number,"
            "unit_concept_id,unit_source_value\n"
            "1,1,3025315,2020-01-01,80,9529,\n"  # the unit only as a concept: kg
            "2,1,3025315,2020-01-02,81,9529,kilos\n"  # as recorded
            "3,1,3025315,2020-01-03,82,0,\n"  # no unit
            "4,1,3025315,2020-01-04,83,123,\n"  # not a unit concept we know
        ),
    )
    s = ingest_omop(d, tmp_path / "st", key=KEY)
    assert s.balanced
    ev = Store.open(tmp_path / "st").read("events").to_pandas().sort_values("date")
    assert ev.unit.tolist() == ["kg", "kilos", None, None]


def test_unmapped_concept_reasons_tell_zero_from_unknown(tmp_path):
    d = _omop(
        tmp_path / "o",
        person=PERSON + "1,8507,1960,5,1\n",
        concept=CONCEPT,
        condition_occurrence=(
            "condition_occurrence_id,person_id,condition_concept_id,condition_start_date,"
            "condition_source_concept_id,condition_source_value\n"
            "1,1,0,2010-01-02,0,XYZ\n"
            "2,1,0,2010-01-02,44819,250.00\n"
            "3,1,123,2010-01-02,,\n"
        ),
    )
    s = ingest_omop(d, tmp_path / "st", key=KEY)
    assert s.balanced
    q = _quarantine(s).set_index("location")
    assert "concept_id 0 (no matching concept)" in q.loc["line 2", "reason"]
    assert "not in the concept table, or in a vocabulary" in q.loc["line 3", "reason"]
    assert "not in the concept table, or in a vocabulary" in q.loc["line 4", "reason"]


def test_no_concept_table_is_said_in_the_notes(tmp_path):
    d = _omop(
        tmp_path / "o",
        person=PERSON + "1,8507,1960,5,1\n",
        measurement=(
            "measurement_id,person_id,measurement_concept_id,measurement_date\n"
            "1,1,3025315,2020-01-01\n"
        ),
    )
    s = ingest_omop(d, tmp_path / "st", key=KEY)
    assert s.balanced and s.records["omop.measurement"].quarantined == 1
    assert any("no concept table" in n for n in s.notes)
