"""Outputs of a run: CSV files by audience and a self-contained HTML report.

The HTML report carries plotly.js inline, so it opens offline (no network, no
CDN). It shows aggregate outputs only — every one of which has passed the
disclosure-control rule; patient-level worklists go to a separate folder for the
care team and are only counted in the report.
"""

from __future__ import annotations

import datetime as dt
import html
import math
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from pophealth import __version__
from pophealth.disclosure import DEFAULT_POLICY
from pophealth.programmes import Output, ProgrammeResult

AGGREGATE_DIR = "aggregate"
PATIENT_DIR = "patient-level"

PATIENT_README = """\
PATIENT-LEVEL OUTPUTS — FOR THE DIRECT CARE TEAM ONLY

These files list pseudonymous patients for proactive review. They are not
disclosure-controlled and must not be shared outside the care team, published,
or attached to the aggregate report. Re-identification is done only inside the
practice's clinical system.
"""


def write_outputs(result: ProgrammeResult, out: Path) -> dict[str, list[Path]]:
    """Write a programme's tables as CSV: aggregates and patient lists in separate folders.

    The programme's folders (``aggregate/<programme>/``, ``patient-level/<programme>/``)
    then hold this run's tables only: a CSV an earlier run wrote there and this one did not
    (a worklist of a PCN that now has nobody listed, say) is removed once every table is
    written, so an old list cannot pass for a current one."""
    written: dict[str, list[Path]] = {"aggregate": [], "patient": []}
    for output in result.outputs:
        folder = out / (AGGREGATE_DIR if output.kind == "aggregate" else PATIENT_DIR)
        folder = folder / result.programme
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{output.name}.csv"
        # a temporary name of this process, removed if the write fails
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            _whole_as_integers(output.frame).to_csv(tmp, index=False)
            tmp.replace(path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        written[output.kind].append(path)
    kept = {p.resolve() for paths in written.values() for p in paths}
    for folder in (out / AGGREGATE_DIR / result.programme, out / PATIENT_DIR / result.programme):
        if folder.is_dir():
            for stale in folder.glob("*.csv"):
                if stale.resolve() not in kept:
                    stale.unlink()
    if written["patient"]:
        (out / PATIENT_DIR / "README.txt").write_text(PATIENT_README)
    return written


def _whole_as_integers(frame: pd.DataFrame) -> pd.DataFrame:
    """Float columns holding only whole numbers (released counts are floats, as a withheld
    count is missing) written as integers: "85", not "85.0"; missing stays empty."""
    out = frame.copy()
    for col in out.columns:
        values = out[col]
        if pd.api.types.is_float_dtype(values):
            finite = values.dropna()
            if (
                len(finite)
                and bool((finite == finite.round()).all())
                and finite.abs().max() < 2**53
            ):
                out[col] = values.astype("Int64")
    return out


def _table_html(output: Output, max_rows: int = 60) -> str:
    frame = output.frame
    shown = _formatted(frame.head(max_rows))
    body = shown.to_html(index=False, border=0, classes="data")
    more = (
        f"<p class='more'>First {max_rows} of {len(frame):,} rows; all rows in the CSV.</p>"
        if len(frame) > max_rows
        else ""
    )
    note = (
        f"<p class='disclosure'>Disclosure control: "
        f"{html.escape(output.disclosure.rstrip('. '))}. <code>[c]</code> = suppressed.</p>"
        if output.disclosure
        else ""
    )
    return (
        f"<h4>{html.escape(output.name)}</h4><p>{html.escape(output.description)}</p>"
        f"{note}<div class='scroll'>{body}</div>{more}"
    )


def _format_number(value: float, whole: bool, separators: bool = True) -> str:
    if pd.isna(value):
        return "[c]"
    sep = "," if separators else ""
    if whole:
        return f"{value:{sep}.0f}"
    if value != 0 and abs(value) < 0.01:  # a small p-value or rate: 2 significant figures
        decimals = 1 - math.floor(math.log10(abs(value)))
        return f"{value:.{decimals}f}"
    return f"{value:{sep}.2f}"


def _formatted(frame: pd.DataFrame) -> pd.DataFrame:
    """Numbers as a reader expects them: whole counts with thousands separators (none in a
    year), other values to 2 decimals (below 0.01, 2 significant figures), never in
    exponent form; missing numbers shown as [c] (suppressed), missing text blank."""
    out = frame.copy()
    for col in out.columns:
        values = out[col]
        if pd.api.types.is_bool_dtype(values):
            continue
        if pd.api.types.is_numeric_dtype(values):
            finite = values.dropna()
            whole = bool(len(finite)) and bool((finite == finite.round()).all())
            separators = "year" not in str(col).lower()
            out[col] = [_format_number(v, whole, separators) for v in values]
        else:
            out[col] = values.astype(object).where(values.notna(), "")
    return out


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Arial,sans-serif;margin:0;color:#212b32;
background:#f0f4f5}
header{background:#005eb8;color:#fff;padding:1.2rem 2rem}
header h1{margin:0;font-size:1.6rem} header p{margin:.3rem 0 0}
main{max-width:1200px;margin:0 auto;padding:1rem 2rem}
section{background:#fff;margin:1rem 0;padding:1rem 1.5rem;border-radius:4px}
h2{color:#005eb8;border-bottom:2px solid #e8edee;padding-bottom:.3rem}
table.data{border-collapse:collapse;font-size:.85rem}
table.data th,table.data td{padding:.25rem .6rem;border-bottom:1px solid #e8edee;text-align:right;
white-space:nowrap}
table.data th{background:#e8edee}
.scroll{overflow-x:auto}
figure{margin:0 0 1rem}.more,.disclosure,.caption{color:#4c6272;font-size:.85rem}
.kpis{display:flex;gap:1rem;flex-wrap:wrap}.kpi{background:#e8edee;padding:.6rem 1rem;
border-radius:4px}.kpi b{display:block;font-size:1.4rem}
.notes li{color:#4c6272;font-size:.9rem} footer{color:#4c6272;font-size:.8rem;padding:1rem 2rem}
nav a{margin-right:1rem}
"""


def render_html(
    results: Sequence[ProgrammeResult],
    *,
    title: str,
    subtitle: str = "",
    files: dict[str, list[Path]] | None = None,
    out: Path | None = None,
) -> str:
    """A self-contained HTML report of programme results (plotly.js inlined)."""
    from plotly.offline import get_plotlyjs

    parts: list[str] = []
    nav = []
    for result in results:
        anchor = f"prog-{result.programme}"
        nav.append(f"<a href='#{anchor}'>{html.escape(result.title)}</a>")
        block = [f"<h2 id='{anchor}'>{html.escape(result.title)}</h2>"]
        block.append(
            f"<p class='caption'>Index date {result.index_date.isoformat()} · engine "
            f"{html.escape(result.engine)}</p>"
        )
        if result.headline:
            kpis = "".join(
                f"<div class='kpi'>{html.escape(str(k))}<b>{html.escape(str(v))}</b></div>"
                for k, v in result.headline.items()
            )
            block.append(f"<div class='kpis'>{kpis}</div>")
        for section in result.sections:
            block.append(f"<h3>{html.escape(section.title)}</h3>")
            if section.text:
                block.append(f"<p>{html.escape(section.text)}</p>")
            for fig in section.figures:
                # a chart is a figure whose title and caption are its text alternative (a
                # screen reader reads them; the drawing itself says nothing to it)
                alt = html.escape(" ".join(filter(None, [fig.title + ".", fig.caption])))
                block.append(f"<figure role='group' aria-label='{alt}'>")
                block.append(f"<h4>{html.escape(fig.title)}</h4>")
                block.append(fig.figure.to_html(full_html=False, include_plotlyjs=False))
                if fig.caption:
                    block.append(
                        f"<figcaption class='caption'>{html.escape(fig.caption)}</figcaption>"
                    )
                block.append("</figure>")
            for table in section.tables:
                if table.kind != "aggregate":
                    raise ValueError(
                        f"{result.programme}: patient-level output {table.name!r} cannot "
                        "go into the report"
                    )
                block.append(_table_html(table))
            if section.notes:
                items = "".join(f"<li>{html.escape(n)}</li>" for n in section.notes)
                block.append(f"<ul class='notes'>{items}</ul>")
        patient = [o for o in result.outputs if o.kind == "patient"]
        if patient:
            # names only: a list's length is a count of patients, and the report is
            # aggregate-only (the care team sees the rows in the files themselves)
            items = "".join(
                f"<li>{html.escape(o.name)} — {html.escape(o.description)}</li>" for o in patient
            )
            block.append(
                "<h3>Patient-level worklists (care team only)</h3><p>Written to the "
                f"<code>{PATIENT_DIR}/{html.escape(result.programme)}</code> folder, not "
                f"shown here.</p><ul>{items}</ul>"
            )
        parts.append("<section>" + "\n".join(block) + "</section>")
    listing = ""
    if files and out is not None:
        rel = sorted(str(p.relative_to(out)) for paths in files.values() for p in paths)
        listing = (
            "<section><h2>Files</h2><ul>"
            + "".join(f"<li><code>{html.escape(r)}</code></li>" for r in rel)
            + "</ul></section>"
        )
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style>"
        f"<script>{get_plotlyjs()}</script></head><body>"
        f"<header><h1>{html.escape(title)}</h1><p>{html.escape(subtitle)}</p></header>"
        f"<main><nav>{''.join(nav)}</nav>{''.join(parts)}{listing}</main>"
        f"<footer>pophealth {__version__} · generated {generated} · every count is "
        f"disclosure-controlled unless stated ({html.escape(DEFAULT_POLICY.summary())}).</footer>"
        "</body></html>"
    )


def write_report(
    results: Sequence[ProgrammeResult], out: Path, *, title: str, subtitle: str = ""
) -> tuple[Path, dict[str, list[Path]]]:
    """Write every result's CSVs and one ``report.html`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, list[Path]] = {"aggregate": [], "patient": []}
    for result in results:
        for kind, paths in write_outputs(result, out).items():
            files[kind].extend(paths)
    page = render_html(results, title=title, subtitle=subtitle, files=files, out=out)
    path = out / "report.html"
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path, files
