"""The report's "Show the data" tables in a real browser: present under every chart of a demo
run, folded on screen and open on paper (print media), with nothing read from the network.

Headless Debian Chromium is driven over its DevTools pipe (``--remote-debugging-pipe``: JSON
messages ending in a NUL byte on file descriptors 3 and 4), so no driver package or browser
download is needed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pophealth.cli import app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH (Debian: apt-get install chromium)"
)


class Browser:
    """One headless Chromium page, spoken to over the DevTools pipe."""

    def __init__(self) -> None:
        to_browser, self._write = os.pipe()
        self._read, from_browser = os.pipe()

        def on_3_and_4() -> None:  # in the child: the pipe ends where Chromium expects them
            a, b = os.dup2(to_browser, 100), os.dup2(from_browser, 101)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self._proc = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
             "--remote-debugging-pipe", "--host-resolver-rules=MAP * ~NOTFOUND", "about:blank"],
            preexec_fn=on_3_and_4, close_fds=False,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        os.close(to_browser)
        os.close(from_browser)
        self._buffer = b""
        self._next = 0
        self.session: str | None = None
        self.events: list[dict] = []

    def send(self, method: str, **params) -> dict:
        self._next += 1
        message = {"id": self._next, "method": method, "params": params}
        if self.session and not method.startswith("Target."):
            message["sessionId"] = self.session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self._buffer:
                chunk = os.read(self._read, 1 << 16)
                if not chunk:
                    raise RuntimeError("chromium closed its DevTools pipe")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def open(self, url: str, timeout: float = 90) -> None:
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        self.send("Network.enable")
        self.send("Runtime.enable")
        self.send("Page.navigate", url=url)
        deadline = time.monotonic() + timeout
        while not self.value("location.protocol === 'file:' && document.readyState === 'complete'"):
            assert time.monotonic() < deadline, "the report did not load"
            time.sleep(0.1)

    def value(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def close(self) -> None:
        self._proc.kill()
        self._proc.wait()
        os.close(self._write)
        os.close(self._read)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("chart-tables") / "demo"
    result = CliRunner().invoke(app, ["demo", "--patients", "2000", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out / "report.html"


@pytest.fixture
def browser():
    b = Browser()
    yield b
    b.close()


SEEN = """(() => {
  const figures = [...document.querySelectorAll('figure')];
  const tables = figures.map(f => f.querySelector(':scope > details.chart-data table'));
  return {
    figures: figures.length,
    charts: document.querySelectorAll('.plotly-graph-div').length,
    tables: tables.filter(Boolean).length,
    cells: tables.filter(Boolean).map(t => t.querySelectorAll('tbody td').length),
    shown: tables.filter(t => t && t.querySelector('tbody th').checkVisibility()).length,
    open: document.querySelectorAll('details.chart-data[open]').length,
    nan: tables.some(t => t && /\\bnan\\b/i.test(t.textContent)),
  };
})()"""


def test_every_chart_has_its_table_folded_on_screen_and_open_on_paper(report, browser):
    browser.open(report.resolve().as_uri())
    browser.send("Emulation.setEmulatedMedia", media="screen")
    screen = browser.value(SEEN)
    assert screen["figures"] == screen["charts"] == screen["tables"] >= 10
    assert min(screen["cells"]) > 0 and not screen["nan"]
    assert screen["shown"] == 0 and screen["open"] == 0  # folded under "Show the data"
    browser.send("Emulation.setEmulatedMedia", media="print")
    paper = browser.value(SEEN)
    assert paper["shown"] == paper["tables"]  # every table printed, none left folded
    # a browser without ::details-content opens them itself before printing, and closes
    # them after
    browser.send("Emulation.setEmulatedMedia", media="screen")
    browser.value("dispatchEvent(new Event('beforeprint'))")
    assert browser.value(SEEN)["open"] == screen["tables"]
    browser.value("dispatchEvent(new Event('afterprint'))")
    assert browser.value(SEEN)["open"] == 0
    # offline: the page asked no host for anything, and logged no error
    asked = [
        e["params"]["request"]["url"]
        for e in browser.events
        if e.get("method") == "Network.requestWillBeSent"
    ]
    assert report.resolve().as_uri() in asked  # the requests were watched
    assert all(u.startswith(("file:", "data:", "blob:", "about:")) for u in asked), asked
    errors = [
        e for e in browser.events
        if e.get("method") == "Runtime.exceptionThrown"
        or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] == "error")
    ]  # fmt: skip
    assert errors == []
