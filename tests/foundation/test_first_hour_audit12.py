"""A new analyst's first hour with pophealth (audit 12): the README's command table against
the commands themselves, a failed command saying one line, the asthma tools as a user
meets them, figures quoted in the reference-data guide, and the report in a real browser
(when one is installed)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from pophealth.cli import app

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result, " ".join(result.output.replace("│", " ").split())


def pophealth(*args, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The command as a user runs it: its own process, stderr not a terminal (a log)."""
    return subprocess.run(
        [sys.executable, "-m", "pophealth", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


def cli_commands() -> dict[str, object]:
    """Every command the CLI has, by its full name ("demo", "ingest fhir", ...)."""
    found: dict[str, object] = {}

    def walk(group, prefix: str) -> None:
        for name, command in group.commands.items():
            if hasattr(command, "commands"):
                walk(command, f"{prefix}{name} ")
            else:
                found[f"{prefix}{name}"] = command

    walk(typer.main.get_command(app), "")
    return found


def options(command) -> set[str]:
    return {
        opt
        for param in command.params
        for opt in (*param.opts, *param.secondary_opts)
        if opt.startswith("--")
    }


def readme_rows() -> dict[str, tuple[str, str]]:
    """The README's command table: command name -> (synopsis, whole row)."""
    names = sorted(cli_commands(), key=len, reverse=True)
    rows = {}
    for line in (REPO / "README.md").read_text().splitlines():
        match = re.match(r"\| `pophealth ([^`]*)`", line)
        if not match:
            continue
        synopsis = match.group(1)
        name = next((n for n in names if synopsis == n or synopsis.startswith(n + " ")), None)
        assert name, f"README names a command the CLI does not have: {synopsis!r}"
        rows[name] = (synopsis, line)
    return rows


@pytest.fixture(scope="module")
def synth_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("first-hour") / "store"
    result, said = invoke("synth", "--patients", "300", "--out", path)
    assert result.exit_code == 0, said
    return path, result.output


@pytest.fixture(scope="module")
def store(synth_run) -> Path:
    return synth_run[0]


# -- the README's table is the CLI --------------------------------------------------------


def test_readme_table_and_the_cli_name_the_same_commands():
    assert set(readme_rows()) == set(cli_commands())


def test_every_option_the_readme_names_exists():
    commands = cli_commands()
    for name, (_, row) in readme_rows().items():
        named = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", row))
        assert named <= options(commands[name]), (name, named - options(commands[name]))


def test_a_readme_synopsis_with_optional_options_lists_them_all():
    """A row that shows optional options (`[--seed S]`) shows every one: the demo's row left
    out --engine, so a user reading the table could not know the demo runs on Spark too."""
    commands = cli_commands()
    checked = 0
    for name, (synopsis, _) in readme_rows().items():
        if "[--" not in synopsis:
            continue
        checked += 1
        shown = set(re.findall(r"--[a-z][a-z-]*", synopsis))
        missing = options(commands[name]) - shown - {"--help"}
        assert not missing, f"README row for `pophealth {name}` leaves out {sorted(missing)}"
    assert checked >= 3  # demo, reference build, run


def test_help_reads_as_wrapped_paragraphs_on_an_80_column_terminal():
    """Typer kept the line breaks of a docstring's later paragraphs, so on the usual 80
    columns `pophealth run --help` read "counts of 1-7 withheld," / "others rounded ..." with
    a word or two stranded on lines of their own. Every command's description is now
    wrapped by the terminal: only a paragraph's last line may be short."""
    for name in cli_commands():
        result = runner.invoke(
            app, [*name.split(), "--help"], env={"COLUMNS": "80"}, terminal_width=80
        )
        assert result.exit_code == 0, name
        text = result.output.split("╭")[0]  # the description, above the option boxes
        lines = [line.rstrip() for line in text.splitlines()][3:]  # after "Usage: ..."
        for line, following in zip(lines, lines[1:], strict=False):
            if line.strip() and following.strip():  # not the last line of its paragraph
                assert len(line) >= 60, (name, line, following)


def test_help_reflow_keeps_paragraphs_and_click_markers():
    from pophealth.cli import _reflow

    text = "First line\n  goes on.\n\nSecond\nparagraph.\n\n\b\nkept\n  as written\n\fnot shown"
    assert _reflow(text) == "First line goes on.\n\nSecond paragraph.\n\n\b\nkept\n  as written"
    assert _reflow(None) is None


# -- a failed command says one line ---------------------------------------------------------


def test_a_successful_command_keeps_its_progress_bar(synth_run):
    _, output = synth_run
    assert "generating 300 patients" in output and "100%" in output


def test_a_failed_ingest_says_one_line_and_no_stopped_progress_bar(tmp_path):
    """The bar an ingest starts was left in the log, stopped at 0%, above the error."""
    proc = pophealth("ingest", "csv", tmp_path / "no-such-folder", "--out", tmp_path / "s")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'no-such-folder'} is not a directory"
    ]
    assert not (tmp_path / "s").exists()


def test_a_reference_build_on_a_short_file_says_one_line(tmp_path):
    """A reference folder whose IoD2019 File 1 is cut short: the error names the file, row
    and column, and is the only thing printed (no 'reading File_1… 2%' bar above it)."""
    folder = tmp_path / "reference" / "imd2019"
    folder.mkdir(parents=True)
    (folder / "File_1_-_IMD2019_Index_of_Multiple_Deprivation.csv").write_text(
        "LSOA code (2011),LSOA name (2011),Local Authority District code (2019),"
        "Local Authority District name (2019),Index of Multiple Deprivation (IMD) Rank,"
        "Index of Multiple Deprivation (IMD) Decile\n"
        'E01000001,Somewhere 001A,E09000001,Somewhere,"29,199",9\n'
        "E01000002,Somewhere 001B,E09000001,Somewhere,3000,1\n"
    )
    proc = pophealth(
        "reference", "build", "--from", tmp_path / "reference", "--out", tmp_path / "s"
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ") and "File_1_-_IMD2019" in lines[0]
    assert "truncated" in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "s").exists()


# -- the asthma tools ------------------------------------------------------------------------


def test_asthma_alone_shows_its_commands_like_ingest_and_reference_do():
    for group in ("asthma", "ingest", "reference"):
        result, said = invoke(group)
        assert "Missing command" not in said, (group, said)
        assert "Commands" in said, (group, said)
    assert "pollution-episode" in invoke("asthma")[1]


def test_pollution_episode_names_a_missing_or_folder_areas_file(tmp_path, store):
    missing = tmp_path / "forecast.csv"
    result, said = invoke(
        "asthma",
        "pollution-episode",
        "--store",
        store,
        "--areas",
        missing,
        "--out",
        tmp_path / "o.csv",
    )
    assert result.exit_code == 2
    assert f"--areas {missing}: no such file" in said and "Errno" not in said, said
    result, said = invoke(
        "asthma",
        "pollution-episode",
        "--store",
        store,
        "--areas",
        tmp_path,
        "--out",
        tmp_path / "o.csv",
    )
    assert result.exit_code == 2
    assert f"--areas {tmp_path} is a folder" in said and "Errno" not in said, said
    assert not (tmp_path / "o.csv").exists()


def test_pollution_episode_help_names_the_columns_it_writes(tmp_path, store):
    """The --areas help said a forecast's other columns ("e.g. date") are kept; the list
    carries none of them. The help now lists the columns written, and they are the file's."""
    from pophealth.store import Store

    codes = Store.open(store).read("areas").column("lsoa_code").to_pylist()[:40]
    forecast = tmp_path / "forecast.csv"
    forecast.write_text("code,date\n" + "".join(f"{c},2026-04-01\n" for c in codes))
    out = tmp_path / "episode.csv"
    result, said = invoke(
        "asthma", "pollution-episode", "--store", store, "--areas", forecast, "--out", out
    )
    assert result.exit_code == 0, said
    written = out.read_text().splitlines()[0].replace('"', "").split(",")
    help_text = invoke("asthma", "pollution-episode", "--help")[1]
    listed = re.search(r"One row per patient, [^:]*: ([a-z_, ]+)\.", help_text)
    assert listed, help_text
    assert listed.group(1).split(", ") == written
    if "date" not in written:
        assert "are kept" not in help_text


def closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("timeout", ["0", "-5", "nan"])
def test_reference_download_refuses_a_timeout_that_is_not_positive(tmp_path, timeout):
    """--timeout 0 made every file fail with "[Errno 115] Operation now in progress", a
    negative one with "Timeout value out of range", after the folders were made."""
    mirror = f"http://127.0.0.1:{closed_port()}/"
    result, said = invoke(
        "reference", "download", "--to", tmp_path / "d", "--only", "imd2019_file1",
        "--base-url", mirror, "--timeout", timeout,
    )  # fmt: skip
    assert result.exit_code == 2, said
    assert f"--timeout must be a positive number of seconds, not {timeout}" in said, said
    assert not (tmp_path / "d").exists()


def test_reference_download_from_an_unreachable_mirror_names_the_mirror(tmp_path):
    """With --base-url, a mirror that refuses the connection was reported as "the
    publishers could not be reached (no network connection?)"."""
    mirror = f"http://127.0.0.1:{closed_port()}/"
    result, said = invoke(
        "reference", "download", "--to", tmp_path / "d", "--only", "imd2019_file1",
        "--base-url", mirror, "--timeout", "5",
    )  # fmt: skip
    assert result.exit_code == 1, said
    assert f"the mirror {mirror} could not be reached" in said, said
    assert "publishers" not in said and "Traceback" not in said


def test_reference_download_says_how_many_files_publishers_serve():
    """README said `reference download` fetches "the official files from their publishers";
    publishers serve only some directly, so a user got a partial folder and a build
    without air quality, fuel poverty, population or geography. The README row and the
    command's help now give the number, which is the catalogue's."""
    from pophealth.reference.sources import SOURCES

    direct = sum(1 for source in SOURCES if source.url)
    help_text = invoke("reference", "download", "--help")[1]
    assert f"Publishers serve {direct} of the files directly" in help_text, help_text
    _, row = readme_rows()["reference download"]
    assert f"the {direct} their publishers serve directly" in row and "--base-url" in row


# -- figures the reference-data guide quotes ---------------------------------------------------


def test_reference_guide_geography_figures_are_the_official_lookups(shared_data):
    """docs/reference-data.md, "Honest gaps": how many LSOAs of an IoD2019 build carry 2022
    codes that ONS has since replaced. The build takes sub-ICB, ICB and LAD from the 2022
    LSOA 2011 lookup (`lsoa11_subicb`); 2024's codes are those of the LSOA 2021 lookups.
    The guide said 1,025 and 1,121; the files give 1,021 and 1,119."""
    from pophealth.reference import loaders
    from pophealth.reference.sources import BY_KEY

    def load(key, loader):
        return loader(BY_KEY[key].find(shared_data))

    lsoa11 = load("lsoa11_subicb", loaders.load_lsoa11_subicb)
    lad24 = set(load("lsoa21_lad", loaders.load_lsoa21_lad)["lad_code"])
    subicb24 = load("lsoa21_subicb", loaders.load_lsoa21_subicb)
    gone_lad = ~lsoa11["lad_code"].isin(lad24)
    gone_sub = ~lsoa11["sub_icb_ons"].isin(set(subicb24["sub_icb_ons"]))
    gone_icb = ~lsoa11["icb_ons"].isin(set(subicb24["icb_ons"]))

    guide = " ".join((REPO / "docs" / "reference-data.md").read_text().split())

    def quoted(pattern: str) -> int:
        match = re.search(pattern, guide)
        assert match, pattern
        return int(match.group(1).replace(",", ""))

    assert quoted(r"([\d,]+) LSOAs carry LAD 2022 codes of districts abolished") == gone_lad.sum()
    assert quoted(r"([\d,]+) the 2022 sub-ICB codes") == gone_sub.sum()
    assert quoted(r"([\d,]+) the 2022 ICB codes") == gone_icb.sum()
    named = re.search(r"2022 sub-ICB codes \(([^)]*)\).*?2022 ICB codes \(([^)]*)\)", guide)
    assert set(named.group(1).split(", ")) == set(lsoa11.loc[gone_sub, "sub_icb_ons"])
    assert set(named.group(2).split(", ")) == set(lsoa11.loc[gone_icb, "icb_ons"])


# -- the report in a real browser ---------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH (Debian: apt-get install chromium)"
)
def test_report_renders_offline_in_chromium(tmp_path, store):
    """report.html opened in headless Chromium with every host name unresolvable: every
    chart is drawn (its scripts are in the page), the page logs nothing to the console, and
    it asks for nothing from any host the page itself names (Plotly's bundle names CDNs
    for map tiles, fonts and topojson it must not need)."""
    out = tmp_path / "out"
    result, said = invoke("run", "population", "--store", store, "--out", out)
    assert result.exit_code == 0, said
    report = out / "report.html"
    page = report.read_text()
    proc = subprocess.run(
        [
            CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
            "--host-resolver-rules=MAP * ~NOTFOUND", "--enable-logging=stderr", "--v=1",
            "--virtual-time-budget=10000", "--window-size=1280,2000", "--dump-dom",
            report.resolve().as_uri(),
        ],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    charts = page.count('class="plotly-graph-div"')
    assert charts >= 1
    assert dom.count("plot-container") >= charts, "a chart was not drawn"
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console
    named = set(re.findall(r"https?://([A-Za-z0-9.-]+)", page))
    asked = set(re.findall(r"NotifyBeforeURLRequest: https?://([A-Za-z0-9.-]+)", proc.stderr))
    assert not asked & named, sorted(asked & named)
