"""Resume in each framework: a fit killed by SIGKILL of its process group, restarted as is."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

import replicate
from replicate.errors import ValidationError

from .conftest import Project

pytestmark = [
    pytest.mark.filterwarnings(
        "ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning"
    ),
    pytest.mark.timeout(600),  # real fits in subprocesses on a busy 2-core machine
]

#: After each save a script prints "saved <step>"; with KILL_AFTER=n it then waits on stdin
#: after the n-th, so the test kills it at a known point, mid-fit, uploads maybe in flight.
PAUSE = """
import os, sys
KILL_AFTER = int(os.environ.get("KILL_AFTER", "0"))
SAVES = []

def saved(step):
    SAVES.append(step)
    print("saved", step, flush=True)
    if len(SAVES) == KILL_AFTER:
        sys.stdin.read()
"""

LIGHTNING = (
    PAUSE
    + """
import lightning.pytorch as lightning
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from replicate.integrations.lightning import ReplicateLogger

class Regressor(lightning.LightningModule):
    def __init__(self, lr=0.05):
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Linear(4, 1)

    def training_step(self, batch, _):
        loss = torch.nn.functional.mse_loss(self.net(batch[0]), batch[1])
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, _):
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(batch[0]), batch[1]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

class Logger(ReplicateLogger):
    def after_save_checkpoint(self, callback):
        super().after_save_checkpoint(callback)
        saved(callback._last_global_step_saved)

torch.manual_seed(0)
x = torch.randn(64, 4)
data = torch.utils.data.TensorDataset(x, x.sum(dim=1, keepdim=True))
train = torch.utils.data.DataLoader(data, batch_size=16)
val = torch.utils.data.DataLoader(data, batch_size=64)

logger = Logger(resume="allow")
start = logger.resume_from()  # None on the first run
trainer = lightning.Trainer(
    max_epochs=4, logger=logger, log_every_n_steps=1, enable_progress_bar=False,
    enable_model_summary=False, accelerator="cpu",
    callbacks=[ModelCheckpoint(monitor="val_loss", save_top_k=-1)],
)
trainer.fit(Regressor(), train, val, ckpt_path=start.local_path("model.ckpt") if start else None)
"""
)

TRANSFORMERS = (
    PAUSE
    + """
import torch, transformers
from replicate.integrations.transformers import ReplicateCallback

class Data(torch.utils.data.Dataset):
    def __init__(self, n):
        self.ids = torch.randint(0, 50, (n, 8), generator=torch.Generator().manual_seed(1))
        self.labels = (self.ids[:, 0] > 25).long()
    def __len__(self):
        return len(self.ids)
    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.labels[i]}

class Saved(transformers.TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        saved(state.global_step)

torch.manual_seed(0)
model = transformers.BertForSequenceClassification(transformers.BertConfig(
    vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
    intermediate_size=32, max_position_embeddings=16, num_labels=2,
))
args = transformers.TrainingArguments(
    output_dir="out", num_train_epochs=4, per_device_train_batch_size=8, learning_rate=5e-3,
    eval_strategy="epoch", save_strategy="epoch", logging_steps=1, report_to=[], use_cpu=True,
    seed=0, dataloader_num_workers=0, disable_tqdm=True,
)
callback = ReplicateCallback(resume="allow")
start = callback.resume_from()  # None on the first run
trainer = transformers.Trainer(
    model=model, args=args, train_dataset=Data(32), eval_dataset=Data(16),
    callbacks=[callback, Saved()],
)
trainer.train(resume_from_checkpoint=str(start.local_path()) if start else None)
"""
)

KERAS = (
    PAUSE
    + """
os.environ.setdefault("KERAS_BACKEND", "torch")
import keras
import numpy as np
from replicate.integrations.keras import ReplicateCallback

class Saved(keras.callbacks.Callback):
    def __init__(self, callback):
        super().__init__()
        self.callback = callback
    def on_epoch_end(self, epoch, logs=None):
        saved(self.callback.experiment.checkpoints[-1].step)

rng = np.random.default_rng(0)
x = rng.normal(size=(64, 4)).astype("float32")
callback = ReplicateCallback("ckpt/epoch{epoch}.keras", monitor="val_loss", resume="allow")
start = callback.resume_from()  # None on the first run
if start is None:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)], name="regressor")
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05), loss="mse")
    initial_epoch = 0
else:
    model = keras.saving.load_model(start.local_path("model.keras"))
    initial_epoch = start.metrics["epoch"]
model.fit(
    x, x.sum(axis=1, keepdims=True), batch_size=16, epochs=4, initial_epoch=initial_epoch,
    validation_split=0.25, callbacks=[callback, Saved(callback)], verbose=0, shuffle=False,
)
"""
)

#: framework -> (script, the file each checkpoint holds, the step of each of the four saves)
CASES = {
    "lightning": (LIGHTNING, "model.ckpt", [4, 8, 12, 16]),
    "transformers": (TRANSFORMERS, "model.safetensors", [4, 8, 12, 16]),
    "keras": (KERAS, "model.keras", [3, 6, 9, 12]),
}


def start(project: Project, kill_after: int | None) -> subprocess.Popen[str]:
    env = {**os.environ, "KERAS_BACKEND": "torch"}
    if kill_after is not None:
        env["KILL_AFTER"] = str(kill_after)
    return subprocess.Popen(
        [sys.executable, "train.py"],
        cwd=project.dir,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, killed whole
    )


def saves_of(lines: list[str]) -> list[int]:
    return [int(line.split()[1]) for line in lines if line.startswith("saved ")]


class TestKilledAndRestarted:
    @pytest.mark.parametrize("framework", sorted(CASES))
    def test_same_experiment_goes_on(self, project: Project, framework: str) -> None:
        """Killed after two saves, the same command goes on from the second: one experiment,
        every save of both runs in it once, steps increasing, one resume recorded."""
        script, member, steps = CASES[framework]
        (project.dir / "train.py").write_text(script)
        first = start(project, kill_after=2)
        assert first.stdout is not None
        seen: list[str] = []
        for line in first.stdout:  # the child writes a line after each save
            seen.append(line)
            if len(saves_of(seen)) == 2:
                os.killpg(first.pid, signal.SIGKILL)
                break
        _, err = first.communicate(timeout=60)
        assert first.returncode == -signal.SIGKILL, err
        assert saves_of(seen) == steps[:2]

        second = start(project, kill_after=None)
        out, err = second.communicate(timeout=540)
        assert second.returncode == 0, err
        assert saves_of(out.splitlines()) == steps[2:]  # went on from the second save
        assert "resumed experiment" in err

        (experiment_id,) = project.experiment_ids()
        raw = project.experiment_json(experiment_id)
        (resume,) = raw["resumes"]
        with_files = [c for c in raw["checkpoints"] if c["path"]]
        assert [c["step"] for c in with_files] == steps
        before = [c for c in with_files if c["step"] <= resume["after_step"]]
        assert [c["step"] for c in before] == steps[:2]  # the killed run's, landed by the resume
        every = [c["step"] for c in raw["checkpoints"]]
        assert every == sorted(every)
        assert len({c["id"] for c in raw["checkpoints"]}) == len(raw["checkpoints"])
        for checkpoint in with_files:
            assert member in project.members(checkpoint["id"])
        assert replicate.experiments.get(experiment_id).status == "stopped"


DIES = "import os, replicate\ne = replicate.init(params={'lr': 0.1})\nprint(e.id)\nos._exit(0)\n"


class TestParams:
    def test_checked_before_training_unless_updated(self, project: Project) -> None:
        """A resumed logger has the experiment's id at once; changed hyperparameters are an
        error when Lightning logs them (before training), recorded with params_mismatch."""
        from replicate.integrations.lightning import ReplicateLogger

        died = subprocess.run(
            [sys.executable, "-c", DIES],
            cwd=project.dir,
            capture_output=True,
            text=True,
            check=False,
        )  # ends without stop(): resumable
        experiment_id = died.stdout.strip()
        assert died.returncode == 0 and len(experiment_id) == 64, died.stderr
        logger = ReplicateLogger(resume=True)
        assert logger.version == experiment_id[:7]
        with pytest.raises(ValidationError, match=r"params differ from experiment .*: lr;"):
            logger.log_hyperparams({"lr": 0.2})
        updated = ReplicateLogger(resume=True, params_mismatch="update")
        updated.log_hyperparams({"lr": 0.2})
        updated.finalize("success")
        raw = project.experiment_json(experiment_id)
        assert raw["params"] == {"lr": 0.2}
        assert [r["params_updated"] for r in raw["resumes"]] == [["lr"]]
        assert project.experiment_ids() == [experiment_id]

    def test_replicate_resume_in_the_environment(
        self, project: Project, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """REPLICATE_RESUME=1 resumes in an integration given no resume=, as it does in init."""
        from replicate.integrations.keras import ReplicateCallback

        died = subprocess.run(
            [sys.executable, "-c", DIES],
            cwd=project.dir,
            capture_output=True,
            text=True,
            check=False,
        )
        assert died.returncode == 0, died.stderr
        monkeypatch.setenv("REPLICATE_RESUME", "1")
        callback = ReplicateCallback(params={"lr": 0.1})
        experiment = callback._recording.start()
        assert experiment.id == died.stdout.strip()
        experiment.stop()
        assert len(project.experiment_json(experiment.id)["resumes"]) == 1


class TestNothingToResume:
    """As replicate.init: resume=True with nothing to resume is an error, "allow" starts anew."""

    def test_lightning(self, project: Project) -> None:
        from replicate.integrations.lightning import ReplicateLogger

        with pytest.raises(ValidationError, match="nothing to resume"):
            ReplicateLogger(resume=True)
        logger = ReplicateLogger(resume="allow")
        assert logger.resume_from() is None
        logger.log_hyperparams({"lr": 0.1})
        logger.finalize("success")
        (experiment_id,) = project.experiment_ids()
        assert experiment_id.startswith(logger.version)
        raw = project.experiment_json(experiment_id)
        assert raw["params"] == {"lr": 0.1} and "resumes" not in raw

    def test_transformers_and_keras(self, project: Project) -> None:
        from replicate.integrations.keras import ReplicateCallback as KerasCallback
        from replicate.integrations.transformers import ReplicateCallback as HFCallback

        for callback in (HFCallback, KerasCallback):
            with pytest.raises(ValidationError, match="nothing to resume"):
                callback(resume=True)
            assert callback(resume="allow").resume_from() is None
        assert project.experiment_ids() == []

    def test_experiment_and_resume_together(self, project: Project) -> None:
        """An experiment passed in cannot also be resumed: one line saying how."""
        from replicate.integrations.lightning import ReplicateLogger

        with (
            replicate.init() as experiment,
            pytest.raises(ValidationError, match="pass experiment= or resume=, not both"),
        ):
            ReplicateLogger(experiment=experiment, resume=True)
