"""`reference download` against a local HTTP server on 127.0.0.1 serving copies of
../shared/data files (no other address is ever contacted): checksums, atomic writes,
cut connections, corrupt files, zip members, and the CLI commands."""

from __future__ import annotations

import hashlib
import http.server
import io
import shutil
import threading
import zipfile
from functools import partial
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pophealth.cli import app
from pophealth.reference import download as dl
from pophealth.reference.sources import source
from tests.reference.conftest import real

SMALL = ["esp2013", "subicb_icb"]  # small real files (355 B, 19 kB)
runner = CliRunner()


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves ``directory``; ``/cut/...`` claims more bytes than it sends, then closes."""

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):  # noqa: N802
        if self.path.startswith("/cut/"):
            body = b"E01000001,partial"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body) + 1000))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()


@pytest.fixture
def mirror(tmp_path):
    """A served folder on 127.0.0.1 (an ephemeral port); yields (root, base_url)."""
    root = tmp_path / "mirror"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(_Handler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _copy(shared_data: Path, root: Path, key: str) -> Path:
    src = real(shared_data, key)
    target = root / source(key).path
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, target)
    return target


def _leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.startswith(".") or p.suffix == ".part"]


@pytest.mark.shared_data
def test_download_from_mirror_verifies_checksums(shared_data, mirror, tmp_path):
    root, base = mirror
    for key in SMALL:
        _copy(shared_data, root, key)
    out = tmp_path / "out"
    results = dl.download(out, base_url=base, keys=SMALL)
    assert [r.status for r in results] == ["downloaded", "downloaded"]
    for key in SMALL:
        got = out / source(key).path
        assert got.read_bytes() == real(shared_data, key).read_bytes()
        assert hashlib.sha256(got.read_bytes()).hexdigest() == source(key).sha256
    again = dl.download(out, base_url=base, keys=SMALL)
    assert [r.status for r in again] == ["present", "present"]  # not fetched twice
    assert _leftovers(out) == []


@pytest.mark.shared_data
def test_corrupt_file_is_refused_and_old_copy_kept(shared_data, mirror, tmp_path):
    root, base = mirror
    served = _copy(shared_data, root, "esp2013")
    served.write_bytes(served.read_bytes().replace(b"5500", b"5501", 1))
    out = tmp_path / "out"
    target = out / source("esp2013").path
    target.parent.mkdir(parents=True)
    target.write_text("previous copy\n")
    (result,) = dl.download(out, base_url=base, keys=["esp2013"])
    assert result.status == "failed" and "does not match the expected" in result.message
    assert target.read_text() == "previous copy\n"  # untouched
    assert _leftovers(out) == []


def test_cut_connection_leaves_no_partial_file(mirror, tmp_path):
    _, base = mirror
    target = tmp_path / "out" / "file.csv"
    with pytest.raises(dl.DownloadError):
        dl.fetch(f"{base}/cut/file.csv", target, timeout=10)
    assert not target.exists()
    assert _leftovers(tmp_path / "out") == []


def test_http_error_and_missing_file(mirror, tmp_path):
    _, base = mirror
    with pytest.raises(dl.DownloadError, match="HTTP 404"):
        dl.fetch(f"{base}/nope.csv", tmp_path / "x.csv", timeout=10)
    assert not (tmp_path / "x.csv").exists()


def test_html_page_instead_of_a_workbook_is_refused(mirror, tmp_path):
    root, base = mirror
    (root / "File_1.xlsx").write_text("<!DOCTYPE html><html>moved</html>")
    (root / "page.csv").write_text("<html><body>Not found</body></html>")
    for name in ("File_1.xlsx", "page.csv"):
        with pytest.raises(dl.DownloadError, match="the response is"):
            dl.fetch(f"{base}/{name}", tmp_path / name, timeout=10)
        assert not (tmp_path / name).exists()
    assert _leftovers(tmp_path) == []


def test_zip_member_is_extracted(mirror, tmp_path):
    root, base = mirror
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("census2021-ts021-lsoa.csv", "a,b\n1,2\n")
        zf.writestr("census2021-ts021-msoa.csv", "other\n")
    (root / "bulk.zip").write_bytes(buf.getvalue())
    target = tmp_path / "population" / "census2021-ts021-lsoa.csv"
    digest, size = dl.fetch(
        f"{base}/bulk.zip", target, member="census2021-ts021-lsoa.csv", timeout=10
    )
    assert target.read_text() == "a,b\n1,2\n" and size == 8
    assert digest == hashlib.sha256(b"a,b\n1,2\n").hexdigest()
    with pytest.raises(dl.DownloadError, match="not a zip holding"):
        dl.fetch(f"{base}/bulk.zip", tmp_path / "y.csv", member="missing.csv", timeout=10)
    assert not (tmp_path / "y.csv").exists() and _leftovers(tmp_path) == []


def test_publisher_mode_skips_files_without_a_direct_url(tmp_path):
    # only sources without a URL: nothing is fetched, so no network is touched
    no_url = [s.key for s in dl.SOURCES if s.url is None][:3]
    results = dl.download(tmp_path / "out", keys=no_url)
    assert [r.status for r in results] == ["skipped"] * 3
    assert all("landing" not in r.message and "http" in r.message for r in results)
    with pytest.raises(KeyError, match="nonsense"):
        dl.download(tmp_path, keys=["nonsense"])


def test_publisher_urls_are_https_and_differ_from_the_layout_when_formats_differ():
    for s in dl.SOURCES:
        if s.url:
            assert s.url.startswith("https://")
            if s.url.endswith(".xlsx") and s.path.endswith(".csv"):
                assert s.url_path and s.url_path.endswith(".xlsx")


@pytest.mark.shared_data
def test_cli_download_and_build(shared_data, mirror, tmp_path):
    root, base = mirror
    for key in ["imd2019_file2", "esp2013"]:
        _copy(shared_data, root, key)
    out = tmp_path / "ref"
    res = runner.invoke(
        app,
        ["reference", "download", "--to", str(out), "--base-url", base,
         "--only", "imd2019_file2", "--only", "esp2013"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert (out / source("imd2019_file2").path).is_file()
    store = str(tmp_path / "s")
    res = runner.invoke(app, ["reference", "build", "--from", str(out), "--out", store])
    assert res.exit_code == 0, res.output
    assert "32,844 LSOAs (IoD2019, LSOA 2011)" in res.output
    assert "warning:" in res.output  # optional files missing are listed, not fatal


def test_cli_errors(tmp_path):
    res = runner.invoke(app, ["reference", "build", "--from", str(tmp_path), "--out",
                              str(tmp_path / "s"), "--imd", "2020"])  # fmt: skip
    assert res.exit_code == 2 and "--imd must be one of 2019, 2025" in res.output
    res = runner.invoke(app, ["reference", "build", "--from", str(tmp_path / "none"), "--out",
                              str(tmp_path / "s")])  # fmt: skip
    assert res.exit_code == 2 and "no such folder" in res.output
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "file.txt").write_text("x")
    res = runner.invoke(app, ["reference", "build", "--from", str(tmp_path), "--out",
                              str(tmp_path / "junk")])  # fmt: skip
    assert res.exit_code == 2 and "not a pophealth store" in res.output
    res = runner.invoke(app, ["reference", "download", "--to", str(tmp_path / "d"),
                              "--base-url", "ftp://x"])  # fmt: skip
    assert res.exit_code == 2 and "--base-url must be an http(s) URL" in res.output
    res = runner.invoke(app, ["reference", "download", "--to", str(tmp_path / "d"),
                              "--only", "nonsense"])  # fmt: skip
    assert res.exit_code == 2 and "unknown source" in res.output


def test_cli_download_failure_exit_code(mirror, tmp_path):
    _, base = mirror  # the mirror is empty: every fetch is a 404
    res = runner.invoke(app, ["reference", "download", "--to", str(tmp_path / "d"),
                              "--base-url", base, "--only", "esp2013"])  # fmt: skip
    assert res.exit_code == 1 and "failed" in res.output
    assert not (tmp_path / "d" / source("esp2013").path).exists()
