"""A fault-injecting HTTP/1.1 proxy on 127.0.0.1, in front of a real storage server.

Point a client at ``proxy.url`` instead of the server, then add rules. Each request the proxy
reads is offered to the rules in the order they were added; the first whose ``match`` accepts
it (and has uses left) decides its fate, and a request no rule takes passes through untouched:

- ``Pass(after=n)``: pass through; the rule fires once ``n`` body bytes have passed (or, with
  ``after=None``, once the whole request has been forwarded).
- ``Delay(seconds)``: wait, then pass through (latency).
- ``Reset(after=n)``: forward the head and ``n`` body bytes, then reset both connections
  (``n = 0``: nothing reaches the server).
- ``Truncate(after=n)``: the server gets the first ``n`` body bytes as a whole request (as if
  it kept what arrived before the connection broke); the client's connection is reset.
- ``Pause(after=n)``: forward ``n`` body bytes, then hold the request until ``rule.release()``.
- ``Reply(...)``: answer without asking the server (``s3_slow_down()``, ``gcs_unavailable()``).
- ``Stall()``: read the whole request and never answer.

A rule's fault may also be a function of the request that returns one, decided when the
request arrives. Each rule counts its uses and sets ``rule.fired`` (a ``threading.Event``)
when its fault takes effect, so a test synchronises on what the server side saw
(``rule.wait()``), never on a guessed speed. ``proxy.hold()`` keeps every new request waiting until ``proxy.let_through()``
(for example while the server behind it restarts). Requests are framed by Content-Length or
chunked transfer coding; responses are relayed byte for byte. The proxy runs its own asyncio
loop in a daemon thread, so sync tests, async tests and subprocesses can all use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import struct
import threading
from collections.abc import AsyncGenerator, Callable, Coroutine
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import parse_qsl, urlsplit

T = TypeVar("T")
_PIECE = 64 * 1024
_HEAD_LIMIT = 64 * 1024


@dataclass
class Request:
    """What the proxy read of one HTTP request (header names in lower case)."""

    connection: int  # the client connection's number, from 0, in order of arrival
    index: int  # the request's number on its connection, from 0
    method: str
    target: str  # path and query, as sent
    headers: dict[str, str]
    body_passed: int = 0  # body bytes forwarded to the server (or read, for Reply and Stall)
    fault: str = "pass"  # the name of the fault applied, "pass" when no rule took it

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, str]:
        return dict(parse_qsl(urlsplit(self.target).query, keep_blank_values=True))

    @property
    def body_length(self) -> int | None:
        """The declared Content-Length; None for a chunked body."""
        value = self.headers.get("content-length")
        return int(value) if value is not None else None

    @property
    def chunked(self) -> bool:
        return "chunked" in self.headers.get("transfer-encoding", "").lower()


@dataclass(frozen=True)
class Pass:
    """Pass through; the rule fires once ``after`` body bytes have passed (None: at the end)."""

    after: int | None = None


@dataclass(frozen=True)
class Delay:
    """Wait ``seconds`` before forwarding the request."""

    seconds: float


@dataclass(frozen=True)
class Reset:
    """Forward the head and ``after`` body bytes, then reset both connections (TCP RST)."""

    after: int = 0


@dataclass(frozen=True)
class Truncate:
    """Send the server the head and ``after`` body bytes as a complete request (Content-Length
    and a Content-Range's end cut to match), read its answer, then reset the client."""

    after: int


@dataclass(frozen=True)
class Pause:
    """Forward the head and ``after`` body bytes, then hold until the rule is released."""

    after: int = 0


@dataclass(frozen=True)
class Reply:
    """Answer ``status`` with ``body`` without asking the server; the connection then closes."""

    status: int
    reason: str
    body: bytes = b""
    content_type: str = "text/plain"
    headers: tuple[tuple[str, str], ...] = ()

    def encode(self) -> bytes:
        extra = "".join(f"{name}: {value}\r\n" for name, value in self.headers)
        head = (
            f"HTTP/1.1 {self.status} {self.reason}\r\n"
            f"Content-Type: {self.content_type}\r\n"
            f"Content-Length: {len(self.body)}\r\n"
            f"{extra}Connection: close\r\n\r\n"
        )
        return head.encode("latin-1") + self.body


@dataclass(frozen=True)
class Stall:
    """Read the whole request and never answer."""


Fault = Pass | Delay | Reset | Truncate | Pause | Reply | Stall


def s3_slow_down() -> Reply:
    """S3's 503 SlowDown, with its XML error body."""
    body = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
        b"<Message>Please reduce your request rate.</Message>"
        b"<RequestId>faults</RequestId></Error>"
    )
    return Reply(503, "Slow Down", body, "application/xml")


def gcs_unavailable() -> Reply:
    """GCS's 503, with its JSON error body."""
    body = b'{"error": {"code": 503, "message": "Backend Error", "errors": []}}'
    return Reply(503, "Service Unavailable", body, "application/json; charset=UTF-8")


def body_at_least(n: int) -> Callable[[Request], bool]:
    """Match requests that declare a body of at least ``n`` bytes (Content-Length)."""
    return lambda request: (request.body_length or 0) >= n


@dataclass
class Rule:
    """One fault for the first ``times`` requests that ``match`` accepts (None: every one)."""

    fault: Fault | Callable[[Request], Fault]
    match: Callable[[Request], bool]
    times: int | None
    _loop: asyncio.AbstractEventLoop
    requests: list[Request] = field(default_factory=list)  # the requests it took
    fired_on: list[Request] = field(default_factory=list)  # those it took effect on, in order
    fired: threading.Event = field(default_factory=threading.Event)
    _released: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def hits(self) -> int:
        return len(self.requests)

    def _takes(self, request: Request) -> bool:
        return (self.times is None or self.hits < self.times) and self.match(request)

    def wait(self, timeout: float = 60) -> Request:
        """Block until the fault took effect; return the first request it took effect on."""
        if not self.fired.wait(timeout):
            raise AssertionError(f"{self.fault} never took effect in {timeout} s")
        return self.fired_on[0]

    def _fire(self, request: Request) -> None:
        self.fired_on.append(request)
        self.fired.set()

    def release(self) -> None:
        """Let requests held by a ``Pause`` go on."""
        self._loop.call_soon_threadsafe(self._released.set)


class FaultProxy:
    """A proxy on 127.0.0.1 in front of ``upstream`` (``http://host:port``); see the module."""

    def __init__(self, upstream: str | None = None) -> None:
        self.upstream = upstream
        self.requests: list[Request] = []  # every request read, in order
        self._arrived = threading.Condition()
        self._rules: list[Rule] = []
        self._numbers = itertools.count()
        self._loop = asyncio.new_event_loop()
        self._open = asyncio.Event()
        self._open.set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, name="faults", daemon=True)
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        self._thread.start()
        self._server = self._call(
            asyncio.start_server(self._serve, "127.0.0.1", 0, limit=_HEAD_LIMIT)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def close(self) -> None:
        """Stop listening, reset every connection and stop the loop thread."""
        if self._server is not None:
            self._call(self._shutdown(self._server))
            self._server = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def add(
        self,
        fault: Fault | Callable[[Request], Fault],
        *,
        match: Callable[[Request], bool] | None = None,
        times: int | None = 1,
    ) -> Rule:
        """Apply ``fault`` to the next ``times`` requests ``match`` accepts (None: all)."""
        rule = Rule(fault, match or (lambda _: True), times, self._loop)
        self._rules.append(rule)  # in effect for every request read after this returns
        return rule

    def wait_for_requests(self, count: int, timeout: float = 60) -> list[Request]:
        """Block until the proxy has read the heads of ``count`` requests; return them all."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.requests) >= count, timeout):
                raise AssertionError(
                    f"{len(self.requests)} of {count} requests came in {timeout} s"
                )
            return list(self.requests)

    def hold(self) -> None:
        """Keep every request read from now on waiting before it is forwarded or faulted."""
        self._call(self._set_open(False))

    def let_through(self) -> None:
        """Let held requests, and new ones, go on."""
        self._call(self._set_open(True))

    # ---- inside the loop thread --------------------------------------------------------------

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(30)

    async def _set_open(self, is_open: bool) -> None:
        if is_open:
            self._open.set()
        else:
            self._open.clear()

    async def _shutdown(self, server: asyncio.Server) -> None:
        server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for _ in range(3):  # let the closed transports' connection_lost callbacks run
            await asyncio.sleep(0)

    def _choose(self, request: Request) -> tuple[Rule | None, Fault]:
        """The rule that takes ``request`` and its fault; (None, Pass()) if none does."""
        for rule in self._rules:
            if rule._takes(request):
                rule.requests.append(request)
                fault = rule.fault(request) if callable(rule.fault) else rule.fault
                request.fault = type(fault).__name__
                return rule, fault
        return None, Pass()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        connection = _Connection(self, next(self._numbers), reader, writer)
        try:
            await connection.run()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            _reset(writer)
        except asyncio.CancelledError:
            pass  # the proxy is closing; asyncio's stream callback logs a cancelled task
        finally:
            await connection.close()
            self._tasks.discard(task)


class _Connection:
    """One client connection and, once a request passes, its connection to the server."""

    def __init__(
        self,
        proxy: FaultProxy,
        number: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.proxy, self.number = proxy, number
        self.reader, self.writer = reader, writer
        self.upstream: asyncio.StreamWriter | None = None
        self.relay: asyncio.Task[None] | None = None

    async def run(self) -> None:
        for index in itertools.count():
            try:
                head = await self.reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return  # the client closed the connection between requests
            request = _parse(head, self.number, index)
            with self.proxy._arrived:
                self.proxy.requests.append(request)
                self.proxy._arrived.notify_all()
            await self.proxy._open.wait()
            rule, fault = self.proxy._choose(request)
            if not await self._handle(head, request, rule, fault):
                return

    async def _handle(self, head: bytes, request: Request, rule: Rule | None, fault: Fault) -> bool:
        """Apply ``rule``'s ``fault`` (or pass); False once the connection is finished."""
        if isinstance(fault, Delay):
            await asyncio.sleep(fault.seconds)  # the fault itself: latency, not a wait
        if rule is not None and isinstance(fault, Reply | Stall):
            if request.headers.get("expect", "").lower() != "100-continue":
                async for piece in _body(self.reader, request):
                    request.body_passed += len(piece)
            rule._fire(request)
            if isinstance(fault, Stall):
                await asyncio.Event().wait()  # until the proxy closes
                return False
            self.writer.write(fault.encode())
            await self.writer.drain()
            return False
        if rule is not None and isinstance(fault, Truncate):
            await self._truncate(head, request, fault.after)
            rule._fire(request)
            _reset(self.writer)
            return False
        cut = fault.after if isinstance(fault, Pass | Reset | Pause) else None
        if rule is not None and cut == 0 and not await self._at_cut(rule, fault, request):
            return False
        upstream = await self._connect()
        if upstream is None:
            _reset(self.writer)
            return False
        upstream.write(head)
        async for piece in _body(self.reader, request):
            if (
                rule is not None
                and cut
                and request.body_passed < cut <= request.body_passed + len(piece)
            ):
                split = cut - request.body_passed
                upstream.write(piece[:split])
                request.body_passed = cut
                await upstream.drain()
                if not await self._at_cut(rule, fault, request):
                    return False
                piece = piece[split:]
            upstream.write(piece)
            request.body_passed += len(piece)
            await upstream.drain()
        if rule is not None and cut is None:
            rule._fire(request)
        return True

    async def _at_cut(self, rule: Rule, fault: Fault, request: Request) -> bool:
        """The fault point of Pass, Reset and Pause; False if the connection is finished."""
        rule._fire(request)
        if isinstance(fault, Reset):
            _reset(self.writer)
            if self.upstream is not None:
                _reset(self.upstream)
            return False
        if isinstance(fault, Pause):
            await rule._released.wait()
        return True

    async def _truncate(self, head: bytes, request: Request, after: int) -> None:
        """Deliver the head and ``after`` body bytes as one whole request, on a connection of
        its own, and read the server's answer to its end."""
        if request.body_length is None or request.body_length < after:
            raise ValueError("Truncate needs a Content-Length body of at least `after` bytes")
        body = bytearray()
        async with contextlib.aclosing(_body(self.reader, request)) as pieces:
            async for piece in pieces:
                body += piece
                if len(body) >= after:
                    break
        request.body_passed = after
        if self.proxy.upstream is None:
            return
        parts = urlsplit(self.proxy.upstream)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        try:
            writer.write(_cut_head(head, request, after) + bytes(body[:after]))
            answer = _parse(await reader.readuntil(b"\r\n\r\n"), -1, 0)
            await reader.readexactly(answer.body_length or 0)
        finally:
            writer.close()

    async def _connect(self) -> asyncio.StreamWriter | None:
        if self.upstream is not None and not self.upstream.is_closing():
            return self.upstream
        if self.proxy.upstream is None:
            return None
        parts = urlsplit(self.proxy.upstream)
        try:
            reader, self.upstream = await asyncio.open_connection(parts.hostname, parts.port)
        except OSError:
            return None
        self.relay = asyncio.create_task(self._relay(reader))
        return self.upstream

    async def _relay(self, upstream: asyncio.StreamReader) -> None:
        """Copy the server's bytes to the client; a server that goes away takes the client too."""
        try:
            while data := await upstream.read(_PIECE):
                self.writer.write(data)
                await self.writer.drain()
        except OSError:
            _reset(self.writer)
        else:
            self.writer.close()
        finally:
            if self.upstream is not None:
                self.upstream.close()

    async def close(self) -> None:
        if self.relay is not None:
            self.relay.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await self.relay
        for writer in (self.upstream, self.writer):
            if writer is not None:
                writer.close()


def _parse(head: bytes, connection: int, index: int) -> Request:
    request_line, *lines = head.decode("latin-1").split("\r\n")
    method, target, _version = request_line.split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return Request(connection, index, method, target, headers)


def _cut_head(head: bytes, request: Request, after: int) -> bytes:
    """``head`` with Content-Length ``after``, and a Content-Range that ends to match."""
    lines = head.decode("latin-1").split("\r\n")
    for i, line in enumerate(lines):
        name = line.partition(":")[0].strip().lower()
        if name == "content-length":
            lines[i] = f"Content-Length: {after}"
        elif name == "content-range":
            unit, _, spec = request.headers["content-range"].partition(" ")
            span, _, total = spec.partition("/")
            start = int(span.partition("-")[0])
            lines[i] = f"Content-Range: {unit} {start}-{start + after - 1}/{total}"
    return "\r\n".join(lines).encode("latin-1")


async def _body(reader: asyncio.StreamReader, request: Request) -> AsyncGenerator[bytes]:
    """Yield the request body as it arrives, framing included (chunked) or not."""
    if request.chunked:
        while True:
            size_line = await reader.readuntil(b"\r\n")
            yield size_line
            size = int(size_line.split(b";", 1)[0], 16)
            if size == 0:
                while (trailer := await reader.readuntil(b"\r\n")) != b"\r\n":
                    yield trailer
                yield trailer
                return
            left = size + 2  # the data and its CRLF
            while left:
                data = await reader.read(min(left, _PIECE))
                if not data:
                    raise asyncio.IncompleteReadError(b"", left)
                left -= len(data)
                yield data
    left = request.body_length or 0
    while left:
        data = await reader.read(min(left, _PIECE))
        if not data:
            raise asyncio.IncompleteReadError(b"", left)
        left -= len(data)
        yield data


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0) rather than a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
