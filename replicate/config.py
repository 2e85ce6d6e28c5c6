"""Find and read ``replicate.yaml`` and turn the repository setting into an absolute URL.

The config file is looked for in the working directory and then in each parent; the directory
holding it is the **project directory**. ``keepsake.yaml`` is read too. The repository comes
from, in order: an explicit argument, ``REPLICATE_REPOSITORY``, the file. With no file anywhere
the embedded default is a local repository in ``.replicate/storage`` under the working directory.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse
from urllib.request import url2pathname

import yaml

from replicate import console
from replicate.errors import ConfigError
from replicate.retries import JOB_DEADLINE, REQUEST_DEADLINE, RetryPolicy

T = TypeVar("T")

CONFIG_NAMES = ("replicate.yaml", "replicate.yml", "keepsake.yaml", "keepsake.yml")
DEFAULT_REPOSITORY = "file://.replicate/storage"
ENV_REPOSITORY = "REPLICATE_REPOSITORY"

_KEYS = ("repository", "storage")
_ACCEPTED = "s3://bucket/prefix, gs://bucket/prefix or file://path (a plain path works too)"
_EXAMPLE = "`repository: s3://bucket/prefix` (or gs://bucket/prefix, file://path)"
_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True, slots=True)
class Config:
    """Where the repository is and which directory is the project."""

    #: Absolute URL: ``file:///abs/path``, ``s3://bucket/prefix`` or ``gs://bucket/prefix``.
    repository: str
    #: The directory holding the config file; the working directory for the embedded default.
    project_dir: Path
    #: The config file that was read; None when the embedded default is used.
    config_file: Path | None
    #: The ``REPLICATE_*`` settings, checked when the config is loaded.
    settings: Settings = field(default_factory=lambda: Settings())

    @property
    def shown_repository(self) -> str:
        """The repository URL as printed: see :func:`display_url`."""
        return display_url(self.repository)

    @property
    def spool_dir(self) -> Path:
        """The durable upload queue: ``<project_dir>/.replicate/spool``."""
        return self.project_dir / ".replicate" / "spool"


def find_config_file(start: Path) -> Path | None:
    """Return the first config file in ``start`` or one of its parents, or None."""
    start = Path(os.path.abspath(start))
    for directory in (start, *start.parents):
        for name in CONFIG_NAMES:
            candidate = directory / name
            if candidate.is_file():
                return candidate
    return None


def _in_dir(directory: Path) -> Path | None:
    return next((directory / n for n in CONFIG_NAMES if (directory / n).is_file()), None)


def load_config(
    cwd: Path | None = None, *, repository: str | None = None, project_dir: Path | None = None
) -> Config:
    """Build the Config for ``cwd`` (default: the working directory).

    ``repository`` beats ``$REPLICATE_REPOSITORY``, which beats the config file. With
    ``project_dir`` the config file is looked for there only, not in its parents.
    """
    cwd = Path(os.path.abspath(cwd if cwd is not None else Path.cwd()))
    if project_dir is not None:
        project_dir = Path(os.path.abspath(cwd / project_dir))
        if not project_dir.is_dir():  # a typo must not create a spool somewhere new
            raise ConfigError(
                f"project_dir {project_dir} is not a directory: create it, or pass the "
                "directory of your training code"
            )
        config_file, searched = _in_dir(project_dir), str(project_dir)
    else:
        config_file, searched = find_config_file(cwd), f"{cwd} or its parents"
        project_dir = config_file.parent if config_file is not None else cwd
    env = os.environ.get(ENV_REPOSITORY) or None
    override = repository or env
    from_file = _read_config_file(config_file, required=not override) if config_file else None
    source = "" if repository else f"${ENV_REPOSITORY}: " if env else f"{config_file}: "
    url = override or from_file
    if url is None:
        source = ""
        url = DEFAULT_REPOSITORY
        console.once(
            "default-repository",
            f"no replicate.yaml found in {searched}; using the local repository "
            ".replicate/storage there (create replicate.yaml with "
            "`repository: s3://bucket/prefix` to change it)",
            warning=False,
        )
    try:
        normalized = normalize_repository_url(url, project_dir)
    except ConfigError as exc:
        raise ConfigError(f"{source}{exc}") from exc
    return Config(normalized, project_dir, config_file, load_settings())


def _read_config_file(path: Path, *, required: bool) -> str | None:
    """Return the repository URL set in ``path`` (None if unset and not ``required``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read {path}: {exc}; check that it is a readable text file"
        ) from exc
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise ConfigError(
            f"{path} is not valid YAML{where} ({problem}); fix it to read like {_EXAMPLE}"
        ) from exc
    if data is None:
        if required:
            raise ConfigError(f"{path} is empty; add {_EXAMPLE}")
        return None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} should be a mapping of keys to values; write {_EXAMPLE}")
    for key in data:
        if key not in _KEYS:
            raise ConfigError(
                f"{path}: unknown key {key!r}; the allowed keys are 'repository' "
                "(and its old name 'storage'): remove or rename it"
            )
    if "repository" in data and "storage" in data:
        raise ConfigError(
            f"{path} sets both 'repository' and 'storage' (an old name for it); "
            "keep only 'repository'"
        )
    value = data.get("repository", data.get("storage"))
    if value is None:
        if required:
            raise ConfigError(f"{path} does not say where the repository is; add {_EXAMPLE}")
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{path}: 'repository' should be a URL string; write {_EXAMPLE}")
    return value


def local_path(url: str) -> Path | None:
    """The directory of a ``file://`` repository URL (the inverse of ``Path.as_uri()``)."""
    parsed = urlparse(url)
    if parsed.scheme != "file" or parsed.netloc not in ("", "localhost"):
        return None
    return Path(url2pathname(parsed.path))  # percent-decodes


def display_url(url: str) -> str:
    """``url`` as printed or recorded: without a query string, where a signed URL keeps its
    signature (storage never uses it)."""
    return url.split("?", 1)[0]


def normalize_repository_url(url: str, base: Path) -> str:
    """Return the absolute form of a repository URL; relative paths are relative to ``base``."""
    url = url.strip()
    if not url:
        raise ConfigError(f"the repository URL is empty; use {_ACCEPTED}")
    scheme, sep, rest = url.partition("://")
    if not sep:
        if re.match(r"(?i)(s3|gs|gcs|file):", url):
            raise ConfigError(f"malformed repository URL {url!r}; use {_ACCEPTED}")
        scheme, rest = "file", url
    scheme = scheme.lower()
    if scheme == "file":
        if not rest:
            raise ConfigError(f"the repository URL {url!r} has no path; use {_ACCEPTED}")
        # a file:// URL is percent-decoded; a plain path (no scheme) is taken as written
        raw = url2pathname(rest) if sep else rest  # url2pathname percent-decodes
        path = Path(os.path.expanduser(raw))
        return Path(os.path.normpath(path if path.is_absolute() else base / path)).as_uri()
    if scheme in ("s3", "gs"):
        bucket, _, prefix = rest.partition("/")
        if not _BUCKET.fullmatch(bucket):
            raise ConfigError(
                f"the repository URL {url!r} has no valid bucket name; "
                f"write it as {scheme}://bucket/prefix"
            )
        prefix = "/".join(part for part in prefix.split("/") if part)
        return f"{scheme}://{bucket}/{prefix}" if prefix else f"{scheme}://{bucket}"
    raise ConfigError(f"unknown repository URL scheme {scheme!r} in {url!r}; use {_ACCEPTED}")


# ---- settings from the environment -----------------------------------------------------------

#: Default size budget of the local upload queue (``REPLICATE_SPOOL_MAX_BYTES``).
DEFAULT_SPOOL_MAX_BYTES = 16 * 1024**3


@dataclass(frozen=True, slots=True)
class Settings:
    """The ``REPLICATE_*`` variables, parsed and checked once (by ``init()`` and the CLI)."""

    #: Bytes the spool may hold before ``checkpoint()`` waits for uploads.
    spool_max_bytes: int = DEFAULT_SPOOL_MAX_BYTES
    #: Seconds the process may spend finishing uploads at exit; None: until done.
    exit_timeout: float | None = None
    #: Flush snapshots (and the disk repository's files) before returning.
    fsync: bool = False
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: ``REPLICATE_RESUME``: True (1/true/yes), "allow", or an experiment id prefix
    resume: bool | str | None = None


def _number(convert: Callable[[str], T], accepts: str, example: str) -> Callable[[str, str], T]:
    def parse(name: str, value: str) -> T:
        try:
            number = convert(value)
        except ValueError:
            number = None
        if number is None or not 0 <= number < math.inf:  # type: ignore[operator]
            raise ConfigError(
                f"{name}={value!r} is not valid: it takes {accepts}, e.g. {name}={example}"
            )
        return number

    return parse


def _flag(name: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(
        f"{name}={value!r} is not valid: it takes 1 or 0 (true/false, yes/no, on/off)"
    )


_bytes = _number(int, "a number of bytes", "8589934592")
_seconds = _number(float, "a finite number of seconds", "600")


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Parse the ``REPLICATE_*`` settings; a bad value raises ConfigError naming the variable."""
    env = os.environ if environ is None else environ

    def get(name: str, parse: Callable[[str, str], T], default: T) -> T:
        value = env.get(name, "").strip()
        return parse(name, value) if value else default

    return Settings(
        spool_max_bytes=get("REPLICATE_SPOOL_MAX_BYTES", _bytes, DEFAULT_SPOOL_MAX_BYTES),
        exit_timeout=get("REPLICATE_EXIT_TIMEOUT", _seconds, None),
        fsync=get("REPLICATE_FSYNC", _flag, False),
        retry=RetryPolicy(
            request_deadline=get("REPLICATE_REQUEST_DEADLINE", _seconds, REQUEST_DEADLINE),
            job_deadline=get("REPLICATE_JOB_DEADLINE", _seconds, JOB_DEADLINE),
        ),
        resume=get("REPLICATE_RESUME", _resume, None),
    )


def _resume(name: str, value: str) -> bool | str:
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered == "allow":
        return "allow"
    if any(ch not in "0123456789abcdef" for ch in lowered) or len(lowered) > 64:
        raise ConfigError(
            f"{name}={value!r} is not valid: it takes an experiment id (or prefix), 1 for the "
            "latest run that did not stop, or allow"
        )
    return lowered
