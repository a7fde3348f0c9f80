"""Datasets: a population rule plus named per-patient variables → one row per patient;
and event-level extracts (worklists) — and the one entry point that runs them on an engine.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from pophealth.query.compile import (
    ROW_KEY,
    ROW_PREFIX,
    Compiler,
    PatientTables,
    compile_patient_table,
    gc_paused,
)
from pophealth.query.model import (
    DATE_COLUMNS,
    Frame,
    QueryError,
    RowRef,
    Series,
    _invalid,
    a_dtype,
    foreign_neighbour,
    row_neighbour,
    row_units,
    wrap,
)

__all__ = ["Dataset", "RowDataset", "connect", "row_table", "run_dataset", "run_events"]

_RESERVED = {"patient_id", "interval_id", "interval_start", "interval_end"}


def _row_reference(name: str, value: Any, what: str, own: int | None = None) -> None:
    """A :class:`QueryError` naming ``name`` when ``value`` reads the current row of a row
    dataset other than ``own``: one row per patient (a dataset, a measure) has no current
    row, and a row dataset has only its own."""
    units = row_units(value)
    if own is not None:
        if units - {own}:
            raise QueryError(
                f"{what} {name!r}: {_desc(value)} reads the current row of another row "
                "dataset: a row dataset's .row is read only in that row dataset's own "
                "variables (a value of each caesarean in the caesareans' row dataset)"
            )
        return
    if not units:
        return
    raise QueryError(
        f"{what} {name!r}: {_desc(value)} reads the current row of a row dataset "
        "(RowDataset(frame).row): only that row dataset has one; here each patient has one "
        "row — add the variable to the row dataset, or take the patient's first or last row "
        "(frame.first_for_patient().start_datetime)"
    )


def _desc(value: Any) -> str:
    return value.desc if isinstance(value, Series) else repr(value)


def check_variable(
    name: str, value: Any, *, what: str = "variable", row_unit: int | None = None
) -> Series:
    """``value`` as a valid per-patient series, or a :class:`QueryError` naming ``name``;
    with ``row_unit``, one that may read that row dataset's current row (and no other)."""
    if isinstance(value, Frame):
        raise QueryError(
            f"{what} {name!r}: {value!r} is many rows per patient; aggregate it to one value "
            "per patient (.exists_for_patient(), .count_for_patient(), .last_for_patient().date...)"
        )
    try:
        series = wrap(value)
    except QueryError as exc:
        raise QueryError(f"{what} {name!r}: {exc}") from None
    if series.error:
        raise QueryError(f"{what} {name!r}: {series.error}")
    if series.dtype == "null":  # None, or a case whose every value is None
        raise QueryError(
            f"{what} {name!r}: {series.desc}: missing for every patient — a helper function "
            "that does not return its value?"
        )
    if series.domain is not None:
        raise QueryError(
            f"{what} {name!r}: {series.desc} has one value per row of {series.domain}, not one "
            "per patient; aggregate it first (e.g. .maximum_for_patient(), .last_for_patient())"
        )
    _row_reference(name, series, what, row_unit)
    return series


def _check_date_text(value: Any) -> None:
    """A dataset's index date given as text must be a date, YYYY-MM-DD: refused where it is
    set (a definition file's line), not when the dataset runs."""
    if not isinstance(value, str):
        return
    try:
        if len(value) != 10:
            raise ValueError
        dt.date.fromisoformat(value)
    except ValueError:
        raise QueryError(f"index_date: {value!r} is not a date (expected YYYY-MM-DD)") from None


class Dataset:
    """A population and named per-patient variables.

    ::

        ds = Dataset()
        ds.define_population(registrations.registered_on(index_date) & has_asthma)
        ds.age = patients.age_on(index_date)
        ds.saba_12m = medications.matching(saba).in_last(months=12).count_for_patient()

    Event-level extracts for worklists: ``ds.add_event_table("bp", frame, columns=[...])``.
    """

    def __init__(self, index_date: dt.date | None = None):
        object.__setattr__(self, "_variables", {})
        object.__setattr__(self, "_population", None)
        object.__setattr__(self, "_event_tables", {})
        object.__setattr__(self, "_event_values", {})
        _check_date_text(index_date)  # here, on the definition's line, not at run time
        object.__setattr__(self, "index_date", index_date)

    def define_population(self, condition: Any) -> None:
        """Set the population rule: the patients the dataset has a row for. Once only: a
        second call would silently drop the first rule (combine them with ``&``)."""
        if self._population is not None:
            raise QueryError(
                "population rule: define_population was called twice; a dataset has one "
                "population rule — combine the conditions with & (or |) in one call"
            )
        series = self._check("population", condition, what="population rule")
        if series.dtype != "bool":
            raise QueryError(
                f"population rule: {series.desc} is {a_dtype(series.dtype)}, not True/False"
            )
        object.__setattr__(self, "_population", series)

    @property
    def population(self) -> Series | None:
        return self._population

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "index_date":
            if value is not None and not isinstance(value, dt.date | str):
                raise QueryError(
                    f"index_date: the dataset's index date is a date (or text YYYY-MM-DD), "
                    f"not {value!r}; a variable needs another name"
                )
            _check_date_text(value)
            object.__setattr__(self, name, value)
            return
        self.add(name, value)

    def add(self, name: str, value: Any) -> None:
        """Add a variable (same as ``ds.name = value``). A name must be a Python name not
        starting with ``_``; ``patient_id`` and the interval columns are the output's own,
        and the dataset's own names (``population``, ``variables``...) are refused rather
        than taken as a variable: ``ds.population = rule`` would otherwise add a column and
        leave every patient in the population."""
        if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
            raise QueryError(
                f"variable {name!r}: not a usable column name (a name of letters, digits and _, "
                "not starting with a digit or _)"
            )
        if name in _RESERVED:
            raise QueryError(f"variable {name!r}: the output has a column of that name already")
        if name == "population":
            raise QueryError(
                "variable 'population': the name of the dataset's population rule — set the "
                "rule with ds.define_population(rule), and give a variable another name "
                "(e.g. lsoa_population)"
            )
        if hasattr(type(self), name):
            raise QueryError(
                f"variable {name!r}: a name of the {type(self).__name__}'s own ({name!r}); call "
                "the variable something else"
            )
        self._variables[name] = self._check(name, value)

    def _check(self, name: str, value: Any, what: str = "variable") -> Series:
        return check_variable(name, value, what=what)

    def __getattr__(self, name: str) -> Series:
        variables = self.__dict__.get("_variables", {})
        if name in variables:
            return variables[name]
        raise AttributeError(f"the dataset has no variable {name!r}")

    @property
    def variables(self) -> dict[str, Series]:
        return dict(self._variables)

    def add_event_table(
        self,
        name: str,
        frame: Frame,
        columns: Sequence[str] | None = None,
        values: Mapping[str, Any] | None = None,
    ) -> None:
        """An event-level extract: the rows of ``frame`` (for patients in the population)
        with ``columns`` (default: every column of the table), then ``values``: named
        values worked out on each row — of the row's columns
        (``operations.minutes_between("antibiotic_datetime", "start_datetime")``) and/or
        of the patient (``cs.first_for_patient().start_datetime``)."""
        if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
            raise QueryError(
                f"event table {name!r}: not a usable name (letters, digits and _): it "
                "cannot name a file beside the dataset's"
            )
        if not isinstance(frame, Frame):
            raise QueryError(f"event table {name!r}: needs rows of a table, not {frame!r}")
        if frame.error:
            raise QueryError(f"event table {name!r}: {frame.error}")
        _row_reference(name, frame, "event table")
        from pophealth.schema import table as schema_table

        known = schema_table(frame._table).column_names
        cols = list(columns) if columns is not None else [c for c in known if c != "patient_id"]
        bad = [c for c in cols if c not in known]
        if bad:
            raise QueryError(
                f"event table {name!r}: {frame._table} has no column(s) {', '.join(bad)}"
            )
        derived = {}
        for key, value in (values or {}).items():
            if not isinstance(key, str) or not key.isidentifier() or key.startswith("_"):
                raise QueryError(f"event table {name!r}: value name {key!r} is not a usable name")
            if key in known:
                raise QueryError(
                    f"event table {name!r}: value {key!r} is named like a column of "
                    f"{frame._table}; name it otherwise"
                )
            try:
                series = wrap(value)
            except QueryError as exc:
                raise QueryError(f"event table {name!r}, value {key!r}: {exc}") from None
            if series.error is None and series.domain not in (None, frame._table):
                series._with_error(
                    f"{series.desc} is a value of the rows of {series.domain}, not of "
                    f"{frame._table}"
                )
            if series.error is None:  # a previous/next row of other rows than these
                series._with_error(foreign_neighbour(series, frame, series.desc))
            if series.error is None and series.dtype in ("null", "list"):
                series = _invalid(f"{series.desc} is not a value to write on each row")
            if series.error:
                raise QueryError(f"event table {name!r}, value {key!r}: {series.error}")
            _row_reference(key, series, f"event table {name!r}, value")
            derived[key] = series
        self._event_tables[name] = (frame, [c for c in cols if c != "patient_id"])
        self._event_values[name] = derived

    @property
    def event_tables(self) -> dict[str, tuple[Frame, list[str]]]:
        return dict(self._event_tables)

    def event_values(self, name: str) -> dict[str, Series]:
        """The values event table ``name`` works out on each row (``values=``), by name."""
        return dict(self._event_values.get(name, {}))


#: A table's own identifier of each row, written beside the row's number by default.
ROW_IDENTIFIERS = {"operations": "operation_id", "admissions": "spell_id"}


class RowDataset(Dataset):
    """One output row per row of ``frame`` — per operation, referral or attendance — with
    values worked out for each row: its own columns (``.row.start_datetime``), per-patient
    aggregates of other rows whose conditions read the current row (computed for that
    row), and patient values (the same on each of the patient's rows).

    ::

        cs = operations.matching(caesarean).in_last(months=12)
        per_op = RowDataset(cs)
        op = per_op.row                     # the current operation
        later = qr.where(qr.questionnaire == "wound").on_or_after(op.start_datetime)
        later = later.on_or_before(op.start_datetime + days(30))
        per_op.responded = later.exists_for_patient()   # for this operation
        per_op.age = patients.age_on(op.start_datetime)  # on this operation's day

    Every row of ``frame`` is kept, whatever else matches (no response: ``False``, a count
    of 0, a first row's columns missing), but for rows of a patient missing from
    ``patients``, left out as a Dataset leaves such a patient out. The output is
    ``patient_id``, ``row_number`` (the row's place among the patient's rows of ``frame``,
    from 1, in the frame's order — its date, or :meth:`Frame.sort_by` — ties broken by every
    other column, the same on every engine), ``columns`` of the row (default: the table's
    own identifier of the row, where it has one — ``operation_id``, ``spell_id`` — and its
    date), then the variables in definition order; sorted by ``patient_id`` and
    ``row_number``. ``define_population(rule)`` keeps the rows of patients for whom ``rule``
    is true (it may read the current row: registered on the operation's day)."""

    _numbers = itertools.count(1)

    def __init__(
        self,
        frame: Frame,
        columns: Sequence[str] | None = None,
        index_date: dt.date | str | None = None,
    ):
        if not isinstance(frame, Frame):
            raise QueryError(
                f"RowDataset({_desc(frame)}): needs rows of a table to make one output row "
                "each (e.g. operations.matching(caesarean)), not a value"
            )
        if frame.error:
            raise QueryError(f"RowDataset({frame._desc}): {frame.error}")
        if row_units(frame):
            raise QueryError(
                f"RowDataset({frame._desc}): its rows are chosen by the current row of another "
                "row dataset; the rows of a row dataset are chosen by the index date and "
                "per-patient values only"
            )
        from pophealth.schema import table as schema_table

        known = schema_table(frame._table).column_names
        table = frame._table
        default = [c for c in (ROW_IDENTIFIERS.get(table), DATE_COLUMNS[table]) if c]
        if isinstance(columns, str):
            columns = [columns]
        cols = [c for c in (columns if columns is not None else default) if c != "patient_id"]
        bad = [c for c in cols if c not in known]
        if bad:
            raise QueryError(
                f"RowDataset({frame._desc}): {table} has no column(s) {', '.join(map(repr, bad))}"
                f"; columns: {', '.join(known)}"
            )
        super().__init__(index_date)
        object.__setattr__(self, "_frame", frame)
        object.__setattr__(self, "_unit", next(RowDataset._numbers))
        object.__setattr__(self, "_columns", list(dict.fromkeys(cols)))

    @property
    def row(self) -> RowRef:
        """The current row: ``.row.start_datetime`` is each output row's own operation's."""
        return RowRef(self._frame, self._unit)

    @property
    def frame(self) -> Frame:
        """The rows, one output row each."""
        return self._frame

    @property
    def columns(self) -> list[str]:
        """The row's own columns written after ``row_number``."""
        return list(self._columns)

    def add(self, name: str, value: Any) -> None:
        """Add a variable (same as ``rows.name = value``), worked out for each row. Names
        of the output's own columns (``row_number`` and ``columns``) are refused."""
        if name == ROW_KEY or name in self._columns:
            raise QueryError(f"variable {name!r}: the output has a column of that name already")
        super().add(name, value)

    def _check(self, name: str, value: Any, what: str = "variable") -> Series:
        table = self._frame._table
        if isinstance(value, Frame):
            raise QueryError(
                f"{what} {name!r}: {value!r} is many rows per patient; aggregate it to one "
                "value per row (.exists_for_patient(), .count_for_patient(), "
                ".first_for_patient().date...): an aggregate whose conditions read the "
                "current row (the row dataset's .row) is worked out for each row"
            )
        if isinstance(value, Series) and value.error is None and value.domain is not None:
            if value.domain == table:
                raise QueryError(
                    f"{what} {name!r}: {value.desc} is a value of each row of {table}, any of "
                    f"the patient's, not of the current one: the current row's columns are "
                    "read through the row dataset's .row (per_op = RowDataset(frame); "
                    "per_op.row.urgency)"
                )
            raise QueryError(
                f"{what} {name!r}: {value.desc} has one value per row of {value.domain}, not "
                f"one per row of {table}: to be compared with the current row, the rows "
                f"of {value.domain} need a per-patient aggregate, worked out for each row — "
                f"{value.domain}.where(...).exists_for_patient(), .first_for_patient()..."
            )
        series = check_variable(name, value, what=what, row_unit=self._unit)
        found = row_neighbour(series)
        if found is not None:
            raise QueryError(
                f"{what} {name!r}: {found.desc} is taken over rows chosen by the current row "
                f"({table}.row...), which differ from row to row: take the previous or next "
                "row over rows that do not read it, and compare with the row after "
                "(rows.where(rows.days_since_previous() <= 30).on_or_after(op.start_datetime))"
            )
        return series

    def add_event_table(self, name: str, *args: Any, **kwargs: Any) -> None:
        raise QueryError(
            f"event table {name!r}: a row dataset writes one table, its rows; add event "
            "tables to a Dataset (one row per patient)"
        )


class StoreBackend:
    """An Ibis backend over a store that registers each canonical table on first use (a
    query touching three tables does not pay for reading eleven; it matters on Spark).

    With ``reuse`` (the default), ``patient_tables`` remembers the per-patient values of
    datasets run on this connection, so a later dataset or measure on it with the same
    index date and a population within the dataset's does not compute them again (see
    :class:`~pophealth.query.compile.PatientTables`); :meth:`forget` releases them."""

    def __init__(self, store: Any, engine: str, *, reuse: bool = True):
        from pophealth.engines import backend

        self.store, self.engine = store, engine
        self.con = backend(engine)
        self._tables: dict[str, Any] = {}
        self.patient_tables = PatientTables() if reuse else None

    def forget(self) -> None:
        """Release the remembered per-patient tables."""
        if self.patient_tables is not None:
            self.patient_tables.clear()

    def table(self, name: str) -> Any:
        if name not in self._tables:  # registered, and its schema read, once per connection
            self.con.read_parquet(str(self.store.table_path(name)), table_name=name)
            self._tables[name] = self.con.table(name)
        return self._tables[name]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.con, name)


def connect(source: Any, engine: str = "duckdb", *, reuse: bool = True) -> Any:
    """An Ibis backend for ``source``: a store path, a :class:`~pophealth.store.Store` (tables
    registered on first use), or a backend already holding the canonical tables (as is).

    Several runs on one connection made here share work: ``con = connect(store)``, then
    ``run_dataset(con, ...)`` followed by ``run_measures(con, ...)`` (same index date,
    every denominator within the dataset's population) reads the dataset's per-patient
    values instead of computing them again. ``reuse=False`` turns that off."""
    from pophealth.engines import ENGINES
    from pophealth.store import Store

    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose one of: {', '.join(ENGINES)}")
    if isinstance(source, str | os.PathLike | Path):
        return StoreBackend(Store.open(source), engine, reuse=reuse)
    if isinstance(source, Store):
        return StoreBackend(source, engine, reuse=reuse)
    if hasattr(source, "table"):
        return source
    raise TypeError(f"cannot query {source!r}: give a store path, a Store or an Ibis backend")


def resolve_index_date(dataset: Dataset, index_date: dt.date | str | None) -> dt.date:
    """``index_date`` if given, else the dataset's own, as a date (a QueryError if neither)."""
    value = index_date if index_date is not None else dataset.index_date
    if value is None:
        raise QueryError("no index date: pass index_date=... (or Dataset(index_date=...))")
    if isinstance(value, str):
        try:
            value = dt.date.fromisoformat(value)
        except ValueError:
            raise QueryError(f"index date {value!r} is not a date (expected YYYY-MM-DD)") from None
    if isinstance(value, dt.datetime):
        value = value.date()
    if not isinstance(value, dt.date):
        raise QueryError(f"index date {value!r} is not a date (expected YYYY-MM-DD)")
    return value


def _output(expr: Any, output: str, sort: Sequence[str], hidden: Sequence[str] = ()) -> Any:
    """``expr`` sorted by ``sort`` and executed as ``output``; ``hidden`` columns (there only
    to sort by) are dropped from the result."""
    if output == "ibis":
        return expr.drop(*hidden) if hidden else expr
    expr = expr.order_by(*sort)
    if output == "arrow":
        table = portable_arrow(expr.to_pyarrow())
        return table.drop_columns(list(hidden)) if hidden else table
    if output == "pandas":
        frame = to_pandas(expr)
        return frame.drop(columns=list(hidden)) if hidden else frame
    raise ValueError("output must be 'pandas', 'arrow' or 'ibis'")


def portable_arrow(table: Any) -> Any:
    """An engine's Arrow result in the one form every engine gives, so that both write the
    same file. Each NaN in a column of numbers is a missing value: Spark's results reach
    Arrow through pandas, where NaN and missing are one, while DuckDB's keep NaN apart (a
    mean over a NaN reading, ``inf - inf``) — missing on both, an empty CSV field and a
    Parquet null. A list column's items are named ``item``, Arrow's default (DuckDB names
    them ``l``, so a Parquet schema would differ by that name alone)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for i, field in enumerate(table.schema):
        col = table.column(i)
        if pa.types.is_floating(field.type) and pc.any(pc.is_nan(col)).as_py():
            col = pc.if_else(pc.is_nan(col), pa.scalar(None, field.type), col)
        elif pa.types.is_list(field.type) and field.type.value_field.name != "item":
            col = col.cast(pa.list_(field.type.value_type))
        else:
            continue
        table = table.set_column(i, field.with_type(col.type), col)
    return table


def to_pandas(expr: Any) -> pd.DataFrame:
    """``expr.to_pandas()``, the same frame, faster on DuckDB: Ibis turns every column with
    a missing value into a Python list before converting it (at 1 M patients, a second for
    two columns of readings); numbers, text, True/False and dates convert from Arrow
    directly, to the same values and types. Other engines, and other column types
    (timestamps, lists), go Ibis's way."""
    backend = expr._find_backend()
    if backend.name != "duckdb":
        return expr.to_pandas()
    import pyarrow.types as pat
    from ibis.backends.duckdb.converter import DuckDBPandasData

    table = backend._to_duckdb_relation(expr).to_arrow_table()

    def column(col: Any) -> Any:
        kind = col.type
        typed = pat.is_integer(kind) or pat.is_boolean(kind) or pat.is_date32(kind)
        # (a column of nothing but gaps takes Ibis's type for it: object)
        direct = (
            pat.is_floating(kind) or pat.is_string(kind) or (typed and len(col) > col.null_count)
        )
        if pat.is_nested(kind) or pat.is_dictionary(kind) or (col.null_count and not direct):
            return col.to_pylist()
        return col.to_pandas()

    df = pd.DataFrame({n: column(table[n]) for n in table.column_names})
    df = DuckDBPandasData.convert_table(df, expr.as_table().schema())
    return expr.__pandas_result__(df)


@gc_paused
def run_dataset(
    source: Any,
    dataset: Dataset,
    *,
    engine: str = "duckdb",
    index_date: dt.date | str | None = None,
    output: str = "pandas",
    measures: Any = None,
) -> pd.DataFrame | Any:
    """Run ``dataset`` on ``source`` (store path, Store or Ibis backend) with ``engine``
    (``duckdb`` or ``spark``): one row per patient in the population, ``patient_id`` then the
    variables in definition order, sorted by ``patient_id``. ``output``: ``pandas``
    (default), ``arrow`` or ``ibis`` (the unexecuted expression).

    On a connection from :func:`connect` (passed in, so it outlives this call) the
    population's per-patient values are remembered for later runs on it (not with
    ``output="ibis"``). ``measures`` (a :class:`~pophealth.query.Measures` to be run next
    on the same connection) has the values its measures need computed in this run's
    passes and remembered too, so ``run_measures(con, measures)`` only counts — for the
    measures over one interval ending on the index date whose denominators lie within the
    population; the answer is the same either way."""
    if isinstance(dataset, RowDataset):
        if measures is not None:
            raise QueryError(
                "measures=...: values are shared with measures only from a Dataset (one "
                "row per patient), not a row dataset"
            )
        return _run_rows(source, dataset, engine, index_date, output)
    con = connect(source, engine)
    compiler = Compiler(con, index_date=resolve_index_date(dataset, index_date))
    remember = con is source and output != "ibis"
    later = []
    if measures is not None:
        from pophealth.query.measures import Measures, shared_values

        if not isinstance(measures, Measures):
            raise TypeError(f"measures=...: needs a Measures object, not {type(measures).__name__}")
        if not remember:
            raise QueryError(
                "measures=...: values are kept for a later run on the same connection; pass "
                "a connection from connect(store) (and an output other than 'ibis')"
            )
        if dataset.population is not None:
            later = shared_values(measures, compiler.index_date, dataset.population)
    expr = compile_patient_table(
        compiler, dataset.variables, dataset.population, remember=remember, later=later
    )
    return _output(expr, output, ["patient_id"])


def _run_rows(
    source: Any,
    dataset: RowDataset,
    engine: str,
    index_date: dt.date | str | None,
    output: str,
) -> pd.DataFrame | Any:
    """A row dataset on ``source``: the frame's rows numbered per patient, each paired with
    the rows of other frames whose conditions read it (a join on the patient, filtered by
    those conditions, grouped by patient and row number), patient values joined on."""
    con = connect(source, engine)
    expr, _ = row_table(con, dataset, dataset.variables, resolve_index_date(dataset, index_date))
    out = expr.select(
        "patient_id",
        ROW_KEY,
        *(expr[ROW_PREFIX + c].name(c) for c in dataset.columns),
        *dataset.variables,
    )
    return _output(out, output, ["patient_id", ROW_KEY])


def row_table(
    con: Any, dataset: RowDataset, variables: Mapping[str, Series], index_date: dt.date
) -> tuple[Any, Compiler]:
    """The rows of ``dataset`` (its frame's rows of the patients in its population) as an
    unexecuted Ibis table on ``con``, with ``variables`` (values per row, as the dataset's
    own are: checked by it) worked out for each row: ``patient_id``, ``row_number``, every
    column of the row as :data:`ROW_PREFIX` + its name, then the variables; and the compiler
    it was built with, to :meth:`~Compiler.close` once the result is read."""
    compiler = Compiler(con, index_date=index_date, rows=(dataset._unit, dataset.frame))
    return compile_patient_table(compiler, dict(variables), dataset.population), compiler


def run_events(
    source: Any,
    dataset: Dataset,
    name: str,
    *,
    engine: str = "duckdb",
    index_date: dt.date | str | None = None,
    output: str = "pandas",
) -> pd.DataFrame | Any:
    """Run the event table ``name`` of ``dataset``: its rows for patients in the population,
    sorted by patient and date, then by the columns written (one order on every engine)."""
    if name not in dataset.event_tables:
        raise QueryError(
            f"no event table {name!r}; the dataset has: {', '.join(dataset.event_tables) or 'none'}"
        )
    frame, cols = dataset.event_tables[name]
    values = dataset.event_values(name)
    con = connect(source, engine)
    compiler = Compiler(con, index_date=resolve_index_date(dataset, index_date))
    if values:  # the rows with the per-patient values the derived ones read joined on
        static, dynamic = compiler._split(frame._filters)
        extra = (*frame._order, *values.values())
        rows = compiler._staged(frame._table, static, dynamic, extra=extra)
        rows = rows.mutate(**{k: compiler.expr(v, rows) for k, v in values.items()})
    else:
        rows, _ = compiler.rows(frame)
    if dataset.population is not None:
        pop = compile_patient_table(compiler, {}, dataset.population).select("patient_id")
        rows = rows.inner_join(pop, "patient_id")
    out, sort, hidden = _event_order(rows, frame._table, [*cols, *values])
    return _output(out, output, sort, hidden)


def _event_order(rows: Any, table: str, cols: list[str]) -> tuple[Any, list[str], list[str]]:
    """The event table's columns, its sort keys and the hidden columns to drop after sorting.

    Rows are in patient and date order (the date sorts even when it is not a column of the
    extract: it is kept hidden to sort by, then dropped), then by the code and value, then
    by every other column written, in order: rows that tie on patient and date (several
    answers of one questionnaire at one time) come out in one order on every engine and
    every run, never the order a join or a shuffle left them in. Rows equal in every
    column written cannot be told apart, so their order does not matter."""
    from pophealth.query.model import DATE_COLUMNS

    date_col = DATE_COLUMNS[table]
    hidden = [] if date_col in cols else ["_order_" + date_col]
    out = rows.select("patient_id", *cols, **{h: rows[date_col] for h in hidden})
    first = [c for c in ("code", "value") if c in cols and c != date_col]
    rest = [c for c in cols if c not in first and c != date_col]
    sort = ["patient_id", date_col if not hidden else hidden[0], *first, *rest]
    return out, sort, hidden
