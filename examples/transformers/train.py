"""Hugging Face Trainer with replicate: one callback, then the best checkpoint back in one line.

Run: pip install 'replicate[transformers]'; python train.py  (a tiny BERT built here: no downloads)
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    Trainer,
    TrainingArguments,
)

import replicate
from replicate.integrations.transformers import ReplicateCallback


def rows(n: int) -> list[dict[str, torch.Tensor]]:
    ids = torch.randint(0, 100, (n, 8), generator=torch.Generator().manual_seed(n))
    return [{"input_ids": i, "labels": (i[0] > 50).long()} for i in ids]


def model() -> BertForSequenceClassification:
    config = BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=16,
    )
    return BertForSequenceClassification(config)


def train(epochs: int, callback: ReplicateCallback, resume: str | None = None) -> Trainer:
    args = TrainingArguments(
        output_dir="out",
        num_train_epochs=epochs,
        eval_strategy="epoch",
        save_strategy="epoch",
        metric_for_best_model="loss",
        greater_is_better=False,
        save_total_limit=2,
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model(),
        args=args,
        train_dataset=rows(128),
        eval_dataset=rows(32),
        callbacks=[callback],
    )
    trainer.train(resume_from_checkpoint=resume)
    return trainer


if __name__ == "__main__":
    callback = ReplicateCallback()
    train(3, callback)

    best = replicate.experiments.get(callback.experiment.id).best()
    print(f"best: {best.short_id} step {best.step} eval_loss={best.metrics['eval_loss']:.4f}")
    # The checkpoint-<step> directory, as a real local path (cached after the first call):
    reloaded = BertForSequenceClassification.from_pretrained(best.local_path())
    print("reloaded:", type(reloaded).__name__, "from", best.local_path())
    train(4, ReplicateCallback(), resume=str(best.local_path()))
