"""The aiobotocore client of one S3 storage: its configuration, and calls through it under a
deadline, as StorageErrors, retried with backoff where that can help (one retry layer:
botocore's own is off)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiobotocore.session import get_session
from botocore import UNSIGNED
from botocore.config import Config

from runmesh.core.retries import retried
from runmesh.storage.errors import StorageError, retriable
from runmesh.storage.s3_errors import FAILURES, translate

T = TypeVar("T")


class S3Client:
    """One aiobotocore client for one bucket, created on first use and closed by `close()`.

    Requests are signed with `credentials` (`aws_access_key_id`, `aws_secret_access_key`),
    else botocore's chain; `anonymous` sends them unsigned and never looks for keys. Every
    call has a `timeout_s` deadline. `request` sends a request up to `max_attempts` times
    while it fails with throttling, 5xx or a connection error; botocore's own retries are
    off, so the two never multiply. `name` is the storage the client serves, for the error
    once it is closed.
    """

    def __init__(
        self,
        bucket: str,
        *,
        name: str,
        endpoint_url: str | None,
        credentials: dict[str, str],
        anonymous: bool,
        region: str,
        max_pool_connections: int,
        timeout_s: float,
        max_attempts: int,
    ) -> None:
        self.bucket = bucket
        self._name = name
        self._endpoint_url = endpoint_url
        self._credentials = credentials
        # Unsigned requests: botocore's chain would otherwise find the host's own credentials.
        self._anonymous = anonymous
        self._region = region
        self._max_pool_connections = max_pool_connections
        self._timeout_s = timeout_s
        self._max_attempts = max_attempts
        # Any: aiobotocore clients are generated at run time and untyped.
        self._client: Any = None
        self._client_lock = asyncio.Lock()
        self._stack = contextlib.AsyncExitStack()
        self._closed = False

    async def close(self) -> None:
        """Close the client. Safe to call twice; it cannot be used afterwards."""
        self._closed = True
        self._client = None
        await self._stack.aclose()

    async def get(self) -> Any:  # Any: see `_client`
        """The aiobotocore client, created on first use."""
        if self._closed:
            raise StorageError(f"{self._name} is closed")
        if self._client is None:
            async with self._client_lock:
                if self._client is None:
                    self._client = await self._stack.enter_async_context(self._create())
        return self._client

    def _create(self) -> Any:  # Any: see `_client`
        custom = self._endpoint_url is not None
        config = Config(
            connect_timeout=min(10.0, self._timeout_s),
            read_timeout=self._timeout_s,
            # `request` is the one retry layer: botocore's would multiply its attempts.
            retries={"total_max_attempts": 1, "mode": "standard"},
            max_pool_connections=self._max_pool_connections,
            # S3-compatible servers (MinIO, moto) are reached by path, not virtual host, and
            # many reject the CRC checksums botocore adds by default since 1.36.
            s3={"addressing_style": "path"} if custom else None,
            request_checksum_calculation="when_required" if custom else "when_supported",
            response_checksum_validation="when_required" if custom else "when_supported",
            signature_version=UNSIGNED if self._anonymous else None,
        )
        return get_session().create_client(
            "s3",
            region_name=self._region,
            endpoint_url=self._endpoint_url,
            config=config,
            **self._credentials,
        )

    async def call(self, what: str, call: Awaitable[T]) -> T:
        """Await one S3 call under the timeout, as a StorageError when it fails (once: a read
        of a response's body cannot be sent again)."""
        try:
            async with asyncio.timeout(self._timeout_s):
                return await call
        except FAILURES as exc:
            raise translate(exc, what) from exc

    async def request(self, operation: str, what: str, make: Callable[[], Awaitable[T]]) -> T:
        """`make()`'s request, sent again with backoff while its failure is retriable.

        `operation` (`s3.upload_part`) names it in the retry counter, `what` in messages.
        """
        return await retried(
            operation,
            lambda: self.call(what, make()),
            on=retriable,
            attempts=self._max_attempts,
        )
