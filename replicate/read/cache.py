"""A local cache of checkpoint files, so a framework can be handed a real path more than once.

Layout: ``<cache dir>/checkpoints/<checkpoint id>/`` holds the checkpoint's files and
``.replicate-cache.json``, which lists each file's size, mtime and sha256 as extracted. An entry
is built in a temporary directory beside it and renamed into place only when complete, so a
reader never sees a partial one. On a hit, every file is checked against that list: size
always; sha256 again when the mtime changed (someone wrote to it). A mismatch throws the entry
away and downloads it again.

The cache dir is ``REPLICATE_CACHE_DIR``, else ``$XDG_CACHE_HOME/replicate``, else
``~/.cache/replicate``: checkpoint ids are random and never reused, so one cache serves every
project of the user.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from replicate.errors import CorruptedArchive, DoesNotExist
from replicate.extract import ExtractTo
from replicate.ids import short_id
from replicate.read.files import checkpoint_archives, not_pending, stream_into
from replicate.read.source import Source
from replicate.records import CheckpointRecord
from replicate.repository import Repository

MANIFEST = ".replicate-cache.json"


def cache_dir() -> Path:
    """Where cached checkpoints live (see the module docstring)."""
    configured = os.environ.get("REPLICATE_CACHE_DIR", "").strip()
    if configured:
        return Path(configured).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "replicate"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _describe(path: Path, sha256: str | None = None) -> dict[str, Any]:
    stat = path.stat()
    return {
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "sha256": sha256 or _sha256(path),
    }


def _valid(entry: Path, checkpoint_id: str) -> bool:
    """True if ``entry`` holds every file its manifest lists, unchanged."""
    try:
        manifest = json.loads((entry / MANIFEST).read_text())
        if manifest.get("checkpoint_id") != checkpoint_id:
            return False
        for rel, want in manifest["files"].items():
            path = entry / rel
            stat = path.stat()
            if stat.st_size != want["size"]:
                return False
            if stat.st_mtime_ns != want["mtime_ns"] and _sha256(path) != want["sha256"]:
                return False
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
    return True


def _discard(entry: Path) -> None:
    """Move a bad entry out of the way first (atomic), then delete it."""
    trash = entry.with_name(f".trash-{entry.name}-{os.getpid()}")
    with contextlib.suppress(OSError):
        os.rename(entry, trash)
        shutil.rmtree(trash, ignore_errors=True)


def _fill(source: Source, checkpoint: CheckpointRecord, staging: Path) -> None:
    """Extract the checkpoint's tarball into ``staging`` and write its manifest there."""
    sink = ExtractTo(staging)

    async def fetch(repository: Repository) -> None:
        for archive in checkpoint_archives(checkpoint):  # every part of a sharded one
            await stream_into(repository, archive, sink)

    source.run(fetch)
    files = {rel: _describe(staging / rel) for rel in sorted(sink.written)}
    body = {"checkpoint_id": checkpoint.id, "files": files}
    (staging / MANIFEST).write_text(json.dumps(body, indent=1))


def cached_checkpoint(source: Source, checkpoint: CheckpointRecord) -> Path:
    """The local directory holding all of ``checkpoint``'s files, downloaded on first use."""
    if not checkpoint.path:
        raise DoesNotExist(
            f"checkpoint {short_id(checkpoint.id)} has no files (it only records metrics)"
        )
    root = cache_dir() / "checkpoints"
    entry = root / checkpoint.id
    if _valid(entry, checkpoint.id):
        return entry
    not_pending(checkpoint, source)
    if entry.exists():
        if _valid(entry, checkpoint.id):  # another process (a rank beside this one) made it
            return entry  # meanwhile, and may be reading it now
        _discard(entry)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{checkpoint.id[:7]}-", dir=root))
    try:
        _fill(source, checkpoint, staging)
        try:
            os.rename(staging, entry)
        except OSError:  # another process put it there first: use theirs if it is whole
            if not _valid(entry, checkpoint.id):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if not _valid(entry, checkpoint.id):
        raise CorruptedArchive(f"the cached copy of checkpoint {short_id(checkpoint.id)} changed")
    return entry


def local_path(source: Source, checkpoint: CheckpointRecord, path: str) -> Path:
    """A real local path to file or directory ``path`` of the checkpoint (``"."``: all of it)."""
    entry = cached_checkpoint(source, checkpoint)
    rel = path.replace("\\", "/").strip("/").removeprefix("./")
    if rel in ("", "."):
        return entry
    target = entry / rel
    if ".." in rel.split("/") or not (target.is_file() or target.is_dir()) or rel == MANIFEST:
        members = sorted(json.loads((entry / MANIFEST).read_text())["files"])
        shown = ", ".join(members[:10]) + (", …" if len(members) > 10 else "")
        raise DoesNotExist(
            f"no file or directory {rel!r} in checkpoint {short_id(checkpoint.id)}; it has: {shown}"
        )
    return target
