"""Spec: ``frame.during(periods)`` keeps the rows whose own date (the table's date; a
date-and-time by its day) is a day held by one of the same patient's rows of ``periods``:
a period runs from its start to its end, both inclusive, an open end running on — the days
``periods.days_in_interval_for_patient()`` counts, by the same rule. For a filtered
``addresses`` frame a day is held when the patient's address that day by the addresses
overlap rule (``address_on``'s: the latest start wins, ties broken by the LSOA code) is one
of the frame's rows; for other tables and all addresses, the union of the periods.

"Emergency admissions per 1,000 care-home bed-days" counts the admissions that start on a
day the patient lived in a care home. On DuckDB and on Spark: datasets, event tables, row
datasets, measures over one and many intervals, rates and quantiles."""

from __future__ import annotations

import datetime as dt
import random

import pandas as pd
import pytest

from pophealth.query import (
    Dataset,
    Measures,
    QueryError,
    RowDataset,
    addresses,
    admissions,
    emergency_attendances,
    events,
    index_date,
    medications,
    monthly,
    operations,
    patients,
    questionnaire_responses,
    registrations,
    run_dataset,
    run_events,
    run_measures,
)
from pophealth.store import Store
from tests.spec.conftest import FLAT, FLAT2, HOME, HOME2, make_store
from tests.spec.conftest import address_row as _addr
from tests.spec.conftest import admission_row as _adm
from tests.spec.conftest import care_home_row as _home

D = dt.date
T = dt.datetime
JAN, FEB, MAR = D(2025, 1, 1), D(2025, 2, 1), D(2025, 3, 1)
OLD = D(2020, 1, 1)
JAN10 = D(2025, 1, 10)

IN_CARE = addresses.where(addresses.care_home)
EMERGENCY_METHOD = admissions.admission_method == "emergency"
EMERGENCY = admissions.where(EMERGENCY_METHOD)


def _reg(pid, practice, start, end=None) -> dict:
    return {"patient_id": pid, "practice_id": practice, "start_date": start, "end_date": end}


def _tables() -> dict:
    """One patient per case. Care-home days (the overlap rule) and the admissions kept:

    ============  ================================================  ==========================
    patient       addresses                                         admissions (kept: +)
    ============  ================================================  ==========================
    left_open     care home from 1 Jun 2024, left open; flat from   31 May -, 1 Jun 2024 +
                  15 Jan 2025 (the flat wins from its start)        (elective), 14 Jan +,
                                                                    15 Jan -
    respite       flat since 2020, open; care home 20 Jan to 5 Feb  19 Jan -, 20 Jan +,
                                                                    5 Feb +, 6 Feb -
    moves_in      flat since 2020, open; care home from 10 Feb      9 Feb -, 10 Feb +, 31 Mar +
    tie_home      flat to 9 Jan; care home and a flat both from     9 Jan -, 10 Jan +,
                  10 Jan, the care home's LSOA later (it wins)      20 Jan + (elective)
    tie_flat      as tie_home, the flat's LSOA later (it wins)      10 Jan -, 1 Feb -
    tie_unknown   as tie_home, the care home not geocoded (loses)   10 Jan -
    two_homes     care home to 15 Feb; another from 1 Feb           10 Feb + (once), 1 Mar +
    gap           flat to 5 Jan; flat from 26 Jan (registrations    5 Jan -, 6 Jan -,
                  the same: A1 to 5 Jan, B2 from 26 Jan)            25 Jan -, 26 Jan -
    stay          none; an elective stay 10-20 Jan                  10 Jan, 20 Jan, 21 Jan: -
    ============  ================================================  ==========================

    Care-home days in January, February, March 2025: left_open 14, 0, 0; respite 12, 5, 0;
    moves_in 0, 19, 31; tie_home 22, 28, 31; two_homes 31, 28, 31; the rest none.
    """
    return {
        "patients": [{"patient_id": p} for p in CARE_KEPT],
        "addresses": [
            _home("left_open", D(2024, 6, 1)),
            _addr("left_open", D(2025, 1, 15)),
            _addr("respite", OLD),
            _home("respite", D(2025, 1, 20), D(2025, 2, 5)),
            _addr("moves_in", OLD),
            _home("moves_in", D(2025, 2, 10)),
            _addr("tie_home", OLD, D(2025, 1, 9)),
            _home("tie_home", JAN10, lsoa=HOME2),
            _addr("tie_home", JAN10, lsoa=FLAT2),
            _addr("tie_flat", OLD, D(2025, 1, 9)),
            _home("tie_flat", JAN10, lsoa=FLAT2),
            _addr("tie_flat", JAN10, lsoa=HOME2),
            _home("tie_unknown", JAN10, lsoa=None),
            _addr("tie_unknown", JAN10, lsoa=FLAT),
            _home("two_homes", D(2024, 1, 1), D(2025, 2, 15)),
            _home("two_homes", D(2025, 2, 1), lsoa=HOME2),
            _addr("gap", OLD, D(2025, 1, 5)),
            _addr("gap", D(2025, 1, 26), lsoa=FLAT2),
        ],
        "registrations": [
            # a later-starting registration does not end an earlier one
            _reg("left_open", "A1", OLD),
            _reg("left_open", "B2", D(2025, 1, 15)),
            _reg("respite", "A1", D(2025, 2, 1)),
            _reg("gap", "A1", OLD, D(2025, 1, 5)),
            _reg("gap", "B2", D(2025, 1, 26)),
        ],
        "admissions": [
            _adm("left_open", D(2024, 5, 31)),
            _adm("left_open", D(2024, 6, 1), "elective"),
            _adm("left_open", D(2025, 1, 14)),
            _adm("left_open", D(2025, 1, 15)),
            _adm("respite", D(2025, 1, 19)),
            _adm("respite", D(2025, 1, 20)),
            _adm("respite", D(2025, 2, 5)),
            _adm("respite", D(2025, 2, 6)),
            _adm("moves_in", D(2025, 2, 9)),
            _adm("moves_in", D(2025, 2, 10)),
            _adm("moves_in", D(2025, 3, 31)),
            _adm("tie_home", D(2025, 1, 9)),
            _adm("tie_home", JAN10),
            _adm("tie_home", D(2025, 1, 20), "elective"),
            _adm("tie_flat", JAN10),
            _adm("tie_flat", FEB),
            _adm("tie_unknown", JAN10),
            _adm("two_homes", D(2025, 2, 10)),
            _adm("two_homes", MAR),
            _adm("gap", D(2025, 1, 5)),
            _adm("gap", D(2025, 1, 6)),
            _adm("gap", D(2025, 1, 25)),
            _adm("gap", D(2025, 1, 26)),
            _adm("stay", JAN10, "elective", D(2025, 1, 20)),
            _adm("stay", JAN10),
            _adm("stay", D(2025, 1, 20)),
            _adm("stay", D(2025, 1, 21)),
        ],
        "emergency_attendances": [
            # arrivals late on the last care-home day and just after it
            {"patient_id": "respite", "arrival_datetime": T(2025, 2, 5, 23, 30)},
            {"patient_id": "respite", "arrival_datetime": T(2025, 2, 6, 0, 10)},
            # an attendance over midnight holds both its days
            {
                "patient_id": "stay",
                "arrival_datetime": T(2025, 3, 1, 22, 0),
                "departure_datetime": T(2025, 3, 2, 3, 0),
            },
        ],
        "events": [
            {"patient_id": "stay", "date": d, "code": "1234"}
            for d in (D(2025, 1, 9), D(2025, 1, 15), D(2025, 2, 28), D(2025, 3, 2), D(2025, 3, 3))
        ],
        "medications": [
            {"patient_id": "moves_in", "date": d, "code": "321"}
            for d in (D(2025, 2, 9), D(2025, 2, 10))
        ],
        "operations": [
            {"patient_id": "tie_home", "operation_id": o, "start_datetime": when, "code": "W401"}
            for o, when in (("o1", T(2025, 1, 9, 23)), ("o2", T(2025, 1, 10, 8)))
        ],
        "questionnaire_responses": [
            {
                "patient_id": "left_open",
                "response_id": r,
                "questionnaire": "q",
                "link_id": "1",
                "authored": when,
            }
            for r, when in (("r1", T(2025, 1, 14, 9)), ("r2", None), ("r3", T(2025, 1, 15, 9)))
        ],
    }


#: The admissions kept by admissions.during(IN_CARE), per patient, in date order.
CARE_KEPT: dict[str, list[dt.date]] = {
    "left_open": [D(2024, 6, 1), D(2025, 1, 14)],
    "respite": [D(2025, 1, 20), D(2025, 2, 5)],
    "moves_in": [D(2025, 2, 10), D(2025, 3, 31)],
    "tie_home": [JAN10, D(2025, 1, 20)],
    "tie_flat": [],
    "tie_unknown": [],
    "two_homes": [D(2025, 2, 10), MAR],
    "gap": [],
    "stay": [],
}


@pytest.fixture
def store(tmp_path_factory) -> Store:
    """The tables above in one store per session (every test reads them, none writes)."""
    store_dir = tmp_path_factory.getbasetemp() / "during_periods"
    if not store_dir.exists():
        store_dir.mkdir()
        make_store(store_dir, _tables())
    return Store.open_or_new(store_dir / "store")


def _kept(engine: str, store: Store, frame, column: str = "admission_date") -> dict[str, list]:
    """The rows of ``frame`` as an event table: their days, per patient, in date order."""
    ds = Dataset()
    ds.add_event_table("rows", frame, columns=[column])
    out = run_events(store, ds, "rows", engine=engine, index_date=D(2025, 3, 31))
    got: dict[str, list] = {p: [] for p in CARE_KEPT}
    for pid, value in zip(out["patient_id"], out[column], strict=True):
        got[pid].append(None if pd.isna(value) else pd.Timestamp(value).date())
    return got


def _dataset(engine: str, store: Store, variables: dict, index: dt.date = D(2025, 3, 31)):
    ds = Dataset()
    for name, value in variables.items():
        ds.add(name, value)
    out = run_dataset(store, ds, engine=engine, index_date=index)

    def clean(v):
        if pd.isna(v):
            return None
        return v.date() if isinstance(v, pd.Timestamp) else v

    return {r["patient_id"]: {k: clean(v) for k, v in r.items()} for r in out.to_dict("records")}


# -- the addresses overlap rule, boundaries --------------------------------------------------


def test_rows_kept_on_care_home_days_follow_the_address_on_each_day(engine, store):
    """Left open then a flat, a stay inside a longer address, same-start ties, the first
    and last day of a period, an open end: exactly the rows dated on a care-home day."""
    assert _kept(engine, store, admissions.during(IN_CARE)) == CARE_KEPT


def test_a_datetime_counts_by_its_day_and_a_missing_date_is_not_kept(engine, store):
    # 23:30 on the stay's last day is in it; ten past midnight the day after is not
    got = _kept(engine, store, emergency_attendances.during(IN_CARE), "arrival_datetime")
    assert got["respite"] == [D(2025, 2, 5)]
    assert sum(len(v) for v in got.values()) == 1
    # a response without a date is in no period (every day of hers is at an address)
    rows = questionnaire_responses.during(addresses)
    counts = _dataset(
        engine,
        store,
        {
            "dated": rows.count_for_patient(),
            "in_care": questionnaire_responses.during(IN_CARE).count_for_patient(),
        },
    )
    assert counts["left_open"] == {"patient_id": "left_open", "dated": 2, "in_care": 1}


def test_registrations_and_all_addresses_hold_the_union_of_their_periods(engine, store):
    reg = _kept(engine, store, admissions.during(registrations))
    # a gap between registrations holds no day; both ends of each period do
    assert reg["gap"] == [D(2025, 1, 5), D(2025, 1, 26)]
    # registered with A1 all along: a later B2 registration does not end it
    assert reg["left_open"] == [D(2024, 5, 31), D(2024, 6, 1), D(2025, 1, 14), D(2025, 1, 15)]
    assert reg["respite"] == [D(2025, 2, 5), D(2025, 2, 6)]  # from the registration's start
    assert reg["stay"] == [] and reg["moves_in"] == []
    anywhere = _kept(engine, store, admissions.during(addresses))
    assert anywhere["gap"] == [D(2025, 1, 5), D(2025, 1, 26)]
    assert anywhere["left_open"] == [D(2024, 6, 1), D(2025, 1, 14), D(2025, 1, 15)]
    assert anywhere["moves_in"] == [D(2025, 2, 9), D(2025, 2, 10), D(2025, 3, 31)]


def test_periods_of_admissions_and_attendances_hold_their_first_and_last_days(engine, store):
    # the same table: emergency admissions during an elective stay (10-20 January)
    got = _kept(engine, store, EMERGENCY.during(admissions.where(~EMERGENCY_METHOD)))
    assert got["stay"] == [JAN10, D(2025, 1, 20)]
    assert got["left_open"] == [D(2025, 1, 14), D(2025, 1, 15)]  # an elective stay left open
    # an attendance from 22:00 on 1 March to 03:00 on 2 March holds both days
    ae = _kept(engine, store, events.during(emergency_attendances), "date")
    assert ae["stay"] == [D(2025, 3, 2)]
    stays = _kept(engine, store, events.during(admissions.where(~EMERGENCY_METHOD)), "date")
    assert stays["stay"] == [D(2025, 1, 15)]


# -- composing -----------------------------------------------------------------------------------


def test_during_composes_with_other_filters_aggregates_and_itself(engine, store):
    from_care = EMERGENCY.during(IN_CARE)
    got = _dataset(
        engine,
        store,
        {
            "n": from_care.count_for_patient(),
            "any": admissions.during(IN_CARE).exists_for_patient(),
            "jan": from_care.between(JAN, D(2025, 1, 31)).count_for_patient(),
            "first": from_care.first_for_patient().admission_date,
            "last": from_care.sort_by(admissions.admission_date).last_for_patient().admission_date,
            # chained, either way round: in a care home and registered
            "chained": admissions.during(IN_CARE).during(registrations).count_for_patient(),
            "chained_rev": admissions.during(registrations).during(IN_CARE).count_for_patient(),
            # where after during, and during after where, on one table's own rows
            "em_after": admissions.during(IN_CARE).where(EMERGENCY_METHOD).count_for_patient(),
            "days": from_care.count_days_for_patient(),
            # a table's own rows: addresses starting on a care-home day
            "addr": addresses.during(IN_CARE).count_for_patient(),
            # the index date in the rows' own filters (not the periods'): fine
            "by_index": from_care.on_or_before(index_date).count_for_patient(),
            # periods filtered by a per-patient value (every patient here is alive)
            "alive": admissions.during(
                addresses.where(addresses.care_home & patients.date_of_death.is_null())
            ).count_for_patient(),
            "registered_alive": admissions.during(
                registrations.where(patients.date_of_death.is_null())
            ).count_for_patient(),
            "registered": admissions.during(registrations).count_for_patient(),
            # every table with a date
            "regs": registrations.during(IN_CARE).count_for_patient(),
            "meds": medications.during(IN_CARE).count_for_patient(),
            "ops": operations.during(IN_CARE).first_for_patient().operation_id,
        },
        index=D(2025, 2, 10),
    )
    elective = {("left_open", D(2024, 6, 1)), ("tie_home", D(2025, 1, 20))}
    assert {p: v["n"] for p, v in got.items()} == {
        p: len([d for d in kept if (p, d) not in elective]) for p, kept in CARE_KEPT.items()
    }
    assert got["left_open"]["any"] and not got["tie_flat"]["any"]
    assert got["respite"]["jan"] == 1 and got["tie_home"]["jan"] == 1
    assert got["left_open"]["first"] == D(2025, 1, 14)  # 1 June 2024 was elective
    assert got["two_homes"]["last"] == MAR
    assert got["moves_in"]["first"] == D(2025, 2, 10)
    assert got["tie_flat"]["first"] is None
    # in a care home on a registered day: respite's registration starts on 1 February
    assert {p: v["chained"] for p, v in got.items() if v["chained"]} == {
        "left_open": 2,
        "respite": 1,
    }
    assert all(v["chained"] == v["chained_rev"] for v in got.values())
    assert all(v["em_after"] == v["n"] for v in got.values())
    assert got["two_homes"]["days"] == 2
    # each care home's own start; and tie_home's flat starting the day its care home did
    # (that day is a care-home day); never the start of an address that loses its first day
    assert {p: v["addr"] for p, v in got.items() if v["addr"]} == {
        "left_open": 1,
        "respite": 1,
        "moves_in": 1,
        "tie_home": 2,
        "two_homes": 2,
    }
    assert got["moves_in"]["by_index"] == 1 and got["two_homes"]["by_index"] == 1
    assert all(v["alive"] == len(CARE_KEPT[p]) for p, v in got.items())
    assert all(v["registered_alive"] == v["registered"] for v in got.values())
    assert got["gap"]["registered"] == 2
    # respite's registration starts on a day of her stay; moves_in's second issue is on the
    # day she moves in; tie_home's operation at 08:00 on her first care-home day
    assert {p: v["regs"] for p, v in got.items() if v["regs"]} == {"respite": 1}
    assert {p: v["meds"] for p, v in got.items() if v["meds"]} == {"moves_in": 1}
    assert {p: v["ops"] for p, v in got.items() if v["ops"]} == {"tie_home": "o2"}


def test_a_row_dataset_of_rows_during_periods_and_during_in_its_variables(engine, store):
    """As the rows of a row dataset, and inside its variables (beside the current row): a
    row is kept exactly when the address on its own day is a care home."""
    every = RowDataset(admissions, columns=["admission_date"])
    row = every.row
    every.kept = (
        admissions.during(IN_CARE)
        .where(admissions.admission_date == row.admission_date)
        .exists_for_patient()
    )
    every.care_home = addresses.address_on(row.admission_date).care_home.if_null_then(False)
    out = run_dataset(store, every, engine=engine, index_date=D(2025, 3, 31))
    assert list(out["kept"]) == list(out["care_home"])
    kept = out[out["kept"]]
    assert {
        p: [pd.Timestamp(d).date() for d in rows["admission_date"]]
        for p, rows in kept.groupby("patient_id")
    } == {p: days for p, days in CARE_KEPT.items() if days}

    per_stay = RowDataset(admissions.during(IN_CARE), columns=["admission_date"])
    later = admissions.during(IN_CARE).after(per_stay.row.admission_date)
    per_stay.later = later.count_for_patient()
    got = run_dataset(store, per_stay, engine=engine, index_date=D(2025, 3, 31))
    assert {
        (r.patient_id, pd.Timestamp(r.admission_date).date()): r.later for r in got.itertuples()
    } == {(p, d): len(days) - 1 - i for p, days in CARE_KEPT.items() for i, d in enumerate(days)}


# -- measures ---------------------------------------------------------------------------------


def _measures(months, kinds: str) -> Measures:
    m = Measures(intervals=months)
    from_care = EMERGENCY.during(IN_CARE)
    by = {"patient": patients.patient_id}
    m.define_measure(
        "admitted_from_care",
        numerator=from_care.in_interval().exists_for_patient(),
        denominator=addresses.address_on(index_date).care_home,
        group_by=by,
    )
    m.define_measure(
        "registered_admission_3m",
        numerator=admissions.during(registrations).in_last(months=3).exists_for_patient(),
        denominator=True,
        group_by=by,
    )
    if kinds == "numbers":  # a count makes them change points rather than masks
        m.define_measure(
            "admissions_from_care",
            numerator=from_care.in_interval().count_for_patient(),
            denominator=True,
            group_by=by,
        )
        m.define_measure(
            "latest_from_care_since_june",
            numerator=from_care.on_or_before(index_date).last_for_patient().admission_date
            >= D(2024, 6, 1),
            denominator=True,
            group_by=by,
        )
    return m


def _per_interval(out: pd.DataFrame) -> dict[tuple, tuple]:
    return {
        (r.measure, r.patient, r.interval_start): (r.numerator, r.denominator)
        for r in out.itertuples()
    }


@pytest.mark.parametrize("kinds", ["true_false", "numbers"])
def test_twelve_months_in_one_run_equal_each_alone(engine, store, kinds):
    months = monthly(D(2024, 5, 1), 12)
    together = run_measures(store, _measures(months, kinds), engine=engine, disclosure=False)
    # the intervals' own ways ran, not pairing
    way = {"true_false": "masks", "numbers": "change_points"}[kinds]
    assert set(together.attrs["evaluation"].values()) == {way}, together.attrs
    want = _per_interval(together)
    assert sum(v[0] for v in want.values()) > 0
    for month in months:
        alone = run_measures(store, _measures([month], kinds), engine=engine, disclosure=False)
        got = _per_interval(alone)
        assert got == {k: v for k, v in want.items() if k[2] == month[0]}, month


def test_care_home_admissions_per_thousand_bed_days(engine, store):
    """End to end: emergency admissions starting in a care home, per 1,000 care-home
    bed-days, by month. Jan: 14 + 12 + 22 + 31 = 79 bed-days and three admissions (left_open
    14 Jan, respite 20 Jan, tie_home 10 Jan; not tie_home's elective one on 20 Jan, nor
    left_open's on 15 Jan, from the flat); Feb: 5 + 19 + 28 + 28 = 80 and three; Mar:
    31 + 31 + 31 = 93 and two."""
    rates = Measures(intervals=monthly(JAN, 3))
    rates.define_rate(
        "care_home_admissions",
        events=EMERGENCY.during(IN_CARE).in_interval().count_for_patient(),
        person_time=IN_CARE.days_in_interval_for_patient(until=patients.date_of_death),
        per=1000,
        unit="days",
    )
    out = run_measures(store, rates, engine=engine, disclosure=False)
    out = out.sort_values("interval_start")
    assert list(out["numerator"]) == [3, 3, 2]
    assert list(out["denominator"]) == [79, 80, 93]
    assert list(out["value"]) == pytest.approx([3000 / 79, 3000 / 80, 2000 / 93])
    assert set(out["statistic"]) == {"rate per 1,000 person-days"}


def test_a_median_of_admissions_from_a_care_home(engine, store):
    """Among patients with care-home days in February (respite, moves_in, tie_home,
    two_homes) the emergency admissions from a care home: 1, 1, 0, 1 — median 1 (all their
    admissions that month, 2, 2, 0, 1, would give more)."""
    m = Measures(intervals=[(FEB, D(2025, 2, 28))])
    m.define_quantile(
        "from_care_median",
        value=EMERGENCY.during(IN_CARE).in_interval().count_for_patient(),
        among=IN_CARE.days_in_interval_for_patient() > 0,
        quantiles=(0.5,),
    )
    out = run_measures(store, m, engine=engine, disclosure=False)
    assert float(out["value"].iloc[0]) == 1.0
    assert int(out["denominator"].iloc[0]) == 4


# -- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("periods", "said"),
    [
        (events, "rows of events have no period"),
        (patients.date_of_birth, "not a value"),
        (patients, "not patients"),
        ("addresses", "not a str"),
        (addresses.first_for_patient(), "addresses.first_for_patient()"),
        (addresses.where(addresses.start_date <= index_date), "filtered by the interval"),
        (IN_CARE.in_interval(), "filtered by the interval"),
        (addresses.where(addresses.lsoa_code == 5), "cannot compare"),
    ],
)
def test_what_is_not_a_frame_of_periods_is_refused(periods, said):
    frame = admissions.during(periods)
    assert frame.error is not None and said in frame.error
    assert frame.error.startswith("admissions.during(")
    assert "registrations, addresses, admissions, emergency_attendances" in frame.error or (
        "interval" in frame.error or "compare" in frame.error
    )
    ds = Dataset()
    with pytest.raises(QueryError, match="variable 'n'.*during"):
        ds.add("n", frame.count_for_patient())


def test_periods_read_by_a_row_datasets_current_row_are_refused():
    per = RowDataset(admissions)
    moving = addresses.where(addresses.start_date <= per.row.admission_date)
    with pytest.raises(QueryError, match="current row"):
        per.add("n", events.during(moving).count_for_patient())


def test_the_address_on_each_rows_date_points_to_during():
    ds = Dataset()
    with pytest.raises(QueryError) as caught:
        ds.add(
            "from_care",
            admissions.where(
                addresses.address_on(admissions.admission_date).care_home
            ).count_for_patient(),
        )
    message = str(caught.value)
    assert "variable 'from_care'" in message
    assert "admissions.during(addresses.where(addresses.care_home))" in message
    assert "RowDataset(admissions)" in message
    with pytest.raises(QueryError, match=r"emergency_attendances.during\(registrations\)"):
        ds.add(
            "registered",
            emergency_attendances.where(
                registrations.registered_on(emergency_attendances.arrival_datetime)
            ).exists_for_patient(),
        )


# -- against a day-by-day count in pandas -----------------------------------------------------


def _random_tables(seed: int, patients_n: int) -> dict:
    """Random addresses (overlapping, same-start ties, open ends, ungeocoded), registrations
    with gaps and admissions for ``patients_n`` patients."""
    rng = random.Random(seed)
    base = D(2024, 1, 1)
    tables: dict[str, list] = {"addresses": [], "registrations": [], "admissions": []}
    for i in range(patients_n):
        pid = f"s{seed}p{i:02d}"
        starts: list[dt.date] = []
        for _ in range(rng.randint(0, 4)):
            start = rng.choice(starts) if starts and rng.random() < 0.3 else base
            if start == base:
                start = base + dt.timedelta(rng.randint(0, 300))
            starts.append(start)
            end = None if rng.random() < 0.4 else start + dt.timedelta(rng.randint(0, 90))
            lsoa = rng.choice([FLAT, FLAT2, HOME, HOME2, None])
            tables["addresses"].append(_addr(pid, start, end, lsoa, rng.random() < 0.5))
        for _ in range(rng.randint(0, 2)):
            start = base + dt.timedelta(rng.randint(0, 300))
            end = None if rng.random() < 0.3 else start + dt.timedelta(rng.randint(0, 120))
            tables["registrations"].append(_reg(pid, rng.choice(["A1", "B2"]), start, end))
        for _ in range(rng.randint(0, 6)):
            day = base + dt.timedelta(rng.randint(-10, 420))
            tables["admissions"].append(_adm(pid, day, rng.choice(["emergency", "elective"])))
    tables["patients"] = [{"patient_id": f"s{seed}p{i:02d}"} for i in range(patients_n)]
    return tables


def _holds(period: dict, day: dt.date) -> bool:
    end = period["end_date"]
    return period["start_date"] <= day and (end is None or end >= day)


def _address_that_day(rows: list[dict], day: dt.date) -> dict | None:
    """The overlap rule, day by day: of the addresses holding ``day``, the latest start;
    ties to the later LSOA code (none loses), then the later end (an open one loses), then
    a care home."""
    holding = [r for r in rows if _holds(r, day)]
    if not holding:
        return None
    low = D(1, 1, 1)
    return max(
        holding,
        key=lambda r: (r["start_date"], r["lsoa_code"] or "", r["end_date"] or low, r["care_home"]),
    )


def _expected(tables: dict) -> dict[str, dict[str, int]]:
    by = lambda name: {  # noqa: E731
        p: [r for r in tables[name] if r["patient_id"] == p]
        for p in (r["patient_id"] for r in tables["patients"])
    }
    addrs, regs, adms = by("addresses"), by("registrations"), by("admissions")
    out = {}
    for pid in addrs:
        counts = {"care": 0, "flat": 0, "reg": 0, "anywhere": 0, "chain": 0, "em_care": 0}
        for a in adms[pid]:
            day = a["admission_date"]
            where = _address_that_day(addrs[pid], day)
            care = where is not None and where["care_home"]
            reg = any(_holds(r, day) for r in regs[pid])
            counts["care"] += care
            counts["flat"] += where is not None and where["lsoa_code"] == FLAT
            counts["reg"] += reg
            counts["anywhere"] += where is not None
            counts["chain"] += care and reg
            counts["em_care"] += care and a["admission_method"] == "emergency"
        out[pid] = counts
    return out


@pytest.mark.parametrize("seeds", [range(4), pytest.param(range(4, 40), marks=pytest.mark.slow)])
def test_random_histories_agree_with_a_day_by_day_count(engine, tmp_path, seeds):
    tables: dict[str, list] = {}
    for seed in seeds:
        for name, rows in _random_tables(seed, 12).items():
            tables.setdefault(name, []).extend(rows)
    store = make_store(tmp_path, tables)
    got = _dataset(
        engine,
        store,
        {
            "care": admissions.during(IN_CARE).count_for_patient(),
            "flat": admissions.during(
                addresses.where(addresses.lsoa_code == FLAT)
            ).count_for_patient(),
            "reg": admissions.during(registrations).count_for_patient(),
            "anywhere": admissions.during(addresses).count_for_patient(),
            "chain": admissions.during(IN_CARE).during(registrations).count_for_patient(),
            "em_care": EMERGENCY.during(IN_CARE).count_for_patient(),
        },
    )
    want = _expected(tables)
    assert {p: {k: v for k, v in row.items() if k != "patient_id"} for p, row in got.items()} == (
        want
    )
    # the sample saw rows kept and rows not, by each rule
    for name in ("care", "flat", "reg", "anywhere", "chain", "em_care"):
        assert 0 < sum(w[name] for w in want.values()) < len(tables["admissions"]), name
