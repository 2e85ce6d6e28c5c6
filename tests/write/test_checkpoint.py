"""The write path end to end, in-process, on disk, S3 and GCS."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

import replicate
from replicate.daemon.spool import Spool
from replicate.errors import ValidationError
from replicate.records import decode_experiment
from write import helpers


def make_project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    (project / "train.py").write_text("print('training')\n")
    (project / "data").mkdir()
    (project / "data" / "labels.csv").write_text("a,b\n")
    return project


class TestCheckpointsLand:
    def test_each_checkpoint_holds_its_own_bytes(self, repo_url: str, tmp_path: Path) -> None:
        """Files overwritten right after checkpoint() returns are stored as they were at the call."""
        project = make_project(tmp_path)
        experiment = replicate.init(
            path=".", params={"lr": 0.1}, repository=repo_url, project_dir=project
        )
        ids = []
        for step in range(4):
            (project / "model.pth").write_bytes(f"weights at step {step}\n".encode() * 1000)
            checkpoint = experiment.checkpoint(
                path="model.pth",
                step=step,
                metrics={"loss": 1 / (step + 1), "nan": math.nan},
                primary_metric=("loss", "minimize"),
            )
            (project / "model.pth").write_bytes(b"overwritten")
            ids.append(checkpoint.id)
        experiment.stop()

        raw = helpers.read(repo_url, f"metadata/experiments/{experiment.id}.json")
        record = json.loads(raw)
        assert helpers.checkpoint_ids(record) == ids
        assert [c["step"] for c in record["checkpoints"]] == [0, 1, 2, 3]
        assert record["checkpoints"][0]["metrics"]["nan"] == "[NaN]"
        decoded = decode_experiment(raw, "experiment")  # and replicate's reader agrees
        assert math.isnan(decoded.checkpoints[0].metrics["nan"])
        assert decoded.best() is not None and decoded.best().step == 3  # type: ignore[union-attr]
        for checkpoint in experiment.checkpoints:
            tarball = helpers.read(repo_url, f"checkpoints/{checkpoint.id}.tar.gz")
            assert checkpoint.sha256 == hashlib.sha256(tarball).hexdigest()
        for step, id in enumerate(ids):
            members = helpers.tar_members(repo_url, "checkpoints", id)
            assert members == {f"{id}/model.pth": f"weights at step {step}\n".encode() * 1000}
        code = helpers.tar_members(repo_url, "experiments", experiment.id)
        assert sorted(code) == sorted(
            f"{experiment.id}/{p}" for p in ("train.py", "data/labels.csv")
        )
        assert not helpers.heartbeat_exists(repo_url, experiment.id)
        assert json.loads(helpers.read(repo_url, "repository.json")) == {"version": 1}
        assert Spool(project / ".replicate" / "spool").jobs() == []

    def test_experiment_json_has_keepsake_layout(self, repo_url: str, tmp_path: Path) -> None:
        """The experiment JSON has Keepsake's keys in Keepsake's order."""
        project = make_project(tmp_path)
        with replicate.init(params={"x": 1}, repository=repo_url, project_dir=project) as exp:
            exp.checkpoint(metrics={"loss": 0.5}, primary_metric=("loss", "MINIMIZE"))
        raw = json.loads(helpers.read(repo_url, f"metadata/experiments/{exp.id}.json"))
        assert list(raw) == [
            "id", "created", "params", "host", "user", "config", "command", "path",
            "python_version", "python_packages", "checkpoints", "replicate_version",
        ]  # fmt: skip
        assert list(raw["checkpoints"][0]) == [
            "id", "created", "metrics", "step", "path", "primary_metric",
        ]  # fmt: skip
        assert raw["checkpoints"][0]["primary_metric"] == {"name": "loss", "goal": "minimize"}
        assert raw["path"] == ""
        assert raw["config"]["repository"] == repo_url
        assert raw["created"].endswith("Z")

    def test_checkpoint_dir_hands_over_without_copy(self, repo_url: str, tmp_path: Path) -> None:
        """What is written into checkpoint_dir() becomes the checkpoint; an exception discards it."""
        project = make_project(tmp_path)
        experiment = replicate.init(repository=repo_url, project_dir=project)
        with experiment.checkpoint_dir(metrics={"loss": 1.0}) as directory:
            (directory / "model.pth").write_bytes(b"zero-copy weights")
            (directory / "sub").mkdir()
            (directory / "sub" / "opt.pt").write_bytes(b"optimizer")
        with pytest.raises(RuntimeError), experiment.checkpoint_dir() as directory:
            (directory / "model.pth").write_bytes(b"half written")
            raise RuntimeError("save failed")
        experiment.stop()
        (checkpoint_id,) = helpers.checkpoint_ids(helpers.experiment(repo_url, experiment.id))
        assert helpers.tar_members(repo_url, "checkpoints", checkpoint_id) == {
            f"{checkpoint_id}/model.pth": b"zero-copy weights",
            f"{checkpoint_id}/sub/opt.pt": b"optimizer",
        }

    def test_steps_auto_increment(self, tmp_path: Path) -> None:
        """Steps count up from the last one when omitted."""
        project = make_project(tmp_path)
        with replicate.init(repository=(tmp_path / "r").as_uri(), project_dir=project) as exp:
            steps = [exp.checkpoint(quiet=True).step for _ in range(3)]
            steps.append(exp.checkpoint(step=10, quiet=True).step)
            steps.append(exp.checkpoint(quiet=True).step)
        assert steps == [0, 1, 2, 10, 11]

    def test_default_repository_is_not_in_the_code_snapshot(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With no replicate.yaml, the local repository in the project is not tarred into itself."""
        project = make_project(tmp_path)
        monkeypatch.chdir(project)
        first = replicate.init(path=".")
        first.stop()
        second = replicate.init(path=".")
        second.stop()
        url = (project / ".replicate" / "storage").as_uri()
        members = helpers.tar_members(url, "experiments", second.id)
        assert all(".replicate" not in name for name in members)
        assert f"{second.id}/train.py" in members

    def test_replicateignore_is_honoured(self, tmp_path: Path) -> None:
        """Paths matched by .replicateignore stay out of the code snapshot."""
        project = make_project(tmp_path)
        (project / ".replicateignore").write_text("data/\n*.log\n")
        (project / "run.log").write_text("noise")
        with replicate.init(
            path=".", repository=(tmp_path / "r").as_uri(), project_dir=project
        ) as e:
            pass
        members = helpers.tar_members((tmp_path / "r").as_uri(), "experiments", e.id)
        assert sorted(members) == [f"{e.id}/.replicateignore", f"{e.id}/train.py"]


class TestBadInput:
    @pytest.mark.parametrize(
        ("kwargs", "needle"),
        [
            ({"metrics": {"loss": object()}}, "metrics['loss']"),
            ({"metrics": {"loss": 1}, "primary_metric": ("loss", "up")}, "maximize"),
            ({"metrics": {"loss": 1}, "primary_metric": ("acc", "maximize")}, "'acc'"),
            ({"path": "../outside.pth"}, "outside the project"),
            ({"path": "missing.pth"}, "matches nothing"),
            ({"step": "three"}, "step must be an integer"),
        ],
    )
    def test_programming_errors_raise_and_queue_nothing(
        self, tmp_path: Path, kwargs: dict[str, object], needle: str
    ) -> None:
        """Bad arguments raise one clear ValidationError and leave no job behind."""
        project = make_project(tmp_path)
        (tmp_path / "outside.pth").write_text("x")
        experiment = replicate.init(repository=(tmp_path / "r").as_uri(), project_dir=project)
        with pytest.raises(ValidationError) as info:
            experiment.checkpoint(**kwargs)  # type: ignore[arg-type]
        assert needle in str(info.value)
        assert "\n" not in str(info.value)
        experiment.stop()
        assert helpers.experiment((tmp_path / "r").as_uri(), experiment.id)["checkpoints"] == []

    def test_init_with_bad_params_leaves_nothing(self, tmp_path: Path) -> None:
        """A failed init() writes nothing to the repository or the spool."""
        project = make_project(tmp_path)
        with pytest.raises(ValidationError, match=r"params\['f'\]"):
            replicate.init(
                params={"f": {1, 2}}, repository=(tmp_path / "r").as_uri(), project_dir=project
            )
        with pytest.raises(ValidationError, match="matches nothing"):
            replicate.init(path="nope", repository=(tmp_path / "r").as_uri(), project_dir=project)
        assert not (tmp_path / "r" / "metadata").exists()
        assert Spool(project / ".replicate" / "spool").jobs() == []


class TestBackpressure:
    def test_checkpoint_waits_only_when_the_spool_budget_is_exceeded(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Over REPLICATE_SPOOL_MAX_BYTES, checkpoint() waits for earlier uploads and says so once."""
        monkeypatch.setenv("REPLICATE_SPOOL_MAX_BYTES", str(1024 * 1024))
        project = make_project(tmp_path)
        experiment = replicate.init(repository=(tmp_path / "r").as_uri(), project_dir=project)
        checkpoints = []
        for step in range(3):
            (project / "model.pth").write_bytes(bytes([step]) * 2 * 1024 * 1024)
            checkpoints.append(experiment.checkpoint(path="model.pth", quiet=True))
            # over budget: the previous checkpoint had to land before this call could queue
            assert all(c.done() for c in checkpoints[:-1])
        experiment.stop()
        assert capsys.readouterr().err.count("checkpointing faster than uploads") == 1
        assert all(c.wait(0) for c in checkpoints)


class TestHeartbeat:
    def test_heartbeat_exists_while_running_and_goes_at_stop(
        self, repo_url: str, tmp_path: Path
    ) -> None:
        """init()'s check writes the first heartbeat (in the background); stop() deletes it."""
        project = make_project(tmp_path)
        experiment = replicate.init(repository=repo_url, project_dir=project)
        experiment.check_repository()
        assert helpers.heartbeat_exists(repo_url, experiment.id)
        experiment.stop()
        assert not helpers.heartbeat_exists(repo_url, experiment.id)


FLUSH_RECORDER = """
import json, os, sys, threading, replicate
from replicate.daemon.flusher import FLUSHER

flushes = []  # (call, path, thread name) in call order, from any thread


def recording(real):
    def flush(fd):
        path = os.readlink(f"/proc/self/fd/{fd}")
        flushes.append((real.__name__, path, threading.current_thread().name))
        return real(fd)

    return flush


os.fsync, os.fdatasync = recording(os.fsync), recording(os.fdatasync)
experiment = replicate.init(path="train.py", repository=sys.argv[1])
with open("model.pth", "wb") as f:
    f.write(b"flushed weights")
before = len(flushes)
checkpoint = experiment.checkpoint(path="model.pth")
during = flushes[before:]
FLUSHER.drain()
experiment.stop()
print(json.dumps({"id": checkpoint.id, "during": during, "all": flushes[before:]}))
"""


class TestFullFsync:
    def test_opt_in_fsync_flushes_the_snapshot_before_checkpoint_returns(
        self, tmp_path: Path
    ) -> None:
        """With REPLICATE_FSYNC=1 checkpoint() fsyncs the staged copy before its journal line."""
        project = make_project(tmp_path)
        url = (tmp_path / "r").as_uri()
        (project / "record.py").write_text(FLUSH_RECORDER)
        result = subprocess.run(
            [sys.executable, "record.py", url],
            cwd=project,
            env={**os.environ, "REPLICATE_FSYNC": "1"},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        out = json.loads(result.stdout)
        spool = project / ".replicate" / "spool"
        staged = [
            i
            for i, (call, path, _thread) in enumerate(out["during"])
            if call == "fsync" and Path(path).parent.parent == spool / "data"
            and Path(path).name == "model.pth"
        ]  # fmt: skip
        journal = [
            i
            for i, (call, path, _thread) in enumerate(out["during"])
            if call == "fdatasync" and Path(path).parent == spool / "journal"
        ]
        assert staged, f"the staged snapshot was not flushed: {out['during']}"
        assert journal, f"the journal line was not flushed: {out['during']}"
        assert max(staged) < min(journal), "the snapshot must reach disk before the job exists"
        members = helpers.tar_members(url, "checkpoints", out["id"])
        assert members == {f"{out['id']}/model.pth": b"flushed weights"}

    @pytest.mark.parametrize("flag", ["1", "0"])
    def test_opt_in_fsync_flushes_what_lands_in_a_disk_repository(
        self, tmp_path: Path, flag: str
    ) -> None:
        """With REPLICATE_FSYNC=1 every file written into a file:// repository is flushed
        before its rename, and then its directory, and new directories' parents up to the
        root; without it, none of that."""
        project = make_project(tmp_path)
        repository = tmp_path / "r"
        (project / "record.py").write_text(FLUSH_RECORDER + "print(json.dumps(flushes))\n")
        result = subprocess.run(
            [sys.executable, "record.py", repository.as_uri()],
            cwd=project,
            env={**os.environ, "REPLICATE_FSYNC": flag},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        checkpoint_id = json.loads(result.stdout.splitlines()[0])["id"]
        flushes = [Path(path) for call, path, _thread in json.loads(result.stdout.splitlines()[1])]
        in_repository = [p for p in flushes if p.is_relative_to(repository)]
        if flag == "0":
            assert in_repository == []
            return
        tarball = [
            i
            for i, p in enumerate(flushes)
            if p.parent == repository / "checkpoints" and p.name.startswith(f".{checkpoint_id}.")
        ]
        metadata = [
            i
            for i, p in enumerate(flushes)
            if p.parent == repository / "metadata" / "experiments" and p.name.endswith(".tmp")
        ]
        assert tarball, f"the tarball was not flushed: {in_repository}"
        assert metadata, f"the experiment's metadata was not flushed: {in_repository}"
        for written, directory in [
            (tarball[0], repository / "checkpoints"),
            (metadata[0], repository / "metadata" / "experiments"),
        ]:
            renamed = [i for i, p in enumerate(flushes) if p == directory and i > written]
            assert renamed, f"{directory} was not flushed after its rename: {in_repository}"
        for new in [repository / "metadata", repository]:  # parents of new directories
            assert new in flushes, f"{new} was not flushed: {in_repository}"

    def test_by_default_the_journal_line_is_flushed_right_after_checkpoint_returns(
        self, tmp_path: Path
    ) -> None:
        """Without REPLICATE_FSYNC no flush runs in the call; a background thread flushes the line."""
        project = make_project(tmp_path)
        url = (tmp_path / "r").as_uri()
        (project / "record.py").write_text(FLUSH_RECORDER)
        env = {k: v for k, v in os.environ.items() if k != "REPLICATE_FSYNC"}
        result = subprocess.run(
            [sys.executable, "record.py", url],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        out = json.loads(result.stdout)
        journal = str(project / ".replicate" / "spool" / "journal")
        in_call = [f for f in out["during"] if f[2] == "MainThread"]
        assert in_call == [], f"checkpoint() flushed in the training thread: {in_call}"
        flushed = [
            f for f in out["all"] if f[0] == "fdatasync" and str(Path(f[1]).parent) == journal
        ]
        assert flushed, f"the journal line was never flushed: {out['all']}"
        assert {f[2] for f in flushed} == {"replicate-spool-flush"}
        members = helpers.tar_members(url, "checkpoints", out["id"])
        assert members == {f"{out['id']}/model.pth": b"flushed weights"}


class TestJournal:
    def test_journal_is_emptied_once_everything_landed(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The spool's journal does not grow without bound: with nothing pending it is emptied."""
        from replicate.daemon import spool

        monkeypatch.setattr(spool, "COMPACT_BYTES", 0)
        project = make_project(tmp_path)
        experiment = replicate.init(repository=(tmp_path / "r").as_uri(), project_dir=project)
        for step in range(20):
            experiment.checkpoint(metrics={"loss": step}, quiet=True)
        experiment.wait()
        journal = project / ".replicate" / "spool" / "journal"
        assert [p.stat().st_size for p in journal.iterdir()] == [0]
        experiment.checkpoint(metrics={"loss": 20}, quiet=True)  # appends after the truncation
        experiment.stop()
        record = helpers.experiment((tmp_path / "r").as_uri(), experiment.id)
        assert helpers.losses(record) == list(range(21))


class TestUnreachableRepository:
    @pytest.mark.s3
    def test_a_missing_bucket_is_said_at_once_and_the_experiment_stays_queued(
        self,
        s3_endpoint: str,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """init() on a bucket that does not exist returns (it checks in the background); the
        check prints one line saying how to create it, check_repository() raises it, and the
        experiment waits in the queue for `replicate wait`."""
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_endpoint)
        project = make_project(tmp_path)
        experiment = replicate.init(
            path=".", repository="s3://never-made/repo", project_dir=project
        )
        with pytest.raises(replicate.StorageError) as info:
            experiment.check_repository()
        message = str(info.value)
        assert "never-made" in message
        assert "create it" in message
        assert "\n" not in message
        experiment.stop()
        said = [line for line in capsys.readouterr().err.splitlines() if "cannot be saved" in line]
        expected = (
            f"replicate: warning: experiment {experiment.short_id} cannot be saved to "
            f"s3://never-made/repo: {message}. Its code and checkpoints are kept in the local "
            "queue: fix the repository, then `replicate wait` uploads them"
        )
        assert said == [expected]
        (job,) = Spool(project / ".replicate" / "spool").jobs()
        assert job.kind == "experiment"
        assert job.experiment_id == experiment.id
