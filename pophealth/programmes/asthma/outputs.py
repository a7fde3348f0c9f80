"""What the asthma programme hands out: care-team worklists and disclosure-controlled aggregates.

Patient-level (care team only): the LADS-style review worklist per practice and per PCN, the
ISAC referral worklist and the pollution-episode list. Aggregates: every indicator by
practice, PCN, IMD quintile/decile, Core20, ethnicity, sex, age band and pollution quintile
(through :func:`pophealth.equity.equity_view`, which applies the one disclosure rule), the
detailed PCN × IMD quintile × ethnicity × age band table, the pollution × deprivation
cross-tab and the monthly SABA-overuse SPC per PCN (through :mod:`pophealth.disclosure`).
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pophealth import disclosure
from pophealth.equity import (
    SII_COLUMNS,
    EquityView,
    equity_view,
    sii_not_calculated,
    why_no_sii,
)
from pophealth.programmes.asthma.config import DEFAULT, AsthmaConfig

UNKNOWN = "Unknown"
#: The asthma register's identity among the run's counts
#: (:class:`pophealth.disclosure.SharedCounts`): by group, it is every indicator's
#: denominator, the attack rates' patients, the SABA chart's PCN denominators and the
#: pollution × deprivation margins.
REGISTER = "asthma.register"


def numerator_scope(column: str) -> str:
    """The identity of the people on the register with ``column`` (a flag) among the run's
    counts: an indicator's numerator, a cross-tab's margins, a pathway denominator."""
    return f"asthma.{column}"


# -- indicators -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Indicator:
    name: str
    column: str  # bool column of the evaluated frame
    title: str
    higher_is_better: bool = False


#: The indicators. ``[name]`` in a title is filled from the config (:meth:`AsthmaConfig.words`)
#: by :func:`indicator_table`, so a title always says the cut-off that was applied; the
#: indicator names (``saba_6plus``...) are stable ids named after the default cut-offs.
INDICATORS: tuple[Indicator, ...] = (
    Indicator("tier_high", "is_tier_high", "% in the high tier (pophealth LADS-style)"),
    Indicator("tier_moderate", "is_tier_moderate", "% in the moderate tier"),
    Indicator("saba_3plus", "flag_saba_review",
              "% with [saba_review] SABA inhalers in [lookback_months]"),
    Indicator("saba_6plus", "flag_saba_priority",
              "% with [saba_priority] SABA inhalers in [lookback_months] (national IIF measure)"),
    Indicator("saba_over12", "flag_saba_urgent", "% with [saba_urgent] SABA inhalers (NRAD)"),
    Indicator("amr_low", "flag_amr_low", "% with asthma medication ratio [amr_low]"),
    Indicator("ics_none", "flag_ics_none", "% with [ics_none] ICS issued in [lookback_months]"),
    Indicator("ics_under_collected", "flag_ics_under_collected",
              "% with ICS under-collected (some, but [ics_under_collected] inhalers in "
              "[lookback_months])"),
    Indicator("ocs_2plus", "flag_ocs_2plus", "% with [ocs_courses_flag] oral steroid courses"),
    Indicator("prednisolone_high", "flag_prednisolone_high",
              "% with [prednisolone_high_mg] prednisolone (known doses)"),
    Indicator("hospital_attack", "hospital_attack",
              "% with an A&E attendance or emergency admission for asthma"),
    Indicator("ed_2plus", "flag_ed_2plus",
              "% with [ed_secondary_followup] A&E attendances for asthma in [lookback_months] "
              "(NRAD: secondary-care follow-up)"),
    Indicator("no_review", "flag_no_review", "% with no asthma review in [lookback_months]"),
    Indicator("no_action_plan", "flag_no_action_plan",
              "% with no written action plan in [basics_lookback_months]"),
    Indicator("no_inhaler_technique", "flag_no_inhaler_technique",
              "% with no inhaler-technique check in [basics_lookback_months]"),
    Indicator("smoker", "flag_smoker", "% current smokers"),
    Indicator("uncontrolled", "uncontrolled", "% with uncontrolled asthma (ISAC/AAC criteria)"),
    Indicator("possible_severe", "possible_severe", "% with possible severe asthma (ISAC)"),
    Indicator("refer", "refer", "% meeting a severe-asthma referral criterion"),
    Indicator("flagged_no_referral", "flagged_no_referral",
              "% uncontrolled for [optimisation_months] or more with no referral recorded "
              "(ISAC timer)"),
)  # fmt: skip

#: Breakdowns of every indicator (equity_view adds IMD decile, quintile and Core20).
BREAKDOWNS = ("imd_quintile", "core20", "ethnicity", "sex", "age_band")
EXTRA = ("pcn", "practice", "no2_quintile", "pm_quintile")
#: the extra breakdowns released together: PCN and practice in one table, each practice's
#: counts adding up to its PCN's (so the audit knows it: ``nests``), each other on its own
EXTRA_TABLES = (("pcn", "practice"), ("no2_quintile",), ("pm_quintile",))
NESTS = {"practice": "pcn"}


def group_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """The grouping columns in the shape the equity layer expects (unknown kept as NA)."""
    return pd.DataFrame(
        {
            "imd_decile": frame["imd_decile"].astype("Float64"),
            "ethnicity": frame["ethnicity_5"].astype(object),
            "sex": frame["sex"].astype(object),
            "age_band": frame["age_band"].astype(object),
            "pcn": frame["pcn_name"].fillna(frame["pcn_id"]).astype(object),
            "practice": frame["practice_id"].astype(object),
            "no2_quintile": frame["no2_quintile"].astype("Float64"),
            "pm_quintile": frame["pm_quintile"].astype("Float64"),
        },
        index=frame.index,
    )


def count_table(
    frame: pd.DataFrame, keys: list[str], indicators: Iterable[Indicator]
) -> pd.DataFrame:
    """Numerators of every indicator and the denominator, summed by ``keys`` (unknown kept)."""
    groups = group_columns(frame)[keys]
    numerators = {
        f"x_{ind.name}": frame[ind.column].astype(bool).astype("int64").to_numpy()
        for ind in indicators
    }
    data = groups.assign(**numerators, denominator=1)
    out = data.groupby(keys, dropna=False, sort=True).sum().reset_index()
    for col in keys:
        if str(out[col].dtype) == "Float64":
            out[col] = out[col].astype(float)
    return out


#: What a view's notes say when :func:`_withhold_leaky` withheld breakdowns whole.
LEAKY_NOTE = (
    "breakdowns with a withheld count are withheld whole: a withheld count could otherwise "
    "be derived from other breakdowns"
)


def _guarded_view(*args, **kwargs) -> EquityView:
    """:func:`equity_view`, with every numerator-derived value of a breakdown withheld
    (:func:`_withhold_leaky`) where the disclosure audit says a withheld cell could still be
    derived; its notes then end with :data:`LEAKY_NOTE`."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        view = equity_view(*args, **kwargs)
    if any("could still be derived" in str(w.message) for w in caught):
        _withhold_leaky(view)
    return view


def _withhold_leaky(view: EquityView) -> None:
    """The disclosure audit found a withheld numerator recoverable across breakdowns (e.g.
    deciles vs quintiles): withhold every numerator-derived value of each breakdown that
    has a withheld numerator, and drop the SII."""
    b = view.breakdowns
    leaky = b.groupby("breakdown")["numerator"].transform(lambda v: v.isna().any())
    derived = [c for c in b.columns if c not in ("breakdown", "group", "denominator")]
    derived = [c for c in derived if pd.api.types.is_numeric_dtype(b[c]) or c == "flag"]
    b.loc[leaky.astype(bool), derived] = np.nan
    view.sii = pd.DataFrame(columns=list(SII_COLUMNS))
    if leaky[b["breakdown"] == "imd_quintile"].any():  # the gap is quintile 1 vs 5
        numbers = [c for c in view.gap.columns if pd.api.types.is_numeric_dtype(view.gap[c])]
        view.gap.loc[:, numbers] = np.nan
    view.notes.append(LEAKY_NOTE)


#: What each group's comparison with the rest of the register is computed from its Total.
REST_COLUMNS = (
    "rest_value", "difference", "difference_lower95_0cl", "difference_upper95_0cl", "flag",
    "test",
)  # fmt: skip


def _one_total(pieces: list[pd.DataFrame]) -> None:
    """The register's Total is one count in every piece (the standard breakdowns, and PCN,
    practice and pollution quintile, each released on its own): withheld in one piece (to
    protect a small group there), it is withheld in all — released elsewhere it would give
    back what was protected. Withheld with it: its value and limits and, in every piece,
    each group's comparison with the rest of the register (computed from the Total).
    Changes the pieces in place. For views built without a
    :class:`~pophealth.disclosure.SharedCounts`; with one, as in a programme run, the
    Total's copies are one decision through it."""
    for col in ("denominator", "numerator"):
        totals = [p["group"].astype(str) == "Total" for p in pieces]
        if not any(p.loc[t, col].isna().any() for p, t in zip(pieces, totals, strict=True)):
            continue
        withheld = ["numerator", "denominator"] if col == "denominator" else ["numerator"]
        for p, total in zip(pieces, totals, strict=True):
            if not total.any() or p.loc[total, col].isna().all():
                continue
            values = [c for c in p.columns if c == "value" or c.startswith(("lower", "upper"))]
            p.loc[total, [*withheld, *values]] = np.nan
            p.loc[total, "method"] = None
            p["disclosure_note"] = p["disclosure_note"].astype(object)
            why = f"{'x' if col == 'numerator' else 'n'} secondary (withheld in another breakdown)"
            p.loc[total, "disclosure_note"] = [
                why if pd.isna(n) else f"{n}; {why}" for n in p.loc[total, "disclosure_note"]
            ]
            for c in REST_COLUMNS:
                if c in p.columns:
                    p[c] = p[c].astype(object) if c in ("flag", "test") else p[c]
                    p.loc[:, c] = None if c in ("flag", "test") else np.nan


def _cell_keys(breakdown, group) -> list:
    """The register cell each row counts: ("Total",) or (breakdown, group as text)."""
    keys = []
    for b, g in zip(breakdown, group, strict=True):
        if b is None or g is None:
            keys.append(None)
        elif str(g) == "Total":
            keys.append(("Total",))
        else:
            keys.append((str(b), str(int(g)) if isinstance(g, float) else str(g)))
    return keys


def one_register_total(
    views: dict[str, EquityView], attacks: pd.DataFrame, spc: pd.DataFrame, cross: pd.DataFrame
) -> bool:
    """The number on the register, in all and in each group (IMD quintile, ethnicity, age
    band, PCN, pollution quintile), is one count in every table that gives it: each
    indicator's denominators, the attack rates' patients, the monthly SABA chart's PCN and
    Total denominators and the pollution × deprivation margins. Each table's disclosure
    control runs on its own; a count it withholds (to protect small groups there) is
    withheld in every table, with what is computed from it (values, limits, comparisons
    with the rest of the register). Changes the tables in place; returns whether any count
    was withheld this way.

    For tables built without a :class:`~pophealth.disclosure.SharedCounts`. The programme
    builds them in :meth:`~pophealth.disclosure.SharedCounts.settle`, where every table
    withholds (and its audit protects) each count another table withholds, so this finds
    nothing left to do there (the outputs of ``pophealth demo`` and of asthma runs on 50 to
    10,000 synthetic patients are the same with it and without it) and is not called."""
    places = []  # (frame, register cell of each row, count column, counts withheld with it)
    for view in views.values():
        b = view.breakdowns
        places.append((b, _cell_keys(b["breakdown"], b["group"]), "denominator", ["numerator"]))
    if len(attacks):
        places.append((attacks, _cell_keys(attacks["breakdown"], attacks["group"]), "patients", []))
    if len(spc):
        places.append(
            (spc, _cell_keys(["pcn"] * len(spc), spc["pcn"]), "denominator", ["numerator"])
        )
    if len(cross):
        p, q = cross["pollution_quintile"].astype(str), cross["imd_quintile"].astype(str)
        breakdown = np.where(
            q == "Total",
            cross["pollutant"] + "_quintile",
            np.where(p == "Total", "imd_quintile", None),
        )
        group = np.where(q == "Total", p, np.where(p == "Total", q, None))
        places.append((cross, _cell_keys(breakdown, group), "denominator", ["numerator"]))
    hidden = {
        key
        for frame, keys, col, _ in places
        for key, value in zip(keys, frame[col], strict=True)
        if key is not None and pd.isna(value)
    }
    changed = False
    for frame, keys, col, counts in places:
        rows = np.array([k in hidden for k in keys], dtype=bool) & frame[col].notna().to_numpy()
        if not rows.any():
            continue
        changed = True
        values = [c for c in frame.columns if c == "value" or c.startswith(("lower", "upper"))]
        frame.loc[rows, [col, *counts, *values]] = np.nan
        if "method" in frame.columns:
            frame["method"] = frame["method"].astype(object)
            frame.loc[rows, "method"] = None
        if "disclosure_note" in frame.columns:
            why = f"{col} secondary (withheld in another table)"
            notes = frame["disclosure_note"].astype(object)
            frame["disclosure_note"] = notes.where(
                ~rows, [why if pd.isna(n) else f"{n}; {why}" for n in notes]
            )
        # a group's comparison with the rest gives its count back; the Total's, everyone's
        # (in the indicators, the only table with comparisons: the cross-tab's "flag" is
        # the name of the flag it counts)
        total = any(keys[i] == ("Total",) for i in np.flatnonzero(rows))
        for c in REST_COLUMNS if "rest_value" in frame.columns else ():
            if c in frame.columns:
                empty = None if c in ("flag", "test") else np.nan
                if c in ("flag", "test"):
                    frame[c] = frame[c].astype(object)
                if total:
                    frame[c] = empty
                else:
                    frame.loc[rows, c] = empty
    for view in views.values():
        _drop_stale_gradients(view)
    return changed


def _drop_stale_gradients(view: EquityView) -> None:
    """The SII and the quintile gap are computed from the deciles' and quintiles' released
    counts: where one of those has since been withheld, they go too."""
    b = view.breakdowns
    dec = b[(b["breakdown"] == "imd_decile") & ~b["group"].astype(str).isin(["Total", UNKNOWN])]
    if len(view.sii) and dec[["numerator", "denominator", "value"]].isna().any().any():
        view.sii = pd.DataFrame(columns=list(SII_COLUMNS))
    q = b[b["breakdown"] == "imd_quintile"]
    q = pd.Series(q["value"].to_numpy(), index=q["group"].astype(str).to_numpy())
    gap = view.gap
    for label, col in (("1", "most_deprived_value"), ("5", "least_deprived_value")):
        if len(gap) and col in gap.columns and pd.isna(q.get(label, np.nan)):
            gap[col] = np.nan
            numbers = [c for c in gap.columns if c.startswith(("absolute_gap", "relative_gap"))]
            gap.loc[:, numbers] = np.nan


def indicator_views(
    frame: pd.DataFrame,
    indicators: Iterable[Indicator] = INDICATORS,
    *,
    sii_repetitions: int = 20_000,
    shared: disclosure.SharedCounts | None = None,
) -> dict[str, EquityView]:
    """One disclosure-controlled equity view per indicator (with SII across IMD deciles).

    The standard breakdowns (IMD decile/quintile, Core20, ethnicity, sex, age band) come
    from one equity view; PCN and practice from another (each practice's counts adding up
    to its PCN's, which its audit knows), and the pollution quintiles each on their own
    (each adds up to the register), appended.
    With ``shared``, each count is one decision with its copies in the run's other tables
    (:func:`numerator_scope`, :data:`REGISTER`)."""
    indicators = list(indicators)
    main = count_table(frame, ["imd_decile", "ethnicity", "sex", "age_band"], indicators)
    extra = {cols: count_table(frame, list(cols), indicators) for cols in EXTRA_TABLES}
    views = {}
    for ind in indicators:
        x = f"x_{ind.name}"
        scope = (numerator_scope(ind.column), REGISTER)
        view = _guarded_view(
            main, x, "denominator", breakdowns=BREAKDOWNS, higher_is_better=ind.higher_is_better,
            sii_repetitions=sii_repetitions, shared=shared, scope=scope,
        )  # fmt: skip
        pieces = [view.breakdowns]
        for cols, table in extra.items():
            more = _guarded_view(
                table, x, "denominator", breakdowns=(), extra=cols,
                higher_is_better=ind.higher_is_better, sii_repetitions=0, shared=shared,
                scope=scope, nests=NESTS,
            )  # fmt: skip
            if more.notes[-1] == LEAKY_NOTE:  # (the report reads the standard view's notes)
                view.notes.append(f"by {' and '.join(cols)}: {LEAKY_NOTE}")
            pieces.append(more.breakdowns)
        if shared is None:  # else the run's SharedCounts makes the Total one decision
            _one_total(pieces)
        view.breakdowns = pd.concat(pieces, ignore_index=True)
        views[ind.name] = view
    return views


def indicator_table(views: dict[str, EquityView], config: AsthmaConfig = DEFAULT) -> pd.DataFrame:
    """All indicators × breakdowns × groups in one long table (released counts only), each
    titled with the config's cut-offs."""
    titles = {i.name: config.words(i.title) for i in INDICATORS}
    parts = []
    for name, view in views.items():
        b = view.breakdowns.copy()
        b.insert(0, "indicator", name)
        b.insert(1, "indicator_title", titles.get(name, name))
        parts.append(b)
    out = pd.concat(parts, ignore_index=True)
    out["group"] = out["group"].astype(str)
    return out


def quintile_sii(view: EquityView, repetitions: int = 20_000) -> pd.DataFrame:
    """SII/RII across IMD quintiles from the view's released counts (used when a small
    population leaves some IMD deciles withheld, so the decile SII cannot be computed)."""
    from pophealth.stats import sii

    b = view.breakdowns
    q = b[(b["breakdown"] == "imd_quintile") & b["group"].isin([1, 2, 3, 4, 5])]
    q = q.sort_values("group")
    if len(q) != 5 or q[["numerator", "denominator", "value"]].isna().any().any():
        return pd.DataFrame()
    p = q["numerator"].to_numpy(dtype=float) / q["denominator"].to_numpy(dtype=float)
    extreme = bool(np.any((p <= 0) | (p >= 1)))
    m = view.multiplier
    out = sii(
        q["group"].astype(int).to_numpy(), q["denominator"].to_numpy(dtype=float), p,
        value_type=0 if extreme else "proportion",
        lower_cl=q["lower95_0cl"].to_numpy(dtype=float) / m,
        upper_cl=q["upper95_0cl"].to_numpy(dtype=float) / m,
        multiplier=m, repetitions=repetitions, confidence=(0.95, 0.998),
    )  # fmt: skip
    out.insert(0, "quantiles", "IMD quintiles (deciles withheld)")
    return out


#: The columns of :func:`sii_table` (kept when no indicator has an SII).
SII_TABLE_COLUMNS = ("indicator", "quantiles", *SII_COLUMNS, "quintile_gap_1_vs_5")


def sii_table(views: dict[str, EquityView]) -> pd.DataFrame:
    """The SII/RII of every indicator (across IMD deciles, else quintiles), with the
    quintile 1 vs 5 gap — an indicator with neither a row of missing figures whose
    ``method`` says why (:func:`pophealth.equity.why_no_sii`); no row, but the same
    columns, when there is no indicator."""
    parts = []
    for name, view in views.items():
        if view.sii is not None and not view.sii.empty:
            s = view.sii.copy()
            s.insert(0, "quantiles", "IMD deciles")
        else:
            s = quintile_sii(view)
            if s.empty:
                b = view.breakdowns
                why = why_no_sii(b, "imd_decile")
                why += "; " + why_no_sii(b, "imd_quintile").removeprefix("not calculated: ")
                s = sii_not_calculated(why, view.multiplier)
                s.insert(0, "quantiles", None)
        s.insert(0, "indicator", name)
        gap = view.gap.iloc[0].to_dict() if not view.gap.empty else {}
        s["quintile_gap_1_vs_5"] = gap.get("absolute_gap", np.nan)
        parts.append(s)
    if not parts:
        return pd.DataFrame(columns=list(SII_TABLE_COLUMNS))
    return pd.concat(parts, ignore_index=True)


def attacks_rate(
    frame: pd.DataFrame, policy=disclosure.DEFAULT_POLICY, shared=None
) -> pd.DataFrame:
    """Asthma attacks per 1,000 patients on the register by breakdown.

    Attacks = oral steroid courses + A&E attendances + emergency admissions for asthma in 12
    months (one attack can appear twice, e.g. A&E then a steroid course). Counts released
    under the disclosure policy — attacks withheld too when 1-7 patients had them, as a
    count of attacks can be a few patients' — and the rate and Poisson CI come from the
    released counts.
    """
    from pophealth.stats import rate

    g = group_columns(frame)
    g["imd_quintile"] = np.ceil(g["imd_decile"] / 2)
    attacks = frame["ocs_courses_12m"] + frame["ed_attendances_12m"] + frame["admissions_12m"]
    parts = []
    for col in ("imd_quintile", "ethnicity", "age_band", "pcn", "no2_quintile"):
        labels = g[col].astype(object).where(g[col].notna(), UNKNOWN)
        labels = labels.map(lambda v: int(v) if isinstance(v, float) else v)
        t = pd.DataFrame(
            {
                "group": labels,
                "attacks": attacks.to_numpy(),
                "patients": 1,
                "attacking": (attacks > 0).to_numpy().astype(int),
            }
        )
        sums = ["attacks", "patients", "attacking"]
        t = t.groupby("group", sort=True)[sums].sum().reset_index()
        total = pd.DataFrame({"group": ["Total"], **{c: [t[c].sum()] for c in sums}})
        t = pd.concat([t, total], ignore_index=True)
        t.insert(0, "breakdown", col)
        t["group"] = t["group"].astype(str)
        parts.append(t)
    counts = pd.concat(parts, ignore_index=True)
    shared_kw = {}
    if shared is not None:
        keys = disclosure.count_keys(REGISTER, counts["breakdown"], counts["group"])
        shared_kw = shared.masks({"patients": keys})
    released = disclosure.apply(
        counts, ["attacks", "patients"], policy=policy, by=["breakdown", "group"],
        margins=["group"], total_label="Total", patients={"attacks": "attacking"},
        same_total_across="breakdown", **shared_kw,
    )  # fmt: skip
    ok = released["attacks"].notna() & released["patients"].gt(0)
    stats = rate(
        released.loc[ok, "attacks"].to_numpy(), released.loc[ok, "patients"].to_numpy(), 1000
    )
    for col in ("value", "lower95_0cl", "upper95_0cl", "method"):
        released.loc[ok, col] = stats[col].to_numpy()
    released["statistic"] = "attacks per 1,000 patients on the register"
    return released


def detail_table(
    frame: pd.DataFrame,
    flags: Iterable[str],
    policy=disclosure.DEFAULT_POLICY,
    shared: disclosure.SharedCounts | None = None,
) -> pd.DataFrame:
    """Flags by PCN × IMD quintile × ethnicity × age band, Wilson CIs from released counts.

    Its cells add up to counts the indicators table releases: the register and the people
    with each flag by PCN, by IMD quintile, by ethnicity, by age band and overall. So each
    flag's table is released with those totals as rows of its own (each a set of the cells
    it adds up from: :func:`detail_totals`), which the audit reads as a reader of both
    tables would — twelve cells of 1-7 (each withheld) beside their ethnic group's register
    of 12 (released as 10) are 1 each — and which are then left out (the indicators table
    gives them). With ``shared`` they are keyed as the indicators' counts, so one decision
    with them: a total this table must withhold to protect its cells is withheld there too."""
    g = group_columns(frame)
    g["imd_quintile"] = np.ceil(g["imd_decile"] / 2)
    keys = list(DETAIL_KEYS)
    groups = g[keys].astype(object)
    groups = groups.where(groups.notna(), UNKNOWN)
    groups["imd_quintile"] = groups["imd_quintile"].map(
        lambda v: str(int(v)) if isinstance(v, float) else v
    )
    parts = []
    for col in flags:
        data = groups.assign(x=frame[col].astype(bool).astype(int).to_numpy(), n=1)
        cells = data.groupby(keys, sort=True)[["x", "n"]].sum().reset_index()
        t, nested, breakdown, group = detail_totals(cells)
        t.insert(0, "flag", col)
        is_cell = np.arange(len(t)) < len(cells)
        count_keys = {
            "x": disclosure.count_keys(numerator_scope(col), breakdown, group),
            "n": disclosure.count_keys(REGISTER, breakdown, group),
        }
        count_keys = {c: [k if not cell else None for k, cell in zip(v, is_cell, strict=True)]
                      for c, v in count_keys.items()}  # fmt: skip
        # a cell of 1-7 people is not listed at all (nor is an empty one): listed as
        # withheld, it would say it holds 1 or more, and twelve such cells beside their
        # ethnic group's register of 12 (released as 10: 8-12) are 1 each
        small = is_cell & policy.primary_mask(t["n"].to_numpy())
        released = disclosure.release_proportions(
            t, "x", "n", policy=policy, by=["flag", *keys], margins=["age_band"],
            total_label=TOTAL, nested=nested, hidden=small,
            **(shared.masks(count_keys) if shared is not None else {}),
        )  # fmt: skip
        if shared is not None:
            for c, k in count_keys.items():
                shared.record(k, released[c], f"detail_pcn_imd_ethnicity_age[{col}]")
        # and a cell whose people are withheld is not listed either (so a reader cannot
        # tell it from one with nobody, or with 1-7)
        released = released[is_cell & released["n"].notna().to_numpy()].reset_index(drop=True)
        parts.append(released.rename(columns={"x": "numerator", "n": "denominator"}))
    return pd.concat(parts, ignore_index=True)


#: the columns of the detail table, each a breakdown of the indicators table
DETAIL_KEYS = ("pcn", "imd_quintile", "ethnicity", "age_band")
TOTAL = "Total"


def detail_totals(
    cells: pd.DataFrame,
) -> tuple[pd.DataFrame, list[tuple[list[int], int]], list[str], list[object]]:
    """``cells`` (one row per group of :data:`DETAIL_KEYS`, counts ``x`` and ``n``) with a
    row per group of each column — its other columns ``"Total"`` — and the overall row
    after them; the sets of cells each of those rows adds up from; and each row's
    breakdown and group as the indicators table names them (a cell's: ``"cell"``)."""
    keys = list(DETAIL_KEYS)
    rows = [cells]
    nested: list[tuple[list[int], int]] = []
    breakdown: list[str] = ["cell"] * len(cells)
    group: list[object] = [None] * len(cells)
    at = len(cells)
    for k in keys:
        margin = cells.groupby(k, sort=True)[["x", "n"]].sum().reset_index()
        for o in keys:
            if o != k:
                margin[o] = TOTAL
        for v in margin[k]:
            nested.append((np.flatnonzero((cells[k] == v).to_numpy()).tolist(), at))
            breakdown.append(k)
            group.append(v)
            at += 1
        rows.append(margin[[*keys, "x", "n"]])
    overall = pd.DataFrame({**{k: [TOTAL] for k in keys}, "x": [cells["x"].sum()],
                            "n": [cells["n"].sum()]})  # fmt: skip
    nested.append((list(range(len(cells))), at))
    breakdown.append(TOTAL)
    group.append(TOTAL)
    rows.append(overall)
    return pd.concat(rows, ignore_index=True), nested, breakdown, group


def _q_label(v) -> str:
    return UNKNOWN if pd.isna(v) else str(int(v))


def pollution_by_deprivation(
    frame: pd.DataFrame, column: str, pollutant: str = "no2_quintile",
    policy=disclosure.DEFAULT_POLICY, shared=None,
) -> pd.DataFrame:  # fmt: skip
    """Cross-tab of ``column`` (a flag) by pollution quintile × IMD quintile, with margins
    (with ``shared``, a margin another table withholds is withheld here too, see
    :func:`_withhold_shared_margins`)."""
    g = group_columns(frame)
    imd = np.ceil(g["imd_decile"] / 2)
    t = pd.DataFrame(
        {
            "pollution_quintile": g[pollutant].map(
                lambda v: UNKNOWN if pd.isna(v) else str(int(v))
            ),
            "imd_quintile": imd.map(lambda v: UNKNOWN if pd.isna(v) else str(int(v))),
            "x": frame[column].astype(bool).astype(int).to_numpy(),
            "n": 1,
        }
    )
    cells = t.groupby(["pollution_quintile", "imd_quintile"])[["x", "n"]].sum().reset_index()
    by_p = t.groupby("pollution_quintile")[["x", "n"]].sum().reset_index()
    by_p["imd_quintile"] = "Total"
    by_i = t.groupby("imd_quintile")[["x", "n"]].sum().reset_index()
    by_i["pollution_quintile"] = "Total"
    grand = pd.DataFrame(
        {"pollution_quintile": ["Total"], "imd_quintile": ["Total"], "x": [t.x.sum()],
         "n": [t.n.sum()]}
    )  # fmt: skip
    table = pd.concat([cells, by_p, by_i, grand], ignore_index=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        released = disclosure.release_proportions(
            table, "x", "n", policy=policy, by=["pollution_quintile", "imd_quintile"],
            margins=["pollution_quintile", "imd_quintile"], total_label="Total",
        )  # fmt: skip
    if any("could still be derived" in str(w.message) for w in caught):
        # the disclosure audit found a withheld cell recoverable from the margins: publish
        # the inner cells only
        totals = (released["pollution_quintile"] == "Total") | (released["imd_quintile"] == "Total")
        released = released[~totals].reset_index(drop=True)
    if shared is not None:
        _withhold_shared_margins(released, column, pollutant, shared)
    released.insert(0, "pollutant", pollutant.replace("_quintile", ""))
    released.insert(1, "flag", column)
    return released.rename(columns={"x": "numerator", "n": "denominator"})


def _withhold_shared_margins(
    released: pd.DataFrame, column: str, pollutant: str, shared: disclosure.SharedCounts
) -> None:
    """Withhold the margins of a released cross-tab that the run withholds elsewhere (the
    register, or the people with ``column``, in an IMD or pollution quintile), with the
    values computed from them. The cross-tab is not released again around them: in a
    table of 6 × 6 small cells, protecting a margin withheld elsewhere withheld further
    margins, which the other tables then withheld, pass after pass, until the register's
    Total went (10,000 synthetic patients, seed 42). Its margins are released under its
    own audit and withheld wherever another table withholds them; what it withholds, the
    others withhold and protect (see docs/statistics.md). An attacker who reads the
    cross-tab and the indicators side by side and solves for each withheld count by linear
    and integer programmes pins none but zeros on 300 to 50,000 synthetic patients
    (tests/programmes/test_crosstab_margins_lp.py)."""
    n_keys = cross_keys(released["pollution_quintile"], released["imd_quintile"], pollutant)
    x_keys = [k and (numerator_scope(column), *k[1:]) for k in n_keys]
    n_rows = shared.withheld(n_keys) & released["n"].notna().to_numpy()
    x_rows = (shared.withheld(x_keys) | n_rows) & released["x"].notna().to_numpy()
    # a denominator to withhold counts too where its numerator is withheld already
    if not (x_rows.any() or n_rows.any()):
        return
    derived = [c for c in released.columns if c == "value" or c.startswith(("lower", "upper"))]
    released.loc[n_rows, "n"] = np.nan
    released.loc[x_rows, ["x", *derived]] = np.nan
    released["method"] = released["method"].astype(object).where(~x_rows, None)
    # each note names its count, as release_proportions' do: a numerator withheld with its
    # denominator says so first
    why = disclosure.ELSEWHERE
    notes = []
    for i, note in enumerate(released["disclosure_note"].astype(object)):
        parts = [] if pd.isna(note) else [str(note)]
        if x_rows[i]:
            parts.append("x with denominator" if n_rows[i] else f"x {why}")
        if n_rows[i]:
            parts.append(f"n {why}")
        notes.append("; ".join(parts) or None)
    released["disclosure_note"] = notes


def cross_keys(pollution_quintile, imd_quintile, pollutant: str) -> list:
    """The register count each row of a pollution × deprivation table gives: a margin is the
    register in one IMD or pollution quintile (the grand total, all of it); an inner cell,
    no other table's (``None``). For a flag's counts, swap :data:`REGISTER` for its
    :func:`numerator_scope`."""
    keys = []
    for p, q in zip(pollution_quintile, imd_quintile, strict=True):
        p, q = str(p), str(q)
        if p == "Total" and q == "Total":
            keys.append((REGISTER, "Total"))
        elif p == "Total":
            keys.append((REGISTER, "imd_quintile", q))
        elif q == "Total":
            keys.append((REGISTER, pollutant, p))
        else:
            keys.append(None)
    return keys


def saba_chart_keys(counts: pd.DataFrame, index_date: dt.date | None) -> dict[str, list]:
    """The identity of the monthly SABA chart's counts (columns ``month``, ``pcn``): ``n`` is
    the register by PCN in every month; ``x``, in the month that ends on the index date, is
    the people with SABA over-use by PCN — the indicator ``saba_6plus``'s numerator, as the
    12 months to that month's end are the look-back — and in other months no other table's
    count (``None``). With an index date that is not a month end no month is the look-back."""
    n = len(counts)
    n_keys = disclosure.count_keys(REGISTER, ["pcn"] * n, counts["pcn"])
    x_keys: list = [None] * n
    if index_date is not None and (index_date + dt.timedelta(days=1)).day == 1:
        scope = numerator_scope("flag_saba_priority")
        same = (counts["month"] == f"{index_date.year:04d}-{index_date.month:02d}").to_numpy()
        keys = disclosure.count_keys(scope, ["pcn"] * n, counts["pcn"])
        x_keys = [k if s else None for k, s in zip(keys, same, strict=True)]
    return {"x": x_keys, "n": n_keys}


def monthly_saba_overuse(
    monthly: pd.DataFrame, frame: pd.DataFrame, config: AsthmaConfig = DEFAULT,
    policy=disclosure.DEFAULT_POLICY, shared=None, index_date: dt.date | None = None,
) -> pd.DataFrame:  # fmt: skip
    """% of the register with ≥ 6 SABA (``saba_priority``) in the 12 months
    (``lookback_months``) to each month end, per PCN.

    ``monthly`` holds SABA issues per patient per month (``patient_id``, ``month`` as
    year·12 + month − 1, ``n``) and the attribute ``attrs["months"]`` lists the month ends to
    evaluate. The denominator is the register at the index date (a fixed cohort looking back).
    Counts are released under the disclosure policy per PCN and month. With ``shared``,
    the register by PCN and, in the month ending on ``index_date``, the people with SABA
    over-use by PCN are one decision with their copies in the indicators
    (:func:`saba_chart_keys`).
    """
    months: list[int] = monthly.attrs["months"]
    pcn = frame.set_index("patient_id")["pcn_name"].fillna(frame.set_index("patient_id")["pcn_id"])
    pids = pd.Index(frame["patient_id"])
    first = months[0] - (config.lookback_months - 1)
    span = months[-1] - first + 1
    grid = np.zeros((len(pids), span), dtype=np.int32)
    m = monthly[monthly["patient_id"].isin(pids)]
    rows = pids.get_indexer(m["patient_id"])
    cols = m["month"].to_numpy() - first
    keep = (cols >= 0) & (cols < span)
    np.add.at(grid, (rows[keep], cols[keep]), m["n"].to_numpy()[keep])
    csum = np.concatenate([np.zeros((len(pids), 1), np.int64), grid.cumsum(axis=1)], axis=1)
    out = []
    threshold = config.saba_priority
    from pophealth.programmes.asthma.rules import passes

    for mo in months:
        hi = mo - first + 1
        lo = hi - config.lookback_months
        rolling = pd.Series(csum[:, hi] - csum[:, lo])
        flag = passes(rolling, threshold).to_numpy()
        t = pd.DataFrame({"pcn": pcn.reindex(pids).to_numpy(), "x": flag.astype(int), "n": 1})
        t["pcn"] = t["pcn"].fillna(UNKNOWN)
        t = t.groupby("pcn")[["x", "n"]].sum().reset_index()
        t = pd.concat(
            [t, pd.DataFrame({"pcn": ["Total"], "x": [t.x.sum()], "n": [t.n.sum()]})],
            ignore_index=True,
        )
        t["month"] = f"{mo // 12:04d}-{mo % 12 + 1:02d}"
        out.append(t)
    counts = pd.concat(out, ignore_index=True)
    shared_kw = {}
    if shared is not None:  # the register by PCN (every month), SABA over-use at the index
        shared_kw = shared.masks(saba_chart_keys(counts, index_date))
    released = disclosure.release_proportions(
        counts, "x", "n", policy=policy, by=["month", "pcn"], margins=["pcn"],
        total_label="Total", **shared_kw,
    )  # fmt: skip
    return released.rename(columns={"x": "numerator", "n": "denominator"})


# -- patient-level worklists (care team only) ----------------------------------------------

WORKLIST_COLUMNS = (
    "practice_id", "practice_name", "pcn_name", "patient_id", "age", "sex", "tier",
    "reasons", "saba_count_12m", "ics_count_12m", "amr", "high_dose_ics", "ocs_courses_12m",
    "prednisolone_mg_12m", "prednisolone_unknown_issues_12m", "prednisolone_dose",
    "ed_attendances_12m", "admissions_12m", "review_12m",
    "action_plan_12m", "inhaler_technique_12m", "smoker", "uncontrolled", "refer",
    "imd_decile", "core20", "no2_quintile", "pm_quintile", "lsoa_code",
)  # fmt: skip


def worklist(frame: pd.DataFrame, by: str = "practice_id", tiers=("high", "moderate")):
    """Patients to review first, per practice (or PCN): tier, then priority, then SABA.

    ``rank`` numbers patients within each practice/PCN in that order. A PCN without a name
    is listed under its code, and a practice with no PCN under "Unknown", as in the
    aggregates (:func:`group_columns`), so every patient has a group and a rank."""
    wl = frame[frame["tier"].isin(tiers)].copy()
    key = wl[by]
    if by == "pcn_name" and "pcn_id" in wl.columns:
        key = key.fillna(wl["pcn_id"])
    wl[by] = key.astype(object).where(key.notna(), UNKNOWN)
    tier_order = wl["tier"].cat.codes if hasattr(wl["tier"], "cat") else wl["tier"]
    wl = wl.assign(_t=tier_order)
    wl = wl.sort_values(
        [by, "_t", "priority", "saba_count_12m", "patient_id"],
        ascending=[True, True, False, False, True],
        kind="stable",
    )
    wl["rank"] = wl.groupby(by, sort=False).cumcount() + 1
    wl["amr"] = wl["amr"].round(2)  # as the reasons say it ("medication ratio 0.43")
    cols = [by, "rank"] + [c for c in WORKLIST_COLUMNS if c != by]
    if by != "pcn_name":
        cols = [c for c in cols if c in wl.columns]
    return wl[[c for c in cols if c in wl.columns]].reset_index(drop=True)


ISAC_COLUMNS = (
    "practice_id", "practice_name", "pcn_name", "patient_id", "age", "sex", "refer",
    "refer_because", "uncontrolled_because", "possible_severe", "hard_trigger",
    "flagged_no_referral", "referral_date", "secondary_care_wait_days",
    "secondary_care_breach", "sac_referral_date", "sac_wait_days", "sac_breach",
    "ocs_courses_12m", "prednisolone_mg_12m", "prednisolone_unknown_issues_12m",
    "prednisolone_dose", "ocs_months_12m", "maintenance_ocs", "ocs_daily_mg",
    "high_dose_ics", "saba_count_12m", "ics_count_12m", "ed_attendances_12m",
    "admissions_12m", "critical_care_attacks_12m", "imd_decile", "ethnicity_5",
)  # fmt: skip


#: The ISAC pathway measures: (name, numerator column, denominator column, meaning).
PATHWAY_MEASURES: tuple[tuple[str, str, str, str], ...] = (
    ("flagged_no_referral", "flagged_no_referral", "uncontrolled",
     "% of uncontrolled patients uncontrolled [optimisation_months] ago too and not referred "
     "since"),
    ("referred_12m", "referred_12m", "uncontrolled",
     "% of uncontrolled patients referred to a respiratory specialist in the last "
     "[lookback_months]"),
    ("secondary_care_breach", "secondary_care_breach_12m", "referred_12m",
     "% of those referred in the last [lookback_months] waiting, or seen, more than "
     "[secondary_care_weeks]"),
    ("secondary_care_waiting", "secondary_care_waiting_12m", "referred_12m",
     "% of those referred in the last [lookback_months] not seen yet"),
    ("sac_breach", "sac_breach_12m", "sac_referred_12m",
     "% of those referred to a severe asthma centre in the last [lookback_months] waiting, "
     "or seen, more than [sac_weeks]"),
)  # fmt: skip


#: The pathway step whose referral code list each referral count needs.
PATHWAY_REFERRAL_STEPS = {"referred_12m": "secondary"}

#: The pathway step whose referral and clinic-visit code lists each timer needs.
PATHWAY_TIMER_STEPS = {
    "secondary_care_breach": "secondary",
    "secondary_care_waiting": "secondary",
    "sac_breach": "sac",
}


def pathway_flags(frame: pd.DataFrame, index_date, config: AsthmaConfig = DEFAULT) -> pd.DataFrame:
    """The bool columns the pathway summary counts: referrals in the look-back window and
    their waits (an older referral still open is in the worklist, not in these rates)."""
    from pophealth.programmes.asthma.rules import window_start

    start = pd.Timestamp(window_start(index_date, config.lookback_months))
    out = pd.DataFrame(index=frame.index)
    out["uncontrolled"] = frame["uncontrolled"].astype(bool)
    out["flagged_no_referral"] = frame["flagged_no_referral"].astype(bool) & out["uncontrolled"]
    for step, col in (("", "referral_date"), ("sac_", "sac_referral_date")):
        recent = pd.to_datetime(frame[col]).ge(start).fillna(False).astype(bool)
        out[f"{step}referred_12m"] = recent
        name = "secondary_care" if not step else "sac"
        out[f"{name}_breach_12m"] = recent & frame[f"{name}_breach"].astype(bool)
        out[f"{name}_waiting_12m"] = recent & frame[f"{name}_waiting"].astype(bool)
    return out


def pathway_summary(
    frame: pd.DataFrame, index_date, config: AsthmaConfig = DEFAULT,
    policy=disclosure.DEFAULT_POLICY, shared=None, timed: Iterable[str] = ("secondary", "sac"),
    referred: Iterable[str] = ("secondary", "sac"),
) -> pd.DataFrame:  # fmt: skip
    """The ISAC pathway (timers) for the whole register and by IMD quintile and ethnicity
    (PROGRAMMES.md §2.4), each measure a proportion with Wilson CIs from released counts.
    With ``shared``, its counts are one decision with their copies in other tables and
    measures (:func:`pathway_keys`). ``timed``: the steps whose waits the records can time
    (:meth:`AsthmaCodes.seen_recorded`); a timer of another step is left out, not shown as
    0 of 0 or as no breach (its code lists are missing, as the report's notes say).
    ``referred``: the steps whose referral list exists; without the secondary-care list the
    share referred is left out, not shown as 0% referred."""
    timed, referred = set(timed), set(referred)
    flags = pathway_flags(frame, index_date, config)
    g = group_columns(frame)
    groups = {
        "imd_quintile": np.ceil(g["imd_decile"] / 2).map(_q_label),
        "ethnicity": g["ethnicity"].where(g["ethnicity"].notna(), UNKNOWN).astype(str),
    }
    parts = []
    for name, x_col, n_col, meaning in PATHWAY_MEASURES:
        step = PATHWAY_TIMER_STEPS.get(name)
        if step is not None and step not in timed:
            continue
        needs = PATHWAY_REFERRAL_STEPS.get(name)
        if needs is not None and needs not in referred:
            continue
        x = flags[x_col] & flags[n_col]
        tables = []
        for breakdown, labels in groups.items():
            t = pd.DataFrame({"group": labels.to_numpy(), "x": x.astype(int).to_numpy(),
                              "n": flags[n_col].astype(int).to_numpy()})  # fmt: skip
            t = t.groupby("group", sort=True)[["x", "n"]].sum().reset_index()
            total = pd.DataFrame({"group": ["Total"], "x": [t.x.sum()], "n": [t.n.sum()]})
            t = pd.concat([t, total], ignore_index=True)
            t.insert(0, "breakdown", breakdown)
            tables.append(t)
        t = pd.concat(tables, ignore_index=True)
        t.insert(0, "measure", name)
        shared_kw = shared.masks(pathway_keys(t, x_col, n_col)) if shared is not None else {}
        # one release for both breakdowns: their Totals are one count, withheld in both or
        # in neither (released by IMD quintile, a Total withheld by ethnicity gave it back)
        released = disclosure.release_proportions(
            t, "x", "n", policy=policy, by=["measure", "breakdown", "group"],
            margins=["group"], total_label="Total", same_total_across="breakdown",
            **shared_kw,
        )  # fmt: skip
        released["meaning"] = config.words(meaning)
        parts.append(released.rename(columns={"x": "numerator", "n": "denominator"}))
    return pd.concat(parts, ignore_index=True)


def pathway_keys(table: pd.DataFrame, x_col: str, n_col: str) -> dict[str, list]:
    """The identity of a pathway measure's counts (``x``: ``x_col`` among ``n_col``, ``n``:
    ``n_col``) by group. Flagged without referral are all uncontrolled, so that numerator is
    the indicator's; the people with uncontrolled asthma are the indicator's numerator and
    the denominator of two measures, the people referred in the last 12 months the
    denominator of both timers. The other numerators are in no other table (``None``)."""
    groups = table["breakdown"], table["group"]
    x_keys = [None] * len(table)
    if (x_col, n_col) == ("flagged_no_referral", "uncontrolled"):
        x_keys = disclosure.count_keys(numerator_scope(x_col), *groups)
    return {"x": x_keys, "n": disclosure.count_keys(numerator_scope(n_col), *groups)}


def record_tables(
    shared: disclosure.SharedCounts,
    views: dict[str, EquityView],
    attacks: pd.DataFrame,
    spc: pd.DataFrame,
    cross: pd.DataFrame,
    pathway: pd.DataFrame,
    index_date: dt.date | None = None,
) -> None:
    """Tell the run's register of counts what the asthma tables, as published (after
    the steps that withhold more, such as :func:`_withhold_shared_margins`), withhold and
    release (``index_date``: the run's, for the SABA chart's month that is the look-back)."""
    by_column = {ind.name: ind.column for ind in INDICATORS}
    for name, view in views.items():
        b = view.breakdowns
        scope = numerator_scope(by_column.get(name, name))
        shared.record(disclosure.count_keys(scope, b["breakdown"], b["group"]), b["numerator"],
                      f"indicators[{name}]")  # fmt: skip
        shared.record(disclosure.count_keys(REGISTER, b["breakdown"], b["group"]),
                      b["denominator"], f"indicators[{name}]")  # fmt: skip
    if len(attacks):
        keys = disclosure.count_keys(REGISTER, attacks["breakdown"], attacks["group"])
        shared.record(keys, attacks["patients"], "attacks_per_1000")
    if len(spc):
        keys = saba_chart_keys(spc, index_date)
        shared.record(keys["n"], spc["denominator"], "saba_overuse_monthly")
        shared.record(keys["x"], spc["numerator"], "saba_overuse_monthly")
    for (pollutant, flag), c in cross.groupby(["pollutant", "flag"], sort=False):
        keys = cross_keys(c["pollution_quintile"], c["imd_quintile"], f"{pollutant}_quintile")
        shared.record(keys, c["denominator"], "pollution_by_deprivation")
        flag_keys = [k and (numerator_scope(flag), *k[1:]) for k in keys]
        shared.record(flag_keys, c["numerator"], "pollution_by_deprivation")
    for name, x_col, n_col, _ in PATHWAY_MEASURES:
        rows = pathway[pathway["measure"] == name]
        for col, keys in pathway_keys(rows, x_col, n_col).items():
            shared.record(keys, rows["numerator" if col == "x" else "denominator"],
                          "isac_pathway")  # fmt: skip


def isac_worklist(frame: pd.DataFrame) -> pd.DataFrame:
    """Uncontrolled asthma for the ISAC pharmacist: hard triggers first, then possible severe,
    then flagged > 6 months without referral, then other uncontrolled patients.

    ``ocs_daily_mg`` is the maintenance dose, given only beside ``maintenance_ocs`` = True:
    for anyone else the dataset's estimate (mg ÷ days since the first issue) is a burst
    spread over the year, not a dose the patient is on, and it is left empty."""
    wl = frame[frame["uncontrolled"] | frame["hard_trigger"]].copy()
    maintenance = wl["maintenance_ocs"].astype(bool)
    wl["ocs_daily_mg"] = pd.to_numeric(wl["ocs_daily_mg"]).astype(float).where(maintenance).round(2)
    wl["_order"] = np.select(
        [wl["hard_trigger"], wl["possible_severe"], wl["flagged_no_referral"]], [0, 1, 2], 3
    )
    wl = wl.sort_values(
        ["practice_id", "_order", "ocs_courses_12m", "saba_count_12m", "patient_id"],
        ascending=[True, True, False, False, True],
        kind="stable",
    )
    wl["rank"] = wl.groupby("practice_id", sort=False).cumcount() + 1
    cols = ["practice_id", "rank"] + [c for c in ISAC_COLUMNS if c != "practice_id"]
    return wl[cols].reset_index(drop=True)


def pollution_episode_list(
    frame: pd.DataFrame, areas: pd.DataFrame, tiers=("high", "moderate")
) -> pd.DataFrame:
    """High-risk patients living in areas forecast to have high pollution, per practice,
    ordered by tier, then priority, then patient id.

    ``areas`` has a ``code`` column of LSOA codes or local-authority (LAD) codes (e.g. read
    from the forecast CSV) and optionally ``date``. Patients with an unknown home area cannot
    be matched and are not listed (they are counted in the returned frame's
    ``attrs["unknown_area"]``)."""
    if "code" not in areas.columns:
        raise ValueError(
            f"pollution episode areas: expected a 'code' column, got {list(areas.columns)}"
        )
    wanted = set(areas["code"].astype(str).str.strip())
    hit = frame["lsoa_code"].isin(wanted) | frame["lad_code"].isin(wanted)
    risk = frame["tier"].isin(tiers)
    out = frame[hit & risk].copy()
    out = out.sort_values(
        ["practice_id", "tier", "priority", "patient_id"],
        ascending=[True, True, False, True],
        kind="stable",
    )
    cols = ["practice_id", "practice_name", "patient_id", "age", "tier", "reasons", "lsoa_code",
            "lad_code"]  # fmt: skip
    result = out[cols].reset_index(drop=True)
    result.attrs["unknown_area"] = int((risk & frame["lsoa_code"].isna()).sum())
    return result


#: Area codes a pollution forecast may name: LSOAs (E01/W01, fictional X01) and local
#: authority districts (E06-E09, W06, fictional X08).
AREA_CODE_PATTERN = r"^(?:[EWX]01\d{6}|E0[6-9]\d{6}|W06\d{6}|X08\d{6})$"


def read_episode_areas(path) -> pd.DataFrame:
    """Read a pollution-forecast CSV: a ``code`` column of LSOA or LAD codes (other columns,
    such as ``date``, are kept). A bad code is an error naming the file, row and field."""
    from pathlib import Path

    path = Path(path)
    try:
        areas = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ValueError(f"{path}: cannot read the pollution-episode areas: {exc}") from exc
    if "code" not in areas.columns:
        raise ValueError(
            f"{path}: expected a 'code' column of LSOA or LAD codes, got {list(areas.columns)}"
        )
    codes = areas["code"].str.strip()
    bad = ~codes.str.match(AREA_CODE_PATTERN)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError(
            f"{path}, row {row + 2}, field 'code': {areas['code'].iloc[row]!r} is not an LSOA "
            "(E01/W01/X01 + 6 digits) or local-authority (E06-E09/W06/X08 + 6 digits) code"
        )
    return areas.assign(code=codes)
