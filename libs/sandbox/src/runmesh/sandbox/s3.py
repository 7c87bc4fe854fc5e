"""The sandbox's S3 server (moto in a child process) and bucket creation on any S3 endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from aiobotocore.session import get_session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from runmesh.sandbox.errors import SandboxError
from runmesh.sandbox.processes import LOOPBACK, free_port
from runmesh.sandbox.server_part import ServerPart

_logger = logging.getLogger("runmesh.sandbox")


@dataclass(slots=True, frozen=True)
class S3Credentials:
    """Static S3 credentials and region for a client of a sandbox S3 server."""

    access_key_id: str
    secret_access_key: str
    region: str = "us-east-1"


#: moto accepts any credentials; these are the ones its documentation uses.
MOTO_CREDENTIALS = S3Credentials("testing", "testing")

_CLIENT_CONFIG = Config(
    connect_timeout=5, read_timeout=10, retries={"max_attempts": 3, "mode": "standard"}
)


class MotoS3Server(ServerPart):
    """moto's S3 server (`python -m moto.server`) on 127.0.0.1 on a free port; in memory.

    Clients may use any credentials (`MOTO_CREDENTIALS` is a good choice). Its output goes to
    `<data_dir>/moto.log`.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        start_timeout_s: float = 60.0,
        stop_timeout_s: float = 10.0,
    ) -> None:
        super().__init__("s3 (moto)", data_dir, "moto.log", port, start_timeout_s, stop_timeout_s)

    @property
    def endpoint_url(self) -> str:
        """The S3 endpoint URL: "http://127.0.0.1:PORT"."""
        return f"http://{LOOPBACK}:{self.port}"

    async def start(self) -> None:
        """Start the server and wait until it answers HTTP."""
        if self._port is None:
            self._port = free_port()
        argv = [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(self._port)]
        _logger.info("starting moto S3 on %s", self.endpoint_url)
        await self._launch(argv, self._ready)

    async def _ready(self) -> bool:
        try:
            async with asyncio.timeout(1.0):
                reader, writer = await asyncio.open_connection(LOOPBACK, self.port)
        except (OSError, TimeoutError):
            return False
        try:
            request = f"GET /moto-api/ HTTP/1.1\r\nHost: {LOOPBACK}:{self.port}\r\n"
            writer.write(f"{request}Connection: close\r\n\r\n".encode())
            async with asyncio.timeout(5.0):
                status_line = await reader.readline()
        except (OSError, TimeoutError):
            return False
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        return status_line.startswith(b"HTTP/1.")

    async def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after the stop timeout). Safe to call twice."""
        if self._child.running:
            _logger.info("stopping moto S3 on %s", self.endpoint_url)
        await self._child.stop(timeout_s=self._stop_timeout_s)


async def ensure_bucket(
    endpoint_url: str,
    bucket: str,
    *,
    credentials: S3Credentials | None = MOTO_CREDENTIALS,
    timeout_s: float = 30.0,
) -> None:
    """Create `bucket` at `endpoint_url` unless it exists already.

    `credentials=None` uses botocore's usual chain (AWS_* variables, profiles). Raises
    SandboxError naming the bucket and endpoint when S3 refuses.
    """
    session = get_session()
    extra: dict[str, str] = {}
    if credentials is not None:
        extra = {
            "aws_access_key_id": credentials.access_key_id,
            "aws_secret_access_key": credentials.secret_access_key,
            "region_name": credentials.region,
        }
    try:
        async with session.create_client(
            "s3", endpoint_url=endpoint_url, config=_CLIENT_CONFIG, **extra
        ) as client:
            try:
                async with asyncio.timeout(timeout_s):
                    await client.create_bucket(Bucket=bucket)
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code")
                if code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise
    except (ClientError, BotoCoreError, TimeoutError) as exc:
        problem = f"cannot create bucket {bucket!r} at {endpoint_url}: {exc}"
        raise SandboxError("s3", problem) from exc
