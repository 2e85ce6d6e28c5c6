"""One rank of a 2-rank job saving DTensor state through DCP and ReplicateStorageWriter.

Started like torchrun starts a rank, as ``dcp_worker.py MODE OUT_DIR [EXPERIMENT_ID]``:

- ``save``: steps 0 and 1 with ``dcp.async_save``, step 2 with ``dcp.save``; then both ranks
  load the latest checkpoint back into fresh sharded tensors (world size 2).
- ``crash``: step 0 with ``dcp.async_save`` (not waiting for its upload), then step 1, in
  which rank 1 writes ``OUT_DIR/stalled`` from inside DCP's write and never returns: the
  test kills it there.
- ``resume``: resume EXPERIMENT_ID and save step 2.

The state at step ``s`` is :func:`expected` ``(s)``, sharded over a CPU device mesh. Each
rank writes what it saw to ``OUT_DIR/<mode>-rank-<n>.json``.
"""

from __future__ import annotations

import json
import sys
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.tensor import Shard, distribute_tensor

import replicate
from replicate.integrations.torch import ReplicateStorageReader, ReplicateStorageWriter


def expected(step: int) -> dict[str, torch.Tensor]:
    """The full (unsharded) state at ``step``."""
    return {
        "w": torch.arange(128, dtype=torch.float32).reshape(16, 8) + 1000 * step,
        "b": torch.arange(8, dtype=torch.float32) - step,
    }


def sharded(mesh: DeviceMesh, full: dict[str, torch.Tensor]) -> dict[str, Any]:
    return {name: distribute_tensor(t.clone(), mesh, [Shard(0)]) for name, t in full.items()}


def writer(experiment: replicate.Experiment, step: int) -> ReplicateStorageWriter:
    return ReplicateStorageWriter(
        experiment, step=step, metrics={"loss": 1 / (step + 1)}, primary_metric=("loss", "minimize")
    )


class StallingWriter(ReplicateStorageWriter):
    """Says it is writing, then never returns (its process is killed there)."""

    def __init__(self, experiment: replicate.Experiment, step: int, marker: Path) -> None:
        super().__init__(experiment, step=step)
        self._marker = marker

    def write_data(self, plan: Any, planner: Any) -> Any:
        self._marker.write_text("writing")
        threading.Event().wait()


def save(experiment: replicate.Experiment, mesh: DeviceMesh, out: Path) -> dict[str, Any]:
    writers = []
    for step in (0, 1):
        writers.append(writer(experiment, step))
        dcp.async_save(sharded(mesh, expected(step)), storage_writer=writers[-1]).result()
    writers.append(writer(experiment, 2))
    dcp.save(sharded(mesh, expected(2)), storage_writer=writers[-1])
    parts = [
        [w.checkpoint.id, w.checkpoint.step, w.checkpoint.wait(timeout=120)]
        for w in writers
        if w.checkpoint is not None
    ]
    dist.barrier()  # rank 0's wait() returned once its checkpoints were committed
    view = experiment.stored()
    latest = view.latest()
    assert latest is not None
    state = sharded(mesh, {name: torch.zeros_like(t) for name, t in expected(0).items()})
    dcp.load(state, storage_reader=ReplicateStorageReader(latest))
    loaded = {name: t.full_tensor() for name, t in state.items()}
    return {
        "id": experiment.id,
        "parts": parts,
        "latest": [latest.id, latest.step],
        "ranks_running": view.ranks_running,
        "loaded_equal": all(torch.equal(loaded[n], t) for n, t in expected(2).items()),
    }


def crash(experiment: replicate.Experiment, mesh: DeviceMesh, out: Path) -> dict[str, Any]:
    first = writer(experiment, 0)
    dcp.async_save(sharded(mesh, expected(0)), storage_writer=first).result()
    assert first.checkpoint is not None
    report = {"id": experiment.id, "saved": [first.checkpoint.id, 0]}
    (out / f"crash-rank-{dist.get_rank()}.json").write_text(json.dumps(report))
    stalling = (
        StallingWriter(experiment, 1, out / "stalled")
        if dist.get_rank() == 1
        else writer(experiment, 1)
    )
    dcp.async_save(sharded(mesh, expected(1)), storage_writer=stalling).result()
    raise AssertionError("step 1 was meant to stall on rank 1")


def resume(experiment: replicate.Experiment, mesh: DeviceMesh, out: Path) -> dict[str, Any]:
    last = writer(experiment, 2)
    dcp.async_save(sharded(mesh, expected(2)), storage_writer=last).result()
    assert last.checkpoint is not None
    return {"id": experiment.id, "saved": [last.checkpoint.id, 2, last.checkpoint.wait(120)]}


def main() -> None:
    mode, out = sys.argv[1], Path(sys.argv[2])
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))  # fail, never hang
    mesh = init_device_mesh("cpu", (2,))
    resume_id = sys.argv[3] if len(sys.argv) > 3 else None
    experiment = replicate.init(params={"lr": 0.1}, resume=resume_id)
    run = {"save": save, "crash": crash, "resume": resume}[mode]
    report = {"rank": dist.get_rank(), **run(experiment, mesh, out)}
    experiment.stop(raise_on_error=True)
    (out / f"{mode}-rank-{dist.get_rank()}.json").write_text(json.dumps(report))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
