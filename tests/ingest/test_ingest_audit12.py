"""Audit 12 of ingest: raw NHS numbers through flat ingest, EPS cancellations and dispense
status, Organizations resolved across the files of one FHIR run, OMOP values written only
in ``value_source_value`` and RxNorm Extension concepts."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pophealth.cli import app
from pophealth.ingest.fhir import INPATIENT_REASON, ingest_fhir
from pophealth.ingest.flat import RawNhsNumbers, ingest_csv
from pophealth.ingest.omop import RXNORM_EXTENSION, ingest_omop
from pophealth.ingest.pseudonym import nhs_number_valid
from pophealth.store import Store
from tests.ingest.ingest_helpers import omop_weights

KEY = b"audit12-key-0123456789abcdef"


def _quarantine(summary) -> pd.DataFrame:
    if summary.quarantine_file is None:
        return pd.DataFrame(columns=["location", "field", "reason", "file"])
    return pd.read_csv(summary.quarantine_file, dtype=str, keep_default_na=False)


# -- OMOP: value_source_value, RxNorm Extension ------------------------------------------


def test_omop_number_only_in_value_source_value_is_read(tmp_path):
    d = omop_weights(
        tmp_path / "omop",
        "measurement_id,person_id,measurement_concept_id,measurement_date,value_as_number,"
        "value_source_value,operator_concept_id\n"
        "1,1,3025315,2013-05-17,48.1,48.1,\n"
        "2,1,3025315,2013-05-18,,49.5,\n"  # the number only in the source value
        '3,1,3025315,2013-05-19,," 1,050.25 ",\n'  # thousands separator, spaces
        "4,1,3025315,2013-05-20,,Negative (qualifier value),\n"  # text: no value
        "5,1,3025315,2013-05-21,,<5,\n"  # a comparator: quarantined, not stored as 5
        "6,1,3025315,2013-05-22,,7,4171756\n"  # operator '<' applies to it too
        "7,1,3025315,2013-05-23,60,61,\n",  # value_as_number wins
    )
    s = ingest_omop(d, tmp_path / "st", key=KEY)
    assert s.balanced
    ev = Store.open(tmp_path / "st").read("events").to_pandas().sort_values("date")
    got = dict(zip(ev.date.astype(str), ev.value, strict=True))
    assert got["2013-05-17"] == 48.1
    assert got["2013-05-18"] == 49.5
    assert got["2013-05-19"] == 1050.25
    assert pd.isna(got["2013-05-20"])
    assert got["2013-05-23"] == 60.0
    q = _quarantine(s).set_index("location")
    assert q.loc["line 6", "reason"].startswith("a value with a comparator")
    assert q.loc["line 7", "reason"].startswith("a value with a comparator")
    assert len(ev) == 5


def _omop_drugs(folder, drug_rows: str):
    folder.mkdir(parents=True)
    (folder / "concept.csv").write_text(
        "concept_id,concept_name,domain_id,vocabulary_id,concept_class_id,standard_concept,"
        "concept_code\n"
        "21000001,Salbutamol inhaler (RxNorm Ext),Drug,RxNorm Extension,Branded Drug,S,"
        "OMOP1000001\n"
        "35000001,Salbutamol 100mcg inhaler,Drug,dm+d,VMP,,39113611000001102\n"
        "1154343,albuterol,Drug,RxNorm,Ingredient,S,435\n"
    )
    (folder / "person.csv").write_text(
        "person_id,gender_concept_id,year_of_birth,month_of_birth,day_of_birth\n1,8507,1960,5,1\n"
    )
    (folder / "drug_exposure.csv").write_text(
        "drug_exposure_id,person_id,drug_concept_id,drug_source_concept_id,"
        "drug_exposure_start_date,drug_source_value\n" + drug_rows
    )
    return folder


def test_omop_rxnorm_extension_is_never_stored_as_rxnorm(tmp_path):
    d = _omop_drugs(
        tmp_path / "omop",
        "1,1,21000001,35000001,2020-01-01,salbutamol\n"  # the dm+d source concept is used
        "2,1,21000001,0,2020-02-01,salbutamol\n"  # RxNorm Extension only: quarantined
        "3,1,1154343,0,2020-03-01,albuterol\n",  # real RxNorm loads as rxnorm
    )
    s = ingest_omop(d, tmp_path / "st", key=KEY)
    assert s.balanced
    meds = Store.open(tmp_path / "st").read("medications").to_pandas().sort_values("date")
    assert list(zip(meds.system, meds.code, strict=True)) == [
        ("dmd", "39113611000001102"),
        ("rxnorm", "435"),
    ]
    assert not meds.code.str.startswith("OMOP").any()
    q = _quarantine(s).set_index("location")
    assert q.loc["line 3", "reason"] == RXNORM_EXTENSION


# -- NHS numbers: the modulus-11 rule, and raw NHS numbers through flat ingest ------------
#
# NHS Data Dictionary, attribute NHS NUMBER: "10 numeric digits in length. The tenth digit
# is a check digit ... validated using the Modulus 11 algorithm": multiply the first nine
# digits by 10, 9, ... 2; add; take the remainder on dividing by 11; subtract it from 11.
# A result of 11 gives check digit 0; a result of 10 means the number is invalid.
# (archive.datadictionary.nhs.uk, DD Release August 2021, attributes/nhs_number.html)


@pytest.mark.parametrize(
    ("number", "valid"),
    [
        # 9x10+4x9+3x8+4x7+7x6+6x5+5x4+9x3+1x2 = 299 = 27x11 + 2; 11 - 2 = 9: valid
        ("9434765919", True),
        ("943 476 5919", True),  # the 3-3-4 form written with spaces
        ("943-476-5919", True),
        ("9434765918", False),  # the same nine digits with the wrong check digit
        # 4x10+0+1x8+0+2x6+3x5+2x4+1x3+3x2 = 92 = 8x11 + 4; 11 - 4 = 7: valid
        ("4010232137", True),
        # 1x10 + 6x2 = 22 = 2x11 + 0; 11 - 0 = 11, so the check digit is 0
        ("1000000060", True),
        ("1000000061", False),
        # 6x2 = 12 = 11 + 1; 11 - 1 = 10: no check digit makes these nine digits valid
        *[(f"000000006{d}", False) for d in range(10)],
        ("943476591", False),  # nine digits
        ("94347659190", False),  # eleven
        ("943476591X", False),
        ("", False),
        (None, False),
    ],
)
def test_nhs_number_modulus_11_matches_the_data_dictionary_rule(number, valid):
    assert nhs_number_valid([number]).tolist() == [valid]


def test_published_example_nhs_numbers(samples):
    # the NHS test-range numbers of the published NHS EPS API examples pass the check
    numbers: set[str] = set()
    for f in (samples / "fhir" / "uk_eps_prescription_messages").glob("*.json"):
        numbers |= set(re.findall(r'nhs-number",\s*"value":\s*"(\d{10})"', f.read_text()))
    assert numbers >= {"9449304130", "9449304106", "5839945242"}
    assert nhs_number_valid(sorted(numbers)).all()
    # ... and the UK Core Richard Smith example's; the UK Core baby example's does not:
    # 9x10+9x9+1x8+2x7+0+0+3x4+8x3+9x2 = 247 = 22x11 + 5; 11 - 5 = 6, not its last digit 0
    xml = samples / "fhir" / "uk_core_examples_xml"
    richard = re.findall(
        r'nhs-number" />\s*<value value="(\d{10})"',
        (xml / "UKCore-Patient-RichardSmith-Example.xml").read_text(),
    )
    baby = re.findall(
        r'nhs-number" />\s*<value value="(\d{10})"',
        (xml / "UKCore-Patient-BabyPatient-Example.xml").read_text(),
    )
    assert nhs_number_valid(richard).tolist() == [True]
    assert baby == ["9912003890"] and nhs_number_valid(baby).tolist() == [False]


def test_random_ten_digit_ids_pass_about_one_time_in_eleven():
    ids = [f"{x:010d}" for x in np.random.default_rng(12).integers(0, 10**10, 110_000)]
    share = nhs_number_valid(ids).mean()
    assert abs(share - 1 / 11) < 0.003  # 10/11 of prefixes have a check digit; 1 in 10 hits


def _valid_numbers(n: int, seed: int = 1) -> list[str]:
    rng = np.random.default_rng(seed)
    out: list[str] = []
    while len(out) < n:
        ids = [f"{x:010d}" for x in rng.integers(10**9, 10**10, 1000)]
        out += [i for i, ok in zip(ids, nhs_number_valid(ids), strict=True) if ok]
    return out[:n]


def _flat(folder, ids: list[str], *, parquet: bool = False):
    folder.mkdir()
    pats = pd.DataFrame(
        {
            "patient_id": ids,
            "date_of_birth": "1970-01-01",
            "sex": "female",
            "ethnicity_5": "white",
            "ethnicity_16": "A",
        }
    )
    ev = pd.DataFrame(
        {"patient_id": ids, "date": "2020-01-01", "system": "snomedct", "code": "195967001"}
    )
    if parquet:
        pq.write_table(
            pa.Table.from_pandas(pats, preserve_index=False), folder / "patients.parquet"
        )
    else:
        pats.to_csv(folder / "patients.csv", index=False)
    ev.to_csv(folder / "events.csv", index=False)
    return folder


@pytest.mark.parametrize("parquet", [False, True])
def test_flat_file_of_nhs_numbers_is_refused(tmp_path, parquet):
    numbers = _valid_numbers(30)
    d = _flat(tmp_path / "flat", numbers, parquet=parquet)
    with pytest.raises(RawNhsNumbers) as err:
        ingest_csv(d, tmp_path / "st")
    text = str(err.value)
    assert "30 of the 30 distinct 10-digit ids" in text and "--patient-ids" in text
    assert not any(n in text for n in numbers)  # the error does not repeat them
    assert not Store.is_store(tmp_path / "st")  # nothing committed


def test_a_few_nhs_numbers_among_pseudonyms_are_refused(tmp_path):
    ids = [f"p{i:04d}" for i in range(200)] + _valid_numbers(2)
    with pytest.raises(RawNhsNumbers):
        ingest_csv(_flat(tmp_path / "flat", ids), tmp_path / "st")


def test_random_ten_digit_pseudonyms_load(tmp_path):
    ids = [f"{x:010d}" for x in np.random.default_rng(5).integers(0, 10**10, 300)]
    assert 0.04 < nhs_number_valid(ids).mean() < 0.15  # some pass by chance
    s = ingest_csv(_flat(tmp_path / "flat", ids), tmp_path / "st")
    assert s.committed and s.tables["patients"].loaded == 300


def test_pseudonymous_override_takes_nhs_like_ids_as_given(tmp_path):
    ids = _valid_numbers(10)
    s = ingest_csv(_flat(tmp_path / "flat", ids), tmp_path / "st", patient_ids="pseudonymous")
    assert s.committed
    pats = Store.open(tmp_path / "st").read("patients").to_pandas()
    assert sorted(pats.patient_id) == sorted(ids)


def test_nhs_number_mode_pseudonymises_as_fhir_ingest_does(tmp_path):
    ids = ["943 476 5919", "4010232137", "4010232138"]  # the last fails the check
    d = _flat(tmp_path / "flat", ids)
    with pytest.raises(ValueError, match="key"):
        ingest_csv(d, tmp_path / "st", patient_ids="nhs-number")
    s = ingest_csv(d, tmp_path / "st", patient_ids="nhs-number", key=KEY)
    assert s.balanced and s.committed
    assert s.records["csv.patients"].quarantined == 1
    q = _quarantine(s)
    assert set(q.field) == {"patient_id"}
    assert q.reason.str.startswith("not a valid NHS number").all()
    store = Store.open(tmp_path / "st")
    pats = set(store.read("patients").to_pandas().patient_id)
    assert len(pats) == 2 and not pats & set(ids)
    raw = b"".join(p.read_bytes() for p in (tmp_path / "st").rglob("*.parquet"))
    assert b"9434765919" not in raw and b"4010232137" not in raw
    # the same NHS number through FHIR ingest gives the same patient_id
    f = tmp_path / "p.ndjson"
    f.write_text(
        json.dumps(
            {
                "resourceType": "Patient",
                "id": "x",
                "identifier": [
                    {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765919"}
                ],
                "birthDate": "1970-01-01",
            }
        )
        + "\n"
    )
    ingest_fhir([f], tmp_path / "fhir", key=KEY)
    fhir_pid = Store.open(tmp_path / "fhir").read("patients").to_pandas().patient_id.iloc[0]
    assert fhir_pid in pats


def test_cli_patient_ids_option(tmp_path, monkeypatch):
    runner = CliRunner()
    help_text = " ".join(runner.invoke(app, ["ingest", "csv", "--help"]).output.split())
    assert "--patient-ids" in help_text and "nhs-number" in help_text
    d = _flat(tmp_path / "flat", _valid_numbers(12))
    refused = runner.invoke(app, ["ingest", "csv", str(d), "--out", str(tmp_path / "a")])
    assert refused.exit_code == 2
    assert "NHS numbers" in " ".join(refused.output.split())
    monkeypatch.delenv("POPHEALTH_PSEUDONYM_KEY", raising=False)
    no_key = runner.invoke(
        app, ["ingest", "csv", str(d), "--out", str(tmp_path / "b"), "--patient-ids", "nhs-number"]
    )
    assert no_key.exit_code == 2 and "key" in no_key.output
    monkeypatch.setenv("POPHEALTH_PSEUDONYM_KEY", KEY.decode())
    ok = runner.invoke(
        app, ["ingest", "csv", str(d), "--out", str(tmp_path / "c"), "--patient-ids", "nhs-number"]
    )
    assert ok.exit_code == 0, ok.output


# -- Encounter.serviceProvider across the files of one run --------------------------------

ODS = "https://fhir.nhs.uk/Id/ods-organization-code"


def _write(path, resources) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in resources))


def _encounter(eid: str, klass: str, provider: dict | None, start: str = "2021-03-01") -> dict:
    enc = {
        "resourceType": "Encounter",
        "id": eid,
        "status": "finished",
        "class": {"code": klass},
        "subject": {"reference": "Patient/p1"},
        "period": {"start": f"{start}T10:00:00Z", "end": f"{start}T18:00:00Z"},
    }
    if provider is not None:
        enc["serviceProvider"] = provider
    return enc


def test_service_provider_resolves_to_an_organization_in_another_file(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    _write(
        src / "Organization.ndjson",
        [
            {
                "resourceType": "Organization",
                "id": "h1",
                "identifier": [{"system": ODS, "value": "RXH01"}],
                "name": "Royal Hospital",
            },
            {
                "resourceType": "Organization",
                "id": "h2",
                "identifier": [{"system": "https://example.org/orgs", "value": "local-7"}],
                "name": "No ODS code",
            },
            {
                "resourceType": "Organization",
                "id": "h3",
                "identifier": [{"system": ODS, "value": "RXH03"}],
            },
        ],
    )
    _write(src / "Patient.ndjson", [{"resourceType": "Patient", "id": "p1", "birthDate": "1950"}])
    _write(
        src / "Encounter.ndjson",
        [
            _encounter("a1", "IMP", {"reference": "Organization/h1"}, "2021-03-01"),
            _encounter("a2", "IMP", {"reference": "Organization/h2"}, "2021-04-01"),
            _encounter("a3", "IMP", {"reference": "Organization/gone"}, "2021-05-01"),
            _encounter(
                "a4", "IMP", {"reference": "https://server/fhir/Organization/h3"}, "2021-06-01"
            ),
            _encounter(
                "a5",
                "IMP",
                {"reference": f"Organization?identifier={ODS}|RXH05"},
                "2021-07-01",
            ),
            _encounter("e1", "EMER", {"reference": "Organization/h1"}, "2021-08-01"),
        ],
    )
    s = ingest_fhir([src], tmp_path / "st", key=KEY)
    assert s.balanced and s.committed
    store = Store.open(tmp_path / "st")
    adm = store.read("admissions").to_pandas().sort_values("admission_date")
    assert [None if pd.isna(x) else x for x in adm.provider] == [
        "RXH01",
        None,  # the Organization has no ODS code
        None,  # dangling: loaded without a provider, and said so
        "RXH03",
        "RXH05",
    ]
    ed = store.read("emergency_attendances").to_pandas()
    assert list(ed.provider) == ["RXH01"]
    assert any(n.startswith("2 admissions loaded without a provider") for n in s.notes), s.notes


def test_service_provider_resolves_across_append_runs(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    _write(
        a / "Organization.ndjson",
        [
            {
                "resourceType": "Organization",
                "id": "h1",
                "identifier": [{"system": ODS, "value": "RXH01"}],
            }
        ],
    )
    _write(a / "Patient.ndjson", [{"resourceType": "Patient", "id": "p1", "birthDate": "1950"}])
    _write(b / "Encounter.ndjson", [_encounter("a1", "IMP", {"reference": "Organization/h1"})])
    ingest_fhir([a], tmp_path / "st", key=KEY)
    s = ingest_fhir([b], tmp_path / "st", key=KEY, append=True)
    assert s.balanced and s.tables["admissions"].loaded == 1
    assert list(Store.open(tmp_path / "st").read("admissions").to_pandas().provider) == ["RXH01"]


# -- EPS cancellations, entered-in-error records, dispense status --------------------------

EPS_ITEM = "https://fhir.nhs.uk/Id/prescription-order-item-number"
NHS = "https://fhir.nhs.uk/Id/nhs-number"


def _pid(nhs: str) -> str:
    import hashlib
    import hmac

    return hmac.new(KEY, f"nhs:{nhs}".encode(), hashlib.sha256).hexdigest()[:32]


def _eps_orders(folder) -> tuple[set, set]:
    """(issued, cancelled) from the EPS messages read with plain json: issued as (NHS
    number, order number, item number, medicine code), cancelled as (NHS number, order
    number, item number)."""
    issued, cancelled = set(), set()
    for f in sorted(folder.glob("*.json")):
        bundle = json.loads(f.read_text())
        res = [e["resource"] for e in bundle["entry"]]
        nhs = {
            i["value"]
            for r in res
            if r["resourceType"] == "Patient"
            for i in r.get("identifier", [])
            if i.get("system") == NHS
        }
        assert len(nhs) == 1
        (number,) = nhs
        for r in res:
            if r["resourceType"] != "MedicationRequest":
                continue
            item = next(i["value"] for i in r["identifier"] if i["system"] == EPS_ITEM)
            key = (number, r["groupIdentifier"]["value"], item)
            if r["status"] == "cancelled":
                cancelled.add(key)
            else:
                code = r["medicationCodeableConcept"]["coding"][0]["code"]
                issued.add((*key, code))
    return issued, cancelled


def _med_pairs(store_path) -> set:
    meds = Store.open(store_path).read("medications").to_pandas()
    return set(zip(meds.patient_id, meds.code, strict=True))


@pytest.mark.parametrize("workers", [1, 2])  # read in this process, or by two workers
def test_eps_cancellation_withdraws_the_order_item_it_names(samples, tmp_path, workers):
    eps = samples / "fhir" / "uk_eps_prescription_messages"
    issued, cancelled = _eps_orders(eps)
    assert len(cancelled) == 2  # two cancellation messages, one item each
    expected = {(_pid(n), code) for n, o, i, code in issued if (n, o, i) not in cancelled}
    withdrawn = {(_pid(n), code) for n, o, i, code in issued if (n, o, i) in cancelled}
    assert withdrawn and not withdrawn & expected  # the sample can tell the two apart
    s = ingest_fhir([eps], tmp_path / "st", key=KEY, workers=workers)
    assert s.balanced and s.committed
    assert _med_pairs(tmp_path / "st") == expected
    # the withdrawn prescription records are skipped, saying why; none is quarantined
    rc = s.records["MedicationRequest"]
    assert rc.quarantined == 0
    assert any(r.startswith("withdrawn: a cancelled") for r in rc.skip_reasons)
    assert s.tables["medications"].withdrawn >= len(withdrawn)
    assert any("withdraws them" in n for n in s.notes)


def test_eps_cancellation_in_a_later_append_run_removes_the_stored_order(samples, tmp_path):
    eps = samples / "fhir" / "uk_eps_prescription_messages"
    sends, cancels = tmp_path / "sends", tmp_path / "cancels"
    sends.mkdir()
    cancels.mkdir()
    for f in eps.glob("*.json"):
        target = cancels if "Cancel" in f.name else sends
        (target / f.name).write_bytes(f.read_bytes())
    issued, cancelled = _eps_orders(eps)
    everything = {(_pid(n), code) for n, o, i, code in issued}
    expected = {(_pid(n), code) for n, o, i, code in issued if (n, o, i) not in cancelled}
    st = tmp_path / "st"
    ingest_fhir([sends], st, key=KEY)
    assert _med_pairs(st) == everything
    s = ingest_fhir([cancels], st, key=KEY, append=True)
    assert s.balanced and s.committed
    assert _med_pairs(st) == expected
    assert s.tables["medications"].withdrawn_from_store == len(everything - expected)
    # the prescriptions sent again later stay withdrawn (the index keeps the cancellation)
    s = ingest_fhir([sends], st, key=KEY, append=True)
    assert s.balanced and _med_pairs(st) == expected
    assert s.tables["medications"].loaded == 0 and s.tables["medications"].withdrawn > 0


def _med_request(rid: str, status: str, code: str, *, ident: str | None = None) -> dict:
    r = {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": status,
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "authoredOn": "2022-01-10",
        "medicationCodeableConcept": {"coding": [{"system": "https://dmd.nhs.uk", "code": code}]},
        "dispenseRequest": {"quantity": {"value": 28, "unit": "tablet"}},
    }
    if ident:
        r["identifier"] = [{"system": "https://example.org/rx", "value": ident}]
    return r


def test_entered_in_error_version_in_another_file_withdraws_the_prescription(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    _write(src / "Patient.ndjson", [{"resourceType": "Patient", "id": "p1", "birthDate": "1950"}])
    _write(
        src / "MedicationRequest.ndjson",
        [
            _med_request("m1", "active", "39113611000001102"),
            _med_request("m2", "active", "39113611000001102", ident="rx-2"),
            # the same medicine, day and quantity, but another order: stays
            _med_request("m3", "active", "39113611000001102", ident="rx-3"),
            _med_request("m4", "stopped", "322341003"),  # stopped: it was issued
        ],
    )
    _write(
        src / "corrections.ndjson",
        [
            _med_request("m1", "entered-in-error", "39113611000001102"),
            _med_request("other-id", "cancelled", "39113611000001102", ident="rx-2"),
        ],
    )
    s = ingest_fhir([src], tmp_path / "st", key=KEY)
    assert s.balanced
    meds = Store.open(tmp_path / "st").read("medications").to_pandas()
    assert sorted(meds.code) == ["322341003", "39113611000001102"]
    assert s.tables["medications"].withdrawn == 2
    assert s.records["MedicationRequest"].skip_reasons["status entered-in-error"] == 1


def _dispense(did: str, status: str | None, code: str) -> dict:
    d = {
        "resourceType": "MedicationDispense",
        "id": did,
        "subject": {"reference": "Patient/p1"},
        "medicationCodeableConcept": {"coding": [{"system": "https://dmd.nhs.uk", "code": code}]},
        "whenPrepared": "2022-02-01T10:00:00Z",
        "quantity": {"value": 1, "unit": "bottle"},
    }
    if status is not None:
        d["status"] = status
    return d


def test_only_a_completed_dispense_is_a_supply(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    _write(src / "Patient.ndjson", [{"resourceType": "Patient", "id": "p1", "birthDate": "1950"}])
    statuses = ["completed", "in-progress", "preparation", "on-hold", "declined", None]
    _write(
        src / "MedicationDispense.ndjson",
        [_dispense(f"d{i}", st, f"1000{i}") for i, st in enumerate(statuses)],
    )
    s = ingest_fhir([src], tmp_path / "st", key=KEY)
    assert s.balanced
    meds = Store.open(tmp_path / "st").read("medications").to_pandas()
    assert list(meds.code) == ["10000"]
    reasons = s.records["MedicationDispense"].skip_reasons
    assert reasons["dispense status in-progress: only a completed dispense is a supply"] == 1
    assert reasons["dispense status (none): only a completed dispense is a supply"] == 1


def test_uk_core_in_progress_dispense_is_not_loaded(samples, tmp_path):
    xml = samples / "fhir" / "uk_core_examples_xml"
    files = sorted(xml.glob("UKCore-MedicationDispense-*.xml"))
    files += [xml / "UKCore-Patient-RichardSmith-Example.xml"]
    in_progress = [f for f in files if '<status value="in-progress"' in f.read_text()]
    assert [f.name for f in in_progress] == ["UKCore-MedicationDispense-EyeDrops-Example.xml"]
    s = ingest_fhir(files, tmp_path / "st", key=KEY)
    assert s.balanced
    rc = s.records["MedicationDispense"]
    # (the four completed ones are of category inpatient: given on the ward, not issued)
    assert rc.records_in == 5 and rc.loaded == 0
    assert rc.skip_reasons["dispense status in-progress: only a completed dispense is a supply"]
    assert rc.skip_reasons[INPATIENT_REASON] == 4


# -- OMOP person_source_value: NHS numbers only when the file holds NHS numbers ------------


def _hmac(text: str) -> str:
    import hashlib
    import hmac

    return hmac.new(KEY, text.encode(), hashlib.sha256).hexdigest()[:32]


def _omop_persons(folder, source_values: list[str]):
    folder.mkdir(parents=True)
    rows = "".join(f"{i + 1},8507,1960,5,1,{v}\n" for i, v in enumerate(source_values))
    (folder / "person.csv").write_text(
        "person_id,gender_concept_id,year_of_birth,month_of_birth,day_of_birth,"
        "person_source_value\n" + rows
    )
    return folder


def test_omop_local_ten_digit_ids_are_not_taken_for_nhs_numbers(tmp_path):
    local = [f"{x:010d}" for x in np.random.default_rng(3).integers(10**9, 10**10, 60)]
    chance = [v for v, ok in zip(local, nhs_number_valid(local), strict=True) if ok]
    assert 1 <= len(chance) < 30  # a few pass the check by chance
    d = _omop_persons(tmp_path / "omop", local)
    s = ingest_omop(d, tmp_path / "st", key=KEY)
    pats = set(Store.open(tmp_path / "st").read("patients").to_pandas().patient_id)
    assert pats == {_hmac(f"omop:{i + 1}") for i in range(len(local))}
    assert not pats & {_hmac(f"nhs:{v}") for v in chance}
    assert any("person_source_value not read as NHS numbers" in n for n in s.notes)


def test_omop_nhs_numbers_in_person_source_value_are_used(tmp_path):
    numbers = _valid_numbers(20, seed=4)
    values = [*numbers, "1234567890", "local-7"]  # one fails the check, one is not digits
    d = _omop_persons(tmp_path / "omop", values)
    ingest_omop(d, tmp_path / "st", key=KEY)
    pats = set(Store.open(tmp_path / "st").read("patients").to_pandas().patient_id)
    assert pats == {_hmac(f"nhs:{n}") for n in numbers} | {_hmac("omop:21"), _hmac("omop:22")}


def test_a_batch_of_withdrawals_alone_is_committed_or_kept(tmp_path):
    a, b, c = (tmp_path / x for x in "abc")
    for x in (a, b, c):
        x.mkdir()
    patient = {"resourceType": "Patient", "id": "p1", "birthDate": "1950"}
    _write(a / "in.ndjson", [patient, _med_request("m1", "active", "322341003", ident="rx-1")])
    # a later batch with nothing but the cancellation: the stored prescription is removed
    _write(b / "in.ndjson", [_med_request("m1", "cancelled", "322341003", ident="rx-1")])
    st = tmp_path / "st"
    ingest_fhir([a], st, key=KEY)
    s = ingest_fhir([b], st, key=KEY, append=True)
    assert s.committed and s.tables["medications"].withdrawn_from_store == 1
    assert Store.open(st).row_counts()["medications"] == 0
    # a cancellation that comes before its prescription: kept, though nothing loaded
    st2 = tmp_path / "st2"
    _write(c / "in.ndjson", [_med_request("m2", "active", "39113611000001102", ident="rx-2")])
    _write(b / "in.ndjson", [_med_request("m2", "cancelled", "39113611000001102", ident="rx-2")])
    ingest_fhir([a], st2, key=KEY)
    s = ingest_fhir([b], st2, key=KEY, append=True)
    assert not s.committed and any("withdrawals" in n for n in s.notes)
    s = ingest_fhir([c], st2, key=KEY, append=True)
    assert s.tables["medications"].withdrawn == 1
    meds = Store.open(st2).read("medications").to_pandas()
    assert list(meds.code) == ["322341003"]  # m1 of the first batch only


def test_cli_a_run_that_only_withdraws_stored_rows_succeeds(tmp_path, monkeypatch):
    monkeypatch.setenv("POPHEALTH_PSEUDONYM_KEY", KEY.decode())
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    patient = {"resourceType": "Patient", "id": "p1", "birthDate": "1950"}
    _write(a / "in.ndjson", [patient, _med_request("m1", "active", "322341003", ident="rx-1")])
    _write(b / "in.ndjson", [_med_request("m1", "entered-in-error", "322341003", ident="rx-1")])
    st = str(tmp_path / "st")
    runner = CliRunner()
    assert runner.invoke(app, ["ingest", "fhir", str(a), "--out", st]).exit_code == 0
    res = runner.invoke(app, ["ingest", "fhir", str(b), "--out", st, "--append"])
    assert res.exit_code == 0, res.output
    assert "1 loaded by earlier runs removed" in " ".join(res.output.split())
    assert Store.open(st).row_counts()["medications"] == 0


def test_omop_observation_number_in_value_as_string_is_read(tmp_path):
    d = tmp_path / "omop"
    d.mkdir()
    (d / "concept.csv").write_text(
        "concept_id,concept_name,domain_id,vocabulary_id,concept_class_id,standard_concept,"
        "concept_code\n4275495,Tobacco smoking status,Observation,SNOMED,x,S,229819007\n"
    )
    (d / "person.csv").write_text(
        "person_id,gender_concept_id,year_of_birth,month_of_birth,day_of_birth\n1,8507,1960,5,1\n"
    )
    (d / "observation.csv").write_text(
        "observation_id,person_id,observation_concept_id,observation_date,value_as_number,"
        "value_as_string,value_source_value\n"
        "1,1,4275495,2019-03-04,,20,\n"  # OMOP 5.3: the number in value_as_string
        "2,1,4275495,2019-03-05,,ex-smoker,15\n"  # text, then the source value's number
        "3,1,4275495,2019-03-06,,ex-smoker,\n",  # text only: no value
    )
    s = ingest_omop(d, tmp_path / "st", key=KEY)
    assert s.balanced
    ev = Store.open(tmp_path / "st").read("events").to_pandas().sort_values("date")
    assert [None if pd.isna(v) else v for v in ev.value] == [20.0, 15.0, None]


def test_service_provider_resolves_across_windows_of_a_streamed_bundle(tmp_path, monkeypatch):
    from pophealth.ingest import fhir_read

    # read as a stream (as a Bundle over 64 MiB is), in windows of 2 entries
    monkeypatch.setattr(fhir_read, "STREAM_BUNDLE_BYTES", 100)
    monkeypatch.setattr(fhir_read, "STREAM_WINDOW", 2)
    org = {
        "resourceType": "Organization",
        "id": "h1",
        "identifier": [{"system": ODS, "value": "RXH01"}],
    }
    entries = [
        {"fullUrl": "urn:uuid:h1", "resource": org},
        {"resource": {"resourceType": "Patient", "id": "p1", "birthDate": "1950"}},
        *[
            {"resource": _encounter(f"a{i}", "IMP", {"reference": "urn:uuid:h1"}, f"2021-0{i}-01")}
            for i in range(1, 6)
        ],
    ]
    f = tmp_path / "big.json"
    f.write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries}))
    s = ingest_fhir([f], tmp_path / "st", key=KEY)
    assert s.balanced and s.tables["admissions"].loaded == 5
    adm = Store.open(tmp_path / "st").read("admissions").to_pandas()
    assert list(adm.provider) == ["RXH01"] * 5


def test_a_registered_observation_without_a_result_is_not_an_event(tmp_path):
    def obs(oid: str, status: str, when: str) -> dict:
        return {
            "resourceType": "Observation",
            "id": oid,
            "status": status,
            "subject": {"reference": "Patient/p1"},
            "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
            "effectiveDateTime": when,
        }

    f = tmp_path / "in.ndjson"
    _write(
        f,
        [
            {"resourceType": "Patient", "id": "p1", "birthDate": "1950"},
            obs("o1", "final", "2022-03-01"),
            obs("o2", "registered", "2022-04-01"),  # ordered, no result yet: nothing taken
        ],
    )
    s = ingest_fhir([f], tmp_path / "st", key=KEY)
    assert s.balanced
    assert s.records["Observation"].skip_reasons["status registered"] == 1
    ev = Store.open(tmp_path / "st").read("events").to_pandas()
    assert [d.isoformat() for d in ev.date] == ["2022-03-01"]


def test_intended_statements_and_in_progress_questionnaires_are_not_loaded(tmp_path):
    """A MedicationStatement "intended" (to be taken in future) is not an issue, and a
    QuestionnaireResponse "in-progress" (answers still being given) is not a response:
    both loaded as if done. A "stopped" response keeps the answers it was given."""
    pat = {"resourceType": "Patient", "id": "p1", "birthDate": "1950"}

    def statement(sid: str, status: str) -> dict:
        return {
            "resourceType": "MedicationStatement",
            "id": sid,
            "status": status,
            "subject": {"reference": "Patient/p1"},
            "medicationCodeableConcept": {
                "coding": [{"system": "http://snomed.info/sct", "code": "39113611000001102"}]
            },
            "effectiveDateTime": "2022-03-01",
        }

    def response(rid: str, status: str) -> dict:
        return {
            "resourceType": "QuestionnaireResponse",
            "id": rid,
            "status": status,
            "questionnaire": "https://example.org/Questionnaire/ssi",
            "subject": {"reference": "Patient/p1"},
            "authored": "2022-03-02",
            "item": [{"linkId": "q1", "answer": [{"valueBoolean": True}]}],
        }

    f = tmp_path / "in.ndjson"
    _write(
        f,
        [
            pat,
            statement("m1", "active"),
            statement("m2", "intended"),
            response("r1", "completed"),
            response("r2", "in-progress"),
            response("r3", "stopped"),
        ],
    )
    s = ingest_fhir([f], tmp_path / "st", key=KEY)
    assert s.balanced
    assert s.records["MedicationStatement"].skip_reasons["status intended"] == 1
    assert s.records["QuestionnaireResponse"].skip_reasons["status in-progress"] == 1
    store = Store.open(tmp_path / "st")
    assert store.read("medications").num_rows == 1
    answers = store.read("questionnaire_responses").to_pandas()
    assert len(answers) == 2
