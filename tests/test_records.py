"""Records and their JSON codec (repository format version 1)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from canon import canon
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from replicate import values
from replicate.errors import CorruptedMetadata, ReplicateError, ValidationError
from replicate.records import (
    CheckpointRecord,
    EncodingCache,
    ExperimentRecord,
    HeartbeatRecord,
    PrimaryMetric,
    decode_experiment,
    decode_heartbeat,
    encode_experiment,
    encode_heartbeat,
    normalize_goal,
)
from replicate.values import format_time, from_json_value, parse_time, to_json_value

RESERVED = {"[NaN]", "[+Infinity]", "[-Infinity]"}
T0 = datetime(2026, 11, 28, 11, 55, 42, 325783, tzinfo=UTC)

hypothesis_settings = settings(
    database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

# Strings equal to the three reserved encodings decode as floats, so they are left out.
texts = st.text(max_size=12).filter(lambda s: s not in RESERVED)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | texts
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=12,
)
json_dicts = st.dictionaries(texts, json_values, max_size=5)
hex_ids = st.text("0123456789abcdef", min_size=64, max_size=64)
utc_datetimes = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
)
primary_metrics = st.none() | st.builds(
    PrimaryMetric, texts.filter(bool), st.sampled_from(["maximize", "minimize"])
)
checkpoints = st.builds(
    CheckpointRecord,
    id=hex_ids,
    created=utc_datetimes,
    metrics=json_dicts,
    step=st.none() | st.integers(min_value=0, max_value=2**63),
    path=texts,
    primary_metric=primary_metrics,
)
experiments = st.builds(
    ExperimentRecord,
    id=hex_ids,
    created=utc_datetimes,
    params=json_dicts,
    host=texts,
    user=texts,
    config=st.fixed_dictionaries({"repository": texts, "storage": st.just("")}),
    command=texts,
    path=texts,
    python_version=texts,
    python_packages=st.dictionaries(texts, texts, max_size=4),
    checkpoints=st.lists(checkpoints, max_size=4).map(tuple),
    replicate_version=texts.filter(bool),
)


def make_checkpoint(**changes: Any) -> CheckpointRecord:
    """A checkpoint with sensible defaults."""
    fields: dict[str, Any] = {
        "id": "c" * 64,
        "created": T0,
        "metrics": {"loss": 0.5},
        "step": 0,
        "path": "",
        "primary_metric": PrimaryMetric("loss", "minimize"),
    }
    return CheckpointRecord(**{**fields, **changes})


def make_experiment(*cps: CheckpointRecord, **changes: Any) -> ExperimentRecord:
    """An experiment with sensible defaults."""
    fields: dict[str, Any] = {
        "id": "e" * 64,
        "created": T0,
        "params": {"lr": 0.01},
        "host": "gpu-1",
        "user": "ada",
        "config": {"repository": "file:///tmp/repo", "storage": ""},
        "command": "train.py",
        "path": ".",
        "python_version": "3.11.7",
        "python_packages": {"torch": "2.5.0"},
        "checkpoints": cps,
    }
    return ExperimentRecord(**{**fields, **changes})


def strict_loads(data: bytes) -> Any:
    """Parse JSON refusing the non-standard NaN/Infinity literals."""

    def refuse(name: str) -> Any:
        raise AssertionError(f"non-standard JSON constant {name}")

    return json.loads(data, parse_constant=refuse)


class TestRoundTrip:
    @hypothesis_settings
    @given(experiments)
    def test_experiment_identity(self, record: ExperimentRecord) -> None:
        """Decoding an encoded experiment gives back exactly the same record."""
        decoded = decode_experiment(encode_experiment(record), "k")
        assert canon(record) == canon(decoded)

    @hypothesis_settings
    @given(experiments)
    def test_output_is_standard_json(self, record: ExperimentRecord) -> None:
        """Encoded experiments are standard JSON: no NaN or Infinity literals, valid UTF-8."""
        strict_loads(encode_experiment(record))

    @hypothesis_settings
    @given(json_values)
    def test_value_identity(self, value: Any) -> None:
        """from_json_value inverts to_json_value for any JSON value with NaN and infinities."""
        assert canon(value) == canon(from_json_value(to_json_value(value)))

    @hypothesis_settings
    @given(hex_ids, utc_datetimes)
    def test_heartbeat_identity(self, experiment_id: str, when: datetime) -> None:
        """Decoding an encoded heartbeat gives back the same heartbeat."""
        record = HeartbeatRecord(experiment_id, when)
        assert record == decode_heartbeat(encode_heartbeat(record), "k")

    def test_special_floats_are_strings(self) -> None:
        """NaN, +inf and -inf are written as Keepsake's three strings."""
        cp = make_checkpoint(metrics={"a": math.nan, "b": math.inf, "c": -math.inf})
        assert cp.to_dict()["metrics"] == {"a": "[NaN]", "b": "[+Infinity]", "c": "[-Infinity]"}

    def test_reserved_strings_decode_as_floats(self) -> None:
        """The three reserved strings are read back as floats, nested anywhere."""
        value = from_json_value({"x": ["[NaN]", {"y": "[-Infinity]"}], "z": "[+Infinity]"})
        assert math.isnan(value["x"][0])
        assert -math.inf == value["x"][1]["y"]
        assert math.inf == value["z"]

    def test_uses_one_space_indent(self) -> None:
        """Experiments are written with Keepsake's 1-space indent."""
        assert encode_experiment(make_experiment()).startswith(b'{\n "id": ')

    def test_non_ascii_is_written_as_utf8(self) -> None:
        """Non-ASCII text is written as UTF-8, not as escapes."""
        data = encode_experiment(make_experiment(params={"name": "größe ∑ 模型"}))
        assert "größe ∑ 模型".encode() in data


class TestKeyOrder:
    def test_experiment_keys(self) -> None:
        """Experiment keys come in Keepsake's order with replicate_version last."""
        expected = [
            "id",
            "created",
            "params",
            "host",
            "user",
            "config",
            "command",
            "path",
            "python_version",
            "python_packages",
            "checkpoints",
            "replicate_version",
        ]
        assert expected == list(make_experiment().to_dict())
        assert expected == list(strict_loads(encode_experiment(make_experiment())))

    def test_checkpoint_keys(self) -> None:
        """Checkpoint keys come in Keepsake's order."""
        expected = ["id", "created", "metrics", "step", "path", "primary_metric"]
        encoded = strict_loads(encode_experiment(make_experiment(make_checkpoint())))
        assert expected == list(make_checkpoint().to_dict())
        assert expected == list(encoded["checkpoints"][0])

    def test_primary_metric_keys(self) -> None:
        """primary_metric is written as {name, goal}, or null when unset."""
        assert make_checkpoint().to_dict()["primary_metric"] == {"name": "loss", "goal": "minimize"}
        assert make_checkpoint(primary_metric=None).to_dict()["primary_metric"] is None

    def test_heartbeat_keys(self) -> None:
        """Heartbeats have experiment_id then last_heartbeat."""
        data = strict_loads(encode_heartbeat(HeartbeatRecord("e" * 64, T0)))
        assert data == {"experiment_id": "e" * 64, "last_heartbeat": "2026-11-28T11:55:42.325783Z"}


class TestTime:
    @pytest.mark.parametrize(
        ("fraction", "microsecond"),
        [
            ("", 0),
            (".1", 100000),
            (".12", 120000),
            (".123", 123000),
            (".1234", 123400),
            (".12345", 123450),
            (".123456", 123456),
            (".1234567", 123457),
            (".12345678", 123457),
            (".123456789", 123457),
        ],
    )
    def test_fraction_digits(self, fraction: str, microsecond: int) -> None:
        """0 to 9 fractional digits are read, rounded to the nearest microsecond."""
        parsed = parse_time(f"2026-11-28T11:55:42{fraction}Z")
        assert datetime(2026, 11, 28, 11, 55, 42, microsecond, tzinfo=UTC) == parsed

    def test_rounding_carries_into_the_next_second(self) -> None:
        """Nanoseconds that round up to a whole second carry over."""
        assert datetime(2027, 1, 1, tzinfo=UTC) == parse_time("2026-12-31T23:59:59.9999996Z")

    @pytest.mark.parametrize("suffix", ["Z", "z", "+00:00", "-00:00"])
    def test_utc_suffixes(self, suffix: str) -> None:
        """Z and a zero offset both mean UTC, and the result is aware UTC."""
        parsed = parse_time(f"2026-11-28T11:55:42.5{suffix}")
        assert parsed.tzinfo == UTC
        assert datetime(2026, 11, 28, 11, 55, 42, 500000, tzinfo=UTC) == parsed

    def test_other_offsets_are_converted(self) -> None:
        """A non-zero offset is converted to UTC."""
        assert datetime(2026, 11, 28, 9, 55, 42, tzinfo=UTC) == parse_time(
            "2026-11-28T11:55:42+02:00"
        )

    @pytest.mark.parametrize(
        "text",
        [
            "",
            "yesterday",
            "2026-11-28",
            "2026-11-28T11:55:42",
            "2026-11-28T11:55:42.Z",
            "2026-11-28T11:55:42.1234567890Z",
            "2026-13-28T11:55:42Z",
            "2026-11-28T11:55:42Z trailing",
        ],
    )
    def test_rejects_non_rfc3339(self, text: str) -> None:
        """Anything but an RFC 3339 timestamp with a zone raises ValidationError."""
        with pytest.raises(ValidationError, match="timestamp"):
            parse_time(text)

    def test_format_writes_microseconds_and_z(self) -> None:
        """Timestamps are written in UTC with 6 fractional digits and Z."""
        assert format_time(T0.replace(microsecond=0)) == "2026-11-28T11:55:42.000000Z"
        assert (
            format_time(datetime(5, 1, 2, 3, 4, 5, 6, tzinfo=UTC)) == "0005-01-02T03:04:05.000006Z"
        )

    @hypothesis_settings
    @given(
        st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 1, 1)),
        st.integers(min_value=-23 * 60, max_value=23 * 60),
    )
    def test_format_parse_identity_any_zone(self, naive: datetime, minutes: int) -> None:
        """format_time then parse_time gives the same instant, in UTC, for any offset."""
        aware = naive.replace(tzinfo=timezone(timedelta(minutes=minutes)))
        parsed = parse_time(format_time(aware))
        assert aware == parsed
        assert parsed.tzinfo == UTC

    def test_format_refuses_naive(self) -> None:
        """A naive datetime is refused rather than guessed."""
        with pytest.raises(ValidationError, match="naive"):
            format_time(datetime(2026, 1, 1))

    def test_now_is_aware_utc(self) -> None:
        """now() is timezone-aware UTC."""
        assert values.now().tzinfo == UTC


class FakeArray:
    """A numpy/torch look-alike with tolist()."""

    def __init__(self, data: Any) -> None:
        self.data = data

    def tolist(self) -> Any:
        return self.data


class FakeScalar:
    """A scalar look-alike that only has item()."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def item(self) -> Any:
        return self.value


class TestToJsonValue:
    def test_duck_typed_arrays(self) -> None:
        """Objects with tolist() are converted, NaN inside them included."""
        value = {"w": FakeArray([[1.0, math.nan], [2, 3]])}
        assert to_json_value(value) == {"w": [[1.0, "[NaN]"], [2, 3]]}

    def test_duck_typed_scalars(self) -> None:
        """Objects with only item() are converted, and infinities encoded."""
        assert to_json_value([FakeScalar(0.25), FakeScalar(math.inf)]) == [0.25, "[+Infinity]"]

    def test_tuples_become_lists(self) -> None:
        """Tuples are written as lists."""
        assert to_json_value({"shape": (3, (4, 5))}) == {"shape": [3, [4, 5]]}

    def test_subclasses_become_plain(self) -> None:
        """int, float and str subclasses become the plain types; bools stay bools."""

        class MyFloat(float):
            pass

        class MyStr(str):
            __slots__ = ()

        converted = to_json_value([MyFloat(1.5), MyStr("a"), True])
        assert [float, str, bool] == [type(v) for v in converted]

    def test_error_names_where_and_type(self) -> None:
        """A value that is not JSON names where it is and its type."""
        with pytest.raises(ValidationError, match=r"params\['lr'\].*object"):
            to_json_value({"lr": object()}, where="params")

    def test_error_names_nested_where(self) -> None:
        """The location of a nested bad value includes list indexes and dict keys."""
        with pytest.raises(ValidationError, match=r"params\['a'\]\[1\]\['b'\].*set"):
            to_json_value({"a": [1, {"b": {1, 2}}]}, where="params")

    def test_non_string_key(self) -> None:
        """Dict keys must be strings; the error names the key and where."""
        with pytest.raises(ValidationError, match=r"metrics\['x'\].*key 3.*int"):
            to_json_value({"x": {3: 1}}, where="metrics")

    def test_bytes_refused(self) -> None:
        """bytes are not JSON and are refused."""
        with pytest.raises(ValidationError, match="bytes"):
            to_json_value(b"raw")

    def test_lone_surrogate_refused(self) -> None:
        """Strings that cannot be written as UTF-8 are refused."""
        with pytest.raises(ValidationError, match="UTF-8"):
            to_json_value({"s": "\ud800"}, where="params")

    def test_tolist_returning_itself_refused(self) -> None:
        """A tolist() that returns the object itself does not loop forever."""

        class Weird:
            def tolist(self) -> Any:
                return self

        with pytest.raises(ValidationError, match="Weird"):
            to_json_value(Weird())

    def test_validation_error_is_value_error(self) -> None:
        """ValidationError is both a ReplicateError and a ValueError."""
        with pytest.raises(ValidationError) as info:
            to_json_value(object())
        assert isinstance(info.value, ReplicateError)
        assert isinstance(info.value, ValueError)

    def test_experiment_with_bad_params_does_not_encode(self) -> None:
        """Encoding an experiment with non-JSON params raises ValidationError naming the param."""
        with pytest.raises(ValidationError, match=r"params\['model'\]"):
            encode_experiment(make_experiment(params={"model": object()}))


class TestNormalizeGoal:
    @pytest.mark.parametrize(
        ("given_goal", "expected"),
        [
            ("maximize", "maximize"),
            ("MAXIMIZE", "maximize"),
            ("Minimize", "minimize"),
            (" minimize ", "minimize"),
        ],
    )
    def test_accepts_any_case(self, given_goal: str, expected: str) -> None:
        """Both goals are accepted in any case."""
        assert expected == normalize_goal(given_goal)

    @pytest.mark.parametrize("bad", ["max", "min", "minimise", "", "ascending"])
    def test_rejects_others(self, bad: str) -> None:
        """Anything else raises ValidationError naming the two allowed values."""
        with pytest.raises(ValidationError, match="'maximize' or 'minimize'"):
            normalize_goal(bad)


class TestBestAndLatest:
    def test_minimize(self) -> None:
        """With minimize, the lowest value wins."""
        cps = [
            make_checkpoint(id=str(i) * 64, metrics={"loss": v}) for i, v in enumerate([3, 1, 2])
        ]
        assert cps[1] == make_experiment(*cps).best()

    def test_maximize(self) -> None:
        """With maximize, the highest value wins."""
        pm = PrimaryMetric("acc", "maximize")
        cps = [
            make_checkpoint(id=str(i) * 64, metrics={"acc": v}, primary_metric=pm)
            for i, v in enumerate([0.1, 0.9, 0.5])
        ]
        assert cps[1] == make_experiment(*cps).best()

    def test_ties_go_to_the_earliest(self) -> None:
        """Among equal values the earliest checkpoint wins."""
        cps = [make_checkpoint(id=str(i) * 64, metrics={"loss": 1}) for i in range(3)]
        assert cps[0] is make_experiment(*cps).best()

    def test_ignores_ineligible_checkpoints(self) -> None:
        """Checkpoints without a primary metric or with a non-finite or non-numeric value are skipped."""
        eligible = make_checkpoint(id="9" * 64, metrics={"loss": 5.0})
        cps = [
            make_checkpoint(id="1" * 64, metrics={"loss": 0.0}, primary_metric=None),
            make_checkpoint(id="2" * 64, metrics={"loss": math.nan}),
            make_checkpoint(id="3" * 64, metrics={"loss": -math.inf}),
            make_checkpoint(id="4" * 64, metrics={"loss": False}),
            make_checkpoint(id="5" * 64, metrics={"loss": "0.1"}),
            make_checkpoint(id="6" * 64, metrics={"accuracy": 0.0}),
            make_checkpoint(id="7" * 64, metrics={"loss": None}),
            eligible,
        ]
        assert eligible is make_experiment(*cps).best()

    def test_no_eligible_checkpoint(self) -> None:
        """best() is None when no checkpoint qualifies or there are none."""
        assert make_experiment(make_checkpoint(primary_metric=None)).best() is None
        assert make_experiment().best() is None

    def test_latest_is_last(self) -> None:
        """latest() is the last checkpoint in the list, or None when there are none."""
        cps = [make_checkpoint(id=str(i) * 64, step=i) for i in range(3)]
        assert cps[2] is make_experiment(*cps).latest()
        assert make_experiment().latest() is None

    def test_with_checkpoints(self) -> None:
        """with_checkpoints returns a new record and leaves the original alone."""
        original = make_experiment()
        updated = original.with_checkpoints(iter([make_checkpoint()]))
        assert (make_checkpoint(),) == updated.checkpoints
        assert original.checkpoints == ()

    def test_default_version(self) -> None:
        """replicate_version defaults to the library's version."""
        import replicate

        assert getattr(replicate, "__version__", "0.1.0") == make_experiment().replicate_version


class TestDecoding:
    def minimal(self, **changes: Any) -> bytes:
        """A minimal experiment JSON with ``changes`` applied (None deletes a key)."""
        d: dict[str, Any] = {"id": "e" * 64, "created": "2026-11-28T11:55:42Z"}
        d.update(changes)
        return json.dumps(d).encode()

    def test_lenient_on_nulls_and_missing_fields(self) -> None:
        """Null or missing path, host, step and containers get empty defaults."""
        cp = {"id": "c" * 64, "created": "2026-11-28T11:55:42Z", "step": None, "path": None}
        record = decode_experiment(self.minimal(host=None, path=None, checkpoints=[cp]), "k")
        assert (record.host, record.path, record.params, record.config) == ("", "", {}, {})
        assert (
            record.checkpoints[0].step,
            record.checkpoints[0].path,
            record.checkpoints[0].metrics,
            record.checkpoints[0].primary_metric,
        ) == (None, "", {}, None)

    def test_reads_keepsake_version(self) -> None:
        """keepsake_version is read as replicate_version; replicate_version wins if both exist."""
        assert (
            decode_experiment(self.minimal(keepsake_version="0.4.2"), "k").replicate_version
            == "0.4.2"
        )
        both = self.minimal(keepsake_version="0.4.2", replicate_version="0.1.0")
        assert decode_experiment(both, "k").replicate_version == "0.1.0"

    def test_goal_casing_and_unknown_goals(self) -> None:
        """Goals are read case-insensitively; unknown goals mean minimize, as Keepsake did."""
        cps = [
            {
                "id": "1" * 64,
                "created": "2026-11-28T11:55:42Z",
                "primary_metric": {"name": "a", "goal": "MAXIMIZE"},
            },
            {
                "id": "2" * 64,
                "created": "2026-11-28T11:55:42Z",
                "primary_metric": {"name": "a", "goal": "min"},
            },
        ]
        record = decode_experiment(self.minimal(checkpoints=cps), "k")
        assert [c.primary_metric.goal for c in record.checkpoints if c.primary_metric] == [
            "maximize",
            "minimize",
        ]

    def test_integral_float_step(self) -> None:
        """A step written as 3.0 is read as the int 3."""
        cp = {"id": "c" * 64, "created": "2026-11-28T11:55:42Z", "step": 3.0}
        step = decode_experiment(self.minimal(checkpoints=[cp]), "k").checkpoints[0].step
        assert step == 3
        assert isinstance(step, int)

    @pytest.mark.parametrize(
        ("data", "reason"),
        [
            (b"", "Expecting value"),
            (b"{not json", "Expecting"),
            (b"[]", "JSON object"),
            (b"\xff\xff", "codec can.t decode"),
            (b'{"created": "2026-11-28T11:55:42Z"}', "'id'"),
            (b'{"id": "x", "created": "last tuesday"}', "timestamp"),
            (b'{"id": "x", "created": "2026-11-28T11:55:42Z", "params": [1]}', "'params'"),
            (b'{"id": "x", "created": "2026-11-28T11:55:42Z", "checkpoints": [1]}', "checkpoints"),
            (
                (
                    b'{"id": "x", "created": "2026-11-28T11:55:42Z", "checkpoints": '
                    b'[{"id": "y", "created": "2026-11-28T11:55:42Z", "step": "two"}]}'
                ),
                "'step'",
            ),
            (
                b'{"id": "x", "created": "2026-11-28T11:55:42Z", "python_packages": {"a": 1}}',
                "python_packages",
            ),
        ],
    )
    def test_corrupted(self, data: bytes, reason: str) -> None:
        """Anything undecodable raises CorruptedMetadata carrying the key and the reason."""
        with pytest.raises(CorruptedMetadata, match=reason) as info:
            decode_experiment(data, "metadata/experiments/x.json")
        assert info.value.key == "metadata/experiments/x.json"
        assert "metadata/experiments/x.json" in str(info.value)
        assert "\n" not in str(info.value)

    @pytest.mark.parametrize(
        "data", [b"{}", b'{"experiment_id": "e", "last_heartbeat": 5}', b"null", b"\x00"]
    )
    def test_corrupted_heartbeat(self, data: bytes) -> None:
        """An undecodable heartbeat raises CorruptedMetadata carrying the key."""
        with pytest.raises(CorruptedMetadata) as info:
            decode_heartbeat(data, "metadata/heartbeats/e.json")
        assert info.value.key == "metadata/heartbeats/e.json"


class TestIncrementalEncoding:
    @settings(max_examples=50, deadline=None)
    @given(experiments)
    def test_cached_encoding_is_byte_identical(self, record: ExperimentRecord) -> None:
        """Encoding with a per-checkpoint cache gives exactly the bytes of a full encode."""
        cache: EncodingCache = {}
        assert encode_experiment(record, cache) == encode_experiment(record)
        assert encode_experiment(record, cache) == encode_experiment(record)  # from the cache
