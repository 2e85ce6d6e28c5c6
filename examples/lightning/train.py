"""Lightning with replicate: one logger, then the best checkpoint back in one line.

Run: pip install 'replicate[lightning]'; python train.py
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

import replicate
from replicate.integrations.lightning import ReplicateLogger


class Regressor(pl.LightningModule):
    def __init__(self, lr: float = 0.05, hidden: int = 16) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(4, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: list[torch.Tensor], _: int) -> torch.Tensor:
        loss = torch.nn.functional.mse_loss(self(batch[0]), batch[1])
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: list[torch.Tensor], _: int) -> None:
        self.log("val_loss", torch.nn.functional.mse_loss(self(batch[0]), batch[1]))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def data() -> tuple[DataLoader, DataLoader]:
    x = torch.randn(256, 4, generator=torch.Generator().manual_seed(0))
    y = x.sum(dim=1, keepdim=True)
    return DataLoader(TensorDataset(x, y), batch_size=32), DataLoader(TensorDataset(x, y), 256)


def trainer(epochs: int, logger: ReplicateLogger) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=epochs,
        logger=logger,
        callbacks=[pl.callbacks.ModelCheckpoint(monitor="val_loss")],
        enable_progress_bar=False,
        enable_model_summary=False,
    )


if __name__ == "__main__":
    logger = ReplicateLogger()
    trainer(5, logger).fit(Regressor(), *data())

    best = replicate.experiments.get(logger.version).best()
    print(f"best: {best.short_id} step {best.step} val_loss={best.metrics['val_loss']:.4f}")
    # Resume from the best checkpoint: a real local path, cached after the first call.
    trainer(8, ReplicateLogger()).fit(Regressor(), *data(), ckpt_path=best.local_path("model.ckpt"))
    model = Regressor.load_from_checkpoint(best.local_path("model.ckpt"))
    print("reloaded:", type(model).__name__, "from", best.local_path("model.ckpt"))
