"""The durable job queue on local disk, shared by every process of one project.

::

    .replicate/spool/
      owners/<owner>.lock       POSIX-locked by its live process for its whole life
      journal/<owner>.jsonl     the owner's journal: a line per job (written before
                                checkpoint() returns, fdatasync'd right after: see
                                flusher.py), per landing and per failed attempt
      data/<job-id>/            the staged snapshot of a checkpoint's files
      data/<job-id>.tar         the staged snapshot of the code, as one tar

A job is pending from its ``job`` line until its ``done`` line. Appending one line to an
open file is the cheapest durable write here (a new file per job costs an inode and a
directory entry: ~3x slower, and slower still as deleted inodes pile up). Staged data
without a ``job`` line is an unfinished hand-over, never uploaded; a torn last line (a
crash mid-append, before checkpoint() returned) is ignored. POSIX record locks (``lockf``)
are per process and not inherited by forked children, so a lock that can be taken means
its owner is dead. The journal is emptied when nothing in it is pending and removed when
its owner lets go of it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from replicate.daemon.flusher import FLUSHER
from replicate.daemon.jobs import Job

#: Owner locks this process holds, by lock path. Closing any other fd of a locked file would
#: drop the lock (lockf semantics), so a held lock file is never opened again here.
_held: dict[Path, int] = {}
#: Open append-only journal fds of this process, by path, and the lock for the table.
_journals: dict[Path, int] = {}
#: Jobs this process committed to a journal and has not yet seen land, by journal path.
_outstanding: dict[Path, int] = {}
_journals_lock = threading.Lock()
#: A journal with nothing pending is emptied once it is bigger than this.
COMPACT_BYTES = 1 << 20


def new_job_id() -> str:
    return f"{time.time_ns():020d}-{secrets.token_hex(4)}"


def new_owner() -> str:
    return f"{os.getpid()}-{secrets.token_hex(4)}"


def owner_pid(owner: str) -> int:
    return int(owner.split("-", 1)[0])


@dataclass(frozen=True, slots=True)
class JobError:
    """The last failed attempt of a job, as its journal records it."""

    message: str
    #: retrying cannot fix it
    permanent: bool
    attempts: int
    time: float
    #: its process gave up on it (permanent, or past the job deadline): only
    #: ``replicate wait`` tries it again
    final: bool = False


#: Where a job is. ``uploading``: its live process is on it. ``retrying``: its live process
#: is retrying it after an error. ``queued``: its process is gone and ``replicate wait``
#: will land it. ``failed``: given up on (see its error); ``replicate wait`` retries it.
#: ``landed``: it is in the repository and no longer in the spool.
JobStatus = Literal["uploading", "retrying", "queued", "failed", "landed"]


def job_status(error: JobError | None, owner_alive: bool) -> JobStatus:
    """The one rule for a pending job's status; every command and view uses it."""
    if error is not None and (error.permanent or error.final):
        return "failed"
    if not owner_alive:
        return "queued"
    return "uploading" if error is None else "retrying"


@dataclass(frozen=True, slots=True)
class JobState:
    """A pending job, its last error, whether its process lives, and its age in seconds."""

    job: Job
    error: JobError | None
    owner_alive: bool
    age: float

    @property
    def status(self) -> JobStatus:
        return job_status(self.error, self.owner_alive)


class Spool:
    """One project's spool directory."""

    def __init__(self, root: Path, *, fsync_data: bool = False) -> None:
        self.root = root
        self.journal_dir = root / "journal"
        self.data_dir = root / "data"
        self.owners_dir = root / "owners"
        self.fsync_data = fsync_data
        self._ensured = False

    def ensure(self) -> None:
        if not self._ensured:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            if self.root.stat().st_mode & 0o077 and self.root.stat().st_uid == os.getuid():
                os.chmod(self.root, 0o700)  # made before spools were private: tighten it
            self.journal_dir.mkdir(parents=True, exist_ok=True)
            self.owners_dir.mkdir(parents=True, exist_ok=True)
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._ensured = True

    # ---- owners ----------------------------------------------------------------------------

    def _lock_path(self, owner: str) -> Path:
        return self.owners_dir / f"{owner}.lock"

    def lock_owner(self, owner: str) -> bool:
        """Take ``owner``'s lock for this process; False if another live process holds it."""
        self.ensure()
        path = self._lock_path(owner)
        if path in _held:
            return True
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        _held[path] = fd
        return True

    def take_over(self, owner: str) -> bool:
        """Take a dead owner's lock to drain its jobs; False if it lives or is gone.

        Gone: another drain landed its jobs and removed its journal and lock file while we
        looked. The lock file this call just created again is removed: it guards nothing.
        """
        if not self.lock_owner(owner):
            return False
        if self._journal_path(owner).exists():
            return True
        self.release_owner(owner, forget=True)
        return False

    def release_owner(self, owner: str, *, forget: bool) -> None:
        """Drop ``owner``'s lock; with ``forget``, remove its lock file too."""
        path = self._lock_path(owner)
        fd = _held.pop(path, None)
        if forget:
            journal = self._journal_path(owner)
            with _journals_lock:
                journal_fd = _journals.pop(journal, None)
                if journal_fd is not None:
                    os.close(journal_fd)
            with contextlib.suppress(FileNotFoundError):
                journal.unlink()
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        if fd is not None:
            os.close(fd)

    def owner_alive(self, owner: str) -> bool:
        """True if another live process holds ``owner``'s lock, or this process is ``owner``."""
        path = self._lock_path(owner)
        if path in _held:
            return owner_pid(owner) == os.getpid()
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)
        return False

    # ---- jobs ------------------------------------------------------------------------------

    def staging_dir(self, job_id: str) -> Path:
        """Create and return the directory where ``job_id``'s files are staged."""
        self.ensure()
        path = self.data_dir / job_id
        path.mkdir()
        return path

    def staging_tar(self, job_id: str) -> Path:
        """Where ``job_id``'s snapshot goes when it is staged as one tar."""
        self.ensure()
        return self.data_dir / f"{job_id}.tar"

    # ---- the journal -----------------------------------------------------------------------

    def _journal_path(self, owner: str) -> Path:
        return self.journal_dir / f"{owner}.jsonl"

    def _append(self, owner: str, entry: dict[str, Any], *, durable: bool) -> None:
        """Append one whole line, or nothing: a failed write (disk full) is cut off again.

        One journal belongs to one process, and its lines are appended under one lock, so a
        torn line can never have a later one glued onto it.
        """
        line = json.dumps(entry, separators=(",", ":")).encode() + b"\n"
        path = self._journal_path(owner)
        with _journals_lock:
            fd = _journals.get(path)
            if fd is None:
                self.ensure()
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
                _journals[path] = fd
            start = os.fstat(fd).st_size
            try:
                view = memoryview(line)
                while view:  # a short write is not an error: write the rest
                    view = view[os.write(fd, view) :]
                if durable:
                    os.fdatasync(fd)
            except OSError:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, start)
                raise

    def commit(self, job: Job) -> None:
        """Persist the job: it exists once this returns (and not before)."""
        if self.fsync_data:  # opt-in: survive a machine crash too, at the price of a flush
            staged = (
                [job.staged_tar_path]
                if job.staged_tar is not None
                else [job.files_dir / rel for rel in job.files]
            )
            for path in staged:
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        path = self._journal_path(job.owner)
        with _journals_lock:  # counted before it is written: compaction never races it
            _outstanding[path] = _outstanding.get(path, 0) + 1
        try:
            self._append(job.owner, {"job": job.to_manifest()}, durable=self.fsync_data)
            if not self.fsync_data:
                self._flush_soon(path)
        except BaseException:
            with _journals_lock:
                _outstanding[path] -= 1
            raise

    def _flush_soon(self, path: Path) -> None:
        with _journals_lock:
            fd = _journals[path]
            if not FLUSHER.schedule(str(path), fd):
                os.fdatasync(fd)

    def discard(self, job_id: str) -> None:
        """Drop the staged files of a job that was never committed."""
        shutil.rmtree(self.data_dir / job_id, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            (self.data_dir / f"{job_id}.tar").unlink()

    def remove(self, job: Job) -> None:
        """Forget a job whose commit landed: the ``done`` line first, then its staged data.

        When nothing this process committed to the journal is left pending (failed jobs
        count as pending), a big journal is emptied.
        """
        self._append(job.owner, {"done": job.id}, durable=False)
        self.discard(job.id)
        path = self._journal_path(job.owner)
        with _journals_lock:
            if path not in _outstanding:
                return  # a job taken over from a dead owner: its journal goes at release
            _outstanding[path] -= 1
            fd = _journals.get(path)
            if _outstanding[path] == 0 and fd is not None and os.fstat(fd).st_size > COMPACT_BYTES:
                os.ftruncate(fd, 0)

    def record_error(self, job: Job, error: JobError) -> None:
        entry = {
            "error": job.id,
            "message": error.message,
            "permanent": error.permanent,
            "attempts": error.attempts,
            "time": error.time,
            "final": error.final,
        }
        self._append(job.owner, entry, durable=False)

    def clear_error(self, job: Job) -> None:
        self._append(job.owner, {"retry": job.id}, durable=False)

    def _read(self) -> dict[str, tuple[Job, JobError | None]]:
        """Replay every journal: pending job id -> (job, its last error)."""
        try:
            names = sorted(os.listdir(self.journal_dir))
        except FileNotFoundError:
            return {}
        pending: dict[str, tuple[Job, JobError | None]] = {}
        for name in names:
            if not name.endswith(".jsonl"):
                continue
            try:
                lines = (self.journal_dir / name).read_bytes().splitlines()
            except FileNotFoundError:
                continue
            for line in lines:
                try:
                    entry = json.loads(line)
                    if "job" in entry:
                        job = Job.from_manifest(entry["job"], self.root)
                        pending[job.id] = (job, None)
                    elif "done" in entry:
                        pending.pop(entry["done"], None)
                    elif "error" in entry and entry["error"] in pending:
                        error = JobError(
                            entry["message"],
                            entry["permanent"],
                            entry["attempts"],
                            entry["time"],
                            bool(entry.get("final", False)),
                        )
                        pending[entry["error"]] = (pending[entry["error"]][0], error)
                    elif "retry" in entry and entry["retry"] in pending:
                        pending[entry["retry"]] = (pending[entry["retry"]][0], None)
                except (ValueError, KeyError, TypeError):
                    continue  # a torn last line: its checkpoint() never returned
        return dict(sorted(pending.items()))

    def jobs(self) -> list[Job]:
        """Every pending job of every owner, in submission order."""
        return [job for job, _ in self._read().values()]

    def error(self, job: Job) -> JobError | None:
        """The last error of a pending job, if its last attempt failed."""
        found = self._read().get(job.id)
        return None if found is None else found[1]

    def states(self) -> list[JobState]:
        now = time.time()
        alive: dict[str, bool] = {}
        states = []
        for job, error in self._read().values():
            if job.owner not in alive:
                alive[job.owner] = self.owner_alive(job.owner)
            created = int(job.id.split("-", 1)[0]) / 1e9
            states.append(JobState(job, error, alive[job.owner], now - created))
        return states

    def verify_snapshot(self, job: Job) -> str | None:
        """Return why the staged files differ from what was recorded, or None if they match."""
        if job.staged_tar is not None:
            try:
                actual = job.staged_tar_path.stat().st_size
            except FileNotFoundError:
                return "the staged snapshot is missing (machine crash before it reached disk?)"
            if actual != job.staged_tar:
                return (
                    f"the staged snapshot is {actual} bytes, {job.staged_tar} were recorded "
                    "(machine crash before it reached disk?)"
                )
            return None
        for rel, size in job.files.items():
            try:
                actual = (job.files_dir / rel).stat().st_size
            except FileNotFoundError:
                return f"staged file {rel} is missing (machine crash before it reached disk?)"
            if actual != size:
                return (
                    f"staged file {rel} is {actual} bytes, {size} were recorded "
                    "(machine crash before it reached disk?)"
                )
        return None
