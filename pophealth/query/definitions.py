"""Definition files: a Python file that builds a :class:`~pophealth.query.Dataset` and/or
:class:`~pophealth.query.Measures`, run from the command line (``pophealth dataset FILE``,
``pophealth measures FILE``) the way an analyst runs an ehrQL dataset definition.

A definition file is ordinary Python, for example::

    from pophealth.query import Dataset, codelist, events, index_date, registrations

    dataset = Dataset()
    dataset.define_population(registrations.registered_on(index_date))
    dataset.asthma = events.matching(codelist("asthma_diagnosis")).exists_for_patient()

The command takes the object named ``dataset`` (or ``measures``), or else the only one of
that kind the file makes. Mistakes come back as a :class:`DefinitionError` naming the file
and the line, not as a traceback into pophealth.
"""

from __future__ import annotations

import contextlib
import runpy
import sys
import traceback
from pathlib import Path
from typing import Any

from pophealth.codelists import CodelistError
from pophealth.query.model import QueryError

__all__ = ["DefinitionError", "find_definition", "load_definitions"]


class DefinitionError(Exception):
    """A definition file cannot be used; the message names the file (and line) and why."""


def _user_line(path: Path, tb: Any) -> int | None:
    """The last line of the definition file in a traceback (where the mistake was made)."""
    line = None
    for frame in traceback.extract_tb(tb):
        if Path(frame.filename).resolve() == path:
            line = frame.lineno
    return line


def _user_traceback(path: Path, exc: BaseException) -> str:
    """The traceback from the definition file's first frame on (runpy's frames dropped)."""
    frames = traceback.extract_tb(exc.__traceback__)
    first = next(
        (i for i, f in enumerate(frames) if Path(f.filename).resolve() == path), len(frames)
    )
    shown = traceback.format_list(frames[first:])
    return "".join(["Traceback (most recent call last):\n", *shown]) + "".join(
        traceback.format_exception_only(type(exc), exc)
    )


def _where_looked(path: Path, exc: BaseException) -> str:
    """For a code-list file that is not there (``load_codelist("lists/x.csv")``), where it
    was looked for — a relative path is read from the folder the command is run from, not
    the definition's — and, when the file is beside the definition, how to read it there."""
    missing = exc.__cause__
    if not isinstance(missing, FileNotFoundError) or missing.filename is None:
        return ""
    wanted = Path(missing.filename)
    if wanted.is_absolute():
        return ""
    said = (
        f" (looked for {Path.cwd() / wanted}: a relative path is read from the folder the "
        "command is run from"
    )
    beside = path.parent / wanted
    if beside.is_file():
        said += (
            f"; the file is at {beside}, beside the definition: run the command from "
            f"{path.parent}, or read it from the definition's folder, "
            f'load_codelist(Path(__file__).parent / "{wanted.as_posix()}")'
        )
    return said + ")"


def load_definitions(path: str | Path) -> dict[str, Any]:
    """Run the definition file at ``path`` and return its module namespace.

    The file's folder is importable while it runs (so a definition can import helpers kept
    beside it). Raises :class:`DefinitionError`: for a missing file or one that is not
    Python; for a query or code-list mistake (with the file's line and pophealth's message,
    which names the variable); for a ``sys.exit()`` in the file (with its line); for any
    other exception (with the traceback from the file's first line on)."""
    path = Path(path)
    if not path.is_file():
        raise DefinitionError(f"{path}: no such definition file")
    if path.suffix != ".py":
        raise DefinitionError(f"{path}: a definition file is Python source ending in .py")
    path = path.resolve()
    folder = str(path.parent)
    sys.path.insert(0, folder)
    try:
        return runpy.run_path(str(path), run_name="__pophealth_definition__")
    except SyntaxError as exc:  # in the file, or in a helper it imports
        where = f"{exc.filename or path}" + (f", line {exc.lineno}" if exc.lineno else "")
        raise DefinitionError(f"{where}: syntax error: {exc.msg}") from None
    except (QueryError, CodelistError) as exc:
        line = _user_line(path, exc.__traceback__)
        where = f", line {line}" if line else ""
        raise DefinitionError(f"{path}{where}: {exc}{_where_looked(path, exc)}") from None
    except SystemExit as exc:  # sys.exit() would end the command as if it had succeeded
        line = _user_line(path, exc.__traceback__)
        where = f", line {line}" if line else ""
        code = "" if exc.code is None else repr(exc.code)
        raise DefinitionError(
            f"{path}{where}: the definition called sys.exit({code}); a definition builds a "
            "Dataset or Measures and leaves running it to the command"
        ) from None
    except Exception as exc:
        raise DefinitionError(
            f"{path}: the definition raised {type(exc).__name__}\n"
            + _user_traceback(path, exc).rstrip()
        ) from None
    finally:
        with contextlib.suppress(ValueError):  # the definition removed it itself
            sys.path.remove(folder)


def find_definition(namespace: dict[str, Any], kind: type, name: str, path: str | Path) -> Any:
    """The object of type ``kind`` the definition file made: the one called ``name``, or
    else the only one; a :class:`DefinitionError` otherwise (none, or several and none of
    them called ``name``)."""
    chosen = namespace.get(name)
    if isinstance(chosen, kind):
        return chosen
    found = {
        key: value
        for key, value in namespace.items()
        if isinstance(value, kind) and not key.startswith("_")
    }
    what = kind.__name__
    if len(found) == 1:
        return next(iter(found.values()))
    if not found:
        raise DefinitionError(
            f"{path}: makes no {what}; assign one to a variable, e.g. `{name} = {what}(...)`"
        )
    raise DefinitionError(
        f"{path}: makes {len(found)} {what} objects ({', '.join(sorted(found))}); call the "
        f"one to run `{name}`"
    )
