"""Storage on S3 and S3-compatible stores (SeaweedFS, MinIO, R2) through aiobotocore."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import aiohttp
import anyio
import botocore.exceptions
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from replicate.errors import (
    BucketNotFound,
    ObjectNotFound,
    StorageError,
    StoragePermissionError,
    TransientStorageError,
    collapse,
)
from replicate.retries import RetryPolicy
from replicate.storage import _common
from replicate.storage.base import PARTS_IN_FLIGHT

if TYPE_CHECKING:
    from aiobotocore.response import StreamingBody
    from types_aiobotocore_s3.client import S3Client
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef

__all__ = ["S3Storage", "map_s3_errors"]

_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
_PERMISSION_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "AccountProblem",
        "403",
        "401",
    }
)
_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "InternalError",
        "ServiceUnavailable",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
    }
)
_TRANSIENT_ERRORS = (
    botocore.exceptions.ConnectionError,  # EndpointConnectionError, ConnectTimeoutError, ...
    botocore.exceptions.HTTPClientError,  # ConnectionClosedError, ReadTimeoutError, streaming
    botocore.exceptions.IncompleteReadError,
    botocore.exceptions.ChecksumError,
    aiohttp.ClientError,
    ConnectionError,
    TimeoutError,  # asyncio.TimeoutError is this class since Python 3.11
)
_CREDENTIAL_ERRORS = (
    botocore.exceptions.NoCredentialsError,
    botocore.exceptions.PartialCredentialsError,
    botocore.exceptions.CredentialRetrievalError,
)


@contextlib.contextmanager
def map_s3_errors(bucket: str, key: str = "", *, bucket_level: bool = False) -> Iterator[None]:
    """Translate botocore and aiohttp errors into the StorageError hierarchy.

    The one translation point for S3: it classifies by error ``Code`` and HTTP status, never by
    message text. The original error is kept as ``__cause__``.

    Args:
        bucket: the bucket, named in messages.
        key: the full object name, named in messages.
        bucket_level: the call addresses the bucket itself, so a bare 404 means no bucket.
    """
    where = f"s3://{bucket}/{key}"
    try:
        yield
    except botocore.exceptions.ClientError as e:
        error = e.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code == "NoSuchBucket" or (bucket_level and (status == 404 or code == "404")):
            raise BucketNotFound(
                f"bucket {bucket!r} does not exist: create it with `aws s3 mb s3://{bucket}`"
                " (add --endpoint-url for an S3-compatible store)"
            ) from e
        if code in _NOT_FOUND_CODES or status == 404:
            raise ObjectNotFound(f"no such object: {where}") from e
        if code in _PERMISSION_CODES or status in (401, 403):
            raise StoragePermissionError(
                f"access denied to {where} ({code or status}): check the AWS credentials"
            ) from e
        if code in _TRANSIENT_CODES or status in (408, 429) or status >= 500:
            raise TransientStorageError(f"S3 is unavailable for {where} ({code or status})") from e
        raise StorageError(f"S3 error on {where}: {code or status}") from e
    except _CREDENTIAL_ERRORS as e:
        raise StoragePermissionError(f"no usable AWS credentials for {where}: {e}") from e
    except _TRANSIENT_ERRORS as e:
        raise TransientStorageError(f"cannot reach S3 for {where}: {e!r}") from e
    except botocore.exceptions.BotoCoreError as e:
        raise StorageError(f"S3 error on {where}: {e}") from e


def _endpoint() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def _status(error: botocore.exceptions.ClientError) -> object:
    return error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")


@contextlib.asynccontextmanager
async def _reading(body: StreamingBody) -> AsyncIterator[_common.Reader]:
    async with body:
        yield body.read


class S3Storage(_common.BucketStorage):
    """Objects under ``s3://bucket/prefix``; the client opens in ``__aenter__``.

    ``AWS_ENDPOINT_URL_S3`` (then ``AWS_ENDPOINT_URL``) selects an S3-compatible endpoint with
    path-style addressing. The region comes from ``AWS_REGION``, the AWS config, or the bucket.

    Args:
        url: ``s3://bucket`` or ``s3://bucket/prefix``.
        policy: as for ``BucketStorage``.
    """

    scheme = "s3"
    described = "an S3"

    def __init__(self, url: str, *, policy: RetryPolicy | None = None) -> None:
        super().__init__(url, policy=policy)
        self._stack = contextlib.AsyncExitStack()
        self._client: S3Client | None = None

    @property
    def endpoint(self) -> str:
        return _endpoint() or "https://s3.amazonaws.com"

    async def __aenter__(self) -> Self:
        # Opened inside the loop that uses it: aiohttp sessions are loop-bound.
        session = get_session()
        endpoint = _endpoint()
        region = os.environ.get("AWS_REGION") or session.get_config_variable("region")
        if not region:
            region = "us-east-1" if endpoint else await self._discover_region()
        config = AioConfig(
            region_name=region,
            signature_version="s3v4",
            # No retries inside botocore: replicate.retries is the one policy.
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=self.policy.connect_timeout,
            read_timeout=self.policy.read_timeout,
            max_pool_connections=32,
            s3={"addressing_style": "path"} if endpoint else None,
        )
        self._client = await self._stack.enter_async_context(
            session.create_client("s3", endpoint_url=endpoint, config=config)
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._client = None
        await self._stack.aclose()

    async def _discover_region(self) -> str:
        """Ask AWS where the bucket lives (``x-amz-bucket-region``); us-east-1 if it won't say."""
        config = AioConfig(
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=self.policy.connect_timeout,
            read_timeout=self.policy.read_timeout,
        )
        async with get_session().create_client("s3", region_name="us-east-1", config=config) as c:
            try:
                response: Any = await c.head_bucket(Bucket=self.bucket)
            except botocore.exceptions.ClientError as e:
                response = e.response
            except (botocore.exceptions.BotoCoreError, aiohttp.ClientError, OSError):
                return "us-east-1"
        headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        return str(headers.get("x-amz-bucket-region") or "us-east-1")

    @property
    def client(self) -> S3Client:
        if self._client is None:
            raise RuntimeError("S3Storage used outside `async with`")
        return self._client

    def _map_errors(self, name: str) -> contextlib.AbstractContextManager[None]:
        return map_s3_errors(self.bucket, name)

    async def _head_bucket(self) -> None:
        with map_s3_errors(self.bucket, bucket_level=True):
            await self.client.head_bucket(Bucket=self.bucket)

    async def _get_object(self, name: str) -> bytes:
        with map_s3_errors(self.bucket, name):
            response = await self.client.get_object(Bucket=self.bucket, Key=name)
            async with response["Body"] as body:
                return await body.read()

    async def _get_range(self, name: str, start: int, length: int) -> bytes:
        with map_s3_errors(self.bucket, name):
            try:
                response = await self.client.get_object(
                    Bucket=self.bucket, Key=name, Range=f"bytes={start}-{start + length - 1}"
                )
            except botocore.exceptions.ClientError as e:
                if _status(e) == 416:
                    return b""  # start is at or past the end
                raise
            async with response["Body"] as body:
                return await body.read()

    async def _open_at(self, name: str, offset: int, etag: str | None) -> _common.Opened | None:
        with map_s3_errors(self.bucket, name):
            try:
                if offset == 0:
                    response = await self.client.get_object(Bucket=self.bucket, Key=name)
                else:
                    # IfMatch: a resumed read must not splice in a newer version of the object.
                    response = await self.client.get_object(
                        Bucket=self.bucket, Key=name, Range=f"bytes={offset}-", IfMatch=etag or "*"
                    )
            except botocore.exceptions.ClientError as e:
                if offset and _status(e) == 416:
                    return None
                raise
        return response["ETag"], _reading(response["Body"])

    async def _put_object(self, name: str, data: bytes) -> None:
        with map_s3_errors(self.bucket, name):
            await self.client.put_object(Bucket=self.bucket, Key=name, Body=data)

    async def _upload_parts(
        self, name: str, first: bytes, chunks: AsyncIterator[tuple[bytes, bool]]
    ) -> int:
        """A multipart upload, PARTS_IN_FLIGHT parts at once, aborted on any failure.

        At most PARTS_IN_FLIGHT + 1 parts are held in memory.
        """
        # Over 60 lines: create, the parts in flight, complete and the abort on any failure
        # share one upload id and one cleanup; split, the abort could be skipped.

        async def create() -> str:
            with map_s3_errors(self.bucket, name):
                response = await self.client.create_multipart_upload(Bucket=self.bucket, Key=name)
                return response["UploadId"]

        upload_id = await self._retry(create)
        done: dict[int, CompletedPartTypeDef] = {}
        slots = anyio.Semaphore(PARTS_IN_FLIGHT)

        async def send(number: int, data: bytes) -> None:
            async def put() -> None:
                with map_s3_errors(self.bucket, name):
                    response = await self.client.upload_part(
                        Bucket=self.bucket,
                        Key=name,
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=data,
                    )
                part: CompletedPartTypeDef = {"ETag": response["ETag"], "PartNumber": number}
                if "ChecksumCRC32" in response:
                    part["ChecksumCRC32"] = response["ChecksumCRC32"]
                done[number] = part

            try:
                await self._retry(put)
            finally:
                slots.release()

        total = 0
        try:
            try:
                async with anyio.create_task_group() as tg:
                    data, last, number = first, False, 0
                    while True:
                        number += 1
                        # Wait for a free slot *before* reading the next part: bounded memory.
                        await slots.acquire()
                        tg.start_soon(send, number, data)
                        total += len(data)
                        if last:
                            break
                        data, last = await anext(chunks)
            except BaseExceptionGroup as group:
                error = collapse(group)
                raise error from error.__cause__

            async def complete() -> None:
                with map_s3_errors(self.bucket, name):
                    await self.client.complete_multipart_upload(
                        Bucket=self.bucket,
                        Key=name,
                        UploadId=upload_id,
                        MultipartUpload={"Parts": [done[n] for n in sorted(done)]},
                    )

            await self._retry(complete)
        except BaseException:
            with anyio.CancelScope(shield=True), contextlib.suppress(StorageError):
                await self._abort(name, upload_id)
            raise
        return total

    async def _abort(self, name: str, upload_id: str) -> None:
        async def abort() -> None:
            with map_s3_errors(self.bucket, name):
                await self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=name, UploadId=upload_id
                )

        await self._retry(abort)

    async def _object_size(self, name: str) -> int:
        with map_s3_errors(self.bucket, name):
            response = await self.client.head_object(Bucket=self.bucket, Key=name)
            return response["ContentLength"]

    async def _list_page(
        self, prefix: str, token: str | None
    ) -> tuple[list[tuple[str, str]], str | None]:
        """At most 1,000 names, with their ETags."""
        with map_s3_errors(self.bucket, prefix):
            if token is None:
                response = await self.client.list_objects_v2(Bucket=self.bucket, Prefix=prefix)
            else:
                response = await self.client.list_objects_v2(
                    Bucket=self.bucket, Prefix=prefix, ContinuationToken=token
                )
        names = [(o["Key"], o.get("ETag", "")) for o in response.get("Contents", [])]
        return names, response["NextContinuationToken"] if response.get("IsTruncated") else None

    async def _delete_object(self, name: str) -> None:
        with map_s3_errors(self.bucket, name):
            await self.client.delete_object(Bucket=self.bucket, Key=name)

    async def check_writable(self) -> None:
        """Check the bucket exists, then write and delete a probe object.

        The bucket is checked first because some S3-compatible stores (SeaweedFS) create a
        missing bucket on the first write.
        """
        await self._check_bucket()
        await super().check_writable()
