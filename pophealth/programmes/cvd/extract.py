"""Per-patient variables for the CVD programme, built as Ibis expressions.

Every variable reads like the rule it implements (``latest value of X in the 60
months before the index date``) and runs unchanged on DuckDB and Spark: no SQL
strings, no engine names. :func:`cvd_records` left-joins them all onto the population
and returns one pandas row per patient, which the pure rule modules then read.

Dates: a look-back of *m* months covers ``index_date - m calendar months`` to
``index_date``, both ends inclusive (as CVDPREVENT's 12-month BP window).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import ibis
import ibis.expr.types as ir
import pandas as pd

from pophealth.codelists import Codelist, medication_codes
from pophealth.programmes.cvd.codelists import CvdCodelists
from pophealth.programmes.cvd.config import (
    CHOLESTEROL_MG_DL_PER_MMOL_L,
    DEFAULT_CONFIG,
    MG_DL_UNITS,
    CvdConfig,
)
from pophealth.programmes.cvd.inputs import SMOKING_CATEGORY_TO_QRISK
from pophealth.query import to_pandas


def months_before(index_date: dt.date, months: int) -> dt.date:
    """The first day of an ``months``-month look-back ending on ``index_date``."""
    return (pd.Timestamp(index_date) - pd.DateOffset(months=months)).date()


def _lit(d: dt.date) -> ir.Value:
    return ibis.literal(d, type="date")


#: Condition roles read as "coded on or before the index date" (0/1 and first date).
CONDITION_ROLES: tuple[str, ...] = (
    "ihd",
    "pad",
    "stroke",
    "tia",
    "heart_failure",
    "thromboembolism",
    "type1_diabetes",
    "type2_diabetes",
    "ckd_3_5",
    "severe_mental_illness",
    "rheumatoid_arthritis",
    "migraine",
    "sle",
    "erectile_dysfunction",
    "family_history_chd",
    "familial_hypercholesterolaemia",
    "anaemia",
    "bleeding",
    "statin_declined",
)

#: Registers (diagnosis later than any resolved code) → (diagnosis role, resolved role).
REGISTERS: dict[str, tuple[str, str]] = {
    "hypertension": ("hypertension", "hypertension_resolved"),
    "atrial_fibrillation": ("atrial_fibrillation", "atrial_fibrillation_resolved"),
}


@dataclass(frozen=True)
class ValueRule:
    """A "latest recorded value" variable: the role's code list, look-back (months; None
    = any time), plausible range, and how several values on the latest day combine.

    A value outside the range is set aside before the latest is chosen. ``mg_dl_factor``:
    a value whose unit is mg/dL (:data:`~.config.MG_DL_UNITS`) is divided by it first (so
    the range and the rules see mmol/L); None = the unit is not read. ``counted``: the
    extract also gives ``<name>_outside_n`` (values in the look-back set aside as outside
    the range) and ``<name>_mg_dl_n`` (values converted from mg/dL)."""

    role: str
    months: int | None
    low: float | None = None
    high: float | None = None
    same_day: str = "mean"  # mean | min | max
    mg_dl_factor: float | None = None
    counted: bool = False


def value_rules(config: CvdConfig) -> dict[str, ValueRule]:
    """Output column → rule, for every latest-value variable of the programme."""
    m = config.measurement_lookback_months

    def lipid(role: str, plausible: tuple[float, float], mg_dl: bool = True) -> ValueRule:
        factor = CHOLESTEROL_MG_DL_PER_MMOL_L if mg_dl else None
        return ValueRule(role, m, *plausible, mg_dl_factor=factor, counted=True)

    return {
        "sbp_qrisk": ValueRule("sbp", config.sbp_sd_lookback_months, config.bp.min_valid_sbp),
        "bmi_recorded": ValueRule("bmi", m),
        "height_raw": ValueRule("height", config.height_lookback_years * 12),
        "weight_kg": ValueRule("weight", m),
        "total_cholesterol": lipid("total_cholesterol", config.cholesterol_range),
        "hdl": lipid("hdl", config.hdl_range),
        "ldl": lipid("ldl", config.ldl_range),
        "non_hdl_recorded": lipid("non_hdl", config.non_hdl_range),
        # a ratio has no unit: a ratio "in mg/dL" is the same ratio
        "chol_hdl_ratio_recorded": lipid(
            "chol_hdl_ratio", config.chol_hdl_ratio_range, mg_dl=False
        ),
        "cigarettes_per_day": ValueRule("cigarettes_per_day", m, low=0),
        "haemoglobin": ValueRule("haemoglobin", 12),
        "egfr": ValueRule("egfr", 12),
    }


#: Medicine issue counts → (role, look-back attribute of CvdConfig).
ISSUE_RULES: dict[str, tuple[str, str]] = {
    "other_llt": ("other_lipid_lowering", "medication_lookback_months"),
    "doac": ("doacs", "anticoagulant_lookback_months"),
    "warfarin": ("warfarin", "anticoagulant_lookback_months"),
    "aspirin": ("aspirin", "anticoagulant_lookback_months"),
    "antiplatelet": ("antiplatelets", "anticoagulant_lookback_months"),
    "antihypertensive": ("antihypertensives", "medication_lookback_months"),
    "antipsychotic": ("atypical_antipsychotics", "antipsychotic_lookback_months"),
    "corticosteroid": ("corticosteroids", "corticosteroid_lookback_months"),
    "statin": ("statins", "medication_lookback_months"),
}

_NO_LOW, _NO_HIGH = -1e300, 1e300


def roles_read(config: CvdConfig) -> dict[str, str]:
    """Every role the programme reads → the table its list is matched against."""
    events = [
        *CONDITION_ROLES,
        *(r for pair in REGISTERS.values() for r in pair),
        *(rule.role for rule in value_rules(config).values()),
        "sbp",
        "dbp",
        "smoking",
    ]
    out = dict.fromkeys(events, "events")
    out.update({role: "medications" for role, _ in ISSUE_RULES.values()})
    return out


def smoking_rank(label: str) -> int | None:
    """The same-day order of a smoking status (the day's highest rank is its status):
    never 1 < ex 3 < current, amount unknown 4 < light 5 < moderate 7 < heavy 9. A specific
    current code (light, moderate, heavy) = 2 x its QRISK level + 1; a plain "current
    smoker" ranks just below the lightest of them, so that a same-day code with an amount
    always wins, and above "ex" (current and ex on one day is read as current)."""
    if label == "current":
        return 2 * min(SMOKING_CATEGORY_TO_QRISK[k] for k in ("light", "moderate", "heavy"))
    level = SMOKING_CATEGORY_TO_QRISK.get(label)
    return None if level is None else 2 * level + 1


def smoking_levels(cl: Codelist | None) -> dict[str, int]:
    """{code: rank} of a smoking code list (:func:`smoking_rank` of each code's status)."""
    if cl is None or not cl.categories:
        return {}
    column = next((c for c in ("category", "Category") if c in cl.categories), None)
    cats = {c: v.strip().lower() for c, v in cl.category_map(column).items()}
    amount = {}
    for col in ("intensity", "amount", "band"):
        if col in cl.categories:
            amount = {c: v.strip().lower() for c, v in cl.categories[col].items() if v}
            break
    out = {}
    for code, cat in cats.items():
        label = amount.get(code, cat) if cat == "current" else cat
        rank = smoking_rank(label)
        if rank is not None:
            out[code] = rank
    return out


def _role_table(rows: list[dict]) -> ir.Table:
    """The code → role tagging table (a small in-memory table joined to the events)."""
    frame = pd.DataFrame(
        rows
        or [
            dict(
                system="-",
                code="-",
                role="-",
                start=dt.date(1900, 1, 1),
                low=0.0,
                high=0.0,
                level=0.0,
                mg_dl_factor=None,
            )
        ],
        columns=["system", "code", "role", "start", "low", "high", "level", "mg_dl_factor"],
    )
    frame["start"] = pd.to_datetime(frame["start"]).dt.date
    return ibis.memtable(
        frame,
        schema={
            "system": "string",
            "code": "string",
            "role": "string",
            "start": "date",
            "low": "float64",
            "high": "float64",
            "level": "float64",
            "mg_dl_factor": "float64",
        },
    )


def _rows_for(
    cl: Codelist | None,
    role: str,
    start: dt.date,
    low=None,
    high=None,
    levels: dict[str, int] | None = None,
    mg_dl_factor: float | None = None,
    medicines: bool = False,
) -> list[dict]:
    """One role-table row per (system, code) of ``cl``; ``medicines``: as medication records
    are matched, dm+d and SNOMED CT ids under both systems
    (:func:`pophealth.codelists.medication_codes`)."""
    if cl is None:
        return []
    by_system = {s: cl.codes_in(s) for s in cl.systems}
    if medicines:
        by_system = medication_codes(by_system)
    rows = []
    for system in sorted(by_system):
        for code in sorted(by_system[system]):
            level = None if levels is None else levels.get(code)
            if levels is not None and level is None:
                continue
            rows.append(
                dict(
                    system=system,
                    code=code,
                    role=role,
                    start=start,
                    low=_NO_LOW if low is None else float(low),
                    high=_NO_HIGH if high is None else float(high),
                    level=None if level is None else float(level),
                    mg_dl_factor=mg_dl_factor,
                )
            )
    return rows


def _registered(backend, table: ir.Table) -> ir.Table:
    """``table`` (an in-memory table) as a view on ``backend``, so expressions built on it
    can be cached (materialised) on that engine."""
    import uuid

    return backend.create_view(f"_cvd_roles_{uuid.uuid4().hex[:12]}", table, overwrite=True)


def _tagged(table: ir.Table, roles: ir.Table, index_date: dt.date) -> ir.Table:
    """Rows of ``table`` whose code has a role, one row per (row, role), within each
    role's look-back (``start``..index date).

    For ``events`` (rows with a value): a value in mg/dL of a role with a
    ``mg_dl_factor`` is divided by it (``_mg_dl`` marks those rows; any other unit, or
    none, is taken as the unit the rules expect), and ``_ok`` says whether the value is
    missing or within the role's plausible range. Rows outside are kept (to be counted);
    readers filter on ``_ok``."""
    j = table.join(roles, [table.system == roles.system, table.code == roles.code])
    j = j.filter((j.date >= j.start) & (j.date <= _lit(index_date)))
    if "value" not in table.columns:
        return j
    unit = j.unit.lower().replace(" ", "")
    mg_dl = (j.mg_dl_factor.notnull() & unit.isin(list(MG_DL_UNITS))).fill_null(False)
    j = j.mutate(value=ibis.cases((mg_dl, j.value / j.mg_dl_factor), else_=j.value), _mg_dl=mg_dl)
    ok = j.value.isnull() | ((j.value >= j.low) & (j.value <= j.high))
    return j.mutate(_ok=ok.fill_null(False))


def _pivot(t: ir.Table, keys: list[str], cols: dict[str, ir.Value]) -> ir.Table:
    return t.group_by(keys).aggregate(**cols)


def event_variables(
    backend,
    index_date: dt.date,
    codelists: CvdCodelists,
    config: CvdConfig,
    cached: list | None = None,
) -> list[ir.Table]:
    """Every event-based variable in a few passes over ``events`` (tag rows by role once,
    then one aggregate for conditions, one for latest values, one for the latest day with
    both a total cholesterol and an HDL, one for the BP day, one for the SBP spread).
    Returns per-patient tables to left-join onto the population."""
    ever = dt.date(1900, 1, 1)
    c = codelists
    rows: list[dict] = []
    for role in (*CONDITION_ROLES, *(r for pair in REGISTERS.values() for r in pair)):
        rows += _rows_for(getattr(c, role), role, ever)
    rules = value_rules(config)
    for name, rule in rules.items():
        start = months_before(index_date, rule.months) if rule.months is not None else ever
        rows += _rows_for(
            getattr(c, rule.role),
            f"v:{name}",
            start,
            rule.low,
            rule.high,
            mg_dl_factor=rule.mg_dl_factor,
        )
    bp_start = months_before(index_date, config.bp_lookback_months)
    rows += _rows_for(c.sbp, "bp:sbp", bp_start, config.bp.min_valid_sbp)
    rows += _rows_for(c.dbp, "bp:dbp", bp_start, config.bp.min_valid_dbp)
    rows += _rows_for(
        c.sbp,
        "sd:sbp",
        months_before(index_date, config.sbp_sd_lookback_months),
        config.bp.min_valid_sbp,
    )
    rows += _rows_for(c.smoking, "smoking", ever, levels=smoking_levels(c.smoking))

    events = backend.table("events")
    # Materialised once: every branch below reads the (much smaller) tagged rows.
    tagged = _tagged(events, _registered(backend, _role_table(rows)), index_date).cache()
    if cached is not None:
        cached.append(tagged)
    t = tagged.filter(tagged._ok)  # values outside their plausible range set aside
    out: list[ir.Table] = []

    # values set aside (outside the plausible range) and converted from mg/dL, counted
    counted = [name for name, rule in rules.items() if rule.counted]
    if counted:
        kt = tagged.filter(tagged.role.isin([f"v:{name}" for name in counted]))
        kcols: dict[str, ir.Value] = {}
        for name in counted:
            mine = kt.role == f"v:{name}"
            kcols[f"{name}_outside_n"] = kt.count(where=mine & ~kt._ok)
            kcols[f"{name}_mg_dl_n"] = kt.count(where=mine & kt._mg_dl)
        out.append(_pivot(kt, ["patient_id"], kcols))

    # conditions and registers: latest date per role
    cond_roles = [*CONDITION_ROLES, *(r for pair in REGISTERS.values() for r in pair)]
    ct = t.filter(t.role.isin(cond_roles))
    last = ct.group_by(["patient_id", "role"]).aggregate(_d=ct.date.max())
    out.append(
        _pivot(
            last,
            ["patient_id"],
            {f"_last_{r}": last._d.max(where=last.role == r) for r in cond_roles},
        )
    )

    # latest values: per role and day combine, then the latest day per role
    vt = t.filter(t.role.startswith("v:") | (t.role == "smoking"))
    vt = vt.mutate(_v=ibis.cases((vt.role == "smoking", vt.level), else_=vt.value))
    vt = vt.filter(vt._v.notnull())
    daily = vt.group_by(["patient_id", "role", "date"]).aggregate(
        _mean=vt._v.mean(), _min=vt._v.min(), _max=vt._v.max()
    )
    out.append(_latest_tc_hdl_day(daily, rules))
    # the latest day per role: one row per day, so the day's values at the latest date
    # (an aggregate: cheaper than numbering every day of every role in a window). Here and
    # below, arg_max only ever reads values that are not null: DuckDB's skips a null value,
    # Spark's max_by returns it, so on a null the engines would differ.
    latest = daily.group_by(["patient_id", "role"]).aggregate(
        date=daily.date.max(),
        _mean=daily._mean.argmax(daily.date),
        _min=daily._min.argmax(daily.date),
        _max=daily._max.argmax(daily.date),
    )
    cols: dict[str, ir.Value] = {}
    for name, rule in rules.items():
        col = {"mean": latest._mean, "min": latest._min, "max": latest._max}[rule.same_day]
        cols[name] = col.max(where=latest.role == f"v:{name}")
        cols[f"{name}_date"] = latest.date.max(where=latest.role == f"v:{name}")
    cols["smoking_rank"] = latest._max.max(where=latest.role == "smoking")
    out.append(_pivot(latest, ["patient_id"], cols))

    # CVDPREVENT BP: latest day with both a valid SBP and DBP; the day's lowest of each
    bt = t.filter(t.role.startswith("bp:") & t.value.notnull())
    day = bt.group_by(["patient_id", "date"]).aggregate(
        _s=bt.value.min(where=bt.role == "bp:sbp"), _d=bt.value.min(where=bt.role == "bp:dbp")
    )
    day = day.filter(day._s.notnull() & day._d.notnull())
    out.append(
        day.group_by("patient_id").aggregate(
            bp_sbp=day._s.argmax(day.date), bp_dbp=day._d.argmax(day.date), bp_date=day.date.max()
        )
    )

    # SBP variability (QRISK3): sample SD and number of readings in 5 years
    st = t.filter((t.role == "sd:sbp") & t.value.notnull())
    out.append(
        st.group_by("patient_id").aggregate(
            sbp_sd=st.value.std(how="sample"), sbp_n=st.value.count()
        )
    )
    return out


def _latest_tc_hdl_day(daily: ir.Table, rules: dict[str, ValueRule]) -> ir.Table:
    """The latest day with both a total cholesterol and an HDL result (each combined
    over the day by its value rule), for a non-HDL derived from one sample:
    ``paired_tc``, ``paired_hdl``, ``paired_lipid_date``."""
    tc, hdl = rules["total_cholesterol"], rules["hdl"]
    both = daily.filter(daily.role.isin(["v:total_cholesterol", "v:hdl"]))
    pick = {"mean": both._mean, "min": both._min, "max": both._max}
    day = both.group_by(["patient_id", "date"]).aggregate(
        _tc=pick[tc.same_day].max(where=both.role == "v:total_cholesterol"),
        _hdl=pick[hdl.same_day].max(where=both.role == "v:hdl"),
    )
    day = day.filter(day._tc.notnull() & day._hdl.notnull())
    return day.group_by("patient_id").aggregate(
        paired_tc=day._tc.argmax(day.date),
        paired_hdl=day._hdl.argmax(day.date),
        paired_lipid_date=day.date.max(),
    )


def medication_variables(
    backend,
    index_date: dt.date,
    codelists: CvdCodelists,
    config: CvdConfig,
    cached: list | None = None,
) -> list[ir.Table]:
    """Issue counts and latest issue dates per medicine role in one pass over
    ``medications``; and the latest statin issue (code, date, structured daily dose)."""
    rows: list[dict] = []
    for name, (role, attr) in ISSUE_RULES.items():
        start = months_before(index_date, getattr(config, attr))
        rows += _rows_for(getattr(codelists, role), name, start, medicines=True)
    meds = backend.table("medications")
    t = _tagged(meds, _registered(backend, _role_table(rows)), index_date).cache()
    if cached is not None:
        cached.append(t)
    cols: dict[str, ir.Value] = {}
    for name in ISSUE_RULES:
        cols[f"{name}_n"] = t.count(where=t.role == name)
        cols[f"{name}_last"] = t.date.max(where=t.role == name)
    out = [_pivot(t, ["patient_id"], cols)]
    # The latest statin issue, one row: its code and its own structured dose. With several
    # issues that day, the highest code (reproducible, not a clinical choice) and, of that
    # code's issues, the highest recorded dose. Code and dose are never taken from two
    # different issues (simvastatin 40 mg and atorvastatin 80 mg on one day are not
    # "simvastatin 80 mg").
    s = t.filter(t.role == "statin")
    w = ibis.window(
        group_by=s.patient_id,
        order_by=[ibis.desc(s.date), ibis.desc(s.code), ibis.desc(s.daily_dose_mg.fill_null(-1.0))],
    )
    s = s.mutate(_rn=ibis.row_number().over(w))
    s = s.filter(s._rn == 0)
    out.append(
        s.select(
            "patient_id", statin_code=s.code, statin_date=s.date, statin_daily_mg=s.daily_dose_mg
        )
    )
    return out


def population(backend, index_date: dt.date, min_age: int = 18) -> ir.Table:
    """The programme population, written in the query layer: alive and registered with a
    practice on the index date, aged ``min_age`` or more; with demographics, practice,
    PCN and the deprivation of the address on that date (as an unexecuted Ibis table)."""
    from pophealth.query import Dataset, addresses, patients, registrations, run_dataset

    ds = Dataset()
    age = patients.age_on(index_date)
    ds.define_population(
        registrations.registered_on(index_date)
        & patients.is_alive_on(index_date)
        & (age >= min_age)
    )
    ds.sex = patients.sex
    ds.date_of_birth = patients.date_of_birth
    ds.age = age
    ds.ethnicity_5 = patients.ethnicity_5
    ds.ethnicity_16 = patients.ethnicity_16
    practice = registrations.practice_on(index_date)
    ds.practice_id = practice.practice_id
    ds.pcn_id = practice.pcn_id
    ds.pcn_name = practice.pcn_name
    area = addresses.area_on(index_date)
    ds.lsoa_code = area.lsoa_code
    ds.imd_decile = area.imd_decile
    ds.imd_quintile = area.imd_quintile
    ds.core20 = area.core20
    return run_dataset(backend, ds, index_date=index_date, output="ibis")


def cvd_records(
    backend,
    index_date: dt.date,
    codelists: CvdCodelists,
    config: CvdConfig = DEFAULT_CONFIG,
) -> pd.DataFrame:
    """One row per adult in the population with every variable the CVD rules read
    (executed once on the backend; pandas out)."""
    out = population(backend, index_date)
    cached: list[ir.Table] = []  # tagged rows materialised on the engine; released below
    parts = event_variables(backend, index_date, codelists, config, cached)
    parts += medication_variables(backend, index_date, codelists, config, cached)
    try:
        for part in parts:
            keep = [col for col in part.columns if col != "patient_id"]
            out = out.left_join(part, "patient_id").select(*out.columns, *keep)
        frame = to_pandas(out)
    finally:
        for table in cached:
            table.release()
    return tidy_records(frame, index_date, codelists, config)


def age_on(date_of_birth: pd.Series, index_date: dt.date) -> pd.Series:
    """Age in completed years on ``index_date`` (vectorised)."""
    dob = pd.to_datetime(date_of_birth)
    idx = pd.Timestamp(index_date)
    had_birthday = (dob.dt.month < idx.month) | (
        (dob.dt.month == idx.month) & (dob.dt.day <= idx.day)
    )
    return (idx.year - dob.dt.year - (~had_birthday).astype(int)).astype("Int64")


def age_at(date_of_birth: pd.Series, dates: pd.Series) -> pd.Series:
    """Age in completed years on each row's own date (vectorised; NA where either date
    is missing). A birthday on the date counts (aged 80 on the 80th birthday)."""
    dob = pd.to_datetime(pd.Series(date_of_birth)).reset_index(drop=True)
    on = pd.to_datetime(pd.Series(dates)).reset_index(drop=True)
    had_birthday = (dob.dt.month < on.dt.month) | (
        (dob.dt.month == on.dt.month) & (dob.dt.day <= on.dt.day)
    )
    years = on.dt.year - dob.dt.year - (~had_birthday).astype(int)
    out = years.where(dob.notna() & on.notna()).astype("Int64")
    out.index = pd.Series(dates).index
    return out


def tidy_records(
    frame: pd.DataFrame,
    index_date: dt.date,
    codelists: CvdCodelists,
    config: CvdConfig = DEFAULT_CONFIG,
) -> pd.DataFrame:
    """Types and derived record columns: 0/1 condition flags and registers, height in
    metres, smoking category, statin ingredient and daily dose, medicine flags."""
    out = frame.sort_values("patient_id", kind="stable").reset_index(drop=True)
    for col in [c for c in out.columns if c.endswith(("_date", "_last")) or c.startswith("_last_")]:
        out[col] = pd.to_datetime(out[col])
    out["date_of_birth"] = pd.to_datetime(out["date_of_birth"])
    out["age"] = pd.to_numeric(out["age"]).astype("Int64")
    for role in CONDITION_ROLES:
        out[role] = out.pop(f"_last_{role}").notna().astype(int)
    for name, (diag, resolved) in REGISTERS.items():
        d, r = out.pop(f"_last_{diag}"), out.pop(f"_last_{resolved}")
        on = d.notna() & (r.isna() | (d > r))
        out[name] = on.astype(int)
        out[f"{name}_date"] = d.where(on)
    for col in [c for c in out.columns if c.endswith("_n")]:
        out[col] = pd.to_numeric(out[col], errors="coerce").fillna(0).astype(int)
    # Height: recorded in metres or centimetres; values above 3 are taken as cm. Only an
    # adult height (measured at 18 or over) is used: the latest height is the one kept, so
    # when it was measured in childhood every earlier one was too, and BMI from a child's
    # height and an adult's weight would be far too high.
    h = pd.to_numeric(out.pop("height_raw"), errors="coerce")
    adult = age_at(out["date_of_birth"], out.pop("height_raw_date")) >= config.adult_height_min_age
    out["height_m"] = h.where(h <= 3, h / 100).where(adult.fillna(False).to_numpy(dtype=bool))
    # Smoking: back from the rank to the category.
    rank_to_cat = {smoking_rank(k): k for k in SMOKING_CATEGORY_TO_QRISK}
    out["smoking_category"] = pd.to_numeric(out.pop("smoking_rank")).map(rank_to_cat)
    # Statin: ingredient and tablet strength from the code list; daily dose from the
    # structured dose when recorded, else the strength (statins are taken once daily).
    statins = codelists.statins
    ingredient_map: dict[str, str] = {}
    strength_map: dict[str, float] = {}
    if statins is not None:
        for col in ("drug", "ingredient", "chemical"):
            if col in statins.categories:
                ingredient_map = {k: v.strip().lower() for k, v in statins.categories[col].items()}
                break
        if "strength_mg" in statins.attributes:
            strength_map = dict(statins.attributes["strength_mg"])
    out["statin_ingredient"] = out["statin_code"].map(ingredient_map)
    strength = out["statin_code"].map(strength_map).astype(float)
    mg = pd.to_numeric(out["statin_daily_mg"], errors="coerce")
    out["statin_daily_mg"] = mg.where(mg.notna(), strength)
    out["on_statin"] = (out["statin_n"] > 0).astype(int)
    out["on_other_llt"] = (out["other_llt_n"] > 0).astype(int)
    out["on_llt"] = ((out["on_statin"] == 1) | (out["on_other_llt"] == 1)).astype(int)
    out["anticoagulated"] = ((out["doac_n"] > 0) | (out["warfarin_n"] > 0)).astype(int)
    out["on_aspirin"] = (out["aspirin_n"] > 0).astype(int)
    out["on_antiplatelet"] = ((out["antiplatelet_n"] > 0) | (out["aspirin_n"] > 0)).astype(int)
    out["on_antihypertensive"] = (out["antihypertensive_n"] > 0).astype(int)
    out["atypical_antipsychotics"] = (
        out["antipsychotic_n"] >= config.antipsychotic_min_issues
    ).astype(int)
    out["corticosteroids"] = (out["corticosteroid_n"] >= config.corticosteroid_min_issues).astype(
        int
    )
    out["cvd"] = (out[["ihd", "pad", "stroke", "tia"]].max(axis=1) > 0).astype(int)
    return out
