"""What the settle passes remember changes no decision.

:meth:`pophealth.disclosure.SharedCounts.settle` builds a programme's tables again and
again; an equity view built from the same counts, with the same cells withheld elsewhere,
is remembered within the run (:meth:`SharedCounts.remember`), and
:func:`pophealth.disclosure.secondary_suppression` remembers its answers by the content of
its inputs. These tests protect the promise that makes that safe: every table, every
withheld cell, every note and the number of passes are those of building every table
afresh in every pass — a key that missed an input (a mask, a label's type, a policy) would
hand one table's decisions to another, and the first test would see it in the outputs.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from pophealth import disclosure, programmes
from pophealth.disclosure import SharedCounts, secondary_suppression
from pophealth.equity import equity_view

#: the demo's store (as the tests of tests/conftest.py and test_disclosure_across_tables
#: make it): 1,500 patients, seed 12; its asthma indicators include tables whose audit
#: warns that a withheld cell could still be derived, so a remembered warning is replayed
PATIENTS, SEED = 1500, 12


def _run(synthetic_runs, name: str, monkeypatch) -> tuple[programmes.ProgrammeResult, list]:
    """The programme on the store, with the passes of each settle counted."""
    passes: list[int] = []
    settle = SharedCounts.settle

    def counted(self, build, *args, **kwargs):
        try:
            return settle(self, build, *args, **kwargs)
        finally:
            passes.append(self.passes)

    with monkeypatch.context() as m:
        m.setattr(SharedCounts, "settle", counted)
        result = programmes.get(name).run(
            synthetic_runs.backend(PATIENTS, SEED),
            index_date=synthetic_runs.index_date(PATIENTS, SEED),
            engine="duckdb",
        )
    return result, passes


@pytest.mark.slow  # three programmes run twice each: in CI's slow run
@pytest.mark.parametrize("name", ["population", "asthma", "cvd"])
def test_remembered_passes_decide_as_plain_passes(synthetic_runs, monkeypatch, name):
    """The run with everything remembered and the run that works every table out again in
    every pass give the same tables, cell for cell and note for note, in as many passes."""
    disclosure._SECONDARY_CACHE.clear()
    remembered, remembered_passes = _run(synthetic_runs, name, monkeypatch)
    with monkeypatch.context() as m:
        m.setattr(SharedCounts, "remembering", False)
        m.setattr(disclosure, "SECONDARY_CACHE_ROWS", 0)
        plain, plain_passes = _run(synthetic_runs, name, monkeypatch)
    assert remembered_passes == plain_passes
    assert all(p >= 2 for p in plain_passes)  # a settle of one pass would compare nothing
    assert [o.name for o in remembered.outputs] == [o.name for o in plain.outputs]
    for a, b in zip(remembered.outputs, plain.outputs, strict=True):
        if a.kind != "aggregate":
            continue
        pd.testing.assert_frame_equal(a.frame, b.frame, check_exact=True, obj=a.name)
        assert a.frame.to_csv(index=False) == b.frame.to_csv(index=False), a.name
    assert remembered.headline == plain.headline
    for s, t in zip(remembered.sections, plain.sections, strict=True):
        assert s.notes == t.notes
        for x, y in zip(s.tables, t.tables, strict=True):
            pd.testing.assert_frame_equal(x.frame, y.frame, check_exact=True, obj=x.name)


def _three_groups(labels) -> pd.DataFrame:
    return pd.DataFrame({"area": ["a"] * 4, "group": [*labels, "Total"], "n": [3, 20, 30, 53]})


def test_secondary_suppression_remembers_by_content():
    """The same question gets the same answer, as a copy; a question that differs in a
    mask or in a label's type is not answered from memory."""
    disclosure._SECONDARY_CACHE.clear()
    table = _three_groups([1, 2, 3])
    primary = np.array([True, False, False, False])
    kwargs = {"by": ["area", "group"], "margins": ["group"], "total_label": "Total"}
    first = secondary_suppression(table, "n", primary, **kwargs)
    assert first.tolist() == [True, True, False, False]
    first[:] = True  # the caller's copy: the remembered answer is not changed
    assert secondary_suppression(table, "n", primary, **kwargs).tolist() == [
        True, True, False, False,
    ]  # fmt: skip
    assert len(disclosure._SECONDARY_CACHE) == 1
    # avoid the smallest other cell: another question, another answer
    avoid = np.array([False, True, False, False])
    assert secondary_suppression(table, "n", primary, avoid=avoid, **kwargs).tolist() == [
        True, False, True, False,
    ]  # fmt: skip
    # labels "1", "2", "3" are other cells than 1, 2, 3: a new key
    secondary_suppression(_three_groups(["1", "2", "3"]), "n", primary, **kwargs)
    assert len(disclosure._SECONDARY_CACHE) == 3


def test_secondary_suppression_remembers_rows_up_to_its_budget(monkeypatch):
    """Answers are kept for so many rows of tables, the least recently asked forgotten
    first; a table larger than that is not remembered."""
    disclosure._SECONDARY_CACHE.clear()
    monkeypatch.setattr(disclosure, "SECONDARY_CACHE_ROWS", 8)
    primary = np.array([True, False, False, False])
    kwargs = {"by": ["area", "group"], "margins": ["group"], "total_label": "Total"}
    tables = [_three_groups(labels) for labels in ([1, 2, 3], [4, 5, 6], [7, 8, 9])]
    for table in tables:
        secondary_suppression(table, "n", primary, **kwargs)
    assert len(disclosure._SECONDARY_CACHE) == 2
    assert disclosure._SECONDARY_CACHE.rows == 8
    kept = [key[2] for key in disclosure._SECONDARY_CACHE]  # the tables' labels
    labels = [disclosure.frame_key(t, ["area", "group"]) for t in tables]
    assert kept == labels[1:]  # the least recently asked went
    big = pd.concat([tables[0]] * 3, ignore_index=True)
    big["area"] = np.repeat(["a", "b", "c"], 4)
    secondary_suppression(big, "n", np.tile(primary, 3), **kwargs)
    assert len(disclosure._SECONDARY_CACHE) == 2


def test_secondary_suppression_warns_again_when_remembered(monkeypatch):
    """A remembered answer gives the warnings the answer gave when worked out (the asthma
    programme withholds a whole breakdown on one)."""
    disclosure._SECONDARY_CACHE.clear()
    monkeypatch.setattr(disclosure, "MAX_AUDITED_CELLS", 1)
    table = _three_groups([1, 2, 3])
    primary = np.array([True, True, False, False])
    kwargs = {"by": ["area", "group"], "margins": ["group"], "total_label": "Total"}
    for _ in range(2):
        with pytest.warns(UserWarning, match="linear-programming audit checks"):
            secondary_suppression(table, "n", primary, **kwargs)
    assert len(disclosure._SECONDARY_CACHE) == 1


def _counts() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    rows = [
        {"imd_decile": d, "sex": s, "denominator": int(rng.integers(3, 40))}
        for d in range(1, 11)
        for s in ("F", "M")
    ]
    df = pd.DataFrame(rows)
    df["numerator"] = [int(rng.integers(0, n + 1)) for n in df["denominator"]]
    return df


def test_equity_view_remembered_is_a_copy_and_records():
    """An equity view built again with the run's withheld counts unchanged is worked out
    once; each caller gets its own copy (the asthma programme changes its views), and each
    build is recorded in the run's counts."""
    shared = SharedCounts()
    scope = ("test.flag", "test.register")
    kw = {"breakdowns": ("imd_quintile", "sex"), "sii_repetitions": 200}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # the first build withholds counts the second then sees withheld elsewhere
        equity_view(_counts(), shared=shared, scope=scope, **kw)
        first = equity_view(_counts(), shared=shared, scope=scope, **kw)
    remembered = len(shared._remembered)
    withheld = set(shared._withheld)
    before = first.breakdowns.copy()
    first.breakdowns.loc[:, "numerator"] = np.nan
    first.notes.append("changed by the caller")
    shared._released.clear()  # as each settle pass begins
    second = equity_view(_counts(), shared=shared, scope=scope, **kw)
    assert len(shared._remembered) == remembered  # nothing new worked out
    pd.testing.assert_frame_equal(second.breakdowns, before, check_exact=True)
    assert "changed by the caller" not in second.notes
    # recorded again: what the view releases and withholds is in the run's register
    assert shared._released and shared._withheld == withheld
    # a count newly withheld elsewhere is a new question, not a remembered answer
    released = [k for k in shared._released if k[0] == "test.register" and k[1] == "sex"]
    shared.record(released[:1], [np.nan])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        third = equity_view(_counts(), shared=shared, scope=scope, **kw)
    assert len(shared._remembered) == remembered + 1
    b = third.breakdowns
    group = released[0][2]
    assert b.loc[(b["breakdown"] == "sex") & (b["group"] == group), "denominator"].isna().all()
