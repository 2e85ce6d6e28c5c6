"""Reading a repository back for assertions by a path independent of replicate.

Objects are fetched with plain tools: files on disk, a plain botocore S3 client (the client
boto3 hands out) at ``AWS_ENDPOINT_URL_S3``, and plain HTTP GETs to the GCS JSON API at
``STORAGE_EMULATOR_HOST``; they are decoded with ``json`` and ``tarfile``. The keys are the
Keepsake layout, written out here rather than taken from replicate.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import subprocess
import sys
import tarfile
import textwrap
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import botocore.exceptions
from faults import Request
from servers import s3_client

REPO_ROOT = Path(__file__).resolve().parents[2]
_direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _read_s3(bucket: str, name: str) -> bytes | None:
    with contextlib.closing(s3_client(os.environ["AWS_ENDPOINT_URL_S3"])) as client:
        try:
            return bytes(client.get_object(Bucket=bucket, Key=name)["Body"].read())
        except botocore.exceptions.ClientError as e:
            if e.response.get("Error", {}).get("Code") == "NoSuchKey":
                return None
            raise


def _read_gcs(bucket: str, name: str) -> bytes | None:
    host = os.environ["STORAGE_EMULATOR_HOST"].rstrip("/")
    url = f"{host}/storage/v1/b/{bucket}/o/{urllib.parse.quote(name, safe='')}?alt=media"
    try:
        with _direct.open(url, timeout=60) as response:
            return bytes(response.read())
    except urllib.error.HTTPError as e:
        e.close()
        if e.code == 404:
            return None
        raise


def fetch(url: str, key: str) -> bytes | None:
    """The bytes of ``key`` in the repository at ``url``, or None if there is no such object."""
    parts = urllib.parse.urlsplit(url)
    name = f"{parts.path.strip('/')}/{key}".lstrip("/")
    if parts.scheme == "s3":
        return _read_s3(parts.netloc, name)
    if parts.scheme == "gs":
        return _read_gcs(parts.netloc, name)
    path = Path(urllib.request.url2pathname(parts.path)) / key
    return path.read_bytes() if path.is_file() else None


def read(url: str, key: str) -> bytes:
    """The bytes of ``key``, which must exist."""
    data = fetch(url, key)
    assert data is not None, f"{key} is not in {url}"
    return data


def exists(url: str, key: str) -> bool:
    return fetch(url, key) is not None


def experiment(url: str, experiment_id: str) -> dict[str, Any]:
    """The experiment's metadata JSON as stored (NaN and infinities as "[NaN]" etc.)."""
    record: dict[str, Any] = json.loads(read(url, f"metadata/experiments/{experiment_id}.json"))
    return record


def checkpoint_ids(record: dict[str, Any]) -> list[str]:
    return [c["id"] for c in record["checkpoints"]]


def losses(record: dict[str, Any]) -> list[Any]:
    return [c["metrics"]["loss"] for c in record["checkpoints"]]


def heartbeat_exists(url: str, experiment_id: str) -> bool:
    return exists(url, f"metadata/heartbeats/{experiment_id}.json")


def tar_members(url: str, kind: str, id: str) -> dict[str, bytes]:
    """Member name -> content of the stored tarball ``{kind}/{id}.tar.gz``."""
    data = read(url, f"{kind}/{id}.tar.gz")
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }


def run_script(
    project: Path, code: str, *, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` as a training script in ``project`` in a real Python subprocess."""
    script = project / "train.py"
    script.write_text(textwrap.dedent(code))
    return _run([sys.executable, str(script)], project, timeout, env)


def cli(
    project: Path, *args: str, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the replicate CLI in ``project`` as a real subprocess."""
    return _run([sys.executable, "-m", "replicate", *args], project, timeout, env)


def _run(
    argv: list[str], project: Path, timeout: float, env: dict[str, str] | None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        cwd=project,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_process(
    project: Path, args: list[str], *, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``python *args`` in ``project`` as a real subprocess."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=project,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# ---- training scripts against faulty storage -------------------------------------------------

MiB = 1024 * 1024

TRAIN = """
import os, random, sys, replicate
experiment = replicate.init(path="train.py", params={{"lr": 0.01}})
print(experiment.id, flush=True)
for step in range({steps}):
    with open("model.pth", "wb") as f:
        f.write(random.Random(step).randbytes({size}))  # incompressible, like weights
    checkpoint = experiment.checkpoint(path="model.pth", step=step, metrics={{"loss": 1 / (step + 1)}},
                                       primary_metric=("loss", "minimize"), quiet=True)
    print(checkpoint.id, flush=True)
    with open("model.pth", "wb") as f:
        f.write(b"overwritten")
{after}
"""


def project_for(tmp_path: Path, url: str) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    (project / "replicate.yaml").write_text(f"repository: {url}\n")
    return project


def checkpoint_upload(request: Request) -> bool:
    """An S3 PUT of a checkpoint's tarball (whole, or a part of it) of at least 1 MiB."""
    return (
        request.method == "PUT"
        and "/checkpoints/" in request.path
        and (request.body_length or 0) > MiB
    )


def assert_landed(url: str, experiment_id: str, ids: list[str], size: int) -> None:
    assert checkpoint_ids(experiment(url, experiment_id)) == ids
    for step, id in enumerate(ids):
        members = tar_members(url, "checkpoints", id)
        assert members == {f"{id}/model.pth": random.Random(step).randbytes(size)}
