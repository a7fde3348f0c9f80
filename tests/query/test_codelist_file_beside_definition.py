"""A code-list file a definition reads by a relative path: when it is not there, the error
says where it was looked for (the folder the command is run from) and, when the file is
beside the definition, how to read it from there."""

from __future__ import annotations

import pytest

from pophealth.query.definitions import DefinitionError, load_definitions


def one_line(text: str) -> str:
    return " ".join(text.split())


LOADS = """\
from pophealth.query import load_codelist
asthma = load_codelist("lists/asthma.csv")
"""


def test_a_code_list_file_beside_the_definition_but_not_the_working_folder(tmp_path, monkeypatch):
    folder = tmp_path / "defs"
    (folder / "lists").mkdir(parents=True)
    (folder / "lists" / "asthma.csv").write_text("code,term\n195967001,Asthma\n")
    path = folder / "asthma.py"
    path.write_text(LOADS)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with pytest.raises(DefinitionError) as err:
        load_definitions(path)
    said = one_line(str(err.value))
    assert f"{path.resolve()}, line 2:" in said
    assert str(elsewhere.resolve() / "lists" / "asthma.csv") in said  # where it looked
    assert str(folder.resolve() / "lists" / "asthma.csv") in said  # where the file is
    assert "Path(__file__).parent" in said


def test_a_code_list_file_found_nowhere_says_where_it_looked(tmp_path, monkeypatch):
    folder = tmp_path / "defs"
    folder.mkdir()
    path = folder / "asthma.py"
    path.write_text(LOADS)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DefinitionError) as err:
        load_definitions(path)
    said = one_line(str(err.value))
    assert str(tmp_path.resolve() / "lists" / "asthma.csv") in said
    assert "folder the command is run from" in said
    assert "Path(__file__).parent" not in said  # not beside the definition either


def test_the_code_list_file_runs_from_the_definitions_folder_as_the_hint_says(
    tmp_path, monkeypatch
):
    folder = tmp_path / "defs"
    (folder / "lists").mkdir(parents=True)
    (folder / "lists" / "asthma.csv").write_text("code,term\n195967001,Asthma\n")
    path = folder / "asthma.py"
    path.write_text(
        "from pathlib import Path\nfrom pophealth.query import load_codelist\n"
        'asthma = load_codelist(Path(__file__).parent / "lists/asthma.csv")\n'
    )
    monkeypatch.chdir(tmp_path)
    namespace = load_definitions(path)
    assert "195967001" in namespace["asthma"].codes["snomedct"]
