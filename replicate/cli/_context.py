"""What every command shares: the -R option, the Config and the process's Daemon."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeVar

import click

from replicate.config import Config, load_config
from replicate.daemon import Daemon
from replicate.repository import Repository

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class CliState:
    """The repository a command works on, opened lazily in the daemon's loop."""

    repository_option: str | None

    @cached_property
    def config(self) -> Config:
        return load_config(repository=self.repository_option)

    @property
    def url(self) -> str:
        return self.config.repository

    @cached_property
    def daemon(self) -> Daemon:
        daemon = Daemon.get()
        daemon.configure(self.config.settings)
        return daemon

    def run(self, fn: Callable[[Repository], Awaitable[T]], *, check_version: bool = True) -> T:
        """Run ``fn(repository)`` in the daemon's loop and return its result."""

        async def call(repository: Repository) -> T:
            if check_version:
                await repository.check_version()
            return await fn(repository)

        return self.daemon.with_repository(self.url, call)


def repository_option(f: F) -> F:
    """Add -R/--repository and pass a CliState as ``state``."""

    def callback(ctx: click.Context, param: click.Parameter, value: str | None) -> CliState:
        return CliState(value)

    return click.option(
        "-R",
        "--repository",
        "state",
        metavar="URL",
        default=None,
        envvar=None,
        callback=callback,
        help="Repository URL (s3://bucket/prefix, gs://bucket/prefix, file://path); "
        "default: replicate.yaml's, or $REPLICATE_REPOSITORY.",
    )(f)
