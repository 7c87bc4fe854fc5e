"""A small async client of the gateway's REST and SSE API, with errors a person can read."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import orjson

from runmesh.cli.errors import CliError
from runmesh.cli.settings import GatewayOptions, load_settings, require_gateway

if TYPE_CHECKING:
    import httpx

# Every `runmesh` invocation imports this module: httpx and asyncio are imported where a request
# is made, to keep `runmesh --help` fast.

_RECONNECT_ATTEMPTS = 20


@functools.cache
def _timeout(kind: Literal["request", "stream", "upload"]) -> httpx.Timeout:
    """The timeout of a kind of request, built once."""
    import httpx

    if kind == "stream":
        return httpx.Timeout(10.0, read=60.0)  # heartbeats come every 15 s
    if kind == "upload":
        return httpx.Timeout(300.0, connect=10.0)  # a plugin archive may be 50 MiB
    return httpx.Timeout(30.0, connect=10.0)


@dataclass(slots=True, frozen=True)
class StreamMessage:
    """One Server-Sent Events message."""

    id: int | None
    event: str
    data: dict[str, Any]


def command_client(options: GatewayOptions | None) -> GatewayClient:
    """The client a command talks to the gateway with: the root `--gateway-url` / `--token`
    options (a command's `ctx.obj`) over the environment and a running `runmesh dev`."""
    url, token = require_gateway(load_settings(options=options))
    return GatewayClient(url, token)


class GatewayClient:
    """`async with GatewayClient(url, token) as api:` then `await api.submit(...)` etc."""

    def __init__(self, url: str, token: str) -> None:
        import httpx

        self.url = url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=_timeout("request"),
            # Loading the CA bundle is a fifth of a command's start, and a plain-http gateway
            # never uses it: every request goes to a path under `base_url`, redirects are not
            # followed, so no TLS connection can arise.
            verify=self.url.lower().startswith("https://"),
        )

    async def __aenter__(self) -> GatewayClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._http.aclose()

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send a request; a problem+json answer becomes a `CliError` with its detail."""
        import httpx

        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise CliError(
                f"cannot reach the gateway at {self.url} ({exc.__class__.__name__}); "
                "is `runmesh dev` running?"
            ) from exc
        if response.status_code >= 400:
            raise CliError(_problem_text(response))
        return response.json() if response.content else None

    async def submit(
        self, body: dict[str, Any], *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """POST /v1/runs (with an `Idempotency-Key` header when one is given)."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        run: dict[str, Any] = await self.request("POST", "/v1/runs", json=body, headers=headers)
        return run

    async def publish_plugin(
        self, archive: bytes, *, filename: str, sha256: str, force: bool
    ) -> dict[str, Any]:
        """POST /v1/plugins (multipart): the archive, its checksum and `force`."""
        published: dict[str, Any] = await self.request(
            "POST",
            "/v1/plugins",
            files={"archive": (filename, archive, "application/zip")},
            data={"sha256": sha256, "force": "true" if force else "false"},
            timeout=_timeout("upload"),
        )
        return published

    async def run(self, run_id: str) -> dict[str, Any]:
        """GET /v1/runs/{id}."""
        run: dict[str, Any] = await self.request("GET", f"/v1/runs/{run_id}")
        return run

    async def stream(self, run_id: str) -> AsyncIterator[StreamMessage]:
        """The run's events from the start, live, until the stream ends after its end.

        A dropped connection is resumed with `Last-Event-ID`, so no event is seen twice or
        missed.
        """
        import asyncio

        import httpx

        last_id: int | None = None
        failures = 0
        while True:
            headers = {"Accept": "text/event-stream"}
            if last_id is not None:
                headers["Last-Event-ID"] = str(last_id)
            try:
                async with self._http.stream(
                    "GET", f"/v1/runs/{run_id}/events", headers=headers, timeout=_timeout("stream")
                ) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        raise CliError(_problem_text(response))
                    async for message in _parse_sse(response.aiter_lines()):
                        failures = 0
                        if message.id is not None:
                            last_id = message.id
                        yield message
            except (httpx.TransportError, httpx.StreamError) as exc:
                failures += 1
                if failures > _RECONNECT_ATTEMPTS:
                    raise CliError(f"lost the event stream of run {run_id}: {exc}") from exc
                await asyncio.sleep(min(0.2 * 2**failures, 5.0))
            else:
                return  # the server ended the stream: the run is over


async def _parse_sse(lines: AsyncIterator[str]) -> AsyncIterator[StreamMessage]:
    event, event_id = "message", None
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                text = "\n".join(data)
                try:
                    payload = orjson.loads(text)
                except orjson.JSONDecodeError:
                    payload = {"raw": text}  # shown as is rather than dropped
                yield StreamMessage(event_id, event, payload)
            event, data, event_id = "message", [], None
            continue
        if line.startswith(":"):
            continue  # a heartbeat comment
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            event = value
        elif field == "data":
            data.append(value)
        elif field == "id" and value.isdigit():
            event_id = int(value)


def _problem_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"the gateway answered {response.status_code}: {response.text[:200]}"
    detail = body.get("detail") or body.get("title") or response.reason_phrase
    errors = body.get("errors") or []
    lines = [f"{response.status_code} {detail}"]
    for error in errors[:20]:
        where = ".".join(str(part) for part in error.get("loc", [])) or "(request)"
        lines.append(f"  {where}: {error.get('msg', '')}")
    return "\n".join(lines)
