"""The input lag: the broker's end offsets minus the offsets processed, measured with a
Kafka client of its own (`processor.metrics.watch_lag`), so a hung consumer still shows."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from processor.config import Settings
from processor.metrics import Health, Metrics, watch_lag
from processor.stream.connect import RETRY_SECONDS
from processor.stream.kafka_settings import kafka_client_options

log = logging.getLogger("processor.stream.service")



async def watch_input_lag(
    settings: Settings,
    metrics: Metrics,
    health: Health,
    processed: Callable[[], dict[int, int]],
) -> None:
    """Lag = the broker's end offsets minus the offsets processed, measured with a
    client of its own so that a hung consumer or worker still shows (`watch_lag`)."""
    reader = AIOKafkaConsumer(
        enable_auto_commit=False, isolation_level="read_committed",
        **kafka_client_options(settings),
    )
    while True:
        try:
            await reader.start()
            break
        except KafkaError as e:
            # The broker is away: without this task no lag (and no stall) would ever be
            # reported, so it keeps trying.
            await reader.stop()
            log.warning("lag reader cannot start (%s); retrying", e)
            await asyncio.sleep(RETRY_SECONDS)
            reader = AIOKafkaConsumer(
                enable_auto_commit=False, isolation_level="read_committed",
                **kafka_client_options(settings),
            )
        except BaseException:
            await reader.stop()
            raise

    async def end_offsets(partitions: list[int]) -> dict[int, int]:
        tps = [TopicPartition(settings.input_topic, p) for p in partitions]
        return {tp.partition: end for tp, end in (await reader.end_offsets(tps)).items()}

    try:
        await watch_lag(metrics, health, end_offsets, processed)
    finally:
        await reader.stop()
