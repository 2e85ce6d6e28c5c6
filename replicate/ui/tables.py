"""Tables of the pages as data: rendered to HTML on the server, or sent as JSON for live updates.

The same rows feed both, so a row the browser rebuilds (with ``textContent``, never HTML) looks
like the row the server first sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from replicate.read.format import (
    ago,
    checkpoint_label,
    differing_params,
    format_value,
    primary_metric_text,
)
from replicate.read.views import CheckpointView, ExperimentView
from replicate.ui.html import Markup, el, join, url


@dataclass(frozen=True, slots=True)
class Cell:
    """One cell: text, a link, a dimmer second line, a CSS class, or a compare checkbox."""

    text: str = ""
    href: str | None = None
    sub: str | None = None
    cls: str | None = None
    check: str | None = None


@dataclass(frozen=True, slots=True)
class Table:
    columns: list[Cell]
    rows: list[list[Cell]] = field(default_factory=list)
    row_ids: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "columns": [asdict(c) for c in self.columns],
            "rows": [[asdict(c) for c in row] for row in self.rows],
            "ids": self.row_ids,
        }

    def html(self, **attrs: object) -> Markup:
        head = el("tr", *(_cell("th", c) for c in self.columns))
        body = join(
            el("tr", *(_cell("td", c) for c in row), data_id=id)
            for row, id in zip(self.rows, self.row_ids, strict=True)
        )
        return el("table", el("thead", head), el("tbody", body), **attrs)


def _cell(tag: str, cell: Cell) -> Markup:
    parts: list[object] = []
    if cell.check is not None:
        parts.append(el("input", type="checkbox", name="id", value=cell.check))
    parts.append(el("a", cell.text, href=cell.href) if cell.href else cell.text)
    if cell.sub:
        parts.append(el("div", cell.sub, class_="sub"))
    return el(tag, *parts, class_=cell.cls)


def _checkpoint_cell(checkpoint: CheckpointView | None, *, metric: bool = True) -> Cell:
    """As ``ls`` shows it: ``5a9beec (step 2)`` and, below, the primary metric."""
    if checkpoint is None:
        return Cell()
    text = checkpoint_label(checkpoint)
    if checkpoint.upload_state:
        text += f" ({checkpoint.upload_state})"
    return Cell(
        text,
        href=url("experiments", checkpoint.experiment.id),
        sub=primary_metric_text(checkpoint) if metric else None,
        cls="pending" if checkpoint.upload_state else None,
    )


def _sort_header(text: str, name: str, sort: str, query: dict[str, list[str]]) -> Cell:
    descending = sort == name
    link = url("", **{**query, "sort": [f"{name}-desc" if descending else name]})
    mark = " ▲" if sort == name else " ▼" if sort == f"{name}-desc" else ""
    return Cell(text + mark, href=link, cls="sortable")


def experiments_table(
    experiments: Sequence[ExperimentView],
    at: datetime,
    *,
    sort: str = "created",
    query: dict[str, list[str]] | None = None,
) -> Table:
    """The rows and columns of ``replicate ls``, with a checkbox to pick runs to compare."""
    query = {k: v for k, v in (query or {}).items() if k != "sort"}
    users = len({e.user for e in experiments}) > 1
    hosts = len({e.host for e in experiments}) > 1
    names = differing_params(experiments)
    columns = [
        Cell("EXPERIMENT"),
        _sort_header("STARTED", "created", sort, query),
        _sort_header("STATUS", "status", sort, query),
    ]
    columns += [_sort_header("USER", "user", sort, query)] * users
    columns += [_sort_header("HOST", "host", sort, query)] * hosts
    columns += [Cell("PARAMS")] * bool(names)
    bests = [e.best() for e in experiments]
    primaries = {b.primary_metric.name for b in bests if b is not None and b.primary_metric}
    best_header = (
        _sort_header("BEST CHECKPOINT", primaries.pop(), sort, query)
        if len(primaries) == 1
        else Cell("BEST CHECKPOINT")
    )
    columns += [best_header, _sort_header("LATEST CHECKPOINT", "step", sort, query)]
    table = Table(columns)
    for e, best in zip(experiments, bests, strict=True):
        status = Cell(
            e.status,
            cls="running" if e.status == "running" else "pending" if e.upload_state else None,
        )
        row = [
            Cell(e.short_id, href=url("experiments", e.id), check=e.id),
            Cell(ago(e.created, at, short=True)),
            status,
        ]
        row += [Cell(e.user)] * users + [Cell(e.host)] * hosts
        if names:
            shown = [f"{n}={format_value(e.params[n])}" for n in names if n in e.params]
            row.append(Cell("\n".join(shown), cls="params"))
        latest = e.latest()
        row += [_checkpoint_cell(best), _checkpoint_cell(latest, metric=latest is not best)]
        table.rows.append(row)
        table.row_ids.append(e.id)
    return table


def checkpoints_table(experiment: ExperimentView) -> Table:
    """Every checkpoint with every metric, the best marked, and its downloads."""
    metrics = list(experiment.checkpoints.metrics)
    best = experiment.best()
    columns = [Cell(c) for c in ("ID", "STEP", "CREATED", *metrics, "", "DOWNLOAD", "")]
    table = Table(columns)
    for c in experiment.checkpoints:
        note = Cell("best", cls="best") if c is best else Cell()
        if c.upload_state:
            note = Cell(c.upload_state, cls="pending")
        pm = c.primary_metric
        cells = [
            Cell(
                format_value(c.metrics[m]) if m in c.metrics else "",
                cls="primary" if pm is not None and pm.name == m else None,
            )
            for m in metrics
        ]
        if c.upload_state or not c.path:
            downloads = [Cell("" if c.upload_state else "(metrics only)"), Cell()]
        else:
            downloads = [
                Cell(".tar.gz", href=url("checkpoints", f"{c.id}.tar.gz"), cls="download"),
                Cell("files", href=url("checkpoints", c.id, "files")),
            ]
        row = [
            Cell(c.short_id, cls="id"),
            Cell(format_value(c.step)),
            Cell(f"{c.created:%Y-%m-%d %H:%M:%S}"),
            *cells,
            note,
            *downloads,
        ]
        table.rows.append(row)
        table.row_ids.append(c.id)
    return table
