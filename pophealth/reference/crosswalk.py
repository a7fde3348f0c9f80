"""Moving values between LSOA 2011 and LSOA 2021 through the official ONS lookup.

The rule (documented in docs/reference-data.md, tested in tests/reference):

1. The lookup lists every (LSOA 2011, LSOA 2021) pair with its change flag: U
   unchanged (1:1), S split (one 2011 LSOA into several 2021 LSOAs), M merged (several
   2011 LSOAs into one 2021 LSOA), X redesigned (many to many).
2. Each pair gets a **weight, the estimated population living in both**::

       w(a, b) = pop11(a) × pop21(b) / Σ pop21(b')   over the 2021 LSOAs b' paired with a

   i.e. an LSOA 2011's population is shared among its 2021 pieces in proportion to the
   pieces' own populations. For U and M pairs this is pop11(a) exactly; for S pairs it
   is the split of a by its pieces; only X pairs (9 in England) are an approximation.
   pop11 is the ONS mid-2020 estimate by LSOA 2011, pop21 the Census 2021 usual
   residents by LSOA 2021. Where a population is unknown (or zero) the shares are equal.
3. **Counts** (people, households) are apportioned by the pair weights, so totals are
   preserved exactly: ``count_to(b) = Σ_a count_from(a) × w(a, b) / Σ_b' w(a, b')``.
4. **Rates and indicator values** are population-weighted means over the pairs:
   ``value_to(b) = Σ_a value(a) w(a, b) / Σ_a w(a, b)``. A rate that has counts behind
   it (fuel poverty) is instead recomputed from apportioned counts (3).
5. **Categories** take the value of the heaviest pair (ties: smallest code).

With these rules a split leaves each piece the value of its parent, a merge gets the
population-weighted mean of its parts (or, for counts, their sum), and going 2021 → 2011
for a split gives the parent the sum of its pieces' counts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

A = "lsoa11_code"
B = "lsoa21_code"


def pair_weights(
    lookup: pd.DataFrame,
    pop11: pd.Series | None = None,
    pop21: pd.Series | None = None,
) -> pd.DataFrame:
    """The lookup's pairs with their population weight ``w`` (see the module rule).

    ``lookup`` has ``lsoa11_code, lsoa21_code, chgind``; ``pop11``/``pop21`` are Series
    indexed by LSOA code (missing codes count as unknown populations).
    """
    pairs = lookup[[A, B, "chgind"]].drop_duplicates([A, B]).reset_index(drop=True)
    p11 = _lookup_values(pairs[A], pop11)
    p21 = _lookup_values(pairs[B], pop21)
    # share of a going to b: pop21(b) / sum over a's pieces; equal shares when unknown
    piece_total = p21.groupby(pairs[A]).transform("sum")
    n_pieces = pairs.groupby(A)[B].transform("size").astype("float64")
    share = (p21 / piece_total).where(piece_total > 0, 1.0 / n_pieces)
    # a's own population; unknown -> 1 so that merges split equally
    base = p11.where(p11 > 0, np.nan)
    base = base.fillna(1.0)
    pairs["w"] = base * share.fillna(1.0 / n_pieces)
    return pairs


def _lookup_values(codes: pd.Series, values: pd.Series | None) -> pd.Series:
    if values is None:
        return pd.Series(np.nan, index=codes.index, dtype="float64")
    return codes.map(values.astype("float64")).astype("float64")


def _direction(to: str) -> tuple[str, str]:
    if to == "2021":
        return A, B
    if to == "2011":
        return B, A
    raise ValueError(f"to must be '2011' or '2021', not {to!r}")


def apportion_counts(
    frame: pd.DataFrame,
    code: str,
    columns: Sequence[str],
    pairs: pd.DataFrame,
    *,
    to: str,
    whole: bool = False,
) -> pd.DataFrame:
    """Counts in ``frame`` (one row per LSOA of the other vintage, key column ``code``)
    apportioned to the LSOAs of vintage ``to`` ('2011' or '2021'); totals are preserved
    for every source LSOA present in the lookup. Returns one row per target LSOA reached.

    ``whole=True`` (whole-number counts, e.g. people) gives whole numbers that still add
    up to each source LSOA's count: every pair gets the floor of its share and the
    remainder goes one by one to the largest fractions (ties: smallest target code)."""
    src, dst = _direction(to)
    p = pairs[[src, dst, "w"]].copy()
    p["frac"] = p["w"] / p.groupby(src)["w"].transform("sum")
    values = frame.set_index(code)[list(columns)].astype("float64")
    merged = p.join(values, on=src, how="inner")
    for c in columns:
        total = merged[c]
        merged[c] = total * merged["frac"]
        if whole:
            merged[c] = _largest_remainder(merged, src, dst, merged[c], total)
    out = merged.groupby(dst, sort=True)[list(columns)].sum(min_count=1)
    out.index.name = dst
    return out.reset_index()


def _largest_remainder(
    merged: pd.DataFrame, src: str, dst: str, share: pd.Series, total: pd.Series
) -> pd.Series:
    floor = np.floor(share + 1e-9)
    short = (total.round() - floor.groupby(merged[src]).transform("sum")).fillna(0)
    order = pd.DataFrame({"s": merged[src], "r": -(share - floor), "d": merged[dst]})
    order = order.sort_values(["s", "r", "d"], kind="stable")
    place = order.groupby("s").cumcount().reindex(merged.index)
    return floor + (place < short).astype("float64")


def weighted_means(
    frame: pd.DataFrame,
    code: str,
    columns: Sequence[str],
    pairs: pd.DataFrame,
    *,
    to: str,
) -> pd.DataFrame:
    """Values in ``frame`` moved to vintage ``to`` as population-weighted means over the
    pairs (missing values are left out of both numerator and denominator).

    Where every value behind a target is the same (a piece of a split, an unchanged LSOA,
    a merge of equal values) the target gets that value exactly: ``0.46 × w / w`` is not
    always 0.46 in floating point, and the difference breaks ties (e.g. in quintiles)."""
    src, dst = _direction(to)
    values = frame.set_index(code)[list(columns)].astype("float64")
    merged = pairs[[src, dst, "w"]].join(values, on=src, how="inner")
    out = pd.DataFrame({dst: np.sort(merged[dst].unique())}).set_index(dst)
    for c in columns:
        ok = merged[c].notna()
        by = merged[c].groupby(merged[dst])
        num = (merged[c] * merged["w"]).where(ok).groupby(merged[dst]).sum(min_count=1)
        den = merged["w"].where(ok).groupby(merged[dst]).sum(min_count=1)
        low, high = by.min(), by.max()
        out[c] = (num / den).where(low != high, low)
    return out.reset_index()


def dominant_category(
    frame: pd.DataFrame,
    code: str,
    columns: Sequence[str],
    pairs: pd.DataFrame,
    *,
    to: str,
) -> pd.DataFrame:
    """Categorical values moved to vintage ``to``: the value of the heaviest pair."""
    src, dst = _direction(to)
    merged = pairs[[src, dst, "w"]].join(frame.set_index(code)[list(columns)], on=src, how="inner")
    merged = merged.sort_values([dst, "w", src], ascending=[True, False, True], kind="stable")
    return merged.drop_duplicates(dst, keep="first")[[dst, *columns]].reset_index(drop=True)


def map_codes(codes: pd.Series | Sequence[str], pairs: pd.DataFrame, *, to: str) -> pd.Series:
    """Map LSOA codes of the other vintage to vintage ``to`` (the heaviest pair).

    Codes already of vintage ``to`` are kept if the lookup knows them there; codes the
    lookup does not know become NA (count them: they are "unknown area", never dropped).
    """
    src, dst = _direction(to)
    s = pd.Series(codes, dtype="string")
    best = (
        pairs.sort_values([src, "w", dst], ascending=[True, False, True], kind="stable")
        .drop_duplicates(src, keep="first")
        .set_index(src)[dst]
    )
    known_dst = set(pairs[dst])
    mapped = s.map(best).astype("string")
    return mapped.where(~s.isin(known_dst), s)
