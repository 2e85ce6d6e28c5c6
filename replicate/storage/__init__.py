"""Storage backends behind one async protocol; ``open_storage(url)`` picks one by scheme."""

from __future__ import annotations

from urllib.parse import urlparse

from replicate.errors import ConfigError
from replicate.retries import RetryPolicy
from replicate.storage.base import Storage

__all__ = ["Storage", "open_storage"]


def open_storage(url: str, *, policy: RetryPolicy | None = None, fsync: bool = False) -> Storage:
    """Return an unopened Storage for an absolute repository URL.

    ``file:///abs/path``, ``s3://bucket/prefix`` or ``gs://bucket/prefix``. Use it as
    ``async with open_storage(url) as storage:`` inside the loop that will use it. ``policy``
    sets the request deadline of the bucket stores; ``fsync`` makes disk writes durable.
    """
    parsed = urlparse(url)
    if parsed.scheme == "file":
        from replicate.storage.disk import DiskStorage

        return DiskStorage(url, fsync=fsync)
    if parsed.scheme == "s3":
        from replicate.storage.s3 import S3Storage

        return S3Storage(url, policy=policy)
    if parsed.scheme == "gs":
        from replicate.storage.gcs import GCSStorage

        return GCSStorage(url, policy=policy)
    raise ConfigError(
        f"unknown repository URL scheme {parsed.scheme!r} in {url!r}: "
        "use file://path, s3://bucket/prefix or gs://bucket/prefix"
    )
