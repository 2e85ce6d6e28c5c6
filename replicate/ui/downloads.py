"""Downloads of repository objects: whole tarballs, one file streamed out of one, file lists."""

from __future__ import annotations

import contextlib
import io
from collections.abc import AsyncIterator
from typing import BinaryIO

import anyio
from aiohttp import web

from replicate.errors import CorruptedArchive, DoesNotExist, ObjectNotFound
from replicate.extract import Unpacker
from replicate.read.files import Archive, stream_into
from replicate.repository import Repository, archive_key

#: Compressed bytes fed to the decoder at a time: bounds what one feed can inflate.
FEED_SIZE = 256 * 1024


class Listing:
    """A sink that records each member's path and size and keeps no data."""

    def __init__(self) -> None:
        self.files: list[tuple[str, int]] = []

    def begin(self, rel: str, size: int, mode: int) -> BinaryIO | None:
        self.files.append((rel, size))
        return None

    def end(self, rel: str, file: BinaryIO) -> bool:
        return False


async def list_files(repository: Repository, archive: Archive) -> list[tuple[str, int]]:
    """(path, size) of every file in the tarball, sorted."""
    sink = Listing()
    await stream_into(repository, archive, sink)
    return sorted(sink.files)


class _Pieces(io.BytesIO):
    """Collects what the decoder writes until the loop takes it."""

    def __init__(self) -> None:
        super().__init__()
        self.pieces: list[bytes] = []

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.pieces.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data, self.pieces = b"".join(self.pieces), []
        return data


class OneFile:
    """A sink that forwards member ``rel`` as it is decoded, and stops after it."""

    def __init__(self, rel: str) -> None:
        self.rel = rel
        self.size: int | None = None
        self.out = _Pieces()

    def begin(self, rel: str, size: int, mode: int) -> BinaryIO | None:
        if rel != self.rel:
            return None
        self.size = size
        return self.out

    def end(self, rel: str, file: BinaryIO) -> bool:
        return True


def _attachment(name: str) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name) or "download"
    return f'attachment; filename="{safe}"'


async def send_object(
    request: web.Request, repository: Repository, archive: Archive
) -> web.StreamResponse:
    """Stream a tarball of the repository as it is stored."""
    key = archive_key(archive.folder, archive.id)
    chunks: AsyncIterator[bytes] = repository.storage.stream(key)
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/gzip",
            "Content-Disposition": _attachment(f"{archive.id}.tar.gz"),
        }
    )
    async with contextlib.aclosing(chunks):  # type: ignore[type-var]
        try:
            first = await anext(chunks, b"")
        except ObjectNotFound:
            raise DoesNotExist(
                f"the files of {archive.what} are missing from the repository"
            ) from None
        with contextlib.suppress(ObjectNotFound):
            response.content_length = await repository.storage.size(key)
        await response.prepare(request)
        await response.write(first)
        async for chunk in chunks:
            await response.write(chunk)
    await response.write_eof()
    return response


async def send_member(
    request: web.Request, repository: Repository, archive: Archive, rel: str
) -> web.StreamResponse:
    """Stream file ``rel`` out of a tarball as it is decoded; nothing is written to disk."""
    sink = OneFile(rel)
    unpacker = Unpacker(sink, archive_key(archive.folder, archive.id))
    key = archive_key(archive.folder, archive.id)
    chunks: AsyncIterator[bytes] = repository.storage.stream(key, FEED_SIZE)
    response: web.StreamResponse | None = None
    async with contextlib.aclosing(chunks):  # type: ignore[type-var]
        try:
            async for chunk in chunks:
                done = await anyio.to_thread.run_sync(unpacker.feed, chunk)
                if response is None and sink.size is not None:
                    response = web.StreamResponse(
                        headers={
                            "Content-Type": "application/octet-stream",
                            "Content-Disposition": _attachment(rel.rpartition("/")[2]),
                        }
                    )
                    response.content_length = sink.size
                    await response.prepare(request)
                if response is not None:
                    await response.write(sink.out.take())
                if done:
                    break
            else:
                await anyio.to_thread.run_sync(unpacker.close)
        except ObjectNotFound:
            raise CorruptedArchive(
                f"the files of {archive.what} are missing from the repository"
            ) from None
    if response is None:
        raise DoesNotExist(f"no file {rel!r} in {archive.what}")
    await response.write_eof()
    return response
