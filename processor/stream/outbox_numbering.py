"""Numbering a database's outbox past what the output topics hold, before any batch
commits (see `number_outbox_past`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from processor.config import Settings
from processor.errors import StorageError
from processor.storage.base import Store
from processor.stream.connect import RETRY_SECONDS
from processor.stream.database import advance_outbox_seq
from processor.stream.outbox_relay import TailReader, TailUnreadable

log = logging.getLogger("processor.stream.service")



async def number_outbox_past(
    tail: TailReader,
    require_store: Callable[[], Store],
    settings: Settings,
    partitions: int,
    stop: asyncio.Event,
) -> None:
    """Before any batch commits: number this database's outbox rows above every `seq`
    the output and dead-letter topics already hold.

    A rebuilt or restored database starts its outbox sequence below what its predecessor
    published; each relay forgets the rows at or below its partitions' last `seq` as
    already in Kafka (`OutboxRelay._recover`), so without this the first outputs after
    the switch would be silently dropped. A database that published those records
    itself is already past them: nothing moves.
    """
    topics = (settings.output_topic, settings.dead_letter_topic)
    while not stop.is_set():
        try:
            published = 0
            for topic in topics:
                for p in range(partitions):
                    try:
                        last = await tail.last_seq(TopicPartition(topic, p))
                    except TailUnreadable:
                        # That partition's relay refuses to publish for the same reason
                        # (and says so); the others need not wait for it.
                        continue
                    published = max(published, last)
            store = require_store()
            if published and await asyncio.to_thread(advance_outbox_seq, store, published):
                log.warning(
                    "outbox sequence moved past %d, the last seq the output topics hold: "
                    "this database had not published that far (rebuilt or restored)",
                    published,
                )
            return
        except (KafkaError, StorageError) as e:
            # Processing must not start before this is done; the broker or the
            # database may be back in a moment.
            log.warning("reading the output topics' last seq failed (%s); retrying", e)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), RETRY_SECONDS)
