"""A SeaweedFS `weed mini` S3 server on loopback for one benchmark, and raw S3 clients.

The server gets SigV4 credentials testing/testing, five free ports (each with port + 10000 free
too, for gRPC), a data dir in a temp dir, and is stopped by PID at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._common import MiB, progress, temp_dir, venv_bin

ACCESS_KEY = "testing"
SECRET_KEY = "testing"
GRPC_OFFSET = 10000
REGION = "us-east-1"
#: The baseline multipart shape: raw aiobotocore, 8 MiB parts, 4 in flight.
PART_SIZE = 8 * MiB
PARTS_IN_FLIGHT = 4
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy

_UNSET = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_REGION",
    "AWS_ENDPOINT_URL",
)


@dataclass
class Seaweed:
    """A running server: its S3 endpoint and process."""

    endpoint: str
    process: subprocess.Popen[bytes]
    log: Path

    def env(self) -> dict[str, str]:
        """Environment for clients (this process or subprocesses): loopback endpoint, test keys."""
        env = {k: v for k, v in os.environ.items() if k not in _UNSET}
        env.update(
            AWS_ACCESS_KEY_ID=ACCESS_KEY,
            AWS_SECRET_ACCESS_KEY=SECRET_KEY,
            AWS_EC2_METADATA_DISABLED="true",
            AWS_ENDPOINT_URL_S3=self.endpoint,
            AWS_DEFAULT_REGION=REGION,
            AWS_CONFIG_FILE="/nonexistent",
            AWS_SHARED_CREDENTIALS_FILE="/nonexistent",
            NO_PROXY=",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1", "localhost"])),
        )
        return env

    def apply_env(self) -> None:
        """Point this process's clients (replicate's S3Storage included) at the server."""
        for name in _UNSET:
            os.environ.pop(name, None)
        os.environ.update(self.env())

    def make_bucket(self, name: str) -> None:
        client = sync_client(self.endpoint)
        try:
            client.create_bucket(Bucket=name)
        finally:
            client.close()

    def server_cpu_seconds(self) -> float:
        """User + system CPU the server has used so far (from /proc/<pid>/stat)."""
        try:
            with open(f"/proc/{self.process.pid}/stat", encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_ports(count: int) -> list[int]:
    chosen: list[int] = []
    while len(chosen) < count:
        port = random.randint(20000, 29999)
        taken = {p + d for p in chosen for d in (0, GRPC_OFFSET)}
        if port in taken or port + GRPC_OFFSET in taken:
            continue
        if _port_free(port) and _port_free(port + GRPC_OFFSET):
            chosen.append(port)
    return chosen


def _answers(url: str) -> bool:
    try:
        with _opener.open(url, timeout=2):
            return True
    except urllib.error.HTTPError as e:
        e.close()
        return True  # any HTTP status means it is serving
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def seaweed(bucket: str = "bench") -> Iterator[Seaweed]:
    """Start `weed mini`, create ``bucket``, apply the client env to this process; stop at exit."""
    with temp_dir("rbench-weed") as base:
        server = _start(base)
        try:
            server.make_bucket(bucket)
            server.apply_env()
            yield server
        finally:
            server.stop()


def _start(base: Path) -> Seaweed:
    log = base / "weed.log"
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    for _ in range(3):
        s3, master, volume, filer, admin = _free_ports(5)
        data = base / f"data-{s3}"
        data.mkdir()
        command = [
            venv_bin("weed"),
            "mini",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.port={s3}",
            f"-master.port={master}",
            f"-volume.port={volume}",
            f"-filer.port={filer}",
            f"-admin.port={admin}",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
        ]
        with log.open("ab") as out:
            process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
        server = Seaweed(f"http://127.0.0.1:{s3}", process, log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and process.poll() is None:
            if _answers(server.endpoint + "/"):
                progress(f"SeaweedFS serving at {server.endpoint}")
                return server
            time.sleep(0.05)
        server.stop()
    raise RuntimeError(f"SeaweedFS did not start; see {log}")


# ---- raw clients (the baselines) --------------------------------------------------------------


def _client_kwargs(endpoint: str) -> dict[str, Any]:
    return {
        "endpoint_url": endpoint,
        "region_name": REGION,
        "aws_access_key_id": ACCESS_KEY,
        "aws_secret_access_key": SECRET_KEY,
    }


def sync_client(endpoint: str) -> Any:
    """A botocore S3 client (path-style, us-east-1) for setup work."""
    import botocore.config
    import botocore.session

    return botocore.session.get_session().create_client(
        "s3",
        **_client_kwargs(endpoint),
        config=botocore.config.Config(
            s3={"addressing_style": "path"},
            signature_version="s3v4",
            retries={"max_attempts": 3, "mode": "standard"},
        ),
    )


@contextlib.asynccontextmanager
async def async_client(endpoint: str) -> AsyncIterator[Any]:
    """An aiobotocore S3 client (path-style, us-east-1, 32 connections)."""
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    config = AioConfig(
        s3={"addressing_style": "path"},
        signature_version="s3v4",
        retries={"max_attempts": 3, "mode": "standard"},
        max_pool_connections=32,
    )
    async with get_session().create_client("s3", **_client_kwargs(endpoint), config=config) as c:
        yield c


async def multipart_upload(client: Any, bucket: str, key: str, path: Path) -> int:
    """Upload ``path`` as a multipart upload: 8 MiB parts, 4 in flight, bounded memory."""
    upload = await client.create_multipart_upload(Bucket=bucket, Key=key)
    upload_id = upload["UploadId"]
    slots = asyncio.Semaphore(PARTS_IN_FLIGHT)
    parts: dict[int, dict[str, Any]] = {}
    total = 0

    async def send(number: int, data: bytes) -> None:
        try:
            response = await client.upload_part(
                Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
            )
            part: dict[str, Any] = {"ETag": response["ETag"], "PartNumber": number}
            if "ChecksumCRC32" in response:
                part["ChecksumCRC32"] = response["ChecksumCRC32"]
            parts[number] = part
        finally:
            slots.release()

    f = await asyncio.to_thread(open, path, "rb")
    try:
        async with asyncio.TaskGroup() as tg:
            number = 0
            while True:
                await slots.acquire()  # a free slot before reading the next part
                data = await asyncio.to_thread(f.read, PART_SIZE)
                if not data:
                    slots.release()
                    break
                number += 1
                total += len(data)
                tg.create_task(send(number, data))
    finally:
        f.close()
    await client.complete_multipart_upload(
        Bucket=bucket,
        Key=key,
        UploadId=upload_id,
        MultipartUpload={"Parts": [parts[n] for n in sorted(parts)]},
    )
    return total
