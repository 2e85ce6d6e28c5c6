"""``replicate ls`` (alias ``list``) and ``replicate ps``: experiments as a table or JSON."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click
from rich.cells import cell_len
from rich.console import Console
from rich.text import Text

from replicate import console
from replicate.cli import _render
from replicate.cli._context import CliState, repository_option
from replicate.errors import ValidationError
from replicate.read.format import ago, differing_params, dumps, experiment_json, format_value
from replicate.read.query import Filter, apply_filters, sort_experiments
from replicate.read.source import Source, build, load_snapshot, queued
from replicate.read.views import ExperimentView
from replicate.values import now

F = TypeVar("F", bound=Callable[..., Any])

FILTER_HELP = (
    "Only experiments where NAME OP VALUE holds, e.g. 'loss < 0.5' or 'optimizer = adam'. "
    "OP is one of = != < <= > >=; NAME is created, step, user, host, command, status, "
    "a metric of the best checkpoint or a param. Repeat for several."
)


def _parse_filters(
    ctx: click.Context, param: click.Parameter, values: Sequence[str]
) -> list[Filter]:
    try:
        return [Filter.parse(value) for value in values]
    except ValidationError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def list_options(f: F) -> F:
    """The options ``ls`` and ``ps`` share."""
    for option in reversed(
        [
            click.option(
                "--filter",
                "filters",
                metavar="'NAME OP VALUE'",
                multiple=True,
                callback=_parse_filters,
                help=FILTER_HELP,
            ),
            click.option(
                "--sort",
                metavar="NAME[-desc]",
                default="created",
                show_default=True,
                help="Sort by a field, metric or param (as --filter); -desc for descending.",
            ),
            click.option(
                "-a",
                "--all",
                "show_all",
                is_flag=True,
                help="Show every param, the user and the host, not only those that differ.",
            ),
            click.option("-q", "--quiet", is_flag=True, help="Print only experiment ids."),
            click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts."),
        ]
    ):
        f = option(f)
    return repository_option(f)


def print_experiments(
    state: CliState,
    filters: Sequence[Filter],
    sort: str,
    show_all: bool,
    quiet: bool,
    as_json: bool,
    *,
    running_only: bool,
) -> None:
    source = Source(state.url, state.config.spool_dir)
    pending = queued(source)  # before the repository: a job landing meanwhile shows there
    snapshot = state.run(load_snapshot)
    for exc in snapshot.corrupted:
        console.warn(f"skipped: {exc}")
    experiments: Sequence[ExperimentView] = build(source, snapshot, pending)
    if running_only:
        experiments = [e for e in experiments if e.status == "running"]
    experiments = sort_experiments(apply_filters(experiments, filters), sort)
    if quiet:
        for experiment in experiments:
            _render.echo(experiment.id)
    elif as_json:
        _render.echo(dumps([experiment_json(e, packages=show_all) for e in experiments]))
    elif not experiments:
        what = "running experiments" if running_only else "experiments"
        matching = " matching the filters" if filters else ""
        _render.echo(f"No {what}{matching} in {state.url}.")
    else:
        render_table(_render.stdout(), experiments, show_all=show_all)


def render_table(
    console: Console, experiments: Sequence[ExperimentView], *, show_all: bool
) -> None:
    """EXPERIMENT STARTED STATUS [USER] [HOST] PARAMS BEST CHECKPOINT LATEST CHECKPOINT.

    When that is wider than the terminal, USER, HOST and PARAMS go on an indented line
    below each row instead (``user@host  lr=0.1  optimizer=adam``).
    """
    # Over 60 lines: the closures below share the column choice made here, and are one table.
    at = now()
    users = show_all or len({e.user for e in experiments}) > 1
    hosts = show_all or len({e.host for e in experiments}) > 1
    names = (
        list(dict.fromkeys(k for e in experiments for k in e.params))
        if show_all
        else differing_params(experiments)
    )

    def params(experiment: ExperimentView) -> list[str]:
        return [
            f"{n}={format_value(experiment.params[n])}" for n in names if n in experiment.params
        ]

    def below(experiment: ExperimentView) -> Text | None:
        who = "@".join(
            filter(None, [experiment.user if users else "", experiment.host if hosts else ""])
        )
        parts = ([who] if who else []) + params(experiment)
        if not parts:
            return None
        lines = ["  " + parts[0]]
        for part in parts[1:]:  # wrap between params, never inside one
            if cell_len(lines[-1]) + 2 + cell_len(part) > console.width:
                lines.append("  " + part)
            else:
                lines[-1] += "  " + part
        return Text("\n".join(lines), style="dim")

    def cells(experiment: ExperimentView) -> tuple[list[Text | str], list[Text | str]]:
        """The row's cells before the optional columns, and after them."""
        status = Text(experiment.status_line)
        if experiment.status == "running":
            status.stylize("green")
        elif experiment.upload_state:
            status.stylize("yellow")
        best, latest = experiment.best(), experiment.latest()
        return (
            [experiment.short_id, ago(experiment.created, at, short=True), status],
            [
                _render.checkpoint_cell(best),
                _render.checkpoint_cell(latest, metric=latest is not best),
            ],
        )

    rows = [(experiment, *cells(experiment)) for experiment in experiments]  # made once

    def grid(wide: bool) -> _render.Grid:
        columns = ["EXPERIMENT", "STARTED", "STATUS"]
        if wide:
            columns += ["USER"] * users + ["HOST"] * hosts + ["PARAMS"] * bool(names)
        grid = _render.Grid(*columns, "BEST CHECKPOINT", "LATEST CHECKPOINT")
        for experiment, head, tail in rows:
            row = list(head)
            if wide:
                row += [experiment.user] * users + [experiment.host] * hosts
                row += ["\n".join(params(experiment))] * bool(names)
            grid.add_row(*row, *tail, below=None if wide else below(experiment))
        return grid

    table = grid(wide=True)
    if table.width() > console.width and (names or users or hosts):
        table = grid(wide=False)
    table.render(console)


def _list_command(
    name: str, doc: str, *, running_only: bool, hidden: bool = False
) -> click.Command:
    """A command over ``print_experiments``: ``ls``, its alias ``list``, or ``ps``."""

    @click.command(name, help=doc, hidden=hidden)
    @list_options
    def command(
        state: CliState,
        filters: list[Filter],
        sort: str,
        show_all: bool,
        quiet: bool,
        as_json: bool,
    ) -> None:
        print_experiments(state, filters, sort, show_all, quiet, as_json, running_only=running_only)

    return command


ls_command = _list_command(
    "ls",
    """List experiments: best and latest checkpoints, and the params that differ.

    Checkpoints still waiting in this project's upload queue are marked (uploading),
    (queued) or (failed).
    """,
    running_only=False,
)
list_command = _list_command(
    "list", "List experiments (same as ls).", running_only=False, hidden=True
)
ps_command = _list_command(
    "ps", "List running experiments (a heartbeat in the last 30 s), like ls.", running_only=True
)

COMMANDS = (ls_command, list_command, ps_command)
