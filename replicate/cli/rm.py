"""``replicate rm <id>...``: delete experiments and checkpoints (metadata first, then data)."""

from __future__ import annotations

import click

from replicate.cli import _render
from replicate.cli._context import CliState, repository_option
from replicate.daemon.heartbeat import is_running
from replicate.errors import ValidationError
from replicate.ids import short_id
from replicate.read.remove import Removal, remove
from replicate.read.source import Match, resolve_many
from replicate.records import HeartbeatRecord, now
from replicate.repository import Repository


def refuse_running(experiment_id: str, beat: HeartbeatRecord | None) -> None:
    """Raise if the experiment is running: its process would write the removed data back."""
    if is_running(beat):
        assert beat is not None
        age = (now() - beat.last_heartbeat).total_seconds()
        raise ValidationError(
            f"experiment {short_id(experiment_id)} is running (heartbeat {age:.0f} s ago): "
            "stop it before removing it or its checkpoints"
        )


def describe(removal: Removal) -> list[str]:
    lines = []
    for record in removal.experiments.values():
        count = len(record.checkpoints)
        lines.append(
            f"experiment {short_id(record.id)} with its {count} checkpoint{'s' * (count != 1)}"
        )
    for experiment_id, checkpoints in removal.checkpoints.items():
        for checkpoint in checkpoints.values():
            lines.append(
                f"checkpoint {short_id(checkpoint.id)} (step {checkpoint.step}) "
                f"of experiment {short_id(experiment_id)}"
            )
    return lines


def run_removal(state: CliState, removal: Removal) -> None:
    """Delete with a progress bar on stderr."""
    with _render.progress_bar("deleting", bytes_=False) as bar:
        bar.total(removal.objects)

        async def go(repository: Repository) -> None:
            await remove(repository, removal, bar.advance)

        state.run(go)


@click.command("rm")
@click.argument("ids", nargs=-1, required=True)
@repository_option
@click.option("-f", "--force", is_flag=True, help="Delete without asking.")
def rm_command(state: CliState, ids: tuple[str, ...], force: bool) -> None:
    """Delete experiments and/or checkpoints, by id or unique id prefix.

    A deleted checkpoint is removed from its experiment's metadata too. Running experiments
    are refused. Asks first unless -f.
    """

    async def gather(repository: Repository) -> tuple[list[Match], dict[str, HeartbeatRecord]]:
        matches = await resolve_many(repository, ids)
        beats = {}
        for experiment_id in {e.id for e, _ in matches}:
            beat = await repository.read_heartbeat(experiment_id)
            if beat is not None:
                beats[experiment_id] = beat
        return matches, beats

    matches, beats = state.run(gather)
    removal = Removal()
    for experiment, checkpoint in matches:
        refuse_running(experiment.id, beats.get(experiment.id))
        removal.add(experiment, checkpoint)
    lines = describe(removal)
    click.echo("\n".join(["Deleting:", *(f"  {line}" for line in lines)]))
    _render.confirm(f"Delete these {len(lines)} item(s) from {state.url}?", force=force)
    run_removal(state, removal)
    click.echo(f"Deleted {len(lines)} item(s).")


COMMANDS = (rm_command,)
