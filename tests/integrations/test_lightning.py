"""Lightning: ReplicateLogger records hyperparams, metrics and every ModelCheckpoint save."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as lightning
import pytest
import torch

import replicate
from replicate.integrations.lightning import ReplicateLogger

from .conftest import Project

# the frameworks warn about their own deprecations and our tiny data loaders
pytestmark = [
    pytest.mark.filterwarnings(
        "ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning"
    ),
    pytest.mark.timeout(600),  # real fits: minutes, not seconds, on a busy 2-core machine
]

PROBE = torch.linspace(-1, 1, 12).reshape(3, 4)


class Regressor(lightning.LightningModule):  # type: ignore[misc]
    def __init__(self, lr: float = 0.05, optim: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)
        )

    def forward(self, x: Any) -> Any:
        return self.net(x)

    def training_step(self, batch: Any, _: int) -> Any:
        x, y = batch
        loss = torch.nn.functional.mse_loss(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: Any, _: int) -> None:
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self(x), y))

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


class Saves(lightning.Callback):  # type: ignore[misc]
    """What the model was at each save: step -> (its output on PROBE, val_loss)."""

    def __init__(self) -> None:
        self.at: dict[int, tuple[Any, float]] = {}

    def on_save_checkpoint(self, trainer: Any, module: Any, checkpoint: Any) -> None:
        with torch.no_grad():
            out = module(PROBE).clone()
        self.at[trainer.global_step] = (out, float(trainer.callback_metrics["val_loss"]))


def loaders() -> tuple[Any, Any]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=gen)
    y = x.sum(dim=1, keepdim=True) + 0.1 * torch.randn(64, 1, generator=gen)
    data = torch.utils.data.TensorDataset(x, y)
    train = torch.utils.data.DataLoader(data, batch_size=16)
    return train, torch.utils.data.DataLoader(data, batch_size=64)


def fit(logger: ReplicateLogger, saves: Saves, epochs: int, ckpt_path: str | None = None) -> Any:
    torch.manual_seed(0)
    model = Regressor(lr=0.05, optim={"name": "sgd", "momentum": 0.0})
    checkpoints = lightning.callbacks.ModelCheckpoint(monitor="val_loss", mode="min", save_top_k=1)
    trainer = lightning.Trainer(
        max_epochs=epochs,
        logger=logger,
        callbacks=[checkpoints, saves],
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    train, val = loaders()
    trainer.fit(model, train, val, ckpt_path=ckpt_path)
    return trainer, model


class TestReplicateLogger:
    def test_fit_records_each_save_and_loads_back(self, any_project: Project) -> None:
        """A fit gives one experiment with the hparams and a checkpoint per save; best loads back."""
        project = any_project
        saves = Saves()
        logger = ReplicateLogger(params={"dataset": "random"})
        trainer, _ = fit(logger, saves, epochs=4)
        assert logger.version == logger.name
        assert Path(trainer.checkpoint_callback.dirpath).parts[-2] == logger.version

        ids = project.experiment_ids()
        assert len(ids) == 1 and ids[0].startswith(logger.version)
        raw = project.experiment_json(ids[0])
        assert raw["params"] == {
            "dataset": "random",
            "lr": 0.05,
            "optim/name": "sgd",
            "optim/momentum": 0.0,
        }
        with_files = [c for c in raw["checkpoints"] if c["path"]]
        assert sorted(c["step"] for c in with_files) == sorted(saves.at)
        assert len(saves.at) == 4  # top_k=1 still saves every improving epoch here
        for c in with_files:
            assert c["metrics"]["val_loss"] == pytest.approx(saves.at[c["step"]][1])
            assert c["primary_metric"] == {"name": "val_loss", "goal": "minimize"}
            assert set(project.members(c["id"])) == {"model.ckpt"}
        # metrics between saves are kept, without a primary metric
        metrics_only = [c for c in raw["checkpoints"] if not c["path"]]
        assert any("train_loss" in c["metrics"] for c in metrics_only)
        assert all(c["primary_metric"] is None for c in metrics_only)
        # save_top_k=1 removed the earlier files; the repository keeps them
        assert len(list(Path(trainer.checkpoint_callback.dirpath).glob("*.ckpt"))) == 1

        best_raw = min(with_files, key=lambda c: c["metrics"]["val_loss"])
        experiment = replicate.experiments.get(logger.version)
        assert experiment.status == "stopped"
        best = experiment.best()
        assert best is not None and best.id == best_raw["id"]
        path = best.local_path("model.ckpt")
        restored = Regressor.load_from_checkpoint(path)
        with torch.no_grad():
            assert torch.equal(restored(PROBE), saves.at[best.step or 0][0])

        # cached: the second call downloads nothing (the tarball is gone from the repository)
        if project.url.startswith("file://"):
            (Path(project.url[7:]) / "checkpoints" / f"{best.id}.tar.gz").unlink()
            assert best.local_path("model.ckpt") == path

        resumed = Saves()
        trainer2, _ = fit(ReplicateLogger(), resumed, epochs=6, ckpt_path=str(path))
        assert trainer2.global_step > (best.step or 0)
        assert min(resumed.at) > (best.step or 0)  # the new run went on from the saved step
        assert len(project.experiment_ids()) == 2

    def test_reuses_a_given_experiment_and_leaves_it_running(self, project: Project) -> None:
        """experiment= records into the user's experiment and does not stop it."""
        with replicate.init(params={"mine": 1}) as experiment:
            logger = ReplicateLogger(experiment=experiment, log_between_saves=False)
            fit(logger, Saves(), epochs=2)
            assert experiment.is_running()
            assert logger.version == experiment.short_id
        raw = project.experiment_json(experiment.id)
        assert raw["params"] == {"mine": 1}
        assert all(c["path"] for c in raw["checkpoints"])
        assert len(raw["checkpoints"]) == 2

    def test_mirror_removals(self, project: Project) -> None:
        """With mirror_removals, files save_top_k deleted leave the repository at the end."""
        logger = ReplicateLogger(mirror_removals=True, log_between_saves=False)
        trainer, _ = fit(logger, Saves(), epochs=3)
        raw = project.experiment_json(project.experiment_ids()[0])
        assert [c["metrics"]["val_loss"] for c in raw["checkpoints"]] == pytest.approx(
            [float(trainer.checkpoint_callback.best_model_score)]
        )
