"""Storage on a local directory: atomic writes through aiofiles, no blocking IO on the loop."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from types import TracebackType
from typing import Self

import aiofiles
import aiofiles.os
import anyio.to_thread

from replicate.config import local_path
from replicate.errors import ConfigError, ObjectNotFound, StorageError, StoragePermissionError
from replicate.storage import _common

__all__ = ["DiskStorage", "map_disk_errors"]

#: Temporary files of writes in progress: ``.<name>.<32 hex>.tmp``, never listed.
_TEMP_NAME = re.compile(r"^\..+\.[0-9a-f]{32}\.tmp$")


@contextlib.contextmanager
def map_disk_errors(key: str) -> Iterator[None]:
    """Translate OSError into the StorageError hierarchy; the one translation point for disk."""
    try:
        yield
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as e:
        raise ObjectNotFound(f"no such object: {key}") from e
    except PermissionError as e:
        raise StoragePermissionError(f"permission denied on {key}: {e.strerror}") from e
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise StorageError(f"disk full while writing {key}") from e
        raise StorageError(f"disk error on {key}: {e}") from e


def _walk(root: str, prefix: str) -> list[str]:
    """Return the keys under ``prefix`` (runs in a worker thread)."""
    # Walk only the deepest directory the prefix names, then filter by the full prefix.
    base = prefix.rpartition("/")[0]
    top = os.path.join(root, *base.split("/")) if base else root
    keys: list[str] = []
    with map_disk_errors(prefix):
        for dirpath, _dirs, files in os.walk(top):
            rel = os.path.relpath(dirpath, root)
            rel = "" if rel == "." else rel.replace(os.sep, "/") + "/"
            for name in files:
                key = rel + name
                if key.startswith(prefix) and not _TEMP_NAME.match(name):
                    keys.append(key)
    return keys


def _fsync_dir(directory: str) -> None:
    """Make a rename in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DiskStorage:
    """Objects are files under a root directory; keys are paths relative to it.

    Args:
        url: ``file:///absolute/path``.
        fsync: flush each file before renaming it into place, and its directory after
            (``REPLICATE_FSYNC=1``: durable across a machine crash, slower). Without it,
            writes are still atomic for readers.
    """

    def __init__(self, url: str, *, fsync: bool = False) -> None:
        found = local_path(url)
        if found is None:
            raise ConfigError(f"not a local file URL: {url!r} (use file:///absolute/path)")
        path = str(found)
        if not os.path.isabs(path):
            raise ConfigError(f"file URL must hold an absolute path: {url!r}")
        self.url = url
        self.root = os.path.normpath(path)
        self.fsync = fsync

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def _path(self, key: str) -> str:
        return os.path.join(self.root, *_common.check_key(key).split("/"))

    async def read(self, key: str) -> bytes:
        """Return the whole object. Raises ObjectNotFound if absent."""
        path = self._path(key)
        with map_disk_errors(key):
            async with aiofiles.open(path, "rb") as f:
                return await f.read()

    async def read_range(self, key: str, start: int, length: int) -> bytes:
        """Return ``length`` bytes from ``start`` (fewer at the end of the object)."""
        if start < 0 or length < 0:
            raise ValueError(f"bad range start={start} length={length}")
        path = self._path(key)
        with map_disk_errors(key):
            async with aiofiles.open(path, "rb") as f:
                await f.seek(start)
                return await f.read(length)

    async def stream(self, key: str, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        """Yield the object's bytes in chunks without holding it in memory."""
        path = self._path(key)
        with map_disk_errors(key):
            f = await aiofiles.open(path, "rb")
        try:
            while True:
                with map_disk_errors(key):
                    chunk = await f.read(chunk_size)
                if not chunk:
                    return
                yield chunk
        finally:
            await f.close()

    async def write(self, key: str, data: bytes) -> None:
        """Write a whole object atomically: readers see the old or the new bytes, never a mix."""

        async def one() -> AsyncIterator[bytes]:
            yield data

        await self.upload(key, one())

    def _fsync_parents(self, directory: str) -> None:
        root = os.path.normpath(self.root)
        while os.path.normpath(directory) != root and directory != os.path.dirname(directory):
            directory = os.path.dirname(directory)
            _fsync_dir(directory)

    async def upload(self, key: str, source: AsyncIterable[bytes]) -> int:
        """Stream ``source`` into a temporary file beside the target, then rename it into place."""
        path = self._path(key)
        directory, name = os.path.split(path)
        # Same directory as the target, so the rename is atomic (one filesystem).
        temp = os.path.join(directory, f".{name}.{uuid.uuid4().hex}.tmp")
        written = 0
        with map_disk_errors(key):
            created = self.fsync and not await aiofiles.os.path.isdir(directory)
            await aiofiles.os.makedirs(directory, exist_ok=True)
            try:
                async with aiofiles.open(temp, "wb") as f:
                    async for chunk in source:
                        await f.write(chunk)
                        written += len(chunk)
                    if self.fsync:
                        await f.flush()
                        await anyio.to_thread.run_sync(os.fsync, f.fileno())
                await aiofiles.os.replace(temp, path)
                if self.fsync:
                    await anyio.to_thread.run_sync(_fsync_dir, directory)
                if created:  # new directories' own entries, up to the repository's root
                    await anyio.to_thread.run_sync(self._fsync_parents, directory)
            except BaseException:
                with anyio.CancelScope(shield=True), contextlib.suppress(OSError):
                    await aiofiles.os.remove(temp)
                raise
        return written

    async def exists(self, key: str) -> bool:
        """Return True if the object exists."""
        return await aiofiles.os.path.isfile(self._path(key))

    async def size(self, key: str) -> int:
        """Return the object's size in bytes. Raises ObjectNotFound if absent."""
        path = self._path(key)
        with map_disk_errors(key):
            st = await aiofiles.os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise ObjectNotFound(f"no such object: {key}")
        return st.st_size

    async def list(self, prefix: str) -> list[str]:
        """Return every key under ``prefix``, relative to the root, in no particular order."""
        _common.check_prefix(prefix)
        return await anyio.to_thread.run_sync(_walk, self.root, prefix)

    async def listing(self, prefix: str) -> dict[str, str]:
        """Return every key under ``prefix`` with ``size:mtime_ns`` (a replace changes both)."""
        _common.check_prefix(prefix)

        def walk_and_stat() -> dict[str, str]:
            found = {}
            for key in _walk(self.root, prefix):
                with contextlib.suppress(FileNotFoundError):  # deleted while we listed
                    st = os.stat(self._path(key))
                    found[key] = f"{st.st_size}:{st.st_mtime_ns}"
            return found

        return await anyio.to_thread.run_sync(walk_and_stat)

    async def delete(self, key: str) -> None:
        """Delete one object; deleting a missing object is not an error."""
        path = self._path(key)
        with map_disk_errors(key), contextlib.suppress(FileNotFoundError):
            await aiofiles.os.remove(path)

    async def check_writable(self) -> None:
        """Create the root directory if missing, then write and delete a probe object."""
        probe = f".replicate-probe-{uuid.uuid4().hex}"
        with map_disk_errors(self.root):
            await aiofiles.os.makedirs(self.root, exist_ok=True)
        await self.write(probe, b"probe")
        await self.delete(probe)
