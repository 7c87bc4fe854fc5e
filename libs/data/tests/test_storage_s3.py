"""S3 storage on the sandbox's moto: multipart uploads and copies, aborts, retries, metadata."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import pytest
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from runmesh.core.retries import RETRIES
from runmesh.core.settings import Settings
from runmesh.storage import (
    S3Storage,
    StorageError,
    StorageNotFound,
    StorageUnavailable,
    platform_storage,
)
from runmesh.storage.s3 import MiB

pytestmark = pytest.mark.timeout(60)


def small_parts(settings: Settings, prefix: str) -> S3Storage:
    """A storage that goes multipart above 1 MiB in 5 MiB parts (S3's smallest)."""
    secret = settings.s3_secret_access_key
    return S3Storage(
        settings.s3_bucket,
        prefix,
        endpoint_url=settings.s3_endpoint_url,
        access_key_id=settings.s3_access_key_id,
        secret_access_key=secret.get_secret_value() if secret else None,
        region=settings.s3_region,
        multipart_threshold=1 * MiB,
        part_size=5 * MiB,
        max_concurrency=2,
    )


@pytest.fixture
def prefix() -> str:
    return f"t-{uuid4().hex[:10]}"


@pytest.fixture
async def raw(settings: Settings) -> AsyncIterator[Any]:
    """A plain aiobotocore client (Any: generated at run time) for checks behind the storage."""
    secret = settings.s3_secret_access_key
    extra = (
        {
            "aws_access_key_id": settings.s3_access_key_id,
            "aws_secret_access_key": secret.get_secret_value(),
        }
        if secret is not None
        else {}
    )
    async with get_session().create_client(
        "s3", endpoint_url=settings.s3_endpoint_url, region_name=settings.s3_region, **extra
    ) as client:
        yield client


async def stream(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_large_writes_go_multipart_and_keep_their_checksum(
    settings: Settings, prefix: str, raw: Any
) -> None:
    data = os.urandom(12 * MiB + 123)
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    async with small_parts(settings, prefix) as storage:
        info = await storage.write("big.bin", stream(data, 700_000))

        assert (info.size, info.checksum) == (len(data), digest)
        head = await raw.head_object(Bucket=settings.s3_bucket, Key=f"{prefix}/big.bin")
        assert head["ETag"].endswith('-3"')  # 5 + 5 + 2 MiB parts (after the metadata copy)
        assert head["ContentType"] == "application/octet-stream"
        stat = await storage.stat("big.bin")
        assert (stat.size, stat.checksum) == (len(data), digest)
        hasher = hashlib.sha256()
        async for chunk in storage.read("big.bin"):
            assert len(chunk) <= 1 << 20
            hasher.update(chunk)
        assert hasher.hexdigest() == digest.removeprefix("sha256:")

        copied = await storage.copy("big.bin", "copy/big.bin")  # a multipart copy
        assert (copied.size, copied.checksum) == (len(data), digest)


async def test_concurrent_writes_share_the_storages_part_slots(
    settings: Settings, prefix: str
) -> None:
    """Four multipart writes at once never have more than `max_concurrency` parts in flight."""
    files = {f"f{i}.bin": os.urandom(10 * MiB + 1000 * i + 1) for i in range(4)}  # 3 parts each
    async with small_parts(settings, prefix) as storage:  # 2 part slots
        client = await storage._s3.get()
        running = 0
        peak = {"requests": 0, "gauge": 0}

        def counted(call: Any) -> Any:  # Any: aiobotocore's generated client methods
            async def counting(**arguments: Any) -> Any:
                nonlocal running
                running += 1
                peak["requests"] = max(peak["requests"], running)
                peak["gauge"] = max(peak["gauge"], storage.parts_in_flight)
                try:
                    await asyncio.sleep(0.05)  # parts overlap, so an excess would show
                    return await call(**arguments)
                finally:
                    running -= 1

            return counting

        # Copies count too: each multipart write is sealed by a multipart copy onto itself.
        client.upload_part = counted(client.upload_part)
        client.upload_part_copy = counted(client.upload_part_copy)
        infos = await asyncio.gather(
            *(storage.write(path, stream(data, 700_000)) for path, data in files.items())
        )

        assert peak == {"requests": 2, "gauge": 2}
        assert storage.parts_in_flight == 0
        for info, (path, data) in zip(infos, files.items(), strict=True):
            digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
            assert (info.path, info.size, info.checksum) == (path, len(data), digest)
            assert (await storage.stat(path)).checksum == digest
            hasher = hashlib.sha256()
            async for chunk in storage.read(path):
                hasher.update(chunk)
            assert f"sha256:{hasher.hexdigest()}" == digest


async def test_a_failing_stream_aborts_the_multipart_upload(
    settings: Settings, prefix: str, raw: Any
) -> None:
    async def broken() -> AsyncIterator[bytes]:
        for _ in range(7):
            yield b"x" * MiB
        raise ValueError("the source broke")

    async with small_parts(settings, prefix) as storage:
        with pytest.raises(ValueError, match="the source broke"):
            await storage.write("broken.bin", broken())
        assert not await storage.exists("broken.bin")
        assert storage.parts_in_flight == 0  # the parts' slots are back for the next writes

    uploads = await raw.list_multipart_uploads(Bucket=settings.s3_bucket, Prefix=prefix)
    assert uploads.get("Uploads", []) == []


async def test_objects_written_by_others_have_no_checksum_and_markers_are_skipped(
    settings: Settings, prefix: str, raw: Any
) -> None:
    bucket = settings.s3_bucket
    await raw.put_object(Bucket=bucket, Key=f"{prefix}/foreign.txt", Body=b"theirs")
    await raw.put_object(Bucket=bucket, Key=f"{prefix}/folder/", Body=b"")  # a console marker
    await raw.put_object(Bucket=bucket, Key=f"{prefix}/odd//name", Body=b"")
    async with platform_storage(settings.s3, prefix=prefix) as storage:
        stat = await storage.stat("foreign.txt")
        assert (stat.size, stat.checksum) == (6, None)
        assert [i.path async for i in storage.list(recursive=True)] == ["foreign.txt"]
        assert await storage.list_dirs() == ["folder", "odd"]


async def test_part_uploads_retry_throttling_and_give_up_on_other_errors(
    settings: Settings,
) -> None:
    storage = small_parts(settings, "unused")
    calls: list[int] = []

    def throttled_twice() -> Any:
        async def call() -> str:
            calls.append(1)
            if len(calls) <= 2:
                error = {"Error": {"Code": "SlowDown", "Message": "slow down"}}
                raise ClientError(error, "UploadPart")
            return "done"

        return call()

    before = RETRIES.snapshot()
    assert await storage._s3.request("s3.upload_part", "upload part 1", throttled_twice) == "done"
    assert len(calls) == 3
    after = RETRIES.snapshot()
    counted = {key: after[key] - before.get(key, 0) for key in after if key[0] == "s3.upload_part"}
    assert sum(counted.values()) == 2, counted  # each retry counted once, for /metrics

    async def missing() -> str:
        calls.append(1)
        raise ClientError({"Error": {"Code": "NoSuchUpload", "Message": "gone"}}, "UploadPart")

    calls.clear()
    with pytest.raises(StorageNotFound, match="upload part 1"):
        await storage._s3.request("s3.upload_part", "upload part 1", missing)
    assert len(calls) == 1
    await storage.close()


async def test_an_unreachable_endpoint_is_unavailable(settings: Settings) -> None:
    storage = S3Storage(
        "bucket",
        endpoint_url="http://127.0.0.1:9",
        access_key_id="a",
        secret_access_key="b",
        timeout_s=1,
    )
    async with storage:
        with pytest.raises(StorageUnavailable) as raised:
            await storage.stat("x")
    assert raised.value.retriable
    with pytest.raises(StorageError, match="closed"):
        await storage.stat("x")


async def test_a_failing_request_is_sent_max_attempts_times_not_more() -> None:
    """botocore's own retries are off: they would multiply the storage's (3 x 4 before)."""
    requests: list[bytes] = []

    async def always_slow_down(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # One answer per connection, before any body (botocore asks `Expect: 100-continue`).
        head = await reader.readuntil(b"\r\n\r\n")
        requests.append(head.split(b" ", 2)[1])
        body = b"<Error><Code>SlowDown</Code><Message>slow down</Message></Error>"
        writer.write(
            b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nConnection: close\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(always_slow_down, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    storage = S3Storage(
        "bucket",
        endpoint_url=f"http://127.0.0.1:{port}",
        access_key_id="a",
        secret_access_key="b",
        max_attempts=3,
    )
    try:
        async with storage:
            with pytest.raises(StorageUnavailable):
                await storage.write_bytes("x.txt", b"data")
    finally:
        server.close()
    assert requests == [b"/bucket/x.txt"] * 3


def test_credentials_come_in_pairs() -> None:
    with pytest.raises(StorageError, match="both"):
        S3Storage("bucket", access_key_id="only-the-id")
    with pytest.raises(ValueError, match="part_size"):
        S3Storage("bucket", part_size=MiB)
