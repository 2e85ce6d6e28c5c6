"""The fault-injecting proxy, against the real servers it stands in front of."""

from __future__ import annotations

import http.client
import json
import random
import socket
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import botocore.config
import botocore.exceptions
import botocore.session
import pytest
from faults import (
    Delay,
    FaultProxy,
    Pass,
    Pause,
    Reset,
    Stall,
    body_at_least,
    gcs_unavailable,
    s3_slow_down,
)
from servers import ACCESS_KEY, SECRET_KEY, make_gcs_bucket, new_bucket_name, s3_client

MiB = 1 << 20


def direct_client(endpoint: str) -> Any:
    """A botocore S3 client that never retries, so each fault reaches the test as it is."""
    return botocore.session.get_session().create_client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=botocore.config.Config(
            s3={"addressing_style": "path"},
            retries={"total_max_attempts": 1},
            read_timeout=60,
        ),
    )


@pytest.fixture
def proxy(s3_proxy: FaultProxy) -> FaultProxy:
    return s3_proxy


@pytest.fixture
def bucket(s3_bucket: str, s3_endpoint: str) -> Iterator[tuple[str, Any]]:
    """The test's bucket and a plain client straight to the server (no proxy)."""
    client = s3_client(s3_endpoint)
    yield s3_bucket, client
    client.close()


def in_thread(call: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    """Run ``call`` in a thread; its result or exception lands in the returned list."""
    out: list[object] = []

    def run() -> None:
        try:
            out.append(call())
        except Exception as e:  # noqa: BLE001 - handed to the test to assert on
            out.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def stored(client: Any, bucket: str, key: str) -> bytes | None:
    try:
        return bytes(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    except botocore.exceptions.ClientError as e:
        assert e.response["Error"]["Code"] == "NoSuchKey"
        return None


@pytest.mark.s3
class TestS3ThroughTheProxy:
    def test_requests_pass_through_untouched(
        self, proxy: FaultProxy, bucket: tuple[str, Any]
    ) -> None:
        """With no rule, objects written and read through the proxy are byte-exact."""
        name, plain = bucket
        data = random.Random(1).randbytes(3 * MiB)
        client = direct_client(proxy.url)
        client.put_object(Bucket=name, Key="k", Body=data)
        assert client.get_object(Bucket=name, Key="k")["Body"].read() == data
        client.close()
        assert stored(plain, name, "k") == data
        methods = [(r.method, r.path, r.fault) for r in proxy.requests]
        assert methods == [("PUT", f"/{name}/k", "pass"), ("GET", f"/{name}/k", "pass")]
        assert proxy.requests[0].body_passed == proxy.requests[0].body_length

    def test_reset_after_some_body_bytes(self, proxy: FaultProxy, bucket: tuple[str, Any]) -> None:
        """A reset mid-body fails the client's request; the server never stores the object."""
        name, plain = bucket
        rule = proxy.add(Reset(after=MiB), match=lambda r: r.method == "PUT")
        client = direct_client(proxy.url)
        with pytest.raises(botocore.exceptions.HTTPClientError):
            client.put_object(Bucket=name, Key="k", Body=b"x" * (4 * MiB))
        request = rule.wait(0)
        assert request.body_passed == MiB < (request.body_length or 0)
        assert stored(plain, name, "k") is None
        client.put_object(Bucket=name, Key="k", Body=b"second")  # the rule was used up
        client.close()
        assert stored(plain, name, "k") == b"second"

    def test_slow_down_reply(self, proxy: FaultProxy, bucket: tuple[str, Any]) -> None:
        """A 503 SlowDown with S3's XML body reaches botocore as that error code."""
        name, plain = bucket
        rule = proxy.add(s3_slow_down(), match=body_at_least(2 * MiB), times=None)
        client = direct_client(proxy.url)
        for _ in range(2):
            with pytest.raises(botocore.exceptions.ClientError) as info:
                client.put_object(Bucket=name, Key="big", Body=b"y" * (2 * MiB))
            assert info.value.response["Error"]["Code"] == "SlowDown"
            assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        client.put_object(Bucket=name, Key="small", Body=b"small")  # not matched: passes
        client.close()
        assert rule.hits == 2
        assert stored(plain, name, "big") is None
        assert stored(plain, name, "small") == b"small"

    def test_pause_holds_the_upload_mid_body_until_released(
        self, proxy: FaultProxy, bucket: tuple[str, Any]
    ) -> None:
        """A paused upload has passed exactly ``after`` bytes; released, it completes."""
        name, plain = bucket
        data = random.Random(2).randbytes(4 * MiB)
        rule = proxy.add(Pause(after=MiB + 5), match=lambda r: r.method == "PUT")
        client = direct_client(proxy.url)
        thread, out = in_thread(lambda: client.put_object(Bucket=name, Key="k", Body=data))
        request = rule.wait()
        assert request.body_passed == MiB + 5
        assert stored(plain, name, "k") is None
        assert thread.is_alive()
        rule.release()
        thread.join(60)
        client.close()
        assert not isinstance(out[0], Exception), out
        assert stored(plain, name, "k") == data
        assert request.body_passed == len(data)

    def test_hold_keeps_new_requests_until_let_through(
        self, proxy: FaultProxy, bucket: tuple[str, Any]
    ) -> None:
        """While held, a request waits in the proxy and reaches the server only when let through."""
        name, plain = bucket
        proxy.hold()
        client = direct_client(proxy.url)
        thread, out = in_thread(lambda: client.put_object(Bucket=name, Key="k", Body=b"held"))
        proxy.wait_for_requests(1)
        assert stored(plain, name, "k") is None
        assert thread.is_alive()
        proxy.let_through()
        thread.join(60)
        client.close()
        assert not isinstance(out[0], Exception), out
        assert stored(plain, name, "k") == b"held"

    def test_pass_signals_when_bytes_have_passed(
        self, proxy: FaultProxy, bucket: tuple[str, Any]
    ) -> None:
        """Pass(after=n) fires once n body bytes have passed and changes nothing else."""
        name, plain = bucket
        rule = proxy.add(Pass(after=2 * MiB), match=lambda r: r.method == "PUT")
        client = direct_client(proxy.url)
        client.put_object(Bucket=name, Key="k", Body=b"z" * (3 * MiB))
        client.close()
        assert rule.wait(0).body_passed == 3 * MiB
        assert stored(plain, name, "k") == b"z" * (3 * MiB)

    def test_delay_adds_latency(self, proxy: FaultProxy, bucket: tuple[str, Any]) -> None:
        """Delay(s) holds the request at least s seconds, then passes it."""
        name, plain = bucket
        proxy.add(Delay(0.3))
        client = direct_client(proxy.url)
        started = time.monotonic()
        client.put_object(Bucket=name, Key="k", Body=b"late")
        assert time.monotonic() - started >= 0.3  # a lower bound: slowness cannot break it
        client.close()
        assert stored(plain, name, "k") == b"late"


@pytest.mark.gcs
class TestGCSThroughTheProxy:
    def test_unavailable_reply_and_chunked_bodies(self, gcs_endpoint: str) -> None:
        """A 503 with GCS's JSON body; chunked uploads are framed right on a kept-alive connection."""
        name = new_bucket_name()
        make_gcs_bucket(gcs_endpoint, name)
        with FaultProxy(gcs_endpoint) as proxy:
            rule = proxy.add(gcs_unavailable(), match=lambda r: r.method == "GET")
            host = urllib.parse.urlsplit(proxy.url)
            connection = http.client.HTTPConnection(host.hostname or "", host.port, timeout=60)
            upload = f"/upload/storage/v1/b/{name}/o?uploadType=media&name="
            for key, body in (("a", b"first " * 50_000), ("b", b"second")):
                connection.request("POST", upload + key, body=iter([body[:7], body[7:]]))
                response = connection.getresponse()
                assert response.status == 200, response.read()
                assert json.loads(response.read())["size"] == str(len(body))
            connection.request("GET", f"/storage/v1/b/{name}/o/a?alt=media")
            response = connection.getresponse()
            assert response.status == 503
            assert json.loads(response.read())["error"]["code"] == 503
            connection.close()
            assert [r.chunked for r in proxy.requests] == [True, True, False]
            assert [r.connection for r in proxy.requests] == [0, 0, 0]
            assert rule.hits == 1
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with direct.open(f"{gcs_endpoint}/storage/v1/b/{name}/o/a?alt=media", timeout=60) as got:
            assert got.read() == b"first " * 50_000

    def test_stall_never_answers(self, gcs_endpoint: str) -> None:
        """A stalled request reads to its end and gets no byte back; closing the proxy ends it."""
        proxy = FaultProxy(gcs_endpoint).start()
        rule = proxy.add(Stall())
        sock = socket.create_connection(("127.0.0.1", proxy.port))
        body = b"x" * 1000
        sock.sendall(
            b"POST /upload/storage/v1/b/nothing/o HTTP/1.1\r\nHost: x\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        assert rule.wait().body_passed == len(body)
        proxy.close()
        try:
            received = sock.recv(100)
        except ConnectionResetError:
            received = b""
        sock.close()
        assert received == b""
