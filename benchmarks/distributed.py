"""Sharded checkpoints: a 2-rank job (gloo, CPU) saving a DTensor of 2 × 256 MiB through DCP.

Started like torchrun starts ranks (benchmarks/_dcp_rank.py); every figure is the slower
rank's, per sample, samples alternating between the ways of saving:

- **blocking** (what the training loop waits for): ``dcp.async_save`` with
  ``ReplicateStorageWriter`` into a ``file://`` repository, against ``dcp.async_save`` with
  DCP's own ``FileSystemWriter`` to a local directory (the anchor), and against
  ``full_tensor()`` + ``torch.save`` of the whole state on rank 0 + ``checkpoint(path=...)``.
  Target: ≤ 1.1 × the anchor.
- **time to durable** on SeaweedFS (started here): from the ``async_save`` call until rank 0's
  checkpoint is committed (every part landed), against a raw aiobotocore multipart upload of
  each rank's shard file from both ranks at once (8 MiB parts, 4 in flight each).
  Target: ≤ 1.3 × the raw upload.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks._common import (
    MiB,
    Options,
    fmt_bytes,
    fmt_s,
    fmt_x,
    note,
    p50,
    print_table,
    progress,
    ratio,
    record_summary,
    temp_dir,
    verdict,
)
from benchmarks._seaweed import seaweed

NAME = "distributed"
BUCKET = "bench-dcp"
RANKS = 2
BLOCKING_TARGET = 1.1
DURABLE_TARGET = 1.3


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _run_ranks(
    out: Path, shard: int, samples: int, env: dict[str, str]
) -> dict[str, dict[str, list[float]]]:
    port = str(_free_port())
    procs = []
    for rank in range(RANKS):
        rank_env = {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(RANKS)}
        rank_env |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "GLOO_SOCKET_IFNAME": "lo"}
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "benchmarks._dcp_rank",
                    str(out),
                    str(shard),
                    str(samples),
                    BUCKET,
                ],
                env={**env, **rank_env},
                cwd=Path(__file__).resolve().parent.parent,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = [proc.communicate(timeout=3600)[0] for proc in procs]
    failed = [
        f"rank {r}: {o[-3000:]}"
        for r, (p, o) in enumerate(zip(procs, outputs, strict=True))
        if p.returncode
    ]
    if failed:
        raise RuntimeError("\n".join(failed))
    result: dict[str, dict[str, list[float]]] = json.loads((out / "result.json").read_text())
    return result


def run(options: Options) -> None:
    shard = (32 if options.quick else 256) * MiB
    samples = 2 if options.quick else 5
    progress(f"{RANKS} ranks, {fmt_bytes(shard)} each, {samples} samples")
    with temp_dir("rbench-dcp") as out, seaweed(BUCKET) as server:
        env = {**server.env(), "REPLICATE_CACHE_DIR": str(out / "cache")}
        env.pop("REPLICATE_REPOSITORY", None)
        result = _run_ranks(out, shard, samples, env)
    local, s3 = result["local"], result["s3"]
    anchor, ours, whole = p50(local["dcp"]), p50(local["replicate"]), p50(local["torch_save"])
    raw, durable = p50(s3["raw"]), p50(s3["replicate"])
    written = p50(s3.get("written", []))
    state = f"{RANKS} × {fmt_bytes(shard)}"
    print_table(
        f"distributed: dcp.async_save of {state} (p50 of {samples}, slower rank)",
        ["measure", "baseline", "replicate", "ratio", "target"],
        [
            [
                "blocking vs DCP FileSystemWriter",
                fmt_s(anchor),
                fmt_s(ours),
                fmt_x(ratio(ours, anchor)),
                f"≤ {BLOCKING_TARGET}×",
            ],
            [
                "blocking vs torch.save + checkpoint",
                fmt_s(whole),
                fmt_s(ours),
                fmt_x(ratio(ours, whole)),
                "-",
            ],
            [
                "durable vs raw multipart (SeaweedFS)",
                fmt_s(raw),
                fmt_s(durable),
                fmt_x(ratio(durable, raw)),
                f"≤ {DURABLE_TARGET}×",
            ],
        ],
    )
    note(
        f"of the time to durable, DCP's own save (staging + writing each rank's files into its "
        f"spool) took {fmt_s(written)}; the rest is packing, upload and rank 0's commit"
    )
    note(
        "all samples (s): "
        + "; ".join(
            f"{k} {', '.join(f'{v:.3f}' for v in vs)}"
            for k, vs in {**local, **{f"s3 {k}": v for k, v in s3.items()}}.items()
        )
    )
    record_summary(
        NAME,
        f"async_save blocking, {state}",
        fmt_x(ratio(ours, anchor)),
        f"≤ {BLOCKING_TARGET}× DCP FileSystemWriter",
        ratio(ours, anchor) <= BLOCKING_TARGET,
        f"{fmt_s(ours)} vs {fmt_s(anchor)}; torch.save + checkpoint {fmt_s(whole)}",
    )
    record_summary(
        NAME,
        f"time to durable, {state}, SeaweedFS",
        fmt_x(ratio(durable, raw)),
        f"≤ {DURABLE_TARGET}× raw multipart from both ranks",
        ratio(durable, raw) <= DURABLE_TARGET,
        f"{fmt_s(durable)} vs {fmt_s(raw)}",
    )
    print(
        f"  blocking {verdict(ratio(ours, anchor) <= BLOCKING_TARGET)}, durable {verdict(ratio(durable, raw) <= DURABLE_TARGET)}"
    )
