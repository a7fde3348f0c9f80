"""The query model: small immutable nodes that programme code builds and the compiler
turns into Ibis expressions on whichever engine runs them.

Two kinds of value:

* a :class:`Series` — either **patient-level** (one value per patient: ``domain is None``)
  or **row-level** (one value per row of a many-rows-per-patient table: ``domain`` names the
  table, e.g. ``events.value``);
* a :class:`Frame` — the rows of one many-rows table that pass some filters
  (``events.matching(asthma).in_last(months=12)``), which aggregates to patient-level series
  (``.exists_for_patient()``, ``.count_for_patient()``, ...).

Each series knows its type (``bool``, ``int``, ``float``, ``date``, ``datetime``, ``string``):
a ``datetime`` is a date with its clock time (a column stored as a timestamp:
``events.datetime``, ``emergency_attendances.arrival_datetime``), kept as one when taken
per patient (``first_for_patient().arrival_datetime``). A mistake — comparing a date with a
number or with a datetime, mixing rows of two tables, a code list of the wrong system —
does not fail at once: it yields a series carrying the problem, and the dataset or measure
that receives it raises :class:`QueryError` naming the variable.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from typing import Any

from pophealth.codelists import SHARED_IDENTIFIERS, Codelist, medication_codes

NUMERIC = ("int", "float")
DTYPES = ("bool", "int", "float", "date", "datetime", "string")


class QueryError(ValueError):
    """A definition is wrong (types, tables, code systems); the message names the variable."""


class ColumnError(QueryError, AttributeError):
    """A table has no such column (an ``AttributeError`` too, so ``hasattr`` still works)."""


def did_you_mean(name: str, columns: Iterable[str], owner: object = None) -> str:
    """`` (did you mean 'value'?)`` for a misspelt ``name``: the closest of ``columns`` and
    of ``owner``'s public methods and properties, or "" when none is close."""
    import difflib

    options = list(columns)
    if name in ("date", "datetime"):  # a table dated by another name: its dates
        dates = [c for c in options if c.endswith(("_date", "_datetime")) or c == "authored"]
        if dates:
            return f" (did you mean {' or '.join(repr(c) for c in dates)}?)"
    if owner is not None:
        options += [a for a in dir(type(owner)) if not a.startswith("_")]
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


# -- durations -----------------------------------------------------------------------------


class Duration:
    """A calendar duration to add to or subtract from a date: :func:`days`, :func:`weeks`,
    :func:`months`, :func:`years`. Month and year steps clamp to the month's end (31 Jan +
    1 month = 28/29 Feb), on every engine."""

    __slots__ = ("n", "unit")

    def __init__(self, n: int, unit: str):
        if not isinstance(n, int) or isinstance(n, bool):
            raise QueryError(f"a duration needs a whole number of {unit}, not {n!r}")
        self.n, self.unit = n, unit

    def __neg__(self) -> Duration:
        return Duration(-self.n, self.unit)

    def __repr__(self) -> str:
        return f"{self.unit}({self.n})"

    @property
    def key(self) -> tuple:
        return ("duration", self.n, self.unit)


def days(n: int) -> Duration:
    return Duration(n, "days")


def weeks(n: int) -> Duration:
    return Duration(7 * n, "days")


def months(n: int) -> Duration:
    return Duration(n, "months")


def years(n: int) -> Duration:
    return Duration(12 * n, "months")


# -- series ---------------------------------------------------------------------------------


def _literal_dtype(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dt.datetime):
        return "datetime"
    if isinstance(value, dt.date):
        return "date"
    if callable(value):
        raise QueryError(
            f"cannot use {value!r} in a definition: it is a method or function, not a value "
            "(call it: add the brackets, e.g. .exists_for_patient())"
        )
    raise QueryError(f"cannot use {value!r} ({type(value).__name__}) in a definition")


def a_dtype(dtype: str) -> str:
    """A type named with its article, for messages: "a date", "an int"."""
    return f"an {dtype}" if dtype[:1] in ("a", "e", "i", "o", "u") else f"a {dtype}"


def _key_of(arg: Any) -> Any:
    if isinstance(arg, Series | Frame | Duration):
        return arg.key
    if isinstance(arg, Codelist):
        return ("codelist", id(arg))
    if isinstance(arg, list | tuple):
        return tuple(_key_of(a) for a in arg)
    if isinstance(arg, dict):
        return tuple(sorted((k, _key_of(v)) for k, v in arg.items()))
    if isinstance(arg, frozenset):
        return tuple(sorted(arg))
    return (type(arg).__name__, arg)


def wrap(value: Any) -> Series:
    """A series for ``value`` (series pass through; Python values become literals)."""
    if isinstance(value, Series):
        return value
    if isinstance(value, Frame):
        return _invalid(
            "a table of events is not a value: aggregate it first "
            "(.exists_for_patient(), .count_for_patient(), .last_for_patient()...)"
        )
    hint = getattr(type(value), "_not_a_value", None)
    if hint is not None:  # a first/last row, a day, an area, a practice: take a column
        return _invalid(hint(value))
    if value is None:
        return Series("null", (), "null", None, "None")
    if isinstance(value, Codelist):
        return _invalid(
            f"code list {value.name!r} is not a value to compare with: keep the rows with its "
            f"codes with frame.matching(codelist), or test a code column with "
            f"column.is_in(codelist)"
        )
    return Series("lit", (value,), _literal_dtype(value), None, repr(value))


def as_date(value: Any) -> Series:
    """``value`` for a place that takes a date: text ``"YYYY-MM-DD"`` read as that date (as
    intervals and index dates are given); anything else as :func:`wrap` makes it."""
    if isinstance(value, str):
        try:
            if len(value) != 10:
                raise ValueError
            return wrap(dt.date.fromisoformat(value))
        except ValueError:
            return _invalid(f"{value!r} is not a date (expected YYYY-MM-DD)")
    return wrap(value)


def as_day(value: Any) -> Series:
    """``value`` for a place that steps in whole days (a window's bound, ``age_on``): as
    :func:`as_date`, and a date-and-time taken as its day (a window by ``of=`` an
    operation's ``start_datetime`` holds the days from that operation's day)."""
    out = as_date(value)
    return out.date if out.dtype == "datetime" else out


def _invalid(problem: str) -> Series:
    return Series("invalid", (), "bool", None, "<invalid>", error=problem)


def _first_error(*items: Any) -> str | None:
    for item in items:
        if isinstance(item, Series | Frame) and item.error:
            return item.error
        if isinstance(item, list | tuple):
            err = _first_error(*item)
            if err:
                return err
    return None


def _domain(items: Iterable[Series]) -> tuple[str | None, str | None]:
    """The shared row-level table of ``items`` (None: all patient-level) or a problem."""
    domains = {s.domain for s in items if s.domain is not None}
    if len(domains) > 1:
        names = " and ".join(sorted(domains))
        return None, (
            f"combines rows of {names}: many-rows-per-patient series from different tables "
            "cannot be combined row by row; aggregate each to one value per patient first"
        )
    return (domains.pop() if domains else None), None


class Series:
    """A typed value per patient (``domain is None``) or per row of table ``domain``."""

    __slots__ = ("op", "args", "dtype", "domain", "desc", "error", "_key", "origin")

    def __init__(
        self,
        op: str,
        args: tuple,
        dtype: str,
        domain: str | None,
        desc: str,
        error: str | None = None,
    ):
        self.op, self.args, self.dtype, self.domain, self.desc = op, args, dtype, domain, desc
        self.error = error
        self._key = None
        #: a column's frame, when taken from filtered rows (``refs.date``): a column reads
        #: the row it is on, so read on rows not drawn from that frame it is a mistake
        #: (:func:`foreign_column`); not part of the key
        self.origin: Frame | None = None

    @property
    def key(self) -> tuple:
        if self._key is None:
            self._key = (self.op, _key_of(self.args), self.dtype)
        return self._key

    def __repr__(self) -> str:
        level = f"rows of {self.domain}" if self.domain else "per patient"
        err = f" INVALID: {self.error}" if self.error else ""
        return f"<{self.dtype} {level}: {self.desc}{err}>"

    def __bool__(self) -> bool:
        raise QueryError(
            f"{self.desc} is a query, not a Python True/False: combine conditions with "
            "& (and), | (or), ~ (not) and use when(...) instead of if; maximum_of(...) and "
            "minimum_of(...) instead of max() and min(); .is_in([...]) instead of in"
        )

    def __round__(self, digits: int = 0) -> Series:  # round(x, 1) as x.round(1)
        return self.round(digits)

    def __abs__(self) -> Series:
        out = case((self < 0, -self), otherwise=self)
        return Series._make(out.op, out.args, out.dtype, f"abs({self.desc})", (out,))

    __hash__ = None  # type: ignore[assignment]  # == builds a query

    # -- construction helpers ---------------------------------------------------------
    @staticmethod
    def _make(op: str, args: tuple, dtype: str, desc: str, operands: Sequence[Series]) -> Series:
        err = _first_error(*operands)
        domain, derr = _domain(operands)
        return Series(op, args, dtype, domain, desc, error=err or (derr and f"{desc} {derr}"))

    def _binary_numeric(self, other: Any, op: str, sym: str, reverse: bool = False) -> Series:
        other = wrap(other)
        a, b = (other, self) if reverse else (self, other)
        desc = f"({a.desc} {sym} {b.desc})"
        if op == "sub" and a.dtype == "datetime" == b.dtype:
            # the days between their dates, as for two dates (minutes_between for minutes)
            return Series._make("days_between", (b.date, a.date), "int", desc, (a, b))
        if a.dtype in ("date", "datetime") or b.dtype in ("date", "datetime"):
            if op == "sub" and a.dtype == "date" and b.dtype == "date":
                return Series._make("days_between", (b, a), "int", desc, (a, b))
            if op == "sub" and {a.dtype, b.dtype} == {"date", "datetime"}:
                return Series._make(op, (a, b), "int", desc, (a, b))._with_error(
                    _date_and_datetime(a, b, desc, "subtract")
                )
            hint = " (add or subtract days(n), months(n) or years(n) to move a date)"
            verb = {"add": "add", "sub": "subtract", "mul": "multiply", "div": "divide"}[op]
            return Series._make(op, (a, b), "int", desc, (a, b))._with_error(
                f"{desc}: cannot {verb} {a_dtype(a.dtype)} and {a_dtype(b.dtype)}{hint}"
            )
        if (
            a.dtype not in NUMERIC
            and a.dtype != "null"
            or b.dtype not in NUMERIC
            and b.dtype != "null"
        ):
            return Series._make(op, (a, b), "int", desc, (a, b))._with_error(
                f"{desc}: arithmetic needs numbers, not {a_dtype(a.dtype)} and {a_dtype(b.dtype)}"
            )
        dtype = "float" if "float" in (a.dtype, b.dtype) or op == "div" else "int"
        return Series._make(op, (a, b), dtype, desc, (a, b))

    def _with_error(self, problem: str) -> Series:
        if self.error is None:
            self.error = problem
        return self

    def _compare(self, other: Any, op: str, sym: str) -> Series:
        other = as_date(other) if self.dtype in ("date", "datetime") else wrap(other)
        desc = f"({self.desc} {sym} {other.desc})"
        out = Series._make(op, (self, other), "bool", desc, (self, other))
        if {self.dtype, other.dtype} == {"date", "datetime"}:
            out._with_error(_date_and_datetime(self, other, desc, "compare"))
        kinds = {
            ("number" if d in NUMERIC else d) for d in (self.dtype, other.dtype) if d != "null"
        }
        for s in (self, other):
            if s.dtype == "list":
                out._with_error(_list_column(s, desc))
        if len(kinds) > 1:
            a, b = ("a number" if d in NUMERIC else a_dtype(d) for d in (self.dtype, other.dtype))
            out._with_error(f"{desc}: cannot compare {a} with {b}")
        if "null" in (self.dtype, other.dtype):
            # in a query, a comparison with a missing value is missing, never True
            hint = {"eq": ".is_null()", "ne": ".is_not_null()"}.get(op, ".is_null()")
            out._with_error(
                f"{desc}: a comparison with None is never true (it is missing for every "
                f"patient); use {hint}"
            )
        if op in ("eq", "ne"):
            for a, b in ((self, other), (other, self)):
                out._with_error(_not_allowed(a, b, desc, op))
                out._with_error(_dotted_code(a, b, desc))
        return out

    # -- operators -----------------------------------------------------------------------
    def __add__(self, other: Any) -> Series:
        if isinstance(other, Duration):
            return self._shift(other)
        return self._binary_numeric(other, "add", "+")

    def __radd__(self, other: Any) -> Series:
        return self._binary_numeric(other, "add", "+", reverse=True)

    def __sub__(self, other: Any) -> Series:
        if isinstance(other, Duration):
            return self._shift(-other)
        return self._binary_numeric(other, "sub", "-")

    def __rsub__(self, other: Any) -> Series:
        return self._binary_numeric(other, "sub", "-", reverse=True)

    def __mul__(self, other: Any) -> Series:
        return self._binary_numeric(other, "mul", "*")

    def __rmul__(self, other: Any) -> Series:
        return self._binary_numeric(other, "mul", "*", reverse=True)

    def __truediv__(self, other: Any) -> Series:
        return self._binary_numeric(other, "div", "/")

    def __rtruediv__(self, other: Any) -> Series:
        return self._binary_numeric(other, "div", "/", reverse=True)

    def __neg__(self) -> Series:
        return self._binary_numeric(0, "sub", "-", reverse=True)

    def _unsupported(self, other: Any, sym: str, reverse: bool = False) -> Series:
        """``//``, ``%`` and ``**`` are not in the language: an invalid series naming what
        to use (in a dataset, a QueryError naming the variable), not Python's TypeError."""
        a, b = (_arg_text(other), self.desc) if reverse else (self.desc, _arg_text(other))
        return _invalid(
            f"({a} {sym} {b}): {sym} is not supported — for bands of age use "
            "patients.age_band_on(date, bands=(0, 5, 10, ...)), for a rounded number "
            "round(x) or x.round(digits), and * and / for other arithmetic"
        )

    def __floordiv__(self, other: Any) -> Series:
        return self._unsupported(other, "//")

    def __rfloordiv__(self, other: Any) -> Series:
        return self._unsupported(other, "//", reverse=True)

    def __mod__(self, other: Any) -> Series:
        return self._unsupported(other, "%")

    def __rmod__(self, other: Any) -> Series:
        return self._unsupported(other, "%", reverse=True)

    def __pow__(self, other: Any) -> Series:
        return self._unsupported(other, "**")

    def __rpow__(self, other: Any) -> Series:
        return self._unsupported(other, "**", reverse=True)

    def _shift(self, d: Duration) -> Series:
        desc = f"({self.desc} + {d!r})"
        dtype = "datetime" if self.dtype == "datetime" else "date"  # a time keeps its clock
        out = Series._make("shift", (self, d), dtype, desc, (self,))
        if self.dtype not in ("date", "datetime"):
            out._with_error(f"{desc}: {d!r} can only be added to a date, not {a_dtype(self.dtype)}")
        return out

    def __eq__(self, other: Any) -> Series:  # type: ignore[override]
        return self._compare(other, "eq", "==")

    def __ne__(self, other: Any) -> Series:  # type: ignore[override]
        return self._compare(other, "ne", "!=")

    def __lt__(self, other: Any) -> Series:
        return self._compare(other, "lt", "<")

    def __le__(self, other: Any) -> Series:
        return self._compare(other, "le", "<=")

    def __gt__(self, other: Any) -> Series:
        return self._compare(other, "gt", ">")

    def __ge__(self, other: Any) -> Series:
        return self._compare(other, "ge", ">=")

    def _logical(self, other: Any, op: str, sym: str, reverse: bool = False) -> Series:
        other = wrap(other)
        a, b = (other, self) if reverse else (self, other)
        desc = f"({a.desc} {sym} {b.desc})"
        out = Series._make(op, (a, b), "bool", desc, (a, b))
        for s in (a, b):
            if s.dtype not in ("bool", "null"):
                out._with_error(
                    f"{desc}: {sym} needs True/False conditions, but {s.desc} is {a_dtype(s.dtype)}"
                )
        return out

    def __and__(self, other: Any) -> Series:
        return self._logical(other, "and", "&")

    def __rand__(self, other: Any) -> Series:
        return self._logical(other, "and", "&", reverse=True)

    def __or__(self, other: Any) -> Series:
        return self._logical(other, "or", "|")

    def __ror__(self, other: Any) -> Series:
        return self._logical(other, "or", "|", reverse=True)

    def __invert__(self) -> Series:
        out = Series._make("not", (self,), "bool", f"~{self.desc}", (self,))
        if self.dtype != "bool":
            out._with_error(
                f"~{self.desc}: ~ (not) needs a True/False condition, not {a_dtype(self.dtype)}"
            )
        return out

    # -- methods ---------------------------------------------------------------------------
    def is_null(self) -> Series:
        return Series._make("isnull", (self,), "bool", f"{self.desc}.is_null()", (self,))

    def is_not_null(self) -> Series:
        return Series._make("notnull", (self,), "bool", f"{self.desc}.is_not_null()", (self,))

    def is_in(self, values: Iterable[Any] | Codelist) -> Series:
        """True where the value is one of ``values`` (a code column with a code list: use
        ``frame.matching(codelist)``, which also checks the system; given a code list, a
        code column of a table takes its codes of the systems that column can hold, and a
        list of none of them is an error)."""
        if self.dtype == "list":
            return _invalid(_list_column(self, f"{self.desc}.is_in(...)"))
        problem = None
        if isinstance(values, Codelist):
            codelist, allowed = values, _code_systems(self)
            usable = [sys for sys in codelist.systems if allowed is None or sys in allowed]
            if not usable:
                problem = (
                    f"{self.desc}.is_in({codelist.name}): code list {codelist.name!r} holds "
                    f"{'/'.join(codelist.systems)} codes but {self.desc} holds "
                    f"{'/'.join(allowed or ())} codes — it would match nothing"
                )
            elif "snomedct" in usable and set(allowed or ()) >= SHARED_IDENTIFIERS:
                why = not_products(codelist)
                if why:  # as in Frame.matching: a clinical list would match no issue
                    problem = (
                        f"{self.desc}.is_in({codelist.name}): code list {codelist.name!r} "
                        f"holds clinical SNOMED CT concepts, not medicinal products: {why}; "
                        f"it would match no row — match it against events, or use a dm+d list"
                    )
            values = sorted(set().union(*(codelist.codes_in(sys) for sys in usable)))
        elif isinstance(values, str | Series) or not isinstance(values, Iterable):
            return _invalid(
                f"{self.desc}.is_in({_arg_text(values)}): needs a list of values "
                '(.is_in(["a", "b"])) or a code list'
            )
        values = tuple(values)
        if self.dtype == "date":  # "2025-03-31" for a date, as everywhere a date goes
            read = [as_date(v) if isinstance(v, str) else None for v in values]
            values = tuple(
                r.args[0] if r is not None and r.op == "lit" else v
                for v, r in zip(values, read, strict=True)
            )
        desc = f"{self.desc}.is_in({len(values)} values)"
        out = Series._make("isin", (self, values), "bool", desc, (self,))
        if problem:
            out._with_error(problem)
        if values and all(isinstance(v, str) for v in values):
            for v in values:
                out._with_error(_not_allowed(self, wrap(v), desc))
                out._with_error(_dotted_code(self, wrap(v), desc))
        for v in values:
            vd = _literal_dtype(v)
            if ("number" if vd in NUMERIC else vd) != (
                "number" if self.dtype in NUMERIC else self.dtype
            ):
                out._with_error(
                    f"{desc}: {v!r} is {a_dtype(vd)} but {self.desc} is {a_dtype(self.dtype)}"
                )
                break
        return out

    def if_null_then(self, other: Any) -> Series:
        """The value, or ``other`` where it is missing."""
        other = as_date(other) if self.dtype == "date" else wrap(other)
        desc = f"{self.desc}.if_null_then({other.desc})"
        out = Series._make("coalesce", (self, other), self.dtype, desc, (self, other))
        if other.dtype != "null" and _kind(other.dtype) != _kind(self.dtype):
            out._with_error(
                f"{desc}: {other.desc} is {a_dtype(other.dtype)}, not {a_dtype(self.dtype)}"
            )
        return out

    def fill_unknown(self, label: str = "unknown") -> Series:
        """As text, with missing values as the explicit group ``label`` (for breakdowns)."""
        out = Series._make(
            "fill_unknown", (self, label), "string", f"{self.desc}.fill_unknown()", (self,)
        )
        if not isinstance(label, str):
            out._with_error(f"{self.desc}.fill_unknown({label!r}): the label must be text")
        return out

    def as_text(self) -> Series:
        """The value as text, the same on every engine: True/False as ``true``/``false``,
        a date as ``YYYY-MM-DD``, a date-and-time as ``YYYY-MM-DD HH:MM:SS`` (to the
        second), a number with up to 15 significant digits — whole numbers
        below 10^15 without ``.0`` (``100``), plain decimals from 0.0001 to 10^15
        (``12345678.5``), scientific notation beyond (``1e+300``, ``2.5e-05``); see
        :mod:`pophealth.query.text`. Missing stays missing."""
        return Series._make("as_text", (self,), "string", f"{self.desc}.as_text()", (self,))

    def round(self, digits: int = 0) -> Series:
        """The number rounded to ``digits`` decimal places, halves away from zero, by the
        same floating-point steps on every engine: its size times 10^digits, plus a half,
        rounded down. A decimal that a double holds just below or above a half may go either
        way: round(1.005, 2) is 1.0 (1.005 × 100 is 100.49999...), round(2.675, 2) is 2.68
        (2.675 × 100 comes to 267.5), though both are held just below the half."""
        out = Series._make("round", (self, digits), "float", f"round({self.desc})", (self,))
        if not isinstance(digits, int) or isinstance(digits, bool):
            out._with_error(f"round({self.desc}, {digits!r}): digits must be a whole number")
        if self.dtype not in NUMERIC:
            out._with_error(f"round({self.desc}): needs a number, not {a_dtype(self.dtype)}")
        return out

    def _date_part(self, part: str) -> Series:
        out = Series._make("date_part", (self, part), "int", f"{self.desc}.{part}", (self,))
        if self.dtype not in ("date", "datetime"):
            out._with_error(
                f"{self.desc}.{part}: only a date has a {part}, not {a_dtype(self.dtype)}"
            )
        return out

    @property
    def year(self) -> Series:
        return self._date_part("year")

    @property
    def month(self) -> Series:
        return self._date_part("month")

    @property
    def date(self) -> Series:
        """The day of a date-and-time (``rr.datetime.date``: the day the respiratory rate
        was taken), to compare it with a date; a date is its own day."""
        if self.dtype == "date":
            return self
        out = Series._make("to_date", (self,), "date", f"{self.desc}.date", (self,))
        if self.dtype != "datetime":
            out._with_error(
                f"{self.desc}.date: only a date-and-time has a day, not {a_dtype(self.dtype)}"
            )
        return out

    def days_until(self, other: Any) -> Series:
        """Whole days from this date to ``other`` (negative when ``other`` is earlier)."""
        return wrap(other) - self

    def to_category(self, codelist: Codelist, column: str | None = None) -> Series:
        """Map codes to the code list's category (e.g. ethnicity ``Grouping_6``); codes not
        in the list map to missing."""
        mapping = dict(codelist.category_map(column))
        desc = f"{self.desc}.to_category({codelist.name})"
        out = Series._make("map", (self, mapping, "string"), "string", desc, (self,))
        if self.dtype != "string":
            out._with_error(f"{desc}: only codes map to categories, not {a_dtype(self.dtype)}")
        return out

    def to_number(self, codelist: Codelist, column: str) -> Series:
        """Map codes to a numeric column of the code list (e.g. ``strength_mg``)."""
        mapping = dict(codelist.attribute_map(column))
        desc = f"{self.desc}.to_number({codelist.name}.{column})"
        out = Series._make("map", (self, mapping, "float"), "float", desc, (self,))
        if self.dtype != "string":
            out._with_error(f"{desc}: only codes map to numbers, not {a_dtype(self.dtype)}")
        return out


def _kind(dtype: str) -> str:
    return "number" if dtype in NUMERIC else dtype


def _date_and_datetime(a: Series, b: Series, desc: str, verb: str) -> str:
    """Why a date-and-time and a date cannot be compared (or subtracted) as they are, and
    the two ways to say what is meant."""
    stamp, day = (a, b) if a.dtype == "datetime" else (b, a)
    if stamp.op == "lit":
        return (
            f"{desc}: use a date, not a datetime: {stamp.args[0]!r} beside {day.desc}, which "
            f"has no clock time (for its day: {stamp.args[0].date()!r})"
        )
    return (
        f"{desc}: cannot {verb} a date-and-time ({stamp.desc}) and a date ({day.desc}), "
        f"which has no clock time: for its day write {stamp.desc}.date; to the second, "
        "use two date-and-times"
    )


def _list_column(column: Series, desc: str) -> str:
    """Why ``column``, a list of codes on each row (``admissions.procedures``), cannot be
    compared or tested with ``is_in``, and what keeps the rows holding a code instead."""
    where = ""
    if column.op == "col":
        table, name = column.args
        where = f" with {table}.matching(codelist, column={name!r})"
    return (
        f"{desc}: {column.desc} is a list of codes on each row, not one code: keep the rows "
        f"holding any code of a list{where} (a list in code: Codelist.of(system, codes))"
    )


def _schema_column(s: Series) -> Any:
    """The canonical column ``s`` reads as it is (a table's column, a patient's, the first
    or last row's, a looked-up area's or practice's), or None."""
    from pophealth.schema import table as schema_table

    if s.op == "pick":
        return _schema_column(s.args[2])
    where = {"col": lambda: s.args, "pcol": lambda: s.args, "lookup": lambda: s.args[1::2]}
    if s.op not in where:
        return None
    table, column = where[s.op]()
    try:
        return schema_table(table)[column]
    except KeyError:
        return None


def _not_allowed(column: Series, value: Series, desc: str, op: str = "eq") -> str | None:
    """Why comparing ``column`` with the text ``value`` says nothing — the column takes
    only certain values, and that is not one: ``patients.sex == "Female"`` is never true,
    ``!=`` always — or None."""
    if value.op != "lit" or not isinstance(value.args[0], str):
        return None
    col = _schema_column(column)
    allowed = getattr(col, "allowed", None)
    if not allowed or value.args[0] in allowed:
        return None
    return (
        f"{desc}: {value.args[0]!r} is not a value {column.desc} takes (one of "
        f"{', '.join(allowed)}), so it would be "
        + ("true for everybody with a value" if op == "ne" else "true for nobody")
    )


#: Coding systems whose codes may hold a dot as stored (Read v2 and CTV3: ``H33..``).
_DOTTED_SYSTEMS = frozenset({"readv2", "ctv3"})


def _dotted_code(column: Series, value: Series, desc: str) -> str | None:
    """Why comparing a code column with the text ``value`` says nothing — the code is
    written with a dot (``J45.9``) and the column's systems are stored without one
    (ICD-10 and OPCS-4 as ``J459``, ``R171``) — or None."""
    if value.op != "lit" or not isinstance(value.args[0], str) or "." not in value.args[0]:
        return None
    systems = _code_systems(column)
    if not systems or _DOTTED_SYSTEMS & set(systems):
        return None
    code = value.args[0]
    return (
        f"{desc}: {code!r} has a dot, but {column.desc} holds {'/'.join(systems)} codes "
        f"without the dot, as ingest stores them ({code.replace('.', '')!r}), so it would "
        "match no row"
    )


def _code_systems(s: Series) -> tuple[str, ...] | None:
    """The coding systems a code column can hold (``events.code``, a first or last row's
    code), or None for any other series."""
    if s.op == "pick":
        return _code_systems(s.args[2])
    if s.op != "col":
        return None
    table, column = s.args
    entry = CODE_COLUMNS.get(table, {}).get(column)
    return entry[1] if entry else None


# -- case / when ------------------------------------------------------------------------


class _When:
    def __init__(self, condition: Any):
        self.condition = wrap(condition)

    def then(self, value: Any) -> _Case:
        return _Case(((self.condition, wrap(value)),))


class _Case:
    def __init__(self, branches: tuple[tuple[Series, Series], ...]):
        self.branches = branches

    def when(self, condition: Any) -> _CaseWhen:
        return _CaseWhen(self, wrap(condition))

    def otherwise(self, value: Any) -> Series:
        return case(*self.branches, otherwise=value)


class _CaseWhen:
    def __init__(self, case_: _Case, condition: Series):
        self.case_, self.condition = case_, condition

    def then(self, value: Any) -> _Case:
        return _Case((*self.case_.branches, (self.condition, wrap(value))))


def when(condition: Any) -> _When:
    """``when(c1).then(v1).when(c2).then(v2).otherwise(v)`` — the first true branch wins."""
    return _When(condition)


def case(*branches: tuple[Any, Any], otherwise: Any = None) -> Series:
    """``case((cond1, value1), (cond2, value2), otherwise=default)``: the first true wins;
    no true branch and no ``otherwise`` gives missing."""
    *read, default = _dates_as_text([v for _, v in branches] + [otherwise])
    pairs = tuple((wrap(c), v) for (c, _), v in zip(branches, read, strict=True))
    values = [v for _, v in pairs] + [default]
    kinds = {_kind(v.dtype) for v in values if v.dtype != "null"}
    dtypes = [v.dtype for v in values if v.dtype != "null"]
    dtype = "float" if "float" in dtypes else (dtypes[0] if dtypes else "null")
    desc = (
        "case(" + ", ".join(f"{c.desc} -> {v.desc}" for c, v in pairs) + f", else {default.desc})"
    )
    operands = [s for pair in pairs for s in pair] + [default]
    out = Series._make("case", (pairs, default), dtype, desc, operands)
    if not pairs:
        out._with_error(
            "case() needs at least one (condition, value) branch: case((age < 18, 'child'), "
            "otherwise='adult')"
        )
    for c, _ in pairs:
        if c.dtype != "bool":
            out._with_error(f"{desc}: the condition {c.desc} is {a_dtype(c.dtype)}, not True/False")
    if len(kinds) > 1:
        out._with_error(f"{desc}: the branches mix types ({', '.join(sorted(kinds))})")
    return out


def maximum_of(*values: Any) -> Series:
    """The largest of ``values`` that are not missing (missing when all are); dates may be
    written as text: ``maximum_of(diagnosed, "2024-04-01")``."""
    return _greatest_least("greatest", values)


def minimum_of(*values: Any) -> Series:
    """The smallest of ``values`` that are not missing (missing when all are)."""
    return _greatest_least("least", values)


def _arg_text(value: Any) -> str:
    """An argument as a description shows it: a series by its description."""
    return value.desc if isinstance(value, Series) else repr(value)


def _dates_as_text(values: Sequence[Any]) -> tuple[Series, ...]:
    """``values`` as series, text read as a date (``"2024-04-01"``) when another of them
    is a date, as a date may be written wherever one goes."""
    items = tuple(wrap(v) for v in values)
    if any(v.dtype == "date" for v in items):
        items = tuple(
            as_date(v.args[0]) if v.op == "lit" and isinstance(v.args[0], str) else v for v in items
        )
    return items


def _greatest_least(op: str, values: Sequence[Any]) -> Series:
    items = _dates_as_text(values)
    dtypes = {v.dtype for v in items if v.dtype != "null"}
    dtype = "float" if "float" in dtypes else (next(iter(dtypes)) if dtypes else "null")
    desc = f"{op}({', '.join(v.desc for v in items)})"
    out = Series._make(op, items, dtype, desc, items)
    if len({_kind(d) for d in dtypes}) > 1:
        out._with_error(f"{desc}: mixes types {', '.join(sorted(dtypes))}")
    return out


def _elapsed_between(start: Any, end: Any, seconds: int, unit: str) -> Series:
    a, b = wrap(start), wrap(end)
    desc = f"{unit}_between({a.desc}, {b.desc})"
    out = Series._make("elapsed", (a, b, seconds), "float", desc, (a, b))
    for s in (a, b):
        if s.dtype == "date":
            out._with_error(
                f"{desc}: {s.desc} is a date, without its clock time: take a date-and-time "
                "(first_for_patient().datetime, not .date; a table's *_datetime column), or "
                "for whole days subtract two dates"
            )
        elif s.dtype != "datetime":
            what = "None" if s.dtype == "null" else a_dtype(s.dtype)
            out._with_error(f"{desc}: {s.desc} is {what}, not a date-and-time")
    return out


def minutes_between(start: Any, end: Any) -> Series:
    """The minutes from date-and-time ``start`` to date-and-time ``end``, each a patient's
    (``rr.datetime`` of ``events.matching(rr).last_for_patient()``) or a row's
    (``spo2.datetime``) — "SpO2 within an hour after the respiratory rate" is
    ``spo2.where((m >= 0) & (m <= 60))`` with ``m = minutes_between(rr.datetime,
    spo2.datetime)``. As :meth:`Frame.minutes_between`: to the second, each time cut to
    whole seconds; negative when ``end`` is earlier; missing when either is."""
    return _elapsed_between(start, end, 60, "minutes")


def hours_between(start: Any, end: Any) -> Series:
    """As :func:`minutes_between`, in hours (1.5 is an hour and a half)."""
    return _elapsed_between(start, end, 3600, "hours")


def hour_of_day(time: Any) -> Series:
    """The hour (0-23) of the clock time of date-and-time ``time``, a patient's
    (``last.datetime`` of a ``last_for_patient()``) or a row's — the current row of a row
    dataset (``hour_of_day(att.arrival_datetime)`` with ``att = RowDataset(...).row``), to
    break a row measure down by time of day or to pick out night-time rows. The hour is as
    recorded (clock time); missing when ``time`` is. On a frame's own rows,
    :meth:`Frame.hour_of_day` takes the column by name."""
    t = wrap(time)
    desc = f"hour_of_day({t.desc})"
    out = Series._make("clock_hour", (t,), "int", desc, (t,))
    if t.dtype == "date":
        out._with_error(
            f"{desc}: {t.desc} is a date, without its clock time: take a date-and-time "
            "(first_for_patient().datetime, not .date; a table's *_datetime column)"
        )
    elif t.dtype != "datetime":
        what = "None" if t.dtype == "null" else a_dtype(t.dtype)
        out._with_error(f"{desc}: {t.desc} is {what}, not a date-and-time")
    return out


# -- frames -----------------------------------------------------------------------------------

#: The date each many-rows table is windowed by.
DATE_COLUMNS = {
    "events": "date",
    "medications": "date",
    "admissions": "admission_date",
    "emergency_attendances": "arrival_datetime",
    "operations": "start_datetime",
    "questionnaire_responses": "authored",
    "registrations": "start_date",
    "addresses": "start_date",
}

_CLINICAL_SYSTEMS = ("snomedct", "ctv3", "readv2", "icd10", "opcs4", "loinc", "cvx")
#: Code columns a code list may be matched against: column -> (system column or None, the
#: systems that can appear there, whether the column is a list of codes).
CODE_COLUMNS: dict[str, dict[str, tuple[str | None, tuple[str, ...], bool]]] = {
    "events": {"code": ("system", _CLINICAL_SYSTEMS, False)},
    "medications": {"code": ("system", ("dmd", "snomedct", "rxnorm", "bnf"), False)},
    "admissions": {
        "primary_diagnosis": (None, ("icd10",), False),
        "all_diagnoses": (None, ("icd10",), True),
        "procedures": (None, ("opcs4",), True),
    },
    "emergency_attendances": {"diagnosis": ("diagnosis_system", ("snomedct", "icd10"), False)},
    "operations": {"code": ("system", ("opcs4", "snomedct"), False)},
}


#: SNOMED CT semantic tags (the bracketed end of a fully specified name, as an OpenCodelists
#: ``id,name`` download gives it) of concepts that are no medicinal product: a list named
#: only by these would match no prescription.
_NOT_PRODUCT_TAGS = frozenset(
    {
        "administrative concept",
        "assessment scale",
        "attribute",
        "body structure",
        "context-dependent category",
        "disorder",
        "disposition",
        "environment",
        "ethnic group",
        "event",
        "finding",
        "morphologic abnormality",
        "observable entity",
        "occupation",
        "organism",
        "person",
        "procedure",
        "qualifier value",
        "racial group",
        "record artifact",
        "regime/therapy",
        "situation",
        "social concept",
        "specimen",
        "staging scale",
        "substance",
    }
)
#: Semantic tags of medicinal products and devices (dm+d's and SNOMED CT's drug hierarchy).
_PRODUCT_TAGS = frozenset(
    {
        "clinical drug",
        "medicinal product",
        "medicinal product form",
        "packaged clinical drug",
        "physical object",
        "product",
        "real clinical drug",
        "real medicinal product",
        "real packaged clinical drug",
        "trade product",
    }
)
_SEMANTIC_TAG = re.compile(r"\(([a-z][a-z /-]*)\)\s*$")


def not_products(codelist: Codelist) -> str | None:
    """Why ``codelist``'s SNOMED CT codes cannot be medicinal products, or None when they
    may be: :meth:`Codelist.not_products` (its declaration, extension ids and other
    systems), and then its terms. Core ids alone cannot tell a finding from an older dm+d
    product, but a fully specified name can: when some term's semantic tag is a clinical
    one ("(disorder)", "(procedure)"...) and none is a product's, the list is clinical."""
    why = codelist.not_products()
    snomed = codelist.codes_in("snomedct")
    if why or not snomed or "dmd" in codelist.codes:
        return why
    tags = {}
    for code in sorted(snomed):
        found = _SEMANTIC_TAG.search(codelist.terms.get(code) or "")
        if found:
            tags[code] = found.group(1)
    if any(tag in _PRODUCT_TAGS for tag in tags.values()):
        return None
    clinical = [code for code, tag in tags.items() if tag in _NOT_PRODUCT_TAGS]
    if not clinical:
        return None
    code = clinical[0]
    return (
        f"its terms name concepts that are no medicinal product by their SNOMED CT semantic "
        f"tag ({codelist.terms[code]!r}, code {code}; {len(clinical)} of its {len(snomed)} "
        "codes are named so, none as a product)"
    )


def _one_identifier_space(
    by_system: tuple[tuple[str, frozenset[str]], ...], allowed: tuple[str, ...]
) -> tuple[tuple[str, frozenset[str]], ...]:
    """``by_system`` with a list's dm+d and SNOMED CT ids matched under both systems where
    the column can hold both (:func:`pophealth.codelists.medication_codes`)."""
    if not set(allowed) >= SHARED_IDENTIFIERS:
        return by_system
    return tuple(sorted(medication_codes(dict(by_system)).items()))


#: Series ops holding a frame of their own (a per-patient value): a row's previous or next
#: row inside them is of that frame, not of the rows they are used on.
#: (``during``: its periods are rows of their own frame, and the day it reads is the row's)
_OWN_FRAME_OPS = ("agg", "pick", "day", "lookup", "pcol", "person_days", "during")


def neighbours(s: Any) -> list[Series]:
    """The previous/next-row values (``frame.previous(...)``) ``s`` reads on its rows (not
    those inside a per-patient value, which are of that value's own frame)."""
    found: dict[tuple, Series] = {}

    def walk(x: Any) -> None:
        if isinstance(x, list | tuple):
            for y in x:
                walk(y)
        elif isinstance(x, Series) and x.op not in _OWN_FRAME_OPS:
            if x.op == "neighbour":
                found.setdefault(x.key, x)
            walk(x.args)

    walk(s)
    return list(found.values())


def foreign_neighbour(s: Series, frame: Frame, desc: str) -> str | None:
    """Why ``s``, read on the rows of ``frame``, may not read a previous or next row —
    one taken over other rows than ``frame``'s — or None."""
    for n in neighbours(s):
        if not _narrows(frame, n.args[0]):
            return (
                f"{desc}: {n.desc} is taken over the rows of {n.args[0]._desc}, and these "
                f"are the rows of {frame._desc}, not those rows narrowed further: a previous "
                "or next row is of the rows it is taken over; take it on the rows it is used "
                "on, or on rows they narrow (rows = ...; rows.where(rows.days_since_previous() "
                "<= 30))"
            )
    return None


def foreign_column(s: Series, frame: Frame, desc: str) -> str | None:
    """Why ``s``, read on the rows of ``frame``, may not use a column taken from other rows
    of its table (``assessments.on_or_after(referrals.date)``, both rows of ``events``): a
    column reads the row it is on, so that would be each assessment's own date — or None.
    A column of the whole table (``events.date``), or of rows that ``frame`` narrows
    (``hba1c.where(hba1c.value > 0)``), is the row's own, as it reads."""
    found: dict[int, Series] = {}

    def walk(x: Any) -> None:
        if isinstance(x, list | tuple):
            for y in x:
                walk(y)
        elif isinstance(x, Series) and x.op not in _OWN_FRAME_OPS:
            if x.op == "col" and x.origin is not None:
                found.setdefault(id(x.origin), x)
            walk(x.args)

    walk(s)
    for col in found.values():
        origin, name = col.origin, col.args[1]
        if origin is not None and origin._table == frame._table and not _narrows(frame, origin):
            return (
                f"{desc}: {name!r} is taken from the rows of {origin._desc}, but read on the "
                f"rows of {frame._desc}, which are not drawn from them: a column reads the "
                f"row it is on, so this would be each row's own {name}, not one of "
                f"{origin._desc}'s. For another row's value, take one per patient "
                f"({origin._desc}.first_for_patient().{name}), or one output row per row "
                f"with RowDataset({origin._desc}) and its .row; for the row's own, write "
                f"{frame._table}.{name}"
            )
    return None


def _narrows(frame: Frame, of: Frame) -> bool:
    """True when ``frame`` is ``of``'s rows, or them narrowed by more filters after (so each
    of its rows has the previous and next row it had among ``of``'s)."""
    k = len(of._filters)
    return (
        frame._table == of._table
        and len(frame._filters) >= k
        and all(a.key == b.key for a, b in zip(frame._filters[:k], of._filters, strict=True))
    )


class Frame:
    """Rows of one many-rows-per-patient table that pass the filters so far."""

    def __init__(
        self,
        table: str,
        filters: tuple[Series, ...] = (),
        order: tuple[Series, ...] = (),
        error: str | None = None,
        desc: str | None = None,
    ):
        object.__setattr__(self, "_table", table)
        object.__setattr__(self, "_filters", filters)
        object.__setattr__(self, "_order", order)
        object.__setattr__(self, "error", error)
        object.__setattr__(self, "_desc", desc or table)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("frames are immutable; use .where(...) to filter")

    @property
    def key(self) -> tuple:
        return (
            "frame",
            self._table,
            tuple(f.key for f in self._filters),
            tuple(o.key for o in self._order),
        )

    def __repr__(self) -> str:
        return f"<rows of {self._desc}>"

    def __getattr__(self, name: str) -> Series:
        from pophealth.schema import table as schema_table

        if name.startswith("_"):
            raise AttributeError(name)
        t = schema_table(self._table)
        try:
            col = t[name]
        except KeyError:
            hint = did_you_mean(name, t.column_names, self)
            # (a misspelt method, exist_for_patient, is not a missing column)
            meant = hint.split("'")[1] if hint.count("'") == 2 else None
            what = "column or method" if meant and meant not in t.column_names else "column"
            raise ColumnError(
                f"{self._table} has no {what} {name!r}{hint}; columns: {', '.join(t.column_names)}"
            ) from None
        dtype = {"timestamp": "datetime", "list<string>": "list"}.get(col.type, col.type)
        out = Series("col", (self._table, name), dtype, self._table, f"{self._table}.{name}")
        out.origin = self if self._filters else None
        return out

    # -- filtering -------------------------------------------------------------------------
    def _derive(self, condition: Series, desc: str, error: str | None = None) -> Frame:
        err = self.error or error or condition.error
        if err is None and condition.dtype != "bool":
            err = f"{desc}: a filter needs a True/False condition, not a {condition.dtype}"
        if err is None and condition.domain not in (None, self._table):
            err = (
                f"{desc}: filters rows of {self._table} with a condition on rows of "
                f"{condition.domain}; many-rows-per-patient series from different tables "
                "cannot be combined row by row"
            )
        err = err or foreign_neighbour(condition, self, desc)
        err = err or foreign_column(condition, self, desc)
        return Frame(self._table, (*self._filters, condition), self._order, err, desc)

    def where(self, condition: Any) -> Frame:
        """Keep rows where ``condition`` (on this table's columns and/or per-patient values)."""
        condition = wrap(condition)
        return self._derive(condition, f"{self._desc}.where({condition.desc})")

    def except_where(self, condition: Any) -> Frame:
        """Drop rows where ``condition`` is true (rows where it is missing are kept)."""
        condition = wrap(condition)
        keep = ~(condition.if_null_then(False)) if condition.dtype == "bool" else condition
        return self._derive(keep, f"{self._desc}.except_where({condition.desc})")

    def _refused(self, message: str, desc: str) -> Frame:
        """This frame, carrying ``message`` as its error (an earlier error stays first)."""
        return Frame(self._table, self._filters, self._order, self.error or message, desc)

    def matching(self, codelist: Codelist, column: str | None = None) -> Frame:
        """Rows whose code is in ``codelist`` (and in its coding system). A list whose
        systems cannot appear in this table/column is an error, not a silent zero."""
        if not isinstance(codelist, Codelist):
            given = _arg_text(codelist)
            given = given if len(given) <= 60 else given[:57] + "..."
            return self._refused(
                (
                    f"{self._desc}.matching({given}): needs a code list — codelist(name) for a "
                    "curated one, load_codelist(path) for a CSV, Codelist.of(system, codes) "
                    "in code — not a "
                    f"{type(codelist).__name__} (codes alone do not say their coding system)"
                ),
                f"{self._desc}.matching(...)",
            )
        columns = CODE_COLUMNS.get(self._table)
        if not columns:
            return self._refused(
                f"{self._table} has no coded column to match a code list to",
                f"{self._desc}.matching({codelist.name})",
            )
        column = column or next(iter(columns))
        desc = f"{self._desc}.matching({codelist.name})"
        if column not in columns:
            return self._refused(
                f"{desc}: {self._table}.{column} is not a coded column "
                f"(coded columns: {', '.join(columns)})",
                desc,
            )
        system_col, allowed, is_list = columns[column]
        usable = [s for s in codelist.systems if s in allowed]
        if not usable:
            other = [
                name
                for name, (_, holds, _) in columns.items()
                if name != column and set(holds) & set(codelist.systems)
            ]
            hint = (
                f"; {self._table}.{other[0]} holds {'/'.join(columns[other[0]][1])} codes: "
                f"matching({codelist.name}, column={other[0]!r})"
                if other
                else ""
            )
            return self._refused(
                (
                    f"{desc}: code list {codelist.name!r} holds {'/'.join(codelist.systems)} "
                    f"codes but {self._table}.{column} holds {'/'.join(allowed)} codes — "
                    f"a code list of the wrong system would match nothing{hint}"
                ),
                desc,
            )
        if "snomedct" in usable and set(allowed) >= SHARED_IDENTIFIERS:
            why = not_products(codelist)
            if why:  # matched as medicines, a clinical list's ids would find no issue
                return self._refused(
                    (
                        f"{desc}: code list {codelist.name!r} holds clinical SNOMED CT "
                        f"concepts, not medicinal products: {why}; it would match no row of "
                        f"{self._table} — match it against events, or use a dm+d list"
                    ),
                    desc,
                )
        cond = Series(
            "match",
            (
                self._table,
                column,
                system_col,
                is_list,
                _one_identifier_space(tuple((s, codelist.codes_in(s)) for s in usable), allowed),
            ),
            "bool",
            self._table,
            f"{self._table}.{column} in {codelist.name}",
        )
        return self._derive(cond, desc)

    # -- windows ------------------------------------------------------------------------------
    @property
    def _date(self) -> Series:
        """The day each row is windowed by: the table's date column, or the day of its
        date-and-time column (``emergency_attendances``: the day of arrival)."""
        return getattr(self, DATE_COLUMNS[self._table]).date

    # Windows step in whole days: a date-and-time given as a bound is taken as its day.
    def on_or_before(self, date: Any) -> Frame:
        return self.where(self._date <= as_day(date))

    def before(self, date: Any) -> Frame:
        return self.where(self._date < as_day(date))

    def on_or_after(self, date: Any) -> Frame:
        return self.where(self._date >= as_day(date))

    def after(self, date: Any) -> Frame:
        return self.where(self._date > as_day(date))

    def on(self, date: Any) -> Frame:
        return self.where(self._date == as_day(date))

    def between(self, start: Any, end: Any) -> Frame:
        """Rows dated from ``start`` to ``end``, both inclusive (two dates the wrong way
        round are an error: no row could be between them)."""
        a, b = as_day(start), as_day(end)
        out = self.where((self._date >= a) & (self._date <= b))
        if a.op == "lit" == b.op and a.dtype == "date" == b.dtype and a.args[0] > b.args[0]:
            return out._failed(
                f"{self._desc}.between({a.args[0]}, {b.args[0]}): the start is after the "
                "end, so no row is between them"
            )
        return out

    def _failed(self, problem: str) -> Frame:
        """This frame, invalid with ``problem`` (unless it already is)."""
        return Frame(self._table, self._filters, self._order, self.error or problem, self._desc)

    def _window(
        self, what: str, days: int, weeks: int, months: int, years: int, clock: dict[str, Any]
    ) -> str | None:
        """Why a window of ``days``/``weeks``/``months``/``years`` is not one, or None;
        ``clock`` holds ``hours``/``minutes`` as given (refused: a window steps in days)."""
        given_clock = {u: n for u, n in clock.items() if n is not None}
        if given_clock:
            unit, n = next(iter(given_clock.items()))
            return (
                f"{self._desc}.{what}({unit}={n!r}): a window steps in whole days (days, "
                "weeks, months, years), as rows are windowed by their date; for 48 hours "
                "write days=2 (the dates up to 2 days on), and for the minutes or hours "
                "between two clock times of one row use frame.minutes_between or "
                "hours_between"
            )
        spans = {"days": days, "weeks": weeks, "months": months, "years": years}
        for unit, n in spans.items():
            if not isinstance(n, int) or isinstance(n, bool):
                return f"{self._desc}.{what}({unit}={n!r}): needs a whole number of {unit}"
        given = ", ".join(f"{u}={n}" for u, n in spans.items() if n)
        if any(n < 0 for n in spans.values()):
            return (
                f"{self._desc}.{what}({given}): a negative length; "
                f"{'in_next' if what == 'in_last' else 'in_last'} looks the other way"
            )
        if not given:
            return (
                f"{self._desc}.{what}(): no length given, so the window holds no day "
                "(e.g. months=12)"
            )
        return None

    def in_last(
        self,
        *,
        days: int = 0,
        weeks: int = 0,
        months: int = 0,
        years: int = 0,
        of: Any = None,
        hours: Any = None,
        minutes: Any = None,
    ) -> Frame:
        """Rows in the period ending on ``of`` (default: the index date) and starting the day
        after ``of`` minus the duration: "in the 12 months before the index date" is
        ``in_last(months=12)`` = (index − 12 months, index], so exactly one year of days.
        A week is 7 days; ``hours`` and ``minutes`` are refused (rows are windowed by
        their date)."""
        from pophealth.query.model import days as _d
        from pophealth.query.model import months as _m

        clock = {"hours": hours, "minutes": minutes}
        problem = self._window("in_last", days, weeks, months, years, clock)
        if problem:
            return self._failed(problem)
        end = index_date if of is None else as_day(of)
        start = end
        if months or years:
            start = start - _m(months + 12 * years)
        if days or weeks:
            start = start - _d(days + 7 * weeks)
        return self.where((self._date > start) & (self._date <= end))

    def in_next(
        self,
        *,
        days: int = 0,
        weeks: int = 0,
        months: int = 0,
        years: int = 0,
        of: Any = None,
        hours: Any = None,
        minutes: Any = None,
    ) -> Frame:
        """Rows from ``of`` (default the index date, exclusive) up to ``of`` + the duration
        (inclusive). A week is 7 days; ``hours`` and ``minutes`` are refused, as in
        :meth:`in_last`."""
        from pophealth.query.model import days as _d
        from pophealth.query.model import months as _m

        clock = {"hours": hours, "minutes": minutes}
        problem = self._window("in_next", days, weeks, months, years, clock)
        if problem:
            return self._failed(problem)
        start = index_date if of is None else as_day(of)
        end = start
        if months or years:
            end = end + _m(months + 12 * years)
        if days or weeks:
            end = end + _d(days + 7 * weeks)
        return self.where((self._date > start) & (self._date <= end))

    def in_interval(self) -> Frame:
        """Rows dated within the measure interval (start and end inclusive); in a dataset the
        interval is the single day of the index date."""
        return self.between(interval_start, index_date)

    def during(self, periods: Any) -> Frame:
        """The rows whose own date (the table's date, the one :meth:`in_interval` and
        :meth:`on_or_before` use; a date-and-time by its day) is a day held by one of the
        same patient's rows of ``periods``: "the emergency admissions that start on a day
        the patient lived in a care home" is
        ``admissions.where(...).during(addresses.where(addresses.care_home))``.

        A row of ``periods`` holds the days of its period, its start to its end, both
        inclusive, an open end running on — exactly the days
        :meth:`days_in_interval_for_patient` counts for that frame, by the same rule. So for
        a filtered ``addresses`` frame a day is held when the patient's address that day by
        the addresses overlap rule (:meth:`~pophealth.query.tables.Addresses.address_on`'s,
        over all their addresses: the latest start wins, ties broken by the alphabetically
        last LSOA code) is one of the frame's rows — a care home left open after a move to a
        flat that started later holds no day from the flat's start; for other tables, and
        ``addresses`` unfiltered, every day of any of the rows' periods (their union). A row
        without a date is not kept.

        ``periods`` is a frame of a table with periods (``registrations``, ``addresses``,
        ``admissions``, ``emergency_attendances``), filtered or not, but not by the interval
        or a row dataset's current row: which days it holds is fixed, so ``during`` is a
        filter like any other — it combines with ``where``, ``in_interval()``, counts, the
        first row, and with another ``during``."""
        from pophealth.schema import table as schema_table

        given, what = _arg_text(periods), f"a {type(periods).__name__}"
        if isinstance(periods, Frame):
            given = periods._desc
        elif isinstance(periods, Series):
            what = f"a value ({a_dtype(periods.dtype)} per patient or row)"
        elif isinstance(periods, Row | DayRow):
            day = "_day" if isinstance(periods, DayRow) else ""
            given = f"{periods._frame._desc}.{periods._direction}{day}_for_patient()"
            what = "one row per patient (its frame is the rows: leave out the first/last)"
        elif type(periods).__name__ == "Patients":
            given, what = "patients", "patients (one row per patient, with no periods)"
        given = given if len(given) <= 80 else given[:77] + "..."
        desc = f"{self._desc}.during({given})"
        allowed = ", ".join(PERIOD_TABLES)
        problem = None
        if not isinstance(periods, Frame):
            problem = (
                f"{desc}: needs the rows of a table with periods (a start and an end date: "
                f"{allowed}), e.g. addresses.where(addresses.care_home), not {what}"
            )
        elif periods.error:
            problem = f"{desc}: {periods.error}"
        elif periods._table not in PERIOD_TABLES or not schema_table(periods._table).periods:
            problem = (
                f"{desc}: rows of {periods._table} have no period (a start and an end date) "
                f"to hold days; tables with one: {allowed}"
            )
        elif _reads_interval(periods):
            problem = (
                f"{desc}: the periods are filtered by the interval (in_interval(), "
                "index_date...): the days they hold must not move with it; filter the "
                "periods without it, and the rows kept by the interval after "
                f"({self._table}.during(...).in_interval())"
            )
        elif row_units(periods):
            problem = (
                f"{desc}: the periods are filtered by a row dataset's current row: the days "
                "they hold must be the same for every row; filter the periods without it"
            )
        if problem:
            return self._refused(problem, desc)
        start, end = (as_day(getattr(periods, c)) for c in schema_table(periods._table).periods[0])
        day = Frame(self._table)._date  # the row's own date, read on the row it is on
        cond = Series("during", (self._table, day, periods, start, end), "bool", self._table, desc)
        return self._derive(cond, desc)

    def sort_by(self, *columns: Any) -> Frame:
        """Order rows for :meth:`first_for_patient`/:meth:`last_for_patient` (default: by
        date). Remaining ties are broken by every other column in the table's order, but
        the value straight after the dates and times, so results are the same on every
        engine: ascending for the first row, descending for the last (of two
        readings on one day, under one code or two codes of a list, first takes the
        lower, last the higher), a missing value never taken over a value."""
        named = []  # a column may be given by name: sort_by("date", "value")
        for c in columns:
            if isinstance(c, str):
                try:
                    c = getattr(self, c)
                except ColumnError as exc:
                    c = _invalid(f"sort_by({c!r}): {exc}")
            named.append(c)
        cols = tuple(wrap(c) for c in named)
        err = self.error or _first_error(*cols)
        for c in cols:
            if c.domain not in (None, self._table):
                err = err or f"sort_by: {c.desc} is not a column of {self._table}"
            if neighbours(c):
                err = err or (
                    f"sort_by({c.desc}): the previous or next row is found by the sort, so "
                    "it cannot be sorted by"
                )
            err = err or foreign_column(c, self, f"{self._desc}.sort_by({c.desc})")
        return Frame(self._table, self._filters, cols, err, self._desc)

    # -- the previous and next row ------------------------------------------------------
    def _neighbour(self, column: Any, direction: str, desc: str | None = None) -> Series:
        if isinstance(column, str):
            try:
                column = getattr(self, column)
            except ColumnError as exc:
                column = _invalid(f"{self._desc}.{direction}({column!r}): {exc}")
        value = wrap(column)
        desc = desc or f"{self._desc}.{direction}({value.desc})"
        out = Series("neighbour", (self, value, direction), value.dtype, self._table, desc)
        out.error = self.error or value.error
        if value.domain not in (None, self._table):
            out._with_error(f"{desc}: {value.desc} is not a value of the rows of {self._table}")
        if neighbours(value):
            out._with_error(f"{desc}: the {direction} row's own previous or next row")
        if value.dtype in ("list", "null"):
            out._with_error(f"{desc}: {value.desc} is not a value of one row")
        return out

    def previous(self, column: Any) -> Series:
        """On each row, ``column`` on the patient's previous row of this frame: rows in the
        frame's order (:meth:`sort_by`; default the date, a date-and-time by its clock
        time), ties broken by every other column (ascending, missing last; as
        :meth:`first_for_patient`), the same on every engine. Missing on the patient's
        first row. Given by name or as a column: ``attendances.previous("diagnosis")``.
        The rows are this frame's: use it in this frame's ``where(...)``
        (``rows.where(rows.days_since_previous() <= 30)``), its aggregates, an event table
        of it, or on rows it narrows further (each keeps the value it had among these:
        ``re_attended.maximum_for_patient(crises.days_since_previous())``)."""
        return self._neighbour(column, "previous")

    def next(self, column: Any) -> Series:
        """On each row, ``column`` on the patient's next row of this frame (as
        :meth:`previous`; missing on the last row)."""
        return self._neighbour(column, "next")

    def days_since_previous(self) -> Series:
        """On each row, whole days from the previous row's date (a date-and-time: its day)
        to this row's; missing on the first row. "A re-attendance within 30 days" is
        ``rows.where(rows.days_since_previous() <= 30)``."""
        desc = f"{self._desc}.days_since_previous()"
        out = self._neighbour(self._date, "previous", f"{self._desc}'s previous day")
        out = out.days_until(self._date)
        out.desc = desc
        return out

    def days_until_next(self) -> Series:
        """On each row, whole days from this row's date to the next row's; missing on the
        last row."""
        out = self._neighbour(self._date, "next", f"{self._desc}'s next day")
        out = self._date.days_until(out)
        out.desc = f"{self._desc}.days_until_next()"
        return out

    def _clock_gap(self, column: Any, direction: str, seconds: int, unit: str) -> Series:
        what = "since_previous" if direction == "previous" else "until_next"
        name = self._column_name(column) if column is not None else None
        if name is None:
            name = DATE_COLUMNS[self._table]
            if getattr(self, name).dtype != "datetime":
                return _invalid(
                    f"{self._desc}.{unit}_{what}(): {self._table} is dated by day "
                    f"({self._table}.{name}); name one of its date-and-time columns"
                    + (' (e.g. "datetime")' if self._table == "events" else "")
                )
        desc = f"{self._desc}.{unit}_{what}({'' if column is None else repr(name)})"
        now = self._clock(name, desc)
        other = self._neighbour(now, direction) if not now.error else now
        a, b = (other, now) if direction == "previous" else (now, other)
        out = Series._make("elapsed", (a, b, seconds), "float", desc, (a, b))
        return out._with_error(self.error) if self.error else out

    def minutes_since_previous(self, column: str | Series | None = None) -> Series:
        """On each row, the minutes from the previous row's clock time to this row's, in
        date-and-time ``column`` (default: the table's, e.g. an attendance's arrival), to
        the second as :meth:`minutes_between`; missing on the first row."""
        return self._clock_gap(column, "previous", 60, "minutes")

    def minutes_until_next(self, column: str | Series | None = None) -> Series:
        """On each row, the minutes from this row's clock time to the next row's (as
        :meth:`minutes_since_previous`); missing on the last row."""
        return self._clock_gap(column, "next", 60, "minutes")

    def hours_since_previous(self, column: str | Series | None = None) -> Series:
        """As :meth:`minutes_since_previous`, in hours."""
        return self._clock_gap(column, "previous", 3600, "hours")

    def hours_until_next(self, column: str | Series | None = None) -> Series:
        """As :meth:`minutes_until_next`, in hours."""
        return self._clock_gap(column, "next", 3600, "hours")

    # -- clock times ------------------------------------------------------------------------
    def _column_name(self, column: Any) -> Any:
        """A column given by name, or as this table's column (``attendances.arrival_datetime``,
        as other methods take columns), as its name; anything else as it is."""
        if isinstance(column, Series) and column.op == "col" and column.args[0] == self._table:
            return column.args[1]
        return column

    def _clock(self, name: Any, what: str) -> Series:
        """The date-and-time column ``name`` read as recorded (not as its date), for
        ``what``; an invalid series naming the problem otherwise."""
        from pophealth.schema import table as schema_table

        t = schema_table(self._table)
        stamps = [c.name for c in t.columns if c.type == "timestamp"]
        have = f"its date-and-time columns: {', '.join(stamps)}" if stamps else "it has none"
        if not isinstance(name, str):
            given = name.desc if isinstance(name, Series) else repr(name)
            pick = isinstance(name, Series) and name.domain is None
            if pick and name.dtype == "datetime" and "_between(" in what:
                found = re.search(r"\.(minutes_between|hours_between|hour_of_day)\(", what)
                unit = found.group(1) if found else "minutes_between"
                return _invalid(
                    f"{what}: {given} is one value per patient, and frame.{unit} reads two "
                    f"date-and-time columns of one row ({have}). From a patient's time to "
                    f"each row's, use the function: {unit}({given}, {self._table}.column) "
                    "(from pophealth.query). A per-patient date, without its clock time, "
                    "compares by days: frame.on(day), date - date in days"
                )
            if isinstance(name, Series) and name.domain is None and name.dtype == "date":
                return _invalid(
                    f"{what}: {given} is one value per patient, and a date, without its "
                    "clock time: the minutes and hours between two times are read on one "
                    f"row, from two of its date-and-time columns ({have}), or by the "
                    "functions minutes_between / hours_between from a per-patient "
                    "date-and-time (first_for_patient().datetime, not .date). Across rows "
                    "by day, compare days: frame.on(day), date - date in days"
                )
            return _invalid(f"{what}: {given} is not a column of {self._table}; {have}")
        if name not in t.column_names or t[name].type != "timestamp":
            return _invalid(f"{what}: {self._table}.{name} is not a date-and-time column; {have}")
        return Series("col", (self._table, name), "datetime", self._table, f"{self._table}.{name}")

    def _elapsed(self, start: Any, end: Any, seconds: int, unit: str) -> Series:
        start, end = self._column_name(start), self._column_name(end)
        what = f"{self._desc}.{unit}_between({_arg_text(start)}, {_arg_text(end)})"
        a, b = self._clock(start, what), self._clock(end, what)
        out = Series._make("elapsed", (a, b, seconds), "float", what, (a, b))
        return out._with_error(self.error) if self.error else out

    def minutes_between(self, start: str | Series, end: str | Series) -> Series:
        """On each row, the minutes from clock time ``start`` to clock time ``end`` (two
        date-and-time columns of this table, by name or as columns, e.g. an attendance's
        ``"arrival_datetime"`` and ``"first_analgesia_datetime"``): to the second (29.5 is
        29 minutes 30 seconds), each time cut to whole seconds; negative when ``end`` is
        earlier; missing when either is. Times are clock times as recorded, so a span
        across a change of the clocks is off by an hour. Use it in ``where(...)`` or
        aggregate it (``minimum_for_patient(...)``)."""
        return self._elapsed(start, end, 60, "minutes")

    def hours_between(self, start: str | Series, end: str | Series) -> Series:
        """As :meth:`minutes_between`, in hours (1.5 is an hour and a half)."""
        return self._elapsed(start, end, 3600, "hours")

    def hour_of_day(self, column: str | Series) -> Series:
        """On each row, the hour (0-23) of the clock time in date-and-time ``column``: for
        picking out the rows at a time of day (``where(frame.hour_of_day(c) < 8)``). A
        value of each row, like the time: a measure by time of day is a row measure (one row
        per attendance, :class:`~pophealth.query.RowDataset`) broken down by the function
        :func:`hour_of_day` of the current row's time."""
        column = self._column_name(column)
        what = f"{self._desc}.hour_of_day({_arg_text(column)})"
        c = self._clock(column, what)
        out = Series._make("clock_hour", (c,), "int", what, (c,))
        return out._with_error(self.error) if self.error else out

    # -- aggregates -----------------------------------------------------------------------
    def _agg(self, fn: str, arg: Series | None, dtype: str, desc: str) -> Series:
        err = self.error or (arg.error if arg is not None else None)
        if arg is not None and err is None:
            if arg.domain not in (None, self._table):
                err = f"{desc}: {arg.desc} is not a column of {self._table}"
            elif fn in ("min", "max", "mean", "sum") and arg.dtype not in (
                *NUMERIC,
                "date",
                "datetime",
            ):
                err = f"{desc}: needs numbers, not {arg.desc} ({arg.dtype})"
            elif fn in ("mean", "sum") and arg.dtype in ("date", "datetime"):
                err = f"{desc}: cannot {fn} dates"
            else:
                err = foreign_neighbour(arg, self, desc) or foreign_column(arg, self, desc)
        return Series("agg", (self, fn, arg), dtype, None, desc, error=err)

    def exists_for_patient(self) -> Series:
        """True when the patient has at least one row (False, never missing, otherwise)."""
        return self._agg("exists", None, "bool", f"{self._desc}.exists_for_patient()")

    def count_for_patient(self) -> Series:
        """Number of rows (0 when none)."""
        return self._agg("count", None, "int", f"{self._desc}.count_for_patient()")

    def count_days_for_patient(self) -> Series:
        """Number of distinct dates with a row (0 when none) — several issues on one day
        count once."""
        return self._agg("count_days", self._date, "int", f"{self._desc}.count_days_for_patient()")

    def count_distinct_for_patient(self, column: Any) -> Series:
        column = wrap(column)
        return self._agg(
            "count_distinct", column, "int", f"{self._desc}.count_distinct({column.desc})"
        )

    def _value_arg(self, column: Any) -> Series:
        """``column``, or the table's ``value`` column; an invalid series naming the
        problem when the table has none."""
        if column is not None:
            return wrap(column)
        try:
            return self.value
        except ColumnError:
            from pophealth.schema import table as schema_table

            numbers = [
                c.name
                for c in schema_table(self._table).columns
                if c.type in ("int", "float", "date", "timestamp")
            ]
            return _invalid(
                f"{self._table} has no value column: name the column to use "
                f"(e.g. {self._table}.{numbers[0] if numbers else 'column'}; its columns of "
                f"numbers and dates: {', '.join(numbers) or 'none'})"
            )

    def minimum_for_patient(self, column: Any = None) -> Series:
        col = self._value_arg(column)
        return self._agg("min", col, col.dtype, f"{self._desc}.minimum_for_patient({col.desc})")

    def maximum_for_patient(self, column: Any = None) -> Series:
        col = self._value_arg(column)
        return self._agg("max", col, col.dtype, f"{self._desc}.maximum_for_patient({col.desc})")

    def mean_for_patient(self, column: Any = None) -> Series:
        col = self._value_arg(column)
        return self._agg("mean", col, "float", f"{self._desc}.mean_for_patient({col.desc})")

    def sum_for_patient(self, column: Any = None) -> Series:
        """Sum of ``column`` over the rows; missing (not 0) when there are no rows."""
        col = self._value_arg(column)
        return self._agg("sum", col, col.dtype, f"{self._desc}.sum_for_patient({col.desc})")

    def days_in_interval(self) -> Series:
        """Per row: the days of the row's period (its start to its end, both inclusive, an
        open end running on) inside the measure interval, both of its ends inclusive; 0 when
        none. In a dataset the interval is the index date alone (1 or 0). Summed over a
        patient's rows, a day two overlapping periods hold counts twice:
        :meth:`days_in_interval_for_patient` counts each day once. A row's days are its own,
        whether or not it is the patient's address on them by the addresses overlap rule."""
        from pophealth.schema import table as schema_table

        desc = f"{self._desc}.days_in_interval()"
        periods = schema_table(self._table).periods
        if not periods or not self._table_has_rows_per_patient():
            return _invalid(
                self.error
                or (
                    f"{desc}: rows of {self._table} have no period (a start and an end date) "
                    f"to count days of; tables with one: {', '.join(PERIOD_TABLES)}"
                )
            )
        start, end = (as_day(getattr(self, c)) for c in periods[0])
        last = minimum_of(end.if_null_then(index_date), index_date)
        first = maximum_of(start, interval_start)
        out = case((last >= first, first.days_until(last) + 1), otherwise=0)
        out = Series._make(out.op, out.args, out.dtype, desc, (out,))
        return out._with_error(self.error) if self.error else out

    def days_in_interval_for_patient(self, until: Any = None) -> Series:
        """Person-time: the days of the patient's periods (each row's start to its end, both
        inclusive, an open end running on) that fall inside the measure interval, both of
        its ends inclusive — nothing before the interval's start or after its end. A day
        held by several periods counts once (overlapping periods are merged: their union).
        For a filtered ``addresses`` frame (``addresses.where(addresses.care_home)``) a day
        counts when the patient's address that day by the table's overlap rule —
        :meth:`~pophealth.query.tables.Addresses.address_on`'s, over all their addresses: the
        latest start wins, ties broken by the alphabetically last LSOA code — is one of the
        frame's rows: a care home left open after a move to a flat that started later stops
        counting at the flat's start. Other tables, and ``addresses`` unfiltered, count the
        union.
        ``until`` (a date per patient, e.g. ``patients.date_of_death``) ends the
        person-time: no day after it counts (its own day does; missing: no end). 0 when no
        day falls inside. In a dataset the interval is the index date alone (1 or 0).

        For ``registrations``, ``addresses`` (``.where(addresses.care_home)``: care-home
        residence), ``admissions`` and ``emergency_attendances`` (the days of arrival and
        departure); the rows may be filtered first, but not by the interval itself. The
        events of a rate are kept to these same days with :meth:`during`
        (``admissions.during(addresses.where(addresses.care_home))``)."""
        from pophealth.schema import table as schema_table

        until_s = None if until is None else as_day(until)
        desc = f"{self._desc}.days_in_interval_for_patient(" + (
            f"until={until_s.desc})" if until_s is not None else ")"
        )
        periods = schema_table(self._table).periods
        err = self.error
        if err is None and (not periods or not self._table_has_rows_per_patient()):
            with_periods = ", ".join(PERIOD_TABLES)
            err = (
                f"{desc}: rows of {self._table} have no period (a start and an end date) to "
                f"count days of; tables with one: {with_periods}"
            )
        if err is None and _reads_interval(self):
            err = (
                f"{desc}: the rows whose days are counted are filtered by the interval "
                "(in_interval(), index_date...); days_in_interval_for_patient() already "
                "keeps only the days inside it: filter the rows without it"
            )
        if err is None and until_s is not None:
            if until_s.error:
                err = f"{desc}: {until_s.error}"
            elif until_s.dtype not in ("date", "null"):
                err = (
                    f"{desc}: until must be a date per patient (e.g. patients.date_of_death), "
                    f"not {a_dtype(until_s.dtype)}"
                )
            elif until_s.domain is not None:
                err = (
                    f"{desc}: until must be one date per patient, not one per row of "
                    f"{until_s.domain} (e.g. patients.date_of_death)"
                )
            elif _reads_interval(until_s):
                err = f"{desc}: until cannot depend on the interval (index_date, in_interval())"
        start = end = None
        if periods:
            start, end = (as_day(getattr(self, c)) for c in periods[0])
        return Series(
            "person_days",
            (self, start, end, until_s, interval_start, index_date),
            "int",
            None,
            desc,
            error=err,
        )

    def _table_has_rows_per_patient(self) -> bool:
        from pophealth.schema import table as schema_table

        return schema_table(self._table).many_rows_per_patient

    def first_for_patient(self) -> Row:
        """The earliest row (by :meth:`sort_by`, default the date): ``.date``, ``.value``,
        ``.code``... each missing when the patient has no row."""
        return Row(self, "first")

    def last_for_patient(self) -> Row:
        """The latest row (by :meth:`sort_by`, default the date). Its ``.value`` is that
        row's: missing when the latest row has none, even if an earlier row had one — filter
        first (``frame.where(frame.value.is_not_null())``) for the latest row with a value."""
        return Row(self, "last")

    def first_day_for_patient(self, column: Any = None, rule: str = "min") -> DayRow:
        """The earliest day with a row, and ``column`` on that day combined by ``rule``
        (``min``, ``max`` or ``mean``) when there are several rows that day. As for
        :meth:`last_day_for_patient`, a day whose rows have no value still counts."""
        return DayRow(self, "first", self._value_arg(column), rule)

    def last_day_for_patient(self, column: Any = None, rule: str = "min") -> DayRow:
        """The latest day with a row, and ``column`` on that day combined by ``rule``: e.g.
        the lowest systolic of the most recent day (CVDPREVENT). The rule combines that
        day's rows that have a value. The day is chosen first: when the latest day's rows
        have no value, ``.value`` is missing even if an earlier day had one — filter first
        (``frame.where(frame.value.is_not_null())``) for the latest reading with a value."""
        return DayRow(self, "last", self._value_arg(column), rule)


class Row:
    """The first or last row of a frame per patient; its columns are per-patient series."""

    def __init__(self, frame: Frame, direction: str):
        self._frame, self._direction = frame, direction

    def __getattr__(self, name: str) -> Series:
        if name.startswith("_"):
            raise AttributeError(name)
        col = getattr(self._frame, name)
        desc = f"{self._frame._desc}.{self._direction}_for_patient().{name}"
        return Series(
            "pick",
            (self._frame, self._direction, col),
            col.dtype,
            None,
            desc,
            error=self._frame.error or col.error,
        )

    @property
    def exists(self) -> Series:
        return self._frame.exists_for_patient()

    def _not_a_value(self) -> str:
        return (
            f"{self._frame._desc}.{self._direction}_for_patient() is a row, not a value: take "
            f"one of its columns ({_columns_of(self._frame)}) or .exists"
        )


def _columns_of(frame: Frame) -> str:
    """The columns of ``frame``'s table a value can be taken from, as ``.name`` s."""
    from pophealth.schema import table as schema_table

    names = schema_table(frame._table).column_names
    return ", ".join(f".{c}" for c in names if c != "patient_id")


class DayRow:
    """The first or last day with rows per patient: ``.date`` and ``.value`` (combined)."""

    RULES = ("min", "max", "mean")

    def __init__(self, frame: Frame, direction: str, column: Series, rule: str):
        self._frame, self._direction, self._column, self._rule = frame, direction, column, rule
        err = frame.error or column.error
        if rule not in self.RULES:
            err = err or f"rule must be one of {', '.join(self.RULES)}, not {rule!r}"
        if column.dtype not in NUMERIC:
            err = err or f"{column.desc}: the value of a day must be a number, not a {column.dtype}"
        err = err or foreign_neighbour(column, frame, f"{frame._desc}.{direction}_day_for_patient")
        self._error = err

    def _series(self, what: str, dtype: str) -> Series:
        desc = f"{self._frame._desc}.{self._direction}_day_for_patient({self._rule}).{what}"
        return Series(
            "day",
            (self._frame, self._direction, self._column, self._rule, what),
            dtype,
            None,
            desc,
            error=self._error,
        )

    @property
    def date(self) -> Series:
        return self._series("date", "date")

    @property
    def value(self) -> Series:
        return self._series("value", "float" if self._rule == "mean" else self._column.dtype)

    def _not_a_value(self) -> str:
        return (
            f"{self._frame._desc}.{self._direction}_day_for_patient() is a day, not a value: "
            "take its .date or .value"
        )


#: Tables whose rows are periods with a start and an end date (schema ``periods=``), whose
#: days inside an interval :meth:`Frame.days_in_interval_for_patient` counts.
PERIOD_TABLES = ("registrations", "addresses", "admissions", "emergency_attendances")


def _reads_interval(node: Any) -> bool:
    """Whether ``node`` (a series or frame) reads the index date or the interval start."""
    if isinstance(node, Series):
        if node.op in ("index_date", "interval_start"):
            return True
        return any(_reads_interval(a) for a in node.args)
    if isinstance(node, Frame):
        return any(_reads_interval(f) for f in (*node._filters, *node._order))
    if isinstance(node, list | tuple):
        return any(_reads_interval(a) for a in node)
    return False


# -- placeholders -------------------------------------------------------------------------------

#: The index date of a dataset (given when it runs) or the end of each measure interval.
index_date = Series("index_date", (), "date", None, "index_date")
#: The start of each measure interval; in a dataset, the index date.
interval_start = Series("interval_start", (), "date", None, "interval_start")


# -- the current row of a row dataset -----------------------------------------------------------


class RowRef:
    """The current row of a row dataset (:class:`~pophealth.query.RowDataset`): each of
    its columns (``per_op.row.start_datetime``) is one value per output row, usable
    wherever a per-patient value is — in another frame's filters ("a response within 30
    days after this operation"), in arithmetic, as a date to take an age on. Made by the
    row dataset, which numbers itself (``unit``) so a row of one cannot reach another."""

    def __init__(self, frame: Frame, unit: int):
        self._frame, self._unit = frame, unit

    def __getattr__(self, name: str) -> Series:
        if name.startswith("_"):
            raise AttributeError(name)
        col = getattr(self._frame, name)  # a ColumnError naming the table's columns
        desc = f"{self._frame._table}.row.{name}"
        if not isinstance(col, Series):  # a frame's method, not a column
            functions = {
                "hour_of_day": "hour_of_day(row.<a date-and-time column>)",
                "minutes_between": "minutes_between(row.<start>, row.<end>)",
                "hours_between": "hours_between(row.<start>, row.<end>)",
            }
            instead = (
                f"; for this, use the function {functions[name]} (from pophealth.query)"
                if name in functions
                else ""
            )
            raise QueryError(
                f"{desc}: the current row of a row dataset has the columns of its table "
                f"({_columns_of(self._frame)}), not a frame's methods{instead}"
            )
        return Series("rowref", (self._unit, name), col.dtype, None, desc, self._frame.error)

    def __repr__(self) -> str:
        return f"<the current row of {self._frame._desc}>"

    def _not_a_value(self) -> str:
        return (
            f"the current row of {self._frame._desc} is a row, not a value: take one of its "
            f"columns ({_columns_of(self._frame)})"
        )


def row_units(node: Any) -> set[int]:
    """The row datasets (their numbers) whose current row ``node`` reads anywhere — in its
    own arithmetic or in the filters and order of the frames it aggregates."""
    found: set[int] = set()
    seen: set[int] = set()

    def walk(x: Any) -> None:
        if isinstance(x, list | tuple):
            for y in x:
                walk(y)
        elif isinstance(x, Series | Frame):
            if id(x) in seen:
                return
            seen.add(id(x))
            if isinstance(x, Frame):
                walk(x._filters)
                walk(x._order)
            elif x.op == "rowref":
                found.add(x.args[0])
            else:
                walk(x.args)

    walk(node)
    return found


def row_neighbour(node: Any) -> Series | None:
    """A previous/next-row value anywhere in ``node`` taken over rows chosen by the current
    row of a row dataset (the rows differ from output row to output row, so there is no
    one previous row to put on each), or None."""
    seen: set[int] = set()

    def walk(x: Any) -> Series | None:
        if isinstance(x, list | tuple):
            for y in x:
                found = walk(y)
                if found is not None:
                    return found
        elif isinstance(x, Series | Frame) and id(x) not in seen:
            seen.add(id(x))
            if isinstance(x, Frame):
                return walk((x._filters, x._order))
            if x.op == "neighbour" and row_units(x.args[0]):
                return x
            return walk(x.args)
        return None

    return walk(node)
