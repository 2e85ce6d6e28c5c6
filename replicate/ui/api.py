"""JSON for the pages' scripts (live rows, chart series, the scatter) and the download routes."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from replicate.read.format import experiment_json, format_value, jsonable
from replicate.read.query import MISSING, value_of
from replicate.read.views import ExperimentView
from replicate.ui.downloads import send_member, send_object
from replicate.ui.pages import list_rows
from replicate.ui.state import checkpoint_archive, code_archive, state_of
from replicate.ui.tables import checkpoints_table


def reply(body: Any, status: int = 200) -> web.Response:
    text = json.dumps(jsonable(body), allow_nan=False, ensure_ascii=False)
    return web.Response(text=text, status=status, content_type="application/json")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


async def experiments_rows(request: web.Request) -> web.Response:
    """The rows of the experiments page for the same ``?filter=`` and ``?sort=``."""
    rows = await list_rows(request)

    def encode(_: object) -> str:
        body = {"table": rows.table.to_json(), "count": rows.count, "error": rows.error}
        return json.dumps(body, allow_nan=False, ensure_ascii=False)

    text = await state_of(request).remember("json", request.query_string, encode)
    status = 400 if rows.error else 200
    return web.Response(text=text, status=status, content_type="application/json")


async def experiment_detail(request: web.Request) -> web.Response:
    """The experiment as ``show --json`` gives it, and its checkpoints table."""
    experiment = await state_of(request).experiment(request.match_info["id"])
    return reply(
        {
            "experiment": experiment_json(experiment),
            "checkpoints": checkpoints_table(experiment).to_json(),
        }
    )


def series_of(experiments: Sequence[ExperimentView]) -> dict[str, Any]:
    """Per metric: the steps of any run (x), and each run's values there (None: no value)."""
    names = dict.fromkeys(m for e in experiments for c in e.checkpoints for m in c.metrics)
    metrics: dict[str, Any] = {}
    for name in names:
        points = [
            [
                (i if c.step is None else c.step, c.metrics[name])
                for i, c in enumerate(e.checkpoints)
                if name in c.metrics
            ]
            for e in experiments
        ]
        xs = sorted({x for run in points for x, _ in run})
        index = {x: i for i, x in enumerate(xs)}
        ys = []
        for run in points:
            y: list[float | None] = [None] * len(xs)
            for x, value in run:
                y[index[x]] = _number(value)
            ys.append(y)
        metrics[name] = {"x": xs, "y": ys}
    runs = [{"id": e.id, "label": e.short_id} for e in experiments]
    return {"runs": runs, "metrics": metrics}


async def series(request: web.Request) -> web.Response:
    """Chart data for ``?id=``: one experiment's curves, or several overlaid."""
    state = state_of(request)
    experiments = [await state.experiment(id) for id in request.query.getall("id", [])]
    return reply(series_of(experiments))


async def scatter(request: web.Request) -> web.Response:
    """``?param=`` against ``?metric=`` of each listed experiment's best (else latest) checkpoint."""
    state = state_of(request)
    param, metric = request.query.get("param", ""), request.query.get("metric", "")
    points = []
    for e in (await state.listed()).experiments:
        x, y = value_of(e, f"params.{param}"), _number(value_of(e, f"metrics.{metric}"))
        if x is not MISSING and y is not None:
            points.append((x, y, e))
    numeric = all(_number(x) is not None for x, _, _ in points)
    categories = [] if numeric else sorted({format_value(x) for x, _, _ in points})
    keyed = [
        (_number(x) if numeric else float(categories.index(format_value(x))), y, e)
        for x, y, e in points
    ]
    keyed.sort(key=lambda point: point[0] or 0.0)
    rows = [{"x": x, "y": y, "id": e.id, "label": e.short_id} for x, y, e in keyed]
    return reply({"param": param, "metric": metric, "points": rows, "categories": categories})


async def code_tarball(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    experiment = await state.experiment(request.match_info["id"])
    return await send_object(request, state.repository, code_archive(experiment))


async def code_file(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    experiment = await state.experiment(request.match_info["id"])
    archive = code_archive(experiment)
    return await send_member(request, state.repository, archive, request.match_info["path"])


async def checkpoint_tarball(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    checkpoint = await state.checkpoint(request.match_info["id"])
    return await send_object(request, state.repository, checkpoint_archive(checkpoint))


async def checkpoint_file(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    checkpoint = await state.checkpoint(request.match_info["id"])
    archive = checkpoint_archive(checkpoint)
    return await send_member(request, state.repository, archive, request.match_info["path"])
