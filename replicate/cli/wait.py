"""``replicate wait``: drain this project's spool in the foreground, taking over dead owners."""

from __future__ import annotations

import time
from concurrent.futures import Future

import click
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from replicate.cli._context import CliState, repository_option
from replicate.daemon.jobs import Job
from replicate.daemon.spool import Spool
from replicate.daemon.worker import JOB_ATTEMPTS, JobFailed, Landed
from replicate.repository import Repository

POLL = 0.2


@click.command("wait")
@repository_option
@click.option(
    "--timeout", type=float, default=None, metavar="SECONDS", help="Give up after this long."
)
def wait_command(state: CliState, timeout: float | None) -> None:
    """Upload everything queued in this project's spool, then exit.

    Takes over the jobs of processes that died (kill -9, OOM, Ctrl-C at exit) and retries
    failed ones; jobs of running processes are left to them and waited for. Exits 0 when
    everything landed, 1 listing what failed.
    """
    spool = Spool(state.config.spool_dir)
    jobs = spool.jobs()
    if not jobs:
        click.echo("Nothing to upload: the queue is empty.")
        return
    daemon = state.daemon
    deadline = None if timeout is None else time.monotonic() + timeout
    mine: dict[str, Future[Landed]] = {}
    submitted: dict[str, Job] = {}
    taken: set[str] = set()
    failed: dict[str, tuple[Job, str]] = {}
    total = sum(_weight(j) for j in jobs)
    stderr = Console(stderr=True)
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=stderr,
        transient=False,
    ) as progress:
        task = progress.add_task(f"uploading {len(jobs)} job(s)", total=total)
        while True:
            remaining = spool.jobs()
            for job in remaining:
                if job.id in mine or job.id in failed:
                    continue
                if job.owner in taken or spool.lock_owner(job.owner):
                    taken.add(job.owner)
                    spool.clear_error(job)
                    mine[job.id] = daemon.submit(job)
                    submitted[job.id] = job
                else:  # a live process owns it: it uploads it; we watch
                    error = spool.error(job)
                    if error is not None and (error.permanent or error.attempts >= JOB_ATTEMPTS):
                        failed[job.id] = (job, error.message)  # its owner has given up on it
            for job_id, future in list(mine.items()):
                if future.done() and isinstance(future.exception(), JobFailed):
                    failed[job_id] = (submitted[job_id], str(future.exception()))
                    del mine[job_id]
            left = [j for j in remaining if j.id not in failed]
            progress.update(task, completed=total - sum(_weight(j) for j in left))
            if not left:
                break
            if deadline is not None and time.monotonic() > deadline:
                progress.stop()
                raise click.ClickException(
                    f"timed out with {len(left)} job(s) still queued; run `replicate wait` again"
                )
            time.sleep(POLL)
    _end_dead_experiments(state, spool, jobs, taken)
    if failed:
        lines = "\n".join(f"  {job.label}: {message}" for job, message in failed.values())
        raise click.ClickException(
            f"{len(failed)} job(s) did not upload and stay queued (`replicate queue` shows them):\n{lines}"
        )
    click.echo(f"All {len(jobs)} job(s) uploaded.")


def _weight(job: Job) -> int:
    """Progress counts bytes; a metrics-only job counts as one."""
    return job.size or 1


def _end_dead_experiments(state: CliState, spool: Spool, jobs: list[Job], taken: set[str]) -> None:
    """Delete the heartbeats of experiments whose process died: they are not running."""
    for owner in taken:
        for repository, experiment_id in {
            (j.repository, j.experiment_id) for j in jobs if j.owner == owner
        }:

            async def stop(repo: Repository, experiment_id: str = experiment_id) -> None:
                await repo.delete_heartbeat(experiment_id)

            state.daemon.with_repository(repository, stop)
        still = [j for j in spool.jobs() if j.owner == owner]
        spool.release_owner(owner, forget=not still)


COMMANDS = [wait_command]
