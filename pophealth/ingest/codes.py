"""Code-system URIs and value sets of the sources, mapped to the schema's names.

FHIR names a coding system by URI (``http://snomed.info/sct``), OMOP by
``vocabulary_id`` (``SNOMED``). The schema names them once (:data:`CODE_SYSTEMS`).
"""

from __future__ import annotations

import functools
import re

from pophealth.schema import ETHNICITY_16

#: FHIR coding-system URI (lower case, no trailing slash) -> schema system.
FHIR_SYSTEMS: dict[str, str] = {
    "http://snomed.info/sct": "snomedct",
    "https://snomed.info/sct": "snomedct",
    "urn:oid:2.16.840.1.113883.6.96": "snomedct",
    "http://loinc.org": "loinc",
    "https://loinc.org": "loinc",
    "urn:oid:2.16.840.1.113883.6.1": "loinc",
    "http://hl7.org/fhir/sid/icd-10": "icd10",
    "http://hl7.org/fhir/sid/icd-10-uk": "icd10",
    "http://hl7.org/fhir/sid/icd-10-cm": "icd10",
    "https://fhir.hl7.org.uk/id/icd-10-uk": "icd10",
    "urn:oid:2.16.840.1.113883.6.3": "icd10",
    "urn:oid:2.16.840.1.113883.6.90": "icd10",
    "http://www.nlm.nih.gov/research/umls/rxnorm": "rxnorm",
    "urn:oid:2.16.840.1.113883.6.88": "rxnorm",
    "https://dmd.nhs.uk": "dmd",
    "http://dmd.nhs.uk": "dmd",
    "https://fhir.nhs.uk/id/dmd": "dmd",
    "http://read.info/ctv3": "ctv3",
    "http://hl7.org/fhir/sid/cvx": "cvx",
    "urn:oid:2.16.840.1.113883.12.292": "cvx",
    # Read v2 is not CTV3 (Read v3): its own system, never mixed with CTV3 codes
    "http://read.info/readv2": "readv2",
}

#: Substrings that identify a family of URIs (checked when the exact URI is unknown).
_FHIR_SYSTEM_HINTS: tuple[tuple[str, str], ...] = (
    ("opcs", "opcs4"),
    ("icd-10", "icd10"),
    ("icd10", "icd10"),
    ("snomed", "snomedct"),
    ("/bnf", "bnf"),
    ("rxnorm", "rxnorm"),
)

#: OMOP vocabulary_id -> schema system.
OMOP_VOCABULARIES: dict[str, str] = {
    "snomed": "snomedct",
    "rxnorm": "rxnorm",
    # "RxNorm Extension" is not mapped: its codes are OHDSI's own (OMOP1234567), not RxNorm
    # codes, and the store has no system for them (see omop.RXNORM_EXTENSION)
    "loinc": "loinc",
    "icd10": "icd10",
    "icd10cm": "icd10",
    "icd10gm": "icd10",
    "opcs4": "opcs4",
    "read": "readv2",  # OHDSI's "Read" vocabulary is NHS UK Read Codes Version 2
    "ctv3": "ctv3",
    "dm+d": "dmd",
    "dmd": "dmd",
    "bnf": "bnf",
    "cvx": "cvx",
}

#: Order in which codings of one concept are preferred when only one row is kept.
PREFERENCE = (
    "dmd",
    "snomedct",
    "icd10",
    "opcs4",
    "loinc",
    "rxnorm",
    "ctv3",
    "readv2",
    "bnf",
    "cvx",
)


def fhir_system(uri: str | None) -> str | None:
    """Schema system for a FHIR coding-system URI; None when pophealth does not use it."""
    if not uri:
        return None
    if not isinstance(uri, str):
        return _fhir_system(str(uri))
    return _fhir_system(uri)


@functools.lru_cache(maxsize=4096)
def _fhir_system(uri: str) -> str | None:
    key = str(uri).strip().lower().rstrip("/")
    hit = FHIR_SYSTEMS.get(key)
    if hit is not None:
        return hit
    if key.startswith("http://snomed.info/sct/") or key.startswith("http://snomed.info/xsct"):
        return "snomedct"
    for needle, system in _FHIR_SYSTEM_HINTS:
        if needle in key:
            return system
    return None


def is_dmd_code(code: str) -> bool:
    """True for a SNOMED identifier in the dm+d namespace (1000001), i.e. a dm+d product.

    SNOMED extension identifiers end with namespace (7 digits), partition (2) and check
    digit (1); dm+d VMPs/AMPs/VMPPs/AMPPs carry namespace 1000001. VTMs and some VMPs are
    core SNOMED concepts and stay ``snomedct``.
    """
    return len(code) >= 11 and code.isdigit() and code[-10:-3] == "1000001"


def normalise_code(system: str, code: str) -> str:
    """ICD-10 and OPCS-4 without the dot (``J45.9`` -> ``J459``); Read v2 without the
    2-digit term code some extracts append (``H33..00`` -> ``H33..``); others stripped."""
    code = str(code).strip()
    if system in ("icd10", "opcs4"):
        code = code.replace(".", "").replace(" ", "").upper()
    elif system == "readv2" and len(code) == 7 and code[5:].isdigit():
        code = code[:5]
    return code


# -- ethnicity --------------------------------------------------------------------------

_LETTERS = set(ETHNICITY_16)

#: US Core / CDC race (OMB categories) -> nearest 2001 census category. The US
#: categories do not split White or Asian the way the NHS ones do, so each maps to the
#: "any other ... background" category of its group; more than one race maps to
#: "Mixed - any other mixed background" (G).
US_RACE: dict[str, str] = {
    "2106-3": "C",  # White
    "2054-5": "P",  # Black or African American
    "2028-9": "L",  # Asian
    "1002-5": "S",  # American Indian or Alaska Native
    "2076-8": "S",  # Native Hawaiian or Other Pacific Islander
    "2131-1": "S",  # Other race
    "asku": "Z",
    "unk": "Z",
}

#: OMOP race concepts (Race vocabulary) -> 2001 census category.
OMOP_RACE: dict[int, str] = {
    8527: "C",  # White
    8516: "P",  # Black or African American
    8515: "L",  # Asian
    8657: "S",  # American Indian or Alaska Native
    8557: "S",  # Native Hawaiian or Other Pacific Islander
    38003613: "H",  # Asian Indian
    38003614: "K",  # Bangladeshi
    38003615: "L",  # Burmese
    38003579: "R",  # Chinese
    38003584: "L",  # Filipino
    38003589: "J",  # Pakistani
    38003598: "N",  # African
    38003599: "P",  # African American
}


def ethnicity_letter(code: str | None) -> str | None:
    """An NHS ETHNIC CATEGORY code (A..Z, case-insensitive) or None when it is not one.

    The 2021 England categories (e.g. ``A``, ``B``, ``C3``...) are reduced to their letter
    where the letter means the same group in 2001 coding.
    """
    if not code:
        return None
    text = str(code).strip().upper()
    if text in _LETTERS:
        return text
    if text == "99":
        return "Z"
    if len(text) >= 1 and text[0] in _LETTERS and re.fullmatch(r"[A-Z]\d?", text):
        return text[0]
    return None


#: Ways of saying "not stated" (category Z).
_NOT_STATED = ("unknown", "not stated", "not known", "declined", "asked but unknown")


def ethnicity_from_text(text: str | None) -> str | None:
    """The category letter of an ethnicity written in words (an OMOP race_source_value, a
    FHIR coding's text) when no letter is given; None when the words name no category.

    Reads the NHS labels ("Black or Black British - Caribbean"), the 2021 census wording
    ("White: English, Welsh, Scottish, Northern Irish or British") and US race names
    ("Black or African American"): the broad group from the whole text, the group within
    it from the words after the last ":" or " - " (both census broad groups name Caribbean
    and African, and every Asian and Black NHS label says "British").
    """
    if not text:
        return None
    low = " ".join(str(text).strip().lower().split())
    if not low:
        return None
    if low in _NOT_STATED:
        return "Z"
    if "hispanic" in low or "latino" in low:  # a US ethnicity, not a race or category
        return None
    sep = ":" if ":" in low else " - " if " - " in low else None
    part = low.rpartition(sep)[2] if sep else low

    def has(where: str, *words: str) -> bool:
        return any(w in where for w in words)

    if has(low, "mixed", "multiple", "white and black", "white and asian"):
        if "caribbean" in part:
            return "D"
        if "african" in part:
            return "E"
        if "asian" in part:
            return "F"
        return "G"
    if has(low, "american indian", "alaska native", "hawaiian", "pacific islander"):
        return "S"
    if "chinese" in part:
        return "R"
    if "white" in low:
        if has(part, "gypsy", "traveller", "roma"):
            return "C"
        if has(part, "british", "english", "welsh", "scottish", "northern irish"):
            return "A"
        return "B" if "irish" in part else "C"
    if has(low, "black", "caribbean", "african"):
        if "caribbean" in part:
            return "M"
        if "african" in part and "african american" not in part:
            return "N"
        return "P"
    if has(low, "asian", "indian", "pakistani", "bangladeshi"):
        for word, letter in (("indian", "H"), ("pakistani", "J"), ("bangladeshi", "K")):
            if word in part:
                return letter
        return "L"
    if "british" in low:
        return "A"
    if "irish" in low:
        return "B"
    if has(low, "other", "arab", "native"):
        return "S"
    return None


def ethnicity_groups(letter: str | None) -> tuple[str, str]:
    """``(ethnicity_5, ethnicity_16)`` for a category letter; unknown when None."""
    if letter is None or letter not in ETHNICITY_16:
        return "unknown", "Z"
    return ETHNICITY_16[letter][1], letter
