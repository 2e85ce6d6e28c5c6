"""A ``replicate ui`` server in a thread of the test process, and plain HTTP requests to it."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from replicate.ui import Server, make_app

_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy


class RunningUI:
    """The app for ``url`` served on a free port of 127.0.0.1 by a loop in its own thread."""

    def __init__(
        self,
        url: str,
        spool_dir: Path | None = None,
        *,
        refresh_seconds: float = 0.3,
        cache_seconds: float = 0.0,
    ) -> None:
        app = make_app(url, spool_dir, refresh_seconds=refresh_seconds, cache_seconds=cache_seconds)
        self.server = Server(app, "127.0.0.1", 0)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="ui-server", daemon=True)
        self.thread.start()
        self.base = asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(60)

    @property
    def state(self) -> Any:
        from replicate.ui.state import STATE

        return self.server.app[STATE]

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def json(self) -> Any:
        return json.loads(self.body)


def get(
    base: str, path: str, *, headers: dict[str, str] | None = None, method: str = "GET"
) -> Reply:
    """One request; HTTP errors are returned, not raised."""
    request = urllib.request.Request(base.rstrip("/") + path, headers=headers or {}, method=method)
    try:
        with _opener.open(request, timeout=60) as response:
            return Reply(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, dict(exc.headers), exc.read())
