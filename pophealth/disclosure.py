"""Statistical disclosure control: the one small-number policy for every aggregate output.

Every table that leaves the engine goes through :func:`apply` (counts) or
:func:`release_proportions` (numerator/denominator indicators). One policy object decides:

``DisclosurePolicy(suppress_at_or_below=7, rounding="nearest5")`` — :data:`DEFAULT_POLICY`

1. **Primary suppression**: counts 1-7 (``suppress_at_or_below``) are withheld (NA).
   Zero is released as 0 unless ``suppress_zeros=True``.
2. **Secondary suppression**: for each *margin* (a column along which cells add up to a
   total that is, or could be, published — e.g. the groups of one breakdown), a total minus
   the released cells must never give back a single withheld cell. Wherever a set of cells
   that add up to a total has exactly one withheld cell, the smallest other non-zero cell
   (or, failing that, the total row) is withheld too, repeated until no set has a lone
   withheld cell. With two margins (rows and columns), the same rule runs on both until stable.
   Where each breakdown of a table carries its own copy of one total (``same_total_across``),
   the copies are withheld together and the audit knows they are equal.
3. **Rounding** of everything released: ``"nearest5"`` (OpenSAFELY's redact-then-round,
   https://docs.opensafely.org/sdc/), ``"midpoint6"`` (OpenSAFELY midpoint-6: r = 6⌈x/6⌉ − 3
   for x > 0, 0 stays 0; unbiased, true value within r − 2 … r + 3) or ``"none"``.
   Rounded counts can still add up to give one back (four groups of 12, each released as
   10, beside their total of 48, released as 50, are 12 each), so the audit of step 2 also
   reads every released count as its rounding window and withholds one more count where
   that fixes one (``secondary_suppression(..., rounded=policy)``, as :func:`apply` and
   :func:`release_proportions` call it). Across the intervals of a measure run, the same
   count over months beside their quarter is read so too
   (:func:`pophealth.query.measures._rounded_across`, with :func:`fixed_within_windows`).
4. **Counts of rows** (attendances, episodes, issues) can all come from a few patients:
   ten attendances may be one person's. Where a table counts rows, pass the number of
   distinct patients behind each count (``patients={"attendances": "patients_attending"}``)
   and a count is also withheld when its patients number 1-7 (the patients column is used
   for the decision and not released).
5. **Derived values** (ratios, percentages, CIs) are recomputed from the released counts
   (:func:`release_proportions` does this for a proportion with a Wilson CI), never carried
   over from the true ones: a rate of 23 per 1,000 beside a released 25 gives back 23.

6. **One count, one decision across the tables of a run**: the same count (a PCN's
   denominator, an IMD quintile's register, the registered population) often sits in
   several tables, each suppressed on its own margins; withheld in one and released in
   another, it protects nothing. :class:`SharedCounts` is the run's register of counts by
   identity (:func:`count_keys`): each table withholds, and its audit protects, every count
   another table withholds (``withhold=``), and the programme builds its tables again until
   no table withholds a count another releases (:meth:`SharedCounts.settle`).

A single count shown on its own (a headline, a line the CLI prints) goes through
:func:`release_count`: the same suppression and rounding, as a number or ``None``.

No released count can lie in 1-7 under either rounding (≥ 8 rounds to ≥ 9 or ≥ 10).

Usage (query layer)::

    from pophealth import disclosure
    safe = disclosure.release_proportions(table, "numerator", "denominator",
                                          by=["breakdown", "group"], margins=["group"])
    safe = disclosure.apply(counts, ["n_patients"], by=["sex", "age_band"],
                            margins=["sex", "age_band"])

Sources: OpenSAFELY output-checking guidance (https://docs.opensafely.org/sdc/ ;
https://www.opensafely.org/updated-output-checking-processes/); ONS *Disclosure control
guidance for tables produced from administrative sources* (secondary suppression principle).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.optimize import linprog
from scipy.sparse.csgraph import connected_components

from pophealth.stats._core import (
    DEFAULT_CONFIDENCE,
    add_limits,
    normalise_confidence,
    scaled_quotient,
    wilson,
)

__all__ = [
    "DEFAULT_POLICY",
    "DisclosurePolicy",
    "SharedCounts",
    "apply",
    "count_keys",
    "count_text",
    "count_window",
    "release_count",
    "release_proportions",
    "round_counts",
    "rounded_parts_given_back",
    "secondary_suppression",
]

Rounding = Literal["nearest5", "midpoint6", "none"]
#: withheld cells in one table beyond which the linear-programming audit is not run (one
#: table of about 2,000 withheld cells takes under a second; 11,000, over a minute)
MAX_AUDITED_CELLS = 2000
#: how many rows of tables :func:`secondary_suppression` remembers its answers for, by the
#: content of its inputs, the least recently asked forgotten first (0: none; the asthma
#: programme at 10,000 patients keeps some 5,500 rows, a key holding each row's labels)
SECONDARY_CACHE_ROWS = 100_000


class _Answers(OrderedDict):
    """Remembered answers of :func:`secondary_suppression` by the content of its inputs
    (each key starts with its table's rows), the least recently asked forgotten first while
    more than :data:`SECONDARY_CACHE_ROWS` rows are kept."""

    def __init__(self) -> None:
        super().__init__()
        self.rows = 0

    def keep(self, key: tuple, answer: object) -> None:
        if key in self:
            return
        self[key] = answer
        self.rows += key[0]
        while self.rows > SECONDARY_CACHE_ROWS and self:
            old, _ = self.popitem(last=False)
            self.rows -= old[0]

    def clear(self) -> None:
        super().clear()
        self.rows = 0


_SECONDARY_CACHE = _Answers()
PRIMARY = "primary"
SECONDARY = "secondary"
COMPLEMENT = "complement"
#: why a count is withheld that the run withholds wherever it appears (SharedCounts)
ELSEWHERE = "secondary (withheld in every table that gives it)"
#: the note of a row never shown (``hidden``: a total kept only for the audit)
NOT_SHOWN = "not shown (a total kept for the audit only)"


@dataclass(frozen=True)
class DisclosurePolicy:
    """The small-number rule applied to every aggregate output.

    ``suppress_at_or_below``: counts 1..this are withheld (default 7, OpenSAFELY).
    ``rounding``: "nearest5" (default), "midpoint6" or "none".
    ``suppress_zeros``: also withhold zero counts (default False: 0 is released).
    ``secondary``: apply secondary suppression along the margins given (default True).
    ``suppress_complements``: for proportions, also withhold x when n − x is 1..threshold,
    since the complement would otherwise be derivable (default True).
    """

    suppress_at_or_below: int = 7
    rounding: Rounding = "nearest5"
    suppress_zeros: bool = False
    secondary: bool = True
    suppress_complements: bool = True

    def __post_init__(self) -> None:
        if self.rounding not in ("nearest5", "midpoint6", "none"):
            raise ValueError("rounding must be 'nearest5', 'midpoint6' or 'none'")
        if self.suppress_at_or_below < 0:
            raise ValueError("suppress_at_or_below must be zero or more")

    def _rounding_words(self) -> str:
        return {
            "nearest5": "rounded to the nearest 5",
            "midpoint6": "rounded with midpoint-6 rounding",
            "none": "not rounded",
        }[self.rounding]

    def _withheld_words(self) -> str:
        return f"{0 if self.suppress_zeros else 1}-{self.suppress_at_or_below}"

    def describe(self) -> str:
        """A footnote for reports: 'Counts of 1-7 suppressed (with further cells where needed
        so they cannot be recovered from totals); other counts rounded to the nearest 5;
        percentages and confidence intervals recomputed from released counts.'"""
        return (
            f"Counts of {self._withheld_words()} suppressed (with further cells where "
            f"needed so they cannot be recovered from totals); other counts "
            f"{self._rounding_words()}; percentages and confidence intervals recomputed "
            "from released counts."
        )

    def summary(self) -> str:
        """The rule in a few words for a caption or footer: 'counts of 1-7 suppressed, 0
        shown as 0, others rounded to the nearest 5'."""
        zero = "" if self.suppress_zeros else ", 0 shown as 0"
        return (
            f"counts of {self._withheld_words()} suppressed{zero}, others {self._rounding_words()}"
        )

    def primary_mask(self, counts: np.ndarray) -> np.ndarray:
        """True where a count must be withheld on its own value."""
        lo = 0 if self.suppress_zeros else 1
        return (counts >= lo) & (counts <= self.suppress_at_or_below)


DEFAULT_POLICY = DisclosurePolicy()


def _as_counts(values: object, name: str) -> np.ndarray:
    arr = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float)
    finite = arr[~np.isnan(arr)]
    if np.any(finite < 0):
        raise ValueError(f"{name}: counts must be zero or more")
    if np.any(finite != np.round(finite)):
        raise ValueError(f"{name}: counts must be whole numbers before disclosure control")
    return arr


def round_counts(values: object, policy: DisclosurePolicy = DEFAULT_POLICY) -> np.ndarray:
    """Round counts by the policy's rounding rule (NA stays NA). Does not suppress."""
    x = np.asarray(values, dtype=float)
    if policy.rounding == "nearest5":
        return np.floor(x / 5 + 0.5) * 5
    if policy.rounding == "midpoint6":
        return np.where(x == 0, 0.0, np.ceil(x / 6) * 6 - 3)
    return x.copy()


def count_window(
    released: object, policy: DisclosurePolicy = DEFAULT_POLICY
) -> tuple[np.ndarray, np.ndarray]:
    """The fewest and most a count released as ``released`` can be under the policy
    (missing stays missing): to the nearest 5, a 10 is 8-12; of midpoint-6 rounding, a 9 is
    8-12 (7 would have been withheld); a 0 is 0. A choice made on a count released rounded
    says nothing more than the release when it is made alike for every count of its window."""
    r = np.asarray(released, dtype=float)
    if policy.rounding == "nearest5":
        lo, hi = r - 2, r + 2
    elif policy.rounding == "midpoint6":
        lo, hi = r - 2, r + 3
    else:
        lo, hi = r.copy(), r.copy()
    gap = policy.suppress_at_or_below  # counts 1..gap are never released
    lo = np.maximum(lo, 0)
    lo = np.where((lo >= 1) & (lo <= gap), gap + 1, lo)
    hi = np.where((hi >= 1) & (hi <= gap), 0, hi)
    return lo, hi


def secondary_suppression(
    frame: pd.DataFrame,
    col: str,
    suppressed: np.ndarray,
    *,
    by: Sequence[str],
    margins: Sequence[str],
    total_label: object = None,
    audit: bool = True,
    primary_bounds: tuple[float, float] = (1, 7),
    same_total_across: str | None = None,
    protect: np.ndarray | None = None,
    avoid: np.ndarray | None = None,
    primary_rule: tuple[float, float] | None = None,
    patients_most: np.ndarray | None = None,
    nested: Sequence[tuple[Sequence[int], int]] = (),
    hidden: np.ndarray | None = None,
    known: Mapping[int, tuple[float, float]] | None = None,
    rounded: DisclosurePolicy | None = None,
) -> np.ndarray:
    """Extend a suppression mask so no withheld cell can be recovered from a total.

    For every margin column m, the cells sharing all other ``by`` values form one additive
    set (with the row whose m equals ``total_label``, if any, as its total). Any set holding
    exactly one withheld cell gets a second one: the smallest non-zero released cell, else the
    smallest released cell, else its total row. Repeats over all margins until stable.

    With ``audit`` (default) it then proves the result: for each primarily withheld cell, a
    linear programme finds the range of values consistent with every released cell and total
    (known to lie in ``primary_bounds``; the cells withheld to protect it known, as an
    attacker knows them, to be 0 or above the threshold); while any cell is pinned to a
    single value, one more
    cell is withheld (smallest non-zero cell sharing a total, else the smallest non-zero cell,
    else a total row) and the check repeats. That cell must free the pinned one — with the
    partners the one-cell rule then takes, the audit no longer fixes it — or the first cell
    linked to it that does is taken in its place (groups before totals, the smallest
    first): an IMD quintile 1 withheld beside Core20, the same deciles' count, is freed by
    Core20, not by the other quintiles nor, in the end, the register's total. A pinned cell
    the cells withheld for the ones before it have freed takes nothing more. Totals need
    to be rows of the table (``total_label``) for the audit to account for them.

    ``same_total_across`` names a ``by`` column (e.g. ``"breakdown"``) whose values each hold
    their own copy of one total: the total rows that differ only in that column are one count
    (a register's total by sex and its total by age band). They are withheld together or not
    at all, and the audit knows they are equal — withheld in one breakdown and released in
    another, a total protects nothing.

    ``protect`` marks cells withheld in another table of the run (see :class:`SharedCounts`):
    they are withheld here too and audited like primary cells, with no bounds on their
    value beyond being zero or more, so this table's totals cannot give them back (a 0 is
    not audited where the policy releases zeros: that it is 0 shows nothing). ``avoid``
    marks cells that other tables give too: withholding one withholds it everywhere, so
    among the cells that would do as a second withheld cell, they are taken last. Returns
    the new mask (a copy).

    ``primary_rule`` (default ``primary_bounds``): the counts the rule withholds at first
    for their value (1-7). A count withheld as a second cell is known to lie outside it —
    0, or 8 or more — even where the primary cells' own bounds are wider (counts of rows
    withheld for their few patients may be of any size, but a second cell was not withheld
    at first, so it is not 1-7).

    ``patients_most`` (one number per cell; missing where it does not apply): for a primary
    cell withheld for its few patients, the most one patient adds to it — a day of
    person-time a day of the interval, so the interval's length in days. Such a cell is
    known to be at most the threshold times that (7 patients of a quarter: 630 days),
    and its patients to number at least its value over that: the audit also withholds
    more where the released cells show it to be more than (threshold − 1) times that, for
    then it holds exactly the threshold's number of patients (two practices' withheld
    person-days beside their released total of 1,260 in a quarter of 90 days: 7 patients
    each).

    ``nested``: more additive sets, each some cells (row positions) and the row of their
    total, where one breakdown's groups add up to another's (IMD deciles 1 and 2 to
    quintile 1): protected, and audited, as the margins' sets are.

    ``hidden`` marks rows the release never shows: a total the cells add up to that is not
    published (measures by practice and by sex with no overall beside them, linked through
    their overall). Such a row is withheld from the start, known to the audit only as 0
    or more, never protected for its own sake nor taken as a second cell: a lone withheld
    cell beside it cannot be worked out from its set, and one its other sets give back is
    found by the audit.

    ``known``: what the release tells of some cells withheld in ``protect`` (row: least and
    greatest value) — a numerator withheld for its complement, noted so, lies within
    n − 7 .. n − 1 of its released denominator. The audit takes those bounds in place of
    "0 or more", and withholds more where the released cells then fix such a cell (58 of
    59 withheld for its complement beside a primary 7 and a total that leaves the two 65:
    58 and 7 exactly).

    ``rounded``: the policy the released cells will be rounded by (None: no rounding is
    audited). The audit above takes each released cell as its exact count; a reader has
    only its rounded value, a window of counts (:func:`count_window`). Rounded cells can
    still add up to give one back exactly: four groups of 12, each released as 10 (8-12),
    beside their total of 48, released as 50 (48-52), are 12 each. With ``rounded`` the
    audit then reads every released cell as its window — one more linear programme — and
    withholds, one at a time, a released cell whose exact count that fixes (the smallest
    such, as a second cell: here one group, then its partner by the rule above).

    The answer depends on nothing but these arguments, so it is remembered by their content
    (for up to :data:`SECONDARY_CACHE_ROWS` rows of tables; a run asks the same question
    many times: every indicator's denominators are the register's, and each
    :meth:`SharedCounts.settle` pass asks again what the one before asked). An answer
    remembered is the same mask, and the same warnings, as one worked out again.
    """
    by = list(by)
    for m in margins:
        if m not in by:
            raise ValueError(f"margin '{m}' must be one of the by columns {by}")
    args = (
        col,
        tuple(by),
        tuple(margins),
        total_label,
        audit,
        tuple(primary_bounds),
        same_total_across,
        None if primary_rule is None else tuple(primary_rule),
        tuple((tuple(int(c) for c in cells), int(total)) for cells, total in nested),
        None if rounded is None else (rounded.rounding, rounded.suppress_at_or_below),
    )
    most = None if patients_most is None else np.asarray(patients_most, dtype=float)
    if most is not None and most.shape != (len(frame),):
        raise ValueError(f"patients_most: {most.shape[0]} values for a table of {len(frame)} rows")
    try:
        key = _content_key(
            frame, by, col, suppressed, protect, avoid, args,
            None if most is None else most.tobytes(), hidden,
            None if not known else tuple(sorted((int(k), tuple(v)) for k, v in known.items())),
        )  # fmt: skip
    except Exception:  # an input the key cannot hold: worked out as it is, not remembered
        key = None
    found = _SECONDARY_CACHE.get(key) if key is not None else None
    if found is None:
        found = _secondary_suppression(
            frame, col, suppressed, by=by, margins=margins, total_label=total_label,
            audit=audit, primary_bounds=primary_bounds, same_total_across=same_total_across,
            protect=protect, avoid=avoid, primary_rule=primary_rule or primary_bounds,
            patients_most=most, nested=nested, hidden=hidden, known=known,
            rounded=None if rounded is None or rounded.rounding == "none" else rounded,
        )  # fmt: skip
        if key is not None:
            _SECONDARY_CACHE.keep(key, found)
    else:
        _SECONDARY_CACHE.move_to_end(key)
    mask, messages = found
    for message in messages:
        warnings.warn(message, UserWarning, stacklevel=3)
    return mask.copy()


def _content_key(frame: pd.DataFrame, by: list[str], col: str, *rest: object) -> tuple | None:
    """A key that is equal only for inputs of equal content: each ``by`` column's dtype and
    values (objects with their types: 1, 1.0 and "1" are three keys), ``col`` as numbers,
    masks as bytes, other arguments as they are; None when nothing is remembered."""
    if len(frame) > SECONDARY_CACHE_ROWS:
        return None
    parts: list[object] = [len(frame), MAX_AUDITED_CELLS, frame_key(frame, by)]
    parts.append(frame[col].to_numpy(dtype=float).tobytes())
    for item in rest:
        parts.append(item if item is None or isinstance(item, tuple | bytes) else mask_key(item))
    key = tuple(parts)
    hash(key)
    return key


def frame_key(frame: pd.DataFrame, columns: Sequence[str]) -> tuple:
    """The content of ``columns`` of ``frame`` as a hashable key, equal only for equal
    content: each column's dtype and values (objects with their types: 1, 1.0 and "1" are
    three keys; a NaN object equal only to itself, so at worst a key is not found)."""
    parts: list[object] = [len(frame)]
    for c in columns:
        values = frame[c].to_numpy()
        if values.dtype == object:
            parts.append((c, repr(frame[c].dtype), tuple((type(v), v) for v in values)))
        else:
            parts.append((c, repr(frame[c].dtype), values.dtype.str, values.tobytes()))
    return tuple(parts)


def mask_key(mask: object) -> bytes:
    """A mask of cells as a hashable key (its length and bits)."""
    arr = np.asarray(mask, dtype=bool)
    return np.packbits(arr).tobytes() + b"|%d" % len(arr)


def _secondary_suppression(
    frame: pd.DataFrame,
    col: str,
    suppressed: np.ndarray,
    *,
    by: list[str],
    margins: Sequence[str],
    total_label: object,
    audit: bool,
    primary_bounds: tuple[float, float],
    same_total_across: str | None,
    protect: np.ndarray | None,
    avoid: np.ndarray | None,
    primary_rule: tuple[float, float],
    patients_most: np.ndarray | None = None,
    nested: Sequence[tuple[Sequence[int], int]] = (),
    hidden: np.ndarray | None = None,
    known: Mapping[int, tuple[float, float]] | None = None,
    rounded: DisclosurePolicy | None = None,
) -> tuple[np.ndarray, list[str]]:
    """:func:`secondary_suppression` worked out: the mask and the warnings to give."""
    messages: list[str] = []
    hidden = _none_or(hidden, len(frame))
    suppressed = np.asarray(suppressed, dtype=bool) & ~hidden
    protect = _none_or(protect, len(frame)) & ~hidden
    mask = suppressed | protect | hidden
    avoid = np.zeros(len(mask), dtype=bool) if avoid is None else np.asarray(avoid, dtype=bool)
    values = frame[col].to_numpy(dtype=float)
    sets = _additive_sets(frame, by, margins, total_label, nested)
    ties = _tied_totals(frame, by, margins, total_label, same_total_across)
    primary = suppressed
    # a count withheld in another table is checked here too — unless it is 0 where 0 is
    # released anyway (policy): that it is 0 can show, as any released 0 does
    guarded = primary | (protect & ~((values == 0) & (primary_bounds[0] >= 1)))
    has_totals = any(t is not None for _, t in sets)
    seconds = _second_cell_bounds(values, primary_rule, protect | hidden)
    # a second cell known to be 0 is, to the audit, a released 0
    known_zero = np.array([b == (0, 0) for b in seconds], dtype=bool)
    # cells withheld for few patients, each of whom adds at most so much to it
    most = _few_patients_most(primary, values, patients_most, primary_rule)
    own = {int(i): (primary_bounds[0], primary_rule[1] * most[i]) for i in np.flatnonzero(most)}
    # what the audit knows of each cell it checks: its own bounds where the release says more
    told = {int(i): b for i, b in (known or {}).items() if protect[int(i)]}
    told.update(own)

    found: dict[bytes, list[int]] = {}  # (a mask the freeing check tried comes back next)

    def pinned(mask: np.ndarray) -> list[int]:
        key = mask.tobytes()
        if key not in found:
            found[key] = _pinned_cells(
                sets, mask & ~known_zero, guarded, values, primary_bounds, ties, primary,
                seconds=seconds, own=told,
            )  # fmt: skip
        return list(found[key])

    def pinned_after(mask: np.ndarray, cell: int | None) -> list[int]:
        """The cells still pinned once ``cell`` is withheld too, with the partners the
        lone-cell rule then takes."""
        trial = mask.copy()
        if cell is not None:
            trial[cell] = True
        trial = _lone_cell_pass(sets, _tie(trial, ties), values, ties, avoid, nested=len(nested))
        return pinned(trial)

    for _ in range(len(frame) + 1):
        mask = _lone_cell_pass(sets, mask, values, ties, avoid, nested=len(nested))
        if not audit or not has_totals:
            break
        if mask.sum() > MAX_AUDITED_CELLS:
            messages.append(
                f"disclosure: {int(mask.sum())} withheld cells is more than the "
                f"{MAX_AUDITED_CELLS} the linear-programming audit checks; only the "
                "one-withheld-cell-per-total rule was applied"
            )
            break

        leaks = pinned(mask)
        by_totals = bool(leaks)  # (pinned through the totals, not by its patients' days)
        if own and not leaks:
            leaks = _patients_given_back(
                sets, mask & ~known_zero, values, ties, guarded, primary_bounds, seconds,
                own, most, primary_rule[1], told=told,
            )  # fmt: skip
        if any(k in told for k in leaks):
            # one at a time: two cells at their most (7 patients' days each; a complement's
            # 58 of 59 beside a primary 7) pin each other, and one more cell withheld may
            # free both
            leaks = [next(k for k in leaks if k in told)]
        if not leaks and rounded is not None:
            # the released cells read as their rounding windows: one fixed by the rest
            bounds = _hidden_bounds(np.arange(len(frame)), primary, primary_bounds, seconds, told)
            given, unchecked = _rounding_pins(
                sets, mask & ~known_zero, values, ties, bounds, rounded
            )
            if unchecked and not given:
                messages.append(_unchecked(unchecked, "released cells"))
            if given:
                pick = _rounded_cover(given, sets, mask, values, avoid, ties)
                if pick is None:
                    messages.append(
                        f"disclosure: released cell(s) at rows {given} could be worked out "
                        "exactly from the rounded cells and totals and no cell is left to "
                        "withhold; do not publish the totals around them"
                    )
                    break
                mask[pick] = True
                mask = _tie(mask, ties)
                continue
        if not leaks:
            break
        stuck = True
        for i, leak in enumerate(leaks):
            if by_totals and i and leak not in pinned_after(mask, None):
                stuck = False  # (freed by the cells withheld for the leaks before it)
                continue
            pick = _cover_for(leak, sets, mask, values, avoid, ties)
            if pick is not None and by_totals:
                pick = _freeing_cover(
                    leak, pick, sets, mask, values, avoid, ties,
                    lambda cell, leak=leak, now=mask.copy(): leak not in pinned_after(now, cell),
                )  # fmt: skip
            if pick is not None:
                mask[pick] = True
                mask = _tie(mask, ties)
                stuck = False
        if stuck:
            messages.append(
                f"disclosure: withheld cell(s) at rows {leaks} could still be derived from "
                "totals and no cell is left to withhold; do not publish the totals around them"
            )
            break
    return mask, messages


def _additive_sets(
    frame: pd.DataFrame,
    by: list[str],
    margins: Sequence[str],
    total_label: object,
    nested: Sequence[tuple[Sequence[int], int]] = (),
) -> list[tuple[np.ndarray, int | None]]:
    """The additive sets of a table (see :func:`secondary_suppression`): each the cells'
    row positions and its total's (None where the table has no total row for it)."""
    sets: list[tuple[np.ndarray, int | None]] = []
    for m in margins:
        others = [k for k in by if k != m]
        labels = frame[m].to_numpy()
        is_total = (
            np.array([v == total_label for v in labels], dtype=bool)
            if total_label is not None
            else np.zeros(len(frame), dtype=bool)
        )
        if others:
            groups = frame.groupby(others, sort=False, dropna=False).indices.values()
        else:
            groups = [np.arange(len(frame))]
        for idx in groups:
            idx = np.asarray(idx)
            cells = idx[~is_total[idx]]
            totals = idx[is_total[idx]]
            if not cells.size:
                continue  # (a total of another margin alone: it adds up from nothing here)
            sets.append((cells, int(totals[0]) if totals.size else None))
    for cells, total in nested:  # (one breakdown's groups adding up to another's)
        sets.append((np.asarray(cells, dtype=int), int(total)))
    return sets


def _none_or(mask: object, rows: int) -> np.ndarray:
    """``mask`` as a True/False array, all False where None."""
    return np.zeros(rows, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)


def _tied_totals(
    frame: pd.DataFrame,
    by: list[str],
    margins: Sequence[str],
    total_label: object,
    same_total_across: str | None,
) -> list[np.ndarray]:
    """Groups of total rows that are one count (see ``same_total_across``)."""
    if same_total_across is None or total_label is None:
        return []
    if same_total_across not in by:
        raise ValueError(f"same_total_across '{same_total_across}' must be one of {by}")
    is_total = np.zeros(len(frame), dtype=bool)
    for m in margins:
        is_total |= np.array([v == total_label for v in frame[m].to_numpy()], dtype=bool)
    keys = [k for k in by if k != same_total_across and k not in margins]
    rows = np.flatnonzero(is_total)
    if rows.size < 2:
        return []
    totals = frame.iloc[rows]
    groups = (
        totals.groupby(keys, sort=False, dropna=False).indices.values()
        if keys
        else [np.arange(rows.size)]
    )
    return [rows[np.asarray(g)] for g in groups if len(g) > 1]


def _tie(mask: np.ndarray, ties: list[np.ndarray]) -> np.ndarray:
    """Withhold every copy of a total of which one copy is withheld."""
    for group in ties:
        if mask[group].any():
            mask[group] = True
    return mask


def _lone_cell_pass(
    sets: list[tuple[np.ndarray, int | None]],
    mask: np.ndarray,
    values: np.ndarray,
    ties: list[np.ndarray] = (),
    avoid: np.ndarray | None = None,
    nested: int = 0,
) -> np.ndarray:
    """Give every additive set with exactly one withheld cell a second one, until stable
    (copies of one total withheld together): the smallest non-zero released cell, one not
    in ``avoid`` if there is one.

    The last ``nested`` sets are one breakdown's groups adding up to a group of another
    (see :func:`secondary_suppression`: IMD deciles 5 and 6 to quintile 3). They go between
    the sets of the finer breakdown, first, and the others, last; one takes its other part
    (decile 5 beside a withheld 6, so that quintile 3 stays released), or its total where
    that part is 0 (a released 0 protects nothing). A coarser set takes, where it can, a
    group whose parts are withheld already (quintile 3 rather than 4, whose deciles are
    released and would give it back)."""
    avoid = np.zeros(len(mask), dtype=bool) if avoid is None else avoid
    mask = _tie(mask.copy(), ties)
    inner = sets[len(sets) - nested :] if nested else []
    parts = {int(total): cells for cells, total in inner}
    finer = np.zeros(len(mask), dtype=bool)
    for cells, _ in inner:
        finer[cells] = True
    outer = sets[: len(sets) - nested]
    order = (
        [(c, t, False) for c, t in outer if finer[c].any()]
        + [(c, t, True) for c, t in inner]
        + [(c, t, False) for c, t in outer if not finer[c].any()]
    )
    for _ in range(10 * len(mask) + 10):
        changed = False
        for cells, total, is_nested in order:
            hidden = cells[mask[cells]]
            if hidden.size != 1:
                continue
            if total is not None and mask[total]:
                continue  # total withheld too: nothing to subtract from
            candidates = cells[~mask[cells] & ~np.isnan(values[cells])]
            if is_nested and not (values[candidates] > 0).any():
                candidates = candidates[:0]  # (its total, below)
            if candidates.size:
                nonzero = candidates[values[candidates] > 0]
                pool = nonzero if nonzero.size else candidates
                free = pool[~avoid[pool]]
                pool = free if free.size else pool
                broken = [c for c in pool if int(c) in parts and mask[parts[int(c)]].any()]
                pool = np.asarray(broken) if broken else pool
                pick = pool[np.argmin(values[pool])]
            elif total is not None:
                pick = total
            else:
                continue  # a single-cell set with no published total: nothing to recover
            mask[pick] = True
            mask = _tie(mask, ties)
            changed = True
        if not changed:
            break
    return mask


def _second_cell_bounds(
    values: np.ndarray, primary_rule: tuple[float, float], protect: np.ndarray
) -> list[tuple[float, float | None]]:
    """What an attacker knows of each cell were it withheld as a second cell: it would
    have been released, so it is 0 or above the threshold (1-7 are withheld at first:
    ``primary_rule``) — taken on the side of that gap the cell is on, which can only pin
    more than the gap itself. (A 1 beside two second cells and their total of 17 is pinned:
    each of them is 8 or more.) No bounds when the rule has no upper end, nor for a cell
    withheld in another table (``protect``), which may be 1-7."""
    low, high = primary_rule
    out: list[tuple[float, float | None]] = [(0, None)] * len(values)
    if not np.isfinite(high):
        return out
    free = ~np.asarray(protect, dtype=bool) & ~np.isnan(values)
    for i in np.flatnonzero(free & (values > high)):
        out[i] = (high + 1, None)
    if low >= 1:
        for i in np.flatnonzero(free & (values == 0)):
            out[i] = (0, 0)
    return out


def _pinned_cells(
    sets: list[tuple[np.ndarray, int | None]],
    mask: np.ndarray,
    primary: np.ndarray,
    values: np.ndarray,
    primary_bounds: tuple[float, float],
    ties: list[np.ndarray] = (),
    bounded: np.ndarray | None = None,
    seconds: list[tuple[float, float | None]] | None = None,
    own: Mapping[int, tuple[float, float]] | None = None,
) -> list[int]:
    """Primarily withheld cells whose value is fixed by the released cells and totals (and by
    copies of one total being equal).

    ``primary`` marks the cells to check; ``bounded`` (default: the same) those known to lie
    in ``primary_bounds`` — a cell withheld in another table is checked, with bounds 0 and
    none. The other withheld cells lie within ``seconds`` (one pair per cell of the table;
    default 0 and none: see :func:`_second_cell_bounds`). ``own``: bounds of some primary
    cells in place of ``primary_bounds`` (cell: bounds).

    A cell is disclosed when the least and greatest values consistent with every released
    cell and total row are equal (Cox LH 1980, *Suppression methodology and statistical
    disclosure control*, JASA 75:377-85). Withheld cells linked through shared totals form a
    block, solved as a whole rather than by two linear programmes per cell: the cells that
    lie on a bound in every solution are pinned (one programme finds whether some solution
    is strictly inside every bound; only if none is, a few more find which cells are held);
    the others can all move off their bounds at once, so one of them is pinned exactly when
    the equations, with the held cells put in, fix it alone — no direction in their null
    space moves it (one singular value decomposition). The same cells as the per-cell
    programmes, six times faster on the asthma programme's tables.
    """
    hidden, col, a_mat, b_vec = _equations(sets, mask, values, ties)
    if a_mat is None:
        return []
    bounds = _hidden_bounds(
        hidden, primary if bounded is None else bounded, primary_bounds, seconds, own
    )
    cells = [int(k) for k in np.flatnonzero(primary & mask)]
    fixed = _fixed_variables(a_mat, b_vec, bounds, [col[k] for k in cells])
    return sorted(k for k in cells if col[k] in fixed)


def _jointly_pinned(
    sets: list[tuple[np.ndarray, int | None]],
    ties: Sequence[np.ndarray],
    x: np.ndarray,
    n: np.ndarray,
    masks: tuple[np.ndarray, np.ndarray],
    guarded: tuple[np.ndarray, np.ndarray],
    bounds: tuple[Sequence[tuple[float, float | None]], Sequence[tuple[float, float | None]]],
    complement: np.ndarray,
    threshold: float,
) -> list[tuple[int, int]]:
    """The withheld numerators and denominators (``guarded``: those to check) that one
    value fits once the two columns are read together: each numerator at most its
    denominator, and n − x 1 to ``threshold`` where the numerator is withheld for its
    complement (``complement``: the note says so) — as ``(0, row)`` for a numerator,
    ``(1, row)`` for a denominator.

    Each column's own audit reads its cells and totals alone; together they can say more
    (deciles 4 and 10's denominators released as 15 together, their numerators and decile
    3's adding up to 22: x₃ is 7 or more, so, withheld as 1-7, exactly 7). ``bounds``:
    what the audit knows of each row's count were it withheld, per column; a released
    count is taken as it is."""
    x_mask, n_mask = masks
    x_hidden, x_col, x_a, x_b = _equations(sets, x_mask, x, ties)
    n_hidden, n_col, n_a, n_b = _equations(sets, n_mask, n, ties)
    both = np.flatnonzero(x_mask & n_mask)
    width = len(x_hidden) + len(n_hidden) + len(both)
    if width == 0 or (x_a is None and n_a is None and not len(both)):
        return []
    rows, rhs = [], []
    for a_mat, b_vec, offset, size in (
        (x_a, x_b, 0, len(x_hidden)),
        (n_a, n_b, len(x_hidden), len(n_hidden)),
    ):
        if a_mat is not None:
            wide = np.zeros((a_mat.shape[0], width))
            wide[:, offset : offset + size] = a_mat
            rows += list(wide)
            rhs += list(b_vec)
    var_bounds: list[tuple[float, float | None]] = [tuple(bounds[0][int(h)]) for h in x_hidden] + [
        tuple(bounds[1][int(h)]) for h in n_hidden
    ]
    low_gap, high_gap = (1, threshold)
    for j, i in enumerate(both):  # n - x, a slack of its own: 0 or more (1-7: complement)
        row = np.zeros(width)
        row[x_col[int(i)]] = -1.0
        row[len(x_hidden) + n_col[int(i)]] = 1.0
        row[len(x_hidden) + len(n_hidden) + j] = -1.0
        rows.append(row)
        rhs.append(0.0)
        var_bounds.append((low_gap, high_gap) if complement[i] else (0, None))
    for h in x_hidden:  # beside a released denominator: at most it (less 1 .. 7)
        i = int(h)
        if not n_mask[i]:
            low, high = var_bounds[x_col[i]]
            high = n[i] if high is None else min(high, n[i])
            if complement[i]:
                low, high = max(low, n[i] - threshold), min(high, n[i] - 1)
            var_bounds[x_col[i]] = (low, high)
    for h in n_hidden:  # beside a released numerator: at least it (plus 1 .. 7)
        i = int(h)
        if not x_mask[i]:
            at = len(x_hidden) + n_col[i]
            low, high = var_bounds[at]
            low = max(low, x[i])
            if complement[i]:
                low = max(low, x[i] + 1)
                high = x[i] + threshold if high is None else min(high, x[i] + threshold)
            var_bounds[at] = (low, high)
    if not rows:
        return []
    targets = {x_col[int(k)]: (0, int(k)) for k in np.flatnonzero(guarded[0] & x_mask)}
    targets |= {
        len(x_hidden) + n_col[int(k)]: (1, int(k)) for k in np.flatnonzero(guarded[1] & n_mask)
    }
    fixed = _fixed_variables(np.array(rows), np.array(rhs), var_bounds, list(targets))
    return sorted(targets[v] for v in fixed)


def _fixed_variables(
    a_mat: np.ndarray,
    b_vec: np.ndarray,
    bounds: list[tuple[float, float | None]],
    targets: Sequence[int],
    *,
    inside: bool = False,
) -> set[int]:
    """Which of the variables ``targets`` one value fits, of every solution of ``a_mat @ v
    == b_vec`` within ``bounds`` (see :func:`_pinned_cells`: block by block). ``inside``:
    some solution is known to lie strictly inside every bound, so none is held at one."""
    # split into independent blocks (variables linked through shared equations) so each
    # linear programme stays small
    parent = list(range(a_mat.shape[1]))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for row in a_mat:
        nz = np.flatnonzero(row)
        for j in nz[1:]:
            ri, rj = find(int(nz[0])), find(int(j))
            if ri != rj:
                parent[rj] = ri
    roots = np.array([find(i) for i in range(a_mat.shape[1])])
    fixed_vars: set[int] = set()
    by_root: dict[int, list[int]] = {}
    for v in targets:
        by_root.setdefault(int(roots[v]), []).append(int(v))
    for root, mine in by_root.items():
        block = np.flatnonzero(roots == root)
        rows = np.flatnonzero(a_mat[:, block].any(axis=1))
        if rows.size == 0:
            continue
        sub_a = a_mat[np.ix_(rows, block)]
        sub_b = b_vec[rows]
        sub_bounds = [bounds[i] for i in block]
        at = {int(b): i for i, b in enumerate(block)}
        status, margin = (0, 1.0) if inside else _widest_margin(sub_a, sub_b, sub_bounds)
        if status == 2:
            continue  # no values within the bounds fit the released ones: nothing pinned
        if status == 0 and margin > 1e-7:
            on_bound = np.zeros(len(block), dtype=bool)  # some solution is inside them all
        else:
            on_bound = _held_at_bounds(sub_a, sub_b, sub_bounds)
            if on_bound is None:
                continue
        # the variables held at a bound in every solution are fixed; the others can move
        # off their bounds together, so one of them is fixed exactly when the equations,
        # with the held ones put in, fix it alone
        free = ~on_bound
        fixed = on_bound.copy()
        if free.any():
            fixed[free] = _fixed_by_equations(sub_a[:, free])
        fixed_vars |= {v for v in mine if fixed[at[v]]}
    return fixed_vars


def _equations(
    sets: list[tuple[np.ndarray, int | None]],
    mask: np.ndarray,
    values: np.ndarray,
    ties: Sequence[np.ndarray] = (),
) -> tuple[np.ndarray, dict[int, int], np.ndarray | None, np.ndarray | None]:
    """What the released cells and totals say of the withheld ones (``mask``): the withheld
    cells, each one's column, and the equations ``a @ x == b`` they satisfy (None, None when
    none: no total holds a withheld cell)."""
    hidden = np.flatnonzero(mask)
    col = {int(h): i for i, h in enumerate(hidden)}
    a_eq, b_eq = [], []
    for cells, total in sets:
        if total is None:
            continue
        row = np.zeros(len(hidden))
        rhs = 0.0
        for c in cells:
            if mask[c]:
                row[col[int(c)]] += 1
            else:
                rhs -= values[c]
        if mask[total]:
            row[col[int(total)]] -= 1
        else:
            rhs += values[total]
        if row.any():
            a_eq.append(row)
            b_eq.append(rhs)
    for group in ties:
        hidden_copies = [int(g) for g in group if mask[g]]
        for other in hidden_copies[1:]:
            row = np.zeros(len(hidden))
            row[col[hidden_copies[0]]], row[col[other]] = 1, -1
            a_eq.append(row)
            b_eq.append(0.0)
    if not a_eq:
        return hidden, col, None, None
    a_mat = np.array(a_eq)
    b_vec = np.array(b_eq)
    return hidden, col, a_mat, b_vec


def _hidden_bounds(
    hidden: np.ndarray,
    bounded: np.ndarray,
    primary_bounds: tuple[float, float],
    seconds: list[tuple[float, float | None]] | None,
    own: Mapping[int, tuple[float, float]] | None,
) -> list[tuple[float, float | None]]:
    """What an attacker knows of each withheld cell (see :func:`_pinned_cells`)."""
    own = own or {}
    return [
        own.get(int(h))
        or (primary_bounds if bounded[h] else (0, None) if seconds is None else seconds[h])
        for h in hidden
    ]


def _few_patients_most(
    primary: np.ndarray,
    values: np.ndarray,
    patients_most: np.ndarray | None,
    primary_rule: tuple[float, float],
) -> np.ndarray:
    """Per cell, the most one patient adds to it where it is withheld for its few patients
    and that is known (``patients_most``: see :func:`secondary_suppression`), else 0 — and
    0 where the cell is more than the threshold times that (a person-time that can exceed
    the interval's days: nothing is known of it)."""
    out = np.zeros(len(primary))
    if patients_most is None or not np.isfinite(primary_rule[1]):
        return out
    most = np.nan_to_num(patients_most, nan=0.0, posinf=0.0)
    known = np.asarray(primary, dtype=bool) & (most > 0) & (values <= primary_rule[1] * most)
    out[known] = most[known]
    return out


def _patients_given_back(
    sets: list[tuple[np.ndarray, int | None]],
    mask: np.ndarray,
    values: np.ndarray,
    ties: Sequence[np.ndarray],
    primary: np.ndarray,
    primary_bounds: tuple[float, float],
    seconds: list[tuple[float, float | None]],
    own: Mapping[int, tuple[float, float]],
    most: np.ndarray,
    threshold: float,
    told: Mapping[int, tuple[float, float]] | None = None,
) -> list[int]:
    """The cells withheld for their few patients (1 to ``threshold``), each of whom adds at
    most ``most`` to it, that the released cells and totals show to be more than
    (``threshold`` − 1) × ``most``: each holds exactly ``threshold`` patients. One linear
    programme a cell: the least value consistent with every released cell and total
    (``told``: bounds of other cells, as :func:`_pinned_cells` takes them)."""
    hidden, col, a_mat, b_vec = _equations(sets, mask, values, ties)
    if a_mat is None:
        return []
    bounds = [
        (low, None if high is None or not np.isfinite(high) else high)
        for low, high in _hidden_bounds(hidden, primary, primary_bounds, seconds, told or own)
    ]
    given = []
    for k in own:
        if not mask[k] or k not in col:
            continue
        objective = np.zeros(len(hidden))
        objective[col[k]] = 1.0
        res = linprog(objective, A_eq=a_mat, b_eq=b_vec, bounds=bounds, method="highs")
        if res.status == 0 and res.fun > (threshold - 1) * most[k] + 1e-7:
            given.append(k)
    return given


def _widest_margin(
    a_eq: np.ndarray, b_eq: np.ndarray, bounds: Sequence[tuple[float, float | None]]
) -> tuple[int, float]:
    """The largest t (at most 1) such that some x with ``a_eq @ x == b_eq`` lies at least t
    inside every bound, by one linear programme (sparse: a whole table's at once, in the
    audit of rounded counts); with its status (2: no such x at all)."""
    n = a_eq.shape[1]
    low = np.array([b[0] for b in bounds], dtype=float)
    high = np.array([np.inf if b[1] is None else b[1] for b in bounds], dtype=float)
    finite = np.flatnonzero(np.isfinite(high))
    rows = np.arange(n + len(finite))
    at = np.concatenate([np.arange(n), finite])
    sign = np.concatenate([-np.ones(n), np.ones(len(finite))])
    # -x_i + t <= -low_i ; x_i + t <= high_i
    a_ub = sparse.csr_matrix(
        (
            np.concatenate([sign, np.ones(len(rows))]),
            (np.concatenate([rows, rows]), np.concatenate([at, np.full(len(rows), n)])),
        ),
        shape=(len(rows), n + 1),
    )
    objective = np.zeros(n + 1)
    objective[n] = -1.0
    res = linprog(
        objective,
        A_ub=a_ub,
        b_ub=np.concatenate([-low, high[finite]]),
        A_eq=sparse.hstack([sparse.csr_matrix(a_eq), sparse.csr_matrix((len(b_eq), 1))]),
        b_eq=b_eq,
        bounds=[(None, None)] * n + [(0, 1)],
        method="highs",
    )
    return res.status, (-res.fun if res.status == 0 else 0.0)


def _held_at_bounds(
    a_eq: np.ndarray, b_eq: np.ndarray, bounds: list[tuple[float, float | None]]
) -> np.ndarray | None:
    """Which variables lie on a bound in every solution of ``a_eq @ x == b_eq`` within
    ``bounds`` (None: there is no solution).

    Each linear programme maximises the variables' distances from their bounds (each capped
    at 1), over those not yet seen off a bound; every round sees at least one more off its
    bound, until the rest stay on theirs in the best solution — so in every solution."""
    n = a_eq.shape[1]
    a_ub, b_ub = _distances_from_bounds(bounds, 2 * n, lambda i: n + i)
    a_eq2 = np.hstack([a_eq, np.zeros_like(a_eq)])
    var_bounds = [(None, None)] * n + [(0, 1)] * n
    unseen = np.ones(n, dtype=bool)
    while unseen.any():
        objective = np.concatenate([np.zeros(n), -unseen.astype(float)])
        res = linprog(
            objective,
            A_ub=a_ub,
            b_ub=b_ub,
            A_eq=a_eq2,
            b_eq=b_eq,
            bounds=var_bounds,
            method="highs",
        )
        if res.status != 0:
            return None
        off = unseen & (res.x[n:] > 1e-7)
        if not off.any():
            break
        unseen &= ~off
    return unseen


def _distances_from_bounds(
    bounds: list[tuple[float, float | None]], width: int, distance: Callable[[int], int]
) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``a_ub @ v <= b_ub`` saying each variable ``v[i]`` is at least
    ``v[distance(i)]`` from its lower bound and (where it has one) from its upper bound."""
    rows, rhs = [], []
    for i, (low, high) in enumerate(bounds):
        row = np.zeros(width)
        row[i], row[distance(i)] = -1.0, 1.0  # d - x_i <= -low
        rows.append(row)
        rhs.append(-low)
        if high is not None and np.isfinite(high):
            row = np.zeros(width)
            row[i], row[distance(i)] = 1.0, 1.0  # x_i + d <= high
            rows.append(row)
            rhs.append(high)
    return np.array(rows), np.array(rhs)


def _fixed_by_equations(a_eq: np.ndarray) -> np.ndarray:
    """Per variable, whether the equations alone fix it: no direction the equations allow
    (their null space) moves it."""
    _, sing, vt = np.linalg.svd(a_eq)
    rank = int((sing > 1e-9 * max(1.0, float(sing[0]) if sing.size else 1.0)).sum())
    null = vt[rank:]
    if null.shape[0] == 0:
        return np.ones(a_eq.shape[1], dtype=bool)
    return np.abs(null).max(axis=0) < 1e-9


def _rounding_pins(
    sets: list[tuple[np.ndarray, int | None]],
    mask: np.ndarray,
    values: np.ndarray,
    ties: Sequence[np.ndarray],
    bounds: Sequence[tuple[float, float | None]],
    policy: DisclosurePolicy,
    windows: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[list[int], int]:
    """The released cells whose exact count one value fits, each released cell read as its
    rounding window (:func:`count_window`, or ``windows``: each row's least and most) and
    each withheld one (``mask``) within
    ``bounds`` (one pair per row of the table), beside the equations of ``sets`` and
    ``ties`` (Cox 1980, as :func:`_pinned_cells`). A released cell whose window is one
    value (a 0) is a known number.

    One linear programme over the whole table first: where some solution lies inside every
    bound and window, only the equations alone could fix a cell (one singular value
    decomposition a block); the block-by-block programmes of :func:`_fixed_variables` run
    only where none does. With the cells: how many released cells were left unchecked, in
    blocks of more than :data:`MAX_AUDITED_CELLS` where none does."""
    lo, hi = count_window(round_counts(values, policy), policy) if windows is None else windows
    open_ = ~mask & (lo < hi)
    if not open_.any():
        return [], 0
    variable = mask | open_
    # the counts that are numbers to the reader: their windows' one value (a released 0)
    known = np.where(variable, np.nan, lo)
    hidden, col, a_mat, b_vec = _equations(sets, variable, known, ties)
    if a_mat is None:
        return [], 0
    usable = ~np.isnan(b_vec)  # (a set holding a missing count says nothing)
    a_mat, b_vec = a_mat[usable], b_vec[usable]
    if not len(b_vec):
        return [], 0
    var_bounds = [(float(lo[h]), float(hi[h])) if open_[h] else tuple(bounds[h]) for h in hidden]
    targets = [col[int(k)] for k in np.flatnonzero(open_) if int(k) in col]
    if not targets:
        return [], 0
    status, margin = _widest_margin(a_mat, b_vec, var_bounds)
    if status == 2:
        return [], 0  # no counts within the windows fit: nothing to pin
    if status == 0 and margin > 1e-7:
        fixed = _fixed_variables(a_mat, b_vec, var_bounds, targets, inside=True)
        return sorted(int(hidden[v]) for v in fixed), 0
    # some block holds a count on a bound of every solution: block by block, the blocks
    # with a solution inside every bound checked by their equations alone
    linked = sparse.csr_matrix(a_mat != 0)
    _, block_of = connected_components(linked.T @ linked, directed=False)
    wanted = set(targets)
    fixed: set[int] = set()
    unchecked = 0
    for block in np.unique(block_of[targets]):
        cols = np.flatnonzero(block_of == block)
        rows = np.flatnonzero(a_mat[:, cols].any(axis=1))
        sub_a, sub_b = a_mat[np.ix_(rows, cols)], b_vec[rows]
        sub_bounds = [var_bounds[c] for c in cols]
        mine = [i for i, c in enumerate(cols) if c in wanted]
        status, margin = _widest_margin(sub_a, sub_b, sub_bounds)
        inside = status == 0 and margin > 1e-7
        if not inside and len(cols) > MAX_AUDITED_CELLS:
            unchecked += len(mine)  # (too many to check on their bounds one by one)
            continue
        found = _fixed_variables(sub_a, sub_b, sub_bounds, mine, inside=inside)
        fixed |= {int(cols[i]) for i in found}
    return sorted(int(hidden[v]) for v in fixed), unchecked


def rounded_parts_given_back(
    frame: pd.DataFrame,
    cols: Sequence[str],
    shown: np.ndarray,
    *,
    by: Sequence[str],
    margins: Sequence[str],
    total_label: object = None,
    same_total_across: str | None = None,
    nested: Sequence[tuple[Sequence[int], int]] = (),
    avoid: np.ndarray | None = None,
    policy: DisclosurePolicy = DEFAULT_POLICY,
) -> int | None:
    """A row to withhold so that counts the release gives only rounded — never as cells of
    their own — cannot be worked out exactly from one another; None where none can.

    Each of ``cols`` is such a count, one per row of ``frame`` (the same table, sets and
    copies of one total as :func:`secondary_suppression`'s), and ``shown`` the rows where
    a reader has them, rounded by ``policy``: a standardised rate gives its younger bands'
    events rounded (:func:`pophealth.query.measures._rounded_bands`), in each row whose
    rate it shows. Rows not shown are, to the audit, 0 or more; each column is audited on
    its own. Four practices' 12 events aged 65-69, each given
    as 10 (8-12), beside the overall's 48, given as 50 (48-52), are 12 each: one row is
    returned (the smallest such count that is a cell of some set, as
    :func:`secondary_suppression` does for rounded cells), for the caller to withhold — and
    with it what the rule then withholds — before asking again. A 0 found exactly is not a
    reason (the policy shows a 0 as 0), unless it withholds zeros. Where no row is left to
    withhold, or the table is too big to check, a warning says so."""
    if policy.rounding == "none":
        return None  # (unrounded, each is known exactly anyway: nothing more to find)
    by = list(by)
    sets = _additive_sets(frame, by, margins, total_label, nested)
    if not any(t is not None for _, t in sets):
        return None
    ties = _tied_totals(frame, by, margins, total_label, same_total_across)
    mask = ~np.asarray(shown, dtype=bool)
    bounds = [(0, None)] * len(frame)
    seen: set[bytes] = set()
    for col in cols:
        values = frame[col].to_numpy(dtype=float)
        if values.tobytes() in seen:
            continue  # (the same counts as a column before: a band nobody is in)
        seen.add(values.tobytes())
        # rounded, never withheld: a 0 to the nearest 5 is 0-2 and a 5 is 3-7 (a 0 of
        # midpoint-6 rounding is 0 only)
        rounded = round_counts(values, policy)
        lo, hi = count_window(rounded, dataclasses.replace(policy, suppress_at_or_below=0))
        if policy.rounding == "midpoint6":
            hi = np.where(rounded == 0, 0.0, hi)
        given, unchecked = _rounding_pins(
            sets, mask, values, ties, bounds, policy, windows=(lo, hi)
        )
        # a 0 found exactly is one the policy would show as 0 anyway
        given = [k for k in given if values[k] > 0 or policy.suppress_zeros]
        if unchecked and not given:
            warnings.warn(
                _unchecked(unchecked, f"rounded counts ({col})"), UserWarning, stacklevel=2
            )
        if not given:
            continue
        pick = _rounded_cover(given, sets, mask, values, avoid, ties)
        if pick is not None:
            return pick
        warnings.warn(
            f"disclosure: rounded counts ({col}) at rows {given} could be worked out exactly "
            "from the others and no row is left to withhold; do not publish the totals "
            "around them",
            UserWarning,
            stacklevel=2,
        )
    return None


def fixed_within_windows(
    sets: list[tuple[np.ndarray, int | None]],
    low: np.ndarray,
    high: np.ndarray,
    hidden: np.ndarray,
    policy: DisclosurePolicy = DEFAULT_POLICY,
) -> list[int]:
    """The rows a reader can work out exactly though each is given only as a window of
    counts: row ``i`` lies in ``low[i]``-``high[i]`` unless ``hidden`` (then 0 or more),
    and each set's cells add up to its total (a row, or None for no row). Rows whose
    window is one value, and hidden ones, are not returned. The caller writes the facts as
    sets (an inequality, a total at most its cells' sum, as a set with a hidden row for the
    difference). A warning names the rows left unchecked in blocks too big to audit."""
    hidden = np.asarray(hidden, dtype=bool)
    values = np.where(hidden, 0.0, np.asarray(low, dtype=float))
    bounds = [(0, None)] * len(values)
    given, unchecked = _rounding_pins(
        sets, hidden, values, [], bounds, policy, windows=(np.asarray(low), np.asarray(high))
    )
    if unchecked and not given:
        warnings.warn(_unchecked(unchecked, "rounded counts"), UserWarning, stacklevel=2)
    return given


def _unchecked(count: int, what: str) -> str:
    """The warning for ``count`` counts the audit of rounding windows left unchecked."""
    return (
        f"disclosure: {count} {what} in blocks of more than {MAX_AUDITED_CELLS} were not "
        "checked against their rounding windows (too many for the linear-programming audit)"
    )


def _rounded_cover(
    pinned: Sequence[int],
    sets: list[tuple[np.ndarray, int | None]],
    mask: np.ndarray,
    values: np.ndarray,
    avoid: np.ndarray | None,
    ties: Sequence[np.ndarray],
) -> int | None:
    """The cell to withhold for released cells the rounded release gives back exactly
    (``pinned``): the smallest of them that is a cell of some set — a group, or a
    subtotal such as a PCN's count, which adds up to a total with others — (one other
    tables do not give too, where there is one), else a cover for the first
    (:func:`_cover_for`). A practice beneath a pinned PCN count frees nothing: the PCNs'
    windows fix it, whatever is withheld below it."""
    members = _set_cells(sets)
    cells = [k for k in pinned if k in members and not mask[k]]
    free = [k for k in cells if avoid is None or not avoid[k]]
    if free or cells:
        return min(free or cells, key=lambda k: (values[k], k))
    for k in pinned:
        pick = _cover_for(k, sets, mask, values, avoid, ties)
        if pick is not None:
            return pick
    return None


def _set_cells(sets: list[tuple[np.ndarray, int | None]]) -> set[int]:
    """The rows that are a cell of some additive set (a group, or a subtotal adding up to
    a total with others), not only a total."""
    return {int(c) for cells, _ in sets for c in cells}


def _cover_for(
    k: int,
    sets: list[tuple[np.ndarray, int | None]],
    mask: np.ndarray,
    values: np.ndarray,
    avoid: np.ndarray | None = None,
    ties: Sequence[np.ndarray] = (),
) -> int | None:
    """Another cell to withhold so cell k can no longer be pinned down (in each pool, one
    not in ``avoid`` if there is one): a cell sharing a total with it, else one linked to
    it through totals (and copies of one total: ``ties``) — a cell of another interval's
    table adds nothing to what k's totals say of it — and a total only where no cell will
    do (Core20's total, where a decile of the rest would free it, is the register's)."""
    near: list[int] = []
    for cells, total in sets:
        members = list(cells) + ([total] if total is not None else [])
        if k in members:
            near += [int(m) for m in members if not mask[m]]
    totals = {t for _, t in sets if t is not None}
    linked = _linked_cells(k, sets, ties, len(mask))
    for pool in (
        [m for m in near if values[m] > 0 and m not in totals],
        [int(m) for m in np.flatnonzero(~mask & linked) if values[m] > 0 and m not in totals],
        [m for m in near if values[m] > 0],
        [int(m) for m in np.flatnonzero(~mask & linked) if m in totals],
    ):
        free = [m for m in pool if avoid is None or not avoid[m]]
        if free or pool:
            return min(free or pool, key=lambda m: values[m])
    return None


def _freeing_cover(
    k: int,
    pick: int,
    sets: list[tuple[np.ndarray, int | None]],
    mask: np.ndarray,
    values: np.ndarray,
    avoid: np.ndarray | None,
    ties: Sequence[np.ndarray],
    frees: Callable[[int], bool],
    tries: int = 40,
) -> int:
    """``pick`` (:func:`_cover_for`'s cell for pinned cell k) where withholding it — with
    the partners the lone-cell rule then takes — frees k (``frees``), else the first cell
    linked to k that does: groups before cells that are only totals, cells other tables
    do not give before those they do, the smallest first (at most ``tries`` of them); else
    ``pick``. A cell near k may not be what pins it: an IMD quintile 1 withheld beside
    Core20, the same deciles' count, is pinned by Core20 alone, and the smallest cells
    sharing a total with the quintile — other quintiles, then PCNs and ethnic groups
    linked through the register's total — free nothing, one after another, until the
    register's total goes too."""
    if frees(pick):
        return pick
    members = _set_cells(sets)
    linked = _linked_cells(k, sets, ties, len(mask))
    candidates = [int(m) for m in np.flatnonzero(linked & ~mask) if int(m) != pick]
    candidates.sort(
        key=lambda m: (
            m not in members,
            avoid is not None and bool(avoid[m]),
            values[m] <= 0,
            values[m],
            m,
        )
    )
    for m in candidates[:tries]:
        if frees(m):
            return m
    return pick


def _linked_cells(
    k: int, sets: list[tuple[np.ndarray, int | None]], ties: Sequence[np.ndarray], size: int
) -> np.ndarray:
    """The cells linked to cell k through the additive sets and copies of one total."""
    groups = [
        np.asarray([*cells, *([total] if total is not None else [])], dtype=int)
        for cells, total in sets
    ] + [np.asarray(t, dtype=int) for t in ties]
    linked = np.zeros(size, dtype=bool)
    linked[k] = True
    grown = True
    while grown:
        grown = False
        for g in groups:
            if g.size and linked[g].any() and not linked[g].all():
                linked[g] = True
                grown = True
    return linked


def apply(
    df: pd.DataFrame,
    count_cols: Sequence[str],
    *,
    policy: DisclosurePolicy = DEFAULT_POLICY,
    by: Sequence[str] | None = None,
    margins: Sequence[str] | None = None,
    total_label: object = None,
    patients: Mapping[str, str] | None = None,
    same_total_across: str | None = None,
    withhold: Mapping[str, object] | None = None,
    avoid: Mapping[str, object] | None = None,
    most_per_patient: Mapping[str, str] | None = None,
    nested: Sequence[tuple[Sequence[int], int]] = (),
    hidden: object = None,
) -> pd.DataFrame:
    """Release a table of counts under ``policy``: suppress, secondary-suppress, round.

    ``count_cols``: the count columns (each treated on its own). ``by``: the key columns that
    identify a cell. ``margins``: the ``by`` columns along which cells add up to a total (see
    :func:`secondary_suppression`); ``total_label`` marks total rows (e.g. "Total") already in
    the table; ``same_total_across`` (e.g. "breakdown") says that the total rows differing
    only in that column are one count (see :func:`secondary_suppression`). Other columns are
    copied as they are, so ``df`` must not carry values derived
    from the true counts (ratios, rates, CIs): compute them afterwards from the released
    counts (see :func:`release_proportions`).

    ``patients`` maps a count of rows to the column of distinct patients behind it: the
    count is withheld too when those patients number 1 to the threshold, and the patients
    column is dropped from the result. ``most_per_patient`` maps such a count to the column
    of the most one patient can add to each of its cells (for person-days, the interval's
    length in days): a cell withheld for its few patients is then known to be at most the
    threshold times that, and is protected so that the released cells cannot show it to
    hold exactly the threshold's number of patients (see :func:`secondary_suppression`);
    that column is dropped from the result too. ``nested``: more additive sets of the
    table's rows (see :func:`secondary_suppression`). ``hidden``: a mask of rows never
    to be shown — totals the cells add up to that are not published (see
    :func:`secondary_suppression`): withheld, noted as such, never a reason to withhold
    more.

    ``withhold`` maps a count column to a mask of its cells withheld in another table of the
    run (:meth:`SharedCounts.withheld`): they are withheld here too, and protected by this
    table's secondary suppression like primary cells. ``avoid`` maps a count column to a
    mask of its cells that other tables give too, taken last as secondary cells (see
    :meth:`SharedCounts.masks`, which gives both).

    Returns a copy with released counts (float, NA when withheld) and a ``disclosure_note``
    column naming withheld counts and why (primary ≤ threshold, or secondary).
    """
    out = df.copy()
    by = list(by or [])
    few = _few_patients(out, patients or {}, policy)
    most = _most_per_patient(out, most_per_patient or {}, few)
    notes = [[] for _ in range(len(out))]
    unseen = _none_or(hidden, len(out))
    for col in count_cols:
        if col not in out.columns:
            raise ValueError(f"count column '{col}' not found (columns: {list(out.columns)})")
        values = _as_counts(out[col], col)
        primary = (policy.primary_mask(values) | few.get(col, False)) & ~unseen
        elsewhere = _elsewhere(withhold, col, len(out)) & ~primary & ~unseen
        mask = primary | elsewhere | unseen
        if policy.secondary and margins:
            work = out[by].copy()
            work[col] = values
            mask = secondary_suppression(
                work,
                col,
                primary,
                by=by,
                margins=margins,
                total_label=total_label,
                primary_bounds=_bounds(policy, few.get(col)),
                primary_rule=_bounds(policy, None),
                same_total_across=same_total_across,
                protect=elsewhere,
                avoid=_elsewhere(avoid, col, len(out)),
                patients_most=most.get(col),
                nested=nested,
                hidden=unseen,
                rounded=policy,
            )
        released = round_counts(values, policy)
        released[mask] = np.nan
        out[col] = released
        for i in np.flatnonzero(mask):
            why = NOT_SHOWN if unseen[i] else _why_withheld(col, i, few, primary, elsewhere)
            notes[i].append(f"{col} {why}")
    dropped = [*(patients or {}).values(), *(most_per_patient or {}).values()]
    out = out.drop(columns=list(dict.fromkeys(dropped)))
    out["disclosure_note"] = ["; ".join(n) if n else None for n in notes]
    return out


def _elsewhere(withhold: Mapping[str, object] | None, col: str, rows: int) -> np.ndarray:
    """The mask of ``col``'s cells withheld in another table (all False when none given)."""
    given = (withhold or {}).get(col)
    if given is None:
        return np.zeros(rows, dtype=bool)
    mask = np.asarray(given, dtype=bool)
    if mask.shape != (rows,):
        raise ValueError(f"withhold['{col}']: {mask.shape[0]} values for a table of {rows} rows")
    return mask


def _few_patients(
    df: pd.DataFrame, patients: Mapping[str, str], policy: DisclosurePolicy
) -> dict[str, np.ndarray]:
    """Per count column of rows: True where the distinct patients behind the count number
    1 to the threshold (the count is then withheld whatever its own size)."""
    few = {}
    for col, pcol in patients.items():
        if pcol not in df.columns:
            raise ValueError(f"patients column '{pcol}' for '{col}' not found")
        n = _as_counts(df[pcol], pcol)
        few[col] = (n >= 1) & (n <= policy.suppress_at_or_below)
    return few


def _most_per_patient(
    df: pd.DataFrame, most: Mapping[str, str], few: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Per count column of :func:`apply`'s ``most_per_patient``: the most one patient adds
    to each cell withheld for its few patients (NaN elsewhere)."""
    out = {}
    for col, mcol in most.items():
        if mcol not in df.columns:
            raise ValueError(f"most_per_patient column '{mcol}' for '{col}' not found")
        if col not in few:
            raise ValueError(f"most_per_patient for '{col}': give the patients behind it too")
        values = pd.to_numeric(df[mcol], errors="coerce").to_numpy(dtype=float)
        out[col] = np.where(few[col], values, np.nan)
    return out


def _bounds(policy: DisclosurePolicy, few: np.ndarray | None) -> tuple[float, float]:
    """What an attacker knows of a primarily withheld count: 1 to the threshold — unless
    some were withheld for their few patients, whose counts of rows can be any size from 1
    (a patient behind a count has a row in it). From 0 where zeros are withheld too."""
    low = 0 if policy.suppress_zeros else 1
    if few is not None and few.any():
        return (low, np.inf)
    return (low, policy.suppress_at_or_below)


def _why_primary(col: str, i: int, few: dict[str, np.ndarray]) -> str:
    return f"{PRIMARY} (few patients)" if col in few and few[col][i] else PRIMARY


def _why_withheld(
    col: str, i: int, few: dict[str, np.ndarray], primary: np.ndarray, elsewhere: np.ndarray
) -> str:
    """The note for withheld cell ``i`` of ``col``: primary, withheld elsewhere in the run,
    or secondary."""
    if primary[i]:
        return _why_primary(col, i, few)
    return ELSEWHERE if elsewhere[i] else SECONDARY


def release_count(n: int, policy: DisclosurePolicy = DEFAULT_POLICY) -> int | None:
    """One count released under ``policy``: ``None`` when withheld (1-7 by default), else
    rounded. For a number shown on its own; a table of counts goes through :func:`apply`,
    which also protects cells that add up to a total."""
    value = _as_counts([n], "count")[0]
    if np.isnan(value) or policy.primary_mask(np.array([value]))[0]:
        return None
    return int(round_counts(np.array([value]), policy)[0])


def count_text(n: int, policy: DisclosurePolicy = DEFAULT_POLICY) -> str:
    """:func:`release_count` as words for a console line: "about 430", "1-7" (withheld),
    "0"; the exact number only under ``rounding="none"``."""
    released = release_count(n, policy)
    if released is None:
        return f"{0 if policy.suppress_zeros else 1}-{policy.suppress_at_or_below}"
    if released == 0 or policy.rounding == "none":
        return f"{released:,}"
    return f"about {released:,}"


def release_proportions(
    df: pd.DataFrame,
    numerator: str,
    denominator: str,
    *,
    policy: DisclosurePolicy = DEFAULT_POLICY,
    by: Sequence[str] | None = None,
    margins: Sequence[str] | None = None,
    total_label: object = None,
    multiplier: float = 100,
    confidence: float | Sequence[float] = DEFAULT_CONFIDENCE,
    patients: Mapping[str, str] | None = None,
    same_total_across: str | None = None,
    withhold: Mapping[str, object] | None = None,
    avoid: Mapping[str, object] | None = None,
    nested: Sequence[tuple[Sequence[int], int]] = (),
    hidden: object = None,
) -> pd.DataFrame:
    """Release a numerator/denominator table with value and Wilson CI from released counts.

    Withholds a row's numerator when it is 1-threshold, when its complement n − x is
    1-threshold (``policy.suppress_complements``) or when the denominator is withheld;
    withholds a denominator when it is ≤ threshold; then secondary suppression on both along
    ``margins``; then rounds. ``value`` (× ``multiplier``; 100 = percentage) and the Wilson
    limits are recomputed from the *released* counts, and are NA wherever either is withheld.
    ``patients`` (for proportions of rows) maps ``numerator`` and/or ``denominator`` to the
    column of distinct patients behind it: a count whose patients number 1 to the threshold
    is withheld as a primary one, and the patients columns are dropped from the result.
    ``same_total_across`` (e.g. "breakdown"): the total rows that differ only in that column
    are one count, withheld in all or in none (see :func:`secondary_suppression`).
    ``withhold`` maps ``numerator`` and/or ``denominator`` to a mask of cells withheld in
    another table of the run, ``avoid`` to a mask of cells other tables give too (see
    :func:`apply`). ``nested``: more additive sets of the table's rows, where one
    breakdown's groups add up to another's (see :func:`secondary_suppression`).
    ``hidden``: rows never to be shown, both counts withheld (see :func:`apply`).

    Returns the input's ``by`` columns and other columns, with ``numerator``/``denominator``
    replaced by released counts, plus ``value``, the limit columns, ``confidence``,
    ``statistic``, ``method`` and ``disclosure_note``.
    """
    levels = normalise_confidence(confidence)
    out = df.copy()
    by = list(by or [])
    x = _as_counts(out[numerator], numerator)
    n = _as_counts(out[denominator], denominator)
    if np.any(x > n):
        raise ValueError("numerator must be less than or equal to denominator for a proportion")
    few = _few_patients(out, patients or {}, policy)
    out = out.drop(columns=list(dict.fromkeys((patients or {}).values())))
    unseen = _none_or(hidden, len(out))
    n_primary, n_elsewhere, x_primary, x_comp, x_elsewhere = (
        m & ~unseen for m in _first_masks(x, n, policy, few, withhold, numerator, denominator)
    )
    n_mask = n_primary | n_elsewhere | unseen
    x_mask = x_primary | x_comp | n_mask | x_elsewhere
    if policy.secondary and margins:
        work = out[by].copy()
        work["__x"], work["__n"] = x, n
        sets = _additive_sets(work, by, margins, total_label, nested)
        ties = _tied_totals(work, by, margins, total_label, same_total_across)
        x_bounds, n_bounds = (
            _bounds(policy, few.get(numerator)),
            _bounds(policy, few.get(denominator)),
        )

        def column(col, primary, mask, bounds, name, known=None) -> np.ndarray:
            """One column's secondary suppression (its cells withheld but not primary
            audited as 0 or more, or as ``known``)."""
            return secondary_suppression(
                work, col, primary, by=by, margins=margins, total_label=total_label,
                primary_bounds=bounds, primary_rule=_bounds(policy, None),
                same_total_across=same_total_across, protect=mask & ~primary,
                avoid=_elsewhere(avoid, name, len(out)), nested=nested, hidden=unseen,
                known=known, rounded=policy,
            )  # fmt: skip

        for _joint in range(len(out) + 1):
            for _ in range(5):
                # the attacker knows a primary count lies in 1-7 (the rule is published); every
                # other withheld count (a complement, with its denominator, secondary, withheld
                # elsewhere) only that it is 0 or more: each audited with what is known of it
                # (two numerators of 7 beside a released total of 14 are 7 each)
                # a numerator withheld for its complement, beside its released denominator, is
                # n - 7 .. n - 1 to anyone reading the note
                told = {
                    int(i): (n[i] - policy.suppress_at_or_below, n[i] - 1)
                    for i in np.flatnonzero(x_comp & ~n_mask)
                }
                new_x = column("__x", x_primary, x_mask, x_bounds, numerator, told)
                new_n = column("__n", n_primary, n_mask, n_bounds, denominator)
                # a withheld denominator withholds its numerator (it would give it back via p)
                new_x |= new_n
                if (new_x == x_mask).all() and (new_n == n_mask).all():
                    break
                x_mask, n_mask = new_x, new_n
            # then the two columns read together: a numerator is at most its denominator
            # (and n - 7 .. n - 1 where withheld for its complement)
            audited = (x_mask | n_mask).sum() <= MAX_AUDITED_CELLS
            if not audited or not any(total is not None for _, total in sets):
                break
            guard = [
                (primary | (mask & ~primary & ~((values == 0) & (low >= 1)))) & ~unseen
                for primary, mask, values, (low, _) in (
                    (x_primary, x_mask, x, x_bounds), (n_primary, n_mask, n, n_bounds),
                )
            ]  # fmt: skip
            known = [
                [bounds if first[i] else (0, None) for i in range(len(out))]
                for first, bounds in ((x_primary, x_bounds), (n_primary, n_bounds))
            ]
            leaks = _jointly_pinned(
                sets, ties, x, n, (x_mask, n_mask), (guard[0], guard[1]), (known[0], known[1]),
                x_comp, policy.suppress_at_or_below,
            )  # fmt: skip
            if not leaks:
                break
            side, k = leaks[0]
            mask, values, name = (x_mask, x, numerator) if side == 0 else (n_mask, n, denominator)
            pick = _cover_for(k, sets, mask, values, _elsewhere(avoid, name, len(out)), ties)
            if pick is None:
                warnings.warn(
                    f"disclosure: withheld {name} at row {k} could still be derived from the "
                    "numerators and denominators together and no cell is left to withhold; "
                    "do not publish the totals around it",
                    UserWarning,
                    stacklevel=2,
                )
                break
            mask = mask.copy()
            mask[pick] = True
            mask = _tie(mask, ties)
            if side == 0:
                x_mask = mask
            else:
                n_mask = mask
                x_mask = x_mask | n_mask
    xr = round_counts(x, policy)
    nr = round_counts(n, policy)
    xr[x_mask] = np.nan
    nr[n_mask] = np.nan
    out[numerator] = xr
    out[denominator] = nr
    with np.errstate(invalid="ignore", divide="ignore"):
        out["value"] = scaled_quotient(xr, nr, multiplier)
        limits = []
        for c in levels:
            lo, hi = wilson(xr, nr, c)
            limits.append((lo * multiplier, hi * multiplier))
    add_limits(out, levels, limits)
    out["confidence"] = ", ".join(f"{c * 100:g}%" for c in levels)
    out["statistic"] = "percentage" if multiplier == 100 else f"proportion of {multiplier:g}"
    out["method"] = np.where(np.isnan(out["value"]), None, "Wilson (from released counts)")
    notes = []
    for i in range(len(out)):
        parts = []
        if unseen[i]:
            notes.append(f"{numerator} {NOT_SHOWN}; {denominator} {NOT_SHOWN}")
            continue
        if x_mask[i]:
            why = (
                PRIMARY
                if x_primary[i]
                else COMPLEMENT
                if x_comp[i]
                else "with denominator"
                if n_mask[i]
                else ELSEWHERE
                if x_elsewhere[i]
                else SECONDARY
            )
            if x_primary[i]:
                why = _why_primary(numerator, i, few)
            parts.append(f"{numerator} {why}")
        if n_mask[i]:
            why = _why_withheld(denominator, i, few, n_primary, n_elsewhere)
            parts.append(f"{denominator} {why}")
        notes.append("; ".join(parts) or None)
    out["disclosure_note"] = notes
    return out


def _first_masks(
    x: np.ndarray,
    n: np.ndarray,
    policy: DisclosurePolicy,
    few: dict[str, np.ndarray],
    withhold: Mapping[str, object] | None,
    numerator: str,
    denominator: str,
) -> tuple[np.ndarray, ...]:
    """What :func:`release_proportions` withholds before secondary suppression: the
    denominators withheld on their own value and those withheld elsewhere in the run, the
    numerators withheld on their own value, for their complement and elsewhere."""
    n_primary = policy.primary_mask(n) | few.get(denominator, False)
    n_elsewhere = _elsewhere(withhold, denominator, len(n)) & ~n_primary
    x_primary = policy.primary_mask(x) | few.get(numerator, False)
    comp = n - x
    t = policy.suppress_at_or_below
    x_comp = (comp >= 1) & (comp <= t) & policy.suppress_complements & ~x_primary
    x_elsewhere = _elsewhere(withhold, numerator, len(x)) & ~x_primary & ~x_comp
    return n_primary, n_elsewhere, x_primary, x_comp, x_elsewhere


def withheld_elsewhere_key(
    df: pd.DataFrame,
    numerator: str,
    denominator: str,
    *,
    policy: DisclosurePolicy = DEFAULT_POLICY,
    withhold: Mapping[str, object] | None = None,
    avoid: Mapping[str, object] | None = None,
) -> tuple:
    """What of ``withhold`` and ``avoid`` :func:`release_proportions` (with no
    ``patients``) decides by, as a hashable key: of the cells withheld elsewhere, those not
    withheld here already (a count withheld on its own value is withheld whether or not
    another table withholds it; a numerator is withheld with its denominator). With the
    table's counts and the other arguments the same, an equal key is the same release —
    so one table built again in each :meth:`SharedCounts.settle` pass, the counts around
    it withheld alike, is released alike."""
    x = _as_counts(df[numerator], numerator)
    n = _as_counts(df[denominator], denominator)
    n_primary, n_elsewhere, x_primary, x_comp, x_elsewhere = _first_masks(
        x, n, policy, {}, withhold, numerator, denominator
    )
    x_elsewhere &= ~(n_primary | n_elsewhere)
    rows = len(df)
    return (
        mask_key(n_elsewhere),
        mask_key(x_elsewhere),
        mask_key(_elsewhere(avoid, numerator, rows)),
        mask_key(_elsewhere(avoid, denominator, rows)),
    )


#: A count's identity across the tables of a run: its population (scope) and group, e.g.
#: ``("cvd.htn_target_under80.denominator", "pcn_name", "North PCN")`` or, for the whole
#: population, ``("asthma.register", "Total")``. ``None``: a cell no other table gives.
CountKey = tuple


def count_keys(scope: str, breakdowns: Sequence[object], groups: Sequence[object]) -> list:
    """The identity of each cell of a breakdown table: ``(scope, "Total")`` for a Total row,
    else ``(scope, breakdown, group)`` with the group as text (``1.0``, ``1`` and ``"1"``
    are one IMD quintile; a missing group is "Unknown", as in :mod:`pophealth.equity`)."""
    keys = []
    for b, g in zip(breakdowns, groups, strict=True):
        label = _group_text(g)
        keys.append((scope, "Total") if label == "Total" else (scope, str(b), label))
    return keys


def _group_text(g: object) -> str:
    if g is None or (isinstance(g, float) and np.isnan(g)):
        return "Unknown"
    if isinstance(g, float | np.floating) and float(g).is_integer():
        return str(int(g))
    return str(g)


class SharedCounts:
    """One decision per count across every table of one run.

    Each table's secondary suppression is decided on that table's totals and margins. The
    same count — a PCN's number of patients in an indicator's denominator, the people in IMD
    quintile 1, the registered population — often sits in several tables of one run, and
    withheld in one (to protect a small cell there) and released in another, it protects
    nothing. A ``SharedCounts`` is the run's register of those counts, by identity
    (:data:`CountKey`, built with :func:`count_keys`): a table consults it before its
    disclosure control (:meth:`withheld`, passed to :func:`apply` or
    :func:`release_proportions` as ``withhold=``, where the cells are withheld and protected
    by that table's audit like primary cells) and feeds it afterwards (:meth:`record`).

    A table released early in a run cannot know what a later table will withhold, so the
    programme builds its tables inside :meth:`settle`, which builds them again, with every
    count withheld so far, until a pass withholds nothing new (the set of withheld counts
    only grows, so this ends; in practice after two or three passes). Then every copy of a
    count is withheld, or released with one value — :meth:`record` refuses a count released
    with two different values (two copies that are not one count: a wrong key).

    A pass asks much of what the pass before asked: a table whose counts, and whose cells
    withheld elsewhere, are the same as in an earlier pass is the same table. So an equity
    view is worked out once per run for each such input and remembered (:meth:`remember`,
    used by :func:`pophealth.equity.equity_view`), and :func:`secondary_suppression`
    remembers its answers by the content of its inputs; the last pass, which withholds
    nothing new, is then mostly remembered tables. Every pass is still built whole and
    recorded, so the passes, and what each withholds, are those of building every table
    afresh (``remembering = False``; tests/programmes/test_settle_remembered.py compares the two).

    A new programme takes part by keying its counts with :func:`count_keys` under scopes
    that name the population and filter (``"<programme>.<flag>"``) and building its tables
    in :meth:`settle`; nothing else in the core changes.
    """

    #: False: :meth:`remember` works every table out again (the plain passes, to compare)
    remembering: bool = True

    def __init__(self) -> None:
        self._withheld: set[CountKey] = set()
        self._released: dict[CountKey, tuple[float, str]] = {}
        self._remembered: dict[object, object] = {}
        self.passes = 0

    def remember(self, key: object, make: Callable[[], object]) -> object:
        """``make()``, worked out once per ``key`` in this run and remembered: a table that
        :meth:`settle` builds again from the same inputs — the same counts, and the same
        cells withheld elsewhere (:meth:`masks`, part of the key) — is the same table. The
        caller keys everything its result depends on, copies what it hands out (callers
        change their tables) and still :meth:`record` s it in every pass."""
        if not self.remembering:
            return make()
        if key not in self._remembered:
            self._remembered[key] = make()
        return self._remembered[key]

    def withheld(self, keys: Sequence[CountKey | None]) -> np.ndarray:
        """Per key, whether another table of the run withholds that count."""
        return np.array([k is not None and k in self._withheld for k in keys], dtype=bool)

    def masks(self, keys: Mapping[str, Sequence[CountKey | None]]) -> dict[str, dict]:
        """``withhold=`` and ``avoid=`` for :func:`apply` or :func:`release_proportions`,
        from each count column's keys: the cells the run withholds, and the cells with a
        key (given by other tables too, so taken last as secondary cells: withholding one
        withholds it everywhere)."""
        return {
            "withhold": {col: self.withheld(k) for col, k in keys.items()},
            "avoid": {
                col: np.array([key is not None for key in k], dtype=bool) for col, k in keys.items()
            },
        }

    def record(self, keys: Sequence[CountKey | None], released: object, where: str = "") -> None:
        """Note what one table released (a number) or withheld (NA) for each key."""
        values = pd.to_numeric(pd.Series(released), errors="coerce").to_numpy(dtype=float)
        if len(values) != len(keys):
            raise ValueError(f"record: {len(keys)} keys for {len(values)} counts")
        for key, value in zip(keys, values, strict=True):
            if key is None:
                continue
            if np.isnan(value):
                self._withheld.add(key)
                continue
            seen = self._released.setdefault(key, (float(value), where))
            if seen[0] != value:
                raise ValueError(
                    f"disclosure: count {key} released as {seen[0]:g} ({seen[1]}) and as "
                    f"{value:g} ({where}): two tables key different counts alike"
                )

    def settle(self, build: Callable[[SharedCounts], object], max_passes: int = 20):
        """``build(self)`` again and again until a pass withholds no count that the run did
        not withhold already; returns the last pass's result."""
        for _ in range(max_passes):
            before = len(self._withheld)
            self._released.clear()
            self.passes += 1
            result = build(self)
            if len(self._withheld) == before:
                return result
        raise RuntimeError(f"disclosure: shared counts still changing after {max_passes} passes")
