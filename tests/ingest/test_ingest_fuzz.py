"""Fuzz: real records, mutated at random (fields removed, values replaced by junk of any
type, lines cut short), never crash the FHIR ingest and never lose a record.

The default run is a fixed sample of 10 cases (``derandomize``: CI gives the same answer
every time). ``POPHEALTH_FUZZ_EXAMPLES=500 uv run pytest tests/ingest/test_ingest_fuzz.py``
searches that many random cases instead."""

from __future__ import annotations

import json
import os
import random
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pophealth.ingest.fhir import ingest_fhir

pytestmark = pytest.mark.shared_data

KEY = b"fuzz-key-0123456789abcdef"
WIDE = int(os.environ.get("POPHEALTH_FUZZ_EXAMPLES", "0"))
JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2),
    st.sampled_from(
        [
            "2021-02-30",
            "Patient/nobody",
            "#nope",
            "urn:uuid:x",
            "Group/1",
            "http://example.org/cs",
            "",
            "9999-99-99T99:99:99Z",
        ]
    ),
)


@pytest.fixture(scope="module")
def real_records(samples) -> list[dict]:
    bulk = samples / "fhir" / "synthea_bulk_pathling_9pt"
    out: list[dict] = []
    for name in (
        "Patient",
        "Observation",
        "Condition",
        "Procedure",
        "Immunization",
        "MedicationRequest",
        "Encounter",
        "QuestionnaireResponse",
        "Organization",
    ):
        lines = (bulk / f"{name}.ndjson").read_text().splitlines()
        out += [json.loads(x) for x in lines[:4]]
    eps = sorted((samples / "fhir" / "uk_eps_prescription_messages").glob("*.json"))[0]
    out.append(json.loads(eps.read_text()))
    return out


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*prefix, i))


def _mutate(obj, rnd: random.Random, junk):
    paths = [p for p in _paths(obj) if p]
    if not paths:
        return junk
    path = rnd.choice(paths)
    parent = obj
    for step in path[:-1]:
        parent = parent[step]
    if rnd.random() < 0.4 and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = junk
    return obj


@settings(
    max_examples=WIDE or 10,
    derandomize=not WIDE,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    seed=st.integers(0, 2**32 - 1), junk=st.lists(JUNK, min_size=1, max_size=8), cut=st.booleans()
)
def test_mutated_real_records_never_crash_or_vanish(real_records, seed, junk, cut):
    rnd = random.Random(seed)
    records = [json.loads(json.dumps(r)) for r in rnd.sample(real_records, 12)]
    for j in junk:
        i = rnd.randrange(len(records))
        records[i] = _mutate(records[i], rnd, j)
    lines = [json.dumps(r) for r in records]
    if cut:
        i = rnd.randrange(len(lines))
        lines[i] = lines[i][: rnd.randrange(max(1, len(lines[i])))]
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "fuzz.ndjson"
        f.write_text("\n".join(lines) + "\n")
        s = ingest_fhir([f], Path(tmp) / "st", key=KEY)
    assert s.balanced
    for r in s.records.values():
        assert r.records_in == r.loaded + r.quarantined + r.skipped
    non_empty = sum(1 for x in lines if x.strip())
    top_level = sum(r.records_in for k, r in s.records.items() if k != "Bundle.entry")
    assert top_level >= non_empty


@pytest.fixture(scope="module")
def omop_tables(samples) -> dict[str, list[list[str]]]:
    import csv

    src = samples / "omop" / "synthea27nj_eunomia"
    out = {}
    for name in (
        "PERSON",
        "CONDITION_OCCURRENCE",
        "MEASUREMENT",
        "DRUG_EXPOSURE",
        "VISIT_OCCURRENCE",
        "CONCEPT",
    ):
        with open(src / f"{name}.csv", newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
        out[name] = rows[:1] + rows[1:60] if name != "CONCEPT" else rows
    return out


@settings(
    max_examples=WIDE or 4,
    derandomize=not WIDE,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    seed=st.integers(0, 2**32 - 1),
    junk=st.lists(
        st.text(max_size=10).filter(lambda t: "\n" not in t and "\r" not in t),
        min_size=1,
        max_size=15,
    ),
)
def test_mutated_omop_rows_never_crash_or_vanish(omop_tables, seed, junk):
    import csv

    from pophealth.ingest.omop import ingest_omop

    rnd = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "omop"
        d.mkdir()
        for name, rows in omop_tables.items():
            rows = [list(r) for r in rows]
            if name != "CONCEPT":
                for j in junk:
                    r = rnd.randrange(1, len(rows))
                    rows[r][rnd.randrange(len(rows[r]))] = j
            with open(d / f"{name}.csv", "w", newline="", encoding="utf-8") as fh:
                csv.writer(fh).writerows(rows)
        s = ingest_omop(d, Path(tmp) / "st", key=KEY)
    assert s.balanced
    for name in ("PERSON", "CONDITION_OCCURRENCE", "MEASUREMENT", "DRUG_EXPOSURE"):
        assert s.records[f"omop.{name.lower()}"].records_in == len(omop_tables[name]) - 1
