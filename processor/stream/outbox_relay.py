"""The outbox relay: moves committed outputs from the database to Kafka, in order, once.

Outputs (and dead letters) are written to the outbox in the same transaction as the input
batch that caused them. The relay for an input partition publishes that partition's outbox
rows in `seq` order to the same partition number of the output topic, each record carrying
its `seq` in a header, and deletes what Kafka acknowledged.

After a crash between "Kafka acknowledged" and "rows deleted", the rows would be sent again.
So when it takes over a partition the relay first reads the last record of that output
partition and deletes every outbox row up to the `seq` it carries: what Kafka already holds
is never sent twice. The producer is idempotent, so its own retries add no duplicates either.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

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


def target_topic(record: OutboxRecord, target: RelayTarget) -> str:
    return target.dead_letter_topic if record.topic == "dlq" else target.output_topic


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
        tp = TopicPartition(self._target.output_topic, self._partition)
        seq = await last_relayed_seq(consumer, tp)
        dlq_seq = await last_relayed_seq(
            consumer, TopicPartition(self._target.dead_letter_topic, 0)
        )
        del dlq_seq  # dead letters share one partition; their rows are deleted by seq below
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
                futures = []
                for record in records:
                    topic = target_topic(record, self._target)
                    partition = self._partition if record.topic != "dlq" else 0
                    headers = [
                        (SEQ_HEADER, str(record.seq).encode()),
                        (ROOM_HEADER, record.room_id.encode()),
                        (TYPE_HEADER, record.message_type.encode()),
                    ]
                    futures.append(
                        await self._producer.send(
                            topic,
                            record.payload,
                            key=record.room_id.encode(),
                            partition=partition,
                            headers=headers,
                        )
                    )
                await asyncio.gather(*futures)
                await asyncio.to_thread(self._delete, records[-1].seq)
                sent += len(records)
                if self._on_relayed is not None:
                    self._on_relayed(len(records))
