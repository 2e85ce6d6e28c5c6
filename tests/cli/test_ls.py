"""`replicate ls` / `list` / `ps` against real repositories and the Keepsake sample."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import pytest

from cli.helpers import (
    KEEPSAKE_BEST,
    KEEPSAKE_FIRST,
    KEEPSAKE_SGD,
    Written,
    invoke,
    write_object,
)
from replicate.ids import short_id
from replicate.repository import experiment_key


class TestLsWritten:
    def test_table_shows_best_and_latest(self, written: Written) -> None:
        """ls lists both experiments with best/latest checkpoints and the params that differ."""
        result = invoke("ls")
        assert result.exit_code == 0, result.output
        out = result.stdout
        header = out.splitlines()[0]
        for column in ("EXPERIMENT", "STARTED", "STATUS", "BEST CHECKPOINT", "LATEST CHECKPOINT"):
            assert column in header
        adam_ids = written.checkpoints["adam"]
        assert f"{short_id(adam_ids[2])} (step 2)" in out
        assert f"{short_id(adam_ids[3])} (step 3)" in out
        assert "loss=0.25" in out
        assert "lr=0.1" in out and "lr=0.01" in out
        assert "layers=" not in out  # the same everywhere: only shown with --all
        assert "stopped" in out
        assert all(len(line) <= 80 for line in out.splitlines())

    def test_all_shows_every_param(self, written: Written) -> None:
        """--all shows params that are the same everywhere, and the user."""
        result = invoke("ls", "--all")
        assert result.exit_code == 0, result.output
        assert "layers=2" in result.stdout
        assert "USER" not in result.stdout.splitlines()[0]  # 80 columns: on the line below
        user = getpass.getuser()
        assert any(line.startswith(f"  {user}") for line in result.stdout.splitlines())

    def test_params_column_on_a_wide_terminal(
        self, written: Written, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With room, PARAMS is a column; at 80 columns params go on a line below each row."""
        monkeypatch.setenv("COLUMNS", "160")
        assert "PARAMS" in invoke("ls").stdout.splitlines()[0]
        monkeypatch.setenv("COLUMNS", "80")
        lines = invoke("ls").stdout.splitlines()
        assert "PARAMS" not in lines[0]
        assert any(line.startswith("  lr=0.1") for line in lines)

    def test_quiet_prints_full_ids(self, written: Written) -> None:
        """-q prints one full experiment id per line, oldest first."""
        result = invoke("ls", "-q")
        assert result.stdout.split() == [written.adam, written.sgd]

    def test_json(self, written: Written) -> None:
        """--json gives records with status, best and latest checkpoint ids."""
        result = invoke("ls", "--json")
        body = json.loads(result.stdout)
        assert [e["id"] for e in body] == [written.adam, written.sgd]
        adam = body[0]
        assert adam["status"] == "stopped"
        assert adam["best_checkpoint"] == written.checkpoints["adam"][2]
        assert adam["latest_checkpoint"] == written.checkpoints["adam"][3]
        assert adam["params"] == {"lr": 0.1, "optimizer": "adam", "layers": 2}

    def test_filter_on_metric_and_param(self, written: Written) -> None:
        """Filters on best-checkpoint metrics and params keep only what matches."""
        assert invoke("ls", "-q", "--filter", "loss < 0.3").stdout.split() == [written.adam]
        assert invoke("ls", "-q", "--filter", "optimizer = sgd").stdout.split() == [written.sgd]
        both = invoke("ls", "-q", "--filter", "lr >= 0.01", "--filter", "status = stopped")
        assert both.stdout.split() == [written.adam, written.sgd]
        assert invoke("ls", "-q", "--filter", "step > 2").stdout.split() == [written.adam]

    def test_sort_descending(self, written: Written) -> None:
        """--sort lr-desc puts the larger learning rate first; --sort loss the lower loss."""
        assert invoke("ls", "-q", "--sort", "lr").stdout.split() == [written.sgd, written.adam]
        assert invoke("ls", "-q", "--sort", "lr-desc").stdout.split() == [
            written.adam,
            written.sgd,
        ]
        assert invoke("ls", "-q", "--sort", "loss-desc").stdout.split() == [
            written.sgd,
            written.adam,
        ]

    def test_ps_shows_only_running(self, written: Written) -> None:
        """ps lists no stopped experiment."""
        result = invoke("ps")
        assert result.exit_code == 0
        assert written.adam[:7] not in result.stdout
        assert "No running experiments" in result.stdout

    def test_list_alias(self, written: Written) -> None:
        """`list` is the same command as `ls`."""
        assert invoke("list", "-q").stdout == invoke("ls", "-q").stdout


class TestLsRunning:
    def test_running_experiment_in_ps(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An experiment with a live heartbeat shows as running in ls and ps."""
        import replicate

        url = (tmp_path / "repo").as_uri()
        monkeypatch.chdir(tmp_path)
        experiment = replicate.init(params={"lr": 1}, repository=url, project_dir=tmp_path)
        try:
            experiment.checkpoint(metrics={"loss": 1.0}, quiet=True).wait(30)
            assert invoke("ps", "-R", url, "-q").stdout.split() == [experiment.id]
            assert "running" in invoke("ls", "-R", url).stdout
        finally:
            experiment.stop()
        assert invoke("ps", "-R", url, "-q").stdout == ""


class TestLsKeepsake:
    def test_keepsake_sample(self, keepsake: Path) -> None:
        """The Keepsake sample lists three experiments; best of the first is step 2 by loss."""
        result = invoke("ls")
        assert result.exit_code == 0, result.output
        out = result.stdout
        assert all(id[:7] in out for id in (KEEPSAKE_FIRST, KEEPSAKE_SGD))
        assert f"{KEEPSAKE_BEST[:7]} (step 2)" in out
        assert "loss=0.3333" in out
        assert all(len(line) <= 80 for line in out.splitlines())

    def test_mixed_primary_metric_does_not_crash(self, keepsake: Path) -> None:
        """A checkpoint without primary_metric after ones with it (Keepsake crashed) is fine."""
        body = json.loads(invoke("ls", "--json").stdout)
        first = next(e for e in body if e["id"] == KEEPSAKE_FIRST)
        assert first["best_checkpoint"] == KEEPSAKE_BEST
        assert first["checkpoints"][-1]["primary_metric"] is None

    def test_nan_metric_in_json(self, keepsake: Path) -> None:
        """NaN metrics come out of --json as Keepsake's "[NaN]" strings (valid JSON)."""
        out = invoke("ls", "--json").stdout
        assert '"[NaN]"' in out and "NaN," not in out


class TestLsErrors:
    def test_corrupted_metadata_is_skipped_with_a_warning(self, keepsake: Path) -> None:
        """A corrupted experiment JSON is skipped with one warning on stderr."""
        url = (keepsake / ".keepsake").as_uri()
        write_object(url, experiment_key(KEEPSAKE_SGD), b"{not json")
        result = invoke("ls", "-q")
        assert result.exit_code == 0
        assert KEEPSAKE_SGD not in result.stdout and KEEPSAKE_FIRST in result.stdout
        assert "warning" in result.stderr and KEEPSAKE_SGD in result.stderr

    def test_filter_mixed_types(self, keepsake: Path) -> None:
        """Ordering a string param against a number is one clear error, exit 1."""
        result = invoke("ls", "--filter", "optimizer > 3")
        assert result.exit_code == 1
        assert "compare numbers with numbers" in result.stderr
        assert "Traceback" not in result.output

    def test_sort_mixed_types(self, keepsake: Path) -> None:
        """Sorting by a param that is a string here and a number there is a clear error."""
        url = (keepsake / ".keepsake").as_uri()
        record = json.loads((keepsake / ".keepsake" / experiment_key(KEEPSAKE_SGD)).read_bytes())
        record["params"]["optimizer"] = 3
        write_object(url, experiment_key(KEEPSAKE_SGD), json.dumps(record).encode())
        result = invoke("ls", "--sort", "optimizer")
        assert result.exit_code == 1
        assert "cannot sort by 'optimizer'" in result.stderr

    def test_unknown_filter_name(self, keepsake: Path) -> None:
        """A name no experiment has (a typo) is an error listing the metrics and params."""
        result = invoke("ls", "--filter", "lost < 1")
        assert result.exit_code == 1
        assert "'lost'" in result.stderr and "loss" in result.stderr

    def test_malformed_filter_is_a_usage_error(self, keepsake: Path) -> None:
        """A filter without an operator exits 2 (usage)."""
        result = invoke("ls", "--filter", "loss")
        assert result.exit_code == 2
        assert "name op value" in result.stderr

    def test_newer_repository_version(self, keepsake: Path) -> None:
        """A repository of format version 2 is refused in one line, exit 1."""
        (keepsake / ".keepsake" / "repository.json").write_text('{"version": 2}')
        result = invoke("ls")
        assert result.exit_code == 1
        assert "version 2" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


class TestLsQueued:
    def test_checkpoint_in_the_local_queue_is_marked(self, written_on_disk: Written) -> None:
        """A checkpoint still in this project's spool (owner dead) shows as (queued)."""
        from replicate.daemon.jobs import Job
        from replicate.daemon.spool import Spool, new_job_id
        from replicate.read import experiments
        from replicate.records import CheckpointRecord, PrimaryMetric
        from replicate.values import now

        spool = Spool(written_on_disk.project / ".replicate" / "spool")
        record = CheckpointRecord(
            id="ab" * 32,
            created=now(),
            metrics={"loss": 0.01},
            step=9,
            path="",
            primary_metric=PrimaryMetric("loss", "minimize"),
        )
        spool.commit(
            Job(
                id=new_job_id(),
                kind="checkpoint",
                owner="999999-deadbeef",
                repository=written_on_disk.url,
                experiment_id=written_on_disk.adam,
                root=spool.root,
                checkpoint=record,
            )
        )
        out = invoke("ls").stdout
        assert "abababa (step 9) (queued)" in out
        view = experiments.get(written_on_disk.adam)
        latest = view.latest()
        assert latest is not None and latest.upload_state == "queued"
        with pytest.raises(Exception, match="replicate wait"):
            latest.open("model.pth")
