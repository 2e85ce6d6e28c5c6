"""Sharded checkpoints without a framework: each rank's part by hand, the commit rule, and the
maintenance commands (verify, rm, gc) that must know every part.

A "node" is a project directory with its own spool. Rank 0 runs in a subprocess that ends
with its checkpoint still waiting for rank 1's part; rank 1 is this process (a RankExperiment,
what ``init()`` gives ranks other than 0); ``replicate wait`` then finishes the commit.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path
from typing import Any

import pytest

import replicate
from replicate import maintenance
from replicate.config import load_config
from replicate.distributed import Rank, RankExperiment
from replicate.records import ExperimentRecord

#: What a rank writes: DCP-like names, small bytes.
FILES = {
    0: {".metadata": b"metadata of step {step}", "__0_0.distcp": b"rank 0 at step {step}"},
    1: {"__1_0.distcp": b"rank 1 at step {step}"},
}


def write_part(
    experiment: replicate.Experiment, checkpoint_id: str | None, step: int, rank: int
) -> Any:
    """Rank ``rank``'s part of step ``step``: files written in place, handed over."""
    part = experiment.sharded_checkpoint(
        step=step, metrics={"loss": 1 / (step + 1)}, primary_metric=("loss", "minimize"), quiet=True
    )
    for name, content in FILES[rank].items():
        (part.directory() / name).write_bytes(content.replace(b"{step}", str(step).encode()))
    return part.hand_over(checkpoint_id or part.id, step, rank=rank, ranks=[1] if rank == 0 else [])


def members(path: Path) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(path.read_bytes()), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def stored(repo: Path, experiment_id: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (repo / "metadata" / "experiments" / f"{experiment_id}.json").read_text()
    )
    return data


RANK_0 = textwrap.dedent(
    """
    import json, sys
    import replicate
    sys.path.insert(0, {tests!r})
    from write.test_sharded import write_part

    experiment = replicate.init(params={{"lr": 0.1}})
    checkpoint = write_part(experiment, None, 0, 0)
    print(json.dumps({{"experiment": experiment.id, "checkpoint": checkpoint.id}}), flush=True)
    try:
        checkpoint.wait()  # gives up at REPLICATE_JOB_DEADLINE: rank 1's part never came
    except replicate.UploadFailed as exc:
        print(json.dumps({{"error": str(exc)}}), flush=True)
    """
)


def cli(node: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "replicate", *args],
        cwd=node,
        env={**env, "COLUMNS": "200", "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def test_rank_0_commits_once_every_part_landed(tmp_path: Path) -> None:
    """Rank 0's job waits for rank 1's part, says so in `queue` and `wait`, and commits it in
    the `replicate wait` after the part landed from the other node."""
    repo = tmp_path / "repo"
    nodes = [tmp_path / "node0", tmp_path / "node1"]
    for node in nodes:
        node.mkdir()
        (node / "replicate.yaml").write_text(f"repository: {repo.as_uri()}\n")
    env = {**os.environ, "REPLICATE_JOB_DEADLINE": "1", "REPLICATE_EXIT_TIMEOUT": "0"}
    env.pop("REPLICATE_REPOSITORY", None)
    tests = str(Path(__file__).parents[1])
    ran = subprocess.run(
        [sys.executable, "-c", RANK_0.format(tests=tests)],
        cwd=nodes[0],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = [json.loads(line) for line in ran.stdout.splitlines()]
    experiment_id, checkpoint_id = lines[0]["experiment"], lines[0]["checkpoint"]
    assert "waiting for the parts of rank 1" in lines[1]["error"]
    assert stored(repo, experiment_id)["checkpoints"] == []  # not committed: a part is missing
    assert (repo / "checkpoints" / f"{checkpoint_id}.tar.gz").exists()

    queue = json.loads(cli(nodes[0], "queue", "--json", env=env).stdout)
    assert [(q["checkpoint"], q["status"]) for q in queue] == [(checkpoint_id, "failed")]
    assert "waiting for the parts of rank 1" in queue[0]["error"]
    waited = cli(nodes[0], "wait", env=env)
    assert waited.returncode == 1
    assert "waiting for the parts of rank 1" in waited.stdout + waited.stderr

    # the other node: rank 1 of the same experiment uploads its part
    record = ExperimentRecord.from_dict(stored(repo, experiment_id))
    config = load_config(repository=repo.as_uri(), project_dir=nodes[1])
    rank_1 = RankExperiment(record, config, Rank(1, 2), None)
    part = write_part(rank_1, checkpoint_id, 0, 1)
    assert part.wait(60) and part.error is None
    rank_1.stop(raise_on_error=True)
    assert stored(repo, experiment_id)["checkpoints"] == []  # rank 1's job never commits

    waited = cli(nodes[0], "wait", env={**env, "REPLICATE_JOB_DEADLINE": "60"})
    assert waited.returncode == 0, waited.stdout + waited.stderr
    [checkpoint] = stored(repo, experiment_id)["checkpoints"]
    assert (checkpoint["id"], checkpoint["step"], checkpoint["parts"]) == (checkpoint_id, 0, [1])
    assert members(repo / "checkpoints" / f"{checkpoint_id}.part-1.tar.gz") == {
        f"{checkpoint_id}/dcp/__1_0.distcp": b"rank 1 at step 0"
    }
    assert cli(nodes[0], "queue", "--json", env=env).stdout.strip() == "[]"


@pytest.fixture
def sharded_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str, list[str]]:
    """Three sharded checkpoints (steps 0-2, loss falling), both parts from this process."""
    repo = tmp_path / "repo"
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    monkeypatch.setenv("REPLICATE_REPOSITORY", repo.as_uri())
    experiment = replicate.init(params={"lr": 0.1})
    ids = []
    for step in range(3):
        first = write_part(experiment, None, step, 0)
        write_part(experiment, first.id, step, 1)
        ids.append(first.id)
    experiment.stop(raise_on_error=True)
    assert [c["id"] for c in stored(repo, experiment.id)["checkpoints"]] == ids
    return repo, experiment.id, ids


def test_verify_checks_every_part(sharded_repo: tuple[Path, str, list[str]]) -> None:
    """verify streams each part; a truncated or missing part of rank 1 is named."""
    repo, _, ids = sharded_repo
    report = maintenance.verify()
    assert report.problems == [] and report.tarballs == 6
    part = repo / "checkpoints" / f"{ids[0]}.part-1.tar.gz"
    part.write_bytes(part.read_bytes()[:20])
    (repo / "checkpoints" / f"{ids[1]}.part-1.tar.gz").unlink()
    problems = sorted(p.line() for p in maintenance.verify().problems)
    assert len(problems) == 2
    assert f"checkpoints/{ids[1]}.part-1.tar.gz is missing" in problems[0] + problems[1]
    assert any(f"{ids[0]}.part-1.tar.gz" in p and "truncated" in p for p in problems), problems


def test_rm_and_gc_delete_every_part(sharded_repo: tuple[Path, str, list[str]]) -> None:
    """rm of a sharded checkpoint, and gc of an old one, delete rank 0's tarball and rank 1's part."""
    repo, experiment_id, ids = sharded_repo
    maintenance.remove(maintenance.plan_removal([ids[0][:10]]))
    plan = maintenance.plan_gc(keep_best=1, keep_last=1)
    assert [c.id for c in plan.doomed] == [ids[1]]
    maintenance.remove(plan.removal)
    assert [c["id"] for c in stored(repo, experiment_id)["checkpoints"]] == [ids[2]]
    assert sorted(p.name for p in (repo / "checkpoints").iterdir()) == [
        f"{ids[2]}.part-1.tar.gz",
        f"{ids[2]}.tar.gz",
    ]
    maintenance.remove(maintenance.plan_removal([experiment_id[:10]]))
    assert list((repo / "checkpoints").iterdir()) == []
