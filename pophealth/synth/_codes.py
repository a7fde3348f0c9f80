"""The curated code lists the generator draws its codes from, and a string vocabulary.

The generator never invents a code: every code it writes is looked up here in
``pophealth/codelists/curated/<name>.csv``, and an unknown code is an error when the
generator is built, not a silent row in the output.
"""

from __future__ import annotations

import csv
from functools import cache
from pathlib import Path

import numpy as np
import pyarrow as pa

CURATED_DIR = Path(__file__).resolve().parent.parent / "codelists" / "curated"


@cache
def curated(name: str) -> dict[str, dict[str, str]]:
    """The curated list ``name`` as ``{code: row}`` (row holds ``term`` and any extras)."""
    path = CURATED_DIR / f"{name}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no curated code list {name!r} (expected {path})")
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    out: dict[str, dict[str, str]] = {}
    for i, row in enumerate(rows, start=2):
        code = (row.get("code") or "").strip()
        if not code:
            raise ValueError(f"{path}, row {i}, field code: empty code")
        out[code] = row
    return out


@cache
def manifest() -> dict[str, dict[str, str]]:
    """MANIFEST.csv as ``{name: {system, description, source}}``."""
    with (CURATED_DIR / "MANIFEST.csv").open(newline="", encoding="utf-8") as fh:
        return {row["name"]: row for row in csv.DictReader(fh)}


def system_of(name: str) -> str:
    try:
        return manifest()[name]["system"]
    except KeyError:
        raise KeyError(f"curated list {name!r} is not in MANIFEST.csv") from None


class Vocab:
    """Interns strings to small integer ids; :meth:`array` builds an Arrow string column
    from ids (``-1`` = null) with one vectorised ``take``."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self._values: list[str] = []
        self._arrow: pa.Array | None = None

    def id(self, value: str) -> int:
        got = self._ids.get(value)
        if got is None:
            got = self._ids[value] = len(self._values)
            self._values.append(value)
            self._arrow = None
        return got

    def ids(self, values) -> np.ndarray:
        return np.array([self.id(v) for v in values], dtype=np.int32)

    def array(self, ids: np.ndarray) -> pa.Array:
        if self._arrow is None:
            self._arrow = pa.array(self._values, type=pa.string())
        ids = np.asarray(ids, dtype=np.int32)
        mask = ids < 0
        indices = pa.array(np.where(mask, 0, ids), mask=mask if mask.any() else None)
        return self._arrow.take(indices)


class CodePicker:
    """Codes of one curated list with the weights the generator picks them by.

    ``CodePicker("asthma_diagnosis", {"195967001": 0.8, ...})`` checks each code is in
    the curated list and interns it in ``vocab``.
    """

    def __init__(self, vocab: Vocab, name: str, weights: dict[str, float]):
        known = curated(name)
        missing = [c for c in weights if c not in known]
        if missing:
            raise KeyError(f"code(s) {missing} are not in the curated list {name!r}")
        self.name = name
        self.system = system_of(name)
        self.codes = list(weights)
        self.ids = vocab.ids(self.codes)
        w = np.array(list(weights.values()), dtype=float)
        self.cum = np.cumsum(w / w.sum())
        self.rows = [known[c] for c in self.codes]

    def pick(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Indices (into :attr:`codes`) of ``n`` weighted draws."""
        return np.minimum(np.searchsorted(self.cum, rng.random(n), side="right"), len(self.cum) - 1)

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Vocabulary ids of ``n`` weighted draws."""
        return self.ids[self.pick(rng, n)]

    def extra(self, column: str, cast=float) -> np.ndarray:
        """An extra column of the curated list for the picker's codes (e.g. strength_mg)."""
        return np.array([cast(r[column]) for r in self.rows])
