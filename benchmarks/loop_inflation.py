"""Training-loop inflation: how much a loop that checkpoints 256 MiB every ~2 s slows.

A fixed amount of training work (iterations calibrated once, at the start, to ~2 s per chunk)
runs in chunks; before each chunk the loop saves its model file (a fresh rewrite of 256 MiB of
random bytes, like ``torch.save``). The replicate side then calls ``checkpoint(path=...)``
(file:// repository on the same filesystem), so every upload overlaps the next chunk of work.
The baseline does the same loop, save included, without the ``checkpoint()`` call.

Two loops, each ABBA-interleaved (baseline, replicate, replicate, baseline, ...):

- a CPU-bound pure-Python loop that holds the GIL. Target: slows by ≤ 10 %;
- a numpy matmul loop that releases the GIL, OpenBLAS pinned to 1 thread (the loop owns one
  core, as a training thread feeding a GPU would; on this 2-core machine a BLAS using every
  core leaves no core for any background work at all). Target: slows by ≤ 3 %.

The timed region is the loop itself: saves, work and the ``checkpoint()`` calls (the user's
loop pays their blocking time); that blocking part is also shown on its own, so the rest of
the slowdown is what the background upload costs the loop. Before each sample ``os.sync()``;
after it ``experiment.wait()`` (the upload's tail, shown but not timed) and the landed tarballs
are deleted, so both sides start from the same state.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import replicate
from benchmarks._common import (
    MiB,
    Options,
    data_file,
    fmt_bytes,
    fmt_s,
    note,
    p50,
    print_table,
    progress,
    record_summary,
    rewrite,
    settle,
    temp_dir,
    thread_sched,
    timed,
)

NAME = "loop_inflation"
GIL_TARGET = 0.10
NUMPY_TARGET = 0.03
MATRIX = 256  # numpy loop: 256 × 256 float64 matmuls (~1-2 ms each on one core)
BLAS_THREADS = "1"

Work = Callable[[int], object]


@dataclass(frozen=True)
class Plan:
    size: int
    chunk_seconds: float  # work between two checkpoints
    chunks: int  # checkpoints per sample
    samples: int  # per side


def _plan(options: Options) -> Plan:
    if options.quick:
        return Plan(size=32 * MiB, chunk_seconds=0.5, chunks=3, samples=2)
    return Plan(size=256 * MiB, chunk_seconds=2.0, chunks=3, samples=3)


@dataclass
class Side:
    """Per-sample seconds of one side: whole loop, and its save / checkpoint() / work parts."""

    total: list[float] = field(default_factory=list)
    save: list[float] = field(default_factory=list)
    blocking: list[float] = field(default_factory=list)
    work: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    tail: list[float] = field(default_factory=list)
    #: of the work chunks: the loop thread runnable without a core; blocked (GIL, I/O)
    queued: list[float] = field(default_factory=list)
    blocked: list[float] = field(default_factory=list)


@dataclass
class Result:
    label: str
    target: float
    iterations: int
    base: Side
    mine: Side


# ---- the two kinds of training work -----------------------------------------------------------


def python_work(iterations: int) -> object:
    """Pure-Python arithmetic and small objects: holds the GIL throughout."""
    total = 0
    values: list[int] = []
    for i in range(iterations):
        total += (i * i) % 7
        values.append(total)
        if len(values) > 64:
            values.clear()
    return total


def _numpy_work() -> Work | str:
    """A matmul loop (releases the GIL inside BLAS), or why numpy is unavailable."""
    if "numpy" in sys.modules:
        blas = "already imported: BLAS thread count not pinned"
    else:
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = BLAS_THREADS
        blas = ""
    try:
        import numpy as np
    except ImportError as exc:
        return f"import numpy failed ({exc})"
    if blas:
        note(f"numpy {blas}")
    rng = np.random.default_rng(0)
    a = rng.random((MATRIX, MATRIX))
    b = rng.random((MATRIX, MATRIX))
    out = np.empty((MATRIX, MATRIX))

    def work(iterations: int) -> object:
        for _ in range(iterations):
            np.matmul(a, b, out=out)
        return out

    return work


def calibrate(work: Work, seconds: float) -> int:
    """Iterations of ``work`` that take about ``seconds`` on this machine, now."""
    n = 1000
    work(n)  # warm-up
    while (elapsed := timed(work, n)[0]) < 0.25:
        n = n * 2 if elapsed < 0.05 else round(n * 0.3 / elapsed)
    best = min(elapsed, *(timed(work, n)[0] for _ in range(2)))
    return max(1, round(n * seconds / best))


# ---- measurement ------------------------------------------------------------------------------


def _sample(
    side: Side,
    work: Work,
    iterations: int,
    plan: Plan,
    source: Path,
    target: Path,
    experiment: replicate.Experiment | None,
    repository: Path,
    step: int,
) -> None:
    settle()
    save = blocking = working = on_cpu = queued = 0.0
    landed: list[str] = []
    cpu0 = time.process_time()
    start = time.perf_counter()
    for k in range(plan.chunks):
        t0 = time.perf_counter()
        rewrite(source, target)
        t1 = time.perf_counter()
        if experiment is not None:
            checkpoint = experiment.checkpoint(path=target.name, step=step + k, quiet=True)
            landed.append(checkpoint.id)
        sched = thread_sched()
        t2 = time.perf_counter()
        work(iterations)
        t3 = time.perf_counter()
        after = thread_sched()
        on_cpu += after[0] - sched[0]
        queued += after[1] - sched[1]
        save += t1 - t0
        blocking += t2 - t1
        working += t3 - t2
    side.total.append(time.perf_counter() - start)
    side.cpu.append(time.process_time() - cpu0)
    side.save.append(save)
    side.blocking.append(blocking)
    side.work.append(working)
    side.queued.append(queued)
    side.blocked.append(max(0.0, working - on_cpu - queued))
    if experiment is not None:
        elapsed, _ = timed(experiment.wait)
        side.tail.append(elapsed)
        for checkpoint_id in landed:
            (repository / "checkpoints" / f"{checkpoint_id}.tar.gz").unlink(missing_ok=True)


def _measure(
    label: str,
    target_ratio: float,
    work: Work,
    plan: Plan,
    source: Path,
    project: Path,
    experiment: replicate.Experiment,
    repository: Path,
    first_step: int,
) -> Result:
    iterations = calibrate(work, plan.chunk_seconds)
    progress(
        f"{label}: {iterations} iterations per {plan.chunk_seconds:g} s chunk, "
        f"{plan.chunks} chunks per sample, {plan.samples} samples per side"
    )
    base, mine = Side(), Side()
    for i in range(plan.samples * 2):
        replicate_turn = (i % 4) in (1, 2)  # ABBA
        _sample(
            mine if replicate_turn else base,
            work,
            iterations,
            plan,
            source,
            project / "model.pth",
            experiment if replicate_turn else None,
            repository,
            first_step + i * plan.chunks,
        )
    return Result(label, target_ratio, iterations, base, mine)


def _pct(value: float) -> str:
    return f"{value * 100:+.1f} %"


def _slowdown(result: Result) -> float:
    return p50(result.mine.total) / p50(result.base.total) - 1


def _row(result: Result) -> list[object]:
    base, mine = result.base, result.mine
    b_total = p50(base.total)
    slowdown = _slowdown(result)
    blocking_share = p50(mine.blocking) / b_total
    return [
        result.label,
        len(mine.total),
        fmt_s(b_total),
        fmt_s(p50(mine.total)),
        _pct(slowdown),
        f"{fmt_s(p50(mine.blocking))} ({_pct(blocking_share)})",
        _pct(slowdown - blocking_share),
        _pct(p50(mine.work) / p50(base.work) - 1),
        f"{fmt_s(p50(base.save))} / {fmt_s(p50(mine.save))}",
        f"{p50(base.cpu):.2f} / {p50(mine.cpu):.2f} s",
        fmt_s(p50(mine.tail)),
        f"≤ {result.target * 100:.0f} %",
        "meets" if slowdown <= result.target else "MISSES",
    ]


def _where_it_went(result: Result, chunks: int) -> str:
    """Where the work chunks' extra time went, and what the background cost in CPU."""
    base, mine = result.base, result.mine
    background = (p50(mine.cpu) - p50(base.cpu)) / chunks
    return (
        f"{result.label}: work chunks per sample b / r: waiting for a CPU "
        f"{fmt_s(p50(base.queued))} / {fmt_s(p50(mine.queued))}, blocked (GIL, I/O) "
        f"{fmt_s(p50(base.blocked))} / {fmt_s(p50(mine.blocked))}; process CPU added per "
        f"checkpoint {fmt_s(background)} (schedstat of the loop thread)"
    )


def run(options: Options) -> None:
    plan = _plan(options)
    source = data_file(plan.size)
    results: list[Result] = []
    skipped = ""
    with temp_dir("rbench-inflation") as tmp:
        project, repository = tmp / "project", tmp / "repository"
        project.mkdir()
        experiment = replicate.init(
            project_dir=project, repository=f"file://{repository}", params={"benchmark": NAME}
        )
        experiment.wait()
        results.append(
            _measure(
                "pure Python (holds GIL)",
                GIL_TARGET,
                python_work,
                plan,
                source,
                project,
                experiment,
                repository,
                0,
            )
        )
        numpy_work = _numpy_work()
        if isinstance(numpy_work, str):
            skipped = numpy_work
            progress(f"numpy loop skipped: {skipped}")
        else:
            results.append(
                _measure(
                    f"numpy matmul (releases GIL, {BLAS_THREADS} BLAS thread)",
                    NUMPY_TARGET,
                    numpy_work,
                    plan,
                    source,
                    project,
                    experiment,
                    repository,
                    100_000,
                )
            )
        experiment.stop()

    print_table(
        f"training-loop inflation: {plan.chunks} × (save {fmt_bytes(plan.size)}, checkpoint(), "
        f"~{plan.chunk_seconds:g} s of work) vs the same loop without checkpoint()",
        [
            "loop",
            "n",
            "baseline",
            "replicate",
            "slowdown",
            "of it checkpoint()",
            "rest",
            "work only",
            "save b / r",
            "CPU b / r",
            "upload tail",
            "target",
            "verdict",
        ],
        [_row(result) for result in results],
    )
    note("p50 of n samples per side, ABBA-interleaved, os.sync() before each sample.")
    note("baseline / replicate = wall time of the whole loop (saves + work + checkpoint() calls);")
    note("slowdown = replicate / baseline - 1; 'of it checkpoint()' = the calls' blocking time")
    note("(share of the baseline); rest = slowdown minus that: the background upload's cost;")
    note("work only = inflation of the work chunks alone; CPU = process CPU seconds per sample;")
    note("upload tail = experiment.wait() after the loop (not timed: the last upload's remainder).")
    for result in results:
        note(
            f"{result.label}: {result.iterations} iterations per chunk; samples in ABBA order: "
            "baseline "
            + " ".join(fmt_s(t) for t in result.base.total)
            + "; replicate "
            + " ".join(fmt_s(t) for t in result.mine.total)
        )
    for result in results:
        note(_where_it_went(result, plan.chunks))
    if skipped:
        note(f"numpy loop skipped: {skipped}")

    for result in results:
        slowdown = _slowdown(result)
        record_summary(
            NAME,
            f"{result.label}, {fmt_bytes(plan.size)} every ~{plan.chunk_seconds:g} s",
            _pct(slowdown),
            f"≤ {result.target * 100:.0f} % slower",
            slowdown <= result.target,
            f"loop {fmt_s(p50(result.base.total))} -> {fmt_s(p50(result.mine.total))}, "
            f"checkpoint() {fmt_s(p50(result.mine.blocking))}",
        )
    if skipped:
        record_summary(
            NAME, "numpy matmul (releases GIL)", "skipped", "≤ 3 % slower", None, skipped
        )
