"""A study as svmhpo opened it: the Optuna study, and what it was opened with.

Optuna keeps the storage a study was opened with, and the study's id, to itself (``Study``
has no public accessor for either), yet svmhpo needs both: its own study attributes, heartbeats,
locks and artifacts go through the storage that was opened, by id. :class:`StudyHandle` is an
``optuna.Study`` (every Optuna API that takes a study takes it) that also holds, as public
attributes, the storage that was opened, the study id, the URL (and its masked form for
messages) and where its artifacts go. The openers of :mod:`svmhpo.hpo.studies` return one.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import optuna

from svmhpo.hpo.artifacts import ArtifactChain, model_store_kind, store_for
from svmhpo.hpo.storage import AtomicArtifactStore, artifact_dir, mask_url

if TYPE_CHECKING:
    from optuna.storages import RDBStorage
    from optuna.trial import FrozenTrial

__all__ = ["StudyHandle", "trial_id"]


class StudyHandle(optuna.Study):
    """An ``optuna.Study`` with the storage it was opened with, its id, its URL and its artifact folder.

    Raises ``KeyError`` (as ``optuna.Study`` does) when the storage holds no study ``name``.
    """

    def __init__(
        self,
        name: str,
        storage: RDBStorage,
        url: str,
        *,
        sampler: optuna.samplers.BaseSampler | None = None,
        pruner: optuna.pruners.BasePruner | None = None,
    ) -> None:
        super().__init__(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
        #: The storage that was opened (the study reads through Optuna's cache over it).
        self.storage = storage
        #: The study's id in :attr:`storage`.
        self.id = storage.get_study_id_from_name(name)
        #: The storage URL, password included: pass it on, never print it (:attr:`shown` is for that).
        self.url = url
        #: The storage URL with its password masked, for every message.
        self.shown = mask_url(url)
        #: The artifact folder: where a SQLite study keeps its model (and where an older svmhpo
        #: kept a server study's).
        self.artifacts: Path = artifact_dir(url)
        #: Where new artifacts go: the study's database on a server, the folder beside a SQLite file
        #: (:mod:`svmhpo.hpo.artifacts`).
        self.model_store = model_store_kind(storage)

    #: Set while the study's last count found no WAITING trial (a batch's asks, under the budget
    #: lock): ``ask`` then skips Optuna's read of the queue (:meth:`_pop_waiting_trial_id`).
    queue_empty: bool = False
    #: Whether the last ``ask`` took a WAITING trial (rather than creating one).
    popped_last: bool = False

    def _pop_waiting_trial_id(self) -> int | None:
        """Optuna's first step of ``ask`` (take a WAITING trial), skipped while :attr:`queue_empty`.

        Optuna reads every unfinished trial of the study (eight statements) to find the queue
        empty, before every ask. A batch's asks follow a count of the study by state; when it found
        nothing waiting, the reads are skipped, and a trial queued since (a stale trial re-queued
        by another worker) is taken by the next batch's asks.
        """
        popped = None if self.queue_empty else super()._pop_waiting_trial_id()
        self.popped_last = popped is not None
        return popped

    def artifact_store(self) -> AtomicArtifactStore | ArtifactChain:
        """The study's artifact store (a folder is not created here).

        On a server: the database, then the artifact folder, where an older svmhpo wrote models.
        """
        return store_for(self.storage, self.artifacts)


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    """A trial's id in its storage, which heartbeats and direct storage calls take.

    Optuna's ``Trial`` and ``FrozenTrial`` keep it as ``_trial_id`` and offer no public
    accessor; this is the one place svmhpo reads it.
    """
    return trial._trial_id
