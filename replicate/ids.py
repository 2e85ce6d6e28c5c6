"""Experiment and checkpoint ids: 64 lowercase hex characters from a cryptographic RNG."""

from __future__ import annotations

import secrets

SHORT_LENGTH = 7


def random_id() -> str:
    """Return a new 64-character hex id."""
    return secrets.token_hex(32)


def short_id(id: str) -> str:
    """Return the 7-character form shown to people."""
    return id[:SHORT_LENGTH]
