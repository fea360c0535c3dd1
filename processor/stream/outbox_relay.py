"""The outbox relay: moves committed outputs from the database to Kafka, in order, once.

Outputs (and dead letters) are written to the outbox in the same transaction as the input
batch that caused them. The relay for an input partition publishes that partition's outbox
rows in `seq` order to the same partition number of the output topic (dead letters, the rows
with an empty room ID, to the same partition number of the dead-letter topic), each record
carrying its `seq` in a header, and deletes what Kafka acknowledged.

Rows are sent in runs of one topic; a run must be acknowledged before the next starts, and
within a partition the idempotent producer keeps order. So what reached Kafka is always a
prefix of the outbox in `seq` order. After a crash between "Kafka acknowledged" and "rows
deleted", the relay that takes the partition over reads the last record of both partitions,
takes the larger `seq`, and deletes every row up to it: what Kafka already holds is never
sent twice.

That recovery runs inside the relay, before its first send and again after any failed send
(Kafka may hold part of the failed run): no code path can publish a partition's outbox
without it. Rows committed by this process after the takeover have larger `seq` values
than anything an earlier owner wrote (one database sequence), so they are never forgotten.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from processor.storage.base import OutboxRecord, Store

log = logging.getLogger(__name__)

SEQ_HEADER = "roomserver-seq"
ROOM_HEADER = "room_id"
TYPE_HEADER = "type"


@dataclass(frozen=True, slots=True)
class RelayTarget:
    output_topic: str
    dead_letter_topic: str


class _MessageType(msgspec.Struct):
    type: str = ""


_message_type = msgspec.json.Decoder(_MessageType)


def target_topic(record: OutboxRecord, target: RelayTarget) -> str:
    return target.dead_letter_topic if not record.room_id else target.output_topic


def _runs(records: list[OutboxRecord]) -> list[list[OutboxRecord]]:
    """Consecutive rows bound for the same topic."""
    runs: list[list[OutboxRecord]] = []
    for record in records:
        if runs and bool(runs[-1][-1].room_id) == bool(record.room_id):
            runs[-1].append(record)
        else:
            runs.append([record])
    return runs


class TailUnreadable(Exception):
    """The last record of an output partition could not be read: recovery cannot tell what
    Kafka holds, so the relay sends nothing rather than guess."""


#: Fetch attempts for the last record before giving up (`TailUnreadable`).
TAIL_READ_ATTEMPTS = 20


async def last_relayed_seq(consumer: AIOKafkaConsumer, tp: TopicPartition) -> int:
    """The `seq` header of the last record in an output partition (0 when it is empty).

    The consumer must not be subscribed; it is assigned `tp` for this read only.
    """
    consumer.assign([tp])
    end = (await consumer.end_offsets([tp]))[tp]
    beginning = (await consumer.beginning_offsets([tp]))[tp]
    if end <= beginning:
        return 0
    # assign() starts a position reset; a seek made before it finishes is overwritten (and
    # with "latest" the read would find nothing and answer 0: everything sent twice).
    await consumer.position(tp)
    for _ in range(TAIL_READ_ATTEMPTS):
        consumer.seek(tp, end - 1)
        batch = await consumer.getmany(tp, timeout_ms=1000)
        for record in batch.get(tp, []):
            if record.offset == end - 1:
                for key, value in record.headers or ():
                    if key == SEQ_HEADER:
                        return int(value)
                raise TailUnreadable(
                    f"{tp.topic}[{tp.partition}] offset {record.offset} has no {SEQ_HEADER} "
                    "header: another producer writes to the roomserver's output topic"
                )
    raise TailUnreadable(
        f"{tp.topic}[{tp.partition}]: the record at offset {end - 1} was not returned "
        f"in {TAIL_READ_ATTEMPTS} fetches"
    )


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
    """Relays one input partition's outbox. `run_once` is called after each committed batch."""

    def __init__(
        self,
        store: Store,
        producer: AIOKafkaProducer,
        partition: int,
        target: RelayTarget,
        tail: TailReader,
        *,
        on_relayed: Callable[[int], None] | None = None,
        limit: int = 2000,
    ) -> None:
        self._store = store
        self._producer = producer
        self._partition = partition
        self._target = target
        self._tail = tail
        self._on_relayed = on_relayed
        self._limit = limit
        self._lock = asyncio.Lock()
        #: False until the rows Kafka already holds have been forgotten, and again after a
        #: failed send.
        self._recovered = False

    @property
    def recovered(self) -> bool:
        return self._recovered

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

    async def run_once(self) -> int:
        """Publish everything in the outbox for this partition; returns how many.

        Raises what the producer raised when a send fails; the rows stay in the outbox and
        the next call recovers first, so a retry sends only what Kafka does not hold.
        """
        sent = 0
        async with self._lock:
            if not self._recovered:
                await self._recover()
            while True:
                records = await asyncio.to_thread(self._select)
                if not records:
                    return sent
                for run in _runs(records):
                    await self._send_run(run)
                await asyncio.to_thread(self._delete, records[-1].seq)
                sent += len(records)
                if self._on_relayed is not None:
                    self._on_relayed(len(records))

    async def _send_run(self, run: list[OutboxRecord]) -> None:
        topic = target_topic(run[0], self._target)
        futures: list[asyncio.Future[object]] = []
        try:
            for record in run:
                headers = [
                    (SEQ_HEADER, str(record.seq).encode()),
                    (ROOM_HEADER, record.room_id.encode()),
                    (TYPE_HEADER, _message_type.decode(record.payload).type.encode()),
                ]
                futures.append(
                    await self._producer.send(
                        topic,
                        record.payload,
                        key=record.room_id.encode(),
                        partition=self._partition,
                        headers=headers,
                    )
                )
            await asyncio.gather(*futures)
        except Exception:
            # Part of the run may be in Kafka, or still get there: let every send settle,
            # then read the tail again before the next attempt.
            self._recovered = False
            await asyncio.gather(*futures, return_exceptions=True)
            raise
        except BaseException:
            self._recovered = False
            raise
