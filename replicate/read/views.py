"""Read-side views of stored experiments and checkpoints, and the lists that hold them."""

from __future__ import annotations

import builtins
import math
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

from replicate.daemon.heartbeat import is_running
from replicate.ids import short_id
from replicate.records import CheckpointRecord, ExperimentRecord, HeartbeatRecord, PrimaryMetric

if TYPE_CHECKING:
    from replicate.read.files import CheckoutResult
    from replicate.read.source import Source

#: Where a checkpoint not yet in the repository is: its owner is uploading it, it waits
#: in the local queue for ``replicate wait`` (owner dead), or its upload failed.
UploadState = Literal["uploading", "queued", "failed"]


def primary_value(checkpoint: CheckpointRecord) -> float | None:
    """The checkpoint's own primary metric as a finite number, or None."""
    pm = checkpoint.primary_metric
    value = None if pm is None else checkpoint.metrics.get(pm.name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


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

        return open_member(self.experiment._source, self.experiment.record, self.record, path)

    def checkout(
        self, output_dir: str | Path, paths: Sequence[str] | None = None
    ) -> CheckoutResult:
        """Write the experiment's code, then this checkpoint's files over it, into ``output_dir``.

        Files are extracted beside the target first and moved into place only when complete;
        existing files are overwritten. ``paths`` limits it to those files or directories.
        """
        from replicate.read.files import checkout

        return checkout(
            self.experiment._source,
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


def _best(checkpoints: Sequence[CheckpointView]) -> CheckpointView | None:
    """Same rule as ExperimentRecord.best(): own primary metric, finite numbers, earliest wins."""
    best: CheckpointView | None = None
    best_score = 0.0
    for checkpoint in checkpoints:
        value = checkpoint.primary_value
        if value is None:
            continue
        assert checkpoint.primary_metric is not None
        score = value if checkpoint.primary_metric.goal == "maximize" else -value
        if best is None or score > best_score:
            best, best_score = checkpoint, score
    return best


class ExperimentView:
    """A stored experiment as listed: its record, heartbeat and checkpoints."""

    def __init__(
        self,
        record: ExperimentRecord,
        source: Source,
        *,
        heartbeat: HeartbeatRecord | None = None,
        queued: Sequence[tuple[CheckpointRecord, UploadState]] = (),
        upload_state: UploadState | None = None,
        listed_at: datetime | None = None,
    ) -> None:
        self.record = record
        self.heartbeat = heartbeat
        #: Set when the experiment itself is only in the local upload queue so far.
        self.upload_state = upload_state
        self._source = source
        self._running = is_running(heartbeat, listed_at)
        landed = {c.id for c in record.checkpoints}
        views = [CheckpointView(c, self) for c in record.checkpoints]
        views += [CheckpointView(c, self, state) for c, state in queued if c.id not in landed]
        views.sort(key=lambda c: c.created)
        self.checkpoints = CheckpointList(views)

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def created(self) -> datetime:
        return self.record.created

    @property
    def params(self) -> dict[str, Any]:
        return self.record.params

    @property
    def host(self) -> str:
        return self.record.host

    @property
    def user(self) -> str:
        return self.record.user

    @property
    def command(self) -> str:
        return self.record.command

    @property
    def path(self) -> str:
        return self.record.path

    @property
    def config(self) -> dict[str, str]:
        return self.record.config

    @property
    def python_version(self) -> str:
        return self.record.python_version

    @property
    def python_packages(self) -> dict[str, str]:
        return self.record.python_packages

    @property
    def replicate_version(self) -> str:
        return self.record.replicate_version

    @property
    def short_id(self) -> str:
        return short_id(self.record.id)

    @property
    def status(self) -> str:
        """``running`` or ``stopped`` as of listing; ``uploading``/``queued``/``failed`` when the
        experiment is still only in the local upload queue."""
        if self.upload_state is not None:
            return self.upload_state
        return "running" if self._running else "stopped"

    def is_running(self) -> bool:
        """True if its heartbeat is younger than 30 s (read again from the repository now)."""
        from replicate.read.source import read_heartbeat

        self.heartbeat = read_heartbeat(self._source, self.id)
        self._running = is_running(self.heartbeat)
        return self._running

    @property
    def duration(self) -> timedelta:
        """From creation to the last checkpoint or heartbeat, whichever is later."""
        ends = [c.created for c in self.checkpoints]
        if self.heartbeat is not None:
            ends.append(self.heartbeat.last_heartbeat)
        return max([self.created, *ends]) - self.created

    def best(self) -> CheckpointView | None:
        """The best checkpoint by its own primary metric (finite numbers only), or None."""
        return _best(self.checkpoints)

    def latest(self) -> CheckpointView | None:
        """The most recent checkpoint, or None."""
        return self.checkpoints[-1] if self.checkpoints else None

    def checkpoint(self, id_prefix: str) -> CheckpointView:
        """This experiment's checkpoint whose id starts with ``id_prefix``."""
        from replicate.read.source import pick

        return pick(self.checkpoints, id_prefix, f"checkpoint of experiment {self.short_id}")

    def _repr_html_(self) -> str:
        from replicate.read.notebook import experiment_html

        return experiment_html(self)

    def __repr__(self) -> str:
        return (
            f"<Experiment {self.short_id} {self.status} params={self.params!r} "
            f"checkpoints={len(self.checkpoints)}>"
        )


class ExperimentList(builtins.list[ExperimentView]):
    """Experiments, oldest first; plots and a DataFrame for notebooks."""

    def get(self, id_prefix: str) -> ExperimentView:
        """The experiment in this list whose id starts with ``id_prefix``."""
        from replicate.read.source import pick

        return pick(self, id_prefix, "experiment")

    def plot(self, metric: str | None = None, *, logy: bool = False, ax: Any = None) -> Any:
        """Plot ``metric`` (default: the primary metric) against step, one line per experiment.

        Needs matplotlib (``pip install 'replicate[plot]'``). Returns the matplotlib Axes.
        """
        from replicate.read.notebook import plot

        return plot(self, metric, logy=logy, ax=ax)

    def scatter(self, param: str, metric: str | None = None, *, ax: Any = None) -> Any:
        """Scatter ``param`` against ``metric`` of each experiment's best (else latest) checkpoint.

        Needs matplotlib (``pip install 'replicate[plot]'``). Returns the matplotlib Axes.
        """
        from replicate.read.notebook import scatter

        return scatter(self, param, metric, ax=ax)

    def to_dataframe(self) -> Any:
        """One row per experiment: fields, ``params.*`` and ``metrics.*`` of the best checkpoint.

        Needs pandas (``pip install 'replicate[dataframe]'``).
        """
        from replicate.read.notebook import to_dataframe

        return to_dataframe(self)

    def _repr_html_(self) -> str:
        from replicate.read.notebook import list_html

        return list_html(self)
