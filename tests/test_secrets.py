"""No secret leaks: sentinel values go in through every door we have, and come out nowhere.

Sentinels (``SENTINEL-<random>``) stand for an AWS secret key and session token, a GCS
credentials path, a param named ``api_key``, a ``--token=`` argument, a signed-URL query string
in a repository URL and an ``Authorization`` header. Each failure path we can reach is driven
for real (wrong credentials against SeaweedFS, which enforces SigV4; an endpoint that refuses
connections; a missing bucket; a permanent upload failure) and every error, log record,
stdout/stderr, ``--json`` output, journal line and metadata object is searched for them. The
api_key param may appear only as the user's own data: inside ``params`` of the experiment JSON
(and of ``--json`` output that prints params).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import replicate
from replicate.errors import ReplicateError


def sentinel(what: str) -> str:
    return f"SENTINEL-{what}-{secrets.token_hex(6)}"


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def without_params(value: Any) -> Any:
    """``value`` with every ``params`` mapping dropped (the user's own data)."""
    if isinstance(value, dict):
        return {k: without_params(v) for k, v in value.items() if k != "params"}
    if isinstance(value, list):
        return [without_params(v) for v in value]
    return value


def assert_clean(text: str, sentinels: list[str], where: str) -> None:
    for s in sentinels:
        assert s not in text, f"{s} leaked into {where}: {text[:2000]}"


def assert_clean_json(text: str, sentinels: list[str], where: str) -> None:
    """JSON (one document or JSON lines) is clean once ``params`` are dropped."""
    try:
        docs = [json.loads(text)]
    except ValueError:
        docs = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert_clean(json.dumps(without_params(docs)), sentinels, where)


def spool_files(project: Path) -> dict[str, str]:
    root = project / ".replicate" / "spool"
    return {
        str(p.relative_to(root)): p.read_bytes().decode("utf-8", "replace")
        for p in sorted(root.rglob("*"))
        if p.is_file() and "data" not in p.relative_to(root).parts
    }


def cli(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "replicate", *args],
        cwd=project,
        env={**os.environ, "NO_COLOR": "1", **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


TRAIN = """
    import os
    import sys
    import replicate
    api_key = os.environ["TRAIN_API_KEY"]
    experiment = replicate.init(
        path="train.py",
        params={"api_key": api_key, "headers": {"Authorization": "Bearer " + api_key}},
    )
    print("created", experiment.id, flush=True)
    with open("model.pth", "wb") as f:
        f.write(b"weights")
    checkpoint = experiment.checkpoint(path="model.pth", metrics={"loss": 1.0})
    print("checkpoint", checkpoint.id, flush=True)
    sys.stderr.write("training goes on\\n")
"""


def train(project: Path, url: str, token: str, auth: str, api_key: str) -> Any:
    project.mkdir(parents=True, exist_ok=True)
    (project / "train.py").write_text(textwrap.dedent(TRAIN))
    (project / "replicate.yaml").write_text(f"repository: {url}\n")
    return subprocess.run(
        [sys.executable, "train.py", f"--token={token}", "--authorization", f"Bearer {auth}"],
        cwd=project,
        env={**os.environ, "REPLICATE_EXIT_TIMEOUT": "5", "TRAIN_API_KEY": api_key},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def check_cli(project: Path, env: dict[str, str], every: list[str], *args: str) -> str:
    """Run ``replicate *args``; its stdout and stderr are clean; return stderr."""
    out = cli(project, env, *args)
    assert "Traceback" not in out.stderr
    assert_clean(out.stderr, every, f"stderr of {args}")
    if "--json" in args and out.stdout.strip():
        assert_clean_json(out.stdout, every, f"stdout of {args}")
    else:
        assert_clean(out.stdout, every, f"stdout of {args}")
    return out.stderr


def check_raised(exc: BaseException, every: list[str]) -> None:
    """The error, its repr and every error it was chained from are clean."""
    seen: BaseException | None = exc
    while seen is not None:
        assert_clean(f"{seen} {seen!r}", every, f"the error {type(seen).__name__}")
        seen = seen.__cause__ or seen.__context__


def check_init(
    url: str, project: Path, every: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """init() returns; the check it runs in the background fails with a clean error, and the
    line it prints at once is clean too."""
    experiment = replicate.init(repository=url, project_dir=project)
    with pytest.raises(ReplicateError) as raised:
        experiment.check_repository()
    check_raised(raised.value, every)
    experiment.stop(timeout=0)
    captured = capsys.readouterr()
    assert "cannot be saved to" in captured.err
    assert_clean(captured.err + captured.out, every, "init's output")


def check_logs(caplog: pytest.LogCaptureFixture, every: list[str]) -> None:
    """replicate's own records at any level, and every library's from WARNING up, are clean.

    (botocore's DEBUG records print signed headers, session token included: its choice, opted
    into by whoever turns DEBUG on for botocore.)
    """
    for record in caplog.records:
        if not record.name.startswith("replicate") and record.levelno < logging.WARNING:
            continue
        assert_clean(caplog.handler.format(record), every, f"log record {record.name}")


@pytest.mark.s3
@pytest.mark.parametrize("variable", ["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"])
def test_credentials_refused_by_the_server(
    variable: str,
    s3_bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """SeaweedFS refuses a wrong secret key or a session token: one line, no sentinel."""
    value = sentinel(variable)
    every = [value]
    monkeypatch.setenv(variable, value)
    url = f"s3://{s3_bucket}/repo"
    caplog.set_level(logging.DEBUG)
    check_init(url, tmp_path, every, capsys)
    check_logs(caplog, every)
    for args in (("ls", "--json"), ("show", "--json", "0000"), ("verify", "--json")):
        assert "access denied" in check_cli(tmp_path, {}, every, *args, "-R", url)


@pytest.mark.s3
def test_unreachable_endpoint_and_signed_url(
    s3_bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A refused endpoint with a one-second request deadline, and a signed-URL query string."""
    secret, signature = sentinel("secret"), sentinel("signature")
    every = [secret, signature]
    env = {
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{closed_port()}",
        "REPLICATE_REQUEST_DEADLINE": "1",
        "REPLICATE_JOB_DEADLINE": "2",  # the code's upload gives up too, and stays queued
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    signed = f"s3://{s3_bucket}/repo?X-Amz-Credential=AKIA&X-Amz-Signature={signature}"
    caplog.set_level(logging.DEBUG)
    for url in (f"s3://{s3_bucket}/repo", signed):
        check_init(url, tmp_path, every, capsys)
        for args in (("ls", "--json"), ("ls",)):
            assert "127.0.0.1" in check_cli(tmp_path, env, every, *args, "-R", url)
    check_logs(caplog, every)


@pytest.mark.s3
def test_missing_bucket(
    s3_bucket: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A bucket that does not exist: one line naming it, no credentials in it."""
    signature = sentinel("signature")
    every = [signature]
    url = f"s3://{s3_bucket}-missing/repo?X-Amz-Signature={signature}"
    caplog.set_level(logging.DEBUG)
    check_init(url, tmp_path, every, capsys)
    check_logs(caplog, every)
    assert f"{s3_bucket}-missing" in check_cli(tmp_path, {}, every, "ls", "-R", url)


@pytest.mark.gcs
def test_gcs_credentials_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A GOOGLE_APPLICATION_CREDENTIALS path that does not exist is not echoed."""
    path = str(tmp_path / sentinel("gcs") / "credentials.json")
    every = [path.split("/")[-2]]
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", path)
    stderr = check_cli(tmp_path, {}, every, "ls", "-R", "gs://some-bucket/repo")
    assert stderr == (
        "Error: cannot read the Google credentials named by GOOGLE_APPLICATION_CREDENTIALS "
        "(No such file or directory): point it at a service account key file, or unset it\n"
    )


def test_permanent_upload_failure(tmp_path: Path) -> None:
    """A disk repository whose checkpoints/ is a file: uploads fail for good; nothing leaks."""
    token, auth, api_key = sentinel("token"), sentinel("auth"), sentinel("apikey")
    every = [token, auth, api_key]
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "checkpoints").write_text("not a directory")
    project = tmp_path / "project"
    result = train(project, repo.as_uri(), token, auth, api_key)
    assert result.returncode == 0, result.stderr
    assert_clean(result.stdout + result.stderr, every, "the training script's output")
    journal = spool_files(project)
    assert journal
    for name, text in journal.items():  # a queued experiment job carries its params
        check = assert_clean_json if name.endswith((".json", ".jsonl")) else assert_clean
        check(text, every, name)
    for args in (("queue", "--json"), ("queue",), ("ls", "--json"), ("verify", "--json")):
        check_cli(project, {}, every, *args)
    experiment_id = result.stdout.split()[1]
    check_cli(project, {}, every, "show", "--json", experiment_id)
    record = (repo / "metadata" / "experiments" / f"{experiment_id}.json").read_text()
    assert api_key in record  # the user's own param, stored as given
    assert_clean_json(record, every, "the experiment JSON")
    assert "did not upload" in result.stderr or "not saved" in result.stderr, result.stderr
