"""The settings a command runs with: environment, a running `runmesh dev`, the root options."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from runmesh.cli.errors import CliError
from runmesh.cli.exits import fail

if TYPE_CHECKING:
    from runmesh.core.settings import Settings

# Every `runmesh` invocation imports this module: pydantic, the core settings and dev.json's
# model are imported inside the functions, to keep `runmesh --help` fast.


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
    from pydantic import SecretStr, ValidationError

    from runmesh.cli.dev_info import cli_settings
    from runmesh.core.settings import Settings

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


def require_gateway(settings: Settings) -> tuple[str, str]:
    """The gateway URL and token, or a `CliError` saying how to provide them."""
    from runmesh.cli.dev_info import dev_info_path

    if not settings.gateway_url:
        path = dev_info_path(settings).expanduser().absolute()
        found = "left by a `runmesh dev` that is no longer running" if path.exists() else "none"
        raise CliError(
            f"no gateway: looked for a running `runmesh dev` in {path} ({found}). Start one "
            "with `runmesh dev`; from another directory, point RUNMESH_HOME at its .runmesh "
            f"folder (RUNMESH_HOME is {settings.home}, relative to the current directory); or "
            "pass --gateway-url (and --token), or set RUNMESH_GATEWAY_URL (and RUNMESH_TOKEN)"
        )
    if settings.token is None:
        raise CliError(
            "no API token: pass --token or set RUNMESH_TOKEN "
            "(create one with `runmesh token create`)"
        )
    return settings.gateway_url.rstrip("/"), settings.token.get_secret_value()
