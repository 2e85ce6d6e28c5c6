"""GCS over HTTP: errors mapped by status, the emulator's address, streamed bodies, 308s."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Iterator

import aiohttp

from replicate.errors import (
    BucketNotFound,
    ObjectNotFound,
    StorageError,
    StoragePermissionError,
    TransientStorageError,
)
from replicate.storage import _common


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


def emulator_root() -> str | None:
    host = os.environ.get("STORAGE_EMULATOR_HOST")
    if not host:
        return None
    return host.rstrip("/") if "://" in host else f"http://{host.rstrip('/')}"


async def raise_for_status(response: aiohttp.ClientResponse) -> None:
    if response.status >= 400:
        response.release()
        raise aiohttp.ClientResponseError(
            response.request_info,
            response.history,
            status=response.status,
            message=response.reason or "",
            headers=response.headers,
        )


@contextlib.asynccontextmanager
async def reading(response: aiohttp.ClientResponse) -> AsyncIterator[_common.Reader]:
    async with response:
        yield response.content.read


def persisted(response: aiohttp.ClientResponse, *, default: int) -> int:
    """Return the byte count a 308 says the server holds (``Range: bytes=0-N`` means N + 1)."""
    held = response.headers.get("Range")
    if not held or "-" not in held:
        return default
    return int(held.rpartition("-")[2]) + 1
