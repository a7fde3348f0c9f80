"""A plain-Python oracle for measures, written from docs/query.md (sections 2 and 4) and the
docstrings of ``Measures`` and the interval helpers alone — not from the engine's code — so
that a bug shared by the engine's evaluation paths (masks, change points, paired, Spark) is
caught. Slow on purpose: each patient, interval and day is looked at in a loop.

Tables are lists of dicts, as given to :func:`tests.spec.conftest.make_store`.
"""

from __future__ import annotations

import calendar
import datetime as dt
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from scipy.stats import chi2, norm

D = dt.date
ONE = dt.timedelta(days=1)
Interval = tuple[dt.date, dt.date]

# -- dates (docs/query.md section 2, "Windows") ----------------------------------------------


def add_months(d: dt.date, n: int) -> dt.date:
    """``d`` moved by ``n`` whole months; a day the month does not have becomes its last day
    ("on 29 February 2024 the last 12 months start after 28 February 2023")."""
    y, m = divmod(d.month - 1 + n, 12)
    year, month = d.year + y, m + 1
    return D(year, month, min(d.day, calendar.monthrange(year, month)[1]))


def in_last_months(day: dt.date, end: dt.date, months: int) -> bool:
    """``in_last(months=n)`` relative to ``end``: (end − n months, end]."""
    return add_months(end, -months) < day <= end


def in_last_days(day: dt.date, end: dt.date, days: int) -> bool:
    """``in_last(days=n)``: (end − n days, end]."""
    return end - dt.timedelta(days=days) < day <= end


def days_of(start: dt.date, end: dt.date | None, lo: dt.date, hi: dt.date) -> set[dt.date]:
    """The days of the period [start, end] (an open end runs on) inside [lo, hi]."""
    first, last = max(start, lo), hi if end is None else min(end, hi)
    out = set()
    d = first
    while d <= last:
        out.add(d)
        d += ONE
    return out


def each_day(lo: dt.date, hi: dt.date) -> Iterable[dt.date]:
    d = lo
    while d <= hi:
        yield d
        d += ONE


# -- the store --------------------------------------------------------------------------------


@dataclass
class Oracle:
    """The tables of a small store, and the documented per-patient values over them."""

    tables: dict[str, list[dict[str, Any]]]
    patients: dict[str, dict[str, Any]] = field(init=False)

    def __post_init__(self) -> None:
        self.patients = {p["patient_id"]: p for p in self.tables.get("patients", [])}

    def rows(self, table: str, pid: str) -> list[dict[str, Any]]:
        return [r for r in self.tables.get(table, []) if r["patient_id"] == pid]

    # demographics (tables.py docstrings; docs section 2 "Demographics on a date")

    def age_on(self, pid: str, d: dt.date) -> int:
        """Whole years; a 29 February birthday turns over on 1 March in a common year."""
        dob = self.patients[pid]["date_of_birth"]
        return d.year - dob.year - ((d.month, d.day) < (dob.month, dob.day))

    def alive_on(self, pid: str, d: dt.date) -> bool:
        """Born on or before ``d`` and not recorded as dead on or before it."""
        p = self.patients[pid]
        dod = p.get("date_of_death")
        return p["date_of_birth"] <= d and (dod is None or dod > d)

    def registered_on(self, pid: str, d: dt.date) -> bool:
        return any(
            r["start_date"] <= d and (r.get("end_date") is None or r["end_date"] >= d)
            for r in self.rows("registrations", pid)
        )

    def practice_on(self, pid: str, d: dt.date) -> str | None:
        """The registration on ``d`` with the latest start; ties: the alphabetically last
        practice code. None when not registered."""
        active = [
            r
            for r in self.rows("registrations", pid)
            if r["start_date"] <= d and (r.get("end_date") is None or r["end_date"] >= d)
        ]
        if not active:
            return None
        return max(active, key=lambda r: (r["start_date"], r["practice_id"]))["practice_id"]

    def address_on(self, pid: str, d: dt.date) -> dict[str, Any] | None:
        """The addresses overlap rule: of those active on ``d``, the latest start wins; ties
        by the LSOA code, the alphabetically last winning (an ungeocoded address loses a tie
        to a geocoded one)."""
        active = [
            r
            for r in self.rows("addresses", pid)
            if r["start_date"] <= d and (r.get("end_date") is None or r["end_date"] >= d)
        ]
        if not active:
            return None
        return max(
            active,
            key=lambda r: (
                r["start_date"],
                r.get("lsoa_code") is not None,
                r.get("lsoa_code") or "",
            ),
        )

    # periods: the days a frame holds (docs section 2 "Rows during periods", section 4
    # "Person-time")

    def registration_days(self, pid: str, lo: dt.date, hi: dt.date) -> set[dt.date]:
        out: set[dt.date] = set()
        for r in self.rows("registrations", pid):
            out |= days_of(r["start_date"], r.get("end_date"), lo, hi)
        return out

    def admission_days(self, pid: str, lo: dt.date, hi: dt.date) -> set[dt.date]:
        out: set[dt.date] = set()
        for r in self.rows("admissions", pid):
            out |= days_of(r["admission_date"], r.get("discharge_date"), lo, hi)
        return out

    def care_home_days(self, pid: str, lo: dt.date, hi: dt.date) -> set[dt.date]:
        """The days whose address by the overlap rule is a care-home row."""
        out = set()
        for d in each_day(lo, hi):
            a = self.address_on(pid, d)
            if a is not None and a["care_home"]:
                out.add(d)
        return out

    def until(self, days: set[dt.date], pid: str) -> set[dt.date]:
        """``until=patients.date_of_death``: no day after it counts, its own day does."""
        dod = self.patients[pid].get("date_of_death")
        return days if dod is None else {d for d in days if d <= dod}

    def events(self, pid: str, code: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.rows("events", pid) if code is None or r["code"] == code]

    def admissions(self, pid: str) -> list[dict[str, Any]]:
        return self.rows("admissions", pid)


# -- a measure, counted -------------------------------------------------------------------------


@dataclass
class Spec:
    """A measure for the oracle: ``kind`` one of proportion (True/False over True/False),
    per_patient (a count over True/False: events per patient), rows (a count of rows over
    a count of the rows they are picked from), ratio (other counts: no limits), rate (per
    person-time), dsr (age-standardised).

    ``values(o, pid, start, end)`` gives the patient's (numerator, denominator) for the
    interval — for a rate (events, person-days, among), for a dsr (events, person-days or
    None, among, age) — and ``groups(o, pid, start, end)`` the breakdown labels (a tuple)."""

    name: str
    kind: str
    values: Callable[[Oracle, str, dt.date, dt.date], tuple]
    groups: Callable[[Oracle, str, dt.date, dt.date], tuple] = lambda o, p, s, e: ()
    per: float = 100
    unit: str = "years"
    min_age: int = 0
    max_age: int | None = None


#: European Standard Population 2013, 5-year bands 0-4 ... 85-89, 90+ (Eurostat, "Revision of
#: the European Standard Population", 2013 edition, table 2.1; total 100,000)
ESP2013 = [
    5000, 5500, 5500, 5500, 6000, 6000, 6500, 7000, 7000, 7000,
    7000, 6500, 6000, 5500, 5000, 4000, 2500, 1500, 1000,
]  # fmt: skip
DAYS_PER_YEAR = 365.25


@dataclass
class Cell:
    numerator: float
    denominator: float
    value: float | None
    limits: dict[str, float | None] = field(default_factory=dict)


def count(o: Oracle, spec: Spec, intervals: Sequence[Interval]) -> dict[tuple, Cell]:
    """{(measure, start, end, groups...): Cell} as the docs say the result holds, with
    disclosure control off."""
    out: dict[tuple, Cell] = {}
    pids = sorted(o.patients)
    for s, e in intervals:
        cells: dict[tuple, list] = {}
        for pid in pids:
            # a patient without a value for a breakdown is in an explicit "unknown" group: the
            # docs say so of an area (.group) and of a row measure's per-row values; for other
            # per-patient values (a practice on a day not registered) it is what the engine
            # does, and the docs do not say (reported as a gap, not a disagreement)
            g = tuple("unknown" if x is None else x for x in spec.groups(o, pid, s, e))
            v = spec.values(o, pid, s, e)
            if spec.kind == "proportion":
                num, den = v
                if not den:
                    continue
                c = cells.setdefault(g, [0, 0])
                c[0] += bool(num)
                c[1] += 1
            elif spec.kind == "per_patient":
                num, den = v
                if not den:
                    continue
                c = cells.setdefault(g, [0, 0])
                c[0] += num
                c[1] += 1
            elif spec.kind in ("rows", "ratio"):  # a row for each group with patients, 0 of 0 too
                num, den = v
                c = cells.setdefault(g, [0, 0])
                c[0] += num
                c[1] += den
            elif spec.kind == "rate":
                events, days, among = v
                if not (among and days > 0):
                    continue
                c = cells.setdefault(g, [0, 0])
                c[0] += events
                c[1] += days
            elif spec.kind == "dsr":
                events, days, among, age = v
                band = _band(age, spec)
                if band is None or not among or (days is not None and days <= 0):
                    continue
                c = cells.setdefault(g, [0, 0, {}])
                c[0] += events
                c[1] += 1 if days is None else days
                x, n = c[2].get(band, (0, 0))
                c[2][band] = (x + events, n + (1 if days is None else days))
            else:
                raise ValueError(spec.kind)
        for g, c in cells.items():
            out[(spec.name, s, e, *g)] = _cell(spec, c)
    return out


def _band(age: int, spec: Spec) -> int | None:
    """The ESP 2013 band index of ``age`` in the rate, or None (younger than min_age, older
    than max_age)."""
    if age < spec.min_age or (spec.max_age is not None and age > spec.max_age):
        return None
    return min(age // 5, 18)


def _cell(spec: Spec, c: list) -> Cell:
    num, den = c[0], c[1]
    if spec.kind in ("proportion", "rows"):
        value = None if den == 0 else 100 * num / den
        limits = wilson_limits(num, den, 100) if den else {}
        return Cell(num, den, value, limits)
    if spec.kind == "ratio":  # other ratios carry no limits
        return Cell(num, den, None if den == 0 else 100 * num / den)
    if spec.kind == "per_patient":
        return Cell(num, den, 100 * num / den, poisson_limits(num, den, 100))
    if spec.kind == "rate":
        scale = spec.per * (DAYS_PER_YEAR if spec.unit == "years" else 1)
        return Cell(num, den, num / den * scale, poisson_limits(num, den, scale))
    # dsr: Σ(x/n × w)/Σw × per over the bands of the rate; missing under 10 events or
    # with an empty band
    bands = range(spec.min_age // 5, 19 if spec.max_age is None else (spec.max_age + 1) // 5)
    scale = spec.per * (DAYS_PER_YEAR if spec.unit == "years" else 1)
    if num < 10 or any(c[2].get(b, (0, 0))[1] == 0 for b in bands):
        return Cell(num, den, None)
    xs = [c[2][b][0] for b in bands]
    ns = [c[2][b][1] for b in bands]
    ws = [ESP2013[b] for b in bands]
    value, limits = dobson(xs, ns, ws, scale)
    return Cell(num, den, value, limits)


# -- confidence limits, from the published formulas --------------------------------------------

LEVELS = {"95_0": 0.95, "99_8": 0.998}


def wilson_limits(x: int, n: int, multiplier: float) -> dict[str, float]:
    """Wilson's score interval (Wilson EB. Probable inference, the law of succession, and
    statistical inference. JASA 1927;22:209–12; Newcombe RG. Two-sided confidence intervals
    for the single proportion. Stat Med 1998;17:857–72, method 3):
    (2np + z² ± z√(z² + 4np(1 − p))) / (2(n + z²))."""
    out = {}
    p = x / n
    for tag, level in LEVELS.items():
        z = norm.ppf(1 - (1 - level) / 2)
        centre, half = 2 * n * p + z * z, z * math.sqrt(z * z + 4 * n * p * (1 - p))
        out[f"lower{tag}cl"] = (centre - half) / (2 * (n + z * z)) * multiplier
        out[f"upper{tag}cl"] = (centre + half) / (2 * (n + z * z)) * multiplier
    return out


def poisson_count_limits(x: int, level: float) -> tuple[float, float]:
    """Limits on a Poisson count: exact (Garwood F. Fiducial limits for the Poisson
    distribution. Biometrika 1936;28:437–42: χ²(α/2; 2x)/2 to χ²(1 − α/2; 2x + 2)/2) below 10;
    Byar's approximation from 10 (Breslow NE, Day NE. Statistical Methods in Cancer Research
    vol II, IARC 1987, p. 69: x(1 − 1/(9x) − z/(3√x))³ to (x + 1)(1 − 1/(9(x + 1)) +
    z/(3√(x + 1)))³)."""
    a = 1 - level
    if x < 10:
        lo = 0.0 if x == 0 else chi2.ppf(a / 2, 2 * x) / 2
        return lo, chi2.ppf(1 - a / 2, 2 * x + 2) / 2
    z = norm.ppf(1 - a / 2)
    lo = x * (1 - 1 / (9 * x) - z / (3 * math.sqrt(x))) ** 3
    hi = (x + 1) * (1 - 1 / (9 * (x + 1)) + z / (3 * math.sqrt(x + 1))) ** 3
    return lo, hi


def poisson_limits(x: int, n: float, scale: float) -> dict[str, float]:
    out = {}
    for tag, level in LEVELS.items():
        lo, hi = poisson_count_limits(x, level)
        out[f"lower{tag}cl"] = lo / n * scale
        out[f"upper{tag}cl"] = hi / n * scale
    return out


def dobson(
    xs: list[int], ns: list[float], ws: list[float], scale: float
) -> tuple[float, dict[str, float]]:
    """Directly standardised rate with Dobson's limits (Dobson AJ, Kuulasmaa K, Eberle E,
    Scherer J. Confidence intervals for weighted sums of Poisson parameters. Stat Med
    1991;10:457–62): DSR = Σ wᵢxᵢ/nᵢ / Σw; V = Σ (wᵢ/nᵢ)² xᵢ / (Σw)²; limits DSR +
    √(V/O)(O_lim − O), O = Σx and O_lim Byar's limits on O (10 or more events)."""
    total_w = sum(ws)
    dsr = sum(w * x / n for x, n, w in zip(xs, ns, ws, strict=True)) / total_w
    var = sum((w / n) ** 2 * x for x, n, w in zip(xs, ns, ws, strict=True)) / total_w**2
    o = sum(xs)
    limits = {}
    for tag, level in LEVELS.items():
        lo, hi = poisson_count_limits(o, level)
        limits[f"lower{tag}cl"] = (dsr + math.sqrt(var / o) * (lo - o)) * scale
        limits[f"upper{tag}cl"] = (dsr + math.sqrt(var / o) * (hi - o)) * scale
    return dsr * scale, limits


# -- centiles (docs/query.md "Medians and centiles"; docs/statistics.md "Centiles") --------------


def hyndman_fan_7(values: list[float], q: float) -> float:
    """Hyndman & Fan's definition 7 (Am Stat 1996;50:361-5): of the sorted values, the one at
    rank h = (n − 1)q + 1, by straight-line interpolation between ranks ⌊h⌋ and ⌈h⌉."""
    x = sorted(values)
    h = (len(x) - 1) * q + 1
    lo = math.floor(h)
    hi = min(lo + 1, len(x))
    return x[lo - 1] + (h - lo) * (x[hi - 1] - x[lo - 1])


def binomial_ranks(n: int, q: float, level: float) -> tuple[int, int] | None:
    """Campbell & Gardner's exact ranks (BMJ 1988;296:1454-6): B ~ Binomial(n, q); r the
    largest with P(B ≤ r − 1) ≤ α/2, s the smallest with P(B ≤ s − 1) ≥ 1 − α/2; None when
    r < 1 or s > n (too few values)."""
    a = (1 - level) / 2
    cdf, total = [], 0.0
    for k in range(n + 1):
        total += math.comb(n, k) * q**k * (1 - q) ** (n - k)
        cdf.append(total)
    r = max((r for r in range(1, n + 1) if cdf[r - 1] <= a), default=0)
    s = min((s for s in range(1, n + 1) if cdf[s - 1] >= 1 - a), default=n + 1)
    return None if r < 1 or s > n else (r, s)


def centile_cells(
    o: Oracle,
    name: str,
    value: Callable[[Oracle, str, dt.date, dt.date], float | None],
    among: Callable[[Oracle, str, dt.date, dt.date], bool],
    groups: Callable[[Oracle, str, dt.date, dt.date], tuple],
    quantiles: Sequence[float],
    intervals: Sequence[Interval],
) -> dict[tuple, Cell]:
    """{(measure, start, end, groups..., q): Cell}: the patients with a value as the
    numerator, all the patients among as the denominator, a row per interval and group with
    someone among. Over rows (``value`` gives a list: a value per row of the patient) the
    rows with a value and all the rows of the patients among."""
    out = {}
    over_rows = False
    for s, e in intervals:
        cells: dict[tuple, list] = {}
        for pid in sorted(o.patients):
            if not among(o, pid, s, e):
                continue
            g = tuple("unknown" if x is None else x for x in groups(o, pid, s, e))
            c = cells.setdefault(g, [[], 0])
            v = value(o, pid, s, e)
            over_rows = isinstance(v, list)
            if over_rows:  # a value per row, each row counted
                c[1] += len(v)
                c[0].extend(x for x in v if x is not None)
                continue
            c[1] += 1
            if v is not None:
                c[0].append(v)
        for g, (values, den) in cells.items():
            if over_rows and den == 0:  # over rows: a group with no rows has no row (the
                continue  # docs do not say; the engine's reading, as for a row measure)
            for q in quantiles:
                limits: dict[str, float | None] = {}
                for tag, level in LEVELS.items():
                    ranks = binomial_ranks(len(values), q, level) if values else None
                    x = sorted(values)
                    limits[f"lower{tag}cl"] = None if ranks is None else x[ranks[0] - 1]
                    limits[f"upper{tag}cl"] = None if ranks is None else x[ranks[1] - 1]
                v = hyndman_fan_7(values, q) if values else None
                out[(name, s, e, *g, q)] = Cell(len(values), den, v, limits)
    return out
