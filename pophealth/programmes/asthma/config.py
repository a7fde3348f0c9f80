"""Every threshold of the asthma programme, named and versioned, with its source beside it.

The programme reads these values and nothing else: no cut-off appears as a literal in the
rules. A threshold is a :class:`Threshold` carrying its value, the comparison it is used
with, its unit, the plain-words meaning shown to clinicians, the source it was read from
and the evidence status used in ../shared/PROGRAMMES.md:

* ``confirmed`` – read directly in the cited source;
* ``secondary`` – read in a reputable secondary source;
* ``unconfirmed`` – a configurable default pophealth chose; get it signed off locally.

The risk tier built on these markers is **pophealth's own "LADS-style" scheme**. The
London Asthma Decision Support tool's own rules are unpublished; pophealth implements the
national evidence such tools draw on and does not claim parity with LADS.

To change a value, build a new config with :func:`dataclasses.replace` (or
:meth:`AsthmaConfig.with_values`) and bump ``version``; the version is written into every
output so that results can be traced to the thresholds that made them.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Literal

Comparison = Literal[">=", ">", "<", "<=", "=="]
Status = Literal["confirmed", "secondary", "unconfirmed"]

NRAD = "RCP National Review of Asthma Deaths 2014, https://rcp.ac.uk/improving-care/resources/why-asthma-still-kills"
NRAD_AUDIT = (
    "NRAD recommendation quoted in audit, http://pubmedcentralcanada.ca/pmcc/articles/PMC5324182/"
)
SCOTLAND = (
    "NHS Scotland respiratory prescribing, "
    "https://rightdecisions.scot.nhs.uk/respiratory-prescribing/asthma/summary-of-recommendations/"
)
IIF = "England IIF (PCN incentive) SABA measure, http://www.parallelparliament.co.uk/question/15243/asthma-steroid-drugs"
LEVY = (
    "Levy et al., NPJ Prim Care Respir Med 2021, https://pmc.ncbi.nlm.nih.gov/articles/PMC7846552"
)
BTS_AMR = (
    "BTS/SIGN 2019 future-risk table (AMR < 0.5), "
    "https://nursing-notebook.com/simplepage.cfm?ID=x20191117171840921223&linkID=80361"
)
NHSBSA = (
    "NHSBSA prednisolone metric, "
    "https://media.nhsbsa.nhs.uk/news/nhs-tackles-potential-over-prescription-of-short-course-steroid"
)
AAC = (
    "AAC asthma-biologics pathway (Oxford), "
    "https://www.oxfordahsn.org/our-work/asthma-biologics-toolkit/identifying-patients-with-uncontrolled-asthma/"
)
DELPHI = "UK Delphi consensus on severe-asthma referral, BMJ Open Respir Res (table 139327)"
ERS_ATS = (
    "ERS/ATS severe asthma guideline, https://erj.ersjournals.com/highwire/markup/104234/expansion"
)
PAST_ATTACK = (
    "Past attack as predictor of the next, https://pmc.ncbi.nlm.nih.gov/articles/PMC6056517/; "
    "BTS/SIGN 2019 future-risk table"
)
LONDON_CYP = (
    "London CYP asthma standards (three basics), "
    "https://www.myhealth.london.nhs.uk/healthy-london/programmes/children-and-young-people/ask-about-asthma"
)
POPHEALTH = "pophealth default (no published cut-off found); configurable"


@dataclass(frozen=True)
class Threshold:
    """One named cut-off: ``marker <comparison> value`` raises the flag."""

    value: float
    comparison: Comparison
    unit: str
    meaning: str
    source: str
    status: Status

    def describe(self) -> str:
        shown = f"{self.value:g}"
        return f"{self.comparison} {shown} {self.unit}".strip()

    def amount(self) -> str:
        """The value as words show it: ``6``, ``0.5``; mg of 1,000 or more in grams (``3 g``)."""
        if self.unit.startswith("mg") and self.value >= 1000:
            return f"{self.value / 1000:g} g"
        return f"{self.value:g}"

    def phrase(self) -> str:
        """The cut-off in plain words, for reasons and titles: ``6 or more``, ``more than
        12``, ``below 0.5``, ``more than 3 g``, ``no`` (``== 0``)."""
        v = self.amount()
        if self.comparison == "==":
            return "no" if self.value == 0 else f"exactly {v}"
        return {
            ">=": f"{v} or more",
            ">": f"more than {v}",
            "<": f"below {v}",
            "<=": f"{v} or fewer",
        }[self.comparison]

    def sign(self) -> str:
        """The cut-off as a short sign for headings: ``≥ 6``, ``> 12``, ``< 0.5``."""
        op = {">=": "≥", ">": ">", "<": "<", "<=": "≤", "==": "="}[self.comparison]
        return f"{op} {self.amount()}"


def _t(value, comparison, unit, meaning, source, status) -> Threshold:
    return Threshold(float(value), comparison, unit, meaning, source, status)


@dataclass(frozen=True)
class AsthmaConfig:
    """The asthma programme's thresholds and windows (one versioned set)."""

    version: str = "pophealth-asthma-2026.11-1"

    # -- windows --------------------------------------------------------------------------
    #: Look-back window: events on (index date − 12 months, index date] count. The day
    #: exactly 12 months before the index date is outside; the index date itself is inside.
    lookback_months: int = 12
    lookback_source: str = "PROGRAMMES.md §0.2: 'previous 12 months' relative to an index date"
    #: Action plan and inhaler-technique checks: the London standards ask for them yearly.
    basics_lookback_months: int = 12

    # -- reliever (SABA) ------------------------------------------------------------------
    saba_review: Threshold = _t(
        3, ">=", "SABA inhalers in 12 months",
        "3 or more reliever inhalers in a year: review", SCOTLAND, "confirmed",
    )  # fmt: skip
    saba_priority: Threshold = _t(
        6, ">=", "SABA inhalers in 12 months",
        "6 or more reliever inhalers in a year: priority review before the next issue "
        "(also the national IIF measure)", f"{SCOTLAND}; {IIF}", "confirmed",
    )  # fmt: skip
    saba_urgent: Threshold = _t(
        12, ">", "SABA inhalers in 12 months",
        "more than 12 reliever inhalers in a year: urgent review (NRAD)", NRAD_AUDIT, "secondary",
    )  # fmt: skip

    # -- preventer (ICS) ------------------------------------------------------------------
    ics_none: Threshold = _t(
        0, "==", "ICS inhalers in 12 months",
        "no preventer (inhaled steroid) issued in a year", NRAD, "confirmed",
    )  # fmt: skip
    ics_under_collected: Threshold = _t(
        4, "<", "ICS inhalers in 12 months",
        "preventer issued but fewer than 4 inhalers collected in a year", LEVY, "confirmed",
    )  # fmt: skip
    amr_low: Threshold = _t(
        0.5, "<", "controller ÷ (controller + reliever) items",
        "asthma medication ratio below 0.5 (exactly 0.5 is not flagged)", BTS_AMR, "secondary",
    )  # fmt: skip

    # -- oral steroids --------------------------------------------------------------------
    ocs_courses_flag: Threshold = _t(
        2, ">=", "oral steroid courses in 12 months",
        "2 or more oral steroid courses in a year (uncontrolled asthma)", AAC, "confirmed",
    )  # fmt: skip
    ocs_courses_referral: Threshold = _t(
        2, ">", "oral steroid courses in 12 months",
        "more than 2 oral steroid courses in a year: refer to a specialist asthma service",
        NRAD, "confirmed",
    )  # fmt: skip
    prednisolone_high_mg: Threshold = _t(
        3000, ">", "mg prednisolone in 12 months",
        "more than 3 g prednisolone in a year (NHSBSA high-dose)", NHSBSA, "confirmed",
    )  # fmt: skip
    #: One course or more (below ``ocs_courses_flag``): a moderate reason. A past attack is
    #: the single strongest predictor of the next (OR ~3.7 for one attack in children).
    ocs_courses_any: Threshold = _t(
        1, ">=", "oral steroid courses in 12 months",
        "an oral steroid course in a year (fewer than the high-risk count): a past attack is "
        "the strongest predictor of the next", PAST_ATTACK, "confirmed",
    )  # fmt: skip
    #: Cumulative prednisolone is the **known** total: issues whose quantity or tablet
    #: strength is unknown add nothing to it and are counted apart
    #: (``prednisolone_unknown_issues_12m``), so ``prednisolone_high_mg`` is met by the
    #: known total only and the words say "at least N mg (k issues with unknown dose)".
    #: Issues of prednisolone less than this many days apart are one course (a course
    #: issued in two parts). [UNCONFIRMED] pophealth default.
    ocs_same_course_days: int = 7

    # -- attacks (hospital) ---------------------------------------------------------------
    ed_followup: Threshold = _t(
        1, ">=", "ED attendances for asthma in 12 months",
        "seen in A&E for asthma in the last year: needs follow-up", NRAD, "confirmed",
    )  # fmt: skip
    ed_secondary_followup: Threshold = _t(
        2, ">=", "ED attendances for asthma in 12 months",
        "2 or more A&E attendances for asthma in a year: secondary-care follow-up",
        NRAD, "confirmed",
    )  # fmt: skip
    admissions_flag: Threshold = _t(
        1, ">=", "emergency admissions for asthma in 12 months",
        "admitted to hospital for asthma in the last year", NRAD, "confirmed",
    )  # fmt: skip

    # -- pollution ------------------------------------------------------------------------
    pollution_top_quintile: Threshold = _t(
        5, ">=", "quintile (5 = most polluted 20% of the region's LSOAs)",
        "lives in the most polluted fifth of areas (NO2 or particulates)",
        "pophealth default; IoD2019 air-quality components (MHCLG/Defra)", "unconfirmed",
    )  # fmt: skip

    # -- ISAC: uncontrolled and severe asthma ---------------------------------------------
    uncontrolled_ocs: Threshold = _t(
        2, ">=", "oral steroid courses in 12 months", "uncontrolled: ≥2 OCS courses", AAC,
        "confirmed",
    )  # fmt: skip
    uncontrolled_attacks: Threshold = _t(
        1, ">=", "ED attendances + admissions for asthma in 12 months",
        "uncontrolled: ≥1 A&E attendance or admission for asthma", AAC, "confirmed",
    )  # fmt: skip
    uncontrolled_saba: Threshold = _t(
        6, ">=", "SABA inhalers in 12 months", "uncontrolled: ≥6 reliever inhalers", AAC,
        "confirmed",
    )  # fmt: skip
    #: Poor control on a validated questionnaire (AAC: "poor symptom control"; ERS/ATS:
    #: ACT < 20 or ACQ ≥ 1.5). pophealth does not read ACT/ACQ scores from records yet (no
    #: curated code list); they count only when a marker table carries ``act_score`` /
    #: ``acq_score`` columns.
    uncontrolled_act: Threshold = _t(
        20, "<", "Asthma Control Test score (5-25)",
        "uncontrolled: Asthma Control Test score below 20", ERS_ATS, "confirmed",
    )  # fmt: skip
    uncontrolled_acq: Threshold = _t(
        1.5, ">=", "Asthma Control Questionnaire score (0-6)",
        "uncontrolled: Asthma Control Questionnaire score 1.5 or more", ERS_ATS, "confirmed",
    )  # fmt: skip
    hard_trigger_ocs: Threshold = _t(
        3, ">=", "oral steroid courses in 12 months",
        "3 or more oral steroid courses in a year: refer", DELPHI, "confirmed",
    )  # fmt: skip
    hard_trigger_maintenance_ocs: Threshold = _t(
        5, ">=", "mg prednisolone a day (maintenance)",
        "on maintenance oral steroids at 5 mg a day or more: refer", DELPHI, "confirmed",
    )  # fmt: skip
    #: Maintenance OCS = a maintenance issue in the look-back (structured daily dose at most
    #: ``maintenance_max_daily_mg`` lasting at least ``maintenance_min_days_supply`` days),
    #: or prednisolone issued in at least ``maintenance_ocs_min_months`` distinct months
    #: ("systemic steroids ≥ 50% of the year", ERS/ATS) when doses are not structured.
    #: [UNCONFIRMED] records-based proxies; pophealth defaults.
    maintenance_ocs_min_months: int = 6
    maintenance_max_daily_mg: float = 10.0
    maintenance_min_days_supply: int = 28
    maintenance_ocs_source: str = (
        f"{ERS_ATS} (≥50% of the year); the months-issued proxy is pophealth's"
    )
    #: High-dose ICS = a product in the ``high`` BTS/SIGN 2019 *adult* dose category of the ICS
    #: code list's ``dose_category`` column (at the licensed usual regimen), for every age.
    #: PROGRAMMES.md §2 cites the ERS/ATS µg/day table (age > 12); the two agree for most
    #: products but are not the same rule. [secondary: the list's categories]
    high_dose_ics_source: str = (
        "BTS/SIGN 2019 adult ICS dose categories (curated ics_inhalers dose_category); "
        f"compare {ERS_ATS}"
    )

    # -- ISAC pathway timers --------------------------------------------------------------
    optimisation_months: int = 6
    optimisation_source: str = f"{AAC}: at most 6 months of optimisation, then refer"
    secondary_care_weeks: int = 18
    secondary_care_source: str = f"{AAC}: secondary-care review within 18 weeks"
    sac_weeks: int = 8
    sac_source: str = f"{AAC}: severe asthma centre review within 8 weeks (Delphi: 12 weeks)"

    # -- London CYP basics ----------------------------------------------------------------
    basics_source: str = LONDON_CYP
    review_source: str = "QOF asthma annual review; London CYP standards"

    # -- risk tier (pophealth's own LADS-style scheme) ------------------------------------
    #: Tier = highest level any reason reaches. Which markers put someone in which tier is
    #: listed in :data:`pophealth.programmes.asthma.rules.REASONS`.
    tier_scheme: str = (
        "pophealth LADS-style tier (pophealth's own scheme, not LADS's): high if any "
        "'high' reason, else moderate if any 'moderate' reason, else low"
    )

    #: Monthly SABA-overuse SPC: number of month ends shown (Making Data Count needs ≥ 12;
    #: 20+ gives stable limits).
    spc_months: int = 24

    #: Age bands used for equity views.
    age_bands: tuple[int, ...] = field(default=(0, 5, 12, 17, 40, 65, 200))

    def with_values(self, *, version: str, **changes) -> AsthmaConfig:
        """A copy with some values changed; a new ``version`` is required."""
        if version == self.version:
            raise ValueError("a changed asthma config needs a new version string")
        return dataclasses.replace(self, version=version, **changes)

    def words(self, text: str) -> str:
        """``text`` with each ``[name]`` filled from this config, so that words shown to
        clinicians follow the configured values:

        * a threshold by its phrase: ``[saba_priority]`` → "6 or more";
        * ``[name:sign]`` by its sign: ``[saba_priority:sign]`` → "≥ 6";
        * ``[name:fifths]`` a quintile cut-off as fifths: ≥ 5 → "top fifth", ≥ 4 → "top 2 fifths";
        * a window: ``[lookback_months]`` → "12 months", ``[sac_weeks]`` → "8 weeks".

        An unknown name is an error (a typo must not reach a worklist)."""

        def fill(match: re.Match) -> str:
            name, form = match.group(1), match.group(2)
            value = getattr(self, name, None)
            if isinstance(value, Threshold):
                if form is None:
                    return value.phrase()
                if form == "sign":
                    return value.sign()
                if form == "fifths" and value.comparison == ">=":
                    n = 6 - int(value.value)
                    return "top fifth" if n == 1 else f"top {n} fifths"
            elif form is None and isinstance(value, int) and not isinstance(value, bool):
                for unit in ("months", "weeks", "days"):
                    if name.endswith(f"_{unit}"):
                        return f"{value} {unit}"
            where = match.group(0)
            raise ValueError(f"asthma config words: cannot fill {where} in {text!r}")

        return re.sub(r"\[([a-z0-9_]+)(?::([a-z]+))?\]", fill, text)

    def thresholds(self) -> dict[str, Threshold]:
        """Every :class:`Threshold` by name (for documentation and the report)."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), Threshold)
        }

    def table(self) -> list[dict[str, str]]:
        """The thresholds as rows: name, rule, meaning, source, status."""
        return [
            {
                "threshold": name,
                "rule": t.describe(),
                "meaning": t.meaning,
                "source": t.source,
                "status": t.status,
            }
            for name, t in self.thresholds().items()
        ]


DEFAULT = AsthmaConfig()
