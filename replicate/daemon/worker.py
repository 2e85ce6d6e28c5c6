"""Worker: pack off the loop, upload the data, then commit the metadata that lists it."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar, TypeVarTuple

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from replicate import archive, gzip_blocks
from replicate.daemon.jobs import Job
from replicate.daemon.pool import RepositoryPool
from replicate.daemon.shards import PARTS_WAIT, wait_for_parts
from replicate.daemon.spool import JobError, Spool
from replicate.errors import (
    CorruptedArchive,
    DoesNotExist,
    JobFailed,
    SeveralErrors,
    StorageError,
    TransientStorageError,
    collapse,
)
from replicate.parts import part_id, part_ranks
from replicate.records import CheckpointRecord, EncodingCache, ExperimentRecord
from replicate.repository import ArchiveFolder, Repository

log = logging.getLogger("replicate")
P = ParamSpec("P")
T = TypeVar("T")
Ts = TypeVarTuple("Ts")

#: Uploads with data in flight at once; metrics-only commits are not limited.
UPLOADS_IN_FLIGHT = 2
#: The experiment JSON grows with every checkpoint. Writing it at most once per
#: WRITE_SPACING x (the last write's cost), capped at MAX_WRITE_GAP seconds, keeps the worker
#: busy a bounded share of the time (and off the GIL the training loop needs) however many
#: checkpoints arrive; the ones that arrive meanwhile land together in the next write.
WRITE_SPACING = 20
MAX_WRITE_GAP = 1.0
#: Niceness of the threads that pack and hash (the training loop keeps priority).
BACKGROUND_NICE = 10


_niced = threading.local()


def _background(fn: Callable[P, T]) -> Callable[P, T]:
    """``fn`` run at a lower CPU priority, so packing yields the cores to training first."""

    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        if not getattr(_niced, "done", False):
            with contextlib.suppress(OSError):  # per thread on Linux
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICE)
            _niced.done = True
        return fn(*args, **kwargs)

    return run


def _classify(job: Job, exc: Exception) -> JobFailed:
    """What a failed attempt means for the job: retry it (transient) or give up (permanent).

    Messages name the problem, never a payload (params, metadata).
    """
    if isinstance(exc, JobFailed):
        return exc
    if isinstance(exc, SeveralErrors):
        transient = all(isinstance(e, TransientStorageError | OSError) for e in exc.errors)
        return JobFailed(str(exc), permanent=not transient)
    if isinstance(exc, TransientStorageError):
        return JobFailed(f"storage unavailable: {exc}", permanent=False)
    if isinstance(exc, CorruptedArchive | StorageError | DoesNotExist):
        return JobFailed(str(exc), permanent=True)
    if isinstance(exc, OSError):
        return JobFailed(f"reading the spool failed: {exc}", permanent=False)
    # a bug must fail one job, not the whole daemon
    log.error("unexpected error in %s", job.label, exc_info=exc)
    return JobFailed(f"internal error ({type(exc).__name__}) in {job.label}", permanent=True)


async def _bookkeep(fn: Callable[[Job, *Ts], None], job: Job, *args: *Ts) -> None:
    """Run a spool bookkeeping call off the loop; a full disk there never stops the worker."""
    try:
        await anyio.to_thread.run_sync(fn, job, *args)
    except OSError as exc:
        log.warning("could not record the state of %s in the spool: %s", job.label, exc)


@dataclass
class _Experiment:
    """What the worker knows of one experiment's committed JSON."""

    record: ExperimentRecord | None = None
    code_landed: anyio.Event = field(default_factory=anyio.Event)
    code_error: str | None = None
    lock: anyio.Lock = field(default_factory=anyio.Lock)
    pending: list[CheckpointRecord] = field(default_factory=list)
    committed: set[str] = field(default_factory=set)
    #: checkpoint id -> its encoded JSON, so each rewrite only encodes what is new
    encoded: EncodingCache = field(default_factory=dict)
    #: when the last JSON write ended, and how long it took (for the write rate limit)
    last_write_end: float = 0.0
    last_write_cost: float = 0.0


@dataclass(frozen=True, slots=True)
class Landed:
    """A job that landed: its tarball's size and sha256 (empty for metrics-only)."""

    job: Job
    size: int
    sha256: str


class Worker:
    """Runs jobs of any repository; one per daemon. Never raises: outcomes go to callbacks."""

    def __init__(
        self,
        pool: RepositoryPool,
        spool_for: Callable[[Job], Spool],
        on_landed: Callable[[Landed], None],
        on_failed: Callable[[Job, JobFailed], None],
    ) -> None:
        self._pool = pool
        self._spool_for = spool_for
        self._on_landed = on_landed
        self._on_failed = on_failed
        self._experiments: dict[tuple[str, str], _Experiment] = {}
        self._uploads = anyio.CapacityLimiter(UPLOADS_IN_FLIGHT)
        #: job id -> (size, sha256) of a sharded checkpoint's own part, landed in this run
        self._uploaded: dict[str, tuple[int, str]] = {}

    def _state(self, job: Job) -> _Experiment:
        key = (job.repository, job.experiment_id)
        state = self._experiments.get(key)
        if state is None or job.kind == "experiment":
            state = _Experiment()
            if job.kind == "experiment":
                state.record = job.experiment
            else:
                state.code_landed.set()  # landed earlier, or in another process
            self._experiments[key] = state
        return state

    async def run(self, job: Job) -> None:
        """Land ``job`` under the retry policy; report the outcome through the callbacks."""
        state = self._state(job)  # before any await: experiment jobs register first
        spool = self._spool_for(job)
        attempts = 0

        async def attempt() -> Landed:
            nonlocal attempts
            attempts += 1
            try:
                return await self._attempt(job, state)
            except Exception as exc:
                failure = _classify(job, exc)
                error = JobError(str(failure), failure.permanent, attempts, time.time())
                await _bookkeep(spool.record_error, job, error)
                log.info("%s failed (%s)", job.label, failure)
                raise failure from exc

        try:
            landed: Landed = await self._pool.settings.retry.job()(attempt)
        except JobFailed as failure:
            final = JobError(str(failure), failure.permanent, attempts, time.time(), final=True)
            await _bookkeep(spool.record_error, job, final)
            if job.kind == "experiment":
                state.code_error = str(failure)
                state.code_landed.set()
            self._on_failed(job, failure)
            return
        finally:
            self._uploaded.pop(job.id, None)
        await _bookkeep(spool.remove, job)
        self._on_landed(landed)

    async def _attempt(self, job: Job, state: _Experiment) -> Landed:
        repository = await self._pool.get(job.repository)
        size, digest = 0, ""
        if job.kind == "experiment":
            await repository.check_version(create=True)
            if job.files:
                code_id = job.code_id or job.experiment_id
                size, digest = await self._upload(job, "experiments", code_id)
            assert state.record is not None
            # data before metadata: the JSON is the commit point (merged with what is stored:
            # a retried job may find its JSON written already, maybe with checkpoints)
            await self._commit(job, state, None)
            state.code_error = None
            state.code_landed.set()
        else:
            assert job.checkpoint is not None
            if job.files:
                size, digest = await self._upload_once(job)
            if job.part:  # another rank's part of a sharded checkpoint: rank 0 commits it
                return Landed(job, size, digest)
            # the commit rule (parts.py): every other rank's part first
            deadline = self._pool.settings.retry.job_deadline
            await wait_for_parts(repository, job.checkpoint, min(PARTS_WAIT, deadline))
            await state.code_landed.wait()
            if state.code_error is not None:
                raise JobFailed(
                    f"the experiment's own upload failed: {state.code_error}", permanent=False
                )
            await self._commit(job, state, job.checkpoint)
        return Landed(job, size, digest)

    async def _upload_once(self, job: Job) -> tuple[int, str]:
        """Upload a checkpoint job's tarball (a part's, for a sharded one) once per job run:
        a retry that only waits for other ranks' parts does not send it again."""
        assert job.checkpoint is not None
        done = self._uploaded.get(job.id)
        if done is None:
            archive_id = part_id(job.checkpoint.id, job.part or 0)
            done = await self._upload(job, "checkpoints", archive_id, job.checkpoint.id)
            if part_ranks(job.checkpoint):
                self._uploaded[job.id] = done
        return done

    async def _upload(
        self, job: Job, folder: ArchiveFolder, id: str, prefix: str | None = None
    ) -> tuple[int, str]:
        """Upload the job's files as ``<folder>/<id>.tar.gz``, members under ``prefix``/ (id)."""
        spool = self._spool_for(job)
        damage = await anyio.to_thread.run_sync(spool.verify_snapshot, job)
        if damage is not None:
            raise JobFailed(damage, permanent=True)
        if job.staged_tar is not None:
            raw = archive.file_stream(job.staged_tar_path)
        else:
            files = [(job.files_dir / rel, rel) for rel in sorted(job.files)]
            raw = archive.tar_stream(files, prefix or id)
        packer = gzip_blocks.Packer(raw)
        digest = hashlib.sha256()

        def pack_and_hash() -> bytes:
            # one hop to a thread per ~4 MiB piece: on a loaded machine every hop between
            # threads waits for the scheduler, so packing and hashing share one
            piece = packer.read()
            digest.update(piece)  # hashlib drops the GIL
            return piece

        async def produce(send: MemoryObjectSendStream[bytes]) -> None:
            async with send:
                try:
                    while chunk := await anyio.to_thread.run_sync(_background(pack_and_hash)):
                        await send.send(chunk)
                except anyio.BrokenResourceError:
                    return  # the upload stopped: its own error is the one to report
                finally:
                    packer.close()

        repository = await self._pool.get(job.repository)
        # Packing the next chunk overlaps with sending this one (two chunks buffered). A
        # packing error cancels the upload, which then never completes with partial data.
        send, receive = anyio.create_memory_object_stream[bytes](1)
        try:
            async with self._uploads, anyio.create_task_group() as tg, receive:
                tg.start_soon(produce, send)
                sent = await repository.upload_archive(folder, id, receive)
        except BaseExceptionGroup as group:
            raise collapse(group) from None
        stored = await repository.archive_size(folder, id)
        if stored != sent:  # verified before commit
            raise JobFailed(
                f"{folder}/{id}.tar.gz holds {stored} bytes after sending {sent}", permanent=False
            )
        return sent, digest.hexdigest()

    async def _stored(self, repository: Repository, job: Job) -> ExperimentRecord | None:
        """The experiment JSON as stored now; None before the experiment's own first write."""
        try:
            return await repository.load_experiment(job.experiment_id)
        except DoesNotExist:
            if job.kind == "experiment":
                return None
            raise JobFailed(
                f"experiment {job.experiment_id[:7]} has no metadata in {job.repository}: "
                "it was deleted (`replicate rm`?), so this checkpoint is not committed",
                permanent=True,
            ) from None

    async def _commit(
        self, job: Job, state: _Experiment, checkpoint: CheckpointRecord | None
    ) -> None:
        """Write the experiment JSON with every landed checkpoint; concurrent commits coalesce."""
        if checkpoint is not None:
            state.pending.append(checkpoint)
        async with state.lock:
            if checkpoint is not None and checkpoint.id in state.committed:
                return  # an earlier holder of the lock wrote it along with its own
            repository = await self._pool.get(job.repository)
            if state.record is None:
                try:
                    state.record = await repository.load_experiment(job.experiment_id)
                except DoesNotExist:
                    raise JobFailed(
                        f"experiment {job.experiment_id[:7]} has no metadata in "
                        f"{job.repository}: it was deleted, or its own upload never ran",
                        permanent=True,
                    ) from None
            gap = min(MAX_WRITE_GAP, WRITE_SPACING * state.last_write_cost)
            wait = state.last_write_end + gap - time.monotonic()
            if wait > 0:
                await anyio.sleep(wait)  # more checkpoints join the batch meanwhile
            started = time.monotonic()
            batch = list(state.pending)
            # Merge into what is stored now, not into what this process last wrote: `rm`,
            # `gc` or another writer may have changed it since, and their changes stand.
            stored = await self._stored(repository, job)
            # an experiment job writes its own header (a resume adds to its history); a
            # checkpoint job keeps the stored one
            base = state.record if stored is None or job.kind == "experiment" else stored
            known = {c.id: c for c in (stored or base).checkpoints}
            for c in batch:
                known[c.id] = c
            ordered = sorted(known.values(), key=lambda c: c.created)
            record = base.with_checkpoints(ordered)
            await repository.save_experiment(record, state.encoded)
            state.last_write_end = time.monotonic()
            state.last_write_cost = state.last_write_end - started
            state.record = record
            state.committed.update(c.id for c in batch)
            state.pending = [c for c in state.pending if c.id not in state.committed]
