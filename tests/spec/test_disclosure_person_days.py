"""Person-days give back the patients behind them (finding F2 of the twenty-ninth session's
intruder hunt; docs/query.md section 4, "Rates per person-time").

A rate per person-time by practice beside the same rate overall, over one quarter of 90 days.
Practices C and D have 7 patients each, registered all quarter. Each practice's person-days
are withheld for their few patients (7 or fewer) — yet each patient adds at most 90 days,
so a withheld cell is at most 630 days. The overall's 1,260 days, released as 1,258-1,262,
then leaves each practice 628 or more: more than 6 × 90, so exactly 7 patients each. The
audit treated a cell withheld for its few patients as any size, and protected the days,
not the patients behind them.

Now the release knows the most one patient adds to a row's person-days (the interval's
days): such a cell is at most 7 times that, and a cell the released ones show to be more
than 6 times that is protected by withholding one more, as a cell pinned to one value is.

The intruder here reasons from the released result only: a released count r is r − 2 …
r + 2; a count withheld as "primary (few patients)" has 1-7 patients behind it, each with
1 to 90 days; any other withheld count is 0 or more; counts that add up add up exactly. An
integer programme gives the fewest and most patients a practice can have.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

from pophealth import disclosure as sdc
from pophealth.query import (
    Measures,
    admissions,
    index_date,
    monthly,
    patients,
    quarterly,
    registrations,
    run_measures,
)
from tests.spec.conftest import admission_row, make_store

D = dt.date
Q1 = quarterly(D(2025, 1, 1), 1)  # 1 January to 31 March 2025: 90 days
DAYS = 90
LONG_AGO = D(2020, 1, 1)
PRACTICE = {"practice": registrations.practice_on(index_date).practice_id}


def _store(tmp_path, plan: list[tuple[str, int, dt.date]]):
    """Per practice: its patients, the day they registered, and an emergency admission in
    February for each of its first five."""
    regs, adms = [], []
    for practice, n, start in plan:
        for i in range(n):
            pid = f"{practice}{i:02d}"
            regs.append({"patient_id": pid, "practice_id": practice, "start_date": start})
            if i < 5:
                adms.append(admission_row(pid, D(2025, 2, 10)))
    return make_store(tmp_path, {"registrations": regs, "admissions": adms})


def _rates(standardised: bool = False) -> Measures:
    m = Measures(intervals=Q1)
    days = registrations.days_in_interval_for_patient()
    events = admissions.in_interval().count_for_patient()
    for name, by in (("by_practice", PRACTICE), ("overall", {})):
        if standardised:
            m.define_standardised_rate(
                name, events=events, person_time=days, per=1000, unit="days", group_by=by
            )
        else:
            m.define_rate(name, events=events, person_time=days, per=1000, unit="days", group_by=by)
    return m


def _patients_range(released: pd.DataFrame, practices: list[str], of: str) -> tuple[int, int]:
    """The fewest and most patients practice ``of`` can have, to an intruder holding the
    released person-days by practice and overall."""
    rows = released[released["measure"] == "by_practice"].set_index("practice")
    overall = released[released["measure"] == "overall"].iloc[0]
    n = len(practices)  # variables: each practice's days, then its patients
    a, lo, hi = [], [], []

    def knows(row: np.ndarray, low: float, high: float) -> None:
        a.append(row)
        lo.append(low)
        hi.append(high)

    days_lo = np.zeros(2 * n)
    for i, practice in enumerate(practices):
        r = rows.loc[practice]
        one = np.zeros(2 * n)
        one[i] = 1
        if not np.isnan(r["denominator"]):
            knows(one, r["denominator"] - 2, r["denominator"] + 2)
        elif "denominator primary (few patients)" in str(r["disclosure_note"]):
            patients = np.zeros(2 * n)
            patients[n + i] = 1
            knows(patients, 1, 7)
            most = one.copy()
            most[n + i] = -DAYS  # days ≤ 90 × patients
            knows(most, -np.inf, 0)
            least = one.copy()
            least[n + i] = -1  # days ≥ patients
            knows(least, 0, np.inf)
        days_lo += one
    if not np.isnan(overall["denominator"]):
        knows(days_lo, overall["denominator"] - 2, overall["denominator"] + 2)
    out = []
    for sign in (1, -1):
        c = np.zeros(2 * n)
        c[n + practices.index(of)] = sign
        res = milp(
            c,
            constraints=LinearConstraint(np.array(a), lo, hi),
            integrality=np.ones(2 * n),
            bounds=Bounds(0, 10_000_000),
        )
        assert res.status == 0, res.message  # the exact counts are always a solution
        out.append(round(sign * res.fun))
    return out[0], out[1]


def _released(store, standardised: bool = False) -> pd.DataFrame:
    return run_measures(store, _rates(standardised), engine="duckdb")


def test_the_intruder_finds_the_patients_behind_withheld_days():
    """The intruder's arithmetic on its own, on the release as it was: C and D withheld for
    few patients, the overall released as 1,260 days: 7 patients each."""
    released = pd.DataFrame(
        {
            "measure": ["by_practice", "by_practice", "overall"],
            "practice": ["C", "D", None],
            "denominator": [np.nan, np.nan, 1260.0],
            "disclosure_note": ["denominator primary (few patients)"] * 2 + [None],
        }
    )
    assert _patients_range(released, ["C", "D"], "C") == (7, 7)
    released.loc[2, "denominator"] = 1080.0  # 1,078 − 630 = 448 or more: 5-7
    assert _patients_range(released, ["C", "D"], "C") == (5, 7)


@pytest.mark.parametrize("standardised", [False, True], ids=["rate", "standardised_rate"])
@pytest.mark.parametrize(
    "plan",
    [
        [("C", 7, LONG_AGO), ("D", 7, LONG_AGO)],  # 630 + 630: the days pinned too
        [("C", 7, LONG_AGO), ("D", 7, D(2025, 1, 2))],  # 630 + 623: only the patients
        [("C", 7, LONG_AGO), ("D", 7, LONG_AGO), ("E", 30, LONG_AGO)],
    ],
    ids=["7_and_7", "7_and_7_one_day_short", "beside_a_large_practice"],
)
def test_withheld_person_days_do_not_give_back_their_patients(tmp_path, plan, standardised):
    """F2: practices of 7 patients each, registered all quarter (or one day short of it),
    their person-days withheld for few patients, beside the overall (and a practice of 30).
    Safe: neither practice's patients pinned to one number."""
    released = _released(_store(tmp_path, plan), standardised)
    practices = [p for p, _, _ in plan]
    for practice in ("C", "D"):
        lo, hi = _patients_range(released, practices, practice)
        assert lo < hi, f"practice {practice}'s patients are exactly {lo}"


def test_the_overall_stays_released_where_the_days_do_not_give_the_patients(tmp_path):
    """C's 7 registered all quarter and D's 7 only from 15 February (45 days each): the
    overall 945 days leaves C 315 or more — 4 to 7 patients, not one number — so nothing
    more is withheld than before: the overall's days are released."""
    released = _released(_store(tmp_path, [("C", 7, LONG_AGO), ("D", 7, D(2025, 2, 15))]))
    overall = released[released["measure"] == "overall"].iloc[0]
    assert overall["denominator"] == 945
    assert _patients_range(released, ["C", "D"], "C") == (4, 7)


def _table(days: list[int], patients: list[int]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "practice": [*"CDE"[: len(days) - 1], "Total"],
            "days": days,
            "patients": patients,
            "most": [DAYS] * len(days),
        }
    )


def _apply(table: pd.DataFrame, **kw) -> pd.DataFrame:
    return sdc.apply(
        table, ["days"], by=["practice"], margins=["practice"], total_label="Total",
        patients={"days": "patients"}, **kw,
    )  # fmt: skip


def test_apply_protects_the_patients_behind_a_count_given_the_most_each_adds():
    """``most_per_patient`` in :func:`pophealth.disclosure.apply`: 626 + 630 days of 7
    patients each (90 days at most) beside their released total (1,256), and a practice of
    none: the total is withheld, as C ≥ 1,256 − 630 = 626 > 540 (6 × 90) gives 7 patients;
    without it the audit treats the cells as any size and releases the total. The column of
    the most is dropped, as the patients' column is."""
    table = _table([630, 626, 0, 1256], [7, 7, 0, 14])
    before = _apply(table.drop(columns="most"))
    assert before["days"].tolist()[2:] == [0, 1255]
    after = _apply(table, most_per_patient={"days": "most"})
    assert np.isnan(after["days"].iloc[3])
    assert after["disclosure_note"].iloc[3] == "days secondary"
    assert "most" not in after.columns and "patients" not in after.columns


def test_apply_ignores_a_most_the_cell_already_exceeds():
    """A person-time that can exceed the interval's days (the analyst's own, overlapping
    periods counted twice) says nothing of its patients: a withheld cell of more than 7 ×
    the most is audited as before, as any size (here C's 700 days of 7 patients beside
    D's 600 and their total: nothing pinned, the total released)."""
    table = _table([700, 600, 0, 1300], [7, 7, 0, 14])
    out = _apply(table, most_per_patient={"days": "most"})
    assert out["days"].iloc[3] == 1300


def test_apply_says_what_is_missing_for_most_per_patient():
    table = _table([630, 626, 0, 1256], [7, 7, 0, 14])
    with pytest.raises(ValueError, match="most_per_patient column 'gone' for 'days' not found"):
        _apply(table, most_per_patient={"days": "gone"})
    with pytest.raises(ValueError, match="give the patients behind it too"):
        sdc.apply(
            table, ["days"], by=["practice"], margins=["practice"], total_label="Total",
            most_per_patient={"days": "most"},
        )  # fmt: skip


def test_one_more_cell_where_one_protects_both():
    """630 + 630 days (7 patients each, all quarter) beside a practice of 2,700 and their
    total of 3,960: withholding the 2,700 frees both, so the total stays released (the
    audit covers one such cell at a time, then looks again)."""
    table = _table([630, 630, 2700, 3960], [7, 7, 30, 44])
    out = _apply(table, most_per_patient={"days": "most"})
    assert out["days"].isna().tolist() == [True, True, True, False]


def test_a_months_cover_stays_in_its_own_month():
    """January's practices (196, 217, 195 days of 7 patients; D 736; total 1,344) need no
    more withheld; February's (196 each: 7 patients × 28 days, at their most) need one more,
    D. In one table of both months, the cover is February's D — not January's, which adds
    nothing to what February's totals say."""
    rows = []
    for month, days, most in (
        ("2025-01", [196, 217, 195, 736, 1344], 31),
        ("2025-02", [196, 196, 196, 700, 1288], 28),
    ):
        for practice, d in zip([*"ABCD", "Total"], days, strict=True):
            patients = {"D": 25, "Total": 46}.get(practice, 7)
            row = {"month": month, "practice": practice, "days": d, "patients": patients}
            rows.append(row | {"most": most})
    out = sdc.apply(
        pd.DataFrame(rows), ["days"], by=["month", "practice"], margins=["practice"],
        total_label="Total", patients={"days": "patients"}, most_per_patient={"days": "most"},
    )  # fmt: skip
    withheld = out[out["days"].isna()]
    assert set(zip(withheld["month"], withheld["practice"], strict=True)) == {
        ("2025-01", "A"), ("2025-01", "B"), ("2025-01", "C"),
        ("2025-02", "A"), ("2025-02", "B"), ("2025-02", "C"), ("2025-02", "D"),
    }  # fmt: skip


def _cross_store(tmp_path, sizes: dict[str, int]):
    """Per practice, this many women and as many men, registered all quarter."""
    regs, people = [], []
    for practice, n in sizes.items():
        for sex in ("female", "male"):
            for i in range(n):
                pid = f"{practice}{sex[0]}{i:02d}"
                regs.append({"patient_id": pid, "practice_id": practice, "start_date": LONG_AGO})
                people.append({"patient_id": pid, "sex": sex})
    return make_store(tmp_path, {"registrations": regs, "patients": people})


def _cross_rates(names: tuple[str, ...], intervals=None) -> Measures:
    m = Measures(intervals=Q1)
    days = registrations.days_in_interval_for_patient()
    events = admissions.in_interval().count_for_patient()
    by = {
        "by_practice": PRACTICE,
        "by_practice_sex": PRACTICE | {"sex": patients.sex},
        "overall": {},
    }
    for name in names:
        m.define_rate(
            name, events=events, person_time=days, per=1000, unit="days", group_by=by[name],
            intervals=intervals if name == "by_practice" else None,
        )  # fmt: skip
    return m


def _cross_patients_range(released: pd.DataFrame, practices: list[str], of: tuple) -> tuple:
    """The fewest and most patients the cell ``of`` (practice, sex) of the measure by
    practice and sex can have, to an intruder holding every released person-days count:
    each practice's two cells add up to its count by practice, all to the overall."""
    cells = [(p, s) for p in practices for s in ("female", "male")]
    n = len(cells)  # variables: each cell's days, then its patients
    a, lo, hi = [], [], []

    def knows(row, low, high):
        a.append(row)
        lo.append(low)
        hi.append(high)

    def window(value, note):
        if not np.isnan(value):
            return value - 2, value + 2
        return 0, np.inf

    cross = released[released["measure"] == "by_practice_sex"].set_index(["practice", "sex"])
    for i, cell in enumerate(cells):
        one = np.zeros(2 * n)
        one[i] = 1
        r = cross.loc[cell]
        knows(one, *window(r["denominator"], r["disclosure_note"]))
        if "denominator primary (few patients)" in str(r["disclosure_note"]):
            patients_ = np.zeros(2 * n)
            patients_[n + i] = 1
            knows(patients_, 1, 7)
            most = one.copy()
            most[n + i] = -DAYS
            knows(most, -np.inf, 0)
            least = one.copy()
            least[n + i] = -1
            knows(least, 0, np.inf)
    by_practice = released[released["measure"] == "by_practice"].set_index("practice")
    for practice in practices:
        both = np.zeros(2 * n)
        both[[cells.index((practice, "female")), cells.index((practice, "male"))]] = 1
        r = by_practice.loc[practice]
        knows(both, *window(r["denominator"], r["disclosure_note"]))
    overall = released[released["measure"] == "overall"]
    if len(overall):  # (a run without the overall shows none)
        knows(np.r_[np.ones(n), np.zeros(n)], *window(overall.iloc[0]["denominator"], None))
    out = []
    for sign in (1, -1):
        c = np.zeros(2 * n)
        c[n + cells.index(of)] = sign
        res = milp(
            c, constraints=LinearConstraint(np.array(a), lo, hi),
            integrality=np.ones(2 * n), bounds=Bounds(0, 10_000_000),
        )  # fmt: skip
        assert res.status == 0, res.message
        out.append(round(sign * res.fun))
    return out[0], out[1]


def test_a_cross_tab_beside_its_margins_is_released_with_them(tmp_path):
    """The helper's cross-measure case: a rate by practice and sex beside the same rate by
    practice and overall. C's women and men (7 each, all quarter) are withheld for few
    patients; released on its own, the cross-tab left C's 1,260 days by practice to give
    7 patients each. Now one table, each practice's two cells adding up to its count by
    practice: neither pinned, and nothing named in ``attrs["unlinked"]``."""
    store = _cross_store(tmp_path, {"C": 7, "E": 15})
    released = run_measures(store, _cross_rates(("by_practice", "by_practice_sex", "overall")))
    assert released.attrs["unlinked"] == []
    cells = released[released["measure"] == "by_practice_sex"].set_index(["practice", "sex"])
    assert np.isnan(cells.loc[("C", "female"), "denominator"])
    for cell in (("C", "female"), ("C", "male")):
        lo, hi = _cross_patients_range(released, ["C", "E"], cell)
        assert lo < hi, f"{cell}'s patients are exactly {lo}"


def test_a_cross_tab_beside_its_margin_without_an_overall_is_released_with_it(tmp_path):
    """The helper's minimal repro of the thirtieth session: the cross-tab beside the rate by
    practice, with no overall in the run. The two are linked through their overall, which
    the release keeps for its audit and does not show: C's women and men are not pinned,
    no overall row appears, and nothing is named in ``attrs["unlinked"]``."""
    store = _cross_store(tmp_path, {"C": 7, "E": 15})
    released = run_measures(store, _cross_rates(("by_practice", "by_practice_sex")))
    assert released.attrs["unlinked"] == []
    assert set(released["measure"]) == {"by_practice", "by_practice_sex"}
    assert not released["disclosure_note"].astype(str).str.contains("not shown").any()
    exact = run_measures(store, _cross_rates(("by_practice", "by_practice_sex")), disclosure=False)
    assert len(released) == len(exact)
    cells = released[released["measure"] == "by_practice_sex"].set_index(["practice", "sex"])
    assert np.isnan(cells.loc[("C", "female"), "denominator"])
    for cell in (("C", "female"), ("C", "male")):
        lo, hi = _cross_patients_range(released, ["C", "E"], cell)
        assert lo < hi, f"{cell}'s patients are exactly {lo}"


def test_a_cross_tab_not_linked_with_its_margin_is_named(tmp_path):
    """With the measure by practice over other intervals, the release does not link the
    cross-tab with it: ``attrs["unlinked"]`` names it (and ``pophealth measures`` prints
    it); with disclosure off, nothing is named."""
    store = _cross_store(tmp_path, {"C": 7, "E": 15})
    m = _cross_rates(("by_practice", "by_practice_sex", "overall"), monthly(D(2025, 1, 1), 3))
    released = run_measures(store, m, engine="duckdb")
    (why,) = released.attrs["unlinked"]
    assert why.startswith("measure 'by_practice_sex' (by practice, sex) adds up to 'by_practice'")
    assert run_measures(store, m, engine="duckdb", disclosure=False).attrs["unlinked"] == []


def test_a_proportions_cross_tab_is_released_with_its_margins(tmp_path):
    """Counts too: the proportion admitted, by practice and sex, beside it by practice, by
    sex and overall. C's 7 women and 7 men admitted (of 20 each) are withheld; C's 14 (of
    40) by practice, were it released beside them, would give 7 each to the exact counts.
    Now one table: C's four cells (and whatever else is withheld) are not pinned by any
    released count, the practice's, the sex's or the overall."""
    regs, people, adms = [], [], []
    for practice, n, admitted in (("C", 20, 7), ("E", 30, 12)):
        for sex in ("female", "male"):
            for i in range(n):
                pid = f"{practice}{sex[0]}{i:02d}"
                regs.append({"patient_id": pid, "practice_id": practice, "start_date": LONG_AGO})
                people.append({"patient_id": pid, "sex": sex})
                if i < admitted:
                    adms.append(admission_row(pid, D(2025, 2, 10)))
    store = make_store(tmp_path, {"registrations": regs, "patients": people, "admissions": adms})
    m = Measures(intervals=Q1)
    registered = registrations.registered_on(index_date)
    admitted = admissions.in_interval().exists_for_patient()
    sex = {"sex": patients.sex}
    for name, by in (
        ("overall", {}), ("by_practice", PRACTICE), ("by_sex", sex),
        ("by_practice_sex", PRACTICE | sex),
    ):  # fmt: skip
        m.define_measure(name, numerator=admitted, denominator=registered, group_by=by)
    released = run_measures(store, m, engine="duckdb")
    assert released.attrs["unlinked"] == []
    cross = released[released["measure"] == "by_practice_sex"].set_index(["practice", "sex"])
    assert cross.loc[[("C", "female"), ("C", "male")], "numerator"].isna().all()
    # the exact-count model: every released numerator as it is, the sums known
    cells = [(p, s) for p in ("C", "E") for s in ("female", "male")]
    value = {c: cross.loc[c, "numerator"] for c in cells}
    exact = run_measures(store, m, engine="duckdb", disclosure=False)
    true = exact[exact["measure"] == "by_practice_sex"].set_index(["practice", "sex"])

    def one(frame: pd.DataFrame, measure: str, column: str | None, group: str | None):
        rows = frame[frame["measure"] == measure]
        return rows.iloc[0] if column is None else rows.set_index(column).loc[group]

    a, b = [], []
    for group, measure, column, at in (
        *((p, "by_practice", "practice", 0) for p in ("C", "E")),
        *((s, "by_sex", "sex", 1) for s in ("female", "male")),
        (None, "overall", None, None),
    ):
        if np.isnan(one(released, measure, column, group)["numerator"]):
            continue
        a.append([1.0 if at is None or c[at] == group else 0.0 for c in cells])
        b.append(float(one(exact, measure, column, group)["numerator"]))
    bounds = [
        (true.loc[c, "numerator"],) * 2
        if not np.isnan(value[c])
        else (1, 7)
        if "numerator primary" in str(cross.loc[c, "disclosure_note"])
        else (0, None)
        for c in cells
    ]
    for target in (("C", "female"), ("C", "male")):
        ends = []
        for sign in (1, -1):
            c = np.zeros(len(cells))
            c[cells.index(target)] = sign
            res = linprog(c, A_eq=np.array(a) if a else None, b_eq=b or None, bounds=bounds)
            assert res.status == 0
            ends.append(sign * res.fun)
        assert ends[0] < ends[1], f"{target} is exactly {ends[0]}"
