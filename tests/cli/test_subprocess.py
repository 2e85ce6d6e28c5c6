"""The read commands as real subprocesses (`python -m replicate`), as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

from cli.helpers import KEEPSAKE_BEST, KEEPSAKE_FIRST, Written, run_cli


class TestSubprocessKeepsake:
    def test_ls(self, keepsake: Path) -> None:
        """ls prints a plain table within 80 columns and nothing on stderr."""
        result = run_cli(keepsake, "ls")
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        assert "\x1b[" not in result.stdout  # NO_COLOR
        assert f"{KEEPSAKE_BEST[:7]} (step 2)" in result.stdout
        assert all(len(line) <= 80 for line in result.stdout.splitlines())

    def test_show_and_diff(self, keepsake: Path) -> None:
        """show and diff run and print what they should."""
        show = run_cli(keepsake, "show", KEEPSAKE_FIRST[:7])
        assert show.returncode == 0, show.stderr
        assert "best" in show.stdout
        diff = run_cli(keepsake, "diff", KEEPSAKE_FIRST[:7], "983ac13")
        assert diff.returncode == 0, diff.stderr
        assert "optimizer:" in diff.stdout

    def test_checkout_with_closed_stdin(self, keepsake: Path) -> None:
        """With stdin at /dev/null a checkout that would overwrite refuses, naming -f."""
        (keepsake / "data" / "weights.txt").write_text("mine\n")
        result = run_cli(keepsake, "checkout", KEEPSAKE_BEST[:7])
        assert result.returncode == 1
        assert "pass -f" in result.stderr
        assert (keepsake / "data" / "weights.txt").read_text() == "mine\n"
        forced = run_cli(keepsake, "checkout", "-f", KEEPSAKE_BEST[:7])
        assert forced.returncode == 0, forced.stderr
        assert (keepsake / "data" / "weights.txt").read_text() == "weights at step 2\n"

    def test_usage_error_exits_2(self, keepsake: Path) -> None:
        """An unknown option is a usage error: exit 2."""
        assert run_cli(keepsake, "ls", "--nope").returncode == 2

    def test_unknown_id_exits_1(self, keepsake: Path) -> None:
        """An unknown id is one line on stderr, exit 1."""
        result = run_cli(keepsake, "show", "abcdef")
        assert result.returncode == 1
        assert len(result.stderr.strip().splitlines()) == 1


class TestSubprocessWritten:
    def test_ls_and_checkout(self, written: Written, tmp_path: Path) -> None:
        """ls --json and checkout work in a fresh process on each backend."""
        listed = run_cli(written.project, "ls", "--json")
        assert listed.returncode == 0, listed.stderr
        assert [e["id"] for e in json.loads(listed.stdout)] == [written.adam, written.sgd]
        out = tmp_path / "out"
        checkout = run_cli(written.project, "checkout", written.sgd[:8], "-o", str(out))
        assert checkout.returncode == 0, checkout.stderr
        assert (out / "model.pth").read_bytes() == b"sgd weights at step 1\n"

    def test_rm(self, written: Written) -> None:
        """rm -f in a fresh process removes an experiment for good."""
        result = run_cli(written.project, "rm", "-f", written.adam)
        assert result.returncode == 0, result.stderr
        listed = run_cli(written.project, "ls", "-q")
        assert listed.stdout.split() == [written.sgd]
