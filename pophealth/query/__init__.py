"""pophealth's query language: per-patient variables, cohorts and measures that read like
the clinical rule and run unchanged on DuckDB and Spark.

::

    from pophealth.query import (Dataset, codelist, events, medications, patients,
                                 registrations, addresses, index_date, run_dataset)

    asthma = codelist("asthma_diagnosis")
    saba = codelist("saba_inhalers")

    ds = Dataset()
    ds.define_population(
        registrations.registered_on(index_date)
        & patients.is_alive_on(index_date)
        & events.matching(asthma).on_or_before(index_date).exists_for_patient()
    )
    ds.age_band = patients.age_band_on(index_date)
    ds.saba_12m = medications.matching(saba).in_last(months=12).count_for_patient()
    ds.imd_quintile = addresses.area_on(index_date).group("imd_quintile")
    df = run_dataset("store/", ds, engine="duckdb", index_date="2025-03-31")

See docs/query.md for the guide.
"""

from pophealth.codelists import Codelist, CodelistError, codelist, load_codelist
from pophealth.query.dataset import (
    Dataset,
    RowDataset,
    connect,
    run_dataset,
    run_events,
    to_pandas,
)
from pophealth.query.measures import (
    Measure,
    Measures,
    QuantileMeasure,
    RateMeasure,
    RowMeasure,
    StandardisedRateMeasure,
    monthly,
    quarterly,
    run_measures,
    weekly,
    yearly,
)
from pophealth.query.model import (
    ColumnError,
    Duration,
    Frame,
    QueryError,
    Series,
    case,
    days,
    hour_of_day,
    hours_between,
    index_date,
    interval_start,
    maximum_of,
    minimum_of,
    minutes_between,
    months,
    weeks,
    when,
    years,
)
from pophealth.query.tables import (
    AGE_BANDS_10Y,
    AREA_ATTRIBUTES,
    addresses,
    admissions,
    emergency_attendances,
    events,
    medications,
    operations,
    patients,
    questionnaire_responses,
    registrations,
)

__all__ = [
    "AGE_BANDS_10Y",
    "AREA_ATTRIBUTES",
    "Codelist",
    "CodelistError",
    "ColumnError",
    "Dataset",
    "Duration",
    "Frame",
    "Measure",
    "Measures",
    "QuantileMeasure",
    "RateMeasure",
    "RowMeasure",
    "StandardisedRateMeasure",
    "QueryError",
    "RowDataset",
    "Series",
    "addresses",
    "admissions",
    "case",
    "codelist",
    "connect",
    "days",
    "emergency_attendances",
    "events",
    "hour_of_day",
    "hours_between",
    "index_date",
    "interval_start",
    "load_codelist",
    "maximum_of",
    "medications",
    "minimum_of",
    "minutes_between",
    "monthly",
    "months",
    "operations",
    "patients",
    "quarterly",
    "questionnaire_responses",
    "registrations",
    "run_dataset",
    "run_events",
    "run_measures",
    "to_pandas",
    "weeks",
    "when",
    "weekly",
    "yearly",
    "years",
]
