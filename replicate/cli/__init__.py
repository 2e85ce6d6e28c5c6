"""The ``replicate`` command: one module per subcommand, errors mapped to exit codes here."""

from __future__ import annotations

from typing import Any

import click

from replicate import __version__
from replicate.errors import ReplicateError


class ReplicateGroup(click.Group):
    """A click group that turns ReplicateError into one clear line and exit code 1.

    Error lines are made printable here: control characters are shown as escapes.
    """

    def invoke(self, ctx: click.Context) -> Any:
        from replicate.console import printable

        try:
            return super().invoke(ctx)
        except ReplicateError as exc:
            raise click.ClickException(printable(str(exc))) from exc
        except click.ClickException as exc:  # messages may quote names from stored data
            if printable(exc.message) == exc.message:
                raise
            raise click.ClickException(printable(exc.message)) from exc


@click.group(cls=ReplicateGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="replicate")
def cli() -> None:
    """Version machine learning experiments and models.

    Reads the repository named in replicate.yaml (walking up from here), or the one given
    with -R/--repository on any command.
    """


def _register() -> None:
    from replicate.cli import checkout, diff, gc, ls, queue, rm, show, ui, verify, wait

    for module in (ls, show, diff, checkout, rm, gc, verify, queue, wait, ui):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main() -> None:
    cli()
