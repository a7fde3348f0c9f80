"""The asthma dataset: one row per patient on the asthma register at the index date.

The register and the per-patient variables are written in pophealth's query language
(:mod:`pophealth.query`), so they read like the clinical rule and run unchanged on DuckDB and
Spark. The look-back is ``in_last(months=12)`` = (index date − 12 months, index date].

Register (QOF AST-style): an asthma diagnosis code on or before the index date with no
"asthma resolved" code on or after the latest one (QOF: resolved date < diagnosis date);
registered with a practice and alive on the index date; and (QOF AST001) an asthma medicine
(SABA, ICS or prednisolone) issued in the look-back.

Oral-steroid courses need "issues less than 7 days apart are one course", which compares
each issue with the previous one; the query language has no such step yet, so
:func:`oral_steroids` is written directly in (portable) Ibis and joined on. So is
:func:`pathway_visits` (the first clinic visit after the latest referral), for speed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import ibis
import pandas as pd
from ibis import _

from pophealth import query as q
from pophealth.codelists import SHARED_IDENTIFIERS, medication_codes
from pophealth.programmes.asthma.codes import AsthmaCodes
from pophealth.programmes.asthma.config import DEFAULT, AsthmaConfig
from pophealth.programmes.asthma.rules import window_start

PID = "patient_id"


@dataclass(frozen=True)
class Window:
    """Look-back window: ``start`` and ``end`` both inside."""

    start: dt.date
    end: dt.date

    @classmethod
    def lookback(cls, index_date: dt.date, months: int) -> Window:
        return cls(window_start(index_date, months), index_date)

    def contains(self, column) -> ibis.expr.types.BooleanValue:
        return (column >= ibis.date(self.start)) & (column <= ibis.date(self.end))


def _in_list(table, codelist: dict[str, list[str]], system: str = "system", code: str = "code"):
    """Rows whose (system, code) is in the code list; no rows for an empty list."""
    cond = ibis.literal(False)
    for sys_name, values in codelist.items():
        cond = cond | ((table[system] == sys_name) & table[code].isin(values))
    return table.filter(cond)


# -- the register and its variables, in the query language ---------------------------------


def register_dataset(codes: AsthmaCodes, index_date: dt.date, config: AsthmaConfig = DEFAULT):
    """The asthma register and every marker as a :class:`pophealth.query.Dataset`."""
    ev, meds = q.events, q.medications
    lookback = config.lookback_months
    earlier_end = window_start(index_date, config.optimisation_months) - dt.timedelta(days=1)
    ds = q.Dataset(index_date=index_date)

    # -- who is on the register
    asthma_date = ev.matching(codes.asthma).on_or_before(q.index_date).maximum_for_patient(ev.date)
    not_resolved = asthma_date.is_not_null()
    if codes.asthma_resolved is not None:
        resolved = (
            ev.matching(codes.asthma_resolved)
            .on_or_before(q.index_date)
            .maximum_for_patient(ev.date)
        )
        not_resolved = not_resolved & (resolved.is_null() | (resolved < asthma_date))
    treated = None
    for cl in (codes.saba, codes.ics, codes.prednisolone):
        if cl is not None:
            got = meds.matching(cl).in_last(months=lookback).exists_for_patient()
            treated = got if treated is None else (treated | got)
    ds.define_population(
        q.registrations.registered_on(q.index_date)
        & q.patients.is_alive_on(q.index_date)
        & not_resolved
        & treated
    )

    # -- who they are, where they are registered and where they live
    ds.date_of_birth = q.patients.date_of_birth
    ds.age = q.patients.age_on(q.index_date)
    ds.sex = q.patients.sex
    ds.ethnicity_5 = q.patients.ethnicity_5
    ds.asthma_date = asthma_date
    practice = q.registrations.practice_on(q.index_date)
    ds.practice_id = practice.practice_id
    ds.practice_name = practice.name
    ds.pcn_id = practice.pcn_id
    ds.pcn_name = practice.pcn_name
    ds.lsoa_code = q.addresses.address_on(q.index_date).lsoa_code
    area = q.addresses.area_on(q.index_date)
    for col in ("msoa_code", "lad_code", "imd_decile", "imd_quintile", "core20",
                "no2_quintile", "pm_quintile", "no2_component", "pm_component"):  # fmt: skip
        ds.add(col, getattr(area, col))

    # -- inhalers
    def issues(cl, of=None):
        if cl is None:
            return 0
        return meds.matching(cl).in_last(months=lookback, of=of).count_for_patient()

    ds.saba_count_12m = issues(codes.saba)
    ds.ics_count_12m = issues(codes.ics)
    ds.high_dose_ics = (
        meds.matching(codes.ics_high_dose).in_last(months=lookback).exists_for_patient()
        if codes.ics_high_dose is not None
        else False
    )
    ds.saba_count_12m_earlier = issues(codes.saba, earlier_end)

    # -- attacks seen in hospital
    def ed(of=None):
        # an attendance has one diagnosis in one system, so the SNOMED and ICD-10 counts add
        total = 0
        for cl in (codes.ed_asthma, codes.attack_icd10):
            if cl is not None:
                att = q.emergency_attendances.matching(cl, column="diagnosis")
                total = total + att.in_last(months=lookback, of=of).count_for_patient()
        return total

    def admitted(of=None, critical=False):
        if codes.attack_icd10 is None:
            return 0
        adm = q.admissions
        rows = adm.matching(codes.attack_icd10, column="primary_diagnosis").where(
            adm.admission_method == "emergency"
        )
        if critical:
            rows = rows.where(adm.critical_care.if_null_then(False))
        return rows.in_last(months=lookback, of=of).count_for_patient()

    ds.ed_attendances_12m = ed()
    ds.admissions_12m = admitted()
    ds.critical_care_attacks_12m = admitted(critical=True)
    ds.ed_attendances_12m_earlier = ed(earlier_end)
    ds.admissions_12m_earlier = admitted(earlier_end)

    # -- the London basics and smoking
    def recorded(cl, months):
        if cl is None:
            return False
        return ev.matching(cl).in_last(months=months).exists_for_patient()

    ds.review_12m = recorded(codes.review, lookback)
    ds.action_plan_12m = recorded(codes.action_plan, config.basics_lookback_months)
    ds.inhaler_technique_12m = recorded(codes.inhaler_technique, config.basics_lookback_months)
    if codes.smoking is not None:
        latest = ev.matching(codes.smoking).on_or_before(q.index_date).last_for_patient()
        ds.smoker = (latest.code.to_category(codes.smoking, "category") == "current").if_null_then(
            False
        )
    else:
        ds.smoker = False

    # -- ISAC pathway: the latest referral on or before the index date (the first clinic
    # visit after it is found by :func:`pathway_visits`)
    for name, col in PATHWAY:
        if getattr(codes, name[0]) is not None:
            referred = ev.matching(getattr(codes, name[0])).on_or_before(q.index_date)
            ds.add(col[0], referred.maximum_for_patient(ev.date))
    return ds


#: ISAC pathway steps: (referral list, visit list) → (referral date, first-visit date).
PATHWAY = (
    (("referral_secondary", "seen_secondary"), ("referral_date", "secondary_care_seen_date")),
    (("referral_sac", "seen_sac"), ("sac_referral_date", "sac_seen_date")),
)


def pathway_visits(con, codes: AsthmaCodes, index_date: dt.date):
    """Per patient, the first clinic visit on or after their latest referral (both on or
    before the index date), one column per pathway step whose two lists exist; ``None`` when
    there is none. A visit before the referral belongs to an older episode; anything after
    the index date is not known yet.

    The same rule reads ``events.matching(seen).between(referral_date, index_date)
    .minimum_for_patient(date)`` in the query language, which today joins every event row
    with its patient's referral date before matching codes. Here the rows of the two (small)
    lists are read in one pass and each visit is compared with the latest referral of its
    patient (a window over those rows only)."""
    events = con.table("events").filter(_.date <= ibis.date(index_date))
    parts = []
    for (ref_name, seen_name), (_ref_col, seen_col) in PATHWAY:
        if getattr(codes, ref_name) is None or getattr(codes, seen_name) is None:
            continue
        refs, seen = codes.by_system(ref_name), codes.by_system(seen_name)
        both = {s: sorted({*refs.get(s, ()), *seen.get(s, ())}) for s in {*refs, *seen}}
        rows = _in_list(events, both).select(PID, "date", "system", "code")
        is_ref = ibis.literal(False)
        for system, values in refs.items():
            is_ref = is_ref | ((rows.system == system) & rows.code.isin(values))
        rows = rows.mutate(_is_ref=is_ref)
        latest = ibis.ifelse(rows._is_ref, rows.date, ibis.null("date")).max()
        rows = rows.mutate(_ref=latest.over(ibis.window(group_by=PID)))
        visits = rows.filter(~rows._is_ref & (rows.date >= rows._ref))
        parts.append(visits.group_by(PID).aggregate(**{seen_col: _.date.min()}))
    if not parts:
        return None
    out = parts[0]
    for part in parts[1:]:
        out = out.outer_join(part, PID)
        out = out.mutate(**{PID: ibis.coalesce(out[PID], out[f"{PID}_right"])}).drop(f"{PID}_right")
    return out


def medication_issues(con, codes: AsthmaCodes, name: str, window: Window):
    meds = con.table("medications").filter(window.contains(_.date))
    return _in_list(meds, medication_codes(codes.by_system(name)))


def oral_steroids(con, codes: AsthmaCodes, window: Window, config: AsthmaConfig):
    """Prednisolone in the window: courses, cumulative mg, months issued, maintenance dose.

    mg = quantity × the product's strength (code list). An issue with no quantity, or of a
    product with no strength in the list, has an **unknown** dose: it adds nothing to
    ``prednisolone_mg_12m`` (the known total, a lower bound) and is counted in
    ``prednisolone_unknown_issues_12m`` — never read as 0 mg. An issue is **maintenance** when
    its structured daily dose is at most ``maintenance_max_daily_mg`` and it covers at least
    ``maintenance_min_days_supply`` days (mg ÷ daily dose); every other issue is part of a
    **course** (an attack treated with a short burst). Course issues less than
    ``ocs_same_course_days`` apart are one course. ``ocs_daily_mg`` is the dose the patient
    is on: the structured daily dose of the latest maintenance issue (the highest, when
    several are issued that day), or — when the source has no structured doses — the
    cumulative mg ÷ days from the first issue in the window to the index date (the known mg,
    so a lower bound when some doses are unknown)."""
    issues = medication_issues(con, codes, "prednisolone", window)
    strengths = codes.strengths()
    for (system, code), mg in list(strengths.items()):  # a dm+d id recorded as SNOMED CT
        if system in SHARED_IDENTIFIERS:
            for other in SHARED_IDENTIFIERS:
                strengths.setdefault((other, code), mg)
    branches = [
        ((issues.system == system) & (issues.code == code), float(mg))
        for (system, code), mg in sorted(strengths.items())
    ]
    unknown = ibis.null("float64")
    strength = ibis.cases(*branches, else_=unknown) if branches else unknown
    issues = issues.mutate(mg=issues.quantity.cast("float64") * strength)
    daily = issues.daily_dose_mg
    maintenance = (
        daily.notnull()
        & (daily > 0)
        & (daily <= config.maintenance_max_daily_mg)
        & ((issues.mg / daily) >= config.maintenance_min_days_supply)
    ).fill_null(False)
    issues = issues.mutate(
        maintenance=maintenance,
        month=issues.date.year() * 12 + issues.date.month(),
        maint_dose=ibis.ifelse(maintenance, daily, unknown),
    )
    end = window.end.toordinal() - dt.date(1970, 1, 1).toordinal()
    totals = issues.group_by(PID).aggregate(
        prednisolone_mg_12m=_.mg.sum(),
        prednisolone_issues=_.count(),
        prednisolone_unknown_issues_12m=_.mg.isnull().cast("int64").sum(),
        ocs_months_12m=_.month.nunique(),
        maintenance_issues=_.maintenance.cast("int64").sum(),
        _first=_.date.min().epoch_days(),
    )
    # the dose now: the latest maintenance issue's (a taper ends low, a step-up high)
    maint = issues.filter(issues.maintenance)
    maint = maint.mutate(_last=maint.date.max().over(ibis.window(group_by=PID)))
    current = (
        maint.filter(maint.date == maint._last)
        .group_by(PID)
        .aggregate(maintenance_dose=_.maint_dose.max())
    )
    bursts = issues.filter(~issues.maintenance).group_by([PID, "date"]).aggregate()
    w = ibis.window(group_by=PID, order_by="date")
    bursts = bursts.mutate(prev=bursts.date.lag().over(w))
    gap = bursts.date.epoch_days() - bursts.prev.epoch_days()
    bursts = bursts.mutate(new=bursts.prev.isnull() | (gap >= config.ocs_same_course_days))
    courses = bursts.group_by(PID).aggregate(ocs_courses_12m=_.new.cast("int64").sum())
    agg = totals.left_join(courses, PID).drop(f"{PID}_right")
    agg = agg.left_join(current, PID).drop(f"{PID}_right")
    days = ibis.greatest(ibis.literal(end + 1) - agg._first, 28).cast("float64")
    # the known total (0 when no issue's dose is known; those issues are counted apart)
    mg = agg.prednisolone_mg_12m.fill_null(0.0)
    return agg.mutate(
        prednisolone_mg_12m=mg,
        ocs_courses_12m=agg.ocs_courses_12m.fill_null(0),
        on_maintenance_ocs=agg.maintenance_issues > 0,
        ocs_daily_mg=agg.maintenance_dose.fill_null(mg / days),
    ).drop("_first", "maintenance_issues", "maintenance_dose")


COUNT_COLUMNS = (
    "saba_count_12m",
    "ics_count_12m",
    "ocs_courses_12m",
    "ocs_months_12m",
    "prednisolone_unknown_issues_12m",
    "ed_attendances_12m",
    "admissions_12m",
    "critical_care_attacks_12m",
)
_EARLIER_COUNTS = ("saba_count_12m", "ocs_courses_12m", "ed_attendances_12m", "admissions_12m")
_DATES = ("referral_date", "secondary_care_seen_date", "sac_referral_date", "sac_seen_date")


def markers_expr(
    con, codes: AsthmaCodes, index_date: dt.date, config: AsthmaConfig = DEFAULT,
    engine: str = "duckdb",
):  # fmt: skip
    """The register with every marker, as one Ibis expression (one row per patient)."""
    ds = register_dataset(codes, index_date, config)
    expr = q.run_dataset(con, ds, engine=engine, index_date=index_date, output="ibis")
    window = Window.lookback(index_date, config.lookback_months)
    earlier_end = window_start(index_date, config.optimisation_months) - dt.timedelta(days=1)
    earlier = Window.lookback(earlier_end, config.lookback_months)
    ocs = oral_steroids(con, codes, window, config)
    ocs_earlier = oral_steroids(con, codes, earlier, config).select(
        PID, ocs_courses_12m_earlier="ocs_courses_12m"
    )
    parts = [ocs, ocs_earlier]
    visits = pathway_visits(con, codes, index_date)
    if visits is not None:
        parts.append(visits)
    for part in parts:
        expr = expr.left_join(part, PID).drop(f"{PID}_right")
    fills = {c: 0 for c in COUNT_COLUMNS}
    fills.update({f"{c}_earlier": 0 for c in _EARLIER_COUNTS})
    fills.update(on_maintenance_ocs=False, prednisolone_mg_12m=0.0)
    expr = expr.mutate(**{c: expr[c].fill_null(v) for c, v in fills.items()})
    missing_dates = {c: ibis.null("date") for c in _DATES if c not in expr.columns}
    return expr.mutate(**missing_dates).drop("prednisolone_issues")


def markers(
    con, codes: AsthmaCodes, index_date: dt.date, config: AsthmaConfig = DEFAULT,
    engine: str = "duckdb",
) -> pd.DataFrame:  # fmt: skip
    """The per-patient marker table (see :data:`rules.MARKER_COLUMNS`) plus demographics,
    area and the dates the ISAC timers need, as a pandas DataFrame sorted by patient."""
    expr = markers_expr(con, codes, index_date, config, engine)
    frame = q.to_pandas(expr.order_by(PID))
    return _tidy(frame, config)


def _tidy(frame: pd.DataFrame, config: AsthmaConfig) -> pd.DataFrame:
    """pandas dtypes, the unknown-area group and the ISAC "uncontrolled earlier" flag."""
    from pophealth.programmes.asthma.rules import passes

    for col in (*COUNT_COLUMNS, "age"):
        frame[col] = frame[col].astype("int64")
    for col in ("imd_decile", "imd_quintile", "no2_quintile", "pm_quintile"):
        frame[col] = frame[col].astype("Int64")
    for col in ("review_12m", "action_plan_12m", "inhaler_technique_12m", "smoker",
                "high_dose_ics", "on_maintenance_ocs"):  # fmt: skip
        frame[col] = frame[col].astype(bool)
    frame["core20"] = frame["core20"].astype("boolean")
    for col in ("referral_date", "secondary_care_seen_date", "sac_referral_date", "sac_seen_date"):
        frame[col] = pd.to_datetime(frame[col])
    frame["prednisolone_mg_12m"] = frame["prednisolone_mg_12m"].astype(float)
    frame["ocs_daily_mg"] = frame["ocs_daily_mg"].astype(float)
    e = "_earlier"
    attacks = frame[f"ed_attendances_12m{e}"] + frame[f"admissions_12m{e}"]
    frame["uncontrolled_earlier"] = (
        passes(frame[f"ocs_courses_12m{e}"], config.uncontrolled_ocs)
        | passes(attacks, config.uncontrolled_attacks)
        | passes(frame[f"saba_count_12m{e}"], config.uncontrolled_saba)
    )
    frame = frame.drop(columns=[c for c in frame.columns if c.endswith(f"_12m{e}")])
    frame["area_known"] = frame["imd_quintile"].notna()
    frame["age_band"] = age_bands(frame["age"], config.age_bands)
    return frame


def age_bands(age: pd.Series, edges: tuple[int, ...]) -> pd.Series:
    labels = [
        f"{lo}-{hi - 1}" if hi < 200 else f"{lo}+" for lo, hi in zip(edges, edges[1:], strict=False)
    ]
    return pd.cut(age, bins=list(edges), right=False, labels=labels).astype(str)


def saba_monthly(con, codes: AsthmaCodes, index_date: dt.date, config: AsthmaConfig = DEFAULT):
    """SABA issues per patient per calendar month, for the monthly SABA-overuse SPC.

    The months evaluated are the ``spc_months`` last complete months up to the index date;
    each is judged on the 12 calendar months ending with it, so issues are read from
    ``lookback_months − 1`` months before the first. Returns ``patient_id, month, n`` with
    ``month = year·12 + month − 1`` and ``attrs["months"]`` the months evaluated."""
    last = index_date.year * 12 + index_date.month - 1
    if (index_date + dt.timedelta(days=1)).month == index_date.month:
        last -= 1  # the index month is not complete
    months = list(range(last - config.spc_months + 1, last + 1))
    first = months[0] - (config.lookback_months - 1)
    start = dt.date(first // 12, first % 12 + 1, 1)
    end_next = last + 1
    end = dt.date(end_next // 12, end_next % 12 + 1, 1) - dt.timedelta(days=1)
    meds = con.table("medications").filter(
        (_.date >= ibis.date(start)) & (_.date <= ibis.date(end))
    )
    saba = _in_list(meds, medication_codes(codes.by_system("saba")))
    saba = saba.mutate(month=saba.date.year() * 12 + saba.date.month() - 1)
    out = saba.group_by([PID, "month"]).aggregate(n=_.count()).order_by([PID, "month"])
    frame = q.to_pandas(out)
    frame["month"] = frame["month"].astype("int64")
    frame["n"] = frame["n"].astype("int64")
    frame.attrs["months"] = months
    return frame
