"""Metadata writes are safe against other writers: `rm` and `gc` are never undone by a writer.

The worker re-reads the experiment JSON and merges its new checkpoints into what is stored
before each write, so what `rm` removed stays removed, on every backend.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import replicate
from replicate import maintenance
from replicate.config import load_config
from replicate.errors import UploadFailed
from replicate.repository import archive_key, experiment_key
from write import helpers


@pytest.fixture
def project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    (project / "model.pth").write_bytes(b"weights")
    return project


class TestRemovalAgainstAnOpenWriter:
    def test_a_removed_checkpoint_stays_removed(self, repo_url: str, project: Path) -> None:
        """rm of a checkpoint while its writer is still open (no heartbeat): later commits
        don't bring it back, and the JSON never points at its deleted tarball."""
        experiment = replicate.init(
            repository=repo_url, project_dir=project, disable_heartbeat=True
        )
        first = experiment.checkpoint(path="model.pth", metrics={"loss": 1.0})
        assert first.wait(60)
        config = load_config(repository=repo_url, project_dir=project)
        maintenance.remove(maintenance.plan_removal([first.id], config=config), config=config)
        second = experiment.checkpoint(path="model.pth", metrics={"loss": 0.5})
        third = experiment.checkpoint(metrics={"loss": 0.25})
        experiment.stop(raise_on_error=True)
        record = helpers.experiment(repo_url, experiment.id)
        assert helpers.checkpoint_ids(record) == [second.id, third.id]
        assert not helpers.exists(repo_url, archive_key("checkpoints", first.id))
        assert helpers.exists(repo_url, archive_key("checkpoints", second.id))

    def test_a_removed_experiment_is_not_recreated(self, repo_url: str, project: Path) -> None:
        """rm of the whole experiment while its writer is open: a later checkpoint fails
        (it says why) instead of writing the experiment back."""
        experiment = replicate.init(
            repository=repo_url, project_dir=project, disable_heartbeat=True
        )
        assert experiment.checkpoint(metrics={"loss": 1.0}).wait(60)
        config = load_config(repository=repo_url, project_dir=project)
        maintenance.remove(maintenance.plan_removal([experiment.id], config=config), config=config)
        late = experiment.checkpoint(metrics={"loss": 0.5})
        with pytest.raises(UploadFailed, match="it was deleted"):
            late.wait(60)
        experiment.stop()
        assert not helpers.exists(repo_url, experiment_key(experiment.id))


class TestFieldsOfOtherTools:
    def test_unknown_keys_survive_a_rewrite(self, tmp_path: Path, project: Path) -> None:
        """Keys written by a newer tool, at both levels, are kept when a commit rewrites the JSON."""
        url = (tmp_path / "repo").as_uri()
        experiment = replicate.init(repository=url, project_dir=project)
        first = experiment.checkpoint(metrics={"loss": 1.0})
        assert first.wait(60)
        path = tmp_path / "repo" / experiment_key(experiment.id)
        body = json.loads(path.read_text())
        body["future_field"] = {"x": [1, "[NaN]"]}
        body["checkpoints"][0]["parts"] = ["rank-1"]
        path.write_text(json.dumps(body))
        assert experiment.checkpoint(metrics={"loss": 0.5}).wait(60)
        experiment.stop()
        after = json.loads(path.read_text())
        assert after["future_field"] == {"x": [1, "[NaN]"]}
        assert list(after)[-1] == "future_field"
        assert after["checkpoints"][0]["parts"] == ["rank-1"]
        assert "parts" not in after["checkpoints"][1]
