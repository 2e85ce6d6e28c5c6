"""The loop's default executor, usable while the interpreter shuts down.

``concurrent.futures`` sets a global flag at the start of interpreter shutdown (before
non-daemon threads are joined) after which every ThreadPoolExecutor refuses new work. The
daemon drains uploads exactly then, and aiofiles and aiohttp's resolver run through the
loop's default executor, so the loop gets this one: threads started up front, no global flag.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

_Work = tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class LoopExecutor(ThreadPoolExecutor):
    """A fixed set of worker threads, started when the executor is made.

    A ThreadPoolExecutor only because asyncio insists on one; none of its machinery is used.
    """

    def __init__(self, workers: int = 4) -> None:
        super().__init__(max_workers=workers)
        self._queue: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._workers = [
            threading.Thread(target=self._work, name=f"replicate-io-{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self._workers:
            thread.start()

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future: Future[T] = Future()
        self._queue.put((future, fn, args, kwargs))
        return future

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            future, fn, args, kwargs = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting coroutine
                future.set_exception(exc)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        for _ in self._workers:
            self._queue.put(None)
        if wait:
            for thread in self._workers:
                thread.join()
