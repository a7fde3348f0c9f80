"""The guides say what the software does (docs audit 17).

A new analyst reads README.md and docs/ and types what they say. These tests keep the
checkable facts true mechanically: every option a guide names after a command exists, and
every option a command has is named in some guide; the defaults the README quotes; the
code-list names docs/codelists.md gives per programme; the files and columns the
population and CVD guides list, against a run on a 300-patient synthetic store; and the
ingest guide's exit codes and quarantine locations, on tiny flat files.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from pophealth.cli import app
from tests.foundation.test_first_hour_audit12 import cli_commands
from tests.foundation.test_first_hour_audit12 import options as audit12_options

REPO = Path(__file__).resolve().parents[2]
GUIDES = [
    REPO / "README.md",
    *sorted((REPO / "docs").glob("*.md")),
    *sorted((REPO / "docs" / "programmes").glob("*.md")),
]
runner = CliRunner()


def invoke(*args) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, " ".join(result.output.replace("│", " ").split())


def options(command) -> set[str]:
    return audit12_options(command) - {"--help"}


def default(command, option: str):
    return next(p.default for p in command.params if option in p.opts)


def doc(relative: str) -> str:
    return (REPO / relative).read_text()


# -- options: named in the guides <-> present in the CLI ------------------------------------


def test_every_option_a_guide_names_after_a_command_exists():
    """`pophealth run cvd ... --codelists DIR` in any guide: --codelists is an option of
    `run`. Checked on every line of README.md and docs/ that names a command."""
    cmds = cli_commands()
    names = sorted(cmds, key=len, reverse=True)
    checked, wrong = 0, []
    for path in GUIDES:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for match in re.finditer(r"pophealth ((?:[a-z][a-z-]* ?){1,2})", line):
                words = match.group(1).strip()
                name = next((n for n in names if words == n or words.startswith(n + " ")), None)
                if name is None:
                    continue
                rest = line[match.end() :].split("`")[0]  # to the end of the code span
                for option in re.findall(r"(?<![\w-])--[a-z][a-z-]*", rest):
                    checked += 1
                    if option not in options(cmds[name]):
                        wrong.append(f"{path.name}:{number}: pophealth {name} {option}")
    assert not wrong, wrong
    assert checked >= 40  # the README table alone names more


def test_every_option_of_every_command_is_in_a_guide():
    text = "".join(path.read_text() for path in GUIDES)
    missing = {
        name: sorted(o for o in options(cmd) if not re.search(re.escape(o) + r"(?![\w-])", text))
        for name, cmd in cli_commands().items()
    }
    assert not {k: v for k, v in missing.items() if v}, missing


def test_the_readme_quotes_the_defaults_of_synth_and_demo():
    cmds = cli_commands()
    readme = doc("README.md")
    assert default(cmds["synth"], "--patients") == default(cmds["demo"], "--patients") == 10_000
    assert default(cmds["synth"], "--seed") == default(cmds["demo"], "--seed") == 42
    assert "10,000 patients and seed 42" in readme
    assert str(default(cmds["demo"], "--out")) == "pophealth-demo"
    assert "in `pophealth-demo/` unless `--out`" in readme


def test_every_command_that_refuses_a_future_index_date_says_so_in_its_help(tmp_path):
    """`run` and `asthma pollution-episode` share the rule; the episode's help did not say it."""
    for name in ("run", "asthma pollution-episode"):
        command = cli_commands()[name]
        text = next(p.help for p in command.params if "--index-date" in p.opts)
        assert "not in the future" in text, name


def test_the_readme_lists_every_guide():
    readme = doc("README.md")
    guides = sorted(
        p.relative_to(REPO).as_posix() for p in GUIDES if p.parent.name in ("docs", "programmes")
    )
    assert [g for g in guides if f"`{g}`" not in readme] == []


def test_the_publishers_serve_six_files_as_readme_and_download_help_say():
    from pophealth.reference.sources import SOURCES, markdown_table

    direct = sum(1 for s in SOURCES if s.url)
    assert direct == 6
    assert f"the {direct} their publishers serve directly" in doc("README.md")
    assert f"Publishers serve {direct} of the files" in cli_commands()["reference download"].help
    assert markdown_table() in doc("docs/reference-data.md")


def test_the_reference_folder_layout_is_the_same_in_help_guide_and_catalogue():
    """`reference build --from` help left out esp2013/, which the guide and the catalogue
    have."""
    from pophealth.reference.sources import SOURCES

    catalogue = {str(Path(s.path).parent) + "/" for s in SOURCES}
    guide = " ".join(doc("docs/reference-data.md").split())
    layout = guide.split("`DIR` has the layout of `../shared/data`", 1)[1].split(". ", 1)[0]
    assert set(re.findall(r"`([a-z0-9_/]+/)`", layout)) == catalogue
    command = cli_commands()["reference build"]
    text = next(p.help for p in command.params if "--from" in p.opts)
    assert set(re.findall(r"([a-z0-9_/]+/)", text.split("(", 1)[1])) == catalogue


def test_the_disclosure_rule_reads_as_the_statistics_guide_quotes_it():
    from pophealth.disclosure import DEFAULT_POLICY, MAX_AUDITED_CELLS

    statistics = doc("docs/statistics.md")
    assert f'("{DEFAULT_POLICY.summary()}")' in " ".join(statistics.split())
    assert f"{MAX_AUDITED_CELLS:,} withheld cells (`MAX_AUDITED_CELLS`)" in " ".join(
        statistics.split()
    )


def _slug(heading: str) -> str:
    """A Markdown heading's anchor as GitHub makes it."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_relative_link_in_the_guides_reaches_a_file_and_heading():
    checked, broken = 0, []
    for path in GUIDES:
        for target in re.findall(r"\]\(([^)\s]+)\)", path.read_text()):
            if target.startswith(("http://", "https://")):
                continue
            checked += 1
            file, _, anchor = target.partition("#")
            linked = (path.parent / file).resolve() if file else path
            if not linked.exists():
                broken.append(f"{path.name}: {target}")
            elif anchor and linked.suffix == ".md":
                headings = re.findall(r"^#+ (.*)$", linked.read_text(), re.M)
                if anchor not in {_slug(h) for h in headings}:
                    broken.append(f"{path.name}: {target}")
    assert not broken, broken
    assert checked >= 15


def test_every_repository_file_the_guides_name_exists():
    checked, missing = 0, []
    for path in GUIDES:
        text = path.read_text()
        for name in set(re.findall(r"`((?:tests|pophealth|benchmarks|docs)/[\w./-]*)`", text)):
            checked += 1
            if not (REPO / name).exists():
                missing.append(f"{path.name}: {name}")
        for name in set(re.findall(r"`(test_\w+\.py)`", text)):  # a test named alone
            checked += 1
            if not list((REPO / "tests").rglob(name)):
                missing.append(f"{path.name}: {name}")
    assert not missing, missing
    assert checked >= 50


def _resolves(dotted: str) -> bool:
    import importlib

    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            if not hasattr(obj, attribute):
                return False
            obj = getattr(obj, attribute)
        return True
    return False


def test_every_python_name_the_guides_give_exists():
    """`pophealth.query.unmatched.unmatched_lists`, `cvd.extract.roles_read` (cvd.md's short
    form), and each function the statistics guide lists under its module heading."""
    checked, missing = 0, []
    for path in GUIDES:
        text = path.read_text()
        names = set(re.findall(r"`(pophealth(?:\.[A-Za-z_]\w*)+)", text))
        if path.name == "cvd.md":
            names |= {
                "pophealth.programmes." + n for n in re.findall(r"`(cvd(?:\.[A-Za-z_]\w*)+)", text)
            }
        for name in names:
            checked += 1
            if not _resolves(name):
                missing.append(f"{path.name}: {name}")
    statistics = doc("docs/statistics.md")
    for module in ("stats", "spc", "disclosure", "equity", "charts"):
        section = statistics.split(f"## `pophealth.{module}`", 1)[1].split("\n## ", 1)[0]
        for function in set(re.findall(r"`([a-z_]\w*)\(", section)):
            checked += 1
            if not _resolves(f"pophealth.{module}.{function}"):
                missing.append(f"statistics.md: pophealth.{module}.{function}")
    assert not missing, missing
    assert checked >= 70


def test_the_qrisk3_inputs_the_scores_guide_lists_are_the_columns_it_needs():
    from pophealth.scores.qrisk3 import QRISK3_COLUMNS

    text = doc("docs/scores.md")
    paragraph = text.split("\nInput: ", 1)[1].split("\n\n", 1)[0]
    named = re.findall(r"`([a-z0-9_]+)`", paragraph)
    assert set(named) == set(QRISK3_COLUMNS)


# -- code lists: the names docs/codelists.md gives are the names each programme reads ------


def _listed(programme: str) -> set[str]:
    text = doc("docs/codelists.md")
    paragraph = re.search(rf"\*\*{programme}\*\*.*?(?=\n\n)", text, re.S).group(0)
    return set(re.findall(r"`([a-z0-9_]+)`", paragraph))


@pytest.mark.parametrize("programme", ["asthma", "cvd"])
def test_codelists_guide_names_what_the_programme_reads(programme):
    import importlib

    module = importlib.import_module(f"pophealth.programmes.{programme}")
    assert _listed(programme) == set(module.CODELIST_NAMES)


def test_codelists_guide_names_the_population_registers_lists():
    from pophealth.programmes.population import REGISTERS

    reads = {n for r in REGISTERS for n in (*r.diagnosis, r.resolved) if n is not None}
    assert _listed("population") == reads


def test_a_file_named_as_no_list_is_refused_with_the_closest_names(tmp_path, store):
    folder = tmp_path / "lists"
    folder.mkdir()
    (folder / "hypertension.csv").write_text("code,term\n38341003,Hypertensive disorder\n")
    code, said = invoke(
        "run", "population", "--store", store, "--out", tmp_path / "o", "--codelists", folder
    )
    assert code == 2
    assert "did you mean 'hypertension_resolved' or 'hypertension_diagnosis'?" in said
    assert not (tmp_path / "o").exists()


def test_an_ambiguous_list_is_told_to_use_the_folders_manifest(tmp_path, store):
    """Three-character codes are ICD-10 and OPCS-4 alike: docs/codelists.md says to add a
    MANIFEST.csv (name,system) to the folder. The command said "pass system=...", a Python
    keyword a command-line user cannot pass; with the manifest the run goes through."""
    folder = tmp_path / "lists"
    folder.mkdir()
    (folder / "asthma_diagnosis.csv").write_text("code,term\nJ45,Asthma\n")
    code, said = invoke(
        "run", "population", "--store", store, "--out", tmp_path / "o", "--codelists", folder
    )
    assert code == 2
    assert "system=" not in said
    assert f"{folder / 'MANIFEST.csv'} (columns name,system)" in said
    (folder / "MANIFEST.csv").write_text("name,system\nasthma_diagnosis,icd10\n")
    code, said = invoke(
        "run", "population", "--store", store, "--out", tmp_path / "o", "--codelists", folder
    )
    assert code == 0, said
    assert "asthma_diagnosis read" in said


# -- programme outputs: the files and columns the guides list -------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("docs-truth") / "store"
    code, said = invoke("synth", "--patients", "300", "--seed", "42", "--out", path)
    assert code == 0, said
    return path


@pytest.fixture(scope="module")
def population_run(store) -> Path:
    out = store.parent / "population"
    code, said = invoke("run", "population", "--store", store, "--out", out)
    assert code == 0, said
    return out


@pytest.fixture(scope="module")
def cvd_run(store) -> Path:
    out = store.parent / "cvd"
    code, said = invoke("run", "cvd", "--store", store, "--out", out)
    assert code == 0, said
    return out


def _table_names(text: str, heading: str) -> list[str]:
    """The backticked first cells of the table under ``heading``."""
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([^`]+)`", section, re.M)


def test_population_writes_the_tables_its_guide_lists(population_run):
    listed = _table_names(doc("docs/programmes/population.md"), "## Outputs")
    written = sorted(p.stem for p in (population_run / "aggregate" / "population").glob("*.csv"))
    # registered_by_lsoa only when the map is drawn: real boundaries, not the synthetic region
    assert written == sorted(set(listed) - {"registered_by_lsoa"})
    assert not (population_run / "patient-level").exists()  # "no patient-level file"
    pyramid = pd.read_csv(population_run / "aggregate" / "population" / "age_sex_pyramid.csv")
    bands = [f"{a}-{a + 4}" for a in range(0, 90, 5)] + ["90+"]  # "0-4 … 85-89 and 90+"
    for _, rows in pyramid.groupby("sex"):  # every band of every recorded sex is a row
        assert list(rows["age_band"]) == bands


def test_population_prevalence_has_the_documented_columns_and_registers(population_run):
    from pophealth.programmes.population import REGISTERS

    frame = pd.read_csv(population_run / "aggregate" / "population" / "prevalence_overall.csv")
    assert list(frame["measure"]) == [r.name for r in REGISTERS]
    assert len(REGISTERS) == 5  # "how common five recorded long-term conditions are"
    contract = ["value", "lower95_0cl", "upper95_0cl", "lower99_8cl", "upper99_8cl"]
    for column in ["numerator", "denominator", *contract, "england_qof_2023_24_pct"]:
        assert column in frame.columns, column
    assert set(frame["method"].dropna()) <= {"Wilson (from released counts)"}
    by_quintile = pd.read_csv(
        population_run / "aggregate" / "population" / "prevalence_by_imd_quintile.csv",
        dtype={"imd_quintile": str},
    )
    assert set(by_quintile["imd_quintile"]) <= {"1", "2", "3", "4", "5", "unknown"}


def test_cvd_writes_every_file_its_outputs_table_lists(cvd_run):
    from pophealth.programmes.cvd.indicators import INDICATORS

    text = doc("docs/programmes/cvd.md")
    indicators = _table_names(text, "## Indicators and equity")
    assert indicators == [i.name for i in INDICATORS]
    pcns = sorted(
        p.stem.removeprefix("cvd_pharmacist_worklist_pcn_")
        for p in (cvd_run / "patient-level" / "cvd").glob("cvd_pharmacist_worklist_pcn_*.csv")
    )
    assert pcns, "no per-PCN worklist"
    expected = set()
    for pattern in _table_names(text, "## Outputs"):
        if "<indicator>" in pattern:
            stem = pattern.split("_equity.csv")[0]
            for indicator in indicators:
                for suffix in ("_equity.csv", "_gap.csv", "_sii.csv"):
                    expected.add(stem.replace("<indicator>", indicator) + suffix)
        elif "<PCN>" in pattern:
            expected.update(pattern.replace("<PCN>", pcn) for pcn in pcns)
        else:
            expected.add(pattern)
    written = {
        p.relative_to(cvd_run).as_posix()
        for p in cvd_run.rglob("*.csv")
        if p.parts[-3] in ("aggregate", "patient-level")
    }
    assert written == expected
    # population.md's engine comparison counts them: "CVD 20" aggregate CSVs
    assert sum(1 for w in written if w.startswith("aggregate/")) == 20
    assert (cvd_run / "patient-level" / "README.txt").is_file()


def test_cvd_configuration_table_is_the_default_config():
    from pophealth.programmes.cvd.config import DEFAULT_CONFIG as c

    text = " ".join(doc("docs/programmes/cvd.md").split())
    assert f"version `{c.version}`" in text

    def num(x: float) -> str:
        return f"{x:g}"

    assert f"| `non_hdl_target` | {num(c.non_hdl_target.value)} mmol/L" in text
    assert f"| `ldl_target` | {c.ldl_target.value:.1f} mmol/L" in text
    assert f"| `qrisk_statin` | {num(c.qrisk_statin.value)} %" in text
    assert f">{num(c.tc_fh_assess.value)}, >{num(c.tc_fh_refer.value)} mmol/L" in text
    lipids = (
        f"total cholesterol {num(c.cholesterol_range[0])}–{num(c.cholesterol_range[1])}, "
        f"HDL {num(c.hdl_range[0])}–{num(c.hdl_range[1])}, "
        f"LDL {num(c.ldl_range[0])}–{num(c.ldl_range[1])}, "
        f"non-HDL {num(c.non_hdl_range[0])}–{num(c.non_hdl_range[1])} mmol/L; "
        f"ratio {num(c.chol_hdl_ratio_range[0])}–{num(c.chol_hdl_ratio_range[1])}"
    )
    assert lipids in text
    body = (
        f"{num(c.bmi_range[0])}–{num(c.bmi_range[1])} kg/m², "
        f"{num(c.height_m_range[0])}–{num(c.height_m_range[1])} m, "
        f"{num(c.weight_kg_range[0])}–{num(c.weight_kg_range[1])} kg"
    )
    assert body in text


def test_cvd_worklist_columns_start_as_documented_and_carry_the_disclaimer(cvd_run):
    text = " ".join(doc("docs/programmes/cvd.md").split())
    documented = re.search(r"One row per patient on any list, columns `([^`]+)`", text).group(1)
    leading = [c.strip() for c in documented.split(",") if c.strip() not in ("…", "")]
    header = pd.read_csv(
        cvd_run / "patient-level" / "cvd" / "cvd_pharmacist_worklist.csv", nrows=0
    ).columns
    assert list(header[: len(leading)]) == leading
    assert "qrisk3_disclaimer" in header and "qrisk3" in header


def _documented_signature(text: str, name: str) -> dict[str, str | None]:
    """``name(a, *, b=1, ...)`` as a guide writes it: parameter -> default text (or None)."""
    body = re.search(rf"^{name}\((.*?)\)(?: ->|\n)", text, re.S | re.M).group(1)
    params = {}
    for part in (p.strip() for p in " ".join(body.split()).split(",")):
        if part and part != "*":
            key, _, value = part.partition("=")
            params[key.strip()] = value.strip() or None
    return params


@pytest.mark.parametrize(
    ("guide", "module", "name"),
    [
        ("docs/ingest.md", "pophealth.ingest", "ingest_fhir"),
        ("docs/ingest.md", "pophealth.ingest", "ingest_omop"),
        ("docs/ingest.md", "pophealth.ingest", "ingest_csv"),
        ("docs/synth.md", "pophealth.synth", "generate"),
        ("docs/synth.md", "pophealth.synth", "write_synthetic_store"),
    ],
)
def test_the_python_signatures_the_guides_give_are_the_functions(guide, module, name):
    import ast
    import importlib
    import inspect

    text = doc(guide).replace("`", "\n")  # synth.md writes them inline, in backticks
    documented = _documented_signature(text, name)
    actual = inspect.signature(getattr(importlib.import_module(module), name)).parameters
    assert list(documented) == list(actual), name
    for param, value in documented.items():
        if value is not None:
            assert ast.literal_eval(value) == actual[param].default, (name, param)


# -- ingest: exit codes and where the quarantine report goes --------------------------------

PATIENTS_HEADER = "patient_id,date_of_birth,sex,ethnicity_5,ethnicity_16\n"


def _flat(folder: Path, rows: str) -> Path:
    folder.mkdir()
    (folder / "patients.csv").write_text(PATIENTS_HEADER + rows)
    return folder


def test_ingest_exit_codes_are_the_guides(tmp_path):
    """docs/ingest.md, "Exit codes": 0 when anything loaded; 1 when nothing loaded; 3 with
    --strict when anything was quarantined (nothing committed, the report beside the new
    store as STORE-quarantine/); 2 for usage errors and for a file of NHS numbers."""
    good = "p1,1980-01-01,female,unknown,Z\n"
    bad = "p2,notadate,male,unknown,Z\n"

    flat = _flat(tmp_path / "mixed", good + bad)
    code, said = invoke("ingest", "csv", flat, "--out", tmp_path / "strict", "--strict")
    assert code == 3, said
    assert not (tmp_path / "strict" / "CURRENT").exists()
    reports = sorted((tmp_path / "strict-quarantine").glob("*.csv"))
    assert len(reports) == 1
    assert pd.read_csv(reports[0]).columns.tolist() == [
        "run", "table", "record_type", "file", "location",
        "record_id", "field", "value", "reason", "record",
    ]  # fmt: skip
    assert list((tmp_path / "strict-quarantine").glob("*.summary.json"))

    code, said = invoke("ingest", "csv", flat, "--out", tmp_path / "store")
    assert code == 0, said
    assert (tmp_path / "store" / "CURRENT").is_file()
    assert len(list((tmp_path / "store" / "quarantine").glob("*.csv"))) == 1

    empty = _flat(tmp_path / "empty", "")
    code, said = invoke("ingest", "csv", empty, "--out", tmp_path / "nothing")
    assert code == 1, said

    nhs = _flat(tmp_path / "nhs", "9434765919,1980-01-01,female,unknown,Z\n")
    code, said = invoke("ingest", "csv", nhs, "--out", tmp_path / "refused")
    assert code == 2 and "--patient-ids nhs-number" in said, said
    code, said = invoke("ingest", "csv", tmp_path / "no-such", "--out", tmp_path / "x")
    assert code == 2, said
    short = tmp_path / "no-ethnicity"
    short.mkdir()
    (short / "patients.csv").write_text("patient_id,date_of_birth,sex\np1,1980-01-01,female\n")
    code, said = invoke("ingest", "csv", short, "--out", tmp_path / "y")
    assert code == 2 and "patients.csv" in said and "ethnicity_5" in said, said
    assert not (tmp_path / "y" / "CURRENT").exists()
