"""Values as format version 1 writes them: JSON data, and RFC 3339 UTC timestamps.

Params and metrics are arbitrary JSON; NaN and ±Inf are written as the strings ``"[NaN]"``,
``"[+Infinity]"`` and ``"[-Infinity]"``. Timestamps are RFC 3339 UTC with ``Z``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from replicate.errors import ValidationError

_NAN, _POS_INF, _NEG_INF = "[NaN]", "[+Infinity]", "[-Infinity]"
_SPECIAL = {_NAN: math.nan, _POS_INF: math.inf, _NEG_INF: -math.inf}
_TIME = re.compile(
    r"(\d{4}-\d\d-\d\d)[Tt ](\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(?:[Zz]|([+-]\d\d:\d\d))"
)


def now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def format_time(dt: datetime) -> str:
    """RFC 3339 in UTC with a ``Z`` and 6 fractional digits, e.g. ``2026-11-28T11:55:42.325783Z``."""
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValidationError(
            f"naive datetime {dt!r}; pass a timezone-aware one (datetime.now(UTC))"
        )
    return dt.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_time(s: str) -> datetime:
    """Parse RFC 3339 with 0–9 fractional digits (rounded to microseconds); always UTC-aware."""
    match = _TIME.fullmatch(str(s))
    if match is None:
        raise ValidationError(f"not an RFC 3339 timestamp: {s!r}")
    day, clock, fraction, offset = match.groups()
    try:
        dt = datetime.fromisoformat(f"{day}T{clock}{offset or '+00:00'}").astimezone(UTC)
        nanoseconds = int((fraction or "0").ljust(9, "0"))
        return dt + timedelta(microseconds=(nanoseconds + 500) // 1000)
    except (ValueError, OverflowError) as exc:
        raise ValidationError(f"not a valid timestamp: {s!r} ({exc})") from exc


def _text(value: str, problem: str) -> str:
    """``value`` as a plain str if it encodes as UTF-8, else ValidationError(problem)."""
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationError(problem) from None
    return str(value)


def to_json_value(value: Any, *, where: str = "value") -> Any:
    """Return ``value`` as plain JSON data (NaN/±Inf as strings); ValidationError names ``where``."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        try:
            str(value)  # Python refuses to write (and so to store) over 4300 digits
        except ValueError:
            raise ValidationError(f"{where} is an integer too large to store") from None
        return int(value)
    if isinstance(value, float):
        if math.isnan(value):
            return _NAN
        if math.isinf(value):
            return _POS_INF if value > 0 else _NEG_INF
        return float(value)
    if isinstance(value, str):
        return _text(value, f"{where} is a string that is not valid UTF-8")
    if isinstance(value, Mapping):
        result: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValidationError(
                    f"{where} has a key {key!r} of type {type(key).__name__}; "
                    "JSON object keys must be strings"
                )
            name = _text(key, f"{where} has a key that is not valid UTF-8 (a lone surrogate?)")
            result[name] = to_json_value(item, where=f"{where}[{name!r}]")
        return result
    if isinstance(value, list | tuple):
        return [to_json_value(item, where=f"{where}[{i}]") for i, item in enumerate(value)]
    # numpy scalars and arrays, torch tensors, ...: duck-typed so neither has to be imported.
    for method in ("tolist", "item"):
        convert = getattr(value, method, None)
        if callable(convert):
            try:
                converted = convert()
            except Exception as exc:
                raise ValidationError(
                    f"{where}: {type(value).__name__}.{method}() failed: {exc}"
                ) from exc
            if converted is not value:
                return to_json_value(converted, where=where)
    raise ValidationError(
        f"{where} is not JSON-serializable: {type(value).__module__}.{type(value).__qualname__}; "
        "use str, int, float, bool, None, lists, dicts, or numpy/torch values"
    )


def from_json_value(value: Any) -> Any:
    """Inverse of :func:`to_json_value`: turn ``"[NaN]"`` etc. back into floats, recursively."""
    if isinstance(value, str):
        return _SPECIAL.get(value, value)
    if isinstance(value, dict):
        return {key: from_json_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [from_json_value(item) for item in value]
    return value
