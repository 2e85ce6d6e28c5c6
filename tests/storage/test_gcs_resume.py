"""GCS chunked resumable uploads survive broken connections: through a fault-injecting proxy."""

from __future__ import annotations

import random
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Callable

import pytest
from faults import FaultProxy, Reply, Request, Reset, Rule, Truncate, gcs_unavailable

from replicate.storage.base import PART_SIZE
from replicate.storage.gcs import GCSStorage

pytestmark = pytest.mark.gcs

_direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture
def proxied(
    gcs_proxy: tuple[FaultProxy, str], monkeypatch: pytest.MonkeyPatch
) -> tuple[FaultProxy, str]:
    """The proxy and its bucket; STORAGE_EMULATOR_HOST points replicate at the proxy."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_proxy[0].url)
    return gcs_proxy


def fetch(proxy: FaultProxy, bucket: str, name: str) -> bytes:
    """The object's bytes by a plain GET to the server itself (not through replicate)."""
    assert proxy.upstream is not None
    quoted = urllib.parse.quote(name, safe="")
    with _direct.open(f"{proxy.upstream}/storage/v1/b/{bucket}/o/{quoted}?alt=media") as response:
        return bytes(response.read())


async def chunks_of(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def content_range(request: Request) -> str:
    return request.headers.get("content-range", "")


def chunk_puts(proxy: FaultProxy) -> list[str]:
    """The Content-Range of every PUT to an upload session, in order."""
    return [content_range(r) for r in proxy.requests if r.method == "PUT"]


def sessions_started(proxy: FaultProxy) -> list[Request]:
    return [r for r in proxy.requests if r.method == "POST" and "upload_id" not in r.query]


def held(proxy: FaultProxy, upload_id: str) -> int:
    """What fake-gcs-server holds of an upload: it appends every body that reached it whole."""
    return sum(
        r.body_passed
        for r in proxy.requests
        if r.method == "PUT"
        and r.query.get("upload_id") == upload_id
        and (r.fault == "Truncate" or (r.fault == "pass" and r.body_passed == r.body_length))
    )


def answer_status_queries(proxy: FaultProxy) -> Rule:
    """Answer upload status queries (``Content-Range: bytes */*``) as GCS does: 308 and the
    bytes held. fake-gcs-server 1.54 instead finalizes the upload with what it holds (see
    ``test_the_emulator_finalizes_on_a_status_query``), so the proxy answers for it."""

    def status(request: Request) -> Reply:
        count = held(proxy, request.query["upload_id"])
        headers = (("Range", f"bytes=0-{count - 1}"),) if count else ()
        return Reply(308, "Resume Incomplete", headers=headers)

    return proxy.add(
        status, match=lambda r: r.method == "PUT" and content_range(r) == "bytes */*", times=None
    )


def puts_starting_at(offset: int) -> Callable[[Request], bool]:
    return lambda r: r.method == "PUT" and content_range(r).startswith(f"bytes {offset}-")


class TestResumableUploadResumes:
    """aiohttp itself sends an idempotent PUT again once after a broken connection, so a fault
    reaches replicate's resume logic only when it breaks two attempts in a row."""

    async def test_chunk_broken_twice_is_resent_in_the_same_session(
        self, proxied: tuple[FaultProxy, str]
    ) -> None:
        """A chunk cut off mid-body is resent from what the session holds, and lands byte-exact."""
        proxy, bucket = proxied
        data = random.Random(7).randbytes(3 * PART_SIZE + 12345)
        broken = proxy.add(Reset(after=PART_SIZE // 2), match=puts_starting_at(PART_SIZE), times=2)
        status = answer_status_queries(proxy)
        async with GCSStorage(f"gs://{bucket}/repo") as storage:
            assert await storage.upload("big", chunks_of(data, 1 << 20)) == len(data)
        assert [r.body_passed for r in broken.requests] == [PART_SIZE // 2] * 2
        assert status.hits == 1
        assert fetch(proxy, bucket, "repo/big") == data
        assert len(sessions_started(proxy)) == 1, "one session, never restarted"
        second = f"bytes {PART_SIZE}-{2 * PART_SIZE - 1}/*"
        assert chunk_puts(proxy) == [
            f"bytes 0-{PART_SIZE - 1}/*",
            second,
            second,  # aiohttp's own second try
            "bytes */*",  # replicate asks the session what it holds: the first chunk
            second,
            f"bytes {2 * PART_SIZE}-{3 * PART_SIZE - 1}/*",
            f"bytes {3 * PART_SIZE}-{len(data) - 1}/{len(data)}",
        ]

    async def test_chunk_partly_kept_resumes_mid_chunk(
        self, proxied: tuple[FaultProxy, str]
    ) -> None:
        """When the server kept part of a broken chunk, only the rest of the chunk is sent."""
        proxy, bucket = proxied
        data = random.Random(9).randbytes(2 * PART_SIZE + 777)
        kept = 1 << 20  # GCS keeps multiples of 256 KiB
        proxy.add(Truncate(after=kept), match=puts_starting_at(PART_SIZE))
        proxy.add(Reset(after=0), match=puts_starting_at(PART_SIZE))  # aiohttp's second try
        status = answer_status_queries(proxy)
        async with GCSStorage(f"gs://{bucket}/repo") as storage:
            assert await storage.upload("big", chunks_of(data, 3 << 20)) == len(data)
        assert status.hits == 1
        assert fetch(proxy, bucket, "repo/big") == data
        assert len(sessions_started(proxy)) == 1
        puts = chunk_puts(proxy)
        resumed = puts[puts.index("bytes */*") + 1]
        assert resumed == f"bytes {PART_SIZE + kept}-{2 * PART_SIZE - 1}/*"

    async def test_unavailable_chunk_is_retried(self, proxied: tuple[FaultProxy, str]) -> None:
        """Two 503 answers to a chunk are retried in the same session; the object lands whole."""
        proxy, bucket = proxied
        data = random.Random(8).randbytes(2 * PART_SIZE + 1)
        unavailable = proxy.add(gcs_unavailable(), match=puts_starting_at(0), times=2)
        answer_status_queries(proxy)
        async with GCSStorage(f"gs://{bucket}/repo") as storage:
            assert await storage.upload("flaky", chunks_of(data, 3 << 20)) == len(data)
        assert unavailable.hits == 2
        assert fetch(proxy, bucket, "repo/flaky") == data
        assert len(sessions_started(proxy)) == 1


class TestTheEmulator:
    def test_the_emulator_finalizes_on_a_status_query(
        self, proxied: tuple[FaultProxy, str]
    ) -> None:
        """fake-gcs-server 1.54 ends an upload on a status query (GCS answers 308 and goes on).

        This is why ``answer_status_queries`` stands in for it; when this fails, drop that.
        """
        proxy, bucket = proxied
        assert proxy.upstream is not None
        initiate = urllib.request.Request(
            f"{proxy.upstream}/upload/storage/v1/b/{bucket}/o?uploadType=resumable&name=x",
            data=b'{"name": "x"}',
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with _direct.open(initiate) as response:
            session = response.headers["Location"]
        quarter = 256 * 1024
        for content_range, body in (
            (f"bytes 0-{quarter - 1}/*", b"a" * quarter),
            ("bytes */*", b""),
        ):
            put = urllib.request.Request(
                session, data=body, headers={"Content-Range": content_range}, method="PUT"
            )
            try:
                _direct.open(put).close()
            except urllib.error.HTTPError as e:
                assert e.code == 308  # urllib takes 308 for a redirect it will not follow
                e.close()
        assert fetch(proxy, bucket, "x") == b"a" * quarter
