"""Blocking time of ``checkpoint(path=...)`` while earlier uploads still run, against a copy
taken under the same kind of load.

The machine shares its 2 cores and its disk with the upload (and, for S3, with the server), so
a copy taken while an upload runs is slower than an idle copy. To tell that part from ours,
each series of checkpoints is matched by a series of the same shape done by hand:

- **baseline** (copy then raw upload): ``shutil.copyfile`` of the file into a staging dir (the
  timed part: the floor for a snapshot), then the copy is handed to a background thread that
  uploads it raw, two at a time like replicate: to disk, ``shutil.copyfile`` into the
  repository dir; to S3 (SeaweedFS on loopback), an aiobotocore multipart upload, 8 MiB parts.
- **replicate**: ``checkpoint(path=...)`` of the same file (snapshot, job, upload behind).

Two shapes: *back to back* (the file rewritten, then the next call at once) and *paced* (a call
every second). Each series is ``COUNT`` calls, ``os.sync()`` before it, every upload finished
after it; series alternate baseline / replicate (ABBA). The idle copy (nothing else running) is
shown for the machine's own part: copy under load / idle copy.

Target (issue 11): p50 ≤ 1.2 × the loaded copy's p50 + 5 ms, p99 ≤ 2 × the loaded copy's p99.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import replicate
from benchmarks._common import (
    MiB,
    Options,
    data_file,
    fmt_bytes,
    fmt_s,
    fmt_x,
    note,
    p50,
    p99,
    print_table,
    progress,
    ratio,
    record_summary,
    rewrite,
    settle,
    temp_dir,
    verdict,
)
from benchmarks._seaweed import async_client, multipart_upload, seaweed

NAME = "blocking_load"
BUCKET = "bench"
COUNT = 5
PACE = 1.0
UPLOADS_AT_ONCE = 2
ALLOWANCE = 0.005
P50_FACTOR = 1.2
P99_FACTOR = 2.0


def _copy_and_drop(source: Path, target: Path) -> None:
    """The raw "upload" to disk: a copy into the repository dir (then dropped: only the cost)."""
    shutil.copyfile(source, target)
    target.unlink()


class RawUploader:
    """Uploads handed-over files in a background event loop, two at a time, then deletes them."""

    def __init__(self, destination: Path | str) -> None:
        self._destination = destination
        self._loop = asyncio.new_event_loop()
        self._client: Any = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="raw-uploader", daemon=True)
        self._thread.start()
        self._ready.wait()
        self._names = itertools.count()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._slots = asyncio.Semaphore(UPLOADS_AT_ONCE)
        self._stop = asyncio.Event()
        if isinstance(self._destination, str):
            async with async_client(self._destination) as client:
                self._client = client
                self._ready.set()
                await self._stop.wait()
        else:
            self._ready.set()
            await self._stop.wait()

    async def _upload(self, path: Path, name: str) -> None:
        async with self._slots:
            if self._client is not None:
                await multipart_upload(self._client, BUCKET, f"raw/{name}", path)
                await self._client.delete_object(Bucket=BUCKET, Key=f"raw/{name}")
            else:
                assert isinstance(self._destination, Path)
                await asyncio.to_thread(_copy_and_drop, path, self._destination / name)
            await asyncio.to_thread(path.unlink)

    def submit(self, path: Path) -> Future[None]:
        name = f"upload-{next(self._names)}"
        return asyncio.run_coroutine_threadsafe(self._upload(path, name), self._loop)

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join()


def _series(
    call: Callable[[int], Callable[[], object]], source: Path, model: Path, paced: bool
) -> list[float]:
    """COUNT timed calls; ``call(i)`` does the timed part and returns how to wait for the rest."""
    settle()
    times: list[float] = []
    finish: list[Callable[[], object]] = []
    start = time.perf_counter()
    for i in range(COUNT):
        rewrite(source, model)
        if paced:
            time.sleep(max(0.0, start + i * PACE - time.perf_counter()))
        t0 = time.perf_counter()
        waiter = call(i)
        times.append(time.perf_counter() - t0)
        finish.append(waiter)
    for waiter in finish:
        waiter()
    return times


def _measure(
    where: str,
    experiment: replicate.Experiment,
    uploader: RawUploader,
    source: Path,
    model: Path,
    staging: Path,
    series: int,
) -> list[list[object]]:
    def baseline(i: int) -> Callable[[], object]:
        copy = staging / f"copy-{i}"
        shutil.copyfile(model, copy)
        return uploader.submit(copy).result

    def mine(i: int) -> Callable[[], object]:
        return experiment.checkpoint(path=model.name, quiet=True).wait

    idle = []
    rewrite(source, model)
    for _ in range(3):
        settle()
        t0 = time.perf_counter()
        shutil.copyfile(model, staging / "idle")
        idle.append(time.perf_counter() - t0)
        (staging / "idle").unlink()
    rows = []
    for paced in (False, True):
        shape = "paced 1 s" if paced else "back to back"
        progress(
            f"{where}, {shape}: {series} series of {COUNT} × {fmt_bytes(source.stat().st_size)}"
        )
        base: list[float] = []
        ours: list[float] = []
        for s in range(series * 2):
            mine_turn = (s % 4) in (1, 2)
            times = _series(mine if mine_turn else baseline, source, model, paced)
            (ours if mine_turn else base).extend(times)
        rows.append(_row(where, shape, p50(idle), base, ours))
    return rows


def _row(where: str, shape: str, idle: float, base: list[float], ours: list[float]) -> list[object]:
    b50, b99, m50, m99 = p50(base), p99(base), p50(ours), p99(ours)
    ok50 = m50 <= P50_FACTOR * b50 + ALLOWANCE
    ok99 = m99 <= P99_FACTOR * b99
    record_summary(
        NAME,
        f"{where} {shape} p50/p99",
        f"{fmt_s(m50)} / {fmt_s(m99)}",
        "p50 ≤ 1.2× loaded copy + 5 ms, p99 ≤ 2×",
        ok50 and ok99,
        f"loaded copy {fmt_s(b50)} / {fmt_s(b99)}: {fmt_x(ratio(m50, b50))} / "
        f"{fmt_x(ratio(m99, b99))}; idle copy {fmt_s(idle)}",
    )
    return [
        where,
        shape,
        len(ours),
        fmt_s(idle),
        fmt_s(b50),
        fmt_x(ratio(b50, idle)),
        fmt_s(m50),
        fmt_x(ratio(m50, b50)),
        fmt_s(b99),
        fmt_s(m99),
        fmt_x(ratio(m99, b99)),
        verdict(ok50 and ok99),
    ]


def run(options: Options) -> None:
    size = 64 * MiB if options.quick else 256 * MiB
    series = 1 if options.quick else 2
    source = data_file(size)
    rows: list[list[object]] = []
    with temp_dir("rbench-blockload") as tmp:
        project, staging, landed = tmp / "project", tmp / "staging", tmp / "raw"
        for d in (project, staging, landed):
            d.mkdir()
        model = project / "model.pth"
        experiment = replicate.init(
            project_dir=project, repository=f"file://{tmp / 'repository'}", params={}
        )
        experiment.wait()
        uploader = RawUploader(landed)
        try:
            rows += _measure("disk", experiment, uploader, source, model, staging, series)
        finally:
            uploader.close()
            experiment.stop()
        with seaweed(BUCKET) as server:
            experiment = replicate.init(
                project_dir=project, repository=f"s3://{BUCKET}/load", params={}
            )
            experiment.wait()
            uploader = RawUploader(server.endpoint)
            try:
                rows += _measure("S3", experiment, uploader, source, model, staging, series)
            finally:
                uploader.close()
                experiment.stop()

    print_table(
        f"checkpoint(path=...) blocking under load, {fmt_bytes(size)}, vs a copy under a raw upload",
        [
            "where",
            "shape",
            "n",
            "idle copy",
            "loaded copy p50",
            "machine",
            "ckpt p50",
            "ratio",
            "loaded copy p99",
            "ckpt p99",
            "ratio",
            "target",
        ],
        rows,
    )
    note("loaded copy = shutil.copyfile while raw uploads of the earlier copies run (2 at once);")
    note("machine = loaded copy p50 / idle copy (the load's own cost); ratio = ours / loaded copy.")
    note("target: p50 ≤ 1.2 × loaded copy + 5 ms and p99 ≤ 2 × loaded copy p99.")
    note(f"{COUNT} calls a series, series ABBA, os.sync() before each, all uploads done after.")
