"""optuna-dashboard for svmhpo studies: what svmhpo records, made visible there.

The dashboard already shows each trial's parameters, user attributes (seed, worker, diverged)
and learning curve (``val_acc`` per epoch), and computes importances. What it cannot know, the
LR-finder curves as a plotly graph and a study note with the best trial's test result, the
``LinearSVC`` baseline and the warm-start picks, the study service writes to the study
(:func:`svmhpo.hpo.publish.publish`). :func:`serve` is optuna-dashboard's own server on the
study storage and svmhpo's artifact store.
"""

from __future__ import annotations

import socket

import optuna_dashboard

from svmhpo.errors import SvmhpoError
from svmhpo.hpo import records
from svmhpo.hpo.artifacts import FOLDER, ArtifactChain, S3ArtifactStore, model_store_kind, store_for
from svmhpo.hpo.storage import artifact_dir, open_storage, resolve_storage_url

__all__ = ["serve"]


def serve(url: str | None = None, *, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Serve optuna-dashboard on the study storage until interrupted (``svmhpo dashboard``)."""
    url = resolve_storage_url(url)
    storage = open_storage(url)
    folder = artifact_dir(url)
    if model_store_kind(storage) == FOLDER:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SvmhpoError(f"{folder}: cannot create the artifact folder ({exc.strerror})") from None
    store = store_for(storage, folder)  # on a server: the study's database (every host sees it)
    buckets = sorted(
        {(study.system_attrs.get(records.CONFIG) or {}).get("artifacts") for study in storage.get_all_studies()}
        - {None}
    )
    if buckets:  # studies whose models go to S3 ([study] artifacts), as they were when the dashboard started
        store = ArtifactChain(store, *(S3ArtifactStore(url) for url in buckets))
    _can_listen(host, port)  # before the server prints "Listening on ..." for an address it cannot have
    try:
        optuna_dashboard.run_server(storage, host=host, port=port, artifact_store=store)
    except OSError as exc:
        raise SvmhpoError(f"cannot listen on {host}:{port} ({exc.strerror})") from None


def _can_listen(host: str, port: int) -> None:
    """Bind ``host:port`` once, as the server will (address reuse on, as wsgiref sets it), and let go."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        raise SvmhpoError(f"cannot listen on {host}:{port} ({exc.strerror})") from None
