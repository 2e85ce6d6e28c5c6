"""``replicate queue``: the uploads waiting in this project's spool, of every process."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.filesize import decimal

from replicate.cli import _render
from replicate.cli._context import CliState, repository_option
from replicate.daemon import JobState
from replicate.maintenance import queue_states


def _age(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


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
        "owner_pid": job.owner_pid,
        "owner_alive": state.owner_alive,
        "status": state.status,
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
    states = queue_states(state.config)
    if as_json:
        _render.echo(json.dumps([as_dict(s) for s in states], indent=2))
        return
    if not states:
        _render.echo(f"No uploads queued in {state.config.spool_dir}.")
        return
    grid = _render.table("JOB", "EXPERIMENT", "SIZE", "AGE", "OWNER", "STATUS", "LAST ERROR")
    for s in states:
        job = s.job
        what = f"{job.checkpoint.id[:7]} (step {job.checkpoint.step})" if job.checkpoint else "code"
        owner = f"{job.owner_pid} ({'alive' if s.owner_alive else 'dead'})"
        grid.add_row(
            what,
            job.experiment_id[:7],
            decimal(job.size),
            _age(s.age),
            owner,
            s.status,
            s.error.message if s.error else "",
        )
    _render.emit(_render.stdout(), grid)
    dead = sum(1 for s in states if not s.owner_alive)
    if dead:
        _render.echo(
            f"{dead} job(s) belong to processes that ended: run `replicate wait` to upload them.",
            err=True,
        )


COMMANDS = [queue_command]
