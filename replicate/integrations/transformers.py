"""Hugging Face Transformers: ``Trainer(..., callbacks=[ReplicateCallback()])``.

At train begin the experiment starts with the ``TrainingArguments`` (secrets redacted) and the
model config as params. On each save, the ``checkpoint-<step>`` directory the Trainer wrote is
handed over as the checkpoint's files (a reflink or an in-kernel copy, never re-serialized),
with the latest logged and eval metrics; ``metric_for_best_model``/``greater_is_better`` make
the primary metric. Only the main process writes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from replicate.integrations._common import (
    REDACTED,
    SECRET,
    ParamsMismatch,
    Recording,
    flatten_params,
    require,
)

require("transformers", "transformers")

from transformers import (
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

import replicate


def training_params(args: TrainingArguments, model: Any) -> dict[str, Any]:
    """``TrainingArguments`` (secrets redacted) and ``model/<key>`` of the model's config."""
    values = args.to_dict()
    for key in values:
        if SECRET.search(key):  # to_dict() masks tokens even when unset: say which were set
            values[key] = None if getattr(args, key, None) in (None, "") else REDACTED
    params = flatten_params(values)
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_dict"):
        params.update(flatten_params({"model": config.to_dict()}))
    return params


def primary_metric(args: TrainingArguments, metrics: Mapping[str, Any]) -> tuple[str, str] | None:
    """The metric the Trainer ranks checkpoints by, as (name, goal), if this save has it."""
    name = args.metric_for_best_model
    if name is None:
        name, greater = "eval_loss", False
    else:
        name = name if name.startswith("eval_") else f"eval_{name}"
        greater = bool(args.greater_is_better)
    if name not in metrics:
        return None
    return name, "maximize" if greater else "minimize"


def _main_process() -> bool:
    """True unless this is a non-zero rank of a distributed run (which never writes)."""
    return int(os.environ.get("RANK", "0") or 0) == 0


class ReplicateCallback(TrainerCallback):  # type: ignore[misc]  # read as Any
    """Records a Trainer run: params at train begin, each saved checkpoint directory.

    Parameters:
        params: extra params, recorded beside the training arguments and model config.
        experiment: record into this experiment (not stopped at the end) instead of a new one.
        resume: continue an experiment whose process died, as ``replicate.init(resume=...)``
            does (True, ``"allow"`` or an id prefix; ``REPLICATE_RESUME`` too);
            :meth:`resume_from` is then the checkpoint to pass as ``resume_from_checkpoint``.
        params_mismatch: ``"update"`` records changed arguments of a resumed experiment (by
            default they are an error), as for ``replicate.init``.
        **init_kwargs: passed to :func:`replicate.init` (``path``, ``repository``, …).
    """

    def __init__(
        self,
        params: Mapping[str, Any] | None = None,
        *,
        experiment: replicate.Experiment | None = None,
        resume: bool | str | None = None,
        params_mismatch: ParamsMismatch = "error",
        **init_kwargs: Any,
    ) -> None:
        self._recording = Recording(
            "Transformers",
            experiment,
            params,
            init_kwargs,
            resume=resume,
            params_mismatch=params_mismatch,
            writer=_main_process(),
        )
        self._logs: dict[str, Any] = {}
        #: the latest eval metrics, and the step they were computed at
        self._eval: dict[str, Any] = {}
        self._eval_step = -1

    @property
    def experiment(self) -> replicate.Experiment | None:
        """The experiment recorded into, once training began."""
        return self._recording.experiment

    def resume_from(self) -> replicate.read.CheckpointView | None:
        """The checkpoint a resumed run restarts from (the latest save), or None for a new one.

        Pass ``str(checkpoint.local_path())`` to ``trainer.train(resume_from_checkpoint=...)``.
        """
        return self._recording.resume_from()

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if state.is_world_process_zero:
            self._recording.add_params(training_params(args, kwargs.get("model")))
            self._recording.start()

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._logs.update(flatten_params(logs))

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._eval = flatten_params(metrics)
        self._eval_step = state.global_step

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if not state.is_world_process_zero:
            return
        folder = os.path.join(str(args.output_dir), f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
        if not os.path.isdir(folder):
            return
        # eval metrics of an earlier step would make this save look better or worse than it is
        metrics = {**self._logs, **(self._eval if self._eval_step == state.global_step else {})}
        self._recording.start().checkpoint_files(
            {".": folder},
            step=state.global_step,
            metrics=metrics,
            primary_metric=primary_metric(args, metrics),
        )

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if state.is_world_process_zero:
            self._recording.stop()
