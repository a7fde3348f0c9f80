"""The asthma report's own words, as a clinician reads them in the HTML report."""

from __future__ import annotations

import re

import pytest


@pytest.fixture(scope="module")
def result(synthetic_runs):
    """The asthma programme on the canonical store (tests/programmes/conftest.py runs it once)."""
    return synthetic_runs.result(10_000, 42, "asthma")


def test_the_rules_section_shows_no_template_placeholders(result):
    # "The rules, in plain words" listed each reason as its template, so the report read
    # "reason 'saba_priority' (moderate): {saba_count_12m} reliever inhalers in 12 months
    # (6 or more)": a column name in braces where the patient's number goes.
    section = next(s for s in result.sections if s.title == "The rules, in plain words")
    reasons = [n for n in section.notes if n.startswith("reason ")]
    assert len(reasons) > 10
    for note in reasons:
        assert not re.search(r"[{}]", note), note
    assert any(n.endswith("N reliever inhalers in 12 months (6 or more)") for n in reasons)
    assert any("(medication ratio N.NN, below 0.5)" in n for n in reasons)
    assert any("N stands for the patient's own number" in n for n in section.notes)
