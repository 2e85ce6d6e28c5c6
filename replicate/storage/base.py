"""The Storage protocol every backend implements."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from types import TracebackType
from typing import Protocol, Self

#: Objects at least this large are uploaded in parts (S3 multipart, GCS resumable chunks).
PART_SIZE = 8 * 1024 * 1024
#: Parts in flight at once for one upload.
PARTS_IN_FLIGHT = 4


class Storage(Protocol):
    """**Protocol**: an async blob store rooted at one URL. Keys are relative, '/'-separated.

    Clients are opened in ``__aenter__``, inside the event loop that will use them, and are
    never used from another loop or thread.
    """

    url: str

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def read(self, key: str) -> bytes:
        """Return the whole object. Raises ObjectNotFound if absent."""
        ...

    async def read_range(self, key: str, start: int, length: int) -> bytes:
        """Return ``length`` bytes from ``start`` (fewer at the end of the object)."""
        ...

    def stream(self, key: str, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        """Yield the object's bytes in chunks without holding it in memory (an async generator).

        Raises ObjectNotFound on first iteration if the key is absent.
        """
        ...

    async def write(self, key: str, data: bytes) -> None:
        """Write a whole object atomically: readers see the old or the new bytes, never a mix."""
        ...

    async def upload(self, key: str, source: AsyncIterable[bytes]) -> int:
        """Stream an object of unknown length from ``source``; return the bytes written.

        Memory stays bounded (a few parts) whatever the size; the object appears only when
        complete.
        """
        ...

    async def exists(self, key: str) -> bool: ...

    async def size(self, key: str) -> int:
        """Return the object's size in bytes. Raises ObjectNotFound if absent."""
        ...

    async def list(self, prefix: str) -> list[str]:
        """Return every key under ``prefix`` (a "directory" such as ``metadata/experiments/``)."""
        ...

    async def listing(self, prefix: str) -> dict[str, str]:
        """Return every key under ``prefix`` with a version token from the same listing.

        The token (S3 ETag, GCS generation, size and mtime on disk) changes whenever the
        object is rewritten, so a reader can re-read only what changed.
        """
        ...

    async def delete(self, key: str) -> None:
        """Delete one object; deleting a missing object is not an error."""
        ...

    async def check_writable(self) -> None:
        """One round trip that proves the bucket exists and can be written, or raises."""
        ...
