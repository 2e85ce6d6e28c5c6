"""Where a metrics-only ``checkpoint()`` spends its time (evidence for the < 1 ms p50 target).

Measured in this process only, by wrapping library functions with timers (nothing is changed
on disk); a wrapped name that no longer exists is reported as n/a.

1. Per-call components in the training thread (validation, job dir mkdir, manifest JSON,
   write+fsync+rename, hand-off to the daemon, the rest), wall and thread CPU (kernel time in
   syscalls included), in three regimes: free-running (the worker commits in the background),
   serial (each checkpoint has landed before the next call, so the worker starts from idle;
   fewer calls, since a metrics-only commit may be deferred to coalesce), and free-running with
   a 0.5 ms GIL switch interval.
2. Worker side: CPU per checkpoint of the daemon thread and its helper threads, number of
   experiment-JSON writes (coalescing), time in ``encode_experiment`` on the loop, and how long
   the event loop was blocked (a 1 ms sleeper's oversleep).
3. ``encode_experiment`` alone against the number of checkpoints in the experiment, next to
   ``json.dumps`` without indent (CPython's C encoder is used only when ``indent is None``).
4. Floors, daemon idle: one round trip to the daemon loop, and three ways to make a ~600-byte
   manifest durable (benchmarks/_floors.py): new file per job in a growing directory (the
   spool's old shape), rename over one name, append + fdatasync to a log (the spool's
   journal).
5. cProfile of the training thread (cProfile sees only the thread that enables it), top entries
   by own time (a syscall's own time includes re-taking the GIL after it).
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import os
import pstats
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import replicate
import replicate.experiment
import replicate.repository
from benchmarks._common import (
    Options,
    fmt_s,
    fmt_x,
    note,
    p50,
    p99,
    print_table,
    progress,
    ratio,
    temp_dir,
)
from benchmarks._floors import Floors
from replicate.daemon import Daemon
from replicate.records import CheckpointRecord, ExperimentRecord, PrimaryMetric, encode_experiment

NAME = "metrics_profile"


# ---- timers wrapped around library functions --------------------------------------------------


@dataclass
class Probe:
    """Durations per component, recorded only for calls from the training (main) thread."""

    main: int = field(default_factory=threading.get_ident)
    times: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    cpu_times: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    loop_times: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    missing: list[str] = field(default_factory=list)
    _undo: list[tuple[Any, str, Any]] = field(default_factory=list)

    def wrap(self, owner: Any, attr: str | tuple[str, ...], name: str) -> None:
        """Time calls of ``owner.attr`` (the first of several names that exists)."""
        names = (attr,) if isinstance(attr, str) else attr
        attr = next((a for a in names if getattr(owner, a, None) is not None), names[0])
        original = getattr(owner, attr, None)
        if original is None:
            self.missing.append(name)
            return
        probe = self

        def timed_call(*args: Any, **kwargs: Any) -> Any:
            start, cpu = time.perf_counter(), time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                if threading.get_ident() == probe.main:
                    probe.times[name].append(elapsed)
                    probe.cpu_times[name].append(time.thread_time() - cpu)
                else:
                    probe.loop_times[name].append(elapsed)

        setattr(owner, attr, timed_call)
        self._undo.append((owner, attr, original))

    def wrap_async(self, owner: Any, attr: str, name: str) -> None:
        original = getattr(owner, attr, None)
        if original is None:
            self.missing.append(name)
            return
        probe = self

        async def timed_call(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return await original(*args, **kwargs)
            finally:
                probe.loop_times[name].append(time.perf_counter() - start)

        setattr(owner, attr, timed_call)
        self._undo.append((owner, attr, original))

    def restore(self) -> None:
        for owner, attr, original in reversed(self._undo):
            setattr(owner, attr, original)
        self._undo.clear()

    def reset(self) -> None:
        self.times.clear()
        self.cpu_times.clear()
        self.loop_times.clear()


def _install(probe: Probe) -> None:
    from replicate.daemon import jobs, spool

    probe.wrap(replicate.experiment, "validate_metrics", "validate metrics")
    probe.wrap(spool.Spool, ("new_job_dir", "staging_dir"), "job dir (ensure + mkdir)")
    probe.wrap(jobs.Job, "to_manifest", "manifest JSON")
    probe.wrap(spool.Spool, "commit", "commit (write+fsync+rename)")
    probe.wrap(Daemon, "submit", "hand-off to daemon (submit)")
    # worker side (run on the loop thread)
    probe.wrap(replicate.repository, "encode_experiment", "encode_experiment")
    probe.wrap_async(replicate.repository.Repository, "save_experiment", "save_experiment")


# ---- thread CPU and loop lag ------------------------------------------------------------------


def _thread_cpu() -> dict[str, float]:
    """CPU seconds per thread group, from /proc/self/task/<tid>/stat."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    ticks = os.sysconf("SC_CLK_TCK")
    groups: dict[str, float] = defaultdict(float)
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat", encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        name = names.get(int(tid), "other")
        if name == "MainThread":
            group = "training thread"
        elif name.startswith("replicate-daemon"):
            group = "daemon loop thread"
        elif name.startswith("AnyIO worker"):
            group = "anyio to_thread workers"
        elif name.startswith(("asyncio", "replicate-io", "ThreadPoolExecutor")):
            group = "loop executor (aiofiles)"
        else:
            group = "other threads"
        groups[group] += (int(fields[11]) + int(fields[12])) / ticks
    return dict(groups)


class LoopLag:
    """A task in the daemon's loop sleeping 1 ms at a time; oversleep = loop blocked."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.lags: list[float] = []
        self._stop = threading.Event()
        self._task: asyncio.Task[None] | None = None

    async def _probe(self) -> None:
        while not self._stop.is_set():
            start = time.perf_counter()
            await asyncio.sleep(0.001)
            self.lags.append(time.perf_counter() - start - 0.001)

    def start(self) -> None:
        async def begin() -> None:
            self._task = asyncio.get_running_loop().create_task(self._probe())

        self.daemon.call(begin)

    def stop(self) -> None:
        self._stop.set()
        time.sleep(0.01)

    def blocked(self, threshold: float = 0.002) -> float:
        return sum(lag for lag in self.lags if lag > threshold)


# ---- one regime -------------------------------------------------------------------------------


@dataclass
class Regime:
    name: str
    n: int
    wall: list[float]
    cpu: list[float]
    components: dict[str, list[float]]
    loop_components: dict[str, list[float]]
    thread_cpu: dict[str, float]
    lags: list[float]
    blocked: float
    loop_seconds: float
    component_cpu: dict[str, list[float]] = field(default_factory=dict)


def _metrics(i: int) -> dict[str, float]:
    return {"loss": 1.0 / (i + 1), "accuracy": 1.0 - 1.0 / (i + 2)}


@contextmanager
def _switch_interval(seconds: float | None) -> Iterator[None]:
    previous = sys.getswitchinterval()
    if seconds is not None:
        sys.setswitchinterval(seconds)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def _run_regime(
    name: str,
    n: int,
    probe: Probe,
    *,
    serial: bool = False,
    switch: float | None = None,
) -> Regime:
    progress(f"{name}: {n} metrics-only checkpoints")
    with temp_dir("rbench-mprof") as tmp:
        experiment = replicate.init(
            project_dir=tmp, repository=f"file://{tmp / 'repository'}", params={"regime": name}
        )
        experiment.wait()
        daemon = Daemon.get()
        lag = LoopLag(daemon)
        lag.start()
        probe.reset()
        before = _thread_cpu()
        wall: list[float] = []
        cpu: list[float] = []
        started = time.perf_counter()
        with _switch_interval(switch):
            for i in range(n):
                t0, c0 = time.perf_counter(), time.thread_time()
                checkpoint = experiment.checkpoint(
                    step=i, metrics=_metrics(i), primary_metric=("loss", "minimize"), quiet=True
                )
                cpu.append(time.thread_time() - c0)
                wall.append(time.perf_counter() - t0)
                if serial:
                    checkpoint.wait()
            experiment.wait()
        loop_seconds = time.perf_counter() - started
        progress(f"{name}: done in {loop_seconds:.1f} s")
        after = _thread_cpu()
        lag.stop()
        experiment.stop()
    return Regime(
        name,
        n,
        wall,
        cpu,
        {k: list(v) for k, v in probe.times.items()},
        {k: list(v) for k, v in probe.loop_times.items()},
        {k: after[k] - before.get(k, 0.0) for k in after},
        list(lag.lags),
        lag.blocked(),
        loop_seconds,
        {k: list(v) for k, v in probe.cpu_times.items()},
    )


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _components_table(regimes: list[Regime], probe: Probe) -> None:
    order = [
        "validate metrics",
        "job dir (ensure + mkdir)",
        "manifest JSON",
        "commit (write+fsync+rename)",
        "hand-off to daemon (submit)",
    ]
    header = ["component (training thread)"]
    for regime in regimes:
        header += [f"{regime.name}: p50", "CPU p50", "share"]
    rows = []
    for component in [*order, "rest of checkpoint()", "TOTAL"]:
        row: list[object] = [component]
        for regime in regimes:
            total_mean = _mean(regime.wall)
            if component == "TOTAL":
                row += [fmt_s(p50(regime.wall)), fmt_s(p50(regime.cpu)), "100%"]
                continue
            if component == "rest of checkpoint()":
                known = sum(
                    _mean(regime.components[c])
                    for c in order
                    if c != "manifest JSON" and regime.components.get(c)
                )
                row += ["", "", f"{(total_mean - known) / total_mean:.0%}"]
                continue
            values = regime.components.get(component, [])
            cpu = regime.component_cpu.get(component, [])
            if component == "commit (write+fsync+rename)" and values:
                manifest = regime.components.get("manifest JSON", [])
                manifest_cpu = regime.component_cpu.get("manifest JSON", [])
                if len(manifest) == len(values) and len(manifest_cpu) == len(cpu):
                    values = [c - m for c, m in zip(values, manifest, strict=True)]
                    cpu = [c - m for c, m in zip(cpu, manifest_cpu, strict=True)]
            if not values:
                row += ["n/a" if component in probe.missing else "not called", "", ""]
                continue
            share = _mean(values) / total_mean
            row += [fmt_s(p50(values)), fmt_s(p50(cpu)), f"{share:.0%}"]
        rows.append(row)
    print_table(
        "1. metrics-only checkpoint(): time per component in the training thread",
        header,
        rows,
    )
    note("p50 = wall; CPU = time.thread_time() of the training thread, kernel time included;")
    note("wall - CPU = waiting (disk, GIL, loop). share = mean of the component / mean total.")
    note("commit excludes the manifest JSON (shown separately); 'rest' = record, ids, lock, …")
    if probe.missing:
        note(f"not found in this library version (n/a): {', '.join(probe.missing)}")
    tail = []
    for regime in regimes:
        wait = [w - c for w, c in zip(regime.wall, regime.cpu, strict=True)]
        submit = regime.components.get("hand-off to daemon (submit)", [])
        tail.append(
            [
                regime.name,
                regime.n,
                fmt_s(p50(regime.wall)),
                fmt_s(p99(regime.wall)),
                fmt_s(max(regime.wall)),
                fmt_s(p50(wait)),
                fmt_s(p99(submit)) if submit else "n/a",
                fmt_s(max(submit)) if submit else "n/a",
                fmt_s(p99(regime.lags)) if regime.lags else "n/a",
                fmt_s(max(regime.lags)) if regime.lags else "n/a",
            ]
        )
    print_table(
        "   tails: where the p99 comes from",
        [
            "regime",
            "n",
            "p50",
            "p99",
            "max",
            "wait p50",
            "hand-off p99",
            "hand-off max",
            "loop lag p99",
            "loop lag max",
        ],
        tail,
    )
    note("hand-off = Daemon.submit(); if it tracks the loop lag, the training thread waits for the")
    note("loop thread (anyio's start_task_soon does; loop.call_soon_threadsafe does not).")


def _worker_table(regimes: list[Regime]) -> None:
    groups = [
        "training thread",
        "daemon loop thread",
        "anyio to_thread workers",
        "loop executor (aiofiles)",
        "other threads",
    ]
    rows = []
    for regime in regimes:
        row: list[object] = [regime.name]
        for group in groups:
            seconds = regime.thread_cpu.get(group, 0.0)
            row.append(f"{seconds / regime.n * 1e3:.2f} ms")
        saves = regime.loop_components.get("save_experiment", [])
        encodes = regime.loop_components.get("encode_experiment", [])
        row += [
            f"{len(saves)}" if saves else "n/a",
            fmt_s(_mean(encodes)) if encodes else "n/a",
            fmt_s(max(encodes)) if encodes else "n/a",
            fmt_s(sum(encodes)) if encodes else "n/a",
            fmt_s(p99(regime.lags)) if regime.lags else "n/a",
            fmt_s(max(regime.lags)) if regime.lags else "n/a",
            fmt_s(regime.blocked),
        ]
        rows.append(row)
    print_table(
        "2. worker side: CPU per checkpoint by thread, JSON commits, event-loop blocking",
        [
            "regime",
            "train CPU",
            "loop CPU",
            "to_thread",
            "aiofiles",
            "other",
            "JSON writes",
            "encode mean",
            "encode max",
            "encode total",
            "lag p99",
            "lag max",
            "loop blocked",
        ],
        rows,
    )
    note("CPU columns are per checkpoint (thread CPU / N, 10 ms tick resolution summed over N);")
    note("JSON writes = save_experiment calls for N checkpoints (N = no coalescing);")
    note("lag = oversleep of a 1 ms sleeper in the daemon loop; blocked = sum of lags > 2 ms;")
    note("encode_experiment runs on the loop thread and holds the GIL while it runs.")


def _encode_table(quick: bool) -> None:
    sizes = [100, 1000] if quick else [100, 1000, 5000, 10000]
    base = ExperimentRecord(
        id="0" * 64,
        created=datetime.now(UTC),
        params={"lr": 0.01, "epochs": 100},
        host="host",
        user="user",
        config={"repository": "file:///x", "storage": ""},
        command="train.py",
        path="",
        python_version="3.11.7",
        python_packages={f"package{i}": "1.0" for i in range(40)},
    )
    rows = []
    for n in sizes:
        checkpoints = [
            CheckpointRecord(
                id=f"{i:064x}",
                created=base.created + timedelta(seconds=i),
                metrics=_metrics(i),
                step=i,
                path="",
                primary_metric=PrimaryMetric("loss", "minimize"),
            )
            for i in range(n)
        ]
        record = base.with_checkpoints(checkpoints)
        repeats = max(3, 2000 // n)
        t_full = min(_time(partial(encode_experiment, record), repeats))
        t_dict = min(_time(record.to_dict, repeats))
        as_dict = record.to_dict()
        t_c = min(_time(partial(_c_encode, as_dict), repeats))
        size = len(encode_experiment(record))
        rows.append(
            [
                n,
                f"{size / 1024:.0f} KiB",
                fmt_s(t_full),
                fmt_s(t_dict),
                fmt_s(t_full - t_dict),
                fmt_s(t_c),
                fmt_x(ratio(t_full - t_dict, t_c)),
            ]
        )
    print_table(
        "3. encode_experiment cost against the experiment's size (runs on the daemon loop)",
        [
            "checkpoints",
            "JSON size",
            "encode_experiment",
            "to_dict part",
            "json indent=1",
            "json C (no indent)",
            "indent/C",
        ],
        rows,
    )
    note("every commit re-encodes the whole experiment: O(checkpoints) of pure-Python work;")
    note("json.dumps(indent=1) cannot use CPython's C encoder (it requires indent=None).")


def _c_encode(data: dict[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False).encode()


def _time(fn: Callable[[], object], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def _floors_table(n: int) -> None:
    daemon = Daemon.get()

    async def noop() -> None:
        return None

    round_trips = [_time(partial(daemon.call, noop), 1)[0] for _ in range(200)]
    with temp_dir("rbench-floor") as tmp:
        floors = Floors(tmp)
        shapes = {
            "new file per job + fsync + rename (the spool's old shape)": [
                floors.new_file() for _ in range(n)
            ],
            "temp file + fsync + rename over one name": [floors.rename_over() for _ in range(n)],
            "append to one log + fdatasync (the spool's journal)": [
                floors.append() for _ in range(n)
            ],
        }
        floors.close()
    rows: list[list[object]] = [
        [
            "daemon.call(no-op coroutine): one round trip",
            fmt_s(p50(round_trips)),
            fmt_s(p99(round_trips)),
            "",
        ]
    ]
    for label, samples in shapes.items():
        walls = [w for w, _ in samples]
        cpus = [c for _, c in samples]
        rows.append([label, fmt_s(p50(walls)), fmt_s(p99(walls)), fmt_s(p50(cpus))])
    print_table(
        f"4. floors, daemon idle ({n} manifests of 600 B per shape)",
        ["operation", "p50", "p99", "CPU p50"],
        rows,
    )
    note("CPU is kernel time for the disk shapes: a new inode + directory entry per job makes the")
    note("fsync's journal commit bigger than appending to one file.")


def _profile(n: int) -> None:
    progress(f"cProfile of {n} free-running checkpoints (training thread)")
    with temp_dir("rbench-mprof") as tmp:
        experiment = replicate.init(
            project_dir=tmp,
            repository=f"file://{tmp / 'repository'}",
            params={"regime": "cprofile"},
        )
        experiment.wait()
        profiler = cProfile.Profile()
        profiler.enable()
        for i in range(n):
            experiment.checkpoint(
                step=i, metrics=_metrics(i), primary_metric=("loss", "minimize"), quiet=True
            )
        profiler.disable()
        experiment.wait()
        experiment.stop()
    stats = pstats.Stats(profiler)
    entries: Any = stats.stats  # type: ignore[attr-defined]
    total = sum(tt for (_cc, _nc, tt, _ct, _callers) in entries.values())
    top = sorted(entries.items(), key=lambda item: item[1][2], reverse=True)[:14]
    rows = []
    for (filename, line, function), (_cc, ncalls, tottime, cumtime, _callers) in top:
        where = (
            f"{Path(filename).parent.name}/{Path(filename).name}:{line}"
            if filename != "~"
            else "builtin"
        )
        rows.append(
            [
                f"{function} ({where})"[:78],
                ncalls,
                fmt_s(tottime / n),
                f"{tottime / total:.0%}",
                fmt_s(cumtime / n),
            ]
        )
    print_table(
        f"5. cProfile of the training thread, {n} free-running metrics-only checkpoints "
        "(per checkpoint, profiler overhead included)",
        ["function (own time)", "calls", "own/ckpt", "share", "cum/ckpt"],
        rows,
    )
    note("own time of a builtin that releases the GIL (open, fsync, …) includes taking the GIL")
    note("back; lock.acquire own time = the training thread waiting on another thread.")


def run(options: Options) -> None:
    n = 300 if options.quick else 1500
    probe = Probe()
    _install(probe)
    try:
        regimes = [
            _run_regime("free", n, probe),
            _run_regime("serial", min(n, 150), probe, serial=True),
            _run_regime("free, switch 0.5 ms", n, probe, switch=0.0005),
        ]
    finally:
        probe.restore()
    progress("tables")
    _components_table(regimes, probe)
    _worker_table(regimes)
    progress("encode_experiment sizes")
    _encode_table(options.quick)
    progress("floors")
    _floors_table(300 if options.quick else 1000)
    _profile(300 if options.quick else 1000)
    free, serial = regimes[0], regimes[1]
    note("")
    note(
        f"free-running p50 {fmt_s(p50(free.wall))} with {fmt_s(p50(free.cpu))} of training-thread "
        f"CPU; serial p50 {fmt_s(p50(serial.wall))}; free/serial "
        f"{fmt_x(ratio(p50(free.wall), p50(serial.wall)))}"
    )
