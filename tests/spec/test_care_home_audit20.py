"""Audit (care-home / deterioration programme, PROGRAMMES.md section "managing deterioration
in care homes" and section 12 on rates): ``Frame.during(periods)``,
``Measures.define_standardised_rate(max_age=)`` and disclosure control of intervals that
start on the same day and of released standardised rates — every figure worked out by hand
here (small tables, below) or by an independent day-by-day pandas computation on a synthetic
store's Parquet files (``slow``), on DuckDB and on Spark.

Reference formulas:

- Directly standardised rate and Dobson limits: Dobson AJ, Kuulasmaa K, Eberle E, Scherer J.
  "Confidence intervals for weighted sums of Poisson parameters", Stat Med 1991;10:457-62;
  as used by OHID Fingertips (Public Health England, "Technical Guide: Confidence intervals",
  2018, and the DSR chapter of the Fingertips technical guidance):
  DSR = Σ wᵢxᵢ/nᵢ / Σwᵢ × per;  var = Σ wᵢ²xᵢ/nᵢ² / (Σwᵢ)²;
  limits = DSR + √(var/O)·(Byar(O) − O) for O = Σxᵢ events.
- Byar's approximation to the exact Poisson limits: Breslow NE, Day NE, "Statistical Methods
  in Cancer Research, vol. II" (IARC 1987), p. 69:
  lower = O(1 − 1/(9O) − z/(3√O))³;  upper = (O+1)(1 − 1/(9(O+1)) + z/(3√(O+1)))³.
- European Standard Population 2013 weights: Eurostat, "Revision of the European Standard
  Population — Report of Eurostat's task force" (2013), table 2 (0-4: 5,000 ... 90+: 1,000).
- Disclosure control: README.md and docs/query.md section 4 (counts 1-7 withheld, 0 shown,
  the rest rounded to the nearest 5, more cells withheld where a withheld one could be worked
  out from totals), PROGRAMMES.md section 12.5.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest

from pophealth.query import (
    Dataset,
    Measures,
    QueryError,
    RowDataset,
    addresses,
    admissions,
    emergency_attendances,
    events,
    index_date,
    monthly,
    patients,
    registrations,
    run_dataset,
    run_measures,
)
from tests.spec.conftest import FLAT2, HOME, HOME2, cumulative_round5, make_store
from tests.spec.conftest import address_row as _addr
from tests.spec.conftest import admission_row as _adm
from tests.spec.conftest import care_home_row as _home

D = dt.date
T = dt.datetime
Z95 = 1.959963984540054

IN_CARE = addresses.where(addresses.care_home)
EMERGENCY = admissions.where(admissions.admission_method == "emergency")
BED_DAYS = IN_CARE.days_in_interval_for_patient(until=patients.date_of_death)


def _define_care_home_rate(m: Measures) -> None:
    """Emergency admissions that start on a care-home day per 1,000 care-home bed-days."""
    m.define_rate(
        "care_home_admissions",
        events=EMERGENCY.during(IN_CARE).in_interval().count_for_patient(),
        person_time=BED_DAYS,
        per=1000,
        unit="days",
    )


#: for checks of disclosure control alone (pure Python over counts the engine tests check
#: on both engines): Spark's half adds only time, so it is ``slow``
RELEASED_ENGINES = [
    "duckdb",
    pytest.param("spark", marks=[pytest.mark.slow, pytest.mark.spark]),
]

JAN, FEB, MAR = (
    (D(2025, 1, 1), D(2025, 1, 31)),
    (D(2025, 2, 1), D(2025, 2, 28)),
    (
        D(2025, 3, 1),
        D(2025, 3, 31),
    ),
)
Q1 = (D(2025, 1, 1), D(2025, 3, 31))  # starts the same day as January

#: ESP 2013 (Eurostat 2013, table 2), 0-4 ... 85-89, 90+
ESP2013 = [5000, 5500, 5500, 5500, 6000, 6000, 6500, 7000, 7000, 7000, 7000, 6500, 6000, 5500]
ESP2013 += [5000, 4000, 2500, 1500, 1000]


def byar(o: float, z: float = Z95) -> tuple[float, float]:
    """Byar's limits for a Poisson count (Breslow & Day 1987, p. 69)."""
    lo = o * (1 - 1 / (9 * o) - z / (3 * math.sqrt(o))) ** 3
    hi = (o + 1) * (1 - 1 / (9 * (o + 1)) + z / (3 * math.sqrt(o + 1))) ** 3
    return lo, hi


def dsr_by_hand(x, n, w, per=100_000, z=Z95) -> tuple[float, float, float]:
    """DSR and Dobson limits (Dobson et al. 1991), per band lists x, n, w."""
    sw = sum(w)
    rate = sum(wi * xi / ni for xi, ni, wi in zip(x, n, w, strict=True)) / sw
    var = sum(wi * wi * xi / ni**2 for xi, ni, wi in zip(x, n, w, strict=True)) / sw**2
    o = sum(x)
    lo, hi = byar(o, z)
    root = math.sqrt(var / o)
    return rate * per, (rate + root * (lo - o)) * per, (rate + root * (hi - o)) * per


# -- care-home bed-days and the admissions kept, by hand ----------------------------------------
#
# patient      addresses                                        died      emergency admissions
# left_open    care home from 1 Nov 2024, left open; flat        -        1 Jan +, 9 Feb +,
#              from 10 Feb 2025 (later start: wins)                         10 Feb -
# respite      flat since 2020, open; care home 25 Jan-3 Feb     -        24 Jan -, 25 Jan +,
#                                                                          3 Feb +, 4 Feb -,
#                                                                          28 Jan elective -
# dies         care home from 1 Jun 2024, open                   14 Feb   14 Feb +, 5 Mar +
#                                                                          (after death)
# tie_home     flat to 31 Dec 2024; care home (HOME2) and flat    -        31 Mar +
#              (FLAT2) both from 1 Jan 2025: HOME2 > FLAT2 wins
# tie_flat     as tie_home, the flat's LSOA (HOME2) the larger    -        15 Jan -
# two_homes    care home to 20 Jan 2025; another from 10 Jan      -        15 Jan + (once)
# never        flat only                                          -        10 Jan -
#
# care-home days (until death)  Jan  Feb  Mar   Q1
#   left_open                    31    9    0   40
#   respite                       7    3    0   10
#   dies                         31   14    0   45
#   tie_home                     31   28   31   90
#   two_homes                    31   28   31   90
#   total                       131   82   62  275
# events counted (a patient's events count where they have person-time):
#   Jan 3 (left_open, respite, two_homes); Feb 3 (left_open, respite, dies);
#   Mar 1 (tie_home; dies' 5 Mar is during the open care home but dies has no March
#   person-time); Q1 8 (all seven + dies' 5 Mar, dies having Q1 person-time).
BED_DAYS_BY_HAND = {JAN: 131, FEB: 82, MAR: 62, Q1: 275}
EVENTS_BY_HAND = {JAN: 3, FEB: 3, MAR: 1, Q1: 8}
KEPT_BY_HAND = {
    "left_open": [D(2025, 1, 1), D(2025, 2, 9)],
    "respite": [D(2025, 1, 25), D(2025, 2, 3)],
    "dies": [D(2025, 2, 14), D(2025, 3, 5)],
    "tie_home": [D(2025, 3, 31)],
    "tie_flat": [],
    "two_homes": [D(2025, 1, 15)],
    "never": [],
}


def _care_tables() -> dict:
    return {
        "patients": [
            {"patient_id": p, "date_of_death": D(2025, 2, 14) if p == "dies" else None}
            for p in KEPT_BY_HAND
        ],
        "addresses": [
            _home("left_open", D(2024, 11, 1)),
            _addr("left_open", D(2025, 2, 10)),
            _addr("respite", D(2020, 1, 1)),
            _home("respite", D(2025, 1, 25), D(2025, 2, 3)),
            _home("dies", D(2024, 6, 1)),
            _addr("tie_home", D(2020, 1, 1), D(2024, 12, 31)),
            _home("tie_home", D(2025, 1, 1), lsoa=HOME2),
            _addr("tie_home", D(2025, 1, 1), lsoa=FLAT2),
            _addr("tie_flat", D(2020, 1, 1), D(2024, 12, 31)),
            _home("tie_flat", D(2025, 1, 1), lsoa=FLAT2),
            _addr("tie_flat", D(2025, 1, 1), lsoa=HOME2),
            _home("two_homes", D(2024, 1, 1), D(2025, 1, 20)),
            _home("two_homes", D(2025, 1, 10), lsoa=HOME2),
            _addr("never", D(2020, 1, 1)),
        ],
        "admissions": [
            _adm("left_open", D(2025, 1, 1)),
            _adm("left_open", D(2025, 2, 9)),
            _adm("left_open", D(2025, 2, 10)),
            _adm("respite", D(2025, 1, 24)),
            _adm("respite", D(2025, 1, 25)),
            _adm("respite", D(2025, 1, 28), "elective", D(2025, 1, 30)),
            _adm("respite", D(2025, 2, 3)),
            _adm("respite", D(2025, 2, 4)),
            _adm("dies", D(2025, 2, 14)),
            _adm("dies", D(2025, 3, 5)),
            _adm("tie_home", D(2025, 3, 31)),
            _adm("tie_flat", D(2025, 1, 15)),
            _adm("two_homes", D(2025, 1, 15)),
            _adm("never", D(2025, 1, 10)),
        ],
    }


@pytest.fixture(scope="module")
def care_store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("care_audit20"), _care_tables())


def _by_interval(result: pd.DataFrame, measure: str, column: str) -> dict:
    rows = result[result["measure"] == measure]
    return {(r.interval_start, r.interval_end): getattr(r, column) for r in rows.itertuples()}


def test_care_home_admissions_per_bed_day_by_hand_month_beside_its_quarter(engine, care_store):
    """Emergency admissions from care homes per 1,000 care-home bed-days: left open after a
    later move, a short stay inside a longer address, same-start ties, admissions on the
    first and last day of a stay and of the interval, a death mid-month; three months and
    the quarter that starts with January, in one run.

    Beside it, the share of residents (a care-home bed-day in the interval) admitted as an
    emergency on a care-home day: in February 5 residents (left_open 9 days, respite 3,
    dies 14, tie_home and two_homes 28), 3 admitted (left_open, respite, dies); in the
    quarter all 5 admitted (tie_flat never a resident)."""
    m = Measures(intervals=[JAN, FEB, MAR, Q1])
    _define_care_home_rate(m)
    m.define_measure(
        "admitted_while_resident",
        numerator=EMERGENCY.during(IN_CARE).in_interval().exists_for_patient(),
        denominator=BED_DAYS > 0,
        intervals=[FEB, Q1],
    )
    got = run_measures(care_store, m, engine=engine, disclosure=False)
    assert _by_interval(got, "care_home_admissions", "denominator") == BED_DAYS_BY_HAND
    assert _by_interval(got, "care_home_admissions", "numerator") == EVENTS_BY_HAND
    values = _by_interval(got, "care_home_admissions", "value")
    for k, days in BED_DAYS_BY_HAND.items():
        assert values[k] == pytest.approx(EVENTS_BY_HAND[k] / days * 1000)
    rate = got[got["measure"] == "care_home_admissions"]
    assert set(rate["statistic"]) == {"rate per 1,000 person-days"}
    # the month and the quarter starting the same day come in the order start, then end
    assert [(r.interval_start, r.interval_end) for r in rate.itertuples()] == [JAN, Q1, FEB, MAR]
    assert _by_interval(got, "admitted_while_resident", "numerator") == {FEB: 3, Q1: 5}
    assert _by_interval(got, "admitted_while_resident", "denominator") == {FEB: 5, Q1: 5}


@pytest.mark.parametrize("eng", RELEASED_ENGINES)
def test_care_home_rate_released_withholds_few_patients_bed_days(eng, care_store):
    """Released, every figure of the rate above has 1-7 patients behind it: the events and
    the bed-days are withheld as "few patients" (docs/query.md section 4, rates per
    person-time), though the quarter's 275 bed-days and January's 131 are far above 7."""
    m = Measures(intervals=[JAN, FEB, MAR, Q1])
    _define_care_home_rate(m)
    released = run_measures(care_store, m, engine=eng)
    rate = released[released["measure"] == "care_home_admissions"]
    assert rate["numerator"].isna().all() and rate["denominator"].isna().all()
    assert rate["value"].isna().all()
    assert all("denominator primary (few patients)" in n for n in rate["disclosure_note"])


def test_admissions_kept_during_care_home_days_by_hand_and_as_address_on_says(engine, care_store):
    """The admissions ``during`` keeps are exactly those whose own day's address
    (``address_on``, read per row in a row dataset) is a care home."""
    per = RowDataset(EMERGENCY, columns=["admission_date"])
    row = per.row
    per.kept = (
        EMERGENCY.during(IN_CARE)
        .where(admissions.admission_date == row.admission_date)
        .exists_for_patient()
    )
    per.care_home = addresses.address_on(row.admission_date).care_home.if_null_then(False)
    out = run_dataset(care_store, per, engine=engine, index_date=D(2025, 3, 31))
    assert list(out["kept"]) == list(out["care_home"])
    kept = {p: [] for p in KEPT_BY_HAND}
    for r in out[out["kept"]].itertuples():
        kept[r.patient_id].append(pd.Timestamp(r.admission_date).date())
    assert kept == KEPT_BY_HAND


def test_care_home_full_tie_same_start_same_lsoa_agrees_with_address_on(engine, tmp_path):
    """A care-home row and a flat row with the same start AND the same LSOA (a home that
    became registered as a care home, recorded twice): the docs name only the LSOA as the
    tie-break, so which wins is the library's, but ``during``, the bed-days and
    ``address_on`` must agree on every day."""
    store = make_store(
        tmp_path,
        {
            "addresses": [
                _home("p1", D(2025, 1, 1), lsoa=HOME),
                _addr("p1", D(2025, 1, 1), lsoa=HOME),
                _home("p2", D(2025, 1, 1), D(2025, 1, 31), lsoa=HOME),
                _addr("p2", D(2025, 1, 1), lsoa=HOME),
            ],
            "admissions": [_adm("p1", D(2025, 1, 20)), _adm("p2", D(2025, 1, 20))],
        },
    )
    ds = Dataset()
    ds.define_population(addresses.exists_for_patient())
    ds.home = addresses.address_on(D(2025, 1, 20)).care_home.if_null_then(False)
    ds.kept = EMERGENCY.during(IN_CARE).count_for_patient()
    out = run_dataset(store, ds, engine=engine, index_date=D(2025, 1, 20))
    m = Measures(intervals=[JAN])
    m.define_rate(
        "r",
        events=EMERGENCY.during(IN_CARE).in_interval().count_for_patient(),
        person_time=IN_CARE.days_in_interval_for_patient(),
        per=1,
        unit="days",
        group_by={"patient": patients.patient_id},
    )
    rates = run_measures(store, m, engine=engine, disclosure=False)
    days = dict(zip(rates["patient"], rates["denominator"], strict=True))
    for r in out.itertuples():
        assert r.kept == int(r.home), r.patient_id
        assert days.get(r.patient_id, 0) == (31 if r.home else 0), r.patient_id


# -- A&E attendances during an admission; events during registration --------------------------


def test_attendances_during_admissions_and_events_during_registrations_by_hand(engine, tmp_path):
    """``emergency_attendances.during(admissions)``: an attendance whose arrival day is a day
    of an admission (admission day to discharge day, an open discharge running on; two
    overlapping admissions hold a day once). ``events.during(registrations)``: the union of
    the registrations, a gap holding no day, both ends inclusive.

    x: admitted 10-12 Jan (elective); arrivals 9 Jan 23:00 -, 10 Jan 06:00 + (the day is
       held, though before admission that day), 12 Jan 20:00 +, 13 Jan 00:30 -      -> 2
    y: admitted 1 Feb, not discharged; arrivals 31 Jan -, 15 Mar +                    -> 1
    z: admitted 1-5 Jan and 3-8 Jan; arrivals 4 Jan + (once), 7 Jan +, 9 Jan -        -> 2
    r1: registered 1 Jan-30 Jun 2024 and from 1 Aug 2024; events 31 Dec 2023 -,
        30 Jun + , 1 Jul -, 1 Aug +                                                   -> 2
    r2: registered 1 Jan-31 Mar 2024 and from 15 Mar 2024; event 20 Mar (once) +      -> 1
    r3: never registered; event 1 Feb 2024 -                                          -> 0
    """
    ae = [
        ("x", T(2025, 1, 9, 23)),
        ("x", T(2025, 1, 10, 6)),
        ("x", T(2025, 1, 12, 20)),
        ("x", T(2025, 1, 13, 0, 30)),
        ("y", T(2025, 1, 31, 12)),
        ("y", T(2025, 3, 15, 12)),
        ("z", T(2025, 1, 4, 12)),
        ("z", T(2025, 1, 7, 12)),
        ("z", T(2025, 1, 9, 12)),
    ]
    ev = [
        ("r1", D(2023, 12, 31)),
        ("r1", D(2024, 6, 30)),
        ("r1", D(2024, 7, 1)),
        ("r1", D(2024, 8, 1)),
        ("r2", D(2024, 3, 20)),
        ("r3", D(2024, 2, 1)),
    ]
    store = make_store(
        tmp_path,
        {
            "patients": [{"patient_id": p} for p in ("x", "y", "z", "r1", "r2", "r3")],
            "admissions": [
                _adm("x", D(2025, 1, 10), "elective", D(2025, 1, 12)),
                _adm("y", D(2025, 2, 1)),
                _adm("z", D(2025, 1, 1), discharge=D(2025, 1, 5)),
                _adm("z", D(2025, 1, 3), discharge=D(2025, 1, 8)),
            ],
            "emergency_attendances": [{"patient_id": p, "arrival_datetime": t} for p, t in ae],
            "registrations": [
                {
                    "patient_id": "r1",
                    "practice_id": "A1",
                    "start_date": D(2024, 1, 1),
                    "end_date": D(2024, 6, 30),
                },
                {"patient_id": "r1", "practice_id": "B2", "start_date": D(2024, 8, 1)},
                {
                    "patient_id": "r2",
                    "practice_id": "A1",
                    "start_date": D(2024, 1, 1),
                    "end_date": D(2024, 3, 31),
                },
                {"patient_id": "r2", "practice_id": "B2", "start_date": D(2024, 3, 15)},
            ],
            "events": [{"patient_id": p, "date": d, "code": "1234"} for p, d in ev],
        },
    )
    ds = Dataset()
    ds.define_population(patients.date_of_birth.is_not_null())
    ds.ae_in_hospital = emergency_attendances.during(admissions).count_for_patient()
    ds.events_registered = events.during(registrations).count_for_patient()
    ds.first_in_hospital = (
        emergency_attendances.during(admissions).first_for_patient().arrival_datetime
    )
    out = run_dataset(store, ds, engine=engine, index_date=D(2025, 3, 31))
    got = {r.patient_id: (r.ae_in_hospital, r.events_registered) for r in out.itertuples()}
    assert got == {
        "x": (2, 0),
        "y": (1, 0),
        "z": (2, 0),
        "r1": (0, 2),
        "r2": (0, 1),
        "r3": (0, 0),
    }
    firsts = {r.patient_id: r.first_in_hospital for r in out.itertuples()}
    assert pd.Timestamp(firsts["x"]).date() == D(2025, 1, 10)
    assert pd.Timestamp(firsts["z"]).date() == D(2025, 1, 4)


# -- define_standardised_rate(max_age=): the under-75s ------------------------------------------
#
# One calendar year, age on 31 Dec 2025. Men, min_age=60, max_age=74 (bands 60-64, 65-69,
# 70-74 of ESP 2013: weights 6,000, 5,500, 5,000):
#   60-64: 20 men (62), 6 with an emergency admission in 2025
#   65-69: 30 men (67), 9 with one
#   70-74: 9 men (72) and 1 aged exactly 74 on 31 Dec (born 31 Dec 1951), 5 with one (the
#          74-year-old among them)
#   not in the rate: a man 75 on 31 Dec (born 31 Dec 1950, 3 admissions), one aged 59
#   (2 admissions), one 62-year-old dead on 30 Jun 2025 (among = alive on the last day), and
#   a 2024 admission of a 62-year-old (outside the interval).
# Women, min_age=70, max_age=74 (one band): 100 women aged 72, 23 with one admission — for
# the disclosure of a released rate (23 events are released as 25).
YEAR = (D(2025, 1, 1), D(2025, 12, 31))
MEN_X, MEN_N, MEN_W = [6, 9, 5], [20, 30, 10], [6000, 5500, 5000]


def _dsr_tables() -> dict:
    pats, adms = [], []

    def add(prefix, k, born, sex, admitted, dead=None):
        for i in range(k):
            pid = f"{prefix}{i:03d}"
            pats.append(
                {"patient_id": pid, "date_of_birth": born, "sex": sex, "date_of_death": dead}
            )
            for j in range(admitted(i)):
                adms.append(_adm(pid, D(2025, 3 + j, 10)))

    add("m62_", 20, D(1963, 6, 1), "male", lambda i: int(i < 6))
    add("m67_", 30, D(1958, 6, 1), "male", lambda i: int(i < 9))
    add("m72_", 9, D(1953, 6, 1), "male", lambda i: int(i < 4))
    add("m74_", 1, D(1951, 12, 31), "male", lambda i: 1)
    add("m75_", 1, D(1950, 12, 31), "male", lambda i: 3)
    add("m59_", 1, D(1966, 1, 1), "male", lambda i: 2)
    add("mdead_", 1, D(1963, 6, 1), "male", lambda i: 1, dead=D(2025, 6, 30))
    add("w72_", 100, D(1953, 6, 1), "female", lambda i: int(i < 23))
    adms.append(_adm("m62_010", D(2024, 12, 31)))
    regs = [
        {"patient_id": r["patient_id"], "practice_id": "A1", "start_date": D(2025, 3, 1)}
        for r in pats
        if r["sex"] == "male"
    ]
    return {"patients": pats, "admissions": adms, "registrations": regs}


@pytest.fixture(scope="module")
def dsr_store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("dsr_audit20"), _dsr_tables())


def _dsr_measures() -> Measures:
    m = Measures(intervals=[YEAR])
    alive = patients.is_alive_on(index_date)
    m.define_standardised_rate(
        "men_60_74",
        events=EMERGENCY.in_interval().count_for_patient(),
        among=alive & (patients.sex == "male"),
        min_age=60,
        max_age=74,
    )
    m.define_standardised_rate(
        "men_60_74_person_time",
        events=EMERGENCY.during(registrations).in_interval().count_for_patient(),
        person_time=registrations.days_in_interval_for_patient(until=patients.date_of_death),
        min_age=60,
        max_age=74,
    )
    m.define_standardised_rate(
        "women_70_74",
        events=EMERGENCY.in_interval().count_for_patient(),
        among=alive & (patients.sex == "female"),
        min_age=70,
        max_age=74,
    )
    return m


def test_under_75_standardised_rate_by_hand_with_and_without_disclosure(engine, dsr_store):
    """The rate over the bands 60-64 ... 70-74 (max_age=74) from the counts above, with
    Dobson's limits (Dobson et al. 1991, Byar's limits on O = 20). Released, the rate is
    worked from the bands' counts rounded cumulatively as released counts are (events 6, 9,
    5: the sums 6, 15, 20 → 5, 15, 20, so 5, 10, 5; the populations already multiples of
    5), the limits from the released 20 events."""
    exact = run_measures(dsr_store, _dsr_measures(), engine=engine, disclosure=False)
    released = run_measures(dsr_store, _dsr_measures(), engine=engine)
    for got, x in ((exact, MEN_X), (released, [5, 10, 5])):
        value, lo, hi = dsr_by_hand(x, MEN_N, MEN_W)
        men = got[got["measure"] == "men_60_74"].iloc[0]
        assert (men["numerator"], men["denominator"]) == (20, 60)
        assert men["value"] == pytest.approx(value, rel=1e-9)
        assert men["lower95_0cl"] == pytest.approx(lo, rel=1e-9)
        assert men["upper95_0cl"] == pytest.approx(hi, rel=1e-9)
        assert men["statistic"] == "age-standardised rate per 100,000 (ESP 2013, ages 60-74)"
    # per person-time: the men registered from 1 Mar 2025 (306 days in 2025), the man dead
    # on 30 Jun with 122 days and his 10 Mar admission, in 60-64 by his age on 31 Dec
    x, days = [7, 9, 5], [20 * 306 + 122, 30 * 306, 10 * 306]
    value, lo, hi = dsr_by_hand(x, [d / 365.25 for d in days], MEN_W)
    pt = exact[exact["measure"] == "men_60_74_person_time"].iloc[0]
    assert (pt["numerator"], pt["denominator"]) == (21, sum(days))
    assert (pt["value"], pt["lower95_0cl"], pt["upper95_0cl"]) == pytest.approx((value, lo, hi))
    assert pt["statistic"] == (
        "age-standardised rate per 100,000 person-years (ESP 2013, ages 60-74)"
    )
    women = exact[exact["measure"] == "women_70_74"].iloc[0]
    assert (women["numerator"], women["denominator"]) == (23, 100)
    assert women["value"] == pytest.approx(23_000)
    assert women["statistic"] == "age-standardised rate per 100,000 (ESP 2013, ages 70-74)"


_RELEASED: dict[str, pd.DataFrame] = {}


def _released_women(engine, dsr_store) -> pd.Series:
    """The women's one-band rate, released (run once per engine for the tests below)."""
    if engine not in _RELEASED:
        _RELEASED[engine] = run_measures(dsr_store, _dsr_measures(), engine=engine)
    released = _RELEASED[engine]
    return released[released["measure"] == "women_70_74"].iloc[0]


def test_released_standardised_rate_limits_are_worked_from_the_released_count(engine, dsr_store):
    """23 events are released as 25: the limits are Dobson's with O' = 25 in place of O
    (√V kept), so (upper − rate) / (rate − lower) is that of O' = 25, not of 23."""
    women = _released_women(engine, dsr_store)
    assert (women["numerator"], women["denominator"]) == (25, 100)
    v = women["value"]
    ratio = (women["upper95_0cl"] - v) / (v - women["lower95_0cl"])
    for o, matches in ((25, True), (23, False)):
        b_lo, b_hi = byar(o)
        assert bool(ratio == pytest.approx((b_hi - o) / (o - b_lo), rel=1e-9)) is matches


@pytest.mark.parametrize("eng", RELEASED_ENGINES)
def test_released_one_band_rate_does_not_give_back_the_exact_count_from_its_limits(eng, dsr_store):
    """Of one band, √V = √O/n: read back from limits worked with the exact √V, (DSR/√V)²
    was the exact 23 (found by this audit). Worked from the bands' rounded counts, it is
    the released 25."""
    women = _released_women(eng, dsr_store)
    o_shown, v = women["numerator"], women["value"]
    b_hi = byar(o_shown)[1]
    root_v = (women["upper95_0cl"] - v) * math.sqrt(o_shown) / (b_hi - o_shown)
    recovered = (v / root_v) ** 2
    assert recovered == pytest.approx(25) and abs(recovered - 23) > 0.5


@pytest.mark.parametrize("eng", RELEASED_ENGINES)
def test_released_one_band_rate_value_does_not_give_back_the_exact_count(eng, dsr_store):
    """Of one band the rate is events/population × per: worked from the exact counts, only
    23/100 fitted it among the pairs the released 25 and 100 round from (found by this
    audit). Worked from the bands' counts rounded as the released ones are, it is 25/100:
    the released counts, and nothing more."""
    women = _released_women(eng, dsr_store)
    x0, n0, v = int(women["numerator"]), int(women["denominator"]), women["value"]
    assert (x0, n0) == (25, 100)
    assert v == pytest.approx(x0 / n0 * 100_000, rel=1e-12)
    assert not math.isclose(v, 23 / 100 * 100_000, rel_tol=1e-6)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_age": 75},
        {"max_age": 73},
        {"max_age": True},
        {"max_age": 94},
        {"max_age": 74.0},
        {"min_age": 65, "max_age": 64},
        {"min_age": 65, "max_age": 59},
    ],
)
def test_max_age_not_the_last_age_of_a_band_is_refused(kwargs):
    m = Measures(intervals=[YEAR])
    with pytest.raises(QueryError, match="max_age must be the last age of a band"):
        m.define_standardised_rate(
            "r", events=EMERGENCY.count_for_patient(), among=patients.sex == "male", **kwargs
        )


# -- disclosure control: each interval its own table ---------------------------------------------


def check_released(exact: pd.DataFrame, released: pd.DataFrame, groups: list[str]) -> int:
    """The rules of README.md / docs/query.md section 4, checked cell by cell against the
    exact counts: 0 stays 0, 1-7 withheld, the rest rounded to the nearest 5 or withheld;
    in each measure, interval and column, a withheld cell never alone among several groups
    (it would be the margin less the others). Returns the number of cells withheld."""
    keys = ["measure", "interval_start", "interval_end", *groups]
    both = exact.merge(released, on=keys, suffixes=("_x", "_r"), validate="one_to_one")
    assert len(both) == len(exact) == len(released)
    withheld = 0
    for col in ("numerator", "denominator"):
        x, r = both[f"{col}_x"].astype(float), both[f"{col}_r"].astype(float)
        gone = r.isna()
        withheld += int(gone.sum())
        assert not ((x >= 1) & (x <= 7) & ~gone).any(), col
        shown = ~gone
        assert (r[shown] % 5 == 0).all(), col
        assert (r[shown] == 5 * np.floor(x[shown] / 5 + 0.5)).all(), col
        assert (r[shown & (x == 0)] == 0).all(), col
        per_table = both.assign(gone=gone).groupby(keys[:3])["gone"].agg(["sum", "size"])
        alone = per_table[(per_table["sum"] == 1) & (per_table["size"] > 1)]
        assert alone.empty, (col, alone)
    return withheld


def _sdc_tables() -> dict:
    """120 patients, 40 of each sex, registered since 2020. Emergency admissions (one per
    patient): men 3 in January and 10 more in February; women 20 in January and 5 more in
    March; sex unknown 20 in January and 10 more in February."""
    pats, adms, regs = [], [], []
    plan = {"male": (3, 10, D(2025, 2, 10)), "female": (20, 5, D(2025, 3, 10))}
    plan["unknown"] = (20, 10, D(2025, 2, 10))
    for sex, (jan, later, day) in plan.items():
        for i in range(40):
            pid = f"{sex}{i:02d}"
            pats.append({"patient_id": pid, "sex": sex})
            regs.append({"patient_id": pid, "practice_id": "A1", "start_date": D(2020, 1, 1)})
            if i < jan:
                adms.append(_adm(pid, D(2025, 1, 10)))
            elif i < jan + later:
                adms.append(_adm(pid, day))
    return {"patients": pats, "admissions": adms, "registrations": regs}


def test_month_beside_the_quarter_starting_with_it_is_its_own_table(engine, tmp_path):
    """January (men: 3 admitted, withheld) and the quarter that starts the same day: in
    January a second cell is withheld so the men's cannot be worked out from the total;
    the quarter (men 13, women 25, unknown 30) is a table of its own. The events of a rate
    per person-day add up from January to the quarter, and counts of patients admitted
    are taken as adding up too (the safe side), so for both measures the counts withheld in
    January (the men's, and the women's as its second cell) are withheld in the quarter
    too (docs/query.md section 4; audit 21's month and quarter)."""
    store = make_store(tmp_path, _sdc_tables())
    m = Measures(intervals=[JAN, Q1])
    by = {"sex": patients.sex}
    m.define_measure(
        "admitted",
        numerator=EMERGENCY.in_interval().exists_for_patient(),
        denominator=registrations.registered_on(index_date),
        group_by=by,
    )
    m.define_rate(
        "admissions_per_day",
        events=EMERGENCY.in_interval().count_for_patient(),
        person_time=registrations.days_in_interval_for_patient(),
        per=1000,
        unit="days",
        group_by=by,
    )
    exact = run_measures(store, m, engine=engine, disclosure=False)
    released = run_measures(store, m, engine=engine)
    jan = exact[exact["interval_end"] == JAN[1]].set_index(["measure", "sex"])
    q1 = exact[exact["interval_end"] == Q1[1]].set_index(["measure", "sex"])
    for name in ("admitted", "admissions_per_day"):
        assert jan.loc[name, "numerator"].to_dict() == {"female": 20, "male": 3, "unknown": 20}
        assert q1.loc[name, "numerator"].to_dict() == {"female": 25, "male": 13, "unknown": 30}
    assert jan.loc["admissions_per_day", "denominator"].to_dict() == dict.fromkeys(
        ("female", "male", "unknown"), 40 * 31
    )
    assert check_released(exact, released, ["sex"]) >= 4
    rel_q1 = released[released["interval_end"] == Q1[1]].set_index(["measure", "sex"])
    rel_jan = released[released["interval_end"] == JAN[1]].set_index(["measure", "sex"])
    for name in ("admitted", "admissions_per_day"):
        assert rel_jan.loc[name, "numerator"].isna().sum() >= 2
        assert math.isnan(rel_jan.loc[(name, "male"), "numerator"])
    for name in ("admitted", "admissions_per_day"):
        in_q1 = rel_q1.loc[name]
        withheld_in_jan = rel_jan.loc[name, "numerator"].isna()
        assert in_q1["numerator"].isna().to_dict() == withheld_in_jan.to_dict()
        assert in_q1.loc["unknown", "numerator"] == 30
        assert "shares days with this one" in in_q1.loc["male", "disclosure_note"]
    # values from the released counts (docs/query.md section 4)
    row = rel_q1.loc[("admitted", "unknown")]
    assert row["value"] == pytest.approx(row["numerator"] / row["denominator"] * 100)


# -- a synthetic store, awkward rows added, against pandas day by day (slow) ---------------------

FY = (D(2025, 4, 1), D(2026, 3, 31))
APR_JUN = (D(2025, 4, 1), D(2025, 6, 30))  # starts the same day as April
SYNTH_INTERVALS = [*monthly("2025-04-01", 12), APR_JUN, FY]


def _perturbed(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The synthetic tables with the awkward cases added (seeded): care homes left open
    after a later move (and admissions the day before and on the move), short care-home
    stays inside a longer address (one-day ones too; admissions the day before, on the
    first, on the last and the day after), same-start ties of a care home and a flat (either
    LSOA the larger), residents dead mid-month (an admission on the day of death and one
    after it), and A&E arrivals on a discharge day and just after midnight."""
    import random

    rng = random.Random(20)
    a, p = tables["addresses"].copy(), tables["patients"].copy()
    ad, ae = tables["admissions"].copy(), tables["emergency_attendances"].copy()
    lsoas = sorted(tables["areas"]["lsoa_code"])
    new_a, new_ad, new_ae = [], [], []
    template = ad.iloc[0].to_dict()

    def admit(pid, day, discharge=None):
        row = dict(template, patient_id=pid, admission_date=day, discharge_date=discharge)
        row.update(spell_id=f"AUD{len(new_ad):06d}", admission_method="emergency")
        new_ad.append(row)

    homes = a[a["care_home"] & a["end_date"].isna() & (a["start_date"] <= D(2025, 3, 1))]
    home_pids = sorted(homes["patient_id"].unique())
    rng.shuffle(home_pids)
    for pid in home_pids[:25]:  # left open after a later move
        moved = D(2025, 4, 1) + dt.timedelta(days=rng.randrange(0, 360))
        new_a.append(_addr(pid, moved, lsoa=rng.choice(lsoas)))
        admit(pid, moved - dt.timedelta(days=1))
        admit(pid, moved)
    dead = p["patient_id"].isin(home_pids[25:37]) & p["date_of_death"].isna()
    for i in np.flatnonzero(dead.to_numpy()):  # dead mid-month
        died = D(2025, 4, 15) + dt.timedelta(days=rng.randrange(0, 330))
        p.iloc[i, p.columns.get_loc("date_of_death")] = died
        admit(p.iloc[i]["patient_id"], died)
        admit(p.iloc[i]["patient_id"], died + dt.timedelta(days=10))
    ever_home = set(a.loc[a["care_home"], "patient_id"])
    others = sorted(
        set(a.loc[a["end_date"].isna() & (a["start_date"] < D(2025, 1, 1)), "patient_id"])
        - ever_home
    )
    rng.shuffle(others)
    for pid in others[:30]:  # short stays inside a longer address
        start = D(2025, 4, 1) + dt.timedelta(days=rng.randrange(0, 350))
        end = start + dt.timedelta(days=rng.choice([0, 0, 3, 13, 29]))
        new_a.append(_home(pid, start, end, lsoa=rng.choice(lsoas)))
        for day in (start - dt.timedelta(days=1), start, end, end + dt.timedelta(days=1)):
            admit(pid, day)
    for pid in others[30:46]:  # same-start ties
        start = D(2025, 6, 1) + dt.timedelta(days=rng.randrange(0, 200))
        l1, l2 = rng.sample(lsoas, 2)
        new_a.append(_home(pid, start, lsoa=l1))
        new_a.append(_addr(pid, start, lsoa=l2))
        admit(pid, start)
        admit(pid, start + dt.timedelta(days=40))
    for r in ad.sample(40, random_state=20).itertuples():  # A&E on the discharge day
        if r.discharge_date is None or pd.isna(r.discharge_date):
            continue
        for t in (T(2025, 1, 1, 23, 50), T(2025, 1, 2, 0, 10)):
            d = r.discharge_date + dt.timedelta(days=t.day - 1)
            new_ae.append(
                {
                    "patient_id": r.patient_id,
                    "arrival_datetime": T(d.year, d.month, d.day, t.hour, t.minute),
                    "diagnosis_system": "snomedct",
                    "provider": "XR1",
                }
            )
    out = dict(tables)
    out["addresses"] = pd.concat([a, pd.DataFrame(new_a)], ignore_index=True)
    out["patients"] = p
    out["admissions"] = pd.concat([ad, pd.DataFrame(new_ad)], ignore_index=True)
    out["emergency_attendances"] = pd.concat([ae, pd.DataFrame(new_ae)], ignore_index=True)
    return out


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """A 20,000-patient synthetic store (``pophealth synth``), its tables read from the
    live snapshot's Parquet files, the awkward rows added, written to a store of its own."""
    import subprocess
    import sys

    import pyarrow as pa

    from pophealth.schema import arrow_schema
    from pophealth.store import Store

    base = tmp_path_factory.mktemp("synth_audit20")
    subprocess.run(
        [sys.executable, "-m", "pophealth", "synth", "--out", str(base / "synth")]
        + ["--patients", "20000", "--seed", "42"],
        check=True,
        capture_output=True,
    )
    src = Store.open(base / "synth")
    names = ["patients", "addresses", "admissions", "emergency_attendances", "registrations"]
    names += ["events", "areas", "practices"]
    tables = {n: pd.read_parquet(src.table_path(n)) for n in names}
    tables = _perturbed(tables)
    arrow = {
        n: pa.Table.from_pandas(
            df.reindex(columns=arrow_schema(n).names), schema=arrow_schema(n), preserve_index=False
        )
        for n, df in tables.items()
    }
    store = Store.open_or_new(base / "audit").write(arrow, provenance={"source": "audit20"})
    tables = {n: pd.read_parquet(store.table_path(n)) for n in names}
    return store, tables


def _day(x) -> pd.Series:
    return pd.to_datetime(x).dt.normalize()


def _care_home_days(tables, first: dt.date, last: dt.date) -> pd.DataFrame:
    """(patient_id, day, care_home) for every day from ``first`` to ``last`` on which the
    patient has an address, care_home that of the address by the overlap rule (of the
    addresses holding the day, the latest start, ties to the greater LSOA code, an LSOA
    missing the least) — for the patients with any care-home address."""
    a = tables["addresses"]
    a = a[a["patient_id"].isin(a.loc[a["care_home"], "patient_id"])].copy()
    a["s"] = _day(a["start_date"])
    a["e"] = _day(a["end_date"]).fillna(pd.Timestamp(last))
    a = a[(a["e"] >= pd.Timestamp(first)) & (a["s"] <= pd.Timestamp(last)) & (a["e"] >= a["s"])]
    rows = []
    for r in a.itertuples():
        days = pd.date_range(max(r.s, pd.Timestamp(first)), min(r.e, pd.Timestamp(last)))
        rows.append(
            pd.DataFrame(
                {
                    "patient_id": r.patient_id,
                    "day": days,
                    "s": r.s,
                    "lsoa": "" if r.lsoa_code is None else r.lsoa_code,
                    "care_home": r.care_home,
                }
            )
        )
    every = pd.concat(rows, ignore_index=True)
    every = every.sort_values(["patient_id", "day", "s", "lsoa"])
    return every.groupby(["patient_id", "day"], as_index=False).last()


def _care_home_reference(tables) -> tuple[dict, dict, dict]:
    """Per interval: care-home bed-days (to the day of death), the emergency admissions on a
    care-home day of patients with bed-days in the interval; and, for the year, residents
    and residents admitted while resident."""
    days = _care_home_days(tables, FY[0], FY[1])
    home = days[days["care_home"]]
    death = tables["patients"].set_index("patient_id")["date_of_death"]
    died = _day(home["patient_id"].map(death))
    bed = home[died.isna() | (home["day"] <= died)]
    ad = tables["admissions"]
    ad = ad[ad["admission_method"] == "emergency"].assign(day=lambda x: _day(x["admission_date"]))
    kept = ad.merge(home[["patient_id", "day"]], on=["patient_id", "day"])
    bed_days, events, share = {}, {}, {}
    for s, e in SYNTH_INTERVALS:
        s_, e_ = pd.Timestamp(s), pd.Timestamp(e)
        b = bed[(bed["day"] >= s_) & (bed["day"] <= e_)].groupby("patient_id").size()
        k = kept[(kept["day"] >= s_) & (kept["day"] <= e_)]
        k = k[k["patient_id"].isin(b.index)]
        bed_days[(s, e)] = int(b.sum())
        events[(s, e)] = len(k)
        share[(s, e)] = (k["patient_id"].nunique(), len(b))
    return bed_days, events, share


def _dsr_reference(tables) -> pd.DataFrame:
    """The under-75s' emergency admission rate in the year, by IMD quintile of the address
    on its last day, among the registered and alive then; ESP 2013 bands 0-4 ... 70-74."""
    end = pd.Timestamp(FY[1])
    p = tables["patients"].set_index("patient_id")
    dob = pd.to_datetime(p["date_of_birth"])
    age = (
        end.year
        - dob.dt.year
        - (
            (dob.dt.month > end.month) | ((dob.dt.month == end.month) & (dob.dt.day > end.day))
        ).astype(int)
    )
    death = pd.to_datetime(p["date_of_death"])
    alive = (dob <= end) & (death.isna() | (death > end))
    r = tables["registrations"]
    on = (_day(r["start_date"]) <= end) & (
        _day(r["end_date"]).isna() | (_day(r["end_date"]) >= end)
    )
    registered = p.index.isin(r.loc[on, "patient_id"])
    a = tables["addresses"]
    a = a[
        (_day(a["start_date"]) <= end) & (_day(a["end_date"]).isna() | (_day(a["end_date"]) >= end))
    ]
    a = a.assign(lsoa=a["lsoa_code"].fillna("")).sort_values(["patient_id", "start_date", "lsoa"])
    lsoa = a.groupby("patient_id")["lsoa_code"].last()
    quint = tables["areas"].set_index("lsoa_code")["imd_quintile"]
    q = p.index.map(lsoa).map(quint)
    group = pd.Series(q, index=p.index).map(lambda v: "unknown" if pd.isna(v) else str(int(v)))
    ad = tables["admissions"]
    ad = ad[(ad["admission_method"] == "emergency")]
    ad = ad[
        (_day(ad["admission_date"]) >= pd.Timestamp(FY[0])) & (_day(ad["admission_date"]) <= end)
    ]
    n_events = ad.groupby("patient_id").size().reindex(p.index, fill_value=0)
    frame = pd.DataFrame({"age": age, "group": group, "x": n_events})[
        alive & registered & (age >= 0) & (age <= 74)
    ]
    frame["band"] = frame["age"] // 5
    rows = []
    for g, sub in frame.groupby("group"):
        x = sub.groupby("band")["x"].sum().reindex(range(15), fill_value=0)
        n = sub.groupby("band").size().reindex(range(15), fill_value=0)
        value = lo = hi = released = math.nan
        if (n > 0).all() and x.sum() >= 10:
            value, lo, hi = dsr_by_hand(list(x), list(n), ESP2013[:15])

            # released: from the bands' counts rounded to 5 cumulatively, youngest first
            # (each band the rounded sum up to it less the rounded sum before it; a band
            # with someone keeps 5)
            x_r = cumulative_round5(list(x))
            n_r = [max(r, 5) for r in cumulative_round5(list(n))]
            released = dsr_by_hand(x_r, n_r, ESP2013[:15])[0]
        rows.append((g, int(x.sum()), len(sub), value, lo, hi, released))
    columns = ["imd_quintile", "x", "n", "value", "lo", "hi", "released"]
    return pd.DataFrame(rows, columns=columns)


def _synth_measures() -> Measures:
    m = Measures(intervals=SYNTH_INTERVALS)
    from_home = EMERGENCY.during(IN_CARE)
    _define_care_home_rate(m)
    m.define_measure(
        "admitted_while_resident",
        numerator=from_home.in_interval().exists_for_patient(),
        denominator=BED_DAYS > 0,
        intervals=[FY],
    )
    m.define_standardised_rate(
        "under75_dsr",
        events=EMERGENCY.in_interval().count_for_patient(),
        among=registrations.registered_on(index_date) & patients.is_alive_on(index_date),
        max_age=74,
        group_by={"imd_quintile": addresses.area_on(index_date).group("imd_quintile")},
        intervals=[FY],
    )
    return m


@pytest.mark.slow
def test_synthetic_store_against_pandas_day_by_day(engine, synth):
    store, tables = synth
    bed_days, n_events, share = _care_home_reference(tables)
    assert bed_days[FY] > 10_000 and n_events[FY] > 20  # the cases are there to count
    exact = run_measures(store, _synth_measures(), engine=engine, disclosure=False)
    assert _by_interval(exact, "care_home_admissions", "denominator") == bed_days
    assert _by_interval(exact, "care_home_admissions", "numerator") == n_events
    got_share = exact[exact["measure"] == "admitted_while_resident"].iloc[0]
    assert (got_share["numerator"], got_share["denominator"]) == share[FY]
    ref = _dsr_reference(tables).set_index("imd_quintile")
    got = exact[exact["measure"] == "under75_dsr"].set_index("imd_quintile")
    assert sorted(got.index) == sorted(ref.index)
    for g, r in ref.iterrows():
        assert (got.loc[g, "numerator"], got.loc[g, "denominator"]) == (r["x"], r["n"]), g
        for col, mine in (("value", "value"), ("lower95_0cl", "lo"), ("upper95_0cl", "hi")):
            if math.isnan(r[mine]):
                assert math.isnan(got.loc[g, col]), (g, col)
            else:
                assert got.loc[g, col] == pytest.approx(r[mine], rel=1e-9), (g, col)

    released = run_measures(store, _synth_measures(), engine=engine)
    check_released(exact, released, ["imd_quintile"])
    rel = released[released["measure"] == "under75_dsr"].set_index("imd_quintile")
    for g, r in ref.iterrows():
        if math.isnan(rel.loc[g, "value"]):
            continue
        o = rel.loc[g, "numerator"]
        assert rel.loc[g, "value"] == pytest.approx(r["released"], rel=1e-9)  # rounded bands
        v = rel.loc[g, "value"]
        b_lo, b_hi = byar(o)
        ratio = (rel.loc[g, "upper95_0cl"] - v) / (v - rel.loc[g, "lower95_0cl"])
        assert ratio == pytest.approx((b_hi - o) / (o - b_lo), rel=1e-9), g


@pytest.mark.slow
def test_synthetic_store_rows_during_admissions_and_registrations(engine, synth):
    """Per patient: A&E arrivals on a day of an admission (the union of the admissions'
    days, an open discharge running on) and events on a day of a registration."""
    store, tables = synth
    ds = Dataset()
    ds.define_population(patients.date_of_birth.is_not_null())
    ds.ae_in_hospital = emergency_attendances.during(admissions).count_for_patient()
    ds.events_registered = events.during(registrations).count_for_patient()
    out = run_dataset(store, ds, engine=engine, index_date=FY[1]).set_index("patient_id")

    def kept(rows: pd.DataFrame, day: pd.Series, periods: pd.DataFrame, s: str, e: str):
        rows = rows.assign(_row=np.arange(len(rows)), _day=day.to_numpy())
        both = rows[["patient_id", "_row", "_day"]].merge(
            periods[["patient_id", s, e]], on="patient_id"
        )
        end = _day(both[e]).fillna(pd.Timestamp.max.normalize())
        hit = both[(both["_day"] >= _day(both[s])) & (both["_day"] <= end)]
        return hit.drop_duplicates("_row").groupby("patient_id").size()

    ae = tables["emergency_attendances"]
    want_ae = kept(
        ae, _day(ae["arrival_datetime"]), tables["admissions"], "admission_date", "discharge_date"
    )
    ev = tables["events"]
    want_ev = kept(ev, _day(ev["date"]), tables["registrations"], "start_date", "end_date")
    got_ae = out["ae_in_hospital"]
    got_ev = out["events_registered"]
    assert want_ae.sum() > 50 and want_ev.sum() > 1000
    assert got_ae[got_ae > 0].sort_index().to_dict() == want_ae.sort_index().to_dict()
    assert got_ev[got_ev > 0].sort_index().to_dict() == want_ev.sort_index().to_dict()


DEFINITION = """
from pophealth.query import (Measures, addresses, admissions, index_date, monthly, patients)

in_care_home = addresses.where(addresses.care_home)
emergency = admissions.where(admissions.admission_method == "emergency")
measures = Measures(intervals=[*monthly("2025-04-01", 12), ("2025-04-01", "2026-03-31")])
measures.define_rate(
    "care_home_admissions",
    events=emergency.during(in_care_home).in_interval().count_for_patient(),
    person_time=in_care_home.days_in_interval_for_patient(until=patients.date_of_death),
    per=1000,
    unit="days",
)
"""


@pytest.mark.slow
def test_cli_runs_the_care_home_rate_as_run_measures_does(synth, tmp_path):
    import subprocess
    import sys

    store, tables = synth
    bed_days, n_events, _ = _care_home_reference(tables)
    (tmp_path / "care.py").write_text(DEFINITION)
    for flag in ("--no-disclosure", "--disclosure"):
        out = tmp_path / f"out{flag}.csv"
        subprocess.run(
            [sys.executable, "-m", "pophealth", "measures", str(tmp_path / "care.py")]
            + ["--store", str(store.path), "--output", str(out), flag],
            check=True,
            capture_output=True,
        )
        got = pd.read_csv(out, parse_dates=["interval_start", "interval_end"])
        got["interval_start"] = got["interval_start"].dt.date
        got["interval_end"] = got["interval_end"].dt.date
        want_keys = [*monthly("2025-04-01", 12), FY]
        if flag == "--no-disclosure":
            assert _by_interval(got, "care_home_admissions", "denominator") == {
                k: bed_days[k] for k in want_keys
            }
            assert _by_interval(got, "care_home_admissions", "numerator") == {
                k: n_events[k] for k in want_keys
            }
        else:
            shown = got["numerator"].dropna()
            assert (shown % 5 == 0).all() and not shown.between(1, 7).any()
            assert got.loc[got["interval_end"] == FY[1], "denominator"].iloc[0] == 5 * round(
                bed_days[FY] / 5
            )


@pytest.mark.parametrize("eng", RELEASED_ENGINES)
def test_standardised_rate_by_sex_released_with_secondary_suppression(eng, dsr_store):
    """Ages 70-74 by sex, over the year and its first half (starting the same day). Men:
    on 31 Dec 10 (5 admitted, 5 events); on 30 Jun 11, the man born 31 Dec 1950 still 74
    (his 3 admissions in March-May counted: 8 events of 6 men). Women 100, 23 events. The
    men's events are withheld (1-7 patients behind them), so in each interval the women's
    are withheld too — else the total would give the men's — with the rates and limits."""
    half = (D(2025, 1, 1), D(2025, 6, 30))
    m = Measures(intervals=[YEAR, half])
    m.define_standardised_rate(
        "ages_70_74",
        events=EMERGENCY.in_interval().count_for_patient(),
        among=patients.is_alive_on(index_date),
        min_age=70,
        max_age=74,
        group_by={"sex": patients.sex},
    )
    exact = run_measures(dsr_store, m, engine=eng, disclosure=False)
    got = {(r.interval_end, r.sex): (r.numerator, r.denominator) for r in exact.itertuples()}
    assert got == {
        (half[1], "female"): (23, 100),
        (half[1], "male"): (8, 11),
        (YEAR[1], "female"): (23, 100),
        (YEAR[1], "male"): (5, 10),
    }
    released = run_measures(dsr_store, m, engine=eng)
    assert check_released(exact, released, ["sex"]) == 4
    assert released["numerator"].isna().all() and released["value"].isna().all()
    assert list(released["denominator"]) == [100, 10, 100, 10]  # 11 rounded to 10
    assert list(released["interval_end"]) == [half[1], half[1], YEAR[1], YEAR[1]]


@pytest.mark.parametrize(
    ("min_age", "max_age", "bands", "ages"),
    [
        (0, 74, 15, "ages 0-74"),
        (0, 89, 18, "ages 0-89"),
        (65, 69, 1, "ages 65-69"),
        (85, 89, 1, "ages 85-89"),
    ],
)
def test_max_age_the_last_age_of_a_band_is_taken(min_age, max_age, bands, ages):
    """The bands of the standard the rate is over, their weights ESP 2013's (Eurostat 2013,
    table 2) from min_age's band to max_age's, and the statistic naming the ages."""
    m = Measures(intervals=[YEAR])
    r = m.define_standardised_rate(
        "r",
        events=EMERGENCY.count_for_patient(),
        among=patients.sex == "male",
        min_age=min_age,
        max_age=max_age,
    )
    assert len(r.bands) == bands
    assert r.bands[0] == f"{min_age}-{min_age + 4}" and r.bands[-1] == f"{max_age - 4}-{max_age}"
    assert list(r.weights) == ESP2013[min_age // 5 : (max_age + 1) // 5]
    assert r.statistic == f"age-standardised rate per 100,000 (ESP 2013, {ages})"
