"""The Kafka plumbing the roomserver relies on, proved on a real Kafka 4 broker with aiokafka.

Kafka 4.0 removed old protocol versions (KIP-896); aiokafka negotiates versions, and these tests
show that what the design needs still works: keyed ordering across partitions with the
idempotent producer, transactions seen correctly by `read_committed` consumers, consumer-group
offset commits, and records larger than Kafka's 1 MiB default (docs/architecture.md §3).
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from tests.fixtures.kafka import NewTopicFactory

pytestmark = pytest.mark.integration

CONSUME_TIMEOUT_S = 60.0


async def consume(consumer: Any, count: int, *, until: bytes | None = None) -> list[Any]:
    """Fetch records until `count` arrived (or one with value `until`); fail after a deadline."""
    records: list[Any] = []
    deadline = time.monotonic() + CONSUME_TIMEOUT_S
    while len(records) < count:
        if time.monotonic() > deadline:
            pytest.fail(f"only {len(records)} of {count} records after {CONSUME_TIMEOUT_S}s")
        batches = await consumer.getmany(timeout_ms=500)
        for partition_records in batches.values():
            records.extend(partition_records)
        if until is not None and any(r.value == until for r in records):
            break
    return records


async def test_keyed_records_keep_per_key_order_across_partitions(
    kafka_bootstrap_servers: str, new_topic: NewTopicFactory
) -> None:
    # The roomserver keys input by room ID: a room's events must come out in the order they
    # went in, while different rooms spread over the partitions.
    topic = new_topic(partitions=4)
    rooms = [f"!room{i}:example.org".encode() for i in range(16)]
    per_room = 40
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap_servers, enable_idempotence=True, acks="all",
        linger_ms=5,
    )
    await producer.start()
    try:
        # Interleaved across rooms, like a real input stream.
        for seq in range(per_room):
            for room in rooms:
                await producer.send(topic, key=room, value=b"%d" % seq)
        await producer.flush()
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka_bootstrap_servers, auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        records = await consume(consumer, len(rooms) * per_room)
    finally:
        await consumer.stop()

    assert len(records) == len(rooms) * per_room
    order: dict[bytes, list[int]] = defaultdict(list)
    partitions_of: dict[bytes, set[int]] = defaultdict(set)
    for record in records:
        order[record.key].append(int(record.value))
        partitions_of[record.key].add(record.partition)
    assert set(order) == set(rooms)
    for room in rooms:
        assert order[room] == list(range(per_room)), f"{room!r} out of order"
        assert len(partitions_of[room]) == 1, f"{room!r} spread over {partitions_of[room]}"
    assert len({p for ps in partitions_of.values() for p in ps}) > 1, "keys not spread"


async def test_read_committed_consumer_sees_committed_transactions_only(
    kafka_bootstrap_servers: str, new_topic: NewTopicFactory
) -> None:
    topic = new_topic(partitions=3)
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap_servers, transactional_id=f"{topic}.producer"
    )
    await producer.start()
    try:
        async with producer.transaction():
            for i in range(5):
                await producer.send(topic, key=b"k%d" % i, value=b"committed-%d" % i)
        await producer.begin_transaction()
        for i in range(5):
            await producer.send(topic, key=b"k%d" % i, value=b"aborted-%d" % i)
        await producer.flush()  # the aborted records really reach the log
        await producer.abort_transaction()
        async with producer.transaction():
            for i in range(5, 10):
                await producer.send(topic, key=b"k%d" % i, value=b"committed-%d" % i)
    finally:
        await producer.stop()

    committed = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka_bootstrap_servers, auto_offset_reset="earliest",
        enable_auto_commit=False, isolation_level="read_committed",
    )
    await committed.start()
    try:
        seen = await consume(committed, 10)
    finally:
        await committed.stop()
    assert sorted(r.value for r in seen) == sorted(b"committed-%d" % i for i in range(10))

    # Control: the aborted records are in the log, so read_committed really filtered them.
    uncommitted = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka_bootstrap_servers, auto_offset_reset="earliest",
        enable_auto_commit=False, isolation_level="read_uncommitted",
    )
    await uncommitted.start()
    try:
        everything = await consume(uncommitted, 15)
    finally:
        await uncommitted.stop()
    assert sum(r.value.startswith(b"aborted-") for r in everything) == 5


async def test_consumer_group_commit_is_resumed_by_the_next_member(
    kafka_bootstrap_servers: str, new_topic: NewTopicFactory
) -> None:
    topic = new_topic(partitions=1)
    group = f"{topic}.group"
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap_servers)
    await producer.start()
    try:
        for i in range(10):
            await producer.send(topic, value=b"%d" % i)
        await producer.flush()
    finally:
        await producer.stop()

    tp = TopicPartition(topic, 0)
    first = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka_bootstrap_servers, group_id=group,
        auto_offset_reset="earliest", enable_auto_commit=False, max_poll_records=4,
    )
    await first.start()
    try:
        records = await consume(first, 1)
        taken = records[:4]
        await first.commit({tp: taken[-1].offset + 1})
        assert await first.committed(tp) == taken[-1].offset + 1
    finally:
        await first.stop()

    second = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka_bootstrap_servers, group_id=group,
        auto_offset_reset="earliest", enable_auto_commit=False,
    )
    await second.start()
    try:
        rest = await consume(second, 10 - len(taken))
    finally:
        await second.stop()
    assert [int(r.value) for r in rest] == list(range(len(taken), 10))


async def test_records_larger_than_the_default_limit_arrive_intact(
    kafka_bootstrap_servers: str, new_topic: NewTopicFactory
) -> None:
    # A state-rewriting join into a big room lists ~100k event IDs (docs/architecture.md §3):
    # several MB in
    # one output record, above Kafka's 1 MiB default. deploy/local allows 10 MiB batches.
    topic = new_topic(partitions=1)
    value = bytes(range(256)) * (6 * 1024 * 1024 // 256)
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap_servers, max_request_size=10 * 1024 * 1024
    )
    await producer.start()
    try:
        await producer.send_and_wait(topic, key=b"!big:example.org", value=value)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka_bootstrap_servers, auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        (record,) = await consume(consumer, 1)
    finally:
        await consumer.stop()
    assert record.value == value
