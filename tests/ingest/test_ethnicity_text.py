"""Ethnicity from text (an OMOP race_source_value, a FHIR coding's text) when no category
letter is given: every NHS ETHNIC CATEGORY label reads back as its own letter."""

from __future__ import annotations

import pytest

from pophealth.ingest.codes import ethnicity_from_text
from pophealth.schema import ETHNICITY_16


@pytest.mark.parametrize("letter", [k for k in ETHNICITY_16 if k != "Z"])
def test_every_nhs_label_reads_as_its_letter(letter):
    label = ETHNICITY_16[letter][0]
    assert ethnicity_from_text(label) == letter, label
    assert ethnicity_from_text(label.upper()) == letter, label


@pytest.mark.parametrize(
    "text, letter",
    [
        # the 2021 census wording (ONS) for the same groups
        ("White: English, Welsh, Scottish, Northern Irish or British", "A"),
        ("White: Irish", "B"),
        ("White: Gypsy or Irish Traveller", "C"),
        ("White: Roma", "C"),
        ("Mixed or Multiple ethnic groups: White and Black Caribbean", "D"),
        ("Mixed or Multiple ethnic groups: White and Black African", "E"),
        ("Mixed or Multiple ethnic groups: White and Asian", "F"),
        ("Asian, Asian British or Asian Welsh: Indian", "H"),
        ("Asian, Asian British or Asian Welsh: Chinese", "R"),
        ("Black, Black British, Black Welsh, Caribbean or African: Caribbean", "M"),
        ("Black, Black British, Black Welsh, Caribbean or African: African", "N"),
        ("Other ethnic group: Arab", "S"),
        # US wording (Synthea, OMOP race concepts' names)
        ("white", "C"),
        ("black", "P"),
        ("Black or African American", "P"),
        ("asian", "L"),
        ("American Indian or Alaska Native", "S"),
        ("Native Hawaiian or Other Pacific Islander", "S"),
        ("other", "S"),
        ("Not stated", "Z"),
        ("", None),
        ("Hispanic or Latino", None),
    ],
)
def test_other_wordings(text, letter):
    assert ethnicity_from_text(text) == letter
