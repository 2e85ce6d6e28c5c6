"""Where views come from: one repository (through the Daemon) plus the project's upload queue."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import anyio

from replicate.daemon import Daemon, Spool
from replicate.errors import CorruptedMetadata
from replicate.ids import ID_LENGTH, normalize_prefix, resolve_prefix, short_id
from replicate.read.views import CheckpointView, ExperimentList, ExperimentView, UploadState
from replicate.records import CheckpointRecord, ExperimentRecord, HeartbeatRecord
from replicate.repository import EXPERIMENTS_PREFIX, Repository
from replicate.values import now

T = TypeVar("T")
V = TypeVar("V", CheckpointView, ExperimentView)


@dataclass(frozen=True, slots=True)
class Source:
    """A repository URL and the spool of the project reading it (None: no local queue)."""

    url: str
    spool_dir: Path | None = None

    def run(self, fn: Callable[[Repository], Awaitable[T]]) -> T:
        """Run ``fn(repository)`` in the daemon's loop, after checking the format version."""

        async def call(repository: Repository) -> T:
            await repository.check_version()
            return await fn(repository)

        return Daemon.get().with_repository(self.url, call)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything ``ls`` needs, read concurrently in one trip to the loop."""

    records: list[ExperimentRecord]
    heartbeats: dict[str, HeartbeatRecord]
    corrupted: list[CorruptedMetadata] = field(default_factory=list)


async def load_snapshot(repository: Repository) -> Snapshot:
    """Every experiment JSON and every heartbeat, concurrently; corrupted JSONs are collected."""
    corrupted: list[CorruptedMetadata] = []
    records: list[ExperimentRecord] = []
    heartbeats: dict[str, HeartbeatRecord] = {}

    def on_corrupt(exc: Exception) -> None:
        if isinstance(exc, CorruptedMetadata):
            corrupted.append(exc)

    async def experiments() -> None:
        records.extend(await repository.load_experiments(on_corrupt=on_corrupt))

    async def beats() -> None:
        heartbeats.update(await repository.heartbeats())

    async with anyio.create_task_group() as tg:
        tg.start_soon(experiments)
        tg.start_soon(beats)
    return Snapshot(records, heartbeats, corrupted)


@dataclass(frozen=True, slots=True)
class Queued:
    """What the local upload queue holds for one repository."""

    experiments: dict[str, tuple[ExperimentRecord, UploadState]]
    checkpoints: dict[str, list[tuple[CheckpointRecord, UploadState]]]


def queued(source: Source) -> Queued:
    """Jobs of the project's spool bound for ``source.url`` that have not landed yet."""
    found = Queued({}, {})
    if source.spool_dir is None:
        return found
    for state in Spool(source.spool_dir).states():
        job = state.job
        if job.repository != source.url:
            continue
        label: UploadState = state.status  # the spool's one rule
        if job.kind == "experiment" and job.experiment is not None:
            found.experiments[job.experiment_id] = (job.experiment, label)
        elif job.kind == "checkpoint" and job.checkpoint is not None:
            found.checkpoints.setdefault(job.experiment_id, []).append((job.checkpoint, label))
    return found


def build(source: Source, snapshot: Snapshot, pending: Queued) -> ExperimentList:
    """Views of the snapshot's experiments, oldest first, with queued work merged in."""
    at = now()
    views = [
        ExperimentView(
            record,
            source,
            heartbeat=snapshot.heartbeats.get(record.id),
            queued=pending.checkpoints.get(record.id, ()),
            listed_at=at,
        )
        for record in snapshot.records
    ]
    landed = {record.id for record in snapshot.records}
    for id, (record, state) in pending.experiments.items():
        if id not in landed:
            views.append(
                ExperimentView(
                    record,
                    source,
                    queued=pending.checkpoints.get(id, ()),
                    upload_state=state,
                    listed_at=at,
                )
            )
    views.sort(key=lambda view: view.created)
    return ExperimentList(views)


def experiment_views(source: Source) -> tuple[ExperimentList, list[CorruptedMetadata]]:
    """Every experiment of the repository (and of the local queue), and the unreadable ones."""
    pending = queued(source)  # before the repository: a job landing meanwhile shows there
    snapshot = source.run(load_snapshot)
    return build(source, snapshot, pending), snapshot.corrupted


def read_heartbeat(source: Source, experiment_id: str) -> HeartbeatRecord | None:
    """The experiment's heartbeat as stored now, or None."""

    async def read(repository: Repository) -> HeartbeatRecord | None:
        return await repository.read_heartbeat(experiment_id)

    return source.run(read)


# ---- id prefixes ---------------------------------------------------------------------------

Match = tuple[ExperimentRecord, CheckpointRecord | None]


def describe_match(id: str, match: Match | CorruptedMetadata) -> str:
    """How an ambiguity lists one candidate."""
    if isinstance(match, CorruptedMetadata):
        return f"experiment {id[:12]} (unreadable)"
    experiment, checkpoint = match
    if checkpoint is None:
        return f"experiment {id[:12]}"
    return f"checkpoint {id[:12]} of experiment {short_id(experiment.id)}"


def candidates(
    records: Sequence[ExperimentRecord], corrupted: Sequence[Exception] = ()
) -> dict[str, Match | CorruptedMetadata]:
    """Every id the records hold (experiments and their checkpoints), and unreadable ones."""
    found: dict[str, Match | CorruptedMetadata] = {}
    for exc in corrupted:
        if isinstance(exc, CorruptedMetadata):
            found[corrupted_id(exc)] = exc
    for record in records:
        found[record.id] = (record, None)
        for c in record.checkpoints:
            found[c.id] = (record, c)
    return found


def corrupted_id(exc: CorruptedMetadata) -> str:
    """The experiment id of an unreadable experiment JSON."""
    return exc.key.removeprefix(EXPERIMENTS_PREFIX).removesuffix(".json")


def match_in(url: str, prefix: str, found: dict[str, Match | CorruptedMetadata]) -> Match:
    """The match ``prefix`` names among ``found``; an unreadable one raises its error."""
    _, match = resolve_prefix(prefix, found, describe_match, where=url)
    if isinstance(match, CorruptedMetadata):
        raise match
    return match


async def resolve(repository: Repository, prefix: str, *, experiments_only: bool = False) -> Match:
    """The experiment, or the checkpoint and its experiment, that ``prefix`` names.

    Raises DoesNotExist, AmbiguousID, or CorruptedMetadata when the only match is unreadable.
    """
    if not experiments_only:
        return (await resolve_many(repository, [prefix]))[0]
    ids = dict.fromkeys(await repository.experiment_ids(), None)
    id, _ = resolve_prefix(
        prefix, ids, lambda id, _: f"experiment {id[:12]}", what="experiment", where=repository.url
    )
    return await repository.load_experiment(id), None  # corrupted: raises


async def resolve_many(repository: Repository, prefixes: Sequence[str]) -> list[Match]:
    """:func:`resolve` for several prefixes, reading the repository once."""
    checked = [normalize_prefix(prefix) for prefix in prefixes]
    ids = set(await repository.experiment_ids())
    if all(len(prefix) == ID_LENGTH and prefix in ids for prefix in checked):
        return [(await repository.load_experiment(prefix), None) for prefix in checked]
    corrupted: list[Exception] = []
    records = await repository.load_experiments(on_corrupt=corrupted.append)
    found = candidates(records, corrupted)
    return [match_in(repository.url, prefix, found) for prefix in checked]


def pick(items: Sequence[V], prefix: str, what: str) -> V:
    """The one item of ``items`` whose id starts with ``prefix``."""
    _, item = resolve_prefix(
        prefix, {item.id: item for item in items}, lambda id, _: id[:12], what=what
    )
    return item


def view_of(source: Source, match: Match) -> tuple[ExperimentView, CheckpointView | None]:
    """Views of a resolved match, with its heartbeat and locally queued checkpoints."""
    record, checkpoint = match
    beat = read_heartbeat(source, record.id)
    pending = queued(source).checkpoints.get(record.id, ())
    experiment = ExperimentView(record, source, heartbeat=beat, queued=pending, listed_at=now())
    if checkpoint is None:
        return experiment, None
    return experiment, next(c for c in experiment.checkpoints if c.id == checkpoint.id)
