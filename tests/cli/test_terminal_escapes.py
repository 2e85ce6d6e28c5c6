"""Names and values from a crafted metadata file cannot drive the terminal; --json stays exact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import replicate
from cli.helpers import invoke, read_object, write_object
from replicate.repository import experiment_key

#: OSC (retitle), CSI (colour), BEL, 8-bit CSI, and a right-to-left override.
EVIL = "\x1b]0;pwned\x07\x1b[31mred\x9b2J\u202eevil"
RAW = ("\x1b", "\x07", "\x9b", "\u202e")


@pytest.fixture
def crafted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str, str]:
    """Two experiments whose stored JSON was rewritten with control characters."""
    project = tmp_path / "project"
    project.mkdir()
    url = (tmp_path / "repo").as_uri()
    ids = []
    for lr in (0.1, 0.2):
        experiment = replicate.init(params={"lr": lr}, repository=url, project_dir=project)
        experiment.checkpoint(
            step=0, metrics={"loss": lr}, primary_metric=("loss", "minimize"), quiet=True
        )
        experiment.stop()
        key = experiment_key(experiment.id)
        body = json.loads(read_object(url, key))
        body["params"][f"name{EVIL}"] = f"value{EVIL}{lr}"
        body["checkpoints"][0]["metrics"][f"metric{EVIL}"] = f"v{EVIL}"
        write_object(url, key, json.dumps(body).encode())
        ids.append(experiment.id)
    monkeypatch.chdir(project)
    return url, ids[0], ids[1]


@pytest.mark.parametrize(
    "command",
    [["ls"], ["ls", "--all"], ["show", "A"], ["show", "C"], ["diff", "A", "B"], ["verify"]],
)
def test_no_raw_control_characters(crafted: tuple[str, str, str], command: list[str]) -> None:
    """Human output shows the characters as escapes (\\x1b), never raw."""
    url, a, b = crafted
    checkpoint = replicate.experiments.get(a, repository=url).checkpoints[0].id
    args = [{"A": a, "B": b, "C": checkpoint}.get(arg, arg) for arg in command]
    result = invoke(*args, "-R", url)
    output = result.stdout + result.stderr
    assert not any(char in output for char in RAW), output
    if command[0] in ("show", "ls") and command != ["ls"]:
        assert "\\x1b" in output, output


def test_json_stays_exact(crafted: tuple[str, str, str]) -> None:
    """ls --json decodes to the stored strings, with nothing raw a terminal would act on."""
    url, a, _ = crafted
    result = invoke("ls", "--json", "-R", url)
    assert result.exit_code == 0
    assert not any(char in result.stdout for char in RAW)
    found = {e["id"]: e for e in json.loads(result.stdout)}
    assert found[a]["params"][f"name{EVIL}"] == f"value{EVIL}0.1"
    assert found[a]["checkpoints"][0]["metrics"][f"metric{EVIL}"] == f"v{EVIL}"
