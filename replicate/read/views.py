"""Read-side views of stored experiments, and the list that holds them."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from replicate.daemon.heartbeat import is_running, ranks_running
from replicate.ids import short_id
from replicate.read.checkpoints import (
    CheckpointList,
    CheckpointView,
    MetricColumns,
    UploadState,
    best_checkpoint,
    primary_value,
)
from replicate.records import CheckpointRecord, ExperimentRecord, HeartbeatRecord
from replicate.values import now

if TYPE_CHECKING:
    from replicate.read.source import Source

__all__ = [
    "CheckpointList",
    "CheckpointView",
    "ExperimentList",
    "ExperimentView",
    "MetricColumns",
    "UploadState",
    "primary_value",
]


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
        self.source = source
        self._running = is_running(heartbeat, listed_at)
        self._listed_at = listed_at
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

    @property
    def ranks_running(self) -> tuple[int, int] | None:
        """``(running, world size)`` ranks of a running job of several ranks, e.g. ``(3, 4)``
        when one of 4 died; None for a single process or a stopped experiment."""
        return ranks_running(self.heartbeat, self._listed_at) if self._running else None

    @property
    def status_line(self) -> str:
        """:attr:`status`, with the ranks running for a job of several ranks (``running 3/4
        ranks``)."""
        ranks = self.ranks_running
        return f"running {ranks[0]}/{ranks[1]} ranks" if ranks else self.status

    def is_running(self) -> bool:
        """True if its heartbeat is younger than 30 s (read again from the repository now)."""
        from replicate.read.source import read_heartbeat

        self.heartbeat = read_heartbeat(self.source, self.id)
        self._listed_at = now()
        self._running = is_running(self.heartbeat, self._listed_at)
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
        return best_checkpoint(self.checkpoints)

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
