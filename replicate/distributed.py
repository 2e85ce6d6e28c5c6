"""Rank-aware ``init()``: one experiment shared by every rank of a torch.distributed job.

Under an initialized process group with more than one rank, ``init()`` is collective: rank 0
starts (or resumes) the experiment as a single process would, then sends its record to the
other ranks with ``torch.distributed.broadcast_object_list``. The other ranks get a
:class:`RankExperiment` with the same id that records nothing: without sharding, rank 0's
files and metrics are the checkpoint, so user code needs no ``if rank == 0``.

torch is never imported here: only ``sys.modules["torch.distributed"]`` is used, which is
there exactly when the user's script imported it (and so could have started a process group).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from replicate import console
from replicate.checkpoint import (
    Checkpoint,
    CheckpointDir,
    Steps,
    Uploads,
    check_step,
    validate_metrics,
)
from replicate.config import DEFAULT_REPOSITORY, Config, load_config
from replicate.daemon import Daemon, Landed, Spool
from replicate.errors import DistributedError, ReplicateError, UploadFailed
from replicate.experiment import Experiment
from replicate.ids import random_id
from replicate.records import CheckpointRecord, ExperimentRecord
from replicate.values import now


@dataclass(frozen=True, slots=True)
class Rank:
    """This process's place in an initialized torch.distributed process group."""

    rank: int
    world_size: int

    @property
    def leader(self) -> bool:
        return self.rank == 0


def current() -> Rank | None:
    """This process's rank when a process group of more than one rank is initialized, else None.

    Without one, ``RANK``/``WORLD_SIZE`` saying several ranks get a one-line warning: each
    rank then makes its own experiment, as a single process would.
    """
    dist: Any = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        world_size = int(dist.get_world_size())
        if world_size > 1:
            return Rank(int(dist.get_rank()), world_size)
        return None
    _warn_environment_only()
    return None


def _warn_environment_only() -> None:
    try:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return
    if world_size > 1 and "RANK" in os.environ:
        console.once(
            "distributed-environment",
            f"RANK={os.environ['RANK']} and WORLD_SIZE={world_size} are set but no "
            "torch.distributed process group is initialized, so each rank makes its own "
            "experiment: call torch.distributed.init_process_group() before replicate.init() "
            "for one experiment shared by all ranks",
        )


def _broadcast(payload: dict[str, Any] | None) -> dict[str, Any]:
    """Rank 0's ``payload``, on every rank of the default process group."""
    dist: Any = sys.modules["torch.distributed"]
    box: list[Any] = [payload]
    dist.broadcast_object_list(box, src=0)
    received = box[0]
    if not isinstance(received, dict):
        raise DistributedError(f"rank 0 sent {type(received).__name__}, not an experiment")
    return received


def collective_init(
    rank: Rank,
    start: Callable[[], Experiment],
    *,
    project_dir: str | os.PathLike[str] | None,
) -> Experiment:
    """Run ``start`` on rank 0 and share its experiment; every rank must call this.

    Rank 0 sends its failure too, so that the other ranks raise instead of waiting forever.
    """
    if rank.leader:
        try:
            experiment = start()
            experiment.check_repository()  # here, not in the background: all ranks fail at once
        except BaseException as exc:
            # the original error is what rank 0 must raise, even if the group is broken too
            with contextlib.suppress(Exception):
                _broadcast({"error": f"{type(exc).__name__}: {exc}"})
            raise
        if experiment._heartbeat:  # say how many ranks the job has (ls: "running 3/4 ranks")
            experiment._daemon.start_heartbeat(
                experiment.config.repository, experiment.id, 0, rank.world_size
            )
        _broadcast(
            {
                "record": experiment.record.to_dict(),
                "repository": experiment.config.repository,
                "last_step": experiment._steps.last,  # a resumed run goes on from there
                "heartbeat": experiment._heartbeat,
            }
        )
        return experiment
    _land_parts_left(rank, project_dir)
    payload = _broadcast(None)
    if "error" in payload:
        raise DistributedError(
            f"rank 0 could not start the experiment, so rank {rank.rank} cannot either: "
            f"{payload['error']}"
        )
    record = ExperimentRecord.from_dict(payload["record"])
    config = load_config(
        repository=str(payload["repository"]),
        project_dir=Path(project_dir) if project_dir is not None else None,
    )
    last_step = payload.get("last_step")
    experiment = RankExperiment(
        record, config, rank, last_step if isinstance(last_step, int) else None
    )
    if payload.get("heartbeat"):
        experiment._start_heartbeat()
    return experiment


def _land_parts_left(rank: Rank, project_dir: str | os.PathLike[str] | None) -> None:
    """Upload the parts of sharded checkpoints a dead run left in this node's spool.

    Before the broadcast: rank 0 may be resuming, and its resume lands the checkpoints its
    own dead run left, each of which waits for the other ranks' parts (these).
    """
    from replicate.maintenance import drain  # maintenance uses the public API: import late

    try:
        # jobs name their own repositories: only the spool is wanted here, and no notice
        # about a default repository (rank 0's is the one this rank gets)
        config = load_config(
            repository=DEFAULT_REPOSITORY,
            project_dir=Path(project_dir) if project_dir is not None else None,
        )
    except ReplicateError:
        return  # rank 0 reports the configuration; the parts stay for `replicate wait`

    def start(jobs: int, total: int) -> None:
        console.info(f"rank {rank.rank}: uploading {jobs} part(s) a previous run left queued")

    result = drain(config, parts_only=True, on_start=start)
    if result.failed:
        console.warn(
            f"rank {rank.rank}: {len(result.failed)} part(s) a previous run left could not "
            "upload; they stay queued (`replicate queue` shows why)"
        )


class SkippedCheckpoint(Checkpoint):
    """A checkpoint asked for on a rank other than 0: rank 0's call records it, this one nothing."""

    skipped = True

    def __init__(self, record: CheckpointRecord) -> None:
        unused: Future[Landed] = Future()
        unused.cancel()
        super().__init__(record, unused)

    def done(self) -> bool:
        return True

    def wait(self, timeout: float | None = None) -> bool:
        return True

    @property
    def sha256(self) -> str | None:
        return None

    @property
    def error(self) -> str | None:
        return None

    def __repr__(self) -> str:
        return f"<Checkpoint {self.short_id} step={self.step} skipped on this rank>"


class RankExperiment(Experiment):
    """The shared experiment seen from a rank other than 0: same id, records nothing.

    It has no daemon and no spool; every method of :class:`Experiment` that would touch them
    is overridden here (reading, such as :meth:`latest`, works as on rank 0).
    """

    def __init__(
        self, record: ExperimentRecord, config: Config, rank: Rank, last_step: int | None
    ) -> None:
        # Experiment.__init__ is not called: it wants the daemon and spool this rank never uses
        self.record = record
        self.config = config
        self.rank = rank
        self._steps = Steps(last_step)
        self._checkpoints: list[Checkpoint] = []
        self._stopped = False
        # parts of sharded checkpoints are this rank's own: they get a daemon and spool on
        # first use (see _sharded_spool)
        self._uploads = Uploads()
        self._attach_lock = threading.Lock()
        self._heartbeat = False  # see _start_heartbeat

    def _start_heartbeat(self) -> None:
        """Beat beside rank 0's heartbeat while this rank runs (a failure is only reported)."""
        daemon = Daemon.get()
        daemon.configure(self.config.settings)
        try:
            daemon.start_heartbeat(
                self.config.repository, self.id, self.rank.rank, self.rank.world_size
            )
        except ReplicateError as exc:
            console.warn(f"rank {self.rank.rank} could not write its heartbeat: {exc}")
            return
        self._heartbeat = True

    def _sharded_spool(self) -> Spool:
        """This rank's spool, with this process's daemon started to upload from it."""
        with self._attach_lock:
            if getattr(self, "_daemon", None) is None:
                daemon = Daemon.get()
                daemon.configure(self.config.settings)
                self._spool = daemon.spool(self.config.spool_dir)
                self._daemon = daemon
            return self._spool

    def checkpoint(
        self,
        path: str | os.PathLike[str] | None = None,
        step: int | None = None,
        metrics: Mapping[str, Any] | None = None,
        primary_metric: tuple[str, str] | None = None,
        quiet: bool = False,
    ) -> Checkpoint:
        """Check the arguments like rank 0 does, record nothing, return a skipped handle.

        ``path`` is not read: the file may exist on rank 0 only.
        """
        self._check_open()
        clean, pm = validate_metrics(metrics, primary_metric)
        record = CheckpointRecord(
            id=random_id(),
            created=now(),
            metrics=clean,
            step=self._steps.next(check_step(step)),
            path="" if path is None else os.fspath(path),
            primary_metric=pm,
        )
        assert record.step is not None
        self._steps.record(record.step)
        skipped = SkippedCheckpoint(record)
        self._checkpoints.append(skipped)
        return skipped

    def checkpoint_dir(
        self,
        step: int | None = None,
        metrics: Mapping[str, Any] | None = None,
        primary_metric: tuple[str, str] | None = None,
        quiet: bool = False,
    ) -> CheckpointDir:
        """A throwaway temporary directory; what is written there is deleted after the block."""
        self._check_open()
        validate_metrics(metrics, primary_metric)
        check_step(step)
        made: list[Path] = []

        def open_dir() -> Path:
            made.append(Path(tempfile.mkdtemp(prefix=f"replicate-rank{self.rank.rank}-")))
            return made[-1]

        def discard() -> None:
            for path in made:
                shutil.rmtree(path, ignore_errors=True)

        def close_dir() -> Checkpoint:
            discard()
            return self.checkpoint(None, step, metrics, primary_metric, quiet)

        return CheckpointDir(open_dir, close_dir, discard)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for this rank's parts of sharded checkpoints (nothing else uploads here)."""
        futures = self._uploads.futures()
        return not futures or self._daemon.wait(futures, timeout)

    def stop(self, timeout: float | None = None, *, raise_on_error: bool = False) -> None:
        """Wait for this rank's parts, then mark it stopped here; rank 0's ``stop()`` is what
        stops the experiment."""
        if self._stopped:
            return
        finished = self.wait(timeout)
        self._stopped = True
        if self._heartbeat:
            try:
                Daemon.get().stop_heartbeat(self.config.repository, self.id, self.rank.rank)
            except Exception as exc:  # noqa: BLE001 - never break training at the very end
                console.warn(f"could not delete the heartbeat of rank {self.rank.rank}: {exc}")
        failures = self.failures()
        if not finished:
            console.warn(
                f"rank {self.rank.rank} stopped with parts of checkpoints still uploading after "
                f"{timeout} s; they go on in the background"
            )
        if failures:
            message = (
                f"{len(failures)} part(s) of checkpoints of {self.short_id} did not upload from "
                f"rank {self.rank.rank}: they stay queued for `replicate wait`"
            )
            console.warn(message)
            if raise_on_error:
                raise UploadFailed(message, failures)

    def __repr__(self) -> str:
        return f"<Experiment {self.short_id} rank {self.rank.rank}/{self.rank.world_size}>"
