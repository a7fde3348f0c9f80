"""Population overview: who is registered, their age and sex, and how common the
main long-term conditions are in each deprivation quintile.

The registered population on the index date (alive, registered with a practice).
Condition registers follow the QOF idea: a diagnosis code on or before the index
date, with no "resolved" code recorded after the latest diagnosis where a resolved
list exists. They are recorded-diagnosis registers — the QOF extra criteria (e.g.
an asthma medicine in the last 12 months for AST001) are applied by the programmes
that need them, not here.

Reference prevalences for England (QOF 2023/24 registers, all ages; NHS England
"Quality and Outcomes Framework, 2023-24"): asthma ≈ 6.5%, hypertension ≈ 14%,
COPD ≈ 1.9%, AF ≈ 2.1%, diabetes (17+) ≈ 7.5%.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from pophealth import disclosure
from pophealth.codelists import codelist
from pophealth.programmes import Figure, Output, ProgrammeResult, Section
from pophealth.query import (
    Dataset,
    Measures,
    addresses,
    events,
    index_date,
    patients,
    registrations,
    run_dataset,
    run_measures,
)
from pophealth.query.unmatched import unmatched_lists

#: 5-year bands for the population pyramid (ONS convention, 90+ open).
PYRAMID_BANDS = tuple(range(0, 95, 5))


@dataclass(frozen=True)
class Register:
    """A condition register: diagnosis list, optional resolved list, the QOF reference."""

    name: str
    label: str
    diagnosis: tuple[str, ...]
    resolved: str | None
    england_pct: float
    #: QOF counts some registers over an age range only (diabetes: 17+).
    min_age: int = 0


#: QOF 2023/24 England register prevalence (% of all registered patients), for context.
REGISTERS: tuple[Register, ...] = (
    Register("asthma", "Asthma", ("asthma_diagnosis",), "asthma_resolved", 6.5),
    Register(
        "hypertension", "Hypertension", ("hypertension_diagnosis",), "hypertension_resolved", 14.0
    ),
    Register("copd", "COPD", ("copd_diagnosis",), None, 1.9),
    Register("af", "Atrial fibrillation", ("af_diagnosis",), "af_resolved", 2.1),
    Register(
        "diabetes",
        "Diabetes (type 1 or 2), 17+",
        ("diabetes_type1", "diabetes_type2"),
        None,
        7.5,
        min_age=17,
    ),
)


def on_register(register: Register):
    """Diagnosed (any of the register's lists) on or before the index date and, where the
    register has a resolved list, not resolved since the latest diagnosis."""
    flags = [
        events.matching(codelist(name)).on_or_before(index_date).exists_for_patient()
        for name in register.diagnosis
    ]
    on = flags[0]
    for flag in flags[1:]:
        on = on | flag
    if register.resolved is None:
        return on
    if len(register.diagnosis) != 1:
        raise ValueError(f"register {register.name!r}: a resolved list needs one diagnosis list")
    diagnosed = events.matching(codelist(register.diagnosis[0])).on_or_before(index_date)
    last_diagnosis = diagnosed.maximum_for_patient(events.date)
    resolved_since = (
        events.matching(codelist(register.resolved))
        .on_or_before(index_date)
        .where(events.date > last_diagnosis)
        .exists_for_patient()
    )
    return on & ~resolved_since


def registered_population():
    return registrations.registered_on(index_date) & patients.is_alive_on(index_date)


def register_flags() -> dict[str, object]:
    return {r.name: on_register(r) for r in REGISTERS}


def register_denominator(register: Register):
    """Registered population, limited to the register's QOF age range."""
    population = registered_population()
    if register.min_age:
        population = population & (patients.age_on(index_date) >= register.min_age)
    return population


def pyramid_dataset() -> Dataset:
    ds = Dataset()
    ds.define_population(registered_population())
    ds.age_band = patients.age_band_on(index_date, bands=PYRAMID_BANDS)
    ds.sex = patients.sex
    ds.lsoa_code = addresses.address_on(index_date).lsoa_code
    return ds


def prevalence_measures(date: dt.date) -> Measures:
    """One measure per register, by IMD quintile (unknown area kept as its own group)."""
    m = Measures(intervals=[(date, date)])
    m.define_defaults(
        group_by={"imd_quintile": addresses.area_on(index_date).group("imd_quintile")},
    )
    flags = register_flags()
    for r in REGISTERS:
        denominator = register_denominator(r)
        m.define_measure(r.name, numerator=flags[r.name] & denominator, denominator=denominator)
    return m


def _band_labels() -> list[str]:
    return [f"{lo}-{lo + 4}" for lo in PYRAMID_BANDS[:-1]] + [f"{PYRAMID_BANDS[-1]}+"]


def _pyramid(people: pd.DataFrame) -> pd.DataFrame:
    """Patients by age band and sex: every band of every sex recorded (an empty band is a
    row of 0, not a missing row), bands youngest first, male and female before the rest."""
    sexes = list(dict.fromkeys(["male", "female", *sorted(people["sex"].dropna().unique())]))
    grid = pd.MultiIndex.from_product([_band_labels(), sexes], names=["age_band", "sex"])
    counts = people.groupby(["age_band", "sex"]).size()
    unplaced = len(people) - int(counts.reindex(grid).fillna(0).sum())
    if unplaced:  # an age or sex the grid has no place for would vanish from the table
        raise ValueError(f"population pyramid: {unplaced} patients without an age band or sex")
    counts = counts.reindex(grid, fill_value=0).rename("patients").reset_index()
    # each sex's bands add up to its total, part of the published registered total
    return disclosure.apply(counts, ["patients"], by=["age_band", "sex"], margins=["age_band"])


#: Okabe & Ito (2008) colour-blind-safe palette, "Color Universal Design", in an order whose
#: first five (one per register) are at least 3:1 against the white plot (WCAG 1.4.11):
#: orange #E69F00 (2.3:1) and sky blue #56B4E9 (2.3:1) come last.
OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#000000", "#E69F00", "#56B4E9")
SUPPRESSED = "[c]"


def _pyramid_figure(released: pd.DataFrame) -> go.Figure:
    """Men to the left, women to the right, in band order. A withheld count is marked
    "[c]" beside the axis (a missing bar alone would read as 0); both sides' ticks read as
    positive numbers of patients."""
    fig = go.Figure()
    bands = _band_labels()
    widest = float(released["patients"].max(skipna=True) or 0) or 10.0
    for sex, sign, colour in (("male", -1, "#005eb8"), ("female", 1, "#ae2573")):
        part = released[released["sex"] == sex]
        fig.add_bar(
            y=part["age_band"],
            x=sign * part["patients"].astype(float),
            name=sex,
            orientation="h",
            marker_color=colour,
            customdata=part["patients"],
            hovertemplate="%{y}: %{customdata}<extra>" + sex + "</extra>",
        )
        hidden = part[part["patients"].isna()]
        if len(hidden):
            fig.add_scatter(
                y=hidden["age_band"],
                x=[sign * widest * 0.04] * len(hidden),
                mode="text",
                text=[SUPPRESSED] * len(hidden),
                textfont=dict(color=colour),
                name=f"{sex}: suppressed",
                hovertemplate="%{y}: suppressed<extra>" + sex + "</extra>",
                showlegend=False,
            )
    ticks = _symmetric_ticks(widest)
    fig.update_layout(
        barmode="relative",
        bargap=0.05,
        height=480,
        xaxis=dict(
            title="registered patients (men left, women right)",
            tickvals=[-t for t in ticks[:0:-1]] + ticks,
            ticktext=[f"{t:,.0f}" for t in ticks[:0:-1]] + [f"{t:,.0f}" for t in ticks],
        ),
        yaxis=dict(title="age band (years)", categoryorder="array", categoryarray=bands),
        margin=dict(l=60, r=20, t=20, b=50),
        template="simple_white",
    )
    return fig


def _symmetric_ticks(widest: float) -> list[float]:
    """0 and 3-5 round steps up to ``widest``, for ticks mirrored on both sides."""
    raw = widest / 4
    magnitude = 10 ** np.floor(np.log10(raw)) if raw > 0 else 1
    step = min((m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw), default=raw)
    return [float(v) for v in np.arange(0, widest + step / 2, step)]


QUINTILES = ("1", "2", "3", "4", "5")
UNKNOWN_AREA = "unknown"


def _prevalence_figure(released: pd.DataFrame) -> go.Figure:
    """One line per register across IMD quintiles 1-5, with the released 95% CIs. The
    "unknown" group (no known area) is a point of its own, not joined to the gradient.
    Withheld values are left out (a gap, never 0) and listed by :func:`_withheld_points`."""
    labels = {r.name: r.label for r in REGISTERS}
    symbols = ("circle", "square", "diamond", "triangle-up", "x", "star", "cross")
    fig = go.Figure()
    for i, (name, part) in enumerate(released.groupby("measure", sort=False)):
        colour = OKABE_ITO[i % len(OKABE_ITO)]
        part = part.assign(imd_quintile=part["imd_quintile"].astype(str))
        for groups, line in ((QUINTILES, True), ((UNKNOWN_AREA,), False)):
            rows = part.set_index("imd_quintile").reindex(list(groups))
            if line is False and rows["value"].isna().all():
                continue
            fig.add_scatter(
                x=list(groups),
                y=rows["value"],
                name=labels.get(name, name),
                legendgroup=name,
                showlegend=line,
                mode="markers+lines" if line else "markers",
                line=dict(color=colour),
                marker=dict(color=colour, symbol=symbols[i % len(symbols)], size=8),
                error_y=dict(
                    type="data",
                    symmetric=False,
                    array=rows["upper95_0cl"] - rows["value"],
                    arrayminus=rows["value"] - rows["lower95_0cl"],
                ),
                customdata=rows[["numerator", "denominator"]].to_numpy(),
                hovertemplate="IMD quintile %{x}: %{y:.1f}% (%{customdata[0]:,.0f} of "
                "%{customdata[1]:,.0f})<extra>" + labels.get(name, name) + "</extra>",
            )
    fig.update_layout(
        height=480,
        # the legend under the chart, so a narrow screen (320 px) keeps the plot's width
        legend=dict(orientation="h", x=0, xanchor="left", y=0, yanchor="bottom", yref="container"),
        xaxis=dict(
            title="IMD quintile of home area (1 = most deprived; unknown = no known area)",
            categoryorder="array",
            categoryarray=[*QUINTILES, UNKNOWN_AREA],
        ),
        yaxis=dict(
            title="register prevalence, % of registered patients (95% CI)", rangemode="tozero"
        ),
        margin=dict(l=60, r=20, t=20, b=150),
        template="simple_white",
    )
    return fig


def _withheld_points(released: pd.DataFrame) -> str:
    """A sentence naming the points not drawn because their counts were withheld."""
    labels = {r.name: r.label for r in REGISTERS}
    hidden = released[released["value"].isna()]
    if hidden.empty:
        return ""
    parts = [
        f"{labels.get(name, name)} (quintile {', '.join(part['imd_quintile'].astype(str))})"
        for name, part in hidden.groupby("measure", sort=False)
    ]
    return "Not drawn, counts suppressed: " + "; ".join(parts) + "."


def area_map(backend, people: pd.DataFrame) -> tuple[Figure, pd.DataFrame] | None:
    """A choropleth of registered patients per LSOA (disclosure-controlled) when the store
    has area boundaries (a real reference build), with the released counts it draws (an
    output of their own, so every number the map shows is in a CSV); ``None`` for the
    fictional region."""
    from pophealth.reference.linkage import area_boundaries
    from pophealth.reference.maps import choropleth

    store = getattr(backend, "store", None)
    known = people["lsoa_code"].dropna()
    if store is None or known.empty or not store.metadata.get("boundaries"):
        return None
    counts = known.value_counts().rename_axis("lsoa_code").rename("patients").reset_index()
    # the LSOAs add up to a published total (registered patients less the unknown-area
    # group), so a lone withheld LSOA would be that total minus the rest
    released = disclosure.apply(counts, ["patients"], by=["lsoa_code"], margins=["lsoa_code"])
    geojson = area_boundaries(store, codes=set(counts["lsoa_code"]))
    if not geojson or not geojson.get("features"):
        return None
    fig = choropleth(released, geojson, value="patients", colorbar_title="patients")
    figure = Figure(
        "Registered patients by home LSOA",
        fig,
        f"{len(geojson['features']):,} LSOAs with registered patients. Counts "
        "disclosure-controlled; blank areas have suppressed counts. Boundaries: ONS LSOA "
        "2011 (super-generalised), contains OS data © Crown copyright and database right.",
    )
    return figure, released


class PopulationProgramme:
    name = "population"
    title = "Population overview"

    def run(self, backend, *, index_date: dt.date, engine: str) -> ProgrammeResult:
        registers = prevalence_measures(index_date)
        # the registers' flags are computed in the dataset's passes; the measures only count
        people = run_dataset(
            backend, pyramid_dataset(), engine=engine, index_date=index_date, measures=registers
        )
        pyramid = _pyramid(people)
        mapped = area_map(backend, people)
        # exact counts here; released below, one decision per count across the tables
        by_quintile = run_measures(backend, registers, engine=engine, disclosure=False)
        by_quintile = by_quintile.drop(columns=["interval_start", "interval_end"])
        overall_counts = _overall_counts(backend, engine, index_date)
        prevalence, overall, totals = disclosure.SharedCounts().settle(
            lambda shared: (
                _released_by_quintile(by_quintile, overall_counts, shared),
                _released_overall(overall_counts, shared),
                _released_total(len(people), shared),
            )
        )
        reference = pd.DataFrame(
            {
                "measure": [r.name for r in REGISTERS],
                "england_qof_2023_24_pct": [r.england_pct for r in REGISTERS],
            }
        )
        overall = overall.merge(reference, on="measure", how="left")
        policy = disclosure.DEFAULT_POLICY.describe()
        outputs = [
            Output(
                "registered_population",
                "aggregate",
                totals,
                "Patients registered and alive on the index date.",
                policy,
            ),
            Output(
                "age_sex_pyramid",
                "aggregate",
                pyramid,
                "Registered patients by 5-year age band and sex.",
                policy,
            ),
            Output(
                "prevalence_overall",
                "aggregate",
                overall,
                "Register prevalence, all patients, with Wilson 95%/99.8% CIs and the "
                "England QOF figure for comparison.",
                policy,
            ),
            Output(
                "prevalence_by_imd_quintile",
                "aggregate",
                prevalence,
                "Register prevalence by IMD quintile of the home LSOA on the index date "
                "(unknown = no geocoded address or LSOA not in the areas table).",
                policy,
            ),
        ]
        if mapped:
            outputs.append(
                Output(
                    "registered_by_lsoa",
                    "aggregate",
                    mapped[1],
                    "Registered patients by home LSOA on the index date (the map's values; "
                    "patients with no known LSOA are not in it).",
                    policy,
                    show_in_report=False,
                )
            )
        released_total = totals["patients"].iloc[0]
        total_text = "1-7 (suppressed)" if pd.isna(released_total) else f"{released_total:,.0f}"
        sections = [
            Section(
                "Who is registered",
                f"{total_text} patients registered and alive on "
                f"{index_date.isoformat()} (rounded).",
                figures=[
                    Figure(
                        "Age and sex",
                        _pyramid_figure(pyramid),
                        f"Disclosure control: {disclosure.DEFAULT_POLICY.summary()}; "
                        f"{SUPPRESSED} marks a suppressed count (no bar is drawn for it)."
                        + _other_sexes(pyramid),
                    ),
                    *([mapped[0]] if mapped else []),
                ],
                tables=[outputs[0], outputs[1], outputs[2]],
            ),
            Section(
                "Long-term conditions by deprivation",
                "Recorded-diagnosis registers by IMD quintile of the home area. Quintile 1 is "
                "the most deprived fifth of areas.",
                figures=[
                    Figure(
                        "Register prevalence by IMD quintile",
                        _prevalence_figure(prevalence),
                        " ".join(
                            t
                            for t in (
                                "Percentage of registered patients on each register, with "
                                "95% confidence intervals, from the released counts in the "
                                "table below.",
                                _withheld_points(prevalence),
                            )
                            if t
                        ),
                    )
                ],
                tables=[outputs[3]],
                notes=[
                    "Registers: diagnosis on or before the index date, not resolved since; "
                    "QOF-specific criteria are applied within each programme.",
                    "England comparison: QOF 2023/24 register prevalence (all ages; diabetes 17+).",
                    *_unmatched_note(backend),
                ],
            ),
        ]
        return ProgrammeResult(
            self.name,
            self.title,
            index_date,
            engine,
            outputs,
            sections,
            headline={"registered patients (rounded)": total_text},
        )


def _unmatched_note(backend: Any) -> list[str]:
    """A note naming the registers' lists that match no record in the store at any date
    (a register of nobody, or never resolved, is then a data problem, not a finding)."""
    names = {n for r in REGISTERS for n in (*r.diagnosis, r.resolved) if n is not None}
    uses = {name: ("events", None, codelist(name)) for name in sorted(names)}
    unmatched = unmatched_lists(backend, uses)
    if not unmatched:
        return []
    return [
        "Code lists that match no record in this store, at any date (the registers they feed "
        "count nobody, or nobody as resolved; check the lists fit how the practices code): "
        + ", ".join(unmatched)
        + "."
    ]


def _other_sexes(pyramid: pd.DataFrame) -> str:
    others = [s for s in pyramid["sex"].unique() if s not in ("male", "female")]
    if not others:
        return ""
    return (
        f" Patients whose sex is recorded as {' or '.join(map(str, others))} are in the "
        "table below, not drawn."
    )


def _overall_counts(backend, engine, date) -> pd.DataFrame:
    """Per register, the patients on it (``numerator``) and in its age range
    (``denominator``), all areas together: exact counts, not yet disclosure-controlled."""
    ds = Dataset()
    ds.define_population(registered_population())
    for name, flag in register_flags().items():
        setattr(ds, name, flag)
    ds.age = patients.age_on(index_date)
    flags = run_dataset(backend, ds, engine=engine, index_date=date)
    in_range = {r.name: flags["age"] >= r.min_age for r in REGISTERS}
    return pd.DataFrame(
        {
            "measure": [r.name for r in REGISTERS],
            "numerator": [int((flags[r.name] & in_range[r.name]).sum()) for r in REGISTERS],
            "denominator": [int(in_range[r.name].sum()) for r in REGISTERS],
        }
    )


#: The identity of the registered population among the run's counts
#: (:class:`pophealth.disclosure.SharedCounts`).
REGISTERED = "population.registered"


def _scopes(measure: str) -> tuple[str, str]:
    """The identities of a register's count and of its denominator (the registered
    population, or the part of it in the register's age range)."""
    register = next(r for r in REGISTERS if r.name == measure)
    return (
        f"population.{measure}",
        f"{REGISTERED}.{register.min_age}plus" if register.min_age else REGISTERED,
    )


def _keys(measures, groups) -> dict[str, list]:
    """Each row's numerator and denominator identity, by IMD quintile (or the Total)."""
    keys: dict[str, list] = {"numerator": [], "denominator": []}
    for measure, group in zip(measures, groups, strict=True):
        for col, scope in zip(keys, _scopes(measure), strict=True):
            keys[col] += disclosure.count_keys(scope, ["imd_quintile"], [group])
    return keys


def _release(table: pd.DataFrame, shared, **kwargs) -> pd.DataFrame:
    """``release_proportions`` on a table of registers with ``measure`` and (optionally)
    ``imd_quintile`` columns, consulting and feeding the run's shared counts."""
    groups = table["imd_quintile"] if "imd_quintile" in table else ["Total"] * len(table)
    keys = _keys(table["measure"], groups)
    released = disclosure.release_proportions(
        table,
        "numerator",
        "denominator",
        **shared.masks(keys),
        **kwargs,
    )
    for col, k in keys.items():
        shared.record(k, released[col], "population")
    return released


def _released_by_quintile(
    counts: pd.DataFrame, overall: pd.DataFrame, shared: disclosure.SharedCounts
) -> pd.DataFrame:
    """Register prevalence by IMD quintile. Each register's quintiles add up to its count in
    ``prevalence_overall``, so that count is a Total row here for the audit (one count with
    the overall table's: withheld in both or in neither), and left out of this table."""
    columns = list(counts.columns)
    table = counts[["measure", "imd_quintile", "numerator", "denominator"]].copy()
    table["imd_quintile"] = table["imd_quintile"].astype(object)
    totals = overall.assign(imd_quintile="Total")[list(table.columns)]
    table = pd.concat([table, totals], ignore_index=True)
    released = _release(
        table, shared, by=["measure", "imd_quintile"], margins=["imd_quintile"],
        total_label="Total",
    )  # fmt: skip
    released = released[released["imd_quintile"].astype(str) != "Total"]
    return released.reset_index(drop=True)[columns]


def _released_overall(counts: pd.DataFrame, shared: disclosure.SharedCounts) -> pd.DataFrame:
    return _release(counts, shared, by=["measure"])


def _released_total(n: int, shared: disclosure.SharedCounts) -> pd.DataFrame:
    """The registered population: the denominator of every all-ages register."""
    keys = [(REGISTERED, "Total")]
    released = disclosure.apply(
        pd.DataFrame({"population": ["registered"], "patients": [n]}),
        ["patients"],
        **shared.masks({"patients": keys}),
    )
    shared.record(keys, released["patients"], "registered_population")
    return released


PROGRAMME = PopulationProgramme()
