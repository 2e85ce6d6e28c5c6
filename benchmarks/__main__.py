"""``python -m benchmarks [name ...] [--big] [--quick]``: run benchmarks, print tables.

Each benchmark runs in a subprocess of its own (clean daemon, clean peak RSS, a crash in one
does not stop the others); they share one temp dir of random test data for the run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import BENCHMARKS, ON_REQUEST
from benchmarks._common import DATA_DIR_ENV, SERIES_ENV, SUMMARY_ENV, Options, fmt_s, print_table
from benchmarks._plots import draw

ROOT = Path(__file__).resolve().parent.parent


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure replicate against its targets, as ratios to same-run baselines.",
    )
    parser.add_argument(
        "names",
        nargs="*",
        metavar="name",
        help=f"benchmarks to run (default: all): {', '.join(BENCHMARKS)}",
    )
    parser.add_argument("--big", action="store_true", help="add the 1 GiB / 2 GiB sizes")
    parser.add_argument(
        "--quick", action="store_true", help="fewer samples and smaller sizes (a smoke run)"
    )
    parser.add_argument(
        "--metrics-n",
        type=int,
        default=5000,
        help="metrics-only checkpoints in metrics_only (default 5000)",
    )
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument(
        "--inline", action="store_true", help="run in this process (for profiling one benchmark)"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser


def _options(args: argparse.Namespace) -> Options:
    return Options(big=args.big, quick=args.quick, metrics_n=args.metrics_n)


def _run_inline(name: str, options: Options) -> None:
    module = importlib.import_module(f"benchmarks.{name}")
    module.run(options)


def _git(*args: str) -> str:
    try:
        done = subprocess.run(
            ["git", *args], capture_output=True, text=True, check=False, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return done.stdout.strip() or "?"


def _header(options: Options, names: list[str]) -> None:
    dirty = _git("status", "--porcelain", "--untracked-files=no", "--", "replicate")
    print("replicate benchmarks")
    print(f"  when     {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    print(f"  machine  {platform.machine()}, {os.cpu_count()} cores, Linux {platform.release()}")
    print(f"  python   {platform.python_version()} ({sys.executable})")
    print(
        f"  library  commit {_git('rev-parse', '--short', 'HEAD')}"
        + (" + uncommitted changes in replicate/" if dirty not in ("", "?") else "")
    )
    print(f"  load     {' '.join(f'{x:.2f}' for x in os.getloadavg())} (1, 5, 15 min averages)")
    print(f"  options  big={options.big} quick={options.quick} metrics_n={options.metrics_n}")
    print(f"  running  {', '.join(names)}")
    sys.stdout.flush()


def _summary(path: Path) -> None:
    if not path.exists():
        return
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        ok = entry["ok"]
        rows.append(
            [
                entry["benchmark"],
                entry["metric"],
                entry["value"],
                entry["target"],
                "-" if ok is None else ("meets" if ok else "MISSES"),
                entry.get("detail", ""),
            ]
        )
    if rows:
        print_table(
            "SUMMARY against the performance targets",
            ["benchmark", "measure", "value", "target", "verdict", "baseline / note"],
            rows,
        )


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _save_results(
    summary: Path, series_path: Path, options: Options, names: list[str], *, full: bool
) -> list[Path]:
    """Write ``benchmarks/results/<date>.json`` and its PNG plots; return the files written."""
    rows, series = _read_jsonl(summary), _read_jsonl(series_path)
    if not rows and not series:
        return []
    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    # a run of named benchmarks does not overwrite the day's full run
    stem = time.strftime("%Y-%m-%d") + ("" if full else "-" + "-".join(names)[:60])
    out = results / f"{stem}.json"
    run = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Linux {platform.release()}",
        "load_average_at_start": _LOAD_AT_START,
        "load_average_at_end": os.getloadavg(),
        "options": {"big": options.big, "quick": options.quick, "metrics_n": options.metrics_n},
        "benchmarks": names,
        "rows": rows,
        "series": series,
    }
    out.write_text(json.dumps(run, indent=2) + "\n", encoding="utf-8")
    return [out, *draw(series, results, stem)]


_LOAD_AT_START = os.getloadavg()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    options = _options(args)
    if args.list:
        for name, description in BENCHMARKS.items():
            print(f"{name:22} {description}")
        return 0
    if args.child:
        _run_inline(args.child, options)
        return 0
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
        return 2
    names = args.names or [n for n in BENCHMARKS if n not in ON_REQUEST]
    if args.inline:
        for name in names:
            _run_inline(name, options)
        return 0

    _header(options, names)
    run_dir = Path(tempfile.mkdtemp(prefix="rbench-run-"))
    summary = run_dir / "summary.jsonl"
    env = {
        **os.environ,
        DATA_DIR_ENV: str(run_dir / "data"),
        SUMMARY_ENV: str(summary),
        SERIES_ENV: str(run_dir / "series.jsonl"),
        "PYTHONUNBUFFERED": "1",
        # `-m benchmarks` must resolve from any cwd: the package is not installed.
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    flags = ["--metrics-n", str(options.metrics_n)]
    flags += ["--big"] if options.big else []
    flags += ["--quick"] if options.quick else []
    failed: list[str] = []
    timings = []
    try:
        for name in names:
            print(f"\n=== {name}: {BENCHMARKS[name]}")
            sys.stdout.flush()
            start = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "benchmarks", "--child", name, *flags],
                env=env,
                check=False,
            )
            elapsed = time.perf_counter() - start
            timings.append([name, fmt_s(elapsed), "ok" if done.returncode == 0 else "FAILED"])
            if done.returncode != 0:
                failed.append(name)
                print(f"!!! {name} failed with exit status {done.returncode}")
        _summary(summary)
        saved = _save_results(
            summary, run_dir / "series.jsonl", options, names, full=not args.names
        )
        for path in saved:
            print(f"  written: {path.relative_to(ROOT)}")
        print_table("Benchmark run times", ["benchmark", "wall", "status"], timings)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
