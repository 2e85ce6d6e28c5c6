"""Checkout checks every target before it moves anything, and never writes through a link."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli.helpers import invoke

import replicate
from hostile.test_hostile_archives import listing, one_error_line
from replicate.extract import ExtractTo


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """Code train.py, and a checkpoint of model.pth and sub/w.bin; returns (url, checkpoint)."""
    project = tmp_path / "project"
    (project / "sub").mkdir(parents=True)
    (project / "train.py").write_text("print('training')\n")
    (project / "model.pth").write_bytes(b"stored weights\n")
    (project / "sub" / "w.bin").write_bytes(b"stored sub weights\n")
    url = (tmp_path / "repo").as_uri()
    experiment = replicate.init(path="train.py", repository=url, project_dir=project)
    checkpoint = experiment.checkpoint(path=".", step=0, quiet=True)
    experiment.stop()
    monkeypatch.chdir(project)
    return url, checkpoint.id


def test_a_directory_in_the_way_moves_nothing(project: tuple[str, str], tmp_path: Path) -> None:
    """train.py being a directory is found before model.pth (sorted first) is replaced."""
    url, checkpoint = project
    target = tmp_path / "target"
    (target / "train.py").mkdir(parents=True)
    (target / "model.pth").write_bytes(b"mine\n")
    before = listing(target)
    result = invoke("checkout", checkpoint, "-R", url, "-o", str(target), "-f")
    assert result.exit_code == 1
    assert "train.py is a directory" in one_error_line(result.stderr)
    assert listing(target) == before


def test_a_symlink_out_of_the_target_is_not_written_through(
    project: tuple[str, str], tmp_path: Path
) -> None:
    """target/sub -> a directory outside: refused, and nothing lands in that directory."""
    url, checkpoint = project
    target, outside = tmp_path / "target", tmp_path / "outside"
    target.mkdir()
    outside.mkdir()
    (target / "sub").symlink_to(outside)
    before = listing(target), listing(outside)
    result = invoke("checkout", checkpoint, "-R", url, "-o", str(target), "-f")
    assert result.exit_code == 1
    assert "outside" in one_error_line(result.stderr)
    assert (listing(target), listing(outside)) == before


def test_a_symlink_inside_the_target_is_fine(project: tuple[str, str], tmp_path: Path) -> None:
    """target/sub -> target/real: the files land in target/real."""
    url, checkpoint = project
    target = tmp_path / "target"
    (target / "real").mkdir(parents=True)
    (target / "sub").symlink_to(target / "real")
    result = invoke("checkout", checkpoint, "-R", url, "-o", str(target), "-f")
    assert result.exit_code == 0, result.output
    assert (target / "real" / "w.bin").read_bytes() == b"stored sub weights\n"


def test_the_question_lists_new_files_too(project: tuple[str, str], tmp_path: Path) -> None:
    """One file would change and two are new: the question names both kinds."""
    url, checkpoint = project
    target = tmp_path / "target"
    target.mkdir()
    (target / "model.pth").write_bytes(b"mine\n")
    result = invoke("checkout", checkpoint, "-R", url, "-o", str(target))
    assert result.exit_code == 1
    line = one_error_line(result.stderr)
    assert "Overwrite 1 file(s) (model.pth)" in line
    assert "create 2 file(s) (sub/w.bin, train.py)" in line
    assert listing(target) == {"model.pth": ("file", 0o644, b"mine\n")}


def test_a_later_archive_replaces_a_file_where_it_needs_a_directory(tmp_path: Path) -> None:
    """The code's file ``a`` gives way to the checkpoint's ``a/b`` (the checkpoint wins)."""
    sink = ExtractTo(tmp_path)
    for rel in ("a", "a/b"):
        file = sink.begin(rel, 1, 0o644)
        assert file is not None
        file.write(b"x")
        sink.end(rel, file)
    assert sorted(sink.written) == ["a/b"] and (tmp_path / "a" / "b").read_bytes() == b"x"
