"""PyTorch Lightning: ``Trainer(logger=ReplicateLogger(), callbacks=[ModelCheckpoint(...)])``.

Every file ``ModelCheckpoint`` saves becomes a replicate checkpoint (step, epoch, the latest
value of every logged metric; the primary metric is the callback's ``monitor``/``mode``).
Metrics logged between saves are kept as metrics-only checkpoints. Only global rank 0 writes.
Works with ``lightning.pytorch`` (and ``pytorch_lightning``, whose Trainer accepts the same
logger when both are installed, as the ``lightning`` package installs them).
"""

from __future__ import annotations

import os
from argparse import Namespace
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from replicate.integrations._common import ParamsMismatch, Recording, flatten_params, require

require("lightning.pytorch", "lightning")

from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only

import replicate
from replicate import console, maintenance

#: The name of the saved file inside each replicate checkpoint.
CHECKPOINT_FILE = "model.ckpt"


def _rank_zero() -> bool:
    """True in the process that writes: global rank 0 (or no distributed run)."""
    return int(getattr(rank_zero_only, "rank", 0) or 0) == 0


class _Lazy:
    """``logger.experiment`` before the experiment started: starts it on first real use.

    Lightning reads ``logger.experiment`` in setup, before ``log_hyperparams``; starting the
    experiment there would record it without its params.
    """

    def __init__(self, logger: ReplicateLogger) -> None:
        self._logger = logger

    def __getattr__(self, name: str) -> Any:
        return getattr(self._logger._start(), name)

    def __repr__(self) -> str:
        return f"<replicate experiment {self._logger.version} (starts on first use)>"


class ReplicateLogger(Logger):  # type: ignore[misc]  # Lightning is read as Any
    """A Lightning ``Logger`` recording into a replicate experiment.

    Parameters:
        params: extra params, recorded beside the module's hyperparameters.
        experiment: record into this experiment (not stopped at the end) instead of a new one.
        save_dir: where ModelCheckpoint puts files when it has no ``dirpath``
            (``<save_dir>/<id>/<id>/checkpoints``; default ``lightning_logs``).
        log_between_saves: keep metrics logged between saves as metrics-only checkpoints.
        mirror_removals: when training ends, delete from the repository the checkpoints whose
            files ``save_top_k`` removed (by default they stay).
        resume: continue an experiment whose process died, as ``replicate.init(resume=...)``
            does (True, ``"allow"`` or an id prefix; ``REPLICATE_RESUME`` too): the logger then
            has its id, and :meth:`resume_from` the checkpoint to pass as ``ckpt_path``.
        params_mismatch: ``"update"`` records changed hyperparameters of a resumed experiment
            (by default they are an error), as for ``replicate.init``.
        **init_kwargs: passed to :func:`replicate.init` (``path``, ``repository``, …).
    """

    def __init__(
        self,
        params: Mapping[str, Any] | None = None,
        *,
        experiment: replicate.Experiment | None = None,
        save_dir: str | os.PathLike[str] | None = "lightning_logs",
        log_between_saves: bool = True,
        mirror_removals: bool = False,
        resume: bool | str | None = None,
        params_mismatch: ParamsMismatch = "error",
        **init_kwargs: Any,
    ) -> None:
        super().__init__()
        self._recording = Recording(
            "Lightning",
            experiment,
            params,
            init_kwargs,
            resume=resume,
            params_mismatch=params_mismatch,
            writer=_rank_zero(),
        )
        self._save_dir = None if save_dir is None else os.fspath(save_dir)
        self._log_between_saves = log_between_saves
        self._mirror_removals = mirror_removals
        #: latest value of every metric logged so far
        self._latest: dict[str, Any] = {}
        #: metrics logged at the step not yet recorded, and that step
        self._pending: dict[str, Any] = {}
        self._pending_step: int | None = None
        #: file saved -> (its mtime, the replicate checkpoint that recorded it)
        self._saved: dict[str, tuple[int, replicate.Checkpoint]] = {}

    # ---- identity -----------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._recording.short_id

    @property
    def version(self) -> str:
        return self._recording.short_id

    @property
    def save_dir(self) -> str | None:
        return self._save_dir

    @property
    def experiment(self) -> Any:
        """The replicate :class:`~replicate.Experiment` (it starts on first use); None off rank 0."""
        if not _rank_zero():
            return None
        if self._recording.experiment is not None:
            return self._recording.experiment
        return _Lazy(self)

    def _start(self) -> replicate.Experiment:
        return self._recording.start()

    def resume_from(self) -> replicate.read.CheckpointView | None:
        """The checkpoint a resumed run restarts from: the latest one holding ``model.ckpt``.

        None when this logger starts a new experiment. Pass
        ``checkpoint.local_path("model.ckpt")`` to ``trainer.fit(ckpt_path=...)``.
        """
        return self._recording.resume_from()

    # ---- Logger hooks -------------------------------------------------------------------

    def log_hyperparams(
        self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any
    ) -> None:
        if _rank_zero():
            self._recording.add_params(flatten_params(params))
            if self._recording.resuming and not self._recording.started:
                self._start()  # params are checked against the stored ones before training

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if not _rank_zero():
            return
        clean = flatten_params(metrics)
        if step is not None and step != self._pending_step:
            self._flush()
            self._pending_step = step
        self._pending.update(clean)
        self._latest.update(clean)

    def after_save_checkpoint(self, checkpoint_callback: ModelCheckpoint) -> None:
        if not _rank_zero():
            return
        for path in self._new_files(checkpoint_callback):
            self._record_file(checkpoint_callback, path)

    def finalize(self, status: str) -> None:
        if not _rank_zero():
            return
        nothing_yet = self._recording.experiment is None and not self._pending and not self._saved
        if nothing_yet and status != "success":
            return  # failed before anything happened: leave no empty experiment
        self._flush()
        self._start()
        self._recording.stop()
        if self._mirror_removals:
            self._remove_deleted()

    # ---- helpers ------------------------------------------------------------------------

    def _flush(self) -> None:
        """Record the metrics of the pending step as a metrics-only checkpoint."""
        if self._pending and self._log_between_saves:
            self._start().checkpoint(step=self._pending_step, metrics=self._pending, quiet=True)
        self._pending = {}

    def _new_files(self, callback: ModelCheckpoint) -> list[str]:
        """The files the callback wrote since we last looked, oldest first.

        Lightning calls ``after_save_checkpoint`` after each file it writes, and names it
        (``_last_checkpoint_saved``): that one only. Its other paths can be files an earlier
        run wrote (a resumed fit restores them), which that run recorded.
        """
        last = getattr(callback, "_last_checkpoint_saved", None)
        candidates: set[str]
        if isinstance(last, str) and last:
            candidates = {last}
        else:  # a Lightning that doesn't say: whatever changed since we last looked
            candidates = {
                callback.last_model_path,
                callback.best_model_path,
                *callback.best_k_models,
            }
        found = []
        for path in candidates:
            if not path or os.path.islink(path) or not os.path.isfile(path):
                continue
            mtime = os.stat(path).st_mtime_ns
            seen = self._saved.get(path)
            if seen is None or seen[0] != mtime:
                found.append((mtime, path))
        return [path for _, path in sorted(found)]

    def _record_file(self, callback: ModelCheckpoint, path: str) -> None:
        experiment = self._start()
        step = getattr(callback, "_last_global_step_saved", None)
        if not isinstance(step, int):
            step = self._pending_step
        metrics = {**self._latest, **self._pending}
        primary = None
        score = callback.best_k_models.get(path)
        if callback.monitor:
            if score is None and callback.current_score is not None:
                score = callback.current_score
            if score is not None:
                metrics[callback.monitor] = float(score)
                goal = "maximize" if callback.mode == "max" else "minimize"
                primary = (callback.monitor, goal)
        checkpoint = experiment.checkpoint_files(
            {CHECKPOINT_FILE: path}, step=step, metrics=metrics, primary_metric=primary
        )
        self._saved[path] = (os.stat(path).st_mtime_ns, checkpoint)
        self._pending = {}

    def _remove_deleted(self) -> None:
        """Delete the checkpoints whose files ModelCheckpoint removed, once the experiment ended.

        A running experiment's checkpoints can't be removed (its writer would bring them back):
        with an experiment passed in, which this logger doesn't stop, removals are not mirrored.
        """
        experiment = self._recording.experiment
        gone = [c.id for path, (_, c) in self._saved.items() if not Path(path).exists()]
        if not gone or experiment is None:
            return
        if not self._recording.owned:
            console.warn(
                f"mirror_removals: experiment {experiment.short_id} is still running (it was "
                f"passed in), so the {len(gone)} checkpoint(s) save_top_k deleted stay"
            )
            return
        plan = maintenance.plan_removal(gone, config=experiment.config)
        maintenance.remove(plan, config=experiment.config)
