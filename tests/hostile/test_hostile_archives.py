"""Crafted tarballs stored where a checkpoint's tarball belongs: checkout, open and verify.

Each one gives one line (a CorruptedArchive), writes nothing outside the target and leaves
the target exactly as it was, whichever of the three reads it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli.helpers import invoke, read_object, write_object

import replicate
from hostile.crafted import CASES
from replicate.errors import CorruptedArchive
from replicate.repository import archive_key


@dataclass
class Stored:
    """One experiment with one checkpoint, written for real; its tarball is replaced per test."""

    url: str
    project: Path
    experiment: str
    checkpoint: str
    original: bytes


def write_one(url: str, project: Path) -> Stored:
    project.mkdir(parents=True, exist_ok=True)
    (project / "train.py").write_text("print('training')\n")
    (project / "model.pth").write_bytes(b"good weights\n")
    experiment = replicate.init(path="train.py", repository=url, project_dir=project)
    checkpoint = experiment.checkpoint(path="model.pth", step=0, quiet=True)
    experiment.stop()
    key = archive_key("checkpoints", checkpoint.id)
    return Stored(url, project, experiment.id, checkpoint.id, read_object(url, key))


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stored]:
    """A local file:// repository, shared by the whole table (each test restores the tarball)."""
    root = tmp_path_factory.mktemp("hostile")
    yield write_one((root / "repo").as_uri(), root / "project")


def listing(root: Path) -> dict[str, tuple[str, int, bytes]]:
    """Every entry under ``root``: kind, mode bits and bytes (a link's target), not followed."""
    found = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            entry = ("link", 0, os.readlink(path).encode())
        elif stat.S_ISDIR(info.st_mode):
            entry = ("dir", stat.S_IMODE(info.st_mode), b"")
        else:
            entry = ("file", stat.S_IMODE(info.st_mode), path.read_bytes())
        found[path.relative_to(root).as_posix()] = entry
    return found


@dataclass
class Scene:
    """A checkout target with files in it, and a directory outside it that must stay alone."""

    target: Path
    outside: Path

    def snapshot(self) -> tuple[dict[str, tuple[str, int, bytes]], ...]:
        return listing(self.target), listing(self.outside)


@pytest.fixture
def scene(tmp_path: Path) -> Scene:
    target, outside = tmp_path / "target", tmp_path / "outside"
    (target / "keep").mkdir(parents=True)
    (target / "model.pth").write_bytes(b"my own weights\n")
    (target / "keep" / "notes.txt").write_bytes(b"notes\n")
    (target / "secret.key").write_bytes(b"private\n")
    (target / "secret.key").chmod(0o600)
    outside.mkdir()
    (outside / "untouched.txt").write_bytes(b"outside\n")
    return Scene(target, outside)


@pytest.fixture
def crafted(request: pytest.FixtureRequest, stored: Stored, scene: Scene) -> Iterator[bytes]:
    """The case's bytes, stored as the checkpoint's tarball (the original is put back after)."""
    data = CASES[request.param](stored.checkpoint, scene.outside)
    key = archive_key("checkpoints", stored.checkpoint)
    write_object(stored.url, key, data)
    yield data
    write_object(stored.url, key, stored.original)


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("Error: "), stderr
    return lines[0]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("crafted", sorted(CASES), indirect=True)
class TestCraftedTarball:
    def test_checkout_refuses_and_changes_nothing(
        self, crafted: bytes, stored: Stored, scene: Scene, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """`replicate checkout -f` gives one line, exit 1, and leaves both directories alone."""
        monkeypatch.chdir(stored.project)
        before = scene.snapshot()
        result = invoke(
            "checkout", stored.checkpoint, "-R", stored.url, "-o", str(scene.target), "-f"
        )
        assert result.exit_code == 1, result.output
        one_error_line(result.stderr)
        assert scene.snapshot() == before
        assert not (scene.target.parent / "evil.txt").exists()

    def test_open_raises_corrupted_archive(
        self, crafted: bytes, stored: Stored, scene: Scene
    ) -> None:
        """Checkpoint.open of a name after the damage raises CorruptedArchive, nothing else."""
        experiment = replicate.experiments.get(stored.experiment, repository=stored.url)
        checkpoint = experiment.checkpoint(stored.checkpoint)
        before = scene.snapshot()
        with pytest.raises(CorruptedArchive) as caught:
            checkpoint.open("not-in-the-archive.txt")
        assert "\n" not in str(caught.value)
        assert scene.snapshot() == before

    def test_verify_reports_one_problem(
        self, crafted: bytes, stored: Stored, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """`replicate verify` names the checkpoint's tarball on one line and exits non-zero."""
        monkeypatch.chdir(stored.project)
        result = invoke("verify", stored.checkpoint, "-R", stored.url)
        assert result.exit_code != 0, result.output
        problems = [line for line in result.stdout.splitlines() if stored.checkpoint[:7] in line]
        assert len(problems) == 1, result.output
        assert archive_key("checkpoints", stored.checkpoint) in problems[0]


@pytest.mark.s3
@pytest.mark.timeout(60)
def test_the_140_byte_hang_on_s3(
    s3_bucket: str, scene: Scene, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The negative pax size, stored in a real S3 bucket: all three readers refuse it."""
    stored = write_one(f"s3://{s3_bucket}/repo", tmp_path / "project")
    data = CASES["pax size negative"](stored.checkpoint, scene.outside)
    write_object(stored.url, archive_key("checkpoints", stored.checkpoint), data)
    monkeypatch.chdir(stored.project)
    before = scene.snapshot()
    args = ("-R", stored.url)
    result = invoke("checkout", stored.checkpoint, *args, "-o", str(scene.target), "-f")
    assert "damaged pax header" in one_error_line(result.stderr)
    assert invoke("verify", stored.checkpoint, *args).exit_code != 0
    experiment = replicate.experiments.get(stored.experiment, repository=stored.url)
    with pytest.raises(CorruptedArchive, match="damaged pax header"):
        experiment.checkpoint(stored.checkpoint).open("model.pth")
    assert scene.snapshot() == before
