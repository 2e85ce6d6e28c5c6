"""Tarballs back out (sync, no event loop): a push-based gzip + tar decoder and its sinks.

Chunks of any size go in (as they stream from storage); members come out to a sink, with the
first path component (``<id>/``) stripped. Truncation, damage and unsafe names raise
CorruptedArchive.

Only regular files and directories may be members; links, devices, fifos, sparse files, a
name held twice, and a name held both as a file and as a directory are refused, as are header
fields the format does not allow (see :mod:`replicate.members`).
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO, Protocol, cast

from isal import isal_zlib

from replicate.archive import CHUNK, RECORD
from replicate.errors import ArchiveTooLarge, CorruptedArchive
from replicate.members import (
    MAX_NAME,
    MAX_PAX,
    DiskBudget,
    Limits,
    Names,
    member_path,
    pax_records,
    pax_size,
)

__all__ = ["ExtractTo", "Limits", "MemberSink", "OneMember", "Unpacker", "member_path"]

INFLATE_STEP = 4 * CHUNK
_ZERO_BLOCK = bytes(RECORD)
#: isal_zlib.error is a class; its stub declares an instance.
_INFLATE_ERROR = cast("type[Exception]", isal_zlib.error)
#: Members holding file data. CONTTYPE is a regular file to every reader.
_FILE_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)
_META_TYPES = (tarfile.GNUTYPE_LONGNAME, tarfile.XHDTYPE, tarfile.XGLTYPE)
#: What other member types are, for messages.
_KINDS = {
    tarfile.SYMTYPE: "a symlink",
    tarfile.LNKTYPE: "a hard link",
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a fifo",
    tarfile.GNUTYPE_SPARSE: "a sparse file",
    tarfile.GNUTYPE_LONGLINK: "a long link name",
}


class MemberSink(Protocol):
    """**Protocol**: where an :class:`Unpacker` puts the regular files it reads."""

    def begin(self, rel: str, size: int, mode: int) -> BinaryIO | None:
        """Return a file to write member ``rel`` (first component stripped) into, or None."""
        ...

    def end(self, rel: str, file: BinaryIO) -> bool:
        """Member ``rel`` is complete in ``file``; return True when nothing more is wanted."""
        ...


class Unpacker:
    """Reads a tar.gz fed in chunks of any size and hands its regular files to a sink.

    Sync and CPU-bound (inflate with isal, write files): call :meth:`feed` off the event loop.
    Members are named ``<id>/<path>``; the sink sees ``<path>``. A truncated or damaged
    stream raises CorruptedArchive, at the latest from :meth:`close`.
    """

    def __init__(
        self,
        sink: MemberSink,
        label: str,
        *,
        on_name: Callable[[str], None] | None = None,
        limits: Limits | None = None,
    ) -> None:
        """``on_name`` sees each regular member's full name (the sink sees it stripped)."""
        self._sink = sink
        self._limits = limits or Limits()
        self._names = Names()
        self._headers = 0
        self._total = 0
        self._label = label
        self._on_name = on_name
        self._inflate = isal_zlib.decompressobj(31)
        self._header = bytearray()
        self._remaining = 0
        self._padding = 0
        self._file: BinaryIO | None = None
        self._rel = ""
        self._meta: bytearray | None = None
        self._meta_type = b""
        self._long_name: str | None = None
        self._pax: dict[bytes, bytes] = {}
        self._ended = False
        #: True once the sink wanted nothing more; the rest of the stream need not be fed.
        self.done = False

    def feed(self, chunk: bytes) -> bool:
        """Consume compressed bytes; return :attr:`done`."""
        data = chunk
        while not self.done:
            try:
                out = self._inflate.decompress(data, INFLATE_STEP)
            except _INFLATE_ERROR as exc:
                raise CorruptedArchive(f"{self._label} is damaged: {exc}") from exc
            try:
                self._process(out)
            except CorruptedArchive as exc:  # the rules in members.py don't know the label
                if str(exc).startswith(self._label):
                    raise
                raise type(exc)(f"{self._label}: {exc}") from None
            data = self._inflate.unconsumed_tail
            if self._inflate.eof:
                rest = self._inflate.unused_data + data
                if not rest.strip(b"\0"):
                    break
                self._inflate = isal_zlib.decompressobj(31)  # a multi-member gzip file
                data = rest
            elif not data and len(out) < INFLATE_STEP:
                break
        return self.done

    def close(self) -> None:
        """Check the stream ended where it should; CorruptedArchive if it was cut short."""
        if self.done:
            return
        truncated = not self._inflate.eof or self._header or self._remaining or self._padding
        if truncated or self._meta is not None:
            self.abort()
            raise CorruptedArchive(
                f"{self._label} is truncated: the upload was cut short or the object is damaged"
            )

    def abort(self) -> None:
        """Close the member being written, if any."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def _process(self, out: bytes) -> None:
        view = memoryview(out)
        pos, n = 0, len(view)
        while pos < n and not self.done and not self._ended:
            if self._remaining:
                take = min(self._remaining, n - pos)
                piece = view[pos : pos + take]
                if self._file is not None:
                    self._file.write(piece)
                elif self._meta is not None:
                    self._meta += piece
                self._remaining -= take
                pos += take
                if not self._remaining:
                    self._finish_member()
            elif self._padding:
                take = min(self._padding, n - pos)
                self._padding -= take
                pos += take
            else:
                take = min(RECORD - len(self._header), n - pos)
                self._header += view[pos : pos + take]
                pos += take
                if len(self._header) == RECORD:
                    block = bytes(self._header)
                    self._header.clear()
                    self._start_member(block)

    def _start_member(self, block: bytes) -> None:
        if block == _ZERO_BLOCK:
            self._ended = True  # end-of-archive marker
            return
        self._headers += 1
        if self._headers > self._limits.members:
            raise ArchiveTooLarge(
                f"{self._label} holds more than {self._limits.members:,} members: refused"
            )
        try:
            info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        except tarfile.HeaderError as exc:
            raise CorruptedArchive(f"{self._label} is damaged: bad tar header ({exc})") from exc
        kind, size = info.type, info.size
        if kind in _META_TYPES:
            self._start_meta(kind, size)
            return
        if b"size" in self._pax:
            size = pax_size(self._pax[b"size"])
        if size < 0:
            raise CorruptedArchive(f"{self._label} is damaged: a member's size is negative")
        path = self._pax.get(b"path")
        full = path.decode("utf-8", "surrogateescape") if path else self._long_name or info.name
        self._long_name, self._pax = None, {}
        if kind not in _FILE_TYPES and kind != tarfile.DIRTYPE:
            what = _KINDS.get(kind, f"an unknown member type {kind!r}")
            raise CorruptedArchive(
                f"{self._label} holds {what}, {full!r}: only regular files are allowed"
            )
        rel = member_path(full)
        parts = [p for p in full.split("/") if p not in ("", ".")]
        if not parts:
            raise CorruptedArchive(f"{self._label} holds a member with an empty name")
        self._names.add(parts, is_dir=kind == tarfile.DIRTYPE, name=full)
        if kind == tarfile.DIRTYPE:
            size = 0  # a directory's size field means nothing: no data follows it
        self._total += size
        if self._total > self._limits.total_bytes:
            raise ArchiveTooLarge(
                f"{self._label} declares more than {self._limits.total_bytes:,} bytes: refused"
            )
        self._remaining, self._padding = size, -size % RECORD
        if kind != tarfile.DIRTYPE:
            if self._on_name is not None:
                self._on_name(full)
            self._rel = rel or ""
            self._file = self._sink.begin(rel, size, info.mode & 0o777) if rel else None
        if not self._remaining:
            self._finish_member()

    def _start_meta(self, kind: bytes, size: int) -> None:
        """A GNU long name or a pax header: its body is buffered, so its size is bounded."""
        bound = MAX_NAME + 1 if kind == tarfile.GNUTYPE_LONGNAME else MAX_PAX
        if not 0 <= size <= bound:
            raise CorruptedArchive(
                f"{self._label} is damaged: a {size:,}-byte long-name or pax header "
                f"(at most {bound:,} allowed)"
            )
        self._meta, self._meta_type = bytearray(), kind
        self._remaining, self._padding = size, -size % RECORD
        if not self._remaining:
            self._finish_member()

    def _finish_member(self) -> None:
        if self._meta is not None:
            body = bytes(self._meta)
            self._meta = None
            if self._meta_type == tarfile.GNUTYPE_LONGNAME:
                self._long_name = body.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            elif self._meta_type == tarfile.XGLTYPE:
                pax_records(body, is_global=True)  # checked; nothing in it is used
            else:
                self._pax = pax_records(body)
        elif self._file is not None:
            file, self._file = self._file, None
            if self._sink.end(self._rel, file):
                self.done = True


class ExtractTo:
    """A sink writing members under ``dest``; with ``paths``, only those files or directories.

    Files are created private (0600) and new (never through an existing name): their modes
    are applied when they are moved into place. A later archive's member replaces an earlier
    archive's file or directory of the same name (the checkpoint's files win over the code).
    """

    def __init__(self, dest: Path, paths: Iterable[str] | None = None) -> None:
        self.dest = dest
        self.paths = None if paths is None else [p.strip("/") for p in paths]
        #: Relative paths written so far, in order, with the mode bits their member gave.
        self.written: dict[str, int] = {}
        self._budget = DiskBudget(dest)

    def wants(self, rel: str) -> bool:
        if self.paths is None:
            return True
        return any(p in ("", ".") or rel == p or rel.startswith(p + "/") for p in self.paths)

    def begin(self, rel: str, size: int, mode: int) -> BinaryIO | None:
        if not self.wants(rel):
            return None
        self._budget.claim(rel, size)
        target = self.dest / rel
        self._make_room(rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        self.written.pop(rel, None)
        self.written[rel] = mode & 0o777
        return os.fdopen(fd, "wb")

    def end(self, rel: str, file: BinaryIO) -> bool:
        file.close()
        return False

    def _make_room(self, rel: str) -> None:
        """Remove what an earlier archive wrote at ``rel`` or at a file above it."""
        parts = rel.split("/")
        for depth in range(1, len(parts)):
            above = "/".join(parts[:depth])
            if above in self.written:  # a file where a directory is wanted
                (self.dest / above).unlink()
                del self.written[above]
                return
        if rel in self.written:
            (self.dest / rel).unlink()
        elif (self.dest / rel).is_dir():  # a directory where a file is wanted
            shutil.rmtree(self.dest / rel)
            for name in [n for n in self.written if n.startswith(rel + "/")]:
                del self.written[name]


class OneMember:
    """A sink spooling the single member ``rel`` into a new temporary file (``path``)."""

    def __init__(self, rel: str) -> None:
        self.rel = rel.strip("/")
        #: The temporary file holding the member once found; the caller owns (and unlinks) it.
        self.path: Path | None = None
        #: True if members were seen under ``rel/``: it names a directory.
        self.is_directory = False

    def begin(self, rel: str, size: int, mode: int) -> BinaryIO | None:
        if rel != self.rel:
            self.is_directory = self.is_directory or rel.startswith(self.rel + "/")
            return None
        DiskBudget(Path(tempfile.gettempdir())).claim(rel, size)
        fd, name = tempfile.mkstemp(prefix="replicate-open-")
        self.path = Path(name)
        return os.fdopen(fd, "wb")

    def end(self, rel: str, file: BinaryIO) -> bool:
        file.close()
        return True

    def discard(self) -> None:
        """Remove the temporary file, if any (after an error)."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None
