"""The demo's report page: every number in its charts and their "Show the data" tables is a
released count or derived from released counts, and in a real browser each table sits under
its chart, folded on screen and open on paper (print media), with nothing read from the
network.

Headless Debian Chromium is driven over its DevTools pipe (``--remote-debugging-pipe``: JSON
messages ending in a NUL byte on file descriptors 3 and 4), so no driver package or browser
download is needed."""

from __future__ import annotations

import base64
import html
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
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
def report(demo_run) -> Path:
    """The report of tests/conftest.py's ``demo_run`` (1,500 patients)."""
    return demo_run.out / "report.html"


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


@needs_chromium
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


# -- every number shown is a released one ---------------------------------------------------------


def _numbers(value) -> np.ndarray:
    """The numbers of a plotly attribute as the page holds it (a list, or base64 ``bdata``)."""
    if isinstance(value, dict) and "bdata" in value:
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"]).astype(float)
    flat = np.asarray(value, dtype=object).ravel()
    return np.array([float(v) for v in flat if isinstance(v, int | float)], dtype=float)


def _released(counts: np.ndarray) -> bool:
    """Counts as the demo's policy releases them: 0, or rounded to 5 (so never 1-7)."""
    counts = counts[np.isfinite(counts)]
    return bool(((counts == 0) | ((counts % 5 == 0) & (counts >= 10))).all())


#: the headers of count columns in the demo's chart tables (SPC, equity, funnel, BP groups,
#: age-sex pyramid)
COUNT_HEADER = re.compile(r"^(numerator|denominator|patients|registered patients)\b", re.I)


def test_every_count_in_the_charts_and_their_tables_is_a_released_one(report):
    """The numbers a chart carries for its hover text (customdata) and the counts in every
    "Show the data" table are released counts (the disclosure rule: 1-7 withheld, others
    rounded to 5); values derived from them are checked where they are made (test_charts)."""
    page = report.read_text()
    decoder = json.JSONDecoder()
    figures = 0
    for match in re.finditer(r'Plotly\.newPlot\(\s*"[^"]+",\s*', page):
        traces, _ = decoder.raw_decode(page, match.end())
        figures += 1
        for trace in traces:
            if "customdata" in trace:
                numbers = _numbers(trace["customdata"])
                assert _released(numbers), (trace.get("name"), numbers)
    assert figures >= 10
    tables = re.findall(r"<details class='chart-data'>(.*?)</details>", page, re.S)
    assert len(tables) == figures
    checked = 0
    for table in tables:
        heads = [html.unescape(h) for h in re.findall(r"<th scope='col'>(.*?)</th>", table)]
        for row in re.findall(r"<tr><th scope='row'>.*?</th>(.*?)</tr>", table):
            cells = re.findall(r"<td>(.*?)</td>", row)
            for head, cell in zip(heads[1:], cells, strict=True):
                assert "nan" not in cell.lower(), (head, cell)
                if COUNT_HEADER.search(head) and cell != "[c]":
                    assert _released(np.array([float(cell.replace(",", ""))])), (head, cell)
                    checked += 1
    assert checked > 100  # the SPC, equity and funnel tables carry counts
