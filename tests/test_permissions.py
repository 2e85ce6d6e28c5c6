"""Mode bits survive the round trip: snapshot, tarball member, checkout; the spool is private."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli.helpers import read_object

import replicate
from replicate.archive import snapshot
from replicate.repository import archive_key


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_snapshot_keeps_a_private_file_private(tmp_path: Path) -> None:
    """The spool copy of a 0600 file is 0600, of a 0755 script 0755."""
    (tmp_path / "src").mkdir()
    for name, bits in (("private.bin", 0o600), ("run.sh", 0o755)):
        (tmp_path / "src" / name).write_bytes(b"x")
        (tmp_path / "src" / name).chmod(bits)
    files = [(tmp_path / "src" / n, n) for n in ("private.bin", "run.sh")]
    snapshot(files, tmp_path / "copy")
    assert mode(tmp_path / "copy" / "private.bin") == 0o600
    assert mode(tmp_path / "copy" / "run.sh") == 0o755


def test_modes_end_to_end(tmp_path: Path, umask_022: object) -> None:
    """0600 and 0755 files keep their bits in the tarball and on checkout; spool is private."""
    project = tmp_path / "project"
    project.mkdir()
    for name, bits in (("private.bin", 0o600), ("run.sh", 0o755), ("plain.txt", 0o644)):
        (project / name).write_bytes(name.encode())
        (project / name).chmod(bits)
    url = (tmp_path / "repo").as_uri()
    experiment = replicate.init(path=".", repository=url, project_dir=project)
    spool = project / ".replicate" / "spool"
    locks = list((spool / "owners").glob("*.lock"))
    assert mode(spool) == 0o700
    assert locks and all(mode(lock) == 0o600 for lock in locks)
    checkpoint = experiment.checkpoint(path=".", step=0, quiet=True)
    experiment.stop()
    data = read_object(url, archive_key("checkpoints", checkpoint.id))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name.split("/", 1)[1]: m.mode for m in tar.getmembers()}
    assert members == {"private.bin": 0o600, "run.sh": 0o755, "plain.txt": 0o644}
    out = tmp_path / "out"
    replicate.experiments.get(experiment.id, repository=url).checkpoint(checkpoint.id).checkout(out)
    assert {p.name: mode(p) for p in out.iterdir()} == {
        "private.bin": 0o600,
        "run.sh": 0o755,
        "plain.txt": 0o644,
    }
