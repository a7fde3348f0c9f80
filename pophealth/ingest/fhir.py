"""FHIR R4 -> canonical tables.

:func:`ingest_fhir` reads Bundles (collection, transaction, message, searchset,
batch, document), bulk-export NDJSON, single resources and FHIR XML, plain or
``.gz``, and maps:

* Patient -> ``patients`` (+ ``addresses``, ``registrations``); ``patient_id`` is an
  HMAC-SHA256 of the NHS number (or, failing that, of the source's patient id) under
  the controller's key — the raw identifier is never written; an NHS number that fails
  the modulus-11 check, or is one digit ten times (a placeholder), quarantines the record
  that holds or refers to it;
* Condition, Observation (with components and coded values), Procedure,
  Immunization -> ``events``;
* MedicationRequest / MedicationStatement / MedicationDispense (coded, contained or
  referenced Medication) -> ``medications``, the medicines issued: one of category
  inpatient (given on a ward) is skipped, and a dispense of a prescription that loads is
  the same supply, counted once (``same_supply``);
* Encounter -> ``admissions`` (inpatient classes) and ``emergency_attendances``;
* Organization (GP practices with an ODS code) and ``Patient.generalPractitioner`` ->
  ``practices`` and ``registrations``;
* QuestionnaireResponse -> ``questionnaire_responses`` (one row per answer).

A Patient merged into another (``Patient.link`` replaced-by, or replaces on the other) is
not loaded when the record that replaces it is: records naming it load under that one
(``merged``; see docs/ingest.md, "Merged patient records").

A version of a record saying it was entered in error (refuted, cancelled, not done)
withdraws the rows of that record (same identifier or id, and patient) in any file of the
run and, with ``--append``, of earlier runs; with ``--append`` a newer version replaces the
rows an earlier run loaded for it (see docs/ingest.md, "Withdrawn and corrected records").

References resolve inside a Bundle (``urn:uuid:`` fullUrls, relative ``Type/id``),
to contained resources (``#id``), across files (``Type/id`` index) and by
identifier (conditional ``Patient?identifier=system|value`` or logical references).
Every other resource type is counted as skipped by design; a resourceType FHIR R4
does not define is quarantined.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pophealth.ingest.codes import (
    PREFERENCE,
    US_RACE,
    ethnicity_from_text,
    ethnicity_groups,
    ethnicity_letter,
    fhir_system,
    is_dmd_code,
    normalise_code,
)
from pophealth.ingest.fhir_read import (
    Entry,
    Unit,
    Unreadable,
    find_files,
    iter_units,
    split_ranges,
)
from pophealth.ingest.fhir_types import R4_RESOURCE_TYPES
from pophealth.ingest.pseudonym import Pseudonymiser, nhs_number_problem
from pophealth.ingest.sink import IngestSummary, Run, files_note, instant_column
from pophealth.schema import CODE_SYSTEMS, LSOA_PATTERN
from pophealth.validate import WITH_OFFSET_PATTERN

NHS_NUMBER_SYSTEMS = (
    "https://fhir.nhs.uk/id/nhs-number",
    "http://fhir.nhs.net/id/nhs-number",
    "https://fhir.nhs.uk/id/nhsnumber",
)
ODS_SYSTEMS = (
    "https://fhir.nhs.uk/id/ods-organization-code",
    "https://fhir.nhs.uk/id/ods-site-code",
    "http://fhir.nhs.net/id/ods-organization-code",
    "https://fhir.nhs.uk/id/ods-organisation-code",
)
INPATIENT_CLASSES = {"IMP", "ACUTE", "NONAC", "INPATIENT", "OBSENC"}
EMERGENCY_CLASSES = {"EMER", "EMERGENCY"}
#: Encounter classes that may be primary care (ambulatory, virtual): not loaded as rows,
#: but evidence for an inferred registration (:mod:`pophealth.ingest.infer`).
PRIMARY_CARE_CLASSES = {"AMB", "AMBULATORY", "VR", "VIRTUAL", "WELLNESS"}
#: Encounter types that are general-practice style (SNOMED CT 162673000 general
#: examination of patient, 410620009 well child visit), or say so in their text.
GP_ENCOUNTER_CODES = {"162673000", "410620009"}
_GP_ENCOUNTER_RE = re.compile(
    r"general practi|\bgp\b|wellness|well[- ]child|general examination|primary care", re.I
)
#: Organization types meaning a GP practice (ODS role RO76, or the words).
_GP_ORG_TYPE_RE = re.compile(r"gp practice|general practi|\bRO76\b", re.I)
SKIP_STATUSES = {
    "entered-in-error",
    "cancelled",
    "draft",
    "not-done",
    "revoked",
    "not-taken",
}
#: Medication record types, and the statuses with which such a record withdraws the order it
#: names: a cancelled or entered-in-error MedicationRequest (an EPS cancellation names the
#: order item it cancels), MedicationDispense or MedicationStatement says that order was
#: never issued, so a record of it read anywhere in the run (or, appending, in an earlier
#: run) is not counted. ``stopped`` is not one: a stopped prescription was issued.
MEDICATION_TYPES = {"MedicationRequest", "MedicationDispense", "MedicationStatement"}
WITHDRAWING_STATUSES = {"cancelled", "entered-in-error"}
#: The same for every other record type ingest loads: a version of the record whose status
#: says it was entered in error or did not happen withdraws the rows loaded for the record
#: (same identifier, else id, and patient) — in any file of the run, and rows an earlier
#: ``--append`` run loaded. Condition and AllergyIntolerance say so in verificationStatus
#: (:data:`WITHDRAWING_VERIFICATION`).
WITHDRAWING_RECORD_STATUSES = {
    "Observation": {"entered-in-error", "cancelled"},
    "Procedure": {"entered-in-error", "not-done"},
    "Immunization": {"entered-in-error", "not-done"},
    "Encounter": {"entered-in-error", "cancelled"},
    "QuestionnaireResponse": {"entered-in-error"},
    **{t: WITHDRAWING_STATUSES for t in MEDICATION_TYPES},
}
WITHDRAWING_VERIFICATION = {"refuted", "entered-in-error"}
VERIFIED_TYPES = {"Condition", "AllergyIntolerance"}
#: Record types whose rows carry the record's identity (see :meth:`FhirMapper._order_key`).
RECORD_TYPES = {*WITHDRAWING_RECORD_STATUSES, *VERIFIED_TYPES}
#: EPS order item number (one line of a prescription; ``groupIdentifier`` is the order).
EPS_ITEM_SYSTEMS = ("https://fhir.nhs.uk/id/prescription-order-item-number",)
#: Statuses meaning "has not happened yet", by resource type.
NOT_YET = {
    "Encounter": {"planned"},
    "Procedure": {"preparation"},
    # an Observation "registered" (FHIR R4 status) is known of but has no result yet
    "Observation": {"registered"},
    # a medicine the patient is to take in future: not (yet) issued or taken
    "MedicationStatement": {"intended"},
    # answers still being given: they may change, and a completed version will follow
    # ("stopped" — abandoned part way — keeps the answers given; "amended" is final)
    "QuestionnaireResponse": {"in-progress"},
}
#: Why a medication record of category ``inpatient`` (medicationrequest-category,
#: medicationdispense-category, medication-statement-category) is not loaded: medicines
#: ordered, supplied or taken on a ward are not issued to the patient (discharge,
#: outpatient and community ones are).
INPATIENT_REASON = "inpatient medication (category inpatient): given on the ward, not issued"
#: MedicationRequest intents that are not an issued prescription, and why (skip reasons).
NOT_ISSUED_INTENTS = {
    "proposal": "not an issued prescription",
    "plan": "not an issued prescription",
    "option": "not an issued prescription",
    "directive": "not an issued prescription",
    # FHIR request-intent: the fulfilling system's view of an order placed elsewhere (the
    # pharmacy's copy: the order itself is the issue), and one occurrence of an order (a
    # single dose given)
    "filler-order": "the supplier's copy of an order placed elsewhere, not another issue",
    "instance-order": "one dose of an order given, not an issued prescription",
}
_LSOA_RE = re.compile(LSOA_PATTERN)
_GP_TYPE_RE = re.compile(
    r"gp practice|general practi|surgery|medical cent|health cent|practice", re.I
)
#: Resource types kept only to resolve references (not loaded as rows themselves).
REFERENCE_TYPES = {
    "Medication",
    "Practitioner",
    "PractitionerRole",
    "Location",
    "HealthcareService",
    "Organization",
}


# -- small helpers -----------------------------------------------------------------------


def _list(v: Any) -> list:
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


def _contained(res: dict, ref: str) -> dict | None:
    """The resource contained in ``res`` that a local reference ``#id`` names, if any."""
    return next(
        (c for c in _list(res.get("contained")) if isinstance(c, dict) and c.get("id") == ref[1:]),
        None,
    )


def _resolve(ref: str, res: dict, scope: Any) -> dict | None:
    """The target of ``ref`` made in ``res``: a contained resource (``#id``) or one already
    seen in ``scope`` (urn:uuid, relative, conditional); None when not (yet) known."""
    return _contained(res, ref) if ref.startswith("#") else scope.get(ref)


def _get(d: Any, *path: str) -> Any:
    for p in path:
        if isinstance(d, list):
            d = d[0] if d else None
        if not isinstance(d, dict):
            return None
        d = d.get(p)
    return d


def _codings(cc: Any) -> list[dict]:
    out = []
    for c in _list(cc):
        if isinstance(c, dict):
            out += [x for x in _list(c.get("coding")) if isinstance(x, dict)]
    return out


def _known(cc: Any, *, medication: bool = False) -> tuple[list[tuple[str, str]], list[str]]:
    """Known (system, code) pairs of a CodeableConcept, and the unknown system URIs."""
    known: list[tuple[str, str]] = []
    unknown: list[str] = []
    for c in _codings(cc):
        code = c.get("code")
        if code is None or str(code).strip() == "":
            continue
        system = fhir_system(c.get("system"))
        if system is None:
            unknown.append(str(c.get("system") or "(no system)"))
            continue
        code = normalise_code(system, code)
        if medication and system == "snomedct" and is_dmd_code(code):
            system = "dmd"
        if (system, code) not in known:
            known.append((system, code))
    return known, unknown


def _preferred(pairs: list[tuple[str, str]], allowed: Iterable[str]) -> tuple[str, str] | None:
    allowed = set(allowed)
    ok = [p for p in pairs if p[0] in allowed]
    if not ok:
        return None
    return sorted(ok, key=lambda p: PREFERENCE.index(p[0]) if p[0] in PREFERENCE else 99)[0]


def _date(value: Any) -> str | None:
    """The calendar date of a FHIR date/dateTime as written (YYYY, YYYY-MM -> first day)."""
    if value is None or isinstance(value, (dict, list, bool)):
        return None  # e.g. a date carried only as a data-absent-reason extension
    text = str(value).strip()
    if not text:
        return None
    n = len(text)
    if n == 4 and text.isdigit():
        return text + "-01-01"
    if n == 7 and _YEAR_MONTH.fullmatch(text):
        return text + "-01"
    return text[:10] if len(text) >= 10 and text[4:5] == "-" else text


def _instant(value: Any) -> dt.datetime | None:
    """A FHIR dateTime that carries a time and an offset, as an aware datetime; else None."""
    if not isinstance(value, str) or not re.fullmatch(WITH_OFFSET_PATTERN, value.strip()):
        return None
    try:
        return dt.datetime.fromisoformat(value.strip())
    except ValueError:  # e.g. month 13: validation refuses the date
        return None


def _period_dates(period: dict, start: str, end: str) -> dict[str, str | None]:
    """Columns ``start`` and ``end`` (dates) of a FHIR Period: each date as written (see
    :func:`_date`), and, where both ends carry a time and an offset, the two dateTimes
    beside them (:func:`pophealth.ingest.sink.instant_column`), which validation compares
    as instants rather than by day. Such an end that is not before its start as an instant
    but is written on an earlier date (``2025-06-01T00:30+01:00`` to
    ``2025-05-31T23:45Z``: 15 minutes) has its date read at the start's offset, so that a
    valid period is not stored ending before it starts."""
    began, ended = period.get("start"), period.get("end")
    dates = {start: _date(began), end: _date(ended)}
    began_at, ended_at = _instant(began), _instant(ended)
    if began_at is None or ended_at is None:
        return dates
    dates[instant_column(start)] = began.strip()
    dates[instant_column(end)] = ended.strip()
    if ended_at >= began_at and dates[end] < dates[start]:
        dates[end] = ended_at.astimezone(began_at.tzinfo).date().isoformat()
    return dates


def _datetime(value: Any) -> str | None:
    """A FHIR dateTime with a time, as written (validation converts offsets to UTC)."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    return text if "T" in text else None


def _num(v: Any) -> Any:
    """A JSON number as a float; anything else (text such as "1,5", or a JSON NaN or
    Infinity) as text, which validation parses (pophealth.validate.parse_number) or
    quarantines with the field named."""
    if v is None or isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        try:
            f = float(v)
        except OverflowError:  # an integer beyond the range of a double
            return str(v)
        return f if math.isfinite(f) else repr(f)
    return str(v)


def _when(res: dict, *prefixes: str) -> Any:
    """First of ``<prefix>DateTime``, ``<prefix>Period.start``, ``<prefix>Instant`` …"""
    for p in prefixes:
        for suffix in ("DateTime", "Instant", "Date", ""):
            v = res.get(p + suffix)
            if isinstance(v, str):
                return v
        period = res.get(p + "Period")
        if isinstance(period, dict) and (period.get("start") or period.get("end")):
            return period.get("start") or period.get("end")
    return None


def _system_uri_is(value: Any, options: tuple[str, ...]) -> bool:
    return isinstance(value, str) and value.strip().lower().rstrip("/") in options


def _identifier_value(res: dict, systems: tuple[str, ...]) -> str | None:
    for ident in _list(res.get("identifier")):
        if isinstance(ident, dict) and _system_uri_is(ident.get("system"), systems):
            v = ident.get("value")
            if v:
                return str(v).strip()
    return None


_YEAR_MONTH = re.compile(r"\d{4}-\d{2}")
_HISTORY = re.compile(r"/_history/[^/]+$")
_TYPE_ID = re.compile(r"([A-Z][A-Za-z]+)/([A-Za-z0-9\-\.]{1,64})$")
_REF_TYPE = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)(?:/[^/?]+|\?)")
_SIMPLE_REF = re.compile(r"[A-Z][A-Za-z]+/[A-Za-z0-9\-\.]{1,64}")


def _ref_key(ref: str) -> str:
    """Canonical form of a literal reference: ``Type/id`` for relative or absolute URLs."""
    ref = ref.strip()
    if _SIMPLE_REF.fullmatch(ref):
        return ref
    if ref.startswith(("urn:uuid:", "urn:oid:")):
        return ref.lower()
    ref = _HISTORY.sub("", ref)
    m = _TYPE_ID.search(ref)
    return f"{m.group(1)}/{m.group(2)}" if m else ref


def _identifier_key(system: object, value: object) -> str:
    """The form of a logical reference by identifier that the reference keys share
    (``identifier:system|value``, the system in lower case)."""
    return f"identifier:{str(system or '').strip().lower()}|{str(value).strip()}"


def _resource_keys(rtype: str, res: dict, full_url: str | None) -> set[str]:
    """Every form in which another resource may refer to ``res``: ``Type/id``, its
    ``urn:uuid``, the entry's fullUrl, and each ``identifier:system|value``."""
    keys = set()
    if res.get("id"):
        keys |= {f"{rtype}/{res['id']}", f"urn:uuid:{str(res['id']).lower()}"}
    if full_url:
        keys.add(_ref_key(full_url))
    for ident in _list(res.get("identifier")):
        if isinstance(ident, dict) and ident.get("value"):
            keys.add(_identifier_key(ident.get("system"), ident["value"]))
    return keys


def _ref_type(ref: dict) -> str | None:
    r = ref.get("reference")
    if isinstance(r, str):
        r = r.strip()
        m = _REF_TYPE.search(r)
        if m:
            return m.group(1)
    t = ref.get("type")
    return str(t) if t else None


class _BadNhsNumber(ValueError):
    """An identifier in an NHS number system that is not a valid NHS number: the record is
    quarantined (field, value, reason), never hashed into whichever patient shares it."""

    def __init__(self, field_: str, value: Any, reason: str):
        super().__init__(reason)
        self.field, self.value, self.reason = field_, value, reason


# -- the mapper --------------------------------------------------------------------------


class _UnitScope:
    """Resolution scope of one Bundle (or one lone resource)."""

    def __init__(self, unit: Unit):
        self.by_ref: dict[str, dict] = {}
        # a lone resource (an NDJSON line, a single-resource file) has nothing to resolve
        # locally except its own contained resources, which are looked up separately
        in_bundle = unit.bundle is not None or unit.window_of is not None
        for e in unit.entries if in_bundle else ():
            r = e.resource
            if e.full_url:
                self.by_ref[e.full_url.strip()] = r
                self.by_ref[_ref_key(e.full_url)] = r
            rid, rt = r.get("id"), r.get("resourceType")
            if rid and rt:
                self.by_ref.setdefault(f"{rt}/{rid}", r)
        self.pids: dict[int, str] = {}
        # When a message records its date only once (Bundle.timestamp, meta.lastUpdated
        # or a Provenance.recorded, as NHS EPS messages do), that date stands in for a
        # prescription's missing authoredOn.
        self.message_date: str | None = None
        if in_bundle:
            b = unit.bundle or unit.window_of or {}
            recorded = [
                e.resource.get("recorded")
                for e in unit.entries
                if e.resource.get("resourceType") == "Provenance"
                and isinstance(e.resource.get("recorded"), str)
            ]
            self.message_date = (
                b.get("timestamp") or _get(b, "meta", "lastUpdated") or min(recorded, default=None)
            )
            if not isinstance(self.message_date, str):
                self.message_date = None

    def get(self, ref: str) -> dict | None:
        if not self.by_ref:
            return None
        return self.by_ref.get(ref.strip()) or self.by_ref.get(_ref_key(ref))


class FhirMapper:
    """Maps resources to canonical rows on a :class:`Run`."""

    def __init__(self, run: Run, pseudo: Pseudonymiser):
        self.run = run
        self.pseudo = pseudo
        #: contained Patients met while mapping a record, by its record key
        self._contained_patients: dict[int, tuple[dict, str, _UnitScope]] = {}
        self.handlers: dict[str, Callable] = {
            "Patient": self.patient,
            "Condition": self.condition,
            "Observation": self.observation,
            "Procedure": self.procedure,
            "Immunization": self.immunization,
            "AllergyIntolerance": self.allergy,
            "MedicationRequest": self.medication,
            "MedicationStatement": self.medication,
            "MedicationDispense": self.medication,
            "Encounter": self.encounter,
            "QuestionnaireResponse": self.questionnaire_response,
            "Organization": self.organization,
            "Medication": self.medication_resource,
        }

    # -- entry points ----------------------------------------------------------------
    def unit(self, unit: Unit) -> None:
        run = self.run
        if unit.bundle is not None:
            ctx = run.begin(
                unit.source, unit.bundle_location or "file", "Bundle", unit.bundle.get("id")
            )
            run.skip(
                ctx,
                f"container ({unit.bundle.get('type') or 'no type'}); its entries are "
                "counted separately",
            )
        for loc, note in unit.notes:
            c = run.begin(unit.source, loc, "Bundle.entry", None)
            run.skip(c, note)
        scope = _UnitScope(unit)
        for entry in unit.entries:
            self.resource(entry, unit.source, scope)

    def resource(self, entry: Entry, source: str, scope: _UnitScope) -> None:
        res = entry.resource
        rtype = res.get("resourceType")
        rid = res.get("id")
        run = self.run
        if not isinstance(rtype, str) or not rtype:
            ctx = run.begin(source, entry.location, "(no resourceType)", rid, entry.raw or res)
            run.reject(ctx, "resourceType", None, "no resourceType: not a FHIR resource")
            return
        if rtype not in R4_RESOURCE_TYPES:
            ctx = run.begin(source, entry.location, rtype, rid, entry.raw or res)
            run.reject(ctx, "resourceType", rtype, f"unknown resourceType {rtype!r} (not FHIR R4)")
            return
        ctx = run.begin(source, entry.location, rtype, rid, entry.raw or res)
        handler = self.handlers.get(rtype)
        if handler is None:
            reason = (
                "reference data (used to resolve references)"
                if rtype in REFERENCE_TYPES
                else "resource type not used by pophealth"
            )
            run.skip(ctx, reason)
            return
        status = res.get("status")
        withdrawing = self._withdrawing(res, rtype)
        if withdrawing is not None:
            okey = self._order_key(res, rtype)
            pid, pref = self._evidence_patient(res, scope)
            if okey is not None and (pid is not None or pref is not None):
                run.withdraw(okey, pid, pref)
                run.skip(ctx, withdrawing)
            else:
                run.skip(
                    ctx,
                    f"{withdrawing}: withdraws nothing (it names no "
                    + ("identifier or id" if okey is None else "patient")
                    + " to match an earlier version by)",
                )
            return
        if rtype == "MedicationDispense" and status != "completed":
            # in progress, on hold, declined …: nothing was handed over (yet)
            run.skip(
                ctx, f"dispense status {status or '(none)'}: only a completed dispense is a supply"
            )
            return
        if isinstance(status, str) and (
            status in SKIP_STATUSES or status in NOT_YET.get(rtype, ())
        ):
            run.skip(ctx, f"status {status}")
            return
        intent = res.get("intent")
        if (
            rtype == "MedicationRequest"
            and isinstance(intent, str)
            and intent in NOT_ISSUED_INTENTS
        ):
            run.skip(ctx, f"intent {intent} ({NOT_ISSUED_INTENTS[intent]})")
            return
        if rtype in MEDICATION_TYPES and any(
            c.get("code") == "inpatient" for c in _codings(res.get("category"))
        ):
            run.skip(ctx, INPATIENT_REASON)
            return
        try:
            handler(res, ctx, scope, entry)
        except _BadNhsNumber as exc:
            self._contained_patients.pop(ctx.rkey, None)
            run.reject(ctx, exc.field, exc.value, exc.reason)
            return
        except (AttributeError, TypeError, ValueError, KeyError, IndexError) as exc:
            self._contained_patients.pop(ctx.rkey, None)
            run.reject(ctx, "", None, f"malformed {rtype}: {type(exc).__name__}: {exc}")
            return
        # A contained Patient is a patients row of the record that holds it: only when the
        # record itself was neither quarantined (no date, no code …) nor skipped; else it
        # would load a patient for a record that did not (and count the record twice).
        pending = self._contained_patients.pop(ctx.rkey, None)
        if pending is not None and ctx.outcome is None:
            self._emit_patient(pending[0], pending[1], ctx, pending[2])
        if ctx.emitted and ctx.outcome is None and rtype in RECORD_TYPES:
            # the record's identity: a later entered-in-error version withdraws its rows, and
            # a version in a later --append run replaces them
            okey = self._order_key(res, rtype)
            if okey is not None:
                run.order(ctx, okey)
            if rtype == "MedicationRequest":
                self._prescribed(res, ctx, scope, entry)
            elif rtype == "MedicationDispense":
                pid, pref = self._evidence_patient(res, scope)
                for key in self._authorising_keys(res, scope):
                    run.link(ctx, key, pid, pref)
        run.end(ctx)

    def _prescribed(self, res: dict, ctx: Any, scope: _UnitScope, entry: Entry) -> None:
        """A prescription loaded, under every form a reference to it may take: a dispense of
        it (its ``authorizingPrescription``: the same key and patient, see
        :meth:`_authorising_keys`) is the same supply, counted once (:meth:`Run.prescribed`)."""
        pid, pref = self._evidence_patient(res, scope)
        if pid is None and pref is None:
            return
        for handle in sorted(_resource_keys("MedicationRequest", res, entry.full_url)):
            self.run.prescribed(ctx, self.pseudo.key_of(f"dispensed-as:{handle}"), pid, pref)

    def _authorising_keys(self, res: dict, scope: _UnitScope) -> list[str]:
        """The links of a dispense to the prescriptions it supplies (see :meth:`_prescribed`):
        each ``authorizingPrescription`` as ``MedicationRequest/id`` (a bare id is one),
        ``urn:uuid``/fullUrl or ``identifier:system|value``; every form of one resolved in
        the Bundle. A contained prescription is no loaded record: no link."""
        handles: set[str] = set()
        for ref in _list(res.get("authorizingPrescription")):
            if not isinstance(ref, dict) or _ref_type(ref) not in (None, "MedicationRequest"):
                continue
            r = ref.get("reference")
            if isinstance(r, str) and r.strip() and not r.strip().startswith("#"):
                r = r.strip()
                target = scope.get(r)
                if isinstance(target, dict) and target.get("resourceType") == "MedicationRequest":
                    handles |= _resource_keys("MedicationRequest", target, None)
                if "/" in r or r.startswith(("urn:uuid:", "urn:oid:")):
                    handles.add(_ref_key(r))
                else:  # a bare id: the type is the element's
                    handles.add(f"MedicationRequest/{r}")
            ident = ref.get("identifier")
            if isinstance(ident, dict) and isinstance(ident.get("value"), (str, int)):
                handles.add(_identifier_key(ident.get("system"), ident["value"]))
        return [self.pseudo.key_of(f"dispensed-as:{h}") for h in sorted(handles)]

    @staticmethod
    def _withdrawing(res: dict, rtype: str) -> str | None:
        """The skip reason when ``res`` is a version of a record that says it was entered in
        error, refuted, cancelled or not done (it withdraws the record; see
        :data:`WITHDRAWING_RECORD_STATUSES`), else None."""
        if rtype in VERIFIED_TYPES:
            ver = {str(c.get("code")) for c in _codings(res.get("verificationStatus"))}
            if ver & WITHDRAWING_VERIFICATION:
                return "verificationStatus " + "/".join(sorted(ver))
        status = res.get("status")
        if isinstance(status, str) and status in WITHDRAWING_RECORD_STATUSES.get(rtype, ()):
            return f"status {status}"
        return None

    # -- patients --------------------------------------------------------------------
    def pid_of(self, patient: dict, *, contained_in: str | None = None) -> str:
        """``patient_id`` of a Patient: the keyed hash of its NHS number, else of its id (or,
        contained, its first identifier). Raises :class:`_BadNhsNumber` when its NHS number
        identifier is not a valid NHS number (see :func:`nhs_number_problem`)."""
        nhs = _identifier_value(patient, NHS_NUMBER_SYSTEMS)
        if nhs:
            problem = nhs_number_problem(nhs)
            if problem:
                where = "Patient (contained)" if contained_in else "Patient"
                raise _BadNhsNumber(f"{where}.identifier (NHS number)", nhs, problem)
            return self.pseudo.nhs(nhs)
        if patient.get("id") and contained_in is None:
            return self.pseudo("fhir", f"Patient/{patient['id']}")
        for ident in _list(patient.get("identifier")):
            if isinstance(ident, dict) and ident.get("value"):
                return self.pseudo("ident", f"{ident.get('system') or ''}|{ident['value']}")
        return self.pseudo("fhir-contained", f"{contained_in}#{patient.get('id')}")

    def _patient_ref(
        self, res: dict, ctx, scope: _UnitScope, *fields: str, required: bool = True
    ) -> tuple[str | None, str | None, bool]:
        """(patient_id, reference key, ok). Quarantines the resource when not ok."""
        ref = None
        used = fields[0]
        for f in fields:
            if isinstance(res.get(f), dict):
                ref, used = res[f], f
                break
        if ref is None:
            if required:
                self.run.reject(
                    ctx,
                    f"{ctx.record_type}.{fields[0]}",
                    None,
                    f"no {fields[0]}: the record names no patient",
                )
            return None, None, False
        field_name = f"{ctx.record_type}.{used}"
        rtype = _ref_type(ref)
        if rtype not in (None, "Patient"):
            self.run.reject(
                ctx, field_name, ref.get("reference"), f"{used} is a {rtype}, not a Patient"
            )
            return None, None, False
        r = ref.get("reference")
        if isinstance(r, str) and r.strip():
            r = r.strip()
            if r.startswith("#"):
                for c in _list(res.get("contained")):
                    if isinstance(c, dict) and c.get("id") == r[1:]:
                        if c.get("resourceType") != "Patient":
                            self.run.reject(
                                ctx,
                                field_name,
                                r,
                                f"contained {c.get('resourceType')} is not a Patient",
                            )
                            return None, None, False
                        container = f"{ctx.record_type}/{ctx.record_id or ctx.rkey}"
                        pid = self._referred_pid(c, field_name, contained_in=container)
                        # emitted once the record itself is known to load (see resource())
                        self._contained_patients[ctx.rkey] = (c, pid, scope)
                        return pid, None, True
                self.run.reject(
                    ctx, field_name, r, "dangling reference: no such contained resource"
                )
                return None, None, False
            local = scope.get(r)
            if local is not None:
                if local.get("resourceType") != "Patient":
                    self.run.reject(
                        ctx,
                        field_name,
                        r,
                        f"{used} is a {local.get('resourceType')}, not a Patient",
                    )
                    return None, None, False
                key = id(local)
                if key not in scope.pids:
                    scope.pids[key] = self._referred_pid(local, field_name)
                return scope.pids[key], None, True
            if "?" in r:
                m = re.search(r"identifier=([^&]*)", r)
                if m:
                    from urllib.parse import unquote

                    system, _, value = unquote(m.group(1)).rpartition("|")
                    return self._by_identifier(system, value, f"{field_name}.reference")
            return None, self.pseudo.key_of(_ref_key(r)), True
        ident = ref.get("identifier")
        if isinstance(ident, dict) and ident.get("value"):
            return self._by_identifier(
                ident.get("system") or "", str(ident["value"]), f"{field_name}.identifier"
            )
        if required:
            self.run.reject(ctx, field_name, None, f"{used} has neither reference nor identifier")
        return None, None, False

    def _referred_pid(self, patient: dict, field_: str, *, contained_in: str | None = None) -> str:
        """:meth:`pid_of` a Patient a record refers to; an invalid NHS number in it
        quarantines the record, naming the reference."""
        try:
            return self.pid_of(patient, contained_in=contained_in)
        except _BadNhsNumber as exc:
            raise _BadNhsNumber(
                f"{field_} -> {exc.field}", exc.value, f"the Patient it refers to: {exc.reason}"
            ) from None

    def _by_identifier(
        self, system: str, value: str, field_: str = "patient reference"
    ) -> tuple[str | None, str | None, bool]:
        if _system_uri_is(system, NHS_NUMBER_SYSTEMS):
            problem = nhs_number_problem(value)
            if problem:
                raise _BadNhsNumber(field_, value, problem)
            return self.pseudo.nhs(value), None, True
        return (
            None,
            self.pseudo.key_of(_identifier_key(system, value)),
            True,
        )

    def patient(self, res: dict, ctx, scope: _UnitScope, entry: Entry) -> None:
        key = id(res)
        try:
            pid = scope.pids.get(key) or self.pid_of(res)
        except _BadNhsNumber as exc:
            # Quarantined (by resource()), not loaded under its id either: the same person
            # may be loaded elsewhere under the right number. Records in other files that
            # refer to this Patient (by id, fullUrl or another identifier) find it, and
            # are quarantined saying why, not as references to nobody.
            stand_in = self.pseudo("invalid-nhs", f"{ctx.source}|{ctx.location}")
            for k in _resource_keys("Patient", res, entry.full_url):
                self.run.index("patient", self.pseudo.key_of(k), stand_in)
            where = f"{ctx.source}, {ctx.location}"
            self.run.refuse_patient(ctx, stand_in, f"{where}: {exc.field} {exc.reason}")
            raise
        scope.pids[key] = pid
        self._emit_patient(res, pid, ctx, scope)
        for k in _resource_keys("Patient", res, entry.full_url):
            self.run.index("patient", self.pseudo.key_of(k), pid)
        self._merge_links(res, pid, ctx, scope)

    def _merge_links(self, res: dict, pid: str, ctx, scope: _UnitScope) -> None:
        """The Patient's links to a record it was merged with (``Patient.link``):
        ``replaced-by`` says this record must no longer be used, the other one in its place;
        ``replaces`` says the other must no longer be used. Each is a merge, applied at the
        end when the record used in its place is loaded (:meth:`Run.merge`). ``refer`` and
        ``seealso`` (another record of the same person, both still in use) change nothing."""
        for link in _list(res.get("link")):
            if not isinstance(link, dict) or link.get("type") not in ("replaced-by", "replaces"):
                continue
            other = link.get("other")
            if not isinstance(other, dict) or _ref_type(other) not in (None, "Patient"):
                continue  # a RelatedPerson is not a patient record
            target = self._link_target(other, scope)
            if target is None:
                continue
            t_pid, t_key = target
            if link["type"] == "replaced-by":
                self.run.merge(ctx.rkey, old_pid=pid, new_pid=t_pid, new_key=t_key)
            else:
                self.run.merge(None, old_pid=t_pid, old_key=t_key, new_pid=pid)

    def _link_target(self, other: dict, scope: _UnitScope) -> tuple[str | None, str | None] | None:
        """(patient_id, hashed reference) of the Patient a link names: its patient_id when it
        is in the same Bundle or named by NHS number, else its reference, resolved at the
        end; None when it names none (a contained resource, or an invalid NHS number)."""
        r = other.get("reference")
        if isinstance(r, str) and r.strip():
            r = r.strip()
            if r.startswith("#"):
                return None
            local = scope.get(r)
            if local is not None:
                if local.get("resourceType") != "Patient":
                    return None
                try:
                    return self.pid_of(local), None
                except _BadNhsNumber:
                    return None
            return None, self.pseudo.key_of(_ref_key(r))
        ident = other.get("identifier")
        if isinstance(ident, dict) and ident.get("value"):
            try:
                t_pid, t_key, _ = self._by_identifier(
                    ident.get("system") or "", str(ident["value"])
                )
            except _BadNhsNumber:
                return None
            return t_pid, t_key
        return None

    def _emit_patient(self, res: dict, pid: str, ctx, scope: _UnitScope) -> None:
        birth = _date(res.get("birthDate"))
        gender = str(res.get("gender") or "").lower()
        sex = gender if gender in ("female", "male") else "unknown"
        eth5, eth16 = ethnicity_groups(self._ethnicity(res))
        death = _date(res.get("deceasedDateTime"))
        self.run.emit(
            "patients",
            {
                "patient_id": pid,
                "date_of_birth": birth,
                "sex": sex,
                "ethnicity_5": eth5,
                "ethnicity_16": eth16,
                "date_of_death": death,
            },
            ctx,
        )
        for addr in _list(res.get("address")):
            if not isinstance(addr, dict):
                continue
            period = addr.get("period") if isinstance(addr.get("period"), dict) else {}
            if addr.get("use") == "old" and not period.get("start"):
                continue  # an old address without dates cannot be placed in time
            if addr.get("use") in ("work", "billing"):
                continue  # not where the patient lives
            dates = _period_dates(period, "start_date", "end_date")
            dates["start_date"] = dates["start_date"] or birth
            self.run.emit(
                "addresses",
                {
                    "patient_id": pid,
                    **dates,
                    "lsoa_code": self._lsoa(addr),
                    "care_home": _is_care_home(addr),
                },
                ctx,
            )
        declared = _registration_start(res)
        if declared:
            # used only if the patient has no recorded registration (see infer.py)
            self.run.evidence({"kind": "start", "patient_id": pid, "date": declared})
        start = declared or birth
        for gp in _list(res.get("generalPractitioner")):
            ods, name = self._gp_practice(gp, res, scope)
            if ods:
                self.run.emit(
                    "registrations",
                    {"patient_id": pid, "practice_id": ods, "start_date": start, "end_date": None},
                    ctx,
                )
                self.run.emit("practices", {"practice_id": ods, "name": name}, ctx)
            elif (oref := self._deferred_gp(gp, scope)) is not None:
                # an Organization in another file: its ODS code is looked up at the end
                self.run.emit(
                    "registrations",
                    {"patient_id": pid, "practice_id": None, "start_date": start, "end_date": None},
                    ctx,
                    mref=oref,
                )

    @staticmethod
    def _ethnicity(res: dict) -> str | None:
        races: list[str] = []
        text_hint = None
        for ext in _list(res.get("extension")):
            if not isinstance(ext, dict):
                continue
            url = str(ext.get("url") or "").lower()
            if "ethniccategory" in url or "ethnic-category" in url:
                for c in _codings(ext.get("valueCodeableConcept")):
                    letter = ethnicity_letter(c.get("code"))
                    if letter:
                        return letter
                letter = ethnicity_from_text(_get(ext, "valueCodeableConcept", "text"))
                if letter:
                    return letter
            elif url.endswith("us-core-race"):
                for sub in _list(ext.get("extension")):
                    if not isinstance(sub, dict):
                        continue
                    if sub.get("url") == "ombCategory":
                        code = str(_get(sub, "valueCoding", "code") or "").lower()
                        letter = US_RACE.get(code)
                        if letter and letter not in races:
                            races.append(letter)
                    elif sub.get("url") == "text":
                        text_hint = sub.get("valueString")
        known = [r for r in races if r != "Z"]
        if len(known) > 1:
            return "G"
        if known:
            return known[0]
        if races:
            return "Z"
        return ethnicity_from_text(text_hint) if text_hint else None

    @staticmethod
    def _lsoa(addr: dict) -> str | None:
        for ext in _list(addr.get("extension")):
            if not isinstance(ext, dict):
                continue
            for sub in [ext, *_list(ext.get("extension"))]:
                if not isinstance(sub, dict):
                    continue
                for k, v in sub.items():
                    if k.startswith("value"):
                        code = v.get("code") if isinstance(v, dict) else v
                        if isinstance(v, dict) and "coding" in v:
                            code = _get(v, "coding", "code")
                        if isinstance(code, str) and _LSOA_RE.fullmatch(code.strip()):
                            return code.strip()
        for k in ("district", "text"):
            v = addr.get(k)
            if isinstance(v, str) and _LSOA_RE.fullmatch(v.strip()):
                return v.strip()
        return None

    def _gp_practice(self, gp: Any, res: dict, scope: _UnitScope) -> tuple[str | None, str | None]:
        if not isinstance(gp, dict):
            return None, None
        ident = gp.get("identifier")
        if isinstance(ident, dict) and _system_uri_is(ident.get("system"), ODS_SYSTEMS):
            return str(ident.get("value") or "").strip() or None, gp.get("display")
        r = gp.get("reference")
        target = _resolve(r, res, scope) if isinstance(r, str) else None
        if isinstance(target, dict) and target.get("resourceType") == "PractitionerRole":
            org = target.get("organization")
            if isinstance(org, dict):
                return self._gp_practice(org, target, scope)
        if isinstance(target, dict) and target.get("resourceType") == "Organization":
            ods = _identifier_value(target, ODS_SYSTEMS)
            if ods:
                return ods, target.get("name")
        return None, None

    def _deferred_gp(self, gp: Any, scope: _UnitScope) -> str | None:
        """Hashed key of a generalPractitioner reference to an Organization in another file."""
        if not isinstance(gp, dict):
            return None
        r = gp.get("reference")
        if not isinstance(r, str) or r.startswith("#") or scope.get(r) is not None:
            return None
        if _ref_type(gp) not in ("Organization", None) or "?" in r:
            return None
        return self.pseudo.key_of(_ref_key(r))

    def organization(self, res: dict, ctx, scope, entry) -> None:
        ods = _identifier_value(res, ODS_SYSTEMS)
        # every organisation: what an Encounter.serviceProvider in another file resolves
        # to when a registration is inferred from encounters
        keys = _resource_keys("Organization", res, entry.full_url)
        if keys:
            practice, name, is_gp = self._provider_of(res)
            for k in keys:
                self.run.index(
                    "provider", self.pseudo.key_of(k), practice, name, "1" if is_gp else None
                )
        if ods:
            # by id, urn:uuid, fullUrl and identifier (conditional references): what a
            # Patient.generalPractitioner or an Encounter.serviceProvider in another file
            # resolves to
            for k in keys:
                self.run.index("organization", self.pseudo.key_of(k), ods, None)
        if not ods:
            self.run.skip(ctx, "organisation without an ODS code")
            return
        types = (
            " ".join(
                str(c.get("display") or "") + " " + str(c.get("code") or "")
                for c in _codings(res.get("type"))
            )
            + " "
            + " ".join(str(_get(t, "text") or "") for t in _list(res.get("type")))
        )
        role_codes = {str(c.get("code")) for c in _codings(res.get("type"))}
        if not (
            _GP_TYPE_RE.search(types)
            or "76" in role_codes
            or "RO76" in role_codes
            or _GP_TYPE_RE.search(str(res.get("name") or ""))
        ):
            self.run.skip(ctx, "organisation that is not a GP practice")
            return
        lsoa = None
        for addr in _list(res.get("address")):
            if isinstance(addr, dict):
                lsoa = lsoa or self._lsoa(addr)
        self.run.emit(
            "practices", {"practice_id": ods, "name": res.get("name"), "lsoa_code": lsoa}, ctx
        )

    # -- events ----------------------------------------------------------------------
    def _events(
        self,
        res,
        ctx,
        scope,
        codes_cc,
        when,
        *,
        patient_fields=("subject", "patient"),
        value=None,
        unit=None,
        extra=(),
        code_field="code",
        date_field="effective[x]",
    ) -> None:
        pid, pref, ok = self._patient_ref(res, ctx, scope, *patient_fields)
        if not ok:
            return
        known, unknown = _known(codes_cc)
        rows = [(s, c, value, unit) for s, c in known] + list(extra)
        if not rows:
            if unknown:
                self.run.reject(
                    ctx,
                    f"{ctx.record_type}.{code_field}.coding.system",
                    ", ".join(unknown),
                    "code system not used by pophealth (none of: " + ", ".join(CODE_SYSTEMS) + ")",
                )
            else:
                self.run.reject(ctx, f"{ctx.record_type}.{code_field}", None, "no code")
            return
        if when is None:
            self.run.reject(
                ctx,
                f"{ctx.record_type}.{date_field}",
                None,
                "no date: the record does not say when it happened",
            )
            return
        date, stamp = _date(when), _datetime(when)
        for system, code, v, u in rows:
            self.run.emit(
                "events",
                {
                    "patient_id": pid,
                    "date": date,
                    "datetime": stamp,
                    "system": system,
                    "code": code,
                    "value": v,
                    "unit": u,
                },
                ctx,
                pref=pref,
            )

    def condition(self, res, ctx, scope, entry) -> None:
        # refuted / entered-in-error: withdraws the record (see resource())
        self._events(
            res,
            ctx,
            scope,
            res.get("code"),
            _when(res, "onset") or res.get("recordedDate") or _when(res, "abatement"),
            date_field="onset[x]",
        )

    def procedure(self, res, ctx, scope, entry) -> None:
        self._events(
            res, ctx, scope, res.get("code"), _when(res, "performed"), date_field="performed[x]"
        )

    def immunization(self, res, ctx, scope, entry) -> None:
        self._events(
            res,
            ctx,
            scope,
            res.get("vaccineCode"),
            _when(res, "occurrence") or res.get("recorded"),
            patient_fields=("patient",),
            code_field="vaccineCode",
            date_field="occurrence[x]",
        )

    def allergy(self, res, ctx, scope, entry) -> None:
        self._events(
            res,
            ctx,
            scope,
            res.get("code"),
            _when(res, "onset") or res.get("recordedDate") or res.get("lastOccurrence"),
            patient_fields=("patient",),
            date_field="onset[x]",
        )

    def observation(self, res, ctx, scope, entry) -> None:
        value, unit = _obs_value(res)
        extra = []
        for comp in _list(res.get("component")):
            if not isinstance(comp, dict):
                continue
            cv, cu = _obs_value(comp)
            for s, c in _known(comp.get("code"))[0]:
                extra.append((s, c, cv, cu))
            for s, c in _known(comp.get("valueCodeableConcept"))[0]:
                extra.append((s, c, None, None))
        for s, c in _known(res.get("valueCodeableConcept"))[0]:
            extra.append((s, c, None, None))
        self._events(
            res,
            ctx,
            scope,
            res.get("code"),
            _when(res, "effective") or res.get("issued"),
            value=value,
            unit=unit,
            extra=extra,
        )

    # -- medications -----------------------------------------------------------------
    def medication_resource(self, res, ctx, scope, entry) -> None:
        known, _ = _known(res.get("code"), medication=True)
        best = _preferred(known, ("dmd", "snomedct", "rxnorm", "bnf"))
        if best and res.get("id"):
            keys = {f"Medication/{res['id']}", f"urn:uuid:{str(res['id']).lower()}"}
            if entry.full_url:
                keys.add(_ref_key(entry.full_url))
            for k in keys:
                self.run.index("medication", self.pseudo.key_of(k), *best)
        self.run.skip(ctx, "reference data (used to resolve medicationReference)")

    def medication(self, res, ctx, scope, entry) -> None:
        rtype = ctx.record_type
        pid, pref, ok = self._patient_ref(res, ctx, scope, "subject", "patient")
        if not ok:
            return
        best, mref = None, None
        cc = res.get("medicationCodeableConcept")
        mr = res.get("medicationReference")
        allowed = ("dmd", "snomedct", "rxnorm", "bnf")
        unknown: list[str] = []
        if cc is not None:
            known, unknown = _known(cc, medication=True)
            best = _preferred(known, allowed)
        elif isinstance(mr, dict) and isinstance(mr.get("reference"), str):
            r = mr["reference"].strip()
            target = _resolve(r, res, scope)
            if target is not None:
                known, unknown = _known(target.get("code"), medication=True)
                best = _preferred(known, allowed)
            elif not r.startswith("#"):
                mref = self.pseudo.key_of(_ref_key(r))
        if best is None and mref is None:
            if unknown:
                self.run.reject(
                    ctx,
                    f"{rtype}.medication[x]",
                    ", ".join(unknown),
                    "medicine code system not used by pophealth (dm+d, SNOMED CT, RxNorm, BNF)",
                )
            else:
                self.run.reject(ctx, f"{rtype}.medication[x]", None, "no medicine code")
            return
        if rtype == "MedicationRequest":
            # EPS prescription messages carry no authoredOn; the prescription is
            # valid from the day it was issued.
            when = (
                res.get("authoredOn")
                or _get(res, "dispenseRequest", "validityPeriod", "start")
                or scope.message_date
            )
            qty = _get(res, "dispenseRequest", "quantity")
        elif rtype == "MedicationDispense":
            when = res.get("whenHandedOver") or res.get("whenPrepared")
            qty = res.get("quantity")
        else:
            when = _when(res, "effective") or res.get("dateAsserted")
            qty = None
        if when is None:
            self.run.reject(ctx, f"{rtype}.date", None, "no date of issue")
            return
        dosages = [
            d
            for d in _list(res.get("dosageInstruction") or res.get("dosage"))
            if isinstance(d, dict)
        ]
        dose_text = "; ".join(str(d["text"]) for d in dosages if d.get("text")) or None
        qty = qty if isinstance(qty, dict) else {}
        self.run.emit(
            "medications",
            {
                "patient_id": pid,
                "date": _date(when),
                "system": best[0] if best else None,
                "code": best[1] if best else None,
                "quantity": _num(qty.get("value")),
                "quantity_unit": qty.get("unit") or qty.get("code"),
                "dose": dose_text,
                "daily_dose_mg": _daily_dose_mg(dosages),
            },
            ctx,
            pref=pref,
            mref=mref,
        )

    def _order_key(self, res: dict, rtype: str) -> str | None:
        """Hashed identity of the record (for a medication record, of the order it is about):
        its EPS order item number (with the order number, ``groupIdentifier``), else its first
        identifier (in sorted order), else its id; None when it has none of these. A
        cancelled or entered-in-error version with the same key and patient withdraws it; a
        version in a later ``--append`` run replaces it. The resource type is part of the
        key (Condition/1 and Observation/1 are different records)."""
        group = _get(res, "groupIdentifier", "value")
        group = str(group).strip() if isinstance(group, (str, int)) else ""
        idents = sorted(
            (str(i.get("system") or "").strip().lower().rstrip("/"), str(i["value"]).strip())
            for i in _list(res.get("identifier"))
            if isinstance(i, dict)
            and isinstance(i.get("value"), (str, int))
            and str(i["value"]).strip()
        )
        eps = [v for sy, v in idents if sy in EPS_ITEM_SYSTEMS]
        if eps:
            key = f"eps-item|{group.upper()}|{eps[0].lower()}"
        elif idents:
            key = f"identifier|{idents[0][0]}|{idents[0][1]}"
        elif res.get("id"):
            key = f"id|{res['id']}"
        else:
            return None
        return self.pseudo.key_of(f"order:{rtype}|{key}")

    # -- encounters ------------------------------------------------------------------
    def encounter(self, res, ctx, scope, entry) -> None:
        classes = {
            str(c.get("code") or "").upper() for c in _list(res.get("class")) if isinstance(c, dict)
        }
        classes |= {str(c.get("code") or "").upper() for c in _codings(res.get("class"))}
        if classes & INPATIENT_CLASSES:
            kind = "admissions"
        elif classes & EMERGENCY_CLASSES:
            kind = "emergency_attendances"
        elif classes & PRIMARY_CARE_CLASSES:
            self._primary_care_evidence(res, scope)
            self.run.skip(
                ctx, "ambulatory encounter (not loaded; evidence for an inferred registration)"
            )
            return
        else:
            self.run.skip(ctx, "encounter that is neither inpatient nor emergency")
            return
        pid, pref, ok = self._patient_ref(res, ctx, scope, "subject", "patient")
        if not ok:
            return
        period = res.get("period") if isinstance(res.get("period"), dict) else {}
        diag_pairs = self._encounter_diagnoses(res, scope)
        provider, oref = self._service_provider(res, scope)
        if kind == "admissions":
            icd = [c for s, c in diag_pairs if s == "icd10"]
            opcs = [c for s, c in self._encounter_procedures(res, scope) if s == "opcs4"]
            self.run.emit(
                "admissions",
                {
                    "patient_id": pid,
                    "spell_id": _get(res, "identifier", "value") or res.get("id"),
                    **_period_dates(period, "admission_date", "discharge_date"),
                    "admission_method": _admission_method(res),
                    "primary_diagnosis": icd[0] if icd else None,
                    "all_diagnoses": icd or None,
                    "procedures": opcs or None,
                    "critical_care": None,
                    "provider": provider,
                },
                ctx,
                pref=pref,
                mref=oref,
            )
        else:
            first = diag_pairs[0] if diag_pairs else (None, None)
            self.run.emit(
                "emergency_attendances",
                {
                    "patient_id": pid,
                    "arrival_datetime": period.get("start"),
                    "departure_datetime": period.get("end"),
                    "diagnosis_system": first[0],
                    "diagnosis": first[1],
                    "discharge_destination": _discharge_destination(res),
                    "first_analgesia_datetime": None,
                    "provider": provider,
                },
                ctx,
                pref=pref,
                mref=oref,
            )

    def _service_provider(self, res: dict, scope: _UnitScope) -> tuple[str | None, str | None]:
        """(ODS code, hashed reference) of an Encounter's serviceProvider: the code from its
        identifier, or from the Organization it refers to when that is contained or in the
        same Bundle; else the hashed key of the reference, which the run resolves at the end
        through the index of every Organization read in any file of the run."""
        sp = res.get("serviceProvider")
        if not isinstance(sp, dict):
            return None, None
        ident = sp.get("identifier")
        if isinstance(ident, dict) and _system_uri_is(ident.get("system"), ODS_SYSTEMS):
            return str(ident.get("value") or "").strip() or None, None
        r = sp.get("reference")
        if not isinstance(r, str) or not r.strip():
            return None, None
        r = r.strip()
        org = _resolve(r, res, scope)
        if org is not None:
            if org.get("resourceType") != "Organization":
                return None, None
            return _identifier_value(org, ODS_SYSTEMS), None
        if r.startswith("#") or _ref_type(sp) not in ("Organization", None):
            return None, None
        m = re.search(r"identifier=([^&]*)", r) if "?" in r else None
        if m:
            from urllib.parse import unquote

            system, _, value = unquote(m.group(1)).rpartition("|")
            if _system_uri_is(system, ODS_SYSTEMS) and value.strip():
                return value.strip(), None  # Organization?identifier=<ODS system>|<code>
        return None, self._org_ref_key(r)

    def _primary_care_evidence(self, res: dict, scope: _UnitScope) -> None:
        """Spill (patient, serviceProvider, date, general-practice style?) of an ambulatory
        encounter; :mod:`pophealth.ingest.infer` turns these into registrations for patients
        whose source records none. Never quarantines: the encounter is not a loaded row."""
        when = _date(_get(res, "period", "start") or _get(res, "period", "end"))
        sp = res.get("serviceProvider")
        if when is None or not isinstance(sp, dict):
            return
        pid, pref = self._evidence_patient(res, scope)
        if pid is None and pref is None:
            return
        practice = name = mref = None
        is_gp = False
        ident = sp.get("identifier")
        r = sp.get("reference")
        if isinstance(ident, dict) and ident.get("value"):
            system, value = str(ident.get("system") or ""), str(ident["value"]).strip()
            practice = value if _system_uri_is(system, ODS_SYSTEMS) else self._org_id(system, value)
            name = sp.get("display")
        elif isinstance(r, str) and r.strip():
            org = _resolve(r.strip(), res, scope)
            if isinstance(org, dict) and org.get("resourceType") == "Organization":
                practice, name, is_gp = self._provider_of(org)
            elif org is None and not r.startswith("#"):
                mref = self._org_ref_key(r.strip())
        if practice is None and mref is None:
            return
        types = " ".join(str(c.get("display") or "") for c in _codings(res.get("type"))) + " ".join(
            str(_get(t, "text") or "") for t in _list(res.get("type"))
        )
        codes = {str(c.get("code") or "") for c in _codings(res.get("type"))}
        is_gp = is_gp or bool(codes & GP_ENCOUNTER_CODES) or bool(_GP_ENCOUNTER_RE.search(types))
        self.run.evidence(
            {
                "kind": "encounter",
                "patient_id": pid,
                "_pref": pref,
                "practice_id": practice,
                "_mref": mref,
                "name": name,
                "is_gp": "1" if is_gp else None,
                "date": when,
            }
        )

    def _evidence_patient(self, res: dict, scope: _UnitScope) -> tuple[str | None, str | None]:
        """(patient_id, hashed reference) of ``subject`` — like :meth:`_patient_ref` but
        quiet: an unusable reference (an invalid NHS number too) just means no evidence."""
        try:
            return self._quiet_patient(res, scope)
        except _BadNhsNumber:
            return None, None

    def _quiet_patient(self, res: dict, scope: _UnitScope) -> tuple[str | None, str | None]:
        ref = res.get("subject") if isinstance(res.get("subject"), dict) else res.get("patient")
        if not isinstance(ref, dict) or _ref_type(ref) not in (None, "Patient"):
            return None, None
        r = ref.get("reference")
        if isinstance(r, str) and r.strip() and not r.strip().startswith("#"):
            r = r.strip()
            local = scope.get(r)
            if local is not None:
                if local.get("resourceType") != "Patient":
                    return None, None
                key = id(local)
                if key not in scope.pids:
                    scope.pids[key] = self.pid_of(local)
                return scope.pids[key], None
            if "?" in r:
                m = re.search(r"identifier=([^&]*)", r)
                if not m:
                    return None, None
                from urllib.parse import unquote

                system, _, value = unquote(m.group(1)).rpartition("|")
                return self._by_identifier(system, value)[:2]
            return None, self.pseudo.key_of(_ref_key(r))
        ident = ref.get("identifier")
        if isinstance(ident, dict) and ident.get("value"):
            return self._by_identifier(ident.get("system") or "", str(ident["value"]))[:2]
        return None, None

    def _org_ref_key(self, ref: str) -> str | None:
        """Hashed index key of a reference to an Organization in another file."""
        if "?" in ref:
            m = re.search(r"identifier=([^&]*)", ref)
            if not m:
                return None
            from urllib.parse import unquote

            system, _, value = unquote(m.group(1)).rpartition("|")
            return self.pseudo.key_of(_identifier_key(system, value))
        return self.pseudo.key_of(_ref_key(ref))

    def _org_id(self, system: str, value: str) -> str:
        """Practice id of an organisation without an ODS code: ``org-`` and 16 hex digits of
        a keyed hash of its identifier (or ``Organization/id``) — stable across files."""
        return "org-" + self.pseudo("org", f"{system.strip().lower()}|{value.strip()}")[:16]

    def _provider_of(self, org: dict) -> tuple[str | None, str | None, bool]:
        """(practice id, name, is a GP practice) of an Organization resource."""
        ods = _identifier_value(org, ODS_SYSTEMS)
        practice = ods
        if practice is None:
            for ident in _list(org.get("identifier")):
                if isinstance(ident, dict) and ident.get("value"):
                    practice = self._org_id(str(ident.get("system") or ""), str(ident["value"]))
                    break
        if practice is None and org.get("id"):
            practice = self._org_id("Organization", str(org["id"]))
        types = " ".join(
            f"{c.get('code') or ''} {c.get('display') or ''}" for c in _codings(org.get("type"))
        ) + " ".join(str(_get(t, "text") or "") for t in _list(org.get("type")))
        role_codes = {str(c.get("code")) for c in _codings(org.get("type"))}
        is_gp = bool(role_codes & {"76", "RO76"}) or bool(_GP_ORG_TYPE_RE.search(types))
        name = org.get("name")
        return practice, name if isinstance(name, str) else None, is_gp

    def _encounter_procedures(self, res: dict, scope: _UnitScope) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for ext in _list(res.get("extension")):
            if isinstance(ext, dict) and "procedure" in str(ext.get("url") or "").lower():
                out += _known(ext.get("valueCodeableConcept"))[0]
        return out

    def _encounter_diagnoses(self, res: dict, scope: _UnitScope) -> list[tuple[str, str]]:
        ranked = []
        for i, d in enumerate(_list(res.get("diagnosis"))):
            if not isinstance(d, dict):
                continue
            rank = d.get("rank")
            try:
                rank = int(rank)
            except (TypeError, ValueError):
                rank = 1000 + i
            cond = d.get("condition") if isinstance(d.get("condition"), dict) else {}
            r = cond.get("reference")
            target = _resolve(r, res, scope) if isinstance(r, str) else None
            pairs = _known(target.get("code"))[0] if isinstance(target, dict) else []
            ranked.append((rank, pairs))
        out: list[tuple[str, str]] = []
        for _, pairs in sorted(ranked, key=lambda x: x[0]):
            out += [p for p in sorted(pairs, key=lambda p: p[0] != "icd10") if p not in out]
        for cc in _list(res.get("reasonCode")):
            out += [p for p in _known(cc)[0] if p not in out]
        return out

    # -- questionnaires --------------------------------------------------------------
    def questionnaire_response(self, res, ctx, scope, entry) -> None:
        questionnaire = res.get("questionnaire")
        if not isinstance(questionnaire, str) or not questionnaire.strip():
            # (the response's own identifier names the response, not the questionnaire)
            self.run.reject(
                ctx,
                "QuestionnaireResponse.questionnaire",
                None,
                "no questionnaire: the response does not say which questionnaire it answers",
            )
            return
        pid, pref, ok = self._patient_ref(res, ctx, scope, "subject", "source")
        if not ok:
            return
        response_id = res.get("id") or _get(res, "identifier", "value")
        rows = list(_answers(_list(res.get("item"))))
        if not rows:
            self.run.skip(ctx, "questionnaire response without answers")
            return
        for link_id, text, number, code in rows:
            self.run.emit(
                "questionnaire_responses",
                {
                    "patient_id": pid,
                    "response_id": response_id,
                    "questionnaire": questionnaire,
                    "authored": res.get("authored"),
                    "link_id": link_id,
                    "answer_text": text,
                    "answer_number": number,
                    "answer_code": code,
                },
                ctx,
                pref=pref,
            )


UCUM = "http://unitsofmeasure.org"


def _quantity_unit(q: dict) -> Any:
    """The unit of a Quantity: its UCUM code when the Quantity is coded in UCUM (the same
    unit then reads the same whichever display text the source chose: ``mm[Hg]``, not
    "millimeter of mercury"), else its unit text, else its code."""
    code = q.get("code")
    if isinstance(code, str) and code.strip() and _system_uri_is(q.get("system"), (UCUM,)):
        return code.strip()
    return q.get("unit") or code


def _obs_value(res: dict) -> tuple[Any, str | None]:
    q = res.get("valueQuantity")
    if isinstance(q, dict) and q.get("value") is not None:
        unit = _quantity_unit(q)
        if q.get("comparator"):
            # "<5" is not 5: kept as text with its comparator, which validation
            # quarantines (the store has no comparator column)
            return f"{q['comparator']}{q['value']}", unit
        return _num(q.get("value")), unit
    for k in ("valueInteger", "valueDecimal"):
        if res.get(k) is not None:
            return _num(res[k]), None
    return None, None


def _answers(items: list, parent: str | None = None):
    for item in items:
        if not isinstance(item, dict):
            continue
        link = item.get("linkId") or parent
        for ans in _list(item.get("answer")):
            if not isinstance(ans, dict):
                continue
            text = number = code = None
            for k, v in ans.items():
                if not k.startswith("value"):
                    continue
                if k in ("valueCoding",) and isinstance(v, dict):
                    code, text = v.get("code"), v.get("display") or v.get("code")
                elif k in ("valueDecimal", "valueInteger"):
                    number, text = _num(v), str(v)
                elif k == "valueQuantity" and isinstance(v, dict):
                    number = _num(v.get("value"))
                    text = f"{v.get('value')} {v.get('unit') or v.get('code') or ''}".strip()
                elif k == "valueBoolean":
                    text = str(v).lower()
                elif k == "valueReference" and isinstance(v, dict):
                    text = v.get("display") or v.get("reference")
                elif k == "valueAttachment" and isinstance(v, dict):
                    text = v.get("title") or v.get("url")
                elif not isinstance(v, (dict, list)):
                    text = str(v)
            yield link, text, number, code
            yield from _answers(_list(ans.get("item")), link)
        yield from _answers(_list(item.get("item")), link)


def _is_care_home(addr: dict) -> bool:
    text = " ".join(str(x) for x in _list(addr.get("line")) + [addr.get("text") or ""]).lower()
    return "care home" in text or "nursing home" in text


def _registration_start(res: dict) -> str | None:
    for ext in _list(res.get("extension")):
        if not isinstance(ext, dict) or "registration" not in str(ext.get("url") or "").lower():
            continue
        for sub in [ext, *_list(ext.get("extension"))]:
            if isinstance(sub, dict) and isinstance(sub.get("valuePeriod"), dict):
                start = sub["valuePeriod"].get("start")
                if start:
                    return _date(start)
    return None


_ADMISSION_METHODS = {"1": "elective", "2": "emergency", "3": "maternity"}


def _admission_method(res: dict) -> str:
    for ext in _list(res.get("extension")):
        if isinstance(ext, dict) and "admissionmethod" in str(ext.get("url") or "").lower():
            for c in _codings(ext.get("valueCodeableConcept")):
                code = str(c.get("code") or "")
                if code[:1] in _ADMISSION_METHODS:
                    return _ADMISSION_METHODS[code[:1]]
                if code.startswith("8"):
                    return "transfer"
    for c in _codings(_get(res, "hospitalization", "admitSource")):
        code = str(c.get("code") or "").lower()
        if code in ("hosp-trans", "nursing", "psych", "rehab"):
            return "transfer"
        if code in ("emd",):
            return "emergency"
        if code in ("born",):
            return "maternity"
    for c in _codings(res.get("priority")):
        code = str(c.get("code") or "").upper()
        if code in ("EM", "UR", "S", "A", "CR"):
            return "emergency"
        if code in ("EL", "R", "P"):
            return "elective"
    types = " ".join(str(c.get("display") or "") for c in _codings(res.get("type"))).lower()
    if "emergency" in types:
        return "emergency"
    if "elective" in types:
        return "elective"
    return "other"


def _discharge_destination(res: dict) -> str | None:
    for c in _codings(_get(res, "hospitalization", "dischargeDisposition")):
        code = str(c.get("code") or "").lower()
        if code in ("home", "alt-home", "01", "1", "306689006"):
            return "home"
        if code in ("exp", "died", "dead"):
            return "died"
        if code in ("hosp", "other-hcf", "long", "snf", "rehab", "psy"):
            return "transfer"
        if code in ("admitted", "inp"):
            return "admitted"
        if code:
            return "other"
    return None


_PER_DAY = {"d": 1.0, "h": 24.0, "wk": 1 / 7, "mo": 1 / 30, "min": 1440.0}
#: Dose units (UCUM codes, and the words sources write) -> mg.
_MG_PER_UNIT = {
    "mg": 1.0,
    "milligram": 1.0,
    "milligrams": 1.0,
    "g": 1000.0,
    "gram": 1000.0,
    "grams": 1000.0,
    "ug": 0.001,
    "mcg": 0.001,
    "µg": 0.001,
    "microgram": 0.001,
    "micrograms": 0.001,
}


def _daily_dose_mg(dosages: list[dict]) -> float | None:
    """mg a day from structured dosage instructions taken together (one ``sequence``, or
    none given: their doses add up); None when any is not structured in mg, g or micrograms,
    or when they follow one another (different ``sequence`` numbers, e.g. a reducing course
    of prednisolone 40 mg for 2 days, then 35 mg …: no one daily dose)."""
    if len({str(d.get("sequence")) for d in dosages}) > 1:
        return None
    total = 0.0
    for d in dosages:
        rate = _list(d.get("doseAndRate"))
        dose = _get(rate, "doseQuantity") if rate else None
        repeat = _get(d, "timing", "repeat")
        if not isinstance(dose, dict) or not isinstance(repeat, dict):
            return None
        unit = str(_quantity_unit(dose) or "").strip().lower()
        try:
            value = float(dose.get("value"))
            freq = float(repeat.get("frequency") or 1)
            period = float(repeat.get("period") or 1)
        except (TypeError, ValueError):
            return None
        factor = _PER_DAY.get(str(repeat.get("periodUnit") or ""))
        scale = _MG_PER_UNIT.get(unit)
        if factor is None or scale is None or period <= 0:
            return None
        total += value * scale * freq / period * factor
    return round(total, 6) if dosages and total > 0 else None


# -- driver ------------------------------------------------------------------------------


#: Inputs smaller than this are read in-process (a worker pool costs more than it saves).
PARALLEL_MIN_BYTES = 16 * 2**20
#: Plain NDJSON files larger than this are split between workers by byte range.
SPLIT_MIN_BYTES = 64 * 2**20
#: Smallest amount of input handed to a worker at once.
TASK_MIN_BYTES = 8 * 2**20


def _jobs(files: list[Path], workers: int) -> list[tuple[Path, tuple[int, int] | None]]:
    jobs: list[tuple[Path, tuple[int, int] | None]] = []
    for f in files:
        name = f.name.lower()
        if (
            workers > 1
            and name.endswith((".ndjson", ".jsonl"))
            and f.stat().st_size > (SPLIT_MIN_BYTES)
        ):
            jobs += [(f, r) for r in split_ranges(f, workers * 2)]
        else:
            jobs.append((f, None))
    return jobs


def _map_job(job: tuple[Path, tuple[int, int] | None], mapper: FhirMapper) -> None:
    path, byte_range = job
    run = mapper.run
    for item in iter_units(path, byte_range=byte_range):
        if isinstance(item, Unreadable):
            run.reject_unparsed(item.source, item.location, "(unreadable)", item.reason, item.raw)
        else:
            mapper.unit(item)


def _worker(args) -> dict:
    """Map a list of jobs in a worker process; returns the worker run's state."""
    jobs, key, run_id, slot, batch_rows, tmp_dir = args
    run = Run(
        ".",
        kind="fhir",
        worker=True,
        run_id=run_id,
        rkey_start=slot << 40,
        batch_rows=batch_rows,
        tmp_dir=tmp_dir,
    )
    mapper = FhirMapper(run, Pseudonymiser(key))
    for job in jobs:
        _map_job(job, mapper)
    return run.export()


def ingest_fhir(
    paths: list[str | os.PathLike],
    out: str | os.PathLike,
    *,
    key: bytes,
    append: bool = False,
    strict: bool = False,
    progress: Callable[[str, float], None] | None = None,
    batch_rows: int = 50_000,
    workers: int | None = None,
    registrations: str = "infer-missing",
) -> IngestSummary:
    """Import FHIR R4 files/directories into the store at ``out`` (see module docs).

    ``progress(description, fraction_done)`` is called now and then. ``workers``
    processes read and map in parallel (default: one per CPU for inputs over 16 MiB;
    large plain NDJSON files are split by byte range). ``registrations="infer-missing"``
    (default) infers a registration from primary-care encounters for patients whose
    source records none (:mod:`pophealth.ingest.infer`); ``"recorded"`` does not. Returns
    the reconciled
    :class:`IngestSummary`; the store is written once, atomically, at the end.
    """
    files, ignored = find_files(paths)
    run = Run(
        out,
        kind="fhir",
        append=append,
        strict=strict,
        batch_rows=batch_rows,
        registrations=registrations,
    )
    try:
        note = files_note("files ignored (not .json/.ndjson/.jsonl/.xml[.gz])", ignored)
        if note:
            run.notes.append(note)
        sizes = {f: f.stat().st_size for f in files}
        total = sum(sizes.values()) or 1
        if workers is None:
            workers = (os.cpu_count() or 1) if total >= PARALLEL_MIN_BYTES else 1
        run.files += [str(f) for f in files]
        jobs = _jobs(files, workers)
        if workers <= 1:
            mapper = FhirMapper(run, Pseudonymiser(key))
            done = 0
            for job in jobs:
                if progress:
                    progress(f"reading {job[0].name}", done / total)
                _map_job(job, mapper)
                done += sizes[job[0]] if job[1] is None else job[1][1] - job[1][0]
        else:
            _map_parallel(run, jobs, sizes, total, key, workers, batch_rows, progress)
        if progress:
            progress("resolving references and validating", 1.0)
        summary = run.finish(
            provenance={
                "source": "fhir",
                "inputs": [str(p) for p in paths],
                "files": len(files),
                "append": append,
            },
            progress=(lambda d: progress(d, 1.0)) if progress else None,
        )
    except BaseException:
        run.quarantine.close()
        run.cleanup()
        raise
    return summary


def _map_parallel(run, jobs, sizes, total, key, workers, batch_rows, progress) -> None:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    def weight(job):
        return sizes[job[0]] if job[1] is None else job[1][1] - job[1][0]

    # Tasks of about total / (4 x workers) bytes (at least 8 MiB), biggest jobs first, so
    # that thousands of small Bundle files do not become thousands of worker runs.
    target = max(total // (4 * workers), TASK_MIN_BYTES)
    tasks: list[list] = []
    size = 0
    for job in sorted(jobs, key=weight, reverse=True):
        if not tasks or size + weight(job) > target:
            tasks.append([])
            size = 0
        tasks[-1].append(job)
        size += weight(job)
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
    done = 0
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = {
            pool.submit(_worker, (task, key, run.run_id, slot + 1, batch_rows, run.tmp)): task
            for slot, task in enumerate(tasks)
        }
        for fut in as_completed(futures):
            run.absorb(fut.result())
            done += sum(weight(j) for j in futures[fut])
            if progress:
                progress(f"read {futures[fut][0][0].name}", done / total)


__all__ = ["FhirMapper", "ingest_fhir"]
