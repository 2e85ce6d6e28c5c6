"""Crash and exit behaviour with real training processes (real SIGKILL, real interpreter exit)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from faults import FaultProxy, Pause
from servers import make_gcs_bucket, make_s3_bucket, start_seaweedfs

from replicate.daemon.spool import Spool
from replicate.storage.base import PART_SIZE
from write import helpers
from write.helpers import TRAIN, MiB, assert_landed, checkpoint_upload, project_for

pytestmark = pytest.mark.slow


class TestKilledTraining:
    def test_sigkill_after_checkpoint_then_wait_lands_everything(
        self, repo_url: str, tmp_path: Path
    ) -> None:
        """A training process SIGKILLed right after checkpoint() returns loses nothing: `wait` lands it."""
        project = project_for(tmp_path, repo_url)
        size = 8 * MiB
        result = helpers.run_script(
            project,
            TRAIN.format(steps=4, size=size, after="os.kill(os.getpid(), 9)"),
        )
        assert result.returncode == -signal.SIGKILL, result.stderr
        experiment_id, *checkpoint_ids = result.stdout.split()
        assert len(checkpoint_ids) == 4

        queue = helpers.cli(project, "queue", "--json")
        assert queue.returncode == 0, queue.stderr
        queued = json.loads(queue.stdout)
        assert queued, "the last checkpoint cannot have landed before the kill"
        assert {job["owner_alive"] for job in queued} == {False}

        waited = helpers.cli(project, "wait")
        assert waited.returncode == 0, waited.stderr
        assert_landed(repo_url, experiment_id, checkpoint_ids, size)
        assert not helpers.heartbeat_exists(repo_url, experiment_id)
        assert json.loads(helpers.cli(project, "queue", "--json").stdout) == []

    def test_script_that_just_returns_lands_everything(self, repo_url: str, tmp_path: Path) -> None:
        """A script that ends without stop() still lands every checkpoint before the process exits."""
        project = project_for(tmp_path, repo_url)
        size = 4 * MiB
        result = helpers.run_script(project, TRAIN.format(steps=3, size=size, after=""))
        assert result.returncode == 0, result.stderr
        experiment_id, *checkpoint_ids = result.stdout.split()
        assert_landed(repo_url, experiment_id, checkpoint_ids, size)
        assert not helpers.heartbeat_exists(repo_url, experiment_id)
        assert Spool(project / ".replicate" / "spool").jobs() == []

    @pytest.mark.s3
    def test_exit_timeout_leaves_the_rest_for_wait(
        self, s3_bucket: str, s3_proxy: FaultProxy, tmp_path: Path
    ) -> None:
        """REPLICATE_EXIT_TIMEOUT=0 leaves pending uploads queued, says how to finish, and `wait` does."""
        url = f"s3://{s3_bucket}/repo"
        project = project_for(tmp_path, url)
        size = MiB
        s3_proxy.add(Pause(), match=checkpoint_upload, times=None)  # never released: all pending
        result = helpers.run_script(
            project,
            TRAIN.format(steps=3, size=size, after=""),
            env={"REPLICATE_EXIT_TIMEOUT": "0", "AWS_ENDPOINT_URL_S3": s3_proxy.url},
        )
        assert result.returncode == 0, result.stderr
        assert "REPLICATE_EXIT_TIMEOUT reached" in result.stderr
        assert "replicate wait" in result.stderr
        experiment_id, *checkpoint_ids = result.stdout.split()
        assert json.loads(helpers.cli(project, "queue", "--json").stdout)
        waited = helpers.cli(project, "wait")  # straight to the server
        assert waited.returncode == 0, waited.stderr
        assert_landed(url, experiment_id, checkpoint_ids, size)


class TestStorageTrouble:
    def test_server_stopped_mid_upload_and_restarted(self, tmp_path: Path) -> None:
        """Uploads interrupted by a storage restart are retried and land."""
        data, log = tmp_path / "weed", tmp_path / "weed.log"
        server = start_seaweedfs(data, log)
        proxy = FaultProxy(server.url).start()
        try:
            make_s3_bucket(server.url, "restart")
            project = project_for(tmp_path, "s3://restart/repo")
            size = 2 * PART_SIZE  # a multipart upload
            script = TRAIN.format(steps=2, size=size, after="experiment.stop(raise_on_error=True)")
            (project / "train.py").write_text(script)
            part = proxy.add(
                Pause(after=PART_SIZE // 2),
                match=lambda r: r.method == "PUT" and "partNumber" in r.query,
            )
            env = {**os.environ, "AWS_ENDPOINT_URL_S3": proxy.url}
            process = subprocess.Popen(
                [sys.executable, "train.py"], cwd=project, env=env,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            held = part.wait()
            assert held.body_passed == PART_SIZE // 2 < (held.body_length or 0), "mid-upload"
            proxy.hold()  # nothing reaches the server until it is back
            server.process.kill()
            server.process.wait()
            server = start_seaweedfs(data, log, ports=server.ports)  # same ports, same data
            proxy.let_through()
            part.release()
            out, err = process.communicate(timeout=240)
            assert process.returncode == 0, err
            experiment_id, *checkpoint_ids = out.split()
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("AWS_ENDPOINT_URL_S3", server.url)
                assert_landed("s3://restart/repo", experiment_id, checkpoint_ids, size)
        finally:
            proxy.close()
            server.stop()

    def test_permanent_failure_is_queued_and_never_blocks_training(
        self, gcs_endpoint: str, tmp_path: Path
    ) -> None:
        """A deleted bucket fails the job with its error in `replicate queue`; training carries on."""
        make_gcs_bucket(gcs_endpoint, "doomed-bucket")
        project = project_for(tmp_path, "gs://doomed-bucket/repo")
        code = f"""
        import os, replicate
        from servers import delete_gcs_bucket
        experiment = replicate.init()
        experiment.wait()
        print("ready", flush=True)
        input()  # the test holds every request in the proxy from here on
        delete_gcs_bucket("{gcs_endpoint}", "doomed-bucket")
        open("model.pth", "wb").write(b"weights")
        checkpoint = experiment.checkpoint(path="model.pth", metrics={{"loss": 1}})
        later = experiment.checkpoint(metrics={{"loss": 0.5}})
        print("returned", flush=True)
        input()
        for c in (checkpoint, later):
            try:
                c.wait(timeout=60)
            except replicate.UploadFailed as exc:
                print("failed", exc)
        os.kill(os.getpid(), 9)
        """
        (project / "train.py").write_text(textwrap.dedent(code))
        servers_dir = str(Path(__file__).resolve().parents[1])
        with FaultProxy(gcs_endpoint) as proxy:
            env = {**os.environ, "PYTHONPATH": servers_dir, "STORAGE_EMULATOR_HOST": proxy.url}
            process = subprocess.Popen(
                [sys.executable, "train.py"], cwd=project, env=env, text=True,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )  # fmt: skip
            assert process.stdin is not None and process.stdout is not None
            assert process.stdout.readline() == "ready\n"
            proxy.hold()
            process.stdin.write("go\n")
            process.stdin.flush()
            # while held, no request reaches the server: checkpoint() cannot have waited for one
            assert process.stdout.readline() == "returned\n"
            proxy.let_through()
            out, err = process.communicate("go\n", timeout=120)
        assert process.returncode == -signal.SIGKILL, err
        assert "failed checkpoint" in out, out + err
        assert "bucket" in out.lower()
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("STORAGE_EMULATOR_HOST", gcs_endpoint)
            jobs = json.loads(helpers.cli(project, "queue", "--json").stdout)
            errors = [job["error"] for job in jobs if job["kind"] == "checkpoint"]
            assert len(errors) == 2
            assert all(e and "bucket" in e.lower() for e in errors), errors
            assert "failed" in helpers.cli(project, "queue").stdout
            waited = helpers.cli(project, "wait", "--timeout", "120")
        assert waited.returncode == 1
        assert "did not upload" in waited.stderr


class TestForkSafety:
    def test_forked_child_cannot_touch_the_parents_daemon(self, tmp_path: Path) -> None:
        """A forked child gets a clear error from checkpoint(); the parent's checkpoints still land."""
        url = (tmp_path / "repo").as_uri()
        project = project_for(tmp_path, url)
        code = """
        import os, replicate
        experiment = replicate.init()
        first = experiment.checkpoint(metrics={"loss": 1.0})
        pid = os.fork()
        if pid == 0:
            try:
                experiment.checkpoint(metrics={"loss": 2.0})
            except replicate.DaemonClosed as exc:
                print("child refused:", exc, flush=True)
                os._exit(0)
            os._exit(3)
        _, status = os.waitpid(pid, 0)
        print("child status", os.waitstatus_to_exitcode(status), flush=True)
        experiment.checkpoint(metrics={"loss": 0.5})
        experiment.stop()
        print(experiment.id)
        """
        result = helpers.run_script(project, code)
        assert result.returncode == 0, result.stderr
        assert "child refused: replicate cannot be used from a forked child" in result.stdout
        assert "child status 0" in result.stdout
        experiment_id = result.stdout.split()[-1]
        assert helpers.losses(helpers.experiment(url, experiment_id)) == [1.0, 0.5]


class TestDamagedSpool:
    def test_snapshot_lost_in_a_machine_crash_is_reported_not_uploaded(
        self, tmp_path: Path
    ) -> None:
        """A staged file that did not reach disk intact fails its job with a clear reason."""
        url = (tmp_path / "repo").as_uri()
        project = project_for(tmp_path, url)
        size = 64 * MiB
        result = helpers.run_script(
            project, TRAIN.format(steps=2, size=size, after="os.kill(os.getpid(), 9)")
        )
        assert result.returncode == -signal.SIGKILL, result.stderr
        experiment_id, *checkpoint_ids = result.stdout.split()
        staged = sorted((project / ".replicate" / "spool" / "data").glob("*/model.pth"))
        assert staged, "the last checkpoint was still queued at the kill"
        with staged[-1].open("r+b") as f:
            f.truncate(1000)  # what an unflushed page cache leaves after a power cut
        waited = helpers.cli(project, "wait")
        assert waited.returncode == 1
        assert "machine crash" in waited.stderr
        record = helpers.experiment(url, experiment_id)
        assert checkpoint_ids[-1] not in helpers.checkpoint_ids(record)


class TestCtrlCAtExit:
    @pytest.mark.s3
    def test_ctrl_c_during_the_exit_drain_leaves_the_rest_for_wait(
        self, s3_bucket: str, s3_proxy: FaultProxy, tmp_path: Path
    ) -> None:
        """Ctrl-C while the ended script is still uploading leaves the rest queued and says how to finish."""
        url = f"s3://{s3_bucket}/repo"
        project = project_for(tmp_path, url)
        size = 2 * MiB
        (project / "train.py").write_text(TRAIN.format(steps=3, size=size, after=""))
        # the drain cannot finish: checkpoint uploads are held halfway, never released
        s3_proxy.add(Pause(after=MiB), match=checkpoint_upload, times=None)
        process = subprocess.Popen(
            [sys.executable, "train.py"], cwd=project, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
            env={**os.environ, "AWS_ENDPOINT_URL_S3": s3_proxy.url},
        )  # fmt: skip
        assert process.stderr is not None
        seen = []
        for line in process.stderr:  # a pipe line from the child, not a guess
            seen.append(line)
            if "still saving" in line:
                process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=120)
        stderr = "".join(seen)
        assert "interrupted: leaving" in stderr, stderr
        assert "replicate wait" in stderr
        experiment_id, *checkpoint_ids = out.split()
        assert json.loads(helpers.cli(project, "queue", "--json").stdout)
        waited = helpers.cli(project, "wait")
        assert waited.returncode == 0, waited.stderr
        assert_landed(url, experiment_id, checkpoint_ids, size)


class TestSpoolTrouble:
    def test_a_spool_that_cannot_take_the_snapshot_never_breaks_training(
        self, tmp_path: Path
    ) -> None:
        """A snapshot the spool cannot hold (here: a file-size limit) is reported; training goes on."""
        url = (tmp_path / "repo").as_uri()
        project = project_for(tmp_path, url)
        (project / "big.pth").write_bytes(b"y" * (3 << 20))
        code = """
        import resource, signal, replicate
        experiment = replicate.init()
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))  # like a full disk
        big = experiment.checkpoint(path="big.pth", metrics={"loss": 1.0})
        print("returned", big.done(), bool(big.error))
        small = experiment.checkpoint(metrics={"loss": 0.5})
        experiment.stop()
        print("small landed", small.wait(30))
        print(experiment.id)
        """
        result = helpers.run_script(project, code)
        assert result.returncode == 0, result.stderr
        assert "returned True True" in result.stdout
        assert "was NOT saved: could not queue it in" in result.stderr
        assert "small landed True" in result.stdout
        assert helpers.losses(helpers.experiment(url, result.stdout.split()[-1])) == [0.5]
        assert not list((project / ".replicate" / "spool" / "data").iterdir())


class TestConcurrentWriters:
    def test_two_processes_write_one_repository_at_once(
        self, repo_url: str, tmp_path: Path
    ) -> None:
        """Two training processes writing to one repository at the same time both land everything."""
        projects = []
        for name in ("a", "b"):
            project = tmp_path / name
            project.mkdir()
            (project / "replicate.yaml").write_text(f"repository: {repo_url}\n")
            (project / "train.py").write_text(TRAIN.format(steps=3, size=MiB, after=""))
            projects.append(project)
        processes = [
            subprocess.Popen(
                [sys.executable, "train.py"],
                cwd=p,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for p in projects
        ]
        outputs = [p.communicate(timeout=120) for p in processes]
        assert [p.returncode for p in processes] == [0, 0], outputs
        for out, _ in outputs:
            experiment_id, *checkpoint_ids = out.split()
            assert_landed(repo_url, experiment_id, checkpoint_ids, MiB)

    def test_one_process_with_several_experiments(self, tmp_path: Path) -> None:
        """One process running two experiments interleaved keeps their checkpoints apart."""
        url = (tmp_path / "repo").as_uri()
        project = project_for(tmp_path, url)
        code = """
        import replicate
        first, second = replicate.init(params={"n": 1}), replicate.init(params={"n": 2})
        for step in range(5):
            first.checkpoint(metrics={"loss": step}, quiet=True)
            second.checkpoint(metrics={"loss": -step}, quiet=True)
        first.stop()
        second.stop()
        print(first.id, second.id)
        """
        result = helpers.run_script(project, code)
        assert result.returncode == 0, result.stderr
        first, second = result.stdout.split()
        assert helpers.losses(helpers.experiment(url, first)) == [
            0, 1, 2, 3, 4,
        ]  # fmt: skip
        assert helpers.losses(helpers.experiment(url, second)) == [
            0, -1, -2, -3, -4,
        ]  # fmt: skip
