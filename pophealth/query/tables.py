"""The canonical tables as query objects, with the demographic helpers programmes use.

``patients`` has one row per patient, so its columns are per-patient series. The others
are :class:`~pophealth.query.model.Frame` objects over many rows per patient.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pophealth.query.model import (
    ColumnError,
    Frame,
    QueryError,
    Row,
    Series,
    as_day,
    case,
    did_you_mean,
    index_date,
)
from pophealth.schema import AREAS, PRACTICES

__all__ = [
    "AGE_BANDS_10Y",
    "AREA_ATTRIBUTES",
    "addresses",
    "admissions",
    "emergency_attendances",
    "events",
    "medications",
    "operations",
    "patients",
    "questionnaire_responses",
    "registrations",
]

#: Default age bands: 0-9, 10-19, ..., 80-89, 90+.
AGE_BANDS_10Y: tuple[int, ...] = (0, 10, 20, 30, 40, 50, 60, 70, 80, 90)
#: Every attribute of an LSOA available through :meth:`Addresses.area_on`.
AREA_ATTRIBUTES: tuple[str, ...] = tuple(c.name for c in AREAS.columns if c.name != "lsoa_code")


def _dtype(col_type: str) -> str:
    return {"timestamp": "datetime"}.get(col_type, col_type)


class Patients:
    """One row per patient: date of birth, sex, ethnicity, date of death."""

    def __getattr__(self, name: str) -> Series:
        from pophealth.schema import PATIENTS

        if name.startswith("_"):
            raise AttributeError(name)
        try:
            col = PATIENTS[name]
        except KeyError:
            raise ColumnError(
                f"patients has no column {name!r}"
                f"{did_you_mean(name, PATIENTS.column_names, self)}; "
                f"columns: {', '.join(PATIENTS.column_names)}"
            ) from None
        return Series("pcol", ("patients", name), _dtype(col.type), None, f"patients.{name}")

    @property
    def ethnicity_group(self) -> Series:
        """2001 census 5 groups (white, mixed, asian, black, other, unknown); never missing."""
        return self.ethnicity_5

    def age_on(self, date: Any = index_date) -> Series:
        """Age in whole years on ``date`` (birthday counted on the day; 29 Feb birthdays
        turn over on 1 Mar in non-leap years). Before the date of birth it is negative (-1
        in the year before): combine with ``is_alive_on`` or registration, which a patient
        not yet born does not pass, rather than rely on ``age < n`` alone."""
        date = as_day(date)
        dob = self.date_of_birth
        desc = f"patients.age_on({date.desc})"
        out = Series._make("age", (dob, date), "int", desc, (dob, date))
        if date.dtype != "date":
            out._with_error(f"{desc}: needs a date, not a {date.dtype}")
        return out

    def age_band_on(self, date: Any = index_date, bands: Sequence[int] = AGE_BANDS_10Y) -> Series:
        """Age band label on ``date``: with the default bands "0-9", "10-19", ..., "90+"."""
        bands = tuple(bands)
        if not bands or list(bands) != sorted(set(bands)):
            raise QueryError(
                f"age_band_on(bands={bands!r}): the bands must be strictly increasing lower "
                "bounds, e.g. (0, 18, 65)"
            )
        age = self.age_on(date)
        branches = []
        for lo, hi in zip(bands, bands[1:], strict=False):
            branches.append(((age >= lo) & (age < hi), f"{lo}-{hi - 1}"))
        branches.append((age >= bands[-1], f"{bands[-1]}+"))
        return case(*branches)

    def is_alive_on(self, date: Any = index_date) -> Series:
        """Born on or before ``date`` and not recorded as dead on or before it."""
        date = as_day(date)
        return (self.date_of_birth <= date) & (
            self.date_of_death.is_null() | (self.date_of_death > date)
        )


def _row_date(frame: Frame, date: Series, what: str) -> str | None:
    """Why ``frame.what(date)`` cannot take ``date``, a date on each row of another table
    (``addresses.address_on(admissions.admission_date)``): one value per patient comes out,
    and a row's date would give one per row — or None. Names what does that instead:
    ``during`` to keep the rows by the state on their own date, a row dataset for a value
    of each row."""
    if date.domain is None or date.domain == frame._table or date.error:
        return None
    rows = date.domain
    periods, kind = {
        "addresses": ("addresses.where(addresses.care_home)", "a care-home address"),
        "registrations": ("registrations", "a registration"),
    }[frame._table]
    col = date.args[0] if date.op == "to_date" else date  # a date-and-time by its day
    column = col.args[1] if col.op == "col" else "<its date>"
    return (
        f"{frame._table}.{what}({date.desc}): {date.desc} is a date on each row of {rows}, "
        f"not one per patient, and {frame._table}.{what}(...) gives one value per patient. "
        f"To keep the rows of {rows} dated on a day of {kind}, filter them: "
        f"{rows}.during({periods}); for a value of each row of {rows} on its own date, make "
        f"one output row per row with RowDataset({rows}) and read the date as its "
        f".row.{column}"
    )


class Registrations(Frame):
    """Periods of registration with a practice. On a date, the registration with the
    latest start wins when periods overlap (ties: the alphabetically last practice code)."""

    def __init__(self) -> None:
        super().__init__("registrations")

    def active_on(self, date: Any = index_date) -> Frame:
        date = as_day(date)
        return self._active(date, "active_on")

    def _active(self, date: Series, what: str) -> Frame:
        problem = _row_date(self, date, what)
        if problem:
            return self._refused(problem, f"registrations.{what}({date.desc})")
        return self.where(
            (self.start_date <= date) & (self.end_date.is_null() | (self.end_date >= date))
        )

    def registered_on(self, date: Any = index_date) -> Series:
        """True when registered with any practice on ``date``."""
        return self._active(as_day(date), "registered_on").exists_for_patient()

    def for_patient_on(self, date: Any = index_date) -> Row:
        rows = self._active(as_day(date), "for_patient_on")
        return rows.sort_by(self.start_date, self.practice_id).last_for_patient()

    def practice_on(self, date: Any = index_date) -> Practice:
        """The practice registered with on ``date``: ``.practice_id`` and every practice
        column (``.pcn_id``, ``.icb``...); all missing when not registered."""
        return Practice(self.for_patient_on(date).practice_id)


class Practice:
    def __init__(self, practice_id: Series):
        self.practice_id = practice_id

    def _not_a_value(self) -> str:
        return (
            "a practice (registrations.practice_on(date)) is not a value: take one of its "
            f"columns ({', '.join('.' + c for c in PRACTICES.column_names)})"
        )

    def __getattr__(self, name: str) -> Series:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            col = PRACTICES[name]
        except KeyError:
            raise ColumnError(
                f"practices has no column {name!r}"
                f"{did_you_mean(name, PRACTICES.column_names, self)}; "
                f"columns: {', '.join(PRACTICES.column_names)}"
            ) from None
        return _lookup(self.practice_id, "practices", "practice_id", name, _dtype(col.type))


def _lookup(key: Series, table: str, key_col: str, column: str, dtype: str) -> Series:
    return Series(
        "lookup",
        (key, table, key_col, column),
        dtype,
        None,
        f"{table}[{key.desc}].{column}",
        error=key.error,
    )


class Addresses(Frame):
    """Address history reduced to the LSOA.

    **Overlap rule** (schema ``addresses``): on a date, among addresses with
    ``start_date <= date <= end_date`` (open end = current), the latest start wins; ties
    are broken by the LSOA code (alphabetically last wins; an ungeocoded address loses a
    tie to a geocoded one).
    """

    def __init__(self) -> None:
        super().__init__("addresses")

    def active_on(self, date: Any = index_date) -> Frame:
        date = as_day(date)
        return self._active(date, "active_on")

    def _active(self, date: Series, what: str) -> Frame:
        problem = _row_date(self, date, what)
        if problem:
            return self._refused(problem, f"addresses.{what}({date.desc})")
        return self.where(
            (self.start_date <= date) & (self.end_date.is_null() | (self.end_date >= date))
        )

    def address_on(self, date: Any = index_date) -> Row:
        """The address on ``date`` by the overlap rule: ``.lsoa_code``, ``.care_home``..."""
        rows = self._active(as_day(date), "address_on")
        return rows.sort_by(self.start_date, self.lsoa_code).last_for_patient()

    def area_on(self, date: Any = index_date) -> Area:
        """The small area of the address on ``date``: every area attribute (``.imd_decile``,
        ``.imd_quintile``, ``.core20``, ``.no2_quintile``, ``.fuel_poverty_pct``, ``.icb``...)
        plus ``.lsoa_code`` and ``.status``. Attributes are missing when the patient has
        no address on the date, the address was not geocoded or its LSOA is not in the
        areas table; use ``.group(name)`` for a breakdown label with those patients in an
        explicit "unknown" group."""
        return Area(self.address_on(date))


class Area:
    def __init__(self, address: Row):
        self._address = address
        self.lsoa_code = address.lsoa_code
        self.care_home = address.care_home
        self.has_address = address.exists

    def _not_a_value(self) -> str:
        return (
            "an area (addresses.area_on(date)) is not a value: take one of its attributes "
            "(.imd_quintile, .core20, .fuel_poverty_pct...; all: "
            f"{', '.join(AREA_ATTRIBUTES)}) or .group(name) for a breakdown label"
        )

    def __getattr__(self, name: str) -> Series:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            col = AREAS[name]
        except KeyError:
            raise ColumnError(
                f"areas has no column {name!r}{did_you_mean(name, AREA_ATTRIBUTES, self)}; "
                f"attributes: {', '.join(AREA_ATTRIBUTES)}"
            ) from None
        return _lookup(self.lsoa_code, "areas", "lsoa_code", name, _dtype(col.type))

    @property
    def in_areas_table(self) -> Series:
        return _lookup(self.lsoa_code, "areas", "lsoa_code", "lsoa_code", "string").is_not_null()

    @property
    def status(self) -> Series:
        """Why an area is (un)known: ``known``, ``no_address``, ``not_geocoded`` or
        ``lsoa_not_in_areas``."""
        return case(
            (~self.has_address, "no_address"),
            (self.lsoa_code.is_null(), "not_geocoded"),
            (~self.in_areas_table, "lsoa_not_in_areas"),
            otherwise="known",
        )

    def group(self, name: str, unknown: str = "unknown") -> Series:
        """``name`` as a breakdown label; patients without a known area are ``unknown``."""
        return getattr(self, name).fill_unknown(unknown)


patients = Patients()
events = Frame("events")
medications = Frame("medications")
admissions = Frame("admissions")
emergency_attendances = Frame("emergency_attendances")
operations = Frame("operations")
questionnaire_responses = Frame("questionnaire_responses")
registrations = Registrations()
addresses = Addresses()
