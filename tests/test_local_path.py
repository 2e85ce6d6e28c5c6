"""Handing a framework a real local path: ``CheckpointView.local_path``, cached and checked."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from write import helpers

import replicate
from replicate.errors import DoesNotExist, ValidationError
from replicate.ids import random_id
from replicate.read import cache, files
from replicate.read.cache import MANIFEST


@pytest.fixture
def written(repo_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """An experiment whose one checkpoint holds files from outside the project; (url, id)."""
    monkeypatch.setenv("REPLICATE_CACHE_DIR", str(tmp_path / "cache"))
    project = tmp_path / "project"
    project.mkdir()
    outside = tmp_path / "framework-run"
    (outside / "ckpt" / "sub").mkdir(parents=True)
    (outside / "ckpt" / "weights.bin").write_bytes(b"w" * 5000)
    (outside / "ckpt" / "sub" / "state.json").write_text("{}")
    (outside / "model.ckpt").write_bytes(b"m" * 3000)
    experiment = replicate.init(repository=repo_url, project_dir=project)
    checkpoint = experiment.checkpoint_files(
        {"model.ckpt": outside / "model.ckpt", "hf": outside / "ckpt"}, step=3, metrics={"a": 1}
    )
    (outside / "model.ckpt").write_bytes(b"changed after the call")
    experiment.checkpoint(metrics={"a": 2})
    experiment.stop()
    monkeypatch.setenv("REPLICATE_REPOSITORY", repo_url)
    monkeypatch.chdir(project)
    return repo_url, checkpoint.id


class TestLocalPath:
    def test_file_and_directory_paths_hold_the_snapshot(self, written: tuple[str, str]) -> None:
        """Files and directories come back as real paths with the bytes of the call."""
        url, id = written
        assert set(helpers.tar_members(url, "checkpoints", id)) == {
            f"{id}/model.ckpt",
            f"{id}/hf/weights.bin",
            f"{id}/hf/sub/state.json",
        }
        checkpoint = replicate.experiments.get(_experiment_of(id)).checkpoint(id)
        assert checkpoint.local_path("model.ckpt").read_bytes() == b"m" * 3000
        folder = checkpoint.local_path("hf")
        assert (folder / "weights.bin").read_bytes() == b"w" * 5000
        assert (checkpoint.local_path() / "hf" / "sub" / "state.json").read_text() == "{}"

    def test_second_call_downloads_nothing(self, written: tuple[str, str]) -> None:
        """Once cached, the path comes back even with the tarball gone from the repository."""
        url, id = written
        checkpoint = replicate.experiments.get(_experiment_of(id)).checkpoint(id)
        first = checkpoint.local_path("model.ckpt")
        helpers_delete(url, f"checkpoints/{id}.tar.gz")
        assert checkpoint.local_path("model.ckpt") == first

    def test_damaged_cache_is_fetched_again(self, written: tuple[str, str]) -> None:
        """A truncated or rewritten cached file is never returned: the entry is fetched again."""
        _, id = written
        checkpoint = replicate.experiments.get(_experiment_of(id)).checkpoint(id)
        path = checkpoint.local_path("model.ckpt")
        path.write_bytes(b"m" * 10)  # truncated
        assert checkpoint.local_path("model.ckpt").read_bytes() == b"m" * 3000
        path.write_bytes(b"x" * 3000)  # same size, other bytes
        os.utime(path, ns=(1, 1))
        assert checkpoint.local_path("model.ckpt").read_bytes() == b"m" * 3000
        (path.parent / MANIFEST).write_text("not json")
        assert checkpoint.local_path("model.ckpt").read_bytes() == b"m" * 3000

    def test_an_entry_another_process_just_made_is_used_not_replaced(
        self, written: tuple[str, str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Two processes (two ranks) ask at once: the one that finds the other's whole entry
        in place, after it looked the first time, uses it and does not delete it under the
        other's reads."""
        _, id = written
        checkpoint = replicate.experiments.get(_experiment_of(id)).checkpoint(id)
        real = files.not_pending
        made: list[Path] = []

        def other_process_first(*args: Any) -> None:  # between the two looks at the entry
            monkeypatch.setattr(cache, "not_pending", real)
            made.append(checkpoint.local_path())
            (made[0] / "made-by-the-other").touch()  # not in the manifest: the entry stays whole
            real(*args)

        monkeypatch.setattr(cache, "not_pending", other_process_first)
        entry = checkpoint.local_path()
        assert made == [entry]
        assert (entry / "made-by-the-other").exists()
        assert (entry / "model.ckpt").read_bytes() == b"m" * 3000

    def test_missing_member_and_metrics_only(self, written: tuple[str, str]) -> None:
        """A name not in the checkpoint, or a checkpoint without files, is one clear error."""
        _, id = written
        experiment = replicate.experiments.get(_experiment_of(id))
        with pytest.raises(DoesNotExist, match=r"no file or directory 'nope'.*model\.ckpt"):
            experiment.checkpoint(id).local_path("nope")
        metrics_only = experiment.latest()
        assert metrics_only is not None
        with pytest.raises(DoesNotExist, match="only records metrics"):
            metrics_only.local_path()


class TestChosenId:
    def test_init_with_an_id(self, tmp_path: Path) -> None:
        """init(id=...) uses it; a malformed or existing id is refused."""
        url = (tmp_path / "repo").as_uri()
        chosen = random_id()
        with replicate.init(repository=url, project_dir=tmp_path, id=chosen) as experiment:
            assert experiment.id == chosen
        with pytest.raises(ValidationError, match="already exists"):
            replicate.init(repository=url, project_dir=tmp_path, id=chosen)
        with pytest.raises(ValidationError, match="64 lowercase hex"):
            replicate.init(repository=url, project_dir=tmp_path, id="abc")


def _experiment_of(checkpoint_id: str) -> str:
    (experiment,) = replicate.experiments.list()
    assert any(c.id == checkpoint_id for c in experiment.checkpoints)
    return experiment.id


def helpers_delete(url: str, key: str) -> None:
    from replicate.daemon import Daemon
    from replicate.repository import Repository

    async def delete(repo: Repository) -> None:
        await repo.storage.delete(key)

    Daemon.get().with_repository(url, delete)
