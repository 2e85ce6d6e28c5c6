"""An experiment's history as segments: the first run, then one per resume after a crash."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from replicate.records import ExperimentRecord
from replicate.values import parse_time


@dataclass(frozen=True, slots=True)
class Segment:
    """One process's stretch of an experiment: when it began, where, and the steps it saved."""

    started: datetime
    host: str
    resumed: bool
    first_step: int | None
    last_step: int | None
    #: a new code snapshot taken when this segment began (its tarball's id), if the code changed
    code: str | None = None


def segments(record: ExperimentRecord) -> list[Segment]:
    """The first run and each resume (from the ``resumes`` field), with the steps each covered.

    A checkpoint belongs to the segment during which it was created.
    """
    starts: list[tuple[datetime, str, bool, str | None]] = [
        (record.created, record.host, False, None)
    ]
    for entry in record.extra.get("resumes", []):
        try:
            starts.append(
                (parse_time(entry["created"]), str(entry.get("host", "")), True, entry.get("code"))
            )
        except (KeyError, TypeError, ValueError):
            continue  # written by someone else and unreadable: skip that entry
    starts.sort(key=lambda s: s[0])
    found = []
    for i, (started, host, resumed, code) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else None
        steps = [
            c.step
            for c in record.checkpoints
            if c.step is not None and c.created >= started and (end is None or c.created < end)
        ]
        found.append(
            Segment(
                started,
                host,
                resumed,
                min(steps) if steps else None,
                max(steps) if steps else None,
                code if isinstance(code, str) else None,
            )
        )
    return found
