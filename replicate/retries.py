"""The one retry policy: which errors are retried, how long to wait, and when to give up.

Errors are classified where each backend translates them (``map_s3_errors``,
``map_gcs_errors``, the disk backend): only :class:`TransientStorageError` (5xx, SlowDown,
throttling, timeouts, connection resets) is ever retried. Permanent errors (403, a missing
bucket, a damaged snapshot) fail at once. The SDKs' own retries are off, so there are
exactly two levels:

- **A request** (one GET, one PUT, one part of a multipart upload) is retried with
  exponential backoff and full jitter (0.2 s doubling to at most 10 s) until it succeeds or
  its deadline (``REPLICATE_REQUEST_DEADLINE``, 30 s) passes. Every attempt also has connect
  and read timeouts (see the backends), so a stalled endpoint costs at most the deadline; the
  error then names the endpoint and what timed out. Foreground commands (``init()``, ``ls``)
  give up there.
- **A job** (upload a tarball, then commit the JSON that lists it) whose request gave up is
  retried whole, with backoff doubling to at most 60 s, until the job's deadline
  (``REPLICATE_JOB_DEADLINE``, 10 min) passes. It then stays queued, marked failed, and
  ``replicate wait`` lands it later. Nothing is dropped.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import anyio
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    retry_if_exception_type,
    stop_after_delay,
    wait_random_exponential,
)

from replicate.errors import JobFailed, TransientStorageError

T = TypeVar("T")

#: Seconds a request keeps retrying before it gives up (``REPLICATE_REQUEST_DEADLINE``).
REQUEST_DEADLINE = 30.0
#: Seconds a job keeps retrying before it is left for ``replicate wait`` (``REPLICATE_JOB_DEADLINE``).
JOB_DEADLINE = 600.0
#: Per attempt: seconds to open a connection, and seconds of silence while reading.
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """The deadlines of a request and of a job; the rest of the policy is fixed above."""

    request_deadline: float = REQUEST_DEADLINE
    job_deadline: float = JOB_DEADLINE

    @property
    def connect_timeout(self) -> float:
        """Seconds one attempt may take to connect (never more than the request's deadline)."""
        return min(CONNECT_TIMEOUT, max(self.request_deadline, 0.1))

    @property
    def read_timeout(self) -> float:
        """Seconds of silence one attempt allows while reading (at most the deadline)."""
        return min(READ_TIMEOUT, max(self.request_deadline, 0.1))

    @property
    def bound(self) -> float:
        """The most a request can take: its deadline, plus the attempt running then."""
        return self.request_deadline + self.read_timeout + self.connect_timeout

    async def request(self, operation: Callable[[], Awaitable[T]], endpoint: str) -> T:
        """Run one request, retrying transient errors until it succeeds or the deadline passes.

        The error it gives up with names ``endpoint``, where the requests went.
        """
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(TransientStorageError),
            wait=wait_random_exponential(multiplier=0.2, max=10.0),
            stop=stop_after_delay(self.request_deadline),
            sleep=anyio.sleep,
            reraise=True,
        )
        try:
            with anyio.fail_after(self.bound):
                return await retrying(operation)
        except TimeoutError:
            raise TransientStorageError(
                f"no answer from {endpoint} within {self.bound:.0f} s "
                "(is the endpoint right and reachable?)"
            ) from None
        except TransientStorageError as exc:
            if endpoint in str(exc):
                raise
            raise TransientStorageError(
                f"{exc} (endpoint {endpoint}; gave up after {self.request_deadline:.0f} s)"
            ) from exc

    def job(self) -> AsyncRetrying:
        """The retry loop of a whole job: transient JobFailed errors, until the job deadline."""
        return AsyncRetrying(
            retry=retry_if_exception(lambda e: isinstance(e, JobFailed) and not e.permanent),
            wait=wait_random_exponential(multiplier=1.0, max=60.0),
            stop=stop_after_delay(self.job_deadline),
            sleep=anyio.sleep,
            reraise=True,
        )
