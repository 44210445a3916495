"""The model of a server study lives in the study's database: every host with the URL reads it.

A real study refits on the real PostgreSQL server; then other "hosts" (processes with another
``SVMHPO_HOME`` and working directory, so no disk in common) predict with nothing but the URL,
optuna-dashboard serves the artifact, a study finalized by an older svmhpo (model in the artifact
folder) still loads, and deleting the study deletes its row.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from conftest import dashboard_request

from svmhpo.hpo import records
from svmhpo.hpo.artifacts import DATABASE, TABLE, DatabaseArtifactStore
from svmhpo.hpo.config import load_config
from svmhpo.hpo.service import run_study
from svmhpo.hpo.storage import artifact_dir, open_storage
from svmhpo.hpo.studies import delete_study, read_study

pytestmark = pytest.mark.postgres


def _rows(url: str, artifact_id: str) -> int:
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            query = sqlalchemy.text(f"SELECT count(*) FROM {TABLE} WHERE artifact_id = :id")
            return conn.execute(query, {"id": artifact_id}).scalar_one()
    finally:
        engine.dispose()


def _elsewhere(tmp_path: Path, code: str, url: str) -> subprocess.CompletedProcess:
    """Run ``code`` as another host would: its own home and working directory, nothing but the URL."""
    host = tmp_path / f"host-{uuid.uuid4().hex[:6]}"
    host.mkdir()
    env = dict(os.environ, SVMHPO_HOME=str(host / "home"), SVMHPO_URL=url)
    return subprocess.run([sys.executable, "-c", code], cwd=host, env=env, capture_output=True, text=True, timeout=180)


def test_a_server_study_keeps_its_model_in_the_database_for_every_host(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"db-model-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("SVMHPO_HOME", str(tmp_path / "worker-home"))  # the refitting "host"
    config = tmp_path / "c.toml"
    config.write_text(
        f'[study]\nname = "{name}"\ntrials = 3\n[data]\nsource = "synthetic:600x20x3"\n'
        "[training]\nepochs = 2\n[warm_start]\nenabled = false\n[baseline]\nC = [0.1]\n"
    )
    try:
        run_study(load_config(config), pg_url)
        study = read_study(name, pg_url)
        final = records.final(study)
        assert final["model_store"] == DATABASE and "model_path" not in final
        artifact_id = final["model_artifact_id"]
        assert _rows(pg_url, artifact_id) == 1
        assert not artifact_dir(pg_url).exists()  # nothing on the refitting host's disk

        # another host: the model through the Python API and the command line, with the URL only
        code = (
            "import json, os, sys\n"
            "from svmhpo import load_model\n"
            "from svmhpo.svm.data import load_dataset\n"
            f"model = load_model({name!r}, storage=os.environ['SVMHPO_URL'])\n"
            "x = load_dataset('synthetic:600x20x3').X[:5]\n"
            "print(json.dumps([int(v) for v in model.predict(x)]))\n"
        )
        done = _elsewhere(tmp_path, code, pg_url)
        assert done.returncode == 0, done.stderr
        assert len(json.loads(done.stdout)) == 5
        best = _elsewhere(
            tmp_path,
            f"import sys, os\nfrom svmhpo.cli import main\nsys.exit(main(['best', '--study-name', {name!r}, "
            "'--storage', os.environ['SVMHPO_URL']]))",
            pg_url,
        )
        assert best.returncode == 0, best.stderr
        assert f"model: in the study's database (artifact {artifact_id})" in best.stdout

        # optuna-dashboard serves it (its download link), from the database
        storage = open_storage(pg_url)
        code, body = dashboard_request(pg_url, "GET", f"/artifacts/{study.id}/{artifact_id}")
        assert code == 200 and body == DatabaseArtifactStore(storage).open_reader(artifact_id).read()

        # a study finalized by an older svmhpo: its model in the artifact folder, no model_store
        folder = artifact_dir(pg_url)
        folder.mkdir(parents=True)
        (folder / artifact_id).write_bytes(body)
        DatabaseArtifactStore(storage).remove(artifact_id)
        old = {k: v for k, v in final.items() if k != "model_store"}
        old["model_path"] = str(folder / artifact_id)
        records.set_final(study, old)
        code = f"from svmhpo import load_model\nload_model({name!r}, storage={pg_url!r})\nprint('loaded')"
        local = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
        assert local.stdout.strip() == "loaded", local.stderr

        # deleting the study deletes its artifacts wherever they are
        records.set_final(study, final)
        DatabaseArtifactStore(storage).write(artifact_id, io.BytesIO(body))
        (folder / artifact_id).unlink()
        assert delete_study(name, pg_url) == 1
        assert _rows(pg_url, artifact_id) == 0
    finally:
        if name in optuna.get_all_study_names(pg_url):
            optuna.delete_study(study_name=name, storage=pg_url)
