"""The background uploader: one daemon per process."""

from replicate.daemon.daemon import Daemon

__all__ = ["Daemon"]
