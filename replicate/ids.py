"""Experiment and checkpoint ids (64 lowercase hex characters from a cryptographic RNG), and
the one resolver of id prefixes."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from typing import TypeVar

from replicate.errors import AmbiguousID, DoesNotExist

T = TypeVar("T")

ID_LENGTH = 64
SHORT_LENGTH = 7
_HEX = frozenset("0123456789abcdef")


def random_id() -> str:
    """Return a new 64-character hex id."""
    return secrets.token_hex(32)


def short_id(id: str) -> str:
    """Return the 7-character form shown to people."""
    return id[:SHORT_LENGTH]


def is_id(value: str) -> bool:
    """True for a full id: exactly 64 lowercase hex characters."""
    return len(value) == ID_LENGTH and all(ch in _HEX for ch in value)


def normalize_prefix(prefix: str) -> str:
    """Return ``prefix`` stripped and lowercased; DoesNotExist if it cannot be an id's start."""
    cleaned = prefix.strip().lower()
    if not cleaned:
        raise DoesNotExist("an empty id matches nothing: pass an experiment or checkpoint id")
    if len(cleaned) > ID_LENGTH or any(ch not in _HEX for ch in cleaned):
        raise DoesNotExist(
            f"{prefix!r} is not an id: ids are up to {ID_LENGTH} hexadecimal characters; "
            "run `replicate ls` to see them"
        )
    return cleaned


def resolve_prefix(
    prefix: str,
    candidates: Mapping[str, T],
    describe: Callable[[str, T], str],
    *,
    what: str = "experiment or checkpoint",
    where: str = "",
) -> tuple[str, T]:
    """The one id among ``candidates`` (full id -> anything) that ``prefix`` starts.

    The one resolver every command and the Python API use. Raises DoesNotExist when nothing
    matches and AmbiguousID (listing up to ten, each by ``describe(id, value)``) when several do.
    """
    cleaned = normalize_prefix(prefix)
    matches = sorted(id for id in candidates if id.startswith(cleaned))
    if not matches:
        in_where = f" in {where}" if where else ""
        raise DoesNotExist(
            f"no {what} matches {cleaned!r}{in_where}: run `replicate ls` to see the ids"
        )
    if len(matches) > 1:
        names = ", ".join(describe(id, candidates[id]) for id in matches[:10])
        more = f" and {len(matches) - 10} more" if len(matches) > 10 else ""
        raise AmbiguousID(
            f"{cleaned!r} is ambiguous, it matches {names}{more}: use a longer prefix"
        )
    return matches[0], candidates[matches[0]]
