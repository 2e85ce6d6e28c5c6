"""Files out of tarballs: one member for ``open()``, whole checkouts through a staging dir."""

from __future__ import annotations

import contextlib
import filecmp
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import anyio

from replicate.errors import (
    CheckoutCancelled,
    CorruptedArchive,
    DoesNotExist,
    ObjectNotFound,
    ValidationError,
)
from replicate.extract import ExtractTo, MemberSink, OneMember, Unpacker
from replicate.ids import short_id
from replicate.read.source import Source
from replicate.records import CheckpointRecord, ExperimentRecord
from replicate.repository import ArchiveFolder, Repository, archive_key

#: Called with (total bytes) once, then with each chunk's size.
Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class Archive:
    """One tarball to read: what it is, for messages."""

    folder: ArchiveFolder
    id: str
    what: str


def archives(experiment: ExperimentRecord, checkpoint: CheckpointRecord | None) -> list[Archive]:
    """The tarballs a checkout reads, in order: the code, then the checkpoint's files."""
    found = []
    if experiment.path:
        found.append(Archive("experiments", experiment.id, f"experiment {short_id(experiment.id)}"))
    if checkpoint is not None and checkpoint.path:
        found.append(Archive("checkpoints", checkpoint.id, f"checkpoint {short_id(checkpoint.id)}"))
    return found


def not_pending(checkpoint: CheckpointRecord | None, source: Source) -> None:
    from replicate.read.source import queued

    if checkpoint is None:
        return
    for records in queued(source).checkpoints.values():
        if any(c.id == checkpoint.id for c, _ in records):
            raise DoesNotExist(
                f"checkpoint {short_id(checkpoint.id)} is still in the local upload queue: "
                "run `replicate wait` to upload it, then try again"
            )


async def stream_into(
    repository: Repository,
    archive: Archive,
    sink: MemberSink,
    progress: Progress | None = None,
) -> None:
    """Stream one tarball through an Unpacker into ``sink``; the inflating runs off the loop."""
    unpacker = Unpacker(sink, archive_key(archive.folder, archive.id))
    chunks: AsyncIterator[bytes] = repository.stream_archive(archive.folder, archive.id)
    try:
        async with contextlib.aclosing(chunks):  # type: ignore[type-var]
            async for chunk in chunks:
                done = await anyio.to_thread.run_sync(unpacker.feed, chunk)
                if progress is not None:
                    progress(len(chunk))
                if done:
                    return
        await anyio.to_thread.run_sync(unpacker.close)
    except ObjectNotFound:
        raise CorruptedArchive(
            f"the files of {archive.what} are missing from {repository.url} "
            f"({archive_key(archive.folder, archive.id)})"
        ) from None
    finally:
        with anyio.CancelScope(shield=True):  # closing a file is IO: off the loop
            await anyio.to_thread.run_sync(unpacker.abort)


def open_member(
    source: Source, experiment: ExperimentRecord, checkpoint: CheckpointRecord, path: str
) -> BinaryIO:
    """Open file ``path`` of the checkpoint, else of the experiment's code (see CheckpointView)."""
    rel = path.replace("\\", "/").strip("/").removeprefix("./")
    not_pending(checkpoint, source)

    async def find(repository: Repository) -> Path | None:
        is_directory = False
        for archive in reversed(archives(experiment, checkpoint)):  # the checkpoint's first
            sink = OneMember(rel)
            try:
                await stream_into(repository, archive, sink)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(sink.discard)
                raise
            if sink.path is not None:
                return sink.path
            is_directory = is_directory or sink.is_directory
        if is_directory:
            raise ValidationError(
                f"{rel!r} is a directory: use checkout(output_dir, paths=[{rel!r}]) instead"
            )
        return None

    found = source.run(find)
    if found is None:
        raise DoesNotExist(
            f"no file {rel!r} in checkpoint {short_id(checkpoint.id)} "
            f"(its files are under {checkpoint.path or 'nothing: it has no files'!r}) "
            f"or in the code of experiment {short_id(experiment.id)}"
        )
    file = open(found, "rb")  # noqa: SIM115 - returned to the caller
    found.unlink()  # anonymous from now on: gone when the caller closes it
    return file


@dataclass
class CheckoutResult:
    """What a checkout wrote."""

    output_dir: Path
    #: Relative paths written, sorted.
    files: list[str] = field(default_factory=list)
    #: Of those, the ones that replaced a different existing file.
    overwritten: list[str] = field(default_factory=list)


#: Asked with the files a checkout would overwrite; False cancels it.
Confirm = Callable[[list[str]], bool]


def checkout(
    source: Source,
    experiment: ExperimentRecord,
    checkpoint: CheckpointRecord | None,
    output_dir: Path,
    *,
    paths: Sequence[str] | None = None,
    confirm: Confirm | None = None,
    on_total: Progress | None = None,
    on_progress: Progress | None = None,
) -> CheckoutResult:
    """Extract the code, then the checkpoint's files over it, into ``output_dir``.

    Everything goes to a staging dir beside the target first, so a truncated tarball leaves
    nothing half-written. ``confirm`` is asked before files that differ are overwritten.
    """
    not_pending(checkpoint, source)
    todo = archives(experiment, checkpoint)
    what = f"checkpoint {short_id(checkpoint.id)}" if checkpoint else "experiment"
    if not todo:
        raise DoesNotExist(
            f"{what} {'' if checkpoint else short_id(experiment.id) + ' '}has no files to check out"
        )
    output_dir = output_dir.absolute()
    created = [p for p in (output_dir, *output_dir.parents) if not p.exists()]
    output_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".replicate-checkout-", dir=output_dir))
    sink = ExtractTo(staging, paths)

    async def fetch(repository: Repository) -> None:
        sizes = [0] * len(todo)

        async def size(i: int, archive: Archive) -> None:
            with contextlib.suppress(ObjectNotFound):  # reported when streamed
                sizes[i] = await repository.archive_size(archive.folder, archive.id)

        async with anyio.create_task_group() as tg:
            for i, archive in enumerate(todo):
                tg.start_soon(size, i, archive)
        if on_total is not None:
            on_total(sum(sizes))
        for archive in todo:  # in order: the checkpoint's files win
            await stream_into(repository, archive, sink, on_progress)

    try:
        source.run(fetch)
        if paths is not None and not sink.written:
            raise DoesNotExist(f"nothing matches {', '.join(paths)} in {what}")
        files = sorted(sink.written)
        changed = [rel for rel in files if _differs(staging / rel, output_dir / rel)]
        if changed and confirm is not None and not confirm(changed):
            raise CheckoutCancelled("checkout cancelled: nothing was changed")
        for rel in files:
            target = output_dir / rel
            if target.is_dir() and not target.is_symlink():
                raise ValidationError(f"cannot check out {rel}: {target} is a directory")
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / rel, target)
        return CheckoutResult(output_dir, files, changed)
    except BaseException:
        if created:  # only what this checkout made: the topmost directory it created
            shutil.rmtree(created[-1], ignore_errors=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _differs(new: Path, old: Path) -> bool:
    if not old.exists() and not old.is_symlink():
        return False
    return not old.is_file() or not filecmp.cmp(new, old, shallow=False)
