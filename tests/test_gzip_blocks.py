"""Tarballs whose deflate blocks are made in parallel, some compressed and some stored.

Read back byte-exact by plain ``gzip``, ``zlib`` and ``tarfile`` (random access and streaming
mode, which stops after a first gzip member: so there must be only one).
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import zlib
from pathlib import Path

from replicate.archive import tar_stream
from replicate.gzip_blocks import BLOCK, Packer


def _pack(files: dict[str, bytes], tmp_path: Path) -> tuple[bytes, bytes]:
    """Write ``files``, pack them; return (the tarball, the raw tar stream packed)."""
    listed = []
    for rel, content in files.items():
        path = tmp_path / "src" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        listed.append((path, rel))
    packer = Packer(tar_stream(listed, "ckpt"))
    tarball = b"".join(iter(packer.read, b""))
    return tarball, b"".join(tar_stream(listed, "ckpt"))


def test_mixed_blocks_read_back_by_tarfile_and_gzip(tmp_path: Path) -> None:
    """Random weights are stored verbatim, text is compressed; one member holds them all."""
    text = b"".join(b"epoch %d loss %.6f\n" % (i, 1 / (i + 1)) for i in range(300_000))
    weights = os.urandom(2 * BLOCK + 12345)
    files = {
        "weights.bin": weights,
        "log.txt": text[: 2 * BLOCK],
        "small.json": b'{"a": 1}',
        "empty": b"",
    }
    tarball, raw = _pack(files, tmp_path)

    inflate = zlib.decompressobj(31)
    assert inflate.decompress(tarball) == raw
    assert inflate.eof and inflate.unused_data == b"", "not exactly one gzip member"
    assert weights[3 * BLOCK // 2 : 3 * BLOCK // 2 + 4096] in tarball, "weights not stored"
    assert len(tarball) < len(raw) - BLOCK, "text not compressed"

    assert gzip.decompress(tarball) == raw
    expected = {f"ckpt/{rel}": content for rel, content in files.items()}
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
        read = {n: tar.extractfile(n).read() for n in tar.getnames()}  # type: ignore[union-attr]
    assert read == expected
    streamed = {}
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r|gz") as tar:
        for info in tar:
            streamed[info.name] = tar.extractfile(info).read()  # type: ignore[union-attr]
    assert streamed == expected


def test_empty_stream_is_a_valid_gzip_file() -> None:
    """No input still gives a valid (empty) gzip file."""
    packer = Packer(iter(()))
    data = b"".join(iter(packer.read, b""))
    assert gzip.decompress(data) == b""


def test_close_drops_what_is_in_flight(tmp_path: Path) -> None:
    """After close() (a failed upload), read() ends at once."""
    packer = Packer(iter([os.urandom(BLOCK)] * 8))
    assert packer.read()
    packer.close()
    assert packer.read() == b""
