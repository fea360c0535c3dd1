"""The Kafka commands: `run`, `produce`, `tail` and `rebuild`."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import sys
import time
from typing import IO

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from processor.config import Settings
from processor.errors import ConfigError
from processor.stream.kafka_settings import kafka_client_options
from processor.stream.service import RoomserverService


class _RoomKey(msgspec.Struct):
    room_id: str | None = None
    type: str | None = None
    state_key: str | None = None
    content: msgspec.Raw | None = None


class _InputKey(msgspec.Struct):
    event: _RoomKey


_input_key = msgspec.json.Decoder(_InputKey)


def room_key(line: bytes) -> bytes:
    """The Kafka key of an input line: its room ID. A v12 create event has no room_id (the
    room ID is its hash): the handler computes it, so it is keyed by that."""
    try:
        event = _input_key.decode(line).event
    except (msgspec.DecodeError, msgspec.ValidationError):
        return b""  # malformed: any partition will do, it is dead-lettered
    if event.room_id:
        return event.room_id.encode()
    if event.type == "m.room.create":
        from processor.matrix.hashing import room_id_for_create_event
        from processor.matrix.room_versions import room_version

        try:
            pdu = msgspec.json.decode(line)["event"]
            version = room_version(pdu.get("content", {}).get("room_version", "1"))
            return room_id_for_create_event(pdu, version).encode()
        except Exception:
            return b""
    return b""


async def run(settings: Settings) -> int:
    service = RoomserverService(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, service.stop)
    await service.run()
    return 0


async def produce(settings: Settings, stream: IO[bytes]) -> int:
    producer = AIOKafkaProducer(
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=512 * 1024,
        max_request_size=2 * 1024 * 1024,
        **kafka_client_options(settings),
    )
    await producer.start()
    count = 0
    try:
        pending = []
        for line in stream:
            line = line.strip()
            if not line:
                continue
            key = room_key(line)
            pending.append(await producer.send(settings.input_topic, line, key=key))
            count += 1
            if len(pending) >= 10_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return count


async def tail(settings: Settings, from_beginning: bool, limit: int) -> int:
    consumer = AIOKafkaConsumer(
        settings.output_topic,
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
        isolation_level="read_committed",
        **kafka_client_options(settings),
    )
    await consumer.start()
    seen = 0
    try:
        async for record in consumer:
            sys.stdout.buffer.write((record.value or b"") + b"\n")
            sys.stdout.flush()
            seen += 1
            if limit and seen >= limit:
                break
    finally:
        await consumer.stop()
    return 0


async def rebuild(settings: Settings, output_topic: str | None) -> int:
    """Replays the input topic from 0 into an empty database, then stops."""
    options = kafka_client_options(settings)
    probe = AIOKafkaConsumer(enable_auto_commit=False, **options)
    await probe.start()
    try:
        partitions = probe.partitions_for_topic(settings.input_topic)
        if not partitions:
            await probe.topics()
            partitions = probe.partitions_for_topic(settings.input_topic)
        if not partitions:
            raise ConfigError(f"input topic {settings.input_topic} does not exist")
        tps = [TopicPartition(settings.input_topic, p) for p in sorted(partitions)]
        ends = await probe.end_offsets(tps)
    finally:
        await probe.stop()
    total = sum(ends.values())
    if output_topic:
        settings = dataclasses.replace(settings, output_topic=output_topic)
    service = RoomserverService(
        settings,
        group_id=f"{settings.consumer_group}.rebuild.{int(time.time())}",
        output_enabled=output_topic is not None,
        stop_at={tp.partition: end for tp, end in ends.items()},
    )
    started = time.perf_counter()
    progress_task = asyncio.create_task(_report(service, total, started))
    try:
        await service.run()
    finally:
        progress_task.cancel()
    seconds = time.perf_counter() - started
    print(
        f"rebuilt {service.processed} input events in {seconds:.1f} s "
        f"({service.processed / seconds if seconds else 0:,.0f} events/s)",
        file=sys.stderr,
    )
    return 0


async def _report(service: RoomserverService, total: int, started: float) -> None:
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("rebuild"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeRemainingColumn(),
        disable=not sys.stderr.isatty(),
    ) as progress:
        task = progress.add_task("rebuild", total=total)
        while True:
            progress.update(task, completed=service.processed)
            await asyncio.sleep(0.5)
