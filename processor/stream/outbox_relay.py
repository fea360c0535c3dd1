"""The outbox relay: moves committed outputs from the database to Kafka, in order, once.

Outputs (and dead letters) are written to the outbox in the same transaction as the input
batch that caused them. The relay for an input partition publishes that partition's outbox
rows in `seq` order to the same partition number of the output topic (dead letters, the rows
with an empty room ID, to the same partition number of the dead-letter topic), each record
carrying its `seq` in a header, and deletes them once Kafka holds them.

Each pass publishes in one **Kafka transaction**, with a producer whose transactional ID
belongs to the input partition (`relay_transactional_id`). So:

- a pass is in Kafka entirely or not at all (consumers read `read_committed`), and what
  Kafka holds is always a prefix of the outbox in `seq` order;
- an owner that lost the partition without noticing (paused, cut off from Kafka beyond its
  session timeout: a "zombie") is fenced: the new owner's producer starts with the same
  transactional ID, which aborts the old producer's open transaction and makes its next one
  fail with `ProducerFenced`. The relay then stops for good; it never starts a new producer
  for that partition (that would fence the rightful owner in turn).

For consumers and operators: the output and dead-letter topics must be read with
`isolation.level=read_committed` (as `roomserver tail` does; Kafka's Java clients default to
read_uncommitted), or a pass aborted by a failure or a fence shows up as duplicates. With
ACLs, the roomserver's principal needs Write and Describe on the transactional IDs
`roomserver.relay.<output topic>.*`.

The relay runs as a task of its own (`start`, `notify` after each committed batch, `close`
when the partition is released), so processing never waits for Kafka: a pass takes
everything committed since the last one. A failed pass is retried after `RETRY_SECONDS`.

Recovery: after a crash between "Kafka committed" and "rows deleted", the relay that takes
the partition over reads the last record of both partitions, takes the larger `seq`, and
deletes every row up to it, so what Kafka already holds is never sent twice. Recovery runs
inside the relay — after its producer has started (and fenced the previous one), before its
first send, and again after any failed pass — so no code path can publish without it. Rows
committed after the takeover have larger `seq` values than anything an earlier owner wrote
(one database sequence), so recovery never forgets them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import IllegalOperation, KafkaError, ProducerFenced
from aiokafka.producer.message_accumulator import BatchBuilder

from processor.errors import StorageError
from processor.storage.base import OutboxRecord, Store

log = logging.getLogger(__name__)

SEQ_HEADER = "roomserver-seq"
ROOM_HEADER = "room_id"
TYPE_HEADER = "type"


@dataclass(frozen=True, slots=True)
class RelayTarget:
    output_topic: str
    dead_letter_topic: str


def relay_transactional_id(target: RelayTarget, partition: int) -> str:
    """One transactional ID per output partition: whoever relays it fences the previous
    relayer. Named after the output topic, so a rebuild into another topic is separate."""
    return f"roomserver.relay.{target.output_topic}.{partition}"


class _MessageType(msgspec.Struct):
    type: str = ""


_message_type = msgspec.json.Decoder(_MessageType)


def target_topic(record: OutboxRecord, target: RelayTarget) -> str:
    return target.dead_letter_topic if not record.room_id else target.output_topic


class TailUnreadable(Exception):
    """The last record of an output partition could not be read: recovery cannot tell what
    Kafka holds, so the relay sends nothing rather than guess."""


class RelayFenced(Exception):
    """Another instance relays this partition now (its producer fenced ours)."""


#: Pause before a failed pass is tried again.
RETRY_SECONDS = 1.0
#: How long releasing a partition waits for the relay's last pass.
CLOSE_TIMEOUT_SECONDS = 30.0

#: Fetches allowed while reading an output partition's tail before giving up.
TAIL_READ_FETCHES = 50


async def last_relayed_seq(consumer: AIOKafkaConsumer, tp: TopicPartition) -> int:
    """The `seq` header of the last record in an output partition (0 when it is empty).

    The consumer must not be subscribed and must read `read_committed`; it is assigned `tp`
    for this read only. The last offsets of a partition written in transactions hold commit
    markers, which consumers never see, so the read starts a little before the end and
    widens the window until it finds a record.
    """
    consumer.assign([tp])
    end = (await consumer.end_offsets([tp]))[tp]
    beginning = (await consumer.beginning_offsets([tp]))[tp]
    if end <= beginning:
        return 0
    # assign() starts a position reset; a seek made before it finishes is overwritten (and
    # with "latest" the read would find nothing and answer 0: everything sent twice).
    await consumer.position(tp)
    window = 8
    fetches = 0
    while True:
        start = max(beginning, end - window)
        consumer.seek(tp, start)
        last = None
        while await consumer.position(tp) < end:
            fetches += 1
            if fetches > TAIL_READ_FETCHES:
                raise TailUnreadable(
                    f"{tp.topic}[{tp.partition}]: offsets {start}..{end - 1} not read in "
                    f"{TAIL_READ_FETCHES} fetches"
                )
            batch = await consumer.getmany(tp, timeout_ms=1000)
            for record in batch.get(tp, []):
                if record.offset < end:
                    last = record
        if last is not None:
            for key, value in last.headers or ():
                if key == SEQ_HEADER:
                    return int(value)
            raise TailUnreadable(
                f"{tp.topic}[{tp.partition}] offset {last.offset} has no {SEQ_HEADER} "
                "header: another producer writes to the roomserver's output topic"
            )
        if start == beginning:
            return 0  # only markers and aborted records
        window *= 8


def _sender_failure(producer: AIOKafkaProducer) -> BaseException | None:
    """The error that ended the producer's sender task (aiokafka then refuses every send
    with `IllegalOperation`), or None while the sender runs."""
    task = producer._sender.sender_task
    if task is None or not task.done() or task.cancelled():
        return None
    failure: BaseException | None = task.exception()
    return failure


class TailReader:
    """Reads the last `seq` of output partitions with one shared, unsubscribed consumer.

    Reads are serialised: `last_relayed_seq` reassigns the consumer for each read.
    """

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self._consumer = consumer
        self._lock = asyncio.Lock()

    async def last_seq(self, tp: TopicPartition) -> int:
        async with self._lock:
            return await last_relayed_seq(self._consumer, tp)


class OutboxRelay:
    """Relays one input partition's outbox. `run_once` is called after each committed batch;
    `close` when the partition is released."""

    def __init__(
        self,
        store: Store,
        partition: int,
        target: RelayTarget,
        tail: TailReader,
        producer_options: Mapping[str, object],
        *,
        on_relayed: Callable[[int], None] | None = None,
        on_caught_up: Callable[[int], None] | None = None,
        limit: int = 2000,
    ) -> None:
        self._store = store
        self._partition = partition
        self._target = target
        self._tail = tail
        self._producer_options = dict(producer_options)
        self._on_relayed = on_relayed
        self._on_caught_up = on_caught_up
        #: The input offset after the last batch `notify` announced, and the one up to
        #: which everything is relayed.
        self._committed_offset = 0
        self._caught_up_offset = 0
        self._limit = limit
        self._lock = asyncio.Lock()
        self._producer: AIOKafkaProducer | None = None
        #: False until the rows Kafka already holds have been forgotten, and again after a
        #: failed pass.
        self._recovered = False
        self._fenced = False
        self._wake = asyncio.Event()
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._on_failure: Callable[[BaseException], None] = lambda e: None

    @property
    def fenced(self) -> bool:
        return self._fenced

    async def _start(self) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(
            transactional_id=relay_transactional_id(self._target, self._partition),
            **self._producer_options,
        )
        try:
            await producer.start()  # InitProducerId: fences the previous owner's producer
        except BaseException:
            await producer.stop()
            raise
        self._producer = producer
        return producer

    async def _recover(self) -> None:
        """Forget outbox rows that Kafka already holds (see the module docstring)."""
        seq = max(
            await self._tail.last_seq(
                TopicPartition(self._target.output_topic, self._partition)
            ),
            await self._tail.last_seq(
                TopicPartition(self._target.dead_letter_topic, self._partition)
            ),
        )
        if seq:
            await asyncio.to_thread(self._delete, seq)
        self._recovered = True

    def _delete(self, up_to_seq: int) -> None:
        with self._store.batch() as batch:
            batch.delete_outbox(self._partition, up_to_seq)

    def _select(self) -> list[OutboxRecord]:
        with self._store.batch() as batch:
            return batch.select_outbox(self._partition, self._limit)

    def _delete_and_select(self, up_to_seq: int, after_seq: int) -> list[OutboxRecord]:
        """Forget the rows Kafka holds (up to `up_to_seq`, 0: none) and read the rows after
        `after_seq`: one transaction, so a busy partition's passes take one database call
        per Kafka transaction."""
        with self._store.batch() as batch:
            if up_to_seq:
                batch.delete_outbox(self._partition, up_to_seq)
            return batch.select_outbox(self._partition, self._limit, after_seq)

    async def run_once(self) -> int:
        """Publish everything in the outbox for this partition; returns how many.

        Raises `RelayFenced` once another instance relays the partition, and what the
        producer raised when a pass fails; the rows then stay in the outbox and the next
        call recovers first, so a retry sends only what Kafka does not hold.

        Each Kafka transaction takes a few broker round trips (~18 ms measured on the local
        broker); when batches were committed meanwhile, the next rows are read from the
        database while it is in flight, so the next transaction starts as soon as it
        commits. That read also forgets the rows of the transaction before (committed by
        then); rows left are forgotten at the end of the pass.
        """
        sent = 0
        async with self._lock:
            if self._fenced:
                raise RelayFenced(f"partition {self._partition}: relayed by another instance")
            producer = self._producer or await self._start()
            if not self._recovered:
                await self._recover()
            # Batches announced before a read are committed: a read that is not cut short
            # by the limit holds every row of theirs not relayed yet.
            covered = self._committed_offset
            records = await asyncio.to_thread(self._select)
            #: The last seq Kafka holds and the outbox may still have.
            in_kafka = 0
            while records:
                complete = len(records) < self._limit
                # Batches committed since the read: read their rows while the transaction
                # is in flight. Otherwise (light load) that read would most likely find
                # nothing and cost a database call of its own: read after the commit, with
                # the delete, as one call.
                ahead = self._committed_offset > covered
                reading: asyncio.Future[list[OutboxRecord]] | None = None
                if ahead:
                    next_covered = self._committed_offset
                    reading = asyncio.ensure_future(
                        asyncio.to_thread(self._delete_and_select, in_kafka, records[-1].seq)
                    )
                try:
                    await self._publish(producer, records)
                except BaseException:
                    if reading is not None:
                        # It deletes only what an earlier transaction committed: let it end
                        # either way (its rows are read again after recovery).
                        await asyncio.gather(reading, return_exceptions=True)
                    raise
                try:
                    if reading is not None:
                        following = await reading
                        in_kafka = records[-1].seq
                    else:
                        next_covered = self._committed_offset
                        following = await asyncio.to_thread(
                            self._delete_and_select, records[-1].seq, records[-1].seq
                        )
                        in_kafka = 0
                except BaseException:
                    # In Kafka but still in the outbox: the next pass must recover first,
                    # or it sends these rows again.
                    self._recovered = False
                    raise
                sent += len(records)
                if self._on_relayed is not None:
                    self._on_relayed(len(records))
                if complete:
                    self._caught_up(covered)
                records, covered = following, next_covered
            # Reported before the last delete: the outputs are in Kafka already.
            self._caught_up(covered)
            if in_kafka:
                try:
                    await asyncio.to_thread(self._delete, in_kafka)
                except BaseException:
                    self._recovered = False
                    raise
            return sent

    def _caught_up(self, covered: int) -> None:
        if covered > self._caught_up_offset:
            self._caught_up_offset = covered
            if self._on_caught_up is not None:
                self._on_caught_up(covered)

    async def _publish(self, producer: AIOKafkaProducer, records: list[OutboxRecord]) -> None:
        """One Kafka transaction: all of `records` become visible, or none."""
        try:
            async with producer.transaction():
                futures = []
                # Record batches built here, one open per topic, and handed over whole:
                # `send` per record costs a metadata wait and a future each.
                open_batches: dict[str, BatchBuilder] = {}
                for record in records:
                    topic = target_topic(record, self._target)
                    headers = [
                        (SEQ_HEADER, str(record.seq).encode()),
                        (ROOM_HEADER, record.room_id.encode()),
                        (TYPE_HEADER, _message_type.decode(record.payload).type.encode()),
                    ]
                    key = record.room_id.encode()
                    batch = open_batches.get(topic)
                    if batch is not None and batch.append(
                        timestamp=None, key=key, value=record.payload, headers=headers
                    ) is not None:
                        continue
                    if batch is not None:  # full: send it, start the next
                        futures.append(
                            await producer.send_batch(batch, topic, partition=self._partition)
                        )
                    batch = open_batches[topic] = producer.create_batch()
                    # The first record always fits (a batch grows to hold one big record).
                    batch.append(timestamp=None, key=key, value=record.payload, headers=headers)
                for topic, batch in open_batches.items():
                    futures.append(
                        await producer.send_batch(batch, topic, partition=self._partition)
                    )
                await asyncio.gather(*futures)
        except ProducerFenced as e:
            self._fenced = True
            self._recovered = False
            raise RelayFenced(
                f"partition {self._partition}: another instance's relay fenced this one"
            ) from e
        except IllegalOperation as e:
            self._recovered = False
            cause = _sender_failure(producer)
            if cause is None:
                raise
            # Fenced while the transaction was open (or another fatal producer error): the
            # producer's sender died with it and the send was refused. This producer can
            # never send again; a new one must not be started here (see the module
            # docstring), so the relay stops and the instance rejoins the group.
            self._fenced = True
            raise RelayFenced(
                f"partition {self._partition}: the relay's producer failed ({cause!r}), "
                "fenced by another instance or unusable"
            ) from e
        except BaseException:
            self._recovered = False
            raise

    # ------------------------------------------------------------ the background task

    def start(self, on_failure: Callable[[BaseException], None]) -> None:
        """Relay in the background from now on: at once (what earlier owners left), then
        after each `notify`. `on_failure` hears of every failed pass (`RelayFenced`: the task
        ends; `KafkaError`, `StorageError`, `TailUnreadable`: retried; anything else is a
        bug: the task ends with it)."""
        self._on_failure = on_failure
        self._task = asyncio.create_task(self._loop(), name=f"relay-{self._partition}")
        self._wake.set()

    def notify(self, next_offset: int) -> None:
        """A batch was committed; `next_offset` follows it. Once its outputs are in Kafka,
        `on_caught_up(next_offset)` says so."""
        self._committed_offset = max(self._committed_offset, next_offset)
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.run_once()
            except RelayFenced as e:
                self._on_failure(e)
                return
            except (KafkaError, StorageError, TailUnreadable) as e:
                self._on_failure(e)
                if self._closing.is_set():
                    return  # what is left stays in the outbox for the next owner
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), RETRY_SECONDS)
                self._wake.set()
                continue
            except Exception as e:
                self._on_failure(e)
                raise
            if self._closing.is_set() and not self._wake.is_set():
                return

    async def close(self, timeout: float = CLOSE_TIMEOUT_SECONDS) -> None:
        """Relay what is committed (a last pass), then stop the task and the producer.

        With Kafka away the last pass could wait for a long time: after `timeout` seconds it
        is cancelled; its rows stay in the outbox for the next owner, whose producer aborts
        the open transaction.
        """
        self._closing.set()
        self._wake.set()
        if self._task is not None:
            done, _ = await asyncio.wait([self._task], timeout=timeout)
            if not done:
                log.warning(
                    "partition %d: the last relay pass did not finish in %s s; the rest "
                    "stays in the outbox", self._partition, timeout,
                )
                self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        async with self._lock:
            if self._producer is not None:
                with contextlib.suppress(Exception):
                    await self._producer.stop()
                self._producer = None
