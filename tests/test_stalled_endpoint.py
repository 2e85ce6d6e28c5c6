"""A stalled endpoint (accepts, never answers) gives one line naming it, within the deadline.

The deadline is REPLICATE_REQUEST_DEADLINE (30 s by default; 2 s here). The subprocess
timeouts below only guard against a hang: they are far above the bound.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from write import helpers


@pytest.fixture
def stalled() -> Iterator[str]:
    """A TCP server on 127.0.0.1 that accepts every connection and never replies."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)  # keep it open, say nothing

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        server.close()


CASES = [
    ("s3://stalled-bucket/repo", "AWS_ENDPOINT_URL_S3"),
    ("gs://stalled-bucket/repo", "STORAGE_EMULATOR_HOST"),
]


@pytest.mark.parametrize(("url", "variable"), CASES, ids=["s3", "gcs"])
class TestStalledEndpoint:
    def test_init_fails_in_one_line(
        self, tmp_path: Path, stalled: str, url: str, variable: str
    ) -> None:
        """init() in a script returns; its check in the background says, in one line, which
        endpoint did not answer (check_repository() raises it); the script ends."""
        project = tmp_path / "project"
        project.mkdir()
        result = helpers.run_script(
            project,
            f"""
            import replicate
            experiment = replicate.init(repository={url!r})
            print("init returned", flush=True)
            try:
                experiment.check_repository()
            except replicate.StorageError as exc:
                print(type(exc).__name__, exc)
            """,
            env={
                variable: stalled,
                "REPLICATE_REQUEST_DEADLINE": "2",
                "REPLICATE_JOB_DEADLINE": "4",
            },
            timeout=90,
        )
        assert result.returncode == 0, result.stderr
        first, line = result.stdout.splitlines()
        assert first == "init returned"
        assert line.startswith("TransientStorageError ")
        assert stalled in line
        assert "no answer within" in line or "timeout" in line.lower()
        (said,) = [x for x in result.stderr.splitlines() if "cannot be saved" in x]
        assert stalled in said

    def test_ls_fails_in_one_line(
        self, tmp_path: Path, stalled: str, url: str, variable: str
    ) -> None:
        """`replicate ls` exits 1 with one line naming the endpoint, instead of hanging."""
        project = tmp_path / "project"
        project.mkdir()
        result = helpers.cli(
            project, "ls", "-R", url, env={variable: stalled, "REPLICATE_REQUEST_DEADLINE": "2"},
            timeout=90,
        )  # fmt: skip
        assert result.returncode == 1
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith("Error: ")
        assert stalled in line
