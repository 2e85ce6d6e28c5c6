"""Daemon: the process's one sync/async boundary, a thread running the asyncio loop.

Only this module crosses between the caller's threads and the loop. Frozen values (jobs,
records, paths) cross; storage clients never leave the loop that opened them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import CancelledError, Future, InvalidStateError
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, ClassVar, TypeVar, TypeVarTuple

import anyio
from anyio.abc import TaskGroup
from anyio.from_thread import BlockingPortal

from replicate import console
from replicate.config import Settings
from replicate.daemon.executor import LoopExecutor
from replicate.daemon.heartbeat import Heartbeats
from replicate.daemon.jobs import Job
from replicate.daemon.pool import RepositoryPool
from replicate.daemon.spool import Spool, new_owner
from replicate.daemon.worker import Landed, Worker
from replicate.errors import DaemonClosed, JobFailed
from replicate.repository import Repository

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

#: Seconds of draining at exit before saying so.
ANNOUNCE_AFTER = 0.25
PROGRESS_EVERY = 5.0
#: Seconds between a job's hand-over and the loop starting it. Started at once, the woken
#: loop thread takes the GIL to begin the upload while ``checkpoint()`` still needs it to
#: return: measured on 2 cores, a 1 KiB checkpoint's hand-over took 0.06-0.3 ms at p50 and
#: ~0.45 ms at p90 that way, against 0.03-0.07 ms and 0.1-0.17 ms with this delay.
START_DELAY = 0.002


class Daemon:
    """The background uploader of this process, started lazily by :meth:`get`.

    A non-daemon thread runs ``anyio.run``; the interpreter joins it before ``atexit``
    handlers, so pending uploads are finished by a thread that already exists (threads
    cannot be started during interpreter shutdown).
    """

    _instance: ClassVar[Daemon | None] = None
    _instance_lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def get(cls) -> Daemon:
        with cls._instance_lock:
            if cls._instance is None or cls._instance.pid != os.getpid():
                cls._instance = cls()
            return cls._instance

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.owner = new_owner()
        #: The settings of the latest ``init()`` (or the defaults); see :meth:`configure`.
        self.settings = Settings()
        self._cond = threading.Condition()
        self._futures: dict[str, Future[Landed]] = {}
        self._pending: dict[str, Job] = {}
        #: repository checks started by :meth:`check_soon` and not finished (loop side)
        self._checking = 0
        self._spools: dict[Path, Spool] = {}
        self._portal: BlockingPortal | None = None
        self._loop: asyncio.AbstractEventLoop
        self._jobs: TaskGroup
        self._closed = False
        #: set in the main thread when the interpreter starts shutting down
        self._exiting = threading.Event()
        #: set by a Ctrl-C during the drain at exit: leave the rest in the spool
        self._abandon = threading.Event()
        #: set by the loop once the drain at exit is over (finished or abandoned)
        self._drained = threading.Event()
        ready: Future[BlockingPortal] = Future()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="replicate-daemon", daemon=False
        )
        self._thread.start()
        self._portal = ready.result()
        _register_exit_hook(self._wait_at_exit)

    # ---- caller's side -------------------------------------------------------------------

    def _check(self) -> BlockingPortal:
        if os.getpid() != self.pid:
            raise DaemonClosed(
                "replicate cannot be used from a forked child process (a DataLoader worker?): "
                "call checkpoint() from the main process"
            )
        if self._portal is None or self._closed:
            raise DaemonClosed("the replicate daemon has shut down")
        return self._portal

    def configure(self, settings: Settings) -> None:
        """Use ``settings`` from now on: exit timeout, flushes, retry deadlines of new clients."""
        self.settings = settings
        self._pool.settings = settings
        with self._cond:
            for spool in self._spools.values():
                spool.fsync_data = settings.fsync

    def call(self, fn: Callable[[*Ts], Awaitable[T]], *args: *Ts) -> T:
        """Run ``fn(*args)`` in the loop and return its result (not from the loop thread)."""
        return self._check().call(fn, *args)

    def with_repository(self, url: str, fn: Callable[[Repository], Awaitable[T]]) -> T:
        """Run ``fn(repository)`` in the loop with the repository at ``url`` opened there."""

        async def run() -> T:
            return await fn(await self._pool.get(url))

        return self.call(run)

    def check_soon(
        self,
        url: str,
        check: Callable[[Repository], Awaitable[None]],
        *,
        heartbeat_of: str | None = None,
    ) -> Future[None]:
        """Run ``check(repository)`` in the loop without waiting for it; then, with
        ``heartbeat_of``, start that experiment's heartbeat (its first beat proves the
        repository writable). The exit drain waits for it like a job.

        Cancelling the future (the experiment stopped first) keeps the heartbeat from starting.
        """
        self._check()
        future: Future[None] = Future()

        def settle(exc: BaseException | None) -> None:
            with contextlib.suppress(InvalidStateError):  # cancelled meanwhile
                if exc is None:
                    future.set_result(None)
                else:
                    future.set_exception(exc)

        async def run() -> None:
            self._checking += 1
            try:
                await check(await self._pool.get(url))
                if heartbeat_of is not None and not future.cancelled():
                    await self._heartbeats.start(url, heartbeat_of)
            except anyio.get_cancelled_exc_class():
                settle(DaemonClosed("the uploader stopped before the repository was checked"))
                raise
            except Exception as exc:  # noqa: BLE001 - the caller gets it through the future
                settle(exc)
            else:
                settle(None)
            finally:
                self._checking -= 1

        self._loop.call_soon_threadsafe(self._jobs.start_soon, run)
        return future

    def spool(self, root: Path) -> Spool:
        """This process's handle on a project's spool; takes the owner lock on first use."""
        with self._cond:
            spool = self._spools.get(root)
            if spool is None:
                spool = self._spools[root] = Spool(root, fsync_data=self.settings.fsync)
                spool.lock_owner(self.owner)
            return spool

    def submit(self, job: Job) -> Future[Landed]:
        """Hand a committed job to the worker; returns at once, never waiting for the loop."""
        self._check()
        future: Future[Landed] = Future()
        with self._cond:
            self._futures[job.id] = future
            self._pending[job.id] = job
        # Not portal.start_task_soon: that waits for the loop to take the task, and the loop
        # may be busy; call_soon_threadsafe only appends to the loop's queue. The job starts
        # START_DELAY later, once the caller has returned (see START_DELAY).
        self._loop.call_soon_threadsafe(
            self._loop.call_later, START_DELAY, self._jobs.start_soon, self._worker.run, job
        )
        return future

    def wait_for_room(self, root: Path, incoming: int, budget: int) -> None:
        """Block until this process's queued bytes plus ``incoming`` fit in ``budget``."""
        with self._cond:
            if self._fits(root, incoming, budget):
                return
            console.once(
                "backpressure",
                "checkpointing faster than uploads: the spool is over REPLICATE_SPOOL_MAX_BYTES, "
                "so training waits for uploads to catch up",
            )
            self._cond.wait_for(lambda: self._fits(root, incoming, budget))

    def _fits(self, root: Path, incoming: int, budget: int) -> bool:
        queued = sum(j.size for j in self._pending.values() if _root(j) == root)
        return queued == 0 or queued + incoming <= budget

    def wait(self, futures: Sequence[Future[Any]], timeout: float | None) -> bool:
        """Wait for ``futures`` to finish (landed or failed); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for future in futures:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                future.exception(timeout=remaining)
            except TimeoutError:
                return False
            except CancelledError:
                continue
        return True

    def start_heartbeat(
        self, url: str, experiment_id: str, rank: int = 0, world_size: int | None = None
    ) -> None:
        self.call(self._heartbeats.start, url, experiment_id, rank, world_size)

    def stop_heartbeat(self, url: str, experiment_id: str, rank: int = 0) -> None:
        self.call(self._heartbeats.stop, url, experiment_id, rank)

    # ---- loop side -------------------------------------------------------------------------

    def _run(self, ready: Future[BlockingPortal]) -> None:
        try:
            anyio.run(self._main, ready, backend="asyncio")
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            raise
        finally:
            self._closed = True
            self._fail_pending()

    def _fail_pending(self) -> None:
        """Give every future still waiting a result: its job stays queued in the spool."""
        with self._cond:
            futures = list(self._futures.values())
            self._futures.clear()
            self._pending.clear()
            self._cond.notify_all()
        for future in futures:
            if not future.done():
                future.set_exception(
                    DaemonClosed(
                        "the uploader stopped before this job landed; it stays queued: "
                        "`replicate wait` lands it"
                    )
                )

    async def _main(self, ready: Future[BlockingPortal]) -> None:
        asyncio.get_running_loop().set_default_executor(LoopExecutor())
        async with AsyncExitStack() as stack:
            self._pool = RepositoryPool(stack, self.settings)
            self._heartbeats = Heartbeats(self._pool)
            self._worker = Worker(self._pool, self._spool_of, self._landed, self._job_failed)
            async with (
                BlockingPortal() as portal,
                anyio.create_task_group() as tg,
                anyio.create_task_group() as jobs,
            ):
                self._loop = asyncio.get_running_loop()
                self._jobs = jobs
                ready.set_result(portal)
                tg.start_soon(self._heartbeats.run)
                # No event reaches the loop when the interpreter starts to exit: poll.
                while not self._exiting.is_set() and threading.main_thread().is_alive():  # noqa: ASYNC110
                    await anyio.sleep(0.1)
                if await self._drain_at_exit():
                    await self._heartbeats.stop_all()
                self._drained.set()
                tg.cancel_scope.cancel()
                jobs.cancel_scope.cancel()
                await portal.stop(cancel_remaining=True)
            self._release_spools()

    def _spool_of(self, job: Job) -> Spool:
        return self._spools.get(_root(job)) or Spool(_root(job))

    def _landed(self, landed: Landed) -> None:
        with self._cond:
            self._pending.pop(landed.job.id, None)
            future = self._futures.pop(landed.job.id, None)
            self._cond.notify_all()
        if future is not None:
            future.set_result(landed)

    def _job_failed(self, job: Job, failure: JobFailed) -> None:
        console.warn(
            f"{job.label} did not upload: {failure}. It stays queued in {_root(job)}: "
            "`replicate queue` shows it, `replicate wait` retries it"
        )
        with self._cond:
            self._pending.pop(job.id, None)
            future = self._futures.pop(job.id, None)
            self._cond.notify_all()
        if future is not None:
            future.set_exception(failure)

    def _wait_at_exit(self) -> None:
        """In the main thread, as the interpreter starts to exit: wait for the drain.

        Runs before threads are joined (and before concurrent.futures shuts its pools), and
        waits in short slices so that a Ctrl-C is seen: it abandons the drain, leaving the
        rest in the spool. (A plain join of a non-daemon thread ignores Ctrl-C.)
        """
        if os.getpid() != self.pid or not self._thread.is_alive():
            return
        self._exiting.set()
        try:
            while not self._drained.wait(0.1):
                pass
        except KeyboardInterrupt:
            self._abandon.set()
            with contextlib.suppress(KeyboardInterrupt):
                self._drained.wait(5)

    async def _drain_at_exit(self) -> bool:
        """Finish every pending job; False if told to stop first (the rest stays queued)."""
        timeout = self.settings.exit_timeout
        start = time.monotonic()
        said_at: float | None = None
        while (pending := self._pending_snapshot()) or self._checking:
            elapsed = time.monotonic() - start
            if (
                pending
                and elapsed >= ANNOUNCE_AFTER
                and (said_at is None or elapsed - said_at >= PROGRESS_EVERY)
            ):
                said_at = elapsed
                megabytes = sum(j.size for j in pending) / 1e6
                console.info(
                    f"your program has ended, but replicate is still saving {len(pending)} "
                    f"checkpoint(s), {megabytes:.1f} MB left… Ctrl-C to leave them for "
                    "`replicate wait`"
                )
            if self._abandon.is_set() or (timeout is not None and elapsed >= timeout):
                if not pending:
                    break  # only a repository check was left: nothing stays queued
                why = "interrupted" if self._abandon.is_set() else "REPLICATE_EXIT_TIMEOUT reached"
                console.warn(
                    f"{why}: leaving {len(pending)} job(s) in the queue "
                    f"{min(str(j.root) for j in pending)}; "
                    "run `replicate wait` in the project to upload them"
                )
                return False
            await anyio.sleep(0.05)
        if said_at is not None:
            console.info("all checkpoints saved")
        return True

    def _pending_snapshot(self) -> list[Job]:
        with self._cond:
            return list(self._pending.values())

    def _release_spools(self) -> None:
        with self._cond:
            for spool in self._spools.values():
                mine = [j for j in spool.jobs() if j.owner == self.owner]
                spool.release_owner(self.owner, forget=not mine)


def _root(job: Job) -> Path:
    return job.root


def _register_exit_hook(hook: Callable[[], None]) -> None:
    """Run ``hook`` in the main thread when the interpreter starts to exit, before it joins
    threads. ``threading._register_atexit`` is what concurrent.futures uses for the same need;
    hooks run last-registered first, so this one runs before its pools shut down."""
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        register(hook)


def _forget_after_fork() -> None:
    Daemon._instance = None  # the child gets a daemon of its own if it asks for one


os.register_at_fork(after_in_child=_forget_after_fork)
