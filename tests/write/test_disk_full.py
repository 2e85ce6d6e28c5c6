"""A full disk under the spool (issue 8 defect 3), on a real small filesystem.

The project's ``.replicate/spool`` is a 4 MiB tmpfs mounted by the test (as root), and
``RLIMIT_FSIZE`` cuts a journal append short. A checkpoint that does not fit says on stderr
that it was NOT saved, training goes on to its end, no torn journal line is left for the
next job to be glued onto, ``stop()`` returns, and once there is room again checkpoints land.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from crash import raw

from write import helpers

pytestmark = pytest.mark.slow

SCRIPT = """
import glob, os, resource, shutil, signal, replicate
spool = os.path.join(".replicate", "spool")
experiment = replicate.init(disable_heartbeat=True)

def checkpoint(name, **kwargs):
    made = experiment.checkpoint(quiet=True, **kwargs)
    print(name, made.id, made.done() and made.error is not None, flush=True)

open("small.pth", "wb").write(b"s" * 100_000)
checkpoint("first", path="small.pth", metrics={"loss": 1.0})
experiment.wait()
open("big.pth", "wb").write(os.urandom(6 << 20))  # more than the whole spool filesystem
checkpoint("too-big", path="big.pth", metrics={"loss": 0.9})
os.remove("big.pth")

filler = os.open(os.path.join(spool, "filler"), os.O_WRONLY | os.O_CREAT)
try:  # fill what is left
    while os.write(filler, bytes(65536)):
        pass
except OSError:
    pass
os.close(filler)
checkpoint("no-room", path="small.pth", metrics={"loss": 0.8})
os.remove(os.path.join(spool, "filler"))  # space is freed
experiment.wait()

(journal,) = glob.glob(os.path.join(spool, "journal", "*.jsonl"))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
limit = os.path.getsize(journal) + 40  # the next job line is cut after 40 bytes
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
checkpoint("torn", metrics={"loss": 0.7})
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
checkpoint("after", path="small.pth", metrics={"loss": 0.6})
shutil.copy(journal, "journal-copy.jsonl")
experiment.stop()
print("stopped", experiment.id, flush=True)
"""


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    """A project whose spool is a 4 MiB tmpfs, unmounted at the end."""
    project = tmp_path / "project"
    spool = project / ".replicate" / "spool"
    spool.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(spool)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        (project / "replicate.yaml").write_text(f"repository: {(tmp_path / 'repo').as_uri()}\n")
        yield project
    finally:
        subprocess.run(["umount", "-l", str(spool)], check=True)


def test_a_full_spool_never_breaks_training(project: Path, tmp_path: Path) -> None:
    result = helpers.run_script(project, SCRIPT, timeout=180)
    assert result.returncode == 0, result.stderr
    lines = [line.split() for line in result.stdout.splitlines()]
    assert lines[-1][0] == "stopped", result.stdout
    made = {name: (id, failed == "True") for name, id, failed in lines[:-1]}
    assert made["first"][1] is False and made["after"][1] is False
    for name in ("too-big", "torn"):
        checkpoint_id, failed = made[name]
        assert failed, f"{name} should have failed at once: {result.stdout}"
        assert f"checkpoint {checkpoint_id[:7]} (step " in result.stderr
    assert result.stderr.count("was NOT saved") >= 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "were NOT saved" in result.stderr and "stay queued" not in result.stderr

    journal = (project / "journal-copy.jsonl").read_bytes()
    assert journal.endswith(b"\n")
    entries = [json.loads(line) for line in journal.split(b"\n")[:-1]]  # each line whole
    jobs = [e["job"]["checkpoint"]["id"] for e in entries if "job" in e and e["job"]["checkpoint"]]
    assert made["torn"][0] not in jobs and made["after"][0] in jobs

    url = (tmp_path / "repo").as_uri()
    record = raw.experiment_json(url, lines[-1][1])
    assert record is not None
    landed = [name for name in ("first", "no-room", "after") if not made[name][1]]
    assert [c["id"] for c in record["checkpoints"]] == [made[name][0] for name in landed]
    after = made["after"][0]
    data = raw.read(url, f"checkpoints/{after}.tar.gz")
    assert data is not None and raw.tar_members(data) == {f"{after}/small.pth": b"s" * 100_000}
    assert not list((project / ".replicate" / "spool" / "data").iterdir())
