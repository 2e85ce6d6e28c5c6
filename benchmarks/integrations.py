"""Blocking time of each framework integration's save against the framework's own save.

A fit of a model with ~64 MiB of weights saves at every step (Lightning, Transformers) or epoch
(Keras). Measured per save, in the framework's own save hook:

- own: the framework's ``ModelCheckpoint`` / ``Trainer._save_checkpoint`` writing locally,
  with no replicate at all;
- replicate: the same save plus the integration's hand-over (``ReplicateLogger``,
  ``ReplicateCallback``), its upload to a ``file://`` repository running in the background.

Target (issue 9): replicate ≤ own + 1.2 × a copy of the saved file (``shutil.copyfile`` on the
same filesystem, measured in the same run). Fits alternate own / replicate / replicate / own;
``os.sync()`` runs before each timed save so earlier writeback stays out of it.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks._common import (
    Options,
    fmt_bytes,
    fmt_s,
    fmt_x,
    note,
    p50,
    print_table,
    progress,
    ratio,
    record_summary,
    runqueue_seconds,
    settle,
    temp_dir,
    verdict,
)

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ["HF_HUB_OFFLINE"] = "1"

NAME = "integrations"
FACTOR = 1.2
Timings = list[float]
#: the integration's own part of each save (the hand-over), measured inside the saves above
HAND_OVER: Timings = []
#: of each timed save of the current fit, the seconds the saving thread waited for a CPU
QUEUED: Timings = []


def _time_into(times: Timings, fn: Callable[..., Any]) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            times.append(time.perf_counter() - start)

    return timed


def _timed(times: Timings, fn: Callable[[], Any], queued: Timings | None = None) -> Any:
    settle()
    waited = runqueue_seconds()
    start = time.perf_counter()
    result = fn()
    times.append(time.perf_counter() - start)
    if queued is not None:
        queued.append(runqueue_seconds() - waited)
    return result


def _copy_times(source: Path, samples: int) -> Timings:
    times: Timings = []
    target = source.with_name("copy.bin")
    for _ in range(samples):
        _timed(times, lambda: shutil.copyfile(source, target))
        target.unlink()
    return times


# ---- Lightning --------------------------------------------------------------------------------


def lightning_fit(work: Path, ours: bool, steps: int) -> tuple[Timings, Path]:
    import lightning.pytorch as pl
    import torch

    from replicate.integrations.lightning import ReplicateLogger

    times: Timings = []

    class Timed(pl.callbacks.ModelCheckpoint):  # type: ignore[misc]
        def _save_checkpoint(self, trainer: Any, filepath: str) -> None:
            _timed(times, lambda: super(Timed, self)._save_checkpoint(trainer, filepath), QUEUED)

    class Big(pl.LightningModule):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(4096, 4096)  # 16.8 M float32 = 64 MiB

        def training_step(self, batch: Any, _: int) -> Any:
            return self.layer(batch[0]).pow(2).mean()

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=1e-6)

    data = torch.utils.data.TensorDataset(torch.randn(steps * 2, 4096))
    checkpoint = Timed(dirpath=work / "ckpt", every_n_train_steps=1, save_top_k=-1)
    logger: Any = ReplicateLogger(log_between_saves=False) if ours else False
    if ours:
        logger.after_save_checkpoint = _time_into(HAND_OVER, logger.after_save_checkpoint)
    trainer = pl.Trainer(
        max_steps=steps,
        logger=logger,
        callbacks=[checkpoint],
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(Big(), torch.utils.data.DataLoader(data, batch_size=2))
    return times, Path(checkpoint.best_model_path or next((work / "ckpt").iterdir()))


# ---- Transformers -----------------------------------------------------------------------------


def transformers_fit(work: Path, ours: bool, steps: int) -> tuple[Timings, Path]:
    import torch
    import transformers

    from replicate.integrations.transformers import ReplicateCallback

    times: Timings = []
    callbacks: list[Any] = []
    hand_over: Timings = []
    if ours:
        callback = ReplicateCallback()
        # no sync before it: it follows the save at once, as in training
        callback.on_save = _time_into(hand_over, callback.on_save)  # type: ignore[method-assign]
        callbacks.append(callback)

    class Timed(transformers.Trainer):  # type: ignore[misc]
        def _save_checkpoint(self, model: Any, trial: Any) -> None:
            _timed(times, lambda: super(Timed, self)._save_checkpoint(model, trial), QUEUED)

    config = transformers.BertConfig(
        vocab_size=32768,  # the embedding alone: 32768 x 512 float32 = 64 MiB
        hidden_size=512,
        num_hidden_layers=1,
        num_attention_heads=4,
        intermediate_size=512,
        max_position_embeddings=16,
    )
    ids = torch.randint(0, 32768, (steps * 2, 8))
    rows = [{"input_ids": i, "labels": torch.tensor(0)} for i in ids]
    args = transformers.TrainingArguments(
        output_dir=str(work / "out"),
        max_steps=steps,
        per_device_train_batch_size=2,
        save_strategy="steps",
        save_steps=1,
        optim="sgd",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = Timed(
        model=transformers.BertForSequenceClassification(config),
        args=args,
        train_dataset=rows,
        callbacks=callbacks,
    )
    trainer.train()
    if ours:
        HAND_OVER.extend(hand_over[1:])
        times = [save + over for save, over in zip(times, hand_over, strict=True)]
    return times, next((work / "out").glob("checkpoint-*")) / "model.safetensors"


# ---- Keras ------------------------------------------------------------------------------------


def keras_fit(work: Path, ours: bool, steps: int) -> tuple[Timings, Path]:
    import keras
    import numpy as np

    from replicate.integrations.keras import ReplicateCallback

    times: Timings = []
    base: Any = ReplicateCallback if ours else keras.callbacks.ModelCheckpoint

    class Timed(base):  # type: ignore[misc]
        def _save_model(self, epoch: int, batch: Any, logs: Any) -> None:
            _timed(times, lambda: super(Timed, self)._save_model(epoch, batch, logs), QUEUED)

    model = keras.Sequential([keras.Input((4096,)), keras.layers.Dense(4096)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=1e-6), loss="mse")
    x = np.random.default_rng(0).normal(size=(4, 4096)).astype("float32")
    path = work / "ckpt" / "e{epoch}.keras"
    callback = Timed(str(path))
    if ours:
        callback._record = _time_into(HAND_OVER, callback._record)
    model.fit(x, x, batch_size=4, epochs=steps, verbose=0, callbacks=[callback])
    return times, next((work / "ckpt").glob("*.keras"))


FITS = {"Lightning": lightning_fit, "Transformers": transformers_fit, "Keras": keras_fit}


def _measure(name: str, steps: int) -> tuple[Timings, Timings, Timings, int, Timings, Timings]:
    """Save times own / ours, copy times, the file's size; CPU waits of the saves own / ours."""
    fit = FITS[name]
    own: Timings = []
    ours: Timings = []
    own_queued: Timings = []
    ours_queued: Timings = []
    size = 0
    copies: Timings = []
    for turn, replicate_turn in enumerate([False, True, True, False]):  # ABBA
        with temp_dir(f"bench-{name.lower()}") as work:
            os.chdir(work)
            progress(f"{name}: fit {turn + 1}/4 ({'replicate' if replicate_turn else 'own'})")
            QUEUED.clear()
            times, saved = fit(work, replicate_turn, steps)
            (ours if replicate_turn else own).extend(times[1:])  # the first save warms up
            (ours_queued if replicate_turn else own_queued).extend(QUEUED[1:])
            if replicate_turn and name != "Transformers":
                del HAND_OVER[-len(times) : -len(times) + 1]
            size = saved.stat().st_size
            copies += _copy_times(saved, 3)
    return own, ours, copies, size, own_queued, ours_queued


def run(options: Options) -> None:
    steps = 3 if options.quick else 6
    rows = []
    for name in FITS:
        HAND_OVER.clear()
        with temp_dir("bench-integrations-project") as project:
            (project / "replicate.yaml").write_text(f"repository: {(project / 'repo').as_uri()}\n")
            cwd = os.getcwd()
            try:
                own, ours, copies, size, own_queued, ours_queued = _measure(name, steps)
            finally:
                os.chdir(cwd)
        o50, r50, c50, h50 = p50(own), p50(ours), p50(copies), p50(HAND_OVER)
        queued = f"{fmt_s(p50(own_queued))} / {fmt_s(p50(ours_queued))}"
        bar = o50 + FACTOR * c50
        ok = r50 <= bar
        rows.append(
            [
                name,
                fmt_bytes(size),
                f"{len(own)}/{len(ours)}",
                fmt_s(o50),
                fmt_s(r50),
                fmt_x(ratio(r50, o50)),
                fmt_s(r50 - o50),
                fmt_s(h50),
                queued,
                fmt_s(c50),
                fmt_s(bar),
                verdict(ok),
            ]
        )
        record_summary(
            NAME,
            f"{name} save p50",
            f"{fmt_s(r50)}",
            "≤ own save + 1.2× copy",
            ok,
            f"own {fmt_s(o50)}, copy {fmt_s(c50)}, hand-over {fmt_s(h50)}, "
            f"waiting for a CPU own/ours {queued}",
        )
    print_table(
        "Blocking time per save: the framework's own checkpointing vs with the integration",
        [
            "framework",
            "file",
            "n own/ours",
            "own p50",
            "ours p50",
            "ratio",
            "overhead",
            "hand-over p50",
            "CPU wait own/ours",
            "copy p50",
            "bar",
            "target",
        ],
        rows,
    )
    note("bar = own p50 + 1.2 × copy p50 (a shutil.copyfile of the saved file, same filesystem).")
    note("Transformers: own = Trainer._save_checkpoint; ours adds the callback's on_save.")
    note("hand-over = the integration's own part of a save (after_save_checkpoint, on_save,")
    note("the Keras record step); the rest of 'overhead' is the framework's own save running")
    note("slower beside the background upload of the previous checkpoint (2 cores).")
    note("CPU wait = p50 of the time the saving thread was runnable but had no core (schedstat):")
    note("what ours adds there is the save queueing behind that upload and other processes.")
    note("the machine is shared: compare figures within one run only.")
