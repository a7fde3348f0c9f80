"""Spec: a column taken from one selection of a table's rows, read on another selection of
the same table's rows, is refused with the variable named — it would read each row's own
column, not the other rows' (found by the nineteenth session's roadmap audit: a FREED median
of weeks from referral to assessment came out as -15 weeks) — while a column of the whole
table, or of rows the filtered ones are drawn from, is the row's own and stays allowed.
"""

from __future__ import annotations

import datetime as dt

import pytest

from pophealth.codelists import Codelist
from pophealth.query import Dataset, QueryError, events
from tests.spec.conftest import run

D = dt.date
REFERRAL = Codelist.of("snomedct", ["183524004"], name="referral")
ASSESSMENT = Codelist.of("snomedct", ["401267002"], name="assessment")
HBA1C = Codelist.of("snomedct", ["1049301000000100"], name="hba1c")


def _refused(value) -> str:
    ds = Dataset()
    with pytest.raises(QueryError) as exc:
        ds.x = value
    return str(exc.value)


def test_another_selections_column_is_refused_where_a_row_reads_it():
    refs, ass = events.matching(REFERRAL), events.matching(ASSESSMENT)
    for value in (
        ass.on_or_after(refs.date).exists_for_patient(),  # a window's bound
        ass.where(ass.date > refs.date).exists_for_patient(),  # a filter
        ass.maximum_for_patient(refs.value),  # an aggregate's column
        ass.sort_by(refs.value).first_for_patient().date,  # an order
    ):
        message = _refused(value)
        assert message.startswith("variable 'x': ")
        assert (
            "is taken from the rows of events.matching(referral), but read on the rows of "
            "events.matching(assessment), which are not drawn from them: a column reads the row "
            "it is on"
        ) in message
        assert "events.matching(referral).first_for_patient()." in message
        assert "RowDataset(events.matching(referral))" in message


def test_a_column_of_the_whole_table_or_of_rows_narrowed_further_is_the_rows_own():
    hba1c = events.matching(HBA1C)
    recent = hba1c.where(hba1c.value.is_not_null())  # narrows hba1c: its column is the row's
    ds = Dataset()
    ds.a = recent.where(hba1c.value > 48).exists_for_patient()
    ds.b = hba1c.where(events.value > 48).count_for_patient()  # the whole table's column
    ds.c = recent.where(recent.date >= "2025-01-01").maximum_for_patient(hba1c.value)
    refs = events.matching(REFERRAL)
    # a per-patient value of the other rows is what the mistake meant
    ds.d = (
        events.matching(ASSESSMENT).on_or_after(refs.first_for_patient().date).exists_for_patient()
    )
    # but rows drawn from another selection do not make its column theirs
    assert "is taken from the rows of events.matching(hba1c).where(" in _refused(
        hba1c.where(recent.value > 48).exists_for_patient()
    )


def test_the_freed_weeks_from_referral_to_assessment(engine, tmp_path):
    """The audit's case: referral on 1 April, assessments on 1 March (before it) and 6 May
    (5 weeks after). Written with the referral's date per patient, the weeks are 5."""
    refs, ass = events.matching(REFERRAL), events.matching(ASSESSMENT)
    referred = refs.first_for_patient().date
    tables = {
        "events": [
            {"patient_id": "p1", "date": D(2025, 4, 1), "code": "183524004"},
            {"patient_id": "p1", "date": D(2025, 3, 1), "code": "401267002"},
            {"patient_id": "p1", "date": D(2025, 5, 6), "code": "401267002"},
            {"patient_id": "p2", "date": D(2025, 4, 1), "code": "183524004"},
            {"patient_id": "p2", "date": D(2025, 3, 11), "code": "401267002"},
        ],
        "patients": [{"patient_id": "p1"}, {"patient_id": "p2"}],
    }
    out = run(
        engine,
        tmp_path,
        tables,
        {
            "assessed_after": ass.on_or_after(referred).exists_for_patient(),
            "weeks": (ass.on_or_after(referred).first_for_patient().date - referred) / 7,
        },
    )
    assert out == {
        "p1": {"assessed_after": True, "weeks": 5.0},
        "p2": {"assessed_after": False, "weeks": None},
    }
