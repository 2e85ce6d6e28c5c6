"""What a tarball may hold: member names, pax records, limits, and the disk space it needs.

Tarballs come from storage that others can write, so every header field is checked against
what the format allows before it is used; anything else raises CorruptedArchive. The limits
keep a hostile archive from growing memory (names, pax headers), the member table (count) or
the disk (declared sizes against the free space) without bound.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from replicate.errors import ArchiveTooLarge, CorruptedArchive

#: Longest member name (bytes): Linux's PATH_MAX; a name the OS refuses cannot be written.
MAX_NAME = 4096
#: Longest path component (bytes): NAME_MAX.
MAX_COMPONENT = 255
#: Largest pax extended header body. Real ones hold a few records (path, mtime, size).
MAX_PAX = 64 * 1024
#: Disk space counted per file on top of its size (a block, for rounding and metadata).
FILE_SLACK = 4096

_DIGITS = re.compile(rb"[0-9]{1,20}")
_NUMBER = re.compile(rb"-?[0-9]{1,20}(\.[0-9]{1,20})?")
#: pax keys holding numbers; their values are checked even though they are not used.
_NUMERIC_KEYS = frozenset({b"mtime", b"atime", b"ctime", b"uid", b"gid", b"size"})
#: Keys of a global pax header that would change later members: not supported.
_GLOBAL_REFUSED = frozenset({b"path", b"size", b"linkpath"})


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on one tarball: members (headers included) and total declared bytes."""

    members: int = 1_000_000
    #: 8 TiB: far above any checkpoint, far below what a forged size field can claim.
    total_bytes: int = 8 << 40


def member_path(name: str) -> str | None:
    """``<id>/a/b`` → ``a/b`` (the first component stripped); None for a bare top-level name.

    Raises CorruptedArchive for names that would escape the target directory or that no
    file system could hold.
    """
    if "\0" in name:
        raise CorruptedArchive(f"member name {name!r} holds a NUL byte")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if name.startswith("/") or ".." in parts:
        raise CorruptedArchive(f"unsafe member name {name!r}")
    encoded = name.encode("utf-8", "surrogateescape")
    if len(encoded) > MAX_NAME or any(
        len(p.encode("utf-8", "surrogateescape")) > MAX_COMPONENT for p in parts
    ):
        raise CorruptedArchive(f"member name {name[:60]!r}... is longer than a file system allows")
    return "/".join(parts[1:]) if len(parts) > 1 else None


def pax_records(body: bytes, *, is_global: bool = False) -> dict[bytes, bytes]:
    """Parse ``"<length> <key>=<value>\\n"`` records; CorruptedArchive on anything else."""
    records: dict[bytes, bytes] = {}
    pos = 0
    while pos < len(body) and body[pos : pos + 1] != b"\0":
        space = body.find(b" ", pos, pos + 21)
        digits = body[pos:space] if space > pos else b""
        if not _DIGITS.fullmatch(digits):
            raise CorruptedArchive("damaged pax header: bad record length")
        end = pos + int(digits)
        if end > len(body) or end <= space + 2 or body[end - 1 : end] != b"\n":
            raise CorruptedArchive("damaged pax header: bad record length")
        key, eq, value = body[space + 1 : end - 1].partition(b"=")
        if not key or not eq:
            raise CorruptedArchive("damaged pax header: a record has no key")
        if key in _NUMERIC_KEYS and not _NUMBER.fullmatch(value):
            raise CorruptedArchive(
                f"damaged pax header: {key.decode('ascii', 'replace')} "
                f"is {value[:40]!r}, not a number"
            )
        if key.startswith(b"GNU.sparse."):
            raise CorruptedArchive("a sparse file: not supported (only regular files are)")
        if is_global and key in _GLOBAL_REFUSED:
            raise CorruptedArchive(f"a global pax header sets {key.decode()}: not supported")
        records[key] = value
        pos = end
    return records


def pax_size(value: bytes) -> int:
    """A pax ``size`` record: a non-negative decimal integer."""
    if not _DIGITS.fullmatch(value):
        raise CorruptedArchive(f"damaged pax header: size is {value[:40]!r}, not a byte count")
    return int(value)


class Names:
    """The names seen so far in one tarball: a name is one file, or a directory, never both.

    Names are kept as hashes (8 bytes each, not the names): memory stays bounded by the
    member limit. A collision could only refuse an archive, never accept a bad one.
    """

    def __init__(self) -> None:
        self._files: set[int] = set()
        self._dirs: set[int] = set()

    def add(self, parts: list[str], *, is_dir: bool, name: str) -> None:
        key = hash("/".join(parts))
        if key in self._files:
            raise CorruptedArchive(f"member {name!r} appears twice")
        if not is_dir and key in self._dirs:
            raise CorruptedArchive(f"member {name!r} is both a file and a directory")
        for depth in range(len(parts) - 1, 0, -1):  # ancestors, deepest first
            above = hash("/".join(parts[:depth]))
            if above in self._dirs:
                break
            if above in self._files:
                raise CorruptedArchive(
                    f"member {name!r} is below {'/'.join(parts[:depth])!r}, which is a file member"
                )
            self._dirs.add(above)
        (self._dirs if is_dir else self._files).add(key)


class DiskBudget:
    """Free space under ``path``, claimed member by member before each one is written.

    The file system is asked again only when the running estimate falls short, so a
    checkout of many small files costs a few ``statvfs`` calls, not one per file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._bytes = -1
        self._inodes = -1

    def claim(self, rel: str, size: int) -> None:
        """Count ``size`` bytes and one file; ArchiveTooLarge if they do not fit."""
        need = size + FILE_SLACK
        if need > self._bytes or self._inodes == 0:
            self._measure()
            if need > self._bytes:
                raise ArchiveTooLarge(
                    f"no room for {rel!r} ({size:,} bytes) in {self.path}: "
                    f"{max(self._bytes, 0):,} bytes free; free some space or write elsewhere"
                )
            if self._inodes == 0:
                raise ArchiveTooLarge(
                    f"no room for {rel!r} in {self.path}: the file system has no free inodes"
                )
        self._bytes -= need
        if self._inodes > 0:
            self._inodes -= 1

    def _measure(self) -> None:
        path = self.path
        while not path.exists() and path != path.parent:  # not made yet: where it will be
            path = path.parent
        st = os.statvfs(path)
        self._bytes = st.f_bavail * st.f_frsize
        # some file systems (btrfs) report no inode counts at all: no inode limit then
        self._inodes = st.f_favail if st.f_files else -1
