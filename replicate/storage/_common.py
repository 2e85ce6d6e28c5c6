"""Helpers shared by the backends: key checks, root-prefix joins, splitting a stream into parts."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable

import anyio

from replicate.errors import ValidationError


def check_key(key: str) -> str:
    """Return ``key`` if it is a relative '/'-separated key, else raise ValidationError.

    Args:
        key: a key such as ``metadata/experiments/abc.json``.

    Raises:
        ValidationError: the key is empty, absolute, or has an empty, '.' or '..' segment.
    """
    if not key or key.startswith("/") or "\\" in key or "\x00" in key:
        raise ValidationError(f"invalid storage key {key!r}: keys are relative, '/'-separated")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise ValidationError(f"invalid storage key {key!r}: no empty, '.' or '..' segments")
    return key


def check_prefix(prefix: str) -> str:
    """Return ``prefix`` if it is empty or a valid key with an optional trailing '/'."""
    if prefix:
        check_key(prefix.removesuffix("/"))
    return prefix


def join(root: str, key: str) -> str:
    """Return the full object name of ``key`` under the root prefix ``root``."""
    return f"{root}/{key}" if root else key


def strip(root: str, name: str) -> str:
    """Return the key of the full object name ``name`` under the root prefix ``root``."""
    return name[len(root) + 1 :] if root else name


async def parts(
    source: AsyncIterable[bytes], size: int
) -> AsyncGenerator[tuple[bytes, bool], None]:
    """Re-chunk ``source`` into ``(part, is_last)`` pairs of exactly ``size`` bytes but the last.

    A part is only yielded as not-last once a byte beyond it has arrived, so ``is_last`` is
    known when each part is handed out (GCS needs the total size with the final chunk). At most
    one part plus one source chunk is buffered here. An empty source yields ``(b"", True)``.
    """
    buffer = bytearray()
    async for data in source:
        buffer += data
        while len(buffer) > size:
            part = bytes(buffer[:size])
            del buffer[:size]
            yield part, False
    yield bytes(buffer), True


def first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """Return the first real error in a task group's exception group (not a cancellation)."""
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            return first_error(error)
        if not isinstance(error, anyio.get_cancelled_exc_class()):
            return error
    return group.exceptions[0]
