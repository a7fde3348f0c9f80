"""An independent audit of the FHIR importer on the real samples (../shared/data/samples/fhir).

Every sample resource is read here with plain ``json`` and ``xml.etree`` (not pophealth's
reader), mapped to the rows docs/ingest.md says it becomes, and the store is compared with
that, table by table and resource type by resource type: what should load loads with the
documented values, what should be skipped (entered-in-error, cancelled, refuted, intents
that are not prescriptions, ambulatory encounters) is not in the store and is counted with
a reason, and in = loaded + quarantined + skipped for every type.

The mapping below is written from the documentation, for the shapes the samples use; it is
deliberately simple (no reference index, no streaming), so that a mistake in the importer
does not repeat here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import xml.etree.ElementTree as ET  # noqa: N817  (test-only; the samples are trusted)
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from pophealth.store import Store

pytestmark = pytest.mark.shared_data

NS = "{http://hl7.org/fhir}"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
SYSTEMS = {
    "http://snomed.info/sct": "snomedct",
    "http://loinc.org": "loinc",
    "http://www.nlm.nih.gov/research/umls/rxnorm": "rxnorm",
    "http://hl7.org/fhir/sid/cvx": "cvx",
    "https://dmd.nhs.uk": "dmd",
    "http://hl7.org/fhir/sid/icd-10": "icd10",
}


# -- independent reading ---------------------------------------------------------------


def _xml(elem: ET.Element) -> dict[str, Any]:
    """An XML element as a dict whose every child is a list (FHIR XML does not say which
    elements repeat); a primitive is its ``value`` attribute."""
    out: dict[str, Any] = {"resourceType": elem.tag.replace(NS, "")}
    if "id" in elem.attrib:
        out["id"] = elem.attrib["id"]
    if "url" in elem.attrib:
        out["url"] = elem.attrib["url"]
    for child in elem:
        name = child.tag.replace(NS, "")
        if name == "div" or not isinstance(child.tag, str):
            continue
        kids = list(child)
        if "value" in child.attrib:
            value: Any = child.attrib["value"]
        elif name in ("resource",) or (
            len(kids) == 1 and kids[0].tag.replace(NS, "")[:1].isupper()
        ):
            value = _xml(kids[0])  # a resource wrapper (entry.resource, contained)
        else:
            value = _xml(child)
            value.pop("resourceType")
        out.setdefault(name, []).append(value)
    return out


def _all(obj: Any, *path: str) -> list:
    """Every value at ``path`` (lists flattened at each step, JSON or the XML above)."""
    items = obj if isinstance(obj, list) else [obj]
    for p in path:
        nxt = []
        for it in items:
            if isinstance(it, dict) and p in it:
                v = it[p]
                nxt += v if isinstance(v, list) else [v]
        items = nxt
    return items


def _one(obj: Any, *path: str) -> Any:
    v = _all(obj, *path)
    return v[0] if v else None


class Res:
    """A sample resource, where it came from, and its Bundle (if any)."""

    def __init__(self, r: dict, file: Path, bundle: dict | None, full_url: str | None):
        self.r, self.file, self.bundle, self.full_url = r, file, bundle, full_url
        self.type = _one(r, "resourceType")


def _expand(obj: dict, file: Path, out: list[Res], bundle=None, full_url=None) -> None:
    if _one(obj, "resourceType") == "Bundle":
        for e in _all(obj, "entry"):
            for r in _all(e, "resource"):
                _expand(r, file, out, obj, _one(e, "fullUrl"))
        return
    out.append(Res(obj, file, bundle, full_url))


def read_samples(folder: Path) -> list[Res]:
    out: list[Res] = []
    for f in sorted(folder.rglob("*")):
        if f.suffix == ".ndjson":
            for line in f.read_text().splitlines():
                if line.strip():
                    _expand(json.loads(line), f, out)
        elif f.suffix == ".json":
            _expand(json.loads(f.read_text()), f, out)
        elif f.suffix == ".xml":
            _expand(_xml(ET.parse(f).getroot()), f, out)
    return out


# -- the documented mapping ------------------------------------------------------------


def _pid(key: bytes, namespace: str, value: str) -> str:
    return hmac.new(key, f"{namespace}:{value}".encode(), hashlib.sha256).hexdigest()[:32]


def _codes(cc: Any, *, medication: bool = False) -> list[tuple[str, str]]:
    out = []
    for c in _all(cc, "coding"):
        system = SYSTEMS.get(str(_one(c, "system")))
        code = _one(c, "code")
        if system and code:
            if medication and system == "snomedct" and str(code)[-10:-3] == "1000001":
                system = "dmd"
            out.append((system, str(code)))
    return out


def _day(value: str) -> dt.date:
    if len(value) == 4:
        return dt.date(int(value), 1, 1)
    if len(value) == 7:
        return dt.date(int(value[:4]), int(value[5:7]), 1)
    return dt.date.fromisoformat(value[:10])


def _utc(value: str | None) -> dt.datetime | None:
    """A dateTime with a time, as UTC (naive, as the store holds it)."""
    if not value or "T" not in value:
        return None
    t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if t.tzinfo is None:
        return t
    return t.astimezone(dt.UTC).replace(tzinfo=None)


def _number(v: Any) -> float | None:
    return None if v is None else float(v)


MG = {"mg": 1.0, "milligram": 1.0, "g": 1000.0, "gram": 1000.0, "microgram": 0.001}
PER_DAY = {"d": 1.0, "h": 24.0, "wk": 1 / 7}


def _daily_mg(dosages: list) -> float | None:
    """mg a day of dosage instructions taken together (one sequence); None for consecutive
    ones (a reducing course) or any dose not structured in mg/g/micrograms."""
    if len({_one(d, "sequence") for d in dosages}) != 1:
        return None
    total = 0.0
    for d in dosages:
        q, rep = _one(d, "doseAndRate", "doseQuantity"), _one(d, "timing", "repeat")
        if q is None or rep is None:
            return None
        unit = _one(q, "code") if _one(q, "system") == "http://unitsofmeasure.org" else None
        scale = MG.get(unit or _one(q, "unit") or "")
        per = PER_DAY.get(_one(rep, "periodUnit"))
        if scale is None or per is None:
            return None
        freq, period = float(_one(rep, "frequency") or 1), float(_one(rep, "period") or 1)
        total += float(_one(q, "value")) * scale * freq / period * per
    return total or None


def _nhs_number_ok(number: str) -> bool:
    """The NHS Data Dictionary's NHS NUMBER rule, written out here: ten digits, the first
    nine weighted 10 … 2, 11 minus the sum's remainder on dividing by 11 (11 -> 0, 10 never
    valid) is the tenth."""
    digits = str(number).strip().replace(" ", "").replace("-", "")
    if len(digits) != 10 or not digits.isdigit():
        return False
    check = (11 - sum(int(d) * (10 - i) for i, d in enumerate(digits[:9])) % 11) % 11
    return check != 10 and check == int(digits[9])


class Expected:
    """What docs/ingest.md says the samples become."""

    def __init__(self, resources: list[Res], key: bytes):
        self.key = key
        self.res = resources
        self.by_ref: dict[str, Res] = {}
        for x in resources:
            rid = _one(x.r, "id")
            if rid:
                self.by_ref.setdefault(f"{x.type}/{rid}", x)
        self.rows: dict[str, set] = defaultdict(set)
        self.skipped: Counter = Counter()  # (type, reason word) expected to be skipped
        self.not_loaded: dict[str, list[str]] = defaultdict(list)
        # prescriptions by (patient, order), and the orders a cancelled or entered-in-error
        # record withdraws (an EPS cancellation names the order item it cancels)
        self.issued: list[tuple[tuple, tuple]] = []
        self.withdrawn: set[tuple] = set()
        for x in resources:
            getattr(self, x.type.lower(), lambda x: None)(x)
        for order, row in self.issued:
            if order not in self.withdrawn:
                self.rows["medications"].add(row)

    # patients ---------------------------------------------------------------------------
    def pid_of(self, pat: dict) -> str | None:
        """None for a Patient whose NHS number fails the check: it is quarantined, and so
        are the records that refer to it."""
        for ident in _all(pat, "identifier"):
            if _one(ident, "system") == NHS:
                number = _one(ident, "value")
                return _pid(self.key, "nhs", number) if _nhs_number_ok(number) else None
        return _pid(self.key, "fhir", f"Patient/{_one(pat, 'id')}")

    def subject(self, x: Res, *fields: str) -> str | None:
        for f in fields or ("subject", "patient"):
            ref = _one(x.r, f, "reference")
            if ref is None:
                continue
            if ref.startswith("#"):
                for c in _all(x.r, "contained"):
                    if _one(c, "id") == ref[1:]:
                        # a contained Patient: its first identifier names it, and it is
                        # a patients row of its own
                        ident = _one(c, "identifier")
                        pid = _pid(
                            self.key, "ident", f"{_one(ident, 'system')}|{_one(ident, 'value')}"
                        )
                        self.patient(Res(c, x.file, None, None), pid)
                        return pid
            if x.bundle is not None:
                for e in _all(x.bundle, "entry"):
                    if _one(e, "fullUrl") == ref:
                        return self.pid_of(_one(e, "resource"))
            target = self.by_ref.get("/".join(ref.split("/")[-2:]))
            return self.pid_of(target.r) if target else None
        return None

    def patient(self, x: Res, pid: str | None = None) -> None:
        birth = _one(x.r, "birthDate")
        pid = pid or self.pid_of(x.r)
        if birth is None or pid is None:
            self.not_loaded["Patient"].append(_one(x.r, "id"))
            return
        sex = _one(x.r, "gender")
        eth = "Z"
        for ext in _all(x.r, "extension"):
            url = _one(ext, "url")
            if url.endswith("Extension-UKCore-EthnicCategory"):
                eth = _one(ext, "valueCodeableConcept", "coding", "code")
            elif url.endswith("us-core-race"):
                omb = [
                    _one(s, "valueCoding", "code")
                    for s in _all(ext, "extension")
                    if _one(s, "url") == "ombCategory"
                ]
                races = {"2106-3": "C", "2054-5": "P", "2028-9": "L"}
                if len(omb) == 1:
                    eth = races.get(omb[0], "S")
        death = _one(x.r, "deceasedDateTime")
        self.rows["patients"].add(
            (
                pid,
                _day(birth),
                sex if sex in ("male", "female") else "unknown",
                eth,
                _day(death) if death else None,
            )
        )

    # events -----------------------------------------------------------------------------
    def _event_rows(self, x: Res, codes, when, value=None, unit=None, extra=()) -> None:
        pid = self.subject(x)
        rows = [(s, c, value, unit) for s, c in codes] + list(extra)
        if pid is None or when is None or not rows:
            self.not_loaded[x.type].append(str(x.file.name))
            return
        for s, c, v, u in rows:
            self.rows["events"].add((pid, _day(when), _utc(when), s, c, v, u))

    def _when(self, x: Res, *prefixes: str) -> str | None:
        for p in prefixes:
            for suffix in ("DateTime", "Instant", "Date", ""):
                v = _one(x.r, p + suffix)
                if isinstance(v, str):
                    return v
            start = _one(x.r, p + "Period", "start")
            if start:
                return start
        return None

    def _ver_skipped(self, x: Res) -> bool:
        ver = {_one(c, "code") for c in _all(x.r, "verificationStatus", "coding")}
        if ver & {"refuted", "entered-in-error"}:
            self.skipped[(x.type, "verificationStatus")] += 1
            return True
        return False

    def condition(self, x: Res) -> None:
        if self._ver_skipped(x):
            return
        when = self._when(x, "onset") or _one(x.r, "recordedDate")
        self._event_rows(x, _codes(_one(x.r, "code")), when)

    def allergyintolerance(self, x: Res) -> None:
        if self._ver_skipped(x):
            return
        when = self._when(x, "onset") or _one(x.r, "recordedDate")
        self._event_rows(x, _codes(_one(x.r, "code")), when)

    def procedure(self, x: Res) -> None:
        self._event_rows(x, _codes(_one(x.r, "code")), self._when(x, "performed"))

    def immunization(self, x: Res) -> None:
        self._event_rows(x, _codes(_one(x.r, "vaccineCode")), self._when(x, "occurrence"))

    @staticmethod
    def _quantity(obj: Any) -> tuple[float | None, str | None]:
        q = _one(obj, "valueQuantity")
        if q is None:
            return None, None
        unit = _one(q, "code") if _one(q, "system") == "http://unitsofmeasure.org" else None
        return _number(_one(q, "value")), unit or _one(q, "unit") or _one(q, "code")

    def observation(self, x: Res) -> None:
        value, unit = self._quantity(x.r)
        extra = []
        for comp in _all(x.r, "component"):
            cv, cu = self._quantity(comp)
            extra += [(s, c, cv, cu) for s, c in _codes(_one(comp, "code"))]
            extra += [(s, c, None, None) for s, c in _codes(_one(comp, "valueCodeableConcept"))]
        extra += [(s, c, None, None) for s, c in _codes(_one(x.r, "valueCodeableConcept"))]
        when = self._when(x, "effective") or _one(x.r, "issued")
        self._event_rows(x, _codes(_one(x.r, "code")), when, value, unit, extra)

    # medications ------------------------------------------------------------------------
    def _medicine(self, x: Res) -> tuple[str, str] | None:
        codes = _codes(_one(x.r, "medicationCodeableConcept"), medication=True)
        ref = _one(x.r, "medicationReference", "reference")
        if ref:
            target = None
            if ref.startswith("#"):
                target = next((c for c in _all(x.r, "contained") if _one(c, "id") == ref[1:]), None)
            else:
                hit = self.by_ref.get("/".join(ref.split("/")[-2:]))
                target = hit.r if hit else None
            codes = _codes(_one(target, "code"), medication=True) if target else []
        for system in ("dmd", "snomedct", "rxnorm"):
            for s, c in codes:
                if s == system:
                    return s, c
        return None

    def _medication_row(self, x: Res, when: str | None, qty: Any, dosages: list) -> None:
        pid, best = self.subject(x), self._medicine(x)
        if pid is None or best is None or when is None:
            self.not_loaded[x.type].append(str(x.file.name))
            return
        texts = [_one(d, "text").strip() for d in dosages if _one(d, "text")]
        self.issued.append(
            (
                (pid, self._order(x)),
                (
                    pid,
                    _day(when),
                    *best,
                    _number(_one(qty, "value")),
                    _one(qty, "unit") or _one(qty, "code"),
                    "; ".join(texts) or None,
                    _daily_mg(dosages),
                ),
            )
        )

    @staticmethod
    def _order(x: Res) -> tuple:
        """The order a medication record is about: its EPS order item (with the order
        number), else its resource id."""
        for ident in _all(x.r, "identifier"):
            if _one(ident, "system") == "https://fhir.nhs.uk/Id/prescription-order-item-number":
                group = _one(x.r, "groupIdentifier", "value")
                return ("eps", group, _one(ident, "value").lower())
        return ("id", x.type, _one(x.r, "id"))

    def medicationrequest(self, x: Res) -> None:
        status, intent = _one(x.r, "status"), _one(x.r, "intent")
        if status in ("cancelled", "entered-in-error"):
            self.withdrawn.add((self.subject(x), self._order(x)))
        if status in ("cancelled", "entered-in-error", "draft"):
            self.skipped[(x.type, f"status {status}")] += 1
            return
        if intent in ("proposal", "plan", "option", "directive", "filler-order", "instance-order"):
            self.skipped[(x.type, f"intent {intent}")] += 1
            return
        if self._inpatient(x):
            return
        when = (
            _one(x.r, "authoredOn")
            or _one(x.r, "dispenseRequest", "validityPeriod", "start")
            or self._message_date(x)
        )
        qty = _one(x.r, "dispenseRequest", "quantity")
        self._medication_row(x, when, qty, _all(x.r, "dosageInstruction"))

    @staticmethod
    def _message_date(x: Res) -> str | None:
        """An EPS message's date: Bundle.timestamp, else its earliest Provenance.recorded."""
        if x.bundle is None:
            return None
        recorded = [
            _one(e, "resource", "recorded")
            for e in _all(x.bundle, "entry")
            if _one(e, "resource", "resourceType") == "Provenance"
        ]
        return _one(x.bundle, "timestamp") or min(filter(None, recorded), default=None)

    def _inpatient(self, x: Res) -> bool:
        """A medication record of category inpatient (given on a ward): skipped."""
        for category in _all(x.r, "category"):
            if any(_one(c, "code") == "inpatient" for c in _all(category, "coding")):
                self.skipped[(x.type, "category inpatient")] += 1
                return True
        return False

    def medicationstatement(self, x: Res) -> None:
        if self._inpatient(x):
            return
        when = self._when(x, "effective") or _one(x.r, "dateAsserted")
        self._medication_row(x, when, None, _all(x.r, "dosage"))

    def medicationdispense(self, x: Res) -> None:
        status = _one(x.r, "status")
        if status != "completed":  # only a completed dispense is a supply
            self.skipped[(x.type, f"dispense status {status}")] += 1
            return
        if self._inpatient(x):
            return
        when = _one(x.r, "whenHandedOver") or _one(x.r, "whenPrepared")
        self._medication_row(x, when, _one(x.r, "quantity"), _all(x.r, "dosageInstruction"))

    # encounters -------------------------------------------------------------------------
    def encounter(self, x: Res) -> None:
        cls = _one(x.r, "class", "code")
        start, end = _one(x.r, "period", "start"), _one(x.r, "period", "end")
        pid = self.subject(x)
        if cls in ("IMP", "ACUTE", "NONAC", "OBSENC"):
            self.rows["admissions"].add(
                (
                    pid,
                    _day(start),
                    _day(end) if end else None,
                    _one(x.r, "identifier", "value") or _one(x.r, "id"),
                )
            )
        elif cls == "EMER":
            self.rows["emergency_attendances"].add((pid, _utc(start), _utc(end)))
        else:
            self.skipped[(x.type, "ambulatory")] += 1

    # questionnaires ---------------------------------------------------------------------
    def questionnaireresponse(self, x: Res) -> None:
        questionnaire = _one(x.r, "questionnaire")
        # a response without its questionnaire is quarantined, contained Patient and all
        pid = self.subject(x, "subject", "source") if questionnaire else None
        if questionnaire is None or pid is None:
            self.not_loaded[x.type].append(str(x.file.name))
            return

        def answers(items, parent=None):
            for item in items:
                link = _one(item, "linkId") or parent
                for ans in _all(item, "answer"):
                    yield link, ans
                    yield from answers(_all(ans, "item"), link)
                yield from answers(_all(item, "item"), link)

        for link, ans in answers(_all(x.r, "item")):
            number = _one(ans, "valueDecimal") or _one(ans, "valueInteger")
            code = _one(ans, "valueCoding", "code")
            self.rows["questionnaire_responses"].add(
                (pid, _one(x.r, "id"), questionnaire, link, _number(number), code)
            )


# -- the audit -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def audit(samples: Path, key: bytes, tmp_path_factory):
    from pophealth.ingest.fhir import ingest_fhir

    out = tmp_path_factory.mktemp("fhir_audit") / "store"
    summary = ingest_fhir([samples / "fhir"], out, key=key)
    expected = Expected(read_samples(samples / "fhir"), key)
    return summary, Store.open(out), expected


def _rows(store: Store, table: str, cols: list[str]) -> set:
    t = store.read(table).select(cols).to_pylist()
    out = set()
    for r in t:
        vals = []
        for c in cols:
            v = r[c]
            if isinstance(v, float):
                v = round(v, 9)
            vals.append(v)
        out.add(tuple(vals))
    return out


def _rounded(rows: set) -> set:
    return {tuple(round(v, 9) if isinstance(v, float) else v for v in r) for r in rows}


def test_every_resource_type_balances_and_skips_say_why(audit):
    summary, _, expected = audit
    counted = Counter(x.type for x in expected.res)
    for rtype, n in counted.items():
        rc = summary.records[rtype]
        assert rc.records_in == n, rtype
        assert rc.records_in == rc.loaded + rc.quarantined + rc.skipped, rtype
        assert sum(rc.skip_reasons.values()) == rc.skipped, rtype
    for (rtype, word), n in expected.skipped.items():
        reasons = summary.records[rtype].skip_reasons
        assert sum(v for k, v in reasons.items() if word in k) == n, (rtype, word, reasons)


def test_patients_land_with_documented_values(audit):
    _, store, expected = audit
    got = _rows(
        store, "patients", ["patient_id", "date_of_birth", "sex", "ethnicity_16", "date_of_death"]
    )
    assert got == expected.rows["patients"]


def test_events_are_exactly_the_documented_rows(audit):
    _, store, expected = audit
    got = _rows(
        store, "events", ["patient_id", "date", "datetime", "system", "code", "value", "unit"]
    )
    want = _rounded(expected.rows["events"])
    assert not (want - got), sorted(want - got, key=str)[:10]
    assert not (got - want), sorted(got - want, key=str)[:10]


def test_medications_are_exactly_the_documented_rows(audit):
    _, store, expected = audit
    cols = ["patient_id", "date", "system", "code", "quantity", "quantity_unit", "dose"]
    got = _rows(store, "medications", [*cols, "daily_dose_mg"])
    want = _rounded(expected.rows["medications"])
    assert not (want - got), sorted(want - got, key=str)[:10]
    assert not (got - want), sorted(got - want, key=str)[:10]
    # UK Core and EPS doses are written "milligram" (UCUM mg): they have daily doses
    doses = {(r[2], r[3], r[1].isoformat()): r[-1] for r in got}
    assert doses[("dmd", "39732311000001104", "2021-02-15")] == 2000.0  # 500 mg 4 a day
    assert doses[("dmd", "13892511000001100", "2008-02-27")] == 25.0  # 5 mg 5 a day
    # (the UK Core MedicationRequests with mg doses are intent "option": not issued)
    assert sum(r[-1] is not None for r in got) == 3


def test_encounters_land_as_admissions_and_attendances(audit):
    _, store, expected = audit
    got = _rows(store, "admissions", ["patient_id", "admission_date", "discharge_date", "spell_id"])
    assert got == expected.rows["admissions"]
    got = _rows(
        store, "emergency_attendances", ["patient_id", "arrival_datetime", "departure_datetime"]
    )
    assert got == expected.rows["emergency_attendances"]


def test_questionnaire_answers_land_one_row_each(audit):
    _, store, expected = audit
    cols = ["patient_id", "response_id", "questionnaire", "link_id", "answer_number", "answer_code"]
    got = _rows(store, "questionnaire_responses", cols)
    assert got == _rounded(expected.rows["questionnaire_responses"])
