"""``replicate show <id>``: one experiment (params, system, checkpoints) or one checkpoint."""

from __future__ import annotations

import click
from rich.console import Console
from rich.text import Text

from replicate.cli import _render
from replicate.cli._context import CliState, repository_option
from replicate.read.format import (
    ago,
    checkpoint_json,
    dumps,
    experiment_json,
    format_duration,
    format_value,
)
from replicate.read.history import Segment, segments
from replicate.read.source import Match, Source, resolve, view_of
from replicate.read.views import CheckpointView, ExperimentView
from replicate.repository import Repository
from replicate.values import now


def _when(experiment: ExperimentView | CheckpointView) -> str:
    return f"{experiment.created:%Y-%m-%d %H:%M:%S} UTC ({ago(experiment.created, now())})"


def _experiment_fields(experiment: ExperimentView) -> list[tuple[str, str]]:
    return [
        ("Created", _when(experiment)),
        ("Status", experiment.status),
        ("Duration", format_duration(experiment.duration)),
        ("Host", experiment.host),
        ("User", experiment.user),
        ("Command", experiment.command),
        ("Code", experiment.path or "(none saved)"),
    ]


def _segment_row(index: int, run: Segment) -> tuple[str, str]:
    what = "resumed" if run.resumed else "started"
    if run.first_step is None:
        steps = "no checkpoints"
    elif run.first_step == run.last_step:
        steps = f"step {run.first_step}"
    else:
        steps = f"steps {run.first_step}-{run.last_step}"
    code = f", new code snapshot {run.code[:7]}" if run.code else ""
    return (
        f"{index + 1}",
        f"{what} {run.started:%Y-%m-%d %H:%M:%S} UTC on {run.host or '?'}: {steps}{code}",
    )


def _params(console: Console, experiment: ExperimentView) -> None:
    _render.section(console, "Params")
    if experiment.params:
        _render.fields(console, [(k, format_value(v)) for k, v in experiment.params.items()])
    else:
        console.print("(none)")


def show_experiment(console: Console, experiment: ExperimentView, *, show_all: bool) -> None:
    console.print(Text(f"Experiment: {experiment.id}", style="bold"))
    console.print()
    _render.fields(console, _experiment_fields(experiment))
    _params(console, experiment)
    runs = segments(experiment.record)
    if len(runs) > 1:
        _render.section(console, "Runs")
        _render.fields(console, [_segment_row(i, run) for i, run in enumerate(runs)])
    _render.section(console, "System")
    packages = experiment.python_packages
    rows = [
        ("Python", experiment.python_version),
        ("Written by", f"replicate/keepsake {experiment.replicate_version}"),
    ]
    if not show_all:
        rows.append(("Python packages", f"{len(packages)} (--all to list them)"))
    _render.fields(console, rows)
    if show_all:
        _render.section(console, "Python packages")
        _render.fields(console, sorted(packages.items()) or [("(none)", "")])
    _render.section(console, "Checkpoints")
    if not experiment.checkpoints:
        console.print("(none)")
        return
    metrics = list(experiment.checkpoints.metrics)
    best = experiment.best()
    grid = _render.table("ID", "STEP", "CREATED", *metrics, "")
    for checkpoint in experiment.checkpoints:
        note = Text("best", style="bold green") if checkpoint is best else Text("")
        if checkpoint.upload_state:
            note = Text(checkpoint.upload_state, style="yellow")
        grid.add_row(
            checkpoint.short_id,
            format_value(checkpoint.step),
            f"{checkpoint.created:%Y-%m-%d %H:%M:%S}",
            *(
                format_value(checkpoint.metrics[m]) if m in checkpoint.metrics else ""
                for m in metrics
            ),
            note,
        )
    _render.emit(console, grid)
    if best is not None and best.primary_metric is not None:
        pm = best.primary_metric
        console.print(f"best: {best.short_id} by {pm.name} ({pm.goal})")


def show_checkpoint(console: Console, checkpoint: CheckpointView) -> None:
    experiment = checkpoint.experiment
    console.print(Text(f"Checkpoint: {checkpoint.id}", style="bold"))
    console.print()
    rows = [
        ("Created", _when(checkpoint)),
        ("Step", format_value(checkpoint.step)),
        ("Files", checkpoint.path or "(none: metrics only)"),
    ]
    if checkpoint.upload_state:
        rows.append(("Upload", f"{checkpoint.upload_state} (in the local queue)"))
    if checkpoint is experiment.best():
        rows.append(("Best", "yes, of its experiment"))
    _render.fields(console, rows)
    _render.section(console, "Experiment")
    _render.fields(console, [("ID", experiment.id), *_experiment_fields(experiment)])
    _params(console, experiment)
    _render.section(console, "Metrics")
    pm = checkpoint.primary_metric
    if not checkpoint.metrics:
        console.print("(none)")
        return
    grid = _render.table("", "", "", show_header=False)
    for name, value in checkpoint.metrics.items():
        mark = Text(f"(primary, {pm.goal})", style="bold") if pm and pm.name == name else ""
        grid.add_row(f"{name}:", format_value(value, precise=True), mark)
    _render.emit(console, grid)


@click.command("show")
@click.argument("id")
@repository_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.option("-a", "--all", "show_all", is_flag=True, help="List every Python package.")
def show_command(state: CliState, id: str, as_json: bool, show_all: bool) -> None:
    """Show an experiment or a checkpoint, by id or unique id prefix."""

    async def find(repository: Repository) -> Match:
        return await resolve(repository, id)

    source = Source(state.url, state.config.spool_dir)
    experiment, checkpoint = view_of(source, state.run(find))
    if as_json:
        if checkpoint is None:
            _render.echo(dumps(experiment_json(experiment)))
        else:
            body = checkpoint_json(checkpoint)
            body["experiment"] = experiment_json(experiment, packages=show_all)
            _render.echo(dumps(body))
        return
    console = _render.stdout()
    if checkpoint is None:
        show_experiment(console, experiment, show_all=show_all)
    else:
        show_checkpoint(console, checkpoint)


COMMANDS = (show_command,)
