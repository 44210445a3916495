"""Where a study's artifacts (its model zip) are stored, so that every host with the URL reaches them.

- **In the study's own database** (:class:`DatabaseArtifactStore`), the default for database
  servers: a table of its own (:data:`TABLE`) beside Optuna's, the bytes in one
  ``LargeBinary`` column, each artifact written in one transaction and retried through a
  database outage like every other storage call. ``svmhpo predict --study-name``,
  ``svmhpo.load_model(name, storage=url)``, ``svmhpo report`` and the dashboard read it from
  any host with nothing but the URL; no disk is shared.
- **In a folder beside a SQLite file** (:class:`~svmhpo.hpo.storage.AtomicArtifactStore`): the
  file is on one disk anyway, and the model stays a plain file that ``svmhpo predict --model``
  takes.

- **In S3** (:class:`S3ArtifactStore`) where the config says ``[study] artifacts = "s3://bucket/prefix"``.

Each model's ``final`` record names its store (``model_store``: ``"database"``, ``"folder"`` or
the ``s3://`` URL); a record without one is from before the database store and is read from the
folder it was written to, so a study finalized then still loads.
"""

from __future__ import annotations

import datetime
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import sqlalchemy
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.storages import RDBStorage

from svmhpo.errors import ConfigError
from svmhpo.hpo.resilience import retried
from svmhpo.hpo.storage import AtomicArtifactStore

__all__ = [
    "DATABASE",
    "FOLDER",
    "TABLE",
    "ArtifactChain",
    "DatabaseArtifactStore",
    "S3ArtifactStore",
    "model_store_kind",
    "model_store_of",
    "store_for",
]

#: The ``model_store`` of a model kept in the study's database.
DATABASE = "database"
#: The ``model_store`` of a model kept as a file in the study's artifact folder.
FOLDER = "folder"

#: The table svmhpo creates beside Optuna's own tables for artifacts.
TABLE = "svmhpo_artifacts"

_metadata = sqlalchemy.MetaData()
_artifacts = sqlalchemy.Table(
    TABLE,
    _metadata,
    sqlalchemy.Column("artifact_id", sqlalchemy.String(64), primary_key=True),
    sqlalchemy.Column("content", sqlalchemy.LargeBinary, nullable=False),
    sqlalchemy.Column("size", sqlalchemy.BigInteger, nullable=False),
    sqlalchemy.Column("created_at", sqlalchemy.DateTime, nullable=False),
)

T = TypeVar("T")


class DatabaseArtifactStore:
    """An Optuna artifact store (``open_reader``, ``write``, ``remove``) in the study's database.

    It uses the engine of the storage the study was opened with (no second connection pool)
    and, on a database server, that storage's retries (:mod:`svmhpo.hpo.resilience`): an
    artifact written during an outage is written once the server is back, within the outage
    limit. A write replaces nothing: artifact ids are fresh UUIDs.
    """

    def __init__(self, storage: RDBStorage) -> None:
        self.storage = storage
        self._table_ready = False

    def _call(self, name: str, fn: Callable[[], T]) -> T:
        return retried(self.storage, name, fn)

    def _ensure_table(self) -> None:
        if not self._table_ready:
            _metadata.create_all(self.storage.engine, tables=[_artifacts], checkfirst=True)
            self._table_ready = True

    def _has_table(self) -> bool:
        if not self._table_ready:
            self._table_ready = sqlalchemy.inspect(self.storage.engine).has_table(TABLE)
        return self._table_ready

    def open_reader(self, artifact_id: str) -> BinaryIO:
        """The artifact's bytes, read in one query; ``ArtifactNotFound`` if there is none."""

        def read() -> bytes | None:
            if not self._has_table():
                return None
            with self.storage.engine.connect() as conn:
                query = sqlalchemy.select(_artifacts.c.content).where(_artifacts.c.artifact_id == artifact_id)
                return conn.execute(query).scalar_one_or_none()

        content = self._call("artifact_read", read)
        if content is None:
            raise ArtifactNotFound(f"artifact {artifact_id!r} is not in the study's database")
        return io.BytesIO(content)

    def exists(self, artifact_id: str) -> bool:
        """Whether the artifact is stored, without reading its bytes."""

        def probe() -> bool:
            if not self._has_table():
                return False
            with self.storage.engine.connect() as conn:
                query = sqlalchemy.select(_artifacts.c.size).where(_artifacts.c.artifact_id == artifact_id)
                return conn.execute(query).first() is not None

        return self._call("artifact_exists", probe)

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        """Store the artifact's bytes in one transaction (all of it, or nothing)."""
        content = content_body.read()

        def insert() -> None:
            self._ensure_table()
            try:
                with self.storage.engine.begin() as conn:
                    conn.execute(
                        _artifacts.insert().values(
                            artifact_id=artifact_id,
                            content=content,
                            size=len(content),
                            created_at=datetime.datetime.now(datetime.UTC).replace(tzinfo=None),
                        )
                    )
            except sqlalchemy.exc.IntegrityError:
                # a retry after a connection lost at the commit: the first attempt had landed
                if not self.exists(artifact_id):
                    raise

        self._call("artifact_write", insert)

    def remove(self, artifact_id: str) -> None:
        """Delete the artifact; ``ArtifactNotFound`` if there is none."""

        def delete() -> int:
            if not self._has_table():
                return 0
            with self.storage.engine.begin() as conn:
                return conn.execute(_artifacts.delete().where(_artifacts.c.artifact_id == artifact_id)).rowcount

        if not self._call("artifact_remove", delete):
            raise ArtifactNotFound(f"artifact {artifact_id!r} is not in the study's database")


class ArtifactChain:
    """Stores tried in order: writes go to the first, reads and removals find an artifact in any.

    A database server's studies write to the database and still read models that an older
    svmhpo wrote to the artifact folder, so a study finalized then still loads (and the
    dashboard still serves it).
    """

    def __init__(self, *stores: Any) -> None:
        self.stores = stores

    def open_reader(self, artifact_id: str) -> BinaryIO:
        for store in self.stores:
            try:
                return store.open_reader(artifact_id)  # one query, not a probe and then a read
            except (ArtifactNotFound, FileNotFoundError):
                continue
        raise ArtifactNotFound(f"artifact {artifact_id!r} is in none of the study's artifact stores")

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        self.stores[0].write(artifact_id, content_body)

    def remove(self, artifact_id: str) -> None:
        found = [store for store in self.stores if store.exists(artifact_id)]
        if not found:
            raise ArtifactNotFound(f"artifact {artifact_id!r} is in none of the study's artifact stores")
        for store in found:
            store.remove(artifact_id)

    def exists(self, artifact_id: str) -> bool:
        return any(store.exists(artifact_id) for store in self.stores)


def model_store_kind(storage: RDBStorage) -> str:
    """Where new artifacts of studies in ``storage`` go: :data:`FOLDER` for SQLite, else :data:`DATABASE`."""
    return FOLDER if storage.engine.dialect.name == "sqlite" else DATABASE


def store_for(storage: RDBStorage, folder: Path) -> AtomicArtifactStore | ArtifactChain:
    """The artifact store of the studies in ``storage``, whose artifact folder is ``folder`` (not created here).

    SQLite: the folder. A server: the database, then the folder, where an older svmhpo wrote models.
    """
    if model_store_kind(storage) == FOLDER:
        return AtomicArtifactStore(folder)
    return ArtifactChain(DatabaseArtifactStore(storage), AtomicArtifactStore(folder))


class S3ArtifactStore:
    """Artifacts as objects under ``s3://bucket/prefix`` (``[study] artifacts``), through Optuna's
    ``Boto3ArtifactStore``; credentials and endpoint as boto3 finds them (``AWS_*`` variables,
    ``~/.aws``; ``AWS_ENDPOINT_URL`` for MinIO and other S3-compatible stores)."""

    def __init__(self, url: str) -> None:
        try:
            import boto3
            from optuna.artifacts import Boto3ArtifactStore
        except ImportError:
            raise ConfigError(f"{url}: S3 artifacts need boto3: pip install 'svmhpo[s3]'") from None
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        self.url = url
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self.client = boto3.client("s3")
        self._store = Boto3ArtifactStore(bucket, client=self.client)

    def _key(self, artifact_id: str) -> str:
        return self.prefix + artifact_id

    def open_reader(self, artifact_id: str) -> BinaryIO:
        return self._store.open_reader(self._key(artifact_id))

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        self._store.write(self._key(artifact_id), content_body)

    def remove(self, artifact_id: str) -> None:
        if not self.exists(artifact_id):
            raise ArtifactNotFound(f"artifact {artifact_id!r} is not in {self.url}")
        self._store.remove(self._key(artifact_id))

    def exists(self, artifact_id: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self._store.bucket, Key=self._key(artifact_id))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True


def model_store_of(
    final: dict, default: AtomicArtifactStore | ArtifactChain
) -> AtomicArtifactStore | ArtifactChain | S3ArtifactStore:
    """The store that holds the model a ``final`` record names: S3 where its ``model_store`` is an
    ``s3://`` URL, else ``default`` (the study's own store, which reads the folder too)."""
    where = final.get("model_store") or ""
    return S3ArtifactStore(where) if where.startswith("s3://") else default
