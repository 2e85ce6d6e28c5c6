"""Rank 0's side of a sharded checkpoint's commit rule: every other part must have landed.

A part is in storage once its object exists: uploads become visible whole (a completed
multipart upload, a renamed file), so existing means complete.
"""

from __future__ import annotations

import time

import anyio

from replicate.errors import JobFailed, ObjectNotFound
from replicate.parts import describe_ranks, part_id, part_ranks
from replicate.records import CheckpointRecord
from replicate.repository import Repository

#: Seconds one attempt of rank 0's job waits for the other parts before it reports them
#: missing (then the job's retry policy tries again, until the job deadline).
PARTS_WAIT = 10.0
#: Seconds between looks, doubling from the first to the last (a look is one HEAD per part:
#: cheap, and a long pause would add to every sharded checkpoint's time to durable).
FIRST_LOOK, LAST_LOOK = 0.05, 0.5
#: Parts looked up at once.
LOOKUPS = 16


async def missing_parts(repository: Repository, record: CheckpointRecord) -> list[int]:
    """The ranks whose parts of ``record`` are not in ``repository`` (yet)."""
    missing: list[int] = []
    limiter = anyio.CapacityLimiter(LOOKUPS)

    async def look(rank: int) -> None:
        async with limiter:
            try:
                await repository.archive_size("checkpoints", part_id(record.id, rank))
            except ObjectNotFound:
                missing.append(rank)

    async with anyio.create_task_group() as tg:
        for rank in part_ranks(record):
            tg.start_soon(look, rank)
    return sorted(missing)


async def wait_for_parts(
    repository: Repository, record: CheckpointRecord, wait: float = PARTS_WAIT
) -> None:
    """Return once every other part of ``record`` is in storage; JobFailed (transient) after
    ``wait`` seconds, naming the ranks it still waits for."""
    deadline = time.monotonic() + wait
    pause = FIRST_LOOK
    while missing := await missing_parts(repository, record):
        if time.monotonic() + pause > deadline:
            raise JobFailed(
                f"waiting for the parts of {describe_ranks(missing)} "
                f"(not in {repository.url} yet; each rank's own daemon or `replicate wait` "
                "on its node uploads them)",
                permanent=False,
            )
        await anyio.sleep(pause)
        pause = min(pause * 2, LAST_LOOK)
