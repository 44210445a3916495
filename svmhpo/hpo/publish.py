"""What a study shows of itself in optuna-dashboard: its results note and its LR-finder graph.

:func:`publish` writes them to the study (optuna-dashboard keeps both in the study's storage),
after the warm start and after the refit, so that the dashboard shows what it cannot compute:
the best trial's test result beside the ``LinearSVC`` baseline, the warm-start picks, and the
LR-finder curves. The same table and figure appear in ``svmhpo report`` (:mod:`svmhpo.view`).
This is the study service's side, so it lives in ``hpo/``, which never imports ``view/``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

from svmhpo.hpo import records
from svmhpo.hpo.studies import best_trial
from svmhpo.svm.params import metric_key, metric_title

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = ["LR_FINDER_GRAPH_ID", "lr_finder_figure", "params_text", "publish", "results_markdown", "results_rows"]


def params_text(params: dict[str, Any]) -> str:
    """A trial's parameters on one line: ``lr=0.2152, weight_decay=0.0001, squared=False, ...``."""
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


LR_FINDER_GRAPH_ID = "lr-finder"


def publish(study: optuna.Study) -> None:
    """Write the study note and the LR-finder graph for the dashboard (idempotent)."""
    import optuna_dashboard  # here, not at import: the listing commands use params_text and start fast

    study.set_metric_names([metric_key(records.metric(study))])
    curves = records.lr_finder_curves(study)
    if curves:
        optuna_dashboard.save_plotly_graph_object(study, lr_finder_figure(curves), graph_object_id=LR_FINDER_GRAPH_ID)
    optuna_dashboard.save_note(study, results_markdown(study))


def lr_finder_figure(curves: dict[str, dict]) -> go.Figure:
    """The warm start's loss-vs-lr curves, one per optimizer, with the picked rate marked."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for optimizer, curve in curves.items():
        fig.add_trace(go.Scatter(x=curve["lr"], y=curve["loss"], mode="lines", name=optimizer, legendgroup=optimizer))
        chosen = curve["chosen_lr"]
        pairs = [(lr, loss) for lr, loss in zip(curve["lr"], curve["loss"], strict=True) if loss is not None]
        if pairs:
            nearest = min(pairs, key=lambda p: abs(p[0] - chosen))
            fig.add_trace(
                go.Scatter(
                    x=[chosen],
                    y=[nearest[1]],
                    mode="markers",
                    marker={"size": 12, "symbol": "star"},
                    name=f"{optimizer} picked {chosen:.3g}",
                    legendgroup=optimizer,
                )
            )
        suggestion = curve.get("lightning_suggestion")
        if suggestion:
            fig.add_vline(x=suggestion, line_dash="dot", line_color="grey", opacity=0.4)
    # A short title that fits a dashboard card, the key in a subtitle line, and the legend below
    # the plot: at the right it squeezed the curves, and the long title was cut off.
    fig.update_layout(
        title={
            "text": "LR finder (warm start)<br><sup>smoothed loss per optimizer; ★ picked rate, "
            "dotted: Lightning's suggestion()</sup>"
        },
        xaxis_title="learning rate",
        yaxis_title="smoothed training loss",
        xaxis_type="log",
        legend={"orientation": "h", "yanchor": "top", "y": -0.2, "xanchor": "left", "x": 0},
        margin={"t": 80},
    )
    return fig


def results_rows(study: optuna.Study) -> list[tuple[str, str, str, str]]:
    """(what, validation score, test score, details) rows of the results table, in the study's metric."""
    attrs = study.user_attrs
    metric = records.metric(attrs)
    rows = []
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    final = records.final(attrs)
    if complete:
        best = best_trial(study)
        params = params_text(best.params)
        test = _test_cell(final, metric) if final and final["trial"] == best.number else "not scored yet"
        rows.append((f"best trial #{best.number} (refit on train+val)", f"{best.value:.4f}", test, params))
    base = records.baseline(attrs)
    if base:
        val = base.get(metric_key(metric))
        rows.append((base["model"], "-" if val is None else f"{val:.4f}", _test_cell(base, metric), f"C={base['C']}"))
    return rows


def _test_cell(result: dict[str, Any], metric: str) -> str:
    """A refit's or baseline's test score in ``metric``, with accuracy and macro F1 beside it."""
    score = result.get(metric_key(metric, "test"))
    if metric == "accuracy" or score is None:
        return f"{result['test_acc']:.4f} (F1 {result['test_f1']:.4f})"
    return f"{score:.4f} (accuracy {result['test_acc']:.4f})"


def _folds_markdown(study: optuna.Study) -> list[str]:
    """What a cross-validated study's values are, with the best trial's fold scores; nothing otherwise."""
    complete = [
        t
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if records.CV_SCORES in t.user_attrs and t.value is not None
    ]
    if not complete:
        return []
    best = max(complete, key=lambda t: (t.value, -t.number))
    scores = best.user_attrs[records.CV_SCORES]
    return [
        "",
        f"Each trial's validation {metric_title(records.metric(study))} is the mean over {len(scores)} "
        "cross-validation folds of the "
        f"training and validation samples (the trial's `cv_scores` and `cv_std`); the best trial's folds: "
        f"{', '.join(f'{s:.4f}' for s in scores)} (std {best.user_attrs.get(records.CV_STD, 0.0):.4f}).",
    ]


def results_markdown(study: optuna.Study) -> str:
    """The results table and warm-start picks as Markdown, for the dashboard's study note."""
    lines = ["## svmhpo results", ""]
    rows = results_rows(study)
    if rows:
        title = metric_title(records.metric(study))
        lines += [f"| model | validation {title} | test {title} | parameters |", "|---|---|---|---|"]
        lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    else:
        lines.append("No trial has completed yet.")
    lines += _folds_markdown(study)
    final = records.final(study)
    if final:
        where = final.get("model_path") or "in the study's database"
        lines += ["", f"Model: artifact `{final['model_artifact_id']}` ({where})."]
    curves = records.lr_finder_curves(study)
    if curves:
        lines += [
            "",
            "### Warm start (LR finder)",
            "",
            "| optimizer | picked lr | Lightning suggestion() |",
            "|---|---|---|",
        ]
        for name, c in curves.items():
            suggestion = c.get("lightning_suggestion")
            lines.append(f"| {name} | {c['chosen_lr']:.4g} | {'-' if suggestion is None else f'{suggestion:.3g}'} |")
        lines += ["", "The curves are in the graph *LR finder* below the study's plots."]
    return "\n".join(lines)
