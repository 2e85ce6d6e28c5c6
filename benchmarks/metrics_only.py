"""Latency of metrics-only ``checkpoint(metrics=..., quiet=True)`` over checkpoints 1..N.

Target: < 1 ms p50, flat from the first checkpoint to the last (the experiment JSON
grows with every checkpoint; it must not cost the training loop more as it grows).

Baselines (benchmarks/_floors.py), two ways to make a ~600-byte manifest durable:
- the floor, and the spool's own shape: append it to an open journal + fdatasync;
- a new file per job (write, fsync, rename into a growing directory), the shape the spool
  had before its journal, for comparison.
Each is measured with the daemon idle (before and after the run) and interleaved (every 10th
call, alternating) while the worker commits the run's checkpoints. Ratios are against the idle
floor.
"""

from __future__ import annotations

import json
import time

import replicate
from benchmarks._common import (
    Options,
    fmt_bytes,
    fmt_s,
    fmt_x,
    note,
    p50,
    p99,
    print_table,
    progress,
    ratio,
    record_series,
    record_summary,
    temp_dir,
    verdict,
)
from benchmarks._floors import Floors

NAME = "metrics_only"
TARGET_P50 = 0.001
#: Our reading of "flat": the last 100 calls' p50 at most this multiple of the first 100's.
FLAT = 1.25
BASELINE_EVERY = 10


def _metrics(i: int) -> dict[str, float]:
    return {"loss": 1.0 / (i + 1), "accuracy": 1.0 - 1.0 / (i + 2)}


def run(options: Options) -> None:
    n = 500 if options.quick else options.metrics_n
    with temp_dir("rbench-metrics") as tmp:
        project, repository = tmp / "project", tmp / "repository"
        project.mkdir()
        floors = Floors(tmp / "floors")
        experiment = replicate.init(
            project_dir=project, repository=f"file://{repository}", params={"benchmark": NAME}
        )
        experiment.wait()
        idle_append = [floors.append()[0] for _ in range(150)]
        idle_files = [floors.new_file()[0] for _ in range(150)]

        progress(f"{n} metrics-only checkpoints")
        latencies: list[float] = []
        busy_append: list[float] = []
        busy_files: list[float] = []
        run_start = time.perf_counter()
        for i in range(n):
            start = time.perf_counter()
            experiment.checkpoint(
                step=i, metrics=_metrics(i), primary_metric=("loss", "minimize"), quiet=True
            )
            latencies.append(time.perf_counter() - start)
            if i % BASELINE_EVERY == BASELINE_EVERY - 1:
                if (i // BASELINE_EVERY) % 2:
                    busy_files.append(floors.new_file()[0])
                else:
                    busy_append.append(floors.append()[0])
        loop_time = time.perf_counter() - run_start
        drain_start = time.perf_counter()
        experiment.wait()
        drain = time.perf_counter() - drain_start
        experiment.stop()
        idle_append += [floors.append()[0] for _ in range(150)]
        idle_files += [floors.new_file()[0] for _ in range(150)]
        floors.close()
        json_path = repository / "metadata" / "experiments" / f"{experiment.id}.json"
        committed = len(json.loads(json_path.read_bytes())["checkpoints"])
        json_size = json_path.stat().st_size

    bucket = max(1, n // 50)  # p50 of each 50th of the run, against the checkpoint number
    record_series(
        "metrics-only latency vs checkpoint number",
        "checkpoint(metrics=...) p50",
        [(i + bucket, p50(latencies[i : i + bucket])) for i in range(0, n, bucket)],
        x="checkpoint number",
        y="seconds",
    )
    record_series(
        "metrics-only latency vs checkpoint number",
        "journal append + fdatasync (floor, idle)",
        [(1, p50(idle_append)), (n, p50(idle_append))],
        x="checkpoint number",
        y="seconds",
    )
    first, last = latencies[:100], latencies[-100:]
    f50, l50 = p50(first), p50(last)
    all50, all99 = p50(latencies), p99(latencies)
    i50 = p50(idle_append)

    def row(label: str, values: list[float], extra: str = "") -> list[object]:
        return [
            label,
            fmt_s(p50(values)),
            fmt_s(p99(values)),
            fmt_s(sum(values) / len(values)),
            fmt_x(ratio(p50(values), i50)),
            extra,
        ]

    flat_ratio = ratio(l50, f50)
    rows = [
        row("checkpoints 1-100", first),
        row(f"checkpoints {n - 99}-{n}", last, f"last/first p50 {fmt_x(flat_ratio)}"),
    ]
    window = max(100, n // 5)
    window_p50s = []
    for begin in range(0, n, window):
        chunk = latencies[begin : begin + window]
        window_p50s.append(p50(chunk))
        rows.append(row(f"checkpoints {begin + 1}-{begin + len(chunk)}", chunk))
    worst_ratio = ratio(max([*window_p50s, l50]), f50)
    rows.append(row(f"all {n}", latencies, f"max {fmt_s(max(latencies))}"))
    rows.append(row("floor: append + fdatasync, idle", idle_append, "baseline"))
    rows.append(row("floor: same, interleaved in the run", busy_append, "worker busy"))
    rows.append(row("new file + fsync + rename, idle", idle_files, "old spool shape"))
    rows.append(row("same, interleaved in the run", busy_files, "worker busy"))
    print_table(
        f"metrics-only checkpoint() latency over {n} checkpoints (file:// repository)",
        ["calls", "p50", "p99", "mean", "p50 vs floor", "note"],
        rows,
    )
    p50_ok = all50 < TARGET_P50
    flat_ok = worst_ratio <= FLAT
    note(
        f"target: p50 < 1 ms → {verdict(p50_ok)} ({fmt_s(all50)}); flat (every window's p50 and "
        f"the last 100's ≤ {FLAT}× the first 100's) → {verdict(flat_ok)} (worst "
        f"{fmt_x(worst_ratio)})"
    )
    note(
        f"loop {fmt_s(loop_time)} ({n / loop_time:.0f} checkpoints/s); the worker needed "
        f"{fmt_s(drain)} more to commit the rest; final JSON: {committed} checkpoints, "
        f"{fmt_bytes(json_size)}"
    )
    record_summary(
        NAME,
        f"metrics-only p50 over {n}",
        fmt_s(all50),
        "< 1 ms",
        p50_ok,
        f"floor (append+fdatasync) {fmt_s(i50)}: {fmt_x(ratio(all50, i50))}; "
        f"new-file shape {fmt_s(p50(idle_files))}; p99 {fmt_s(all99)}",
    )
    record_summary(
        NAME,
        "flatness: p50 last 100 / first 100",
        f"{fmt_s(l50)} / {fmt_s(f50)}",
        f"flat (≤ {FLAT}×)",
        flat_ok,
        f"last/first {fmt_x(flat_ratio)}, worst window/first {fmt_x(worst_ratio)}",
    )
