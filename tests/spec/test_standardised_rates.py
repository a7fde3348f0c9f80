"""Spec: directly age-standardised rates as measures (``Measures.define_standardised_rate``)
— events per population, or per person-time, standardised to the European Standard
Population 2013 (../shared/PROGRAMMES.md 12.3: Dobson limits, ESP 2013) — counted by age
band on the engine, every interval in one pass, on every engine, through the one disclosure
rule.

The expected rates are worked by hand in each test from the formula, DSR = Σ(xᵢ/nᵢ·wᵢ) / Σwᵢ,
with Dobson's limits DSR + √(var/O)·(O' − O), var = Σ xᵢ(wᵢ/nᵢ)² / (Σwᵢ)², O the events and
O' Byar's limit for O, written out below (Dobson et al., Stat Med 1991; the Fingertips
method, PHEindicatormethods' ``calculate_dsr``). The ESP 2013 weights used: 65-69 5,500;
70-74 5,000; 75-79 4,000; 80-84 2,500; 85-89 1,500; 90+ 1,000.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pophealth.cli import app
from pophealth.query import (
    Measures,
    QueryError,
    admissions,
    index_date,
    monthly,
    patients,
    registrations,
    run_measures,
    yearly,
)
from pophealth.query.measures import result_columns
from tests.spec.conftest import make_store

D = dt.date
YEAR_2025 = yearly("2025-01-01", 1)  # ends on 31 December 2025: ages are taken then
Z95 = 1.959963984540054


def _byar_lower(o: float, z: float = Z95) -> float:
    return o * (1 - 1 / (9 * o) - z / (3 * math.sqrt(o))) ** 3


def _byar_upper(o: float, z: float = Z95) -> float:
    o1 = o + 1
    return o1 * (1 - 1 / (9 * o1) + z / (3 * math.sqrt(o1))) ** 3


def _dobson(x: list[float], n: list[float], w: list[float], per: float) -> tuple:
    """The rate and its 95% limits, by hand from the bands' events, populations, weights."""
    dsr = sum(xi / ni * wi for xi, ni, wi in zip(x, n, w, strict=True)) / sum(w)
    var = sum(xi * (wi / ni) ** 2 for xi, ni, wi in zip(x, n, w, strict=True)) / sum(w) ** 2
    o = sum(x)
    scale = math.sqrt(var / o)
    return (
        dsr * per,
        (dsr + scale * (_byar_lower(o) - o)) * per,
        (dsr + scale * (_byar_upper(o) - o)) * per,
    )


def _patient(pid: str, born: dt.date, **kw) -> dict:
    return {"patient_id": pid, "date_of_birth": born, **kw}


def _reg(pid: str, start: dt.date = D(2000, 1, 1), end: dt.date | None = None) -> dict:
    return {"patient_id": pid, "practice_id": "A1", "start_date": start, "end_date": end}


def _adm(pid: str, day: dt.date) -> dict:
    return {"patient_id": pid, "admission_date": day, "discharge_date": day}


def _registered():
    return registrations.registered_on(index_date) & patients.is_alive_on(index_date)


def _admissions():
    return admissions.in_interval().count_for_patient()


def _older_tables() -> dict:
    """Ages on 31 December 2025 and admissions in 2025:

    80-84: a1-a4 (82), 3, 2, 1 and 0 admissions (a1 also one in 2024: another interval)
    85-89: b1, b2 (87), 2 and 1
    90+:   c1 (95), 1
    not in the rate: y1 (70, younger than the standard's bands from 80) with 5; d1 (82, left
    the practice in 2020) with 4.
    So x = 6, 3, 1 events over n = 4, 2, 1 patients."""
    people = {"a1": 3, "a2": 2, "a3": 1, "a4": 0, "b1": 2, "b2": 1, "c1": 1, "y1": 5, "d1": 4}
    born = {"a": D(1943, 6, 1), "b": D(1938, 6, 1), "c": D(1930, 6, 1), "y": D(1955, 6, 1)}
    born["d"] = born["a"]
    return {
        "patients": [_patient(p, born[p[0]]) for p in people],
        "registrations": [_reg(p) if p != "d1" else _reg(p, end=D(2020, 1, 1)) for p in people],
        "admissions": [
            _adm(p, D(2025, 1 + k, 10)) for p, count in people.items() for k in range(count)
        ]
        + [_adm("a1", D(2024, 5, 5))],
    }


def test_a_rate_standardised_by_hand(engine, tmp_path):
    store = make_store(tmp_path, _older_tables())
    m = Measures(intervals=YEAR_2025)
    m.define_standardised_rate(
        "adm", events=_admissions(), among=_registered(), per=1000, min_age=80
    )
    out = run_measures(store, m, engine=engine, disclosure=False)
    assert list(out.columns) == result_columns()
    (row,) = out.itertuples()
    assert (row.numerator, row.denominator) == (10, 7)
    # (6/4·2500 + 3/2·1500 + 1/1·1000) / 5000 = 1.4 per person: 1,400 per 1,000
    value, lower, upper = _dobson([6, 3, 1], [4, 2, 1], [2500, 1500, 1000], per=1000)
    assert value == pytest.approx(1400)
    assert row.value == pytest.approx(value)
    assert (row.lower95_0cl, row.upper95_0cl) == pytest.approx((lower, upper))
    assert row.statistic == "age-standardised rate per 1,000 (ESP 2013, ages 80+)"
    assert row.method.startswith("Dobson; from the exact counts of each age band")
    assert row.disclosure_note == "not disclosure-controlled"


def test_fewer_than_10_events_or_an_empty_band_give_no_rate_and_say_why(engine, tmp_path):
    tables = _older_tables()
    tables["admissions"] = [a for a in tables["admissions"] if a["patient_id"] != "c1"]
    store = make_store(tmp_path, tables)
    m = Measures(intervals=YEAR_2025)
    m.define_standardised_rate("nine", events=_admissions(), among=_registered(), min_age=80)
    # from 85: only b1, b2 (85-89) and c1 (90+); without c1 nobody is 90+
    without_c1 = _registered() & (patients.patient_id != "c1")
    m.define_standardised_rate("no_90s", events=_admissions(), among=without_c1, min_age=85)
    out = run_measures(store, m, engine=engine, disclosure=False).set_index("measure")
    assert out.loc["nine", "numerator"] == 9 and np.isnan(out.loc["nine", "value"])
    assert out.loc["nine", "method"] == "not calculated: total count is less than 10"
    assert np.isnan(out.loc["no_90s", ["value", "lower95_0cl", "upper95_0cl"]].astype(float)).all()
    assert out.loc["no_90s", "method"] == (
        "not calculated: nobody in the 90+ band of the standard (every band of the rate "
        "needs someone: break down more coarsely)"
    )


def test_a_rate_per_person_time_standardised_by_hand(engine, tmp_path):
    """From 85, in 2025: p1 (87) registered all year, 365 days, 6 admissions; p2 (92) to 30
    June, 181 days, 3 admissions; p3 (87) from 1 July,
    184 days, none; p4 (88) dies on 31 January, 31 days, 1 admission."""
    store = make_store(
        tmp_path,
        {
            "patients": [
                _patient("p1", D(1938, 6, 1)),
                _patient("p2", D(1933, 6, 1)),
                _patient("p3", D(1938, 6, 1)),
                _patient("p4", D(1937, 6, 1), date_of_death=D(2025, 1, 31)),
            ],
            "registrations": [
                _reg("p1"),
                _reg("p2", end=D(2025, 6, 30)),
                _reg("p3", start=D(2025, 7, 1)),
                _reg("p4"),
            ],
            "admissions": [_adm("p1", D(2025, k, 3)) for k in range(1, 7)]
            + [_adm("p2", D(2025, k, 3)) for k in (2, 3, 4)]
            + [_adm("p4", D(2025, 1, 20))],
        },
    )
    at_risk = registrations.days_in_interval_for_patient(until=patients.date_of_death)
    m = Measures(intervals=YEAR_2025)
    for unit in ("days", "years"):
        m.define_standardised_rate(
            f"per_{unit}",
            events=_admissions(),
            person_time=at_risk,
            per=1000,
            unit=unit,
            min_age=85,
        )
    out = run_measures(store, m, engine=engine, disclosure=False).set_index("measure")
    # p4 is 88 on 31 December, though dead: the age is counted on the interval's last day
    x, days = [6 + 0 + 1, 3], [365 + 184 + 31, 181]
    for unit, n in (("days", days), ("years", [d / 365.25 for d in days])):
        row = out.loc[f"per_{unit}"]
        assert (row.numerator, row.denominator) == (10, sum(days))  # person-days, always
        value, lower, upper = _dobson(x, n, [1500, 1000], per=1000)
        assert row.value == pytest.approx(value)
        assert (row.lower95_0cl, row.upper95_0cl) == pytest.approx((lower, upper))
        assert (
            row.statistic == f"age-standardised rate per 1,000 person-{unit} (ESP 2013, ages 85+)"
        )
    assert out.loc["per_years", "method"].endswith(
        "the denominator is person-time in days; a year is 365.25 days"
    )


def _random_tables(seed: int, n: int = 400) -> dict:
    """``n`` patients born 1925-1965 (many crossing a band's edge during 2025), some
    registered only part of the year, some dying, with admissions through 2025."""
    rng = np.random.default_rng(seed)
    start = D(1925, 1, 1).toordinal()
    people, regs, adms = [], [], []
    for i in range(n):
        pid = f"r{i:03d}"
        born = D.fromordinal(start + int(rng.integers(0, 40 * 365)))
        dies = D(2025, 1, 1) + dt.timedelta(days=int(rng.integers(0, 600)))
        people.append(
            _patient(pid, born, sex=str(rng.choice(["female", "male"])),
                     date_of_death=dies if rng.random() < 0.1 else None)
        )  # fmt: skip
        joined = D(2024, 6, 1) + dt.timedelta(days=int(rng.integers(0, 400)))
        regs.append(_reg(pid, start=joined if rng.random() < 0.3 else D(2000, 1, 1)))
        for _ in range(int(rng.poisson(1.5))):
            adms.append(_adm(pid, D(2025, 1, 1) + dt.timedelta(days=int(rng.integers(0, 365)))))
    return {"patients": people, "registrations": regs, "admissions": adms}


@pytest.mark.parametrize("person_time", [False, True], ids=["population", "person_time"])
def test_every_interval_in_one_run_equals_each_interval_alone(engine, tmp_path, person_time):
    store = make_store(tmp_path, _random_tables(seed=7))
    kw = (
        {"person_time": registrations.days_in_interval_for_patient(until=patients.date_of_death)}
        if person_time
        else {"among": _registered()}
    )

    def measures(intervals):
        m = Measures(intervals=intervals)
        m.define_standardised_rate(
            "adm", events=_admissions(), min_age=60, group_by={"sex": patients.sex}, **kw
        )
        return m

    months = monthly("2025-01-01", 6)
    together = run_measures(store, measures(months), engine=engine, disclosure=False)
    alone = pd.concat(
        [run_measures(store, measures([iv]), engine=engine, disclosure=False) for iv in months],
        ignore_index=True,
    )
    key = ["interval_start", "sex"]
    together = together.sort_values(key, ignore_index=True)
    alone = alone.sort_values(key, ignore_index=True)
    pd.testing.assert_frame_equal(together, alone)
    assert together["value"].notna().sum() >= 6  # (rates, not only "fewer than 10 events")


def test_disclosure_withholds_the_rate_with_its_counts(engine, tmp_path):
    """Three groups of 42 (40 aged 80-84, one 85-89, one 90+: the standard from 80 needs a
    patient in each band). Women: 30 admissions, one each. Men: 12 admissions, all two
    men's (6 each): a count from 2 patients is withheld. Unknown: 12 admissions, one each,
    withheld as the smaller cell beside the men's, so that the men's cannot be worked out
    from a total."""
    people, regs, adms = [], [], []
    admitted = {"female": 30, "male": 12, "unknown": 12}
    for sex, count in admitted.items():
        for i in range(42):
            pid = f"{sex[0]}{i:02d}"
            born = D(1943, 6, 1) if i < 40 else D(1938, 6, 1) if i == 40 else D(1930, 6, 1)
            people.append(_patient(pid, born, sex=sex))
            regs.append(_reg(pid))
        for k in range(count):
            who = f"m{k % 2:02d}" if sex == "male" else f"{sex[0]}{k:02d}"
            adms.append(_adm(who, D(2025, 1 + k % 12, 5)))
    store = make_store(tmp_path, {"patients": people, "registrations": regs, "admissions": adms})
    m = Measures(intervals=YEAR_2025)
    m.define_standardised_rate(
        "adm", events=_admissions(), among=_registered(), min_age=80, group_by={"sex": patients.sex}
    )
    out = run_measures(store, m, engine=engine).set_index("sex")
    women, men, unknown = out.loc["female"], out.loc["male"], out.loc["unknown"]
    assert (women.numerator, women.denominator) == (30, 40)  # 42 rounded to 5
    # the rate is worked from the bands' counts rounded cumulatively (events 30, 30, 30 ->
    # 30, 0, 0; people 40, 41, 42 -> 40, 40, 40, so 40, 0, 0, and a band with someone keeps
    # someone: 40, 5, 5), which here gives the exact rate: the older bands have no events
    value, lower, upper = _dobson([30, 0, 0], [40, 1, 1], [2500, 1500, 1000], per=100_000)
    assert women.value == pytest.approx(value)
    assert (women.lower95_0cl, women.upper95_0cl) == pytest.approx((lower, upper))
    assert women.disclosure_note is None
    for row, why in ((men, "primary (few patients)"), (unknown, "secondary")):
        assert np.isnan(row.numerator) and row.denominator == 40
        assert np.isnan(row[["value", "lower95_0cl", "upper95_0cl"]].astype(float)).all()
        assert row.method is None
        assert row.disclosure_note == f"numerator {why}; rate and limits withheld with it"


def test_a_released_rate_of_few_events_a_band_is_not_biased_low(engine, tmp_path):
    """Every band of the standard (0-4 ... 90+) holds 20 people, 2 of them admitted once:
    38 admissions, an exact rate of 2/20 in every band, 10,000 per 100,000. Rounded each on
    its own, every band's 2 events would be 0: no rate at all (fewer than 10 events), and
    with a few more events a rate far too low. Rounded cumulatively (the sums 2, 4, ...,
    38 → 0, 5, 5, 10, 10, 10, 15, 15, 20, 20, 20, 25, 25, 30, 30, 30, 35, 35, 40), the
    bands' events are 5 in the 5-9, 15-19, 30-34, 40-44, 55-59, 65-69, 80-84 and 90+ bands
    (ESP 2013 weights 5,500 + 5,500 + 6,500 + 7,000 + 6,500 + 5,500 + 2,500 + 1,000 =
    40,000) and 0 in the rest, so the released rate is 40,000 × 5/20 ÷ 100,000 × 100,000 =
    10,000: the exact one, with the released 40 events (38 rounded) behind its limits."""
    people, regs, adms = [], [], []
    for band in range(19):
        for i in range(20):
            pid = f"p{band:02d}_{i:02d}"
            people.append(_patient(pid, D(2025 - 5 * band - 2, 6, 1)))
            regs.append(_reg(pid))
            if i < 2:
                adms.append(_adm(pid, D(2025, 3, 5)))
    store = make_store(tmp_path, {"patients": people, "registrations": regs, "admissions": adms})
    m = Measures(intervals=YEAR_2025)
    m.define_standardised_rate("adm", events=_admissions(), among=_registered())
    exact = run_measures(store, m, engine=engine, disclosure=False).iloc[0]
    released = run_measures(store, m, engine=engine).iloc[0]
    assert (exact.numerator, exact.denominator) == (38, 380)
    assert exact.value == pytest.approx(10_000)
    assert (released.numerator, released.denominator) == (40, 380)
    assert released.value == pytest.approx(10_000)
    x = [5.0 if band in (1, 3, 6, 8, 11, 13, 16, 18) else 0.0 for band in range(19)]
    weights = [5000, 5500, 5500, 5500, 6000, 6000, 6500, 7000, 7000, 7000, 7000, 6500, 6000]
    weights += [5500, 5000, 4000, 2500, 1500, 1000]
    value, lower, upper = _dobson(x, [20] * 19, weights, per=100_000)
    # the limits fit the released 40 events (docs/query.md): √V from the bands, Byar's at 40
    scale = (upper - value) / (_byar_upper(40) - 40)
    assert released.upper95_0cl == pytest.approx(value + scale * (_byar_upper(40) - 40))
    assert released.lower95_0cl == pytest.approx(value + scale * (_byar_lower(40) - 40))
    assert released.lower95_0cl < exact.value < released.upper95_0cl
    assert "rounded cumulatively" in released.method


def _refusal(**kw) -> str:
    m = Measures(intervals=YEAR_2025)
    kw.setdefault("events", _admissions())
    with pytest.raises(QueryError) as exc:
        m.define_standardised_rate("adm", **kw)
    return str(exc.value)


def test_refusals_name_the_measure_and_say_what_was_expected():
    assert _refusal() == (
        "measure 'adm': needs among=, the patients the rate is of (True/False), or "
        "person_time= for a rate per person-time"
    )
    assert "min_age must be where a band of the European Standard Population starts" in (
        _refusal(among=_registered(), min_age=63)
    )
    assert "min_age" in _refusal(among=_registered(), min_age=95)
    assert _refusal(among=_registered(), events=admissions.in_interval().exists_for_patient()) == (
        "measure 'adm': events must be a whole number per patient (e.g. "
        "admissions.in_interval().count_for_patient()), not True/False: True/False counts "
        "patients, not events"
    )
    assert "among must be True/False" in _refusal(among=patients.age_on(index_date))
    assert "per must be a positive number" in _refusal(among=_registered(), per=0)
    assert 'unit must be "days"' in _refusal(among=_registered(), unit="months")
    assert "person_time must be a whole number of days" in _refusal(
        person_time=patients.date_of_birth
    )
    assert "cannot name a breakdown" in _refusal(
        among=_registered(), group_by={"_age_band": patients.sex}
    )
    for wrong in (75, 60, 90, 74.0, True):  # not a band's last age from min_age's on
        assert "max_age must be the last age of a band" in (
            _refusal(among=_registered(), min_age=65, max_age=wrong)
        ), wrong


def test_an_upper_age_limit_standardises_over_the_bands_up_to_it(engine, tmp_path):
    """Under-75s, from 65: ages on 31 December 2025 — 65-69: e1-e3 (67) with 4, 3 and 0
    admissions; 70-74: f1, f2 (74) with 2 and 2; not in the rate: g1 (75 that day) with 5
    and h1 (62) with 3. So x = 7, 4 over n = 3, 2, weights 5,500 and 5,000."""
    people = {"e1": 4, "e2": 3, "e3": 0, "f1": 2, "f2": 2, "g1": 5, "h1": 3}
    born = {"e": D(1958, 6, 1), "f": D(1951, 6, 1), "g": D(1950, 12, 31), "h": D(1963, 6, 1)}
    tables = {
        "patients": [_patient(p, born[p[0]]) for p in people],
        "registrations": [_reg(p) for p in people],
        "admissions": [
            _adm(p, D(2025, 1 + k, 10)) for p, count in people.items() for k in range(count)
        ],
    }
    store = make_store(tmp_path, tables)
    m = Measures(intervals=YEAR_2025)
    m.define_standardised_rate(
        "under_75", events=_admissions(), among=_registered(), min_age=65, max_age=74
    )
    (row,) = run_measures(store, m, engine=engine, disclosure=False).itertuples()
    assert (row.numerator, row.denominator) == (11, 5)
    value, lower, upper = _dobson([7, 4], [3, 2], [5500, 5000], per=100_000)
    # (7/3·5500 + 4/2·5000) / 10500 = 2.1746... per person
    assert value == pytest.approx((7 / 3 * 5500 + 2 * 5000) / 10500 * 100_000)
    assert (row.value, row.lower95_0cl, row.upper95_0cl) == pytest.approx((value, lower, upper))
    assert row.statistic == "age-standardised rate per 100,000 (ESP 2013, ages 65-74)"


DEFINITION = """
from pophealth.query import Measures, admissions, index_date, patients, registrations, yearly

measures = Measures(intervals=yearly("2025-01-01", 1))
measures.define_standardised_rate(
    "admissions_dsr",
    events=admissions.in_interval().count_for_patient(),
    among=registrations.registered_on(index_date) & patients.is_alive_on(index_date),
    per=1000,
    min_age=80,
)
"""


def test_pophealth_measures_runs_a_definition_file_with_a_standardised_rate(tmp_path):
    store = make_store(tmp_path, _older_tables())
    path = tmp_path / "dsr.py"
    path.write_text(DEFINITION)
    out = tmp_path / "out.csv"
    args = ["measures", str(path), "--store", str(store.path), "--output", str(out)]
    result = CliRunner().invoke(app, [*args, "--no-disclosure"])
    assert result.exit_code == 0, result.output
    got = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(got.columns) == result_columns()
    assert (got["numerator"][0], got["denominator"][0]) == ("10", "7")
    assert float(got["value"][0]) == pytest.approx(1400)
    # by default through disclosure control: 7 patients are withheld, and the rate with them
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    got = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert got["value"][0] == "" and got["denominator"][0] == ""


def test_nobody_counted_gives_no_rows_not_a_crash(engine, tmp_path):
    """Nobody in the population in any interval (c1, the one patient aged 90+, left out;
    nobody over 120): no rows, the usual columns, with or without disclosure control — as
    for any measure."""
    store = make_store(tmp_path, _older_tables())
    m = Measures(intervals=YEAR_2025)
    m.define_standardised_rate(
        "adm",
        events=_admissions(),
        among=_registered() & (patients.patient_id != "c1"),
        min_age=90,
        group_by={"sex": patients.sex},
    )
    m.define_standardised_rate(
        "adm_pt",
        events=_admissions(),
        person_time=registrations.days_in_interval_for_patient(),
        among=patients.age_on(index_date) > 120,
    )
    for disclosure in (True, False):
        out = run_measures(store, m, engine=engine, disclosure=disclosure)
        assert len(out) == 0
        assert list(out.columns) == result_columns(["sex"])
