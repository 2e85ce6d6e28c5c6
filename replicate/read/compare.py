"""What differs between checkpoints (``replicate diff``, the web page's comparison)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from replicate.read.format import format_value, same
from replicate.read.query import MISSING
from replicate.read.views import CheckpointView, ExperimentView

Side = tuple[ExperimentView, CheckpointView | None]
Getter = Callable[[Side], Any]


def _experiment_rows() -> list[tuple[str, Getter]]:
    def field(name: str) -> Getter:
        return lambda side: getattr(side[0], name)

    names = ("created", "status", "host", "user", "command", "path", "python_version")
    return [(name, field(name)) for name in names]


def _checkpoint_rows() -> list[tuple[str, Getter]]:
    def field(name: str) -> Getter:
        return lambda side: MISSING if side[1] is None else getattr(side[1], name)

    def primary(side: Side) -> Any:
        pm = None if side[1] is None else side[1].primary_metric
        return MISSING if pm is None else f"{pm.name} ({pm.goal})"

    rows = [(name, field(name)) for name in ("step", "created", "path")]
    return [*rows, ("primary_metric", primary)]


def _mapping_rows(
    get: Callable[[Side], dict[str, Any]], sides: Sequence[Side]
) -> list[tuple[str, Getter]]:
    def row(name: str) -> Getter:
        return lambda side: get(side).get(name, MISSING)

    names = dict.fromkeys(name for side in sides for name in get(side))
    return [(name, row(name)) for name in names]


def sections(sides: Sequence[Side]) -> list[tuple[str, list[tuple[str, list[Any]]]]]:
    """(section, [(name, values)]) with only the rows whose values are not all the same."""

    def metrics(side: Side) -> dict[str, Any]:
        return {} if side[1] is None else side[1].metrics

    layout = [
        ("Experiment", _experiment_rows()),
        ("Params", _mapping_rows(lambda side: side[0].params, sides)),
        ("Python packages", _mapping_rows(lambda side: side[0].python_packages, sides)),
        ("Checkpoint", _checkpoint_rows()),
        ("Metrics", _mapping_rows(metrics, sides)),
    ]
    found = []
    for title, rows in layout:
        differing = []
        for name, get in rows:
            values = [get(side) for side in sides]
            first = values[0]
            if any(
                (v is MISSING) != (first is MISSING) or not same_value(first, v) for v in values
            ):
                differing.append((name, values))
        found.append((title, differing))
    return found


def diff_cell(value: Any) -> str:
    """A value as a diff shows it: ``(not set)``, ``\"\"``, full precision."""
    if value is MISSING:
        return "(not set)"
    return '""' if value == "" else format_value(value, precise=True)


def same_value(a: Any, b: Any) -> bool:
    if a is MISSING or b is MISSING:
        return a is b
    return same(a, b)


def side_of(experiment: ExperimentView, checkpoint: CheckpointView | None = None) -> Side:
    """An experiment id stands for its best checkpoint, else its latest."""
    return experiment, checkpoint or experiment.best() or experiment.latest()
