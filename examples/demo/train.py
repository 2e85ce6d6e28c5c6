"""A small training run that checkpoints every epoch into the default local repository.

Fits y = 3x + 2 with plain-Python gradient descent, so it needs no framework.
"""

from __future__ import annotations

import json
import random

import replicate


def main() -> None:
    params = {"learning_rate": 0.05, "num_epochs": 8, "seed": 7}
    experiment = replicate.init(path=".", params=params)
    rng = random.Random(params["seed"])
    xs = [rng.uniform(-1, 1) for _ in range(256)]
    ys = [3 * x + 2 + rng.gauss(0, 0.1) for x in xs]
    w, b = 0.0, 0.0
    for epoch in range(params["num_epochs"]):
        for _ in range(20):
            grad_w = sum(2 * (w * x + b - y) * x for x, y in zip(xs, ys, strict=True)) / len(xs)
            grad_b = sum(2 * (w * x + b - y) for x, y in zip(xs, ys, strict=True)) / len(xs)
            w -= params["learning_rate"] * grad_w
            b -= params["learning_rate"] * grad_b
        loss = sum((w * x + b - y) ** 2 for x, y in zip(xs, ys, strict=True)) / len(xs)
        with open("model.json", "w") as f:
            json.dump({"w": w, "b": b}, f)
        experiment.checkpoint(
            path="model.json",
            step=epoch,
            metrics={"loss": loss, "w": w, "b": b},
            primary_metric=("loss", "minimize"),
        )
    experiment.stop()


if __name__ == "__main__":
    main()
