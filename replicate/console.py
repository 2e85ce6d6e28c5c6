"""The only place the library writes to the terminal: diagnostics on stderr.

Also home of :func:`printable`, which every human output goes through.
"""

from __future__ import annotations

import re
import sys
import threading

_lock = threading.Lock()
_said: set[str] = set()

#: What a terminal may act on: C0 controls but newline, DEL, C1 controls (8-bit CSI among
#: them), and the bidirectional overrides that reorder what is shown.
_UNPRINTABLE = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)
_UNPRINTABLE_OR_NEWLINE = re.compile(f"{_UNPRINTABLE.pattern}|\n")
#: The same, for JSON: C0 controls are escaped by json.dumps already.
JSON_UNSAFE = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str, *, newlines: bool = True) -> str:
    """``text`` safe for a terminal: control characters shown as escapes (``\\x1b``).

    Every human output goes through this: these diagnostics, and the CLI's consoles and
    ``echo`` (cli/_render.py); stored data that others wrote cannot move the cursor,
    retitle the window, or hide text. With ``newlines=False``, newlines are escaped too.
    """
    pattern = _UNPRINTABLE if newlines else _UNPRINTABLE_OR_NEWLINE
    return pattern.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def info(message: str) -> None:
    """Print one diagnostic line to stderr, prefixed so it is clearly replicate's."""
    with _lock:
        sys.stderr.write(f"replicate: {printable(message)}\n")
        sys.stderr.flush()


def warn(message: str) -> None:
    """Print one warning line to stderr."""
    with _lock:
        sys.stderr.write(f"replicate: warning: {printable(message)}\n")
        sys.stderr.flush()


def once(key: str, message: str, *, warning: bool = True) -> None:
    """Print ``message`` the first time ``key`` is seen in this process, then stay quiet."""
    with _lock:
        if key in _said:
            return
        _said.add(key)
    (warn if warning else info)(message)
