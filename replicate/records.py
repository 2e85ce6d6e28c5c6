"""Frozen records and their JSON codec: repository format version 1 (Keepsake 0.4.2 compatible).

How single values (params, metrics, timestamps) are written is in :mod:`replicate.values`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeVar, cast

from replicate.errors import CorruptedMetadata, ValidationError
from replicate.ids import is_id
from replicate.values import format_time, from_json_value, parse_time, to_json_value

Goal = Literal["maximize", "minimize"]

#: The most ranks a heartbeat may name (bounds what untrusted metadata can ask for).
MAX_WORLD_SIZE = 1 << 16


def _replicate_version() -> str:
    version = getattr(sys.modules.get("replicate"), "__version__", None)
    return version if isinstance(version, str) else "0.1.0"


def normalize_goal(goal: str) -> Goal:
    """Return ``"maximize"`` or ``"minimize"`` for any casing of them; reject anything else."""
    normalized = str(goal).strip().lower()
    if normalized == "maximize":
        return "maximize"
    if normalized == "minimize":
        return "minimize"
    raise ValidationError(f"goal must be 'maximize' or 'minimize', got {goal!r}")


def _field(d: Mapping[str, Any], key: str, types: type | tuple[type, ...], default: Any) -> Any:
    value = d.get(key)
    if value is None:
        return default
    if not isinstance(value, types):
        kinds = types if isinstance(types, tuple) else (types,)
        expected = " or ".join(k.__name__ for k in kinds)
        raise ValidationError(f"{key!r} should be {expected}, got {value!r:.100}")
    return value


def _str_dict(d: Mapping[str, Any], key: str) -> dict[str, str]:
    value = _field(d, key, dict, {})
    if not all(isinstance(k, str) and isinstance(v, str | None) for k, v in value.items()):
        raise ValidationError(f"{key!r} should map strings to strings, got {value!r}")
    return {k: v or "" for k, v in value.items()}


@dataclass(frozen=True, slots=True)
class PrimaryMetric:
    """The metric that decides which checkpoint is best."""

    name: str
    goal: Goal


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckpointRecord:
    """One checkpoint as stored inside its experiment's JSON."""

    id: str
    created: datetime
    metrics: dict[str, Any]
    step: int | None
    path: str  # "" when the checkpoint has no files
    primary_metric: PrimaryMetric | None
    #: keys this version does not know (written by a newer tool), kept as read, written last
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with Keepsake's key order, then the extra keys."""
        pm = self.primary_metric
        body = {
            "id": self.id,
            "created": format_time(self.created),
            "metrics": to_json_value(self.metrics, where="metrics"),
            "step": self.step,
            "path": self.path,
            "primary_metric": None if pm is None else {"name": pm.name, "goal": pm.goal},
        }
        return _with_extra(body, self.extra)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CheckpointRecord:
        """Decode a checkpoint; ValidationError names the bad field."""
        step = _field(d, "step", (int, float), None)
        if isinstance(step, bool) or (isinstance(step, float) and not step.is_integer()):
            raise ValidationError(f"'step' should be an integer, got {step!r}")
        pm = _field(d, "primary_metric", dict, {})
        name, goal = _field(pm, "name", str, ""), str(pm.get("goal") or "").strip().lower()
        # Keepsake stored any goal and treated everything but "maximize" as minimize: read it so.
        primary_metric = PrimaryMetric(name, "maximize" if goal == "maximize" else "minimize")
        return cls(
            id=_field(d, "id", str, None) or _missing("id"),
            created=parse_time(_field(d, "created", str, None) or _missing("created")),
            metrics=from_json_value(_field(d, "metrics", dict, {})),
            step=None if step is None else int(step),
            path=_field(d, "path", str, ""),
            primary_metric=primary_metric if name else None,
            extra=_unknown(d, _CHECKPOINT_KEYS),
        )


_CHECKPOINT_KEYS = frozenset({"id", "created", "metrics", "step", "path", "primary_metric"})
_EXPERIMENT_KEYS = frozenset(
    {"id", "created", "params", "host", "user", "config", "command", "path", "python_version"}
    | {"python_packages", "checkpoints", "replicate_version", "keepsake_version"}
)


def _unknown(d: Mapping[str, Any], known: frozenset[str]) -> dict[str, Any]:
    return {key: value for key, value in d.items() if key not in known}


def _with_extra(body: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        body.setdefault(key, value)
    return body


def _missing(key: str) -> Any:
    raise ValidationError(f"missing {key!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ExperimentRecord:
    """An experiment with all its checkpoints: the content of ``metadata/experiments/<id>.json``."""

    id: str
    created: datetime
    params: dict[str, Any]
    host: str
    user: str
    config: dict[str, str]  # {"repository": absolute URL, "storage": ""}
    command: str
    path: str  # "" when no code was saved
    python_version: str
    python_packages: dict[str, str]
    checkpoints: tuple[CheckpointRecord, ...] = ()
    replicate_version: str = field(default_factory=_replicate_version)
    #: keys this version does not know (written by a newer tool), kept as read, written last
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with Keepsake's key order (``replicate_version``, then extra keys)."""
        return _with_extra(self._known_dict(), self.extra)

    def _known_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "created": format_time(self.created),
            "params": to_json_value(self.params, where="params"),
            "host": self.host,
            "user": self.user,
            "config": dict(self.config),
            "command": self.command,
            "path": self.path,
            "python_version": self.python_version,
            "python_packages": dict(self.python_packages),
            "checkpoints": [checkpoint.to_dict() for checkpoint in self.checkpoints],
            "replicate_version": self.replicate_version,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ExperimentRecord:
        """Decode an experiment written by replicate or Keepsake; ValidationError names the field."""
        checkpoints = _field(d, "checkpoints", list, [])
        if not all(isinstance(c, dict) for c in checkpoints):
            raise ValidationError(f"'checkpoints' should be a list of objects, got {checkpoints!r}")
        return cls(
            id=_field(d, "id", str, None) or _missing("id"),
            created=parse_time(_field(d, "created", str, None) or _missing("created")),
            params=from_json_value(_field(d, "params", dict, {})),
            host=_field(d, "host", str, ""),
            user=_field(d, "user", str, ""),
            config=_str_dict(d, "config"),
            command=_field(d, "command", str, ""),
            path=_field(d, "path", str, ""),
            python_version=_field(d, "python_version", str, ""),
            python_packages=_str_dict(d, "python_packages"),
            checkpoints=tuple(CheckpointRecord.from_dict(c) for c in checkpoints),
            replicate_version=_field(d, "replicate_version", str, None)
            or _field(d, "keepsake_version", str, ""),
            extra=_unknown(d, _EXPERIMENT_KEYS),
        )

    def with_checkpoints(self, checkpoints: Iterable[CheckpointRecord]) -> ExperimentRecord:
        """A copy of this record with ``checkpoints`` instead of the current ones."""
        return dataclasses.replace(self, checkpoints=tuple(checkpoints))

    def best(self) -> CheckpointRecord | None:
        """The best checkpoint: see :func:`best_of`."""
        return best_of(self.checkpoints, lambda c: c)

    def latest(self) -> CheckpointRecord | None:
        """The last checkpoint in the list, if any."""
        return self.checkpoints[-1] if self.checkpoints else None


# ---- the best checkpoint: one rule -----------------------------------------------------------

C = TypeVar("C")


def finite_number(value: Any) -> float | None:
    """``value`` as a float if it is a finite number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def primary_score(checkpoint: CheckpointRecord) -> float | None:
    """The checkpoint's own primary metric, signed so that higher is better; None if unusable.

    Only a checkpoint whose own ``primary_metric`` is set and whose value is a finite number
    has a score (Keepsake's rule; a checkpoint without one never competes).
    """
    pm = checkpoint.primary_metric
    value = None if pm is None else finite_number(checkpoint.metrics.get(pm.name))
    if pm is None or value is None:
        return None
    return value if pm.goal == "maximize" else -value


def best_of(items: Iterable[C], record: Callable[[C], CheckpointRecord]) -> C | None:
    """The item whose checkpoint has the highest :func:`primary_score`; ties: the earliest."""
    best: C | None = None
    best_score = 0.0
    for item in items:
        score = primary_score(record(item))
        if score is not None and (best is None or score > best_score):
            best, best_score = item, score
    return best


@dataclass(frozen=True, slots=True)
class HeartbeatRecord:
    """The content of ``metadata/heartbeats/<id>.json``.

    A job of several ranks: rank 0's beat says ``world_size``; each other rank beats in
    ``metadata/heartbeats/<id>/rank-<r>.json`` with its ``rank``. ``ranks`` is filled in by
    the reader (rank -> last beat of the other ranks), never written.
    """

    experiment_id: str
    last_heartbeat: datetime
    world_size: int | None = None
    rank: int | None = None
    ranks: Mapping[int, datetime] = field(default_factory=dict, compare=False)


def _dumps(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, indent=1, ensure_ascii=False, allow_nan=False).encode("utf-8")


def _loads(data: bytes) -> dict[str, Any]:
    obj = json.loads(data)
    if not isinstance(obj, dict):
        raise ValidationError(f"expected a JSON object, got {type(obj).__name__}")
    return cast(dict[str, Any], obj)


#: checkpoint id -> (the record, its encoded JSON text nested in an experiment)
EncodingCache = dict[str, tuple["CheckpointRecord", str]]


def encode_experiment(record: ExperimentRecord, cache: EncodingCache | None = None) -> bytes:
    """Serialize like Keepsake: UTF-8 JSON with 1-space indent.

    With ``cache`` (checkpoint id -> the record and its encoded text), each checkpoint is encoded once over
    the life of a writer: the JSON grows with every checkpoint and is rewritten often, and
    re-encoding all of it each time is O(n) per write of work that holds the GIL.
    """
    if cache is None:
        return _dumps(record.to_dict())
    head = record.to_dict()
    head["checkpoints"] = []
    text = json.dumps(head, indent=1, ensure_ascii=False, allow_nan=False)
    if not record.checkpoints:
        return text.encode("utf-8")
    parts = []
    for checkpoint in record.checkpoints:
        cached = cache.get(checkpoint.id)
        if cached is not None and (cached[0] is checkpoint or cached[0] == checkpoint):
            parts.append(cached[1])
            continue
        body = json.dumps(checkpoint.to_dict(), indent=1, ensure_ascii=False, allow_nan=False)
        part = "  " + body.replace("\n", "\n  ")  # nested two levels deep
        cache[checkpoint.id] = (checkpoint, part)
        parts.append(part)
    # Only the top-level key sits at one space after a newline; nested keys sit deeper.
    placeholder = '\n "checkpoints": [],'
    listing = '\n "checkpoints": [\n' + ",\n".join(parts) + "\n ],"
    return text.replace(placeholder, listing, 1).encode("utf-8")


def decode_experiment(data: bytes, key: str, expected_id: str | None = None) -> ExperimentRecord:
    """Parse an experiment JSON; any problem raises CorruptedMetadata naming ``key``.

    Ids are checked too (they name objects to read and delete): every one must be 64 hex
    characters, and the experiment's must be ``expected_id``, the one its key is named by.
    """
    try:
        record = ExperimentRecord.from_dict(_loads(data))
    except (ValueError, TypeError, RecursionError) as exc:
        raise CorruptedMetadata(key, str(exc) or type(exc).__name__) from exc
    if expected_id is not None and record.id != expected_id:
        raise CorruptedMetadata(key, "the id inside is not the one in its name")
    if not all(is_id(id) for id in (record.id, *(c.id for c in record.checkpoints))):
        raise CorruptedMetadata(key, "an id in it is not 64 hexadecimal characters")
    return record


def encode_heartbeat(record: HeartbeatRecord) -> bytes:
    """Serialize a heartbeat."""
    body: dict[str, Any] = {
        "experiment_id": record.experiment_id,
        "last_heartbeat": format_time(record.last_heartbeat),
    }
    if record.world_size is not None:  # extra keys: Keepsake ignores them
        body["world_size"] = record.world_size
    if record.rank is not None:
        body["rank"] = record.rank
    return _dumps(body)


def decode_heartbeat(data: bytes, key: str) -> HeartbeatRecord:
    """Parse a heartbeat JSON; any problem raises CorruptedMetadata naming ``key``."""
    try:
        d = _loads(data)
        experiment_id = _field(d, "experiment_id", str, None) or _missing("experiment_id")
        last = parse_time(_field(d, "last_heartbeat", str, None) or _missing("last_heartbeat"))
        world_size, rank = _field(d, "world_size", int, None), _field(d, "rank", int, None)
        if any(
            isinstance(n, bool) or not 0 <= n < MAX_WORLD_SIZE
            for n in (world_size, rank)
            if n is not None
        ):
            raise ValidationError("'world_size' and 'rank' must be small non-negative integers")
        return HeartbeatRecord(experiment_id, last, world_size, rank)
    except (ValueError, TypeError, RecursionError) as exc:
        raise CorruptedMetadata(key, str(exc) or type(exc).__name__) from exc
