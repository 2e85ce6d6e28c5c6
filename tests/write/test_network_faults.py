"""Training against storage behind a fault-injecting proxy: resets, 503s, latency, stalls, outages.

Every case runs a real training script whose storage endpoint is the proxy (faults.py), and
checks the result straight at the server with plain clients. Each fault must have taken effect
(its rule's hits), so a case cannot pass by the fault missing its request.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from faults import (
    Delay,
    Fault,
    FaultProxy,
    Pass,
    Request,
    Reset,
    Stall,
    gcs_unavailable,
    s3_slow_down,
)

from write.helpers import TRAIN, MiB, assert_landed, checkpoint_upload, cli, project_for, run_script

pytestmark = pytest.mark.slow

SIZE = 2 * MiB  # one request per tarball on both backends
FINISH = "experiment.stop(raise_on_error=True)"


def gcs_checkpoint_upload(request: Request) -> bool:
    """A GCS upload (simple or resumable chunk) of a checkpoint's tarball of at least 1 MiB."""
    return (
        request.method in ("POST", "PUT")
        and "checkpoints" in request.target
        and (request.body_length or 0) > MiB
    )


@dataclass(frozen=True)
class Case:
    fault: Fault
    times: int | None
    every_request: bool = False  # else only checkpoint uploads
    env: tuple[tuple[str, str], ...] = ()


S3_CASES = {
    "reset-mid-body": Case(Reset(after=256 * 1024), times=2),
    "reset-before-body": Case(Reset(after=0), times=1),
    "slow-down": Case(s3_slow_down(), times=3),
    "latency": Case(Delay(0.2), times=None, every_request=True),
    # one attempt never answered: its read timeout (the request deadline) ends it, then a retry
    "stall": Case(Stall(), times=1, env=(("REPLICATE_REQUEST_DEADLINE", "3"),)),
}
GCS_CASES = {
    "reset-mid-body": Case(Reset(after=256 * 1024), times=2),
    "unavailable": Case(gcs_unavailable(), times=3),
    "stall": Case(Stall(), times=1, env=(("REPLICATE_REQUEST_DEADLINE", "3"),)),
}


def train_through(
    proxy: FaultProxy,
    url: str,
    tmp_path: Path,
    case: Case,
    env_var: str,
    match: Callable[..., bool],
) -> None:
    rule = proxy.add(case.fault, match=None if case.every_request else match, times=case.times)
    project = project_for(tmp_path, url)
    result = run_script(
        project,
        TRAIN.format(steps=2, size=SIZE, after=FINISH),
        env={env_var: proxy.url, **dict(case.env)},
        timeout=240,
    )
    assert result.returncode == 0, result.stderr
    assert rule.hits == (case.times or rule.hits) and rule.hits > 0, "the fault never fired"
    experiment_id, *checkpoint_ids = result.stdout.split()
    assert len(checkpoint_ids) == 2
    assert_landed(url, experiment_id, checkpoint_ids, SIZE)  # straight at the server


@pytest.mark.s3
@pytest.mark.parametrize("name", S3_CASES)
def test_s3_uploads_survive(
    name: str, s3_bucket: str, s3_proxy: FaultProxy, tmp_path: Path
) -> None:
    url = f"s3://{s3_bucket}/repo"
    train_through(s3_proxy, url, tmp_path, S3_CASES[name], "AWS_ENDPOINT_URL_S3", checkpoint_upload)


@pytest.mark.gcs
@pytest.mark.parametrize("name", GCS_CASES)
def test_gcs_uploads_survive(
    name: str,
    gcs_proxy: tuple[FaultProxy, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy, bucket = gcs_proxy
    assert proxy.upstream is not None
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.upstream)  # for the checks
    url = f"gs://{bucket}/repo"
    train_through(
        proxy, url, tmp_path, GCS_CASES[name], "STORAGE_EMULATOR_HOST", gcs_checkpoint_upload
    )


@pytest.mark.s3
def test_an_outage_past_the_job_deadline_stays_queued_until_wait(
    s3_bucket: str, s3_proxy: FaultProxy, tmp_path: Path
) -> None:
    """Storage down for longer than the retry budget: training ends, the job stays queued with
    its error, and `replicate wait` lands it once the server answers again."""
    down = threading.Event()
    down.set()

    def outage(request: Request) -> Fault:
        return s3_slow_down() if down.is_set() else Pass()

    rule = s3_proxy.add(outage, match=checkpoint_upload, times=None)
    url = f"s3://{s3_bucket}/repo"
    project = project_for(tmp_path, url)
    deadlines = {"REPLICATE_REQUEST_DEADLINE": "1", "REPLICATE_JOB_DEADLINE": "3"}
    result = run_script(
        project,
        TRAIN.format(steps=1, size=SIZE, after="experiment.stop()"),
        env={"AWS_ENDPOINT_URL_S3": s3_proxy.url, **deadlines},
    )
    assert result.returncode == 0, result.stderr
    assert rule.hits > 1, "retried before giving up"
    assert "replicate wait" in result.stderr  # the user is told how to finish
    experiment_id, checkpoint_id = result.stdout.split()
    queued = json.loads(cli(project, "queue", "--json").stdout)
    errors = {job["kind"]: job["error"] for job in queued}
    assert errors.get("checkpoint"), queued  # queued, with what went wrong
    # the last attempt's answer: the 503, or (on a loaded machine) no answer before the deadline
    said = errors["checkpoint"].lower()
    assert "503" in said or "slow" in said or "no answer" in said, said
    down.clear()  # the server is back
    waited = cli(project, "wait", env={"AWS_ENDPOINT_URL_S3": s3_proxy.url})
    assert waited.returncode == 0, waited.stderr
    assert_landed(url, experiment_id, [checkpoint_id], SIZE)
    assert json.loads(cli(project, "queue", "--json").stdout) == []
