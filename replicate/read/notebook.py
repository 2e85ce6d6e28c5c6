"""Notebook helpers: plots (matplotlib), a DataFrame (pandas) and HTML tables, all optional."""

from __future__ import annotations

import html
import importlib
from collections.abc import Sequence
from typing import Any

from replicate.errors import MissingExtra, ValidationError
from replicate.read.format import differing_params, format_value
from replicate.read.query import MISSING, metrics_checkpoint, value_of
from replicate.read.views import CheckpointView, ExperimentView
from replicate.records import finite_number


def _require(module: str, feature: str, extra: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package = module.partition(".")[0]
        raise MissingExtra(
            f"{feature} needs {package}, which is not installed: pip install 'replicate[{extra}]'"
        ) from exc


def _default_metric(experiments: Sequence[ExperimentView]) -> str:
    for experiment in experiments:
        for checkpoint in experiment.checkpoints:
            if checkpoint.primary_metric is not None:
                return checkpoint.primary_metric.name
    raise ValidationError("no checkpoint has a primary metric: pass the metric to plot by name")


def _label(experiment: ExperimentView, differing: Sequence[str]) -> str:
    params = ", ".join(f"{k}={format_value(experiment.params.get(k, MISSING))}" for k in differing)
    return f"{experiment.short_id} ({params})" if params else experiment.short_id


def plot(experiments: Sequence[ExperimentView], metric: str | None, *, logy: bool, ax: Any) -> Any:
    """One line per experiment: ``metric`` against step."""
    pyplot = _require("matplotlib.pyplot", "ExperimentList.plot()", "plot")
    metric = metric or _default_metric(experiments)
    if ax is None:
        _, ax = pyplot.subplots()
    differing = differing_params(experiments)
    for experiment in experiments:
        points = [
            (c.step if c.step is not None else i, finite_number(c.metrics.get(metric)))
            for i, c in enumerate(experiment.checkpoints)
        ]
        xs = [x for x, y in points if y is not None]
        ys = [y for _, y in points if y is not None]
        if ys:
            ax.plot(xs, ys, marker=".", label=_label(experiment, differing))
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    if logy:
        ax.set_yscale("log")
    if ax.get_lines():
        ax.legend()
    return ax


def scatter(
    experiments: Sequence[ExperimentView], param: str, metric: str | None, *, ax: Any
) -> Any:
    """One point per experiment: ``param`` against ``metric`` of its best (else latest) checkpoint."""
    pyplot = _require("matplotlib.pyplot", "ExperimentList.scatter()", "plot")
    metric = metric or _default_metric(experiments)
    if ax is None:
        _, ax = pyplot.subplots()
    xs, ys, names = [], [], []
    for experiment in experiments:
        checkpoint = metrics_checkpoint(experiment)
        x = experiment.params.get(param)
        y = None if checkpoint is None else finite_number(checkpoint.metrics.get(metric))
        if x is not None and y is not None:
            xs.append(x)
            ys.append(y)
            names.append(experiment.short_id)
    ax.scatter(xs, ys)
    for x, y, name in zip(xs, ys, names, strict=True):
        ax.annotate(name, (x, y), fontsize="small")
    ax.set_xlabel(param)
    ax.set_ylabel(metric)
    return ax


def rows(experiments: Sequence[ExperimentView]) -> list[dict[str, Any]]:
    """One flat dict per experiment, as ``to_dataframe`` uses."""
    found = []
    for experiment in experiments:
        best, latest = experiment.best(), experiment.latest()
        row: dict[str, Any] = {
            "experiment": experiment.id,
            "created": experiment.created,
            "status": experiment.status,
            "user": experiment.user,
            "host": experiment.host,
            "command": experiment.command,
            "step": value_of(experiment, "step") if latest else None,
            "best_checkpoint": best.id if best else None,
            "latest_checkpoint": latest.id if latest else None,
        }
        row.update({f"params.{k}": v for k, v in experiment.params.items()})
        checkpoint = metrics_checkpoint(experiment)
        if checkpoint is not None:
            row.update({f"metrics.{k}": v for k, v in checkpoint.metrics.items()})
        found.append({k: (None if v is MISSING else v) for k, v in row.items()})
    return found


def to_dataframe(experiments: Sequence[ExperimentView]) -> Any:
    pandas = _require("pandas", "ExperimentList.to_dataframe()", "dataframe")
    return pandas.DataFrame(rows(experiments))


def _cell(checkpoint: CheckpointView | None) -> str:
    if checkpoint is None:
        return ""
    text = f"{checkpoint.short_id} (step {format_value(checkpoint.step)})"
    pm = checkpoint.primary_metric
    if pm is not None and pm.name in checkpoint.metrics:
        text += f" {pm.name}={format_value(checkpoint.metrics[pm.name])}"
    if checkpoint.upload_state:
        text += f" ({checkpoint.upload_state})"
    return text


def _table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    lines = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in body
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{lines}</tbody></table>"


def list_html(experiments: Sequence[ExperimentView]) -> str:
    differing = differing_params(experiments)
    header = ["experiment", "started", "status", *differing, "best", "latest"]
    body = [
        [
            e.short_id,
            e.created.strftime("%Y-%m-%d %H:%M:%S"),
            e.status,
            *(format_value(e.params.get(k, MISSING)) for k in differing),
            _cell(e.best()),
            _cell(e.latest()),
        ]
        for e in experiments
    ]
    return _table(header, body)


def experiment_html(experiment: ExperimentView) -> str:
    params = _table(
        ["param", "value"], [[k, format_value(v)] for k, v in experiment.params.items()]
    )
    metrics = list(experiment.checkpoints.metrics)
    best = experiment.best()
    checkpoints = _table(
        ["checkpoint", "step", *metrics, ""],
        [
            [
                c.short_id,
                format_value(c.step),
                *(format_value(c.metrics.get(m, MISSING)) for m in metrics),
                "best" if c is best else (c.upload_state or ""),
            ]
            for c in experiment.checkpoints
        ],
    )
    title = html.escape(f"Experiment {experiment.id} ({experiment.status})")
    return f"<div><p><b>{title}</b></p>{params}{checkpoints}</div>"
