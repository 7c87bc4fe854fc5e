"""Resolve a submission's plugin and action from announced manifests; validate its params."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import orjson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from jsonschema.exceptions import ValidationError as SchemaValidationError

from runmesh.gateway.errors import InvalidRequest

# The order workers use, so `code` without a version names the same plugin on both sides.
from runmesh.plugins.versions import version_key

_MAX_FIELD_ERRORS = 50


@dataclass(slots=True, frozen=True)
class PluginVersion:
    """One announced plugin version (a `runs.plugins` row)."""

    code: str
    version: str
    category: str
    builtin: bool
    manifest: Mapping[str, Any]
    tenant: str = "*"
    announced_at: datetime | None = None

    @property
    def ref(self) -> str:
        """`code@version`."""
        return f"{self.code}@{self.version}"

    @property
    def actions(self) -> Mapping[str, Mapping[str, Any]]:
        """The manifest's actions by name."""
        actions = self.manifest.get("actions")
        return actions if isinstance(actions, Mapping) else {}

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> PluginVersion:
        """From a `runs.plugins` row."""
        manifest = row["manifest"]
        return cls(
            code=row["code"],
            version=row["version"],
            category=row["category"],
            builtin=bool(row["builtin"]),
            manifest=manifest if isinstance(manifest, Mapping) else {},
            tenant=row.get("tenant", "*"),
            announced_at=row.get("announced_at"),
        )


@dataclass(slots=True)
class KnownPlugins:
    """The plugin versions one tenant can run, resolved as workers resolve them."""

    versions: list[PluginVersion] = field(default_factory=list)
    all_categories: list[str] | None = None
    """Every category the tenant has plugins in, when `versions` holds only some of them."""

    @classmethod
    async def load(
        cls, conn: asyncpg.Connection | asyncpg.Pool, tenant: str, categories: Iterable[str] = ()
    ) -> KnownPlugins:
        """The plugins visible to `tenant` (built-in and worker-local ones, and its own)."""
        wanted = sorted(set(categories))
        rows = await conn.fetch(
            "SELECT tenant, code, version, category, builtin, manifest, announced_at"
            " FROM runs.plugins WHERE tenant IN ('*', $1) AND deleted_at IS NULL"
            " AND (cardinality($2::text[]) = 0 OR category = ANY($2::text[]))",
            tenant,
            wanted,
        )
        versions = [PluginVersion.from_row(dict(row)) for row in rows]
        all_categories = None
        if wanted and {plugin.category for plugin in versions} != set(wanted):
            # Only for the error naming the known categories: rarely needed, so not up front.
            all_categories = [
                row["category"]
                for row in await conn.fetch(
                    "SELECT DISTINCT category FROM runs.plugins WHERE tenant IN ('*', $1)"
                    " AND deleted_at IS NULL ORDER BY category",
                    tenant,
                )
            ]
        return cls(versions, all_categories)

    def categories(self) -> list[str]:
        """Every category some plugin serves."""
        if self.all_categories is not None:
            return sorted(self.all_categories)
        return sorted({plugin.category for plugin in self.versions})

    def of_code(self, code: str) -> list[PluginVersion]:
        """The versions of one plugin, oldest first (a tenant's own row wins over '*')."""
        by_version: dict[str, PluginVersion] = {}
        for plugin in self.versions:
            if plugin.code == code and (plugin.version not in by_version or plugin.tenant != "*"):
                by_version[plugin.version] = plugin
        return sorted(by_version.values(), key=lambda p: version_key(p.version))

    def codes(self, category: str | None = None) -> list[str]:
        """Plugin codes, optionally of one category."""
        return sorted({p.code for p in self.versions if category is None or p.category == category})

    def resolve(self, ref: str | None, category: str) -> PluginVersion:
        """The plugin version `ref` (`code`, `code@version`, None = built-in) names.

        Raises `InvalidRequest` naming what is known, as the worker's registry does.
        """
        in_category = [p for p in self.versions if p.category == category]
        if not in_category:
            known = ", ".join(self.categories()) or "none (no worker has announced its plugins)"
            raise InvalidRequest(
                f"unknown category {category!r}; known categories: {known}",
                known_categories=self.categories(),
            )
        if ref is None:
            builtins = sorted({p.code for p in in_category if p.builtin})
            codes = builtins or sorted({p.code for p in in_category})
            if len(codes) != 1:
                raise InvalidRequest(
                    f"no plugin given and category {category!r} has several; "
                    f"name one of: {', '.join(codes)}",
                    known_plugins=codes,
                )
            return self.of_code(codes[0])[-1]
        code, _, version = ref.partition("@")
        versions = [p for p in self.of_code(code) if p.category == category]
        if not versions:
            codes = self.codes(category)
            raise InvalidRequest(
                f"unknown plugin {code!r} for category {category!r}; known: {', '.join(codes)}",
                known_plugins=codes,
            )
        if not version:
            return versions[-1]
        for plugin in versions:
            if plugin.version == version:
                return plugin
        known_versions = [p.version for p in versions]
        raise InvalidRequest(
            f"plugin {code!r} has no version {version!r}; "
            f"known versions: {', '.join(known_versions)}",
            known_versions=known_versions,
        )

    def resolve_action(
        self, ref: str | None, category: str, action: str
    ) -> tuple[PluginVersion, Mapping[str, Any]]:
        """The plugin version and the manifest entry of `action`, or `InvalidRequest`."""
        plugin = self.resolve(ref, category)
        entry = plugin.actions.get(action)
        if not isinstance(entry, Mapping):
            known = sorted(plugin.actions)
            raise InvalidRequest(
                f"plugin {plugin.ref} has no action {action!r}; known actions: {', '.join(known)}",
                known_actions=known,
            )
        return plugin, entry

    def find_action(
        self, ref: str | None, category: str, action: str, version: str | None = None
    ) -> tuple[PluginVersion, Mapping[str, Any]] | None:
        """Like `resolve_action` for showing a stored run: None instead of an error.

        `version` (what the run reported it ran) wins when it is still announced; a version
        no longer announced falls back to the plugin's latest.
        """
        try:
            plugin = self.resolve(ref, category)
        except InvalidRequest:
            if ref is None or "@" not in ref:
                return None
            return self.find_action(ref.partition("@")[0], category, action, version)
        if version and version != plugin.version:
            plugin = next(
                (
                    other
                    for other in self.of_code(plugin.code)
                    if other.version == version and other.category == category
                ),
                plugin,
            )
        entry = plugin.actions.get(action)
        return (plugin, entry) if isinstance(entry, Mapping) else None


def validate_params(params: Mapping[str, Any], schema: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Field errors of `params` against the action's JSON schema (Draft 2020-12).

    Each error is `{"loc": ["params", ...path], "msg": ...}`, the shape FastAPI uses for the
    body's own errors, so a client handles both alike. An empty list means valid.
    """
    try:
        validator = _validator(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS))
    except SchemaError as exc:  # the plugin published a broken schema: not the caller's fault
        raise InvalidRequest(f"the action's params schema is invalid: {exc.message}") from exc
    errors: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for error in sorted(validator.iter_errors(params), key=_error_order):
        for field_error in _field_errors(error):
            # `required` reports each missing name once per error: keep one of each.
            key = (repr(field_error["loc"]), field_error["msg"])
            if key not in seen:
                seen.add(key)
                errors.append(field_error)
        if len(errors) >= _MAX_FIELD_ERRORS:
            break
    return errors[:_MAX_FIELD_ERRORS]


@functools.lru_cache(maxsize=256)
def _validator(schema_json: bytes) -> Draft202012Validator:
    """A checked validator per distinct schema: checking against the meta-schema costs more
    than validating params, and every submission of an action uses the same schema."""
    schema = orjson.loads(schema_json)
    Draft202012Validator.check_schema(schema)
    # Formats are assertions here, not annotations: `"format": "uuid"` must refuse
    # "not-a-uuid" at the gateway rather than fail the run on its worker.
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _error_order(error: SchemaValidationError) -> tuple[str, ...]:
    return tuple(str(part) for part in error.absolute_path)


def _field_errors(error: SchemaValidationError) -> list[dict[str, Any]]:
    loc: list[str | int] = ["params", *error.absolute_path]
    if error.validator == "required":
        # Point at the missing field itself, as pydantic does ("name: Field required").
        missing = _missing_fields(error)
        if missing:
            return [{"loc": [*loc, name], "msg": "Field required"} for name in missing]
    if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
        allowed = error.schema.get("properties", {}) if isinstance(error.schema, Mapping) else {}
        extra = [key for key in error.instance if key not in allowed]
        if extra:
            return [{"loc": [*loc, key], "msg": "Extra inputs are not permitted"} for key in extra]
    if error.validator in ("anyOf", "oneOf") and error.context:
        # A nullable field fails both branches; the non-null branch's reason is the useful one.
        best = min(
            (e for e in error.context if e.validator != "type" or e.validator_value != "null"),
            key=lambda e: len(list(e.relative_path)),
            default=None,
        )
        if best is not None:
            return [{"loc": ["params", *best.absolute_path], "msg": best.message}]
    return [{"loc": loc, "msg": error.message}]


def _missing_fields(error: SchemaValidationError) -> Sequence[str]:
    required = error.validator_value
    if not isinstance(required, list) or not isinstance(error.instance, Mapping):
        return []
    return [name for name in required if isinstance(name, str) and name not in error.instance]
