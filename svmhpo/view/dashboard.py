"""optuna-dashboard for svmhpo studies: what svmhpo records, made visible there.

The dashboard already shows each trial's parameters, user attributes (seed, worker, diverged)
and learning curve (``val_acc`` per epoch), and computes importances. :func:`publish` adds what
it cannot know: the LR-finder curves as a plotly graph, and a study note with the best trial's
test result, the ``LinearSVC`` baseline and the warm-start picks. :func:`serve` is
optuna-dashboard's own server on the study storage and svmhpo's artifact store.
"""

from __future__ import annotations

import optuna
import optuna_dashboard

from svmhpo.errors import SvmhpoError
from svmhpo.hpo import records
from svmhpo.hpo.storage import artifact_dir, artifact_store, open_storage, resolve_storage_url
from svmhpo.view.plots import lr_finder_figure, results_markdown

__all__ = ["LR_FINDER_GRAPH_ID", "publish", "serve"]

LR_FINDER_GRAPH_ID = "lr-finder"


def publish(study: optuna.Study) -> None:
    """Write the study note and the LR-finder graph for the dashboard (idempotent)."""
    study.set_metric_names([records.METRIC])
    curves = records.lr_finder_curves(study)
    if curves:
        optuna_dashboard.save_plotly_graph_object(study, lr_finder_figure(curves), graph_object_id=LR_FINDER_GRAPH_ID)
    optuna_dashboard.save_note(study, results_markdown(study))


def serve(url: str | None = None, *, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Serve optuna-dashboard on the study storage until interrupted (``svmhpo dashboard``)."""
    url = resolve_storage_url(url)
    store = artifact_dir(url)
    try:
        store.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SvmhpoError(f"{store}: cannot create the artifact folder ({exc.strerror})") from None
    try:
        optuna_dashboard.run_server(open_storage(url), host=host, port=port, artifact_store=artifact_store(url))
    except OSError as exc:
        raise SvmhpoError(f"cannot listen on {host}:{port} ({exc.strerror})") from None
