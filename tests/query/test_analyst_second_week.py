"""A new analyst's second week: mistakes that still gave a silent zero, each now refused
when the definition is built, with the variable named (no engine runs: the refusal comes
first). Every case here was accepted before, and matched no row."""

from __future__ import annotations

import pytest

from pophealth.codelists import Codelist, codelist, load_codelist
from pophealth.query import Dataset, QueryError, case, events, medications, patients

HYPERTENSION = codelist("hypertension_diagnosis")  # curated: a clinical SNOMED CT list


def assign(name, value):
    Dataset().add(name, value)


# -- is_in with a clinical SNOMED CT list on a medications code -------------------------------


@pytest.mark.parametrize(
    "build",
    [
        lambda cl: medications.where(medications.code.is_in(cl)).exists_for_patient(),
        lambda cl: medications.last_for_patient().code.is_in(cl),
    ],
    ids=["rows", "latest issue"],
)
def test_is_in_refuses_a_clinical_snomed_list_on_a_medications_code(build):
    """docs/query.md: ``column.is_in(codelist)`` checks the systems as ``matching`` does; a
    clinical SNOMED CT list on ``medications`` (its code column holds SNOMED CT ids, so the
    system alone allowed it) matched no prescription, silently."""
    with pytest.raises(
        QueryError,
        match=r"variable 'x': .*is_in\(hypertension_diagnosis\): code list "
        r"'hypertension_diagnosis' holds clinical SNOMED CT concepts, not medicinal products",
    ):
        assign("x", build(HYPERTENSION))


def test_is_in_still_takes_a_medicine_list_and_a_clinical_list_where_it_belongs():
    saba = codelist("saba_inhalers")
    assign("x", medications.where(medications.code.is_in(saba)).exists_for_patient())
    assign("y", events.where(events.code.is_in(HYPERTENSION)).exists_for_patient())
    products = Codelist.of("snomedct", ["325426006"], name="prednisolone_snomed")
    assign("z", medications.where(medications.code.is_in(products)).exists_for_patient())


# -- a list of core SNOMED CT ids only, whose terms are fully specified names -----------------


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return load_codelist(path)


@pytest.mark.parametrize("how", ["matching", "is_in"])
def test_core_ids_named_as_disorders_are_refused_on_medications(tmp_path, how):
    """Core SNOMED CT ids hold findings and older dm+d products alike, so the ids cannot
    tell; an OpenCodelists download's ``name`` column is the fully specified name, whose
    semantic tag can: "(disorder)" is no medicinal product."""
    cl = _write(
        tmp_path,
        "hypertension-core.csv",
        "id,name,active,notes\n"
        "38341003,Hypertensive disorder (disorder),y,\n"
        "59621000,Essential hypertension (disorder),y,\n",
    )
    assert cl.not_products() is None  # the ids alone say nothing
    build = {
        "matching": lambda: medications.matching(cl).exists_for_patient(),
        "is_in": lambda: medications.where(medications.code.is_in(cl)).exists_for_patient(),
    }[how]
    with pytest.raises(
        QueryError,
        match=r"variable 'x': .*'hypertension-core' holds clinical SNOMED CT concepts, not "
        r"medicinal products: its terms name concepts that are no medicinal product by their "
        r"SNOMED CT semantic tag \('Hypertensive disorder \(disorder\)', code 38341003; 2 of "
        r"its 2 codes",
    ):
        assign("x", build())
    assign("ok", events.matching(cl).exists_for_patient())  # where it belongs


def test_a_real_download_cut_to_its_core_ids_is_refused_on_medications(shared_data, tmp_path):
    """The OpenSAFELY hypertension SNOMED CT list (an ``id,name`` download), cut to its core
    ids: before, only its UK-extension ids gave it away."""
    source = shared_data / "codelists" / "opensafely-hypertension-snomed.csv"
    lines = source.read_text().splitlines()
    core = [line for line in lines[1:] if line.split(",")[0][-3:-1] == "00"]
    assert len(core) > 100
    cl = _write(tmp_path, "hypertension-core-ids.csv", "\n".join([lines[0], *core]) + "\n")
    assert cl.not_products() is None
    with pytest.raises(QueryError, match="its terms name concepts that are no medicinal product"):
        assign("x", medications.matching(cl).exists_for_patient())


@pytest.mark.parametrize(
    "rows",
    [
        # a product's fully specified name: a medicinal product
        "325426006,Product containing precisely prednisolone 5 milligram/1 each conventional "
        "release oral tablet (clinical drug)\n",
        # preferred terms (no semantic tag): the terms cannot tell either
        "325426006,Prednisolone 5mg tablets\n",
        # one disorder among products: some rows can match, so no silent zero
        "325426006,Prednisolone 5mg tablet (product)\n38341003,Hypertensive disorder (disorder)\n",
    ],
    ids=["clinical drug", "no tag", "mixed"],
)
def test_lists_that_may_hold_products_still_match_medications(tmp_path, rows):
    cl = _write(tmp_path, "pred.csv", "code,term\n" + rows)
    assign("x", medications.matching(cl).exists_for_patient())
    assign("y", medications.where(medications.code.is_in(cl)).exists_for_patient())


# -- a variable missing for everybody -------------------------------------------------------


def test_a_variable_that_is_none_is_refused():
    """A helper that forgets to ``return`` gives None; ``ds.bp = latest_bp()`` then ran and
    wrote a column empty for every patient, silently."""

    def latest_bp():
        latest = events.matching(codelist("systolic_bp")).last_for_patient().value
        assert latest is not None  # ...and no return

    ds = Dataset()
    with pytest.raises(QueryError, match=r"variable 'bp': None: missing for every patient"):
        ds.bp = latest_bp()
    with pytest.raises(QueryError, match=r"variable 'nothing': .*missing for every patient"):
        ds.nothing = case((patients.sex == "female", None), otherwise=None)
    ds.source = "GP record"  # a constant is a value, and is fine


def test_case_with_no_branch_is_refused_when_built():
    """``case()`` with no (condition, value) pair ran into an Ibis TypeError ("cases()
    missing 1 required positional argument") when the dataset ran."""
    with pytest.raises(QueryError, match=r"variable 'band': case\(\) needs at least one"):
        Dataset().add("band", case(otherwise="all"))


@pytest.mark.parametrize(
    "build", [lambda a: a // 5, lambda a: a % 5, lambda a: a**2, lambda a: 100 // a]
)
def test_floor_division_modulo_and_powers_name_what_to_use(build):
    """``(age // 5) * 5`` for 5-year bands was Python's TypeError ("unsupported operand
    type(s) for //: 'Series' and 'int"), with no variable named and no way round."""
    age = patients.age_on("2025-03-31")
    with pytest.raises(
        QueryError,
        match=r"variable 'band': .* is not supported — for bands of age use "
        r"patients.age_band_on",
    ):
        Dataset().add("band", build(age) * 5)
