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


async def last_relayed_seq(consumer: AIOKafkaConsumer, tp: TopicPartition) -> int:
    """The `seq` header of the last record in an output partition (0 when it is empty).

    The consumer must not be subscribed; it is assigned `tp` for this read only.
    """
    consumer.assign([tp])
    end = (await consumer.end_offsets([tp]))[tp]
    beginning = (await consumer.beginning_offsets([tp]))[tp]
    if end <= beginning:
        return 0
    consumer.seek(tp, end - 1)
    while True:
        batch = await consumer.getmany(tp, timeout_ms=1000)
        for record in batch.get(tp, []):
            for key, value in record.headers or ():
                if key == SEQ_HEADER and record.offset >= end - 1:
                    return int(value)
        position = await consumer.position(tp)
        if position >= end:
            return 0


class OutboxRelay:
    """Relays one input partition's outbox. `run_once` is called after each committed batch."""

    def __init__(
        self,
        store: Store,
        producer: AIOKafkaProducer,
        partition: int,
        target: RelayTarget,
        *,
        on_relayed: Callable[[int], None] | None = None,
        limit: int = 2000,
    ) -> None:
        self._store = store
        self._producer = producer
        self._partition = partition
        self._target = target
        self._on_relayed = on_relayed
        self._limit = limit
        self._lock = asyncio.Lock()

    async def recover(self, consumer: AIOKafkaConsumer) -> None:
        """Forget outbox rows that Kafka already holds (see the module docstring)."""
        seq = max(
            await last_relayed_seq(
                consumer, TopicPartition(self._target.output_topic, self._partition)
            ),
            await last_relayed_seq(
                consumer, TopicPartition(self._target.dead_letter_topic, self._partition)
            ),
        )
        if seq:
            await asyncio.to_thread(self._delete, seq)

    def _delete(self, up_to_seq: int) -> None:
        with self._store.batch() as batch:
            batch.delete_outbox(self._partition, up_to_seq)

    def _select(self) -> list[OutboxRecord]:
        with self._store.batch() as batch:
            return batch.select_outbox(self._partition, self._limit)

    async def run_once(self) -> int:
        """Publish everything in the outbox for this partition; returns how many."""
        sent = 0
        async with self._lock:
            while True:
                records = await asyncio.to_thread(self._select)
                if not records:
                    return sent
                for run in _runs(records):
                    topic = target_topic(run[0], self._target)
                    futures = []
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
                await asyncio.to_thread(self._delete, records[-1].seq)
                sent += len(records)
                if self._on_relayed is not None:
                    self._on_relayed(len(records))
