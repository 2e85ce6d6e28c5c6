"""Other tools side by side with replicate, in one run: blocking and landing, disk and S3.

Each tool runs in its own venv (``make bench-peers`` makes them under ``.venv-peers/``; none of
them is a dependency of the project), in a fresh process, on the same file of float32 weights
(256 MiB; 64 MiB with ``--quick``): ``COUNT`` saves back to back, the file rewritten before
each (like ``torch.save``). Per tool:

- blocking: each save call's wall time (p50, and as a multiple of ``cp`` of the same file);
- landing: from the first save call until every save is durable where the tool puts it.

Tools: replicate (this checkout); Keepsake 0.4.2 (``experiment.checkpoint(path=...)``, landing
= ``experiment.stop()`` returns, which waits for its uploads); MLflow ``log_artifact`` (it blocks
until stored); W&B offline (``Artifact.add_file`` + ``run.log_artifact``, landing =
``run.finish()``); a hand-written ``tarfile`` (gzip level 9) + boto3 ``upload_file``.
Disk for all; S3 (SeaweedFS) for replicate, MLflow and tarfile+boto3 (Keepsake 0.4.2's Go
client and W&B offline have no S3 endpoint setting to point at a loopback server).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

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
    rewrite,
    settle,
    temp_dir,
)
from benchmarks._seaweed import seaweed
from benchmarks.landing import KEEPSAKE_5X256_ISSUE, weights_file

NAME = "peers"
BUCKET = "bench"
COUNT = 5
ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT / ".venv-peers"

_PRELUDE = """
import json, os, sys, time
source, where, url, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
def rewrite():
    with open(source, "rb") as a, open("model.pth", "wb") as b:
        while chunk := a.read(8 << 20):
            b.write(chunk)
blocking = []
def timed(fn):
    rewrite()
    start = time.perf_counter()
    fn()
    blocking.append(time.perf_counter() - start)
"""

#: Each tool's script: ``count`` saves, then {"blocking": [...], "landing": seconds}.
SCRIPTS: dict[str, str] = {
    "replicate": """
import replicate
experiment = replicate.init(params={"lr": 0.1}, repository=url)
experiment.wait()
handles = []
for i in range(count):
    timed(lambda: handles.append(experiment.checkpoint(path="model.pth", step=i, quiet=True)))
    first = first if i else time.perf_counter() - blocking[0]
for handle in handles:
    handle.wait()
landing = time.perf_counter() - first
experiment.stop()
""",
    "keepsake": """
import keepsake
experiment = keepsake.init(path=".", params={"lr": 0.1})
for i in range(count):
    timed(lambda: experiment.checkpoint(path="model.pth", step=i))
    first = first if i else time.perf_counter() - blocking[0]
experiment.stop()
landing = time.perf_counter() - first
""",
    "mlflow": """
import mlflow
mlflow.set_tracking_uri("file://" + os.path.abspath("mlruns"))
experiment = mlflow.create_experiment("bench", artifact_location=url)
with mlflow.start_run(experiment_id=experiment):
    for i in range(count):
        timed(lambda: mlflow.log_artifact("model.pth", artifact_path=f"step{i}"))
        first = first if i else time.perf_counter() - blocking[0]
    landing = time.perf_counter() - first
""",
    "wandb": """
import wandb
run = wandb.init(mode="offline", project="bench", dir=os.path.abspath("."))
def save(i):
    artifact = wandb.Artifact(f"model-{i}", type="model")
    artifact.add_file("model.pth")
    run.log_artifact(artifact)
for i in range(count):
    timed(lambda: save(i))
    first = first if i else time.perf_counter() - blocking[0]
run.finish()
landing = time.perf_counter() - first
""",
    "boto3": """
import tarfile
def save(i):
    with tarfile.open(f"model-{i}.tar.gz", "w:gz") as tar:
        tar.add("model.pth", arcname="model.pth")
    if where == "S3":
        import boto3
        bucket, _, prefix = url[len("s3://"):].partition("/")
        boto3.client("s3").upload_file(f"model-{i}.tar.gz", bucket, f"{prefix}/model-{i}.tar.gz")
    else:
        os.replace(f"model-{i}.tar.gz", os.path.join(url[len("file://"):], f"model-{i}.tar.gz"))
os.makedirs(url[len("file://"):], exist_ok=True) if where == "disk" else None
for i in range(count):
    timed(lambda: save(i))
    first = first if i else time.perf_counter() - blocking[0]
landing = time.perf_counter() - first
""",
}
_EPILOGUE = """
print(json.dumps({"blocking": blocking, "landing": landing}))
"""
#: Where each tool is measured.
WHERE = {
    "replicate": ("disk", "S3"),
    "keepsake": ("disk",),
    "mlflow": ("disk", "S3"),
    "wandb": ("disk",),
    "boto3": ("disk", "S3"),
}


def _python(tool: str) -> Path | None:
    if tool == "replicate":
        return ROOT / ".venv" / "bin" / "python"
    path = PEERS / tool / "bin" / "python"
    return path if path.exists() else None


def _run(tool: str, where: str, url: str, source: Path, work: Path, env: dict[str, str]) -> Any:
    python = _python(tool)
    if python is None:
        return "no venv (run `make bench-peers`)"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    if tool == "keepsake":
        (work / "keepsake.yaml").write_text(f"repository: {url}\n")
    code = _PRELUDE + SCRIPTS[tool] + _EPILOGUE
    settle()
    done = subprocess.run(
        [str(python), "-c", code, str(source), where, url, str(COUNT)],
        cwd=work,
        # MLflow 3 refuses its file store unless told (its database store needs SQLAlchemy)
        env={
            **env,
            "WANDB_SILENT": "true",
            "WANDB_MODE": "offline",
            "MLFLOW_ALLOW_FILE_STORE": "true",
        },
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if done.returncode != 0:
        return f"failed: {done.stderr.strip().splitlines()[-1][:100] if done.stderr.strip() else done.returncode}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def _copy_time(source: Path, work: Path) -> float:
    model = work / "model.pth"
    times = []
    for _ in range(3):
        rewrite(source, model)
        settle()
        start = time.perf_counter()
        shutil.copyfile(model, work / "copy.pth")
        times.append(time.perf_counter() - start)
        (work / "copy.pth").unlink()
    return p50(times)


def run(options: Options) -> None:
    size = 64 * MiB if options.quick else 256 * MiB
    source = weights_file(size)
    rows: list[list[object]] = []
    results: dict[tuple[str, str], Any] = {}
    with temp_dir("rbench-peers") as tmp:
        work = tmp / "work"
        work.mkdir()
        copy = _copy_time(source, work)
        for tool, places in WHERE.items():
            if "disk" in places:
                progress(f"{tool} on disk: {COUNT} × {fmt_bytes(size)}")
                repo = tmp / f"repo-{tool}"
                results[(tool, "disk")] = _run(
                    tool, "disk", f"file://{repo}", source, work, dict(os.environ)
                )
                shutil.rmtree(repo, ignore_errors=True)
        with seaweed(BUCKET) as server:
            for tool, places in WHERE.items():
                if "S3" in places:
                    progress(f"{tool} on S3: {COUNT} × {fmt_bytes(size)}")
                    env = {**server.env(), "MLFLOW_S3_ENDPOINT_URL": server.endpoint}
                    results[(tool, "S3")] = _run(
                        tool, "S3", f"s3://{BUCKET}/{tool}", source, work, env
                    )

    mine = {where: results.get(("replicate", where)) for where in ("disk", "S3")}
    for (tool, where), result in results.items():
        if not isinstance(result, dict):
            rows.append([tool, where, "-", "-", "-", "-", str(result)])
            continue
        b50 = p50(result["blocking"])
        ours = mine[where]
        vs = fmt_x(ratio(result["landing"], ours["landing"])) if isinstance(ours, dict) else "-"
        rows.append(
            [tool, where, fmt_s(b50), fmt_x(ratio(b50, copy)), fmt_s(result["landing"]), vs, ""]
        )
    print_table(
        f"peers: {COUNT} saves of {fmt_bytes(size)} float32 weights back to back, one run",
        [
            "tool",
            "where",
            "blocking p50",
            "× cp",
            f"first call → all {COUNT} landed",
            "× replicate",
            "note",
        ],
        rows,
    )
    note(f"cp of the same file (idle): {fmt_s(copy)}.")
    keepsake, ours = results.get(("keepsake", "disk")), mine["disk"]
    if isinstance(keepsake, dict) and isinstance(ours, dict):
        record_summary(
            NAME,
            f"disk {COUNT} × {fmt_bytes(size)} landing vs Keepsake 0.4.2",
            fmt_s(ours["landing"]),
            "< Keepsake (same run)",
            ours["landing"] < keepsake["landing"],
            f"Keepsake {fmt_s(keepsake['landing'])}: {fmt_x(ratio(ours['landing'], keepsake['landing']))}"
            + (
                ""
                if size == 256 * MiB
                else f"; issue 11's 256 MiB figure: {fmt_s(KEEPSAKE_5X256_ISSUE)}"
            ),
        )
