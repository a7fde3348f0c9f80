"""CVD prevention: UCLPartners-style pharmacist-led risk-factor management.

Finds and stratifies people with hypertension, high cholesterol and atrial fibrillation
and gives PCN pharmacists one prioritised list (PROGRAMMES.md section 3):

* blood pressure — CVDPREVENT risk groups (:mod:`pophealth.scores.bp`) on the
  hypertension register, NICE-strict switch in :class:`~.config.CvdConfig`;
* lipids — CVD without a statin, CVD above the non-HDL/LDL target on a statin, QRISK3
  >= 10% without lipid-lowering therapy, total cholesterol > 7.5 (FH assessment) / > 9
  (refer);
* atrial fibrillation — CHA2DS2-VASc and ORBIT, no anticoagulant in 12 months,
  aspirin only;
* indicators with equity views (IMD quintile, Core20, ethnicity, sex, age band, PCN;
  gap and SII) and a practice table, all disclosure-controlled.

Pipeline: :func:`.extract.cvd_records` (engine) → :func:`.rules.apply_all` (pure) →
:func:`.worklist.worklist` and :mod:`.indicators`. Public entry point for other code:
:func:`analyse`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from pophealth import disclosure
from pophealth.equity import sii_not_calculated, why_no_sii
from pophealth.programmes import Figure, Output, ProgrammeResult, Section
from pophealth.programmes.cvd.codelists import CURATED_NAMES, CvdCodelists, curated_codelists
from pophealth.programmes.cvd.config import DEFAULT_CONFIG, CvdConfig
from pophealth.programmes.cvd.extract import cvd_records, roles_read
from pophealth.programmes.cvd.indicators import (
    INDICATORS,
    counts_by_group,
    released_indicators,
)
from pophealth.programmes.cvd.rules import apply_all
from pophealth.programmes.cvd.trend import bp_control_by_month, released_monthly
from pophealth.programmes.cvd.worklist import worklist
from pophealth.query.unmatched import unmatched_lists
from pophealth.scores.bp import HTN_RISK_GROUPS
from pophealth.scores.qrisk3 import QRISK3_DISCLAIMER

__all__ = ["PROGRAMME", "CvdAnalysis", "CvdProgramme", "analyse"]

GROUP_ORDER = ["1d", "1c", "1a", "1b", "1e", "0.1", "0.2"]
GROUP_COLOURS = {
    "1d": "#8A1538",
    "1c": "#DA291C",
    "1a": "#ED8B00",
    "1b": "#FFB81C",
    "1e": "#768692",
    "0.1": "#009639",
    "0.2": "#78BE20",
}


@dataclass
class CvdAnalysis:
    """Everything one run computes (patient-level frames stay in memory for the caller)."""

    index_date: dt.date
    config: CvdConfig
    patients: pd.DataFrame  # one row per adult, every rule applied
    worklist: pd.DataFrame  # patient-level, care team only
    counts: pd.DataFrame  # NOT disclosure-controlled; internal
    views: dict[str, Any] = field(default_factory=dict)  # indicator -> EquityView
    practices: pd.DataFrame | None = None  # disclosure-controlled
    monthly: pd.DataFrame | None = None  # BP control per PCN and month; disclosure-controlled
    missing_codelists: list[str] = field(default_factory=list)
    #: roles whose list matches no row of its table in the store (role (list name))
    unmatched_codelists: list[str] = field(default_factory=list)


def analyse(
    backend,
    index_date: dt.date,
    *,
    codelists: CvdCodelists | None = None,
    config: CvdConfig = DEFAULT_CONFIG,
    policy: disclosure.DisclosurePolicy = disclosure.DEFAULT_POLICY,
    monthly_months: int = 24,
) -> CvdAnalysis:
    """Run the CVD programme on an Ibis backend holding the canonical tables.

    ``monthly_months``: months of BP control per PCN for the SPC charts (0 = none)."""
    codelists = codelists or curated_codelists()
    records = cvd_records(backend, index_date, codelists, config)
    patients = apply_all(records, index_date, config=config)
    counts = counts_by_group(patients)
    # one decision per count across the equity tables and the practice table
    views, practices = released_indicators(patients, counts, policy=policy)
    return CvdAnalysis(
        index_date=index_date,
        config=config,
        patients=patients,
        worklist=worklist(patients, config=config),
        counts=counts,
        views=views,
        practices=practices,
        monthly=(
            released_monthly(
                bp_control_by_month(
                    backend, index_date, codelists, months=monthly_months, config=config
                ),
                policy,
            )
            if monthly_months
            else None
        ),
        missing_codelists=codelists.missing(),
        unmatched_codelists=_unmatched(backend, codelists, config),
    )


def _unmatched(backend: Any, codelists: CvdCodelists, config: CvdConfig) -> list[str]:
    """The roles whose list finds no record in the store at any date, as "role (list)"."""
    uses = {
        role: (table, None, getattr(codelists, role))
        for role, table in roles_read(config).items()
        if getattr(codelists, role) is not None
    }
    return [f"{role} ({uses[role][2].name})" for role in unmatched_lists(backend, uses)]


# -- report ---------------------------------------------------------------------------------


def _released_group_counts(
    patients: pd.DataFrame, policy: disclosure.DisclosurePolicy
) -> pd.DataFrame:
    on_register = patients[patients["hypertension"] == 1]
    counts = (
        on_register["htn_group"]
        .value_counts()
        .reindex(GROUP_ORDER, fill_value=0)
        .rename_axis("group")
        .reset_index(name="patients")
    )
    counts["description"] = counts["group"].map(dict(HTN_RISK_GROUPS))
    # each group as a share of the register, with its denominator and Wilson limits
    counts["on_register"] = len(on_register)
    kwargs = dict(policy=policy, by=["group"], margins=["group"])
    first = disclosure.release_proportions(counts, "patients", "on_register", **kwargs)
    # the groups add up to the register, which every row gives: audited again with it as
    # their total (two groups of 7 withheld beside it were 14 - 7 = 7 each); the register
    # itself, the same in every row, is no sum of the rows' denominators
    total = pd.DataFrame({"group": ["Total"], "patients": [len(on_register)]})
    audited = disclosure.apply(
        pd.concat([counts[["group", "patients"]], total], ignore_index=True),
        ["patients"],
        policy=policy,
        by=["group"],
        margins=["group"],
        total_label="Total",
        withhold={"patients": np.append(first["patients"].isna().to_numpy(), False)},
    )
    withheld = audited["patients"].isna().to_numpy()[:-1]
    released = disclosure.release_proportions(
        counts, "patients", "on_register", withhold={"patients": withheld}, **kwargs
    )
    # withheld by this table's own audit, with the register as the groups' total
    notes = released["disclosure_note"].astype(object)
    released["disclosure_note"] = notes.where(
        notes.isna(), notes.astype(str).str.replace(disclosure.ELSEWHERE, disclosure.SECONDARY)
    )
    return released


def _bp_chart(released: pd.DataFrame) -> go.Figure:
    fig = go.Figure(
        go.Bar(
            x=released["group"],
            y=released["patients"],
            # an outline: the amber, yellow and light green are under 3:1 against white
            marker={
                "color": [GROUP_COLOURS[g] for g in released["group"]],
                "line": {"color": "#212B32", "width": 1},
            },
            text=released["description"],
            # the descriptions are in the hover and the table, not squeezed into the bars
            textposition="none",
            hovertemplate="%{x}: %{y} patients<br>%{text}<extra></extra>",
        )
    )
    fig.update_layout(
        template="simple_white",
        xaxis_title="CVDPREVENT risk group",
        yaxis_title="Patients (rounded)",
    )
    return fig


def _breakdown_table(view, ind) -> pd.DataFrame:
    b = view.breakdowns
    cols = [
        "breakdown",
        "group",
        "numerator",
        "denominator",
        "value",
        "lower95_0cl",
        "upper95_0cl",
        "lower99_8cl",  # PHE's default output: 95% and 99.8% limits (PROGRAMMES.md 12)
        "upper99_8cl",
        "difference",
        "flag",
        "disclosure_note",
    ]
    out = b[[c for c in cols if c in b.columns]].copy()
    out.insert(0, "indicator", ind.name)
    # the IMD deciles stay: the report's decile chart draws them and the SII is fitted to
    # them, so a reader finds every drawn number here
    return out.reset_index(drop=True)


def _practice_funnel(practices: pd.DataFrame, name: str):
    from pophealth.charts import funnel_chart
    from pophealth.stats import funnel_limits, funnel_significance

    rows = practices[(practices["indicator"] == name) & (practices["denominator"] > 0)]
    pts = rows[rows["numerator"].notna()].copy()
    if len(pts) < 3:
        return None
    limits = funnel_limits("numerator", "denominator", data=pts, statistic="proportion")
    pts["significance"] = funnel_significance(
        "numerator", "denominator", data=pts, statistic="proportion"
    ).to_numpy()
    # a practice whose numerator is withheld is not drawn, and is listed as withheld in the
    # chart's data rather than left out of it
    withheld = rows[rows["numerator"].isna()].assign(value=np.nan, significance=None)
    pts = pd.concat([pts, withheld], ignore_index=True) if len(withheld) else pts
    return funnel_chart(
        pts,
        limits,
        x="denominator",
        y="value",
        label="practice_id",
        title="",
        x_title="Patients in the denominator (rounded)",
        y_title="%",
    )


def _spc_section(monthly: pd.DataFrame) -> Section:
    from pophealth.charts import spc_chart, variation_words
    from pophealth.spc import p_chart

    figs, notes = [], []
    for pcn, g in monthly.groupby("pcn_name", sort=True):
        released = g["numerator"].notna() & g["denominator"].notna() & (g["denominator"] > 0)
        # a month whose counts are withheld is marked on the chart, the line broken there
        withheld = pd.to_datetime(g.loc[~released, "month_end"]).tolist()
        g = g[released]
        if len(g) < 12:
            notes.append(f"{pcn}: fewer than 12 released months; no SPC chart.")
            continue
        res = p_chart(
            g["numerator"].to_numpy(),
            g["denominator"].to_numpy(),
            pd.to_datetime(g["month_end"]).to_numpy(),
            improvement="up",
            multiplier=100,
        )
        figs.append(
            Figure(
                f"{pcn}: hypertension treated to target, by month",
                spc_chart(res, y_title="% at target", x_title="Month end", withheld=withheld),
                f"Making Data Count p-chart; variation at the last month: "
                f"{variation_words(res.variation).lower()}"
                + (f"; {len(withheld)} month(s) withheld, marked [c]." if withheld else "."),
            )
        )
    return Section(
        "Blood pressure control over time (SPC per PCN)",
        "Share of people on the hypertension register treated to target at each month end "
        "(CVDPREVENT rule), from disclosure-controlled counts.",
        figures=figs,
        notes=notes,
    )


def _qrisk_data_quality(
    patients: pd.DataFrame, policy: disclosure.DisclosurePolicy
) -> pd.DataFrame:
    from pophealth.programmes.cvd.inputs import DQ_INPUTS, DQ_VALUES

    scored = patients[patients["qrisk_applies"] == 1]
    rows = []
    for name in DQ_INPUTS:
        counts = scored[f"{name}_dq"].value_counts()
        rows.append({"input": name, **{v: int(counts.get(v, 0)) for v in DQ_VALUES}})
    table = pd.DataFrame(rows, columns=["input", *DQ_VALUES])
    # each row adds up to the same published total (people QRISK3 applies to)
    long = table.melt(id_vars="input", var_name="source", value_name="patients")
    released = disclosure.apply(
        long, ["patients"], policy=policy, by=["input", "source"], margins=["source"]
    )
    return (
        released.pivot(index="input", columns="source", values="patients")
        .reindex(index=list(DQ_INPUTS), columns=list(DQ_VALUES))
        .reset_index()
    )


#: Lipid values in the extract (``<name>_outside_n`` / ``<name>_mg_dl_n``) → plain words
#: and the CvdConfig field of the plausible range.
LIPID_VALUES: tuple[tuple[str, str, str], ...] = (
    ("total_cholesterol", "total cholesterol", "cholesterol_range"),
    ("hdl", "HDL cholesterol", "hdl_range"),
    ("ldl", "LDL cholesterol", "ldl_range"),
    ("non_hdl_recorded", "non-HDL cholesterol (recorded)", "non_hdl_range"),
    ("chol_hdl_ratio_recorded", "cholesterol/HDL ratio (recorded)", "chol_hdl_ratio_range"),
)


def _lipid_data_quality(
    patients: pd.DataFrame, config: CvdConfig, policy: disclosure.DisclosurePolicy
) -> pd.DataFrame:
    """Per lipid value: its plausible range, the people with a result in the look-back set
    aside as outside it, and the people with a result converted from mg/dL (each released
    under ``policy``; a person can be in several rows, so the rows have no total)."""
    rows = []
    for name, words, setting in LIPID_VALUES:
        low, high = getattr(config, setting)
        unit = "" if name == "chol_hdl_ratio_recorded" else " mmol/L"
        rows.append(
            {
                "lipid": words,
                # (ASCII: a CSV without a byte-order mark opens in Excel as Windows text)
                "plausible_range": f"{low:g} to {high:g}{unit}",
                "patients_with_results_set_aside": int((patients[f"{name}_outside_n"] > 0).sum()),
                "patients_with_results_converted_from_mg_dl": int(
                    (patients[f"{name}_mg_dl_n"] > 0).sum()
                ),
            }
        )
    counts = [
        "patients_with_results_set_aside",
        "patients_with_results_converted_from_mg_dl",
    ]
    return disclosure.apply(pd.DataFrame(rows), counts, policy=policy, by=["lipid"])


def _headline(views: dict, worklist_frame: pd.DataFrame, policy) -> dict[str, str]:
    out: dict[str, str] = {}
    for ind in INDICATORS:
        view = views.get(ind.name)
        if view is None:
            continue
        b = view.breakdowns
        tot = b[(b["breakdown"] == "sex") & (b["group"] == "Total")]
        if tot.empty or pd.isna(tot["value"].iloc[0]):
            continue
        r = tot.iloc[0]
        out[f"{ind.title}, % (95% CI)"] = (
            f"{r['value']:.1f}% ({r['lower95_0cl']:.1f}–{r['upper95_0cl']:.1f}) "
            f"of {int(r['denominator']):,}"
        )
    # the three add up to the worklist's length: released as one table, so a withheld
    # colour cannot be recovered from the others and a total
    rag = worklist_frame["rag"].value_counts()
    colours = pd.DataFrame({"rag": ["red", "amber", "grey"]})
    colours["n"] = [int(rag.get(k, 0)) for k in colours["rag"]]
    released = disclosure.apply(colours, ["n"], policy=policy, by=["rag"], margins=["rag"])
    for k, v in zip(released["rag"], released["n"], strict=True):
        out[f"Worklist {k}"] = "[c]" if pd.isna(v) else f"{int(v):,}"
    return out


def build_result(
    analysis: CvdAnalysis,
    *,
    engine: str,
    policy: disclosure.DisclosurePolicy = disclosure.DEFAULT_POLICY,
) -> ProgrammeResult:
    """The programme's outputs and report sections from one analysis."""
    a = analysis
    disclosure_text = policy.describe()
    outputs: list[Output] = []
    sections: list[Section] = []

    # patient-level worklist (care team only)
    outputs.append(
        Output(
            "cvd_pharmacist_worklist",
            "patient",
            a.worklist,
            "Ranked pharmacist worklist across hypertension, lipids and AF, per PCN and "
            "practice, with reasons and next action. QRISK3 scores carry the ClinRisk "
            "disclaimer.",
        )
    )

    # one list per PCN as well, for the PCN pharmacist's clinic planning: every PCN of the
    # population has its file, with nobody to review too (header only), so no list from
    # an earlier run of the same --out is left beside this run's
    pcn = a.patients["pcn_id"].fillna("unknown").astype(str)
    pcn_names = a.patients["pcn_name"].groupby(pcn.to_numpy()).first()
    listed = pd.Series(pcn.to_numpy(), index=a.patients["patient_id"])
    listed = listed.reindex(a.worklist["patient_id"]).fillna("unknown").to_numpy()
    for pcn_id in sorted(set(pcn) | set(listed)):
        frame = a.worklist[listed == pcn_id]
        safe = "".join(ch if ch.isalnum() else "_" for ch in pcn_id)
        name = pcn_names.get(pcn_id)
        outputs.append(
            Output(
                f"cvd_pharmacist_worklist_pcn_{safe}",
                "patient",
                frame.sort_values("rank_in_pcn").reset_index(drop=True),
                f"Pharmacist worklist for PCN {pcn_id if pd.isna(name) else name} "
                "(ranked; care team only).",
            )
        )

    # BP groups
    groups = _released_group_counts(a.patients, policy)
    bp_out = Output(
        "cvd_bp_risk_groups",
        "aggregate",
        groups,
        "People on the hypertension register by CVDPREVENT risk group, and as a percentage "
        "of the register (latest valid BP in 12 months; lowest systolic and diastolic of "
        "the day)" + (" — NICE-strict targets." if a.config.nice_strict else "."),
        disclosure=disclosure_text,
    )
    outputs.append(bp_out)
    sections.append(
        Section(
            "Blood pressure: CVDPREVENT risk groups",
            "Red = 1c/1d (above 160/100; 180/120 or above, NICE severe, needs same-day "
            "review), amber = 1a/1b "
            "(above target), grey = 1e (no BP in 12 months), green = 0.1/0.2 (at target). "
            "The RAG colouring is derived by pophealth and needs clinical sign-off.",
            figures=[
                Figure(
                    "Hypertension register by risk group",
                    _bp_chart(groups),
                    "Patients on the hypertension register in each CVDPREVENT risk group "
                    "(rounded): 1c/1d above 160/100, 1a/1b above target, 1e no BP in 12 "
                    "months, 0.1/0.2 at target. A withheld group has no bar.",
                )
            ],
            tables=[bp_out],
        )
    )

    # indicators and equity
    from pophealth.charts import equity_chart

    eq_tables, eq_figs, notes = [], [], []
    for ind in INDICATORS:
        view = a.views.get(ind.name)
        if view is None:
            notes.append(f"{ind.title}: no one in the denominator.")
            continue
        b = view.breakdowns
        nobody = bool((b.loc[b["group"] == "Total", "denominator"] == 0).all())
        if nobody:
            notes.append(f"{ind.title}: no one in the denominator.")
        out = Output(
            f"cvd_{ind.name}_equity",
            "aggregate",
            _breakdown_table(view, ind),
            f"{ind.title}. Denominator: {ind.denominator}. Numerator: {ind.numerator}. "
            f"Source: {ind.source}. Values are % with Wilson 95% CI; difference from the "
            "rest of the population with Newcombe 95% CI.",
            disclosure=disclosure_text,
        )
        outputs.append(out)
        eq_tables.append(out)
        # written whether or not there is a value (the gap: no row, the same columns; the
        # SII: a row saying why there is none): a file left out would leave an earlier
        # run's file of that name beside this run's
        sii = view.sii
        if sii.empty:
            sii = sii_not_calculated(why_no_sii(view.breakdowns), view.multiplier)
        for kind, frame, what in (
            ("gap", view.gap, "gap between the most and least deprived IMD quintiles"),
            ("sii", sii, "slope and relative index of inequality across IMD deciles"),
        ):
            outputs.append(
                Output(
                    f"cvd_{ind.name}_{kind}",
                    "aggregate",
                    frame.assign(indicator=ind.name),
                    f"{ind.title}: {what} (from released counts).",
                    disclosure=disclosure_text,
                    show_in_report=False,
                )
            )
        if nobody:
            continue
        try:
            eq_figs.append(
                Figure(
                    f"{ind.title} by IMD decile (1 = most deprived)",
                    equity_chart(view, title="", y_title="%"),
                    "Points: value with 95% CI; line: slope index of inequality.",
                )
            )
        except (KeyError, ValueError) as exc:  # too few released deciles to draw
            notes.append(f"{ind.title}: equity chart not drawn ({exc}).")
        notes.extend(f"{ind.title}: {n}" for n in view.notes[:-1])
    notes.append(disclosure_text)
    sections.append(
        Section(
            "Indicators and equity",
            "Each indicator by IMD quintile, Core20, ethnicity, sex, age band and PCN, with "
            "95% confidence intervals and a flag where a group differs significantly from "
            "the rest of the population.",
            figures=eq_figs,
            tables=eq_tables,
            notes=notes,
        )
    )

    # practices
    if a.practices is not None:
        prac = Output(
            "cvd_indicators_by_practice",
            "aggregate",
            a.practices,
            "Every indicator by practice and PCN (Wilson 95% CI from released counts).",
            disclosure=disclosure_text,
        )
        outputs.append(prac)
    if a.practices is not None and not a.practices.empty:
        figs = []
        funnel = _practice_funnel(a.practices, "htn_target_under80")
        if funnel is not None:
            figs.append(
                Figure(
                    "Hypertension treated to target (<80) by practice — funnel plot",
                    funnel,
                    "Practices outside the 99.8% limits differ from the average by more than "
                    "chance.",
                )
            )
        sections.append(Section("Practices", figures=figs, tables=[prac]))

    # monthly BP control per PCN (SPC)
    if a.monthly is not None:
        monthly_out = Output(
            "cvd_bp_control_monthly_by_pcn",
            "aggregate",
            a.monthly,
            "Hypertension treated to target (CVDPREVENT 0.1/0.2) per PCN at each month end, "
            "current caseload followed back; Wilson 95% CI from released counts.",
            disclosure=disclosure_text,
            show_in_report=False,
        )
        outputs.append(monthly_out)
        if not a.monthly.empty:
            sections.append(_spc_section(a.monthly))

    # worklist summary, QRISK3 disclaimer and data quality
    wl = a.worklist
    dq_notes = [
        "Townsend deprivation is not published for England's LSOAs: QRISK3 uses "
        + (
            "Townsend 0 (the national average) for everyone"
            if a.config.townsend.mode == "zero"
            else "a Townsend value mapped from the IMD quintile [UNCONFIRMED mapping]"
        )
        + ", which understates risk slightly in deprived areas.",
        "QRISK3 inputs not recorded are set to the QRISK3 average for the sex (so they "
        "neither raise nor lower the score); the worklist names them.",
    ]
    if a.missing_codelists:
        dq_notes.append(
            "Code lists not available (these variables count as not recorded): "
            + ", ".join(a.missing_codelists)
            + "."
        )
    if a.unmatched_codelists:
        dq_notes.append(
            "Code lists that match no record in this store, at any date (these variables "
            "count as not recorded for everyone; check the lists fit how the practices code): "
            + ", ".join(a.unmatched_codelists)
            + "."
        )
    dq = _qrisk_data_quality(a.patients, policy)
    dq_out = Output(
        "cvd_qrisk3_input_quality",
        "aggregate",
        dq,
        "Where each QRISK3 input came from, among people QRISK3 applies to: present "
        "(recorded), derived (from other records), imputed (QRISK3 average for the sex, "
        "or the documented default), missing.",
        disclosure=disclosure_text,
    )
    outputs.append(dq_out)
    lipid_out = Output(
        "cvd_lipid_result_quality",
        "aggregate",
        _lipid_data_quality(a.patients, a.config, policy),
        f"Lipid results (last {a.config.measurement_lookback_months} months) that the lists "
        "and QRISK3 do not read because they are outside a plausible range (a typed 52, or a "
        "cholesterol in mg/dL recorded without its unit), and results recorded in mg/dL and "
        "converted to mmol/L (÷ 38.67); people with at least one such result.",
        disclosure=disclosure_text,
    )
    outputs.append(lipid_out)
    dq_notes.append(
        "Lipid results outside a plausible range are set aside before the latest result is "
        "chosen (an earlier plausible one is used instead) and counted; results with the unit "
        "mg/dL are converted to mmol/L (÷ 38.67); a result with no unit, or another unit, is "
        "read as mmol/L. Ranges [UNCONFIRMED]: "
        + "; ".join(
            f"{words} {r}"
            for words, r in zip(
                lipid_out.frame["lipid"], lipid_out.frame["plausible_range"], strict=True
            )
        )
        + "."
    )
    sections.append(
        Section(
            "Pharmacist worklists",
            f"{'Listed patients are' if len(wl) else 'No patient is'} ranked per practice and "
            "PCN: red first (BP 180/120 or above, AF without anticoagulation, AF with sex not "
            "recorded where sex decides anticoagulation, CVD without a statin, cholesterol "
            "above 9, BP above 160/100), then amber, then grey (no recent BP). The lists are "
            "patient-level and go to the care team only.",
            tables=[dq_out, lipid_out],
            notes=[f"QRISK3: {QRISK3_DISCLAIMER}", *dq_notes],
        )
    )
    return ProgrammeResult(
        programme="cvd",
        title="CVD prevention: hypertension, lipids and AF",
        index_date=a.index_date,
        engine=engine,
        outputs=outputs,
        sections=sections,
        headline=_headline(a.views, wl, policy),
    )


class CvdProgramme:
    name = "cvd"
    title = "CVD prevention: hypertension, lipids and AF"

    def __init__(self, config: CvdConfig = DEFAULT_CONFIG) -> None:
        self.config = config

    def run(self, backend: Any, *, index_date: dt.date, engine: str) -> ProgrammeResult:
        analysis = analyse(backend, index_date, config=self.config)
        return build_result(analysis, engine=engine)


PROGRAMME = CvdProgramme()
#: The code-list names the programme reads (:func:`pophealth.programmes.codelist_names`).
CODELIST_NAMES = frozenset(n for names in CURATED_NAMES.values() for n in names)
