"""One contract for every Storage backend (disk, S3 on SeaweedFS, GCS on fake-gcs-server)."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp.web
import anyio
import pytest
from servers import free_ports, new_bucket_name, s3_client

from replicate.errors import (
    BucketNotFound,
    ObjectNotFound,
    StoragePermissionError,
    TransientStorageError,
)
from replicate.retries import RetryPolicy
from replicate.storage import Storage, open_storage
from replicate.storage.base import PART_SIZE
from replicate.storage.gcs import GCSStorage
from replicate.storage.s3 import S3Storage

MiB = 1 << 20


@pytest.fixture
async def storage(repo_url: str) -> AsyncIterator[Storage]:
    """An open Storage on a fresh repository, once per backend."""
    async with open_storage(repo_url) as opened:
        yield opened


async def generate(total: int, chunk: int, seed: int = 0) -> AsyncIterator[bytes]:
    """Yield ``total`` pseudo-random bytes in ``chunk``-sized pieces (the last may be shorter)."""
    rng = random.Random(seed)
    sent = 0
    while sent < total:
        n = min(chunk, total - sent)
        yield rng.randbytes(n)
        sent += n


async def collect(storage: Storage, key: str) -> bytes:
    """Return the object's bytes read through ``stream``."""
    return b"".join([chunk async for chunk in storage.stream(key)])


class TestStorageContract:
    """Every promise of the Storage protocol, held by each backend."""

    async def test_round_trip(self, storage: Storage) -> None:
        """Bytes written under a key read back identical."""
        data = bytes(range(256)) * 10
        await storage.write("a/b/c.bin", data)
        assert await storage.read("a/b/c.bin") == data
        assert await collect(storage, "a/b/c.bin") == data

    async def test_missing_key_raises_object_not_found(self, storage: Storage) -> None:
        """Reading, sizing or streaming a missing key raises ObjectNotFound."""
        await storage.write("present", b"x")  # the bucket exists; only the key is missing
        with pytest.raises(ObjectNotFound):
            await storage.read("missing/key")
        with pytest.raises(ObjectNotFound):
            await storage.read_range("missing/key", 0, 10)
        with pytest.raises(ObjectNotFound):
            await storage.size("missing/key")
        with pytest.raises(ObjectNotFound):
            await collect(storage, "missing/key")
        assert not await storage.exists("missing/key")

    async def test_list_by_prefix_past_1000_keys(self, storage: Storage) -> None:
        """Listing a prefix returns all of its 1,100 keys (past one page) and nothing else."""
        keys = [f"many/{i:05d}.json" for i in range(1100)]
        limiter = anyio.CapacityLimiter(32)

        async def put(key: str) -> None:
            async with limiter:
                await storage.write(key, key.encode())

        async with anyio.create_task_group() as tg:
            for key in [*keys, "manyother/x.json", "other/y.json", "top.json"]:
                tg.start_soon(put, key)
        assert sorted(await storage.list("many/")) == keys
        assert sorted(await storage.list("other/")) == ["other/y.json"]
        assert len(await storage.list("")) == 1103

    async def test_listing_versions_change_when_an_object_is_rewritten(
        self, storage: Storage
    ) -> None:
        """listing() names the same keys as list(), and a key's version changes on rewrite only."""
        await storage.write("meta/a.json", b"one")
        await storage.write("meta/b.json", b"two")
        await storage.write("other/c.json", b"three")
        before = await storage.listing("meta/")
        assert (
            sorted(before) == sorted(await storage.list("meta/")) == ["meta/a.json", "meta/b.json"]
        )
        assert all(before.values())
        await storage.write("meta/a.json", b"one, longer")
        after = await storage.listing("meta/")
        assert after["meta/a.json"] != before["meta/a.json"]
        assert after["meta/b.json"] == before["meta/b.json"]
        assert await storage.list("nothing/") == []

    async def test_overwrite_replaces_the_whole_object(self, storage: Storage) -> None:
        """Writing a key again replaces its bytes entirely, longer or shorter."""
        await storage.write("k", b"a" * 1000)
        await storage.write("k", b"short")
        assert await storage.read("k") == b"short"
        assert await storage.size("k") == 5

    async def test_concurrent_writes_to_distinct_keys(self, storage: Storage) -> None:
        """Fifty concurrent writes to distinct keys all land with their own bytes."""
        async with anyio.create_task_group() as tg:
            for i in range(50):
                tg.start_soon(storage.write, f"c/{i}", str(i).encode() * 100)
        for i in range(50):
            assert await storage.read(f"c/{i}") == str(i).encode() * 100

    @pytest.mark.slow
    async def test_streamed_upload_of_64_mib(self, storage: Storage) -> None:
        """A 64 MiB upload from an async generator streams back with the same sha256."""
        total = 64 * MiB
        sent = hashlib.sha256()

        async def source() -> AsyncIterator[bytes]:
            async for chunk in generate(total, MiB + 7):  # chunks that straddle part borders
                sent.update(chunk)
                yield chunk

        assert await storage.upload("big/model.tar.gz", source()) == total
        assert await storage.size("big/model.tar.gz") == total
        received = hashlib.sha256()
        async for chunk in storage.stream("big/model.tar.gz"):
            received.update(chunk)
        assert received.hexdigest() == sent.hexdigest()

    async def test_upload_smaller_than_a_part(self, storage: Storage) -> None:
        """A small streamed upload, and an empty one, land whole."""
        assert await storage.upload("small", generate(1000, 300)) == 1000
        assert await storage.read("small") == b"".join([c async for c in generate(1000, 300)])
        assert await storage.upload("empty", generate(0, 1)) == 0
        assert await storage.read("empty") == b""

    async def test_upload_is_invisible_until_complete(self, storage: Storage) -> None:
        """While a multi-part upload is in progress the object neither exists nor lists."""
        halfway = anyio.Event()
        resume = anyio.Event()

        async def source() -> AsyncIterator[bytes]:
            async for chunk in generate(PART_SIZE + MiB, MiB):
                yield chunk
            halfway.set()
            await resume.wait()

        async with anyio.create_task_group() as tg:
            tg.start_soon(storage.upload, "pending/obj", source())
            await halfway.wait()
            assert not await storage.exists("pending/obj")
            assert await storage.list("pending/") == []
            resume.set()
        assert await storage.size("pending/obj") == PART_SIZE + MiB

    async def test_failed_upload_leaves_nothing(self, storage: Storage) -> None:
        """A source that fails after more than one part raises its error and leaves no object."""

        async def source() -> AsyncIterator[bytes]:
            async for chunk in generate(PART_SIZE + 2 * MiB, MiB):
                yield chunk
            raise RuntimeError("source broke")

        with pytest.raises(RuntimeError, match="source broke"):
            await storage.upload("broken", source())
        assert not await storage.exists("broken")
        assert await storage.list("") == []

    async def test_ranged_read(self, storage: Storage) -> None:
        """read_range returns the asked bytes, fewer at the end, none past it."""
        data = bytes(range(256)) * 4
        await storage.write("r", data)
        assert await storage.read_range("r", 10, 20) == data[10:30]
        assert await storage.read_range("r", 1000, 100) == data[1000:]
        assert await storage.read_range("r", 2000, 10) == b""
        assert await storage.read_range("r", 0, 0) == b""

    async def test_delete(self, storage: Storage) -> None:
        """A deleted object is gone; deleting a missing object is not an error."""
        await storage.write("d/x", b"1")
        await storage.delete("d/x")
        assert not await storage.exists("d/x")
        assert await storage.list("d/") == []
        await storage.delete("d/x")
        await storage.delete("never/was")

    async def test_size_and_exists(self, storage: Storage) -> None:
        """size reports the byte count and exists reports presence."""
        assert not await storage.exists("s")
        await storage.write("s", b"12345")
        assert await storage.exists("s")
        assert await storage.size("s") == 5

    async def test_check_writable(self, storage: Storage) -> None:
        """check_writable succeeds on a usable repository and leaves no object behind."""
        await storage.check_writable()
        assert await storage.list("") == []

    @pytest.mark.parametrize("key", ["../escape", "/absolute", "a/../b", "a//b", ""])
    async def test_bad_keys_are_rejected(self, storage: Storage, key: str) -> None:
        """Keys that are absolute or climb out of the root raise ValueError."""
        with pytest.raises(ValueError, match="invalid storage key"):
            await storage.write(key, b"x")
        with pytest.raises(ValueError, match="invalid storage key"):
            await storage.read(key)


class TestDiskStorage:
    """Disk-only promises."""

    async def test_check_writable_creates_the_root(self, tmp_path: Path) -> None:
        """check_writable creates a missing root directory."""
        root = tmp_path / "new" / "repo"
        async with open_storage(root.as_uri()) as storage:
            await storage.check_writable()
        assert root.is_dir()
        assert list(root.iterdir()) == []


Handler = Callable[[aiohttp.web.Request], Awaitable[aiohttp.web.StreamResponse]]


@contextlib.asynccontextmanager
async def local_server(handle: Handler) -> AsyncIterator[str]:
    """Serve every path with ``handle`` on 127.0.0.1; yield the base URL."""
    app = aiohttp.web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    try:
        site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def flaky_server(failures: int, body: bytes) -> AsyncIterator[tuple[str, list[str]]]:
    """Serve ``body`` on every path after answering 503 to the first ``failures`` requests."""
    hits: list[str] = []

    async def handle(request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        hits.append(request.path)
        if len(hits) <= failures:
            return aiohttp.web.Response(status=503, text="try later")
        return aiohttp.web.Response(body=body, content_type="application/octet-stream")

    async with local_server(handle) as url:
        yield url, hits


@contextlib.asynccontextmanager
async def dropping_server(body: bytes) -> AsyncIterator[tuple[str, list[str]]]:
    """Serve ``body`` honouring ``Range: bytes=N-``; the first response drops halfway."""
    ranges: list[str] = []

    async def handle(request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        asked = request.headers.get("Range", "")
        ranges.append(asked)
        start = int(asked.removeprefix("bytes=").rstrip("-")) if asked else 0
        response = aiohttp.web.StreamResponse(
            status=206 if asked else 200,
            headers={
                "Content-Length": str(len(body) - start),
                "Content-Type": "application/octet-stream",
                "ETag": '"v1"',
                "x-goog-generation": "1",
            },
        )
        await response.prepare(request)
        if len(ranges) == 1:
            await response.write(body[: len(body) // 2])
            assert request.transport is not None
            request.transport.close()  # the connection drops mid-body
            return response
        await response.write(body[start:])
        await response.write_eof()
        return response

    async with local_server(handle) as url:
        yield url, ranges


@dataclasses.dataclass(frozen=True)
class Cloud:
    """A cloud backend pointed at a local server through one environment variable."""

    env: str  # the variable naming the server's URL
    storage: type[S3Storage | GCSStorage]
    url: str  # a repository URL in bucket "bucket"
    path: str  # the HTTP path of its key "k"


CLOUDS = [
    pytest.param(
        Cloud("AWS_ENDPOINT_URL_S3", S3Storage, "s3://bucket/repo", "/bucket/repo/k"),
        id="s3",
        marks=pytest.mark.s3,
    ),
    pytest.param(
        Cloud(
            "STORAGE_EMULATOR_HOST", GCSStorage, "gs://bucket/repo", "/storage/v1/b/bucket/o/repo/k"
        ),
        id="gcs",
        marks=pytest.mark.gcs,
    ),
]


async def assert_bucket_missing(storage: Storage, hint: str) -> None:
    """Every operation raises BucketNotFound; check_writable's error says ``hint``."""
    with pytest.raises(BucketNotFound, match=hint):
        await storage.check_writable()
    for operation in (storage.read, storage.size, storage.exists, storage.delete):
        with pytest.raises(BucketNotFound):
            await operation("k")
    with pytest.raises(BucketNotFound):
        await storage.list("")


class TestErrorTranslation:
    """Backend errors arrive as the replicate.errors hierarchy, classified by code or status."""

    @pytest.mark.s3
    async def test_s3_missing_bucket(
        self, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Every S3 operation on a missing bucket raises BucketNotFound saying how to create it."""
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_endpoint)
        bucket = new_bucket_name()
        async with S3Storage(f"s3://{bucket}/repo") as storage:
            await assert_bucket_missing(storage, f"aws s3 mb s3://{bucket}")

    @pytest.mark.gcs
    async def test_gcs_missing_bucket(
        self, gcs_endpoint: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Every GCS operation on a missing bucket raises BucketNotFound saying how to create it."""
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_endpoint)
        bucket = new_bucket_name()
        async with GCSStorage(f"gs://{bucket}/repo") as storage:
            await assert_bucket_missing(storage, f"gcloud storage buckets create gs://{bucket}")
            with pytest.raises(BucketNotFound):
                await storage.upload("k", generate(PART_SIZE + 1, MiB))

    @pytest.mark.s3
    async def test_s3_wrong_credentials(
        self, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A wrong secret key or an unknown access key raises StoragePermissionError."""
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
        async with S3Storage(f"s3://{s3_bucket}/repo") as storage:
            with pytest.raises(StoragePermissionError):
                await storage.write("k", b"x")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "nobody")
        async with S3Storage(f"s3://{s3_bucket}/repo") as storage:
            with pytest.raises(StoragePermissionError):
                await storage.read("k")

    @pytest.mark.parametrize("cloud", CLOUDS)
    async def test_unreachable_endpoint_is_transient(
        self, cloud: Cloud, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Connection refused is retried until the request deadline, then TransientStorageError."""
        (port,) = free_ports(1)
        monkeypatch.setenv(cloud.env, f"http://127.0.0.1:{port}")
        async with cloud.storage(cloud.url, policy=RetryPolicy(request_deadline=1)) as storage:
            with pytest.raises(TransientStorageError):
                await storage.read("k")  # gives up: the suite's timeout bounds it, not a clock

    @pytest.mark.parametrize("cloud", CLOUDS)
    async def test_503_is_retried(self, cloud: Cloud, monkeypatch: pytest.MonkeyPatch) -> None:
        """Two 503 answers are retried (by the one policy, no SDK retries) and the third succeeds."""
        async with flaky_server(2, b"payload") as (url, hits):
            monkeypatch.setenv(cloud.env, url)
            async with cloud.storage(cloud.url) as storage:
                assert await storage.read("k") == b"payload"
        assert hits == [cloud.path] * 3

    @pytest.mark.parametrize("cloud", CLOUDS)
    async def test_stream_resumes_after_a_drop(
        self, cloud: Cloud, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A connection dropped mid-stream is reopened at the offset already yielded."""
        body = random.Random(1).randbytes(4 * MiB)
        async with dropping_server(body) as (url, ranges):
            monkeypatch.setenv(cloud.env, url)
            async with cloud.storage(cloud.url) as storage:
                assert await collect(storage, "k") == body
        assert ranges[0] == ""
        assert ranges[-1].startswith("bytes=") and ranges[-1] != "bytes=0-"

    @pytest.mark.s3
    async def test_s3_failed_multipart_upload_is_aborted(
        self, s3_bucket: str, s3_endpoint: str
    ) -> None:
        """A multipart upload whose source fails is aborted: no upload is left open."""

        async def source() -> AsyncIterator[bytes]:
            async for chunk in generate(2 * PART_SIZE + MiB, MiB):
                yield chunk
            raise RuntimeError("source broke")

        async with S3Storage(f"s3://{s3_bucket}/repo") as storage:
            with pytest.raises(RuntimeError, match="source broke"):
                await storage.upload("broken", source())
        client = s3_client(s3_endpoint)
        try:
            assert client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
        finally:
            client.close()
