"""Where views come from: one repository (through the Daemon) plus the project's upload queue."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import anyio

from replicate.daemon import Daemon
from replicate.daemon.spool import Spool
from replicate.errors import AmbiguousID, CorruptedMetadata, DoesNotExist
from replicate.ids import short_id
from replicate.read.views import CheckpointView, ExperimentList, ExperimentView, UploadState
from replicate.records import CheckpointRecord, ExperimentRecord, HeartbeatRecord, now
from replicate.repository import EXPERIMENTS_PREFIX, Repository

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
        records.extend(await repository.list_experiments(on_corrupt=on_corrupt))

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
        label: UploadState = (
            "failed"
            if state.error is not None and state.error.permanent
            else "uploading"
            if state.owner_alive
            else "queued"
        )
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


def list_experiments(source: Source) -> tuple[ExperimentList, list[CorruptedMetadata]]:
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


def _check_prefix(prefix: str) -> str:
    prefix = prefix.strip().lower()
    if not prefix:
        raise DoesNotExist("an empty id matches nothing: pass an experiment or checkpoint id")
    if any(ch not in "0123456789abcdef" for ch in prefix):
        raise DoesNotExist(
            f"{prefix!r} is not an id: ids are hexadecimal; run `replicate ls` to see them"
        )
    return prefix


def _ambiguous(prefix: str, matches: Sequence[Match]) -> AmbiguousID:
    names = ", ".join(
        f"checkpoint {c.id[:12]} of experiment {short_id(e.id)}" if c else f"experiment {e.id[:12]}"
        for e, c in matches[:10]
    )
    more = f" and {len(matches) - 10} more" if len(matches) > 10 else ""
    return AmbiguousID(f"{prefix!r} is ambiguous, it matches {names}{more}: use a longer prefix")


async def resolve(repository: Repository, prefix: str, *, experiments_only: bool = False) -> Match:
    """The experiment, or the checkpoint and its experiment, that ``prefix`` names.

    Raises DoesNotExist, AmbiguousID, or CorruptedMetadata when the only match is unreadable.
    """
    if not experiments_only:
        return (await resolve_many(repository, [prefix]))[0]
    prefix = _check_prefix(prefix)
    named = [id for id in await repository.experiment_ids() if id.startswith(prefix)]
    if len(named) > 1:
        records = [await repository.load_experiment(id) for id in named[:10]]
        raise _ambiguous(prefix, [(r, None) for r in records])
    if named:
        return await repository.load_experiment(named[0]), None  # corrupted: raises
    raise DoesNotExist(
        f"no experiment matches {prefix!r} in {repository.url}: run `replicate ls` to see the ids"
    )


async def resolve_many(repository: Repository, prefixes: Sequence[str]) -> list[Match]:
    """:func:`resolve` for several prefixes, reading the repository once."""
    checked = [_check_prefix(prefix) for prefix in prefixes]
    ids = set(await repository.experiment_ids())
    if all(len(prefix) == 64 and prefix in ids for prefix in checked):
        return [(await repository.load_experiment(prefix), None) for prefix in checked]
    corrupted: list[Exception] = []
    records = await repository.list_experiments(on_corrupt=corrupted.append)
    return [_match(repository.url, prefix, records, corrupted) for prefix in checked]


def _match(
    url: str, prefix: str, records: Sequence[ExperimentRecord], corrupted: Sequence[Exception]
) -> Match:
    matches: list[Match] = []
    for record in records:
        if record.id.startswith(prefix):
            matches.append((record, None))
        matches.extend((record, c) for c in record.checkpoints if c.id.startswith(prefix))
    if len(matches) > 1:
        raise _ambiguous(prefix, matches)
    if matches:
        return matches[0]
    for exc in corrupted:
        if isinstance(exc, CorruptedMetadata):
            id = exc.key.removeprefix(EXPERIMENTS_PREFIX).removesuffix(".json")
            if id.startswith(prefix):
                raise exc
    raise DoesNotExist(
        f"no experiment or checkpoint matches {prefix!r} in {url}: "
        "run `replicate ls` to see the ids"
    )


def pick(items: Sequence[V], prefix: str, what: str) -> V:
    """The one item of ``items`` whose id starts with ``prefix``."""
    prefix = _check_prefix(prefix)
    found = [item for item in items if item.id.startswith(prefix)]
    if not found:
        raise DoesNotExist(f"no {what} matches {prefix!r}")
    if len(found) > 1:
        ids = ", ".join(item.id[:12] for item in found[:10])
        raise AmbiguousID(f"{prefix!r} is ambiguous, it matches {ids}: use a longer prefix")
    return found[0]


def view_of(source: Source, match: Match) -> tuple[ExperimentView, CheckpointView | None]:
    """Views of a resolved match, with its heartbeat and locally queued checkpoints."""
    record, checkpoint = match
    beat = read_heartbeat(source, record.id)
    pending = queued(source).checkpoints.get(record.id, ())
    experiment = ExperimentView(record, source, heartbeat=beat, queued=pending, listed_at=now())
    if checkpoint is None:
        return experiment, None
    return experiment, next(c for c in experiment.checkpoints if c.id == checkpoint.id)
