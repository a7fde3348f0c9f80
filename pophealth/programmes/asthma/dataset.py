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


def _count_per_patient(table, name: str):
    return table.group_by(PID).aggregate(**{name: _.count()})


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


def latest_diagnosis(con, codes: AsthmaCodes, index_date: dt.date):
    """Latest asthma and latest asthma-resolved date on or before the index date."""
    ev = con.table("events").filter(_.date <= ibis.date(index_date))
    dx = _in_list(ev, codes.by_system("asthma")).group_by(PID).aggregate(asthma_date=_.date.max())
    res = (
        _in_list(ev, codes.by_system("asthma_resolved"))
        .group_by(PID)
        .aggregate(resolved_date=_.date.max())
    )
    joined = dx.left_join(res, PID).select(dx[PID], "asthma_date", "resolved_date")
    return joined.filter(
        joined.resolved_date.isnull() | (joined.resolved_date < joined.asthma_date)
    ).select(PID, "asthma_date")


def medication_issues(con, codes: AsthmaCodes, name: str, window: Window):
    meds = con.table("medications").filter(window.contains(_.date))
    return _in_list(meds, codes.by_system(name))


# -- markers --------------------------------------------------------------------------------


def saba_issues(con, codes, window):
    return _count_per_patient(medication_issues(con, codes, "saba", window), "saba_count_12m")


def ics_issues(con, codes, window):
    ics = medication_issues(con, codes, "ics", window)
    high = codes.by_system("ics_high_dose")
    is_high = ibis.literal(False)
    for system, values in high.items():
        is_high = is_high | ((ics.system == system) & ics.code.isin(values))
    ics = ics.mutate(_high=is_high.cast("int64"))
    return ics.group_by(PID).aggregate(ics_count_12m=_.count(), high_dose_ics=_._high.max() == 1)


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


def ed_attendances(con, codes: AsthmaCodes, window: Window):
    """A&E attendances with an asthma chief diagnosis (SNOMED list, or ICD-10 J45/J46)."""
    ed = con.table("emergency_attendances")
    ed = ed.mutate(date=ed.arrival_datetime.date())
    ed = ed.filter(window.contains(ed.date))
    cond = (ed.diagnosis_system == "icd10") & _attack_diagnosis(ed.diagnosis, codes)
    for system, values in codes.by_system("ed_asthma").items():
        cond = cond | ((ed.diagnosis_system == system) & ed.diagnosis.isin(values))
    return _count_per_patient(ed.filter(cond), "ed_attendances_12m")


def admissions(con, codes: AsthmaCodes, window: Window):
    """Emergency admissions with asthma (J45/J46) as primary diagnosis; ITU/HDU ones."""
    adm = con.table("admissions")
    adm = adm.filter(
        window.contains(adm.admission_date)
        & (adm.admission_method == "emergency")
        & _attack_diagnosis(adm.primary_diagnosis, codes)
    )
    return adm.group_by(PID).aggregate(
        admissions_12m=_.count(),
        critical_care_attacks_12m=_.critical_care.fill_null(False).cast("int64").sum(),
    )


def recorded_in(con, codes: AsthmaCodes, name: str, window: Window, out: str):
    ev = con.table("events").filter(window.contains(_.date))
    return _in_list(ev, codes.by_system(name)).select(PID).distinct().mutate(**{out: True})


def smoking_status(con, codes: AsthmaCodes, index_date: dt.date):
    """Current smoker when the latest smoking-status code on or before the index date is
    a current-smoker code."""
    ev = con.table("events").filter(_.date <= ibis.date(index_date))
    cur = _in_list(ev, codes.by_system("smoking_current")).mutate(current=True)
    other = _in_list(ev, codes.by_system("smoking_not_current")).mutate(current=False)
    both = cur.union(other)
    ranked = both.mutate(
        _rank=ibis.row_number().over(
            ibis.window(group_by=PID, order_by=[ibis.desc("date"), ibis.desc("current")])
        )
    )
    return ranked.filter(ranked._rank == 0).select(PID, smoker=ranked.current)


def latest_event(con, codes: AsthmaCodes, name: str, index_date: dt.date, out: str):
    ev = con.table("events").filter(_.date <= ibis.date(index_date))
    return _in_list(ev, codes.by_system(name)).group_by(PID).aggregate(**{out: _.date.max()})


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


def uncontrolled_counts(con, codes, index_date, config):
    """The three ISAC counts at another date (for "flagged for 6 months")."""
    window = Window.lookback(index_date, config.lookback_months)
    parts = [
        saba_issues(con, codes, window),
        oral_steroids(con, codes, window, config).select(PID, "ocs_courses_12m"),
        ed_attendances(con, codes, window),
        admissions(con, codes, window).select(PID, "admissions_12m"),
    ]
    return parts


def register(con, codes: AsthmaCodes, index_date: dt.date, config: AsthmaConfig = DEFAULT):
    """Patients on the asthma register at the index date, with practice, PCN and area."""
    window = Window.lookback(index_date, config.lookback_months)
    patients = con.table("patients")
    idx = ibis.date(index_date)
    alive = patients.filter(
        (patients.date_of_death.isnull() | (patients.date_of_death > idx))
        & (patients.date_of_birth <= idx)
    )
    dx = latest_diagnosis(con, codes, index_date)
    reg = registered_on(con, index_date)
    meds = con.table("medications").filter(window.contains(_.date))
    any_lists = {}
    for name in ("saba", "ics", "prednisolone_mg"):
        for system, values in codes.by_system(name).items():
            any_lists.setdefault(system, []).extend(values)
    treated = _in_list(meds, any_lists).select(PID).distinct()
    base = alive.join(dx, PID).join(reg, PID).join(treated, PID)
    base = base.select(PID, "date_of_birth", "sex", "ethnicity_5", "practice_id", "asthma_date")
    practices = con.table("practices").select("practice_id", "pcn_id", "pcn_name", "name")
    base = base.left_join(practices, "practice_id").drop("practice_id_right")
    base = base.rename(practice_name="name")
    addr = address_on(con, index_date)
    base = base.left_join(addr, PID).drop(f"{PID}_right")
    areas = con.table("areas").select(
        "lsoa_code", "msoa_code", "lad_code", "imd_decile", "imd_quintile", "core20",
        "no2_quintile", "pm_quintile", "no2_component", "pm_component",
    )  # fmt: skip
    base = base.left_join(areas, "lsoa_code").drop("lsoa_code_right")
    return base.mutate(age=age_on(base.date_of_birth, index_date))


def markers(
    con, codes: AsthmaCodes, index_date: dt.date, config: AsthmaConfig = DEFAULT
) -> pd.DataFrame:
    """The per-patient marker table (see :data:`rules.MARKER_COLUMNS`) plus demographics,
    area and the dates the ISAC timers need, as a pandas DataFrame sorted by patient."""
    window = Window.lookback(index_date, config.lookback_months)
    basics = Window.lookback(index_date, config.basics_lookback_months)
    base = register(con, codes, index_date, config)
    ics = ics_issues(con, codes, window)
    ocs = oral_steroids(con, codes, window, config)
    adm = admissions(con, codes, window)
    parts = [
        saba_issues(con, codes, window),
        ics,
        ocs,
        ed_attendances(con, codes, window),
        adm,
        recorded_in(con, codes, "review", window, "review_12m"),
        recorded_in(con, codes, "action_plan", basics, "action_plan_12m"),
        recorded_in(con, codes, "inhaler_technique", basics, "inhaler_technique_12m"),
        smoking_status(con, codes, index_date),
        latest_event(con, codes, "referral_secondary", index_date, "referral_date"),
        latest_event(con, codes, "seen_secondary", index_date, "secondary_care_seen_date"),
        latest_event(con, codes, "referral_sac", index_date, "sac_referral_date"),
        latest_event(con, codes, "seen_sac", index_date, "sac_seen_date"),
    ]
    expr = base
    for part in parts:
        expr = expr.left_join(part, PID).drop(f"{PID}_right")
    # uncontrolled 6 months earlier (ISAC "flagged for 6 months without referral")
    earlier_date = window_start(index_date, config.optimisation_months) - dt.timedelta(days=1)
    earlier = uncontrolled_counts(con, codes, earlier_date, config)
    suffix = "_earlier"
    for part in earlier:
        cols = [c for c in part.columns if c != PID]
        part = part.rename({f"{c}{suffix}": c for c in cols})
        expr = expr.left_join(part, PID).drop(f"{PID}_right")
    fills = {c: 0 for c in COUNT_COLUMNS}
    earlier_counts = ("saba_count_12m", "ocs_courses_12m", "ed_attendances_12m", "admissions_12m")
    fills.update({f"{c}{suffix}": 0 for c in earlier_counts})
    fills.update(
        review_12m=False,
        action_plan_12m=False,
        inhaler_technique_12m=False,
        smoker=False,
        high_dose_ics=False,
        on_maintenance_ocs=False,
        prednisolone_mg_12m=0.0,
    )
    expr = expr.mutate(**{c: expr[c].fill_null(v) for c, v in fills.items()})
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
