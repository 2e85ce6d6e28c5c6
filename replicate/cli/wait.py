"""``replicate wait``: drain this project's spool in the foreground, taking over dead owners."""

from __future__ import annotations

import click

from replicate.cli import _render
from replicate.cli._context import CliState, repository_option
from replicate.maintenance import drain


@click.command("wait")
@repository_option
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=None,
    metavar="SECONDS",
    help="Give up after this long.",
)
def wait_command(state: CliState, timeout: float | None) -> None:
    """Upload everything queued in this project's spool, then exit.

    Takes over the jobs of processes that died (kill -9, OOM, Ctrl-C at exit) and retries
    failed ones; jobs of running processes are left to them and waited for. Exits 0 when
    everything landed, 1 listing what failed.
    """
    with _render.progress_bar("uploading", bytes_=True) as bar:

        def start(jobs: int, total: int) -> None:
            bar.describe(f"uploading {jobs} job(s)")
            bar.total(total)

        result = drain(state.config, timeout=timeout, on_start=start, on_progress=bar.set)
    if not result.jobs:
        _render.echo("Nothing to upload: the queue is empty.")
        return
    if result.timed_out:
        raise click.ClickException(
            f"timed out with {len(result.left)} job(s) still queued; run `replicate wait` again"
        )
    if result.failed:
        lines = "\n".join(f"  {job.label}: {message}" for job, message in result.failed.values())
        raise click.ClickException(
            f"{len(result.failed)} job(s) did not upload and stay queued "
            f"(`replicate queue` shows them):\n{lines}"
        )
    _render.echo(f"All {len(result.jobs)} job(s) uploaded.")


COMMANDS = [wait_command]
