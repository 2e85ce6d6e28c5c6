"""A strict identity for decoded records: every scalar tagged with its type, NaN comparable."""

from __future__ import annotations

import math
from typing import Any


def canon(value: Any) -> Any:
    """Tag every scalar with its type and make NaN comparable, so == is a strict identity."""
    if isinstance(value, float) and math.isnan(value):
        return ("float", "nan")
    if isinstance(value, dict):
        return ("dict", [(k, canon(v)) for k, v in value.items()])
    if isinstance(value, list | tuple):
        return (type(value).__name__, [canon(v) for v in value])
    if hasattr(value, "__dataclass_fields__"):
        names = type(value).__dataclass_fields__
        return (type(value).__name__, [(n, canon(getattr(value, n))) for n in names])
    return (type(value).__name__, value)
