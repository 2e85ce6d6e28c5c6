"""Bad input: one clear line naming the problem, the right exit code, and nothing changed.

One table of cases across the Python API, the CLI (a real ``python -m replicate`` subprocess)
and the settings. Each case runs against its own copy of a repository written by the real
write path, and every file under the copy (the repository, the project and its spool) is
compared byte for byte before and after. One case runs against S3, read back with boto3.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from bad_input_cases import (
    API_CASES,
    CLI_CASES,
    NO_MATCH,
    NOT_AN_ID,
    USAGE,
    Api,
    CheckpointCall,
    Cli,
    Work,
)
from cli.helpers import write_experiments
from servers import s3_client

import replicate

# ---- a repository written once, copied for each case ---------------------------------------


@dataclass
class Base:
    root: Path
    ids: dict[str, str]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Base:
    """Two experiments (adam, sgd) and a decoy sharing adam's first 6 characters.

    The decoy sorts before adam (ids are listed sorted in the ambiguity message) and differs
    from it in the first 12 characters.
    """
    root = tmp_path_factory.mktemp("bad-input-base")
    written = write_experiments((root / "repo").as_uri(), root / "project")
    decoy = written.adam[:6] + "0" * 58
    assert decoy < written.adam and decoy[:12] != written.adam[:12]
    experiments_dir = root / "repo" / "metadata" / "experiments"
    record = json.loads((experiments_dir / f"{written.sgd}.json").read_bytes())
    record.update(id=decoy, checkpoints=[])
    (experiments_dir / f"{decoy}.json").write_text(json.dumps(record))
    (root / "afile").write_text("a file, not a directory\n")
    ids = {"adam": written.adam, "sgd": written.sgd, "decoy": decoy}
    ids["best"] = written.checkpoints["adam"][2]
    return Base(root, ids)


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its bytes (None for a directory)."""
    found: dict[str, bytes | None] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        found[rel] = None if path.is_dir() and not path.is_symlink() else path.read_bytes()
    return found


@pytest.fixture
def work(base: Base, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Work:
    root = tmp_path / "w"
    shutil.copytree(base.root, root, symlinks=True)
    result = Work(root, base.ids)
    (result.project / "replicate.yaml").write_text(f"repository: {result.url}\n")
    monkeypatch.chdir(result.project)
    monkeypatch.delenv("REPLICATE_REPOSITORY", raising=False)
    return result


def write_files(work: Work, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        (work.root / work.fill(rel)).write_bytes(data)


@pytest.mark.parametrize("case", CLI_CASES.values(), ids=CLI_CASES.keys())
def test_cli(case: Cli, work: Work) -> None:
    write_files(work, case.files)
    if case.yaml is not None:
        (work.project / "replicate.yaml").write_bytes(case.yaml)
    before = snapshot(work.root)
    result = subprocess.run(
        [sys.executable, "-m", "replicate", *(work.fill(a) for a in case.args)],
        cwd=work.project,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1", **case.env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.splitlines()
    if case.code == USAGE:  # click's usage lines, then the one line that says what is wrong
        assert lines[0].startswith("Usage: ") and lines[1].startswith("Try ")
        lines = lines[3:]
    assert lines == ["Error: " + work.fill(case.message)]
    assert result.returncode == case.code
    assert result.stdout == ""
    assert snapshot(work.root) == before


@pytest.mark.parametrize("case", API_CASES.values(), ids=API_CASES.keys())
def test_api(case: Api, work: Work) -> None:
    write_files(work, case.files)
    experiment = None
    call = case.call
    if isinstance(case.call, CheckpointCall):
        kwargs = case.call.kwargs
        (work.project / "model.pth").write_bytes(b"weights")
        experiment = replicate.init(
            repository=work.url, project_dir=work.project, disable_heartbeat=True
        )
        assert experiment.wait(60)
        step = kwargs.get("dir_step")
        if step is not None:
            call = lambda _: experiment.checkpoint_dir(step=step)
        else:
            call = lambda _: experiment.checkpoint(quiet=True, **kwargs)
    before = snapshot(work.root)
    try:
        with pytest.raises(case.error) as raised:
            call(work)
        assert str(raised.value) == work.fill(case.message)
        assert "\n" not in str(raised.value)
        assert snapshot(work.root) == before
    finally:
        if experiment is not None:
            experiment.stop()


# ---- one case against S3, read back with plain boto3 -------------------------------------


def bucket_snapshot(endpoint: str, bucket: str) -> dict[str, bytes]:
    client = s3_client(endpoint)
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            found[item["Key"]] = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
    return found


@pytest.mark.s3
def test_s3_bad_ids_change_nothing(s3_bucket: str, s3_endpoint: str, tmp_path: Path) -> None:
    """rm and show with bad ids against S3: one line, exit 1, every object unchanged."""
    url = f"s3://{s3_bucket}/repo"
    write_experiments(url, tmp_path / "project")
    before = bucket_snapshot(s3_endpoint, s3_bucket)
    assert before
    for args, message in [
        (("rm", "-f", "zzzz"), NOT_AN_ID.format("zzzz")),
        (("rm", "-f", "0000"), NO_MATCH.format("0000").format(url=url)),
        (("show", "0000"), NO_MATCH.format("0000").format(url=url)),
    ]:
        result = subprocess.run(
            [sys.executable, "-m", "replicate", *args, "-R", url],
            cwd=tmp_path,
            env={**os.environ, "NO_COLOR": "1"},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert (result.returncode, result.stderr, result.stdout) == (1, f"Error: {message}\n", "")
    assert bucket_snapshot(s3_endpoint, s3_bucket) == before


# ---- issue 8, defect 14: one bad experiment does not stop the others ----------------------


def run_cli(work: Work, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "replicate", *args],
        cwd=work.project,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_dict_metric_does_not_break_filter_and_sort(work: Work) -> None:
    """sgd's 'loss' is a dict: it does not match an ordering filter and sorts last."""
    key = work.repo / "metadata" / "experiments" / f"{work.ids['sgd']}.json"
    record = json.loads(key.read_bytes())
    for checkpoint in record["checkpoints"]:
        checkpoint["metrics"]["loss"] = {"train": 0.1, "val": 0.2}
    key.write_text(json.dumps(record))
    before = snapshot(work.root)
    found = run_cli(work, "ls", "-q", "--filter", "loss < 0.3")
    assert (found.returncode, found.stderr) == (0, "")
    assert found.stdout.split() == [work.ids["adam"]]
    for spec in ("loss", "loss-desc"):
        ordered = run_cli(work, "ls", "-q", "--sort", spec)
        assert (ordered.returncode, ordered.stderr) == (0, "")
        assert ordered.stdout.split()[0] == work.ids["adam"]
        assert sorted(ordered.stdout.split()) == sorted(
            [work.ids[n] for n in ("adam", "sgd", "decoy")]
        )
    assert snapshot(work.root) == before


def test_verify_reports_every_bad_key_and_goes_on(work: Work) -> None:
    """Two unreadable experiment JSONs, an odd name, a missing and a damaged tarball: all listed."""
    experiments_dir = work.repo / "metadata" / "experiments"
    (experiments_dir / f"{work.ids['decoy']}.json").write_bytes(b"{not json")
    (experiments_dir / "odd name.json").write_bytes(b"[]")
    adam_checkpoints = json.loads((experiments_dir / f"{work.ids['adam']}.json").read_bytes())
    first, second = (c["id"] for c in adam_checkpoints["checkpoints"][:2])
    (work.repo / "checkpoints" / f"{first}.tar.gz").unlink()
    (work.repo / "checkpoints" / f"{second}.tar.gz").write_bytes(b"\x1f\x8b truncated")
    before = snapshot(work.root)
    result = run_cli(work, "verify", "--json")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    text = result.stdout
    for named in (work.ids["decoy"], "odd name", first, second):
        assert named in text, named
    assert snapshot(work.root) == before
