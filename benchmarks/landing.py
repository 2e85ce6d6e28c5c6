"""Landing on local disk: time to durable against ``cp``, and 5 checkpoints back to back.

The data is float32 weights (normal noise), which gzip shrinks to ~93 % at best: what a
trained model looks like to a compressor. Baselines in the same run, alternating with the
measured side (ABBA), each sample after ``os.sync()`` and a fresh rewrite of the file:

- ``cp``: ``shutil.copyfile`` of the file into the repository's filesystem.
- 5 × back to back: 5 ``cp`` one after another (the floor), and for the record Keepsake 0.4.2's
  1.74 s from issue 11 (``make bench-peers`` measures Keepsake itself in the same run).

Targets (issue 11): one checkpoint durable ≤ 1.5 × ``cp``; 5 × 256 MiB < Keepsake.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

import replicate
from benchmarks._common import (
    MiB,
    Options,
    bench_root,
    fmt_bytes,
    fmt_s,
    fmt_x,
    note,
    p50,
    print_table,
    progress,
    ratio,
    record_summary,
    settle,
    temp_dir,
    verdict,
)

NAME = "landing"
TARGET_DURABLE = 1.5
KEEPSAKE_5X256_ISSUE = 1.74
WRITE_CHUNK = 8 * MiB


def weights_file(size: int) -> Path:
    """A file of float32 normal noise (compresses to ~93 %), written once per run."""
    path = bench_root() / f"weights-{size}.bin"
    if path.exists() and path.stat().st_size == size:
        return path
    rng = np.random.default_rng(11)
    with open(path, "wb") as f:
        remaining = size
        while remaining > 0:
            n = min(WRITE_CHUNK, remaining)
            f.write(rng.standard_normal(n // 4, dtype=np.float32).tobytes())
            remaining -= n
    return path


def _rewrite(source: Path, dest: Path) -> None:
    with open(source, "rb") as src, open(dest, "wb") as out:
        while chunk := src.read(WRITE_CHUNK):
            out.write(chunk)


def _checkpoints(experiment: replicate.Experiment, count: int) -> tuple[float, list[float]]:
    """``count`` checkpoints back to back; (first call -> all durable, blocking per call)."""
    blocking = []
    handles = []
    start = time.perf_counter()
    for _ in range(count):
        t0 = time.perf_counter()
        handles.append(experiment.checkpoint(path="model.pth", quiet=True))
        blocking.append(time.perf_counter() - t0)
    for handle in handles:
        handle.wait()
    return time.perf_counter() - start, blocking


def _copies(source: Path, workdir: Path, count: int) -> float:
    start = time.perf_counter()
    for i in range(count):
        shutil.copyfile(source, workdir / f"copy-{i}.pth")
    return time.perf_counter() - start


def _clean(*directories: Path) -> None:
    for directory in directories:
        for path in directory.glob("*"):
            path.unlink()


def run(options: Options) -> None:
    size = 256 * MiB
    samples = 3 if options.quick else 5
    with temp_dir("rbench-landing") as tmp:
        project, workdir = tmp / "project", tmp / "work"
        project.mkdir()
        workdir.mkdir()
        landed_dir = tmp / "repository" / "checkpoints"
        source = weights_file(size)
        model = project / "model.pth"
        experiment = replicate.init(
            project_dir=project, repository=f"file://{tmp / 'repository'}", params={}
        )
        experiment.wait()
        # untimed warm-up: on a VM, page cache in never-touched guest RAM costs several times
        # more to fill the first time; both sides then recycle the memory they free
        _rewrite(source, model)
        _checkpoints(experiment, 1)
        _copies(model, workdir, 1)
        _clean(workdir, landed_dir)
        results: dict[tuple[str, int], list[float]] = {}
        for count in (1, 5):
            progress(f"{count} × {fmt_bytes(size)}: {samples} samples per side")
            for i in range(samples * 2):
                _rewrite(source, model)
                settle()
                mine = (i % 4) in (1, 2)
                if mine:
                    elapsed, _ = _checkpoints(experiment, count)
                else:
                    elapsed = _copies(model, workdir, count)
                results.setdefault(("replicate" if mine else "cp", count), []).append(elapsed)
                _clean(workdir, landed_dir)
        experiment.stop()

    cp1, me1 = p50(results[("cp", 1)]), p50(results[("replicate", 1)])
    cp5, me5 = p50(results[("cp", 5)]), p50(results[("replicate", 5)])
    rows = [
        [
            f"1 × {fmt_bytes(size)} durable",
            fmt_s(me1),
            f"cp {fmt_s(cp1)}",
            fmt_x(ratio(me1, cp1)),
            f"≤ {TARGET_DURABLE}×",
            verdict(ratio(me1, cp1) <= TARGET_DURABLE),
        ],
        [
            f"5 × {fmt_bytes(size)} back to back",
            fmt_s(me5),
            f"5 × cp {fmt_s(cp5)}",
            fmt_x(ratio(me5, cp5)),
            "-",
            "-",
        ],
    ]
    print_table(
        "landing on disk", ["measure", "replicate", "baseline", "ratio", "target", ""], rows
    )
    note(f"p50 of {samples} samples per side, ABBA, os.sync() + rewrite before each sample.")
    record_summary(
        NAME,
        f"disk {fmt_bytes(size)} time to durable",
        fmt_s(me1),
        f"≤ {TARGET_DURABLE}× cp",
        ratio(me1, cp1) <= TARGET_DURABLE,
        f"cp {fmt_s(cp1)}: {fmt_x(ratio(me1, cp1))}",
    )
    if size == 256 * MiB:
        record_summary(
            NAME,
            "disk 5 × 256 MiB back to back",
            fmt_s(me5),
            f"< Keepsake {fmt_s(KEEPSAKE_5X256_ISSUE)} (issue 11)",
            me5 < KEEPSAKE_5X256_ISSUE,
            f"5 × cp {fmt_s(cp5)}",
        )
