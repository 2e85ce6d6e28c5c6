"""The durable job queue on local disk, shared by every process of one project.

::

    .replicate/spool/
      owners/<owner>.lock      POSIX-locked by its live process for its whole life
      jobs/<job-id>.json       the manifest, fsync'd before checkpoint() returns
      jobs/<job-id>.error      the last error of a failed attempt
      data/<job-id>/           the snapshot of the files (page cache; fsync only if asked)

Job ids sort in submission order. Staged data without a manifest is an unfinished hand-over
(or a crash before the manifest landed) and is never uploaded. POSIX record locks (``lockf``) are per process and are not inherited
by forked children, so a lock that can be taken means its owner is dead.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from replicate.daemon.jobs import Job

#: Owner locks this process holds, by lock path. Closing any other fd of a locked file would
#: drop the lock (lockf semantics), so a held lock file is never opened again here.
_held: dict[Path, int] = {}


def new_job_id() -> str:
    return f"{time.time_ns():020d}-{secrets.token_hex(4)}"


def new_owner() -> str:
    return f"{os.getpid()}-{secrets.token_hex(4)}"


def owner_pid(owner: str) -> int:
    return int(owner.split("-", 1)[0])


@dataclass(frozen=True, slots=True)
class JobError:
    message: str
    permanent: bool
    attempts: int
    time: float


@dataclass(frozen=True, slots=True)
class JobState:
    """What ``replicate queue`` shows of a job."""

    job: Job
    error: JobError | None
    owner_alive: bool
    age: float


class Spool:
    """One project's spool directory."""

    def __init__(self, root: Path, *, fsync_data: bool = False) -> None:
        self.root = root
        self.jobs_dir = root / "jobs"
        self.data_dir = root / "data"
        self.owners_dir = root / "owners"
        self.fsync_data = fsync_data
        self._ensured = False

    def ensure(self) -> None:
        if not self._ensured:
            self.jobs_dir.mkdir(parents=True, exist_ok=True)
            self.owners_dir.mkdir(parents=True, exist_ok=True)
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
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        _held[path] = fd
        return True

    def release_owner(self, owner: str, *, forget: bool) -> None:
        """Drop ``owner``'s lock; with ``forget``, remove its lock file too."""
        path = self._lock_path(owner)
        fd = _held.pop(path, None)
        if forget:
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
        path.mkdir(parents=True)
        return path

    def commit(self, job: Job) -> None:
        """Persist the manifest: the job exists once this returns (and not before)."""
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
        self.ensure()
        tmp = self.jobs_dir / f".{job.id}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, job.to_manifest())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, job.manifest_path)

    def staging_tar(self, job_id: str) -> Path:
        """Where ``job_id``'s snapshot goes when it is staged as one tar."""
        self.ensure()
        self.data_dir.mkdir(exist_ok=True)
        return self.data_dir / f"{job_id}.tar"

    def discard(self, job_id: str) -> None:
        """Drop the staged files of a job that was never committed."""
        shutil.rmtree(self.data_dir / job_id, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            (self.data_dir / f"{job_id}.tar").unlink()

    def remove(self, job: Job) -> None:
        """Forget a job whose commit landed: the manifest first, so a crash leaves no job."""
        with contextlib.suppress(FileNotFoundError):
            job.manifest_path.unlink()
        with contextlib.suppress(FileNotFoundError):
            job.error_path.unlink()
        if job.staged_tar is not None:
            with contextlib.suppress(FileNotFoundError):
                job.staged_tar_path.unlink()
        else:
            shutil.rmtree(job.files_dir, ignore_errors=True)

    def load(self, path: Path) -> Job | None:
        try:
            return Job.from_manifest(path.read_bytes(), self.root)
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None

    def jobs(self) -> list[Job]:
        """Every committed job, in submission order."""
        try:
            names = sorted(os.listdir(self.jobs_dir))
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            if name.endswith(".json") and not name.startswith("."):
                job = self.load(self.jobs_dir / name)
                if job is not None:
                    found.append(job)
        return found

    def record_error(self, job: Job, error: JobError) -> None:
        body: dict[str, Any] = {
            "message": error.message,
            "permanent": error.permanent,
            "attempts": error.attempts,
            "time": error.time,
        }
        job.error_path.write_text(json.dumps(body))

    def clear_error(self, job: Job) -> None:
        with contextlib.suppress(FileNotFoundError):
            job.error_path.unlink()

    def error(self, job: Job) -> JobError | None:
        try:
            body = json.loads(job.error_path.read_text())
            return JobError(body["message"], body["permanent"], body["attempts"], body["time"])
        except (FileNotFoundError, ValueError, KeyError):
            return None

    def states(self) -> list[JobState]:
        now = time.time()
        alive: dict[str, bool] = {}
        states = []
        for job in self.jobs():
            if job.owner not in alive:
                alive[job.owner] = self.owner_alive(job.owner)
            created = int(job.id.split("-", 1)[0]) / 1e9
            states.append(JobState(job, self.error(job), alive[job.owner], now - created))
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
