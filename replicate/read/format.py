"""Values as people read them: numbers, times, params that differ, JSON-ready views."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from replicate.console import JSON_UNSAFE, printable
from replicate.read.views import CheckpointView, ExperimentView
from replicate.values import format_time, to_json_value


def format_value(value: Any, *, precise: bool = False) -> str:
    """``0.3333`` (``0.3333333333333333`` when precise), ``NaN``, ``true``, ``null``, JSON."""
    from replicate.read.query import MISSING

    if value is MISSING:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(value) if precise else f"{value:.4g}"
    if isinstance(value, str):
        return printable(value, newlines=False)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return printable(json.dumps(to_json_value(value), ensure_ascii=False))


def format_duration(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days} d {hours} h"
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {seconds} s"


def ago(when: datetime, now: datetime, *, short: bool = False) -> str:
    """``5 minutes ago`` (``5 min ago`` when short); a date after a week or in the future."""
    seconds = (now - when).total_seconds()
    units = (("day", "d", 86400), ("hour", "h", 3600), ("minute", "min", 60), ("second", "s", 1))
    if seconds < 0 or seconds >= 7 * 86400:
        return when.strftime("%Y-%m-%d" if short else "%Y-%m-%d %H:%M")
    for unit, abbreviation, size in units:
        if seconds >= size:
            count = int(seconds // size)
            if short:
                return f"{count} {abbreviation} ago"
            return f"{count} {unit}{'s' if count != 1 else ''} ago"
    return "just now"


def jsonable(value: Any) -> Any:
    """``value`` as JSON data: times as RFC 3339 strings, NaN/±Inf as Keepsake's strings."""
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return to_json_value(value)


def same(a: Any, b: Any) -> bool:
    """Equality as stored: NaN equals NaN, 1 equals 1.0."""
    return bool(jsonable(a) == jsonable(b))


def differing_params(experiments: Sequence[ExperimentView]) -> list[str]:
    """Names of params whose values are not all the same (or not all set), in first-seen order."""
    names = dict.fromkeys(name for e in experiments for name in e.params)
    found = []
    for name in names:
        # every name is set somewhere, so one experiment without it is a difference too
        if not all(name in e.params for e in experiments):
            found.append(name)
            continue
        first, *rest = (e.params[name] for e in experiments)
        if any(not same(first, value) for value in rest):
            found.append(name)
    return found


def checkpoint_label(checkpoint: CheckpointView) -> str:
    """``5a9beec (step 2)``: how ``ls`` names a checkpoint."""
    return f"{checkpoint.short_id} (step {format_value(checkpoint.step)})"


def primary_metric_text(checkpoint: CheckpointView) -> str | None:
    """``loss=0.25``: the checkpoint's own primary metric, if it has it."""
    pm = checkpoint.primary_metric
    if pm is None or pm.name not in checkpoint.metrics:
        return None
    return f"{pm.name}={format_value(checkpoint.metrics[pm.name])}"


def checkpoint_json(checkpoint: CheckpointView) -> dict[str, Any]:
    body = checkpoint.record.to_dict()
    body["experiment_id"] = checkpoint.experiment.id
    body["upload_state"] = checkpoint.upload_state
    return body


def experiment_json(experiment: ExperimentView, *, packages: bool = True) -> dict[str, Any]:
    """The experiment as stored, plus status, best/latest checkpoint ids and upload states."""
    body = experiment.record.to_dict()
    if not packages:
        body.pop("python_packages")
    body["checkpoints"] = [checkpoint_json(c) for c in experiment.checkpoints]
    best, latest = experiment.best(), experiment.latest()
    body["status"] = experiment.status
    ranks = experiment.ranks_running
    if ranks is not None:
        body["ranks_running"], body["world_size"] = ranks
    body["heartbeat"] = (
        format_time(experiment.heartbeat.last_heartbeat) if experiment.heartbeat else None
    )
    body["best_checkpoint"] = best.id if best else None
    body["latest_checkpoint"] = latest.id if latest else None
    return body


def dumps(value: Any) -> str:
    """JSON for ``--json`` output: NaN and infinities as Keepsake's strings.

    Exact JSON, safe on a terminal: the characters a terminal acts on are ``\\u`` escapes
    (outside strings JSON text is ASCII, so this only rewrites inside strings).
    """
    text = json.dumps(jsonable(value), indent=2, ensure_ascii=False, allow_nan=False)
    return JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
