"""Storage on Google Cloud Storage through gcloud-aio-storage, with chunked resumable uploads."""

from __future__ import annotations

import contextlib
import functools
import io
import json
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import aiohttp
import anyio.to_thread
from gcloud.aio.storage import Storage as GCSClient

from replicate.errors import (
    StorageError,
    StoragePermissionError,
    TransientStorageError,
    collapse,
)
from replicate.retries import RetryPolicy
from replicate.storage import _common
from replicate.storage.base import PART_SIZE
from replicate.storage.gcs_http import (
    emulator_root,
    map_gcs_errors,
    persisted,
    raise_for_status,
    reading,
)

__all__ = ["GCSStorage"]

_PRODUCTION_ROOT = "https://storage.googleapis.com"
#: Resumable chunks must be multiples of 256 KiB.
_CHUNK_QUANTUM = 256 * 1024


class GCSStorage(_common.BucketStorage):
    """Objects under ``gs://bucket/prefix``; the HTTP session opens in ``__aenter__``.

    ``STORAGE_EMULATOR_HOST`` selects an emulator (no credentials are used then); otherwise
    Application Default Credentials.

    Args:
        url: ``gs://bucket`` or ``gs://bucket/prefix``.
        policy: as for ``BucketStorage``.
    """

    scheme = "gs"
    described = "a GCS"

    def __init__(self, url: str, *, policy: RetryPolicy | None = None) -> None:
        super().__init__(url, policy=policy)
        if PART_SIZE % _CHUNK_QUANTUM:
            raise AssertionError("PART_SIZE must be a multiple of 256 KiB for GCS")
        self._emulator = emulator_root()
        self._api_root = self._emulator or _PRODUCTION_ROOT
        self._session: aiohttp.ClientSession | None = None
        self._client: GCSClient | None = None

    @property
    def endpoint(self) -> str:
        return self._api_root

    @property
    def _short_seconds(self) -> int:
        """Whole seconds a metadata request may take (gcloud-aio takes an int)."""
        return max(1, round(self.policy.read_timeout + self.policy.connect_timeout))

    @property
    def _short(self) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(total=self._short_seconds)

    @property
    def _transfer(self) -> aiohttp.ClientTimeout:
        """No total bound for a transfer, but a bound on connecting and on each silence."""
        return aiohttp.ClientTimeout(
            total=None, sock_connect=self.policy.connect_timeout, sock_read=self.policy.read_timeout
        )

    async def __aenter__(self) -> Self:
        # Opened inside the loop that uses it: aiohttp sessions are loop-bound.
        self._session = aiohttp.ClientSession(
            timeout=self._transfer,
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
        try:
            self._client = await anyio.to_thread.run_sync(make)
        except (OSError, ValueError, KeyError) as exc:
            await self._session.close()
            self._session = None
            # Name the variable, never the path or the file's contents (they may be secret).
            reason = exc.strerror if isinstance(exc, OSError) else "not a credentials file"
            raise StoragePermissionError(
                f"cannot read the Google credentials named by GOOGLE_APPLICATION_CREDENTIALS "
                f"({reason}): point it at a service account key file, or unset it"
            ) from None
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

    def _map_errors(self, name: str) -> contextlib.AbstractContextManager[None]:
        return map_gcs_errors(self.bucket, name)

    async def _head_bucket(self) -> None:
        with map_gcs_errors(self.bucket, bucket_level=True):
            await self.client.get_bucket_metadata(self.bucket, timeout=self._short_seconds)

    async def _get_object(self, name: str) -> bytes:
        with map_gcs_errors(self.bucket, name):
            data: bytes = await self.client.download(self.bucket, name, timeout=self._short_seconds)
            return data

    async def _get_range(self, name: str, start: int, length: int) -> bytes:
        headers = {"Range": f"bytes={start}-{start + length - 1}"}
        with map_gcs_errors(self.bucket, name):
            try:
                data: bytes = await self.client.download(
                    self.bucket, name, headers=headers, timeout=30 + length // 2**20
                )
            except aiohttp.ClientResponseError as e:
                if e.status == 416:
                    return b""  # start is at or past the end
                raise
            return data

    async def _open_at(
        self, name: str, offset: int, generation: str | None
    ) -> _common.Opened | None:
        params = {"alt": "media"}
        headers = await self._headers()
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if generation:
                # A resumed read must not splice in a newer version of the object.
                params["ifGenerationMatch"] = generation
        with map_gcs_errors(self.bucket, name):
            response = await self.session.get(
                self._object_url(name), params=params, headers=headers, timeout=self._transfer
            )
            if offset and response.status == 416:
                response.release()
                return None
            await raise_for_status(response)
        return response.headers.get("x-goog-generation", generation), reading(response)

    async def _put_object(self, name: str, data: bytes) -> None:
        with map_gcs_errors(self.bucket, name, bucket_level=True):
            await self.client.upload(
                self.bucket,
                name,
                data,
                content_type="application/octet-stream",
                timeout=30 + len(data) // 2**20,
            )

    async def _upload_parts(
        self, name: str, first: bytes, chunks: AsyncIterator[tuple[bytes, bool]]
    ) -> int:
        """A chunked resumable upload of PART_SIZE chunks, cancelled on any failure.

        One chunk is sent while the next is read from ``chunks``, so about two parts are held
        in memory.
        """
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
                error = collapse(group)
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
                await raise_for_status(response)
                return response.headers["Location"]

    async def _cancel(self, uri: str, name: str) -> None:
        """Cancel a resumable upload (best effort: GCS would expire it after a week anyway)."""
        headers = await self._headers()
        with contextlib.suppress(StorageError), map_gcs_errors(self.bucket, name):
            async with self.session.delete(uri, headers=headers, timeout=self._short):
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
                            timeout=self._transfer,
                        ) as response:
                            if response.status in (200, 201):
                                state["sent"] = end
                                return
                            if response.status != 308:
                                await raise_for_status(response)
                                raise aiohttp.ClientResponseError(
                                    response.request_info, (), status=response.status
                                )
                            state["sent"] = persisted(response, default=start)
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
                uri, headers=headers, allow_redirects=False, timeout=self._short
            ) as response:
                if response.status == 308:
                    state["sent"] = max(state["sent"], persisted(response, default=0))

    async def _object_size(self, name: str) -> int:
        with map_gcs_errors(self.bucket, name):
            metadata = await self.client.download_metadata(
                self.bucket, name, timeout=self._short_seconds
            )
            return int(metadata["size"])

    async def _list_page(
        self, prefix: str, token: str | None
    ) -> tuple[list[tuple[str, str]], str | None]:
        """At most 1,000 names, with their generations."""
        fields = "items(name,generation),nextPageToken"
        params = {"prefix": prefix, "maxResults": "1000", "fields": fields}
        if token:
            params["pageToken"] = token
        with map_gcs_errors(self.bucket, prefix, bucket_level=True):
            response: dict[str, Any] = await self.client.list_objects(
                self.bucket, params=params, timeout=self._short_seconds
            )
        items = [(o["name"], str(o.get("generation", ""))) for o in response.get("items", [])]
        return items, response.get("nextPageToken") or None

    async def _delete_object(self, name: str) -> None:
        with map_gcs_errors(self.bucket, name):
            await self.client.delete(self.bucket, name, timeout=self._short_seconds)
