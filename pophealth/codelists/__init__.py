"""Code lists: OpenCodelists-format CSVs and pophealth's own curated lists, typed by system.

A :class:`Codelist` is a set of codes in one coding system (or, for "multi-system" lists such
as dm+d medicines that also carry their BNF codes, several systems), with optional category
columns (smoking ``Category``, ethnicity ``Grouping_6``/``Grouping_16``) and optional numeric
attributes (e.g. ``strength_mg`` in a curated list).

Two entry points:

* :func:`load_codelist` reads any OpenCodelists CSV, whatever its column layout
  (``code,term``; dm+d ``code,term,id,type,bnf_code``; ``id,name,active,notes``;
  ``CTV3ID``/``CTV3Code``; ``dmd_id,dmd_type``; category columns). The coding system comes
  from the layout, from the ``system=`` argument, or is inferred from the code formats — an
  ambiguous list (e.g. three-character codes that could be ICD-10 or OPCS-4) is refused with
  a request to name the system, never guessed.
* :func:`codelist` reads a curated list by name: ``pophealth/codelists/curated/<name>.csv``
  (columns ``code,term`` and optional extra columns), whose system is declared in
  ``pophealth/codelists/curated/MANIFEST.csv`` (``name,system,description,source``). An
  optional ``system`` column overrides that system per row, so one list can hold the dm+d
  codes of English records and the RxNorm codes of US (e.g. Synthea) records; an empty cell
  means the MANIFEST system.

Every code is checked against its system's format (:func:`code_problem`): SNOMED CT and
dm+d identifiers are 6-18 digits with a valid Verhoeff check digit; CTV3 is five
characters of letters, digits and dots (case-sensitive); ICD-10 and OPCS-4 have their own
patterns; BNF codes are whole 15-character presentation codes (a prefix is refused: it
would match no prescription). In a file, SNOMED CT and dm+d ids must also be concept ids
(not description or relationship ids), and a dm+d id a core concept or of the dm+d
namespace. A bad code is an error naming the file, row (its line in the file), field and
code. ICD-10/OPCS-4 codes may carry the dot (``J45.9`` -> ``J459``), and a 3-character
ICD-10 code also holds its X-filled form (``I10`` and ``I10X``).
"""

from __future__ import annotations

import csv
import difflib
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path

from pophealth.schema import CODE_SYSTEMS

__all__ = [
    "CURATED_DIR",
    "Codelist",
    "CodelistError",
    "code_problem",
    "codelist",
    "curated_manifest",
    "available_codelists",
    "load_codelist",
    "medication_codes",
    "own_codelists",
    "own_first",
    "read_own_codelists",
    "verhoeff_ok",
]

CURATED_DIR = Path(__file__).resolve().parent / "curated"


class CodelistError(ValueError):
    """A code list cannot be read or holds a code that is not valid in its system."""


#: Coding systems that share one space of identifiers: every dm+d id is a SNOMED CT concept
#: id (dm+d is the UK drug extension of SNOMED CT), and records label the same id either
#: way (FHIR and OMOP sources send dm+d products under the SNOMED CT system; ingest stores
#: only ids in the dm+d namespace as ``dmd``).
SHARED_IDENTIFIERS = frozenset({"dmd", "snomedct"})
#: Coding systems of medicines other than those: US RxNorm, BNF presentation codes.
_MEDICATION_SYSTEMS = frozenset({"rxnorm", "bnf"})


def medication_codes(by_system: Mapping[str, Iterable[str]]) -> dict[str, frozenset[str]]:
    """A list's codes per system as medication records are to be matched: its dm+d and
    SNOMED CT ids under both systems, so that a dm+d list does not silently miss a
    prescription recorded as ``snomedct`` with the same id (other systems unchanged)."""
    out = {s: frozenset(codes) for s, codes in by_system.items()}
    shared = frozenset().union(*(out[s] for s in SHARED_IDENTIFIERS if s in out))
    if shared:
        for s in SHARED_IDENTIFIERS:
            out[s] = shared
    return out


# -- code formats ------------------------------------------------------------------------

_D = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 2, 3, 4, 0, 6, 7, 8, 9, 5),
    (2, 3, 4, 0, 1, 7, 8, 9, 5, 6),
    (3, 4, 0, 1, 2, 8, 9, 5, 6, 7),
    (4, 0, 1, 2, 3, 9, 5, 6, 7, 8),
    (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
    (6, 5, 9, 8, 7, 1, 0, 4, 3, 2),
    (7, 6, 5, 9, 8, 2, 1, 0, 4, 3),
    (8, 7, 6, 5, 9, 3, 2, 1, 0, 4),
    (9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
)


def _permutations() -> tuple[tuple[int, ...], ...]:
    # Verhoeff's position permutation: row i is the base permutation applied i times.
    base = (1, 5, 7, 6, 2, 8, 3, 0, 9, 4)
    rows = [tuple(range(10))]
    for _ in range(7):
        rows.append(tuple(base[x] for x in rows[-1]))
    return tuple(rows)


_P = _permutations()


def verhoeff_ok(digits: str) -> bool:
    """True when ``digits`` ends in a valid Verhoeff check digit (SNOMED CT SCTIDs use it:
    SNOMED CT Technical Implementation Guide, "Check-digit computation")."""
    c = 0
    for i, ch in enumerate(reversed(digits)):
        c = _D[c][_P[i % 8][ord(ch) - 48]]
    return c == 0


_PATTERNS: dict[str, re.Pattern[str]] = {
    "snomedct": re.compile(r"^[1-9]\d{5,17}$"),
    "dmd": re.compile(r"^[1-9]\d{5,17}$"),
    "ctv3": re.compile(r"^[0-9A-Za-z.]{5}$"),
    "readv2": re.compile(r"^[0-9A-Za-z.]{5}$"),
    # ICD-10 without the dot: letter, two digits, optional 4th character, optional 5th
    # character (UK 5th-character extensions and the "X" filler, e.g. S720, M8000, F1X).
    "icd10": re.compile(r"^[A-Z]\d[0-9A-Z](?:[0-9X][0-9A-Z]?)?$"),
    # OPCS-4 without the dot: chapter letter, two digits, optional 4th digit.
    "opcs4": re.compile(r"^[A-Z]\d{2}\d?$"),
    # BNF presentation code: chapter+section (4 digits), then paragraph, sub-paragraph,
    # chemical, product, strength/formulation and equivalent: 15 characters in all.
    "bnf": re.compile(r"^\d{4}[0-9A-Z]{11}$"),
    "loinc": re.compile(r"^\d{1,7}-\d$"),
    "rxnorm": re.compile(r"^\d{1,9}$"),
    "cvx": re.compile(r"^\d{1,3}$"),
}

_DESCRIPTIONS = {
    "snomedct": "6-18 digits ending in a valid Verhoeff check digit",
    "dmd": "6-18 digits ending in a valid Verhoeff check digit (dm+d uses SNOMED CT identifiers)",
    "ctv3": "5 characters of letters, digits and dots (e.g. 'H33..')",
    "readv2": "5 characters of letters, digits and dots (e.g. 'H33..')",
    "icd10": "an ICD-10 code without the dot (e.g. 'J45', 'J459')",
    "opcs4": "an OPCS-4 code without the dot (e.g. 'R17', 'R171')",
    "bnf": "a 15-character BNF presentation code starting with 4 digits (e.g. '0212000AAAAAAAA')",
    "loinc": "a LOINC code like '8480-6'",
    "rxnorm": "an RxNorm CUI (digits)",
    "cvx": "a CDC CVX vaccine code (1-3 digits)",
}


_BNF_PREFIX = re.compile(r"^\d{2}[0-9A-Z]{0,12}$")
_BNF_LEVELS = {
    2: "chapter",
    4: "section",
    6: "paragraph",
    7: "sub-paragraph",
    9: "chemical substance",
    11: "product",
}


def code_problem(system: str, code: str) -> str | None:
    """Why ``code`` is not a valid ``system`` code, or None when it is well formed."""
    if system not in _PATTERNS:
        return f"unknown coding system {system!r} (known: {', '.join(CODE_SYSTEMS)})"
    if system == "bnf" and _BNF_PREFIX.match(code):
        return (
            f"a BNF prefix ({_BNF_LEVELS.get(len(code), f'{len(code)} characters')}), not a "
            "15-character presentation code: code lists match whole codes, so a prefix would "
            "match no prescription; list the presentations it covers"
        )
    if not _PATTERNS[system].match(code):
        return f"not {_DESCRIPTIONS[system]}"
    if system in ("snomedct", "dmd") and not verhoeff_ok(code):
        return (
            "a number whose SNOMED CT Verhoeff check digit is wrong (a mistyped or "
            "spreadsheet-mangled code?)"
        )
    return None


def _fits(system: str, code: str) -> bool:
    return code_problem(system, code) is None


# -- the Codelist type -------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Codelist:
    """Codes in one or more coding systems, with optional categories and attributes.

    ``codes`` maps system → frozenset of codes. ``system`` is the list's main system.
    ``categories`` maps a category column name (e.g. ``"Grouping_6"``) to {code: category};
    ``default_category`` names the one :meth:`category_of` uses by default. ``attributes``
    maps an extra column (e.g. ``"strength_mg"``) to {code: float}.
    """

    name: str
    system: str
    codes: Mapping[str, frozenset[str]]
    terms: Mapping[str, str] = field(default_factory=dict)
    categories: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    default_category: str | None = None
    attributes: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    source: str = ""
    #: Declared a list of clinical concepts (findings, procedures, observables), not of
    #: medicinal products: pophealth's curated lists of system ``snomedct`` (its medicine
    #: lists are ``dmd``). See :meth:`not_products`.
    clinical: bool = False

    def __post_init__(self) -> None:
        if self.system not in self.codes:
            raise CodelistError(f"code list {self.name!r}: no codes in its system {self.system!r}")
        for system in self.codes:
            if system not in CODE_SYSTEMS:
                raise CodelistError(f"code list {self.name!r}: unknown coding system {system!r}")

    @classmethod
    def of(cls, system: str, codes: Iterable[str], name: str = "inline", **kw) -> Codelist:
        """A code list made in code (tests, one-off rules); codes are format-checked and,
        like a file's, ICD-10/OPCS-4 codes lose their dot and ICD-10 ``I10`` also holds
        ``I10X``."""
        codes = [_normalise(system, str(c).strip()) for c in codes]
        for c in codes:
            problem = code_problem(system, c)
            if problem:
                raise CodelistError(f"code list {name!r}: code {c!r} is {problem}")
        if system == "icd10":
            codes = [form for c in codes for form in _icd10_forms(c)]
        return cls(name=name, system=system, codes={system: frozenset(codes)}, **kw)

    @property
    def systems(self) -> tuple[str, ...]:
        return tuple(self.codes)

    def codes_in(self, system: str) -> frozenset[str]:
        return self.codes.get(system, frozenset())

    def __contains__(self, code: object) -> bool:
        return any(code in cs for cs in self.codes.values())

    def __len__(self) -> int:
        return len(self.codes[self.system])

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self.codes[self.system]))

    def __repr__(self) -> str:
        extra = [s for s in self.codes if s != self.system]
        more = f" (+{', '.join(extra)})" if extra else ""
        return f"<Codelist {self.name!r}: {len(self)} {self.system} codes{more}>"

    def not_products(self) -> str | None:
        """Why this list's SNOMED CT codes cannot be medicinal products, or None when they
        may be. dm+d and SNOMED CT ids are one identifier space (:data:`SHARED_IDENTIFIERS`),
        so a SNOMED CT list of medicinal products (``325426006`` prednisolone 5mg tablets)
        matches prescriptions; a clinical list would match none. A list is clinical when:

        * it is declared so (:attr:`clinical`: a curated list of system ``snomedct``);
        * it holds a SNOMED CT id of an extension other than dm+d's (namespace 1000001),
          e.g. the UK clinical extension's 1000000: no such concept is a dm+d product;
        * it also holds codes of a clinical coding system (LOINC, CTV3, Read, ICD-10...).

        A list of core SNOMED CT ids alone (loaded from a file or made in code) cannot be
        told apart by its ids: core holds findings and (older) dm+d products alike."""
        snomed = self.codes_in("snomedct")
        if not snomed or "dmd" in self.codes:
            return None
        if self.clinical:
            return "it is a curated list of system snomedct (pophealth's medicine lists are dm+d)"
        for code in sorted(snomed):
            namespace = code[-10:-3]
            if code[-3:-1] == "10" and namespace != _DMD_NAMESPACE:
                return (
                    f"its code {code} is a concept of SNOMED CT extension namespace {namespace}, "
                    f"which holds no dm+d product (dm+d ids are core concepts or carry the "
                    f"namespace {_DMD_NAMESPACE})"
                )
        clinical = sorted(set(self.codes) - SHARED_IDENTIFIERS - _MEDICATION_SYSTEMS)
        if clinical:
            return f"it also holds {'/'.join(clinical)} codes, which are clinical"
        return None

    def in_system(self, system: str) -> Codelist:
        """The same list restricted to one of its systems (e.g. the BNF codes of a dm+d list)."""
        if system not in self.codes:
            raise CodelistError(
                f"code list {self.name!r} has no {system} codes (it has: {', '.join(self.codes)})"
            )
        return Codelist(
            name=f"{self.name}[{system}]",
            system=system,
            codes={system: self.codes[system]},
            terms=self.terms,
            categories=self.categories,
            default_category=self.default_category,
            attributes=self.attributes,
            source=self.source,
            clinical=self.clinical,
        )

    def category_map(self, column: str | None = None) -> Mapping[str, str]:
        """{code: category} for ``column`` (default: the list's default category column)."""
        column = column or self.default_category
        if column is None or column not in self.categories:
            have = ", ".join(self.categories) or "none"
            raise CodelistError(
                f"code list {self.name!r} has no category column {column!r} (it has: {have})"
            )
        return self.categories[column]

    def attribute_map(self, column: str) -> Mapping[str, float]:
        """{code: number} for an extra numeric column such as ``strength_mg``."""
        if column not in self.attributes:
            have = ", ".join(self.attributes) or "none"
            raise CodelistError(
                f"code list {self.name!r} has no numeric column {column!r} (it has: {have})"
            )
        return self.attributes[column]


# -- reading OpenCodelists CSVs -------------------------------------------------------------

#: Columns that hold the main code, in order of preference, with the system they imply (None:
#: decide from the other columns or the code formats). Header names match case-insensitively.
_CODE_COLUMNS: tuple[tuple[str, str | None], ...] = (
    ("dmd_id", "dmd"),
    ("ctv3id", "ctv3"),
    ("ctv3code", "ctv3"),
    ("ctv3_id", "ctv3"),
    ("ctv3_code", "ctv3"),
    ("snomedcode", "snomedct"),
    ("snomed_code", "snomedct"),
    ("snomedct_code", "snomedct"),
    ("icd10_code", "icd10"),
    ("icd10code", "icd10"),
    ("opcs4_code", "opcs4"),
    ("code", None),
    ("id", None),
)
_TERM_COLUMNS = ("term", "name", "dmd_name", "CTV3PreferredTermDesc", "Description", "Ethnicity")
#: Columns naming the dm+d concept type: their presence means the main codes are dm+d.
_DMD_TYPE_COLUMNS = ("type", "dmd_type", "obj_type")
#: Secondary code columns of multi-system lists, with their system.
_ALT_CODE_COLUMNS = {"bnf_code": "bnf"}
_CATEGORY_COLUMNS = ("Category", "Grouping_6", "Grouping_16", "Label_6", "Label_16", "chemical")
_NOT_ATTRIBUTES = {
    "active",
    "notes",
    "CTV3Source",
    "CodeSource",
    "form_route",
    "bnf_name",
    "snomed_id",
    "id",
    "vpid",
}

#: SNOMED CT partition identifiers (the 2 digits before the check digit) of a *concept* id:
#: 00 core, 10 extension. 01/11 are description ids and 02/12 relationship ids, which a
#: code list must never hold (a description id pasted from a browser matches no record).
_CONCEPT_PARTITIONS = ("00", "10")
#: dm+d products are core SNOMED CT concepts or carry the dm+d namespace 1000001.
_DMD_NAMESPACE = "1000001"


def _identifier_problem(system: str, code: str) -> str | None:
    """Why a well-formed SNOMED CT / dm+d id cannot be in a code list of ``system``."""
    if system not in ("snomedct", "dmd"):
        return None
    partition = code[-3:-1]
    if partition not in _CONCEPT_PARTITIONS:
        kind = {"1": "a description", "2": "a relationship"}.get(partition[1], "not a concept")
        return (
            f"{kind} id (partition {partition}), not a concept id: a code list holds concept "
            "ids (partition 00 or 10)"
        )
    if system == "dmd" and partition == "10" and code[-10:-3] != _DMD_NAMESPACE:
        return (
            f"a SNOMED CT extension concept of namespace {code[-10:-3]}, not a dm+d product "
            f"(dm+d ids are core concepts or carry the dm+d namespace {_DMD_NAMESPACE})"
        )
    return None


def _normalise(system: str, code: str) -> str:
    """ICD-10 and OPCS-4 codes written with a dot (``J45.9``, ``R17.1``) without it, as
    ingest stores them; other codes unchanged (CTV3 and Read codes are case-sensitive)."""
    if system in ("icd10", "opcs4"):
        return code.replace(".", "").upper()
    return code


_ICD10_CATEGORY = re.compile(r"^[A-Z]\d\d$")
_ICD10_FILLED = re.compile(r"^[A-Z]\d\dX$")


def _icd10_forms(code: str) -> tuple[str, ...]:
    """A 3-character ICD-10 code and its X-filled 4-character form (HES writes ``I10`` as
    ``I10X``): a list with either matches records written either way."""
    if _ICD10_CATEGORY.match(code):
        return (code, code + "X")
    if _ICD10_FILLED.match(code):
        return (code, code[:3])
    return (code,)


_INFER_ORDER = ("snomedct", "ctv3", "icd10", "opcs4", "bnf")


def _infer_system(codes: list[tuple[int, str]], where: str, code_col: str) -> str:
    """The one system every code fits, or a :class:`CodelistError`: naming the first row
    whose code does not fit the system most codes fit, or asking for ``system=``."""

    def fits(system: str, code: str) -> bool:
        # a BNF presentation code has letters (chemical, product...): an all-digit code is a
        # SNOMED CT / dm+d id, even one whose check digit is wrong
        if system == "bnf" and code.isdigit():
            return False
        return _fits(system, _normalise(system, code))

    fitting = {s: sum(fits(s, c) for _, c in codes) for s in _INFER_ORDER}
    everywhere = [s for s in _INFER_ORDER if fitting[s] == len(codes)]
    if "snomedct" in everywhere:
        return "snomedct"
    if "ctv3" in everywhere and any(("." in c or any(ch.islower() for ch in c)) for _, c in codes):
        return "ctv3"
    if len(everywhere) == 1:
        return everywhere[0]
    if everywhere:
        raise CodelistError(
            f"{where}: the codes could be {' or '.join(everywhere)}; pass system=... to say which"
        )
    best = max(_INFER_ORDER, key=lambda s: fitting[s])  # first in order on a tie
    if fitting[best] == 0:
        raise CodelistError(
            f"{where}: the codes fit no coding system (e.g. row {codes[0][0]}, field "
            f"{code_col!r}: {codes[0][1]!r}); pass system=... to see which codes are wrong"
        )
    row, code = next((i, c) for i, c in codes if not fits(best, c))
    others = fitting[best]
    problem = f"{where}: row {row}, field {code_col!r}: code {code!r} is " + str(
        code_problem(best, _normalise(best, code))
    )
    elsewhere = [s for s in _INFER_ORDER if s != best and fits(s, code)]
    if elsewhere:
        raise CodelistError(
            f"{problem}; the other {others} code(s) of the list are {best}, and this one fits "
            f"{' or '.join(elsewhere)}: a code of another coding system? Remove it, or pass "
            f"system=... if the list is not {best}"
        )
    raise CodelistError(
        f"{problem} (the other {others} code(s) of the list are {best}): correct or remove it"
    )


def _as_float(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _as_number(value: str) -> float | None:
    """``value`` as a number, or None when it is text — including identifiers that look
    numeric: a leading zero (BNF ``0301``) or 10 or more digits (a SNOMED CT / dm+d id)."""
    number = _as_float(value)
    if number is None:
        return None
    digits = value.lstrip("+-")
    if len(digits) > 1 and digits[0] == "0" and digits[1].isdigit():
        return None
    if digits.isdigit() and len(digits) >= 10:
        return None
    return number


def _read_csv(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """The header and the data rows of a code-list CSV, each row with the file line it
    starts on (the header is row 1 of an ordinary file). Blank lines and rows of empty
    fields are skipped; a row with more non-empty fields than the header is an error."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header: list[str] | None = None
            rows: list[tuple[int, dict[str, str]]] = []
            last = 0
            for raw in reader:
                start, last = last + 1, reader.line_num
                fields = [f.strip() for f in raw]
                if not any(fields):
                    continue
                if header is None:
                    header = fields
                    seen = [h for h in header if h]
                    twice = sorted({h for h in seen if seen.count(h) > 1})
                    if twice:
                        raise CodelistError(
                            f"{path}: row {start}: column(s) {', '.join(twice)} appear twice in "
                            "the header"
                        )
                    continue
                if len(fields) > len(header) and any(fields[len(header) :]):
                    raise CodelistError(
                        f"{path}: row {start}: {len(fields)} fields but the header has "
                        f"{len(header)} (an unquoted comma in a term?)"
                    )
                rows.append((start, {h: v for h, v in zip(header, fields, strict=False) if h}))
    except OSError as exc:
        raise CodelistError(f"{path}: cannot read code list: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, csv.Error) as exc:
        raise CodelistError(f"{path}: not a readable CSV: {exc}") from exc
    return header or [], rows


def load_codelist(
    path: str | Path,
    *,
    system: str | None = None,
    name: str | None = None,
    category: str | None = None,
) -> Codelist:
    """Read an OpenCodelists CSV in any of its column layouts into a :class:`Codelist`.

    ``system``: the coding system, when the layout or the codes do not make it certain (a
    list named ``*icd10*``/``*opcs*`` is taken as such). ``category``: the default category
    column (defaults to ``Category`` or ``Grouping_6`` when present). Raises
    :class:`CodelistError` naming file, row, field and code for a code that is not valid in
    its system, and for duplicate rows with conflicting categories or numbers.

    Codes are text (leading zeros kept), stripped of surrounding spaces; CTV3 and Read codes
    keep their case. ICD-10 and OPCS-4 codes may be written with or without the dot
    (``J45.9`` is read as ``J459``), and a 3-character ICD-10 code also holds its X-filled
    form (``I10`` and ``I10X``), so the list matches records written either way.
    """
    path = Path(path)
    name = name or path.stem
    header, rows = _read_csv(path)
    by_lower = {h.lower(): h for h in reversed(header) if h}
    code_col, implied = next(
        ((by_lower[c], s) for c, s in _CODE_COLUMNS if c in by_lower), (None, None)
    )
    if code_col is None:
        raise CodelistError(
            f"{path}: no code column (expected one of "
            f"{', '.join(c for c, _ in _CODE_COLUMNS)}; found {', '.join(header)})"
        )
    if implied is None and any(c in header for c in _DMD_TYPE_COLUMNS):
        implied = "dmd"
    codes = [(i, r[code_col]) for i, r in rows if r.get(code_col)]
    if not codes:
        raise CodelistError(f"{path}: the code list is empty")
    if system is None:
        system = implied
    if system is None:
        lowered = path.name.lower()
        if "icd10" in lowered or "icd-10" in lowered:
            system = "icd10"
        elif "opcs" in lowered:
            system = "opcs4"
        else:
            # rows naming their own system (a ``system`` column) do not decide the list's
            untyped = [(i, r[code_col]) for i, r in rows if r.get(code_col) and not r.get("system")]
            system = _infer_system(untyped or codes, str(path), code_col)
    elif (
        implied is not None
        and implied != system
        and not (implied == "dmd" and system == "snomedct")
    ):
        raise CodelistError(
            f"{path}: its layout says {implied} codes but system={system!r} was given"
        )

    by_system: dict[str, set[str]] = {system: set()}
    # An optional ``system`` column names a row's own coding system (a multi-system list such
    # as a dm+d medicine list that also carries the RxNorm codes US records use); empty means
    # the list's system.
    row_system_col = "system" if "system" in header else None
    terms: dict[str, str] = {}
    term_col = next((c for c in _TERM_COLUMNS if c in header), None)
    cat_cols = [c for c in _CATEGORY_COLUMNS if c in header]
    known = {
        code_col,
        term_col,
        row_system_col,
        *cat_cols,
        *_DMD_TYPE_COLUMNS,
        *_ALT_CODE_COLUMNS,
        *_NOT_ATTRIBUTES,
    }
    attributes: dict[str, dict[str, float]] = {}
    for c in (c for c in header if c and c not in known):
        # any other column: numeric -> attribute (e.g. strength_mg), text -> category
        values = [r.get(c, "") for _, r in rows if r.get(c, "")]
        if values and all(_as_number(v) is not None for v in values):
            attributes[c] = {}
        elif values:
            cat_cols.append(c)
    categories: dict[str, dict[str, str]] = {c: {} for c in cat_cols}
    for i, row in rows:
        code = row.get(code_col, "")
        if not code:
            raise CodelistError(f"{path}: row {i}, field {code_col!r}: empty code")
        code_system = (row_system_col and row.get(row_system_col)) or system
        if code_system not in CODE_SYSTEMS:
            raise CodelistError(
                f"{path}: row {i}, field 'system': {code_system!r} is not one of "
                f"{', '.join(CODE_SYSTEMS)}"
            )
        code = _normalise(code_system, code)
        problem = code_problem(code_system, code) or _identifier_problem(code_system, code)
        if problem:
            own = f" ({code_system})" if code_system != system else ""
            raise CodelistError(
                f"{path}: row {i}, field {code_col!r}: code {row[code_col]!r}{own} is {problem}"
            )
        forms = _icd10_forms(code) if code_system == "icd10" else (code,)
        by_system.setdefault(code_system, set()).update(forms)
        if term_col and row.get(term_col):
            for form in forms:
                terms.setdefault(form, row[term_col])
        for col, alt_system in _ALT_CODE_COLUMNS.items():
            alt = row.get(col, "")
            if not alt:
                continue
            alt_problem = code_problem(alt_system, alt)
            if alt_problem:
                raise CodelistError(
                    f"{path}: row {i}, field {col!r}: code {alt!r} is {alt_problem}"
                )
            by_system.setdefault(alt_system, set()).add(alt)
        for col in cat_cols:
            value = row.get(col, "")
            seen = categories[col].get(code)
            if seen is not None and value and seen != value:
                raise CodelistError(
                    f"{path}: row {i}, field {col!r}: code {code!r} has category {value!r} "
                    f"here but {seen!r} on an earlier row"
                )
            if value:
                for form in forms:
                    categories[col][form] = value
        for col in attributes:
            value = row.get(col, "")
            if not value:
                continue
            number, seen_number = float(value), attributes[col].get(code)
            if seen_number is not None and seen_number != number:
                raise CodelistError(
                    f"{path}: row {i}, field {col!r}: code {code!r} has {value} here but "
                    f"{seen_number:g} on an earlier row"
                )
            for form in forms:
                attributes[col][form] = number
    if category is not None and category not in categories:
        raise CodelistError(
            f"{path}: no category column {category!r} (have: {', '.join(cat_cols)})"
        )
    default_category = category or next(
        (c for c in ("Category", "category", "Grouping_6", "Grouping_16") if c in categories), None
    )
    return Codelist(
        name=name,
        system=system,
        codes={s: frozenset(cs) for s, cs in by_system.items()},
        terms=terms,
        categories=categories,
        default_category=default_category,
        attributes=attributes,
        source=str(path),
    )


# -- curated lists ---------------------------------------------------------------------------


@cache
def curated_manifest() -> dict[str, dict[str, str]]:
    """The curated lists' MANIFEST (``name,system,description,source``) keyed by name."""
    manifest = CURATED_DIR / "MANIFEST.csv"
    if not manifest.is_file():
        raise CodelistError(f"no curated code-list manifest at {manifest}")
    out: dict[str, dict[str, str]] = {}
    with manifest.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        missing = {"name", "system"} - set(reader.fieldnames or [])
        if missing:
            raise CodelistError(f"{manifest}: missing column(s) {', '.join(sorted(missing))}")
        for i, row in enumerate(reader, start=2):
            name, system = (row.get("name") or "").strip(), (row.get("system") or "").strip()
            if not name:
                raise CodelistError(f"{manifest}: row {i}, field 'name': empty name")
            if name in out:
                raise CodelistError(
                    f"{manifest}: row {i}, field 'name': {name!r} is listed twice (rows "
                    f"{out[name]['_row']} and {i}); one of them would be silently ignored"
                )
            if system not in CODE_SYSTEMS:
                raise CodelistError(
                    f"{manifest}: row {i}, field 'system': {system!r} is not one of "
                    f"{', '.join(CODE_SYSTEMS)}"
                )
            out[name] = {k: (v or "").strip() for k, v in row.items() if k}
            out[name]["_row"] = str(i)
    for entry in out.values():
        del entry["_row"]
    return out


def codelist(name: str) -> Codelist:
    """A code list by name, e.g. ``codelist("saba_inhalers")``: ``<name>.csv`` of the folder
    of one's own lists when :func:`own_codelists` has named one and it holds that file,
    otherwise pophealth's curated list."""
    own = _OWN.get()
    if own is not None and name in own.lists:
        own.used.add(name)
        return own.lists[name]
    found = _curated(name)
    if own is not None:
        own.curated.add(name)  # (a name with no curated list raises above: none read)
    return found


def available_codelists() -> frozenset[str]:
    """The names :func:`codelist` can read now: the curated lists and, within
    :func:`own_codelists`, the folder's."""
    own = _OWN.get()
    return frozenset(curated_manifest()) | (frozenset(own.lists) if own is not None else set())


def own_first(names: Iterable[str]) -> list[str]:
    """``names``, a programme's choices for one list in its order of preference, with those
    the folder of :func:`own_codelists` holds first: one's own list is read even where the
    programme would try a curated name before it."""
    names = list(names)
    own = _OWN.get()
    if own is None:
        return names
    return [n for n in names if n in own.lists] + [n for n in names if n not in own.lists]


@cache
def _curated(name: str) -> Codelist:
    manifest = curated_manifest()
    if name not in manifest:
        close = difflib.get_close_matches(name, list(manifest), n=3, cutoff=0.6)
        hint = (
            f"did you mean {' or '.join(repr(c) for c in close)}?"
            if close
            else f"the curated lists are: {', '.join(sorted(manifest))}"
        )
        raise CodelistError(f"no curated code list {name!r}; {hint}")
    entry = manifest[name]
    path = CURATED_DIR / f"{name}.csv"
    if not path.is_file():
        raise CodelistError(f"curated code list {name!r} is in the MANIFEST but {path} is missing")
    cl = load_codelist(path, system=entry["system"], name=name)
    return replace(
        cl, source=entry.get("source") or cl.source, clinical=entry["system"] == "snomedct"
    )


# -- one's own lists in place of the curated ones ------------------------------------------


@dataclass(frozen=True)
class ReadColumn:
    """A column a programme reads from a list besides its codes: under one of ``names``,
    filled in on every row, with numbers (``numeric``) or one of ``values`` as written
    (lower case: the programmes compare them exactly)."""

    names: tuple[str, ...]
    reads: str
    numeric: bool = False
    values: tuple[str, ...] = ()


#: The columns the programmes read from a list besides its codes, by list name. A list of
#: that name in a folder of one's own (:func:`own_codelists`) must carry them: without them
#: the programme would read every code as, say, a statin of unknown intensity, silently. The
#: curated lists show the layout (a test keeps them to this table).
READ_COLUMNS: dict[str, tuple[ReadColumn, ...]] = {
    "statins": (
        ReadColumn(("drug", "ingredient", "chemical"), "the CVD programme's statin intensity"),
        ReadColumn(("strength_mg",), "the CVD programme's statin intensity and dose", numeric=True),
    ),
    "smoking_status": (
        ReadColumn(
            ("category",),
            "smoking status (CVD's QRISK3, asthma)",
            values=("never", "ex", "current"),
        ),
    ),
    "ocs_prednisolone": (
        ReadColumn(("strength_mg",), "the asthma programme's steroid mg", numeric=True),
    ),
    "ics_inhalers": (
        ReadColumn(
            ("dose_category",),
            "the asthma programme's high-dose ICS",
            values=("low", "medium", "high"),
        ),
    ),
}


@dataclass
class OwnCodelists:
    """A folder of one's own code lists (:func:`own_codelists`; ``folder`` None: none, the
    curated lists only): every list read, and the names :func:`codelist` has served since,
    from the folder (``used``) and from the curated lists (``curated``)."""

    folder: Path | None
    lists: dict[str, Codelist]
    used: set[str] = field(default_factory=set)
    curated: set[str] = field(default_factory=set)


_OWN: ContextVar[OwnCodelists | None] = ContextVar("pophealth_own_codelists", default=None)


def read_own_codelists(folder: str | Path, known: Iterable[str] | None = None) -> OwnCodelists:
    """Every ``<name>.csv`` of ``folder``, read and checked, each to stand in for the list of
    that name.

    A list's coding system is the one an optional ``MANIFEST.csv`` in the folder gives it
    (columns ``name,system``), or else the one its layout or codes make certain
    (:func:`load_codelist`). A list named in :data:`READ_COLUMNS` must carry the columns
    named there. ``known``: the names the caller reads; a file of any other name is an error
    (a misspelt ``hypertension.csv`` would otherwise be ignored and the curated list read in
    its place). Raises :class:`CodelistError` naming the file, row and field."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CodelistError(f"{folder}: no such folder of code lists")
    odd = sorted(p.name for p in folder.iterdir() if p.suffix.lower() == ".csv" != p.suffix)
    if odd:  # not read as a list, and the curated one read in its place, unsaid
        raise CodelistError(f"{folder / odd[0]}: a code list's file name ends in .csv, lower case")
    files = {p.stem: p for p in sorted(folder.glob("*.csv")) if p.name != "MANIFEST.csv"}
    if not files:
        raise CodelistError(f"{folder}: no code lists (<name>.csv files) in the folder")
    systems = _own_manifest(folder / "MANIFEST.csv", files)
    if known is not None:
        known = set(known)
        for name, path in files.items():
            if name not in known:
                close = difflib.get_close_matches(name, sorted(known), n=2, cutoff=0.6)
                hint = (
                    f"did you mean {' or '.join(repr(c) for c in close)}?"
                    if close
                    else f"the names are: {', '.join(sorted(known))}"
                )
                raise CodelistError(
                    f"{path}: no list called {name!r} is read, so this file would be ignored; "
                    f"name it as the list it replaces ({hint})"
                )
    lists = {}
    for name, path in files.items():
        cl = load_codelist(path, system=systems.get(name), name=name)
        _check_read_columns(cl, path)
        curated = curated_manifest().get(name, {}).get("system")
        # clinical as the curated list of that name is (a folder's statins may be SNOMED CT)
        lists[name] = replace(cl, clinical=cl.system == "snomedct" and curated == "snomedct")
    return OwnCodelists(folder=folder, lists=lists)


@contextmanager
def own_codelists(
    folder: str | Path | OwnCodelists | None, known: Iterable[str] | None = None
) -> Iterator[OwnCodelists]:
    """Within the block, :func:`codelist` reads ``<name>.csv`` of ``folder`` (read by
    :func:`read_own_codelists`) in place of the curated list of that name; ``None``: the
    curated lists only. Yields the folder's lists, which name the lists served from each
    source (``used``, ``curated``)."""
    if folder is None:
        own = OwnCodelists(folder=None, lists={})
    elif isinstance(folder, OwnCodelists):
        own = folder
    else:
        own = read_own_codelists(folder, known)
    token = _OWN.set(own)
    try:
        yield own
    finally:
        _OWN.reset(token)


def _own_manifest(path: Path, files: Mapping[str, Path]) -> dict[str, str]:
    """{name: system} from a folder's optional MANIFEST.csv (``name,system``)."""
    if not path.is_file():
        return {}
    out: dict[str, str] = {}
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        missing = {"name", "system"} - set(reader.fieldnames or [])
        if missing:
            raise CodelistError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        for i, row in enumerate(reader, start=2):
            name, system = (row.get("name") or "").strip(), (row.get("system") or "").strip()
            if name not in files:
                raise CodelistError(
                    f"{path}: row {i}, field 'name': no file {name}.csv beside it"
                    if name
                    else f"{path}: row {i}, field 'name': empty name"
                )
            if system not in CODE_SYSTEMS:
                raise CodelistError(
                    f"{path}: row {i}, field 'system': {system!r} is not one of "
                    f"{', '.join(CODE_SYSTEMS)}"
                )
            if name in out:
                raise CodelistError(f"{path}: row {i}, field 'name': {name!r} is listed twice")
            out[name] = system
    return out


def _check_read_columns(cl: Codelist, path: Path) -> None:
    """A list named in :data:`READ_COLUMNS` carries each column named there, filled in on
    every code, with numbers or the values allowed."""
    alternate = set(_ALT_CODE_COLUMNS.values()) - {cl.system}
    codes = sorted({c for s, cs in cl.codes.items() if s not in alternate for c in cs})
    for need in READ_COLUMNS.get(cl.name, ()):
        column = next((n for n in need.names if n in cl.categories or n in cl.attributes), None)
        wanted = " or ".join(repr(n) for n in need.names)
        if column is None:
            raise CodelistError(
                f"{path}: no column {wanted}; {need.reads} is read from it (see "
                f"{CURATED_DIR / cl.name}.csv for the layout)"
            )
        if need.numeric and column not in cl.attributes:
            raise CodelistError(f"{path}: field {column!r} must be a number on every row")
        values = cl.attributes.get(column) or cl.categories.get(column, {})
        empty = [c for c in codes if c not in values]
        if empty:
            more = f" and {len(empty) - 1} more" if len(empty) > 1 else ""
            raise CodelistError(
                f"{path}: field {column!r} is empty for code {empty[0]}{more}; "
                f"{need.reads} needs it for every code"
            )
        if need.values:
            bad = sorted({v for v in cl.categories[column].values() if v not in need.values})
            if bad:
                raise CodelistError(
                    f"{path}: field {column!r} has {', '.join(repr(b) for b in bad)}; "
                    f"{need.reads} takes only {', '.join(need.values)}"
                )
