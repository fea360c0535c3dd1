"""The service's Kafka consumer: a member of the consumer group (static when it has an
instance ID), reading committed input only, and committing the processed offsets for lag
tooling beside the consume loop."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition

from processor.config import Settings
from processor.stream.kafka_settings import kafka_client_options

log = logging.getLogger("processor.stream.service")

#: The consumer's poll timeout: how often the loop checks for stop, stalls and failures.
POLL_TIMEOUT_MS = 100

#: The longest a fetch request waits on the broker for input. aiokafka keeps one fetch
#: in flight per broker: a partition whose queue was just taken (or that was just resumed)
#: is fetched only after the fetch in flight returns, so its default (500 ms) would be a
#: latency floor whenever the other partitions are quiet.
FETCH_MAX_WAIT_MS = 10

#: Seconds between two commits of the processed offsets to Kafka (for lag tooling only).
COMMIT_INTERVAL_SECONDS = 1.0


async def start_group_consumer(
    settings: Settings, group_id: str, instance_id: str | None
) -> AIOKafkaConsumer:
    """A started consumer of the group (not subscribed yet), closed again if it fails."""
    consumer = AIOKafkaConsumer(
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=16 * 1024 * 1024,
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        group_instance_id=instance_id,
        session_timeout_ms=settings.session_timeout_ms,
        **kafka_client_options(settings),
    )
    try:
        await consumer.start()
    except BaseException:
        await consumer.stop()
        raise
    return consumer


def commit_processed(
    consumer: AIOKafkaConsumer,
    running: asyncio.Task[None] | None,
    topic: str,
    processed: dict[int, int],
) -> asyncio.Task[None] | None:
    """Commit the offsets processed (`processed`: partition -> next offset), unless the
    previous commit (`running`) is still in flight; returns the commit task now running.

    Kafka's committed offset is for lag tooling only; the truth is in the database, so a
    failed commit is harmless. What is committed is the offsets processed (the consumer's
    own positions run ahead, by what is queued). It runs beside the loop: with the broker
    away a commit waits for a coordinator, and the loop must not wait with it."""
    if running is not None and not running.done():
        return running
    offsets = {TopicPartition(topic, p): offset for p, offset in processed.items()}
    if not offsets:
        return running

    def done(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.debug("offset commit for lag tooling failed: %s", task.exception())

    task = asyncio.create_task(consumer.commit(offsets))
    task.add_done_callback(done)
    return task
