"""Run-length ("change-point") evaluation of measures over many intervals.

A patient's values change at only a few of a measure's intervals: "registered", "alive",
"adult" flip at most once in two years; "a statin issued in the last 12 months" stays true
for a monthly issuer; "the latest blood pressure" changes only when a new reading arrives
or the last one leaves the window. So, instead of pairing every patient with every
interval, each interval-dependent value is computed as **runs** — ``(patient, k_from, k_to,
value)``: the value holds for intervals ``k_from <= k < k_to`` — the measure is evaluated
once per patient at each interval where some run starts or ends (its *change points*), and
each evaluation counts for every interval up to the patient's next change point. The counts
per interval are then running sums of those differences.

How each interval-dependent piece becomes runs (intervals ``k = 0..n-1`` sorted by date):

* **Window filters** ``row_value OP G`` where ``G`` is built from ``index_date`` /
  ``interval_start`` and month/day shifts (``in_last``, ``on_or_before``, ``between``,
  ``in_interval``, ``active_on``...): ``G`` is computed in Python for every interval (a
  non-decreasing list ``g_0 <= g_1 <= ...``), so each row is inside the window for one
  contiguous range of intervals ``[lo, hi)``: by arithmetic on the month number when the
  thresholds are month ends or 1sts a fixed number of months apart (monthly, quarterly,
  yearly intervals and their month shifts), else by a binary search written as nested
  ``CASE`` expressions. ``static OR row_value OP G`` (an open-ended registration) and
  conjunctions of these are ranges too.
* **exists / count**: +1 at ``lo``, −1 at ``hi``, a running sum per patient; only the
  points where the value changes are kept.
* **first / last day with a same-day rule** (filters on the date only): the days' ranges
  move forward with the day, so "the last day in the window at k" is the latest day with
  ``lo <= k``, valid while ``k < hi`` — in day order, the day before the next day's ``lo``
  grows (one window function over the patient's days).
* **any other aggregate, and first / last row** (``address_on``, ``practice_on``...): the
  rows are joined to their patient's change points inside ``[lo, hi)`` and aggregated or
  ranked there.
* **lookups** (the area of the address on the date): the key's runs joined to the table.
* **patient-level comparisons with G** (``is_alive_on``, "first diagnosis on or before
  the index date") flip once; **age** ``>= c`` flips on the c-th birthday, any other use of
  age on every birthday (29 February birthdays count from 1 March in other years, as
  :meth:`~pophealth.query.compile.Compiler.expr` does).
* **merging** (predicate abstraction, :meth:`Timeline._merged`): when the expressions use
  a runs table's values only through comparisons with literals, ``is_null`` /
  ``is_not_null`` or ``isin``, adjacent runs with the same outcomes become one run, so a
  count makes a change point only when it crosses its threshold.
* **evaluation**: the candidate patients (a condition on the patient alone that the
  denominators imply, :meth:`~pophealth.query.compile.Compiler.necessary`) at interval 0
  and at every start or end of a run and every flip; each evaluation holds until the
  patient's next change point (``_kn``).

True/False measures over at most 62 intervals are counted from the same runs and flips
as bit masks instead (:mod:`pophealth.query.masks`; :attr:`Timeline.use_masks`), with no
evaluation at change points.

Whatever this cannot prove constant between change points (``index_date`` used as a value,
an ``or`` of two interval-dependent conditions, overlapping intervals...) raises
:class:`Unsupported`, and the caller falls back to pairing patients with intervals.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Sequence
from typing import Any

import ibis
import ibis.expr.datatypes as idt
import ibis.expr.types as ir
import pandas as pd
import pyarrow as pa

from pophealth.query.compile import LEAF_OPS, Compiler, _reads_neighbours
from pophealth.query.model import DATE_COLUMNS, Frame, QueryError, Series, wrap
from pophealth.schema import table as schema_table

Interval = tuple[dt.date, dt.date]
_CMP = ("le", "lt", "ge", "gt", "eq")
_MIRROR = {"le": "ge", "lt": "gt", "ge": "le", "gt": "lt", "eq": "eq"}
_SWEEP = ("exists", "count")


@ibis.udf.agg.builtin(name="bit_or")
def bit_or(x: idt.int64) -> idt.int64:  # DuckDB and Spark SQL both name it bit_or
    """Bitwise OR of the values of a group."""


def _one() -> ir.Value:
    # a 64-bit 1 (a bare literal is a 32-bit int on Spark, and 1 << 40 would wrap)
    return ibis.literal(1, type="int8").cast("int64")


def _zero() -> ir.Value:
    return ibis.literal(0, type="int8").cast("int64")


def interval_bits(lo: ir.Value, hi: ir.Value) -> ir.Value:
    """The mask of intervals ``lo .. hi - 1``: bit k for interval k (0 when ``lo >= hi``
    or either is missing)."""
    return ibis.cases((lo < hi, (_one() << hi) - (_one() << lo)), else_=_zero())


class Unsupported(Exception):
    """The measures use something change-point evaluation cannot prove correct."""


def sorted_intervals(intervals: Sequence[Interval]) -> list[Interval] | None:
    """The intervals sorted by date, or None when their starts and ends do not both
    increase (duplicates, one interval inside another)."""
    out = sorted(intervals, key=lambda iv: (iv[1], iv[0]))
    for (s0, e0), (s1, e1) in zip(out, out[1:], strict=False):
        if not (e0 < e1 and s0 <= s1):
            return None
    if any(s > e for s, e in out):
        return None
    return out


def _shift(d: dt.date, n: int, unit: str) -> dt.date:
    if unit == "days":
        return d + dt.timedelta(days=n)
    y, m = divmod(d.month - 1 + n, 12)
    y += d.year
    return dt.date(y, m + 1, min(d.day, calendar.monthrange(y, m + 1)[1]))


def _birthday(born: ir.Value, year: ir.Value) -> ir.Value:
    """The birthday of someone born on ``born`` in ``year``; 29 February falls on 1 March in
    other years (as :meth:`~pophealth.query.compile.Compiler.expr` counts age)."""
    m, d = born.month().cast("int64"), born.day().cast("int64")
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    moved = (m == 2) & (d == 29) & ~leap
    return ibis.date(year, ibis.cases((moved, 3), else_=m), ibis.cases((moved, 1), else_=d))


def _first_at_least(x: ir.Value, thresholds: Sequence[Any], strict: bool) -> ir.Value:
    """The first k with ``thresholds[k] >= x`` (``> x`` when ``strict``), ``n`` when none;
    ``thresholds`` non-decreasing. Month ends or month starts one step of months apart
    (monthly, quarterly, yearly intervals and their month shifts) by arithmetic on the
    month number — with a few exceptions (a month end shifted back a year onto 28 February
    of a leap year) tested on their own; thresholds in a few runs evenly spaced in days
    (weekly or daily intervals; a year back across 29 February) by arithmetic on the
    days; anything else by a binary search written as nested CASE expressions."""
    regular = _regular_months(thresholds)
    if regular is not None:
        kind, m0, step, odd = regular
        mx = x.year().cast("int64") * 12 + x.month().cast("int64") - 1
        if kind == "end":  # g >= x: g's month >= x's; g > x: also past x when x is a month end
            target = mx + _is_month_end(x).cast("int64") if strict else mx
        else:  # g >= x: g's month > x's unless x is a 1st; g > x: g's month > x's
            target = mx + 1 if strict else mx + (x.day() != 1).cast("int64")
        ahead = ibis.greatest(target - m0, ibis.literal(0, type="int64"))
        k = ahead if step == 1 else (ahead + (step - 1)) // step
        k = ibis.least(k.cast("int64"), ibis.literal(len(thresholds), type="int64"))
        if not odd:
            return k
        # x in the month of an exception: that threshold decides (the months before and
        # after hold thresholds below and above x)
        cases = []
        for e in odd:
            g = thresholds[e]
            hit = (x < g) if strict else (x <= g)
            month = ibis.literal(m0 + step * e, type="int64")
            cases.append((mx == month, ibis.cases((hit, e), else_=e + 1).cast("int64")))
        return ibis.cases(*cases, else_=k)

    segments = _day_segments(thresholds)
    if segments is not None:
        # the k sought is the number of thresholds below x (at or below x when strict),
        # counted in each run of thresholds evenly spaced in days by arithmetic
        total = None
        for first, step, size in segments:
            days = x.delta(ibis.literal(first, type="date"), unit="day").cast("int64")
            if step == 0:  # the same date ``size`` times
                below = (days > 0) if not strict else (days >= 0)
                count = ibis.cases((below, size), else_=0).cast("int64")
            else:  # (whole numbers >= 0 divided: the same on every engine)
                ahead = days + (step - 1 if not strict else step)
                count = ibis.least(
                    ibis.greatest(ahead, ibis.literal(0, type="int64")) // step,
                    ibis.literal(size, type="int64"),
                ).cast("int64")
            total = count if total is None else total + count
        return total

    def search(a: int, b: int) -> ir.Value:
        if a == b:
            return ibis.literal(a, type="int64")
        mid = (a + b) // 2
        g = thresholds[mid]
        hit = (x < g) if strict else (x <= g)
        return ibis.cases((hit, search(a, mid)), else_=search(mid + 1, b))

    return search(0, len(thresholds))


#: Runs of evenly spaced thresholds counted by arithmetic at most; more: a binary search.
MAX_DAY_SEGMENTS = 6


def _day_segments(thresholds: Sequence[Any]) -> list[tuple[dt.date, int, int]] | None:
    """The thresholds as runs evenly spaced in days, ``(first, step in days, size)``, each
    as long as it can be, when there are at most :data:`MAX_DAY_SEGMENTS` of them."""
    if not thresholds or not all(type(g) is dt.date for g in thresholds):
        return None
    out: list[tuple[dt.date, int, int]] = []
    i, n = 0, len(thresholds)
    while i < n:
        step = (thresholds[i + 1] - thresholds[i]).days if i + 1 < n else 1
        j = i + 1
        while j < n and (thresholds[j] - thresholds[j - 1]).days == step:
            j += 1
        out.append((thresholds[i], step, j - i))
        if len(out) > MAX_DAY_SEGMENTS:
            return None
        i = j
    return out


def _month_no(d: dt.date) -> int:
    return d.year * 12 + d.month - 1


def _regular_months(thresholds: Sequence[Any]) -> tuple[str, int, int, list[int]] | None:
    """``(kind, first month number, step, exceptions)`` when the thresholds fall one in
    each of months ``m0 + step * k`` and are the last days (``"end"``) or the 1sts
    (``"start"``) of their months but for at most two (``exceptions``: their k)."""
    if len(thresholds) < 2 or not all(type(g) is dt.date for g in thresholds):
        return None
    months_ = [_month_no(g) for g in thresholds]
    step = months_[1] - months_[0]
    if step < 1 or any(m != months_[0] + step * k for k, m in enumerate(months_)):
        return None
    not_start = [k for k, g in enumerate(thresholds) if g.day != 1]
    not_end = [
        k for k, g in enumerate(thresholds) if g.day != calendar.monthrange(g.year, g.month)[1]
    ]
    kind, odd = ("start", not_start) if len(not_start) < len(not_end) else ("end", not_end)
    if len(odd) > 2:
        return None
    return kind, months_[0], step, odd


def _is_month_end(x: ir.Value) -> ir.Value:
    """True on the last day of a month (leap years counted), by integer arithmetic."""
    y, m = x.year().cast("int64"), x.month().cast("int64")
    leap = ((y % 4 == 0) & (y % 100 != 0)) | (y % 400 == 0)
    last = ibis.cases(
        (m.isin([4, 6, 9, 11]), 30),
        (m == 2, ibis.cases((leap, 29), else_=28)),
        else_=31,
    )
    return x.day().cast("int64") == last


class _Range:
    """A filter as a range of intervals: a comparison, a conjunction, or a static
    condition that, when true, keeps the row in every interval."""

    def __init__(self, kind: str, parts: tuple):
        self.kind, self.parts = kind, parts

    def series(self) -> list[Series]:
        """The values the range is computed from (none depends on the interval)."""
        if self.kind in ("cmp", "static"):
            return [self.parts[0]]
        if self.kind == "and":
            return [s for p in self.parts for s in p.series()]
        return [self.parts[0], *self.parts[1].series()]

    def conjuncts(self) -> list[_Range]:
        """The ranges this one is the conjunction of (itself when not an "and")."""
        if self.kind == "and":
            return [c for p in self.parts for c in p.conjuncts()]
        return [self]


class Timeline:
    """Change-point evaluation of one set of measures over sorted intervals."""

    #: merge adjacent runs with the same predicate outcomes (:meth:`_merged`); switched off
    #: only to compare against, in tests and benchmarks
    merge_runs = True
    #: count True/False measures over at most 62 intervals by bit masks
    #: (:mod:`pophealth.query.masks`) rather than at change points; switched off only to
    #: compare against, in tests and benchmarks
    use_masks = True

    def __init__(self, con: Any, intervals: Sequence[Interval]):
        self.intervals = list(intervals)
        self.n = len(self.intervals)
        self.c = Compiler(con, intervals=self.intervals)
        self.starts = [s for s, _ in self.intervals]
        self.ends = [e for _, e in self.intervals]
        self._dyn: dict[tuple, Series] = {}  # interval-dependent leaves
        self._static: dict[tuple, Series] = {}
        self._flips: list[tuple] = []  # ("cmp", Series, op, g) | ("age", dob, G, thresholds)
        self._flip_keys: dict[tuple, int] = {}
        self._flip_nodes: dict[tuple, tuple[int, Series]] = {}
        #: When set, the only flips whose columns are computed (the masks' own choice).
        self.needed_flips: set[int] | None = None
        self._runs: dict[tuple, ir.Table] = {}
        self._pools: dict[tuple, Any] = {}
        #: leaves computed without runs (see :mod:`pophealth.query.masks`): not in families
        self.direct: set[tuple] = set()
        #: first/last-row runs as interval masks (``_b``) in place of ``_kf``/``_kt``
        self.bit_runs = False
        #: run keys of "last day" leaves the masks read only through conditions: their
        #: runs are left as the days, ``_lo``/``_hi``/``_day`` (no window), and the masks
        #: carry each day's outcome forward (:meth:`pophealth.query.masks.MaskPlan._runs_masks`)
        self.day_keys: set[tuple] = set()
        #: those of :attr:`day_keys` whose days are their rows, not combined by day: the
        #: masks decide a day's conditions from its rows
        #: (:meth:`pophealth.query.masks.MaskPlan._rows_decide`)
        self.row_day_keys: set[tuple] = set()
        self._cached: list[Any] = []

    # -- analysis (no query is built) ---------------------------------------------------
    def dep(self, node: Any) -> bool:
        return self.c.depends_on_interval(node)

    def pure(self, s: Series) -> list[dt.date] | None:
        """The values per interval of ``s`` when it is built only from the index date /
        interval start and shifts (None otherwise)."""
        if s.op == "index_date":
            return list(self.ends)
        if s.op == "interval_start":
            return list(self.starts)
        if s.op == "shift":
            base = self.pure(s.args[0])
            if base is None:
                return None
            d = s.args[1]
            out = [_shift(v, d.n, d.unit) for v in base]
            if any(b < a for a, b in zip(out, out[1:], strict=False)):
                raise Unsupported(f"{s.desc} does not move forward with the intervals")
            return out
        return None

    def _comparison(self, s: Series) -> tuple[Series, str, list[dt.date]] | None:
        """``(x, op, g)`` with ``x OP g_k`` when ``s`` compares a value that does not
        depend on the interval with one built from the index date alone."""
        if s.op not in _CMP:
            return None
        a, b = s.args
        if not self.dep(a):
            g = self.pure(b)
            if g is not None:
                return a, s.op, g
        if not self.dep(b):
            g = self.pure(a)
            if g is not None:
                return b, _MIRROR[s.op], g
        return None

    def _age_threshold(self, s: Series) -> tuple[Series, list[dt.date], list[int]] | None:
        """``(dob, g, ages)`` when ``s`` compares age on an index-date function with a whole
        number: it can flip only when the age reaches one of ``ages``."""
        if s.op not in (*_CMP, "ne"):
            return None
        a, b = s.args
        op = s.op
        if b.op == "age" and a.op == "lit":
            a, b, op = b, a, _MIRROR.get(op, op)
        if a.op != "age" or b.op != "lit" or isinstance(b.args[0], bool):
            return None
        if not isinstance(b.args[0], int):
            return None
        dob, on = a.args
        g = self.pure(on)
        if g is None or self.dep(dob):
            return None
        c = b.args[0]
        ages = {"ge": [c], "lt": [c], "gt": [c + 1], "le": [c + 1]}.get(op, [c, c + 1])
        return dob, g, ages

    def analyse(self, nodes: Sequence[Series]) -> None:
        """Record the leaves and flips of ``nodes``; :class:`Unsupported` when a value
        might change between change points."""
        for node in nodes:
            self._walk(node)

    def _walk(self, s: Series) -> None:
        if s.error:
            raise QueryError(s.error)
        if not self.dep(s):
            for leaf in self.c._leaves([s]):
                self._static.setdefault(leaf.key, leaf)
            return
        rewritten = self.c._rewrite(s)
        if rewritten is not None:
            self._walk(rewritten)
            return
        if s.op in LEAF_OPS:
            self._leaf(s)
            return
        cmp = self._comparison(s)
        if cmp is not None:
            self._static_parts(cmp[0])
            self._flip(s, "cmp", *cmp)
            return
        age = self._age_threshold(s)
        if age is not None:
            self._static_parts(age[0])
            self._flip(s, "age", *age, None)
            return
        if s.op == "age":
            dob, on = s.args
            g = self.pure(on)
            if g is None or self.dep(dob):
                raise Unsupported(f"{s.desc}: age on a date that is not a shifted index date")
            self._static_parts(dob)
            years = list(range(g[0].year, g[-1].year + 1))
            self._flip(None, "age", dob, g, None, years)
            return
        if s.op in ("index_date", "interval_start", "shift") and self.pure(s) is not None:
            raise Unsupported(f"{s.desc} is used as a value: it changes in every interval")
        for child in s.args:
            for x in _series_in(child):
                self._walk(x)

    def _flip(self, node: Series | None, *flip: Any) -> None:
        """Record a patient-level flip once (measures repeat their cohort's conditions),
        and ``node`` (the comparison) as evaluated by it (:meth:`_flip_columns`)."""
        key = tuple(
            x.key if isinstance(x, Series) else tuple(x) if isinstance(x, list) else x for x in flip
        )
        if key not in self._flip_keys:
            self._flip_keys[key] = len(self._flips)
            self._flips.append(flip)
        if node is not None:
            self._flip_nodes[node.key] = (self._flip_keys[key], node)

    def _static_parts(self, s: Series) -> None:
        for leaf in self.c._leaves([s]):
            self._static.setdefault(leaf.key, leaf)

    def _leaf(self, leaf: Series) -> None:
        if leaf.key in self._dyn:
            return
        op = leaf.op
        if op == "lookup":
            key = leaf.args[0]
            if key.op not in ("pick", "day", "lookup") or not self.dep(key):
                raise Unsupported(f"{leaf.desc}: looked up by a computed key")
            self._leaf(key)
        elif op in ("agg", "pick", "day"):
            frame = leaf.args[0]
            if frame.error:
                raise QueryError(frame.error)
            if any(self.dep(o) for o in frame._order):
                raise Unsupported(f"{leaf.desc}: sorted by an interval-dependent value")
            value = leaf.args[2] if op in ("agg", "day") else None
            if _reads_neighbours(frame, value):
                raise Unsupported(f"{leaf.desc}: reads a previous or next row")
            if op == "agg" and leaf.args[2] is not None and self.dep(leaf.args[2]):
                raise Unsupported(f"{leaf.desc}: aggregates an interval-dependent value")
            if op == "pick" and self.dep(leaf.args[2]):
                raise Unsupported(f"{leaf.desc}: an interval-dependent column")
            _, dynamic = self.c._split(frame._filters)
            ranges = [self._range(f) for f in dynamic]
            for r in ranges:
                for x in r.series():
                    self._static_parts(x)
            if op == "day":
                _, _, column, _, _ = leaf.args
                if self.dep(column) or not all(
                    _monotone_in_date(x, frame) for r in ranges for x in _cmp_values(r)
                ):
                    raise Unsupported(f"{leaf.desc}: a day window not on the date alone")
        else:  # pcol is never interval-dependent
            raise Unsupported(f"{leaf.desc}: {op}")
        self._dyn[leaf.key] = leaf

    def on_the_date(self, frame: Frame) -> bool:
        """True when ``frame``'s interval-dependent filters compare only its date (or the
        date shifted) with the index date: its rows enter and leave the window in date
        order."""
        _, dynamic = self.c._split(frame._filters)
        ranges = [self._range(f) for f in dynamic]
        return all(_monotone_in_date(x, frame) for r in ranges for x in _cmp_values(r))

    def _range(self, f: Series) -> _Range:
        if not self.dep(f):
            return _Range("static", (f,))
        if f.op == "and":
            return _Range("and", tuple(self._range(x) for x in f.args))
        if f.op == "or":
            a, b = f.args
            if self.dep(a) and not self.dep(b):
                a, b = b, a
            if not self.dep(a):
                return _Range("or", (a, self._range(b)))
            raise Unsupported(f"{f.desc}: an or of two interval-dependent conditions")
        cmp = self._comparison(f)
        if cmp is None:
            raise Unsupported(f"{f.desc}: not a comparison with the index date")
        return _Range("cmp", cmp)

    # -- building --------------------------------------------------------------------------
    def bounds(self, r: _Range, t: ir.Table) -> tuple[ir.Value, ir.Value]:
        """``(lo, hi)``: the row is inside the filter for intervals ``lo <= k < hi``
        (``lo >= hi``: never)."""
        n = ibis.literal(self.n, type="int64")
        zero = ibis.literal(0, type="int64")
        if r.kind == "static":
            keep = self.c.expr(r.parts[0], t).fill_null(False)
            return ibis.cases((keep, zero), else_=n), ibis.cases((keep, n), else_=zero)
        if r.kind == "and":
            los, his = zip(*(self.bounds(p, t) for p in r.parts), strict=True)
            if len(los) == 1:
                return los[0], his[0]
            return ibis.greatest(*los), ibis.least(*his)
        if r.kind == "or":
            keep = self.c.expr(r.parts[0], t).fill_null(False)
            lo, hi = self.bounds(r.parts[1], t)
            return ibis.cases((keep, zero), else_=lo), ibis.cases((keep, n), else_=hi)
        x_s, op, g = r.parts
        x = self.c.expr(x_s, t)
        lo, hi = zero, n
        if op in ("le", "eq"):
            lo = _first_at_least(x, g, strict=False)
        if op == "lt":
            lo = _first_at_least(x, g, strict=True)
        if op in ("ge", "eq"):
            hi = _first_at_least(x, g, strict=True)
        if op == "gt":
            hi = _first_at_least(x, g, strict=False)
        missing = x.isnull()
        return ibis.cases((missing, n), else_=lo), ibis.cases((missing, zero), else_=hi)

    def _cache(self, t: ir.Table) -> ir.Table:
        t = t.cache()
        self._cached.append(t)
        return t

    def release(self) -> None:
        """Free what this evaluation materialised, and its literal tables."""
        for t in self._cached:
            release = getattr(t, "release", None)
            if release is not None:
                release()
        self._cached.clear()
        self.c.close()

    def _window(self, order: str) -> Any:
        return ibis.window(group_by="patient_id", order_by=order)

    def _rows(self, frame: Frame) -> tuple[ir.Table, list[_Range]]:
        """Rows of ``frame`` after its interval-independent filters, with ``_lo``/``_hi``,
        only rows inside the window in some interval."""
        static, dynamic = self.c._split(frame._filters)
        envelope = self._envelope(dynamic)
        t = self._tagged_by_codes(self._scan(frame._table, [static], envelope), [static])
        if t is not None:
            t = t.drop("_tag")
        else:
            t = self.c._staged(frame._table, [*static, *envelope], [])
        ranges = [self._range(f) for f in dynamic]
        need = [leaf for leaf in self.c._leaves([x for r in ranges for x in r.series()])]
        need = [leaf for leaf in need if self.c._name(leaf) not in t.columns]
        if need:
            pt, _ = self.c.leaf_table(need, with_interval=False)
            t = t.inner_join(pt, "patient_id")
        if not ranges:
            raise Unsupported(f"{frame!r}: no window on the index date")
        lo, hi = self.bounds(_Range("and", tuple(ranges)), t)
        t = t.mutate(_lo=lo.cast("int64"), _hi=hi.cast("int64"))
        return self._inside_somewhere(t, ranges), ranges

    def _inside_somewhere(self, t: ir.Table, ranges: Sequence[_Range]) -> ir.Table:
        """The rows of ``t`` (read within :meth:`_envelope` of ``ranges``) inside the
        window in some interval: all of them when the envelope is exact."""
        if self._envelope_is_exact(ranges):
            return t
        return t.filter(t._lo < t._hi)

    def _envelope_is_exact(self, ranges: Sequence[_Range]) -> bool:
        """Whether a row within :meth:`_envelope` of ``ranges`` is inside the window in
        some interval: comparisons of one date column of the row with dates, each interval's
        window holding a day, and each window reaching the day after the one before's ends
        (twelve months back from each month end), so the windows' days are the envelope's."""
        parts = [c for r in ranges for c in r.conjuncts()]
        if not parts or any(r.kind != "cmp" for r in parts):
            return False
        xs = {r.parts[0].key for r in parts}
        x = parts[0].parts[0]
        if len(xs) != 1 or x.dtype != "date" or self.c._leaves([x]):
            return False
        day = dt.timedelta(days=1)
        first = [dt.date.min] * self.n  # each interval's window as days first..last
        last = [dt.date.max] * self.n
        for r in parts:
            _, op, g = r.parts
            if len(g) != self.n or not all(type(v) is dt.date for v in g):
                return False
            for k, v in enumerate(g):
                if op in ("ge", "eq"):
                    first[k] = max(first[k], v)
                elif op == "gt":
                    first[k] = max(first[k], v + day)
                if op in ("le", "eq"):
                    last[k] = min(last[k], v)
                elif op == "lt":
                    last[k] = min(last[k], v - day)
        if any(a > b for a, b in zip(first, last, strict=True)):
            return False
        return all(
            first[k - 1] <= first[k] and last[k - 1] <= last[k] and first[k] - last[k - 1] <= day
            for k in range(1, self.n)
        )

    def _points(self, rows: ir.Table) -> ir.Table:
        """Each patient's change points of ``rows`` (``_k``) and the next one (``_kt``)."""
        n = self.n
        pts = ibis.union(
            rows.select("patient_id", _k=rows._lo),
            rows.filter(rows._hi < n).select("patient_id", _k=rows._hi),
            distinct=True,
        )
        return pts.mutate(_kt=pts._k.lead().over(self._window("_k")).fill_null(n))

    def _at_points(self, rows: ir.Table) -> ir.Table:
        pts = self._points(rows)
        pts = pts.select(_pid=pts.patient_id, _k=pts._k, _kt=pts._kt)
        j = rows.inner_join(
            pts, [rows.patient_id == pts._pid, rows._lo <= pts._k, rows._hi > pts._k]
        )
        return j.drop("_pid")

    def runs(self, leaf: Series) -> tuple[tuple, ir.Table]:
        """The runs of an interval-dependent leaf: ``patient_id, _kf, _kt`` and a column
        named by the compiler for each leaf sharing its source."""
        skey = self._run_key(leaf)
        if skey not in self._runs and self._family(leaf) is not None:
            self._shared_runs(leaf)
        if skey not in self._runs:
            group = [x for x in self._dyn.values() if self._run_key(x) == skey]
            kind = skey[0]
            if kind == "sweep":
                t = self._sweep_runs(group)
            elif kind == "agg":
                t = self._agg_runs(group)
            elif kind == "pick":
                t = self._pick_runs(group)
            elif kind == "day":
                t = self._day_runs(group)
            else:
                t = self._lookup_runs(group)
            kept = skey in self.row_day_keys and self._pooled([leaf.args[0]])
            self._runs[skey] = t if kept else self._cache(t)  # (rows kept: read them)
        return skey, self._runs[skey]

    def _run_key(self, leaf: Series) -> tuple:
        if leaf.op == "agg":
            frame = leaf.args[0]
            fns = {
                x.args[1]
                for x in self._dyn.values()
                if x.op == "agg" and x.args[0].key == frame.key
            }
            return ("sweep" if fns <= set(_SWEEP) else "agg", frame.key)
        return self.c._source_key(leaf)

    def _sweep_runs(self, leaves: list[Series]) -> ir.Table:
        """exists/count: +1 at each row's ``lo``, −1 at its ``hi``, summed per patient."""
        rows, (tag,) = self.frame_rows([leaves[0].args[0]])
        counted = any(x.args[1] == "count" for x in leaves)
        d = self._sweep(rows, [tag] if counted else [])
        cols = {}
        for leaf in leaves:
            cols[self.c._name(leaf)] = d._c if leaf.args[1] == "count" else d._c > 0
        return d.select("patient_id", "_kf", "_kt", **cols)

    def _sweep(self, rows: ir.Table, counted: list[int]) -> ir.Table:
        """``patient_id, _tag, _kf, _kt, _c``: the number of rows inside the window per
        patient and tag, where it is not 0; for tags not in ``counted`` only the points
        where "has a row" changes."""
        n = self.n
        deltas = ibis.union(
            rows.select("patient_id", "_tag", _k=rows._lo, _d=ibis.literal(1, type="int64")),
            rows.filter(rows._hi < n).select(
                "patient_id", "_tag", _k=rows._hi, _d=ibis.literal(-1, type="int64")
            ),
            distinct=False,
        )
        d = deltas.group_by(["patient_id", "_tag", "_k"]).aggregate(_d=deltas._d.sum())
        d = d.filter(d._d != 0)
        cum = ibis.cumulative_window(group_by=["patient_id", "_tag"], order_by="_k")
        d = d.mutate(_c=d._d.sum().over(cum))
        # exists: keep the points where "has a row" changes (the count before is c - d)
        changes = (d._c > 0) != (d._c - d._d > 0)
        d = d.filter(d._tag.isin(counted) | changes) if counted else d.filter(changes)
        nxt = d._k.lead().over(ibis.window(group_by=["patient_id", "_tag"], order_by="_k"))
        d = d.mutate(_kf=d._k, _kt=nxt.fill_null(n))
        return d.filter(d._c > 0)

    def _family(self, leaf: Series) -> tuple | None:
        """exists/count leaves (or first/last days with one rule) over frames of one table
        that differ only in filters on the row alone — SABA and statins in the last 12
        months, SBP and DBP — are computed in one pass: their shared key."""
        if leaf.op not in ("day", "agg") or leaf.key in self.direct:
            return None
        frame = leaf.args[0]
        static, dynamic = self.c._split(frame._filters)
        if self.c._leaves(static):
            return None
        if leaf.op == "day":
            _, direction, column, rule, _ = leaf.args
            if self.c._leaves([column]):
                return None
            return ("day", frame._table, tuple(f.key for f in dynamic), direction, column.key, rule)
        if leaf.op == "agg" and self._run_key(leaf)[0] == "sweep":
            return ("sweep", frame._table, tuple(f.key for f in dynamic))
        return None

    def _envelope(self, dynamic: Sequence[Series]) -> list[Series]:
        """Interval-independent conditions every row inside the window of ``dynamic`` in
        some interval meets: "date <= index date" is "date <= the last interval's end" and
        "date > index date - 12 months" is "date > the first interval's end - 12 months".
        Plain comparisons of a row's own column with a date, so the engine skips the rows
        (and Parquet row groups) no interval's window reaches."""
        out: list[Series] = []
        for f in dynamic:
            try:
                parts = self._range(f).conjuncts()
            except Unsupported:
                return []
            for r in parts:
                if r.kind != "cmp":
                    continue
                x, op, g = r.parts
                if self.c._leaves([x]) or not g:
                    continue  # a per-patient value: not a plain filter on the rows
                if op in ("le", "eq"):
                    out.append(x <= g[-1])
                elif op == "lt":
                    out.append(x < g[-1])
                if op in ("ge", "eq"):
                    out.append(x >= g[0])
                elif op == "gt":
                    out.append(x > g[0])
        return out

    def _scan(self, table: str, statics: list[list[Series]], envelope: list[Series]) -> ir.Table:
        """``table`` as a pass over frames with ``statics`` reads it (see
        :meth:`Compiler.scan`), within the ``envelope`` of their windows."""
        t = self.c.scan(table, statics)
        return t.filter([self.c.expr(e, t) for e in envelope]) if envelope else t

    def _tagged(self, frames: list[Frame]) -> ir.Table:
        """The rows of ``frames`` (one table, the same interval-dependent filters) from one
        scan, each tagged with the index of a frame it belongs to (a row may be in several),
        with ``_lo``/``_hi``."""
        statics = [self.c._split(f._filters)[0] for f in frames]
        envelope = self._envelope(self.c._split(frames[0]._filters)[1])
        t = self._scan(frames[0]._table, statics, envelope)
        by_codes = self._tagged_by_codes(t, statics)
        if by_codes is not None:
            _, dynamic = self.c._split(frames[0]._filters)
            ranges = tuple(self._range(f) for f in dynamic)
            lo, hi = self.bounds(_Range("and", ranges), by_codes)
            tagged = by_codes.mutate(_lo=lo.cast("int64"), _hi=hi.cast("int64"))
            return self._inside_somewhere(tagged, ranges)

        def holds(filters: list[Series], t: ir.Table) -> ir.Value:
            out = ibis.literal(True)
            for f in filters:
                out = out & self.c.expr(f, t).fill_null(False)
            return out

        keep = None
        for st in statics:
            keep = holds(st, t) if keep is None else keep | holds(st, t)
        t = self.c._pair(t.filter(keep), False)
        tagged = ibis.union(
            *[
                t.filter(holds(st, t)).mutate(_tag=ibis.literal(i, type="int64"))
                for i, st in enumerate(statics)
            ],
            distinct=False,
        )
        _, dynamic = self.c._split(frames[0]._filters)
        ranges = tuple(self._range(f) for f in dynamic)
        lo, hi = self.bounds(_Range("and", ranges), tagged)
        tagged = tagged.mutate(_lo=lo.cast("int64"), _hi=hi.cast("int64"))
        return self._inside_somewhere(tagged, ranges)

    def _tagged_by_codes(self, t: ir.Table, statics: list[list[Series]]) -> ir.Table | None:
        """When every frame is only "code in a list" (SBP and DBP; SABA and statins): the
        rows of ``t`` joined with a table of each frame's codes and its tag — one hash join
        in place of each list's IN tests (a row in two lists joins twice, once per tag).
        None otherwise."""
        matches = [st[0] if len(st) == 1 and st[0].op == "match" else None for st in statics]
        if any(m is None or m.args[2] is None or m.args[3] for m in matches):
            return None
        if len({m.args[1:3] for m in matches}) != 1:
            return None
        _, column, system_col, _, _ = matches[0].args
        rows = sorted(
            {
                (system, code, i)
                for i, m in enumerate(matches)
                for system, codes in m.args[4]
                for code in codes
            }
        )
        codes = self.c.literal_table(
            {
                "_sys": pa.array([r[0] for r in rows], pa.string()),
                "_code": pa.array([r[1] for r in rows], pa.string()),
                "_tag": pa.array([r[2] for r in rows], pa.int64()),
            }
        )
        j = t.inner_join(codes, [t[system_col] == codes._sys, t[column] == codes._code])
        return self.c._pair(j.select(*t.columns, "_tag"), False)

    def _pool(self, frame: Frame) -> tuple[ir.Table, dict[tuple, int]] | None:
        """The rows of every frame with ``frame``'s table and window that the passes read
        row by row (exists/count, first/last day, "has a row" masks) — SBP, DBP and
        reviews in the last 12 months; SABA and statins — from one scan, tagged by frame
        (the tags: ``{frame key: tag}``) and kept for the passes. None when ``frame`` has
        no such company, one pass reads them all, or its filters read per-patient values."""
        static, dynamic = self.c._split(frame._filters)
        if self.c._leaves(static):
            return None
        pkey = (frame._table, tuple(f.key for f in dynamic))
        if pkey not in self._pools:
            frames: dict[tuple, Frame] = {}
            passes = set()  # the queries that will read them: kept only for two or more
            columns = {"patient_id"}  # and what first/last days read (the date, a value)
            for x in self._dyn.values():
                if x.op == "agg" and self._run_key(x)[0] != "sweep" or x.op not in ("agg", "day"):
                    continue
                f = x.args[0]
                st, dy = self.c._split(f._filters)
                if f._table != frame._table or tuple(d.key for d in dy) != pkey[1]:
                    continue
                if self.c._leaves(st) or (x.op == "day" and self.c._leaves([x.args[2]])):
                    continue
                frames.setdefault(f.key, f)
                passes.add(("direct",) if x.key in self.direct else self._family(x) or x.key)
                if x.op == "day":
                    columns |= {DATE_COLUMNS[f._table], *_columns_of(x.args[2], f._table)}
            if len(frames) < 2 or len(passes) < 2:
                self._pools[pkey] = None
            else:
                rows = self._tagged(list(frames.values()))
                keepcols = [x for x in rows.columns if x in columns or x in ("_tag", "_lo", "_hi")]
                tags = {k: i for i, k in enumerate(frames)}
                rows = self._cache(rows.select(*keepcols))
                # (Spark may read a cached whole-number column back narrower)
                rows = rows.mutate(
                    _tag=rows._tag.cast("int64"),
                    _lo=rows._lo.cast("int64"),
                    _hi=rows._hi.cast("int64"),
                )
                self._pools[pkey] = (rows, tags)
        return self._pools[pkey]

    def _pooled(self, frames: list[Frame]) -> bool:
        """True when ``frames`` are read from their pool, kept already (:meth:`_pool`)."""
        pool = self._pool(frames[0])
        return pool is not None and all(f.key in pool[1] for f in frames)

    def frame_rows(self, frames: list[Frame]) -> tuple[ir.Table, list[int]]:
        """Rows of ``frames`` (one table, one window) with ``_tag`` (a row in several
        frames once per frame), ``_lo``, ``_hi``, and each frame's tag: from their pool when
        they have one, else from one scan."""
        pool = self._pool(frames[0])
        if pool is not None and self._pooled(frames):
            rows, tags = pool
            mine = [tags[f.key] for f in frames]
            return rows.filter(rows._tag.isin(mine)), mine
        if len(frames) > 1:
            return self._tagged(frames), list(range(len(frames)))
        rows, _ = self._rows(frames[0])
        return rows.mutate(_tag=ibis.literal(0, type="int64")), [0]

    def _shared_runs(self, leaf: Series) -> None:
        """The runs of every leaf in ``leaf``'s family from one pass (see :meth:`_family`);
        nothing when the family has one frame."""
        family = self._family(leaf)
        members = [
            x
            for x in self._dyn.values()
            if x.op == leaf.op and x.key not in self.direct and self._family(x) == family
        ]
        frames: dict[tuple, Frame] = {}
        for x in members:
            frames.setdefault(x.args[0].key, x.args[0])
        if len(frames) < 2:
            return
        keys = list(frames)
        tagged, tags = self.frame_rows(list(frames.values()))
        spans, as_rows = ["_kf", "_kt"], False
        if leaf.op == "day":
            days = all(self._run_key(x) in self.day_keys for x in members)
            as_rows = all(self._run_key(x) in self.row_day_keys for x in members)
            d = self._days(tagged, leaf, days_only=days, as_rows=as_rows)
            dates = days or any(x.args[4] == "date" for x in members)
            spans = ["_lo", "_hi"] if days else spans
            d = d.select("patient_id", "_tag", *spans, "_val", *(["_day"] if dates else []))
            spans += ["_day"] if days else []
        else:
            counted = sorted(
                {tags[keys.index(x.args[0].key)] for x in members if x.args[1] == "count"}
            )
            d = self._sweep(tagged, counted).select("patient_id", "_tag", "_kf", "_kt", "_c")
        if not (as_rows and self._pooled(list(frames.values()))):
            d = self._cache(d)  # only the columns the runs read (rows kept: read them)
        for i, fkey in enumerate(keys):
            mine = [x for x in members if x.args[0].key == fkey]
            part = d.filter(d._tag == tags[i])
            cols = {}
            for x in mine:
                if x.op == "day":
                    cols[self.c._name(x)] = part._day if x.args[4] == "date" else part._val
                else:
                    cols[self.c._name(x)] = part._c if x.args[1] == "count" else part._c > 0
            self._runs[self._run_key(mine[0])] = part.select("patient_id", *spans, **cols)

    def _agg_runs(self, leaves: list[Series]) -> ir.Table:
        """Any aggregate: the rows inside the window at each of the patient's change
        points, aggregated there."""
        rows, _ = self._rows(leaves[0].args[0])
        j = self._at_points(rows)
        aggs = {}
        for leaf in leaves:
            _, fn, arg = leaf.args
            name = self.c._name(leaf)
            if fn == "exists":
                aggs[name] = j.count() > 0
            elif fn == "count":
                aggs[name] = j.count()
            else:
                x = self.c.expr(arg, j)
                aggs[name] = {
                    "count_days": lambda x: x.nunique(),
                    "count_distinct": lambda x: x.nunique(),
                    "min": lambda x: x.min(),
                    "max": lambda x: x.max(),
                    "mean": lambda x: x.mean(),
                    "sum": lambda x: x.sum(),
                }[fn](x)
        out = j.group_by(["patient_id", "_k", "_kt"]).aggregate(**aggs)
        return out.rename(_kf="_k")

    def _pick_runs(self, leaves: list[Series]) -> ir.Table:
        """First/last row by an order: ranked among the rows inside the window at each of
        the patient's change points (as masks when :attr:`bit_runs`: each row takes the
        intervals of its window that no row before it in the order has taken — one window
        over the rows, no change points)."""
        frame, direction, _ = leaves[0].args
        rows, _ = self._rows(frame)
        if self.bit_runs:
            order = self.c._order_by(frame, rows, direction)
            bits = interval_bits(rows._lo, rows._hi)
            # the rows before in the order: one window frame ending on the row before
            before = ibis.window(group_by="patient_id", order_by=order, preceding=(None, 1))
            x = rows.mutate(_b0=bits, _before=bit_or(bits).over(before))
            values = {self.c._name(leaf): self.c.expr(leaf.args[2], x) for leaf in leaves}
            taken = x._b0 & x._before.fill_null(0)  # (no ~: see masks._without)
            x = x.select("patient_id", _b=x._b0 - taken, **values)
            return x.filter(x._b != 0)
        j = self._at_points(rows)
        rn = ibis.row_number().over(
            group_by=[j.patient_id, j._k], order_by=self.c._order_by(frame, j, direction)
        )
        values = {self.c._name(leaf): self.c.expr(leaf.args[2], j) for leaf in leaves}
        ranked = j.select("patient_id", "_k", "_kt", _rn=rn, **values)
        ranked = ranked.filter(ranked._rn == 0).drop("_rn")
        return ranked.rename(_kf="_k")

    def _day_runs(self, leaves: list[Series]) -> ir.Table:
        """First/last day with a same-day rule, the window on the date alone: a day's
        range ``[lo, hi)`` moves forward with the day, so the last day inside the window at
        k is the latest day with ``lo <= k`` (while ``k < hi``), the first the earliest
        with ``hi > k`` (from ``lo``)."""
        rows, _ = self.frame_rows([leaves[0].args[0]])
        key = self._run_key(leaves[0])
        days = key in self.day_keys
        d = self._days(rows, leaves[0], days_only=days, as_rows=key in self.row_day_keys)
        cols = {}
        for leaf in leaves:
            cols[self.c._name(leaf)] = d._day if leaf.args[4] == "date" else d._val
        if days:
            return d.select("patient_id", "_lo", "_hi", "_day", **cols)
        return d.select("patient_id", "_kf", "_kt", **cols)

    def _days(
        self, rows: ir.Table, leaf: Series, *, days_only: bool = False, as_rows: bool = False
    ) -> ir.Table:
        """``patient_id, _tag, _kf, _kt, _day, _val``: the chosen day's runs per tag
        (``days_only``: every day, ``patient_id, _tag, _day, _lo, _hi, _val``; with
        ``as_rows`` too, every row as a day of its own)."""
        frame, direction, column, rule, _ = leaf.args
        n = self.n
        date = frame._date
        per_row = rows.select(
            "patient_id",
            "_tag",
            "_lo",
            "_hi",
            _day=self.c.expr(date, rows),
            _val=self.c.expr(column, rows),
        )
        if days_only and as_rows:
            return per_row
        combine = {"min": lambda x: x.min(), "max": lambda x: x.max(), "mean": lambda x: x.mean()}
        days = per_row.group_by(["patient_id", "_tag", "_day"]).aggregate(
            _lo=per_row._lo.min(), _hi=per_row._hi.min(), _val=combine[rule](per_row._val)
        )
        if days_only:
            return days
        # _lo and _hi never decrease as the day increases (a window on the date alone), so
        # in day order the days sharing a _lo (_hi) are consecutive: the last day with a
        # given _lo is the one the next day's _lo exceeds, and that next _lo is the next
        # run's start (the first day with a given _hi: the one after a smaller _hi, which
        # ends the run before) — one window, no GROUP BY and join back
        w = ibis.window(group_by=["patient_id", "_tag"], order_by="_day")
        if direction == "last":
            nxt = days._lo.lead().over(w)
            d = days.mutate(_kf=days._lo, _kt=ibis.least(nxt.fill_null(n), days._hi), _nx=nxt)
            d = d.filter(d._nx.isnull() | (d._nx != d._lo))
        else:
            prev = days._hi.lag().over(w)
            d = days.mutate(_kf=ibis.greatest(prev.fill_null(0), days._lo), _kt=days._hi, _nx=prev)
            d = d.filter(d._nx.isnull() | (d._nx != d._hi))
        d = d.drop("_nx")
        return d.filter(d._kf < d._kt)

    def _lookup_runs(self, leaves: list[Series]) -> ir.Table:
        key, table, key_col, _ = leaves[0].args
        _, kr = self.runs(key)
        spans = [x for x in ("_kf", "_kt", "_b") if x in kr.columns]
        pk = kr.select("patient_id", *spans, _key=kr[self.c._name(key)])
        ref = self.c.table(table)
        ref = ref.select(
            _ref_key=ref[key_col], **{self.c._name(lf): ref[lf.args[3]] for lf in leaves}
        )
        j = pk.left_join(ref, pk._key == ref._ref_key)
        return j.select("patient_id", *spans, *[self.c._name(lf) for lf in leaves])

    def age_flip(self, age: Series) -> tuple[int, list[int]]:
        """Record the birthdays ``age`` (an age on a shifted index date) passes over the
        intervals: the flip's number (its columns ``_f{i}_{j}`` are the first interval on
        or after the birthday in ``years[j]``) and the years."""
        self._walk(age)
        dob, on = age.args
        g = self.pure(on)
        assert g is not None
        years = list(range(g[0].year, g[-1].year + 1))
        key = (dob.key, tuple(g), None, tuple(years))
        return self._flip_keys[("age", *key)], years

    def _flip_columns(self, pt: ir.Table) -> ir.Table:
        """``pt`` with the interval numbers where each patient-level comparison with the
        index date flips: ``_f{i}_{j}`` (null where the compared value is missing); only
        the flips in :attr:`needed_flips` when that is set."""
        cols = {}
        for i, flip in enumerate(self._flips):
            if self.needed_flips is not None and i not in self.needed_flips:
                continue
            if flip[0] == "cmp":
                _, x, op, g = flip
                value = self.c.expr(x, pt)
                lo, hi = self.bounds(_Range("cmp", (x, op, g)), pt)
                for j, k in enumerate((lo, hi)):
                    cols[f"_f{i}_{j}"] = ibis.cases((value.isnull(), ibis.null()), else_=k)
                continue
            _, dob, g, ages, years = flip
            born = self.c.expr(dob, pt)
            # age >= a from the a-th birthday (month arithmetic against the interval ends)
            if ages is not None:
                days = [_birthday(born, born.year().cast("int64") + a) for a in ages]
            else:  # every birthday in the years spanned
                days = [_birthday(born, ibis.literal(y, type="int64")) for y in years]
            points = [_first_at_least(d, g, strict=False) for d in days]
            for j, k in enumerate(points):
                cols[f"_f{i}_{j}"] = k.cast("int64")
        return pt.mutate(**cols) if cols else pt

    def _flip_points(self, pt: ir.Table) -> list[ir.Table]:
        """``patient_id, _k`` where a patient-level comparison with the index date flips
        (``pt``: the patients with their :meth:`_flip_columns`)."""
        out = []
        for i, flip in enumerate(self._flips):
            if flip[0] == "cmp":
                op = flip[2]
                which = [0] if op in ("le", "lt") else [1] if op in ("ge", "gt") else [0, 1]
            else:
                which = range(len(flip[3] if flip[3] is not None else flip[4]))
            out += [pt.select("patient_id", _k=pt[f"_f{i}_{j}"].cast("int64")) for j in which]
        return [t.filter(t._k.notnull()) for t in out]

    def _substitutes(self) -> dict[tuple, Any]:
        """The flipping comparisons as tests of the change point ``_k`` against the
        patient's flip columns: integer comparisons in place of date arithmetic (age on
        the interval's end) at every evaluation. Null where the compared value is missing,
        as the comparison itself."""
        out = {}
        for key, (i, node) in self._flip_nodes.items():
            flip = self._flips[i]
            if flip[0] == "cmp":

                def sub(t, i=i):
                    return (t._k >= t[f"_f{i}_0"]) & (t._k < t[f"_f{i}_1"])

            else:
                a, b = node.args
                op = node.op if a.op == "age" else _MIRROR.get(node.op, node.op)

                def sub(t, i=i, op=op):
                    first = t[f"_f{i}_0"]  # age reaches ages[0] at this k
                    if op in ("ge", "gt"):
                        return t._k >= first
                    if op in ("lt", "le"):
                        return t._k < first
                    inside = (t._k >= first) & (t._k < t[f"_f{i}_1"])
                    return inside if op == "eq" else ~inside

            out[key] = sub
        return out

    def prepare(self, keep: Series) -> ir.Table:
        """The candidates (patients who can be in a denominator in some interval: a
        condition :meth:`~pophealth.query.compile.Compiler.necessary` for ``keep``) with
        their interval-independent values and flip columns, cached — one pass per table for
        both; from here until :meth:`finish` every source reads only candidates' rows."""
        c = self.c
        need, anywhere = self._split_need(c.necessary(keep))
        static = list(self._static.values())
        known = {leaf.key for leaf in static}
        if need is not None:
            static += [leaf for leaf in c._leaves([need]) if leaf.key not in known]
        if static:
            pt, _ = c.leaf_table(static, with_interval=False)
        else:
            pt = c.table("patients").select("patient_id")
        if need is not None:
            pt = pt.filter(c.expr(need, pt).fill_null(False))
        for table in anywhere:  # "has a row in the table": a semi-join, no count per patient
            pt = pt.semi_join(c.table(table).select("patient_id"), "patient_id")
        pt = self._cache(self._flip_columns(pt))
        c.restrict = c.restrict_patients = pt.select("patient_id")
        return pt

    def _split_need(self, need: Series | None) -> tuple[Series | None, list[str]]:
        """``need`` without the conditions every one of its ``|``-branches requires that
        are "has any row in table T" (registered at some time: the tables, returned, are
        semi-joined rather than counted per patient)."""
        if need is None:
            return None, []

        def flat(s: Series, op: str) -> list[Series]:
            return [y for x in s.args for y in flat(x, op)] if s.op == op else [s]

        branches = [flat(b, "and") for b in flat(need, "or")]
        keys = [{x.key for x in b} for b in branches]
        common = set.intersection(*keys)
        anywhere = {}
        for x in branches[0]:
            if x.key not in common or x.op != "agg" or x.args[1] != "exists":
                continue
            frame = x.args[0]
            if not frame._filters and not frame._order and not frame.error:
                anywhere[x.key] = frame._table
        if not anywhere:
            return need, []
        rest = []
        for b in branches:
            kept = [x for x in b if x.key not in anywhere]
            if not kept:  # a branch that needed only those rows: the rest is no condition
                return None, sorted(set(anywhere.values()))
            part = kept[0]
            for x in kept[1:]:
                part = part & x
            rest.append(part)
        out = rest[0]
        for x in rest[1:]:
            out = out | x
        return out, sorted(set(anywhere.values()))

    def finish(self) -> None:
        self.c.restrict = self.c.restrict_patients = None
        self.c.substitutes = {}

    def counts(self, variables: dict[str, Series], keep: Series) -> ir.Table:
        """Evaluate ``variables`` at every patient's change points: a table with
        ``patient_id, _k, _kn`` (the next change point) and one column per variable, for the
        rows where ``keep`` holds."""
        n = self.n
        c = self.c
        pt = self.prepare(keep)
        candidates = pt.select("patient_id")
        try:
            runs = {}
            for leaf in list(self._dyn.values()):
                skey, t = self.runs(leaf)
                runs[skey] = t
            # runs read only as lookup keys are not joined: their lookups carry their runs
            used = {leaf.key for leaf in c._leaves([*variables.values(), keep])}
            joined = [
                t
                for skey, t in runs.items()
                if any(x.key in used for x in self._dyn.values() if self._run_key(x) == skey)
            ]
            if self.merge_runs:
                uses = self._uses([*variables.values(), keep])
                joined = [self._merged(t, uses) for t in joined]
            points = [candidates.select("patient_id", _k=ibis.literal(0, type="int64"))]
            for t in joined:
                points.append(t.filter(t._kf > 0).select("patient_id", _k=t._kf.cast("int64")))
                points.append(t.filter(t._kt < n).select("patient_id", _k=t._kt.cast("int64")))
            for t in self._flip_points(pt):
                points.append(t.filter((t._k > 0) & (t._k < n)))
            e = ibis.union(*points, distinct=False).distinct()
            e = e.mutate(_kn=e._k.lead().over(self._window("_k")).fill_null(n))
            iv = c.interval_table()
            e = e.inner_join(iv, e._k == iv.interval_id).drop("interval_id")
            t = e.inner_join(pt, "patient_id")
            for r in joined:
                names = [x for x in r.columns if x not in ("patient_id", "_kf", "_kt")]
                r = r.select(*names, _rp=r.patient_id, _rkf=r._kf, _rkt=r._kt)
                t = t.left_join(r, [t.patient_id == r._rp, t._k >= r._rkf, t._k < r._rkt])
                t = t.drop("_rp", "_rkf", "_rkt")
            c.substitutes = self._substitutes()
            cols = {name: c.expr(s, t) for name, s in variables.items()}
            wide = t.filter(c.expr(keep, t).fill_null(False))
            return wide.select("patient_id", "_k", "_kn", **cols)
        finally:
            self.finish()

    def _uses(self, nodes: Sequence[Series]) -> dict[tuple, dict[tuple, Series] | None]:
        """How the evaluated expressions read each leaf: ``{leaf key: {predicate key:
        predicate}}`` when every use is a comparison with a literal, ``is_null`` /
        ``is_not_null`` or ``isin`` a list, ``None`` when some use reads the value itself
        (walked as :meth:`~pophealth.query.compile.Compiler.expr` compiles, rewrites
        included)."""
        out: dict[tuple, dict[tuple, Series] | None] = {}

        def use(leaf: Series, pred: Series | None) -> None:
            if pred is None:
                out[leaf.key] = None
            elif out.get(leaf.key, {}) is not None:
                out.setdefault(leaf.key, {})[pred.key] = pred

        def walk(s: Series) -> None:
            rewritten = self.c._rewrite(s)
            if rewritten is not None:
                walk(rewritten)
                return
            if s.op in LEAF_OPS:
                use(s, None)
                return
            leaf = _predicate_leaf(s)
            if leaf is not None and self.c._rewrite(leaf) is None:
                use(leaf, s)
                return
            for child in s.args:
                for x in _series_in(child):
                    walk(x)

        for node in nodes:
            walk(node)
        return out

    def _merged(self, t: ir.Table, uses: dict[tuple, dict[tuple, Series] | None]) -> ir.Table:
        """Predicate abstraction of a runs table: adjacent runs of a patient (one ends where
        the next starts) whose leaves give the same outcome for every predicate the
        expressions apply to them (the value itself when some use reads it) become one run
        with the first run's values. Every expression then evaluates the same at the merged
        run's points, with fewer change points ("SABA issues in 12 months >= 6" changes only
        when the count crosses 6; "latest SBP < 140" when a reading crosses 140, appears or
        leaves the window). Leaves not read at all do not count; ``t`` unchanged when every
        leaf is read as a value."""
        names = [x for x in t.columns if x not in ("patient_id", "_kf", "_kt")]
        leaves = {self.c._name(x): x for x in self._dyn.values()}
        sig: dict[str, ir.Value] = {}
        raw: list[str] = []
        for name in names:
            leaf = leaves.get(name)
            if leaf is None or leaf.key not in uses:
                continue  # not read by the expressions (a lookup key, another measure set)
            preds = uses[leaf.key]
            if preds is None:
                raw.append(name)
                continue
            for p in preds.values():
                v = self.c.expr(p, t)
                # (not "v IS NULL": for v itself "x IS NULL" that is SQL Spark cannot read)
                sig[f"_p{len(sig)}"] = ibis.cases((v, 1), (~v, 0), else_=2)
        if not sig and len(raw) == len(names):
            return t
        # one sort: a run starts an island unless the one before ends where it starts with
        # the same outcomes, and ends it unless the one after continues it the same way;
        # after dropping the runs inside islands, an island's end is its last run's
        w = self._window("_kf")
        x = t.mutate(**sig)

        def same(step: str) -> ir.Value:
            other = getattr(x._kt if step == "lag" else x._kf, step)().over(w)
            out = other == (x._kf if step == "lag" else x._kt)
            for col in sig:
                out = out & (getattr(x[col], step)().over(w) == x[col])
            for col in raw:  # null-safe: a null next to a null is the same value
                y = getattr(x[col], step)().over(w)
                out = out & ((y == x[col]) | (y.isnull() & x[col].isnull()))
            return out.fill_null(False)

        x = x.mutate(_new=~same("lag"), _stop=~same("lead"))
        x = x.filter(x._new | x._stop)
        x = x.mutate(_end=ibis.cases((x._stop, x._kt), else_=x._kt.lead().over(w)))
        x = x.filter(x._new)
        return self._cache(x.select("patient_id", "_kf", *names, _kt=x._end))

    def totals(self, diffs: pd.DataFrame, groups: list[str]) -> pd.DataFrame:
        """Counts per interval from the differences at change points (``diffs``: signed
        ``numerator``, ``denominator`` and ``_n``, the rows counted, per group and ``_k``,
        and any ``..._patients`` columns, the patients behind a sum): cumulative sums over
        the intervals per group."""
        extra = [c for c in diffs.columns if c.endswith("_patients")]
        vals = ["numerator", "denominator", "_n", *extra]
        df = diffs
        cols = [*groups, "_k"]
        if len(df) == 0:
            return pd.DataFrame(
                columns=["interval_start", "interval_end", *groups, *vals[:2], *extra]
            )
        df = df.groupby(cols, dropna=False)[vals].sum()
        if groups:
            labels = df.index.droplevel("_k").unique()
            tuples = [g if isinstance(g, tuple) else (g,) for g in labels]
            full = pd.MultiIndex.from_tuples(
                [(*g, k) for g in tuples for k in range(self.n)], names=cols
            )
            df = df.reindex(full, fill_value=0)
            df = df.groupby(level=groups, dropna=False).cumsum()
        else:
            df = df.reindex(pd.Index(range(self.n), name="_k"), fill_value=0).cumsum()
        df = df.reset_index()
        df = df[df["_n"] > 0]
        ks = df["_k"].to_numpy()
        out = pd.DataFrame(
            {
                "interval_start": [self.starts[k] for k in ks],
                "interval_end": [self.ends[k] for k in ks],
            }
        )
        for g in groups:
            out[g] = df[g].to_numpy()
        out["numerator"] = df["numerator"].to_numpy().astype("int64")
        out["denominator"] = df["denominator"].to_numpy().astype("int64")
        for c in extra:
            out[c] = df[c].to_numpy().astype("int64")
        return out


def _series_in(arg: Any):
    if isinstance(arg, Series):
        yield arg
    elif isinstance(arg, list | tuple):
        for a in arg:
            yield from _series_in(a)


def _columns_of(x: Any, table: str) -> set[str]:
    """The columns of ``table`` that ``x`` reads."""
    out: set[str] = set()
    for s in _series_in(x):
        if s.op == "col" and s.args[0] == table:
            out.add(s.args[1])
        elif s.op not in LEAF_OPS:
            for a in s.args:
                out |= _columns_of(a, table)
    return out


def _predicate_leaf(s: Series) -> Series | None:
    """The leaf ``s`` tests when it is ``leaf OP literal`` / ``literal OP leaf``,
    ``leaf.is_null()``, ``leaf.is_not_null()`` or ``leaf.isin(values)``; else None."""
    if s.op in (*_CMP, "ne"):
        a, b = s.args
        if a.op == "lit" and b.op in LEAF_OPS:
            a, b = b, a
        return a if a.op in LEAF_OPS and b.op == "lit" else None
    if s.op in ("isnull", "notnull", "isin"):
        return s.args[0] if s.args[0].op in LEAF_OPS else None
    return None


def _cmp_values(r: _Range) -> list[Series]:
    """The row-side values compared with the index date in ``r``. A static conjunct only
    drops rows (an empty range), so it does not count; a static alternative (``or``) puts
    a row in every interval whatever its date, so it does (as a value that is no date)."""
    if r.kind == "cmp":
        return [r.parts[0]]
    if r.kind == "and":
        return [x for p in r.parts for x in _cmp_values(p)]
    if r.kind == "static":
        return []
    return [wrap(False)]


def _monotone_in_date(x: Series, frame: Frame) -> bool:
    """True when ``x`` is the frame's date column, possibly shifted (so it never decreases
    as the date increases)."""
    while x.op in ("shift", "to_date"):
        x = x.args[0]
    date_col = DATE_COLUMNS[frame._table]
    return (
        x.op == "col"
        and x.args[0] == frame._table
        and x.args[1] == date_col
        and (schema_table(frame._table)[date_col].type in ("date", "timestamp"))
    )
