"""The devstack broker: Tansu does what the worker needs from Kafka, and its CLI behaves."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord

from devstack.broker import FAST_GROUP_JOIN, Broker, BrokerError, create_topics, running_broker
from devstack.ports import free_port
from tests.fixtures.broker import TopicFactory, TopicNames

REPO_ROOT = Path(__file__).resolve().parents[2]


@asynccontextmanager
async def producer(bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    # Tansu answers InitProducerId with an error, so no idempotence against it.
    client = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False)
    await client.start()
    try:
        yield client
    finally:
        await client.stop()


@asynccontextmanager
async def consumer(bootstrap: str, topic: str, group_id: str) -> AsyncIterator[AIOKafkaConsumer]:
    client = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **FAST_GROUP_JOIN,
    )
    await client.start()
    try:
        yield client
    finally:
        await client.stop()


async def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    async with producer(bootstrap) as client:
        for value in values:
            await client.send_and_wait(topic, value, key=value)


async def consume(client: AIOKafkaConsumer, count: int) -> list[ConsumerRecord[bytes, bytes]]:
    records: list[ConsumerRecord[bytes, bytes]] = []
    async with asyncio.timeout(15):
        while len(records) < count:
            batches = await client.getmany(timeout_ms=200)
            records += [record for batch in batches.values() for record in batch]
    return records


async def topic_list(bootstrap: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topics: list[str] = await admin.list_topics()
        return topics
    finally:
        await admin.close()


async def test_a_group_member_reads_every_record_of_every_partition(
    kafka_bootstrap: str, topic_names: TopicNames, group_id: str
) -> None:
    values = [f"event-{i}".encode() for i in range(12)]
    await produce(kafka_bootstrap, topic_names.input, values)
    async with consumer(kafka_bootstrap, topic_names.input, group_id) as client:
        records = await consume(client, len(values))
    assert sorted(record.value for record in records) == sorted(values)


async def test_manual_commit_stores_each_partitions_position(
    kafka_bootstrap: str, topic_names: TopicNames, group_id: str
) -> None:
    values = [f"event-{i}".encode() for i in range(12)]
    await produce(kafka_bootstrap, topic_names.input, values)
    async with consumer(kafka_bootstrap, topic_names.input, group_id) as client:
        records = await consume(client, len(values))
        await client.commit()
        committed = {tp.partition: await client.committed(tp) for tp in client.assignment()}
    per_partition = Counter(record.partition for record in records)
    assert committed == {partition: per_partition[partition] for partition in range(3)}


# Slow because of Tansu: its first group generation is 0, and aiokafka sends LeaveGroup
# only for generations above 0, so the second member waits out the first one's session.
@pytest.mark.slow
async def test_a_new_member_resumes_from_the_committed_offset(
    kafka_bootstrap: str, kafka_topics: TopicFactory, group_id: str
) -> None:
    topic = (await kafka_topics(events=1))["events"]
    await produce(kafka_bootstrap, topic, [f"event-{i}".encode() for i in range(6)])
    async with consumer(kafka_bootstrap, topic, group_id) as first:
        await consume(first, 6)
        await first.commit({TopicPartition(topic, 0): 3})  # only three were finished
    async with consumer(kafka_bootstrap, topic, group_id) as second:
        resumed = await consume(second, 3)
    assert [record.offset for record in resumed] == [3, 4, 5]


async def test_a_restarted_broker_comes_back_without_topics(tmp_path: Path) -> None:
    with running_broker(log_path=tmp_path / "tansu.log") as broker:
        await create_topics(broker.bootstrap_servers, {"events": 1})
        await asyncio.to_thread(broker.restart)
        topics = await topic_list(broker.bootstrap_servers)
    assert topics == []


async def test_a_producer_reconnects_to_a_restarted_broker(tmp_path: Path) -> None:
    with running_broker(log_path=tmp_path / "tansu.log") as broker:
        await create_topics(broker.bootstrap_servers, {"events": 1})
        async with producer(broker.bootstrap_servers) as client:
            await client.send_and_wait("events", b"before")
            await asyncio.to_thread(broker.restart)
            await create_topics(broker.bootstrap_servers, {"events": 1})
            metadata = await client.send_and_wait("events", b"after")
    # Offset 0: the same client reached the new, empty log.
    assert metadata.offset == 0


async def test_creating_an_existing_topic_is_an_error(
    kafka_bootstrap: str, topic_names: TopicNames
) -> None:
    with pytest.raises(BrokerError, match="already exists"):
        await create_topics(kafka_bootstrap, {topic_names.output: 1})


def test_start_refuses_a_port_another_broker_holds(kafka_broker: Broker) -> None:
    with pytest.raises(BrokerError, match="taken"):
        Broker(kafka_broker.port).start()


@pytest.mark.timeout(30)
def test_cli_serves_until_sigterm_then_exits_cleanly() -> None:
    port = free_port()
    command = [sys.executable, "-m", "devstack", "broker", "--port", str(port)]
    with subprocess.Popen(
        command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            assert process.stdout is not None
            ready = process.stdout.readline()
            serves_kafka = asyncio.run(topic_list(f"127.0.0.1:{port}")) == []
            process.send_signal(signal.SIGTERM)
            _, errors = process.communicate(timeout=15)
        finally:
            process.kill()
    assert (ready, serves_kafka, process.returncode) == (
        f"broker ready bootstrap_servers=127.0.0.1:{port}\n",
        True,
        0,
    ), errors
