"""Crafted tarballs: raw tar headers built by hand, for the hostile-archive suite.

Each case builder takes the checkpoint id (the members' first component) and a directory
outside the checkout target (where an escaping member would land) and returns the bytes to
store as the checkpoint's tarball.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import Callable
from pathlib import Path

Case = Callable[[str, Path], bytes]
BLOCK = 512


def header(name: str, *, kind: bytes = tarfile.REGTYPE, size: int = 0, link: str = "") -> bytes:
    """One 512-byte GNU-format header (``size`` may be negative: base-256 encoded)."""
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname, info.mode = kind, size, link, 0o644
    return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")


def pad(data: bytes) -> bytes:
    return data + bytes(-len(data) % BLOCK)


def member(name: str, data: bytes = b"", **options: object) -> bytes:
    return header(name, size=len(data), **options) + pad(data)  # type: ignore[arg-type]


def raw_meta(kind: bytes, body: bytes, *, declared: int | None = None) -> bytes:
    """A long-name or pax header whose size field says ``declared`` (default: the truth)."""
    size = len(body) if declared is None else declared
    return header(
        "././@LongLink" if kind == tarfile.GNUTYPE_LONGNAME else "pax", kind=kind, size=size
    ) + pad(body)


def record(key: str, value: bytes) -> bytes:
    """One pax record, ``"<length> key=value\\n"``, its length counting itself."""
    body = f" {key}=".encode() + value + b"\n"
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length += 1
    return str(length).encode() + body


def pax(*records: bytes) -> bytes:
    return raw_meta(tarfile.XHDTYPE, b"".join(records))


def end() -> bytes:
    return bytes(2 * BLOCK)


def gz(raw: bytes) -> bytes:
    return gzip.compress(raw, compresslevel=9, mtime=0)


def tar_gz(files: dict[str, bytes]) -> bytes:
    """A well-formed tar.gz written by the standard library."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.GNU_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _crc_mismatch(cid: str, outside: Path) -> bytes:
    data = bytearray(tar_gz({f"{cid}/model.pth": b"evil weights\n" * 100}))
    data[-8] ^= 0xFF  # the gzip trailer's CRC32
    return bytes(data)


def _bad_checksum(cid: str, outside: Path) -> bytes:
    block = bytearray(header(f"{cid}/model.pth", size=4))
    block[148:156] = b"0000000\0"
    return gz(bytes(block) + pad(b"evil") + end())


def _octal_size(cid: str, outside: Path) -> bytes:
    block = bytearray(header(f"{cid}/model.pth", size=4))
    block[124:136] = b"1e3        \0"
    block[148:156] = b"        "
    block[148:156] = f"{sum(block):06o}\0 ".encode()
    return gz(bytes(block) + pad(b"evil") + end())


def _gnu_sparse(cid: str, outside: Path) -> bytes:
    return gz(header(f"{cid}/model.pth", kind=tarfile.GNUTYPE_SPARSE) + end())


#: name -> builder. Every one of these must be refused by checkout, open and verify.
CASES: dict[str, Case] = {
    "absolute path": lambda cid, out: gz(member(f"{out}/evil.txt", b"evil") + end()),
    "dot-dot": lambda cid, out: gz(member(f"{cid}/../../evil.txt", b"evil") + end()),
    "symlink out": lambda cid, out: gz(
        header(f"{cid}/link", kind=tarfile.SYMTYPE, link=str(out))
        + member(f"{cid}/link/evil.txt", b"evil")
        + end()
    ),
    "hardlink out": lambda cid, out: gz(
        header(f"{cid}/passwd", kind=tarfile.LNKTYPE, link="/etc/passwd") + end()
    ),
    "char device": lambda cid, out: gz(header(f"{cid}/null", kind=tarfile.CHRTYPE) + end()),
    "block device": lambda cid, out: gz(header(f"{cid}/sda", kind=tarfile.BLKTYPE) + end()),
    "fifo": lambda cid, out: gz(header(f"{cid}/pipe", kind=tarfile.FIFOTYPE) + end()),
    "gnu sparse file": _gnu_sparse,
    "duplicate name": lambda cid, out: gz(
        member(f"{cid}/model.pth", b"one") + member(f"{cid}/model.pth", b"two") + end()
    ),
    "file then dir of the same name": lambda cid, out: gz(
        member(f"{cid}/a", b"file") + member(f"{cid}/a/b", b"below") + end()
    ),
    "dir then file of the same name": lambda cid, out: gz(
        member(f"{cid}/a/b", b"below") + member(f"{cid}/a", b"file") + end()
    ),
    "pax size negative": lambda cid, out: gz(
        pax(record("size", b"-512")) + header(f"{cid}/model.pth") + end()
    ),
    "pax size non-numeric": lambda cid, out: gz(
        pax(record("size", b"abc")) + header(f"{cid}/model.pth") + end()
    ),
    "pax size 1e3": lambda cid, out: gz(
        pax(record("size", b"1e3")) + header(f"{cid}/model.pth") + end()
    ),
    "pax size huge": lambda cid, out: gz(
        pax(record("size", b"9" * 30)) + header(f"{cid}/model.pth") + end()
    ),
    "pax size beyond the total limit": lambda cid, out: gz(
        pax(record("size", str(10**19).encode())) + header(f"{cid}/model.pth") + end()
    ),
    "pax record length negative": lambda cid, out: gz(
        raw_meta(tarfile.XHDTYPE, b"-9 size=1\n") + header(f"{cid}/model.pth") + end()
    ),
    "pax path with a NUL": lambda cid, out: gz(
        pax(record("path", f"{cid}/a\0b".encode())) + header(f"{cid}/x") + end()
    ),
    "pax mtime not a number": lambda cid, out: gz(
        pax(record("mtime", b"soon")) + header(f"{cid}/model.pth") + end()
    ),
    "global pax header sets a path": lambda cid, out: gz(
        raw_meta(tarfile.XGLTYPE, record("path", b"evil")) + header(f"{cid}/x") + end()
    ),
    "header size negative": lambda cid, out: gz(header(f"{cid}/model.pth", size=-512) + end()),
    "header checksum wrong": _bad_checksum,
    "header size field not octal": _octal_size,
    "long name longer than PATH_MAX": lambda cid, out: gz(
        raw_meta(tarfile.GNUTYPE_LONGNAME, f"{cid}/{'d/' * 2100}x\0".encode())
        + header("placeholder")
        + end()
    ),
    "long name header of 1 GiB": lambda cid, out: gz(
        raw_meta(tarfile.GNUTYPE_LONGNAME, b"x" * 4096, declared=1 << 30) + end()
    ),
    "pax header of 1 GiB": lambda cid, out: gz(
        raw_meta(tarfile.XHDTYPE, b"x" * 4096, declared=1 << 30) + end()
    ),
    "name component longer than NAME_MAX": lambda cid, out: gz(
        member(f"{cid}/{'n' * 300}", b"x") + end()
    ),
    "truncated gzip": lambda cid, out: tar_gz({f"{cid}/model.pth": bytes(range(256)) * 64})[:-40],
    "gzip trailer CRC mismatch": _crc_mismatch,
}
