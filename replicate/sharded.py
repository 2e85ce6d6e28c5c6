"""One rank's part of a sharded checkpoint: a directory in this rank's spool, handed over whole.

Every rank writes its own files (DCP's shard files; rank 0 also DCP's ``.metadata``) straight
into a staging directory of its own spool, with no copy, and hands them to its own daemon as
one job. Rank 0's job lists the other ranks and commits the checkpoint only once every part
is in storage (the commit rule, docs/format.md); the other ranks' jobs only upload. Which
ranks there are, and the checkpoint's id and step, come from rank 0 through the caller's own
coordination (DCP's global plan), never through a channel of replicate's.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from replicate import archive
from replicate.checkpoint import Checkpoint, check_step, validate_metrics
from replicate.daemon import new_job_id
from replicate.errors import ValidationError
from replicate.ids import random_id
from replicate.parts import Part

if TYPE_CHECKING:
    from replicate.experiment import Experiment


def _check_path(path: str) -> str:
    pure = PurePosixPath(path)
    if not path or pure.is_absolute() or any(p in ("", ".", "..") for p in pure.parts):
        raise ValidationError(
            f"path must be a plain relative directory name such as 'dcp', got {path!r}"
        )
    return pure.as_posix()


class ShardedCheckpoint:
    """This rank's part of one sharded checkpoint; make it with
    :meth:`Experiment.sharded_checkpoint`.

    Usage (what ``replicate.integrations.torch.ReplicateStorageWriter`` does)::

        part = experiment.sharded_checkpoint(step=step, metrics={"loss": loss})
        directory = part.directory()      # write this rank's files here
        ...                               # rank 0 sends part.id and part.step to every rank
        part.hand_over(checkpoint_id, step, rank=rank, ranks=[1, 2, 3])  # on every rank

    ``ranks`` (rank 0 only): the other ranks that wrote files, whose parts must land before
    the checkpoint is committed.
    """

    def __init__(
        self,
        experiment: Experiment,
        *,
        step: int | None,
        metrics: Mapping[str, Any] | None,
        primary_metric: tuple[str, str] | None,
        path: str,
        quiet: bool,
    ) -> None:
        experiment._check_open()
        self._experiment = experiment
        self._metrics, self._primary_metric = validate_metrics(metrics, primary_metric)
        self._step = check_step(step)
        self.path = _check_path(path)
        self._quiet = quiet
        #: the checkpoint's id if this rank is rank 0 (the other ranks take rank 0's)
        self.id = random_id()
        self._job_id: str | None = None
        self._lock = threading.Lock()
        #: the handle of this rank's part, once handed over
        self.checkpoint: Checkpoint | None = None

    @property
    def step(self) -> int:
        """The step of the checkpoint if this rank is rank 0 (the given one, else the next)."""
        return self._experiment._steps.next(self._step)

    def directory(self) -> Path:
        """The directory this rank's files go in (made on the first call), inside the spool."""
        with self._lock:
            spool = self._experiment._sharded_spool()
            if self._job_id is None:
                self._experiment._wait_for_room(0)
                self._job_id = new_job_id()
                (spool.staging_dir(self._job_id) / self.path).mkdir(parents=True)
            return spool.data_dir / self._job_id / self.path

    def hand_over(
        self, checkpoint_id: str, step: int, *, rank: int, ranks: Sequence[int] = ()
    ) -> Checkpoint:
        """Persist this rank's files as a job of its daemon; returns the part's handle.

        Never raises for spool trouble (it is reported, like :meth:`Experiment.checkpoint`).
        """
        experiment = self._experiment
        if self._job_id is None:
            self.directory()
        assert self._job_id is not None
        files_dir = experiment._sharded_spool().data_dir / self._job_id
        part = Part(checkpoint_id, rank, tuple(sorted(set(ranks) - {0})) if rank == 0 else ())

        quiet = self._quiet or rank != 0
        self.checkpoint = experiment._queue(
            self._job_id,
            lambda: archive.written(files_dir),  # written in place by the framework
            step,
            self._metrics,
            self._primary_metric,
            self.path,
            quiet,
            part,
        )
        return self.checkpoint

    def discard(self) -> None:
        """Drop what this rank wrote (a save that failed): nothing is recorded."""
        with self._lock:
            if self._job_id is not None and self.checkpoint is None:
                self._experiment._sharded_spool().discard(self._job_id)
                self._job_id = None
