"""Finding and reading replicate.yaml, and normalising repository URLs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from replicate import console
from replicate.config import (
    CONFIG_NAMES,
    DEFAULT_REPOSITORY,
    Config,
    find_config_file,
    load_config,
    local_path,
    normalize_repository_url,
)
from replicate.errors import ConfigError, ReplicateError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No REPLICATE_REPOSITORY from the outside, and a fresh "say it once" memory."""
    monkeypatch.delenv("REPLICATE_REPOSITORY", raising=False)
    monkeypatch.setattr(console, "_said", set())
    yield


def write(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` (creating parents) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def config_error(tmp_path: Path, text: str, name: str = "replicate.yaml") -> str:
    """Load a config file holding ``text`` and return the ConfigError's message."""
    write(tmp_path / name, text)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert isinstance(info.value, ReplicateError)
    message = str(info.value)
    assert "\n" not in message
    return message


class TestFindConfigFile:
    def test_walks_up(self, tmp_path: Path) -> None:
        """A config file in a parent directory is found from a nested directory."""
        config = write(tmp_path / "replicate.yaml", "repository: s3://b\n")
        nested = tmp_path / "a" / "b" / "c"
        nested.mkdir(parents=True)
        assert find_config_file(nested) == config

    def test_nearest_wins(self, tmp_path: Path) -> None:
        """The config file nearest to the start directory wins."""
        write(tmp_path / "replicate.yaml", "repository: s3://outer\n")
        inner = write(tmp_path / "sub" / "keepsake.yml", "repository: s3://inner\n")
        assert find_config_file(tmp_path / "sub") == inner

    def test_replicate_yaml_beats_keepsake_yaml(self, tmp_path: Path) -> None:
        """In one directory, replicate.yaml is preferred over keepsake.yaml."""
        write(tmp_path / "keepsake.yaml", "repository: s3://old\n")
        config = write(tmp_path / "replicate.yaml", "repository: s3://new\n")
        assert find_config_file(tmp_path) == config

    def test_directory_named_like_config_is_ignored(self, tmp_path: Path) -> None:
        """A directory called replicate.yaml is not a config file."""
        (tmp_path / "replicate.yaml").mkdir()
        config = write(tmp_path / "keepsake.yaml", "repository: s3://b\n")
        assert find_config_file(tmp_path) == config

    def test_all_names(self) -> None:
        """replicate.yaml/.yml and keepsake.yaml/.yml are the config names, in that order."""
        assert CONFIG_NAMES == ("replicate.yaml", "replicate.yml", "keepsake.yaml", "keepsake.yml")


class TestLoadConfig:
    def test_reads_replicate_yaml(self, tmp_path: Path) -> None:
        """The repository comes from replicate.yaml and its directory is the project dir."""
        config_file = write(tmp_path / "replicate.yaml", "repository: s3://bucket/some/prefix/\n")
        nested = tmp_path / "src" / "models"
        nested.mkdir(parents=True)
        config = load_config(nested)
        assert config == Config("s3://bucket/some/prefix", tmp_path, config_file)
        assert config.spool_dir == tmp_path / ".replicate" / "spool"

    def test_reads_keepsake_yaml(self, tmp_path: Path) -> None:
        """A Keepsake project's keepsake.yaml is read, its relative file URL made absolute."""
        write(tmp_path / "keepsake.yaml", 'repository: "file://.keepsake"\n')
        config = load_config(tmp_path)
        assert config.repository == f"file://{tmp_path}/.keepsake"
        assert config.config_file == tmp_path / "keepsake.yaml"

    def test_relative_to_project_dir_not_cwd(self, tmp_path: Path) -> None:
        """A relative repository path is relative to the project dir, not the cwd."""
        write(tmp_path / "replicate.yml", "repository: runs/repo\n")
        (tmp_path / "deep").mkdir()
        assert load_config(tmp_path / "deep").repository == f"file://{tmp_path}/runs/repo"

    def test_storage_alias(self, tmp_path: Path) -> None:
        """The old key name storage is read as repository."""
        write(tmp_path / "replicate.yaml", "storage: gs://bucket\n")
        assert load_config(tmp_path).repository == "gs://bucket"

    def test_env_beats_file(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """REPLICATE_REPOSITORY overrides the file, and the project dir stays the file's."""
        write(tmp_path / "replicate.yaml", "repository: s3://from-file\n")
        monkeypatch.setenv("REPLICATE_REPOSITORY", "s3://from-env/x")
        config = load_config(tmp_path)
        assert (config.repository, config.project_dir) == ("s3://from-env/x", tmp_path)

    def test_argument_beats_env(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """An explicit repository argument overrides REPLICATE_REPOSITORY and the file."""
        write(tmp_path / "replicate.yaml", "repository: s3://from-file\n")
        monkeypatch.setenv("REPLICATE_REPOSITORY", "s3://from-env")
        assert load_config(tmp_path, repository="gs://from-arg").repository == "gs://from-arg"

    def test_override_allows_empty_file(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An empty config file only marks the project dir when the repository is overridden."""
        write(tmp_path / "replicate.yaml", "")
        monkeypatch.setenv("REPLICATE_REPOSITORY", "local-repo")
        assert load_config(tmp_path).repository == f"file://{tmp_path}/local-repo"

    def test_override_still_checks_the_file(self, tmp_path: Path) -> None:
        """Unknown keys are reported even when the repository is overridden."""
        write(tmp_path / "replicate.yaml", "repositroy: s3://typo\n")
        with pytest.raises(ConfigError, match="repositroy"):
            load_config(tmp_path, repository="s3://b")

    def test_project_dir_argument(self, tmp_path: Path) -> None:
        """With project_dir, the config is read from that directory, not from the cwd's parents."""
        write(tmp_path / "replicate.yaml", "repository: s3://outer\n")
        project = tmp_path / "project"
        write(project / "replicate.yaml", "repository: s3://project\n")
        config = load_config(tmp_path, project_dir=Path("project"))
        assert (config.repository, config.project_dir) == ("s3://project", project)


class TestEmbeddedDefault:
    def test_default_repository(self, tmp_path: Path) -> None:
        """With no config file, the repository is .replicate/storage under the cwd."""
        config = load_config(tmp_path)
        assert DEFAULT_REPOSITORY == "file://.replicate/storage"
        assert config == Config(f"file://{tmp_path}/.replicate/storage", tmp_path, None)

    def test_said_once(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """The default is announced once per process on stderr, naming how to change it."""
        load_config(tmp_path)
        load_config(tmp_path)
        captured = capsys.readouterr()
        assert captured.out == ""
        lines = captured.err.splitlines()
        assert len(lines) == 1
        assert "no replicate.yaml found" in lines[0]
        assert ".replicate/storage" in lines[0]
        assert "repository: s3://" in lines[0]

    def test_silent_with_override(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Nothing is printed when the repository is given explicitly or by environment."""
        load_config(tmp_path, repository="s3://b")
        monkeypatch.setenv("REPLICATE_REPOSITORY", "s3://c")
        load_config(tmp_path)
        assert capsys.readouterr().err == ""


class TestConfigErrors:
    def test_malformed_yaml(self, tmp_path: Path) -> None:
        """Malformed YAML names the file and the line."""
        message = config_error(tmp_path, "# settings\nrepository: s3://b\n  bad: : [\n")
        assert "replicate.yaml" in message
        assert "line 3" in message

    def test_unknown_key(self, tmp_path: Path) -> None:
        """An unknown key is named along with the allowed keys."""
        message = config_error(tmp_path, "repository: s3://b\nbucket: b\n")
        assert "'bucket'" in message
        assert "'repository'" in message

    def test_both_keys(self, tmp_path: Path) -> None:
        """Setting both repository and storage is refused, saying to keep repository."""
        message = config_error(tmp_path, "repository: s3://a\nstorage: s3://b\n")
        assert "both" in message
        assert "keep only 'repository'" in message

    def test_unknown_scheme(self, tmp_path: Path) -> None:
        """An unknown URL scheme is named with the three accepted forms."""
        message = config_error(tmp_path, "repository: ftp://host/dir\n")
        assert "replicate.yaml: unknown repository URL scheme 'ftp'" in message
        assert all(form in message for form in ("s3://", "gs://", "file://"))

    def test_bad_env_url_names_the_variable(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A bad URL in REPLICATE_REPOSITORY names the variable as its source."""
        monkeypatch.setenv("REPLICATE_REPOSITORY", "azure://container")
        with pytest.raises(ConfigError, match=r"^\$REPLICATE_REPOSITORY: .*'azure'"):
            load_config(tmp_path)

    @pytest.mark.parametrize("text", ["", "# nothing yet\n", "---\n"])
    def test_empty(self, tmp_path: Path, text: str) -> None:
        """An empty file says to add a repository line."""
        message = config_error(tmp_path, text, name="keepsake.yaml")
        assert "keepsake.yaml is empty" in message
        assert "add `repository: " in message

    def test_missing_repository_value(self, tmp_path: Path) -> None:
        """A repository key with no value says to add one."""
        assert "add `repository: " in config_error(tmp_path, "repository:\n")

    @pytest.mark.parametrize("text", ["- s3://b\n", "s3://b\n", "repository: [s3://b]\n"])
    def test_wrong_shape(self, tmp_path: Path, text: str) -> None:
        """A file that is not a mapping of strings explains the expected shape."""
        assert "repository: s3://bucket/prefix" in config_error(tmp_path, text)

    def test_unreadable(self, tmp_path: Path) -> None:
        """A config file that is not UTF-8 text is reported, not crashed on."""
        (tmp_path / "replicate.yaml").write_bytes(b"repository: \xff\xfe\n")
        with pytest.raises(ConfigError, match="cannot read"):
            load_config(tmp_path)


class TestNormalizeRepositoryUrl:
    @pytest.mark.parametrize(
        ("url", "expected"),
        [
            ("repo", "file:///base/repo"),
            ("./runs/../repo/", "file:///base/repo"),
            ("file://repo", "file:///base/repo"),
            ("file:///abs/repo/", "file:///abs/repo"),
            ("/abs/repo", "file:///abs/repo"),
            ("FILE:///abs", "file:///abs"),
            ("s3://bucket", "s3://bucket"),
            ("s3://bucket/", "s3://bucket"),
            ("S3://bucket/a//b/", "s3://bucket/a/b"),
            ("gs://my_bucket.example/prefix", "gs://my_bucket.example/prefix"),
            ("  s3://bucket/p  ", "s3://bucket/p"),
        ],
    )
    def test_normalises(self, url: str, expected: str) -> None:
        """Paths become absolute file URLs; bucket URLs lose redundant slashes."""
        assert normalize_repository_url(url, Path("/base")) == expected

    @pytest.mark.parametrize(
        ("url", "match"),
        [
            ("", "empty"),
            ("s3://", "bucket"),
            ("s3:///prefix", "bucket"),
            ("gs://-bad/x", "bucket"),
            ("gcs://bucket", "'gcs'"),
            ("http://example.com/repo", "'http'"),
            ("s3:bucket", "malformed"),
            ("file://", "no path"),
        ],
    )
    def test_rejects(self, url: str, match: str) -> None:
        """Bad URLs raise a one-line ConfigError naming the problem."""
        with pytest.raises(ConfigError, match=match) as info:
            normalize_repository_url(url, Path("/base"))
        assert "\n" not in str(info.value)


class TestFileURLs:
    @pytest.mark.parametrize("name", ["proj#1", "what?", "100%", "a b", "x%23y"])
    def test_special_characters_in_the_project_path(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
    ) -> None:
        """The default repository stays inside a project whose path holds # ? % or spaces."""
        project = tmp_path / name
        project.mkdir()
        monkeypatch.chdir(project)
        url = load_config().repository
        assert url == (project / ".replicate" / "storage").as_uri()
        assert local_path(url) == project / ".replicate" / "storage"

    def test_plain_paths_are_taken_as_written(self, tmp_path: Path) -> None:
        """A plain path is not percent-decoded; a file:// URL is."""
        assert local_path(normalize_repository_url("a%41b", tmp_path)) == tmp_path / "a%41b"
        assert local_path(normalize_repository_url("file://a%41b", tmp_path)) == tmp_path / "aAb"
