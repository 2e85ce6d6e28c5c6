"""Ways to make a ~600-byte job manifest durable: the floors a metrics-only checkpoint sits on.

- ``new_file``: write a temp file, fsync, rename it to a new unique name in a directory that
  keeps growing (the spool's old shape: one ``jobs/<id>.json`` per job);
- ``rename_over``: the same, but renamed over one fixed name (no new directory entries);
- ``append``: append one record to an open log file and fdatasync it (a write-ahead log).

Each returns (wall seconds, thread CPU seconds); CPU includes the kernel's work in the calls.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

MANIFEST = (b'{"id":"00000000001764430000-0123abcd","kind":"checkpoint",' + b"x" * 540 + b"}\n")[
    :600
]


class Floors:
    """The three shapes, each in its own directory under ``root``."""

    def __init__(self, root: Path) -> None:
        self.jobs = root / "jobs"
        self.one = root / "one"
        self.jobs.mkdir(parents=True)
        self.one.mkdir(parents=True)
        self._log = os.open(root / "journal.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._n = 0

    def close(self) -> None:
        os.close(self._log)

    def _write(self, temp: Path, final: Path) -> tuple[float, float]:
        start, cpu = time.perf_counter(), time.thread_time()
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, MANIFEST)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temp, final)
        return time.perf_counter() - start, time.thread_time() - cpu

    def new_file(self) -> tuple[float, float]:
        self._n += 1
        name = f"{time.time_ns():020d}-{self._n:08x}"
        return self._write(self.jobs / f".{name}.tmp", self.jobs / f"{name}.json")

    def rename_over(self) -> tuple[float, float]:
        return self._write(self.one / ".job.json.tmp", self.one / "job.json")

    def append(self) -> tuple[float, float]:
        start, cpu = time.perf_counter(), time.thread_time()
        os.write(self._log, MANIFEST)
        os.fdatasync(self._log)
        return time.perf_counter() - start, time.thread_time() - cpu
