"""`runmesh plugin publish`, `versions` and `delete`: a tenant's plugin versions on the mesh."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from runmesh.cli.exits import fail, run_async
from runmesh.cli.gateway_client import GatewayClient
from runmesh.cli.settings import load_settings, require_gateway

if TYPE_CHECKING:
    from runmesh.core.settings import Settings

app = typer.Typer()


@app.command(
    "publish",
    help="Validate the plugin as a worker would, build its versioned archive (code, "
    "config.yaml, requirements.txt and the actions' params schemas, with its sha256) and "
    "upload it to the gateway; runs may then name code@version.",
)
def publish_command(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="the plugin directory (holding config.yaml)")] = Path(
        "."
    ),
    force: Annotated[
        bool, typer.Option("--force", help="replace an already published pre-release")
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="also write the archive to this file"),
    ] = None,
) -> None:
    from runmesh.core.errors import PluginError
    from runmesh.plugins.archive import build_archive, sha256_hex
    from runmesh.plugins.loader import load_plugin

    try:
        plugin = load_plugin(path.resolve())
        archive = build_archive(
            plugin.directory, {name: action.manifest() for name, action in plugin.actions.items()}
        )
    except PluginError as exc:
        fail(str(exc))
    digest = sha256_hex(archive)
    if output is not None:
        output.write_bytes(archive)
    settings = load_settings(options=ctx.obj)
    published = run_async(
        _publish(settings, archive, f"{plugin.code}-{plugin.version}.zip", digest, force)
    )
    typer.echo(
        f"published {published['code']}@{published['version']} ({published['category']}): "
        f"{published['archive']['size']:,} bytes, sha256 {published['archive']['sha256']}, "
        f"actions {', '.join(published['actions'])}"
    )


async def _publish(
    settings: Settings, archive: bytes, filename: str, sha256: str, force: bool
) -> dict[str, Any]:
    url, token = require_gateway(settings)
    async with GatewayClient(url, token) as api:
        return await api.publish_plugin(archive, filename=filename, sha256=sha256, force=force)


@app.command("versions", help="List the versions of a plugin this tenant can run.")
def versions_command(
    ctx: typer.Context, code: Annotated[str, typer.Argument(help="the plugin's code")]
) -> None:
    settings = load_settings(options=ctx.obj)
    versions = run_async(_request(settings, "GET", f"/v1/plugins/{code}/versions"))
    table = Table("version", "source", "sha256", "announced")
    for version in versions or []:
        archive = version.get("archive") or {}
        source = (
            "published"
            if version.get("published")
            else ("built-in" if version.get("builtin") else "workers")
        )
        table.add_row(
            version["version"],
            source,
            (archive.get("sha256") or "")[:16],
            str(version.get("announced_at") or ""),
        )
    Console().print(table)


@app.command(
    "delete",
    help="Withdraw a published version (CODE@VERSION): no new run may use it; runs already "
    "running finish.",
)
def delete_command(
    ctx: typer.Context, ref: Annotated[str, typer.Argument(help="code@version")]
) -> None:
    code, _, version = ref.partition("@")
    if not code or not version:
        fail(f"{ref!r}: name the version to delete as code@version")
    run_async(
        _request(load_settings(options=ctx.obj), "DELETE", f"/v1/plugins/{code}/versions/{version}")
    )
    typer.echo(f"deleted {code}@{version}")


async def _request(settings: Settings, method: str, path: str) -> Any:
    url, token = require_gateway(settings)
    async with GatewayClient(url, token) as api:
        return await api.request(method, path)
