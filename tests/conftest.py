"""Shared fixtures: a clean cloud environment, real S3/GCS servers on loopback, fresh repositories.

The servers start once per session (sync fixtures, subprocesses stopped by PID at the end);
each test gets its own bucket. Environment variables are set in ``os.environ`` so that
``open_storage(url)`` works in-process and in subprocesses started with ``os.environ``.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli.helpers import copy_sample
from faults import FaultProxy
from servers import (
    Server,
    delete_gcs_bucket,
    delete_s3_bucket,
    make_gcs_bucket,
    make_s3_bucket,
    new_bucket_name,
    start_fake_gcs,
    start_seaweedfs,
)

_UNSET = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GOOGLE_CLOUD_PROJECT",
    "STORAGE_EMULATOR_HOST",
)


@pytest.fixture(scope="session", autouse=True)
def interruptible_children() -> None:
    """Children that the tests Ctrl-C (SIGINT) must not inherit an ignored SIGINT.

    A shell starting the suite in the background (``make test &``, nohup) sets SIGINT to
    ignored, and Python then never installs its KeyboardInterrupt handler in the children.
    An exec resets a handled signal to its default, so handling it here is enough.
    """
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session", autouse=True)
def clean_environ(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Point every cloud client at nothing real: no profiles, no metadata servers, test keys."""
    missing = tmp_path_factory.mktemp("no-aws") / "missing"
    with pytest.MonkeyPatch.context() as mp:
        for name in _UNSET:
            mp.delenv(name, raising=False)
        for name in [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL_")]:
            mp.delenv(name)
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        mp.setenv("AWS_CONFIG_FILE", str(missing))
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(missing))
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        no_proxy = os.environ.get("NO_PROXY", "")
        mp.setenv("NO_PROXY", ",".join(filter(None, [no_proxy, "127.0.0.1", "localhost"])))
        yield


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a SeaweedFS `weed mini` S3 server (SigV4 with testing/testing)."""
    base = tmp_path_factory.mktemp("seaweedfs")
    server = start_seaweedfs(base / "data", base / "weed.log")
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def gcs_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a fake-gcs-server (memory backend, plain HTTP)."""
    server: Server = start_fake_gcs(tmp_path_factory.mktemp("fake-gcs") / "fake-gcs.log")
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A new, empty S3 bucket; AWS_ENDPOINT_URL_S3 points at its server for the test."""
    name = new_bucket_name()
    make_s3_bucket(s3_endpoint, name)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_endpoint)
    yield name
    delete_s3_bucket(s3_endpoint, name)


@pytest.fixture
def s3_proxy(s3_endpoint: str) -> Iterator[FaultProxy]:
    """A fault-injecting proxy (faults.py) in front of the S3 server, with no rules yet.

    Nothing points at it: give ``s3_proxy.url`` to the client under test, and check results
    straight at ``s3_endpoint``.
    """
    with FaultProxy(s3_endpoint) as proxy:
        yield proxy


@pytest.fixture
def gcs_proxy(tmp_path: Path) -> Iterator[tuple[FaultProxy, str]]:
    """A fault-injecting proxy in front of a fake-gcs-server of its own, and a bucket there.

    The server's resumable-upload sessions point back at the proxy, so every chunk passes
    through it. Nothing points at it: give ``proxy.url`` to the client under test, and check
    results straight at ``proxy.upstream``.
    """
    with FaultProxy() as proxy:
        server = start_fake_gcs(tmp_path / "fake-gcs.log", external_url=proxy.url)
        try:
            proxy.upstream = server.url
            bucket = new_bucket_name()
            make_gcs_bucket(server.url, bucket)
            yield proxy, bucket
        finally:
            server.stop()


@pytest.fixture
def gcs_bucket(gcs_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A new, empty GCS bucket; STORAGE_EMULATOR_HOST points at its server for the test."""
    name = new_bucket_name()
    make_gcs_bucket(gcs_endpoint, name)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_endpoint)
    yield name
    delete_gcs_bucket(gcs_endpoint, name)


BACKENDS = [
    pytest.param("file", id="file"),
    pytest.param("s3", id="s3", marks=pytest.mark.s3),
    pytest.param("gcs", id="gcs", marks=pytest.mark.gcs),
]


def make_repo_url(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> str:
    """Return a fresh repository URL on ``backend``, starting its server on first use."""
    if backend == "s3":
        return f"s3://{request.getfixturevalue('s3_bucket')}/repo"
    if backend == "gcs":
        return f"gs://{request.getfixturevalue('gcs_bucket')}/repo"
    return (tmp_path / "repo").as_uri()


@pytest.fixture(params=BACKENDS)
def repo_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh repository URL on each backend: file://, s3://<bucket>/repo, gs://<bucket>/repo."""
    backend: str = request.param
    return make_repo_url(request, backend, tmp_path)


@pytest.fixture
def keepsake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the Keepsake sample project, as the working directory."""
    project = copy_sample(tmp_path)
    monkeypatch.chdir(project)
    monkeypatch.delenv("REPLICATE_REPOSITORY", raising=False)
    return project
