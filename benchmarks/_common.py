"""Shared helpers: options, statistics, tables, temp projects, test data, subprocesses."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
#: Write granularity when (re)writing test files, like torch.save's buffered writes.
WRITE_CHUNK = 8 * MiB

#: Directory shared by the benchmarks of one `python -m benchmarks` run for test data files.
DATA_DIR_ENV = "REPLICATE_BENCH_DATA"
#: JSON-lines file the benchmarks append their headline results to (for the final summary).
SUMMARY_ENV = "REPLICATE_BENCH_SUMMARY"
#: JSON-lines file the benchmarks append plottable series to (for the results file and plots).
SERIES_ENV = "REPLICATE_BENCH_SERIES"


@dataclass(frozen=True)
class Options:
    """Command-line options every benchmark receives."""

    big: bool = False
    quick: bool = False
    metrics_n: int = 5000


# ---- statistics -------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def p50(values: Sequence[float]) -> float:
    return percentile(values, 50)


def p99(values: Sequence[float]) -> float:
    return percentile(values, 99)


def ratio(value: float, baseline: float) -> float:
    return value / baseline if baseline > 0 else math.inf


# ---- formatting -------------------------------------------------------------------------------


def fmt_s(seconds: float) -> str:
    """A duration with a unit that keeps 3 significant digits: µs, ms or s."""
    if math.isnan(seconds):
        return "n/a"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.3g} ms" if seconds < 0.1 else f"{seconds * 1e3:.0f} ms"
    return f"{seconds:.2f} s"


def fmt_x(value: float) -> str:
    """A ratio, e.g. ``1.07×``."""
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "inf"
    return f"{value:.2f}×" if value < 100 else f"{value:.0f}×"


def fmt_bytes(n: float) -> str:
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if abs(n) >= size:
            value = n / size
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n:.0f} B"


def fmt_rate(nbytes: float, seconds: float) -> str:
    return "n/a" if seconds <= 0 else f"{nbytes / MiB / seconds:.0f} MiB/s"


def verdict(ok: bool) -> str:
    return "meets" if ok else "MISSES"


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print an aligned plain-text table (first column left-aligned, the rest right-aligned)."""
    cells = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        parts = [
            row[i].ljust(widths[i]) if i == 0 else row[i].rjust(widths[i]) for i in range(len(row))
        ]
        return "  ".join(parts).rstrip()

    print()
    print(title)
    print(line(cells[0]))
    print("  ".join("-" * w for w in widths))
    for row in cells[1:]:
        print(line(row))
    sys.stdout.flush()


def note(text: str) -> None:
    """A line of explanation under a table."""
    print(f"  {text}")
    sys.stdout.flush()


_STARTED = time.perf_counter()


def progress(text: str) -> None:
    """Progress on stderr (with seconds since the benchmark started), so stdout stays the report."""
    print(f"  … [{time.perf_counter() - _STARTED:6.1f} s] {text}", file=sys.stderr, flush=True)


def record_summary(
    benchmark: str, metric: str, value: str, target: str, ok: bool | None, detail: str = ""
) -> None:
    """Append one headline result for the final summary table of the suite."""
    path = os.environ.get(SUMMARY_ENV)
    if not path:
        return
    entry = {
        "benchmark": benchmark,
        "metric": metric,
        "value": value,
        "target": target,
        "ok": ok,
        "detail": detail,
    }
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


def record_series(
    plot: str, line: str, points: Sequence[tuple[float, float]], *, x: str, y: str
) -> None:
    """Append one line of a plot: ``points`` (x, y) named ``line`` on the plot named ``plot``."""
    path = os.environ.get(SERIES_ENV)
    if not path:
        return
    entry = {"plot": plot, "line": line, "x": x, "y": y, "points": [list(p) for p in points]}
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


# ---- files and directories --------------------------------------------------------------------


def bench_root() -> Path:
    """Parent of every temp dir of this run: on the same filesystem as the data files."""
    data = os.environ.get(DATA_DIR_ENV)
    return Path(data).parent if data else Path(tempfile.gettempdir())


@contextlib.contextmanager
def temp_dir(prefix: str) -> Iterator[Path]:
    """A fresh directory, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=bench_root()))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def data_file(size: int) -> Path:
    """A file of ``size`` random (incompressible) bytes, written once per run and reused."""
    directory = Path(os.environ.get(DATA_DIR_ENV) or Path(tempfile.gettempdir()) / "rbench-data")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"random-{size}.bin"
    if path.exists() and path.stat().st_size == size:
        return path
    temp = path.with_suffix(f".{os.getpid()}.tmp")
    with open(temp, "wb") as f:
        remaining = size
        while remaining > 0:
            n = min(WRITE_CHUNK, remaining)
            f.write(os.urandom(n))
            remaining -= n
    os.replace(temp, path)
    return path


def rewrite(source: Path, dest: Path) -> None:
    """Write ``source``'s bytes to ``dest`` through a fresh open(..., "wb") like torch.save."""
    with open(source, "rb") as src, open(dest, "wb") as out:
        while chunk := src.read(WRITE_CHUNK):
            out.write(chunk)


def settle() -> None:
    """Flush dirty pages so writeback of earlier work doesn't land in the next measurement."""
    os.sync()


def thread_sched() -> tuple[float, float]:
    """This thread's seconds on a CPU, and runnable but waiting for one (Linux schedstat).

    Across a call, wall time minus both is time blocked (on I/O, a lock, the GIL). (0, 0)
    where schedstat is not available.
    """
    try:
        with open("/proc/thread-self/schedstat") as f:
            fields = f.read().split()
        return int(fields[0]) / 1e9, int(fields[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0, 0.0


def runqueue_seconds() -> float:
    """Seconds this thread has spent runnable but waiting for a CPU (see :func:`thread_sched`)."""
    return thread_sched()[1]


def timed(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> tuple[float, T]:
    """Wall time of one call, and its result."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


# ---- subprocesses -----------------------------------------------------------------------------


def python() -> str:
    return sys.executable


def venv_bin(name: str) -> str:
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else (shutil.which(name) or name)


def run_python(
    code: str,
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: float = 600,
) -> tuple[float, dict[str, Any]]:
    """Run ``code`` in a fresh interpreter; return its wall time and the JSON of its last line."""
    start = time.perf_counter()
    done = subprocess.run(
        [python(), "-c", code, *args],
        cwd=cwd,
        env=env if env is not None else dict(os.environ),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(
            f"benchmark subprocess failed ({done.returncode}):\n{done.stderr[-4000:]}"
        )
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    result: dict[str, Any] = json.loads(lines[-1]) if lines else {}
    return wall, result


def proc_status(field: str, pid: int | str = "self") -> int:
    """A ``VmRSS``/``VmHWM``-style field of /proc/<pid>/status, in bytes."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * KiB
    raise KeyError(field)


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux ≥ 4.0: write 5 to clear_refs); False if refused."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        return False
    return True
