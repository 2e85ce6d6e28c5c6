"""``replicate ui``: the experiments page over 1,000 experiments x 20 checkpoints on SeaweedFS,
and a 10,000-point chart (10 runs x 1,000 steps) drawn in headless Chromium (SPEC §6).

- Page: the server runs in this process (its own loop in a thread) over ``s3://bench/repo``,
  written as in ls_cold (metadata only). Cold = the first ``GET /`` after the server opened
  the repository (lists, reads and decodes every experiment JSON, renders 1,000 rows). Warm =
  ``GET /`` again: within the cache's age (2 s, no storage request), and with the cache
  expired (two listings, nothing changed so nothing re-read). Baseline in the same run: the
  read API's own ``load_snapshot`` (list + read + decode, what ``replicate ls`` does) in-process.
- Chart: the compare page of 10 runs of 1,000 metrics-only checkpoints on disk, loaded 5
  times; the draw time is the Performance API measure from ``new uPlot(...)`` to its ``draw``
  hook, read with Playwright.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio

from benchmarks._common import (
    Options,
    fmt_s,
    fmt_x,
    note,
    p50,
    print_table,
    progress,
    ratio,
    record_summary,
    temp_dir,
    verdict,
)
from benchmarks._seaweed import seaweed
from benchmarks.ls_cold import _populate
from replicate.read.source import load_snapshot
from replicate.records import CheckpointRecord, ExperimentRecord, PrimaryMetric
from replicate.repository import Repository
from replicate.storage import open_storage
from replicate.ui import Server, make_app
from replicate.ui.state import STATE

NAME = "ui"
BUCKET = "bench"
PAGE_COLD_TARGET = 2.0
PAGE_WARM_TARGET = 0.2
CHART_TARGET = 0.3
WARM_RUNS = 10
CHART_RUNS = 5
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class _Served:
    def __init__(self, url: str, cache_seconds: float = 2.0) -> None:
        self.server = Server(make_app(url, None, cache_seconds=cache_seconds), "127.0.0.1", 0)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        start = time.perf_counter()
        self.base = asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(120)
        self.startup = time.perf_counter() - start

    def get(self, path: str = "/") -> tuple[float, int]:
        start = time.perf_counter()
        with _opener.open(self.base.rstrip("/") + path, timeout=120) as response:
            body = response.read()
        return time.perf_counter() - start, len(body)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)


async def _snapshot_time(url: str) -> float:
    async with open_storage(url) as storage:
        start = time.perf_counter()
        await load_snapshot(Repository(storage))
        return time.perf_counter() - start


def _page(count: int) -> list[list[object]]:
    url = f"s3://{BUCKET}/repo"
    with seaweed(BUCKET) as server:
        server.apply_env()
        progress(f"writing {count} experiments x 20 checkpoints to {url}")
        anyio.run(_populate, url, count)
        baseline = anyio.run(_snapshot_time, url)
        served = _Served(url)
        try:
            cold, size = served.get()
            warm = [served.get()[0] for _ in range(WARM_RUNS)]
            served.server.app[STATE].cache.max_age = 0.0
            relisted = [served.get()[0] for _ in range(WARM_RUNS)]
        finally:
            served.stop()
    return _page_rows(served.startup, cold, warm, relisted, baseline, size)


def _page_rows(
    startup: float,
    cold: float,
    warm: list[float],
    relisted: list[float],
    baseline: float,
    size: int,
) -> list[list[object]]:
    record_summary(
        NAME,
        "page cold (1,000 x 20, S3)",
        fmt_s(cold),
        "< 2 s",
        cold < PAGE_COLD_TARGET,
        f"read API load_snapshot {fmt_s(baseline)}",
    )
    record_summary(
        NAME,
        "page warm, re-listed",
        fmt_s(p50(relisted)),
        "< 200 ms",
        p50(relisted) < PAGE_WARM_TARGET,
        f"within cache age {fmt_s(p50(warm))}",
    )
    return [
        ["open the repository (server start)", fmt_s(startup), "", "", ""],
        [
            "GET / cold (list + read 1,000 + render)",
            fmt_s(cold),
            fmt_x(ratio(cold, baseline)),
            "< 2 s",
            verdict(cold < PAGE_COLD_TARGET),
        ],
        [
            "GET / warm, within cache age (p50)",
            fmt_s(p50(warm)),
            "",
            "< 200 ms",
            verdict(p50(warm) < PAGE_WARM_TARGET),
        ],
        [
            "GET / warm, cache expired: re-list (p50)",
            fmt_s(p50(relisted)),
            fmt_x(ratio(p50(relisted), baseline)),
            "< 200 ms",
            verdict(p50(relisted) < PAGE_WARM_TARGET),
        ],
        [
            "baseline: read API load_snapshot (list + read + decode)",
            fmt_s(baseline),
            "1.00×",
            "",
            f"page {size // 1000} kB",
        ],
    ]


async def _write_runs(url: str, runs: int, steps: int) -> list[str]:
    base = datetime.now(UTC) - timedelta(days=1)
    ids = []
    async with open_storage(url) as storage:
        repository = Repository(storage)
        await repository.check_version(create=True)
        for r in range(runs):
            checkpoints = tuple(
                CheckpointRecord(
                    id=f"{r:032x}{s:032x}",
                    created=base + timedelta(seconds=s),
                    step=s,
                    path="",
                    metrics={"loss": 1.0 / (s + 1) + r * 0.01},
                    primary_metric=PrimaryMetric("loss", "minimize"),
                )
                for s in range(steps)
            )
            record = ExperimentRecord(
                id=f"{r + 1:064x}"[::-1],
                created=base + timedelta(minutes=r),
                params={"lr": 0.001 * (r + 1)},
                host="h",
                user="u",
                config={"repository": url, "storage": ""},
                command="python train.py",
                path="",
                python_version="3.11",
                python_packages={},
                checkpoints=checkpoints,
            )
            await repository.save_experiment(record)
            ids.append(record.id)
    return ids


def _chart(tmp: Path) -> list[list[object]]:
    from playwright.sync_api import sync_playwright

    url = (tmp / "repo").as_uri()
    ids = anyio.run(_write_runs, url, 10, 1000)
    served = _Served(url)
    draws: list[float] = []
    loads: list[float] = []
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
    query = "&".join(f"id={i}" for i in ids)
    try:
        with tempfile.TemporaryDirectory() as profile, sync_playwright() as p:
            context = p.chromium.launch_persistent_context(
                profile, executable_path="/usr/bin/chromium", args=flags, headless=True
            )
            page = context.new_page()
            page.set_viewport_size({"width": 1200, "height": 900})
            for _ in range(CHART_RUNS):
                start = time.perf_counter()
                page.goto(f"{served.base}compare?{query}")
                page.wait_for_selector("#charts[data-drawn]")
                loads.append(time.perf_counter() - start)
                measure = page.evaluate(
                    "performance.getEntriesByName('chart:loss', 'measure')[0].duration"
                )
                draws.append(measure / 1000)
            context.close()
    finally:
        served.stop()
    record_summary(
        NAME,
        "10,000-point chart draw",
        fmt_s(p50(draws)),
        "< 300 ms",
        p50(draws) < CHART_TARGET,
        "10 runs x 1,000 steps, Performance API",
    )
    return [
        [
            "chart draw, 10 runs x 1,000 points (p50)",
            fmt_s(p50(draws)),
            "",
            "< 300 ms",
            verdict(p50(draws) < CHART_TARGET),
        ],
        ["  min / max", f"{fmt_s(min(draws))} / {fmt_s(max(draws))}", "", "", ""],
        ["compare page load to charts drawn (p50)", fmt_s(p50(loads)), "", "", ""],
    ]


def run(options: Options) -> None:
    count = 200 if options.quick else 1000
    with temp_dir("rbench-ui") as tmp:
        rows = _page(count) + _chart(tmp)
    print_table(
        f"replicate ui: {count} experiments x 20 on SeaweedFS; a 10,000-point chart in Chromium",
        ["measure", "time", "vs baseline", "target", "verdict"],
        rows,
    )
    note("one run on a shared 2-core machine: figures are noisy; the server and SeaweedFS")
    note("share the cores with this client (and Chromium for the chart).")
