"""Maintenance of a repository and of the local upload queue: verify, remove, gc and drain.

The Python API of what ``replicate verify``, ``rm``, ``gc``, ``queue`` and ``wait`` do; the
commands are thin over it, and so is anything else that needs it (a web page, a scheduler's
script)::

    from replicate import maintenance

    report = maintenance.verify()                 # everything, or ids=["abc1234"]
    plan = maintenance.plan_removal(["abc1234"])  # refuses running experiments
    maintenance.remove(plan)
    plan = maintenance.plan_gc(keep_best=1, keep_last=1)
    result = maintenance.drain(timeout=600)       # what `replicate wait` does
"""

from replicate.maintenance.drain import DrainResult, drain, queue_states
from replicate.maintenance.problems import Problem, Report
from replicate.maintenance.remove import Removal, plan_gc, plan_removal, remove
from replicate.maintenance.verify import verify

__all__ = [
    "DrainResult",
    "Problem",
    "Removal",
    "Report",
    "drain",
    "plan_gc",
    "plan_removal",
    "queue_states",
    "remove",
    "verify",
]
