"""`replicate verify` against repositories written for real, damaged through the storage layer."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

from cli.helpers import (
    KEEPSAKE_BEST,
    KEEPSAKE_SGD,
    Written,
    invoke,
    read_object,
    run_cli,
    write_object,
)
from replicate.daemon import Daemon
from replicate.ids import short_id
from replicate.records import CheckpointRecord
from replicate.repository import Repository, archive_key, experiment_key


def delete_object(url: str, key: str) -> None:
    async def delete(repository: Repository) -> None:
        await repository.storage.delete(key)

    Daemon.get().with_repository(url, delete)


def truncate_object(url: str, key: str) -> None:
    data = read_object(url, key)
    write_object(url, key, data[: len(data) // 2])


def tarball(members: dict[str, bytes]) -> bytes:
    """A gzip'd tar holding ``members`` under exactly the names given."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue())


def damage(written: Written) -> tuple[str, str, str]:
    """Truncate adam's step-0 tarball, delete its step-1 tarball, garble sgd's JSON."""
    truncated, deleted = written.checkpoints["adam"][:2]
    truncate_object(written.url, archive_key("checkpoints", truncated))
    delete_object(written.url, archive_key("checkpoints", deleted))
    write_object(written.url, experiment_key(written.sgd), b'{"id": "not json')
    return truncated, deleted, written.sgd


def queue_checkpoint(written: Written, record: CheckpointRecord, experiment_id: str) -> None:
    """Put a checkpoint job of a dead process into the project's spool (as a crash leaves it)."""
    from replicate.daemon.jobs import Job
    from replicate.daemon.spool import Spool, new_job_id

    spool = Spool(written.project / ".replicate" / "spool")
    spool.commit(
        Job(
            id=new_job_id(),
            kind="checkpoint",
            owner="999999-deadbeef",
            repository=written.url,
            experiment_id=experiment_id,
            root=spool.root,
            checkpoint=record,
        )
    )


class TestVerifyClean:
    def test_written_repository_is_clean(self, written: Written) -> None:
        """A repository from init/checkpoint/stop verifies clean; metrics-only steps need no tarball."""
        result = invoke("verify")
        assert result.exit_code == 0, result.output
        # adam: code + 3 checkpoints with files (step 3 is metrics-only); sgd: code + 2
        assert len(result.stdout.splitlines()) == 1
        assert result.stdout.startswith("checked 2 experiments, 7 tarballs (")
        assert result.stdout.rstrip().endswith("): 0 problems")

    def test_json_is_an_empty_list(self, written: Written) -> None:
        """--json on a clean repository prints [] and exits 0."""
        result = invoke("verify", "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout) == []

    def test_keepsake_sample_is_clean(self, keepsake: Path) -> None:
        """The repository written by Keepsake 0.4.2 verifies clean (members under their ids)."""
        result = invoke("verify")
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith("checked 3 experiments, 4 tarballs (")
        assert result.stdout.rstrip().endswith("0 problems")


class TestVerifyDamage:
    def test_reports_exactly_the_damage(self, written: Written) -> None:
        """Truncated, deleted and unreadable objects give three lines, a summary and exit 1."""
        truncated, deleted, garbled = damage(written)
        result = invoke("verify", "-R", written.url)
        assert result.exit_code == 1
        lines = result.stdout.splitlines()
        assert len(lines) == 4, result.stdout
        assert lines[-1].startswith("checked 2 experiments, 4 tarballs (")
        assert lines[-1].endswith("3 problems")
        problems = lines[:-1]
        assert problems[0].startswith(f"experiment {short_id(garbled)}: corrupted metadata in ")
        missing = next(line for line in problems if short_id(deleted) in line)
        assert missing.startswith(f"checkpoint {short_id(deleted)} (step 1) of experiment ")
        assert "is missing" in missing
        assert f"`replicate rm {short_id(deleted)}`" in missing
        assert "`replicate wait`" in missing
        cut = next(line for line in problems if short_id(truncated) in line)
        assert f"{archive_key('checkpoints', truncated)} is truncated" in cut
        assert f"`replicate rm {short_id(truncated)}`" in cut

    def test_json_lists_the_damage(self, written: Written) -> None:
        """--json gives one {kind, id, experiment, problem} per problem and exits 1."""
        truncated, deleted, garbled = damage(written)
        result = invoke("verify", "--json")
        assert result.exit_code == 1
        body = json.loads(result.stdout)
        assert all(set(p) == {"kind", "id", "experiment", "problem"} for p in body)
        found = {(p["kind"], p["id"], p["experiment"]) for p in body}
        assert found == {
            ("experiment", garbled, garbled),
            ("checkpoint", deleted, written.adam),
            ("checkpoint", truncated, written.adam),
        }
        by_id = {p["id"]: p["problem"] for p in body}
        assert "is truncated" in by_id[truncated]
        assert "is missing" in by_id[deleted]


class TestVerifyTarballs:
    def test_garbage_tarball_is_damaged(self, written_on_disk: Written) -> None:
        """A tarball that is not gzip at all is reported as damaged."""
        chosen = written_on_disk.checkpoints["sgd"][0]
        write_object(written_on_disk.url, archive_key("checkpoints", chosen), b"not a tarball")
        result = invoke("verify")
        assert result.exit_code == 1
        assert f"{archive_key('checkpoints', chosen)} is damaged" in result.stdout

    def test_member_outside_its_id(self, written_on_disk: Written) -> None:
        """A whole tarball whose member is not under <id>/ is reported, naming the member."""
        chosen = written_on_disk.checkpoints["sgd"][1]
        body = tarball({"someone-else/model.pth": b"weights\n"})
        write_object(written_on_disk.url, archive_key("checkpoints", chosen), body)
        result = invoke("verify")
        assert result.exit_code == 1
        lines = result.stdout.splitlines()
        assert len(lines) == 2
        assert "'someone-else/model.pth', a member outside" in lines[0]

    def test_code_tarball_missing(self, written_on_disk: Written) -> None:
        """An experiment whose code tarball is gone is reported as the experiment's problem."""
        delete_object(written_on_disk.url, archive_key("experiments", written_on_disk.adam))
        body = json.loads(invoke("verify", "--json").stdout)
        assert [(p["kind"], p["id"]) for p in body] == [("experiment", written_on_disk.adam)]
        assert "experiments/" in body[0]["problem"] and "is missing" in body[0]["problem"]


class TestVerifySelection:
    def test_prefixes_limit_the_check(self, written_on_disk: Written) -> None:
        """Only the named experiment or checkpoint is checked; damage elsewhere is not seen."""
        adam = written_on_disk.checkpoints["adam"]
        truncate_object(written_on_disk.url, archive_key("checkpoints", adam[0]))
        sgd = invoke("verify", written_on_disk.sgd[:8])
        assert sgd.exit_code == 0, sgd.output
        assert sgd.stdout.startswith("checked 1 experiment, 3 tarballs (")
        other = invoke("verify", adam[1][:10])
        assert other.exit_code == 0, other.output
        assert other.stdout.startswith("checked 1 experiment, 1 tarball (")
        damaged = invoke("verify", adam[0][:10], written_on_disk.sgd)
        assert damaged.exit_code == 1
        assert damaged.stdout.splitlines()[-1].startswith("checked 2 experiments, 4 tarballs (")

    def test_unknown_prefix_is_an_error(self, written_on_disk: Written) -> None:
        """An id prefix matching nothing is one line on stderr and exit 1."""
        result = invoke("verify", "0000000")
        assert result.exit_code == 1
        assert "no experiment or checkpoint matches '0000000'" in result.stderr

    def test_prefix_of_an_unreadable_experiment(self, written_on_disk: Written) -> None:
        """A prefix naming an experiment whose JSON is garbage reports it instead of failing."""
        write_object(written_on_disk.url, experiment_key(written_on_disk.sgd), b"\x00garbage")
        result = invoke("verify", written_on_disk.sgd[:7])
        assert result.exit_code == 1
        assert result.stdout.startswith(f"experiment {short_id(written_on_disk.sgd)}: corrupted")


class TestVerifyQueued:
    def test_queued_checkpoint_is_still_uploading(self, written_on_disk: Written) -> None:
        """A checkpoint still in the local spool is reported as still uploading, not missing."""
        landed = written_on_disk.checkpoints["adam"][0]

        def record_of(id: str) -> CheckpointRecord:
            async def load(repository: Repository) -> CheckpointRecord:
                experiment = await repository.load_experiment(written_on_disk.adam)
                return next(c for c in experiment.checkpoints if c.id == id)

            return Daemon.get().with_repository(written_on_disk.url, load)

        delete_object(written_on_disk.url, archive_key("checkpoints", landed))
        queue_checkpoint(written_on_disk, record_of(landed), written_on_disk.adam)
        unlisted = CheckpointRecord(
            id="ab" * 32,
            created=record_of(landed).created,
            metrics={"loss": 0.01},
            step=9,
            path="model.pth",
            primary_metric=None,
        )
        queue_checkpoint(written_on_disk, unlisted, written_on_disk.adam)
        result = invoke("verify")
        assert result.exit_code == 1
        lines = result.stdout.splitlines()
        assert len(lines) == 3, result.stdout
        assert "missing" not in result.stdout
        assert lines[0].startswith(f"checkpoint {short_id(landed)} (step 0)")
        assert lines[1].startswith("checkpoint abababa (step 9)")
        assert all(
            "still uploading: queued in the local upload queue" in line for line in lines[:2]
        )
        assert all("`replicate wait`" in line for line in lines[:2])
        assert lines[2].endswith("2 problems")


class TestVerifySubprocess:
    def test_truncated_keepsake_checkpoint(self, keepsake: Path) -> None:
        """In a real process a truncated tarball is one stdout line, nothing on stderr, exit 1."""
        url = (keepsake / ".keepsake").as_uri()
        truncate_object(url, archive_key("checkpoints", KEEPSAKE_BEST))
        result = run_cli(keepsake, "verify")
        assert result.returncode == 1, result.stderr
        assert result.stderr == ""
        lines = result.stdout.splitlines()
        assert len(lines) == 2
        assert lines[0].startswith(f"checkpoint {short_id(KEEPSAKE_BEST)} (step 2) of experiment")
        assert "is truncated" in lines[0]
        assert lines[1].startswith("checked 3 experiments, 4 tarballs (")
        assert lines[1].endswith(": 1 problem")
        clean = run_cli(keepsake, "verify", KEEPSAKE_SGD[:7])
        assert clean.returncode == 0, clean.stderr
        assert clean.stdout == "checked 1 experiment, 0 tarballs (0 bytes): 0 problems\n"


class TestVerifyCommand:
    def test_help_names_the_options(self) -> None:
        """verify is registered and documents its options."""
        result = invoke("verify", "--help")
        assert result.exit_code == 0
        assert "--json" in result.stdout and "-R, --repository" in result.stdout
