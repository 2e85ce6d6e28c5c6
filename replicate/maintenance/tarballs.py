"""Checking tarballs: each one streamed through the full gzip and tar decode, concurrently."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import BinaryIO

import anyio

from replicate.errors import CorruptedArchive, ObjectNotFound, ReplicateError
from replicate.extract import Unpacker
from replicate.ids import short_id
from replicate.maintenance.problems import Problem, Subject, Target, refetch_fix, still_uploading
from replicate.repository import READ_CONCURRENCY, Repository, archive_key

#: Tarballs streamed at once (the inflating runs in worker threads).
STREAMS_IN_FLIGHT = 8


class _Discard:
    """A sink that keeps nothing: every member is inflated and dropped."""

    def begin(self, rel: str, size: int, mode: int) -> BinaryIO | None:
        return None

    def end(self, rel: str, file: BinaryIO) -> bool:
        return False


async def stream_check(
    repository: Repository, target: Target, progress: Callable[[int], None]
) -> str | None:
    """Stream the tarball through gzip and tar; return a stray member name, or None.

    Raises CorruptedArchive (truncated, damaged) or ObjectNotFound (deleted meanwhile).
    """
    strays: list[str] = []

    def note(name: str) -> None:
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if not parts or parts[0] != (target.members or target.id):
            strays.append(name)

    check = Unpacker(_Discard(), archive_key(target.folder, target.id), on_name=note)
    chunks: AsyncIterator[bytes] = repository.stream_archive(target.folder, target.id)
    async with contextlib.aclosing(chunks):  # type: ignore[type-var]
        async for chunk in chunks:
            await anyio.to_thread.run_sync(check.feed, chunk)
            progress(len(chunk))
    await anyio.to_thread.run_sync(check.close)
    return strays[0] if strays else None


def problem_of(target: Target, what: str, *, fix: bool = True) -> Problem:
    subject: Subject = "experiment" if target.folder == "experiments" else "checkpoint"
    if fix:
        what = f"{what}; {refetch_fix(target.id)}"
    return Problem(subject, target.id, target.experiment, what, target.label)


async def check_tarballs(
    repository: Repository,
    targets: Sequence[Target],
    on_total: Callable[[int], None],
    on_progress: Callable[[int], None],
) -> tuple[list[Problem | None], int]:
    """Check every target concurrently; return a finding per target and the bytes checked."""
    # Over 60 lines: the steps below share the per-target results and one cancel scope.
    sizes: list[int | None] = [None] * len(targets)
    found: list[Problem | None] = [None] * len(targets)
    fatal: list[BaseException] = []

    async def guarded(
        scope: anyio.CancelScope, fn: Callable[[int], Awaitable[None]], i: int
    ) -> None:
        try:
            await fn(i)
        except ReplicateError as exc:  # storage trouble: the check cannot be finished
            fatal.append(exc)
            scope.cancel()

    heads = anyio.CapacityLimiter(READ_CONCURRENCY)

    async def size(i: int) -> None:
        target = targets[i]
        async with heads:
            with contextlib.suppress(ObjectNotFound):
                sizes[i] = await repository.archive_size(target.folder, target.id)

    streams = anyio.CapacityLimiter(STREAMS_IN_FLIGHT)

    async def stream(i: int) -> None:
        target = targets[i]
        missing = f"{archive_key(target.folder, target.id)} is missing"
        if sizes[i] is None:
            found[i] = missing_problem(target, missing)
            return
        async with streams:
            try:
                stray = await stream_check(repository, target, on_progress)
            except ObjectNotFound:  # deleted since its size was read
                found[i] = missing_problem(target, missing)
                return
            except CorruptedArchive as exc:
                if target.pending is not None:
                    note = "it is still in the local upload queue: `replicate wait` re-uploads it"
                    found[i] = problem_of(target, f"{exc}; {note}", fix=False)
                else:
                    found[i] = problem_of(target, str(exc))
                return
        if stray is not None:
            found[i] = problem_of(
                target,
                f"{archive_key(target.folder, target.id)} holds {stray!r}, a member outside "
                f"{short_id(target.id)}…/ (every member must be under its checkpoint's id)",
            )

    for step in (size, stream):
        async with anyio.create_task_group() as tg:
            for i in range(len(targets)):
                tg.start_soon(guarded, tg.cancel_scope, step, i)
        if fatal:
            raise fatal[0]
        if step is size:
            on_total(sum(s or 0 for s in sizes))
    return found, sum(s or 0 for s in sizes)


def missing_problem(target: Target, missing: str) -> Problem:
    if target.pending is not None:
        return problem_of(target, still_uploading(target.pending), fix=False)
    return problem_of(target, missing)
