"""Named, versioned thresholds of the CVD programme, each with its source.

Nothing clinical is a literal in the rule modules: they read a :class:`CvdConfig`.
Change a threshold by building a new config (``dataclasses.replace``) and say why in
its ``version``. Sources are those in PROGRAMMES.md section 3; tags follow that file:
[confirmed] read in the source, [secondary] read in a reputable summary,
[UNCONFIRMED] needs clinical sign-off before use in care.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType

from pophealth.scores.af import (
    CHA2DS2_VASC,
    NICE_NG196_ANTICOAGULATION,
    ORBIT,
    AnticoagulationThresholds,
    Cha2ds2VascPoints,
    OrbitPoints,
)
from pophealth.scores.bp import BP_TARGETS_CVDPREVENT, BPTargets

CONFIG_VERSION = "cvd-config 2026-11.2"  # .2: plausible ranges for every lipid value

#: Cholesterol (total, HDL, LDL, non-HDL) in mg/dL ÷ 38.67 = mmol/L: 10 dL per L over the
#: molar mass of cholesterol, C27H46O, 386.65 g/mol (mmol/L = mg/dL × 10 / 386.65 =
#: mg/dL × 0.02586). The same factor serves every cholesterol fraction, each being measured
#: as cholesterol; triglycerides would need 88.57 and are not read here. [secondary: the
#: derivation at sciencing.com/convert-mgdl-mmollitre-cholesterol-5595314.html and the
#: table at fatfreekitchen.com/cholesterol/cholesterol_units.html; the arithmetic checks]
CHOLESTEROL_MG_DL_PER_MMOL_L = 38.67

#: Lipid results are compared with a target or threshold (non-HDL 2.5, LDL 2.0, total
#: cholesterol 7.5 and 9) after rounding to this many decimals: no laboratory reports more
#: than two, and the arithmetic of a derived non-HDL (4.4 - 1.9 = 2.5000000000000004) or of a
#: mg/dL conversion must not lift a result at a target above it. Not a clinical threshold:
#: it only removes floating-point noise.
LIPID_DECIMALS = 6

#: Unit strings read as mg/dL (after lower-casing and removing spaces): UCUM "mg/dL" and
#: its spelled-out forms. Any other unit, or none, is read as mmol/L (the UK unit).
MG_DL_UNITS: tuple[str, ...] = (
    "mg/dl",
    "mg/100ml",
    "mgperdl",
    "milligramperdeciliter",
    "milligramperdecilitre",
)

#: Lipid value → the CvdConfig field holding its plausible range.
LIPID_RANGES: MappingProxyType[str, str] = MappingProxyType(
    {
        "total_cholesterol": "cholesterol_range",
        "hdl": "hdl_range",
        "ldl": "ldl_range",
        "non_hdl": "non_hdl_range",
        "chol_hdl_ratio": "chol_hdl_ratio_range",
    }
)


@dataclass(frozen=True)
class Threshold:
    """A single named threshold with its unit and source."""

    value: float
    unit: str
    source: str


@dataclass(frozen=True)
class StatinStrength:
    """Intensity of one statin at one total daily dose."""

    ingredient: str
    daily_dose_mg: float
    intensity: str  # "low" | "medium" | "high"


#: NICE NG238 (2023) statin-intensity table: "high" = >= 40% LDL-C reduction,
#: "medium" = 31-39%, "low" = 20-30%. [secondary — read via NICE NG238 summaries; the
#: table is reproduced from the published guideline's statin-intensity table and needs
#: sign-off]. Doses not listed are treated as "unknown" intensity.
NICE_STATIN_INTENSITY: tuple[StatinStrength, ...] = (
    StatinStrength("fluvastatin", 20, "low"),
    StatinStrength("fluvastatin", 40, "low"),
    StatinStrength("fluvastatin", 80, "medium"),
    StatinStrength("pravastatin", 10, "low"),
    StatinStrength("pravastatin", 20, "low"),
    StatinStrength("pravastatin", 40, "low"),
    StatinStrength("simvastatin", 10, "low"),
    StatinStrength("simvastatin", 20, "medium"),
    StatinStrength("simvastatin", 40, "medium"),
    StatinStrength("simvastatin", 80, "high"),
    StatinStrength("atorvastatin", 10, "medium"),
    StatinStrength("atorvastatin", 20, "high"),
    StatinStrength("atorvastatin", 40, "high"),
    StatinStrength("atorvastatin", 80, "high"),
    StatinStrength("rosuvastatin", 5, "medium"),
    StatinStrength("rosuvastatin", 10, "high"),
    StatinStrength("rosuvastatin", 20, "high"),
    StatinStrength("rosuvastatin", 40, "high"),
)

#: NHS England lipid optimisation pathway (secondary prevention): "high-intensity
#: statin" = atorvastatin 80 mg (40 mg if a smaller reduction is needed) or rosuvastatin
#: 20 mg. [confirmed, england.nhs.uk/long-read/lipid-optimisation-pathway-secondary-
#: prevention-in-primary-care-and-the-community]. Minimum daily dose per ingredient at
#: which a patient counts as on the pathway's maximal statin.
NHSE_MAXIMAL_STATIN_MG: MappingProxyType[str, float] = MappingProxyType(
    {"atorvastatin": 80.0, "rosuvastatin": 20.0}
)


@dataclass(frozen=True)
class TownsendPolicy:
    """How QRISK3's Townsend input is filled (Townsend scores are not published for
    England's LSOAs; the 2011 census measures exist for output areas but no current
    official LSOA release does).

    ``mode="zero"`` (default): Townsend = 0, the national average, for everyone, flagged
    ``imputed``. QRISK3's own calculator does the same when the postcode is unknown
    (Townsend 0 is the centring value, so the term contributes nothing).
    ``mode="imd_quintile"``: a fixed value per IMD quintile (1 = most deprived), from
    ``by_imd_quintile``; patients without an IMD quintile get 0. [UNCONFIRMED mapping:
    the defaults are the approximate mean Townsend score of each national deprivation
    fifth, set so the fifths are symmetric about 0; needs sign-off before use.]

    Effect (see docs/programmes/cvd.md and the tests): with the zero policy a person
    in a deprived area is scored as average deprivation, which *understates* their
    risk slightly (QRISK3 female coefficient ≈ +0.077 per Townsend point: a baseline
    64-year-old woman's 17.2% becomes about 17.9% at Townsend 1 and about 20% at +4).
    """

    mode: str = "zero"
    by_imd_quintile: MappingProxyType[int, float] = field(
        default_factory=lambda: MappingProxyType({1: 4.0, 2: 1.5, 3: 0.0, 4: -1.5, 5: -3.0})
    )
    source: str = (
        "pophealth policy: Townsend not published for England's LSOAs; QRISK3 is centred on "
        "Townsend 0 (national mean). [UNCONFIRMED — needs sign-off]"
    )

    def __post_init__(self) -> None:
        if self.mode not in ("zero", "imd_quintile"):
            raise ValueError(
                f"TownsendPolicy.mode must be 'zero' or 'imd_quintile', got {self.mode!r}"
            )


@dataclass(frozen=True)
class CvdConfig:
    """Every threshold the CVD programme uses. Defaults as PROGRAMMES.md section 3."""

    version: str = CONFIG_VERSION

    # ---- blood pressure (CVDPREVENT groups; NICE NG136) ------------------------------
    bp: BPTargets = BP_TARGETS_CVDPREVENT
    nice_strict: bool = False  # True: "at target" means strictly below target (NICE wording)

    # ---- look-backs ------------------------------------------------------------------
    bp_lookback_months: int = 12  # CVDPREVENT [confirmed]
    sbp_sd_lookback_months: int = 60  # QRISK3: SD of SBP readings in the last 5 years
    sbp_sd_min_readings: int = 2  # an SD needs at least two readings
    measurement_lookback_months: int = 60  # BMI, cholesterol, HDL for QRISK3 [UNCONFIRMED]
    height_lookback_years: int = 100  # adult height: any recorded (age >= 18) value
    adult_height_min_age: int = 18  # heights measured younger are not used for BMI
    lipid_lookback_months: int = 24  # a lipid result older than this is "not recent"
    medication_lookback_months: int = 6  # "on a statin" = issued in the last 6 months
    anticoagulant_lookback_months: int = 12  # AF: no anticoagulant issued in 12 months
    # QRISK3 treatment flags from issues: "regular" use = at least this many issues in the
    # look-back, set separately for steroids and antipsychotics. [UNCONFIRMED: two or more
    # prescriptions is the QRISK3 paper's regular-use rule from memory; window pophealth's]
    corticosteroid_lookback_months: int = 12  # QRISK3 "regular steroid tablets" proxy
    corticosteroid_min_issues: int = 2
    antipsychotic_lookback_months: int = 12  # QRISK3 "atypical antipsychotic" proxy
    antipsychotic_min_issues: int = 2

    # ---- lipids ----------------------------------------------------------------------
    non_hdl_target: Threshold = Threshold(
        2.5,
        "mmol/L",
        "Barts Health NE London pharmacist-led lipid model: non-HDL > 2.5 on statin is "
        "sub-optimal [confirmed]; NICE NG238 target is 2.6 (set 2.6 to follow NICE)",
    )
    ldl_target: Threshold = Threshold(
        2.0, "mmol/L", "NICE NG238 secondary-prevention target LDL-C <= 2.0 [secondary]"
    )
    qrisk_statin: Threshold = Threshold(
        10.0,
        "%",
        "NICE NG238 / QS100: offer statin for primary prevention if QRISK3 >= 10% [confirmed]",
    )
    tc_fh_assess: Threshold = Threshold(
        7.5,
        "mmol/L",
        "HEART UK primary care: total cholesterol > 7.5 -> assess for FH (Simon "
        "Broome/DLCN) [confirmed]",
    )
    tc_fh_refer: Threshold = Threshold(
        9.0, "mmol/L", "HEART UK / NICE: total cholesterol > 9 -> refer to lipid clinic [confirmed]"
    )
    statin_intensity: tuple[StatinStrength, ...] = NICE_STATIN_INTENSITY
    maximal_statin_mg: MappingProxyType[str, float] = field(
        default_factory=lambda: NHSE_MAXIMAL_STATIN_MG
    )

    # ---- QRISK3 scope ----------------------------------------------------------------
    qrisk_age_min: int = 25
    qrisk_age_max: int = 84
    qrisk_exclusion_source: str = (
        "NICE NG238: QRISK3 not used for people with FH [secondary], CVD already, type 1 "
        "diabetes, CKD 3-5 or age >= 85 [UNCONFIRMED]"
    )
    townsend: TownsendPolicy = field(default_factory=TownsendPolicy)

    # ---- atrial fibrillation (NICE NG196) -------------------------------------------
    # offer anticoagulation at CHA2DS2-VASc >= 2, consider for men with 1 [confirmed]
    anticoagulation: AnticoagulationThresholds = NICE_NG196_ANTICOAGULATION
    chadsvasc_points: Cha2ds2VascPoints = CHA2DS2_VASC
    orbit_points: OrbitPoints = ORBIT  # low 0-2, medium 3, high >= 4

    # ---- plausible measurement ranges ------------------------------------------------
    # BMI, height and weight: a latest value outside is treated as not recorded (QRISK3
    # then derives or imputes). [UNCONFIRMED: pophealth's ranges]
    bmi_range: tuple[float, float] = (12.0, 80.0)
    height_m_range: tuple[float, float] = (1.2, 2.3)
    weight_kg_range: tuple[float, float] = (30.0, 300.0)
    # Lipids (mmol/L, after converting results recorded in mg/dL; the ratio has no unit):
    # a result outside its range is set aside before the latest is chosen (an earlier
    # plausible result in the look-back is used instead) and counted per patient
    # (``<lipid>_outside_n``; the report's lipid data-quality table). Wide enough for
    # untreated homozygous FH, narrow enough to drop a typed 52 or a cholesterol in mg/dL
    # recorded without its unit (a total cholesterol of 200 mg/dL is 5.2 mmol/L).
    # [UNCONFIRMED: pophealth's ranges; need clinical sign-off]
    cholesterol_range: tuple[float, float] = (1.0, 20.0)  # total cholesterol
    hdl_range: tuple[float, float] = (0.2, 5.0)
    ldl_range: tuple[float, float] = (0.1, 15.0)
    non_hdl_range: tuple[float, float] = (0.1, 20.0)
    chol_hdl_ratio_range: tuple[float, float] = (1.0, 20.0)

    def __post_init__(self) -> None:
        if self.non_hdl_target.value <= 0 or self.ldl_target.value <= 0:
            raise ValueError("lipid targets must be positive")
        if self.tc_fh_refer.value < self.tc_fh_assess.value:
            raise ValueError("tc_fh_refer must be at or above tc_fh_assess")
        for name in LIPID_RANGES.values():
            low, high = getattr(self, name)
            if not 0 <= low < high:
                raise ValueError(f"{name} must be (low, high) with 0 <= low < high")
        if self.bp_lookback_months != self.bp.lookback_months:
            raise ValueError(
                "bp_lookback_months must equal bp.lookback_months (the BP selection and the "
                "risk groups must use one look-back)"
            )

    def statin_intensity_of(self, ingredient: str, daily_dose_mg: float) -> str:
        """NICE intensity of one statin dose: "low", "medium", "high" or "unknown"."""
        for s in self.statin_intensity:
            if s.ingredient == ingredient and s.daily_dose_mg == daily_dose_mg:
                return s.intensity
        return "unknown"


DEFAULT_CONFIG = CvdConfig()


def with_nice_non_hdl(config: CvdConfig = DEFAULT_CONFIG) -> CvdConfig:
    """The config with NICE NG238's non-HDL target of 2.6 mmol/L instead of Barts' 2.5."""
    from dataclasses import replace

    return replace(
        config,
        version=config.version + "+non-hdl-2.6",
        non_hdl_target=Threshold(2.6, "mmol/L", "NICE NG238 non-HDL-C target <= 2.6"),
    )
