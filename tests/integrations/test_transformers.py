"""Hugging Face: ReplicateCallback records TrainingArguments, model config and each checkpoint dir."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import transformers

import replicate
from replicate.integrations.transformers import ReplicateCallback

from .conftest import Project

pytestmark = [
    pytest.mark.filterwarnings(
        "ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning"
    ),
    pytest.mark.timeout(600),  # real fits: minutes, not seconds, on a busy 2-core machine
]

PROBE = torch.arange(24).reshape(3, 8) % 50


def tiny_model() -> Any:
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        num_labels=2,
    )
    return transformers.BertForSequenceClassification(config)


class Data(torch.utils.data.Dataset):  # type: ignore[misc]
    def __init__(self, n: int) -> None:
        gen = torch.Generator().manual_seed(1)
        self.ids = torch.randint(0, 50, (n, 8), generator=gen)
        self.labels = (self.ids[:, 0] > 25).long()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


class Saves(transformers.TrainerCallback):  # type: ignore[misc]
    """The model's logits on PROBE at each save, by step."""

    def __init__(self) -> None:
        self.at: dict[int, Any] = {}

    def on_save(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            self.at[state.global_step] = model(input_ids=PROBE).logits.clone()
        model.train(was_training)


def arguments(output_dir: Path, epochs: int) -> Any:
    return transformers.TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=epochs,
        per_device_train_batch_size=8,
        learning_rate=5e-3,
        eval_strategy="epoch",
        save_strategy="epoch",
        logging_steps=1,
        save_total_limit=1,
        metric_for_best_model="loss",
        greater_is_better=False,
        report_to=[],
        use_cpu=True,
        hub_token="hf_secret_value",
        seed=0,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )


def train(output: Path, callback: Any, saves: Saves, epochs: int, resume: str | None = None) -> Any:
    trainer = transformers.Trainer(
        model=tiny_model(),
        args=arguments(output, epochs),
        train_dataset=Data(32),
        eval_dataset=Data(16),
        callbacks=[callback, saves],
    )
    trainer.train(resume_from_checkpoint=resume)
    return trainer


class TestReplicateCallback:
    def test_train_records_each_save_and_loads_back(self, any_project: Project) -> None:
        """One experiment with args + config, a checkpoint per save, the best loads and resumes."""
        project = any_project
        saves = Saves()
        callback = ReplicateCallback(params={"dataset": "random"})
        train(project.dir / "out", callback, saves, epochs=3)
        assert callback.experiment is not None and not callback.experiment.is_running()

        (experiment_id,) = project.experiment_ids()
        raw = project.experiment_json(experiment_id)
        params = raw["params"]
        assert params["dataset"] == "random"
        assert params["learning_rate"] == 5e-3 and params["num_train_epochs"] == 3
        assert params["hub_token"] == "[redacted]"
        assert (
            "hf_secret_value"
            not in project.raw(f"metadata/experiments/{experiment_id}.json").decode()
        )
        assert params["model/hidden_size"] == 16 and params["model/pad_token_id"] == 0
        steps = [c["step"] for c in raw["checkpoints"]]
        assert steps == sorted(saves.at) == [4, 8, 12]
        for c in raw["checkpoints"]:
            assert c["primary_metric"] == {"name": "eval_loss", "goal": "minimize"}
            assert {"eval_loss", "loss", "epoch"} <= set(c["metrics"])
            members = project.members(c["id"])
            assert {"config.json", "model.safetensors", "trainer_state.json"} <= set(members)
        # save_total_limit=1 deleted the others from disk; the repository keeps all three
        assert len(list((project.dir / "out").glob("checkpoint-*"))) == 1

        best_raw = min(raw["checkpoints"], key=lambda c: c["metrics"]["eval_loss"])
        best = replicate.experiments.get(experiment_id).best()
        assert best is not None and best.id == best_raw["id"]
        folder = best.local_path()
        assert folder.is_dir() and best.local_path() == folder
        model = transformers.BertForSequenceClassification.from_pretrained(folder).eval()
        with torch.no_grad():
            assert torch.equal(model(input_ids=PROBE).logits, saves.at[best.step or 0])

        resumed = Saves()
        trainer = train(project.dir / "out2", ReplicateCallback(), resumed, 5, resume=str(folder))
        assert trainer.state.global_step == 20
        assert min(resumed.at) > (best.step or 0)

    def test_reuses_a_given_experiment(self, project: Project) -> None:
        """experiment= records into the user's experiment and leaves it running."""
        with replicate.init(params={"mine": 1}) as experiment:
            train(project.dir / "out", ReplicateCallback(experiment=experiment), Saves(), 1)
            assert experiment.is_running()
        raw = project.experiment_json(experiment.id)
        assert raw["params"] == {"mine": 1}
        assert [c["step"] for c in raw["checkpoints"]] == [4]
