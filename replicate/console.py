"""The only place the library writes to the terminal: diagnostics on stderr."""

from __future__ import annotations

import functools
import os
import sys
import threading

from rich.console import Console

_lock = threading.Lock()
_said: set[str] = set()


@functools.cache
def stderr() -> Console:
    """The shared stderr console (respects NO_COLOR and non-terminals)."""
    return Console(stderr=True, highlight=False, no_color=bool(os.environ.get("NO_COLOR")))


def info(message: str) -> None:
    """Print one diagnostic line to stderr, prefixed so it is clearly replicate's."""
    with _lock:
        print(f"replicate: {message}", file=sys.stderr, flush=True)


def warn(message: str) -> None:
    """Print one warning line to stderr."""
    with _lock:
        print(f"replicate: warning: {message}", file=sys.stderr, flush=True)


def once(key: str, message: str, *, warning: bool = True) -> None:
    """Print ``message`` the first time ``key`` is seen in this process, then stay quiet."""
    with _lock:
        if key in _said:
            return
        _said.add(key)
    (warn if warning else info)(message)
