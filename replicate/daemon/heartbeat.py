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


class Heartbeats:
    """Beats for (repository URL, experiment id) pairs until they are stopped."""

    def __init__(self, pool: RepositoryPool, interval: float = INTERVAL) -> None:
        self._pool = pool
        self._interval = interval
        self._running: set[tuple[str, str]] = set()

    async def beat(self, url: str, experiment_id: str) -> None:
        repository = await self._pool.get(url)
        await repository.write_heartbeat(HeartbeatRecord(experiment_id, now()))

    async def start(self, url: str, experiment_id: str) -> None:
        """Write the first beat now (proving the repository is writable), then on the timer."""
        await self.beat(url, experiment_id)
        self._running.add((url, experiment_id))

    async def stop(self, url: str, experiment_id: str) -> None:
        self._running.discard((url, experiment_id))
        repository = await self._pool.get(url)
        await repository.delete_heartbeat(experiment_id)

    async def stop_all(self) -> None:
        for url, experiment_id in list(self._running):
            try:
                await self.stop(url, experiment_id)
            except StorageError as exc:
                log.warning("could not delete heartbeat of %s: %s", experiment_id, exc)

    async def run(self) -> None:
        while True:
            await anyio.sleep(self._interval)
            await self.beat_all()

    async def beat_all(self) -> None:
        """One timed round: a beat for every running experiment."""
        for key in list(self._running):
            try:
                await self.beat(*key)
                if key not in self._running:
                    # stop() ran while this beat was in flight, and its delete may have landed
                    # first: delete again, or a stopped experiment shows as running.
                    repository = await self._pool.get(key[0])
                    await repository.delete_heartbeat(key[1])
            except StorageError as exc:  # a missed beat is not worth stopping for
                log.warning("heartbeat of %s failed: %s", key[1], exc)
