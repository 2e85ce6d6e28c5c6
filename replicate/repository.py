"""Repository: the key layout and format version over one Storage (async, no threads)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import AsyncIterable, AsyncIterator, Callable
from datetime import datetime
from typing import Literal

import anyio

from replicate.errors import (
    CorruptedMetadata,
    DoesNotExist,
    IncompatibleRepository,
    ObjectNotFound,
    ReplicateError,
)
from replicate.ids import short_id
from replicate.records import (
    EncodingCache,
    ExperimentRecord,
    HeartbeatRecord,
    decode_experiment,
    decode_heartbeat,
    encode_experiment,
    encode_heartbeat,
)
from replicate.storage import Storage

FORMAT_VERSION = 1
#: Concurrent metadata reads when listing a repository.
READ_CONCURRENCY = 64

ArchiveFolder = Literal["experiments", "checkpoints"]

VERSION_KEY = "repository.json"
EXPERIMENTS_PREFIX = "metadata/experiments/"
HEARTBEATS_PREFIX = "metadata/heartbeats/"


def experiment_key(id: str) -> str:
    return f"{EXPERIMENTS_PREFIX}{id}.json"


def heartbeat_key(id: str) -> str:
    return f"{HEARTBEATS_PREFIX}{id}.json"


def rank_heartbeat_key(id: str, rank: int) -> str:
    """Where rank ``rank`` (> 0) of a job of several ranks beats, beside rank 0's heartbeat."""
    return f"{HEARTBEATS_PREFIX}{id}/rank-{rank}.json"


def _rank_keys(keys: list[str], prefix: str) -> dict[str, list[str]]:
    """Experiment id -> the keys of its other ranks' heartbeats, from a listing."""
    found: dict[str, list[str]] = {}
    for key in keys:
        rest = key[len(prefix) :] if key.startswith(prefix) else ""
        id, _, name = rest.partition("/")
        if name.startswith("rank-") and name.endswith(".json") and "/" not in name:
            found.setdefault(id, []).append(key)
    return found


def archive_key(folder: ArchiveFolder, id: str) -> str:
    return f"{folder}/{id}.tar.gz"


def _ids_in(keys: list[str], prefix: str) -> list[str]:
    return sorted(
        key[len(prefix) : -len(".json")]
        for key in keys
        if key.startswith(prefix) and key.endswith(".json") and "/" not in key[len(prefix) :]
    )


class Repository:
    """The repository format (docs/format.md) over a Storage opened by the caller."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.url = storage.url
        self._version_checked = False

    # ---- format version ------------------------------------------------------------------

    async def check_version(self, *, create: bool = False) -> None:
        """Refuse a repository newer than this version; with ``create``, mark a new one."""
        if self._version_checked:
            return
        try:
            data = await self.storage.read(VERSION_KEY)
        except ObjectNotFound:
            if create:
                await self.storage.write(VERSION_KEY, json.dumps({"version": 1}).encode())
                self._version_checked = True
            return
        try:
            version = json.loads(data)["version"]
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptedMetadata(VERSION_KEY, f"no version number ({exc})") from exc
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise IncompatibleRepository(
                f"the repository at {self.url} has format version {version}, but this replicate "
                f"reads version {FORMAT_VERSION}: upgrade replicate (pip install -U replicate)"
            )
        self._version_checked = True

    # ---- experiments ---------------------------------------------------------------------

    async def save_experiment(
        self, record: ExperimentRecord, cache: EncodingCache | None = None
    ) -> None:
        """Write the experiment JSON (the commit point); ``cache``: see encode_experiment."""
        await self.storage.write(experiment_key(record.id), encode_experiment(record, cache))

    async def load_experiment(self, id: str) -> ExperimentRecord:
        """Load one experiment by its full id; DoesNotExist if absent."""
        key = experiment_key(id)
        try:
            data = await self.storage.read(key)
        except ObjectNotFound:
            raise DoesNotExist(f"no experiment {short_id(id)} in {self.url}") from None
        return decode_experiment(data, key, id)

    async def experiment_ids(self) -> list[str]:
        return _ids_in(await self.storage.list(EXPERIMENTS_PREFIX), EXPERIMENTS_PREFIX)

    async def load_experiments(
        self, on_corrupt: Callable[[ReplicateError], None] | None = None
    ) -> list[ExperimentRecord]:
        """Load every experiment concurrently, oldest first.

        Unreadable ones are passed to ``on_corrupt`` and skipped; without it they raise.
        """
        ids = await self.experiment_ids()
        raw: dict[str, bytes] = {}
        limiter = anyio.CapacityLimiter(READ_CONCURRENCY)

        async def fetch(id: str) -> None:
            async with limiter:
                with contextlib.suppress(ObjectNotFound):  # deleted while we listed
                    raw[id] = await self.storage.read(experiment_key(id))

        async with anyio.create_task_group() as tg:
            for id in ids:
                tg.start_soon(fetch, id)

        def decode_all() -> list[ExperimentRecord]:
            # CPU work, off the loop (and after the reads, which it would otherwise stall)
            records = []
            for id, data in raw.items():
                try:
                    records.append(decode_experiment(data, experiment_key(id), id))
                except CorruptedMetadata as exc:
                    if on_corrupt is None:
                        raise
                    on_corrupt(exc)
            return records

        records = await anyio.to_thread.run_sync(decode_all)
        return sorted(records, key=lambda r: r.created)

    # ---- heartbeats ----------------------------------------------------------------------

    async def write_heartbeat(self, record: HeartbeatRecord) -> None:
        rank = record.rank or 0
        key = rank_heartbeat_key(record.experiment_id, rank) if rank else None
        await self.storage.write(
            key or heartbeat_key(record.experiment_id), encode_heartbeat(record)
        )

    async def _read_beat(self, key: str) -> HeartbeatRecord | None:
        try:
            return decode_heartbeat(await self.storage.read(key), key)
        except (ObjectNotFound, CorruptedMetadata):
            return None

    async def _with_ranks(
        self, beat: HeartbeatRecord | None, keys: list[str]
    ) -> HeartbeatRecord | None:
        """``beat`` with its other ranks' last beats, for a job of several ranks."""
        if beat is None or not beat.world_size or beat.world_size < 2 or not keys:
            return beat
        ranks: dict[int, datetime] = {}
        for key in keys[: beat.world_size]:
            other = await self._read_beat(key)
            if other is not None and other.rank and other.experiment_id == beat.experiment_id:
                ranks[other.rank] = other.last_heartbeat
        return dataclasses.replace(beat, ranks=ranks)

    async def read_heartbeat(self, experiment_id: str) -> HeartbeatRecord | None:
        beat = await self._read_beat(heartbeat_key(experiment_id))
        if beat is None or not beat.world_size or beat.world_size < 2:
            return beat
        prefix = f"{HEARTBEATS_PREFIX}{experiment_id}/"
        keys = _rank_keys(await self.storage.list(prefix), HEARTBEATS_PREFIX)
        return await self._with_ranks(beat, keys.get(experiment_id, []))

    async def heartbeats(self) -> dict[str, HeartbeatRecord]:
        """Every heartbeat in the repository, read concurrently, by experiment id."""
        keys = await self.storage.list(HEARTBEATS_PREFIX)
        ids = _ids_in(keys, HEARTBEATS_PREFIX)
        others = _rank_keys(keys, HEARTBEATS_PREFIX)
        found: dict[str, HeartbeatRecord] = {}
        limiter = anyio.CapacityLimiter(READ_CONCURRENCY)

        async def load(id: str) -> None:
            async with limiter:
                beat = await self._read_beat(heartbeat_key(id))
                beat = await self._with_ranks(beat, others.get(id, []))
                if beat is not None:
                    found[id] = beat

        async with anyio.create_task_group() as tg:
            for id in ids:
                tg.start_soon(load, id)
        return found

    async def delete_heartbeat(self, experiment_id: str, rank: int = 0) -> None:
        key = rank_heartbeat_key(experiment_id, rank) if rank else heartbeat_key(experiment_id)
        await self.storage.delete(key)

    # ---- archives ------------------------------------------------------------------------

    async def upload_archive(
        self, folder: ArchiveFolder, id: str, source: AsyncIterable[bytes]
    ) -> int:
        return await self.storage.upload(archive_key(folder, id), source)

    async def archive_size(self, folder: ArchiveFolder, id: str) -> int:
        return await self.storage.size(archive_key(folder, id))

    def stream_archive(self, folder: ArchiveFolder, id: str) -> AsyncIterator[bytes]:
        return self.storage.stream(archive_key(folder, id))
