"""Errors of the gateway; each maps to one HTTP status and a problem+json body."""

from __future__ import annotations

from typing import Any, ClassVar

from runmesh.core.errors import RunmeshError


class GatewayError(RunmeshError):
    """Base of gateway errors: `status` and `title` become the problem+json response."""

    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"
    headers: ClassVar[dict[str, str]] = {}

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class Unauthorized(GatewayError):
    """No bearer token, or one that is unknown or revoked."""

    status = 401
    title = "Unauthorized"
    headers: ClassVar[dict[str, str]] = {"WWW-Authenticate": "Bearer"}  # RFC 9110 §11.6.1


class NotFound(GatewayError):
    """The resource does not exist for this tenant (another tenant's rows are not found)."""

    status = 404
    title = "Not found"


class Conflict(GatewayError):
    """The request conflicts with the resource's state (e.g. cancelling a finished run)."""

    status = 409
    title = "Conflict"


class InvalidRequest(GatewayError):
    """Well-formed but unacceptable input: unknown action, params that fail their schema."""

    status = 422
    title = "Invalid request"


class PayloadTooLarge(GatewayError):
    """A request body above the limit for its route."""

    status = 413
    title = "Payload too large"


class TooManyRequests(GatewayError):
    """Over a limit of the caller's (a tenant's queued runs): try again later."""

    status = 429
    title = "Too many requests"
    headers: ClassVar[dict[str, str]] = {"Retry-After": "5"}


class ServiceUnavailable(GatewayError):
    """A dependency (S3, PostgreSQL, Kafka) refused the request's work: try again later."""

    status = 503
    title = "Service unavailable"
