"""Test helpers: read a whole topic (up to its end offsets now), its dead letters, group outputs
by room, run the service until it has caught up with the input topic, and the outputs a clean
`ingest` of the same input gives (the reference a run is compared with).

Reading "up to the end offsets seen at the start" needs no timeout as synchronisation: the
reader stops when every partition's position has reached its end offset.
"""

from __future__ import annotations

import asyncio
import io
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from processor.config import Settings
from processor.ingest import ingest, read_lines
from processor.storage import open_store
from processor.stream import commands
from processor.stream.service import RoomserverService
from schemas.codecs import decode_dead_letter
from schemas.dead_letter import DeadLetter


def service_settings(
    kafka_bootstrap_servers: str, database_url: str, prefix: str, partitions: int, **more: Any
) -> Settings:
    """Settings of a service whose topics and consumer group are named after `prefix` (a
    unique name from the `new_topic` fixture; the service creates the topics itself)."""
    return Settings(
        kafka_bootstrap_servers=kafka_bootstrap_servers,
        input_topic=f"{prefix}.input",
        output_topic=f"{prefix}.output",
        dead_letter_topic=f"{prefix}.dlq",
        input_partitions=partitions,
        consumer_group=f"{prefix}.group",
        database_url=database_url,
        **more,
    )


async def read_topic(
    bootstrap_servers: str, topic: str, partitions: int
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every committed record of `topic` (which has `partitions` partitions), partition by
    partition in offset order."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        enable_auto_commit=False,
        isolation_level="read_committed",
        # Not only a seek: a seek_to_beginning after assign() races with the position
        # reset assign() starts, which would otherwise use the default, "latest".
        auto_offset_reset="earliest",
    )
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        await consumer.start()
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, got in batch.items():
                records.extend(r for r in got if r.offset < ends[tp])
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    records.sort(key=lambda r: (r.partition, r.offset))
    return records


def outputs_by_room(payloads: Iterable[bytes]) -> dict[str, list[dict[str, Any]]]:
    """Decoded output messages per room, in topic order."""
    rooms: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for payload in payloads:
        message = msgspec.json.decode(payload)
        rooms[message["room_id"]].append(message)
    return dict(rooms)


#: A guard against a hung service, not a synchronisation: a run ends on its own.
RUN_TIMEOUT_SECONDS = 120.0


async def run_to_end(settings: Settings) -> RoomserverService:
    """Run the service until it has processed the input topic up to its end offsets now
    (and relayed every output), as `rebuild` does; fails after RUN_TIMEOUT_SECONDS."""
    service = RoomserverService(settings, stop_at=await commands.input_end_offsets(settings))
    try:
        await asyncio.wait_for(service.run(), RUN_TIMEOUT_SECONDS)
    except TimeoutError:
        pytest.fail(f"the service did not catch up within {RUN_TIMEOUT_SECONDS} s")
    return service


async def read_dead_letters(settings: Settings) -> list[DeadLetter]:
    """Every dead letter on the (one-partition) dead-letter topic so far, decoded."""
    records = await read_topic(settings.kafka_bootstrap_servers, settings.dead_letter_topic, 1)
    return [decode_dead_letter(r.value or b"") for r in records]


def reference_outputs(traffic: Path, database: Path) -> list[bytes]:
    """The output lines of a clean embedded `ingest` of `traffic` into `database`."""
    reference = io.BytesIO()
    store = open_store(str(database))
    try:
        with traffic.open("rb") as f:
            ingest(store, read_lines(f), output=reference)
    finally:
        store.close()
    return reference.getvalue().splitlines()
