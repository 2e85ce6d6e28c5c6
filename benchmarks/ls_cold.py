"""``replicate ls`` of 1,000 experiments x 20 checkpoints on S3, cold process (target: < 2 s).

The repository is written straight through ``Repository`` + ``records`` (metadata only, no
tarballs) into a SeaweedFS started here. Then, interleaved, 3 runs each (median):

- ``replicate ls -R s3://bench/repo`` as a fresh process; if this build has no ``ls`` command
  yet, a fresh ``python -c`` process calling ``Repository.load_experiments()`` (said so);
- baseline: a fresh ``python -c`` process with raw aiobotocore that lists the same prefix and
  GETs + ``json.loads`` every experiment JSON, 64 requests in flight (the floor of the work);
- ``Repository.load_experiments()`` in a fresh process (listing + parsing without the CLI);
- ``python -c pass`` (interpreter start, for scale).
"""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio

from benchmarks._common import (
    Options,
    fmt_s,
    fmt_x,
    note,
    p50,
    print_table,
    progress,
    python,
    ratio,
    record_series,
    record_summary,
    run_python,
    temp_dir,
    venv_bin,
    verdict,
)
from benchmarks._seaweed import seaweed
from replicate.records import (
    CheckpointRecord,
    ExperimentRecord,
    HeartbeatRecord,
    PrimaryMetric,
)
from replicate.repository import Repository
from replicate.storage import open_storage

NAME = "ls_cold"
BUCKET = "bench"
TARGET = 2.0
RUNS = 3
RUNNING = 10  # experiments with a fresh heartbeat

_LIST_DIRECT = """
import json, sys, time
t0 = time.perf_counter()
import anyio
from replicate.repository import Repository
from replicate.storage import open_storage

async def main():
    async with open_storage(sys.argv[1]) as storage:
        return await Repository(storage).load_experiments()

t1 = time.perf_counter()
records = anyio.run(main)
t2 = time.perf_counter()
print(json.dumps({"count": len(records), "import": t1 - t0, "list": t2 - t1}))
"""

_RAW = """
import asyncio, json, sys, time
t0 = time.perf_counter()
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

async def main(bucket, prefix):
    config = AioConfig(s3={"addressing_style": "path"}, max_pool_connections=64)
    async with get_session().create_client("s3", config=config) as s3:
        keys = []
        async for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys += [o["Key"] for o in page.get("Contents", [])]
        slots = asyncio.Semaphore(64)

        async def get(key):
            async with slots:
                response = await s3.get_object(Bucket=bucket, Key=key)
                async with response["Body"] as body:
                    return json.loads(await body.read())

        return await asyncio.gather(*(get(k) for k in keys))

t1 = time.perf_counter()
records = asyncio.run(main(sys.argv[1], sys.argv[2]))
t2 = time.perf_counter()
print(json.dumps({"count": len(records), "import": t1 - t0, "list": t2 - t1}))
"""


def _experiment(i: int, base: datetime, url: str) -> ExperimentRecord:
    created = base + timedelta(minutes=i)
    checkpoints = tuple(
        CheckpointRecord(
            id=f"{i:032x}{c:032x}",
            created=created + timedelta(seconds=30 * c),
            metrics={"loss": 1.0 / (c + 1) + i * 1e-4, "accuracy": 0.5 + c / 50},
            step=c,
            path="model.pth",
            primary_metric=PrimaryMetric("loss", "minimize"),
        )
        for c in range(20)
    )
    return ExperimentRecord(
        id=f"{i + 1:064x}"[::-1],
        created=created,
        params={"learning_rate": 0.001 * (i % 10 + 1), "batch_size": 32 * (i % 4 + 1), "seed": i},
        host="gpu-box",
        user="bench",
        config={"repository": url, "storage": ""},
        command="python train.py",
        path=".",
        python_version="3.11.7",
        python_packages={f"package-{p}": f"1.{p}.0" for p in range(30)},
        checkpoints=checkpoints,
    )


async def _populate(url: str, count: int, start: int = 0, beats: bool = True) -> None:
    base = datetime.now(UTC) - timedelta(days=30)
    async with open_storage(url) as storage:
        repository = Repository(storage)
        await repository.check_version(create=True)
        limiter = anyio.CapacityLimiter(32)

        async def save(i: int) -> None:
            async with limiter:
                record = _experiment(i, base, url)
                await repository.save_experiment(record)
                if beats and i >= count - RUNNING:
                    await repository.write_heartbeat(HeartbeatRecord(record.id, datetime.now(UTC)))

        async with anyio.create_task_group() as tg:
            for i in range(start, count):
                tg.start_soon(save, i)


def _has_ls(env: dict[str, str]) -> bool:
    done = subprocess.run(
        [venv_bin("replicate"), "ls", "--help"], env=env, capture_output=True, check=False
    )
    return done.returncode == 0


def _timed_process(command: list[str], env: dict[str, str], cwd: Path) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr[-2000:]}")
    return elapsed, done.stdout


def run(options: Options) -> None:
    count = 200 if options.quick else 1000
    url = f"s3://{BUCKET}/repo"
    rows: list[list[object]] = []
    with temp_dir("rbench-ls") as tmp, seaweed(BUCKET) as server:
        env = server.env()
        has_ls = _has_ls(env)
        growth: dict[str, list[tuple[float, float]]] = {
            "replicate ls": [],
            "raw list+GET+parse": [],
        }
        written = 0
        for step in (100,):  # one cold run of each at the smaller sizes, for the plot
            anyio.run(_populate, url, step, written, False)
            written = step
            growth["replicate ls"].append(
                (step, _timed_process([venv_bin("replicate"), "ls", "-R", url], env, tmp)[0])
            )
            growth["raw list+GET+parse"].append(
                (step, run_python(_RAW, BUCKET, "repo/metadata/experiments/", cwd=tmp, env=env)[0])
            )
        progress(f"writing {count} experiments x 20 checkpoints to {url}")
        start = time.perf_counter()
        anyio.run(_populate, url, count, written)
        populate = time.perf_counter() - start
        mine_label = f"replicate ls -R {url}" if has_ls else "Repository.load_experiments()"
        progress(f"{RUNS} cold runs each of: {mine_label}, raw aiobotocore, python -c pass")
        mine: list[float] = []
        direct: list[float] = []
        mine_inner: list[dict[str, Any]] = []
        raw: list[float] = []
        raw_inner: list[dict[str, Any]] = []
        bare: list[float] = []
        lines = 0
        for _ in range(RUNS):
            if has_ls:
                elapsed, out = _timed_process([venv_bin("replicate"), "ls", "-R", url], env, tmp)
                lines = len(out.splitlines())
                mine.append(elapsed)
            elapsed, result = run_python(_LIST_DIRECT, url, cwd=tmp, env=env)
            direct.append(elapsed)
            mine_inner.append(result)
            if not has_ls:
                mine.append(elapsed)
                lines = int(result["count"])
            elapsed, result = run_python(
                _RAW, BUCKET, "repo/metadata/experiments/", cwd=tmp, env=env
            )
            raw.append(elapsed)
            raw_inner.append(result)
            elapsed, _ = _timed_process([python(), "-c", "pass"], env, tmp)
            bare.append(elapsed)
        growth["replicate ls"].append((count, p50(mine)))
        growth["raw list+GET+parse"].append((count, p50(raw)))
        if options.big:  # 10,000 experiments: one cold run of each
            progress("writing up to 10,000 experiments for the growth plot")
            anyio.run(_populate, url, 10_000, count, False)
            growth["replicate ls"].append(
                (10_000, _timed_process([venv_bin("replicate"), "ls", "-R", url], env, tmp)[0])
            )
            growth["raw list+GET+parse"].append(
                (
                    10_000,
                    run_python(_RAW, BUCKET, "repo/metadata/experiments/", cwd=tmp, env=env)[0],
                )
            )
        for line, points in growth.items():
            record_series(
                "cold ls vs experiments",
                line,
                points,
                x="experiments (x 20 checkpoints)",
                y="seconds",
            )

    raw50 = p50(raw)
    mine50 = p50(mine)
    inner50 = fmt_s(p50([r["list"] for r in mine_inner]))
    rows.append(
        [
            mine_label,
            fmt_s(mine50),
            fmt_s(min(mine)),
            fmt_s(max(mine)),
            fmt_x(ratio(mine50, raw50)),
            "-" if has_ls else inner50,
            f"{lines} lines" if has_ls else f"{lines} experiments",
        ]
    )
    if has_ls:
        rows.append(
            [
                "Repository.load_experiments() in a fresh process",
                fmt_s(p50(direct)),
                fmt_s(min(direct)),
                fmt_s(max(direct)),
                fmt_x(ratio(p50(direct), raw50)),
                inner50,
                f"{mine_inner[-1]['count']} experiments",
            ]
        )
    rows.append(
        [
            "baseline: raw aiobotocore list + GET + json.loads",
            fmt_s(raw50),
            fmt_s(min(raw)),
            fmt_s(max(raw)),
            "1.00×",
            fmt_s(p50([r["list"] for r in raw_inner])),
            f"{raw_inner[-1]['count']} objects",
        ]
    )
    rows.append(
        [
            "python -c pass",
            fmt_s(p50(bare)),
            fmt_s(min(bare)),
            fmt_s(max(bare)),
            fmt_x(ratio(p50(bare), raw50)),
            "-",
            "",
        ]
    )
    print_table(
        f"listing {count:,} experiments x 20 checkpoints on SeaweedFS, cold process, {RUNS} runs",
        ["command", "median", "min", "max", "vs raw", "listing only", "output"],
        rows,
    )
    note(f"repository written in {fmt_s(populate)}; {RUNNING} experiments have fresh heartbeats.")
    if not has_ls:
        note("`replicate ls` is not in this build yet: measured Repository.load_experiments() in")
        note("a fresh process instead (import + open storage + list + parse), without rendering.")
    note("listing only = time inside the process after imports (list + GET + parse).")
    note(f"target: < 2 s cold → {verdict(mine50 < TARGET)}")
    record_summary(
        NAME,
        f"{'replicate ls' if has_ls else 'list_experiments (no ls yet)'} {count} x 20, cold",
        fmt_s(mine50),
        "< 2 s",
        mine50 < TARGET,
        f"raw aiobotocore {fmt_s(raw50)}: {fmt_x(ratio(mine50, raw50))}",
    )
