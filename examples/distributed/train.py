"""Data-parallel training on CPU processes, all recorded in one experiment.

Run it with ``torchrun --nproc-per-node 2 examples/distributed/train.py``. Every rank runs
the same code; ``replicate.init()`` is collective, and only rank 0's checkpoints are recorded
(on the other ranks ``checkpoint_dir()`` hands out a throwaway directory).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

import replicate

HERE = Path(__file__).parent


def main() -> None:
    dist.init_process_group("gloo")  # before replicate.init(), so that it can share the id
    rank, world_size = dist.get_rank(), dist.get_world_size()
    params = {"learning_rate": 0.1, "num_epochs": 5, "world_size": world_size}
    experiment = replicate.init(path=".", params=params, project_dir=HERE)
    print(f"rank {rank}: experiment {experiment.short_id}", flush=True)

    torch.manual_seed(0)
    model = DistributedDataParallel(torch.nn.Linear(1, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=params["learning_rate"])
    generator = torch.Generator().manual_seed(rank)  # each rank has its own shard of the data
    x = torch.rand(64, 1, generator=generator) * 2 - 1
    y = 3 * x + 2
    for epoch in range(params["num_epochs"]):
        for _ in range(20):
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()  # DDP averages the gradients across ranks
            optimizer.step()
        total = loss.detach().clone()
        dist.all_reduce(total)  # the sum over ranks (gloo has no AVG)
        with experiment.checkpoint_dir(
            step=epoch,
            metrics={"loss": total.item() / world_size},
            primary_metric=("loss", "minimize"),
        ) as directory:
            torch.save(model.module.state_dict(), directory / "model.pth")
    experiment.stop()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
