"""Reading a repository back (sync, for scripts and notebooks): ``replicate.experiments``.

Usage::

    import replicate

    experiments = replicate.experiments.list(filter="loss < 0.5")
    experiments.plot("loss")
    best = replicate.experiments.get("928ecab").best()
    model = torch.load(best.open("model.pth"))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from replicate import console
from replicate.config import load_config
from replicate.errors import DoesNotExist, ValidationError
from replicate.ids import short_id
from replicate.read.files import CheckoutResult
from replicate.read.query import Filter, apply_filters
from replicate.read.source import Source, experiment_views, resolve, view_of
from replicate.read.views import CheckpointList, CheckpointView, ExperimentList, ExperimentView
from replicate.records import CheckpointRecord, ExperimentRecord
from replicate.repository import Repository

__all__ = [
    "CheckoutResult",
    "CheckpointList",
    "CheckpointView",
    "ExperimentList",
    "ExperimentView",
    "experiments",
    "source_for",
]

FilterArg = str | Sequence[str] | Callable[[ExperimentView], bool] | None


def source_for(repository: str | None = None, project_dir: str | Path | None = None) -> Source:
    """The repository of replicate.yaml (or ``repository``) and the project's upload queue."""
    config = load_config(
        repository=repository, project_dir=Path(project_dir) if project_dir is not None else None
    )
    return Source(config.repository, config.spool_dir)


class Experiments:
    """``replicate.experiments``: list and get the experiments of a repository."""

    def list(
        self,
        filter: FilterArg = None,
        repository: str | None = None,
        *,
        project_dir: str | Path | None = None,
    ) -> ExperimentList:
        """Every experiment, oldest first, optionally filtered.

        Args:
            filter: ``"loss < 0.5"``, a list of such strings (all must hold), or a function
                of an experiment returning a bool. Names as in ``replicate ls --filter``.
            repository: a repository URL instead of replicate.yaml's.
            project_dir: where to look for replicate.yaml (default: walk up from the cwd).

        Unreadable experiment JSONs are skipped with a warning on stderr.
        """
        source = source_for(repository, project_dir)
        found, corrupted = experiment_views(source)
        for exc in corrupted:
            console.warn(f"skipped: {exc}")
        if filter is None:
            return found
        if callable(filter):
            return ExperimentList(e for e in found if filter(e))
        texts: object = [filter] if isinstance(filter, str) else filter  # untyped callers
        if not isinstance(texts, Sequence) or not all(isinstance(t, str) for t in texts):
            raise ValidationError(
                "filter must be a string like 'loss < 0.5', a list of them, or a function of "
                f"an experiment, got {type(filter).__name__}"
            )
        return ExperimentList(apply_filters(found, [Filter.parse(t) for t in texts]))

    def get(
        self,
        id_prefix: str,
        repository: str | None = None,
        *,
        project_dir: str | Path | None = None,
    ) -> ExperimentView:
        """The experiment whose id starts with ``id_prefix``.

        Raises DoesNotExist, AmbiguousID, or CorruptedMetadata if its JSON is unreadable.
        """
        source = source_for(repository, project_dir)

        async def find(repo: Repository) -> tuple[ExperimentRecord, CheckpointRecord | None]:
            try:
                return await resolve(repo, id_prefix, experiments_only=True)
            except DoesNotExist:
                experiment, checkpoint = await resolve(repo, id_prefix)
                if checkpoint is None:
                    raise
                raise DoesNotExist(
                    f"{id_prefix!r} is checkpoint {short_id(checkpoint.id)} of experiment "
                    f"{short_id(experiment.id)}: use experiments.get({short_id(experiment.id)!r})"
                    f".checkpoint({id_prefix!r})"
                ) from None

        experiment, _ = view_of(source, source.run(find))
        return experiment

    def __repr__(self) -> str:
        return "<replicate.experiments: .list(filter=None), .get(id_prefix)>"


experiments = Experiments()
