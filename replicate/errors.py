"""Every exception replicate raises on purpose, under one root.

::

    ReplicateError
    ├── ConfigError                    bad replicate.yaml, unknown URL scheme, bad REPLICATE_* value
    │   └── MissingExtra (ImportError) an optional dependency is not installed
    ├── ValidationError (ValueError)   params/metrics not JSON, bad primary_metric, bad path
    ├── RepositoryError
    │   ├── DoesNotExist (LookupError) no experiment/checkpoint matches an id or prefix
    │   ├── AmbiguousID                a prefix matches several; the message lists them
    │   ├── IncompatibleRepository     repository.json is newer than this version understands
    │   ├── CorruptedMetadata          unreadable JSON; carries the key
    │   └── CorruptedArchive           truncated, damaged or unsafe tarball
    │       └── ArchiveTooLarge        more members or bytes than allowed, or than the disk holds
    ├── CheckoutCancelled              the user declined to overwrite files
    ├── StorageError                   a translated backend error; ``__cause__`` is the original
    │   ├── ObjectNotFound
    │   ├── StoragePermissionError     403, AccessDenied, bad credentials
    │   ├── BucketNotFound             the bucket does not exist
    │   └── TransientStorageError      5xx, SlowDown, timeouts, resets: retried, then raised
    ├── DaemonError
    │   ├── DaemonClosed               used after close, or from a forked child
    │   ├── JobFailed                  one job that will not land without help
    │   │   └── NotSaved               a checkpoint the spool had no room for: never queued
    │   └── UploadFailed               jobs that did not land; lists them
    ├── DistributedError               rank 0 of a torch.distributed job could not start the experiment
    └── SeveralErrors                  concurrent work failed in more than one way; lists each
"""

from __future__ import annotations


class ReplicateError(Exception):
    """Base of every error replicate raises on purpose."""


class ConfigError(ReplicateError):
    """Raised when replicate.yaml, the repository URL or the environment is wrong."""


class MissingExtra(ConfigError, ImportError):
    """Raised when an optional dependency (matplotlib, pandas, a framework) is not installed."""


class ValidationError(ReplicateError, ValueError):
    """Raised when an argument to the API is not acceptable (a programming error)."""


class RepositoryError(ReplicateError):
    """Raised when the repository's content is not what it should be."""


class DoesNotExist(RepositoryError, LookupError):
    """Raised when no experiment or checkpoint matches an id or prefix."""


class AmbiguousID(RepositoryError):
    """Raised when an id prefix matches several experiments or checkpoints."""


class IncompatibleRepository(RepositoryError):
    """Raised when repository.json declares a version newer than this one understands."""


class CorruptedMetadata(RepositoryError):
    """Raised when a metadata object cannot be decoded."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"corrupted metadata in {key}: {reason}")
        self.key = key


class CorruptedArchive(RepositoryError):
    """Raised when a tarball is truncated, damaged, unsafe or does not match its checksum."""


class ArchiveTooLarge(CorruptedArchive):
    """Raised when a tarball exceeds the member or size limits, or the free disk space."""


class CheckoutCancelled(ReplicateError):
    """Raised when the user declined to overwrite files during a checkout."""


class StorageError(ReplicateError):
    """Raised when the storage backend fails; ``__cause__`` holds the backend's error."""


class ObjectNotFound(StorageError, LookupError):
    """Raised when a key does not exist."""


class StoragePermissionError(StorageError):
    """Raised when the credentials are missing, wrong or not allowed to do this."""


class BucketNotFound(StorageError):
    """Raised when the bucket named by the repository URL does not exist."""


class TransientStorageError(StorageError):
    """Raised when a retryable error (5xx, throttling, timeout, reset) persists after retries."""


class DaemonError(ReplicateError):
    """Raised by the background uploader."""


class DaemonClosed(DaemonError):
    """Raised when the daemon is used after it closed, or from a forked child process."""


class JobFailed(DaemonError):
    """Raised for one job that will not land without help.

    ``permanent`` means retrying cannot fix it (a missing bucket, a damaged snapshot);
    otherwise the job gave up after its retry deadline and ``replicate wait`` may land it.
    """

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


class NotSaved(JobFailed):
    """A checkpoint that was never queued: its snapshot or its journal line did not fit."""

    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=True)


class UploadFailed(DaemonError):
    """Raised when some jobs did not land; ``failures`` maps job ids to their errors."""

    def __init__(self, message: str, failures: dict[str, str]) -> None:
        super().__init__(message)
        self.failures = failures


class DistributedError(ReplicateError):
    """Raised on every other rank when rank 0 could not start the shared experiment."""


class SeveralErrors(ReplicateError):
    """Raised when concurrent work failed with more than one error; ``errors`` holds each."""

    def __init__(self, errors: list[BaseException]) -> None:
        lines = "; ".join(str(e) or type(e).__name__ for e in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        super().__init__(f"{len(errors)} errors: {lines}{more}")
        self.errors = errors


def collapse(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one error a task group's exception group stands for, cancellations left out.

    A single error is returned as itself (so callers can catch its class); several are kept
    together in SeveralErrors, never dropped.
    """
    found: list[BaseException] = []

    def walk(g: BaseExceptionGroup[BaseException]) -> None:
        for error in g.exceptions:
            if isinstance(error, BaseExceptionGroup):
                walk(error)
            elif not _is_cancellation(error):
                found.append(error)

    walk(group)
    if not found:
        return group.exceptions[0]
    if len(found) == 1:
        return found[0]
    return SeveralErrors(found)


def _is_cancellation(error: BaseException) -> bool:
    import asyncio

    return isinstance(error, asyncio.CancelledError)
