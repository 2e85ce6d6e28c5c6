"""Lightning that survives preemption: run it again after a kill and the same experiment goes on.

Run: pip install 'replicate[lightning]'; python train_lightning.py (again after a crash)
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from replicate.integrations.lightning import ReplicateLogger


class Regressor(pl.LightningModule):
    def __init__(self, lr: float = 0.05) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)
        )

    def training_step(self, batch: list[torch.Tensor], _: int) -> torch.Tensor:
        loss = torch.nn.functional.mse_loss(self.net(batch[0]), batch[1])
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: list[torch.Tensor], _: int) -> None:
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(batch[0]), batch[1]))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


x = torch.randn(256, 4, generator=torch.Generator().manual_seed(0))
data = TensorDataset(x, x.sum(dim=1, keepdim=True))

logger = ReplicateLogger(resume="allow")  # after a crash: the same experiment again
start = logger.resume_from()  # its latest saved checkpoint; None on the first run
trainer = pl.Trainer(
    max_epochs=30,
    logger=logger,
    callbacks=[pl.callbacks.ModelCheckpoint(monitor="val_loss", save_top_k=-1)],  # each epoch
    enable_progress_bar=False,
    enable_model_summary=False,
)
trainer.fit(
    Regressor(),
    DataLoader(data, batch_size=32),
    DataLoader(data, batch_size=256),
    ckpt_path=start.local_path("model.ckpt") if start else None,
)
print(f"experiment {logger.version}: steps {start.step if start else 0} to {trainer.global_step}")
