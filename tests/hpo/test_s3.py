"""``[study] artifacts = "s3://bucket/prefix"``: the model in object storage, against a real S3 endpoint.

The endpoint is moto's server mode, started by the test on a free loopback port (a real HTTP S3
API, not a mocked client). A real study refits into it; another process loads the model with the
study's URL and the S3 settings only; deleting the study deletes the object.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from svmhpo.hpo import records
from svmhpo.hpo.config import load_config
from svmhpo.hpo.service import run_study
from svmhpo.hpo.studies import delete_study, read_study
from svmhpo.testing import free_port, wait_for

boto3 = pytest.importorskip("boto3")


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> str:
    """A moto S3 server on 127.0.0.1 with an empty bucket; its endpoint and credentials in the environment."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    settings = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    for key, value in settings.items():
        monkeypatch.setenv(key, value)
    client = boto3.client("s3")

    def up() -> bool:
        try:
            client.list_buckets()
            return True
        except Exception:
            return False

    try:
        wait_for(up, timeout=60, what="the moto S3 server", interval=0.2)
        client.create_bucket(Bucket="models")
        yield "models"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_study_with_s3_artifacts_keeps_its_model_there(s3: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    config = tmp_path / "c.toml"
    config.write_text(
        f'[study]\nname = "s3"\ntrials = 3\nartifacts = "s3://{s3}/svmhpo/models"\n'
        '[data]\nsource = "synthetic:600x20x3"\n'
        "[training]\nepochs = 2\n[warm_start]\nenabled = false\n[baseline]\nC = [0.1]\n"
    )
    run_study(load_config(config), url)
    study = read_study("s3", url)
    final = records.final(study)
    assert final["model_store"] == f"s3://{s3}/svmhpo/models" and "model_path" not in final
    key = f"svmhpo/models/{final['model_artifact_id']}"
    client = boto3.client("s3")
    assert [o["Key"] for o in client.list_objects_v2(Bucket=s3)["Contents"]] == [key]
    assert not (tmp_path / "s.artifacts").exists()  # nothing beside the SQLite file

    code = (
        "import json\nfrom svmhpo import load_model\nfrom svmhpo.svm.data import load_dataset\n"
        f"model = load_model('s3', storage={url!r})\n"
        "print(json.dumps([int(v) for v in model.predict(load_dataset('synthetic:600x20x3').X[:4])]))\n"
    )
    other = tmp_path / "elsewhere"
    other.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=other, env=dict(os.environ, SVMHPO_HOME=str(other)),
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)) == 4

    assert delete_study("s3", url) == 1
    assert client.list_objects_v2(Bucket=s3).get("KeyCount") == 0
