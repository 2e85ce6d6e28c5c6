"""``replicate rm <id>...``: delete experiments and checkpoints (metadata first, then data)."""

from __future__ import annotations

import click

from replicate.cli import _render
from replicate.cli._context import CliState, repository_option
from replicate.maintenance import Removal, plan_removal, remove


def run_removal(state: CliState, removal: Removal) -> None:
    """Delete with a progress bar on stderr."""
    with _render.progress_bar("deleting", bytes_=False) as bar:
        bar.total(removal.objects)
        remove(removal, config=state.config, on_progress=bar.advance)


@click.command("rm")
@click.argument("ids", nargs=-1, required=True)
@repository_option
@click.option("-f", "--force", is_flag=True, help="Delete without asking.")
def rm_command(state: CliState, ids: tuple[str, ...], force: bool) -> None:
    """Delete experiments and/or checkpoints, by id or unique id prefix.

    A deleted checkpoint is removed from its experiment's metadata too. Running experiments
    are refused. Asks first unless -f.
    """
    removal = plan_removal(ids, config=state.config)
    lines = removal.lines()
    _render.echo("\n".join(["Deleting:", *(f"  {line}" for line in lines)]))
    _render.confirm(f"Delete these {len(lines)} item(s) from {state.url}?", force=force)
    run_removal(state, removal)
    _render.echo(f"Deleted {len(lines)} item(s).")


COMMANDS = (rm_command,)
