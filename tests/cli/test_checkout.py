"""`replicate checkout` and the files it writes: real repositories and the Keepsake sample."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.helpers import KEEPSAKE_BEST, KEEPSAKE_FIRST, Written, invoke, read_object, write_object
from replicate.cli import _render
from replicate.repository import archive_key


def files_under(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


class TestCheckoutWritten:
    def test_experiment_means_its_best_checkpoint(self, written: Written, tmp_path: Path) -> None:
        """checkout <experiment> writes the code and the best checkpoint's files."""
        out = tmp_path / "out"
        result = invoke("checkout", written.adam[:8], "-o", str(out))
        assert result.exit_code == 0, result.output
        assert files_under(out) == {
            "train.py": b"print('training')\n",
            "model.pth": b"adam weights at step 2\n",
        }
        assert "(step 2)" in result.stdout

    def test_checkpoint_and_path(self, written: Written, tmp_path: Path) -> None:
        """checkout <checkpoint> --path model.pth writes only that file, of that step."""
        out = tmp_path / "out"
        result = invoke(
            "checkout", written.checkpoints["sgd"][0], "-o", str(out), "--path", "model.pth"
        )
        assert result.exit_code == 0, result.output
        assert files_under(out) == {"model.pth": b"sgd weights at step 0\n"}

    def test_path_matching_nothing(self, written: Written, tmp_path: Path) -> None:
        """--path naming no stored file is an error and leaves no output directory."""
        out = tmp_path / "out"
        result = invoke("checkout", written.adam, "-o", str(out), "--path", "nope.txt")
        assert result.exit_code == 1
        assert "nothing matches nope.txt" in result.stderr
        assert not out.exists()


class TestCheckoutKeepsake:
    def test_best_checkpoint_files(self, keepsake: Path, tmp_path: Path) -> None:
        """checkout of 5a9beec gives the code and data/weights.txt of step 2."""
        out = tmp_path / "out"
        result = invoke("checkout", KEEPSAKE_BEST[:7], "-o", str(out))
        assert result.exit_code == 0, result.output
        files = files_under(out)
        assert files["data/weights.txt"] == b"weights at step 2\n"
        assert files["train_notes.txt"] == b"some source file\n"
        assert set(files) == {
            "data/weights.txt",
            "train_notes.txt",
            "keepsake.yaml",
            ".keepsakeignore",
        }

    def test_refuses_to_prompt_without_a_terminal(self, keepsake: Path) -> None:
        """Overwriting the project dir needs a prompt; with no terminal it says to pass -f."""
        (keepsake / "data" / "weights.txt").write_bytes(b"my own weights\n")
        before = (keepsake / "data" / "weights.txt").read_bytes()
        result = invoke("checkout", KEEPSAKE_BEST[:7])
        assert result.exit_code == 1
        assert "pass -f" in result.stderr and "data/weights.txt" in result.stderr
        assert (keepsake / "data" / "weights.txt").read_bytes() == before
        assert not list(keepsake.glob(".replicate-checkout-*"))

    def test_force_overwrites(self, keepsake: Path) -> None:
        """-f overwrites the project's files without asking."""
        (keepsake / "data" / "weights.txt").write_bytes(b"my own weights\n")
        result = invoke("checkout", "-f", KEEPSAKE_BEST[:7])
        assert result.exit_code == 0, result.output
        assert (keepsake / "data" / "weights.txt").read_bytes() == b"weights at step 2\n"
        assert "1 overwritten" in result.stdout

    def test_prompt_yes_and_no(self, keepsake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """On a terminal the overwrite prompt is asked: no changes nothing, yes overwrites."""
        monkeypatch.setattr(_render, "stdin_is_interactive", lambda: True)
        (keepsake / "data" / "weights.txt").write_bytes(b"my own weights\n")
        before = (keepsake / "data" / "weights.txt").read_bytes()
        declined = invoke("checkout", KEEPSAKE_BEST[:7], input="n\n")
        assert declined.exit_code == 1
        assert (keepsake / "data" / "weights.txt").read_bytes() == before
        accepted = invoke("checkout", KEEPSAKE_BEST[:7], input="y\n")
        assert accepted.exit_code == 0, accepted.output
        assert (keepsake / "data" / "weights.txt").read_bytes() == b"weights at step 2\n"

    def test_unchanged_files_need_no_prompt(self, keepsake: Path, tmp_path: Path) -> None:
        """Checking out the same files twice does not ask: nothing would change."""
        out = tmp_path / "out"
        assert invoke("checkout", KEEPSAKE_BEST[:7], "-o", str(out)).exit_code == 0
        again = invoke("checkout", KEEPSAKE_BEST[:7], "-o", str(out))
        assert again.exit_code == 0, again.output

    def test_checkpoint_without_files(self, keepsake: Path, tmp_path: Path) -> None:
        """A metrics-only checkpoint (no files of its own) still gives its experiment's code."""
        out = tmp_path / "out"
        result = invoke("checkout", "27d2f33", "-o", str(out))
        assert result.exit_code == 0, result.output
        assert files_under(out)["data/weights.txt"] == b"step-weights\n"  # as in the code


class TestCheckoutErrors:
    def test_truncated_tarball(self, keepsake: Path) -> None:
        """A truncated checkpoint tarball is an error that leaves every file as it was."""
        url = (keepsake / ".keepsake").as_uri()
        key = archive_key("checkpoints", KEEPSAKE_BEST)
        write_object(url, key, read_object(url, key)[:-20])
        (keepsake / "data" / "weights.txt").write_bytes(b"my own weights\n")
        before = files_under(keepsake)
        result = invoke("checkout", "-f", KEEPSAKE_BEST[:7])
        assert result.exit_code == 1
        assert "truncated" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert files_under(keepsake) == before

    def test_truncated_into_new_directory(self, keepsake: Path, tmp_path: Path) -> None:
        """A failed checkout into a directory that did not exist leaves no directory."""
        url = (keepsake / ".keepsake").as_uri()
        key = archive_key("experiments", KEEPSAKE_FIRST)
        write_object(url, key, read_object(url, key)[:100])
        out = tmp_path / "new" / "out"
        result = invoke("checkout", KEEPSAKE_BEST[:7], "-o", str(out))
        assert result.exit_code == 1
        assert not (tmp_path / "new").exists()

    def test_missing_tarball(self, keepsake: Path, tmp_path: Path) -> None:
        """A checkpoint whose tarball is gone is a clear error naming the object."""
        (keepsake / ".keepsake" / archive_key("checkpoints", KEEPSAKE_BEST)).unlink()
        result = invoke("checkout", KEEPSAKE_BEST[:7], "-o", str(tmp_path / "out"))
        assert result.exit_code == 1
        assert "missing" in result.stderr and KEEPSAKE_BEST in result.stderr
