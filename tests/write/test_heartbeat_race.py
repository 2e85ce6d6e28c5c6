"""A timed heartbeat still in flight when the experiment stops must not outlive the stop."""

from __future__ import annotations

from contextlib import AsyncExitStack

import anyio
import botocore.exceptions
import pytest
from faults import FaultProxy, Pause, Request
from servers import delete_s3_bucket, make_s3_bucket, new_bucket_name, s3_client

from replicate.config import load_settings
from replicate.daemon.heartbeat import Heartbeats
from replicate.daemon.pool import RepositoryPool

EXPERIMENT = "a" * 64


def is_heartbeat_put(request: Request) -> bool:
    return request.method == "PUT" and request.path.endswith(f"heartbeats/{EXPERIMENT}.json")


@pytest.mark.s3
async def test_a_beat_landing_after_the_stop_is_deleted_again(
    s3_endpoint: str, s3_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = new_bucket_name()
    make_s3_bucket(s3_endpoint, bucket)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_proxy.url)
    url = f"s3://{bucket}/repo"
    try:
        async with AsyncExitStack() as stack:
            beats = Heartbeats(RepositoryPool(stack, load_settings()))
            await beats.start(url, EXPERIMENT)
            # The next beat's head reaches the server, its body waits at the proxy.
            held = s3_proxy.add(Pause(after=0), match=is_heartbeat_put)
            async with anyio.create_task_group() as tg:
                tg.start_soon(beats.beat_all)
                await anyio.to_thread.run_sync(held.wait)
                await beats.stop(url, EXPERIMENT)  # its delete lands before the beat
                held.release()
        client = s3_client(s3_endpoint)
        with pytest.raises(botocore.exceptions.ClientError) as missing:
            client.head_object(Bucket=bucket, Key=f"repo/metadata/heartbeats/{EXPERIMENT}.json")
        assert missing.value.response["Error"]["Code"] == "404"
        client.close()
    finally:
        delete_s3_bucket(s3_endpoint, bucket)
