"""The code lists the asthma programme reads, as (system, code) sets.

:func:`curated` loads them from pophealth's curated lists (``pophealth/codelists/curated``)
through :mod:`pophealth.codelists`; tests build small :class:`AsthmaCodes` by hand. A list
the curated set does not have yet is empty and named in :attr:`AsthmaCodes.missing`, so the
report can say which markers could not be computed instead of showing a silent zero.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

Code = tuple[str, str]

#: ICD-10 (3-character) categories of an asthma attack in hospital data: J45 asthma,
#: J46 status asthmaticus (acute severe asthma). ICD-10 WHO.
ATTACK_ICD10_PREFIXES: tuple[str, ...] = ("J45", "J46")


def codes(system: str, values: Iterable[str]) -> frozenset[Code]:
    return frozenset((system, str(v)) for v in values)


@dataclass(frozen=True)
class AsthmaCodes:
    """Every code list of the programme. Events/medications match on (system, code)."""

    asthma: frozenset[Code]
    asthma_resolved: frozenset[Code] = frozenset()
    saba: frozenset[Code] = frozenset()
    ics: frozenset[Code] = frozenset()
    ics_high_dose: frozenset[Code] = frozenset()
    #: prednisolone product → mg per unit of quantity (e.g. 5 for 5 mg tablets)
    prednisolone_mg: Mapping[Code, float] = field(default_factory=dict)
    review: frozenset[Code] = frozenset()
    action_plan: frozenset[Code] = frozenset()
    inhaler_technique: frozenset[Code] = frozenset()
    #: smoking-status codes: latest one on or before the index date decides
    smoking_current: frozenset[Code] = frozenset()
    smoking_not_current: frozenset[Code] = frozenset()
    #: ED chief-diagnosis codes for asthma (ECDS, SNOMED CT); ICD-10 J45/J46 also count
    ed_asthma: frozenset[Code] = frozenset()
    attack_icd10_prefixes: tuple[str, ...] = ATTACK_ICD10_PREFIXES
    referral_secondary: frozenset[Code] = frozenset()
    seen_secondary: frozenset[Code] = frozenset()
    referral_sac: frozenset[Code] = frozenset()
    seen_sac: frozenset[Code] = frozenset()
    missing: tuple[str, ...] = ()

    def by_system(self, name: str) -> dict[str, list[str]]:
        """The list ``name`` as {system: [codes]} (for building filters)."""
        out: dict[str, list[str]] = {}
        values = getattr(self, name)
        for system, code in sorted(values.keys() if isinstance(values, Mapping) else values):
            out.setdefault(system, []).append(code)
        return out


#: attribute → curated list name(s) tried in order (first one present wins).
CURATED_NAMES: dict[str, tuple[str, ...]] = {
    "asthma": ("asthma_diagnosis",),
    "asthma_resolved": ("asthma_resolved",),
    "saba": ("saba_inhalers",),
    "ics": ("ics_inhalers",),
    "prednisolone_mg": ("ocs_prednisolone",),
    "review": ("asthma_review", "asthma_annual_review", "reviews"),
    "action_plan": ("asthma_action_plan", "action_plan"),
    "inhaler_technique": ("inhaler_technique", "inhaler_technique_check"),
    "smoking_current": ("smoking_status", "smoking"),
    "ed_asthma": ("asthma_attack_snomed", "asthma_attack_ed", "asthma_exacerbation"),
    "referral_secondary": ("asthma_referral_secondary", "respiratory_referral"),
    "seen_secondary": ("asthma_seen_secondary", "respiratory_clinic_seen"),
    "referral_sac": ("severe_asthma_referral",),
    "seen_sac": ("severe_asthma_seen",),
}


def _read_curated(name: str):
    """One curated list as a DataFrame, or None when pophealth has no list of that name."""
    from pathlib import Path

    import pandas as pd

    import pophealth

    manifest_path = Path(pophealth.__file__).parent / "codelists" / "curated" / "MANIFEST.csv"
    path = manifest_path.parent / f"{name}.csv"
    if not path.is_file():
        return None
    manifest = pd.read_csv(manifest_path, dtype=str)
    row = manifest[manifest["name"] == name]
    if row.empty:
        raise ValueError(f"{path}: list {name!r} is not described in {manifest_path}")
    frame = pd.read_csv(path, dtype=str)
    frame["system"] = row["system"].iloc[0]
    return frame


def curated() -> AsthmaCodes:
    """The programme's code lists from pophealth's curated set (missing ones named)."""
    found: dict[str, object] = {}
    missing: list[str] = []

    def first(names: tuple[str, ...]):
        for name in names:
            frame = _read_curated(name)
            if frame is not None:
                return frame
        return None

    def as_set(frame) -> frozenset[Code]:
        return frozenset(zip(frame["system"], frame["code"], strict=True))

    for attr, names in CURATED_NAMES.items():
        frame = first(names)
        if frame is None:
            missing.append(f"{attr} (tried: {', '.join(names)})")
            continue
        if attr == "prednisolone_mg":
            found[attr] = {
                (s, c): float(mg)
                for s, c, mg in zip(
                    frame["system"], frame["code"], frame["strength_mg"], strict=True
                )
            }
        elif attr == "smoking_current":
            current = frame["category"].str.lower().eq("current")
            found["smoking_current"] = as_set(frame[current])
            found["smoking_not_current"] = as_set(frame[~current])
        elif attr == "ics":
            found["ics"] = as_set(frame)
            if "dose_category" in frame.columns:
                found["ics_high_dose"] = as_set(frame[frame["dose_category"].eq("high")])
            else:
                missing.append("ics_high_dose (ics_inhalers has no dose_category column)")
        else:
            found[attr] = as_set(frame)
    if "asthma" not in found:
        raise ValueError("the curated code lists have no asthma_diagnosis list")
    return AsthmaCodes(**found, missing=tuple(missing))
