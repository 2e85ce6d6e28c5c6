"""Time to durable: ``checkpoint(path=...)`` call -> ``Checkpoint.wait()`` returns.

That is snapshot + tar + gzip (isal) + sha256 + upload + experiment-JSON commit. Samples
alternate with a baseline (ABBA), each after ``os.sync()`` and a fresh rewrite of the file.

- disk (file:// repository on the same filesystem): baseline ``shutil.copyfile`` of the file
  then isal gzip level 1 of the copy into a ``.gz`` (``cp`` + gzip at isal speed).
- S3 (SeaweedFS `weed mini` on loopback, started here): baseline a raw aiobotocore multipart
  upload of the same file, 8 MiB parts, 4 in flight (the client is opened before the clock
  starts, as replicate's is).

Target: ≤ 1.3 × the baseline. Client and server share the machine's cores, so the server's
CPU seconds per upload are shown too.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from isal import isal_zlib

import replicate
from benchmarks._common import (
    GiB,
    MiB,
    Options,
    data_file,
    fmt_bytes,
    fmt_rate,
    fmt_s,
    fmt_x,
    note,
    p50,
    print_table,
    progress,
    ratio,
    record_summary,
    rewrite,
    settle,
    temp_dir,
    verdict,
)
from benchmarks._seaweed import Seaweed, async_client, multipart_upload, seaweed

NAME = "time_to_durable"
TARGET = 1.3
BUCKET = "bench"
READ_CHUNK = 1 * MiB


def _plan(options: Options) -> list[tuple[int, int]]:
    if options.quick:
        return [(32 * MiB, 2)]
    plan = [(256 * MiB, 3)]
    if options.big:
        plan.append((1 * GiB, 2))
    return plan


def cp_and_gzip(source: Path, workdir: Path) -> None:
    """The disk baseline: copy the file, then gzip the copy with isal level 1."""
    copy = workdir / "copy.pth"
    shutil.copyfile(source, copy)
    compressor = isal_zlib.compressobj(1, isal_zlib.DEFLATED, 31)
    with open(copy, "rb") as src, open(workdir / "copy.pth.gz", "wb") as out:
        while chunk := src.read(READ_CHUNK):
            out.write(compressor.compress(chunk))
        out.write(compressor.flush())


def _cleanup(workdir: Path) -> None:
    for name in ("copy.pth", "copy.pth.gz"):
        (workdir / name).unlink(missing_ok=True)


async def _raw_upload(endpoint: str, path: Path, key: str) -> float:
    async with async_client(endpoint) as client:
        start = time.perf_counter()
        await multipart_upload(client, BUCKET, key, path)
        elapsed = time.perf_counter() - start
        await client.delete_object(Bucket=BUCKET, Key=key)
        return elapsed


def raw_upload(endpoint: str, path: Path) -> float:
    """The S3 baseline, in a fresh event loop; returns the upload's own wall time."""
    return asyncio.run(_raw_upload(endpoint, path, f"raw/{os.getpid()}"))


class Side:
    """Samples of one side of a comparison: wall, blocking part, client and server CPU."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.blocking: list[float] = []
        self.client_cpu: list[float] = []
        self.server_cpu: list[float] = []


def _sample(side: Side, server: Seaweed | None, fn: Callable[[], float | None]) -> None:
    cpu0 = time.process_time()
    server0 = server.server_cpu_seconds() if server else 0.0
    start = time.perf_counter()
    result = fn()
    wall = time.perf_counter() - start
    side.client_cpu.append(time.process_time() - cpu0)
    if server:
        side.server_cpu.append(server.server_cpu_seconds() - server0)
    side.wall.append(result if result is not None and result > 0 else wall)


def _checkpoint_fn(
    experiment: replicate.Experiment, side: Side, landed: list[str]
) -> Callable[[], float | None]:
    def go() -> float | None:
        start = time.perf_counter()
        checkpoint = experiment.checkpoint(path="model.pth", quiet=True)
        side.blocking.append(time.perf_counter() - start)
        checkpoint.wait()
        landed.append(checkpoint.id)
        return None

    return go


def _compare(
    label: str,
    size: int,
    samples: int,
    experiment: replicate.Experiment,
    source: Path,
    project: Path,
    baseline: Callable[[], float | None],
    after_baseline: Callable[[], None],
    server: Seaweed | None,
    repository_dir: Path | None = None,
) -> tuple[Side, Side]:
    """ABBA samples; with ``repository_dir`` (disk), each landed tarball is deleted afterwards,
    as the baseline deletes its outputs, so both sides recycle the same page-cache memory (on
    this VM, page cache in never-touched guest RAM costs several times more to fill)."""
    base, mine = Side(), Side()
    progress(f"{label}, {fmt_bytes(size)}: {samples} samples per side")
    for i in range(samples * 2):
        replicate_turn = (i % 4) in (1, 2)
        settle()
        rewrite(source, project / "model.pth")
        if replicate_turn:
            landed: list[str] = []
            _sample(mine, server, _checkpoint_fn(experiment, mine, landed))
            if repository_dir is not None:
                for checkpoint_id in landed:
                    (repository_dir / "checkpoints" / f"{checkpoint_id}.tar.gz").unlink()
        else:
            _sample(base, server, baseline)
            after_baseline()
    return base, mine


def _row(label: str, size: int, base: Side, mine: Side, server: bool) -> list[object]:
    b50, m50 = p50(base.wall), p50(mine.wall)
    return [
        label,
        fmt_bytes(size),
        len(mine.wall),
        fmt_s(b50),
        fmt_rate(size, b50),
        fmt_s(m50),
        fmt_rate(size, m50),
        fmt_x(ratio(m50, b50)),
        fmt_s(p50(mine.blocking)),
        f"{p50(base.client_cpu):.2f} / {p50(mine.client_cpu):.2f} s",
        f"{p50(base.server_cpu):.2f} / {p50(mine.server_cpu):.2f} s" if server else "-",
        verdict(ratio(m50, b50) <= TARGET),
    ]


def run(options: Options) -> None:
    rows = []
    samples_seen: list[tuple[str, int, Side, Side]] = []
    with temp_dir("rbench-durable") as tmp:
        project, workdir = tmp / "project", tmp / "work"
        project.mkdir()
        workdir.mkdir()

        experiment = replicate.init(
            project_dir=project,
            repository=f"file://{tmp / 'repository'}",
            params={"benchmark": NAME},
        )
        experiment.wait()
        for size, samples in _plan(options):
            source = data_file(size)
            base, mine = _compare(
                "disk",
                size,
                samples,
                experiment,
                source,
                project,
                lambda: cp_and_gzip(project / "model.pth", workdir),
                lambda: _cleanup(workdir),
                None,
                tmp / "repository",
            )
            rows.append(_row("disk: cp + isal gzip -1", size, base, mine, False))
            _summary("disk", size, base, mine)
            samples_seen.append(("disk", size, base, mine))
        experiment.stop()

        with seaweed(BUCKET) as server:
            experiment = replicate.init(
                project_dir=project,
                repository=f"s3://{BUCKET}/durable",
                params={"benchmark": NAME},
            )
            experiment.wait()
            for size, samples in _plan(options):
                source = data_file(size)
                path = project / "model.pth"
                base, mine = _compare(
                    "SeaweedFS",
                    size,
                    samples,
                    experiment,
                    source,
                    project,
                    partial(raw_upload, server.endpoint, path),
                    lambda: None,
                    server,
                )
                rows.append(_row("S3: aiobotocore multipart", size, base, mine, True))
                _summary("S3 (SeaweedFS)", size, base, mine)
                samples_seen.append(("S3", size, base, mine))
            experiment.stop()

    print_table(
        "time to durable: checkpoint() call -> wait() returns, vs the same bytes by hand",
        [
            "repository: baseline",
            "size",
            "n",
            "baseline",
            "rate",
            "replicate",
            "rate",
            "ratio",
            "blocking",
            "client CPU b / r",
            "server CPU b / r",
            "≤ 1.3×",
        ],
        rows,
    )
    note("p50 of n samples per side, ABBA-interleaved, os.sync() + rewrite before each sample.")
    note("blocking = the checkpoint() call itself; CPU = process / weed CPU seconds per sample.")
    note("disk: each side deletes its output after a sample (so both reuse page-cache memory).")
    for where, size, base, mine in samples_seen:
        note(
            f"{where} {fmt_bytes(size)} samples in ABBA order: baseline "
            + " ".join(fmt_s(t) for t in base.wall)
            + "; replicate "
            + " ".join(fmt_s(t) for t in mine.wall)
            + " (replicate's 1st, 3rd, … follow a baseline sample, 2nd, 4th, … a replicate one)"
        )
    note("S3 baseline: 8 MiB parts, 4 in flight, raw file bytes (replicate sends a tar.gz of")
    note("them: random bytes do not compress, so the sizes match within 0.1 %).")


def _summary(where: str, size: int, base: Side, mine: Side) -> None:
    b50, m50 = p50(base.wall), p50(mine.wall)
    record_summary(
        NAME,
        f"{where} {fmt_bytes(size)}",
        fmt_s(m50),
        "≤ 1.3× baseline",
        ratio(m50, b50) <= TARGET,
        f"baseline {fmt_s(b50)}: {fmt_x(ratio(m50, b50))}",
    )
