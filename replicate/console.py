"""The only place the library writes to the terminal: diagnostics on stderr."""

from __future__ import annotations

import sys
import threading

_lock = threading.Lock()
_said: set[str] = set()


def info(message: str) -> None:
    """Print one diagnostic line to stderr, prefixed so it is clearly replicate's."""
    with _lock:
        sys.stderr.write(f"replicate: {message}\n")
        sys.stderr.flush()


def warn(message: str) -> None:
    """Print one warning line to stderr."""
    with _lock:
        sys.stderr.write(f"replicate: warning: {message}\n")
        sys.stderr.flush()


def once(key: str, message: str, *, warning: bool = True) -> None:
    """Print ``message`` the first time ``key`` is seen in this process, then stay quiet."""
    with _lock:
        if key in _said:
            return
        _said.add(key)
    (warn if warning else info)(message)
