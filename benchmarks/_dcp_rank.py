"""One rank of the ``distributed`` benchmark (started by benchmarks/distributed.py).

``python -m benchmarks._dcp_rank OUT_DIR SHARD_BYTES SAMPLES BUCKET``, with torchrun's
variables set. Each rank holds one float32 shard of SHARD_BYTES of a DTensor on a CPU mesh.
Rank 0 writes ``OUT_DIR/result.json``: per sample, the slower rank's time.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.tensor import Shard, distribute_tensor

import replicate
from benchmarks._seaweed import async_client, multipart_upload
from replicate.integrations.torch import ReplicateStorageWriter

Samples = list[float]


def slowest(seconds: float) -> float:
    """The slowest rank's figure for this sample (every rank calls it)."""
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, seconds)
    return max(float(s) for s in gathered)


def state_of(mesh: DeviceMesh, shard_bytes: int) -> dict[str, Any]:
    rows = dist.get_world_size() * shard_bytes // (4 * 1024)
    full = torch.empty(rows, 1024, dtype=torch.float32)
    return {"weights": distribute_tensor(full.uniform_(), mesh, [Shard(0)])}


def blocking(save: Callable[[], Callable[[], None]]) -> float:
    """Time ``save()`` (what training waits for), then its ``finish()`` untimed; both ranks."""
    os.sync()
    dist.barrier()
    start = time.perf_counter()
    finish = save()
    took = time.perf_counter() - start
    finish()
    dist.barrier()
    return slowest(took)


def local_phase(
    mesh: DeviceMesh, state: dict[str, Any], out: Path, samples: int
) -> dict[str, Samples]:
    """Blocking time: DCP's FileSystemWriter, ours (file://), torch.save + checkpoint(path=)."""
    rank = dist.get_rank()
    project = out / f"project-{rank}"
    project.mkdir(exist_ok=True)
    experiment = replicate.init(
        repository=(out / "repository").as_uri(), project_dir=project, params={"bench": "dcp"}
    )
    times: dict[str, Samples] = {"dcp": [], "replicate": [], "torch_save": []}
    for i in range(-1, samples):  # -1: a round to warm up (first saves start threads), not kept

        def own(i: int = i) -> Callable[[], None]:
            writer = dcp.FileSystemWriter(str(out / f"dcp-{i}"))
            future = dcp.async_save(state, storage_writer=writer)
            return lambda: future.result()

        def ours(i: int = i) -> Callable[[], None]:
            writer = ReplicateStorageWriter(experiment, step=i + 1, quiet=True)
            future = dcp.async_save(state, storage_writer=writer)

            def finish() -> None:
                future.result()
                assert writer.checkpoint is not None
                writer.checkpoint.wait()

            return finish

        def whole(i: int = i) -> Callable[[], None]:
            full = state["weights"].full_tensor()  # a collective: every rank takes part
            if rank != 0:
                return lambda: None
            torch.save({"weights": full}, project / "model.pth")
            checkpoint = experiment.checkpoint(path="model.pth", step=100 + i, quiet=True)

            def finish() -> None:
                checkpoint.wait()

            return finish

        for name, save in (("dcp", own), ("replicate", ours), ("torch_save", whole)):
            took = blocking(save)
            if i >= 0:
                times[name].append(took)
    experiment.stop()
    return times


def s3_phase(
    mesh: DeviceMesh, state: dict[str, Any], out: Path, samples: int, bucket: str
) -> dict[str, Samples]:
    """Time to durable on SeaweedFS: ours (rank 0's commit) vs raw multipart from both ranks."""
    rank = dist.get_rank()
    project = out / f"project-s3-{rank}"
    project.mkdir(exist_ok=True)
    experiment = replicate.init(
        repository=f"s3://{bucket}/dcp", project_dir=project, params={"bench": "dcp"}
    )
    experiment.wait()
    shard = out / "dcp--1" / f"__{rank}_0.distcp"  # this rank's bytes, as DCP wrote them
    endpoint = os.environ["AWS_ENDPOINT_URL_S3"]
    times: dict[str, Samples] = {"raw": [], "replicate": [], "written": []}

    async def raw_upload(key: str) -> None:
        async with async_client(endpoint) as client:
            dist.barrier()  # clients open before the clock starts, as replicate's are
            start = time.perf_counter()
            await multipart_upload(client, bucket, key, shard)
            times["raw"].append(time.perf_counter() - start)

    for i in range(samples):
        os.sync()
        asyncio.run(raw_upload(f"raw/{i}/rank-{rank}"))
        times["raw"][-1] = slowest(times["raw"][-1])
        os.sync()
        dist.barrier()
        start = time.perf_counter()
        writer = ReplicateStorageWriter(experiment, step=i, quiet=True)
        dcp.async_save(state, storage_writer=writer).result()
        written = time.perf_counter() - start  # DCP's part: staged, written into the spool
        assert writer.checkpoint is not None
        writer.checkpoint.wait()  # rank 0's: committed, so every part has landed
        times["replicate"].append(slowest(time.perf_counter() - start))
        times["written"].append(slowest(written))
    experiment.stop()
    return times


def main() -> None:
    out, shard_bytes, samples, bucket = (
        Path(sys.argv[1]),
        int(sys.argv[2]),
        int(sys.argv[3]),
        sys.argv[4],
    )
    dist.init_process_group("gloo", timeout=timedelta(seconds=600))
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    state = state_of(mesh, shard_bytes)
    result = {"local": local_phase(mesh, state, out, samples)}
    result["s3"] = s3_phase(mesh, state, out, samples, bucket)
    if dist.get_rank() == 0:
        (out / "result.json").write_text(json.dumps(result))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
