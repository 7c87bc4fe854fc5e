"""Plugin and action resolution from announced manifests; params against their JSON schema."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import pytest
from pydantic import BaseModel, Field, SecretStr

from runmesh.gateway.errors import InvalidRequest
from runmesh.gateway.params_validation import KnownPlugins, PluginVersion, validate_params


class EchoParams(BaseModel):
    name: str = Field(min_length=1)
    count: int = Field(gt=0, le=1000)
    token: SecretStr | None = None
    ratio: float | None = None


class Nested(BaseModel):
    inner: EchoParams


ECHO = EchoParams.model_json_schema()


def plugin(
    code: str, version: str, category: str = "test", *, builtin: bool = False, tenant: str = "*"
) -> PluginVersion:
    actions = {
        "echo": {"method": "task", "params_schema": ECHO},
        "noop": {"method": "task", "params_schema": {"type": "object"}},
    }
    return PluginVersion(
        code=code,
        version=version,
        category=category,
        builtin=builtin,
        manifest={"code": code, "version": version, "actions": actions},
        tenant=tenant,
    )


def errors_of(params: dict[str, Any], schema: dict[str, Any] = ECHO) -> dict[str, str]:
    return {".".join(map(str, e["loc"])): e["msg"] for e in validate_params(params, schema)}


def test_valid_params_have_no_errors() -> None:
    assert validate_params({"name": "a", "count": 3, "token": "s"}, ECHO) == []
    assert validate_params({"name": "a", "count": 3, "token": None, "ratio": 1}, ECHO) == []


def test_missing_and_out_of_range_fields_are_reported_by_location() -> None:
    errors = errors_of({"count": 0})
    assert errors == {
        "params.name": "Field required",
        "params.count": "0 is less than or equal to the minimum of 0",
    }


def test_wrong_types_name_the_field_also_inside_unions_and_nested_models() -> None:
    errors = errors_of({"name": "a", "count": "three", "ratio": "x"})
    assert errors["params.count"] == "'three' is not of type 'integer'"
    assert errors["params.ratio"] == "'x' is not of type 'number'"
    nested = errors_of({"inner": {"name": "", "count": 1}}, Nested.model_json_schema())
    assert list(nested) == ["params.inner.name"]


def test_extra_fields_are_named_when_the_schema_forbids_them() -> None:
    schema = {"type": "object", "properties": {"a": {}}, "additionalProperties": False}
    assert errors_of({"a": 1, "b": 2, "c": 3}, schema) == {
        "params.b": "Extra inputs are not permitted",
        "params.c": "Extra inputs are not permitted",
    }


def test_a_broken_schema_is_the_plugins_fault() -> None:
    with pytest.raises(InvalidRequest, match="schema is invalid"):
        validate_params({}, {"type": "no-such-type"})


def test_versions_order_semantically_and_the_latest_is_the_default() -> None:
    known = KnownPlugins(
        [plugin("kit", "1.10.0"), plugin("kit", "1.9.0"), plugin("kit", "2.0.0-rc.1")]
    )
    assert [p.version for p in known.of_code("kit")] == ["1.9.0", "1.10.0", "2.0.0-rc.1"]
    assert known.resolve("kit", "test").version == "2.0.0-rc.1"
    assert known.resolve("kit@1.9.0", "test").version == "1.9.0"
    assert known.resolve(None, "test").ref == "kit@2.0.0-rc.1"  # the only plugin of the category


def test_the_builtin_plugin_is_the_default_of_its_category() -> None:
    known = KnownPlugins([plugin("user", "1.0.0"), plugin("core", "1.0.0", builtin=True)])
    assert known.resolve(None, "test").code == "core"


def test_a_tenants_own_row_wins_over_the_shared_one() -> None:
    own = plugin("kit", "1.0.0", tenant="acme")
    known = KnownPlugins([plugin("kit", "1.0.0"), own])
    assert known.of_code("kit") == [own]


@pytest.mark.parametrize(
    ("ref", "category", "action", "message", "extra"),
    [
        (None, "nope", "echo", "unknown category 'nope'; known categories: test, train",
         {"known_categories": ["test", "train"]}),
        ("ghost", "test", "echo", "unknown plugin 'ghost' for category 'test'; known: kit",
         {"known_plugins": ["kit"]}),
        ("kit@9.9.9", "test", "echo", "plugin 'kit' has no version '9.9.9'; known versions: 1.0.0",
         {"known_versions": ["1.0.0"]}),
        ("kit", "test", "teleport", "plugin kit@1.0.0 has no action 'teleport'; known actions: "
         "echo, noop", {"known_actions": ["echo", "noop"]}),
        ("trainer", "test", "echo", "unknown plugin 'trainer' for category 'test'", {}),
    ],
)  # fmt: skip
def test_unknown_names_are_refused_naming_the_known_ones(
    ref: str | None, category: str, action: str, message: str, extra: dict[str, Any]
) -> None:
    known = KnownPlugins([plugin("kit", "1.0.0"), plugin("trainer", "1.0.0", "train")])
    with pytest.raises(InvalidRequest) as raised:
        known.resolve_action(ref, category, action)
    assert raised.value.detail.startswith(message)
    for key, value in extra.items():
        assert raised.value.extra[key] == value


def test_no_plugins_at_all_says_no_worker_announced_yet() -> None:
    with pytest.raises(InvalidRequest, match="no worker has announced"):
        KnownPlugins([]).resolve(None, "test")


def test_several_plugins_and_none_named_asks_to_name_one() -> None:
    known = KnownPlugins([plugin("a", "1.0.0"), plugin("b", "1.0.0")])
    with pytest.raises(InvalidRequest, match="name one of: a, b"):
        known.resolve(None, "test")


def test_find_action_for_display_prefers_the_version_that_ran_and_never_raises() -> None:
    known = KnownPlugins([plugin("kit", "1.0.0"), plugin("kit", "2.0.0")])
    found = known.find_action("kit", "test", "echo", version="1.0.0")
    assert found is not None and found[0].version == "1.0.0"
    retired = known.find_action("kit@0.1.0", "test", "echo", version="0.1.0")
    assert retired is not None and retired[0].version == "2.0.0"
    assert known.find_action("kit", "test", "teleport") is None
    assert known.find_action(None, "elsewhere", "echo") is None


class UploadLike(BaseModel):
    storage: uuid.UUID
    since: datetime | None = None


def test_formats_are_checked_so_a_bad_uuid_or_date_time_is_a_field_error() -> None:
    schema = UploadLike.model_json_schema()
    assert schema["properties"]["storage"]["format"] == "uuid"
    assert errors_of({"storage": "not-a-uuid"}, schema) == {
        "params.storage": "'not-a-uuid' is not a 'uuid'"
    }
    assert list(errors_of({"storage": str(uuid.uuid4()), "since": "yesterday"}, schema)) == [
        "params.since"
    ]
    assert errors_of({"storage": str(uuid.uuid4()), "since": "2024-05-01T00:00:00Z"}, schema) == {}


def test_a_release_candidate_is_older_than_its_release_spelt_shorter() -> None:
    known = KnownPlugins([plugin("kit", "1.0"), plugin("kit", "1.0.0-rc.1")])
    assert [p.version for p in known.of_code("kit")] == ["1.0.0-rc.1", "1.0"]
    assert known.resolve("kit", "test").version == "1.0"
