"""The local record of what a project started: ``.replicate/runs.jsonl``.

A line when an experiment starts or resumes (naming its process), and a line when ``stop()``
is reached. ``resume=True`` reads it to find the latest experiment that did not stop cleanly.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from replicate import console
from replicate.daemon import Spool

RUNS_FILE = "runs.jsonl"


@dataclass(frozen=True, slots=True)
class Run:
    experiment_id: str
    repository: str
    owner: str


class Runs:
    """``.replicate/runs.jsonl`` of one project: started and stopped experiments, in order."""

    def __init__(self, project_dir: Path) -> None:
        self.path = project_dir / ".replicate" / RUNS_FILE

    def _append(self, entry: dict[str, Any]) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")
        except OSError as exc:  # the record helps resume; it never stops training
            console.warn(f"could not record the run in {self.path}: {exc.strerror or exc}")

    def started(self, experiment_id: str, repository: str, owner: str) -> None:
        self._append({"started": experiment_id, "repository": repository, "owner": owner})

    def stopped(self, experiment_id: str) -> None:
        self._append({"stopped": experiment_id})

    def unclean(self, repository: str, spool: Spool) -> list[Run]:
        """Experiments started here (latest last) with no stop line whose process is gone."""
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        runs: dict[str, Run] = {}
        for line in lines:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                entry = json.loads(line)
                if "started" in entry:
                    run = Run(entry["started"], entry["repository"], entry["owner"])
                    runs.pop(run.experiment_id, None)  # re-added last: most recent start
                    runs[run.experiment_id] = run
                elif "stopped" in entry:
                    runs.pop(entry["stopped"], None)
        return [
            run
            for run in runs.values()
            if run.repository == repository and not spool.owner_alive(run.owner)
        ]

    def knows(self, experiment_id: str) -> bool:
        try:
            return f'"{experiment_id}"' in self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return False
