"""Storage on Google Cloud Storage through gcloud-aio-storage, with chunked resumable uploads."""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterator
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import quote, urlparse

import aiohttp
import anyio.to_thread
from gcloud.aio.storage import Storage as GCSClient

from replicate.errors import (
    BucketNotFound,
    ConfigError,
    ObjectNotFound,
    StorageError,
    StoragePermissionError,
    TransientStorageError,
)
from replicate.storage import _common
from replicate.storage.base import PART_SIZE, retry

__all__ = ["GCSStorage", "map_gcs_errors"]

T = TypeVar("T")

_PRODUCTION_ROOT = "https://storage.googleapis.com"
#: Resumable chunks must be multiples of 256 KiB.
_CHUNK_QUANTUM = 256 * 1024
#: Metadata calls and small objects, in seconds.
_SHORT_TIMEOUT = 60
_SHORT = aiohttp.ClientTimeout(total=_SHORT_TIMEOUT)
#: Between bytes of a large transfer; the total is unbounded.
_TRANSFER_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=15, sock_read=120)


@contextlib.contextmanager
def map_gcs_errors(bucket: str, key: str = "", *, bucket_level: bool = False) -> Iterator[None]:
    """Translate aiohttp errors into the StorageError hierarchy by HTTP status.

    The one translation point for GCS; the original error is kept as ``__cause__``.

    Args:
        bucket: the bucket, named in messages.
        key: the full object name, named in messages.
        bucket_level: the call addresses the bucket (listing, uploading), so 404 means no bucket.
    """
    where = f"gs://{bucket}/{key}"
    try:
        yield
    except aiohttp.ClientResponseError as e:
        if e.status == 404 and bucket_level:
            raise BucketNotFound(
                f"bucket {bucket!r} does not exist: create it with "
                f"`gcloud storage buckets create gs://{bucket}`"
            ) from e
        if e.status == 404:
            raise ObjectNotFound(f"no such object: {where}") from e
        if e.status in (401, 403):
            raise StoragePermissionError(
                f"access denied to {where} ({e.status}): check the Google credentials"
            ) from e
        if e.status in (408, 429) or e.status >= 500:
            raise TransientStorageError(f"GCS is unavailable for {where} ({e.status})") from e
        raise StorageError(f"GCS error on {where}: {e.status}") from e
    except (aiohttp.ClientError, ConnectionError, TimeoutError) as e:
        raise TransientStorageError(f"cannot reach GCS for {where}: {e!r}") from e


def _emulator_root() -> str | None:
    host = os.environ.get("STORAGE_EMULATOR_HOST")
    if not host:
        return None
    return host.rstrip("/") if "://" in host else f"http://{host.rstrip('/')}"


async def _raise_for_status(response: aiohttp.ClientResponse) -> None:
    if response.status >= 400:
        response.release()
        raise aiohttp.ClientResponseError(
            response.request_info,
            response.history,
            status=response.status,
            message=response.reason or "",
            headers=response.headers,
        )


class GCSStorage:
    """Objects under ``gs://bucket/prefix``; the HTTP session opens in ``__aenter__``.

    ``STORAGE_EMULATOR_HOST`` selects an emulator (no credentials are used then); otherwise
    Application Default Credentials.

    Args:
        url: ``gs://bucket`` or ``gs://bucket/prefix``.
        retry_attempts: attempts per operation for transient errors.
        retry_delay: first backoff delay in seconds; it doubles per attempt, with jitter.
    """

    def __init__(self, url: str, *, retry_attempts: int = 6, retry_delay: float = 0.2) -> None:
        parsed = urlparse(url)
        if parsed.scheme != "gs" or not parsed.netloc:
            raise ConfigError(f"not a GCS URL: {url!r} (use gs://bucket/prefix)")
        if PART_SIZE % _CHUNK_QUANTUM:
            raise AssertionError("PART_SIZE must be a multiple of 256 KiB for GCS")
        self.url = url
        self.bucket = parsed.netloc
        self.root = parsed.path.strip("/")
        self._attempts = retry_attempts
        self._delay = retry_delay
        self._emulator = _emulator_root()
        self._api_root = self._emulator or _PRODUCTION_ROOT
        self._session: aiohttp.ClientSession | None = None
        self._client: GCSClient | None = None
        self._bucket_ok = False

    async def __aenter__(self) -> Self:
        # Opened inside the loop that uses it: aiohttp sessions are loop-bound.
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=15, sock_read=_SHORT_TIMEOUT),
            connector=aiohttp.TCPConnector(limit=64),
        )
        # The token reads credential files on construction: build it off the loop. With an
        # explicit api_root and an emulator it never asks for a token.
        make = functools.partial(
            GCSClient,
            session=self._session,
            api_root=self._api_root,
            api_is_dev=self._emulator is not None,
        )
        self._client = await anyio.to_thread.run_sync(make)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        client, session = self._client, self._session
        self._client = self._session = None
        if client is not None:
            await client.close()  # a no-op for the shared session, closed next
        if session is not None:
            await session.close()

    @property
    def client(self) -> GCSClient:
        if self._client is None:
            raise RuntimeError("GCSStorage used outside `async with`")
        return self._client

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("GCSStorage used outside `async with`")
        return self._session

    async def _headers(self) -> dict[str, str]:
        if self._emulator is not None:
            return {}
        return {"Authorization": f"Bearer {await self.client.token.get()}"}

    def _object_url(self, name: str) -> str:
        return (
            f"{self._api_root}/storage/v1/b/{quote(self.bucket, safe='')}/o/{quote(name, safe='')}"
        )

    async def _retry(self, operation: Callable[[], Awaitable[T]]) -> T:
        return await retry(operation, attempts=self._attempts, base_delay=self._delay)

    async def _object_op(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run an object operation; a 404 from a missing bucket becomes BucketNotFound."""
        try:
            result = await self._retry(operation)
        except ObjectNotFound:
            # GCS answers 404 for a missing object and a missing bucket alike: check once.
            if not self._bucket_ok:
                with contextlib.suppress(StoragePermissionError, TransientStorageError):
                    await self._check_bucket()
            raise
        self._bucket_ok = True
        return result

    async def _check_bucket(self) -> None:
        async def get() -> None:
            with map_gcs_errors(self.bucket, bucket_level=True):
                await self.client.get_bucket_metadata(self.bucket, timeout=_SHORT_TIMEOUT)

        await self._retry(get)
        self._bucket_ok = True

    def _name(self, key: str) -> str:
        return _common.join(self.root, _common.check_key(key))

    async def read(self, key: str) -> bytes:
        """Return the whole object. Raises ObjectNotFound if absent."""
        name = self._name(key)

        async def get() -> bytes:
            with map_gcs_errors(self.bucket, name):
                data: bytes = await self.client.download(self.bucket, name, timeout=300)
                return data

        return await self._object_op(get)

    async def read_range(self, key: str, start: int, length: int) -> bytes:
        """Return ``length`` bytes from ``start`` (fewer at the end of the object)."""
        if start < 0 or length < 0:
            raise ValueError(f"bad range start={start} length={length}")
        name = self._name(key)
        if length == 0:
            await self.size(key)
            return b""
        headers = {"Range": f"bytes={start}-{start + length - 1}"}

        async def get() -> bytes:
            with map_gcs_errors(self.bucket, name):
                try:
                    data: bytes = await self.client.download(
                        self.bucket, name, headers=dict(headers), timeout=30 + length // 2**20
                    )
                except aiohttp.ClientResponseError as e:
                    if e.status == 416:
                        return b""  # start is at or past the end
                    raise
                return data

        return await self._object_op(get)

    async def stream(self, key: str, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        """Yield the object's bytes in chunks; a dropped connection resumes where it stopped."""
        name = self._name(key)
        offset = 0
        generation: str | None = None
        failures = 0
        while True:
            response = await self._object_op(
                functools.partial(self._open, name, offset, generation)
            )
            if response is None:
                return
            generation = response.headers.get("x-goog-generation", generation)
            async with response:
                while True:
                    try:
                        with map_gcs_errors(self.bucket, name):
                            chunk = await response.content.read(chunk_size)
                    except TransientStorageError:
                        failures += 1
                        if failures >= self._attempts:
                            raise
                        break  # reopen at ``offset``
                    if not chunk:
                        return
                    offset += len(chunk)
                    yield chunk

    async def _open(
        self, name: str, offset: int, generation: str | None
    ) -> aiohttp.ClientResponse | None:
        params = {"alt": "media"}
        headers = await self._headers()
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if generation:
                # A resumed read must not splice in a newer version of the object.
                params["ifGenerationMatch"] = generation
        with map_gcs_errors(self.bucket, name):
            response = await self.session.get(
                self._object_url(name), params=params, headers=headers, timeout=_TRANSFER_TIMEOUT
            )
            if offset and response.status == 416:
                response.release()
                return None
            await _raise_for_status(response)
            return response

    async def write(self, key: str, data: bytes) -> None:
        """Write a whole object atomically with one upload request."""
        name = self._name(key)

        async def put() -> None:
            with map_gcs_errors(self.bucket, name, bucket_level=True):
                await self.client.upload(
                    self.bucket,
                    name,
                    data,
                    content_type="application/octet-stream",
                    timeout=30 + len(data) // 2**20,
                )

        await self._retry(put)
        self._bucket_ok = True

    async def upload(self, key: str, source: AsyncIterable[bytes]) -> int:
        """Stream ``source`` as a chunked resumable upload of PART_SIZE chunks.

        One chunk is sent while the next is read from ``source``, so about two parts are held
        in memory. A source smaller than one part is a single upload request.
        """
        name = self._name(key)
        async with contextlib.aclosing(_common.parts(source, PART_SIZE)) as chunks:
            first, last = await anext(chunks)
            if last:
                await self.write(key, first)
                return len(first)
            session_uri = await self._retry(functools.partial(self._initiate, name))
            try:
                return await self._send_chunks(session_uri, name, first, chunks)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await self._cancel(session_uri, name)
                raise

    async def _send_chunks(
        self, session_uri: str, name: str, first: bytes, chunks: AsyncIterator[tuple[bytes, bool]]
    ) -> int:
        total = 0
        data, last = first, False
        while True:
            result: list[tuple[bytes, bool]] = []

            async def read_next(result: list[tuple[bytes, bool]] = result) -> None:
                result.append(await anext(chunks))

            try:
                async with anyio.create_task_group() as tg:
                    if not last:
                        tg.start_soon(read_next)  # read ahead while this chunk is sent
                    await self._send_chunk(session_uri, name, data, total, last)
            except BaseExceptionGroup as group:
                error = _common.first_error(group)
                raise error from error.__cause__
            total += len(data)
            if last:
                break
            data, last = result[0]
        self._bucket_ok = True
        return total

    async def _initiate(self, name: str) -> str:
        url = f"{self._api_root}/upload/storage/v1/b/{quote(self.bucket, safe='')}/o"
        headers = await self._headers()
        headers["Content-Type"] = "application/json; charset=UTF-8"
        headers["X-Upload-Content-Type"] = "application/octet-stream"
        params = {"uploadType": "resumable", "name": name}
        with map_gcs_errors(self.bucket, name, bucket_level=True):
            async with self.session.post(
                url, params=params, headers=headers, data=json.dumps({"name": name})
            ) as response:
                await _raise_for_status(response)
                return response.headers["Location"]

    async def _cancel(self, uri: str, name: str) -> None:
        """Cancel a resumable upload (best effort: GCS would expire it after a week anyway)."""
        headers = await self._headers()
        with contextlib.suppress(StorageError), map_gcs_errors(self.bucket, name):
            async with self.session.delete(uri, headers=headers, timeout=_SHORT):
                pass

    async def _send_chunk(self, uri: str, name: str, data: bytes, offset: int, last: bool) -> None:
        """PUT ``data`` at ``offset`` of the resumable upload ``uri``, resuming after failures."""
        end = offset + len(data)
        state = {"sent": offset}  # bytes the server is known to hold

        async def put() -> None:
            while True:
                start = state["sent"]
                total = str(end) if last else "*"
                headers = await self._headers()
                headers["Content-Range"] = (
                    f"bytes {start}-{end - 1}/{total}" if start < end else f"bytes */{total}"
                )
                # BytesIO: aiohttp warns on big bytes bodies; BytesIO(bytes) makes no copy.
                body = io.BytesIO(data if start == offset else data[start - offset :])
                try:
                    with map_gcs_errors(self.bucket, name):
                        async with self.session.put(
                            uri,
                            data=body,
                            headers=headers,
                            allow_redirects=False,
                            timeout=_TRANSFER_TIMEOUT,
                        ) as response:
                            if response.status in (200, 201):
                                state["sent"] = end
                                return
                            if response.status != 308:
                                await _raise_for_status(response)
                                raise aiohttp.ClientResponseError(
                                    response.request_info, (), status=response.status
                                )
                            state["sent"] = _persisted(response, default=start)
                            if state["sent"] <= start < end:
                                raise TransientStorageError(f"no upload progress on {name}")
                except TransientStorageError:
                    await self._resync(uri, name, state)
                    raise
                if state["sent"] >= end and not last:
                    return

        await self._retry(put)

    async def _resync(self, uri: str, name: str, state: dict[str, int]) -> None:
        """Ask the server how much it holds (status query) so the next attempt resumes there.

        fake-gcs-server 1.54 wrongly finalizes an upload on a status query; real GCS does not.
        """
        headers = await self._headers()
        headers["Content-Range"] = "bytes */*"
        with contextlib.suppress(StorageError), map_gcs_errors(self.bucket, name):
            async with self.session.put(
                uri, headers=headers, allow_redirects=False, timeout=_SHORT
            ) as response:
                if response.status == 308:
                    state["sent"] = max(state["sent"], _persisted(response, default=0))

    async def exists(self, key: str) -> bool:
        """Return True if the object exists."""
        try:
            await self.size(key)
        except ObjectNotFound:
            return False
        return True

    async def size(self, key: str) -> int:
        """Return the object's size in bytes. Raises ObjectNotFound if absent."""
        name = self._name(key)

        async def get() -> int:
            with map_gcs_errors(self.bucket, name):
                metadata = await self.client.download_metadata(
                    self.bucket, name, timeout=_SHORT_TIMEOUT
                )
                return int(metadata["size"])

        return await self._object_op(get)

    async def list(self, prefix: str) -> list[str]:
        """Return every key under ``prefix``, relative to the root, paging with pageToken."""
        full = _common.join(self.root, _common.check_prefix(prefix))
        keys: list[str] = []
        token = ""
        while True:

            async def page(token: str = token) -> dict[str, Any]:
                params = {
                    "prefix": full,
                    "maxResults": "1000",
                    "fields": "items(name),nextPageToken",
                }
                if token:
                    params["pageToken"] = token
                with map_gcs_errors(self.bucket, full, bucket_level=True):
                    result: dict[str, Any] = await self.client.list_objects(
                        self.bucket, params=params, timeout=_SHORT_TIMEOUT
                    )
                    return result

            response = await self._retry(page)
            keys.extend(_common.strip(self.root, o["name"]) for o in response.get("items", []))
            token = response.get("nextPageToken", "")
            if not token:
                break
        self._bucket_ok = True
        return keys

    async def delete(self, key: str) -> None:
        """Delete one object; deleting a missing object is not an error."""
        name = self._name(key)

        async def delete() -> None:
            with map_gcs_errors(self.bucket, name):
                await self.client.delete(self.bucket, name, timeout=_SHORT_TIMEOUT)

        with contextlib.suppress(ObjectNotFound):
            await self._object_op(delete)

    async def check_writable(self) -> None:
        """Write and delete a probe object: proves the bucket exists and accepts writes."""
        probe = f".replicate-probe-{uuid.uuid4().hex}"
        await self.write(probe, b"probe")
        await self.delete(probe)


def _persisted(response: aiohttp.ClientResponse, *, default: int) -> int:
    """Return the byte count a 308 says the server holds (``Range: bytes=0-N`` means N + 1)."""
    held = response.headers.get("Range")
    if not held or "-" not in held:
        return default
    return int(held.rpartition("-")[2]) + 1
