"""The sandbox parts against themselves: Kafka, Postgres and S3 round trips, Tansu on S3."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import asyncpg
import pytest
from aiobotocore.session import get_session
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from runmesh.core.settings import Settings
from runmesh.sandbox import (
    MOTO_CREDENTIALS,
    MotoS3Server,
    Sandbox,
    SandboxError,
    TansuBroker,
    ensure_bucket,
)


async def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


async def list_topics(bootstrap: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return list(await admin.list_topics())
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for index, value in enumerate(values):
            await producer.send_and_wait(topic, value, key=str(index).encode())
    finally:
        await producer.stop()


async def consume_all(bootstrap: str, topic: str, count: int) -> list[bytes]:
    """Read `count` records of `topic` from the start, without a consumer group."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    values: list[bytes] = []
    try:
        async with asyncio.timeout(20):
            while len(values) < count:
                batches = await consumer.getmany(timeout_ms=500)
                values += [r.value for records in batches.values() for r in records]
    finally:
        await consumer.stop()
    return values


async def test_settings_name_every_part(sandbox: Sandbox) -> None:
    assert sandbox.settings.kafka_bootstrap
    assert sandbox.settings.database_url
    assert sandbox.settings.s3_endpoint_url
    if sandbox.broker is not None:
        assert sandbox.settings.kafka_bootstrap == sandbox.broker.bootstrap


async def test_kafka_produce_consume_roundtrip(settings: Settings) -> None:
    assert settings.kafka_bootstrap is not None
    topic = settings.topic("sandbox.roundtrip")
    await create_topic(settings.kafka_bootstrap, topic, partitions=3)
    values = [f"record {i}".encode() for i in range(10)]

    await produce(settings.kafka_bootstrap, topic, values)

    assert sorted(await consume_all(settings.kafka_bootstrap, topic, len(values))) == values


async def test_postgres_answers(sandbox: Sandbox) -> None:
    connection = await asyncpg.connect(sandbox.settings.database_url, timeout=10)
    try:
        assert await connection.fetchval("select 1") == 1
    finally:
        await connection.close(timeout=5)


@contextlib.asynccontextmanager
async def s3_client(sandbox: Sandbox, endpoint_url: str) -> AsyncIterator[Any]:
    # Any: aiobotocore clients are generated at run time and untyped.
    # Credentials are ours for the sandbox's moto; an external S3 brings its own (AWS_*).
    creds = MOTO_CREDENTIALS if sandbox.s3 is not None else None
    extra = (
        {
            "aws_access_key_id": creds.access_key_id,
            "aws_secret_access_key": creds.secret_access_key,
            "region_name": creds.region,
        }
        if creds is not None
        else {}
    )
    async with get_session().create_client("s3", endpoint_url=endpoint_url, **extra) as client:
        yield client


async def test_s3_bucket_exists_and_keeps_objects(sandbox: Sandbox, settings: Settings) -> None:
    assert settings.s3_endpoint_url is not None
    key = f"{settings.topic_prefix}/hello.txt"
    async with s3_client(sandbox, settings.s3_endpoint_url) as s3:
        await s3.head_bucket(Bucket=settings.s3_bucket)
        await s3.put_object(Bucket=settings.s3_bucket, Key=key, Body=b"hi")
        response = await s3.get_object(Bucket=settings.s3_bucket, Key=key)
        async with response["Body"] as body:
            assert await body.read() == b"hi"


@pytest.mark.slow
async def test_tansu_on_s3_keeps_records_and_offsets_across_restart(
    sandbox: Sandbox, settings: Settings, tmp_path: Path
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        if sandbox.s3 is not None:
            endpoint = sandbox.s3.endpoint_url
        else:  # an external S3: Tansu gets moto's credentials, so it needs a moto of its own
            moto = MotoS3Server(tmp_path)
            stack.push_async_callback(moto.stop)
            await moto.start()
            endpoint = moto.endpoint_url
        bucket = f"tansu-{uuid4().hex[:12]}"
        await ensure_bucket(endpoint, bucket)
        broker = TansuBroker(
            tmp_path,
            broker_bin=settings.broker_bin,
            storage_engine=f"s3://{bucket}/",
            s3_endpoint_url=endpoint,
        )
        stack.push_async_callback(broker.stop)
        await broker.start()
        port = broker.port
        topic, group = settings.topic("durable"), f"{settings.topic_prefix}-group"
        values = [f"durable {i}".encode() for i in range(6)]
        await create_topic(broker.bootstrap, topic, partitions=2)
        await produce(broker.bootstrap, topic, values)
        partition = TopicPartition(topic, 0)
        committer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group)
        await committer.start()
        try:
            committer.assign([partition])
            await committer.commit({partition: 1})
        finally:
            await committer.stop()

        await broker.restart()

        assert broker.port == port
        assert topic in await list_topics(broker.bootstrap)
        assert sorted(await consume_all(broker.bootstrap, topic, len(values))) == values
        reader = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group)
        await reader.start()
        try:
            assert await reader.committed(partition) == 1
        finally:
            await reader.stop()


async def test_a_sandbox_of_external_parts_starts_nothing(sandbox: Sandbox) -> None:
    async with Sandbox(sandbox.settings) as nested:
        assert (nested.broker, nested.postgres, nested.s3) == (None, None, None)
        assert nested.settings == sandbox.settings


async def test_a_broker_that_exits_names_itself_and_its_log(tmp_path: Path) -> None:
    broker = TansuBroker(tmp_path, broker_bin=Path("/bin/false"))
    with pytest.raises(SandboxError) as raised:
        await broker.start()
    assert "kafka (Tansu)" in raised.value.summary
    assert str(tmp_path / "tansu.log") in raised.value.summary
    assert not broker.running


async def test_a_part_failing_stops_the_others_and_keeps_the_logs(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    broken = sandbox.settings.model_copy(
        update={
            "kafka_bootstrap": None,
            "database_url": None,
            "broker_bin": Path("/bin/false"),
            "sandbox_dir": tmp_path,
        }
    )
    stack = Sandbox(broken)

    with pytest.raises(SandboxError, match="kafka") as raised:
        async with stack:
            pytest.fail("the sandbox started with a broker that exits")

    assert stack.postgres is not None
    assert not stack.postgres.running
    assert raised.value.log_path is not None
    assert raised.value.log_path.is_file()
    assert raised.value.log_path.is_relative_to(tmp_path)
