"""Without a process group of several ranks, ``init()`` is what it always was."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import replicate


def test_import_and_init_never_import_torch(tmp_path: Path) -> None:
    """``import replicate`` and a whole run leave torch unimported when the script does not."""
    script = textwrap.dedent(
        f"""
        import sys, replicate
        experiment = replicate.init(params={{"lr": 1}}, repository={(tmp_path / "repo").as_uri()!r})
        experiment.checkpoint(metrics={{"loss": 1}}).wait()
        experiment.stop()
        print(sorted(m for m in sys.modules if m.split(".")[0] == "torch"))
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def test_rank_variables_without_a_process_group_are_explained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """RANK/WORLD_SIZE alone: one warning line saying what happens and what to call; it goes on."""
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    experiment = replicate.init(repository=(tmp_path / "repo").as_uri(), project_dir=tmp_path)
    checkpoint = experiment.checkpoint(metrics={"loss": 1})
    experiment.stop()
    assert checkpoint.skipped is False and checkpoint.wait() is True
    warnings = [line for line in capsys.readouterr().err.splitlines() if "WORLD_SIZE" in line]
    assert warnings == [
        (
            "replicate: warning: RANK=1 and WORLD_SIZE=2 are set but no torch.distributed "
            "process group is initialized, so each rank makes its own experiment: call "
            "torch.distributed.init_process_group() before replicate.init() for one experiment "
            "shared by all ranks"
        )
    ]


def test_a_process_group_of_one_rank_changes_nothing(tmp_path: Path) -> None:
    """world size 1: init() is not collective and checkpoints are recorded as usual."""
    dist = pytest.importorskip("torch.distributed")
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        experiment = replicate.init(repository=(tmp_path / "repo").as_uri(), project_dir=tmp_path)
        checkpoint = experiment.checkpoint(metrics={"loss": 1})
        experiment.stop()
    finally:
        dist.destroy_process_group()
    assert type(experiment) is replicate.Experiment
    assert checkpoint.skipped is False and checkpoint.wait() is True
    stored = tmp_path / "repo" / "metadata" / "experiments" / f"{experiment.id}.json"
    assert checkpoint.id in stored.read_text()
