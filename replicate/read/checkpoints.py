"""Read-side views of stored checkpoints, and the list that holds an experiment's."""

from __future__ import annotations

import builtins
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from replicate.daemon import JobStatus
from replicate.ids import short_id
from replicate.records import CheckpointRecord, PrimaryMetric, best_of, finite_number

if TYPE_CHECKING:
    from replicate.read.files import CheckoutResult
    from replicate.read.views import ExperimentView

#: Where a checkpoint not yet in the repository is, by the spool's one rule (job_status).
UploadState = JobStatus


def primary_value(checkpoint: CheckpointRecord) -> float | None:
    """The checkpoint's own primary metric as a finite number, or None."""
    pm = checkpoint.primary_metric
    return None if pm is None else finite_number(checkpoint.metrics.get(pm.name))


class CheckpointView:
    """A stored checkpoint (or one still in the local upload queue) of an :class:`ExperimentView`."""

    def __init__(
        self,
        record: CheckpointRecord,
        experiment: ExperimentView,
        upload_state: UploadState | None = None,
    ) -> None:
        self.record = record
        self.experiment = experiment
        #: None once the checkpoint is in the repository.
        self.upload_state = upload_state

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def short_id(self) -> str:
        return short_id(self.record.id)

    @property
    def created(self) -> datetime:
        return self.record.created

    @property
    def step(self) -> int | None:
        return self.record.step

    @property
    def metrics(self) -> dict[str, Any]:
        return self.record.metrics

    @property
    def path(self) -> str:
        return self.record.path

    @property
    def primary_metric(self) -> PrimaryMetric | None:
        return self.record.primary_metric

    @property
    def primary_value(self) -> float | None:
        """The value of this checkpoint's primary metric, if it is a finite number."""
        return primary_value(self.record)

    def open(self, path: str) -> BinaryIO:
        """Open one file of this checkpoint (or of its experiment's code) for reading.

        Streams the tarball and keeps only that member, in an anonymous temporary file, so
        the result is seekable: ``torch.load(checkpoint.open("model.pth"))`` works.

        Raises:
            DoesNotExist: no such file in the checkpoint or the experiment.
            CorruptedArchive: the tarball is truncated or damaged.
        """
        from replicate.read.files import open_member

        return open_member(self.experiment.source, self.experiment.record, self.record, path)

    def local_path(self, path: str = ".") -> Path:
        """A real local path to file or directory ``path`` of this checkpoint, for a framework.

        The first call downloads the checkpoint's files into a local cache; later calls return
        the same path without downloading (the cache is checked against the sizes and sha256
        of what was extracted). ``"."`` (the default) is the directory of all its files::

            trainer.fit(model, ckpt_path=experiment.best().local_path("model.ckpt"))

        Treat the result as read-only. Raises DoesNotExist if there is no such file, or the
        checkpoint is still in the local upload queue.
        """
        from replicate.read.cache import local_path

        return local_path(self.experiment.source, self.record, path)

    def checkout(
        self, output_dir: str | Path, paths: Sequence[str] | None = None
    ) -> CheckoutResult:
        """Write the experiment's code, then this checkpoint's files over it, into ``output_dir``.

        Files are extracted beside the target first and moved into place only when complete;
        existing files are overwritten. ``paths`` limits it to those files or directories.
        """
        from replicate.read.files import checkout

        return checkout(
            self.experiment.source,
            self.experiment.record,
            self.record,
            Path(output_dir),
            paths=paths,
        )

    def __repr__(self) -> str:
        state = f" {self.upload_state}" if self.upload_state else ""
        return f"<Checkpoint {self.short_id} step={self.step} metrics={self.metrics!r}{state}>"


class MetricColumns(Mapping[str, builtins.list[Any]]):
    """``checkpoints.metrics["loss"]``: one value per checkpoint, None where it is missing."""

    def __init__(self, checkpoints: Sequence[CheckpointView]) -> None:
        self._checkpoints = checkpoints

    def __getitem__(self, name: str) -> builtins.list[Any]:
        if not any(name in c.metrics for c in self._checkpoints):
            raise KeyError(f"no checkpoint has the metric {name!r}; metrics: {builtins.list(self)}")
        return [c.metrics.get(name) for c in self._checkpoints]

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(name for c in self._checkpoints for name in c.metrics))

    def __len__(self) -> int:
        return sum(1 for _ in self)


class CheckpointList(builtins.list[CheckpointView]):
    """An experiment's checkpoints, oldest first, with columns ``.step`` and ``.metrics[name]``."""

    @property
    def step(self) -> builtins.list[int | None]:
        return [c.step for c in self]

    @property
    def metrics(self) -> MetricColumns:
        return MetricColumns(self)

    @property
    def created(self) -> builtins.list[datetime]:
        return [c.created for c in self]


def best_checkpoint(checkpoints: Sequence[CheckpointView]) -> CheckpointView | None:
    """The best of ``checkpoints`` by the one rule, records.best_of."""
    return best_of(checkpoints, lambda c: c.record)
