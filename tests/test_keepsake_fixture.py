"""A repository written by the real Keepsake 0.4.2 decodes with the format-1 codec."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

import pytest
from canon import canon

from replicate.records import (
    ExperimentRecord,
    HeartbeatRecord,
    PrimaryMetric,
    decode_experiment,
    decode_heartbeat,
    encode_experiment,
)

SAMPLE = Path(__file__).parent / "fixtures" / "keepsake-0.4.2-sample"
REPOSITORY = SAMPLE / ".keepsake"
FIRST = "928ecab5399eb69f527461382d8b2b96274873a5e97d07d0ba0c3cd6c3cb7b24"
BEST = "5a9beec39810e0cc84830ac272ea9fd61ee7b00b292eb22556063439b5927deb"
LATEST = "27d2f33e84d2645514ab7c5b0e22587199b47f8aefedc1ef088c90d17eb83869"
RUNNING = "2c5eb5c7294d9ef8a0c08d263a0e745de44bc12ef28072a16138d96bfe093eb1"


def load_all() -> dict[str, ExperimentRecord]:
    """Decode every experiment JSON in the sample, keyed by id."""
    found = {}
    for path in sorted((REPOSITORY / "metadata" / "experiments").glob("*.json")):
        key = path.relative_to(REPOSITORY).as_posix()
        found[path.stem] = decode_experiment(path.read_bytes(), key)
    return found


@pytest.fixture
def experiments() -> dict[str, ExperimentRecord]:
    """All experiments of the sample."""
    return load_all()


@pytest.fixture
def first(experiments: dict[str, ExperimentRecord]) -> ExperimentRecord:
    """The experiment with four checkpoints."""
    return experiments[FIRST]


class TestKeepsakeSample:
    def test_three_experiments(self, experiments: dict[str, ExperimentRecord]) -> None:
        """The sample holds three experiments, each stored under its own id."""
        assert len(experiments) == 3
        assert all(record.id == id for id, record in experiments.items())

    def test_repository_version(self) -> None:
        """The sample declares repository format version 1."""
        assert json.loads((REPOSITORY / "repository.json").read_bytes()) == {"version": 1}

    def test_first_experiment_fields(self, first: ExperimentRecord) -> None:
        """Params, config and environment of the first experiment are read as written."""
        assert first.params == {
            "layers": [1, 2],
            "learning_rate": 0.01,
            "nothing": None,
            "num_epochs": 3,
            "optimizer": "adam",
        }
        assert first.config == {"repository": "file:///home/user/project/.keepsake", "storage": ""}
        assert (first.host, first.user, first.command, first.path) == ("", "root", "train.py", ".")
        assert first.python_version == "3.11.7"
        assert first.python_packages == {"keepsake": "0.4.2"}

    def test_four_checkpoints(self, first: ExperimentRecord) -> None:
        """The first experiment has four checkpoints, steps 0 to 3."""
        assert [c.step for c in first.checkpoints] == [0, 1, 2, 3]

    def test_nan_metric_is_float_nan(self, first: ExperimentRecord) -> None:
        """Keepsake's "[NaN]" metric is read back as a float NaN."""
        values = [c.metrics["nan_metric"] for c in first.checkpoints[:3]]
        assert all(isinstance(v, float) and math.isnan(v) for v in values)

    def test_integral_metric_stays_a_number(self, first: ExperimentRecord) -> None:
        """A loss Keepsake wrote as 1 is read as a number equal to 1.0."""
        assert first.checkpoints[0].metrics["loss"] == 1.0

    def test_best_by_loss(self, first: ExperimentRecord) -> None:
        """best() is the step-2 checkpoint with the lowest loss, not the metric-only step 3."""
        best = first.best()
        assert best is not None
        assert (best.id, best.step) == (BEST, 2)
        assert best.primary_metric == PrimaryMetric("loss", "minimize")
        assert best.path == "data/weights.txt"

    def test_latest(self, first: ExperimentRecord) -> None:
        """latest() is the metrics-only step-3 checkpoint with no files and no primary metric."""
        latest = first.latest()
        assert latest is not None
        assert (latest.id, latest.step, latest.path, latest.primary_metric) == (LATEST, 3, "", None)

    def test_keepsake_version(self, experiments: dict[str, ExperimentRecord]) -> None:
        """keepsake_version is read as replicate_version "0.4.2"."""
        assert {r.replicate_version for r in experiments.values()} == {"0.4.2"}

    def test_nanosecond_timestamps(self, first: ExperimentRecord) -> None:
        """Keepsake's 9- and 8-digit fractions are rounded to microseconds, in UTC."""
        assert first.created == datetime(2026, 11, 28, 11, 55, 42, 325783, tzinfo=UTC)
        assert first.checkpoints[2].created == datetime(
            2026, 11, 28, 11, 55, 42, 348187, tzinfo=UTC
        )

    def test_heartbeat(self) -> None:
        """The heartbeat file of the running experiment decodes."""
        path = REPOSITORY / "metadata" / "heartbeats" / f"{RUNNING}.json"
        expected = HeartbeatRecord(RUNNING, datetime(2026, 11, 28, 11, 55, 56, 546785, tzinfo=UTC))
        assert decode_heartbeat(path.read_bytes(), "heartbeat") == expected

    def test_reencode_is_identity(self, experiments: dict[str, ExperimentRecord]) -> None:
        """Re-encoding each experiment and decoding it again gives the same record."""
        for record in experiments.values():
            again = decode_experiment(encode_experiment(record), "again")
            assert canon(again) == canon(record)

    def test_reencode_keeps_keepsake_layout(self) -> None:
        """Re-encoded JSON has Keepsake's keys in Keepsake's order, versions key renamed."""
        path = REPOSITORY / "metadata" / "experiments" / f"{FIRST}.json"
        original = json.loads(path.read_bytes())
        written = json.loads(encode_experiment(decode_experiment(path.read_bytes(), "k")))
        assert list(written) == [
            "replicate_version" if k == "keepsake_version" else k for k in original
        ]
        assert list(written["checkpoints"][0]) == list(original["checkpoints"][0])
        assert written["checkpoints"][0]["metrics"] == original["checkpoints"][0]["metrics"]
        assert written["params"] == original["params"]
