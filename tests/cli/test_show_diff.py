"""`replicate show` and `replicate diff` against real repositories and the Keepsake sample."""

from __future__ import annotations

import json
from pathlib import Path

from cli.helpers import (
    KEEPSAKE_BEST,
    KEEPSAKE_FIRST,
    KEEPSAKE_LATEST,
    KEEPSAKE_SGD,
    Written,
    invoke,
    write_object,
)
from replicate.ids import short_id
from replicate.repository import experiment_key


class TestShowWritten:
    def test_experiment(self, written: Written) -> None:
        """show <experiment> prints params, system and a checkpoints table with best marked."""
        result = invoke("show", written.adam[:8])
        assert result.exit_code == 0, result.output
        out = result.stdout
        assert f"Experiment: {written.adam}" in out
        assert "Params" in out and "optimizer:" in out and "adam" in out
        assert "System" in out and "Python packages:" in out
        best_line = next(
            line
            for line in out.splitlines()
            if line.startswith(short_id(written.checkpoints["adam"][2]))
        )
        assert best_line.rstrip().endswith("best")

    def test_checkpoint(self, written: Written) -> None:
        """show <checkpoint> prints its metrics with the primary one marked."""
        checkpoint = written.checkpoints["sgd"][1]
        result = invoke("show", checkpoint[:10])
        assert result.exit_code == 0, result.output
        assert f"Checkpoint: {checkpoint}" in result.stdout
        loss_line = next(line for line in result.stdout.splitlines() if line.startswith("loss:"))
        assert "0.4" in loss_line and "(primary, minimize)" in loss_line

    def test_json(self, written: Written) -> None:
        """show --json of a checkpoint nests its experiment."""
        checkpoint = written.checkpoints["adam"][0]
        body = json.loads(invoke("show", "--json", checkpoint).stdout)
        assert body["id"] == checkpoint
        assert body["metrics"] == {"loss": 1, "accuracy": 0}
        assert body["experiment"]["id"] == written.adam


class TestShowKeepsake:
    def test_experiment_with_mixed_primary_metric(self, keepsake: Path) -> None:
        """The Keepsake experiment mixing checkpoints with and without primary_metric shows."""
        result = invoke("show", KEEPSAKE_FIRST[:7])
        assert result.exit_code == 0, result.output
        assert short_id(KEEPSAKE_LATEST) in result.stdout
        best_line = next(
            line for line in result.stdout.splitlines() if line.startswith(KEEPSAKE_BEST[:7])
        )
        assert "0.3333" in best_line and best_line.endswith("best")
        assert "NaN" in result.stdout

    def test_all_lists_packages(self, keepsake: Path) -> None:
        """--all lists the Python packages."""
        result = invoke("show", "--all", KEEPSAKE_FIRST[:7])
        assert "keepsake:" in result.stdout and "0.4.2" in result.stdout


class TestShowErrors:
    def test_unknown_prefix(self, keepsake: Path) -> None:
        """An id that matches nothing is one line, exit 1."""
        result = invoke("show", "ffffff")
        assert result.exit_code == 1
        assert "no experiment or checkpoint matches 'ffffff'" in result.stderr

    def test_ambiguous_prefix(self, keepsake: Path) -> None:
        """A prefix matching several ids lists the candidates."""
        result = invoke("show", "2")
        assert result.exit_code == 1
        assert "ambiguous" in result.stderr
        assert KEEPSAKE_LATEST[:12] in result.stderr

    def test_not_hex(self, keepsake: Path) -> None:
        """Something that cannot be an id says so."""
        result = invoke("show", "model.pth")
        assert result.exit_code == 1
        assert "not an id" in result.stderr

    def test_corrupted_metadata_is_an_error(self, keepsake: Path) -> None:
        """show of an experiment whose JSON is corrupted names the file, exit 1."""
        url = (keepsake / ".keepsake").as_uri()
        write_object(url, experiment_key(KEEPSAKE_SGD), b"[]")
        result = invoke("show", KEEPSAKE_SGD[:7])
        assert result.exit_code == 1
        assert "corrupted metadata" in result.stderr and KEEPSAKE_SGD in result.stderr


class TestDiff:
    def test_written(self, written: Written) -> None:
        """diff of two experiments compares their best checkpoints: only what differs."""
        result = invoke("diff", written.adam[:8], written.sgd[:8])
        assert result.exit_code == 0, result.output
        out = result.stdout
        assert short_id(written.checkpoints["adam"][2]) in out.splitlines()[0]
        assert short_id(written.checkpoints["sgd"][1]) in out.splitlines()[0]
        assert "lr:" in out and "optimizer:" in out
        assert "layers:" not in out  # the same on both sides
        loss = next(line for line in out.splitlines() if line.startswith("loss:"))
        assert loss.split()[1:] == ["0.25", "0.4"]

    def test_json(self, written: Written) -> None:
        """diff --json has only the differing rows."""
        body = json.loads(invoke("diff", "--json", written.adam, written.sgd).stdout)
        assert body["params"] == {"lr": [0.1, 0.01], "optimizer": ["adam", "sgd"]}
        assert body["metrics"]["loss"] == [0.25, 0.4]
        assert body["python_packages"] == {}

    def test_keepsake_checkpoints(self, keepsake: Path) -> None:
        """diff of two Keepsake checkpoints, one without a primary metric or files."""
        result = invoke("diff", KEEPSAKE_BEST[:7], KEEPSAKE_LATEST[:7])
        assert result.exit_code == 0, result.output
        out = result.stdout
        assert "path:" in out and "data/weights.txt" in out
        assert "Params\n(no difference)" in out
        nan_line = next(line for line in out.splitlines() if line.startswith("nan_metric:"))
        assert nan_line.split(maxsplit=2)[1:] == ["NaN", "(not set)"]

    def test_keepsake_experiments(self, keepsake: Path) -> None:
        """diff of three experiments puts three columns side by side."""
        result = invoke("diff", KEEPSAKE_FIRST[:7], KEEPSAKE_SGD[:7], "2c5e")
        assert result.exit_code == 0, result.output
        lr = next(line for line in result.stdout.splitlines() if line.startswith("learning_rate:"))
        assert lr.split()[1:] == ["0.01", "0.1", "0.05"]

    def test_one_id_is_a_usage_error(self, keepsake: Path) -> None:
        """diff needs two ids: exit 2."""
        assert invoke("diff", KEEPSAKE_FIRST[:7]).exit_code == 2
