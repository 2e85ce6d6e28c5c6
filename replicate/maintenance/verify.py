"""Re-checking a repository (``replicate verify``): metadata decodes, every tarball is whole.

Every experiment's metadata must decode, and every tarball it names must exist and stream
through the full gzip and tar decode with its members under its id. Checkpoints still in
the project's upload queue are reported as still uploading.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from replicate.config import Config, load_config
from replicate.daemon import Daemon
from replicate.errors import (
    CorruptedMetadata,
    ReplicateError,
)
from replicate.ids import resolve_prefix, short_id
from replicate.maintenance.problems import (
    Problem,
    Report,
    Target,
    checkpoint_label,
    experiment_label,
    still_uploading,
)
from replicate.maintenance.tarballs import check_tarballs
from replicate.parts import deletable_ids, part_ranks
from replicate.read.source import Queued, Source, corrupted_id, queued
from replicate.records import ExperimentRecord
from replicate.repository import (
    VERSION_KEY,
    Repository,
)

T = TypeVar("T")

# ---- which objects to check ----------------------------------------------------------------


@dataclass
class Selection:
    """What the id prefixes name; everything when no prefix was given."""

    everything: bool = True
    #: experiment id -> None (all of it) or the checkpoint ids named in it
    parts: dict[str, set[str] | None] = field(default_factory=dict)

    def experiment(self, id: str) -> bool:
        return self.everything or id in self.parts

    def checkpoint(self, experiment_id: str, checkpoint_id: str) -> bool:
        if self.everything:
            return True
        if experiment_id not in self.parts:
            return False
        named = self.parts[experiment_id]
        return named is None or checkpoint_id in named

    def whole(self, experiment_id: str) -> bool:
        return self.everything or self.parts.get(experiment_id, set()) is None


def select(
    prefixes: Sequence[str],
    records: Sequence[ExperimentRecord],
    corrupted: Sequence[CorruptedMetadata],
    pending: Queued,
    url: str,
) -> Selection:
    """Resolve each prefix to one experiment or checkpoint (in the repository or queued)."""
    selection = Selection(everything=not prefixes)
    # id -> (experiment id, True if the id is an experiment's, description for ambiguity)
    known: dict[str, tuple[str, bool, str]] = {}
    for record in records:
        known[record.id] = (record.id, True, f"experiment {record.id[:12]}")
        for c in record.checkpoints:
            known[c.id] = (record.id, False, f"checkpoint {c.id[:12]} of {short_id(record.id)}")
    for exc in corrupted:
        id = corrupted_id(exc)
        known[id] = (id, True, f"experiment {id[:12]} (unreadable)")
    for id in pending.experiments:
        known.setdefault(id, (id, True, f"experiment {id[:12]} (queued)"))
    for experiment_id, queued_checkpoints in pending.checkpoints.items():
        for c, _ in queued_checkpoints:
            known.setdefault(
                c.id, (experiment_id, False, f"checkpoint {c.id[:12]} of {short_id(experiment_id)}")
            )
    for prefix in prefixes:
        id, (experiment_id, is_experiment, _) = resolve_prefix(
            prefix, known, lambda _, entry: entry[2], where=url
        )
        if is_experiment:
            selection.parts[experiment_id] = None
        else:
            named = selection.parts.setdefault(experiment_id, set())
            if named is not None:
                named.add(id)
    return selection


# ---- the whole check -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Listing:
    records: list[ExperimentRecord]
    corrupted: list[CorruptedMetadata]
    version_problem: Problem | None


async def read_metadata(repository: Repository) -> Listing:
    """Every experiment JSON (concurrently), the unreadable ones, and repository.json."""
    version_problem = None
    try:
        await repository.check_version()  # a newer format is an error, not a finding
    except CorruptedMetadata as exc:
        fix = 'rewrite it as {"version": 1}'
        version_problem = Problem("repository", "", "", f"{exc}: {fix}", VERSION_KEY)
    corrupted: list[CorruptedMetadata] = []

    def on_corrupt(exc: ReplicateError) -> None:
        if isinstance(exc, CorruptedMetadata):
            corrupted.append(exc)

    records = await repository.load_experiments(on_corrupt=on_corrupt)
    corrupted.sort(key=lambda exc: exc.key)
    return Listing(records, corrupted, version_problem)


def targets_of(
    records: Sequence[ExperimentRecord], selection: Selection, pending: Queued
) -> list[Target]:
    """The tarballs the selected metadata names, in order: each experiment's, then its own."""
    queued_checkpoints = {
        c.id: state for entries in pending.checkpoints.values() for c, state in entries
    }
    found = []
    for record in records:
        if not selection.experiment(record.id):
            continue
        if record.path and selection.whole(record.id):
            state = pending.experiments.get(record.id, (None, None))[1]
            label = experiment_label(record.id)
            found.append(Target("experiments", record.id, record.id, label, state))
        for c in record.checkpoints:
            if c.path and selection.checkpoint(record.id, c.id):
                label = checkpoint_label(record.id, c)
                state = queued_checkpoints.get(c.id)
                for id in deletable_ids(c):  # every part of a sharded one (parts.py)
                    what = label if id == c.id else f"{label}, {id[len(c.id) + 1 :]}"
                    found.append(Target("checkpoints", id, record.id, what, state, c.id))
    return found


def parts_problems(records: Sequence[ExperimentRecord], selection: Selection) -> list[Problem]:
    """Sharded checkpoints whose list of parts cannot be read."""
    found = []
    for record in records:
        for c in record.checkpoints:
            if not selection.checkpoint(record.id, c.id):
                continue
            try:
                part_ranks(c)
            except CorruptedMetadata as exc:
                fix = f"its other ranks' parts cannot be found: `replicate rm {short_id(c.id)}`"
                label = checkpoint_label(record.id, c)
                found.append(Problem("checkpoint", c.id, record.id, f"{exc}; {fix}", label))
    return found


def pending_problems(
    records: Sequence[ExperimentRecord],
    corrupted: Sequence[CorruptedMetadata],
    selection: Selection,
    pending: Queued,
) -> list[Problem]:
    """Queued experiments and checkpoints that the repository's metadata does not list yet."""
    landed: dict[str, set[str]] = {r.id: {c.id for c in r.checkpoints} for r in records}
    unreadable = {corrupted_id(exc) for exc in corrupted}
    found = []
    for id, (_, state) in pending.experiments.items():
        if id not in landed and id not in unreadable and selection.whole(id):
            found.append(
                Problem("experiment", id, id, still_uploading(state), experiment_label(id))
            )
    for experiment_id, entries in pending.checkpoints.items():
        for c, state in entries:
            if c.id in landed.get(experiment_id, set()) or experiment_id in unreadable:
                continue
            if selection.checkpoint(experiment_id, c.id):
                label = checkpoint_label(experiment_id, c)
                found.append(
                    Problem("checkpoint", c.id, experiment_id, still_uploading(state), label)
                )
    return found


def verify(
    ids: Sequence[str] = (),
    *,
    config: Config | None = None,
    on_total: Callable[[int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Report:
    """Check the repository, or only the experiments and checkpoints ``ids`` name.

    ``on_total(bytes)`` is called once the tarballs' sizes are known, ``on_progress(bytes)``
    as they stream. Storage trouble that stops the check raises; what it finds is reported.
    """
    config = config or load_config()
    url = config.repository

    def run(fn: Callable[[Repository], Awaitable[T]]) -> T:
        return Daemon.get().with_repository(url, fn)

    pending = queued(Source(url, config.spool_dir))  # before the repository
    listing = run(read_metadata)
    selection = select(ids, listing.records, listing.corrupted, pending, url)
    records = [r for r in listing.records if selection.experiment(r.id)]
    corrupted = [exc for exc in listing.corrupted if selection.whole(corrupted_id(exc))]
    report = Report(experiments=len(records) + len(corrupted))
    if listing.version_problem is not None:
        report.problems.append(listing.version_problem)
    for exc in corrupted:
        id = corrupted_id(exc)
        fix = "restore the object from a backup, or delete it by hand if the experiment is lost"
        report.problems.append(Problem("experiment", id, id, f"{exc}; {fix}", experiment_label(id)))
    report.problems.extend(parts_problems(records, selection))
    targets = targets_of(records, selection, pending)
    report.tarballs = len(targets)

    async def check(repository: Repository) -> tuple[list[Problem | None], int]:
        return await check_tarballs(
            repository, targets, on_total or _ignore, on_progress or _ignore
        )

    found, report.bytes = run(check)
    report.problems.extend(p for p in found if p is not None)
    report.problems.extend(pending_problems(listing.records, listing.corrupted, selection, pending))
    return report


def _ignore(_: int) -> None:
    pass
