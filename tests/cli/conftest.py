"""Fixtures of the read-path tests: the Keepsake sample and repositories written for real."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.helpers import Written, write_experiments


@pytest.fixture
def written(repo_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Written:
    """Two experiments written by the write path on each backend; cwd is their project."""
    project = tmp_path / "project"
    result = write_experiments(repo_url, project)
    monkeypatch.chdir(project)
    monkeypatch.setenv("REPLICATE_REPOSITORY", repo_url)
    return result


@pytest.fixture
def written_on_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Written:
    """The same two experiments, on a local repository only."""
    project = tmp_path / "project"
    result = write_experiments((tmp_path / "repo").as_uri(), project)
    monkeypatch.chdir(project)
    monkeypatch.setenv("REPLICATE_REPOSITORY", result.url)
    return result
