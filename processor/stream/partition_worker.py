"""`PartitionWorker`: one input partition of the service — its queue of fetched messages,
its `PartitionProcessor` and outbox relay, and the transaction that processes a batch and
claims the next input offset; and the log lines of what a batch dead-lettered."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field

from processor.config import Settings
from processor.pipeline.processor import PartitionProcessor
from processor.pipeline.types import BatchResult, InputMessage
from processor.storage.base import Store
from processor.stream.outbox_relay import OutboxRelay

log = logging.getLogger("processor.stream.service")

#: Batches processed at the same time, each in a thread of the service's batch pool. More
#: threads add no CPU (the GIL); they overlap one batch's database round trips with another
#: batch's Python work. Beyond two, threads waiting for the GIL after every round trip make
#: each batch slower: measured with tests/benchmarks/bench_e2e.py at 1,000 events/s, six
#: threads took 71 ms per 15-event batch, two threads 19 ms.
PROCESSING_THREADS = 2


class StaleBatch(Exception):
    """The stored input offset moved under us: another instance owns the partition now."""


@dataclass
class PartitionWorker:
    settings: Settings
    topic: str
    partition: int
    store: Store
    relay: OutboxRelay
    max_message_bytes: int
    #: Held while a batch is taken and processed: whoever holds it keeps the next batch
    #: from starting (`release` waits on it for the batch in flight).
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: False (a rebuild with no output topic): outputs and dead letters are built, so stream
    #: positions advance as in the original run, but never written to the outbox.
    outputs_enabled: bool = True
    #: Fetched and not yet processed, in offset order.
    queue: deque[InputMessage] = field(default_factory=deque)
    #: Set while the queue holds messages, and on release.
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    #: The partition is paused in the consumer (its queue is full).
    paused: bool = False
    #: Released: the task ends after the batch in flight.
    released: bool = False
    task: asyncio.Task[None] | None = None
    #: The input offset this worker's last batch stored (None: not known, read it). Saves
    #: each batch a round trip; a stale value is harmless, as the claim compares it with
    #: the stored one and a mismatch drops the batch (`StaleBatch`).
    stored_offset: int | None = None

    def __post_init__(self) -> None:
        self.processor = PartitionProcessor(
            self.settings.server_name,
            partition=self.partition,
            max_message_bytes=self.max_message_bytes,
            sink="outbox" if self.outputs_enabled else "memory",
        )

    def enqueue(self, messages: list[InputMessage]) -> None:
        self.queue.extend(messages)
        self.arrived.set()

    def take(self, limit: int) -> list[InputMessage]:
        """Up to `limit` queued messages, oldest first."""
        queue = self.queue
        if len(queue) <= limit:
            taken = list(queue)
            queue.clear()
        else:
            taken = [queue.popleft() for _ in range(limit)]
        if not queue:
            self.arrived.clear()
        return taken

    def put_back(self, messages: list[InputMessage]) -> None:
        """`messages` (just taken) go back to the front of the queue, to be retried."""
        self.queue.extendleft(reversed(messages))
        if self.queue:
            self.arrived.set()

    def process(self, messages: list[InputMessage]) -> BatchResult | None:
        """One transaction: the batch's effects, its outputs and the next input offset."""
        try:
            with self.store.batch() as batch:
                expected = self.stored_offset
                if expected is None:
                    expected = batch.select_input_offset(self.topic, self.partition) or 0
                messages = [m for m in messages if m.offset >= expected]
                if not messages:
                    self.stored_offset = expected
                    return None
                result = self.processor.process(batch, messages)
                self.processor.take_outputs()  # memory sink only: nothing to publish
                next_offset = messages[-1].offset + 1
                if not batch.claim_input_offset(
                    self.topic, self.partition, expected, next_offset
                ):
                    raise StaleBatch(f"partition {self.partition} moved on from {expected}")
            # Committed (leaving the block without an exception).
            self.stored_offset = next_offset
            return result
        except BaseException:
            self.stored_offset = None
            self.processor.rolled_back()
            raise


#: Dead letters logged one by one per batch; the rest of a flood is summed up by reason.
DEAD_LETTER_LOG_LINES = 10


def log_dead_letters(partition: int, result: BatchResult) -> None:
    """A line per dead letter with its reason, input offset and what is wrong (`roomserver
    dlq list` shows the same); past `DEAD_LETTER_LOG_LINES` in one batch, one line counts
    the others by reason, so a flood of bad input cannot flood the log."""
    letters = result.dead_letters
    for dead in letters[:DEAD_LETTER_LOG_LINES]:
        log.warning(
            "partition %d offset %d: dead-lettered (%s): %s",
            partition, dead.message.offset, dead.reason.value, dead.detail,
        )
    rest = letters[DEAD_LETTER_LOG_LINES:]
    if rest:
        counts: dict[str, int] = {}
        for dead in rest:
            counts[dead.reason.value] = counts.get(dead.reason.value, 0) + 1
        log.warning(
            "partition %d: %d more dead-lettered in the batch (%s)",
            partition, len(rest), ", ".join(f"{r}: {n}" for r, n in sorted(counts.items())),
        )
