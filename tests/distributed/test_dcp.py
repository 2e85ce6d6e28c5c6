"""Sharded checkpoints through DCP with real ranks: 2 processes, gloo on 127.0.0.1, DTensor.

The ranks (tests/distributed/dcp_worker.py) save with ``dcp.async_save``/``dcp.save`` through
ReplicateStorageWriter; the tests read the repository raw (tarfile, plain botocore), load
the checkpoints back at world size 1 here and at 2 in the ranks, and kill a rank mid-save.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
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

#: DCP says so whenever it loads without a process group, which is the point here.
SINGLE_PROCESS = pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning")
WORKER = Path(__file__).with_name("dcp_worker.py")
#: Seconds a rank may take; the process group's own timeout (60 s) fails a hang sooner.
RANK_TIMEOUT = 240


def start_ranks(
    projects: list[Path], args: list[str], env: dict[str, str]
) -> list[subprocess.Popen[str]]:
    """Start 2 ranks as torchrun does, rank ``r`` in ``projects[r]``, each in its own group."""
    port = str(free_ports(1)[0])
    procs = []
    for rank, project in enumerate(projects):
        rank_env = {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2"}
        rank_env |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "GLOO_SOCKET_IFNAME": "lo"}
        procs.append(
            subprocess.Popen(
                [sys.executable, str(WORKER), *args],
                cwd=project,
                env={**env, **rank_env},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,  # a process group per rank: killed as a node would be
            )
        )
    return procs


def finish(procs: list[subprocess.Popen[str]]) -> str:
    """Wait for the ranks; fail with every rank's output if one failed."""
    try:
        outputs = [proc.communicate(timeout=RANK_TIMEOUT)[0] for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    failed = [
        f"rank {r}: {out}"
        for r, (p, out) in enumerate(zip(procs, outputs, strict=True))
        if p.returncode
    ]
    assert not failed, "\n".join(reversed(failed))
    return "".join(outputs)


def members(tarball: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }


@dataclass
class Saved:
    """A finished 2-rank save job: the ranks' reports, the repository, a raw reader of it."""

    ranks: list[dict[str, Any]]
    url: str
    project: Path
    read: Callable[[str], bytes | None]

    def stored(self) -> dict[str, Any]:
        raw = self.read(f"metadata/experiments/{self.ranks[0]['id']}.json")
        assert raw is not None
        stored: dict[str, Any] = json.loads(raw)
        return stored


def environment(base: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("REPLICATE_RESUME", None)
    env["REPLICATE_CACHE_DIR"] = str(base / "cache")
    return env


@pytest.fixture(scope="module", params=["file", pytest.param("s3", marks=pytest.mark.s3)])
def saved(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Saved]:
    """Two ranks save 3 steps (2 async, 1 sync) into a local repository or a SeaweedFS bucket."""
    base = tmp_path_factory.mktemp(f"dcp-{request.param}")
    env = environment(base)
    bucket = endpoint = ""
    read: Callable[[str], bytes | None]
    if request.param == "s3":
        endpoint = request.getfixturevalue("s3_endpoint")
        bucket = new_bucket_name()
        make_s3_bucket(endpoint, bucket)
        env["AWS_ENDPOINT_URL_S3"] = endpoint
        client = s3_client(endpoint)
        url = f"s3://{bucket}/repo"

        def read(key: str) -> bytes | None:
            try:
                body: bytes = client.get_object(Bucket=bucket, Key=f"repo/{key}")["Body"].read()
            except client.exceptions.NoSuchKey:
                return None
            return body
    else:
        url = (base / "repo").as_uri()

        def read(key: str) -> bytes | None:
            path = base / "repo" / key
            return path.read_bytes() if path.exists() else None

    project = base / "project"
    project.mkdir()
    (project / "replicate.yaml").write_text(f"repository: {url}\n")
    (base / "out").mkdir()
    finish(start_ranks([project, project], ["save", str(base / "out")], env))
    ranks = [json.loads((base / "out" / f"save-rank-{r}.json").read_text()) for r in (0, 1)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REPLICATE_CACHE_DIR", str(base / "cache"))
        if endpoint:
            mp.setenv("AWS_ENDPOINT_URL_S3", endpoint)
        yield Saved(ranks, url, project, read)
    if bucket:
        delete_s3_bucket(endpoint, bucket)


def expected(step: int) -> dict[str, Any]:
    import torch

    return {
        "w": torch.arange(128, dtype=torch.float32).reshape(16, 8) + 1000 * step,
        "b": torch.arange(8, dtype=torch.float32) - step,
    }


def test_one_experiment_with_one_checkpoint_per_save(saved: Saved) -> None:
    """Both ranks share one experiment; it lists 3 checkpoints, each naming rank 1's part."""
    zero, one = saved.ranks
    assert zero["id"] == one["id"]
    stored = saved.stored()["checkpoints"]
    assert [(c["id"], c["step"]) for c in stored] == [(i, s) for i, s, _ in zero["parts"]]
    assert [c["step"] for c in stored] == [0, 1, 2]
    assert [c["parts"] for c in stored] == [[1], [1], [1]]
    assert [c["path"] for c in stored] == ["dcp"] * 3
    assert stored[0]["primary_metric"] == {"name": "loss", "goal": "minimize"}
    # both ranks' handles name the same checkpoints, and landed
    assert [p[:2] for p in one["parts"]] == [p[:2] for p in zero["parts"]]
    assert all(p[2] for p in zero["parts"] + one["parts"])


def test_every_part_is_in_the_repository(saved: Saved) -> None:
    """Rank 0's tarball holds .metadata and its shard; rank 1's part beside it holds its own."""
    for checkpoint in saved.stored()["checkpoints"]:
        id = checkpoint["id"]
        own, part = (
            saved.read(f"checkpoints/{id}.tar.gz"),
            saved.read(f"checkpoints/{id}.part-1.tar.gz"),
        )
        assert own is not None and part is not None
        assert sorted(members(own)) == [f"{id}/dcp/.metadata", f"{id}/dcp/__0_0.distcp"]
        assert sorted(members(part)) == [f"{id}/dcp/__1_0.distcp"]


def test_both_ranks_beat_while_they_run(saved: Saved) -> None:
    """Read by each rank while both ran: 2 of 2 ranks running; both beats gone after stop()."""
    assert [r["ranks_running"] for r in saved.ranks] == [[2, 2], [2, 2]]
    experiment_id = saved.ranks[0]["id"]
    assert saved.read(f"metadata/heartbeats/{experiment_id}.json") is None
    assert saved.read(f"metadata/heartbeats/{experiment_id}/rank-1.json") is None


def test_load_at_world_size_2_gives_the_saved_tensors(saved: Saved) -> None:
    """Both ranks loaded the latest (step 2) into fresh sharded tensors: equal to what they saved."""
    assert [r["latest"][1] for r in saved.ranks] == [2, 2]
    assert [r["loaded_equal"] for r in saved.ranks] == [True, True]


@SINGLE_PROCESS
def test_load_at_world_size_1_reshards(saved: Saved) -> None:
    """This one process loads every checkpoint of the 2 ranks into whole tensors: equal."""
    import torch
    import torch.distributed.checkpoint as dcp

    import replicate
    from replicate.integrations.torch import ReplicateStorageReader

    experiment = replicate.experiments.get(saved.ranks[0]["id"], repository=saved.url)
    assert [c.step for c in experiment.checkpoints] == [0, 1, 2]
    for checkpoint in experiment.checkpoints:
        assert checkpoint.step is not None
        state = {name: torch.zeros_like(t) for name, t in expected(0).items()}
        dcp.load(state, storage_reader=ReplicateStorageReader(checkpoint), no_dist=True)
        for name, tensor in expected(checkpoint.step).items():
            assert torch.equal(state[name], tensor), (checkpoint.step, name)


@SINGLE_PROCESS
def test_checkout_gives_one_directory_dcp_reads(saved: Saved, tmp_path: Path) -> None:
    """`replicate checkout` writes every part into dcp/, which DCP's FileSystemReader loads."""
    import torch
    import torch.distributed.checkpoint as dcp

    checkpoint = saved.stored()["checkpoints"][1]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "replicate",
            "checkout",
            checkpoint["id"][:12],
            "-o",
            str(tmp_path / "out"),
        ],
        cwd=saved.project,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "out" / "dcp").iterdir()) == [
        ".metadata",
        "__0_0.distcp",
        "__1_0.distcp",
    ]
    state = {name: torch.zeros_like(t) for name, t in expected(0).items()}
    reader = dcp.FileSystemReader(str(tmp_path / "out" / "dcp"))
    dcp.load(state, storage_reader=reader, no_dist=True)
    assert all(torch.equal(state[n], t) for n, t in expected(1).items())


def wait_for(path: Path, procs: list[subprocess.Popen[str]]) -> None:
    """Until a rank writes ``path`` (failing at once if a rank exits instead)."""
    deadline = time.monotonic() + RANK_TIMEOUT
    while not path.exists():
        ended = [p for p in procs if p.poll() is not None]
        assert not ended, f"a rank ended first: {ended[0].communicate()[0]}"
        assert time.monotonic() < deadline, f"no {path.name} within {RANK_TIMEOUT} s"
        time.sleep(0.05)  # polling a file another process writes: there is no event to wait on


def test_a_rank_killed_mid_save_never_commits_that_step(tmp_path: Path) -> None:
    """Two nodes (own project dirs and spools): rank 1's node is killed inside DCP's write of
    step 1. Step 1 never commits; after a restart (step 2) and `replicate wait` on both
    nodes, steps 0 and 2 are there, and every part they list is in the repository."""
    env = environment(tmp_path)
    url = (tmp_path / "repo").as_uri()
    nodes = [tmp_path / "node0", tmp_path / "node1"]
    for node in nodes:
        node.mkdir()
        (node / "replicate.yaml").write_text(f"repository: {url}\n")
    out = tmp_path / "out"
    out.mkdir()
    procs = start_ranks(nodes, ["crash", str(out)], env)
    try:
        wait_for(out / "stalled", procs)
    finally:
        for proc in procs:  # rank 1's node dies; torchrun then stops rank 0's too
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    crashed = json.loads((out / "crash-rank-0.json").read_text())
    experiment_id, (step0, _) = crashed["id"], crashed["saved"]

    finish(start_ranks(nodes, ["resume", str(out), experiment_id], env))
    resumed = json.loads((out / "resume-rank-0.json").read_text())
    step2 = resumed["saved"][0]
    assert resumed["saved"][2] is True
    for node in reversed(nodes):  # the node that died first, then rank 0's
        result = subprocess.run(
            [sys.executable, "-m", "replicate", "wait"],
            cwd=node,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        assert result.returncode == 0, result.stdout + result.stderr

    repo = tmp_path / "repo"
    stored = json.loads((repo / "metadata" / "experiments" / f"{experiment_id}.json").read_text())
    assert [(c["id"], c["step"]) for c in stored["checkpoints"]] == [(step0, 0), (step2, 2)]
    for checkpoint in stored["checkpoints"]:
        id = checkpoint["id"]
        assert checkpoint["parts"] == [1]
        assert sorted(members((repo / "checkpoints" / f"{id}.tar.gz").read_bytes())) == [
            f"{id}/dcp/.metadata",
            f"{id}/dcp/__0_0.distcp",
        ]
        part = members((repo / "checkpoints" / f"{id}.part-1.tar.gz").read_bytes())
        assert sorted(part) == [f"{id}/dcp/__1_0.distcp"]
    listed = {c["id"] for c in stored["checkpoints"]}
    on_disk = {p.name.split(".")[0] for p in (repo / "checkpoints").iterdir()}
    assert on_disk == listed  # nothing of step 1 was uploaded: it never reached a job
