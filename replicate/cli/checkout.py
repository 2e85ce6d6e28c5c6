"""``replicate checkout <id>``: the code, then a checkpoint's files over it, into a directory."""

from __future__ import annotations

from pathlib import Path

import click

from replicate.cli import _render
from replicate.cli._context import CliState, repository_option
from replicate.ids import short_id
from replicate.read.files import checkout
from replicate.read.source import Match, Source, resolve
from replicate.repository import Repository

#: Files named in the overwrite prompt before "and N more".
LISTED = 5


@click.command("checkout")
@click.argument("id")
@repository_option
@click.option(
    "-o",
    "--output-directory",
    "output",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to write the files (default: the project directory).",
)
@click.option("-f", "--force", is_flag=True, help="Overwrite existing files without asking.")
@click.option(
    "-p",
    "--path",
    "paths",
    multiple=True,
    metavar="PATH",
    help="Only this file or directory (relative to the project; repeatable).",
)
def checkout_command(
    state: CliState, id: str, output: Path | None, force: bool, paths: tuple[str, ...]
) -> None:
    """Write the files of a checkpoint (the code of its experiment, then its own files).

    An experiment id means its best checkpoint, else its latest. Files are extracted beside
    the target and moved into place only when complete; existing files that would change are
    listed and asked about first (-f to skip the question).
    """

    async def find(repository: Repository) -> Match:
        return await resolve(repository, id)

    experiment, checkpoint = state.run(find)
    if checkpoint is None:
        checkpoint = experiment.best() or experiment.latest()
    output_dir = output if output is not None else state.config.project_dir
    label = (
        f"checkpoint {short_id(checkpoint.id)} (step {checkpoint.step}) of experiment "
        f"{short_id(experiment.id)}"
        if checkpoint is not None
        else f"the code of experiment {short_id(experiment.id)} (it has no checkpoints)"
    )
    with _render.progress_bar(f"checkout {short_id(id)}", bytes_=True) as bar:

        def ask(changed: list[str], new: list[str]) -> bool:
            bar.stop()
            created = f" and create {_listed(new)}" if new else ""
            _render.confirm(f"Overwrite {_listed(changed)}{created} in {output_dir}?", force=force)
            return True

        result = checkout(
            Source(state.url, state.config.spool_dir),
            experiment,
            checkpoint,
            output_dir,
            paths=list(paths) or None,
            confirm=ask,
            on_total=bar.total,
            on_progress=bar.advance,
        )
    overwritten = f", {len(result.overwritten)} overwritten" if result.overwritten else ""
    overwritten += f", {len(result.new)} new" if result.new else ""
    _render.echo(
        f"Checked out {label} to {result.output_dir} ({len(result.files)} files{overwritten})."
    )


def _listed(names: list[str]) -> str:
    """``3 file(s) (a, b, c)``, naming at most LISTED of them."""
    more = f" and {len(names) - LISTED} more" if len(names) > LISTED else ""
    return f"{len(names)} file(s) ({', '.join(names[:LISTED])}{more})"


COMMANDS = (checkout_command,)
