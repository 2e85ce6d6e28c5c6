"""Version machine learning experiments and models into your own bucket or disk."""

__version__ = "0.1.0"

from replicate import maintenance
from replicate.api import init
from replicate.checkpoint import Checkpoint
from replicate.errors import (
    AmbiguousID,
    ArchiveTooLarge,
    BucketNotFound,
    CheckoutCancelled,
    ConfigError,
    CorruptedArchive,
    CorruptedMetadata,
    DaemonClosed,
    DaemonError,
    DistributedError,
    DoesNotExist,
    IncompatibleRepository,
    JobFailed,
    MissingExtra,
    NotSaved,
    ObjectNotFound,
    ReplicateError,
    RepositoryError,
    SeveralErrors,
    StorageError,
    StoragePermissionError,
    TransientStorageError,
    UploadFailed,
    ValidationError,
)
from replicate.experiment import Experiment
from replicate.read import experiments
from replicate.resume import resume_target

__all__ = [
    "AmbiguousID",
    "ArchiveTooLarge",
    "BucketNotFound",
    "CheckoutCancelled",
    "Checkpoint",
    "ConfigError",
    "CorruptedArchive",
    "CorruptedMetadata",
    "DaemonClosed",
    "DaemonError",
    "DistributedError",
    "DoesNotExist",
    "Experiment",
    "IncompatibleRepository",
    "JobFailed",
    "MissingExtra",
    "NotSaved",
    "ObjectNotFound",
    "ReplicateError",
    "RepositoryError",
    "SeveralErrors",
    "StorageError",
    "StoragePermissionError",
    "TransientStorageError",
    "UploadFailed",
    "ValidationError",
    "__version__",
    "experiments",
    "init",
    "maintenance",
    "resume_target",
]
