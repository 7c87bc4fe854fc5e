"""The generated JSON Schemas, AsyncAPI document and event catalogue: fresh, valid, and true
to the wire (and the pipeline definition's schema true to docs/pipelines.md)."""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema.protocols import Validator
from jsonschema.validators import Draft7Validator, Draft202012Validator, validator_for
from pydantic import BaseModel

from runmesh.core.categories import BUILTIN_CATEGORIES
from runmesh.core.errors import DecodeError
from runmesh.core.events import (
    EVENT_TYPES,
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
    RunEvent,
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
    WorkerPresence,
    decode_event,
    encode,
)
from runmesh.core.pipelines import MAX_STEPS, PipelineSpec, missing_params
from runmesh.core.topics import Topics
from tools import schemas

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCS = REPO_ROOT / "docs"

RUN_ID = uuid.UUID("6f1c1f52-5d0e-4d7b-9a57-0c2b8f6f4a11")
TS = datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


def _envelope(seq: int) -> dict[str, Any]:
    return {
        "event_id": uuid.UUID(int=seq),
        "run_id": RUN_ID,
        "attempt": 1,
        "seq": seq,
        "ts": TS,
        "service": "train",
        "worker": "train-7f9c",
    }


SAMPLE_EVENTS: list[RunEvent] = [
    RunStarted(
        **_envelope(1),
        payload=StartedPayload(
            plugin="yolo", plugin_version="1.2.0", action="train", params={"epochs": 3}
        ),
    ),
    RunProgress(**_envelope(2), payload=ProgressPayload(category="train", current=1, total=3)),
    RunLog(
        **_envelope(3),
        payload=LogPayload(level="success", message="epoch done", code="E1", data={"n": 1}),
    ),
    RunMetric(
        **_envelope(4), payload=MetricPayload(category="train", values={"loss": 0.25}, step=1)
    ),
    RunArtifact(
        **_envelope(5),
        payload=ArtifactPayload(
            name="model.pt",
            uri="s3://runmesh/runs/model.pt",
            size=1024,
            checksum="sha256:00ff",
            media_type="application/octet-stream",
        ),
    ),
    RunRetrying(
        **_envelope(6),
        payload=RetryingPayload(
            error_type="StorageUnavailable",
            message="S3 answered 503",
            traceback="...",
            next_attempt=2,
            max_attempts=3,
            delay_s=0.8,
        ),
    ),
    RunSucceeded(**_envelope(7), payload=SucceededPayload(result={"model": "m-1"})),
    RunFailed(
        **_envelope(8),
        payload=FailedPayload(
            error_type="Timeout", message="ran past 60 s", traceback="...", retryable=True
        ),
    ),
    RunCancelled(**_envelope(9), payload=CancelledPayload(reason="cancelled by user")),
]

SAMPLE_MESSAGES: dict[str, Any] = {
    "RunRequest": RunRequest(
        run_id=RUN_ID,
        category="train",
        plugin="yolo@1.2.0",
        action="train",
        params={"epochs": 3},
        timeout_s=60,
        parent_run_id=uuid.UUID(int=1),
        submitted_at=TS,
    ),
    "CancelRun": CancelRun(run_id=RUN_ID, requested_at=TS),
    "PluginManifest": PluginManifest(
        code="yolo",
        name="YOLO",
        version="1.2.0",
        category="train",
        actions={
            "train": ActionManifest(
                method="job",
                params_schema={"type": "object"},
                progress_categories={"train": {"proportion": 100}},
            )
        },
        service="train",
        worker="train-7f9c",
        published_at=TS,
    ),
    "WorkerPresence": WorkerPresence(
        worker="gpu-1:4242:9f3a1c",
        service="train",
        category="neural_net",
        pool="gpu",
        labels=["cuda12", "gpu"],
        slots=2,
        busy=1,
        state="serving",
        heartbeat_s=5,
        started_at=TS,
        sent_at=TS,
    ),
}


def _wire(message: Any) -> Any:
    """A message as a reader gets it: encoded for the wire, then parsed as plain JSON."""
    return json.loads(encode(message))


def _load(name: str) -> Any:
    return json.loads((DOCS / "schemas" / f"{name}.schema.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def asyncapi() -> Any:
    return yaml.safe_load((DOCS / "asyncapi.yaml").read_text(encoding="utf-8"))


def _validator(schema: Any) -> Validator:
    cls = validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _walk(node: Any, path: str = "#") -> Iterator[tuple[str, Any]]:
    """Every (JSON pointer, value) pair under `node`."""
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            escaped = str(key).replace("~", "~0").replace("/", "~1")
            yield from _walk(value, f"{path}/{escaped}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{path}/{index}")


def _resolve(document: Any, ref: str) -> Any:
    assert ref.startswith("#/"), f"{ref!r} is not a local reference"
    node = document
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict), f"{ref!r}: {part!r} is not inside an object"
        assert part in node, f"{ref!r} does not resolve: no {part!r}"
        node = node[part]
    return node


def _deref(document: Any, node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        node = _resolve(document, node["$ref"])
    return node


# (a) freshness -------------------------------------------------------------------------


def test_committed_docs_are_fresh() -> None:
    assert (REPO_ROOT / "pyproject.toml").is_file(), f"not the repository root: {REPO_ROOT}"
    stale = schemas.stale_docs(DOCS)
    assert not stale, (
        "generated docs are stale: "
        + ", ".join(str(path.relative_to(REPO_ROOT)) for path in stale)
        + "; run `make schemas` and commit the result"
    )


def test_generation_is_deterministic() -> None:
    assert schemas.render_docs() == schemas.render_docs()
    assert "&id" not in schemas.render_docs()[schemas.ASYNCAPI_FILE]  # no YAML aliases


def test_main_writes_then_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert schemas.main(["--check", str(tmp_path)]) == 1
    assert not any(tmp_path.iterdir()), "--check must write nothing"
    assert "make schemas" in capsys.readouterr().err

    written = schemas.write_docs(tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in written) == sorted(
        schemas.render_docs()
    )
    assert all(p.read_bytes().endswith(b"}\n") for p in written if p.suffix == ".json")
    assert schemas.main(["--check", str(tmp_path)]) == 0

    (tmp_path / "schemas" / "RunEvent.schema.json").write_text("{}\n", encoding="utf-8")
    assert schemas.main(["--check", str(tmp_path)]) == 1
    assert "RunEvent.schema.json" in capsys.readouterr().err
    assert schemas.main([str(tmp_path)]) == 0
    assert schemas.stale_docs(tmp_path) == []

    events_md = tmp_path / schemas.EVENTS_FILE
    events_md.write_text(events_md.read_text(encoding="utf-8") + "edited\n", encoding="utf-8")
    assert schemas.main(["--check", str(tmp_path)]) == 1
    assert schemas.EVENTS_FILE in capsys.readouterr().err
    assert schemas.stale_docs(tmp_path) == [events_md]


# (b) the AsyncAPI document -------------------------------------------------------------


def test_asyncapi_version_and_info(asyncapi: Any) -> None:
    assert asyncapi["asyncapi"] == "3.0.0"
    assert asyncapi["info"]["title"]
    assert isinstance(asyncapi["info"]["version"], str)


def test_every_ref_resolves(asyncapi: Any) -> None:
    refs = [
        (where, node["$ref"])
        for where, node in _walk(asyncapi)
        if isinstance(node, dict) and isinstance(node.get("$ref"), str)
    ]
    assert refs
    for where, ref in refs:
        try:
            _resolve(asyncapi, ref)
        except AssertionError as exc:
            raise AssertionError(f"at {where}: {exc}") from None


def test_channels_cover_the_topics(asyncapi: Any) -> None:
    topics = Topics()
    addresses = {channel["address"] for channel in asyncapi["channels"].values()}
    assert addresses == {
        topics.requests("{category}"),
        topics.dlq("{category}"),
        topics.events,
        topics.control,
        topics.plugins,
        topics.pipelines,
        topics.workers,
    }
    for name, channel in asyncapi["channels"].items():
        for parameter in re.findall(r"\{([^}]+)\}", channel["address"]):
            assert parameter in channel.get("parameters", {}), f"{name}: no {parameter!r}"
        assert channel["messages"], name


def test_operations_reference_their_channels_messages(asyncapi: Any) -> None:
    seen: set[tuple[str, str]] = set()
    for name, operation in asyncapi["operations"].items():
        assert operation["action"] in {"send", "receive"}, name
        channel_ref = operation["channel"]["$ref"]
        assert channel_ref.startswith("#/channels/"), name
        channel = _resolve(asyncapi, channel_ref)
        assert operation["messages"], name
        for message in operation["messages"]:
            # AsyncAPI 3: an operation's messages are a subset of its channel's.
            assert message["$ref"].startswith(f"{channel_ref}/messages/"), (name, message)
            _resolve(asyncapi, message["$ref"])
        seen.add((channel_ref.removeprefix("#/channels/"), operation["action"]))
    # Services receive requests and send events and dead letters; the gateway receives
    # events and sends control; every channel with a receiver has a sender.
    for channel, action in [
        ("requests", "send"),
        ("requests", "receive"),
        ("requestsDeadLetter", "send"),
        ("events", "send"),
        ("events", "receive"),
        ("control", "send"),
        ("control", "receive"),
        ("plugins", "send"),
        ("plugins", "receive"),
    ]:
        assert (channel, action) in seen


def test_messages_have_headers_keys_and_valid_payloads(asyncapi: Any) -> None:
    messages = asyncapi["components"]["messages"]
    for name, message in messages.items():
        headers = message["headers"]
        assert headers["type"] == "object", name
        assert {"traceparent", "event-type"} <= set(headers["properties"]), name
        Draft7Validator.check_schema(headers)
        key = message["bindings"]["kafka"]["key"]
        Draft7Validator.check_schema(key)
        payload = _deref(asyncapi, message["payload"])
        validator_for(payload, default=Draft7Validator).check_schema(payload)
    assert "reason" in messages["DeadLetteredRequest"]["headers"]["required"]
    for name, schema in asyncapi["components"]["schemas"].items():
        assert "$defs" not in schema, name
        # AsyncAPI's default schema format is a superset of JSON Schema draft 7.
        validator_for(schema, default=Draft7Validator).check_schema(schema)


def test_one_message_per_event_type(asyncapi: Any) -> None:
    messages = asyncapi["components"]["messages"]
    for event_type, model in EVENT_TYPES.items():
        message = messages[model.__name__]
        assert message["headers"]["properties"]["event-type"]["const"] == event_type
        assert message["payload"] == {"$ref": f"#/components/schemas/{model.__name__}"}
        assert message["bindings"]["kafka"]["key"]["format"] == "uuid"
    event_messages = asyncapi["channels"]["events"]["messages"]
    assert set(event_messages) == {model.__name__ for model in EVENT_TYPES.values()}


def test_samples_validate_against_asyncapi_payloads(asyncapi: Any) -> None:
    def payload_validator(message: str) -> Validator:
        ref = asyncapi["components"]["messages"][message]["payload"]
        # The document's components ride along so `#/components/...` refs resolve.
        schema = {**ref, "components": asyncapi["components"]}
        return Draft7Validator(schema, format_checker=Draft7Validator.FORMAT_CHECKER)

    for event in SAMPLE_EVENTS:
        payload_validator(type(event).__name__).validate(_wire(event))
    for name, message in SAMPLE_MESSAGES.items():
        payload_validator(name).validate(_wire(message))


# (c) samples against the standalone schemas ---------------------------------------------


def test_samples_cover_every_event_type() -> None:
    assert [event.type for event in SAMPLE_EVENTS] == list(EVENT_TYPES)


@pytest.mark.parametrize("event", SAMPLE_EVENTS, ids=lambda event: event.type)
def test_every_event_type_validates(event: RunEvent) -> None:
    wire = _wire(event)
    _validator(_load("RunEvent")).validate(wire)
    assert decode_event(encode(event)) == event


@pytest.mark.parametrize("name", sorted(SAMPLE_MESSAGES))
def test_other_messages_validate(name: str) -> None:
    _validator(_load(name)).validate(_wire(SAMPLE_MESSAGES[name]))


def test_run_event_schema_rejects_what_readers_reject() -> None:
    validator = _validator(_load("RunEvent"))
    progress = _wire(SAMPLE_EVENTS[1])

    untyped = copy.deepcopy(progress)
    del untyped["type"]
    assert not validator.is_valid(untyped)
    with pytest.raises(DecodeError):
        decode_event(json.dumps(untyped).encode())

    negative = copy.deepcopy(progress)
    negative["payload"]["current"] = -1
    assert not validator.is_valid(negative)

    unknown = copy.deepcopy(progress)
    unknown["type"] = "run.paused"
    assert not validator.is_valid(unknown)


def test_unknown_fields_are_accepted() -> None:
    # Forward compatibility (DESIGN §3): a newer writer's extra fields must not fail readers.
    event = _wire(SAMPLE_EVENTS[0]) | {"added_in_v2": True}
    _validator(_load("RunEvent")).validate(event)
    request = _wire(SAMPLE_MESSAGES["RunRequest"]) | {"priority": 5}
    _validator(_load("RunRequest")).validate(request)


def test_standalone_schemas_declare_their_dialect() -> None:
    for name in [*schemas.message_schemas(), *schemas.document_schemas()]:
        schema = _load(name)
        assert schema["$schema"] == schemas.JSON_SCHEMA_DIALECT
        assert validator_for(schema) is Draft202012Validator


def _pipeline_example() -> Any:
    """The YAML example of docs/pipelines.md, parsed."""
    text = (DOCS / "pipelines.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```yaml\n(name: .*?)^```$", text, flags=re.MULTILINE | re.DOTALL)
    assert len(blocks) == 1, "docs/pipelines.md should show one YAML pipeline"
    return yaml.safe_load(blocks[0])


def test_pipeline_example_is_valid() -> None:
    example = _pipeline_example()
    _validator(_load("PipelineSpec")).validate(example)
    spec = PipelineSpec.model_validate(example)
    assert spec.order() == ["export_coco", "export_yolo", "train", "test"]
    assert spec.ancestors("test") == {"train", "export_coco", "export_yolo"}
    # The example leaves `storage` to each submission, as its comment says.
    assert missing_params(spec, {}) == ["storage"]
    assert {step.category for step in spec.steps.values()} <= set(BUILTIN_CATEGORIES)


def test_pipeline_schema_rejects_what_the_model_rejects() -> None:
    validator = _validator(_load("PipelineSpec"))
    example = _pipeline_example()
    step = {"category": "export", "action": "export"}
    for invalid in [
        {**example, "owner": "me"},
        {**example, "steps": {}},
        {**example, "steps": {"Export": step}},
        {**example, "steps": {f"s{i}": step for i in range(MAX_STEPS + 1)}},
        {**example, "steps": {"a": {**step, "needs": ["b", "b"]}, "b": step}},
        {**example, "steps": {"a": {**step, "timeout_s": 0}}},
        {**example, "steps": {"a": {**step, "need": ["b"]}}},
    ]:
        assert not validator.is_valid(invalid), invalid
        with pytest.raises(ValueError, match="validation error"):
            PipelineSpec.model_validate(invalid)


# (d) the event catalogue (docs/events.md) -----------------------------------------------


@pytest.fixture(scope="module")
def catalogue() -> str:
    return (DOCS / schemas.EVENTS_FILE).read_text(encoding="utf-8")


def _section(catalogue: str, heading: str) -> str:
    """The text under a `### heading`, up to the next heading of level 2 or 3."""
    assert f"\n{heading}\n" in catalogue, f"no heading {heading!r}"
    body = catalogue.split(f"\n{heading}\n", 1)[1]
    return re.split(r"\n##?#? ", body, maxsplit=1)[0]


def test_catalogue_is_the_generators_output(catalogue: str) -> None:
    assert catalogue == schemas.render_docs()[schemas.EVENTS_FILE]
    assert catalogue == schemas.events_markdown()


def test_catalogue_names_every_topic_and_event_type(catalogue: str) -> None:
    topics = Topics()
    for address in [
        topics.requests("{category}"),
        topics.dlq("{category}"),
        topics.events,
        topics.control,
        topics.plugins,
    ]:
        assert f"### `{address}`" in catalogue, address
    for event_type in EVENT_TYPES:
        assert f"### `{event_type}`" in catalogue, event_type
    for message in ["RunRequest", "DeadLetteredRequest", "CancelRun", "PluginManifest"]:
        assert f"\n### {message}\n" in catalogue, message


@pytest.mark.parametrize("event_type", list(EVENT_TYPES))
def test_catalogue_lists_every_payload_field(catalogue: str, event_type: str) -> None:
    section = _section(catalogue, f"### `{event_type}`")
    payload = EVENT_TYPES[event_type].model_fields["payload"].annotation
    assert isinstance(payload, type)
    assert issubclass(payload, BaseModel)
    for field in payload.model_fields:
        assert f"| `{field}` |" in section, (event_type, field)


def test_catalogue_lists_the_envelope_and_headers(catalogue: str) -> None:
    envelope = _section(catalogue, "### Envelope")
    for field in RunStarted.model_fields:
        assert f"| `{field}` |" in envelope, field
    headers = _section(catalogue, "### Event headers")
    for header in ["event-type", "traceparent", "tracestate"]:
        assert f"| `{header}` |" in headers, header
    dead_letter = _section(catalogue, "### DeadLetteredRequest")
    for header in ["reason", "reason-detail", "source-topic", "source-partition", "source-offset"]:
        assert f"| `{header}` |" in dead_letter, header
    for name in ["RunRequest", "CancelRun", "PluginManifest", "WorkerPresence"]:
        model = SAMPLE_MESSAGES[name]
        section = _section(catalogue, f"### {name}")
        for field in type(model).model_fields:
            assert f"| `{field}` |" in section, (name, field)


def test_catalogue_links_resolve(catalogue: str) -> None:
    anchors = {
        re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in catalogue.splitlines()
        if line.startswith("#")
    }
    targets = set(re.findall(r"\]\(#([^)]+)\)", catalogue))
    assert targets
    assert targets <= anchors, targets - anchors
