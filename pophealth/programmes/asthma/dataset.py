"""The asthma dataset: one row per patient on the asthma register at the index date.

Built as Ibis expressions over the canonical tables, so the same definition runs on DuckDB
and Spark. Each function below reads like the rule it implements; the look-back window is
(index date − 12 months, index date] (see :func:`rules.window_start`).

Register (QOF AST-style): an asthma diagnosis code on or before the index date not followed
by a later "asthma resolved" code; registered with a practice and alive on the index date;
and (QOF AST001) an asthma medicine (SABA, ICS or prednisolone) issued in the look-back.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import ibis
import pandas as pd
from ibis import _

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


# -- who is on the register -----------------------------------------------------------------


def registered_on(con, index_date: dt.date):
    """Practice of each patient on the index date (the registration started latest wins)."""
    reg = con.table("registrations")
    idx = ibis.date(index_date)
    current = reg.filter((reg.start_date <= idx) & (reg.end_date.isnull() | (reg.end_date >= idx)))
    ranked = current.mutate(
        _rank=ibis.row_number().over(
            ibis.window(group_by=PID, order_by=[ibis.desc("start_date"), ibis.asc("practice_id")])
        )
    )
    return ranked.filter(ranked._rank == 0).select(PID, "practice_id")


def address_on(con, index_date: dt.date):
    """Home LSOA on the index date: the address started latest wins, ties by LSOA code.

    Patients without an address on the date are simply absent here (a left join keeps them
    as the ``unknown`` area group)."""
    addr = con.table("addresses")
    idx = ibis.date(index_date)
    current = addr.filter(
        (addr.start_date <= idx) & (addr.end_date.isnull() | (addr.end_date >= idx))
    )
    ranked = current.mutate(
        _rank=ibis.row_number().over(
            ibis.window(group_by=PID, order_by=[ibis.desc("start_date"), ibis.asc("lsoa_code")])
        )
    )
    return ranked.filter(ranked._rank == 0).select(PID, "lsoa_code")


def _matches(table, codelist: dict[str, list[str]], system: str = "system", code: str = "code"):
    """Boolean expression: the row's (system, code) is in the code list."""
    cond = ibis.literal(False)
    for sys_name, values in codelist.items():
        cond = cond | ((table[system] == sys_name) & table[code].isin(values))
    return cond


def _merge(*lists: dict[str, list[str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for lst in lists:
        for system, values in lst.items():
            out.setdefault(system, []).extend(values)
    return out


#: Event code lists read by :func:`record_summary`, and the column each becomes.
_EVENT_LISTS = (
    "asthma", "asthma_resolved", "review", "action_plan", "inhaler_technique",
    "smoking_current", "smoking_not_current", "referral_secondary", "seen_secondary",
    "referral_sac", "seen_sac",
)  # fmt: skip


def record_summary(con, codes: AsthmaCodes, index_date: dt.date, window: Window, basics: Window):
    """One pass over the GP record up to the index date, one row per patient:

    latest asthma and asthma-resolved dates; review / action plan / inhaler technique in
    their windows; the latest current-smoker and not-current-smoker dates; the latest
    referral and clinic dates for the ISAC timers."""
    lists = {name: codes.by_system(name) for name in _EVENT_LISTS}
    ev = con.table("events").filter(_.date <= ibis.date(index_date))
    ev = ev.filter(_matches(ev, _merge(*lists.values())))
    ev = ev.mutate(**{f"is_{name}": _matches(ev, lists[name]) for name in _EVENT_LISTS})
    in_window = window.contains(ev.date)
    in_basics = basics.contains(ev.date)

    def latest(name):
        return ev.date.max(where=ev[f"is_{name}"])

    def any_in(name, win):
        return (ev[f"is_{name}"] & win).cast("int64").max() == 1

    return ev.group_by(PID).aggregate(
        asthma_date=latest("asthma"),
        resolved_date=latest("asthma_resolved"),
        review_12m=any_in("review", in_window),
        action_plan_12m=any_in("action_plan", in_basics),
        inhaler_technique_12m=any_in("inhaler_technique", in_basics),
        _smoke_yes=latest("smoking_current"),
        _smoke_no=latest("smoking_not_current"),
        referral_date=latest("referral_secondary"),
        secondary_care_seen_date=latest("seen_secondary"),
        sac_referral_date=latest("referral_sac"),
        sac_seen_date=latest("seen_sac"),
    )


def inhaler_summary(con, codes: AsthmaCodes, window: Window, earlier: Window):
    """One pass over inhaler issues: SABA and ICS issues in the look-back, any high-dose ICS,
    and SABA issues in the look-back ending ``optimisation_months`` earlier."""
    saba, ics = codes.by_system("saba"), codes.by_system("ics")
    meds = con.table("medications")
    start = min(window.start, earlier.start)
    meds = meds.filter((meds.date >= ibis.date(start)) & (meds.date <= ibis.date(window.end)))
    meds = meds.filter(_matches(meds, _merge(saba, ics)))
    meds = meds.mutate(
        is_saba=_matches(meds, saba),
        is_ics=_matches(meds, ics),
        is_high=_matches(meds, codes.by_system("ics_high_dose")),
        now=window.contains(meds.date),
        before=earlier.contains(meds.date),
    )

    def n(cond):
        return cond.cast("int64").sum()

    return meds.group_by(PID).aggregate(
        saba_count_12m=n(meds.is_saba & meds.now),
        ics_count_12m=n(meds.is_ics & meds.now),
        high_dose_ics=n(meds.is_high & meds.now) > 0,
        saba_count_12m_earlier=n(meds.is_saba & meds.before),
    )


def medication_issues(con, codes: AsthmaCodes, name: str, window: Window):
    meds = con.table("medications").filter(window.contains(_.date))
    return _in_list(meds, codes.by_system(name))


def oral_steroids(con, codes: AsthmaCodes, window: Window, config: AsthmaConfig):
    """Prednisolone in the window: courses, cumulative mg, months issued, maintenance dose.

    mg = quantity × the product's strength (code list). An issue is **maintenance** when
    its structured daily dose is at most ``maintenance_max_daily_mg`` and it covers at least
    ``maintenance_min_days_supply`` days (mg ÷ daily dose); every other issue is part of a
    **course** (an attack treated with a short burst). Course issues less than
    ``ocs_same_course_days`` apart are one course. ``ocs_daily_mg`` is the lowest structured
    daily dose of the maintenance issues, or — when the source has no structured doses —
    the cumulative mg ÷ days from the first issue in the window to the index date."""
    issues = medication_issues(con, codes, "prednisolone_mg", window)
    branches = [
        ((issues.system == system) & (issues.code == code), float(mg))
        for (system, code), mg in sorted(codes.prednisolone_mg.items())
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
        ocs_months_12m=_.month.nunique(),
        maintenance_issues=_.maintenance.cast("int64").sum(),
        maintenance_dose=_.maint_dose.min(),
        _first=_.date.min().epoch_days(),
    )
    bursts = issues.filter(~issues.maintenance).group_by([PID, "date"]).aggregate()
    w = ibis.window(group_by=PID, order_by="date")
    bursts = bursts.mutate(prev=bursts.date.lag().over(w))
    gap = bursts.date.epoch_days() - bursts.prev.epoch_days()
    bursts = bursts.mutate(new=bursts.prev.isnull() | (gap >= config.ocs_same_course_days))
    courses = bursts.group_by(PID).aggregate(ocs_courses_12m=_.new.cast("int64").sum())
    agg = totals.left_join(courses, PID).drop(f"{PID}_right")
    days = ibis.greatest(ibis.literal(end + 1) - agg._first, 28).cast("float64")
    mg = agg.prednisolone_mg_12m.fill_null(0.0)
    return agg.mutate(
        prednisolone_mg_12m=mg,
        ocs_courses_12m=agg.ocs_courses_12m.fill_null(0),
        on_maintenance_ocs=agg.maintenance_issues > 0,
        ocs_daily_mg=agg.maintenance_dose.fill_null(mg / days),
    ).drop("_first", "maintenance_issues", "maintenance_dose")


def _attack_diagnosis(column, codes: AsthmaCodes):
    cond = ibis.literal(False)
    for prefix in codes.attack_icd10_prefixes:
        cond = cond | column.startswith(prefix)
    return cond


def ed_attendances(con, codes: AsthmaCodes, window: Window, earlier: Window):
    """A&E attendances with an asthma chief diagnosis (SNOMED list, or ICD-10 J45/J46), in
    the look-back and in the earlier look-back."""
    ed = con.table("emergency_attendances")
    ed = ed.mutate(date=ed.arrival_datetime.date())
    ed = ed.filter(window.contains(ed.date) | earlier.contains(ed.date))
    cond = (ed.diagnosis_system == "icd10") & _attack_diagnosis(ed.diagnosis, codes)
    cond = cond | _matches(ed, codes.by_system("ed_asthma"), "diagnosis_system", "diagnosis")
    ed = ed.filter(cond)
    return ed.group_by(PID).aggregate(
        ed_attendances_12m=window.contains(ed.date).cast("int64").sum(),
        ed_attendances_12m_earlier=earlier.contains(ed.date).cast("int64").sum(),
    )


def admissions(con, codes: AsthmaCodes, window: Window, earlier: Window):
    """Emergency admissions with asthma (J45/J46) as primary diagnosis; ITU/HDU ones."""
    adm = con.table("admissions")
    adm = adm.filter(
        (window.contains(adm.admission_date) | earlier.contains(adm.admission_date))
        & (adm.admission_method == "emergency")
        & _attack_diagnosis(adm.primary_diagnosis, codes)
    )
    now = window.contains(adm.admission_date)
    return adm.group_by(PID).aggregate(
        admissions_12m=now.cast("int64").sum(),
        critical_care_attacks_12m=(now & adm.critical_care.fill_null(False)).cast("int64").sum(),
        admissions_12m_earlier=earlier.contains(adm.admission_date).cast("int64").sum(),
    )


def age_on(dob, index_date: dt.date):
    """Whole years of age on the index date (portable integer arithmetic)."""
    idx = index_date.year * 10000 + index_date.month * 100 + index_date.day
    born = dob.year() * 10000 + dob.month() * 100 + dob.day()
    return ((idx - born) / 10000).floor().cast("int64")


COUNT_COLUMNS = (
    "saba_count_12m",
    "ics_count_12m",
    "ocs_courses_12m",
    "ocs_months_12m",
    "ed_attendances_12m",
    "admissions_12m",
    "critical_care_attacks_12m",
)
_EARLIER_COUNTS = ("saba_count_12m", "ocs_courses_12m", "ed_attendances_12m", "admissions_12m")


def markers_expr(con, codes: AsthmaCodes, index_date: dt.date, config: AsthmaConfig = DEFAULT):
    """The register with every marker, as one Ibis expression (one row per patient).

    Register: latest asthma code not followed by a resolved code; registered and alive on
    the index date; an asthma medicine (SABA, ICS or prednisolone) in the look-back."""
    window = Window.lookback(index_date, config.lookback_months)
    basics = Window.lookback(index_date, config.basics_lookback_months)
    earlier_end = window_start(index_date, config.optimisation_months) - dt.timedelta(days=1)
    earlier = Window.lookback(earlier_end, config.lookback_months)
    idx = ibis.date(index_date)

    patients = con.table("patients")
    alive = patients.filter(
        (patients.date_of_death.isnull() | (patients.date_of_death > idx))
        & (patients.date_of_birth <= idx)
    ).select(PID, "date_of_birth", "sex", "ethnicity_5")
    records = record_summary(con, codes, index_date, window, basics)
    diagnosed = records.filter(
        records.asthma_date.notnull()
        & (records.resolved_date.isnull() | (records.resolved_date < records.asthma_date))
    )
    base = alive.join(diagnosed, PID).join(registered_on(con, index_date), PID)
    practices = con.table("practices").select(
        "practice_id", "pcn_id", "pcn_name", practice_name="name"
    )
    base = base.left_join(practices, "practice_id").drop("practice_id_right")
    base = base.left_join(address_on(con, index_date), PID).drop(f"{PID}_right")
    areas = con.table("areas").select(
        "lsoa_code", "msoa_code", "lad_code", "imd_decile", "imd_quintile", "core20",
        "no2_quintile", "pm_quintile", "no2_component", "pm_component",
    )  # fmt: skip
    base = base.left_join(areas, "lsoa_code").drop("lsoa_code_right")

    ocs_earlier = oral_steroids(con, codes, earlier, config).select(
        PID, ocs_courses_12m_earlier="ocs_courses_12m"
    )
    parts = [
        inhaler_summary(con, codes, window, earlier),
        oral_steroids(con, codes, window, config),
        ocs_earlier,
        ed_attendances(con, codes, window, earlier),
        admissions(con, codes, window, earlier),
    ]
    expr = base
    for part in parts:
        expr = expr.left_join(part, PID).drop(f"{PID}_right")
    fills = {c: 0 for c in COUNT_COLUMNS}
    fills.update({f"{c}_earlier": 0 for c in _EARLIER_COUNTS})
    fills.update(
        review_12m=False,
        action_plan_12m=False,
        inhaler_technique_12m=False,
        high_dose_ics=False,
        on_maintenance_ocs=False,
        prednisolone_mg_12m=0.0,
        prednisolone_issues=0,
    )
    expr = expr.mutate(**{c: expr[c].fill_null(v) for c, v in fills.items()})
    expr = expr.filter(
        (expr.saba_count_12m > 0) | (expr.ics_count_12m > 0) | (expr.prednisolone_issues > 0)
    )
    smoker = expr._smoke_yes.notnull() & (
        expr._smoke_no.isnull() | (expr._smoke_yes >= expr._smoke_no)
    )
    return expr.mutate(smoker=smoker, age=age_on(expr.date_of_birth, index_date)).drop(
        "_smoke_yes", "_smoke_no", "resolved_date", "prednisolone_issues"
    )


def markers(
    con, codes: AsthmaCodes, index_date: dt.date, config: AsthmaConfig = DEFAULT
) -> pd.DataFrame:
    """The per-patient marker table (see :data:`rules.MARKER_COLUMNS`) plus demographics,
    area and the dates the ISAC timers need, as a pandas DataFrame sorted by patient."""
    expr = markers_expr(con, codes, index_date, config)
    frame = expr.order_by(PID).to_pandas()
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
    saba = _in_list(meds, codes.by_system("saba"))
    saba = saba.mutate(month=saba.date.year() * 12 + saba.date.month() - 1)
    out = saba.group_by([PID, "month"]).aggregate(n=_.count()).order_by([PID, "month"])
    frame = out.to_pandas()
    frame["month"] = frame["month"].astype("int64")
    frame["n"] = frame["n"].astype("int64")
    frame.attrs["months"] = months
    return frame
