"""``replicate diff <id> <id> [...]``: what differs between checkpoints, side by side."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import click
from rich.text import Text

from replicate.cli import _render
from replicate.cli._context import CliState, repository_option
from replicate.errors import ValidationError
from replicate.read.format import dumps, format_value, same
from replicate.read.query import MISSING
from replicate.read.source import Match, Source, resolve, view_of
from replicate.read.views import CheckpointView, ExperimentView
from replicate.repository import Repository

Side = tuple[ExperimentView, CheckpointView | None]
Getter = Callable[[Side], Any]


def _experiment_rows() -> list[tuple[str, Getter]]:
    def field(name: str) -> Getter:
        return lambda side: getattr(side[0], name)

    names = ("created", "status", "host", "user", "command", "path", "python_version")
    return [(name, field(name)) for name in names]


def _checkpoint_rows() -> list[tuple[str, Getter]]:
    def field(name: str) -> Getter:
        return lambda side: MISSING if side[1] is None else getattr(side[1], name)

    def primary(side: Side) -> Any:
        pm = None if side[1] is None else side[1].primary_metric
        return MISSING if pm is None else f"{pm.name} ({pm.goal})"

    rows = [(name, field(name)) for name in ("step", "created", "path")]
    return [*rows, ("primary_metric", primary)]


def _mapping_rows(
    get: Callable[[Side], dict[str, Any]], sides: Sequence[Side]
) -> list[tuple[str, Getter]]:
    def row(name: str) -> Getter:
        return lambda side: get(side).get(name, MISSING)

    names = dict.fromkeys(name for side in sides for name in get(side))
    return [(name, row(name)) for name in names]


def sections(sides: Sequence[Side]) -> list[tuple[str, list[tuple[str, list[Any]]]]]:
    """(section, [(name, values)]) with only the rows whose values are not all the same."""

    def metrics(side: Side) -> dict[str, Any]:
        return {} if side[1] is None else side[1].metrics

    layout = [
        ("Experiment", _experiment_rows()),
        ("Params", _mapping_rows(lambda side: side[0].params, sides)),
        ("Python packages", _mapping_rows(lambda side: side[0].python_packages, sides)),
        ("Checkpoint", _checkpoint_rows()),
        ("Metrics", _mapping_rows(metrics, sides)),
    ]
    found = []
    for title, rows in layout:
        differing = []
        for name, get in rows:
            values = [get(side) for side in sides]
            first = values[0]
            if any(
                (v is MISSING) != (first is MISSING) or not same_value(first, v) for v in values
            ):
                differing.append((name, values))
        found.append((title, differing))
    return found


def _cell(value: Any) -> str:
    if value is MISSING:
        return "(not set)"
    return '""' if value == "" else format_value(value, precise=True)


def same_value(a: Any, b: Any) -> bool:
    if a is MISSING or b is MISSING:
        return a is b
    return same(a, b)


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
        experiment, checkpoint = view_of(source, match)
        sides.append((experiment, checkpoint or experiment.best() or experiment.latest()))
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
            grid.add_row(f"{name}:", *(_cell(v) for v in values))
    _render.emit(console, grid)


COMMANDS = (diff_command,)
