"""Peak RSS growth while a big checkpoint uploads to S3 (target: ≤ 150 MiB for 2 GiB).

Default size 512 MiB; ``--big`` uses 2 GiB. Each side runs in a fresh process against a
SeaweedFS started here, after a warm-up upload (9 MiB, multipart) so imports, clients and
buffers that any upload needs are already counted in the starting RSS. Then the peak is reset
(``/proc/self/clear_refs`` = 5) and the growth is the larger of VmHWM and a 5 ms VmRSS sampler,
minus VmRSS at the start.

- replicate: ``checkpoint(path=...)`` then ``wait()``, s3:// repository;
- baseline: a raw aiobotocore multipart upload of the same file (8 MiB parts, 4 in flight).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

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
    print_table,
    progress,
    ratio,
    record_summary,
    rewrite,
    run_python,
    settle,
    temp_dir,
    verdict,
)
from benchmarks._seaweed import seaweed

NAME = "memory"
BUCKET = "bench"
TARGET = 150 * MiB
ROOT = Path(__file__).resolve().parent.parent

_PRELUDE = """
import gc, json, os, sys, threading, time
from pathlib import Path
from benchmarks._common import proc_status, reset_peak_rss

class Sampler:
    def __init__(self):
        self.peak = proc_status("VmRSS")
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.wait(0.005):
            self.peak = max(self.peak, proc_status("VmRSS"))

def measure(upload):
    gc.collect()
    time.sleep(0.2)
    start_rss = proc_status("VmRSS")
    reset_ok = reset_peak_rss()
    sampler = Sampler()
    t0 = time.perf_counter()
    upload()
    seconds = time.perf_counter() - t0
    sampler.stop.set()
    sampler.thread.join()
    print(json.dumps({
        "start": start_rss,
        "hwm": proc_status("VmHWM"),
        "sampled": sampler.peak,
        "reset_ok": reset_ok,
        "seconds": seconds,
    }))
"""

_REPLICATE = (
    _PRELUDE
    + """
import replicate
project, url = Path(sys.argv[1]), sys.argv[2]
experiment = replicate.init(project_dir=project, repository=url, params={"benchmark": "memory"})
(project / "warm.bin").write_bytes(os.urandom(9 * 1024 * 1024))
experiment.checkpoint(path="warm.bin", quiet=True).wait()

def upload():
    experiment.checkpoint(path="model.pth", quiet=True).wait()

measure(upload)
experiment.stop()
"""
)

_RAW = (
    _PRELUDE
    + """
import asyncio
from benchmarks._seaweed import async_client, multipart_upload
project, endpoint, bucket = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
(project / "warm.bin").write_bytes(os.urandom(9 * 1024 * 1024))

async def main():
    async with async_client(endpoint) as client:
        await multipart_upload(client, bucket, "raw/warm", project / "warm.bin")
        loop = asyncio.get_running_loop()

        async def go():
            await multipart_upload(client, bucket, "raw/model", project / "model.pth")

        # measure() is sync: run the measured upload from a thread into this loop.
        def upload():
            asyncio.run_coroutine_threadsafe(go(), loop).result()

        await asyncio.to_thread(measure, upload)

asyncio.run(main())
"""
)


def _growth(result: dict[str, Any]) -> int:
    peak = max(result["hwm"], result["sampled"]) if result["reset_ok"] else result["sampled"]
    return int(peak - result["start"])


def run(options: Options) -> None:
    size = 64 * MiB if options.quick else (2 * GiB if options.big else 512 * MiB)
    with temp_dir("rbench-memory") as tmp, seaweed(BUCKET) as server:
        project = tmp / "project"
        project.mkdir()
        rewrite(data_file(size), project / "model.pth")
        env = server.env()
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        progress(f"raw aiobotocore multipart upload of {fmt_bytes(size)}, fresh process")
        settle()
        _, raw = run_python(_RAW, str(project), server.endpoint, BUCKET, cwd=tmp, env=env)
        progress(f"replicate checkpoint of {fmt_bytes(size)} to s3://, fresh process")
        settle()
        _, mine = run_python(_REPLICATE, str(project), f"s3://{BUCKET}/memory", cwd=tmp, env=env)

    raw_growth, mine_growth = _growth(raw), _growth(mine)
    rows = []
    for label, result, growth in (
        ("baseline: aiobotocore multipart 8 MiB x 4", raw, raw_growth),
        ("replicate checkpoint() + wait()", mine, mine_growth),
    ):
        rows.append(
            [
                label,
                fmt_bytes(result["start"]),
                fmt_bytes(result["hwm"]),
                fmt_bytes(result["sampled"]),
                fmt_bytes(growth),
                fmt_x(ratio(growth, raw_growth)),
                fmt_s(result["seconds"]),
                fmt_rate(size, result["seconds"]),
            ]
        )
    print_table(
        f"peak RSS growth while uploading {fmt_bytes(size)} to SeaweedFS (fresh process per side)",
        ["side", "RSS start", "VmHWM", "sampled max", "growth", "vs raw", "time", "rate"],
        rows,
    )
    if not (raw["reset_ok"] and mine["reset_ok"]):
        note("VmHWM could not be reset here: growth uses the 5 ms VmRSS sampler only.")
    ok = mine_growth <= TARGET
    note(f"target: growth ≤ 150 MiB → {verdict(ok)} ({fmt_bytes(mine_growth)})")
    record_summary(
        NAME,
        f"peak RSS growth, {fmt_bytes(size)} to S3",
        fmt_bytes(mine_growth),
        "≤ 150 MiB",
        ok,
        f"raw aiobotocore {fmt_bytes(raw_growth)}: {fmt_x(ratio(mine_growth, raw_growth))}",
    )
