"""``replicate queue``: the uploads waiting in this project's spool, of every process."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from replicate.cli._context import CliState, repository_option
from replicate.daemon.spool import JobState, Spool, owner_pid
from replicate.daemon.worker import JOB_ATTEMPTS


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return f"{n} B"


def _age(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def status(state: JobState) -> str:
    if state.error is None:
        return "pending" if state.owner_alive else "orphaned"
    if state.error.permanent or state.error.attempts >= JOB_ATTEMPTS:
        return "failed"
    return "retrying" if state.owner_alive else "failed"


def as_dict(state: JobState) -> dict[str, Any]:
    job = state.job
    return {
        "job": job.id,
        "kind": job.kind,
        "experiment": job.experiment_id,
        "checkpoint": job.checkpoint.id if job.checkpoint else None,
        "step": job.checkpoint.step if job.checkpoint else None,
        "repository": job.repository,
        "bytes": job.size,
        "age_seconds": round(state.age, 3),
        "owner_pid": owner_pid(job.owner),
        "owner_alive": state.owner_alive,
        "status": status(state),
        "error": state.error.message if state.error else None,
        "attempts": state.error.attempts if state.error else 0,
    }


@click.command("queue")
@repository_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def queue_command(state: CliState, as_json: bool) -> None:
    """List uploads still queued in this project's spool (pending and failed).

    Jobs whose process died are finished by `replicate wait`.
    """
    states = Spool(state.config.spool_dir).states()
    if as_json:
        click.echo(json.dumps([as_dict(s) for s in states], indent=2))
        return
    if not states:
        click.echo(f"No uploads queued in {state.config.spool_dir}.")
        return
    table = Table(box=None, pad_edge=False)
    for column in ("JOB", "EXPERIMENT", "SIZE", "AGE", "OWNER", "STATUS", "LAST ERROR"):
        table.add_column(column, overflow="fold")
    for s in states:
        job = s.job
        what = f"{job.checkpoint.id[:7]} (step {job.checkpoint.step})" if job.checkpoint else "code"
        owner = f"{owner_pid(job.owner)} ({'alive' if s.owner_alive else 'dead'})"
        table.add_row(
            what,
            job.experiment_id[:7],
            _size(job.size),
            _age(s.age),
            owner,
            status(s),
            s.error.message if s.error else "",
        )
    Console(no_color=None).print(table)
    dead = sum(1 for s in states if not s.owner_alive)
    if dead:
        click.echo(
            f"{dead} job(s) belong to processes that ended: run `replicate wait` to upload them.",
            err=True,
        )


COMMANDS = [queue_command]
