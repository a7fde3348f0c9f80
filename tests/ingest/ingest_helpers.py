"""Independent readers of the sample files (plain json / csv / ElementTree), so that the
tests count what is in the files without going through pophealth's own reader."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET  # noqa: N817  (test-only; the samples are trusted)
from collections import Counter
from pathlib import Path

NS = "{http://hl7.org/fhir}"


def resources_in(path: Path) -> list[dict | str]:
    """Resources in a JSON/NDJSON file (Bundles expanded, recursively)."""
    out: list = []
    if path.suffix == ".ndjson":
        for line in path.read_text().splitlines():
            if line.strip():
                out += _expand(json.loads(line))
    elif path.suffix == ".json":
        out += _expand(json.loads(path.read_text()))
    return out


def _expand(obj: dict) -> list[dict]:
    if obj.get("resourceType") == "Bundle":
        res = [obj]
        for e in obj.get("entry", []):
            if "resource" in e:
                res += _expand(e["resource"])
        return res
    return [obj]


def xml_types(path: Path) -> list[str]:
    root = ET.parse(path).getroot()
    out = [root.tag.replace(NS, "")]
    if out[0] == "Bundle":
        for res in root.iter(f"{NS}resource"):
            kids = list(res)
            if kids:
                out.append(kids[0].tag.replace(NS, ""))
    return out


def count_types(folder: Path) -> Counter:
    c: Counter = Counter()
    for f in sorted(folder.rglob("*")):
        if f.suffix in (".json", ".ndjson"):
            c.update(r["resourceType"] for r in resources_in(f))
        elif f.suffix == ".xml":
            c.update(xml_types(f))
    return c


def omop_weights(folder: Path, measurement_csv: str) -> Path:
    """A tiny OMOP folder: one LOINC concept (body weight, 3025315), person 1 and
    ``measurement_csv`` (header and rows) as measurement.csv."""
    folder.mkdir(parents=True)
    (folder / "concept.csv").write_text(
        "concept_id,concept_name,domain_id,vocabulary_id,concept_class_id,standard_concept,"
        "concept_code\n3025315,Body weight,Measurement,LOINC,x,S,29463-7\n"
    )
    (folder / "person.csv").write_text(
        "person_id,gender_concept_id,year_of_birth,month_of_birth,day_of_birth\n1,8507,1960,5,1\n"
    )
    (folder / "measurement.csv").write_text(measurement_csv)
    return folder
