"""Spec: quantile measures — the median and other centiles of a per-patient number among a
denominator, by group, every interval in one pass, exact and the same on every engine,
through the one disclosure rule (Measures.define_quantile)."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from typer.testing import CliRunner

from pophealth.cli import app
from pophealth.codelists import Codelist
from pophealth.query import (
    Measures,
    QueryError,
    events,
    index_date,
    monthly,
    patients,
    registrations,
    run_measures,
)
from tests.spec.conftest import make_store

D = dt.date
SBP = Codelist.of("snomedct", ["271649006"], name="sbp")
CODE = "271649006"


def _reading(pid: str, value: float | None, date: dt.date = D(2025, 1, 10)) -> dict:
    return {"patient_id": pid, "date": date, "code": CODE, "value": value}


def _registered(pid: str, start: dt.date = D(2020, 1, 1)) -> dict:
    return {"patient_id": pid, "practice_id": "A1", "start_date": start}


def _by_sex_tables() -> dict:
    """Women: 110, 120, 120, 120, 150 (five, three tied at the middle). Men: 100, 120, 130,
    160 and two without a value (m4 has no reading, m5 one without a value). x1, not
    registered, has a reading of 999: outside ``among``, so in no quantile."""
    female = {"f0": 110, "f1": 120, "f2": 120, "f3": 120, "f4": 150}
    male = {"m0": 100, "m1": 120, "m2": 130, "m3": 160}
    readings = [_reading(p, float(v)) for p, v in {**female, **male}.items()]
    readings += [_reading("m5", None), _reading("x1", 999.0)]
    people = [{"patient_id": p, "sex": "female"} for p in female]
    people += [{"patient_id": p, "sex": "male"} for p in [*male, "m4", "m5"]]
    people.append({"patient_id": "x1", "sex": "male"})
    return {
        "patients": people,
        "registrations": [_registered(p["patient_id"]) for p in people if p["patient_id"] != "x1"],
        "events": readings,
    }


def _latest_sbp():
    return events.matching(SBP).in_last(months=3).last_for_patient().value


def test_median_and_90th_centile_by_group(engine, tmp_path):
    store = make_store(tmp_path, _by_sex_tables())
    m = Measures(intervals=monthly("2025-01-01", 1))
    m.define_quantile(
        "sbp",
        value=_latest_sbp(),
        among=registrations.registered_on(index_date),
        quantiles=(0.5, 0.9),
        group_by={"sex": patients.sex},
    )
    out = run_measures(store, m, engine=engine, disclosure=False)
    got = {
        (r.sex, r.statistic): (r.numerator, r.denominator, pytest.approx(r.value))
        for r in out.itertuples()
    }
    # Hyndman & Fan 7: the q centile of n values sits at rank (n − 1)q + 1
    assert got == {
        # odd n = 5: the 3rd value (a tie); 90th: rank 4.6, 120 + 0.6 × (150 − 120)
        ("female", "median"): (5, 5, 120),
        ("female", "90th centile"): (5, 5, 138),
        # even n = 4: halfway between 120 and 130; 90th: rank 3.7, 130 + 0.7 × 30. Two of
        # the six men have no value: left out, and counted (denominator − numerator)
        ("male", "median"): (4, 6, 125),
        ("male", "90th centile"): (4, 6, 151),
    }
    assert list(out["statistic"]) == ["median", "90th centile"] * 2
    # 4 or 5 values are too few for a 95% interval (the widest covers 1 − 2/2^5 < 95%)
    assert out["lower95_0cl"].isna().all() and out["upper99_8cl"].isna().all()
    assert set(out["method"]) == {
        "Hyndman & Fan 7; binomial ranks (Campbell & Gardner, exact); too few values for a "
        "95% or 99.8% interval"
    }
    assert out.attrs["evaluation"] == {"sbp": "single"}
    assert list(out.columns[:4]) == ["measure", "interval_start", "interval_end", "sex"]


def _monthly_tables() -> dict:
    """Readings in January to March; p5 registers in February."""
    dates = {
        "p1": [(D(2025, 1, 5), 100), (D(2025, 3, 2), 90)],
        "p2": [(D(2025, 1, 20), 140)],
        "p3": [(D(2025, 2, 1), 120), (D(2025, 2, 25), 125)],
        "p4": [(D(2025, 3, 31), 135)],
        "p5": [(D(2025, 2, 14), 150)],
        "p6": [(D(2025, 1, 31), 110), (D(2025, 3, 15), 115)],
    }
    readings = [_reading(p, float(v), d) for p, rows in dates.items() for d, v in rows]
    people = [{"patient_id": p, "sex": "female" if p in "p1 p3 p5" else "male"} for p in dates]
    regs = [_registered(p) for p in dates if p != "p5"] + [_registered("p5", D(2025, 2, 10))]
    return {"patients": people, "registrations": regs, "events": readings}


def _monthly_measures(intervals) -> Measures:
    reg = registrations.registered_on(index_date)
    m = Measures(intervals=intervals)
    m.define_quantile("latest_2m", value=_latest_sbp(), among=reg, quantiles=(0.25, 0.5))
    first = events.matching(SBP).in_interval().first_for_patient()
    m.define_quantile(
        "days_since_first",  # the index date as a value: each patient paired with each interval
        value=first.date.days_until(index_date),
        among=reg & first.date.is_not_null(),
        group_by={"sex": patients.sex},
    )
    return m


def test_every_interval_in_one_run_equals_each_interval_alone(engine, tmp_path):
    store = make_store(tmp_path, _monthly_tables())
    months = monthly("2025-01-01", 3)
    both = _monthly_measures(months)
    both.define_measure(
        "reading_in_month",
        numerator=events.matching(SBP).in_interval().exists_for_patient(),
        denominator=registrations.registered_on(index_date),
    )
    together = run_measures(store, both, engine=engine, disclosure=False)
    quantiles = together[together["measure"] != "reading_in_month"].reset_index(drop=True)
    alone = pd.concat(
        [
            run_measures(store, _monthly_measures([iv]), engine=engine, disclosure=False)
            for iv in months
        ],
        ignore_index=True,
    )
    alone = alone.sort_values(["measure", "interval_start"], kind="stable")
    quantiles = quantiles.sort_values(["measure", "interval_start"], kind="stable")
    pd.testing.assert_frame_equal(quantiles.reset_index(drop=True), alone.reset_index(drop=True))
    # by hand, the latest reading in the 3 months to each month's end:
    #   January: 100, 140, 110 (+ p3, p4 without one); February: 100, 140, 125, 110, 150
    #   (p5 now registered); March: 90, 140, 125, 135, 150, 115
    latest = quantiles[quantiles["measure"] == "latest_2m"]
    assert list(latest["numerator"]) == [3, 3, 5, 5, 6, 6]
    assert list(latest["denominator"]) == [5, 5, 6, 6, 6, 6]
    assert list(latest["value"]) == pytest.approx([105, 110, 110, 125, 117.5, 130])
    # days from the first reading in the month to the month's end, by sex
    days = quantiles[quantiles["measure"] == "days_since_first"]
    assert [(r.interval_start.month, r.sex, r.value) for r in days.itertuples()] == [
        (1, "female", 26),  # p1 on 5 Jan
        (1, "male", 5.5),  # p2 on 20 Jan (11 days), p6 on 31 Jan (0)
        (2, "female", 20.5),  # p3 on 1 Feb (27), p5 on 14 Feb (14); no man has one
        (3, "female", 29),  # p1 on 2 Mar
        (3, "male", 8),  # p4 on 31 Mar (0), p6 on 15 Mar (16)
    ]
    # the ordinary measure beside them: as it is alone, counted the way it is alone
    ordinary = Measures(intervals=months)
    ordinary.define_measure(
        "reading_in_month",
        numerator=events.matching(SBP).in_interval().exists_for_patient(),
        denominator=registrations.registered_on(index_date),
    )
    on_its_own = run_measures(store, ordinary, engine=engine, disclosure=False)
    beside = together[together["measure"] == "reading_in_month"].reset_index(drop=True)
    assert beside["sex"].isna().all()  # the quantile measure's breakdown, not this one's
    pd.testing.assert_frame_equal(beside.drop(columns="sex"), on_its_own)
    how = together.attrs["evaluation"]
    assert how["reading_in_month"] == on_its_own.attrs["evaluation"]["reading_in_month"]
    # the quantile measures share one pass, paired as the index date used as a value needs
    assert how["days_since_first"] == how["latest_2m"] == "paired"


def _values_tables(values: dict[str, float], late: str | None = None) -> dict:
    """One reading each; ``late`` registers on 10 February, the others long before."""
    return {
        "registrations": [
            _registered(p, D(2025, 2, 10) if p == late else D(2020, 1, 1)) for p in values
        ],
        "events": [_reading(p, v) for p, v in values.items()],
    }


def test_disclosure_withholds_a_group_of_7_and_centiles_near_its_extremes(engine, tmp_path):
    # 7 registered in January, 8 in February: values 10, 20, ..., 80
    values = {f"p{i}": 10.0 * i for i in range(1, 9)}
    store = make_store(tmp_path, _values_tables(values, late="p8"))
    m = Measures(intervals=monthly("2025-01-01", 2))
    m.define_quantile(
        "sbp",
        value=events.matching(SBP).in_last(months=12).last_for_patient().value,
        among=registrations.registered_on(index_date),
        quantiles=(0.5, 0.9),
    )
    out = run_measures(store, m, engine=engine)  # disclosure control: on by default
    jan, feb = out.iloc[:2], out.iloc[2:]
    # January: 7 patients, withheld as any count of 1-7, and with it every value and limit
    assert (
        jan[["numerator", "denominator", "value", "lower95_0cl", "upper95_0cl"]].isna().all().all()
    )
    assert jan["method"].isna().all()
    assert all("value and limits withheld with the numerator" in n for n in jan["disclosure_note"])
    assert list(jan["statistic"]) == ["median", "90th centile"]
    # February: 8, released as 10. The median lies between the 4th and 5th values, 3
    # patients beyond each: released, 45. Its 95% interval (exact binomial ranks for 8
    # values: the 1st and 8th) is the smallest and largest value: withheld, and said so.
    # Its 99.8% interval needs 10 values: withheld with the same note, which does not say
    # which (that there are too few values would say n is 8 or 9 of the released 10's
    # 8-12), nor does the method. The 90th centile, at rank 7.3, is read from the highest
    # value: withheld.
    median, p90 = feb.iloc[0], feb.iloc[1]
    assert (median.numerator, median.denominator, median.value) == (10, 10, 45)
    assert pd.isna(median.lower95_0cl) and pd.isna(median.upper95_0cl)
    assert median.disclosure_note == (
        "95% limits withheld: fewer than 3 patients rank beyond them, or too few values for "
        "them; 99.8% limits withheld: fewer than 3 patients rank beyond them, or too few "
        "values for them"
    )
    assert "too few values" not in median.method
    assert pd.isna(p90.value) and pd.isna(p90.method)
    assert p90.disclosure_note == (
        "value and limits withheld: fewer than 3 patients rank beyond the values it is read from"
    )
    assert out.attrs["evaluation"]["sbp"] in ("masks", "change_points")
    # without disclosure control (inside the secure environment only): exact, in full
    exact = run_measures(store, m, engine=engine, disclosure=False)
    assert list(exact["numerator"]) == [7, 7, 8, 8]
    assert list(exact["value"]) == pytest.approx([40, 64, 45, 73])  # 70 + 0.3 × 10
    # medians' 95% limits: the 1st and 7th of 7 values (98.4%), the 1st and 8th of 8
    # (99.2%); the 90th centile's need 36 values at least
    assert exact["lower95_0cl"].tolist()[::2] == [10, 10]
    assert exact["upper95_0cl"].tolist()[::2] == [70, 80]
    assert exact["lower95_0cl"][1::2].isna().all() and exact["upper95_0cl"][1::2].isna().all()
    assert set(exact["disclosure_note"]) == {"not disclosure-controlled"}


def test_limits_released_where_enough_patients_lie_beyond_them(tmp_path):
    # 40 values, 1 to 40 (DuckDB only: what is released is decided after the counting)
    store = make_store(tmp_path, _values_tables({f"p{i}": float(i) for i in range(1, 41)}))
    m = Measures(intervals=monthly("2025-01-01", 1))
    m.define_quantile(
        "sbp",
        value=_latest_sbp(),
        among=registrations.registered_on(index_date),
        quantiles=(0.5, 0.9),
    )
    median, p90 = run_measures(store, m).itertuples()
    # median: 20.5, released to the values' precision, whole numbers: 21 (the fraction of
    # a centile read between two values is its rank's, which would say n). For B ~
    # Binomial(40, ½), P(B ≤ 13) = 0.0192 ≤ 0.025 < P(B ≤ 14) = 0.0403,
    # so the 95% limits are the 14th and 27th values; at 99.8%, P(B ≤ 9) = 0.00034 ≤ 0.001 <
    # P(B ≤ 10) = 0.00111: the 10th and 31st. Each has 9 or more patients beyond it.
    assert (median.numerator, median.value) == (40, 21)
    assert (median.lower95_0cl, median.upper95_0cl) == (14, 27)
    assert (median.lower99_8cl, median.upper99_8cl) == (10, 31)
    assert median.disclosure_note is None
    # 90th centile: rank 36.1, 36.1, with 3 patients above the 37th value: released (as
    # 36, to the values' precision). Its 95% upper limit would be the 40th, the largest
    # value: the limits are withheld.
    assert p90.value == 36
    assert pd.isna(p90.lower95_0cl) and pd.isna(p90.upper95_0cl)
    assert p90.disclosure_note.startswith("95% limits withheld")


def test_a_group_withheld_to_protect_another_loses_its_quantiles_too(tmp_path):
    # women 7, men 9: the women's count is withheld, and the men's with it (their sum could
    # be published elsewhere); the men's median would be safe on its own, but is withheld
    values = {f"f{i}": 100.0 + i for i in range(7)} | {f"m{i}": 120.0 + i for i in range(9)}
    tables = _values_tables(values)
    tables["patients"] = [
        {"patient_id": p, "sex": "female" if p[0] == "f" else "male"} for p in values
    ]
    store = make_store(tmp_path, tables)
    m = Measures(intervals=monthly("2025-01-01", 1))
    m.define_quantile(
        "sbp",
        value=_latest_sbp(),
        among=registrations.registered_on(index_date),
        group_by={"sex": patients.sex},
    )
    out = run_measures(store, m)
    assert list(out["sex"]) == ["female", "male"]
    assert out["numerator"].isna().all() and out["value"].isna().all()
    assert "numerator primary" in out["disclosure_note"][0]
    # (the men's denominator protects the women's 7 registered; their numerator goes with it,
    # as a proportion's does)
    assert "numerator with denominator; denominator secondary" in out["disclosure_note"][1]
    assert run_measures(store, m, disclosure=False)["value"].tolist() == [103, 124]


DEFINITION = """\
from pophealth.codelists import Codelist
from pophealth.query import Measures, events, index_date, monthly, patients, registrations

SBP = Codelist.of("snomedct", ["271649006"], name="sbp")
registered = registrations.registered_on(index_date)
measures = Measures(intervals=monthly("2025-01-01", 1))
measures.define_quantile(
    "sbp",
    value=events.matching(SBP).in_last(months=3).last_for_patient().value,
    among=registered,
    quantiles=(0.5, 0.9),
    group_by={"sex": patients.sex},
)
measures.define_measure(
    "sbp_recorded", numerator=events.matching(SBP).exists_for_patient(), denominator=registered
)
"""


def test_pophealth_measures_runs_a_definition_file_with_a_quantile_measure(engine, tmp_path):
    store = make_store(tmp_path, _by_sex_tables())
    path = tmp_path / "sbp.py"
    path.write_text(DEFINITION)
    out = tmp_path / "out.csv"
    args = ["measures", str(path), "--store", str(store.path), "--output", str(out)]
    result = CliRunner().invoke(app, [*args, "--engine", engine, "--no-disclosure"])
    assert result.exit_code == 0, result.output
    assert "5 rows: 2 measures over 1 interval" in " ".join(result.output.split())
    got = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(got.columns[:4]) == ["measure", "interval_start", "interval_end", "sex"]
    rows = [
        (r.measure, r.sex, r.statistic, r.numerator, r.denominator, r.value)
        for r in got.itertuples()
    ]
    assert rows == [
        ("sbp", "female", "median", "5", "5", "120"),
        ("sbp", "female", "90th centile", "5", "5", "138"),
        ("sbp", "male", "median", "4", "6", "125"),
        ("sbp", "male", "90th centile", "4", "6", "151"),
        ("sbp_recorded", "", "percentage", "10", "11", rows[-1][-1]),
    ]
    assert float(rows[-1][-1]) == pytest.approx(1000 / 11)
    assert set(got["lower95_0cl"][:4]) == {""}  # 4 or 5 values: no 95% interval
    # disclosure control by default: the quantiles' counts are all 1-7, so each quantile is
    # withheld, and the file says why
    result = CliRunner().invoke(app, [*args, "--engine", engine])
    assert result.exit_code == 0, result.output
    got = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(got["value"][:4]) == [""] * 4
    assert all("withheld with the numerator" in n for n in got["disclosure_note"][:4])
    assert list(got["statistic"][:4]) == ["median", "90th centile"] * 2


def _refusal(**kw) -> str:
    m = Measures(intervals=monthly("2025-01-01", 2))
    kw.setdefault("value", _latest_sbp())
    kw.setdefault("among", registrations.registered_on(index_date))
    with pytest.raises(QueryError) as exc:
        m.define_quantile("wait", **kw)
    return str(exc.value)


def test_refusals_name_the_measure_and_say_what_was_expected():
    reading = events.matching(SBP).last_for_patient()
    assert _refusal(value=reading.date) == (
        "measure 'wait': the value must be a number per patient (minutes, days, a count), not "
        "a date; the time from one date to another is a number: later - earlier or "
        "earlier.days_until(later) in days, minutes_between(start, end) in minutes"
    )
    assert _refusal(value=patients.sex).endswith("not a string")
    assert _refusal(value=events.matching(SBP).exists_for_patient()).endswith("not True/False")
    assert "many rows per patient" in _refusal(value=events.matching(SBP))
    assert _refusal(among=events.count_for_patient()) == (
        "measure 'wait': among must be True/False (the patients whose values the quantiles "
        "are of), not an int"
    )
    assert _refusal(among=None) == (
        "measure 'wait': needs among=, the patients whose values the quantiles are of "
        "(True/False; among=True for everyone)"
    )
    assert _refusal(quantiles=90) == (
        "measure 'wait': quantile 90 is not strictly between 0 and 1 (0.5 is the median, 0.9 "
        "the 90th centile; the 90th centile is 0.9)"
    )
    for q in (0, 1, 1.5, -0.1, (0.5, 1.0)):
        assert "is not strictly between 0 and 1" in _refusal(quantiles=q), q
    for q in ("0.5", True, (0.5, None)):
        assert "is not a number between 0 and 1" in _refusal(quantiles=q), q
    assert _refusal(quantiles=(0.9, 0.9)) == "measure 'wait': quantile 0.9 is listed twice"
    assert _refusal(quantiles=()) == (
        "measure 'wait': needs at least one quantile (0.5 is the median)"
    )
    assert "cannot name a breakdown" in _refusal(group_by={"value": patients.sex})
    assert "group_by needs names for its breakdowns" in _refusal(group_by=[patients.sex])
    with pytest.raises(QueryError, match=r"measure 7: a measure's name must be text"):
        Measures(intervals=monthly("2025-01-01", 1)).define_quantile(
            7, value=_latest_sbp(), among=patients.sex.is_not_null()
        )
    m = Measures()
    with pytest.raises(QueryError, match=r"measure 'wait': needs intervals"):
        m.define_quantile("wait", value=_latest_sbp(), among=patients.sex.is_not_null())
    m = Measures(intervals=monthly("2025-01-01", 1))
    m.define_measure(
        "wait", numerator=patients.sex.is_not_null(), denominator=patients.sex.is_not_null()
    )
    with pytest.raises(QueryError, match=r"measure 'wait' is defined twice"):
        m.define_quantile("wait", value=_latest_sbp(), among=patients.sex.is_not_null())


def test_among_defaults_to_the_default_denominator():
    m = Measures(intervals=monthly("2025-01-01", 1))
    registered = registrations.registered_on(index_date)
    m.define_defaults(denominator=registered, group_by={"sex": patients.sex})
    q = m.define_quantile("sbp", value=_latest_sbp(), quantiles=0.5)
    assert q.among.key == registered.key and q.quantiles == (0.5,)
    assert q.breakdown == ["sex"] and q.kind == "quantile"


def test_nobody_among_gives_no_row_and_nobody_with_a_value_no_value(tmp_path):
    tables = _values_tables({"p1": None})  # registered, with a reading that has no value
    store = make_store(tmp_path, tables)
    for among, rows in ((patients.date_of_birth > D(2100, 1, 1), 0), (None, 1)):
        m = Measures(intervals=monthly("2025-01-01", 1))
        m.define_defaults(denominator=registrations.registered_on(index_date))
        m.define_quantile("sbp", value=_latest_sbp(), among=among, group_by={"sex": patients.sex})
        for disclosure in (True, False):
            out = run_measures(store, m, disclosure=disclosure)
            assert len(out) == rows and "sex" in out.columns, (among, disclosure)
    exact = run_measures(store, m, disclosure=False).iloc[0]
    assert (exact.numerator, exact.denominator, exact.statistic) == (0, 1, "median")
    assert pd.isna(exact.value) and exact.method is None
