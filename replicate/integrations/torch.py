"""PyTorch Distributed Checkpoint (DCP) into an experiment: sharded state from every rank.

Usage, on every rank (``replicate.init()`` is collective under torch.distributed)::

    import torch.distributed.checkpoint as dcp
    from replicate.integrations.torch import ReplicateStorageReader, ReplicateStorageWriter

    writer = ReplicateStorageWriter(experiment, step=step, metrics={"loss": loss},
                                    primary_metric=("loss", "minimize"))
    dcp.async_save(state_dict, storage_writer=writer)   # or dcp.save

    dcp.load(state_dict, storage_reader=ReplicateStorageReader(experiment.latest()))

The writer is DCP's own :class:`FileSystemWriter` (its staging, its file layout), pointed at a
directory in this rank's spool. When a rank's files are written its daemon uploads them as
that rank's part; rank 0 adds DCP's ``.metadata`` and commits the checkpoint once every part
has landed (the commit rule in docs/format.md). The checkpoint's id and step travel from rank
0 to the others in DCP's own global plan. The reader downloads every part into the local
cache once and reads it with DCP's :class:`FileSystemReader`, so loading reshards: state saved
by N ranks loads into any number of processes.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from replicate.integrations._common import require

require("torch.distributed.checkpoint", "distributed")

from torch.distributed.checkpoint import FileSystemReader, FileSystemWriter
from torch.distributed.checkpoint.metadata import Metadata
from torch.distributed.checkpoint.planner import SavePlan, SavePlanner
from torch.distributed.checkpoint.storage import WriteResult
from torch.futures import Future

import replicate
from replicate.errors import ValidationError

__all__ = ["ReplicateStorageReader", "ReplicateStorageWriter"]


@dataclasses.dataclass(frozen=True)
class _Shared:
    """What rank 0 sends every rank in its global plan: DCP's file prefix, and the
    checkpoint's id and step (so every part belongs to one checkpoint)."""

    prefix: str  # FileSystemWriter.write_data reads this, as from its own _StoragePrefix
    checkpoint_id: str
    step: int


class ReplicateStorageWriter(FileSystemWriter):  # type: ignore[misc]
    """DCP's FileSystemWriter into this rank's spool, each rank's files one part of one
    checkpoint of ``experiment``; use a new writer for every save.

    ``step``, ``metrics`` and ``primary_metric`` are as for :meth:`Experiment.checkpoint`
    (rank 0's are recorded). The files are stored under ``path`` in the checkpoint, so a
    ``replicate checkout`` gives a ``dcp/`` directory DCP's own FileSystemReader reads.
    ``thread_count`` is FileSystemWriter's; files are flushed to disk only with the
    ``REPLICATE_FSYNC`` setting (like every staged snapshot). After the save,
    :attr:`checkpoint` is this rank's handle on its part (``.wait()``).
    """

    def __init__(
        self,
        experiment: replicate.Experiment,
        step: int | None = None,
        metrics: Mapping[str, Any] | None = None,
        primary_metric: tuple[str, str] | None = None,
        *,
        path: str = "dcp",
        quiet: bool = False,
        thread_count: int = 1,
    ) -> None:
        self._part = experiment.sharded_checkpoint(
            step, metrics, primary_metric, path=path, quiet=quiet
        )
        super().__init__(
            self._part.directory(),
            sync_files=experiment.config.settings.fsync,
            thread_count=thread_count,
            overwrite=False,
        )
        self._rank = 0

    @property
    def checkpoint(self) -> replicate.Checkpoint | None:
        """This rank's part once its files are handed over (rank 0's: the checkpoint)."""
        return self._part.checkpoint

    def reset(self, checkpoint_id: str | os.PathLike[str] | None = None) -> None:
        if checkpoint_id:
            raise ValidationError(
                "ReplicateStorageWriter chooses where the files go: "
                "call dcp.save/async_save without checkpoint_id"
            )
        super().reset()

    def set_up_storage_writer(self, is_coordinator: bool, *args: Any, **kwargs: Any) -> None:
        super().set_up_storage_writer(is_coordinator, *args, **kwargs)
        self._rank = int(kwargs.get("rank") or 0)
        if not kwargs.get("use_collectives", True):
            raise ValidationError(
                "ReplicateStorageWriter needs DCP's collectives (rank 0 commits the checkpoint "
                "once every rank's part landed): drop use_collectives=False"
            )
        if is_coordinator != (self._rank == 0):
            raise ValidationError(
                "ReplicateStorageWriter needs rank 0 as DCP's coordinator: "
                "drop coordinator_rank from the save"
            )

    def prepare_global_plan(self, plans: list[SavePlan]) -> list[SavePlan]:
        """Rank 0: DCP's file prefixes, with this checkpoint's id and step for every rank."""
        plans = super().prepare_global_plan(plans)
        shared = [
            _Shared(plan.storage_data.prefix, self._part.id, self._part.step) for plan in plans
        ]
        return [dataclasses.replace(p, storage_data=s) for p, s in zip(plans, shared, strict=True)]

    def write_data(self, plan: SavePlan, planner: SavePlanner) -> Future[list[WriteResult]]:
        """Write this rank's files; a rank other than 0 then hands them to its daemon."""
        shared: _Shared = plan.storage_data
        try:
            written = super().write_data(plan, planner)
            results = written.wait()  # FileSystemWriter has written before it returns
        except BaseException:
            self._part.discard()
            raise
        if self._rank != 0:
            if results:
                self._part.hand_over(shared.checkpoint_id, shared.step, rank=self._rank)
            else:
                self._part.discard()  # nothing of this rank's: no part
        return written

    def finish(self, metadata: Metadata, results: list[list[WriteResult]]) -> None:
        """Rank 0: write DCP's ``.metadata``, then hand over the part that commits it all."""
        try:
            super().finish(metadata, results)
        except BaseException:
            self._part.discard()
            raise
        ranks = [rank for rank, written in enumerate(results) if rank != 0 and written]
        self._part.hand_over(self._part.id, self._part.step, rank=0, ranks=ranks)

    @classmethod
    def validate_checkpoint_id(cls, checkpoint_id: str | os.PathLike[str]) -> bool:
        return False  # never chosen by DCP for a bare checkpoint_id


class ReplicateStorageReader(FileSystemReader):  # type: ignore[misc]
    """DCP's FileSystemReader over a stored checkpoint, every part of it downloaded (once)
    into the local cache. ``checkpoint``: e.g. ``experiment.latest()``,
    ``replicate.experiments.get(id).best()``."""

    def __init__(self, checkpoint: Any) -> None:
        if checkpoint is None:
            raise ValidationError("no checkpoint to load: the experiment has none stored yet")
        local_path = getattr(checkpoint, "local_path", None)
        if not callable(local_path):
            raise ValidationError(
                f"ReplicateStorageReader needs a stored checkpoint (experiment.latest(), "
                f"replicate.experiments.get(id).best()), got {type(checkpoint).__name__}"
            )
        super().__init__(local_path(checkpoint.path))
