"""Heartbeats: every running experiment's timestamp rewritten on a timer in the loop."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import anyio

from replicate.daemon.pool import RepositoryPool
from replicate.errors import StorageError
from replicate.records import HeartbeatRecord
from replicate.values import now

INTERVAL = 5.0
#: Running means a heartbeat younger than this (three missed beats at 10 s, as Keepsake).
RUNNING_TIMEOUT = timedelta(seconds=30)

log = logging.getLogger("replicate")


def is_running(beat: HeartbeatRecord | None, at: datetime | None = None) -> bool:
    """True if ``beat`` is recent enough for its experiment to count as running."""
    if beat is None:
        return False
    return (at or now()) - beat.last_heartbeat < RUNNING_TIMEOUT


def ranks_running(
    beat: HeartbeatRecord | None, at: datetime | None = None
) -> tuple[int, int] | None:
    """(ranks running, world size) of a running job of several ranks; None otherwise.

    Rank 0's heartbeat decides whether the experiment runs; each other rank counts while its
    own beat is as recent.
    """
    if not is_running(beat, at) or beat is None or not beat.world_size or beat.world_size < 2:
        return None
    at = at or now()
    others = sum(
        1 for r, last in beat.ranks.items() if r < beat.world_size and at - last < RUNNING_TIMEOUT
    )
    return 1 + others, beat.world_size


class Heartbeats:
    """Beats for (repository URL, experiment id, rank) until they are stopped.

    Rank 0 (and a single process) beats in the experiment's heartbeat, saying the world size
    of a job of several ranks; another rank beats in its own object beside it.
    """

    def __init__(self, pool: RepositoryPool, interval: float = INTERVAL) -> None:
        self._pool = pool
        self._interval = interval
        #: (url, experiment id, rank) -> the job's world size (None: one process)
        self._running: dict[tuple[str, str, int], int | None] = {}

    async def beat(
        self, url: str, experiment_id: str, rank: int = 0, world_size: int | None = None
    ) -> None:
        repository = await self._pool.get(url)
        record = HeartbeatRecord(experiment_id, now(), world_size, rank or None)
        await repository.write_heartbeat(record)

    async def start(
        self, url: str, experiment_id: str, rank: int = 0, world_size: int | None = None
    ) -> None:
        """Write the first beat now (proving the repository is writable), then on the timer."""
        key = (url, experiment_id, rank)
        self._running[key] = world_size  # first: a stop() during the first beat must see it
        try:
            await self.beat(url, experiment_id, rank, world_size)
        except BaseException:
            self._running.pop(key, None)
            raise
        if key not in self._running:  # stopped while the first beat was in flight
            repository = await self._pool.get(url)
            await repository.delete_heartbeat(experiment_id, rank)

    async def stop(self, url: str, experiment_id: str, rank: int = 0) -> None:
        self._running.pop((url, experiment_id, rank), None)
        repository = await self._pool.get(url)
        await repository.delete_heartbeat(experiment_id, rank)

    async def stop_all(self) -> None:
        for url, experiment_id, rank in list(self._running):
            try:
                await self.stop(url, experiment_id, rank)
            except StorageError as exc:
                log.warning("could not delete heartbeat of %s: %s", experiment_id, exc)

    async def run(self) -> None:
        while True:
            await anyio.sleep(self._interval)
            await self.beat_all()

    async def beat_all(self) -> None:
        """One timed round: a beat for every running experiment (and rank)."""
        for key, world_size in list(self._running.items()):
            url, experiment_id, rank = key
            try:
                await self.beat(url, experiment_id, rank, world_size)
                if key not in self._running:
                    # stop() ran while this beat was in flight, and its delete may have landed
                    # first: delete again, or a stopped experiment shows as running.
                    repository = await self._pool.get(url)
                    await repository.delete_heartbeat(experiment_id, rank)
            except StorageError as exc:  # a missed beat is not worth stopping for
                log.warning("heartbeat of %s failed: %s", experiment_id, exc)
