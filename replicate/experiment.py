"""Experiment: the training script's handle (sync) on a running experiment."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from replicate import archive, console
from replicate.checkpoint import (
    Checkpoint,
    CheckpointDir,
    Steps,
    Uploads,
    check_step,
    failed_future,
    not_queued,
    validate_metrics,
)
from replicate.config import Config
from replicate.daemon import Daemon, Job, Landed, Spool, new_job_id
from replicate.errors import DaemonClosed, DaemonError, DoesNotExist, UploadFailed, ValidationError
from replicate.ids import random_id, short_id
from replicate.parts import Part
from replicate.records import CheckpointRecord, ExperimentRecord, PrimaryMetric
from replicate.runs import Runs
from replicate.values import now

if TYPE_CHECKING:
    from replicate.read.views import CheckpointView, ExperimentView
    from replicate.sharded import ShardedCheckpoint


class Experiment:
    """A running experiment. Create it with :func:`replicate.init`.

    Usage::

        with replicate.init(path=".", params={"lr": 0.01}) as experiment:
            for epoch in range(10):
                torch.save(model, "model.pth")
                experiment.checkpoint(path="model.pth", step=epoch, metrics={"loss": loss},
                                      primary_metric=("loss", "minimize"))
    """

    def __init__(
        self,
        record: ExperimentRecord,
        config: Config,
        daemon: Daemon,
        spool: Spool,
        ignore: archive.Ignore,
        heartbeat: bool,
        code_upload: Future[Landed] | None = None,
        last_step: int | None = None,
        checked: Future[None] | None = None,
    ) -> None:
        self.record = record
        self.config = config
        self._daemon = daemon
        self._spool = spool
        self._ignore = ignore
        self._heartbeat = heartbeat
        self._steps = Steps(last_step)  # a resumed experiment goes on from its last step
        self._checkpoints: list[Checkpoint] = []
        self._uploads = Uploads(checked)
        if code_upload is not None:
            self._uploads.add(record.id, code_upload)
        self._stopped = False

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def short_id(self) -> str:
        return short_id(self.record.id)

    @property
    def params(self) -> dict[str, Any]:
        return self.record.params

    @property
    def checkpoints(self) -> list[Checkpoint]:
        """Checkpoints created by this process, in order."""
        return list(self._checkpoints)

    def _check_open(self) -> None:
        daemon = getattr(self, "_daemon", None)  # other ranks' experiments have none
        if daemon is not None and os.getpid() != daemon.pid:  # a forked child (DataLoader?)
            raise DaemonClosed(
                "replicate cannot be used from a forked child process (a DataLoader worker?): "
                "call checkpoint() from the main process"
            )
        if self._stopped:
            raise ValidationError(
                f"experiment {self.short_id} is stopped: call replicate.init() for a new one"
            )

    def checkpoint(
        self,
        path: str | os.PathLike[str] | None = None,
        step: int | None = None,
        metrics: Mapping[str, Any] | None = None,
        primary_metric: tuple[str, str] | None = None,
        quiet: bool = False,
    ) -> Checkpoint:
        """Record a version of the outputs: ``path`` (file or directory) plus metrics.

        Returns once the files are snapshotted and the job is on disk; the upload runs in the
        background. Raises ValidationError for bad arguments; never raises for storage trouble.
        """
        self._check_open()
        clean, pm = validate_metrics(metrics, primary_metric)
        step = check_step(step)
        project_dir = self.config.project_dir
        files: list[tuple[Path, str]] = []
        rel = ""
        if path is not None:
            rel = archive.relative_path(project_dir, path)
            files = archive.collect(project_dir, rel, self._ignore)
            if not files:
                raise ValidationError(
                    f"path {str(path)!r} holds no files: save something there first"
                )
        if files:
            self._wait_for_room(sum(p.stat().st_size for p, _ in files))
        job_id = new_job_id()

        def stage() -> dict[str, int]:
            # snapshot synchronously so later overwrites of the file don't leak in
            return archive.snapshot(files, self._spool.staging_dir(job_id)) if files else {}

        return self._queue(job_id, stage, step, clean, pm, rel, quiet)

    def checkpoint_files(
        self,
        files: Mapping[str, str | os.PathLike[str]],
        step: int | None = None,
        metrics: Mapping[str, Any] | None = None,
        primary_metric: tuple[str, str] | None = None,
        quiet: bool = False,
    ) -> Checkpoint:
        """Record files from anywhere on disk (a framework's own checkpoint) under new names.

        ``files`` maps a name in the checkpoint to a file or directory, e.g.
        ``{"model.ckpt": "/runs/epoch=3.ckpt"}``. Snapshotted like :meth:`checkpoint` (a reflink
        where the filesystem allows, else an in-kernel copy) before it returns.
        """
        self._check_open()
        clean, pm = validate_metrics(metrics, primary_metric)
        step = check_step(step)
        named = archive.collect_named({name: Path(path) for name, path in files.items()})
        if not named:
            raise ValidationError("checkpoint_files() got no files: pass {name: path}")
        self._wait_for_room(sum(p.stat().st_size for p, _ in named))
        job_id = new_job_id()
        return self._queue(
            job_id,
            lambda: archive.snapshot(named, self._spool.staging_dir(job_id)),
            step,
            clean,
            pm,
            ".",
            quiet,
        )

    def _queue(
        self,
        job_id: str,
        stage: Callable[[], dict[str, int]],
        step: int | None,
        metrics: dict[str, Any],
        primary_metric: PrimaryMetric | None,
        path: str,
        quiet: bool,
        part: Part | None = None,
    ) -> Checkpoint:
        """Stage the files, persist the job and hand it over; the one way a checkpoint starts.

        ``part``: this rank's part of a sharded checkpoint (replicate/sharded.py).
        Trouble with the spool (disk full) is reported and kept on the returned checkpoint,
        never raised into training.
        """
        record = CheckpointRecord(
            id=random_id() if part is None else part.checkpoint_id,
            created=now(),
            metrics=metrics,
            step=self._steps.next(step),  # recorded only once the job is on disk
            path=path,
            primary_metric=primary_metric,
            extra={} if part is None else part.extra(),
        )
        try:
            sizes = stage()
            if not sizes:  # a checkpoint_dir left empty is a metrics-only checkpoint
                record = replace(record, path="")
            job = self._job(job_id, record, sizes, part.rank if part is not None else None)
            self._spool.commit(job)
        except OSError as exc:
            self._spool.discard(job_id)
            future = not_queued(record, self._spool.root, exc)
        except BaseException:
            self._spool.discard(job_id)
            raise
        else:
            assert record.step is not None
            self._steps.record(record.step)
            future = self._submit(job)
            if not quiet:
                console.info(
                    f"saving checkpoint {short_id(record.id)} (step {record.step})"
                    + (f" of {path}" if path not in ("", ".") else "")
                )
        self._uploads.add(record.id, future)
        checkpoint = Checkpoint(record, future)
        self._checkpoints.append(checkpoint)
        return checkpoint

    def _job(
        self, job_id: str, record: CheckpointRecord, sizes: dict[str, int], part: int | None = None
    ) -> Job:
        return Job(
            id=job_id,
            kind="checkpoint",
            owner=self._daemon.owner,
            repository=self.config.repository,
            experiment_id=self.id,
            root=self._spool.root,
            checkpoint=record,
            files=sizes,
            part=part or None,  # rank 0's part is the checkpoint's own job
        )

    def _submit(self, job: Job) -> Future[Landed]:
        """Hand a persisted job to the daemon; if it is gone, the job waits in the spool."""
        try:
            return self._daemon.submit(job)
        except DaemonError as exc:
            message = (
                f"{job.label} is queued in {self._spool.root} but this process cannot upload "
                f"it ({exc}): `replicate wait` will"
            )
            console.warn(message)
            return failed_future(message)

    def checkpoint_dir(
        self,
        step: int | None = None,
        metrics: Mapping[str, Any] | None = None,
        primary_metric: tuple[str, str] | None = None,
        quiet: bool = False,
    ) -> CheckpointDir:
        """Hand over a fresh directory; what is written in it becomes the checkpoint, uncopied.

        Usage::

            with experiment.checkpoint_dir(step=epoch, metrics={"loss": loss}) as d:
                torch.save(model.state_dict(), d / "model.pth")

        An exception inside the block discards the directory and records nothing.
        """
        self._check_open()
        clean, pm = validate_metrics(metrics, primary_metric)
        step = check_step(step)  # now, not after the user wrote the files
        job_id = new_job_id()

        def open_dir() -> Path:
            self._wait_for_room(0)
            return self._spool.staging_dir(job_id)

        def close_dir() -> Checkpoint:
            files_dir = self._spool.data_dir / job_id
            return self._queue(
                job_id, lambda: archive.written(files_dir), step, clean, pm, ".", quiet
            )

        return CheckpointDir(open_dir, close_dir, lambda: self._spool.discard(job_id))

    def sharded_checkpoint(
        self,
        step: int | None = None,
        metrics: Mapping[str, Any] | None = None,
        primary_metric: tuple[str, str] | None = None,
        *,
        path: str = "dcp",
        quiet: bool = False,
    ) -> ShardedCheckpoint:
        """This rank's part of a checkpoint whose files every rank writes (sharded state).

        Call it on every rank; see :class:`replicate.sharded.ShardedCheckpoint`. Its files are
        stored under ``path`` in the checkpoint. ``replicate.integrations.torch`` builds
        ``ReplicateStorageWriter`` on it.
        """
        from replicate.sharded import ShardedCheckpoint

        return ShardedCheckpoint(
            self, step=step, metrics=metrics, primary_metric=primary_metric, path=path, quiet=quiet
        )

    def _sharded_spool(self) -> Spool:
        """The spool this rank's parts of sharded checkpoints are staged in."""
        return self._spool

    def _wait_for_room(self, incoming: int) -> None:
        """Block while this process's queued bytes plus ``incoming`` exceed the spool budget."""
        budget = self.config.settings.spool_max_bytes
        self._daemon.wait_for_room(self._spool.root, incoming, budget)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every checkpoint so far landed or failed (and the repository check ran);
        False on timeout."""
        return self._daemon.wait(self._uploads.background(), timeout)

    def check_repository(self) -> None:
        """Wait for the check of the repository that init() runs in the background, and raise
        what it found (a missing bucket, refused credentials): to fail before training starts."""
        self._uploads.check()

    def failures(self) -> dict[str, str]:
        """Id -> error of every upload of this experiment that failed."""
        return self._uploads.failures()

    def stop(self, timeout: float | None = None, *, raise_on_error: bool = False) -> None:
        """Wait for this experiment's uploads, then mark it stopped (deletes its heartbeat).

        Upload failures are reported on stderr (and raised as UploadFailed with
        ``raise_on_error``); the failed jobs stay queued for ``replicate wait``.
        """
        if self._stopped:
            return
        finished = self.wait(timeout)
        self._stopped = True
        Runs(self.config.project_dir).stopped(self.id)  # reached stop(): nothing to resume
        self._spool.release_owner(f"experiment-{self.id}", forget=True)
        if self._heartbeat and not self._uploads.stop_check():
            try:
                self._daemon.stop_heartbeat(self.config.repository, self.id)
            except Exception as exc:  # noqa: BLE001 - never break training at the very end
                console.warn(f"could not delete the heartbeat of {self.short_id}: {exc}")
        failures = self.failures()
        if not finished:
            console.warn(
                f"experiment {self.short_id} stopped with uploads still pending after {timeout} s; "
                "they go on in the background (`replicate wait` finishes them if this process ends)"
            )
        if failures:
            message = self._uploads.summary(self.short_id, len(failures))
            console.warn(message)
            if raise_on_error:
                raise UploadFailed(message, failures)

    def stored(self) -> ExperimentView:
        """This experiment as stored in the repository now (with what is still queued here)."""
        from replicate.read import experiments

        return experiments.get(
            self.id, repository=self.config.repository, project_dir=self.config.project_dir
        )

    def latest(self) -> CheckpointView | None:
        """The latest stored checkpoint (what a resumed run restarts from), or None."""
        try:
            return self.stored().latest()
        except DoesNotExist:  # a new experiment whose own upload has not landed yet
            return None

    def best(self) -> CheckpointView | None:
        """The best stored checkpoint by its primary metric, or None."""
        try:
            return self.stored().best()
        except DoesNotExist:
            return None

    def is_running(self) -> bool:
        return not self._stopped

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Experiment {self.short_id} params={self.params!r}>"
