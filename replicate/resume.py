"""Resuming an experiment after its process died: ``replicate.init(..., resume=...)``.

What this project started is recorded locally, in ``.replicate/runs.jsonl`` (a line when an
experiment starts or resumes, naming its process, and a line when ``stop()`` is reached), so
``resume=True`` can find the latest experiment that did not stop cleanly: no ``stop`` line, and
its process gone. While a process runs an experiment it holds a lock named after it in the
spool, so a second process cannot resume it at the same time.

A resume adds to the experiment JSON (extra keys, which Keepsake 0.4.2 ignores; see
docs/format.md): ``code_digest`` and ``resumes`` (when, where, from which step, and the id of a
new code snapshot if the code changed).
"""

from __future__ import annotations

import getpass
import hashlib
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from replicate import console
from replicate.config import Config, display_url, load_config
from replicate.daemon import Daemon, Spool, is_running
from replicate.errors import ValidationError
from replicate.ids import short_id
from replicate.read.source import Source, resolve
from replicate.records import ExperimentRecord
from replicate.repository import Repository
from replicate.runs import Runs
from replicate.values import format_time, now, to_json_value

#: ``resume=`` accepts True (the latest that did not stop cleanly, else an error), "allow"
#: (that, else a new experiment), or an id prefix.
Resume = bool | str | None
ParamsMismatch = Literal["error", "update"]


def code_digest(files: Sequence[tuple[Path, str]]) -> str:
    """A digest of a code tree by its files' names, sizes and modification times (cheap)."""
    digest = hashlib.sha256()
    for path, rel in files:
        st = path.stat()
        digest.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def experiment_lock(experiment_id: str) -> str:
    """The name of the spool lock held by the process running ``experiment_id``."""
    return f"experiment-{experiment_id}"


# ---- finding and taking over the experiment -------------------------------------------------


def find(config: Config, spool: Spool, resume: Resume) -> str | None:
    """The id of the experiment to resume, or None to start a new one ("allow", none found)."""
    if resume is True or resume == "allow":
        found = Runs(config.project_dir).unclean(config.repository, spool)
        if found:
            return found[-1].experiment_id
        if resume == "allow":
            return None
        raise ValidationError(
            f"nothing to resume in {config.project_dir}: no experiment started here for "
            f'{display_url(config.repository)} ended without stop(); pass resume="<id>", or '
            'resume="allow" to start a new one then'
        )
    if not isinstance(resume, str):
        raise ValidationError(
            f'resume must be True, "allow" or an experiment id, got {type(resume).__name__}'
        )

    async def by_prefix(repository: Repository) -> str:
        record, _ = await resolve(repository, resume, experiments_only=True)
        return record.id

    return Source(config.repository, config.spool_dir).run(by_prefix)


def resume_target(
    resume: Resume = True,
    *,
    repository: str | None = None,
    project_dir: str | Path | None = None,
) -> str | None:
    """The id of the experiment ``replicate.init(resume=resume)`` would continue, or None.

    None means init would start a new experiment (``resume="allow"`` with nothing to resume,
    or no resume asked: ``resume=None`` reads ``REPLICATE_RESUME``). What that experiment's
    dead process left queued on this machine lands first, so its stored checkpoints
    (``replicate.experiments.get(id).latest()``) are the ones the new run restarts from. For
    code that must know the experiment before it starts it, as a framework logger does; it
    claims nothing: ``init(resume=id)`` does. Raises ValidationError as init would.
    """
    config = load_config(
        repository=repository, project_dir=Path(project_dir) if project_dir is not None else None
    )
    resume = config.settings.resume if resume is None else resume
    if not resume:
        return None
    found = find(config, Spool(config.spool_dir), resume)
    if found is not None:
        _land_left_over(config, found, f"experiment {short_id(found)}")
    return found


def take(config: Config, spool: Spool, daemon: Daemon, experiment_id: str) -> ExperimentRecord:
    """Claim the experiment for this process, land what its dead process left, and load it.

    Raises ValidationError naming the live process when another one runs it.
    """
    label = f"experiment {short_id(experiment_id)}"
    if not spool.lock_owner(experiment_lock(experiment_id)):
        raise ValidationError(
            f"{label} is running in another process on this machine: "
            "stop that process first, or resume a different experiment"
        )
    if not Runs(config.project_dir).knows(experiment_id):  # started elsewhere: ask its heartbeat
        beat = Source(config.repository).run(lambda repo: repo.read_heartbeat(experiment_id))
        if is_running(beat):
            assert beat is not None
            age = (now() - beat.last_heartbeat).total_seconds()
            raise ValidationError(
                f"{label} is running elsewhere (its heartbeat is {age:.0f} s old): stop that "
                "process first, or wait 30 s if it has just died"
            )
    _land_left_over(config, experiment_id, label)
    return Source(config.repository).run(lambda repo: repo.load_experiment(experiment_id))


def _land_left_over(config: Config, experiment_id: str, label: str) -> None:
    from replicate.maintenance import drain  # maintenance uses the public API: import late

    said: list[int] = []

    def start(jobs: int, total: int) -> None:
        console.info(f"resuming {label}: landing {jobs} upload(s) it left queued here first")
        said.append(total)

    result = drain(config, experiment_id=experiment_id, on_start=start)
    if result.failed:
        console.warn(
            f"{len(result.failed)} upload(s) {label} left could not land yet; they stay "
            "queued (`replicate queue` shows why)"
        )
    elif said:
        console.info("all of them landed")


def resumed_record(
    stored: ExperimentRecord,
    params: dict[str, Any] | None,
    params_mismatch: ParamsMismatch,
    digest: str | None,
    code_id: str | None,
    command: str,
) -> ExperimentRecord:
    """The stored record with this resume added to its history (and new params if asked)."""
    import dataclasses

    changed: list[str] = []
    if params is not None:  # compared as stored: NaN as "[NaN]" equals itself
        before = to_json_value(dict(stored.params), where="params")
        keys = sorted(set(params) | set(before))
        changed = [k for k in keys if params.get(k, _ABSENT) != before.get(k, _ABSENT)]
    label = f"experiment {short_id(stored.id)}"
    if changed and params_mismatch != "update":
        raise ValidationError(
            f"params differ from {label}'s: {', '.join(changed)}; pass the same params, or "
            'params_mismatch="update" to record the new values'
        )
    if changed:
        console.info(f"resuming {label} with new values for {', '.join(changed)}")
    steps = [c.step for c in stored.checkpoints if c.step is not None]
    entry = {
        "created": format_time(now()),
        "host": socket.gethostname(),
        "user": _user(),
        "command": command,
        "after_step": max(steps) if steps else None,
        "code": code_id,
        "params_updated": changed,
    }
    extra = dict(stored.extra)
    extra["resumes"] = [*extra.get("resumes", []), entry]
    if digest is not None:
        extra["code_digest"] = digest
    new_params = params if params is not None and changed else stored.params
    return dataclasses.replace(stored, params=new_params, extra=extra)


_ABSENT = object()


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def last_step(record: ExperimentRecord) -> int | None:
    steps = [c.step for c in record.checkpoints if c.step is not None]
    return max(steps) if steps else None
