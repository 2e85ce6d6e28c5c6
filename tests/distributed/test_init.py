"""Rank-aware ``init()`` with real ranks: 2 processes, a gloo process group on 127.0.0.1, CPU.

Each backend runs one job (tests/distributed/worker.py) whose ranks are started the way
torchrun starts them; the tests below read its reports and the repository, raw.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from servers import delete_s3_bucket, free_ports, make_s3_bucket, new_bucket_name, s3_client

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs torch"),
]

WORKER = Path(__file__).with_name("worker.py")


@dataclass
class Job:
    """What the two ranks reported, what they printed, and a raw reader of the repository."""

    ranks: list[dict[str, Any]]
    stdout: str
    read: Callable[[str], bytes | None]  # a repository-relative key -> its bytes, or None

    def stored(self, experiment_id: str) -> dict[str, Any]:
        raw = self.read(f"metadata/experiments/{experiment_id}.json")
        assert raw is not None
        stored: dict[str, Any] = json.loads(raw)
        return stored


def run_ranks(project: Path, out: Path, env: dict[str, str]) -> str:
    """Start 2 ranks as torchrun does (env:// rendezvous on 127.0.0.1); their joined stdout."""
    port = str(free_ports(1)[0])
    procs = []
    for rank in (0, 1):
        rank_env = {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2"}
        rank_env |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "GLOO_SOCKET_IFNAME": "lo"}
        procs.append(
            subprocess.Popen(
                [sys.executable, str(WORKER), str(out)],
                cwd=project,
                env={**env, **rank_env},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    try:
        outputs = [proc.communicate(timeout=180) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    failed = [
        f"rank {r}: {out}{err}"
        for r, (p, (out, err)) in enumerate(zip(procs, outputs, strict=True))
        if p.returncode
    ]
    assert not failed, "\n".join(reversed(failed))  # the first to crash is usually rank 1
    return "".join(stdout for stdout, _ in outputs)


def raw_file_reader(root: Path) -> Callable[[str], bytes | None]:
    def read(key: str) -> bytes | None:
        path = root / key
        return path.read_bytes() if path.exists() else None

    return read


def raw_s3_reader(endpoint: str, bucket: str, prefix: str) -> Callable[[str], bytes | None]:
    client = s3_client(endpoint)

    def read(key: str) -> bytes | None:
        try:
            body: bytes = client.get_object(Bucket=bucket, Key=f"{prefix}/{key}")["Body"].read()
        except client.exceptions.NoSuchKey:
            return None
        return body

    return read


@pytest.fixture(scope="module", params=["file", pytest.param("s3", marks=pytest.mark.s3)])
def job(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Job]:
    """One 2-rank job against a local repository or a SeaweedFS bucket."""
    base = tmp_path_factory.mktemp(f"distributed-{request.param}")
    env = dict(os.environ)
    env.pop("REPLICATE_RESUME", None)
    bucket = endpoint = ""
    if request.param == "s3":
        endpoint = request.getfixturevalue("s3_endpoint")
        bucket = new_bucket_name()
        make_s3_bucket(endpoint, bucket)
        env["AWS_ENDPOINT_URL_S3"] = endpoint
        url, read = f"s3://{bucket}/repo", raw_s3_reader(endpoint, bucket, "repo")
    else:
        url, read = (base / "repo").as_uri(), raw_file_reader(base / "repo")
    project = base / "project"
    project.mkdir()
    (project / "replicate.yaml").write_text(f"repository: {url}\n")
    (base / "out").mkdir()
    stdout = run_ranks(project, base / "out", env)
    ranks = [json.loads((base / "out" / f"rank-{rank}.json").read_text()) for rank in (0, 1)]
    yield Job(ranks, stdout, read)
    if bucket:
        delete_s3_bucket(endpoint, bucket)


def members(tarball: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
        return {
            member.name: tar.extractfile(member).read()  # type: ignore[union-attr]
            for member in tar.getmembers()
            if member.isfile()
        }


def test_every_rank_gets_rank_0s_experiment(job: Job) -> None:
    """Both ranks print the same id, and it is the one stored."""
    zero, one = (rank["first"] for rank in job.ranks)
    assert zero["id"] == one["id"]
    assert f"rank 0: experiment {zero['id']}" in job.stdout
    assert f"rank 1: experiment {zero['id']}" in job.stdout
    assert job.stored(zero["id"])["id"] == zero["id"]


def test_each_call_on_both_ranks_records_one_checkpoint(job: Job) -> None:
    """Three calls on each of 2 ranks: 3 checkpoints stored, rank 0's, with its files."""
    zero, one = (rank["first"] for rank in job.ranks)
    stored = job.stored(zero["id"])["checkpoints"][:3]  # the resume in the same job adds one
    assert [(c["id"], c["step"]) for c in stored] == [
        (c["id"], c["step"]) for c in zero["checkpoints"]
    ]
    assert [c["step"] for c in stored] == [0, 1, 2]
    for step, checkpoint in enumerate(stored):
        tarball = job.read(f"checkpoints/{checkpoint['id']}.tar.gz")
        assert tarball is not None
        expected = {f"{checkpoint['id']}/model.pth": f"weights at step {step}".encode()}
        assert members(tarball) == expected
    for checkpoint in one["checkpoints"]:
        assert job.read(f"checkpoints/{checkpoint['id']}.tar.gz") is None


def test_other_ranks_handles_say_skipped(job: Job) -> None:
    """Rank 1's handles are skipped and wait() at once; its checkpoint_dir is thrown away."""
    zero, one = (rank["first"] for rank in job.ranks)
    assert [(c["skipped"], c["waited"]) for c in zero["checkpoints"]] == [(False, True)] * 3
    assert [(c["skipped"], c["waited"]) for c in one["checkpoints"]] == [(True, True)] * 3
    assert [c["step"] for c in one["checkpoints"]] == [0, 1, 2]
    assert one["dir_left"] is False


def test_a_failed_init_on_rank_0_is_raised_on_every_rank(job: Job) -> None:
    """Rank 0's ValidationError reaches rank 1 as a DistributedError, not a hang."""
    zero, one = (rank["failed"] for rank in job.ranks)
    assert zero["error"] == "ValidationError"
    assert one["error"] == "DistributedError"
    assert one["message"].startswith("rank 0 could not start the experiment")
    assert "missing" in one["message"]


def test_resume_is_collective(job: Job) -> None:
    """Rank 0 resumes; both ranks read its latest checkpoint and go on from the next step."""
    first = job.ranks[0]["first"]
    zero, one = (rank["resumed"] for rank in job.ranks)
    assert zero["id"] == one["id"] == first["id"]
    assert zero["latest"] == one["latest"] == [first["checkpoints"][2]["id"], 2]
    assert [(c["skipped"], c["step"]) for c in zero["checkpoints"] + one["checkpoints"]] == [
        (False, 3),
        (True, 3),
    ]
    stored = job.stored(first["id"])
    assert [c["step"] for c in stored["checkpoints"]] == [0, 1, 2, 3]
    assert stored["checkpoints"][-1]["id"] == zero["checkpoints"][0]["id"]
    assert len(stored["resumes"]) == 1
    assert job.read(f"metadata/heartbeats/{first['id']}.json") is None  # rank 0 stopped it
