"""What the framework integrations share: the experiment they record into, params, errors."""

from __future__ import annotations

import importlib
import math
import re
import secrets
from argparse import Namespace
from collections.abc import Mapping
from enum import Enum
from typing import TYPE_CHECKING, Any, Literal

import replicate
from replicate import console
from replicate.errors import MissingExtra, ValidationError

if TYPE_CHECKING:
    from replicate.read import CheckpointView

#: Param names whose values are never recorded.
SECRET = re.compile(r"(^|_)(token|secret|password|passwd|api_?key|credentials?)$", re.IGNORECASE)
REDACTED = "[redacted]"

#: What ``replicate.init(params_mismatch=...)`` takes when a resumed run's params differ.
ParamsMismatch = Literal["error", "update"]


def require(module: str, extra: str) -> None:
    """Import ``module`` or raise MissingExtra naming ``pip install 'replicate[extra]'``."""
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtra(
            f"replicate.integrations.{extra} needs {module}: pip install 'replicate[{extra}]'"
        ) from exc


def _value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Enum):
        return _value(value.value)
    if isinstance(value, list | tuple):
        return [_value(v) for v in value]
    if hasattr(value, "tolist"):  # numpy / torch scalars and arrays
        return _value(value.tolist())
    return str(value)


def flatten_params(params: Mapping[str, Any] | Namespace | None, sep: str = "/") -> dict[str, Any]:
    """Nested dicts and Namespaces become ``outer/inner`` keys; values become JSON.

    Anything that is not JSON (a class, a dtype, a callable) is recorded as its ``str()``;
    values under secret-looking names (``hub_token``, ``api_key``…) are redacted.
    """
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Namespace):
            value = vars(value)
        if isinstance(value, Mapping) and (value or not prefix):  # {} at the top: no params
            for key, inner in value.items():
                walk(f"{prefix}{sep}{key}" if prefix else str(key), inner)
        elif SECRET.search(prefix.rsplit(sep, 1)[-1]) and value not in (None, ""):
            flat[prefix] = REDACTED
        else:
            flat[prefix] = {} if isinstance(value, Mapping) else _value(value)

    walk("", params or {})
    return flat


class Recording:
    """The experiment an integration records into: the user's, or one it starts and stops.

    The id is chosen up front, so a framework can show it before the experiment starts (with
    its params) at the first save, metric or hyperparameter call. With ``resume``, it is the
    id of the experiment to continue (:func:`replicate.resume_target`: what its dead process
    left queued here lands first), or a new one when ``resume="allow"`` finds none; the
    experiment starts as ``replicate.init(resume=<that id>)``, so params are checked then.
    ``writer=False`` (a process that never writes, as a non-zero rank) looks nothing up.
    """

    def __init__(
        self,
        framework: str,
        experiment: replicate.Experiment | None,
        params: Mapping[str, Any] | None,
        init_kwargs: dict[str, Any],
        *,
        resume: bool | str | None = None,
        params_mismatch: ParamsMismatch = "error",
        writer: bool = True,
    ) -> None:
        if experiment is not None and resume:
            raise ValidationError(
                f"{framework}: pass experiment= or resume=, not both (resume it with "
                "replicate.init(resume=...) and pass that experiment)"
            )
        self.framework = framework
        self.experiment = experiment
        self.owned = experiment is None
        self.params: dict[str, Any] = flatten_params(params)
        self._init_kwargs = init_kwargs
        self._params_mismatch = params_mismatch
        #: the id of the experiment this run continues (None: a new one)
        self.resuming: str | None = None
        if experiment is None and writer:
            self.resuming = replicate.resume_target(
                resume,
                repository=init_kwargs.get("repository"),
                project_dir=init_kwargs.get("project_dir"),
            )
        self.id = (
            experiment.id if experiment is not None else self.resuming or secrets.token_hex(32)
        )

    @property
    def short_id(self) -> str:
        return self.id[:7]

    @property
    def started(self) -> bool:
        return self.experiment is not None

    def resume_from(self) -> CheckpointView | None:
        """The latest checkpoint with files of the experiment this run continues, or None.

        None for a new experiment, or one that saved no files yet. Its ``local_path(...)``
        hands the framework the file to restart from.
        """
        if self.resuming is None:
            return None
        stored = replicate.experiments.get(
            self.resuming,
            repository=self._init_kwargs.get("repository"),
            project_dir=self._init_kwargs.get("project_dir"),
        )
        saved = [checkpoint for checkpoint in stored.checkpoints if checkpoint.path]
        return saved[-1] if saved else None

    def add_params(self, params: Mapping[str, Any]) -> None:
        """Add params; after the experiment started they can no longer be recorded."""
        new = {k: v for k, v in params.items() if self.params.get(k, object()) != v}
        if not new:
            return
        if self.experiment is None:
            self.params.update(new)
        else:
            console.once(
                f"params-{self.id}",
                f"{self.framework} hyperparameters {sorted(new)[:5]} are not recorded: experiment "
                f"{self.short_id} had already started (pass them to replicate.init(params=...))",
            )

    def start(self) -> replicate.Experiment:
        """The experiment, started (or resumed) now with the params gathered so far if need be."""
        if self.owned and self.experiment is not None and not self.experiment.is_running():
            self.experiment = None  # the same callback in another fit(): a new experiment
            self.resuming = None
            self.id = secrets.token_hex(32)
        if self.experiment is None:  # init() itself says where the repository is
            self.experiment = replicate.init(
                params=self.params,
                id=None if self.resuming else self.id,
                resume=self.resuming or False,  # looked up already (REPLICATE_RESUME too)
                params_mismatch=self._params_mismatch,
                **self._init_kwargs,
            )
        if self.owned:
            return self.experiment
        console.once(
            f"where-{self.id}",
            f"{self.framework} checkpoints of experiment {self.short_id} go to "
            f"{self.experiment.config.shown_repository}",
            warning=False,
        )
        return self.experiment

    def stop(self) -> None:
        """Stop the experiment if this integration started it (waits for its uploads)."""
        if self.owned and self.experiment is not None:
            self.experiment.stop()
