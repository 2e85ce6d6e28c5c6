"""The decoder on mutated input: it decodes or raises CorruptedArchive, in bounded work.

Hypothesis mutates a valid tar.gz (written by Packer: GNU long names, pax-free ustar, empty
files) in two places: the compressed bytes, and the tar headers before gzip. The budget is
fixed by example counts, and pytest-timeout turns any hang into a failure.
"""

from __future__ import annotations

import gzip
import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from replicate.archive import tar_stream
from replicate.errors import CorruptedArchive
from replicate.extract import Unpacker
from replicate.gzip_blocks import Packer

FILES = {"a.txt": b"alpha\n" * 50, "deep/" * 25 + "w.bin": bytes(range(256)) * 3, "empty": b""}
EXAMPLES = 150
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def raw_tar(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    root = tmp_path_factory.mktemp("fuzz")
    for rel, data in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return b"".join(tar_stream([(root / rel, rel) for rel in FILES], "someid"))


class Memory:
    """A sink keeping members in memory, counting them."""

    def __init__(self) -> None:
        self.members = 0

    def begin(self, rel: str, size: int, mode: int) -> io.BytesIO:
        self.members += 1
        return io.BytesIO()

    def end(self, rel: str, file: io.BytesIO) -> bool:
        return False


def decode(data: bytes, raw_length: int) -> None:
    """Feed ``data`` in 97-byte chunks; at most one member per 512 bytes of tar."""
    sink = Memory()
    unpacker = Unpacker(sink, "fuzz.tar.gz")  # type: ignore[arg-type]
    try:
        for i in range(0, len(data), 97):
            unpacker.feed(data[i : i + 97])
        unpacker.close()
    except CorruptedArchive:
        pass
    assert sink.members <= raw_length // 512


mutations = st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8)


@pytest.mark.timeout(60)
@FUZZ
@given(edits=mutations, cut=st.one_of(st.none(), st.integers(0, 10**6)))
def test_mutated_gzip_bytes(raw_tar: bytes, edits: list[tuple[int, int]], cut: int | None) -> None:
    """Flipped bytes or a cut anywhere in the compressed stream."""
    data = bytearray(b"".join(iter(Packer(iter([raw_tar])).read, b"")))
    for at, value in edits:
        data[at % len(data)] = value
    if cut is not None:
        del data[cut % len(data) :]
    decode(bytes(data), len(raw_tar))


@pytest.mark.timeout(60)
@FUZZ
@given(edits=mutations, header=st.integers(0, 5))
def test_mutated_tar_headers(raw_tar: bytes, edits: list[tuple[int, int]], header: int) -> None:
    """Bytes of one tar header changed (checksum recomputed, so the fields themselves count)."""
    data = bytearray(raw_tar)
    starts = [i for i in range(0, len(data) - 512, 512) if data[i + 257 : i + 262] == b"ustar"]
    start = starts[header % len(starts)]
    for at, value in edits:
        data[start + at % 512] = value
    block = data[start : start + 512]
    block[148:156] = b" " * 8
    data[start + 148 : start + 156] = f"{sum(block):06o}\0 ".encode()
    decode(gzip.compress(bytes(data), compresslevel=1, mtime=0), len(raw_tar))
