"""The equity view of an indicator: who is doing worse, by how much, and the gradient.

One call — :func:`equity_view` — takes a table of numerator/denominator counts by group
columns (``imd_decile``, ``imd_quintile``, ``core20``, ``ethnicity``, ``sex``, ``age_band`` and
any PLUS-group column) and returns an :class:`EquityView`:

* ``breakdowns`` — for every breakdown and group, plus a ``Total`` row per breakdown: released
  numerator and denominator, the value (× ``multiplier``, default percentage) with Wilson 95%
  and 99.8% limits, the value for the *rest of the population*, the difference with Newcombe's
  hybrid-score 95% interval (Newcombe RG, Stat Med 1998;17:873-90, method 10), and
  ``flag`` = "significantly worse" / "significantly better" / "not significant" with ``test``
  naming the test used;
* ``gap`` — most vs least deprived IMD quintile (1 vs 5): absolute gap (Newcombe interval) and
  relative gap (ratio, Katz log interval: Katz D et al., Biometrics 1978;34:469-74);
* ``sii`` — slope and relative index of inequality across IMD deciles
  (:func:`pophealth.stats.sii`, logit-transformed simulation for proportions); no row, but
  the same columns (:data:`SII_COLUMNS`), when a decile's counts are withheld;
* ``policy`` and ``notes`` — the disclosure policy applied and anything the reader should know.

Disclosure control runs on everything returned: counts go through
:func:`pophealth.disclosure.release_proportions` (suppression with secondary suppression
inside each breakdown, rounding; with ``shared``, one decision per count with the run's
other tables, see :class:`pophealth.disclosure.SharedCounts`), and every value, interval,
comparison, gap and SII is computed from the *released* counts, so a reader can reproduce
each figure from the table and nothing withheld can be recovered. Rows whose counts are
withheld have NA values and no flag.

Core20 = IMD deciles 1-2 (most deprived 20%, NHS England Core20PLUS5); IMD quintile 1 = deciles
1-2. Decile 1 is the most deprived (national IMD convention).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pophealth import disclosure
from pophealth.disclosure import (
    DEFAULT_POLICY,
    DisclosurePolicy,
    SharedCounts,
    count_keys,
    release_proportions,
)
from pophealth.stats import sii as sii_stat
from pophealth.stats._core import scaled_quotient, wilson, z_value

__all__ = [
    "EquityView",
    "equity_view",
    "DEFAULT_BREAKDOWNS",
    "SII_COLUMNS",
    "newcombe_difference",
]

DEFAULT_BREAKDOWNS: tuple[str, ...] = (
    "imd_quintile",
    "core20",
    "ethnicity",
    "sex",
    "age_band",
)
TOTAL = "Total"
UNKNOWN = "Unknown"
CORE20 = "Core20"
REST = "Rest"
#: The columns of :attr:`EquityView.sii` (those of :func:`pophealth.stats.sii` at 95% and
#: 99.8%): an SII that cannot be computed is a table of these columns with no row, so a CSV
#: of it keeps its header.
SII_COLUMNS: tuple[str, ...] = (
    "value", "lower95_0cl", "upper95_0cl", "sii_lower95_0cl", "sii_upper95_0cl",
    "rii_lower95_0cl", "rii_upper95_0cl", "lower99_8cl", "upper99_8cl", "sii_lower99_8cl",
    "sii_upper99_8cl", "rii_lower99_8cl", "rii_upper99_8cl", "sii", "rii", "intercept",
    "r_squared", "warning", "confidence", "statistic", "method", "indicator_type",
)  # fmt: skip
GAP_COMPARISON = "IMD quintile 1 (most deprived) vs 5 (least deprived)"
GAP_METHOD = "Newcombe hybrid score (difference); Katz log (ratio); from released counts"
NEWCOMBE_TEST = (
    "95% Newcombe hybrid score interval for the difference from the rest of the population "
    "excludes 0 (Newcombe 1998, method 10)"
)


@dataclass
class EquityView:
    """Everything a programme report shows about inequality in one indicator."""

    breakdowns: pd.DataFrame
    gap: pd.DataFrame
    sii: pd.DataFrame
    policy: DisclosurePolicy
    multiplier: float
    higher_is_better: bool
    notes: list[str] = field(default_factory=list)


def newcombe_difference(
    x1: np.ndarray, n1: np.ndarray, x2: np.ndarray, n2: np.ndarray, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Difference of two proportions p1 − p2 with Newcombe's hybrid score interval.

    L = d − √((p1 − l1)² + (u2 − p2)²), U = d + √((u1 − p1)² + (p2 − l2)²), where (lᵢ, uᵢ)
    are Wilson limits (Newcombe RG, Stat Med 1998;17:873-90, method 10).
    """
    x1, n1, x2, n2 = (np.asarray(a, dtype=float) for a in (x1, n1, x2, n2))
    with np.errstate(invalid="ignore", divide="ignore"):
        p1, p2 = x1 / n1, x2 / n2
        l1, u1 = wilson(x1, n1, confidence)
        l2, u2 = wilson(x2, n2, confidence)
        d = p1 - p2
        lo = d - np.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
        hi = d + np.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return d, lo, hi


def _ratio_ci(
    x1: float, n1: float, x2: float, n2: float, confidence: float = 0.95
) -> tuple[float, float, float]:
    """Ratio of proportions with the Katz log interval; NA when a count is zero or missing."""
    if not all(np.isfinite([x1, n1, x2, n2])) or min(x1, x2) <= 0:
        return np.nan, np.nan, np.nan
    rr = (x1 / n1) / (x2 / n2)
    se = np.sqrt(1 / x1 - 1 / n1 + 1 / x2 - 1 / n2)
    z = z_value(confidence)
    return rr, rr * np.exp(-z * se), rr * np.exp(z * se)


def _prepare(
    data: pd.DataFrame, numerator: str, denominator: str, breakdowns: Sequence[str]
) -> tuple[pd.DataFrame, list[str]]:
    if not isinstance(data, pd.DataFrame):
        # a query-layer result (Ibis table expression, Arrow table): materialise it
        to_pandas = getattr(data, "to_pandas", None) or getattr(data, "execute", None)
        if to_pandas is None:
            raise TypeError("equity_view needs a pandas DataFrame, Arrow table or Ibis table")
        data = to_pandas()
    df = data.copy()
    notes: list[str] = []
    for col in (numerator, denominator):
        if col not in df.columns:
            raise ValueError(f"equity_view: column '{col}' not found (columns: {list(df.columns)})")
    if "imd_decile" in df.columns:
        dec = pd.to_numeric(df["imd_decile"], errors="coerce")
        bad = dec.notna() & ~dec.isin(range(1, 11))
        if bad.any():
            raise ValueError(
                f"imd_decile must be 1-10 (row {int(np.flatnonzero(bad.to_numpy())[0])}: "
                f"{df['imd_decile'][bad].iloc[0]!r})"
            )
        if "imd_quintile" not in df.columns:
            df["imd_quintile"] = np.ceil(dec / 2)
        if "core20" not in df.columns:
            df["core20"] = np.where(dec.isna(), None, np.where(dec <= 2, CORE20, REST))
    elif "imd_quintile" in breakdowns or "core20" in breakdowns:
        notes.append("no imd_decile column: SII and derived IMD breakdowns not available")
    if "core20" in df.columns and df["core20"].dtype == bool:
        df["core20"] = np.where(df["core20"], CORE20, REST)
    return df, notes


def _core20_is_quintile_1(table: pd.DataFrame, keys: dict[str, list]) -> None:
    """Key the Core20 group as IMD quintile 1, and the Unknown group of the IMD deciles and
    of Core20 as the quintiles' Unknown, where they hold the same count as the deciles they
    are (1 and 2; none): withheld as one and released as the other — in this view, or in
    another table of the run that gives only one of them — it would protect nothing. (This
    view's own audit knows it too: :func:`_nested_sets`.)"""
    group = table["group"].map(
        lambda g: str(int(g)) if isinstance(g, float) and g.is_integer() else str(g)
    )
    breakdown = table["breakdown"]

    def row(b: str, g: str) -> int | None:
        at = np.flatnonzero((breakdown == b).to_numpy() & (group == g).to_numpy())
        return int(at[0]) if len(at) == 1 else None

    deciles = [d for d in (row("imd_decile", "1"), row("imd_decile", "2")) if d is not None]
    unknown = row("imd_decile", UNKNOWN)
    core20, core20_unknown = row("core20", CORE20), row("core20", UNKNOWN)
    for col, k in keys.items():
        if not k:
            continue
        scope = k[0][0]
        values = table[col].to_numpy(dtype=float)
        if core20 is not None and values[core20] == sum(values[d] for d in deciles):
            k[core20] = (scope, "imd_quintile", "1")
        for same in (unknown, core20_unknown):
            if same is not None and unknown is not None and values[same] == values[unknown]:
                k[same] = (scope, "imd_quintile", UNKNOWN)


def _counts(df: pd.DataFrame, col: str) -> pd.Series:
    """A count column as numbers; a missing, non-numeric or negative count is an error (summed,
    it would silently count as 0 while the other column kept its value)."""
    values = pd.to_numeric(df[col], errors="coerce")
    bad = values.isna() | (values < 0)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        v = df[col].iloc[row]
        shown = repr(v) if isinstance(v, str) else str(v)
        raise ValueError(
            f"equity_view: column '{col}' needs a count of 0 or more in every row "
            f"(row {row}: {shown})"
        )
    return values


def _label(v: object) -> object:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return UNKNOWN
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def equity_view(
    data: pd.DataFrame,
    numerator: str = "numerator",
    denominator: str = "denominator",
    *,
    breakdowns: Sequence[str] = DEFAULT_BREAKDOWNS,
    extra: Sequence[str] = (),
    higher_is_better: bool = True,
    multiplier: float = 100,
    policy: DisclosurePolicy = DEFAULT_POLICY,
    sii_repetitions: int = 100_000,
    seed: int = 2024,
    shared: SharedCounts | None = None,
    scope: tuple[str, str] | None = None,
    nests: Mapping[str, str] | None = None,
) -> EquityView:
    """Build the whole equity view of one indicator (see the module docstring).

    ``data`` (a DataFrame, Arrow table or Ibis table expression) holds counts at any level of
    detail (e.g. one row per IMD decile × ethnicity × sex × age band); each breakdown column
    present is summed over the others. Missing group values become "Unknown" so every
    breakdown adds up to the same total. ``extra`` adds PLUS-group columns.
    ``higher_is_better`` sets the indicator's polarity for the worse/better flag.

    ``shared`` and ``scope`` (the numerator's and the denominator's population, e.g.
    ``("cvd.statin.numerator", "cvd.statin.denominator")``) make each group's counts one
    decision with the same counts in the run's other tables (see
    :class:`pophealth.disclosure.SharedCounts`): a count withheld there is withheld here,
    and what this view withholds is recorded for them.

    ``nests`` maps a breakdown to one whose groups each hold several of its groups whole
    (``{"practice": "pcn"}``: each practice in one PCN, read from ``data``): the audit then
    knows that a PCN's practices add up to the PCN — four practices of 12, each released
    as 10, beside their PCN's 48, released as 50, are 12 each (:func:`_nests_sets`).
    """
    df, notes = _prepare(data, numerator, denominator, breakdowns)
    cols = [c for c in list(breakdowns) + list(extra) if c in df.columns]
    missing = [c for c in list(breakdowns) + list(extra) if c not in df.columns]
    if missing:
        notes.append(f"breakdowns not available (no column): {', '.join(missing)}")
    cols_all = cols + (
        ["imd_decile"] if "imd_decile" in df.columns and "imd_decile" not in cols else []
    )

    x = _counts(df, numerator)
    n = _counts(df, denominator)
    if (x > n).any():
        row = int(np.flatnonzero((x > n).to_numpy())[0])
        raise ValueError(
            "numerator must be less than or equal to denominator in every row "
            f"(row {row}: {x.iloc[row]:g} > {n.iloc[row]:g})"
        )
    if shared is not None:
        # the same counts in every pass of the run's settle: one table (shared.remember)
        key = (
            "equity_table", disclosure.frame_key(df, [*cols_all, numerator, denominator]),
            tuple(cols_all), scope,
        )  # fmt: skip
        table, keys = shared.remember(key, lambda: _table(df, x, n, cols_all, scope))
        table, keys = table.copy(), {col: list(k) for col, k in keys.items()}
    else:
        table, keys = _table(df, x, n, cols_all, None)
    masks = shared.masks(keys) if keys else {}
    inside = _nests_sets(df, table, nests or {})
    args = (
        table, notes, higher_is_better, multiplier, policy, sii_repetitions, seed, masks, inside,
    )  # fmt: skip
    if keys:
        # built again in every pass of the run's settle: the same counts, with the same
        # cells withheld elsewhere, give the same view (shared.remember)
        key = (
            "equity_view", disclosure.frame_key(table, ["breakdown", "group", "x", "n"]),
            tuple(notes), higher_is_better, multiplier, policy, sii_repetitions, seed,
            disclosure.withheld_elsewhere_key(table, "x", "n", policy=policy, **masks),
            tuple((tuple(cells), total) for cells, total in inside),
        )  # fmt: skip
        made = shared.remember(key, lambda: _released_view(*args))
    else:
        made = _released_view(*args)
    breakdowns, gap, sii_table, view_notes, caught = made
    for w in caught:  # the warnings of the disclosure control, each time it is given
        warnings.warn_explicit(
            w.message, w.category, w.filename, w.lineno,
            registry=globals().setdefault("__warningregistry__", {}),
        )  # fmt: skip
    for col, k in keys.items():
        name = {"x": "numerator", "n": "denominator"}[col]
        shared.record(k, breakdowns[name], f"equity view {scope[0]}")
    return EquityView(
        breakdowns=breakdowns.copy(),
        gap=gap.copy(),
        sii=sii_table.copy(),
        policy=policy,
        multiplier=multiplier,
        higher_is_better=higher_is_better,
        notes=list(view_notes),
    )


def _table(
    df: pd.DataFrame,
    x: pd.Series,
    n: pd.Series,
    cols_all: list[str],
    scope: tuple[str, str] | None,
) -> tuple[pd.DataFrame, dict[str, list]]:
    """The counts by breakdown and group, with a Total row per breakdown, and (with
    ``scope``) each count's identity among the run's counts."""
    pieces = []
    for col in cols_all:
        g = (
            pd.DataFrame({"group": df[col].map(_label), "x": x, "n": n})
            .groupby("group", sort=True, dropna=False)[["x", "n"]]
            .sum()
            .reset_index()
        )
        g.insert(0, "breakdown", col)
        total = pd.DataFrame({"breakdown": [col], "group": [TOTAL], "x": [x.sum()], "n": [n.sum()]})
        pieces.append(pd.concat([g, total], ignore_index=True))
    table = (
        pd.concat(pieces, ignore_index=True)
        if pieces
        else pd.DataFrame(columns=["breakdown", "group", "x", "n"])
    )
    table["group"] = table["group"].astype(object)
    keys = {}
    if scope is not None:
        keys = {
            col: count_keys(name, table["breakdown"], table["group"])
            for col, name in zip(("x", "n"), scope, strict=True)
        }
        _core20_is_quintile_1(table, keys)
    return table, keys


def _nested_sets(table: pd.DataFrame) -> list[tuple[list[int], int]]:
    """The groups of the IMD decile breakdown that add up to a group of another breakdown
    of ``table`` (rows by breakdown and group), as (the deciles' rows, the other group's
    row): deciles 1-2 to quintile 1 and to Core20, 3-10 to the rest, Unknown to Unknown.
    Each breakdown is a table of its own to the margins; these sets tell the audit that a
    withheld decile is not given back by its quintile less its released neighbour (decile
    6's 5 from quintile 3's 35 less decile 5's 30). Only the sets whose counts do add up:
    a quintile column of the caller's own, from another IMD, is a breakdown like any other."""
    breakdown = table["breakdown"].to_numpy()
    group = table["group"].map(
        lambda g: str(int(g)) if isinstance(g, float) and g.is_integer() else str(g)
    )
    row = {(b, g): i for i, (b, g) in enumerate(zip(breakdown, group, strict=True))}
    deciles = {g: i for (b, g), i in row.items() if b == "imd_decile" and g != TOTAL}
    if not deciles:
        return []
    parts = {("imd_quintile", str(q)): [str(2 * q - 1), str(2 * q)] for q in range(1, 6)}
    parts |= {("imd_quintile", UNKNOWN): [UNKNOWN], ("core20", UNKNOWN): [UNKNOWN]}
    parts |= {("core20", CORE20): ["1", "2"], ("core20", REST): [str(d) for d in range(3, 11)]}
    counts = table[["x", "n"]].to_numpy(dtype=float)
    sets = [
        ([deciles[d] for d in of if d in deciles], row[key])
        for key, of in parts.items()
        if key in row
    ]
    return [
        (cells, total)
        for cells, total in sets
        if (counts[cells].sum(axis=0) == counts[total]).all()
    ]


def _nests_sets(
    df: pd.DataFrame, table: pd.DataFrame, nests: Mapping[str, str]
) -> list[tuple[list[int], int]]:
    """For each breakdown ``a`` nested in ``b`` (``nests``), the rows of ``table`` of the
    groups of ``a`` inside each group of ``b`` (read from ``df``, a row per group of both
    or finer) with the row of that group of ``b``: sets that add up. A group of ``a``
    found in two groups of ``b`` is a mistake in the data (a practice in two PCNs): no set
    is made then, and the breakdowns are audited as any two are."""
    if not nests:
        return []
    label = table["group"].map(_label)
    row = {(b, g): i for i, (b, g) in enumerate(zip(table["breakdown"], label, strict=True))}
    counts = table[["x", "n"]].to_numpy(dtype=float)
    sets = []
    for a, b in nests.items():
        if a not in df.columns or b not in df.columns:
            continue
        pairs = pd.DataFrame({"a": df[a].map(_label), "b": df[b].map(_label)}).drop_duplicates()
        if pairs["a"].duplicated().any():
            continue
        for g, members in pairs.groupby("b", sort=False)["a"]:
            cells = [row[(a, m)] for m in members if (a, m) in row]
            if (b, g) in row and cells and (counts[cells].sum(axis=0) == counts[row[(b, g)]]).all():
                sets.append((cells, row[(b, g)]))
    return sets


def _released_view(
    table: pd.DataFrame,
    notes: list[str],
    higher_is_better: bool,
    multiplier: float,
    policy: DisclosurePolicy,
    sii_repetitions: int,
    seed: int,
    masks: dict,
    inside: list[tuple[list[int], int]] = (),
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, list[str], list]:
    """The released breakdowns (with each group's comparison with the rest), gap, SII and
    notes of an equity view from its table of counts, and the warnings its disclosure
    control gave (for :func:`equity_view` to give each time; the result is not changed)."""
    notes = list(notes)
    # every breakdown's Total is the same count: withheld in all or in none
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        released = release_proportions(
            table, "x", "n", policy=policy, by=["breakdown", "group"], margins=["group"],
            total_label=TOTAL, multiplier=multiplier, same_total_across="breakdown",
            nested=[*_nested_sets(table), *inside], **masks,
        )  # fmt: skip
    released = released.rename(columns={"x": "numerator", "n": "denominator"})

    # comparison with the rest of the population, from released counts
    xs = released["numerator"].to_numpy(dtype=float)
    ns = released["denominator"].to_numpy(dtype=float)
    tot = released[released["group"] == TOTAL].set_index("breakdown")
    tx = released["breakdown"].map(tot["numerator"]).to_numpy(dtype=float)
    tn = released["breakdown"].map(tot["denominator"]).to_numpy(dtype=float)
    rx, rn = tx - xs, tn - ns
    valid = (released["group"] != TOTAL).to_numpy() & (rn > 0) & (rx >= 0) & (rx <= rn)
    d, lo, hi = newcombe_difference(xs, ns, rx, rn)
    with np.errstate(invalid="ignore", divide="ignore"):
        released["rest_value"] = np.where(valid, scaled_quotient(rx, rn, multiplier), np.nan)
    released["difference"] = np.where(valid, d * multiplier, np.nan)
    released["difference_lower95_0cl"] = np.where(valid, lo * multiplier, np.nan)
    released["difference_upper95_0cl"] = np.where(valid, hi * multiplier, np.nan)
    below, above = valid & (hi < 0), valid & (lo > 0)
    worse, better = (below, above) if higher_is_better else (above, below)
    flag = np.where(
        worse, "significantly worse", np.where(better, "significantly better", "not significant")
    )
    flag = np.where(valid & np.isfinite(d), flag, None)
    released["flag"] = flag
    released["test"] = np.where(pd.notna(flag), NEWCOMBE_TEST, None)

    gap = _gap(released, multiplier)
    sii_table = _sii(released, multiplier, sii_repetitions, seed, notes)
    if not higher_is_better:
        notes.append("lower values are better for this indicator")
    notes.append(policy.describe())
    return released.reset_index(drop=True), gap, sii_table, notes, list(caught)


def _gap(released: pd.DataFrame, multiplier: float) -> pd.DataFrame:
    q = released[released["breakdown"] == "imd_quintile"].set_index("group")
    cols = [
        "most_deprived_value", "least_deprived_value", "absolute_gap",
        "absolute_gap_lower95_0cl", "absolute_gap_upper95_0cl", "relative_gap",
        "relative_gap_lower95_0cl", "relative_gap_upper95_0cl",
    ]  # fmt: skip
    if 1 not in q.index or 5 not in q.index:
        # the same columns as a gap with values (a quintile with nobody has no row)
        return pd.DataFrame([{"comparison": GAP_COMPARISON, **dict.fromkeys(cols, np.nan),
                              "method": GAP_METHOD}])  # fmt: skip
    x1, n1 = q.loc[1, "numerator"], q.loc[1, "denominator"]
    x5, n5 = q.loc[5, "numerator"], q.loc[5, "denominator"]
    d, lo, hi = newcombe_difference(np.array([x1]), np.array([n1]), np.array([x5]), np.array([n5]))
    rr, rlo, rhi = _ratio_ci(x1, n1, x5, n5)
    row = {
        "comparison": GAP_COMPARISON,
        "most_deprived_value": q.loc[1, "value"],
        "least_deprived_value": q.loc[5, "value"],
        "absolute_gap": d[0] * multiplier,
        "absolute_gap_lower95_0cl": lo[0] * multiplier,
        "absolute_gap_upper95_0cl": hi[0] * multiplier,
        "relative_gap": rr,
        "relative_gap_lower95_0cl": rlo,
        "relative_gap_upper95_0cl": rhi,
        "method": GAP_METHOD,
    }
    return pd.DataFrame([row])


def why_no_sii(breakdowns: pd.DataFrame, breakdown: str = "imd_decile") -> str:
    """Why there is no SII across the groups of ``breakdown`` (``imd_decile``, 1-10, or
    ``imd_quintile``, 1-5) of an equity view's released ``breakdowns``: the groups whose
    counts are withheld (disclosure control) and those with no one in them — "not
    calculated: every IMD decile needs released counts (deciles 1 and 2 withheld by
    disclosure control)"."""
    size, label = (10, "decile") if breakdown == "imd_decile" else (5, "quintile")
    rows = breakdowns[breakdowns["breakdown"] == breakdown]
    number = pd.to_numeric(rows["group"], errors="coerce")
    withheld, nobody = [], []
    for g in range(1, size + 1):
        mine = rows[(number == g).to_numpy()]
        if mine.empty or (mine["denominator"] == 0).all():
            nobody.append(g)
        elif mine[["numerator", "denominator"]].isna().any(axis=None):
            withheld.append(g)
    reasons = [
        f"{_listed(label, groups)} {why}"
        for groups, why in ((withheld, "withheld by disclosure control"), (nobody, "with no one"))
        if groups
    ]
    return f"not calculated: every IMD {label} needs released counts" + (
        f" ({'; '.join(reasons)})" if reasons else ""
    )


def _listed(label: str, groups: list[int]) -> str:
    """ "decile 3", "deciles 1 and 2", "quintiles 1, 2 and 5"."""
    if len(groups) == 1:
        return f"{label} {groups[0]}"
    return f"{label}s {', '.join(map(str, groups[:-1]))} and {groups[-1]}"


def sii_not_calculated(reason: str, multiplier: float) -> pd.DataFrame:
    """An SII table of one row of :data:`SII_COLUMNS` with every figure missing and
    ``method`` saying why (:func:`why_no_sii`): what a programme writes for an indicator
    with no SII, so that its file says why rather than being empty."""
    row = dict.fromkeys(SII_COLUMNS, np.nan)
    row.update(method=reason, statistic=f"sii x {multiplier:g}" if multiplier != 1 else "sii")
    return pd.DataFrame([row], columns=list(SII_COLUMNS))


def _sii(
    released: pd.DataFrame, multiplier: float, reps: int, seed: int, notes: list[str]
) -> pd.DataFrame:
    dec = released[(released["breakdown"] == "imd_decile") & (released["group"] != TOTAL)]
    dec = dec[dec["group"] != UNKNOWN]
    if len(dec) != 10 or dec[["numerator", "denominator", "value"]].isna().any().any():
        if len(dec):
            notes.append("SII not shown: every IMD decile needs released counts")
        return pd.DataFrame(columns=list(SII_COLUMNS))
    p = dec["numerator"].to_numpy(dtype=float) / dec["denominator"].to_numpy(dtype=float)
    extreme = np.any((p <= 0) | (p >= 1))
    out = sii_stat(
        dec["group"].astype(int).to_numpy(),
        dec["denominator"].to_numpy(dtype=float),
        p,
        value_type=0 if extreme else "proportion",
        lower_cl=dec["lower95_0cl"].to_numpy(dtype=float) / multiplier,
        upper_cl=dec["upper95_0cl"].to_numpy(dtype=float) / multiplier,
        multiplier=multiplier,
        repetitions=reps,
        confidence=(0.95, 0.998),
        seed=seed,
    )
    if extreme:
        notes.append("SII simulated without logit transform (a decile at 0% or 100%)")
    return out
