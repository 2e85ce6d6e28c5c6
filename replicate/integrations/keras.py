"""Keras 3: ``model.fit(..., callbacks=[ReplicateCallback("model.keras")])``.

A ``keras.callbacks.ModelCheckpoint`` that also records: the experiment starts at train
begin with params derived from ``model.get_config()`` (plus any passed), and every file the
callback saves becomes a checkpoint with the epoch's logs as metrics and the callback's
``monitor``/``mode`` as primary metric. The saved file is handed over (a reflink or an
in-kernel copy), never saved twice.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from replicate.integrations._common import ParamsMismatch, Recording, flatten_params, require


def _default_backend() -> None:
    """``replicate[keras]`` brings torch, not TensorFlow: use it unless a backend was chosen."""
    if "KERAS_BACKEND" in os.environ or "keras" in sys.modules:
        return
    if importlib.util.find_spec("tensorflow"):
        return
    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    with contextlib.suppress(OSError, ValueError, AttributeError):
        chosen = json.loads((keras_home / "keras.json").read_text()).get("backend")
        # keras writes "tensorflow" there by default; honour only a backend that is installed
        if chosen and chosen != "tensorflow" and importlib.util.find_spec(chosen):
            return
    if importlib.util.find_spec("torch") is not None:
        os.environ["KERAS_BACKEND"] = "torch"


_default_backend()
require("keras", "keras")

import keras

import replicate


def model_params(model: Any) -> dict[str, Any]:
    """Params derived from ``model.get_config()``: its name, layers, size, optimizer and loss."""
    params: dict[str, Any] = {"model/class": type(model).__name__}
    try:
        config = model.get_config()
    except (NotImplementedError, TypeError):  # subclassed models may not serialize
        config = {}
    if isinstance(config, Mapping):
        params["model/name"] = config.get("name", getattr(model, "name", ""))
        layers = config.get("layers")
        if isinstance(layers, list):
            params["model/layers"] = [str(layer.get("class_name", "?")) for layer in layers]
    params["model/params"] = int(model.count_params()) if model.built else None
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None:
        params.update(flatten_params({"optimizer": optimizer.get_config()}))
    loss = getattr(model, "loss", None)
    if loss is not None:
        params["loss"] = loss if isinstance(loss, str) else getattr(loss, "name", str(loss))
    return flatten_params(params)


def _iterations(model: Any) -> int:
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or not getattr(optimizer, "built", False):
        return 0
    return int(keras.ops.convert_to_numpy(optimizer.iterations))


def _file_name(filepath: str) -> str:
    for suffix in (".weights.h5", ".keras", ".h5"):
        if filepath.endswith(suffix):
            return "model" + suffix
    return os.path.basename(filepath)


def _stat(path: str) -> tuple[int, int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


class ReplicateCallback(keras.callbacks.ModelCheckpoint):  # type: ignore[misc]
    """``ModelCheckpoint`` whose every save also becomes a replicate checkpoint.

    Each checkpoint holds the saved file as ``model.keras`` (``model.weights.h5`` with
    ``save_weights_only``), its step (batches seen), the epoch and that epoch's logs.

    Parameters:
        filepath, monitor, mode, save_freq, save_weights_only, save_best_only, verbose:
            as for ``keras.callbacks.ModelCheckpoint``.
        params: extra params, recorded beside those from the model.
        experiment: record into this experiment (not stopped at the end) instead of a new one.
        resume: continue an experiment whose process died, as ``replicate.init(resume=...)``
            does (True, ``"allow"`` or an id prefix; ``REPLICATE_RESUME`` too);
            :meth:`resume_from` is then the checkpoint to load the model from.
        params_mismatch: ``"update"`` records changed params of a resumed experiment (by
            default they are an error), as for ``replicate.init``.
        **init_kwargs: passed to :func:`replicate.init` (``path``, ``repository``, …).
    """

    def __init__(
        self,
        filepath: str | os.PathLike[str] = "model.keras",
        monitor: str = "val_loss",
        mode: str = "auto",
        save_freq: str | int = "epoch",
        save_weights_only: bool = False,
        save_best_only: bool = False,
        verbose: int = 0,
        *,
        params: Mapping[str, Any] | None = None,
        experiment: replicate.Experiment | None = None,
        resume: bool | str | None = None,
        params_mismatch: ParamsMismatch = "error",
        **init_kwargs: Any,
    ) -> None:
        super().__init__(
            filepath,
            monitor=monitor,
            verbose=verbose,
            save_best_only=save_best_only,
            save_weights_only=save_weights_only,
            mode=mode,
            save_freq=save_freq,
        )
        self._recording = Recording(
            "Keras", experiment, params, init_kwargs, resume=resume, params_mismatch=params_mismatch
        )
        self._steps = 0

    @property
    def experiment(self) -> replicate.Experiment | None:
        """The experiment recorded into, once training began."""
        return self._recording.experiment

    def resume_from(self) -> replicate.read.CheckpointView | None:
        """The checkpoint a resumed run restarts from (the latest save), or None for a new one.

        ``keras.saving.load_model(checkpoint.local_path("model.keras"))`` gives the model back,
        and ``checkpoint.metrics["epoch"]`` the ``initial_epoch`` to go on from.
        """
        return self._recording.resume_from()

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        super().on_train_begin(logs)
        self._steps = _iterations(self.model)  # a resumed model goes on counting
        self._recording.add_params(model_params(self.model))
        self._recording.start()

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._steps += 1
        super().on_train_batch_end(batch, logs)

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        super().on_train_end(logs)
        self._recording.stop()

    def _save_model(self, epoch: int, batch: int | None, logs: Mapping[str, Any] | None) -> None:
        # Keras decides inside whether to save (save_best_only): compare the file before/after
        filepath = self._get_file_path(epoch, batch, dict(logs or {}))
        before = _stat(filepath)
        super()._save_model(epoch, batch, logs)
        after = _stat(filepath)
        if after is not None and after != before:
            self._record(filepath, epoch, logs or {})

    def _record(self, filepath: str, epoch: int, logs: Mapping[str, Any]) -> None:
        metrics = {**flatten_params(logs), "epoch": epoch + 1}
        primary = None
        if self.monitor in metrics:
            if self.monitor_op is None:
                with contextlib.suppress(ValueError):  # Keras cannot tell the direction
                    self._set_monitor_op()
            if self.monitor_op is not None:
                greater = self.monitor_op is keras.ops.greater
                primary = (self.monitor, "maximize" if greater else "minimize")
        self._recording.start().checkpoint_files(
            {_file_name(filepath): filepath},
            step=self._steps,
            metrics=metrics,
            primary_metric=primary,
        )
