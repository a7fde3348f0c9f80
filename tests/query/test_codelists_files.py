"""Code-list files as analysts meet them: spreadsheet-saved CSVs (BOM, CRLF, blank and empty
rows, stray spaces, unquoted commas), other header spellings, codes of the wrong system or
the wrong kind of SNOMED CT identifier, ICD-10/OPCS-4 with and without dots, CTV3 case.

Codes here are fictional but well formed (a Verhoeff check digit is appended), or taken from
pophealth's own curated lists.
"""

from __future__ import annotations

import pytest

from pophealth.codelists import Codelist, CodelistError, codelist, load_codelist, verhoeff_ok


def sct(stem: str) -> str:
    """``stem`` plus its Verhoeff check digit: a well-formed SNOMED CT identifier."""
    return next(f"{stem}{d}" for d in "0123456789" if verhoeff_ok(f"{stem}{d}"))


CORE = [sct(f"10000{i}00") for i in range(1, 4)]  # core concept ids (partition 00)
UK_CLINICAL = sct("9991000000" + "10")  # an extension concept of the UK clinical namespace
DMD_AMP = sct("9991000001" + "10")  # an extension concept of the dm+d namespace 1000001


def write(tmp_path, text: str | bytes, name: str = "list.csv"):
    path = tmp_path / name
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8", newline="")
    else:
        path.write_bytes(text)
    return path


# -- file shape ------------------------------------------------------------------------------


def test_bom_crlf_blank_lines_and_spaces_around_codes(tmp_path):
    text = f"code,term\r\n\r\n {CORE[0]} ,First\r\n{CORE[1]},Second\r\n\r\n"
    path = write(tmp_path, b"\xef\xbb\xbf" + text.encode())
    cl = load_codelist(path)
    assert cl.system == "snomedct" and set(cl) == {CORE[0], CORE[1]}
    assert cl.terms[CORE[0]] == "First"


def test_rows_of_empty_fields_are_blank_lines_not_empty_codes(tmp_path):
    # spreadsheets save trailing rows as ",," (or spaces): nothing to read, not an error
    path = write(tmp_path, f"code,term\n{CORE[0]},First\n,\n  ,  \n,,\n")
    assert set(load_codelist(path)) == {CORE[0]}
    # a row with a term but no code is still an error, naming its row
    path = write(tmp_path, f"code,term\n{CORE[0]},First\n,Orphan term\n")
    with pytest.raises(CodelistError, match=r"list.csv: row 3, field 'code': empty code"):
        load_codelist(path)


def test_row_numbers_are_file_lines_after_blank_lines_and_multiline_terms(tmp_path):
    bad = CORE[2][:-1] + str((int(CORE[2][-1]) + 1) % 10)  # wrong check digit
    text = f'code,term\n\n{CORE[0]},First\n{CORE[1]},"A term\nover two lines"\n{bad},Typo\n'
    path = write(tmp_path, text)
    with pytest.raises(CodelistError, match=rf"row 6, field 'code': code '{bad}'.*Verhoeff") as e:
        load_codelist(path)
    # (it read "code '...' is fails the SNOMED CT Verhoeff check digit")
    assert f"code '{bad}' is a number whose SNOMED CT Verhoeff check digit is wrong" in str(e.value)


def test_an_unquoted_comma_that_shifts_the_code_column_is_an_error(tmp_path):
    # ``Description,Code`` (the OpenSAFELY CTV3 ethnicity layout): an unquoted comma in the
    # description would put the description's tail in the code column; "other" is even a
    # well-formed 5-character CTV3 code
    path = write(tmp_path, "Description,Code\nWhite British,XaXXX\nAny other, other,Y9999\n")
    with pytest.raises(CodelistError, match=r"list.csv: row 3: 3 fields but the header has 2"):
        load_codelist(path, system="ctv3")
    # trailing empty fields (spreadsheet padding) are not extra fields
    path = write(tmp_path, "Description,Code\nWhite British,XaXXX,,\n")
    assert set(load_codelist(path, system="ctv3")) == {"XaXXX"}


def test_a_column_named_twice_is_an_error(tmp_path):
    path = write(tmp_path, f"code,term,code\n{CORE[0]},First,{CORE[1]}\n")
    with pytest.raises(CodelistError, match="row 1: column.*code appear twice"):
        load_codelist(path)


def test_duplicated_codes_count_once_and_must_agree(tmp_path):
    path = write(tmp_path, f"code,term,strength_mg\n{CORE[0]},A,5\n{CORE[0]},A again,5\n")
    cl = load_codelist(path, system="dmd")
    assert len(cl) == 1 and cl.attribute_map("strength_mg") == {CORE[0]: 5.0}
    path = write(tmp_path, f"code,term,strength_mg\n{CORE[0]},A,5\n{CORE[0]},A,25\n")
    with pytest.raises(
        CodelistError, match=r"row 3, field 'strength_mg': code '\d+' has 25 here but 5"
    ):
        load_codelist(path, system="dmd")


def test_code_like_extra_columns_stay_text(tmp_path):
    # leading zeros (BNF sections) and long identifiers are not numbers
    path = write(
        tmp_path,
        f"code,term,bnf_section,parent_id,strength_mg\n{CORE[0]},A,0301,{DMD_AMP},2.5\n",
    )
    cl = load_codelist(path, system="dmd")
    assert cl.category_map("bnf_section") == {CORE[0]: "0301"}
    assert cl.category_map("parent_id") == {CORE[0]: DMD_AMP}
    assert cl.attribute_map("strength_mg") == {CORE[0]: 2.5}


# -- which column, which system ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "code", "system"),
    [
        ("snomedcode,term", CORE[0], "snomedct"),
        ("snomed_code,description", CORE[0], "snomedct"),
        ("ctv3_id,term", "XaXXX", "ctv3"),
        ("CTV3ID,CTV3PreferredTermDesc", "H33..", "ctv3"),
        ("ctv3code,description", "H33..", "ctv3"),
        ("dmd_id,dmd_name", DMD_AMP, "dmd"),
        ("CODE,TERM", CORE[0], "snomedct"),
        ("icd10_code,term", "J45", "icd10"),
        ("opcs4_code,term", "R171", "opcs4"),
    ],
)
def test_code_column_spellings(tmp_path, header, code, system):
    path = write(tmp_path, f"{header}\n{code},A term\n")
    cl = load_codelist(path)
    assert cl.system == system and code in cl.codes_in(system)


def test_an_icd10_code_in_a_snomed_list_names_its_row(tmp_path):
    text = f"code,term\n{CORE[0]},A\n{CORE[1]},B\nJ45,Asthma (ICD-10)\n{CORE[2]},C\n"
    path = write(tmp_path, text)
    with pytest.raises(
        CodelistError,
        match=r"list.csv: row 4, field 'code': code 'J45' is not 6-18 digits"
        r".*the other 3 code\(s\) of the list are snomedct",
    ):
        load_codelist(path)
    with pytest.raises(CodelistError, match=r"row 4, field 'code': code 'J45' is not 6-18"):
        load_codelist(path, system="snomedct")


def test_a_ctv3_code_in_a_snomed_list_names_its_row(tmp_path):
    path = write(tmp_path, f"code,term\n{CORE[0]},A\nH33..,Asthma (CTV3)\n{CORE[1]},B\n")
    with pytest.raises(CodelistError, match=r"row 3, field 'code': code 'H33..' is not"):
        load_codelist(path)


def test_a_snomed_description_id_is_not_a_concept(tmp_path):
    description = sct("1000001" + "01")  # partition 01: a description id
    path = write(tmp_path, f"code,term\n{CORE[0]},A\n{description},Asthma\n")
    with pytest.raises(
        CodelistError, match=rf"row 3, field 'code': code '{description}' is a description id"
    ):
        load_codelist(path)
    relationship = sct("1000000" + "02")
    path = write(tmp_path, f"code,term\n{relationship},x\n")
    with pytest.raises(CodelistError, match="a relationship id"):
        load_codelist(path, system="snomedct")


def test_a_clinical_snomed_id_in_a_dmd_column(tmp_path):
    # dm+d products are core concepts or in the dm+d namespace 1000001; a concept of the UK
    # clinical extension (namespace 1000000) is a SNOMED CT clinical code, not a medicine
    path = write(tmp_path, f"dmd_type,dmd_id,dmd_name\nVMP,{DMD_AMP},A\nVMP,{UK_CLINICAL},B\n")
    with pytest.raises(
        CodelistError,
        match=rf"row 3, field 'dmd_id': code '{UK_CLINICAL}' is a SNOMED CT extension concept "
        "of namespace 1000000, not a dm\\+d product",
    ):
        load_codelist(path)
    # the same id in a SNOMED CT list is fine
    path = write(tmp_path, f"code,term\n{UK_CLINICAL},B\n")
    assert load_codelist(path).system == "snomedct"


# -- ICD-10, OPCS-4, CTV3 and BNF spellings ---------------------------------------------------


def test_icd10_with_or_without_the_dot_and_the_x_filler(tmp_path):
    path = write(
        tmp_path, "code,term\nJ45.9,Asthma\nI10,Hypertension\nJ46X,Status\n", "x_icd10.csv"
    )
    cl = load_codelist(path)
    assert cl.system == "icd10"
    # J45.9 is read as J459 (as ingest stores it); I10 and J46X hold both their 3-character
    # and X-filled forms, so the list matches HES-style (I10X) and plain (I10) records
    assert cl.codes_in("icd10") == {"J459", "I10", "I10X", "J46", "J46X"}
    assert cl.terms["I10X"] == "Hypertension"


def test_opcs4_with_or_without_the_dot(tmp_path):
    path = write(tmp_path, "code,term\nR17.1,Elective\nR182,Other\n")
    assert load_codelist(path, system="opcs4").codes_in("opcs4") == {"R171", "R182"}
    path = write(tmp_path, "code,term\nR17.11,Bad\n")
    with pytest.raises(CodelistError, match=r"row 2, field 'code': code 'R17.11' is not an OPCS"):
        load_codelist(path, system="opcs4")


def test_ctv3_codes_keep_their_case(tmp_path):
    # 'XaXXX' and 'XAXXX' are different CTV3 codes: nothing may fold case
    path = write(tmp_path, "CTV3Code,Description\nXaXXX,one\nXAXXX,other\nH33..,asthma\n")
    cl = load_codelist(path)
    assert cl.system == "ctv3" and set(cl) == {"XaXXX", "XAXXX", "H33.."}
    assert "xaxxx" not in cl
    assert Codelist.of("ctv3", ["XaXXX"]).codes_in("ctv3") == {"XaXXX"}


def test_bnf_codes_are_text_with_their_leading_zero(tmp_path):
    path = write(tmp_path, "code,term\n0212000AAAAAAAA,Statin\n0301011R0AAAAAA,SABA\n")
    cl = load_codelist(path)
    assert cl.system == "bnf" and set(cl) == {"0212000AAAAAAAA", "0301011R0AAAAAA"}
    path = write(tmp_path, f"code,term,type,bnf_code\n{DMD_AMP},Salbutamol,amp,0301011R0AAAAAA\n")
    assert load_codelist(path).codes_in("bnf") == {"0301011R0AAAAAA"}


@pytest.mark.parametrize(
    ("code", "level"),
    [
        ("02", "chapter"),
        ("0212", "section"),
        ("0212000", "sub-paragraph"),
        ("0212000AA", "chemical"),
    ],
)
def test_a_bnf_prefix_is_refused_not_matched_to_nothing(tmp_path, code, level):
    # matching is by whole code: a chapter or chemical prefix would match no prescription
    path = write(tmp_path, f"code,term\n0212000AAAAAAAA,Statin\n{code},Prefix\n")
    with pytest.raises(
        CodelistError, match=rf"row 3, field 'code': code '{code}' is a BNF prefix \({level}"
    ):
        load_codelist(path, system="bnf")


def test_a_mistyped_snomed_id_is_not_taken_for_a_bnf_code(tmp_path):
    # all-digit codes fit the BNF shape; one bad check digit must not turn a SNOMED CT
    # list into a BNF list (which would match no medication and no event)
    bad = CORE[1][:-1] + str((int(CORE[1][-1]) + 1) % 10)
    path = write(tmp_path, f"code,term\n{CORE[0]},A\n{bad},B\n")
    with pytest.raises(CodelistError, match=rf"row 3, field 'code': code '{bad}'.*Verhoeff"):
        load_codelist(path)


def test_a_code_that_fits_no_system_is_not_called_another_systems():
    """A BNF chemical prefix among BNF presentations is a malformed BNF code, fitting no
    other system: the message says so and what to do, not "a code of another coding
    system?" (which it said before); a SNOMED CT list holding an ICD-10 code names the
    systems that code fits."""
    import pophealth.codelists as cl

    bnf = [(2, "0301011R0AAAPAP"), (3, "0301011R0")]
    with pytest.raises(CodelistError) as err:
        cl._infer_system(bnf, "x.csv", "code")
    assert "BNF prefix (chemical" in str(err.value)
    assert "correct or remove it" in str(err.value)
    assert "another coding system" not in str(err.value)

    mixed = [(2, "195967001"), (3, "389145006"), (4, "J45")]
    with pytest.raises(CodelistError, match="this one fits icd10.*another coding system"):
        cl._infer_system(mixed, "x.csv", "code")


def test_a_misspelt_curated_list_name_gets_the_closest_names():
    with pytest.raises(CodelistError, match="did you mean 'saba_inhalers'"):
        codelist("saba_inhaler")
