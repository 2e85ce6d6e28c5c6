"""Filters and sorting of experiments by name: fields, then best-checkpoint metrics, then params.

A name resolves, in order, to ``created``, ``step`` (of the latest checkpoint), ``user``,
``host``, ``command``, ``status``; then a metric of the best checkpoint (the latest when none is
best); then a param. ``metrics.NAME`` and ``params.NAME`` pick one of the two explicitly.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from replicate.errors import ValidationError
from replicate.read.views import CheckpointView, ExperimentView
from replicate.values import parse_time

FIELDS: Final = ("created", "step", "user", "host", "command", "status")
OPERATORS: Final = ("!=", "<=", ">=", "=", "<", ">")


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()

_FILTER = re.compile(r"\s*(?P<name>[^=!<>\s]+)\s*(?P<op>!=|<=|>=|==|=|<|>)\s*(?P<value>.*?)\s*")


def metrics_checkpoint(experiment: ExperimentView) -> CheckpointView | None:
    """The checkpoint whose metrics stand for the experiment: the best, else the latest."""
    return experiment.best() or experiment.latest()


def value_of(experiment: ExperimentView, name: str) -> Any:
    """The value ``name`` has for ``experiment``, or MISSING."""
    if name == "created":
        return experiment.created
    if name == "step":
        latest = experiment.latest()
        return MISSING if latest is None or latest.step is None else latest.step
    if name in ("user", "host", "command", "status"):
        return getattr(experiment, name)
    scope, _, key = name.partition(".")
    if key and scope in ("metrics", "params"):
        if scope == "params":
            return experiment.params.get(key, MISSING)
        checkpoint = metrics_checkpoint(experiment)
        return MISSING if checkpoint is None else checkpoint.metrics.get(key, MISSING)
    checkpoint = metrics_checkpoint(experiment)
    if checkpoint is not None and name in checkpoint.metrics:
        return checkpoint.metrics[name]
    return experiment.params.get(name, MISSING)


def kind(value: Any) -> str:
    """The type of a value as people say it: number, string, boolean, time, null, list, object."""
    if value is None or value is MISSING:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, datetime):
        return "time"
    return "list" if isinstance(value, list) else "object"


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def parse_value(text: str) -> Any:
    """A filter's value: JSON (numbers, true/false/null, "quoted strings"), else the raw text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_created(text: str) -> datetime:
    try:
        if re.fullmatch(r"\d{4}-\d\d-\d\d", text):
            return datetime.fromisoformat(text).replace(tzinfo=UTC)
        return parse_time(text)
    except (ValueError, ValidationError):
        raise ValidationError(
            f"'created' needs a date or time like 2026-11-28 or 2026-11-28T11:55:00Z, got {text!r}"
        ) from None


def check_names(names: Iterable[str], experiments: Sequence[ExperimentView], what: str) -> None:
    """Raise ValidationError for a name that no listed experiment has (a typo, most likely)."""
    if not experiments:
        return
    for name in names:
        if name in FIELDS or any(value_of(e, name) is not MISSING for e in experiments):
            continue
        metrics = sorted({m for e in experiments for c in e.checkpoints for m in c.metrics})
        params = sorted({p for e in experiments for p in e.params})
        raise ValidationError(
            f"{what}: no experiment has {name!r}; use a field ({', '.join(FIELDS)}), "
            f"a metric ({', '.join(metrics) or 'none'}) or a param ({', '.join(params) or 'none'})"
        )


@dataclass(frozen=True, slots=True)
class Filter:
    """``name op value``, e.g. ``loss < 0.5``, ``optimizer = adam``, ``status = running``."""

    text: str
    name: str
    op: str
    value: Any
    raw: str

    @classmethod
    def parse(cls, text: str) -> Filter:
        """Parse a filter; ValidationError names what is wrong with it."""
        match = _FILTER.fullmatch(text)
        if match is None or not match["value"]:
            raise ValidationError(
                f"cannot read the filter {text!r}: write it as 'name op value' with op one of "
                f"{' '.join(OPERATORS)}, e.g. 'loss < 0.5' or 'optimizer = adam'"
            )
        name, op, raw = match["name"], match["op"], match["value"]
        op = "=" if op == "==" else op
        value = parse_created(raw) if name == "created" else parse_value(raw)
        return cls(text, name, op, value, raw)

    def __call__(self, experiment: ExperimentView) -> bool:
        actual = value_of(experiment, self.name)
        if self.op in ("=", "!="):
            equal = _equal(actual, self.value, self.raw)
            return equal if self.op == "=" else not equal
        if actual is MISSING or actual is None or _is_nan(actual) or _is_nan(self.value):
            return False
        have, want = kind(actual), kind(self.value)
        if have in ("list", "object"):
            return False  # a dict or list metric never orders; other experiments still match
        if have != want or have not in ("number", "string", "time"):
            raise ValidationError(
                f"filter {self.text!r} compares {self.name} with {self.op}, but experiment "
                f"{experiment.short_id} has the {have} {_show(actual)} and the filter gives the "
                f"{want} {_show(self.value)}: compare numbers with numbers, strings with strings"
            )
        return bool(_ORDER[self.op](actual, self.value))


_ORDER: dict[str, Callable[[Any, Any], Any]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _equal(actual: Any, expected: Any, raw: str) -> bool:
    if actual is MISSING:
        return expected is None
    if isinstance(actual, str) and not isinstance(expected, str):
        return actual == raw  # a string param compared with text that looks like JSON
    if kind(actual) != kind(expected):
        return False
    return bool(actual == expected)


def _show(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else json.dumps(value, default=str)


def apply_filters(
    experiments: Sequence[ExperimentView], filters: Sequence[Filter]
) -> list[ExperimentView]:
    """The experiments every filter accepts; unknown names and mixed types raise ValidationError."""
    check_names([f.name for f in filters], experiments, "--filter")
    return [e for e in experiments if all(f(e) for f in filters)]


def sort_experiments(experiments: Sequence[ExperimentView], spec: str) -> list[ExperimentView]:
    """Sort by ``name`` or ``name-desc``; experiments without a value (or a dict/list) go last."""
    name, descending = (spec[: -len("-desc")], True) if spec.endswith("-desc") else (spec, False)
    name = name.removesuffix("-asc")
    check_names([name], experiments, "--sort")
    keyed = [(value_of(e, name), e) for e in experiments]
    present: list[tuple[Any, ExperimentView]] = []
    absent: list[ExperimentView] = []
    for value, experiment in keyed:
        if value is MISSING or value is None or _is_nan(value) or isinstance(value, dict | list):
            absent.append(experiment)  # a dict or list does not order: last, like a missing one
        else:
            present.append((value, experiment))
    kinds = {kind(v): (v, e) for v, e in present}
    if len(kinds) > 1:
        examples = "; ".join(f"{_show(v)} in {e.short_id}" for v, e in kinds.values())
        raise ValidationError(
            f"cannot sort by {name!r}: its values are of types that do not compare "
            f"({', '.join(sorted(kinds))}: {examples})"
        )
    present.sort(key=lambda pair: pair[0], reverse=descending)
    return [e for _, e in present] + absent
