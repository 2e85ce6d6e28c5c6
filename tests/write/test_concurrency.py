"""Concurrent writers: processes, threads, removal against an open writer, and two drains.

Every checkpoint lands exactly once, no write loses another's, and nothing removed comes back.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from crash import raw
from crash.chaos import pending_jobs

import replicate
from replicate import maintenance
from replicate.config import load_config
from write import helpers

pytestmark = pytest.mark.slow
MiB = 1 << 20


def tarballs(repo: Path) -> dict[str, tuple[int, int]]:
    """Every stored tarball of a disk repository -> (inode, mtime_ns): a rewrite changes both."""
    return {
        str(p.relative_to(repo)): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in repo.glob("*/*.tar.gz")
    }


def delayed(lock: Path, seconds: float) -> list[str]:
    """Prefix a command so every open of ``lock`` waits ``seconds`` first (strace fault injection)."""
    return [
        "strace", "-f", "-qq", "-e", "signal=none", "-o", "/dev/null", "-P", str(lock),
        "-e", "trace=openat", "-e", f"inject=openat:delay_enter={int(seconds * 1e6)}",
    ]  # fmt: skip


class TestTwoDrains:
    @pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace to widen the race")
    def test_two_waits_upload_each_job_of_a_dead_owner_once(self, tmp_path: Path) -> None:
        """Issue 8 defect 14: two `replicate wait`s on one spool with a dead owner's jobs.

        The race: drain B reads the journal (the jobs are pending), drain A takes the owner,
        lands the jobs and removes the owner's lock file and journal, then B takes the lock,
        creating the lock file again, and submits the jobs it read before. strace delays B's
        opens of that lock file (and, less, A's) so the interleaving happens every time.
        """
        repo = tmp_path / "repo"
        project = tmp_path / "project"
        project.mkdir()
        (project / "replicate.yaml").write_text(f"repository: {repo.as_uri()}\n")
        code = f"""
        import os, random, replicate
        experiment = replicate.init(params={{"a": 1}})
        for step in range(3):
            open("model.pth", "wb").write(random.Random(step).randbytes({4 * MiB}))
            print(experiment.checkpoint(path="model.pth", step=step, quiet=True).id, flush=True)
        os.kill(os.getpid(), 9)
        """
        killed = helpers.run_script(project, code)
        assert killed.returncode == -9, killed.stderr
        printed = killed.stdout.split()
        assert pending_jobs(project), "the last checkpoint was still queued at the kill"
        journals = list((project / ".replicate" / "spool" / "journal").glob("*.jsonl"))
        assert len(journals) == 1
        owner = journals[0].stem
        lock = project / ".replicate" / "spool" / "owners" / f"{owner}.lock"
        wait = [sys.executable, "-m", "replicate", "wait"]
        run = {"cwd": project, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
        late = subprocess.Popen([*delayed(lock, 3.0), *wait], **run)  # type: ignore[call-overload]
        first = subprocess.Popen([*delayed(lock, 1.0), *wait], **run)  # type: ignore[call-overload]
        first_out = first.communicate(timeout=120)
        assert first.returncode == 0, first_out
        assert late.poll() is None, "the late drain ended before the first: no race to test"
        landed = tarballs(repo)
        late_out = late.communicate(timeout=120)
        assert late.returncode == 0, late_out
        assert tarballs(repo) == landed, "a tarball was uploaded a second time"
        record = raw.experiment_json(repo.as_uri(), helpers_experiment_id(repo))
        assert record is not None
        assert [c["id"] for c in record["checkpoints"]] == printed
        assert not lock.exists() and not journals[0].exists()
        assert pending_jobs(project) == set()


def helpers_experiment_id(repo: Path) -> str:
    (path,) = (repo / "metadata" / "experiments").glob("*.json")
    return path.stem


def stored_ids(url: str, experiment_id: str) -> list[str]:
    record = raw.experiment_json(url, experiment_id)
    assert record is not None
    return [c["id"] for c in record["checkpoints"]]


def assert_holds(url: str, checkpoint_id: str, name: str, content: bytes) -> None:
    data = raw.read(url, f"checkpoints/{checkpoint_id}.tar.gz")
    assert data is not None, f"checkpoint {checkpoint_id} has no tarball"
    assert raw.tar_members(data) == {f"{checkpoint_id}/{name}": content}


@pytest.fixture(params=["file", pytest.param("s3", marks=pytest.mark.s3)])
def disk_or_s3(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    from conftest import make_repo_url

    return make_repo_url(request, request.param, tmp_path)


TWO_EXPERIMENTS = """
import random, sys, replicate
tag = sys.argv[1]
experiments = [replicate.init(params={"who": f"{tag}{n}"}) for n in range(2)]
for step in range(3):
    for n, experiment in enumerate(experiments):
        name = f"{tag}{n}.bin"
        open(name, "wb").write(random.Random(f"{tag}{n}{step}").randbytes(100_000))
        checkpoint = experiment.checkpoint(path=name, step=step, quiet=True)
        print(f"{tag}{n}", experiment.id, step, checkpoint.id, flush=True)
for experiment in experiments:
    experiment.stop(raise_on_error=True)
"""


class TestConcurrentWriters:
    def test_two_processes_with_two_experiments_each(self, disk_or_s3: str, tmp_path: Path) -> None:
        """Two processes, two experiments each, one repository: every checkpoint lands once."""
        project = tmp_path / "project"
        project.mkdir()
        (project / "replicate.yaml").write_text(f"repository: {disk_or_s3}\n")
        (project / "train.py").write_text(TWO_EXPERIMENTS)
        processes = [
            subprocess.Popen(
                [sys.executable, "train.py", tag],
                cwd=project,
                env=dict(os.environ),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for tag in ("a", "b")
        ]
        outputs = [p.communicate(timeout=180) for p in processes]
        assert [p.returncode for p in processes] == [0, 0], outputs
        lines = [line.split() for out, _ in outputs for line in out.splitlines()]
        by_experiment: dict[str, list[str]] = {}
        for who, experiment_id, step, checkpoint_id in lines:
            by_experiment.setdefault(experiment_id, []).append(checkpoint_id)
            content = random_bytes(f"{who}{step}")
            assert_holds(disk_or_s3, checkpoint_id, f"{who}.bin", content)
        assert len(by_experiment) == 4
        for experiment_id, ids in by_experiment.items():
            assert stored_ids(disk_or_s3, experiment_id) == ids

    def test_threads_checkpoint_one_experiment_at_once(
        self, disk_or_s3: str, tmp_path: Path
    ) -> None:
        """Eight threads calling checkpoint() on one experiment together: all land, once each."""
        project = tmp_path / "project"
        project.mkdir()
        experiment = replicate.init(repository=disk_or_s3, project_dir=project)
        barrier = threading.Barrier(8)
        made: dict[str, tuple[str, bytes]] = {}
        errors: list[BaseException] = []

        def train(thread: int) -> None:
            try:
                barrier.wait(30)
                for step in range(4):
                    name = f"t{thread}-{step}.bin"
                    content = random_bytes(name)
                    (project / name).write_bytes(content)
                    checkpoint = experiment.checkpoint(path=name, metrics={"thread": thread})
                    made[checkpoint.id] = (name, content)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
                errors.append(exc)

        threads = [threading.Thread(target=train, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        experiment.stop(raise_on_error=True)
        assert not errors, errors
        ids = stored_ids(disk_or_s3, experiment.id)
        assert sorted(ids) == sorted(made) and len(ids) == 32
        for checkpoint_id, (name, content) in made.items():
            assert_holds(disk_or_s3, checkpoint_id, name, content)


def random_bytes(seed: str) -> bytes:
    import random

    return random.Random(seed).randbytes(100_000)


class TestRemovalAgainstAnOpenWriter:
    def test_gc_while_uploads_go_on_after_stop_timeout_zero(
        self, repo_url: str, tmp_path: Path
    ) -> None:
        """gc after stop(timeout=0) (heartbeat gone, an upload still going): what gc removed
        stays removed, what lands later is listed, and nothing listed lacks its tarball."""
        project = tmp_path / "project"
        project.mkdir()
        experiment = replicate.init(repository=repo_url, project_dir=project)
        ids = []
        for step in range(4):
            (project / "model.pth").write_bytes(random_bytes(str(step)) * (1 + 40 * (step == 3)))
            checkpoint = experiment.checkpoint(path="model.pth", step=step, quiet=True)
            ids.append(checkpoint.id)
            if step < 3:
                assert checkpoint.wait(60)
        experiment.stop(timeout=0)  # deletes the heartbeat; the last upload goes on
        config = load_config(repository=repo_url, project_dir=project)
        plan = maintenance.plan_gc(keep_best=0, keep_last=1, config=config)
        doomed = {c.id for c in plan.doomed}
        assert {ids[0], ids[1]} <= doomed
        maintenance.remove(plan.removal, config=config)
        assert checkpoint.wait(60)
        experiment.wait(60)
        stored = stored_ids(repo_url, experiment.id)
        assert stored == [i for i in ids if i not in doomed]
        assert ids[3] in stored
        for checkpoint_id in ids:
            exists = helpers.exists(repo_url, f"checkpoints/{checkpoint_id}.tar.gz")
            assert exists == (checkpoint_id in stored), checkpoint_id
