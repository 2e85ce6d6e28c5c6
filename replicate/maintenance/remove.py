"""Deleting experiments and checkpoints (``rm``, ``gc``): metadata first, then data, in parallel.

Plan first (:func:`plan_removal`, :func:`plan_gc`: resolve, refuse running experiments, choose),
show the plan, then :func:`remove` it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import anyio

from replicate.config import Config, load_config
from replicate.daemon import Daemon, is_running
from replicate.errors import (
    CorruptedMetadata,
    DoesNotExist,
    ObjectNotFound,
    ValidationError,
    collapse,
)
from replicate.ids import is_id, resolve_prefix, short_id
from replicate.parts import deletable_ids
from replicate.read.history import segments
from replicate.read.source import Match, candidates, describe_match, load_snapshot
from replicate.records import CheckpointRecord, ExperimentRecord, HeartbeatRecord, primary_score
from replicate.repository import (
    HEARTBEATS_PREFIX,
    Repository,
    archive_key,
    experiment_key,
    heartbeat_key,
)
from replicate.values import now

#: Deletes in flight at once.
DELETE_CONCURRENCY = 16
#: rereads of a JSON a removal rewrote, while a writer still uploading puts removed ones back
RECHECKS = 3


@dataclass
class Removal:
    """What to delete: whole experiments, and checkpoints (by experiment id) of others."""

    experiments: dict[str, ExperimentRecord] = field(default_factory=dict)
    checkpoints: dict[str, dict[str, CheckpointRecord]] = field(default_factory=dict)
    #: names of experiment JSONs that cannot be read: their metadata, heartbeat and code go
    unreadable: set[str] = field(default_factory=set)

    def add(self, experiment: ExperimentRecord, checkpoint: CheckpointRecord | None) -> None:
        if checkpoint is None:
            self.experiments[experiment.id] = experiment
            self.checkpoints.pop(experiment.id, None)
        elif experiment.id not in self.experiments:
            self.checkpoints.setdefault(experiment.id, {})[checkpoint.id] = checkpoint

    def lines(self) -> list[str]:
        """One line per item, for a confirmation prompt."""
        found = [
            f"unreadable experiment metadata {experiment_key(name)}" for name in self.unreadable
        ]
        for record in self.experiments.values():
            count = len(record.checkpoints)
            found.append(
                f"experiment {short_id(record.id)} with its {count} checkpoint{'s' * (count != 1)}"
            )
        for experiment_id, checkpoints in self.checkpoints.items():
            for checkpoint in checkpoints.values():
                found.append(
                    f"checkpoint {short_id(checkpoint.id)} (step {checkpoint.step}) "
                    f"of experiment {short_id(experiment_id)}"
                )
        return found

    @property
    def objects(self) -> int:
        """How many objects the deletion touches (for a progress bar)."""

        def tarballs(checkpoints: Iterable[CheckpointRecord]) -> int:
            return sum(len(deletable_ids(c)) for c in checkpoints)

        count = sum(3 + tarballs(e.checkpoints) for e in self.experiments.values())
        count += 3 * len(self.unreadable)
        return count + sum(1 + tarballs(c.values()) for c in self.checkpoints.values())

    def __bool__(self) -> bool:
        return bool(self.experiments or self.checkpoints or self.unreadable)


async def delete_all(
    repository: Repository, removal: Removal, advance: Callable[[int], None] | None = None
) -> None:
    """Delete everything in ``removal``, concurrently.

    A checkpoint leaves its experiment's JSON (rewritten from a fresh read) before its tarball
    is deleted, so readers never see a checkpoint whose data is gone.
    """
    # Over 60 lines: the deletions below share one concurrency limit and one progress count.
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
        for key in await repository.storage.list(f"{HEARTBEATS_PREFIX}{record.id}/"):
            await delete(key)  # the other ranks' heartbeats of a job of several ranks
        async with anyio.create_task_group() as tg:
            tg.start_soon(delete, archive_key("experiments", record.id))
            for run in segments(record):  # code snapshots taken by resumes
                if run.code is not None and is_id(run.code):
                    tg.start_soon(delete, archive_key("experiments", run.code))
            for checkpoint in record.checkpoints:
                for id in deletable_ids(checkpoint):  # every part of a sharded one
                    tg.start_soon(delete, archive_key("checkpoints", id))

    async def unreadable(name: str) -> None:
        await delete(experiment_key(name))
        await delete(heartbeat_key(name))
        await delete(archive_key("experiments", name))  # its checkpoints can't be known

    async def drop(experiment_id: str, doomed: set[str]) -> bool:
        """Rewrite the experiment's JSON (read fresh) without ``doomed``; False if none was in."""
        async with limiter:
            try:
                record = await repository.load_experiment(experiment_id)
            except DoesNotExist:
                return False
            if not doomed & {c.id for c in record.checkpoints}:
                return False
            kept = [c for c in record.checkpoints if c.id not in doomed]
            await repository.save_experiment(record.with_checkpoints(kept))
            return True

    async def checkpoints(experiment_id: str, chosen: Iterable[CheckpointRecord]) -> None:
        records = list(chosen)
        doomed = {c.id for c in records}
        await drop(experiment_id, doomed)
        done()
        async with anyio.create_task_group() as tg:
            for id in {id for c in records for id in deletable_ids(c)}:
                tg.start_soon(delete, archive_key("checkpoints", id))
        # A process still uploading (stop(timeout=0)) that read the JSON before the rewrite
        # above writes the doomed ones back: read again, and drop them again, until they stay.
        for _ in range(RECHECKS):
            if not await drop(experiment_id, doomed):
                break

    try:
        async with anyio.create_task_group() as tg:
            for record in removal.experiments.values():
                tg.start_soon(experiment, record)
            for experiment_id, chosen in removal.checkpoints.items():
                tg.start_soon(checkpoints, experiment_id, list(chosen.values()))
            for name in removal.unreadable:
                tg.start_soon(unreadable, name)
    except BaseExceptionGroup as group:
        raise collapse(group) from None


async def archive_sizes(repository: Repository, checkpoints: Iterable[CheckpointRecord]) -> int:
    """Total bytes of the checkpoints' tarballs (missing ones count 0), read concurrently."""
    total = 0
    limiter = anyio.CapacityLimiter(DELETE_CONCURRENCY)

    async def one(id: str) -> None:
        nonlocal total
        with contextlib.suppress(ObjectNotFound):
            async with limiter:
                total += await repository.archive_size("checkpoints", id)

    try:
        async with anyio.create_task_group() as tg:
            for checkpoint in checkpoints:
                if checkpoint.path:
                    for id in deletable_ids(checkpoint):  # every part of a sharded one
                        tg.start_soon(one, id)
    except BaseExceptionGroup as group:
        raise collapse(group) from None
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
        score = primary_score(checkpoint)  # the one rule of "best"
        if score is not None:
            scored.append((-score, index, checkpoint.id))
    keep.update(id for _, _, id in sorted(scored)[:keep_best])
    return [c for c in candidates if c.id not in keep]


# ---- the Python API --------------------------------------------------------------------------


def refuse_running(experiment_id: str, beat: HeartbeatRecord | None) -> None:
    """Raise if the experiment is running: its process would write the removed data back."""
    if is_running(beat):
        assert beat is not None
        age = (now() - beat.last_heartbeat).total_seconds()
        raise ValidationError(
            f"experiment {short_id(experiment_id)} is running (heartbeat {age:.0f} s ago): "
            "stop it before removing it or its checkpoints"
        )


def plan_removal(ids: Sequence[str], *, config: Config | None = None) -> Removal:
    """What ``replicate rm ids`` deletes; refuses running experiments, unknown or ambiguous ids."""
    config = config or load_config()

    async def gather(repository: Repository) -> tuple[list[Match], dict[str, HeartbeatRecord]]:
        await repository.check_version()
        corrupted: list[Exception] = []
        found = candidates(
            await repository.load_experiments(on_corrupt=corrupted.append), corrupted
        )
        matches = []
        for raw in ids:
            if raw in found:  # an exact name: also one that is not an id (an odd file)
                name, match = raw, found[raw]
            else:
                name, match = resolve_prefix(raw, found, describe_match, where=repository.url)
            if isinstance(match, CorruptedMetadata):
                removal.unreadable.add(name)
            else:
                matches.append(match)
        beats = {}
        for experiment_id in {e.id for e, _ in matches}:
            beat = await repository.read_heartbeat(experiment_id)
            if beat is not None:
                beats[experiment_id] = beat
        return matches, beats

    removal = Removal()
    matches, beats = Daemon.get().with_repository(config.repository, gather)
    for experiment, checkpoint in matches:
        refuse_running(experiment.id, beats.get(experiment.id))
        removal.add(experiment, checkpoint)
    return removal


@dataclass
class GcPlan:
    """What ``replicate gc`` deletes, and what it left alone."""

    removal: Removal
    records: list[ExperimentRecord]
    running: int
    corrupted: list[CorruptedMetadata]
    #: bytes of the tarballs to delete
    size: int

    @property
    def doomed(self) -> list[CheckpointRecord]:
        return [c for chosen in self.removal.checkpoints.values() for c in chosen.values()]


def plan_gc(keep_best: int = 1, keep_last: int = 1, *, config: Config | None = None) -> GcPlan:
    """The checkpoints with files of stopped experiments that are neither best nor recent."""
    if keep_best < 0 or keep_last < 0:
        raise ValidationError("keep_best and keep_last must be 0 or more")
    config = config or load_config()

    async def plan(repository: Repository) -> GcPlan:
        await repository.check_version()
        snapshot = await load_snapshot(repository)
        removal = Removal()
        running = 0
        for record in snapshot.records:
            if is_running(snapshot.heartbeats.get(record.id)):
                running += 1
                continue
            for checkpoint in prune(record, keep_best, keep_last):
                removal.add(record, checkpoint)
        found = GcPlan(removal, snapshot.records, running, snapshot.corrupted, 0)
        found.size = await archive_sizes(repository, found.doomed)
        return found

    return Daemon.get().with_repository(config.repository, plan)


def remove(
    removal: Removal,
    *,
    config: Config | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> None:
    """Delete what ``removal`` holds; ``on_progress(n)`` as objects go."""
    config = config or load_config()

    async def go(repository: Repository) -> None:
        await repository.check_version()
        await delete_all(repository, removal, on_progress)

    Daemon.get().with_repository(config.repository, go)
