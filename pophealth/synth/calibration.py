"""Calibration targets of the synthetic population, each beside its source.

Every number the generator draws from lives here as a named constant, with the
publication it imitates. Figures marked *approximate* are rounded from the cited
publication as read; *modelling choice* marks numbers that are ours (effect sizes
chosen so that the programmes have a realistic signal to find), not published ones.

Nothing here is a real place: the generator attaches these figures only to the
fictional ``X``-coded region.
"""

from __future__ import annotations

import datetime as dt

# ---------------------------------------------------------------------------------
# Time frame
# ---------------------------------------------------------------------------------

#: The date the synthetic extract is "taken": every record lies on or before it, and
#: the prevalence targets below hold for patients registered and alive on it. The end
#: of a QOF year (31 March) so that QOF-style 12-month look-backs line up. Modelling choice.
EXTRACT_DATE = dt.date(2026, 3, 31)

#: Detailed records (prescribing, observations, hospital activity) are generated for
#: this many years before :data:`EXTRACT_DATE`; diagnoses may be older. Modelling choice.
DETAIL_YEARS = 3

#: Deaths and departures from the region are spread over this many years before the
#: extract date. Modelling choice.
EXIT_YEARS = 5

# ---------------------------------------------------------------------------------
# Demography
# ---------------------------------------------------------------------------------

#: Age structure of England, 5-year bands 0-4 … 85-89 and 90-99, share of persons.
#: Approximate, from ONS mid-2021 population estimates for England (MYE2, persons;
#: https://www.ons.gov.uk/peoplepopulationandcommunity/populationandmigration/populationestimates).
AGE_BAND_LOWER = (0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75, 80, 85, 90)
AGE_BAND_SHARE = (
    5.7, 6.2, 6.2, 5.7, 6.1, 6.6, 6.9, 6.7, 6.3, 6.5,
    7.0, 6.7, 5.8, 5.0, 5.1, 3.7, 2.5, 1.5, 0.9,
)  # fmt: skip
#: Width of the last band (90-99): ages above 99 are rare enough to leave out.
AGE_LAST_BAND_WIDTH = 10

#: Share female in each band of :data:`AGE_BAND_LOWER`. Approximate, ONS mid-2021
#: England (more boys at birth, more women in old age).
FEMALE_SHARE = (
    0.488, 0.488, 0.488, 0.487, 0.494, 0.500, 0.503, 0.506, 0.505, 0.506,
    0.506, 0.507, 0.511, 0.518, 0.527, 0.541, 0.563, 0.604, 0.680,
)  # fmt: skip

#: A sex of `unknown` (not stated, indeterminate) on this share of records. Modelling choice.
SEX_UNKNOWN_SHARE = 0.001

#: Census 2021 ethnic group, England, share of usual residents, mapped to the 2001
#: 16 categories of the NHS Data Dictionary (A..S). Census 2021 TS021 (ONS; White 81.0%,
#: Asian 9.6%, Black 4.2%, Mixed 3.0%, Other 2.2%). Chinese is "Asian" in 2021 but "Other
#: ethnic groups - Chinese" (R) in the 2001 scheme; Arab and Gypsy/Roma fold into S and C.
ETHNICITY_16_SHARE = {
    "A": 73.5, "B": 0.9, "C": 6.6,
    "D": 0.9, "E": 0.4, "F": 0.8, "G": 0.9,
    "H": 3.3, "J": 2.8, "K": 1.1, "L": 1.6,
    "M": 1.1, "N": 2.6, "P": 0.5,
    "R": 0.7, "S": 2.2,
}  # fmt: skip

#: Share of GP records with no ethnicity recorded (category Z). Approximate: about 1 in
#: 10 in English primary care (NHS England, ethnicity recording in GP records, 2022).
ETHNICITY_NOT_RECORDED = 0.09

#: Minority ethnic groups live more often in urban and deprived areas, and are younger.
#: Log-odds tilt of every non-White category per SD of area urbanity and deprivation,
#: and by age (<40, 40-64, 65+). Modelling choice, shaped on Census 2021 TS021 by LSOA.
ETHNIC_TILT_URBAN = 0.9
ETHNIC_TILT_DEPRIVATION = 0.35
ETHNIC_TILT_AGE = (0.25, 0.0, -0.8)

#: Deprived areas are younger: log-weight of an area per SD of deprivation for patients
#: aged <40, 40-64 and 65+. Modelling choice (IoD2019 File 6 denominators show the
#: most deprived LSOAs with more children and fewer over-60s).
AGE_DEPRIVATION_TILT = (0.12, 0.0, -0.25)

#: Annual death hazard: Gompertz exp(a + b·age), roughly ONS England life tables
#: 2018-2020 (about 0.3%/yr at 50, 5%/yr at 80, 17%/yr at 90).
DEATH_GOMPERTZ_A = -10.45
DEATH_GOMPERTZ_B = 0.094
#: Extra death hazard for people with long-term conditions (COPD, heart failure, CKD, AF).
#: Modelling choice.
DEATH_HR_MORBIDITY = 1.6

#: Share of patients who leave the region (deregister) during :data:`EXIT_YEARS`, by age
#: <20, 20-39, 40+. Approximate: GP list turnover about 5-8%/yr in cities. Modelling choice.
LEAVE_SHARE = (0.04, 0.10, 0.03)

#: Mean years at the current address (exponential), and the share with a recorded
#: previous address in the region. Modelling choice (English Housing Survey: median
#: length of residence about 9 years for owners, 3 for private renters).
MEAN_YEARS_AT_ADDRESS = 9.0
PREVIOUS_ADDRESS_SHARE = 0.55
#: Share of moves recorded with an overlap (the new address entered before the old one
#: was closed), and the overlap length in days. Modelling choice.
OVERLAP_SHARE = 0.03
OVERLAP_DAYS = (1, 60)
#: Share of addresses that could not be geocoded (null LSOA). Modelling choice; typical
#: of address-matching success of 98-99%.
UNGEOCODED_SHARE = 0.012
#: Share of moves that also change practice. Modelling choice.
MOVE_CHANGES_PRACTICE = 0.45

#: Care-home residence by age band (<65, 65-74, 75-84, 85+). Approximate, from Census
#: 2021 (about 1 in 7 people aged 85+ live in a care home; ONS "Older people living in
#: care homes in 2021 and changes since 2011").
CARE_HOME_SHARE = (0.0004, 0.006, 0.03, 0.14)

# ---------------------------------------------------------------------------------
# The fictional region
# ---------------------------------------------------------------------------------

#: Patients per fictional LSOA when sizing the region from the number of patients, and
#: the smallest and largest region. An English LSOA holds about 1,500-1,700 people.
PATIENTS_PER_LSOA = 1600
MIN_LSOAS = 100
MAX_LSOAS = 8000
LSOAS_PER_MSOA = 5
#: Mean resident population of an LSOA (ONS mid-2020 SAPE: England mean ≈ 1,720).
LSOA_POPULATION_MEAN = 1720
LSOA_POPULATION_SD = 280
#: Practices per LSOA (an English practice serves about 10,000 people ≈ 6 LSOAs; NHS
#: Digital "Patients registered at a GP practice").
LSOAS_PER_PRACTICE = 6
PRACTICES_PER_PCN = 5
NATIONAL_LSOAS = 32844  # IoD2019: the number of LSOAs nationally (ranks run 1..32,844).

#: Local authorities of the region: name, mean urbanity (0 rural .. 1 conurbation) and
#: share of LSOAs. Fictional names; the mix (one urban core, a town, a rural district)
#: gives every IMD decile, and pollution that follows urbanity. Modelling choice.
DISTRICTS = (
    ("Northmere", 0.9, 0.45),
    ("Ashvale", 0.55, 0.35),
    ("Kettlewold", 0.15, 0.20),
)
#: Correlation of area deprivation with urbanity. Modelling choice.
DEPRIVATION_URBAN_CORR = 0.15

#: IoD2019 IMD score at the 0%, 5%, …, 100% points of its national distribution (low
#: score = least deprived), so that a fictional LSOA's score matches its national rank.
#: Computed by pophealth from IoD2019 File 9 (the score derived with the published
#: domain weights; see ../shared/data/README.md) — only these 21 quantiles are used.
IMD_SCORE_QUANTILES = (
    0.54, 4.32, 5.91, 7.32, 8.62, 9.91, 11.3, 12.74, 14.24, 15.87, 17.65,
    19.54, 21.56, 23.81, 26.57, 29.58, 33.25, 37.84, 43.86, 53.72, 92.74,
)  # fmt: skip

#: National quintile cut points of the IoD2019 air-quality components (File 8, living
#: environment domain), computed by pophealth from the published LSOA values; used to
#: give fictional LSOAs national pollution quintiles (5 = most polluted).
NO2_QUINTILE_CUTS = (0.29, 0.37, 0.45, 0.55)
PM_QUINTILE_CUTS = (0.34, 0.38, 0.41, 0.45)
#: Median and spread of the components (IoD2019 File 8: NO2 median 0.41, max 1.19;
#: particulates 0.25-0.61; benzene median ≈ 0.09; SO2 ≈ 0.03).
NO2_MEDIAN = 0.41
NO2_LOG_SD_URBAN = 0.35  # log-NO2 per unit of urbanity (0..1) — modelling choice
NO2_LOG_SD_NOISE = 0.25
NO2_LOG_PER_DEPRIVATION = 0.12  # IoD2019: corr(NO2, deprivation) ≈ 0.25
PM_MEDIAN = 0.40
BENZENE_MEDIAN = 0.09
SO2_MEDIAN = 0.03

#: LILEE fuel poverty by LSOA (DESNZ sub-regional fuel poverty 2025, 2023 data):
#: England 11.4% of households; LSOA 25th/50th/75th centiles 7.9/10.5/14.0, range 1.5-61.5.
FUEL_POVERTY_MEDIAN = 10.5
FUEL_POVERTY_LOG_PER_DEPRIVATION = 0.32
FUEL_POVERTY_LOG_SD = 0.22

# ---------------------------------------------------------------------------------
# Disease registers: prevalence targets (QOF 2022-23, England) and their shapes
# ---------------------------------------------------------------------------------
# QOF prevalence: NHS England, "Quality and Outcomes Framework, 2022-23", England
# register prevalence (https://digital.nhs.uk/data-and-information/publications/
# statistical/quality-and-outcomes-framework-achievement-prevalence-and-exceptions-data/
# 2022-23). Denominator: all registered patients, except diabetes (17+), CKD (18+).
#
# Each register is drawn as p = scale · shape(age band, sex) · RR(deprivation quintile)
# · RR(ethnic group) [· RR(risk factor)], with the scale solved so that the expected
# crude prevalence in the synthetic population equals the target. Age bands for the
# shapes: <6, 6-17, 18-39, 40-49, 50-59, 60-69, 70-79, 80+.

SHAPE_AGE_LOWER = (0, 6, 18, 40, 50, 60, 70, 80)

#: Chunks of fewer patients than this use register scales solved on a reference
#: population of this size (drawn from its own random stream), so that small runs are
#: calibrated like big ones. Modelling choice.
CALIBRATION_PATIENTS = 20_000

#: (target prevalence, minimum age of the denominator, shape female, shape male,
#: RR by IMD quintile 1 (most deprived) .. 5, RR by 5-group ethnicity
#: white/mixed/asian/black/other). Shapes approximate QOF/HSE age patterns; RRs are
#: approximate published gradients (sources per register below).
REGISTERS: dict[str, dict] = {
    # Asthma 6.5% (QOF 2022-23: 6.5%); female excess in adults, male in children;
    # modest deprivation gradient (QOF by deprivation decile, NHS Digital 2019-20).
    "asthma": {
        "target": 0.065,
        "min_age": 0,
        "female": (0.2, 5.0, 7.5, 8.0, 8.3, 8.8, 9.0, 7.5),
        "male": (0.3, 7.0, 5.0, 5.2, 5.6, 6.0, 6.5, 5.5),
        "imd_rr": (1.28, 1.18, 1.09, 1.03, 1.0),
        "eth_rr": (1.0, 1.15, 0.85, 1.05, 0.7),
    },
    # Hypertension 14.0% (QOF 2022-23: 14.0%); higher in Black and South Asian groups
    # (NICE NG136 evidence review); mild deprivation gradient.
    "hypertension": {
        "target": 0.140,
        "min_age": 0,
        "female": (0.0, 0.05, 1.2, 6.5, 16.0, 30.0, 46.0, 60.0),
        "male": (0.0, 0.05, 2.2, 10.0, 21.0, 34.0, 48.0, 58.0),
        "imd_rr": (1.15, 1.1, 1.06, 1.02, 1.0),
        "eth_rr": (1.0, 1.1, 1.2, 1.45, 0.9),
    },
    # COPD 1.9% (QOF 2022-23: 1.9%); strong deprivation gradient (about 2.5x between
    # quintiles; BLF/Asthma+Lung UK, "The battle for breath", 2016); lower in minority groups.
    "copd": {
        "target": 0.019,
        "min_age": 0,
        "female": (0.0, 0.0, 0.05, 0.6, 2.2, 5.0, 8.0, 8.5),
        "male": (0.0, 0.0, 0.05, 0.6, 2.4, 5.8, 9.5, 10.5),
        "imd_rr": (2.5, 1.9, 1.45, 1.15, 1.0),
        "eth_rr": (1.0, 0.7, 0.45, 0.45, 0.6),
    },
    # Atrial fibrillation 2.1% (QOF 2022-23: 2.1%); male excess; commoner in White
    # groups (Public Health England AF prevalence estimates 2017).
    "af": {
        "target": 0.021,
        "min_age": 0,
        "female": (0.0, 0.0, 0.05, 0.3, 0.9, 2.8, 7.0, 15.0),
        "male": (0.0, 0.0, 0.1, 0.6, 1.8, 4.8, 10.5, 19.0),
        "imd_rr": (0.95, 0.97, 1.0, 1.0, 1.0),
        "eth_rr": (1.0, 0.6, 0.45, 0.5, 0.5),
    },
    # Diabetes (all types) 7.5% of patients aged 17+ (QOF 2022-23: 7.5%); South Asian
    # about 2-3x, Black about 1.5-2x (Diabetes UK; NHS Digital National Diabetes Audit);
    # deprivation gradient about 1.6x (National Diabetes Audit 2021-22).
    "diabetes": {
        "target": 0.075,
        "min_age": 17,
        "female": (0.15, 0.3, 1.2, 4.0, 8.0, 12.5, 16.0, 15.0),
        "male": (0.15, 0.3, 1.3, 5.5, 11.5, 17.5, 21.0, 18.5),
        "imd_rr": (1.55, 1.35, 1.2, 1.08, 1.0),
        "eth_rr": (1.0, 1.3, 2.4, 1.7, 1.4),
    },
    # CKD stage 3-5 4.0% of patients aged 18+ (QOF 2022-23: 4.0%).
    "ckd": {
        "target": 0.040,
        "min_age": 18,
        "female": (0.0, 0.0, 0.3, 0.8, 2.0, 5.0, 13.0, 28.0),
        "male": (0.0, 0.0, 0.3, 0.7, 1.6, 4.0, 10.0, 22.0),
        "imd_rr": (1.3, 1.2, 1.1, 1.05, 1.0),
        "eth_rr": (1.0, 1.0, 1.2, 1.2, 1.0),
    },
    # Serious mental illness 1.0% (QOF 2022-23: 1.0%); strong deprivation gradient and
    # higher in Black groups (NHS Digital, QOF MH register by deprivation).
    "smi": {
        "target": 0.010,
        "min_age": 0,
        "female": (0.0, 0.05, 1.1, 1.5, 1.5, 1.3, 1.1, 1.0),
        "male": (0.0, 0.08, 1.5, 1.8, 1.6, 1.2, 0.9, 0.8),
        "imd_rr": (2.3, 1.6, 1.25, 1.05, 1.0),
        "eth_rr": (1.0, 1.5, 1.0, 2.0, 1.3),
    },
    # Coronary heart disease 3.0% (QOF 2022-23: 3.0%).
    "chd": {
        "target": 0.030,
        "min_age": 0,
        "female": (0.0, 0.0, 0.05, 0.5, 1.8, 4.5, 9.0, 15.0),
        "male": (0.0, 0.0, 0.1, 1.4, 4.5, 10.0, 17.0, 24.0),
        "imd_rr": (1.45, 1.3, 1.15, 1.05, 1.0),
        "eth_rr": (1.0, 0.8, 1.4, 0.6, 0.8),
    },
    # Stroke/TIA 1.8% (QOF 2022-23: 1.8%).
    "stroke_tia": {
        "target": 0.018,
        "min_age": 0,
        "female": (0.0, 0.01, 0.1, 0.5, 1.2, 3.0, 6.5, 12.0),
        "male": (0.0, 0.01, 0.1, 0.6, 1.6, 4.0, 8.0, 13.0),
        "imd_rr": (1.35, 1.2, 1.1, 1.03, 1.0),
        "eth_rr": (1.0, 1.0, 1.1, 1.3, 1.0),
    },
    # Heart failure 1.0% (QOF 2022-23: 1.0%).
    "heart_failure": {
        "target": 0.010,
        "min_age": 0,
        "female": (0.0, 0.0, 0.03, 0.15, 0.5, 1.5, 4.0, 10.0),
        "male": (0.0, 0.0, 0.05, 0.3, 1.0, 2.8, 6.0, 12.0),
        "imd_rr": (1.4, 1.25, 1.12, 1.04, 1.0),
        "eth_rr": (1.0, 0.9, 1.0, 1.1, 0.9),
    },
    # Peripheral arterial disease 0.6% (QOF 2022-23: 0.6%).
    "pad": {
        "target": 0.006,
        "min_age": 0,
        "female": (0.0, 0.0, 0.01, 0.1, 0.4, 1.1, 2.2, 3.5),
        "male": (0.0, 0.0, 0.01, 0.2, 0.8, 2.0, 3.8, 5.0),
        "imd_rr": (1.6, 1.35, 1.15, 1.05, 1.0),
        "eth_rr": (1.0, 0.6, 0.6, 0.6, 0.6),
    },
}

#: Share of diabetes that is type 1 (about 8%; National Diabetes Audit 2021-22), drawn
#: for everyone aged 17+ with diabetes under 40, less later. Modelling choice around it.
TYPE1_SHARE_UNDER_40 = 0.35
TYPE1_SHARE_40_PLUS = 0.04
#: Type 1 diabetes in children (about 0.2% of under-17s; NPDA 2021-22).
TYPE1_CHILD_PREVALENCE = 0.002

#: Comorbidity: relative risk of a register given another (applied on top of the shape,
#: then renormalised). Modelling choice, mimicking published co-occurrence.
COMORBIDITY_RR = {
    ("copd", "smoker_ever"): 4.0,
    ("chd", "hypertension"): 1.8,
    ("chd", "diabetes"): 1.8,
    ("stroke_tia", "af"): 2.5,
    ("stroke_tia", "hypertension"): 1.8,
    ("ckd", "diabetes"): 2.2,
    ("ckd", "hypertension"): 2.0,
    ("heart_failure", "chd"): 3.0,
    ("pad", "smoker_ever"): 2.5,
}

# Smoking: ONS Annual Population Survey 2022 — 12.7% of adults in England smoke; by
# age 18-24 11%, 25-34 16%, 35-49 14%, 50-64 13%, 65+ 8%; men 14.6%, women 11.2%; by
# deprivation roughly 20% in the most deprived decile vs 7% in the least. Ex-smokers
# about 26% of adults (Health Survey for England 2019).
SMOKING_AGE_LOWER = (18, 25, 35, 50, 65)
SMOKING_CURRENT = (0.11, 0.16, 0.14, 0.13, 0.08)
SMOKING_MALE_RR = 1.3
SMOKING_IMD_RR = (1.75, 1.3, 1.0, 0.8, 0.6)
SMOKING_EX_BY_AGE = (0.06, 0.15, 0.22, 0.32, 0.42)
#: Smoking status recorded in the last 3 years for this share of adults (QOF SMOK001).
SMOKING_RECORDED = 0.85
#: Of current smokers, share light (<10/day), moderate (10-19) and heavy (20+).
#: Approximate, ONS Opinions and Lifestyle survey.
SMOKING_INTENSITY = (0.45, 0.38, 0.17)

# BMI (Health Survey for England 2021: adult mean ≈ 27.6 kg/m², 26% obese; higher in
# deprived areas, about +1.2 in the most deprived quintile; lower in South Asian groups).
BMI_MEAN = 27.4
BMI_LOG_SD = 0.18
BMI_IMD_SHIFT = (1.2, 0.8, 0.4, 0.1, 0.0)
BMI_ETH_SHIFT = (0.0, 0.0, -1.3, 1.0, -1.5)
HEIGHT_CM = {"female": (161.6, 6.5), "male": (175.3, 7.2)}  # HSE 2021 means, SD
#: Share of adults with BMI, height and weight recorded in the detail window.
BMI_RECORDED = 0.62

# Lipids (HSE 2019 / Biobank-like adults): total cholesterol mean 5.1 mmol/l SD 1.05;
# HDL 1.55 (F) 1.27 (M) SD 0.38; statins lower total cholesterol by about 1.2 mmol/l.
TC_MEAN = 5.1
TC_SD = 1.05
HDL_MEAN = {"female": 1.55, "male": 1.27}
HDL_SD = 0.38
TG_MEAN = 1.5
STATIN_TC_REDUCTION = 1.3
#: A lipid profile in the detail window: for people with CVD, diabetes or a statin; and
#: for other adults aged 40+ (NHS Health Check, ~40% take-up over 5 years).
LIPIDS_RECORDED_HIGH_RISK = 0.85
LIPIDS_RECORDED_40_PLUS = 0.40

#: Familial-hypercholesterolaemia-like very high cholesterol, share of adults (FH ≈ 1 in
#: 250; HEART UK).
FH_SHARE = 0.004

# Statins. NHSBSA: about 8 million people in England take a statin. Probability of a
# statin by group (CVDPREVENT 2023: ~80% of people with CVD on LLT; ~65% of people with
# diabetes aged 40+). Modelling choice for primary prevention by age.
STATIN_CVD = 0.80
STATIN_DIABETES_40 = 0.65
STATIN_PRIMARY_BY_AGE = ((40, 0.04), (50, 0.10), (60, 0.22), (70, 0.33), (80, 0.30))
#: Statin probability multiplier by IMD quintile 1..5 (lower treatment in deprived areas,
#: CVDPREVENT inequality reports). Modelling choice.
STATIN_IMD_RR = (0.85, 0.9, 0.95, 1.0, 1.0)
HYPERLIPIDAEMIA_CODED = 0.35  # share of primary-prevention statin users with a code

# Blood pressure. CVDPREVENT (2023 Q4): ~68% of people with hypertension aged <80 and
# ~75% aged 80+ treated to target; worse in the most deprived quintile (≈ 4 points lower).
#: Mean usual SBP for diagnosed hypertension by IMD quintile 1..5 (chosen so that ~66% of
#: latest readings are ≤140/90). Modelling choice.
HTN_SBP_MEAN_BY_IMD = (137.0, 135.5, 134.0, 133.0, 132.5)
HTN_SBP_SD = 13.5
HTN_SBP_BLACK_SHIFT = 3.0
#: Usual SBP for people without diagnosed hypertension: a + b·age (HSE 2019), SD.
SBP_INTERCEPT = 104.0
SBP_PER_YEAR = 0.42
SBP_SD = 11.0
#: Visit-to-visit SD of readings around the usual SBP and DBP (mmHg).
SBP_VISIT_SD = 9.0
DBP_VISIT_SD = 6.0
#: DBP ≈ a + b·SBP - c·max(age-50, 0) (DBP falls with age past 50), SD.
DBP_INTERCEPT = 28.0
DBP_PER_SBP = 0.40
DBP_AGE_FALL = 0.18
DBP_SD = 6.5
#: Readings per year: diagnosed hypertension; others aged 40+; adults under 40.
BP_READINGS_PER_YEAR = (1.5, 0.45, 0.15)
#: Share of people with diagnosed hypertension with a reading in the last 12 months by
#: IMD quintile 1..5 (before the random readings above; CVDPREVENT: most are measured
#: yearly, fewer in deprived areas). Modelling choice.
BP_YEARLY_CHECK_BY_IMD = (0.72, 0.76, 0.8, 0.83, 0.85)
#: Share of reading days with a second (and a third) reading the same day.
BP_SAME_DAY_SECOND = 0.12
BP_SAME_DAY_THIRD = 0.03
#: Share of readings recorded with an invalid value (systolic < 50 or diastolic < 20:
#: typos, units, unit-less placeholders), kept as recorded. Modelling choice.
BP_INVALID_SHARE = 0.003
#: Share of diagnosed hypertension on at least one antihypertensive (QOF HYP: ~80%).
ANTIHYPERTENSIVE_SHARE = 0.82
#: Share of hypertension with a "resolved" code (drops off the register). Modelling choice.
HYPERTENSION_RESOLVED_EXTRA = 0.03

# Atrial fibrillation and anticoagulants: CVDPREVENT 2023 — about 91% of people with AF
# and CHA2DS2-VASc ≥2 treated with anticoagulants, DOACs ≈ 85% of them; aspirin-only is
# a residual pattern. Modelling choice within that.
AF_ANTICOAGULATED = 0.86
AF_DOAC_SHARE = 0.85
AF_ASPIRIN_ONLY = 0.05
AF_ANTICOAG_IMD_RR = (0.93, 0.96, 1.0, 1.0, 1.0)

# Asthma severity and control. Each person on the asthma register has a latent "poor
# control" score s ~ N(0,1) shifted by deprivation, NO2 exposure, smoking and obesity;
# counts per year are Poisson with log-rates linear in s. Targets: Levy et al. 2021 (NW
# London CYP: 10% ≥1 OCS course/yr, 5% ≥1 admission, 6% attack; over half with excess
# SABA; 72% of ICS users <4 ICS inhalers/yr); AAC/IIF: ~10-15% of asthma patients with
# ≥6 SABA/yr; NRAD: >12 SABA/yr rare (~2-4%). Effect sizes: modelling choice.
ASTHMA_CONTROL_PER_IMD = (0.45, 0.3, 0.15, 0.05, 0.0)  # shift of s by IMD quintile 1..5
ASTHMA_CONTROL_PER_NO2_QUINTILE = 0.12  # shift of s per NO2 quintile above 1
ASTHMA_CONTROL_SMOKER = 0.35
ASTHMA_CONTROL_OBESE = 0.2
ASTHMA_SABA_LOG_RATE = (0.35, 0.6)  # log SABA inhalers/yr = a + b·s
ASTHMA_OCS_LOG_RATE = (-2.3, 0.75)  # log OCS courses/yr
ASTHMA_ED_LOG_RATE = (-3.4, 0.85)  # log asthma ED attendances/yr
ASTHMA_ED_ADMITTED = 0.35  # share of asthma ED attendances admitted
ASTHMA_DIRECT_ADMISSION_LOG_RATE = (-5.0, 0.8)  # admissions not via ED
ASTHMA_CRITICAL_CARE = 0.04  # share of asthma admissions with ITU/HDU
ASTHMA_ON_ICS = 0.85  # share prescribed any ICS-containing inhaler
#: ICS collection: inhalers/yr = 12 · adherence, adherence ~ Beta(a, b) shifted down in
#: deprived areas (Levy: 72% of ICS users < 4/yr).
ASTHMA_ICS_ADHERENCE_BETA = (1.6, 3.0)
ASTHMA_ICS_ADHERENCE_IMD = (0.75, 0.85, 0.92, 1.0, 1.0)
#: Share on a high-dose ICS (BTS/SIGN step 4-5) rises with s. Modelling choice.
ASTHMA_HIGH_DOSE_LOGIT = (-2.2, 0.7)
#: Maintenance oral prednisolone (severe asthma): share of asthma with s > 2.
ASTHMA_MAINTENANCE_OCS = 0.10
#: Annual review, written action plan and inhaler-technique check: yearly probability in
#: the least deprived quintile, multiplied by the IMD quintile factor. Approximate, from
#: QOF AST007 (review ~60%) and NRAD (action plans for fewer than a quarter).
ASTHMA_REVIEW_P = 0.66
ASTHMA_ACTION_PLAN_P = 0.35
ASTHMA_TECHNIQUE_P = 0.5
ASTHMA_CARE_IMD_RR = (0.78, 0.85, 0.92, 0.97, 1.0)
#: An asthma exacerbation event is coded with this share of OCS courses.
ASTHMA_EXACERBATION_CODED = 0.5
#: People with a past, resolved asthma diagnosis (on top of the register). Modelling choice.
ASTHMA_RESOLVED_EXTRA = 0.012

# Severe-asthma pathway (ISAC): referral of uncontrolled asthma to a respiratory specialist
# and the first chest/respiratory clinic visit. All modelling choices, set so that the
# programme's timers have something to show: about a third of uncontrolled patients
# referred (fewer in deprived areas, more with severe disease), referrals spread over the
# 18 months before the extract, waits with a median of ~14 weeks so that roughly 30% exceed
# the 18-week standard, and a tenth of clinic letters never coded in the GP record.
#: "Uncontrolled" in the year to the extract, as the AAC/ISAC criteria read the records.
ASTHMA_REFERRAL_UNCONTROLLED_SABA = 6
ASTHMA_REFERRAL_UNCONTROLLED_OCS = 2
ASTHMA_REFERRAL_P = 0.35
ASTHMA_REFERRAL_IMD_RR = (0.7, 0.8, 0.9, 1.0, 1.0)
ASTHMA_REFERRAL_SEVERE_RR = 1.6  # on high-dose ICS or very poor control
ASTHMA_REFERRAL_WINDOW_DAYS = 540
#: Referral → first clinic visit, days: log-normal (median, sigma); P(> 126 days) ≈ 0.3.
ASTHMA_SECONDARY_WAIT_LOGNORMAL = (100.0, 0.45)
ASTHMA_CLINIC_SEEN_CODED = 0.9

#: Prednisolone course sizes (tablets of 5 mg): adults 40 mg × 5 days = 40 tablets;
#: children 1-2 mg/kg, ~30 mg × 3 days. Some courses on 25 mg tablets. BNF dosing.
PRED_COURSE_ADULT_TABLETS = (40, 30, 56)
PRED_COURSE_ADULT_P = (0.7, 0.2, 0.1)
PRED_COURSE_CHILD_TABLETS = (18, 24, 30)

# COPD: exacerbations per year ~ Poisson(exp(a + b·s)), s shifted by deprivation;
# admission rate for COPD exacerbation (about 1 in 6 people with COPD admitted per year).
COPD_CONTROL_PER_IMD = (0.4, 0.28, 0.15, 0.05, 0.0)
COPD_EXACERBATION_LOG_RATE = (-0.6, 0.6)
COPD_ADMISSION_LOG_RATE = (-2.2, 0.8)
COPD_ED_ADMITTED = 0.6

# Sickle cell disease: ~15,000 people in England (NHS England; about 1 in 4,000),
# almost all of Black African or Caribbean heritage. Prevalence by 16-category group.
SICKLE_CELL_PREVALENCE = {"M": 0.0065, "N": 0.0065, "P": 0.005, "D": 0.0015, "E": 0.0015}
SICKLE_CELL_OTHER = 0.00002
#: Painful crises attending ED per year ~ gamma-Poisson (mean 1.4, dispersion 0.6):
#: a few people account for most attendances (NCEPOD 2024, "A sickle crisis?").
SICKLE_ED_MEAN = 1.4
SICKLE_ED_SHAPE = 0.6
SICKLE_ED_ADMITTED = 0.55
#: Door-to-analgesia minutes: lognormal (median, log SD); NICE QS58 standard 30 min is met
#: for ~35-45% of attendances (NCEPOD 2024). Not recorded for this share.
SICKLE_ANALGESIA_MEDIAN_MIN = 45.0
SICKLE_ANALGESIA_LOG_SD = 0.75
SICKLE_ANALGESIA_NOT_RECORDED = 0.12
#: Delay multiplier at night (20:00-08:00). Modelling choice.
SICKLE_ANALGESIA_NIGHT_RR = 1.3

# Caesarean births. ONS/NHS Maternity Statistics 2022-23: ~585,000 births in England,
# caesarean rate 39.9% (emergency 22.2%, elective 17.7%). Births per woman-year by age
# (ONS births in England and Wales 2022, fertility rates per 1,000 women).
BIRTH_RATE_BY_AGE = ((16, 0.010), (20, 0.045), (25, 0.085), (30, 0.105), (35, 0.060),
                     (40, 0.015), (45, 0.001))  # fmt: skip
CAESAREAN_SHARE = 0.40
CAESAREAN_EMERGENCY_OF_ALL = 0.555  # 22.2 / 39.9
#: Operator grade (Wloch et al. BJOG 2012; NMPA). Elective: consultant-heavy.
OPERATOR_GRADE_ELECTIVE = (0.55, 0.35, 0.08, 0.02)  # consultant, registrar, staff, other
OPERATOR_GRADE_EMERGENCY = (0.30, 0.58, 0.10, 0.02)
#: Antibiotic prophylaxis: minutes before knife-to-skin ~ N(mean, sd); share given after
#: incision (e.g. after cord clamping, old practice) and not recorded.
ANTIBIOTIC_MIN_BEFORE = (30.0, 20.0)
ANTIBIOTIC_AFTER_INCISION = 0.07
ANTIBIOTIC_NOT_RECORDED = 0.04
SKIN_PREP = (("chlorhexidine_alcohol", 0.78), ("povidone_iodine", 0.13), ("other", 0.03),
             ("not_recorded", 0.06))  # fmt: skip
NORMOTHERMIA = (0.86, 0.07, 0.07)  # true, false, not recorded
#: BMI at booking/operation: women of childbearing age (NMPA: ~25% obese at booking).
PREGNANCY_BMI_MEAN = 27.5
PREGNANCY_BMI_LOG_SD = 0.2

# Other QRISK3 conditions (prevalence among adults; approximate, UK primary care).
OTHER_CONDITIONS = {
    # name: (prevalence among adults, female RR, minimum age)
    "rheumatoid_arthritis": (0.008, 2.5, 18),
    "migraine": (0.06, 3.0, 12),
    "sle": (0.0012, 8.0, 16),
    "family_history_chd": (0.08, 1.0, 18),
}
ERECTILE_DYSFUNCTION_MEN_40 = 0.07  # men aged 40+ with a coded diagnosis
ATYPICAL_ANTIPSYCHOTIC_SMI = 0.55  # share of SMI on an atypical antipsychotic
ATYPICAL_ANTIPSYCHOTIC_OTHER = 0.003
REGULAR_STEROIDS_60 = 0.012  # regular oral corticosteroid, adults 60+
#: HbA1c (mmol/mol) for people with diabetes: mean, SD, shift per IMD quintile 1..5.
HBA1C_MEAN = 58.0
HBA1C_SD = 13.0
HBA1C_IMD_SHIFT = (4.0, 2.5, 1.5, 0.5, 0.0)
#: eGFR (ml/min/1.73m²) by CKD stage 3a, 3b, 4, 5: uniform ranges (KDIGO).
CKD_STAGE_SHARE = (0.62, 0.27, 0.08, 0.03)
EGFR_RANGE = ((45, 59), (30, 44), (15, 29), (6, 14))

# Inputs of the AF stroke and bleeding scores (CHA2DS2-VASc, ORBIT). Approximate UK
# primary-care figures: VTE history about 1.5% of adults (higher with age); anaemia about
# 3% of adults (women, older people, CKD); a coded bleeding history in about 2% of people
# aged 60+. Haemoglobin g/L by sex (NICE CKS anaemia: normal ≥ 120 women, ≥ 130 men).
VTE_ADULTS = 0.015
ANAEMIA_ADULTS = 0.03
BLEEDING_60_PLUS = 0.02
HAEMOGLOBIN_G_L = {"female": (133.0, 11.0), "male": (148.0, 12.0)}
ANAEMIA_HB_SHIFT = -25.0
#: People with AF later coded as resolved (off the register). Modelling choice.
AF_RESOLVED_EXTRA = 0.002

# Other emergency care, for everyone (denominators of ED and admission indicators).
# NHS England A&E attendances 2023-24: about 26 million type 1-4 attendances for ~57 million
# people (≈ 0.45 per person-year), U-shaped by age; emergency admissions ≈ 6.4 million
# (≈ 0.11 per person-year), rising steeply with age. Both about 1.6× higher in the most
# than the least deprived quintile (Nuffield Trust / NHS Digital HES by IMD).
#: ED attendances per person-year by age band (<5, 5-15, 16-64, 65-79, 80+).
ED_RATE_AGE_LOWER = (0, 5, 16, 65, 80)
ED_RATE_BY_AGE = (0.55, 0.3, 0.38, 0.45, 0.85)
ED_IMD_RR = (1.35, 1.15, 1.0, 0.9, 0.82)
#: Share of those attendances admitted, by the same age bands.
ED_ADMITTED_BY_AGE = (0.1, 0.08, 0.2, 0.4, 0.55)
#: Diagnosis mix of other attendances (chest pain, abdominal pain, LRTI, UTI, head injury,
#: fracture) and the matching admission diagnoses. Modelling choice.
ED_DIAGNOSIS_MIX = (0.2, 0.25, 0.18, 0.12, 0.13, 0.12)

# Caesarean surgical-site infection and the 30-day wound questionnaire (PreCiSSIon-style
# e-PROM). England SSISS caesarean study (Wloch et al., BJOG 2012; n = 4,107): 9.6% SSI
# within 30 days; adjusted ORs vs BMI 18.5-25: 25-30 1.6, 30-35 2.4, > 35 3.7; age < 20 vs
# 25-30 1.9; staff-grade vs consultant surgeon 1.6. Bundle effects (antibiotics within
# 60 min before incision, chlorhexidine-alcohol, normothermia) and the emergency effect
# are modelling choices. The questionnaire is pophealth's own synthetic one, modelled on
# the themes of the UKHSA post-discharge questionnaire — not its wording or scoring.
SSI_BASE_PROBABILITY = 0.055
SSI_LOG_OR = {
    "bmi_25_30": 0.47,  # ln 1.6
    "bmi_30_35": 0.875,  # ln 2.4
    "bmi_35_plus": 1.31,  # ln 3.7
    "age_under_20": 0.64,  # ln 1.9
    "staff_grade": 0.47,  # ln 1.6
    "emergency": 0.26,  # modelling choice
    "antibiotic_not_timely": 0.4,  # modelling choice
    "skin_prep_not_chlorhexidine": 0.26,  # modelling choice
    "hypothermia": 0.26,  # modelling choice
}
#: Share of women answering the 30-day questionnaire, by IMD quintile 1..5 (digital
#: exclusion: fewer responses in deprived areas). Modelling choice.
SSI_RESPONSE_BY_IMD = (0.5, 0.56, 0.62, 0.68, 0.72)
#: (link_id, question, P(yes | SSI), P(yes | no SSI)).
SSI_QUESTIONNAIRE = "urn:pophealth:synthetic:caesarean-wound-30d"
SSI_ITEMS = (
    ("wound_pain", "More pain from the wound than expected?", 0.8, 0.25),
    ("wound_redness", "Redness or inflammation spreading from the wound?", 0.75, 0.1),
    ("wound_swelling", "Swelling around the wound?", 0.6, 0.12),
    ("wound_discharge", "Fluid or pus coming from the wound?", 0.6, 0.06),
    ("wound_opened", "Has the wound opened, or been opened by a clinician?", 0.3, 0.03),
    ("fever", "A temperature or feeling feverish?", 0.35, 0.05),
    ("seen_for_wound", "Seen by a doctor, nurse or midwife about the wound?", 0.85, 0.15),
    ("antibiotics_for_wound", "Given antibiotics for the wound?", 0.8, 0.03),
)
