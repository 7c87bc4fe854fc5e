"""How a failed S3 call (botocore, aiohttp) becomes a StorageError that says if retry helps."""

from __future__ import annotations

import aiohttp
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from runmesh.storage.errors import (
    StorageAccessDenied,
    StorageError,
    StorageNotFound,
    StorageUnavailable,
)

NOT_FOUND = frozenset({"404", "NoSuchKey", "NoSuchBucket", "NotFound", "NoSuchUpload"})
DENIED = frozenset(
    {
        "403",
        "AccessDenied",
        "AllAccessDisabled",
        "ExpiredToken",
        "InvalidAccessKeyId",
        "InvalidToken",
        "SignatureDoesNotMatch",
    }
)
THROTTLED = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "SlowDown",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "ServiceUnavailable",
    }
)
PRECONDITION_FAILED = frozenset({"412", "PreconditionFailed"})

# What a call to S3 may raise that `translate` turns into a StorageError.
FAILURES: tuple[type[BaseException], ...] = (
    ClientError,
    BotoCoreError,
    OSError,
    TimeoutError,
    aiohttp.ClientError,
)


def error_code(exc: ClientError) -> tuple[str, int | None]:
    response = exc.response
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code, status if isinstance(status, int) else None


def translate(exc: BaseException, what: str) -> StorageError:
    """A StorageError for a failed S3 call; `what` names the operation and object."""
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, ClientError):
        code, status = error_code(exc)
        message = exc.response.get("Error", {}).get("Message") or code
        if code in NOT_FOUND or status == 404:
            return StorageNotFound(f"{what}: not found ({code or status})")
        if code in DENIED or status == 403:
            return StorageAccessDenied(f"{what}: access denied ({code or status}: {message})")
        if code in THROTTLED or (status is not None and (status >= 500 or status == 429)):
            return StorageUnavailable(f"{what}: S3 is unavailable ({code or status}: {message})")
        return StorageError(f"{what}: {code or status}: {message}")
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return StorageAccessDenied(
            f"{what}: no S3 credentials (set RUNMESH_S3_ACCESS_KEY_ID and "
            f"RUNMESH_S3_SECRET_ACCESS_KEY, or AWS_* variables): {exc}"
        )
    if isinstance(
        exc,
        HTTPClientError
        | BotoConnectionError
        | IncompleteReadError
        | OSError
        | TimeoutError
        | aiohttp.ClientError,
    ):
        return StorageUnavailable(f"{what}: cannot reach S3: {exc!r}")
    return StorageError(f"{what}: {exc}")
