"""``replicate.init(path=".", params=...)`` time in a fresh interpreter.

Each run is a new ``python -c`` process in the project directory; perf_counter around the
``init`` call alone (the import is measured and shown separately), then ``stop()`` (the code
upload finishes). The page cache is warm (the same project is used for every run).

- small project (a training script, a package of a few modules, a config): target < 150 ms.
- 10,000 files of 4 KiB in 100 directories: target < 0.5 s blocking. Baseline: ``cp -r`` of
  the same tree in the same run (the floor of a snapshot that copies every file).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from benchmarks._common import (
    KiB,
    Options,
    fmt_s,
    fmt_x,
    note,
    p50,
    print_table,
    progress,
    ratio,
    record_summary,
    run_python,
    settle,
    temp_dir,
    verdict,
)
from benchmarks._seaweed import seaweed

NAME = "init"
SMALL_TARGET = 0.150
MANY_TARGET = 0.5

_CHILD = """
import json, sys, time
t0 = time.perf_counter()
import replicate
t1 = time.perf_counter()
experiment = replicate.init(
    path=".",
    params={"learning_rate": 0.01, "num_epochs": 100, "layers": [512, 256, 10], "optimizer": "adam"},
    repository=sys.argv[1],
)
t2 = time.perf_counter()
experiment.stop()
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "init": t2 - t1, "stop": t3 - t2}))
"""


def _small_project(root: Path) -> None:
    (root / "train.py").write_text("import model\n" + "# training loop\n" * 200)
    (root / "model").mkdir()
    for name in ("__init__", "layers", "data", "utils", "losses"):
        (root / "model" / f"{name}.py").write_text(f"# {name}\n" + "x = 1\n" * 300)
    (root / "requirements.txt").write_text("torch\nnumpy\n")
    (root / "README.md").write_text("# project\n" * 20)
    (root / "config.json").write_text('{"lr": 0.01}\n')


def _many_files(root: Path, count: int, size: int) -> None:
    body = os.urandom(size)
    per_dir = 100
    for d in range(count // per_dir):
        directory = root / "data" / f"shard{d:03d}"
        directory.mkdir(parents=True)
        for f in range(per_dir):
            (directory / f"item{f:03d}.bin").write_bytes(body)
    (root / "train.py").write_text("print('train')\n")


def _runs(
    project: Path, repository: str, runs: int, env: dict[str, str] | None = None
) -> list[dict[str, float]]:
    results = []
    for _ in range(runs):
        settle()
        wall, result = run_python(_CHILD, repository, cwd=project, env=env)
        result["process"] = wall
        results.append(result)
    return results


def _cp_r(project: Path, dest: Path) -> float:
    target = dest / "copy"
    settle()
    start = time.perf_counter()
    subprocess.run(["cp", "-r", str(project), str(target)], check=True)
    elapsed = time.perf_counter() - start
    subprocess.run(["rm", "-rf", str(target)], check=True)
    return elapsed


def _tar(project: Path, dest: Path) -> float:
    target = dest / "code.tar"
    settle()
    start = time.perf_counter()
    subprocess.run(["tar", "-cf", str(target), "-C", str(project), "."], check=True)
    elapsed = time.perf_counter() - start
    target.unlink()
    return elapsed


def run(options: Options) -> None:
    small_runs = 3 if options.quick else 7
    many_runs = 2 if options.quick else 3
    count = 2000 if options.quick else 10_000
    size = 4 * KiB
    rows = []
    with temp_dir("rbench-init") as tmp:
        small, many, copies = tmp / "small", tmp / "many", tmp / "copies"
        for d in (small, many, copies):
            d.mkdir()
        _small_project(small)
        _many_files(many, count, size)
        repository = f"file://{tmp / 'repository'}"

        progress(f"small project: {small_runs} cold runs")
        small_results = _runs(small, repository, small_runs)
        with seaweed("bench") as server:
            progress(f"small project, S3 (SeaweedFS): {small_runs} cold runs")
            s3_results = _runs(small, "s3://bench/init", small_runs, server.env())
        progress(f"{count} files of 4 KiB: {many_runs} cold runs, and cp -r of the same tree")
        many_results = []
        cp_times = []
        tar_times = []
        for _ in range(many_runs):  # interleaved with the baselines
            many_results += _runs(many, repository, 1)
            cp_times.append(_cp_r(many, copies))
            tar_times.append(_tar(many, copies))

    def add_row(label: str, results: list[dict[str, float]], target: float, base: str) -> float:
        init50 = p50([r["init"] for r in results])
        rows.append(
            [
                label,
                len(results),
                fmt_s(init50),
                fmt_s(min(r["init"] for r in results)),
                fmt_s(max(r["init"] for r in results)),
                fmt_s(p50([r["import"] for r in results])),
                fmt_s(p50([r["stop"] for r in results])),
                fmt_s(p50([r["process"] for r in results])),
                f"< {fmt_s(target)}",
                fmt_x(ratio(init50, target)),
                base,
                verdict(init50 < target),
            ]
        )
        return init50

    add_row("small project (8 files)", small_results, SMALL_TARGET, "")
    add_row("small project, S3", s3_results, SMALL_TARGET, "")
    cp50 = p50(cp_times)
    many50 = add_row(
        f"{count:,} files of 4 KiB",
        many_results,
        MANY_TARGET,
        f"{fmt_x(ratio(p50([r['init'] for r in many_results]), cp50))} of cp -r {fmt_s(cp50)}",
    )
    print_table(
        "replicate.init(path='.', params=...) in a fresh process (file:// unless it says S3)",
        [
            "project",
            "n",
            "init p50",
            "min",
            "max",
            "import",
            "stop()",
            "process",
            "target",
            "vs target",
            "vs baseline",
            "verdict",
        ],
        rows,
    )
    note("init = perf_counter around replicate.init() only; import = `import replicate` before it;")
    note("stop() = waiting for the code tarball to land; process = the subprocess's wall time.")
    tar50 = p50(tar_times)
    note(
        f"baselines for {count:,} files, same run, interleaved: cp -r {fmt_s(cp50)} (a copy per "
        f"file, like the snapshot), tar -cf into one file {fmt_s(tar50)} "
        f"(init = {fmt_x(ratio(many50, tar50))} of tar)"
    )
    note("file creation cost on this VM varies a lot with filesystem state and other I/O: read")
    note("the ratios; a snapshot that creates one file per project file pays cp -r's price.")
    for where, results in (("disk", small_results), ("S3", s3_results)):
        top = max(r["init"] for r in results)  # p99 of a handful of runs: the slowest
        record_summary(
            NAME,
            f"init() small project, {where}, p50 / max",
            f"{fmt_s(p50([r['init'] for r in results]))} / {fmt_s(top)}",
            "< 150 ms p99",
            top < SMALL_TARGET,
            f"import replicate before it: {fmt_s(p50([r['import'] for r in results]))}",
        )
    record_summary(
        NAME,
        f"init() {count:,} files x 4 KiB p50",
        fmt_s(many50),
        "< 0.5 s",
        many50 < MANY_TARGET,
        f"cp -r {fmt_s(cp50)}: {fmt_x(ratio(many50, cp50))}",
    )
