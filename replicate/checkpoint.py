"""Checkpoint: the handle on one checkpoint, and on the uploads an experiment started; checks of
what checkpoint() is given; steps; checkpoint_dir()'s directory."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from replicate import console
from replicate.daemon import Landed
from replicate.errors import DaemonClosed, JobFailed, NotSaved, UploadFailed, ValidationError
from replicate.ids import short_id
from replicate.records import CheckpointRecord, PrimaryMetric, normalize_goal
from replicate.values import to_json_value


class Checkpoint:
    """A checkpoint created in this process; its upload goes on in the background."""

    #: True on ranks other than 0 of a torch.distributed job, where rank 0's call records it
    skipped = False

    def __init__(self, record: CheckpointRecord, future: Future[Landed]) -> None:
        self.record = record
        self._future = future

    id = property(lambda self: self.record.id)
    short_id = property(lambda self: short_id(self.record.id))
    step = property(lambda self: self.record.step)
    metrics = property(lambda self: self.record.metrics)
    path = property(lambda self: self.record.path)
    created = property(lambda self: self.record.created)
    primary_metric = property(lambda self: self.record.primary_metric)

    def done(self) -> bool:
        """True once the checkpoint landed in the repository, or failed to."""
        return self._future.done()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until it landed (True) or ``timeout`` passed (False); UploadFailed if it failed."""
        try:
            self._future.result(timeout=timeout)
        except TimeoutError:
            return False
        except (JobFailed, DaemonClosed) as exc:
            raise UploadFailed(
                f"checkpoint {self.short_id} did not upload: {exc}", {self.id: str(exc)}
            ) from exc
        return True

    @property
    def sha256(self) -> str | None:
        """The sha256 of the uploaded tarball once it landed (None before, or without files)."""
        if not self._future.done() or self._future.exception() is not None:
            return None
        return self._future.result().sha256 or None

    @property
    def error(self) -> str | None:
        """Why the upload failed, if it did."""
        if not self._future.done():
            return None
        exc = self._future.exception()
        return None if exc is None else str(exc)

    def __repr__(self) -> str:
        state = (
            "landed" if self.done() and not self.error else "failed" if self.error else "pending"
        )
        return f"<Checkpoint {self.short_id} step={self.step} {state}>"


def failed_future(error: str, *, queued: bool = True) -> Future[Landed]:
    future: Future[Landed] = Future()
    future.set_exception(JobFailed(error, permanent=False) if queued else NotSaved(error))
    return future


def not_queued(record: CheckpointRecord, spool: Path, exc: OSError) -> Future[Landed]:
    """Report a checkpoint the spool could not take (disk full): training goes on without it."""
    message = (
        f"checkpoint {short_id(record.id)} (step {record.step}) was NOT saved: "
        f"could not queue it in {spool}: {exc.strerror or exc}"
    )
    console.warn(message + " (training goes on; free some disk space)")
    return failed_future(message, queued=False)


class Uploads:
    """What an experiment started in the background in this process (thread-safe): its uploads,
    each with its label, and the repository check init() left running."""

    def __init__(self, checked: Future[None] | None = None) -> None:
        self._lock = threading.Lock()
        self._futures: list[tuple[str, Future[Landed]]] = []
        self._checked = checked

    def add(self, label: str, future: Future[Landed]) -> None:
        with self._lock:
            self._futures.append((label, future))

    def futures(self) -> list[Future[Landed]]:
        with self._lock:
            return [future for _, future in self._futures]

    def background(self) -> list[Future[Any]]:
        """Everything to wait for: the uploads and the repository check."""
        return self.futures() + ([self._checked] if self._checked is not None else [])

    def check(self) -> None:
        """Wait for the repository check; raise the error it found."""
        if self._checked is not None and not self._checked.cancelled():
            self._checked.result()

    def stop_check(self) -> bool:
        """Cancel the check if it still runs (it then never starts the heartbeat); True if it
        failed (and so beat nothing)."""
        checked = self._checked
        return checked is not None and not checked.cancel() and bool(checked.exception())

    def failures(self) -> dict[str, str]:
        """Label -> error of every upload that failed."""
        with self._lock:
            futures = list(self._futures)
        return {
            label: str(future.exception())
            for label, future in futures
            if future.done() and future.exception() is not None
        }

    def summary(self, experiment: str, failed: int) -> str:
        """What stop() says about ``failed`` failures: the never-queued ones are not queued."""
        futures = self.futures()
        unsaved = sum(1 for f in futures if f.done() and isinstance(f.exception(), NotSaved))
        parts = (
            [f"{unsaved} checkpoint(s) of experiment {experiment} were NOT saved"]
            if unsaved
            else []
        )
        if failed > unsaved:
            parts.append(
                f"{failed - unsaved} upload(s) of experiment {experiment} failed and stay "
                "queued: run `replicate queue` to see why and `replicate wait` to retry"
            )
        return "; ".join(parts)


def validate_metrics(
    metrics: Mapping[str, Any] | None, primary_metric: Any
) -> tuple[dict[str, Any], PrimaryMetric | None]:
    """Check metrics and primary_metric; raise ValidationError naming the problem."""
    if metrics is not None and not isinstance(metrics, Mapping):
        raise ValidationError(
            f"metrics must be a dict of name -> value, got {type(metrics).__name__}"
        )
    clean = to_json_value(dict(metrics or {}), where="metrics")
    if primary_metric is None:
        return clean, None
    if not (
        isinstance(primary_metric, tuple | list)
        and len(primary_metric) == 2
        and isinstance(primary_metric[0], str)
    ):
        raise ValidationError(
            f"primary_metric must be a (name, goal) pair like ('loss', 'minimize'), got {primary_metric!r}"
        )
    name, goal = primary_metric
    if name not in clean:
        raise ValidationError(
            f"primary_metric {name!r} is not among the metrics {sorted(clean)}: pass it in metrics too"
        )
    return clean, PrimaryMetric(name, normalize_goal(goal))


def check_step(step: Any) -> int | None:
    """``step`` as an int (numpy/torch scalars too), or None; ValidationError otherwise."""
    if step is None:
        return None
    if not isinstance(step, bool) and not isinstance(step, int) and hasattr(step, "item"):
        step = step.item()  # numpy / torch scalar
    if isinstance(step, bool) or not isinstance(step, int):
        raise ValidationError(f"step must be an integer, got a {type(step).__name__}")
    return int(step)


@dataclass
class Steps:
    """The last step recorded; an omitted step is the one after it."""

    last: int | None = None

    def next(self, step: int | None) -> int:
        """The step of the next checkpoint (not yet recorded: see :meth:`record`)."""
        if step is not None:
            return step
        return 0 if self.last is None else self.last + 1

    def record(self, step: int) -> None:
        self.last = step


class CheckpointDir:
    """The context manager of :meth:`Experiment.checkpoint_dir`; ``.checkpoint`` after the block."""

    def __init__(
        self,
        open_dir: Callable[[], Path],
        close_dir: Callable[[], Checkpoint],
        discard: Callable[[], None],
    ) -> None:
        self._open_dir = open_dir
        self._close_dir = close_dir
        self._discard = discard
        self.checkpoint: Checkpoint | None = None

    def __enter__(self) -> Path:
        return self._open_dir()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self._discard()
            return
        self.checkpoint = self._close_dir()
