"""The table of bad inputs that tests/test_bad_input.py runs: CLI, API and settings cases.

Messages are templates filled per case by ``Work.fill``: ``{adam}``, ``{sgd}``, ``{decoy}``,
``{best}`` (ids), ``{url}``, ``{root}``, ``{project}`` and ``{afile}`` (paths). The module is
over 400 lines because it is one table of data, read in one place; no logic lives here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import replicate
from replicate import experiments, maintenance
from replicate.config import load_config
from replicate.errors import ReplicateError


@dataclass
class Work:
    """One case's copy: ``root`` holds project/, repo/ and afile."""

    root: Path
    ids: dict[str, str]

    @property
    def project(self) -> Path:
        return self.root / "project"

    @property
    def repo(self) -> Path:
        return self.root / "repo"

    @property
    def url(self) -> str:
        return self.repo.as_uri()

    def fill(self, text: str) -> str:
        return text.format(
            **self.ids,
            url=self.url,
            root=self.root,
            project=self.project,
            afile=self.root / "afile",
        )


# ---- the table -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cli:
    """``python -m replicate *args``: ``message`` is the whole last stderr line after 'Error: '."""

    args: tuple[str, ...]
    message: str
    code: int = 1
    env: dict[str, str] = field(default_factory=dict)
    #: replaces replicate.yaml (bytes) before the run
    yaml: bytes | None = None
    #: relative path under the copy -> bytes, written before the snapshot
    files: dict[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class Api:
    """``call(work)`` raises ``error`` whose text is exactly ``message``."""

    call: Callable[[Work], Any]
    error: type[ReplicateError]
    message: str
    files: dict[str, bytes] = field(default_factory=dict)


USAGE = 2
FIELDS_AND_NAMES = (
    "use a field (created, step, user, host, command, status), a metric (accuracy, loss) "
    "or a param (layers, lr, optimizer)"
)
NOT_AN_ID = (
    "{0!r} is not an id: ids are up to 64 hexadecimal characters; run `replicate ls` to see them"
)
NO_MATCH = "no experiment or checkpoint matches {0!r} in {{url}}: run `replicate ls` to see the ids"
FILTER_SHAPE = (
    "cannot read the filter {0!r}: write it as 'name op value' with op one of != <= >= = < >, "
    "e.g. 'loss < 0.5' or 'optimizer = adam'"
)
YAML_FIX = "`repository: s3://bucket/prefix` (or gs://bucket/prefix, file://path)"
SCHEMES = "use s3://bucket/prefix, gs://bucket/prefix or file://path (a plain path works too)"
NEWER = (
    "the repository at {url} has format version 99, but this replicate reads version 1: "
    "upgrade replicate (pip install -U replicate)"
)
CORRUPT_ADAM = "metadata/experiments/{adam}.json"


def env_case(name: str, value: str, takes: str, example: str) -> Cli:
    message = f"{name}={value!r} is not valid: it takes {takes}, e.g. {name}={example}"
    return Cli(("ls", "-q"), message, env={name: value})


CLI_CASES: dict[str, Cli] = {
    # ls --filter / --sort
    "ls-filter-no-value": Cli(
        ("ls", "--filter", "loss <"),
        "Invalid value for '--filter': " + FILTER_SHAPE.format("loss <"),
        USAGE,
    ),
    "ls-filter-no-name": Cli(
        ("ls", "--filter", "==3"), "Invalid value for '--filter': " + FILTER_SHAPE.format("==3"), 2
    ),
    "ls-filter-unknown-name": Cli(
        ("ls", "--filter", "lost < 1"), f"--filter: no experiment has 'lost'; {FIELDS_AND_NAMES}"
    ),
    "ls-filter-mixed-types": Cli(
        ("ls", "--filter", "optimizer > 3"),
        "filter 'optimizer > 3' compares optimizer with >, but experiment {adam:.7} has the "
        'string "adam" and the filter gives the number 3: compare numbers with numbers, '
        "strings with strings",
    ),
    "ls-filter-bad-date": Cli(
        ("ls", "--filter", "created < yesterday"),
        "Invalid value for '--filter': 'created' needs a date or time like 2026-11-28 or "
        "2026-11-28T11:55:00Z, got 'yesterday'",
        USAGE,
    ),
    "ls-sort-unknown": Cli(
        ("ls", "--sort", "nothere"), f"--sort: no experiment has 'nothere'; {FIELDS_AND_NAMES}"
    ),
    "ls-sort-unknown-desc": Cli(
        ("ls", "--sort", "lost-desc"), f"--sort: no experiment has 'lost'; {FIELDS_AND_NAMES}"
    ),
    # ids and prefixes
    "show-not-hex": Cli(("show", "zzzz"), NOT_AN_ID.format("zzzz")),
    "show-no-match": Cli(("show", "0000"), NO_MATCH.format("0000")),
    "show-empty-id": Cli(
        ("show", ""), "an empty id matches nothing: pass an experiment or checkpoint id"
    ),
    "show-id-with-suffix": Cli(("show", "{adam}:x"), NOT_AN_ID.format("{adam}:x")),
    "show-ambiguous": Cli(
        ("show", "{adam:.6}"),
        "'{adam:.6}' is ambiguous, it matches experiment {decoy:.12}, experiment {adam:.12}: "
        "use a longer prefix",
    ),
    "rm-not-hex": Cli(("rm", "-f", "zzzz"), NOT_AN_ID.format("zzzz")),
    "rm-no-match": Cli(("rm", "-f", "0000"), NO_MATCH.format("0000")),
    "verify-not-hex": Cli(("verify", "zzzz"), NOT_AN_ID.format("zzzz")),
    "checkout-no-match": Cli(("checkout", "0000", "-o", "out"), NO_MATCH.format("0000")),
    "diff-not-hex": Cli(("diff", "{adam}", "xyz"), NOT_AN_ID.format("xyz")),
    # usage
    "diff-one-id": Cli(("diff", "{adam}"), "diff needs at least two ids", USAGE),
    "gc-keep-best-negative": Cli(
        ("gc", "--keep-best", "-1"),
        "Invalid value for '--keep-best': -1 is not in the range x>=0.",
        USAGE,
    ),
    "wait-timeout-text": Cli(
        ("wait", "--timeout", "abc"),
        "Invalid value for '--timeout': 'abc' is not a valid float range.",
        2,
    ),
    "wait-timeout-negative": Cli(
        ("wait", "--timeout", "-5"),
        "Invalid value for '--timeout': -5.0 is not in the range x>=0.",
        USAGE,
    ),
    "checkout-to-a-file": Cli(
        ("checkout", "{adam}", "-o", "{afile}"),
        "Invalid value for '-o' / '--output-directory': Directory '{afile}' is a file.",
        USAGE,
    ),
    "checkout-missing-path": Cli(
        ("checkout", "{adam}", "-p", "nothere", "-o", "out"),
        "nothing matches nothere in checkpoint {best:.7}",
    ),
    "unknown-command": Cli(("frobnicate",), "No such command 'frobnicate'.", USAGE),
    # -R
    "R-unknown-scheme": Cli(
        ("ls", "-R", "ftp://host/path"),
        f"unknown repository URL scheme 'ftp' in 'ftp://host/path'; {SCHEMES}",
    ),
    "R-s3-no-bucket": Cli(
        ("ls", "-R", "s3://"),
        "the repository URL 's3://' has no valid bucket name; write it as s3://bucket/prefix",
    ),
    "R-s3-empty-bucket": Cli(
        ("ls", "-R", "s3:///nobucket"),
        "the repository URL 's3:///nobucket' has no valid bucket name; write it as s3://bucket/prefix",
    ),
    "R-gs-no-bucket": Cli(
        ("ls", "-R", "gs://"),
        "the repository URL 'gs://' has no valid bucket name; write it as gs://bucket/prefix",
    ),
    "R-file-no-path": Cli(
        ("ls", "-R", "file://"), f"the repository URL 'file://' has no path; {SCHEMES}"
    ),
    # settings: REPLICATE_*
    "env-fsync": Cli(
        ("ls", "-q"),
        "REPLICATE_FSYNC='maybe' is not valid: it takes 1 or 0 (true/false, yes/no, on/off)",
        env={"REPLICATE_FSYNC": "maybe"},
    ),
    "env-exit-timeout": env_case(
        "REPLICATE_EXIT_TIMEOUT", "abc", "a finite number of seconds", "600"
    ),
    "env-request-deadline-negative": env_case(
        "REPLICATE_REQUEST_DEADLINE", "-1", "a finite number of seconds", "600"
    ),
    "env-request-deadline-nan": env_case(
        "REPLICATE_REQUEST_DEADLINE", "nan", "a finite number of seconds", "600"
    ),
    "env-job-deadline": env_case(
        "REPLICATE_JOB_DEADLINE", "abc", "a finite number of seconds", "600"
    ),
    "env-repository-scheme": Cli(
        ("ls", "-q"),
        f"$REPLICATE_REPOSITORY: unknown repository URL scheme 'ftp' in 'ftp://x/y'; {SCHEMES}",
        env={"REPLICATE_REPOSITORY": "ftp://x/y"},
    ),
    # settings: replicate.yaml
    "yaml-malformed": Cli(
        ("ls", "-q"),
        "{project}/replicate.yaml is not valid YAML at line 2 (expected ',' or ']', but got "
        f"'<stream end>'); fix it to read like {YAML_FIX}",
        yaml=b"repository: [unclosed\n",
    ),
    "yaml-unknown-key": Cli(
        ("ls", "-q"),
        "{project}/replicate.yaml: unknown key 'repositry'; the allowed keys are 'repository' "
        "(and its old name 'storage'): remove or rename it",
        yaml=b"repository: file:///nowhere\nrepositry: x\n",
    ),
    "yaml-not-a-string": Cli(
        ("ls", "-q"),
        f"{{project}}/replicate.yaml: 'repository' should be a URL string; write {YAML_FIX}",
        yaml=b"repository: 5\n",
    ),
    "yaml-a-list": Cli(
        ("ls", "-q"),
        "{project}/replicate.yaml should be a mapping of keys to values; write " + YAML_FIX,
        yaml=b"- a\n- b\n",
    ),
    "yaml-empty": Cli(
        ("ls", "-q"), f"{{project}}/replicate.yaml is empty; add {YAML_FIX}", yaml=b""
    ),
    "yaml-bad-scheme": Cli(
        ("ls", "-q"),
        f"{{project}}/replicate.yaml: unknown repository URL scheme 'ftp' in 'ftp://x'; {SCHEMES}",
        yaml=b"repository: ftp://x\n",
    ),
    # the repository's own content
    "repository-json-newer-ls": Cli(
        ("ls",), NEWER, files={"repo/repository.json": b'{"version": 99}'}
    ),
    "repository-json-newer-verify": Cli(
        ("verify",), NEWER, files={"repo/repository.json": b'{"version": 99}'}
    ),
    "repository-json-garbage": Cli(
        ("show", "{adam}"),
        "corrupted metadata in repository.json: no version number (Expecting value: line 1 "
        "column 1 (char 0))",
        files={"repo/repository.json": b"garbage"},
    ),
    "experiment-json-corrupted": Cli(
        ("show", "{adam}"),
        f"corrupted metadata in {CORRUPT_ADAM}: Expecting property name enclosed in double "
        "quotes: line 1 column 2 (char 1)",
        files={"repo/" + CORRUPT_ADAM: b"{not json"},
    ),
}


@dataclass(frozen=True)
class CheckpointCall:
    """A checkpoint() (or checkpoint_dir(step=dir_step)) call on a live experiment."""

    kwargs: dict[str, Any]

    def __call__(self, work: Work) -> Any:
        raise AssertionError("test_api calls it on an experiment")


def _checkpoint_call(**kwargs: Any) -> CheckpointCall:
    return CheckpointCall(kwargs)


def _init(**kwargs: Any) -> Callable[[Work], Any]:
    return lambda work: replicate.init(repository=work.url, project_dir=work.project, **kwargs)


def _get(prefix: str) -> Callable[[Work], Any]:
    return lambda work: experiments.get(work.fill(prefix), repository=work.url)


def _best(work: Work) -> Any:
    return experiments.get(work.ids["adam"], repository=work.url).best()


NOT_JSON = "is not JSON-serializable: builtins.object; use str, int, float, bool, None, lists, dicts, or numpy/torch values"

API_CASES: dict[str, Api] = {
    # replicate.init
    "init-params-not-json": Api(
        _init(params={"a": object()}), replicate.ValidationError, f"params['a'] {NOT_JSON}"
    ),
    "init-params-a-list": Api(
        _init(params=[1]), replicate.ValidationError, "params must be a dict, got list"
    ),
    "init-path-missing": Api(
        _init(path="nothere"),
        replicate.ValidationError,
        "path 'nothere' matches nothing in {project}: save the file before calling checkpoint(), "
        "or leave path out for a metrics-only checkpoint",
    ),
    "init-project-dir-missing": Api(
        lambda work: replicate.init(repository=work.url, project_dir=work.root / "nothere"),
        replicate.ConfigError,
        "project_dir {root}/nothere is not a directory: create it, or pass the directory "
        "of your training code",
    ),
    "init-repository-scheme": Api(
        lambda work: replicate.init(repository="ftp://x/y", project_dir=work.project),
        replicate.ConfigError,
        f"unknown repository URL scheme 'ftp' in 'ftp://x/y'; {SCHEMES}",
    ),
    # Experiment.checkpoint / checkpoint_dir
    "checkpoint-step-a-str": Api(
        _checkpoint_call(step="bad"),
        replicate.ValidationError,
        "step must be an integer, got a str",
    ),
    "checkpoint-huge-int": Api(
        _checkpoint_call(metrics={"x": 10**5000}),
        replicate.ValidationError,
        "metrics['x'] is an integer too large to store",
    ),
    "checkpoint-goal": Api(
        _checkpoint_call(metrics={"loss": 1.0}, primary_metric=("loss", "up")),
        replicate.ValidationError,
        "goal must be 'maximize' or 'minimize', got 'up'",
    ),
    "checkpoint-primary-not-a-metric": Api(
        _checkpoint_call(metrics={"loss": 1.0}, primary_metric=("acc", "maximize")),
        replicate.ValidationError,
        "primary_metric 'acc' is not among the metrics ['loss']: pass it in metrics too",
    ),
    "checkpoint-primary-shape": Api(
        _checkpoint_call(metrics={"loss": 1.0}, primary_metric="loss"),
        replicate.ValidationError,
        "primary_metric must be a (name, goal) pair like ('loss', 'minimize'), got 'loss'",
    ),
    "checkpoint-path-outside": Api(
        _checkpoint_call(path="../outside"),
        replicate.ValidationError,
        "path '../outside' is outside the project directory {project}: save the file inside it "
        "and pass a relative path",
    ),
    "checkpoint-metrics-a-list": Api(
        _checkpoint_call(metrics=[1, 2]),
        replicate.ValidationError,
        "metrics must be a dict of name -> value, got list",
    ),
    "checkpoint-metric-key-int": Api(
        _checkpoint_call(metrics={1: 2}),
        replicate.ValidationError,
        "metrics has a key 1 of type int; JSON object keys must be strings",
    ),
    "checkpoint-metric-key-not-utf8": Api(
        _checkpoint_call(metrics={"loss\udcff": 1.0}),
        replicate.ValidationError,
        "metrics has a key that is not valid UTF-8 (a lone surrogate?)",
    ),
    "checkpoint-dir-step-a-str": Api(
        _checkpoint_call(dir_step="bad"),
        replicate.ValidationError,
        "step must be an integer, got a str",
    ),
    # replicate.experiments
    "get-not-hex": Api(_get("zzzz"), replicate.DoesNotExist, NOT_AN_ID.format("zzzz")),
    "get-no-match": Api(_get("0000"), replicate.DoesNotExist, NO_MATCH.format("0000")),
    "get-ambiguous": Api(
        _get("{adam:.6}"),
        replicate.AmbiguousID,
        "'{adam:.6}' is ambiguous, it matches experiment {decoy:.12}, experiment {adam:.12}: "
        "use a longer prefix",
    ),
    "list-bad-filter": Api(
        lambda work: experiments.list("loss <", repository=work.url),
        replicate.ValidationError,
        FILTER_SHAPE.format("loss <"),
    ),
    "list-filter-not-a-filter": Api(
        lambda work: experiments.list(5, repository=work.url),  # type: ignore[arg-type]
        replicate.ValidationError,
        "filter must be a string like 'loss < 0.5', a list of them, or a function of an "
        "experiment, got int",
    ),
    "get-corrupted": Api(
        _get("{adam}"),
        replicate.CorruptedMetadata,
        f"corrupted metadata in {CORRUPT_ADAM}: Expecting value: line 1 column 1 (char 0)",
        files={"repo/" + CORRUPT_ADAM: b""},
    ),
    # Checkpoint.open / checkout
    "open-missing": Api(
        lambda work: _best(work).open("nothere.pth"),
        replicate.DoesNotExist,
        "no file 'nothere.pth' in checkpoint {best:.7} (its files are under 'model.pth') or in "
        "the code of experiment {adam:.7}",
    ),
    "checkout-missing-path": Api(
        lambda work: _best(work).checkout(work.root / "out", paths=["nothere"]),
        replicate.DoesNotExist,
        "nothing matches nothere in checkpoint {best:.7}",
    ),
    # replicate.maintenance
    "maintenance-verify-not-hex": Api(
        lambda work: maintenance.verify(["zzzz"], config=load_config(work.project)),
        replicate.DoesNotExist,
        NOT_AN_ID.format("zzzz"),
    ),
    "maintenance-plan-removal-no-match": Api(
        lambda work: maintenance.plan_removal(["0000"], config=load_config(work.project)),
        replicate.DoesNotExist,
        NO_MATCH.format("0000"),
    ),
    "maintenance-plan-gc-negative": Api(
        lambda work: maintenance.plan_gc(keep_best=-1, config=load_config(work.project)),
        replicate.ValidationError,
        "keep_best and keep_last must be 0 or more",
    ),
}
