"""Files into tarballs (sync, no event loop): ignore rules, snapshots, tar + gzip streams.

A tarball holds regular files only, each named ``<id>/<path relative to the project dir>``.
"""

from __future__ import annotations

import errno
import fcntl
import os
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import pathspec

from replicate import console
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
#: Never captured by default (gitignore syntax): secrets have no place in a code snapshot. A
#: ``.replicateignore`` line ``!.env.example`` brings one back.
SECRET_PATTERNS = (
    ".env",
    ".env.*",
    ".envrc",
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    "id_rsa*",
    "id_dsa*",
    "id_ecdsa*",
    "id_ed25519*",
    ".netrc",
    ".pgpass",
    ".pypirc",
    ".npmrc",
    ".git-credentials",
    "*credentials*.json",
    "service-account*.json",
    ".aws/",
    ".ssh/",
    ".gnupg/",
    ".docker/config.json",
    ".kube/config",
)
IGNORE_FILES = (".replicateignore", ".keepsakeignore")
FICLONE = 0x40049409
CHUNK = 1 << 20
RECORD = 512


class Ignore:
    """The default excludes, extra directories (the repository) and ``.replicateignore``."""

    def __init__(self, project_dir: Path, extra_dirs: Iterable[Path] = ()) -> None:
        self.project_dir = project_dir
        self.extra_dirs = {p.resolve() for p in extra_dirs}
        lines = list(SECRET_PATTERNS)
        for name in IGNORE_FILES:
            ignore_file = project_dir / name
            if ignore_file.is_file():
                lines += ignore_file.read_text(encoding="utf-8").splitlines()
                break
        self.spec = pathspec.GitIgnoreSpec.from_lines(lines)

    def skip_dir(self, path: Path, rel: str) -> bool:
        if path.name in DEFAULT_EXCLUDES or path in self.extra_dirs:
            return True
        if (path / "pyvenv.cfg").exists():  # a virtualenv
            return True
        return self.spec.match_file(rel + "/")

    def skip_file(self, rel: str) -> bool:
        return self.spec.match_file(rel)


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
    outside: list[str] = []
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
                elif not entry.is_file(follow_symlinks=True) or ignore.skip_file(entry_rel):
                    continue
                elif entry.is_symlink() and not path.resolve().is_relative_to(base):
                    outside.append(entry_rel)  # never copy what a link points at outside
                else:
                    found.append((path, entry_rel))
    if outside:
        console.once(
            "symlinks-outside",
            f"skipped {len(outside)} symbolic link(s) to files outside the project "
            f"(such as {min(outside)}): copy the file into the project to save it",
        )
    found.sort(key=lambda item: item[1])
    return found


def collect_named(files: dict[str, Path]) -> list[tuple[Path, str]]:
    """List (absolute path, name) of files given by name, from anywhere on disk.

    A directory contributes each regular file under it as ``<name>/<relative path>``; a
    name of ``"."`` puts a directory's files at the top.
    """
    found: list[tuple[Path, str]] = []
    for name, source in files.items():
        clean = name.replace("\\", "/").strip("/")
        parts = clean.split("/")
        if not clean or ".." in parts or (clean != "." and "." in parts):
            raise ValidationError(
                f"file name {name!r} must be a relative path inside the checkpoint"
            )
        if source.is_file():
            if clean == ".":
                raise ValidationError(f"{source} is a file: give it a name, not '.'")
            found.append((source, clean))
        elif source.is_dir():
            prefix = "" if clean == "." else clean + "/"
            found += [
                (path, prefix + path.relative_to(source).as_posix())
                for path in sorted(source.rglob("*"))
                if path.is_file()
            ]
        else:
            raise ValidationError(f"{source} does not exist: save it before checkpointing it")
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


def written(directory: Path) -> dict[str, int]:
    """The sizes of the files already in ``directory`` (written in place: nothing to copy)."""
    return {
        p.relative_to(directory).as_posix(): p.stat().st_size
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def _clone_or_copy(source: Path, dest: Path) -> None:
    src_fd = os.open(source, os.O_RDONLY)
    try:
        dst_fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(dst_fd, os.fstat(src_fd).st_mode & 0o777)  # the user's bits, no wider
            try:
                fcntl.ioctl(dst_fd, FICLONE, src_fd)
                return
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EXDEV, errno.EINVAL, errno.ENOTTY):
                    raise
            _copy_range(src_fd, dst_fd, os.fstat(src_fd).st_size)
        finally:
            os.close(dst_fd)
    finally:
        os.close(src_fd)


def _copy_range(src_fd: int, dst_fd: int, size: int) -> None:
    """copy_file_range where the kernel can; plain reads and writes where it cannot.

    Linux refuses copy_file_range between two filesystems (EXDEV), e.g. when the spool is a
    mount point of its own or a symlink to another disk.
    """
    offset, fast = 0, True
    while offset < size:
        if fast:
            try:
                copied = os.copy_file_range(src_fd, dst_fd, size - offset, offset, offset)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOSYS):
                    raise
                fast = False
                continue
        else:
            chunk = os.pread(src_fd, min(size - offset, 1 << 20), offset)
            copied = os.pwrite(dst_fd, chunk, offset) if chunk else 0
        if copied == 0:
            break
        offset += copied


def tar_stream(files: list[tuple[Path, str]], prefix: str) -> Iterator[bytes]:
    """Yield an uncompressed tar of ``files`` as ``<prefix>/<rel>`` members, chunk by chunk."""
    written = 0
    for path, rel in files:
        with open(path, "rb") as f:
            stat = os.fstat(f.fileno())
            size = stat.st_size
            info = tarfile.TarInfo(f"{prefix}/{rel}")
            info.size = size
            info.mode = stat.st_mode & 0o777
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
