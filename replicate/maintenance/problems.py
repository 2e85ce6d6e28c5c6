"""What ``verify`` finds: problems, the tarballs it checks, and how each is named in a line."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from rich.filesize import decimal

from replicate.daemon import JobStatus
from replicate.ids import short_id
from replicate.records import CheckpointRecord
from replicate.repository import ArchiveFolder

#: What a problem is about.
Subject = Literal["repository", "experiment", "checkpoint"]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with one object, and the fix where there is one."""

    subject: Subject
    id: str
    experiment: str
    problem: str
    #: ``checkpoint 5a9beec (step 2) of experiment 928ecab``: names the object in a line
    label: str

    def line(self) -> str:
        return f"{self.label}: {self.problem}"

    def to_json(self) -> dict[str, str]:
        return {
            "kind": self.subject,
            "id": self.id,
            "experiment": self.experiment,
            "problem": self.problem,
        }


@dataclass(frozen=True, slots=True)
class Target:
    """One tarball that metadata says exists."""

    folder: ArchiveFolder
    id: str
    experiment: str
    label: str
    #: its state in this project's upload queue, if it is still there
    pending: JobStatus | None
    #: the id its members are under when it is not ``id`` (a part of a sharded checkpoint)
    members: str | None = None


@dataclass
class Report:
    experiments: int = 0
    tarballs: int = 0
    bytes: int = 0
    problems: list[Problem] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"checked {_count(self.experiments, 'experiment')}, "
            f"{_count(self.tarballs, 'tarball')} ({decimal(self.bytes)}): "
            f"{_count(len(self.problems), 'problem')}"
        )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def experiment_label(id: str) -> str:
    return f"experiment {short_id(id)}"


def checkpoint_label(experiment_id: str, checkpoint: CheckpointRecord) -> str:
    step = f" (step {checkpoint.step})" if checkpoint.step is not None else ""
    return f"checkpoint {short_id(checkpoint.id)}{step} of experiment {short_id(experiment_id)}"


def refetch_fix(id: str) -> str:
    return (
        f"re-upload with `replicate wait` if it is still queued, or `replicate rm {short_id(id)}`"
    )


def still_uploading(state: JobStatus) -> str:
    if state == "failed":
        return (
            "still uploading: its job failed in the local upload queue (`replicate queue` "
            "shows why); `replicate wait` retries it"
        )
    return f"still uploading: {state} in the local upload queue; `replicate wait` lands it"
