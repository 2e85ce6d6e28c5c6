"""Metadata written by someone else is untrusted: crafted ids and names never reach storage keys.

Checked through the real CLI in a subprocess, and on disk directly.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from write import helpers

import replicate
from replicate.ids import random_id


@pytest.fixture
def project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    (project / "replicate.yaml").write_text(f"repository: {(tmp_path / 'repo').as_uri()}\n")
    (project / "model.pth").write_bytes(b"weights")
    return project


def stored_experiment(project: Path) -> tuple[Path, dict[str, object]]:
    """Write one real experiment with one checkpoint; return its JSON path and content."""
    with replicate.init(project_dir=project) as experiment:
        experiment.checkpoint(
            path="model.pth", metrics={"loss": 1.0}, primary_metric=("loss", "minimize")
        )
    path = project.parent / "repo" / "metadata" / "experiments" / f"{experiment.id}.json"
    return path, json.loads(path.read_text())


class TestCraftedMetadata:
    def test_rm_deletes_the_object_it_read_even_when_the_id_inside_lies(
        self, project: Path
    ) -> None:
        """A JSON whose inner id is another's is unreadable; rm by its name deletes that file."""
        path, body = stored_experiment(project)
        liar = path.with_name(f"{random_id()}.json")
        body["id"] = path.stem  # claims to be the real one
        liar.write_text(json.dumps(body))
        listed = helpers.cli(project, "ls", "-q")
        assert listed.stdout.split() == [path.stem]
        assert "the id inside is not the one in its name" in listed.stderr
        removed = helpers.cli(project, "rm", "-f", liar.stem[:12])
        assert removed.returncode == 0, removed.stderr
        assert not liar.exists()
        assert path.exists()  # the real one is untouched

    def test_rm_of_a_file_that_is_not_named_by_an_id(self, project: Path) -> None:
        """An odd file in metadata/experiments can be removed by its exact name."""
        path, _ = stored_experiment(project)
        odd = path.with_name("notes.json")
        odd.write_text("{}")
        removed = helpers.cli(project, "rm", "-f", "notes")
        assert removed.returncode == 0, removed.stderr
        assert not odd.exists() and path.exists()

    def test_gc_over_a_crafted_checkpoint_id(self, project: Path) -> None:
        """A checkpoint id like ../../x makes the experiment unreadable, never a key: gc goes on."""
        path, body = stored_experiment(project)
        body["checkpoints"][0]["id"] = "../../outside"  # type: ignore[index]
        path.write_text(json.dumps(body))
        result = helpers.cli(project, "gc", "-f")
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        assert "an id in it is not 64 hexadecimal characters" in result.stderr
        assert path.exists()
