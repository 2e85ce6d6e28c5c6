"""One rank of a 2-rank torch.distributed job in the tests; writes what it saw.

Started like torchrun starts a rank (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``)
in a project directory, as ``worker.py OUT_DIR``. In one process group it runs three
collective ``init()`` calls: one that fails on rank 0 (a path that does not exist), one that
records two ``checkpoint(path=...)`` and one ``checkpoint_dir()``, and a resume of that
experiment that records one more checkpoint at the step after the last. Each rank prints its
experiment id and writes ``OUT_DIR/rank-<n>.json``.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch.distributed as dist

import replicate


def save(rank: int, content: bytes) -> None:
    """Every rank writes the same weights, atomically, as data-parallel ranks would."""
    partial = Path(f"model.pth.rank{rank}")
    partial.write_bytes(content)
    os.replace(partial, "model.pth")


def record(checkpoint: replicate.Checkpoint) -> dict[str, Any]:
    return {
        "id": checkpoint.id,
        "step": checkpoint.step,
        "skipped": checkpoint.skipped,
        "waited": checkpoint.wait(timeout=60),
    }


def failed(rank: int) -> dict[str, Any]:
    try:
        replicate.init(path="missing", params={"lr": 0.1})
    except replicate.ReplicateError as exc:
        return {"error": type(exc).__name__, "message": str(exc)}
    return {"error": None}


def first(rank: int) -> dict[str, Any]:
    experiment = replicate.init(params={"lr": 0.1})
    print(f"rank {rank}: experiment {experiment.id}", flush=True)
    for step in (0, 1):
        save(rank, f"weights at step {step}".encode())
        experiment.checkpoint(path="model.pth", step=step, quiet=True)
        dist.barrier()  # as a training step's all-reduce: no rank writes step+1 before this
    with experiment.checkpoint_dir(step=2) as directory:
        (directory / "model.pth").write_bytes(b"weights at step 2")
    experiment.stop(raise_on_error=True)
    return {
        "id": experiment.id,
        "checkpoints": [record(c) for c in experiment.checkpoints],
        "dir_left": directory.exists(),
    }


def resumed(rank: int, experiment_id: str) -> dict[str, Any]:
    experiment = replicate.init(params={"lr": 0.1}, resume=experiment_id)
    latest = experiment.latest()  # where a resumed job restarts from, read on every rank
    dist.barrier()  # before rank 0 saves a later one (which latest() would then see)
    save(rank, b"weights at step 3")
    checkpoint = experiment.checkpoint(path="model.pth", quiet=True)  # the step after the last
    experiment.stop(raise_on_error=True)
    return {
        "id": experiment.id,
        "latest": None if latest is None else [latest.id, latest.step],
        "checkpoints": [record(checkpoint)],
    }


def main() -> None:
    out = Path(sys.argv[1])
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))  # fail, never hang
    rank = dist.get_rank()
    report: dict[str, Any] = {"rank": rank, "failed": failed(rank), "first": first(rank)}
    report["resumed"] = resumed(rank, report["first"]["id"])
    (out / f"rank-{rank}.json").write_text(json.dumps(report))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
