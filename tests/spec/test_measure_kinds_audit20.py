"""Audit 20: the newest measure kinds — age-standardised rates, row measures, centiles over
rows with a per-row breakdown, and rates per person-time — written as an analyst writes them
from docs/query.md and the ``Measures.define_*`` docstrings, for rules in PROGRAMMES.md:
emergency admissions age-standardised by IMD quintile (sections 5 and 12.3), the sickle-cell
door-to-analgesia standard per ED attendance with its median and 90th centile by site
(section 9), and admissions per 1,000 care-home resident-days (section 5).

Every figure is checked against an independent computation in this file: small tables in
the test with the counts worked by hand beside them, the statistics from the published
formulas written out here (never pophealth's own), on DuckDB and Spark, without and with the
default disclosure control. A larger cross-check on a synthetic store against plain pandas
on the store's Parquet files runs with the slow tests.

Reference formulas:

* DSR = Σ(xᵢ·wᵢ/nᵢ)/Σwᵢ × per; var = Σ xᵢ(wᵢ/nᵢ)²/(Σwᵢ)²; Dobson limits DSR + √(var/O)·(O' − O)
  with O' Byar's limit of the total O (Dobson AJ et al., Stat Med 1991;10:457-62; the
  Fingertips method, PHEindicatormethods ``calculate_dsr``: ../shared/PROGRAMMES.md 12.3,
  whose "testdata_big" fixture the oracle below reproduces); not published when O < 10.
* ESP 2013 weights (19 bands 0-4 … 85-89, 90+): PROGRAMMES.md 12.3 (Eurostat 2013).
* Byar's limits, exact Poisson limits by χ² below 10 (PROGRAMMES.md 12.2).
* Wilson score limits (PROGRAMMES.md 12.1).
* Hyndman & Fan definition 7 (Am Stat 1996;50:361-5) = numpy's default quantile; binomial
  rank limits (Campbell & Gardner, BMJ 1988;296:1454-6) with the exact ranks as
  docs/statistics.md "Centiles" states them.
* Disclosure: counts 1-7 withheld, others rounded to the nearest 5 (PROGRAMMES.md 12.7;
  README "Outputs"; docs/query.md section 4).

What the audit found, each now fixed and its test passing: a released standardised rate's
limits gave back its exact event count; secondary suppression treated intervals that start
on the same day as one table, leaving a withheld cell alone in its own interval; the order
of a result's rows between such intervals changed from run to run; and the current row's
``hour_of_day`` of a row dataset failed with an internal AttributeError.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from typer.testing import CliRunner

from pophealth.cli import app
from pophealth.query import (
    Measures,
    QueryError,
    RowDataset,
    addresses,
    admissions,
    hour_of_day,
    index_date,
    minutes_between,
    monthly,
    patients,
    quarterly,
    registrations,
    run_measures,
    when,
    yearly,
)
from pophealth.query import emergency_attendances as ea
from tests.spec.conftest import cumulative_round5, make_store

D, T = dt.date, dt.datetime
HAVE_SPARK = importlib.util.find_spec("pyspark") is not None


@pytest.fixture(
    params=[
        pytest.param("duckdb"),
        pytest.param(
            "spark",
            marks=[
                pytest.mark.spark,
                pytest.mark.slow,  # the Spark half of this audit runs with the slow tests
                pytest.mark.skipif(not HAVE_SPARK, reason="pyspark not installed"),
            ],
        ),
    ]
)
def engine(request) -> str:
    return request.param


# -- reference formulas, written from the published methods ----------------------------------

ESP2013 = [5000, 5500, 5500, 5500, 6000, 6000, 6500, 7000, 7000, 7000, 7000, 6500, 6000]
ESP2013 += [5500, 5000, 4000, 2500, 1500, 1000]
LEVELS = (0.95, 0.998)
LIMITS = ["lower95_0cl", "upper95_0cl", "lower99_8cl", "upper99_8cl"]
FIGURES = ["numerator", "denominator", "value", *LIMITS]


def _z(level: float) -> float:
    return float(stats.norm.ppf(1 - (1 - level) / 2))


def byar(o: float, z: float) -> tuple[float, float]:
    lower = o * (1 - 1 / (9 * o) - z / (3 * math.sqrt(o))) ** 3 if o > 0 else 0.0
    o1 = o + 1
    return lower, o1 * (1 - 1 / (9 * o1) + z / (3 * math.sqrt(o1))) ** 3


def dobson_dsr(x: list, n: list, w: list, per: float, released: float | None = None) -> tuple:
    """(rate, lower95, upper95, lower99.8, upper99.8); all None when O < 10 or a band is empty.
    ``released``: the count the limits are worked from in place of O (a released, rounded
    count: the limits must not give the exact one back)."""
    x, n, w = (np.asarray(a, float) for a in (x, n, w))
    o = x.sum()
    if o < 10 or (n == 0).any():
        return (None,) * 5
    o = o if released is None else released
    dsr = (x * w / n).sum() / w.sum()
    var = (x * (w / n) ** 2).sum() / w.sum() ** 2
    out = [dsr * per]
    for level in LEVELS:
        lo, hi = byar(o, _z(level))
        out += [(dsr + math.sqrt(var / o) * (lo - o)) * per]
        out += [(dsr + math.sqrt(var / o) * (hi - o)) * per]
    return tuple(out)


def poisson_rate(x: float, n: float, per: float) -> tuple:
    out = [x / n * per]
    for level in LEVELS:
        a = 1 - level
        if x < 10:
            lo = stats.chi2.ppf(a / 2, 2 * x) / 2 if x > 0 else 0.0
            hi = stats.chi2.ppf(1 - a / 2, 2 * x + 2) / 2
        else:
            lo, hi = byar(x, _z(level))
        out += [lo / n * per, hi / n * per]
    return tuple(out)


def wilson(x: float, n: float, per: float = 100) -> tuple:
    out = [x / n * per]
    for level in LEVELS:
        z = _z(level)
        root = z * math.sqrt(z * z + 4 * x * (1 - x / n))
        out += [(2 * x + z * z - root) / (2 * (n + z * z)) * per]
        out += [(2 * x + z * z + root) / (2 * (n + z * z)) * per]
    return tuple(out)


def centile(values: list, q: float) -> tuple:
    """Hyndman & Fan 7 and exact binomial-rank limits (None where the ranks fall outside)."""
    v = np.sort(np.asarray(values, float))
    n = len(v)
    out = [float(np.quantile(v, q))]
    for level in LEVELS:
        a = 1 - level
        b = stats.binom(n, q)
        r = [k for k in range(1, n + 1) if b.cdf(k - 1) <= a / 2]
        s = [k for k in range(1, n + 1) if b.cdf(k - 1) >= 1 - a / 2]
        out += [v[max(r) - 1], v[min(s) - 1]] if r and s else [None, None]
    return tuple(out)


def round5(n: float) -> int:
    return 5 * math.floor(n / 5 + 0.5)


def _none(v: Any) -> Any:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v


def by_key(result: pd.DataFrame, *keys: str, cols=FIGURES) -> dict[tuple, tuple]:
    """The result's figures keyed by ``keys`` (its row order is not relied on)."""
    out = {}
    for _, row in result.iterrows():
        k = tuple(_none(row[c]) for c in keys)
        assert k not in out, f"two rows for {k}"
        out[k] = tuple(_none(row[c]) for c in cols)
    return out


def same(got: tuple, want: tuple) -> bool:
    return len(got) == len(want) and all(
        (g is None and w is None)
        or (g is not None and w is not None and math.isclose(g, w, rel_tol=1e-9, abs_tol=1e-9))
        for g, w in zip(got, want, strict=True)
    )


def rounded_from(got: float, want: float) -> bool:
    """Whether ``got`` is ``want`` rounded to ``got``'s own decimal places (0-6)."""
    for d in range(7):
        if abs(got * 10**d - round(got * 10**d)) < 1e-6:
            return abs(got - want) <= 0.5 * 10**-d + 1e-9
    return False


def assert_figures(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    bad = {k: (got[k], want[k]) for k in want if not same(got[k], want[k])}
    assert not bad, bad


def test_the_dsr_oracle_reproduces_the_fingertips_fixture():
    """The oracle above against PROGRAMMES.md 12.3's "testdata_big": 1043.025 per 10,000,
    95% CI 971.771-1117.894; a total count of 9 is not published."""
    x = [127, 25, 18, 21, 12, 27, 48, 27, 29, 32, 32, 34, 45, 65, 38, 68, 74, 82, 91]
    n = [636, 558, 609, 543, 384, 594, 669, 843, 660, 576, 606, 522, 426, 273, 300, 288, 153]
    n += [123, 207]
    value, lo, hi, *_ = dobson_dsr(x, n, ESP2013, 10_000)
    assert (round(value, 3), round(lo, 3), round(hi, 3)) == (1043.025, 971.771, 1117.894)
    assert dobson_dsr([9] + [0] * 18, n, ESP2013, 10_000) == (None,) * 5


# -- 1. age-standardised emergency admissions by IMD quintile --------------------------------

L1, L2, L3 = "X01000001", "X01000002", "X01000003"
AREAS = [
    {"lsoa_code": L1, "imd_quintile": 1},
    {"lsoa_code": L2, "imd_quintile": 2},
    {"lsoa_code": L3, "imd_quintile": 3},
]


def _people(spec: list[tuple]) -> dict[str, list[dict]]:
    """(id, birth, [(from, to, lsoa)...], [admission days], death, [(registered from, to)])."""
    tables: dict[str, list[dict]] = {
        "patients": [],
        "registrations": [],
        "addresses": [],
        "admissions": [],
        "areas": AREAS,
    }
    for pid, dob, homes, days, dod, regs in spec:
        tables["patients"].append({"patient_id": pid, "date_of_birth": dob, "date_of_death": dod})
        for start, end in regs:
            tables["registrations"].append(
                {"patient_id": pid, "practice_id": "X1", "start_date": start, "end_date": end}
            )
        for start, end, lsoa in homes:
            tables["addresses"].append(
                {"patient_id": pid, "start_date": start, "end_date": end, "lsoa_code": lsoa}
            )
        for day in days:
            tables["admissions"].append(
                {"patient_id": pid, "admission_date": day, "discharge_date": day}
            )
    return tables


ALWAYS = [(D(2000, 1, 1), None)]


def _feb(n: int) -> list[dt.date]:
    return [D(2026, 2, 1 + k) for k in range(n)]


def _mar(n: int) -> list[dt.date]:
    return [D(2026, 3, 1 + k) for k in range(n)]


OVER_85S = _people(
    [
        # quintile 1 all along; aged 85 at the end of February and of March
        ("p1", D(1940, 6, 1), [(D(2000, 1, 1), None, L1)], _feb(6), None, ALWAYS),
        # born on 29 February 1936: 89 on 28 February 2026, 90 from 1 March
        ("p2", D(1936, 2, 29), [(D(2000, 1, 1), None, L1)], _feb(2) + _mar(3), None, ALWAYS),
        ("p3", D(1941, 1, 1), [(D(2000, 1, 1), None, L1)], _feb(3) + _mar(8), None, ALWAYS),
        # moves from quintile 1 to 2 on 15 February, admitted four times while still in 1:
        # counted in 2, the area on the interval's last day
        (
            "p4",
            D(1938, 7, 1),
            [(D(2000, 1, 1), D(2026, 2, 14), L1), (D(2026, 2, 15), None, L2)],
            [D(2026, 2, 5)] * 4,
            None,
            ALWAYS,
        ),
        ("p5", D(1930, 1, 1), [(D(2000, 1, 1), None, L2)], _feb(7), None, ALWAYS),
        # 41: younger than min_age=85, admissions not counted
        ("p6", D(1985, 1, 1), [(D(2000, 1, 1), None, L1)], _feb(5), None, ALWAYS),
        # 88, dies on 20 February: not alive on the interval's last day
        ("p7", D(1938, 1, 1), [(D(2000, 1, 1), None, L1)], _feb(2), D(2026, 2, 20), ALWAYS),
        # quintile 3 holds only a 41-year-old: no row for it among the over-85s
        ("p9", D(1985, 1, 1), [(D(2000, 1, 1), None, L3)], _feb(3), None, ALWAYS),
    ]
)


def _over_85s_measures() -> Measures:
    emergency = admissions.where(admissions.admission_method == "emergency")
    events = emergency.in_interval().count_for_patient()
    imd = {"imd_quintile": addresses.area_on(index_date).group("imd_quintile")}
    # January 1999: nobody registered yet, so no row at all
    m = Measures(intervals=[(D(1999, 1, 1), D(1999, 1, 31)), *monthly("2026-02-01", 2)])
    m.define_standardised_rate(
        "dsr_85",
        events=events,
        among=registrations.registered_on(index_date) & patients.is_alive_on(index_date),
        min_age=85,
        group_by=imd,
    )
    m.define_standardised_rate(
        "dsr_85_person_time",
        events=events,
        person_time=registrations.days_in_interval_for_patient(until=patients.date_of_death),
        min_age=85,
        group_by=imd,
    )
    return m


def test_standardised_rate_over_85s_by_imd_quintile_by_hand(engine, tmp_path):
    """Bands 85-89 (weight 1,500) and 90+ (1,000), ages on the interval's last day.

    Per population (registered and alive on the last day):
    * February, quintile 1: p1, p2 (89 on 28 Feb), p3 in 85-89; nobody 90+ -> no rate;
      events 6 + 2 + 3 = 11 (p6 too young, p7 dead by then).
    * February, quintile 2: p4 (85-89, 4 events, moved in mid-month), p5 (90+, 7 events):
      (4/1·1500 + 7/1·1000)/2500 × 100,000 = 520,000.
    * March, quintile 1: p1, p3 in 85-89 (0 + 8 events), p2 now 90 (3 events):
      (8/2·1500 + 3/1·1000)/2500 × 100,000 = 360,000.
    * March, quintile 2: no events, fewer than 10 -> no rate.
    Per person-time (days registered, until death), 365.25 days a year:
    * February, 1: p1, p2, p3 28 days each, p7 20 (to his death): 104 days, 13 events,
      nobody 90+.
    * February, 2: 28 + 28 days, as above per person-year.
    * March, 1: 85-89 p1 + p3, 62 days, 8 events; 90+ p2, 31 days, 3 events.
    * March, 2: 62 days, no events.
    """
    store = make_store(tmp_path, OVER_85S)
    result = run_measures(store, _over_85s_measures(), engine=engine, disclosure=False)
    assert result.attrs["evaluation"]["dsr_85"] in {"paired", "masks", "change_points"}
    feb, mar = (D(2026, 2, 1), D(2026, 2, 28)), (D(2026, 3, 1), D(2026, 3, 31))
    yr = 365.25
    want = {
        ("dsr_85", *feb, "1"): (11, 3, None, None, None, None, None),
        ("dsr_85", *feb, "2"): (11, 2, *dobson_dsr([4, 7], [1, 1], [1500, 1000], 1e5)),
        ("dsr_85", *mar, "1"): (11, 3, *dobson_dsr([8, 3], [2, 1], [1500, 1000], 1e5)),
        ("dsr_85", *mar, "2"): (0, 2, None, None, None, None, None),
        ("dsr_85_person_time", *feb, "1"): (13, 104, None, None, None, None, None),
        ("dsr_85_person_time", *feb, "2"): (
            11,
            56,
            *dobson_dsr([4, 7], [28 / yr, 28 / yr], [1500, 1000], 1e5),
        ),
        ("dsr_85_person_time", *mar, "1"): (
            11,
            93,
            *dobson_dsr([8, 3], [62 / yr, 31 / yr], [1500, 1000], 1e5),
        ),
        ("dsr_85_person_time", *mar, "2"): (0, 62, None, None, None, None, None),
    }
    assert want[("dsr_85", *feb, "2")][2] == pytest.approx(520_000)
    assert want[("dsr_85", *mar, "1")][2] == pytest.approx(360_000)
    got = by_key(result, "measure", "interval_start", "interval_end", "imd_quintile")
    assert_figures(got, want)
    why = result.set_index(["measure", "interval_start", "imd_quintile"])["method"]
    assert "90+" in why[("dsr_85", D(2026, 2, 1), "1")]
    assert "less than 10" in why[("dsr_85", D(2026, 3, 1), "2")]
    assert "Dobson" in why[("dsr_85", D(2026, 3, 1), "1")]
    stat = set(result.statistic)
    assert stat == {
        "age-standardised rate per 100,000 (ESP 2013, ages 85+)",
        "age-standardised rate per 100,000 person-years (ESP 2013, ages 85+)",
    }


def _dsr_disclosure_tables() -> dict[str, list[dict]]:
    """Quintile 1: 12 people aged 85-89 (13 events among 10 of them) and 9 aged 90+ (one
    event each); quintile 2: 3 + 2 people with 11 events; quintile 3: 10 + 8 people with
    one event each. All registered, alive, ages on 31 March 2026."""
    spec = []
    home = [(D(2000, 1, 1), None)]

    def add(prefix, k, dob, lsoa, n_events):
        spec.append(
            (
                f"{prefix}{k}",
                dob,
                [(*home[0], lsoa)],
                [D(2026, 3, 1 + j) for j in range(n_events)],
                None,
                ALWAYS,
            )
        )

    for k in range(12):
        add("a", k, D(1939, 1, 1), L1, [4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0][k])
    for k in range(9):
        add("b", k, D(1930, 1, 1), L1, 1)
    for k in range(3):
        add("c", k, D(1939, 1, 1), L2, [5, 3, 0][k])
    for k in range(2):
        add("d", k, D(1930, 1, 1), L2, [2, 1][k])
    for k in range(10):
        add("e", k, D(1939, 1, 1), L3, 1)
    for k in range(8):
        add("f", k, D(1930, 1, 1), L3, 1)
    return _people(spec)


def _dsr_disclosure_measures(with_total: bool = False) -> Measures:
    emergency = admissions.where(admissions.admission_method == "emergency")
    among = registrations.registered_on(index_date) & patients.is_alive_on(index_date)
    m = Measures(intervals=monthly("2026-03-01", 1))
    m.define_standardised_rate(
        "dsr_85",
        events=emergency.in_interval().count_for_patient(),
        among=among,
        min_age=85,
        group_by={"imd_quintile": addresses.area_on(index_date).group("imd_quintile")},
    )
    if with_total:
        m.define_standardised_rate(
            "dsr_85_total",
            events=emergency.in_interval().count_for_patient(),
            among=among,
            min_age=85,
        )
    return m


def test_standardised_rate_disclosure_control(engine, tmp_path):
    """Exact: quintile 1 22 events of 21 people, 2 11 of 5, 3 18 of 18. Released: 2 is
    withheld (5 people; 4 with events), and at least one more quintile beside it, so the
    regional total (released: 50 of 45 rounded) cannot give it back; the released counts are
    rounded to 5, and a released rate is worked from the bands' counts rounded cumulatively as
    released counts are, with its limits from the released count of events (docs/query.md,
    "Age-standardised rates"), withheld wherever a count is."""
    store = make_store(tmp_path, _dsr_disclosure_tables())
    m = _dsr_disclosure_measures(with_total=True)
    exact = run_measures(store, m, engine=engine, disclosure=False)
    released = run_measures(store, m, engine=engine)
    x = by_key(exact, "measure", "imd_quintile")
    r = by_key(released, "measure", "imd_quintile")
    assert x[("dsr_85", "1")][:3] == (22, 21, dobson_dsr([13, 9], [12, 9], [1500, 1000], 1e5)[0])
    assert x[("dsr_85", "2")][:2] == (11, 5)
    assert x[("dsr_85", "3")][:3] == (18, 18, dobson_dsr([10, 8], [10, 8], [1500, 1000], 1e5)[0])
    assert x[("dsr_85_total", None)][:2] == (51, 44)
    assert set(r) == set(x)
    for key, (num, den, *rest) in r.items():
        exact_num, exact_den, *exact_rest = x[key]
        for got, true in ((num, exact_num), (den, exact_den)):
            assert got is None or (got == round5(true) and not 1 <= true <= 7)
        if num is None or den is None:
            assert rest == [None] * 5, key
        else:  # its limits worked from the released count of events
            ratio = (rest[2] - rest[0]) / (rest[0] - rest[1])
            lo, hi = byar(num, _z(0.95))
            assert math.isclose(ratio, (hi - num) / (num - lo), rel_tol=1e-9), key
    # the bands' counts rounded to 5 cumulatively (youngest band first: the band, less the
    # younger bands, each sum rounded): events 13, 13 + 9 = 22 -> 15, 20, so 15 and 5; people
    # 12, 21 -> 10, 20, so 10 and 10. Quintile 3: 10, 18 -> 10, 20 and 10, 18 -> 10, 20.
    bands = {"1": ([15, 5], [10, 10]), "3": ([10, 10], [10, 10])}
    for q, (xs, ns) in bands.items():
        num = r[("dsr_85", q)][0]
        if num is not None:
            want = dobson_dsr(xs, ns, [1500, 1000], 1e5, released=num)
            assert same(tuple(r[("dsr_85", q)][2:]), want), q
            assert not same((r[("dsr_85", q)][2],), (x[("dsr_85", q)][2],)), q  # not exact
    assert r[("dsr_85", "2")][:3] == (None, None, None)
    withheld = [k for k, v in r.items() if k[0] == "dsr_85" and v[0] is None]
    assert len(withheld) >= 2  # not quintile 2 alone, beside a released total
    assert r[("dsr_85_total", None)][:2] == (50, 45)
    note = released.set_index(["measure", "imd_quintile"])["disclosure_note"]
    assert "withheld" in note[("dsr_85", "2")]


def test_a_released_standardised_rate_does_not_give_back_its_exact_events(tmp_path):
    """Quintile 1 has 22 events, released as 20. Dobson's limits are DSR + √(V/O)·(Byar(O) −
    O), so (upper − rate)/(rate − lower) is a function of O alone: worked from the exact 22
    they gave 22 back (found by this audit). Worked from the released count, they fit 20 —
    published anyway — and not the true 22."""
    store = make_store(tmp_path, _dsr_disclosure_tables())
    released = run_measures(store, _dsr_disclosure_measures())
    row = released.set_index("imd_quintile").loc["1"]
    assert row["numerator"] == 20
    ratio = (row["upper95_0cl"] - row["value"]) / (row["value"] - row["lower95_0cl"])
    z = _z(0.95)

    def fits(o: int) -> bool:
        lo, hi = byar(o, z)
        return math.isclose((hi - o) / (o - lo), ratio, rel_tol=1e-9)

    candidates = [o for o in range(18, 23) if fits(o)]
    assert candidates == [20]  # the released count; before the fix, [22]: the exact one
    # and the rate is worked from the bands' counts rounded to 5 cumulatively (13, 9 of 12,
    # 9: sums 13, 22 of 12, 21 -> 15, 20 of 10, 20, so 15, 5 of 10, 10), not from the exact
    # ones, which it would narrow down
    assert row["value"] == pytest.approx(dobson_dsr([15, 5], [10, 10], [1500, 1000], 1e5)[0])


def test_standardised_rate_secondary_suppression_with_a_longer_interval_from_the_same_day(
    tmp_path,
):
    """March 2026 alone: quintile 2 (5 people, 4 with events) is withheld and so is a second
    quintile, as docs/query.md promises ("secondary suppression across the breakdown").
    Add March-June, which starts the same day: before the fix (found by this audit) the
    two intervals were one table for secondary suppression, so March's quintiles 1 and 3
    were both released (20 of 20 each) beside the released total (50 of 45), and quintile 2
    was the total less the others. Each interval is now a table of its own."""
    store = make_store(tmp_path, _dsr_disclosure_tables())
    emergency = admissions.where(admissions.admission_method == "emergency")
    among = registrations.registered_on(index_date) & patients.is_alive_on(index_date)
    events = emergency.in_interval().count_for_patient()
    m = Measures(intervals=[(D(2026, 3, 1), D(2026, 3, 31)), (D(2026, 3, 1), D(2026, 6, 30))])
    imd = addresses.area_on(index_date).group("imd_quintile")
    m.define_standardised_rate(
        "dsr_85", events=events, among=among, min_age=85, group_by={"imd_quintile": imd}
    )
    m.define_standardised_rate("dsr_85_total", events=events, among=among, min_age=85)
    result = run_measures(store, m)
    march = result[(result.measure == "dsr_85") & (result.interval_end == D(2026, 3, 31))]
    assert march.set_index("imd_quintile").numerator.isna().to_dict()["2"]
    assert march.numerator.isna().sum() >= 2


def test_row_measure_secondary_suppression_with_a_longer_interval_from_the_same_day(tmp_path):
    """March 2025 alone: site 1's 10 attendances (2 patients) are withheld and site 2's
    denominator beside them. Add March-May: before the fix, March's site 2 denominator (15)
    and site 3's (20) were released beside the released total (45), and site 1's was
    45 - 15 - 20. Each interval is now a table of its own."""
    store = make_store(tmp_path, _many_attendances())
    per_attendance = RowDataset(ea)
    att = per_attendance.row
    wait = minutes_between(att.arrival_datetime, att.first_analgesia_datetime)
    met = (wait >= 0) & (wait <= 30)
    m = Measures(intervals=[(D(2025, 3, 1), D(2025, 3, 31)), (D(2025, 3, 1), D(2025, 5, 31))])
    m.define_row_measure(
        "analgesia_30", rows=per_attendance, numerator=met, group_by={"site": att.provider}
    )
    m.define_row_measure("analgesia_30_total", rows=per_attendance, numerator=met)
    result = run_measures(store, m)
    march = result[(result.measure == "analgesia_30") & (result.interval_end == D(2025, 3, 31))]
    assert march.denominator.isna().sum() >= 2


# -- 2. a row measure: analgesia within 30 minutes of each ED attendance ---------------------

S1, S2 = "XS1", "XS2"


def _att(pid: str, site: str | None, arrival: dt.datetime, analgesia, minutes=None) -> dict:
    return {
        "patient_id": pid,
        "arrival_datetime": arrival,
        "departure_datetime": None if minutes is None else arrival + dt.timedelta(minutes=minutes),
        "first_analgesia_datetime": analgesia,
        "provider": site,
    }


ATTENDANCES = {
    "patients": [
        {"patient_id": "a", "date_of_birth": D(2000, 2, 29), "sex": "female"},
        {"patient_id": "b", "date_of_birth": D(1990, 5, 5), "sex": "male"},
        {"patient_id": "c", "date_of_birth": D(1995, 1, 1), "sex": "female"},
        {"patient_id": "d", "date_of_birth": D(1985, 1, 1), "sex": "male"},
    ],
    "addresses": [
        # a moves from quintile 1 to quintile 2 on 16 January
        {
            "patient_id": "a",
            "start_date": D(2010, 1, 1),
            "end_date": D(2025, 1, 15),
            "lsoa_code": L1,
        },
        {"patient_id": "a", "start_date": D(2025, 1, 16), "end_date": None, "lsoa_code": L2},
        {"patient_id": "b", "start_date": D(2010, 1, 1), "end_date": None, "lsoa_code": L2},
        {"patient_id": "d", "start_date": D(2010, 1, 1), "end_date": None, "lsoa_code": L1},
    ],  # c: no address (unknown)
    "areas": AREAS,
    "emergency_attendances": [
        # the first second of January, analgesia at exactly 30 minutes: met
        _att("a", S1, T(2025, 1, 1, 0, 0, 0), T(2025, 1, 1, 0, 30, 0)),
        # a second attendance in January, after the move, 30 min 1 s: not met
        _att("a", S2, T(2025, 1, 20, 10, 0, 0), T(2025, 1, 20, 10, 30, 1)),
        # the last second of January (analgesia in February): a January row, met
        _att("a", S1, T(2025, 1, 31, 23, 59, 59), T(2025, 2, 1, 0, 10, 0)),
        # the first second of February, no analgesia recorded: not met
        _att("b", S1, T(2025, 2, 1, 0, 0, 0), None),
        # analgesia recorded before arrival (a recording error): not met
        _att("b", S1, T(2025, 2, 14, 12, 0), T(2025, 2, 14, 11, 50)),
        # no site recorded, no address: the "unknown" groups
        _att("c", None, T(2025, 2, 28, 23, 0), T(2025, 2, 28, 23, 20)),
        # the last second of December: before the intervals
        _att("d", S1, T(2024, 12, 31, 23, 59, 59), T(2025, 1, 1, 0, 5)),
    ],
}


def _analgesia_row_measure() -> Measures:
    per_attendance = RowDataset(ea)
    att = per_attendance.row
    wait = minutes_between(att.arrival_datetime, att.first_analgesia_datetime)
    m = Measures(intervals=[*monthly("2025-01-01", 3), *quarterly("2025-01-01", 1)])
    m.define_row_measure(
        "analgesia_30",
        rows=per_attendance,
        numerator=(wait >= 0) & (wait <= 30),
        group_by={
            "site": att.provider,  # the row's own
            "imd_quintile": addresses.area_on(att.arrival_datetime).group("imd_quintile"),
        },
    )
    return m


def test_row_measure_per_attendance_by_site_and_area_on_its_day(engine, tmp_path):
    """Each attendance in the interval of its own arrival date, in the quintile of its
    patient's address that day: January (S1, 1) a's first 1/1, (S2, 2) a's second 0/1,
    (S1, 2) a's third 1/1; February (S1, 2) b's two 0/2, (unknown, unknown) c's 1/1; March
    nobody, no row; the quarter holds each January and February row again."""
    store = make_store(tmp_path, ATTENDANCES)
    result = run_measures(store, _analgesia_row_measure(), engine=engine, disclosure=False)
    assert result.attrs["evaluation"] == {"analgesia_30": "rows"}
    jan, feb = (D(2025, 1, 1), D(2025, 1, 31)), (D(2025, 2, 1), D(2025, 2, 28))
    q1 = (D(2025, 1, 1), D(2025, 3, 31))
    counts = {
        (*jan, S1, "1"): (1, 1),
        (*jan, S2, "2"): (0, 1),
        (*jan, S1, "2"): (1, 1),
        (*feb, S1, "2"): (0, 2),
        (*feb, "unknown", "unknown"): (1, 1),
        (*q1, S1, "1"): (1, 1),
        (*q1, S2, "2"): (0, 1),
        (*q1, S1, "2"): (1, 3),
        (*q1, "unknown", "unknown"): (1, 1),
    }
    want = {k: (x, n, *wilson(x, n)) for k, (x, n) in counts.items()}
    got = by_key(result, "interval_start", "interval_end", "site", "imd_quintile")
    assert_figures(got, want)
    assert set(result.method) == {"Wilson; rows counted as independent"}


def _many_attendances() -> dict[str, list[dict]]:
    """March 2025. Site 1: 10 attendances of 2 patients (5 each), 6 within 30 minutes.
    Site 2: 13 attendances of 13 patients, 11 within. Site 3: 20 of 20, 12 within."""
    rows, people = [], []

    def add(pid, site, k, met):
        people.append(pid)
        arrival = T(2025, 3, 1 + k % 28, 9)
        rows.append(_att(pid, site, arrival, arrival + dt.timedelta(minutes=10 if met else 50)))

    for k in range(10):
        add(f"s1_{k % 2}", S1, k, k < 6)
    for k in range(13):
        add(f"s2_{k}", S2, k, k < 11)
    for k in range(20):
        add(f"s3_{k}", "XS3", k, k < 12)
    return {
        "patients": [{"patient_id": p} for p in sorted(set(people))],
        "emergency_attendances": rows,
    }


def test_row_measure_disclosure_control(engine, tmp_path):
    """Site 1's 10 attendances are 2 patients': withheld ("few patients"), so at least one
    more site is withheld beside it; a released site has its counts rounded to 5 and its
    percentage and Wilson limits worked out from the rounded counts."""
    store = make_store(tmp_path, _many_attendances())
    per_attendance = RowDataset(ea)
    att = per_attendance.row
    wait = minutes_between(att.arrival_datetime, att.first_analgesia_datetime)
    m = Measures(intervals=monthly("2025-03-01", 1))
    m.define_row_measure(
        "analgesia_30",
        rows=per_attendance,
        numerator=(wait >= 0) & (wait <= 30),
        group_by={"site": att.provider},
    )
    exact = by_key(run_measures(store, m, engine=engine, disclosure=False), "site")
    assert {k: v[:2] for k, v in exact.items()} == {
        (S1,): (6, 10),
        (S2,): (11, 13),
        ("XS3",): (12, 20),
    }
    result = run_measures(store, m, engine=engine)
    released = by_key(result, "site")
    assert released[(S1,)][:3] == (None, None, None)
    assert "few patients" in result.set_index("site")["disclosure_note"][S1]
    withheld = [k for k, v in released.items() if v[1] is None]
    assert len(withheld) >= 2
    for key, (num, den, *rest) in released.items():
        if num is None or den is None:
            assert rest == [None] * 5
            continue
        assert (num, den) == (round5(exact[key][0]), round5(exact[key][1]))
        assert same(tuple(rest), wilson(num, den))


# -- 3. centiles over rows: by the site of each attendance and the patient's sex -------------


def _minutes_tables() -> dict[str, list[dict]]:
    """January 2025. Site 1, women: f1..f5 two attendances each, 30, 60 ... 300 minutes in
    the department. Site 2: f1 once more, 20 minutes (she counts at both sites); m1 once
    with no departure recorded. Site 1, men: m1 once, 45 minutes. December's and
    February's attendances are outside January."""
    rows = []
    for k in range(10):
        pid = f"f{k // 2 + 1}"
        rows.append(_att(pid, S1, T(2025, 1, 2 + k, 8), None, minutes=30 * (k + 1)))
    rows.append(_att("f1", S2, T(2025, 1, 31, 23, 50), None, minutes=20))
    rows.append(_att("m1", S2, T(2025, 1, 1, 0, 0), None, minutes=None))
    rows.append(_att("m1", S1, T(2025, 1, 15, 12), None, minutes=45))
    rows.append(_att("m1", S1, T(2024, 12, 31, 23, 59, 59), None, minutes=5))
    rows.append(_att("f2", S1, T(2025, 2, 1, 0, 0), None, minutes=1))
    people = [{"patient_id": f"f{k}", "sex": "female"} for k in range(1, 6)]
    people.append({"patient_id": "m1", "sex": "male"})
    return {"patients": people, "emergency_attendances": rows}


def _minutes_measures() -> Measures:
    att = ea.in_interval()
    m = Measures(intervals=monthly("2025-01-01", 1))
    m.define_quantile(
        "minutes_in_department",
        value=minutes_between(att.arrival_datetime, att.departure_datetime),
        rows=att,
        quantiles=(0.5, 0.9),
        group_by={"site": att.provider, "sex": patients.sex},
    )
    return m


def test_row_centiles_by_site_and_sex_by_hand(engine, tmp_path):
    """Site 1 women, 10 values 30..300: median (150 + 180)/2 = 165, 95% limits the 2nd and
    9th values (60, 270), 99.8% the 1st and 10th; 90th centile 270 + 0.1 × 30 = 273, too
    few values for its limits. Site 1 men: 45. Site 2 women: 20. Site 2 men: one row, no
    value: numerator 0 of 1, no centile."""
    store = make_store(tmp_path, _minutes_tables())
    result = run_measures(store, _minutes_measures(), engine=engine, disclosure=False)
    women = [30.0 * (k + 1) for k in range(10)]
    want = {
        (S1, "female", "median"): (10, 10, *centile(women, 0.5)),
        (S1, "female", "90th centile"): (10, 10, *centile(women, 0.9)),
        (S1, "male", "median"): (1, 1, 45.0, None, None, None, None),
        (S1, "male", "90th centile"): (1, 1, 45.0, None, None, None, None),
        (S2, "female", "median"): (1, 1, 20.0, None, None, None, None),
        (S2, "female", "90th centile"): (1, 1, 20.0, None, None, None, None),
        (S2, "male", "median"): (0, 1, None, None, None, None, None),
        (S2, "male", "90th centile"): (0, 1, None, None, None, None, None),
    }
    assert want[(S1, "female", "median")][2:] == (165.0, 60.0, 270.0, 30.0, 300.0)
    assert want[(S1, "female", "90th centile")][2:] == (273.0, None, None, None, None)
    assert_figures(by_key(result, "site", "sex", "statistic"), want)


def test_row_centile_disclosure_needs_three_patients_beyond(engine, tmp_path):
    """12 attendances of 10 patients: p1..p9 once (10..90 minutes), z three times (1000,
    1001, 1002). Median (60 + 70)/2 = 65: 5 rows of 5 patients below, 5 rows of 3 patients
    above -> released. 90th centile between the 10th and 11th values (1000.9): above it one
    row -> withheld. The median's 95% limits are the 3rd and 10th values (30, 1000): 2 rows
    below the 3rd -> withheld. Counts 12 -> 10."""
    rows = [_att(f"p{k}", S1, T(2025, 1, 1 + k, 9), None, minutes=10 * k) for k in range(1, 10)]
    rows += [_att("z", S1, T(2025, 1, 20 + k, 9), None, minutes=1000 + k) for k in range(3)]
    store = make_store(tmp_path, {"emergency_attendances": rows})
    att = ea.in_interval()
    m = Measures(intervals=monthly("2025-01-01", 1))
    m.define_quantile(
        "minutes_in_department",
        value=minutes_between(att.arrival_datetime, att.departure_datetime),
        rows=att,
        quantiles=(0.5, 0.9),
    )
    values = [10.0 * k for k in range(1, 10)] + [1000.0, 1001.0, 1002.0]
    exact = by_key(run_measures(store, m, engine=engine, disclosure=False), "statistic")
    assert exact[("median",)] == (12, 12, *centile(values, 0.5))
    assert exact[("median",)][2:5] == (65.0, 30.0, 1000.0)
    assert same(exact[("90th centile",)], (12, 12, *centile(values, 0.9)))
    released = by_key(run_measures(store, m, engine=engine), "statistic")
    assert released[("median",)] == (10, 10, 65.0, None, None, None, None)
    assert released[("90th centile",)] == (10, 10, None, None, None, None, None)


# -- 4. a rate per person-time: admissions per 1,000 care-home resident-days -----------------


def _care_home_tables() -> dict[str, list[dict]]:
    """January 2025 (31 days); everybody's care-home stay ends by 31 January.

    * r1: in a care home all January: 31 days; admitted on 1 and 31 January (the ends).
    * r2: care home from 2020 left open, but a flat from 11 January (later start wins):
      1-10 January, 10 days; admitted on 20 January, after leaving (still counted: the docs
      count a patient's interval events once they have person-time).
    * r3: care home from 21 January, dies on 25 January: 21-25, 5 days.
    * r4: two overlapping care-home rows (1-20 and 10-31 January): 31 days, counted once;
      admitted twice on 15 January.
    * r5: never in a care home, admitted: not in the rate.
    Events 2 + 1 + 0 + 2 = 5 in 31 + 10 + 5 + 31 = 77 resident-days.
    """

    def home(pid, start, end, care_home=True, lsoa=L1):
        return {
            "patient_id": pid,
            "start_date": start,
            "end_date": end,
            "lsoa_code": lsoa,
            "care_home": care_home,
        }

    def admitted(pid, day):
        return {"patient_id": pid, "admission_date": day, "discharge_date": day}

    return {
        "patients": [
            {"patient_id": "r1", "date_of_birth": D(1930, 1, 1)},
            {"patient_id": "r2", "date_of_birth": D(1932, 2, 29)},
            {"patient_id": "r3", "date_of_birth": D(1935, 1, 1), "date_of_death": D(2025, 1, 25)},
            {"patient_id": "r4", "date_of_birth": D(1931, 1, 1)},
            {"patient_id": "r5", "date_of_birth": D(1940, 1, 1)},
        ],
        "addresses": [
            home("r1", D(2024, 6, 1), D(2025, 1, 31)),
            home("r2", D(2020, 1, 1), None),
            home("r2", D(2025, 1, 11), None, care_home=False, lsoa=L2),
            home("r3", D(2025, 1, 21), None),
            home("r4", D(2024, 12, 1), D(2025, 1, 20)),
            home("r4", D(2025, 1, 10), D(2025, 1, 31), lsoa=L2),
            home("r5", D(2000, 1, 1), None, care_home=False),
        ],
        "admissions": [
            admitted("r1", D(2025, 1, 1)),
            admitted("r1", D(2025, 1, 31)),
            admitted("r2", D(2025, 1, 20)),
            admitted("r4", D(2025, 1, 15)),
            admitted("r4", D(2025, 1, 15)),
            admitted("r5", D(2025, 1, 15)),
            admitted("r1", D(2024, 12, 31)),  # December: outside January
        ],
        "areas": AREAS,
    }


def _care_home_rate() -> Measures:
    emergency = admissions.where(admissions.admission_method == "emergency")
    m = Measures(intervals=monthly("2025-01-01", 2))  # February: nobody resident, no row
    m.define_rate(
        "care_home_admissions",
        events=emergency.in_interval().count_for_patient(),
        person_time=addresses.where(addresses.care_home).days_in_interval_for_patient(
            until=patients.date_of_death
        ),
        per=1000,
        unit="days",
    )
    return m


def test_care_home_admissions_per_1000_resident_days_by_hand(engine, tmp_path):
    store = make_store(tmp_path, _care_home_tables())
    result = run_measures(store, _care_home_rate(), engine=engine, disclosure=False)
    want = {(D(2025, 1, 1), D(2025, 1, 31)): (5, 77, *poisson_rate(5, 77, 1000))}
    assert_figures(by_key(result, "interval_start", "interval_end"), want)
    assert list(result.statistic) == ["rate per 1,000 person-days"]
    # the events are 3 patients' and the days 4 patients': both withheld when released
    released = run_measures(store, _care_home_rate(), engine=engine)
    assert by_key(released, "interval_start") == {
        (D(2025, 1, 1),): (None, None, None, None, None, None, None)
    }


def test_care_home_rate_released_from_rounded_figures(engine, tmp_path):
    """Ten more residents all January (31 days, two admissions each, h0 three): 26 events of
    13 patients in 387 resident-days; released 25 events in 385 days, and the rate and its
    Byar limits worked out from those (docs/query.md, "Rates per person-time")."""
    tables = _care_home_tables()
    for k in range(10):
        tables["patients"].append({"patient_id": f"h{k}", "date_of_birth": D(1930, 1, 1)})
        tables["addresses"].append(
            {"patient_id": f"h{k}", "start_date": D(2024, 1, 1), "end_date": D(2025, 1, 31)}
            | {"lsoa_code": L1, "care_home": True}
        )
        days = [D(2025, 1, 2 + k), D(2025, 1, 20 + k)] + ([D(2025, 1, 30)] if k == 0 else [])
        tables["admissions"] += [{"patient_id": f"h{k}", "admission_date": d} for d in days]
    store = make_store(tmp_path, tables)
    jan = (D(2025, 1, 1),)
    exact = run_measures(store, _care_home_rate(), engine=engine, disclosure=False)
    assert by_key(exact, "interval_start") == {jan: (26, 387, *poisson_rate(26, 387, 1000))}
    released = by_key(run_measures(store, _care_home_rate(), engine=engine), "interval_start")
    assert set(released) == {jan}
    assert same(released[jan], (25, 385, *poisson_rate(25, 385, 1000)))


# -- findings: a row's hour of day, and the order of a result's rows -------------------------


def test_the_current_rows_hour_of_day(engine, tmp_path):
    """PROGRAMMES.md 9 stratifies door-to-analgesia by time of day: per attendance, by the
    hour of its arrival. The current row's frame method crashed with an internal
    AttributeError (found by this audit); it is refused now, naming the function that does
    it, hour_of_day(att.arrival_datetime)."""
    per_attendance = RowDataset(ea)
    att = per_attendance.row
    with pytest.raises(QueryError, match=r"use the function hour_of_day\(row\."):
        att.hour_of_day("arrival_datetime")
    hour = hour_of_day(att.arrival_datetime)
    store = make_store(tmp_path, ATTENDANCES)
    m = Measures(intervals=monthly("2025-01-01", 1))
    m.define_row_measure("overnight", rows=per_attendance, numerator=hour < 8)
    night = when(hour < 8).then("00-07").otherwise("08-23")
    m.define_row_measure(
        "by_time", rows=per_attendance, numerator=hour >= 0, group_by={"time": night}
    )
    result = run_measures(store, m, engine=engine, disclosure=False)
    overnight = result[result.measure == "overnight"]
    assert by_key(overnight, "interval_start", cols=["numerator", "denominator"]) == {
        (D(2025, 1, 1),): (1, 3)
    }
    by_time = result[result.measure == "by_time"]
    assert by_key(by_time, "time", cols=["numerator", "denominator"]) == {
        ("00-07",): (1, 1),
        ("08-23",): (2, 2),
    }


def test_result_rows_are_in_interval_order_run_after_run(tmp_path):
    rows = [
        {"patient_id": f"p{k}", "arrival_datetime": T(2025, 1 + k % 12, 10, 9)} for k in range(24)
    ]
    store = make_store(tmp_path, {"emergency_attendances": rows})
    per_attendance = RowDataset(ea)
    m = Measures(
        intervals=[
            *monthly("2025-01-01", 12),
            *quarterly("2025-01-01", 4),
            *yearly("2025-01-01", 1),
        ]
    )
    m.define_row_measure(
        "attendances", rows=per_attendance, numerator=per_attendance.row.provider.is_null()
    )
    first = run_measures(store, m, disclosure=False)
    for _ in range(3):
        again = run_measures(store, m, disclosure=False)
        keys = list(zip(again.interval_start, again.interval_end, strict=True))
        assert keys == sorted(keys)
        assert again.equals(first)


# -- the CLI ----------------------------------------------------------------------------------

DEFINITION = """
from pophealth.query import (
    Measures, RowDataset, addresses, admissions, index_date, minutes_between, monthly, patients,
    registrations,
)
from pophealth.query import emergency_attendances as ea

per_attendance = RowDataset(ea)
att = per_attendance.row
wait = minutes_between(att.arrival_datetime, att.first_analgesia_datetime)
measures = Measures(intervals=monthly("2025-01-01", 2))
measures.define_row_measure(
    "analgesia_30",
    rows=per_attendance,
    numerator=(wait >= 0) & (wait <= 30),
    group_by={
        "site": att.provider,
        "imd_quintile": addresses.area_on(att.arrival_datetime).group("imd_quintile"),
    },
)
rows = ea.in_interval()
measures.define_quantile(
    "wait", value=minutes_between(rows.arrival_datetime, rows.first_analgesia_datetime),
    rows=rows, quantiles=(0.5, 0.9), group_by={"site": rows.provider, "sex": patients.sex},
)
measures.define_standardised_rate(
    "admissions_dsr",
    events=admissions.in_interval().count_for_patient(),
    person_time=registrations.days_in_interval_for_patient(until=patients.date_of_death),
    group_by={"imd_quintile": addresses.area_on(index_date).group("imd_quintile")},
)
"""


def test_cli_writes_what_run_measures_gives(tmp_path):
    """`pophealth measures FILE` with --no-disclosure and with the default: the same figures
    as run_measures, row for row (compared by key, not by order)."""
    store = make_store(tmp_path, ATTENDANCES)
    path = tmp_path / "audit.py"
    path.write_text(DEFINITION)
    namespace: dict[str, Any] = {}
    exec(compile(DEFINITION, str(path), "exec"), namespace)
    keys = ["measure", "interval_start", "site", "imd_quintile", "sex", "statistic"]
    for flag, disclosure in (("--no-disclosure", False), ("--disclosure", True)):
        out = tmp_path / f"m{disclosure}.csv"
        run = CliRunner().invoke(
            app, ["measures", str(path), "--store", str(store.path), "--output", str(out), flag]
        )
        assert run.exit_code == 0, run.output
        written = pd.read_csv(out, dtype={"imd_quintile": str, "site": str})
        written["interval_start"] = pd.to_datetime(written["interval_start"]).dt.date
        direct = run_measures(store, namespace["measures"], disclosure=disclosure)
        assert len(written) == len(direct) > 0
        got, want = by_key(written, *keys), by_key(direct, *keys)
        assert set(got) == set(want)
        for k in want:
            assert same(tuple(map(float_or_none, got[k])), tuple(map(float_or_none, want[k])))


def float_or_none(v: Any) -> float | None:
    return None if _none(v) is None else float(v)


# -- the larger cross-check: a synthetic store against pandas on its Parquet files -----------


SYNTH_PATIENTS = 5000
DSR_INTERVALS = [*yearly("2024-04-01", 2), *monthly("2025-01-01", 3)]
MONTHS = monthly("2025-01-01", 3)
WOUND = "urn:pophealth:synthetic:caesarean-wound-30d"
GROUP_COLS = ["imd_quintile", "urgency", "site", "sex"]


def _store_measures() -> Measures:
    """The four kinds as an analyst writes them for the synthetic region."""
    from pophealth.query import codelist, days, operations
    from pophealth.query import questionnaire_responses as qr

    emergency = admissions.where(admissions.admission_method == "emergency")
    events = emergency.in_interval().count_for_patient()
    among = registrations.registered_on(index_date) & patients.is_alive_on(index_date)
    imd = {"imd_quintile": addresses.area_on(index_date).group("imd_quintile")}
    m = Measures(intervals=DSR_INTERVALS)
    m.define_standardised_rate("dsr", events=events, among=among, group_by=imd)
    m.define_standardised_rate("dsr_65", events=events, among=among, min_age=65, group_by=imd)
    m.define_standardised_rate(
        "dsr_person_time",
        events=events,
        person_time=registrations.days_in_interval_for_patient(until=patients.date_of_death),
        group_by=imd,
    )
    per_cs = RowDataset(operations.matching(codelist("caesarean_opcs4")))
    cs = per_cs.row
    wound = qr.where(qr.questionnaire == WOUND)
    answered = wound.on_or_after(cs.start_datetime).on_or_before(cs.start_datetime + days(30))
    m.define_row_measure(
        "wound_30d",
        rows=per_cs,
        numerator=answered.exists_for_patient(),
        group_by={
            "urgency": cs.urgency,
            "imd_quintile": addresses.area_on(cs.start_datetime).group("imd_quintile"),
        },
        intervals=monthly("2024-04-01", 24),
    )
    per_att = RowDataset(ea)
    a = per_att.row
    stay = minutes_between(a.arrival_datetime, a.departure_datetime)
    m.define_row_measure(
        "ed_4h",
        rows=per_att,
        numerator=(stay >= 0) & (stay <= 240),
        group_by={
            "site": a.provider,
            "imd_quintile": addresses.area_on(a.arrival_datetime).group("imd_quintile"),
        },
        intervals=MONTHS,
    )
    att = ea.in_interval()
    m.define_quantile(
        "ed_minutes",
        value=minutes_between(att.arrival_datetime, att.departure_datetime),
        rows=att,
        quantiles=(0.5, 0.9),
        group_by={"site": att.provider, "sex": patients.sex},
        intervals=MONTHS,
    )
    m.define_rate(
        "care_home_admissions",
        events=events,
        person_time=addresses.where(addresses.care_home).days_in_interval_for_patient(
            until=patients.date_of_death
        ),
        per=1000,
        unit="days",
        intervals=MONTHS,
    )
    return m


def _area_of_rows(rows: pd.DataFrame, day: str, tables: dict) -> pd.Series:
    """The IMD quintile label of each row's patient's address on the row's ``day``: of the
    addresses holding that day, the latest start (then the LSOA code) wins."""
    r = rows[["patient_id", day]].reset_index().rename(columns={"index": "_row"})
    j = r.merge(tables["addresses"], on="patient_id")
    j = j[(j.start_date <= j[day]) & (j.end_date.isna() | (j.end_date >= j[day]))]
    j = j.sort_values(["_row", "start_date", "lsoa_code"]).groupby("_row").tail(1)
    j = j.merge(tables["areas"][["lsoa_code", "imd_quintile"]], on="lsoa_code", how="left")
    label = dict(zip(j._row, j.imd_quintile, strict=True))
    return pd.Series(
        ["unknown" if pd.isna(label.get(i, np.nan)) else str(int(label[i])) for i in rows.index],
        index=rows.index,
    )


def _union_days(periods: pd.DataFrame, start, end, death: pd.Series) -> pd.Series:
    """Days per patient in [start, end] held by the union of their periods, to death."""
    first, last = pd.Timestamp(start), pd.Timestamp(end)
    s = pd.to_datetime(periods.start_date).clip(lower=first)
    e = pd.to_datetime(periods.end_date).fillna(last).clip(upper=last)
    until = pd.to_datetime(periods.patient_id.map(death))
    e = e.where(until.isna() | (e < until), until)
    p = pd.DataFrame({"patient_id": periods.patient_id, "s": s, "e": e})
    p = p[p.e >= p.s].sort_values(["patient_id", "s"])
    before = p.groupby("patient_id").e.cummax().groupby(p.patient_id).shift()
    block = (before.isna() | (p.s > before)).cumsum()
    merged = p.groupby(["patient_id", block]).agg(s=("s", "min"), e=("e", "max"))
    merged["days"] = (merged.e - merged.s).dt.days + 1
    return merged.groupby(level="patient_id").days.sum()


#: each standardised rate's bands' counts rounded cumulatively as released counts are, and
#: its bands, by result key (filled by :func:`_expected`): what a released rate is worked from
DSR_BANDS_ROUNDED: dict[tuple, tuple] = {}


def _expected(tables: dict) -> dict[tuple, tuple]:
    """Every figure of _store_measures without disclosure control, from the Parquet files."""
    want: dict[tuple, tuple] = {}
    pts = tables["patients"].set_index("patient_id")
    dob, death = pts.date_of_birth, pts.date_of_death.dropna()
    adm = tables["admissions"]
    emergency = adm[adm.admission_method == "emergency"]
    regs = tables["registrations"]
    frame = pd.DataFrame({"patient_id": pts.index})
    for start, end in DSR_INTERVALS:
        ev = emergency[(emergency.admission_date >= start) & (emergency.admission_date <= end)]
        events = ev.groupby("patient_id").size()
        on = regs[(regs.start_date <= end) & (regs.end_date.isna() | (regs.end_date >= end))]
        alive = (pts.date_of_birth <= end) & ~(pts.date_of_death <= end)
        people = {
            "dsr": pd.Series(1, index=sorted(set(on.patient_id) & set(pts.index[alive]))),
            "dsr_person_time": _union_days(regs, start, end, death),
        }
        people["dsr_65"] = people["dsr"]
        ends = frame.assign(day=end)
        area = dict(zip(frame.patient_id, _area_of_rows(ends, "day", tables), strict=True))
        for name, min_age in (("dsr", 0), ("dsr_65", 65), ("dsr_person_time", 0)):
            pop = people[name]
            d = pd.DataFrame({"patient_id": pop.index, "n": pop.values})
            birth = d.patient_id.map(dob)
            d["age"] = [
                end.year - b.year - ((end.month, end.day) < (b.month, b.day)) for b in birth
            ]
            d = d[d.age >= min_age]
            d["band"] = (d.age // 5).clip(upper=18)
            d["x"] = d.patient_id.map(events).fillna(0)
            d["group"] = d.patient_id.map(area)
            bands = list(range(min_age // 5, 19))
            for group, g in d.groupby("group"):
                x = g.groupby("band").x.sum().reindex(bands, fill_value=0)
                n = g.groupby("band").n.sum().reindex(bands, fill_value=0)
                scale = 365.25 if name == "dsr_person_time" else 1
                rate = dobson_dsr(list(x), list(n / scale), [ESP2013[b] for b in bands], 100_000)
                key = (name, start, end, group, None, None, None, None)
                want[key] = (int(x.sum()), int(n.sum()), *rate)

                # released: from the bands' counts rounded to 5 cumulatively, youngest first
                # (each band the rounded sum up to it less the rounded sum before it; a band
                # with someone keeps 5), the limits from the released count of events
                # (docs/query.md)
                x_r = cumulative_round5(list(x))
                n_r = [
                    max(r, 5) if v else 0
                    for r, v in zip(cumulative_round5(list(n)), n, strict=True)
                ]
                DSR_BANDS_ROUNDED[key] = (x_r, [v / scale for v in n_r], bands)
    # the caesareans: answered within 30 days of each (by day), per month of the operation
    ops = tables["operations"]
    ops = ops[ops.code.isin(["R171", "R172", "R178", "R179", "R181", "R182", "R188", "R189"])]
    ops = ops.assign(day=ops.start_datetime.dt.date)
    ops["imd"] = _area_of_rows(ops, "day", tables)
    qr = tables["questionnaire_responses"]
    qr = qr[(qr.questionnaire == WOUND) & qr.authored.notna()]
    answers = qr.assign(day=qr.authored.dt.date).groupby("patient_id").day.apply(list)
    ops["answered"] = [
        any(d <= a <= d + dt.timedelta(days=30) for a in answers.get(p, []))
        for p, d in zip(ops.patient_id, ops.day, strict=True)
    ]
    for start, end in monthly("2024-04-01", 24):
        inside = ops[(ops.day >= start) & (ops.day <= end)]
        for (urgency, imd), g in inside.groupby(["urgency", "imd"], dropna=False):
            x, n = int(g.answered.sum()), len(g)
            key = ("wound_30d", start, end, imd, _none(urgency), None, None, None)
            want[key] = (x, n, *wilson(x, n))
    # the attendances: time in the department to the second, per month of arrival
    att = tables["emergency_attendances"]
    att = att.assign(day=att.arrival_datetime.dt.date)
    att["minutes"] = (att.departure_datetime - att.arrival_datetime).dt.total_seconds() / 60
    att["imd"] = _area_of_rows(att, "day", tables)
    att["sex"] = att.patient_id.map(pts.sex)
    att["site"] = att.provider.fillna("unknown")
    for start, end in MONTHS:
        inside = att[(att.day >= start) & (att.day <= end)]
        for (site, imd), g in inside.groupby(["site", "imd"]):
            x, n = int(((g.minutes >= 0) & (g.minutes <= 240)).sum()), len(g)
            want[("ed_4h", start, end, imd, None, site, None, None)] = (x, n, *wilson(x, n))
        for (site, sex), g in inside.groupby(["site", "sex"]):
            values = g.minutes.dropna()
            for q, stat in ((0.5, "median"), (0.9, "90th centile")):
                figures = centile(values, q) if len(values) else (None,) * 5
                key = ("ed_minutes", start, end, None, None, site, sex, stat)
                want[key] = (len(values), len(g), *figures)
    # care-home resident-days: each day, the address of the latest start is a care home
    homes = tables["addresses"]
    homes = homes[homes.patient_id.isin(homes.patient_id[homes.care_home])]
    for start, end in MONTHS:
        ev = emergency[(emergency.admission_date >= start) & (emergency.admission_date <= end)]
        events = ev.groupby("patient_id").size()
        days = pd.DataFrame({"day": pd.date_range(start, end).date})
        j = homes.merge(days, how="cross")
        j = j[(j.start_date <= j.day) & (j.end_date.isna() | (j.end_date >= j.day))]
        j = j[~(j.patient_id.map(death) < j.day)]
        j = j.sort_values(["patient_id", "day", "start_date", "lsoa_code"])
        top = j.groupby(["patient_id", "day"]).tail(1)
        resident = top[top.care_home].groupby("patient_id").size()
        x = int(events.reindex(resident.index, fill_value=0).sum())
        n = int(resident.sum())
        want[("care_home_admissions", start, end, None, None, None, None, None)] = (
            x,
            n,
            *poisson_rate(x, n, 1000),
        )
    return want


def _keyed(result: pd.DataFrame) -> dict[tuple, tuple]:
    rows = result.copy()
    rows["statistic"] = rows.statistic.where(rows.measure == "ed_minutes", None)
    keys = ["measure", "interval_start", "interval_end", *GROUP_COLS, "statistic"]
    return by_key(rows, *keys)


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_SPARK, reason="pyspark not installed")
def test_synthetic_store_against_pandas_on_both_engines(tmp_path):
    """A 5,000-patient synthetic store (the README's synth API): every figure of every
    measure above against pandas on the store's Parquet files, DuckDB and Spark equal row
    for row, and the released figures against the disclosure rule."""
    from pophealth.synth import write_synthetic_store

    store = write_synthetic_store(tmp_path / "store", patients=SYNTH_PATIENTS, seed=42)
    names = ["patients", "registrations", "addresses", "admissions", "areas", "operations"]
    names += ["emergency_attendances", "questionnaire_responses"]
    tables = {n: pd.read_parquet(store.table_path(n)) for n in names}
    for t in tables.values():  # dates as datetime.date, as the query results give them
        for c in t.columns:
            if c.endswith("date") or c in ("date_of_birth", "date_of_death"):
                t[c] = t[c].map(lambda v: None if pd.isna(v) else pd.Timestamp(v).date())
    want = _expected(tables)
    m = _store_measures()
    results = {
        (engine, disclosure): run_measures(store, m, engine=engine, disclosure=disclosure)
        for engine in ("duckdb", "spark")
        for disclosure in (False, True)
    }
    for disclosure in (False, True):
        duck, spark = (results[(e, disclosure)] for e in ("duckdb", "spark"))
        order = ["measure", "interval_start", "interval_end", *GROUP_COLS, "statistic"]
        duck = duck.sort_values(order, na_position="first").reset_index(drop=True)
        spark = spark.sort_values(order, na_position="first").reset_index(drop=True)
        pd.testing.assert_frame_equal(duck, spark, check_exact=True)
    exact = _keyed(results[("duckdb", False)])
    assert_figures(exact, want)
    released = _keyed(results[("duckdb", True)])
    assert set(released) == set(exact)
    recomputed = {"wound_30d": wilson, "ed_4h": wilson}
    for key, (num, den, *rest) in released.items():
        true_num, true_den, *true_rest = exact[key]
        for got, true in ((num, true_num), (den, true_den)):
            assert got is None or (got == round5(true) and not 1 <= true <= 7), key
        if num is None or (den is None and key[0] != "ed_minutes"):
            assert rest == [None] * 5, key
        elif key[0] in recomputed:
            assert same(tuple(rest), recomputed[key[0]](num, den)), key
        elif key[0] == "care_home_admissions":
            assert same(tuple(rest), poisson_rate(num, den, 1000)), key
        elif key[0].startswith("dsr"):  # from the bands' counts rounded, limits from num
            x_r, n_r, bands = DSR_BANDS_ROUNDED[key]
            weights = [ESP2013[b] for b in bands]
            # (shown or not as those rounded counts have 10 events or more, not the exact)
            assert same(tuple(rest), dobson_dsr(x_r, n_r, weights, 1e5, released=num)), key
        else:  # a centile is released to its values' precision, or withheld near its
            # group's extremes
            assert all(
                g is None or same((g,), (w,)) or rounded_from(g, w)
                for g, w in zip(rest, true_rest, strict=True)
            ), key
    # no lone withheld quintile in an interval of a standardised rate (one breakdown)
    for name in ("dsr", "dsr_65", "dsr_person_time"):
        for start, end in DSR_INTERVALS:
            line = [v for k, v in released.items() if k[:3] == (name, start, end)]
            assert sum(v[0] is None for v in line) != 1, (name, start)
            assert sum(v[1] is None for v in line) != 1, (name, start)
    assert sum(v[0] is not None for k, v in released.items() if k[0] == "dsr") > 10
