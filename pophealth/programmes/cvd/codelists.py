"""The code lists the CVD programme reads, by role.

Each role is one clinical concept the rules use (e.g. ``statins``, ``sbp``). The
default set comes from pophealth's curated lists (:func:`pophealth.codelists.codelist`);
tests and other deployments pass their own :class:`CvdCodelists`. A role whose list is
not available is ``None``: the variable it feeds is then "not recorded" for everyone,
and the run says so in the report's data-quality notes rather than failing.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from pophealth.codelists import Codelist, CodelistError, codelist, own_first

#: role → curated list name(s) tried in order. Roles are grouped by what they feed.
CURATED_NAMES: dict[str, tuple[str, ...]] = {
    # registers and conditions (coded events, ever before the index date)
    "hypertension": ("hypertension_diagnosis",),
    "hypertension_resolved": ("hypertension_resolved",),
    "ihd": ("chd_diagnosis",),
    "pad": ("pad_diagnosis",),
    "stroke": ("stroke_tia_diagnosis",),  # stroke and TIA in one list
    "tia": ("tia_diagnosis",),
    "atrial_fibrillation": ("af_diagnosis",),
    "atrial_fibrillation_resolved": ("af_resolved",),
    "heart_failure": ("heart_failure_diagnosis",),
    "thromboembolism": ("thromboembolism", "vte_diagnosis"),
    "type1_diabetes": ("diabetes_type1",),
    "type2_diabetes": ("diabetes_type2",),
    "ckd_3_5": ("ckd_diagnosis",),
    "severe_mental_illness": ("smi_diagnosis",),
    "rheumatoid_arthritis": ("rheumatoid_arthritis",),
    "migraine": ("migraine",),
    "sle": ("sle",),
    "erectile_dysfunction": ("erectile_dysfunction",),
    "family_history_chd": ("family_history_chd",),
    "familial_hypercholesterolaemia": ("familial_hypercholesterolaemia",),
    "anaemia": ("anaemia",),
    "bleeding": ("bleeding_history", "major_bleeding"),
    "statin_declined": ("statin_declined", "statin_intolerance"),
    # measurements (events with a value)
    "sbp": ("systolic_bp",),
    "dbp": ("diastolic_bp",),
    "bmi": ("bmi",),
    "height": ("height",),
    "weight": ("weight",),
    "total_cholesterol": ("total_cholesterol",),
    "hdl": ("hdl_cholesterol",),
    "ldl": ("ldl_cholesterol",),
    "non_hdl": ("non_hdl_cholesterol",),
    "chol_hdl_ratio": ("cholesterol_hdl_ratio",),
    "smoking": ("smoking_status",),
    "cigarettes_per_day": ("cigarettes_per_day",),
    "haemoglobin": ("haemoglobin",),
    "egfr": ("egfr",),
    # medicines (issues in a look-back)
    "statins": ("statins",),
    "other_lipid_lowering": ("ezetimibe", "lipid_lowering_other"),
    "doacs": ("doacs",),
    "warfarin": ("warfarin",),
    "aspirin": ("aspirin",),
    "antiplatelets": ("antiplatelets", "clopidogrel"),
    "antihypertensives": ("antihypertensives",),
    "atypical_antipsychotics": ("atypical_antipsychotics",),
    "corticosteroids": ("ocs_prednisolone", "oral_corticosteroids"),
}


@dataclass(frozen=True)
class CvdCodelists:
    """One :class:`~pophealth.codelists.Codelist` (or None) per role of :data:`CURATED_NAMES`.

    Category and attribute columns the rules read: ``smoking`` category
    (never/ex/current/light/moderate/heavy); ``statins`` category ``ingredient`` (or
    ``chemical``) and attribute ``strength_mg``.
    """

    hypertension: Codelist | None = None
    hypertension_resolved: Codelist | None = None
    ihd: Codelist | None = None
    pad: Codelist | None = None
    stroke: Codelist | None = None
    tia: Codelist | None = None
    atrial_fibrillation: Codelist | None = None
    atrial_fibrillation_resolved: Codelist | None = None
    heart_failure: Codelist | None = None
    thromboembolism: Codelist | None = None
    type1_diabetes: Codelist | None = None
    type2_diabetes: Codelist | None = None
    ckd_3_5: Codelist | None = None
    severe_mental_illness: Codelist | None = None
    rheumatoid_arthritis: Codelist | None = None
    migraine: Codelist | None = None
    sle: Codelist | None = None
    erectile_dysfunction: Codelist | None = None
    family_history_chd: Codelist | None = None
    familial_hypercholesterolaemia: Codelist | None = None
    anaemia: Codelist | None = None
    bleeding: Codelist | None = None
    statin_declined: Codelist | None = None
    sbp: Codelist | None = None
    dbp: Codelist | None = None
    bmi: Codelist | None = None
    height: Codelist | None = None
    weight: Codelist | None = None
    total_cholesterol: Codelist | None = None
    hdl: Codelist | None = None
    ldl: Codelist | None = None
    non_hdl: Codelist | None = None
    chol_hdl_ratio: Codelist | None = None
    smoking: Codelist | None = None
    cigarettes_per_day: Codelist | None = None
    haemoglobin: Codelist | None = None
    egfr: Codelist | None = None
    statins: Codelist | None = None
    other_lipid_lowering: Codelist | None = None
    doacs: Codelist | None = None
    warfarin: Codelist | None = None
    aspirin: Codelist | None = None
    antiplatelets: Codelist | None = None
    antihypertensives: Codelist | None = None
    atypical_antipsychotics: Codelist | None = None
    corticosteroids: Codelist | None = None

    def missing(self) -> list[str]:
        """Roles with no code list."""
        return [f.name for f in fields(self) if getattr(self, f.name) is None]


def roles() -> list[str]:
    return [f.name for f in fields(CvdCodelists)]


def curated_codelists() -> CvdCodelists:
    """The default set: the first list found for each role (None if none), a list of
    one's own (:func:`pophealth.codelists.own_codelists`) before a curated one."""
    found: dict[str, Codelist | None] = {}
    for role in roles():
        found[role] = None
        for name in own_first(CURATED_NAMES[role]):
            try:
                found[role] = codelist(name)
                break
            except CodelistError:
                continue
    return CvdCodelists(**found)
