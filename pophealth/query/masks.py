"""Interval masks: True/False measures over up to 62 intervals as bit masks per patient.

Change-point evaluation (:mod:`pophealth.query.timeline`) evaluates every measure at each
patient's change points and sums the differences. When every numerator and denominator is
True/False and there are at most :data:`MAX_INTERVALS` intervals, the same runs can be
counted without any change point: bit ``k`` of a 64-bit whole number stands for interval
``k``, and every condition becomes, per patient, the mask of the intervals where it is
true (``T``) and the mask where it is false (``F``; neither bit where it is missing, so
SQL's three-valued logic carries over: ``a & b`` is ``(Ta & Tb, Fa | Fb)``, ``a | b`` is
``(Ta | Tb, Fa & Fb)``, ``~a`` is ``(Fa, Ta)``).

Where the masks come from (one aggregate per patient, no sort):

* a condition that does not depend on the interval: every bit or none;
* a patient-level comparison with the index date that flips once (registered from, alive
  until, age 18 from the 18th birthday — :meth:`Timeline._flip_columns`): the bits from
  or until the flip;
* a condition on the values of one runs table (``latest SBP < 140``, ``SABA issues >=
  6``): the runs where it holds, ``OR``-ed per patient — plus, for the intervals no run
  covers, the condition's outcome on a missing value (``count`` is then 0, "exists"
  false), found once per table from a one-row query. A "last day" value read only so
  needs no runs: the patient's days grouped by the first interval whose window holds
  them, the condition on each group's last day holds from that interval on, up to the
  next group's — carried forward by one addition (:func:`_latest`);
* "has a row in the window" used as a condition (a statin in the last 12 months, an
  asthma review): straight from the rows, each row setting the bits of the intervals
  whose window holds it — no runs at all;
* a breakdown by an interval-dependent value (the IMD quintile of the address on the
  date): the patient's intervals are split by the value, one row per value with its mask;
  a breakdown that picks a text label by conditions masks can evaluate (``case``) the
  same way, each label taking the intervals where its condition holds and no earlier one
  did; and one on an age alone (the age band on the date) by the birthdays the intervals
  pass, the age being one number between them.

Each measure's numerator and denominator per interval and group are then the patients
with bit ``k`` set in ``num & den & group`` and ``den & group``: one aggregate query for
every measure sharing a breakdown gives each distinct combination of masks and its number
of patients, and the bits are counted from those in numpy (:func:`_bit_counts`).
Anything else (a numeric numerator, an age used as a number, two runs tables compared
with each other, more intervals) raises :class:`Unsupported`, and the caller uses change
points.
"""

from __future__ import annotations

from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
import pyarrow as pa

from pophealth.query.compile import LEAF_OPS
from pophealth.query.model import Series
from pophealth.query.timeline import (
    _MIRROR,
    Timeline,
    Unsupported,
    _predicate_leaf,
    _series_in,
    _zero,
    interval_bits,
)
from pophealth.query.timeline import bit_or as _bit_or

#: Bits of a signed 64-bit whole number used (bit 63 is the sign; one spare).
MAX_INTERVALS = 62


def breakdowns(group: list[Any], names: dict[str, dict[str, str]]) -> dict[tuple, list[Any]]:
    """The measures by breakdown: ``((group name, column), ...)`` -> measures (measures with
    the same breakdown name the same columns, so one aggregate query serves them)."""
    out: dict[tuple, list[Any]] = {}
    for m in group:
        out.setdefault(tuple((g, names[m.name][g]) for g in m.group_by), []).append(m)
    return out


def _without(a: ir.Value, b: ir.Value) -> ir.Value:
    """The bits of ``a`` not in ``b`` (non-negative masks), as ``a - (a & b)``: Ibis writes
    ``~(x & y)`` into SQL without the brackets, as ``~x & y``."""
    return a - (a & b)


class _Missing:
    """A row of a runs table with every value missing, for
    :meth:`~pophealth.query.compile.Compiler.expr`: each column a typed null."""

    def __init__(self, r: ir.Table):
        self._types = {x: r[x].type() for x in r.columns}

    def __getitem__(self, name: str) -> ir.Value:
        return ibis.null().cast(self._types[name])

    @property
    def columns(self) -> list[str]:
        return list(self._types)


def _differs(a: ir.Value, b: ir.Value) -> ir.Value:
    """``a`` and ``b`` not the same, a missing value the same as another (never missing)."""
    na, nb = a.isnull(), b.isnull()
    return ibis.cases((na & nb, False), (na | nb, True), else_=a != b)


def _case_labels(s: Series) -> tuple[list[tuple[Series, str | None]], str | None] | None:
    """``s`` as a case picking a text label by conditions — ``(condition, label)`` pairs
    and the label where none holds (``fill_unknown``'s label when it wraps the case) — or
    None when it is not one."""
    unknown = None
    if s.op == "fill_unknown":
        s, unknown = s.args
    if s.op != "case" or s.dtype != "string":
        return None

    def label(v: Any) -> tuple[bool, str | None]:
        if v is None or (isinstance(v, Series) and v.op == "null"):
            return True, unknown
        if isinstance(v, Series) and v.op == "lit" and isinstance(v.args[0], str):
            return True, v.args[0]
        return False, None

    pairs, default = s.args
    out = []
    for cond, value in pairs:
        ok, text = label(value)
        if not ok:
            return None
        out.append((cond, text))
    ok, otherwise = label(default)
    return (out, otherwise) if ok else None


def _spans(r: ir.Table) -> ir.Value:
    """The intervals of each run of ``r``: its mask, from ``_kf``/``_kt`` or ``_b``."""
    return r._b if "_b" in r.columns else interval_bits(r._kf, r._kt)


class MaskPlan:
    """Which masks a set of measures needs (built from the measures alone, no query), and
    how to count them (:meth:`run`)."""

    def __init__(
        self,
        timeline: Timeline,
        variables: dict[str, Series],
        group: list[Any],
        names: dict[str, dict[str, str]],
    ):
        self.tl = timeline
        self.c = timeline.c
        self.n = timeline.n
        if self.n > MAX_INTERVALS:
            raise Unsupported(f"{self.n} intervals: more than {MAX_INTERVALS}")
        for m in group:
            if m.numerator.dtype != "bool" or m.denominator.dtype != "bool":
                raise Unsupported(f"measure {m.name!r}: not a True/False numerator/denominator")
        self.all = (1 << self.n) - 1
        self.variables = variables
        self.group = group
        self.names = names
        self.requests: dict[tuple, dict[tuple, Series]] = {}  # run key -> conditions
        self.bare: dict[tuple, Series] = {}  # exists/count leaves read only as "count >= c"
        self.at_least: dict[tuple, set[int]] = {}  # such a leaf -> the c's read
        self.tests: dict[tuple, tuple[Series, str, int]] = {}  # condition -> (leaf, op, c)
        self.conditions: dict[tuple, list[Series]] = {}  # leaf -> the conditions reading it
        self.inside: set[tuple] = set()  # leaves read inside a runs condition or a group
        self.group_keys: dict[str, tuple | None] = {}  # group column -> run key (None: static)
        #: group columns that are a case over conditions: (condition, label) pairs, the
        #: label where none holds
        self.case_groups: dict[str, tuple[list[tuple[Series, str | None]], str | None]] = {}
        #: case breakdowns on one age alone: (the age, its birthdays' flip, the years)
        self.age_groups: dict[str, tuple[Series, int, list[int]]] = {}
        self.atoms: dict[tuple, str] = {}  # flips and patient-level conditions -> columns
        self._one: ir.Table | None = None  # a one-row table, made when first needed
        for m in group:
            cols = names[m.name]
            self._plan_bool(variables[cols["num"]])
            self._plan_bool(variables[cols["den"]])
            for g in m.group_by:
                self._plan_group(cols[g])
        direct = set()
        for key, leaf in self.bare.items():
            skey = self.tl._run_key(leaf)
            same = [x for x in self.tl._dyn.values() if self.tl._run_key(x) == skey]
            if all(x.key in self.bare and x.key not in self.inside for x in same):
                direct.add(key)
        for key, leaf in self.bare.items():
            if key not in direct:  # read from its runs like any other condition
                for cond in self.conditions[key]:
                    self.requests.setdefault(self.tl._run_key(leaf), {})[cond.key] = cond
                    del self.tests[cond.key]
        self.direct = direct
        self.tl.direct = direct
        # "last day" runs read only through conditions: left as days, carried forward here
        grouped = {k for k in self.group_keys.values() if k is not None}
        keys = {self.tl._run_key(x.args[0]) for x in self.tl._dyn.values() if x.op == "lookup"}
        self.tl.day_keys = {
            skey
            for skey in self.requests
            if skey[0] == "day" and skey[2] == "last" and skey not in grouped | keys
        }
        #: conditions true on a day when true on every row of it with a value
        self.forall: set[tuple] = set()
        self.tl.row_day_keys = {skey for skey in self.tl.day_keys if self._rows_decide(skey)}
        self.tl.bit_runs = True
        if self.age_groups:  # the age bands' thresholds need no flips of their own
            nodes = [variables[c[k]] for c in names.values() for k in ("num", "den")]
            nodes += [cond for labels, _ in self.case_groups.values() for cond, _ in labels]
            needed = {i for _, i, _ in self.age_groups.values()}
            self.tl.needed_flips = needed | self._flips_read(nodes)

    def _rows_decide(self, skey: tuple) -> bool:
        """True when every condition on the "last day" leaves of ``skey`` is decided by the
        day's rows without combining them first: a condition on the date alone (shared by
        the day's rows), or the day's lowest (highest) value compared with a literal,
        missing or not. "The lowest is below 140" holds when some reading is below 140
        (``exists``); "the lowest is 140 or more" when every reading with a value is
        (``forall``, recorded in :attr:`forall`). The days are then the rows themselves
        (:attr:`pophealth.query.timeline.Timeline.row_day_keys`): no grouping by day."""
        rule = skey[4]
        forall = set()
        for key, cond in self.requests[skey].items():
            kind = self._row_kind(cond, rule)
            if kind is None:
                return False
            if kind == "forall":
                forall.add(key)
        self.forall |= forall
        return True

    def _row_kind(self, s: Series, rule: str) -> str | None:
        """``exists``, ``forall`` or None (see :meth:`_rows_decide`)."""
        while (rewritten := self.c._rewrite(s)) is not None:
            s = rewritten
        leaves = self.c._leaves([s])
        if all(x.op == "day" and x.args[4] == "date" for x in leaves):
            return "exists"
        leaf = _predicate_leaf(s)
        if leaf is None or leaf.op != "day" or rule not in ("min", "max"):
            return None
        op = s.op
        if op in ("lt", "le", "gt", "ge") and s.args[0].op == "lit":
            op = _MIRROR[op]  # 140 > x: x < 140
        below = {"lt", "le"}
        if op == "notnull":
            return "exists"
        if op == "isnull":
            return "forall"
        if op in below | {"gt", "ge"}:
            return "exists" if (op in below) == (rule == "min") else "forall"
        return None  # equal to, one of: neither

    def _flips_read(self, nodes: list[Series]) -> set[int]:
        """The flips the masks of ``nodes`` read."""
        out: set[int] = set()

        def walk(x: Series) -> None:
            if not self._dep(x):
                return
            rewritten = self.c._rewrite(x)
            if rewritten is not None:
                walk(rewritten)
            elif x.key in self.tl._flip_nodes:
                out.add(self.tl._flip_nodes[x.key][0])
            elif x.op in ("and", "or", "not"):
                for a in x.args:
                    walk(a)

        for node in nodes:
            walk(node)
        return out

    # -- planning ------------------------------------------------------------------------
    def _dep(self, s: Series) -> bool:
        return self.tl.dep(s)

    def _plan_bool(self, s: Series) -> None:
        if not self._dep(s):
            return
        rewritten = self.c._rewrite(s)
        if rewritten is not None:
            self._plan_bool(rewritten)
            return
        if s.key in self.tl._flip_nodes:
            return
        if s.op in ("and", "or", "not"):
            for a in s.args:
                self._plan_bool(a)
            return
        test = self._at_least_test(s)
        if test is not None:
            leaf, op, c = test
            self.bare[leaf.key] = leaf
            self.at_least.setdefault(leaf.key, set()).update(
                {c, c + 1} if op in ("eq", "ne") else {c}
            )
            if s.key not in self.tests:  # (a breakdown shared by measures is planned twice)
                self.conditions.setdefault(leaf.key, []).append(s)
            self.tests[s.key] = test
            return
        skey = self._one_runs_table(s)
        if skey is None:
            raise Unsupported(f"{s.desc}: not a condition on one runs table")
        self.requests.setdefault(skey, {})[s.key] = s

    def _at_least_test(self, s: Series) -> tuple[Series, str, int] | None:
        """``(leaf, op, c)`` when ``s`` is "has a row in the window" (``>= 1``) or a count of
        rows in a window on the date alone compared with a whole number ``c`` (``op``:
        ``ge`` for ``count >= c`` ... ``eq``, ``ne``); else None."""
        sweep = self.tl._run_key
        if s.op == "agg" and s.args[1] == "exists" and sweep(s)[0] == "sweep":
            return s, "ge", 1
        if s.op not in ("ge", "gt", "le", "lt", "eq", "ne"):
            return None
        a, b = s.args
        op = s.op
        if a.op == "lit":
            a, b, op = b, a, _MIRROR.get(op, op)
        if a.op != "agg" or a.args[1] != "count" or b.op != "lit" or not self._dep(a):
            return None
        c = b.args[0]
        if isinstance(c, bool) or not isinstance(c, int) or sweep(a)[0] != "sweep":
            return None
        if self.c._rewrite(a) is not None or not self.tl.on_the_date(a.args[0]):
            return None
        # count > c is count >= c + 1, count <= c is not count >= c + 1
        if op in ("gt", "le"):
            c += 1
        return a, op, c

    def _plan_group(self, col: str) -> None:
        s = self.variables[col]
        if not self._dep(s):
            self.group_keys[col] = None
            return
        skey = self._one_runs_table(s)
        if skey is not None:
            self.group_keys[col] = skey
            return
        labels = _case_labels(s)
        if labels is None:
            raise Unsupported(f"{s.desc}: a breakdown not by one runs table's value")
        age = self._only_age(labels)
        if age is not None:  # the age band: by the birthdays, not by each threshold
            self.group_keys[col] = ("age",)
            self.age_groups[col] = (age, *self.tl.age_flip(age))
            return
        for cond, _ in labels[0]:
            self._plan_bool(cond)  # Unsupported when masks cannot evaluate it
        self.group_keys[col] = ("case",)
        self.case_groups[col] = labels

    def _only_age(self, labels: tuple[list[tuple[Series, str | None]], str | None]) -> Any:
        """The one age (on a shifted index date, of a date of birth that does not depend
        on the interval) every condition of a case breakdown compares with whole numbers,
        combined by ``&``, ``|`` and ``~``; else None."""
        ages: dict[tuple, Series] = {}

        def walk(x: Series) -> bool:
            if x.op in ("and", "or", "not"):
                return all(walk(a) for a in x.args)
            if x.op not in ("ge", "gt", "le", "lt", "eq", "ne"):
                return False
            a, b = x.args
            if b.op == "age":
                a, b = b, a
            if a.op != "age" or b.op != "lit" or type(b.args[0]) is not int:
                return False
            dob, on = a.args
            if self.tl.pure(on) is None or self._dep(dob):
                return False
            ages[a.key] = a
            return True

        if not all(walk(cond) for cond, _ in labels[0]) or len(ages) != 1:
            return None
        return next(iter(ages.values()))

    def _one_runs_table(self, s: Series) -> tuple | None:
        """The run key of the one runs table whose leaves ``s`` reads (and nothing else
        that depends on the patient or the interval), else None."""
        keys: set[tuple] = set()

        def walk(x: Series) -> bool:
            rewritten = self.c._rewrite(x)
            if rewritten is not None:
                return walk(rewritten)
            if x.op in LEAF_OPS:
                if not self._dep(x):
                    return False  # a patient-level value: not in the runs table
                keys.add(self.tl._run_key(x))
                self.inside.add(x.key)
                return True
            if x.op in ("index_date", "interval_start"):
                return False
            return all(walk(a) for a in _series_in(list(x.args)))

        if not walk(s) or len(keys) != 1:
            return None
        return keys.pop()

    # -- building ------------------------------------------------------------------------
    def run(self, keep: Series) -> list[pd.DataFrame]:
        tl = self.tl
        pt = self.pt = tl.prepare(keep)
        try:
            self.cols: dict[tuple, str] = {}  # condition key -> its columns in w
            # every mask table, joined to the candidates in one chain, then one projection
            # fills what a patient without rows lacks
            tables = self._direct_masks()
            tables += [
                self._runs_masks(i, skey, conds)
                for i, (skey, conds) in enumerate(self.requests.items())
            ]
            j = pt
            for i, (m, _) in enumerate(tables):
                m = m.rename(**{f"_mp{i}": "patient_id"})
                j = j.left_join(m, j.patient_id == m[f"_mp{i}"])
            cols = {}
            for _, fills in tables:
                for col, fill in fills.items():
                    cols[col] = fill(j)
            w = j.select(*pt.columns, **cols)
            return self._count(w)
        finally:
            tl.finish()

    def _runs(self, skey: tuple) -> ir.Table:
        leaf = next(x for x in self.tl._dyn.values() if self.tl._run_key(x) == skey)
        _, t = self.tl.runs(leaf)
        return t

    def _direct_masks(self) -> list[tuple[ir.Table, dict[str, Any]]]:
        """Masks of "has a row in the window" straight from the rows: each row sets bits
        ``lo .. hi - 1``; frames of one table with the same window in one pass."""
        by: dict[tuple, list[Series]] = {}
        for key in self.direct:
            leaf = self.bare[key]
            frame = leaf.args[0]
            static, dynamic = self.c._split(frame._filters)
            sig = (frame._table, tuple(f.key for f in dynamic))
            if self.c._leaves(static):
                sig = (*sig, frame.key)  # filters reading patient values: a pass of its own
            # "at least c > 1 rows" sorts its rows (a window); "has a row" needs no order:
            # each in a pass of its own, so the sort sees only the rows that need it
            sig = (*sig, any(c > 1 for c in self.at_least[key]))
            by.setdefault(sig, []).append(leaf)
        out = []
        for j, leaves in enumerate(by.values()):
            frames: dict[tuple, Any] = {}
            for leaf in leaves:
                frames.setdefault(leaf.args[0].key, leaf.args[0])
            keys = list(frames)
            rows, tags = self.tl.frame_rows(list(frames.values()))
            # "at least c rows in the window": with the rows in window order (lo and hi
            # both rising) the rows inside at k are consecutive, so c of them are inside
            # exactly when some row and the (c-1)-th after it both are: bits from the
            # later one's lo to the earlier one's hi (c = 1: "has a row")
            order = ibis.window(group_by=["patient_id", "_tag"], order_by=["_lo", "_hi"])
            needed = sorted({c for leaf in leaves for c in self.at_least[leaf.key] if c > 1})
            rows = rows.mutate(**{f"_lo{c}": rows._lo.lead(c - 1).over(order) for c in needed})
            aggs = {}
            for leaf in leaves:
                i = tags[keys.index(leaf.args[0].key)]
                for c in sorted(self.at_least[leaf.key]):
                    if c <= 0:
                        continue
                    lo = rows._lo if c == 1 else rows[f"_lo{c}"]
                    bits = interval_bits(lo, rows._hi)
                    col = f"_md{j}_{i}_{c}"
                    aggs[col] = _bit_or(ibis.cases((rows._tag == i, bits), else_=_zero()))
                    self.cols[(leaf.key, c)] = col
            masks = rows.group_by("patient_id").aggregate(**aggs)
            out.append((masks, {col: lambda t, col=col: t[col].fill_null(0) for col in aggs}))
        return out

    def _on_missing(self, r: ir.Table, exprs: dict[str, Series]) -> dict[str, Any]:
        """The value of each of ``exprs`` on a row of ``r`` whose values are all missing
        (an interval no run covers), from one query over a one-row table."""
        if self._one is None:
            self._one = self.c.literal_table({"_x": pa.array([0], pa.int64())})
        missing = _Missing(r)
        row = self._one.select(**{k: self.c.expr(s, missing) for k, s in exprs.items()})
        values = row.to_pandas().iloc[0].to_dict()
        return {k: None if pd.isna(v) else v for k, v in values.items()}

    def _runs_masks(
        self, i: int, skey: tuple, conds: dict[tuple, Series]
    ) -> tuple[ir.Table, dict[str, Any]]:
        """Per patient, for each condition on runs table ``skey``: the bits of the runs
        where it is true and where false; the intervals no run covers take the outcome on
        a missing value, found once (:meth:`_null_row`)."""
        r = self._runs(skey)
        for j, key in enumerate(conds):
            self.cols[key] = f"{i}_{j}"
        missing = self._on_missing(r, {f"_o{j}": s for j, s in enumerate(conds.values())})
        full = ibis.literal(self.all, type="int64")
        if "_lo" in r.columns:  # the days of a "last day" leaf
            masks = self._latest_day_masks(i, r, conds)
            outcome = {
                f"_m{c}{i}_{j}": _latest(c, i, j, full) for j in range(len(conds)) for c in "tf"
            }
        else:
            bits = _spans(r)
            aggs = {f"_mc{i}": _bit_or(bits)}
            for j, s in enumerate(conds.values()):
                v = self.c.expr(s, r)
                aggs[f"_mt{i}_{j}"] = _bit_or(ibis.cases((v, bits), else_=_zero()))
                aggs[f"_mf{i}_{j}"] = _bit_or(ibis.cases((~v, bits), else_=_zero()))
            masks = r.group_by("patient_id").aggregate(**aggs)
            outcome = {}

        def fill(col: str, o: bool | None):
            def f(t: ir.Table) -> ir.Value:
                value = outcome[col](t) if col in outcome else t[col].fill_null(0)
                if o is None:
                    return value
                return value | _without(full, t[f"_mc{i}"].fill_null(0))

            return f

        fills = {}
        for j in range(len(conds)):
            o = missing[f"_o{j}"]
            o = None if o is None else bool(o)
            fills[f"_mt{i}_{j}"] = fill(f"_mt{i}_{j}", True if o is True else None)
            fills[f"_mf{i}_{j}"] = fill(f"_mf{i}_{j}", True if o is False else None)
        return masks, fills

    def _latest_day_masks(self, i: int, r: ir.Table, conds: dict[tuple, Series]) -> ir.Table:
        """Per patient, for the days of a "last day" leaf (``_lo``, ``_hi``, ``_day``): the
        intervals some day is inside the window (``_mc``); the intervals where a group of
        days starts (``_ms``: the days grouped by their ``_lo``, the first interval whose
        window holds them); and for each condition the starts where it is true (``_mt``)
        and false (``_mf``) on the group's last day — no window function.

        The latest day inside the window at ``k`` is the last day of the latest group
        starting at or before ``k``, while ``k < _hi`` (``_lo`` and ``_hi`` never decrease
        as the day increases), so a condition holds at ``k`` when the latest start at or
        before ``k`` is one where it held and ``k`` is covered: :func:`_latest`."""
        # the outcome on the group's last day: the greatest of the day as yyyymmdd * 4 +
        # the outcome (2 true, 1 false, 0 missing). When a day's rows are not combined
        # first (:meth:`_rows_decide`) the greatest is the day's outcome too: 2 when some
        # row is true; for a condition on every row, 2 when some row is false, 1 true
        day = r._day
        stamp = (
            day.year().cast("int64") * 10000 + day.month().cast("int64") * 100 + day.day()
        ).cast("int64") * 4
        last, codes = {}, []
        for j, (key, s) in enumerate(conds.items()):
            v = self.c.expr(s, r)
            true, false = (1, 2) if key in self.forall else (2, 1)
            codes.append((true, false))
            code = ibis.cases((v, true), (~v, false), else_=0).cast("int64")
            last[f"_q{j}"] = (stamp + code).max()
        groups = r.group_by(["patient_id", "_lo"]).aggregate(_hi=r._hi.max(), **last)
        start = _one_at(groups._lo)
        aggs = {
            f"_mc{i}": _bit_or(interval_bits(groups._lo, groups._hi)),
            f"_ms{i}": _bit_or(start),
        }
        for j, (true, false) in enumerate(codes):
            outcome = groups[f"_q{j}"] % 4
            aggs[f"_mt{i}_{j}"] = _bit_or(ibis.cases((outcome == true, start), else_=_zero()))
            aggs[f"_mf{i}_{j}"] = _bit_or(ibis.cases((outcome == false, start), else_=_zero()))
        return groups.group_by("patient_id").aggregate(**aggs)

    # -- evaluating --------------------------------------------------------------------
    def _atoms(self, nodes: list[Series], w: ir.Table) -> ir.Table:
        """``w`` with the masks of the flips and patient-level conditions ``nodes`` read,
        each once as columns (``tf`` then refers to them: a small query to compile)."""
        self.atoms = {}
        cols: dict[str, ir.Value] = {}

        def walk(s: Series) -> None:
            if s.key in self.atoms:
                return
            atom = not self._dep(s) or (self.c._rewrite(s) is None and s.key in self.tl._flip_nodes)
            if atom:
                name = f"_a{len(self.atoms)}"
                t, f = self.tf(s, w)
                cols[f"{name}t"], cols[f"{name}f"] = t, f
                self.atoms[s.key] = name
                return
            rewritten = self.c._rewrite(s)
            if rewritten is not None:
                walk(rewritten)
            elif s.op in ("and", "or", "not"):
                for a in s.args:
                    walk(a)

        for node in nodes:
            walk(node)
        return w.mutate(**cols) if cols else w

    def tf(self, s: Series, w: ir.Table) -> tuple[ir.Value, ir.Value]:
        """``(T, F)``: the masks of the intervals where ``s`` is true and where false."""
        full = ibis.literal(self.all, type="int64")
        name = self.atoms.get(s.key)
        if name is not None:
            return w[f"{name}t"], w[f"{name}f"]
        if not self._dep(s):
            v = self.c.expr(s, w)
            return (
                ibis.cases((v, full), else_=_zero()),
                ibis.cases((~v, full), else_=_zero()),
            )
        rewritten = self.c._rewrite(s)
        if rewritten is not None:  # the compiler reads a missing outcome as false
            t, _ = self.tf(rewritten, w)
            return t, _without(full, t)
        if s.key in self.tl._flip_nodes:
            return self._flip(s, w)
        if s.op == "and":
            (ta, fa), (tb, fb) = self.tf(s.args[0], w), self.tf(s.args[1], w)
            return ta & tb, fa | fb
        if s.op == "or":
            (ta, fa), (tb, fb) = self.tf(s.args[0], w), self.tf(s.args[1], w)
            return ta | tb, fa & fb
        if s.op == "not":
            t, f = self.tf(s.args[0], w)
            return f, t
        if s.key in self.tests:
            leaf, op, c = self.tests[s.key]

            def at_least(c: int) -> ir.Value:
                return full if c <= 0 else w[self.cols[(leaf.key, c)]]

            if op in ("ge", "gt"):
                t = at_least(c)
            elif op in ("lt", "le"):
                t = _without(full, at_least(c))
            else:
                t = _without(at_least(c), at_least(c + 1))
                t = t if op == "eq" else _without(full, t)
            return t, _without(full, t)  # a count is never missing (0 without rows)
        col = self.cols[s.key]
        return w[f"_mt{col}"], w[f"_mf{col}"]

    def _flip(self, s: Series, w: ir.Table) -> tuple[ir.Value, ir.Value]:
        i, node = self.tl._flip_nodes[s.key]
        flip = self.tl._flips[i]
        full = ibis.literal(self.all, type="int64")
        n = ibis.literal(self.n, type="int64")
        zero = ibis.literal(0, type="int64")
        first = w[f"_f{i}_0"]
        known = first.notnull()
        if flip[0] == "cmp":
            t = interval_bits(first, w[f"_f{i}_1"])
        else:
            a, _ = node.args
            op = node.op if a.op == "age" else _MIRROR.get(node.op, node.op)
            if op in ("ge", "gt"):
                t = interval_bits(first, n)
            elif op in ("lt", "le"):
                t = interval_bits(zero, first)
            else:
                t = interval_bits(first, w[f"_f{i}_1"])
                t = t if op == "eq" else _without(full, t)
        t = ibis.cases((known, t), else_=_zero())
        return t, ibis.cases((known, _without(full, t)), else_=_zero())

    def _partition(self, w: ir.Table, col: str, j: int) -> ir.Table:
        """``patient_id, _g{j}, _p{j}``: the patient's intervals split by the value of
        breakdown ``col`` (an interval-dependent value from one runs table); the
        intervals no run covers take its value on a missing row."""
        s = self.variables[col]
        skey = self.group_keys[col]
        r = self._runs(skey)
        label = self.c.expr(s, r)
        missing = self._on_missing(r, {"_o": s})["_o"]
        runs = r.select("patient_id", _lab=label, _b=_spans(r))
        cover = runs.group_by("patient_id").aggregate(_cv=_bit_or(runs._b))
        cover = cover.rename(_cp="patient_id")
        base = w.select("patient_id")
        rest = base.left_join(cover, base.patient_id == cover._cp)
        rest = rest.select(
            "patient_id",
            _lab=ibis.literal(missing, type=label.type()),
            _b=_without(ibis.literal(self.all, type="int64"), rest._cv.fill_null(0)),
        )
        parts = ibis.union(runs, rest, distinct=False)
        parts = parts.filter(parts._b != 0)
        out = parts.group_by(["patient_id", "_lab"]).aggregate(_p=_bit_or(parts._b))
        return out.select(_gp=out.patient_id, **{f"_g{j}": out._lab, f"_p{j}": out._p})

    def _age_partition(self, w: ir.Table, col: str, j: int) -> ir.Table:
        """``w`` with ``_g{j}, _p{j}``: breakdown ``col`` (a case on one age) by the age's
        stretches between the birthdays the intervals pass: from the birthday in
        ``years[t - 1]`` to the one in ``years[t]`` the age is ``years[0] - 1 - born + t``,
        and the label is the case's at that age."""
        age, i, years = self.age_groups[col]
        born = self.c.expr(age.args[0], w).year().cast("int64")
        base = ibis.literal(years[0] - 1, type="int64") - born
        n = ibis.literal(self.n, type="int64")
        # (no birthday known: the first stretch, at a missing age, runs to the end)
        firsts = [w[f"_f{i}_{t}"].fill_null(n) for t in range(len(years))]
        bounds = [ibis.literal(0, type="int64"), *firsts]
        saved = self.c.substitutes
        labels = []
        try:
            for t in range(len(years) + 1):
                self.c.substitutes = {**saved, age.key: lambda _, t=t: base + t}
                labels.append(self.c.expr(self.variables[col], w))
        finally:
            self.c.substitutes = saved
        # w first takes the labels as columns (each a small expression, read often below);
        # a stretch whose label is the one before's is taken by that one, which runs on
        # to the next stretch with another label (most patients keep one band throughout)
        w = w.mutate(**{f"_aL{t}": label for t, label in enumerate(labels)})
        lab = [w[f"_aL{t}"] for t in range(len(labels))]
        masks = {}
        for t in range(len(labels)):
            hi = n
            for u in reversed(range(t + 1, len(labels))):
                hi = ibis.cases((_differs(lab[u], lab[t]), bounds[u]), else_=hi)
            starts = ibis.literal(True) if t == 0 else _differs(lab[t], lab[t - 1])
            masks[f"_am{t}"] = ibis.cases((starts, interval_bits(bounds[t], hi)), else_=_zero())
        return self._split_rows(w.mutate(**masks), j, len(labels))

    def _case_partition(self, w: ir.Table, col: str, j: int) -> ir.Table:
        """``w`` with ``_g{j}, _p{j}``: one row per label of breakdown ``col`` (a case over
        conditions) that the patient takes in some interval, with those intervals' mask —
        each label where its condition is true and no earlier one's was (as ``case``
        picks), the last label where none was."""
        branches, otherwise = self.case_groups[col]
        rest = ibis.literal(self.all, type="int64")
        parts = []
        for cond, label in branches:
            t, _ = self.tf(cond, w)
            parts.append((label, t & rest))
            rest = _without(rest, t)
        parts.append((otherwise, rest))
        labels = {f"_aL{t}": ibis.literal(lb, type="string") for t, (lb, _) in enumerate(parts)}
        masks = {f"_am{t}": mask for t, (_, mask) in enumerate(parts)}
        return self._split_rows(w.mutate(**labels, **masks), j, len(parts))

    def _split_rows(self, w: ir.Table, j: int, n: int) -> ir.Table:
        """``w`` (with ``n`` labels ``_aL{t}`` and their masks ``_am{t}``) as ``_g{j},
        _p{j}``: a row per label whose mask has intervals (a cross join with the labels'
        numbers: cheaper than an array to unnest)."""
        ts = self.c.literal_table({"_at": pa.array(range(n), pa.int64())})
        x = w.cross_join(ts)
        x = x.mutate(
            **{
                f"_g{j}": ibis.cases(*[(x._at == t, x[f"_aL{t}"]) for t in range(n)]),
                f"_p{j}": ibis.cases(*[(x._at == t, x[f"_am{t}"]) for t in range(n)]),
            }
        )
        x = x.filter(x[f"_p{j}"] != 0)
        return x.drop("_at", *[f"_aL{t}" for t in range(n)], *[f"_am{t}" for t in range(n)])

    def _count(self, w: ir.Table) -> list[pd.DataFrame]:
        by_breakdown = breakdowns(self.group, self.names)
        frames = []
        for sig, measures in by_breakdown.items():
            x = w
            dynamic = []
            for j, (_, col) in enumerate(sig):
                later = col in self.case_groups or col in self.age_groups
                if self.group_keys[col] is not None and not later:
                    p = self._partition(self.pt, col, j)
                    x = x.inner_join(p, x.patient_id == p._gp).drop("_gp")
                if self.group_keys[col] is not None:
                    dynamic.append(j)
            nodes = [
                self.variables[self.names[m.name][c]] for m in measures for c in ("den", "num")
            ]
            cases = [(j, col) for j, (_, col) in enumerate(sig) if col in self.case_groups]
            nodes += [cond for _, col in cases for cond, _ in self.case_groups[col][0]]
            x = self._atoms(nodes, x)  # (resets the atoms: their columns are x's)
            for j, col in cases:  # after the atoms: they are computed once per patient
                x = self._case_partition(x, col, j)
            for j, (_, col) in enumerate(sig):
                if col in self.age_groups:
                    x = self._age_partition(x, col, j)
            labels = {
                f"_l{j}": self.c.expr(self.variables[col], x)
                if self.group_keys[col] is None
                else x[f"_g{j}"]
                for j, (_, col) in enumerate(sig)
            }
            x = x.mutate(**labels)
            part = None
            for j in dynamic:
                part = x[f"_p{j}"] if part is None else part & x[f"_p{j}"]
            masks = {}  # each measure's masks as columns: the sums below read them
            for i, m in enumerate(measures):
                cols = self.names[m.name]
                t_den, _ = self.tf(self.variables[cols["den"]], x)
                t_num, _ = self.tf(self.variables[cols["num"]], x)
                masks[f"_D{i}"] = t_den if part is None else t_den & part
                masks[f"_N{i}"] = t_num & masks[f"_D{i}"]
            # (never missing: a whole number column with gaps could reach pandas as floats)
            x = x.select(*labels, **{k: v.fill_null(0) for k, v in masks.items()})
            # patients with the same masks counted once (far fewer rows than patients),
            # then bit k of every mask counted per group here, vectorised
            x = x.group_by([*labels, *masks]).aggregate(_w=x.count())
            df = _bit_counts(x.to_pandas(), list(labels), len(measures), self.n)
            df = df.rename(columns={f"_l{j}": g for j, (g, _) in enumerate(sig)})
            groups = [g for g, _ in sig]
            for i, m in enumerate(measures):
                out = df[df[f"_d{i}"] > 0].sort_values("_k", kind="stable")
                out = out.rename(columns={f"_n{i}": "numerator", f"_d{i}": "denominator"})
                ks = out["_k"].to_numpy()
                res = pd.DataFrame(
                    {
                        "interval_start": [self.tl.starts[k] for k in ks],
                        "interval_end": [self.tl.ends[k] for k in ks],
                    }
                )
                for g in groups:
                    res[g] = out[g].to_numpy()
                res["numerator"] = out["numerator"].to_numpy().astype("int64")
                res["denominator"] = out["denominator"].to_numpy().astype("int64")
                res.insert(0, "measure", m.name)
                frames.append(res)
        return frames


def _one_at(k: ir.Value) -> ir.Value:
    """The mask of interval ``k`` alone."""
    return ibis.literal(1, type="int8").cast("int64") << k


def _latest(c: str, i: int, j: int, full: ir.Value) -> Any:
    """The intervals where the latest start at or before each (``_ms{i}``) is one of
    ``_m{c}{i}_{j}``, within the covered ones (``_mc{i}``): each such start's bits carried
    up to the next start that is not one of them, by one addition — in ``U`` (the bits
    that are no start, or such a start) the carry from each such start runs through the
    bits up to the next other start, clearing them; the starts inside a run, added twice,
    are set again by the ``| A``."""

    def f(t: ir.Table) -> ir.Value:
        a = t[f"_m{c}{i}_{j}"].fill_null(0)
        starts = t[f"_ms{i}"].fill_null(0)
        u = _without(full, starts) | a
        carried = _without(u, u + a) | a
        return carried & t[f"_mc{i}"].fill_null(0)

    return f


def _bit_counts(combos: pd.DataFrame, labels: list[str], measures: int, n: int) -> pd.DataFrame:
    """Per group (``labels``) and interval ``_k``: ``_d{i}``/``_n{i}``, the patients with
    bit ``k`` set in ``_D{i}``/``_N{i}``, from ``combos`` (the distinct combinations of
    group and masks, ``_w`` patients each; masks never missing)."""
    ks = np.arange(n, dtype=np.int64)
    codes = np.zeros(len(combos), np.int64)
    for col in labels:  # a number per combination of labels (missing labels included)
        c, uniques = pd.factorize(combos[col], use_na_sentinel=False)
        codes = codes * len(uniques) + c
    codes, _ = pd.factorize(codes)
    _, first = np.unique(codes, return_index=True)
    groups = len(first) if len(combos) else 0
    keys = combos[labels].iloc[first].reset_index(drop=True)
    out = keys.loc[keys.index.repeat(n)].reset_index(drop=True)
    out["_k"] = np.tile(ks, groups)
    w = combos["_w"].to_numpy(np.int64)
    for i in range(measures):
        # each group's distinct pairs of masks first: far fewer than the combinations
        by = pd.DataFrame(
            {
                "g": codes,
                "d": combos[f"_D{i}"].to_numpy(np.int64),
                "n": combos[f"_N{i}"].to_numpy(np.int64),
                "w": w,
            }
        )
        by = by.groupby(["g", "d", "n"], sort=False)["w"].sum().reset_index()
        cell = (by["g"].to_numpy(np.int64)[:, None] * n + ks).reshape(-1)  # group, interval
        weight = by["w"].to_numpy(np.float64)[:, None]  # (whole numbers, exact below 2**53)
        for c in "dn":
            bits = ((by[c].to_numpy(np.int64)[:, None] >> ks) & 1) * weight
            sums = np.bincount(cell, weights=bits.reshape(-1), minlength=groups * n)
            out[f"_{c}{i}"] = np.rint(sums).astype(np.int64)
    return out
