"""An independent oracle for the per-patient query vocabulary (audit 23).

Written from the documented behaviour only — docs/query.md sections 0-3 and the docstrings
of ``pophealth.query`` (``model.py``, ``tables.py``) — never from the compiler. Each node of
the small grammar below builds two things: the pophealth definition (``q()``) and the value
the docs say it has for one patient (``ev(ctx)``), worked out with plain Python loops over
that patient's rows. ``test_oracle_audit23.py`` draws random small stores and random nodes
and checks that DuckDB gives every patient the oracle's value.

What the oracle takes from the docs, rule by rule, is said beside each node.
"""

from __future__ import annotations

import calendar
import datetime as dt
import functools
import math
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from pophealth.codelists import Codelist
from pophealth.query import (
    addresses,
    case,
    days,
    events,
    index_date,
    interval_start,
    maximum_of,
    medications,
    minimum_of,
    months,
    patients,
    registrations,
    weeks,
    when,
    years,
)
from pophealth.query.model import wrap

D = dt.date
IN_LIST = ["271649006", "72313002"]
OTHER = "38341003"
SBP = Codelist.of("snomedct", IN_LIST, name="sbp_audit23")
MEDS = ["39113611000001102", "222311000001102"]
SABA = Codelist.of("dmd", MEDS[:1], name="saba_audit23")

#: The areas table: two known LSOAs (the second with no fuel-poverty figure); X01000003 is
#: geocoded but not in the table.
AREAS = {
    "X01000001": {"imd_quintile": 1, "imd_decile": 2, "core20": True, "fuel_poverty_pct": 12.5},
    "X01000002": {"imd_quintile": 4, "imd_decile": 7, "core20": False, "fuel_poverty_pct": None},
}
LSOAS = ["X01000001", "X01000002", "X01000003", None]
#: Practices: C3 registers patients but is not in the practices table.
PRACTICES = {"A1": {"pcn_id": "PCN1"}, "B2": {"pcn_id": "PCN2"}}

#: Columns after the date: "Remaining ties are broken by every other column in the table's
#: order, but the value straight after the dates and times" (Frame.sort_by). Medications
#: have no ``value`` column: their quantity is taken in the table's order.
TIE_COLUMNS = {
    "events": ["datetime", "value", "system", "code", "unit"],
    "medications": ["system", "code", "quantity", "quantity_unit", "dose", "daily_dose_mg"],
}
VALUE_COLUMN = {"events": "value", "medications": "quantity"}

INDEX_DATES = [D(2025, 3, 31), D(2024, 2, 29), D(2025, 2, 28), D(2024, 3, 31), D(2026, 2, 28)]


# -- the calendar, as the docs state it ----------------------------------------------------


def add_months(d: dt.date | None, n: int) -> dt.date | None:
    """``d + months(n)``: "Month and year steps clamp to the month's end (31 Jan + 1 month =
    28/29 Feb)" (Duration)."""
    if d is None:
        return None
    y, m = divmod(d.month - 1 + n, 12)
    year, month = d.year + y, m + 1
    return D(year, month, min(d.day, calendar.monthrange(year, month)[1]))


def add_days(d: dt.date | None, n: int) -> dt.date | None:
    return None if d is None else d + dt.timedelta(days=n)


def age_on(dob: dt.date, d: dt.date | None) -> int | None:
    """ "Age in whole years on date (birthday counted on the day; 29 Feb birthdays turn
    over on 1 Mar in non-leap years). Before the date of birth it is negative (-1 in the
    year before)"."""
    if d is None or dob is None:
        return None
    return d.year - dob.year - ((d.month, d.day) < (dob.month, dob.day))


def interesting_dates(index: dt.date) -> list[dt.date]:
    """Dates at the edges: the index date and its neighbours, 12 months (and 1, 6) before
    it, month ends, leap days."""
    out = {index, add_days(index, -1), add_days(index, 1)}
    for n in (-1, -6, -12, -24, 1):
        edge = add_months(index, n)
        out |= {edge, add_days(edge, -1), add_days(edge, 1)}
    out |= {
        D(2023, 2, 28),
        D(2023, 3, 1),
        D(2024, 2, 28),
        D(2024, 2, 29),
        D(2024, 3, 1),
        D(2024, 1, 31),
        D(2024, 4, 30),
        D(2024, 12, 31),
        D(2025, 2, 28),
        D(2025, 3, 1),
        D(2025, 1, 31),
        D(2026, 2, 28),
        D(2026, 3, 1),
    }
    return sorted(out)


# -- three-valued logic: "a condition on a missing value is not true" ----------------------


def and3(a: bool | None, b: bool | None) -> bool | None:
    if a is False or b is False:
        return False
    if a is None or b is None:
        return None
    return True


def or3(a: bool | None, b: bool | None) -> bool | None:
    if a is True or b is True:
        return True
    if a is None or b is None:
        return None
    return False


def not3(a: bool | None) -> bool | None:
    return None if a is None else not a


_CMP = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


def cmp3(op: str, a: Any, b: Any) -> bool | None:
    if a is None or b is None:
        return None
    return _CMP[op](a, b)


def as_text(v: Any) -> str | None:
    """Series.as_text: ``true``/``false``, ``YYYY-MM-DD``, numbers with up to 15
    significant digits, whole numbers without ``.0``, plain from 0.0001 to 10^15."""
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, int):
        return str(v)
    return f"{v:.15g}"


def round_half_away(x: float | None, digits: int) -> float | None:
    """Series.round: "halves away from zero, by the same floating-point steps on every
    engine: its size times 10^digits, plus a half, rounded down" (round(1.005, 2) is 1.0,
    round(2.675, 2) is 2.68)."""
    if x is None:
        return None
    scale = 10.0**digits
    return math.copysign(math.floor(abs(x) * scale + 0.5) / scale, x)


# -- a patient's rows ------------------------------------------------------------------------


@dataclass
class Ctx:
    """One patient's rows and the index date."""

    index: dt.date
    patient: dict[str, Any]
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def contexts(tables: dict[str, list[dict]], index: dt.date) -> dict[str, Ctx]:
    out = {}
    for p in tables["patients"]:
        pid = p["patient_id"]
        rows = {
            name: [r for r in tables.get(name, []) if r["patient_id"] == pid]
            for name in ("events", "medications", "registrations", "addresses")
        }
        out[pid] = Ctx(index, p, rows)
    return out


# -- the grammar -----------------------------------------------------------------------------


class Node:
    """A per-patient value: ``q()`` the pophealth definition, ``ev(ctx)`` the oracle's."""

    typ = "?"

    def q(self) -> Any:
        raise NotImplementedError

    def ev(self, ctx: Ctx) -> Any:
        raise NotImplementedError


class Lit(Node):
    def __init__(self, value: Any, typ: str, as_text_date: bool = False):
        self.value, self.typ, self.as_text_date = value, typ, as_text_date

    def q(self):
        # "A date may be given ... as text, "2025-03-31", wherever a date goes" (beside
        # another date: a literal alone is a literal series)
        return self.value.isoformat() if self.as_text_date else wrap(self.value)

    def ev(self, ctx):
        return self.value

    def __repr__(self):
        return repr(self.q())


def plain(x: Any) -> Any:
    """``x``, with a date given as text given as a date: text stands for a date only beside
    another date."""
    return Lit(x.value, x.typ) if isinstance(x, Lit) else x


class Index(Node):
    typ = "date"

    def q(self):
        return index_date

    def ev(self, ctx):
        return ctx.index

    def __repr__(self):
        return "index_date"


class IntervalStart(Node):
    """``interval_start``: "The start of each measure interval; in a dataset, the index
    date"."""

    typ = "date"

    def q(self):
        return interval_start

    def ev(self, ctx):
        return ctx.index

    def __repr__(self):
        return "interval_start"


class Shift(Node):
    """``date + days(n)`` / ``+ weeks(n)`` / ``+ months(n)`` / ``+ years(n)``."""

    typ = "date"

    def __init__(self, base: Node, n: int, unit: str):
        self.base, self.n, self.unit = plain(base), n, unit

    def q(self):
        d = {"days": days, "weeks": weeks, "months": months, "years": years}[self.unit]
        b = self.base.q()
        return b + d(self.n) if self.n >= 0 else b - d(-self.n)

    def ev(self, ctx):
        b = self.base.ev(ctx)
        if self.unit == "days":
            return add_days(b, self.n)
        if self.unit == "weeks":
            return add_days(b, 7 * self.n)
        return add_months(b, self.n * (12 if self.unit == "years" else 1))

    def __repr__(self):
        return f"({self.base!r} + {self.unit}({self.n}))"


class PatientCol(Node):
    def __init__(self, name: str, typ: str):
        self.name, self.typ = name, typ

    def q(self):
        return getattr(patients, self.name)

    def ev(self, ctx):
        return ctx.patient.get(self.name)

    def __repr__(self):
        return f"patients.{self.name}"


# -- frames ----------------------------------------------------------------------------------


class Filter:
    def apply(self, frame, table):
        raise NotImplementedError

    def keep(self, row, ctx, table) -> bool:
        raise NotImplementedError


class Window(Filter):
    """on_or_before / before / on_or_after / after / on (rows windowed by their date)."""

    OPS = {"on_or_before": "<=", "before": "<", "on_or_after": ">=", "after": ">", "on": "=="}

    def __init__(self, kind: str, bound: Node):
        self.kind, self.bound = kind, bound

    def apply(self, frame, table):
        return getattr(frame, self.kind)(self.bound.q())

    def keep(self, row, ctx, table):
        return cmp3(self.OPS[self.kind], row["date"], self.bound.ev(ctx)) is True

    def __repr__(self):
        return f".{self.kind}({self.bound!r})"


class InInterval(Filter):
    """``in_interval()``: "Rows dated within the measure interval (start and end
    inclusive); in a dataset the interval is the single day of the index date"."""

    def apply(self, frame, table):
        return frame.in_interval()

    def keep(self, row, ctx, table):
        return row["date"] == ctx.index

    def __repr__(self):
        return ".in_interval()"


class Between(Filter):
    """``between(start, end)``: both inclusive."""

    def __init__(self, start: Node, end: Node):
        self.start, self.end = start, end

    def apply(self, frame, table):
        return frame.between(self.start.q(), self.end.q())

    def keep(self, row, ctx, table):
        a, b = self.start.ev(ctx), self.end.ev(ctx)
        return and3(cmp3(">=", row["date"], a), cmp3("<=", row["date"], b)) is True

    def __repr__(self):
        return f".between({self.start!r}, {self.end!r})"


class Last(Filter):
    """``in_last(unit=n, of=...)``: "Rows in the period ending on ``of`` (default: the index
    date) and starting the day after ``of`` minus the duration"; "on 29 February 2024 the
    last 12 months start after 28 February 2023". ``in_next``: "Rows from ``of`` (exclusive)
    up to ``of`` + the duration (inclusive)"."""

    def __init__(self, direction: str, unit: str, n: int, of: Node | None):
        self.direction, self.unit, self.n, self.of = direction, unit, n, of

    def apply(self, frame, table):
        kwargs = {self.unit: self.n}
        if self.of is not None:
            kwargs["of"] = self.of.q()
        return getattr(frame, f"in_{self.direction}")(**kwargs)

    def keep(self, row, ctx, table):
        of = ctx.index if self.of is None else self.of.ev(ctx)
        if of is None:
            return False
        sign = -1 if self.direction == "last" else 1
        if self.unit in ("days", "weeks"):
            other = add_days(of, sign * self.n * (7 if self.unit == "weeks" else 1))
        else:
            other = add_months(of, sign * self.n * (12 if self.unit == "years" else 1))
        if self.direction == "last":
            return other < row["date"] <= of
        return of < row["date"] <= other

    def __repr__(self):
        of = "" if self.of is None else f", of={self.of!r}"
        return f".in_{self.direction}({self.unit}={self.n}{of})"


class ValueFilter(Filter):
    """``where(value >= k)``, ``where(value.is_not_null())``, ``where(value.is_null())``,
    ``except_where(value > k)`` ("Drop rows where condition is true (rows where it is
    missing are kept)")."""

    def __init__(self, kind: str, k: float | None = None):
        self.kind, self.k = kind, k

    def apply(self, frame, table):
        col = getattr(frame, VALUE_COLUMN[table])
        if self.kind == "ge":
            return frame.where(col >= self.k)
        if self.kind == "notnull":
            return frame.where(col.is_not_null())
        if self.kind == "null":
            return frame.where(col.is_null())
        return frame.except_where(col > self.k)

    def keep(self, row, ctx, table):
        v = row[VALUE_COLUMN[table]]
        if self.kind == "ge":
            return cmp3(">=", v, self.k) is True
        if self.kind == "notnull":
            return v is not None
        if self.kind == "null":
            return v is None
        return cmp3(">", v, self.k) is not True

    def __repr__(self):
        return f".{self.kind}({self.k})"


class FrameSpec:
    """Rows of ``events`` or ``medications``: a code selection then filters in order."""

    def __init__(self, table: str, codes: str, filters: list[Filter]):
        self.table, self.codes, self.filters = table, codes, filters

    def q(self):
        base = {"events": events, "medications": medications}[self.table]
        if self.codes == "list":
            frame = base.matching(SBP if self.table == "events" else SABA)
        elif self.codes == "other":
            frame = base.where(base.code == OTHER)
        else:
            frame = base
        for f in self.filters:
            frame = f.apply(frame, self.table)
        return frame

    def code_kept(self, row) -> bool:
        """``matching``: "Matching a list against a table matches its codes in their
        system" — but on medications "a list's dm+d and SNOMED CT ids match rows of either
        system"."""
        if self.codes == "all":
            return True
        if self.codes == "other":
            return row["code"] == OTHER
        if self.table == "events":
            return row["system"] == "snomedct" and row["code"] in IN_LIST
        return row["system"] in ("dmd", "snomedct") and row["code"] == MEDS[0]

    def rows(self, ctx: Ctx) -> list[dict]:
        return [
            r
            for r in ctx.rows[self.table]
            if self.code_kept(r) and all(f.keep(r, ctx, self.table) for f in self.filters)
        ]

    def __repr__(self):
        return f"{self.table}[{self.codes}]" + "".join(map(repr, self.filters))


def _ordered(rows: list[dict], table: str, direction: str, by: str = "date") -> list[dict]:
    """Frame.sort_by: by date (or ``by``), "remaining ties are broken by every other column
    ... ascending for the first row, descending for the last ..., a missing value never
    taken over a value". The row wanted comes first."""
    columns = [by, *(c for c in ["date", *TIE_COLUMNS[table]] if c != by)]

    def cmp(a, b):
        for col in columns:
            x, y = a.get(col), b.get(col)
            if x == y:
                continue
            if x is None:
                return 1
            if y is None:
                return -1
            less = x < y
            return (-1 if less else 1) * (1 if direction == "first" else -1)
        return 0

    return sorted(rows, key=functools.cmp_to_key(cmp))


class Agg(Node):
    """exists / count / count_days / minimum / maximum / mean / sum for patient."""

    TYPES = {
        "exists": "bool",
        "count": "int",
        "count_days": "int",
        "min": "float",
        "max": "float",
        "mean": "float",
        "sum": "float",
    }

    def __init__(self, kind: str, frame: FrameSpec):
        self.kind, self.frame = kind, frame
        self.typ = self.TYPES[kind]

    def q(self):
        f = self.frame.q()
        column = medications.quantity if self.frame.table == "medications" else None
        return {
            "exists": lambda: f.exists_for_patient(),
            "count": lambda: f.count_for_patient(),
            "count_days": lambda: f.count_days_for_patient(),
            "min": lambda: f.minimum_for_patient(column),
            "max": lambda: f.maximum_for_patient(column),
            "mean": lambda: f.mean_for_patient(column),
            "sum": lambda: f.sum_for_patient(column),
        }[self.kind]()

    def ev(self, ctx):
        rows = self.frame.rows(ctx)
        vals = [r[VALUE_COLUMN[self.frame.table]] for r in rows]
        vals = [v for v in vals if v is not None]
        if self.kind == "exists":  # "False, never missing"
            return bool(rows)
        if self.kind == "count":  # "Number of rows (0 when none)"
            return len(rows)
        if self.kind == "count_days":  # "Number of distinct dates with a row (0 when none)"
            return len({r["date"] for r in rows})
        if not vals:  # aggregates of values: missing when no row has one
            return None
        if self.kind == "min":
            return min(vals)
        if self.kind == "max":
            return max(vals)
        if self.kind == "sum":
            return sum(vals)
        return sum(vals) / len(vals)

    def __repr__(self):
        return f"{self.frame!r}.{self.kind}"


class Pick(Node):
    """``first_for_patient()`` / ``last_for_patient()`` then ``.date``, the value or
    ``.code``: "each missing when the patient has no row"; the last row's value is "that
    row's: missing when the latest row has none"."""

    def __init__(self, direction: str, frame: FrameSpec, column: str, by_value: bool = False):
        self.direction, self.frame, self.column = direction, frame, column
        self.by = VALUE_COLUMN[frame.table] if by_value else "date"
        self.typ = {"date": "date", "code": "str"}.get(column, "float")

    def q(self):
        f = self.frame.q()
        if self.by != "date":
            f = f.sort_by(self.by)
        row = getattr(f, f"{self.direction}_for_patient")()
        col = self.column if self.column != "value" else VALUE_COLUMN[self.frame.table]
        return getattr(row, col)

    def ev(self, ctx):
        rows = _ordered(self.frame.rows(ctx), self.frame.table, self.direction, self.by)
        if not rows:
            return None
        col = self.column if self.column != "value" else VALUE_COLUMN[self.frame.table]
        return rows[0][col]

    def __repr__(self):
        by = "" if self.by == "date" else f".sort_by({self.by!r})"
        return f"{self.frame!r}{by}.{self.direction}_for_patient().{self.column}"


class Day(Node):
    """``first_day_for_patient(rule=...)`` / ``last_day_for_patient(rule=...)``: the
    earliest/latest day with a row (a day whose rows have no value still counts), and the
    rule (min, max, mean) over that day's rows that have a value — missing when none has."""

    def __init__(self, direction: str, frame: FrameSpec, rule: str, what: str):
        self.direction, self.frame, self.rule, self.what = direction, frame, rule, what
        self.typ = "date" if what == "date" else "float"

    def q(self):
        f = self.frame.q()
        column = medications.quantity if self.frame.table == "medications" else None
        day = getattr(f, f"{self.direction}_day_for_patient")(column, rule=self.rule)
        return getattr(day, self.what)

    def ev(self, ctx):
        rows = self.frame.rows(ctx)
        if not rows:
            return None
        pick = min if self.direction == "first" else max
        day = pick(r["date"] for r in rows)
        if self.what == "date":
            return day
        vals = [r[VALUE_COLUMN[self.frame.table]] for r in rows if r["date"] == day]
        vals = [v for v in vals if v is not None]
        if not vals:
            return None
        if self.rule == "min":
            return min(vals)
        if self.rule == "max":
            return max(vals)
        return sum(vals) / len(vals)

    def __repr__(self):
        return f"{self.frame!r}.{self.direction}_day_for_patient({self.rule}).{self.what}"


class Neighbour(Node):
    """The previous and next row: ``days_since_previous()``, ``days_until_next()``,
    ``previous(value)``, ``next(value)`` on each row of the frame — "rows in the frame's
    order (default the date), ties broken by every other column (ascending, missing last;
    as first_for_patient)", missing on the first (last) row — then either the rows where it
    is ``<= k`` counted, or its maximum; ``post`` filters narrow the rows after it is taken
    ("filters after it do not change it")."""

    def __init__(self, frame: FrameSpec, kind: str, use: str, k: int, post: list[Filter]):
        self.frame, self.kind, self.use, self.k, self.post = frame, kind, use, k, post
        self.typ = "int" if use == "count_le" or kind.startswith("days") else "float"

    def _series(self, f):
        col = VALUE_COLUMN[self.frame.table]
        return {
            "days_since_previous": lambda: f.days_since_previous(),
            "days_until_next": lambda: f.days_until_next(),
            "previous": lambda: f.previous(col),
            "next": lambda: f.next(col),
        }[self.kind]()

    def q(self):
        f = self.frame.q()
        s = self._series(f)
        g = f.where(s <= self.k) if self.use == "count_le" else f
        for p in self.post:
            g = p.apply(g, self.frame.table)
        return g.count_for_patient() if self.use == "count_le" else g.maximum_for_patient(s)

    def ev(self, ctx):
        rows = _ordered(self.frame.rows(ctx), self.frame.table, "first")
        col = VALUE_COLUMN[self.frame.table]
        pairs = []
        for i, r in enumerate(rows):
            prev = rows[i - 1] if i > 0 else None
            nxt = rows[i + 1] if i + 1 < len(rows) else None
            if self.kind == "days_since_previous":
                v = None if prev is None else (r["date"] - prev["date"]).days
            elif self.kind == "days_until_next":
                v = None if nxt is None else (nxt["date"] - r["date"]).days
            elif self.kind == "previous":
                v = None if prev is None else prev[col]
            else:
                v = None if nxt is None else nxt[col]
            pairs.append((r, v))
        if self.use == "count_le":
            pairs = [(r, v) for r, v in pairs if cmp3("<=", v, self.k) is True]
        pairs = [
            (r, v) for r, v in pairs if all(p.keep(r, ctx, self.frame.table) for p in self.post)
        ]
        if self.use == "count_le":
            return len(pairs)
        vals = [v for _, v in pairs if v is not None]
        return max(vals) if vals else None

    def __repr__(self):
        post = "".join(map(repr, self.post))
        return f"{self.frame!r}.{self.kind}.{self.use}({self.k}){post}"


# -- demographics ----------------------------------------------------------------------------


class Age(Node):
    typ = "int"

    def __init__(self, on: Node):
        self.on = on

    def q(self):
        return patients.age_on(self.on.q())

    def ev(self, ctx):
        return age_on(ctx.patient["date_of_birth"], self.on.ev(ctx))

    def __repr__(self):
        return f"age_on({self.on!r})"


class AgeBand(Node):
    """ "Age band label on date: with the default bands "0-9", "10-19", ..., "90+""; bands are
    lower bounds, so (0, 18, 65) gives 0-17, 18-64, 65+; a negative age has no band."""

    typ = "str"

    def __init__(self, on: Node, bands: tuple[int, ...] | None):
        self.on, self.bands = on, bands

    def q(self):
        if self.bands is None:
            return patients.age_band_on(self.on.q())
        return patients.age_band_on(self.on.q(), bands=self.bands)

    def ev(self, ctx):
        age = age_on(ctx.patient["date_of_birth"], self.on.ev(ctx))
        bands = self.bands or (0, 10, 20, 30, 40, 50, 60, 70, 80, 90)
        if age is None or age < bands[0]:
            return None
        for lo, hi in zip(bands, bands[1:], strict=False):
            if lo <= age < hi:
                return f"{lo}-{hi - 1}"
        return f"{bands[-1]}+"

    def __repr__(self):
        return f"age_band_on({self.on!r}, {self.bands})"


class Alive(Node):
    """ "Born on or before date and not recorded as dead on or before it" — as the
    conjunction it is written as, so missing when the date is."""

    typ = "bool"

    def __init__(self, on: Node):
        self.on = on

    def q(self):
        return patients.is_alive_on(self.on.q())

    def ev(self, ctx):
        d = self.on.ev(ctx)
        dob, dod = ctx.patient["date_of_birth"], ctx.patient.get("date_of_death")
        return and3(cmp3("<=", dob, d), or3(dod is None, cmp3(">", dod, d)))

    def __repr__(self):
        return f"is_alive_on({self.on!r})"


def _active(rows: list[dict], d: dt.date | None) -> list[dict]:
    """The periods holding day ``d``: "from its start to its end, both included, an open
    end running on"."""
    if d is None:
        return []
    return [
        r for r in rows if r["start_date"] <= d and (r["end_date"] is None or r["end_date"] >= d)
    ]


class Registered(Node):
    """``registered_on(d)``: "True when registered with any practice on date"."""

    typ = "bool"

    def __init__(self, on: Node):
        self.on = on

    def q(self):
        return registrations.registered_on(self.on.q())

    def ev(self, ctx):
        return bool(_active(ctx.rows["registrations"], self.on.ev(ctx)))

    def __repr__(self):
        return f"registered_on({self.on!r})"


class Practice(Node):
    """``practice_on(d).practice_id`` / ``.pcn_id``: "the registration with the latest start
    wins when periods overlap (ties: the alphabetically last practice code)"; all missing
    when not registered, and a practice not in the practices table has no pcn."""

    typ = "str"

    def __init__(self, on: Node, column: str):
        self.on, self.column = on, column

    def q(self):
        return getattr(registrations.practice_on(self.on.q()), self.column)

    def ev(self, ctx):
        rows = _active(ctx.rows["registrations"], self.on.ev(ctx))
        if not rows:
            return None
        best = max(rows, key=lambda r: (r["start_date"], r["practice_id"]))
        if self.column == "practice_id":
            return best["practice_id"]
        return PRACTICES.get(best["practice_id"], {}).get(self.column)

    def __repr__(self):
        return f"practice_on({self.on!r}).{self.column}"


def address_on(rows: list[dict], d: dt.date | None) -> dict | None:
    """The addresses overlap rule: "among addresses with start_date <= date <= end_date
    (open end = current), the latest start wins; ties are broken by the LSOA code
    (alphabetically last wins; an ungeocoded address loses a tie to a geocoded one)"."""
    rows = _active(rows, d)
    if not rows:
        return None
    return max(
        rows, key=lambda r: (r["start_date"], r["lsoa_code"] is not None, r["lsoa_code"] or "")
    )


class Area(Node):
    """``area_on(d)``: ``.attr`` (missing without an address, when not geocoded, or when
    the LSOA is not in the areas table), ``.group(attr)`` (those as "unknown"; a value as
    text), ``.status`` (known, no_address, not_geocoded, lsoa_not_in_areas), ``.lsoa_code``."""

    def __init__(self, on: Node, what: str, attr: str | None = None):
        self.on, self.what, self.attr = on, what, attr
        self.typ = {
            "status": "str",
            "lsoa_code": "str",
            "group": "str",
            "imd_quintile": "int",
            "core20": "bool",
            "fuel_poverty_pct": "float",
        }[attr if what == "attr" else what]

    def q(self):
        area = addresses.area_on(self.on.q())
        if self.what == "group":
            return area.group(self.attr)
        if self.what == "attr":
            return getattr(area, self.attr)
        return getattr(area, self.what)

    def ev(self, ctx):
        addr = address_on(ctx.rows["addresses"], self.on.ev(ctx))
        lsoa = addr["lsoa_code"] if addr else None
        if self.what == "status":
            if addr is None:
                return "no_address"
            if lsoa is None:
                return "not_geocoded"
            return "known" if lsoa in AREAS else "lsoa_not_in_areas"
        if self.what == "lsoa_code":
            return lsoa
        value = AREAS.get(lsoa, {}).get(self.attr)
        if self.what == "group":
            return "unknown" if value is None else as_text(value)
        return value

    def __repr__(self):
        return f"area_on({self.on!r}).{self.what}({self.attr})"


# -- rows during periods, and person-time on the index date ---------------------------------

#: Periods a frame's rows may be kept during: (the frame, its filter on a row, whether a
#: day is held by the union of the rows or by the addresses overlap rule).
PERIODS = {
    "registrations": ("registrations", lambda r: True, "union"),
    "registrations_A1": ("registrations", lambda r: r["practice_id"] == "A1", "union"),
    "addresses": ("addresses", lambda r: True, "union"),
    "care_home": ("addresses", lambda r: r["care_home"], "overlap"),
    "lsoa1": ("addresses", lambda r: r["lsoa_code"] == "X01000001", "overlap"),
}


def periods_q(kind: str):
    return {
        "registrations": lambda: registrations,
        "registrations_A1": lambda: registrations.where(registrations.practice_id == "A1"),
        "addresses": lambda: addresses,
        "care_home": lambda: addresses.where(addresses.care_home),
        "lsoa1": lambda: addresses.where(addresses.lsoa_code == "X01000001"),
    }[kind]()


def held(ctx: Ctx, kind: str, day: dt.date | None) -> bool:
    """Whether ``day`` is held by the patient's ``kind`` periods: "A period holds the days
    from its start to its end, both included, an open end running on"; "selected addresses
    hold a day when the patient's address that day by the addresses overlap rule ... is one
    of them"; "Other tables, and addresses unfiltered, hold the union of their periods"."""
    table, keep, how = PERIODS[kind]
    if how == "union":
        return bool([r for r in _active(ctx.rows[table], day) if keep(r)])
    winner = address_on(ctx.rows[table], day)
    return winner is not None and keep(winner)


class During(Filter):
    """``frame.during(periods)``: "keeps the rows whose own date ... is a day held by one
    of the patient's rows of periods"."""

    def __init__(self, kind: str):
        self.kind = kind

    def apply(self, frame, table):
        return frame.during(periods_q(self.kind))

    def keep(self, row, ctx, table):
        return held(ctx, self.kind, row["date"])

    def __repr__(self):
        return f".during({self.kind})"


class PersonDays(Node):
    """``periods.days_in_interval_for_patient(until=...)``: "In a dataset the interval is
    the index date alone (1 or 0)"; ``until`` "ends the person-time: no day after it counts
    (its own day does; missing: no end)"."""

    typ = "int"

    def __init__(self, kind: str, until: bool):
        self.kind, self.until = kind, until

    def q(self):
        frame = periods_q(self.kind)
        if self.until:
            return frame.days_in_interval_for_patient(until=patients.date_of_death)
        return frame.days_in_interval_for_patient()

    def ev(self, ctx):
        if not held(ctx, self.kind, ctx.index):
            return 0
        dod = ctx.patient.get("date_of_death")
        return 0 if self.until and dod is not None and ctx.index > dod else 1

    def __repr__(self):
        return f"{self.kind}.days_in_interval_for_patient(until={self.until})"


# -- composition -----------------------------------------------------------------------------


class Cmp(Node):
    typ = "bool"

    def __init__(self, op: str, a: Node, b: Node):
        self.op, self.a, self.b = op, plain(a), b

    def q(self):
        a, b = self.a.q(), self.b.q()
        return {
            "<": lambda: a < b,
            "<=": lambda: a <= b,
            ">": lambda: a > b,
            ">=": lambda: a >= b,
            "==": lambda: a == b,
            "!=": lambda: a != b,
        }[self.op]()

    def ev(self, ctx):
        return cmp3(self.op, self.a.ev(ctx), self.b.ev(ctx))

    def __repr__(self):
        return f"({self.a!r} {self.op} {self.b!r})"


class Logic(Node):
    typ = "bool"

    def __init__(self, op: str, *args: Node):
        self.op, self.args = op, args

    def q(self):
        if self.op == "not":
            return ~self.args[0].q()
        a, b = self.args[0].q(), self.args[1].q()
        return a & b if self.op == "and" else a | b

    def ev(self, ctx):
        if self.op == "not":
            return not3(self.args[0].ev(ctx))
        a, b = self.args[0].ev(ctx), self.args[1].ev(ctx)
        return and3(a, b) if self.op == "and" else or3(a, b)

    def __repr__(self):
        if self.op == "not":
            return f"~{self.args[0]!r}"
        return f"({self.args[0]!r} {'&' if self.op == 'and' else '|'} {self.args[1]!r})"


class NullTest(Node):
    typ = "bool"

    def __init__(self, a: Node, negate: bool):
        self.a, self.negate = a, negate

    def q(self):
        return self.a.q().is_not_null() if self.negate else self.a.q().is_null()

    def ev(self, ctx):
        return (self.a.ev(ctx) is None) != self.negate

    def __repr__(self):
        return f"{self.a!r}.is_{'not_' if self.negate else ''}null()"


class Case(Node):
    """``case((c1, v1), ..., otherwise=o)``: "the first true wins; no true branch and no
    otherwise gives missing"; a condition on a missing value is not true. ``use_when``
    writes it as ``when(c1).then(v1)...otherwise(o)``."""

    def __init__(self, branches: list[tuple[Node, Any]], otherwise: Any, typ: str, use_when=False):
        self.branches, self.otherwise, self.typ, self.use_when = branches, otherwise, typ, use_when

    def q(self):
        if self.use_when:
            (c0, v0), *rest = self.branches
            chain = when(c0.q()).then(v0)
            for c, v in rest:
                chain = chain.when(c.q()).then(v)
            return chain.otherwise(self.otherwise)
        return case(*[(c.q(), v) for c, v in self.branches], otherwise=self.otherwise)

    def ev(self, ctx):
        for c, v in self.branches:
            if c.ev(ctx) is True:
                return v
        return self.otherwise

    def __repr__(self):
        return f"case({self.branches!r}, otherwise={self.otherwise!r})"


class Arith(Node):
    """``a + b`` and ``a - b`` on numbers; ``date1 - date2`` in days; ``d.days_until(e)``."""

    def __init__(self, op: str, a: Node, b: Node):
        # text is a date in a window, a comparison, if_null_then, maximum_of/minimum_of and
        # case — not in arithmetic (docs: "anything else in text is an error naming it")
        a, b = plain(a), plain(b)
        self.op, self.a, self.b = op, a, b
        if op == "days_until" or (a.typ == "date" and b.typ == "date"):
            self.typ = "int"
        else:
            self.typ = "float" if "float" in (a.typ, b.typ) else "int"

    def q(self):
        a, b = self.a.q(), self.b.q()
        if self.op == "days_until":
            return a.days_until(b)
        return a + b if self.op == "+" else a - b

    def ev(self, ctx):
        a, b = self.a.ev(ctx), self.b.ev(ctx)
        if a is None or b is None:
            return None
        if self.op == "days_until":
            return (b - a).days
        if isinstance(a, dt.date):
            return (a - b).days
        return a + b if self.op == "+" else a - b

    def __repr__(self):
        return f"({self.a!r} {self.op} {self.b!r})"


class Func(Node):
    """``if_null_then``, ``maximum_of``/``minimum_of`` ("of values that are not missing
    (missing when all are)"), ``round(x, n)``, ``as_text()``, ``fill_unknown()``."""

    def __init__(self, fn: str, args: list[Any], typ: str):
        self.fn, self.args, self.typ = fn, [plain(args[0]), *args[1:]], typ

    def q(self):
        a = [x.q() if isinstance(x, Node) else x for x in self.args]
        if self.fn == "if_null_then":
            return a[0].if_null_then(a[1])
        if self.fn == "maximum_of":
            return maximum_of(*a)
        if self.fn == "minimum_of":
            return minimum_of(*a)
        if self.fn == "round":
            return a[0].round(a[1])
        if self.fn == "fill_unknown":
            return a[0].fill_unknown()
        return a[0].as_text()

    def ev(self, ctx):
        a = [x.ev(ctx) if isinstance(x, Node) else x for x in self.args]
        if self.fn == "if_null_then":
            return a[1] if a[0] is None else a[0]
        if self.fn in ("maximum_of", "minimum_of"):
            vals = [v for v in a if v is not None]
            vals = [D.fromisoformat(v) if isinstance(v, str) else v for v in vals]
            if not vals:
                return None
            return max(vals) if self.fn == "maximum_of" else min(vals)
        if self.fn == "round":
            return round_half_away(a[0], a[1])
        if self.fn == "fill_unknown":
            return "unknown" if a[0] is None else as_text(a[0])
        return as_text(a[0])

    def __repr__(self):
        return f"{self.fn}{tuple(self.args)!r}"


# -- strategies ------------------------------------------------------------------------------

VALUES = [None, 120.0, 120.0, 135.5, 140.0, 160.0, 99.25]
QUANTITIES = [None, 1.0, 2.0, 2.0, 3.0]


@st.composite
def stores(draw, index: dt.date | None = None):
    """A small store: ≤ 6 patients, ≤ 8 rows in each many-rows table, dates clustered at
    the edges of the index date's windows, values with ties and missing ones."""
    index = index or draw(st.sampled_from(INDEX_DATES))
    edges = interesting_dates(index)
    year_ago = add_months(index, -12)
    hot = [index, add_days(index, 1), year_ago, add_days(year_ago, 1), add_months(index, -1)]
    day = st.one_of(
        st.sampled_from(hot),  # the edges of in_last(months=12) and (months=1)
        st.sampled_from(edges),
        st.dates(min_value=add_months(index, -36), max_value=add_months(index, 12)),
    )
    n = draw(st.sampled_from([1, 2, 2, 3, 3, 4, 6]))  # few patients: several rows each
    pids = [f"p{i}" for i in range(1, n + 1)]
    births = st.one_of(
        st.sampled_from(
            [
                D(2000, 2, 29),
                D(2008, 2, 29),
                D(2004, 2, 29),
                add_months(index, -18 * 12),
                add_days(add_months(index, -18 * 12), 1),
                add_days(add_months(index, -65 * 12), -1),
                add_days(index, 10),
                index,
            ]
        ),
        st.dates(min_value=D(1925, 1, 1), max_value=add_months(index, 12)),
    )
    pats = [
        {
            "patient_id": p,
            "date_of_birth": draw(births),
            "sex": draw(st.sampled_from(["female", "male", "unknown"])),
            "date_of_death": draw(st.one_of(st.none(), st.none(), st.sampled_from(hot), day)),
        }
        for p in pids
    ]
    pid = st.sampled_from(pids)
    ev = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "patient_id": pid,
                    "date": day,
                    "code": st.sampled_from([*IN_LIST, OTHER]),
                    "system": st.sampled_from(["snomedct", "snomedct", "snomedct", "ctv3"]),
                    "value": st.sampled_from(VALUES),
                }
            ),
            min_size=2,
            max_size=8,
        )
    )
    meds = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "patient_id": pid,
                    "date": day,
                    "code": st.sampled_from(MEDS),
                    "system": st.sampled_from(["dmd", "dmd", "snomedct", "rxnorm"]),
                    "quantity": st.sampled_from(QUANTITIES),
                }
            ),
            max_size=8,
        )
    )

    def periods(extra: dict) -> list[dict]:
        rows = []
        for _ in range(draw(st.integers(0, 8))):
            start = draw(st.one_of(st.sampled_from(hot[:3]), day))  # ties of starts
            end = draw(st.one_of(st.none(), day, st.just(start)))
            if end is not None and end < start:
                start, end = end, start
            rows.append(
                {
                    "patient_id": draw(pid),
                    "start_date": start,
                    "end_date": end,
                    **{k: draw(v) for k, v in extra.items()},
                }
            )
        return rows

    regs = periods({"practice_id": st.sampled_from(["A1", "B2", "C3"])})
    addr = periods({"lsoa_code": st.sampled_from(LSOAS)})
    for r in addr:  # a care home by its LSOA (and start), so two tied addresses agree
        r["care_home"] = r["lsoa_code"] == "X01000002" or (
            r["lsoa_code"] is None and r["start_date"].month % 2 == 0
        )
    areas = [{"lsoa_code": k, **v} for k, v in AREAS.items()]
    practices = [{"practice_id": k, **v} for k, v in PRACTICES.items()]
    tables = {
        "patients": pats,
        "events": ev,
        "medications": meds,
        "registrations": regs,
        "addresses": addr,
        "areas": areas,
        "practices": practices,
    }
    return index, tables


def fixed_dates(index: dt.date) -> st.SearchStrategy[Node]:
    """A date that is the same for every patient: the index date, a shift of it, a date."""
    edges = interesting_dates(index)
    return st.one_of(
        st.just(Index()),
        st.just(IntervalStart()),
        st.builds(
            Shift,
            st.just(Index()),
            st.sampled_from([-12, -1, -6, -24, 1]),
            st.sampled_from(["months", "years", "days", "weeks"]),
        ),
        st.builds(lambda d, t: Lit(d, "date", t), st.sampled_from(edges), st.booleans()),
    )


def patient_dates(index: dt.date) -> st.SearchStrategy[Node]:
    """A date per patient, sometimes missing: a date of death, an 18th birthday."""
    return st.one_of(
        fixed_dates(index),
        st.just(PatientCol("date_of_death", "date")),
        st.just(Shift(PatientCol("date_of_birth", "date"), 18, "years")),
    )


@st.composite
def filters(draw, index: dt.date, table: str):
    kind = draw(st.sampled_from([0, 1, 2, 2, 2, 3, 4, 5, 6, 7]))  # windows most often
    if kind == 6:
        return During(draw(st.sampled_from(list(PERIODS))))
    if kind == 7:
        return InInterval()
    bound = draw(st.one_of(fixed_dates(index), patient_dates(index)))
    if kind == 0:
        return Window(draw(st.sampled_from(list(Window.OPS))), bound)
    if kind == 1:
        a = draw(st.sampled_from(interesting_dates(index)))
        b = draw(st.sampled_from(interesting_dates(index)))
        start, end = sorted([a, b])
        if draw(st.booleans()):  # a window of the index date
            return Between(Shift(Index(), -draw(st.integers(1, 12)), "months"), Index())
        return Between(Lit(start, "date", draw(st.booleans())), Lit(end, "date"))
    if kind in (2, 3):
        unit = draw(st.sampled_from(["months", "months", "months", "days", "weeks", "years"]))
        n = draw(st.sampled_from([1, 12] if unit == "months" else [1, 2, 30]))
        of = draw(st.one_of(st.none(), st.none(), patient_dates(index)))
        return Last("last" if kind == 2 else "next", unit, n, of)
    k = draw(st.sampled_from([120.0, 135.5, 140.0] if table == "events" else [2.0]))
    return ValueFilter(draw(st.sampled_from(["ge", "notnull", "null", "except"])), k)


@st.composite
def frames(draw, index: dt.date):
    table = draw(st.sampled_from(["events", "events", "medications"]))
    codes = draw(
        st.sampled_from(["list", "list", "other", "all"] if table == "events" else ["list", "all"])
    )
    fs = draw(
        st.sampled_from([0, 1, 1, 2]).flatmap(
            lambda n: st.lists(filters(index, table), min_size=n, max_size=n)
        )
    )
    return FrameSpec(table, codes, fs)


@st.composite
def aggregates(draw, index: dt.date) -> Node:
    frame = draw(frames(index))
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return Agg(draw(st.sampled_from(list(Agg.TYPES))), frame)
    if kind == 1:
        col = draw(st.sampled_from(["date", "value", "code"]))
        by_value = draw(st.sampled_from([False, False, True]))
        return Pick(draw(st.sampled_from(["first", "last"])), frame, col, by_value)
    if kind == 3:
        return draw(neighbours(index, frame))
    if kind == 4:
        return PersonDays(draw(st.sampled_from(list(PERIODS))), draw(st.booleans()))
    return Day(
        draw(st.sampled_from(["first", "last"])),
        frame,
        draw(st.sampled_from(["min", "max", "mean"])),
        draw(st.sampled_from(["date", "value"])),
    )


@st.composite
def neighbours(draw, index: dt.date, frame: FrameSpec) -> Node:
    kind = draw(st.sampled_from(["days_since_previous", "days_until_next", "previous", "next"]))
    use = draw(st.sampled_from(["count_le", "max"]))
    k = draw(st.sampled_from([0, 1, 30, 365])) if kind.startswith("days") else 130
    post = draw(st.lists(filters(index, frame.table), max_size=1))
    return Neighbour(frame, kind, use, k, post)


@st.composite
def demographics(draw, index: dt.date) -> Node:
    on = draw(st.one_of(patient_dates(index), fixed_dates(index)))
    kind = draw(st.integers(0, 7))
    if kind == 0:
        return Age(on)
    if kind == 1:
        return AgeBand(on, draw(st.sampled_from([None, (0, 18, 65), (18, 40)])))
    if kind == 2:
        return Alive(on)
    if kind == 3:
        return Registered(on)
    if kind == 4:
        return Practice(on, draw(st.sampled_from(["practice_id", "pcn_id"])))
    if kind == 5:
        return PatientCol("sex", "str")
    what = draw(st.sampled_from(["status", "lsoa_code", "group", "attr"]))
    attr = None
    if what in ("group", "attr"):
        attr = draw(st.sampled_from(["imd_quintile", "core20", "fuel_poverty_pct"]))
    return Area(on, what, attr)


def leaves(index: dt.date) -> st.SearchStrategy[Node]:
    return st.one_of(aggregates(index), demographics(index))


def _of_type(typ: str, index: dt.date) -> st.SearchStrategy[Node]:
    """A leaf of one type, built directly (not filtered)."""
    fr = frames(index)
    on = st.one_of(patient_dates(index), fixed_dates(index))
    direction = st.sampled_from(["first", "last"])
    rule = st.sampled_from(["min", "max", "mean"])
    if typ == "date":
        return st.one_of(
            st.builds(Pick, direction, fr, st.just("date")),
            st.builds(Day, direction, fr, rule, st.just("date")),
        )
    if typ == "bool":
        return st.one_of(
            st.builds(Agg, st.just("exists"), fr),
            st.builds(Alive, on),
            st.builds(Registered, on),
            st.builds(Area, on, st.just("attr"), st.just("core20")),
        )
    if typ == "str":
        return st.one_of(
            st.builds(AgeBand, on, st.sampled_from([None, (0, 18, 65)])),
            st.builds(Practice, on, st.sampled_from(["practice_id", "pcn_id"])),
            st.just(PatientCol("sex", "str")),
            st.builds(Area, on, st.sampled_from(["status", "lsoa_code"])),
            st.builds(Area, on, st.just("group"), st.sampled_from(["imd_quintile", "core20"])),
            st.builds(Pick, direction, fr, st.just("code")),
        )
    return st.one_of(  # numbers
        st.builds(Agg, st.sampled_from(["count", "count_days", "min", "max", "mean", "sum"]), fr),
        st.builds(Pick, direction, fr, st.just("value")),
        st.builds(Day, direction, fr, rule, st.just("value")),
        st.builds(Age, on),
        st.builds(Area, on, st.just("attr"), st.sampled_from(["imd_quintile", "fuel_poverty_pct"])),
    )


@st.composite
def conditions(draw, index: dt.date, depth: int = 2) -> Node:
    """True/False/missing: a leaf condition, a comparison, a null test, &, |, ~."""
    kind = draw(st.integers(0, 6 if depth > 0 else 3))
    if kind == 0:
        return draw(_of_type("bool", index))
    if kind == 1:
        a = draw(numbers(index, depth - 1))
        lit = draw(st.sampled_from([0, 1, 2, 18, 120.0, 135.5, 140, 4]))
        return Cmp(draw(st.sampled_from(list(_CMP))), a, Lit(lit, "float"))
    if kind == 2:
        a = draw(dates(index, depth - 1))
        b = draw(st.one_of(dates(index, 0), fixed_dates(index)))
        return Cmp(draw(st.sampled_from(list(_CMP))), a, b)
    if kind == 3:
        if draw(st.booleans()):
            return Cmp("==", PatientCol("sex", "str"), Lit("female", "str"))
        return NullTest(draw(leaves(index)), draw(st.booleans()))
    if kind == 6:
        return Logic("not", draw(conditions(index, depth - 1)))
    return Logic(
        "and" if kind == 4 else "or",
        draw(conditions(index, depth - 1)),
        draw(conditions(index, depth - 1)),
    )


@st.composite
def dates(draw, index: dt.date, depth: int = 1) -> Node:
    kind = draw(st.integers(0, 4 if depth > 0 else 1))
    if kind == 0:
        return draw(_of_type("date", index))
    if kind == 1:
        return draw(patient_dates(index))
    if kind == 2:
        base = draw(dates(index, depth - 1))
        return Shift(
            base,
            draw(st.sampled_from([-1, 1, 12, -12, 29])),
            draw(st.sampled_from(["days", "months"])),
        )
    if kind == 3:
        fn = draw(st.sampled_from(["maximum_of", "minimum_of"]))
        text = draw(st.sampled_from(interesting_dates(index))).isoformat()
        return Func(fn, [draw(dates(index, depth - 1)), text], "date")
    return Func("if_null_then", [draw(dates(index, depth - 1)), draw(fixed_dates(index))], "date")


@st.composite
def numbers(draw, index: dt.date, depth: int = 1) -> Node:
    kind = draw(st.integers(0, 6 if depth > 0 else 0))
    if kind == 0:
        return draw(_of_type("number", index))
    if kind == 1:
        return Arith("-", draw(dates(index, depth - 1)), draw(dates(index, depth - 1)))
    if kind == 2:
        return Arith("days_until", draw(dates(index, depth - 1)), draw(fixed_dates(index)))
    if kind == 3:
        a = draw(numbers(index, depth - 1))
        b = draw(
            st.one_of(
                numbers(index, depth - 1), st.builds(Lit, st.sampled_from([1, -2]), st.just("int"))
            )
        )
        return Arith(draw(st.sampled_from(["+", "-"])), a, b)
    if kind == 4:
        a = draw(numbers(index, depth - 1))
        if draw(st.booleans()):
            return Func("round", [a, draw(st.sampled_from([0, 1]))], "float")
        return Func("if_null_then", [a, 0], a.typ)
    if kind == 6:  # points, NEWS2-style: a missing reading takes otherwise, or no branch
        a = draw(_of_type("number", index))
        branches = [(Cmp("<=", a, Lit(120.0, "float")), 3), (Cmp("<=", a, Lit(140.0, "float")), 1)]
        if draw(st.booleans()):
            branches.append((Cmp(">", a, Lit(140.0, "float")), 0))
            return Case(branches, None, "int")
        return Case(branches, 2, "int", use_when=draw(st.booleans()))
    fn = draw(st.sampled_from(["maximum_of", "minimum_of"]))
    a, b = draw(numbers(index, depth - 1)), draw(numbers(index, depth - 1))
    return Func(fn, [a, b], "float" if "float" in (a.typ, b.typ) else "int")


@st.composite
def texts(draw, index: dt.date, depth: int = 1) -> Node:
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(_of_type("str", index))
    if kind == 1:
        labels = ["high", "mid", "low"]
        branches = [
            (draw(conditions(index, depth)), lab) for lab in labels[: draw(st.integers(1, 2))]
        ]
        otherwise = draw(st.sampled_from([None, "other"]))
        return Case(
            branches, otherwise, "str", use_when=draw(st.booleans()) and otherwise is not None
        )
    if kind == 2:
        a = draw(
            st.one_of(numbers(index, depth - 1), dates(index, depth - 1), conditions(index, 0))
        )
        return Func("as_text", [a], "str")
    a = draw(st.one_of(numbers(index, depth - 1), dates(index, depth - 1)))
    return Func("fill_unknown", [a], "str")


def definitions(index: dt.date) -> st.SearchStrategy[Node]:
    return st.one_of(
        leaves(index), conditions(index), numbers(index), dates(index).map(plain), texts(index)
    )
