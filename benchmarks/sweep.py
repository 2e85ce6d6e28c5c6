"""Blocking time and time to durable against checkpoint size, for the plots.

For each size (1 MiB → 256 MiB; 1 GiB with ``--big``; 1 → 64 MiB with ``--quick``), samples
alternate (ABBA) between replicate and its floor, each after ``os.sync()`` and a fresh rewrite
of the file:

- blocking: ``checkpoint(path=...)`` vs ``shutil.copyfile`` (file:// repository), and a
  hand-written synchronous save, ``tarfile`` (gzip, its default level 9) + a botocore
  ``put_object`` to SeaweedFS, up to 64 MiB (it takes seconds beyond);
- time to durable on disk: call → ``wait()`` vs ``cp`` of the file into the repository's
  filesystem;
- time to durable on S3 (SeaweedFS on loopback): call → ``wait()`` vs a raw aiobotocore
  multipart upload of the same bytes (8 MiB parts, 4 in flight).

The medians go to the plots (``record_series``); the table prints them with their ratios.
"""

from __future__ import annotations

import shutil
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import replicate
from benchmarks._common import (
    GiB,
    MiB,
    Options,
    data_file,
    fmt_bytes,
    fmt_s,
    fmt_x,
    note,
    p50,
    print_table,
    progress,
    ratio,
    record_series,
    rewrite,
    settle,
    temp_dir,
)
from benchmarks._seaweed import seaweed, sync_client
from benchmarks.time_to_durable import raw_upload

NAME = "sweep"
BUCKET = "bench"
TARFILE_MAX = 64 * MiB


def _sizes(options: Options) -> list[int]:
    if options.quick:
        return [1 * MiB, 16 * MiB, 64 * MiB]
    sizes = [1 * MiB, 16 * MiB, 64 * MiB, 256 * MiB]
    return [*sizes, 1 * GiB] if options.big else sizes


def _abba(
    samples: int, source: Path, model: Path, base: Callable[[], float], mine: Callable[[], float]
) -> tuple[float, float]:
    """Medians of ``samples`` runs of each side, ABBA, after a sync and a rewrite each."""
    results: dict[bool, list[float]] = {False: [], True: []}
    for i in range(samples * 2):
        turn = (i % 4) in (1, 2)
        rewrite(source, model)
        settle()
        results[turn].append((mine if turn else base)())
    return p50(results[False]), p50(results[True])


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _tarfile_put(model: Path, workdir: Path, client: object) -> float:
    """The hand-written synchronous save: tar.gz the file, then put it; all of it blocks."""
    start = time.perf_counter()
    target = workdir / "model.tar.gz"
    with tarfile.open(target, "w:gz") as tar:
        tar.add(model, arcname="model.pth")
    with open(target, "rb") as body:
        client.put_object(Bucket=BUCKET, Key="tarfile/model.tar.gz", Body=body)  # type: ignore[attr-defined]
    elapsed = time.perf_counter() - start
    target.unlink()
    return elapsed


def run(options: Options) -> None:
    samples = 2 if options.quick else 3
    rows: list[list[object]] = []
    blocking: dict[str, list[tuple[float, float]]] = {"copy": [], "replicate": []}
    tarfile_blocking: list[tuple[float, float]] = []
    durable: dict[str, list[tuple[float, float]]] = {
        "cp": [],
        "replicate (disk)": [],
        "raw multipart": [],
        "replicate (S3)": [],
    }
    with temp_dir("rbench-sweep") as tmp:
        project, workdir = tmp / "project", tmp / "work"
        project.mkdir()
        workdir.mkdir()
        model = project / "model.pth"
        experiment = replicate.init(
            project_dir=project, repository=f"file://{tmp / 'repository'}", params={}
        )
        experiment.wait()

        def block() -> float:
            start = time.perf_counter()
            checkpoint = experiment.checkpoint(path="model.pth", quiet=True)
            elapsed = time.perf_counter() - start
            checkpoint.wait()
            return elapsed

        def land() -> float:
            return _timed(lambda: experiment.checkpoint(path="model.pth", quiet=True).wait())

        def copy() -> float:
            elapsed = _timed(lambda: shutil.copyfile(model, workdir / "copy.pth"))
            (workdir / "copy.pth").unlink()
            return elapsed

        for size in _sizes(options):
            progress(f"disk, {fmt_bytes(size)}: blocking and time to durable")
            source = data_file(size)
            c, b = _abba(samples, source, model, copy, block)
            blocking["copy"].append((size / MiB, c))
            blocking["replicate"].append((size / MiB, b))
            rows.append(
                ["blocking: ckpt vs copy", fmt_bytes(size), fmt_s(c), fmt_s(b), fmt_x(ratio(b, c))]
            )
            c, d = _abba(samples, source, model, copy, land)
            durable["cp"].append((size / MiB, c))
            durable["replicate (disk)"].append((size / MiB, d))
            rows.append(
                ["durable, disk: vs cp", fmt_bytes(size), fmt_s(c), fmt_s(d), fmt_x(ratio(d, c))]
            )
        experiment.stop()

        with seaweed(BUCKET) as server:
            experiment = replicate.init(
                project_dir=project, repository=f"s3://{BUCKET}/sweep", params={}
            )
            experiment.wait()
            client = sync_client(server.endpoint)
            try:
                for size in _sizes(options):
                    progress(f"S3, {fmt_bytes(size)}: time to durable (and tarfile + put)")
                    source = data_file(size)
                    r, d = _abba(
                        samples, source, model, lambda: raw_upload(server.endpoint, model), land
                    )
                    durable["raw multipart"].append((size / MiB, r))
                    durable["replicate (S3)"].append((size / MiB, d))
                    rows.append(
                        [
                            "durable, S3: vs raw multipart",
                            fmt_bytes(size),
                            fmt_s(r),
                            fmt_s(d),
                            fmt_x(ratio(d, r)),
                        ]
                    )
                    if size <= TARFILE_MAX:
                        rewrite(source, model)
                        settle()
                        t = _tarfile_put(model, workdir, client)
                        tarfile_blocking.append((size / MiB, t))
                        rows.append(
                            ["blocking: tarfile + put", fmt_bytes(size), "-", fmt_s(t), "-"]
                        )
            finally:
                client.close()
                experiment.stop()

    for line, points in blocking.items():
        record_series("blocking vs size", line, points, x="checkpoint size (MiB)", y="seconds")
    record_series(
        "blocking vs size",
        "tarfile + put (S3)",
        tarfile_blocking,
        x="checkpoint size (MiB)",
        y="seconds",
    )
    for line, points in durable.items():
        record_series(
            "time to durable vs size", line, points, x="checkpoint size (MiB)", y="seconds"
        )
    print_table(
        "blocking and time to durable against size",
        ["measure", "size", "baseline", "replicate", "ratio"],
        rows,
    )
    note(f"p50 of {samples} samples per side, ABBA; tarfile + put: one sample, gzip level 9.")
