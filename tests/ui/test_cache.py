"""The metadata cache re-reads only what a listing says changed."""

from __future__ import annotations

from collections.abc import Callable

from cli.helpers import Written

import replicate
from ui.helpers import RunningUI, get


class TestIncrementalRefresh:
    def test_only_changed_objects_are_read_again(
        self, written_disk: Written, serve: Callable[..., RunningUI]
    ) -> None:
        """Unchanged experiments are not re-read; a new checkpoint costs one read."""
        ui = serve(written_disk.url, cache_seconds=0.0)
        cache = ui.state.cache
        assert len(get(ui.base, "/api/experiments").json()["table"]["ids"]) == 2
        first = cache.reads
        assert first == 2  # two experiment JSONs, no heartbeats (both stopped)
        get(ui.base, "/api/experiments")
        get(ui.base, "/")
        assert cache.reads == first

        experiment = replicate.init(
            params={"lr": 1},
            repository=written_disk.url,
            project_dir=written_disk.project,
            disable_heartbeat=True,
        )
        experiment.checkpoint(metrics={"loss": 0.5}, quiet=True).wait(60)
        experiment.stop()
        rows = get(ui.base, "/api/experiments").json()["table"]["ids"]
        assert rows[-1] == experiment.id
        assert cache.reads == first + 1

    def test_removed_experiment_disappears(
        self, written_disk: Written, serve: Callable[..., RunningUI]
    ) -> None:
        """An experiment removed from the repository leaves the page on the next refresh."""
        from cli.helpers import invoke

        ui = serve(written_disk.url, cache_seconds=0.0)
        assert len(get(ui.base, "/api/experiments").json()["table"]["ids"]) == 2
        result = invoke("rm", "-f", "-R", written_disk.url, written_disk.sgd)
        assert result.exit_code == 0, result.output
        assert get(ui.base, "/api/experiments").json()["table"]["ids"] == [written_disk.adam]
        assert get(ui.base, f"/experiments/{written_disk.sgd}").status == 404
