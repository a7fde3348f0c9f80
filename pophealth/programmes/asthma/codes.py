"""The code lists the asthma programme reads, as typed :class:`~pophealth.codelists.Codelist`s.

:func:`curated` loads them from pophealth's curated lists through
:func:`pophealth.codelists.codelist` (format-checked per coding system); tests build small
:class:`AsthmaCodes` with :meth:`Codelist.of`.

Every list a marker is computed from is **required** (:data:`REQUIRED`): without it the
marker would read "no" for everyone (no review list → everyone "no review"; no SABA list →
nobody over-uses a reliever), so building :class:`AsthmaCodes` with one missing or empty is
an error naming the list. Only the ISAC pathway lists are optional by design
(:data:`OPTIONAL`): without them the referral timers are not computed and the report says so.
An optional list the curated set does not have is ``None`` and named in
:attr:`AsthmaCodes.missing`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from pophealth.codelists import (
    Codelist,
    CodelistError,
    available_codelists,
    codelist,
    own_first,
)


@dataclass(frozen=True)
class AsthmaCodes:
    """Every code list of the programme (``None`` = not available)."""

    asthma: Codelist
    asthma_resolved: Codelist | None = None
    saba: Codelist | None = None
    ics: Codelist | None = None
    #: high-dose ICS products (BTS/SIGN "high" dose category of ``ics_inhalers``)
    ics_high_dose: Codelist | None = None
    #: oral prednisolone with a ``strength_mg`` attribute (mg per unit of quantity)
    prednisolone: Codelist | None = None
    review: Codelist | None = None
    action_plan: Codelist | None = None
    inhaler_technique: Codelist | None = None
    #: smoking status with a ``category`` column (current / ex / never)
    smoking: Codelist | None = None
    #: ED chief diagnosis of an asthma attack (ECDS, SNOMED CT)
    ed_asthma: Codelist | None = None
    #: asthma as a hospital diagnosis (ICD-10 J45/J46, 4 characters)
    attack_icd10: Codelist | None = None
    referral_secondary: Codelist | None = None
    seen_secondary: Codelist | None = None
    referral_sac: Codelist | None = None
    seen_sac: Codelist | None = None
    missing: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        problems = []
        for name in ("asthma", *REQUIRED):
            cl = getattr(self, name)
            if cl is None:
                problems.append(f"{name} (missing)")
            elif not any(cl.codes.values()):
                problems.append(f"{name} (empty: {cl.name!r})")
        if problems:
            raise MissingCodelistError(
                "asthma programme: required code list(s) "
                + ", ".join(f"{p} [curated: {_curated_hint(p)}]" for p in problems)
                + "; without them the markers would read 'no' for everyone. Optional lists "
                "(may be None): " + ", ".join(OPTIONAL)
            )

    def by_system(self, name: str) -> dict[str, list[str]]:
        """The list ``name`` as {system: sorted codes}; {} when the list is missing."""
        cl = getattr(self, name)
        if cl is None:
            return {}
        return {system: sorted(codes) for system, codes in cl.codes.items()}

    def seen_recorded(self) -> tuple[str, ...]:
        """The ISAC pathway steps (``secondary``, ``sac``) whose referral *and* clinic-visit
        lists both exist, so that a wait can be timed from the records."""
        steps = (("secondary", self.referral_secondary, self.seen_secondary),
                 ("sac", self.referral_sac, self.seen_sac))  # fmt: skip
        return tuple(name for name, ref, seen in steps if ref is not None and seen is not None)

    def referrals_recorded(self) -> tuple[str, ...]:
        """The ISAC pathway steps (``secondary``, ``sac``) whose referral list exists, so that
        a referral can be found in the records (a step without one is not measured)."""
        steps = (("secondary", self.referral_secondary), ("sac", self.referral_sac))
        return tuple(name for name, ref in steps if ref is not None)

    def strengths(self) -> dict[tuple[str, str], float]:
        """(system, code) → mg per unit for the prednisolone list."""
        if self.prednisolone is None:
            return {}
        mg = self.prednisolone.attributes.get("strength_mg", {})
        return {
            (system, code): float(mg[code])
            for system, codes in self.prednisolone.codes.items()
            for code in codes
            if code in mg
        }


class MissingCodelistError(CodelistError):
    """A code list the asthma programme needs is missing or empty."""


#: Lists every marker needs: missing or empty is an error (the ``asthma`` list too).
#: ``ics_high_dose`` is derived from ``ics_inhalers``' ``dose_category`` column.
REQUIRED: tuple[str, ...] = (
    "asthma_resolved", "saba", "ics", "ics_high_dose", "prednisolone", "review",
    "action_plan", "inhaler_technique", "smoking", "ed_asthma", "attack_icd10",
)  # fmt: skip
#: Lists that may be ``None``: the ISAC pathway referral and clinic-visit lists. Without
#: them the timers are not computed (waits unknown, never a breach) and the report says so;
#: the severe-asthma-centre lists are not curated (no public source confirmed such codes).
OPTIONAL: tuple[str, ...] = ("referral_secondary", "seen_secondary", "referral_sac", "seen_sac")


#: attribute → (table, code column) its list is matched against; events' code otherwise.
MATCHED_IN: dict[str, tuple[str, str | None]] = {
    "saba": ("medications", None),
    "ics": ("medications", None),
    "ics_high_dose": ("medications", None),
    "prednisolone": ("medications", None),
    "ed_asthma": ("emergency_attendances", "diagnosis"),
    "attack_icd10": ("admissions", "primary_diagnosis"),
}


def _curated_hint(problem: str) -> str:
    name = problem.split(" ", 1)[0]
    if name == "ics_high_dose":
        return "ics_inhalers with a 'high' dose_category"
    return " or ".join(CURATED_NAMES.get(name, (name,)))


#: attribute → curated list names tried in order (the first present wins).
CURATED_NAMES: dict[str, tuple[str, ...]] = {
    "asthma": ("asthma_diagnosis",),
    "asthma_resolved": ("asthma_resolved",),
    "saba": ("saba_inhalers",),
    "ics": ("ics_inhalers",),
    "prednisolone": ("ocs_prednisolone",),
    "review": ("asthma_review",),
    "action_plan": ("asthma_action_plan",),
    "inhaler_technique": ("inhaler_technique_check",),
    "smoking": ("smoking_status",),
    "ed_asthma": ("asthma_exacerbation",),
    "attack_icd10": ("asthma_attack_icd10",),
    "referral_secondary": ("asthma_referral_secondary", "respiratory_referral"),
    "seen_secondary": ("asthma_seen_secondary", "respiratory_clinic_seen"),
    "referral_sac": ("severe_asthma_referral",),
    "seen_sac": ("severe_asthma_seen",),
}


def high_dose_subset(ics: Codelist, column: str = "dose_category", value: str = "high"):
    """The high-dose products of an ICS list carrying a dose-category column (else None)."""
    categories = ics.categories.get(column)
    if not categories:
        return None
    chosen = {code for code, cat in categories.items() if cat == value}
    # keep each code in its own system (a multi-system list: dm+d and RxNorm inhalers)
    by_system = {s: ics.codes_in(s) & chosen for s in ics.systems}
    by_system = {s: frozenset(cs) for s, cs in by_system.items() if cs}
    if not by_system:
        return None
    return Codelist(
        name=f"{ics.name}[{column}={value}]",
        system=ics.system if ics.system in by_system else next(iter(by_system)),
        codes=by_system,
        terms={c: t for c, t in ics.terms.items() if c in chosen},
        source=ics.source,
    )


def curated() -> AsthmaCodes:
    """The programme's code lists: pophealth's curated set, each replaced by the list of the
    same name in a folder of one's own within :func:`pophealth.codelists.own_codelists`.

    A required list (:data:`REQUIRED`) the curated set lacks is an error naming it; a missing
    optional list (:data:`OPTIONAL`) is ``None`` and named in :attr:`AsthmaCodes.missing`."""
    available = available_codelists()
    found: dict[str, Codelist] = {}
    missing: list[str] = []
    for attr, names in CURATED_NAMES.items():
        name = next((n for n in own_first(names) if n in available), None)
        if name is None:
            missing.append(f"{attr} (tried: {', '.join(names)})")
            continue
        found[attr] = codelist(name)
    if "ics" in found:
        high = high_dose_subset(found["ics"])
        if high is None:
            missing.append("ics_high_dose (ics_inhalers has no 'high' dose_category)")
        else:
            found["ics_high_dose"] = high
    required = [m for m in missing if m.split(" ", 1)[0] not in OPTIONAL]
    if required:
        raise MissingCodelistError(
            "asthma programme: no code list for required list(s) "
            + "; ".join(required)
            + " — without them the markers would read 'no' for everyone"
        )
    known = {f.name for f in fields(AsthmaCodes)}
    return AsthmaCodes(**{k: v for k, v in found.items() if k in known}, missing=tuple(missing))
