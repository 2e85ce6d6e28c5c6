"""``replicate diff <id> <id> [...]``: what differs between checkpoints, side by side."""

from __future__ import annotations

from typing import Any

import click
from rich.text import Text

from replicate.cli import _render
from replicate.cli._context import CliState, repository_option
from replicate.errors import ValidationError
from replicate.read.compare import Side, diff_cell, sections, side_of
from replicate.read.format import dumps
from replicate.read.query import MISSING
from replicate.read.source import Match, Source, resolve, view_of
from replicate.repository import Repository


@click.command("diff")
@click.argument("ids", nargs=-1, required=True)
@repository_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def diff_command(state: CliState, ids: tuple[str, ...], as_json: bool) -> None:
    """Compare checkpoints: params, packages, checkpoint fields and metrics that differ.

    An experiment id stands for its best checkpoint, else its latest.
    """
    if len(ids) < 2:
        raise click.UsageError("diff needs at least two ids")

    async def find_all(repository: Repository) -> list[Match]:
        return [await resolve(repository, id) for id in ids]

    source = Source(state.url, state.config.spool_dir)
    sides: list[Side] = []
    for match in state.run(find_all):
        sides.append(side_of(*view_of(source, match)))
    if len({(e.id, c.id if c else None) for e, c in sides}) < len(sides):
        raise ValidationError("these ids name the same checkpoint more than once: nothing to diff")
    found = sections(sides)
    if as_json:
        body: dict[str, Any] = {
            "checkpoints": [c.id if c else None for _, c in sides],
            "experiments": [e.id for e, _ in sides],
        }
        for title, rows in found:
            key = title.lower().replace(" ", "_")
            body[key] = {
                name: [None if v is MISSING else v for v in values] for name, values in rows
            }
        _render.echo(dumps(body))
        return
    console = _render.stdout()
    grid = _render.table("", *("" for _ in sides), show_header=False)
    grid.add_row(
        Text("Checkpoint:", style="bold"), *(c.short_id if c else "(none)" for _, c in sides)
    )
    grid.add_row(Text("Experiment:", style="bold"), *(e.short_id for e, _ in sides))
    for title, rows in found:
        grid.add_row()
        grid.add_row(Text(title, style="bold"))
        if not rows:
            grid.add_row("(no difference)")
        for name, values in rows:
            grid.add_row(f"{name}:", *(diff_cell(v) for v in values))
    _render.emit(console, grid)


COMMANDS = (diff_command,)
