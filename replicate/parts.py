"""Sharded checkpoints: one part per rank, rank 0's part committing the whole (docs/format.md).

Rank 0's part is the checkpoint's own tarball, ``checkpoints/<id>.tar.gz``; the part of rank
``r > 0`` is ``checkpoints/<id>.part-<r>.tar.gz`` beside it. The checkpoint record lists the
other ranks in an extra field, ``"parts": [1, 2, …]`` (Keepsake ignores keys it does not know);
a checkpoint without it is a plain one. Every part's members are ``<id>/<path>`` like any
checkpoint's, so extracting them all over each other gives the one directory DCP wrote.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from replicate.errors import CorruptedMetadata
from replicate.ids import short_id
from replicate.records import CheckpointRecord

#: The checkpoint record's extra field that lists the ranks of the other parts.
PARTS_FIELD = "parts"
#: The most ranks a checkpoint may list (bounds what untrusted metadata can ask for).
MAX_RANKS = 1 << 16


@dataclass(frozen=True, slots=True)
class Part:
    """This rank's part of sharded checkpoint ``checkpoint_id``; ``ranks``: the other parts.

    ``ranks`` is only known (and only needed) on rank 0, whose job commits the checkpoint.
    """

    checkpoint_id: str
    rank: int
    ranks: tuple[int, ...] = ()

    def extra(self) -> dict[str, list[int]]:
        """The checkpoint record's extra field (rank 0's record only)."""
        return {PARTS_FIELD: list(self.ranks)} if self.rank == 0 and self.ranks else {}


def part_id(checkpoint_id: str, rank: int) -> str:
    """The archive id of ``rank``'s part: the checkpoint's own id for rank 0."""
    return checkpoint_id if rank == 0 else f"{checkpoint_id}.part-{rank}"


def part_ranks(record: CheckpointRecord) -> list[int]:
    """The ranks (other than 0) whose parts belong to ``record``; [] for a plain checkpoint.

    Raises CorruptedMetadata when the field is not a list of distinct ranks 1..MAX_RANKS-1.
    """
    value = record.extra.get(PARTS_FIELD)
    if value is None:
        return []
    if not isinstance(value, list) or not all(
        isinstance(r, int) and not isinstance(r, bool) and 0 < r < MAX_RANKS for r in value
    ):
        raise CorruptedMetadata(
            f"checkpoint {short_id(record.id)}",
            f"its {PARTS_FIELD!r} field is not a list of ranks between 1 and {MAX_RANKS - 1}",
        )
    if len(set(value)) != len(value):
        raise CorruptedMetadata(
            f"checkpoint {short_id(record.id)}", f"its {PARTS_FIELD!r} field repeats a rank"
        )
    return sorted(value)


def archive_ids(record: CheckpointRecord) -> list[str]:
    """Every tarball id of ``record`` (its own first, then its other ranks' parts)."""
    return [record.id, *(part_id(record.id, r) for r in part_ranks(record))]


def deletable_ids(record: CheckpointRecord) -> list[str]:
    """Like :func:`archive_ids`, but a damaged ``parts`` field gives the own tarball only
    (what ``rm`` and ``gc`` delete: they never fail on another tool's bad metadata)."""
    try:
        return archive_ids(record)
    except CorruptedMetadata:
        return [record.id]


def describe_ranks(ranks: Sequence[int]) -> str:
    """``rank 1`` or ``ranks 1, 3``: for messages."""
    return ("rank " if len(ranks) == 1 else "ranks ") + ", ".join(str(r) for r in ranks)
