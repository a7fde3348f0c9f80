"""Code lists that match no row of the store: a silent zero, caught after a run.

A definition checks each code list against the table it is matched to when it is built (a
list of the wrong coding system is an error). What it cannot see is the data: a list of
SNOMED CT concepts without semantic tags that are findings, not medicinal products, used on
``medications``; dm+d codes the feed never carries; a list exported with the wrong column.
Each would give a column of zeros that looks like a result. :func:`unmatched_code_lists`
asks the store, in a few small queries per table read (its row count, the distinct codes
of the lists present), whether any row at any date matches each list, and says which match
none (or which tables are empty). It reads only the code columns, with the lists' codes
pushed to the scan: on the code-clustered store a few row groups.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pophealth.codelists import Codelist
from pophealth.query.compile import _children, _flatten, match_condition
from pophealth.query.dataset import Dataset, RowDataset, to_pandas
from pophealth.query.measures import Measures, RowMeasure
from pophealth.query.model import CODE_COLUMNS, Frame, Series


def _named_nodes(definition: Dataset | Measures) -> dict[str, list[Any]]:
    """What the definition computes, by the name a user knows it by."""
    if isinstance(definition, Dataset):
        named: dict[str, list[Any]] = {}
        if isinstance(definition, RowDataset):  # the rows it gives one output row each
            named["rows"] = [definition.frame]
        if definition.population is not None:
            named["population"] = [definition.population]
        for name, value in definition.variables.items():
            named[f"variable {name!r}"] = [value]
        for name, (frame, _) in definition.event_tables.items():
            named[f"event table {name!r}"] = [frame, *definition.event_values(name).values()]
        return named
    named = {}
    for m in definition:
        nodes = [m.numerator, m.denominator, *m.group_by.values()]
        # a quantile over rows: its rows and their value are not among its breakdowns
        nodes += [x for x in (getattr(m, "rows", None), getattr(m, "value", None)) if x is not None]
        if isinstance(m, RowMeasure):  # over a row dataset: its rows and population too
            rows = m.row_dataset
            nodes += [rows.frame, *([rows.population] if rows.population is not None else [])]
        named[f"measure {m.name!r}"] = nodes
    return named


def _uses(nodes: Iterable[Any]) -> dict[tuple, tuple[str, str, tuple]]:
    """The code-list tests under ``nodes``: a key per distinct test -> (table, what it is
    called, the condition's arguments)."""
    found: dict[tuple, Any] = {}
    seen: set[int] = set()

    def walk(node: Any) -> None:
        if not isinstance(node, Series | Frame) or id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, Series) and node.op == "match":
            table, column, system_col, is_list, by_system = node.args
            name = node.desc.rsplit(" in ", 1)[-1]
            found.setdefault(node.key, (table, name, (column, system_col, is_list, by_system)))
            return
        if isinstance(node, Series) and node.op == "isin":
            col, values = node.args
            if (
                isinstance(col, Series)
                and col.op == "col"
                and col.args[1] in CODE_COLUMNS.get(col.args[0], {})
                and values
                and all(isinstance(v, str) for v in values)
            ):
                table, column = col.args[0], col.args[1]
                _, _, is_list = CODE_COLUMNS[table][column]
                if not is_list:  # codes of any system the column holds
                    n = len(values)
                    name = f"{table}.{column}.is_in({n} code{'' if n == 1 else 's'})"
                    found.setdefault(
                        node.key,
                        # (no system column: the codes are compared as is_in compares them)
                        (table, name, (column, None, False, (("any", frozenset(values)),))),
                    )
        for child in _flatten(_children(node)):
            walk(child)

    for n in nodes:
        walk(n)
    return found


def unmatched_code_lists(con: Any, definition: Dataset | Measures) -> list[str]:
    """Sentences naming each code list in ``definition`` that matches no row of its table
    in the store ``con`` reads (at any date, for any patient), and each table read that
    holds no rows; empty when every list finds something. Per table read: its row count,
    the distinct codes of the lists present in each code column, and for a column of code
    lists one test per list.

    A list that matches rows only outside a definition's windows is not named: that is a
    result, not a wrong list."""
    named = _named_nodes(definition)
    by_name = {name: _uses(nodes) for name, nodes in named.items()}
    matched, empty = _matched(con, by_name)
    out = []
    for table in sorted(empty):
        readers = [name for name, uses in by_name.items() if _reads(uses, table)]
        out.append(
            f"{table} holds no rows in this store, so every code list matched against it "
            f"finds nothing ({', '.join(readers)})"
        )
    readers: dict[tuple, list[str]] = {}  # each list matching nothing -> who reads it
    for name, uses in by_name.items():
        for key, (table, _, _) in uses.items():
            if table not in empty and not matched.get(key, True):
                readers.setdefault(key, []).append(name)
    for key, names in readers.items():
        table, label, _ = next(u[key] for u in by_name.values() if key in u)
        out.append(
            f"{', '.join(names)}: code list {label} matches no row of {table} in this store, "
            f"at any date: check it is a list for {table}{_hint(table)}"
        )
    return out


def unmatched_lists(con: Any, uses: Mapping[str, tuple[str, str | None, Codelist]]) -> list[str]:
    """The names in ``uses`` (name -> the table, its code column or None for the first,
    and the code list matched against it) whose list matches no row of that table in the
    store ``con`` reads, at any date — or whose table has no rows. For a programme's
    data-quality notes: a variable from such a list reads "not recorded" for everyone.
    A list the table cannot hold (refused when matched) is left to that refusal."""
    by_name = {}
    for name, (table, column, codes) in uses.items():
        frame = Frame(table).matching(codes, column)
        if not frame.error:
            by_name[name] = _uses([frame])
    matched, empty = _matched(con, by_name)
    return [
        name
        for name, found in by_name.items()
        if any(t in empty or not matched.get(k, True) for k, (t, _, _) in found.items())
    ]


def _matched(
    con: Any, by_name: Mapping[str, Mapping[tuple, tuple[str, str, tuple]]]
) -> tuple[dict[tuple, bool], set[str]]:
    """Whether each code-list test of ``by_name`` (:func:`_uses`) matches a row of its
    table in the store, and the tables read that hold no rows."""
    tests: dict[str, dict[tuple, tuple[str, tuple]]] = {}
    for uses in by_name.values():
        for key, (table, label, args) in uses.items():
            tests.setdefault(table, {})[key] = (label, args)
    matched: dict[tuple, bool] = {}
    empty: set[str] = set()
    for table, found in tests.items():
        t = con.table(table)
        if not int(to_pandas(t.count().as_table()).iloc[0, 0]):
            empty.add(table)
            continue
        plain = {k: v for k, v in found.items() if not v[1][2]}
        for column in sorted({args[0] for _, args in plain.values()}):
            # the distinct codes present among the lists' codes (few rows), then each
            # list's test here: cheaper than a test per row per list
            mine = {k: v for k, v in plain.items() if v[1][0] == column}
            codes = sorted({c for _, a in mine.values() for _, cs in a[3] for c in cs})
            system_col = CODE_COLUMNS[table][column][0]
            keep = [column] + ([system_col] if system_col else [])
            present = to_pandas(t.filter(t[column].isin(codes)).select(*keep).distinct())
            pairs = set(zip(*(present[c] for c in keep), strict=True))  # (code[, system])
            found_codes = {pair[0] for pair in pairs}
            for key, (_, (_, sys_col, _, by_system)) in mine.items():
                matched[key] = any(
                    (code, system) in pairs if sys_col else code in found_codes
                    for system, cs in by_system
                    for code in cs
                )
        lists = [k for k, v in found.items() if v[1][2]]
        if lists:  # a column of code lists (all diagnoses, procedures): one test per list
            aggs = {f"_m{i}": match_condition(t, *found[k][1]).any() for i, k in enumerate(lists)}
            row = to_pandas(t.aggregate(**aggs)).iloc[0]
            for i, key in enumerate(lists):
                value = row[f"_m{i}"]
                matched[key] = bool(value) if value is not None and value == value else False
    return matched, empty


def _reads(uses: Mapping[tuple, tuple[str, str, Any]], table: str) -> bool:
    return any(t == table for t, _, _ in uses.values())


def _hint(table: str) -> str:
    if table == "medications":
        return (
            " (a list of clinical SNOMED CT concepts — diagnoses, findings — belongs on "
            "events; prescriptions need dm+d products)"
        )
    return ""


__all__ = ["unmatched_code_lists", "unmatched_lists"]
