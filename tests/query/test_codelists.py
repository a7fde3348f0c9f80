"""Code lists: every OpenCodelists layout in ../shared/data/codelists, curated lists, and
code-format checks per system."""

from __future__ import annotations

import pytest

from pophealth.codelists import (
    Codelist,
    CodelistError,
    code_problem,
    codelist,
    curated_manifest,
    load_codelist,
    verhoeff_ok,
)


def test_verhoeff_check_digit():
    assert verhoeff_ok("22298006")  # myocardial infarction
    assert verhoeff_ok("195967001")  # asthma
    assert not verhoeff_ok("22298007")
    assert not verhoeff_ok("22298060")  # adjacent transposition caught


@pytest.mark.parametrize(
    ("system", "code", "ok"),
    [
        ("snomedct", "38341003", True),
        ("snomedct", "38341004", False),
        ("snomedct", "H33..", False),
        ("dmd", "39113611000001102", True),
        ("ctv3", "H33..", True),
        ("ctv3", "XaIzM", True),
        ("ctv3", "H33", False),
        ("icd10", "J45", True),
        ("icd10", "J459", True),
        ("icd10", "J45.9", False),
        ("opcs4", "R171", True),
        ("opcs4", "R1711", False),
        ("bnf", "0212000AAAAAAAA", True),
        ("bnf", "XYZ", False),
    ],
)
def test_code_formats(system, code, ok):
    assert (code_problem(system, code) is None) is ok


@pytest.mark.parametrize(
    ("name", "system", "others", "category"),
    [
        ("nhsd-primary-care-domain-refsets-hyp_cod", "snomedct", (), None),
        ("opensafely-asthma-diagnosis-snomed", "snomedct", (), None),
        ("opensafely-asthma-diagnosis", "ctv3", (), None),
        ("opensafely-atrial-fibrillation-clinical-finding", "ctv3", (), None),
        ("opensafely-asthma-inhaler-salbutamol-medication", "dmd", ("bnf",), None),
        ("opensafely-asthma-oral-prednisolone-medication", "dmd", ("bnf",), None),
        ("opensafely-low-molecular-weight-heparins-dmd", "dmd", ("bnf",), None),
        ("openprescribing-all-statins", "bnf", (), None),
        ("user-hjforbes-type-1-diabetes", "ctv3", (), None),
        ("user-hjforbes-type-2-diabetes", "ctv3", (), None),
        ("user-kurttaylor-eating_disorder_icd10", "icd10", (), None),
        ("opensafely-smoking-clear", "ctv3", (), "Category"),
        ("opensafely-ethnicity-snomed-0removed", "snomedct", (), "Grouping_6"),
        ("opensafely-ethnicity", "ctv3", (), "Grouping_6"),
    ],
)
def test_every_shared_layout_loads(shared_data, name, system, others, category):
    cl = load_codelist(shared_data / "codelists" / f"{name}.csv")
    assert cl.system == system
    assert set(cl.systems) == {system, *others}
    assert len(cl) > 0
    assert cl.default_category == category


def test_all_shared_codelists_load_and_pass_format_checks(shared_data):
    files = sorted((shared_data / "codelists").glob("*.csv"))
    loaded = [load_codelist(f) for f in files if f.name != "MANIFEST.csv"]
    assert len(loaded) == 48


def test_categories_from_shared_lists(shared_data):
    smoking = load_codelist(shared_data / "codelists" / "opensafely-smoking-clear.csv")
    assert set(smoking.category_map().values()) <= {"S", "E", "N"}
    eth = load_codelist(shared_data / "codelists" / "opensafely-ethnicity-snomed-0removed.csv")
    assert set(eth.category_map("Grouping_16").values()) <= {str(i) for i in range(1, 17)}
    assert set(eth.category_map().values()) <= {str(i) for i in range(1, 7)}


def test_bad_code_names_file_row_and_field(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("code,term\n38341003,Hypertension\n38341004,Typo\n")
    with pytest.raises(
        CodelistError, match=r"bad.csv: row 3, field 'code': code '38341004'.*Verhoeff"
    ):
        load_codelist(path, system="snomedct")


def test_ambiguous_codes_must_name_their_system(tmp_path):
    path = tmp_path / "procedures.csv"
    path.write_text("code,term\nR17,x\nR18,y\n")
    with pytest.raises(CodelistError, match="could be icd10 or opcs4; pass system="):
        load_codelist(path)
    assert load_codelist(path, system="opcs4").system == "opcs4"


def test_layout_conflicting_with_given_system(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("CTV3ID,CTV3PreferredTermDesc\nH33..,Asthma\n")
    with pytest.raises(CodelistError, match="layout says ctv3"):
        load_codelist(path, system="snomedct")


def test_curated_lists_by_name():
    manifest = curated_manifest()
    assert manifest  # the synthetic-population engineer's lists
    for name, entry in manifest.items():
        cl = codelist(name)
        assert cl.system == entry["system"]
    with pytest.raises(CodelistError, match="no curated code list 'nope'"):
        codelist("nope")


def test_curated_extra_columns_become_attributes_or_categories():
    pred = codelist("ocs_prednisolone")
    assert all(v > 0 for v in pred.attribute_map("strength_mg").values())
    smoking = codelist("smoking_status")
    assert set(smoking.category_map().values()) >= {"current"}


def test_inline_codelists_are_checked():
    with pytest.raises(CodelistError, match="Verhoeff"):
        Codelist.of("snomedct", ["38341004"])
    cl = Codelist.of("icd10", ["J45", "J45.9"])
    assert set(cl) == {"J45", "J45X", "J459"}  # dot dropped; J45 also as HES writes it


# -- multi-system lists: a per-row ``system`` column --------------------------------------


def test_a_system_column_puts_each_row_in_its_own_system(tmp_path):
    path = tmp_path / "saba.csv"
    path.write_text(
        "code,term,strength_mg,system\n"
        "39113611000001102,Salbutamol 100micrograms/dose inhaler,0.1,\n"
        "745679,200 ACTUAT albuterol 0.09 MG/ACTUAT Metered Dose Inhaler,0.09,rxnorm\n"
    )
    cl = load_codelist(path, system="dmd")
    assert cl.system == "dmd" and set(cl.systems) == {"dmd", "rxnorm"}
    assert cl.codes_in("dmd") == {"39113611000001102"}
    assert cl.codes_in("rxnorm") == {"745679"}
    assert len(cl) == 1 and "745679" in cl  # len/iter: the main system; `in`: any system
    assert "system" not in cl.categories  # the column names systems, it is not a category
    assert cl.attribute_map("strength_mg") == {"39113611000001102": 0.1, "745679": 0.09}
    assert cl.in_system("rxnorm").codes == {"rxnorm": frozenset({"745679"})}


def test_a_row_is_checked_against_its_own_system(tmp_path):
    path = tmp_path / "mixed.csv"
    # 745679 is a valid RxNorm CUI but not a SNOMED CT id (Verhoeff check fails): only the
    # row's own system may judge it
    path.write_text("code,term,system\n195967001,Asthma,\n745679,albuterol,rxnorm\n")
    assert load_codelist(path, system="snomedct").codes_in("rxnorm") == {"745679"}
    path.write_text("code,term,system\n195967001,Asthma,\n74567X,albuterol,rxnorm\n")
    with pytest.raises(
        CodelistError, match=r"mixed.csv: row 3, field 'code': code '74567X' \(rxnorm\) is not"
    ):
        load_codelist(path, system="snomedct")
    path.write_text("code,term,system\n195967001,Asthma,\n745679,albuterol,RxNorm-US\n")
    with pytest.raises(CodelistError, match=r"mixed.csv: row 3, field 'system': 'RxNorm-US'"):
        load_codelist(path, system="snomedct")


def test_untyped_rows_decide_an_inferred_system(tmp_path):
    path = tmp_path / "dx.csv"
    path.write_text("code,term,system\n195967001,Asthma,\nJ45,Asthma,icd10\n")
    cl = load_codelist(path)
    assert cl.system == "snomedct" and cl.codes_in("icd10") == {"J45", "J45X"}


@pytest.mark.parametrize(
    ("name", "rxnorm"),
    [
        ("saba_inhalers", "745679"),  # 200 ACTUAT albuterol 0.09 MG/ACTUAT MDI
        ("ics_inhalers", "895994"),  # 120 ACTUAT fluticasone propionate 0.044 MG/ACTUAT MDI
        ("ocs_prednisolone", "312617"),  # predniSONE 5 MG Oral Tablet
        ("statins", "259255"),  # atorvastatin 80 MG Oral Tablet
        ("doacs", "1364445"),  # apixaban 5 MG Oral Tablet
        ("warfarin", "855332"),  # warfarin sodium 5 MG Oral Tablet
        ("antihypertensives", "314076"),  # lisinopril 10 MG Oral Tablet
    ],
)
def test_curated_medicine_lists_bridge_dmd_and_rxnorm(name, rxnorm):
    cl = codelist(name)
    assert cl.system == "dmd" and len(cl.codes_in("dmd")) >= 2
    assert rxnorm in cl.codes_in("rxnorm") and rxnorm not in cl.codes_in("dmd")
    for column, values in cl.attributes.items():  # RxNorm rows carry the same attributes
        if column == "strength_mg" and name != "antihypertensives":
            assert values.get(rxnorm, 0) > 0, (name, column)


def test_rxnorm_ics_rows_keep_their_dose_category_and_high_dose_subset_splits_by_system():
    from pophealth.programmes.asthma.codes import high_dose_subset

    ics = codelist("ics_inhalers")
    cats = ics.category_map("dose_category")
    assert cats["895994"] == "low" and cats["896006"] == "high"  # Flovent 44 / 220 mcg
    high = high_dose_subset(ics)
    assert high.system == "dmd"
    assert "896006" in high.codes_in("rxnorm") and "896006" not in high.codes_in("dmd")
    assert "2831211000001109" in high.codes_in("dmd")  # Flixotide 250 Evohaler
    assert "895994" not in high
