"""CVD indicators: numerators and denominators per patient, and their equity views.

Every aggregate leaves through :func:`pophealth.equity.equity_view` (which applies
:mod:`pophealth.disclosure`) or :func:`pophealth.disclosure.release_proportions` — never
a second small-number rule here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pophealth import disclosure
from pophealth.equity import EquityView, equity_view


@dataclass(frozen=True)
class Indicator:
    name: str
    title: str
    denominator: str  # plain-words definition
    numerator: str
    source: str


INDICATORS: tuple[Indicator, ...] = (
    Indicator(
        "htn_target_under80",
        "Hypertension treated to target, aged under 80",
        "on the hypertension register, aged 18-79 on the index date",
        "treated to target (CVDPREVENT group 0.1 or 0.2): latest BP in 12 months at or below "
        "140/90, or 150/90 if 80 or over on the day of that reading",
        "CVDPREVENT CVDP007HYP-style (NHS England cvd-prevent-tool)",
    ),
    Indicator(
        "htn_target_80plus",
        "Hypertension treated to target, aged 80 and over",
        "on the hypertension register, aged 80+ on the index date",
        "treated to target (CVDPREVENT group 0.1 or 0.2): latest BP in 12 months at or below "
        "150/90, or 140/90 if under 80 on the day of that reading",
        "CVDPREVENT CVDP007HYP-style (NHS England cvd-prevent-tool)",
    ),
    Indicator(
        "qrisk10_on_llt",
        "QRISK3 10% or more, on lipid-lowering therapy",
        "no CVD, QRISK3 applies (25-84, no FH/T1DM/CKD 3-5) and is 10% or more",
        "lipid-lowering therapy issued in the last 6 months",
        "CVDPREVENT CVDP006CHOL-style; QRISK3 computed by pophealth, not GP-recorded",
    ),
    Indicator(
        "cvd_on_statin",
        "CVD on a statin",
        "coronary heart disease, PAD, stroke or TIA",
        "statin issued in the last 6 months",
        "NHS England lipid optimisation pathway / Barts NEL highest-risk cohort",
    ),
    Indicator(
        "af_anticoagulated",
        "AF with CHA2DS2-VASc 2 or more, anticoagulated",
        "on the AF register with CHA2DS2-VASc 2 or more",
        "DOAC or warfarin issued in the last 12 months",
        "NICE NG196; CVDPREVENT CVDP002AF-style",
    ),
)

AGE_BANDS = (18, 40, 50, 60, 70, 80)


def age_band(age: pd.Series) -> pd.Series:
    """ "18-39", "40-49", ..., "80+"."""
    labels = [f"{lo}-{hi - 1}" for lo, hi in zip(AGE_BANDS, AGE_BANDS[1:], strict=False)]
    labels.append(f"{AGE_BANDS[-1]}+")
    edges = [*AGE_BANDS, 200]
    return pd.cut(age.astype(float), edges, right=False, labels=labels).astype(object)


def indicator_flags(p: pd.DataFrame) -> dict[str, tuple[pd.Series, pd.Series]]:
    """(numerator, denominator) 0/1 per patient for each indicator.

    The two hypertension indicators split the register by age on the index date, while
    the CVDPREVENT group judges the reading against the target for the age on the day
    it was taken (:func:`~.rules.hypertension`). Someone aged 79 at their latest reading
    and 80 on the index date is in the 80+ denominator with group 0.1 or 1a, so both
    numerators count "treated to target" as group 0.1 or 0.2: the patient the rules
    call at target is never counted as not at target."""
    age = p["age"].astype(float)
    htn = p["hypertension"] == 1
    at_target = p["htn_group"].isin(["0.1", "0.2"])
    q = (p["qrisk_applies"] == 1) & (p["qrisk3"] >= 10)
    # CHA2DS2-VASc >= 2 is NICE NG196's "offer" (also when sex is not recorded but the
    # score reaches 2 without the sex point; see rules.atrial_fibrillation)
    af = (p["atrial_fibrillation"] == 1) & (p["anticoag_indication"] == "offer")
    cvd = p["cvd"] == 1
    flags = {
        "htn_target_under80": (at_target, htn & (age < 80)),
        "htn_target_80plus": (at_target, htn & (age >= 80)),
        "qrisk10_on_llt": (p["on_llt"] == 1, q),
        "cvd_on_statin": (p["on_statin"] == 1, cvd),
        "af_anticoagulated": (p["anticoagulated"] == 1, af),
    }
    return {k: ((num & den).astype(int), den.astype(int)) for k, (num, den) in flags.items()}


#: The practice label of a PCN's total row in :func:`practice_table` (not published there).
PCN_TOTAL = "PCN total"

GROUP_COLUMNS = ("imd_decile", "core20", "ethnicity", "sex", "age_band", "pcn_name")


def counts_by_group(p: pd.DataFrame) -> pd.DataFrame:
    """Numerator/denominator counts of every indicator at the finest breakdown level
    (IMD decile × Core20 × ethnicity × sex × age band × PCN): patient-level in, counts out
    (not yet disclosure-controlled: feed to :func:`equity_views`)."""
    base = pd.DataFrame(
        {
            "imd_decile": pd.to_numeric(p["imd_decile"], errors="coerce"),
            "core20": np.where(
                p["core20"].isna(),
                None,
                np.where(p["core20"] == True, "Core20", "Rest"),  # noqa: E712
            ),
            "ethnicity": p["ethnicity_5"].astype(object),
            "sex": p["sex"].astype(object),
            "age_band": age_band(p["age"]),
            "pcn_name": p["pcn_name"].fillna("Unknown").astype(object),
        },
        index=p.index,
    )
    frames = []
    for name, (num, den) in indicator_flags(p).items():
        f = base.assign(indicator=name, numerator=num, denominator=den)
        f = f[f["denominator"] == 1]
        frames.append(
            f.groupby(["indicator", *GROUP_COLUMNS], dropna=False)[["numerator", "denominator"]]
            .sum()
            .reset_index()
        )
    return pd.concat(frames, ignore_index=True)


def scopes(name: str) -> tuple[str, str]:
    """The identities of an indicator's numerator and denominator among the run's counts
    (:class:`pophealth.disclosure.SharedCounts`)."""
    return f"cvd.{name}.numerator", f"cvd.{name}.denominator"


def equity_views(
    counts: pd.DataFrame,
    *,
    policy: disclosure.DisclosurePolicy = disclosure.DEFAULT_POLICY,
    shared: disclosure.SharedCounts | None = None,
) -> dict[str, EquityView]:
    """One :class:`~pophealth.equity.EquityView` per indicator (breakdowns by IMD quintile,
    Core20, ethnicity, sex, age band and PCN; gap and SII across IMD deciles), all from
    disclosure-controlled counts. An indicator with nobody in its denominator has a view
    too: its totals, 0, with every column. With ``shared``, each count is one decision with
    its copies in the run's other tables (a PCN's counts in :func:`practice_table`)."""
    views = {}
    for ind in INDICATORS:
        sub = counts[counts["indicator"] == ind.name]
        views[ind.name] = equity_view(
            sub.drop(columns="indicator"),
            "numerator",
            "denominator",
            extra=("pcn_name",),
            policy=policy,
            sii_repetitions=20_000,
            shared=shared,
            scope=scopes(ind.name),
        )
    return views


def practice_table(
    p: pd.DataFrame,
    *,
    policy: disclosure.DisclosurePolicy = disclosure.DEFAULT_POLICY,
    shared: disclosure.SharedCounts | None = None,
) -> pd.DataFrame:
    """Each indicator by practice (with PCN), released through disclosure control.

    A PCN's practices add up to the PCN's counts, which the indicators' equity tables give
    (breakdown ``pcn_name``): the PCN totals are released with the practices (so the audit
    knows them) and left out of the table. With ``shared``, a PCN total is one decision with
    its copy in the equity table: withheld there, it is withheld here, and its practices are
    withheld so that they cannot add up to it."""
    rows = []
    for name, (num, den) in indicator_flags(p).items():
        f = pd.DataFrame(
            {
                "indicator": name,
                "pcn_name": p["pcn_name"].fillna("Unknown"),
                "practice_id": p["practice_id"].fillna("Unknown"),
                "numerator": num,
                "denominator": den,
            }
        )
        rows.append(
            f.groupby(["indicator", "pcn_name", "practice_id"])[["numerator", "denominator"]]
            .sum()
            .reset_index()
        )
    table = pd.concat(rows, ignore_index=True)
    table = table[table["denominator"] > 0]
    pcns = table.groupby(["indicator", "pcn_name"], sort=False)[["numerator", "denominator"]]
    pcns = pcns.sum().reset_index().assign(practice_id=PCN_TOTAL)
    table = pd.concat([table, pcns], ignore_index=True)
    keys = {}
    if shared is not None:
        total = (table["practice_id"] == PCN_TOTAL).to_numpy()
        for col, at in (("numerator", 0), ("denominator", 1)):
            pcn_keys = [
                disclosure.count_keys(scopes(ind)[at], ["pcn_name"], [pcn])[0]
                for ind, pcn in zip(table["indicator"], table["pcn_name"], strict=True)
            ]
            keys[col] = [k if t else None for k, t in zip(pcn_keys, total, strict=True)]
    released = disclosure.release_proportions(
        table,
        "numerator",
        "denominator",
        policy=policy,
        by=["indicator", "pcn_name", "practice_id"],
        margins=["practice_id"],  # practices add up to the published PCN totals
        total_label=PCN_TOTAL,
        **(shared.masks(keys) if keys else {}),
    )
    for col, k in keys.items():
        shared.record(k, released[col], "cvd_indicators_by_practice")
    released = released[released["practice_id"] != PCN_TOTAL]
    keep = [
        "indicator",
        "pcn_name",
        "practice_id",
        "numerator",
        "denominator",
        "value",
        "lower95_0cl",
        "upper95_0cl",
        "lower99_8cl",  # PHE's default output: 95% and 99.8% limits (PROGRAMMES.md 12)
        "upper99_8cl",
        "disclosure_note",
    ]
    return released[keep].reset_index(drop=True)


def released_indicators(
    p: pd.DataFrame,
    counts: pd.DataFrame | None = None,
    *,
    policy: disclosure.DisclosurePolicy = disclosure.DEFAULT_POLICY,
) -> tuple[dict[str, EquityView], pd.DataFrame]:
    """The indicators' equity views and the practice table of one run, with one decision
    per count across them (:class:`pophealth.disclosure.SharedCounts`): a PCN's counts are
    in its equity tables and, as the sum of its practices, in the practice table — withheld
    in one and given back by the other, they would protect nothing."""
    counts = counts_by_group(p) if counts is None else counts
    return disclosure.SharedCounts().settle(
        lambda shared: (
            equity_views(counts, policy=policy, shared=shared),
            practice_table(p, policy=policy, shared=shared),
        )
    )
