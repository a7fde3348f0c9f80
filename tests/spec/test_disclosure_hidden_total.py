"""Two breakdowns of one measure with no overall beside them: by practice and by sex.

Each breakdown's cells add up to the same count — everyone in the denominator — though
the run shows no overall. Released each on its own, the by-sex cells give that total, and
the by-practice table, which has no total row of its own, gives back a lone withheld cell
through it:

    practice A 1 admitted (withheld, 1-7), B 8 (withheld as its second cell), C 30;
    women 20 and men 19: A + B = 39 - 30 = 9, and B, a second cell, is 8 or more — so A is 1.

The release now links the measures through their overall, as it links them beside an
overall measure, with the total rows kept for its audit and never shown
(``disclosure.secondary_suppression(hidden=...)``).

The intruder here is the audit's own (Cox 1980): every released count as it is, a count
withheld at first 1-7, a second cell on its side of the gap (0, or 8 or more), any other
withheld count 0 or more; cells that add up add up exactly. A linear programme gives the
least and greatest value of each withheld cell.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import linprog

from pophealth import disclosure as sdc
from pophealth.query import (
    Measures,
    admissions,
    index_date,
    patients,
    quarterly,
    registrations,
    run_measures,
)
from pophealth.query.measures import _hidden_total, _linked_groups
from tests.spec.conftest import admission_row, make_store

D = dt.date
Q1 = quarterly(D(2025, 1, 1), 1)
LONG_AGO = D(2020, 1, 1)
PRACTICE = {"practice": registrations.practice_on(index_date).practice_id}
SEX = {"sex": patients.sex}
# practice: (women admitted, men admitted), of 20 women and 20 men each
ADMITTED = {"A": (1, 0), "B": (4, 4), "C": (15, 15)}


def _store(tmp_path, admitted=ADMITTED, size: int = 20):
    regs, people, adms = [], [], []
    for practice, counts in admitted.items():
        for sex, k in zip(("female", "male"), counts, strict=True):
            for i in range(size):
                pid = f"{practice}{sex[0]}{i:02d}"
                regs.append({"patient_id": pid, "practice_id": practice, "start_date": LONG_AGO})
                people.append({"patient_id": pid, "sex": sex})
                if i < k:
                    adms.append(admission_row(pid, D(2025, 2, 10)))
    return make_store(tmp_path, {"registrations": regs, "patients": people, "admissions": adms})


def _measures(kind: str, names=("by_practice", "by_sex")) -> Measures:
    m = Measures(intervals=Q1)
    registered = registrations.registered_on(index_date)
    by = {"by_practice": PRACTICE, "by_sex": SEX, "overall": {}, "by_practice_sex": PRACTICE | SEX}
    for name in names:
        if kind == "proportion":
            m.define_measure(
                name,
                numerator=admissions.in_interval().exists_for_patient(),
                denominator=registered,
                group_by=by[name],
            )
        else:
            m.define_measure(
                name,
                numerator=admissions.in_interval().count_for_patient(),
                denominator=registered,
                group_by=by[name],
            )
    return m


def _ranges(released: pd.DataFrame, exact: pd.DataFrame, practices: list[str]) -> dict:
    """Each withheld numerator by practice: its least and greatest value to the intruder,
    from the released numerators by practice and by sex (which add up to the same)."""
    cells = [("by_practice", p) for p in practices] + [("by_sex", s) for s in ("female", "male")]
    n = len(cells)

    def row(frame, measure, group):
        rows = frame[frame["measure"] == measure]
        col = "practice" if measure == "by_practice" else "sex"
        return rows.set_index(col).loc[group]

    bounds = []
    for measure, group in cells:
        r = row(released, measure, group)
        true = float(row(exact, measure, group)["numerator"])
        note = str(r["disclosure_note"])
        if not np.isnan(r["numerator"]):
            bounds.append((true, true))
        elif "numerator primary" in note:
            bounds.append((1, 7))
        elif "numerator secondary" in note:
            bounds.append((8, None) if true >= 8 else (0, 0))
        else:
            bounds.append((0, None))
    a_eq = np.array([[1.0] * len(practices) + [-1.0, -1.0]])  # practices = sexes
    out = {}
    for i, (measure, group) in enumerate(cells):
        if measure != "by_practice" or bounds[i][0] == bounds[i][1]:
            continue
        ends = []
        for sign in (1, -1):
            c = np.zeros(n)
            c[i] = sign
            res = linprog(c, A_eq=a_eq, b_eq=[0.0], bounds=bounds)
            assert res.status == 0, res.message
            ends.append(sign * res.fun)
        out[group] = (ends[0], ends[1])
    return out


@pytest.mark.parametrize("kind", ["proportion", "ratio"])
def test_two_breakdowns_without_an_overall_do_not_give_back_a_lone_cell(tmp_path, kind):
    store = _store(tmp_path)
    released = run_measures(store, _measures(kind))
    exact = run_measures(store, _measures(kind), disclosure=False)
    assert len(released) == len(exact) == 5  # no overall row shown
    assert not released["disclosure_note"].astype(str).str.contains("not shown").any()
    by_practice = released[released["measure"] == "by_practice"].set_index("practice")
    assert np.isnan(by_practice.loc["A", "numerator"])
    ranges = _ranges(released, exact, ["A", "B", "C"])
    assert "A" in ranges
    for group, (lo, hi) in ranges.items():
        assert hi - lo > 1e-6, f"practice {group}'s numerator is exactly {lo:g}"


def test_the_two_breakdowns_released_alone_gave_the_cell_back(tmp_path):
    """The case this protects against, as the release used to give it: each measure alone,
    the by-practice table withholding B as A's second cell — A is pinned at 1."""
    store = _store(tmp_path)
    exact = run_measures(store, _measures("proportion"), disclosure=False)
    released = []
    for measure, col in (("by_practice", "practice"), ("by_sex", "sex")):
        own = exact[exact["measure"] == measure].reset_index(drop=True)
        table = own[["interval_start", "interval_end", col, "numerator", "denominator"]]
        out = sdc.release_proportions(
            table, "numerator", "denominator", by=["interval_start", col], margins=[col]
        )
        released.append(out.assign(measure=measure))
    ranges = _ranges(pd.concat(released, ignore_index=True), exact, ["A", "B", "C"])
    assert ranges["A"] == pytest.approx((1, 1))


def test_breakdowns_over_other_intervals_are_not_linked(tmp_path):
    """By practice over the quarter, by sex over two quarters: not one table (each is
    released on its own, as before), and nothing named: one column each."""
    store = _store(tmp_path)
    m = Measures(intervals=Q1)
    registered = registrations.registered_on(index_date)
    admitted = admissions.in_interval().exists_for_patient()
    m.define_measure("by_practice", numerator=admitted, denominator=registered, group_by=PRACTICE)
    m.define_measure(
        "by_sex", numerator=admitted, denominator=registered, group_by=SEX,
        intervals=quarterly(D(2024, 10, 1), 2),
    )  # fmt: skip
    assert _linked_groups(m) == []
    released = run_measures(store, m)
    assert set(released["measure"]) == {"by_practice", "by_sex"}
    assert released.attrs["unlinked"] == []


def test_a_total_is_kept_only_where_the_breakdowns_add_up_alike():
    """The hidden total is the first breakdown's cells added up in each interval; where
    another's add up to something else (or cover other intervals), there is none."""
    q = {"interval_start": D(2025, 1, 1), "interval_end": D(2025, 3, 31)}
    admitted = {"A": 1, "B": 8, "C": 30}
    practice = pd.DataFrame(
        [{**q, "practice": p, "numerator": x, "denominator": 40} for p, x in admitted.items()]
    )
    sex = pd.DataFrame(
        [{**q, "sex": s, "numerator": x, "denominator": 60} for s, x in (("f", 20), ("m", 19))]
    )
    total = _hidden_total([practice, sex])
    assert total[["numerator", "denominator"]].to_numpy().tolist() == [[39, 120]]
    assert _hidden_total([practice, sex.assign(numerator=[20, 18])]) is None
    assert _hidden_total([practice, sex.assign(interval_end=D(2025, 2, 28))]) is None


def test_a_cross_tab_its_margins_and_no_overall(tmp_path):
    """By practice, by sex and by practice and sex, no overall: one table, the cross-tab's
    cells adding up to each margin; every released numerator within 2 of the exact one,
    none 1-7, no overall shown and nothing named unlinked."""
    store = _store(tmp_path)
    names = ("by_practice", "by_sex", "by_practice_sex")
    released = run_measures(store, _measures("proportion", names))
    exact = run_measures(store, _measures("proportion", names), disclosure=False)
    assert released.attrs["unlinked"] == []
    assert len(released) == len(exact)
    key = ["measure", "practice", "sex"]
    both = released.merge(exact, on=key, suffixes=("", "_exact"))
    shown = both[both["numerator"].notna()]
    assert ((shown["numerator"] - shown["numerator_exact"]).abs() <= 2).all()
    assert not shown["numerator"].between(1, 7).any()
    cross = released[released["measure"] == "by_practice_sex"].set_index(["practice", "sex"])
    assert np.isnan(cross.loc[("A", "female"), "numerator"])


def test_a_measure_by_three_columns_beside_one_by_two_of_them(tmp_path):
    """By practice, sex and ethnicity beside by practice and sex, nothing else: A's women,
    3 white and 10 asian admitted, beside A's women's 13. Each (practice, sex)'s cells add
    up to its cell of the measure by two columns, as a cross-tab's add up to its margin:
    linked, none of them pinned, and nothing named unlinked."""
    admitted = {("A", "female"): (3, 10), ("A", "male"): (9, 12), ("B", "female"): (11, 14)}
    admitted |= {("B", "male"): (8, 20)}
    regs, people, adms = [], [], []
    for (practice, sex), counts in admitted.items():
        for eth, k in zip(("white", "asian"), counts, strict=True):
            for i in range(30):
                pid = f"{practice}{sex[0]}{eth[0]}{i:02d}"
                regs.append({"patient_id": pid, "practice_id": practice, "start_date": LONG_AGO})
                people.append({"patient_id": pid, "sex": sex, "ethnicity_5": eth})
                if i < k:
                    adms.append(admission_row(pid, D(2025, 2, 10)))
    store = make_store(tmp_path, {"registrations": regs, "patients": people, "admissions": adms})
    eth = {"ethnicity": patients.ethnicity_group}
    m = Measures(intervals=Q1)
    registered = registrations.registered_on(index_date)
    admitted_ = admissions.in_interval().exists_for_patient()
    for name, by in (("two", PRACTICE | SEX), ("three", PRACTICE | SEX | eth)):
        m.define_measure(name, numerator=admitted_, denominator=registered, group_by=by)
    released = run_measures(store, m)
    assert released.attrs["unlinked"] == []
    exact = run_measures(store, m, disclosure=False)
    key = ["practice", "sex", "ethnicity"]
    three = released[released["measure"] == "three"].set_index(key)
    true3 = exact[exact["measure"] == "three"].set_index(key)
    two = released[released["measure"] == "two"].set_index(["practice", "sex"])
    true2 = exact[exact["measure"] == "two"].set_index(["practice", "sex"])
    assert np.isnan(three.loc[("A", "female", "white"), "numerator"])
    cells = list(three.index)
    bounds = []
    for c in cells:
        note = str(three.loc[c, "disclosure_note"])
        if not np.isnan(three.loc[c, "numerator"]):
            bounds.append((true3.loc[c, "numerator"],) * 2)
        elif "numerator primary" in note:
            bounds.append((1, 7))
        else:
            bounds.append((0, None))
    a, b = [], []
    for ps in two.index:
        if not np.isnan(two.loc[ps, "numerator"]):
            a.append([1.0 if c[:2] == ps else 0.0 for c in cells])
            b.append(float(true2.loc[ps, "numerator"]))
    for i, c in enumerate(cells):
        if bounds[i][0] == bounds[i][1]:
            continue
        ends = []
        for sign in (1, -1):
            obj = np.zeros(len(cells))
            obj[i] = sign
            res = linprog(obj, A_eq=np.array(a) if a else None, b_eq=b or None, bounds=bounds)
            assert res.status in (0, 3), res.message
            ends.append(np.inf * sign if res.status == 3 else sign * res.fun)
        assert ends[0] < ends[1], f"{c} is exactly {ends[0]:g}"


def test_two_cross_tabs_sharing_a_column_add_up_alike(tmp_path):
    """By practice and sex beside by sex and ethnicity, no measure by sex (the helper's
    repro of this session's hunt): both add up to the same count of each sex. Released
    with no link between them, C's 4 men (withheld) came back as the men's 24, by
    ethnicity, less A's 20. Now the table holds the sexes' counts for the audit, not shown:
    no finest cell's count is pinned, and no sex row appears."""
    sizes = {("A", "female", "white"): 10, ("A", "female", "asian"): 10}
    sizes |= {("A", "male", "white"): 10, ("A", "male", "asian"): 10}
    sizes |= {("C", "female", "white"): 5, ("C", "female", "asian"): 5}
    sizes |= {("C", "male", "white"): 2, ("C", "male", "asian"): 2}
    regs, people = [], []
    for (practice, sex, eth), k in sizes.items():
        for i in range(k):
            pid = f"{practice}{sex[0]}{eth[0]}{i:02d}"
            regs.append({"patient_id": pid, "practice_id": practice, "start_date": LONG_AGO})
            people.append({"patient_id": pid, "sex": sex, "ethnicity_5": eth})
    store = make_store(tmp_path, {"registrations": regs, "patients": people})
    eth = {"ethnicity": patients.ethnicity_group}
    m = Measures(intervals=Q1)
    for name, by in (("ps", PRACTICE | SEX), ("se", SEX | eth)):
        m.define_measure(
            name,
            numerator=admissions.in_interval().exists_for_patient(),
            denominator=registrations.registered_on(index_date),
            group_by=by,
        )
    released = run_measures(store, m)
    assert released.attrs["unlinked"] == []
    assert len(released) == 8  # four cells each: no margin shown
    ps = released[released["measure"] == "ps"].set_index(["practice", "sex"])
    assert np.isnan(ps.loc[("C", "male"), "denominator"])
    finest = list(sizes)
    a, b, bounds = [], [], [(0, None)] * len(finest)
    for _, r in released.iterrows():
        cols = ("practice", "sex") if r["measure"] == "ps" else ("sex", "ethnicity")
        where = [0, 1] if r["measure"] == "ps" else [1, 2]
        row = [1.0 if [f[i] for i in where] == [r[c] for c in cols] else 0.0 for f in finest]
        if not np.isnan(r["denominator"]):
            a.append(row)
            b.append(sum(k for f, k in sizes.items() if row[finest.index(f)]))
        elif "denominator primary" in str(r["disclosure_note"]):
            a.append(row)
            b.append(None)  # (bounded below)
    a_eq = np.array([row for row, v in zip(a, b, strict=True) if v is not None])
    b_eq = [v for v in b if v is not None]
    a_ub, b_ub = [], []
    for row, v in zip(a, b, strict=True):
        if v is None:  # 1 <= cell <= 7
            a_ub += [row, [-x for x in row]]
            b_ub += [7.0, -1.0]
    c_male = np.array([1.0 if f[:2] == ("C", "male") else 0.0 for f in finest])
    ends = []
    for sign in (1, -1):
        res = linprog(sign * c_male, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq, bounds=bounds)
        assert res.status == 0, res.message
        ends.append(sign * res.fun)
    assert ends[0] < ends[1], f"C's men are exactly {ends[0]:g}"
