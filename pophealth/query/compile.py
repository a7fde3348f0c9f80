"""Compile query-model nodes to Ibis expressions over a backend's canonical tables.

One compiler serves one run. It knows the index date (a dataset) or the intervals (a
measure: every interval in one query — each row of a frame whose filters depend on the
index date is paired with every interval, and frames that do not depend on it are read once
and keyed by patient only). A row dataset's run is the same with the unit (patient, row) in
place of (patient, interval): the frame's rows numbered per patient
(:meth:`Compiler.unit_table`), and each row of a frame whose filters read the current row
joined on the patient to that patient's output rows, not crossed with the intervals.

Per-patient values are computed as *sources*, each one pass over a table:

* all aggregates of one frame (exists, count, min, ...) — one ``GROUP BY``;
* first/last rows of one frame in one order — one window (``row_number``), with every
  remaining column as a tie-breaker, so the same row wins on every engine;
* first/last day of one frame with a same-day rule — a ``GROUP BY`` day, then the chosen
  day per patient (with one index date, every such frame of one table shares one pass);
* lookups of a per-patient key in a one-row-per-key table (practices, areas) — one join;

and left-joined to the patient base, so patients without rows are kept. A population is
computed first; other sources read only its patients' rows when it is selective (see
:meth:`Compiler.selective`). On a connection that remembers (:class:`PatientTables`), a
run within an earlier dataset's population starts from that dataset's values.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import gc
import itertools
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import ibis
import ibis.expr.types as ir

from pophealth.query.model import DATE_COLUMNS, Frame, QueryError, Series, neighbours
from pophealth.query.text import float_text
from pophealth.schema import table as schema_table

# Ibis merges each select over a select into one before it writes SQL, and weighs each
# merge by a walk over the whole expression below it: on the large expressions of many
# intervals (masks.py) those walks took about a fifth of a run's fixed cost. DuckDB's and
# Spark's optimisers merge nested projections themselves, so the SQL is written as built
# (benchmarks/bench_query.py: no slower on 1 M patients, 24 months faster).
ibis.options.sql.fuse_selects = False


def gc_paused(run: Any) -> Any:
    """``run`` with Python's cycle collector held off until it returns (left as it was
    when already off).

    Building and compiling a run's queries makes some hundred thousand short-lived Ibis
    nodes; every few hundred allocations the collector walks the young objects, and now
    and then all of some 200,000 live ones. On 1 M patients over 24 monthly intervals that
    was about 0.15 s of 2.4 s (``benchmarks/bench_query.py``). Reference counting still
    frees everything as it goes; any cycles are collected after the run."""

    @functools.wraps(run)
    def paused(*args: Any, **kwargs: Any) -> Any:
        if not gc.isenabled():
            return run(*args, **kwargs)
        gc.disable()
        try:
            return run(*args, **kwargs)
        finally:
            gc.enable()

    return paused


LEAF_OPS = ("pcol", "agg", "pick", "day", "lookup", "person_days")
_IBIS_TYPES = {
    "bool": "boolean",
    "int": "int64",
    "float": "float64",
    "date": "date",
    "datetime": "timestamp",
    "string": "string",
}
_FILL = {"exists": False, "count": 0, "count_days": 0, "count_distinct": 0}
#: Row mode: the output row's number among its patient's rows, and the prefix of the current
#: row's columns on every (patient, row) table.
ROW_KEY = "row_number"
ROW_PREFIX = "_row_"
#: Tables with rows for (nearly) every patient: a population that needs only them is broad.
BROAD_TABLES = frozenset({"patients", "registrations", "addresses"})


def _children(node: Any) -> Iterable[Any]:
    if isinstance(node, Series):
        yield from node.args
    elif isinstance(node, Frame):
        yield from node._filters
        yield from node._order


def _flatten(args: Iterable[Any]) -> Iterable[Series | Frame]:
    for a in args:
        if isinstance(a, Series | Frame):
            yield a
        elif isinstance(a, list | tuple):
            yield from _flatten(a)


def _common_filters(
    splits: dict[tuple, tuple[list[Series], list[Series]]],
) -> tuple[list[Series], dict[tuple, tuple[list[Series], list[Series]]]]:
    """The interval-independent filters every frame has, and each frame's (static,
    dynamic) filters without them."""
    parts = list(splits.values())
    keys = set.intersection(*({f.key for f in st} for st, _ in parts)) if parts else set()
    if not keys:
        return [], splits
    common = [f for f in parts[0][0] if f.key in keys]
    common = list({f.key: f for f in common}.values())
    rest = {k: ([f for f in st if f.key not in keys], dy) for k, (st, dy) in splits.items()}
    return common, rest


def _codes_kept(filters: Sequence[Series]) -> tuple[str, frozenset[str]] | None:
    """``(column, codes)`` when rows meeting every one of ``filters`` all hold one of
    ``codes`` in the (single-code) column ``column``: one filter is a code-list match, an
    ``&`` with one, or an ``|`` of matches on that column. None when no filter says so."""
    for f in filters:
        found = _codes_of(f)
        if found is not None:
            return found
    return None


def _codes_of(s: Any) -> tuple[str, frozenset[str]] | None:
    if not isinstance(s, Series):
        return None
    if s.op == "match":
        _, column, _, is_list, by_system = s.args
        if is_list:
            return None
        return column, frozenset(code for _, codes in by_system for code in codes)
    if s.op == "and":
        return _codes_of(s.args[0]) or _codes_of(s.args[1])
    if s.op == "or":
        a, b = _codes_of(s.args[0]), _codes_of(s.args[1])
        if a is not None and b is not None and a[0] == b[0]:
            return a[0], a[1] | b[1]
    return None


def _reads_neighbours(frame: Frame, value: Series | None = None) -> bool:
    """True when ``frame``'s filters or order, or ``value`` on its rows, read a previous or
    next row (so its rows are windowed, not scanned with other frames')."""
    return any(neighbours(x) for x in (*frame._filters, *frame._order, value) if x is not None)


class Compiler:
    """Builds Ibis expressions for one run (an index date, or a list of intervals)."""

    def __init__(
        self,
        con: Any,
        *,
        index_date: dt.date | None = None,
        intervals: Sequence[tuple[dt.date, dt.date]] | None = None,
        interval_start: dt.date | None = None,
        rows: tuple[int, Frame] | None = None,
    ):
        if (index_date is None) == (intervals is None):
            raise ValueError("give an index date or intervals")
        if rows is not None and intervals is not None:
            raise ValueError("a row dataset runs on one index date, not over intervals")
        self.con = con
        self.index_date = index_date
        self.intervals = list(intervals) if intervals is not None else None
        #: Row mode: (the row dataset's number, its frame) — one output row per row.
        self.row_unit = rows
        self._unit_table: ir.Table | None = None
        #: With an index date: the start of the one interval it ends (default: itself).
        self.interval_start = interval_start if interval_start is not None else index_date
        self._tables: dict[str, ir.Table] = {}
        self._sources: dict[tuple, tuple[ir.Table, list[str]]] = {}
        self._names: dict[tuple, str] = {}
        self._counter = itertools.count()
        self._deps: dict[tuple, bool] = {}
        self._interval_table: ir.Table | None = None
        self._literals: list[str] = []
        #: When set (keys of the population), sources read only rows of those patients.
        self.restrict: ir.Table | None = None
        #: The patients of ``restrict`` (one row each), when known without a DISTINCT.
        self.restrict_patients: ir.Table | None = None
        #: Per-patient values earlier runs on this connection computed (see PatientTables).
        self.reuse: PatientTables | None = getattr(con, "patient_tables", None)
        #: Conditions (node keys) known to be true on every row being computed (set while
        #: building over a remembered population's table): read as true, not recomputed.
        self.known: frozenset[tuple] = frozenset()
        #: Nodes computed another way on the rows being evaluated (node key -> a function
        #: of the table): the change-point evaluation's flipping comparisons.
        self.substitutes: dict[tuple, Any] = {}
        #: The days each ``during`` filter's periods hold (periods' keys -> pieces), built once.
        self._during: dict[tuple, ir.Table] = {}

    # -- basics ---------------------------------------------------------------------------
    @property
    def interval_mode(self) -> bool:
        return self.intervals is not None

    @property
    def row_mode(self) -> bool:
        """One output row per row of a frame (a row dataset): values that read the current
        row are computed per (patient, row), as a measure's are per (patient, interval)."""
        return self.row_unit is not None

    @property
    def unit_mode(self) -> bool:
        """True when the output's unit is finer than the patient: (patient, interval) or
        (patient, row). "Depends on the interval" then means "depends on the unit"."""
        return self.intervals is not None or self.row_unit is not None

    @property
    def unit_key(self) -> str:
        return ROW_KEY if self.row_mode else "interval_id"

    @property
    def unit_columns(self) -> list[str]:
        """The unit's own columns carried beside the keys (an interval's start and end, the
        current row's columns)."""
        if self.row_mode:
            assert self.row_unit is not None
            names = schema_table(self.row_unit[1]._table).column_names
            return [ROW_PREFIX + c for c in names if c != "patient_id"]
        return ["interval_start", "interval_end"] if self.interval_mode else []

    def unit_table(self) -> ir.Table:
        """Row mode: the rows of the row dataset's frame, one per output row — the patient,
        the row's number among the patient's rows (from 1, in the frame's order: by its
        date, ties broken by every other column, as :meth:`_order_by` orders the first
        row, so the same on every engine) and each column as ``_row_<name>``. Rows of a
        patient missing from ``patients`` are left out, as a Dataset leaves them out."""
        if self._unit_table is None:
            assert self.row_unit is not None
            frame = self.row_unit[1]
            t, _ = self.rows(frame)  # the frame cannot read its own row: not paired
            order = self._order_by(frame, t, "first")
            number = ibis.row_number().over(group_by=[t.patient_id], order_by=order) + 1
            cols = {c: t[c[len(ROW_PREFIX) :]] for c in self.unit_columns}
            rows = t.select("patient_id", **{ROW_KEY: number.cast("int64")}, **cols)
            # rows of a patient missing from `patients` are no one's, as in a Dataset
            self._unit_table = rows.semi_join(self.table("patients"), "patient_id")
        return self._unit_table

    def table(self, name: str) -> ir.Table:
        if name not in self._tables:
            try:
                self._tables[name] = self.con.table(name)
            except Exception as exc:  # noqa: BLE001 - backends raise different types
                raise QueryError(
                    f"the backend has no table {name!r}: connect through Store.connect() or "
                    "register every canonical table"
                ) from exc
        return self._tables[name]

    def interval_table(self) -> ir.Table:
        """The intervals as a table in the backend (see :meth:`literal_table`)."""
        if self._interval_table is None:
            import pyarrow as pa

            assert self.intervals is not None
            self._interval_table = self.literal_table(
                {
                    "interval_id": pa.array(range(len(self.intervals)), pa.int64()),
                    "interval_start": pa.array([s for s, _ in self.intervals], pa.date32()),
                    "interval_end": pa.array([e for _, e in self.intervals], pa.date32()),
                }
            )
        return self._interval_table

    def literal_table(self, columns: dict[str, Any]) -> ir.Table:
        """A small table of the given Arrow arrays registered in the backend (not an Ibis
        memtable: Spark cannot see memtables inside cached expressions)."""
        import uuid

        import pyarrow as pa

        data = pa.table(columns)
        name = f"_pophealth_lit_{uuid.uuid4().hex[:12]}"
        con = getattr(self.con, "con", self.con)  # unwrap a StoreBackend
        if con.name == "pyspark":
            session = con._session
            session.createDataFrame(data.to_pandas()).createOrReplaceTempView(name)
        elif con.name == "duckdb":  # straight from Arrow: Ibis's create_table, 10 ms a table
            raw = con.con
            raw.register(f"{name}_arrow", data)
            try:
                raw.execute(f'CREATE TEMPORARY TABLE "{name}" AS SELECT * FROM "{name}_arrow"')
            finally:
                raw.unregister(f"{name}_arrow")
        else:
            con.create_table(name, data, temp=True, overwrite=True)
        self._literals.append(name)
        return con.table(name)

    def close(self) -> None:
        """Drop the literal tables this run made (once its results are read: a connection
        kept open, as a web app keeps one, would otherwise gather them)."""
        con = getattr(self.con, "con", self.con)
        while self._literals:
            name = self._literals.pop()
            with contextlib.suppress(Exception):  # already gone (e.g. the session stopped)
                if con.name == "pyspark":
                    con._session.catalog.dropTempView(name)
                else:
                    con.drop_table(name, force=True)

    def depends_on_interval(self, node: Any) -> bool:
        """True when ``node`` refers to the index date / interval (only in interval mode),
        or to the current row (only in row mode)."""
        if not self.unit_mode:
            return False
        key = node.key
        if key not in self._deps:
            ops = ("index_date", "interval_start") if self.interval_mode else ("rowref",)
            if isinstance(node, Series) and node.op in ops:
                self._deps[key] = True
            else:
                self._deps[key] = any(
                    self.depends_on_interval(c) for c in _flatten(_children(node))
                )
        return self._deps[key]

    def keys(self, with_interval: bool) -> list[str]:
        return ["patient_id", self.unit_key] if with_interval else ["patient_id"]

    def base(self, with_interval: bool | None = None) -> ir.Table:
        if with_interval is None:
            with_interval = self.unit_mode
        if self.restrict is not None:
            if with_interval == self.unit_mode:
                return self.restrict
            if self.restrict_patients is not None:
                return self.restrict_patients
            return self.restrict.select("patient_id").distinct()
        if with_interval and self.row_mode:  # every row, whether or not anything matches
            return self.unit_table()
        t = self.table("patients").select("patient_id")
        if with_interval:
            t = t.cross_join(self.interval_table())
        return t

    # -- frames ---------------------------------------------------------------------------
    def scan(self, table: str, filter_sets: Sequence[Sequence[Series]]) -> ir.Table:
        """``table`` as a pass over frames with these filters reads it: when each frame
        keeps only the codes of some code lists, first a plain "code in any of them".

        That test is redundant with the frames' own (which also check each code's
        system), but engines push a plain ``IN`` down to the Parquet scan, which then skips
        every row group whose code range holds none of the codes. The store clusters coded
        tables by code (``cluster_by`` in :mod:`pophealth.schema`), so a code list's rows
        lie in few row groups.

        Each ``during`` filter of the frames is put on the rows as a column to read
        (:meth:`_with_during`)."""
        t = self.table(table)
        kept = [_codes_kept(filters) for filters in filter_sets]
        if kept and all(k is not None for k in kept) and len({k[0] for k in kept}) == 1:
            column = kept[0][0]
            codes = sorted(frozenset().union(*(k[1] for k in kept)))
            t = t.filter(t[column].isin(codes))
        return self._with_during(t, [f for filters in filter_sets for f in filters])

    def _staged(
        self, table: str, static: list[Series], dynamic: list[Series], extra: Sequence[Series] = ()
    ) -> ir.Table:
        """Rows of ``table``: filters that do not depend on the interval are applied first
        (so code-list filters reach the scan), then the rows are paired with the intervals
        (only if something depends on them) and the interval-dependent filters applied.

        A previous or next row read by a filter or an ``extra`` value
        (``rows.where(rows.days_since_previous() <= 30)``) is put on each row by a window
        over the rows that passed its own frame's filters — the rows it is taken over —
        before any later filter narrows them."""
        # each previous/next row is taken after the filters of the rows it is of: the
        # first k filters (k = its frame's; in _derive, a frame's rows or rows they narrow)
        stages: dict[int, list[Series]] = {}
        found = {n.key: n for x in (*static, *extra) for n in neighbours(x)}
        for n in found.values():
            stages.setdefault(min(len(n.args[0]._filters), len(static)), []).append(n)
        # (and no code-list filter after one narrows the rows it is of, at the scan)
        t = self.scan(table, [static[: min(stages, default=len(static))]])
        t = self._with_during(t, [*static, *dynamic])
        static_leaves = self._leaves(static)
        if static_leaves:
            pt, _ = self.leaf_table(static_leaves, with_interval=False)
            t = t.inner_join(pt, "patient_id")
        for x in (*dynamic, *extra):
            if neighbours(x) and self.depends_on_interval(x):
                if self.row_mode:
                    raise QueryError(
                        f"{neighbours(x)[0].desc}: the previous and next rows are taken over "
                        "rows that do not depend on the row dataset's current row: take them "
                        "first and compare with the row after (rows.where(rows.days_since_"
                        "previous() <= 30).on_or_after(op.start_datetime))"
                    )
                raise QueryError(
                    f"{neighbours(x)[0].desc}: the previous and next rows are taken over rows "
                    "that do not depend on the measure's interval: take them first and window "
                    "after (rows.where(rows.days_since_previous() <= 30).in_interval())"
                )
        todo: list[Series] = []
        for i, f in enumerate(static):
            if i in stages:  # the rows so far are the ones these are taken over
                if todo:
                    t = t.filter([self.expr(g, t) for g in todo])
                    todo = []
                t = self._with_neighbours(t, stages[i])
            todo.append(f)
        if todo:
            t = t.filter([self.expr(f, t) for f in todo])
        t = self._with_neighbours(t, stages.get(len(static), []))
        dep = bool(dynamic) or any(self.depends_on_interval(x) for x in extra)
        t = self._pair(t, dep)
        dynamic_leaves = self._leaves([*dynamic, *extra])
        if dynamic_leaves:
            pt, keys = self.leaf_table(dynamic_leaves, with_interval=dep)
            t = t.inner_join(pt, keys)
        if dynamic:
            t = t.filter([self.expr(f, t) for f in dynamic])
        return t

    def _with_neighbours(self, t: ir.Table, found: Sequence[Series]) -> ir.Table:
        """``t`` with a column per previous/next-row value in ``found`` (not yet on it): a
        window per patient in the frame's order, ascending, ties broken by every other
        column (:meth:`_order_by`, as for the first row), so the same on every engine."""
        cols = {}
        for n in found:
            name = self._name(n)
            if name in t.columns or name in cols:
                continue
            frame, value, direction = n.args
            window = ibis.window(
                group_by=[t.patient_id], order_by=self._order_by(frame, t, "first")
            )
            x = self.expr(value, t)
            cols[name] = (x.lag() if direction == "previous" else x.lead()).over(window)
        return t.mutate(**cols) if cols else t

    def _pair(self, t: ir.Table, dep: bool) -> ir.Table:
        """Rows paired with the intervals (when ``dep``), keeping only rows of the patients
        being computed (when restricted), before the pairing multiplies the rows.

        Paired rows of a kept patient in an interval outside the restriction are not
        removed here (a semi-join on patient and interval costs more than the few rows it
        saves): every source is left-joined to the restricted base, which drops them."""
        if self.restrict is not None:
            t = t.semi_join(self.base(False), "patient_id")
        if dep and self.row_mode:  # each row beside each of its patient's output rows
            unit = self.restrict if self.restrict is not None else self.unit_table()
            t = t.inner_join(unit.select(*self.keys(True), *self.unit_columns), "patient_id")
        elif dep:
            t = t.cross_join(self.interval_table())
        return t

    def _split(self, filters: Sequence[Series]) -> tuple[list[Series], list[Series]]:
        static = [f for f in filters if not self.depends_on_interval(f)]
        dynamic = [f for f in filters if self.depends_on_interval(f)]
        return static, dynamic

    def rows(self, frame: Frame, extra: Sequence[Series] = ()) -> tuple[ir.Table, list[str]]:
        """The rows of ``frame`` (with interval columns when it depends on the interval),
        and the previous/next-row values ``extra`` reads on them."""
        if frame.error:
            raise QueryError(frame.error)
        dep = self.depends_on_interval(frame)
        static, dynamic = self._split(frame._filters)
        t = self._staged(frame._table, static, dynamic, extra=(*frame._order, *extra))
        return t, self.keys(dep)

    def necessary(self, s: Series) -> Series | None:
        """An interval-independent condition true for a patient whenever ``s`` is true for
        that patient in some interval (None when none is known), so rows of patients who
        can never meet ``s`` need not be paired with the intervals at all.

        ``a & b`` needs both, ``a | b`` either; "has a row (with interval-dependent
        filters)" needs a row with the other filters; a condition that does not depend on
        the interval is its own. Only used in interval mode."""
        if not self.interval_mode or s.dtype != "bool" or s.error:
            return None
        if not self.depends_on_interval(s):
            return s
        if s.op in ("and", "or"):
            a, b = (self.necessary(x) for x in s.args)
            if s.op == "and":
                return a if b is None else b if a is None else a & b
            return None if a is None or b is None else a | b
        if s.op == "agg" and s.args[1] == "exists":
            frame = s.args[0]
            if frame.error:
                return None
            static, _ = self._split(frame._filters)
            return Frame(frame._table, tuple(static)).exists_for_patient()
        if s.op == "gt" and s.args[0].op == "person_days" and s.args[1].op == "lit":
            # some person-time in an interval needs a period (its rows never read the interval)
            frame = s.args[0].args[0]
            if frame.error or s.args[1].args[0] != 0:
                return None
            return Frame(frame._table, frame._filters).exists_for_patient()
        return None

    # -- leaves and sources -------------------------------------------------------------------
    def _rewrite(self, leaf: Series) -> Series | None:
        """A cheaper equivalent for an interval-dependent leaf, or None.

        "Has a row on or before the index date" over many intervals is "the first row's
        date is on or before each interval's end": one aggregate per patient instead of one
        per patient and interval (diagnosis registers are mostly this shape)."""
        if not self.interval_mode or leaf.op != "agg" or leaf.args[1] != "exists":
            return None
        frame = leaf.args[0]
        static, dynamic = self._split(frame._filters)
        if len(dynamic) != 1 or frame._order:
            return None
        f = dynamic[0]
        date_col = DATE_COLUMNS[frame._table]
        row = f.args[0] if f.op in ("le", "lt") else None
        if row is not None and row.op == "to_date":  # the day of a date-and-time column
            row = row.args[0]
        if (
            row is not None
            and row.op == "col"
            and row.args[1] == date_col
            and f.args[1].op == "index_date"
        ):
            base = Frame(frame._table, tuple(static))
            first = base.minimum_for_patient(base._date)
            return first <= f.args[1] if f.op == "le" else first < f.args[1]
        return None

    def _leaves(self, nodes: Iterable[Series]) -> list[Series]:
        found: dict[tuple, Series] = {}

        def walk(node: Any) -> None:
            if isinstance(node, Series):
                if node.error:
                    raise QueryError(node.error)
                rewritten = self._rewrite(node)
                if rewritten is not None:
                    walk(rewritten)
                    return
                if node.op in LEAF_OPS:
                    found.setdefault(node.key, node)
                    return
                for child in _flatten(node.args):
                    walk(child)

        for n in nodes:
            walk(n)
        return list(found.values())

    def _name(self, leaf: Series) -> str:
        if leaf.key not in self._names:
            self._names[leaf.key] = f"_v{next(self._counter)}"
        return self._names[leaf.key]

    def _source_key(self, leaf: Series) -> tuple:
        op, args = leaf.op, leaf.args
        if op == "pcol":
            return ("patients",)
        if op == "agg":
            # every aggregate over one table (and interval dependence) shares one pass,
            # but rows read with their previous or next row are windowed on their own
            frame = args[0]
            if _reads_neighbours(frame, args[2]) or self._value_reads_interval(leaf):
                # (a value that reads the interval, on rows that do not: the rows are
                # paired with the intervals for it alone)
                dep = self.depends_on_interval(frame) or self._value_reads_interval(leaf)
                return ("agg", frame._table, dep, frame.key)
            return ("agg", frame._table, self.depends_on_interval(frame))
        if op == "pick":
            frame = args[0]
            return ("pick", frame.key, args[1], tuple(o.key for o in frame._order))
        if op == "day":
            frame, direction, column, rule, _ = args
            if (
                not self.interval_mode
                and not frame.error
                and not self.depends_on_interval(frame)
                and not self.depends_on_interval(column)
                and self._row_only(frame, column)
            ):
                # one index date: every first/last day of one table shares one pass
                return ("days", frame._table)
            return ("day", frame.key, direction, column.key, rule)
        if op == "lookup":
            key, table, key_col, _ = args
            return ("lookup", key.key, table, key_col)
        if op == "person_days":
            return ("person_days", leaf.key)
        raise AssertionError(op)

    def _value_reads_interval(self, leaf: Series) -> bool:
        """Whether aggregate ``leaf`` takes a value that depends on the interval (or the
        current row) over rows that do not (``rows.maximum_for_patient(rows.date.days_until(
        index_date))``)."""
        arg = leaf.args[2]
        return (
            arg is not None
            and self.depends_on_interval(arg)
            and not self.depends_on_interval(leaf.args[0])
        )

    def leaf_table(
        self,
        leaves: Sequence[Series],
        with_interval: bool,
        base: ir.Table | None = None,
        within: Sequence[ir.Table] = (),
    ) -> tuple[ir.Table, list[str]]:
        """Patient base (× intervals) with one column per leaf, named by :meth:`_name`;
        only the patients with a row in each table of ``within``, when given."""
        t = self.base(with_interval) if base is None else base
        groups: dict[tuple, list[Series]] = {}
        for leaf in leaves:
            if self._name(leaf) not in t.columns:  # e.g. read from a remembered run
                groups.setdefault(self._source_key(leaf), []).append(leaf)
        keys = self.keys(with_interval)
        if base is None and self.restrict is None and not with_interval and ("patients",) in groups:
            # the base is the patients table: read its columns there, not through a self-join
            p = self.table("patients")
            pcols = {self._name(lf): p[lf.args[1]] for lf in groups.pop(("patients",))}
            t = p.select("patient_id", **pcols)
        for rows in within:
            t = t.semi_join(rows, "patient_id")
        for skey, group in groups.items():
            src, src_keys = self._source(skey, group)
            wanted = [self._name(leaf) for leaf in group]
            missing = [n for n in wanted if n not in src.columns]
            if missing:  # a source first built for fewer leaves: rebuild with all of them
                self._sources.pop(skey, None)
                src, src_keys = self._source(skey, group)
            present = [n for n in wanted if n not in t.columns]
            if not present:
                continue
            t = t.left_join(src.select(*src_keys, *present), src_keys)
            t = t.select(*[c for c in t.columns if not c.endswith("_right")])
        return t, keys

    def _source(self, skey: tuple, leaves: list[Series]) -> tuple[ir.Table, list[str]]:
        if skey in self._sources:
            return self._sources[skey]
        kind = skey[0]
        if kind == "patients":
            p = self.table("patients")
            out = p.select("patient_id", **{self._name(lf): p[lf.args[1]] for lf in leaves})
            result = (out, ["patient_id"])
        elif kind == "agg":
            result = self._agg_source(leaves)
        elif kind == "pick":
            result = self._pick_source(leaves)
        elif kind == "day":
            result = self._day_source(leaves)
        elif kind == "days":
            result = self._days_source(leaves)
        elif kind == "person_days":
            result = self._person_days_source(leaves[0])
        else:
            result = self._lookup_source(leaves)
        self._sources[skey] = result
        return result

    def _agg_source(self, leaves: list[Series]) -> tuple[ir.Table, list[str]]:
        """All aggregates over one table in one ``GROUP BY``: each frame's filters become a
        condition column and each aggregate counts only the rows meeting its frame's
        condition (``FILTER (WHERE ...)``); rows meeting no frame's filters are dropped
        first (interval-independent conditions before pairing rows with intervals)."""
        frames: dict[tuple, Frame] = {}
        for leaf in leaves:
            frame = leaf.args[0]
            if frame.error:
                raise QueryError(frame.error)
            frames.setdefault(frame.key, frame)
        first = next(iter(frames.values()))
        moving = [leaf.args[2] for leaf in leaves if self._value_reads_interval(leaf)]
        dep = self.depends_on_interval(first) or bool(moving)
        keys = self.keys(dep)
        if len(frames) == 1:
            reads = [n for leaf in leaves for n in neighbours(leaf.args[2])]
            # values that read the interval: the rows paired with it, their leaves joined
            t, _ = self.rows(first, extra=[*reads, *moving])
            conds: dict[tuple, ir.Value | None] = {first.key: None}
        else:
            splits = {k: self._split(f._filters) for k, f in frames.items()}
            common, splits = _common_filters(splits)
            t = self.scan(first._table, [f._filters for f in frames.values()])
            static_leaves = self._leaves([*common, *(x for st, _ in splits.values() for x in st)])
            if static_leaves:
                pt, _ = self.leaf_table(static_leaves, with_interval=False)
                t = t.inner_join(pt, "patient_id")
            if common:  # filters every frame has: a plain filter the scan can use
                t = t.filter([self.expr(f, t) for f in common])
            static_cols = {}
            for i, (k, (st, _)) in enumerate(splits.items()):
                if st:
                    expr = self.expr(st[0], t)
                    for f in st[1:]:
                        expr = expr & self.expr(f, t)
                    static_cols[k] = (f"_s{i}", expr)
            if static_cols:
                t = t.mutate(**dict(static_cols.values()))
                if len(static_cols) == len(frames):
                    keep = None
                    for name, _ in static_cols.values():
                        keep = t[name] if keep is None else keep | t[name]
                    t = t.filter(keep)
            t = self._pair(t, dep)
            dynamic_leaves = self._leaves([x for _, dy in splits.values() for x in dy])
            if dynamic_leaves:
                pt, _ = self.leaf_table(dynamic_leaves, with_interval=dep)
                t = t.inner_join(pt, keys)
            cond_cols = {}
            for i, (k, (_, dy)) in enumerate(splits.items()):
                expr = t[static_cols[k][0]] if k in static_cols else None
                for f in dy:
                    e = self.expr(f, t)
                    expr = e if expr is None else expr & e
                if expr is not None:
                    cond_cols[k] = (f"_f{i}", expr)
            if cond_cols:
                t = t.mutate(**dict(cond_cols.values()))
                if len(cond_cols) == len(frames):
                    keep = None
                    for name, _ in cond_cols.values():
                        keep = t[name] if keep is None else keep | t[name]
                    t = t.filter(keep)
            conds = {k: (t[cond_cols[k][0]] if k in cond_cols else None) for k in frames}
        aggs = {}
        for leaf in leaves:
            frame, fn, arg = leaf.args
            name = self._name(leaf)
            where = conds[frame.key]
            if fn == "exists":
                aggs[name] = t.count(where=where) > 0
            elif fn == "count":
                aggs[name] = t.count(where=where)
            else:
                x = self.expr(arg, t)
                aggs[name] = {
                    "count_days": lambda x, w: x.nunique(where=w),
                    "count_distinct": lambda x, w: x.nunique(where=w),
                    "min": lambda x, w: x.min(where=w),
                    "max": lambda x, w: x.max(where=w),
                    "mean": lambda x, w: x.mean(where=w),
                    "sum": lambda x, w: x.sum(where=w),
                }[fn](x, where)
        return t.group_by(keys).aggregate(**aggs), keys

    #: A day number after every date (27 349 AD): an open end.
    _OPEN_END = 10**7

    @staticmethod
    def _day_number(x: ir.Value) -> ir.Value:
        """Date ``x`` as whole days from 1970-01-01."""
        epoch = ibis.literal(dt.date(1970, 1, 1), type="date")
        return x.delta(epoch, unit="day").cast("int64")

    def _person_days_source(self, leaf: Series) -> tuple[ir.Table, list[str]]:
        """Person-time (:meth:`~pophealth.query.model.Frame.days_in_interval_for_patient`):
        the days of a patient's periods inside each interval, each day once.

        Days are counted as whole numbers from 1970-01-01. The periods are first made into
        disjoint pieces, once for every interval: the union of the frame's periods
        (:meth:`_union_pieces`) or, for a filtered frame of ``addresses``, the days on which
        the patient's address by the table's overlap rule is one of the frame's rows
        (:meth:`_address_pieces`). An open end runs on; ``until`` cuts every piece after
        its day. Only then are the pieces paired with the intervals and cut to each: the
        days of a piece inside one are ``min(end, interval end) - max(start, interval
        start) + 1`` where positive."""
        frame, start, end, until, _, _ = leaf.args
        if self.interval_mode:
            assert self.intervals is not None
            first = (min(a for a, _ in self.intervals) - dt.date(1970, 1, 1)).days
            last = (max(b for _, b in self.intervals) - dt.date(1970, 1, 1)).days
        else:
            first = (self.interval_start - dt.date(1970, 1, 1)).days
            last = (self.index_date - dt.date(1970, 1, 1)).days
        p = self._pieces(frame, start, end, first, last)
        if until is not None:
            ut, _ = self.leaf_table(self._leaves([until]), with_interval=False)
            p = p.left_join(ut, "patient_id")
            p = p.select(*[c for c in p.columns if not c.endswith("_right")])
            u = ibis.coalesce(
                self._day_number(self.expr(until, p)), ibis.literal(self._OPEN_END, type="int64")
            )
            p = p.mutate(_e=ibis.least(p._e, u)).filter(lambda x: x._s <= x._e)
            p = p.select("patient_id", "_s", "_e")
        p = p.filter((p._e >= first) & (p._s <= last))
        p = self._pair(p, self.interval_mode)
        if self.interval_mode:
            a, b = self._day_number(p.interval_start), self._day_number(p.interval_end)
        else:
            a = ibis.literal(first, type="int64")
            b = ibis.literal(last, type="int64")
        n = ibis.least(p._e, b) - ibis.greatest(p._s, a) + 1
        p = p.mutate(_n=n).filter(lambda x: x._n > 0)
        keys = self.keys(self.interval_mode)
        return p.group_by(keys).aggregate(**{self._name(leaf): p._n.sum().cast("int64")}), keys

    def _pieces(self, frame: Frame, start: Series, end: Series, first: int, last: int) -> ir.Table:
        """The days the rows of ``frame`` hold, from day number ``first`` to ``last`` (at
        least), as disjoint pieces (``patient_id``, ``_s``, ``_e``): for a filtered frame
        of ``addresses``, the days on which the patient's address by the table's overlap
        rule is one of the frame's rows (:meth:`_address_pieces`); otherwise the union of
        the rows' periods (:meth:`_union_pieces`). Person-time counts these days and
        ``during`` keeps the rows dated on one of them: one rule for both."""
        if frame._table == "addresses" and frame._filters:
            return self._address_pieces(frame, start, end, first, last)
        return self._union_pieces(frame, start, end)

    def _with_during(self, t: ir.Table, filters: Sequence[Series]) -> ir.Table:
        """``t`` (rows of a table, before their filters) with a True/False column for each
        ``frame.during(periods)`` among ``filters`` not yet on it: whether the row's day is
        one of the days the periods hold (:meth:`_pieces`, over every day). The pieces are
        disjoint per patient, so a left join on the patient and the day inside a piece
        meets at most one piece per row and keeps every row; a row without a date meets
        none. Definitions without ``during`` are not touched."""
        for f in filters:
            if f.op != "during" or self._name(f) in t.columns:
                continue
            if self.depends_on_interval(f):  # refused by Frame.during; never paired
                raise QueryError(
                    f"{f.desc}: the periods must not depend on the interval or the current row"
                )
            name = self._name(f)
            _, _, periods, start, end = f.args
            pkey = (periods.key, start.key, end.key)  # shared by every table kept by them
            if pkey not in self._during:
                p = self._pieces(periods, start, end, -self._OPEN_END, self._OPEN_END)
                self._during[pkey] = p.select(_dp_id=p.patient_id, _dp_s=p._s, _dp_e=p._e)
            p = self._during[pkey]
            day = self._day_number(self.expr(f.args[1], t))
            j = t.left_join(p, [t.patient_id == p._dp_id, day >= p._dp_s, day <= p._dp_e])
            t = j.mutate(**{name: j._dp_s.notnull()}).drop("_dp_id", "_dp_s", "_dp_e")
        return t

    def _union_pieces(self, frame: Frame, start: Series, end: Series) -> ir.Table:
        """The union of the frame's periods as disjoint pieces (``patient_id``, ``_s``,
        ``_e``: first and last day numbers): in order of start, each period keeps only its
        days after the latest end among the periods before it (those days up to that end
        are held by that period, which starts no later), so the pieces left add up to the
        union of the periods."""
        t, _ = self.rows(frame)
        s = self._day_number(self.expr(start, t))
        e = ibis.coalesce(
            self._day_number(self.expr(end, t)), ibis.literal(self._OPEN_END, type="int64")
        )
        p = t.select("patient_id", _s=s, _e=e)
        before = ibis.window(
            group_by=[p.patient_id], order_by=[p._s, p._e], preceding=None, following=0
        )
        p = p.mutate(_m=p._e.max().over(before))  # the latest end so far, this row's too
        after = ibis.window(group_by=[p.patient_id], order_by=[p._s, p._e])
        p = p.mutate(_m=p._m.lag().over(after))  # the latest end before this row
        p = p.mutate(_s=ibis.cases((p._m.isnull(), p._s), else_=ibis.greatest(p._s, p._m + 1)))
        return p.filter(p._s <= p._e).select("patient_id", "_s", "_e")

    def _address_pieces(
        self, frame: Frame, start: Series, end: Series, first: int, last: int
    ) -> ir.Table:
        """The days from ``first`` to ``last`` (day numbers) on which the patient's address
        by the overlap rule of ``addresses`` is one of ``frame``'s rows, as disjoint pieces
        (``patient_id``, ``_s``, ``_e``).

        The rule is :meth:`~pophealth.query.tables.Addresses.address_on`'s, over all the
        patient's addresses, not only the frame's: on a day, of the addresses holding it,
        the one with the latest start wins, ties broken by the LSOA code and then every
        other column (:meth:`_order_by`, as for the last row). A care-home address left
        open after a move to a later-starting flat is no longer the address from the
        flat's start, so its days stop there.

        Each patient's time is cut at every start and every end + 1 of the addresses
        overlapping ``first`` to ``last`` (no other address holds a day there) into
        segments on which the same addresses hold every day; each segment takes its
        winner (the least place in the rule among those holding it: one ``GROUP BY``, not a
        window per segment), and is kept when that is one of the frame's rows. Filters on the
        row's own columns alone (``addresses.care_home``) are read on every row; otherwise
        a row is one of the frame's when a row of the frame has all its columns (identical
        rows are alike in every way the rule looks at, so which of them wins does not
        matter)."""
        from pophealth.query.tables import Addresses

        chosen = Addresses().address_on()  # the rule, read from its one definition
        cols = [c.name for c in schema_table("addresses").columns if c.name != "patient_id"]

        def keyed(t: ir.Table) -> ir.Table:
            # every column as a join key never missing: a missing value becomes one no
            # present value takes (an end before every date, an empty LSOA code)
            keys = {}
            for c in cols:
                x = t[c]
                if x.type().is_date():
                    x = self._day_number(x).fill_null(-ibis.literal(self._OPEN_END, type="int64"))
                elif x.type().is_string():
                    x = x.fill_null("")
                keys[f"_k_{c}"] = x
            return t.mutate(**keys)

        every, _ = self.rows(Frame("addresses"))
        every = every.select("patient_id", *cols)
        s = self._day_number(self.expr(start, every))
        e = ibis.coalesce(
            self._day_number(self.expr(end, every)), ibis.literal(self._OPEN_END, type="int64")
        )
        every = every.mutate(_s=s, _e=e)
        every = every.filter((every._e >= first) & (every._s <= last))
        filters = frame._filters
        if (
            not self._leaves(filters)
            and not any(neighbours(f) for f in filters)
            and not any(f.op == "during" for f in filters)
        ):
            # filters on the row's own columns: read on every row
            kept = ibis.literal(True)
            for f in filters:
                kept = kept & self.expr(f, every).fill_null(False)
            every = every.mutate(_in=kept)
        else:
            mine, _ = self.rows(frame)
            knames = ["patient_id", *(f"_k_{c}" for c in cols)]
            mine = keyed(mine.select("patient_id", *cols)).select(*knames).distinct()
            every = keyed(every).left_join(mine.mutate(_in=ibis.literal(True)), knames)
            every = every.select(*[c for c in every.columns if not c.endswith("_right")])
            every = every.mutate(_in=every._in.fill_null(False))
        # each address's place in the rule among the patient's (0: wins over all), doubled,
        # plus 1 when it is not one of the frame's rows: the least of these over the
        # addresses holding a day names the winner and says whether it is the frame's
        place = ibis.row_number().over(
            group_by=[every.patient_id],
            order_by=self._order_by(chosen._frame, every, chosen._direction),
        )
        every = every.mutate(_w=place * 2 + ibis.cases((every._in, 0), else_=1))
        # the segments: from each cut to the day before the next (a cut made twice gives
        # an empty segment, dropped)
        cuts = every.select("patient_id", _a=every._s).union(
            every.select("patient_id", _a=every._e + 1)
        )
        nxt = ibis.window(group_by=[cuts.patient_id], order_by=[cuts._a])
        seg = cuts.mutate(_b=cuts._a.lead().over(nxt) - 1)
        seg = seg.filter(seg._b >= seg._a)
        # each segment beside the addresses holding its days
        held = seg.inner_join(every, ["patient_id", every._s <= seg._a, every._e >= seg._b])
        won = held.group_by(["patient_id", "_a", "_b"]).aggregate(_w=held._w.min())
        won = won.filter(won._w % 2 == 0)
        return won.select("patient_id", _s=won._a, _e=won._b)

    def _order_by(self, frame: Frame, t: ir.Table, direction: str) -> list:
        keys = frame._order or (getattr(frame, DATE_COLUMNS[frame._table]),)
        # a date-and-time column orders by its clock time, not only its date (two
        # operations on one day: the earlier start first, whatever their ids)
        order = [self.expr(o, t) for o in keys]
        # the rest in the table's order, but a value straight after the dates and times (of
        # two readings on one day under two codes of a list, first the lower)
        rest = [
            c
            for c in schema_table(frame._table).columns
            if c.type != "list<string>" and c.name != "patient_id"
        ]
        value = [c for c in rest if c.name == "value"]
        if value:
            rest.remove(value[0])
            dated = [c.type in ("date", "timestamp") for c in rest] + [False]
            lead = dated.index(False)
            rest.insert(lead, value[0])
        ties = [t[c.name] for c in rest]
        wrap = (
            (lambda x: ibis.desc(x, nulls_first=False))
            if direction == "last"
            else (lambda x: ibis.asc(x, nulls_first=False))
        )
        return [wrap(x) for x in order + ties]

    def _pick_source(self, leaves: list[Series]) -> tuple[ir.Table, list[str]]:
        frame, direction, _ = leaves[0].args
        t, keys = self.rows(frame)
        rn = ibis.row_number().over(
            group_by=[t[k] for k in keys], order_by=self._order_by(frame, t, direction)
        )
        values = {self._name(leaf): self.expr(leaf.args[2], t) for leaf in leaves}
        ranked = t.select(*keys, _rn=rn, **values)
        return ranked.filter(ranked._rn == 0).drop("_rn"), keys

    def _day_source(self, leaves: list[Series]) -> tuple[ir.Table, list[str]]:
        """First/last day with rows, and the value of that day combined by the rule.

        When the interval-dependent filters look only at the date (``in_last``,
        ``in_interval``...), the rows are combined per patient and day once and the days
        (not the rows) are paired with the intervals. The chosen day is found with a
        ``GROUP BY`` (min/max day) joined back, not a window: days are unique per key."""
        frame, direction, column, rule, _ = leaves[0].args
        if frame.error:
            raise QueryError(frame.error)
        date_col = DATE_COLUMNS[frame._table]
        date = frame._date
        combine = {
            "min": lambda r: r._val.min(),
            "max": lambda r: r._val.max(),
            "mean": lambda r: r._val.mean(),
        }[rule]
        static, dynamic = self._split(frame._filters)
        by_day_first = (
            bool(dynamic)
            and not self.depends_on_interval(column)
            and schema_table(frame._table)[date_col].type == "date"
            and all(self._only_column(f, frame._table, date_col) for f in dynamic)
        )
        if by_day_first:
            t = self._staged(frame._table, static, [], extra=neighbours(column))
            per_day = (
                t.select("patient_id", _day=self.expr(date, t), _val=self.expr(column, t))
                .group_by(["patient_id", "_day"])
                .aggregate(_val=combine)
            )
            per_day = self._pair(per_day.mutate(**{date_col: per_day._day}), True)
            per_day = per_day.filter([self.expr(f, per_day) for f in dynamic])
            keys = self.keys(True)
            per_day = per_day.select(*keys, "_day", "_val")
        else:
            t, keys = self.rows(frame, extra=neighbours(column))
            per_day = (
                t.select(*keys, _day=self.expr(date, t), _val=self.expr(column, t))
                .group_by([*keys, "_day"])
                .aggregate(_val=combine)
            )
        # not arg_max: engines differ on a missing value on the chosen day
        pick = per_day._day.max() if direction == "last" else per_day._day.min()
        chosen = per_day.group_by(keys).aggregate(_pick=pick)
        ranked = per_day.inner_join(chosen, [*keys, per_day._day == chosen._pick])
        cols = {}
        for leaf in leaves:
            what = leaf.args[4]
            cols[self._name(leaf)] = ranked._day if what == "date" else ranked._val
        return ranked.select(*keys, **cols), keys

    def conditions(self, s: Series, t: ir.Table) -> list[ir.Value]:
        """``s`` as filter predicates over ``t``: one per condition joined by ``&`` (so the
        engine can push each down), a missing result counting as false, as in SQL's
        ``WHERE``. "Has rows" reads its column as is: missing (no rows) drops the row as
        false would, and a plain column lets the engine turn the outer join into an inner
        one."""
        if s.key in self.known:
            return []
        if s.op == "and":
            return [*self.conditions(s.args[0], t), *self.conditions(s.args[1], t)]
        if s.op == "agg" and s.args[1] == "exists" and self._rewrite(s) is None:
            return [t[self._name(s)]]
        return [self.expr(s, t)]

    def selective(self, population: Series) -> bool:
        """Whether restricting sources to ``population``'s patients (a semi-join before
        every aggregate and window) is likely to pay, with one index date.

        A population that needs nothing but rows of :data:`BROAD_TABLES` (registered,
        alive, aged 18+, living in an area...) holds most patients: at 1 M patients,
        "registered, alive, adult" is 70% of them and the semi-joins cost more than the
        rows they drop, so sources read every patient and are joined to the population.
        One that needs rows of a clinical table (a register: "has a hypertension code")
        is usually a small part of the population and is restricted."""
        if self.interval_mode:
            return True

        def broad(leaf: Series) -> bool:
            if leaf.op == "pcol":
                return True
            if leaf.op == "lookup":
                return all(broad(k) for k in self._leaves([leaf.args[0]]))
            frame = leaf.args[0]
            return frame._table in BROAD_TABLES and all(
                broad(k) for k in self._leaves([*frame._filters, *frame._order])
            )

        return not all(broad(leaf) for leaf in self._leaves([population]))

    def _row_only(self, frame: Frame, column: Series) -> bool:
        """True when ``frame``'s filters and ``column`` read only the frame's own rows (no
        per-patient value), so frames of one table can be filtered in one scan."""
        return not self._leaves([*frame._filters, column]) and not _reads_neighbours(frame, column)

    def _days_source(self, leaves: list[Series]) -> tuple[ir.Table, list[str]]:
        """First/last days of several frames of one table, with one index date, in one
        pass: rows meeting any frame's filters are combined per patient and day (each
        frame's value by its rule over its own rows: ``FILTER (WHERE ...)``), each frame's
        chosen day is found per patient, and the values of that day read back."""
        table = leaves[0].args[0]._table
        frames = {lf.args[0].key: lf.args[0] for lf in leaves}
        common, splits = _common_filters({k: (list(f._filters), []) for k, f in frames.items()})
        t = self.scan(table, [f._filters for f in frames.values()])
        if common:  # filters every frame has: a plain filter the scan can use
            t = t.filter([self.expr(f, t) for f in common])
        flags: dict[tuple, str | None] = {}
        cols: dict[str, ir.Value] = {}
        for i, (k, (rest, _)) in enumerate(splits.items()):
            flags[k] = None
            if rest:
                cond = self.expr(rest[0], t)
                for f in rest[1:]:
                    cond = cond & self.expr(f, t)
                flags[k] = f"_f{i}"
                cols[f"_f{i}"] = cond
        if cols:
            t = t.mutate(**cols)
            if all(flags.values()):
                keep = None
                for name in cols:
                    keep = t[name] if keep is None else keep | t[name]
                t = t.filter(keep)
        t = self._pair(t, False)
        where = {k: (t[c] if c else None) for k, c in flags.items()}
        aggs: dict[str, ir.Value] = {}
        counts: dict[tuple, str] = {}  # frame -> its rows that day
        for i, k in enumerate(frames):
            counts[k] = f"_n{i}"
            aggs[f"_n{i}"] = t.count(where=where[k])
        values: dict[tuple, str] = {}  # (frame, column, rule) -> its value that day
        for lf in leaves:
            frame, _, column, rule, what = lf.args
            vkey = (frame.key, column.key, rule)
            if what != "date" and vkey not in values:
                values[vkey] = f"_x{len(values)}"
                x = self.expr(column, t)
                aggs[values[vkey]] = getattr(x, rule)(where=where[frame.key])
        date = self.expr(leaves[0].args[0]._date, t)
        per_day = t.group_by(["patient_id", date.name("_day")]).aggregate(**aggs)
        picks: dict[tuple, str] = {}  # (frame, direction) -> the chosen day
        pick_aggs = {}
        for lf in leaves:
            frame, direction = lf.args[0], lf.args[1]
            if (frame.key, direction) not in picks:
                name = picks[(frame.key, direction)] = f"_p{len(picks)}"
                has = per_day[counts[frame.key]] > 0
                day = per_day._day
                pick_aggs[name] = day.max(where=has) if direction == "last" else day.min(where=has)
        chosen = per_day.group_by("patient_id").aggregate(**pick_aggs)
        # not arg_max: engines differ on a missing value on the chosen day
        joined = per_day.inner_join(chosen, "patient_id")
        out = {}
        for lf in leaves:
            frame, direction, column, rule, what = lf.args
            pick = joined[picks[(frame.key, direction)]]
            if what == "date":
                out[self._name(lf)] = pick.max()
            else:
                value = joined[values[(frame.key, column.key, rule)]]
                out[self._name(lf)] = value.max(where=joined._day == pick)
        return joined.group_by("patient_id").aggregate(**out), ["patient_id"]

    def _only_column(self, node: Any, table: str, column: str) -> bool:
        """True when ``node`` reads no column of ``table`` but ``column`` and no
        per-patient value (only it, literals, the index date / interval)."""
        if isinstance(node, Frame):
            return False
        if not isinstance(node, Series):
            return all(self._only_column(x, table, column) for x in _flatten([node]))
        if node.op in LEAF_OPS or node.op == "match":
            return False
        if node.op == "col":
            return node.args[0] == table and node.args[1] == column
        return all(self._only_column(x, table, column) for x in _flatten(node.args))

    def _lookup_source(self, leaves: list[Series]) -> tuple[ir.Table, list[str]]:
        key, table, key_col, _ = leaves[0].args
        dep = self.depends_on_interval(key)
        if key.op in ("pick", "day", "lookup") and not key.error:
            # the key is itself a source column, missing where the source has no row:
            # look up from the source's rows, not from the whole patient base
            src, keys = self._source(self._source_key(key), [key])
            if self._name(key) not in src.columns:
                self._sources.pop(self._source_key(key), None)
                src, keys = self._source(self._source_key(key), [key])
            pk = src.select(*keys, _key=src[self._name(key)])
        else:
            pt, keys = self.leaf_table(self._leaves([key]), with_interval=dep)
            pk = pt.select(*keys, _key=self.expr(key, pt))
        ref = self.table(table)
        ref = ref.select(
            _ref_key=ref[key_col], **{self._name(lf): ref[lf.args[3]] for lf in leaves}
        )
        joined = pk.left_join(ref, pk._key == ref._ref_key)
        return joined.select(*keys, *[self._name(lf) for lf in leaves]), keys

    # -- expressions ----------------------------------------------------------------------------
    def expr(self, s: Series, t: ir.Table) -> ir.Value:
        """The Ibis expression of ``s`` over ``t`` (a frame's rows or the leaf table)."""
        if s.error:
            raise QueryError(s.error)
        op, a = s.op, s.args
        if self.substitutes and s.key in self.substitutes:
            return self.substitutes[s.key](t)
        rewritten = self._rewrite(s)
        if rewritten is not None:
            return self.expr(rewritten, t).fill_null(False)
        if op in LEAF_OPS:
            col = t[self._name(s)]
            if op == "agg" and a[1] in _FILL:
                col = col.fill_null(_FILL[a[1]])
            elif op == "person_days":  # no day inside the interval
                col = col.fill_null(0)
            return col
        if op == "lit":
            return ibis.literal(a[0], type=_IBIS_TYPES[s.dtype])
        if op == "null":
            return ibis.null()
        if op in ("index_date", "interval_start"):
            if self.interval_mode:
                return t["interval_end" if op == "index_date" else "interval_start"]
            value = self.index_date if op == "index_date" else self.interval_start
            return ibis.literal(value, type="date")
        if op == "elapsed":  # clock times as recorded, each cut to whole seconds
            start, end = (self.expr(x, t).truncate("s").epoch_seconds() for x in a[:2])
            return (end - start).cast("float64") / a[2]
        if op == "clock_hour":
            return self.expr(a[0], t).hour().cast("int64")
        if op == "col":
            return t[a[1]]
        if op == "neighbour":  # put on the rows by _staged, over the rows it is of
            return t[self._name(s)]
        if op == "during":  # put on the rows by scan / _staged (_with_during)
            return t[self._name(s)]
        if op == "rowref":  # the current row's column, on every (patient, row) table
            if self.row_unit is None or a[0] != self.row_unit[0]:
                raise QueryError(
                    f"{s.desc}: the current row of a row dataset is read only in that row "
                    "dataset's own definitions"
                )
            return t[ROW_PREFIX + a[1]]
        if op == "to_date":
            return self.expr(a[0], t).date()
        if op == "match":
            return match_condition(t, *a[1:])  # (a[0], the table, is t's)
        if op in ("and", "or") and self.known:
            # a condition known to hold on every row: `known & b` is b, `known | b` is true
            rest = [arg for arg in a if arg.key not in self.known]
            if op == "or" and len(rest) < len(a):
                return ibis.literal(True)
            if op == "and" and len(rest) == 1:
                return self.expr(rest[0], t)
            if op == "and" and not rest:
                return ibis.literal(True)
        x = [self.expr(arg, t) if isinstance(arg, Series) else arg for arg in a]
        if op == "add":
            return x[0] + x[1]
        if op == "sub":
            return x[0] - x[1]
        if op == "mul":
            return x[0] * x[1]
        if op == "div":
            return x[0].cast("float64") / x[1].cast("float64").nullif(0)
        if op == "days_between":
            return x[1].delta(x[0], unit="day")
        if op == "shift":
            d = a[1]
            # Month and day steps are written in different shapes on purpose: DuckDB (1.5)
            # treats INTERVAL '1' MONTH and INTERVAL '30' DAY as equal when it removes common
            # subexpressions, so `d + 1 month` and `d + 30 days` in one query would return
            # the same value. Distinct shapes keep them apart.
            # Both return a DATE, so comparisons with date columns need no cast.
            # A date-and-time keeps its clock time (the cast is then a no-op).
            if d.unit == "months":
                moved = x[0].cast("timestamp") - ibis.interval(months=-d.n)
            else:
                moved = x[0].cast("timestamp") + ibis.interval(days=d.n)
            return moved if s.dtype == "datetime" else moved.date()
        if op in ("eq", "ne", "lt", "le", "gt", "ge"):
            lhs, rhs = x
            if a[0].dtype == "datetime" == a[1].dtype:  # to the second, as minutes_between
                lhs, rhs = lhs.truncate("s"), rhs.truncate("s")
            return {
                "eq": lambda: lhs == rhs,
                "ne": lambda: lhs != rhs,
                "lt": lambda: lhs < rhs,
                "le": lambda: lhs <= rhs,
                "gt": lambda: lhs > rhs,
                "ge": lambda: lhs >= rhs,
            }[op]()
        if op == "and":
            return x[0] & x[1]
        if op == "or":
            return x[0] | x[1]
        if op == "not":
            return ~x[0]
        if op == "isnull":
            return x[0].isnull()
        if op == "notnull":
            return x[0].notnull()
        if op == "isin":
            return x[0].isin(list(a[1]))
        if op == "coalesce":
            return ibis.coalesce(x[0], x[1])
        if op == "fill_unknown":
            return ibis.coalesce(self._text(a[0], x[0]), ibis.literal(a[1]))
        if op == "as_text":
            return self._text(a[0], x[0])
        if op == "round":
            # half away from zero by the same floating-point steps on every engine (their
            # own ROUND differ on halves: DuckDB gives 1.0 for round(1.005, 2), Spark 1.01);
            # a value whose scaled size has no fraction left in a double is already round
            v = x[0].cast("float64")
            scale = 10.0 ** int(a[1])
            scaled = v.abs() * scale
            rounded = v.sign() * (scaled + 0.5).floor().cast("float64") / scale
            return ibis.cases((scaled < 2.0**52, rounded), else_=v)
        if op == "date_part":
            return x[0].year() if a[1] == "year" else x[0].month()
        if op == "map":
            mapping, dtype = a[1], a[2]
            if not mapping:
                return ibis.null().cast(_IBIS_TYPES[dtype])
            return x[0].substitute(mapping, else_=ibis.null()).cast(_IBIS_TYPES[dtype])
        if op == "case":
            pairs, default = a
            branches = [(self.expr(c, t), self._cast(v, s.dtype, t)) for c, v in pairs]
            return ibis.cases(*branches, else_=self._cast(default, s.dtype, t))
        if op in ("greatest", "least"):
            vals = [self._cast(v, s.dtype, t) for v in a]
            return ibis.greatest(*vals) if op == "greatest" else ibis.least(*vals)
        if op == "age":
            dob, on = x
            years = on.year() - dob.year()
            before_birthday = (on.month() * 100 + on.day()) < (dob.month() * 100 + dob.day())
            return (years - before_birthday.cast("int64")).cast("int64")
        raise AssertionError(f"unknown op {op}")

    def _cast(self, s: Series, dtype: str, t: ir.Table) -> ir.Value:
        if s.op == "null":
            return ibis.null().cast(_IBIS_TYPES.get(dtype, "string"))
        e = self.expr(s, t)
        if dtype == "float" and s.dtype == "int":
            e = e.cast("float64")
        return e

    def _text(self, s: Series, e: ir.Value) -> ir.Value:
        if s.dtype == "string":
            return e
        if s.dtype == "bool":
            return ibis.cases((e, "true"), (~e, "false"), else_=ibis.null().cast("string"))
        if s.dtype == "datetime":  # YYYY-MM-DD HH:MM:SS, to the second, on every engine
            return e.truncate("s").cast("string")
        if s.dtype == "float":
            # not the engine's own text, which differs (DuckDB 1e-07, Spark 1.0E-7): one
            # layout for every engine, whole numbers without ".0" (pophealth.query.text)
            return float_text(e.cast("float64"))
        return e.cast("string")


def match_condition(
    t: ir.Table, column: str, system_col: str | None, is_list: bool, by_system: tuple
) -> ir.Value:
    """True on the rows of ``t`` whose ``column`` (a code, or a list of codes) holds one of
    the codes of ``by_system`` (``((system, codes), ...)``) in that system."""
    conds = []
    for system, codes in by_system:
        codes = sorted(codes)
        if is_list:
            cond = (
                t[column].intersect(ibis.literal(codes, type="array<string>")).length().fill_null(0)
                > 0
            )
        else:
            cond = t[column].isin(codes)
        if system_col is not None:
            cond = (t[system_col] == system) & cond
        conds.append(cond)
    out = conds[0]
    for c in conds[1:]:
        out = out | c
    return out


def _semi_joined(population: Series, leaves: Sequence[Series]) -> dict[tuple, Series]:
    """The "has a row" conditions that ``population`` requires (``&``-parts), to be
    computed as semi-joins of the patients with the rows (cheaper than counting the rows
    per patient and joining the counts back) — those over a table no other aggregate of
    the population's ``leaves`` reads (they share one pass)."""
    parts: list[Series] = []

    def walk(s: Series) -> None:
        if s.op == "and":
            walk(s.args[0])
            walk(s.args[1])
        elif s.op == "agg" and s.args[1] == "exists" and not s.args[0].error:
            parts.append(s)

    walk(population)
    readers = Counter(lf.args[0]._table for lf in leaves if lf.op == "agg")  # distinct leaves
    return {s.key: s for s in parts if readers[s.args[0]._table] == 1}


def _conjuncts(s: Series) -> set[tuple]:
    if s.op == "and":
        return _conjuncts(s.args[0]) | _conjuncts(s.args[1])
    return {s.key}


def implies(a: Series, b: Series) -> bool:
    """True when condition ``a`` can only be true where ``b`` is (judged on the shape of
    the definitions: ``b``'s conditions joined by ``&`` all appear among ``a``'s, in each
    branch of an ``|``). False when that cannot be shown."""
    if a.key == b.key:
        return True
    if a.op == "or":
        return all(implies(x, b) for x in a.args)
    return _conjuncts(b) <= _conjuncts(a)


def _facts(s: Series) -> frozenset[tuple]:
    """Keys of the conditions true wherever ``s`` is: ``s`` and, through ``&``, its parts."""
    if s.op == "and":
        return frozenset({s.key}) | _facts(s.args[0]) | _facts(s.args[1])
    return frozenset({s.key})


def _uses_start(node: Any, memo: dict[tuple, bool]) -> bool:
    key = node.key
    if key not in memo:
        if isinstance(node, Series) and node.op == "interval_start":
            memo[key] = True
        else:
            memo[key] = any(_uses_start(c, memo) for c in _flatten(_children(node)))
    return memo[key]


class PatientTable:
    """One remembered run: a materialised table (one row per patient of ``population`` on
    ``index_date``) with a column per computed per-patient value (``columns``: node key ->
    column name)."""

    def __init__(
        self,
        table: ir.Table,
        population: Series,
        index_date: dt.date,
        interval_start: dt.date,
        columns: dict[tuple, str],
        start_keys: set[tuple],
        population_uses_start: bool,
    ):
        self.table, self.population = table, population
        self.index_date, self.interval_start = index_date, interval_start
        self.columns, self.start_keys = columns, start_keys
        self.population_uses_start = population_uses_start

    def usable(self, compiler: Compiler) -> dict[tuple, str]:
        """The columns valid for ``compiler``'s dates (values that read ``interval_start``
        only when it is the same)."""
        if self.interval_start == compiler.interval_start:
            return dict(self.columns)
        return {k: c for k, c in self.columns.items() if k not in self.start_keys}


class PatientTables:
    """Per-patient values already computed on one connection, reused by later runs.

    A dataset run on a connection made by :func:`pophealth.query.connect` keeps its
    population's per-patient values (every variable's underlying aggregates, picks and
    lookups) as a cached table on that connection. A later dataset or measure on the same
    connection, with the same index date, whose population can only hold patients of that
    population (its rule is the remembered population ``&`` more conditions, or an ``|``
    of such rules — a measure's denominators), starts from that table: remembered values
    are read, not recomputed, and only new values are computed, for its own patients.
    Patients are never added, so the answer is the same as without reuse.

    At most ``limit`` runs are kept (the oldest is released first); :meth:`clear`
    releases them all."""

    def __init__(self, limit: int = 4):
        self.limit = limit
        self._entries: list[PatientTable] = []
        self._counter = itertools.count()

    def __len__(self) -> int:
        return len(self._entries)

    def find(self, compiler: Compiler, population: Series) -> PatientTable | None:
        if compiler.unit_mode:
            return None
        for entry in reversed(self._entries):
            if entry.index_date != compiler.index_date:
                continue
            if entry.interval_start != compiler.interval_start and entry.population_uses_start:
                continue
            if implies(population, entry.population):
                return entry
        return None

    def remember(
        self, compiler: Compiler, population: Series, t: ir.Table, leaves: list[Series]
    ) -> ir.Table:
        """Materialise ``t`` (the patient table with a column per leaf) and keep it; the
        compiler's names for those leaves now refer to the materialised columns."""
        memo: dict[tuple, bool] = {}
        columns: dict[tuple, str] = {}
        cols = {}
        for leaf in leaves:
            old = compiler._name(leaf)
            if old in t.columns and leaf.key not in columns:
                new = f"_r{next(self._counter)}"
                columns[leaf.key] = new
                cols[new] = t[old]
        table = t.select("patient_id", **cols).cache()
        for key, new in columns.items():
            compiler._names[key] = new
        start_keys = {leaf.key for leaf in leaves if _uses_start(leaf, memo)}
        assert compiler.index_date is not None and compiler.interval_start is not None
        self._entries.append(
            PatientTable(
                table,
                population,
                compiler.index_date,
                compiler.interval_start,
                columns,
                start_keys,
                _uses_start(population, memo),
            )
        )
        while len(self._entries) > self.limit:
            _release(self._entries.pop(0).table)
        return table

    def clear(self) -> None:
        """Release every remembered table."""
        while self._entries:
            _release(self._entries.pop().table)


def _release(table: ir.Table) -> None:
    release = getattr(table, "release", None)
    if release is not None:
        with contextlib.suppress(Exception):  # already gone (e.g. the session stopped)
            release()


def compile_patient_table(
    compiler: Compiler,
    variables: dict[str, Series],
    population: Series | None,
    *,
    cache_population: bool = False,
    remember: bool = False,
    later: Sequence[Series] = (),
) -> ir.Table:
    """One row per patient (per interval in interval mode) with the named variables, for the
    patients where ``population`` is true.

    The population is computed first; every other variable is then computed only for
    patients in it (their rows are semi-joined to the population before any window or
    aggregate), so a narrow cohort costs little however many variables it has.

    With one index date, on a connection that remembers (:class:`PatientTables`), a
    population implied by a remembered one starts from that run's table (where the
    remembered population's rule, and each of its ``&``-parts, is read as true rather than
    computed again); ``remember=True`` materialises this run's per-patient values and
    remembers them (the caller is about to execute the result), with those of ``later``
    (values a later run on the connection will read: computed in the same passes, not
    output; those reading ``interval_start`` are left to that run, whose start differs)."""
    nodes = list(variables.values())
    with_interval = compiler.unit_mode
    keys = compiler.keys(with_interval)
    extra = compiler.unit_columns
    hit = None
    if population is None:
        t, _ = compiler.leaf_table(compiler._leaves(nodes), with_interval=with_interval)
    else:
        pop_leaves = compiler._leaves([population])
        need = compiler.necessary(population)
        if compiler.reuse is not None and not with_interval:
            hit = compiler.reuse.find(compiler, population)
        if hit is not None:
            # start from a remembered run whose population holds every patient of this one
            compiler._names.update(hit.usable(compiler))
            if compiler.selective(hit.population):
                compiler.restrict = hit.table.select("patient_id")
            try:
                pt, _ = compiler.leaf_table(pop_leaves, with_interval=False, base=hit.table)
            finally:
                compiler.restrict = None
        elif need is None:
            within: list[ir.Table] = []
            semi: dict[tuple, Series] = {}
            if not with_interval:  # per-patient columns cost nothing beside the population's
                pcols = [lf for lf in compiler._leaves(nodes) if lf.op == "pcol"]
                pop_leaves = list({lf.key: lf for lf in [*pop_leaves, *pcols]}.values())
                semi = _semi_joined(population, pop_leaves)
                within = [compiler.rows(x.args[0])[0] for x in semi.values()]
            pt, _ = compiler.leaf_table(
                [lf for lf in pop_leaves if lf.key not in semi], with_interval, within=within
            )
            if semi:  # true for every patient the semi-joins kept
                pt = pt.mutate(**{compiler._name(x): ibis.literal(True) for x in semi.values()})
        else:
            # pair with the intervals only the patients who can be in the population
            nt, _ = compiler.leaf_table(compiler._leaves([need]), with_interval=False)
            candidates = nt.filter(compiler.expr(need, nt).fill_null(False)).select("patient_id")
            base = candidates.cross_join(compiler.interval_table())
            compiler.restrict, compiler.restrict_patients = base, candidates
            try:
                pt, _ = compiler.leaf_table(pop_leaves, with_interval=True, base=base)
            finally:
                compiler.restrict = compiler.restrict_patients = None
        if hit is not None:  # every row is a patient of the remembered population
            compiler.known = _facts(hit.population)
        try:
            pop = pt.filter(compiler.conditions(population, pt) or [ibis.literal(True)])
        finally:
            compiler.known = frozenset()
        if cache_population and hit is None:
            pop = pop.cache()
        keeping = remember and compiler.reuse is not None and not with_interval
        done = {leaf.key for leaf in pop_leaves}
        rest = [leaf for leaf in compiler._leaves(nodes) if leaf.key not in done]
        if keeping and later:
            seen, memo = done | {leaf.key for leaf in rest}, {}
            rest += [
                lf
                for lf in compiler._leaves(later)
                if lf.key not in seen and not _uses_start(lf, memo)
            ]
        if with_interval or compiler.selective(population):
            compiler.restrict = pop.select(*keys, *extra)
        try:
            t, _ = compiler.leaf_table(rest, with_interval=with_interval, base=pop)
        finally:
            compiler.restrict = None
        computed = [*pop_leaves, *rest]
        if hit is not None:  # nothing new to remember when every value was remembered
            computed = [lf for lf in computed if compiler._name(lf) not in hit.table.columns]
        if keeping and computed:
            t = compiler.reuse.remember(compiler, population, t, [*pop_leaves, *rest])
    facts = _facts(hit.population) if hit is not None else frozenset()
    cols = {}
    for name, s in variables.items():
        # on a remembered population's rows, the parts of its rule inside a variable are
        # read as true (a variable that is one of them keeps its column as computed)
        if s.key not in facts:
            compiler.known = facts
        try:
            cols[name] = compiler.expr(s, t)
        finally:
            compiler.known = frozenset()
    return t.select(*keys, *extra, **cols)
