"""Bad calls to checkpoint(): refused at the call, nothing staged, and the run goes on."""

from __future__ import annotations

from pathlib import Path

import pytest

import replicate
from replicate.errors import ValidationError
from write import helpers


def staged(project: Path) -> list[str]:
    data = project / ".replicate" / "spool" / "data"
    return sorted(p.name for p in data.iterdir()) if data.exists() else []


@pytest.fixture
def experiment(tmp_path: Path) -> replicate.Experiment:
    project = tmp_path / "project"
    project.mkdir()
    (project / "model.pth").write_bytes(b"weights")
    return replicate.init(repository=(tmp_path / "repo").as_uri(), project_dir=project)


class TestRefusedAtTheCall:
    def test_a_metric_name_that_is_not_utf8_never_poisons_later_checkpoints(
        self, experiment: replicate.Experiment, tmp_path: Path
    ) -> None:
        """A lone surrogate in a metric *name* is refused; every later checkpoint lands."""
        with pytest.raises(ValidationError, match="has a key that is not valid UTF-8"):
            experiment.checkpoint(metrics={"loss\udcff": 1.0})
        with pytest.raises(ValidationError, match="not valid UTF-8"):
            experiment.checkpoint(metrics={"loss": {"inner\ud800": 1}})
        later = [experiment.checkpoint(metrics={"loss": float(i)}) for i in range(3)]
        experiment.stop(raise_on_error=True)
        record = helpers.experiment((tmp_path / "repo").as_uri(), experiment.id)
        assert helpers.checkpoint_ids(record) == [c.id for c in later]

    def test_an_integer_too_large_to_store(
        self, experiment: replicate.Experiment, tmp_path: Path
    ) -> None:
        """10**5000 is refused at the call: nothing staged, the step does not advance."""
        experiment.checkpoint(path="model.pth", metrics={"loss": 1.0})  # step 0
        with pytest.raises(ValidationError, match=r"metrics\['x'\] is an integer too large"):
            experiment.checkpoint(path="model.pth", metrics={"x": 10**5000})
        assert len(staged(experiment.config.project_dir)) <= 1  # only step 0's, if not landed
        after = experiment.checkpoint(metrics={"loss": 0.5})
        assert after.step == 1
        assert experiment.wait(60)
        assert staged(experiment.config.project_dir) == []
        experiment.stop(raise_on_error=True)

    def test_checkpoint_dir_checks_the_step_before_the_block(
        self, experiment: replicate.Experiment
    ) -> None:
        """checkpoint_dir(step="bad") raises at the call, before anything is written."""
        with pytest.raises(ValidationError, match="step must be an integer, got a str"):
            experiment.checkpoint_dir(step="bad")  # type: ignore[arg-type]
        assert staged(experiment.config.project_dir) == []
        with experiment.checkpoint_dir(step=7) as d:
            (d / "model.pth").write_bytes(b"w")
        experiment.stop(raise_on_error=True)
