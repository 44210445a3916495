"""optuna-dashboard for svmhpo studies: what svmhpo records, made visible there, and the server.

The dashboard already shows each trial's parameters, user attributes (seed, worker, diverged)
and learning curve (``val_acc`` per epoch), and computes importances. :func:`publish` adds what
it cannot know: the LR-finder curves as a plotly graph, and a study note with the best trial's
test result, the ``LinearSVC`` baseline and the warm-start picks.
"""

from __future__ import annotations

import optuna
import optuna_dashboard
from optuna.artifacts import FileSystemArtifactStore

from svmhpo.catalog import WARM_START_ATTR
from svmhpo.errors import SvmhpoError
from svmhpo.plots import lr_finder_figure, results_markdown
from svmhpo.storage import artifact_dir, mask_url, open_storage, resolve_storage_url

__all__ = ["LR_FINDER_GRAPH_ID", "make_app", "publish", "serve"]

LR_FINDER_GRAPH_ID = "lr-finder"


def publish(study: optuna.Study) -> None:
    """Write the study note and the LR-finder graph for the dashboard (idempotent)."""
    study.set_metric_names(["val_acc"])
    curves = study.user_attrs.get(WARM_START_ATTR)
    if curves:
        optuna_dashboard.save_plotly_graph_object(study, lr_finder_figure(curves), graph_object_id=LR_FINDER_GRAPH_ID)
    optuna_dashboard.save_note(study, results_markdown(study))


def make_app(url: str | None = None):
    """The dashboard's WSGI application on the study storage, with svmhpo's artifact store."""
    url = resolve_storage_url(url)
    store = artifact_dir(url)
    store.mkdir(parents=True, exist_ok=True)
    return optuna_dashboard.wsgi(
        open_storage(url, heartbeat_interval=None), artifact_store=FileSystemArtifactStore(str(store))
    )


def serve(url: str | None = None, *, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Serve the dashboard until interrupted (``svmhpo dashboard``)."""
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    class ThreadingServer(ThreadingMixIn, WSGIServer):
        daemon_threads = True  # the dashboard's page fires many API requests at once

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args) -> None:
            pass

    app = make_app(url)
    try:
        server = make_server(host, port, app, server_class=ThreadingServer, handler_class=QuietHandler)
    except OSError as exc:
        raise SvmhpoError(f"cannot listen on {host}:{port} ({exc.strerror})") from None
    with server:
        print(f"optuna-dashboard for {mask_url(resolve_storage_url(url))} at http://{host}:{port}/", flush=True)
        server.serve_forever()
