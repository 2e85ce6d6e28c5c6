"""Keras 3 (torch backend): ReplicateCallback is a ModelCheckpoint whose saves become checkpoints."""

from __future__ import annotations

import os
from typing import Any

import pytest

import replicate

from .conftest import Project

os.environ["KERAS_BACKEND"] = "torch"
import keras
import numpy as np

from replicate.integrations.keras import ReplicateCallback

pytestmark = [
    pytest.mark.filterwarnings(
        "ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning"
    ),
    pytest.mark.timeout(600),  # real fits: minutes, not seconds, on a busy 2-core machine
]

PROBE = np.linspace(-1, 1, 12, dtype="float32").reshape(3, 4)


def data() -> tuple[Any, Any]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    return x, x.sum(axis=1, keepdims=True) + 0.1 * rng.normal(size=(64, 1)).astype("float32")


def tiny_model() -> Any:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(1)],
        name="regressor",
    )
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05), loss="mse")
    return model


class Saves(keras.callbacks.Callback):  # type: ignore[misc]
    """The model's output on PROBE at the end of each epoch, by epoch number (1-based)."""

    def __init__(self) -> None:
        super().__init__()
        self.at: dict[int, Any] = {}

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self.at[epoch + 1] = keras.ops.convert_to_numpy(self.model.predict(PROBE, verbose=0))


def fit(model: Any, callback: Any, saves: Saves, epochs: int, initial_epoch: int = 0) -> Any:
    x, y = data()
    return model.fit(
        x,
        y,
        batch_size=16,
        epochs=epochs,
        initial_epoch=initial_epoch,
        validation_split=0.25,
        callbacks=[saves, callback],
        verbose=0,
        shuffle=False,
    )


class TestReplicateCallback:
    def test_fit_records_each_save_and_loads_back(self, any_project: Project) -> None:
        """One experiment with model params, a checkpoint per epoch, best loads back and resumes."""
        project = any_project
        saves = Saves()
        callback = ReplicateCallback(
            str(project.dir / "ckpt" / "epoch{epoch}.keras"),
            monitor="val_loss",
            mode="min",
            params={"dataset": "random"},
        )
        history = fit(tiny_model(), callback, saves, epochs=3)

        (experiment_id,) = project.experiment_ids()
        raw = project.experiment_json(experiment_id)
        params = raw["params"]
        assert params["dataset"] == "random" and params["model/name"] == "regressor"
        assert params["model/layers"] == ["InputLayer", "Dense", "Dense"] or params[
            "model/layers"
        ] == ["Dense", "Dense"]
        assert params["model/params"] == 4 * 8 + 8 + 8 + 1
        assert params["optimizer/learning_rate"] == pytest.approx(0.05)
        assert params["loss"] == "mse"
        checkpoints = raw["checkpoints"]
        assert [c["step"] for c in checkpoints] == [3, 6, 9]  # 48 training rows / 16
        assert [c["metrics"]["epoch"] for c in checkpoints] == [1, 2, 3]
        assert [c["metrics"]["val_loss"] for c in checkpoints] == pytest.approx(
            history.history["val_loss"]
        )
        for c in checkpoints:
            assert c["primary_metric"] == {"name": "val_loss", "goal": "minimize"}
            assert set(project.members(c["id"])) == {"model.keras"}

        best = replicate.experiments.get(experiment_id).best()
        assert best is not None
        assert best.metrics["val_loss"] == min(history.history["val_loss"])
        restored = keras.saving.load_model(best.local_path("model.keras"))
        assert np.array_equal(restored.predict(PROBE, verbose=0), saves.at[best.metrics["epoch"]])

        epoch = int(best.metrics["epoch"])
        resumed = ReplicateCallback(str(project.dir / "ckpt2" / "e{epoch}.keras"))
        fit(restored, resumed, Saves(), epochs=epoch + 2, initial_epoch=epoch)
        assert resumed.experiment is not None
        steps = [c.step for c in resumed.experiment.checkpoints]
        assert steps == [
            (best.step or 0) + 3,
            (best.step or 0) + 6,
        ]  # the optimizer's step count went on

    def test_save_best_only_and_weights_reusing_an_experiment(self, project: Project) -> None:
        """save_best_only records only improving epochs; experiment= is used and left running."""
        with replicate.init(params={"mine": 1}) as experiment:
            callback = ReplicateCallback(
                str(project.dir / "best.weights.h5"),
                save_best_only=True,
                save_weights_only=True,
                experiment=experiment,
            )
            history = fit(tiny_model(), callback, Saves(), epochs=3)
            assert experiment.is_running()
        raw = project.experiment_json(experiment.id)
        assert raw["params"] == {"mine": 1}
        losses = history.history["val_loss"]
        improving = [v for i, v in enumerate(losses) if v < min(losses[:i], default=float("inf"))]
        assert [c["metrics"]["val_loss"] for c in raw["checkpoints"]] == pytest.approx(improving)
        assert set(project.members(raw["checkpoints"][0]["id"])) == {"model.weights.h5"}

    def test_the_same_callback_in_a_second_fit_starts_a_new_experiment(
        self, project: Project
    ) -> None:
        """A second fit() with the same callback records into a new experiment, not a stopped one."""
        model = tiny_model()
        callback = ReplicateCallback(str(project.dir / "m.keras"))
        fit(model, callback, Saves(), epochs=1)
        first = callback.experiment
        fit(model, callback, Saves(), epochs=2, initial_epoch=1)
        assert first is not None and callback.experiment is not None
        assert callback.experiment.id != first.id and not callback.experiment.is_running()
        assert project.experiment_ids() == sorted([first.id, callback.experiment.id])
        second = project.experiment_json(callback.experiment.id)["checkpoints"]
        assert [c["step"] for c in second] == [6]  # the optimizer's step count went on
