"""Audit of three query features — row datasets (``RowDataset``), quantile measures
(``Measures.define_quantile``, per patient and over rows) and rates per person-time
(``days_in_interval_for_patient`` with ``Measures.define_rate``) — against independent
oracles in plain pandas/numpy/scipy (``numpy.quantile(method="linear")`` for Hyndman & Fan 7,
``scipy.stats.binom`` for the ranks of the limits, day-by-day sets for person-time) on small
seeded stores with ties, missing values, overlapping and adjacent periods, and against
hand-worked figures at the edges. Every test runs on DuckDB and Spark."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pophealth.codelists import Codelist
from pophealth.query import (
    Measures,
    RowDataset,
    admissions,
    days,
    events,
    index_date,
    medications,
    patients,
    registrations,
    run_dataset,
    run_measures,
)
from tests.spec.conftest import _clean, make_store

D = dt.date
CODE = "271649006"
SBP = Codelist.of("snomedct", [CODE], name="sbp")
OTHER = "38341003"
INDEX = D(2025, 3, 31)
Q1 = [
    (D(2024, 1, 1), D(2024, 1, 31)),
    (D(2024, 2, 1), D(2024, 2, 29)),
    (D(2024, 3, 1), D(2024, 3, 31)),
]


def _reading(pid: str, day: dt.date, value: float | None, code: str = CODE) -> dict:
    return {"patient_id": pid, "date": day, "code": code, "value": value}


def _reg(pid: str, start: dt.date, end: dt.date | None = None, practice: str = "A1") -> dict:
    return {"patient_id": pid, "practice_id": practice, "start_date": start, "end_date": end}


# -- oracles ------------------------------------------------------------------------------
def _centile_oracle(values: list[float], q: float) -> tuple[float, float, float]:
    """Hyndman & Fan 7 by numpy, and the exact 95% binomial-rank limits by scipy: r the
    largest rank with P(B <= r-1) <= 0.025, s the smallest with P(B <= s-1) >= 0.975."""
    v = np.sort(np.asarray(values, dtype=float))
    n = len(v)
    if n == 0:
        return np.nan, np.nan, np.nan
    ranks = np.arange(1, n + 1)
    cdf = stats.binom.cdf(ranks - 1, n, q)
    low = ranks[cdf <= 0.025]
    high = ranks[cdf >= 0.975]
    lo = v[low.max() - 1] if len(low) and len(high) else np.nan
    hi = v[high.min() - 1] if len(low) and len(high) else np.nan
    return float(np.quantile(v, q, method="linear")), lo, hi


def _person_days(periods: list[tuple], start: dt.date, end: dt.date, until: dt.date | None) -> int:
    """Days of [start, end] held by any of the periods (both ends included; an open end
    runs on), none after ``until``: a set of days, so an overlap counts once."""
    held = set()
    for s, e in periods:
        d = max(s, start)
        last = min(e or end, end, until or end)
        while d <= last:
            held.add(d)
            d += dt.timedelta(1)
    return len(held)


def _poisson_limits(events: int) -> tuple[float, float]:
    """95% limits of a Poisson count: exact (chi-squared) below 10, Byar's from 10."""
    if events < 10:
        lo = stats.chi2.ppf(0.025, 2 * events) / 2 if events else 0.0
        return lo, stats.chi2.ppf(0.975, 2 * events + 2) / 2
    z, o = stats.norm.ppf(0.975), events
    lo = o * (1 - 1 / (9 * o) - z / (3 * np.sqrt(o))) ** 3
    return lo, (o + 1) * (1 - 1 / (9 * (o + 1)) + z / (3 * np.sqrt(o + 1))) ** 3


# -- row datasets -------------------------------------------------------------------------
def _rows(engine, tmp_path, tables, ds) -> list[dict]:
    store = make_store(tmp_path, tables)
    table = run_dataset(store, ds, engine=engine, index_date=INDEX, output="arrow")
    return [{k: _clean(v) for k, v in row.items()} for row in table.to_pylist()]


def test_row_dataset_leaves_out_rows_of_patients_not_in_patients(engine, tmp_path):
    """A Dataset has a row per patient of ``patients`` only; a row dataset's rows of a
    patient who is not there (an orphan reading) are no one's either, and were kept."""
    ds = RowDataset(events.matching(SBP), columns=["date"])
    ds.age = patients.age_on(ds.row.date)
    tables = {
        "patients": [{"patient_id": "a", "date_of_birth": D(1980, 6, 1)}],
        "events": [_reading("a", D(2025, 1, 2), 1.0), _reading("ghost", D(2025, 1, 3), 2.0)],
    }
    assert _rows(engine, tmp_path, tables, ds) == [
        {"patient_id": "a", "row_number": 1, "date": D(2025, 1, 2), "age": 44}
    ]


def test_row_dataset_same_day_rows_each_have_their_own_row(engine, tmp_path):
    """Two readings of one patient on one day are two rows, numbered by the other columns
    (value 1 before value 2, whatever order they were written in), each reading the same
    look-ahead: the medicines issued on or after that day and within 30 days."""
    ds = RowDataset(events.matching(SBP), columns=["date", "value"])
    r = ds.row
    ds.n30 = medications.on_or_after(r.date).on_or_before(r.date + days(30)).count_for_patient()
    ds.same_day = events.where(events.date == r.date).count_for_patient()
    tables = {
        "patients": [{"patient_id": "a"}, {"patient_id": "b"}],  # b: no rows, no output
        "events": [
            _reading("a", D(2025, 1, 10), 2.0),
            _reading("a", D(2025, 1, 10), 1.0),
            _reading("a", D(2025, 1, 10), None, OTHER),  # same day, another code
            _reading("a", D(2025, 2, 20), 5.0),
        ],
        "medications": [
            {"patient_id": "a", "date": D(2025, 1, 10), "code": "m1"},  # day 0
            {"patient_id": "a", "date": D(2025, 2, 9), "code": "m1"},  # day 30
            {"patient_id": "a", "date": D(2025, 2, 10), "code": "m1"},  # day 31: not
            {"patient_id": "b", "date": D(2025, 1, 10), "code": "m1"},
        ],
    }
    base = {"patient_id": "a", "date": D(2025, 1, 10), "n30": 2, "same_day": 3}
    assert _rows(engine, tmp_path, tables, ds) == [
        {**base, "row_number": 1, "value": 1.0},
        {**base, "row_number": 2, "value": 2.0},
        {
            "patient_id": "a",
            "row_number": 3,
            "date": D(2025, 2, 20),
            "value": 5.0,
            "n30": 0,
            "same_day": 1,
        },
    ]


def _random_row_tables(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    pats, regs, evs, meds = [], [], [], []
    for i in range(25):
        pid = f"p{i:02d}"
        if i < 22:  # p22-p24: rows, but not in patients
            pats.append({"patient_id": pid, "date_of_birth": D(1980 + i, 3, 15)})
        if rng.random() < 0.8:
            s = D(2024, 10, 1) + dt.timedelta(int(rng.integers(0, 150)))
            e = None if rng.random() < 0.5 else s + dt.timedelta(int(rng.integers(0, 60)))
            regs.append(_reg(pid, s, e))
        for _ in range(int(rng.integers(0, 5))):
            d = D(2024, 11, 1) + dt.timedelta(int(rng.integers(0, 200)))
            code = str(rng.choice([CODE, OTHER]))
            evs.append(_reading(pid, d, float(rng.integers(0, 3)), code))
            if rng.random() < 0.4:  # a tie: the same day and code
                evs.append(_reading(pid, d, float(rng.integers(0, 3))))
        for _ in range(int(rng.integers(0, 5))):
            d = D(2024, 11, 1) + dt.timedelta(int(rng.integers(0, 200)))
            meds.append(
                {
                    "patient_id": pid,
                    "date": d,
                    "code": f"m{rng.integers(0, 3)}",
                    "quantity": float(rng.integers(1, 9)),
                }
            )
    return {"patients": pats, "registrations": regs, "events": evs, "medications": meds}


def _row_oracle(tables: dict) -> list[dict]:
    """Per reading of the code in the 3 months to INDEX, of a patient in ``patients``
    registered on its day: the look-aheads worked out row by row in plain pandas."""
    ev, med, reg = (pd.DataFrame(tables[t]) for t in ("events", "medications", "registrations"))
    out = []
    for p in sorted(tables["patients"], key=lambda p: p["patient_id"]):
        pid, born = p["patient_id"], p["date_of_birth"]
        mine = ev[(ev.patient_id == pid) & (ev.code == CODE)]
        mine = mine[(mine.date > D(2024, 12, 31)) & (mine.date <= INDEX)]
        mine = mine.sort_values(["date", "value"])
        m = med[med.patient_id == pid]
        for number, row in enumerate(mine.itertuples(), 1):
            d = row.date
            regd = any(
                x.start_date <= d and (x.end_date is None or pd.isna(x.end_date) or x.end_date >= d)
                for x in reg[reg.patient_id == pid].itertuples()
            )
            if not regd:
                continue
            after = m[m.date >= d]
            later = mine[mine.date > d]
            before = m[m.date <= d]
            out.append(
                {
                    "patient_id": pid,
                    "row_number": number,
                    "date": d,
                    "value": row.value,
                    "n30": int((after.date <= d + dt.timedelta(30)).sum()),
                    "first_after": after.date.min() if len(after) else None,
                    "max_quantity": float(before.quantity.max()) if len(before) else None,
                    "same_day": int(((ev.patient_id == pid) & (ev.date == d)).sum()),
                    "age": d.year - born.year - ((d.month, d.day) < (born.month, born.day)),
                    "rows": len(mine),
                    "earlier": int((mine.date < d).sum()),  # same-day rows: not before
                    "next_date": later.date.min() if len(later) else None,
                    "next_value": later[later.date == later.date.min()].value.min()
                    if len(later)
                    else None,
                }
            )
    return out


@pytest.mark.parametrize("seed", [2, 7])
def test_row_dataset_matches_a_pandas_oracle(engine, tmp_path, seed):
    """Seeded stores with same-day ties, registrations that start and end around the rows,
    and readings of patients not in ``patients``: every row's number, columns, windowed
    count, first later issue, maximum earlier quantity, same-day count, age on the row's
    day, the patient's own count, her rows dated before this one and the next one (of a
    later day; of two that day, the lower value), and the population read on the row, as
    worked out by hand in pandas (rows at the same time numbered by value)."""
    frame = events.matching(SBP).in_last(months=3)
    ds = RowDataset(frame, columns=["date", "value"])
    r = ds.row
    ds.n30 = medications.on_or_after(r.date).on_or_before(r.date + days(30)).count_for_patient()
    ds.first_after = medications.on_or_after(r.date).first_for_patient().date
    ds.max_quantity = medications.on_or_before(r.date).maximum_for_patient(medications.quantity)
    ds.same_day = events.where(events.date == r.date).count_for_patient()
    ds.age = patients.age_on(r.date)
    ds.rows = frame.count_for_patient()
    ds.earlier = frame.before(r.date).count_for_patient()  # the frame itself, by the row
    ds.next_date = frame.after(r.date).first_for_patient().date
    ds.next_value = frame.after(r.date).first_for_patient().value  # ties: the lowest
    ds.define_population(registrations.registered_on(r.date))
    tables = _random_row_tables(seed)
    got = _rows(engine, tmp_path, tables, ds)
    expected = _row_oracle(tables)
    assert expected  # the seeds give rows
    # numbered among the patient's rows of the frame (before the population is applied)
    assert got == expected


# -- quantiles ----------------------------------------------------------------------------
def _random_quantile_tables(seed: int, n: int, per_patient: int) -> dict:
    rng = np.random.default_rng(seed)
    pats, regs, evs = [], [], []
    for i in range(n):
        pid = f"p{i:03d}"
        pats.append({"patient_id": pid, "sex": ["male", "female"][i % 2]})
        if rng.random() < 0.9:
            regs.append(_reg(pid, D(2020, 1, 1)))
        for _ in range(int(rng.integers(0, per_patient))):
            d = D(2024, 1, 1) + dt.timedelta(int(rng.integers(0, 91)))
            v = None if rng.random() < 0.1 else float(rng.choice([-2.5, 0, 1, 1, 2, 3.25, 7, 10]))
            evs.append(_reading(pid, d, v))
    return {"patients": pats, "registrations": regs, "events": evs}


def _quantile_oracle(tables: dict, per_row: bool) -> pd.DataFrame:
    """Per month and sex: the values (per patient, the largest reading of the month;
    per row, every reading) of the registered, then numpy's and scipy's figures."""
    ev = pd.DataFrame(tables["events"])
    regd = {r["patient_id"] for r in tables["registrations"]}
    out = []
    for s, e in Q1:
        for sex in ("female", "male"):
            ids = [p["patient_id"] for p in tables["patients"] if p["sex"] == sex]
            ids = [p for p in ids if p in regd]
            x = ev[ev.patient_id.isin(ids) & (ev.date >= s) & (ev.date <= e)]
            if per_row:
                vals, total = x.value.dropna().astype(float).tolist(), len(x)
            else:
                best = x.groupby("patient_id")["value"].max()  # NaN when none has a value
                vals, total = best.dropna().tolist(), len(ids)
            for q in (0.1, 0.5, 0.9):
                out.append((s, sex, len(vals), total, *_centile_oracle(vals, q)))
    cols = ["interval_start", "sex", "numerator", "denominator", "value"]
    return pd.DataFrame(out, columns=[*cols, "lower95_0cl", "upper95_0cl"])


@pytest.mark.parametrize("per_row", [False, True], ids=["per_patient", "per_row"])
def test_quantiles_match_numpy_and_binomial_ranks(engine, tmp_path, per_row):
    """Three months, two groups, negative and decimal values with ties and missing ones,
    a patient's value changing month to month (per row: up to 9 readings a patient):
    n, the denominator, the 10th, 50th and 90th centiles and their 95% limits (defined
    from 36 values for the 10th and 90th) as numpy and scipy give them."""
    tables = _random_quantile_tables(11, 120, 10 if per_row else 5)
    store = make_store(tmp_path, tables)
    m = Measures(intervals=Q1)
    if per_row:
        f = events.matching(SBP).in_interval()
        value, rows = f.value, f
    else:
        f = events.matching(SBP).in_interval().sort_by(events.value)
        value, rows = f.last_for_patient().value, None
    m.define_quantile(
        "q",
        value=value,
        rows=rows,
        among=registrations.registered_on(index_date),
        quantiles=(0.1, 0.5, 0.9),
        group_by={"sex": patients.sex},
    )
    got = run_measures(store, m, engine=engine, disclosure=False)
    expected = _quantile_oracle(tables, per_row)
    got = got[list(expected.columns)].reset_index(drop=True)
    got["interval_start"] = pd.to_datetime(got["interval_start"]).dt.date
    assert got["upper95_0cl"].notna().any()  # big enough for some limits
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)


def _equal_tables(n: int, value=lambda i: float(i)) -> dict:
    people = [f"p{i:02d}" for i in range(n)]
    return {
        "patients": [{"patient_id": p} for p in people],
        "registrations": [_reg(p, D(2020, 1, 1)) for p in people],
        "events": [_reading(p, D(2024, 1, 10), value(i)) for i, p in enumerate(people)],
    }


def _one_month(engine, tmp_path, tables, quantiles, disclosure=True) -> pd.DataFrame:
    store = make_store(tmp_path, tables)
    m = Measures(intervals=Q1[:1])
    m.define_quantile(
        "q",
        value=events.matching(SBP).in_interval().last_for_patient().value,
        among=registrations.registered_on(index_date),
        quantiles=quantiles,
    )
    return run_measures(store, m, engine=engine, disclosure=disclosure)


def test_quantile_tail_rule_at_8_and_33_patients(engine, tmp_path):
    """With disclosure control, the median of 8 patients (read from ranks 4 and 5, three
    beyond each) is released and its 95% limits (ranks 1 and 8) are not. The ranks are
    checked for every n the released count allows: the 90th centile of 33 (released as 35:
    33-37, each with 3 or more ranked above) is released; of 31 (rank 28, three above, but
    released as 30: 28-32, and of 28 rank 25.3 leaves two above) not, nor of 30."""
    out = _one_month(engine, tmp_path / "a", _equal_tables(8), (0.5,))
    assert out["value"].tolist() == [4.0]  # 3.5, released to the values' precision
    assert out["lower95_0cl"].isna().all() and out["upper95_0cl"].isna().all()
    out = _one_month(engine, tmp_path / "b", _equal_tables(33), (0.9,))
    assert out["value"].tolist() == [29.0]  # rank 29.8 of 0..32: 28.8
    out = _one_month(engine, tmp_path / "b31", _equal_tables(31), (0.9,))
    assert out["value"].isna().all()
    out = _one_month(engine, tmp_path / "c", _equal_tables(30), (0.9,))
    assert out["value"].isna().all()
    assert "fewer than 3 patients" in out["disclosure_note"].iloc[0]


def test_quantile_small_n_and_equal_values(engine, tmp_path):
    """Without disclosure control: one value is every centile; two give the midpoint
    (0.5) and 9/10 of the way (0.9); all equal give that value and limits equal to it
    (n = 6: the median's 95% ranks are 1 and 6)."""
    out = _one_month(engine, tmp_path / "a", _equal_tables(1, lambda i: -4.0), (0.5, 0.9), False)
    assert out["value"].tolist() == [-4.0, -4.0]
    assert out["lower95_0cl"].isna().all()
    out = _one_month(engine, tmp_path / "b", _equal_tables(2, lambda i: 3.0 + i), (0.5, 0.9), False)
    assert out["value"].tolist() == pytest.approx([3.5, 3.9])
    out = _one_month(engine, tmp_path / "c", _equal_tables(6, lambda i: 7.0), (0.5,), False)
    assert out[["value", "lower95_0cl", "upper95_0cl"]].iloc[0].tolist() == [7.0, 7.0, 7.0]
    out = _one_month(engine, tmp_path / "d", _equal_tables(5, lambda i: 7.0), (0.5,), False)
    assert out["lower95_0cl"].isna().all()  # n = 5: too few for a 95% interval


# -- rates per person-time ----------------------------------------------------------------
def _random_rate_tables(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    base = D(2023, 12, 25)
    pats, regs, adms = [], [], []
    for i in range(40):
        pid = f"p{i:02d}"
        death = base + dt.timedelta(int(rng.integers(0, 110))) if rng.random() < 0.3 else None
        pats.append({"patient_id": pid, "date_of_death": death})
        for k in range(int(rng.integers(0, 4))):
            s = base + dt.timedelta(int(rng.integers(0, 100)))
            e = None if rng.random() < 0.3 else s + dt.timedelta(int(rng.integers(0, 40)))
            regs.append(_reg(pid, s, e, f"A{k}"))
        for _ in range(int(rng.integers(0, 5))):
            d = base + dt.timedelta(int(rng.integers(0, 100)))
            adms.append({"patient_id": pid, "admission_date": d, "discharge_date": d})
    return {"patients": pats, "registrations": regs, "admissions": adms}


def _rate_oracle(tables: dict) -> pd.DataFrame:
    reg, adm = pd.DataFrame(tables["registrations"]), pd.DataFrame(tables["admissions"])
    out = []
    for s, e in Q1:
        events_, person_days = 0, 0
        for p in tables["patients"]:
            mine = reg[reg.patient_id == p["patient_id"]]
            periods = [
                (x.start_date, None if pd.isna(x.end_date) else x.end_date)
                for x in mine.itertuples()
            ]
            held = _person_days(periods, s, e, p["date_of_death"])
            if held:
                person_days += held
                a = adm[adm.patient_id == p["patient_id"]]
                events_ += int(((a.admission_date >= s) & (a.admission_date <= e)).sum())
        scale = 1000 / (person_days / 365.25)
        lo, hi = _poisson_limits(events_)
        out.append((s, events_, person_days, events_ * scale, lo * scale, hi * scale))
    cols = ["interval_start", "numerator", "denominator", "value", "lower95_0cl", "upper95_0cl"]
    return pd.DataFrame(out, columns=cols)


def test_rates_match_day_by_day_person_time(engine, tmp_path):
    """40 patients with 0-3 registrations each (overlapping, adjacent, open, one-day) and
    deaths before, inside and after them, over January, February 2024 (29 days) and
    March: the events, the person-days (each day counted once, none after death), the
    rate per 1,000 person-years of 365.25 days and its Poisson limits (exact below 10,
    Byar's from 10: the seed gives both), as worked out day by day."""
    tables = _random_rate_tables(0)
    store = make_store(tmp_path, tables)
    m = Measures(intervals=Q1)
    m.define_rate(
        "r",
        events=admissions.in_interval().count_for_patient(),
        person_time=registrations.days_in_interval_for_patient(until=patients.date_of_death),
    )
    got = run_measures(store, m, engine=engine, disclosure=False)
    expected = _rate_oracle(tables)
    assert (expected["numerator"] < 10).any() and (expected["numerator"] >= 10).any()
    got = got[list(expected.columns)].reset_index(drop=True)
    got["interval_start"] = pd.to_datetime(got["interval_start"]).dt.date
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)


def test_rate_edges_by_hand(engine, tmp_path):
    """February 2024 (29 days), no events: a dead before joining (0 days: not counted), b
    registered one day (1), c dies on the 1st (1: the day of death counts), d on A to the
    10th, B 10th-20th (the 10th once), C from the 21st (adjacent: no gap) — 29, e left on
    31 January and rejoins 1 March (0). 31 person-days; the rate is 0 with a lower limit
    of 0 and an exact upper one, -log(0.025) events per 31 days."""
    tables = {
        "patients": [
            {"patient_id": "a", "date_of_death": D(2023, 12, 1)},
            {"patient_id": "b"},
            {"patient_id": "c", "date_of_death": D(2024, 2, 1)},
            {"patient_id": "d"},
            {"patient_id": "e"},
        ],
        "registrations": [
            _reg("a", D(2024, 1, 1)),
            _reg("b", D(2024, 2, 10), D(2024, 2, 10)),
            _reg("c", D(2020, 1, 1)),
            _reg("d", D(2020, 1, 1), D(2024, 2, 10)),
            _reg("d", D(2024, 2, 10), D(2024, 2, 20), "B2"),
            _reg("d", D(2024, 2, 21), practice="C3"),
            _reg("e", D(2020, 1, 1), D(2024, 1, 31)),
            _reg("e", D(2024, 3, 1)),
        ],
    }
    store = make_store(tmp_path, tables)
    m = Measures(intervals=[Q1[1]])
    m.define_rate(
        "r",
        events=admissions.in_interval().count_for_patient(),
        person_time=registrations.days_in_interval_for_patient(until=patients.date_of_death),
        per=1000,
        unit="days",
    )
    row = run_measures(store, m, engine=engine, disclosure=False).iloc[0]
    assert (row["numerator"], row["denominator"], row["value"]) == (0, 31, 0.0)
    assert row["lower95_0cl"] == 0.0
    assert row["upper95_0cl"] == pytest.approx(-np.log(0.025) / 31 * 1000)


def test_row_quantile_tail_needs_three_patients_not_three_rows(engine, tmp_path):
    """40 readings over rows, with disclosure control: values 1-37 of 37 patients and the
    3 highest (100-102). The 90th centile sits at rank 36.1 (36.1 by numpy), with 3 rows
    above rank 37: released when they are 3 patients' rows, withheld when they are all
    one patient's."""

    def tables(top: list[str]) -> dict:
        people = [f"p{i:02d}" for i in range(37)] + ["x", "y"]
        readings = [_reading(f"p{i:02d}", D(2024, 1, 10), float(i + 1)) for i in range(37)]
        readings += [_reading(p, D(2024, 1, 11), 100.0 + k) for k, p in enumerate(top)]
        return {
            "patients": [{"patient_id": p} for p in people],
            "registrations": [_reg(p, D(2020, 1, 1)) for p in people],
            "events": readings,
        }

    def centile(tables: dict, path) -> pd.Series:
        m = Measures(intervals=Q1[:1])
        f = events.matching(SBP).in_interval()
        m.define_quantile(
            "q",
            value=f.value,
            rows=f,
            among=registrations.registered_on(index_date),
            quantiles=(0.9,),
        )
        return run_measures(make_store(path, tables), m, engine=engine).iloc[0]

    spread = tables(["p00", "x", "y"])
    assert _centile_oracle([r["value"] for r in spread["events"]], 0.9)[0] == pytest.approx(36.1)
    row = centile(spread, tmp_path / "a")
    # (36.1 released to the values' precision, whole numbers)
    assert (row["numerator"], row["value"]) == (40, 36.0)
    row = centile(tables(["x", "x", "x"]), tmp_path / "b")
    assert np.isnan(row["value"])
    assert "patients with rows" in row["disclosure_note"]


@pytest.mark.parametrize(
    ("with_events", "each", "expected"),
    [(3, 3, (None, 370.0)), (8, 1, (10.0, 370.0))],
    ids=["3_patients_9_events", "8_patients_8_events"],
)
def test_rate_disclosure_by_hand(engine, tmp_path, with_events, each, expected):
    """12 patients registered all January 2024 (372 person-days; one's extra one-day
    registration inside it counts nothing): the person-days are released rounded to 370;
    9 events of 3 patients are withheld (few patients), 8 events of 8 released as 10, and
    the rate then worked out from the released figures: 10 / 370 per 1,000 person-days."""
    people = [f"p{i:02d}" for i in range(12)]
    tables = {
        "patients": [{"patient_id": p} for p in people],
        "registrations": [_reg(p, D(2020, 1, 1)) for p in people]
        + [_reg("p00", D(2024, 1, 1), D(2024, 1, 3), "B2")],
        "admissions": [
            {"patient_id": p, "admission_date": D(2024, 1, 5 + k), "discharge_date": None}
            for p in people[:with_events]
            for k in range(each)
        ],
    }
    m = Measures(intervals=Q1[:1])
    m.define_rate(
        "r",
        events=admissions.in_interval().count_for_patient(),
        person_time=registrations.days_in_interval_for_patient(),
        unit="days",
    )
    row = run_measures(make_store(tmp_path, tables), m, engine=engine).iloc[0]
    events_, person_days = expected
    assert row["denominator"] == person_days
    if events_ is None:
        assert np.isnan(row["numerator"]) and np.isnan(row["value"])
    else:
        lo, hi = _poisson_limits(10)
        assert row["numerator"] == events_
        assert row["value"] == pytest.approx(10 / 370 * 1000)
        assert (row["lower95_0cl"], row["upper95_0cl"]) == (
            pytest.approx(lo / 370 * 1000),
            pytest.approx(hi / 370 * 1000),
        )
