"""REPLICATE_* settings: parsed and checked once, with one line naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest
from write import helpers

import replicate
from replicate.config import Settings, load_settings
from replicate.errors import ConfigError
from replicate.retries import RetryPolicy


class TestLoadSettings:
    def test_defaults(self) -> None:
        """With nothing set, the documented defaults apply."""
        assert load_settings({}) == Settings()
        assert load_settings({}).exit_timeout is None

    def test_values(self) -> None:
        """Each variable is parsed into its setting."""
        settings = load_settings(
            {
                "REPLICATE_SPOOL_MAX_BYTES": "1000",
                "REPLICATE_EXIT_TIMEOUT": "2.5",
                "REPLICATE_FSYNC": "yes",
                "REPLICATE_REQUEST_DEADLINE": "3",
                "REPLICATE_JOB_DEADLINE": "60",
            }
        )
        assert settings == Settings(
            spool_max_bytes=1000,
            exit_timeout=2.5,
            fsync=True,
            retry=RetryPolicy(request_deadline=3.0, job_deadline=60.0),
        )

    @pytest.mark.parametrize(
        ("name", "value", "accepts"),
        [
            ("REPLICATE_EXIT_TIMEOUT", "ten", "a finite number of seconds"),
            ("REPLICATE_EXIT_TIMEOUT", "-1", "a finite number of seconds"),
            ("REPLICATE_EXIT_TIMEOUT", "nan", "a finite number of seconds"),
            ("REPLICATE_SPOOL_MAX_BYTES", "16GB", "a number of bytes"),
            ("REPLICATE_SPOOL_MAX_BYTES", "1.5", "a number of bytes"),
            ("REPLICATE_FSYNC", "maybe", "1 or 0"),
            ("REPLICATE_REQUEST_DEADLINE", "soon", "a finite number of seconds"),
            ("REPLICATE_REQUEST_DEADLINE", "inf", "a finite number of seconds"),
            ("REPLICATE_JOB_DEADLINE", "1e999", "a finite number of seconds"),
            ("REPLICATE_JOB_DEADLINE", "", None),
        ],
    )
    def test_bad_value_names_the_variable(self, name: str, value: str, accepts: str | None) -> None:
        """A bad value is one line naming the variable and what it takes; empty means unset."""
        if accepts is None:
            assert load_settings({name: value}) == Settings()
            return
        with pytest.raises(ConfigError) as caught:
            load_settings({name: value})
        message = str(caught.value)
        assert message.startswith(f"{name}={value!r} is not valid: it takes {accepts}")
        assert "\n" not in message


class TestAtInit:
    def test_init_refuses_a_bad_setting_and_leaves_nothing(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """init() checks the settings first: ConfigError, and no repository or spool is made."""
        monkeypatch.setenv("REPLICATE_EXIT_TIMEOUT", "ten")
        project = tmp_path / "project"
        project.mkdir()
        with pytest.raises(ConfigError, match="REPLICATE_EXIT_TIMEOUT='ten'"):
            replicate.init(repository=(tmp_path / "repo").as_uri(), project_dir=project)
        assert not (tmp_path / "repo").exists()
        assert not (project / ".replicate").exists()

    def test_bad_exit_timeout_in_a_script_is_one_line_and_exits(self, tmp_path: Path) -> None:
        """The script that used to hang at exit now stops at init() with one line, and exits."""
        project = tmp_path / "project"
        project.mkdir()
        (project / "replicate.yaml").write_text(f"repository: {(tmp_path / 'repo').as_uri()}\n")
        result = helpers.run_script(
            project,
            """
            import replicate
            try:
                replicate.init()
            except replicate.ConfigError as exc:
                print(exc)
            """,
            env={"REPLICATE_EXIT_TIMEOUT": "ten"},
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == [
            (
                "REPLICATE_EXIT_TIMEOUT='ten' is not valid: it takes a finite number of seconds, "
                "e.g. REPLICATE_EXIT_TIMEOUT=600"
            )
        ]

    def test_cli_refuses_a_bad_setting(self, tmp_path: Path) -> None:
        """A CLI command with a bad setting exits 1 with one line naming it."""
        project = tmp_path / "project"
        project.mkdir()
        (project / "replicate.yaml").write_text(f"repository: {(tmp_path / 'repo').as_uri()}\n")
        result = helpers.cli(project, "ls", env={"REPLICATE_FSYNC": "maybe"})
        assert result.returncode == 1
        assert result.stderr.strip().splitlines() == [
            (
                "Error: REPLICATE_FSYNC='maybe' is not valid: it takes 1 or 0 "
                "(true/false, yes/no, on/off)"
            )
        ]
