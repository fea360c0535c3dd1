"""The Kafka commands: `run`, `produce`, `tail`, `rebuild` and `dlq replay`.

- `run`: the service until SIGTERM/SIGINT (see `service`).
- `produce`: JSON-lines InputRoomEvents to the input topic, keyed by room ID, as a producer
  service would (the demo and the benchmark use it).
- `tail`: output events as JSON lines.
- `rebuild`: replay the input topic from offset 0 into an empty database, then stop.
- `replay`: chosen dead letters back to the input topic (see `dead_letters`).

Every failure an operator can cause or fix — brokers unreachable or refusing us, a wrong
database password or an untrusted certificate, a missing topic, an oversized input — ends
the command with a `RoomserverError` whose message is one line (the CLI prints it), never
a traceback.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import sys
import time
import uuid
from dataclasses import dataclass
from typing import IO

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from processor.config import Settings, redacted_url
from processor.core.decision import Outcome
from processor.errors import (
    ConfigError,
    KafkaUnavailable,
    MessageTooLarge,
    StorageError,
    TopicNotFound,
)
from processor.storage import open_store
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


def check_empty_database(database_url: str, input_topic: str, partitions: list[int]) -> None:
    """Raise `ConfigError` unless the database holds no input offsets for `input_topic`.

    A rebuild replays from offset 0; into a database that already processed some of the
    topic it would resume half way instead (offsets are sought from the database).
    """
    store = open_store(database_url)
    try:
        store.migrate()
        with store.batch() as batch:
            used = {
                p: offset
                for p in partitions
                if (offset := batch.select_input_offset(input_topic, p))
            }
    finally:
        store.close()
    if used:
        raise ConfigError(
            f"database {redacted_url(database_url)} is not empty: it has processed "
            f"{input_topic} up to offsets {used}; rebuild into a new, empty database"
        )


#: Input messages per transaction in a rebuild, at least: a replay has no latency to keep
#: low, and each batch costs a few round trips per room it touches, so bigger is faster.
REBUILD_BATCH_SIZE = 2000


@dataclass(frozen=True, slots=True)
class RebuildSummary:
    events: int
    dead_letters: int
    seconds: float
    #: CPU time of the roomserver processes that replayed (not the broker's or PostgreSQL's).
    cpu_seconds: float = 0.0
    processes: int = 1

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    @property
    def cpu_us_per_event(self) -> float:
        return self.cpu_seconds / self.events * 1e6 if self.events else 0.0


def split_partitions(ends: dict[int, int], processes: int) -> list[list[int]]:
    """The partitions in at most `processes` shares of about equal input: the largest
    partition first, each to the share with the least input so far."""
    shares: list[tuple[int, list[int]]] = [(0, []) for _ in range(min(processes, len(ends)))]
    for partition in sorted(ends, key=lambda p: (-ends[p], p)):
        index = min(range(len(shares)), key=lambda i: (shares[i][0], i))
        size, members = shares[index]
        shares[index] = (size + ends[partition], [*members, partition])
    return [sorted(members) for _, members in shares if members]


@dataclass(frozen=True, slots=True)
class _ShareResult:
    events: int
    dead_letters: int
    cpu_seconds: float


def _rebuild_share(
    settings: Settings,
    output_enabled: bool,
    group_id: str,
    partitions: list[int],
    stop_at: dict[int, int],
    verbose: bool,
) -> _ShareResult:
    """A worker process of `rebuild --processes N`: replays `partitions` (its own database
    connections, relays and caches; one core's worth of Python)."""
    import logging

    from processor.gc_tuning import tune_for_throughput
    from processor.stream.log_levels import quiet_kafka_logs

    # A spawned process starts with Python's defaults: the same set-up as the CLI's.
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    quiet_kafka_logs(verbose)
    tune_for_throughput()
    started = time.process_time()
    service = _rebuild_service(settings, output_enabled, group_id, partitions, stop_at)
    asyncio.run(service.run())
    return _ShareResult(
        service.processed, _dead_letters(service), time.process_time() - started
    )


def _rebuild_service(
    settings: Settings,
    output_enabled: bool,
    group_id: str,
    partitions: list[int],
    stop_at: dict[int, int],
) -> RoomserverService:
    return RoomserverService(
        settings,
        group_id=group_id,
        output_enabled=output_enabled,
        stop_at=stop_at,
        static_membership=False,
        partitions=partitions,
    )


def _dead_letters(service: RoomserverService) -> int:
    dead = service.metrics.registry.get_sample_value(
        "roomserver_events_total", {"outcome": Outcome.DEAD_LETTERED.value}
    )
    return int(dead or 0)


async def rebuild_database(
    settings: Settings,
    output_topic: str | None,
    *,
    dead_letter_topic: str | None = None,
    progress: bool | None = None,
    batch_size: int | None = None,
    processes: int = 1,
) -> RebuildSummary:
    """Replay the input topic from offset 0 into the empty database `settings.database_url`.

    Stops once every partition has reached the end offset it had when the rebuild started.
    Uses a consumer group of its own, so the running service is not disturbed. With
    `output_topic`, outputs are published there and dead letters to `dead_letter_topic`
    (default `<output_topic>.dlq`): never to the live topics, which already hold them. With
    none, nothing is published (stream positions still advance exactly as in the original
    run). `progress`: a progress bar with ETA on standard error (default: when it is a TTY).
    `batch_size`: input messages per transaction (default: `settings.batch_size`, at least
    `REBUILD_BATCH_SIZE`); the rebuilt state does not depend on it. `processes`: worker
    processes, each replaying its share of the partitions with its own database connections
    (one process uses about one core: the GIL); rooms never span partitions, so the rebuilt
    state is the same whatever the split.
    """
    if processes < 1:
        raise ConfigError(f"--processes must be at least 1, not {processes}")
    if output_topic in (settings.input_topic, settings.output_topic):
        raise ConfigError(
            f"rebuild output topic {output_topic} is a live topic of the service: choose a "
            "new one (or none), or every output would appear twice"
        )
    await asyncio.to_thread(check_database, settings.database_url)
    ends = await input_end_offsets(settings)
    await asyncio.to_thread(
        check_empty_database, settings.database_url, settings.input_topic, sorted(ends)
    )
    settings = dataclasses.replace(
        settings, batch_size=batch_size or max(settings.batch_size, REBUILD_BATCH_SIZE)
    )
    if output_topic:
        settings = dataclasses.replace(
            settings,
            output_topic=output_topic,
            dead_letter_topic=dead_letter_topic or f"{output_topic}.dlq",
        )
    group_id = f"{settings.consumer_group}.rebuild.{uuid.uuid4().hex[:12]}"
    output_enabled = output_topic is not None
    # The partitions are assigned, not shared by the group: no rebalance ever moves one, and
    # the replay starts without waiting for a group to form.
    shares = split_partitions(ends, processes)
    if len(shares) > 1:
        return await _rebuild_in_processes(settings, output_enabled, group_id, shares, ends)
    service = _rebuild_service(settings, output_enabled, group_id, sorted(ends), ends)
    total = sum(ends.values())
    show = sys.stderr.isatty() if progress is None else progress
    started = time.perf_counter()
    cpu_started = time.process_time()
    reporter = asyncio.create_task(_show_progress(service, total)) if show else None
    try:
        await service.run()
    finally:
        if reporter is not None:
            reporter.cancel()
            await asyncio.gather(reporter, return_exceptions=True)
    return RebuildSummary(
        service.processed,
        _dead_letters(service),
        time.perf_counter() - started,
        time.process_time() - cpu_started,
    )


async def _rebuild_in_processes(
    settings: Settings,
    output_enabled: bool,
    group_id: str,
    shares: list[list[int]],
    ends: dict[int, int],
) -> RebuildSummary:
    import logging
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    verbose = logging.getLogger().isEnabledFor(logging.DEBUG)
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    # spawn: a fork would copy this process's event loop and Kafka clients.
    with ProcessPoolExecutor(
        len(shares), mp_context=multiprocessing.get_context("spawn")
    ) as pool:
        results = await asyncio.gather(*(
            loop.run_in_executor(
                pool, _rebuild_share, settings, output_enabled, group_id, share,
                {p: ends[p] for p in share}, verbose,
            )
            for share in shares
        ))
    return RebuildSummary(
        sum(r.events for r in results),
        sum(r.dead_letters for r in results),
        time.perf_counter() - started,
        sum(r.cpu_seconds for r in results),
        len(shares),
    )


@kafka_failures_in_one_line
async def rebuild(
    settings: Settings,
    output_topic: str | None,
    dead_letter_topic: str | None = None,
    processes: int = 1,
) -> int:
    """`roomserver rebuild`: see `rebuild_database`."""
    summary = await rebuild_database(
        settings, output_topic, dead_letter_topic=dead_letter_topic, processes=processes
    )
    print(
        f"rebuilt {summary.events} input events in {summary.seconds:.1f} s "
        f"({summary.events_per_second:,.0f} events/s, {summary.cpu_us_per_event:,.0f} µs CPU "
        f"per event in {summary.processes} process{'es' if summary.processes > 1 else ''}; "
        f"{summary.dead_letters} dead-lettered)",
        file=sys.stderr,
    )
    return 0


async def _show_progress(service: RoomserverService, total: int) -> None:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("rebuild"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
        transient=False,
    ) as bar:
        task = bar.add_task("rebuild", total=total)
        while True:  # a display refresh until cancelled, not synchronisation
            bar.update(task, completed=service.processed)
            await asyncio.sleep(0.25)
