"""``svmhpo report``: one self-contained HTML file of a study, readable offline.

plotly.js is embedded once in the page (no CDN; ``plotlyjs="cdn"`` links it instead, for a small
file), followed by what the study is (data, split, search space, dates), the results table and
every panel of :func:`svmhpo.view.plots.study_panels`. Panels that cannot be drawn (one trial,
all pruned, failed trials) are listed with the reason. The file is named after the study in a
file-safe form (or as ``--out`` names it), and every name in the page is escaped.
"""

from __future__ import annotations

import datetime
import html
from pathlib import Path

import optuna
import plotly.io as pio
from plotly.offline import get_plotlyjs, get_plotlyjs_version

from svmhpo.errors import OutputError
from svmhpo.files import ensure_folder, write_atomically
from svmhpo.hpo import records
from svmhpo.hpo.studies import count_trials
from svmhpo.view.plots import results_table_html, study_panels

__all__ = ["write_report"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; } td, th { border: 1px solid #ccc; padding: .3rem .6rem; }
.missing { color: #a33; } section { margin-bottom: 2rem; } .note { color: #555; max-width: 60rem; }
"""


def _about(study: optuna.Study) -> str:
    """What the study is: its data and split, search space, epochs, sampler and pruner, and dates."""
    config = records.stored_config(study) or {}
    data, search, training = config.get("data", {}), config.get("search", {}), config.get("training", {})
    trials = study.get_trials(deepcopy=False)
    started = min((t.datetime_start for t in trials if t.datetime_start), default=None)
    rows = [
        ("data", f"{data.get('source', '?')}, scaling {data.get('scaling', '?')}"),
        (
            "split",
            f"{1 - data.get('val_size', 0) - data.get('test_size', 0):.0%} train, {data.get('val_size', 0):.0%} "
            f"validation, {data.get('test_size', 0):.0%} test, stratified, seed {config.get('seed', '?')}",
        ),
        ("search space", "; ".join(f"{k} {v}" for k, v in search.items() if v)),
        (
            "training",
            f"{training.get('epochs', '?')} epochs, batch {training.get('batch_size', '?')}, "
            f"sampler {config.get('sampler', '?')}, pruner {config.get('pruner', '?')}",
        ),
        ("started", started.isoformat(sep=" ", timespec="seconds") if started else "-"),
        ("report written", datetime.datetime.now().isoformat(sep=" ", timespec="seconds")),
    ]
    cells = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f"<table>{cells}</table>"


def _generator(study: optuna.Study) -> str:
    """The page's generator tag: it marks a file as this study's report, which a new report may replace."""
    return f'<meta name="generator" content="svmhpo report of study {html.escape(study.study_name, quote=True)}">'


def report_path(study: optuna.Study, out: str | Path, *, force: bool = False) -> Path:
    """Where the report goes: ``out`` itself when it ends in ``.html``, else ``<out>/<study, file-safe>.html``.

    An existing file there is replaced when it is an earlier report of the same study (a report
    is refreshed by running the command again), or with ``force``; any other file is refused.
    """
    out = Path(out).expanduser()
    if out.suffix.lower() in (".html", ".htm"):
        if out.is_dir():
            raise OutputError(f"{out}: is a folder; name the report file, or a folder without .html")
        target = out
    else:
        if out.exists() and not out.is_dir():
            raise OutputError(f"{out}: exists and is not a folder; name a folder, or a file ending in .html")
        target = out / f"{records.file_safe(study.study_name)}.html"
    if target.is_file() and not force:
        with open(target, "rb") as handle:
            head = handle.read(4096).decode("utf-8", "replace")
        if _generator(study) not in head:
            raise OutputError(f"{target}: exists and is not a report of study {study.study_name!r}; pass --force")
    elif target.exists() and not target.is_file():
        raise OutputError(f"{target}: exists and is not a file")
    return target


def write_report(study: optuna.Study, out: str | Path, *, plotlyjs: str = "embed", force: bool = False) -> Path:
    """Write the report to ``out`` (a ``.html`` file, or a folder: see :func:`report_path`); return its path.

    ``plotlyjs`` is ``embed`` (the default: the page works offline, about 4.8 MB) or ``cdn``
    (a few hundred kB; plotly.js is fetched from cdn.plot.ly when the page is opened).
    """
    target = report_path(study, out, force=force)
    ensure_folder(target.parent, "report folder")
    counts = count_trials(study)
    parts = [
        f"<h1>Study {html.escape(study.study_name)}</h1>",
        f"<p>{counts.complete} complete, {counts.pruned} pruned, {counts.failed} failed trials; "
        f"budget {records.budget(study) or '?'}.</p>",
        _about(study),
        "<h2>Best trial, test result and baseline</h2>",
        results_table_html(study),
    ]
    missing = []
    for i, panel in enumerate(study_panels(study)):
        if panel.figure is None:
            missing.append(panel)
            continue
        div = pio.to_html(
            panel.figure, full_html=False, include_plotlyjs=False, div_id=f"plot-{i}", default_width="100%"
        )
        note = f'<p class="note">{html.escape(panel.note)}</p>' if panel.note else ""
        parts.append(f"<section><h2>{html.escape(panel.title)}</h2>{note}{div}</section>")
    if missing:
        items = "".join(f"<li><b>{html.escape(p.title)}</b>: {html.escape(p.reason or '')}</li>" for p in missing)
        parts.append(f'<section class="missing"><h2>Not plotted</h2><ul>{items}</ul></section>')
    if plotlyjs == "cdn":
        plotly_js = (
            f'<script src="https://cdn.plot.ly/plotly-{get_plotlyjs_version()}.min.js" charset="utf-8"></script>'
        )
    else:
        plotly_js = f'<script type="text/javascript">{get_plotlyjs()}</script>'
    page = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'>{_generator(study)}"
        f"<title>svmhpo: {html.escape(study.study_name)}</title>"
        f"<style>{_STYLE}</style>{plotly_js}</head><body>{''.join(parts)}</body></html>"
    )
    return write_atomically(target, page)
