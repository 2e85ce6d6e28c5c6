"""Frozen records and their JSON codec: repository format version 1 (Keepsake 0.4.2 compatible).

Values in params and metrics are arbitrary JSON; NaN and ±Inf are written as the strings
``"[NaN]"``, ``"[+Infinity]"`` and ``"[-Infinity]"``. Timestamps are RFC 3339 UTC with ``Z``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar, cast

from replicate.errors import CorruptedMetadata, ValidationError
from replicate.ids import is_id

Goal = Literal["maximize", "minimize"]

_NAN, _POS_INF, _NEG_INF = "[NaN]", "[+Infinity]", "[-Infinity]"
_SPECIAL = {_NAN: math.nan, _POS_INF: math.inf, _NEG_INF: -math.inf}
_TIME = re.compile(
    r"(\d{4}-\d\d-\d\d)[Tt ](\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(?:[Zz]|([+-]\d\d:\d\d))"
)


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


def now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def format_time(dt: datetime) -> str:
    """RFC 3339 in UTC with a ``Z`` and 6 fractional digits, e.g. ``2026-11-28T11:55:42.325783Z``."""
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValidationError(
            f"naive datetime {dt!r}; pass a timezone-aware one (datetime.now(UTC))"
        )
    return dt.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_time(s: str) -> datetime:
    """Parse RFC 3339 with 0–9 fractional digits (rounded to microseconds); always UTC-aware."""
    match = _TIME.fullmatch(str(s))
    if match is None:
        raise ValidationError(f"not an RFC 3339 timestamp: {s!r}")
    day, clock, fraction, offset = match.groups()
    try:
        dt = datetime.fromisoformat(f"{day}T{clock}{offset or '+00:00'}").astimezone(UTC)
        nanoseconds = int((fraction or "0").ljust(9, "0"))
        return dt + timedelta(microseconds=(nanoseconds + 500) // 1000)
    except (ValueError, OverflowError) as exc:
        raise ValidationError(f"not a valid timestamp: {s!r} ({exc})") from exc


def _text(value: str, problem: str) -> str:
    """``value`` as a plain str if it encodes as UTF-8, else ValidationError(problem)."""
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationError(problem) from None
    return str(value)


def to_json_value(value: Any, *, where: str = "value") -> Any:
    """Return ``value`` as plain JSON data (NaN/±Inf as strings); ValidationError names ``where``."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        try:
            str(value)  # Python refuses to write (and so to store) over 4300 digits
        except ValueError:
            raise ValidationError(f"{where} is an integer too large to store") from None
        return int(value)
    if isinstance(value, float):
        if math.isnan(value):
            return _NAN
        if math.isinf(value):
            return _POS_INF if value > 0 else _NEG_INF
        return float(value)
    if isinstance(value, str):
        return _text(value, f"{where} is a string that is not valid UTF-8")
    if isinstance(value, Mapping):
        result: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValidationError(
                    f"{where} has a key {key!r} of type {type(key).__name__}; "
                    "JSON object keys must be strings"
                )
            name = _text(key, f"{where} has a key that is not valid UTF-8 (a lone surrogate?)")
            result[name] = to_json_value(item, where=f"{where}[{name!r}]")
        return result
    if isinstance(value, list | tuple):
        return [to_json_value(item, where=f"{where}[{i}]") for i, item in enumerate(value)]
    # numpy scalars and arrays, torch tensors, ...: duck-typed so neither has to be imported.
    for method in ("tolist", "item"):
        convert = getattr(value, method, None)
        if callable(convert):
            try:
                converted = convert()
            except Exception as exc:
                raise ValidationError(
                    f"{where}: {type(value).__name__}.{method}() failed: {exc}"
                ) from exc
            if converted is not value:
                return to_json_value(converted, where=where)
    raise ValidationError(
        f"{where} is not JSON-serializable: {type(value).__module__}.{type(value).__qualname__}; "
        "use str, int, float, bool, None, lists, dicts, or numpy/torch values"
    )


def from_json_value(value: Any) -> Any:
    """Inverse of :func:`to_json_value`: turn ``"[NaN]"`` etc. back into floats, recursively."""
    if isinstance(value, str):
        return _SPECIAL.get(value, value)
    if isinstance(value, dict):
        return {key: from_json_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [from_json_value(item) for item in value]
    return value


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
    """The content of ``metadata/heartbeats/<id>.json``."""

    experiment_id: str
    last_heartbeat: datetime


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
    return _dumps(
        {
            "experiment_id": record.experiment_id,
            "last_heartbeat": format_time(record.last_heartbeat),
        }
    )


def decode_heartbeat(data: bytes, key: str) -> HeartbeatRecord:
    """Parse a heartbeat JSON; any problem raises CorruptedMetadata naming ``key``."""
    try:
        d = _loads(data)
        experiment_id = _field(d, "experiment_id", str, None) or _missing("experiment_id")
        last = parse_time(_field(d, "last_heartbeat", str, None) or _missing("last_heartbeat"))
        return HeartbeatRecord(experiment_id, last)
    except (ValueError, TypeError, RecursionError) as exc:
        raise CorruptedMetadata(key, str(exc) or type(exc).__name__) from exc
