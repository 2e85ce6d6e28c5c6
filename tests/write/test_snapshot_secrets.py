"""Secrets stay out of the code snapshot and the recorded command (checked in the raw tarball)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import replicate
from replicate.api import redact_argv
from replicate.repository import experiment_key
from write import helpers


class TestSnapshotExcludes:
    def test_env_files_keys_and_links_out_are_not_captured(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """.env*, key files and a symlink to a file outside the project never reach the tarball."""
        project = tmp_path / "project"
        project.mkdir()
        outside = tmp_path / "secret.txt"
        outside.write_text("SENTINEL-OUTSIDE")
        (project / "train.py").write_text("print('hi')")
        (project / ".env").write_text("API_KEY=SENTINEL-ENV")
        (project / ".env.production").write_text("SENTINEL-ENV-PROD")
        (project / "server.pem").write_text("SENTINEL-PEM")
        (project / "id_ed25519").write_text("SENTINEL-SSH")
        (project / ".aws").mkdir()
        (project / ".aws" / "credentials").write_text("SENTINEL-AWS")
        (project / "gcp-credentials.json").write_text("SENTINEL-GCP")
        (project / "link.txt").symlink_to(outside)
        (project / "inside-link.py").symlink_to(project / "train.py")
        url = (tmp_path / "repo").as_uri()
        with replicate.init(path=".", repository=url, project_dir=project) as experiment:
            pass
        members = helpers.tar_members(url, "experiments", experiment.id)
        names = sorted(name.split("/", 1)[1] for name in members)
        assert names == ["inside-link.py", "train.py"]
        assert not any(b"SENTINEL" in data for data in members.values())
        err = capsys.readouterr().err
        assert "skipped 1 symbolic link(s) to files outside the project (such as link.txt)" in err

    def test_an_ignore_file_can_bring_one_back(self, tmp_path: Path) -> None:
        """`!.env.example` in .replicateignore re-includes a harmless template."""
        project = tmp_path / "project"
        project.mkdir()
        (project / ".env.example").write_text("API_KEY=")
        (project / ".env").write_text("API_KEY=SENTINEL")
        (project / ".replicateignore").write_text("!.env.example\n")
        url = (tmp_path / "repo").as_uri()
        with replicate.init(path=".", repository=url, project_dir=project) as experiment:
            pass
        members = helpers.tar_members(url, "experiments", experiment.id)
        assert sorted(n.split("/", 1)[1] for n in members) == [".env.example", ".replicateignore"]


class TestCommandRedaction:
    @pytest.mark.parametrize(
        ("argv", "expected"),
        [
            (["train.py", "--token=abc"], ["train.py", "--token=REDACTED"]),
            (
                ["train.py", "--api-key", "abc", "--lr", "0.1"],
                ["train.py", "--api-key", "REDACTED", "--lr", "0.1"],
            ),
            (["train.py", "DB_PASSWORD=hunter2"], ["train.py", "DB_PASSWORD=REDACTED"]),
            (
                ["train.py", "--hf_token", "x", "--aws-secret-access-key=y"],
                ["train.py", "--hf_token", "REDACTED", "--aws-secret-access-key=REDACTED"],
            ),
            (
                ["train.py", "--monkey", "3", "--author", "me"],
                ["train.py", "--monkey", "3", "--author", "me"],
            ),
            (
                ["train.py", "--credentials", "--verbose"],
                ["train.py", "--credentials", "--verbose"],
            ),
        ],
    )
    def test_redact(self, argv: list[str], expected: list[str]) -> None:
        """Values of arguments whose names say token/key/secret/password/credential are hidden."""
        assert redact_argv(argv) == expected

    def test_the_recorded_command_is_redacted(self, tmp_path: Path) -> None:
        """A real script run with --token=SENTINEL records no sentinel in its metadata."""
        project = tmp_path / "project"
        project.mkdir()
        url = (tmp_path / "repo").as_uri()
        (project / "replicate.yaml").write_text(f"repository: {url}\n")
        script = project / "train.py"
        script.write_text("import replicate\nwith replicate.init() as e:\n    print(e.id)\n")
        result = helpers.run_process(
            project, ["train.py", "--token=SENTINEL-T", "--api-key", "SENTINEL-K"]
        )
        assert result.returncode == 0, result.stderr
        raw = (tmp_path / "repo" / experiment_key(result.stdout.strip())).read_text()
        assert "SENTINEL" not in raw
        assert json.loads(raw)["command"] == "train.py --token=REDACTED --api-key REDACTED"
