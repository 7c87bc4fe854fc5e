"""The settings a command runs with: environment, a running `runmesh dev`, the root options."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import SecretStr, ValidationError

from runmesh.cli.dev_info import cli_settings
from runmesh.cli.exits import fail
from runmesh.core.settings import Settings


@dataclass(slots=True, frozen=True)
class GatewayOptions:
    """The root `--gateway-url` and `--token` options; each set one wins over the
    environment and dev.json."""

    gateway_url: str | None = None
    token: str | None = None
    verbose: bool = False
    """The root `--verbose`: runs followed live show their debug log lines too."""


def load_settings(*, from_dev: bool = True, options: GatewayOptions | None = None) -> Settings:
    """Settings from the environment, completed from a running `runmesh dev` (dev.json), with
    the root options on top."""
    try:
        settings = Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        fail(f"invalid setting RUNMESH_{field.upper()}: {first['msg']}")
    if from_dev:
        settings = cli_settings(settings)
    update: dict[str, object] = {}
    if options is not None and options.gateway_url is not None:
        update["gateway_url"] = options.gateway_url
    if options is not None and options.token is not None:
        update["token"] = SecretStr(options.token)
    return settings.model_copy(update=update) if update else settings
