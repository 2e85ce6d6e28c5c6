"""Repositories written by the real write path, raw object access, and CLI runners."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from click.testing import CliRunner, Result

import replicate
from replicate.cli import cli
from replicate.daemon import Daemon
from replicate.repository import Repository

SAMPLE = Path(__file__).resolve().parents[1] / "fixtures" / "keepsake-0.4.2-sample"
KEEPSAKE_FIRST = "928ecab5399eb69f527461382d8b2b96274873a5e97d07d0ba0c3cd6c3cb7b24"
KEEPSAKE_BEST = "5a9beec39810e0cc84830ac272ea9fd61ee7b00b292eb22556063439b5927deb"
KEEPSAKE_LATEST = "27d2f33e84d2645514ab7c5b0e22587199b47f8aefedc1ef088c90d17eb83869"
KEEPSAKE_SGD = "983ac1366d9dca013a7de7d376862257e1ef02b056922b24a02bf086763cbdbb"


def copy_sample(tmp_path: Path) -> Path:
    """A copy of the Keepsake 0.4.2 sample project (keepsake.yaml -> file://.keepsake)."""
    project = tmp_path / "keepsake-project"
    shutil.copytree(SAMPLE, project)
    return project


def read_object(url: str, key: str) -> bytes:
    async def get(repository: Repository) -> bytes:
        return await repository.storage.read(key)

    return Daemon.get().with_repository(url, get)


def write_object(url: str, key: str, data: bytes) -> None:
    async def put(repository: Repository) -> None:
        await repository.storage.write(key, data)

    Daemon.get().with_repository(url, put)


def list_keys(url: str, prefix: str = "") -> list[str]:
    async def keys(repository: Repository) -> list[str]:
        return sorted(await repository.storage.list(prefix))

    return Daemon.get().with_repository(url, keys)


@dataclass
class Written:
    """Two experiments written by replicate.init/checkpoint/stop into ``url``.

    ``adam`` (lr 0.1): steps 0-2 with model.pth and loss 1, 0.5, 0.25 (best: step 2), then a
    metrics-only step 3 without a primary metric. ``sgd`` (lr 0.01): steps 0-1, loss 0.9, 0.4.
    """

    url: str
    project: Path
    adam: str = ""
    sgd: str = ""
    checkpoints: dict[str, list[str]] = field(default_factory=dict)


def write_experiments(url: str, project: Path) -> Written:
    """Run two small trainings with the real write path; stop() waits for every upload."""
    project.mkdir(parents=True, exist_ok=True)
    (project / "train.py").write_text("print('training')\n")
    written = Written(url, project)
    runs = [
        ("adam", {"lr": 0.1, "optimizer": "adam", "layers": 2}, [1.0, 0.5, 0.25]),
        ("sgd", {"lr": 0.01, "optimizer": "sgd", "layers": 2}, [0.9, 0.4]),
    ]
    for name, params, losses in runs:
        experiment = replicate.init(
            path="train.py", params=params, repository=url, project_dir=project
        )
        ids = []
        for step, loss in enumerate(losses):
            (project / "model.pth").write_bytes(f"{name} weights at step {step}\n".encode())
            checkpoint = experiment.checkpoint(
                path="model.pth",
                step=step,
                metrics={"loss": loss, "accuracy": 1 - loss},
                primary_metric=("loss", "minimize"),
                quiet=True,
            )
            ids.append(checkpoint.id)
        if name == "adam":
            ids.append(experiment.checkpoint(step=3, metrics={"loss": 0.1}, quiet=True).id)
        experiment.stop()
        setattr(written, name, experiment.id)
        written.checkpoints[name] = ids
    (project / "model.pth").unlink()
    return written


def invoke(*args: str, input: str | None = None) -> Result:
    """Run the CLI in-process with click's runner (stdout and stderr kept apart)."""
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def run_cli(cwd: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m replicate`` as a real subprocess in ``cwd``."""
    return subprocess.run(
        [sys.executable, "-m", "replicate", *args],
        check=False,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "80", "NO_COLOR": "1"},
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
