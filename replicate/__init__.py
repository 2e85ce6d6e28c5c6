"""Version machine learning experiments and models into your own bucket or disk."""

__version__ = "0.1.0"

from replicate.api import init
from replicate.checkpoint import Checkpoint
from replicate.errors import (
    AmbiguousID,
    ConfigError,
    CorruptedArchive,
    CorruptedMetadata,
    DaemonClosed,
    DaemonError,
    DoesNotExist,
    IncompatibleRepository,
    ReplicateError,
    RepositoryError,
    StorageError,
    UploadFailed,
    ValidationError,
)
from replicate.experiment import Experiment
from replicate.read import experiments

__all__ = [
    "AmbiguousID",
    "Checkpoint",
    "ConfigError",
    "CorruptedArchive",
    "CorruptedMetadata",
    "DaemonClosed",
    "DaemonError",
    "DoesNotExist",
    "Experiment",
    "IncompatibleRepository",
    "ReplicateError",
    "RepositoryError",
    "StorageError",
    "UploadFailed",
    "ValidationError",
    "__version__",
    "experiments",
    "init",
]
