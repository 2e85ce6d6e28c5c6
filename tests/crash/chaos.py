"""The crash suite: training scripts SIGKILLed (whole process group) at random moments.

Each trial runs a real training script that prints ``@<stage>`` before each call and a
checkpoint's id only after its ``checkpoint()`` returned. The kill comes at a seeded random
offset after a chosen marker (or after a random delay from the start). Then ``replicate
wait`` (the real CLI) must land every printed checkpoint with the bytes of its own step, and
``replicate verify`` must find no metadata pointing at missing data. Checked with raw json and
tarfile, not through the library.

``make chaos`` runs this module: ``CHAOS_TRIALS`` trials (default 300, alternating between
local disk and a SeaweedFS it starts; ``CHAOS_SECONDS`` stops starting new ones after that
long), then prints the counts; exit 1 on any lost checkpoint or failure.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import queue
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from crash import raw

TRAIN = """
import random, sys, time
def mark(stage):
    print("@" + stage, flush=True)
mark("init")
import replicate
experiment = replicate.init(path="train.py", params={{"seed": {seed}}})
print("E", experiment.id, flush=True)
for step in range({steps}):
    with open("model.pth", "wb") as f:
        f.write(random.Random({seed} * 1000 + step).randbytes({size}))
    mark(f"call {{step}}")
    checkpoint = experiment.checkpoint(
        path="model.pth", step=step, metrics={{"loss": 1 / (step + 1)}}, quiet=True
    )
    print("C", step, checkpoint.id, flush=True)
    with open("model.pth", "wb") as f:
        f.write(b"overwritten")
    time.sleep(0.05)  # the training step
mark("exit")
"""


def expected_bytes(seed: int, step: int, size: int) -> bytes:
    return random.Random(seed * 1000 + step).randbytes(size)


@dataclass
class Trial:
    seed: int
    steps: int
    size: int
    #: the marker to kill after ("init", "call K", "C K", "exit"), or "time" (from the start)
    target: str
    offset: float


@dataclass
class Outcome:
    killed: bool
    stage: str
    printed: int = 0
    landed: int = 0
    lost: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def plan(rng: random.Random, seed: int) -> Trial:
    steps = rng.randint(1, 4)
    size = rng.choice([1 << 10, 64 << 10, 1 << 20, 4 << 20])
    kind = rng.choice(["time", "init", "call", "call", "after", "exit"])
    k = rng.randrange(steps)
    target = {"time": "time", "init": "@init", "call": f"@call {k}", "after": f"C {k}"}.get(
        kind, "@exit"
    )
    # a call takes milliseconds, an upload tens to hundreds: aim inside them
    offset = {"time": 3.0, "init": 0.5, "call": 0.02, "after": 0.1}.get(kind, 0.5)
    offset = rng.uniform(0, offset)
    return Trial(seed, steps, size, target, offset)


def _reader(stream: object, lines: queue.Queue[str | None]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        lines.put(line.rstrip("\n"))
    lines.put(None)


def run_and_kill(trial: Trial, project: Path, env: dict[str, str]) -> tuple[bool, list[str]]:
    """Run the script, SIGKILL its process group at the trial's moment; its stdout lines."""
    (project / "train.py").write_text(
        textwrap.dedent(TRAIN.format(seed=trial.seed, steps=trial.steps, size=trial.size))
    )
    process = subprocess.Popen(
        [sys.executable, "train.py"], cwd=project, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True, start_new_session=True,
    )  # fmt: skip
    lines: queue.Queue[str | None] = queue.Queue()
    reader = threading.Thread(target=_reader, args=(process.stdout, lines), daemon=True)
    reader.start()
    seen: list[str] = []
    killed = False
    start = time.monotonic()
    try:
        while True:
            wait = None if trial.target != "time" else start + trial.offset - time.monotonic()
            try:
                line = lines.get(timeout=max(wait, 0) if wait is not None else 120)
            except queue.Empty:
                line = ""
                if trial.target != "time":
                    raise RuntimeError(f"the script printed nothing for 120 s: {seen}") from None
            if line is None:
                break  # it ended before the moment came
            if line:
                seen.append(line)
            if (trial.target == "time" and not line) or line.split(" ")[:2] == trial.target.split():
                if trial.target != "time":
                    time.sleep(trial.offset)  # the kill moment itself, not a synchronisation
                os.killpg(process.pid, signal.SIGKILL)
                killed = True
                break
    finally:
        if process.poll() is None and not killed:
            os.killpg(process.pid, signal.SIGKILL)  # only on an error above
        process.wait(timeout=300)
        reader.join(timeout=10)
        assert process.stdout is not None
        process.stdout.close()
    while True:
        try:
            line = lines.get_nowait()
        except queue.Empty:
            break
        if line:
            seen.append(line)
    return killed and process.returncode == -signal.SIGKILL, seen


def stage_of(seen: list[str], project: Path, url: str) -> str:
    """Where the kill hit, read from the last marker and the state it left behind."""
    markers = [line for line in seen if line.startswith("@")]
    if not markers or ((markers[-1] == "@init") and not any(s.startswith("E ") for s in seen)):
        return "init"
    if markers[-1] == "@exit":
        return "exit drain"
    printed = {int(s.split()[1]) for s in seen if s.startswith("C ")}
    if markers[-1].startswith("@call "):
        step = int(markers[-1].split()[1])
        if step not in printed:
            for line in raw.journal_lines(project):
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                checkpoint = (entry.get("job") or {}).get("checkpoint") or {}
                if checkpoint.get("step") == step:
                    return "call: job persisted"
            return "call: snapshot"
    experiment_id = next((s.split()[1] for s in seen if s.startswith("E ")), None)
    record = raw.experiment_json(url, experiment_id) if experiment_id else None
    in_json = {c["id"] for c in (record or {}).get("checkpoints", [])}
    ids = [s.split()[2] for s in seen if s.startswith("C ")]
    if any(i not in in_json and raw.read(url, f"checkpoints/{i}.tar.gz") for i in ids):
        return "mid-metadata write"
    if any(i not in in_json for i in ids):
        return "mid-upload"
    return "between calls, all landed"


def cli(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "replicate", *args], cwd=project, env=env,
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def check(trial: Trial, seen: list[str], project: Path, url: str, env: dict[str, str]) -> Outcome:
    """After the kill: `replicate wait`, then every printed checkpoint must be stored, whole."""
    outcome = Outcome(killed=True, stage="")
    waited = cli(project, env, "wait", "--timeout", "240")
    if waited.returncode != 0:
        outcome.failures.append(f"replicate wait exited {waited.returncode}: {waited.stderr}")
    printed = {s.split()[2]: int(s.split()[1]) for s in seen if s.startswith("C ")}
    outcome.printed = len(printed)
    experiment_id = next((s.split()[1] for s in seen if s.startswith("E ")), None)
    record = raw.experiment_json(url, experiment_id) if experiment_id else None
    stored = {c["id"]: c for c in (record or {}).get("checkpoints", [])}
    for checkpoint_id, step in printed.items():
        entry = stored.get(checkpoint_id)
        data = raw.read(url, f"checkpoints/{checkpoint_id}.tar.gz")
        if entry is None or data is None:
            outcome.lost.append(
                f"{checkpoint_id} (step {step}): json={bool(entry)} tar={bool(data)}"
            )
            continue
        want = {f"{checkpoint_id}/model.pth": expected_bytes(trial.seed, step, trial.size)}
        if entry.get("step") != step or raw.tar_members(data) != want:
            outcome.failures.append(f"checkpoint {checkpoint_id} does not hold step {step}")
            continue
        outcome.landed += 1
    if len(stored) != len(set(stored)) or (record and len(record["checkpoints"]) != len(stored)):
        outcome.failures.append(f"a checkpoint is listed twice in {experiment_id}")
    outcome.failures += dangling(url)
    verified = cli(project, env, "verify")
    if verified.returncode != 0:
        outcome.failures.append(f"replicate verify exited {verified.returncode}: {verified.stdout}")
    left = pending_jobs(project)
    if left:
        outcome.failures.append(f"jobs still pending in the journal after wait: {left}")
    return outcome


def pending_jobs(project: Path) -> set[str]:
    """Job ids with a ``job`` line and no ``done`` line in the raw journals."""
    jobs, done = set(), set()
    for line in raw.journal_lines(project):
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a torn last line: its checkpoint() never returned
        if "job" in entry:
            jobs.add(entry["job"]["id"])
        done.add(entry.get("done"))
    return jobs - done


def dangling(url: str) -> list[str]:
    """Every checkpoint listed by any experiment JSON whose tarball is missing."""
    problems = []
    for key in raw.keys(url, "metadata/experiments/"):
        data = raw.read(url, key)
        for checkpoint in json.loads(data or b"{}").get("checkpoints", []):
            if raw.read(url, f"checkpoints/{checkpoint['id']}.tar.gz") is None:
                problems.append(f"{key} lists {checkpoint['id']} but its tarball is missing")
    return problems


def run_trial(trial: Trial, workdir: Path, url: str, env: dict[str, str]) -> Outcome:
    """One trial in a fresh project under ``workdir`` writing to the repository at ``url``."""
    project = workdir / "project"
    project.mkdir(parents=True)
    (project / "replicate.yaml").write_text(f"repository: {url}\n")
    killed, seen = run_and_kill(trial, project, env)
    stage = f"at {stage_of(seen, project, url)}" if killed else "none: it ended first"
    outcome = check(trial, seen, project, url, env)
    outcome.killed, outcome.stage = killed, stage
    return outcome


@dataclass
class Tally:
    trials: int = 0
    kills: collections.Counter[str] = field(default_factory=collections.Counter)
    printed: int = 0
    landed: int = 0
    lost: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def add(self, label: str, outcome: Outcome) -> None:
        self.trials += 1
        self.kills[outcome.stage] += 1
        self.printed += outcome.printed
        self.landed += outcome.landed
        self.lost += [f"{label}: {x}" for x in outcome.lost]
        self.failures += [f"{label}: {x}" for x in outcome.failures]

    def report(self, title: str) -> str:
        lines = [f"{title}: {self.trials} trials"]
        lines += [f"  kills {stage}: {n}" for stage, n in sorted(self.kills.items())]
        lines.append(f"  checkpoints printed: {self.printed}, landed: {self.landed}")
        lines.append(f"  lost: {len(self.lost)}, failures: {len(self.failures)}")
        lines += [f"    LOST {x}" for x in self.lost] + [f"    FAIL {x}" for x in self.failures]
        return "\n".join(lines)


def test_env(extra: dict[str, str]) -> dict[str, str]:
    """The environment of the scripts: test keys, no cloud profile, loopback only."""
    kept = {"AWS_ENDPOINT_URL_S3"}
    env = {
        k: v
        for k, v in os.environ.items()
        if k in kept or not k.startswith(("AWS_", "GOOGLE_", "STORAGE_"))
    }
    env.update(
        AWS_EC2_METADATA_DISABLED="true", AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
        NO_PROXY="127.0.0.1,localhost", **extra,
    )  # fmt: skip
    return env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=int(os.environ.get("CHAOS_TRIALS", "300")))
    parser.add_argument("--seed", type=int, default=int(os.environ.get("CHAOS_SEED", "1")))
    parser.add_argument("--backends", default=os.environ.get("CHAOS_BACKENDS", "file,s3"))
    parser.add_argument(
        "--seconds", type=float, default=float(os.environ.get("CHAOS_SECONDS", "0"))
    )
    args = parser.parse_args()
    stop_at = time.monotonic() + args.seconds if args.seconds else float("inf")
    from servers import make_s3_bucket, start_seaweedfs

    backends = args.backends.split(",")
    tallies = {b: Tally() for b in backends}
    with tempfile.TemporaryDirectory(prefix="replicate-chaos-") as tmp:
        base = Path(tmp)
        server = None
        env = test_env({})
        if "s3" in backends:
            server = start_seaweedfs(base / "weed", base / "weed.log")
            os.environ.update(test_env({"AWS_ENDPOINT_URL_S3": server.url}))
            env = test_env({"AWS_ENDPOINT_URL_S3": server.url})
            make_s3_bucket(server.url, "chaos")
        try:
            rng = random.Random(args.seed)
            for n in range(args.trials):
                if time.monotonic() > stop_at:
                    print(f"time budget spent after {n} trials", flush=True)
                    break
                backend = backends[n % len(backends)]
                trial = plan(rng, args.seed * 100000 + n)
                workdir = base / f"trial-{n}"
                url = (workdir / "repo").as_uri() if backend == "file" else f"s3://chaos/t{n}"
                outcome = run_trial(trial, workdir, url, env)
                tallies[backend].add(f"trial {n} ({trial})", outcome)
                print(f"trial {n} {backend}: {outcome.stage}, printed {outcome.printed}, "
                      f"landed {outcome.landed}, lost {len(outcome.lost)}, "
                      f"failures {len(outcome.failures)}", flush=True)  # fmt: skip
        finally:
            if server is not None:
                server.stop()
    total = Tally()
    for backend, tally in tallies.items():
        print(tally.report(backend))
        total.trials += tally.trials
        total.kills += tally.kills
        total.printed += tally.printed
        total.landed += tally.landed
        total.lost += tally.lost
        total.failures += tally.failures
    print(total.report("all backends"))
    return 1 if total.lost or total.failures else 0


if __name__ == "__main__":
    sys.exit(main())
