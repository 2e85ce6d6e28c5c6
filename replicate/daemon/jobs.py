"""Jobs: what the worker must upload and commit, as frozen values with a JSON manifest."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from replicate.records import CheckpointRecord, ExperimentRecord

JobKind = Literal["experiment", "checkpoint"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """One unit of durable work in the spool.

    ``experiment`` jobs upload the code tarball, then write the experiment JSON.
    ``checkpoint`` jobs upload the checkpoint tarball (if any files), then commit the checkpoint
    into the experiment JSON.
    """

    id: str
    kind: JobKind
    owner: str
    repository: str
    experiment_id: str
    #: the spool directory holding the job
    root: Path
    experiment: ExperimentRecord | None = None
    checkpoint: CheckpointRecord | None = None
    #: relative path -> size in bytes, as snapshotted; checked again before packing
    files: dict[str, int] = field(default_factory=dict)
    #: size of the snapshot when it is staged as one tar (``staged_tar_path``), not as files
    staged_tar: int | None = None
    #: experiment jobs: the id the code tarball is stored under (a resume's new snapshot);
    #: None means the experiment's own id
    code_id: str | None = None
    #: checkpoint jobs of a sharded checkpoint on a rank other than 0: that rank, whose part
    #: is uploaded as ``checkpoints/<id>.part-<rank>.tar.gz`` and never committed (rank 0's
    #: job commits the checkpoint once every part has landed; see replicate/parts.py)
    part: int | None = None

    @property
    def files_dir(self) -> Path:
        """Where the snapshot of the files is staged."""
        return self.root / "data" / self.id

    @property
    def staged_tar_path(self) -> Path:
        return self.root / "data" / f"{self.id}.tar"

    @property
    def owner_pid(self) -> int:
        """The process id of the job's owner (owners are named ``<pid>-<random>``)."""
        return int(self.owner.split("-", 1)[0])

    @property
    def size(self) -> int:
        return sum(self.files.values())

    @property
    def label(self) -> str:
        if self.kind == "checkpoint" and self.checkpoint is not None:
            step = self.checkpoint.step
            if self.part:
                return f"part {self.part} of checkpoint {self.checkpoint.id[:7]} (step {step})"
            return f"checkpoint {self.checkpoint.id[:7]} (step {step})"
        return f"{self.kind} {self.experiment_id[:7]}"

    def to_manifest(self) -> dict[str, Any]:
        """The JSON-ready description of the job, as the journal stores it."""
        body: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "owner": self.owner,
            "repository": self.repository,
            "experiment_id": self.experiment_id,
            "experiment": self.experiment.to_dict() if self.experiment else None,
            "checkpoint": self.checkpoint.to_dict() if self.checkpoint else None,
            "files": self.files,
            "staged_tar": self.staged_tar,
            "code_id": self.code_id,
        }
        if self.part is not None:  # only then: older readers' manifests stay as they were
            body["part"] = self.part
        return body

    @classmethod
    def from_manifest(cls, body: Mapping[str, Any], root: Path) -> Job:
        return cls(
            id=body["id"],
            kind=body["kind"],
            owner=body["owner"],
            repository=body["repository"],
            experiment_id=body["experiment_id"],
            root=root,
            experiment=ExperimentRecord.from_dict(body["experiment"])
            if body["experiment"]
            else None,
            checkpoint=CheckpointRecord.from_dict(body["checkpoint"])
            if body["checkpoint"]
            else None,
            files={str(k): int(v) for k, v in body["files"].items()},
            staged_tar=body.get("staged_tar"),
            code_id=body.get("code_id"),
            part=body.get("part"),
        )
