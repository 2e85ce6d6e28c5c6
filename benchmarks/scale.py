"""Several training processes writing to one repository at once: 1, 2, 4 and 8 writers.

Each writer is a fresh process with its own project dir, started together (each waits for a
"go" line on stdin once replicate is initialised), that checkpoints ``COUNT`` times a file of
random bytes (64 MiB; 16 MiB and 2 calls with ``--quick``), rewriting it before each call and waiting for
each checkpoint to land before the next. Measured per checkpoint: blocking (the call) and time
to durable (call → ``wait()``). Baseline, same shape: N processes that each copy the file
``COUNT`` times at once (on S3 each copy is then uploaded raw, aiobotocore multipart). Disk (one file:// repository) and S3 (one SeaweedFS bucket prefix).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._common import (
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
    record_summary,
    temp_dir,
)
from benchmarks._seaweed import seaweed

NAME = "scale"
COUNT = 3
WRITERS = (1, 2, 4, 8)

_WRITER = """
import json, shutil, sys, time
source, url, count, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
def rewrite():
    with open(source, "rb") as a, open("model.pth", "wb") as b:
        shutil.copyfileobj(a, b, 8 << 20)
if mode == "replicate":
    import replicate
    experiment = replicate.init(params={"writer": 1}, repository=url)
    experiment.wait()
print("ready", flush=True)
sys.stdin.readline()
blocking, durable = [], []
for i in range(count):
    rewrite()
    start = time.perf_counter()
    if mode == "replicate":
        checkpoint = experiment.checkpoint(path="model.pth", step=i, quiet=True)
        blocking.append(time.perf_counter() - start)
        checkpoint.wait()
    else:  # the floor: a copy, then (S3) a raw multipart upload of it
        shutil.copyfile("model.pth", "copy.pth")
        blocking.append(time.perf_counter() - start)
        if mode == "raw":
            import os, pathlib
            from benchmarks.time_to_durable import raw_upload
            # the upload's own time: its client is made before its clock starts, as ours is
            upload = raw_upload(os.environ["AWS_ENDPOINT_URL_S3"], pathlib.Path("copy.pth"))
            durable.append(blocking[-1] + upload)
            continue
    durable.append(time.perf_counter() - start)
if mode == "replicate":
    experiment.stop()
print(json.dumps({"blocking": blocking, "durable": durable}))
"""


def _round(
    where: str,
    writers: int,
    mode: str,
    url: str,
    source: Path,
    root: Path,
    env: dict[str, str],
    count: int,
) -> tuple[list[float], list[float], float]:
    """One round of ``writers`` processes; (blocking times, durable times, wall of the round)."""
    procs = []
    for w in range(writers):
        project = root / f"{mode}-{where}-{writers}-{w}"
        project.mkdir()
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", _WRITER, str(source), url, str(count), mode],
                cwd=project,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
        )
    for proc in procs:  # every writer initialised before any starts
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"a {mode} writer did not start")
    os.sync()
    start = time.perf_counter()
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results: list[dict[str, Any]] = []
    for proc in procs:
        out, _ = proc.communicate(timeout=1800)
        if proc.returncode != 0:
            raise RuntimeError(f"a {mode} writer failed ({proc.returncode})")
        results.append(json.loads(out.strip().splitlines()[-1]))
    wall = time.perf_counter() - start
    return (
        [t for r in results for t in r["blocking"]],
        [t for r in results for t in r["durable"]],
        wall,
    )


def run(options: Options) -> None:
    count = 2 if options.quick else COUNT  # the quick run stays under 10 minutes
    size = 16 * MiB if options.quick else 64 * MiB
    source = data_file(size)
    rows: list[list[object]] = []
    with temp_dir("rbench-scale") as tmp:
        places: list[tuple[str, str, dict[str, str]]] = [
            ("disk", f"file://{tmp / 'repository'}", dict(os.environ))
        ]
        with seaweed("bench") as server:
            places.append(("S3", "s3://bench/scale", server.env()))
            for where, url, env in places:
                durable_points = []
                for writers in WRITERS:
                    progress(f"{where}: {writers} writer(s), {count} × {fmt_bytes(size)} each")
                    cb, cd, _ = _round(
                        where,
                        writers,
                        "cp" if where == "disk" else "raw",
                        url,
                        source,
                        tmp,
                        env,
                        count,
                    )
                    rb, rd, rwall = _round(
                        where, writers, "replicate", url, source, tmp, env, count
                    )
                    total = writers * count * size
                    rows.append(
                        [
                            where,
                            writers,
                            fmt_s(p50(cb)),
                            fmt_s(p50(rb)),
                            fmt_x(ratio(p50(rb), p50(cb))),
                            fmt_s(p50(cd)),
                            fmt_s(p50(rd)),
                            fmt_x(ratio(p50(rd), p50(cd))),
                            f"{total / MiB / rwall:.0f} MiB/s",
                        ]
                    )
                    durable_points.append((writers, p50(rd)))
                one, many = durable_points[0][1], durable_points[-1][1]
                record_summary(
                    NAME,
                    f"{where}: {WRITERS[-1]} writers, time to durable p50",
                    fmt_s(many),
                    "how it grows (no target)",
                    None,
                    f"1 writer {fmt_s(one)}: {fmt_x(ratio(many, one))} for {WRITERS[-1]}× the data",
                )
                record_series(
                    "time to durable vs writers",
                    f"replicate ({where})",
                    durable_points,
                    x="writer processes",
                    y="seconds (p50 per checkpoint)",
                )
    print_table(
        f"writers to one repository at once: {count} checkpoints of {fmt_bytes(size)} each",
        [
            "where",
            "writers",
            "copy blocking",
            "ckpt blocking",
            "ratio",
            "floor durable",
            "ckpt durable",
            "ratio",
            "replicate aggregate",
        ],
        rows,
    )
    note("p50 over every checkpoint of every writer. Floor: N processes at once that copy the")
    note("file (disk), or copy it and upload the copy raw (S3: aiobotocore multipart).")
    note("aggregate = bytes checkpointed by all writers / wall time of the round (replicate).")
