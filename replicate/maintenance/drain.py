"""Draining the local upload queue in the foreground (``replicate wait``).

Jobs whose process died (kill -9, OOM, Ctrl-C at exit) are taken over: their owner's lock
is taken, and the journal read again under it, so two drains never upload the same job (one
that landed and released the owner while the other looked leaves nothing to take), and a
live owner is never raced. Jobs of
live processes are left to them and watched.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

from replicate.config import Config
from replicate.daemon import Daemon, Job, JobState, Landed, Spool
from replicate.errors import JobFailed
from replicate.repository import Repository

#: Seconds between looks at the spool while draining.
POLL = 0.2


@dataclass
class DrainResult:
    """What a drain did: every job it saw, and the ones that did not land (with why)."""

    jobs: list[Job] = field(default_factory=list)
    failed: dict[str, tuple[Job, str]] = field(default_factory=dict)
    #: jobs still queued when the timeout came (empty unless it timed out)
    left: list[Job] = field(default_factory=list)

    @property
    def timed_out(self) -> bool:
        return bool(self.left)


def queue_states(config: Config) -> list[JobState]:
    """Every pending job of the project's spool, with its status (what ``replicate queue`` lists)."""
    return Spool(config.spool_dir).states()


def weight(job: Job) -> int:
    """Progress counts bytes; a metrics-only job counts as one."""
    return job.size or 1


def drain(
    config: Config,
    *,
    experiment_id: str | None = None,
    parts_only: bool = False,
    timeout: float | None = None,
    on_start: Callable[[int, int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> DrainResult:
    """Upload everything queued in the project's spool; return what happened.

    ``on_start(jobs, total_weight)`` is called once, ``on_progress(done_weight)`` as jobs land.
    With ``experiment_id``, only that experiment's jobs (what a resume lands first); with
    ``parts_only``, only other ranks' parts of sharded checkpoints (what a restarted rank
    other than 0 lands before rank 0's resume waits for them).
    """
    # Over 60 lines: one polling loop whose state (jobs taken, owners held, jobs failed) is
    # shared by the take-over, the submissions and the watch; split, it would be passed around.
    spool = Spool(config.spool_dir)

    def mine(job: Job) -> bool:
        if parts_only and not job.part:
            return False
        return experiment_id is None or job.experiment_id == experiment_id

    result = DrainResult(jobs=[j for j in spool.jobs() if mine(j)])
    if not result.jobs:
        return result
    daemon = Daemon.get()
    daemon.configure(config.settings)  # then one loop: take over, submit, watch
    deadline = None if timeout is None else time.monotonic() + timeout
    taking: dict[str, tuple[Job, Future[Landed]]] = {}
    taken: set[str] = set()  # owners whose lock we hold
    total = sum(weight(j) for j in result.jobs)
    if on_start is not None:
        on_start(len(result.jobs), total)
    while True:
        states = [s for s in spool.states() if mine(s.job)]
        current: set[str] | None = None  # pending jobs, read again once we take an owner
        for state in states:
            job = state.job
            if job.id in taking or job.id in result.failed:
                continue
            if job.owner not in taken and spool.take_over(job.owner):
                taken.add(job.owner)
                current = {j.id for j in spool.jobs()}  # another drain may have landed some
            # not in `current`: another drain landed it before we held the lock
            if job.owner in taken and (current is None or job.id in current):
                spool.clear_error(job)
                taking[job.id] = (job, daemon.submit(job))
            elif job.owner not in taken and state.status == "failed":  # a live owner gave up
                result.failed[job.id] = (job, state.error.message if state.error else "failed")
        for job_id, (job, future) in list(taking.items()):
            if future.done() and isinstance(future.exception(), JobFailed):
                result.failed[job_id] = (job, str(future.exception()))
                del taking[job_id]
        left = [s.job for s in states if s.job.id not in result.failed]
        if on_progress is not None:
            on_progress(total - sum(weight(j) for j in left))
        if not left:
            break
        if deadline is not None and time.monotonic() > deadline:
            result.left = left
            break
        time.sleep(POLL)  # polling the spool, which other processes write: no event to wait on
    _end_dead_experiments(daemon, spool, result.jobs, taken)
    return result


def _end_dead_experiments(daemon: Daemon, spool: Spool, jobs: list[Job], taken: set[str]) -> None:
    """Delete the heartbeats of experiments whose process died: they are not running."""
    for owner in taken:
        for repository, experiment_id in {
            (j.repository, j.experiment_id) for j in jobs if j.owner == owner
        }:

            async def stop(repo: Repository, experiment_id: str = experiment_id) -> None:
                await repo.delete_heartbeat(experiment_id)

            daemon.with_repository(repository, stop)
        still = [j for j in spool.jobs() if j.owner == owner]
        spool.release_owner(owner, forget=not still)
