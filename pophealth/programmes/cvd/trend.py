"""Monthly BP control per PCN: the CVDPREVENT rule at each month end, for SPC.

For each of the last ``months`` month ends (the last one = the index date's month end
or the index date itself), among people on the hypertension register on that date: the
share whose CVDPREVENT group is 0.1/0.2 (treated to target), using the latest valid BP
day in the 12 months before that date and the age on the day of that reading. One query
for all month ends (the tagged BP readings are paired with every month end and filtered
to its window), counted in the engine: only counts of people alike, per PCN and month,
reach pandas, where :func:`~pophealth.scores.bp.htn_risk_group` decides their group.

Population: the programme's population on the index date (currently registered adults),
followed back in time — a "current caseload" view, as practices see their list. People
who left or died earlier are not counted in earlier months [documented simplification].
Counts go through :func:`pophealth.disclosure.release_proportions` before the p-chart.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd

from pophealth import disclosure
from pophealth.programmes.cvd.codelists import CvdCodelists
from pophealth.programmes.cvd.config import DEFAULT_CONFIG, CvdConfig
from pophealth.programmes.cvd.extract import (
    _registered,
    _role_table,
    _rows_for,
    months_before,
    population,
)
from pophealth.query import to_pandas
from pophealth.scores.bp import BPTargets, htn_risk_group


def month_ends(index_date: dt.date, months: int) -> list[dt.date]:
    """The ``months`` month ends up to the index date (the last is the index date)."""
    last = pd.Timestamp(index_date)
    ends = [last]
    m = last.to_period("M")
    for k in range(1, months):
        ends.append((m - k).to_timestamp(how="end").normalize())
    return sorted(e.date() for e in ends)


def bp_control_by_month(
    backend,
    index_date: dt.date,
    codelists: CvdCodelists,
    *,
    months: int = 24,
    config: CvdConfig = DEFAULT_CONFIG,
) -> pd.DataFrame:
    """Per PCN and month end: ``numerator`` (treated to target) and ``denominator`` (on
    the register). Patient-level in, counts out — not yet disclosure-controlled."""
    ends = month_ends(index_date, months)
    earliest = months_before(ends[0], config.bp_lookback_months)
    far = dt.date(1900, 1, 1)
    c = codelists
    rows = (
        _rows_for(c.sbp, "bp:sbp", earliest, config.bp.min_valid_sbp)
        + _rows_for(c.dbp, "bp:dbp", earliest, config.bp.min_valid_dbp)
        + _rows_for(c.hypertension, "dx", far)
        + _rows_for(c.hypertension_resolved, "res", far)
    )
    roles = _registered(backend, _role_table(rows))
    ev = backend.table("events")
    t = ev.join(roles, [ev.system == roles.system, ev.code == roles.code])
    t = t.filter(
        (t.date >= t.start)
        & (t.date <= ibis.literal(index_date, type="date"))
        & (t.value.isnull() | ((t.value >= t.low) & (t.value <= t.high)))
    )
    periods = ibis.memtable(
        pd.DataFrame(
            {
                "month_end": pd.to_datetime(ends).date,
                "window_start": [months_before(e, config.bp_lookback_months) for e in ends],
            }
        ),
        schema={"month_end": "date", "window_start": "date"},
    )
    t = t.cache()  # the few tagged rows, read by both branches below
    tp = t.cross_join(_registered(backend, periods))
    tp = tp.filter(tp.date <= tp.month_end)

    reg = tp.filter(tp.role.isin(["dx", "res"]))
    reg = reg.group_by(["patient_id", "month_end"]).aggregate(
        _dx=reg.date.max(where=reg.role == "dx"), _res=reg.date.max(where=reg.role == "res")
    )
    reg = reg.filter(reg._dx.notnull() & (reg._res.isnull() | (reg._dx > reg._res)))

    bp = tp.filter(tp.role.startswith("bp:") & (tp.date >= tp.window_start) & tp.value.notnull())
    day = bp.group_by(["patient_id", "month_end", "date"]).aggregate(
        _s=bp.value.min(where=bp.role == "bp:sbp"), _d=bp.value.min(where=bp.role == "bp:dbp")
    )
    day = day.filter(day._s.notnull() & day._d.notnull())
    # the latest such day per person and month end (one row per day: its values there;
    # never null, where DuckDB's arg_max and Spark's max_by would differ)
    day = day.group_by(["patient_id", "month_end"]).aggregate(
        sbp=day._s.argmax(day.date), dbp=day._d.argmax(day.date), bp_date=day.date.max()
    )

    pop = population(backend, index_date).select("patient_id", "date_of_birth", "pcn_name")
    j = reg.select("patient_id", "month_end").join(pop, "patient_id")
    j = j.left_join(day, ["patient_id", "month_end"])
    # The risk group depends on the age and the reading only through comparisons with the
    # targets' thresholds, so each value is replaced in the engine by one that compares
    # the same way with every threshold, and people alike are counted together: a few
    # hundred rows per month reach pandas instead of one per person and month.
    targets = config.bp
    age = _age_years(j.date_of_birth, j.bp_date)
    j = j.select(
        "pcn_name",
        "month_end",
        age=_same_comparisons(age, _thresholds(targets, "age")),
        sbp=_same_comparisons(j.sbp, _thresholds(targets, "sbp")),
        dbp=_same_comparisons(j.dbp, _thresholds(targets, "dbp")),
    )
    j = j.group_by(["pcn_name", "month_end", "age", "sbp", "dbp"]).aggregate(people=j.count())
    try:
        frame = to_pandas(j)
    finally:
        t.release()
    if frame.empty:
        return pd.DataFrame(columns=["pcn_name", "month_end", "numerator", "denominator"])
    frame["month_end"] = pd.to_datetime(frame["month_end"])
    # age on the day of the reading used, as CVDPREVENT (and cvd.rules.hypertension)
    group = htn_risk_group(
        frame["age"],
        frame["sbp"],
        frame["dbp"],
        frame["sbp"].notna() & frame["dbp"].notna(),
        np.ones(len(frame), dtype=bool),
        nice_strict=config.nice_strict,
        targets=targets,
    )
    people = frame["people"].astype("int64")
    frame["numerator"] = people * pd.Series(group, index=frame.index).isin(["0.1", "0.2"])
    frame["denominator"] = people
    frame["pcn_name"] = frame["pcn_name"].fillna("Unknown")
    return (
        frame.groupby(["pcn_name", "month_end"])[["numerator", "denominator"]]
        .sum()
        .reset_index()
        .sort_values(["pcn_name", "month_end"])
        .reset_index(drop=True)
    )


def _thresholds(targets: BPTargets, kind: str) -> list[float]:
    """Every value of ``targets`` that :func:`htn_risk_group` may compare a reading's
    ``kind`` (``sbp``, ``dbp``, ``age``) with: each field whose name has that word (for
    ``age``, one naming neither ``sbp`` nor ``dbp``: ``target_sbp_older_age`` is a systolic
    value). Taking in a value it does not compare with is harmless; leaving one out would
    not be."""
    kinds = {"sbp", "dbp", "age"}
    return [
        float(getattr(targets, f.name))
        for f in dataclasses.fields(targets)
        if kind in (words := set(f.name.split("_")))
        and (kind != "age" or not words & (kinds - {"age"}))
    ]


def _age_years(date_of_birth: ir.Value, on: ir.Value) -> ir.Value:
    """Age in completed years on ``on`` (a birthday on the date counts; 29 February
    birthdays fall on 1 March in other years), as :func:`~.extract.age_at`."""
    years = on.year() - date_of_birth.year()
    before = (on.month() * 100 + on.day()) < (date_of_birth.month() * 100 + date_of_birth.day())
    return (years - before.cast("int64")).cast("int64")


def _same_comparisons(value: ir.Value, thresholds: list[float]) -> ir.Value:
    """``value`` replaced by one that compares the same way (``<``, ``<=``, ``==``, ``>=``,
    ``>``) with each of ``thresholds``: the threshold itself where equal to one, the
    midpoint between the two thresholds it lies between, or one beyond the lowest or
    highest. Null stays null."""
    ts = sorted(set(float(x) for x in thresholds))
    v = value.cast("float64")
    branches = [(v.isnull(), ibis.null().cast("float64")), (v < ts[0], ibis.literal(ts[0] - 1.0))]
    for lo, hi in itertools.pairwise(ts):
        branches.append((v == lo, ibis.literal(lo)))
        branches.append((v < hi, ibis.literal((lo + hi) / 2.0)))
    branches.append((v == ts[-1], ibis.literal(ts[-1])))
    return ibis.cases(*branches, else_=ibis.literal(ts[-1] + 1.0)).cast("float64")


def released_monthly(
    counts: pd.DataFrame, policy: disclosure.DisclosurePolicy = disclosure.DEFAULT_POLICY
) -> pd.DataFrame:
    """The monthly PCN counts released under the disclosure policy (each month's PCNs
    add up to the month's total); with no row, the same columns."""
    return disclosure.release_proportions(
        counts, "numerator", "denominator", policy=policy, by=["month_end", "pcn_name"],
        margins=["pcn_name"],
    )  # fmt: skip
