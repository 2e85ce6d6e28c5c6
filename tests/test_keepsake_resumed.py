"""A resumed experiment still reads as Keepsake 0.4.2 wrote its own: the strict field set.

The expected layout is taken from the real Keepsake sample (tests/fixtures), and each field is
checked the way Keepsake's Go decoder reads it (integers for steps, RFC 3339 times, NaN and
infinities as strings), with plain json and tarfile, not with replicate's codec. The
``keepsake`` test reads the same repository with the real Keepsake 0.4.2 (``make keepsake``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from write import helpers

import replicate

SAMPLE = Path(__file__).parent / "fixtures" / "keepsake-0.4.2-sample" / ".keepsake"
SAMPLE_ID = "928ecab5399eb69f527461382d8b2b96274873a5e97d07d0ba0c3cd6c3cb7b24"
#: What a resume adds to the experiment object (docs/format.md, "Fields added so far").
EXTRA = ["code_digest", "resumes"]
RESUME_KEYS = ["created", "host", "user", "command", "after_step", "code", "params_updated"]
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")
ID = re.compile(r"^[0-9a-f]{64}$")

FIRST = """
import os, replicate
experiment = replicate.init(path="train.py", params={"lr": 0.1, "clip": float("inf"), "eps": float("nan")})
with open("model.txt", "w") as f:
    f.write("weights at step 0")
experiment.checkpoint(path="model.txt", metrics={"loss": 1.0, "nan": float("nan")},
                      primary_metric=("loss", "minimize")).wait()
print(experiment.id, flush=True)
os._exit(0)  # killed: no stop()
"""


def sample_layout() -> tuple[list[str], list[str]]:
    """Keepsake's experiment keys and checkpoint keys, in order, from the real sample."""
    raw = json.loads((SAMPLE / "metadata" / "experiments" / f"{SAMPLE_ID}.json").read_bytes())
    keys = ["replicate_version" if k == "keepsake_version" else k for k in raw]
    return keys, list(raw["checkpoints"][0])


@dataclass
class Resumed:
    """A project whose experiment was killed after step 0 and resumed (changed code) for step 1."""

    project: Path
    url: str
    experiment_id: str
    checkpoint_id: str  # the checkpoint written after the resume
    heartbeat: bytes  # the heartbeat object while the resumed run was running


@pytest.fixture(scope="module")
def resumed(tmp_path_factory: pytest.TempPathFactory) -> Resumed:
    """Killed after its first checkpoint, resumed with changed code, one more checkpoint."""
    root = tmp_path_factory.mktemp("keepsake-resumed")
    url = (root / "repo").as_uri()
    project = root / "project"
    project.mkdir()
    (project / "replicate.yaml").write_text(f"repository: {url}\n")
    first = helpers.run_script(project, FIRST)
    assert first.returncode == 0, first.stderr
    experiment_id = first.stdout.strip()
    (project / "train.py").write_text("# changed after the kill\n")
    experiment = replicate.init(
        path="train.py",
        params={"lr": 0.1, "clip": float("inf"), "eps": float("nan")},  # the same: resumed
        project_dir=project,
        resume=True,
    )
    (project / "model.txt").write_text("weights at step 1")
    checkpoint = experiment.checkpoint(
        path="model.txt",
        metrics={"loss": 0.5, "nan": float("nan")},
        primary_metric=("loss", "Minimize"),
    )
    assert experiment.wait(60)
    heartbeat = helpers.read(url, f"metadata/heartbeats/{experiment_id}.json")
    experiment.stop(raise_on_error=True)
    return Resumed(project, url, experiment_id, checkpoint.id, heartbeat)


def check_checkpoint(checkpoint: dict[str, Any], keys: list[str]) -> None:
    """One checkpoint object as Keepsake's Go struct decodes it."""
    assert list(checkpoint) == keys  # nothing added at this level
    assert ID.match(checkpoint["id"]) and TIME.match(checkpoint["created"])
    assert isinstance(checkpoint["metrics"], dict)
    assert type(checkpoint["step"]) is int  # Go's int64: 1.0 would not decode
    assert isinstance(checkpoint["path"], str)
    primary = checkpoint["primary_metric"]
    assert primary is None or (
        list(primary) == ["name", "goal"] and primary["goal"] in ("maximize", "minimize")
    )


class TestResumedExperimentAsKeepsakeReadsIt:
    def test_experiment_keys_are_keepsakes_then_the_additions(self, resumed: Resumed) -> None:
        """Keepsake's keys in Keepsake's order, then only the documented additions."""
        experiment_keys, checkpoint_keys = sample_layout()
        raw = helpers.experiment(resumed.url, resumed.experiment_id)
        assert list(raw) == experiment_keys + EXTRA
        assert raw["id"] == resumed.experiment_id and TIME.match(raw["created"])
        assert raw["config"] == {"repository": resumed.url, "storage": ""}
        assert all(isinstance(raw[k], str) for k in ("host", "user", "command", "path"))
        assert all(isinstance(v, str) for v in raw["python_packages"].values())
        assert raw["params"] == {"lr": 0.1, "clip": "[+Infinity]", "eps": "[NaN]"}
        assert [c["step"] for c in raw["checkpoints"]] == [0, 1]
        for checkpoint in raw["checkpoints"]:
            check_checkpoint(checkpoint, checkpoint_keys)
            assert checkpoint["metrics"]["nan"] == "[NaN]"

    def test_resumes_entry(self, resumed: Resumed) -> None:
        """One resume: after step 0, with the changed code's snapshot named beside the old."""
        raw = helpers.experiment(resumed.url, resumed.experiment_id)
        (entry,) = raw["resumes"]
        assert list(entry) == RESUME_KEYS
        assert TIME.match(entry["created"]) and entry["after_step"] == 0
        assert ID.match(entry["code"]) and entry["code"] != resumed.experiment_id
        assert entry["params_updated"] == []
        old = helpers.tar_members(resumed.url, "experiments", resumed.experiment_id)
        new = helpers.tar_members(resumed.url, "experiments", entry["code"])
        assert list(old) == [f"{resumed.experiment_id}/train.py"]
        assert new == {f"{entry['code']}/train.py": b"# changed after the kill\n"}

    def test_checkpoint_after_resume_is_format_1(self, resumed: Resumed) -> None:
        """The checkpoint written after the resume: Keepsake's fields, its tarball committed."""
        raw = helpers.experiment(resumed.url, resumed.experiment_id)
        after = raw["checkpoints"][-1]
        assert after["id"] == resumed.checkpoint_id
        assert (after["step"], after["path"]) == (1, "model.txt")
        assert after["primary_metric"] == {"name": "loss", "goal": "minimize"}
        members = helpers.tar_members(resumed.url, "checkpoints", resumed.checkpoint_id)
        assert members == {f"{resumed.checkpoint_id}/model.txt": b"weights at step 1"}
        assert json.loads(helpers.read(resumed.url, "repository.json")) == {"version": 1}

    def test_heartbeat_while_resumed(self, resumed: Resumed) -> None:
        """The resumed run's heartbeat has exactly Keepsake's two fields."""
        beat = json.loads(resumed.heartbeat)
        assert list(beat) == ["experiment_id", "last_heartbeat"]
        assert beat["experiment_id"] == resumed.experiment_id
        assert TIME.match(beat["last_heartbeat"])
        sample = next((SAMPLE / "metadata" / "heartbeats").glob("*.json"))
        assert list(json.loads(sample.read_bytes())) == list(beat)
        assert not helpers.heartbeat_exists(resumed.url, resumed.experiment_id)  # stopped


#: Run in Keepsake 0.4.2's own venv, in a directory whose keepsake.yaml names the repository.
READER = """
import json, sys
import keepsake
experiment = keepsake.experiments.get(sys.argv[1][:7])
print(json.dumps({
    "id": experiment.id,
    "params": experiment.params,
    "steps": [c.step for c in experiment.checkpoints],
    "ids": [c.id for c in experiment.checkpoints],
    "best": experiment.best().id,
    "latest": experiment.latest().id,
    "file": experiment.latest().open("model.txt").read().decode(),
    "running": experiment.is_running(),
}))
"""


@pytest.mark.keepsake
@pytest.mark.skipif(
    not os.environ.get("KEEPSAKE_PYTHON"),
    reason="needs KEEPSAKE_PYTHON, a Python with keepsake==0.4.2 (make keepsake)",
)
def test_real_keepsake_reads_the_resumed_experiment(resumed: Resumed, tmp_path: Path) -> None:
    """Keepsake 0.4.2 itself lists the resumed experiment, both checkpoints, best and files."""
    reader = tmp_path / "reader"
    reader.mkdir()
    (reader / "keepsake.yaml").write_text(f"repository: {resumed.url}\n")
    result = subprocess.run(
        [os.environ["KEEPSAKE_PYTHON"], "-c", textwrap.dedent(READER), resumed.experiment_id],
        cwd=reader,
        env={**os.environ, "KEEPSAKE_NO_ANALYTICS": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    raw = helpers.experiment(resumed.url, resumed.experiment_id)
    assert seen["id"] == resumed.experiment_id
    assert seen["params"]["lr"] == 0.1 and seen["params"]["clip"] == float("inf")
    assert seen["steps"] == [0, 1]
    assert seen["ids"] == [c["id"] for c in raw["checkpoints"]]
    assert seen["best"] == seen["latest"] == resumed.checkpoint_id
    assert seen["file"] == "weights at step 1"
    assert seen["running"] is False
    keepsake = Path(os.environ["KEEPSAKE_PYTHON"]).with_name("keepsake")
    listed = subprocess.run(
        [str(keepsake), "ls", "--json"],
        cwd=reader,
        env={**os.environ, "KEEPSAKE_NO_ANALYTICS": "1"},  # it would phone home otherwise
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    (entry,) = json.loads(listed.stdout)
    assert (entry["id"], entry["num_checkpoints"]) == (resumed.experiment_id, 2)
    assert entry["latest_checkpoint"]["id"] == entry["best_checkpoint"]["id"] == seen["best"]
    assert entry["running"] is False
