"""``pophealth codelists``: the lists a definition's codelist(NAME) reads, and one list's
codes, as that call reads them (curated, or the --codelists folder's in their place)."""

from __future__ import annotations

import csv
import io

from typer.testing import CliRunner

from pophealth.cli import app
from pophealth.codelists import codelist, curated_manifest


def _invoke(*args: str):
    return CliRunner().invoke(app, ["codelists", *args])


def test_lists_every_curated_list_with_its_system_and_number_of_codes():
    result = _invoke()
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:4] == ["name", "system", "codes", "from"]
    rows = {line.split()[0]: line.split()[1:4] for line in lines[1:] if line.strip()}
    for name in curated_manifest():
        cl = codelist(name)
        assert rows[name] == [cl.system, str(sum(map(len, cl.codes.values()))), "curated"]
    assert f"{len(curated_manifest())} lists." in result.output


def test_prints_one_lists_codes_with_its_categories_and_numbers():
    result = _invoke("ocs_prednisolone")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    cl = codelist("ocs_prednisolone")
    assert {(r["system"], r["code"]) for r in rows} == {
        (s, c) for s, codes in cl.codes.items() for c in codes
    }
    five = next(r for r in rows if r["code"] == "325427002")
    assert (five["term"], five["strength_mg"]) == ("Prednisolone 5mg tablets", "5")


def test_a_folders_list_stands_in_for_the_curated_one(tmp_path):
    (tmp_path / "asthma_diagnosis.csv").write_text("code,term\n195967001,Asthma\n")
    (tmp_path / "freed_referral.csv").write_text("code,term\n183524004,Referral to psychiatrist\n")
    result = _invoke("--codelists", str(tmp_path))
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split()[1:4] for line in result.output.splitlines()[1:] if line}
    assert rows["asthma_diagnosis"] == ["snomedct", "1", "your"]  # "your folder"
    assert rows["freed_referral"] == ["snomedct", "1", "your"]
    # the description is of the folder's file, not the curated list's own
    line = next(x for x in result.output.splitlines() if x.startswith("asthma_diagnosis "))
    assert line.split("your folder", 1)[1].strip().startswith("asthma_diagnosis.csv, in place of:")
    result = _invoke("asthma_diagnosis", "--codelists", str(tmp_path))
    assert result.output.splitlines() == ["system,code,term", "snomedct,195967001,Asthma"]


def test_an_unknown_name_or_a_bad_folder_is_an_error_not_a_listing(tmp_path):
    result = _invoke("asthma_diagnosiss")
    assert result.exit_code == 2
    assert "did you mean 'asthma_diagnosis'" in result.output
    (tmp_path / "bad.csv").write_text("code,term\nJ45,Asthma\n195967001,Asthma\n")
    result = _invoke("--codelists", str(tmp_path))
    assert result.exit_code == 2
    assert "bad.csv" in result.output
