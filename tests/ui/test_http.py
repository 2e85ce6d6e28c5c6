"""Every route over plain HTTP, on disk, SeaweedFS and fake-gcs-server, and the Keepsake sample."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from cli.helpers import (
    KEEPSAKE_BEST,
    KEEPSAKE_FIRST,
    Written,
    copy_sample,
    read_object,
    write_experiments,
    write_object,
)

from ui.conftest import spool_of
from ui.helpers import RunningUI, get


class TestEveryRoute:
    def test_every_route_on_each_backend(
        self, repo_url: str, tmp_path: Path, serve: Callable[..., RunningUI]
    ) -> None:
        """Each page, JSON endpoint and download answers with the repository's content."""
        w = write_experiments(repo_url, tmp_path / "project")
        ui = serve(w.url, spool_of(w))
        adam, sgd = w.adam, w.sgd
        first = w.checkpoints["adam"][0]

        listing = get(ui.base, "/")
        assert listing.status == 200
        assert listing.headers["Content-Type"].startswith("text/html")
        assert adam[:7] in listing.text and sgd[:7] in listing.text
        rows = get(ui.base, "/api/experiments").json()
        assert rows["table"]["ids"] == [adam, sgd]

        page = get(ui.base, f"/experiments/{adam[:7]}")
        assert page.status == 200
        assert "optimizer" in page.text and "adam" in page.text
        assert f"replicate checkout -R {w.url} {w.checkpoints['adam'][2][:7]}" in page.text
        assert "train.py" in page.text  # the code snapshot's file list

        detail = get(ui.base, f"/api/experiments/{adam}").json()
        assert detail["experiment"]["id"] == adam
        assert detail["experiment"]["best_checkpoint"] == w.checkpoints["adam"][2]
        assert detail["checkpoints"]["ids"] == w.checkpoints["adam"]

        series = get(ui.base, f"/api/series?id={adam}&id={sgd}").json()
        assert series["metrics"]["loss"] == {
            "x": [0, 1, 2, 3],
            "y": [[1.0, 0.5, 0.25, 0.1], [0.9, 0.4, None, None]],
        }

        compare = get(ui.base, f"/compare?id={adam[:7]}&id={sgd[:7]}")
        assert compare.status == 200
        diff = compare.text[compare.text.index('id="diff"') :]
        assert "<th>lr</th>" in diff and "<th>optimizer</th>" in diff
        assert "<th>layers</th>" not in diff  # the same in both: not a difference

        scatter = get(ui.base, "/api/scatter?param=lr&metric=loss").json()
        assert [(p["x"], p["y"]) for p in scatter["points"]] == [(0.01, 0.4), (0.1, 0.25)]

        files = get(ui.base, f"/checkpoints/{first[:10]}/files")
        assert files.status == 200 and "model.pth" in files.text
        one = get(ui.base, f"/checkpoints/{first}/files/model.pth")
        assert one.status == 200
        assert one.body == b"adam weights at step 0\n"
        assert one.headers["Content-Disposition"] == 'attachment; filename="model.pth"'

        tarball = get(ui.base, f"/checkpoints/{first}/tarball")
        assert tarball.status == 200
        with tarfile.open(fileobj=io.BytesIO(tarball.body), mode="r:gz") as tar:
            member = tar.extractfile(f"{first}/model.pth")
            assert member is not None and member.read() == b"adam weights at step 0\n"

        code = get(ui.base, f"/experiments/{adam}/files/train.py")
        assert code.body == b"print('training')\n"
        code_tarball = get(ui.base, f"/experiments/{adam}/tarball")
        with tarfile.open(fileobj=io.BytesIO(code_tarball.body), mode="r:gz") as tar:
            assert tar.getnames() == [f"{adam}/train.py"]

        assert get(ui.base, "/static/app.js").status == 200
        assert get(ui.base, "/static/uPlot.iife.min.js").status == 200


class TestKeepsakeSample:
    def test_keepsake_repository(self, tmp_path: Path, serve: Callable[..., RunningUI]) -> None:
        """A repository written by Keepsake 0.4.2 lists, shows its best, and serves its files."""
        project = copy_sample(tmp_path)
        ui = serve((project / ".keepsake").as_uri())
        listing = get(ui.base, "/api/experiments").json()
        assert len(listing["table"]["ids"]) == 3
        assert KEEPSAKE_FIRST in listing["table"]["ids"]
        detail = get(ui.base, f"/api/experiments/{KEEPSAKE_FIRST[:7]}").json()
        assert detail["experiment"]["best_checkpoint"] == KEEPSAKE_BEST
        page = get(ui.base, f"/experiments/{KEEPSAKE_FIRST[:7]}")
        assert page.status == 200 and 'class="best"' in page.text
        files = get(ui.base, f"/checkpoints/{KEEPSAKE_BEST[:7]}/files")
        assert files.status == 200
        names = [line for line in files.text.splitlines() if "/files/" in line]
        assert names, files.text
        assert get(ui.base, f"/checkpoints/{KEEPSAKE_BEST}/tarball").status == 200
        a, b = listing["table"]["ids"][:2]
        compare = get(ui.base, f"/compare?id={a}&id={b}")
        assert compare.status == 200 and 'id="diff"' in compare.text


class TestFilterAndSort:
    def test_filter_narrows_like_ls(
        self, shared_disk: Written, serve: Callable[..., RunningUI]
    ) -> None:
        """?filter= takes ls --filter expressions; several separated by ';' must all hold."""
        ui = serve(shared_disk.url)
        only_adam = get(ui.base, "/api/experiments?filter=optimizer%20%3D%20adam").json()
        assert only_adam["table"]["ids"] == [shared_disk.adam]
        both = get(ui.base, "/api/experiments?filter=loss%20%3C%201%3B%20layers%20%3D%202").json()
        assert both["table"]["ids"] == [shared_disk.adam, shared_disk.sgd]
        none = get(ui.base, "/api/experiments?filter=lr%20%3E%200.1%3B%20layers%20%3D%202").json()
        assert none["table"]["ids"] == []

    def test_bad_filter_is_one_clear_message(
        self, shared_disk: Written, serve: Callable[..., RunningUI]
    ) -> None:
        """A malformed filter or an unknown name answers 400 with ls's message, escaped."""
        ui = serve(shared_disk.url)
        bad = get(ui.base, "/?filter=%3Cb%3Elr")
        assert bad.status == 400
        assert "cannot read the filter &#x27;&lt;b&gt;lr&#x27;" in bad.text
        unknown = get(ui.base, "/api/experiments?filter=nope%20%3D%201")
        assert unknown.status == 400
        assert "no experiment has 'nope'" in unknown.json()["error"]

    def test_sort_descending(self, shared_disk: Written, serve: Callable[..., RunningUI]) -> None:
        """?sort=NAME-desc sorts as ls --sort does."""
        ui = serve(shared_disk.url)
        rows = get(ui.base, "/api/experiments?sort=lr-desc").json()
        assert rows["table"]["ids"] == [shared_disk.adam, shared_disk.sgd]
        rows = get(ui.base, "/api/experiments?sort=lr").json()
        assert rows["table"]["ids"] == [shared_disk.sgd, shared_disk.adam]

    def test_column_headers_sort(
        self, shared_disk: Written, serve: Callable[..., RunningUI]
    ) -> None:
        """Headers link to their sort (BEST CHECKPOINT: the shared primary metric), and flip."""
        ui = serve(shared_disk.url)
        columns = get(ui.base, "/api/experiments?sort=loss").json()["table"]["columns"]
        best = next(c for c in columns if c["text"].startswith("BEST CHECKPOINT"))
        assert best["href"] == "/?sort=loss-desc" and best["text"].endswith("▲")
        rows = get(ui.base, "/api/experiments" + best["href"].removeprefix("/")).json()
        assert rows["table"]["ids"] == [shared_disk.sgd, shared_disk.adam]  # 0.4, then 0.25


class TestIds:
    @pytest.mark.parametrize(
        ("path", "status", "says"),
        [
            ("/experiments/xyz", 404, "is not an id"),
            ("/experiments/fff0000", 404, "no experiment matches"),
            ("/checkpoints/..%2F..%2Fetc/tarball", 404, "is not an id"),
            ("/compare?id=", 404, "empty id"),
        ],
    )
    def test_bad_ids(
        self,
        shared_disk: Written,
        serve: Callable[..., RunningUI],
        path: str,
        status: int,
        says: str,
    ) -> None:
        """Ids from the URL are checked like CLI ids: hexadecimal, unique prefixes."""
        ui = serve(shared_disk.url)
        reply = get(ui.base, path)
        assert reply.status == status
        assert says in reply.text

    def test_ambiguous_prefix(self, written_disk: Written, serve: Callable[..., RunningUI]) -> None:
        """A prefix of several experiments is refused, naming the candidates."""
        adam = written_disk.adam
        twin = adam[:-1] + ("0" if adam[-1] != "0" else "1")
        data = read_object(written_disk.url, f"metadata/experiments/{adam}.json")
        write_object(
            written_disk.url,
            f"metadata/experiments/{twin}.json",
            data.replace(adam.encode(), twin.encode()),
        )
        ui = serve(written_disk.url)
        reply = get(ui.base, f"/experiments/{adam[:63]}")
        assert reply.status == 400
        assert "ambiguous" in reply.text and adam[:12] in reply.text

    def test_file_not_in_the_checkpoint(
        self, shared_disk: Written, serve: Callable[..., RunningUI]
    ) -> None:
        """Only members of the tarball are served: any other path is a 404."""
        ui = serve(shared_disk.url)
        first = shared_disk.checkpoints["adam"][0]
        for path in ("train.py", "../model.pth", "model.pth/x"):
            assert get(ui.base, f"/checkpoints/{first}/files/{path}").status == 404
        metrics_only = shared_disk.checkpoints["adam"][3]
        reply = get(ui.base, f"/checkpoints/{metrics_only}/tarball")
        assert reply.status == 404 and "metrics only" in reply.text


class TestQueued:
    def test_local_queue_shows_on_the_page(
        self, written_disk: Written, serve: Callable[..., RunningUI]
    ) -> None:
        """A checkpoint still in this machine's spool shows as queued and cannot be downloaded."""
        from replicate.daemon.jobs import Job
        from replicate.daemon.spool import Spool, new_job_id
        from replicate.records import CheckpointRecord, PrimaryMetric
        from replicate.values import now

        spool = Spool(spool_of(written_disk))
        record = CheckpointRecord(
            id="ab" * 32,
            created=now(),
            metrics={"loss": 0.01},
            step=9,
            path="model.pth",
            primary_metric=PrimaryMetric("loss", "minimize"),
        )
        job = Job(
            id=new_job_id(),
            kind="checkpoint",
            owner="999999-deadbeef",
            repository=written_disk.url,
            experiment_id=written_disk.adam,
            root=spool.root,
            checkpoint=record,
        )
        spool.commit(job)
        ui = serve(written_disk.url, spool_of(written_disk))
        assert "abababa (step 9) (queued)" in get(ui.base, "/").text
        detail = get(ui.base, f"/api/experiments/{written_disk.adam}").json()
        assert detail["checkpoints"]["rows"][-1][-3]["text"] == "queued"
        reply = get(ui.base, f"/checkpoints/{'ab' * 32}/tarball")
        assert reply.status == 404 and "local upload queue" in reply.text
