"""Fixtures for the framework tests: a project dir per test on a local or SeaweedFS repository."""

from __future__ import annotations

import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from servers import s3_client

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@dataclass
class Project:
    """A project dir (the cwd of the test) whose replicate.yaml names ``url``."""

    dir: Path
    url: str

    def raw(self, key: str) -> bytes:
        """The bytes of object ``key``, read without replicate (files, or plain botocore)."""
        parsed = urlparse(self.url)
        if parsed.scheme == "file":
            return (Path(parsed.path) / key).read_bytes()
        client = s3_client(os.environ["AWS_ENDPOINT_URL_S3"])
        try:
            body = client.get_object(Bucket=parsed.netloc, Key=f"{parsed.path.strip('/')}/{key}")
            return body["Body"].read()  # type: ignore[no-any-return]
        finally:
            client.close()

    def experiment_json(self, experiment_id: str) -> dict[str, Any]:
        return json.loads(self.raw(f"metadata/experiments/{experiment_id}.json"))  # type: ignore[no-any-return]

    def experiment_ids(self) -> list[str]:
        parsed = urlparse(self.url)
        if parsed.scheme == "file":
            folder = Path(parsed.path) / "metadata" / "experiments"
            return sorted(p.stem for p in folder.glob("*.json"))
        client = s3_client(os.environ["AWS_ENDPOINT_URL_S3"])
        try:
            prefix = f"{parsed.path.strip('/')}/metadata/experiments/"
            listed = client.list_objects_v2(Bucket=parsed.netloc, Prefix=prefix)
            return sorted(o["Key"][len(prefix) : -len(".json")] for o in listed.get("Contents", []))
        finally:
            client.close()

    def members(self, checkpoint_id: str) -> dict[str, bytes]:
        """Member name (first component stripped) -> bytes of a checkpoint's tarball."""
        data = self.raw(f"checkpoints/{checkpoint_id}.tar.gz")
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            return {
                m.name.split("/", 1)[1]: tar.extractfile(m).read()  # type: ignore[union-attr]
                for m in tar.getmembers()
                if m.isfile()
            }


def make_project(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Project:
    if backend == "s3":
        url = f"s3://{request.getfixturevalue('s3_bucket')}/repo"
    else:
        url = (tmp_path / "repo").as_uri()
    project_dir = tmp_path / "project"
    project_dir.mkdir()
    (project_dir / "replicate.yaml").write_text(f"repository: {url}\n")
    monkeypatch.chdir(project_dir)
    monkeypatch.setenv("REPLICATE_CACHE_DIR", str(tmp_path / "cache"))
    return Project(project_dir, url)


@pytest.fixture(params=["file", pytest.param("s3", marks=pytest.mark.s3)])
def any_project(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Project:
    """A fresh project dir as the cwd, on a local repository and on SeaweedFS."""
    return make_project(request.param, request, tmp_path, monkeypatch)


@pytest.fixture
def project(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Project:
    """A fresh project dir as the cwd, on a local repository."""
    return make_project("file", request, tmp_path, monkeypatch)
