"""The aiohttp application: routes, security headers, errors as pages, and the server's life."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from pathlib import Path

import anyio
from aiohttp import web
from aiohttp.typedefs import Middleware

from replicate.daemon import Daemon
from replicate.errors import AmbiguousID, DoesNotExist, ReplicateError, ValidationError
from replicate.read.source import Source
from replicate.repository import Repository
from replicate.storage import open_storage
from replicate.ui import api, pages
from replicate.ui.cache import MetadataCache
from replicate.ui.html import page
from replicate.ui.state import STATE, UIState

#: No inline script or style, nothing from another origin, no framing, no plugins.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def hostname(host: str) -> str:
    """The name in a Host header, without the port: ``[::1]:80`` -> ``::1``."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if ":" in host else host


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(SECURITY_HEADERS)
    if request.path.startswith("/api/"):
        response.headers["Cache-Control"] = "no-store"


def _error(request: web.Request, status: int, message: str) -> web.Response:
    if request.path.startswith("/api/"):
        return api.reply({"error": message}, status)
    state = request.app[STATE]
    text = page(
        "base.html",
        title="Error",
        repository=state.source.url,
        refresh_ms="0",
        body=page("error.html", message=message),
    )
    return web.Response(text=text, status=status, content_type="text/html")


def _guards(bound_host: str) -> Middleware:
    """Errors become pages; on loopback, a foreign Host header (DNS rebinding) is refused."""
    check_host = is_loopback(bound_host)

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if check_host:
            host = hostname(request.host or "")
            if not is_loopback(host):
                return _error(request, 421, f"this page answers to 127.0.0.1, not {host!r}")
        try:
            return await handler(request)
        except DoesNotExist as exc:
            return _error(request, 404, str(exc))
        except (AmbiguousID, ValidationError) as exc:
            return _error(request, 400, str(exc))
        except ReplicateError as exc:
            return _error(request, 502, str(exc))

    return guard


def _routes(app: web.Application) -> None:
    static = Path(str(resources.files("replicate.ui").joinpath("static")))
    app.router.add_get("/", pages.experiments_page)
    app.router.add_get("/experiments/{id}", pages.experiment_page)
    app.router.add_get("/experiments/{id}/tarball", api.code_tarball)
    app.router.add_get("/experiments/{id}/files/{path:.+}", api.code_file)
    app.router.add_get("/checkpoints/{id}/files", pages.checkpoint_files_page)
    app.router.add_get("/checkpoints/{id}/tarball", api.checkpoint_tarball)
    app.router.add_get("/checkpoints/{id}/files/{path:.+}", api.checkpoint_file)
    app.router.add_get("/compare", pages.compare_page)
    app.router.add_get("/api/experiments", api.experiments_rows)
    app.router.add_get("/api/experiments/{id}", api.experiment_detail)
    app.router.add_get("/api/series", api.series)
    app.router.add_get("/api/scatter", api.scatter)
    app.router.add_static("/static/", static, follow_symlinks=False, append_version=False)


def make_app(
    url: str,
    spool_dir: Path | None = None,
    *,
    host: str = "127.0.0.1",
    refresh_seconds: float = 3.0,
    cache_seconds: float = 2.0,
) -> web.Application:
    """The read-only web app over the repository at ``url`` (and this machine's upload queue).

    The repository is opened when the app starts, in the server's own event loop.
    """
    app = web.Application(middlewares=[_guards(host)])
    source = Source(url, spool_dir)

    async def repository(app: web.Application) -> AsyncIterator[None]:
        async with open_storage(url) as storage:
            repo = Repository(storage)
            await repo.check_version()
            cache = MetadataCache(repo, source, max_age=cache_seconds)
            app[STATE] = UIState(repo, source, cache, refresh_ms=int(refresh_seconds * 1000))
            yield

    app.cleanup_ctx.append(repository)
    app.on_response_prepare.append(_security_headers)
    _routes(app)
    return app


class Server:
    """An app served on ``host:port`` (0: any free port) from the running event loop."""

    def __init__(self, app: web.Application, host: str = "127.0.0.1", port: int = 8866) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._runner = web.AppRunner(app, access_log=None)

    async def start(self) -> str:
        """Open the repository, listen, and return the page's URL."""
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=False)
        try:
            await site.start()
        except BaseException:
            await self._runner.cleanup()
            raise
        self.port = self._runner.addresses[0][1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    async def stop(self) -> None:
        await self._runner.cleanup()


def serve(app: web.Application, host: str, port: int, on_ready: Callable[[str], None]) -> None:
    """Serve from the process's Daemon loop until interrupted.

    Ctrl-C raises KeyboardInterrupt in the caller; when the main thread ends, the Daemon's
    shutdown cancels this task, and the server closes (shielded) before the loop stops.
    """

    async def main() -> None:
        server = Server(app, host, port)
        on_ready(await server.start())
        try:
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await server.stop()

    Daemon.get().call(main)
