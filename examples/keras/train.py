"""Keras 3 with replicate: a ModelCheckpoint that records, then the best model back in one line.

Run: pip install 'replicate[keras]'; KERAS_BACKEND=torch python train.py
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras
import numpy as np

import replicate
from replicate.integrations.keras import ReplicateCallback

rng = np.random.default_rng(0)
x = rng.normal(size=(256, 4)).astype("float32")
y = x.sum(axis=1, keepdims=True)

model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(16, "tanh"), keras.layers.Dense(1)])
model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05), loss="mse")
callback = ReplicateCallback("checkpoints/epoch{epoch}.keras", monitor="val_loss", mode="min")
model.fit(x, y, epochs=5, validation_split=0.25, callbacks=[callback], verbose=0)

best = replicate.experiments.get(callback.experiment.id).best()
print(f"best: {best.short_id} step {best.step} val_loss={best.metrics['val_loss']:.4f}")
# Load the best model back (a real local path, cached after the first call) and go on training:
model = keras.saving.load_model(best.local_path("model.keras"))
epoch = best.metrics["epoch"]
more = ReplicateCallback("checkpoints/resumed{epoch}.keras")
history = model.fit(
    x, y, initial_epoch=epoch, epochs=epoch + 2, validation_split=0.25, callbacks=[more], verbose=0
)
print(f"resumed at epoch {epoch + 1}: val_loss={history.history['val_loss'][-1]:.4f}")
