"""Sharded training on CPU processes (FSDP2), its state saved by every rank through DCP.

Run it with ``torchrun --nproc-per-node 2 examples/distributed/train_dcp.py``. Each rank holds
a shard of the model and optimizer state; ``dcp.async_save`` with ``ReplicateStorageWriter``
writes each rank's shard into its own spool and uploads it in the background, and the
checkpoint appears in the experiment once every rank's part has landed. If a run dies, run
it again: it resumes from its latest checkpoint, resharded to however many ranks run it then.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

import replicate
from replicate.integrations.torch import ReplicateStorageReader, ReplicateStorageWriter

HERE = Path(__file__).parent


def main() -> None:
    dist.init_process_group("gloo")  # before replicate.init(), so that it can share the id
    rank, world_size = dist.get_rank(), dist.get_world_size()
    params = {"learning_rate": 0.05, "num_epochs": 3, "hidden": 64}
    experiment = replicate.init(path=".", params=params, project_dir=HERE, resume="allow")
    # async saves run their collectives in a thread, beside training's: a group of their own
    checkpointing = dist.new_group(backend="gloo")

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(8, params["hidden"]), torch.nn.ReLU(), torch.nn.Linear(params["hidden"], 1)
    )
    fully_shard(model, mesh=init_device_mesh("cpu", (world_size,)))  # parameters are DTensors
    optimizer = torch.optim.Adam(model.parameters(), lr=params["learning_rate"])

    latest = experiment.latest()  # a resumed run goes on from its latest checkpoint
    start = 0
    if latest is not None:
        model_state, optimizer_state = get_state_dict(model, optimizer)
        state = {"model": model_state, "optimizer": optimizer_state}
        dcp.load(state, storage_reader=ReplicateStorageReader(latest))
        set_state_dict(
            model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"]
        )
        start = (latest.step or 0) + 1
        print(f"rank {rank}: resumed from step {latest.step}", flush=True)

    generator = torch.Generator().manual_seed(rank)  # each rank has its own shard of the data
    x = torch.rand(256, 8, generator=generator)
    y = x.sum(dim=1, keepdim=True)
    saving = None
    for epoch in range(start, start + params["num_epochs"]):
        for _ in range(20):
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            optimizer.step()
        total = loss.detach().clone()
        dist.all_reduce(total)
        if saving is not None:
            saving.result()  # one save in flight at a time: DCP's own advice
        model_state, optimizer_state = get_state_dict(model, optimizer)
        writer = ReplicateStorageWriter(
            experiment,
            step=epoch,
            metrics={"loss": total.item() / world_size},
            primary_metric=("loss", "minimize"),
        )
        saving = dcp.async_save(
            {"model": model_state, "optimizer": optimizer_state},
            storage_writer=writer,
            process_group=checkpointing,
        )
    if saving is not None:
        saving.result()
    experiment.stop()  # waits for this rank's uploads; rank 0's also for the commits
    print(f"rank {rank}: experiment {experiment.short_id} done", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
