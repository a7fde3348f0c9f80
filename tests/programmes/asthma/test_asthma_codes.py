"""The asthma code lists: a list a marker needs must be there, or the build fails naming it."""

from __future__ import annotations

import dataclasses

import pytest

from pophealth.codelists import Codelist
from pophealth.programmes.asthma import codes as asthma_codes
from pophealth.programmes.asthma.codes import OPTIONAL, REQUIRED, MissingCodelistError, curated


def test_a_missing_required_list_is_an_error_naming_it():
    # Without a review list everyone used to be flagged "no asthma review" (and likewise for
    # every other marker): a required list that is missing must stop the build.
    full = curated()
    with pytest.raises(MissingCodelistError, match=r"review \(missing\).*asthma_review"):
        dataclasses.replace(full, review=None)
    for name in REQUIRED:
        with pytest.raises(MissingCodelistError, match=name):
            dataclasses.replace(full, **{name: None})


def test_an_empty_required_list_is_an_error_naming_it():
    empty = Codelist(name="my review list", system="snomedct", codes={"snomedct": frozenset()})
    with pytest.raises(MissingCodelistError, match=r"review \(empty: 'my review list'\)"):
        dataclasses.replace(curated(), review=empty)


def test_the_pathway_lists_stay_optional():
    codes = dataclasses.replace(curated(), **{name: None for name in OPTIONAL})
    assert codes.seen_recorded() == ()


def test_curated_names_a_list_the_curated_set_lacks(monkeypatch):
    without = asthma_codes.available_codelists() - {"asthma_review"}
    monkeypatch.setattr(asthma_codes, "available_codelists", lambda: without)
    with pytest.raises(MissingCodelistError, match=r"review \(tried: asthma_review\)"):
        curated()


def test_the_curated_set_has_every_required_list():
    codes = curated()
    assert all(getattr(codes, name) is not None for name in REQUIRED)
    assert {m.split(" ", 1)[0] for m in codes.missing} <= set(OPTIONAL)
