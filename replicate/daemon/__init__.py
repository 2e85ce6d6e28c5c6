"""The background uploader: one daemon per process, and the durable spool it drains.

This is the daemon's public interface; nothing outside ``daemon/`` imports its other modules.
"""

from replicate.daemon.daemon import Daemon
from replicate.daemon.heartbeat import is_running
from replicate.daemon.jobs import Job
from replicate.daemon.spool import JobError, JobState, JobStatus, Spool, job_status, new_job_id
from replicate.daemon.worker import Landed

__all__ = [
    "Daemon",
    "Job",
    "JobError",
    "JobState",
    "JobStatus",
    "Landed",
    "Spool",
    "is_running",
    "job_status",
    "new_job_id",
]
