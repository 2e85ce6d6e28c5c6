"""What the backends share: key checks, root-prefix joins, parts, and ``BucketStorage``.

``BucketStorage`` holds the logic of the bucket stores (S3, GCS) around their per-request hooks.
"""

from __future__ import annotations

import abc
import contextlib
import functools
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import ClassVar, TypeVar
from urllib.parse import urlparse

from replicate.errors import (
    ConfigError,
    ObjectNotFound,
    StoragePermissionError,
    TransientStorageError,
    ValidationError,
)
from replicate.retries import RetryPolicy
from replicate.storage.base import PART_SIZE

T = TypeVar("T")

#: Reads up to n bytes of an open download; b"" at its end.
Reader = Callable[[int], Awaitable[bytes]]
#: An open download: its version (ETag, generation) and the context that reads it.
Opened = tuple[str | None, AbstractAsyncContextManager[Reader]]


def check_key(key: str) -> str:
    """Return ``key`` if it is a relative '/'-separated key, else raise ValidationError.

    Args:
        key: a key such as ``metadata/experiments/abc.json``.

    Raises:
        ValidationError: the key is empty, absolute, or has an empty, '.' or '..' segment.
    """
    if not key or key.startswith("/") or "\\" in key or "\x00" in key:
        raise ValidationError(f"invalid storage key {key!r}: keys are relative, '/'-separated")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise ValidationError(f"invalid storage key {key!r}: no empty, '.' or '..' segments")
    return key


def check_prefix(prefix: str) -> str:
    """Return ``prefix`` if it is empty or a valid key with an optional trailing '/'."""
    if prefix:
        check_key(prefix.removesuffix("/"))
    return prefix


def join(root: str, key: str) -> str:
    """Return the full object name of ``key`` under the root prefix ``root``."""
    return f"{root}/{key}" if root else key


def strip(root: str, name: str) -> str:
    """Return the key of the full object name ``name`` under the root prefix ``root``."""
    return name[len(root) + 1 :] if root else name


async def parts(
    source: AsyncIterable[bytes], size: int
) -> AsyncGenerator[tuple[bytes, bool], None]:
    """Re-chunk ``source`` into ``(part, is_last)`` pairs of exactly ``size`` bytes but the last.

    A part is only yielded as not-last once a byte beyond it has arrived, so ``is_last`` is
    known when each part is handed out (GCS needs the total size with the final chunk). At most
    one part plus one source chunk is buffered here. An empty source yields ``(b"", True)``.
    """
    buffer = bytearray()
    async for data in source:
        buffer += data
        while len(buffer) > size:
            part = bytes(buffer[:size])
            del buffer[:size]
            yield part, False
    yield bytes(buffer), True


class BucketStorage(abc.ABC):
    """What the bucket stores (S3, GCS) share, around single-attempt hooks each one supplies.

    A backend implements the hooks as one request each, translating its errors with its own
    ``map_*_errors``. This class adds the key checks, the retries, the one-time bucket check
    that tells a missing bucket from a missing object, resumable streaming, list paging, and
    the choice between one write and a multi-part upload.

    Args:
        url: ``<scheme>://bucket`` or ``<scheme>://bucket/prefix``.
        policy: the request deadline (replicate.retries); every request goes through it.
    """

    #: The URL scheme, and the store as named in "not <described> URL" errors.
    scheme: ClassVar[str]
    described: ClassVar[str]

    def __init__(self, url: str, *, policy: RetryPolicy | None = None) -> None:
        parsed = urlparse(url)
        if parsed.scheme != self.scheme or not parsed.netloc:
            raise ConfigError(
                f"not {self.described} URL: {url!r} (use {self.scheme}://bucket/prefix)"
            )
        self.url = url
        self.bucket = parsed.netloc
        self.root = parsed.path.strip("/")
        self.policy = policy or RetryPolicy()
        self._bucket_ok = False

    # Hooks: one attempt of one request each, its errors translated by the backend.

    @property
    @abc.abstractmethod
    def endpoint(self) -> str:
        """Where requests go (an endpoint URL), for error messages."""

    @abc.abstractmethod
    def _map_errors(self, name: str) -> AbstractContextManager[None]:
        """The backend's error translation for the object ``name``."""

    @abc.abstractmethod
    async def _head_bucket(self) -> None:
        """Raise BucketNotFound unless the bucket exists."""

    @abc.abstractmethod
    async def _get_object(self, name: str) -> bytes: ...

    @abc.abstractmethod
    async def _get_range(self, name: str, start: int, length: int) -> bytes:
        """Return ``length`` (> 0) bytes from ``start``; b"" when start is past the end."""

    @abc.abstractmethod
    async def _open_at(self, name: str, offset: int, version: str | None) -> Opened | None:
        """Open a download from ``offset``; None when ``offset`` (> 0) is at the end.

        A resumed download (``offset`` > 0) must fail rather than read an object other
        than ``version``, the version the first one returned.
        """

    @abc.abstractmethod
    async def _put_object(self, name: str, data: bytes) -> None: ...

    @abc.abstractmethod
    async def _upload_parts(
        self, name: str, first: bytes, chunks: AsyncIterator[tuple[bytes, bool]]
    ) -> int:
        """Upload ``first`` then ``chunks`` (from ``parts``) as one object; return the size.

        It retries its own requests, and leaves no object behind when it fails.
        """

    @abc.abstractmethod
    async def _object_size(self, name: str) -> int: ...

    @abc.abstractmethod
    async def _list_page(
        self, prefix: str, token: str | None
    ) -> tuple[list[tuple[str, str]], str | None]:
        """Return (full object name, version) of one page and the next page's token (None: last).

        The version is the ETag or generation the listing reports."""

    @abc.abstractmethod
    async def _delete_object(self, name: str) -> None: ...

    # Shared logic.

    async def _retry(self, operation: Callable[[], Awaitable[T]]) -> T:
        """One request under the retry policy; a timeout names the endpoint."""
        return await self.policy.request(operation, self.endpoint)

    async def _object_op(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run an object operation; a 404 from a missing bucket becomes BucketNotFound."""
        try:
            result = await self._retry(operation)
        except ObjectNotFound:
            # A missing bucket can answer a bare 404 like a missing object: check it once.
            if not self._bucket_ok:
                with contextlib.suppress(StoragePermissionError, TransientStorageError):
                    await self._check_bucket()
            raise
        self._bucket_ok = True
        return result

    async def _check_bucket(self) -> None:
        await self._retry(self._head_bucket)
        self._bucket_ok = True

    def _name(self, key: str) -> str:
        return join(self.root, check_key(key))

    async def read(self, key: str) -> bytes:
        """Return the whole object. Raises ObjectNotFound if absent."""
        return await self._object_op(functools.partial(self._get_object, self._name(key)))

    async def read_range(self, key: str, start: int, length: int) -> bytes:
        """Return ``length`` bytes from ``start`` (fewer at the end of the object)."""
        if start < 0 or length < 0:
            raise ValueError(f"bad range start={start} length={length}")
        name = self._name(key)
        if length == 0:
            await self.size(key)
            return b""
        return await self._object_op(functools.partial(self._get_range, name, start, length))

    async def stream(self, key: str, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        """Yield the object's bytes in chunks; a dropped connection resumes where it stopped."""
        name = self._name(key)
        offset = 0
        version: str | None = None
        failing_since: float | None = None
        while True:
            opened = await self._object_op(functools.partial(self._open_at, name, offset, version))
            if opened is None:
                return
            version, body = opened
            async with body as read:
                while True:
                    try:
                        with self._map_errors(name):
                            chunk = await read(chunk_size)
                    except TransientStorageError:
                        failing_since = failing_since or time.monotonic()
                        if time.monotonic() - failing_since > self.policy.request_deadline:
                            raise
                        break  # reopen at ``offset``
                    if not chunk:
                        return
                    failing_since = None
                    offset += len(chunk)
                    yield chunk

    async def write(self, key: str, data: bytes) -> None:
        """Write a whole object atomically with one request."""
        await self._retry(functools.partial(self._put_object, self._name(key), data))
        self._bucket_ok = True

    async def upload(self, key: str, source: AsyncIterable[bytes]) -> int:
        """Stream ``source`` in PART_SIZE parts; a source smaller than one part is one write."""
        name = self._name(key)
        async with contextlib.aclosing(parts(source, PART_SIZE)) as chunks:
            first, last = await anext(chunks)
            if last:
                await self.write(key, first)
                return len(first)
            return await self._upload_parts(name, first, chunks)

    async def exists(self, key: str) -> bool:
        """Return True if the object exists."""
        try:
            await self.size(key)
        except ObjectNotFound:
            return False
        return True

    async def size(self, key: str) -> int:
        """Return the object's size in bytes. Raises ObjectNotFound if absent."""
        return await self._object_op(functools.partial(self._object_size, self._name(key)))

    async def delete(self, key: str) -> None:
        """Delete one object; deleting a missing object is not an error."""
        name = self._name(key)
        with contextlib.suppress(ObjectNotFound):
            await self._object_op(functools.partial(self._delete_object, name))

    async def check_writable(self) -> None:
        """Write and delete a probe object: proves the bucket exists and accepts writes."""
        probe = f".replicate-probe-{uuid.uuid4().hex}"
        await self.write(probe, b"probe")
        await self.delete(probe)

    # Last: below this, ``list`` in the class body names the method.
    async def list(self, prefix: str) -> list[str]:
        """Return every key under ``prefix``, relative to the root, a page at a time."""
        return [*(await self.listing(prefix))]

    async def listing(self, prefix: str) -> dict[str, str]:
        """Return every key under ``prefix`` with its ETag or generation, a page at a time."""
        full = join(self.root, check_prefix(prefix))
        keys: dict[str, str] = {}
        token: str | None = None
        while True:
            names, token = await self._retry(functools.partial(self._list_page, full, token))
            keys.update((strip(self.root, name), version) for name, version in names)
            if token is None:
                break
        self._bucket_ok = True
        return keys
