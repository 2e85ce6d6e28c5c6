"""A few seeded trials of the crash suite (``make chaos`` runs hundreds: see crash/chaos.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from crash import chaos

pytestmark = pytest.mark.slow

#: Kills inside a call (snapshot or persist), mid-upload and during the exit drain
TRIALS = {
    "file": [
        chaos.Trial(seed=11, steps=2, size=1 << 20, target="@call 1", offset=0.0),
        chaos.Trial(seed=14, steps=2, size=32 << 20, target="@exit", offset=0.0),
    ],
    "s3": [
        chaos.Trial(seed=21, steps=2, size=16 << 20, target="C 0", offset=0.0),
    ],
}


def run(trials: list[chaos.Trial], url_for: object, tmp_path: Path) -> chaos.Tally:
    tally = chaos.Tally()
    for n, trial in enumerate(trials):
        url = url_for(n)  # type: ignore[operator]
        outcome = chaos.run_trial(trial, tmp_path / f"trial-{n}", url, chaos.test_env({}))
        tally.add(f"trial {n} ({trial})", outcome)
    return tally


def assert_nothing_lost(tally: chaos.Tally, trials: int) -> None:
    report = tally.report("crash suite")
    assert tally.trials == trials, report
    assert not tally.lost, report
    assert not tally.failures, report
    assert sum(n for stage, n in tally.kills.items() if stage.startswith("at ")) == trials
    assert tally.printed > 0 and tally.landed == tally.printed, report


def test_seeded_kills_on_disk(tmp_path: Path) -> None:
    """SIGKILL of the process group at chosen moments; `wait` lands every printed checkpoint."""
    trials = TRIALS["file"]
    tally = run(trials, lambda n: (tmp_path / f"repo-{n}").as_uri(), tmp_path)
    assert_nothing_lost(tally, len(trials))


@pytest.mark.s3
def test_seeded_kills_on_s3(s3_bucket: str, tmp_path: Path) -> None:
    """The same against SeaweedFS: kills mid-upload and at the exit drain lose nothing."""
    trials = TRIALS["s3"]
    tally = run(trials, lambda n: f"s3://{s3_bucket}/t{n}", tmp_path)
    assert_nothing_lost(tally, len(trials))
