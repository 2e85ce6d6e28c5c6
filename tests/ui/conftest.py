"""Fixtures of the web page tests: repositories written for real, and a server over them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cli.helpers import Written, write_experiments

from ui.helpers import RunningUI


@pytest.fixture
def serve() -> Iterator[Callable[..., RunningUI]]:
    """Start servers over repositories; all are stopped at the end of the test."""
    started: list[RunningUI] = []

    def start(url: str, spool_dir: Path | None = None, **options: float) -> RunningUI:
        ui = RunningUI(url, spool_dir, **options)
        started.append(ui)
        return ui

    yield start
    for ui in started:
        ui.stop()


@pytest.fixture
def written_disk(tmp_path: Path) -> Written:
    """Two experiments written by the write path into a local repository."""
    return write_experiments((tmp_path / "repo").as_uri(), tmp_path / "project")


@pytest.fixture(scope="module")
def shared_disk(tmp_path_factory: pytest.TempPathFactory) -> Written:
    """The same two experiments, written once per module, for tests that only read them."""
    base = tmp_path_factory.mktemp("shared")
    return write_experiments((base / "repo").as_uri(), base / "project")


def spool_of(written: Written) -> Path:
    return written.project / ".replicate" / "spool"
