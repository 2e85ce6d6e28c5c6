"""`replicate rm` and `replicate gc`: what they delete, what they keep, and when they refuse."""

from __future__ import annotations

from pathlib import Path

import pytest

import replicate
from cli.helpers import KEEPSAKE_BEST, KEEPSAKE_FIRST, Written, invoke, list_keys, read_object
from replicate.records import ExperimentRecord, decode_experiment
from replicate.repository import archive_key, experiment_key


def stored(url: str, experiment_id: str) -> ExperimentRecord:
    key = experiment_key(experiment_id)
    return decode_experiment(read_object(url, key), key)


class TestRm:
    def test_checkpoint_leaves_the_experiment_json(self, written: Written) -> None:
        """rm of a checkpoint rewrites the experiment JSON without it, then deletes its tarball."""
        doomed = written.checkpoints["adam"][1]
        result = invoke("rm", "-f", doomed[:9])
        assert result.exit_code == 0, result.output
        ids = [c.id for c in stored(written.url, written.adam).checkpoints]
        assert ids == [c for c in written.checkpoints["adam"] if c != doomed]
        assert archive_key("checkpoints", doomed) not in list_keys(written.url, "checkpoints/")
        assert archive_key("checkpoints", written.checkpoints["adam"][0]) in list_keys(
            written.url, "checkpoints/"
        )

    def test_experiments_and_checkpoints_together(self, written: Written) -> None:
        """rm of an experiment and a checkpoint of the other deletes exactly those."""
        result = invoke("rm", "-f", written.adam, written.checkpoints["sgd"][0])
        assert result.exit_code == 0, result.output
        keys = list_keys(written.url)
        assert not [k for k in keys if written.adam in k]
        assert not [k for k in keys if any(c in k for c in written.checkpoints["adam"])]
        assert [c.id for c in stored(written.url, written.sgd).checkpoints] == [
            written.checkpoints["sgd"][1]
        ]
        assert archive_key("experiments", written.sgd) in keys

    def test_refuses_without_terminal(self, written: Written) -> None:
        """Without -f and without a terminal, rm deletes nothing and says to pass -f."""
        before = list_keys(written.url)
        result = invoke("rm", written.adam)
        assert result.exit_code == 1
        assert "pass -f" in result.stderr
        assert list_keys(written.url) == before

    def test_refuses_running_experiment(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """rm of a running experiment is refused: its process would write it back."""
        url = (tmp_path / "repo").as_uri()
        monkeypatch.chdir(tmp_path)
        experiment = replicate.init(params={"a": 1}, repository=url, project_dir=tmp_path)
        try:
            experiment.wait(30)
            result = invoke("rm", "-f", "-R", url, experiment.id)
            assert result.exit_code == 1
            assert "is running" in result.stderr
        finally:
            experiment.stop()
        assert invoke("rm", "-f", "-R", url, experiment.id).exit_code == 0
        assert list_keys(url, "metadata/") == []

    def test_keepsake_checkpoint(self, keepsake: Path) -> None:
        """rm of a Keepsake checkpoint keeps the JSON readable by the Keepsake layout."""
        result = invoke("rm", "-f", KEEPSAKE_BEST[:7])
        assert result.exit_code == 0, result.output
        url = (keepsake / ".keepsake").as_uri()
        assert [c.step for c in stored(url, KEEPSAKE_FIRST).checkpoints] == [0, 1, 3]
        assert not (keepsake / ".keepsake" / archive_key("checkpoints", KEEPSAKE_BEST)).exists()


class TestGc:
    def test_dry_run_changes_nothing(self, written_on_disk: Written) -> None:
        """--dry-run lists what would go and deletes nothing."""
        before = list_keys(written_on_disk.url)
        result = invoke("gc", "--dry-run")
        assert result.exit_code == 0, result.output
        assert "Would delete 3 checkpoint(s) of 2 experiment(s)" in result.stdout
        assert list_keys(written_on_disk.url) == before

    def test_keeps_best_and_last(self, written_on_disk: Written) -> None:
        """gc keeps the best and the last checkpoint with files, and metrics-only ones."""
        result = invoke("gc", "-f", "--keep-best", "1", "--keep-last", "1")
        assert result.exit_code == 0, result.output
        adam, sgd = written_on_disk.checkpoints["adam"], written_on_disk.checkpoints["sgd"]
        url = written_on_disk.url
        assert [c.id for c in stored(url, written_on_disk.adam).checkpoints] == [adam[2], adam[3]]
        assert [c.id for c in stored(url, written_on_disk.sgd).checkpoints] == [sgd[1]]
        assert list_keys(url, "checkpoints/") == sorted(
            archive_key("checkpoints", id) for id in (adam[2], sgd[1])
        )

    def test_keep_last_two(self, written_on_disk: Written) -> None:
        """--keep-best 0 --keep-last 2 keeps the two most recent checkpoints with files."""
        result = invoke("gc", "-f", "--keep-best", "0", "--keep-last", "2")
        assert result.exit_code == 0, result.output
        steps = [c.step for c in stored(written_on_disk.url, written_on_disk.adam).checkpoints]
        assert steps == [1, 2, 3]  # step 3 is metrics-only: never a candidate

    def test_nothing_to_do(self, keepsake: Path) -> None:
        """gc with generous limits says there is nothing to delete."""
        result = invoke("gc", "--keep-last", "10")
        assert result.exit_code == 0
        assert "Nothing to delete" in result.stdout

    def test_skips_running(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Checkpoints of a running experiment are never pruned."""
        url = (tmp_path / "repo").as_uri()
        monkeypatch.chdir(tmp_path)
        experiment = replicate.init(params={"a": 1}, repository=url, project_dir=tmp_path)
        try:
            for step in range(3):
                (tmp_path / "w.bin").write_bytes(b"%d" % step)
                experiment.checkpoint(path="w.bin", step=step, quiet=True)
            experiment.wait(30)
            result = invoke("gc", "-f", "-R", url, "--keep-best", "0", "--keep-last", "0")
            assert result.exit_code == 0, result.output
            assert "Nothing to delete" in result.stdout
            assert "left 1 running experiment(s) alone" in result.stderr
        finally:
            experiment.stop()
