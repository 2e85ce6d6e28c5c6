"""Resource bounds: a zip bomb and a flood of members against a small real file system.

The small file system is a tmpfs mounted by the test (root only; skipped where mounting is
impossible). The decoder's own member and byte limits are checked directly on the Unpacker.
"""

from __future__ import annotations

import functools
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cli.helpers import invoke, write_object

import replicate
from hostile.crafted import end, gz, header, member
from hostile.test_hostile_archives import Stored, listing, one_error_line, write_one
from replicate.errors import ArchiveTooLarge, CorruptedArchive
from replicate.extract import Limits, Unpacker
from replicate.repository import archive_key

MiB = 1 << 20


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs with 400 inodes, unmounted after the test."""
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m,nr_inodes=400", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.fixture
def stored(tmp_path: Path) -> Stored:
    return write_one((tmp_path / "repo").as_uri(), tmp_path / "project")


@functools.cache
def bomb(cid: str) -> bytes:
    """32 MiB of zeros in one member: about 32 KiB gzipped (a ratio near 1000:1)."""
    return gz(header(f"{cid}/zeros.bin", size=32 * MiB) + bytes(32 * MiB) + end())


def flood(cid: str) -> bytes:
    """1,000 empty files: more than the small file system has inodes."""
    return gz(b"".join(member(f"{cid}/f{i:04}") for i in range(1000)) + end())


@pytest.mark.parametrize("build", [bomb, flood])
def test_checkout_onto_a_small_disk_stops_cleanly(
    build: Callable[[str], bytes], stored: Stored, small_fs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Declared sizes are checked against the free space before writing: one line, no change."""
    write_object(
        stored.url, archive_key("checkpoints", stored.checkpoint), build(stored.checkpoint)
    )
    target = small_fs / "target"
    target.mkdir()
    (target / "model.pth").write_bytes(b"mine\n")
    before = listing(small_fs)
    monkeypatch.chdir(stored.project)
    result = invoke("checkout", stored.checkpoint, "-R", stored.url, "-o", str(target), "-f")
    assert result.exit_code == 1, result.output
    assert "no room for" in one_error_line(result.stderr)
    assert listing(small_fs) == before


def test_open_of_a_bomb_member_checks_the_temp_dir(
    stored: Stored, small_fs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checkpoint.open spools into the temp dir only what fits there."""
    write_object(stored.url, archive_key("checkpoints", stored.checkpoint), bomb(stored.checkpoint))
    monkeypatch.setattr(tempfile, "tempdir", str(small_fs))
    experiment = replicate.experiments.get(stored.experiment, repository=stored.url)
    with pytest.raises(ArchiveTooLarge, match=r"no room for 'zeros\.bin'"):
        experiment.checkpoint(stored.checkpoint).open("zeros.bin")
    assert listing(small_fs) == {}


class _Count:
    def __init__(self) -> None:
        self.members = 0

    def begin(self, rel: str, size: int, mode: int) -> None:
        self.members += 1

    def end(self, rel: str, file: object) -> bool:
        return False


def test_member_limit() -> None:
    """More headers than the limit stop the decoder at the first one over."""
    sink = _Count()
    unpacker = Unpacker(sink, "t.tar.gz", limits=Limits(members=100))
    with pytest.raises(ArchiveTooLarge, match="more than 100 members"):
        unpacker.feed(gz(b"".join(member(f"id/f{i}") for i in range(101)) + end()))
    assert sink.members == 100


def test_total_bytes_limit() -> None:
    """Declared sizes add up across members; the one going over is refused before its data."""
    sink = _Count()
    unpacker = Unpacker(sink, "t.tar.gz", limits=Limits(total_bytes=10_000))
    data = b"".join(member(f"id/f{i}", bytes(3000)) for i in range(4)) + end()
    with pytest.raises(ArchiveTooLarge, match="more than 10,000 bytes"):
        unpacker.feed(gz(data))
    assert sink.members == 3


def test_valid_bomb_is_well_formed_for_verify(
    stored: Stored, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A high ratio alone is not damage: verify, which writes nothing, accepts it."""
    write_object(stored.url, archive_key("checkpoints", stored.checkpoint), bomb(stored.checkpoint))
    monkeypatch.chdir(stored.project)
    result = invoke("verify", stored.checkpoint, "-R", stored.url)
    assert result.exit_code == 0, result.output
    with pytest.raises(CorruptedArchive):  # a cut bomb is damage, though
        unpacker = Unpacker(_Count(), "t.tar.gz")
        unpacker.feed(bomb(stored.checkpoint)[:-100])
        unpacker.close()
