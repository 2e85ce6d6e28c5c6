"""The Python read API: replicate.read.experiments, views, open() and checkout(), notebooks."""

from __future__ import annotations

import io
import math
import sys
from pathlib import Path

import pytest
from cli.helpers import (
    KEEPSAKE_BEST,
    KEEPSAKE_FIRST,
    KEEPSAKE_LATEST,
    Written,
    read_object,
    write_experiments,
    write_object,
)

from replicate.errors import (
    AmbiguousID,
    ConfigError,
    CorruptedArchive,
    DoesNotExist,
    ValidationError,
)
from replicate.read import CheckpointList, ExperimentList, experiments
from replicate.repository import archive_key


@pytest.fixture
def written(repo_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Written:
    """Two experiments written by the write path on each backend; cwd elsewhere."""
    result = write_experiments(repo_url, tmp_path / "project")
    monkeypatch.chdir(tmp_path)
    return result


class TestList:
    def test_list_and_get(self, written: Written) -> None:
        """list() gives every experiment oldest first; get() finds one by prefix."""
        found = experiments.list(repository=written.url)
        assert type(found) is ExperimentList and isinstance(found, list)
        assert [e.id for e in found] == [written.adam, written.sgd]
        assert experiments.get(written.sgd[:6], repository=written.url).params["optimizer"] == "sgd"

    def test_filters(self, written: Written) -> None:
        """A filter string, a list of them, or a function select experiments."""
        url = written.url
        assert [e.id for e in experiments.list("loss < 0.3", repository=url)] == [written.adam]
        both = experiments.list(["lr > 0", "optimizer != adam"], repository=url)
        assert [e.id for e in both] == [written.sgd]
        picked = experiments.list(lambda e: e.params["lr"] == 0.1, repository=url)
        assert [e.id for e in picked] == [written.adam]

    def test_filter_mixed_types(self, written: Written) -> None:
        """Ordering a string param against a number raises ValidationError."""
        with pytest.raises(ValidationError, match="compare numbers with numbers"):
            experiments.list("optimizer < 1", repository=written.url)

    def test_project_dir_config(self, written: Written) -> None:
        """Without repository=, the replicate.yaml of project_dir names the repository."""
        (written.project / "replicate.yaml").write_text(f"repository: {written.url}\n")
        found = experiments.list(project_dir=written.project)
        assert len(found) == 2


class TestExperimentView:
    def test_best_latest_running(self, written: Written) -> None:
        """best() is by the primary metric, latest() is the last, stopped is not running."""
        adam = experiments.get(written.adam, repository=written.url)
        best, latest = adam.best(), adam.latest()
        assert best is not None and best.id == written.checkpoints["adam"][2]
        assert latest is not None and latest.step == 3 and latest.primary_metric is None
        assert adam.is_running() is False and adam.status == "stopped"
        assert adam.duration.total_seconds() >= 0

    def test_checkpoint_columns(self, written: Written) -> None:
        """checkpoints.metrics["name"] has one value per checkpoint, None where missing."""
        checkpoints = experiments.get(written.adam, repository=written.url).checkpoints
        assert isinstance(checkpoints, CheckpointList)
        assert checkpoints.step == [0, 1, 2, 3]
        assert checkpoints.metrics["loss"] == [1.0, 0.5, 0.25, 0.1]
        assert checkpoints.metrics["accuracy"] == [0.0, 0.5, 0.75, None]
        assert list(checkpoints.metrics) == ["loss", "accuracy"]
        with pytest.raises(KeyError, match="loss"):
            checkpoints.metrics["lost"]

    def test_running_while_heartbeat_is_fresh(self, tmp_path: Path) -> None:
        """is_running() is True between init() and stop()."""
        import replicate

        url = (tmp_path / "repo").as_uri()
        experiment = replicate.init(params={"a": 1}, repository=url, project_dir=tmp_path)
        try:
            experiment.wait(30)
            assert experiments.get(experiment.id, repository=url).is_running()
        finally:
            experiment.stop()
        assert not experiments.get(experiment.id, repository=url).is_running()

    def test_html(self, written: Written) -> None:
        """Lists and experiments render as HTML tables in notebooks."""
        found = experiments.list(repository=written.url)
        html = found._repr_html_()
        assert "<table>" in html and written.adam[:7] in html and "lr" in html
        assert written.checkpoints["adam"][2][:7] in found[0]._repr_html_()


class TestOpen:
    def test_open_is_seekable(self, written: Written) -> None:
        """open() returns a seekable binary file of the checkpoint's member (torch.load needs it)."""
        best = experiments.get(written.adam, repository=written.url).best()
        assert best is not None
        with best.open("model.pth") as f:
            assert f.read() == b"adam weights at step 2\n"
            f.seek(0)
            assert io.BytesIO(f.read()).getvalue() == b"adam weights at step 2\n"

    def test_open_code_file(self, written: Written) -> None:
        """A file that is not in the checkpoint comes from the experiment's code."""
        latest = experiments.get(written.sgd, repository=written.url).latest()
        assert latest is not None
        with latest.open("train.py") as f:
            assert f.read() == b"print('training')\n"

    def test_open_missing(self, written: Written) -> None:
        """A path in neither tarball raises DoesNotExist naming it."""
        best = experiments.get(written.adam, repository=written.url).best()
        assert best is not None
        with pytest.raises(DoesNotExist, match=r"nope\.bin"):
            best.open("nope.bin")

    def test_checkout(self, written: Written, tmp_path: Path) -> None:
        """checkout(output_dir, paths) writes the selected files of that checkpoint."""
        first = experiments.get(written.adam, repository=written.url).checkpoints[0]
        result = first.checkout(tmp_path / "out", paths=["model.pth"])
        assert result.files == ["model.pth"]
        assert (tmp_path / "out" / "model.pth").read_bytes() == b"adam weights at step 0\n"


class TestKeepsake:
    def test_best_and_mixed_primary_metric(self, keepsake: Path) -> None:
        """The sample's first experiment: best is step 2 by loss, latest has no primary metric."""
        first = experiments.get(KEEPSAKE_FIRST[:7])
        assert first.best() is not None and first.best().id == KEEPSAKE_BEST  # type: ignore[union-attr]
        assert first.latest() is not None and first.latest().id == KEEPSAKE_LATEST  # type: ignore[union-attr]
        assert math.isnan(first.checkpoints.metrics["nan_metric"][0])

    def test_open_and_checkout(self, keepsake: Path, tmp_path: Path) -> None:
        """open() and checkout() of 5a9beec give data/weights.txt of step 2."""
        best = experiments.get(KEEPSAKE_FIRST[:7]).best()
        assert best is not None
        with best.open("data/weights.txt") as f:
            assert f.read() == b"weights at step 2\n"
        best.checkout(tmp_path / "out")
        assert (tmp_path / "out" / "data" / "weights.txt").read_bytes() == b"weights at step 2\n"

    def test_open_stops_at_the_member(self, keepsake: Path, tmp_path: Path) -> None:
        """open() streams up to its member: damage after it does not matter; checkout sees it."""
        url = (keepsake / ".keepsake").as_uri()
        key = archive_key("experiments", KEEPSAKE_FIRST)
        data = read_object(url, key)
        write_object(url, key, data[: len(data) - 30])  # cut into the end-of-archive blocks
        first = experiments.get(KEEPSAKE_FIRST[:7])
        checkpoint = first.checkpoints[0]
        with checkpoint.open(".keepsakeignore") as f:
            assert f.read().startswith(b"*.ignoreme")
        with pytest.raises(CorruptedArchive, match="truncated"):
            checkpoint.checkout(tmp_path / "out")
        assert not (tmp_path / "out").exists()

    def test_get_errors(self, keepsake: Path) -> None:
        """Unknown, ambiguous and checkpoint prefixes give clear errors."""
        with pytest.raises(DoesNotExist, match="matches 'ffff'"):
            experiments.get("ffff")
        with pytest.raises(AmbiguousID):
            experiments.list().get("9")
        with pytest.raises(DoesNotExist, match="is checkpoint 5a9beec of experiment 928ecab"):
            experiments.get(KEEPSAKE_BEST[:7])


class TestNotebookExtras:
    def test_missing_matplotlib(self, keepsake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without matplotlib, plot() and scatter() say how to install it."""
        monkeypatch.setitem(sys.modules, "matplotlib", None)
        monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
        found = experiments.list()
        with pytest.raises(ImportError, match=r"pip install 'replicate\[plot\]'"):
            found.plot("loss")
        with pytest.raises(ConfigError, match="matplotlib"):
            found.scatter("learning_rate", "loss")

    def test_missing_pandas(self, keepsake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without pandas, to_dataframe() says how to install it."""
        monkeypatch.setitem(sys.modules, "pandas", None)
        with pytest.raises(ImportError, match=r"pip install 'replicate\[dataframe\]'"):
            experiments.list().to_dataframe()

    def test_plot(self, keepsake: Path) -> None:
        """plot() draws one line per experiment that has the metric (matplotlib installed)."""
        pytest.importorskip("matplotlib")
        import matplotlib

        matplotlib.use("Agg")
        ax = experiments.list().plot("loss")
        assert len(ax.get_lines()) == 3
        assert experiments.list().scatter("learning_rate", "loss") is not None

    def test_dataframe(self, keepsake: Path) -> None:
        """to_dataframe() has one row per experiment with params.* and metrics.* columns."""
        pytest.importorskip("pandas")
        frame = experiments.list().to_dataframe()
        assert len(frame) == 3
        assert "params.learning_rate" in frame.columns and "metrics.loss" in frame.columns


def _tar_gz(members: dict[str, bytes], *, fmt: int = 1) -> bytes:
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=fmt) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _extract(data: bytes, dest: Path, *, step: int = 1 << 20) -> dict[str, bytes]:
    from replicate.extract import ExtractTo, Unpacker

    sink = ExtractTo(dest)
    unpacker = Unpacker(sink, "test.tar.gz")
    for start in range(0, len(data), step):
        unpacker.feed(data[start : start + step])
    unpacker.close()
    return {rel: (dest / rel).read_bytes() for rel in sink.written}


class TestUnpacker:
    def test_packer_round_trip_byte_by_byte(self, tmp_path: Path) -> None:
        """What Packer writes (GNU long names included) unpacks the same, fed one byte at a time."""
        from replicate.archive import tar_stream
        from replicate.gzip_blocks import Packer

        long_name = "deep/" * 30 + "weights.bin"
        files = {"a.txt": b"alpha\n", long_name: bytes(range(256)) * 40, "empty": b""}
        for rel, data in files.items():
            (tmp_path / "src" / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / "src" / rel).write_bytes(data)
        packer = Packer(tar_stream([(tmp_path / "src" / rel, rel) for rel in files], "someid"))
        data = b"".join(iter(packer.read, b""))
        assert _extract(data, tmp_path / "out", step=1) == files

    def test_pax_names(self, tmp_path: Path) -> None:
        """PAX headers (long non-ASCII names, as Go's archive/tar writes) give the right path."""
        import tarfile

        name = "id/" + "é" * 120 + ".txt"
        data = _tar_gz({name: b"pax"}, fmt=tarfile.PAX_FORMAT)
        assert _extract(data, tmp_path) == {name[3:]: b"pax"}

    def test_truncated_and_damaged(self, tmp_path: Path) -> None:
        """A cut stream or a flipped byte raises CorruptedArchive."""
        data = _tar_gz({"id/a": b"x" * 5000})
        with pytest.raises(CorruptedArchive, match="truncated"):
            _extract(data[:-10], tmp_path / "cut")
        damaged = bytearray(data)
        damaged[len(damaged) // 2] ^= 0xFF
        with pytest.raises(CorruptedArchive):
            _extract(bytes(damaged), tmp_path / "flipped")

    def test_unsafe_member(self, tmp_path: Path) -> None:
        """A member escaping the target directory is refused."""
        with pytest.raises(CorruptedArchive, match="unsafe"):
            _extract(_tar_gz({"id/../../evil": b"x"}), tmp_path / "out")
        assert not (tmp_path / "evil").exists()

    def test_multi_member_gzip(self, tmp_path: Path) -> None:
        """Concatenated gzip members are read as one stream."""
        import gzip
        import tarfile

        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
            info = tarfile.TarInfo("id/two.txt")
            info.size = 3
            tar.addfile(info, io.BytesIO(b"two"))
        body = raw.getvalue()
        data = gzip.compress(body[:700]) + gzip.compress(body[700:])
        assert _extract(data, tmp_path) == {"two.txt": b"two"}
