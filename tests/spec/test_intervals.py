"""Spec: measures over many intervals are evaluated at each patient's change points (the
intervals where one of their values can change) and give the counts of one run per
interval — at window edges, month ends, 29 February birthdays, registrations and addresses
that change mid-series, values that flip on and off and counts that cross a threshold."""

from __future__ import annotations

import datetime as dt

import pytest

from pophealth.codelists import Codelist
from pophealth.query import (
    Measures,
    addresses,
    case,
    events,
    index_date,
    interval_start,
    medications,
    monthly,
    months,
    patients,
    registrations,
    run_measures,
)
from pophealth.query.timeline import Timeline
from tests.spec.conftest import ENGINES, make_store
from tests.spec.test_intervals_differential import check

D = dt.date
SBP = Codelist.of("snomedct", ["271649006"], name="sbp")
SABA = Codelist.of("dmd", ["39113611000001102"], name="saba")
JAN_APR_2024 = monthly("2024-01-01", 4)  # ends 31 Jan, 29 Feb (leap year), 31 Mar, 30 Apr
#: Spark runs the test that covers every kind of runs (a Spark query is slow to start)
DUCKDB_ONLY = pytest.mark.parametrize("engine", ENGINES[:1])


@pytest.fixture(params=["masks", "change_points"])
def way(request, monkeypatch):
    """Each test counts both ways: by interval masks (where they apply) and at change
    points."""
    monkeypatch.setattr(Timeline, "use_masks", request.param == "masks")
    return request.param


def _expected(way, m):
    """The way a run of ``m`` should take."""
    masks = all(x.numerator.dtype == "bool" and x.denominator.dtype == "bool" for x in m)
    return "masks" if way == "masks" and masks else "change_points"


def _run(engine, store, m):
    out = run_measures(store, m, engine=engine, disclosure=False)
    got = {}
    for r in out.to_dict("records"):
        groups = tuple(r[c] for c in out.columns if c.startswith("g_") and r[c] is not None)
        got[(r["measure"], r["interval_end"], *groups)] = (r["numerator"], r["denominator"])
    return out.attrs["evaluation"], got


def _registered(pids):
    return [{"patient_id": p, "practice_id": "A1", "start_date": D(2000, 1, 1)} for p in pids]


def _bp(pid, day, value=130.0):
    return {"patient_id": pid, "date": day, "code": "271649006", "value": value}


@DUCKDB_ONLY
def test_window_edges_and_month_ends(engine, way, tmp_path):
    store = make_store(
        tmp_path,
        {
            "registrations": _registered(["a", "b", "c"]),
            "events": [_bp("a", D(2023, 3, 1)), _bp("b", D(2023, 2, 28)), _bp("c", D(2023, 4, 1))],
        },
    )
    bp = events.matching(SBP)
    m = Measures(intervals=JAN_APR_2024)
    m.define_defaults(denominator=registrations.registered_on(index_date))
    # 29 Feb 2024 - 12 months = 28 Feb 2023: the window (28 Feb 2023, 29 Feb 2024] holds
    # 1 March 2023 and not 28 February
    m.define_measure("in_12m", numerator=bp.in_last(months=12).exists_for_patient())
    # 365 days before 29 Feb 2024 is 1 Mar 2023 (a leap day between): 1 March is outside
    m.define_measure("in_365d", numerator=bp.in_last(days=365).exists_for_patient())
    # from the start of the month 13 months back to the interval's end
    m.define_measure(
        "from_13m",
        numerator=bp.between(interval_start - months(13), index_date).exists_for_patient(),
    )
    paths, got = _run(engine, store, m)
    assert set(paths.values()) == {_expected(way, m)}
    ends = [e for _, e in JAN_APR_2024]
    assert [got[("in_12m", e)][0] for e in ends] == [3, 2, 1, 0]
    assert [got[("in_365d", e)][0] for e in ends] == [3, 1, 0, 0]
    # interval start - 13 months: 1 Dec 2022, 1 Jan 2023, 1 Feb 2023, 1 Mar 2023
    assert [got[("from_13m", e)][0] for e in ends] == [3, 3, 3, 2]
    assert all(got[("in_12m", e)][1] == 3 for e in ends)
    if engine == "duckdb":
        check(store, JAN_APR_2024, _spec_of(m), "duckdb")


def _spec_of(m):
    return [(x.numerator, x.denominator, list(x.group_by.values()), False) for x in m]


def test_birthday_on_29_february(engine, way, tmp_path):
    born = {"x29": D(2008, 2, 29), "x28": D(2008, 2, 28), "x01": D(2008, 3, 1)}
    store = make_store(
        tmp_path,
        {
            "patients": [{"patient_id": p, "date_of_birth": d} for p, d in born.items()],
            "registrations": _registered(born),
        },
    )
    days = [D(2026, 2, 26) + dt.timedelta(days=i) for i in range(5)]  # 26 Feb .. 2 Mar 2026
    ivs = [(d, d) for d in days]
    m = Measures(intervals=ivs)
    m.define_measure(
        "adults",
        numerator=registrations.registered_on(index_date),
        denominator=patients.age_on(index_date) >= 18,
    )
    m.define_measure(
        "by_band",
        numerator=registrations.registered_on(index_date),
        denominator=patients.is_alive_on(index_date),
        group_by={"g_band": patients.age_band_on(index_date, bands=(0, 18))},
    )
    paths, got = _run(engine, store, m)
    # a breakdown by age band is a case over age thresholds, which flip on birthdays
    assert set(paths.values()) == {_expected(way, m)}
    # 18 on 28 Feb (x28), on 1 March for the 29 February birthday (x29) and for x01
    assert [got.get(("adults", d), (0, 0))[1] for d in days] == [0, 0, 1, 3, 3]
    assert [got.get(("by_band", d, "18+"), (0, 0))[1] for d in days] == [0, 0, 1, 3, 3]
    assert [got.get(("by_band", d, "0-17"), (0, 0))[1] for d in days] == [3, 3, 2, 0, 0]
    if engine == "duckdb":
        check(store, ivs, _spec_of(m), "duckdb")


@DUCKDB_ONLY
def test_registration_and_address_change_mid_series(engine, way, tmp_path):
    store = make_store(
        tmp_path,
        {
            "registrations": [
                # ends mid-February, back in March with another practice
                {
                    "patient_id": "r",
                    "practice_id": "A1",
                    "start_date": D(2020, 1, 1),
                    "end_date": D(2024, 2, 15),
                },
                {"patient_id": "r", "practice_id": "B2", "start_date": D(2024, 3, 10)},
                {"patient_id": "s", "practice_id": "A1", "start_date": D(2020, 1, 1)},
            ],
            "addresses": [
                # s moves on 10 February from an IMD quintile 1 area to a quintile 4 one
                {"patient_id": "s", "start_date": D(2019, 1, 1), "lsoa_code": "X01000001"},
                {"patient_id": "s", "start_date": D(2024, 2, 10), "lsoa_code": "X01000002"},
                {"patient_id": "r", "start_date": D(2019, 1, 1), "lsoa_code": "X01000003"},
            ],
            "areas": [
                {"lsoa_code": "X01000001", "imd_quintile": 1},
                {"lsoa_code": "X01000002", "imd_quintile": 4},
            ],
        },
    )
    m = Measures(intervals=JAN_APR_2024)
    area = addresses.area_on(index_date)
    m.define_measure(
        "by_practice",
        numerator=area.in_areas_table,
        denominator=registrations.registered_on(index_date),
        group_by={"g_practice": registrations.practice_on(index_date).practice_id},
    )
    m.define_measure(
        "by_imd",
        numerator=registrations.registered_on(index_date),
        denominator=patients.is_alive_on(index_date),
        group_by={"g_imd": area.group("imd_quintile")},
    )
    paths, got = _run(engine, store, m)
    assert set(paths.values()) == {_expected(way, m)}
    jan, feb, mar, apr = (e for _, e in JAN_APR_2024)
    assert got[("by_practice", jan, "A1")] == (1, 2)
    assert got[("by_practice", feb, "A1")] == (1, 1)  # r left on 15 February
    assert ("by_practice", feb, "B2") not in got
    assert got[("by_practice", mar, "B2")] == (0, 1)  # r back, with B2 (area not listed)
    assert got[("by_imd", jan, "1")] == (1, 1)
    assert got[("by_imd", feb, "4")] == (1, 1)  # s moved on 10 February
    assert ("by_imd", feb, "1") not in got
    assert got[("by_imd", feb, "unknown")] == (0, 1)  # r: not registered in February
    assert got[("by_imd", apr, "unknown")] == (1, 1)
    if engine == "duckdb":
        check(store, JAN_APR_2024, _spec_of(m), "duckdb")


def test_values_flip_on_and_off_and_counts_cross_a_threshold(engine, way, tmp_path):
    issues = [D(2024, 1, 10), D(2024, 2, 10), D(2024, 3, 10), D(2024, 5, 20)]
    store = make_store(
        tmp_path,
        {
            "registrations": _registered(["p"]),
            "events": [
                _bp("p", D(2024, 1, 15), 150.0),
                _bp("p", D(2024, 4, 20), 120.0),
                {"patient_id": "p", "date": D(2024, 3, 1), "code": "72313002", "value": 130.0},
            ],
            "medications": [
                {"patient_id": "p", "date": d, "code": "39113611000001102"} for d in issues
            ],
        },
    )
    ivs = monthly("2024-01-01", 6)
    bp = events.matching(SBP)
    saba_3m = medications.matching(SABA).in_last(months=3).count_for_patient()
    m = Measures(intervals=ivs)
    m.define_defaults(denominator=registrations.registered_on(index_date))
    m.define_measure("bp_2m", numerator=bp.in_last(months=2).exists_for_patient())
    m.define_measure("saba_ge2", numerator=saba_3m >= 2)
    m.define_measure("saba_count", numerator=saba_3m)
    m.define_measure(
        "bp_high",
        numerator=bp.in_last(months=12).last_day_for_patient().value >= 140,
    )
    # the same window on another code (one pass with bp_high's days): 130 on 1 March
    other = events.where(events.code == "72313002").in_last(months=12)
    m.define_measure("other_low", numerator=other.last_day_for_patient().value < 140)
    # counted in the same pass as bp_2m's "has a reading" (the same window, other rows)
    other_2m = events.where(events.code == "72313002").in_last(months=2)
    m.define_measure("other_2m", numerator=other_2m.count_for_patient())
    # first/last rows and lookups: the practice, the area (no address: "unknown")
    m.define_measure(
        "by_place",
        numerator=bp.in_last(months=2).exists_for_patient(),
        group_by={
            "g_practice": registrations.practice_on(index_date).practice_id,
            "g_imd": addresses.area_on(index_date).group("imd_quintile"),
        },
    )
    paths, got = _run(engine, store, m)
    assert set(paths.values()) == {_expected(way, m)}
    ends = [e for _, e in ivs]
    # on in January and February, off in March, on again in April and May, off in June
    assert [got[("bp_2m", e)][0] for e in ends] == [1, 1, 0, 1, 1, 0]
    # issues in the 3 months to each month end: 1, 2, 3, 2, 2, 1
    assert [got[("saba_count", e)][0] for e in ends] == [1, 2, 3, 2, 2, 1]
    assert [got[("saba_ge2", e)][0] for e in ends] == [0, 1, 1, 1, 1, 0]
    assert [got[("bp_high", e)][0] for e in ends] == [1, 1, 1, 0, 0, 0]
    assert [got[("other_low", e)][0] for e in ends] == [0, 0, 1, 1, 1, 1]
    assert [got[("other_2m", e)][0] for e in ends] == [0, 0, 1, 1, 0, 0]
    assert [got[("by_place", e, "A1", "unknown")][0] for e in ends] == [1, 1, 0, 1, 1, 0]
    if engine == "duckdb":
        check(store, ivs, _spec_of(m), "duckdb")


def test_what_cannot_be_proved_falls_back_to_pairing(tmp_path):
    store = make_store(
        tmp_path,
        {"registrations": _registered(["p"]), "events": [_bp("p", D(2024, 1, 15))]},
    )
    last_bp = events.matching(SBP).last_for_patient().date
    cases = {
        # the index date used as a value changes in every interval
        "days_since": (last_bp.days_until(index_date) < 40, JAN_APR_2024, "paired"),
        # one interval holds the others
        "overlap": (
            last_bp.is_not_null(),
            [*JAN_APR_2024, (D(2024, 1, 1), D(2024, 4, 30))],
            "paired",
        ),
        # unsorted intervals are sorted first
        "unsorted": (last_bp.is_not_null(), list(reversed(JAN_APR_2024)), "masks"),
    }
    for name, (num, ivs, path) in cases.items():
        m = Measures(intervals=ivs)
        m.define_measure(name, numerator=num, denominator=registrations.registered_on(index_date))
        assert check(store, ivs, _spec_of(m), "duckdb") == path, name


@pytest.mark.parametrize("n", [4, 24])
def test_one_row_per_interval_and_group_with_a_denominator(tmp_path, n):
    store = make_store(
        tmp_path,
        {
            "registrations": [
                {"patient_id": "p", "practice_id": "A1", "start_date": D(2024, 3, 5)},
            ],
        },
    )
    m = Measures(intervals=monthly("2024-01-01", n))
    m.define_measure(
        "reg",
        numerator=patients.sex == "female",
        denominator=registrations.registered_on(index_date),
    )
    out = run_measures(store, m, disclosure=False)
    assert out.attrs["evaluation"] == {"reg": "masks"}
    assert len(out) == n - 2  # none for January and February
    assert out["interval_end"].iloc[0] == D(2024, 3, 31)
    assert (out["denominator"] == 1).all()


@DUCKDB_ONLY
def test_last_and_first_day_among_days_sharing_a_run(engine, way, tmp_path):
    # days of one month enter (and leave) a 12-month window at the same interval: the last
    # day is the latest of them (25 Feb, lowest value that day 150, not 10 Feb's 130), the
    # first the earliest (5 Mar 2023's 150 until both March days leave at the end of March)
    store = make_store(
        tmp_path,
        {
            "registrations": _registered(["a", "b"]),
            "events": [
                _bp("a", D(2024, 2, 25), 160.0),
                _bp("a", D(2023, 3, 20), 135.0),
                _bp("a", D(2024, 2, 10), 130.0),
                _bp("a", D(2024, 2, 25), 150.0),
                _bp("a", D(2023, 3, 5), 150.0),
            ],
        },
    )
    bp = events.matching(SBP).in_last(months=12)
    m = Measures(intervals=JAN_APR_2024)
    m.define_defaults(denominator=registrations.registered_on(index_date))
    m.define_measure("last_high", numerator=bp.last_day_for_patient(rule="min").value >= 140)
    m.define_measure("first_high", numerator=bp.first_day_for_patient().value >= 140)
    paths, got = _run(engine, store, m)
    assert set(paths.values()) == {_expected(way, m)}
    ends = [e for _, e in JAN_APR_2024]
    assert [got[("last_high", e)] for e in ends] == [(0, 2), (1, 2), (1, 2), (1, 2)]
    assert [got[("first_high", e)] for e in ends] == [(1, 2), (1, 2), (0, 2), (0, 2)]
    check(store, JAN_APR_2024, _spec_of(m), "duckdb")


@pytest.mark.parametrize("engine", ENGINES)
def test_a_row_in_two_code_lists_counts_for_both(engine, way, tmp_path):
    """Frames of one table read in one pass by joining the rows with each list's codes: a
    code in two lists puts its row in both, a code of another system in neither."""
    both = Codelist.of("snomedct", ["271649006"], name="both")
    wider = Codelist(
        name="wider",
        system="snomedct",
        codes={"snomedct": frozenset({"271649006", "72313002"}), "loinc": frozenset({"8480-6"})},
    )
    rows = [
        _bp("p", D(2024, 1, 15), 150.0),  # in both lists
        {"patient_id": "p", "date": D(2024, 2, 5), "code": "72313002", "value": 120.0},
        {"patient_id": "p", "date": D(2024, 3, 5), "system": "loinc", "code": "8480-6"},
        # the code of a list under another system: in neither list
        {"patient_id": "p", "date": D(2024, 3, 6), "system": "loinc", "code": "271649006"},
    ]
    store = make_store(tmp_path, {"registrations": _registered(["p"]), "events": rows})
    ivs = monthly("2024-01-01", 4)
    m = Measures(intervals=ivs)
    m.define_defaults(denominator=registrations.registered_on(index_date))
    m.define_measure(
        "n_both", numerator=events.matching(both).in_last(months=2).count_for_patient()
    )
    m.define_measure(
        "n_wider", numerator=events.matching(wider).in_last(months=2).count_for_patient()
    )
    paths, got = _run(engine, store, m)
    assert set(paths.values()) == {_expected(way, m)}
    ends = [e for _, e in ivs]
    assert [got[("n_both", e)][0] for e in ends] == [1, 1, 0, 0]
    assert [got[("n_wider", e)][0] for e in ends] == [1, 2, 2, 1]
    if engine == "duckdb":
        check(store, ivs, _spec_of(m), "duckdb")


def test_counts_compared_with_whole_numbers(engine, way, tmp_path):
    """A count of rows in a window on the date compared with a whole number by each
    operator: masks read "at least c rows" straight from the rows in window order."""
    issues = [D(2024, 1, 10), D(2024, 2, 10), D(2024, 3, 10), D(2024, 5, 20)]
    store = make_store(
        tmp_path,
        {
            "registrations": _registered(["p"]),
            "medications": [
                {"patient_id": "p", "date": d, "code": "39113611000001102"} for d in issues
            ],
        },
    )
    ivs = monthly("2024-01-01", 6)
    n = medications.matching(SABA).in_last(months=3).count_for_patient()  # 1 2 3 2 2 1
    m = Measures(intervals=ivs)
    m.define_defaults(denominator=registrations.registered_on(index_date))
    tests = {
        "eq2": (n == 2, [0, 1, 0, 1, 1, 0]),
        "lt2": (n < 2, [1, 0, 0, 0, 0, 1]),
        "gt1": (n > 1, [0, 1, 1, 1, 1, 0]),
        "le1": (n <= 1, [1, 0, 0, 0, 0, 1]),
        "ge0": (n >= 0, [1, 1, 1, 1, 1, 1]),  # always true
        "ne0": (n != 0, [1, 1, 1, 1, 1, 1]),
        "ge3": (n >= 3, [0, 0, 1, 0, 0, 0]),
    }
    for name, (condition, _) in tests.items():
        m.define_measure(name, numerator=condition)
    paths, got = _run(engine, store, m)
    assert set(paths.values()) == {_expected(way, m)}
    ends = [e for _, e in ivs]
    for name, (_, expected) in tests.items():
        assert [got[(name, e)][0] for e in ends] == expected, name
    if engine == "duckdb":
        check(store, ivs, _spec_of(m), "duckdb")


def test_a_breakdown_picking_labels_by_conditions(engine, way, tmp_path):
    # "adult woman" from the 18th birthday, "woman" before it (a condition that does not
    # depend on the interval beside one that flips), no label otherwise
    born = {"a": D(2006, 2, 15), "b": D(2006, 3, 20), "c": D(1990, 1, 1)}
    store = make_store(
        tmp_path,
        {
            "patients": [
                {"patient_id": p, "date_of_birth": d, "sex": "male" if p == "c" else "female"}
                for p, d in born.items()
            ],
            "registrations": _registered(born),
        },
    )
    adult = patients.age_on(index_date) >= 18
    female = patients.sex == "female"
    label = case((female & adult, "adult woman"), (female, "woman"))
    m = Measures(intervals=JAN_APR_2024)
    m.define_measure(
        "registered",
        numerator=registrations.registered_on(index_date),
        denominator=patients.is_alive_on(index_date),
        group_by={"g_who": label},
    )
    paths, got = _run(engine, store, m)
    assert set(paths.values()) == {_expected(way, m)}
    ends = [e for _, e in JAN_APR_2024]
    # a is 18 on 15 Feb 2024, b on 20 Mar 2024; c is a man: "unknown"
    assert [got.get(("registered", e, "adult woman"), (0, 0))[1] for e in ends] == [0, 1, 2, 2]
    assert [got.get(("registered", e, "woman"), (0, 0))[1] for e in ends] == [2, 1, 0, 0]
    assert [got[("registered", e, "unknown")][1] for e in ends] == [1, 1, 1, 1]
    if engine == "duckdb":
        check(store, JAN_APR_2024, _spec_of(m), "duckdb")


def test_a_breakdown_by_age_alone_goes_by_the_birthdays(engine, way, tmp_path):
    # "18" for one year, between two stretches labelled "not 18": a label can come back
    born = {"a": D(2006, 6, 15), "b": D(1980, 2, 29)}
    store = make_store(
        tmp_path,
        {
            "patients": [{"patient_id": p, "date_of_birth": d} for p, d in born.items()],
            "registrations": _registered(born),
        },
    )
    age = patients.age_on(index_date)
    ivs = monthly("2024-01-01", 24)
    m = Measures(intervals=ivs)
    m.define_measure(
        "registered",
        numerator=registrations.registered_on(index_date),
        denominator=patients.is_alive_on(index_date),
        group_by={
            "g_18": case(((age < 18) | (age >= 19), "not 18"), otherwise="18"),
            "g_band": patients.age_band_on(index_date, bands=(0, 18, 44, 45)),
        },
    )
    paths, got = _run(engine, store, m)
    assert set(paths.values()) == {_expected(way, m)}
    ends = [e for _, e in ivs]
    # a: 18 from 15 June 2024 to 14 June 2025; b: 44 on 29 February 2024, 45 on 1 March
    # 2025 (no 29 February that year)
    a_18 = [D(2024, 6, 15) <= e < D(2025, 6, 15) for e in ends]
    b_44 = [D(2024, 2, 29) <= e < D(2025, 3, 1) for e in ends]
    for e, is18, is44 in zip(ends, a_18, b_44, strict=True):
        a_band = "0-17" if e < D(2024, 6, 15) else "18-43"
        b_band = "44-44" if is44 else ("18-43" if e < D(2024, 2, 29) else "45+")
        want = {("18", a_band) if is18 else ("not 18", a_band): 1}
        want[("not 18", b_band)] = want.get(("not 18", b_band), 0) + 1
        have = {k[2:]: v[1] for k, v in got.items() if k[1] == e}
        assert have == want, e
    if engine == "duckdb":
        check(store, ivs, _spec_of(m), "duckdb")


@pytest.mark.parametrize("engine", ENGINES)
def test_the_latest_day_carried_from_group_to_group(engine, way, tmp_path, monkeypatch):
    """The latest reading in a 3-month window, month by month: true twice running (Jan,
    Feb), a reading without a value (Mar: neither true nor false, and missing), false
    (Apr; in May the last day decides, 130 that day, not 2 May's 160), nothing in the
    window (Aug, Sep: missing), true again from a reading on the last day of October."""
    from pophealth.query import masks

    read = []
    latest = masks.MaskPlan._latest_day_masks
    monkeypatch.setattr(
        masks.MaskPlan,
        "_latest_day_masks",
        lambda self, *a: read.append(1) or latest(self, *a),
    )
    rows = [
        _bp("c", D(2024, 1, 10), 150.0),
        _bp("c", D(2024, 2, 5), 145.0),
        {"patient_id": "c", "date": D(2024, 3, 15), "code": "271649006", "value": None},
        _bp("c", D(2024, 4, 20), 120.0),
        _bp("c", D(2024, 5, 2), 160.0),
        _bp("c", D(2024, 5, 28), 170.0),
        _bp("c", D(2024, 5, 28), 130.0),
        _bp("c", D(2024, 10, 31), 141.0),
    ]
    store = make_store(tmp_path, {"registrations": _registered(["c", "d"]), "events": rows})
    ivs = monthly("2024-01-01", 12)
    value = events.matching(SBP).in_last(months=3).last_day_for_patient(rule="min").value
    m = Measures(intervals=ivs)
    m.define_defaults(denominator=registrations.registered_on(index_date))
    m.define_measure("high", numerator=value >= 140)
    m.define_measure("not_high", numerator=~(value >= 140))
    m.define_measure("none", numerator=value.is_null())
    paths, got = _run(engine, store, m)
    assert set(paths.values()) == {_expected(way, m)}
    assert bool(read) == (way == "masks")
    ends = [e for _, e in ivs]
    assert [got[("high", e)][0] for e in ends] == [1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1]
    assert [got[("not_high", e)][0] for e in ends] == [0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0]
    # patient d has no reading at all
    assert [got[("none", e)][0] for e in ends] == [1, 1, 2, 1, 1, 1, 1, 2, 2, 1, 1, 1]
    assert {got[("high", e)][1] for e in ends} == {2}


@pytest.mark.parametrize("engine", ENGINES)
def test_measures_sharing_a_breakdown_by_the_address_status(engine, way, tmp_path):
    """Two measures broken down by one interval-dependent label (no address until a move in
    November): the label's conditions are planned once (they were counted twice, and the
    plan failed); at change points its "no LSOA" test is one Spark can read (Spark could
    not parse the ``x IS NULL IS NULL`` it was written as)."""
    store = make_store(
        tmp_path,
        {
            "patients": [
                {"patient_id": "f", "sex": "female", "date_of_birth": D(1988, 5, 31)},
                {"patient_id": "m", "sex": "male", "date_of_birth": D(1989, 11, 7)},
            ],
            "registrations": _registered(["f", "m"]),
            "addresses": [
                {"patient_id": "f", "start_date": D(2024, 11, 13), "lsoa_code": "X01000001"}
            ],
            "areas": [{"lsoa_code": "X01000001", "imd_quintile": 1}],
        },
    )
    ivs = monthly("2024-09-01", 3)
    m = Measures(intervals=ivs)
    m.define_defaults(
        denominator=registrations.registered_on(index_date),
        group_by={"g_status": addresses.area_on(index_date).status},
    )
    m.define_measure("female", numerator=patients.sex == "female")
    m.define_measure("bp", numerator=events.matching(SBP).in_last(months=3).exists_for_patient())
    paths, got = _run(engine, store, m)
    assert set(paths.values()) == {_expected(way, m)}
    sep, oct_, nov = (e for _, e in ivs)
    assert got[("female", sep, "no_address")] == (1, 2)
    assert got[("female", oct_, "no_address")] == (1, 2)
    assert got[("female", nov, "no_address")] == (0, 1)
    assert got[("female", nov, "known")] == (1, 1)
    assert got[("bp", nov, "known")] == (0, 1)
    if engine == "duckdb":
        check(store, ivs, _spec_of(m), "duckdb")
