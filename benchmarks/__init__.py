"""Benchmarks against the performance targets: ``python -m benchmarks [name ...] [--big]``.

``--quick`` makes a smoke run. Each benchmark module's docstring states its target.

Every figure is reported next to a baseline measured in the same run (machines are noisy),
as a ratio, plus absolute numbers. Nothing here asserts on wall-clock time: it is a measuring
tool. Each benchmark runs in its own subprocess with a fresh temporary project directory;
the S3 ones start their own SeaweedFS (`weed mini`) on loopback and stop it at the end.
"""

from __future__ import annotations

#: Benchmark names in the order the default suite runs them, with one line each.
BENCHMARKS: dict[str, str] = {
    "checkpoint_blocking": "blocking time of checkpoint(path=...) and checkpoint_dir vs a copy",
    "blocking_load": "checkpoint(path=...) blocking while uploads run vs a copy under raw uploads",
    "metrics_only": "checkpoint(metrics=...) latency over checkpoints 1..N (flatness)",
    "metrics_profile": "where a metrics-only checkpoint's time goes (components, GIL, worker)",
    "init": "replicate.init() time in a cold subprocess: small project and 10,000 files",
    "landing": "landing on disk: time to durable vs cp, and 5 checkpoints back to back",
    "time_to_durable": "checkpoint() call -> wait() returns, to disk and to SeaweedFS",
    "sweep": "blocking and time to durable against size (1 MiB -> 256 MiB), disk and S3",
    "ls_cold": "listing 1,000 experiments x 20 checkpoints on SeaweedFS, cold process",
    "memory": "peak RSS growth while uploading a big checkpoint to SeaweedFS",
    "loop_inflation": "slowdown of a GIL-bound and a numpy training loop checkpointing 256 MiB",
    "integrations": "a save of ~64 MiB in Lightning, Transformers, Keras: own vs with replicate",
    "distributed": "2 ranks, dcp.async_save of 2 x 256 MiB: blocking vs DCP's own, durable on S3",
    "scale": "1, 2, 4, 8 writer processes to one repository (disk, S3): blocking, durable",
    "peers": "Keepsake 0.4.2, MLflow, W&B offline, tarfile+boto3 beside replicate (make bench-peers)",
    "ui": "replicate ui: experiments page (1,000 x 20, SeaweedFS) cold/warm; 10,000-point chart",
}
#: Run only when named (``make bench-peers``): they need venvs of their own.
ON_REQUEST = frozenset({"peers"})
