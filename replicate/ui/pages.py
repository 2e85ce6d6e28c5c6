"""The HTML pages: experiments, one experiment, a checkpoint's files, and a comparison."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from rich.filesize import decimal

from replicate.errors import ValidationError
from replicate.read.compare import diff_cell, sections, side_of
from replicate.read.format import ago, differing_params, format_duration, format_value
from replicate.read.query import Filter, apply_filters, sort_experiments
from replicate.read.views import ExperimentView
from replicate.ui.cache import Listed
from replicate.ui.downloads import list_files
from replicate.ui.html import Markup, el, join, page, url
from replicate.ui.state import UIState, checkpoint_archive, code_archive, state_of
from replicate.ui.tables import Table, checkpoints_table, experiments_table
from replicate.values import now


def render(state: UIState, title: str, name: str, **values: object) -> web.Response:
    body = page(name, **values)
    text = page(
        "base.html",
        title=title,
        repository=state.source.url,
        refresh_ms=str(state.refresh_ms),
        body=Markup(body),
    )
    return web.Response(text=text, content_type="text/html")


def filters_of(query: Any) -> list[Filter]:
    """Filters from ``?filter=`` values; each may hold several separated by ``;``."""
    texts = [t.strip() for value in query.getall("filter", []) for t in value.split(";")]
    return [Filter.parse(t) for t in texts if t]


@dataclass(frozen=True, slots=True)
class Rows:
    """The experiments page's table for one ``?filter=``/``?sort=``, and what to say about it."""

    table: Table
    count: str
    error: str | None


def rows_of(listed: Listed, query: Any) -> Rows:
    """The experiments ``?filter=`` and ``?sort=`` ask for, as ``ls`` would list them."""
    sort = query.get("sort", "created")
    experiments = listed.experiments
    error = None
    try:
        chosen = sort_experiments(apply_filters(experiments, filters_of(query)), sort)
    except ValidationError as exc:
        chosen, error = [], str(exc)
    params = {k: query.getall(k) for k in query}
    table = experiments_table(chosen, now(), sort=sort, query=params)
    return Rows(table, f"{len(chosen)} of {len(experiments)} experiments", error)


async def list_rows(request: web.Request) -> Rows:
    return await state_of(request).remember(
        "rows", request.query_string, lambda listed: rows_of(listed, request.query)
    )


async def experiments_page(request: web.Request) -> web.Response:
    state = state_of(request)
    rows = await list_rows(request)
    listed = await state.listed()
    table = await state.remember(
        "html",
        request.query_string,
        lambda _: rows.table.html(id="experiments", data_live=url("api", "experiments")),
    )
    skipped = [f"skipped: {exc}" for exc in listed.corrupted]
    response = render(
        state,
        "Experiments",
        "experiments.html",
        filter="; ".join(request.query.getall("filter", [])),
        sort=request.query.get("sort", "created"),
        error=rows.error or "",
        skipped=join(el("li", text) for text in skipped),
        table=table,
        count=rows.count,
    )
    response.set_status(400 if rows.error else 200)
    return response


def _fields(rows: Sequence[tuple[str, object]]) -> Markup:
    return el(
        "table",
        join(el("tr", el("th", name), el("td", value)) for name, value in rows),
        class_="fields",
    )


def checkout_command(state: UIState, experiment: ExperimentView) -> str:
    target = experiment.best() or experiment.latest()
    id = target.short_id if target is not None else experiment.short_id
    return shlex.join(["replicate", "checkout", "-R", state.source.url, id, "-o", id])


async def experiment_page(request: web.Request) -> web.Response:
    state = state_of(request)
    e = await state.experiment(request.match_info["id"])
    at = now()
    info = [
        ("Created", f"{e.created:%Y-%m-%d %H:%M:%S} UTC ({ago(e.created, at)})"),
        ("Status", e.status),
        ("Duration", format_duration(e.duration)),
        ("Host", e.host),
        ("User", e.user),
        ("Command", el("code", e.command)),
        ("Code", e.path or "(none saved)"),
    ]
    params = [(k, format_value(v, precise=True)) for k, v in e.params.items()]
    system = [("Python", e.python_version), ("Written by", e.replicate_version)]
    packages = sorted(e.python_packages.items())
    return render(
        state,
        f"Experiment {e.short_id}",
        "experiment.html",
        id=e.id,
        short_id=e.short_id,
        info=_fields(info),
        params=_fields(params) if params else "(none)",
        system=_fields(system),
        package_count=str(len(packages)),
        packages=_fields(packages),
        code=await _code_files(state, e),
        checkout=checkout_command(state, e),
        series=url("api", "series", id=e.id),
        live=url("api", "experiments", e.id),
        checkpoints=checkpoints_table(e).html(id="checkpoints"),
    )


async def _files(state: UIState, kind: str, id: str, archive: Any) -> list[tuple[str, int]]:
    key = (kind, id)
    if key not in state.file_lists:
        state.file_lists[key] = await list_files(state.repository, archive)
    return state.file_lists[key]


async def _code_files(state: UIState, experiment: ExperimentView) -> Markup:
    if experiment.upload_state or not experiment.path:
        return _muted("(none saved)" if not experiment.upload_state else "(not uploaded yet)")
    archive = code_archive(experiment)
    files = await _files(state, "experiments", experiment.id, archive)
    link = url("experiments", experiment.id, "tarball")
    return join(
        [
            el("p", el("a", "download the code (.tar.gz)", href=link)),
            _file_table("experiments", experiment.id, files),
        ]
    )


def _file_table(kind: str, id: str, files: Sequence[tuple[str, int]]) -> Markup:
    """Each file of a tarball, linked to its download, with its size."""
    rows = (
        el("tr", el("td", el("a", rel, href=url(kind, id, "files", rel))), el("td", decimal(n)))
        for rel, n in files
    )
    return el("table", join(rows), class_="files")


def _muted(text: str) -> Markup:
    return el("p", text, class_="muted")


async def checkpoint_files_page(request: web.Request) -> web.Response:
    state = state_of(request)
    c = await state.checkpoint(request.match_info["id"])
    files = await _files(state, "checkpoints", c.id, checkpoint_archive(c))
    return render(
        state,
        f"Checkpoint {c.short_id}",
        "files.html",
        short_id=c.short_id,
        experiment=el("a", c.experiment.short_id, href=url("experiments", c.experiment.id)),
        step=format_value(c.step),
        tarball=url("checkpoints", c.id, "tarball"),
        files=_file_table("checkpoints", c.id, files),
    )


def _diff(sides: Sequence[Any]) -> Markup:
    head = el("tr", el("th", ""), *(el("th", e.short_id) for e, _ in sides))
    parts = [
        el(
            "tr",
            el("th", "checkpoint"),
            *(el("td", c.short_id if c else "(none)") for _, c in sides),
        )
    ]
    for title, rows in sections(sides):
        parts.append(el("tr", el("th", title, colspan=str(len(sides) + 1)), class_="section"))
        if not rows:
            parts.append(el("tr", el("td", "(no difference)", colspan=str(len(sides) + 1))))
        for name, values in rows:
            parts.append(el("tr", el("th", name), *(el("td", diff_cell(v)) for v in values)))
    return el("table", el("thead", head), el("tbody", join(parts)), id="diff", class_="diff")


async def compare_page(request: web.Request) -> web.Response:
    state = state_of(request)
    ids = request.query.getall("id", [])
    experiments = [await state.experiment(id) for id in ids]
    if len({e.id for e in experiments}) < 2:
        raise ValidationError("select at least two different experiments to compare")
    sides = [side_of(e) for e in experiments]
    everyone = (await state.listed()).experiments
    params = list(dict.fromkeys(p for e in everyone for p in e.params))
    metrics = list(dict.fromkeys(m for e in everyone for c in e.checkpoints for m in c.metrics))
    differing = differing_params(experiments)
    first_param = differing[0] if differing else (params[0] if params else "")
    best = sides[0][1]
    first_metric = best.primary_metric.name if best and best.primary_metric else ""
    return render(
        state,
        "Compare",
        "compare.html",
        runs=join(
            el("li", el("a", e.short_id, href=url("experiments", e.id)), data_id=e.id)
            for e in experiments
        ),
        series=url("api", "series", id=[e.id for e in experiments]),
        diff=_diff(sides),
        param_options=_options(params, first_param),
        metric_options=_options(metrics, first_metric or (metrics[0] if metrics else "")),
        scatter=url("api", "scatter"),
    )


def _options(names: Sequence[str], chosen: str) -> Markup:
    return join(el("option", n, value=n, selected=n == chosen) for n in names)
