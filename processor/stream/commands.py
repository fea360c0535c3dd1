"""The Kafka commands: `run`, `produce`, `tail`, `rebuild` and `dlq replay`.

- `run`: the service until SIGTERM/SIGINT (see `service`).
- `produce`: JSON-lines InputRoomEvents to the input topic, keyed by room ID, as a producer
  service would (the demo and the benchmark use it).
- `tail`: output events as JSON lines.
- `rebuild`: see `rebuild` (its own module).
- `replay`: chosen dead letters back to the input topic (see `dead_letters`).

Every failure an operator can cause or fix — brokers unreachable or refusing us, a wrong
database password or an untrusted certificate, a missing topic, an oversized input — ends
the command with a `RoomserverError` whose message is one line (the CLI prints it), never
a traceback.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import IO

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from processor.config import Settings, redacted_url
from processor.errors import (
    KafkaUnavailable,
    MessageTooLarge,
    StorageError,
    TopicNotFound,
)
from processor.stream.connect import (
    CONNECT_TIMEOUT_SECONDS,
    kafka_failures_in_one_line,
    start_client,
)
from processor.stream.dead_letters import StoredDeadLetter, original, replay_header
from processor.stream.kafka_settings import kafka_client_options
from processor.stream.service import RoomserverService
from processor.stream.topics import TopicLayout, ensure_topics, topic_partitions


class _RoomKey(msgspec.Struct):
    room_id: str | None = None
    type: str | None = None
    state_key: str | None = None


class _InputKey(msgspec.Struct):
    event: _RoomKey


_input_key = msgspec.json.Decoder(_InputKey)


def room_key(line: bytes) -> bytes:
    """The Kafka key of an input line: its room ID. A v12 create event has no room_id (the
    room ID is its hash): the handler computes it, so it is keyed by that."""
    try:
        event = _input_key.decode(line).event
    except (ValueError, RecursionError):
        # Malformed (msgspec's errors are ValueErrors, and so is UnicodeDecodeError for
        # bytes that are not UTF-8; deep nesting is a RecursionError): any partition will
        # do, it is dead-lettered.
        return b""
    if event.room_id:
        return event.room_id.encode()
    if event.type == "m.room.create":
        from processor.matrix.hashing import room_id_for_create_event
        from processor.matrix.room_versions import room_version_of_create

        try:
            pdu = msgspec.json.decode(line)["event"]
            version = room_version_of_create(pdu.get("content"))
            return room_id_for_create_event(pdu, version).encode()
        except Exception:
            return b""
    return b""


def check_database(database_url: str) -> None:
    """Connect to PostgreSQL once, so that a wrong password, an untrusted certificate or
    an unreachable server is one clear error at start (the connection pool would retry in
    the background, logging each failure, and time out much later)."""
    if not database_url.startswith(("postgresql://", "postgres://")):
        return
    import psycopg

    try:
        with psycopg.connect(database_url, connect_timeout=int(CONNECT_TIMEOUT_SECONDS)):
            pass
    except psycopg.Error as e:
        cause = " ".join(str(e).split())
        raise StorageError(
            f"cannot connect to PostgreSQL at {redacted_url(database_url)}: {cause}"
        ) from None


@kafka_failures_in_one_line
async def run(settings: Settings) -> int:
    await asyncio.to_thread(check_database, settings.database_url)
    service = RoomserverService(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, service.stop)
    await service.run()
    return 0


async def create_topics(settings: Settings) -> TopicLayout:
    """Create the service's topics when missing and check them, as `run` does."""
    admin = AIOKafkaAdminClient(**kafka_client_options(settings))
    try:
        await start_client(admin, settings)
        return await ensure_topics(admin, settings)
    finally:
        await admin.close()


#: Room for the record's key (a room ID), headers and batch framing above the value, in
#: the producer's max_request_size.
RECORD_OVERHEAD_BYTES = 4096


class InputSender:
    """An idempotent producer of input messages keyed by room ID, that refuses a message
    over `settings.max_produce_bytes` before sending it and turns the broker's refusals
    into one-line errors naming the message (`where`)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer = AIOKafkaProducer(
            enable_idempotence=True,
            linger_ms=5,
            max_batch_size=512 * 1024,
            max_request_size=settings.max_produce_bytes + RECORD_OVERHEAD_BYTES,
            **kafka_client_options(settings),
        )
        self._pending: list[tuple[str, int, asyncio.Future[object]]] = []
        #: Messages the broker has acknowledged.
        self.sent = 0

    async def start(self) -> None:
        try:
            await start_client(self._producer, self._settings)
        except BaseException:
            await self._producer.stop()
            raise

    async def stop(self) -> None:
        await self._producer.stop()

    async def send(
        self, value: bytes, where: str, headers: list[tuple[str, bytes]] | None = None
    ) -> None:
        limit = self._settings.max_produce_bytes
        if len(value) > limit:
            await self.flush()
            raise MessageTooLarge(
                f"{where} is {len(value):,} bytes, over the limit of {limit:,} "
                f"(ROOMSERVER_MAX_PRODUCE_BYTES or --max-message-bytes; the input topic must "
                f"take it too); {self.sent} messages were sent before it"
            )
        future = await self._producer.send(
            self._settings.input_topic, value, key=room_key(value), headers=headers
        )
        self._pending.append((where, len(value), future))
        if len(self._pending) >= 10_000:
            await self.flush()

    async def flush(self) -> None:
        """Wait for everything sent; the first refusal becomes the error."""
        pending, self._pending = self._pending, []
        results = await asyncio.gather(*(f for _, _, f in pending), return_exceptions=True)
        for (where, size, _), result in zip(pending, results, strict=True):
            if isinstance(result, MessageSizeTooLargeError):
                raise MessageTooLarge(
                    f"the broker refused {where} ({size:,} bytes) as too large: the input "
                    f"topic's max.message.bytes (or the broker's message.max.bytes) is below "
                    f"it; {self.sent} messages were sent before it"
                )
            if isinstance(result, KafkaError):
                raise KafkaUnavailable(
                    f"sending {where} to {self._settings.input_topic} failed: {result}"
                )
            if isinstance(result, BaseException):
                raise result
            self.sent += 1


@kafka_failures_in_one_line
async def produce(settings: Settings, stream: IO[bytes]) -> int:
    """Publish the JSON lines of `stream` to the input topic; returns how many.

    The topics are created first when missing (with the configuration `run` checks), so a
    producer started before the service does not wait for a topic that never comes.
    """
    await create_topics(settings)
    sender = InputSender(settings)
    await sender.start()
    try:
        for number, line in enumerate(stream, 1):
            line = line.strip()
            if line:
                await sender.send(line, f"line {number}")
        await sender.flush()
    finally:
        await sender.stop()
    return sender.sent


@kafka_failures_in_one_line
async def replay(settings: Settings, letters: list[StoredDeadLetter]) -> int:
    """Re-produce the originals of `letters` to the input topic (see `dead_letters`);
    returns how many."""
    await require_topic(settings, settings.input_topic, "ROOMSERVER_INPUT_TOPIC")
    sender = InputSender(settings)
    await sender.start()
    try:
        for letter in letters:
            await sender.send(
                original(letter), f"dead letter {letter.id}", [replay_header(settings, letter)]
            )
        await sender.flush()
    finally:
        await sender.stop()
    return sender.sent


async def require_topic(settings: Settings, topic: str, setting: str) -> None:
    """`TopicNotFound` unless `topic` exists."""
    await topic_partitions(settings, topic, setting)


@kafka_failures_in_one_line
async def tail(
    settings: Settings, from_beginning: bool, limit: int, out: IO[bytes] | None = None
) -> int:
    """Print the output topic's messages, one per line, until `limit` of them (0: follow
    until interrupted, which it says on standard error)."""
    out = out or sys.stdout.buffer
    await require_topic(settings, settings.output_topic, "ROOMSERVER_OUTPUT_TOPIC")
    consumer = AIOKafkaConsumer(
        settings.output_topic,
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
        isolation_level="read_committed",
        **kafka_client_options(settings),
    )
    seen = 0
    try:
        await start_client(consumer, settings)
        if not limit:
            where = "from the beginning" if from_beginning else "new messages only"
            print(
                f"following {settings.output_topic} ({where}); press Ctrl-C to stop",
                file=sys.stderr,
                flush=True,
            )
        async for record in consumer:
            try:
                out.write((record.value or b"") + b"\n")
                out.flush()
            except BrokenPipeError:
                return 0  # the reader went away (`tail | head`): done, not an error
            seen += 1
            if limit and seen >= limit:
                break
    finally:
        await consumer.stop()
    return 0


async def input_end_offsets(settings: Settings) -> dict[int, int]:
    """The input topic's end offsets per partition, now (`ConfigError` if it is missing)."""
    options = kafka_client_options(settings)
    admin = AIOKafkaAdminClient(**options)
    try:
        await start_client(admin, settings)
        (described,) = await admin.describe_topics([settings.input_topic])
    finally:
        await admin.close()
    if described.get("error_code", 0) != 0 or not described.get("partitions"):
        raise TopicNotFound(
            f"input topic {settings.input_topic} does not exist (ROOMSERVER_INPUT_TOPIC)"
        )
    tps = [
        TopicPartition(settings.input_topic, p["partition"]) for p in described["partitions"]
    ]
    probe = AIOKafkaConsumer(
        enable_auto_commit=False, isolation_level="read_committed", **options
    )
    try:
        await start_client(probe, settings)
        ends = await probe.end_offsets(tps)
    finally:
        await probe.stop()
    return {tp.partition: end for tp, end in sorted(ends.items())}
