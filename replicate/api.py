"""``replicate.init()``: validate, check the repository, snapshot the code, start the experiment."""

from __future__ import annotations

import getpass
import os
import platform
import re
import shlex
import socket
import sys
from concurrent.futures import Future
from importlib import metadata
from pathlib import Path
from typing import Any

from replicate import archive, console, distributed
from replicate import resume as resuming
from replicate.config import Config, display_url, load_config, local_path
from replicate.daemon import Daemon, Job, Spool, new_job_id
from replicate.errors import DaemonClosed, ValidationError
from replicate.experiment import Experiment
from replicate.ids import is_id, random_id, short_id
from replicate.records import ExperimentRecord
from replicate.repository import Repository, experiment_key
from replicate.resume import ParamsMismatch, Resume
from replicate.runs import Runs
from replicate.values import now, to_json_value

#: Words that make an argument's name say it holds a secret (its value is recorded redacted).
SECRET_WORDS = frozenset(
    {"token", "key", "secret", "password", "passwd", "pwd", "credential", "credentials"}
    | {"apikey", "authtoken", "accesskey", "secretkey", "privatekey", "auth", "authorization"}
)
REDACTED = "REDACTED"  # no brackets: shlex.join would quote them


def _secret_name(name: str) -> bool:
    return any(word in SECRET_WORDS for word in re.split(r"[^a-z0-9]+", name.lower()))


def redact_argv(argv: list[str]) -> list[str]:
    """``argv`` with the values of secret-looking arguments replaced by ``REDACTED``.

    Covers ``--token=abc``, ``--api-key abc`` and ``DB_PASSWORD=abc``; a short option such
    as ``-p`` says too little to tell, and is kept.
    """
    redacted: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next and not arg.startswith("-"):
            redacted.append(REDACTED)
            hide_next = False
            continue
        hide_next = False
        name, sep, _ = arg.partition("=")
        if sep and _secret_name(name):
            redacted.append(f"{name}={REDACTED}")
        elif arg.startswith("--") and _secret_name(arg):
            redacted.append(arg)
            hide_next = True
        else:
            redacted.append(arg)
    return redacted


def _command() -> str:
    if not sys.argv or sys.argv == [""]:
        return ""
    return shlex.join(redact_argv(sys.argv))


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def _top_level(dist: metadata.Distribution) -> set[str]:
    """The importable top-level names ``dist`` installs: ``top_level.txt``, else its RECORD.

    Read by hand rather than through ``packages_distributions()``, which parses every
    installed distribution's metadata and makes a path object per file it lists: ~150 ms
    for the ~100 distributions of a framework environment, most of ``init()``'s budget.
    """
    listed = dist.read_text("top_level.txt")
    if listed is not None:
        return {line.strip() for line in listed.splitlines() if line.strip()}
    names = set()
    for line in (dist.read_text("RECORD") or "").splitlines():
        first = line.partition(",")[0].partition("/")[0]
        name = first.removesuffix(".py")
        if name and "." not in name and "-" not in name:
            names.add(name)
    return names


def python_packages() -> dict[str, str]:
    """Versions of the installed distributions that provide modules imported so far."""
    imported = {name.partition(".")[0] for name in list(sys.modules)}
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        if _top_level(dist) & imported:
            fields = dist.metadata  # parsed once, and only for the distributions that match
            if fields["Name"] and fields["Version"]:
                found[fields["Name"]] = fields["Version"]
    return dict(sorted(found.items()))


def _record(
    config: Config,
    params: dict[str, Any],
    path: str,
    files: list[tuple[Path, str]],
    id: str | None = None,
) -> ExperimentRecord:
    return ExperimentRecord(
        id=id or random_id(),
        created=now(),
        params=params,
        host=socket.gethostname(),
        user=_user(),
        config={"repository": display_url(config.repository), "storage": ""},
        command=_command(),
        path=path,
        python_version=platform.python_version(),
        python_packages=python_packages(),
        extra={"code_digest": resuming.code_digest(files)} if files else {},
    )


def _resume(
    config: Config,
    daemon: Daemon,
    spool: Spool,
    experiment_id: str,
    params: dict[str, Any] | None,
    params_mismatch: ParamsMismatch,
    files: list[tuple[Path, str]],
    ignore: archive.Ignore,
    *,
    heartbeat: bool,
) -> Experiment:
    """Continue ``experiment_id``: land what it left, record the resume, restart its beat."""
    stored = resuming.take(config, spool, daemon, experiment_id)
    digest = resuming.code_digest(files) if files else None
    changed = digest is not None and digest != stored.extra.get("code_digest")
    code_id = random_id() if changed else None  # a changed tree: a new snapshot beside the old
    record = resuming.resumed_record(stored, params, params_mismatch, digest, code_id, _command())
    if heartbeat:
        daemon.start_heartbeat(config.repository, record.id)
    header = record.with_checkpoints(())  # the worker merges with the stored checkpoints
    job = _stage_code(spool, daemon.owner, config, header, files if changed else [], code_id)
    future = daemon.submit(job)
    Runs(config.project_dir).started(record.id, config.repository, daemon.owner)
    after = resuming.last_step(stored)
    console.info(
        f"resumed experiment {short_id(record.id)}"
        + (f" after step {after}" if after is not None else "")
        + (", with a new snapshot of the changed code" if changed else "")
    )
    return Experiment(
        record,
        config,
        daemon,
        spool,
        ignore,
        heartbeat=heartbeat,
        code_upload=future,
        last_step=after,
    )


def _check_repository(
    daemon: Daemon, url: str, experiment_id: str, *, heartbeat: bool, new_id: bool = False
) -> Future[None]:
    """Reachable, readable, the right version, and writable (the first beat proves it).

    In the background: init() does not wait for storage (a first request to S3 or GCS costs
    a client and a round trip). A failure is printed as soon as it is known; the experiment's
    jobs wait in the spool meanwhile, so nothing is lost. ``new_id``: the caller chose the
    id, so that no experiment has it yet is checked before init() returns.
    """
    if new_id:

        async def id_is_free(repo: Repository) -> None:
            if await repo.storage.exists(experiment_key(experiment_id)):
                raise ValidationError(
                    f"experiment {short_id(experiment_id)} already exists in {display_url(url)}"
                )

        daemon.with_repository(url, id_is_free)

    async def check(repo: Repository) -> None:
        await repo.check_version(create=True)
        if not heartbeat:
            await repo.storage.check_writable()

    ready = daemon.check_soon(url, check, heartbeat_of=experiment_id if heartbeat else None)

    def report(future: Future[None]) -> None:
        exc = None if future.cancelled() else future.exception()
        if exc is not None and not isinstance(exc, DaemonClosed):
            console.warn(
                f"experiment {short_id(experiment_id)} cannot be saved to {display_url(url)}: {exc}. "
                "Its code and checkpoints are kept in the local queue: fix the repository, "
                "then `replicate wait` uploads them"
            )

    ready.add_done_callback(report)
    return ready


def _stage_code(
    spool: Spool,
    owner: str,
    config: Config,
    record: ExperimentRecord,
    files: list[tuple[Path, str]],
    code_id: str | None = None,
) -> Job:
    """Snapshot the code as one tar and persist the experiment's job; nothing left on failure.

    ``code_id`` names a resume's new code snapshot (default: the experiment's own id).
    """
    job_id = new_job_id()
    try:
        # one tar, not a copy per file: creating thousands of files is what would cost
        tar = spool.staging_tar(job_id)
        staged = archive.snapshot_tar(files, code_id or record.id, tar) if files else None
        job = Job(
            id=job_id,
            kind="experiment",
            owner=owner,
            repository=config.repository,
            experiment_id=record.id,
            root=spool.root,
            experiment=record,
            files={rel: path.stat().st_size for path, rel in files},
            staged_tar=staged,
            code_id=code_id,
        )
        spool.commit(job)
    except BaseException:
        spool.discard(job_id)
        raise
    return job


def _start(
    path: str | os.PathLike[str] | None = None,
    params: dict[str, Any] | None = None,
    *,
    repository: str | None = None,
    project_dir: str | os.PathLike[str] | None = None,
    disable_heartbeat: bool = False,
    resume: Resume = None,
    params_mismatch: ParamsMismatch = "error",
    id: str | None = None,
) -> Experiment:
    """``init()`` in one process (rank 0 of a distributed job): see :func:`init`."""
    if id is not None and not is_id(id):
        raise ValidationError(f"id must be 64 lowercase hex characters, got {id!r}")
    if params_mismatch not in ("error", "update"):
        raise ValidationError(
            f'params_mismatch must be "error" or "update", got {params_mismatch!r}'
        )
    config = load_config(
        repository=repository, project_dir=Path(project_dir) if project_dir is not None else None
    )
    if params is not None and not isinstance(params, dict):
        raise ValidationError(f"params must be a dict, got {type(params).__name__}")
    clean_params = to_json_value(dict(params or {}), where="params")
    repository_dir = local_path(config.repository)
    ignore = archive.Ignore(config.project_dir, [repository_dir] if repository_dir else [])
    files: list[tuple[Path, str]] = []
    rel = ""
    if path is not None:
        rel = archive.relative_path(config.project_dir, path)
        files = archive.collect(config.project_dir, rel, ignore)
    daemon = Daemon.get()
    daemon.configure(config.settings)
    resume = config.settings.resume if resume is None else resume
    if resume:
        spool = daemon.spool(config.spool_dir)
        found = resuming.find(config, spool, resume)
        if found is not None:
            given = clean_params if params is not None else None
            return _resume(
                config,
                daemon,
                spool,
                found,
                given,
                params_mismatch,
                files,
                ignore,
                heartbeat=not disable_heartbeat,
            )
    record = _record(config, clean_params, rel, files, id)
    heartbeat = not disable_heartbeat
    return _create(config, daemon, record, rel, files, ignore, heartbeat, new_id=id is not None)


def _create(
    config: Config,
    daemon: Daemon,
    record: ExperimentRecord,
    rel: str,
    files: list[tuple[Path, str]],
    ignore: archive.Ignore,
    heartbeat: bool,
    *,
    new_id: bool,
) -> Experiment:
    """Check the repository, queue the new experiment's code and record, and hand it over.

    ``new_id``: the caller chose the id, so check that no experiment has it yet.
    """
    ready = _check_repository(
        daemon, config.repository, record.id, heartbeat=heartbeat, new_id=new_id
    )
    spool = daemon.spool(config.spool_dir)
    spool.lock_owner(resuming.experiment_lock(record.id))  # a resume elsewhere is refused
    try:
        job = _stage_code(spool, daemon.owner, config, record, files)
    except BaseException:
        ready.cancel()  # a heartbeat not started yet never starts
        if heartbeat:
            daemon.stop_heartbeat(config.repository, record.id)
        raise
    future = daemon.submit(job)
    Runs(config.project_dir).started(record.id, config.repository, daemon.owner)
    console.info(
        f"created experiment {short_id(record.id)}"
        + (f", saving {len(files)} files of {rel!r}" if files else "")
        + f" to {display_url(config.repository)}"
    )
    return Experiment(
        record, config, daemon, spool, ignore, heartbeat, code_upload=future, checked=ready
    )


def init(
    path: str | os.PathLike[str] | None = None,
    params: dict[str, Any] | None = None,
    *,
    repository: str | None = None,
    project_dir: str | os.PathLike[str] | None = None,
    disable_heartbeat: bool = False,
    resume: Resume = None,
    params_mismatch: ParamsMismatch = "error",
    id: str | None = None,
) -> Experiment:
    """Start an experiment: record params, the environment and (with ``path``) the code.

    With ``resume``, continue one whose process died instead: True for the latest started
    from this project that did not stop cleanly (an error if there is none), ``"allow"`` for
    that or else a new one, or an id prefix (also from another machine). ``REPLICATE_RESUME``
    does the same. Params must match the stored ones unless ``params_mismatch="update"``.

    Under torch.distributed (an initialized process group of several ranks) every rank must
    call it: rank 0 starts or resumes the experiment and shares it, and the other ranks get
    the same experiment, on which ``checkpoint()`` records nothing (rank 0's call does).

    Raises ConfigError for a bad replicate.yaml, ValidationError for bad params or a ``path``
    outside the project or matching nothing, and StorageError when the repository cannot be
    reached or written. A failed ``init`` leaves nothing behind.

    ``id`` (64 lowercase hex characters, not yet in the repository) names a new experiment
    when something must know it before the experiment starts, as a framework logger does.
    """

    def start() -> Experiment:
        return _start(
            path,
            params,
            repository=repository,
            project_dir=project_dir,
            disable_heartbeat=disable_heartbeat,
            resume=resume,
            params_mismatch=params_mismatch,
            id=id,
        )

    rank = distributed.current()
    if rank is None:
        return start()
    return distributed.collective_init(rank, start, project_dir=project_dir)
