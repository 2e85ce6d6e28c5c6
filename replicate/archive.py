"""Files in and out of tarballs (sync, no event loop): ignore rules, snapshots, pack, unpack.

A tarball holds regular files only, each named ``<id>/<path relative to the project dir>``.
"""

from __future__ import annotations

import errno
import fcntl
import os
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol, cast

import pathspec
from isal import isal_zlib

from replicate.errors import CorruptedArchive, ValidationError

DEFAULT_EXCLUDES = frozenset(
    {
        ".replicate",
        ".keepsake",
        ".git",
        ".hg",
        ".svn",
        ".mypy_cache",
        "__pycache__",
        ".pytest_cache",
        ".ruff_cache",
        ".ipynb_checkpoints",
    }
)
IGNORE_FILES = (".replicateignore", ".keepsakeignore")
FICLONE = 0x40049409
#: isal level 1: ~550 MiB/s on incompressible weights here, against ~20 MiB/s for stdlib gzip.
GZIP_LEVEL = 1
CHUNK = 1 << 20
RECORD = 512


class Ignore:
    """The default excludes, extra directories (the repository) and ``.replicateignore``."""

    def __init__(self, project_dir: Path, extra_dirs: Iterable[Path] = ()) -> None:
        self.project_dir = project_dir
        self.extra_dirs = {p.resolve() for p in extra_dirs}
        self.spec: pathspec.GitIgnoreSpec | None = None
        for name in IGNORE_FILES:
            ignore_file = project_dir / name
            if ignore_file.is_file():
                lines = ignore_file.read_text(encoding="utf-8").splitlines()
                self.spec = pathspec.GitIgnoreSpec.from_lines(lines)
                break

    def skip_dir(self, path: Path, rel: str) -> bool:
        if path.name in DEFAULT_EXCLUDES or path in self.extra_dirs:
            return True
        if (path / "pyvenv.cfg").exists():  # a virtualenv
            return True
        return self.spec is not None and self.spec.match_file(rel + "/")

    def skip_file(self, rel: str) -> bool:
        return self.spec is not None and self.spec.match_file(rel)


def relative_path(project_dir: Path, path: str | os.PathLike[str]) -> str:
    """Return ``path`` relative to the project dir, or raise ValidationError if outside it."""
    absolute = (project_dir / path).resolve()
    try:
        rel = absolute.relative_to(project_dir.resolve())
    except ValueError:
        raise ValidationError(
            f"path {str(path)!r} is outside the project directory {project_dir}: "
            "save the file inside it and pass a relative path"
        ) from None
    if not absolute.exists():
        raise ValidationError(
            f"path {str(path)!r} matches nothing in {project_dir}: save the file before calling "
            "checkpoint(), or leave path out for a metrics-only checkpoint"
        )
    return rel.as_posix()


def collect(project_dir: Path, rel: str, ignore: Ignore) -> list[tuple[Path, str]]:
    """List (absolute path, relative path) of the regular files under ``rel``.

    Walks only ``rel`` (a file or a directory), never the rest of the project.
    """
    root = project_dir / rel if rel not in ("", ".") else project_dir
    if root.is_file():
        return [(root, rel)]
    found: list[tuple[Path, str]] = []
    base = project_dir.resolve()
    stack = [root.resolve()]
    while stack:
        directory = stack.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                path = Path(entry.path)
                entry_rel = path.relative_to(base).as_posix()
                if entry.is_dir(follow_symlinks=False):
                    if not ignore.skip_dir(path, entry_rel):
                        stack.append(path)
                elif entry.is_file(follow_symlinks=True) and not ignore.skip_file(entry_rel):
                    found.append((path, entry_rel))
    found.sort(key=lambda item: item[1])
    return found


def snapshot(files: list[tuple[Path, str]], dest: Path) -> dict[str, int]:
    """Copy ``files`` into ``dest`` under their relative paths; return their sizes.

    Synchronous on purpose: later overwrites of the originals must not leak in.
    """
    sizes: dict[str, int] = {}
    made: set[Path] = set()
    for source, rel in files:
        target = dest / rel
        parent = target.parent
        if parent not in made:
            parent.mkdir(parents=True, exist_ok=True)
            made.add(parent)
        _clone_or_copy(source, target)
        sizes[rel] = target.stat().st_size
    return sizes


def _clone_or_copy(source: Path, dest: Path) -> None:
    src_fd = os.open(source, os.O_RDONLY)
    try:
        dst_fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            try:
                fcntl.ioctl(dst_fd, FICLONE, src_fd)
                return
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EXDEV, errno.EINVAL, errno.ENOTTY):
                    raise
            remaining = os.fstat(src_fd).st_size
            offset = 0
            while remaining > 0:
                copied = os.copy_file_range(src_fd, dst_fd, remaining, offset, offset)
                if copied == 0:
                    break
                offset += copied
                remaining -= copied
        finally:
            os.close(dst_fd)
    finally:
        os.close(src_fd)


def tar_stream(files: list[tuple[Path, str]], prefix: str) -> Iterator[bytes]:
    """Yield an uncompressed tar of ``files`` as ``<prefix>/<rel>`` members, chunk by chunk."""
    written = 0
    for path, rel in files:
        with open(path, "rb") as f:
            stat = os.fstat(f.fileno())
            size = stat.st_size
            info = tarfile.TarInfo(f"{prefix}/{rel}")
            info.size = size
            info.mode = 0o644
            info.mtime = int(stat.st_mtime)
            header = info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")
            yield header
            written += len(header)
            remaining = size
            while remaining > 0:
                chunk = f.read(min(CHUNK, remaining))
                if not chunk:
                    raise CorruptedArchive(f"{rel} shrank while it was being packed")
                remaining -= len(chunk)
                yield chunk
            padding = -size % RECORD
            written += size + padding
            if padding:
                yield b"\0" * padding
    end = 2 * RECORD
    written += end
    yield b"\0" * (end + (-written % tarfile.RECORDSIZE))


def snapshot_tar(files: list[tuple[Path, str]], prefix: str, dest: Path) -> int:
    """Snapshot many files into one uncompressed tar at ``dest``; return its size.

    One new file instead of one per source file: creating files is what costs most here
    (10,000 small files: ~87 ms as one tar against seconds as copies).
    """
    with open(dest, "wb", buffering=CHUNK) as out:
        out.writelines(tar_stream(files, prefix))
        return out.tell()


def file_stream(path: Path) -> Iterator[bytes]:
    """Yield a file's bytes in chunks."""
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


class Packer:
    """Gzips a raw tar stream, one bounded chunk at a time.

    ``read()`` does the CPU work (tar framing, isal gzip); call it off the event loop.
    """

    def __init__(self, raw: Iterator[bytes]) -> None:
        self._raw = raw
        self._gzip = isal_zlib.compressobj(GZIP_LEVEL, isal_zlib.DEFLATED, 31)
        self._done = False

    def read(self, target: int = CHUNK) -> bytes:
        """Return the next compressed bytes (about ``target``), or b"" at the end."""
        if self._done:
            return b""
        out: list[bytes] = []
        produced = 0
        for raw in self._raw:
            compressed = self._gzip.compress(raw)
            if compressed:
                out.append(compressed)
                produced += len(compressed)
            if produced >= target:
                return b"".join(out)
        out.append(self._gzip.flush())
        self._done = True
        return b"".join(out)


# ---- reading tarballs back: push-based, so chunks can come straight from storage ---------------

#: Decompressed bytes handled per step: bounds memory whatever the compression ratio.
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
