"""`PartitionProcessor`: the roomserver for one input partition — its caches, its handler and
its outputs — as `run` (one per partition) and `ingest` (one) use it.

The caller owns the transaction: it opens a storage batch, calls `process`, commits, and
then takes the outputs (memory sink) or lets the relay publish them (outbox sink). When a
batch rolls back, `rolled_back` forgets everything learnt during it: the caches may hold its
uncommitted writes (NIDs assigned in it, for one, no longer exist).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from processor.pipeline.caches import CacheLimits, RoomCache
from processor.pipeline.handler import InputHandler
from processor.pipeline.outputs import OutputBuilder
from processor.pipeline.types import BatchResult, InputMessage
from processor.storage.base import Batch


class PartitionProcessor:
    def __init__(
        self,
        server_name: str,
        *,
        partition: int = 0,
        max_message_bytes: int = 1_000_000,
        sink: Literal["outbox", "memory"] = "memory",
        record_outcomes: bool = False,
        cache_limits: CacheLimits | None = None,
    ) -> None:
        self._server_name = server_name
        self._record_outcomes = record_outcomes
        self.cache = RoomCache(cache_limits)
        self.outputs = OutputBuilder(partition, max_message_bytes, sink=sink)
        self._handler = self._new_handler()

    def _new_handler(self) -> InputHandler:
        return InputHandler(
            self._server_name, self.cache, self.outputs, record_outcomes=self._record_outcomes
        )

    def process(self, batch: Batch, messages: Sequence[InputMessage]) -> BatchResult:
        """The messages' effects and outputs, written into `batch` (not committed)."""
        # Every earlier batch is committed or forgotten (`rolled_back`): the caches may drop
        # what is over their limits now without losing anything the database lacks.
        self.cache.trim()
        return self._handler.handle_batch(batch, messages)

    def take_outputs(self) -> list[bytes]:
        """(memory sink) The outputs of the batch just committed."""
        return self.outputs.take()

    @property
    def rooms_seen(self) -> set[str]:
        """The rooms that had an output so far."""
        return self.outputs.rooms_seen

    def rolled_back(self) -> None:
        """The batch in progress rolled back: forget what it taught the caches and drop its
        outputs."""
        self.cache.clear()
        self.outputs.discard()
