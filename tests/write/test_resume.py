"""Resume after preemption, with real processes killed by SIGKILL of their process group."""

from __future__ import annotations

import io
import json
import os
import random
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import replicate
from replicate.errors import ValidationError
from replicate.repository import archive_key, experiment_key
from write import helpers

pytestmark = pytest.mark.slow

SIZE = 256 * 1024
STEPS = 12

TRAIN = f"""
import random, sys, replicate
experiment = replicate.init(path="train.py", params={{"lr": 0.01}}, resume="allow")
print("experiment", experiment.id, flush=True)
for step in range((experiment.latest().step + 1) if experiment.latest() else 0, {STEPS}):
    with open("model.pth", "wb") as f:
        f.write(random.Random(step).randbytes({SIZE}))
    checkpoint = experiment.checkpoint(path="model.pth", metrics={{"loss": 1 / (step + 1)}}, quiet=True)
    assert checkpoint.step == step, (checkpoint.step, step)
    print("checkpoint", checkpoint.id, checkpoint.step, flush=True)
experiment.stop()
print("done", flush=True)
"""


def start(project: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "train.py"],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, killed whole
    )


def read_object(url: str, key: str) -> bytes:
    return helpers.read(url, key)


class TestRestartLoop:
    def test_killed_and_resumed_until_done(self, tmp_path: Path) -> None:
        """Kill -9 of the process group at random points, restart the same command: one
        experiment, every returned checkpoint once, steps without gaps, one run per restart."""
        rng = random.Random(7)
        project = tmp_path / "project"
        project.mkdir()
        url = (tmp_path / "repo").as_uri()
        (project / "replicate.yaml").write_text(f"repository: {url}\n")
        (project / "train.py").write_text(TRAIN)
        experiments: set[str] = set()
        returned: dict[str, int] = {}
        kills = 0
        for attempt in range(6):
            process = start(project)
            assert process.stdout is not None
            kill_after = rng.randint(1, 4) if attempt < 4 else None
            seen = 0
            finished = False
            for line in process.stdout:
                kind, *rest = line.split()
                if kind == "experiment":
                    experiments.add(rest[0])
                elif kind == "checkpoint":
                    returned[rest[0]] = int(rest[1])
                    seen += 1
                    if kill_after is not None and seen >= kill_after:
                        os.killpg(process.pid, signal.SIGKILL)
                        kills += 1
                        break
                elif kind == "done":
                    finished = True
            _, err = process.communicate(timeout=60)
            if kill_after is None or seen < kill_after:  # not killed: it must have finished
                assert finished and process.returncode == 0, err
            if finished:
                break
        assert finished
        assert len(experiments) == 1
        (experiment_id,) = experiments
        body = json.loads(read_object(url, experiment_key(experiment_id)))
        stored = [(c["id"], c["step"]) for c in body["checkpoints"]]
        ids = [id for id, _ in stored]
        assert len(ids) == len(set(ids))  # each exactly once
        assert set(returned) <= set(ids)  # every returned checkpoint is there
        assert [step for _, step in stored] == list(range(STEPS))  # no gaps, increasing
        for id, step in stored:
            data = read_object(url, archive_key("checkpoints", id))
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
                member = tar.extractfile(f"{id}/model.pth")
                assert member is not None
                assert member.read() == random.Random(step).randbytes(SIZE)
        assert len(body["resumes"]) == kills
        shown = helpers.cli(project, "show", experiment_id[:7])
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.count("resumed ") == kills


HOLD = "import replicate, sys\ne = replicate.init(resume=True)\nprint(e.id, flush=True)\nsys.stdin.read()\n"


class TestResumeRules:
    def test_by_id_from_a_fresh_project_on_s3(self, s3_bucket: str, tmp_path: Path) -> None:
        """Another machine (new project dir, empty spool) continues the experiment by id."""
        url = f"s3://{s3_bucket}/repo"
        first = tmp_path / "vm1"
        first.mkdir()
        experiment = replicate.init(params={"lr": 0.1}, repository=url, project_dir=first)
        experiment.checkpoint(metrics={"loss": 1.0}, step=5)
        assert experiment.wait(60)
        experiment._daemon.stop_heartbeat(url, experiment.id)  # the VM is gone: no heartbeat
        second = tmp_path / "vm2"
        second.mkdir()
        resumed = replicate.init(
            params={"lr": 0.1}, repository=url, project_dir=second, resume=experiment.id[:10]
        )
        assert resumed.id == experiment.id
        later = resumed.checkpoint(metrics={"loss": 0.5})
        assert later.step == 6
        resumed.stop(raise_on_error=True)
        record = helpers.experiment(url, experiment.id)
        assert [c["step"] for c in record["checkpoints"]] == [5, 6]
        assert len(record["resumes"]) == 1

    def test_params_must_match_unless_updated(self, tmp_path: Path) -> None:
        """Different params: one line naming the keys; params_mismatch="update" records them."""
        url = (tmp_path / "repo").as_uri()
        project = tmp_path / "project"
        project.mkdir()
        experiment = replicate.init(
            params={"lr": 0.1, "bs": 32}, repository=url, project_dir=project
        )
        assert experiment.wait(60)
        with pytest.raises(ValidationError) as caught:
            replicate.init(
                params={"lr": 0.2, "bs": 32, "new": 1}, repository=url, project_dir=project,
                resume=experiment.id,
            )  # fmt: skip
        assert str(caught.value) == (
            f"params differ from experiment {experiment.short_id}'s: lr, new; pass the same "
            'params, or params_mismatch="update" to record the new values'
        )
        updated = replicate.init(
            params={"lr": 0.2, "bs": 32}, repository=url, project_dir=project,
            resume=experiment.id, params_mismatch="update",
        )  # fmt: skip
        updated.stop()
        record = helpers.experiment(url, experiment.id)
        assert record["params"] == {"lr": 0.2, "bs": 32}
        assert record["resumes"][0]["params_updated"] == ["lr"]

    def test_nothing_to_resume(self, tmp_path: Path) -> None:
        """resume=True with nothing to resume is an error; "allow" starts a new experiment."""
        url = (tmp_path / "repo").as_uri()
        project = tmp_path / "project"
        project.mkdir()
        with replicate.init(repository=url, project_dir=project):
            pass  # stopped cleanly: not resumable
        with pytest.raises(ValidationError, match="nothing to resume"):
            replicate.init(repository=url, project_dir=project, resume=True)
        fresh = replicate.init(repository=url, project_dir=project, resume="allow")
        fresh.stop()
        assert "resumes" not in helpers.experiment(url, fresh.id)

    def test_two_resumes_at_once(self, tmp_path: Path) -> None:
        """While one process runs a resumed experiment, a second resume is refused in one line."""
        url = (tmp_path / "repo").as_uri()
        project = tmp_path / "project"
        project.mkdir()
        (project / "replicate.yaml").write_text(f"repository: {url}\n")
        created = helpers.run_script(
            project, "import os, replicate\ne = replicate.init()\nprint(e.id)\nos._exit(0)\n"
        )  # ends without stop(): resumable
        experiment_id = created.stdout.strip()
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLD],
            cwd=project, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == experiment_id
            second = helpers.run_script(
                project,
                f"import replicate\ntry:\n    replicate.init(resume={experiment_id!r})\n"
                "except replicate.ValidationError as e:\n    print(e)\n",
            )
            assert second.stdout.strip() == (
                f"experiment {experiment_id[:7]} is running in another process on this "
                "machine: stop that process first, or resume a different experiment"
            )
        finally:
            holder.communicate("", timeout=60)
