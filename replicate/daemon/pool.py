"""Repositories opened inside the daemon's loop, one per URL, closed when the loop ends."""

from __future__ import annotations

from contextlib import AsyncExitStack

import anyio

from replicate.config import Settings
from replicate.repository import Repository
from replicate.storage import open_storage


class RepositoryPool:
    """Opens each repository's Storage once, in the loop that uses it (clients are loop-bound)."""

    def __init__(self, stack: AsyncExitStack, settings: Settings) -> None:
        self._stack = stack
        #: Applies to repositories opened from now on (``init()`` may change it).
        self.settings = settings
        self._open: dict[str, Repository] = {}
        self._lock = anyio.Lock()

    async def get(self, url: str) -> Repository:
        if url in self._open:
            return self._open[url]
        async with self._lock:
            if url not in self._open:
                storage = open_storage(url, policy=self.settings.retry, fsync=self.settings.fsync)
                await self._stack.enter_async_context(storage)
                self._open[url] = Repository(storage)
            return self._open[url]
