"""Sharded checkpoints in format 1: the ``parts`` field, what Keepsake 0.4.2 sees of it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from replicate.errors import CorruptedMetadata
from replicate.parts import archive_ids, part_id, part_ranks
from replicate.records import CheckpointRecord, decode_experiment, encode_experiment

SAMPLE = Path(__file__).parent / "fixtures" / "keepsake-0.4.2-sample" / ".keepsake"
FIRST = "928ecab5399eb69f527461382d8b2b96274873a5e97d07d0ba0c3cd6c3cb7b24"
#: The fields of Keepsake 0.4.2's checkpoint (go/pkg/project/checkpoint.go), in its order.
#: It decodes with Go's encoding/json, which skips keys its struct does not have.
KEEPSAKE_CHECKPOINT = ["id", "created", "metrics", "step", "path", "primary_metric"]


def sharded(record: CheckpointRecord, parts: object) -> CheckpointRecord:
    return dataclasses.replace(record, extra={"parts": parts})


def test_keepsake_reads_a_sharded_checkpoint_as_a_plain_one() -> None:
    """Added to Keepsake's own sample, a sharded checkpoint is written with Keepsake's keys
    first, in its order and types, ``parts`` last; it decodes back with its parts."""
    path = SAMPLE / "metadata" / "experiments" / f"{FIRST}.json"
    record = decode_experiment(path.read_bytes(), "sample")
    checkpoint = sharded(dataclasses.replace(record.checkpoints[-1], path="dcp"), [1, 2, 3])
    written = json.loads(
        encode_experiment(record.with_checkpoints([*record.checkpoints, checkpoint]))
    )
    keepsakes = json.loads(path.read_bytes())["checkpoints"][-1]
    ours = written["checkpoints"][-1]
    assert list(ours) == [*KEEPSAKE_CHECKPOINT, "parts"]
    assert {k: type(ours[k]) for k in KEEPSAKE_CHECKPOINT} == {
        k: type(keepsakes[k]) for k in KEEPSAKE_CHECKPOINT
    }
    assert ours["parts"] == [1, 2, 3]
    again = decode_experiment(json.dumps(written).encode(), "again").checkpoints[-1]
    assert part_ranks(again) == [1, 2, 3]
    # Keepsake's checkout reads checkpoints/<id>.tar.gz: rank 0's part, with DCP's .metadata
    assert archive_ids(again)[0] == again.id


def test_parts_are_named_beside_the_checkpoint() -> None:
    """Rank 0's part is the checkpoint's own tarball; rank r's is <id>.part-<r>."""
    record = decode_experiment(
        (SAMPLE / "metadata" / "experiments" / f"{FIRST}.json").read_bytes(), "sample"
    ).checkpoints[0]
    assert part_id(record.id, 0) == record.id
    assert archive_ids(sharded(record, [2, 1])) == [
        record.id,
        f"{record.id}.part-1",
        f"{record.id}.part-2",
    ]
    assert archive_ids(record) == [record.id]


@pytest.mark.parametrize(
    "parts", ["1", [0], [-1], [1.5], [True], [1, 1], [1 << 16], {"1": 1}], ids=repr
)
def test_bad_parts_are_corrupted_metadata(parts: object) -> None:
    """A parts field written by someone else that is not a list of distinct ranks ≥ 1 is refused."""
    record = decode_experiment(
        (SAMPLE / "metadata" / "experiments" / f"{FIRST}.json").read_bytes(), "sample"
    ).checkpoints[0]
    with pytest.raises(CorruptedMetadata, match="parts"):
        part_ranks(sharded(record, parts))
