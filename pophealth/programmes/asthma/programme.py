"""``pophealth run asthma``: the asthma programme end to end.

records + deprivation + pollution → per-patient markers (:mod:`.dataset`) → flags, the
LADS-style tier with reasons and ISAC case finding (:mod:`.rules`) → care-team worklists
and disclosure-controlled indicators, equity views, cross-tab and SPC (:mod:`.outputs`) →
report sections with charts.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from pophealth import disclosure
from pophealth.codelists import Codelist
from pophealth.programmes import Figure, Output, ProgrammeResult, Section
from pophealth.programmes.asthma import dataset, outputs, rules
from pophealth.programmes.asthma.codes import MATCHED_IN, AsthmaCodes, curated
from pophealth.programmes.asthma.config import DEFAULT, AsthmaConfig
from pophealth.query.unmatched import unmatched_lists

TITLE = "Asthma: LADS-style decision support and severe-asthma case finding (ISAC)"
SCHEME_NOTE = (
    "The risk tier is pophealth's own LADS-style scheme, built from national evidence "
    "(NRAD, BTS/SIGN, NHS Scotland, NHSBSA, AAC); the London Asthma Decision Support "
    "tool's own rules are unpublished and are not reproduced here."
)


def evaluate(
    con,
    index_date: dt.date,
    codes: AsthmaCodes,
    config: AsthmaConfig = DEFAULT,
    engine: str = "duckdb",
) -> pd.DataFrame:
    """The evaluated per-patient frame: markers, flags, tier and reasons, ISAC, timers."""
    m = dataset.markers(con, codes, index_date, config, engine)
    out = rules.evaluate(m, index_date, config, seen_recorded=codes.seen_recorded())
    out["is_tier_high"] = out["tier"].eq("high")
    out["is_tier_moderate"] = out["tier"].eq("moderate")
    out["hospital_attack"] = out["flag_ed"] | out["flag_admitted"]
    return out


def unmatched_codes(con: Any, codes: AsthmaCodes) -> list[str]:
    """The programme's lists that match no row of their table in the store at any date,
    as "attribute (list name)" (:func:`pophealth.query.unmatched.unmatched_lists`)."""
    uses = {}
    for f in fields(codes):
        cl = getattr(codes, f.name)
        if isinstance(cl, Codelist):
            table, column = MATCHED_IN.get(f.name, ("events", None))
            uses[f.name] = (table, column, cl)
    return [f"{name} ({uses[name][2].name})" for name in unmatched_lists(con, uses)]


@dataclass
class AsthmaProgramme:
    name: str = "asthma"
    title: str = TITLE
    config: AsthmaConfig = DEFAULT
    codes: AsthmaCodes | None = None
    sii_repetitions: int = 20_000
    detail_flags: tuple[str, ...] = field(
        default=("is_tier_high", "flag_saba_priority", "flag_amr_low", "hospital_attack")
    )

    def run(self, backend: Any, *, index_date: dt.date, engine: str) -> ProgrammeResult:
        codes = self.codes or curated()
        cfg = self.config
        frame = evaluate(backend, index_date, codes, cfg, engine)
        monthly = dataset.saba_monthly(backend, codes, index_date, cfg)
        result = ProgrammeResult(self.name, self.title, index_date, engine)

        # -- aggregates ---------------------------------------------------------------------
        # computed with nobody on the register too: each table is then its totals (0) with
        # every column, as in any other run
        views, attacks, cross, spc, pathway, detail = disclosure.SharedCounts().settle(
            lambda shared: self._shared_tables(
                frame,
                monthly,
                index_date,
                shared,
                timed=codes.seen_recorded(),
                referred=codes.referrals_recorded(),
            )
        )
        policy_text = next(iter(views.values())).policy.describe()
        indicators = outputs.indicator_table(views, cfg)
        sii = outputs.sii_table(views)  # from the counts left released
        registered = len(frame) > 0
        agg = [
            ("indicators", indicators,
             "Every indicator by practice, PCN, IMD quintile/decile, Core20, ethnicity, sex, age "
             "band and NO2/particulate quintile, with Wilson 95%/99.8% CIs and the difference "
             "from the rest of the register"),
            ("key_indicators", _key_indicators(indicators),
             "Key indicators by IMD quintile, Core20 and NO2 quintile (from the indicators "
             "table): value, 95% CI and whether the group differs from the rest"),
            ("sii", sii, "Slope and relative index of inequality across IMD deciles"),
            ("attacks_per_1000", attacks,
             "Asthma attacks (OCS courses + A&E + emergency admissions) per 1,000 on the register"),
            ("detail_pcn_imd_ethnicity_age", detail,
             "Flags by PCN × IMD quintile × ethnicity × age band (the cells whose people are "
             "released)"),
            ("pollution_by_deprivation", cross,
             "High tier and SABA [saba_priority:sign] by pollution quintile × IMD quintile"),
            ("saba_overuse_monthly", spc,
             "Monthly % with SABA [saba_priority:sign] in the previous [lookback_months], per PCN "
             "(SPC input)"),
            ("isac_pathway", pathway,
             "ISAC pathway timers: uncontrolled for [optimisation_months] or more without "
             "referral, referrals in the last [lookback_months] and waits over "
             "[secondary_care_weeks] (secondary care) / [sac_weeks] (severe "
             "asthma centre), for the region and by IMD quintile and ethnicity"),
        ]  # fmt: skip
        agg = [(name, table, cfg.words(text)) for name, table, text in agg]
        by_name = {}
        for name, table, text in agg:
            out = Output(name, "aggregate", table, text, disclosure=policy_text)
            out.show_in_report = False
            by_name[name] = out
            result.outputs.append(out)

        # -- care-team outputs --------------------------------------------------------------
        patient = [
            ("worklist_by_practice", outputs.worklist(frame, "practice_id"),
             "High and moderate tier patients per practice, ordered by tier and reasons"),
            ("worklist_by_pcn", outputs.worklist(frame, "pcn_name"),
             "The same worklist per PCN (for the PCN clinical pharmacist)"),
            ("isac_referral_worklist", outputs.isac_worklist(frame),
             "Uncontrolled asthma: hard referral triggers, possible severe asthma, flagged "
             "over [optimisation_months] without referral, waits"),
        ]  # fmt: skip
        for name, table, text in patient:
            result.outputs.append(Output(name, "patient", table, cfg.words(text)))

        result.headline = self._headline(views if registered else {}, frame, cfg)
        result.sections = self._sections(
            views if registered else {}, by_name, frame, codes, spc, cross
        )
        unmatched = unmatched_codes(backend, codes)
        if unmatched:
            result.sections[0].notes.insert(
                1 + len(codes.missing),
                "Code lists that match no record in this store, at any date (what they feed "
                "reads 'none' for everyone; check the lists fit how the practices and "
                "hospitals code): " + ", ".join(unmatched) + ".",
            )
        if registered:
            result.sections.insert(-1, self._pathway_section(by_name["isac_pathway"], codes))
        return result

    def _shared_tables(
        self,
        frame,
        monthly,
        index_date,
        shared: disclosure.SharedCounts,
        timed=("secondary", "sac"),
        referred=("secondary", "sac"),
    ):
        """The tables that give the same counts (the register and the people with a flag, by
        group), released with one decision per count: built in
        :meth:`pophealth.disclosure.SharedCounts.settle`, which builds them again until no
        table withholds a count that another releases (so no table is made consistent with
        the others afterwards: :func:`.outputs.one_register_total` is for tables built
        without a SharedCounts)."""
        cfg = self.config
        views = outputs.indicator_views(frame, sii_repetitions=self.sii_repetitions, shared=shared)
        attacks = outputs.attacks_rate(frame, shared=shared)
        cross = pd.concat(
            [
                outputs.pollution_by_deprivation(frame, col, pol, shared=shared)
                for col in ("is_tier_high", "flag_saba_priority")
                for pol in ("no2_quintile", "pm_quintile")
            ],
            ignore_index=True,
        )
        spc = outputs.monthly_saba_overuse(
            monthly, frame, cfg, shared=shared, index_date=index_date
        )
        pathway = outputs.pathway_summary(
            frame, index_date, cfg, shared=shared, timed=timed, referred=referred
        )
        outputs.record_tables(shared, views, attacks, spc, cross, pathway, index_date)
        # (its cells add up to the indicators' counts: released with them as totals)
        detail = outputs.detail_table(frame, self.detail_flags, shared=shared)
        return views, attacks, cross, spc, pathway, detail

    # -- report -------------------------------------------------------------------------------
    def _headline(self, views, frame, cfg: AsthmaConfig = DEFAULT) -> dict[str, str]:
        if not views:
            return {"On the asthma register": "0"}

        def total(name: str):
            b = views[name].breakdowns
            row = b[(b["breakdown"] == "imd_quintile") & (b["group"] == "Total")].iloc[0]
            return row

        reg = total("tier_high")
        register = reg["denominator"]

        def fmt(name: str) -> str:
            row = total(name)
            if pd.isna(row["value"]):
                return "[c]"
            return (
                f"{row['value']:.1f}% ({row['lower95_0cl']:.1f}–{row['upper95_0cl']:.1f}) "
                f"of {row['denominator']:,.0f}"
            )

        return {
            "On the asthma register": "[c]" if pd.isna(register) else f"{register:,.0f}",
            "High tier (LADS-style), % (95% CI)": fmt("tier_high"),
            f"SABA {cfg.saba_priority.sign()} a year (IIF), % (95% CI)": fmt("saba_6plus"),
            "Meet a severe-asthma referral criterion, % (95% CI)": fmt("refer"),
        }

    def _sections(self, views, by_name, frame, codes, spc, cross) -> list[Section]:
        from pophealth import charts

        cfg = self.config
        sections = []
        intro = Section(
            "What this shows",
            text=(
                "Everyone on the asthma register at the index date, with risk markers from "
                "prescribing and hospital records linked to the deprivation and air pollution "
                "of their home area. " + SCHEME_NOTE + " Patient worklists go to the care "
                "team only; every figure below has passed disclosure control."
            ),
            notes=[
                f"Config {cfg.version}; look-back (index date − {cfg.lookback_months} months, "
                "index date].",
                *(f"Optional code list not available, not computed: {m}" for m in codes.missing),
                "Cumulative prednisolone counts the issues whose dose is known; an issue with "
                "no quantity or no tablet strength is counted apart ('at least N mg (k issues "
                "with unknown dose)') and the high-dose flag is met by the known total only.",
                "Patients with no known home area stay in every count as 'Unknown'.",
            ],
        )
        sections.append(intro)
        if not views:
            intro.notes.append(
                "Nobody is on the asthma register at this index date. The register needs a "
                "practice registration covering the index date, an asthma code, and an asthma "
                "medicine in the look-back coded in the curated lists' systems "
                f"({', '.join(sorted({*(codes.saba.systems if codes.saba else ())}))}): check "
                "the index date, the registrations table and the medicines' coding system."
            )
            return sections

        tiers = Section("Risk tier mix", text="Share of the register in each tier, by PCN.")
        tiers.figures.append(Figure("Tier mix by PCN", _tier_chart(views), _SUPPRESSED))
        sections.append(tiers)

        equity = Section(
            "Equity: deprivation and pollution",
            text=(
                "Indicators by IMD decile with the slope index of inequality (SII), and the "
                "pollution × deprivation cross-tab (tile view of the fictional region; "
                "maps need area boundaries)."
            ),
        )
        sii = by_name["sii"].frame
        saba = f"SABA {cfg.saba_priority.sign()} a year"
        for name, title in (("tier_high", "High tier"), ("saba_6plus", saba)):
            for breakdown, label in _QUINTILE_BARS:
                fig = _breakdown_chart(views[name], breakdown, label)
                caption = _sii_caption(sii, name) if breakdown == "imd_quintile" else _BARS
                equity.figures.append(Figure(f"{title} by {label}", fig, caption))
            if views[name].sii is not None and not views[name].sii.empty:
                fig = charts.equity_chart(views[name], title=title, y_title="% of register")
                equity.figures.append(
                    Figure(f"{title} by IMD decile", fig, _sii_caption(sii, name))
                )
        equity.figures.append(
            Figure(
                "High tier by NO2 quintile × IMD quintile",
                _cross_chart(cross, "is_tier_high", "no2"),
                "Each tile: % of the register in the high tier; [c] tiles are withheld.",
            )
        )
        equity.tables.append(by_name["key_indicators"])
        equity.tables.append(by_name["sii"])
        equity.notes.extend(_view_notes(views))
        sections.append(equity)

        spc_section = Section(
            "SABA over-use month by month (Making Data Count)",
            text=(
                f"% of the register with {cfg.saba_priority.phrase()} SABA inhalers in the "
                f"{cfg.lookback_months} months to each month end "
                "(p-chart, Making Data Count rules). The whole region and the first six PCNs "
                "are drawn; every PCN is in saba_overuse_monthly.csv."
            ),
        )
        spc_figures, spc_notes = _spc_figures(spc, cfg.saba_priority.sign())
        for fig_title, fig in spc_figures:
            spc_section.figures.append(
                Figure(
                    fig_title,
                    fig,
                    f"% of the register with {cfg.saba_priority.phrase()} SABA inhalers in the "
                    f"{cfg.lookback_months} months to each month end; Making Data Count p-chart "
                    "(falling is improvement).",
                )
            )
        spc_section.notes.extend(spc_notes)
        sections.append(spc_section)

        rules_section = Section(
            "The rules, in plain words",
            text=(
                "Each threshold, what it means and where it comes from. Tier: high if any "
                "high-level reason, else moderate if any moderate reason, else low; where "
                "someone lives and smoking are listed and order patients within a tier but "
                "never change it."
            ),
            notes=[
                f"{r['threshold']}: {r['rule']} — {r['meaning']} [{r['status']}; {r['source']}]"
                for r in cfg.table()
            ]
            + ["Reasons as the worklists word them (N stands for the patient's own number):"]
            + [
                f"reason '{r.code}' ({r.level}): {rules.reason_template(r, cfg)}"
                for r in rules.REASONS
            ],
        )
        sections.append(rules_section)
        return sections

    def _pathway_section(self, pathway: Output, codes: AsthmaCodes) -> Section:
        cfg = self.config
        p = pathway.frame
        section = Section(
            "Severe asthma pathway (ISAC timers)",
            text=(
                "For patients with uncontrolled asthma: who has stayed uncontrolled for "
                f"{cfg.optimisation_months} months without a referral to a respiratory "
                f"specialist, who was referred in the last {cfg.lookback_months} months, and how "
                "long they waited "
                f"for the first clinic visit ({cfg.secondary_care_weeks} weeks for secondary "
                f"care, {cfg.sac_weeks} weeks for a severe asthma centre). A referral is the "
                "latest one on or before the index date; the visit is the first one on or after "
                "it. Patients are named in isac_referral_worklist (care team only)."
            ),
            notes=[cfg.optimisation_source, cfg.secondary_care_source, cfg.sac_source],
        )
        shown = p[p["breakdown"].eq("imd_quintile")].copy() if len(p) else p
        if len(shown):
            cols = ["measure", "group", "numerator", "denominator", "value", "lower95_0cl",
                    "upper95_0cl"]  # fmt: skip
            table = Output(
                "isac_pathway_by_imd", "aggregate", shown[cols].reset_index(drop=True),
                "ISAC pathway measures by IMD quintile (1 = most deprived), % (95% CI)",
                disclosure=pathway.disclosure,
            )  # fmt: skip
            table.show_in_report = True
            section.tables.append(table)
        recorded = codes.seen_recorded()
        if codes.referral_secondary is None:
            section.notes.append(
                "No referral code list: every uncontrolled patient flagged "
                f"{cfg.optimisation_months} months ago counts as not referred, the share "
                "referred is not measured (left out of the pathway table, not shown as 0%), "
                "and no secondary-care wait is timed."
            )
        elif "secondary" not in recorded:
            section.notes.append(
                "No secondary-care 'seen' code list: referrals are counted but their waits "
                "cannot be timed (shown as unknown, never as a breach)."
            )
        if "sac" not in recorded:
            section.notes.append(
                "No severe-asthma-centre referral/visit code lists (pophealth found no public "
                "source confirming such SNOMED CT concepts): the 8-week timer is not computed; "
                "supply lists through AsthmaCodes(referral_sac=..., seen_sac=...)."
            )
        return section


KEY_INDICATORS = ("tier_high", "saba_6plus", "amr_low", "hospital_attack", "refer")
KEY_BREAKDOWNS = ("imd_quintile", "core20", "no2_quintile")


def _key_indicators(indicators: pd.DataFrame) -> pd.DataFrame:
    """A compact slice of the released indicators table for the report."""
    rows = indicators[
        indicators["indicator"].isin(KEY_INDICATORS) & indicators["breakdown"].isin(KEY_BREAKDOWNS)
    ]
    cols = ["indicator", "breakdown", "group", "numerator", "denominator", "value",
            "lower95_0cl", "upper95_0cl", "flag"]  # fmt: skip
    return rows[cols].reset_index(drop=True)


_SUPPRESSED = "Withheld (small-number) values are left out."


_QUINTILE_BARS = (
    ("imd_quintile", "IMD quintile (1 = most deprived)"),
    ("no2_quintile", "NO2 quintile (5 = most polluted)"),
)
_BARS = "Bars: % of the register with 95% Wilson intervals; withheld groups are left out."


def _sii_caption(sii: pd.DataFrame, indicator: str) -> str:
    rows = sii[sii["indicator"] == indicator] if len(sii) else sii
    if rows.empty or "sii" not in rows.columns or pd.isna(rows.iloc[0]["sii"]):
        return _BARS + " SII not shown: not every IMD group has released counts."
    row = rows.iloc[0]
    lo = row.get("sii_lower95_0cl", np.nan)
    hi = row.get("sii_upper95_0cl", np.nan)
    return (
        f"{_BARS} Slope index of inequality across {row.get('quantiles', 'IMD deciles')}: "
        f"{row['sii']:.1f} percentage points (95% CI {lo:.1f} to {hi:.1f}); a negative SII "
        "means higher values in more deprived areas."
    )


def _breakdown_chart(view, breakdown: str, label: str) -> go.Figure:
    b = view.breakdowns
    b = b[(b["breakdown"] == breakdown) & b["group"].isin([1, 2, 3, 4, 5])].sort_values("group")
    fig = go.Figure(
        go.Bar(
            x=[f"Q{int(g)}" for g in b["group"]],
            y=b["value"],
            error_y={
                "type": "data",
                "symmetric": False,
                "array": (b["upper95_0cl"] - b["value"]).to_numpy(),
                "arrayminus": (b["value"] - b["lower95_0cl"]).to_numpy(),
            },
            marker_color="#005eb8",
        )
    )
    fig.update_layout(
        height=320, xaxis_title=label, yaxis_title="% of register", template="simple_white"
    )
    return fig


def _tier_chart(views) -> go.Figure:
    """Stacked bars of the high and moderate tiers by PCN. The tiers differ in pattern as well
    as colour (moderate is hatched), and each bar has a dark outline: the NHS warm yellow of
    the moderate tier is 1.7:1 against white (WCAG 1.4.1, 1.4.11)."""
    fig = go.Figure()
    for name, label, colour, pattern in (
        ("tier_high", "high", "#d5281b", ""),
        ("tier_moderate", "moderate", "#ffb81c", "/"),
    ):
        b = views[name].breakdowns
        b = b[(b["breakdown"] == "pcn")]
        # the register as a whole is its own bar, named so and put first, not a PCN "Total"
        b = pd.concat([b[b["group"] == "Total"], b[b["group"] != "Total"]])
        groups = b["group"].astype(str).replace({"Total": "Whole region"})
        fig.add_trace(
            go.Bar(
                x=groups, y=b["value"], name=label,
                marker={"color": colour, "line": {"color": "#212b32", "width": 1},
                        "pattern": {"shape": pattern, "fgcolor": "#212b32", "solidity": 0.15}},
            )
        )  # fmt: skip
    fig.update_layout(
        barmode="stack", xaxis_title="PCN", yaxis_title="% of register", height=380,
        template="simple_white",
    )  # fmt: skip
    return fig


#: ColorBrewer OrRd, its five lightest colours
_ORRD_LIGHT = ("#fff7ec", "#fee8c8", "#fdd49e", "#fdbb84", "#fc8d59")


def _cross_chart(cross: pd.DataFrame, flag: str, pollutant: str) -> go.Figure:
    c = cross[(cross["flag"] == flag) & (cross["pollutant"] == pollutant)]
    c = c[(c["pollution_quintile"] != "Total") & (c["imd_quintile"] != "Total")]
    pivot = c.pivot(index="pollution_quintile", columns="imd_quintile", values="value")
    text = pivot.map(lambda v: "[c]" if pd.isna(v) else f"{v:.1f}%")
    fig = go.Figure(
        go.Heatmap(
            z=pivot.to_numpy(dtype=float),
            x=[f"IMD Q{q}" for q in pivot.columns],
            y=[f"{pollutant.upper()} Q{q}" for q in pivot.index],
            text=text.to_numpy(),
            texttemplate="%{text}",
            # the light half of ColorBrewer OrRd, so the near-black tile text is at least
            # 6:1 on every tile (on the full scale plotly's automatic text colour was 3.2:1
            # on the middle reds; WCAG 1.4.3)
            colorscale=[[i / 4, c] for i, c in enumerate(_ORRD_LIGHT)],
            textfont={"color": "#212b32"},
            colorbar={"title": "%"},
        )
    )
    fig.update_layout(height=380, xaxis_title="IMD quintile (1 = most deprived)",
                      yaxis_title="pollution quintile (5 = most polluted)",
                      template="simple_white")  # fmt: skip
    return fig


def _view_notes(views: dict) -> list[str]:
    """What the indicators' equity views say beyond the disclosure policy (an SII not
    shown, breakdowns withheld whole), each note once with the indicators it concerns."""
    said: dict[str, list[str]] = {}
    for name, view in views.items():
        for note in view.notes:
            if note != view.policy.describe() and not note.startswith("lower values are"):
                said.setdefault(note, []).append(name)
    return [f"{note} ({', '.join(names)})." for note, names in said.items()]


def _spc_figures(spc: pd.DataFrame, sign: str = "≥ 6", limit: int = 6):
    """The SPC charts (title, figure) of the whole region and the first ``limit`` PCNs, and
    notes naming any of them not drawn. A month whose counts are withheld is marked on its
    chart ([c], the line broken there)."""
    from pophealth import charts
    from pophealth.spc import p_chart

    figs, notes = [], []
    if spc.empty:
        return figs, notes
    series = [("Whole region", spc[spc["pcn"] == "Total"])]
    for pcn, g in list(spc[spc["pcn"] != "Total"].groupby("pcn"))[:limit]:
        series.append((str(pcn), g))
    for label, g in series:
        # each point is the 12 months to the month's end, and the axis says so
        ends = pd.to_datetime(g["month"] + "-01") + pd.offsets.MonthEnd(0)
        released = g["numerator"].notna() & g["denominator"].notna() & (g["denominator"] > 0)
        if released.sum() < 2:
            notes.append(f"{label}: fewer than 2 released months; no SPC chart.")
            continue
        res = p_chart(
            g.loc[released, "numerator"].to_numpy(), g.loc[released, "denominator"].to_numpy(),
            ends[released], improvement="down", multiplier=100,
        )  # fmt: skip
        chart = charts.spc_chart(
            res,
            title=label,
            y_title="% of register",
            x_title="Month end",
            withheld=ends[~released].tolist(),
        )
        figs.append((f"SABA {sign}: {label}", chart))
    return figs, notes


PROGRAMME = AsthmaProgramme()

__all__ = ["PROGRAMME", "AsthmaProgramme", "evaluate"]
