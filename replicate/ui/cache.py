"""The repository's metadata for the page, kept in memory and refreshed from listings.

A refresh lists ``metadata/experiments/`` and ``metadata/heartbeats/`` with each object's
version (ETag, generation, size and mtime) and reads only the objects that are new or
changed, so a repository of 1,000 experiments costs two listings per refresh, not 1,000 reads.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import anyio

from replicate.errors import CorruptedMetadata, ObjectNotFound
from replicate.read.source import Queued, Snapshot, Source, build, queued
from replicate.read.views import ExperimentList
from replicate.records import ExperimentRecord, HeartbeatRecord, decode_experiment, decode_heartbeat
from replicate.repository import (
    EXPERIMENTS_PREFIX,
    HEARTBEATS_PREFIX,
    READ_CONCURRENCY,
    Repository,
)

R = TypeVar("R")


@dataclass
class Listed:
    """What one refresh found: the views (queued work merged in) and the unreadable JSONs."""

    experiments: ExperimentList
    corrupted: list[CorruptedMetadata]


class _Objects(Generic[R]):
    """Decoded objects under one prefix, each with the version it was read at."""

    def __init__(self, prefix: str, decode: Callable[[bytes, str], R]) -> None:
        self.prefix = prefix
        self._decode = decode
        self.found: dict[str, tuple[str, R | CorruptedMetadata]] = {}

    async def refresh(self, repository: Repository, on_read: Callable[[], None]) -> bool:
        """Bring ``found`` up to date; return True if anything was added, changed or removed."""
        listing = await repository.storage.listing(self.prefix)
        versions = {
            key[len(self.prefix) : -len(".json")]: version
            for key, version in listing.items()
            if key.endswith(".json") and "/" not in key[len(self.prefix) :]
        }
        removed = set(self.found) - set(versions)
        for id in removed:
            del self.found[id]  # removed (replicate rm, stop() deleting a heartbeat)
        changed = [
            id for id, v in versions.items() if id not in self.found or self.found[id][0] != v
        ]
        raw: dict[str, bytes] = {}
        limiter = anyio.CapacityLimiter(READ_CONCURRENCY)

        async def fetch(id: str) -> None:
            async with limiter:
                try:
                    raw[id] = await repository.storage.read(f"{self.prefix}{id}.json")
                except ObjectNotFound:  # deleted since the listing
                    return
                on_read()

        async with anyio.create_task_group() as tg:
            for id in changed:
                tg.start_soon(fetch, id)

        def decode_all() -> None:  # CPU work, off the loop
            for id, data in raw.items():
                key = f"{self.prefix}{id}.json"
                try:
                    value: R | CorruptedMetadata = self._decode(data, key)
                except CorruptedMetadata as exc:
                    value = exc
                self.found[id] = (versions[id], value)

        await anyio.to_thread.run_sync(decode_all)
        return bool(removed or raw)


#: Views are rebuilt at least this often even when nothing changed: "running" and "5 min
#: ago" depend on the clock (a killed run's heartbeat goes stale without changing).
REBUILD_AFTER = 10.0


class MetadataCache:
    """Experiments and heartbeats of one repository, re-listed at most every ``max_age`` s.

    Concurrent requests share one refresh. When a refresh finds nothing new, the same
    :class:`Listed` object is kept, so what was computed from it can be reused.
    ``reads`` counts the metadata objects read so far.
    """

    def __init__(self, repository: Repository, source: Source, *, max_age: float = 2.0) -> None:
        self._repository = repository
        self._source = source
        self.max_age = max_age
        self._experiments = _Objects[ExperimentRecord](EXPERIMENTS_PREFIX, decode_experiment)
        self._heartbeats = _Objects[HeartbeatRecord](HEARTBEATS_PREFIX, decode_heartbeat)
        self._lock = asyncio.Lock()
        self._listed: Listed | None = None
        self._at = 0.0
        self._built_at = 0.0
        self._pending: Queued | None = None
        self.reads = 0

    async def listed(self) -> Listed:
        """The experiments as of at most ``max_age`` seconds ago."""
        async with self._lock:
            if self._listed is None or time.monotonic() - self._at >= self.max_age:
                self._listed = await self._refresh()
                self._at = time.monotonic()
            return self._listed

    async def _refresh(self) -> Listed:
        # the local queue first: a job landing meanwhile then shows in the repository
        pending: Queued = await anyio.to_thread.run_sync(queued, self._source)

        def count() -> None:
            self.reads += 1

        changed: list[bool] = []

        async def refresh(objects: _Objects[ExperimentRecord] | _Objects[HeartbeatRecord]) -> None:
            changed.append(await objects.refresh(self._repository, count))

        async with anyio.create_task_group() as tg:
            tg.start_soon(refresh, self._experiments)
            tg.start_soon(refresh, self._heartbeats)
        fresh = time.monotonic() - self._built_at < REBUILD_AFTER
        if self._listed is not None and not any(changed) and pending == self._pending and fresh:
            return self._listed
        self._pending = pending
        self._built_at = time.monotonic()
        records: list[ExperimentRecord] = []
        corrupted: list[CorruptedMetadata] = []
        for _, record in self._experiments.found.values():
            if isinstance(record, CorruptedMetadata):
                corrupted.append(record)
            else:
                records.append(record)
        beats = {
            id: beat
            for id, (_, beat) in self._heartbeats.found.items()
            if not isinstance(beat, CorruptedMetadata)
        }
        records.sort(key=lambda r: r.created)
        snapshot = Snapshot(records, beats, corrupted)
        views = await anyio.to_thread.run_sync(build, self._source, snapshot, pending)
        return Listed(views, corrupted)
