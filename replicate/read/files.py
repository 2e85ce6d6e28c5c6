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
from replicate.parts import archive_ids
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
    if checkpoint is not None:
        found.extend(checkpoint_archives(checkpoint))
    return found


def checkpoint_archives(checkpoint: CheckpointRecord) -> list[Archive]:
    """A checkpoint's tarballs: its own, then its other ranks' parts if it is sharded."""
    if not checkpoint.path:
        return []
    what = f"checkpoint {short_id(checkpoint.id)}"
    ids = archive_ids(checkpoint)
    return [
        Archive("checkpoints", id, what if id == checkpoint.id else f"{what} ({id[65:]})")
        for id in ids
    ]


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
    #: Of those, the ones that did not exist before.
    new: list[str] = field(default_factory=list)


#: Asked with the files a checkout would overwrite, then the new ones; False cancels it.
Confirm = Callable[[list[str], list[str]], bool]


async def _fetch(
    repository: Repository,
    todo: list[Archive],
    sink: ExtractTo,
    on_total: Progress | None,
    on_progress: Progress | None,
) -> None:
    """Stream ``todo`` into ``sink`` in order (the checkpoint's files win), sizes told first."""
    sizes = [0] * len(todo)

    async def size(i: int, archive: Archive) -> None:
        with contextlib.suppress(ObjectNotFound):  # reported when streamed
            sizes[i] = await repository.archive_size(archive.folder, archive.id)

    async with anyio.create_task_group() as tg:
        for i, archive in enumerate(todo):
            tg.start_soon(size, i, archive)
    if on_total is not None:
        on_total(sum(sizes))
    for archive in todo:
        await stream_into(repository, archive, sink, on_progress)


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
    nothing half-written. Every target is checked before anything moves (a directory in the
    way, a file where a directory belongs, a symlink leading out of ``output_dir``).
    ``confirm`` is asked before files that differ are overwritten, and sees the new ones too.
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
    try:
        source.run(lambda repository: _fetch(repository, todo, sink, on_total, on_progress))
        if paths is not None and not sink.written:
            raise DoesNotExist(f"nothing matches {', '.join(paths)} in {what}")
        files = sorted(sink.written)
        changed, new = _plan(output_dir, staging, files)
        if changed and confirm is not None and not confirm(changed, new):
            raise CheckoutCancelled("checkout cancelled: nothing was changed")
        _move(staging, output_dir, sink.written)
        return CheckoutResult(output_dir, files, changed, new)
    except BaseException:
        if created:  # only what this checkout made: the topmost directory it created
            shutil.rmtree(created[-1], ignore_errors=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _plan(output_dir: Path, staging: Path, files: list[str]) -> tuple[list[str], list[str]]:
    """Check every target before anything moves; return (changed, new) relative paths.

    Raises ValidationError for a directory where a file goes, a non-directory where a
    directory goes, or a symlinked directory that leads outside ``output_dir`` (writing
    through it would write elsewhere). A symlink at a file's own place is replaced, not
    followed, so it only counts as a change.
    """
    root = output_dir.resolve()
    checked: set[Path] = set()
    changed, new = [], []
    for rel in files:
        target = output_dir / rel
        for above in reversed(target.relative_to(output_dir).parents[:-1]):
            _check_dir(output_dir / above, root, rel, checked)
        if target.is_symlink():
            changed.append(rel)
        elif target.is_dir():
            raise ValidationError(
                f"cannot check out {rel}: {target} is a directory; move it away or use -o"
            )
        elif not target.exists():
            new.append(rel)
        elif not filecmp.cmp(staging / rel, target, shallow=False):
            changed.append(rel)
    return changed, new


def _move(staging: Path, output_dir: Path, modes: dict[str, int]) -> None:
    """Give each staged file its mode bits (less the umask) and rename it into place."""
    umask = _umask()
    for rel, mode in modes.items():
        target = output_dir / rel
        os.chmod(staging / rel, mode & ~umask)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / rel, target)


def _check_dir(path: Path, root: Path, rel: str, checked: set[Path]) -> None:
    """``path`` must be missing, or a directory inside ``root`` (through symlinks too)."""
    if path in checked:
        return
    if path.is_symlink():
        resolved = path.resolve()
        if resolved != root and root not in resolved.parents:
            raise ValidationError(
                f"cannot check out {rel}: {path} is a symlink to {resolved}, outside "
                f"{root}; remove the link or check out elsewhere with -o"
            )
        if not resolved.is_dir():
            raise ValidationError(
                f"cannot check out {rel}: {path} is a symlink to {resolved}, not a directory"
            )
    elif path.exists() and not path.is_dir():
        raise ValidationError(
            f"cannot check out {rel}: {path} is a file, and the checkpoint has files below it"
        )
    checked.add(path)


def _umask() -> int:
    """This process's umask, read without changing it (Linux), else the usual 022."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022
