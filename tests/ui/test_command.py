"""``replicate ui`` as a real process: serves, warns off loopback, fails in one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from cli.helpers import Written
from servers import free_ports

from ui.helpers import get


def start(cwd: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "replicate", "ui", *args],
        cwd=cwd,
        env={**os.environ, "NO_COLOR": "1"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop(process: subprocess.Popen[str]) -> tuple[int, str]:
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    return process.returncode, err


class TestCommand:
    def test_serves_until_interrupted(self, shared_disk: Written) -> None:
        """It prints the page's URL, serves the repository, and exits 0 on Ctrl-C."""
        (port,) = free_ports(1)
        process = start(shared_disk.project, "-R", shared_disk.url, "--port", str(port))
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            assert f"http://127.0.0.1:{port}/" in line
            assert shared_disk.adam[:7] in get(f"http://127.0.0.1:{port}", "/").text
        finally:
            code, err = stop(process)
        assert code == 0
        assert "no login" not in err

    def test_other_host_warns_once(self, shared_disk: Written) -> None:
        """Listening anywhere but 127.0.0.1 prints one line saying the page has no login."""
        (port,) = free_ports(1)
        process = start(
            shared_disk.project, "-R", shared_disk.url, "--host", "127.0.0.2", "--port", str(port)
        )
        try:
            assert process.stdout is not None
            assert f"http://127.0.0.2:{port}/" in process.stdout.readline()
        finally:
            _, err = stop(process)
        warnings = [line for line in err.splitlines() if "no login" in line]
        assert len(warnings) == 1 and warnings[0].startswith("warning:")

    def test_port_in_use_is_one_line(self, shared_disk: Written) -> None:
        """A port that is taken fails with exit 1 and one line naming --port."""
        import socket

        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            process = start(shared_disk.project, "-R", shared_disk.url, "--port", str(port))
            _, err = process.communicate(timeout=60)
        assert process.returncode == 1
        assert err.strip().count("\n") == 0 and "--port" in err

    def test_missing_bucket_is_one_line(self, tmp_path: Path, s3_endpoint: str) -> None:
        """A repository that cannot be opened fails before serving, in one line."""
        (port,) = free_ports(1)
        env_process = subprocess.run(
            [
                sys.executable,
                "-m",
                "replicate",
                "ui",
                "-R",
                "s3://no-such-bucket-here/r",
                "--port",
                str(port),
            ],
            check=False,
            cwd=tmp_path,
            env={**os.environ, "AWS_ENDPOINT_URL_S3": s3_endpoint},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert env_process.returncode == 1
        assert env_process.stderr.strip().count("\n") == 0
        assert "no-such-bucket-here" in env_process.stderr
