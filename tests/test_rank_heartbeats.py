"""Heartbeats of a job of several ranks: rank 0's says the world size, the others beat beside it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

import replicate
from replicate.values import format_time, now


def beat(repo: Path, key: str, body: dict[str, object]) -> None:
    path = repo / "metadata" / "heartbeats" / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body))


@pytest.fixture
def four_ranks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """An experiment whose rank 0 beats for 4 ranks; rank 2's beat is a minute old."""
    repo = tmp_path / "repo"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REPLICATE_REPOSITORY", repo.as_uri())
    experiment = replicate.init(params={"lr": 0.1}, disable_heartbeat=True)
    experiment.stop()
    fresh, stale = format_time(now()), format_time(now() - timedelta(seconds=60))
    id = experiment.id
    beat(repo, f"{id}.json", {"experiment_id": id, "last_heartbeat": fresh, "world_size": 4})
    for rank, last in ((1, fresh), (2, stale), (3, fresh)):
        body = {"experiment_id": id, "last_heartbeat": last, "rank": rank, "world_size": 4}
        beat(repo, f"{id}/rank-{rank}.json", body)
    return repo, id


@pytest.mark.usefixtures("four_ranks")
def test_ls_and_ps_say_how_many_ranks_run(tmp_path: Path) -> None:
    """`replicate ps` and `ls` show "running 3/4 ranks"; --json gives the numbers."""
    env = {**os.environ, "COLUMNS": "120", "NO_COLOR": "1"}
    for command in ("ps", "ls"):
        out = subprocess.run(
            [sys.executable, "-m", "replicate", command],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        assert "running 3/4 ranks" in out, out
    listed = subprocess.run(
        [sys.executable, "-m", "replicate", "ls", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    [entry] = json.loads(listed)
    assert (entry["status"], entry["ranks_running"], entry["world_size"]) == ("running", 3, 4)


def test_the_python_api_says_it(four_ranks: tuple[Path, str]) -> None:
    """ExperimentView.ranks_running is (3, 4); a single process's experiment says None."""
    _, id = four_ranks
    experiment = replicate.experiments.get(id[:10])
    assert experiment.ranks_running == (3, 4)
    assert experiment.status == "running"
    assert experiment.status_line == "running 3/4 ranks"
    assert experiment.is_running() and experiment.ranks_running == (3, 4)


def test_rank_0_dead_means_stopped(four_ranks: tuple[Path, str]) -> None:
    """Other ranks beating do not make an experiment run when rank 0's beat is stale."""
    repo, id = four_ranks
    old = format_time(now() - timedelta(minutes=5))
    beat(repo, f"{id}.json", {"experiment_id": id, "last_heartbeat": old, "world_size": 4})
    experiment = replicate.experiments.get(id[:10])
    assert (experiment.status, experiment.ranks_running) == ("stopped", None)


def test_rm_deletes_every_ranks_heartbeat(four_ranks: tuple[Path, str]) -> None:
    """Removing the experiment removes the other ranks' heartbeats too."""
    repo, id = four_ranks
    old = format_time(now() - timedelta(minutes=5))  # not running: rm refuses running ones
    beat(repo, f"{id}.json", {"experiment_id": id, "last_heartbeat": old, "world_size": 4})
    replicate.maintenance.remove(replicate.maintenance.plan_removal([id[:10]]))
    assert list((repo / "metadata" / "heartbeats").rglob("*.json")) == []
