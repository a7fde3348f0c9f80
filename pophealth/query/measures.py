"""Measures: numerator / denominator / breakdown over intervals, every interval in one pass.

::

    m = Measures(intervals=monthly(date(2023, 4, 1), 24))
    m.define_measure(
        "bp_recorded",
        numerator=events.matching(sbp).in_interval().exists_for_patient(),
        denominator=registrations.registered_on(index_date) & hypertensive,
        group_by={"imd": area.group("imd_quintile"), "ethnicity": patients.ethnicity_group},
    )
    table = run_measures("store/", m, engine="duckdb")

Inside a measure ``index_date`` is the **end** of each interval and ``interval_start`` its
start, so "in the 12 months before" rolls with the interval. All intervals are computed
together. True/False measures over up to 62 intervals are counted from per-patient bit
masks of the intervals where each condition holds (:mod:`pophealth.query.masks`); others
have each patient's values computed only at the intervals where one of them can change,
the counts per interval being running sums of the changes (:mod:`pophealth.query.timeline`);
what that analysis cannot prove correct — the index date used as a value
(``date.days_until(index_date)``), an ``or`` of two interval-dependent conditions inside a
filter, intervals inside one another — pairs every candidate patient with every interval
instead. Either way, everything that does not depend on the interval is read once.
``result.attrs["evaluation"]`` says which way each measure ran (``"masks"``,
``"change_points"``, ``"paired"``, ``"single"``, or ``"rows"`` for a measure over the rows
of a row dataset).

Every output row carries ``numerator``, ``denominator``, ``value`` and confidence limits
(Wilson score for proportions; Poisson for events per patient, a count of rows over a
True/False denominator; none for other ratios, whose ``method`` says why) and goes through
:mod:`pophealth.disclosure` — on by default (counts 1–7 withheld with secondary
suppression, the rest rounded to 5, values and limits recomputed from the released
counts); ``disclosure=False`` switches it off, for
analysis that never leaves the secure environment.

A quantile measure (:meth:`Measures.define_quantile`) gives the median and other centiles of
a number per patient among a True/False denominator: the engine counts the patients with
each distinct value per interval and group (the value as one more breakdown, in the same
one pass over all intervals), and the centiles and their distribution-free limits are
worked out exactly from those counts (:mod:`pophealth.stats.centiles`), so every engine
gives the same answer. Its rows carry the patients with a value as the numerator and all
those among as the denominator; disclosure control withholds the value and limits with the
numerator, and near a group's extremes (:func:`_release_quantiles`). Given ``rows=`` (a
frame) and a value per row of it, the centiles are over the rows (each attendance a value)
of the patients among, counted by interval, group, patient and value in a query of their
own (:func:`_row_quantile_counts`), the rows with a value as the numerator, all the rows
as the denominator; disclosure control also checks the patients behind those counts and
beyond each centile.

A rate measure (:meth:`Measures.define_rate`) gives events per person-time: a whole number
of events per patient over the days each patient was at risk inside the interval
(:meth:`~pophealth.query.model.Frame.days_in_interval_for_patient`), per 1,000
person-years (a year of 365.25 days) or person-days, with Poisson limits on the events
(exact below 10, Byar's from 10). Its rows carry the events as the numerator and the
person-days as the denominator, both released through the one rule like counts
(:func:`_release_rate`). Person-time is worked out per patient and interval, so rate
measures run paired, in a query of their own.

A measure over the rows of a row dataset (:meth:`Measures.define_row_measure`: per
operation, referral or attendance) counts rows, not patients: the row dataset's table with
the numerator, denominator and breakdowns as values per row
(:func:`~pophealth.query.dataset.row_table`), each row joined to the intervals its own date
falls in and counted per interval and group on the engine, with the distinct patients
behind each count (:func:`_row_measure_counts`); released as a proportion of rows (Wilson
limits, the rows counted as independent; counts withheld also when 1-7 patients are
behind them). Nothing in it may read the index date: a row's values are relative to the row.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import ibis
import numpy as np
import pandas as pd
import pyarrow as pa

from pophealth.query.compile import (
    ROW_PREFIX,
    Compiler,
    compile_patient_table,
    gc_paused,
    implies,
)
from pophealth.query.dataset import RowDataset, check_variable, connect, row_table
from pophealth.query.masks import MaskPlan, breakdowns
from pophealth.query.model import (
    DATE_COLUMNS,
    NUMERIC,
    Frame,
    QueryError,
    Series,
    _reads_interval,
    a_dtype,
    foreign_column,
    wrap,
)
from pophealth.query.timeline import (
    _CMP,
    _MIRROR,
    Timeline,
    Unsupported,
    _shift,
    sorted_intervals,
)
from pophealth.stats._core import DEFAULT_CONFIDENCE, scaled_quotient

__all__ = [
    "Measure",
    "Measures",
    "QuantileMeasure",
    "RateMeasure",
    "RowMeasure",
    "StandardisedRateMeasure",
    "monthly",
    "quarterly",
    "result_columns",
    "run_measures",
    "yearly",
]

Interval = tuple[dt.date, dt.date]


def _add_months(d: dt.date, n: int) -> dt.date:
    y, m = divmod(d.month - 1 + n, 12)
    return dt.date(d.year + y, m + 1, 1)


def _count_ok(count: int) -> None:
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise QueryError(f"need a whole number of intervals, at least one, not {count!r}")


def _stepped(start: dt.date, count: int, step_months: int) -> list[Interval]:
    _count_ok(count)
    if start.day != 1:  # one interval too: from the 15th to the month end is no month
        raise QueryError(f"intervals of whole months must start on the 1st of a month, not {start}")
    out = []
    for i in range(count):
        s = _add_months(start, i * step_months)
        e = _add_months(s, step_months) - dt.timedelta(days=1)
        out.append((s, e))
    return out


def monthly(start: dt.date | str, count: int) -> list[Interval]:
    """``count`` calendar months from ``start`` (the 1st of a month): [(1 Apr, 30 Apr), ...]."""
    return _stepped(_as_date(start), count, 1)


def weekly(start: dt.date | str, count: int) -> list[Interval]:
    """``count`` weeks of 7 days from ``start`` (any day: a Monday for ISO weeks):
    [(Mon 6 Jan, Sun 12 Jan), ...]."""
    start = _as_date(start)
    _count_ok(count)
    week = dt.timedelta(days=7)
    return [(start + i * week, start + (i + 1) * week - dt.timedelta(days=1)) for i in range(count)]


def quarterly(start: dt.date | str, count: int) -> list[Interval]:
    """``count`` quarters of 3 calendar months from ``start`` (the 1st of a month: 1 April
    for the financial year's quarters): [(1 Apr, 30 Jun), (1 Jul, 30 Sep), ...]."""
    return _stepped(_as_date(start), count, 3)


def yearly(start: dt.date | str, count: int) -> list[Interval]:
    """``count`` years of 12 months from ``start`` (e.g. 1 April for financial years)."""
    start = _as_date(start)
    _count_ok(count)
    if (start.month, start.day) == (2, 29):
        raise QueryError(
            f"yearly intervals cannot start on {start}: most years have no 29 February "
            "(start on 1 March or 28 February)"
        )
    out = []
    for i in range(count):
        s = dt.date(start.year + i, start.month, start.day)
        e = dt.date(start.year + i + 1, start.month, start.day) - dt.timedelta(days=1)
        out.append((s, e))
    return out


def _as_date(value: dt.date | str) -> dt.date:
    """A date given as a date or as text ``YYYY-MM-DD`` (anything else: a QueryError)."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str) and len(value) == 10:
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise QueryError(f"{value!r} is not a date (expected a date or text YYYY-MM-DD)")


def _intervals(name: str, intervals: Any) -> list[Interval]:
    """``intervals`` as a list of (start, end) dates, or a QueryError naming the measure:
    each a pair of dates, the start on or before the end, none listed twice."""
    out = []
    for i, item in enumerate(intervals):
        if isinstance(item, str | dt.date) or not isinstance(item, Sequence) or len(item) != 2:
            raise QueryError(
                f"measure {name!r}: interval {i + 1} is {item!r}, not a (start, end) pair of "
                "dates; monthly(start, n), quarterly(...), yearly(...) and weekly(...) make them"
            )
        try:
            start, end = _as_date(item[0]), _as_date(item[1])
        except QueryError as exc:
            raise QueryError(f"measure {name!r}: interval {i + 1}: {exc}") from None
        if start > end:
            raise QueryError(
                f"measure {name!r}: interval {i + 1} starts on {start}, after it ends on {end}"
            )
        out.append((start, end))
    twice = sorted({iv for iv in out if out.count(iv) > 1})
    if twice:
        raise QueryError(
            f"measure {name!r}: the interval {twice[0][0]} to {twice[0][1]} is listed twice"
        )
    return out


class Measure:
    """One measure: a name, numerator, denominator, breakdown and intervals."""

    def __init__(
        self,
        name: str,
        numerator: Series,
        denominator: Series,
        group_by: Mapping[str, Series],
        intervals: Sequence[Interval],
    ):
        self.name = name
        self.numerator = numerator
        self.denominator = denominator
        self.group_by = dict(group_by)
        #: the breakdown columns of the result (a quantile measure's value is no breakdown)
        self.breakdown = [g for g in self.group_by if g not in (VALUE, AGE_BAND)]
        self.intervals = _intervals(name, intervals)
        if numerator.dtype == "bool" and denominator.dtype == "bool":
            self.kind = "proportion"  # of patients
        elif _counts_subset(numerator, denominator):
            self.kind = "row proportion"  # of rows: episodes, attendances, operations
        else:
            self.kind = "ratio"


#: the name of a quantile measure's value among its breakdowns while it is counted (each
#: distinct value a group, its patients the count); not a breakdown of the result
VALUE = "_quantile_value"

#: the columns that name an interval: with disclosure control, each interval's cells are a
#: table of their own — a month and the quarter that starts with it are two tables, each
#: protected by secondary suppression on its own (one table of both would let a cell withheld
#: in the month be "protected" by its twin in the quarter, and be worked out from the month's
#: total and the rest)
INTERVAL_KEYS = ("interval_start", "interval_end")

#: the name of a standardised rate's age band among its breakdowns while it is counted (the
#: events and population of each band); not a breakdown of the result
AGE_BAND = "_age_band"

#: A released quantile, or confidence limit, must have at least this many patients with
#: values beyond the values it is read from on each side, ties not counted (so it is never
#: one of the 3 highest or lowest values of its group, nor worked out from them); see
#: :func:`_release_quantiles`.
QUANTILE_TAIL = 3


class QuantileMeasure(Measure):
    """A quantile measure: the ``quantiles`` of ``value`` among the patients ``among``, per
    group and interval. Counted as the patients ``among`` by breakdown and value (the value
    as one more breakdown, :data:`VALUE`); the quantiles are worked out from those counts
    (:func:`pophealth.stats.centiles.centiles_of_counts`).

    With ``rows`` (a frame), ``value`` is a value per row of that frame and the quantiles
    are over its rows (each attendance one value) of the patients ``among``: counted as the
    rows by interval, group, patient and value in a query of their own
    (:func:`_row_quantile_counts`)."""

    def __init__(
        self,
        name: str,
        value: Series,
        among: Series,
        quantiles: tuple[float, ...],
        group_by: Mapping[str, Series],
        intervals: Sequence[Interval],
        rows: Frame | None = None,
    ):
        if rows is None:
            super().__init__(name, among, among, {**group_by, VALUE: value}, intervals)
        else:  # (the value is no breakdown here: it is one per row, not per patient)
            super().__init__(name, among, among, group_by, intervals)
        self.kind = "quantile" if rows is None else "row quantile"
        self.value = value
        self.among = among
        self.quantiles = quantiles
        #: the frame whose rows the quantiles are over (None: one value per patient)
        self.rows = rows
        #: over rows, the breakdowns that are a value of each row (the rest: per patient)
        self.row_breakdown: list[str] = []


class RowMeasure(Measure):
    """A proportion of the rows of a row dataset (:class:`~pophealth.query.RowDataset`: one
    per operation, referral or attendance): the rows where ``numerator`` holds among those
    where ``denominator`` does (every row when it is None), each row counted in the
    intervals its own date falls in, per group of ``group_by`` (values per row, or per
    patient on the row's date). The values are the row dataset's kind — of the current row
    (``rows.row.start_datetime``) and of aggregates whose conditions read it — and never
    read the index date. Counted on the engine in a query of its own
    (:func:`_row_measure_counts`); released as a proportion of rows."""

    def __init__(
        self,
        name: str,
        rows: RowDataset,
        numerator: Series,
        denominator: Series | None,
        group_by: Mapping[str, Series],
        intervals: Sequence[Interval],
    ):
        super().__init__(
            name,
            numerator,
            denominator if denominator is not None else wrap(True),
            group_by,
            intervals,
        )
        self.kind = "rows"
        #: the row dataset whose rows are counted
        self.row_dataset = rows
        #: True when every row of the row dataset is in the denominator
        self.every_row = denominator is None


#: Days in a year, for person-years: the mean length of a Julian year (3 common years and
#: a leap year), the usual convention for person-years from person-days.
DAYS_PER_YEAR = 365.25
_YEAR = f"; a year is {DAYS_PER_YEAR:g} days"


class RateMeasure(Measure):
    """A rate per person-time: ``events`` (a whole number per patient) over ``person_time``
    (days per patient, e.g. :meth:`~pophealth.query.model.Frame.days_in_interval_for_patient`)
    × ``per``, among the patients ``among`` with some person-time in the interval. Counted
    as a ratio of sums (events over days, each patient's events counted only where the
    patient is at risk); released by :func:`_release_rate`."""

    def __init__(
        self,
        name: str,
        events: Series,
        person_time: Series,
        among: Series | None,
        per: float,
        unit: str,
        group_by: Mapping[str, Series],
        intervals: Sequence[Interval],
    ):
        from pophealth.query.model import when

        at_risk = person_time > 0
        if among is not None:
            at_risk = among.if_null_then(False) & at_risk
        #: the patients the rate is of in an interval: among, with some person-time in it
        self.at_risk = at_risk
        # the person-time where the patient is at risk, missing (outside the rate) elsewhere
        days = when(at_risk).then(person_time).otherwise(None)
        super().__init__(name, events, days, group_by, intervals)
        self.kind = "rate"
        self.events, self.person_time, self.among = events, person_time, among
        self.per, self.unit = per, unit

    @property
    def statistic(self) -> str:
        per = f"{int(self.per):,}" if float(self.per).is_integer() else f"{self.per:g}"
        return f"rate per {per} person-{self.unit}"


class StandardisedRateMeasure(Measure):
    """A directly age-standardised rate (European Standard Population 2013, 5-year bands
    from ``min_age`` to 90+): ``events`` (a whole number per patient) among the patients
    ``among`` (a population count per band), or over ``person_time`` (days per patient),
    per ``per``. Counted as the events and the population (or person-days) of each age band
    — the age on the interval's last day, the band as one more breakdown (:data:`AGE_BAND`)
    — and standardised from those counts (:func:`pophealth.stats.dsr`, Dobson limits);
    released by :func:`_release_standardised`."""

    def __init__(
        self,
        name: str,
        events: Series,
        among: Series | None,
        person_time: Series | None,
        per: float,
        unit: str,
        min_age: int,
        group_by: Mapping[str, Series],
        intervals: Sequence[Interval],
        max_age: int | None = None,
    ):
        from pophealth.query.model import index_date, when
        from pophealth.query.tables import patients
        from pophealth.stats.standardised import ESP2013_BANDS

        if max_age is None:  # to 90+
            band = patients.age_band_on(bands=range(min_age, 95, 5))
        else:  # to the band ending at max_age; older patients have no band (not in the rate)
            band = patients.age_band_on(bands=range(min_age, max_age + 2, 5))
            band = when(patients.age_on(index_date) <= max_age).then(band).otherwise(None)
        if person_time is None:
            assert among is not None
            #: the patients counted in an interval: among, with an age band of the standard
            self.at_risk = among.if_null_then(False) & band.is_not_null()
            super().__init__(name, events, self.at_risk, {**group_by, AGE_BAND: band}, intervals)
        else:
            at_risk = (person_time > 0) & band.is_not_null()
            if among is not None:
                at_risk = among.if_null_then(False) & at_risk
            self.at_risk = at_risk
            days = when(at_risk).then(person_time).otherwise(None)
            super().__init__(name, events, days, {**group_by, AGE_BAND: band}, intervals)
        self.kind = "standardised rate"
        self.events, self.among, self.person_time = events, among, person_time
        self.per, self.unit, self.min_age, self.max_age = per, unit, min_age, max_age
        #: the standard's bands in the rate (labels as ``age_band_on`` writes them), from
        #: :attr:`min_age`'s to :attr:`max_age`'s (or 90+); their weights: :attr:`weights`
        self.band_slice = slice(min_age // 5, None if max_age is None else (max_age + 1) // 5)
        self.bands = ESP2013_BANDS[self.band_slice]

    @property
    def weights(self) -> Sequence[float]:
        from pophealth.stats.standardised import ESP2013

        return ESP2013[self.band_slice]

    @property
    def statistic(self) -> str:
        per = f"{int(self.per):,}" if float(self.per).is_integer() else f"{self.per:g}"
        of = f" person-{self.unit}" if self.person_time is not None else ""
        if self.max_age is not None:
            ages = f", ages {self.min_age}-{self.max_age}"
        else:
            ages = f", ages {self.min_age}+" if self.min_age else ""
        return f"age-standardised rate per {per}{of} (ESP 2013{ages})"


class Measures:
    """A set of measures sharing defaults (denominator, breakdown, intervals)."""

    def __init__(self, intervals: Sequence[Interval] | None = None):
        self._defaults: dict[str, Any] = {"intervals": intervals, "group_by": {}}
        self._measures: dict[str, Measure] = {}

    def define_defaults(
        self,
        *,
        numerator: Any = None,
        denominator: Any = None,
        group_by: Mapping[str, Any] | None = None,
        intervals: Sequence[Interval] | None = None,
    ) -> None:
        for key, value in (
            ("numerator", numerator),
            ("denominator", denominator),
            ("group_by", group_by),
            ("intervals", intervals),
        ):
            if value is not None:
                self._defaults[key] = value

    def define_measure(
        self,
        name: str,
        *,
        numerator: Any = None,
        denominator: Any = None,
        group_by: Mapping[str, Any] | None = None,
        intervals: Sequence[Interval] | None = None,
    ) -> Measure:
        """Define measure ``name``: ``numerator`` among ``denominator`` (each True/False,
        to count patients, or a whole number, to sum), broken down by ``group_by`` (names
        to one value per patient) over ``intervals``; what is not given comes from
        :meth:`define_defaults`. The numerator is counted only among the denominator: a
        patient in the numerator but not the denominator counts in neither."""
        if name in self._measures:
            raise QueryError(f"measure {name!r} is defined twice")
        numerator = numerator if numerator is not None else self._defaults.get("numerator")
        denominator = denominator if denominator is not None else self._defaults.get("denominator")
        _check_name(name)
        if numerator is None or denominator is None:
            raise QueryError(f"measure {name!r}: needs a numerator and a denominator")
        intervals, groups = self._intervals_and_groups(name, group_by, intervals)
        num = check_variable(f"{name}.numerator", numerator, what="measure")
        den = check_variable(f"{name}.denominator", denominator, what="measure")
        for label, s in (("numerator", num), ("denominator", den)):
            if s.dtype not in ("bool", "int"):
                raise QueryError(
                    f"measure {name!r}: the {label} must be True/False (count patients) or a "
                    f"whole number (sum), not {a_dtype(s.dtype)}"
                )
        measure = Measure(name, num, den, groups, intervals)
        self._measures[name] = measure
        return measure

    def define_row_measure(
        self,
        name: str,
        *,
        rows: RowDataset,
        numerator: Any,
        denominator: Any = None,
        group_by: Mapping[str, Any] | None = None,
        intervals: Sequence[Interval] | None = None,
    ) -> RowMeasure:
        """Define measure ``name``: the share of the rows of ``rows`` (a
        :class:`~pophealth.query.RowDataset`: one per operation, referral or attendance) for
        which ``numerator`` holds, among those for which ``denominator`` holds (default:
        every row), broken down by ``group_by`` over ``intervals`` (``group_by`` and
        ``intervals`` default as for :meth:`define_measure`; the default denominator is
        not used).

        ``numerator`` and ``denominator`` are True/False per row, written as a variable of
        ``rows`` is: of the current row (``rows.row.urgency == "emergency"``) and of
        aggregates whose conditions read it (a wound questionnaire within 30 days after
        THIS operation); a ``group_by`` value is one per row or one per patient (the IMD
        quintile on the operation's day: ``addresses.area_on(op.start_datetime)
        .group("imd_quintile")``). Each row counts in every interval its own date (its
        table's date column, ``start_datetime`` for operations) falls in, so none of these
        values, nor the rows' frame or population, may read ``index_date`` or
        ``interval_start``: a row's values are relative to the row.

        Each result row's ``numerator`` and ``denominator`` are counts of rows; ``value``
        the percentage with Wilson limits, a patient's rows counted as independent (its
        ``method`` says so). With disclosure control the counts are also withheld when the
        patients behind them number 1-7; see :func:`run_measures`."""
        if name in self._measures:
            raise QueryError(f"measure {name!r} is defined twice")
        _check_name(name)
        if not isinstance(rows, RowDataset):
            raise QueryError(
                f"measure {name!r}: rows must be a row dataset whose rows are counted "
                f"(per_op = RowDataset(operations.matching(caesarean))), not {rows!r}"
            )
        if numerator is None:
            raise QueryError(f"measure {name!r}: needs a numerator (True/False per row)")
        _row_measure_reads_no_interval(name, "rows", rows.frame, rows)
        if rows.population is not None:
            _row_measure_reads_no_interval(
                name, "the row dataset's population rule", rows.population, rows
            )
        intervals, groups = self._intervals_and_groups(
            name, group_by, intervals, check=lambda n, v: rows._check(n, v, what="measure")
        )
        values = {}
        for label, value in (("numerator", numerator), ("denominator", denominator)):
            if value is None:
                continue
            s = rows._check(f"{name}.{label}", value, what="measure")
            if s.dtype != "bool":
                raise QueryError(
                    f"measure {name!r}: the {label} must be True/False per row (the rows "
                    f"counted), not {_kind(s.dtype)}"
                )
            values[label] = s
        for label, s in [*values.items(), *((f"group_by[{g}]", v) for g, v in groups.items())]:
            _row_measure_reads_no_interval(name, f"the {label}", s, rows)
        measure = RowMeasure(
            name, rows, values["numerator"], values.get("denominator"), groups, intervals
        )
        self._measures[name] = measure
        return measure

    def define_quantile(
        self,
        name: str,
        *,
        value: Any,
        among: Any = None,
        quantiles: float | Sequence[float] = (0.5,),
        group_by: Mapping[str, Any] | None = None,
        intervals: Sequence[Interval] | None = None,
        rows: Frame | None = None,
    ) -> QuantileMeasure:
        """Define measure ``name``: the ``quantiles`` (fractions: 0.5 the median, 0.9 the 90th
        centile) of ``value`` (a number per patient: minutes, days, a count) among the
        patients for whom ``among`` (True/False) holds, broken down by ``group_by`` over
        ``intervals``; ``among``, ``group_by`` and ``intervals`` default as for
        :meth:`define_measure` (``among`` from the default denominator; without one,
        ``among`` must be given — ``among=True`` for everyone — except over rows).

        A patient among them whose value is missing is left out of the quantiles, and
        counted: each row's ``numerator`` is the patients with a value (the quantile's n),
        its ``denominator`` all the patients ``among``. Quantiles are Hyndman & Fan's
        definition 7 with distribution-free (binomial) confidence limits, computed exactly
        from the counts of each distinct value; see :func:`run_measures` for disclosure.

        Over rows: with ``rows=`` a frame (``att = emergency_attendances.where(...)
        .in_interval()``) and ``value`` a value per row of it (``minutes_between(
        att.arrival_datetime, att.first_analgesia_datetime)``), the quantiles are of one
        value per row — each attendance counted, a patient's several attendances as
        independent values — among the rows of the patients ``among``, each in the group
        of its patient. ``numerator`` is then the rows with a value, ``denominator`` all
        the rows; a row whose value is missing is counted as missing. A value per row
        needs ``rows=`` (a row's columns do not say which of its table's rows are meant),
        and reads only that frame's table (and per-patient values). Over rows a breakdown
        may also be a value of each row of the frame (``{"site": att.provider}``): each row
        in its own group. Over rows, with no
        ``among`` and no default denominator, ``among`` is everyone (True): all the rows."""
        if name in self._measures:
            raise QueryError(f"measure {name!r} is defined twice")
        _check_name(name)
        among = among if among is not None else self._defaults.get("denominator")
        if among is None and rows is not None:
            among = True  # over rows: all the rows
        if among is None:
            raise QueryError(
                f"measure {name!r}: needs among=, the patients whose values the quantiles "
                "are of (True/False; among=True for everyone)"
            )
        qs = _quantiles(name, quantiles)
        v = _quantile_value(name, value, rows)
        # over rows, a breakdown may be a value of each row (the site of each attendance)
        per_row = {}
        if rows is not None and isinstance(group_by, Mapping):
            per_row = _row_breakdowns(name, group_by, rows)
            group_by = {g: (True if g in per_row else x) for g, x in group_by.items()}
        intervals, groups = self._intervals_and_groups(name, group_by, intervals)
        groups.update(per_row)
        if v.dtype not in NUMERIC:
            raise QueryError(
                f"measure {name!r}: the value must be a number per patient (minutes, days, a "
                f"count), not {_kind(v.dtype)}"
                + (
                    "; the time from one date to another is a number: later - earlier or "
                    "earlier.days_until(later) in days, minutes_between(start, end) in minutes"
                    if v.dtype in ("date", "datetime")
                    else ""
                )
            )
        a = check_variable(f"{name}.among", among, what="measure")
        if a.dtype != "bool":
            raise QueryError(
                f"measure {name!r}: among must be True/False (the patients whose values the "
                f"quantiles are of), not {_kind(a.dtype)}"
            )
        measure = QuantileMeasure(name, v, a, qs, groups, intervals, rows=rows)
        measure.row_breakdown = list(per_row)
        self._measures[name] = measure
        return measure

    def define_rate(
        self,
        name: str,
        *,
        events: Any,
        person_time: Any,
        among: Any = None,
        per: float = 1000,
        unit: str = "years",
        group_by: Mapping[str, Any] | None = None,
        intervals: Sequence[Interval] | None = None,
    ) -> RateMeasure:
        """Define measure ``name``: a rate per person-time — ``events`` (a whole number per
        patient: admissions, escalations in the interval) per ``per`` person-``unit``
        (``"years"``, a year being 365.25 days, or ``"days"``) of ``person_time`` (days per
        patient inside the interval: ``registrations.days_in_interval_for_patient()``),
        among the patients for whom ``among`` (True/False; default everyone) holds and who
        have some person-time in the interval, broken down by ``group_by`` over
        ``intervals`` (defaults as for :meth:`define_measure`; ``among`` is not taken from
        the default denominator). A patient's events are counted only in the intervals
        where the patient has person-time: count only the events in the time at risk
        (``admissions.in_interval()``, and within the periods counted).

        Each row's ``numerator`` is the events, its ``denominator`` the person-time in
        **days** (a whole number), ``value`` events / (days / 365.25, for years) × ``per``,
        with Poisson limits (exact below 10 events, Byar's from 10); see
        :func:`run_measures` for disclosure control."""
        if name in self._measures:
            raise QueryError(f"measure {name!r} is defined twice")
        _check_name(name)
        _check_per(name, per, unit, "1000 for a rate per 1,000 person-" + unit)
        intervals, groups = self._intervals_and_groups(name, group_by, intervals)
        ev, pt, a = _rate_inputs(
            name, events, person_time, among, "the patients whose events and person-time"
        )
        if pt is None:
            raise QueryError(
                f"measure {name!r}: needs person_time=, days per patient inside the interval "
                "(e.g. registrations.days_in_interval_for_patient())"
            )
        measure = RateMeasure(name, ev, pt, a, float(per), unit, groups, intervals)
        self._measures[name] = measure
        return measure

    def define_standardised_rate(
        self,
        name: str,
        *,
        events: Any,
        among: Any = None,
        person_time: Any = None,
        per: float = 100_000,
        unit: str = "years",
        min_age: int = 0,
        max_age: int | None = None,
        group_by: Mapping[str, Any] | None = None,
        intervals: Sequence[Interval] | None = None,
    ) -> StandardisedRateMeasure:
        """Define measure ``name``: a directly age-standardised rate — ``events`` (a whole
        number per patient: emergency admissions in the interval) per ``per`` of the
        patients ``among`` (True/False: the population, counted in each age band), standardised
        to the European Standard Population 2013 (PROGRAMMES.md section 12.3), broken down by
        ``group_by`` over ``intervals`` (``among``, ``group_by`` and ``intervals`` default as
        for :meth:`define_measure`).

        Given ``person_time`` (days per patient inside the interval:
        ``registrations.days_in_interval_for_patient(until=patients.date_of_death)``), the
        rate is per ``per`` person-``unit`` (``"years"``, of 365.25 days, or ``"days"``) of
        the patients with some person-time (and ``among``, when given) instead.

        The age is the patient's on the interval's last day, in the standard's 5-year bands
        from ``min_age`` (0, or a multiple of 5 up to 90: 65 for a rate of people aged 65
        and over, standardised to the standard's bands from 65-69) to 90+, or to ``max_age``
        (the last age in the rate, where a band ends: 74 for the under-75s, standardised to
        the bands 0-4 ... 70-74); a patient younger than ``min_age`` then (or not yet born),
        or older than ``max_age``, is not in the rate. Each row's ``numerator``
        is the events, its ``denominator`` the patients (or person-days); ``value`` is
        Σ(events/population × weight) / Σweights × ``per`` from the counts of each band —
        exact without disclosure control, rounded cumulatively (youngest band first) as
        released counts are with it — with
        Dobson limits; missing, ``method`` saying why, when the events number fewer than 10
        or a band of the standard has nobody in it. See :func:`run_measures` for disclosure
        control."""
        if name in self._measures:
            raise QueryError(f"measure {name!r} is defined twice")
        _check_name(name)
        _check_per(name, per, unit, "100000 for a rate per 100,000")
        if (
            isinstance(min_age, bool)
            or not isinstance(min_age, int)
            or not 0 <= min_age <= 90
            or min_age % 5
        ):
            raise QueryError(
                f"measure {name!r}: min_age must be where a band of the European Standard "
                f"Population starts (0, 5, ... 90; 65 for ages 65 and over), not {min_age!r}"
            )
        if max_age is not None and (
            isinstance(max_age, bool)
            or not isinstance(max_age, int)
            or not min_age + 4 <= max_age <= 89
            or (max_age + 1) % 5
        ):
            raise QueryError(
                f"measure {name!r}: max_age must be the last age of a band of the European "
                f"Standard Population from min_age's on ({min_age + 4}, {min_age + 9}, ... 89; "
                f"74 for the under-75s; leave it out for all ages to 90+), not {max_age!r}"
            )
        if person_time is None:
            among = among if among is not None else self._defaults.get("denominator")
            if among is None:
                raise QueryError(
                    f"measure {name!r}: needs among=, the patients the rate is of (True/False), "
                    "or person_time= for a rate per person-time"
                )
        intervals, groups = self._intervals_and_groups(name, group_by, intervals)
        ev, pt, a = _rate_inputs(name, events, person_time, among, "the patients")
        measure = StandardisedRateMeasure(
            name, ev, a, pt, float(per), unit, min_age, groups, intervals, max_age
        )
        self._measures[name] = measure
        return measure

    def _intervals_and_groups(
        self, name: str, group_by: Any, intervals: Any, check: Any = None
    ) -> tuple[list[Interval], dict[str, Series]]:
        """A measure's intervals and breakdowns, checked (the defaults where not given):
        each breakdown one value per patient, or as ``check(label, value)`` checks it."""
        group_by = group_by if group_by is not None else self._defaults["group_by"]
        intervals = intervals if intervals is not None else self._defaults["intervals"]
        if not intervals:
            raise QueryError(f"measure {name!r}: needs intervals (e.g. monthly(start, 12))")
        intervals = _intervals(name, intervals)
        if not isinstance(group_by, Mapping):
            raise QueryError(
                f"measure {name!r}: group_by needs names for its breakdowns, "
                f'{{"name": value, ...}}, not {type(group_by).__name__}'
            )
        groups = {}
        taken = {*result_columns(), *PATIENTS_BEHIND.values(), "interval_id", VALUE, AGE_BAND}
        for gname, g in group_by.items():
            if not isinstance(gname, str) or not gname.strip():
                raise QueryError(
                    f"measure {name!r}: a breakdown's name must be text, not {gname!r}"
                )
            if gname in taken:
                raise QueryError(
                    f"measure {name!r}: {gname!r} cannot name a breakdown (the result has a "
                    "column of that name)"
                )
            label = f"{name}.group_by[{gname}]"
            groups[gname] = check(label, g) if check else check_variable(label, g, what="measure")
        return intervals, groups

    @property
    def measures(self) -> dict[str, Measure]:
        return dict(self._measures)

    def __iter__(self):
        return iter(self._measures.values())

    def __len__(self) -> int:
        return len(self._measures)


def _check_per(name: str, per: Any, unit: str, example: str) -> None:
    """A rate's ``unit`` and ``per`` checked: a QueryError naming the measure."""
    if unit not in ("days", "years"):
        raise QueryError(
            f'measure {name!r}: unit must be "days" (per person-days) or "years" '
            f"(per person-years, a year being {DAYS_PER_YEAR} days), not {unit!r}"
        )
    if isinstance(per, bool) or not isinstance(per, int | float) or not per > 0:
        raise QueryError(
            f"measure {name!r}: per must be a positive number ({example}), not {per!r}"
        )


def _rate_inputs(
    name: str, events: Any, person_time: Any, among: Any, of: str
) -> tuple[Series, Series | None, Series | None]:
    """A rate's events (a whole number per patient), person-time (whole days per patient)
    and ``among`` (True/False), each checked when given: a QueryError naming the measure.
    ``of`` names whom ``among`` picks, for its message ("the patients whose events...")."""
    ev = check_variable(f"{name}.events", events, what="measure")
    if ev.dtype != "int":
        raise QueryError(
            f"measure {name!r}: events must be a whole number per patient (e.g. "
            f"admissions.in_interval().count_for_patient()), not {_kind(ev.dtype)}"
            + (": True/False counts patients, not events" if ev.dtype == "bool" else "")
        )
    pt = None
    if person_time is not None:
        pt = check_variable(f"{name}.person_time", person_time, what="measure")
        if pt.dtype != "int":
            raise QueryError(
                f"measure {name!r}: person_time must be a whole number of days per patient "
                "(e.g. registrations.days_in_interval_for_patient()), not "
                f"{_kind(pt.dtype)}"
            )
    a = None
    if among is not None:
        a = check_variable(f"{name}.among", among, what="measure")
        if a.dtype != "bool":
            raise QueryError(
                f"measure {name!r}: among must be True/False ({of} the rate is of), not "
                f"{_kind(a.dtype)}"
            )
    return ev, pt, a


def _quantiles(name: str, quantiles: Any) -> tuple[float, ...]:
    """``quantiles`` as a tuple of fractions strictly between 0 and 1, or a QueryError."""
    items = [quantiles] if isinstance(quantiles, int | float | str) else quantiles
    try:
        items = list(items)
    except TypeError:
        items = [quantiles]
    if not items:
        raise QueryError(f"measure {name!r}: needs at least one quantile (0.5 is the median)")
    out: list[float] = []
    for q in items:
        if isinstance(q, bool) or not isinstance(q, int | float):
            raise QueryError(
                f"measure {name!r}: quantile {q!r} is not a number between 0 and 1 "
                "(0.5 is the median, 0.9 the 90th centile)"
            )
        if not 0 < q < 1:
            hint = f"; the {q:g}th centile is {q / 100:g}" if 1 < q < 100 else ""
            raise QueryError(
                f"measure {name!r}: quantile {q!r} is not strictly between 0 and 1 (0.5 is "
                f"the median, 0.9 the 90th centile{hint})"
            )
        if float(q) in out:
            raise QueryError(f"measure {name!r}: quantile {q!r} is listed twice")
        out.append(float(q))
    return tuple(out)


def _quantile_value(name: str, value: Any, rows: Any) -> Series:
    """A quantile measure's value, checked: one per patient (``rows`` None) or one per row
    of the frame ``rows`` (a value of that frame's table, perhaps with per-patient values);
    anything ambiguous a QueryError naming the measure."""
    if rows is None:
        s = wrap(value) if not isinstance(value, Frame) else None
        if s is not None and s.domain is not None and not s.error:
            raise QueryError(
                f"measure {name!r}: the value {s.desc} is one per row of {s.domain}, not one per "
                "patient; for quantiles over rows (each attendance a value) say which rows: "
                f"rows=<the frame of {s.domain} whose rows are counted>, e.g. "
                f"att = {s.domain}.where(...).in_interval(), value=att.<column>, rows=att; or "
                "aggregate it to one value per patient (.maximum_for_patient(...))"
            )
        return check_variable(f"{name}.value", value, what="measure")
    if not isinstance(rows, Frame):
        raise QueryError(
            f"measure {name!r}: rows must be the frame whose rows the quantiles are over "
            f"(e.g. emergency_attendances.where(...).in_interval()), not {rows!r}"
        )
    if rows.error:
        raise QueryError(f"measure {name!r}: rows: {rows.error}")
    if isinstance(value, Frame):
        raise QueryError(
            f"measure {name!r}: the value is {value!r}, rows themselves: give a number per row "
            "(a column of the rows, or minutes_between(rows.start, rows.end))"
        )
    try:
        s = wrap(value)
    except QueryError as exc:
        raise QueryError(f"measure {name!r}: value: {exc}") from None
    if s.error:
        raise QueryError(f"measure {name!r}: value: {s.error}")
    if s.domain is None:
        raise QueryError(
            f"measure {name!r}: with rows= the value must be one per row of {rows._table} "
            f"(a column of the rows), not {s.desc}, one per patient (for a value per patient, "
            "leave out rows=)"
        )
    if s.domain != rows._table:
        raise QueryError(
            f"measure {name!r}: the value {s.desc} is of rows of {s.domain}, but rows= is a "
            f"frame of {rows._table}; many-rows-per-patient series from different tables "
            "cannot be combined row by row"
        )
    problem = foreign_column(s, rows, "value")
    if problem:
        raise QueryError(f"measure {name!r}: {problem}")
    return s


def _row_breakdowns(name: str, group_by: Mapping[str, Any], rows: Frame) -> dict[str, Series]:
    """The breakdowns of a quantile over ``rows`` that are a value of each row (of the rows'
    table: ``att.provider``), checked; a QueryError naming the measure for a breakdown of
    the rows of another table."""
    out = {}
    for gname, g in group_by.items():
        s = wrap(g) if not isinstance(g, Frame) else None
        if s is None or s.error or s.domain is None:
            continue  # (checked as a per-patient breakdown)
        if s.domain != rows._table:
            raise QueryError(
                f"measure {name!r}: group_by[{gname}] ({s.desc}) is one value per row of "
                f"{s.domain}, but the quantiles are over rows of {rows._table}; a breakdown is "
                f"one per patient, or one per row of {rows._table}"
            )
        problem = foreign_column(s, rows, f"group_by[{gname}]")
        if problem:
            raise QueryError(f"measure {name!r}: {problem}")
        out[gname] = s
    return out


def _row_measure_reads_no_interval(name: str, label: str, node: Any, rows: RowDataset) -> None:
    """A :class:`QueryError` naming row measure ``name`` when ``node`` (its ``label``) reads
    the index date or the interval start: a row counts in the intervals its own date falls
    in, and its values are relative to the row, not to an interval."""
    if not _reads_interval(node):
        return
    table = rows.frame._table
    date = DATE_COLUMNS[table]
    desc = node._desc if isinstance(node, Frame) else getattr(node, "desc", repr(node))
    raise QueryError(
        f"measure {name!r}: {label} ({desc}) reads index_date or interval_start; in a measure "
        f"over the rows of a row dataset each row counts in the interval its own date "
        f"({table}.{date}) falls in, and a row's values are relative to the row: write "
        f"windows from the row's date (rows.row.{date} + days(30), area_on(rows.row.{date})), "
        "and choose the rows without in_interval(), in_last() or index_date"
    )


def _kind(dtype: str) -> str:
    """A type in an analyst's words, for messages: "True/False", "a date", "a string"."""
    return "True/False" if dtype == "bool" else a_dtype(dtype)


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not name.strip():
        raise QueryError(f"measure {name!r}: a measure's name must be text")


def _group_label(s: Series) -> Series:
    return s if s.dtype == "string" and s.op == "fill_unknown" else s.fill_unknown()


def _counts(source: Any, measures: Measures, engine: str) -> tuple[pd.DataFrame, dict[str, str]]:
    """Raw numerator/denominator per measure × interval × group, and how each measure was
    evaluated (``"single"``, ``"change_points"`` or ``"paired"``): per set of intervals
    (usually one), one compiled query with every measure's counts (see :func:`_aggregate`).
    Quantile measures are counted in a query of their own per set of intervals, by their
    breakdown and value: a breakdown by a value that masks cannot follow would otherwise
    take the ordinary measures beside them off masks too."""
    con = connect(source, engine)
    by_intervals: dict[tuple, list[Measure]] = {}
    frames = []
    paths: dict[str, str] = {}
    for m in measures:
        if isinstance(m, RowMeasure):  # the rows of a row dataset: a query of their own
            frames.append(_row_measure_counts(con, m))
            paths[m.name] = "rows"
            continue
        if m.kind == "row quantile":  # over rows: a query of its own (all its intervals)
            frames.append(_row_quantile_counts(con, m))
            paths[m.name] = "paired"
            continue
        # quantile and rate measures apart: see above; a rate's person-time is computed
        # per patient and interval, which would take the others off masks and change points
        own = m.kind if m.kind in ("quantile", "rate", "standardised rate") else None
        by_intervals.setdefault((tuple(m.intervals), own), []).append(m)
    for (intervals, _), group in by_intervals.items():
        variables: dict[str, Series] = {}
        names: dict[str, dict[str, str]] = {}
        for i, m in enumerate(group):
            cols = {"num": f"m{i}_num", "den": f"m{i}_den"}
            variables[cols["num"]] = m.numerator
            variables[cols["den"]] = m.denominator
            for j, (gname, g) in enumerate(m.group_by.items()):
                cols[gname] = f"m{i}_g{j}"
                # (a quantile measure's value is counted as it is, not as a text label)
                variables[cols[gname]] = g if gname == VALUE else _group_label(g)
            names[m.name] = cols
        # rows that are in at least one denominator
        keep = _any_of(
            [
                m.at_risk
                if isinstance(m, RateMeasure | StandardisedRateMeasure)
                else m.denominator
                if m.denominator.dtype == "bool"
                else m.denominator.is_not_null()
                for m in group
            ]
        )
        if len(intervals) > 1:
            done = _by_change_points(con, list(intervals), group, names, variables, keep)
            if done is not None:
                frames.extend(done[0])
                paths.update({m.name: done[1] for m in group})
                continue
        if len(intervals) == 1:  # one interval: its end is simply the index date
            ((start, end),) = intervals
            compiler = Compiler(con, index_date=end, interval_start=start)
        else:
            compiler = Compiler(con, intervals=list(intervals))
        paths.update({m.name: "single" if len(intervals) == 1 else "paired" for m in group})
        unique, shared = _distinct(variables, names)
        try:
            wide = compile_patient_table(compiler, unique, keep, cache_population=True)
            if not compiler.interval_mode:
                wide = wide.mutate(
                    interval_start=ibis.literal(start, type="date"),
                    interval_end=ibis.literal(end, type="date"),
                )
            frames.extend(_aggregate(wide, group, shared))
        finally:
            compiler.close()
    if not frames:
        return pd.DataFrame(columns=["measure", "interval_start", "interval_end"]), paths
    rows = [f for f in frames if len(f)]  # (an empty frame would only blur the dtypes)
    # but its columns stay: a measure with no rows keeps a breakdown the others lack
    columns = list(dict.fromkeys(c for f in frames for c in f.columns))
    return pd.concat(rows or frames, ignore_index=True).reindex(columns=columns), paths


#: the column of distinct patients in a row quantile measure's counts (by interval, group,
#: patient and value: the rows, ``denominator``, of that patient with that value)
PATIENT = "_quantile_patient"


def _row_quantile_counts(con: Any, m: QuantileMeasure) -> pd.DataFrame:
    """The rows of ``m.rows`` of the patients ``m.among``, counted by interval, breakdown
    (the patient's), patient and value (``denominator``; a missing value is a row without a
    value), every interval in one query: the patients ``among`` per interval with their
    breakdowns (:func:`compile_patient_table`), joined to the frame's rows — per interval
    when the frame or the value reads it (``in_interval()``, a window ending on
    ``index_date``), else each row in every interval of its patient."""
    compiler = Compiler(con, intervals=list(m.intervals))
    try:
        names = {g: f"g{j}" for j, g in enumerate(m.breakdown)}
        per_row = set(m.row_breakdown)
        variables = {names[g]: _group_label(m.group_by[g]) for g in m.breakdown if g not in per_row}
        variables["_among"] = m.among
        wide = compile_patient_table(compiler, variables, m.among, cache_population=True)
        assert m.rows is not None
        own = [m.group_by[g] for g in m.row_breakdown]
        rows, _ = compiler.rows(m.rows, extra=(m.value, *own))
        per_interval = any(compiler.depends_on_interval(x) for x in (m.rows, m.value, *own))
        rows = rows.select(
            "patient_id",
            *(["interval_id"] if per_interval else []),
            _v=compiler.expr(m.value, rows).cast("float64"),
            **{names[g]: compiler.expr(_group_label(m.group_by[g]), rows) for g in per_row},
        )
        on = ["patient_id", "interval_id"] if per_interval else ["patient_id"]
        wide = wide.filter(wide["_among"].fill_null(False))
        joined = rows.inner_join(wide, on)
        keys = {
            "interval_start": joined.interval_start,
            "interval_end": joined.interval_end,
            **{g: joined[names[g]] for g in m.breakdown},
            PATIENT: joined.patient_id,
            VALUE: joined._v,
        }
        df = joined.group_by(**keys).aggregate(denominator=joined.count()).to_pandas()
    finally:
        compiler.close()
    df.insert(0, "measure", m.name)
    return df


def _row_measure_counts(con: Any, m: RowMeasure) -> pd.DataFrame:
    """The rows of ``m``'s row dataset counted by interval and breakdown, every interval in
    one query on the engine: the row dataset's table (:func:`~pophealth.query.dataset.row_table`,
    its numerator, denominator and breakdowns as variables per row) joined to the intervals
    its rows' dates fall in (a row in two intervals counts in both), then per interval and
    group the rows in the denominator, those also in the numerator, and the distinct
    patients behind each (:data:`PATIENTS_BEHIND`)."""
    rows = m.row_dataset
    names = {g: f"_g{j}" for j, g in enumerate(m.breakdown)}
    variables = {"_num": m.numerator, **{names[g]: _group_label(m.group_by[g]) for g in names}}
    if not m.every_row:
        variables["_den"] = m.denominator
    # (nothing a row measure reads depends on the index date: the last interval's end)
    t, compiler = row_table(con, rows, variables, max(end for _, end in m.intervals))
    try:
        date = ROW_PREFIX + DATE_COLUMNS[rows.frame._table]
        # (a date-and-time by its day; a table dated by a plain date as it is)
        day = t[date].date() if t[date].type().is_timestamp() else t[date]
        t = t.mutate(_day=day)
        if not m.every_row:
            t = t.filter(t._den.fill_null(False))
        iv = compiler.literal_table(
            {
                "interval_start": pa.array([s for s, _ in m.intervals], pa.date32()),
                "interval_end": pa.array([e for _, e in m.intervals], pa.date32()),
            }
        )
        joined = t.inner_join(iv, [t._day >= iv.interval_start, t._day <= iv.interval_end])
        hit = joined._num.fill_null(False)
        keys = {
            "interval_start": joined.interval_start,
            "interval_end": joined.interval_end,
            **{g: joined[names[g]] for g in m.breakdown},
        }
        agg = joined.group_by(**keys).aggregate(
            numerator=hit.cast("int64").sum().cast("int64"),
            denominator=joined.count().cast("int64"),
            **{
                PATIENTS_BEHIND["pn"]: joined.patient_id.nunique(where=hit).cast("int64"),
                PATIENTS_BEHIND["pd"]: joined.patient_id.nunique().cast("int64"),
            },
        )
        df = agg.to_pandas()
    finally:
        compiler.close()
    df.insert(0, "measure", m.name)
    return df


def shared_values(measures: Measures, index_date: dt.date, population: Series) -> list[Series]:
    """What the measures of ``measures`` that a dataset run with ``population`` on
    ``index_date`` can serve need per patient (numerators, denominators, breakdowns), for
    that run to compute in its own passes and remember: the measures over one interval
    ending on ``index_date`` whose denominators lie within ``population`` (the others are
    computed afresh by :func:`run_measures` whatever the dataset kept)."""
    out: list[Series] = []
    for m in measures:
        if len(m.intervals) != 1 or m.intervals[0][1] != index_date:
            continue
        if m.kind in ("row quantile", "rows"):  # its values are one per row, not per patient
            continue
        den = m.denominator if m.denominator.dtype == "bool" else m.denominator.is_not_null()
        if not implies(den, population):
            continue
        out.extend([m.numerator, m.denominator, *m.group_by.values()])
    return out


def _distinct(
    variables: dict[str, Series], names: dict[str, dict[str, str]]
) -> tuple[dict[str, Series], dict[str, dict[str, str]]]:
    """One column per distinct definition (measures often share denominators and
    breakdowns): the variables kept, and each measure's columns renamed to them."""
    first: dict[tuple, str] = {}
    for name, s in variables.items():
        first.setdefault(s.key, name)
    unique = {name: variables[name] for name in first.values()}
    shared = {m: {k: first[variables[v].key] for k, v in c.items()} for m, c in names.items()}
    return unique, shared


def _any_of(conditions: list[Series]) -> Series:
    """``a | b | ...`` of the conditions, without repeats and without a condition that can
    only hold where another does (``a | (a & b)`` is ``a``): measures often share their
    denominators or narrow one another's."""
    distinct = list({c.key: c for c in conditions}.values())

    def covered(i: int, c: Series) -> bool:  # of two equivalent conditions, keep the first
        return any(
            j != i and implies(c, d) and (j < i or not implies(d, c))
            for j, d in enumerate(distinct)
        )

    kept = [c for i, c in enumerate(distinct) if not covered(i, c)]
    out = kept[0]
    for c in kept[1:]:
        out = out | c
    return out


def _aggregate(
    wide: Any,
    group: list[Measure],
    names: dict[str, dict[str, str]],
) -> list[pd.DataFrame]:
    """Counts of every measure of ``group`` from ``wide`` (one row per patient, or patient ×
    interval, with each measure's columns): one aggregate query per distinct breakdown
    (usually one for all the measures), each measure's sums in their own columns with a
    count of its rows, so a group appears for a measure only where the measure has rows.
    ``names`` maps each measure to its columns (one column per distinct definition, so
    measures with the same breakdown name the same columns). ``wide`` is materialised
    first only when more than one query reads it."""
    by_breakdown = breakdowns(group, names)
    cached = len(by_breakdown) > 1
    if cached:
        wide = wide.cache()
    frames = []
    try:
        for sig, measures in by_breakdown.items():
            sums: dict[str, Any] = {}
            insides: dict[str, Any] = {}  # denominator column -> rows inside it
            count = {}  # measure -> the sum counting its rows
            for i, m in enumerate(measures):
                inside, num_value, den_value = _values(m, wide, names[m.name])
                den = names[m.name]["den"]
                sums[f"_n{i}"] = num_value.sum().cast("int64")
                sums[f"_d{i}"] = den_value.sum().cast("int64")
                count[m.name] = f"_d{i}"  # a True/False denominator counts its rows
                if m.denominator.dtype != "bool":
                    sums[f"_c{i}"] = inside.cast("int64").sum().cast("int64")
                    count[m.name] = f"_c{i}"
                for k, v in _patients_behind(m, inside, num_value, den_value).items():
                    sums[f"_{k}{i}"] = v.cast("int64").sum().cast("int64")
                insides.setdefault(den, inside)
            keep = None
            for inside in insides.values():
                keep = inside if keep is None else keep | inside
            keys = {c: wide[c] for c in ("interval_start", "interval_end")}
            keys.update({g: wide[col] for g, col in sig})
            agg = wide.filter(keep).group_by(**keys).aggregate(**sums)
            df = agg.to_pandas()
            lead = list(keys)
            for i, m in enumerate(measures):
                behind = [f"_{k}{i}" for k in PATIENTS_BEHIND if f"_{k}{i}" in df.columns]
                part = df.loc[df[count[m.name]] > 0, [*lead, f"_n{i}", f"_d{i}", *behind]]
                part = part.rename(columns=_patient_columns(i))
                part = part.reset_index(drop=True)
                part.insert(0, "measure", m.name)
                frames.append(part)
    finally:
        release = getattr(wide, "release", None) if cached else None
        if release is not None:
            release()
    return frames


#: the columns of distinct patients behind a count of rows, by their short name in queries
PATIENTS_BEHIND = {"pn": "numerator_patients", "pd": "denominator_patients"}


def _patients_behind(m: Measure, inside: Any, num_value: Any, den_value: Any) -> dict[str, Any]:
    """Per row of the patient table, whether the patient adds to a numerator or denominator
    that is a sum (of rows, usually), keyed by the short names of :data:`PATIENTS_BEHIND`:
    summed, the distinct patients behind the count, which the disclosure rule also checks
    (ten attendances may be one patient's). None for a True/False one: it counts patients."""
    out = {}
    if m.numerator.dtype != "bool":
        out["pn"] = num_value != 0
    if m.denominator.dtype != "bool":
        out["pd"] = inside & (den_value != 0)
    return out


def _patient_columns(i: int) -> dict[str, str]:
    return {
        f"_n{i}": "numerator",
        f"_d{i}": "denominator",
        **{f"_{k}{i}": v for k, v in PATIENTS_BEHIND.items()},
    }


def _values(m: Measure, wide: Any, cols: dict[str, str]) -> tuple[Any, Any, Any]:
    """``(inside the denominator, numerator value, denominator value)`` per row of ``wide``."""
    num, den = wide[cols["num"]], wide[cols["den"]]
    if m.denominator.dtype == "bool":
        inside = den.fill_null(False)
        den_value = inside.cast("int64")
    else:
        inside = den.notnull()
        den_value = den.fill_null(0)
    if m.numerator.dtype == "bool":
        num_value = (num.fill_null(False) & inside).cast("int64")
    else:
        num_value = ibis_where(inside, num.fill_null(0))
    return inside, num_value, den_value


def _by_change_points(
    con: Any,
    intervals: list[Interval],
    group: list[Measure],
    names: dict[str, dict[str, str]],
    variables: dict[str, Series],
    keep: Series,
) -> tuple[list[pd.DataFrame], str] | None:
    """Counts of ``group`` by interval masks (:mod:`pophealth.query.masks`) or else by
    change-point evaluation (:mod:`pophealth.query.timeline`), with the way used; None
    when neither applies (the caller pairs patients with intervals instead)."""
    order = sorted_intervals(intervals)
    if order is None:
        return None
    timeline = Timeline(con, order)
    try:
        timeline.analyse([*variables.values(), keep])
    except Unsupported:
        return None
    unique, names = _distinct(variables, names)
    try:
        plan = MaskPlan(timeline, unique, group, names) if Timeline.use_masks else None
    except Unsupported:
        plan = None
    try:
        if plan is not None:
            return plan.run(keep), "masks"
        wide = timeline.counts(unique, keep)
        return _change_point_totals(timeline, wide, group, names), "change_points"
    finally:
        timeline.release()


def _change_point_totals(
    timeline: Timeline, wide: Any, group: list[Measure], names: dict[str, dict[str, str]]
) -> list[pd.DataFrame]:
    """Counts per interval from the evaluations at change points (``wide``): each row adds
    its values from its ``_k`` and takes them away again at ``_kn`` (the patient's next
    change point), so one aggregate over the rows paired with a sign, ``+`` at ``_k`` and
    ``-`` at ``_kn``, gives the differences, and the counts are their running sums per
    group. One query per distinct breakdown (usually one), ``wide`` materialised first only
    when more than one query reads it."""
    last = timeline.n
    by_breakdown = breakdowns(group, names)
    cached = len(by_breakdown) > 1
    if cached:
        wide = timeline._cache(wide)
    signs = timeline.c.literal_table({"_s": pa.array([1, -1], pa.int64())})
    x = wide.cross_join(signs)
    x = x.mutate(_at=ibis.cases((x._s == 1, x._k), else_=x._kn).cast("int64"))
    x = x.filter(x._at < last)
    frames = []
    for sig, measures in by_breakdown.items():
        sums: dict[str, Any] = {}
        keep = None
        for i, m in enumerate(measures):
            inside, num_value, den_value = _values(m, x, names[m.name])
            sums[f"_n{i}"] = (num_value * x._s).sum().cast("int64")
            sums[f"_d{i}"] = (den_value * x._s).sum().cast("int64")
            sums[f"_c{i}"] = (inside.cast("int64") * x._s).sum().cast("int64")
            for k, v in _patients_behind(m, inside, num_value, den_value).items():
                sums[f"_{k}{i}"] = (v.cast("int64") * x._s).sum().cast("int64")
            keep = inside if keep is None else keep | inside
        keys = {"_k": x._at, **{g: x[col] for g, col in sig}}
        df = x.filter(keep).group_by(**keys).aggregate(**sums).to_pandas()
        groups = [g for g, _ in sig]
        for i, m in enumerate(measures):
            behind = [f"_{k}{i}" for k in PATIENTS_BEHIND if f"_{k}{i}" in df.columns]
            part = df[[*groups, "_k", f"_n{i}", f"_d{i}", f"_c{i}", *behind]].rename(
                columns={**_patient_columns(i), f"_c{i}": "_n"}
            )
            out = timeline.totals(part, groups)
            out.insert(0, "measure", m.name)
            frames.append(out)
    return frames


def ibis_where(cond: Any, value: Any) -> Any:
    import ibis

    return ibis.cases((cond, value), else_=0)


@gc_paused
def run_measures(
    source: Any,
    measures: Measures,
    *,
    engine: str = "duckdb",
    disclosure: bool = True,
    policy: Any = None,
    multiplier: float = 100,
) -> pd.DataFrame:
    """Run every measure over every interval; one row per measure × interval × group
    with someone in the denominator. An interval (or a group within one) where nobody is
    in the denominator has no row, not a row of 0 of 0: reindex a series on the intervals
    before drawing it, so that a month with no row shows as a gap, not as a join.

    Columns: ``measure``, ``interval_start``, ``interval_end``, the breakdown columns (each
    measure's own; ``None`` where a measure does not break down by it), ``numerator``,
    ``denominator``, ``value`` (× ``multiplier``: 100 = percentage), the confidence limits
    (``lower95_0cl`` ...: Wilson for proportions of patients, and of rows when the
    numerator counts some of the rows the denominator counts; Poisson for events per
    patient, a count of rows over a True/False denominator; missing for other ratios),
    ``statistic``, ``method`` and ``disclosure_note``. A quantile measure has a row per
    interval, group and quantile, in the order asked for, its ``statistic`` naming the
    quantile (``"median"``, ``"90th centile"``): ``numerator`` the patients with a value,
    ``denominator`` all the patients among (over rows: the rows with a value, and all the
    rows of those patients), ``value`` the centile (Hyndman & Fan 7) and the
    limits from binomial ranks (Campbell & Gardner; missing where too few values for them).
    A row measure (:meth:`Measures.define_row_measure`) has a row per interval and group
    with rows in its denominator: ``numerator`` and ``denominator`` counts of rows, ``value``
    the percentage with Wilson limits, ``method`` saying the rows are counted as independent.
    A rate measure has a row per interval and group with someone at risk: ``numerator`` the
    events, ``denominator`` the person-time in days, ``value`` the rate per ``per``
    person-years or person-days (its own ``per``; ``multiplier`` is not used) with Poisson
    limits, ``statistic`` naming it (``"rate per 1,000 person-years"``).
    ``result.attrs["evaluation"]`` maps
    each measure to how it was computed: ``"masks"``, ``"change_points"``, ``"paired"``
    (fallback), ``"single"`` (one interval) or ``"rows"`` (over a row dataset's rows).
    ``result.attrs["unlinked"]`` names, with disclosure control, each measure by two or
    more columns beside one of the same counts by fewer of them, which the release does
    not protect together (:func:`unlinked_breakdowns`), and measures of the same counts
    whose breakdowns do not add up to the same total (:func:`_linked_tables`).

    ``disclosure=True`` (the default) releases the counts through
    :func:`pophealth.disclosure.release_proportions` (or :func:`~pophealth.disclosure.apply`
    for ratios) with ``policy`` (default :data:`pophealth.disclosure.DEFAULT_POLICY`), the
    breakdown columns as margins for secondary suppression, each interval a table of its
    own (a proportion overall and the same proportion by one column each are one table,
    the overall count the total of each breakdown, and by several columns too, each
    column's cells adding up to the measure by that column; with no overall measure, the
    breakdowns are one table all the same, their total kept for the audit and not shown:
    :func:`_linked_groups`; a count withheld
    in a month is withheld in every interval that shares days with the month without
    lying inside it — its quarter, its year — in this measure and in any other of the same
    counts, as counts may add up across intervals, and a numerator withheld so in any
    window of another measure counting the same rows that shares days with its window
    without lying inside it — the rolling 3 months holding a withheld month:
    :func:`_released_within`, :func:`numerator_windows`; and a count withheld in one
    measure is withheld in the same interval and group of every other measure of the run
    whose counts are equal to its own in every interval and group, not all 0, whatever
    their definitions: :func:`_same_parts`); a quantile
    measure's counts go through :func:`~pophealth.disclosure.apply`, and its value and
    limits are withheld wherever its numerator is and wherever fewer than
    :data:`QUANTILE_TAIL` patients rank beyond the values they are read from (ties not
    counted; over rows: the counts withheld also when 1-7
    patients are behind them, and the value or limits unless 3 rows and 3 patients rank
    beyond them). A rate measure's events and person-days both go
    through :func:`~pophealth.disclosure.apply` (the patients with an event, and those with
    person-time, checked behind them), its value and limits worked out from the released
    figures. A row measure's counts of rows are released as a row proportion's: withheld
    also when the distinct patients behind them number 1-7. ``disclosure=False`` gives the
    exact counts and every value — for analysis inside the secure environment only.
    """
    if not isinstance(measures, Measures):
        raise TypeError("run_measures needs a Measures object")
    raw, paths = _counts(source, measures, engine)
    apart: list[str] = []  # linked measures whose breakdowns do not add up alike
    linked = _release_counted(raw, measures, policy, multiplier, apart) if disclosure else {}
    out = []
    for m in measures:
        if m.name in linked:
            out.append(linked[m.name])
            continue
        if isinstance(m, QuantileMeasure):
            df = raw[raw["measure"] == m.name].copy()
            out.append(_release_quantiles(df, m, disclosure, policy))
            continue
        if isinstance(m, StandardisedRateMeasure):
            df = raw[raw["measure"] == m.name].copy()
            out.append(_release_standardised(df, m, disclosure, policy))
            continue
        df = _measure_counts(raw, m)
        out.append(_release(df, m, m.breakdown, disclosure, policy, multiplier))
    group_cols = [c for m in measures for c in m.breakdown]
    group_cols = list(dict.fromkeys(group_cols))
    result = pd.concat(out, ignore_index=True) if out else pd.DataFrame()
    result = _result_columns(result, group_cols, disclosure)
    result.attrs["evaluation"] = paths
    result.attrs["unlinked"] = [*unlinked_breakdowns(measures), *apart] if disclosure else []
    return result


#: the measures released as proportions: of patients, of rows of a table, of a row dataset
_PROPORTIONS = ("proportion", "row proportion", "rows")

#: the ``method`` of a proportion of rows: a patient's rows counted as separate
ROWS_COUNTED = "; rows counted as independent"

#: the label of the total rows while linked measures are released as one table (never a
#: group's own label: a breakdown's labels are text, numbers or missing)
_LINKED_TOTAL = "\x00total"


def _what_counts(m: Measure) -> tuple:
    """What measure ``m`` counts, whatever its breakdown and intervals: its kind, numerator
    and denominator — and, of quantiles, the value and the rows (one value among the same
    patients counts the same patients with it, or over the same rows the same rows); of a
    row measure, its row dataset's rows."""
    what = (m.value.key, _key(m.rows)) if isinstance(m, QuantileMeasure) else None
    what = id(m.row_dataset) if isinstance(m, RowMeasure) else what
    return (m.kind, m.numerator.key, m.denominator.key, what)


def _linked_groups(measures: Measures) -> list[list[Measure | None]]:
    """The measures of one run — of any kind: proportions of patients or of rows, row
    measures, ratios (events per patient), rates per person-time, standardised rates,
    centiles per patient or per row — that count one numerator of one denominator over the
    same intervals, each broken down by other columns, and the same overall where the run
    has it (else None: two or more breakdowns): the overall measure is the total of each of
    the others' tables, and a measure by several columns adds up to each of the measures
    by one of them (practice and sex to practice: :func:`_cross_sets`). Released one by
    one, a cell withheld in a breakdown could be worked out from the overall count and the
    breakdown's other cells (A 1, B 8 withheld as a second cell, C 8 released as 10,
    overall 17 released as 15: B is 8 or more, so A is 1) — or, with no overall, from
    another breakdown's cells, which add up to the same total (by sex 10 and 10: A and B
    are 12)."""
    by_counts: dict[tuple, list[Measure]] = {}
    for m in measures:
        linkable = type(m) is Measure or isinstance(m, QuantileMeasure)
        linkable |= type(m) in (RateMeasure, StandardisedRateMeasure, RowMeasure)
        if not linkable:
            continue
        key = (*_what_counts(m), tuple(m.intervals))
        by_counts.setdefault(key, []).append(m)
    out = []
    for group in by_counts.values():
        overall = [m for m in group if not m.breakdown]
        split: dict[tuple, Measure] = {}
        for m in group:
            if m.breakdown:  # (a second by the same columns: on its own)
                split.setdefault(tuple(m.breakdown), m)
        if split and (overall or len(split) > 1):
            out.append([overall[0] if overall else None, *split.values()])
    return out


def unlinked_breakdowns(measures: Measures) -> list[str]:
    """A sentence for each measure broken down by two or more columns beside another
    measure of the same counts by some of those columns (or overall) that the release does
    not link it with: its cells add up to the other's, so a cell it withholds could be
    worked out from the other's released count (women 7 and men 7 of a practice beside
    the practice's 14). Linked (:func:`_linked_groups`, :func:`_cross_sets`) are the
    measures over the same intervals: a measure by several columns with each measure by
    some of them (by the same definitions) and with the overall, shown or not. Not linked:
    one over other intervals. docs/query.md, section 4."""

    def counts(m: Measure) -> tuple:
        return (type(m).__name__, *_what_counts(m))

    def groups(m: Measure) -> frozenset:
        return frozenset((g, m.group_by[g].key) for g in m.breakdown)

    together = {
        m.name: {o.name for o in group if o is not None}
        for group in _linked_groups(measures)
        for m in group
        if m is not None
    }
    out = []
    for m in measures:
        if len(m.breakdown) < 2:
            continue
        beside = [
            o.name for o in measures
            if o is not m and counts(o) == counts(m) and groups(o) < groups(m)
            and o.name not in together.get(m.name, ())
        ]  # fmt: skip
        if beside:
            named = ", ".join(repr(b) for b in beside)
            out.append(
                f"measure {m.name!r} (by {', '.join(m.breakdown)}) adds up to {named}, but "
                "is not released with it: a cell it withholds may be worked out from there — "
                "publish one of them, or give the run both over the same intervals "
                "(docs/query.md, section 4)"
            )
    return out


def _linked_tables(
    raw: pd.DataFrame,
    measures: Measures,
    policy: Any,
    multiplier: float,
    apart: list[str] | None = None,
) -> list[tuple[Measure | None, list[Measure], pd.DataFrame, Any, bool]]:
    """Each group of :func:`_linked_groups` as one table to release — each breakdown's
    cells with the overall count as their total row, the copies of that total one count —
    as the programmes release a register by each of its breakdowns: ``(overall, split,
    table, release, proportion)``, ``release(withhold=..., avoid=...)`` releasing the
    table (:func:`_released_within`), :func:`_finish_linked` making each measure's rows of
    it. With no overall measure (None) the total rows are the first breakdown's cells
    added up, never shown (``hidden``): where another breakdown's cells do not add up to
    the same, in some interval, the group is not linked (:func:`_hidden_total`) and
    ``apart`` gets a sentence naming it."""
    from pophealth import disclosure as sdc

    kw: dict[str, Any] = {} if policy is None else {"policy": policy}
    keys = [*INTERVAL_KEYS, "_breakdown", "_group"]

    def counts_of(m: Measure) -> pd.DataFrame:
        if isinstance(m, QuantileMeasure):
            return _quantile_counts(raw[raw["measure"] == m.name].copy(), m)
        if isinstance(m, StandardisedRateMeasure):
            bands, cells, _ = _standardised_cells(raw[raw["measure"] == m.name].copy(), m)
            return _with_partial_bands(bands, cells, m)
        return _measure_counts(raw, m)

    prepared = []
    for overall, *split in _linked_groups(measures):
        own = [counts_of(m) for m in split]
        total = counts_of(overall) if overall is not None else _hidden_total(own)
        if total is None:
            if apart is not None:
                names = ", ".join(repr(m.name) for m in split)
                apart.append(
                    f"measures {names} count the same but their breakdowns do not add up to "
                    "the same total in every interval: each is released on its own, and a "
                    "cell one withholds may be worked out from another (docs/query.md, "
                    "section 4)"
                )
            continue
        parts = []
        margins = _shared_margins(split)
        for margin in margins:  # (a breakdown two of them share, not in the run)
            src = own[split.index(margin.source)]
            sums = [
                c
                for c in src.columns
                if c in ("numerator", "denominator")
                or c.endswith("_patients")
                or c.startswith(_UPTO)
            ]
            keys_ = [*INTERVAL_KEYS, *margin.breakdown]
            own.append(src.groupby(keys_, dropna=False, sort=True)[sums].sum().reset_index())
        for m, cells in zip([*split, *margins], own, strict=True):
            cols = list(m.breakdown)
            group = (
                cells[cols[0]].astype(object)
                if len(cols) == 1
                else pd.Series(list(zip(*(cells[c] for c in cols), strict=True)), index=cells.index)
            )
            cells = cells.drop(columns=cols).assign(_group=group.astype(object))
            parts.append(cells.assign(_breakdown=_breakdown_label(m)))
            parts.append(total.assign(_breakdown=_breakdown_label(m), _group=_LINKED_TOTAL))
        table = pd.concat(parts, ignore_index=True)
        behind = {
            side: f"{side}_patients" for side in ("numerator", "denominator")
            if f"{side}_patients" in table and table[f"{side}_patients"].notna().all()
        }  # fmt: skip
        bands = [c for c in table.columns if c.startswith(_UPTO)]
        if bands:  # (a margin's or a hidden total's rate is never shown)
            table[_EVERY_BAND] = table[_EVERY_BAND].eq(True)
            bands.append(_EVERY_BAND)
        table = table[[*keys, "numerator", "denominator", *behind.values(), *bands]]
        table["_group"] = table["_group"].astype(object)
        linking = {
            "by": keys, "margins": ["_group"], "total_label": _LINKED_TOTAL,
            "same_total_across": "_breakdown", **kw,
        }  # fmt: skip
        crossed = _cross_sets(table, [*split, *margins])
        if crossed:
            linking["nested"] = crossed
        unseen = _not_shown(table, overall)
        if unseen.any():
            linking["hidden"] = unseen
        kind = split[0] if overall is None else overall
        proportion = kind.kind in _PROPORTIONS
        if proportion:  # of patients, or of rows (the patients behind them checked too)
            release = functools.partial(
                sdc.release_proportions, table, "numerator", "denominator",
                multiplier=multiplier, patients=behind or None, **linking,
            )  # fmt: skip
        elif isinstance(kind, QuantileMeasure) and kind.rows is None:
            # centiles of patients: the patients without a value kept as a complement is
            release = functools.partial(_patient_counts_released, table, **linking)
        else:  # a ratio or a rate: its counts as one table, then each measure's values
            counted = {"patients": behind or None}
            days = _with_most_days(table, counted) if _over_person_days(kind) else table
            release = functools.partial(
                sdc.apply, days, ["numerator", "denominator"], **counted, **linking
            )
            if bands:  # a standardised rate's bands, rounded, add up as its counts do
                release = functools.partial(_released_with_bands, table, release, linking, policy)
        prepared.append((overall, split, table, release, proportion))
    return prepared


@dataclass(frozen=True)
class _Margin:
    """A breakdown that two measures of a linked table share and the run does not have
    (practice × sex and sex × ethnicity share sex): each one's cells add up to it, so it is
    in the table for the audit, its cells never shown (:func:`_shared_margins`)."""

    breakdown: tuple[str, ...]
    group_by: Mapping[str, Any]
    source: Any  # the measure whose cells are added up to make it


def _shared_margins(split: list[Measure]) -> list[_Margin]:
    """The breakdowns two measures of ``split`` share (their columns in common, by the same
    definitions) where neither's columns are all the other's (that is :func:`_cross_sets`)
    and the run has no measure by them: practice × sex beside sex × ethnicity, with no
    measure by sex. Without it the audit would not know that the two add up alike, sex by
    sex (C's men 4, withheld, beside A's 20 and the men's 24 by ethnicity)."""
    have = {frozenset((c, m.group_by[c].key) for c in m.breakdown) for m in split}
    out: dict[frozenset, _Margin] = {}
    for i, a in enumerate(split):
        for b in split[i + 1 :]:
            common = [
                c
                for c in a.breakdown
                if c in b.breakdown and a.group_by[c].key == b.group_by[c].key
            ]
            key = frozenset((c, a.group_by[c].key) for c in common)
            if not common or key in have or len(common) in (len(a.breakdown), len(b.breakdown)):
                continue
            out.setdefault(key, _Margin(tuple(common), {c: a.group_by[c] for c in common}, a))
    return list(out.values())


def _not_shown(table: pd.DataFrame, overall: Measure | None) -> np.ndarray:
    """The rows of a linked table that are never shown: a shared margin's cells
    (:class:`_Margin`) and, with no overall measure, the total rows."""
    label = table["_breakdown"].astype(str)
    total = (table["_group"] == _LINKED_TOTAL).to_numpy()
    unseen = label.str.startswith(_MARGIN_LABEL).to_numpy() & ~total
    return unseen | total if overall is None else unseen


#: the start of a shared margin's breakdown label in a linked table (no NUL: pandas groups
#: strings only up to one)
_MARGIN_LABEL = "(not shown) "


def _hidden_total(cells: list[pd.DataFrame]) -> pd.DataFrame | None:
    """The total of linked measures with no overall (``cells``: each one's counts by
    interval and group): the first one's counts added up in each interval (and the patients
    behind them, unused: the total is never shown nor checked for few patients) — None
    where another's numerator or denominator add up to something else in some interval, or
    cover other intervals: then the measures are released each on its own."""
    counts = ["numerator", "denominator"]
    sums = [c.groupby(list(INTERVAL_KEYS), sort=True)[counts].sum().astype(float) for c in cells]
    first = sums[0]
    for other in sums[1:]:
        if not (other.index.equals(first.index) and (other.to_numpy() == first.to_numpy()).all()):
            return None
    behind = [c for c in cells[0].columns if c.endswith("_patients") or c.startswith(_UPTO)]
    total = cells[0].groupby(list(INTERVAL_KEYS), sort=True)[[*counts, *behind]].sum()
    return total.reset_index()


def _breakdown_label(m: Measure | _Margin) -> str:
    """Measure ``m``'s breakdown in a linked table: its column, or its columns joined (a
    shared margin's marked as not shown)."""
    label = " × ".join(m.breakdown)  # (not NUL: pandas groups strings only up to one)
    return _MARGIN_LABEL + label if isinstance(m, _Margin) else label


def _cross_sets(table: pd.DataFrame, split: list[Measure]) -> list[tuple[list[int], int]]:
    """The additive sets of a linked table (:func:`_linked_tables`) beyond each breakdown
    and its total: the cells of a measure by several columns that share the values of some
    of them, in one interval, add up to the cell of the measure by those columns (by the
    same definitions) where the run has it — practice and sex to practice; practice, sex
    and age band to practice and sex — (the cells' rows, the row of their total), for
    :func:`pophealth.disclosure.secondary_suppression`. Only where the counts do add up."""
    label = table["_breakdown"].to_numpy()
    group = table["_group"].to_numpy(dtype=object)
    counts = table[["numerator", "denominator"]].to_numpy(dtype=float)
    when = list(zip(table["interval_start"], table["interval_end"], strict=True))

    def same(v: object) -> object:
        return "\x1fmissing" if v is None or (isinstance(v, float) and np.isnan(v)) else v

    def values(o: Measure, g: object) -> tuple:
        return tuple(same(v) for v in (g if len(o.breakdown) > 1 else (g,)))

    sets = []
    for m in split:
        if len(m.breakdown) < 2:
            continue
        rows = np.flatnonzero(label == _breakdown_label(m))
        rows = rows[[group[r] != _LINKED_TOTAL for r in rows]]
        for o in split:
            cols = list(o.breakdown)
            if not set(cols) < set(m.breakdown):
                continue
            if any(o.group_by[c].key != m.group_by[c].key for c in cols):
                continue
            at = [list(m.breakdown).index(c) for c in cols]
            totals = {
                (when[r], values(o, group[r])): r
                for r in np.flatnonzero(label == _breakdown_label(o))
                if group[r] != _LINKED_TOTAL
            }
            parts: dict[tuple, list[int]] = {}
            for r in rows:
                parts.setdefault((when[r], tuple(same(group[r][i]) for i in at)), []).append(int(r))
            for key, cells in parts.items():
                total = totals.get(key)
                if total is not None and (counts[cells].sum(axis=0) == counts[total]).all():
                    sets.append((cells, int(total)))
    return sets


def _finish_linked(
    raw: pd.DataFrame,
    out: pd.DataFrame,
    overall: Measure | None,
    split: list[Measure],
    proportion: bool,
    policy: Any,
    multiplier: float,
) -> dict[str, pd.DataFrame]:
    """The released table of one group of :func:`_linked_groups` as each measure's rows
    (no overall's where it has none: its total rows are not shown)."""
    released: dict[str, pd.DataFrame] = {}
    if proportion and len(out):  # the value as one quotient; missing where it was
        exact = scaled_quotient(out["numerator"], out["denominator"], multiplier)
        out["value"] = np.where(out["value"].isna(), np.nan, exact)
        if (overall or split[0]).kind != "proportion":  # (as _release says of rows)
            method = out["method"]
            out["method"] = method.where(method.isna(), method + ROWS_COUNTED)
    is_total = (out["_group"] == _LINKED_TOTAL).to_numpy()
    first = (out["_breakdown"] == _breakdown_label(split[0])).to_numpy()
    if overall is not None:
        mine = out[is_total & first].drop(columns=["_breakdown", "_group"])
        released[overall.name] = mine.reset_index(drop=True)
    for m in split:
        rows = out[~is_total & (out["_breakdown"] == _breakdown_label(m)).to_numpy()]
        rows = rows.drop(columns=["_breakdown"])
        if len(m.breakdown) == 1:
            rows = rows.rename(columns={"_group": m.breakdown[0]})
        else:
            at = rows.columns.get_loc("_group")
            values = rows.pop("_group").to_numpy(dtype=object)
            for i, c in enumerate(m.breakdown):
                rows.insert(at + i, c, [v[i] for v in values])
        released[m.name] = rows.reset_index(drop=True)
    for m in split if overall is None else (overall, *split):
        if isinstance(m, QuantileMeasure | StandardisedRateMeasure):
            counts = released.pop(m.name)
            own = raw[raw["measure"] == m.name].copy()
            finish = _release_quantiles if isinstance(m, QuantileMeasure) else _release_standardised
            released[m.name] = finish(own, m, True, policy, counts=counts)
        elif not proportion:
            counts = released[m.name]
            released[m.name] = _release(counts, m, m.breakdown, True, policy, multiplier, done=True)
        if "measure" not in released[m.name]:
            released[m.name].insert(0, "measure", m.name)
    return released


def _joined(keys: Sequence[Sequence[Any]]) -> list[list[int]]:
    """The items (by index) joined when they share a key (``keys[i]``: item i's keys, None
    for none), directly or through others; each list in the order of its items."""
    first: dict[Any, int] = {}
    parent = list(range(len(keys)))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for i, mine in enumerate(keys):
        for key in mine:
            if key is not None:
                a, b = root(i), root(first.setdefault(key, i))
                parent[max(a, b)] = min(a, b)
    out: dict[int, list[int]] = {}
    for i in range(len(keys)):
        out.setdefault(root(i), []).append(i)
    return list(out.values())


def result_columns(group_cols: Sequence[str] = ()) -> list[str]:
    """The columns of every :func:`run_measures` result, in order: the same whether it has
    rows or not, with or without disclosure control, whatever kinds of measure it holds."""
    from pophealth.stats._core import DEFAULT_CONFIDENCE, level_label, normalise_confidence

    limits = [
        f"{side}{level_label(c)}cl"
        for c in normalise_confidence(DEFAULT_CONFIDENCE)
        for side in ("lower", "upper")
    ]
    return [
        "measure",
        "interval_start",
        "interval_end",
        *group_cols,
        "numerator",
        "denominator",
        "value",
        *limits,
        "confidence",
        "statistic",
        "method",
        "disclosure_note",
    ]


def _result_columns(result: pd.DataFrame, group_cols: list[str], disclosure: bool) -> pd.DataFrame:
    """``result`` with exactly :func:`result_columns`, each of one type: the counts whole
    numbers (decimals with disclosure control, where a withheld count is missing), the value
    and limits decimals, the rest text or dates with None where missing. A result with no
    rows — nobody in any denominator — or with only ratios (no limits) has the same columns
    as any other, so a file written from it has the same header and schema."""
    cols = result_columns(group_cols)
    extra = [c for c in result.columns if c not in cols]
    if extra:  # every column a release makes is named above
        raise AssertionError(f"measures result has unexpected column(s) {extra}")
    result = result.reindex(columns=cols)
    numbers = {c: "float64" for c in cols[cols.index("value") : cols.index("confidence")]}
    numbers.update(
        dict.fromkeys(("numerator", "denominator"), "float64" if disclosure else "int64")
    )
    for c in cols:
        if c in numbers:
            result[c] = result[c].astype(numbers[c])
        else:  # text (labels, notes) and dates: None where missing, never NaN
            result[c] = result[c].astype(object).where(result[c].notna(), None)
    return result


def _release(
    df: pd.DataFrame,
    m: Measure,
    groups: list[str],
    disclosure: bool,
    policy: Any,
    multiplier: float,
    *,
    done: bool = False,
    **linked: Any,
) -> pd.DataFrame:
    """Measure ``m``'s rows from its counts ``df`` (one row per interval and group).
    ``linked``: ``withhold`` and ``avoid`` for :func:`pophealth.disclosure.apply`, from
    :func:`_released_within`. ``done``: a ratio's or a rate's counts in ``df`` are already
    released, with their ``disclosure_note`` (:func:`_linked_tables`): only its values
    are worked out from them."""
    from pophealth import disclosure as sdc
    from pophealth.stats import rate
    from pophealth.stats._core import multiplier_text

    by = [*INTERVAL_KEYS, *groups]  # each interval its own table, whatever else starts with it
    kw = {} if policy is None else {"policy": policy}
    kw.update(linked)
    # counts of rows are also withheld when few patients are behind them
    behind = {
        side: f"{side}_patients"
        for side in ("numerator", "denominator")
        if f"{side}_patients" in df.columns
    }
    if not disclosure:
        df = df.drop(columns=list(behind.values()))
    elif behind:
        kw["patients"] = behind
    if isinstance(m, RateMeasure):
        return _release_rate(df, m, groups, by, disclosure, kw, done)
    if m.kind in _PROPORTIONS:
        out = _release_proportions(df, groups, by, disclosure, kw, multiplier)
        if len(out):  # the value as one quotient; missing where it was (withheld, 0 of 0)
            exact = scaled_quotient(out["numerator"], out["denominator"], multiplier)
            out["value"] = np.where(out["value"].isna(), np.nan, exact)
        if m.kind in ("row proportion", "rows") and len(out):
            # a patient may have several rows: the limits treat the rows as independent
            # (a row without a value, withheld or 0 of 0, has no method, as for patients)
            method = out["method"]
            out["method"] = method.where(method.isna(), method + ROWS_COUNTED)
        return out
    # ratio of sums: counts released by the same rule, value recomputed from them
    if done:
        df = df.copy()
    elif disclosure:
        df = sdc.apply(df, ["numerator", "denominator"], by=by, margins=groups, **kw)
    else:
        df = df.copy()
        df["disclosure_note"] = "not disclosure-controlled"
    num = df["numerator"].to_numpy(dtype=float)
    den = df["denominator"].to_numpy(dtype=float)
    df["value"] = scaled_quotient(num, den, multiplier)
    if _counts_events(m.numerator) and m.denominator.dtype == "bool":
        # events per patient: a crude rate with Poisson limits on the released count (exact
        # below 10, Byar's from 10), the patients as the population; none without patients
        stats = rate(num, np.where(den > 0, den, np.nan), multiplier=multiplier)
        for c in stats.columns:
            if c not in ("numerator", "denominator", "value"):
                df[c] = stats[c].to_numpy()
        if disclosure:  # as a proportion's "Wilson (from released counts)"
            method = df["method"]
            df["method"] = method.where(method.isna(), method + " (from released counts)")
        df["statistic"] = f"rate per {multiplier_text(multiplier)} patients"
        return df
    df["statistic"] = f"ratio × {multiplier:g}"
    df["method"] = (
        "ratio of sums (no interval: the numerator is not a count of events, or the "
        "denominator not a number of patients)"
    )
    return df


#: why a count is withheld that an interval sharing days with its own withholds (counts may
#: add up across intervals: :data:`ADDING_UP`)
WITHIN = (
    "secondary (withheld in an interval that shares days with this one: counts may add up "
    "across intervals)"
)


#: why a count is withheld that another measure of the run gives and withholds (two
#: measures giving one count, each by its own rule, would give it back)
SAME_COUNT = "secondary (the same count is withheld in another measure of this run)"


def _measure_counts(raw: pd.DataFrame, m: Measure) -> pd.DataFrame:
    """The counts of measure ``m`` (not a quantile or standardised rate) by interval and
    group, as :func:`_release` takes them: in the order of the intervals' starts, then their
    ends (a month before the quarter that starts with it), then the groups."""
    groups = m.breakdown
    df = raw[raw["measure"] == m.name]
    behind = [c for c in PATIENTS_BEHIND.values() if c in df and df[c].notna().any()]
    df = df[[*("measure", *INTERVAL_KEYS), *groups, "numerator", "denominator", *behind]].copy()
    for k in INTERVAL_KEYS:
        df[k] = pd.to_datetime(df[k]).dt.date
    # (one order on every engine and every run)
    df = df.sort_values([*INTERVAL_KEYS, *groups], kind="stable")
    return df.reset_index(drop=True)


#: the counts of every measure taken as adding up across intervals, the safe side. Events,
#: rows and person-days do (a month's admissions to its quarter's); counts of patients may
#: (a patient's first diagnosis falls in one month only, so the quarter's new patients are
#: its months'), or may not (one patient in every month): which, depends on the definition,
#: not on anything the release can check. A count withheld in an interval is therefore
#: withheld in every interval sharing days with it without lying inside it
#: (:func:`_released_within`); runs whose intervals neither overlap nor nest are not changed.
ADDING_UP = ("numerator", "denominator")


def _family(m: Measure) -> tuple | None:
    """What measures of one run count the same thing (:data:`ADDING_UP`) by the same groups,
    whatever their intervals: one monthly and one quarterly measure of the same events.
    None for a quantile or a standardised rate (each linked across its own intervals)."""
    if isinstance(m, QuantileMeasure | StandardisedRateMeasure):
        return None
    groups = tuple((g, m.group_by[g].key) for g in m.breakdown)
    rows = (id(m.row_dataset),) if isinstance(m, RowMeasure) else ()
    return (type(m).__name__, m.kind, m.numerator.key, m.denominator.key, groups, rows)


def _release_counted(
    raw: pd.DataFrame,
    measures: Measures,
    policy: Any,
    multiplier: float,
    apart: list[str] | None = None,
) -> dict[str, pd.DataFrame]:
    """With disclosure control, the measures released together: each group of
    :func:`_linked_groups` as one table (:func:`_linked_tables`), each other measure
    (not a quantile or standardised rate) on its own — and, through one
    :func:`_released_within`, every such table or measure of the same counts over other
    intervals (:func:`_counts_key`: a monthly count, overall and by practice, beside the
    quarterly one, overall or by practice) and every one whose numerator counts the same
    rows of one table in other windows (:func:`numerator_windows`: admissions in the month
    beside admissions in the last 3 months), or one count by another definition
    (:func:`_same_parts`: the patients with an HbA1c, as a proportion and as the n of a
    centile measure — quantile measures released on their own take part too), their cells
    matched by breakdown and group. By measure name, each measure's rows as
    :func:`_release` would give them (``apart``: see :func:`_linked_tables`)."""
    tables = _linked_tables(raw, measures, policy, multiplier, apart)
    done = {m.name for overall, split, *_ in tables for m in (overall, *split) if m is not None}
    breakdowns: dict[tuple, int] = {}  # each breakdown (names and definitions) a number
    width = max([1, *(len(m.breakdown) for m in measures)])  # labels per cell, at most

    def cells(
        frame: pd.DataFrame, by: list[tuple[np.ndarray, list[str], Measure | None]]
    ) -> pd.DataFrame:
        """``frame``'s intervals, and per row its breakdown's number and group labels (``by``:
        which rows, by which columns of ``frame``, of which measure's breakdown), and its
        exact counts (:data:`_EXACT`)."""
        out = frame[list(INTERVAL_KEYS)].reset_index(drop=True)
        for c, exact in _EXACT.items():
            out[exact] = frame[c].to_numpy(dtype=float)
        number = np.zeros(len(frame), dtype=np.int64)
        labels = [np.full(len(frame), "", dtype=object) for _ in range(width)]
        for mask, cols, m in by:
            sig = (
                tuple((g, m.group_by[g].key) for g in cols)
                if m is not None
                else ("\x00not shown", len(breakdowns))  # (a total matched with no other)
            )
            number[mask] = breakdowns.setdefault(sig, len(breakdowns))
            for i, g in enumerate(cols):
                labels[i][mask] = frame[g].to_numpy(dtype=object)[mask]
        out["_bd"] = number
        for i, values in enumerate(labels):
            out[f"_g{i}"] = values
        return out

    units = []  # (measures, cells, release, the measure they count by, finish)
    for overall, split, table, release, proportion in tables:
        is_total = (table["_group"] == _LINKED_TOTAL).to_numpy()
        margin = _not_shown(table, overall) & ~is_total  # (matched with no other table's)
        by = [(is_total, [], overall), (margin, [], None)]
        frame = table.copy()
        groups = table["_group"].to_numpy(dtype=object)
        for m in split:
            mine = ~is_total & (table["_breakdown"] == _breakdown_label(m)).to_numpy()
            by.append((mine, list(m.breakdown), m))
            for i, c in enumerate(m.breakdown):
                col = (
                    frame[c].to_numpy(dtype=object).copy()
                    if c in frame
                    else np.full(len(frame), None, dtype=object)
                )
                col[mine] = [v if len(m.breakdown) == 1 else v[i] for v in groups[mine]]
                frame[c] = col
        finish = functools.partial(
            _finish_linked, raw, overall=overall, split=split, proportion=proportion,
            policy=policy, multiplier=multiplier,
        )  # fmt: skip
        members = [m for m in (overall, *split) if m is not None]
        units.append((members, cells(frame, by), release, members[0], finish))
    for m in measures:
        if m.name in done:
            continue
        finish = None
        if isinstance(m, QuantileMeasure):
            own = raw[raw["measure"] == m.name]
            df = _quantile_counts(own.copy(), m)
            if not len(df):  # (nobody among: no row to release)
                continue
            release = _quantile_release(df, m, policy)
            finish = functools.partial(_finish_quantiles, own, m, policy)
        elif _family(m) is not None:
            df = _measure_counts(raw, m)
            release = functools.partial(_release, df, m, m.breakdown, True, policy, multiplier)
        else:
            continue
        whole = np.ones(len(df), dtype=bool)
        units.append(([m], cells(df, [(whole, m.breakdown, m)]), release, m, finish))
    windows = [numerator_windows(m) for *_, m, _ in units]
    group_cols = ["_bd", *(f"_g{i}" for i in range(width))]
    keys = [
        [_counts_key(m), None if w is None else w[0]]
        for (*_, m, _), w in zip(units, windows, strict=True)
    ]
    # parts of one count by two definitions (_same_parts)
    same = {c: _same_parts([u[1] for u in units], group_cols, x) for c, x in _EXACT.items()}
    for pairs in same.values():
        for i, j in np.argwhere(pairs):
            keys[i].append(("same", min(i, j), max(i, j)))
    released: dict[str, pd.DataFrame] = {}
    for chosen in _joined(keys):
        counts = [keys[i][0] for i in chosen]
        outs = _released_within(
            [(units[i][1], units[i][2]) for i in chosen],
            group_cols,
            ADDING_UP,
            windows=[windows[i] for i in chosen],
            # (a measure that is in no family, a quantile, is a family of its own)
            families=[k if c is None else counts.index(c) for k, c in enumerate(counts)],
            same={c: pairs[np.ix_(chosen, chosen)] for c, pairs in same.items()},
            exact=_EXACT,
            policy=policy,
        )
        for i, out in zip(chosen, outs, strict=True):
            members, _, _, _, finish = units[i]
            released.update(finish(out) if finish is not None else {members[0].name: out})
    return released


#: the columns of :func:`_release_counted`'s cells holding each count's exact value
_EXACT = {"numerator": "_xn", "denominator": "_xd"}


def _same_parts(cells: Sequence[pd.DataFrame], groups: list[str], col: str) -> np.ndarray:
    """Parts × parts: True where two parts give the same count ``col`` (a column of each
    part's cells, with the intervals and ``groups``) in every interval and group they both
    have, and some of it is not 0 — one count by two definitions (the patients with an HbA1c,
    and the patients with an HbA1c value where every HbA1c has one), not two counts that
    happen to agree in a cell."""
    out = np.zeros((len(cells), len(cells)), dtype=bool)
    if len(cells) < 2:
        return out
    keys = [*INTERVAL_KEYS, *groups]
    every = pd.concat(
        [c[[*keys, col]].assign(_part=i) for i, c in enumerate(cells)], ignore_index=True
    ).drop_duplicates([*keys, "_part"])  # (a total given once per breakdown: one cell)
    cell = every.groupby(keys, dropna=False, sort=False).ngroup().to_numpy()
    x = np.full((cell.max() + 1 if len(cell) else 0, len(cells)), np.nan)
    x[cell, every["_part"].to_numpy()] = every[col].to_numpy(dtype=float)
    for i in range(len(cells)):  # (parts, not patients: a handful)
        both = ~np.isnan(x[:, [i]]) & ~np.isnan(x)
        equal = np.where(both, x[:, [i]] == x, True).all(axis=0)
        out[i] = equal & (both & (x > 0)).any(axis=0)
    np.fill_diagonal(out, False)
    return out


def _finish_quantiles(
    own: pd.DataFrame, m: QuantileMeasure, policy: Any, out: pd.DataFrame
) -> dict[str, pd.DataFrame]:
    """Quantile measure ``m``'s rows from its counts ``own`` and its released numerator
    and denominator ``out`` (:func:`_quantile_release`)."""
    return {m.name: _release_quantiles(own.copy(), m, True, policy, counts=out)}


def _counts_key(m: Measure) -> tuple | None:
    """What measures count the same thing (:data:`ADDING_UP`) whatever their intervals and
    breakdown: one monthly and one quarterly measure of the same events, overall or by
    practice (:func:`_family` without the breakdown)."""
    family = _family(m)
    return None if family is None else family[:4] + family[5:]


def _window_dates(s: Series, intervals: Sequence[Interval]) -> list[dt.date] | None:
    """The value of ``s`` in each interval when it is built from the index date, the
    interval's start, a date and shifts of them alone (None otherwise)."""
    if s.op == "index_date":
        return [e for _, e in intervals]
    if s.op == "interval_start":
        return [b for b, _ in intervals]
    if s.op == "lit" and isinstance(s.args[0], dt.date) and not isinstance(s.args[0], dt.datetime):
        return [s.args[0]] * len(intervals)
    if s.op == "shift":
        base = _window_dates(s.args[0], intervals)
        if base is None:
            return None
        return [_shift(v, s.args[1].n, s.args[1].unit) for v in base]
    return None


def numerator_windows(m: Measure) -> tuple[tuple, dict[Interval, tuple[dt.date, dt.date]]] | None:
    """``(what, windows)`` when measure ``m``'s numerator counts rows of a table in a window
    of days that moves with the interval — the rows, the patients with one, or their days,
    of a frame whose interval-dependent filters compare the row's day with the index date,
    the interval's start, a fixed date or shifts of them (``in_interval()``, ``in_last(
    months=3)``, ``on_or_before(index_date)``): ``what`` names the rows counted and the
    count (two measures with the same ``what`` count the same rows, by any breakdown), and
    ``windows`` holds each interval's first and last day of the window (open ends as the
    earliest and latest date). None otherwise: a quantile, a standardised rate, a row
    measure, any other numerator."""
    s = m.numerator
    if isinstance(m, QuantileMeasure | StandardisedRateMeasure | RowMeasure) or s.op != "agg":
        return None
    frame, fn, _ = s.args
    if fn not in ("count", "exists", "count_days") or frame.error or s.error:
        return None
    if any(_reads_interval(x) for x in frame._order):
        return None
    day = frame._date.key
    n = len(m.intervals)
    first, last = [dt.date.min] * n, [dt.date.max] * n

    def bound(f: Series) -> bool:
        if f.op == "and":
            return all(bound(x) for x in f.args)
        if f.op not in _CMP:
            return False
        a, b, op = *f.args, f.op
        if b.key == day:
            a, b, op = b, a, _MIRROR[op]
        if a.key != day or _reads_interval(a):
            return False
        values = _window_dates(b, m.intervals)
        if values is None:
            return False
        one = dt.timedelta(days=1)
        for k, v in enumerate(values):
            if op in ("ge", "gt", "eq"):
                first[k] = max(first[k], v + one if op == "gt" else v)
            if op in ("le", "lt", "eq"):
                last[k] = min(last[k], v - one if op == "lt" else v)
        return True

    static = tuple(sorted(f.key for f in frame._filters if not _reads_interval(f)))
    dynamic = [f for f in frame._filters if _reads_interval(f)]
    if not dynamic or not all(bound(f) for f in dynamic):
        return None
    return ("rows", frame._table, static, fn), {
        iv: (a, b) for iv, a, b in zip(m.intervals, first, last, strict=True)
    }


def outward_intervals(intervals: Sequence[Interval]) -> dict[Interval, list[Interval]]:
    """For each interval of a run, the others that share days with it without lying inside
    it: a month's quarter and year, the weeks across its first and last days, a window that
    overlaps it. A count that adds up across intervals, withheld in the interval, could be
    worked out from any of those less counts released around it (the quarter less the other
    two months; two overlapping windows less their union), unless withheld there too."""
    ivs = sorted(set(intervals))
    out: dict[Interval, list[Interval]] = {}
    for iv in ivs:
        wider = [
            other
            for other in ivs
            if other != iv
            and other[0] <= iv[1]
            and iv[0] <= other[1]
            and not (iv[0] <= other[0] and other[1] <= iv[1])
        ]
        if wider:
            out[iv] = wider
    return out


def _apply_within(
    frame: pd.DataFrame, groups: list[str], adding_up: Sequence[str], kw: dict[str, Any]
) -> pd.DataFrame:
    """``frame``'s numerator and denominator through :func:`pophealth.disclosure.apply`
    (with ``kw``), each interval a table of its own by ``groups``, the counts ``adding_up``
    across intervals as :func:`_released_within` says (their rounding read across the
    intervals too)."""
    from pophealth import disclosure as sdc

    def release(**linked: Any) -> pd.DataFrame:
        return sdc.apply(
            frame,
            ["numerator", "denominator"],
            by=[*INTERVAL_KEYS, *groups],
            margins=groups,
            **kw,
            **linked,
        )

    exact = {c: c for c in adding_up}  # (frame's counts are the exact ones)
    return _released_within(
        [(frame, release)], groups, adding_up, exact=exact, policy=kw.get("policy")
    )[0]


def _released_within(
    parts: Sequence[tuple[pd.DataFrame, Any]],
    groups: list[str],
    cols: Sequence[str],
    *,
    windows: Sequence[tuple[tuple, Mapping[Interval, tuple[dt.date, dt.date]]] | None]
    | None = None,
    families: Sequence[int] | None = None,
    same: Mapping[str, np.ndarray] | None = None,
    exact: Mapping[str, str] | None = None,
    policy: Any = None,
) -> list[pd.DataFrame]:
    """Each part's ``release(withhold=..., avoid=...)`` (a measure's rows, in the order of
    the part's cells: its intervals and groups), for counts ``cols`` that add up across
    intervals, the parts being measures of the same counts (one, or a monthly and a
    quarterly one). Each interval is still a table of its own, but a count withheld in an
    interval, for its own sake (small, or a second cell of its interval's table), is
    withheld in each interval that shares days with it without lying inside it
    (:func:`outward_intervals`), and in the same interval of another part, in the same
    group — and protected there as a primary one: released, the quarter less the other two
    months would give a withheld month back (January's 1 = 17 − 8 − 8), and two windows
    less their union the day they share. A count with such intervals inside it, all
    released, is taken last as a second withheld cell (they show it to within their
    rounding). Repeated until nothing changes.

    ``families``: the parts' families (default: one), when measures of other counts whose
    numerators count the same rows in other windows are released with them — the
    denominators are linked only within a family, the numerators across families too, by
    the days of each part's numerator window in each interval (``windows``: what each
    part's numerator counts and its windows, :func:`numerator_windows`; parts counting
    other rows are not linked so): a month's admissions withheld are withheld in the rolling
    3 months that hold the month (which less the other two months would give it back).

    ``same``: per count of ``cols``, parts × parts, True where two parts give one count by
    two definitions — equal in every interval and group they share, and not all 0
    (:func:`_same_parts`). A count withheld in one is withheld in the other in the same
    interval and group: each
    withholding it or not by its own rule, they would give it back (the patients with an
    HbA1c, in a proportion withholding them for their complement, and as the n of the
    HbA1c's centiles, released there).

    ``exact``: per count of ``cols``, the column of each part's cells holding its exact
    value; given, the released counts are then read as their rounding windows (``policy``,
    default :data:`pophealth.disclosure.DEFAULT_POLICY`) across the intervals that tile
    one another, and a released count they give back exactly is withheld as one withheld
    elsewhere (:func:`_rounded_across`), until none is."""
    from pophealth.disclosure import DEFAULT_POLICY, ELSEWHERE

    if not cols:
        return [release() for _, release in parts]
    rows = pd.concat(
        [cells[[*INTERVAL_KEYS, *groups]].assign(_part=i) for i, (cells, _) in enumerate(parts)],
        ignore_index=True,
    )
    rows["_row"] = np.arange(len(rows))
    family = np.asarray(families if families is not None else [0] * len(parts))
    same_family = family[:, None] == family[None, :]
    # (the intervals link every count alike: worked out once)
    by_interval = _links(rows, groups, rows["interval_start"], rows["interval_end"], same_family)
    links = dict.fromkeys(cols, by_interval)
    if windows is not None and "numerator" in links and not same_family.all():
        what = [None if w is None else w[0] for w in windows]
        same_rows = np.array([[a is not None and a == b for b in what] for a in what])
        spans = [
            w[1][(a, b)] if w is not None else (a, b)
            for w, a, b in zip(
                (windows[p] for p in rows["_part"]),
                rows["interval_start"],
                rows["interval_end"],
                strict=True,
            )
        ]
        across = ~same_family & same_rows
        first, last = (pd.Series([x[i] for x in spans]) for i in (0, 1))
        more = _links(rows, groups, first, last, across)
        links["numerator"] = tuple(
            np.concatenate([a, b]) for a, b in zip(links["numerator"], more, strict=True)
        )
    one = {c: (np.zeros(0, dtype=np.int64),) * 2 for c in cols}  # (one count: see above)
    for c, pairs in (same or {}).items():
        if c in links and pairs.any():
            one[c] = _same_count(rows, groups, pairs)
    if not any(len(links[c][0]) or len(one[c][0]) for c in cols):
        return [release() for _, release in parts]
    n = len(rows)
    is_target = {}
    for c in cols:
        is_target[c] = np.zeros(n, dtype=bool)
        is_target[c][links[c][1]] = True
        is_target[c][one[c][1]] = True
    bounds = np.cumsum([0, *(len(cells) for cells, _ in parts)])
    forced = {c: np.zeros(n, dtype=bool) for c in cols}
    only_same = {c: np.zeros(n, dtype=bool) for c in cols}  # forced as one count alone
    avoid = {c: np.zeros(n, dtype=bool) for c in cols}

    def hits(pairs: tuple[np.ndarray, np.ndarray], own: np.ndarray) -> np.ndarray:
        hit = np.zeros(n, dtype=bool)
        np.logical_or.at(hit, pairs[1], own[pairs[0]])
        return hit

    # the parts released one after another: each with the cells that those before it
    # withhold given to it as cells to take last, so it does not take a second cell of its
    # own where theirs already protect (the cells it must withhold for theirs' sake are
    # withheld after it, and then it is released again, as are the parts before it)
    withheld = {c: np.zeros(n, dtype=bool) for c in cols}
    own = {c: np.zeros(n, dtype=bool) for c in cols}
    outs: list[pd.DataFrame] = [pd.DataFrame()] * len(parts)
    rounded = {c: np.zeros(n, dtype=bool) for c in cols}  # forced by _rounded_across
    across = (
        _across_intervals(rows, parts, cols, exact, windows, family) if exact is not None else {}
    )
    for _ in range(n + 1):  # (each pass withholds more, or stops)
        changed = False
        for k, ((_, release), a, b) in enumerate(zip(parts, bounds[:-1], bounds[1:], strict=True)):
            outs[k] = release(
                withhold={c: forced[c][a:b] for c in cols},
                avoid={c: avoid[c][a:b] for c in cols},
            )
            for c in cols:
                withheld[c][a:b] = outs[k][c].isna().to_numpy()
                # withheld for its own sake (small, or a second cell of its own table), not
                # only for another's: a cell is forced only after a release that did not
                # withhold it, so a small one is never forced
                own[c][a:b] = withheld[c][a:b] & ~forced[c][a:b]
                # the same count as one withheld for its own sake is that count: the
                # intervals and windows around it protect it too; every withheld count is
                # withheld wherever it is given
                mine = own[c] | hits(one[c], own[c])
                within, given = hits(links[c], mine), hits(one[c], withheld[c])
                avoid[c] = is_target[c] & ~(within | given)
                more = (within | given) & ~withheld[c]
                more[b:] = False  # (the parts after this one: when they are released)
                if more.any():
                    only_same[c] |= more & ~within
                    forced[c] = forced[c] | more
                    changed = True
        for c, (keys, spans, values) in across.items() if not changed else ():
            shown = np.concatenate([o[c].to_numpy(dtype=float) for o in outs])
            pick = _rounded_across(
                rows, groups, c, keys, spans, values, shown, avoid[c], policy or DEFAULT_POLICY
            )
            if pick.any():
                rounded[c] |= pick
                forced[c] = forced[c] | pick
                changed = True
        if not changed:
            break
    for o, a in zip(outs, bounds[:-1], strict=True):
        notes = o["disclosure_note"].to_numpy(dtype=object)
        for c in cols:
            mine = forced[c][a : a + len(o)]
            for i in np.flatnonzero(mine):
                if isinstance(notes[i], str):
                    why = SAME_COUNT if only_same[c][a + i] else WITHIN
                    why = ROUNDED_ACROSS if rounded[c][a + i] else why
                    notes[i] = notes[i].replace(f"{c} {ELSEWHERE}", f"{c} {why}")
        o["disclosure_note"] = notes
    return outs


def _same_count(
    rows: pd.DataFrame, groups: list[str], same: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(source, target)``: the pairs of ``rows`` (``_part``, ``_row``, ``groups``) in the
    same interval and group of two parts that give one count by two definitions
    (``same[p, q]``: :func:`_same_parts`)."""
    at = rows[[*INTERVAL_KEYS, *groups, "_part", "_row"]]
    pairs = at.merge(at, on=[*INTERVAL_KEYS, *groups], suffixes=("", "_to"))
    pairs = pairs[same[pairs["_part"].to_numpy(), pairs["_part_to"].to_numpy()]]
    return pairs["_row"].to_numpy(), pairs["_row_to"].to_numpy()


def _across_intervals(
    rows: pd.DataFrame,
    parts: Sequence[tuple[pd.DataFrame, Any]],
    cols: Sequence[str],
    exact: Mapping[str, str],
    windows: Sequence[tuple[tuple, Mapping[Interval, tuple[dt.date, dt.date]]] | None] | None,
    family: np.ndarray,
) -> dict[str, tuple[list[object], list[tuple[dt.date, dt.date]], np.ndarray]]:
    """Per count of ``cols``, for :func:`_rounded_across`: what each of ``rows`` counts
    (its part's family: one definition, so one count in one interval and group), the days
    it counts over (its interval), and its exact value (``exact``: the column of each
    part's cells holding it). A numerator counting rows in a window other than its interval
    (the last 12 months at each month's end: :func:`numerator_windows`) is a count of its
    own in each row — its windows overlap and do not add up."""
    part = rows["_part"].to_numpy()
    interval = list(zip(rows["interval_start"], rows["interval_end"], strict=True))
    out = {}
    for c in cols:
        keys: list[object] = [("family", int(family[p])) for p in part]
        if c == "numerator" and windows is not None:
            for i, p in enumerate(part):
                if windows[p] is not None and windows[p][1][interval[i]] != interval[i]:
                    keys[i] = ("alone", i)
        values = np.concatenate([cells[exact[c]].to_numpy(dtype=float) for cells, _ in parts])
        out[c] = (keys, interval, values)
    return out


def _links(
    rows: pd.DataFrame,
    groups: list[str],
    first: pd.Series,
    last: pd.Series,
    allowed: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """``(source, target)``: the pairs of ``rows`` (``_part``, ``_row``, ``groups``) of one
    group where a count withheld at the source is withheld at the target too — the target's
    days (``first`` to ``last``, by row) shared with the source's without lying inside
    them, or the very same days in another part — between parts ``allowed[p, q]``."""
    cells = pd.DataFrame({"_part": rows["_part"].to_numpy(), "_s": list(first), "_e": list(last)})
    keys = cells.drop_duplicates().reset_index(drop=True)
    p = keys["_part"].to_numpy()
    s = keys["_s"].to_numpy(dtype="datetime64[D]")
    e = keys["_e"].to_numpy(dtype="datetime64[D]")
    share = (s[None, :] <= e[:, None]) & (s[:, None] <= e[None, :])
    inside = (s[:, None] <= s[None, :]) & (e[None, :] <= e[:, None])  # target in source
    same = (s[:, None] == s[None, :]) & (e[:, None] == e[None, :]) & (p[:, None] != p[None, :])
    i, j = np.nonzero(share & (~inside | same) & allowed[p[:, None], p[None, :]])
    if not len(i):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    pairs = pd.DataFrame({"_k": i, "_tk": j})
    key = cells.merge(
        keys.reset_index().rename(columns={"index": "_k"}), on=["_part", "_s", "_e"], how="left"
    )
    at = pd.concat([rows[[*groups, "_row"]].reset_index(drop=True), key[["_k"]]], axis=1)
    out = pairs.merge(at, on="_k").merge(
        at.rename(columns={"_k": "_tk", "_row": "_to"}), on=["_tk", *groups]
    )
    out = out[out["_row"] != out["_to"]]
    return out["_row"].to_numpy(), out["_to"].to_numpy()


#: the note of a count withheld because released, its rounding beside the same count over
#: intervals inside or around its own would give it back exactly (:func:`_rounded_across`)
ROUNDED_ACROSS = (
    "secondary (rounded, it could be worked out exactly from the same count over the "
    "intervals that make up its own, or that its own helps make up)"
)


#: about how many counts (and the unknowns between them) :func:`_rounded_across` reads in
#: one call of its linear programmes (whole groups, each on its own: they share no fact)
_ACROSS_CHUNK = 2000


def _tilings(spans: pd.DataFrame) -> pd.DataFrame:
    """Where days add up: ``spans`` holds each part's windows (``_key``, ``_part``, ``_s``,
    ``_e``: first and last day); the result a row per window that other windows of one
    part, of the same key, tile end to end (a year by its four quarters, a quarter by its
    months), one per tile: ``_t`` (a number per tiling), ``_key``, ``_s``, ``_e`` (the
    window tiled), ``_ms``, ``_me`` (a tile)."""
    found: dict[tuple, int] = {}
    out = []
    for key, per_key in spans.groupby("_key", sort=False):
        every = set(zip(per_key["_s"], per_key["_e"], strict=True))
        for _, own in per_key.groupby("_part", sort=False):
            ends: dict[dt.date, list[dt.date]] = {}
            for s, e in zip(own["_s"], own["_e"], strict=True):
                ends.setdefault(s, []).append(e)
            for s, e in every:
                if s == dt.date.min or e == dt.date.max:
                    continue  # (an open window is tiled by nothing)
                chain, at = [], s
                while at <= e:
                    fits = [x for x in ends.get(at, ()) if x <= e and (at, x) != (s, e)]
                    if not fits:
                        break
                    chain.append((at, max(fits)))
                    at = max(fits) + dt.timedelta(days=1)
                if at != e + dt.timedelta(days=1) or len(chain) < 2:
                    continue
                sig = (key, s, e, tuple(chain))
                if sig in found:
                    continue
                found[sig] = len(found)
                out.extend((found[sig], key, s, e, a, b) for a, b in chain)
    return pd.DataFrame(out, columns=["_t", "_key", "_s", "_e", "_ms", "_me"])


def _rounded_across(
    rows: pd.DataFrame,
    groups: list[str],
    col: str,
    keys: Sequence[object],
    spans: Sequence[tuple[dt.date, dt.date]],
    exact: np.ndarray,
    released: np.ndarray,
    avoid: np.ndarray,
    policy: Any,
) -> np.ndarray:
    """The rows of released count ``col`` to withhold — at most one count per group and
    key — because the run's rounded counts give it back exactly across intervals: four
    quarters of 12 patients each released as 10 (8-12) beside the year's 48 released as 50
    (48-52) are 12 each, for the year is at most their sum.

    ``rows`` as in :func:`_released_within` (with ``groups``), and per row what it counts
    (``keys``: one key, one count, over any window) and the days it counts over
    (``spans``), its exact count and the released one (NaN: withheld). Where windows of a
    part tile another window of the same key, the counts are read, per group, as adding
    up exactly when their exact values do (events: the year's admissions are the quarters'),
    else as the whole being at least each tile and at most their sum when the exact values
    are so (patients: one admitted in two quarters is one patient in the year), else not
    at all — the strongest fact the counts can hold, the safe side. Each released count is
    its rounding window (:func:`pophealth.disclosure.count_window`), each withheld one 0
    or more; the counts fixed are found by linear programming
    (:func:`pophealth.disclosure.fixed_within_windows`), and of each group's the smallest
    (one ``avoid`` does not mark, where there is one) is returned to be withheld."""
    from pophealth import disclosure as sdc

    pick = np.zeros(len(rows), dtype=bool)
    if policy.rounding == "none":
        return pick  # (unrounded, each count is exact already)
    frame = rows[groups].reset_index(drop=True).copy()
    codes: dict[object, int] = {}
    frame["_key"] = [codes.setdefault(k, len(codes)) for k in keys]
    frame["_part"] = rows["_part"].to_numpy()
    frame["_s"] = [s for s, _ in spans]
    frame["_e"] = [e for _, e in spans]
    tiles = _tilings(frame[["_key", "_part", "_s", "_e"]].drop_duplicates())
    if not len(tiles):
        return pick
    cell = frame.groupby(["_key", *groups, "_s", "_e"], sort=False, dropna=False).ngroup()
    cell = cell.to_numpy()
    n_cells = int(cell.max()) + 1
    shown = ~np.isnan(released)
    value = np.zeros(n_cells)
    value[cell] = exact
    lo, hi = np.zeros(n_cells), np.zeros(n_cells)
    hidden = np.ones(n_cells, dtype=bool)
    r_lo, r_hi = sdc.count_window(np.where(shown, released, 0.0), policy)
    lo[cell[shown]], hi[cell[shown]] = r_lo[shown], r_hi[shown]
    hidden[cell[shown]] = False
    taken_last = np.zeros(n_cells, dtype=bool)
    taken_last[cell[avoid]] = True
    cells = frame[["_key", *groups, "_s", "_e"]].assign(_cell=cell).drop_duplicates("_cell")
    on = ["_key", "_s", "_e"]
    whole = tiles.drop_duplicates("_t")[["_t", *on]].merge(cells, on=on)
    parts = tiles.drop(columns=["_s", "_e"]).rename(columns={"_ms": "_s", "_me": "_e"})
    parts = parts.merge(cells, on=on)[["_t", *groups, "_cell"]]
    sets_of = whole[["_t", *groups, "_cell"]].merge(
        parts, on=["_t", *groups], suffixes=("", "_in"), how="left"
    )
    block_of = np.zeros(n_cells, dtype=np.int64)  # one count in one group: a block
    block_of[cells["_cell"].to_numpy()] = cells.groupby(
        ["_key", *groups], sort=False, dropna=False
    ).ngroup()
    sets: list[tuple[np.ndarray, int | None]] = []
    set_block: list[int] = []
    extra: list[int] = []  # the block of each hidden row the inequalities need, after the cells

    def hidden_row(b: int) -> int:
        extra.append(b)
        return n_cells + len(extra) - 1

    for (_, total), members in sets_of.groupby(["_t", "_cell"], sort=False):
        inside = members["_cell_in"].dropna().to_numpy(dtype=np.int64)
        if not len(inside):
            continue
        x, total, b = value[inside], int(total), int(block_of[int(total)])
        if value[total] == x.sum():
            new = [(inside, total)]
        elif x.max() <= value[total] <= x.sum():
            at_most = hidden_row(b)  # the tiles' sum
            new = [(inside, at_most), (np.array([total, hidden_row(b)]), at_most)]
            new += [(np.array([int(k), hidden_row(b)]), total) for k in inside]
        else:
            continue
        sets.extend(new)
        set_block.extend([b] * len(new))
    if not sets:
        return pick
    more = len(extra)
    low = np.concatenate([lo, np.zeros(more)])
    high = np.concatenate([hi, np.zeros(more)])
    hidden = np.concatenate([hidden, np.ones(more, dtype=bool)])
    row_block = np.concatenate([block_of, np.asarray(extra, dtype=np.int64)])
    fixed: list[int] = []
    # blocks together up to a size, each call's linear programmes (dense) kept small
    size = np.bincount(row_block)
    chunk_of = np.zeros(len(size), dtype=np.int64)
    chunk_of[1:] = np.cumsum(size)[:-1] // _ACROSS_CHUNK
    for chunk in np.unique(chunk_of[np.asarray(set_block)]):
        rows_in = np.flatnonzero(chunk_of[row_block] == chunk)
        local = np.full(len(row_block), -1, dtype=np.int64)
        local[rows_in] = np.arange(len(rows_in))
        mine = [
            (local[np.asarray(c)], int(local[t]))
            for (c, t), b in zip(sets, set_block, strict=True)
            if chunk_of[b] == chunk
        ]
        found = sdc.fixed_within_windows(mine, low[rows_in], high[rows_in], hidden[rows_in], policy)
        fixed.extend(int(rows_in[k]) for k in found)
    fixed = [k for k in fixed if k < n_cells and (value[k] > 0 or policy.suppress_zeros)]
    if not fixed:
        return pick
    block = cells.set_index("_cell").loc[fixed, ["_key", *groups]]
    chosen = (
        block.assign(_last=taken_last[fixed], _v=value[fixed], _k=fixed)
        .sort_values(["_last", "_v", "_k"])
        .drop_duplicates(["_key", *groups])["_k"]
        .to_numpy()
    )
    pick[np.isin(cell, chosen) & shown] = True
    return pick


#: the column of the most one patient adds to a row's person-days (its interval's days), for
#: :func:`pophealth.disclosure.apply`'s ``most_per_patient``: dropped by it
MOST_DAYS = "_most_days"


def _over_person_days(m: Measure) -> bool:
    """Whether measure ``m``'s denominator is person-days."""
    return isinstance(m, RateMeasure | StandardisedRateMeasure) and m.person_time is not None


def _with_most_days(df: pd.DataFrame, kw: dict[str, Any]) -> pd.DataFrame:
    """A rate's counts over person-days (``df``, by interval) with the most one patient adds
    to each row's person-days — its interval's length in days — and ``kw`` for
    :func:`pophealth.disclosure.apply` told so, when the patients behind the person-days are
    checked: a cell withheld for its few patients is then protected so that the released
    cells cannot show it to hold exactly 7 (two practices' withheld days beside their
    released total of 1,260 in a quarter of 90: 7 patients each)."""
    if "denominator" not in (kw.get("patients") or {}):
        return df
    df = df.copy()
    start = pd.to_datetime(pd.Series(df["interval_start"]))
    end = pd.to_datetime(pd.Series(df["interval_end"]))
    df[MOST_DAYS] = ((end - start).dt.days + 1).to_numpy()
    kw["most_per_patient"] = {"denominator": MOST_DAYS}
    return df


def _release_rate(
    df: pd.DataFrame,
    m: RateMeasure,
    groups: list[str],
    by: list[str],
    disclosure: bool,
    kw: dict[str, Any],
    done: bool = False,
) -> pd.DataFrame:
    """The rows of rate measure ``m``: events (``numerator``) per person-time
    (``denominator``, in days) × ``m.per``, in person-``m.unit``.

    With ``disclosure``, the events and the person-days both go through
    :func:`pophealth.disclosure.apply` as counts (the breakdowns as margins, as for a ratio):
    each withheld when it is 1-7, or when the patients behind it (those with an event; those
    with person-time) number 1-7, or to protect another cell — or the patients behind a
    withheld person-days cell, each of whom adds at most the interval's days to it
    (:func:`_with_most_days`) — and otherwise rounded (to 5: person-days to 5 days). The
    value and limits are worked out from the released figures and are missing wherever
    either is withheld (``done``: the counts in ``df`` are already released)."""
    from pophealth import disclosure as sdc
    from pophealth.stats import rate

    if done:
        df = df.copy()
    elif disclosure:
        kw = dict(kw)
        df = _with_most_days(df, kw) if m.person_time is not None else df
        df = sdc.apply(df, ["numerator", "denominator"], by=by, margins=groups, **kw)
    else:
        df = df.copy()
        df["disclosure_note"] = "not disclosure-controlled"
    events = df["numerator"].to_numpy(dtype=float)
    days = df["denominator"].to_numpy(dtype=float)
    time = days / DAYS_PER_YEAR if m.unit == "years" else days
    stats = rate(events, np.where(time > 0, time, np.nan), multiplier=m.per)
    for c in stats.columns:
        if c not in ("numerator", "denominator"):
            df[c] = stats[c].to_numpy()
    # (as a ratio's value: from the released figures, one quotient)
    df["value"] = scaled_quotient(events, np.where(time > 0, time, np.nan), m.per)
    year = _YEAR if m.unit == "years" else ""
    released = " (from released figures)" if disclosure else ""
    method = df["method"]
    df["method"] = method.where(
        method.isna(), method + f"{released}; the denominator is person-time in days{year}"
    )
    df["statistic"] = m.statistic
    return df


def _standardised_cells(
    df: pd.DataFrame, m: StandardisedRateMeasure
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Standardised rate ``m``'s counts by interval, group and age band (``df``, tidied),
    its counts by interval and group, all bands together (the rows it releases, in order),
    and the columns of patients behind them."""
    keys = [*INTERVAL_KEYS, *m.breakdown]
    behind = [c for c in PATIENTS_BEHIND.values() if c in df and df[c].notna().any()]
    df = df.reindex(columns=[*keys, AGE_BAND, "numerator", "denominator", *behind])
    for k in INTERVAL_KEYS:
        df[k] = pd.to_datetime(df[k]).dt.date
    # each patient is in one band of an interval, so the patients behind add up too
    sums = df.groupby(keys, dropna=False, sort=True)[["numerator", "denominator", *behind]]
    return df, sums.sum().reset_index(), behind


def _band_counts(
    df: pd.DataFrame, cells: pd.DataFrame, m: StandardisedRateMeasure
) -> tuple[np.ndarray, np.ndarray]:
    """Standardised rate ``m``'s events and population in every band of the standard, for
    each row of ``cells`` (both from :func:`_standardised_cells`): two arrays of rows ×
    bands, youngest first — a band nobody is in is 0 of 0."""
    keys = [*INTERVAL_KEYS, *m.breakdown]
    full = cells[keys].merge(pd.DataFrame({AGE_BAND: list(m.bands)}), how="cross")
    counted = df[[*keys, AGE_BAND, "numerator", "denominator"]]
    full = full.merge(counted, on=[*keys, AGE_BAND], how="left", validate="one_to_one")
    shape = (len(cells), len(m.bands))
    return tuple(  # type: ignore[return-value]
        full[c].fillna(0).to_numpy(dtype=float).reshape(shape) for c in ("numerator", "denominator")
    )


#: the start of the columns of a linked table holding a standardised rate's bands' counts
#: added up to each band but the last (:func:`_with_partial_bands`)
_UPTO = "_upto "
#: the column of a linked table saying whether every band of a standardised rate's row has
#: someone in it (else the rate is not worked out)
_EVERY_BAND = "_every band"


def _with_partial_bands(
    df: pd.DataFrame, cells: pd.DataFrame, m: StandardisedRateMeasure
) -> pd.DataFrame:
    """``cells`` (:func:`_standardised_cells`) with, per band of the standard but the
    last, the events and the population of that band and every younger one — what a
    released rate gives, rounded (:func:`_rounded_bands`), beside its released counts —
    and :data:`_EVERY_BAND`."""
    x, n = _band_counts(df, cells, m)
    out = cells.copy()
    upto_x, upto_n = np.cumsum(x, axis=1), np.cumsum(n, axis=1)
    for j in range(x.shape[1] - 1):  # (all bands together: the numerator and denominator)
        out[f"{_UPTO}events {m.bands[j]}"] = upto_x[:, j]
        out[f"{_UPTO}population {m.bands[j]}"] = upto_n[:, j]
    out[_EVERY_BAND] = (n > 0).all(axis=1)
    return out


def _released_with_bands(
    table: pd.DataFrame, release: Any, linking: dict[str, Any], policy: Any, **linked: Any
) -> pd.DataFrame:
    """A linked table of standardised rates released (``release``, as
    :func:`_linked_tables` makes it), and then the rates' partial counts audited too.

    Each row whose rate is shown gives its bands' events and population added up to each
    band but the last, rounded (:func:`_rounded_bands`; the columns of
    :func:`_with_partial_bands`): rounded counts that add up across the table as the
    released ones do. Twelve events aged 65-69 in each of four practices, each given as 10
    (8-12), beside the overall's 48, given as 50 (48-52), are 12 each, though the released
    totals give nothing back. While some such count can be worked out exactly
    (:func:`pophealth.disclosure.rounded_parts_given_back`), the row it picks has its events
    withheld (as a count withheld in another table: protected, a partner withheld beside
    it by the rule), its rate with them, and the table is released again."""
    from pophealth import disclosure as sdc
    from pophealth.stats.standardised import MIN_DSR_EVENTS

    parts = [c for c in table.columns if c.startswith(_UPTO)]
    given = dict(linked.pop("withhold", None) or {})
    before = np.asarray(given.get("numerator", np.zeros(len(table), dtype=bool)), dtype=bool)
    avoid = (linked.get("avoid") or {}).get("numerator")
    unseen = np.asarray(linking.get("hidden", np.zeros(len(table), dtype=bool)), dtype=bool)
    every = table[_EVERY_BAND].to_numpy(dtype=bool)
    audit = {k: linking[k] for k in ("by", "margins", "total_label", "same_total_across")}
    extra = np.zeros(len(table), dtype=bool)
    for _ in range(len(table) + 1):
        out = release(withhold={**given, "numerator": before | extra}, **linked)
        events = out["numerator"].to_numpy(dtype=float)
        shown = ~unseen & every & (events >= MIN_DSR_EVENTS) & out["denominator"].notna().to_numpy()
        pick = sdc.rounded_parts_given_back(
            table, parts, shown, **audit, nested=linking.get("nested", ()), avoid=avoid,
            policy=sdc.DEFAULT_POLICY if policy is None else policy,
        )  # fmt: skip
        if pick is None or extra[pick]:
            break
        extra[pick] = True
    notes = out["disclosure_note"].to_numpy(dtype=object)
    for i in np.flatnonzero(extra & ~before):
        if isinstance(notes[i], str):
            notes[i] = notes[i].replace(f"numerator {sdc.ELSEWHERE}", f"numerator {BANDS_GIVEN}")
    out["disclosure_note"] = notes
    return out


#: why a standardised rate's events are withheld that its bands, rounded, would give back
BANDS_GIVEN = (
    "secondary (the rate's age bands, rounded as it is worked from them, could be worked "
    "out exactly from the other rows)"
)


def _release_standardised(
    df: pd.DataFrame,
    m: StandardisedRateMeasure,
    disclosure: bool,
    policy: Any,
    *,
    counts: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The rows of standardised rate ``m`` from its counts by interval, group and age band
    (``df``): one row per interval and group with someone counted.

    ``numerator`` is the events and ``denominator`` the patients (or person-days) of the
    group, all bands together. The rate and its Dobson limits
    (:func:`pophealth.stats.dsr`) are worked out from the counts of each band: a band
    of the standard with nobody in it (0 of 0) leaves the rate missing, as fewer than 10
    events do, with ``method`` saying why. Without ``disclosure``,
    from the exact counts. With it, the events and the population go through
    :func:`pophealth.disclosure.apply` (the breakdowns as margins, the patients behind the
    events checked too), and the rate and limits are withheld wherever either is; a
    released rate is worked from the bands' counts rounded cumulatively by the policy's rule
    (:func:`_rounded_bands`; of one band it is then the released events over the released
    population) — and left out for fewer than 10 of those events, not of the exact ones —
    and its limits from the released count of events
    (:func:`_limits_of_released_events`): from exact counts, the rate and limits beside
    the rounded ones would give the exact ones back. The bands' own counts, rounded or
    not, are never released. ``counts``: the events and population per interval and group
    already released (:func:`_linked_tables`), in the order of
    :func:`_standardised_cells`."""
    from pophealth.stats import dsr
    from pophealth.stats._core import level_label, normalise_confidence

    groups = m.breakdown
    df, cells, behind = _standardised_cells(df, m)
    if cells.empty:  # nobody counted in any interval: no rows (as for any measure)
        out = cells.drop(columns=behind)
        out.insert(0, "measure", m.name)
        return out
    x, n = (a.reshape(-1) for a in _band_counts(df, cells, m))
    empty = n == 0  # (nobody: no events either, as events count only among them)
    bands = m.bands
    full = pd.DataFrame({"w": np.tile(np.asarray(m.weights, dtype=float), len(cells))})
    full["_cell"] = np.repeat(np.arange(len(cells)), len(bands))
    levels = normalise_confidence(DEFAULT_CONFIDENCE)

    def standardised(x: np.ndarray, n: np.ndarray) -> pd.DataFrame:
        if m.person_time is not None and m.unit == "years":
            n = n / DAYS_PER_YEAR
        full["x"], full["n"] = x, np.where(n == 0, 1.0, n)  # (0 of 0: checked below)
        rates = dsr("x", "n", "w", data=full, by="_cell", multiplier=m.per, confidence=levels)
        return rates.set_index("_cell").reindex(np.arange(len(cells)))

    rates = standardised(x, n)  # the exact rate: and why there is none, where there is none
    if disclosure:  # the rate released is worked from the bands' counts rounded as the
        # released counts are: an exact rate beside its rounded counts would give them back
        # (of one band it is events/population; two rates a band apart give that band's)
        rounded = _rounded_bands(x, n, policy, len(bands))
        shown = standardised(*rounded)
        shown_events = shown["total_count"].to_numpy(dtype=float)
        # and whether there is one (fewer than 10 events) is decided on those counts too:
        # decided on the exact ones, a rate shown beside 10 events would say 10-12, not 8-9
        rates = shown
    limits = [f"{side}{level_label(c)}cl" for c in levels for side in ("lower", "upper")]
    out = cells.copy()
    for c in ("value", *limits, "confidence"):
        out[c] = rates[c].to_numpy()
    how = (
        "Dobson; from the counts of each age band rounded cumulatively, as the released counts are"
        if disclosure
        else "Dobson; from the exact counts of each age band"
    )
    how += "; age on the interval's last day"
    if m.person_time is not None:
        how += f"; the denominator is person-time in days{_YEAR if m.unit == 'years' else ''}"
    method = np.array(
        [
            how if isinstance(r, str) else f"not calculated: {why}"
            for r, why in zip(rates["method"], rates["reason"], strict=True)
        ],
        dtype=object,
    )
    nobody = np.flatnonzero(empty.reshape(len(cells), len(bands)).any(axis=1))
    for i in nobody:
        first = empty.reshape(len(cells), len(bands))[i].argmax()
        method[i] = (
            f"not calculated: nobody in the {m.bands[first]} band of the standard "
            "(every band of the rate needs someone: break down more coarsely)"
        )
        out.loc[i, ["value", *limits]] = np.nan
    out["method"] = method
    out["statistic"] = m.statistic
    out.insert(0, "measure", m.name)
    if not disclosure:
        out["disclosure_note"] = "not disclosure-controlled"
        return out.drop(columns=behind)
    kw: dict[str, Any] = {} if policy is None else {"policy": policy}
    side = {PATIENTS_BEHIND["pn"]: "numerator", PATIENTS_BEHIND["pd"]: "denominator"}
    if behind:
        kw["patients"] = {side[c]: c for c in behind}
    if counts is None:  # (counts across intervals: ADDING_UP)
        days = _with_most_days(out, kw) if m.person_time is not None else out
        released = _apply_within(days, groups, ADDING_UP, kw)
    else:  # (the same groups in the same order: worked out from the same counts)
        assert len(counts) == len(out)
        released = out.drop(columns=behind)
        for c in ("numerator", "denominator", "disclosure_note"):
            released[c] = counts[c].to_numpy()
    withheld = released["numerator"].isna() | released["denominator"].isna()
    released.loc[withheld, ["value", *limits]] = np.nan
    released.loc[withheld, "method"] = None  # (as a withheld proportion: nothing said of it)
    _limits_of_released_events(released, shown_events, levels)
    if withheld.any():
        note = released.loc[withheld, "disclosure_note"]
        released.loc[withheld, "disclosure_note"] = (
            note.fillna("")
            .str.cat(["; rate and limits withheld with it"] * len(note))
            .str.lstrip("; ")
        )
    return released


def _rounded_bands(
    x: np.ndarray, n: np.ndarray, policy: Any, bands: int
) -> tuple[np.ndarray, np.ndarray]:
    """A standardised rate's events and population (or person-days) per age band, rounded
    by the disclosure policy's rule (not suppressed: they are never released, only worked
    into the rate). ``x`` and ``n`` hold each cell's ``bands`` bands in turn, youngest first.

    The rounding is cumulative: each band's count is the rounded count of that band and
    every younger one, less the rounded count of the younger ones. The bands then add up to
    the group's count rounded as it is released, and no band's error builds on another's:
    each band rounded on its own would round every band of 1-2 events to 0 (most bands of a
    small group), and the rate would be far too low (15% at about 55 events spread over the
    standard's 19 bands, in a simulation of a typical age structure; docs/query.md), or not
    there at all (2 events in every band: tests/spec/test_standardised_rates.py). A band
    with someone in it keeps someone: a population that would round to 0 counts as 5."""
    from pophealth import disclosure as sdc

    policy = sdc.DEFAULT_POLICY if policy is None else policy

    def cumulative(v: np.ndarray) -> np.ndarray:
        upto = sdc.round_counts(np.cumsum(v.reshape(-1, bands), axis=1), policy)
        return np.diff(upto, axis=1, prepend=0.0).reshape(-1).astype(float)

    x_r, n_r = cumulative(x), cumulative(n)
    return x_r, np.where((n > 0) & (n_r <= 0), 5.0, n_r)


def _limits_of_released_events(released: pd.DataFrame, exact: np.ndarray, levels: Any) -> None:
    """Work a released standardised rate's Dobson limits from its released count of events.

    Dobson's limits are DSR + √(V/O)·(Byar(O) − O), for O events: (upper − DSR) / (DSR −
    lower) is a function of O alone, so limits worked from another count than the released
    one give that count away. ``exact`` is the O the limits were worked from (the sum of
    the rounded bands' events); here the released count O' stands in for it (√V, from the
    limits, is kept): the limits fit O', which is published anyway. Rows with no rate are
    left as they are."""
    from pophealth.stats._core import byars_lower, byars_upper, level_label

    value = released["value"].to_numpy(dtype=float)
    shown = released["numerator"].to_numpy(dtype=float)  # O': NaN where withheld
    keep = ~np.isnan(value) & ~np.isnan(shown)
    with np.errstate(invalid="ignore", divide="ignore"):
        for c in levels:
            lo, hi = f"lower{level_label(c)}cl", f"upper{level_label(c)}cl"
            upper = released[hi].to_numpy(dtype=float)
            # √V (× the multiplier) from the exact limits: (upper − DSR)·√O / (Byar(O) − O)
            root_v = (upper - value) * np.sqrt(exact) / (byars_upper(exact, c) - exact)
            scale = root_v / np.sqrt(shown)
            new_lo = value + scale * (byars_lower(shown, c) - shown)
            new_hi = value + scale * (byars_upper(shown, c) - shown)
            released[lo] = np.where(keep, new_lo, released[lo].to_numpy(dtype=float))
            released[hi] = np.where(keep, new_hi, upper)
    method = released["method"]
    released["method"] = method.where(
        ~keep | method.isna(), method + "; the limits from the released count of events"
    )


def _release_quantiles(
    df: pd.DataFrame,
    m: QuantileMeasure,
    disclosure: bool,
    policy: Any,
    *,
    counts: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The rows of quantile measure ``m`` from its counts of patients by interval, group and
    value (``df``): one row per interval, group and quantile, in the order asked for.

    ``numerator`` is the patients with a value (the quantiles' n), ``denominator`` all the
    patients ``among``. With ``disclosure``, both go through :func:`pophealth.disclosure.apply`
    (the breakdowns as margins, as for a ratio), and the value and limits are withheld
    wherever the numerator is (1-7, or withheld to protect another cell), and wherever they
    would be read from a value with fewer than :data:`QUANTILE_TAIL` patients ranked beyond
    it — the 90th centile of 20 patients lies between the 2nd and 3rd highest values —
    each said in ``disclosure_note``. ``counts`` (with ``disclosure``): the numerator and
    denominator per interval and group already released with the run's other counts
    (:func:`_quantile_release` through :func:`_release_counted`), in the order of
    :func:`_quantile_counts`."""
    from pophealth import disclosure as sdc
    from pophealth.stats._core import level_label, normalise_confidence
    from pophealth.stats.centiles import centile_position, centile_ranks, centiles_of_counts

    groups = m.breakdown
    keys = ["interval_start", "interval_end", *groups]
    levels = normalise_confidence(DEFAULT_CONFIDENCE)
    detail = None
    if m.rows is not None:  # counts of rows by patient too: summed over the patients
        detail = _row_detail(df, keys)
        df = (
            detail.groupby([*keys, VALUE], dropna=False, sort=False)["denominator"]
            .sum()
            .reset_index()
        )
    df = df.reindex(columns=[*keys, VALUE, "denominator"])  # (nobody among: no row at all)
    table = pd.DataFrame(
        {
            **{k: df[k].to_numpy() for k in keys},
            # (a whole-number value with gaps may reach pandas as floats, or as objects)
            "values": pd.to_numeric(df[VALUE].astype(object), errors="raise").astype(float),
            "counts": df["denominator"].to_numpy(dtype=float),
        }
    )
    for k in ("interval_start", "interval_end"):
        table[k] = pd.to_datetime(table[k]).dt.date
    out = centiles_of_counts(table, keys, m.quantiles, levels)
    n = out["n"].to_numpy(dtype=float)
    out["numerator"] = out["n"]
    out["denominator"] = out["n"] + out["missing"]
    out.insert(0, "measure", m.name)
    if detail is not None and len(out):
        method = out["method"]
        out["method"] = method.where(method.isna(), method + ROWS_INDEPENDENT)
    if not disclosure or len(out) == 0:
        out["disclosure_note"] = "not disclosure-controlled" if not disclosure else None
        return out.drop(columns=["quantile", "n", "missing"])
    per_group = out.drop_duplicates(keys)  # each group's counts once, not once per quantile
    per_group = per_group[keys + ["numerator", "denominator"]].reset_index(drop=True)
    tails = None
    if detail is not None:  # rows: withheld too when few patients are behind them
        per_group = per_group.merge(_row_patients(detail, keys), on=keys, how="left")
        tails = _RowTails(detail, keys, out[keys])
    # (the same groups in the same order: worked out from the same counts)
    if counts is None or len(counts) != len(per_group):
        raise ValueError(f"{m.name}: its released counts, one per interval and group, needed")
    released = counts
    rows = np.repeat(np.arange(len(released)), len(m.quantiles))
    for c in ("numerator", "denominator", "disclosure_note"):
        out[c] = released[c].to_numpy()[rows]
    notes: list[list[str]] = [[x] if isinstance(x, str) else [] for x in out["disclosure_note"]]
    withheld = out["numerator"].isna().to_numpy()
    q = out["quantile"].to_numpy(dtype=float)
    if tails is None:  # patients: those tied with the value read from are not beyond it
        tails = _PatientTails(table, keys, out[keys])
    lo, hi, _ = centile_position(n, q)
    # whether the ranks leave enough beyond is decided alike for every n the released
    # numerator can be (a 90th centile of 31 has 3 beyond, of 30 only 2: both released as 30)
    window = sdc.count_window(out["numerator"].to_numpy(dtype=float), policy or sdc.DEFAULT_POLICY)
    few = ~withheld & (n > 0) & _short_anywhere(window, q, None)
    few |= ~withheld & (n > 0) & ~tails.enough(lo, hi)  # (patients, not only rows, beyond)
    who = "patients rank" if detail is None else "rows, or patients with rows, rank"
    for i in np.flatnonzero(withheld & (n > 0)):
        notes[i].append("value and limits withheld with the numerator")
    for i in np.flatnonzero(few):
        notes[i].append(
            f"value and limits withheld: fewer than {QUANTILE_TAIL} {who} beyond the "
            "values it is read from"
        )
    out.loc[withheld | few, "value"] = np.nan
    for c in levels:
        r, s, _ = centile_ranks(n, q, c)
        # limits that some n of the window would not have (too few values), or would read
        # too near the ends, are withheld alike, with one note: which of the two it was for
        # the exact n would say whether n is below the count at which they exist
        short = ~withheld & ~few & (n > 0) & _short_anywhere(window, q, c)
        short |= ~withheld & ~few & ~np.isnan(r) & ~tails.enough(r, s)
        cols = [f"{side}{level_label(c)}cl" for side in ("lower", "upper")]
        out.loc[withheld | few | short, cols] = np.nan
        for i in np.flatnonzero(short):
            notes[i].append(
                f"{c * 100:g}% limits withheld: fewer than {QUANTILE_TAIL} {who} beyond them, "
                "or too few values for them"
            )
    out["disclosure_note"] = ["; ".join(x) if x else None for x in notes]
    # (and the method no longer says, from the exact n, where there are too few values)
    out["method"] = out["method"].str.replace(
        r"; too few values for an? [^;]* interval", "", regex=True
    )
    # read between two values, a centile's fraction is that of its rank, (n − 1)q + 1: of
    # whole numbers, 78.7 as the 90th centile says n is 44 where the released 45 says
    # 43-47. Released to the values' own precision — each interval's and group's own, so
    # that one finer value elsewhere does not keep the fraction — it says no more than
    # which is nearer.
    places = _places_by_group(table, keys, out[keys])
    x = out["value"].to_numpy(dtype=float) * 10.0**places  # (halves away from 0)
    rounded = np.sign(x) * np.floor(np.abs(x) + 0.5) / 10.0**places
    fine = np.isnan(places)  # (values finer than 6 places: not rounded)
    out["value"] = np.where(fine, out["value"].to_numpy(dtype=float), rounded)
    words = [
        None if np.isnan(d) else f"; the value rounded to {_PRECISION[int(d)]}" for d in places
    ]
    out["method"] = [
        m if m is None or w is None else m + w for m, w in zip(out["method"], words, strict=True)
    ]
    out["method"] = out["method"].where(out["value"].notna(), None)
    return out.drop(columns=["quantile", "n", "missing"])


def _quantile_release(per_group: pd.DataFrame, m: QuantileMeasure, policy: Any) -> Any:
    """``release(withhold=..., avoid=...)`` of quantile measure ``m``'s numerator and
    denominator per interval and group (``per_group``, as :func:`_quantile_counts` gives
    them) through :func:`pophealth.disclosure.apply`, the breakdowns as margins; over rows,
    the counts withheld also when 1-7 patients are behind them."""
    from pophealth import disclosure as sdc

    kw: dict[str, Any] = {} if policy is None else {"policy": policy}
    if m.rows is not None:
        kw["patients"] = {"numerator": PATIENTS_BEHIND["pn"], "denominator": PATIENTS_BEHIND["pd"]}
        return functools.partial(
            sdc.apply, per_group, ["numerator", "denominator"],
            by=[*INTERVAL_KEYS, *m.breakdown], margins=m.breakdown, **kw,
        )  # fmt: skip
    # of patients: those with a value are among the population, so the patients without
    # one (denominator − numerator) are a count too, withheld when 1-7 as a proportion's
    # complement is — released beside the numerator they would give it back
    return functools.partial(
        _patient_counts_released, per_group, by=[*INTERVAL_KEYS, *m.breakdown],
        margins=m.breakdown, **kw,
    )  # fmt: skip


def _patient_counts_released(table: pd.DataFrame, **kw: Any) -> pd.DataFrame:
    """A quantile measure's patients with a value (numerator) among its population
    (denominator) released as a proportion's counts are (:func:`pophealth.disclosure.
    release_proportions`: the complement rule too), without a proportion's value: the
    table's own columns and ``disclosure_note``."""
    from pophealth import disclosure as sdc

    out = sdc.release_proportions(table, "numerator", "denominator", **kw)
    return out[[c for c in (*table.columns, "disclosure_note") if c in out.columns]]


def _row_detail(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """A centile over rows' counts of rows by interval, group, patient and value."""
    detail = df.reindex(columns=[*keys, PATIENT, VALUE, "denominator"])
    for k in INTERVAL_KEYS:
        detail[k] = pd.to_datetime(detail[k]).dt.date
    detail[VALUE] = pd.to_numeric(detail[VALUE].astype(object), errors="raise").astype(float)
    return detail


def _quantile_counts(df: pd.DataFrame, m: QuantileMeasure) -> pd.DataFrame:
    """The exact numerator (patients, or rows, with a value) and denominator of quantile
    measure ``m`` per interval and group, in the order :func:`_release_quantiles` releases
    them, from its counts ``df`` (over rows, with the patients behind them)."""
    exact = _release_quantiles(df, m, False, None)
    keys = [*INTERVAL_KEYS, *m.breakdown]
    per_group = exact.drop_duplicates(keys)[[*keys, "numerator", "denominator"]]
    per_group = per_group.reset_index(drop=True)
    if m.rows is not None:
        per_group = per_group.merge(_row_patients(_row_detail(df, keys), keys), on=keys, how="left")
    return per_group


def _short_anywhere(
    window: tuple[np.ndarray, np.ndarray], q: np.ndarray, confidence: float | None
) -> np.ndarray:
    """True where, for some n of the ``window`` (fewest, most), the ``q`` centile of n
    values (``confidence`` None), or its limits at ``confidence``, would be read from a rank
    with fewer than :data:`QUANTILE_TAIL` ranks beyond it, or the limits are not defined:
    the rule of ranks then holds or fails alike for every n behind a released count."""
    from pophealth.stats.centiles import centile_position, centile_ranks

    fewest, most = window
    short = np.zeros(len(q), dtype=bool)
    for extra in range(int(np.nanmax(most - fewest, initial=0)) + 1):
        n = fewest + extra
        inside = np.isfinite(n) & (n <= most) & (n > 0)
        if confidence is None:
            low, high, _ = centile_position(n, q)
        else:
            low, high, _ = centile_ranks(np.where(inside, n, 0), q, confidence)
        with np.errstate(invalid="ignore"):
            bad = np.isnan(low) | (low - 1 < QUANTILE_TAIL) | (n - high < QUANTILE_TAIL)
        short |= inside & bad
    return short


_PRECISION = {0: "whole numbers", 1: "1 decimal place"} | {
    d: f"{d} decimal places" for d in range(2, 7)
}


def _places_by_group(table: pd.DataFrame, keys: list[str], rows: pd.DataFrame) -> np.ndarray:
    """For each of ``rows`` (an interval and group, by ``keys``), the decimal places of the
    values of its own interval and group in ``table`` (:func:`_decimal_places`; NaN where
    finer than 6 places, or no value)."""
    valued = table[table["values"].notna()]
    by_group = valued.groupby(keys, dropna=False, sort=False)["values"].agg(_decimal_places)
    found = by_group.astype(float).rename("_places").reset_index()
    merged = rows.reset_index(drop=True).merge(found, on=keys, how="left")
    return merged["_places"].to_numpy(dtype=float)


def _decimal_places(values: pd.Series) -> int | None:
    """The fewest decimal places (0-6) every value has; None where some has more (a value
    measured finely enough that its neighbours cannot be guessed)."""
    v = values.to_numpy(dtype=float)
    v = v[np.isfinite(v)]
    for d in _PRECISION:
        scaled = v * 10.0**d
        if np.all(np.abs(scaled - np.round(scaled)) <= 1e-6 * np.maximum(1.0, np.abs(scaled))):
            return d
    return None


#: the ``method`` of a quantile over rows: a patient's rows are counted as separate values
ROWS_INDEPENDENT = "; over rows (a patient's rows counted as independent)"


def _row_patients(detail: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per group of a row quantile's counts (``detail``: rows by group, patient and value),
    the distinct patients with a row with a value, and with any row (the columns of
    :data:`PATIENTS_BEHIND`)."""
    g = detail.groupby(keys, dropna=False, sort=False)
    with_value = detail[detail[VALUE].notna()].groupby(keys, dropna=False, sort=False)
    out = g[PATIENT].nunique().rename(PATIENTS_BEHIND["pd"]).reset_index()
    pn = with_value[PATIENT].nunique().rename(PATIENTS_BEHIND["pn"]).reset_index()
    out = out.merge(pn, on=keys, how="left")
    out[PATIENTS_BEHIND["pn"]] = out[PATIENTS_BEHIND["pn"]].fillna(0).astype("int64")
    return out


class _PatientTails:
    """For a quantile of patients: per output row (``rows``, its group's keys), whether at
    least :data:`QUANTILE_TAIL` patients have a value below the value of a low rank and
    above the value of a high rank (``table``: the patients by group and value). Patients
    tied with the value read from are not beyond it: the median of 20 patients, 12 of them
    at the top of a scale, is their value, and shown it would say what the highest have."""

    def __init__(self, table: pd.DataFrame, keys: list[str], rows: pd.DataFrame):
        valued = table[table["values"].notna()]
        self.groups: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
        for key, part in valued.groupby(keys, dropna=False, sort=False):
            key = key if isinstance(key, tuple) else (key,)
            by_value = part.groupby("values")["counts"].sum().sort_index()
            self.groups[key] = (
                by_value.index.to_numpy(dtype=float),
                np.cumsum(by_value.to_numpy(dtype=float)),
            )
        self.rows = [tuple(r) for r in rows.itertuples(index=False, name=None)]

    def enough(self, low: np.ndarray, high: np.ndarray) -> np.ndarray:
        """True where ranks ``low`` and ``high`` (1 = smallest) of the row's group each have
        at least QUANTILE_TAIL patients beyond them (False where a rank is undefined)."""
        out = np.zeros(len(self.rows), dtype=bool)
        for i, key in enumerate(self.rows):  # (a row per group and quantile, not per patient)
            found = self.groups.get(key)
            lo, hi = low[i], high[i]
            if found is None or not (np.isfinite(lo) and np.isfinite(hi)):
                continue
            _, cum = found
            if lo < 1 or hi > cum[-1]:
                continue
            at_low = np.searchsorted(cum, lo, side="left")  # the value of rank lo
            at_high = np.searchsorted(cum, hi, side="left")
            n_below = cum[at_low - 1] if at_low > 0 else 0.0
            n_above = cum[-1] - cum[at_high]
            out[i] = n_below >= QUANTILE_TAIL and n_above >= QUANTILE_TAIL
        return out


class _RowTails:
    """For a row quantile: per output row (``rows``, its group's keys), whether at least
    :data:`QUANTILE_TAIL` distinct **patients** have a value below the value of a low rank
    and above the value of a high rank (three rows beyond a value may be one patient's).
    Values tied with the one read from do not count as beyond it: the safe side."""

    def __init__(self, detail: pd.DataFrame, keys: list[str], rows: pd.DataFrame):
        valued = detail[detail[VALUE].notna()]
        self.groups: dict[tuple, tuple[np.ndarray, ...]] = {}
        for key, part in valued.groupby(keys, dropna=False, sort=False):
            key = key if isinstance(key, tuple) else (key,)
            by_value = part.groupby(VALUE)["denominator"].sum().sort_index()
            per_patient = part.groupby(PATIENT)[VALUE]
            self.groups[key] = (
                by_value.index.to_numpy(dtype=float),
                np.cumsum(by_value.to_numpy(dtype=float)),
                np.sort(per_patient.min().to_numpy(dtype=float)),
                np.sort(per_patient.max().to_numpy(dtype=float)),
            )
        self.rows = [tuple(r) for r in rows.itertuples(index=False, name=None)]

    def enough(self, low: np.ndarray, high: np.ndarray) -> np.ndarray:
        """True where ranks ``low`` and ``high`` (1 = smallest) of the row's group each have
        at least QUANTILE_TAIL patients beyond them (False where a rank is undefined)."""
        out = np.zeros(len(self.rows), dtype=bool)
        for i, key in enumerate(self.rows):
            found = self.groups.get(key)
            lo, hi = low[i], high[i]
            if found is None or not (np.isfinite(lo) and np.isfinite(hi)):
                continue
            values, cum, mins, maxs = found
            if lo < 1 or hi > cum[-1]:
                continue
            below = values[np.searchsorted(cum, lo, side="left")]
            above = values[np.searchsorted(cum, hi, side="left")]
            n_below = np.searchsorted(mins, below, side="left")
            n_above = len(maxs) - np.searchsorted(maxs, above, side="right")
            out[i] = n_below >= QUANTILE_TAIL and n_above >= QUANTILE_TAIL
        return out


def _release_proportions(
    df: pd.DataFrame,
    groups: list[str],
    by: list[str],
    disclosure: bool,
    kw: dict[str, Any],
    multiplier: float,
) -> pd.DataFrame:
    """Numerator of denominator with Wilson limits: released through the rule, or exact."""
    from pophealth import disclosure as sdc
    from pophealth.stats import proportion

    if disclosure:
        return sdc.release_proportions(
            df, "numerator", "denominator", by=by, margins=groups, multiplier=multiplier, **kw
        )
    if len(df) == 0:
        return df
    out = df.reset_index(drop=True).copy()
    num = out["numerator"].to_numpy(dtype=float)
    den = out["denominator"].to_numpy(dtype=float)
    # 0 of 0 (nobody in the denominator): no value and no interval
    stats = proportion(num, np.where(den > 0, den, np.nan), multiplier=multiplier)
    for c in stats.columns:
        if c not in ("numerator", "denominator"):
            out[c] = stats[c].to_numpy()
    out["disclosure_note"] = "not disclosure-controlled"
    return out


def _counts_subset(numerator: Series, denominator: Series) -> bool:
    """Whether ``numerator`` counts some of the rows ``denominator`` counts, for every
    patient: the same count over frames of one table, the numerator's filters including
    every one of the denominator's (``attended.where(in_time).count_for_patient()`` over
    ``attended.count_for_patient()``). Their ratio is then a proportion of rows."""
    if numerator.op != "agg" or denominator.op != "agg":
        return False
    (num_rows, num_fn, num_arg), (den_rows, den_fn, den_arg) = numerator.args, denominator.args
    if num_fn != den_fn or num_fn not in ("count", "count_days", "count_distinct"):
        return False
    if num_rows._table != den_rows._table or _key(num_arg) != _key(den_arg):
        return False
    return _conjuncts(den_rows._filters) <= _conjuncts(num_rows._filters)


def _conjuncts(filters: Sequence[Series]) -> set[tuple]:
    """The conditions a row must meet, ``a & b`` as ``a`` and ``b`` (so ``where(a & b)``
    picks out some of ``where(a)``'s rows, and ``between(s, e)`` some of ``on_or_after(s)``'s)."""
    out: set[tuple] = set()
    todo = list(filters)
    while todo:
        f = todo.pop()
        if f.op == "and":
            todo.extend(a for a in f.args if isinstance(a, Series))
        else:
            out.add(f.key)
    return out


def _key(s: Series | None) -> tuple | None:
    return None if s is None else s.key


def _counts_events(s: Series) -> bool:
    """Whether ``s`` counts rows per patient (a count of rows, days or distinct values, or
    a sum of such): a ratio of it to patients is a rate with Poisson limits."""
    if s.op == "agg":
        return s.args[1] in ("count", "count_days", "count_distinct")
    if s.op == "add":
        return all(isinstance(x, Series) and _counts_events(x) for x in s.args)
    return False
