"""What every request is held to before a route sees it: a body size, and text and numbers
PostgreSQL can store.

- A body over `RUNMESH_GATEWAY_MAX_BODY_BYTES` (a route may have a larger limit of its own,
  as the plugin archive upload has) is a 413: at once from `Content-Length`, and while it is
  read when it comes in chunks.
- A JSON body (the gateway reads a body without a content type as JSON, as FastAPI does) is
  a 422 when it is not text, and a 422 naming the field when it holds NUL (`\\u0000`:
  PostgreSQL's text and jsonb cannot) or a lone surrogate (`\\ud800`: not Unicode text, so no
  driver can encode it), an integer outside 64 bits (no column or JSON encoder of the
  platform takes it), or when it nests deeper than `MAX_JSON_DEPTH` levels.
- A `/v1` path or query string with NUL is a 422 the same way.

Most bodies skip the JSON screening: it runs only when a cheap byte search finds something
it could refuse (an escape, a 19-digit number, a 0xED byte, more than `MAX_JSON_DEPTH`
brackets, bytes that are not UTF-8), so the common request costs a few `bytes.find`s.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, Final
from urllib.parse import parse_qsl

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runmesh.gateway.errors import PayloadTooLarge
from runmesh.gateway.problems import problem
from runmesh.gateway.routes.support import problems

MAX_JSON_DEPTH: Final = 64
"""Most levels of arrays and objects in a JSON body, the body itself being the first."""

BODY_LIMIT_SETTING: Final = "RUNMESH_GATEWAY_MAX_BODY_BYTES"
_MAX_ERRORS: Final = 20
_INT64: Final = range(-(2**63), 2**63)
_UNSTORABLE: Final = re.compile("[\x00\ud800-\udfff]")
_LONG_NUMBER: Final = re.compile(rb"\d{19}")
_BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH"})


class BodyTooLarge(HTTPException):
    """A body found over its limit while it was read (one without `Content-Length`); an
    `HTTPException`, so FastAPI's body parsing passes it on to the problem handler."""

    title: ClassVar[str] = PayloadTooLarge.title

    def __init__(self, limit: int, setting: str) -> None:
        super().__init__(413, _too_large(limit, setting))


class RequestGuard:
    """ASGI middleware holding every HTTP request to the limits above.

    Args:
        app: The application it guards.
        max_body_bytes: The body limit of every route not in `larger_bodies`.
        larger_bodies: `(method, path)` → `(limit, setting name)` for routes that take more.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        larger_bodies: Mapping[tuple[str, str], tuple[int, str]] | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.larger_bodies = dict(larger_bodies or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a refusal itself, or pass the request on with its body accounted for."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        errors = _text_errors(scope) if scope["path"].startswith("/v1/") else []
        if errors:
            await _invalid(errors)(scope, receive, send)
            return
        limit, setting = self.larger_bodies.get(
            (scope["method"], scope["path"]), (self.max_body_bytes, BODY_LIMIT_SETTING)
        )
        headers = _headers(scope)
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await problem(413, PayloadTooLarge.title, _too_large(limit, setting))(
                scope, receive, send
            )
            return
        content_type = headers.get("content-type", "").lower()
        if content_type.startswith("multipart/") or (
            not content_type and scope["method"] not in _BODY_METHODS
        ):
            # Archives stream to their route, counted; bodiless requests pass untouched.
            await self.app(scope, _counting(receive, limit, setting), send)
            return
        try:
            body = await _read_body(receive, limit, setting)
        except BodyTooLarge as exc:
            await problem(413, exc.title, str(exc.detail))(scope, receive, send)
            return
        errors = json_errors(body) if _is_json(content_type) else []
        if errors:
            await _invalid(errors)(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)


def document_guarded_statuses(app: FastAPI) -> None:
    """Add the guard's answers to the OpenAPI `responses` of the routes that can get them:
    413 where a route takes a body, 422 on every `/v1` route."""
    for route in app.routes:
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        wanted = []
        if (route.methods or set()) & _BODY_METHODS:
            wanted.append(413)
        if route.path.startswith("/v1/"):
            wanted.append(422)
        for status in wanted:
            route.responses.setdefault(status, problems(status)[status])


def json_errors(body: bytes) -> list[dict[str, Any]]:
    """Field errors of a JSON body the platform could not store (empty: nothing to refuse,
    or not JSON at all, which the route's own parsing reports)."""
    if not _worth_screening(body):
        return []
    try:
        # The stdlib reads lone surrogates (and UTF-16/32 bodies) as FastAPI will: orjson
        # would refuse them without saying where they are.
        document = json.loads(body)
    except RecursionError:
        return [_error(["body"], f"nested deeper than {MAX_JSON_DEPTH} levels", "json_depth")]
    except UnicodeDecodeError as exc:  # FastAPI would answer a bare 400
        return [
            _error(["body"], f"not JSON text in UTF-8, -16 or -32 ({exc.reason})", "json_invalid")
        ]
    except ValueError:
        return []
    return list(_walk(document))


def _worth_screening(body: bytes) -> bool:
    return (
        b"\\u" in body  # an escape: NUL and surrogates can only come that way in UTF-8
        or b"\x00" in body  # UTF-16 or UTF-32 text
        or b"\xed" in body  # the UTF-8 lead byte of surrogates (and of some Hangul)
        or body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH
        or _LONG_NUMBER.search(body) is not None
        or not _is_utf8(body)
    )


def _is_utf8(body: bytes) -> bool:
    if body.isascii():
        return True
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _walk(document: Any) -> Iterator[dict[str, Any]]:  # Any: arbitrary JSON
    """Errors of a parsed body, depth first, iteratively (no recursion on hostile depth)."""
    found = 0
    stack: list[tuple[Any, list[Any], int]] = [(document, ["body"], 1)]
    while stack and found < _MAX_ERRORS:
        value, loc, depth = stack.pop()
        error = None
        if isinstance(value, dict | list):
            if depth > MAX_JSON_DEPTH:
                error = _error(loc, f"nested deeper than {MAX_JSON_DEPTH} levels", "json_depth")
            else:
                items = list(value.items()) if isinstance(value, dict) else enumerate(value)
                children = []
                for key, item in items:
                    if isinstance(key, str) and _UNSTORABLE.search(key):
                        found += 1
                        yield _error(loc, f"key {key!r}: {_text_problem(key)}", "string_text")
                    children.append((item, [*loc, key], depth + 1))
                stack.extend(reversed(children))
        elif isinstance(value, str) and _UNSTORABLE.search(value):
            error = _error(loc, _text_problem(value), "string_text")
        elif isinstance(value, int) and not isinstance(value, bool) and value not in _INT64:
            error = _error(loc, "integer outside the signed 64-bit range", "int_range")
        if error is not None:
            found += 1
            yield error


def _text_errors(scope: Scope) -> list[dict[str, Any]]:
    """NUL in the path or a query parameter (URL-decoded, as the routes will see them)."""
    errors = []
    if _UNSTORABLE.search(scope["path"]):
        errors.append(_error(["path"], _text_problem(scope["path"]), "string_text"))
    query = scope.get("query_string", b"").decode("latin-1")
    for name, value in parse_qsl(query, keep_blank_values=True):
        if _UNSTORABLE.search(name) or _UNSTORABLE.search(value):
            errors.append(_error(["query", name], _text_problem(name + value), "string_text"))
    return errors[:_MAX_ERRORS]


def _text_problem(text: str) -> str:
    if "\x00" in text:
        return "must not contain NUL (\\u0000): PostgreSQL cannot store it"
    return "must not contain a lone surrogate (\\ud800-\\udfff): it is not Unicode text"


def _error(loc: list[Any], msg: str, kind: str) -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "type": kind}


def _invalid(errors: list[dict[str, Any]]) -> Any:  # Any: a Starlette response (an ASGI app)
    return problem(
        422,
        "Invalid request",
        f"the request does not validate: {errors[0]['msg']}",
        errors=errors,
    )


def _too_large(limit: int, setting: str) -> str:
    return (
        f"the request body is over {limit:,} bytes ({setting}); put large data in S3 (or "
        "another store) and pass its URI"
    )


def _headers(scope: Scope) -> dict[str, str]:
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}


def _is_json(content_type: str) -> bool:
    # FastAPI reads a body without a content type as JSON, and so `*/json` and `*/*+json`.
    media = content_type.partition(";")[0].strip()
    return not media or media.endswith(("/json", "+json"))


async def _read_body(receive: Receive, limit: int, setting: str) -> bytes:
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break  # the client left: the route sees an empty body and answers into the void
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit, setting)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """`receive` that gives the buffered body once, then what the client sends next (its
    disconnect, which streaming responses wait for)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


def _counting(receive: Receive, limit: int, setting: str) -> Receive:
    """`receive` that raises `BodyTooLarge` once more than `limit` body bytes came."""
    size = 0

    async def counted() -> Message:
        nonlocal size
        message = await receive()
        if message["type"] == "http.request":
            size += len(message.get("body", b""))
            if size > limit:
                raise BodyTooLarge(limit, setting)
        return message

    return counted
