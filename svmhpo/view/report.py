"""``svmhpo report``: one self-contained HTML file of a study, readable offline.

plotly.js is embedded once in the page (no CDN), followed by every panel of
:func:`svmhpo.view.plots.study_panels` and the results table. Panels that cannot be drawn (one trial,
all pruned, failed trials) are listed with the reason.
"""

from __future__ import annotations

import html
from pathlib import Path

import optuna
import plotly.io as pio
from plotly.offline import get_plotlyjs

from svmhpo.hpo import records
from svmhpo.hpo.studies import count_trials
from svmhpo.view.plots import results_table_html, study_panels

__all__ = ["write_report"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; } td, th { border: 1px solid #ccc; padding: .3rem .6rem; }
.missing { color: #a33; } section { margin-bottom: 2rem; }
"""


def write_report(study: optuna.Study, out_dir: str | Path) -> Path:
    """Write ``<out_dir>/<study>.html`` and return its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    counts = count_trials(study)
    parts = [
        f"<h1>Study {html.escape(study.study_name)}</h1>",
        f"<p>{counts.complete} complete, {counts.pruned} pruned, {counts.failed} failed trials; "
        f"budget {records.budget(study) or '?'}.</p>",
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
        parts.append(f"<section><h2>{html.escape(panel.title)}</h2>{div}</section>")
    if missing:
        items = "".join(f"<li><b>{html.escape(p.title)}</b>: {html.escape(p.reason or '')}</li>" for p in missing)
        parts.append(f'<section class="missing"><h2>Not plotted</h2><ul>{items}</ul></section>')
    plotly_js = f'<script type="text/javascript">{get_plotlyjs()}</script>'
    page = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>svmhpo: {html.escape(study.study_name)}</title>"
        f"<style>{_STYLE}</style>{plotly_js}</head><body>{''.join(parts)}</body></html>"
    )
    path = out / f"{study.study_name}.html"
    path.write_text(page, encoding="utf-8")
    return path
