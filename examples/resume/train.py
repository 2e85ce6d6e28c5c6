"""Restart this script after a crash and it goes on where it left off (see the README)."""

import json
import random

import replicate

experiment = replicate.init(path="train.py", params={"lr": 0.01}, resume="allow")
latest = experiment.latest()  # None on the first run
start = 0 if latest is None else latest.step + 1
weights = [0.0] * 4 if latest is None else json.load(latest.open("model.json"))
for _ in range(start, 10):
    weights = [w + random.uniform(-0.1, 0.1) for w in weights]  # "training"
    loss = sum(w * w for w in weights)
    with open("model.json", "w") as f:
        json.dump(weights, f)
    experiment.checkpoint(path="model.json", metrics={"loss": loss})  # the step goes on by itself
experiment.stop()
