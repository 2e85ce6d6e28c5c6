"""Deleting experiments and checkpoints (``rm``, ``gc``): metadata first, then data, in parallel."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import anyio

from replicate.errors import DoesNotExist, ObjectNotFound
from replicate.read.views import primary_value
from replicate.records import CheckpointRecord, ExperimentRecord
from replicate.repository import Repository, archive_key, experiment_key, heartbeat_key

#: Deletes in flight at once.
DELETE_CONCURRENCY = 16


@dataclass
class Removal:
    """What to delete: whole experiments, and checkpoints (by experiment id) of others."""

    experiments: dict[str, ExperimentRecord] = field(default_factory=dict)
    checkpoints: dict[str, dict[str, CheckpointRecord]] = field(default_factory=dict)

    def add(self, experiment: ExperimentRecord, checkpoint: CheckpointRecord | None) -> None:
        if checkpoint is None:
            self.experiments[experiment.id] = experiment
            self.checkpoints.pop(experiment.id, None)
        elif experiment.id not in self.experiments:
            self.checkpoints.setdefault(experiment.id, {})[checkpoint.id] = checkpoint

    @property
    def objects(self) -> int:
        """How many objects the deletion touches (for a progress bar)."""
        count = sum(3 + len(e.checkpoints) for e in self.experiments.values())
        return count + sum(1 + len(c) for c in self.checkpoints.values())

    def __bool__(self) -> bool:
        return bool(self.experiments or self.checkpoints)


async def remove(
    repository: Repository, removal: Removal, advance: Callable[[int], None] | None = None
) -> None:
    """Delete everything in ``removal``, concurrently.

    A checkpoint leaves its experiment's JSON (rewritten from a fresh read) before its tarball
    is deleted, so readers never see a checkpoint whose data is gone.
    """
    limiter = anyio.CapacityLimiter(DELETE_CONCURRENCY)

    def done(n: int = 1) -> None:
        if advance is not None:
            advance(n)

    async def delete(key: str) -> None:
        async with limiter:
            await repository.storage.delete(key)
        done()

    async def experiment(record: ExperimentRecord) -> None:
        await delete(experiment_key(record.id))  # metadata first
        await delete(heartbeat_key(record.id))
        async with anyio.create_task_group() as tg:
            tg.start_soon(delete, archive_key("experiments", record.id))
            for checkpoint in record.checkpoints:
                tg.start_soon(delete, archive_key("checkpoints", checkpoint.id))

    async def checkpoints(experiment_id: str, ids: Iterable[str]) -> None:
        doomed = set(ids)
        async with limiter:
            try:
                record = await repository.load_experiment(experiment_id)
            except DoesNotExist:
                record = None
            if record is not None:
                kept = [c for c in record.checkpoints if c.id not in doomed]
                await repository.save_experiment(record.with_checkpoints(kept))
        done()
        async with anyio.create_task_group() as tg:
            for id in doomed:
                tg.start_soon(delete, archive_key("checkpoints", id))

    async with anyio.create_task_group() as tg:
        for record in removal.experiments.values():
            tg.start_soon(experiment, record)
        for experiment_id, chosen in removal.checkpoints.items():
            tg.start_soon(checkpoints, experiment_id, list(chosen))


async def archive_sizes(repository: Repository, checkpoints: Iterable[CheckpointRecord]) -> int:
    """Total bytes of the checkpoints' tarballs (missing ones count 0), read concurrently."""
    total = 0
    limiter = anyio.CapacityLimiter(DELETE_CONCURRENCY)

    async def one(id: str) -> None:
        nonlocal total
        with contextlib.suppress(ObjectNotFound):
            async with limiter:
                total += await repository.archive_size("checkpoints", id)

    async with anyio.create_task_group() as tg:
        for checkpoint in checkpoints:
            if checkpoint.path:
                tg.start_soon(one, checkpoint.id)
    return total


def prune(record: ExperimentRecord, keep_best: int, keep_last: int) -> list[CheckpointRecord]:
    """The checkpoints ``gc`` deletes from ``record``, oldest first.

    Only checkpoints with files are candidates (metrics-only ones cost nothing and keep the
    metric history). Kept: the ``keep_best`` best by their own primary metric (finite values)
    and the ``keep_last`` most recent.
    """
    candidates = [c for c in record.checkpoints if c.path]
    keep = {c.id for c in candidates[len(candidates) - keep_last :]} if keep_last > 0 else set()
    scored = []
    for index, checkpoint in enumerate(candidates):
        value = primary_value(checkpoint)
        if value is not None:
            assert checkpoint.primary_metric is not None
            score = value if checkpoint.primary_metric.goal == "maximize" else -value
            scored.append((-score, index, checkpoint.id))
    keep.update(id for _, _, id in sorted(scored)[:keep_best])
    return [c for c in candidates if c.id not in keep]
