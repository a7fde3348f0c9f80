"""Ingest throughput: FHIR bulk NDJSON (resources/s) and OMOP CSV (rows/s).

Makes a bulk-export-shaped NDJSON set by cloning real Synthea records from
../shared/data/samples (new ids, references rewired; a built-in minimal template is
used when the samples are absent), ingests it, and prints resources/s, peak memory,
sizes and the machine. Memory should stay flat as --resources grows (streaming).

    uv run python benchmarks/bench_ingest.py --resources 200000
    uv run python benchmarks/bench_ingest.py --resources 200000 --registrations recorded

The Synthea Organizations (the encounters' serviceProviders) are copied in beside the
clones, so that registrations are inferred from the ambulatory encounters as they are for
real Synthea data (``--registrations recorded`` to time the ingest without the inference).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import resource
import shutil
import tempfile
import time
import uuid
from pathlib import Path

SAMPLES = (
    Path(
        os.environ.get(
            "POPHEALTH_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"
        )
    )
    / "samples"
)
BULK = SAMPLES / "fhir" / "synthea_bulk_pathling_9pt"
KEY = b"benchmark-key-0123456789"

#: Share of each resource type in the generated set (roughly a Synthea record).
MIX = {
    "Observation": 0.6,
    "Condition": 0.08,
    "Procedure": 0.1,
    "MedicationRequest": 0.06,
    "Immunization": 0.04,
    "Encounter": 0.12,
}
PER_PATIENT = 150


def _templates() -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    if BULK.is_dir():
        for name in ["Patient", *MIX]:
            lines = (BULK / f"{name}.ndjson").read_text().splitlines()[:50]
            out[name] = [json.loads(x) for x in lines]
        return out
    subj = {"reference": "Patient/x"}
    out["Patient"] = [
        {"resourceType": "Patient", "id": "x", "gender": "female", "birthDate": "1970-01-01"}
    ]
    out["Observation"] = [
        {
            "resourceType": "Observation",
            "status": "final",
            "subject": subj,
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "effectiveDateTime": "2020-01-01T10:00:00Z",
            "valueQuantity": {"value": 70, "unit": "/min"},
        }
    ]
    out["Condition"] = [
        {
            "resourceType": "Condition",
            "subject": subj,
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]},
            "onsetDateTime": "2015-01-01",
        }
    ]
    out["Procedure"] = [
        {
            "resourceType": "Procedure",
            "status": "completed",
            "subject": subj,
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "73761001"}]},
            "performedDateTime": "2019-01-01",
        }
    ]
    out["MedicationRequest"] = [
        {
            "resourceType": "MedicationRequest",
            "status": "active",
            "subject": subj,
            "authoredOn": "2020-01-01",
            "medicationCodeableConcept": {
                "coding": [
                    {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "308182"}
                ]
            },
        }
    ]
    out["Immunization"] = [
        {
            "resourceType": "Immunization",
            "status": "completed",
            "patient": subj,
            "occurrenceDateTime": "2020-01-01",
            "vaccineCode": {"coding": [{"system": "http://snomed.info/sct", "code": "1"}]},
        }
    ]
    out["Encounter"] = [
        {
            "resourceType": "Encounter",
            "status": "finished",
            "subject": subj,
            "class": {"code": "AMB"},
            "period": {"start": "2020-01-01"},
        }
    ]
    return out


def make_bulk(folder: Path, n_resources: int) -> int:
    """Write Type.ndjson files holding about ``n_resources`` resources; returns the count."""
    tpl = _templates()
    n_patients = max(1, n_resources // PER_PATIENT)
    pids = [str(uuid.UUID(int=i + 1)) for i in range(n_patients)]
    written = 0
    if BULK.is_dir():  # the serviceProviders of the cloned encounters (reference data)
        for name in ("Organization.ndjson", "hospitalInformation1567659638775.json"):
            shutil.copy(BULK / name, folder / name)
    with open(folder / "Patient.ndjson", "w") as fh:
        for i, pid in enumerate(pids):
            p = copy.deepcopy(tpl["Patient"][i % len(tpl["Patient"])])
            p["id"] = pid
            fh.write(json.dumps(p) + "\n")
            written += 1
    for rtype, share in MIX.items():
        n = int((n_resources - n_patients) * share)
        lines = [json.dumps(t) for t in tpl[rtype]]
        with open(folder / f"{rtype}.ndjson", "w") as fh:
            for i in range(n):
                pid = pids[i % n_patients]
                text = lines[i % len(lines)]
                # rewire id and patient reference textually (fast, keeps the record as is)
                r = json.loads(text)
                r["id"] = f"{rtype[:3].lower()}-{i}"
                for f in ("subject", "patient"):
                    if f in r:
                        r[f] = {"reference": f"Patient/{pid}"}
                fh.write(json.dumps(r) + "\n")
                written += 1
    return written


def _cpu_seconds() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    from pophealth.ingest.fhir import ingest_fhir

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resources", type=int, default=100_000)
    ap.add_argument("--keep", action="store_true", help="keep the generated files and store")
    ap.add_argument(
        "--registrations",
        choices=("infer-missing", "recorded"),
        default="infer-missing",
        help="infer registrations from the encounters (default) or not",
    )
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    try:
        src = tmp / "bulk"
        src.mkdir()
        n = make_bulk(src, args.resources)
        size = sum(f.stat().st_size for f in src.iterdir())
        cpu0 = _cpu_seconds()
        t0 = time.perf_counter()
        phases: dict[str, float] = {}

        def progress(desc: str, frac: float) -> None:
            if desc.startswith("resolving") and "read" not in phases:
                phases["read"] = time.perf_counter() - t0

        summary = ingest_fhir(
            [src], tmp / "store", key=KEY, progress=progress, registrations=args.registrations
        )
        total = time.perf_counter() - t0
        cpu = _cpu_seconds() - cpu0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        peak_worker = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        rows = sum(t.loaded for t in summary.tables.values())
        print(
            f"machine: {platform.machine()} {os.cpu_count()} cores, "
            f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
            f"Python {platform.python_version()}"
        )
        print(
            f"input: {n:,} FHIR resources in bulk NDJSON ({size / 2**20:.1f} MiB), "
            f"{'real Synthea templates' if BULK.is_dir() else 'built-in templates'}"
        )
        load = os.getloadavg()
        print(
            f"load average (1/5/15 min): {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} "
            "(other work on the machine slows the figures)"
        )
        print(f"loaded: {rows:,} canonical rows; balanced: {summary.balanced}")
        inferred = summary.tables["registrations"].inferred
        print(f"registrations ({args.registrations}): {inferred:,} inferred")
        read = phases.get("read", total)
        print(f"read + map:          {read:7.2f} s  {n / read:10,.0f} resources/s")
        print(f"resolve + validate + write: {total - read:7.2f} s")
        print(
            f"CPU time (all processes): {cpu:7.2f} s = {n / cpu:,.0f} resources per CPU-second "
            "(independent of other load; x2 cores is the ceiling on this machine)"
        )
        print(f"end to end:          {total:7.2f} s  {n / total:10,.0f} resources/s")
        print(f"peak RSS: main process {peak:,.0f} MiB, largest worker {peak_worker:,.0f} MiB")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept {tmp}")


if __name__ == "__main__":
    main()
