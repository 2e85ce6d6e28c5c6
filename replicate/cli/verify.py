"""``replicate verify [ID...]``: re-check that metadata decodes and every tarball is whole."""

from __future__ import annotations

import click

from replicate.cli import _render
from replicate.cli._context import CliState, repository_option
from replicate.maintenance import verify
from replicate.read.format import dumps


@click.command("verify")
@click.argument("ids", nargs=-1)
@repository_option
@click.option("--json", "as_json", is_flag=True, help="Print the problems as JSON for scripts.")
def verify_command(state: CliState, ids: tuple[str, ...], as_json: bool) -> None:
    """Re-check the repository, or only the experiments and checkpoints named by id prefix.

    Every experiment's metadata must decode, and every tarball it names must exist and
    stream through the full gzip and tar decode with its members under its id. Checkpoints
    still in this project's upload queue are reported as still uploading. Prints one line
    per problem and a summary; exits 1 if there is any problem.
    """
    with _render.progress_bar("verifying", bytes_=True) as bar:
        report = verify(ids, config=state.config, on_total=bar.total, on_progress=bar.advance)
    if as_json:
        _render.echo(dumps([p.to_json() for p in report.problems]))
    else:
        for problem in report.problems:
            _render.echo(problem.line())
        _render.echo(report.summary())
    if report.problems:
        raise SystemExit(1)


COMMANDS = (verify_command,)
