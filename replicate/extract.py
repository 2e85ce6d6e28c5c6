"""Tarballs back out (sync, no event loop): a push-based gzip + tar decoder and its sinks.

Chunks of any size go in (as they stream from storage); members come out to a sink, with the
first path component (``<id>/``) stripped. Truncation, damage and unsafe names raise
CorruptedArchive.
"""

from __future__ import annotations

import os
import tarfile
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO, Protocol, cast

from isal import isal_zlib

from replicate.archive import CHUNK, RECORD
from replicate.errors import CorruptedArchive

INFLATE_STEP = 4 * CHUNK
_ZERO_BLOCK = bytes(RECORD)
#: isal_zlib.error is a class; its stub declares an instance.
_INFLATE_ERROR = cast("type[Exception]", isal_zlib.error)


class MemberSink(Protocol):
    """**Protocol**: where an :class:`Unpacker` puts the regular files it reads."""

    def begin(self, rel: str, size: int, mode: int) -> BinaryIO | None:
        """Return a file to write member ``rel`` (first component stripped) into, or None."""
        ...

    def end(self, rel: str, file: BinaryIO) -> bool:
        """Member ``rel`` is complete in ``file``; return True when nothing more is wanted."""
        ...


def member_path(name: str) -> str | None:
    """``<id>/a/b`` → ``a/b`` (the first component stripped); None for a bare top-level name.

    Raises CorruptedArchive for names that would escape the target directory.
    """
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if name.startswith("/") or ".." in parts:
        raise CorruptedArchive(f"unsafe member name {name!r} in the tarball")
    return "/".join(parts[1:]) if len(parts) > 1 else None


def _pax_records(body: bytes) -> dict[bytes, bytes]:
    records: dict[bytes, bytes] = {}
    pos = 0
    while pos < len(body) and body[pos : pos + 1] != b"\0":
        space = body.find(b" ", pos)
        try:
            length = int(body[pos:space])
        except ValueError:
            raise CorruptedArchive("damaged pax header in the tarball") from None
        key, _, value = body[space + 1 : pos + length - 1].partition(b"=")
        records[key] = value
        pos += length
    return records


class Unpacker:
    """Reads a tar.gz fed in chunks of any size and hands its regular files to a sink.

    Sync and CPU-bound (inflate with isal, write files): call :meth:`feed` off the event loop.
    Members are named ``<id>/<path>``; the sink sees ``<path>``. A truncated or damaged
    stream raises CorruptedArchive, at the latest from :meth:`close`.
    """

    def __init__(
        self, sink: MemberSink, label: str, *, on_name: Callable[[str], None] | None = None
    ) -> None:
        """``on_name`` sees each regular member's full name (the sink sees it stripped)."""
        self._sink = sink
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
            self._process(out)
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
        try:
            info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        except tarfile.HeaderError as exc:
            raise CorruptedArchive(f"{self._label} is damaged: bad tar header ({exc})") from exc
        kind = info.type
        size = info.size
        if kind in tarfile.REGULAR_TYPES and b"size" in self._pax:
            size = int(self._pax[b"size"])
        self._remaining, self._padding = size, -size % RECORD
        if kind in (tarfile.GNUTYPE_LONGNAME, tarfile.XHDTYPE):
            self._meta, self._meta_type = bytearray(), kind
        elif kind in tarfile.REGULAR_TYPES:
            path = self._pax.get(b"path")
            name = path.decode("utf-8", "surrogateescape") if path else None
            full = name or self._long_name or info.name
            if self._on_name is not None:
                self._on_name(full)
            rel = member_path(full)
            self._rel = rel or ""
            self._file = self._sink.begin(rel, size, info.mode) if rel else None
        if kind not in (tarfile.GNUTYPE_LONGNAME, tarfile.XHDTYPE, tarfile.XGLTYPE):
            self._long_name, self._pax = None, {}
        if not self._remaining:
            self._finish_member()

    def _finish_member(self) -> None:
        if self._meta is not None:
            body = bytes(self._meta)
            self._meta = None
            if self._meta_type == tarfile.GNUTYPE_LONGNAME:
                self._long_name = body.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            else:
                self._pax = _pax_records(body)
        elif self._file is not None:
            file, self._file = self._file, None
            if self._sink.end(self._rel, file):
                self.done = True


class ExtractTo:
    """A sink writing members under ``dest``; with ``paths``, only those files or directories."""

    def __init__(self, dest: Path, paths: Iterable[str] | None = None) -> None:
        self.dest = dest
        self.paths = None if paths is None else [p.strip("/") for p in paths]
        #: Relative paths written so far, in order, without duplicates.
        self.written: dict[str, int] = {}

    def wants(self, rel: str) -> bool:
        if self.paths is None:
            return True
        return any(p in ("", ".") or rel == p or rel.startswith(p + "/") for p in self.paths)

    def begin(self, rel: str, size: int, mode: int) -> BinaryIO | None:
        if not self.wants(rel):
            return None
        target = self.dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        file = open(target, "wb")  # noqa: SIM115 - closed in end() or Unpacker.abort()
        if mode & 0o111:
            os.chmod(target, 0o755)
        return file

    def end(self, rel: str, file: BinaryIO) -> bool:
        file.close()
        self.written[rel] = self.written.get(rel, 0) + 1
        return False


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
