"""A pass over a coded table first keeps the codes any of its frames can need (a plain
``code IN (...)`` the engine checks against Parquet row-group statistics), when every
frame keeps only the codes of some code lists; otherwise the table is read whole. The
answers do not change (the spec suite runs with it); these tests pin when it applies and
that DuckDB then skips row groups of a clustered store."""

from __future__ import annotations

import datetime as dt

import pytest

from pophealth.codelists import Codelist
from pophealth.query import Dataset, admissions, events, index_date, run_dataset
from pophealth.query.compile import Compiler, _codes_kept
from pophealth.store import CLUSTERED_ROW_GROUP_ROWS, Store
from tests.foundation.test_store_clustering import CODES, _events, _rows_scanned, patients_of

A = Codelist.of("snomedct", CODES[:2], name="a")
B = Codelist.of("snomedct", CODES[40:42], name="b")


def _filters(frame):
    return list(frame._filters)


def test_a_match_keeps_its_codes():
    column, codes = _codes_kept(_filters(events.matching(A).on_or_before(index_date)))
    assert column == "code" and codes == frozenset(CODES[:2])


def test_an_or_of_matches_on_one_column_keeps_both_lists():
    frame = events.where(events.matching(A)._filters[0] | events.matching(B)._filters[0])
    assert _codes_kept(_filters(frame)) == ("code", frozenset(CODES[:2] + CODES[40:42]))


def test_and_with_a_match_keeps_its_codes():
    cond = events.matching(A)._filters[0] & (events.value > 100)
    assert _codes_kept([cond]) == ("code", frozenset(CODES[:2]))


@pytest.mark.parametrize(
    "frame",
    [
        events.on_or_before(index_date),  # no code list at all
        events.except_where(events.matching(A)._filters[0]),  # every code but these
        events.where(events.matching(A)._filters[0] | (events.value > 100)),  # or anything
    ],
    ids=["no-list", "except", "or-other"],
)
def test_frames_that_can_hold_any_code_keep_nothing(frame):
    assert _codes_kept(_filters(frame)) is None


def test_a_list_column_is_not_narrowed():
    icd = Codelist.of("icd10", ["J45"], name="asthma_icd")
    frame = admissions.matching(icd, column="all_diagnoses")
    assert _codes_kept(_filters(frame)) is None


def _compiled(store: Store, frames) -> str:
    con = store.connect()
    c = Compiler(con, index_date=dt.date(2025, 1, 1))
    return str(con.compile(c.scan("events", [_filters(f) for f in frames])))


@pytest.fixture(scope="module")
def clustered(tmp_path_factory) -> Store:
    data = _events(systems=("snomedct",))
    path = tmp_path_factory.mktemp("clustered") / "s"
    return Store.open_or_new(path).write(
        {"events": data, "patients": patients_of(data)}, provenance={}
    )


def test_scan_filters_on_the_union_only_when_every_frame_has_a_list(clustered):
    both = _compiled(clustered, [events.matching(A), events.matching(B)])
    assert "IN (" in both and all(c in both for c in CODES[:2] + CODES[40:42])
    mixed = _compiled(clustered, [events.matching(A), events.on_or_before(index_date)])
    assert "IN (" not in mixed and CODES[0] not in mixed


def test_one_pass_over_two_lists_skips_row_groups(clustered, tmp_path, monkeypatch):
    """Two lists in one aggregate pass (each frame's condition is its own column, so the
    engine cannot push either down): the pass reads only the row groups of their codes
    (the first and second of three here) — all of them without the plain filter — and
    counts what plain SQL counts."""
    ds = Dataset()
    ds.n_a = events.matching(A).on_or_before(index_date).count_for_patient()
    ds.n_b = events.matching(B).on_or_before(index_date).count_for_patient()
    con = clustered.connect()
    expr = run_dataset(con, ds, index_date="2025-01-01", output="ibis")
    scanned = _rows_scanned(con, expr, tmp_path / "profile.json")
    total = clustered.row_counts()["events"]
    assert scanned <= 2 * CLUSTERED_ROW_GROUP_ROWS < total
    with monkeypatch.context() as m:
        m.setattr(Compiler, "scan", lambda self, table, filter_sets: self.table(table))
        whole = run_dataset(clustered.connect(), ds, index_date="2025-01-01", output="ibis")
        assert _rows_scanned(con, whole, tmp_path / "whole.json") == total
    got = run_dataset(con, ds, index_date="2025-01-01")
    path = clustered.table_path("events")
    for name, codes in (("n_a", CODES[:2]), ("n_b", CODES[40:42])):
        listed = ", ".join(f"'{c}'" for c in codes)
        ref = con.con.execute(
            f"SELECT count(*) FROM '{path}' WHERE system = 'snomedct' AND code IN ({listed}) "
            "AND date <= DATE '2025-01-01'"
        ).fetchone()[0]
        assert int(got[name].sum()) == ref > 0


# -- many intervals: the envelope of the windows ------------------------------------------


D = "events.date"


def _envelope(frame, intervals):
    import ibis

    from pophealth.query.timeline import Timeline

    tl = Timeline(ibis.duckdb.connect(), intervals)
    _, dynamic = tl.c._split(frame._filters)
    return {(e.args[0].desc, e.op, e.args[1].args[0]) for e in tl._envelope(dynamic)}


def test_the_windows_of_24_months_are_read_as_one_date_range():
    """ "In the 12 months before" each month end from April 2024 to March 2026: no row
    outside 1 May 2023 .. 31 March 2026 is in any interval's window."""
    from pophealth.query.measures import monthly

    months = monthly("2024-04-01", 24)
    env = _envelope(events.matching(A).in_last(months=12), months)
    assert env == {(D, "gt", dt.date(2023, 4, 30)), (D, "le", dt.date(2026, 3, 31))}
    env = _envelope(events.matching(A).on_or_before(index_date), months)
    assert env == {(D, "le", dt.date(2026, 3, 31))}
    env = _envelope(events.matching(A).on_or_after(index_date), months)
    assert env == {(D, "ge", dt.date(2024, 4, 30))}


def test_a_window_on_a_patient_value_has_no_envelope():
    """ "Born on or before the index date" compares a patient's value, not the row's own
    column: it is not turned into a filter on the rows."""
    from pophealth.query import patients
    from pophealth.query.measures import monthly

    frame = events.where(events.date <= index_date).where(patients.date_of_birth <= index_date)
    env = _envelope(frame, monthly("2024-04-01", 3))
    assert env == {(D, "le", dt.date(2024, 6, 30))}
