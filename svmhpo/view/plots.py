"""Figures of a study, shared by ``svmhpo report`` and the dashboard annotations.

Optuna's ``optuna.visualization`` draws the history, importances, parallel coordinates, slices,
the lr × weight_decay contour and the learning curves. What it lacks, the LR-finder curves with
their picked rates and the table of the best trial, its test result and the ``LinearSVC``
baseline, comes from :mod:`svmhpo.hpo.publish`, which also writes them for the dashboard.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass

import optuna
import plotly.graph_objects as go
from optuna.importance import FanovaImportanceEvaluator, PedAnovaImportanceEvaluator
from optuna.trial import TrialState

from svmhpo.hpo import records
from svmhpo.hpo.publish import lr_finder_figure, results_rows
from svmhpo.hpo.records import metric_key, metric_title


def target(study: optuna.Study) -> str:
    """What the axes and notes call the value being tuned (Optuna's plots say "Objective Value"):
    ``validation balanced accuracy (val_balanced_acc)``."""
    metric = records.metric(study)
    return f"validation {metric_title(metric)} ({metric_key(metric)})"


__all__ = ["Panel", "results_table_html", "study_panels"]


@dataclass(frozen=True)
class Panel:
    """One section of a report: a figure, or the reason it could not be drawn."""

    title: str
    figure: go.Figure | None = None
    reason: str | None = None
    #: What the reader needs to read the figure right (what it was computed on, what it means).
    note: str | None = None


def results_table_html(study: optuna.Study) -> str:
    rows = results_rows(study)
    if not rows:
        return "<p>No trial has completed yet, so there is no best trial or test result.</p>"
    cells = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    title = metric_title(records.metric(study))
    return (
        f"<table><thead><tr><th>model</th><th>validation {title}</th><th>test {title}</th>"
        f"<th>parameters</th></tr></thead><tbody>{cells}</tbody></table>"
    )


def _importance(evaluator_name: str) -> Callable[[optuna.Study], go.Figure]:
    def draw(study: optuna.Study) -> go.Figure:
        evaluator = FanovaImportanceEvaluator(seed=0) if evaluator_name == "fanova" else PedAnovaImportanceEvaluator()
        fig = optuna.visualization.plot_param_importances(study, evaluator=evaluator, target_name=target(study))
        fig.update_layout(title=f"Hyperparameter importances ({evaluator_name})")
        return fig

    return draw


def in_rows(fig: go.Figure, columns: int = 2, row_px: int = 280) -> go.Figure:
    """A one-row figure of panels (Optuna's slice plot: one per parameter side by side, which on
    a page of ordinary width squeezed each to 150 px and ran their tick labels and titles into
    each other) laid out ``columns`` to a row, each row ``row_px`` high with room for its x titles."""
    names = sorted((k for k in fig.layout.to_plotly_json() if k.startswith("xaxis")), key=lambda k: int(k[5:] or 1))
    if len(names) <= 1:
        return fig
    rows = -(-len(names) // columns)
    height = rows * row_px + 120
    gap_x, gap_y = 0.12, 90 / height  # the space between panels: y tick labels, x ticks and title
    for i, xname in enumerate(names):
        row, col = divmod(i, columns)
        suffix = xname.removeprefix("xaxis")
        top = 1 - row / rows - (gap_y / 2 if row else 0)
        bottom = 1 - (row + 1) / rows + (gap_y / 2 if row < rows - 1 else 0)
        left, right = col / columns + (gap_x / 2 if col else 0), (col + 1) / columns - gap_x / 2
        fig.layout[xname].update(domain=[left, right], anchor=f"y{suffix}")
        if fig.layout[xname].type != "category":
            fig.layout[xname].update(nticks=4)  # plotly's default packs a log axis's labels edge to edge
        y = fig.layout[f"yaxis{suffix}"]
        y.update(domain=[bottom, top], anchor=f"x{suffix}", showticklabels=True)
        if col == 0 and row:
            y.update(title_text=fig.layout.yaxis.title.text)
    fig.update_layout(height=height, width=None)
    return fig


def _requires(study: optuna.Study, *, complete: int = 0, params: tuple[str, ...] = ()) -> str | None:
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(done) < complete:
        return f"needs at least {complete} complete trial(s), the study has {len(done)}"
    for name in params:
        values = {t.params.get(name) for t in done if name in t.params}
        if len(values) < 2:
            return f"needs complete trials with at least two values of {name}"
    return None


def _importance_note(study: optuna.Study, title: str) -> str:
    trials = study.get_trials(deepcopy=False)
    complete = sum(t.state == TrialState.COMPLETE for t in trials)
    name = target(study)
    basis = f"Computed on the {complete} complete trials of {len(trials)} (pruned and failed trials do not count). "
    if "fANOVA" in title:
        return basis + (
            f"fANOVA fits a random forest to their {name} and gives each parameter the share of its variance "
            "that the parameter explains alone: a parameter that matters only together with another scores low."
        )
    return basis + (
        "PED-ANOVA compares where each parameter's values lie among the best trials (the top tenth by "
        f"{name}) with where they lie among all of them: a parameter the best trials agree on scores high. "
        "With few complete trials, or when one parameter decides which trials complete at all, it can "
        "disagree sharply with fANOVA above: two views of the same few trials, not a measurement."
    )


def study_panels(study: optuna.Study) -> list[Panel]:
    """Every panel of the report; a panel that cannot be drawn says why instead of failing.

    Figures take their container's width (Optuna's slice plot asks for 300 px per parameter,
    which overflowed the page).
    """
    vis = optuna.visualization
    name = target(study)
    specs: list[tuple[str, Callable[[optuna.Study], go.Figure], str | None]] = [
        (
            "Optimization history",
            lambda s: vis.plot_optimization_history(s, target_name=name),
            _requires(study, complete=1),
        ),
        ("Importances (fANOVA)", _importance("fanova"), _requires(study, complete=2)),
        ("Importances (PED-ANOVA)", _importance("ped-anova"), _requires(study, complete=2)),
        (
            "Parallel coordinates",
            lambda s: vis.plot_parallel_coordinate(s, target_name=name),
            _requires(study, complete=1),
        ),
        ("Slices", lambda s: in_rows(vis.plot_slice(s, target_name=name)), _requires(study, complete=1)),
        (
            "Contour of lr × weight_decay",
            lambda s: vis.plot_contour(s, params=["lr", "weight_decay"], target_name=name),
            _requires(study, complete=2, params=("lr", "weight_decay")),
        ),
        (
            f"Learning curves (intermediate {metric_key(records.metric(study))}; pruned trials included)",
            lambda s: vis.plot_intermediate_values(s).update_yaxes(title_text=f"{name} at the epoch"),
            None
            if any(t.intermediate_values for t in study.get_trials(deepcopy=False))
            else "no trial reported a value",
        ),
    ]
    panels = []
    for title, draw, missing in specs:
        if missing:
            panels.append(Panel(title, reason=missing))
            continue
        try:
            figure = draw(study)
            figure.update_layout(width=None, autosize=True)
            note = _importance_note(study, title) if title.startswith("Importances") else None
            panels.append(Panel(title, figure=figure, note=note))
        except Exception as exc:  # one failing plot must not lose the others
            panels.append(Panel(title, reason=f"{exc.__class__.__name__}: {exc}".splitlines()[0]))
    curves = records.lr_finder_curves(study)
    if curves:
        panels.append(Panel("LR finder (warm start)", figure=lr_finder_figure(curves)))
    else:
        panels.append(Panel("LR finder (warm start)", reason="the study was run without a warm start"))
    return panels
