"""One job, one status: `queue`, `wait`, `ls`, `show` and the Python API all say the same."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import replicate
from replicate.cli import cli
from replicate.config import load_config
from replicate.errors import UploadFailed
from replicate.maintenance import queue_states


def statuses(project: Path, url: str, experiment_id: str, checkpoint_id: str) -> dict[str, str]:
    """The status of one queued checkpoint as each reader reports it."""
    runner = CliRunner()
    found = {}
    queue = json.loads(runner.invoke(cli, ["queue", "--json"]).stdout)
    found["queue"] = next(j["status"] for j in queue if j["checkpoint"] == checkpoint_id)
    ls = json.loads(runner.invoke(cli, ["ls", "--json", "-R", url]).stdout)
    (listed,) = [e for e in ls if e["id"] == experiment_id]
    found["ls"] = next(c["upload_state"] for c in listed["checkpoints"] if c["id"] == checkpoint_id)
    show = json.loads(runner.invoke(cli, ["show", "--json", "-R", url, experiment_id]).stdout)
    found["show"] = next(c["upload_state"] for c in show["checkpoints"] if c["id"] == checkpoint_id)
    view = replicate.experiments.get(experiment_id, repository=url, project_dir=project)
    found["python"] = next(c.upload_state for c in view.checkpoints if c.id == checkpoint_id)
    config = load_config(repository=url, project_dir=project)
    found["spool"] = next(
        s.status
        for s in queue_states(config)
        if s.job.checkpoint and s.job.checkpoint.id == checkpoint_id
    )
    return found


class TestOneStatus:
    def test_a_failed_job_is_failed_everywhere(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A job its live process gave up on reads "failed" in every command and the API."""
        project = tmp_path / "project"
        project.mkdir()
        monkeypatch.chdir(project)
        repo = tmp_path / "repo"
        url = repo.as_uri()
        experiment = replicate.init(repository=url, project_dir=project)
        assert experiment.wait(60)
        (repo / "checkpoints").write_bytes(b"")  # a file where the folder goes: writes fail
        (project / "model.pth").write_bytes(b"weights")
        checkpoint = experiment.checkpoint(path="model.pth", step=3, metrics={"loss": 1.0})
        with pytest.raises(UploadFailed):
            checkpoint.wait(60)
        found = statuses(project, url, experiment.id, checkpoint.id)
        assert found == dict.fromkeys(found, "failed")
        # `wait` agrees: the live owner gave up on it, so it is listed as failed, exit 1
        waited = CliRunner().invoke(cli, ["wait", "--timeout", "60"])
        assert waited.exit_code == 1
        assert f"checkpoint {checkpoint.short_id} (step 3)" in waited.stderr
        (repo / "checkpoints").unlink()
        experiment.stop()
