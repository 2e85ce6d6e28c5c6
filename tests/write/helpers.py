"""Reading a repository back for assertions, through the library's own storage layer."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

from replicate.daemon import Daemon
from replicate.errors import ObjectNotFound
from replicate.records import ExperimentRecord, decode_experiment
from replicate.repository import Repository, archive_key, experiment_key, heartbeat_key

REPO_ROOT = Path(__file__).resolve().parents[2]


def read(url: str, key: str) -> bytes:
    """Return the object ``key`` of the repository at ``url``."""

    async def get(repo: Repository) -> bytes:
        return await repo.storage.read(key)

    return Daemon.get().with_repository(url, get)


def exists(url: str, key: str) -> bool:
    try:
        read(url, key)
    except ObjectNotFound:
        return False
    return True


def experiment(url: str, experiment_id: str) -> ExperimentRecord:
    key = experiment_key(experiment_id)
    return decode_experiment(read(url, key), key)


def heartbeat_exists(url: str, experiment_id: str) -> bool:
    return exists(url, heartbeat_key(experiment_id))


def tar_members(url: str, kind: str, id: str) -> dict[str, bytes]:
    """Member name -> content of a stored tarball."""
    data = read(url, archive_key(kind, id))  # type: ignore[arg-type]
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }


def run_script(
    project: Path, code: str, *, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` as a training script in ``project`` in a real Python subprocess."""
    script = project / "train.py"
    script.write_text(textwrap.dedent(code))
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=project,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def cli(
    project: Path, *args: str, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the replicate CLI in ``project`` as a real subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "replicate", *args],
        cwd=project,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_process(
    project: Path, args: list[str], *, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``python *args`` in ``project`` as a real subprocess."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=project,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
