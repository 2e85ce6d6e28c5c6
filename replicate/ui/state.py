"""What the handlers share: the open repository, its metadata cache, and id lookups."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from aiohttp import web

from replicate.errors import DoesNotExist
from replicate.ids import short_id
from replicate.read.files import Archive
from replicate.read.source import Source, pick
from replicate.read.views import CheckpointView, ExperimentView
from replicate.repository import Repository
from replicate.ui.cache import Listed, MetadataCache

T = TypeVar("T")


@dataclass
class UIState:
    """One repository, opened in the server's loop for as long as the server runs."""

    repository: Repository
    source: Source
    cache: MetadataCache
    #: How often the pages ask for fresh rows, in milliseconds.
    refresh_ms: int
    #: (kind, id) -> files of that tarball; tarballs never change once written.
    file_lists: dict[tuple[str, str], list[tuple[str, int]]] = field(default_factory=dict)
    #: (what, query) -> (the Listed it was made from, the result): tables of 1,000 rows are
    #: rendered once per change of the repository, not once per request.
    memo: dict[tuple[str, str], tuple[Listed, Any]] = field(default_factory=dict)

    async def remember(self, what: str, query: str, make: Callable[[Listed], T]) -> T:
        """``make(listed)``, reused while the listing has not changed."""
        listed = await self.listed()
        key = (what, query)
        found = self.memo.get(key)
        if found is not None and found[0] is listed:
            return cast(T, found[1])
        if len(self.memo) > 64:
            self.memo.clear()
        value = make(listed)
        self.memo[key] = (listed, value)
        return value

    async def listed(self) -> Listed:
        return await self.cache.listed()

    async def experiment(self, prefix: str) -> ExperimentView:
        """The experiment whose id starts with ``prefix`` (checked like a CLI id)."""
        return pick((await self.listed()).experiments, prefix, "experiment")

    async def checkpoint(self, prefix: str) -> CheckpointView:
        """The checkpoint whose id starts with ``prefix``, of any experiment."""
        listed = await self.listed()
        every = [c for e in listed.experiments for c in e.checkpoints]
        return pick(every, prefix, "checkpoint")


STATE = web.AppKey("state", UIState)


def state_of(request: web.Request) -> UIState:
    return request.app[STATE]


def code_archive(experiment: ExperimentView) -> Archive:
    """The experiment's code snapshot; DoesNotExist if it has none or it is not uploaded yet."""
    if experiment.upload_state or not experiment.path:
        what = "is still in the local upload queue" if experiment.upload_state else "saved no code"
        raise DoesNotExist(f"experiment {experiment.short_id} {what}")
    return Archive("experiments", experiment.id, f"experiment {experiment.short_id}")


def checkpoint_archive(checkpoint: CheckpointView) -> Archive:
    """The checkpoint's files; DoesNotExist if it has none or it is not uploaded yet."""
    if checkpoint.upload_state:
        raise DoesNotExist(
            f"checkpoint {checkpoint.short_id} is still in the local upload queue "
            "(replicate wait uploads it)"
        )
    if not checkpoint.path:
        raise DoesNotExist(f"checkpoint {checkpoint.short_id} has no files (metrics only)")
    return Archive("checkpoints", checkpoint.id, f"checkpoint {short_id(checkpoint.id)}")
