"""Wire encoding of events, attempt outcomes, settings parsing and topic names."""

from __future__ import annotations

import os
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import orjson
import pytest
from pydantic import BaseModel, ValidationError

from runmesh.core.errors import (
    DecodeError,
    JobCrashedError,
    PluginError,
    RunCancelledError,
    RunmeshError,
)
from runmesh.core.events import (
    EVENT_TYPES,
    SCHEMA_VERSION,
    TERMINAL_EVENT_TYPES,
    TERMINAL_STATES,
    ActionManifest,
    ArtifactPayload,
    CancelledPayload,
    CancelRun,
    FailedPayload,
    LogPayload,
    MetricPayload,
    PluginManifest,
    ProgressPayload,
    RetryingPayload,
    RunArtifact,
    RunCancelled,
    RunEventBase,
    RunFailed,
    RunLog,
    RunMetric,
    RunProgress,
    RunRequest,
    RunRetrying,
    RunStarted,
    RunSucceeded,
    StartedPayload,
    SucceededPayload,
    decode,
    decode_event,
    encode,
)
from runmesh.core.settings import Settings
from runmesh.core.topics import Topics
from runmesh.execution.outcome import (
    Cancelled,
    Failed,
    Succeeded,
    exception_outcome,
    result_outcome,
)

RUN_ID = uuid.UUID("0d6f4d53-7d4f-4a55-9b0e-1f2a3b4c5d6e")
TS = datetime(2025, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)


def envelope(seq: int = 1) -> dict[str, Any]:
    return {
        "event_id": uuid.UUID(int=seq),
        "run_id": RUN_ID,
        "attempt": 1,
        "seq": seq,
        "ts": TS,
        "service": "train",
        "worker": "train-1",
    }


EVENTS: list[RunEventBase] = [
    RunStarted(
        **envelope(1),
        payload=StartedPayload(plugin="yolo", plugin_version="1.0.0", action="fit", params={}),
    ),
    RunProgress(**envelope(2), payload=ProgressPayload(category="fit", current=2, total=None)),
    RunLog(**envelope(3), payload=LogPayload(level="warning", message="hm", data={"a": [1]})),
    RunMetric(**envelope(4), payload=MetricPayload(category="fit", values={"loss": 0.5}, step=2)),
    RunArtifact(**envelope(5), payload=ArtifactPayload(name="m.pt", uri="s3://b/m.pt", size=0)),
    RunSucceeded(**envelope(6), payload=SucceededPayload(result={"ok": True})),
    RunFailed(**envelope(7), payload=FailedPayload(error_type="E", message="m", retryable=True)),
    RunCancelled(**envelope(8), payload=CancelledPayload()),
    RunRetrying(
        **envelope(9),
        payload=RetryingPayload(
            error_type="E", message="m", next_attempt=2, max_attempts=3, delay_s=1.5
        ),
    ),
]


def wire(message: BaseModel) -> dict[str, Any]:
    parsed: dict[str, Any] = orjson.loads(encode(message))
    return parsed


# -- encode / decode --------------------------------------------------------------------------


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.type)  # type: ignore[attr-defined]
def test_every_event_type_round_trips(event: RunEventBase) -> None:
    decoded = decode_event(encode(event))

    assert type(decoded) is type(event)
    assert decoded == event
    assert decoded.ts.tzinfo is not None


def test_the_event_samples_cover_every_type() -> None:
    assert {e.type for e in EVENTS} == set(EVENT_TYPES)  # type: ignore[attr-defined]
    assert all(EVENT_TYPES[e.type] is type(e) for e in EVENTS)  # type: ignore[attr-defined]


def test_a_run_request_round_trips() -> None:
    request = RunRequest(
        run_id=RUN_ID,
        category="train",
        plugin="yolo@1.0.0",
        action="fit",
        params={"epochs": 3, "nested": {"x": [1, 2]}},
        tenant="acme",
        timeout_s=30.5,
        parent_run_id=uuid.UUID(int=9),
        submitted_at=TS,
    )

    assert decode(encode(request), RunRequest) == request


def test_a_minimal_run_request_gets_defaults() -> None:
    request = decode(b'{"category": "train", "action": "fit"}', RunRequest)

    assert request.plugin is None
    assert request.params == {}
    assert request.tenant == "default"
    assert request.timeout_s is None
    assert request.run_id.version == 4
    assert request.submitted_at.tzinfo is not None
    assert request.schema_version == SCHEMA_VERSION


@pytest.mark.parametrize(
    "message",
    [
        CancelRun(run_id=RUN_ID, reason="user", requested_at=TS),
        PluginManifest(
            code="yolo",
            name="YOLO",
            version="1.0.0",
            category="train",
            actions={"fit": ActionManifest(method="job", params_schema={"type": "object"})},
            service="train",
            worker="train-1",
            published_at=TS,
        ),
    ],
    ids=["CancelRun", "PluginManifest"],
)
def test_other_messages_round_trip(message: BaseModel) -> None:
    assert decode(encode(message), type(message)) == message


@pytest.mark.parametrize(
    "message",
    [EVENTS[0], RunRequest(category="c", action="a"), CancelRun(run_id=RUN_ID)],
    ids=["event", "request", "cancel"],
)
def test_schema_version_is_in_the_encoded_bytes(message: BaseModel) -> None:
    data = encode(message)

    assert b'"schema_version":1' in data
    assert wire(message)["schema_version"] == SCHEMA_VERSION == 1


def test_the_event_type_is_on_the_wire() -> None:
    assert wire(EVENTS[1])["type"] == "run.progress"
    assert wire(EVENTS[1])["run_id"] == str(RUN_ID)


def test_unknown_fields_are_ignored_at_every_level() -> None:
    raw = wire(EVENTS[2])
    raw["shard"] = 7
    raw["payload"]["colour"] = "blue"
    raw["schema_version"] = 2  # a newer writer that only added fields

    decoded = decode_event(orjson.dumps(raw))

    assert isinstance(decoded, RunLog)
    assert decoded.payload == EVENTS[2].payload  # type: ignore[attr-defined]
    assert decoded.schema_version == 2
    assert "shard" not in decoded.model_dump()
    assert "colour" not in decoded.payload.model_dump()


def test_unknown_fields_of_a_request_are_ignored() -> None:
    raw = wire(RunRequest(run_id=RUN_ID, category="c", action="a", submitted_at=TS))
    raw["colour"] = "blue"  # a field of a later version

    assert decode(orjson.dumps(raw), RunRequest) == RunRequest(
        run_id=RUN_ID, category="c", action="a", submitted_at=TS
    )


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"attempt": 0}, "run.progress.attempt: Input should be greater than or equal to 1"),
        ({"seq": "x"}, "run.progress.seq: Input should be a valid integer"),
        ({"run_id": "nope"}, "run.progress.run_id: Input should be a valid UUID"),
        ({"payload": {"category": "c", "current": -1}}, "run.progress.payload.current: "),
        ({"payload": {"current": 1}}, "run.progress.payload.category: Field required"),
        ({"worker": None}, "run.progress.worker: Input should be a valid string"),
        ({"schema_version": 0}, "run.progress.schema_version: "),
    ],
)
def test_a_bad_event_names_the_field(change: dict[str, Any], expected: str) -> None:
    raw = wire(EVENTS[1]) | change

    with pytest.raises(DecodeError) as caught:
        decode_event(orjson.dumps(raw))

    assert str(caught.value).startswith(f"not a valid RunEvent: {expected}")


def test_a_missing_field_is_named() -> None:
    raw = wire(EVENTS[1])
    del raw["service"]

    with pytest.raises(DecodeError, match=r"run\.progress\.service: Field required"):
        decode_event(orjson.dumps(raw))


def test_an_unknown_event_type_is_named() -> None:
    raw = wire(EVENTS[1]) | {"type": "run.paused"}

    with pytest.raises(DecodeError, match=r"Input tag 'run\.paused' found using 'type'"):
        decode_event(orjson.dumps(raw))


@pytest.mark.parametrize("data", [b"", b"not json", b"[1, 2]", b"null", b'{"type": "run.log"'])
def test_garbage_is_a_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError, match=r"^not a valid RunEvent: "):
        decode_event(data)


def test_a_bad_request_names_the_model_and_fields() -> None:
    with pytest.raises(DecodeError) as caught:
        decode(b'{"category": "", "timeout_s": -1}', RunRequest)

    message = str(caught.value)
    assert message.startswith("not a valid RunRequest: ")
    assert "category: String should have at least 1 character" in message
    assert "action: Field required" in message
    assert "timeout_s: Input should be greater than 0" in message


def test_a_decode_error_lists_five_problems_and_counts_the_rest() -> None:
    raw = {"type": "run.progress", "payload": {}}  # every envelope field missing

    with pytest.raises(DecodeError) as caught:
        decode_event(orjson.dumps(raw))

    parts = str(caught.value).split("; ")
    assert len(parts) == 6
    assert re.fullmatch(r"… and \d+ more", parts[-1])


def test_decode_errors_are_runmesh_errors_and_not_retriable() -> None:
    assert issubclass(DecodeError, RunmeshError)
    assert DecodeError.retriable is False


def test_messages_are_immutable() -> None:
    with pytest.raises(ValidationError, match="frozen"):
        EVENTS[0].seq = 5


def test_terminal_event_types() -> None:
    assert frozenset({"run.succeeded", "run.failed", "run.cancelled"}) == TERMINAL_EVENT_TYPES
    assert set(EVENT_TYPES) >= TERMINAL_EVENT_TYPES
    assert {f"run.{state}" for state in TERMINAL_STATES} == TERMINAL_EVENT_TYPES
    assert {e.type for e in EVENTS if e.type in TERMINAL_EVENT_TYPES} == {  # type: ignore[attr-defined]
        "run.succeeded",
        "run.failed",
        "run.cancelled",
    }


# -- outcomes ---------------------------------------------------------------------------------


class Result(BaseModel):
    path: Path
    when: datetime
    count: int


def test_a_none_result_succeeds_empty() -> None:
    assert result_outcome(None) == Succeeded({})


def test_a_mapping_result_succeeds_with_string_keys() -> None:
    assert result_outcome({"a": 1, 2: "two"}) == Succeeded({"a": 1, "2": "two"})


def test_a_model_result_is_dumped_as_json_data() -> None:
    outcome = result_outcome(Result(path=Path("/data/x"), when=TS, count=3))

    assert outcome == Succeeded(
        {"path": "/data/x", "when": "2025-03-04T05:06:07.890000Z", "count": 3}
    )


@pytest.mark.parametrize(
    ("result", "type_name"), [([1, 2], "list"), ("done", "str"), (3, "int"), ((), "tuple")]
)
def test_any_other_result_fails_as_invalid(result: object, type_name: str) -> None:
    assert result_outcome(result) == Failed(
        "InvalidResult",
        f"start() must return a mapping or a pydantic model, not {type_name}",
    )


def test_run_cancelled_becomes_cancelled() -> None:
    assert exception_outcome(RunCancelledError("run was cancelled")) == Cancelled(
        "run was cancelled"
    )
    assert exception_outcome(RunCancelledError()) == Cancelled("cancelled")


def _load_params() -> None:
    raise ValueError("bad params")


def test_an_exception_becomes_failed_with_its_traceback() -> None:
    with pytest.raises(ValueError) as caught:
        _load_params()

    outcome = exception_outcome(caught.value)

    assert isinstance(outcome, Failed)
    assert outcome.error_type == "ValueError"
    assert outcome.message == "bad params"
    assert outcome.retryable is False
    assert outcome.traceback is not None
    assert outcome.traceback.startswith("Traceback (most recent call last):")
    assert "in _load_params" in outcome.traceback
    assert outcome.traceback.rstrip().endswith("ValueError: bad params")


def test_an_exception_without_message_uses_its_type_name() -> None:
    outcome = exception_outcome(KeyError())

    assert isinstance(outcome, Failed)
    assert (outcome.error_type, outcome.message) == ("KeyError", "KeyError")
    assert outcome.traceback == "KeyError\n"  # never raised: no frames, still the text


class FlakyError(RunmeshError):
    retriable: ClassVar[bool] = True


class ThirdPartyError(Exception):
    retriable = True  # e.g. a client library's own flag of the same name


@pytest.mark.parametrize(
    ("exc", "retryable"),
    [
        (FlakyError("try again"), True),
        (ThirdPartyError("x"), True),
        (PluginError("bad plugin"), False),
        (JobCrashedError("died"), False),
        (RuntimeError("x"), False),
    ],
)
def test_retryable_comes_from_the_retriable_classvar(exc: Exception, retryable: bool) -> None:
    outcome = exception_outcome(exc)

    assert isinstance(outcome, Failed)
    assert outcome.retryable is retryable
    assert outcome.error_type == type(exc).__name__


# -- settings and topics ----------------------------------------------------------------------


def test_plugin_path_is_split_on_the_path_separator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNMESH_PLUGIN_PATH", os.pathsep.join(["/a/plugins", "", "rel/plugins"]))

    assert Settings().plugin_path == [Path("/a/plugins"), Path("rel/plugins")]


def test_a_single_plugin_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNMESH_PLUGIN_PATH", "/only")

    assert Settings().plugin_path == [Path("/only")]


@pytest.mark.parametrize("value", ["", os.pathsep, os.pathsep * 3])
def test_an_empty_plugin_path_means_none(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("RUNMESH_PLUGIN_PATH", value)

    assert Settings().plugin_path == []


def test_plugin_path_unset_means_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUNMESH_PLUGIN_PATH", raising=False)

    assert Settings().plugin_path == []


def test_plugin_path_accepts_a_list_in_code(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUNMESH_PLUGIN_PATH", raising=False)

    assert Settings(plugin_path=["/x", Path("/y")]).plugin_path == [Path("/x"), Path("/y")]


def test_settings_topic_uses_the_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNMESH_TOPIC_PREFIX", "acme")

    assert Settings().topic("events") == "acme.events"
    assert Settings(topic_prefix="t1").topic("requests.upload") == "t1.requests.upload"


def test_the_default_topic_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUNMESH_TOPIC_PREFIX", raising=False)

    assert Settings().topic("control") == "runmesh.control"


def test_settings_refuse_bad_values_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNMESH_TOPIC_PARTITIONS", "0")

    with pytest.raises(ValidationError, match="topic_partitions"):
        Settings()


def test_topic_names() -> None:
    topics = Topics("acme")

    assert topics.requests("upload") == "acme.requests.upload"
    assert topics.dlq("upload") == "acme.requests.upload.dlq"
    assert topics.events == "acme.events"
    assert topics.control == "acme.control"
    assert topics.plugins == "acme.plugins"


def test_default_topics_match_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUNMESH_TOPIC_PREFIX", raising=False)
    settings, topics = Settings(), Topics()

    assert topics.prefix == "runmesh"
    assert topics.events == settings.topic("events")
    assert topics.requests("export") == settings.topic("requests.export")
